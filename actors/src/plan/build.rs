//! Building a [`Plan`] from a topology, in phases: the models (built-ins, HTTP, local, and the
//! caller's own), the tools (built-ins, the caller's, MCP servers'), the policy's roles, then one
//! [`AgentPlan`] per declared agent with its ladder, tools, schemas and metric handles.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::tools::{Chaos, Codeowners, LogSearch, MetricsSeries};
use baton_core::{Model, ScriptedModel, Tool, ToolSchema};
use baton_topologies::{AgentNode, ModelDef, NodeIndex, Provider, ToolDef, ToolKind, Topology};

use super::rung::{EnergySetup, Rung, make_rung};
use super::{
    AgentPlan, DENIAL_RULES, GatedTool, McpTools, OutcomeCounters, Plan, TOOL_OUTCOMES, ToolGate,
    ToolMetrics, delegate_schema, expand_tools,
};
use crate::error::{Component, RuntimeError};
use crate::observer::Observer;

/// A model instance beside its definition, by name.
pub(super) type Models = HashMap<Arc<str>, (Arc<dyn Model>, ModelDef)>;

/// The closest of `among` to `name`, for a did-you-mean.
fn near(name: &str, among: &[String]) -> Option<String> {
    baton_topologies::closest(name, among.iter().map(String::as_str)).map(str::to_string)
}

/// What the caller supplies beside the topology: its custom models and tools, and the MCP
/// servers' tools.
pub(super) type Supplied = (
    HashMap<String, Arc<dyn Model>>,
    HashMap<String, Arc<dyn Tool>>,
    McpTools,
);

/// Topologies of up to this many agents have every agent's plan built at start, metric handles
/// included, so that every agent's series exist (at zero) from the first scrape and Prometheus'
/// `increase()` counts their first events. Larger fleets build an agent's plan when it first
/// works: a declared agent costs its slot, not its handles (its series appear then).
pub(crate) const EAGER_PLANS_UP_TO: usize = 1024;

impl Plan {
    pub(crate) fn build(
        topology: Arc<Topology>,
        custom_models: HashMap<String, Arc<dyn Model>>,
        custom_tools: HashMap<String, Arc<dyn Tool>>,
        mcp: McpTools,
        observer: Option<Arc<dyn Observer>>,
        approver: Option<Arc<dyn crate::approval::Approver>>,
    ) -> Result<Plan, RuntimeError> {
        Self::build_eager_up_to(
            topology,
            (custom_models, custom_tools, mcp),
            observer,
            approver,
            EAGER_PLANS_UP_TO,
        )
    }

    /// [`Plan::build`], every agent's plan built at once when there are at most `eager_up_to`.
    pub(crate) fn build_eager_up_to(
        topology: Arc<Topology>,
        (custom_models, custom_tools, mcp): Supplied,
        observer: Option<Arc<dyn Observer>>,
        approver: Option<Arc<dyn crate::approval::Approver>>,
        eager_up_to: usize,
    ) -> Result<Plan, RuntimeError> {
        let models = build_models(&topology, custom_models)?;
        let mut tools = build_tools(&topology, custom_tools)?;
        add_mcp_tools(&topology, &mcp, &mut tools);
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
        let cpu_power = Arc::clone(&energy.cpu);
        let build = AgentBuild {
            topology,
            models,
            tools,
            mcp,
            energy,
        };
        // Every agent's models and tools resolve now, so that building its plan on its first
        // activation cannot fail.
        build.check()?;
        let root = build.topology.root().index();
        let supervision = build.topology.supervision().clone();
        let agents = super::Agents::new(build);
        if agents.len() <= eager_up_to {
            for i in 0..agents.len() {
                let _ = &agents[i];
            }
        }
        Ok(Plan {
            root,
            agents,
            observer,
            supervision,
            policy,
            approver: approver.unwrap_or_else(|| Arc::new(crate::approval::Unattended)),
            cpu_power,
            shared: None,
            claims: None,
            loop_budgets: std::collections::HashMap::new(),
            live: super::Live::default(),
        })
    }
}

