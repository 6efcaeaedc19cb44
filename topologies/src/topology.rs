//! The validated topology: the petgraph model the runtime spawns from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_core::{Budget, NanoUsd, Price, defaults};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::cadence::{Cadence, CadenceError, CronSchedule};
use crate::error::{Diagnostic, Severity, TopologyError};
use crate::locate::{Seg, locate, locate_toml};
use crate::mcp::McpServerDef;
use crate::spec::{
    Activation, AgentSpec, BudgetAction, MissingConfidence, ModelSpec, OnCrash, Privacy, Provider,
    RestartType, Strategy, SupervisionSpec, ToolKind, ToolSpec, TopologySpec,
};
use crate::spec::{OnInterrupted, Overlap, Tier};
use baton_core::FaultSpec;
use baton_core::policy::Policy;

// The validator's checks by area, in `topology/`: children of this module, so they see the
// `Validator`'s state.
mod agents;
mod defs;
mod graph;
pub use defs::{
    AgentNode, BreakerDef, LocalDef, ModelDef, PriceSource, RetryPolicy, ScheduleDef, Supervision,
    ToolDef,
};
mod models;
mod policy;
mod schedules;
mod score;
pub use score::{ContextDef, EnergyDef, SizeSource, ValueDef};
mod tools;
// Did-you-mean suggestions and the parser's messages, in their own file.
mod suggest;
pub use suggest::closest;
pub(crate) use suggest::{did_you_mean, parse_message};

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

/// A validated topology: agents in a petgraph graph with typed edges, and the models and tools they
/// use. Built from a file ([`Topology::from_path`]) or in code ([`crate::TopologyBuilder`]); both go
/// through the same validation and yield the same graph.
#[derive(Clone, Debug)]
pub struct Topology {
    name: String,
    /// The spec as written: a built topology's at once; a file's parsed again from `text` on
    /// first use (the validated graph is what runs, so a 100,000-agent file keeps its agents once,
    /// not twice).
    spec: std::sync::OnceLock<TopologySpec>,
    format: Format,
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
    budget: TopologyBudget,
    ledger: Option<String>,
    energy: EnergyDef,
}

/// The topology's own budget (`budget:`), resolved: limits on all the tasks it runs together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopologyBudget {
    /// Money in total.
    pub max: Option<NanoUsd>,
    /// Money per hour.
    pub per_hour: Option<NanoUsd>,
    /// Money per 24-hour period.
    pub per_day: Option<NanoUsd>,
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
                let (line, mut column) = e
                    .location()
                    .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
                let said = e.to_string();
                // A tab in the indentation: point at the tab itself (the parser points past it).
                if said.contains("tabs disallowed")
                    && let Some(at) = text
                        .lines()
                        .nth(line.saturating_sub(1))
                        .and_then(|l| l.chars().position(|c| c == '\t'))
                {
                    column = at + 1;
                }
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
        let budget = v.check_budget(&spec);
        let ledger = v.check_ledger(&spec);
        let energy = v.check_energy(spec.energy.as_ref());
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
        let Built {
            graph,
            root,
            index,
            models,
            tools,
        } = topo.ok_or_else(|| TopologyError::Invalid {
            file: file.to_path_buf(),
            diagnostics: Vec::new(),
            text: None,
        })?;
        let name = spec.name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map_or_else(|| "topology".into(), |s| s.to_string_lossy().into_owned())
        });
        let kept = std::sync::OnceLock::new();
        if text.is_none() {
            let _ = kept.set(spec);
        }
        Ok(Topology {
            name,
            spec: kept,
            format,
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
            budget,
            energy,
            ledger,
        })
    }

    /// The shared ledger's URL (`ledger: { postgres: … }`), as written: `${VAR}` references are
    /// left for the caller to resolve when it connects.
    pub fn ledger(&self) -> Option<&str> {
        self.ledger.as_deref()
    }

    /// How energy is figured (`energy:`, defaults applied).
    pub fn energy(&self) -> EnergyDef {
        self.energy
    }

    /// The MCP servers, by name.
    pub fn mcp_servers(&self) -> impl Iterator<Item = &McpServerDef> {
        self.mcp_servers.values()
    }

    /// The standing loops, in name order.
    pub fn schedules(&self) -> &[ScheduleDef] {
        &self.schedules
    }

    /// The topology's own budget (`budget:`): limits on all the tasks it runs together.
    pub fn budget(&self) -> TopologyBudget {
        self.budget
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

    /// The spec as written (or built). A file's is parsed again from its text the first time it
    /// is asked for.
    pub fn spec(&self) -> &TopologySpec {
        self.spec.get_or_init(|| {
            let text = self.text.as_deref().unwrap_or_default();
            let parsed = match self.format {
                Format::Yaml => {
                    serde_saphyr::from_str_with_options(text, yaml_options(yaml_max_nodes()))
                        .map_err(|e| e.to_string())
                }
                Format::Toml => toml::from_str(text).map_err(|e| e.to_string()),
            };
            // The same text parsed when the topology was validated: it cannot fail now.
            parsed.unwrap_or_default()
        })
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

/// What a successful check builds: the graph, its root, the agents' nodes by name, and the
/// resolved models and tools.
struct Built {
    graph: DiGraph<AgentNode, Edge>,
    root: NodeIndex,
    index: HashMap<Arc<str>, NodeIndex>,
    models: BTreeMap<Arc<str>, ModelDef>,
    tools: BTreeMap<Arc<str>, ToolDef>,
}

#[derive(Clone, Copy, Debug)]
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
            self.check_settings(name, a);
            self.check_ladder(name, a, &models);
            let mut node = self.check_agent(name, a);
            node.context = a
                .context
                .as_ref()
                .map(|c| self.check_context(name, c, &spec.models));
            let name: Arc<str> = Arc::clone(&node.name);
            index.insert(name, graph.add_node(node));
        }
        let parent_of = self.link_children(&agents, &index, &mut graph);
        let root = self.find_root(spec, &index, &parent_of)?;
        self.check_under_root(root, &graph, &index, &parent_of);
        self.check_budgets_nest(&agents, &parent_of);
        self.link_fallbacks(&agents, &index, &parent_of, &mut graph);
        self.check_fallback_cycles(&agents);
        Some(Built {
            graph,
            root,
            index,
            models,
            tools,
        })
    }
}
