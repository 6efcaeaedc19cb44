//! The envelope every message between agents travels in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::budget::Budget;
use crate::usage::Usage;

/// Identifies one task (a run's root task, or a delegated sub-task). Unique within a process.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub u64);

/// Identifies a whole run: the root task and everything it delegated.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TraceId(pub u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TaskId {
    /// A fresh, process-unique id.
    pub fn fresh() -> TaskId {
        TaskId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// A payload with the ids, budget, usage so far, deadline and hop count that travel with it.
#[derive(Clone, Debug)]
pub struct Envelope<T> {
    /// This task.
    pub task: TaskId,
    /// The task that delegated this one, if any.
    pub parent: Option<TaskId>,
    /// The run this task belongs to.
    pub trace: TraceId,
    /// Who sent it (an agent name, or `"user"` for a run's root task).
    pub sender: Arc<str>,
    /// The budget granted for this task (already the tightest of the grant and the receiver's own).
    pub budget: Budget,
    /// Usage so far (zero on a request; the task's subtree usage on a result).
    pub usage: Usage,
    /// When the task must end `timed_out`.
    pub deadline: Option<Instant>,
    /// How many delegations deep this task is (the root task is 0); bounds handoff loops.
    pub hops: u32,
    /// The message itself.
    pub payload: T,
}

impl<T> Envelope<T> {
    /// A root task from `sender`.
    pub fn root(sender: impl Into<Arc<str>>, budget: Budget, payload: T) -> Envelope<T> {
        let task = TaskId::fresh();
        let deadline = budget.max_wall.map(|w| Instant::now() + w);
        Envelope {
            task,
            parent: None,
            trace: TraceId(task.0),
            sender: sender.into(),
            budget,
            usage: Usage::default(),
            deadline,
            hops: 0,
            payload,
        }
    }

    /// A sub-task of this one, sent by `sender` with `budget` (the deadline can only get earlier).
    pub fn child<U>(&self, sender: Arc<str>, budget: Budget, payload: U) -> Envelope<U> {
        let own = budget.max_wall.map(|w| Instant::now() + w);
        let deadline = match (self.deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Envelope {
            task: TaskId::fresh(),
            parent: Some(self.task),
            trace: self.trace,
            sender,
            budget,
            usage: Usage::default(),
            deadline,
            hops: self.hops + 1,
            payload,
        }
    }

    /// The reply to this envelope: same ids, `usage` and `payload` replaced.
    pub fn reply<U>(&self, sender: Arc<str>, usage: Usage, payload: U) -> Envelope<U> {
        Envelope {
            task: self.task,
            parent: self.parent,
            trace: self.trace,
            sender,
            budget: self.budget.clone(),
            usage,
            deadline: self.deadline,
            hops: self.hops,
            payload,
        }
    }
}
