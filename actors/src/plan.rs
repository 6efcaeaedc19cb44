//! The runtime's resolved view of a topology: per agent, its model ladder (with prices and metric
//! handles), its tools, the schemas its model sees, and its children. Built once at start; agents
//! read it without locks.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use baton_core::tools::{Chaos, Codeowners, LogSearch, MetricsSeries};
use baton_core::{Account, Budget, Model, Outcome, Price, ScriptedModel, TaskId, Tool, ToolSchema};
use baton_topologies::{Activation, BudgetAction, ModelDef, OnCrash, RestartType, Supervision};
use dashmap::DashMap;
use std::sync::RwLock;

use baton_topologies::{DELEGATE_TOOL, NodeIndex, Provider, ToolKind, Topology};
use metrics::{Counter, Gauge, Histogram};
use serde_json::json;

use crate::error::RuntimeError;
use crate::observer::Observer;

// One rung of a ladder (model, price, metric handles, energy), in its own file.
mod rung;
pub(crate) use rung::{ENERGY_METHODS, Rung, count_energy};
use rung::{EnergySetup, make_rung};

/// Everything an agent actor needs, resolved.
pub(crate) struct AgentPlan {
    pub(crate) name: Arc<str>,
    pub(crate) ladder: Vec<Rung>,
    pub(crate) tools: Vec<Arc<dyn Tool>>,
    /// What the harness checks around each tool (same order as `tools`).
    pub(crate) tool_gates: Vec<Arc<ToolGate>>,
    /// Its role under the policy.
    pub(crate) role: Option<Arc<str>>,
    /// Denials by rule (indices of [`DENIAL_RULES`]).
    pub(crate) denials: [Counter; 4],
    /// What the model sees: the tools, then `delegate` when the agent has children.
    pub(crate) schemas: Vec<ToolSchema>,
    /// (name, index into `Plan::agents`) of the agents it may delegate to.
    pub(crate) children: Vec<(Arc<str>, usize)>,
    pub(crate) budget: Budget,
    pub(crate) system: Option<String>,
    pub(crate) steps: Counter,
    pub(crate) tasks: OutcomeCounters,
    /// The price of the priciest model on the ladder: the baseline routing savings are measured
    /// against.
    pub(crate) top_price: Price,
    /// The model of a one-model ladder: its calls are attributed without per-call records.
    pub(crate) sole_model: Option<Arc<str>>,
    pub(crate) supervision: Supervision,
    pub(crate) restart: RestartType,
    pub(crate) on_crash: OnCrash,
    pub(crate) on_budget_exceeded: BudgetAction,
    /// Index into `Plan::agents` of the sibling that takes over on `reroute`.
    pub(crate) fallback: Option<usize>,
    pub(crate) activation: Activation,
    pub(crate) quality_bar: u8,
    /// The least confidence (percent) accepted from a local-tier model.
    pub(crate) min_confidence: Option<u8>,
    /// What a local-tier reply without probabilities becomes under `min_confidence`.
    pub(crate) on_missing_confidence: baton_topologies::MissingConfidence,
    /// What a tool call cut at `max_output_tokens` becomes.
    pub(crate) on_truncated: baton_topologies::Truncated,
    /// `local_only`: its tasks are private from the start.
    pub(crate) local_only: bool,
    /// `baton_privacy_local_steps_total`: steps kept on a local model because the task was private.
    pub(crate) private_steps: Counter,
    pub(crate) restarts: Counter,
    pub(crate) cutoffs: Counter,
    pub(crate) reroutes_model: Counter,
    pub(crate) reroutes_agent: Counter,
    pub(crate) escalations: Counter,
    pub(crate) refusals: Counter,
    pub(crate) remaining: Gauge,
    pub(crate) running: Gauge,
    /// Per tool (same order as `tools`): calls by outcome ok, error, timeout, panic; duration; CPU.
    pub(crate) tool_metrics: Vec<ToolMetrics>,
    /// What its completed tasks are worth.
    pub(crate) value: Option<baton_topologies::ValueDef>,
    /// Transcript compaction: the compactor's rung and the settings.
    pub(crate) compactor: Option<(Rung, baton_topologies::ContextDef)>,
    /// `baton_resent_tokens_total{agent}`.
    pub(crate) resent: Counter,
    /// `baton_free_tier_steps_total{agent}`.
    pub(crate) free_steps: Counter,
    /// Tasks it runs at once, and tasks that may wait beyond that before one is refused `busy`.
    pub(crate) max_concurrency: u32,
    pub(crate) queue: u32,
    /// The most tool calls of one reply that run at once.
    pub(crate) max_parallel_tools: u32,
}

