//! The topology file format: serde types, one per section. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::serde_helpers::duration_opt;
use baton_core::{FaultSpec, NanoUsd, Usd};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Model declarations (`models:`) in their own file.
mod models;
mod percent;
// Standing loops (`schedules:`) in their own file.
mod schedules;
// The scoreboard's keys (`value:`, `energy:`, `context:`).
mod score;
// Agents (`agents:`, `templates:`) in their own file.
mod agents;
pub use agents::AgentSpec;
pub use models::{ModelSpec, PriceSpec, Provider, RetrySpec, Tier};
use percent::{min_confidence_pct, quality_bar_pct, quality_pct};
pub use schedules::{BreakerSpec, OnInterrupted, Overlap, ScheduleSpec};
pub use score::{AnswerValueSpec, ContextSpec, EnergySpec, ValueSpec};

/// A whole topology file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// MCP servers by name: their tools are offered to the agents that list the server (all its
    /// tools) or one of them (`<server>__<tool>`) under `tools:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, McpServerSpec>,
    /// Reusable agent settings, named; agents inherit them with `extends:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, AgentSpec>,
    /// Agents by name.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSpec>,
    /// How the conductor supervises the root agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<SupervisionSpec>,
    /// What agents may do with tools, checked by the harness before every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    /// Standing loops: tasks given to the root agent on a schedule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<String, ScheduleSpec>,
    /// Money for every task the topology runs together (`baton serve`'s submitted tasks, a
    /// `baton run --tasks` batch): a total and per-period limits, enforced by the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<TopologyBudgetSpec>,
    /// How energy is figured: the CPU's watts per core, the data centres' PUE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergySpec>,
    /// Where the topology's `budget:` is kept when several processes share it (replicas of
    /// `baton serve`, batches run side by side): absent, each process keeps its own. The
    /// command line's `--ledger` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSpec>,
}

/// A shared ledger (`ledger:`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerSpec {
    /// A PostgreSQL URL (`postgres://user@host:5432/db?sslmode=require`), usually a reference to
    /// the environment (`"${DATABASE_URL}"`): a password may not be written inline.
    pub postgres: String,
}

/// The topology's own budget: limits on the tasks it runs, all together. Each task draws from
/// it (its reservations count against what is left), so concurrent tasks cannot overspend it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologyBudgetSpec {
    /// Money in total, for as long as the process runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<Usd>,
    /// Money per hour (counted from the start), inside the day's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd_per_hour: Option<Usd>,
    /// Money per 24-hour period (counted from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd_per_day: Option<Usd>,
}

/// The harness's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Role name → the tools an agent with that role may call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Windows during which destructive calls are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeSpec>,
    /// Destructive calls must first run with `dry_run: true` and the same arguments (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_first: Option<bool>,
    /// Destructive calls need a human's approval (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<bool>,
    /// How long an approval may take before it counts as denied (default `5m`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub approval_timeout: Option<Duration>,
}

/// A change-freeze window (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    /// Start, like `2026-12-20T00:00:00Z`.
    pub from: String,
    /// End (exclusive).
    pub to: String,
    /// Why, shown with a denial.
    #[serde(default)]
    pub reason: String,
    /// Refuse dry runs too (default false: during a freeze a dry run of a tool that supports
    /// them changes nothing, and is allowed and recorded as such).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_dry_runs: bool,
}

/// How a supervisor reacts when one of its children stops (OTP's strategies).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that stopped.
    #[default]
    OneForOne,
    /// Stop every other running child, then restart them all in start order.
    OneForAll,
    /// Stop the children started after the one that stopped, then restart it and them in order.
    RestForOne,
}

/// When a stopped child is restarted (OTP's restart types).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always.
    #[default]
    Permanent,
    /// Only after a crash, not after a normal stop.
    Transient,
    /// Never: once stopped, it stays stopped.
    Temporary,
}

/// What happens to the task an agent held when it crashed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnCrash {
    /// The task ends `failed`.
    #[default]
    Fail,
    /// The task is retried once on the restarted agent (money already spent stays spent).
    Retry,
}

