//! `baton serve --ledger`: replicas share one task queue in the database. A task submitted to
//! any replica is queued there; each replica takes queued tasks as its root agent has room
//! (`FOR UPDATE SKIP LOCKED`), runs them under the queue's ids, and writes their end back; any
//! replica answers for any task and streams its events (copied to the database by the replica
//! that runs it). A task whose replica died (its lease lapsed) is ended `interrupted` by the
//! replica that finds it: its calls may have been billed, and the dead replica's budget leases
//! are booked conservatively by the ledger. A task submitted with `on_interrupted: resume` is
//! run again instead (at most [`RUNS`] runs in all); its own budget is then an account on the
//! shared ledger (`TOPOLOGY/task/ID`), so that its runs together never spend more than it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton::core::TaskId;
use baton_pg::{Claimed, Enqueued, FleetBudget, TaskQueue};
use serde_json::json;

use super::feed::Mirrored;
use super::{NewTask, OnInterrupted, Service, SubmitError, Submitted, TaskRecord, lock, now_ms};

/// How often a replica with room looks for queued tasks (a submission to it wakes it at once).
const POLL: Duration = Duration::from_millis(100);

/// The most runs of a task with `on_interrupted: resume`: a task whose every run takes its
/// replica down (one that exhausts memory, say) ends `interrupted` after the third.
pub(crate) const RUNS: u32 = 3;

/// This replica's side of the shared queue.
pub(crate) struct Queue {
    pub(crate) tasks: Arc<TaskQueue>,
    wake: tokio::sync::Notify,
    /// How long a task's lease lives unless renewed.
    lease: Duration,
    /// The shared accounts of the tasks running here that may be resumed elsewhere, by task.
    accounts: Mutex<HashMap<u64, Account>>,
}

/// A resumable task's shared account, and how many runs of it came before this one.
struct Account {
    budget: Arc<FleetBudget>,
    resumed: u32,
}

/// A task taken from the shared queue, as [`Service::launch`] starts it.
pub(crate) struct FromQueue {
    /// The queue's id for it.
    pub(crate) id: u64,
    /// How many runs of it were interrupted before this one.
    pub(crate) resumed: u32,
    /// Its account on the shared ledger, when it may be resumed and has a budget.
    pub(crate) account: Option<Arc<FleetBudget>>,
}

