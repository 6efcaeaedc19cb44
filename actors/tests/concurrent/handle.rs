//! Task handles: spawn, cancel, await the report.

use super::*;

fn solo(ms: u64) -> (Topology, impl Model) {
    let topology = TopologyBuilder::new("t")
        .model("m", priced())
        .agent("solo", AgentSpec::new(["m"]))
        .build()
        .expect("valid");
    (
        topology,
        slow(ms, |r: &ModelRequest<'_>| Ok(text(r, "done"))),
    )
}

/// `spawn` returns at once with the task's id; the handle yields the report; tasks spawned
/// from one shared (cloned) runtime run together.
#[tokio::test(start_paused = true)]
async fn spawn_returns_at_once_and_the_handle_yields_the_report() {
    let (topology, model) = solo(50);
    let rt = Runtime::builder(topology)
        .model("m", model)
        .start()
        .await
        .expect("starts");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..10).map(|i| rt.clone().spawn(format!("t{i}"))).collect();
    assert_eq!(t0.elapsed(), Duration::ZERO, "spawn does not wait");
    assert_eq!(rt.in_flight(), 10, "all ten are listed at once");
    let mut ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 10, "each task has its own id");
    for h in handles {
        let report = h.await.expect("runs");
        assert_eq!(report.outcome, Outcome::Completed);
        assert_eq!(report.answer.as_deref(), Some("done"));
    }
    assert_eq!(t0.elapsed(), Duration::from_millis(50), "they ran together");
    assert_eq!(rt.in_flight(), 0);
    rt.shutdown().await;
}

/// A task cancelled through its handle (or through `Runtime::cancel` with its id) still
/// yields its report: outcome `cancelled`, nothing left reserved.
#[tokio::test(start_paused = true)]
async fn a_cancelled_task_still_yields_its_report() {
    let (topology, model) = solo(60_000);
    let rt = Runtime::builder(topology)
        .model("m", model)
        .start()
        .await
        .expect("starts");
    let by_handle = rt.spawn("one");
    let by_id = rt.spawn("two");
    tokio::time::sleep(Duration::from_millis(10)).await;
    by_handle.cancel();
    assert!(rt.cancel(by_id.id()), "found by its id");
    for h in [by_handle, by_id] {
        let reserved = h.account().clone();
        let report = h.await.expect("a report");
        assert_eq!(report.outcome, Outcome::Cancelled);
        assert_eq!(reserved.snapshot().reserved, NanoUsd::ZERO);
    }
    assert!(!rt.cancel(baton_core::TaskId(u64::MAX)), "unknown id");
    rt.shutdown().await;
}

/// `shutdown` works on a shared handle: a clone shuts the runtime down, the other clone's
/// later submissions are refused, and a second `shutdown` returns.
#[tokio::test(start_paused = true)]
async fn shutdown_on_a_shared_handle() {
    let (topology, model) = solo(1);
    let rt = Runtime::builder(topology)
        .model("m", model)
        .start()
        .await
        .expect("starts");
    let other = rt.clone();
    assert_eq!(
        other.run("before").await.expect("runs").outcome,
        Outcome::Completed
    );
    rt.shutdown().await;
    other.shutdown().await;
    assert!(other.spawn("after").await.is_err(), "refused once down");
}

