//! `baton serve`'s HTTP API and console, on axum.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton::actors::ApprovalQueue;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::broadcast;

use super::feed::FeedEvent;
use super::{Feed, NewTask, Service, SubmitError, Submitted};
use crate::serve::{Guard, guarded, json_error};

/// The largest request body (a task's text and its options).
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// The service, once started (requests before that are answered `503`, except the probes).
type Slot = Arc<OnceLock<Arc<Service>>>;

/// The console's files, built into the binary.
const CONSOLE_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The API, the console and the probes behind the guard.
pub(crate) fn router(
    slot: Slot,
    guard: Guard,
    metrics: PrometheusHandle,
    queue: Arc<ApprovalQueue>,
    feed: Arc<Feed>,
) -> Router {
    let guard =
        Arc::new(guard.with_public(&["/", "/console.js", "/console.css", "/healthz", "/readyz"]));
    let approvals = Router::new()
        .route("/", get(crate::serve::list_approvals))
        .route("/{id}/{verb}", post(crate::serve::answer_approval))
        .with_state(queue);
    let metrics = Router::new()
        .route(
            "/",
            get(|State(handle): State<PrometheusHandle>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    baton::metrics::render(&handle),
                )
            }),
        )
        .with_state(metrics);
    let events = Router::new().route("/", get(all_events)).with_state(feed);
    Router::new()
        .route(
            "/",
            get(|| async { page(CONSOLE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console.js",
            get(|| async { page(CONSOLE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console.css",
            get(|| async { page(CONSOLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(status).delete(cancel))
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/loops", get(loops))
        .route("/v1/topology", get(topology))
        .route("/v1/agents", get(agents))
        .route("/v1/summary", get(summary))
        .with_state(slot)
        .nest("/v1/approvals", approvals)
        .nest("/v1/events", events)
        .nest("/metrics", metrics)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint: see /v1") })
        .layer(axum::middleware::from_fn_with_state(guard, guarded))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A console file, with a content security policy that allows only this origin's own files.
fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Why a request about the service or one of its tasks is answered with an error.
enum Refusal {
    /// `503`: the runtime is still starting.
    Starting,
    /// `404`: no task with that id.
    NoTask(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Starting => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(json!({"error": "starting: the runtime is not ready yet"})),
            )
                .into_response(),
            Refusal::NoTask(id) => json_error(StatusCode::NOT_FOUND, format!("no task {id}")),
        }
    }
}

/// The service, or `503` while it starts.
fn started(slot: &Slot) -> Result<Arc<Service>, Refusal> {
    slot.get().cloned().ok_or(Refusal::Starting)
}

async fn readyz(State(slot): State<Slot>) -> Response {
    match slot.get() {
        Some(s) if s.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response(),
        Some(s) if s.runtime.down().is_some() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "down", "reason": s.runtime.down()})),
        )
            .into_response(),
        Some(_) => Json(json!({"status": "ready"})).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
            .into_response(),
    }
}

fn links(id: u64) -> serde_json::Value {
    json!({
        "id": id,
        "status_url": format!("/v1/tasks/{id}"),
        "events_url": format!("/v1/tasks/{id}/events"),
    })
}

async fn submit(State(slot): State<Slot>, body: axum::body::Bytes) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let new: NewTask = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body: {e} (expected {{\"task\": \"...\", \"budget_usd\"?, \"deadline\"?, \"idempotency_key\"?}})"
                ),
            );
        }
    };
    match service.submit(new) {
        Ok(Submitted::New(id)) => (StatusCode::ACCEPTED, Json(links(id))).into_response(),
        Ok(Submitted::Again(id)) => (
            StatusCode::OK,
            [("idempotent-replayed", "true")],
            Json(links(id)),
        )
            .into_response(),
        Ok(Submitted::Busy(why)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": why})),
        )
            .into_response(),
        Ok(Submitted::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(json!({"error": "the server is shutting down: it takes no new tasks"})),
        )
            .into_response(),
        Err(e @ SubmitError::KeyReused { .. }) => json_error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
}

fn task_id(text: &str) -> Result<u64, Refusal> {
    text.parse::<u64>()
        .map_err(|_| Refusal::NoTask(format!("{text:?}")))
}

async fn status(State(slot): State<Slot>, Path(id): Path<String>) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match service.task(id) {
        Some(r) => Json(r).into_response(),
        None => json_error(StatusCode::NOT_FOUND, format!("no task {id}")),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<u64>,
}

async fn list(
    State(slot): State<Slot>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the query: {e} (expected status=, limit= from 1 to 1000, cursor= a task id)"
                ),
            );
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, "`limit` is from 1 to 1000");
    }
    let (tasks, next) = service.list(q.status.as_deref(), limit, q.cursor);
    Json(json!({"tasks": tasks, "next_cursor": next})).into_response()
}

async fn cancel(State(slot): State<Slot>, Path(id): Path<String>) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match service.cancel(id) {
        None => json_error(StatusCode::NOT_FOUND, format!("no task {id}")),
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(
                json!({"id": id, "status": "cancelling", "status_url": format!("/v1/tasks/{id}")}),
            ),
        )
            .into_response(),
        Some(false) => {
            let status = service.task(id).map(|r| r.status).unwrap_or_default();
            json_error(
                StatusCode::CONFLICT,
                format!("task {id} has already ended ({status})"),
            )
        }
    }
}

