//! What work consumed: tokens, calls, steps, time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::NanoUsd;

/// The tokens of one model call, as the provider reports them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens, **including** the cached ones.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// The part of `input` read from the provider's prompt cache.
    pub cached_input: u64,
    /// The part of `input` written to the provider's prompt cache (Anthropic bills it at its
    /// own rate, above the input's).
    #[serde(default)]
    pub cache_write_input: u64,
}

impl TokenUsage {
    /// Input plus output tokens: what a token budget counts.
    pub const fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Everything a task (or an agent, or a run) consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of all model calls.
    pub tokens: TokenUsage,
    /// Money booked in the ledger.
    pub cost: NanoUsd,
    /// Model calls made (including failed ones that were billed).
    pub model_calls: u64,
    /// Tool calls made, delegations included.
    pub tool_calls: u64,
    /// Loop iterations (one model call and the tools it asked for).
    pub steps: u64,
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU time spent inside tools.
    pub tool_cpu: Duration,
}

impl Usage {
    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: &Usage) {
        self.tokens.input += other.tokens.input;
        self.tokens.output += other.tokens.output;
        self.tokens.cached_input += other.tokens.cached_input;
        self.tokens.cache_write_input += other.tokens.cache_write_input;
        self.cost = self.cost.saturating_add(other.cost);
        self.model_calls += other.model_calls;
        self.tool_calls += other.tool_calls;
        self.steps += other.steps;
        self.wall += other.wall;
        self.tool_cpu += other.tool_cpu;
    }
}
