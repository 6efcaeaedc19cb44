//! The concurrent runtime: many tasks per agent, one reply's tool calls at once, backpressure,
//! supervision of concurrent tasks, and the ledger's memory. Every timing here is virtual (paused
//! tokio time): the assertions are about orderings and virtual durations, never wall-clock time.
//!
//! - `fan_out`: a reply's delegations run together; reads together, writes after, in order.
//! - `many`: 100 tasks at once take one task's time; an approval wait holds up nobody else.
//! - `backpressure`: `max_concurrency` and `queue`, the `busy` outcome.
//! - `supervision`: a panic ends its own task only; strategies and siblings' in-flight tasks; a
//!   retried task does not repeat a completed destructive call.
//! - `money`: parallel children racing for the last of a budget; accounts freed after tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_actors::{ApprovalDecision, ApprovalRequest, Approver, Event, Observer, Runtime};
use baton_core::{
    Budget, Effect, Model, ModelError, ModelRequest, ModelResponse, NanoUsd, Outcome, Role,
    TokenUsage, Tool, ToolCall, ToolError, async_trait,
};
use baton_topologies::{
    AgentSpec, BudgetSpec, ModelSpec, PolicySpec, ToolSpec, Topology, TopologyBuilder,
};
use serde_json::json;
use tokio::time::Instant;

/// $1 per million tokens in and out.
fn priced() -> ModelSpec {
    ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd::from_usd(1),
        NanoUsd::from_usd(1),
    ))
    .max_output_tokens(100)
}

/// A model that takes `latency` of (virtual) time per call, then answers as the closure says.
struct Slow<F> {
    latency: Duration,
    f: F,
}

#[async_trait]
impl<F> Model for Slow<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        tokio::time::sleep(self.latency).await;
        (self.f)(&request)
    }
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        baton_core::scripted::input_tokens(request.messages, request.tools)
    }
}

fn slow<F>(ms: u64, f: F) -> Slow<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    Slow {
        latency: Duration::from_millis(ms),
        f,
    }
}

fn usage(req: &ModelRequest<'_>, output: u64) -> TokenUsage {
    TokenUsage {
        input: baton_core::scripted::input_tokens(req.messages, req.tools),
        output,
        cached_input: 0,
        cache_write_input: 0,
    }
}

fn text(req: &ModelRequest<'_>, t: &str) -> ModelResponse {
    ModelResponse {
        text: Some(t.to_string()),
        tool_calls: vec![],
        usage: usage(req, 5),
        ..ModelResponse::default()
    }
}

fn calls(req: &ModelRequest<'_>, list: &[(&str, serde_json::Value)]) -> ModelResponse {
    ModelResponse {
        text: None,
        tool_calls: list
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("c{}_{i}", req.step),
                name: (*name).into(),
                arguments: args.clone(),
            })
            .collect(),
        usage: usage(req, 10),
        ..ModelResponse::default()
    }
}

/// One reply delegating each (agent, task) of `list`.
fn delegations(req: &ModelRequest<'_>, list: &[(&str, &str)]) -> ModelResponse {
    let list: Vec<(&str, serde_json::Value)> = list
        .iter()
        .map(|(agent, task)| ("delegate", json!({"agent": agent, "task": task})))
        .collect();
    calls(req, &list)
}

fn task_of(req: &ModelRequest<'_>) -> String {
    req.messages
        .iter()
        .find(|m| m.role == Role::User)
        .map_or(String::new(), |m| m.content.clone())
}