/// Why the router gave a step to a model: the first that clears the bar; one up the ladder after
/// a failure, a low confidence, a context window or a raised bar; below the bar when the budget
/// is short (`reroute`); past models whose worst case the budget could not cover.
pub(crate) const ROUTE_REASONS: [&str; 4] = ["cheapest", "escalated", "fallback", "budget"];

/// A route reason, as the index of its label in [`ROUTE_REASONS`] and of its counter in
/// `Rung::decisions`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Cheapest = 0,
    Escalated = 1,
    Fallback = 2,
    Budget = 3,
}

impl Route {
    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        ROUTE_REASONS[self as usize]
    }
}

/// How a tool call ended, as the index of its counter in `ToolMetrics::calls` (the `outcome`
/// label of `baton_tool_calls_total`, in [`TOOL_OUTCOMES`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ToolOutcome {
    Ok = 0,
    Error = 1,
    Timeout = 2,
    Panic = 3,
    Invalid = 4,
}

/// The `outcome` labels of `baton_tool_calls_total`, in [`ToolOutcome`]'s order.
pub(crate) const TOOL_OUTCOMES: [&str; 5] = ["ok", "error", "timeout", "panic", "invalid"];

/// The policy rules that deny a tool call: the `rule` label of `baton_policy_denials_total`.
pub(crate) const DENIAL_RULES: [&str; 4] = ["role", "freeze", "dry_run_first", "approval"];

/// A tool with what the harness checks around it.
type GatedTool = (Arc<dyn Tool>, Arc<ToolGate>);

/// What the harness checks around a tool's calls, shared by the agents that have it.
pub(crate) struct ToolGate {
    /// Its effect, as the topology or the tool says.
    pub(crate) effect: baton_core::Effect,
    /// Its parameters' JSON schema, compiled: a model's arguments are checked before the call.
    /// `None` when the tool's schema does not compile (then its arguments are not checked).
    pub(crate) validator: Option<jsonschema::Validator>,
    /// Output longer than this many tokens is cut before it re-enters the context.
    pub(crate) max_output_tokens: u32,
    /// How long one call may take.
    pub(crate) timeout: std::time::Duration,
    /// Whether `dry_run: true` really is a dry run for this tool (its own word, or the
    /// topology's): otherwise such a call is judged and run as the real call.
    pub(crate) dry_run: bool,
    /// Its output makes the task private (`sensitive: true`): local models only from then on.
    pub(crate) sensitive: bool,
}

impl ToolGate {
    fn new(
        tool: &dyn Tool,
        effect: baton_core::Effect,
        max_output_tokens: u32,
        timeout: std::time::Duration,
        dry_run: Option<baton_topologies::DryRunSupport>,
        sensitive: bool,
    ) -> Arc<ToolGate> {
        let validator = match jsonschema::validator_for(&tool.parameters()) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(
                    tool = tool.name(),
                    "the tool's parameter schema does not compile ({e}): its arguments are not checked"
                );
                None
            }
        };
        Arc::new(ToolGate {
            effect,
            validator,
            max_output_tokens,
            timeout,
            dry_run: match dry_run {
                Some(d) => d == baton_topologies::DryRunSupport::Supported,
                None => tool.supports_dry_run(),
            },
            sensitive,
        })
    }
}

pub(crate) struct ToolMetrics {
    /// By outcome: ok, error, timeout, panic, invalid (arguments refused before the call).
    pub(crate) calls: [Counter; 5],
    /// Tokens cut from long outputs.
    pub(crate) saved: Counter,
    pub(crate) duration: Histogram,
    pub(crate) cpu: Histogram,
    /// `baton_energy_uj_total{kind="tool"}`, measured and estimated.
    pub(crate) energy_uj: [Counter; 2],
}

