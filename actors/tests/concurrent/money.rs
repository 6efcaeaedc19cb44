//! Money under concurrency: no overspend, conservation.

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
