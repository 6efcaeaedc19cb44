//! `baton serve`'s HTTP API and console, on axum.

use std::collections::{BTreeMap, VecDeque};
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
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::broadcast;

use super::feed::{AgentStats, FeedEvent};
use super::{BudgetView, Feed, LoopView, NewTask, Service, SubmitError, Submitted, TaskRecord};
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
    let metrics = crate::serve::metrics_router(metrics);
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
        .route(
            "/healthz",
            get(|| async {
                Json(Probe {
                    status: "ok".into(),
                    reason: None,
                })
            }),
        )
        .route(
            "/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .route("/readyz", get(readyz))
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(status).delete(cancel))
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/loops", get(loops))
        .route(
            "/v1/loops/{name}/pause",
            post(|s: Started, name: Path<String>| pause(s, name, true)),
        )
        .route(
            "/v1/loops/{name}/resume",
            post(|s: Started, name: Path<String>| pause(s, name, false)),
        )
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
                Json(ErrorBody {
                    error: "starting: the runtime is not ready yet".into(),
                }),
            )
                .into_response(),
            Refusal::NoTask(id) => json_error(StatusCode::NOT_FOUND, format!("no task {id}")),
        }
    }
}

/// The started service, as an extractor: a handler that takes it answers `503` while the runtime
/// starts.
struct Started(Arc<Service>);

impl axum::extract::FromRequestParts<Slot> for Started {
    type Rejection = Refusal;

    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        slot: &Slot,
    ) -> Result<Started, Refusal> {
        slot.get().cloned().map(Started).ok_or(Refusal::Starting)
    }
}

async fn readyz(State(slot): State<Slot>) -> Response {
    let probe = |status: &str, reason: Option<&str>| Probe {
        status: status.into(),
        reason: reason.map(str::to_string),
    };
    match slot.get() {
        Some(s) if s.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(probe("draining", None)),
        )
            .into_response(),
        Some(s) if s.runtime.down().is_some() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(probe("down", s.runtime.down())),
        )
            .into_response(),
        Some(_) => Json(probe("ready", None)).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(probe("starting", None)),
        )
            .into_response(),
    }
}

/// Where to follow a submitted task.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TaskLinks {
    /// The task's id.
    pub(crate) id: u64,
    /// Its status and, once it ends, its report.
    pub(crate) status_url: String,
    /// Its events as they happen (Server-Sent Events).
    pub(crate) events_url: String,
}

fn links(id: u64) -> TaskLinks {
    TaskLinks {
        id,
        status_url: format!("/v1/tasks/{id}"),
        events_url: format!("/v1/tasks/{id}/events"),
    }
}

/// A page of tasks, newest first.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TaskList {
    /// The tasks (without their reports: each is at its `status_url`).
    pub(crate) tasks: Vec<TaskRecord>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub(crate) next_cursor: Option<u64>,
}

/// What went wrong.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// A sentence naming what and where.
    pub(crate) error: String,
}

/// A probe's answer.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Probe {
    /// `ok` (healthz); `ready`, `starting`, `draining` or `down` (readyz).
    pub(crate) status: String,
    /// Why the runtime is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// A cancellation under way.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Cancelling {
    /// The task.
    pub(crate) id: u64,
    /// `cancelling`: the task ends `cancelled` (its reservations released) in a moment.
    pub(crate) status: String,
    /// Where its outcome will be.
    pub(crate) status_url: String,
}

/// The standing loops.
#[derive(Serialize, JsonSchema)]
pub(crate) struct LoopList {
    /// One per schedule.
    pub(crate) loops: Vec<LoopView>,
}

/// What each agent did since the server started.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AgentList {
    /// By agent name.
    pub(crate) agents: BTreeMap<String, AgentStats>,
}

/// The service at a glance.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Summary {
    /// The topology's name.
    pub(crate) topology: String,
    /// When the server started (Unix milliseconds).
    pub(crate) started_ms: u64,
    /// Root tasks running or queued now (loop runs included).
    pub(crate) in_flight: usize,
    /// Served tasks by status.
    pub(crate) tasks: BTreeMap<String, u64>,
    /// The topology's budget.
    pub(crate) budget: BudgetView,
    /// What a completed task cost on average (absent before the first).
    pub(crate) cost_per_completed_nanousd: Option<u64>,
    /// What routing saved on the completed tasks against the top model of each ladder.
    pub(crate) routing_saved_nanousd: u64,
    /// Whether the server is shutting down.
    pub(crate) draining: bool,
}