/// Every event of a run carries its root task's id, delegated sub-tasks' included, so that
/// the events of tasks running at once can be told apart; `record` gives the owned form.
#[tokio::test(start_paused = true)]
async fn events_carry_their_root_task() {
    #[derive(Clone, Default)]
    struct Roots(Arc<Mutex<Vec<(String, u64, u64)>>>);
    impl Observer for Roots {
        fn on_event(&self, e: &Event<'_>) {
            let (kind, fields) = e.record();
            if let Some(root) = e.root() {
                assert_eq!(fields["root"], json!(root), "the record carries it too");
                let task = fields["task"].as_u64().expect("a task id");
                self.0
                    .lock()
                    .expect("log")
                    .push((kind.to_string(), task, root));
            }
        }
    }
    let roots = Roots::default();
    let rt = Runtime::builder(fan_out_topology())
        .model(
            "m",
            slow(50, |r: &ModelRequest<'_>| {
                Ok(match (r.agent, r.step) {
                    ("lead", 1) => delegations(r, &[("a", "x"), ("b", "y")]),
                    _ => text(r, "ok"),
                })
            }),
        )
        .observer(roots.clone())
        .start()
        .await
        .expect("starts");
    let (one, two) = (rt.spawn("one"), rt.spawn("two"));
    let ids = [one.id().0, two.id().0];
    one.await.expect("runs");
    two.await.expect("runs");
    let log = roots.0.lock().expect("log").clone();
    for id in ids {
        let mine: Vec<_> = log.iter().filter(|(_, _, r)| *r == id).collect();
        let ends = mine.iter().filter(|(k, _, _)| k == "task_end").count();
        assert_eq!(ends, 3, "the root task and its two sub-tasks: {mine:?}");
        assert!(
            mine.iter().any(|(_, task, _)| *task != id),
            "sub-tasks' events are tied to their root"
        );
    }
    assert_eq!(
        log.len(),
        log.iter().filter(|(_, _, r)| ids.contains(r)).count()
    );
    rt.shutdown().await;
}

fn fan_out_topology() -> Topology {
    TopologyBuilder::new("t")
        .model("m", priced())
        .agent("lead", AgentSpec::new(["m"]).children(["a", "b"]))
        .agent("a", AgentSpec::new(["m"]))
        .agent("b", AgentSpec::new(["m"]))
        .build()
        .expect("valid")
}

/// An agent whose first step calls `crunch` (a minute long; its own timeout is two) and whose
/// second answers; the task's `max_wall` is `wall`.
async fn crunching(wall: Option<Duration>, finished: Arc<AtomicU32>) -> Runtime {
    let mut crunch = ToolSpec::custom();
    crunch.timeout = Some(Duration::from_secs(120));
    let topology = TopologyBuilder::new("t")
        .model("m", priced())
        .tool("crunch", crunch)
        .agent(
            "solo",
            AgentSpec::new(["m"]).tools(["crunch"]).budget(BudgetSpec {
                max_wall: wall,
                ..BudgetSpec::default()
            }),
        )
        .build()
        .expect("valid");
    let model = slow(10, |r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => calls(r, &[("crunch", json!({}))]),
            _ => text(r, "crunched"),
        })
    });
    Runtime::builder(topology)
        .model("m", model)
        // A minute long, counting the calls that finished.
        .tool(
            baton_core::testing::FnTool::new("crunch", move |_, _| {
                finished.fetch_add(1, Ordering::SeqCst);
                Ok("crunched".into())
            })
            .with_latency(Duration::from_secs(60)),
        )
        .start()
        .await
        .expect("starts")
}

/// The task's deadline ends it in the middle of a tool call, at the deadline, not when the
/// tool would have finished: the call is abandoned (it never completes) and the task ends
/// `timed_out` with nothing left reserved.
#[tokio::test(start_paused = true)]
async fn a_deadline_ends_a_task_during_a_tool_call() {
    let finished = Arc::new(AtomicU32::new(0));
    let rt = crunching(Some(Duration::from_secs(5)), Arc::clone(&finished)).await;
    let t0 = Instant::now();
    let handle = rt.spawn("crunch it");
    let account = handle.account().clone();
    let report = handle.await.expect("a report");
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "ended at its deadline"
    );
    assert_eq!(report.totals.tool_calls, 1, "the call was made");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0, "and abandoned");
    assert_eq!(account.snapshot().reserved, NanoUsd::ZERO);
    account.check_conservation().expect("conserved");
    rt.shutdown().await;
}

/// Cancelling a task while its tool runs ends it at once, `cancelled`; the tool call is
/// abandoned.
#[tokio::test(start_paused = true)]
async fn cancelling_a_task_abandons_its_tool_call() {
    let finished = Arc::new(AtomicU32::new(0));
    let rt = crunching(None, Arc::clone(&finished)).await;
    let handle = rt.spawn("crunch it");
    // The model takes 10 ms; the tool call then runs for a minute.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    handle.cancel();
    let report = handle.await.expect("a report");
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(t0.elapsed(), Duration::ZERO, "ended when cancelled");
    assert_eq!(report.totals.tool_calls, 1);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0, "the call was abandoned");
    rt.shutdown().await;
}
