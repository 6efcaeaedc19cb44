//! baton-actors: Baton's runtime on ractor — the conductor, supervised sub-agents, delegation and
//! budget enforcement.
//!
//! A [`Runtime`] is built from a validated [`baton_topologies::Topology`]. The runtime opens each
//! run's root ledger account; its conductor actor supervises the root agent. Each declared agent is
//! an actor that runs many tasks at once, each task in a worker of its own, which runs the loop
//! (route → reserve → call → commit → tools → observe) and delegates to children through the
//! built-in `delegate` tool, each child's account opened under its parent's. Every task ends with
//! exactly one terminal outcome.

mod agent;
mod approval;
mod audit;
mod breaker;
mod conductor;
mod error;
mod observer;
mod plan;
mod report;
mod retry;
mod runtime;
mod scheduler;
mod scoreboard;
mod store;
mod supervisor;
mod telemetry;

pub use agent::TaskResult;
pub use approval::{
    AnswerError, ApprovalDecision, ApprovalQueue, ApprovalRecord, ApprovalRequest, ApprovalState,
    Approver,
};
pub use audit::AuditObserver;
pub use breaker::BreakerState;
pub use error::{Component, RuntimeError};
pub use observer::{Event, Observer};
pub use report::{
    AgentReport, ModelReport, RunReport, TaskBudgetEvent, TaskPolicyDecision, TaskReport, Totals,
};
pub use runtime::{Runtime, RuntimeBuilder, TaskHandle, TaskRun};
pub use scheduler::{HOUR, LoopEvent, LoopSummary, PERIOD};
pub use scoreboard::{ScoreSums, Scoreboard, ValuePerWattInputs};
pub use store::{LoopState, LoopStore, RunRecord, StoreError};
pub use telemetry::{METRICS, describe_metrics};
