//! The service's event feed: every event of every task (as the audit trail records them), the
//! service's own (a task submitted, a task's report, a loop's run), numbered, kept for replay,
//! and broadcast live to the Server-Sent-Events streams.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use baton::actors::{Event, Observer};
use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for replay across all tasks (a stream resumed with `Last-Event-ID` older than
/// this starts at the oldest kept).
pub(crate) const KEPT_EVENTS: usize = 100_000;
/// Events kept per task.
pub(crate) const KEPT_PER_TASK: usize = 10_000;
/// Tasks whose events are kept (the oldest task's are dropped first; its report stays).
pub(crate) const KEPT_TASKS: usize = 10_000;

/// One event as the streams send it.
#[derive(Debug)]
pub(crate) struct FeedEvent {
    /// Its number: increasing, the SSE `id`.
    pub(crate) seq: u64,
    /// The root task it belongs to, if any.
    pub(crate) root: Option<u64>,
    /// Its kind (the SSE `event`).
    pub(crate) kind: &'static str,
    /// Its JSON text (the SSE `data`): `seq`, `kind`, `at_ms` and the event's fields.
    pub(crate) data: String,
    /// Whether it is the last event of its root task (its report).
    pub(crate) last: bool,
}

#[derive(Default)]
struct Kept {
    next: u64,
    all: VecDeque<Arc<FeedEvent>>,
    by_root: HashMap<u64, VecDeque<Arc<FeedEvent>>>,
    roots: VecDeque<u64>,
}

/// The feed. An [`Observer`] of the runtime; the service publishes its own events too.
pub(crate) struct Feed {
    kept: Mutex<Kept>,
    live: broadcast::Sender<Arc<FeedEvent>>,
    agents: Mutex<BTreeMap<String, AgentStats>>,
    /// On a shared queue: where the events of the queue's tasks this replica runs are copied
    /// (to the database, for the other replicas' streams), and which tasks those are.
    mirror: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Mirrored>>,
    mirrored: Mutex<std::collections::HashSet<u64>>,
}

/// An event copied to the shared queue: its task, its JSON text, whether it is the task's last.
pub(crate) type Mirrored = (u64, String, bool);

/// What an agent has done since the server started, and what it is doing (for the console's
/// supervision tree).
#[derive(Clone, Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentStats {
    /// Tasks running now.
    pub(crate) running: usize,
    /// Tasks ended, by outcome.
    pub(crate) ended: BTreeMap<&'static str, u64>,
    /// Money its model calls booked.
    pub(crate) spent_nanousd: u64,
    /// Prompt tokens.
    pub(crate) tokens_in: u64,
    /// Completion tokens.
    pub(crate) tokens_out: u64,
    /// Model calls booked.
    pub(crate) model_calls: u64,
    /// Model calls that failed.
    pub(crate) model_errors: u64,
    /// Times its supervisor restarted it.
    pub(crate) restarts: u64,
    /// Budget actions taken on its tasks (cut off, rerouted).
    pub(crate) budget_actions: u64,
    #[serde(skip)]
    #[schemars(skip)]
    started: std::collections::HashSet<u64>,
}