impl Queue {
    pub(crate) fn new(tasks: TaskQueue, lease: Duration) -> Queue {
        Queue {
            tasks: Arc::new(tasks),
            wake: tokio::sync::Notify::new(),
            lease,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// This replica's name on the ledger.
    pub(crate) fn replica(&self) -> &str {
        self.tasks.ledger().replica()
    }
}

impl TaskRecord {
    /// An empty record for task `id` (the base of a queued task's first record; or one whose
    /// stored record could not be read, written by another version: its outcome is still
    /// recorded).
    fn unreadable(id: u64, submitted_ms: u64) -> TaskRecord {
        TaskRecord {
            id,
            task: String::new(),
            status: String::new(),
            submitted_ms,
            finished_ms: None,
            idempotency_key: None,
            limit_nanousd: None,
            cost_nanousd: 0,
            answer: None,
            error: None,
            report: None,
            resumed: 0,
        }
    }
}

/// A row's record, its status the row's (the record is written when the task is queued and
/// when it ends; the row's status is current).
fn record_of(row: &baton_pg::Row) -> Option<TaskRecord> {
    let mut r: TaskRecord = serde_json::from_str(&row.record).ok()?;
    r.id = row.id;
    r.status.clone_from(&row.status);
    Some(r)
}

impl Service {
    /// Queues a task on the shared queue (or starts it here, without one).
    pub(crate) async fn enqueue(
        self: &Arc<Self>,
        mut new: NewTask,
    ) -> Result<Submitted, SubmitError> {
        let Some(q) = &self.queue else {
            return self.submit(new);
        };
        new.check()?;
        // Kept with the request: the replica that finds it interrupted does as it was asked.
        new.on_interrupted.get_or_insert(self.on_interrupted);
        if self.is_draining() {
            return Ok(Submitted::Draining);
        }
        let request = serde_json::to_string(&new).unwrap_or_default();
        let submitted_ms = now_ms();
        // Its first record (readers take the id from the row).
        let first = serde_json::to_string(&TaskRecord {
            status: "queued".into(),
            task: new.task.clone(),
            idempotency_key: new.idempotency_key.clone(),
            ..TaskRecord::unreadable(0, submitted_ms)
        })
        .unwrap_or_default();
        match q
            .tasks
            .enqueue(new.idempotency_key.as_deref(), &new.task, &request, &first)
            .await
        {
            Ok(Enqueued::New(id)) => {
                q.wake.notify_one();
                Ok(Submitted::New(id))
            }
            Ok(Enqueued::Again(id, text)) if text == new.task => Ok(Submitted::Again(id)),
            Ok(Enqueued::Again(id, _)) => Err(SubmitError::KeyReused {
                key: new.idempotency_key.unwrap_or_default(),
                id,
            }),
            Err(e) => Ok(Submitted::Unavailable(format!("the shared queue: {e}"))),
        }
    }

    /// A task's record: this replica's, else the shared queue's.
    pub(crate) async fn task_anywhere(&self, id: u64) -> Option<TaskRecord> {
        if let Some(r) = self.task(id) {
            return Some(r);
        }
        let q = self.queue.as_ref()?;
        match q.tasks.get(id).await {
            Ok(row) => row.as_ref().and_then(record_of),
            Err(e) => {
                tracing::error!("the shared queue: {e}");
                None
            }
        }
    }

    /// Whether this replica runs (or ran) task `id`: its events are in this replica's feed.
    pub(crate) fn runs_here(&self, id: u64) -> bool {
        lock(&self.table).by_id.contains_key(&id)
    }

    /// The shared queue's tasks, newest first (see [`Service::list`]).
    pub(crate) async fn list_shared(
        &self,
        q: &Queue,
        status: Option<&str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<(Vec<TaskRecord>, Option<u64>), String> {
        let rows = q
            .tasks
            .list(status, limit + 1, cursor)
            .await
            .map_err(|e| e.to_string())?;
        let mut out: Vec<TaskRecord> = rows.iter().filter_map(record_of).collect();
        for r in &mut out {
            if let Some(live) = self.task(r.id).filter(TaskRecord::running) {
                r.cost_nanousd = live.cost_nanousd;
            }
            r.report = None;
        }
        let next = (out.len() > limit).then(|| {
            out.truncate(limit);
            out.last().map(|r| r.id)
        });
        Ok((out, next.flatten()))
    }

    /// Cancels task `id` wherever it is: here, or through the queue (the replica running it
    /// sees the request at its next renewal; a queued one ends `cancelled` at once).
    pub(crate) async fn cancel_anywhere(&self, id: u64) -> Result<Option<bool>, String> {
        if self.runs_here(id) {
            return Ok(self.cancel(id));
        }
        let Some(q) = &self.queue else {
            return Ok(None);
        };
        let ended = |record: &str| {
            let mut r: TaskRecord =
                serde_json::from_str(record).unwrap_or_else(|_| TaskRecord::unreadable(id, 0));
            r.id = id;
            r.status = "cancelled".into();
            r.finished_ms = Some(now_ms());
            r.error = Some("cancelled while queued: it never ran".into());
            serde_json::to_string(&r).unwrap_or_default()
        };
        q.tasks.cancel(id, ended).await.map_err(|e| e.to_string())
    }

    /// Writes the end of a queued task this replica ran back to the queue, trying for as long
    /// as the task's lease lasts (a network fault); after that another replica ends it.
    pub(super) async fn finish_queued(&self, id: u64) {
        let (Some(q), Some(record)) = (&self.queue, self.task(id)) else {
            return;
        };
        let text = serde_json::to_string(&record).unwrap_or_default();
        let give_up = tokio::time::Instant::now() + q.lease;
        loop {
            match q.tasks.finish(id, &record.status, &text).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::error!(
                        "task {id} ended {} here, but another replica took it over (this replica's lease lapsed): the queue keeps that replica's outcome",
                        record.status
                    );
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= give_up => {
                    tracing::error!("task {id}: its end could not be written to the queue: {e}");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Starts a task taken from the queue; one whose replica died is ended `interrupted`, or
    /// run again when it asked to be (`on_interrupted: resume`) and has runs left.
    async fn take(self: &Arc<Self>, q: &Queue, c: Claimed) {
        let first: Option<TaskRecord> = serde_json::from_str(&c.record)
            .ok()
            .map(|r: TaskRecord| TaskRecord { id: c.id, ..r });
        let submitted_ms = first.as_ref().map_or_else(now_ms, |r| r.submitted_ms);
        let checked = serde_json::from_str::<NewTask>(&c.request)
            .map_err(|e| e.to_string())
            .and_then(|n| n.check().map(|b| (n, b)).map_err(|e| e.to_string()));
        let (new, budget) = match checked {
            Ok(checked) => checked,
            Err(why) => {
                // Checked when it was queued: only a replica of another version gets here.
                let text = json!({"id": c.id, "task": "", "status": "failed", "submitted_ms": submitted_ms,
                    "cost_nanousd": 0, "error": format!("the queued request cannot be read: {why}")})
                .to_string();
                let _ = q.tasks.finish(c.id, "failed", &text).await;
                return;
            }
        };
        let resume = new.on_interrupted == Some(OnInterrupted::Resume);
        if c.taken_over && !(resume && c.attempts <= RUNS) {
            let why = if resume {
                format!(
                    "the replicas running its {} runs stopped (their leases lapsed); it is not run again",
                    c.attempts - 1
                )
            } else {
                "the replica running this task stopped (its lease lapsed)".to_string()
            };
            let r = first.unwrap_or_else(|| TaskRecord::unreadable(c.id, submitted_ms));
            self.end_interrupted(q, r, &why).await;
            return;
        }
        let resumed = c.attempts.saturating_sub(1);
        // The task's own limit over all its runs: its budget and the root agent's, the tighter.
        let root = &self.topology.graph()[self.topology.root()];
        let limit = budget.tightest(&root.budget).max_cost;
        let account = match limit {
            Some(limit) if resume => {
                if c.taken_over {
                    // What the dead replica's leases hold goes back, booked (those that lapsed).
                    let _ = q.tasks.ledger().reap().await;
                }
                match FleetBudget::task(
                    Arc::clone(q.tasks.ledger()),
                    self.topology.name(),
                    c.id,
                    limit,
                )
                .await
                {
                    Ok(b) => Some(Arc::new(b)),
                    Err(e) => {
                        // Not run without its account: the lease lapses and another replica
                        // (or this one) tries again.
                        tracing::error!("task {}: its shared account: {e}", c.id);
                        return;
                    }
                }
            }
            _ => None,
        };
        if let Some(budget) = &account {
            lock(&q.accounts).insert(
                c.id,
                Account {
                    budget: Arc::clone(budget),
                    resumed,
                },
            );
        }
        if c.taken_over {
            let topology = self.topology.name().to_string();
            metrics::counter!("baton_shared_tasks_taken_over_total", "topology" => topology.clone())
                .increment(1);
            metrics::counter!("baton_shared_tasks_resumed_total", "topology" => topology)
                .increment(1);
        }
        let from = FromQueue {
            id: c.id,
            resumed,
            account,
        };
        let mut table = lock(&self.table);
        self.launch(&mut table, Some(&from), new, budget, submitted_ms);
    }

    /// Ends a task whose replica died `interrupted`, saying `why`.
    async fn end_interrupted(&self, q: &Queue, mut r: TaskRecord, why: &str) {
        r.status = "interrupted".into();
        r.finished_ms = Some(now_ms());
        r.error = Some(format!(
            "{why}: its calls may have been billed, and its budget leases are booked at what they spent and held"
        ));
        let text = serde_json::to_string(&r).unwrap_or_default();
        let event = json!({"kind": "task_report", "at_ms": now_ms(), "task": r.id, "root": r.id,
            "status": r.status, "cost_nanousd": r.cost_nanousd, "error": r.error});
        match q.tasks.finish(r.id, "interrupted", &text).await {
            Ok(true) => {
                metrics::counter!("baton_shared_tasks_taken_over_total", "topology" => self.topology.name().to_string())
                    .increment(1);
                let _ = q.tasks.publish(&[(r.id, event.to_string(), true)]).await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!("task {}: ending it interrupted: {e}", r.id),
        }
    }

    /// Settles the shared account of a resumable task that ended here (what is unused goes back
    /// to it). For a resumed one, returns what the account booked for all its runs (with what its
    /// earlier runs' unlapsed leases hold: an upper bound until they are reaped).
    pub(super) async fn settle_task_account(&self, id: u64) -> Option<u64> {
        let q = self.queue.as_ref()?;
        let account = lock(&q.accounts).remove(&id)?;
        if let Err(e) = account.budget.settle_idle().await {
            tracing::error!(
                "task {id}: settling its shared account: {e} (its leases are booked when they lapse)"
            );
        }
        if account.resumed == 0 {
            return None;
        }
        let name = baton_pg::task_account(self.topology.name(), id);
        match q.tasks.ledger().status(&name).await {
            Ok(s) => Some(s.spent.0.saturating_add(s.leased.0)),
            Err(e) => {
                tracing::error!("task {id}: reading its shared account: {e}");
                None
            }
        }
    }
}

/// Takes queued tasks while the root agent has room, until the drain; renews the leases of the
/// tasks running here and passes on cancellations asked for elsewhere.
pub(super) async fn take_tasks(service: Arc<Service>) {
    let Some(q) = &service.queue else {
        return;
    };
    let mut renew_at = tokio::time::Instant::now() + q.lease / 3;
    let mut quiet_until = tokio::time::Instant::now();
    while !service.is_draining() {
        tokio::select! {
            () = q.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        if tokio::time::Instant::now() >= renew_at {
            renew_at = tokio::time::Instant::now() + q.lease / 3;
            // Tasks' shared accounts before the tasks: an account's leases lapse no later than
            // the task's, so that the replica that takes the task over can book them.
            let accounts: Vec<Arc<FleetBudget>> = lock(&q.accounts)
                .values()
                .map(|a| Arc::clone(&a.budget))
                .collect();
            for a in accounts {
                if let Err(e) = a.renew().await {
                    tracing::error!("the shared queue: renewing a task's account: {e}");
                }
            }
            let running: Vec<u64> = lock(&service.table)
                .by_id
                .values()
                .filter(|e| e.record.running())
                .map(|e| e.record.id)
                .collect();
            match q.tasks.renew(&running).await {
                Ok(cancel) => {
                    for id in cancel {
                        service.runtime.cancel(TaskId(id));
                    }
                }
                Err(e) => tracing::error!("the shared queue: renewing leases: {e}"),
            }
        }
        if service.is_draining() || service.runtime.down().is_some() {
            break;
        }
        let free = service.capacity.saturating_sub(service.runtime.in_flight());
        if free == 0 {
            continue;
        }
        match q.tasks.claim(free).await {
            Ok(claimed) => {
                for c in claimed {
                    service.take(q, c).await;
                }
            }
            // Said once a minute while the database is away, not every poll.
            Err(e) if tokio::time::Instant::now() >= quiet_until => {
                tracing::error!("the shared queue: taking tasks: {e}");
                quiet_until = tokio::time::Instant::now() + Duration::from_secs(60);
            }
            Err(_) => {}
        }
    }
}

/// Copies the events of the queued tasks this replica runs to the database, in batches.
pub(super) fn mirror_events(service: &Arc<Service>) {
    let Some(q) = &service.queue else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Mirrored>();
    service.feed.mirror_to(tx);
    let tasks = Arc::clone(&q.tasks);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 500 {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            for attempt in 0.. {
                match tasks.publish(&batch).await {
                    Ok(()) => break,
                    Err(e) if attempt >= 10 => {
                        tracing::error!(
                            "the shared queue: {} events lost for the other replicas' streams: {e}",
                            batch.len()
                        );
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }
    });
}

/// A Server-Sent-Events stream of a task another replica runs, read from the database: its
/// events after `after` (their numbers there), until its last.
pub(super) fn stream(tasks: Arc<TaskQueue>, id: u64, after: u64) -> Response {
    let events = futures::stream::unfold(
        (tasks, after, false),
        move |(tasks, mut after, done)| async move {
            if done {
                return None;
            }
            loop {
                match tasks.events(id, after).await {
                    Ok(batch) if !batch.is_empty() => {
                        let mut out = Vec::with_capacity(batch.len());
                        let mut done = false;
                        for (seq, data, last) in batch {
                            after = seq;
                            let kind = serde_json::from_str::<serde_json::Value>(&data)
                                .ok()
                                .and_then(|v| v["kind"].as_str().map(str::to_string))
                                .unwrap_or_else(|| "event".into());
                            out.push(Ok::<_, Infallible>(
                                SseEvent::default()
                                    .id(seq.to_string())
                                    .event(kind)
                                    .data(data),
                            ));
                            if last {
                                done = true;
                                break;
                            }
                        }
                        return Some((futures::stream::iter(out), (tasks, after, done)));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("the shared queue: reading task {id}'s events: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    );
    use futures::StreamExt as _;
    Sse::new(events.flatten())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
