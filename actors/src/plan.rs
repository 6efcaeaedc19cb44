//! The runtime's resolved view of a topology: per agent, its model ladder (with prices and metric
//! handles), its tools, the schemas its model sees, and its children. Built once at start; agents
//! read it without locks.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use baton_core::{Account, Budget, Outcome, Price, TaskId, Tool, ToolSchema};
use baton_topologies::{BudgetAction, OnCrash, RestartType, Supervision};
use dashmap::DashMap;
use std::sync::RwLock;

use baton_topologies::{DELEGATE_TOOL, Topology};
use metrics::{Counter, Gauge, Histogram};
use serde_json::json;

use crate::error::RuntimeError;
use crate::observer::Observer;

// One rung of a ladder (model, price, metric handles, energy), in its own file.
mod build;
mod rung;
pub(crate) use rung::{ENERGY_METHODS, Rung, count_energy};

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

/// The agents' plans, by the index of their node in the topology's graph. In a large fleet (more
/// than [`build::EAGER_PLANS_UP_TO`] agents) each is built the first time it is needed (the agent
/// activates, or its parent looks at its restart type): a declared agent that never works holds
/// one empty slot, not a ladder of models, schemas and metric handles.
pub(crate) struct Agents {
    slots: Box<[std::sync::OnceLock<Arc<AgentPlan>>]>,
    build: build::AgentBuild,
}

impl Agents {
    fn new(build: build::AgentBuild) -> Agents {
        let n = build.topology.graph().node_count();
        Agents {
            slots: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
            build,
        }
    }

    /// How many agents the topology declares.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Agent `i` as the topology declares it: what its parent reads before the agent works (its
    /// activation), without building its plan.
    pub(crate) fn declared(&self, i: usize) -> &baton_topologies::AgentNode {
        &self.build.topology.graph()[baton_topologies::NodeIndex::new(i)]
    }

    /// The plans built so far (the agents that have been needed).
    #[cfg(test)]
    pub(crate) fn built(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }
}

impl std::ops::Index<usize> for Agents {
    type Output = Arc<AgentPlan>;

    /// Agent `i`'s plan, built now if this is its first use.
    fn index(&self, i: usize) -> &Arc<AgentPlan> {
        self.slots[i]
            .get_or_init(|| Arc::new(self.build.agent(baton_topologies::NodeIndex::new(i))))
    }
}

/// The whole resolved topology.
pub(crate) struct Plan {
    pub(crate) agents: Agents,
    pub(crate) root: usize,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// How the conductor supervises the root agent.
    pub(crate) supervision: Supervision,
    /// The harness's policy, and who approves destructive calls.
    pub(crate) policy: baton_core::policy::Policy,
    pub(crate) approver: Arc<dyn crate::approval::Approver>,
    /// The power per busy core, for the energy of tools and the local model.
    pub(crate) cpu_power: Arc<baton_core::CpuPower>,
    /// A budget shared with other replicas, which every model call also reserves on.
    pub(crate) shared: Option<Arc<dyn baton_core::SharedBudget>>,
    /// Standing loops' ticks claimed among replicas: each tick runs on one of them.
    pub(crate) claims: Option<Arc<dyn baton_core::TickClaims>>,
    /// Standing loops' own budgets shared with other replicas, by schedule: each of a loop's
    /// runs reserves on it too.
    pub(crate) loop_budgets: std::collections::HashMap<String, Arc<dyn baton_core::SharedBudget>>,
    /// What changes while the runtime runs; everything above is fixed at start.
    pub(crate) live: Live,
}

