//! The model ladder: cheapest first, escalation, budgets, confidence, privacy.

use super::*;
use baton_actors::{Event, Observer};
use baton_topologies::Tier;
use std::sync::Mutex;

/// Which model answered each step, and the escalations, in order.
#[derive(Clone, Default)]
struct Steps(Arc<Mutex<Vec<String>>>);

impl Observer for Steps {
    fn on_event(&self, e: &Event<'_>) {
        let line = match e {
            Event::Step { step, model, .. } => format!("{step} {model}"),
            Event::Escalated { model, reason, .. } => format!("↑ {model}: {reason}"),
            _ => return,
        };
        self.0.lock().expect("lock").push(line);
    }
}

/// `probe`: takes `{service}` and says it is healthy.
fn probe_tool() -> impl Tool {
    baton_core::testing::FnTool::new("probe", |_, args| {
        Ok(format!(
            "{} is healthy",
            args["service"].as_str().unwrap_or("?")
        ))
    })
    .with_parameters(
        json!({"type": "object", "properties": {"service": {"type": "string"}},
               "required": ["service"], "additionalProperties": false}),
    )
}

async fn run(
    min_confidence: Option<u8>,
    local: impl Model,
    frontier: impl Model,
) -> (String, Vec<String>, baton_actors::RunReport) {
    let mut agent = AgentSpec::new(["local", "frontier"]).tools(["probe"]);
    if let Some(m) = min_confidence {
        agent = agent.min_confidence(m);
    }
    run_agent(
        agent,
        dollar_per_mtok().tier(Tier::Local, 50),
        local,
        frontier,
    )
    .await
}

/// Asserts that the run failed and its error says `why`.
fn failed_saying(report: &baton_actors::RunReport, why: &str) {
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report.error.as_deref().is_some_and(|e| e.contains(why)),
        "{:?}",
        report.error
    );
}

/// [`run`] with the agent and the local model's declaration given.
async fn run_agent(
    agent: AgentSpec,
    local_spec: ModelSpec,
    local: impl Model,
    frontier: impl Model,
) -> (String, Vec<String>, baton_actors::RunReport) {
    run_agent_with(agent, local_spec, ToolSpec::custom(), local, frontier).await
}

/// [`run_agent`] with the probe tool's declaration given.
async fn run_agent_with(
    agent: AgentSpec,
    local_spec: ModelSpec,
    probe: ToolSpec,
    local: impl Model,
    frontier: impl Model,
) -> (String, Vec<String>, baton_actors::RunReport) {
    let t = TopologyBuilder::new("t")
        .model("local", local_spec)
        .model(
            "frontier",
            ModelSpec::custom(baton_core::Price::per_million_tokens(
                NanoUsd::from_usd(10),
                NanoUsd::from_usd(10),
            ))
            .max_output_tokens(100)
            .tier(Tier::Frontier, 90),
        )
        .tool("probe", probe)
        .agent("ops", agent)
        .build()
        .expect("valid");
    let steps = Steps::default();
    let rt = Runtime::builder(t)
        .model("local", local)
        .model("frontier", frontier)
        .tool(probe_tool())
        .observer(steps.clone())
        .start()
        .await
        .expect("starts");
    let report = rt.run("is checkout healthy?").await.expect("runs");
    rt.shutdown().await;
    let seen = steps.0.lock().expect("lock").clone();
    (report.answer.clone().unwrap_or_default(), seen, report)
}

fn unsure(confidence: f32) -> impl Model {
    FnModel::new(move |r: &ModelRequest<'_>| {
        assert!(r.confidence, "a local model is asked for its confidence");
        let mut reply = text(r, "probably fine");
        reply.confidence = Some(confidence);
        Ok(reply)
    })
}

