//! What the ledger records besides money: a task's booked calls, its budget events, and the
//! snapshot of an account subtree that reports are built from.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
