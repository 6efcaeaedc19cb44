//! The report of one run: outcome, answer, totals, and per agent what it did and spent.

use std::collections::BTreeMap;

use baton_core::{AccountSnapshot, BudgetEvent, BudgetEventKind, CallRecord, NanoUsd, Outcome};
use serde::Serialize;

/// The report `baton run --json` prints.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RunReport {
    /// The root task's terminal outcome.
    pub outcome: Outcome,
    /// The root agent's final answer (when completed).
    pub answer: Option<String>,
    /// Why the run did not complete, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sums over every task of the run.
    pub totals: Totals,
    /// Per agent that ran, in order of first activity.
    pub agents: Vec<AgentReport>,
    /// Every task of the run (the root and each delegation) with its terminal outcome.
    pub tasks: Vec<TaskReport>,
    /// Per model: where the steps went, and what they cost.
    pub models: Vec<ModelReport>,
    /// The tokenomics scoreboard: value, ROI, energy, quality, re-sent context (see
    /// docs/tokenomics.md).
    pub scoreboard: crate::scoreboard::Scoreboard,
    /// The harness's policy decisions on the run's tool calls (allowed, requested, approved,
    /// denied, with the rule and why), task by task in the order of `tasks`.
    pub policy: Vec<TaskPolicyDecision>,
}

/// A policy decision and the task whose tool call it was about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskPolicyDecision {
    /// Task id.
    pub task: u64,
    /// The agent that made the call.
    pub agent: String,
    /// The decision.
    #[serde(flatten)]
    pub decision: baton_core::PolicyRecord,
}

/// What one model did in a run.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ModelReport {
    /// Model name (as in the topology).
    pub name: String,
    /// Calls booked (answered, or failed and billed).
    pub calls: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Money, in nano-dollars.
    pub cost_nanousd: u64,
    /// Energy of its calls, micro-joules (see `energy_method`).
    pub energy_uj: u64,
    /// How its energy was obtained: `measured`, `estimated`, or `unknown` (no figure).
    pub energy_method: baton_core::EnergyMethod,
}

/// Sums over a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Totals {
    /// Prompt tokens (cached included).
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cached prompt tokens.
    pub tokens_cached: u64,
    /// Prompt tokens written to the provider's cache.
    pub tokens_cache_write: u64,
    /// Prompt tokens an earlier call of the same task had already sent.
    pub tokens_resent: u64,
    /// Money, in nano-dollars.
    pub cost_nanousd: u64,
    /// Value credited to completed tasks, in nano-dollars.
    pub value_nanousd: u64,
    /// Energy of model and tool calls, micro-joules.
    pub energy_uj: u64,
    /// Loop iterations.
    pub steps: u64,
    /// Model calls.
    pub model_calls: u64,
    /// Tool calls, delegations included.
    pub tool_calls: u64,
    /// Failed model calls (provider errors, timeouts, malformed replies, panics).
    pub model_errors: u64,
    /// Model calls booked at Baton's conservative estimate because the server reported no usage.
    pub estimated_calls: u64,
    /// Steps kept on a local model because their task was private (a `sensitive` tool's output
    /// in its transcript, a `privacy: local_only` agent, or a private parent).
    pub private_steps: u64,
    /// Tokens of long tool output cut before they re-entered a model's context (about four
    /// characters a token).
    pub tool_tokens_saved: u64,
    /// Agent crashes followed by a restart.
    pub restarts: u64,
    /// Budget reroutes (to a cheaper model or a fallback agent).
    pub reroutes: u64,
    /// What routing saved: the same tokens on the priciest model of each agent's ladder, minus
    /// what was booked (nano-dollars). Only answers that were used count as savings; the cost of
    /// calls that failed or were set aside counts against them (never below zero).
    pub saved_vs_top_rung_nanousd: u64,
    /// Running time of the root task, in milliseconds: from when its agent began it to its end
    /// (the time it waited for a slot is `queued_ms`).
    pub wall_ms: u64,
    /// Time the root task waited before its agent began it (queued behind other tasks), in
    /// milliseconds. `queued_ms + wall_ms` is the time from submission to the end.
    pub queued_ms: u64,
}

/// What one agent did in a run (summed over its tasks).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct AgentReport {
    /// Agent name.
    pub name: String,
    /// Model calls.
    pub model_calls: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Money of its own calls, in nano-dollars (not its children's).
    pub cost_nanousd: u64,
    /// Value credited to its completed tasks, in nano-dollars.
    pub value_nanousd: u64,
    /// Energy of its own model and tool calls, micro-joules.
    pub energy_uj: u64,
    /// Prompt tokens its calls re-sent.
    pub tokens_resent: u64,
    /// Loop iterations.
    pub steps: u64,
    /// Tool calls, delegations included.
    pub tool_calls: u64,
    /// Tasks it ran.
    pub tasks: u64,
    /// Failed model calls.
    pub model_errors: u64,
    /// Model calls booked at Baton's estimate (the server reported no usage).
    pub estimated_calls: u64,
    /// Steps kept on a local model because the task was private.
    pub private_steps: u64,
    /// Times it crashed holding a task of this run and was restarted.
    pub restarts: u64,
    /// Times its budget was rerouted (to a cheaper model, or its task to its fallback).
    pub reroutes: u64,
    /// What happened to its budgets: refusals, cut-offs, reroutes, overruns.
    pub budget_events: Vec<TaskBudgetEvent>,
    /// The outcome of its last task (the worst, if any failed).
    pub outcome: Option<Outcome>,
}

