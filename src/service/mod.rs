//! `baton serve FILE`: the topology as a service. Tasks submitted over HTTP and the standing
//! loops run concurrently on one runtime, under the topology's own `budget:`; every event is
//! streamed (Server-Sent Events); a console is served at `/`.
//!
//! - [`Service`]: the runtime, the table of served tasks, the budget's periods, the loops' views.
//! - `feed`: the event feed the streams read.
//! - `api`: the HTTP API and the console, on axum.

mod api;
mod budget;
mod feed;
mod loops;
pub(crate) mod openapi;
mod queue;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use baton::actors::{ApprovalQueue, LoopEvent, LoopStore, RunReport, Runtime};
use baton::core::{Account, Budget, NanoUsd, Outcome, TaskId};
use baton::topologies::Topology;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

pub(crate) use budget::BudgetView;
use budget::{Periods, SavedBudget};
pub(crate) use feed::Feed;
pub(crate) use loops::LoopView;

/// Finished tasks kept in memory (the oldest are dropped first; with `--state` they are still
/// answered for from the state file). Their idempotency keys are all kept.
const KEPT_FINISHED: usize = 10_000;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How `baton serve` was asked to run.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Option<PathBuf>,
    pub(crate) audit: Option<baton::core::audit::AuditLog>,
    pub(crate) grace: Duration,
    /// `--ledger` (or the topology's `ledger:`): the shared ledger's URL.
    pub(crate) ledger: Option<String>,
    /// `--ledger-lease`.
    pub(crate) lease: Duration,
    /// `--on-interrupted`: what becomes of a task whose replica died, unless it says.
    pub(crate) on_interrupted: OnInterrupted,
}

/// A served task, as the API shows it and the state file keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct TaskRecord {
    /// Its id (the root task's id: every event of its run carries it as `root`).
    pub(crate) id: u64,
    /// What it was asked.
    pub(crate) task: String,
    /// `queued` (on a shared queue, not yet taken by a replica), `running`, then its outcome
    /// (`completed`, `failed`, `busy`, ...), or `interrupted` (the server — or, on a shared
    /// queue, the replica — stopped while it ran).
    pub(crate) status: String,
    /// When it was submitted (Unix milliseconds).
    pub(crate) submitted_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_ms: Option<u64>,
    /// The client's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) idempotency_key: Option<String>,
    /// The most it may spend (its own cap, the root agent's and what the topology's budget had
    /// left, the tightest): what an interrupted task is charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) limit_nanousd: Option<u64>,
    /// Spent so far (live while it runs).
    pub(crate) cost_nanousd: u64,
    /// The answer, when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) answer: Option<String>,
    /// Why it ended, otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The same report as `baton run --json`, when it ended (of its last run, when it was
    /// resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RunReport>")]
    pub(crate) report: Option<serde_json::Value>,
    /// How many runs of it were interrupted (their replica died) before this one, which runs it
    /// again (`on_interrupted: resume`); its `cost_nanousd` then includes what the shared ledger
    /// booked for them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) resumed: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskRecord {
    fn running(&self) -> bool {
        self.status == "running"
    }
}

/// A task to submit.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTask {
    /// What to do.
    pub(crate) task: String,
    /// The task's own budget, in dollars (a number or a decimal string: `0.05`, `"0.05"`).
    #[serde(default)]
    #[schemars(with = "Option<BudgetUsd>")]
    pub(crate) budget_usd: Option<serde_json::Value>,
    /// How long it may run (`30s`, `5m`): it ends `timed_out` then.
    #[serde(default)]
    pub(crate) deadline: Option<String>,
    /// Submitting the same key again returns the same task; it never runs twice.
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    /// What becomes of it if the replica running it dies (on a shared queue, `--ledger`):
    /// `end` (it ends `interrupted`) or `resume` (another replica runs it again from the start,
    /// within what its budget has left; at most twice). Default: `baton serve --on-interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) on_interrupted: Option<OnInterrupted>,
}

/// What becomes of a served task whose replica died (`on_interrupted`, `--on-interrupted`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnInterrupted {
    /// It ends `interrupted` (its calls may have been billed).
    End,
    /// Another replica runs it again from the start (its tool calls too), its spend across
    /// runs held to its budget; at most [`queue::RUNS`] runs in all.
    Resume,
}

/// Dollars, as a number or a decimal string.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum BudgetUsd {
    Number(f64),
    Text(String),
}

