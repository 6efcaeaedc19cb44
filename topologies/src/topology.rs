//! The validated topology: the petgraph model the runtime spawns from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_core::{Budget, NanoUsd, Price};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::cadence::{Cadence, CadenceError, CronSchedule};
use crate::error::{Diagnostic, Severity, TopologyError};
use crate::locate::{Seg, locate, locate_toml};
use crate::mcp::McpServerDef;
use crate::spec::{
    Activation, AgentSpec, BudgetAction, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_PARALLEL_TOOLS,
    DEFAULT_MAX_RESTARTS, DEFAULT_MAX_STEPS, DEFAULT_MODEL_TIMEOUT, DEFAULT_QUEUE,
    DEFAULT_RESTART_WINDOW, DEFAULT_SHUTDOWN, MissingConfidence, ModelSpec, OnCrash, Provider,
    RestartType, Strategy, SupervisionSpec, ToolKind, ToolSpec, TopologySpec,
};
use crate::spec::{OnInterrupted, Overlap, Tier};
use baton_core::FaultSpec;
use baton_core::policy::Policy;

// The validator's checks by area, in `topology/`: children of this module, so they see the
// `Validator`'s state.
mod models;
mod policy;
mod schedules;
mod tools;

/// The name of the built-in tool through which an agent hands a sub-task to a child.
pub const DELEGATE_TOOL: &str = "delegate";

/// The kinds of edge between agents.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Edge {
    /// The source supervises the target (starts it, restarts it, stops it).
    Supervises,
    /// The source may hand tasks to the target through `delegate`.
    DelegatesTo,
    /// The target takes over the source's task when the source's budget runs out (`reroute`).
    FallsBackTo,
}

/// Supervision settings with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervision {
    /// The restart strategy.
    pub strategy: Strategy,
    /// At most this many restarts ...
    pub max_restarts: u32,
    /// ... within this window, else the supervisor gives up and escalates.
    pub within: Duration,
    /// How long a stopping child may take before it is killed.
    pub shutdown: Duration,
}

impl Supervision {
    fn from_spec(s: Option<&SupervisionSpec>) -> Supervision {
        let d = SupervisionSpec::default();
        let s = s.unwrap_or(&d);
        Supervision {
            strategy: s.strategy.unwrap_or_default(),
            max_restarts: s.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS),
            within: s.within.unwrap_or(DEFAULT_RESTART_WINDOW),
            shutdown: s.shutdown.unwrap_or(DEFAULT_SHUTDOWN),
        }
    }
}

/// An agent as the runtime sees it: its spec with defaults applied and names resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentNode {
    /// The agent's name.
    pub name: Arc<str>,
    /// Model names, cheapest first (all declared).
    pub ladder: Vec<Arc<str>>,
    /// Tool names (all declared).
    pub tools: Vec<Arc<str>>,
    /// The per-task budget, with `max_steps` defaulted.
    pub budget: Budget,
    /// The system prompt.
    pub system: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// How it supervises its children.
    pub supervision: Supervision,
    /// When its supervisor restarts it.
    pub restart: RestartType,
    /// What happens to its task when it crashes.
    pub on_crash: OnCrash,
    /// What its supervisor does when its task exceeds the budget.
    pub on_budget_exceeded: BudgetAction,
    /// The sibling that takes over on `reroute`.
    pub fallback: Option<Arc<str>>,
    /// When its actor starts.
    pub activation: Activation,
    /// The lowest model quality the router may use for it (0 = any).
    pub quality_bar: u8,
    /// The least confidence (percent) it accepts from a local-tier model.
    pub min_confidence: Option<u8>,
    /// What a local-tier reply without probabilities becomes under `min_confidence`.
    pub on_missing_confidence: crate::spec::MissingConfidence,
    /// What a tool call cut at `max_output_tokens` becomes.
    pub on_truncated: crate::spec::Truncated,
    /// Its role under the policy, if any.
    pub role: Option<Arc<str>>,
    /// How many tasks it runs at once.
    pub max_concurrency: u32,
    /// How many tasks may wait beyond `max_concurrency` before one is refused `busy`.
    pub queue: u32,
    /// The most tool calls of one reply that run at once (1 when `parallel_tool_calls: false`).
    pub max_parallel_tools: u32,
}