/// A runtime's state while it runs, apart from the [`Plan`]'s configuration.
#[derive(Default)]
pub(crate) struct Live {
    /// Root tasks submitted and not yet ended, with their accounts (for `in_flight` and `cancel`).
    pub(crate) tasks: DashMap<TaskId, Account, BuildHasherDefault<IdHasher>>,
    /// The running root agent, published by the conductor so callers reach it without a hop.
    root_ref: RwLock<Option<crate::agent::Running>>,
    /// Set when the conductor gives up: why.
    pub(crate) gave_up: std::sync::OnceLock<String>,
    /// Cancelled when the conductor gives up (after `gave_up` is set): what waits for the
    /// runtime to go down (the standing loops) waits on it.
    pub(crate) down: tokio_util::sync::CancellationToken,
    /// Standing loops paused by hand ([`crate::Runtime::pause_schedule`]): their ticks are
    /// skipped until resumed.
    pub(crate) paused: dashmap::DashSet<String>,
    /// Shared budgets of the root tasks running now that have one beyond the topology's (a
    /// standing loop's runs), by root task.
    pub(crate) run_budgets: DashMap<u64, Arc<dyn baton_core::SharedBudget>>,
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
            .live
            .root_ref
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = root;
    }

    pub(crate) fn root_agent(&self) -> Option<crate::agent::Running> {
        self.live
            .root_ref
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use baton_topologies::{AgentSpec, ModelSpec, ToolSpec, TopologyBuilder};

    /// A topology with model `m` and the custom tool `clock`, and `agents`.
    fn topology(agents: &[(&str, AgentSpec)]) -> Arc<Topology> {
        let mut b = TopologyBuilder::new("t")
            .model(
                "m",
                ModelSpec::custom(baton_core::Price::per_million_tokens(
                    baton_core::NanoUsd(1),
                    baton_core::NanoUsd(1),
                )),
            )
            .tool("clock", ToolSpec::custom());
        for (name, spec) in agents {
            b = b.agent(*name, spec.clone());
        }
        Arc::new(b.build().expect("valid"))
    }

    /// The implementations of `m` and (when `clock`) of the tool `clock`.
    fn supplied(clock: bool) -> super::build::Supplied {
        let models: HashMap<String, Arc<dyn baton_core::Model>> = HashMap::from([(
            "m".to_string(),
            Arc::new(baton_core::ScriptedModel::always("m", "ok")) as Arc<dyn baton_core::Model>,
        )]);
        let mut tools: HashMap<String, Arc<dyn Tool>> = HashMap::new();
        if clock {
            let tool = baton_core::testing::FnTool::new("clock", |_, _| Ok("12:00".into()));
            tools.insert("clock".to_string(), Arc::new(tool));
        }
        (models, tools, McpTools::new())
    }

    /// A root over three workers with the tool each.
    fn fleet() -> Arc<Topology> {
        topology(&[
            ("root", AgentSpec::new(["m"]).children(["a", "b", "c"])),
            ("a", AgentSpec::new(["m"]).tools(["clock"])),
            ("b", AgentSpec::new(["m"]).tools(["clock"])),
            ("c", AgentSpec::new(["m"]).tools(["clock"])),
        ])
    }

    #[test]
    fn an_agents_plan_is_built_on_its_first_use_only() {
        let topology = fleet();
        // Lazy from the first agent, as a fleet past `EAGER_PLANS_UP_TO` is.
        let plan = Plan::build_eager_up_to(Arc::clone(&topology), supplied(true), None, None, 0)
            .expect("plan");
        assert_eq!(plan.agents.built(), 0, "nothing is built at start");
        let root = &plan.agents[plan.root];
        assert_eq!(&*root.name, "root");
        assert_eq!(plan.agents.built(), 1);
        // The root knows its children by name and index, and how they activate, without
        // building their plans.
        assert!(root.children.iter().all(
            |(_, i)| plan.agents.declared(*i).activation == baton_topologies::Activation::Lazy
        ));
        let b = root
            .children
            .iter()
            .find(|(n, _)| &**n == "b")
            .expect("b")
            .1;
        assert_eq!(b, topology.agent("b").expect("b").index());
        assert_eq!(plan.agents.built(), 1);
        let child = &plan.agents[b];
        assert_eq!((&*child.name, child.tools.len()), ("b", 1));
        assert!(
            Arc::ptr_eq(child, &plan.agents[b]),
            "built once, then shared"
        );
        assert_eq!(
            plan.agents.built(),
            2,
            "`a` and `c` never worked: never built"
        );
    }

    #[test]
    fn a_small_topology_has_every_plan_built_at_start() {
        let (models, tools, mcp) = supplied(true);
        let plan = Plan::build(fleet(), models, tools, mcp, None, None).expect("plan");
        assert_eq!(
            plan.agents.built(),
            4,
            "every agent's series exist from the first scrape"
        );
    }

    #[test]
    fn an_undeclared_tool_fails_the_start_not_the_first_use() {
        // `clock` is declared `custom` but not registered.
        let topology = topology(&[("root", AgentSpec::new(["m"]).tools(["clock"]))]);
        let err = Plan::build_eager_up_to(topology, supplied(false), None, None, 0)
            .err()
            .expect("refused at start");
        assert!(err.to_string().contains("clock"), "{err}");
    }
}
