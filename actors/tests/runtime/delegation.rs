//! Delegation: child budgets, sub-task outcomes, conservation across the tree.

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
    FnModel::new(move |r: &ModelRequest<'_>| {
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

/// The documented bound on delegation depth: in a chain of 70 agents each handing its task
/// down, the 64th hop is the last; the next delegation is refused with the reason, which the
/// answers carry back up — and every task of the chain still ends with one outcome.
#[tokio::test]
async fn delegation_stops_at_64_hops() {
    const DEPTH: usize = 70;
    let mut b = TopologyBuilder::new("chain")
        .model("m", dollar_per_mtok())
        .tool("echo", ToolSpec::custom());
    for i in 0..DEPTH {
        let mut agent = AgentSpec::new(["m"]);
        if i + 1 < DEPTH {
            agent = agent.children([format!("a{}", i + 1)]);
        }
        b = b.agent(format!("a{i}"), agent);
    }
    let t = b.build().expect("valid");
    let model = FnModel::new(|r: &ModelRequest<'_>| {
        let me: usize = r.agent[1..].parse().expect("a number");
        Ok(if r.step == 1 && me + 1 < DEPTH {
            call(
                r,
                "delegate",
                json!({"agent": format!("a{}", me + 1), "task": "go on"}),
            )
        } else {
            let last = r
                .messages
                .last()
                .map_or(String::new(), |m| m.content.clone());
            text(r, &last)
        })
    });
    let (report, raw) = run_with(t, model, "go").await;
    assert!(
        raw.result
            .text
            .contains("delegation depth limit (64) reached"),
        "{}",
        raw.result.text
    );
    assert_eq!(report.tasks.len(), 65, "the root and 64 delegated tasks");
    assert!(report.tasks.iter().all(|t| t.outcome.is_some()));
}

#[tokio::test]
async fn conservation_through_three_levels() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recording = Recording {
        inner: model(3),
        seen: Arc::clone(&seen),
    };
    let (report, raw) = run_with(tree(None), recording, "go").await;
    assert_eq!(raw.result.outcome, Outcome::Completed);
    let snap = raw.account.snapshot();
    assert_eq!(snap.children.len(), 2);
    assert_eq!(snap.children[1].children.len(), 1, "b delegated to c");
    // The oracle: every reply the model gave, priced apart from the ledger ($1 per million
    // tokens in and out: 1,000 nano-dollars a token), agent by agent.
    let mut oracle: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (agent, u) in seen.lock().expect("oracle").iter() {
        let e = oracle.entry(agent.clone()).or_default();
        e.0 += 1;
        e.1 += (u.input + u.output) * 1_000;
    }
    for a in &report.agents {
        assert_eq!(
            oracle.get(&a.name).copied().unwrap_or_default(),
            (a.model_calls, a.cost_nanousd),
            "agent {}: the model's own count and price",
            a.name
        );
    }
    let total: u64 = oracle.values().map(|(_, c)| c).sum();
    assert_eq!(
        report.totals.cost_nanousd, total,
        "the run's total, by the oracle"
    );
    assert_eq!(
        raw.account.spent().0,
        total,
        "the ledger's root, by the oracle"
    );
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
    let model = FnModel::new(|r: &ModelRequest<'_>| {
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
    let model = FnModel::new(|r: &ModelRequest<'_>| {
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