/// A budget event and the task it happened to.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskBudgetEvent {
    /// Task id.
    pub task: u64,
    /// The event.
    #[serde(flatten)]
    pub event: BudgetEvent,
}

/// One task of a run.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskReport {
    /// Task id.
    pub task: u64,
    /// The delegating task, if any.
    pub parent: Option<u64>,
    /// The agent that ran it.
    pub agent: String,
    /// Its terminal outcome.
    pub outcome: Option<Outcome>,
    /// Its subtree's spend in nano-dollars.
    pub cost_nanousd: u64,
    /// Its own limit, if any.
    pub limit_nanousd: Option<u64>,
    /// Value credited to it (when it completed), in nano-dollars.
    pub value_nanousd: u64,
    /// Energy of its own model and tool calls, micro-joules.
    pub energy_uj: u64,
}

impl RunReport {
    /// Builds the report from the run's account tree (the ledger is the single source of truth for
    /// money and tokens), and the root task's outcome and answer.
    pub fn from_ledger(
        root: &AccountSnapshot,
        outcome: Outcome,
        answer: Option<String>,
        error: Option<String>,
    ) -> RunReport {
        let mut totals = Totals {
            wall_ms: u64::try_from(root.own.wall.saturating_sub(root.queued).as_millis())
                .unwrap_or(u64::MAX),
            queued_ms: u64::try_from(root.queued.as_millis()).unwrap_or(u64::MAX),
            ..Totals::default()
        };
        let mut agents: Vec<AgentReport> = Vec::new();
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut models: Vec<ModelReport> = Vec::new();
        let mut policy: Vec<TaskPolicyDecision> = Vec::new();
        let mut saved: i128 = 0;
        let mut stack: Vec<(&AccountSnapshot, Option<u64>)> = vec![(root, None)];
        while let Some((a, parent)) = stack.pop() {
            let reroutes = reroutes_of(a);
            totals.add(a, reroutes);
            // A one-model ladder: all the task's own usage went to that model.
            let sole = sole_model_record(a);
            for (c, n) in a
                .calls
                .iter()
                .map(|c| (c, 1))
                .chain(sole.as_ref().map(|c| (c, a.own.model_calls)))
            {
                // (The sole-model record holds the task's totals: counted once.)
                saved += i128::from(c.top_rung_cost.0) - i128::from(c.cost.0);
                ModelReport::add_to(&mut models, c, n);
            }
            let i = *by_name.entry(a.agent.as_str()).or_insert_with(|| {
                agents.push(AgentReport::new(a.agent.clone()));
                agents.len() - 1
            });
            agents[i].add(a, reroutes);
            policy.extend(a.policy.iter().map(|p| TaskPolicyDecision {
                task: a.task,
                agent: a.agent.clone(),
                decision: p.clone(),
            }));
            tasks.push(TaskReport {
                task: a.task,
                parent,
                agent: a.agent.clone(),
                outcome: a.outcome,
                cost_nanousd: a.spent.0,
                limit_nanousd: a.limit.map(|l: NanoUsd| l.0),
                value_nanousd: a.score.value.0,
                energy_uj: a.score.energy_uj(),
            });
            // Depth first, children in delegation order.
            for c in a.children.iter().rev() {
                stack.push((c, Some(a.task)));
            }
        }
        totals.saved_vs_top_rung_nanousd = u64::try_from(saved.max(0)).unwrap_or(u64::MAX);
        debug_assert_eq!(totals.cost_nanousd, root.spent.0, "ledger conservation");
        RunReport {
            scoreboard: crate::scoreboard::Scoreboard::from_sums(
                crate::scoreboard::ScoreSums::of_run(root, outcome),
            ),
            outcome,
            answer,
            error,
            totals,
            agents,
            tasks,
            models,
            policy,
        }
    }
}

/// The reroutes (to a cheaper model or to the fallback agent) among a task's budget events.
fn reroutes_of(a: &AccountSnapshot) -> u64 {
    a.events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                BudgetEventKind::ReroutedModel | BudgetEventKind::ReroutedAgent
            )
        })
        .count() as u64
}