/// An agent of the topology.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AgentView {
    /// Its name.
    pub(crate) name: String,
    /// What it is for.
    pub(crate) description: Option<String>,
    /// Its model ladder, cheapest first.
    pub(crate) models: Vec<String>,
    /// Its tools.
    pub(crate) tools: Vec<String>,
    /// The agents it supervises.
    pub(crate) children: Vec<String>,
    /// Agents it may delegate to without supervising them.
    pub(crate) delegates: Vec<String>,
    /// Who takes over its task when its budget runs out (`reroute`).
    pub(crate) fallback: Option<String>,
    /// Its money limit per task.
    pub(crate) max_usd_per_task_nanousd: Option<u64>,
    /// Tasks it runs at once.
    pub(crate) max_concurrency: u32,
    /// Tasks that may wait beyond those.
    pub(crate) queue: u32,
    /// Whether it is the root agent (it receives submitted tasks).
    pub(crate) root: bool,
}

/// A model of the topology.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ModelView {
    /// Its name.
    pub(crate) name: String,
    /// Who answers its calls.
    pub(crate) provider: baton::topologies::Provider,
    /// Price of a million prompt tokens.
    pub(crate) input_per_mtok_nanousd: u64,
    /// Price of a million completion tokens.
    pub(crate) output_per_mtok_nanousd: u64,
}

/// The topology, for the console: agents, models, budget, loops.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TopologyView {
    /// Its name.
    pub(crate) name: String,
    /// The root agent.
    pub(crate) root: String,
    /// Every agent.
    pub(crate) agents: Vec<AgentView>,
    /// Every model.
    pub(crate) models: Vec<ModelView>,
    /// The topology's budget.
    pub(crate) budget: BudgetView,
    /// The standing loops.
    pub(crate) schedules: Vec<LoopView>,
}

/// One event of a stream (the SSE `data`; its `id` is `seq`, its `event` is `kind`). Besides
/// these, each kind carries its own fields, as the audit trail records them: `model_call`
/// (agent, step, model, tokens_in, tokens_out, cost_nanousd, latency_ms), `tool_call` (tool,
/// call, arguments), `tool_result` (tool, call, outcome, result), `policy` (tool, decision,
/// rule, reason), `budget` (action), `task_start` (agent, parent), `task_end` (agent, outcome,
/// detail), `task_submitted` (text), `task_report` (status, cost_nanousd, answer, error; the
/// last event of a task's stream), `loop` (schedule, ...), `restart`, `escalation`,
/// `model_error`, `model_retry`, `breaker`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct StreamEvent {
    /// Its number (increasing): resume after it with `Last-Event-ID`.
    pub(crate) seq: u64,
    /// Its kind.
    pub(crate) kind: String,
    /// When it happened (Unix milliseconds).
    pub(crate) at_ms: u64,
    /// The root task (the submitted task) it belongs to.
    pub(crate) root: Option<u64>,
    /// The (sub-)task it is about.
    pub(crate) task: Option<u64>,
}

async fn submit(Started(service): Started, body: axum::body::Bytes) -> Response {
    let new: NewTask = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body: {e} (expected {{\"task\": \"...\", \"budget_usd\"?, \"deadline\"?, \"idempotency_key\"?, \"on_interrupted\"?}})"
                ),
            );
        }
    };
    // With a shared queue the task is queued for whichever replica has room.
    match service.enqueue(new).await {
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
            Json(ErrorBody { error: why }),
        )
            .into_response(),
        Ok(Submitted::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(ErrorBody {
                error: "the server is shutting down: it takes no new tasks".into(),
            }),
        )
            .into_response(),
        Ok(Submitted::Unavailable(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(ErrorBody { error: why }),
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

async fn status(Started(service): Started, Path(id): Path<String>) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match service.task_anywhere(id).await {
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
    Started(service): Started,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
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
    let (tasks, next) = match &service.queue {
        Some(queue) => match service
            .list_shared(queue, q.status.as_deref(), limit, q.cursor)
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the shared queue: {e}"),
                );
            }
        },
        None => service.list(q.status.as_deref(), limit, q.cursor),
    };
    Json(TaskList {
        tasks,
        next_cursor: next,
    })
    .into_response()
}

