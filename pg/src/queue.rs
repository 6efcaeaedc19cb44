//! The shared task queue: tasks submitted to any replica, run by one, answered for by all.
//!
//! A task is a row. Replicas take queued rows with `FOR UPDATE SKIP LOCKED` (no two take the
//! same one, none waits for another) and hold them under a lease they renew; a row whose lease
//! lapsed (its replica died) is taken like a queued one, and the replica that takes it ends it
//! `interrupted` or runs it again (see [`Claimed::taken_over`]). A replica's writes to a row it no longer holds
//! are refused (fenced by its name), so a task ends exactly once. Its events are rows too, for
//! the streams of the replicas that do not run it.

use std::sync::Arc;

use crate::{PgError, SharedLedger};

/// A task's place in the queue after a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued, with this id.
    New(u64),
    /// Its idempotency key named a task already submitted: its id, and its text (the caller
    /// compares).
    Again(u64, String),
}

/// A task taken from the queue to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Its id.
    pub id: u64,
    /// The request as submitted (JSON text).
    pub request: String,
    /// Its record as last written (JSON text).
    pub record: String,
    /// Whether a replica had it running and stopped renewing its lease (it died): the one that
    /// takes it ends it `interrupted`, or runs it again (`on_interrupted: resume`).
    pub taken_over: bool,
    /// How many times it has been taken, this time included (`1`: its first run).
    pub attempts: u32,
}

/// A task's row, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Its id.
    pub id: u64,
    /// Its status.
    pub status: String,
    /// Its record (JSON text).
    pub record: String,
}

impl From<&tokio_postgres::Row> for Row {
    /// A row selected as `id, status, record`.
    fn from(r: &tokio_postgres::Row) -> Row {
        Row {
            id: id(r.get(0)),
            status: r.get(1),
            record: r.get(2),
        }
    }
}

/// The queue of one topology's tasks, as one replica.
pub struct TaskQueue {
    ledger: Arc<SharedLedger>,
    topology: String,
}

