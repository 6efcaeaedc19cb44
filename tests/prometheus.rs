//! End to end with a real Prometheus: `baton run --metrics-addr` is scraped by a Prometheus server
//! on loopback, and what Prometheus stored must equal the run's JSON report, to the nano-dollar.
//! `promtool check metrics` must accept the exposition.
//!
//! Needs `prometheus` and `promtool` on the PATH (Debian: `apt-get install prometheus`); `.ci/run`
//! installs them and sets `BATON_REQUIRE_PROMETHEUS=1`, so that in CI a missing server fails the
//! test instead of skipping it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts `baton run FILE --task TASK --json --metrics-addr 127.0.0.1:PORT --linger 2m` and
/// returns it with the JSON report it printed when the work ended (it keeps serving afterwards).
/// `baton run FILE ARGS... --json --metrics-addr 127.0.0.1:PORT --linger 2m`, its stdout piped.
fn spawn_serving(file: &str, args: &[&str], port: u16) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", file])
            .args(args)
            .args([
                "--json",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--linger",
                "2m",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton starts"),
    )
}

fn serving_run(file: &str, task: &str, port: u16) -> (Killed, Value) {
    let mut baton = spawn_serving(file, &["--task", task], port);
    let report = read_report(&mut baton);
    (baton, report)
}

/// The JSON report a `--json` run prints when its work ends (it may keep serving afterwards).
fn read_report(baton: &mut Killed) -> Value {
    let mut json = String::new();
    let mut lines = BufReader::new(baton.0.stdout.take().expect("stdout"));
    while json.lines().last() != Some("}") {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).expect("read report") > 0,
            "baton exited before its report: {json}"
        );
        json.push_str(&line);
    }
    serde_json::from_str(&json).expect("one JSON report")
}

/// The lines a standing loop printed (`--json`) up to its closing summary: one per run.
fn loop_runs(baton: &mut Killed) -> Vec<Value> {
    let mut runs = Vec::new();
    let lines = BufReader::new(baton.0.stdout.take().expect("stdout")).lines();
    for line in lines {
        let v: Value = serde_json::from_str(&line.expect("a line")).expect("JSON line");
        if v.get("loops").is_some() {
            break;
        }
        if v.get("run").is_some() {
            runs.push(v);
        }
    }
    runs
}

/// `dashboards/baton.json`.
fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/baton.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON")
}

/// A panel's query as Grafana sends it with every filter on "All": `$__rate_interval` four
/// scrape intervals, `$__range` as given.
fn as_grafana(expr: &str, range: &str) -> String {
    ["$topology", "$agent", "$model", "$instance"]
        .iter()
        .fold(expr.to_string(), |e, v| e.replace(v, ".*"))
        .replace("$__rate_interval", "4s")
        .replace("$__range", range)
}