/// A task of a one-model ladder keeps no per-call records: one record holding its own usage,
/// attributed to that model.
fn sole_model_record(a: &AccountSnapshot) -> Option<CallRecord> {
    let u = &a.own;
    a.sole_model
        .as_ref()
        .filter(|_| a.calls.is_empty() && u.model_calls > 0)
        .map(|m| CallRecord {
            step: 0,
            model: std::sync::Arc::from(m.as_str()),
            tokens: u.tokens,
            cost: u.cost,
            top_rung_cost: u.cost,
            energy: baton_core::Energy {
                microjoules: a.score.model_energy.total_uj(),
                method: if a.score.calls_without_energy > 0 {
                    baton_core::EnergyMethod::Unknown
                } else if a.score.model_energy.measured_uj > 0 {
                    baton_core::EnergyMethod::Measured
                } else {
                    baton_core::EnergyMethod::Estimated
                },
            },
        })
}

impl Totals {
    /// Adds one task's own figures (`reroutes` counted from its events).
    fn add(&mut self, a: &AccountSnapshot, reroutes: u64) {
        let u = &a.own;
        self.tokens_in += u.tokens.input;
        self.tokens_out += u.tokens.output;
        self.tokens_cached += u.tokens.cached_input;
        self.tokens_cache_write += u.tokens.cache_write_input;
        self.tokens_resent += a.score.tokens_resent;
        self.value_nanousd += a.score.value.0;
        self.energy_uj += a.score.energy_uj();
        self.cost_nanousd += u.cost.0;
        self.steps += u.steps;
        self.model_calls += u.model_calls;
        self.tool_calls += u.tool_calls;
        self.model_errors += a.model_errors;
        self.estimated_calls += a.estimated_calls;
        self.private_steps += a.private_steps;
        self.tool_tokens_saved += a.tool_tokens_saved;
        self.restarts += a.restarts;
        self.reroutes += reroutes;
    }
}

impl ModelReport {
    /// Adds `n` calls held by record `c` to its model's line in `models` (added when new).
    fn add_to(models: &mut Vec<ModelReport>, c: &CallRecord, n: u64) {
        let i = match models.iter().position(|m| m.name == *c.model) {
            Some(i) => i,
            None => {
                models.push(ModelReport {
                    name: c.model.to_string(),
                    calls: 0,
                    tokens_in: 0,
                    tokens_out: 0,
                    cost_nanousd: 0,
                    energy_uj: 0,
                    energy_method: c.energy.method,
                });
                models.len() - 1
            }
        };
        let m = &mut models[i];
        m.calls += n;
        m.tokens_in += c.tokens.input;
        m.tokens_out += c.tokens.output;
        m.cost_nanousd += c.cost.0;
        m.energy_uj += c.energy.microjoules;
        // A model with one call of unknown energy has an incomplete figure.
        if c.energy.method == baton_core::EnergyMethod::Unknown
            || m.energy_method == baton_core::EnergyMethod::Unknown
        {
            m.energy_method = baton_core::EnergyMethod::Unknown;
        } else if c.energy.method == baton_core::EnergyMethod::Estimated {
            m.energy_method = baton_core::EnergyMethod::Estimated;
        }
    }
}

impl AgentReport {
    /// An agent's line before any of its tasks is added.
    fn new(name: String) -> AgentReport {
        AgentReport {
            name,
            model_calls: 0,
            tokens_in: 0,
            tokens_out: 0,
            cost_nanousd: 0,
            value_nanousd: 0,
            energy_uj: 0,
            tokens_resent: 0,
            steps: 0,
            tool_calls: 0,
            tasks: 0,
            model_errors: 0,
            estimated_calls: 0,
            private_steps: 0,
            restarts: 0,
            reroutes: 0,
            budget_events: Vec::new(),
            outcome: None,
        }
    }

    /// Adds one of its tasks: its own figures, its budget events, and its outcome (a failure
    /// is not hidden by a later success).
    fn add(&mut self, a: &AccountSnapshot, reroutes: u64) {
        let u = &a.own;
        self.model_calls += u.model_calls;
        self.tokens_in += u.tokens.input;
        self.tokens_out += u.tokens.output;
        self.cost_nanousd += u.cost.0;
        self.value_nanousd += a.score.value.0;
        self.energy_uj += a.score.energy_uj();
        self.tokens_resent += a.score.tokens_resent;
        self.steps += u.steps;
        self.tool_calls += u.tool_calls;
        self.tasks += 1;
        self.model_errors += a.model_errors;
        self.estimated_calls += a.estimated_calls;
        self.private_steps += a.private_steps;
        self.restarts += a.restarts;
        self.reroutes += reroutes;
        self.budget_events
            .extend(a.events.iter().map(|e| TaskBudgetEvent {
                task: a.task,
                event: e.clone(),
            }));
        self.outcome = match (self.outcome, a.outcome) {
            (Some(prev), Some(Outcome::Completed)) if prev != Outcome::Completed => Some(prev),
            (_, o) => o,
        };
    }
}
