//! The binary's HTTP endpoints, on axum: `/metrics` (the recorder of [`baton::metrics`]) and the
//! approval queue (`/approvals`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton::actors::{AnswerError, ApprovalQueue};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// Binds `addr` and serves `GET /metrics` until the process ends. Returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .nest("/metrics", metrics_router(handle))
        .route("/", get(|| async { "baton: metrics at /metrics\n" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try /metrics\n") });
    listen(addr, "metrics", app).await
}

/// Scrapes of `/metrics`: each takes a ticket (1, 2, …) before it renders; the highest ticket
/// whose answer is rendered; and a wake-up for whoever waits on the next.
static SCRAPES: (
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicU64,
    tokio::sync::Notify,
) = (
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    tokio::sync::Notify::const_new(),
);

/// How many scrapes of `/metrics` this process has begun.
pub(crate) fn scrapes() -> u64 {
    SCRAPES.0.load(std::sync::atomic::Ordering::Acquire)
}

/// Waits, for at most `limit`, until a scrape that began after the first `seen` has been
/// rendered: it saw the figures as they were when `seen` was read, or later. (A scrape that began
/// before, and rendered, say, before the runtime's series existed, does not count.) Returns
/// whether one was.
pub(crate) async fn scraped_after(seen: u64, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            let next = SCRAPES.2.notified();
            if SCRAPES.1.load(std::sync::atomic::Ordering::Acquire) > seen {
                return;
            }
            next.await;
        }
    })
    .await
    .is_ok()
}

/// `--wait-for-scrape`: how long the work waits for the first scrape, once its runtime has
/// started (its series registered at zero) and before any task is submitted.
pub(crate) static WAIT_FOR_SCRAPE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Waits, as `--wait-for-scrape` asked, for the first scrape; called by every kind of run right
/// after its runtime started.
pub(crate) async fn before_work() {
    let Some(limit) = WAIT_FOR_SCRAPE.get().copied() else {
        return;
    };
    eprintln!(
        "metrics: waiting for the first scrape (at most {})",
        baton::core::format_duration(limit)
    );
    // A scrape from before the runtime started saw no series: the one that counts comes after.
    if !scraped_after(scrapes(), limit).await {
        eprintln!(
            "metrics: no scrape within {}; starting anyway",
            baton::core::format_duration(limit)
        );
    }
}

/// `GET /` of this router: the Prometheus exposition of the recorder behind `handle` (its
/// upkeep, which drains histograms, runs every 5 s in a task of its own). Each answer is counted
/// ([`scrapes`]): `--linger` and `--wait-for-scrape` wait on them.
pub(crate) fn metrics_router<S>(handle: PrometheusHandle) -> Router<S> {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Router::new()
        .route(
            "/",
            get(|State(handle): State<PrometheusHandle>| async move {
                let ticket = SCRAPES.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
                let body = baton::metrics::render(&handle);
                SCRAPES
                    .1
                    .fetch_max(ticket, std::sync::atomic::Ordering::AcqRel);
                SCRAPES.2.notify_waiters();
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }),
        )
        .with_state(handle)
}

/// Binds `addr` and serves the approval queue until the process ends: `GET /approvals` lists
/// the requests (JSON), `POST /approvals/ID/approve` and `POST /approvals/ID/deny` answer one
/// (body, optional: `{"by": "...", "reason": "..."}`, sent as `application/json`).
///
/// Guarded against the browser: a request whose `Host` is not the bound loopback address (DNS
/// rebinding), and a POST with a foreign `Origin` or without `Content-Type: application/json`
/// (a cross-site form or `text/plain` fetch), are refused. With `BATON_APPROVALS_TOKEN` set,
/// every request must carry `Authorization: Bearer <token>` (compared in constant time); a
/// non-loopback address is refused without one.
pub(crate) async fn serve_approvals(
    addr: SocketAddr,
    queue: Arc<ApprovalQueue>,
) -> anyhow::Result<SocketAddr> {
    let token = std::env::var("BATON_APPROVALS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if !addr.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to serve approvals on {addr} without a token: anyone who reaches it could approve destructive calls. Set BATON_APPROVALS_TOKEN, or bind a loopback address (127.0.0.1)"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the approvals endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    let guard = Arc::new(Guard::new(token, bound));
    let app = Router::new()
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}/{verb}", post(answer_approval))
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                "try GET /approvals, POST /approvals/ID/approve or POST /approvals/ID/deny",
            )
        })
        .layer(axum::middleware::from_fn_with_state(guard, guarded))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(queue);
    spawn_server(listener, app);
    Ok(bound)
}

const MAX_BODY: usize = 64 * 1024;

async fn listen(addr: SocketAddr, what: &str, app: Router) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    spawn_server(listener, app);
    Ok(bound)
}

fn spawn_server(listener: TcpListener, app: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP endpoint stopped: {e}");
        }
    });
}

