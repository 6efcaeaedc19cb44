//! The hierarchical ledger: a tree of accounts mirroring the task tree.
//!
//! Every task gets an [`Account`] opened under its caller's. Before a model call the agent
//! [`reserve`](Account::reserve)s the worst case against its account **and every ancestor**; after the
//! call it [`commit`](Reservation::commit)s the real cost, releasing the rest. A reservation that does
//! not fit anywhere up the chain is refused before any money is spent.
//!
//! **Architecture Invariant** (no overspend): for every account, `committed + reserved <= limit` is
//! checked and updated in one compare-and-swap per level, so concurrent reservations can never
//! jointly exceed a hard limit. A provider that bills more than was reserved is still booked (the
//! money is spent) and recorded as an *overrun*.
//!
//! **Architecture Invariant** (conservation): an account's `spent` equals its `own_spent` plus the
//! `spent` of its children, at every quiescent point, because a commit adds the same amount to the
//! leaf's own spend and to the subtree spend of the leaf and each ancestor.
//!
//! The hot path takes no lock: reserve and commit are atomics walked up an `Arc` chain. The only lock
//! guards each account's list of children and is taken once, when a child account is opened.

// Under `--cfg baton_loom` the ledger's counters are loom's, so that the model checker explores every
// interleaving of reserve / commit / release (core/tests/loom.rs). Ordering is the same type.
#[cfg(baton_loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(not(baton_loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// tokio's clock: the same as std's, except under paused time (tests), where wall times are virtual.
use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

mod records;
mod reservation;
mod score;

pub use records::{AccountSnapshot, BudgetEvent, BudgetEventKind, CallRecord, PolicyRecord};
pub use reservation::{Committed, Reservation};
pub use score::{EnergyKind, EnergySplit, StepScore, TaskScore};

use crate::money::NanoUsd;
use crate::outcome::Outcome;
use crate::usage::{TokenUsage, Usage};

/// One account: a task's money and tokens, with links up to its ancestors.
#[derive(Clone)]
pub struct Account(Arc<Chain>);

/// The upward links of an account: its node and its parent's chain. Nodes link down only (a
/// parent keeps its children for the report), chains link up only (a commit walks to the root), so
/// the tree has no reference cycle and is freed when its last handle goes.
struct Chain {
    node: Arc<Node>,
    parent: Option<Arc<Chain>>,
}

/// Accounts alive in the process (nodes not yet freed): what a leak test watches. Counted on
/// cache-line-sized shards, one per thread (by turn), so that workers opening and freeing accounts
/// at once never contend on one counter; an account freed on another thread than the one that
/// opened it moves one shard down and another up, and the sum stays right.
#[repr(align(128))]
struct LiveShard(std::sync::atomic::AtomicI64);

const LIVE_SHARDS: usize = 16;

static LIVE: [LiveShard; LIVE_SHARDS] =
    [const { LiveShard(std::sync::atomic::AtomicI64::new(0)) }; LIVE_SHARDS];

/// This thread's shard of [`LIVE`].
fn live_shard() -> &'static std::sync::atomic::AtomicI64 {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LIVE_SHARDS;
    }
    &LIVE[SHARD.with(|s| *s)].0
}

/// How many accounts are alive in this process: every account of every task still referenced
/// (by a handle, a reservation, or an ancestor kept for its report). Returns to its baseline when
/// the tasks and their reports are dropped.
pub fn live_accounts() -> u64 {
    let sum: i64 = LIVE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    u64::try_from(sum).unwrap_or(0)
}

impl Drop for Node {
    fn drop(&mut self) {
        live_shard().fetch_sub(1, Ordering::Relaxed);
    }
}