fn observations(req: &ModelRequest<'_>) -> String {
    req.messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A tool of a given effect that takes `ms` of virtual time and logs when each call starts and
/// ends (in ms since `origin`).
struct Timed {
    name: &'static str,
    effect: Effect,
    ms: u64,
    origin: Instant,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Tool for Timed {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "takes its time"
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
        let at = |i: Instant| i.duration_since(self.origin).as_millis();
        let dry = if args.get("dry_run").and_then(serde_json::Value::as_bool) == Some(true) {
            " dry"
        } else {
            ""
        };
        self.log.lock().expect("log").push(format!(
            "{}{dry} start {}",
            self.name,
            at(Instant::now())
        ));
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.log.lock().expect("log").push(format!(
            "{}{dry} end {}",
            self.name,
            at(Instant::now())
        ));
        Ok(format!("{}{dry} done", self.name))
    }
}

mod fan_out {
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
}

mod many {
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
        async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
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
                tokio::spawn(
                    async move { rt.submit(format!("alert {i}"), Budget::UNLIMITED).await },
                )
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
}

mod backpressure {
    use super::*;

    fn limited(max: u32, queue: u32) -> Topology {
        TopologyBuilder::new("t")
            .model("m", priced())
            .agent("solo", AgentSpec::new(["m"]).concurrency(max, queue))
            .build()
            .expect("valid")
    }

    /// A report's `wall_ms` is the task's running time; the time it waited for a slot is
    /// `queued_ms`: with one slot, the second of two 50 ms tasks waited 50 ms and ran 50 ms.
    #[tokio::test(start_paused = true)]
    async fn reports_separate_queued_time_from_running_time() {
        let rt = Runtime::builder(limited(1, 1))
            .model("m", slow(50, |r: &ModelRequest<'_>| Ok(text(r, "ok"))))
            .start()
            .await
            .expect("starts");
        let (first, second) = (rt.spawn("one"), rt.spawn("two"));
        let (first, second) = (first.await.expect("runs"), second.await.expect("runs"));
        assert_eq!((first.totals.queued_ms, first.totals.wall_ms), (0, 50));
        assert_eq!((second.totals.queued_ms, second.totals.wall_ms), (50, 50));
        rt.shutdown().await;
    }

    /// With `max_concurrency: 2` and `queue: 1`, a fourth task arriving while three are there is
    /// refused `busy` at once, having spent nothing; the other three complete (two together, then
    /// the queued one).
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_busy_at_once() {
        let rt = Arc::new(
            Runtime::builder(limited(2, 1))
                .model("m", slow(50, |r: &ModelRequest<'_>| Ok(text(r, "ok"))))
                .start()
                .await
                .expect("starts"),
        );
        let t0 = Instant::now();
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let rt = Arc::clone(&rt);
                tokio::spawn(async move {
                    let r = rt.submit(format!("t{i}"), Budget::UNLIMITED).await;
                    (r, Instant::now())
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for r in runs {
            let (run, at) = r.await.expect("joined");
            let run = run.expect("runs");
            outcomes.push((run.result.outcome, at.duration_since(t0).as_millis()));
            if run.result.outcome == Outcome::Busy {
                assert_eq!(run.account.spent(), NanoUsd::ZERO);
                assert!(
                    run.result.text.contains("`solo` is busy"),
                    "{}",
                    run.result.text
                );
            }
        }
        outcomes.sort_by_key(|(_, at)| *at);
        assert_eq!(
            outcomes,
            [
                (Outcome::Busy, 0),
                (Outcome::Completed, 50),
                (Outcome::Completed, 50),
                (Outcome::Completed, 100),
            ]
        );
        assert_eq!(Outcome::Busy.exit_code(), 9);
    }

    /// `max_concurrency: 1` runs an agent's tasks one after another, in arrival order.
    #[tokio::test(start_paused = true)]
    async fn max_concurrency_one_runs_tasks_in_turn() {
        let rt = Arc::new(
            Runtime::builder(limited(1, 100))
                .model(
                    "m",
                    slow(50, |r: &ModelRequest<'_>| Ok(text(r, &task_of(r)))),
                )
                .start()
                .await
                .expect("starts"),
        );
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for i in 0..3 {
            let rt = Arc::clone(&rt);
            handles.push(tokio::spawn(async move {
                let r = rt.submit(format!("t{i}"), Budget::UNLIMITED).await;
                (r, Instant::now())
            }));
            tokio::task::yield_now().await;
        }
        let mut ends = Vec::new();
        for h in handles {
            let (r, at) = h.await.expect("joined");
            ends.push((
                r.expect("runs").result.text,
                at.duration_since(t0).as_millis(),
            ));
        }
        assert_eq!(
            ends,
            [
                ("t0".to_string(), 50),
                ("t1".to_string(), 100),
                ("t2".to_string(), 150)
            ]
        );
    }
}

mod supervision {
    use super::*;
    use baton_topologies::{Activation, OnCrash, Strategy, SupervisionSpec};

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Observer for Log {
        fn on_event(&self, e: &Event<'_>) {
            let line = match e {
                Event::Restarted {
                    agent, supervisor, ..
                } => {
                    format!("restart {agent} by {supervisor}")
                }
                Event::GaveUp { supervisor, .. } => format!("gave up {supervisor}"),
                _ => return,
            };
            self.0.lock().expect("log").push(line);
        }
    }

    /// Two concurrent tasks on one agent, one panics: the other completes; one restart is
    /// recorded, on the crashed task's account.
    #[tokio::test(start_paused = true)]
    async fn a_panic_ends_only_the_task_that_panicked() {
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .agent("solo", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let log = Log::default();
        let rt = Arc::new(
            Runtime::builder(topology)
                .model(
                    "m",
                    slow(50, |r: &ModelRequest<'_>| {
                        if task_of(r) == "boom" {
                            panic!("the model broke");
                        }
                        Ok(text(r, "fine"))
                    }),
                )
                .observer(log.clone())
                .start()
                .await
                .expect("starts"),
        );
        let (a, b) = tokio::join!(
            rt.submit("boom", Budget::UNLIMITED),
            rt.submit("calm", Budget::UNLIMITED)
        );
        let (a, b) = (a.expect("runs"), b.expect("runs"));
        assert_eq!(a.result.outcome, Outcome::Failed);
        assert!(
            a.result.text.contains("the model broke"),
            "{}",
            a.result.text
        );
        assert_eq!(a.account.snapshot().restarts, 1);
        assert_eq!(b.result.outcome, Outcome::Completed);
        assert_eq!(b.account.snapshot().restarts, 0);
        assert_eq!(*log.0.lock().expect("log"), ["restart solo by conductor"]);
    }

    /// A read tool that panics at once.
    struct Boom;

    #[async_trait]
    impl Tool for Boom {
        fn name(&self) -> &str {
            "boom"
        }
        fn description(&self) -> &str {
            "panics"
        }
        fn parameters(&self) -> serde_json::Value {
            json!({"type": "object"})
        }
        async fn call(&self, _: serde_json::Value) -> Result<String, ToolError> {
            panic!("the tool broke")
        }
    }

    /// Counts `finished` events per (agent, outcome).
    #[derive(Clone, Default)]
    struct Ends(Arc<Mutex<Vec<(String, Outcome)>>>);

    impl Observer for Ends {
        fn on_event(&self, e: &Event<'_>) {
            if let Event::Finished { agent, outcome, .. } = e {
                self.0
                    .lock()
                    .expect("ends")
                    .push(((*agent).to_string(), *outcome));
            }
        }
    }

    /// A sub-task runs inside its delegating turn: when another call of that turn crashes the
    /// task, the sub-task is abandoned with the turn — and still ends with exactly one outcome,
    /// `cancelled`, its reservation released (nothing spent on the call it abandoned) and the
    /// money conserved. Both ways: the child running (eager: the sub-task is mid-call on a 50 ms
    /// model) and not yet started (lazy: the turn is still activating the child).
    #[tokio::test(start_paused = true)]
    async fn a_sub_task_abandoned_with_its_turn_still_gets_one_outcome() {
        abandoned_with_its_turn(Activation::Eager).await;
        abandoned_with_its_turn(Activation::Lazy).await;
    }

    async fn abandoned_with_its_turn(activation: Activation) {
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .tool("boom", ToolSpec::custom())
            .agent(
                "lead",
                AgentSpec::new(["m"]).children(["a"]).tools(["boom"]),
            )
            .agent("a", AgentSpec::new(["m"]).activation(activation))
            .build()
            .expect("valid");
        let ends = Ends::default();
        let rt = Runtime::builder(topology)
            .model(
                "m",
                slow(50, |r: &ModelRequest<'_>| {
                    Ok(match r.agent {
                        "lead" => calls(
                            r,
                            &[
                                ("delegate", json!({"agent": "a", "task": "slow part"})),
                                ("boom", json!({})),
                            ],
                        ),
                        _ => text(r, "a done"),
                    })
                }),
            )
            .tool(Boom)
            .observer(ends.clone())
            .start()
            .await
            .expect("starts");
        let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
        assert_eq!(run.result.outcome, Outcome::Failed);
        assert!(
            run.result.text.contains("the tool broke"),
            "{}",
            run.result.text
        );
        let snap = run.account.snapshot();
        assert_eq!(snap.children.len(), 1);
        let child = &snap.children[0];
        assert_eq!(child.outcome, Some(Outcome::Cancelled));
        assert_eq!(
            child.spent,
            NanoUsd::ZERO,
            "the abandoned call books nothing"
        );
        assert_eq!(child.reserved, NanoUsd::ZERO, "its reservation is released");
        run.account.check_conservation().expect("conserved");
        let mut ends = ends.0.lock().expect("ends").clone();
        ends.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            ends,
            [
                ("a".to_string(), Outcome::Cancelled),
                ("lead".to_string(), Outcome::Failed)
            ],
            "one finished event per task"
        );
        rt.shutdown().await;
    }

    /// Under `one_for_all`, a crash of one child's task restarts its siblings: a sibling's task in
    /// flight at that moment ends `cancelled`, naming why; the crashed child's own other task goes
    /// on to complete.
    #[tokio::test(start_paused = true)]
    async fn one_for_all_cancels_siblings_in_flight_tasks() {
        let eager = || AgentSpec::new(["m"]).activation(Activation::Eager);
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .agent(
                "lead",
                AgentSpec::new(["m"])
                    .children(["a", "b"])
                    .supervision(SupervisionSpec {
                        strategy: Some(Strategy::OneForAll),
                        max_restarts: Some(10),
                        ..SupervisionSpec::default()
                    }),
            )
            .agent("a", eager())
            .agent("b", eager())
            .build()
            .expect("valid");
        let model = |r: &ModelRequest<'_>| -> Result<ModelResponse, ModelError> {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => {
                    delegations(r, &[("a", "crash soon"), ("a", "slow a"), ("b", "slow b")])
                }
                ("lead", _) => text(r, &observations(r)),
                _ => text(r, "ok"),
            })
        };
        struct Varied<F>(F);
        #[async_trait]
        impl<F> Model for Varied<F>
        where
            F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
        {
            async fn call(&self, r: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
                let task = task_of(&r);
                if task == "crash soon" {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    panic!("a's task broke");
                }
                let ms = if task.starts_with("slow") { 100 } else { 1 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (self.0)(&r)
            }
        }
        let log = Log::default();
        let rt = Runtime::builder(topology)
            .model("m", Varied(model))
            .observer(log.clone())
            .start()
            .await
            .expect("starts");
        let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
        let seen: Vec<&str> = run.result.text.split(" | ").collect();
        assert!(
            seen[0].starts_with("`a` ended failed: `a` crashed"),
            "{seen:?}"
        );
        assert_eq!(seen[1], "ok", "a's other task goes on");
        assert!(
            seen[2]
                .starts_with("`b` ended cancelled: restarted by `lead` (one_for_all): sibling `a`"),
            "{seen:?}"
        );
        assert_eq!(
            *log.0.lock().expect("log"),
            ["restart a by lead", "restart b by lead"]
        );
        // The report agrees with the log (and `baton_restarts_total`): the sibling's restart is
        // counted for `b`, whose task it cut short.
        let report = baton_actors::RunReport::from_ledger(
            &run.account.snapshot(),
            run.result.outcome,
            None,
            None,
        );
        let restarts = |name: &str| {
            report
                .agents
                .iter()
                .find(|a| a.name == name)
                .map_or(0, |a| a.restarts)
        };
        assert_eq!(
            (restarts("a"), restarts("b")),
            (1, 1),
            "{:?}",
            report.agents
        );
        assert_eq!(report.totals.restarts, 2);
        run.account.check_conservation().expect("conserved");
    }

    /// OTP's restart types and Baton's lazy activation under `one_for_all`, without forcing
    /// every child eager: when `a` crashes, the running temporary sibling `t` is stopped and
    /// stays stopped (a later task for it is refused, saying why), and the lazy sibling `z`,
    /// never started, is left alone (no restart event); only `a` comes back.
    #[tokio::test(start_paused = true)]
    async fn temporary_siblings_stay_stopped_and_lazy_ones_are_left_alone() {
        use baton_topologies::RestartType;
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .agent(
                "lead",
                AgentSpec::new(["m"])
                    .children(["a", "t", "z"])
                    .supervision(SupervisionSpec {
                        strategy: Some(Strategy::OneForAll),
                        max_restarts: Some(10),
                        ..SupervisionSpec::default()
                    }),
            )
            .agent("a", AgentSpec::new(["m"]).activation(Activation::Eager))
            .agent(
                "t",
                AgentSpec::new(["m"])
                    .activation(Activation::Eager)
                    .restart(RestartType::Temporary),
            )
            .agent("z", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let model = slow(10, |r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step, task_of(r).as_str()) {
                ("lead", 1, "crash") => delegations(r, &[("a", "boom")]),
                ("lead", 1, _) => delegations(r, &[("t", "after")]),
                ("lead", _, _) => text(r, &observations(r)),
                ("a", _, "boom") => panic!("a broke"),
                _ => text(r, "ok"),
            })
        });
        let log = Log::default();
        let rt = Runtime::builder(topology)
            .model("m", model)
            .observer(log.clone())
            .start()
            .await
            .expect("starts");
        let first = rt.submit("crash", Budget::UNLIMITED).await.expect("runs");
        assert!(
            first.result.text.starts_with("`a` ended failed"),
            "{}",
            first.result.text
        );
        assert_eq!(
            *log.0.lock().expect("log"),
            ["restart a by lead"],
            "t (temporary) is not restarted, z (lazy, never started) is not touched"
        );
        let later = rt.submit("use t", Budget::UNLIMITED).await.expect("runs");
        assert_eq!(
            later.result.text,
            "`t` ended failed: `t` has stopped and is temporary: it is not restarted",
            "a stopped temporary child takes no task"
        );
        rt.shutdown().await;
    }

    /// A supervisor that gives up leaves no task without an outcome: every account of the run
    /// (the crashed children's, the one held when it gave up, the root's) ends with exactly one.
    #[tokio::test(start_paused = true)]
    async fn a_give_up_leaves_every_task_with_an_outcome() {
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .agent(
                "lead",
                AgentSpec::new(["m"])
                    .children(["c"])
                    .supervision(SupervisionSpec {
                        max_restarts: Some(2),
                        within: Some(Duration::from_secs(60)),
                        ..SupervisionSpec::default()
                    }),
            )
            .agent("c", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let model = slow(1, |r: &ModelRequest<'_>| {
            if r.agent == "c" {
                panic!("c always crashes");
            }
            Ok(match r.step {
                1..=4 => calls(r, &[("delegate", json!({"agent": "c", "task": "x"}))]),
                _ => text(r, &observations(r)),
            })
        });
        let log = Log::default();
        let rt = Runtime::builder(topology)
            .model("m", model)
            .observer(log.clone())
            .start()
            .await
            .expect("starts");
        let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
        assert_eq!(run.result.outcome, Outcome::Failed);
        assert!(
            run.result
                .text
                .contains("supervisor `lead` gave up: more than 2 restarts"),
            "{}",
            run.result.text
        );
        let snap = run.account.snapshot();
        let mut outcomes = Vec::new();
        snap.walk(&mut |a| outcomes.push((a.agent.clone(), a.outcome, a.restarts)));
        assert_eq!(outcomes.len(), 4, "{outcomes:?}");
        assert!(outcomes.iter().all(|(_, o, _)| o.is_some()), "{outcomes:?}");
        // Two restarts happened (the third crash gave up): the report counts restarts.
        let restarts: u64 = outcomes.iter().map(|(_, _, r)| r).sum();
        assert_eq!(restarts, 2, "{outcomes:?}");
        assert_eq!(
            *log.0.lock().expect("log"),
            [
                "restart c by lead",
                "restart c by lead",
                "gave up lead",
                "restart lead by conductor"
            ]
        );
        run.account.check_conservation().expect("conserved");
    }

    /// A retried task resumes: the destructive call its crashed attempt completed is not made
    /// again (the model sees the earlier result), and the dry run before it still counts.
    #[tokio::test(start_paused = true)]
    async fn a_retry_does_not_repeat_a_completed_destructive_call() {
        let origin = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut spec = TopologyBuilder::new("t")
            .model("m", priced())
            .tool("restart", ToolSpec::custom())
            .agent(
                "ops",
                AgentSpec::new(["m"])
                    .tools(["restart"])
                    .on_crash(OnCrash::Retry),
            )
            .build()
            .expect("valid")
            .spec()
            .clone();
        spec.policy = Some(PolicySpec {
            dry_run_first: Some(true),
            ..PolicySpec::default()
        });
        let topology = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
        let crashes = Arc::new(AtomicU32::new(1));
        let left = Arc::clone(&crashes);
        let model = slow(1, move |r: &ModelRequest<'_>| {
            Ok(match r.step {
                1 => calls(
                    r,
                    &[("restart", json!({"service": "api", "dry_run": true}))],
                ),
                2 => calls(r, &[("restart", json!({"service": "api"}))]),
                _ => {
                    if left.swap(0, Ordering::SeqCst) == 1 {
                        panic!("crash after the restart");
                    }
                    text(r, &observations(r))
                }
            })
        });
        let rt = Runtime::builder(topology)
            .model("m", model)
            .tool(Timed {
                name: "restart",
                effect: Effect::Destructive,
                ms: 1,
                origin,
                log: Arc::clone(&log),
            })
            .start()
            .await
            .expect("starts");
        let run = rt.submit("fix", Budget::UNLIMITED).await.expect("runs");
        assert_eq!(
            run.result.outcome,
            Outcome::Completed,
            "{}",
            run.result.text
        );
        let real: Vec<String> = log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.starts_with("restart start"))
            .cloned()
            .collect();
        assert_eq!(real.len(), 1, "the real restart ran once: {real:?}");
        assert!(
            run.result
                .text
                .contains("(done before the crash; not repeated) restart done"),
            "{}",
            run.result.text
        );
        assert_eq!(run.account.snapshot().restarts, 1);
    }
}

