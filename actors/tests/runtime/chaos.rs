//! Seeded fault injection: reports checked against the injector's own counts.

use super::*;
use baton_core::tools::Chaos;
use baton_core::{AccountSnapshot, FaultSpec};
use baton_topologies::{OnCrash, SupervisionSpec};

const RULES: &str = r#"
rules:
  - { agent: lead, step: 1, reply: { tool_calls: [ { name: delegate, args: { agent: m1, task: "part one" } } ] } }
  - { agent: lead, step: 2, reply: { tool_calls: [ { name: delegate, args: { agent: m2, task: "part two" } } ] } }
  - { agent: lead, reply: { text: "lead done" } }
  - { agent: m1, step: 1, reply: { tool_calls: [ { name: delegate, args: { agent: l1, task: "leaf work" } } ] } }
  - { agent: m2, step: 1, reply: { tool_calls: [ { name: delegate, args: { agent: l2, task: "leaf work" } } ] } }
  - { agent: m1, reply: { text: "m1 done" } }
  - { agent: m2, reply: { text: "m2 done" } }
  - { step: 1, reply: { tool_calls: [ { name: flaky, args: {} } ] } }
  - { reply: { text: "leaf done" } }
"#;

fn limits_hold(s: &AccountSnapshot) {
    if let Some(l) = s.limit {
        assert!(
            s.spent <= l,
            "task {} of {} spent {} over its limit {}",
            s.task,
            s.agent,
            s.spent,
            l
        );
    }
    assert!(
        s.outcome.is_some(),
        "task {} of {} has no outcome",
        s.task,
        s.agent
    );
    s.children.iter().for_each(limits_hold);
}

/// 1,000 tasks through lead → {m1 → l1, m2 → l2} with random faults in both models of every
/// ladder and in the leaves' tool: every task ends once, money is conserved and within limits,
/// and the report's error and restart counts equal what was injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_under_random_faults() {
    let faults = |seed| FaultSpec {
        seed,
        error: 0.03,
        timeout: 0.002,
        malformed: 0.02,
        panic: 0.01,
    };
    let small = Arc::new(
        ScriptedModel::from_yaml("small", RULES, std::path::Path::new("<chaos>"))
            .expect("rules")
            .with_faults(faults(1)),
    );
    let big = Arc::new(
        ScriptedModel::from_yaml("big", RULES, std::path::Path::new("<chaos>"))
            .expect("rules")
            .with_faults(faults(2)),
    );
    let flaky = Arc::new(Chaos::new(
        "flaky",
        FaultSpec {
            seed: 3,
            error: 0.05,
            panic: 0.01,
            ..FaultSpec::default()
        },
    ));
    let mut small_spec = ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd(150_000_000),
        NanoUsd(600_000_000),
    ))
    .max_output_tokens(200);
    small_spec.timeout = Some(Duration::from_millis(20));
    let mut big_spec = ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd::from_usd(3),
        NanoUsd::from_usd(15),
    ))
    .max_output_tokens(200);
    big_spec.timeout = Some(Duration::from_millis(20));
    let lenient = SupervisionSpec {
        max_restarts: Some(1_000_000),
        ..SupervisionSpec::default()
    };
    let budget = |usd_: &str| BudgetSpec {
        max_usd: usd(usd_),
        max_steps: Some(6),
        ..BudgetSpec::default()
    };
    let agent = |children: &[&str], b: &str| {
        AgentSpec::new(["small", "big"])
            .children(children.iter().copied())
            .supervision(lenient.clone())
            .budget(budget(b))
    };
    let mut top = TopologyBuilder::new("chaos")
        .model("small", small_spec)
        .model("big", big_spec)
        .tool("flaky", ToolSpec::custom())
        .agent("lead", agent(&["m1", "m2"], "0.05"))
        .agent("m1", agent(&["l1"], "0.02").on_crash(OnCrash::Retry))
        .agent("m2", agent(&["l2"], "0.002"))
        .agent(
            "l1",
            agent(&[], "0.01").tools(["flaky"]).on_crash(OnCrash::Retry),
        )
        .agent("l2", agent(&[], "0.00013").tools(["flaky"]))
        .build()
        .expect("valid")
        .spec()
        .clone();
    top.supervision = Some(lenient.clone());
    let topology = Topology::from_spec(top, std::path::Path::new(".")).expect("valid");
    let rt = Arc::new(
        Runtime::builder(topology)
            .model("small", Arc::clone(&small))
            .model("big", Arc::clone(&big))
            .tool(Arc::clone(&flaky))
            .start()
            .await
            .expect("starts"),
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let rt = Arc::clone(&rt);
        set.spawn(async move { rt.submit(format!("task {i}"), Budget::UNLIMITED).await });
    }
    let mut reports = Vec::new();
    while let Some(joined) = set.join_next().await {
        let run = joined.expect("joined").expect("every task is answered");
        assert_eq!(
            run.account.outcome(),
            Some(run.result.outcome),
            "one outcome, recorded"
        );
        run.account.check_conservation().expect("conservation");
        let snap = run.account.snapshot();
        limits_hold(&snap);
        reports.push(RunReport::from_ledger(
            &snap,
            run.result.outcome,
            None,
            None,
        ));
    }
    assert_eq!(reports.len(), 1000);
    let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (s, b, t) = (small.injected(), big.injected(), flaky.injected());
    assert_eq!(
        sum(|r| r.totals.model_errors),
        s.total() + b.total(),
        "model errors = injected model faults"
    );
    assert_eq!(
        sum(|r| r.totals.restarts),
        s.panic + b.panic + t.panic,
        "restarts = injected panics"
    );
    assert!(
        s.total() > 50 && t.total() > 10,
        "faults were injected: {s:?} {b:?} {t:?}"
    );
    let outcomes: std::collections::BTreeMap<String, usize> =
        reports.iter().fold(Default::default(), |mut m, r| {
            *m.entry(r.outcome.to_string()).or_default() += 1;
            m
        });
    eprintln!("outcomes {outcomes:?}; injected: small {s:?}, big {b:?}, tool {t:?}");
    assert!(
        outcomes.get("completed").copied().unwrap_or(0) > 500,
        "{outcomes:?}"
    );
    assert!(
        outcomes.len() > 1,
        "faults changed some outcomes: {outcomes:?}"
    );
    let mut task_outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &reports {
        for t in &r.tasks {
            *task_outcomes
                .entry(t.outcome.map_or("none".into(), |o| o.to_string()))
                .or_default() += 1;
        }
    }
    eprintln!("task outcomes {task_outcomes:?}");
    for o in ["completed", "failed", "budget_exceeded"] {
        assert!(task_outcomes.contains_key(o), "{o} among {task_outcomes:?}");
    }
    assert!(rt.tasks_in_flight().is_empty());
}
