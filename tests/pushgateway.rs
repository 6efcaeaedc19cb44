//! One-off runs push their final metrics to a real Prometheus Pushgateway (Debian's
//! `prometheus-pushgateway`), started here on a free port: `baton run --push-metrics URL`.
//!
//! Skipped with a notice when the Pushgateway is not installed; required when
//! `BATON_REQUIRE_PUSHGATEWAY` is set (CI).

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{example, skip_notice, temp_file};

const ALERT: &str = "p99 latency of checkout doubled at 14:05";

/// A Pushgateway on a free port, killed when dropped.
struct Gateway {
    child: Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway() -> Option<Gateway> {
    let installed = Command::new("prometheus-pushgateway")
        .arg("--version")
        .output()
        .is_ok();
    if !installed {
        assert!(
            std::env::var_os("BATON_REQUIRE_PUSHGATEWAY").is_none(),
            "prometheus-pushgateway is required (apt-get install prometheus-pushgateway)"
        );
        skip_notice("no Pushgateway here (apt-get install prometheus-pushgateway)");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the Pushgateway starts");
    // Killed and waited for when dropped, ready or not.
    let gateway = Gateway {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if get(&format!("{}/-/ready", gateway.url)).is_some() {
            return Some(gateway);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Pushgateway did not become ready");
}

/// A plain HTTP GET over a TCP stream (no client library needed for loopback text).
fn get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("BATON_PUSHGATEWAY")
        .output()
        .expect("baton runs")
}

/// The value of the sample of `family` whose labels include every `labels` pair.
fn sample(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A run pushes its final metrics when it ends, under the grouping key job `baton`, its
/// topology and the instance given: a completed run's counters match its report, and a run that
/// fails (its budget too small) pushes too.
#[test]
fn a_run_pushes_its_final_metrics() {
    let Some(gw) = gateway() else {
        return;
    };
    let out = baton(&[
        "run",
        "examples/topologies/ops-triage.yaml",
        "--task",
        ALERT,
        "--json",
        "--push-metrics",
        &gw.url,
        "--push-instance",
        "ci-1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report");
    let text = get(&format!("{}/metrics", gw.url)).expect("the Pushgateway answers");
    let key = [
        ("job", "baton"),
        ("topology", "ops-triage"),
        ("instance", "ci-1"),
    ];
    let completed = sample(
        &text,
        "baton_tasks_total",
        &[
            key[0],
            key[1],
            key[2],
            ("agent", "triage"),
            ("outcome", "completed"),
        ],
    );
    assert_eq!(completed, Some(1.0), "{text}");
    // Unattended, the restart's approval is denied at once: counted under its rule, the other
    // rules' series present at zero.
    let denied = |rule| {
        sample(
            &text,
            "baton_policy_denials_total",
            &[("instance", "ci-1"), ("agent", "triage"), ("rule", rule)],
        )
    };
    assert_eq!(
        (denied("approval"), denied("freeze"), denied("role")),
        (Some(1.0), Some(0.0), Some(0.0)),
        "{text}"
    );
    // Summed over its label sets (agent, model).
    let cost: f64 = text
        .lines()
        .filter(|l| l.starts_with("baton_cost_nanousd_total{") && l.contains("instance=\"ci-1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        cost as u64,
        report["totals"]["cost_nanousd"].as_u64().expect("cost"),
        "the pushed spend is the report's"
    );

    // A failing run pushes too, under its own instance.
    let file = temp_file("push-small.yaml", &example("ops-triage.yaml", &[]));
    let out = baton(&[
        "run",
        file.to_str().expect("utf-8"),
        "--task",
        ALERT,
        "--budget-usd",
        "0.000001",
        "--push-metrics",
        &gw.url,
        "--push-instance",
        "ci-2",
    ]);
    assert_eq!(out.status.code(), Some(4), "budget_exceeded");
    let text = get(&format!("{}/metrics", gw.url)).expect("the Pushgateway answers");
    let refused = sample(
        &text,
        "baton_tasks_total",
        &[
            ("instance", "ci-2"),
            ("agent", "triage"),
            ("outcome", "budget_exceeded"),
        ],
    );
    assert_eq!(refused, Some(1.0), "{text}");
    // The first run's group is still there: each run replaces only its own.
    assert!(text.contains("instance=\"ci-1\""));
}

/// A push that cannot reach the gateway says so on stderr and leaves the run's exit code alone.
#[test]
fn an_unreachable_gateway_is_reported_not_fatal() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = baton(&[
        "run",
        "examples/topologies/ops-triage.yaml",
        "--task",
        ALERT,
        "--push-metrics",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pushing metrics"), "{err}");
}

/// A run interrupted by SIGTERM ends `cancelled` (exit 6) and still pushes.
#[test]
fn an_interrupted_run_pushes_too() {
    let Some(gw) = gateway() else {
        return;
    };
    let file = temp_file(
        "push-slow.yaml",
        &example("ops-triage.yaml", &[("latency: 150ms", "latency: 60s")]),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", file.to_str().expect("utf-8"), "--task", ALERT])
        .args(["--push-metrics", &gw.url, "--push-instance", "ci-3"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton runs");
    common::wait_until_catching(child.id(), 15);
    let out = common::terminate(child);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = get(&format!("{}/metrics", gw.url)).expect("the Pushgateway answers");
    let cancelled = sample(
        &text,
        "baton_tasks_total",
        &[
            ("instance", "ci-3"),
            ("agent", "triage"),
            ("outcome", "cancelled"),
        ],
    );
    assert_eq!(cancelled, Some(1.0), "{text}");
}