struct Node {
    task: u64,
    agent: Arc<str>,
    cost_limit: u64,
    token_limit: u64,
    /// committed + reserved, whole subtree: the figure limits are checked against.
    cost_used: AtomicU64,
    tokens_used: AtomicU64,
    /// committed, whole subtree.
    cost_spent: AtomicU64,
    tokens_spent: AtomicU64,
    /// committed by this account's own calls.
    cost_own: AtomicU64,
    input_own: AtomicU64,
    output_own: AtomicU64,
    cached_own: AtomicU64,
    model_calls: AtomicU64,
    tool_calls: AtomicU64,
    steps: AtomicU64,
    overrun: AtomicU64,
    refusals: AtomicU64,
    model_errors: AtomicU64,
    estimated_calls: AtomicU64,
    tool_tokens_saved: AtomicU64,
    restarts: AtomicU64,
    /// The task's data may only go to local models (a sensitive observation entered it, its
    /// agent is `local_only`, or it was delegated by a private task).
    private: std::sync::atomic::AtomicBool,
    /// Steps of this task served by a local model because it is private.
    private_steps: AtomicU64,
    /// Scoreboard figures: value, energy, re-sent context, quality, caching, compaction.
    score: score::ScoreCells,
    events: Mutex<Vec<BudgetEvent>>,
    /// The harness's policy decisions on the task's tool calls.
    policy: Mutex<Vec<PolicyRecord>>,
    calls: Mutex<Vec<CallRecord>>,
    sole_model: OnceLock<Arc<str>>,
    crash: Mutex<Option<String>>,
    /// Why the task ended, when something other than its own loop ended it (first wins).
    reason: OnceLock<String>,
    began: std::sync::atomic::AtomicBool,
    /// Cancelling an account cancels its whole subtree (child tokens are derived from it).
    token: CancellationToken,
    started: Instant,
    wall_ns: AtomicU64,
    /// How long the task waited before an agent began it (set once, when it begins).
    queued_ns: AtomicU64,
    outcome: OnceLock<Outcome>,
    children: Mutex<Vec<Arc<Node>>>,
}

/// Which limit a reservation hit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The money limit.
    Cost,
    /// The token limit.
    Tokens,
}

/// Why a reservation was refused: which account, which limit, and by how much.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refusal {
    /// Agent owning the account that refused.
    pub agent: Arc<str>,
    /// Task id of that account.
    pub task: u64,
    /// Which limit.
    pub kind: LimitKind,
    /// The limit (nano-dollars or tokens).
    pub limit: u64,
    /// Committed plus reserved at the time.
    pub used: u64,
    /// What was asked for.
    pub requested: u64,
}

impl Refusal {
    fn describe(&self) -> String {
        let left = self.limit.saturating_sub(self.used);
        match self.kind {
            LimitKind::Cost => format!(
                "budget of `{}` (task {}) cannot cover the next call: its worst case is {}, {} is left of {}",
                self.agent,
                self.task,
                NanoUsd(self.requested),
                NanoUsd(left),
                NanoUsd(self.limit)
            ),
            LimitKind::Tokens => format!(
                "token budget of `{}` (task {}) cannot cover the next call: it may use {} tokens, {} are left of {}",
                self.agent, self.task, self.requested, left, self.limit
            ),
        }
    }
}

impl Account {
    /// Opens a root account (a run's) with optional cost and token limits.
    pub fn root(
        task: u64,
        agent: impl Into<Arc<str>>,
        cost_limit: Option<NanoUsd>,
        token_limit: Option<u64>,
    ) -> Account {
        Account(Arc::new(Chain {
            node: Arc::new(Node::new(task, agent.into(), None, cost_limit, token_limit)),
            parent: None,
        }))
    }