async fn loops(State(slot): State<Slot>) -> Response {
    match started(&slot) {
        Ok(s) => Json(json!({"loops": s.loops()})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn summary(State(slot): State<Slot>) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let (completed, completed_cost) = service.completed();
    Json(json!({
        "topology": service.topology.name(),
        "started_ms": service.started_ms(),
        "in_flight": service.runtime.in_flight(),
        "tasks": service.counts(),
        "budget": service.budget_view(),
        "cost_per_completed_nanousd": completed_cost.checked_div(completed),
        "draining": service.is_draining(),
    }))
    .into_response()
}

async fn agents(State(slot): State<Slot>) -> Response {
    match started(&slot) {
        Ok(s) => Json(json!({"agents": s.feed.agents()})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn topology(State(slot): State<Slot>) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let t = &service.topology;
    let g = t.graph();
    let mut children = vec![Vec::new(); g.node_count()];
    let mut delegates = vec![Vec::new(); g.node_count()];
    for e in g.edge_indices() {
        if let Some((from, to)) = g.edge_endpoints(e) {
            match g[e] {
                baton::topologies::Edge::Supervises => children[from.index()].push(&*g[to].name),
                baton::topologies::Edge::DelegatesTo => delegates[from.index()].push(&*g[to].name),
                baton::topologies::Edge::FallsBackTo => {}
            }
        }
    }
    let agents: Vec<_> = g
        .node_indices()
        .map(|i| {
            let a = &g[i];
            json!({
                "name": &*a.name,
                "description": a.description,
                "models": a.ladder.iter().map(|m| &**m).collect::<Vec<_>>(),
                "tools": a.tools.iter().map(|m| &**m).collect::<Vec<_>>(),
                "children": children[i.index()],
                "delegates": delegates[i.index()],
                "fallback": a.fallback.as_deref(),
                "max_usd_per_task_nanousd": a.budget.max_cost.map(|c| c.0),
                "max_concurrency": a.max_concurrency,
                "queue": a.queue,
                "root": i == t.root(),
            })
        })
        .collect();
    let models: Vec<_> = t
        .models()
        .map(|m| {
            json!({
                "name": &*m.name,
                "provider": m.provider,
                "input_per_mtok_nanousd": m.price.input_per_mtok.0,
                "output_per_mtok_nanousd": m.price.output_per_mtok.0,
            })
        })
        .collect();
    Json(json!({
        "name": t.name(),
        "root": &*g[t.root()].name,
        "agents": agents,
        "models": models,
        "budget": service.budget_view(),
        "schedules": service.loops(),
    }))
    .into_response()
}

/// `Last-Event-ID` (as the browser's `EventSource` sends it on reconnecting), or `?after=N`.
fn resume_point(headers: &HeaderMap, after: Option<u64>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(after)
        .unwrap_or(0)
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<u64>,
}

async fn all_events(
    State(feed): State<Arc<Feed>>,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Response {
    let after = resume_point(&headers, q.after);
    stream(feed, None, after, false)
}

async fn task_events(
    State(slot): State<Slot>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Response {
    let service = match started(&slot) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let Some(record) = service.task(id) else {
        return json_error(StatusCode::NOT_FOUND, format!("no task {id}"));
    };
    let after = resume_point(&headers, q.after);
    stream(
        Arc::clone(&service.feed),
        Some(id),
        after,
        record.status != "running",
    )
}

/// A Server-Sent-Events stream of the feed (of one task, which ends after its report): the kept
/// events after `after`, then live ones.
fn stream(feed: Arc<Feed>, root: Option<u64>, after: u64, ended: bool) -> Response {
    let (rx, backlog) = feed.subscribe(root, after);
    // A task that ended and whose events are no longer kept (or were all sent): nothing waits.
    let end_after_backlog = ended;
    let follow = Follow {
        feed,
        rx,
        backlog: backlog.into(),
        root,
        last: after,
        done: false,
        end_after_backlog,
    };
    let events = futures::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|e| {
            let sse = SseEvent::default()
                .id(e.seq.to_string())
                .event(e.kind)
                .data(&e.data);
            (Ok::<_, Infallible>(sse), f)
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Follow {
    feed: Arc<Feed>,
    rx: broadcast::Receiver<Arc<FeedEvent>>,
    backlog: VecDeque<Arc<FeedEvent>>,
    root: Option<u64>,
    last: u64,
    done: bool,
    end_after_backlog: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Arc<FeedEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                if e.seq <= self.last {
                    continue;
                }
                self.last = e.seq;
                if self.root.is_some() && e.last {
                    self.done = true;
                }
                return Some(e);
            }
            if self.end_after_backlog {
                return None;
            }
            match self.rx.recv().await {
                Ok(e) => {
                    if e.seq > self.last && (self.root.is_none() || e.root == self.root) {
                        self.backlog.push_back(e);
                    }
                }
                // Too slow a reader: take up again from what is kept.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (rx, backlog) = self.feed.subscribe(self.root, self.last);
                    self.rx = rx;
                    self.backlog = backlog.into();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
