//! The sub-agent actor: runs the loop for one task at a time.
//!
//! route → reserve → call model → commit → run tools (or delegate) → observe → repeat, until the
//! model answers without tool calls (completed), a reservation is refused (budget_exceeded), the
//! deadline passes (timed_out), `max_steps` is reached, or every model on the ladder fails (failed).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use baton_core::{
    Account, Budget, Envelope, Message, ModelRequest, ModelResponse, NanoUsd, Outcome, Refusal,
    Role, ToolCall, Usage, Usd,
};
use baton_topologies::{DEFAULT_MAX_STEPS, DELEGATE_TOOL};
use futures::FutureExt;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;

use crate::observer::Event;
use crate::plan::{AgentPlan, Plan};

/// Delegations deeper than this are refused: a guard against handoff loops.
pub(crate) const MAX_HOPS: u32 = 64;

/// A task handed to an agent, with the account its spending is booked to.
pub(crate) struct Assignment {
    pub(crate) envelope: Envelope<String>,
    pub(crate) account: Account,
}

/// How a task ended.
#[derive(Clone, Debug)]
pub struct TaskResult {
    /// The terminal outcome.
    pub outcome: Outcome,
    /// The answer (completed) or the reason it ended (otherwise).
    pub text: String,
}

/// Where an agent sends its result.
pub(crate) enum ReplyTo {
    /// To a parent agent waiting in a call.
    Parent(RpcReplyPort<Envelope<TaskResult>>),
    /// To the caller of a run (a root task, admitted by the conductor into its task table).
    Caller(RpcReplyPort<Envelope<TaskResult>>),
}

/// Messages an agent actor handles.
pub(crate) enum AgentMsg {
    Run(Box<Assignment>, ReplyTo),
}

/// The actor type of every agent.
pub(crate) struct AgentActor;

pub(crate) struct AgentArgs {
    pub(crate) plan: Arc<Plan>,
    pub(crate) me: usize,
}

