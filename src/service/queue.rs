//! `baton serve --ledger`: replicas share one task queue in the database. A task submitted to
//! any replica is queued there; each replica takes queued tasks as its root agent has room
//! (`FOR UPDATE SKIP LOCKED`), runs them under the queue's ids, and writes their end back; any
//! replica answers for any task and streams its events (copied to the database by the replica
//! that runs it). A task whose replica died (its lease lapsed) is ended `interrupted` by the
//! replica that finds it: its calls may have been billed, and the dead replica's budget leases
//! are booked conservatively by the ledger.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton::core::TaskId;
use baton_pg::{Claimed, Enqueued, TaskQueue};
use serde_json::json;

use super::feed::Mirrored;
use super::{NewTask, Service, SubmitError, Submitted, TaskRecord, lock, now_ms};

/// How often a replica with room looks for queued tasks (a submission to it wakes it at once).
const POLL: Duration = Duration::from_millis(100);

/// This replica's side of the shared queue.
pub(crate) struct Queue {
    pub(crate) tasks: Arc<TaskQueue>,
    wake: tokio::sync::Notify,
    /// How long a task's lease lives unless renewed.
    lease: Duration,
}

impl Queue {
    pub(crate) fn new(tasks: TaskQueue, lease: Duration) -> Queue {
        Queue {
            tasks: Arc::new(tasks),
            wake: tokio::sync::Notify::new(),
            lease,
        }
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
    pub(crate) async fn enqueue(self: &Arc<Self>, new: NewTask) -> Result<Submitted, SubmitError> {
        let Some(q) = &self.queue else {
            return self.submit(new);
        };
        new.check()?;
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

    /// Starts (or, if its replica died, ends `interrupted`) a task taken from the queue.
    async fn take(self: &Arc<Self>, q: &Queue, c: Claimed) {
        let first: Option<TaskRecord> = serde_json::from_str(&c.record)
            .ok()
            .map(|r: TaskRecord| TaskRecord { id: c.id, ..r });
        let submitted_ms = first.as_ref().map_or_else(now_ms, |r| r.submitted_ms);
        if c.taken_over {
            let mut r = first.unwrap_or_else(|| TaskRecord::unreadable(c.id, submitted_ms));
            r.status = "interrupted".into();
            r.finished_ms = Some(now_ms());
            r.error = Some(
                "the replica running this task stopped (its lease lapsed); its calls may have been billed, and its budget leases are booked at what they spent and held"
                    .into(),
            );
            let text = serde_json::to_string(&r).unwrap_or_default();
            let event = json!({"kind": "task_report", "at_ms": now_ms(), "task": c.id, "root": c.id,
                "status": r.status, "cost_nanousd": r.cost_nanousd, "error": r.error});
            match q.tasks.finish(c.id, "interrupted", &text).await {
                Ok(true) => {
                    metrics::counter!("baton_shared_tasks_taken_over_total", "topology" => self.topology.name().to_string())
                        .increment(1);
                    let _ = q.tasks.publish(&[(c.id, event.to_string(), true)]).await;
                }
                Ok(false) => {}
                Err(e) => tracing::error!("task {}: ending it interrupted: {e}", c.id),
            }
            return;
        }
        let checked = serde_json::from_str::<NewTask>(&c.request)
            .map_err(|e| e.to_string())
            .and_then(|n| n.check().map(|b| (n, b)).map_err(|e| e.to_string()));
        match checked {
            Ok((new, budget)) => {
                let mut table = lock(&self.table);
                self.launch(&mut table, Some(TaskId(c.id)), new, budget, submitted_ms);
            }
            Err(why) => {
                // Checked when it was queued: only a replica of another version gets here.
                let text = json!({"id": c.id, "task": "", "status": "failed", "submitted_ms": submitted_ms,
                    "cost_nanousd": 0, "error": format!("the queued request cannot be read: {why}")})
                .to_string();
                let _ = q.tasks.finish(c.id, "failed", &text).await;
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
