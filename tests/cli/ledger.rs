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
pub(super) fn database(name: &str) -> Option<(tokio::runtime::Runtime, String)> {
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

/// latency-watch ticking every 500 ms, with a topology budget to share and its ledger named by
/// the environment (`ledger: { postgres: "${BATON_TEST_LEDGER}" }`).
fn shared_loop_topology(name: &str) -> std::path::PathBuf {
    temp_file(
        name,
        &example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 500ms"),
                (
                    "name: latency-watch",
                    "name: latency-watch\nbudget:\n  max_usd_per_day: 1\nledger:\n  postgres: \"${BATON_TEST_LEDGER}\"",
                ),
            ],
        ),
    )
}

/// `baton run` on the loops for `run_for`, as a child process, on the ledger at `url`: named by
/// `--ledger` when `flag`, else by the topology's `ledger:` key through the environment.
fn loop_replica(
    topology: &std::path::Path,
    url: &str,
    run_for: &str,
    flag: bool,
) -> std::process::Child {
    let mut args = vec![
        "run",
        topology.to_str().expect("utf-8"),
        "--for",
        run_for,
        "--json",
    ];
    if flag {
        args.extend(["--ledger", url]);
    }
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env("BATON_TEST_LEDGER", if flag { "unused" } else { url })
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("baton runs")
}

/// Three loop replicas (`flag(i)`: replica `i` names the ledger with `--ledger`) run for
/// `run_for`; each one's output once it ended successfully.
fn loop_replicas(
    topology: &std::path::Path,
    url: &str,
    run_for: &str,
    flag: impl Fn(usize) -> bool,
) -> Vec<Vec<u8>> {
    let replicas: Vec<_> = (0..3)
        .map(|i| loop_replica(topology, url, run_for, flag(i)))
        .collect();
    replicas
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("baton ends");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        })
        .collect()
}

/// The ticks (Unix ms) a replica's JSON lines say it ran, and its loops' summary if it printed one.
fn ran_ticks(stdout: &[u8]) -> (Vec<u64>, Option<Value>) {
    let (mut ticks, mut summary) = (Vec::new(), None);
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        if v.get("loops").is_some() {
            summary = Some(v);
        } else if v.get("run").is_some() {
            assert_eq!(v["report"]["outcome"], "completed", "{v}");
            ticks.push(u(&v["tick_ms"]));
        }
    }
    (ticks, summary)
}

/// The ticks the database says were claimed, in order.
fn claimed_ticks(rt: &tokio::runtime::Runtime, url: &str) -> Vec<u64> {
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(conn);
        client
            .query(
                "SELECT tick_ms FROM baton_loop_ticks WHERE topology = 'latency-watch' ORDER BY tick_ms",
                &[],
            )
            .await
            .expect("claims")
            .iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).expect("a tick"))
            .collect()
    })
}

/// Three replicas of a standing loop on one ledger run each tick once between them: no tick twice,
/// no tick of the run's span missed, and each replica counts the ticks the others ran.
#[test]
fn a_loop_on_three_replicas_ticks_once_per_period() {
    let Some((rt, url)) = database("loops") else {
        return;
    };
    let topology = shared_loop_topology("latency-watch-shared.yaml");
    // One replica finds the ledger through the topology's `ledger:` key, two through `--ledger`.
    let mut all = Vec::new();
    let mut elsewhere = 0;
    for stdout in loop_replicas(&topology, &url, "3s", |i| i > 0) {
        let (ticks, summary) = ran_ticks(&stdout);
        let summary = summary.expect("the loops' summary");
        assert_eq!(u(&summary["loops"][0]["runs"]), ticks.len() as u64);
        elsewhere += u(&summary["loops"][0]["elsewhere"]);
        all.extend(ticks);
    }
    all.sort_unstable();
    let runs = all.len();
    all.dedup();
    assert_eq!(all.len(), runs, "no tick ran twice: {all:?}");
    assert!(elsewhere > 0, "the replicas saw each other's ticks");
    // Every tick between the first and the last ran, one period apart.
    assert!(all.len() >= 4, "about six ticks in 3 s: {all:?}");
    for pair in all.windows(2) {
        assert_eq!(pair[1] - pair[0], 500, "a tick missed: {all:?}");
    }
    // What ran is what was claimed (a claim taken as a replica stopped may not have run).
    let claimed = claimed_ticks(&rt, &url);
    assert!(
        all.iter().all(|t| claimed.contains(t)),
        "{all:?} ⊆ {claimed:?}"
    );
}

/// kill -9 of one of three loop replicas: the others go on ticking, and every tick after the
/// kill runs (the dead replica holds no lease to wait out: each tick is claimed afresh).
#[test]
fn a_killed_loop_replicas_ticks_are_taken_by_the_others() {
    let Some((_rt, url)) = database("loops_kill") else {
        return;
    };
    let topology = shared_loop_topology("latency-watch-kill.yaml");
    let mut victim = loop_replica(&topology, &url, "5s", true);
    let others: Vec<_> = (0..2)
        .map(|_| loop_replica(&topology, &url, "5s", true))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    victim.kill().expect("SIGKILL");
    let killed_at = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_millis(),
    )
    .expect("ms");
    let _ = victim.wait();
    let mut after = Vec::new();
    for child in others {
        let out = child.wait_with_output().expect("baton ends");
        assert!(out.status.success());
        let (ticks, _) = ran_ticks(&out.stdout);
        after.extend(ticks.into_iter().filter(|t| *t > killed_at));
    }
    after.sort_unstable();
    let n = after.len();
    after.dedup();
    assert_eq!(after.len(), n, "no tick ran twice: {after:?}");
    assert!(after.len() >= 4, "the survivors ticked on: {after:?}");
    for pair in after.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            500,
            "a tick missed after the kill: {after:?}"
        );
    }
}