fn id(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl TaskQueue {
    /// The queue of topology `topology`'s tasks, as `ledger`'s replica.
    pub fn new(ledger: Arc<SharedLedger>, topology: impl Into<String>) -> TaskQueue {
        TaskQueue {
            ledger,
            topology: topology.into(),
        }
    }

    /// The ledger this queue is kept on.
    pub fn ledger(&self) -> &Arc<SharedLedger> {
        &self.ledger
    }

    /// Queues a task (`text`, its `request` as JSON, its first `record`: readers take the id
    /// from the row), unless `key` names one already submitted.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn enqueue(
        &self,
        key: Option<&str>,
        text: &str,
        request: &str,
        record: &str,
    ) -> Result<Enqueued, PgError> {
        let topology = &self.topology;
        let row = self
            .ledger
            .conn()
            .run("queueing a task", |c| async move {
                c.query_opt(
                    "INSERT INTO baton_tasks (topology, idempotency_key, text, request, status, record)
                     VALUES ($1, $2, $3, $4, 'queued', $5)
                     ON CONFLICT (topology, idempotency_key) DO NOTHING
                     RETURNING id",
                    &[topology, &key, &text, &request, &record],
                )
                .await
            })
            .await?;
        if let Some(row) = row {
            return Ok(Enqueued::New(id(row.get(0))));
        }
        let row = self
            .ledger
            .conn()
            .run("reading a task by its key", |c| async move {
                c.query_one(
                    "SELECT id, text FROM baton_tasks WHERE topology = $1 AND idempotency_key = $2",
                    &[topology, &key],
                )
                .await
            })
            .await?;
        Ok(Enqueued::Again(id(row.get(0)), row.get(1)))
    }

    /// Takes up to `n` tasks to run: queued ones, oldest first, and ones whose replica stopped
    /// renewing their lease. Each is leased to this replica for the ledger's time to live.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn claim(&self, n: usize) -> Result<Vec<Claimed>, PgError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (topology, replica) = (&self.topology, self.ledger.replica());
        let (limit, ttl) = (big(n as u64), self.ledger.ttl().as_secs_f64());
        let rows = self
            .ledger
            .conn()
            .run("taking tasks from the queue", |c| async move {
                c.query(
                    "WITH c AS (
                         SELECT id, status AS was FROM baton_tasks
                         WHERE topology = $1
                           AND (status = 'queued' OR (status = 'running' AND lease_expires < now()))
                         ORDER BY id LIMIT $3
                         FOR UPDATE SKIP LOCKED
                     )
                     UPDATE baton_tasks t
                     SET status = 'running', replica = $2, attempts = attempts + 1,
                         lease_expires = now() + make_interval(secs => $4)
                     FROM c WHERE t.id = c.id
                     RETURNING t.id, t.request, t.record, c.was = 'running', t.attempts",
                    &[topology, &replica, &limit, &ttl],
                )
                .await
            })
            .await?;
        let mut out: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                id: id(r.get(0)),
                request: r.get(1),
                record: r.get(2),
                taken_over: r.get(3),
                attempts: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Renews the leases of the tasks this replica runs; returns those a client asked (on any
    /// replica) to cancel.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn renew(&self, ids: &[u64]) -> Result<Vec<u64>, PgError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|&i| big(i)).collect();
        let (ids, replica, ttl) = (&ids, self.ledger.replica(), self.ledger.ttl().as_secs_f64());
        let rows = self
            .ledger
            .conn()
            .run("renewing tasks' leases", |c| async move {
                c.query(
                    "UPDATE baton_tasks SET lease_expires = now() + make_interval(secs => $3)
                     WHERE id = ANY($1) AND replica = $2 AND status = 'running'
                     RETURNING id, cancel",
                    &[ids, &replica, &ttl],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| id(r.get(0)))
            .collect())
    }

    /// Writes a running task's record (its live spend) while this replica holds it.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn update(&self, task: u64, record: &str) -> Result<bool, PgError> {
        let (task, replica) = (big(task), self.ledger.replica());
        let n = self
            .ledger
            .conn()
            .run("updating a task", |c| async move {
                c.execute(
                    "UPDATE baton_tasks SET record = $3
                     WHERE id = $1 AND replica = $2 AND status = 'running'",
                    &[&task, &replica, &record],
                )
                .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Ends a task this replica holds: its final `status` and `record`. `false` when it no
    /// longer holds it (another replica took it over), and nothing is written. Repeating it
    /// after a lost reply answers `true` again without writing twice.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn finish(&self, task: u64, status: &str, record: &str) -> Result<bool, PgError> {
        let (task, replica) = (big(task), self.ledger.replica());
        let row = self
            .ledger
            .conn()
            .run("ending a task", |c| async move {
                c.query_opt(
                    "UPDATE baton_tasks SET status = $3, record = $4, lease_expires = NULL
                     WHERE id = $1 AND replica = $2
                       AND (status = 'running' OR (status = $3 AND record = $4))
                     RETURNING true",
                    &[&task, &replica, &status, &record],
                )
                .await
            })
            .await?;
        Ok(row.is_some())
    }

    /// Asks for a task to be cancelled: the replica running it sees it at its next renewal. A
    /// task still queued is ended `cancelled` at once (its record made by `ended`). `None`: no
    /// such task; `Some(false)`: it had already ended.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn cancel(
        &self,
        task: u64,
        ended: impl Fn(&str) -> String,
    ) -> Result<Option<bool>, PgError> {
        let Some(row) = self.get(task).await? else {
            return Ok(None);
        };
        let (t, topology) = (big(task), &self.topology);
        match row.status.as_str() {
            "queued" => {
                let record = ended(&row.record);
                let record = &record;
                let n = self
                    .ledger
                    .conn()
                    .run("cancelling a queued task", |c| async move {
                        c.execute(
                            "UPDATE baton_tasks SET status = 'cancelled', record = $3
                             WHERE id = $1 AND topology = $2 AND status = 'queued'",
                            &[&t, topology, record],
                        )
                        .await
                    })
                    .await?;
                if n == 1 {
                    return Ok(Some(true));
                }
                // Taken meanwhile: ask its replica.
                Box::pin(self.cancel(task, ended)).await
            }
            "running" => {
                self.ledger
                    .conn()
                    .run("cancelling a task", |c| async move {
                        c.execute(
                            "UPDATE baton_tasks SET cancel = true WHERE id = $1 AND topology = $2",
                            &[&t, topology],
                        )
                        .await
                    })
                    .await?;
                Ok(Some(true))
            }
            _ => Ok(Some(false)),
        }
    }

    /// A task's row.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn get(&self, task: u64) -> Result<Option<Row>, PgError> {
        let (t, topology) = (big(task), &self.topology);
        let row = self
            .ledger
            .conn()
            .run("reading a task", |c| async move {
                c.query_opt(
                    "SELECT id, status, record FROM baton_tasks WHERE id = $1 AND topology = $2",
                    &[&t, topology],
                )
                .await
            })
            .await?;
        Ok(row.as_ref().map(Row::from))
    }

    /// Tasks newest first: ids below `cursor`, of `status` when given, at most `limit`.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn list(
        &self,
        status: Option<&str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Vec<Row>, PgError> {
        let topology = &self.topology;
        let (cursor, limit) = (big(cursor.unwrap_or(u64::MAX)), big(limit as u64));
        let rows = self
            .ledger
            .conn()
            .run("listing tasks", |c| async move {
                c.query(
                    "SELECT id, status, record FROM baton_tasks
                     WHERE topology = $1 AND id < $2 AND ($3::text IS NULL OR status = $3)
                     ORDER BY id DESC LIMIT $4",
                    &[topology, &cursor, &status, &limit],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(Row::from).collect())
    }

    /// Counts of the topology's tasks by status.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, PgError> {
        let topology = &self.topology;
        let rows = self
            .ledger
            .conn()
            .run("counting tasks", |c| async move {
                c.query(
                    "SELECT status, count(*) FROM baton_tasks WHERE topology = $1 GROUP BY status ORDER BY status",
                    &[topology],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), id(r.get(1)))).collect())
    }

    /// Appends events of tasks (task id, the event's JSON text, whether it is the task's last).
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn publish(&self, events: &[(u64, String, bool)]) -> Result<(), PgError> {
        if events.is_empty() {
            return Ok(());
        }
        let tasks: Vec<i64> = events.iter().map(|e| big(e.0)).collect();
        let data: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        let last: Vec<bool> = events.iter().map(|e| e.2).collect();
        let (tasks, data, last) = (&tasks, &data, &last);
        self.ledger
            .conn()
            .run("recording tasks' events", |c| async move {
                c.execute(
                    "INSERT INTO baton_task_events (task, data, last)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::boolean[])",
                    &[tasks, data, last],
                )
                .await
            })
            .await?;
        Ok(())
    }

    /// A task's events after `after` (their numbers in the database), in order: (number, JSON
    /// text, whether it is the last).
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn events(&self, task: u64, after: u64) -> Result<Vec<(u64, String, bool)>, PgError> {
        let (t, after) = (big(task), big(after));
        let rows = self
            .ledger
            .conn()
            .run("reading a task's events", |c| async move {
                c.query(
                    "SELECT seq, data, last FROM baton_task_events
                     WHERE task = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
                    &[&t, &after],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| (id(r.get(0)), r.get(1), r.get(2)))
            .collect())
    }
}