/// What a supervisor does with a child whose task exceeds its budget.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetAction {
    /// Stop the child; its task ends `budget_exceeded`.
    #[default]
    CutOff,
    /// Hand the rest of the task, with what is left of its budget, to a cheaper model on the
    /// child's ladder (below its `quality_bar`), else to its `fallback` agent.
    Reroute,
}

/// When an agent's actor starts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// On its first task (a declared agent costs only its spec until then).
    #[default]
    Lazy,
    /// With its supervisor.
    Eager,
}

/// Supervision settings of an agent for its children (or, at the top level, of the conductor for
/// the root agent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSpec {
    /// The restart strategy (default `one_for_one`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// At most this many restarts ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// ... within this window (`5s`), else the supervisor gives up and escalates.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub within: Option<Duration>,
    /// How long a stopping child may take before it is killed.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub shutdown: Option<Duration>,
}

/// Where an agent's data may be sent.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Any model on the ladder, until a `sensitive` tool's output enters the task's transcript
    /// (from then on, local models only).
    #[default]
    Any,
    /// Local models only (`tier: local`: embedded, or an endpoint on your own hardware), from the
    /// first step, for the agent's tasks and what they delegate.
    LocalOnly,
}

/// What becomes of a local-tier reply without probabilities when the agent has `min_confidence`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissingConfidence {
    /// Set aside (paid for) and the step goes one rung up, as for low confidence.
    #[default]
    Escalate,
    /// Used as if it were confident enough.
    Accept,
    /// The task ends `failed`.
    Fail,
}

/// What becomes of a tool call cut at the model's `max_output_tokens`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Truncated {
    /// Asked again one rung up (the cut reply is paid for and set aside); at the top, used.
    #[default]
    Escalate,
    /// Used as it is (marked truncated in the log and the audit).
    Accept,
    /// The task ends `failed`.
    Fail,
}

/// Built-in tool implementations.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// [`baton_core::tools::MetricsSeries`]: `path` is a folder of `<series>.csv`.
    MetricsSeries,
    /// [`baton_core::tools::LogSearch`]: `path` is a log file.
    LogSearch,
    /// [`baton_core::tools::Codeowners`]: `path` is a CODEOWNERS file.
    Codeowners,
    /// [`baton_core::tools::Chaos`]: a tool that fails at the rates of its `faults`.
    Chaos,
    /// [`baton_core::tools::RestartService`]: a simulated, destructive service restart that
    /// honours `dry_run` (for examples and rehearsals of the policy).
    RestartService,
    /// [`baton_core::tools::ReadFile`]: reads text files inside the folder `path`, nothing
    /// outside it.
    ReadFile,
    /// [`baton_core::tools::ListDir`]: lists folders inside the folder `path`, nothing outside
    /// it.
    ListDir,
    /// [`baton_core::tools::Shell`]: runs the programs in `allow`, without a shell, with a
    /// `timeout`; `dry_run` runs nothing. Destructive unless `effect` says otherwise.
    Shell,
    /// `baton_providers::tools::HttpGet`: GET from the hosts in `allow` only (redirects included).
    HttpGet,
    /// A tool implemented in code and registered with the runtime under this tool's name.
    Custom,
}

/// An MCP server: a program speaking MCP on stdio (`command`) or a streamable HTTP endpoint
/// (`url`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// The program to start (looked up on `PATH`, or a path relative to the topology file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables for it; secrets by reference (`${GITHUB_TOKEN}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Its working directory, relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// A streamable HTTP endpoint (`http://127.0.0.1:3001/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Extra HTTP headers; credentials by reference (`Authorization: Bearer ${MCP_TOKEN}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The server's tools to offer (default: all it lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// The effect of its tools (default: destructive, or from each tool's MCP annotations when
    /// `trust_annotations` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<baton_core::Effect>,
    /// Take its tools' effects from their MCP annotations (`readOnlyHint`, `destructiveHint`)
    /// where `effect`/`effects` say nothing (default false: a server's claims are hints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_annotations: Option<bool>,
    /// `supported` when its tools honour `dry_run: true`; otherwise such a call is judged as
    /// the real one (default `unsupported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunSupport>,
    /// Effects of single tools, by the server's tool name (override `effect`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub effects: BTreeMap<String, baton_core::Effect>,
    /// Output of its tools longer than this many tokens is cut (default 4000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// How long one call of its tools may take (default `1m`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub timeout: Option<Duration>,
    /// How long starting it and listing its tools may take (default `30s`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub startup_timeout: Option<Duration>,
    /// Restarts of a stdio server that died allowed within `restart_window` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts` (default `1m`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub restart_window: Option<Duration>,
    /// Its tools' output is private (default false): as a tool's `sensitive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<bool>,
}