/// What became of a submission.
pub(crate) enum Submitted {
    /// Started.
    New(u64),
    /// The idempotency key named a task already submitted with the same text.
    Again(u64),
    /// Refused: the root agent's slots and queue are full (why).
    Busy(String),
    /// Refused: the server is draining (shutting down).
    Draining,
    /// Refused: the shared queue could not be reached (why).
    Unavailable(String),
}

/// Why a submission was refused as bad input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error("`task` is empty: give the root agent something to do")]
    EmptyTask,
    #[error("`budget_usd`: {0}")]
    Budget(String),
    #[error("`deadline`: {0}")]
    Deadline(String),
    #[error("`idempotency_key` {key:?} was used for task {id} with a different `task` text")]
    KeyReused { key: String, id: u64 },
    #[error("`idempotency_key` is longer than 255 characters")]
    KeyTooLong,
    #[error(
        "`on_interrupted: resume` needs a shared queue (`baton serve --ledger`): without one, a task the server stopped in ends `interrupted`"
    )]
    ResumeNeedsQueue,
}

/// The served tasks.
#[derive(Default)]
struct Table {
    by_id: BTreeMap<u64, Entry>,
    by_key: HashMap<String, u64>,
}

struct Entry {
    record: TaskRecord,
    /// The running task's account (its live spend; cancelling it cancels the task).
    account: Option<Account>,
}

/// The running service.
pub(crate) struct Service {
    pub(crate) runtime: Runtime,
    pub(crate) topology: Topology,
    pub(crate) feed: Arc<Feed>,
    table: Mutex<Table>,
    periods: Mutex<Periods>,
    store: Option<Arc<LoopStore>>,
    loops: Mutex<BTreeMap<String, LoopView>>,
    draining: AtomicBool,
    /// Root tasks the root agent holds at most (`max_concurrency + queue`).
    capacity: usize,
    /// The task queue shared with other replicas (`--ledger`).
    queue: Option<queue::Queue>,
    /// `--on-interrupted`.
    on_interrupted: OnInterrupted,
    started_ms: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NewTask {
    /// Checks the submission: a task to do, a key of at most 255 characters, a budget.
    fn check(&self) -> Result<Budget, SubmitError> {
        if self.task.trim().is_empty() {
            return Err(SubmitError::EmptyTask);
        }
        if self.idempotency_key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(SubmitError::KeyTooLong);
        }
        self.budget()
    }

    /// The task's own budget: `budget_usd` (dollars, more than zero, as a number or a decimal
    /// string) and `deadline` (a duration longer than zero).
    fn budget(&self) -> Result<Budget, SubmitError> {
        let max_cost = match &self.budget_usd {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    other => {
                        return Err(SubmitError::Budget(format!(
                            "expected dollars as a number or a decimal string, got {other}"
                        )));
                    }
                };
                let usd =
                    NanoUsd::parse_usd(&text).map_err(|e| SubmitError::Budget(e.to_string()))?;
                if usd == NanoUsd::ZERO {
                    return Err(SubmitError::Budget("must be more than zero".into()));
                }
                Some(usd)
            }
        };
        let max_wall = self
            .deadline
            .as_deref()
            .map(|d| {
                baton::core::parse_duration(d)
                    .map_err(|e| SubmitError::Deadline(e.to_string()))
                    .and_then(|d| {
                        if d.is_zero() {
                            Err(SubmitError::Deadline("must be longer than zero".into()))
                        } else {
                            Ok(d)
                        }
                    })
            })
            .transpose()?;
        Ok(Budget {
            max_cost,
            max_wall,
            ..Budget::UNLIMITED
        })
    }
}

impl Service {
    /// Submits a task: started at once (its id returned), or refused.
    pub(crate) fn submit(self: &Arc<Self>, new: NewTask) -> Result<Submitted, SubmitError> {
        let budget = new.check()?;
        if new.on_interrupted == Some(OnInterrupted::Resume) {
            return Err(SubmitError::ResumeNeedsQueue);
        }
        if self.draining.load(Ordering::Acquire) {
            return Ok(Submitted::Draining);
        }
        let mut table = lock(&self.table);
        if let Some(key) = &new.idempotency_key
            && let Some(&id) = table.by_key.get(key)
        {
            let same = table
                .by_id
                .get(&id)
                .is_none_or(|e| e.record.task == new.task);
            return if same {
                Ok(Submitted::Again(id))
            } else {
                Err(SubmitError::KeyReused {
                    key: key.clone(),
                    id,
                })
            };
        }
        // Checked and started under the table's lock: `spawn_with` lists the task before it
        // returns, so two submissions cannot both take the last slot.
        if self.runtime.in_flight() >= self.capacity {
            return Ok(Submitted::Busy(format!(
                "the root agent `{}` holds {} tasks (its max_concurrency and queue): try again shortly",
                self.root_name(),
                self.capacity
            )));
        }
        let id = self.launch(&mut table, None, new, budget, now_ms());
        Ok(Submitted::New(id))
    }