fn sure() -> impl Model {
    FnModel::new(|r: &ModelRequest<'_>| Ok(text(r, "checkout is healthy")))
}

/// A local model's reply below `min_confidence` is set aside (and still paid for); the step
/// goes to the next model up. Above it, or without `min_confidence`, the local reply stands.
#[tokio::test]
async fn low_confidence_from_a_local_model_escalates_the_step() {
    let (answer, seen, report) = run(Some(70), unsure(0.42), sure()).await;
    assert_eq!(answer, "checkout is healthy");
    assert_eq!(
        seen,
        ["1 local", "↑ local: low confidence 42% < 70%", "1 frontier"]
    );
    let local = report
        .models
        .iter()
        .find(|m| m.name == "local")
        .expect("local");
    assert_eq!(local.calls, 1, "the set-aside reply was paid for");
    assert!(local.cost_nanousd > 0);
    let total: u64 = report.models.iter().map(|m| m.cost_nanousd).sum();
    assert_eq!(total, report.totals.cost_nanousd, "conservation");

    let (answer, seen, _) = run(Some(70), unsure(0.9), sure()).await;
    assert_eq!((answer.as_str(), seen.len()), ("probably fine", 1));
    let (answer, _, _) = run(
        None,
        FnModel::new(|r: &ModelRequest<'_>| {
            assert!(!r.confidence, "nobody asked for it");
            let mut reply = text(r, "probably fine");
            reply.confidence = Some(0.1);
            Ok(reply)
        }),
        sure(),
    )
    .await;
    assert_eq!(answer, "probably fine");
}

/// A local model that probes with confidence and then answers unsure of itself.
fn probes_then_doubts() -> impl Model {
    FnModel::new(|r: &ModelRequest<'_>| {
        let mut reply = if r.messages.iter().any(|m| m.role == baton_core::Role::Tool) {
            let mut t = text(r, "probably fine");
            t.confidence = Some(0.2);
            t
        } else {
            call(r, "probe", json!({"service": "checkout"}))
        };
        reply.confidence = reply.confidence.or(Some(0.9));
        Ok(reply)
    })
}

/// Once a `sensitive` tool's output is in a task's transcript, its steps go to local models
/// only: the unsure local answer that would have gone up to the frontier is the answer, the
/// frontier never sees the data, and the step is counted as kept local. Without
/// `sensitive`, the same run escalates.
#[tokio::test]
async fn a_sensitive_observation_keeps_the_task_on_local_models() {
    let agent = || {
        AgentSpec::new(["local", "frontier"])
            .tools(["probe"])
            .min_confidence(70)
    };
    let local = || dollar_per_mtok().tier(Tier::Local, 50);
    let (answer, seen, report) = run_agent(agent(), local(), probes_then_doubts(), sure()).await;
    assert_eq!(answer, "checkout is healthy");
    assert_eq!(
        seen,
        [
            "1 local",
            "2 local",
            "↑ local: low confidence 20% < 70%",
            "2 frontier"
        ]
    );
    assert_eq!(report.totals.private_steps, 0);

    let sensitive = ToolSpec {
        sensitive: Some(true),
        ..ToolSpec::custom()
    };
    let frontier = FnModel::new(
        |_: &ModelRequest<'_>| -> Result<ModelResponse, ModelError> {
            panic!("a private task's data reached the frontier model")
        },
    );
    let (answer, seen, report) =
        run_agent_with(agent(), local(), sensitive, probes_then_doubts(), frontier).await;
    assert_eq!(answer, "probably fine");
    assert_eq!(seen, ["1 local", "2 local"]);
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(
        report.totals.private_steps, 1,
        "step 2 was kept local; step 1 was not private yet"
    );
    assert_eq!(report.agents[0].private_steps, 1);
}

