//! `/metrics` over HTTP: the Prometheus recorder, installed by the binary (libraries only emit).
//!
//! The `metrics` facade has integer counters only, so money is counted exactly as
//! `baton_cost_nanousd_total`; the endpoint also renders `baton_cost_usd_total`, the same counter in
//! dollars, computed from the integer at scrape time (no float is ever accumulated).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const CPU_BUCKETS: &[f64] = &[0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1.0, 10.0];
const RATIO_BUCKETS: &[f64] = &[0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0];
const COST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Installs the Prometheus recorder and describes every metric.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("baton_model_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("baton_tool_duration_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full("baton_tool_cpu_seconds".into()), CPU_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("baton_token_estimate_ratio".into()),
            RATIO_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("baton_workflow_cost_usd".into()),
            COST_BUCKETS,
        )?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    baton::actors::describe_metrics();
    Ok(handle)
}

/// The exposition text: the recorder's, plus `baton_cost_usd_total` derived from the exact
/// nano-dollar counter.
pub(crate) fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    let mut usd = String::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("baton_cost_nanousd_total") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(nanos) = value.parse::<u64>() else {
            continue;
        };
        let _ = writeln!(
            usd,
            "baton_cost_usd_total{labels} {}.{:09}",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        );
    }
    if !usd.is_empty() {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# HELP baton_cost_usd_total Money booked in the ledger for model calls, in dollars (from baton_cost_nanousd_total).\n");
        text.push_str("# TYPE baton_cost_usd_total counter\n");
        text.push_str(&usd);
    }
    text
}

/// Binds `addr` and serves `GET /metrics` until the process ends. Returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                // A slow or broken client is dropped; it never affects the run.
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, &handle)).await;
            });
        }
    });
    Ok(bound)
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &render(handle),
            )
            .await
        }
        ("GET", "/") => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain",
                "baton: metrics at /metrics\n",
            )
            .await
        }
        ("GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "not found: try /metrics\n",
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_counter_is_derived_exactly() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("baton_cost_nanousd_total", "agent" => "a", "model" => "m")
                .increment(1_234_567_891);
        });
        let text = render(&handle);
        assert!(
            text.contains("# TYPE baton_cost_usd_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"baton_cost_usd_total{agent="a",model="m"} 1.234567891"#),
            "{text}"
        );
    }
}
