//! Many tasks in flight: a hundred take the time of one; an approval wait holds up only its own task.

use super::*;

/// W1's shape: a lead that delegates to `rca` (two tool calls) and then to `paging` (one),
/// and answers: 7 model calls of 50 ms each, one after another within a task.
fn w1() -> Topology {
    TopologyBuilder::new("w1")
        .model("m", priced())
        .tool("echo", ToolSpec::custom())
        .agent("lead", AgentSpec::new(["m"]).children(["rca", "paging"]))
        .agent("rca", AgentSpec::new(["m"]).tools(["echo"]))
        .agent("paging", AgentSpec::new(["m"]).tools(["echo"]))
        .build()
        .expect("valid")
}

pub(super) fn w1_model(ms: u64) -> impl Model {
    slow(ms, |r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => calls(r, &[("delegate", json!({"agent": "rca", "task": "why"}))]),
            ("lead", 2) => calls(
                r,
                &[("delegate", json!({"agent": "paging", "task": "who"}))],
            ),
            ("rca", 1) => calls(r, &[("echo", json!({"q": 1})), ("echo", json!({"q": 2}))]),
            ("paging", 1) => calls(r, &[("echo", json!({"q": 3}))]),
            _ => text(r, &format!("{} done", r.agent)),
        })
    })
}

pub(super) struct Echo;

#[async_trait]
impl Tool for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn description(&self) -> &str {
        "echo"
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        Ok(format!("echo {args}"))
    }
}

pub(super) async fn w1_runtime(ms: u64) -> Runtime {
    Runtime::builder(w1())
        .model("m", w1_model(ms))
        .tool(Echo)
        .start()
        .await
        .expect("starts")
}

/// 100 W1 tasks submitted at once to one runtime finish in about one task's virtual time
/// (at most 1.1 times it), and `in_flight` sees them all while they run.
#[tokio::test(start_paused = true)]
async fn a_hundred_tasks_take_the_time_of_one() {
    let rt = Arc::new(w1_runtime(50).await);
    let t0 = Instant::now();
    let one = rt.submit("alert", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(one.result.outcome, Outcome::Completed);
    let single = t0.elapsed();
    assert_eq!(single, Duration::from_millis(7 * 50));

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let rt = Arc::clone(&rt);
            tokio::spawn(async move { rt.submit(format!("alert {i}"), Budget::UNLIMITED).await })
        })
        .collect();
    // Once all have started, all are in flight at once.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rt.in_flight(), 100);
    for t in tasks {
        let run = t.await.expect("joined").expect("runs");
        assert_eq!(run.result.outcome, Outcome::Completed);
        run.account.check_conservation().expect("conserved");
    }
    let all = t0.elapsed();
    assert!(
        all <= single.mul_f64(1.1),
        "{all:?} for 100 vs {single:?} for one"
    );
    assert_eq!(rt.in_flight(), 0);
}

struct WaitForSignal(Arc<tokio::sync::Notify>);

#[async_trait]
impl Approver for WaitForSignal {
    async fn decide(&self, _: &ApprovalRequest) -> ApprovalDecision {
        self.0.notified().await;
        ApprovalDecision::Approved
    }
}

/// One task waits on a human's approval; ten others on the same agent complete meanwhile,
/// and the waiting one completes when the answer comes at the end.
#[tokio::test(start_paused = true)]
async fn an_approval_wait_holds_up_only_its_own_task() {
    let mut restart = ToolSpec::builtin(baton_topologies::ToolKind::RestartService, "unused");
    restart.path = None;
    let mut spec = TopologyBuilder::new("t")
        .model("m", priced())
        .tool("restart", restart)
        .agent("ops", AgentSpec::new(["m"]).tools(["restart"]))
        .build()
        .expect("valid")
        .spec()
        .clone();
    spec.policy = Some(PolicySpec {
        approval: Some(true),
        approval_timeout: Some(Duration::from_secs(3600)),
        ..PolicySpec::default()
    });
    let topology = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let model = slow(50, |r: &ModelRequest<'_>| {
        Ok(match (task_of(r).as_str(), r.step) {
            ("restart", 1) => calls(r, &[("restart", json!({"service": "api"}))]),
            _ => text(r, &format!("answered: {}", observations(r))),
        })
    });
    let signal = Arc::new(tokio::sync::Notify::new());
    let rt = Arc::new(
        Runtime::builder(topology)
            .model("m", model)
            .approver(WaitForSignal(Arc::clone(&signal)))
            .start()
            .await
            .expect("starts"),
    );
    let t0 = Instant::now();
    let waiting = {
        let rt = Arc::clone(&rt);
        tokio::spawn(async move { rt.submit("restart", Budget::UNLIMITED).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let others: Vec<_> = (0..10)
        .map(|i| {
            let rt = Arc::clone(&rt);
            tokio::spawn(async move { rt.submit(format!("q{i}"), Budget::UNLIMITED).await })
        })
        .collect();
    for o in others {
        let run = o.await.expect("joined").expect("runs");
        assert_eq!(run.result.outcome, Outcome::Completed);
    }
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(110),
        "the others did not wait"
    );
    assert!(!waiting.is_finished(), "the approval is still pending");
    tokio::time::sleep(Duration::from_secs(600)).await;
    signal.notify_one();
    let run = waiting.await.expect("joined").expect("runs");
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert!(
        run.result.text.contains("restarted api"),
        "{}",
        run.result.text
    );
}