pub(crate) struct AgentState {
    plan: Arc<Plan>,
    me: Arc<AgentPlan>,
    /// Children are activated on their first task (cheap agents), and forgotten when they stop.
    children: Vec<Option<ActorRef<AgentMsg>>>,
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let me = Arc::clone(&args.plan.agents[args.me]);
        Ok(AgentState {
            children: vec![None; me.children.len()],
            plan: args.plan,
            me,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Run(assignment, reply) => {
                let Assignment {
                    mut envelope,
                    account,
                } = *assignment;
                let task = std::mem::take(&mut envelope.payload);
                if matches!(reply, ReplyTo::Caller(_)) {
                    state
                        .plan
                        .tasks
                        .insert(envelope.task, (account.clone(), myself.get_id()));
                }
                let result = run_task(&myself, state, &envelope, task, &account).await;
                account.finish(result.outcome);
                state.observe(&Event::Finished {
                    agent: &state.me.name,
                    task: envelope.task.0,
                    outcome: result.outcome,
                    detail: &result.text,
                });
                state.me.tasks.count(result.outcome);
                let usage = Usage {
                    cost: account.spent(),
                    ..Usage::default()
                };
                let out = envelope.reply(Arc::clone(&state.me.name), usage, result);
                // A caller that gave up is not an error of ours.
                match reply {
                    ReplyTo::Parent(port) => drop(port.send(out)),
                    ReplyTo::Caller(port) => {
                        state.plan.tasks.remove(&out.task);
                        drop(port.send(out));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<AgentMsg>,
        event: SupervisionEvent,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // The default would stop this agent when a child stops. Instead forget the child; it is
        // activated again on its next task.
        if let SupervisionEvent::ActorFailed(cell, _)
        | SupervisionEvent::ActorTerminated(cell, _, _) = &event
        {
            for slot in &mut state.children {
                if slot.as_ref().is_some_and(|c| c.get_id() == cell.get_id()) {
                    *slot = None;
                }
            }
        }
        Ok(())
    }
}

impl AgentState {
    fn observe(&self, event: &Event<'_>) {
        if let Some(o) = &self.plan.observer {
            o.on_event(event);
        }
    }
}

fn end(outcome: Outcome, text: impl Into<String>) -> TaskResult {
    TaskResult {
        outcome,
        text: text.into(),
    }
}

async fn run_task(
    myself: &ActorRef<AgentMsg>,
    state: &mut AgentState,
    env: &Envelope<String>,
    task: String,
    account: &Account,
) -> TaskResult {
    let me = Arc::clone(&state.me);
    let max_steps = env.budget.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
    let mut messages: Vec<Message> = Vec::with_capacity(2 + 2 * max_steps.min(16) as usize);
    if let Some(system) = &me.system {
        messages.push(Message::new(Role::System, system.as_str()));
    }
    messages.push(Message::new(Role::User, task));
    for step in 1..=max_steps {
        if env.deadline.is_some_and(|d| Instant::now() >= d) {
            return end(Outcome::TimedOut, "deadline passed");
        }
        account.record_step();
        me.steps.increment(1);
        let response = match call_ladder(state, &me, env, account, step, &messages).await {
            Ok(r) => r,
            Err(result) => return result,
        };
        let ModelResponse {
            text, tool_calls, ..
        } = response;
        if tool_calls.is_empty() {
            return end(Outcome::Completed, text.unwrap_or_default());
        }
        let mut observations: Vec<(String, String)> = Vec::with_capacity(tool_calls.len());
        for call in &tool_calls {
            account.record_tool_call();
            state.observe(&Event::ToolCall {
                agent: &me.name,
                task: env.task.0,
                tool: &call.name,
                arguments: &call.arguments,
            });
            let observation = if call.name == DELEGATE_TOOL {
                delegate(myself, state, env, account, call).await
            } else {
                run_tool(&me, env, call).await
            };
            state.observe(&Event::Observation {
                agent: &me.name,
                task: env.task.0,
                tool: &call.name,
                text: &observation,
            });
            observations.push((call.id.clone(), observation));
        }
        // The model sees its own turn, then each result in call order.
        messages.push(Message {
            role: Role::Assistant,
            content: text.unwrap_or_default(),
            tool_calls,
            tool_call_id: None,
        });
        for (id, content) in observations {
            messages.push(Message {
                role: Role::Tool,
                content,
                tool_calls: Vec::new(),
                tool_call_id: Some(id),
            });
        }
    }
    end(
        Outcome::MaxSteps,
        format!("no answer after {max_steps} steps"),
    )
}

/// Routes one step: the cheapest model on the ladder whose worst case fits the budget, escalating to
/// the next on a provider failure.
async fn call_ladder(
    state: &AgentState,
    me: &AgentPlan,
    env: &Envelope<String>,
    account: &Account,
    step: u32,
    messages: &[Message],
) -> Result<ModelResponse, TaskResult> {
    let mut refusal: Option<Refusal> = None;
    let mut failure: Option<String> = None;
    for rung in &me.ladder {
        let request = ModelRequest {
            agent: &me.name,
            step,
            messages,
            tools: &me.schemas,
            max_tokens: rung.max_output,
        };
        let input = rung.model.estimate_input_tokens(&request);
        let max_out = u64::from(rung.max_output);
        let worst = rung.price.worst_case(input, max_out);
        let reservation = match account.reserve(worst, input + max_out) {
            Ok(r) => r,
            Err(r) => {
                metrics::counter!("baton_budget_refusals_total", "agent" => me.name.to_string())
                    .increment(1);
                refusal = Some(r);
                continue;
            }
        };
        let call = AssertUnwindSafe(rung.model.call(request)).catch_unwind();
        let result = match env.deadline {
            Some(d) => match tokio::time::timeout_at(d, call).await {
                Ok(r) => r,
                // The reservation is released on drop: an abandoned call books nothing.
                Err(_) => {
                    return Err(end(
                        Outcome::TimedOut,
                        format!("deadline passed waiting for {}", rung.name),
                    ));
                }
            },
            None => call.await,
        };
        match result {
            Ok(Ok(response)) => {
                let cost = rung.price.cost(&response.usage);
                reservation.commit(&response.usage, cost);
                rung.requests_ok.increment(1);
                rung.tokens_in.increment(response.usage.input);
                rung.tokens_out.increment(response.usage.output);
                rung.tokens_cached.increment(response.usage.cached_input);
                state.observe(&Event::Step {
                    agent: &me.name,
                    task: env.task.0,
                    step,
                    model: &rung.name,
                    usage: &response.usage,
                    cost,
                });
                return Ok(response);
            }
            Ok(Err(e)) => {
                drop(reservation);
                rung.requests_err.increment(1);
                let msg = e.to_string();
                state.observe(&Event::ModelFailed {
                    agent: &me.name,
                    task: env.task.0,
                    model: &rung.name,
                    error: &msg,
                });
                failure = Some(msg);
            }
            Err(panic) => {
                drop(reservation);
                rung.requests_err.increment(1);
                let msg = format!("model `{}` panicked: {}", rung.name, panic_text(&*panic));
                state.observe(&Event::ModelFailed {
                    agent: &me.name,
                    task: env.task.0,
                    model: &rung.name,
                    error: &msg,
                });
                failure = Some(msg);
            }
        }
    }
    Err(match (failure, refusal) {
        (Some(f), _) => end(Outcome::Failed, f),
        (None, Some(r)) => end(Outcome::BudgetExceeded, r.to_string()),
        (None, None) => end(Outcome::Failed, "the agent has no model"),
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn run_tool(me: &AgentPlan, env: &Envelope<String>, call: &ToolCall) -> String {
    let Some(tool) = me.tools.iter().find(|t| t.name() == call.name) else {
        let names: Vec<&str> = me.schemas.iter().map(|s| s.name.as_str()).collect();
        return format!(
            "error: no tool named `{}`; available: {}",
            call.name,
            names.join(", ")
        );
    };
    let run = AssertUnwindSafe(tool.call(call.arguments.clone())).catch_unwind();
    let result = match env.deadline {
        Some(d) => match tokio::time::timeout_at(d, run).await {
            Ok(r) => r,
            Err(_) => {
                return format!(
                    "error: tool `{}` did not finish before the deadline",
                    call.name
                );
            }
        },
        None => run.await,
    };
    let outcome = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "panic",
    };
    metrics::counter!("baton_tool_calls_total", "agent" => me.name.to_string(), "tool" => call.name.clone(), "outcome" => outcome)
        .increment(1);
    match result {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => format!("error: {e}"),
        Err(p) => format!("error: tool `{}` panicked: {}", call.name, panic_text(&*p)),
    }
}

/// Hands a sub-task to a child: opens its account under ours with its budget (capped by
/// `budget_usd` when given), activates the child if needed, and waits for exactly one result.
async fn delegate(
    myself: &ActorRef<AgentMsg>,
    state: &mut AgentState,
    env: &Envelope<String>,
    account: &Account,
    call: &ToolCall,
) -> String {
    let me = Arc::clone(&state.me);
    let (Some(target), Some(task)) = (
        call.arguments.get("agent").and_then(|v| v.as_str()),
        call.arguments.get("task").and_then(|v| v.as_str()),
    ) else {
        return "error: delegate needs `agent` and `task` (strings)".into();
    };
    let Some(slot) = me.children.iter().position(|(n, _)| &**n == target) else {
        let names: Vec<&str> = me.children.iter().map(|(n, _)| &**n).collect();
        return format!(
            "error: `{target}` is not one of your sub-agents ({})",
            names.join(", ")
        );
    };
    if env.hops >= MAX_HOPS {
        return format!("error: delegation depth limit ({MAX_HOPS}) reached");
    }
    let child_plan = Arc::clone(&state.plan.agents[me.children[slot].1]);
    let mut budget: Budget = child_plan.budget.clone();
    if let Some(v) = call.arguments.get("budget_usd").filter(|v| !v.is_null()) {
        match serde_json::from_value::<Usd>(v.clone()) {
            Ok(cap) if cap.0 > NanoUsd::ZERO => {
                budget.max_cost = Some(budget.max_cost.map_or(cap.0, |c| c.min(cap.0)));
            }
            Ok(_) => return "error: `budget_usd` must be more than zero".into(),
            Err(e) => return format!("error: `budget_usd`: {e}"),
        }
    }
    let child_env = env.child(Arc::clone(&me.name), budget, task.to_string());
    let child_account = account.open_child(
        child_env.task.0,
        Arc::clone(&child_plan.name),
        child_env.budget.max_cost,
        child_env.budget.max_tokens,
    );
    let child = match &state.children[slot] {
        Some(c) => c.clone(),
        None => {
            let args = AgentArgs {
                plan: Arc::clone(&state.plan),
                me: me.children[slot].1,
            };
            match Actor::spawn_linked(None, AgentActor, args, myself.get_cell()).await {
                Ok((c, _)) => {
                    state.children[slot] = Some(c.clone());
                    c
                }
                Err(e) => {
                    child_account.finish(Outcome::Failed);
                    return format!("error: could not start `{target}`: {e}");
                }
            }
        }
    };
    let assignment = Box::new(Assignment {
        envelope: child_env,
        account: child_account.clone(),
    });
    match child
        .call(
            |port| AgentMsg::Run(assignment, ReplyTo::Parent(port)),
            None,
        )
        .await
    {
        Ok(CallResult::Success(result)) => match result.payload.outcome {
            Outcome::Completed => result.payload.text,
            o => format!("`{target}` ended {o}: {}", result.payload.text),
        },
        Ok(_) | Err(_) => {
            // The child died with our task: it ends failed, exactly once, and its spend stays booked.
            state.children[slot] = None;
            child_account.finish(Outcome::Failed);
            state.plan.agents[me.children[slot].1]
                .tasks
                .count(Outcome::Failed);
            format!("`{target}` ended failed: the agent crashed")
        }
    }
}