    /// Starts a task (from the shared queue, which then hears of its end, when `queued`) and
    /// lists it in `table`.
    fn launch(
        self: &Arc<Self>,
        table: &mut Table,
        queued: Option<&queue::FromQueue>,
        new: NewTask,
        budget: Budget,
        submitted_ms: u64,
    ) -> u64 {
        let handle = {
            let mut periods = lock(&self.periods);
            let under = periods.current().clone();
            match queued {
                Some(queue::FromQueue {
                    id,
                    account: Some(account),
                    ..
                }) => self.runtime.spawn_as_sharing(
                    TaskId(*id),
                    new.task.clone(),
                    budget,
                    Some(&under),
                    Arc::clone(account) as Arc<dyn baton::core::SharedBudget>,
                ),
                Some(q) => {
                    self.runtime
                        .spawn_as(TaskId(q.id), new.task.clone(), budget, Some(&under))
                }
                None => self
                    .runtime
                    .spawn_with(new.task.clone(), budget, Some(&under)),
            }
        };
        let resumed = queued.map_or(0, |q| q.resumed);
        let id = handle.id().0;
        let account = handle.account().clone();
        // Its worst case: the tightest headroom up its chain (own cap, root agent's, periods').
        let left = account.remaining_cost();
        let limit = (left != NanoUsd::MAX).then_some(left.0);
        let record = TaskRecord {
            id,
            task: new.task,
            status: "running".into(),
            submitted_ms,
            finished_ms: None,
            idempotency_key: new.idempotency_key,
            limit_nanousd: limit,
            cost_nanousd: 0,
            answer: None,
            error: None,
            report: None,
            resumed,
        };
        self.persist(&record);
        if queued.is_some() {
            self.feed.mirror(id);
        }
        if resumed == 0 {
            self.feed.publish(
                "task_submitted",
                Some(id),
                json!({"task": id, "root": id, "text": record.task, "limit_nanousd": limit}),
                false,
            );
        } else {
            self.feed.publish(
                "task_resumed",
                Some(id),
                json!({"task": id, "root": id, "text": record.task, "limit_nanousd": limit,
                       "run": resumed + 1, "replica": self.queue.as_ref().map(|q| q.replica())}),
                false,
            );
        }
        if let Some(k) = &record.idempotency_key {
            table.by_key.insert(k.clone(), id);
        }
        table.by_id.insert(
            id,
            Entry {
                record,
                account: Some(account),
            },
        );
        let service = Arc::clone(self);
        let queued = queued.is_some();
        tokio::spawn(async move {
            let report = handle.await;
            // A resumed task's cost is its shared account's (all its runs): read before its end
            // is shown.
            let all_runs = if queued {
                service.settle_task_account(id).await
            } else {
                None
            };
            service.finish(id, report, all_runs);
            if queued {
                service.finish_queued(id).await;
            }
        });
        id
    }

