//! The agent loop: steps, tool calls, answers, termination.

use super::*;

#[tokio::test]
async fn tool_then_answer() {
    let model = FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match r.step {
            1 => call(r, "echo", json!({"x": 1})),
            _ => {
                let last = r.messages.last().expect("has messages");
                assert_eq!(last.role, Role::Tool);
                text(r, &format!("saw: {}", last.content))
            }
        })
    });
    let (report, raw) = run_with(single(AgentSpec::new(["m"]).tools(["echo"])), model, "go").await;
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
    let model = FnModel::new(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
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
    let model = FnModel::new(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
    let (report, raw) =
        run_with(single(AgentSpec::new(["m"]).tools(["echo"])), model, "loop").await;
    assert_eq!(raw.result.outcome, Outcome::MaxSteps);
    // The documented default (docs/topology.md: `max_steps` defaults to 16), not the
    // constant compared with itself.
    assert_eq!(report.totals.steps, 16);
}

#[tokio::test]
async fn runaway_agent_is_stopped_by_its_budget() {
    let model = FnModel::new(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
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
    // And not stopped early: the budget was used until the next call's worst case no longer
    // fitted in what was left ($1 per million tokens: the worst case is (prompt + 100) ×
    // 1,000 nano-dollars, the prompt growing each step).
    let left = 2_000_000 - report.totals.cost_nanousd;
    let next_worst = (report.totals.tokens_in / report.totals.model_calls + 100) * 1_000;
    assert!(
        left < next_worst * 2,
        "stopped with {left} left, where the next call needed about {next_worst}"
    );
    assert!(report.totals.steps >= 3, "{}", report.totals.steps);
}

#[tokio::test]
async fn reservation_refused_before_any_spend() {
    let model = FnModel::new(|r: &ModelRequest<'_>| Ok(text(r, "never")));
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
    let model = FnModel::new(|r: &ModelRequest<'_>| Ok(call(r, "echo", json!({}))));
    let agent = AgentSpec::new(["m"]).tools(["echo"]).budget(BudgetSpec {
        max_tokens: Some(700),
        ..BudgetSpec::default()
    });
    let (report, raw) = run_with(single(agent), model, "loop").await;
    assert_eq!(raw.result.outcome, Outcome::BudgetExceeded);
    let used = report.totals.tokens_in + report.totals.tokens_out;
    assert!(used <= 700, "{used}");
    // Not stopped early: what was left could not hold another call (prompt + 100 output).
    let per_call = report.totals.tokens_in / report.totals.model_calls.max(1) + 100;
    assert!(
        700 - used < per_call * 2,
        "stopped with {} tokens left",
        700 - used
    );
    assert!(
        report.totals.model_calls >= 2,
        "{}",
        report.totals.model_calls
    );
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
    // The provider received the request and may bill it: the abandoned attempt is booked
    // at its worst case ($1 per million tokens: the prompt and all 100 output tokens),
    // marked estimated, and counted as a failed call.
    let t = &report.totals;
    assert_eq!(
        (t.model_calls, t.model_errors, t.estimated_calls),
        (1, 1, 1)
    );
    assert_eq!(t.tokens_out, 100);
    assert!(t.tokens_in > 0);
    assert_eq!(t.cost_nanousd, (t.tokens_in + t.tokens_out) * 1_000);
}

#[tokio::test]
async fn tool_errors_are_observations() {
    let model = FnModel::new(|r: &ModelRequest<'_>| {
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
    let model = FnModel::new(|r: &ModelRequest<'_>| {
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
        .tool(echo())
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
    let model = FnModel::new(move |r: &ModelRequest<'_>| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("provider bug");
        }
        Ok(text(r, "fine"))
    });
    let topology = single(AgentSpec::new(["m"]));
    let rt = Runtime::builder(topology)
        .model("m", model)
        .tool(echo())
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
    let broken = FnModel::new(|_: &ModelRequest<'_>| {
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