/// Every model of the topology; each custom one must be registered, and each registered one
/// declared.
fn build_models(
    topology: &Topology,
    mut custom: HashMap<String, Arc<dyn Model>>,
) -> Result<Models, RuntimeError> {
    let registered: Vec<String> = custom.keys().cloned().collect();
    let mut models = Models::new();
    for m in topology.models() {
        let model: Arc<dyn Model> = match m.provider {
            Provider::Scripted => scripted_model(m)?,
            Provider::Openai | Provider::Anthropic => http_model(m)?,
            Provider::Local => local_model(m)?,
            Provider::Custom => {
                custom
                    .remove(&*m.name)
                    .ok_or_else(|| RuntimeError::NotRegistered {
                        kind: Component::Model,
                        name: m.name.to_string(),
                        registered: near(&m.name, &registered),
                    })?
            }
        };
        models.insert(Arc::clone(&m.name), (model, m.clone()));
    }
    if let Some(name) = custom.keys().next() {
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
    Ok(models)
}

/// A scripted model from its rules file, with its latency and faults.
fn scripted_model(m: &ModelDef) -> Result<Arc<dyn Model>, RuntimeError> {
    let rules = m.rules.as_deref().ok_or_else(|| RuntimeError::Setup {
        kind: Component::Model,
        name: m.name.to_string(),
        message: "a scripted model needs a rules file".into(),
    })?;
    let mut s = ScriptedModel::from_file(&m.name, rules).map_err(|source| RuntimeError::Model {
        model: m.name.to_string(),
        source,
    })?;
    if let Some(l) = m.latency {
        s = s.with_latency(l);
    }
    if let Some(f) = &m.faults {
        s = s.with_faults(f.clone());
    }
    Ok(Arc::new(s))
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

/// Every declared tool, gated (effect, output cap, timeout, dry run, sensitivity); each custom
/// one must be registered, and each registered one declared.
fn build_tools(
    topology: &Topology,
    mut custom: HashMap<String, Arc<dyn Tool>>,
) -> Result<HashMap<Arc<str>, GatedTool>, RuntimeError> {
    let registered: Vec<String> = custom.keys().cloned().collect();
    let mut tools = HashMap::new();
    for t in topology.tools() {
        let tool: Arc<dyn Tool> = match t.kind {
            ToolKind::Custom => {
                custom
                    .remove(&*t.name)
                    .ok_or_else(|| RuntimeError::NotRegistered {
                        kind: Component::Tool,
                        name: t.name.to_string(),
                        registered: near(&t.name, &registered),
                    })?
            }
            _ => builtin_tool(t)?,
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
    if let Some(name) = custom.keys().next() {
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
    Ok(tools)
}

/// A built-in tool, configured as declared.
fn builtin_tool(t: &ToolDef) -> Result<Arc<dyn Tool>, RuntimeError> {
    let path = t.path.clone().unwrap_or_default();
    Ok(match t.kind {
        ToolKind::MetricsSeries => Arc::new(MetricsSeries::new(&*t.name, path)),
        ToolKind::LogSearch => {
            let l = LogSearch::new(&*t.name, path);
            Arc::new(match &t.description {
                Some(d) => l.with_description(d),
                None => l,
            })
        }
        ToolKind::Codeowners => Arc::new(Codeowners::new(&*t.name, path)),
        ToolKind::RestartService => Arc::new(baton_core::tools::RestartService::new(&*t.name)),
        ToolKind::Chaos => Arc::new(Chaos::new(&*t.name, t.faults.clone().unwrap_or_default())),
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
            baton_providers::tools::HttpGet::new(&*t.name, t.allow.clone(), t.timeout).map_err(
                |e| RuntimeError::Setup {
                    kind: Component::Tool,
                    name: t.name.to_string(),
                    message: e.to_string(),
                },
            )?,
        ),
        ToolKind::Custom => {
            return Err(RuntimeError::Setup {
                kind: Component::Tool,
                name: t.name.to_string(),
                message: "a custom tool is registered by code, not built in".into(),
            });
        }
    })
}

/// The tools of the topology's MCP servers, gated with their server's settings.
fn add_mcp_tools(topology: &Topology, mcp: &McpTools, tools: &mut HashMap<Arc<str>, GatedTool>) {
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
}

/// What every agent's plan is built from: kept by the plan, which builds an agent's plan the first
/// time it is needed.
pub(crate) struct AgentBuild {
    pub(super) topology: Arc<Topology>,
    models: Models,
    tools: HashMap<Arc<str>, GatedTool>,
    mcp: McpTools,
    energy: EnergySetup,
}

impl AgentBuild {
    /// Checks that every agent's models and tools resolve, naming the first that does not.
    fn check(&self) -> Result<(), RuntimeError> {
        let graph = self.topology.graph();
        for node in graph.node_indices() {
            let a = &graph[node];
            let models = a
                .ladder
                .iter()
                .chain(a.context.as_ref().map(|c| &c.compactor));
            for m in models {
                if !self.models.contains_key(m) {
                    return Err(RuntimeError::Setup {
                        kind: Component::Model,
                        name: m.to_string(),
                        message: "not declared in the topology".into(),
                    });
                }
            }
            for t in expand_tools(&self.mcp, a.tools.iter().map(|t| &**t)) {
                if !self.tools.contains_key(t) {
                    return Err(RuntimeError::Setup {
                        kind: Component::Tool,
                        name: t.to_string(),
                        message: "not declared in the topology".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// One agent's plan: its ladder (each rung knowing its tools' token cost), tools, schemas,
    /// children, settings and metric handles. Its models and tools were resolved at start
    /// ([`AgentBuild::check`]); one that does not (it cannot happen) is left out, logged.
    pub(super) fn agent(&self, node: NodeIndex) -> AgentPlan {
        let (topology, graph) = (&*self.topology, self.topology.graph());
        let a: &AgentNode = &graph[node];
        let label = a.name.to_string();
        let rung = |m: &Arc<str>| match make_rung(&label, m, &self.models, &self.energy) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(agent = %label, "left off the ladder: {e}");
                None
            }
        };
        let mut ladder: Vec<Rung> = a.ladder.iter().filter_map(rung).collect();
        let compactor = a
            .context
            .as_ref()
            .and_then(|c| Some((rung(&c.compactor)?, c.clone())));
        let (tools, tool_gates): (Vec<Arc<dyn Tool>>, Vec<Arc<ToolGate>>) =
            expand_tools(&self.mcp, a.tools.iter().map(|t| &**t))
                .filter_map(|t| {
                    let found = self.tools.get(t).cloned();
                    if found.is_none() {
                        tracing::error!(agent = %label, tool = t, "left out: not declared");
                    }
                    found
                })
                .unzip();
        let children: Vec<(Arc<str>, usize)> = topology
            .delegates(node)
            .into_iter()
            .map(|c| (Arc::clone(&graph[c].name), c.index()))
            .collect();
        let mut schemas: Vec<ToolSchema> = tools.iter().map(|t| t.schema()).collect();
        if !children.is_empty() {
            schemas.push(delegate_schema(topology, &children));
        }
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
        let tool_metrics = tools
            .iter()
            .map(|t| tool_metrics(&label, t.name()))
            .collect();
        AgentPlan {
            tool_gates,
            role: a.role.clone(),
            denials: DENIAL_RULES.map(|rule| {
                metrics::counter!("baton_policy_denials_total", "agent" => label.clone(), "rule" => rule)
            }),
            top_price,
            sole_model,
            name: Arc::clone(&a.name),
            ladder,
            tools,
            schemas,
            children,
            budget: a.budget.clone(),
            system: a.system.clone(),
            tasks: OutcomeCounters::new(&label),
            supervision: a.supervision.clone(),
            restart: a.restart,
            on_crash: a.on_crash,
            on_budget_exceeded: a.on_budget_exceeded,
            fallback: topology.fallback(node).map(NodeIndex::index),
            quality_bar: a.quality_bar,
            min_confidence: a.min_confidence,
            on_missing_confidence: a.on_missing_confidence,
            on_truncated: a.on_truncated,
            local_only: a.privacy == baton_topologies::Privacy::LocalOnly,
            private_steps: metrics::counter!("baton_privacy_local_steps_total", "agent" => label.clone()),
            restarts: metrics::counter!("baton_restarts_total", "agent" => label.clone()),
            cutoffs: metrics::counter!("baton_budget_cutoffs_total", "agent" => label.clone()),
            reroutes_model: metrics::counter!("baton_budget_reroutes_total", "agent" => label.clone(), "reason" => "cheaper_model"),
            reroutes_agent: metrics::counter!("baton_budget_reroutes_total", "agent" => label.clone(), "reason" => "fallback_agent"),
            escalations: metrics::counter!("baton_escalations_total", "supervisor" => label.clone()),
            refusals: metrics::counter!("baton_budget_refusals_total", "agent" => label.clone()),
            remaining: metrics::gauge!("baton_budget_remaining_usd", "agent" => label.clone()),
            running: metrics::gauge!("baton_agents_running", "agent" => label.clone()),
            tool_metrics,
            value: a.value.clone(),
            compactor,
            resent: metrics::counter!("baton_resent_tokens_total", "agent" => label.clone()),
            free_steps: metrics::counter!("baton_free_tier_steps_total", "agent" => label.clone()),
            max_concurrency: a.max_concurrency.max(1),
            queue: a.queue,
            max_parallel_tools: a.max_parallel_tools.max(1),
            steps: metrics::counter!("baton_agent_steps_total", "agent" => label),
        }
    }
}

/// An agent's handles on one tool's metrics.
fn tool_metrics(agent: &str, tool: &str) -> ToolMetrics {
    let labels = [("agent", agent.to_string()), ("tool", tool.to_string())];
    ToolMetrics {
        saved: metrics::counter!("baton_tool_output_tokens_saved_total", "agent" => agent.to_string(), "tool" => tool.to_string()),
        calls: TOOL_OUTCOMES.map(|o| {
            metrics::counter!("baton_tool_calls_total", "agent" => agent.to_string(), "tool" => tool.to_string(), "outcome" => o)
        }),
        duration: metrics::histogram!("baton_tool_duration_seconds", &labels[..]),
        cpu: metrics::histogram!("baton_tool_cpu_seconds", &labels[..]),
        energy_uj: super::ENERGY_METHODS.map(|method| {
            metrics::counter!("baton_energy_uj_total", "kind" => "tool", "method" => method, "model" => "")
        }),
    }
}
