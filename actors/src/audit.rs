//! Writes what happens in a run to the hash-chained audit trail ([`baton_core::audit`]).

use baton_core::audit::AuditLog;
use serde_json::{Map, Value};

use crate::observer::{Event, Observer};

/// An [`Observer`] that appends every model call, tool call and result, policy decision, budget
/// action, retry, restart, escalation and task outcome to an audit trail. Arguments and results
/// are recorded as the model sent and saw them (results capped at 2,000 characters); credentials
/// never pass through events.
///
/// The trail is written by one thread of its own, fed by a channel in event order: a task only
/// turns its event into a record and sends it, so a hundred tasks in flight never queue on the
/// file's lock or wait for its writes. A decision to run a destructive call is the exception: the
/// task waits until that record (and everything before it) is written and synced to disk.
/// [`Observer::flush`] (called by `Runtime::shutdown`) waits for everything sent so far; dropping
/// the observer writes the rest and the trail's signed head.
pub struct AuditObserver {
    tx: Option<std::sync::mpsc::Sender<Write>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The standing-loop runs in flight: root task → (schedule, run), to tag their records.
    runs: std::sync::Mutex<std::collections::HashMap<u64, (String, u64)>>,
}

/// What the writer thread is asked to do, in order.
enum Write {
    Record(&'static str, Map<String, Value>),
    /// Write and sync, then answer.
    Durable(
        &'static str,
        Map<String, Value>,
        std::sync::mpsc::SyncSender<Result<(), String>>,
    ),
    /// Answer once everything before is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

impl AuditObserver {
    /// Audits to `log`, written by a thread of its own.
    ///
    /// # Panics
    /// When the operating system refuses to start a thread.
    pub fn new(log: AuditLog) -> AuditObserver {
        let (tx, rx) = std::sync::mpsc::channel::<Write>();
        let writer = std::thread::Builder::new()
            .name("baton-audit".into())
            .spawn(move || {
                for w in rx {
                    match w {
                        Write::Record(kind, fields) => {
                            if let Err(e) = log.append(kind, fields) {
                                tracing::error!("audit trail: {e}");
                            }
                        }
                        Write::Durable(kind, fields, ack) => {
                            let r = log.append_durable(kind, fields).map_err(|e| {
                                tracing::error!("audit trail: {e}");
                                e.to_string()
                            });
                            drop(ack.send(r));
                        }
                        Write::Flush(ack) => drop(ack.send(())),
                    }
                }
                // The log drops here: its signed head is written.
            })
            .expect("the audit trail's writer thread starts");
        AuditObserver {
            tx: Some(tx),
            writer: Some(writer),
            runs: std::sync::Mutex::default(),
        }
    }

    /// The event's record, tagged with the schedule and run of the loop run it belongs to.
    fn tagged(&self, event: &Event<'_>) -> Option<(&'static str, Map<String, Value>)> {
        let (kind, fields) = event.record();
        let Value::Object(mut fields) = fields else {
            return None;
        };
        let Some(root) = event.root() else {
            return Some((kind, fields));
        };
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::RunStarted { schedule, run, .. } => {
                runs.insert(root, ((*schedule).to_string(), *run));
            }
            _ => {
                if let Some((schedule, run)) = runs.get(&root) {
                    fields.insert("schedule".into(), Value::from(schedule.as_str()));
                    fields.insert("run".into(), Value::from(*run));
                }
                // The run's root task ended: nothing more of it comes.
                if let Event::Finished { task, .. } = event
                    && *task == root
                {
                    runs.remove(&root);
                }
            }
        }
        Some((kind, fields))
    }

    fn send(&self, w: Write) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(w).is_ok())
    }
}

impl Observer for AuditObserver {
    fn on_event(&self, event: &Event<'_>) {
        let Some((kind, fields)) = self.tagged(event) else {
            return;
        };
        if !self.send(Write::Record(kind, fields)) {
            tracing::error!("audit trail: its writer has stopped; a `{kind}` record is lost");
        }
    }

    /// Written and synced to disk before the call it decides runs.
    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        let Some((kind, fields)) = self.tagged(event) else {
            return Ok(());
        };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if !self.send(Write::Durable(kind, fields, ack)) {
            return Err("the audit trail's writer has stopped".into());
        }
        done.recv()
            .unwrap_or_else(|_| Err("the audit trail's writer has stopped".into()))
    }

    fn flush(&self) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.send(Write::Flush(ack)) {
            let _ = done.recv();
        }
    }
}

impl Drop for AuditObserver {
    /// Writes what is still queued and the trail's signed head before returning.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(task: u64) -> Event<'static> {
        Event::Finished {
            agent: "a",
            task,
            root: task,
            outcome: baton_core::Outcome::Completed,
            detail: "done",
            score: baton_core::TaskScore::default(),
        }
    }

    /// Events sent from many threads at once all reach the trail, chained and verifiable; a
    /// decision is on disk when `on_decision` returns, after everything sent before it; `flush`
    /// waits for the writer; dropping the observer writes the (keyed) trail's signed head.
    #[test]
    fn the_writer_thread_keeps_order_durability_and_the_head() {
        let dir = std::env::temp_dir().join(format!("baton-audit-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("trail.jsonl");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(baton_core::audit::head_path(&path));
        let key = b"a key for the head".to_vec();
        let log = AuditLog::open_with_key(&path, Some(key.clone())).expect("open");
        let observer = std::sync::Arc::new(AuditObserver::new(log));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let o = std::sync::Arc::clone(&observer);
                s.spawn(move || {
                    for i in 0..250 {
                        o.on_event(&finished(t * 1000 + i));
                    }
                });
            }
        });
        let decision = Event::Policy {
            agent: "a",
            task: 7,
            root: 7,
            tool: "restart",
            decision: "approved",
            rule: "approval",
            reason: "by a human",
        };
        observer.on_decision(&decision).expect("recorded");
        // Durable on return: the decision is the last line on disk, after all 1,000 events.
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1_001);
        assert!(lines[1_000].contains("\"approved\""), "{}", lines[1_000]);
        observer.on_event(&finished(9_999));
        observer.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1_002, "flush waits for the writer");
        drop(std::sync::Arc::into_inner(observer).expect("last handle"));
        let records = baton_core::audit::verify(&path, Some(&key))
            .expect("readable")
            .expect("intact");
        assert_eq!(records, 1_002);
        let head = baton_core::audit::read_head(&path, Some(&key))
            .expect("head")
            .expect("a head");
        assert_eq!(
            head.seq, 1_002,
            "the signed head is brought up to the last record when the observer goes"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
