//! Building a topology in code: the same spec a file holds, through the same validation.

use std::path::{Path, PathBuf};

use crate::error::TopologyError;
use crate::spec::{AgentSpec, ModelSpec, ToolSpec, TopologySpec};
use crate::topology::Topology;

/// Builds a [`Topology`] in code. It fills a [`TopologySpec`], exactly what a file deserializes to,
/// so a tree built here and the same tree written in YAML yield the same graph.
///
/// ```
/// use baton::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let price = Price::per_million_tokens(NanoUsd::parse_usd("3")?, NanoUsd::parse_usd("15")?);
/// let topology = TopologyBuilder::new("triage")
///     .model("frontier", ModelSpec::custom(price))
///     .tool("logs", ToolSpec::custom())
///     .agent("lead", AgentSpec::new(["frontier"]).children(["rca"]))
///     .agent("rca", AgentSpec::new(["frontier"]).tools(["logs"]))
///     .build()?; // validated as a file is: a typo is an error naming it
/// assert_eq!(topology.root(), topology.agent("lead").expect("declared"));
/// assert_eq!(topology.children(topology.root()), [topology.agent("rca").expect("declared")]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    spec: TopologySpec,
    base_dir: PathBuf,
}

impl TopologyBuilder {
    /// A new, empty topology named `name`. Relative paths resolve against the current directory
    /// unless [`base_dir`](Self::base_dir) says otherwise.
    pub fn new(name: impl Into<String>) -> TopologyBuilder {
        TopologyBuilder {
            spec: TopologySpec {
                name: Some(name.into()),
                ..TopologySpec::default()
            },
            base_dir: PathBuf::from("."),
        }
    }

    /// Where relative paths (rules files, fixtures) resolve from.
    pub fn base_dir(mut self, dir: impl AsRef<Path>) -> TopologyBuilder {
        self.base_dir = dir.as_ref().to_path_buf();
        self
    }

    /// Declares a model.
    pub fn model(mut self, name: impl Into<String>, model: ModelSpec) -> TopologyBuilder {
        self.spec.models.insert(name.into(), model);
        self
    }

    /// Declares a tool.
    pub fn tool(mut self, name: impl Into<String>, tool: ToolSpec) -> TopologyBuilder {
        self.spec.tools.insert(name.into(), tool);
        self
    }

    /// Declares an agent.
    pub fn agent(mut self, name: impl Into<String>, agent: AgentSpec) -> TopologyBuilder {
        self.spec.agents.insert(name.into(), agent);
        self
    }

    /// Sets the policy the harness applies to tool calls.
    pub fn policy(mut self, policy: crate::spec::PolicySpec) -> TopologyBuilder {
        self.spec.policy = Some(policy);
        self
    }

    /// Names the root agent (by default, the one agent without a parent).
    pub fn root(mut self, name: impl Into<String>) -> TopologyBuilder {
        self.spec.root = Some(name.into());
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] listing every problem.
    pub fn build(self) -> Result<Topology, TopologyError> {
        Topology::from_spec(self.spec, &self.base_dir)
    }
}
