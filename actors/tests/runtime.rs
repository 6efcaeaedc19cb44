//! Integration tests of the runtime: a task's life through the conductor and its agents.
//!
//! - `loop_`: termination conditions (answer, max_steps, deadline, budget) and failures (model
//!   errors and panics, tool errors and panics).
//! - `delegation`: delegation, child budgets, and ledger conservation across the tree.
//! - `concurrency`: many tasks at once, each ending exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use baton_actors::{RunReport, Runtime};
use baton_core::{
    Budget, Model, ModelError, ModelRequest, ModelResponse, NanoUsd, Outcome, Role, ScriptedModel,
    TokenUsage, Tool, ToolCall, ToolError, async_trait,
};
use baton_topologies::{AgentSpec, BudgetSpec, ModelSpec, ToolSpec, Topology, TopologyBuilder};
use serde_json::json;

/// $1 per million tokens in and out: 1000 nano-dollars per token.
fn dollar_per_mtok() -> ModelSpec {
    ModelSpec::custom(NanoUsd::from_usd(1), NanoUsd::from_usd(1)).max_output_tokens(100)
}

fn usd(s: &str) -> Option<baton_core::Usd> {
    Some(baton_core::Usd(
        NanoUsd::parse_usd(s).expect("valid amount"),
    ))
}

/// A model driven by a closure over (agent, step, last message).
struct FnModel<F>(F);

#[async_trait]
impl<F> Model for FnModel<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        (self.0)(&request)
    }
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        baton_core::scripted::input_tokens(request.messages, request.tools)
    }
}

fn usage(req: &ModelRequest<'_>, output: u64) -> TokenUsage {
    TokenUsage {
        input: baton_core::scripted::input_tokens(req.messages, req.tools),
        output,
        cached_input: 0,
    }
}

fn text(req: &ModelRequest<'_>, t: &str) -> ModelResponse {
    ModelResponse {
        text: Some(t.to_string()),
        tool_calls: vec![],
        usage: usage(req, 5),
    }
}

fn call(req: &ModelRequest<'_>, name: &str, args: serde_json::Value) -> ModelResponse {
    ModelResponse {
        text: None,
        tool_calls: vec![ToolCall {
            id: format!("c{}", req.step),
            name: name.into(),
            arguments: args,
        }],
        usage: usage(req, 10),
    }
}

struct Echo;

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
        match args.get("mode").and_then(|m| m.as_str()) {
            Some("panic") => panic!("echo was asked to panic"),
            Some("fail") => Err(ToolError::Failed("echo failed on purpose".into())),
            _ => Ok(format!("echo {args}")),
        }
    }
}

fn single(agent: AgentSpec) -> Topology {
    TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("echo", ToolSpec::custom())
        .agent("solo", agent)
        .build()
        .expect("valid topology")
}

async fn run_with<M: Model>(
    topology: Topology,
    model: M,
    task: &str,
) -> (RunReport, baton_actors::TaskRun) {
    let rt = Runtime::builder(topology.clone())
        .model("m", model)
        .tool(Echo)
        .start()
        .await
        .expect("starts");
    let raw = rt.submit(task, Budget::UNLIMITED).await.expect("runs");
    let snapshot = raw.account.snapshot();
    let report = RunReport::from_ledger(&snapshot, raw.result.outcome, None, None);
    raw.account.check_conservation().expect("conservation");
    rt.shutdown().await;
    (report, raw)
}

mod loop_ {
    use super::*;