    /// Opens a child account (a delegated task's) under this one. The child's limits apply on top of
    /// every ancestor's. A child of a private task is private: the delegation carries what the
    /// parent's transcript holds. (The runtime marks a parent private when a private child's
    /// answer comes back; the ledger does not do it by itself.)
    pub fn open_child(
        &self,
        task: u64,
        agent: impl Into<Arc<str>>,
        cost_limit: Option<NanoUsd>,
        token_limit: Option<u64>,
    ) -> Account {
        let node = Arc::new(Node::new(
            task,
            agent.into(),
            Some(&self.0.node.token),
            cost_limit,
            token_limit,
        ));
        if self.is_private() {
            node.private.store(true, Ordering::Release);
        }
        self.0
            .node
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::clone(&node));
        Account(Arc::new(Chain {
            node,
            parent: Some(Arc::clone(&self.0)),
        }))
    }

    /// Reserves `cost` and `tokens` against this account and all its ancestors, or nothing at all.
    ///
    /// # Errors
    /// A [`Refusal`] naming the first account up the chain whose limit the reservation would exceed.
    pub fn reserve(&self, cost: NanoUsd, tokens: u64) -> Result<Reservation, Refusal> {
        let mut cur: Option<&Chain> = Some(&self.0);
        while let Some(c) = cur {
            let n = &*c.node;
            let refused = if !try_add(&n.cost_used, cost.0, n.cost_limit) {
                Some((
                    LimitKind::Cost,
                    n.cost_limit,
                    n.cost_used.load(Ordering::Relaxed),
                    cost.0,
                ))
            } else if !try_add(&n.tokens_used, tokens, n.token_limit) {
                n.cost_used.fetch_sub(cost.0, Ordering::AcqRel);
                Some((
                    LimitKind::Tokens,
                    n.token_limit,
                    n.tokens_used.load(Ordering::Relaxed),
                    tokens,
                ))
            } else {
                None
            };
            if let Some((kind, limit, used, requested)) = refused {
                // Undo the levels below the one that refused.
                let mut undo: Option<&Chain> = Some(&self.0);
                while let Some(u) = undo {
                    if std::ptr::eq(&*u.node, n) {
                        break;
                    }
                    u.node.cost_used.fetch_sub(cost.0, Ordering::AcqRel);
                    u.node.tokens_used.fetch_sub(tokens, Ordering::AcqRel);
                    undo = u.parent.as_deref();
                }
                self.0.node.refusals.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal {
                    agent: Arc::clone(&n.agent),
                    task: n.task,
                    kind,
                    limit,
                    used,
                    requested,
                });
            }
            cur = c.parent.as_deref();
        }
        Ok(Reservation {
            chain: Arc::clone(&self.0),
            cost: cost.0,
            tokens,
            live: true,
        })
    }

    /// Books `amount` as already spent under this account — spend carried over from elsewhere (a
    /// process before a restart, an interrupted run's worst case) — as a child account of its own
    /// ("carried over"), at most what the chain has left. Returns what was booked.
    pub fn carry(&self, amount: NanoUsd) -> NanoUsd {
        if amount == NanoUsd::ZERO {
            return NanoUsd::ZERO;
        }
        let amount = amount.min(self.remaining_cost());
        let carried = self.open_child(crate::TaskId::fresh().0, "carried over", None, None);
        match carried.reserve(amount, 0) {
            Ok(r) => {
                r.commit(&TokenUsage::default(), amount);
                amount
            }
            Err(_) => NanoUsd::ZERO,
        }
    }

    /// The money still available to this account: the smallest headroom up the chain.
    pub fn remaining_cost(&self) -> NanoUsd {
        let mut left = u64::MAX;
        let mut cur: Option<&Chain> = Some(&self.0);
        while let Some(c) = cur {
            let n = &*c.node;
            left = left.min(
                n.cost_limit
                    .saturating_sub(n.cost_used.load(Ordering::Acquire)),
            );
            cur = c.parent.as_deref();
        }
        NanoUsd(left)
    }

    /// The tokens still available to this account: the smallest headroom up the chain.
    pub fn remaining_tokens(&self) -> u64 {
        let mut left = u64::MAX;
        let mut cur: Option<&Chain> = Some(&self.0);
        while let Some(c) = cur {
            let n = &*c.node;
            left = left.min(
                n.token_limit
                    .saturating_sub(n.tokens_used.load(Ordering::Acquire)),
            );
            cur = c.parent.as_deref();
        }
        left
    }

    /// Marks that an agent began working on this task (a task still queued when its agent died can
    /// be delivered again without counting as a retry).
    pub fn mark_started(&self) {
        if !self.0.node.began.swap(true, Ordering::AcqRel) {
            let ns = u64::try_from(self.0.node.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.0.node.queued_ns.store(ns, Ordering::Release);
        }
    }

    /// Whether an agent began working on this task.
    pub fn was_started(&self) -> bool {
        self.0.node.began.load(Ordering::Acquire)
    }

    /// Records why the agent holding this task crashed (the last crash wins).
    pub fn record_crash(&self, reason: impl Into<String>) {
        *self
            .0
            .node
            .crash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.into());
    }

    /// Why the agent holding this task last crashed, if it did.
    pub fn crash_reason(&self) -> Option<String> {
        self.0
            .node
            .crash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Cancels this task and every task under it.
    pub fn cancel(&self) {
        self.0.node.token.cancel();
    }

    /// Whether this task (or an ancestor) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.node.token.is_cancelled()
    }

    /// Completes when this task (or an ancestor) is cancelled.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping it only stops waiting.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.0.node.token.cancelled()
    }

    /// Records the task's terminal outcome. Only the first call wins; it returns whether it did, so
    /// that "exactly one outcome" can be asserted by whoever races to end a task.
    pub fn finish(&self, outcome: Outcome) -> bool {
        let won = self.0.node.outcome.set(outcome).is_ok();
        if won {
            let ns = u64::try_from(self.0.node.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.0.node.wall_ns.store(ns, Ordering::Release);
        }
        won
    }

    /// Ends the task from outside its loop (a supervisor stopping its agent, a give-up, a
    /// refusal): records `outcome` and why, unless an outcome was already recorded. Returns whether
    /// this call decided the outcome.
    pub fn end(&self, outcome: Outcome, reason: impl Into<String>) -> bool {
        let won = self.finish(outcome);
        if won {
            let _ = self.0.node.reason.set(reason.into());
        }
        won
    }

    /// Why the task ended, when [`end`](Self::end) ended it.
    pub fn end_reason(&self) -> Option<&str> {
        self.0.node.reason.get().map(String::as_str)
    }

    /// The terminal outcome, once recorded.
    pub fn outcome(&self) -> Option<Outcome> {
        self.0.node.outcome.get().copied()
    }

    /// The task id of this account.
    pub fn task(&self) -> u64 {
        self.0.node.task
    }

    /// The agent that owns this account.
    pub fn agent(&self) -> &Arc<str> {
        &self.0.node.agent
    }

    /// Money committed by this account and all its descendants.
    pub fn spent(&self) -> NanoUsd {
        NanoUsd(self.0.node.cost_spent.load(Ordering::Acquire))
    }

    /// Money committed by this account's own model calls.
    pub fn own_spent(&self) -> NanoUsd {
        NanoUsd(self.0.node.cost_own.load(Ordering::Acquire))
    }

    /// Money currently reserved and not yet committed, subtree-wide.
    pub fn reserved(&self) -> NanoUsd {
        NanoUsd(
            self.0
                .node
                .cost_used
                .load(Ordering::Acquire)
                .saturating_sub(self.0.node.cost_spent.load(Ordering::Acquire)),
        )
    }

    /// The money limit set on this account itself (not its ancestors').
    pub fn cost_limit(&self) -> Option<NanoUsd> {
        (self.0.node.cost_limit != u64::MAX).then_some(NanoUsd(self.0.node.cost_limit))
    }

    /// A consistent-at-quiescence copy of this account and its subtree.
    pub fn snapshot(&self) -> AccountSnapshot {
        self.0.node.snapshot()
    }

    /// Checks conservation over the subtree: each account's spend equals its own plus its children's,
    /// and nothing stays reserved. Meaningful when no call is in flight.
    ///
    /// # Errors
    /// A description of the first account that breaks it.
    pub fn check_conservation(&self) -> Result<(), String> {
        self.0.node.check()
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("task", &self.0.node.task)
            .field("agent", &self.0.node.agent)
            .field("spent", &self.spent())
            .field("limit", &self.cost_limit())
            .finish()
    }
}