/// A tool declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// For `chaos`: the fault rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSpec>,
    /// What a call can change (`read`, `write`, `destructive`); overrides the tool's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<baton_core::Effect>,
    /// Output longer than this many tokens (about four characters each) is cut before it
    /// re-enters the context (default 4000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// For `shell`: the programs it may run; for `http_get`: the hosts it may fetch from
    /// (`api.example.com`, `127.0.0.1:8080`, `*.internal.example`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// How long one call may take (default `30s`); the harness abandons it then.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub timeout: Option<Duration>,
    /// `supported` when the tool honours `dry_run: true` (changes nothing): only then does such
    /// a call count as a dry run. Built-ins that do say so themselves; a custom tool's own
    /// `Tool::supports_dry_run` also counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunSupport>,
    /// For `shell`: the most bytes read of a program's stdout, and of its stderr (default 1 MiB);
    /// a program that writes more is stopped and the observation says its output was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Its output is private (default false): once one of its observations enters a task's
    /// transcript, the task (and what it delegates from then on) is served by `tier: local`
    /// models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<bool>,
}

/// Whether a tool honours `dry_run: true`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DryRunSupport {
    /// It changes nothing on a dry run and says what it would do.
    Supported,
    /// It may act on a dry run: such calls are judged as real ones.
    Unsupported,
}

impl ToolSpec {
    /// A built-in tool over `path`.
    pub fn builtin(kind: ToolKind, path: impl Into<PathBuf>) -> ToolSpec {
        ToolSpec {
            kind,
            path: Some(path.into()),
            description: None,
            faults: None,
            effect: None,
            max_output_tokens: None,
            allow: None,
            timeout: None,
            dry_run: None,
            max_output_bytes: None,
            sensitive: None,
        }
    }

    /// A tool implemented in code.
    pub fn custom() -> ToolSpec {
        ToolSpec {
            kind: ToolKind::Custom,
            path: None,
            description: None,
            faults: None,
            effect: None,
            max_output_tokens: None,
            allow: None,
            timeout: None,
            dry_run: None,
            max_output_bytes: None,
            sensitive: None,
        }
    }
}

/// Limits on each task an agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub max_wall: Option<Duration>,
}

impl BudgetSpec {
    /// A budget of `usd` dollars a task (a decimal string: `"0.01"`; exact, no floating point).
    ///
    /// ```
    /// # fn demo() -> Result<(), baton_core::Error> {
    /// let budget = baton_topologies::BudgetSpec::usd("0.01")?.max_steps(6);
    /// assert_eq!(budget.max_usd.map(|u| u.0.0), Some(10_000_000));
    /// assert_eq!(budget.max_steps, Some(6));
    /// assert!(baton_topologies::BudgetSpec::usd("-1").is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When `usd` is not a non-negative decimal amount.
    pub fn usd(usd: &str) -> Result<BudgetSpec, baton_core::Error> {
        Ok(BudgetSpec {
            max_usd: Some(Usd(NanoUsd::parse_usd(usd)?)),
            ..BudgetSpec::default()
        })
    }

    /// Sets the loop iterations a task may take.
    pub fn max_steps(mut self, steps: u32) -> BudgetSpec {
        self.max_steps = Some(steps);
        self
    }

    /// Sets the input + output tokens a task may use.
    pub fn max_tokens(mut self, tokens: u64) -> BudgetSpec {
        self.max_tokens = Some(tokens);
        self
    }

    /// Sets the wall-clock time a task may take.
    pub fn max_wall(mut self, wall: Duration) -> BudgetSpec {
        self.max_wall = Some(wall);
        self
    }
}

fn is_default_budget(b: &BudgetSpec) -> bool {
    *b == BudgetSpec::default()
}
