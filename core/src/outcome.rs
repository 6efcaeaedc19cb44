//! How a task ends.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The one terminal outcome every accepted task ends with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The agent produced a final answer.
    Completed,
    /// A model, tool or agent failed and the task could not go on.
    Failed,
    /// A reservation did not fit the remaining budget; nothing more was spent.
    BudgetExceeded,
    /// A supervisor stopped the task's agent for budget reasons.
    CutOff,
    /// The task was cancelled by its caller.
    Cancelled,
    /// The task's deadline (`max_wall`) passed.
    TimedOut,
    /// The loop reached `max_steps` without a final answer.
    MaxSteps,
    /// The agent was at its concurrency limit with a full queue: the task was refused at once,
    /// before any work or spend (backpressure).
    Busy,
}

impl Outcome {
    /// Every outcome, in a stable order (for metrics and tables).
    pub const ALL: [Outcome; 8] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::BudgetExceeded,
        Outcome::CutOff,
        Outcome::Cancelled,
        Outcome::TimedOut,
        Outcome::MaxSteps,
        Outcome::Busy,
    ];

    /// The snake_case name used in JSON, metrics labels and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::BudgetExceeded => "budget_exceeded",
            Outcome::CutOff => "cut_off",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed_out",
            Outcome::MaxSteps => "max_steps",
            Outcome::Busy => "busy",
        }
    }

    /// The `baton run` exit code for a run that ended this way (documented in the README).
    pub const fn exit_code(self) -> i32 {
        match self {
            Outcome::Completed => 0,
            Outcome::Failed => 3,
            Outcome::BudgetExceeded => 4,
            Outcome::CutOff => 5,
            Outcome::Cancelled => 6,
            Outcome::TimedOut => 7,
            Outcome::MaxSteps => 8,
            Outcome::Busy => 9,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
