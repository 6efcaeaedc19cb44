//! Fan-out: a delegating turn waits for the longest branch, not the sum.

use super::*;

fn lead_and_three() -> Topology {
    TopologyBuilder::new("t")
        .model("m", priced())
        .agent("lead", AgentSpec::new(["m"]).children(["a", "b", "c"]))
        .agent("a", AgentSpec::new(["m"]))
        .agent("b", AgentSpec::new(["m"]))
        .agent("c", AgentSpec::new(["m"]))
        .build()
        .expect("valid")
}

fn fan_model() -> impl Model {
    slow(50, |r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => delegations(r, &[("a", "part a"), ("b", "part b"), ("c", "part c")]),
            ("lead", _) => text(r, &observations(r)),
            (agent, _) => text(r, &format!("{agent} did {}", task_of(r))),
        })
    })
}

/// A lead delegating to three children in one reply waits for the slowest branch, not the
/// sum: 50 (lead) + 50 (children together) + 50 (lead) of virtual time, not 50 + 150 + 50.
/// The observations reach the model in call order.
#[tokio::test(start_paused = true)]
async fn a_fan_out_takes_the_time_of_its_slowest_branch() {
    let rt = Runtime::builder(lead_and_three())
        .model("m", fan_model())
        .start()
        .await
        .expect("starts");
    let t0 = Instant::now();
    let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
    let took = t0.elapsed();
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert_eq!(
        run.result.text,
        "a did part a | b did part b | c did part c"
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(160),
        "took {took:?}"
    );
    run.account.check_conservation().expect("conserved");
    rt.shutdown().await;
}

/// `parallel_tool_calls: false` restores one call at a time: the same fan-out takes the sum.
#[tokio::test(start_paused = true)]
async fn parallel_tool_calls_false_runs_one_at_a_time() {
    let mut spec = lead_and_three().spec().clone();
    spec.agents
        .get_mut("lead")
        .expect("lead")
        .parallel_tool_calls = Some(false);
    let topology = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let rt = Runtime::builder(topology)
        .model("m", fan_model())
        .start()
        .await
        .expect("starts");
    let t0 = Instant::now();
    let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(run.result.outcome, Outcome::Completed);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(260),
        "took {took:?}"
    );
    rt.shutdown().await;
}

#[derive(Clone, Default)]
struct Decisions(Arc<Mutex<Vec<String>>>);

impl Observer for Decisions {
    fn on_event(&self, e: &Event<'_>) {
        if let Event::Policy { tool, decision, .. } = e {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{tool} {decision}"));
        }
    }
}

struct Approve;

#[async_trait]
impl Approver for Approve {
    async fn decide(&self, _: &ApprovalRequest) -> ApprovalDecision {
        ApprovalDecision::Approved
    }
}

fn ops(policy: PolicySpec) -> Topology {
    let mut spec = TopologyBuilder::new("t")
        .model("m", priced())
        .tool("read1", ToolSpec::custom())
        .tool("read2", ToolSpec::custom())
        .tool("restart", ToolSpec::custom())
        .agent(
            "ops",
            AgentSpec::new(["m"]).tools(["read1", "read2", "restart"]),
        )
        .build()
        .expect("valid")
        .spec()
        .clone();
    spec.policy = Some(policy);
    Topology::from_spec(spec, std::path::Path::new(".")).expect("valid")
}

/// One reply with two reads, a dry run and the real destructive call: the reads run
/// together, then the dry run, then the real call (which asks approval, satisfied by the dry
/// run before it); the model sees the results in call order.
#[tokio::test(start_paused = true)]
async fn reads_run_together_then_writes_in_order() {
    let origin = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let tool = |name, effect, ms| Timed {
        name,
        effect,
        ms,
        origin,
        log: Arc::clone(&log),
    };
    let decisions = Decisions::default();
    let model = slow(0, |r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => calls(
                r,
                &[
                    ("restart", json!({"service": "api", "dry_run": true})),
                    ("read1", json!({})),
                    ("restart", json!({"service": "api"})),
                    ("read2", json!({})),
                ],
            ),
            _ => text(r, &observations(r)),
        })
    });
    let policy = PolicySpec {
        dry_run_first: Some(true),
        approval: Some(true),
        ..PolicySpec::default()
    };
    let rt = Runtime::builder(ops(policy))
        .model("m", model)
        .tool(tool("read1", Effect::Read, 30))
        .tool(tool("read2", Effect::Read, 50))
        .tool(tool("restart", Effect::Destructive, 10))
        .approver(Approve)
        .observer(decisions.clone())
        .start()
        .await
        .expect("starts");
    let run = rt.submit("fix it", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(
        run.result.text,
        "restart dry done | read1 done | restart done | read2 done"
    );
    assert_eq!(
        *log.lock().expect("log"),
        [
            "read1 start 0",
            "read2 start 0",
            "read1 end 30",
            "read2 end 50",
            "restart dry start 50",
            "restart dry end 60",
            "restart start 60",
            "restart end 70",
        ]
    );
    assert_eq!(
        *decisions.0.lock().expect("lock"),
        ["restart allowed", "restart requested", "restart approved"]
    );
    rt.shutdown().await;
}

/// A freeze still holds when the destructive call comes in one reply with reads.
#[tokio::test(start_paused = true)]
async fn a_freeze_holds_for_a_destructive_call_among_reads() {
    let origin = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let tool = |name, effect| Timed {
        name,
        effect,
        ms: 5,
        origin,
        log: Arc::clone(&log),
    };
    let model = slow(0, |r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => calls(
                r,
                &[
                    ("read1", json!({})),
                    ("restart", json!({"service": "api"})),
                    ("read2", json!({})),
                ],
            ),
            _ => text(r, &observations(r)),
        })
    });
    let policy = PolicySpec {
        freeze: vec![baton_topologies::FreezeSpec {
            from: "2000-01-01T00:00:00Z".into(),
            to: "2999-01-01T00:00:00Z".into(),
            reason: "year-end freeze".into(),
            block_dry_runs: false,
        }],
        ..PolicySpec::default()
    };
    let rt = Runtime::builder(ops(policy))
        .model("m", model)
        .tool(tool("read1", Effect::Read))
        .tool(tool("read2", Effect::Read))
        .tool(tool("restart", Effect::Destructive))
        .start()
        .await
        .expect("starts");
    let run = rt.submit("fix it", Budget::UNLIMITED).await.expect("runs");
    assert!(
        run.result.text.contains("denied by policy (freeze)"),
        "{}",
        run.result.text
    );
    assert!(
        !log.lock()
            .expect("log")
            .iter()
            .any(|l| l.starts_with("restart")),
        "the frozen call never ran"
    );
    rt.shutdown().await;
}