/// Privacy comes back with a private sub-task's answer (it may quote the sensitive data): the
/// parent's next step stays local too, and the frontier never sees it.
#[tokio::test]
async fn a_private_sub_tasks_answer_makes_its_parent_private() {
    let local = FnModel::new(|r: &ModelRequest<'_>| {
        let after_tool = r.messages.iter().any(|m| m.role == baton_core::Role::Tool);
        let mut reply = match (r.agent, after_tool) {
            ("ops", false) => call(
                r,
                "delegate",
                json!({"agent": "reader", "task": "probe checkout"}),
            ),
            ("reader", false) => call(r, "probe", json!({"service": "checkout"})),
            ("reader", true) => text(r, "checkout is healthy (from the private probe)"),
            _ => text(r, "probably fine"),
        };
        reply.confidence = Some(if (r.agent, after_tool) == ("ops", true) {
            0.2
        } else {
            0.9
        });
        Ok(reply)
    });
    let frontier = FnModel::new(
        |r: &ModelRequest<'_>| -> Result<ModelResponse, ModelError> {
            panic!(
                "private data reached the frontier model (agent {})",
                r.agent
            )
        },
    );
    let t = TopologyBuilder::new("t")
        .model("local", dollar_per_mtok().tier(Tier::Local, 50))
        .model(
            "frontier",
            ModelSpec::custom(baton_core::Price::per_million_tokens(
                NanoUsd::from_usd(10),
                NanoUsd::from_usd(10),
            ))
            .tier(Tier::Frontier, 90),
        )
        .tool(
            "probe",
            ToolSpec {
                sensitive: Some(true),
                ..ToolSpec::custom()
            },
        )
        .agent(
            "ops",
            AgentSpec::new(["local", "frontier"])
                .children(["reader"])
                .min_confidence(70),
        )
        .agent("reader", AgentSpec::new(["local"]).tools(["probe"]))
        .build()
        .expect("valid");
    let rt = Runtime::builder(t)
        .model("local", local)
        .model("frontier", frontier)
        .tool(probe_tool())
        .start()
        .await
        .expect("starts");
    let report = rt.run("is checkout healthy?").await.expect("runs");
    rt.shutdown().await;
    assert_eq!(report.outcome, Outcome::Completed, "{:?}", report.error);
    assert_eq!(report.answer.as_deref(), Some("probably fine"));
    let steps = |name: &str| {
        report
            .agents
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.private_steps)
    };
    assert_eq!(steps("reader"), Some(1), "its step after the probe");
    assert_eq!(steps("ops"), Some(1), "its step after the private answer");
}

/// A `privacy: local_only` agent is private from its first step: with no local model on its
/// ladder, the step fails saying why, and nothing is sent to the hosted model.
#[tokio::test]
async fn a_local_only_agent_never_reaches_a_hosted_model() {
    let mut agent = AgentSpec::new(["frontier"]).tools(["probe"]);
    agent.privacy = Some(baton_topologies::Privacy::LocalOnly);
    let frontier = FnModel::new(
        |_: &ModelRequest<'_>| -> Result<ModelResponse, ModelError> {
            panic!("a local_only agent's task reached the frontier model")
        },
    );
    let local = dollar_per_mtok().tier(Tier::Local, 50);
    let (_, seen, report) = run_agent(agent, local, sure(), frontier).await;
    assert!(seen.is_empty(), "{seen:?}");
    failed_saying(&report, "privacy: `ops`'s task may use local models only");
}

/// A local reply that carries no probabilities is never silently taken as confident: by
/// default it is set aside like a low-confidence one (`on_missing_confidence: escalate`);
/// `accept` uses it, `fail` ends the task. A set-aside reply saves nothing: "saved" counts
/// only what the cheaper model actually answered, and its cost counts against it.
#[tokio::test]
async fn a_local_reply_without_confidence_follows_on_missing_confidence() {
    let silent = || FnModel::new(|r: &ModelRequest<'_>| Ok(text(r, "probably fine")));
    let agent = || AgentSpec::new(["local", "frontier"]).min_confidence(70);
    let local = || dollar_per_mtok().tier(Tier::Local, 50);
    let (answer, seen, report) = run_agent(agent(), local(), silent(), sure()).await;
    assert_eq!(answer, "checkout is healthy");
    assert_eq!(
        seen,
        [
            "1 local",
            "↑ local: no confidence reported (on_missing_confidence: escalate)",
            "1 frontier"
        ]
    );
    assert_eq!(
        report.totals.saved_vs_top_rung_nanousd, 0,
        "the frontier answered the only step: nothing was saved"
    );

    let mut accept = agent();
    accept.on_missing_confidence = Some(baton_topologies::MissingConfidence::Accept);
    let (answer, seen, report) = run_agent(accept, local(), silent(), sure()).await;
    assert_eq!((answer.as_str(), seen.len()), ("probably fine", 1));
    assert!(
        report.totals.saved_vs_top_rung_nanousd > 0,
        "the local model answered: the frontier's price was saved"
    );

    let mut fail = agent();
    fail.on_missing_confidence = Some(baton_topologies::MissingConfidence::Fail);
    let (_, _, report) = run_agent(fail, local(), silent(), sure()).await;
    failed_saying(&report, "reported no confidence");
}

/// A reply the server sent without usage is booked at Baton's estimate and counted as such;
/// a tool call cut at the token ceiling is asked again one rung up.
#[tokio::test]
async fn estimated_usage_is_counted_and_a_truncated_tool_call_escalates() {
    let estimated = FnModel::new(|r: &ModelRequest<'_>| {
        let mut reply = text(r, "fine");
        reply.estimated = true;
        Ok(reply)
    });
    let (answer, _, report) = run(None, estimated, sure()).await;
    assert_eq!(answer, "fine");
    assert_eq!(report.totals.estimated_calls, 1);
    assert_eq!(report.agents[0].estimated_calls, 1);
    assert_eq!(report.totals.model_calls, 1, "booked like any call");

    let cut = FnModel::new(|r: &ModelRequest<'_>| {
        let mut reply = call(r, "probe", json!({"service": "checkout"}));
        reply.truncated = true;
        Ok(reply)
    });
    let (answer, seen, _) = run(None, cut, sure()).await;
    assert_eq!(answer, "checkout is healthy");
    assert_eq!(
        seen[..3],
        [
            "1 local",
            "↑ local: tool call cut at max_output_tokens (finish_reason: length)",
            "1 frontier"
        ]
    );
}