/// A model as the runtime sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDef {
    /// The model's name in the topology.
    pub name: Arc<str>,
    /// Who answers.
    pub provider: Provider,
    /// For `scripted`: the rules file, resolved against the topology's folder.
    pub rules: Option<PathBuf>,
    /// For `scripted`: a latency overriding the rules file's.
    pub latency: Option<Duration>,
    /// Price per million tokens.
    pub price: Price,
    /// Completion-token ceiling per call.
    pub max_output_tokens: u32,
    /// The most tokens one call can hold, if known.
    pub context_window: Option<u32>,
    /// Where it runs, if declared.
    pub tier: Option<Tier>,
    /// How good the model is, 0 to 100.
    pub quality: u8,
    /// How long a call may take.
    pub timeout: Duration,
    /// For `scripted`: random faults to inject.
    pub faults: Option<FaultSpec>,
    /// The provider's name for the model.
    pub wire_model: String,
    /// For HTTP providers: the base URL, if not the provider's default.
    pub endpoint: Option<String>,
    /// For HTTP providers: the API key reference (`${VAR}`), resolved when the runtime starts.
    pub api_key: Option<String>,
    /// For HTTP providers: stream replies.
    pub stream: bool,
    /// For HTTP providers: time to connect.
    pub connect_timeout: Duration,
    /// Retries of failed calls.
    pub retry: RetryPolicy,
    /// Where the price came from.
    pub price_source: PriceSource,
    /// For `openai`: the `tool_choice` sent with tools.
    pub tool_choice: baton_core::ToolChoice,
    /// For `openai`: how an assistant turn with tool calls and no text is sent.
    pub null_content: baton_core::NullContent,
    /// Whether the model's server returns token probabilities.
    pub logprobs: bool,
}

/// A standing loop, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDef {
    /// Its name.
    pub name: Arc<str>,
    /// When its runs start.
    pub cadence: Cadence,
    /// The task of each run.
    pub task: String,
    /// Limits per run.
    pub budget: Budget,
    /// Money per 24-hour period.
    pub per_day: Option<NanoUsd>,
    /// Money per hour, inside the day's.
    pub per_hour: Option<NanoUsd>,
    /// What a tick does while a run is going.
    pub overlap: Overlap,
    /// Random delay bound per run.
    pub jitter: Duration,
    /// The spend circuit breaker, if any.
    pub breaker: Option<BreakerDef>,
    /// What becomes of a run the process died in.
    pub on_interrupted: OnInterrupted,
}

/// A loop's spend circuit breaker, resolved (see [`crate::BreakerSpec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerDef {
    /// The sliding window over which spend is summed.
    pub window: Duration,
    /// Spend within the window that opens the breaker.
    pub max_cost: Option<NanoUsd>,
    /// A completed run costing more than this multiple of the recent median opens it.
    pub spike: Option<u32>,
    /// How long it stays open before a trial run.
    pub cool_down: Duration,
}

/// Retries with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited out.
    pub max_retry_after: Duration,
}

/// Where a model's price came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// The topology's `price:`.
    Topology,
    /// The built-in table ([`baton_core::prices`]).
    BuiltIn,
}

/// A tool as the runtime sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    /// The tool's name.
    pub name: Arc<str>,
    /// Which implementation.
    pub kind: ToolKind,
    /// The file or folder it reads, resolved against the topology's folder.
    pub path: Option<PathBuf>,
    /// A description overriding the built-in one.
    pub description: Option<String>,
    /// For `chaos`: the fault rates.
    pub faults: Option<FaultSpec>,
    /// An effect overriding the tool's own.
    pub effect: Option<baton_core::Effect>,
    /// Output longer than this many tokens is cut.
    pub max_output_tokens: u32,
    /// For `shell`: the programs it may run; for `http_get`: the hosts.
    pub allow: Vec<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// What the topology says of its dry runs (`None`: what the tool says).
    pub dry_run: Option<crate::spec::DryRunSupport>,
    /// For `shell`: the most bytes read of each of a program's output streams.
    pub max_output_bytes: Option<u64>,
}

/// A validated topology: agents in a petgraph graph with typed edges, and the models and tools they
/// use. Built from a file ([`Topology::from_path`]) or in code ([`crate::TopologyBuilder`]); both go
/// through the same validation and yield the same graph.
#[derive(Clone, Debug)]
pub struct Topology {
    name: String,
    spec: TopologySpec,
    base_dir: PathBuf,
    graph: DiGraph<AgentNode, Edge>,
    root: NodeIndex,
    index: HashMap<Arc<str>, NodeIndex>,
    models: BTreeMap<Arc<str>, ModelDef>,
    tools: BTreeMap<Arc<str>, ToolDef>,
    supervision: Supervision,
    warnings: Vec<Diagnostic>,
    file: PathBuf,
    text: Option<String>,
    policy: Policy,
    schedules: Vec<ScheduleDef>,
    mcp_servers: BTreeMap<Arc<str>, McpServerDef>,
}

/// The most YAML nodes a topology file may hold by default: a 100,000-agent fleet needs about
/// 1,000,000; the bound (with serde-saphyr's limits on aliases and anchors) stops YAML bombs.
pub const YAML_MAX_NODES: usize = 5_000_000;

