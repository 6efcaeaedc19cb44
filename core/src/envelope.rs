//! The envelope every message between agents travels in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::budget::Budget;
use crate::usage::Usage;

/// Identifies one task (a run's root task, or a delegated sub-task). Unique within a process, and
/// across its restarts and other processes too: a process's ids start at the time it took its
/// first one, in microseconds since the Unix epoch, so an audit trail or a state file appended
/// across restarts never sees an id twice (unless a process took more ids than microseconds had
/// passed since the other started). They stay below 2^53, exact as JSON numbers.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub u64);

/// Identifies a whole run: the root task and everything it delegated.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TraceId(pub u64);

/// How many ids this process has taken.
static TAKEN: AtomicU64 = AtomicU64::new(0);
/// The process's first id: the clock when it took one.
static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Microseconds since the Unix epoch now (at least 1).
fn epoch_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX >> 11)
                .max(1)
        })
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TaskId {
    /// A fresh id, unique in the process and across its restarts (see [`TaskId`]).
    pub fn fresh() -> TaskId {
        let first = *FIRST.get_or_init(epoch_micros);
        TaskId(first + TAKEN.fetch_add(1, Ordering::Relaxed))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are distinct, increase, start at the clock (so a later process's ids are above an
    /// earlier one's), and stay exact in JSON (below 2^53).
    #[test]
    fn ids_start_at_the_clock_and_never_repeat() {
        let before = epoch_micros();
        let ids: Vec<TaskId> = (0..1000).map(|_| TaskId::fresh()).collect();
        let after = epoch_micros();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
        // Another test may have taken the first id earlier in this process: never later.
        assert!(ids[0].0 <= after + 1000, "{} vs {after}", ids[0].0);
        // 2026 or later, in microseconds.
        assert!(ids[0].0 > 1_760_000_000_000_000, "{}", ids[0].0);
        assert!(before > 0 && ids[999].0 < (1 << 53));
    }
}
