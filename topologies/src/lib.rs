//! baton-topologies: the topology file format, its validation, and the petgraph model of an agent
//! hierarchy that the runtime spawns from.
//!
//! ```
//! use baton_topologies::{AgentSpec, ModelSpec, TopologyBuilder, ToolSpec};
//! use baton_core::NanoUsd;
//!
//! let topology = TopologyBuilder::new("demo")
//!     .model("small", ModelSpec::custom(baton_core::Price::per_million_tokens(NanoUsd(150_000_000), NanoUsd(600_000_000))))
//!     .tool("lookup", ToolSpec::custom())
//!     .agent("lead", AgentSpec::new(["small"]).children(["helper"]))
//!     .agent("helper", AgentSpec::new(["small"]).tools(["lookup"]))
//!     .build()?;
//! assert_eq!(&*topology.graph()[topology.root()].name, "lead");
//! # Ok::<(), baton_topologies::TopologyError>(())
//! ```

mod builder;
mod cadence;
mod error;
mod locate;
mod mcp;
mod render;
mod secrets;
mod spec;
mod topology;

pub use builder::TopologyBuilder;
pub use cadence::{Cadence, CadenceError, CronSchedule};
pub use error::{Diagnostic, Severity, TopologyError, render_diagnostics};
pub use mcp::{MCP_SEPARATOR, McpServerDef};
pub use render::{Detail, EffectOf, to_dot, to_dot_with, to_mermaid, to_mermaid_with};
pub use spec::{
    Activation, BreakerSpec, BudgetAction, FreezeSpec, McpServerSpec, MissingConfidence, OnCrash,
    OnInterrupted, Overlap, PolicySpec, Privacy, RestartType, RetrySpec, ScheduleSpec, Strategy,
    SupervisionSpec, Tier, Truncated,
};
pub use spec::{
    AgentSpec, BudgetSpec, DryRunSupport, ModelSpec, PriceSpec, Provider, ToolKind, ToolSpec,
    TopologyBudgetSpec, TopologySpec,
};
pub use spec::{AnswerValueSpec, ContextSpec, EnergySpec, ValueSpec};
pub use topology::{
    AgentNode, BreakerDef, DELEGATE_TOOL, Edge, LocalDef, ModelDef, PriceSource, RetryPolicy,
    ScheduleDef, Supervision, ToolDef, Topology, TopologyBudget, YAML_MAX_NODES, closest,
};
pub use topology::{ContextDef, EnergyDef, SizeSource, ValueDef};

/// Re-exported graph types, so users need not depend on petgraph directly.
pub use petgraph::graph::{DiGraph, NodeIndex};

/// The JSON Schema of the topology format (YAML and TOML share it), generated from the Rust types.
/// `schema/topology.schema.json` is this text; a test keeps them in sync.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(TopologySpec);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
