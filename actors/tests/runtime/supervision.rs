//! Supervision strategies, restart types and intensity, against OTP's documented behaviour.

use super::*;
use baton_actors::{Event, Observer};
use baton_topologies::{Activation, BudgetAction, OnCrash, RestartType, Strategy, SupervisionSpec};
use std::sync::Mutex;

/// Records supervision and budget events as text, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Observer for Log {
    fn on_event(&self, e: &Event<'_>) {
        let line = match e {
            Event::Restarted {
                agent, supervisor, ..
            } => format!("restart {agent} by {supervisor}"),
            Event::GaveUp { supervisor, .. } => format!("gave up {supervisor}"),
            Event::BudgetAction { agent, action, .. } => format!("{agent}: {action}"),
            Event::Finished { agent, outcome, .. } => format!("finished {agent} {outcome}"),
            _ => return,
        };
        self.0.lock().expect("log lock").push(line);
    }
}

impl Log {
    fn lines(&self, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// A model where `lead` delegates the task's words `to X` to X (once per step, in order), and
/// children panic when their task says `crash` while `bombs` lasts.
fn model(bombs: Arc<AtomicU32>) -> impl Model {
    FnModel::new(move |r: &ModelRequest<'_>| {
        let task = r
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        if r.agent == "lead" {
            let targets: Vec<&str> = task
                .split("to ")
                .skip(1)
                .map(|t| t.split_whitespace().next().unwrap_or(""))
                .collect();
            return Ok(match targets.get(r.step as usize - 1) {
                Some(t) => call(r, "delegate", json!({"agent": t, "task": task})),
                None => {
                    let seen: Vec<&str> = r
                        .messages
                        .iter()
                        .filter(|m| m.role == Role::Tool)
                        .map(|m| m.content.as_str())
                        .collect();
                    text(r, &seen.join(" | "))
                }
            });
        }
        if task.contains("crash") && bombs.load(Ordering::SeqCst) > 0 {
            bombs.fetch_sub(1, Ordering::SeqCst);
            panic!("{} blew up", r.agent);
        }
        Ok(text(r, &format!("{} ok", r.agent)))
    })
}

fn family(strategy: Strategy, b: AgentSpec, sup: Option<SupervisionSpec>) -> Topology {
    let child = || AgentSpec::new(["m"]).activation(Activation::Eager);
    let mut lead_sup = SupervisionSpec {
        strategy: Some(strategy),
        max_restarts: Some(10),
        ..SupervisionSpec::default()
    };
    if let Some(s) = sup {
        lead_sup = s;
    }
    TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent(
            "lead",
            AgentSpec::new(["m"])
                .children(["a", "b", "c"])
                .supervision(lead_sup),
        )
        .agent("a", child())
        .agent("b", b.activation(Activation::Eager))
        .agent("c", child())
        .build()
        .expect("valid")
}

async fn start(topology: Topology, bombs: u32) -> (Runtime, Log) {
    let log = Log::default();
    let rt = Runtime::builder(topology)
        .model("m", model(Arc::new(AtomicU32::new(bombs))))
        .observer(log.clone())
        .start()
        .await
        .expect("starts");
    (rt, log)
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let (rt, log) = start(family(Strategy::OneForOne, AgentSpec::new(["m"]), None), 1).await;
    let run = rt
        .submit("crash to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert!(
        run.result
            .text
            .contains("`b` ended failed: `b` crashed: model `m` panicked: b blew up"),
        "{}",
        run.result.text
    );
    assert_eq!(log.lines("restart"), ["restart b by lead"]);
    rt.shutdown().await;
}

#[tokio::test]
async fn one_for_all_restarts_every_child_in_start_order() {
    let (rt, log) = start(family(Strategy::OneForAll, AgentSpec::new(["m"]), None), 1).await;
    rt.submit("crash to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(
        log.lines("restart"),
        [
            "restart a by lead",
            "restart b by lead",
            "restart c by lead"
        ]
    );
    rt.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let (rt, log) = start(family(Strategy::RestForOne, AgentSpec::new(["m"]), None), 1).await;
    rt.submit("crash to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(
        log.lines("restart"),
        ["restart b by lead", "restart c by lead"]
    );
    rt.shutdown().await;
}

#[tokio::test]
async fn temporary_child_is_not_restarted() {
    let b = AgentSpec::new(["m"]).restart(RestartType::Temporary);
    let (rt, log) = start(family(Strategy::OneForOne, b, None), 1).await;
    let run = rt
        .submit("crash to b then to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert!(log.lines("restart").is_empty());
    assert!(
        run.result.text.contains("has stopped and is temporary"),
        "{}",
        run.result.text
    );
    rt.shutdown().await;
}

#[tokio::test]
async fn transient_child_is_restarted_after_a_crash() {
    let b = AgentSpec::new(["m"]).restart(RestartType::Transient);
    let (rt, log) = start(family(Strategy::OneForOne, b, None), 1).await;
    let run = rt
        .submit("crash to b then to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(log.lines("restart"), ["restart b by lead"]);
    assert!(run.result.text.ends_with("| b ok"), "{}", run.result.text);
    rt.shutdown().await;
}

#[tokio::test]
async fn intensity_exceeded_gives_up_and_escalates_to_the_conductor() {
    let sup = SupervisionSpec {
        max_restarts: Some(2),
        within: Some(Duration::from_secs(60)),
        ..SupervisionSpec::default()
    };
    let (rt, log) = start(
        family(Strategy::OneForOne, AgentSpec::new(["m"]), Some(sup)),
        100,
    )
    .await;
    let run = rt
        .submit("crash to b to b to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(run.result.outcome, Outcome::Failed);
    assert!(
        run.result
            .text
            .contains("supervisor `lead` gave up: more than 2 restarts within 1m"),
        "{}",
        run.result.text
    );
    assert_eq!(
        log.lines("restart"),
        [
            "restart b by lead",
            "restart b by lead",
            "restart lead by conductor"
        ]
    );
    assert_eq!(log.lines("gave up"), ["gave up lead"]);
    // The conductor restarted the root agent: the next task runs.
    let next = rt
        .submit("to a", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(next.result.outcome, Outcome::Completed);
    rt.shutdown().await;
}

#[tokio::test]
async fn conductor_gives_up_past_its_own_intensity() {
    let topology = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent("solo", AgentSpec::new(["m"]))
        .build()
        .expect("valid");
    let mut spec = topology.spec().clone();
    spec.supervision = Some(SupervisionSpec {
        max_restarts: Some(1),
        within: Some(Duration::from_secs(60)),
        ..SupervisionSpec::default()
    });
    let topology = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let boom = FnModel::new(
        |_: &ModelRequest<'_>| -> Result<ModelResponse, ModelError> { panic!("always") },
    );
    let rt = Runtime::builder(topology)
        .model("m", boom)
        .start()
        .await
        .expect("starts");
    for _ in 0..2 {
        let run = rt.submit("x", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(run.result.outcome, Outcome::Failed);
    }
    let mut refused = None;
    for _ in 0..100 {
        match rt.submit("x", Budget::UNLIMITED).await {
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let refused = refused.expect("the runtime stops taking tasks");
    assert!(
            refused
                .contains("the conductor gave up: the root agent `solo` crashed more than 1 times within 1m (last: `solo` crashed: model `m` panicked: always)"),
            "{refused}"
        );
}

#[tokio::test]
async fn on_crash_retry_runs_the_task_again_on_the_restarted_child() {
    let b = AgentSpec::new(["m"]).on_crash(OnCrash::Retry);
    let (rt, log) = start(family(Strategy::OneForOne, b, None), 1).await;
    let run = rt
        .submit("crash to b", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert_eq!(run.result.text, "b ok");
    let snap = run.account.snapshot();
    let b = &snap.children[0];
    assert_eq!((b.restarts, b.outcome), (1, Some(Outcome::Completed)));
    assert_eq!(
        b.own.model_calls, 1,
        "the crashed call was not billed; the retry was"
    );
    assert_eq!(log.lines("restart"), ["restart b by lead"]);
    run.account.check_conservation().expect("conserved");
    rt.shutdown().await;
}

#[tokio::test]
async fn root_on_crash_retry() {
    let topology = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent("solo", AgentSpec::new(["m"]).on_crash(OnCrash::Retry))
        .build()
        .expect("valid");
    let (rt, _) = start(topology, 1).await;
    let run = rt
        .submit("crash", Budget::UNLIMITED)
        .await
        .expect("answered");
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert_eq!(run.account.snapshot().restarts, 1);
    rt.shutdown().await;
}

fn budget_tree(action: BudgetAction) -> Topology {
    TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .model(
            "cheap",
            ModelSpec::custom(baton_core::Price::per_million_tokens(
                NanoUsd(10_000_000),
                NanoUsd(10_000_000),
            ))
            .max_output_tokens(20),
        )
        .tool("echo", ToolSpec::custom())
        .agent("lead", AgentSpec::new(["m"]).children(["a", "lite"]))
        .agent(
            "a",
            AgentSpec::new(["m"])
                .tools(["echo"])
                .budget(BudgetSpec {
                    max_usd: usd("0.001"),
                    ..BudgetSpec::default()
                })
                .on_budget_exceeded(action, (action == BudgetAction::Reroute).then_some("lite")),
        )
        .agent("lite", AgentSpec::new(["cheap"]))
        .build()
        .expect("valid")
}

fn spender() -> impl Model {
    FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => call(r, "delegate", json!({"agent": "a", "task": "spend"})),
            ("lead", _) => text(
                r,
                &r.messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
            ),
            ("a", _) => call(r, "echo", json!({})),
            _ => text(r, "lite finished it"),
        })
    })
}

#[tokio::test]
async fn cut_off_stops_the_child_and_records_it() {
    let log = Log::default();
    let rt = Runtime::builder(budget_tree(BudgetAction::CutOff))
        .model("m", spender())
        .model("cheap", spender())
        .tool(echo())
        .observer(log.clone())
        .start()
        .await
        .expect("starts");
    let report = rt.run("go").await.expect("runs");
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(
        report
            .answer
            .as_deref()
            .unwrap_or("")
            .starts_with("`a` was cut off: budget of `a`"),
        "{report:?}"
    );
    let a = report.agents.iter().find(|x| x.name == "a").expect("a ran");
    assert_eq!(a.outcome, Some(Outcome::BudgetExceeded));
    assert!(a.cost_nanousd <= 1_000_000);
    let kinds: Vec<_> = a.budget_events.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            baton_core::BudgetEventKind::Refused,
            baton_core::BudgetEventKind::CutOff
        ]
    );
    assert_eq!(log.lines("a:"), ["a: cut_off"]);
    rt.shutdown().await;
}

#[tokio::test]
async fn reroute_hands_the_rest_to_the_fallback_with_what_is_left() {
    let rt = Runtime::builder(budget_tree(BudgetAction::Reroute))
        .model("m", spender())
        .model("cheap", spender())
        .tool(echo())
        .start()
        .await
        .expect("starts");
    let raw = rt.submit("go", Budget::UNLIMITED).await.expect("runs");
    assert_eq!(raw.result.outcome, Outcome::Completed);
    assert_eq!(raw.result.text, "lite finished it");
    let snap = raw.account.snapshot();
    let (a, lite) = (&snap.children[0], &snap.children[1]);
    assert_eq!(a.outcome, Some(Outcome::BudgetExceeded));
    assert_eq!(lite.agent, "lite");
    assert_eq!(lite.outcome, Some(Outcome::Completed));
    let left = 1_000_000 - a.spent.0;
    assert_eq!(
        lite.limit,
        Some(NanoUsd(left)),
        "the fallback gets what is left of the budget"
    );
    assert!(
        a.spent.0 + lite.spent.0 <= 1_000_000,
        "together they stay within the original slice"
    );
    let report = RunReport::from_ledger(&snap, raw.result.outcome, None, None);
    assert_eq!(report.totals.reroutes, 1);
    raw.account.check_conservation().expect("conserved");
    rt.shutdown().await;
}

#[tokio::test]
async fn reroute_to_a_cheaper_model_below_the_quality_bar() {
    let mut cheap = ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd(10_000_000),
        NanoUsd(10_000_000),
    ))
    .max_output_tokens(100);
    cheap.quality = Some(50);
    let mut pricey = dollar_per_mtok();
    pricey.quality = Some(90);
    let topology = TopologyBuilder::new("t")
        .model("cheap", cheap)
        .model("m", pricey)
        .agent(
            "solo",
            AgentSpec::new(["cheap", "m"])
                .quality_bar(80)
                .on_budget_exceeded(BudgetAction::Reroute, None)
                .budget(BudgetSpec {
                    max_usd: usd("0.00005"),
                    ..BudgetSpec::default()
                }),
        )
        .build()
        .expect("valid");
    let rt = Runtime::builder(topology)
        .model("cheap", ScriptedModel::always("cheap", "from cheap"))
        .model("m", ScriptedModel::always("m", "from pricey"))
        .start()
        .await
        .expect("starts");
    let report = rt.run("go").await.expect("runs");
    assert_eq!(report.answer.as_deref(), Some("from cheap"));
    assert_eq!(report.totals.reroutes, 1);
    assert_eq!(
        report.agents[0].budget_events[0].event.kind,
        baton_core::BudgetEventKind::ReroutedModel
    );
    rt.shutdown().await;
}

/// A budget shared with other replicas, in memory: it covers calls up to `max` nano-dollars
/// each, and counts what was committed on it.
struct SharedCap {
    max: u64,
    committed: Arc<std::sync::atomic::AtomicU64>,
}

struct SharedCapHold(Arc<std::sync::atomic::AtomicU64>);

impl baton_core::SharedHold for SharedCapHold {
    fn commit(self: Box<Self>, spent: NanoUsd) {
        self.0
            .fetch_add(spent.0, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl baton_core::SharedBudget for SharedCap {
    fn name(&self) -> &str {
        "fleet"
    }

    async fn reserve(&self, cost: NanoUsd) -> Result<baton_core::SharedReserved, String> {
        Ok(if cost.0 <= self.max {
            baton_core::SharedReserved::Held(Box::new(SharedCapHold(Arc::clone(&self.committed))))
        } else {
            baton_core::SharedReserved::Refused("fleet/hour/2026-12-06T09".into())
        })
    }
}

/// A shared budget that refuses a call is a budget refusal like the task's own ledger's: with
/// `on_budget_exceeded: reroute` the step goes to a cheaper model below the quality bar (rather
/// than the task ending), and what the call cost is committed on the shared budget too; without
/// reroute the task ends `budget_exceeded` naming the shared limit that refused.
#[tokio::test]
async fn a_shared_budget_refusal_reroutes_below_the_quality_bar() {
    let topology = |action| {
        let mut cheap = ModelSpec::custom(baton_core::Price::per_million_tokens(
            NanoUsd(10_000_000),
            NanoUsd(10_000_000),
        ))
        .max_output_tokens(100);
        cheap.quality = Some(50);
        let mut pricey = dollar_per_mtok();
        pricey.quality = Some(90);
        TopologyBuilder::new("t")
            .model("cheap", cheap)
            .model("m", pricey)
            .agent(
                "solo",
                AgentSpec::new(["cheap", "m"])
                    .quality_bar(80)
                    .on_budget_exceeded(action, None),
            )
            .build()
            .expect("valid")
    };
    for action in [BudgetAction::Reroute, BudgetAction::CutOff] {
        let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rt = Runtime::builder(topology(action))
            .model("cheap", ScriptedModel::always("cheap", "from cheap"))
            .model("m", ScriptedModel::always("m", "from pricey"))
            // The cheap rung's worst case fits; the pricey one's does not.
            .shared_budget(Arc::new(SharedCap {
                max: 100_000,
                committed: Arc::clone(&committed),
            }))
            .start()
            .await
            .expect("starts");
        let report = rt.run("go").await.expect("runs");
        if action == BudgetAction::Reroute {
            assert_eq!(report.answer.as_deref(), Some("from cheap"), "{report:?}");
            assert_eq!(report.totals.reroutes, 1);
            assert_eq!(
                committed.load(std::sync::atomic::Ordering::SeqCst),
                report.totals.cost_nanousd,
                "the shared budget holds what the calls cost"
            );
        } else {
            assert_eq!(report.outcome, baton_core::Outcome::BudgetExceeded);
            let error = report.error.as_deref().unwrap_or_default();
            assert!(
                error.contains("the shared budget `fleet/hour/2026-12-06T09` cannot cover"),
                "{error}"
            );
            assert_eq!(committed.load(std::sync::atomic::Ordering::SeqCst), 0);
        }
        rt.shutdown().await;
    }
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_subtree() {
    let topology = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .model("slow", dollar_per_mtok())
        .agent("lead", AgentSpec::new(["m"]).children(["w"]))
        .agent("w", AgentSpec::new(["slow"]))
        .build()
        .expect("valid");
    let rt = Arc::new(
        Runtime::builder(topology)
            .model(
                "m",
                FnModel::new(|r: &ModelRequest<'_>| {
                    Ok(match r.step {
                        1 => call(
                            r,
                            "delegate",
                            json!({"agent": "w", "task": "take your time"}),
                        ),
                        _ => text(r, "lead done"),
                    })
                }),
            )
            .model(
                "slow",
                ScriptedModel::always("slow", "late").with_latency(Duration::from_secs(60)),
            )
            .start()
            .await
            .expect("starts"),
    );
    let runner = Arc::clone(&rt);
    let handle = tokio::spawn(async move { runner.submit("go", Budget::UNLIMITED).await });
    let mut id = None;
    for _ in 0..200 {
        if let Some(t) = rt.tasks_in_flight().first() {
            id = Some(*t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = id.expect("the task is in flight");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(rt.cancel(id));
    let run = handle.await.expect("joined").expect("answered");
    assert_eq!(run.result.outcome, Outcome::Cancelled);
    let snap = run.account.snapshot();
    assert_eq!(
        snap.children[0].outcome,
        Some(Outcome::Cancelled),
        "the child was cancelled too"
    );
    assert_eq!(
        snap.reserved,
        NanoUsd::ZERO,
        "the abandoned call's reservation was released"
    );
    assert!(!rt.cancel(id), "no longer in flight");
}

#[tokio::test]
async fn dropping_the_caller_cancels_the_task() {
    let log = Log::default();
    let topology = single(AgentSpec::new(["m"]));
    let rt = Runtime::builder(topology)
        .model(
            "m",
            ScriptedModel::always("m", "late").with_latency(Duration::from_secs(60)),
        )
        .tool(echo())
        .observer(log.clone())
        .start()
        .await
        .expect("starts");
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        rt.submit("go", Budget::UNLIMITED),
    )
    .await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    for _ in 0..200 {
        if !log.lines("finished").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(log.lines("finished"), ["finished solo cancelled"]);
    assert!(rt.tasks_in_flight().is_empty());
    rt.shutdown().await;
}
