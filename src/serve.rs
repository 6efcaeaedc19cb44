//! The binary's HTTP endpoints: `/metrics` (the Prometheus recorder, installed by the binary;
//! libraries only emit) and the approval queue (`/approvals`).
//!
//! The `metrics` facade has integer counters only, so money is counted exactly as
//! `baton_cost_nanousd_total`; the endpoint also renders `baton_cost_usd_total`, the same counter in
//! dollars, computed from the integer at scrape time (no float is ever accumulated).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton::actors::{AnswerError, ApprovalQueue};
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
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    listen(addr, "metrics", Arc::new(Routes::Metrics(handle))).await
}

/// Binds `addr` and serves the approval queue until the process ends: `GET /approvals` lists
/// the requests (JSON), `POST /approvals/ID/approve` and `POST /approvals/ID/deny` answer one
/// (body, optional: `{"by": "...", "reason": "..."}`). With `BATON_APPROVALS_TOKEN` set, every
/// request must carry `Authorization: Bearer <token>`.
pub(crate) async fn serve_approvals(
    addr: SocketAddr,
    queue: Arc<ApprovalQueue>,
) -> anyhow::Result<SocketAddr> {
    let token = std::env::var("BATON_APPROVALS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    listen(
        addr,
        "approvals",
        Arc::new(Routes::Approvals { queue, token }),
    )
    .await
}

enum Routes {
    Metrics(PrometheusHandle),
    Approvals {
        queue: Arc<ApprovalQueue>,
        token: Option<String>,
    },
}

async fn listen(addr: SocketAddr, what: &str, routes: Arc<Routes>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let routes = Arc::clone(&routes);
            tokio::spawn(async move {
                // A slow or broken client is dropped; it never affects the run.
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, &routes)).await;
            });
        }
    });
    Ok(bound)
}

/// One HTTP/1.1 request: method, path, the `Authorization` header, the body.
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

const MAX_BODY: usize = 64 * 1024;

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let end = loop {
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if len == buf.len() {
            return Ok(None);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0usize;
    let mut authorization = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    if length > MAX_BODY {
        return Ok(None);
    }
    let mut body = buf[end..len].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Request {
        method,
        path: path.split('?').next().unwrap_or("").to_string(),
        authorization,
        body,
    }))
}

async fn answer(mut stream: TcpStream, routes: &Routes) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
        )
        .await;
    };
    let (status, kind, body) = match routes {
        Routes::Metrics(handle) => metrics_route(&req, handle),
        Routes::Approvals { queue, token } => approvals_route(&req, queue, token.as_deref()),
    };
    respond(&mut stream, status, kind, &body).await
}

type Reply = (&'static str, &'static str, String);

fn metrics_route(req: &Request, handle: &PrometheusHandle) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(handle),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/plain",
            "baton: metrics at /metrics\n".into(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    }
}

fn json_error(status: &'static str, message: impl std::fmt::Display) -> Reply {
    (
        status,
        "application/json",
        serde_json::json!({ "error": message.to_string() }).to_string(),
    )
}

fn approvals_route(req: &Request, queue: &ApprovalQueue, token: Option<&str>) -> Reply {
    if let Some(t) = token
        && req.authorization.as_deref() != Some(&format!("Bearer {t}"))
    {
        return json_error("401 Unauthorized", "a bearer token is required");
    }
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["approvals"]) => (
            "200 OK",
            "application/json",
            serde_json::to_string(&queue.list()).unwrap_or_else(|_| "[]".into()),
        ),
        ("POST", ["approvals", id, verb @ ("approve" | "deny")]) => {
            let Ok(id) = id.parse::<u64>() else {
                return json_error("404 Not Found", format!("no approval request #{id}"));
            };
            #[derive(serde::Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            struct Answer {
                by: Option<String>,
                reason: Option<String>,
            }
            let answer: Answer = if req.body.iter().all(u8::is_ascii_whitespace) {
                Answer::default()
            } else {
                match serde_json::from_slice(&req.body) {
                    Ok(a) => a,
                    Err(e) => {
                        return json_error("400 Bad Request", format!("the body: {e}"));
                    }
                }
            };
            match queue.answer(id, *verb == "approve", answer.by, answer.reason) {
                Ok(r) => (
                    "200 OK",
                    "application/json",
                    serde_json::to_string(&r).unwrap_or_default(),
                ),
                Err(e @ AnswerError::NotFound(_)) => json_error("404 Not Found", e),
                Err(e) => json_error("409 Conflict", e),
            }
        }
        ("GET" | "POST", _) => json_error(
            "404 Not Found",
            "try GET /approvals, POST /approvals/ID/approve or POST /approvals/ID/deny",
        ),
        _ => json_error("405 Method Not Allowed", "GET or POST"),
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