fn installed(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A GET over plain HTTP/1.0; the body.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then(|| body.to_string())
        .filter(|_| head.contains(" 200 "))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a scalar-ish PromQL query (first series), if Prometheus has one yet.
fn query(port: u16, promql: &str) -> Option<f64> {
    let body = get(port, &format!("/api/v1/query?query={}", encode(promql)))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Starts a Prometheus on `prom_port` that scrapes `127.0.0.1:metrics_port` every second.
fn start_prometheus(metrics_port: u16, prom_port: u16) -> Killed {
    let dir = std::env::temp_dir().join(format!("baton-prom-{}-{prom_port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: baton\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .expect("write config");
    Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    )
}

/// Waits until every query answers its wanted value, for up to a minute.
fn await_agreement(prom_port: u16, expected: &[(&str, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = expected
            .iter()
            .map(|(q, _)| query(prom_port, q))
            .collect::<Vec<_>>();
        if expected
            .iter()
            .zip(&last)
            .all(|((_, want), got)| *got == Some(*want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never agreed with the report: wanted {expected:?}, got {last:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until Prometheus holds at least `n` scrapes of `metric` in the last minute, so that
/// every rate window of a panel holds samples: polled, not a guessed sleep.
fn await_scrapes(prom_port: u16, metric: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let promql = format!("max(count_over_time({metric}[1m]))");
    loop {
        let got = query(prom_port, &promql);
        if got.is_some_and(|c| c >= f64::from(n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never held {n} scrapes of {metric}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Skips (or, in CI, fails) when Prometheus is not installed.
fn prometheus_available() -> bool {
    if installed("prometheus") && installed("promtool") {
        return true;
    }
    assert!(
        std::env::var_os("BATON_REQUIRE_PROMETHEUS").is_none(),
        "prometheus and promtool must be installed (apt-get install prometheus)"
    );
    // Written to stderr itself, not through `eprintln!`: the test harness would swallow it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (not failed): prometheus is not installed (apt-get install prometheus)"
    );
    false
}

#[test]
fn prometheus_scrapes_totals_equal_to_the_report() {
    if !prometheus_available() {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let (metrics_port, prom_port) = (free_port(), free_port());
    let (_baton, report) = serving_run(
        "examples/topologies/ops-triage.yaml",
        "p99 latency of checkout doubled at 14:05",
        metrics_port,
    );

    assert_eq!(report["outcome"], "completed");

    // promtool lints the exposition itself.
    let exposition = get(metrics_port, "/metrics").expect("/metrics answers");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The shipped scrape example is a valid configuration.
    let shipped = Command::new("promtool")
        .args(["check", "config", "dashboards/prometheus.yml"])
        .current_dir(root)
        .output()
        .expect("promtool runs");
    assert!(
        shipped.status.success(),
        "{}",
        String::from_utf8_lossy(&shipped.stdout)
    );

    // A real Prometheus scrapes the endpoint every second.
    let _prometheus = start_prometheus(metrics_port, prom_port);

    let t = &report["totals"];
    let n = |v: &Value| v.as_u64().expect("integer") as f64;
    let completed = report["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["outcome"] == "completed")
        .count() as f64;
    let expected = [
        ("sum(baton_cost_nanousd_total)", n(&t["cost_nanousd"])),
        (
            "sum(baton_tokens_total{kind=\"input\"})",
            n(&t["tokens_in"]),
        ),
        (
            "sum(baton_tokens_total{kind=\"output\"})",
            n(&t["tokens_out"]),
        ),
        (
            "sum(baton_model_requests_total{outcome=\"ok\"})",
            n(&t["model_calls"]),
        ),
        ("sum(baton_agent_steps_total)", n(&t["steps"])),
        ("sum(baton_tasks_total{outcome=\"completed\"})", completed),
        ("up{job=\"baton\"}", 1.0),
    ];
    await_agreement(prom_port, &expected);
    // The dollar counter is the same money, derived exactly.
    let usd = query(prom_port, "sum(baton_cost_usd_total)").expect("dollars scraped");
    assert!(
        (usd - n(&t["cost_nanousd"]) / 1e9).abs() < 1e-12,
        "{usd} dollars"
    );
    let workflows =
        query(prom_port, "sum(baton_workflow_cost_usd_count)").expect("workflow histogram scraped");
    assert_eq!(workflows, 1.0, "one completed workflow");
}

/// A standing loop scraped while it runs: what Prometheus stored equals the runs it printed.
#[test]
fn prometheus_scrapes_a_standing_loop() {
    if !prometheus_available() {
        return;
    }
    let (metrics_port, prom_port) = (free_port(), free_port());
    let topology = common::fast_ops_loop();
    let mut baton = spawn_serving(
        topology.to_str().expect("utf-8"),
        &["--for", "5s"],
        metrics_port,
    );
    let _prometheus = start_prometheus(metrics_port, prom_port);
    let runs = loop_runs(&mut baton);
    let count = |schedule: &str| runs.iter().filter(|r| r["schedule"] == schedule).count() as f64;
    let cost: u64 = runs
        .iter()
        .map(|r| {
            r["report"]["totals"]["cost_nanousd"]
                .as_u64()
                .expect("cost")
        })
        .sum();
    assert!(
        count("search-latency") >= 2.0 && count("checkout-latency") >= 1.0,
        "{runs:?}"
    );
    await_agreement(
        prom_port,
        &[
            (
                "sum(baton_loop_runs_total{schedule=\"search-latency\",outcome=\"completed\"})",
                count("search-latency"),
            ),
            (
                "sum(baton_loop_runs_total{schedule=\"checkout-latency\",outcome=\"completed\"})",
                count("checkout-latency"),
            ),
            ("sum(baton_cost_nanousd_total)", cost as f64),
            ("max(baton_loop_breaker_state)", 0.0),
        ],
    );
}

/// Without a Prometheus server: the endpoint's counters equal the run's report exactly.
#[test]
fn exposition_totals_equal_the_report() {
    let port = free_port();
    let (_baton, report) = serving_run(
        "examples/topologies/flaky-providers.yaml",
        "Prepare the weekly incident digest",
        port,
    );

    let text = get(port, "/metrics").expect("/metrics answers");
    let sum = |family: &str, filter: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(family) && l[family.len()..].starts_with('{') && l.contains(filter)
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let t = &report["totals"];
    let n = |v: &Value| v.as_u64().expect("integer") as f64;
    assert_eq!(
        sum("baton_cost_nanousd_total", ""),
        n(&t["cost_nanousd"]),
        "cost counter = ledger"
    );
    assert_eq!(
        sum("baton_tokens_total", "kind=\"input\""),
        n(&t["tokens_in"])
    );
    assert_eq!(
        sum("baton_tokens_total", "kind=\"output\""),
        n(&t["tokens_out"])
    );
    assert_eq!(
        sum("baton_model_requests_total", "outcome=\"ok\""),
        n(&t["model_calls"])
    );
    assert_eq!(
        sum("baton_model_requests_total", "outcome=\"error\""),
        n(&t["model_errors"])
    );
    assert_eq!(sum("baton_restarts_total", ""), n(&t["restarts"]));
    assert_eq!(sum("baton_budget_reroutes_total", ""), n(&t["reroutes"]));
    assert_eq!(sum("baton_budget_cutoffs_total", ""), 1.0);
    assert_eq!(sum("baton_agent_steps_total", ""), n(&t["steps"]));
}

/// Every routing decision is counted with its reason: in `router.yaml`, step 1's local call fails
/// and step 3's local answer is set aside (low confidence), so the frontier model takes both as
/// `escalated`; step 2 stays local, the `cheapest`.
#[test]
fn router_decisions_are_counted_by_reason() {
    let port = free_port();
    let (_baton, report) = serving_run(
        "examples/topologies/router.yaml",
        "Which deploy preceded the spike?",
        port,
    );
    assert_eq!(report["outcome"], "completed");
    let text = get(port, "/metrics").expect("/metrics answers");
    let value = |labels: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with("baton_router_decisions_total{") && l.contains(labels))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    };
    assert_eq!(
        value(r#"model="frontier",reason="escalated""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(r#"model="local",reason="cheapest""#), Some(1.0));
    for zero in [
        r#"model="frontier",reason="cheapest""#,
        r#"model="local",reason="escalated""#,
    ] {
        assert!(value(zero).is_none_or(|v| v == 0.0), "{zero}: {text}");
    }
}

/// Without a Prometheus server: a standing loop's series are born at zero — the skip reasons, the
/// run outcomes, the breaker's trips — so a panel reads 0 rather than "No data", and the first
/// increment is a visible rise to `rate()`.
#[test]
fn loop_series_are_born_at_zero() {
    let port = free_port();
    let topology = common::fast_ops_loop();
    let mut baton = spawn_serving(topology.to_str().expect("utf-8"), &["--for", "1s"], port);
    loop_runs(&mut baton);
    let text = get(port, "/metrics").expect("/metrics answers");
    for series in [
        r#"baton_loop_skipped_total{topology="ops-loop",schedule="search-latency",reason="overlap"}"#,
        r#"baton_loop_skipped_total{topology="ops-loop",schedule="search-latency",reason="runtime_down"}"#,
        r#"baton_loop_runs_total{topology="ops-loop",schedule="search-latency",outcome="budget_exceeded"}"#,
        r#"baton_loop_runs_total{topology="ops-loop",schedule="checkout-latency",outcome="refused"}"#,
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(series) && l.ends_with(" 0")),
            "{series} is not there at 0:\n{}",
            text.lines()
                .filter(|l| l.starts_with("baton_loop"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The dashboard read the way Grafana reads it: a standing loop runs (`ops-loop.yaml`, ticking
/// every second) while a real Prometheus scrapes it every second; then every query of every
/// panel of `dashboards/baton.json`, with the variables as Grafana substitutes them (every
/// filter "All", `$__rate_interval` four scrape intervals, `$__range` a minute), must be accepted
/// by Prometheus and return data — a panel that says "No data" for a run that has what it shows
/// is a broken panel. The one panel allowed to be empty shows MCP servers, which this topology
/// does not declare.
#[test]
fn every_dashboard_panel_answers_from_a_real_prometheus() {
    if !prometheus_available() {
        return;
    }
    let (metrics_port, prom_port) = (free_port(), free_port());
    let topology = common::fast_ops_loop();
    let mut baton = spawn_serving(
        topology.to_str().expect("utf-8"),
        &["--for", "6s"],
        metrics_port,
    );
    let _prometheus = start_prometheus(metrics_port, prom_port);
    let cost: u64 = loop_runs(&mut baton)
        .iter()
        .map(|r| {
            r["report"]["totals"]["cost_nanousd"]
                .as_u64()
                .expect("cost")
        })
        .sum();
    // Prometheus holds the final figures (the process lingers, still scraped)...
    await_agreement(prom_port, &[("sum(baton_cost_nanousd_total)", cost as f64)]);
    // ... and a few scrapes of them, so that every rate window holds samples.
    await_scrapes(prom_port, "baton_cost_nanousd_total", 5);
    let dashboard = dashboard();
    let mut empty = Vec::new();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let promql = as_grafana(expr, "1m");
            let body = get(
                prom_port,
                &format!("/api/v1/query?query={}", encode(&promql)),
            )
            .unwrap_or_else(|| panic!("Prometheus answered nothing for {promql}"));
            let v: Value = serde_json::from_str(&body).expect("JSON answer");
            assert_eq!(
                v["status"], "success",
                "panel {}: Prometheus refused {promql}: {body}",
                panel["title"]
            );
            checked += 1;
            if v["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                empty.push(panel["title"].as_str().unwrap_or("").to_string());
            }
        }
    }
    assert!(checked >= 30, "only {checked} queries");
    assert_eq!(empty, ["MCP server restarts"], "panels with no data");
    // The `topology` variable has something to select: every series carries the topology's name.
    let body = get(
        prom_port,
        &format!(
            "/api/v1/query?query={}",
            encode("count by (topology) ({__name__=~\"baton_.*\"})")
        ),
    )
    .expect("an answer");
    let v: Value = serde_json::from_str(&body).expect("JSON answer");
    let topologies: Vec<&str> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| r["metric"]["topology"].as_str().unwrap_or("(none)"))
        .collect();
    assert_eq!(topologies, ["ops-loop"], "{body}");
}

/// `--wait-for-scrape` holds the work until the first scrape (which therefore sees every series
/// at zero: no step taken yet), and `--linger` outlasts its duration until a scrape collects the
/// final figures, then ends. No Prometheus needed: the test is the scraper.
#[test]
fn the_first_and_the_final_figures_are_scraped() {
    let port = free_port();
    let mut baton = Killed(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "examples/topologies/ops-triage.yaml", "--task"])
            .arg("p99 latency of checkout doubled at 14:05")
            .args(["--json", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--wait-for-scrape", "1m", "--linger", "1s"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton starts"),
    );
    // The first scrape that finds the runtime's series (born at zero when it started) sees
    // nothing done yet: the work waited for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(text) = get(port, "/metrics")
            && text.contains("baton_agent_steps_total{")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the runtime's series never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let steps: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("baton_agent_steps_total{"))
        .collect();
    assert!(steps.iter().all(|l| l.ends_with(" 0")), "{steps:?}");
    // The run ends (its report is printed) ...
    let report = read_report(&mut baton);
    assert_eq!(report["outcome"], "completed");
    // ... and a second past its linger, with no scrape of the final figures, it still serves.
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        baton.0.try_wait().expect("status").is_none(),
        "it stopped before anything scraped the final figures"
    );
    let last = get(port, "/metrics").expect("/metrics answers");
    assert!(
        last.lines()
            .any(|l| l.starts_with("baton_agent_steps_total{") && !l.ends_with(" 0")),
        "{last}"
    );
    // Scraped: it ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while baton.0.try_wait().expect("status").is_none() {
        assert!(
            Instant::now() < deadline,
            "still serving after the final figures were scraped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dashboard's headline numbers are the report's: a one-off run of `flaky-providers.yaml`
/// (the budgets-and-supervision rehearsal: a crash and restart, a reroute, refusals, a cut-off),
/// held until Prometheus's first scrape (`--wait-for-scrape`) and scraped live, then read through
/// the "Totals in the time range" panels as Grafana would: the spend within a cent of the report's
/// total, and each count, as Grafana displays it (Prometheus's `increase` extrapolates a little
/// at the range's end; rounded), equal to the report's.
#[test]
fn the_dashboards_headline_numbers_match_the_report() {
    if !prometheus_available() {
        return;
    }
    let (metrics_port, prom_port) = (free_port(), free_port());
    let _prometheus = start_prometheus(metrics_port, prom_port);
    let mut baton = spawn_serving(
        "examples/topologies/flaky-providers.yaml",
        &[
            "--task",
            "Summarise this week's incidents",
            "--wait-for-scrape",
            "1m",
        ],
        metrics_port,
    );
    let report = read_report(&mut baton);
    let cost = report["totals"]["cost_nanousd"].as_u64().expect("cost");
    await_agreement(prom_port, &[("sum(baton_cost_nanousd_total)", cost as f64)]);
    await_scrapes(prom_port, "baton_cost_nanousd_total", 3);
    let agents = report["agents"].as_array().expect("agents");
    let events = |kind: &str| {
        agents
            .iter()
            .flat_map(|a| a["budget_events"].as_array().into_iter().flatten())
            .filter(|e| e["kind"] == kind)
            .count() as f64
    };
    let sum = |field: &str| {
        agents
            .iter()
            .map(|a| a[field].as_u64().expect("a count"))
            .sum::<u64>() as f64
    };
    let expected: Vec<(&str, f64)> = vec![
        ("cut-offs", events("cut_off")),
        ("reroutes", sum("reroutes")),
        ("refusals", events("refused")),
        ("restarts", sum("restarts")),
        // The run completed: no supervisor gave up.
        ("give-ups", 0.0),
    ];
    assert!(
        expected.iter().take(4).all(|(_, n)| *n >= 1.0),
        "the rehearsal did not rehearse: {expected:?}"
    );
    let dashboard = dashboard();
    let panel = |title: &str| {
        dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title}"))
            .clone()
    };
    let grafana = |expr: &str| -> f64 {
        let promql = as_grafana(expr, "10m");
        query(prom_port, &promql).unwrap_or_else(|| panic!("no value for {promql}"))
    };
    let spend = panel("Spend in the time range");
    let spent = grafana(spend["targets"][0]["expr"].as_str().expect("expr"));
    let reported = cost as f64 / 1e9;
    assert!(
        (spent - reported).abs() < 0.01,
        "the panel reads ${spent}, the report ${reported}"
    );
    let counts = panel("Budget actions and supervision in the time range");
    for t in counts["targets"].as_array().expect("targets") {
        let name = t["legendFormat"].as_str().expect("legend");
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no count for {name}"))
            .1;
        let read = grafana(t["expr"].as_str().expect("expr"));
        assert_eq!(read.round(), want, "{name}: the panel reads {read}");
    }
}