/// `on_truncated`: a tool call cut at the token ceiling is used as it is (`accept`) or ends
/// the task (`fail`), as the agent says.
#[tokio::test]
async fn on_truncated_accepts_or_fails_as_declared() {
    let cut = || {
        FnModel::new(|r: &ModelRequest<'_>| {
            Ok(if r.step == 1 {
                let mut reply = call(r, "probe", json!({"service": "checkout"}));
                reply.truncated = true;
                reply
            } else {
                text(r, "used the cut call")
            })
        })
    };
    let local = || dollar_per_mtok().tier(Tier::Local, 50);
    let mut accept = AgentSpec::new(["local", "frontier"]).tools(["probe"]);
    accept.on_truncated = Some(baton_topologies::Truncated::Accept);
    let (answer, seen, _) = run_agent(accept, local(), cut(), sure()).await;
    assert_eq!(answer, "used the cut call");
    assert!(seen.iter().all(|l| !l.starts_with('↑')), "{seen:?}");
    let mut fail = AgentSpec::new(["local", "frontier"]).tools(["probe"]);
    fail.on_truncated = Some(baton_topologies::Truncated::Fail);
    let (_, _, report) = run_agent(fail, local(), cut(), sure()).await;
    failed_saying(&report, "on_truncated: fail");
}

/// A local model allowed three attempts that always fails with `error`: asserts that the
/// step escalated to the frontier after one call (no retry) and one counted error.
async fn escalates_without_a_retry(error: fn() -> ModelError) {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let failing = FnModel::new(move |_: &ModelRequest<'_>| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err(error())
    });
    let mut spec = dollar_per_mtok().tier(Tier::Local, 50);
    spec.retry = Some(baton_topologies::RetrySpec {
        max_attempts: Some(3),
        ..Default::default()
    });
    let (answer, _, report) =
        run_agent(AgentSpec::new(["local", "frontier"]), spec, failing, sure()).await;
    assert_eq!(answer, "checkout is healthy");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(report.totals.model_errors, 1);
}

/// A `Retry-After` longer than `max_retry_after` is not slept: the step escalates at once.
#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_escalates_instead_of_sleeping() {
    let started = tokio::time::Instant::now();
    escalates_without_a_retry(|| ModelError::Http {
        model: "local".into(),
        status: 429,
        kind: "rate_limit_error".into(),
        message: "slow down".into(),
        retry_after: Some(Duration::from_secs(600)),
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no 600 s sleep: {:?}",
        started.elapsed()
    );
}

