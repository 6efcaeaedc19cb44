//! `baton serve` under load, over loopback HTTP: clients submit the ops-triage workflow (three
//! agents, 11 model calls, tool calls and two delegations a task, on instant scripted models, no
//! approval wait) as fast as the server answers, and every task runs to its end.
//!
//! Reports requests/s and the p50/p99 latency of `POST /v1/tasks`, the wall time until every
//! task has ended, and beside it the same tasks spawned in-process on a `Runtime` (the baseline):
//! the difference per task is what serving costs beyond the runtime's own work (HTTP, the task
//! table, the event feed and its JSON).
//!
//! `cargo bench --bench serve`: 2,000 tasks from 100 concurrent clients. Under `cargo test
//! --benches` it runs a small round (100 tasks, 10 clients) and checks that each one completed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use baton::actors::Runtime;
use baton::topologies::Topology;

/// The ops-triage example at zero latency and without the approval wait.
fn topology_file() -> std::path::PathBuf {
    common::ops_triage_file("serve", &[])
}

const ALERT: &str = "p99 latency of checkout doubled at 14:05";

async fn in_process(file: &std::path::Path, tasks: usize, clients: usize) -> Duration {
    let topology = Topology::from_path(file).expect("valid");
    let runtime = Runtime::builder(topology).start().await.expect("starts");
    let t0 = Instant::now();
    let per = tasks / clients;
    let mut all = Vec::new();
    for _ in 0..clients {
        let rt = runtime.clone();
        all.push(tokio::spawn(async move {
            let handles: Vec<_> = (0..per).map(|_| rt.spawn(ALERT)).collect();
            for h in handles {
                let r = h.await.expect("a report");
                assert_eq!(r.outcome.as_str(), "completed", "{:?}", r.error);
            }
        }));
    }
    for c in all {
        c.await.expect("client");
    }
    let took = t0.elapsed();
    runtime.shutdown().await;
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (tasks, clients) = if full { (2_000, 100) } else { (100, 10) };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let file = topology_file();

    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "serve",
            file.to_str().expect("utf-8"),
            "--addr",
            "127.0.0.1:0",
        ])
        .env_remove("BATON_TOKEN")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut base = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(a) = line.strip_prefix("ready: console at http://") {
            base = Some(format!("http://{}", a.trim_end_matches('/')));
            break;
        }
    }
    let base = Arc::new(base.expect("the server started"));
    let http = reqwest::Client::new();

    // Submissions: each client POSTs its share one after another.
    let t0 = Instant::now();
    let mut all = Vec::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), Arc::clone(&base));
        all.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..tasks / clients {
                let started = Instant::now();
                let r = http
                    .post(format!("{base}/v1/tasks"))
                    .json(&serde_json::json!({"task": format!("{ALERT} ({c}/{i})")}))
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(r.status().as_u16(), 202);
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for c in all {
        latencies.extend(c.await.expect("client"));
    }
    let submitted = t0.elapsed();
    // Until every task has ended.
    loop {
        let summary: serde_json::Value = http
            .get(format!("{base}/v1/summary"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        let ended: u64 = summary["tasks"]
            .as_object()
            .expect("counts")
            .iter()
            .filter(|(k, _)| *k != "running")
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum();
        if ended as usize == tasks {
            assert_eq!(
                summary["tasks"]["completed"].as_u64(),
                Some(tasks as u64),
                "{summary}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let served = t0.elapsed();
    let _ = child.kill();
    let _ = child.wait();

    let baseline = in_process(&file, tasks, clients).await;
    let _ = std::fs::remove_file(&file);
    latencies.sort();
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / tasks as f64;
    println!(
        "serve: {tasks} ops-triage tasks from {clients} concurrent clients over loopback HTTP"
    );
    println!(
        "  POST /v1/tasks: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
        tasks as f64 / submitted.as_secs_f64(),
        common::percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        common::percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "  all tasks ended: {:.1} ms ({:.1} µs a task); in-process Runtime::spawn baseline: {:.1} ms ({:.1} µs a task)",
        served.as_secs_f64() * 1e3,
        per_task(served),
        baseline.as_secs_f64() * 1e3,
        per_task(baseline),
    );
    println!(
        "  serving's overhead: {:.1} µs a task ({:.2}× the runtime's own)",
        per_task(served) - per_task(baseline),
        served.as_secs_f64() / baseline.as_secs_f64(),
    );
}