    /// Records a task's end: its report, its status, its cost (`all_runs` when it was resumed:
    /// what its shared account booked for all its runs).
    fn finish(
        &self,
        id: u64,
        report: Result<RunReport, baton::actors::RuntimeError>,
        all_runs: Option<u64>,
    ) {
        let mut table = lock(&self.table);
        let Some(entry) = table.by_id.get_mut(&id) else {
            return;
        };
        let spent = entry.account.take().map_or(0, |a| a.spent().0);
        let r = &mut entry.record;
        r.finished_ms = Some(now_ms());
        match report {
            Ok(report) => {
                r.status = report.outcome.as_str().to_string();
                r.cost_nanousd = report.totals.cost_nanousd;
                r.answer.clone_from(&report.answer);
                r.error.clone_from(&report.error);
                r.report = serde_json::to_value(&report).ok();
            }
            Err(e) => {
                r.status = Outcome::Failed.as_str().to_string();
                r.cost_nanousd = spent;
                r.error = Some(e.to_string());
            }
        }
        if let Some(all) = all_runs {
            r.cost_nanousd = all;
        }
        let record = r.clone();
        // Forget the oldest finished tasks past the bound (their ids stay unused).
        if table.by_id.len() > KEPT_FINISHED {
            let old: Vec<u64> = table
                .by_id
                .iter()
                .filter(|(_, e)| !e.record.running())
                .take(table.by_id.len() - KEPT_FINISHED)
                .map(|(k, _)| *k)
                .collect();
            for k in old {
                table.by_id.remove(&k);
            }
        }
        drop(table);
        self.persist(&record);
        self.save_budget();
        self.feed.publish(
            "task_report",
            Some(id),
            json!({"task": id, "root": id, "status": record.status, "cost_nanousd": record.cost_nanousd,
                   "answer": record.answer, "error": record.error}),
            true,
        );
    }

    /// A task's record, its spend live while it runs (an old one from the state file).
    pub(crate) fn task(&self, id: u64) -> Option<TaskRecord> {
        let table = lock(&self.table);
        let kept = table.by_id.get(&id).map(|e| {
            let mut r = e.record.clone();
            if let Some(a) = &e.account {
                r.cost_nanousd = a.spent().0;
            }
            r
        });
        drop(table);
        kept.or_else(|| {
            let store = self.store.as_ref()?;
            store.task(id).unwrap_or_else(|e| {
                tracing::error!("state file: {e}");
                None
            })
        })
    }

    /// Tasks, newest first: those with ids below `cursor`, of `status` when given.
    pub(crate) fn list(
        &self,
        status: Option<&str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> (Vec<TaskRecord>, Option<u64>) {
        let table = lock(&self.table);
        let mut out = Vec::new();
        let mut next = None;
        for (id, e) in table.by_id.range(..cursor.unwrap_or(u64::MAX)).rev() {
            if status.is_some_and(|s| s != e.record.status) {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|r: &TaskRecord| r.id);
                break;
            }
            let mut r = e.record.clone();
            if let Some(a) = &e.account {
                r.cost_nanousd = a.spent().0;
            }
            // The list is a summary: the report is at the task's own URL.
            r.report = None;
            out.push(r);
            let _ = id;
        }
        (out, next)
    }

    /// Cancels a running task. `None`: no such task; `Some(false)`: it had already ended.
    pub(crate) fn cancel(&self, id: u64) -> Option<bool> {
        let table = lock(&self.table);
        let e = table.by_id.get(&id)?;
        match &e.account {
            Some(_) => Some(self.runtime.cancel(TaskId(id))),
            None => Some(false),
        }
    }

    fn root_name(&self) -> String {
        self.topology.graph()[self.topology.root()].name.to_string()
    }

    /// What the topology's budget has spent, and its limits.
    pub(crate) fn budget_view(&self) -> BudgetView {
        lock(&self.periods).view()
    }

    /// Completed tasks (of those kept), what they cost together, and what routing saved on
    /// them against the top model of each ladder.
    pub(crate) fn completed(&self) -> (u64, u64, u64) {
        let table = lock(&self.table);
        table
            .by_id
            .values()
            .filter(|e| e.record.status == "completed")
            .fold((0, 0, 0), |(n, c, saved), e| {
                let s = e
                    .record
                    .report
                    .as_ref()
                    .and_then(|r| r["totals"]["saved_vs_top_rung_nanousd"].as_u64())
                    .unwrap_or(0);
                (n + 1, c + e.record.cost_nanousd, saved + s)
            })
    }

    /// Counts of tasks by status.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        let table = lock(&self.table);
        let mut out = BTreeMap::new();
        for e in table.by_id.values() {
            *out.entry(e.record.status.clone()).or_insert(0) += 1;
        }
        out
    }

    pub(crate) fn started_ms(&self) -> u64 {
        self.started_ms
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn persist(&self, record: &TaskRecord) {
        if let Some(store) = &self.store
            && let Err(e) = store.save_task(record.id, record)
        {
            tracing::error!("state file: {e}");
        }
    }

    fn save_budget(&self) {
        if let Some(store) = &self.store {
            let spent = lock(&self.periods).total.spent().0;
            if let Err(e) = store.save_meta(
                "serve.budget",
                &SavedBudget {
                    spent_nanousd: spent,
                },
            ) {
                tracing::error!("state file: {e}");
            }
        }
    }
}