/// A local model that times out is not retried (a single-slot server may still be
/// generating the abandoned reply, and a retry would queue behind it): the step escalates.
#[tokio::test(start_paused = true)]
async fn a_local_timeout_escalates_instead_of_retrying() {
    escalates_without_a_retry(|| ModelError::Timeout {
        model: "local".into(),
        timeout_ms: 10_000,
    })
    .await;
}

/// A model whose server counts half the tokens Baton's bytes-based estimate does: after two
/// calls the estimate is calibrated, and a prompt whose raw estimate would not fit the context
/// window (but whose real count does) is no longer passed over.
#[tokio::test]
async fn the_estimate_learns_from_what_the_server_counts() {
    let halved = FnModel::new(|r: &ModelRequest<'_>| {
        let mut reply = text(r, "fine");
        reply.usage.input = baton_core::input_tokens(r.messages, r.tools) / 2;
        Ok(reply)
    });
    let mut small = dollar_per_mtok().tier(Tier::Local, 50);
    small.context_window = Some(400);
    let t = TopologyBuilder::new("t")
        .model("local", small)
        .model("frontier", dollar_per_mtok().tier(Tier::Frontier, 90))
        .agent("ops", AgentSpec::new(["local", "frontier"]))
        .build()
        .expect("valid");
    let rt = Runtime::builder(t)
        .model("local", halved)
        .model("frontier", sure())
        .start()
        .await
        .expect("starts");
    // ~560 estimated tokens: with 100 for output, over the window of 400 by the raw estimate,
    // well inside it by the server's count.
    let long = format!("is checkout healthy? {}", "context ".repeat(200));
    let before = rt.run(long.clone()).await.expect("runs");
    assert_eq!(before.models[0].name, "frontier", "not calibrated yet");
    for _ in 0..2 {
        let short = rt.run("is checkout healthy?").await.expect("runs");
        assert_eq!(short.models[0].name, "local");
    }
    let after = rt.run(long).await.expect("runs");
    rt.shutdown().await;
    let used: Vec<&str> = after.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(used, ["local"], "calibrated: it fits");
}

/// A conversation that does not fit a model's context window goes up the ladder without a
/// call to it (nothing is reserved or spent on it).
#[tokio::test]
async fn a_model_whose_context_window_is_too_small_is_passed_over() {
    let mut small = dollar_per_mtok().tier(Tier::Local, 50);
    small.context_window = Some(150);
    let t = TopologyBuilder::new("t")
        .model("local", small)
        .model("frontier", dollar_per_mtok().tier(Tier::Frontier, 90))
        .agent("ops", AgentSpec::new(["local", "frontier"]))
        .build()
        .expect("valid");
    let steps = Steps::default();
    let rt = Runtime::builder(t)
        .model("local", sure())
        .model("frontier", sure())
        .observer(steps.clone())
        .start()
        .await
        .expect("starts");
    let short = rt.run("is checkout healthy?").await.expect("runs");
    let long = rt
        .run(format!("is checkout healthy? {}", "context ".repeat(100)))
        .await
        .expect("runs");
    rt.shutdown().await;
    assert_eq!(short.models.len(), 1);
    assert_eq!(
        short.models[0].name, "local",
        "a short task fits the local model"
    );
    let used: Vec<&str> = long.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        used,
        ["frontier"],
        "the long one does not: nothing spent on local"
    );
    let seen = steps.0.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("↑ local: the call needs")
                && l.ends_with("context window of 150")),
        "{seen:?}"
    );
}

/// After a bad answer (a tool call whose arguments do not fit), the next step's bar is
/// raised above the model that gave it; once a step goes well, the bar is the agent's again.
#[tokio::test]
async fn a_bad_answer_raises_the_bar_for_the_retry() {
    let local = FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => call(r, "probe", json!({"svc": "checkout"})),
            _ => text(r, "checkout is healthy (local)"),
        })
    });
    let frontier =
        FnModel::new(|r: &ModelRequest<'_>| Ok(call(r, "probe", json!({"service": "checkout"}))));
    let (answer, seen, _) = run(None, local, frontier).await;
    assert_eq!(answer, "checkout is healthy (local)");
    assert_eq!(
        seen,
        [
            "1 local",
            "↑ local: invalid tool call: the next step needs quality 90 or more",
            "2 frontier",
            "3 local"
        ]
    );
}