    #[tokio::test]
    async fn tool_then_answer() {
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match r.step {
                1 => call(r, "echo", json!({"x": 1})),
                _ => {
                    let last = r.messages.last().expect("has messages");
                    assert_eq!(last.role, Role::Tool);
                    text(r, &format!("saw: {}", last.content))
                }
            })
        });
        let (report, raw) =
            run_with(single(AgentSpec::new(["m"]).tools(["echo"])), model, "go").await;
        assert_eq!(raw.result.outcome, Outcome::Completed);
        assert_eq!(raw.result.text, r#"saw: echo {"x":1}"#);
        assert_eq!(report.totals.steps, 2);
        assert_eq!(report.totals.model_calls, 2);
        assert_eq!(report.totals.tool_calls, 1);
        // Every token is priced at 1000 nano-dollars.
        assert_eq!(
            report.totals.cost_nanousd,
            1000 * (report.totals.tokens_in + report.totals.tokens_out)
        );
    }

    #[tokio::test]
    async fn runaway_agent_stops_at_max_steps() {
        let model = FnModel(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
        let agent = AgentSpec::new(["m"]).tools(["echo"]).budget(BudgetSpec {
            max_steps: Some(5),
            ..BudgetSpec::default()
        });
        let (report, raw) = run_with(single(agent), model, "loop forever").await;
        assert_eq!(raw.result.outcome, Outcome::MaxSteps);
        assert_eq!(report.totals.steps, 5);
        assert_eq!(report.totals.tool_calls, 5);
    }

    #[tokio::test]
    async fn runaway_agent_without_max_steps_stops_at_default() {
        let model = FnModel(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
        let (report, raw) =
            run_with(single(AgentSpec::new(["m"]).tools(["echo"])), model, "loop").await;
        assert_eq!(raw.result.outcome, Outcome::MaxSteps);
        assert_eq!(
            report.totals.steps,
            u64::from(baton_topologies::DEFAULT_MAX_STEPS)
        );
    }

    #[tokio::test]
    async fn runaway_agent_is_stopped_by_its_budget() {
        let model = FnModel(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
        let agent = AgentSpec::new(["m"]).tools(["echo"]).budget(BudgetSpec {
            max_usd: usd("0.002"),
            max_steps: Some(1000),
            ..BudgetSpec::default()
        });
        let (report, raw) = run_with(single(agent), model, "loop").await;
        assert_eq!(raw.result.outcome, Outcome::BudgetExceeded);
        assert!(
            report.totals.cost_nanousd <= 2_000_000,
            "{}",
            report.totals.cost_nanousd
        );
        assert!(report.totals.steps < 1000);
        assert!(
            raw.result.text.contains("cannot cover the next call"),
            "{}",
            raw.result.text
        );
    }

    #[tokio::test]
    async fn reservation_refused_before_any_spend() {
        let model = FnModel(|r: &ModelRequest<'_>| Ok(text(r, "never")));
        // 100 output tokens alone cost 100_000 nanos; the budget is 50_000.
        let agent = AgentSpec::new(["m"]).budget(BudgetSpec {
            max_usd: usd("0.00005"),
            ..BudgetSpec::default()
        });
        let (report, raw) = run_with(single(agent), model, "hi").await;
        assert_eq!(raw.result.outcome, Outcome::BudgetExceeded);
        assert_eq!(report.totals.cost_nanousd, 0);
        assert_eq!(report.totals.model_calls, 0);
    }

    #[tokio::test]
    async fn token_budget_is_enforced() {
        let model = FnModel(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
        let agent = AgentSpec::new(["m"]).tools(["echo"]).budget(BudgetSpec {
            max_tokens: Some(700),
            ..BudgetSpec::default()
        });
        let (report, raw) = run_with(single(agent), model, "loop").await;
        assert_eq!(raw.result.outcome, Outcome::BudgetExceeded);
        assert!(report.totals.tokens_in + report.totals.tokens_out <= 700);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_model_times_out_at_max_wall() {
        let topology = single(AgentSpec::new(["m"]).budget(BudgetSpec {
            max_wall: Some(Duration::from_secs(2)),
            ..BudgetSpec::default()
        }));
        let slow = ScriptedModel::always("m", "late").with_latency(Duration::from_secs(10));
        let (report, raw) = run_with(topology, slow, "hurry").await;
        assert_eq!(raw.result.outcome, Outcome::TimedOut);
        assert_eq!(
            report.totals.cost_nanousd, 0,
            "an abandoned call books nothing"
        );
    }

    #[tokio::test]
    async fn tool_errors_are_observations() {
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match r.step {
                1 => call(r, "echo", json!({"mode": "fail"})),
                2 => call(r, "nope", json!({})),
                _ => {
                    let seen: Vec<&str> = r
                        .messages
                        .iter()
                        .filter(|m| m.role == Role::Tool)
                        .map(|m| m.content.as_str())
                        .collect();
                    text(r, &seen.join(" | "))
                }
            })
        });
        let (_, raw) = run_with(single(AgentSpec::new(["m"]).tools(["echo"])), model, "go").await;
        assert_eq!(raw.result.outcome, Outcome::Completed);
        let t = raw.result.text;
        assert!(t.contains("error: echo failed on purpose"), "{t}");
        assert!(t.contains("no tool named `nope`; available: echo"), "{t}");
    }

    #[tokio::test]
    async fn tool_panic_crashes_the_agent_and_the_task_fails_once() {
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(
                match (r.messages[r.messages.len() - 1].content.as_str(), r.step) {
                    ("boom", 1) => call(r, "echo", json!({"mode": "panic"})),
                    _ => text(r, "fine"),
                },
            )
        });
        let topology = single(AgentSpec::new(["m"]).tools(["echo"]));
        let rt = Runtime::builder(topology)
            .model("m", model)
            .tool(Echo)
            .start()
            .await
            .expect("starts");
        let first = rt
            .submit("boom", Budget::UNLIMITED)
            .await
            .expect("answered");
        assert_eq!(first.result.outcome, Outcome::Failed);
        assert!(
            first
                .result
                .text
                .contains("`solo` crashed: tool `echo` panicked: echo was asked to panic"),
            "{}",
            first.result.text
        );
        assert_eq!(first.account.snapshot().restarts, 1);
        assert!(
            first.account.spent().0 > 0,
            "the step before the crash stays booked"
        );
        first.account.check_conservation().expect("conserved");
        let second = rt
            .submit("calm", Budget::UNLIMITED)
            .await
            .expect("answered");
        assert_eq!(
            second.result.outcome,
            Outcome::Completed,
            "the agent was restarted"
        );
        rt.shutdown().await;
    }

    #[tokio::test]
    async fn model_panic_fails_the_task_not_the_runtime() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        let model = FnModel(move |r: &ModelRequest<'_>| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("provider bug");
            }
            Ok(text(r, "fine"))
        });
        let topology = single(AgentSpec::new(["m"]));
        let rt = Runtime::builder(topology)
            .model("m", model)
            .tool(Echo)
            .start()
            .await
            .expect("starts");
        let first = rt.submit("one", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(first.result.outcome, Outcome::Failed);
        assert!(
            first.result.text.contains("panicked: provider bug"),
            "{}",
            first.result.text
        );
        let second = rt.submit("two", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(second.result.outcome, Outcome::Completed);
        rt.shutdown().await;
    }

    #[tokio::test]
    async fn ladder_escalates_on_provider_error() {
        let topology = TopologyBuilder::new("t")
            .model("cheap", dollar_per_mtok())
            .model("m", dollar_per_mtok())
            .agent("solo", AgentSpec::new(["cheap", "m"]))
            .build()
            .expect("valid");
        let broken = FnModel(|_: &ModelRequest<'_>| {
            Err(ModelError::Provider {
                model: "cheap".into(),
                message: "503".into(),
            })
        });
        let rt = Runtime::builder(topology)
            .model("cheap", broken)
            .model("m", ScriptedModel::always("m", "from the second rung"))
            .start()
            .await
            .expect("starts");
        let report = rt.run("go").await.expect("runs");
        assert_eq!(report.outcome, Outcome::Completed);
        assert_eq!(report.answer.as_deref(), Some("from the second rung"));
        assert_eq!(
            report.totals.model_calls, 1,
            "the failed call was not billed"
        );
        rt.shutdown().await;
    }
}