/// Takes up the served tasks the state file holds: those that were running when the server
/// died end `interrupted`, charged their worst case (counted in `periods`); the newest are kept
/// in the table, older ones are read from the file when asked for.
fn take_up(store: Option<&LoopStore>, mut periods: Periods) -> anyhow::Result<(Periods, Table)> {
    let mut table = Table::default();
    if let Some(s) = store {
        // What earlier runs of the service spent counts against the total (the day and the hour
        // are counted from this start).
        if let Some(b) = s.load_meta::<SavedBudget>("serve.budget")? {
            periods.carry_total(b.spent_nanousd);
        }
        let records = s.tasks::<TaskRecord>()?;
        let keep_from = records.len().saturating_sub(KEPT_FINISHED);
        for (i, (id, mut r)) in records.into_iter().enumerate() {
            if r.running() {
                let charged = r.limit_nanousd.unwrap_or(0);
                r.status = "interrupted".into();
                r.finished_ms = Some(now_ms());
                r.cost_nanousd = charged;
                r.error = Some(format!(
                    "the server stopped while this task ran; charged its worst case, {}",
                    NanoUsd(charged)
                ));
                periods.charge(charged);
                s.save_task(id, &r)?;
            }
            if let Some(k) = &r.idempotency_key {
                table.by_key.insert(k.clone(), id);
            }
            // The newest are kept in memory; older ones are read from the file when asked for.
            if i < keep_from {
                continue;
            }
            table.by_id.insert(
                id,
                Entry {
                    record: r,
                    account: None,
                },
            );
        }
    }
    Ok((periods, table))
}

/// Runs the topology's standing loops on the service's runtime until `stop` turns true (the
/// drain); `None` when it has none.
fn start_loops(
    service: &Arc<Service>,
    store: Option<Arc<LoopStore>>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>> {
    if service.topology.schedules().is_empty() {
        return None;
    }
    let rt = Arc::new(service.runtime.clone());
    let s = Arc::clone(service);
    let mut rx = stop_rx;
    let stop = async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    Some(tokio::spawn(async move {
        let on_event = move |e: &LoopEvent| s.on_loop_event(e);
        match store {
            Some(st) => rt
                .run_schedules_durable(st, stop, grace, on_event)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::new),
            None => {
                rt.run_schedules(stop, grace, on_event).await;
                Ok(())
            }
        }
    }))
}

/// Drains the service: new tasks refused, the loops told to stop (`stop`), running tasks given
/// `grace` to end, the rest cancelled; returns once every served task has recorded its end (or
/// after 5 s more).
async fn drain(service: &Arc<Service>, grace: Duration, stop: &tokio::sync::watch::Sender<bool>) {
    eprintln!(
        "draining: new tasks refused; running tasks have {} to end",
        baton::core::format_duration(grace)
    );
    service.draining.store(true, Ordering::Release);
    let _ = stop.send(true);
    let deadline = Instant::now() + grace;
    while service.runtime.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in service.runtime.tasks_in_flight() {
        service.runtime.cancel(id);
    }
    // Every served task records its end before the process goes.
    let settle = Instant::now() + Duration::from_secs(5);
    while lock(&service.table)
        .by_id
        .values()
        .any(|e| e.record.running())
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The console's view of each standing loop before it has run.
fn loop_views(topology: &Topology) -> BTreeMap<String, LoopView> {
    topology
        .schedules()
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                LoopView {
                    schedule: s.name.to_string(),
                    cadence: s.cadence.to_string(),
                    task: s.task.clone(),
                    breaker: "closed".into(),
                    ..LoopView::default()
                },
            )
        })
        .collect()
}