impl Feed {
    pub(crate) fn new() -> Arc<Feed> {
        let (live, _) = broadcast::channel(4096);
        Arc::new(Feed {
            kept: Mutex::new(Kept {
                next: 1,
                ..Kept::default()
            }),
            live,
            agents: Mutex::new(BTreeMap::new()),
            mirror: std::sync::OnceLock::new(),
            mirrored: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Every agent's figures, by name.
    pub(crate) fn agents(&self) -> BTreeMap<String, AgentStats> {
        let mut out = self
            .agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for a in out.values_mut() {
            a.running = a.started.len();
        }
        out
    }

    fn count(&self, event: &Event<'_>) {
        let mut agents = self
            .agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The name is copied the first time an agent is seen, not on every event.
        fn of<'m>(agents: &'m mut BTreeMap<String, AgentStats>, name: &str) -> &'m mut AgentStats {
            if !agents.contains_key(name) {
                agents.insert(name.to_owned(), AgentStats::default());
            }
            agents
                .get_mut(name)
                .unwrap_or_else(|| unreachable!("inserted above"))
        }
        let agents = &mut *agents;
        match event {
            Event::Started { agent, task, .. } => {
                of(agents, agent).started.insert(*task);
            }
            Event::Finished {
                agent,
                task,
                outcome,
                ..
            } => {
                let a = of(agents, agent);
                a.started.remove(task);
                *a.ended.entry(outcome.as_str()).or_insert(0) += 1;
            }
            Event::Step {
                agent, usage, cost, ..
            } => {
                let a = of(agents, agent);
                a.model_calls += 1;
                a.spent_nanousd += cost.0;
                a.tokens_in += usage.input;
                a.tokens_out += usage.output;
            }
            Event::ModelFailed { agent, .. } => of(agents, agent).model_errors += 1,
            Event::Restarted { agent, .. } => of(agents, agent).restarts += 1,
            Event::BudgetAction { agent, .. } => of(agents, agent).budget_actions += 1,
            _ => {}
        }
    }

    /// Copies the events of every task registered with [`Feed::mirror`] to `to`.
    pub(crate) fn mirror_to(&self, to: tokio::sync::mpsc::UnboundedSender<Mirrored>) {
        let _ = self.mirror.set(to);
    }

    /// Copies task `root`'s events (until its last) where [`Feed::mirror_to`] said.
    pub(crate) fn mirror(&self, root: u64) {
        self.mirrored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(root);
    }

    /// Numbers, keeps and broadcasts an event.
    pub(crate) fn publish(&self, kind: &'static str, root: Option<u64>, fields: Value, last: bool) {
        let mut data = serde_json::Map::new();
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = kept.next;
        kept.next += 1;
        data.insert("seq".into(), seq.into());
        data.insert("kind".into(), kind.into());
        data.insert("at_ms".into(), super::now_ms().into());
        if let Value::Object(f) = fields {
            data.extend(f);
        }
        // No credential Baton read (a provider key, an MCP server's token) leaves in an event:
        // a tool that echoes one (`env`) is scrubbed here, as provider errors are.
        let text = Value::Object(data).to_string();
        let data = match baton_providers::scrub(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(clean) => clean,
        };
        let event = Arc::new(FeedEvent {
            seq,
            root,
            kind,
            data,
            last,
        });
        kept.all.push_back(Arc::clone(&event));
        if kept.all.len() > KEPT_EVENTS {
            kept.all.pop_front();
        }
        if let Some(r) = root {
            if !kept.by_root.contains_key(&r) {
                kept.roots.push_back(r);
                if kept.roots.len() > KEPT_TASKS
                    && let Some(old) = kept.roots.pop_front()
                {
                    kept.by_root.remove(&old);
                }
            }
            let mine = kept.by_root.entry(r).or_default();
            mine.push_back(Arc::clone(&event));
            if mine.len() > KEPT_PER_TASK {
                mine.pop_front();
            }
        }
        if let (Some(r), Some(to)) = (root, self.mirror.get()) {
            let mut mirrored = self
                .mirrored
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if mirrored.contains(&r) {
                let _ = to.send((r, event.data.clone(), last));
                if last {
                    mirrored.remove(&r);
                }
            }
        }
        // Sent under the lock, so that the live order is the numbering's order.
        drop(self.live.send(event));
    }

    /// A receiver of live events, and the kept events after `after` (of `root` only, when
    /// given), taken together so that none falls between them.
    pub(crate) fn subscribe(
        &self,
        root: Option<u64>,
        after: u64,
    ) -> (broadcast::Receiver<Arc<FeedEvent>>, Vec<Arc<FeedEvent>>) {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = self.live.subscribe();
        let backlog = match root {
            Some(r) => kept
                .by_root
                .get(&r)
                .map(|q| q.iter().filter(|e| e.seq > after).cloned().collect())
                .unwrap_or_default(),
            None => kept.all.iter().filter(|e| e.seq > after).cloned().collect(),
        };
        (rx, backlog)
    }
}

impl Observer for Feed {
    fn on_event(&self, event: &Event<'_>) {
        self.count(event);
        let (kind, fields) = event.record();
        self.publish(kind, event.root(), fields, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events are numbered in order, kept per root, replayed after a given number, and scrubbed
    /// of registered credentials.
    #[test]
    fn numbered_kept_replayed_and_scrubbed() {
        let feed = Feed::new();
        baton_providers::register_secret("sk-feed-test-0123456789abcdef");
        feed.publish("a", Some(1), serde_json::json!({"x": 1}), false);
        feed.publish("b", Some(2), serde_json::json!({"x": 2}), false);
        feed.publish(
            "c",
            Some(1),
            serde_json::json!({"out": "KEY=sk-feed-test-0123456789abcdef"}),
            true,
        );
        let (_, all) = feed.subscribe(None, 0);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let (_, mine) = feed.subscribe(Some(1), 0);
        assert_eq!(mine.iter().map(|e| e.kind).collect::<Vec<_>>(), ["a", "c"]);
        assert!(mine[1].last);
        let (_, after) = feed.subscribe(Some(1), 1);
        assert_eq!(after.len(), 1, "resumed after seq 1");
        assert!(!mine[1].data.contains("sk-feed-test"), "{}", mine[1].data);
        assert!(mine[1].data.contains("[redacted]"));
        let v: Value = serde_json::from_str(&mine[0].data).expect("JSON");
        assert_eq!(
            (v["seq"].as_u64(), v["kind"].as_str(), v["x"].as_u64()),
            (Some(1), Some("a"), Some(1))
        );
    }

    /// Per-task events are kept for the most recent tasks only: memory stays bounded.
    #[test]
    fn per_task_events_are_bounded() {
        let feed = Feed::new();
        for root in 0..(KEPT_TASKS as u64 + 10) {
            feed.publish("a", Some(root), serde_json::json!({}), false);
        }
        let (_, first) = feed.subscribe(Some(0), 0);
        assert!(first.is_empty(), "the oldest task's events were dropped");
        let (_, last) = feed.subscribe(Some(KEPT_TASKS as u64 + 9), 0);
        assert_eq!(last.len(), 1);
        let kept = feed.kept.lock().expect("lock");
        assert_eq!(kept.by_root.len(), KEPT_TASKS);
    }
}
