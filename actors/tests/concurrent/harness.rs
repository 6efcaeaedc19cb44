//! The harness under concurrency: a dry-run flag to a tool without dry runs.

use super::*;

/// A destructive tool that does not honour `dry_run`: counts its real runs.
struct Blunt(Arc<AtomicU32>);

#[async_trait]
impl Tool for Blunt {
    fn name(&self) -> &str {
        "wipe"
    }
    fn description(&self) -> &str {
        "wipes a disk"
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    fn effect(&self) -> Effect {
        Effect::Destructive
    }
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        _: serde_json::Value,
    ) -> Result<String, ToolError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok("wiped".into())
    }
}

/// `dry_run: true` to a tool that does not implement dry runs is the real call: under
/// `dry_run_first` it is refused (no dry run came before it) and the tool never runs; it
/// never counts as the dry run that would let the next call through.
#[tokio::test(start_paused = true)]
async fn a_dry_run_flag_to_a_tool_without_dry_runs_is_the_real_call() {
    let mut spec = TopologyBuilder::new("t")
        .model("m", priced())
        .tool("wipe", ToolSpec::custom())
        .agent("ops", AgentSpec::new(["m"]).tools(["wipe"]))
        .build()
        .expect("valid")
        .spec()
        .clone();
    spec.policy = Some(PolicySpec {
        dry_run_first: Some(true),
        ..PolicySpec::default()
    });
    let topology = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let runs = Arc::new(AtomicU32::new(0));
    let model = slow(0, |r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => calls(r, &[("wipe", json!({"disk": "a", "dry_run": true}))]),
            2 => calls(r, &[("wipe", json!({"disk": "a"}))]),
            _ => text(r, &observations(r)),
        })
    });
    let rt = Runtime::builder(topology)
        .model("m", model)
        .tool(Blunt(Arc::clone(&runs)))
        .start()
        .await
        .expect("starts");
    let run = rt.submit("wipe a", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "{}", run.result.text);
    assert_eq!(
        run.result
            .text
            .matches("denied by policy (dry_run_first)")
            .count(),
        2,
        "{}",
        run.result.text
    );
}
