//! What the ledger records besides money: a task's booked calls, its budget events, and the
//! snapshot of an account subtree that reports are built from.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use std::sync::atomic::Ordering;

use super::{Account, EnergyKind, StepScore, TaskScore};
use crate::money::NanoUsd;
use crate::outcome::Outcome;
use crate::usage::{TokenUsage, Usage};

/// One booked model call of a task: where the step went and what it cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The loop step.
    pub step: u32,
    /// The model that answered (or failed and was billed).
    pub model: Arc<str>,
    /// Tokens billed.
    pub tokens: TokenUsage,
    /// Cost booked.
    pub cost: NanoUsd,
    /// What the same tokens would have cost on the priciest model of the agent's ladder: the
    /// baseline routing is measured against. Zero for a call whose answer was not used (failed,
    /// or set aside): it saved nothing, and its cost counts against the savings.
    pub top_rung_cost: NanoUsd,
    /// The call's energy, and how it was obtained.
    #[serde(default)]
    pub energy: crate::energy::Energy,
}

/// A policy decision on one of a task's tool calls, as the harness made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyRecord {
    /// The tool.
    pub tool: String,
    /// `allowed`, `requested`, `approved` or `denied`.
    pub decision: String,
    /// The rule that decided: `role`, `freeze`, `dry_run_first`, `approval`, `dry_run`, `none`.
    pub rule: String,
    /// Why (for an approval or a denial by a person, who).
    pub reason: String,
}

/// What happened to a task's budget.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetEventKind {
    /// A reservation did not fit; the task ended `budget_exceeded`.
    Refused,
    /// The supervisor stopped the agent after its task exceeded the budget.
    CutOff,
    /// The step was rerouted to a cheaper model on the agent's ladder.
    ReroutedModel,
    /// The rest of the task was handed to the agent's fallback agent.
    ReroutedAgent,
    /// A provider billed more than the reservation's worst case.
    Overrun,
}

/// One budget event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BudgetEvent {
    /// What happened.
    pub kind: BudgetEventKind,
    /// Details for people.
    pub detail: String,
}

/// A copy of an account subtree, for reports and tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// Task id.
    pub task: u64,
    /// Owning agent.
    pub agent: String,
    /// The account's own money limit, if any.
    pub limit: Option<NanoUsd>,
    /// Committed by the subtree.
    pub spent: NanoUsd,
    /// Still reserved in the subtree.
    pub reserved: NanoUsd,
    /// Tokens committed by the subtree.
    pub tokens_spent: u64,
    /// This account's own usage (its task's model calls, tokens, steps, wall time).
    pub own: Usage,
    /// Booked beyond reservations (a provider billed more than the worst case estimated).
    pub overrun: NanoUsd,
    /// Reservations refused at this account.
    pub refusals: u64,
    /// Model calls of this task that failed (provider errors, timeouts, malformed replies).
    pub model_errors: u64,
    /// Model calls of this task booked at Baton's estimate because the server reported no usage.
    #[serde(default)]
    pub estimated_calls: u64,
    /// Steps of this task kept on a local model because it was private (a sensitive tool's
    /// output, a `local_only` agent, or a private parent).
    #[serde(default)]
    pub private_steps: u64,
    /// Tokens of tool output cut before they re-entered this task's context.
    pub tool_tokens_saved: u64,
    /// Times the agent running this task crashed and was restarted.
    pub restarts: u64,
    /// Budget events of this task: refusals, cut-offs, reroutes, overruns.
    pub events: Vec<BudgetEvent>,
    /// The harness's policy decisions on this task's tool calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyRecord>,
    /// Its booked model calls, in order (empty when `sole_model` says where they all went).
    pub calls: Vec<CallRecord>,
    /// The one model all its calls went to, when its agent's ladder has one model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sole_model: Option<String>,
    /// Scoreboard figures of the task's own work: value, energy, re-sent tokens, quality,
    /// free-tier steps, caching, compaction.
    #[serde(default)]
    pub score: super::TaskScore,
    /// The task's terminal outcome, once recorded.
    pub outcome: Option<Outcome>,
    /// How long the task waited before an agent began it (in its agent's queue, for a slot); its
    /// whole wall time when none did. `own.wall` minus this is its running time.
    #[serde(default)]
    pub queued: std::time::Duration,
    /// Delegated tasks.
    pub children: Vec<AccountSnapshot>,
}