/// What an endpoint that acts (approvals, `baton serve`'s API) checks before any route: the
/// `Host` (DNS rebinding), the bearer token, and for a request that changes something its
/// `Origin` (cross-site requests) and, for a POST, `Content-Type: application/json` (a form or
/// `text/plain` fetch cannot send it without a CORS preflight, which is never granted).
pub(crate) struct Guard {
    token: Option<String>,
    bound: SocketAddr,
    /// Paths served without the token (still Host-checked): pages and probes that reveal nothing.
    public: &'static [&'static str],
}

impl Guard {
    /// A guard for an endpoint bound to `bound`, with the bearer `token` (if any).
    pub(crate) fn new(token: Option<String>, bound: SocketAddr) -> Guard {
        Guard {
            token,
            bound,
            public: &[],
        }
    }

    /// The same, serving `paths` without the token.
    pub(crate) fn with_public(mut self, paths: &'static [&'static str]) -> Guard {
        self.public = paths;
        self
    }

    /// Whether `host` (a `Host` header) names the bound address: the address itself, or a
    /// loopback name for it. On a non-loopback bind (which needs a token) any host is accepted.
    fn host_ok(&self, host: Option<&str>) -> bool {
        if !self.bound.ip().is_loopback() {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let port = self.bound.port();
        let (name, given_port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.is_empty() && !p.contains(']') => (n, p.parse::<u16>().ok()),
            _ => (host, None),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback && given_port.unwrap_or(80) == port
    }

    fn token_ok(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(t) => authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|given| bool::from(given.as_bytes().ct_eq(t.as_bytes()))),
        }
    }
}

pub(crate) async fn guarded(
    State(guard): State<Arc<Guard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if !guard.host_ok(text(header::HOST)) {
        return json_error(
            StatusCode::FORBIDDEN,
            "the Host header does not name this endpoint (a DNS-rebinding page?)",
        );
    }
    let public = guard.public.contains(&request.uri().path());
    if !public && !guard.token_ok(text(header::AUTHORIZATION)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "a bearer token is required (Authorization: Bearer <token>)" })),
        )
            .into_response();
    }
    let method = request.method();
    let changes = !matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if changes && let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return json_error(
                StatusCode::FORBIDDEN,
                format!("a request from another origin ({origin}) is refused"),
            );
        }
    }
    if method == axum::http::Method::POST {
        let json = text(header::CONTENT_TYPE).is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "requests are sent as Content-Type: application/json",
            );
        }
    }
    next.run(request).await
}

pub(crate) fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

pub(crate) async fn list_approvals(State(queue): State<Arc<ApprovalQueue>>) -> Response {
    Json(queue.list()).into_response()
}

/// An answer to an approval request (the body is optional).
#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Answer {
    /// Who answers (recorded in the queue and the audit trail).
    pub(crate) by: Option<String>,
    /// Why (for a denial: the model is told).
    pub(crate) reason: Option<String>,
}

pub(crate) async fn answer_approval(
    State(queue): State<Arc<ApprovalQueue>>,
    Path((id, verb)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return json_error(
                StatusCode::NOT_FOUND,
                "try POST /approvals/ID/approve or POST /approvals/ID/deny",
            );
        }
    };
    let Ok(id) = id.parse::<u64>() else {
        return json_error(StatusCode::NOT_FOUND, format!("no approval request #{id}"));
    };
    let answer: Answer = if body.iter().all(u8::is_ascii_whitespace) {
        Answer::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("the body: {e}")),
        }
    };
    match queue.answer(id, approve, answer.by, answer.reason) {
        Ok(r) => Json(r).into_response(),
        Err(e @ AnswerError::NotFound(_)) => json_error(StatusCode::NOT_FOUND, e),
        Err(e) => json_error(StatusCode::CONFLICT, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_must_name_the_bound_loopback_address_and_tokens_compare_whole() {
        let g = Guard::new(
            Some("s3cret".into()),
            "127.0.0.1:9465".parse().expect("addr"),
        );
        for ok in [
            "127.0.0.1:9465",
            "localhost:9465",
            "LOCALHOST:9465",
            "[::1]:9465",
        ] {
            assert!(g.host_ok(Some(ok)), "{ok}");
        }
        for bad in [
            "attacker.example:9465",
            "127.0.0.1:80",
            "127.0.0.1",
            "localhost.attacker.example:9465",
            "",
        ] {
            assert!(!g.host_ok(Some(bad)), "{bad}");
        }
        assert!(!g.host_ok(None));
        assert!(g.token_ok(Some("Bearer s3cret")));
        for bad in ["Bearer s3cre", "Bearer s3cret2", "s3cret", "Basic s3cret"] {
            assert!(!g.token_ok(Some(bad)), "{bad}");
        }
        assert!(!g.token_ok(None));
    }
}
