//! The shared ledger (issue #17) against a real PostgreSQL (`BATON_TEST_POSTGRES_URL`; skipped,
//! saying so, without one).
//!
//! 1. **Reservations**: reserve-and-commit of a model call's worst case, from 1 and from 3
//!    replicas (each its own connection and 16 concurrent callers), through the escrow leases
//!    (`EscrowBudget`) and through the naive scheme as the baseline: one statement that locks the
//!    budget's row to reserve, one to commit, per call. Reports reservations/s and the p50/p99
//!    latency of a reserve.
//! 2. **Served tasks**: ops-triage workflows (instant scripted models) through 3 `baton serve
//!    --ledger` replicas sharing the queue and the budget, beside one `baton serve` with the
//!    in-process ledger. Reports tasks/s.
//!
//! `cargo bench --bench shared_ledger`. Under `cargo test --benches` it runs a short round and
//! checks the books: the escrow never overspends and books exactly what was committed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use baton::core::NanoUsd;
use baton_pg::{EscrowBudget, SharedLedger};

const CALLERS: usize = 16;
/// A call's worst case, and what it costs (about 80% of it).
const WORST: u64 = 10_000;
const COST: u64 = 8_000;

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    c
}

/// The naive scheme: every reservation locks the budget's row (reserve: spent += worst when it
/// fits; commit: spent -= worst - cost).
async fn naive_call(c: &tokio_postgres::Client, budget: &str) -> bool {
    let (worst, back) = (WORST as i64, (WORST - COST) as i64);
    let ok = c
        .query_opt(
            "UPDATE baton_budgets SET spent_nanousd = spent_nanousd + $2
             WHERE name = $1 AND spent_nanousd + leased_nanousd + $2 <= limit_nanousd RETURNING 1",
            &[&budget, &worst],
        )
        .await
        .expect("reserve")
        .is_some();
    if ok {
        c.execute(
            "UPDATE baton_budgets SET spent_nanousd = spent_nanousd - $2 WHERE name = $1",
            &[&budget, &back],
        )
        .await
        .expect("commit");
    }
    ok
}

struct Run {
    calls: u64,
    took: Duration,
    reserve: Vec<Duration>,
    committed: u64,
}

/// `replicas` replicas × `CALLERS` callers reserving and committing for `length`.
async fn reservations(url: &str, escrow: bool, replicas: usize, length: Duration) -> Run {
    let budget = format!(
        "bench-{}-{replicas}",
        if escrow { "escrow" } else { "naive" }
    );
    let setup = SharedLedger::connect(url, "setup", Duration::from_secs(30))
        .await
        .expect("connects");
    // Far more than the run spends: the figures are of contention, not of refusals.
    setup
        .ensure_budget(&budget, Some(NanoUsd::from_usd(1_000_000)))
        .await
        .expect("a budget");
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let t0 = Instant::now();
    for r in 0..replicas {
        let ledger = Arc::new(
            SharedLedger::connect(url, format!("r{r}"), Duration::from_secs(30))
                .await
                .expect("connects"),
        );
        let escrowed = Arc::new(EscrowBudget::new(
            Arc::clone(&ledger),
            budget.clone(),
            NanoUsd::from_usd(20),
        ));
        let naive = Arc::new(client(url).await);
        for _ in 0..CALLERS {
            let (escrowed, naive, budget) =
                (Arc::clone(&escrowed), Arc::clone(&naive), budget.clone());
            let (stop, committed) = (Arc::clone(&stop), Arc::clone(&committed));
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    if escrow {
                        let hold = escrowed
                            .reserve(NanoUsd(WORST))
                            .await
                            .expect("db")
                            .expect("covered");
                        lat.push(started.elapsed());
                        hold.commit(NanoUsd(COST)).expect("commits");
                    } else {
                        assert!(naive_call(&naive, &budget).await, "covered");
                        lat.push(started.elapsed());
                    }
                    committed.fetch_add(COST, Ordering::Relaxed);
                    // A model call happens here; yielding stands for it.
                    tokio::task::yield_now().await;
                }
                (lat, escrowed)
            }));
        }
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut reserve = Vec::new();
    let mut escrows = Vec::new();
    for w in workers {
        let (lat, e) = w.await.expect("a worker");
        reserve.extend(lat);
        escrows.push(e);
    }
    let took = t0.elapsed();
    for e in escrows {
        e.settle_idle().await.expect("settles");
    }
    let s = setup.status(&budget).await.expect("status");
    let committed = committed.load(Ordering::Relaxed);
    assert_eq!(s.leased, NanoUsd::ZERO, "{budget}: every lease settled");
    assert_eq!(
        s.spent,
        NanoUsd(committed),
        "{budget}: the books hold what was committed"
    );
    reserve.sort();
    Run {
        calls: reserve.len() as u64,
        took,
        reserve,
        committed,
    }
}