/// [`YAML_MAX_NODES`], or `BATON_YAML_MAX_NODES` when set to a number.
fn yaml_max_nodes() -> usize {
    std::env::var("BATON_YAML_MAX_NODES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(YAML_MAX_NODES)
}

/// serde-saphyr's options with room for large fleets: nodes and events raised (its defaults stop
/// at 250,000 nodes, about 50,000 agents), aliases, anchors and depth left at their defaults.
fn yaml_options(max_nodes: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = max_nodes;
    budget.max_events = max_nodes.saturating_mul(4);
    budget.max_total_scalar_bytes = 512 << 20;
    serde_saphyr::options! { budget: Some(budget) }
}

impl Topology {
    /// Loads and validates a YAML topology file. Relative paths inside it resolve against its folder.
    ///
    /// # Errors
    /// [`TopologyError::Io`], [`TopologyError::Parse`] (with line and column), or
    /// [`TopologyError::Invalid`] listing every problem at once.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Self::from_toml_str(&text, path, &base)
        } else {
            Self::from_yaml_str(&text, path, &base)
        }
    }

    /// Parses and validates TOML text (the same schema as YAML); `file` names it in errors and
    /// `base_dir` resolves its paths.
    ///
    /// # Errors
    /// As [`Topology::from_path`], without the I/O.
    pub fn from_toml_str(
        text: &str,
        file: &Path,
        base_dir: &Path,
    ) -> Result<Topology, TopologyError> {
        let spec: TopologySpec = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            TopologyError::Parse {
                file: file.to_path_buf(),
                line,
                column,
                message: parse_message(e.message()),
                text: Some(text.to_string()),
            }
        })?;
        Self::build(spec, file, base_dir, Some(text), Format::Toml)
    }

    /// Parses and validates YAML text; `file` names it in errors and `base_dir` resolves its paths.
    ///
    /// # Errors
    /// As [`Topology::from_path`], without the I/O.
    pub fn from_yaml_str(
        text: &str,
        file: &Path,
        base_dir: &Path,
    ) -> Result<Topology, TopologyError> {
        let max_nodes = yaml_max_nodes();
        let spec: TopologySpec = serde_saphyr::from_str_with_options(text, yaml_options(max_nodes))
            .map_err(|e| {
                let (line, column) = e
                    .location()
                    .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
                let said = e.to_string();
                // (The budget error may come wrapped with its location: read it from the text.)
                let message = match said.find("budget breached: ") {
                    Some(at) => format!(
                        "the file is larger than a topology may be ({}): the bound is {max_nodes} YAML nodes and {} parser events, against YAML bombs (a 100,000-agent fleet needs about 1,000,000 nodes). Raise it with BATON_YAML_MAX_NODES, or write the file as TOML",
                        said[at + "budget breached: ".len()..].lines().next().unwrap_or(""),
                        max_nodes.saturating_mul(4)
                    ),
                    None => parse_message(&said),
                };
                TopologyError::Parse {
                    file: file.to_path_buf(),
                    line,
                    column,
                    message,
                    text: Some(text.to_string()),
                }
            })?;
        Self::build(spec, file, base_dir, Some(text), Format::Yaml)
    }

    /// Validates a spec built in code.
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] listing every problem.
    pub fn from_spec(spec: TopologySpec, base_dir: &Path) -> Result<Topology, TopologyError> {
        Self::build(spec, Path::new("<builder>"), base_dir, None, Format::Yaml)
    }

    fn build(
        spec: TopologySpec,
        file: &Path,
        base_dir: &Path,
        text: Option<&str>,
        format: Format,
    ) -> Result<Topology, TopologyError> {
        let mut v = Validator {
            text,
            format,
            diagnostics: Vec::new(),
            severity: Severity::Error,
        };
        let topo = v.check(&spec, base_dir);
        let policy = v.check_policy(&spec);
        let schedules = v.check_schedules(&spec);
        let mcp_servers = v.check_mcp(&spec, base_dir);
        v.diagnostics
            .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(0)));
        if v.diagnostics.iter().any(|d| d.severity == Severity::Error) || topo.is_none() {
            return Err(TopologyError::Invalid {
                file: file.to_path_buf(),
                diagnostics: v.diagnostics,
                text: text.map(str::to_string),
            });
        }
        let warnings = v.diagnostics;
        let spec_supervision = spec.supervision.clone();
        let (graph, root, index, models, tools) = topo.ok_or_else(|| TopologyError::Invalid {
            file: file.to_path_buf(),
            diagnostics: Vec::new(),
            text: None,
        })?;
        Ok(Topology {
            name: spec.name.clone().unwrap_or_else(|| {
                file.file_stem()
                    .map_or_else(|| "topology".into(), |s| s.to_string_lossy().into_owned())
            }),
            spec,
            base_dir: base_dir.to_path_buf(),
            graph,
            root,
            index,
            models,
            tools,
            supervision: Supervision::from_spec(spec_supervision.as_ref()),
            warnings,
            file: file.to_path_buf(),
            text: text.map(str::to_string),
            policy,
            schedules,
            mcp_servers,
        })
    }

    /// The MCP servers, by name.
    pub fn mcp_servers(&self) -> impl Iterator<Item = &McpServerDef> {
        self.mcp_servers.values()
    }

    /// The standing loops, in name order.
    pub fn schedules(&self) -> &[ScheduleDef] {
        &self.schedules
    }

    /// The harness's policy (empty when the topology declares none).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Legal but suspicious things found while validating.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The warnings, rendered like the compiler's.
    pub fn render_warnings(&self) -> String {
        crate::error::render_diagnostics(&self.file, self.text.as_deref(), &self.warnings)
    }

    /// The topology's name (its `name:` key, else the file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spec as written (or built).
    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// The folder relative paths resolve against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The agent graph.
    pub fn graph(&self) -> &DiGraph<AgentNode, Edge> {
        &self.graph
    }

    /// The agent that receives tasks.
    pub fn root(&self) -> NodeIndex {
        self.root
    }

    /// An agent's node by name.
    pub fn agent(&self, name: &str) -> Option<NodeIndex> {
        self.index.get(name).copied()
    }

    /// The agents `node` supervises, in start order.
    pub fn children(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.targets(node, Edge::Supervises)
    }

    /// The agents `node` may delegate to, in declaration order.
    pub fn delegates(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.targets(node, Edge::DelegatesTo)
    }

    fn targets(&self, node: NodeIndex, kind: Edge) -> Vec<NodeIndex> {
        let mut out: Vec<(usize, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .filter(|e| *e.weight() == kind)
            .map(|e| (e.id().index(), e.target()))
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// How the conductor supervises the root agent.
    pub fn supervision(&self) -> &Supervision {
        &self.supervision
    }

    /// The agent that takes over `node`'s tasks on `reroute`.
    pub fn fallback(&self, node: NodeIndex) -> Option<NodeIndex> {
        self.targets(node, Edge::FallsBackTo).first().copied()
    }

    /// A model by name.
    pub fn model(&self, name: &str) -> Option<&ModelDef> {
        self.models.get(name)
    }

    /// All models.
    pub fn models(&self) -> impl Iterator<Item = &ModelDef> {
        self.models.values()
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&ToolDef> {
        self.tools.get(name)
    }

    /// All tools.
    pub fn tools(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.values()
    }

    /// Replaces the root agent's money limit (the CLI's `--budget-usd`).
    pub fn set_root_budget(&mut self, max_cost: NanoUsd) {
        let root = self.root;
        self.graph[root].budget.max_cost = Some(max_cost);
    }
}

/// The parser's message without its own position prefix, with a did-you-mean for unknown keys.
fn parse_message(s: &str) -> String {
    let mut msg = s.lines().next().unwrap_or(s).trim();
    msg = msg.strip_prefix("error:").unwrap_or(msg).trim_start();
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        msg = after;
    }
    let mut out = msg.to_string();
    if let Some(rest) = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))
        && let Some((field, tail)) = rest.split_once('`')
    {
        let expected: Vec<String> = tail
            .split_once("expected one of ")
            .or_else(|| tail.split_once("expected "))
            .map(|(_, list)| {
                list.split(',')
                    .map(|n| n.trim().trim_matches('`').to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(hint) = did_you_mean(field, expected.iter()) {
            out.push_str(" (hint: ");
            out.push_str(&hint);
            out.push(')');
        }
    }
    out
}

type Built = (
    DiGraph<AgentNode, Edge>,
    NodeIndex,
    HashMap<Arc<str>, NodeIndex>,
    BTreeMap<Arc<str>, ModelDef>,
    BTreeMap<Arc<str>, ToolDef>,
);

#[derive(Copy, Clone)]
enum Format {
    Yaml,
    Toml,
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub(crate) struct Validator<'t> {
    text: Option<&'t str>,
    format: Format,
    diagnostics: Vec<Diagnostic>,
    severity: Severity,
}

impl Validator<'_> {
    pub(crate) fn report(&mut self, segs: &[Seg<'_>], message: String, hint: Option<String>) {
        let path = segs
            .iter()
            .map(|s| match s {
                Seg::Key(k) => (*k).to_string(),
                Seg::Item(i) => format!("[{i}]"),
            })
            .collect::<Vec<_>>()
            .join(".")
            .replace(".[", "[");
        let find = match self.format {
            Format::Yaml => locate,
            Format::Toml => locate_toml,
        };
        let at = self.text.and_then(|t| {
            find(t, segs).or_else(|| segs.len().checked_sub(1).and_then(|n| find(t, &segs[..n])))
        });
        let length = match segs.last() {
            Some(Seg::Key(k) | Seg::Item(k)) if at.is_some() => Some(k.len().max(1)),
            _ => None,
        };
        self.diagnostics.push(Diagnostic {
            severity: self.severity,
            path,
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            length,
            message,
            hint,
            redacted: false,
        });
    }

    /// Reports without showing the offending line (it may hold a secret).
    fn report_redacted(&mut self, segs: &[Seg<'_>], message: String, hint: Option<String>) {
        self.report(segs, message, hint);
        if let Some(d) = self.diagnostics.last_mut() {
            d.redacted = true;
        }
    }

    fn warn(&mut self, segs: &[Seg<'_>], message: String, hint: Option<String>) {
        self.severity = Severity::Warning;
        self.report(segs, message, hint);
        self.severity = Severity::Error;
    }

    fn check(&mut self, spec: &TopologySpec, base: &Path) -> Option<Built> {
        self.check_supervision(&[Seg::Key("supervision")], spec.supervision.as_ref());
        let models = self.check_models(&spec.models, base);
        let tools = self.check_tools(&spec.tools, base);
        if spec.agents.is_empty() {
            self.report(
                &[Seg::Key("agents")],
                "no agents declared".into(),
                Some("declare at least one agent under `agents:`".into()),
            );
            return None;
        }
        for (t, tpl) in &spec.templates {
            self.check_refs("templates", t, tpl, spec);
        }
        let agents = self.resolve_extends(spec);
        let mut graph: DiGraph<AgentNode, Edge> = DiGraph::new();
        let mut index: HashMap<Arc<str>, NodeIndex> = HashMap::new();
        for (name, own) in &spec.agents {
            let a = &agents[name];
            self.check_refs("agents", name, own, spec);
            if a.models.is_empty() {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key("models")],
                    format!("agent `{name}` has no model"),
                    Some(
                        "add `models: [<a model name>]`, or `extends:` a template that has them"
                            .into(),
                    ),
                );
            }
            self.check_supervision(
                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("supervision")],
                a.supervision.as_ref(),
            );
            if a.min_confidence.is_some_and(|q| q > 100) {
                self.report(
                    &[
                        Seg::Key("agents"),
                        Seg::Key(name),
                        Seg::Key("min_confidence"),
                    ],
                    "`min_confidence` is a percentage from 0 to 100".into(),
                    None,
                );
            }
            for (key, value) in [
                ("max_concurrency", a.max_concurrency),
                ("max_parallel_tools", a.max_parallel_tools),
            ] {
                if value == Some(0) {
                    self.report(
                        &[Seg::Key("agents"), Seg::Key(name), Seg::Key(key)],
                        format!("`{key}` must be at least 1"),
                        Some(format!("`{key}: 1` runs one at a time")),
                    );
                }
            }
            if a.quality_bar.is_some_and(|q| q > 100) {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key("quality_bar")],
                    "`quality_bar` is a score from 0 to 100".into(),
                    None,
                );
            }
            self.check_ladder(name, a, &models);
            let node = self.check_agent(name, a);
            let name: Arc<str> = Arc::clone(&node.name);
            index.insert(name, graph.add_node(node));
        }
        // Supervision edges: every child declared once, by one parent.
        let mut parent_of: HashMap<&str, &str> = HashMap::new();
        for (name, a) in &agents {
            for child in &a.children {
                let at = [
                    Seg::Key("agents"),
                    Seg::Key(name),
                    Seg::Key("children"),
                    Seg::Item(child),
                ];
                let Some(&c) = index.get(child.as_str()) else {
                    self.report(
                        &at,
                        format!("child `{child}` is not a declared agent"),
                        did_you_mean(child, agents.keys()),
                    );
                    continue;
                };
                if child == name {
                    self.report(&at, format!("agent `{name}` lists itself as a child"), None);
                    continue;
                }
                if let Some(prev) = parent_of.insert(child, name) {
                    self.report(
                        &at,
                        format!("agent `{child}` already has the parent `{prev}`; supervision must be a tree"),
                        Some("give each agent one parent; declare a second agent if two parents need one".into()),
                    );
                    continue;
                }
                let p = index[name.as_str()];
                graph.add_edge(p, c, Edge::Supervises);
                if a.delegates.as_ref().is_none_or(|d| d.contains(child)) {
                    graph.add_edge(p, c, Edge::DelegatesTo);
                } else {
                    self.warn(
                        &at,
                        format!("`{name}` supervises `{child}` but never delegates to it: `{child}` can never receive a task"),
                        Some(format!("add `{child}` to `delegates:`, or remove it")),
                    );
                }
            }
            for d in a.delegates.iter().flatten() {
                if !a.children.contains(d) {
                    self.report(
                        &[
                            Seg::Key("agents"),
                            Seg::Key(name),
                            Seg::Key("delegates"),
                            Seg::Item(d),
                        ],
                        format!("`{name}` delegates to `{d}`, which it does not supervise"),
                        Some(format!(
                            "delegation stays within supervision: list `{d}` under `children:` too"
                        )),
                    );
                }
            }
        }
        let root = self.find_root(spec, &index, &parent_of)?;
        // Every agent must be under the root (this also rules out supervision cycles).
        let mut seen = vec![false; graph.node_count()];
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n.index()], true) {
                continue;
            }
            stack.extend(
                graph
                    .edges_directed(n, Direction::Outgoing)
                    .map(|e| e.target()),
            );
        }
        for (name, &n) in &index {
            if !seen[n.index()] {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name)],
                    format!("agent `{name}` is not under the root `{}` (a second root, or a supervision cycle)", graph[root].name),
                    Some("list it under `children:` of an agent beneath the root".into()),
                );
            }
        }
        // A child's money limit cannot exceed its parent's.
        for (child, parent) in &parent_of {
            let (c, p) = (&agents[*child], &agents[*parent]);
            if let (Some(cm), Some(pm)) = (c.budget.max_usd, p.budget.max_usd)
                && cm > pm
            {
                self.report(
                    &[
                        Seg::Key("agents"),
                        Seg::Key(child),
                        Seg::Key("budget"),
                        Seg::Key("max_usd"),
                    ],
                    format!(
                        "budget {} is larger than its parent `{parent}`'s {}",
                        cm.0, pm.0
                    ),
                    Some("a child only ever spends out of its parent's budget; lower it".into()),
                );
            }
        }
        // Fallbacks: declared, a sibling (delegation stays within what supervision allows), no cycles.
        for (name, a) in &agents {
            let at = [Seg::Key("agents"), Seg::Key(name), Seg::Key("fallback")];
            if a.on_budget_exceeded == Some(BudgetAction::Reroute)
                && a.fallback.is_none()
                && a.quality_bar.unwrap_or(0) == 0
            {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key("on_budget_exceeded")],
                    format!("agent `{name}` reroutes but has nowhere to go"),
                    Some("set `fallback:` to a sibling agent, or a `quality_bar` with cheaper models below it on the ladder".into()),
                );
            }
            let Some(fb) = &a.fallback else { continue };
            let Some(&f) = index.get(fb.as_str()) else {
                self.report(
                    &at,
                    format!("fallback `{fb}` is not a declared agent"),
                    did_you_mean(fb, agents.keys()),
                );
                continue;
            };
            if fb == name {
                self.report(&at, format!("agent `{name}` is its own fallback"), None);
                continue;
            }
            match (parent_of.get(name.as_str()), parent_of.get(fb.as_str())) {
                (Some(p), Some(q)) if p == q => {}
                (Some(p), q) => {
                    // A fallback is a sibling: name the ones there are, rather than suggest
                    // moving an agent under its own child or away from its supervisor.
                    let mut siblings: Vec<&str> = parent_of
                        .iter()
                        .filter(|(c, pp)| *pp == p && **c != name.as_str())
                        .map(|(c, _)| *c)
                        .collect();
                    siblings.sort_unstable();
                    let hint = match (q, siblings.is_empty()) {
                        (_, false) => format!(
                            "a fallback is a sibling under `{p}`: one of {}",
                            siblings
                                .iter()
                                .map(|s| format!("`{s}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        (Some(q), true) => format!(
                            "`{fb}` is supervised by `{q}`, and `{name}` has no sibling under `{p}` to reroute to: add one to `{p}`'s `children:`"
                        ),
                        (None, true) => format!(
                            "`{name}` has no sibling under `{p}`: add one to `{p}`'s `children:` and name it here"
                        ),
                    };
                    self.report(
                        &at,
                        format!(
                            "fallback `{fb}` is not a child of `{p}`, which supervises `{name}`"
                        ),
                        Some(hint),
                    );
                    continue;
                }
                (None, _) => {
                    self.report(
                        &at,
                        format!("the root agent `{name}` has no supervisor to reroute through"),
                        None,
                    );
                    continue;
                }
            }
            graph.add_edge(index[name.as_str()], f, Edge::FallsBackTo);
        }
        for (name, a) in &agents {
            // Follow the fallback chain; coming back to the start is a cycle.
            let mut seen = vec![name.as_str()];
            let mut cur = a.fallback.as_deref();
            while let Some(next) = cur {
                if next == name {
                    self.report(
                        &[Seg::Key("agents"), Seg::Key(name), Seg::Key("fallback")],
                        format!("fallback cycle: {} -> {next}", seen.join(" -> ")),
                        Some("a fallback chain must end at an agent without `fallback:`".into()),
                    );
                    break;
                }
                if seen.contains(&next) {
                    break;
                }
                seen.push(next);
                cur = agents.get(next).and_then(|x| x.fallback.as_deref());
            }
        }
        Some((graph, root, index, models, tools))
    }

    fn find_root(
        &mut self,
        spec: &TopologySpec,
        index: &HashMap<Arc<str>, NodeIndex>,
        parent_of: &HashMap<&str, &str>,
    ) -> Option<NodeIndex> {
        if let Some(r) = &spec.root {
            let Some(&n) = index.get(r.as_str()) else {
                self.report(
                    &[Seg::Key("root")],
                    format!("root `{r}` is not a declared agent"),
                    did_you_mean(r, spec.agents.keys()),
                );
                return None;
            };
            if let Some(p) = parent_of.get(r.as_str()) {
                self.report(
                    &[Seg::Key("root")],
                    format!("root `{r}` is a child of `{p}`"),
                    None,
                );
            }
            return Some(n);
        }
        let roots: Vec<&String> = spec
            .agents
            .keys()
            .filter(|a| !parent_of.contains_key(a.as_str()))
            .collect();
        match roots.as_slice() {
            [one] => Some(index[one.as_str()]),
            [] => {
                self.report(
                    &[Seg::Key("agents")],
                    "every agent is someone's child: supervision has a cycle".into(),
                    None,
                );
                None
            }
            many => {
                let names = many
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.report(
                    &[Seg::Key("root")],
                    format!("several agents have no parent ({names}); which one receives tasks?"),
                    Some("set `root:` or list the others under `children:`".into()),
                );
                None
            }
        }
    }

    /// Checks the names an agent or template lists itself (inherited lists were checked where
    /// they were written).
    fn check_refs(
        &mut self,
        section: &'static str,
        name: &str,
        a: &AgentSpec,
        spec: &TopologySpec,
    ) {
        for m in &a.models {
            if !spec.models.contains_key(m) {
                self.report(
                    &[
                        Seg::Key(section),
                        Seg::Key(name),
                        Seg::Key("models"),
                        Seg::Item(m),
                    ],
                    format!("model `{m}` is not declared under `models:`"),
                    did_you_mean(m, spec.models.keys()),
                );
            }
        }
        for t in &a.tools {
            if t == DELEGATE_TOOL {
                self.report(
                    &[
                        Seg::Key(section),
                        Seg::Key(name),
                        Seg::Key("tools"),
                        Seg::Item(t),
                    ],
                    "`delegate` is built in: every agent with children has it".into(),
                    Some("remove it from `tools:`; list the agents under `children:`".into()),
                );
            } else if !spec.tools.contains_key(t) && !crate::mcp::resolves(spec, t) {
                let at = [
                    Seg::Key(section),
                    Seg::Key(name),
                    Seg::Key("tools"),
                    Seg::Item(t),
                ];
                match crate::mcp::offered(spec, t) {
                    Some((server, tool, offered)) => self.report(
                        &at,
                        format!("MCP server `{server}` does not offer `{tool}`"),
                        Some(format!("its `tools:` offers: {}", offered.join(", "))),
                    ),
                    None => self.report(
                        &at,
                        format!("tool `{t}` is not declared under `tools:` or `mcp_servers:`"),
                        did_you_mean(t, spec.tools.keys().chain(spec.mcp_servers.keys())),
                    ),
                }
            }
        }
        if section == "templates" && (!a.children.is_empty() || a.delegates.is_some()) {
            self.report(
                &[
                    Seg::Key(section),
                    Seg::Key(name),
                    Seg::Key(if a.children.is_empty() {
                        "delegates"
                    } else {
                        "children"
                    }),
                ],
                "templates cannot have children or delegates: supervision must stay a tree".into(),
                Some("declare children on each agent".into()),
            );
        }
    }

    /// Applies `extends:` chains; reports unknown templates and cycles.
    fn resolve_extends(&mut self, spec: &TopologySpec) -> BTreeMap<String, AgentSpec> {
        for (t, tpl) in &spec.templates {
            let mut seen = vec![t.as_str()];
            let mut next = tpl.extends.as_deref();
            while let Some(n) = next {
                let at = [Seg::Key("templates"), Seg::Key(t), Seg::Key("extends")];
                if n == t {
                    self.report(
                        &at,
                        format!("template cycle: {} -> {n}", seen.join(" -> ")),
                        None,
                    );
                    break;
                }
                if seen.contains(&n) {
                    break;
                }
                seen.push(n);
                match spec.templates.get(n) {
                    Some(x) => next = x.extends.as_deref(),
                    None => {
                        if seen.len() == 2 {
                            self.report(
                                &at,
                                format!("template `{n}` is not declared under `templates:`"),
                                did_you_mean(n, spec.templates.keys()),
                            );
                        }
                        break;
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (name, a) in &spec.agents {
            let mut cur = a.clone();
            let mut seen: Vec<&str> = Vec::new();
            let mut next = a.extends.as_deref();
            while let Some(n) = next {
                if seen.contains(&n) {
                    break;
                }
                seen.push(n);
                match spec.templates.get(n) {
                    Some(tpl) => {
                        cur = cur.inherit(tpl);
                        next = tpl.extends.as_deref();
                    }
                    None => {
                        if seen.len() == 1 {
                            self.report(
                                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("extends")],
                                format!("template `{n}` is not declared under `templates:`"),
                                did_you_mean(n, spec.templates.keys()),
                            );
                        }
                        break;
                    }
                }
            }
            cur.extends = None;
            out.insert(name.clone(), cur);
        }
        out
    }

    fn check_agent(&mut self, name: &str, a: &AgentSpec) -> AgentNode {
        let b = &a.budget;
        let budget_at = |k: &'static str| {
            [
                Seg::Key("agents"),
                Seg::Key(name),
                Seg::Key("budget"),
                Seg::Key(k),
            ]
        };
        if b.max_usd.is_some_and(|u| u.0 == NanoUsd::ZERO) {
            self.report(
                &budget_at("max_usd"),
                "a zero budget can never run".into(),
                Some("remove `max_usd` for no limit of its own".into()),
            );
        }
        if b.max_tokens == Some(0) {
            self.report(
                &budget_at("max_tokens"),
                "a zero token budget can never run".into(),
                None,
            );
        }
        if b.max_steps == Some(0) {
            self.report(
                &budget_at("max_steps"),
                "`max_steps` must be at least 1".into(),
                None,
            );
        }
        if b.max_wall.is_some_and(|w| w.is_zero()) {
            self.report(
                &budget_at("max_wall"),
                "`max_wall` must be longer than zero".into(),
                None,
            );
        }
        AgentNode {
            name: name.into(),
            ladder: a.models.iter().map(|m| Arc::from(m.as_str())).collect(),
            tools: a.tools.iter().map(|t| Arc::from(t.as_str())).collect(),
            budget: Budget {
                max_cost: b.max_usd.map(|u| u.0),
                max_tokens: b.max_tokens,
                max_steps: Some(b.max_steps.unwrap_or(DEFAULT_MAX_STEPS)),
                max_wall: b.max_wall,
            },
            system: a.system.clone(),
            description: a.description.clone(),
            supervision: Supervision::from_spec(a.supervision.as_ref()),
            restart: a.restart.unwrap_or_default(),
            on_crash: a.on_crash.unwrap_or_default(),
            on_budget_exceeded: a.on_budget_exceeded.unwrap_or_default(),
            fallback: a.fallback.as_deref().map(Arc::from),
            activation: a.activation.unwrap_or_default(),
            quality_bar: a.quality_bar.unwrap_or(0),
            min_confidence: a.min_confidence,
            on_missing_confidence: a.on_missing_confidence.unwrap_or_default(),
            on_truncated: a.on_truncated.unwrap_or_default(),
            role: a.role.as_deref().map(Arc::from),
            max_concurrency: a.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            queue: a.queue.unwrap_or(DEFAULT_QUEUE),
            max_parallel_tools: match a.parallel_tool_calls {
                Some(false) => 1,
                _ => a.max_parallel_tools.unwrap_or(DEFAULT_MAX_PARALLEL_TOOLS),
            },
        }
    }

    fn check_supervision(&mut self, at: &[Seg<'_>], s: Option<&SupervisionSpec>) {
        let Some(s) = s else { return };
        let mut path = at.to_vec();
        if s.within.is_some_and(|w| w.is_zero()) {
            path.push(Seg::Key("within"));
            self.report(&path, "`within` must be longer than zero".into(), None);
        }
    }
}

/// `did you mean `x`?` for the closest name within two edits.
pub(crate) fn did_you_mean<'a>(
    wrong: &str,
    names: impl Iterator<Item = &'a String>,
) -> Option<String> {
    names
        .map(|n| (edit_distance(wrong, n), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| format!("did you mean `{n}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
