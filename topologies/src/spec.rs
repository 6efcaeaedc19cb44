//! The topology file format: serde types, one per section. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::{NanoUsd, Usd, duration_opt};
use serde::{Deserialize, Serialize};

/// Default completion-token ceiling per call when a model does not set `max_output_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1024;
/// Default loop-iteration ceiling when an agent's budget does not set `max_steps`: a runaway agent
/// always stops.
pub const DEFAULT_MAX_STEPS: u32 = 16;

/// A whole topology file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// A name for reports and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent that receives tasks; by default the one agent that is nobody's child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Models by name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// Tools by name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSpec>,
    /// Agents by name.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSpec>,
}

/// Which implementation answers a model's calls.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The offline, rule-driven model (needs `rules`).
    Scripted,
    /// A model implemented in code and registered with the runtime under the model's name.
    Custom,
}

/// A model declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Who answers.
    pub provider: Provider,
    /// For `scripted`: the rules file, relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// For `scripted`: overrides the rules file's default latency.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency: Option<Duration>,
    /// Dollars per million tokens.
    pub price: PriceSpec,
    /// Completion-token ceiling per call (also what a call reserves for its output).
    #[serde(
        default = "default_max_output",
        skip_serializing_if = "is_default_max_output"
    )]
    pub max_output_tokens: u32,
}

fn default_max_output() -> u32 {
    DEFAULT_MAX_OUTPUT_TOKENS
}

fn is_default_max_output(v: &u32) -> bool {
    *v == DEFAULT_MAX_OUTPUT_TOKENS
}

impl ModelSpec {
    /// A scripted model reading `rules`, priced in dollars per million input and output tokens.
    pub fn scripted(rules: impl Into<PathBuf>, input: NanoUsd, output: NanoUsd) -> ModelSpec {
        ModelSpec {
            provider: Provider::Scripted,
            rules: Some(rules.into()),
            latency: None,
            price: PriceSpec::per_mtok(input, output),
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
        }
    }

    /// A model implemented in code, registered with the runtime under this model's name.
    pub fn custom(input: NanoUsd, output: NanoUsd) -> ModelSpec {
        ModelSpec {
            provider: Provider::Custom,
            rules: None,
            latency: None,
            price: PriceSpec::per_mtok(input, output),
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
        }
    }

    /// Sets the completion-token ceiling.
    pub fn max_output_tokens(mut self, n: u32) -> ModelSpec {
        self.max_output_tokens = n;
        self
    }
}

/// Prices in dollars per million tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Uncached input tokens.
    pub input: Usd,
    /// Output tokens.
    pub output: Usd,
    /// Cached input tokens (defaults to the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
}

impl PriceSpec {
    /// Input and output prices per million tokens.
    pub fn per_mtok(input: NanoUsd, output: NanoUsd) -> PriceSpec {
        PriceSpec {
            input: Usd(input),
            output: Usd(output),
            cached_input: None,
        }
    }
}

/// Built-in tool implementations.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// [`baton_core::tools::MetricsSeries`]: `path` is a folder of `<series>.csv`.
    MetricsSeries,
    /// [`baton_core::tools::LogSearch`]: `path` is a log file.
    LogSearch,
    /// [`baton_core::tools::Codeowners`]: `path` is a CODEOWNERS file.
    Codeowners,
    /// A tool implemented in code and registered with the runtime under this tool's name.
    Custom,
}

/// A tool declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Which implementation.
    pub kind: ToolKind,
    /// The file or folder a built-in reads, relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Replaces the built-in description the model sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ToolSpec {
    /// A built-in tool over `path`.
    pub fn builtin(kind: ToolKind, path: impl Into<PathBuf>) -> ToolSpec {
        ToolSpec {
            kind,
            path: Some(path.into()),
            description: None,
        }
    }

    /// A tool implemented in code.
    pub fn custom() -> ToolSpec {
        ToolSpec {
            kind: ToolKind::Custom,
            path: None,
            description: None,
        }
    }
}

/// Limits on each task an agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Money per task, in dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<Usd>,
    /// Input + output tokens per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Loop iterations per task (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Wall-clock time per task (`30s`, `5m`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wall: Option<Duration>,
}

/// An agent declaration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// What the agent is for (shown to its parent in the `delegate` tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The model ladder, cheapest first.
    #[serde(default)]
    pub models: Vec<String>,
    /// Tools the agent may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Agents it supervises and may delegate to, in start order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Limits per task.
    #[serde(default, skip_serializing_if = "is_default_budget")]
    pub budget: BudgetSpec,
}

fn is_default_budget(b: &BudgetSpec) -> bool {
    *b == BudgetSpec::default()
}

impl AgentSpec {
    /// An agent with a model ladder.
    pub fn new<S: Into<String>>(models: impl IntoIterator<Item = S>) -> AgentSpec {
        AgentSpec {
            models: models.into_iter().map(Into::into).collect(),
            ..AgentSpec::default()
        }
    }

    /// Sets the tools.
    pub fn tools<S: Into<String>>(mut self, tools: impl IntoIterator<Item = S>) -> AgentSpec {
        self.tools = tools.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the children.
    pub fn children<S: Into<String>>(mut self, children: impl IntoIterator<Item = S>) -> AgentSpec {
        self.children = children.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the system prompt.
    pub fn system(mut self, prompt: impl Into<String>) -> AgentSpec {
        self.system = Some(prompt.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> AgentSpec {
        self.description = Some(text.into());
        self
    }

    /// Sets the per-task budget.
    pub fn budget(mut self, budget: BudgetSpec) -> AgentSpec {
        self.budget = budget;
        self
    }
}