async fn cancel(Started(service): Started, Path(id): Path<String>) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let cancelled = match service.cancel_anywhere(id).await {
        Ok(c) => c,
        Err(e) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the shared queue: {e}"),
            );
        }
    };
    match cancelled {
        None => json_error(StatusCode::NOT_FOUND, format!("no task {id}")),
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(Cancelling {
                id,
                status: "cancelling".into(),
                status_url: format!("/v1/tasks/{id}"),
            }),
        )
            .into_response(),
        Some(false) => {
            let status = service
                .task_anywhere(id)
                .await
                .map(|r| r.status)
                .unwrap_or_default();
            json_error(
                StatusCode::CONFLICT,
                format!("task {id} has already ended ({status})"),
            )
        }
    }
}

async fn loops(Started(service): Started) -> Response {
    Json(LoopList {
        loops: service.loops(),
    })
    .into_response()
}

async fn pause(Started(service): Started, Path(name): Path<String>, pause: bool) -> Response {
    match service.pause(&name, pause) {
        Some(view) => Json(view).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            format!("no standing loop {name:?} in this topology"),
        ),
    }
}

async fn summary(Started(service): Started) -> Response {
    let (completed, completed_cost, saved) = service.completed();
    Json(Summary {
        topology: service.topology.name().to_string(),
        started_ms: service.started_ms(),
        in_flight: service.runtime.in_flight(),
        tasks: service.counts(),
        budget: service.budget_view(),
        cost_per_completed_nanousd: completed_cost.checked_div(completed),
        routing_saved_nanousd: saved,
        draining: service.is_draining(),
    })
    .into_response()
}

async fn agents(Started(service): Started) -> Response {
    Json(AgentList {
        agents: service.feed.agents(),
    })
    .into_response()
}

async fn topology(Started(service): Started) -> Response {
    let t = &service.topology;
    let g = t.graph();
    let mut children = vec![Vec::new(); g.node_count()];
    let mut delegates = vec![Vec::new(); g.node_count()];
    for e in g.edge_indices() {
        if let Some((from, to)) = g.edge_endpoints(e) {
            let list = match g[e] {
                baton::topologies::Edge::Supervises => &mut children,
                baton::topologies::Edge::DelegatesTo => &mut delegates,
                baton::topologies::Edge::FallsBackTo => continue,
            };
            list[from.index()].push(g[to].name.to_string());
        }
    }
    let agents = g
        .node_indices()
        .map(|i| {
            let a = &g[i];
            AgentView {
                name: a.name.to_string(),
                description: a.description.clone(),
                models: a.ladder.iter().map(ToString::to_string).collect(),
                tools: a.tools.iter().map(ToString::to_string).collect(),
                children: std::mem::take(&mut children[i.index()]),
                delegates: std::mem::take(&mut delegates[i.index()]),
                fallback: a.fallback.as_deref().map(str::to_string),
                max_usd_per_task_nanousd: a.budget.max_cost.map(|c| c.0),
                max_concurrency: a.max_concurrency,
                queue: a.queue,
                root: i == t.root(),
            }
        })
        .collect();
    let models = t
        .models()
        .map(|m| ModelView {
            name: m.name.to_string(),
            provider: m.provider,
            input_per_mtok_nanousd: m.price.input_per_mtok.0,
            output_per_mtok_nanousd: m.price.output_per_mtok.0,
        })
        .collect();
    Json(TopologyView {
        name: t.name().to_string(),
        root: g[t.root()].name.to_string(),
        agents,
        models,
        budget: service.budget_view(),
        schedules: service.loops(),
    })
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
    Started(service): Started,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let after = resume_point(&headers, q.after);
    // A task another replica runs (or that waits in the shared queue): its events as that
    // replica copied them to the database.
    if !service.runs_here(id)
        && let Some(queue) = &service.queue
    {
        if service.task_anywhere(id).await.is_none() {
            return json_error(StatusCode::NOT_FOUND, format!("no task {id}"));
        }
        return super::queue::stream(Arc::clone(&queue.tasks), id, after);
    }
    let Some(record) = service.task(id) else {
        return json_error(StatusCode::NOT_FOUND, format!("no task {id}"));
    };
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
