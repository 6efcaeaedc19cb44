//! Supervision with tasks in flight: one outcome per task, always.

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

/// A runtime of `topology` on `model` (named `m`), with its supervision events logged.
async fn start_logged(topology: Topology, model: impl Model) -> (Runtime, Log) {
    let log = Log::default();
    let rt = Runtime::builder(topology)
        .model("m", model)
        .observer(log.clone())
        .start()
        .await
        .expect("starts");
    (rt, log)
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
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        _: serde_json::Value,
    ) -> Result<String, ToolError> {
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
            ("lead", 1) => delegations(r, &[("a", "crash soon"), ("a", "slow a"), ("b", "slow b")]),
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
        seen[2].starts_with("`b` ended cancelled: restarted by `lead` (one_for_all): sibling `a`"),
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
    let (rt, log) = start_logged(topology, model).await;
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
    let (rt, log) = start_logged(topology, model).await;
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

/// A retried task whose retry crashes too ends `failed` with the crash reason: a task is
/// retried once, never in a loop.
#[tokio::test(start_paused = true)]
async fn a_retry_that_crashes_again_ends_failed() {
    let topology = TopologyBuilder::new("t")
        .model("m", priced())
        .agent("lead", AgentSpec::new(["m"]).children(["c"]))
        .agent("c", AgentSpec::new(["m"]).on_crash(OnCrash::Retry))
        .build()
        .expect("valid");
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let model = slow(1, move |r: &ModelRequest<'_>| {
        if r.agent == "c" {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            panic!("c crashed on attempt {n}");
        }
        Ok(match r.step {
            1 => calls(r, &[("delegate", json!({"agent": "c", "task": "x"}))]),
            _ => text(r, &observations(r)),
        })
    });
    let (rt, log) = start_logged(topology, model).await;
    let run = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one attempt and one retry"
    );
    assert_eq!(run.result.outcome, Outcome::Completed, "lead carries on");
    let snap = run.account.snapshot();
    let c = &snap.children[0];
    assert_eq!(c.outcome, Some(Outcome::Failed));
    assert!(
        run.result.text.contains("c crashed on attempt 2"),
        "the retry's crash is the reason: {}",
        run.result.text
    );
    assert_eq!(
        *log.0.lock().expect("log"),
        ["restart c by lead", "restart c by lead"],
        "c is permanent: restarted after each crash; the task was retried once"
    );
    assert_eq!(c.restarts, 2, "the report agrees with the log");
    run.account.check_conservation().expect("conserved");
    rt.shutdown().await;
}

/// Tasks waiting (admitted, not started) for a root agent that gives up are delivered to the
/// root the conductor starts in its place, and complete; only the task in flight fails.
#[tokio::test(start_paused = true)]
async fn tasks_waiting_for_a_root_that_gives_up_run_on_its_successor() {
    let topology = TopologyBuilder::new("t")
        .model("m", priced())
        .agent(
            "lead",
            AgentSpec::new(["m"])
                .children(["c"])
                .concurrency(1, 4)
                .supervision(SupervisionSpec {
                    max_restarts: Some(0),
                    ..SupervisionSpec::default()
                }),
        )
        .agent("c", AgentSpec::new(["m"]))
        .build()
        .expect("valid");
    let model = slow(10, |r: &ModelRequest<'_>| {
        if r.agent == "c" {
            panic!("c broke");
        }
        Ok(match (task_of(r).as_str(), r.step) {
            ("crash", 1) => calls(r, &[("delegate", json!({"agent": "c", "task": "x"}))]),
            (task, _) => text(r, &format!("{task} done")),
        })
    });
    let (rt, log) = start_logged(topology, model).await;
    let crash = rt.spawn("crash");
    let first = rt.spawn("first");
    let second = rt.spawn("second");
    let crash = crash.await.expect("a report");
    assert_eq!(crash.outcome, Outcome::Failed);
    assert!(
        crash
            .answer
            .as_deref()
            .unwrap_or_default()
            .contains("gave up")
            || crash
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("gave up"),
        "{crash:?}"
    );
    for (handle, want) in [(first, "first done"), (second, "second done")] {
        let report = handle.await.expect("a report");
        assert_eq!(report.outcome, Outcome::Completed, "{report:?}");
        assert_eq!(report.answer.as_deref(), Some(want));
    }
    assert_eq!(
        *log.0.lock().expect("log"),
        ["gave up lead", "restart lead by conductor"]
    );
    assert!(rt.down().is_none(), "the runtime carries on");
    rt.shutdown().await;
}