/// `baton_tasks_total{agent, outcome}`, one handle per outcome, registered once.
pub(crate) struct OutcomeCounters([Counter; Outcome::ALL.len()]);

impl OutcomeCounters {
    fn new(agent: &str) -> OutcomeCounters {
        OutcomeCounters(
            Outcome::ALL.map(|o| metrics::counter!("baton_tasks_total", "agent" => agent.to_string(), "outcome" => o.as_str())),
        )
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.0[i].increment(1);
        }
    }
}

/// Hashes task ids (already unique integers) with one multiplication instead of SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The tools of each MCP server of a topology, by server name.
pub(crate) type McpTools = HashMap<Arc<str>, Vec<Arc<dyn Tool>>>;

/// An agent's (or a role's) `tools:` entries, each one naming an MCP server replaced by that
/// server's tools (no allocation: names are borrowed).
fn expand_tools<'a>(
    mcp: &'a McpTools,
    names: impl Iterator<Item = &'a str>,
) -> impl Iterator<Item = &'a str> {
    names.flat_map(move |n| {
        let server = mcp.get(n);
        server
            .into_iter()
            .flatten()
            .map(|t| t.name())
            .chain(server.is_none().then_some(n))
    })
}

/// Starts (or reaches) every MCP server of the topology at once and lists their tools; a server
/// that fails stops the start, naming it.
pub(crate) async fn connect_mcp(topology: &Topology) -> Result<McpTools, RuntimeError> {
    let connecting = topology.mcp_servers().map(|s| {
        let mut config = baton_mcp::ServerConfig::new(&*s.name, s.transport.clone());
        config.allow = s.allow.clone();
        config.effects = s.effects.clone();
        config.effect = s.effect;
        config.trust_annotations = s.trust_annotations;
        config.dry_run = s.dry_run;
        config.startup_timeout = s.startup_timeout;
        config.max_restarts = s.max_restarts;
        config.restart_window = s.restart_window;
        let name = Arc::clone(&s.name);
        async move {
            let server = baton_mcp::McpServer::connect(config).await?;
            Ok::<_, RuntimeError>((name, server.tools()))
        }
    });
    futures::future::try_join_all(connecting)
        .await
        .map(|v| v.into_iter().collect())
}

/// The whole resolved topology.
pub(crate) struct Plan {
    pub(crate) agents: Vec<Arc<AgentPlan>>,
    /// Root tasks submitted and not yet ended, with their accounts (for `in_flight` and `cancel`).
    pub(crate) tasks: DashMap<TaskId, Account, BuildHasherDefault<IdHasher>>,
    /// The running root agent, published by the conductor so callers reach it without a hop.
    root_ref: RwLock<Option<crate::agent::Running>>,
    pub(crate) root: usize,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// How the conductor supervises the root agent.
    pub(crate) supervision: Supervision,
    /// Set when the conductor gives up: why.
    pub(crate) gave_up: std::sync::OnceLock<String>,
    /// Cancelled when the conductor gives up (after `gave_up` is set): what waits for the
    /// runtime to go down (the standing loops) waits on it.
    pub(crate) down: tokio_util::sync::CancellationToken,
    /// Standing loops paused by hand ([`crate::Runtime::pause_schedule`]): their ticks are
    /// skipped until resumed.
    pub(crate) paused: dashmap::DashSet<String>,
    /// The harness's policy, and who approves destructive calls.
    pub(crate) policy: baton_core::policy::Policy,
    pub(crate) approver: Arc<dyn crate::approval::Approver>,
    /// The power per busy core, for the energy of tools and the local model.
    pub(crate) cpu_power: Arc<baton_core::CpuPower>,
}

impl Plan {
    pub(crate) fn observe(&self, event: &crate::observer::Event<'_>) {
        if let Some(o) = &self.observer {
            o.on_event(event);
        }
    }

    /// Records an event the harness acts on only once it is recorded (see
    /// [`crate::Observer::on_decision`]).
    pub(crate) fn observe_decision(
        &self,
        event: &crate::observer::Event<'_>,
    ) -> Result<(), String> {
        match &self.observer {
            Some(o) => o.on_decision(event),
            None => Ok(()),
        }
    }