fn try_add(cell: &AtomicU64, amount: u64, limit: u64) -> bool {
    cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
        used.checked_add(amount).filter(|&v| v <= limit)
    })
    .is_ok()
}

impl Node {
    fn new(
        task: u64,
        agent: Arc<str>,
        parent: Option<&CancellationToken>,
        cost_limit: Option<NanoUsd>,
        token_limit: Option<u64>,
    ) -> Node {
        let token = parent.map_or_else(CancellationToken::new, CancellationToken::child_token);
        live_shard().fetch_add(1, Ordering::Relaxed);
        Node {
            model_errors: AtomicU64::new(0),
            estimated_calls: AtomicU64::new(0),
            private: std::sync::atomic::AtomicBool::new(false),
            private_steps: AtomicU64::new(0),
            tool_tokens_saved: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            score: score::ScoreCells::default(),
            events: Mutex::new(Vec::new()),
            policy: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            sole_model: OnceLock::new(),
            crash: Mutex::new(None),
            reason: OnceLock::new(),
            began: std::sync::atomic::AtomicBool::new(false),
            token,
            task,
            agent,
            cost_limit: cost_limit.map_or(u64::MAX, |c| c.0),
            token_limit: token_limit.unwrap_or(u64::MAX),
            cost_used: AtomicU64::new(0),
            tokens_used: AtomicU64::new(0),
            cost_spent: AtomicU64::new(0),
            tokens_spent: AtomicU64::new(0),
            cost_own: AtomicU64::new(0),
            input_own: AtomicU64::new(0),
            output_own: AtomicU64::new(0),
            cached_own: AtomicU64::new(0),
            model_calls: AtomicU64::new(0),
            tool_calls: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            overrun: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            started: Instant::now(),
            wall_ns: AtomicU64::new(0),
            queued_ns: AtomicU64::new(0),
            outcome: OnceLock::new(),
            children: Mutex::new(Vec::new()),
        }
    }

