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
//! topology files.
//!
//! # Serving many requests
//!
//! A [`Runtime`](actors::Runtime) is a cheap `Clone` handle: give one to every request handler.
//! Each task runs on its own (its agent's actor hands it to a worker of its own, up to the agent's
//! `max_concurrency`), so a task waiting on a slow model never holds up another; one ledger
//! enforces every budget across all of them. [`Runtime::spawn`](actors::Runtime::spawn) returns a
//! [`TaskHandle`](actors::TaskHandle) at once — its id, `cancel()`, and `.await` for the report;
//! [`Runtime::spawn_with`](actors::Runtime::spawn_with) opens the task's account under a parent
//! [`Account`](core::Account), so that a service-wide budget caps every request together (as
//! `baton serve` does). Observers see every task's events, each tagged with its `root` task.
//!
//! ```
//! use baton::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let topology = TopologyBuilder::new("t")
//! #     .model("m", ModelSpec::custom(Price::per_million_tokens(NanoUsd(1), NanoUsd(1))))
//! #     .agent("desk", AgentSpec::new(["m"]))
//! #     .build()?;
//! // A model that takes 50 ms a call.
//! let model = ScriptedModel::always("m", "ok").with_latency(std::time::Duration::from_millis(50));
//! let runtime = Runtime::builder(topology).model("m", model).start().await?;
//! let started = tokio::time::Instant::now();
//! let handles: Vec<TaskHandle> = (0..100).map(|i| runtime.spawn(format!("request {i}"))).collect();
//! for handle in handles {
//!     assert_eq!(handle.await?.outcome, Outcome::Completed);
//! }
//! // A hundred waits overlap: 50 ms in all, not 5 s.
//! assert!(started.elapsed() < std::time::Duration::from_millis(100));
//! runtime.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `mimalloc` | yes | the `baton` binary allocates with mimalloc (many tasks on every worker thread) |
//! | `local` | no | `provider: local`: a GGUF model run in-process by llama.cpp (builds llama.cpp: needs cmake and clang) |
//! | `otel` | no | spans exported over OTLP (OpenTelemetry) when an OTLP endpoint is set in the environment |
//!
//! The crates underneath:
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