/// ops-triage at zero latency, without the approval wait, with a topology budget no run reaches.
fn topology_file() -> std::path::PathBuf {
    common::ops_triage_file(
        "shared",
        &[(
            "name: ops-triage",
            "name: ops-triage\nbudget:\n  max_usd: 100000",
        )],
    )
}

fn serve(file: &std::path::Path, ledger: Option<&str>) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args([
        "serve",
        file.to_str().expect("utf-8"),
        "--addr",
        "127.0.0.1:0",
    ]);
    if let Some(url) = ledger {
        cmd.args(["--ledger", url]);
    }
    let mut child = cmd
        .env_remove("BATON_TOKEN")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let base = lines
        .find_map(|l| {
            l.strip_prefix("ready: console at http://")
                .map(|a| format!("http://{}", a.trim_end_matches('/')))
        })
        .expect("the server started");
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

/// Submits `tasks` round robin to `bases` from 20 clients, then waits until `ended` says all
/// ended; the time it all took.
async fn served(bases: &[String], tasks: usize, ended: impl AsyncFn() -> usize) -> Duration {
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|c| {
            let (http, base) = (http.clone(), bases[c % bases.len()].clone());
            tokio::spawn(async move {
                for i in 0..tasks / 20 {
                    let r = http
                        .post(format!("{base}/v1/tasks"))
                        .json(&serde_json::json!({"task": format!("p99 latency of checkout doubled ({c}/{i})")}))
                        .send()
                        .await
                        .expect("POST");
                    assert_eq!(r.status().as_u16(), 202);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("a client");
    }
    while ended().await < tasks {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let Some(url) = baton_pg::testing::database("bench").await else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let length = if full {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(300)
    };
    println!("shared ledger: reserve + commit, {CALLERS} callers a replica");
    for replicas in [1, 3] {
        for escrow in [false, true] {
            let r = reservations(&url, escrow, replicas, length).await;
            println!(
                "  {:<6} {replicas} replica(s): {:>8.0} reservations/s, reserve p50 {:>7.1} µs, p99 {:>8.1} µs ({} calls, {} booked)",
                if escrow { "escrow" } else { "naive" },
                r.calls as f64 / r.took.as_secs_f64(),
                common::percentile(&r.reserve, 0.5).as_secs_f64() * 1e6,
                common::percentile(&r.reserve, 0.99).as_secs_f64() * 1e6,
                r.calls,
                NanoUsd(r.committed),
            );
        }
    }

    let tasks = if full { 1_000 } else { 60 };
    let file = topology_file();
    let (mut one, base) = serve(&file, None);
    let http = reqwest::Client::new();
    let local = served(std::slice::from_ref(&base), tasks, async || {
        let s: serde_json::Value = http
            .get(format!("{base}/v1/summary"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        s["tasks"].as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| *k != "running")
                .map(|(_, v)| v.as_u64().unwrap_or(0) as usize)
                .sum()
        })
    })
    .await;
    let _ = one.kill();
    let _ = one.wait();
    let mut replicas: Vec<(Child, String)> = (0..3).map(|_| serve(&file, Some(&url))).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let db = client(&url).await;
    let shared = served(&bases, tasks, async || {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM baton_tasks WHERE status NOT IN ('queued', 'running')",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        usize::try_from(n).unwrap_or(0)
    })
    .await;
    let completed: i64 = db
        .query_one(
            "SELECT count(*) FROM baton_tasks WHERE status = 'completed'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(completed as usize, tasks, "every served task completed");
    for (c, _) in &mut replicas {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&file);
    println!("served ops-triage tasks ({tasks}, 20 clients)");
    println!(
        "  1 replica, in-process ledger: {:>6.0} tasks/s",
        tasks as f64 / local.as_secs_f64()
    );
    println!(
        "  3 replicas, shared ledger:    {:>6.0} tasks/s ({:.2}× the one replica)",
        tasks as f64 / shared.as_secs_f64(),
        local.as_secs_f64() / shared.as_secs_f64()
    );
}