mod crashes {
    use super::*;
    use baton_actors::{Event, Observer};

    /// An observer that panics on a chosen task's first step: a bug outside the loop's guards, so
    /// it takes down the agent actor that called it.
    struct Bomb {
        agent: &'static str,
        armed: AtomicU32,
    }

    impl Observer for Bomb {
        fn on_event(&self, event: &Event<'_>) {
            if let Event::Step { agent, .. } = event {
                if *agent == self.agent && self.armed.swap(0, Ordering::SeqCst) == 1 {
                    panic!("observer bug");
                }
            }
        }
    }

    #[tokio::test]
    async fn root_agent_crash_ends_its_task_failed_and_the_next_task_runs() {
        let topology = single(AgentSpec::new(["m"]));
        let rt = Runtime::builder(topology)
            .model("m", ScriptedModel::always("m", "ok"))
            .tool(Echo)
            .observer(Bomb {
                agent: "solo",
                armed: AtomicU32::new(1),
            })
            .start()
            .await
            .expect("starts");
        let first = rt.submit("one", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(first.result.outcome, Outcome::Failed);
        assert_eq!(first.account.outcome(), Some(Outcome::Failed));
        // Money spent before the crash stays spent.
        assert!(first.account.spent().0 > 0);
        first.account.check_conservation().expect("conserved");
        let second = rt.submit("two", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(second.result.outcome, Outcome::Completed);
        assert_eq!(
            rt.in_flight(),
            0,
            "the task table is empty when nothing runs"
        );
        rt.shutdown().await;
    }

    #[tokio::test]
    async fn child_crash_is_one_failed_outcome_for_the_parent_to_see() {
        let topology = TopologyBuilder::new("t")
            .model("m", dollar_per_mtok())
            .agent("lead", AgentSpec::new(["m"]).children(["w"]))
            .agent("w", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => call(r, "delegate", json!({"agent": "w", "task": "x"})),
                ("lead", 2) => call(r, "delegate", json!({"agent": "w", "task": "again"})),
                ("lead", _) => {
                    let seen: Vec<&str> = r
                        .messages
                        .iter()
                        .filter(|m| m.role == Role::Tool)
                        .map(|m| m.content.as_str())
                        .collect();
                    text(r, &seen.join(" | "))
                }
                _ => text(r, "w answered"),
            })
        });
        let rt = Runtime::builder(topology)
            .model("m", model)
            .observer(Bomb {
                agent: "w",
                armed: AtomicU32::new(1),
            })
            .start()
            .await
            .expect("starts");
        let run = rt.submit("go", Budget::UNLIMITED).await.expect("answered");
        assert_eq!(run.result.outcome, Outcome::Completed);
        assert_eq!(
            run.result.text, "`w` ended failed: `w` crashed: observer bug | w answered",
            "restarted on the next task"
        );
        let snap = run.account.snapshot();
        let outcomes: Vec<_> = snap.children.iter().map(|c| c.outcome).collect();
        assert_eq!(outcomes, [Some(Outcome::Failed), Some(Outcome::Completed)]);
        assert!(
            snap.children[0].spent.0 > 0,
            "the crashed child's spend stays booked"
        );
        run.account.check_conservation().expect("conserved");
        rt.shutdown().await;
    }
}