mod harness {
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
        async fn call(&self, _: serde_json::Value) -> Result<String, ToolError> {
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
}

mod money {
    use super::*;

    /// Three children started together race for a lead budget that covers two of their calls:
    /// exactly two are served, the third is refused before spending, and nothing overspends.
    #[tokio::test(start_paused = true)]
    async fn parallel_children_race_for_the_last_of_a_budget() {
        let topology = TopologyBuilder::new("t")
            .model("m", priced())
            .agent("lead", AgentSpec::new(["m"]).children(["a", "b", "c"]))
            .agent("a", AgentSpec::new(["m"]))
            .agent("b", AgentSpec::new(["m"]))
            .agent("c", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let lead_first_input = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = Arc::clone(&lead_first_input);
        let model = slow(50, move |r: &ModelRequest<'_>| {
            if (r.agent, r.step) == ("lead", 1) {
                seen.store(usage(r, 0).input, Ordering::SeqCst);
            }
            Ok(match (r.agent, r.step) {
                ("lead", 1) => delegations(r, &[("a", "x"), ("b", "x"), ("c", "x")]),
                ("lead", _) => text(r, &observations(r)),
                _ => text(r, "ok"),
            })
        });
        let rt = Runtime::builder(topology)
            .model("m", model)
            .start()
            .await
            .expect("starts");
        // Measure a child's call and the lead's first call, then grant the run the lead's first
        // call and two and a half children's worst cases.
        let probe = rt.submit("probe", Budget::UNLIMITED).await.expect("runs");
        let snap = probe.account.snapshot();
        let child_spent = snap.children[0].spent;
        // A child's reservation: its prompt + 100 output tokens at $1/Mtok (it bills 5 out).
        let child_worst = NanoUsd(child_spent.0 + 95 * 1000);
        // The lead's first call bills its prompt and 10 output tokens.
        let lead_first = NanoUsd((lead_first_input.load(Ordering::SeqCst) + 10) * 1000);
        let limit = NanoUsd(lead_first.0 + 2 * child_worst.0 + child_worst.0 / 2);
        let run = rt
            .submit(
                "race",
                Budget {
                    max_cost: Some(limit),
                    ..Budget::UNLIMITED
                },
            )
            .await
            .expect("runs");
        let snap = run.account.snapshot();
        let outcomes: Vec<_> = snap.children.iter().map(|c| c.outcome).collect();
        let served = outcomes
            .iter()
            .filter(|o| **o == Some(Outcome::Completed))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == Some(Outcome::BudgetExceeded))
            .count();
        assert_eq!((served, refused), (2, 1), "{outcomes:?}");
        assert!(snap.spent <= limit, "{} > {limit}", snap.spent);
        run.account.check_conservation().expect("conserved");
    }

    /// Accounts are freed when their tasks are done: hundreds of W1 tasks leave the count of
    /// live accounts where it was (the ledger has no reference cycle).
    #[tokio::test]
    async fn finished_tasks_leave_no_accounts_behind() {
        let rt = super::many::w1_runtime(0).await;
        for _ in 0..50 {
            drop(rt.submit("warm", Budget::UNLIMITED).await.expect("runs"));
        }
        let before = baton_core::live_accounts();
        for i in 0..500 {
            let run = rt
                .submit(format!("t{i}"), Budget::UNLIMITED)
                .await
                .expect("runs");
            assert_eq!(run.result.outcome, Outcome::Completed);
        }
        // Other tests in this binary run beside this one: allow their few tasks in flight.
        let after = baton_core::live_accounts();
        assert!(
            after <= before + 64,
            "{before} live accounts before 500 tasks, {after} after"
        );
        let _ = BudgetSpec::default();
    }
}

mod handle {
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
}