    pub(crate) fn publish_root(&self, root: Option<crate::agent::Running>) {
        *self
            .root_ref
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = root;
    }

    pub(crate) fn root_agent(&self) -> Option<crate::agent::Running> {
        self.root_ref
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn build(
        topology: &Topology,
        mut custom_models: HashMap<String, Arc<dyn Model>>,
        mut custom_tools: HashMap<String, Arc<dyn Tool>>,
        mcp: McpTools,
        observer: Option<Arc<dyn Observer>>,
        approver: Option<Arc<dyn crate::approval::Approver>>,
    ) -> Result<Plan, RuntimeError> {
        use crate::error::Component;
        // For did-you-means: what code registered, and what the topology declares custom.
        let registered_models: Vec<String> = custom_models.keys().cloned().collect();
        let registered_tools: Vec<String> = custom_tools.keys().cloned().collect();
        let near = |name: &str, among: &[String]| {
            baton_topologies::closest(name, among.iter().map(String::as_str)).map(str::to_string)
        };
        let mut models: HashMap<Arc<str>, (Arc<dyn Model>, &ModelDef)> = HashMap::new();
        for m in topology.models() {
            let model: Arc<dyn Model> =
                match m.provider {
                    Provider::Scripted => {
                        let rules = m.rules.as_deref().ok_or_else(|| RuntimeError::Setup {
                            kind: Component::Model,
                            name: m.name.to_string(),
                            message: "a scripted model needs a rules file".into(),
                        })?;
                        let mut s = ScriptedModel::from_file(&m.name, rules).map_err(|source| {
                            RuntimeError::Model {
                                model: m.name.to_string(),
                                source,
                            }
                        })?;
                        if let Some(l) = m.latency {
                            s = s.with_latency(l);
                        }
                        if let Some(f) = &m.faults {
                            s = s.with_faults(f.clone());
                        }
                        Arc::new(s)
                    }
                    Provider::Openai | Provider::Anthropic => http_model(m)?,
                    Provider::Local => local_model(m)?,
                    Provider::Custom => custom_models.remove(&*m.name).ok_or_else(|| {
                        RuntimeError::NotRegistered {
                            kind: Component::Model,
                            name: m.name.to_string(),
                            registered: near(&m.name, &registered_models),
                        }
                    })?,
                };
            models.insert(Arc::clone(&m.name), (model, m));
        }
        if let Some(name) = custom_models.keys().next() {
            let declared: Vec<String> = topology
                .models()
                .filter(|m| m.provider == Provider::Custom)
                .map(|m| m.name.to_string())
                .collect();
            return Err(RuntimeError::Undeclared {
                kind: Component::Model,
                name: name.clone(),
                declared: near(name, &declared),
            });
        }
        let mut tools: HashMap<Arc<str>, GatedTool> = HashMap::new();
        for t in topology.tools() {
            let path = t.path.clone().unwrap_or_default();
            let tool: Arc<dyn Tool> = match t.kind {
                ToolKind::MetricsSeries => Arc::new(MetricsSeries::new(&*t.name, path)),
                ToolKind::LogSearch => {
                    let l = LogSearch::new(&*t.name, path);
                    Arc::new(match &t.description {
                        Some(d) => l.with_description(d),
                        None => l,
                    })
                }
                ToolKind::Codeowners => Arc::new(Codeowners::new(&*t.name, path)),
                ToolKind::RestartService => {
                    Arc::new(baton_core::tools::RestartService::new(&*t.name))
                }
                ToolKind::Chaos => {
                    Arc::new(Chaos::new(&*t.name, t.faults.clone().unwrap_or_default()))
                }
                ToolKind::ReadFile => Arc::new(baton_core::tools::ReadFile::new(&*t.name, path)),
                ToolKind::ListDir => Arc::new(baton_core::tools::ListDir::new(&*t.name, path)),
                ToolKind::Shell => {
                    let shell = baton_core::tools::Shell::new(&*t.name, t.allow.clone(), t.timeout)
                        .max_output(
                            t.max_output_bytes
                                .map_or(baton_core::tools::SHELL_MAX_OUTPUT, |b| {
                                    usize::try_from(b).unwrap_or(usize::MAX)
                                }),
                        );
                    Arc::new(match &t.path {
                        Some(dir) => shell.cwd(dir),
                        None => shell,
                    })
                }
                ToolKind::HttpGet => Arc::new(
                    baton_providers::tools::HttpGet::new(&*t.name, t.allow.clone(), t.timeout)
                        .map_err(|e| RuntimeError::Setup {
                            kind: Component::Tool,
                            name: t.name.to_string(),
                            message: e.to_string(),
                        })?,
                ),
                ToolKind::Custom => {
                    custom_tools
                        .remove(&*t.name)
                        .ok_or_else(|| RuntimeError::NotRegistered {
                            kind: Component::Tool,
                            name: t.name.to_string(),
                            registered: near(&t.name, &registered_tools),
                        })?
                }
            };
            if tool.name() != &*t.name {
                return Err(RuntimeError::NameMismatch {
                    registered: t.name.to_string(),
                    calls_itself: tool.name().to_string(),
                });
            }
            let effect = t.effect.unwrap_or_else(|| tool.effect());
            let gate = ToolGate::new(
                &*tool,
                effect,
                t.max_output_tokens,
                t.timeout,
                t.dry_run,
                t.sensitive,
            );
            tools.insert(Arc::clone(&t.name), (tool, gate));
        }
        if let Some(name) = custom_tools.keys().next() {
            let declared: Vec<String> = topology
                .tools()
                .filter(|t| t.kind == ToolKind::Custom)
                .map(|t| t.name.to_string())
                .collect();
            return Err(RuntimeError::Undeclared {
                kind: Component::Tool,
                name: name.clone(),
                declared: near(name, &declared),
            });
        }
        for server in topology.mcp_servers() {
            for t in mcp.get(&server.name).into_iter().flatten() {
                let gate = ToolGate::new(
                    &**t,
                    t.effect(),
                    server.max_output_tokens,
                    server.timeout,
                    None,
                    server.sensitive,
                );
                tools.insert(Arc::from(t.name()), (Arc::clone(t), gate));
            }
        }
        // An agent's (or a role's) `tools:` entry naming an MCP server means all its tools.
        let mut policy = topology.policy().clone();
        for allowed in policy.roles.values_mut() {
            *allowed = expand_tools(&mcp, allowed.iter().map(String::as_str))
                .map(str::to_string)
                .collect();
        }

        let energy = EnergySetup {
            cpu: Arc::new(baton_core::CpuPower::new(
                topology.energy().cpu_watts_per_core,
            )),
            pue: topology.energy().pue,
        };
        let graph = topology.graph();
        let index_of: HashMap<NodeIndex, usize> = graph
            .node_indices()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        let mut agents = Vec::with_capacity(graph.node_count());
        for node in graph.node_indices() {
            let a = &graph[node];
            let agent_label = a.name.to_string();
            let ladder = a
                .ladder
                .iter()
                .map(|m| make_rung(&agent_label, m, &models, &energy))
                .collect::<Result<Vec<_>, RuntimeError>>()?;
            let compactor = match &a.context {
                Some(c) => Some((
                    make_rung(&agent_label, &c.compactor, &models, &energy)?,
                    c.clone(),
                )),
                None => None,
            };
            let (agent_tools, tool_gates): (Vec<Arc<dyn Tool>>, Vec<Arc<ToolGate>>) =
                expand_tools(&mcp, a.tools.iter().map(|t| &**t))
                    .map(|t| {
                        tools.get(t).cloned().ok_or_else(|| RuntimeError::Setup {
                            kind: Component::Tool,
                            name: t.to_string(),
                            message: "not declared in the topology".into(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .unzip();
            let children: Vec<(Arc<str>, usize)> = topology
                .delegates(node)
                .into_iter()
                .map(|c| (Arc::clone(&graph[c].name), index_of[&c]))
                .collect();
            let mut schemas: Vec<ToolSchema> = agent_tools.iter().map(|t| t.schema()).collect();
            if !children.is_empty() {
                schemas.push(delegate_schema(topology, &children));
            }
            let mut ladder = ladder;
            for rung in &mut ladder {
                rung.tool_tokens = baton_core::tool_tokens(&*rung.model, &schemas);
            }
            let top_price = ladder
                .iter()
                .map(|r| r.price)
                .max_by_key(|p| p.worst_case(1000, 1000))
                .unwrap_or_default();
            let sole_model = match ladder.as_slice() {
                [only] => Some(Arc::clone(&only.name)),
                _ => None,
            };
            let tool_metrics: Vec<ToolMetrics> = agent_tools
                .iter()
                .map(|t| t.name())
                .map(|t| {
                    let labels = [("agent", agent_label.clone()), ("tool", t.to_string())];
                    ToolMetrics {
                        saved: metrics::counter!("baton_tool_output_tokens_saved_total", "agent" => agent_label.clone(), "tool" => t.to_string()),
                        calls: TOOL_OUTCOMES.map(|o| {
                            metrics::counter!("baton_tool_calls_total", "agent" => agent_label.clone(), "tool" => t.to_string(), "outcome" => o)
                        }),
                        duration: metrics::histogram!("baton_tool_duration_seconds", &labels[..]),
                        cpu: metrics::histogram!("baton_tool_cpu_seconds", &labels[..]),
                        energy_uj: ENERGY_METHODS.map(|method| {
                            metrics::counter!("baton_energy_uj_total", "kind" => "tool", "method" => method, "model" => "")
                        }),
                    }
                })
                .collect();
            agents.push(Arc::new(AgentPlan {
                tool_gates,
                role: a.role.clone(),
                denials: DENIAL_RULES.map(|rule| {
                    metrics::counter!("baton_policy_denials_total", "agent" => agent_label.clone(), "rule" => rule)
                }),
                top_price,
                sole_model,
                name: Arc::clone(&a.name),
                ladder,
                tools: agent_tools,
                schemas,
                children,
                budget: a.budget.clone(),
                system: a.system.clone(),
                tasks: OutcomeCounters::new(&agent_label),
                supervision: a.supervision.clone(),
                restart: a.restart,
                on_crash: a.on_crash,
                on_budget_exceeded: a.on_budget_exceeded,
                fallback: topology.fallback(node).map(|f| index_of[&f]),
                activation: a.activation,
                quality_bar: a.quality_bar,
                min_confidence: a.min_confidence,
                on_missing_confidence: a.on_missing_confidence,
                on_truncated: a.on_truncated,
                local_only: a.privacy == baton_topologies::Privacy::LocalOnly,
                private_steps: metrics::counter!("baton_privacy_local_steps_total", "agent" => agent_label.clone()),
                restarts: metrics::counter!("baton_restarts_total", "agent" => agent_label.clone()),
                cutoffs: metrics::counter!("baton_budget_cutoffs_total", "agent" => agent_label.clone()),
                reroutes_model: metrics::counter!("baton_budget_reroutes_total", "agent" => agent_label.clone(), "reason" => "cheaper_model"),
                reroutes_agent: metrics::counter!("baton_budget_reroutes_total", "agent" => agent_label.clone(), "reason" => "fallback_agent"),
                escalations: metrics::counter!("baton_escalations_total", "supervisor" => agent_label.clone()),
                refusals: metrics::counter!("baton_budget_refusals_total", "agent" => agent_label.clone()),
                remaining: metrics::gauge!("baton_budget_remaining_usd", "agent" => agent_label.clone()),
                running: metrics::gauge!("baton_agents_running", "agent" => agent_label.clone()),
                tool_metrics,
                value: a.value.clone(),
                compactor,
                resent: metrics::counter!("baton_resent_tokens_total", "agent" => agent_label.clone()),
                free_steps: metrics::counter!("baton_free_tier_steps_total", "agent" => agent_label.clone()),
                max_concurrency: a.max_concurrency.max(1),
                queue: a.queue,
                max_parallel_tools: a.max_parallel_tools.max(1),
                steps: metrics::counter!("baton_agent_steps_total", "agent" => agent_label),
            }));
        }
        Ok(Plan {
            tasks: DashMap::default(),
            root_ref: RwLock::new(None),
            root: index_of[&topology.root()],
            agents,
            observer,
            supervision: topology.supervision().clone(),
            gave_up: std::sync::OnceLock::new(),
            down: tokio_util::sync::CancellationToken::new(),
            paused: dashmap::DashSet::new(),
            policy,
            approver: approver.unwrap_or_else(|| Arc::new(crate::approval::Unattended)),
            cpu_power: energy.cpu,
        })
    }
}

/// Builds an HTTP provider, reading its API key from the environment.
fn http_model(m: &ModelDef) -> Result<Arc<dyn Model>, RuntimeError> {
    let err = |e: baton_providers::ProviderError| RuntimeError::Provider {
        model: m.name.to_string(),
        message: e.to_string(),
    };
    let api_key = m
        .api_key
        .as_deref()
        .map(baton_providers::Secret::from_reference)
        .transpose()
        .map_err(err)?;
    let default = match m.provider {
        Provider::Anthropic => baton_providers::ANTHROPIC_ENDPOINT,
        _ => baton_providers::OPENAI_ENDPOINT,
    };
    let config = baton_providers::ProviderConfig {
        api_key,
        stream: m.stream,
        connect_timeout: m.connect_timeout,
        tool_choice: m.tool_choice,
        prompt_cache: m.prompt_cache,
        null_content: m.null_content,
        ..baton_providers::ProviderConfig::new(
            m.name.to_string(),
            m.wire_model.clone(),
            m.endpoint.clone().unwrap_or_else(|| default.to_string()),
        )
    };
    Ok(match m.provider {
        Provider::Anthropic => Arc::new(baton_providers::Anthropic::new(config).map_err(err)?),
        _ => Arc::new(baton_providers::OpenAi::new(config).map_err(err)?),
    })
}

fn delegate_schema(topology: &Topology, children: &[(Arc<str>, usize)]) -> ToolSchema {
    let names: Vec<&str> = children.iter().map(|(n, _)| &**n).collect();
    let mut description =
        String::from("Hand a sub-task to one of your sub-agents and wait for its answer.");
    for (name, _) in children {
        if let Some(d) = topology
            .agent(name)
            .and_then(|n| topology.graph()[n].description.as_deref())
        {
            description.push_str(&format!(" `{name}`: {d}"));
        }
    }
    ToolSchema {
        name: DELEGATE_TOOL.to_string(),
        description,
        parameters: json!({
            "type": "object",
            "properties": {
                "agent": {"type": "string", "enum": names},
                "task": {"type": "string", "description": "what the sub-agent must do"},
                "budget_usd": {"type": "number", "description": "optional cap on what this sub-task may spend"}
            },
            "required": ["agent", "task"],
            "additionalProperties": false
        }),
    }
}

/// An embedded model (`provider: local`): loaded, and its instances' contexts created, now.
#[cfg(feature = "local")]
fn local_model(m: &ModelDef) -> Result<Arc<dyn Model>, RuntimeError> {
    use baton_providers::local::{LocalConfig, LocalModel};
    let setup = |message: String| RuntimeError::Setup {
        kind: crate::error::Component::Model,
        name: m.name.to_string(),
        message,
    };
    let l = m
        .local
        .as_ref()
        .ok_or_else(|| setup("a local model needs `path`".into()))?;
    let config = LocalConfig {
        path: l.path.clone(),
        context: l.context,
        threads: l.threads,
        instances: l.instances,
        temperature: l.temperature,
        seed: l.seed,
    };
    let model = LocalModel::load(m.name.to_string(), &config).map_err(|e| setup(e.to_string()))?;
    Ok(Arc::new(model))
}

/// Without the `local` feature there is no llama.cpp in the binary: say how to get one.
#[cfg(not(feature = "local"))]
fn local_model(m: &ModelDef) -> Result<Arc<dyn Model>, RuntimeError> {
    Err(RuntimeError::Setup {
        kind: crate::error::Component::Model,
        name: m.name.to_string(),
        message: "this build of Baton has no embedded model: build it with `--features local` (needs cmake and clang)".into(),
    })
}