/// `ledger:` in a topology: a password written inline is refused, naming the key; a URL that is
/// not PostgreSQL's is refused; a variable that is not set stops the run, naming it.
#[test]
fn the_ledger_key_refuses_inline_passwords_and_unset_variables() {
    let with = |ledger: &str| {
        temp_file(
            "ledger-key.yaml",
            &example(
                "latency-watch.yaml",
                &[(
                    "name: latency-watch",
                    &format!(
                        "name: latency-watch\nbudget:\n  max_usd: 1\nledger:\n  postgres: {ledger}"
                    ),
                )],
            ),
        )
    };
    let out = baton(&[
        "validate",
        with("\"postgres://baton:hunter2@db/x\"")
            .to_str()
            .expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "validate fails: {err}");
    assert!(err.contains("the URL holds a password inline"), "{err}");
    assert!(err.contains("ledger"), "{err}");
    assert!(!err.contains("hunter2"), "the password is masked: {err}");
    let out = baton(&["validate", with("mysql://db/x").to_str().expect("utf-8")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a PostgreSQL URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            with("\"${BATON_TEST_NO_SUCH_VAR}\"")
                .to_str()
                .expect("utf-8"),
            "--for",
            "1s",
        ])
        .env_remove("BATON_TEST_NO_SUCH_VAR")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("baton runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`BATON_TEST_NO_SUCH_VAR`, which is not set"),
        "{err}"
    );
}

/// A standing loop's own `per_day_usd` on three replicas is one limit for the fleet: together
/// their runs never spend more (each alone would spend about three quarters of it), the runs it
/// cannot cover end `budget_exceeded` naming the loop's shared day budget, and the database holds
/// exactly what the runs spent.
#[test]
fn a_loops_per_day_limit_holds_across_replicas() {
    let Some((rt, url)) = database("loop_budget") else {
        return;
    };
    let topology = temp_file(
        "latency-watch-loop-budget.yaml",
        &example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 300ms"),
                ("per_day_usd: 0.50", "per_day_usd: 0.00003"),
                ("per_hour_usd: 0.05", "per_hour_usd: 0.00003"),
            ],
        ),
    );
    let (mut spent, mut shared_refusals) = (0u64, 0);
    for stdout in loop_replicas(&topology, &url, "2s", |_| true) {
        for line in String::from_utf8_lossy(&stdout).lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let Some(report) = v.get("report") else {
                continue;
            };
            spent += u(&report["totals"]["cost_nanousd"]);
            if report["error"].as_str().is_some_and(|e| {
                e.contains("the shared budget `latency-watch/loop/search-latency/")
            }) {
                shared_refusals += 1;
            }
        }
    }
    assert!(
        spent <= 30_000,
        "the fleet spent {spent} of the loop's $0.00003 a day"
    );
    assert!(
        shared_refusals > 0,
        "the shared day (or hour) refused some runs"
    );
    let budgets = rt.block_on(async {
        baton_pg::SharedLedger::connect(&url, "check", std::time::Duration::from_secs(30))
            .await
            .expect("connects")
            .statuses()
            .await
            .expect("statuses")
    });
    let day = budgets
        .iter()
        .find(|b| b.name.starts_with("latency-watch/loop/search-latency/day/"))
        .expect("the loop's day budget");
    assert_eq!(
        (day.spent, day.leased),
        (NanoUsd(spent), NanoUsd::ZERO),
        "the database holds what the runs spent"
    );
}

/// A loop's spend circuit breaker on three replicas judges the fleet's runs: it opens once the
/// runs of all replicas together pass its window's limit (each replica alone would have run about
/// twice as many), and then every replica skips the loop's ticks as paused.
#[test]
fn a_loops_breaker_opens_on_the_fleets_spend() {
    let Some((_rt, url)) = database("loop_breaker") else {
        return;
    };
    // A run costs $0.00000923: the breaker opens after the third run of the fleet.
    let topology = temp_file(
        "latency-watch-breaker.yaml",
        &example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 300ms"),
                (
                    "breaker: { window: 1h, max_usd: 0.01, spike: 5, cool_down: 15m }",
                    "breaker: { window: 1h, max_usd: 0.00002, cool_down: 1h }",
                ),
            ],
        ),
    );
    let (mut runs, mut paused, mut elsewhere) = (0, 0, 0);
    for stdout in loop_replicas(&topology, &url, "3s", |_| true) {
        let (_, summary) = ran_ticks_any(&stdout);
        let l = &summary.expect("the loops' summary")["loops"][0];
        runs += u(&l["runs"]);
        paused += u(&l["paused"]);
        elsewhere += u(&l["elsewhere"]);
    }
    assert!(
        (3..=4).contains(&runs),
        "the fleet's breaker opened after its third run (one more may have been under way): {runs} runs"
    );
    assert!(paused > 0, "ticks were skipped as paused: {paused}");
    assert!(elsewhere > 0);
}

/// Like [`ran_ticks`], for runs of any outcome: their ticks and the loops' summary.
fn ran_ticks_any(stdout: &[u8]) -> (Vec<u64>, Option<Value>) {
    let (mut ticks, mut summary) = (Vec::new(), None);
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        if v.get("loops").is_some() {
            summary = Some(v);
        } else if v.get("run").is_some() {
            ticks.push(u(&v["tick_ms"]));
        }
    }
    (ticks, summary)
}
