//! Baton runs hierarchies of LLM agents as supervised actors, with every call reserved against an
//! integer-money budget before it is made.
//!
//! Build a tree in code (or load it from a topology file), plug in your own tools and models, run a
//! task, read the report:
//!
//! ```
//! use baton::prelude::*;
//!
//! struct Weather;
//!
//! #[async_trait]
//! impl Tool for Weather {
//!     fn name(&self) -> &str { "weather" }
//!     fn description(&self) -> &str { "Current weather for a city." }
//!     fn parameters(&self) -> serde_json::Value {
//!         serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
//!     }
//!     async fn call(&self, _cx: &ToolContext<'_>, args: serde_json::Value) -> Result<String, ToolError> {
//!         Ok(format!("{}: 21°C, clear", str_arg(&args, "city")?))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let topology = TopologyBuilder::new("weather-desk")
//!     .model("house", ModelSpec::custom(Price::per_million_tokens(NanoUsd::parse_usd("0.50")?, NanoUsd::parse_usd("1.50")?)))
//!     .tool("weather", ToolSpec::custom())
//!     .agent("desk", AgentSpec::new(["house"]).tools(["weather"]))
//!     .build()?;
//! // A model of your own: anything that implements `Model`. Here, a scripted one.
//! let model = ScriptedModel::always("house", "Sunny enough.");
//! let runtime = Runtime::builder(topology).model("house", model).tool(Weather).start().await?;
//! let report = runtime.run("Weather in Lisbon?").await?;
//! assert_eq!(report.outcome, Outcome::Completed);
//! assert_eq!(report.totals.cost_nanousd, report.agents.iter().map(|a| a.cost_nanousd).sum::<u64>());
//! runtime.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See `examples/custom_tool.rs` for a model that calls the tool, and `examples/topologies/` for
//! topology files. The crates underneath:
//!
//! | crate | owns |
//! |---|---|
//! | [`core`] (`baton-core`) | money, usage, budgets, the ledger, envelopes, the `Model` and `Tool` traits, the scripted model, built-in tools |
//! | [`topologies`] (`baton-topologies`) | the topology format, validation, the petgraph model, the builder |
//! | [`actors`] (`baton-actors`) | the ractor runtime: conductor, agents, delegation, reports |

pub mod metrics;

pub use baton_actors as actors;
pub use baton_core as core;
pub use baton_topologies as topologies;
pub use serde_json;

/// The names most programs need.
pub mod prelude {
    pub use baton_actors::{
        ApprovalDecision, ApprovalRequest, Approver, Event, Observer, RunReport, Runtime,
        RuntimeBuilder, RuntimeError, TaskHandle,
    };
    pub use baton_core::{
        Budget, Effect, Message, Model, ModelError, ModelRequest, ModelResponse, NanoUsd, Outcome,
        Price, Role, ScriptedModel, TaskId, TokenUsage, Tool, ToolCall, ToolContext, ToolError,
        Usd, async_trait, opt_str_arg, parse_args, schema_for, str_arg,
    };
    pub use baton_topologies::{
        AgentSpec, BudgetSpec, ModelSpec, PolicySpec, ToolSpec, Topology, TopologyBuilder,
        TopologyError,
    };
}