mod delegation {
    use super::*;

    fn tree(child_budget: Option<&str>) -> Topology {
        TopologyBuilder::new("t")
            .model("m", dollar_per_mtok())
            .tool("echo", ToolSpec::custom())
            .agent(
                "lead",
                AgentSpec::new(["m"])
                    .children(["a", "b"])
                    .budget(BudgetSpec {
                        max_usd: usd("1"),
                        ..BudgetSpec::default()
                    }),
            )
            .agent(
                "a",
                AgentSpec::new(["m"]).tools(["echo"]).budget(BudgetSpec {
                    max_usd: child_budget.and_then(usd),
                    ..BudgetSpec::default()
                }),
            )
            .agent("b", AgentSpec::new(["m"]).children(["c"]))
            .agent("c", AgentSpec::new(["m"]).tools(["echo"]))
            .build()
            .expect("valid")
    }

    /// lead delegates to a and b; b delegates to c; a and c call echo until told otherwise.
    fn model(loops: u32) -> impl Model {
        FnModel(move |r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => call(r, "delegate", json!({"agent": "a", "task": "work"})),
                ("lead", 2) => call(r, "delegate", json!({"agent": "b", "task": "more"})),
                ("lead", _) => text(
                    r,
                    &r.messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default(),
                ),
                ("b", 1) => call(r, "delegate", json!({"agent": "c", "task": "deep"})),
                ("b", _) => text(r, "b done"),
                (_, s) if s <= loops => call(r, "echo", json!({"s": s})),
                _ => text(r, "leaf done"),
            })
        })
    }

    #[tokio::test]
    async fn conservation_through_three_levels() {
        let (report, raw) = run_with(tree(None), model(3), "go").await;
        assert_eq!(raw.result.outcome, Outcome::Completed);
        let snap = raw.account.snapshot();
        assert_eq!(snap.children.len(), 2);
        assert_eq!(snap.children[1].children.len(), 1, "b delegated to c");
        let per_agent: u64 = report.agents.iter().map(|a| a.cost_nanousd).sum();
        assert_eq!(per_agent, report.totals.cost_nanousd);
        assert_eq!(report.totals.cost_nanousd, raw.account.spent().0);
        assert_eq!(report.tasks.len(), 4);
        assert!(
            report
                .tasks
                .iter()
                .all(|t| t.outcome == Some(Outcome::Completed))
        );
        let names: Vec<&str> = report.agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["lead", "a", "b", "c"]);
    }

    #[tokio::test]
    async fn child_out_of_budget_parent_carries_on() {
        // `a` may spend $0.0003: one step at most. Its failure is an observation for `lead`.
        let (report, raw) = run_with(tree(Some("0.0003")), model(50), "go").await;
        let snap = raw.account.snapshot();
        let a = &snap.children[0];
        assert_eq!(a.outcome, Some(Outcome::BudgetExceeded));
        assert!(
            a.spent.0 <= 300_000,
            "child spent {} over its 300000 limit",
            a.spent.0
        );
        assert_eq!(raw.result.outcome, Outcome::Completed);
        assert!(
            report
                .tasks
                .iter()
                .any(|t| t.agent == "a" && t.outcome == Some(Outcome::BudgetExceeded))
        );
    }

    #[tokio::test]
    async fn budget_usd_argument_caps_the_slice() {
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => call(
                    r,
                    "delegate",
                    json!({"agent": "a", "task": "w", "budget_usd": 0.0002}),
                ),
                ("lead", _) => text(r, "ok"),
                _ => call(r, "echo", json!({})),
            })
        });
        let (_, raw) = run_with(tree(Some("0.5")), model, "go").await;
        let a = &raw.account.snapshot().children[0];
        assert_eq!(a.limit, Some(NanoUsd(200_000)));
        assert_eq!(a.outcome, Some(Outcome::BudgetExceeded));
        assert!(a.spent.0 <= 200_000);
    }

    #[tokio::test]
    async fn delegating_to_a_stranger_is_an_observation() {
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => call(r, "delegate", json!({"agent": "c", "task": "skip a level"})),
                ("lead", _) => text(
                    r,
                    &r.messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default(),
                ),
                _ => text(r, "unreachable"),
            })
        });
        let (_, raw) = run_with(tree(None), model, "go").await;
        assert_eq!(raw.result.outcome, Outcome::Completed);
        assert!(
            raw.result
                .text
                .contains("`c` is not one of your sub-agents (a, b)"),
            "{}",
            raw.result.text
        );
    }
}