    fn children(&self) -> Vec<Arc<Node>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn snapshot(&self) -> AccountSnapshot {
        let wall_ns = self.wall_ns.load(Ordering::Acquire);
        let wall = if wall_ns == 0 && self.outcome.get().is_none() {
            self.started.elapsed()
        } else {
            Duration::from_nanos(wall_ns)
        };
        // A task no agent began waited all its life.
        let queued = if self.began.load(Ordering::Acquire) {
            Duration::from_nanos(self.queued_ns.load(Ordering::Acquire))
        } else {
            wall
        };
        AccountSnapshot {
            queued,
            task: self.task,
            agent: self.agent.to_string(),
            limit: (self.cost_limit != u64::MAX).then_some(NanoUsd(self.cost_limit)),
            spent: NanoUsd(self.cost_spent.load(Ordering::Acquire)),
            reserved: NanoUsd(
                self.cost_used
                    .load(Ordering::Acquire)
                    .saturating_sub(self.cost_spent.load(Ordering::Acquire)),
            ),
            tokens_spent: self.tokens_spent.load(Ordering::Acquire),
            own: Usage {
                tokens: TokenUsage {
                    input: self.input_own.load(Ordering::Acquire),
                    output: self.output_own.load(Ordering::Acquire),
                    cached_input: self.cached_own.load(Ordering::Acquire),
                    cache_write_input: self.score.cache_write_own.load(Ordering::Acquire),
                },
                cost: NanoUsd(self.cost_own.load(Ordering::Acquire)),
                model_calls: self.model_calls.load(Ordering::Acquire),
                tool_calls: self.tool_calls.load(Ordering::Acquire),
                steps: self.steps.load(Ordering::Acquire),
                wall,
                tool_cpu: Duration::ZERO,
            },
            overrun: NanoUsd(self.overrun.load(Ordering::Acquire)),
            refusals: self.refusals.load(Ordering::Acquire),
            model_errors: self.model_errors.load(Ordering::Acquire),
            estimated_calls: self.estimated_calls.load(Ordering::Acquire),
            private_steps: self.private_steps.load(Ordering::Acquire),
            tool_tokens_saved: self.tool_tokens_saved.load(Ordering::Acquire),
            restarts: self.restarts.load(Ordering::Acquire),
            events: self
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            calls: self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            sole_model: self.sole_model.get().map(|m| m.to_string()),
            policy: self
                .policy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            score: self.score.snapshot(),
            outcome: self.outcome.get().copied(),
            children: self.children().iter().map(|c| c.snapshot()).collect(),
        }
    }

    fn check(&self) -> Result<(), String> {
        let children = self.children();
        let own = self.cost_own.load(Ordering::Acquire);
        let sum: u64 = children
            .iter()
            .map(|c| c.cost_spent.load(Ordering::Acquire))
            .sum();
        let spent = self.cost_spent.load(Ordering::Acquire);
        if spent != own + sum {
            return Err(format!(
                "account {} (task {}): spent {spent} != own {own} + children {sum}",
                self.agent, self.task
            ));
        }
        let used = self.cost_used.load(Ordering::Acquire);
        if used != spent {
            return Err(format!(
                "account {} (task {}): {} still reserved",
                self.agent,
                self.task,
                used.saturating_sub(spent)
            ));
        }
        children.iter().try_for_each(|c| c.check())
    }
}

#[cfg(test)]
mod tests;
