//! `agents:` (and `templates:`) in a topology file: an agent's models, tools, children, budget,
//! supervision and routing settings, and how a template's settings are inherited.

use super::*;

/// An agent declaration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// A template (under `templates:`) whose settings this agent inherits; its own settings win.
    /// Lists (models, tools) replace the template's when given; `budget` and `supervision` merge
    /// key by key; `children` and `delegates` are never inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
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
    /// The children it may delegate to (default: all of them). Delegation stays within supervision:
    /// each must be one of its children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegates: Option<Vec<String>>,
    /// Limits per task.
    #[serde(default, skip_serializing_if = "is_default_budget")]
    pub budget: BudgetSpec,
    /// How it supervises its children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<SupervisionSpec>,
    /// When its supervisor restarts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartType>,
    /// What happens to its task when it crashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_crash: Option<OnCrash>,
    /// What its supervisor does when its task exceeds the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_budget_exceeded: Option<BudgetAction>,
    /// A sibling that takes over the rest of a task on `reroute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// When its actor starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// The lowest model quality (0 to 100) the router may use for it.
    #[serde(
        default,
        deserialize_with = "quality_bar_pct",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 100))]
    pub quality_bar: Option<u8>,
    /// The least confidence (percent, 0 to 100) it accepts from a local-tier model: a reply the
    /// model is less sure of is set aside (still paid for) and the step goes up the ladder.
    #[serde(
        default,
        deserialize_with = "min_confidence_pct",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 100))]
    pub min_confidence: Option<u8>,
    /// What a tool call cut at the model's `max_output_tokens` becomes: `escalate` (asked again
    /// one rung up, when there is one; default), `accept` (used, marked truncated) or `fail`.
    /// A truncated text answer is always used, marked truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_truncated: Option<Truncated>,
    /// With `min_confidence`: what a reply from a local-tier model that carries no usable
    /// probabilities becomes — `escalate` (set aside, one rung up; default), `accept`, or `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_missing_confidence: Option<MissingConfidence>,
    /// Its role under `policy.roles`: then it may call only that role's tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How many tasks it runs at once (default 1024); `1` runs its tasks one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// How many tasks may wait beyond `max_concurrency` (default 8192); a task that finds the
    /// queue full ends `busy` at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Whether the tool calls of one reply run concurrently (default true): reads and delegations
    /// together, then writes and destructive calls one at a time in the model's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The most tool calls of one reply that run at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tools: Option<u32>,
    /// `local_only`: every step of its tasks (and of the tasks they delegate) is served by
    /// `tier: local` models only, from the start (default `any`: until a `sensitive` tool's
    /// output enters the transcript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Privacy>,
    /// What its completed tasks are worth (the scoreboard's value and ROI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSpec>,
    /// Transcript compaction for long tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextSpec>,
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

    /// Sets how it supervises its children.
    pub fn supervision(mut self, supervision: SupervisionSpec) -> AgentSpec {
        self.supervision = Some(supervision);
        self
    }

    /// Sets its restart type.
    pub fn restart(mut self, restart: RestartType) -> AgentSpec {
        self.restart = Some(restart);
        self
    }

    /// Sets what happens to its task when it crashes.
    pub fn on_crash(mut self, on_crash: OnCrash) -> AgentSpec {
        self.on_crash = Some(on_crash);
        self
    }

    /// Sets its budget action, and the fallback agent for `reroute`.
    pub fn on_budget_exceeded(mut self, action: BudgetAction, fallback: Option<&str>) -> AgentSpec {
        self.on_budget_exceeded = Some(action);
        self.fallback = fallback.map(str::to_string);
        self
    }

    /// Sets when its actor starts.
    pub fn activation(mut self, activation: Activation) -> AgentSpec {
        self.activation = Some(activation);
        self
    }

    /// Sets its role under the policy.
    pub fn role(mut self, role: impl Into<String>) -> AgentSpec {
        self.role = Some(role.into());
        self
    }

    /// Inherits a template's settings.
    pub fn extends(mut self, template: impl Into<String>) -> AgentSpec {
        self.extends = Some(template.into());
        self
    }

    /// Restricts delegation to these children.
    pub fn delegates<S: Into<String>>(mut self, agents: impl IntoIterator<Item = S>) -> AgentSpec {
        self.delegates = Some(agents.into_iter().map(Into::into).collect());
        self
    }

    /// This agent's settings over `base`'s (see [`AgentSpec::extends`]).
    pub fn inherit(&self, base: &AgentSpec) -> AgentSpec {
        let budget = BudgetSpec {
            max_usd: self.budget.max_usd.or(base.budget.max_usd),
            max_tokens: self.budget.max_tokens.or(base.budget.max_tokens),
            max_steps: self.budget.max_steps.or(base.budget.max_steps),
            max_wall: self.budget.max_wall.or(base.budget.max_wall),
        };
        let supervision = match (&self.supervision, &base.supervision) {
            (Some(s), Some(b)) => Some(SupervisionSpec {
                strategy: s.strategy.or(b.strategy),
                max_restarts: s.max_restarts.or(b.max_restarts),
                within: s.within.or(b.within),
                shutdown: s.shutdown.or(b.shutdown),
            }),
            (s, b) => s.clone().or_else(|| b.clone()),
        };
        let pick = |own: &Vec<String>, theirs: &Vec<String>| {
            if own.is_empty() {
                theirs.clone()
            } else {
                own.clone()
            }
        };
        AgentSpec {
            extends: None,
            description: self
                .description
                .clone()
                .or_else(|| base.description.clone()),
            system: self.system.clone().or_else(|| base.system.clone()),
            models: pick(&self.models, &base.models),
            tools: pick(&self.tools, &base.tools),
            children: self.children.clone(),
            delegates: self.delegates.clone(),
            budget,
            supervision,
            restart: self.restart.or(base.restart),
            on_crash: self.on_crash.or(base.on_crash),
            on_budget_exceeded: self.on_budget_exceeded.or(base.on_budget_exceeded),
            fallback: self.fallback.clone().or_else(|| base.fallback.clone()),
            activation: self.activation.or(base.activation),
            quality_bar: self.quality_bar.or(base.quality_bar),
            min_confidence: self.min_confidence.or(base.min_confidence),
            on_missing_confidence: self.on_missing_confidence.or(base.on_missing_confidence),
            on_truncated: self.on_truncated.or(base.on_truncated),
            role: self.role.clone().or_else(|| base.role.clone()),
            max_concurrency: self.max_concurrency.or(base.max_concurrency),
            queue: self.queue.or(base.queue),
            parallel_tool_calls: self.parallel_tool_calls.or(base.parallel_tool_calls),
            max_parallel_tools: self.max_parallel_tools.or(base.max_parallel_tools),
            privacy: self.privacy.or(base.privacy),
            value: self.value.clone().or_else(|| base.value.clone()),
            context: self.context.clone().or_else(|| base.context.clone()),
        }
    }

    /// Sets what its completed tasks are worth.
    pub fn value(mut self, value: ValueSpec) -> AgentSpec {
        self.value = Some(value);
        self
    }

    /// Sets the lowest model quality the router may use for it.
    pub fn quality_bar(mut self, bar: u8) -> AgentSpec {
        self.quality_bar = Some(bar);
        self
    }

    /// Sets the least confidence (percent) it accepts from a local-tier model.
    pub fn min_confidence(mut self, percent: u8) -> AgentSpec {
        self.min_confidence = Some(percent);
        self
    }

    /// Sets how many tasks it runs at once and how many may wait beyond that.
    pub fn concurrency(mut self, max_concurrency: u32, queue: u32) -> AgentSpec {
        self.max_concurrency = Some(max_concurrency);
        self.queue = Some(queue);
        self
    }

    /// Sets whether one reply's tool calls run concurrently, and how many at once.
    pub fn parallel_tools(mut self, parallel: bool, max: u32) -> AgentSpec {
        self.parallel_tool_calls = Some(parallel);
        self.max_parallel_tools = Some(max);
        self
    }
}