mod concurrency {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_each_end_once_and_conserve() {
        let topology = TopologyBuilder::new("t")
            .model("m", dollar_per_mtok())
            .agent("lead", AgentSpec::new(["m"]).children(["w"]))
            .agent("w", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let model = FnModel(|r: &ModelRequest<'_>| {
            Ok(match (r.agent, r.step) {
                ("lead", 1) => call(r, "delegate", json!({"agent": "w", "task": "x"})),
                _ => text(r, "done"),
            })
        });
        let rt = Arc::new(
            Runtime::builder(topology)
                .model("m", model)
                .start()
                .await
                .expect("starts"),
        );
        let mut handles = Vec::new();
        for i in 0..200 {
            let rt = Arc::clone(&rt);
            handles.push(tokio::spawn(async move {
                rt.submit(format!("task {i}"), Budget::UNLIMITED).await
            }));
        }
        for h in handles {
            let run = h.await.expect("joined").expect("answered");
            assert_eq!(run.result.outcome, Outcome::Completed);
            assert_eq!(run.account.outcome(), Some(Outcome::Completed));
            run.account.check_conservation().expect("conserved");
            assert_eq!(run.account.snapshot().children.len(), 1);
        }
        if let Ok(rt) = Arc::try_unwrap(rt) {
            rt.shutdown().await;
        }
    }
}