impl AccountSnapshot {
    /// Visits this account and every descendant, depth first.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a AccountSnapshot)) {
        f(self);
        for c in &self.children {
            c.walk(f);
        }
    }
}

/// What an account records besides money: the counts and figures its task adds up as it runs
/// (steps, tool calls, errors, privacy, calls and their models, scoreboard figures, budget events).
impl Account {
    /// Counts one loop iteration of this account's task.
    pub fn record_step(&self) {
        self.0.node.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one tool call (delegations included) of this account's task.
    pub fn record_tool_call(&self) {
        self.0.node.tool_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed model call of this task.
    pub fn record_model_error(&self) {
        self.0.node.model_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes this task private: from now on its steps, and the tasks it delegates, are served by
    /// local models only.
    pub fn mark_private(&self) {
        self.0.node.private.store(true, Ordering::Release);
    }

    /// Whether this task is private (see [`Account::mark_private`]).
    pub fn is_private(&self) -> bool {
        self.0.node.private.load(Ordering::Acquire)
    }

    /// Counts a step of this task kept on a local model because the task is private.
    pub fn record_private_step(&self) {
        self.0.node.private_steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a model call of this task booked at Baton's estimate (the server reported no usage).
    pub fn record_estimated_call(&self) {
        self.0.node.estimated_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks this task's last booked model call as set aside (its answer was not used: low or
    /// missing confidence, a truncated tool call): it saved nothing against the top rung.
    pub fn set_aside_last_call(&self) {
        if let Some(last) = self
            .0
            .node
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last_mut()
        {
            last.top_rung_cost = NanoUsd::ZERO;
        }
    }

    /// Counts tokens of tool output cut before it re-entered this task's context.
    pub fn record_tool_tokens_saved(&self, tokens: u64) {
        self.0
            .node
            .tool_tokens_saved
            .fetch_add(tokens, Ordering::Relaxed);
    }

    /// Counts a crash-and-restart of the agent that held this task.
    pub fn record_restart(&self) {
        self.0.node.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a policy decision on one of this task's tool calls.
    pub fn record_policy(&self, record: PolicyRecord) {
        self.0
            .node
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    /// Records which model answered a step of this task, and what it cost (one uncontended lock
    /// per call: only this task's agent writes here).
    pub fn record_call(&self, call: CallRecord) {
        self.0
            .node
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    /// Records the energy of one of this task's model or tool calls (a model call without a
    /// figure is counted as such).
    pub fn record_energy(&self, kind: EnergyKind, energy: crate::energy::Energy) {
        self.0.node.score.energy(kind, energy);
    }

    /// This task's own scoreboard figures so far (not its children's).
    pub fn score(&self) -> TaskScore {
        self.0.node.score.snapshot()
    }

    /// Credits this task with the value of its completed work.
    pub fn record_value(&self, value: NanoUsd) {
        self.0.node.score.value(value);
    }

    /// Records an answered step's context and quality figures (see [`StepScore`]).
    pub fn record_step_score(&self, step: &StepScore) {
        self.0.node.score.step(step);
    }

    /// Records what prompt caching changed on a call (nano-dollars; negative when writes cost
    /// more than reads saved).
    pub fn record_cache_saving(&self, saved: i64) {
        self.0.node.score.cache(saved);
    }

    /// Counts a transcript compaction (the tokens it saves are counted call by call, in
    /// [`StepScore::compaction_saved`]).
    pub fn record_compaction(&self) {
        self.0.node.score.compaction();
    }

    /// Says that every call of this task goes to `model` (its agent has a one-model ladder), so
    /// that calls need no per-call record to be attributed.
    pub fn set_sole_model(&self, model: Arc<str>) {
        let _ = self.0.node.sole_model.set(model);
    }

    /// Records a budget event (cold path: a lock per event).
    pub fn record_event(&self, kind: BudgetEventKind, detail: impl Into<String>) {
        self.0
            .node
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(BudgetEvent {
                kind,
                detail: detail.into(),
            });
    }
}