/// Runs `baton serve`: binds, starts the runtime, serves until SIGTERM / Ctrl-C, then drains
/// (new tasks refused, running ones given `grace` to end, the rest cancelled).
pub(crate) async fn serve(topology: Topology, options: Options) -> anyhow::Result<()> {
    let token = std::env::var("BATON_TOKEN").ok().filter(|t| !t.is_empty());
    if !options.addr.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to serve on {} without a token: anyone who reaches it could run tasks, spend the budget and approve destructive calls. Set BATON_TOKEN, or bind a loopback address (127.0.0.1)",
            options.addr
        );
    }
    let url = crate::ledger::url(options.ledger.as_deref(), &topology)?;
    if url.is_none() && options.on_interrupted == OnInterrupted::Resume {
        anyhow::bail!(
            "--on-interrupted resume needs a shared ledger (--ledger or the topology's `ledger:`): a task is run again by another replica, and without one a task the server stopped in ends `interrupted`"
        );
    }
    if url.is_some() && options.state.is_some() {
        anyhow::bail!(
            "--state and a shared ledger: replicas keep their tasks in the ledger's database, not in a state file; drop --state"
        );
    }
    let shared = match &url {
        Some(url) => Some(crate::ledger::Shared::join(url, &topology, options.lease).await?),
        None => None,
    };
    // The state file first: a damaged one stops us before anything listens.
    let store = options
        .state
        .as_ref()
        .map(LoopStore::open)
        .transpose()?
        .map(Arc::new);
    let approvals = Arc::new(match &store {
        Some(s) => ApprovalQueue::durable(Arc::clone(s))?,
        None => ApprovalQueue::new(),
    });
    let feed = Feed::new();
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("binding {}", options.addr))?;
    let bound = listener.local_addr()?;
    let metrics = baton::metrics::install_for_topology(topology.name())
        .context("installing the Prometheus recorder")?;
    let slot: Arc<OnceLock<Arc<Service>>> = Arc::new(OnceLock::new());
    let app = api::router(
        Arc::clone(&slot),
        crate::serve::Guard::new(token, bound),
        metrics,
        Arc::clone(&approvals),
        Arc::clone(&feed),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the HTTP server stopped: {e}");
        }
    });
    eprintln!(
        "serving {} on http://{bound}/ (API under /v1)",
        topology.name()
    );
    // Signals are caught from here on: a SIGTERM during start-up still drains.
    let interrupt = crate::loops::interrupted();
    let mut builder = Runtime::builder(topology.clone())
        .approver(Arc::clone(&approvals))
        .observer(Arc::clone(&feed));
    if let Some(log) = options.audit {
        builder = builder.observer(baton::actors::AuditObserver::new(log));
    }
    if let Some(shared) = &shared {
        builder = shared.attach(builder);
    }
    let runtime = builder.start().await.context("starting the runtime")?;
    let root = &topology.graph()[topology.root()];
    let capacity = root.max_concurrency as usize + root.queue as usize;
    let (periods, table) = take_up(store.as_deref(), Periods::new(topology.budget()))?;
    let loops = loop_views(&topology);
    let service = Arc::new(Service {
        runtime: runtime.clone(),
        topology: topology.clone(),
        feed,
        table: Mutex::new(table),
        periods: Mutex::new(periods),
        store: store.clone(),
        loops: Mutex::new(loops),
        draining: AtomicBool::new(false),
        capacity,
        queue: shared
            .as_ref()
            .map(|s| queue::Queue::new(s.queue(topology.name()), s.lease)),
        on_interrupted: options.on_interrupted,
        started_ms: now_ms(),
    });
    queue::mirror_events(&service);
    service.save_budget();
    // Loops paused by hand stay paused across restarts.
    if let Some(s) = &service.store {
        for name in s
            .load_meta::<Vec<String>>("serve.paused")?
            .unwrap_or_default()
        {
            service.runtime.pause_schedule(&name);
        }
    }
    let _ = slot.set(Arc::clone(&service));
    eprintln!("ready: console at http://{bound}/");

    // The standing loops, on the same runtime, until the drain begins.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loops_task = start_loops(&service, store, stop_rx, options.grace);
    // Tasks from the shared queue, while the root agent has room, until the drain.
    let taking = tokio::spawn(queue::take_tasks(Arc::clone(&service)));

    tokio::select! {
        () = interrupt => {}
        () = runtime.gone_down() => {
            eprintln!("error: the runtime is down: {}", runtime.down().unwrap_or("its conductor gave up"));
        }
    }
    drain(&service, options.grace, &stop_tx).await;
    if let Some(l) = loops_task
        && let Ok(Err(e)) = l.await
    {
        eprintln!("error: standing loops: {e:#}");
    }
    let _ = taking.await;
    // The queued tasks that ended in the drain have written their end (finish_queued).
    runtime.shutdown().await;
    if let Some(shared) = shared {
        shared.finish().await;
    }
    Ok(())
}
