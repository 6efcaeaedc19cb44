//! `baton ledger status` and `baton run --ledger` against a real PostgreSQL (`BATON_TEST_POSTGRES_URL`; skipped with the
//! reason printed without it, unless `BATON_REQUIRE_POSTGRES=1`).

use super::*;

use baton::core::NanoUsd;

/// The shared budgets of a fresh database, as a replica left them: one lease settled, one live,
/// one expired.
#[test]
fn status_shows_each_budget_its_spend_and_its_leases() {
    let Some((rt, url)) = database("status") else {
        return;
    };
    rt.block_on(async {
        let live = baton_pg::SharedLedger::connect(&url, "r1", std::time::Duration::from_secs(60))
            .await
            .expect("connects");
        live.ensure_budget("topology", Some(NanoUsd::from_usd(2)))
            .await
            .expect("budget");
        let a = live
            .draw("topology", NanoUsd(1_000_000), NanoUsd(100_000_000))
            .await
            .expect("draw")
            .expect("granted");
        live.settle(&a, NanoUsd(250_000)).await.expect("settle");
        live.draw("topology", NanoUsd(1_000_000), NanoUsd(100_000_000))
            .await
            .expect("draw")
            .expect("granted");
        let dying =
            baton_pg::SharedLedger::connect(&url, "r2", std::time::Duration::from_millis(1))
                .await
                .expect("connects");
        dying
            .draw("topology", NanoUsd(1_000_000), NanoUsd(50_000_000))
            .await
            .expect("draw")
            .expect("granted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    });
    let lines = json_lines(&["ledger", "status", "--ledger", &url, "--json"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let b = &lines[0];
    assert_eq!(b["budget"], "topology");
    assert_eq!(u(&b["limit_nanousd"]), 2_000_000_000);
    assert_eq!(u(&b["spent_nanousd"]), 250_000, "the settled lease's spend");
    assert_eq!(
        u(&b["leased_nanousd"]),
        150_000_000,
        "the live lease and the expired one"
    );
    assert_eq!((u(&b["live_leases"]), u(&b["expired_leases"])), (2, 1));
    let out = baton(&["ledger", "status", "--ledger", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("topology") && text.contains("$2.00") && text.contains("(1 expired)"),
        "{text}"
    );
    // An unreachable database is an error naming it, exit 2.
    let out = baton(&[
        "ledger",
        "status",
        "--ledger",
        "postgres://baton@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL (connecting)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh database on the test server for `name` (and a runtime to reach it), or `None`, the
/// reason printed, without one.
fn database(name: &str) -> Option<(tokio::runtime::Runtime, String)> {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let url = rt.block_on(baton_pg::testing::database(&format!("cli_{name}")))?;
    Some((rt, url))
}

/// Three `baton run --tasks` processes at once, each with 20 ops-triage tasks (about $0.25 a
/// batch), share the topology's `budget: max_usd: 0.38` through one ledger: together they never
/// spend more, the tasks it cannot cover end `budget_exceeded` saying so, and the database holds
/// exactly what the three reports say was spent.
#[test]
fn three_batches_share_the_topologys_budget() {
    let Some((rt, url)) = database("batches") else {
        return;
    };
    let topology = temp_file(
        "ops-triage-shared.yaml",
        &example(
            "ops-triage.yaml",
            &[(
                "name: ops-triage",
                "name: ops-triage\nbudget:\n  max_usd: 0.38",
            )],
        ),
    );
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .args([
                    "run",
                    topology.to_str().expect("utf-8"),
                    "--tasks",
                    "examples/tasks/alerts.jsonl",
                    "--json",
                    "--concurrency",
                    "4",
                    "--ledger",
                    &url,
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("baton runs")
        })
        .collect();
    let (mut spent, mut outcomes) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    let mut shared_refusals = 0;
    for child in children {
        let out = child.wait_with_output().expect("baton ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 0 when all completed, 4 (budget_exceeded) when some were refused.
        assert!(
            matches!(out.status.code(), Some(0 | 4)),
            "a batch failed ({:?}): {stderr}",
            out.status.code()
        );
        assert!(
            !stderr.contains("not booked on the shared budget"),
            "{stderr}"
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let r: Value = serde_json::from_str(line).expect("a JSON report line");
            if r.get("totals").is_none() {
                continue;
            }
            spent += u(&r["totals"]["cost_nanousd"]);
            let outcome = r["outcome"].as_str().expect("an outcome").to_string();
            *outcomes.entry(outcome).or_default() += 1;
            if r["error"]
                .as_str()
                .is_some_and(|e| e.contains("the shared budget `ops-triage` cannot cover"))
            {
                shared_refusals += 1;
            }
        }
    }
    assert_eq!(
        outcomes.values().sum::<u64>(),
        60,
        "every task one outcome: {outcomes:?}"
    );
    assert!(
        shared_refusals > 0,
        "the shared budget refused some: {outcomes:?}"
    );
    let held = rt.block_on(async {
        let l = baton_pg::SharedLedger::connect(&url, "check", std::time::Duration::from_secs(30))
            .await
            .expect("connects");
        l.status("ops-triage").await.expect("the budget")
    });
    assert!(
        held.spent <= NanoUsd(380_000_000),
        "overspent: {}",
        held.spent
    );
    assert_eq!(
        held.spent,
        NanoUsd(spent),
        "the database holds what the reports spent"
    );
    assert_eq!(
        (held.leased, held.live_leases),
        (NanoUsd::ZERO, 0),
        "every lease settled"
    );
    eprintln!("spent {} of $0.38: {outcomes:?}", held.spent);
    // What is left is what the calls in flight when the budget ran low had reserved (their worst
    // case) and did not spend: 12 tasks at once, each call reserving up to about $0.016.
    assert!(
        held.spent > NanoUsd(380_000_000 - 12 * 16_500_000),
        "the budget was used up to what calls in flight held: {}",
        held.spent
    );
}
