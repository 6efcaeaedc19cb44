//! The sub-agent actor: runs the loop for one task at a time, and supervises its children.
//!
//! route → reserve → call model → commit → run tools (or delegate) → observe → repeat, until the
//! model answers without tool calls (completed), a reservation is refused (budget_exceeded), the
//! deadline passes (timed_out), the task is cancelled, `max_steps` is reached, or every model on the
//! ladder fails (failed).
//!
//! Failures the loop expects are handled in it: a provider error, a timeout or a malformed reply
//! escalates to the next model on the ladder; a tool error or an unknown tool is an observation.
//! A panic is not expected: it crashes the agent ("let it crash"), and its supervisor restarts it
//! and retries or fails the task it held, per the topology.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use baton_core::{
    Account, Budget, BudgetEventKind, CallRecord, Envelope, Message, ModelError, ModelRequest,
    ModelResponse, NanoUsd, Outcome, Refusal, Role, ToolCall, Usage, Usd,
};
use baton_topologies::{BudgetAction, DEFAULT_MAX_STEPS, DELEGATE_TOOL, OnCrash};
use futures::FutureExt;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;
use tracing::Instrument;

use crate::observer::Event;
use crate::plan::{AgentPlan, Plan, Rung};
use crate::supervisor::{Abort, Children};
use crate::telemetry::CpuTimed;

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
    /// To the caller of a run (a root task, recorded in the conductor's task table).
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
    children: Children,
}

impl Drop for AgentState {
    /// The state lives exactly as long as the actor runs, crash or not.
    fn drop(&mut self) {
        self.me.running.decrement(1.0);
    }
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
        me.running.increment(1.0);
        Ok(AgentState {
            children: Children::new(&args.plan, args.me),
            plan: args.plan,
            me,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .children
            .start_eager(&state.plan, &myself.get_cell())
            .await?;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // Stop children in reverse start order, each within its shutdown time.
        state.children.stop_all().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        let AgentMsg::Run(assignment, reply) = msg;
        let Assignment {
            mut envelope,
            account,
        } = *assignment;
        let task = std::mem::take(&mut envelope.payload);
        account.mark_started();
        if let Some(m) = &state.me.sole_model {
            account.set_sole_model(Arc::clone(m));
        }
        if matches!(reply, ReplyTo::Caller(_)) {
            state
                .plan
                .tasks
                .insert(envelope.task, (account.clone(), myself.get_id()));
        }
        let span = if tracing::enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "task",
                task = envelope.task.0,
                parent = envelope.parent.map(|p| p.0),
                trace = envelope.trace.0,
                agent = %state.me.name,
                hops = envelope.hops,
                otel.name = %format_args!("invoke_agent {}", state.me.name),
                gen_ai.operation.name = "invoke_agent",
                gen_ai.agent.name = %state.me.name,
                baton.outcome = tracing::field::Empty,
                baton.cost_nanousd = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let run = AssertUnwindSafe(run_task(&myself, state, &envelope, task, &account))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let result = match run {
            Ok(Ok(result)) => result,
            // Let it crash: the supervisor decides what happens to the task (retry or fail).
            Ok(Err(Abort(why))) => {
                account.record_crash(why.clone());
                state.children.stop_all().await;
                return Err(why.into());
            }
            Err(panic) => {
                let why = format!("`{}` crashed: {}", state.me.name, panic_text(&*panic));
                account.record_crash(why.clone());
                state.children.stop_all().await;
                return Err(why.into());
            }
        };
        if account.finish(result.outcome) {
            state.me.tasks.count(result.outcome);
        }
        if !span.is_none() {
            span.record("baton.outcome", result.outcome.as_str());
            span.record("baton.cost_nanousd", otel_int(account.spent().0));
        }
        state.plan.observe(&Event::Finished {
            agent: &state.me.name,
            task: envelope.task.0,
            outcome: result.outcome,
            detail: &result.text,
        });
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
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<AgentMsg>,
        event: SupervisionEvent,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // A child that stopped while we were not waiting on it (a crash during a delegation is
        // handled where the delegation waits, and its actor is no longer in its slot by now).
        let (cell, crashed, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, true, format!("crashed: {e}")),
            SupervisionEvent::ActorTerminated(cell, _, r) => (
                cell,
                false,
                format!("stopped: {}", r.as_deref().unwrap_or("normal exit")),
            ),
            _ => return Ok(()),
        };
        let Some(i) = state.children.find(cell) else {
            return Ok(());
        };
        if let Err(Abort(why)) = state
            .children
            .exited(i, crashed, &reason, &state.plan, &myself.get_cell())
            .await
        {
            state.children.stop_all().await;
            return Err(why.into());
        }
        Ok(())
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
) -> Result<TaskResult, Abort> {
    let me = Arc::clone(&state.me);
    let max_steps = env.budget.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
    let mut messages: Vec<Message> = Vec::with_capacity(2 + 2 * max_steps.min(16) as usize);
    // Destructive calls already made as dry runs in this task, for the dry-run-first rule.
    let mut dry_runs: Vec<(String, serde_json::Value)> = Vec::new();
    if let Some(system) = &me.system {
        messages.push(Message::new(Role::System, system.as_str()));
    }
    messages.push(Message::new(Role::User, task));
    // The step's quality bar: the agent's, raised for the step after a bad answer.
    let mut bar = me.quality_bar;
    for step in 1..=max_steps {
        if account.is_cancelled() {
            return Ok(end(Outcome::Cancelled, "cancelled"));
        }
        if env.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(end(Outcome::TimedOut, "deadline passed"));
        }
        account.record_step();
        me.steps.increment(1);
        // Spans cost a poll-time enter and exit even when nobody listens: only when enabled.
        let ladder = call_ladder(&state.plan, &me, env, account, (step, bar), &messages);
        let routed = if tracing::enabled!(tracing::Level::DEBUG) {
            ladder
                .instrument(tracing::debug_span!("step", step, task = env.task.0, agent = %me.name))
                .await
        } else {
            ladder.await
        };
        let (response, answered) = match routed? {
            Ok(r) => r,
            Err(result) => return Ok(result),
        };
        let ModelResponse {
            text, tool_calls, ..
        } = response;
        if tool_calls.is_empty() {
            return Ok(end(Outcome::Completed, text.unwrap_or_default()));
        }
        let mut observations: Vec<(String, String)> = Vec::with_capacity(tool_calls.len());
        let mut bad_call = false;
        for call in &tool_calls {
            account.record_tool_call();
            state.plan.observe(&Event::ToolCall {
                agent: &me.name,
                task: env.task.0,
                tool: &call.name,
                arguments: &call.arguments,
            });
            let span = if tracing::enabled!(tracing::Level::INFO) {
                tracing::info_span!(
                    "execute_tool",
                    otel.name = %format_args!("execute_tool {}", call.name),
                    gen_ai.operation.name = "execute_tool",
                    gen_ai.tool.name = %call.name,
                    gen_ai.tool.call.id = %call.id,
                    gen_ai.tool.type = "function",
                    gen_ai.agent.name = %me.name,
                    baton.task = otel_int(env.task.0),
                )
            } else {
                tracing::Span::none()
            };
            let observation = if call.name == DELEGATE_TOOL {
                Box::pin(delegate(myself, state, env, account, call))
                    .instrument(span)
                    .await?
            } else {
                match Box::pin(run_tool(
                    &state.plan,
                    &me,
                    env,
                    account,
                    call,
                    (&mut dry_runs, &mut bad_call),
                ))
                .instrument(span)
                .await?
                {
                    Some(o) => o,
                    None => return Ok(end(Outcome::Cancelled, "cancelled")),
                }
            };
            state.plan.observe(&Event::Observation {
                agent: &me.name,
                task: env.task.0,
                tool: &call.name,
                text: &observation,
            });
            observations.push((call.id.clone(), observation));
        }
        // A bad answer (a call of no tool, or arguments that do not fit) raises the next step's
        // bar above the model that gave it, if the ladder has a better one; a good one resets it.
        bar = me.quality_bar;
        if bad_call
            && let Some(better) = me
                .ladder
                .iter()
                .map(|r| r.quality)
                .filter(|q| *q > me.ladder[answered].quality)
                .min()
        {
            bar = better.max(me.quality_bar);
            let reason = format!("invalid tool call: the next step needs quality {better} or more");
            escalated(&state.plan, &me, env, &me.ladder[answered].name, &reason);
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
    Ok(end(
        Outcome::MaxSteps,
        format!("no answer after {max_steps} steps"),
    ))
}

enum Attempt {
    Answered(ModelResponse),
    Refused(Refusal),
    Failed(String),
    Ended(TaskResult),
    Crash(String),
}

/// Routes one step: the cheapest model on the ladder that clears the agent's quality bar and whose
/// worst case fits the budget, escalating to the next on a failure. With `reroute`, when nothing at
/// or above the bar fits, a cheaper model below the bar is tried before giving up.
async fn call_ladder(
    plan: &Plan,
    me: &AgentPlan,
    env: &Envelope<String>,
    account: &Account,
    (step, bar): (u32, u8),
    messages: &[Message],
) -> Result<Result<(ModelResponse, usize), TaskResult>, Abort> {
    let mut refusal: Option<Refusal> = None;
    let mut failure: Option<String> = None;
    let mut doubted = false;
    // The last model at or above the bar: a reply from any other may be set aside.
    let last = me.ladder.iter().rposition(|r| r.quality >= bar);
    for (i, rung) in me
        .ladder
        .iter()
        .enumerate()
        .filter(|(_, r)| r.quality >= bar)
    {
        match attempt(plan, me, rung, env, account, step, messages).await {
            Attempt::Answered(r) => {
                // A local model unsure of its answer: paid for, set aside, one rung up.
                if let (true, Some(min), Some(c), true) =
                    (rung.local, me.min_confidence, r.confidence, Some(i) != last)
                    && c * 100.0 < f32::from(min)
                {
                    let reason = format!("low confidence {:.0}% < {min}%", c * 100.0);
                    escalated(plan, me, env, &rung.name, &reason);
                    doubted = true;
                    continue;
                }
                let reason = match (&failure, &refusal) {
                    (Some(_), _) => 1,
                    (None, Some(_)) => 3,
                    (None, None) if doubted || bar > me.quality_bar => 1,
                    (None, None) => 0,
                };
                rung.decisions[reason].increment(1);
                tracing::debug!(agent = %me.name, task = env.task.0, step, model = %rung.name, reason = crate::plan::ROUTE_REASONS[reason], "routed");
                return Ok(Ok((r, i)));
            }
            Attempt::Refused(r) => refusal = Some(r),
            Attempt::Failed(f) => failure = Some(f),
            Attempt::Ended(result) => return Ok(Err(result)),
            Attempt::Crash(why) => return Err(Abort(why)),
        }
    }
    if failure.is_none() && refusal.is_some() && me.on_budget_exceeded == BudgetAction::Reroute {
        for (i, rung) in me
            .ladder
            .iter()
            .enumerate()
            .filter(|(_, r)| r.quality < bar)
        {
            match attempt(plan, me, rung, env, account, step, messages).await {
                Attempt::Answered(r) => {
                    rung.decisions[2].increment(1);
                    tracing::debug!(agent = %me.name, task = env.task.0, step, model = %rung.name, reason = "fallback", "routed");
                    let action = format!("rerouted to model {}", rung.name);
                    account.record_event(
                        BudgetEventKind::ReroutedModel,
                        format!("step {step}: {action}"),
                    );
                    me.reroutes_model.increment(1);
                    plan.observe(&Event::BudgetAction {
                        agent: &me.name,
                        task: env.task.0,
                        action: &action,
                    });
                    return Ok(Ok((r, i)));
                }
                Attempt::Refused(_) => {}
                Attempt::Failed(f) => failure = Some(f),
                Attempt::Ended(result) => return Ok(Err(result)),
                Attempt::Crash(why) => return Err(Abort(why)),
            }
        }
    }
    Ok(Err(match (failure, refusal) {
        (Some(f), _) => end(Outcome::Failed, f),
        (None, Some(r)) => {
            account.record_event(BudgetEventKind::Refused, r.to_string());
            end(Outcome::BudgetExceeded, r.to_string())
        }
        (None, None) => end(
            Outcome::Failed,
            "no model on the ladder clears the agent's quality bar",
        ),
    }))
}

/// Tells the observers that `model`'s answer was not good enough, or a step goes above it.
fn escalated(plan: &Plan, me: &AgentPlan, env: &Envelope<String>, model: &str, reason: &str) {
    plan.observe(&Event::Escalated {
        agent: &me.name,
        task: env.task.0,
        model,
        reason,
    });
}

/// One step's call to one model, with retries: each attempt reserves its worst case anew (a retry
/// the budget cannot pay for is not made), waits what the provider asked or a jittered backoff
/// (never past the deadline), and books what failed attempts were billed.
async fn attempt(
    plan: &Plan,
    me: &AgentPlan,
    rung: &Rung,
    env: &Envelope<String>,
    account: &Account,
    step: u32,
    messages: &[Message],
) -> Attempt {
    let mut tries = 1;
    loop {
        // A span per model call, named as OpenTelemetry's GenAI conventions say (exported with
        // `--features otel`); nothing is built when nobody listens.
        let once = if tracing::enabled!(tracing::Level::INFO) {
            let span = tracing::info_span!(
                "chat",
                otel.name = %format_args!("chat {}", rung.name),
                otel.kind = "client",
                gen_ai.operation.name = "chat",
                gen_ai.request.model = %rung.name,
                gen_ai.request.max_tokens = i64::from(rung.max_output),
                gen_ai.agent.name = %me.name,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                baton.cost_nanousd = tracing::field::Empty,
                baton.task = otel_int(env.task.0),
                baton.step = i64::from(step),
                error.type = tracing::field::Empty,
            );
            let once = call_once(plan, me, rung, env, account, step, messages)
                .instrument(span.clone())
                .await;
            match &once {
                Once::Done(Attempt::Answered(r)) => {
                    span.record("gen_ai.usage.input_tokens", otel_int(r.usage.input));
                    span.record("gen_ai.usage.output_tokens", otel_int(r.usage.output));
                    span.record("baton.cost_nanousd", otel_int(rung.price.cost(&r.usage).0));
                }
                Once::Failed(e) => {
                    span.record("error.type", e.to_string());
                }
                Once::Done(_) => {}
            }
            once
        } else {
            call_once(plan, me, rung, env, account, step, messages).await
        };
        let error = match once {
            Once::Done(a) => return a,
            Once::Failed(e) => e,
        };
        let msg = error.to_string();
        if !error.retryable() || tries >= rung.retry.max_attempts {
            return Attempt::Failed(msg);
        }
        let seed = env.task.0 ^ (u64::from(step) << 32) ^ u64::from(tries);
        let delay = crate::retry::backoff(&rung.retry, tries + 1, error.retry_after(), seed);
        if env.deadline.is_some_and(|d| Instant::now() + delay >= d) {
            return Attempt::Failed(format!(
                "{msg} (not retried: the task's deadline comes first)"
            ));
        }
        tries += 1;
        rung.retries.increment(1);
        plan.observe(&Event::Retrying {
            agent: &me.name,
            task: env.task.0,
            model: &rung.name,
            attempt: tries,
            delay,
        });
        tokio::select! {
            biased;
            () = account.cancelled() => return Attempt::Ended(end(Outcome::Cancelled, "cancelled")),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// A count as a span attribute: OpenTelemetry's integers are signed (a `u64` would be exported
/// as a string).
fn otel_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

enum Once {
    Done(Attempt),
    Failed(ModelError),
}

/// One model call, under a reservation of its worst case, its timeout, the task's deadline and the
/// task's cancellation.
async fn call_once(
    plan: &Plan,
    me: &AgentPlan,
    rung: &Rung,
    env: &Envelope<String>,
    account: &Account,
    step: u32,
    messages: &[Message],
) -> Once {
    let request = ModelRequest {
        agent: &me.name,
        step,
        messages,
        tools: &me.schemas,
        max_tokens: rung.max_output,
        confidence: rung.local && me.min_confidence.is_some(),
    };
    let input = rung.model.estimate_input_tokens(&request);
    let max_out = u64::from(rung.max_output);
    // A conversation the model cannot hold goes up the ladder without a call.
    if let Some(window) = rung.context_window
        && input + max_out > window
    {
        let reason = format!(
            "the call needs {input} + {max_out} tokens, more than its context window of {window}"
        );
        escalated(plan, me, env, &rung.name, &reason);
        return Once::Done(Attempt::Failed(format!("{}: {reason}", rung.name)));
    }
    let worst = rung.price.worst_case(input, max_out);
    let reservation = match account.reserve(worst, input + max_out) {
        Ok(r) => r,
        Err(r) => {
            me.refusals.increment(1);
            return Once::Done(Attempt::Refused(r));
        }
    };
    let mut call = std::pin::pin!(AssertUnwindSafe(rung.model.call(request)).catch_unwind());
    // A model that answers at once (a local or scripted one) needs no timer and no clock: poll
    // it first. (Its latency is that one poll: recorded as zero.)
    let mut started = None;
    let (timeout_at, polled) = match futures::poll!(&mut call) {
        std::task::Poll::Ready(r) => (None, Ok(r)),
        std::task::Poll::Pending => {
            started = Some(std::time::Instant::now());
            let timeout_at = Instant::now() + rung.timeout;
            let limit = env.deadline.map_or(timeout_at, |d| d.min(timeout_at));
            let r = tokio::select! {
                biased;
                r = tokio::time::timeout_at(limit, &mut call) => r,
                // The reservation is released on drop: an abandoned call books nothing.
                () = account.cancelled() => return Once::Done(Attempt::Ended(end(Outcome::Cancelled, "cancelled"))),
            };
            (Some(timeout_at), r)
        }
    };
    rung.latency
        .record(started.map_or(0.0, |t| t.elapsed().as_secs_f64()));
    let result = match polled {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(panic)) => {
            rung.requests_err.increment(1);
            account.record_model_error();
            return Once::Done(Attempt::Crash(format!(
                "`{}` crashed: model `{}` panicked: {}",
                me.name,
                rung.name,
                panic_text(&*panic)
            )));
        }
        Err(elapsed) => Err(elapsed),
    };
    let error = match result {
        Ok(Ok(response)) => {
            let cost = rung.price.cost(&response.usage);
            reservation.commit(&response.usage, cost);
            rung.requests_ok.increment(1);
            rung.cost.increment(cost.0);
            if input > 0 {
                rung.estimate_ratio
                    .record(response.usage.input as f64 / input as f64);
            }
            let left = account.remaining_cost();
            if left != NanoUsd::MAX {
                me.remaining.set(left.as_usd_f64());
            }
            rung.tokens_in.increment(response.usage.input);
            rung.tokens_out.increment(response.usage.output);
            rung.tokens_cached.increment(response.usage.cached_input);
            if me.sole_model.is_none() {
                account.record_call(CallRecord {
                    step,
                    model: Arc::clone(&rung.name),
                    tokens: response.usage,
                    cost,
                    top_rung_cost: me.top_price.cost(&response.usage),
                });
            }
            plan.observe(&Event::Step {
                agent: &me.name,
                task: env.task.0,
                step,
                model: &rung.name,
                usage: &response.usage,
                cost,
            });
            return Once::Done(Attempt::Answered(response));
        }
        Ok(Err(e)) => e,
        Err(_)
            if env
                .deadline
                .is_some_and(|d| timeout_at.is_none_or(|t| d <= t)) =>
        {
            return Once::Done(Attempt::Ended(end(
                Outcome::TimedOut,
                format!("deadline passed waiting for {}", rung.name),
            )));
        }
        Err(_) => ModelError::Timeout {
            model: rung.name.to_string(),
            timeout_ms: u64::try_from(rung.timeout.as_millis()).unwrap_or(u64::MAX),
        },
    };
    // A failed call the provider billed still costs: book it; otherwise release the reservation.
    match error.billed() {
        Some(usage) => {
            let cost = rung.price.cost(&usage);
            reservation.commit(&usage, cost);
            rung.cost.increment(cost.0);
            rung.tokens_in.increment(usage.input);
            rung.tokens_out.increment(usage.output);
            rung.tokens_cached.increment(usage.cached_input);
            if me.sole_model.is_none() {
                account.record_call(CallRecord {
                    step,
                    model: Arc::clone(&rung.name),
                    tokens: usage,
                    cost,
                    top_rung_cost: me.top_price.cost(&usage),
                });
            }
        }
        None => drop(reservation),
    }
    rung.requests_err.increment(1);
    account.record_model_error();
    let msg = error.to_string();
    plan.observe(&Event::ModelFailed {
        agent: &me.name,
        task: env.task.0,
        model: &rung.name,
        error: &msg,
    });
    Once::Failed(error)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a tool; `None` when the task was cancelled meanwhile. A panicking tool crashes the agent.
async fn run_tool(
    plan: &Plan,
    me: &AgentPlan,
    env: &Envelope<String>,
    account: &Account,
    call: &ToolCall,
    (dry_runs, bad_call): (&mut Vec<(String, serde_json::Value)>, &mut bool),
) -> Result<Option<String>, Abort> {
    let Some(i) = me.tools.iter().position(|t| t.name() == call.name) else {
        *bad_call = true;
        let names: Vec<&str> = me.schemas.iter().map(|s| s.name.as_str()).collect();
        return Ok(Some(format!(
            "error: no tool named `{}`; available: {}",
            call.name,
            names.join(", ")
        )));
    };
    let (tool, m, gate) = (&me.tools[i], &me.tool_metrics[i], &me.tool_gates[i]);
    let effect = gate.effect;
    // Arguments that do not fit the tool's schema never reach it (nor a human approver): the
    // model is told what is wrong and can correct itself.
    if let Some(v) = &gate.validator {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let args = if call.arguments.is_null() {
            &empty
        } else {
            &call.arguments
        };
        // The common case, valid arguments, allocates nothing.
        let problems: Vec<String> = if v.is_valid(args) {
            Vec::new()
        } else {
            v.iter_errors(args)
                .take(5)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    if at.is_empty() {
                        e.to_string()
                    } else {
                        format!("{at}: {e}")
                    }
                })
                .collect()
        };
        if !problems.is_empty() {
            *bad_call = true;
            m.calls[4].increment(1);
            return Ok(Some(format!(
                "error: invalid arguments for `{}`: {}. Its parameters: {}",
                call.name,
                problems.join("; "),
                tool.parameters()
            )));
        }
    }
    // The harness decides, never the model: whatever the transcript says.
    match judge(plan, me, env, account, call, effect, dry_runs).await {
        Judged::Go => {}
        Judged::Denied(text) => return Ok(Some(text)),
        Judged::Cancelled => return Ok(None),
    }
    let started = std::time::Instant::now();
    let mut timed = CpuTimed::new(tool.call(call.arguments.clone()));
    let run = async {
        match AssertUnwindSafe(&mut timed).catch_unwind().await {
            Ok(r) => Ok(r),
            Err(panic) => Err(Abort(format!(
                "`{}` crashed: tool `{}` panicked: {}",
                me.name,
                call.name,
                panic_text(&*panic)
            ))),
        }
    };
    let mut run = std::pin::pin!(run);
    // A tool that answers at once needs no timer: poll it first (as model calls are).
    let result = match futures::poll!(&mut run) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => tokio::select! {
            biased;
            r = async {
                // The tool's own timeout, or the task's deadline if that comes first.
                let own = tokio::time::Instant::now() + gate.timeout;
                let limit = env.deadline.map_or(own, |d| d.min(own));
                tokio::time::timeout_at(limit, &mut run).await.ok()
            } => r,
            () = account.cancelled() => return Ok(None),
        },
    };
    m.duration.record(started.elapsed().as_secs_f64());
    m.cpu.record(timed.cpu.as_secs_f64());
    let outcome = match &result {
        Some(Ok(Ok(_))) => 0,
        Some(Ok(Err(_))) => 1,
        None => 2,
        Some(Err(_)) => 3,
    };
    m.calls[outcome].increment(1);
    let result = match result {
        Some(Err(abort)) => return Err(abort),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    if effect == baton_core::Effect::Destructive
        && baton_core::policy::is_dry_run(&call.arguments)
        && matches!(result, Some(Ok(_)))
    {
        dry_runs.push((
            call.name.clone(),
            baton_core::policy::without_dry_run(&call.arguments),
        ));
    }
    Ok(Some(match result {
        Some(Ok(text)) => {
            let (text, saved) = cap_output(text, gate.max_output_tokens);
            if saved > 0 {
                m.saved.increment(saved);
                account.record_tool_tokens_saved(saved);
            }
            text
        }
        Some(Err(e)) => format!("error: {e}"),
        None => format!(
            "error: tool `{}` did not finish in time (its timeout is {}, and the task has its deadline)",
            call.name,
            baton_core::format_duration(gate.timeout)
        ),
    }))
}

/// Cuts a tool's output longer than `max_tokens` (about four characters a token): keeps the
/// first three quarters of the allowance and the last quarter, with a marker saying what was cut.
/// Returns the text and the tokens saved.
pub(crate) fn cap_output(text: String, max_tokens: u32) -> (String, u64) {
    let max_chars = (max_tokens as usize).saturating_mul(4);
    // No more bytes than the allowance means no more characters either: nothing to count.
    if text.len() <= max_chars {
        return (text, 0);
    }
    let total = text.chars().count();
    if total <= max_chars {
        return (text, 0);
    }
    let head = max_chars * 3 / 4;
    let tail = max_chars - head;
    let cut = total - head - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(total - tail).collect();
    let saved = (cut as u64).div_ceil(4);
    (
        format!(
            "{start}\n[… {cut} characters (about {saved} tokens) cut by Baton: the output was longer than {max_tokens} tokens …]\n{end}"
        ),
        saved,
    )
}

enum Judged {
    Go,
    Denied(String),
    Cancelled,
}

/// Applies the policy to a tool call: role, freeze, dry-run-first, approval. Every decision on a
/// destructive call, and every denial, is an event (audited) and denials are counted.
async fn judge(
    plan: &Plan,
    me: &AgentPlan,
    env: &Envelope<String>,
    account: &Account,
    call: &ToolCall,
    effect: baton_core::Effect,
    dry_runs: &[(String, serde_json::Value)],
) -> Judged {
    use baton_core::policy::Verdict;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let decided = |decision: &str, rule: &str, reason: &str| {
        plan.observe(&Event::Policy {
            agent: &me.name,
            task: env.task.0,
            tool: &call.name,
            decision,
            rule,
            reason,
        });
    };
    let deny = |rule: &str, reason: String| {
        me.denials.increment(1);
        decided("denied", rule, &reason);
        Judged::Denied(format!("denied by policy ({rule}): {reason}"))
    };
    match plan.policy.check(
        me.role.as_deref(),
        &call.name,
        effect,
        &call.arguments,
        dry_runs,
        now,
    ) {
        Verdict::Deny { rule, reason } => deny(rule, reason),
        Verdict::Allow => {
            if effect == baton_core::Effect::Destructive {
                let rule = if baton_core::policy::is_dry_run(&call.arguments) {
                    "dry_run"
                } else {
                    "none"
                };
                decided("allowed", rule, "allowed");
            }
            Judged::Go
        }
        Verdict::NeedsApproval => {
            let request = crate::approval::ApprovalRequest {
                agent: me.name.to_string(),
                task: env.task.0,
                tool: call.name.clone(),
                arguments: call.arguments.clone(),
            };
            decided("requested", "approval", "waiting for a human's approval");
            let timeout = plan.policy.approval_timeout;
            let answer = tokio::select! {
                biased;
                () = account.cancelled() => return Judged::Cancelled,
                r = tokio::time::timeout(timeout, plan.approver.decide(&request)) => r,
            };
            match answer {
                Ok(crate::approval::ApprovalDecision::Approved) => {
                    decided("approved", "approval", "approved by a human");
                    Judged::Go
                }
                Ok(crate::approval::ApprovalDecision::Denied(why)) => deny("approval", why),
                Err(_) => deny(
                    "approval",
                    format!(
                        "no answer within {}: denied",
                        baton_core::format_duration(timeout)
                    ),
                ),
            }
        }
    }
}

/// Hands a sub-task to a child and returns what the model will see. Applies the child's
/// `on_crash` (retry once on the restarted child, or fail) and `on_budget_exceeded` (cut off, or
/// reroute to its fallback with what is left of its budget).
async fn delegate(
    myself: &ActorRef<AgentMsg>,
    state: &mut AgentState,
    env: &Envelope<String>,
    account: &Account,
    call: &ToolCall,
) -> Result<String, Abort> {
    let (Some(target), Some(task)) = (
        call.arguments.get("agent").and_then(|v| v.as_str()),
        call.arguments.get("task").and_then(|v| v.as_str()),
    ) else {
        return Ok("error: delegate needs `agent` and `task` (strings)".into());
    };
    let Some(slot) = state.children.position(target) else {
        let names: Vec<&str> = state.me.children.iter().map(|(n, _)| &**n).collect();
        return Ok(format!(
            "error: `{target}` is not one of your sub-agents ({})",
            names.join(", ")
        ));
    };
    if env.hops >= MAX_HOPS {
        return Ok(format!(
            "error: delegation depth limit ({MAX_HOPS}) reached"
        ));
    }
    let child_plan = Arc::clone(&state.plan.agents[state.children.plan_index(slot)]);
    let mut budget: Budget = child_plan.budget.clone();
    if let Some(v) = call.arguments.get("budget_usd").filter(|v| !v.is_null()) {
        match serde_json::from_value::<Usd>(v.clone()) {
            Ok(cap) if cap.0 > NanoUsd::ZERO => {
                budget.max_cost = Some(budget.max_cost.map_or(cap.0, |c| c.min(cap.0)));
            }
            Ok(_) => return Ok("error: `budget_usd` must be more than zero".into()),
            Err(e) => return Ok(format!("error: `budget_usd`: {e}")),
        }
    }
    let (result, child_account) =
        run_child(myself, state, env, account, slot, task.to_string(), budget).await?;
    let name = Arc::clone(state.children.name(slot));
    Ok(match result.outcome {
        Outcome::Completed => result.text,
        Outcome::BudgetExceeded => {
            match (
                child_plan.on_budget_exceeded,
                child_plan
                    .fallback
                    .and_then(|f| state.children.position_of_plan(f)),
            ) {
                (BudgetAction::Reroute, Some(fb)) => {
                    let left = child_account.remaining_cost();
                    let fb_name = Arc::clone(state.children.name(fb));
                    let action = format!("rerouted to {fb_name}");
                    child_account.record_event(
                        BudgetEventKind::ReroutedAgent,
                        format!("{action} with {left} left"),
                    );
                    child_plan.reroutes_agent.increment(1);
                    state.plan.observe(&Event::BudgetAction {
                        agent: &name,
                        task: env.task.0,
                        action: &action,
                    });
                    let mut budget = state.plan.agents[state.children.plan_index(fb)]
                        .budget
                        .clone();
                    budget.max_cost = Some(budget.max_cost.map_or(left, |c| c.min(left)));
                    let rest = format!(
                        "{task}\n\n(Taken over from `{name}`, which ran out of budget: {})",
                        result.text
                    );
                    let (fb_result, _) =
                        run_child(myself, state, env, account, fb, rest, budget).await?;
                    match fb_result.outcome {
                        Outcome::Completed => fb_result.text,
                        o => format!(
                            "`{name}` ran out of budget; its fallback `{fb_name}` ended {o}: {}",
                            fb_result.text
                        ),
                    }
                }
                _ => {
                    // Cut off: the child is stopped (not restarted: this is not a crash); it comes
                    // back on its next task.
                    child_account.record_event(BudgetEventKind::CutOff, result.text.clone());
                    child_plan.cutoffs.increment(1);
                    state.plan.observe(&Event::BudgetAction {
                        agent: &name,
                        task: env.task.0,
                        action: "cut_off",
                    });
                    state.children.stop(slot).await;
                    format!("`{name}` was cut off: {}", result.text)
                }
            }
        }
        o => format!("`{name}` ended {o}: {}", result.text),
    })
}

/// Runs one sub-task on the child in `slot` to exactly one result, opening its account under ours.
/// A crash of the child is handled here, where we wait on it: the strategy restarts it (or we give
/// up and escalate), and the task is retried once or ends `failed`, per the child's `on_crash`.
async fn run_child(
    myself: &ActorRef<AgentMsg>,
    state: &mut AgentState,
    env: &Envelope<String>,
    account: &Account,
    slot: usize,
    task: String,
    budget: Budget,
) -> Result<(TaskResult, Account), Abort> {
    let child_plan = Arc::clone(&state.plan.agents[state.children.plan_index(slot)]);
    let name = Arc::clone(&child_plan.name);
    let child_env = env.child(Arc::clone(&state.me.name), budget, task);
    let child_account = account.open_child(
        child_env.task.0,
        Arc::clone(&name),
        child_env.budget.max_cost,
        child_env.budget.max_tokens,
    );
    let cell = myself.get_cell();
    let mut retried = false;
    loop {
        let child = match state.children.get(slot, &state.plan, &cell).await {
            Ok(c) => c,
            Err(why) => {
                if child_account.finish(Outcome::Failed) {
                    child_plan.tasks.count(Outcome::Failed);
                }
                return Ok((end(Outcome::Failed, why), child_account));
            }
        };
        let assignment = Box::new(Assignment {
            envelope: child_env.clone(),
            account: child_account.clone(),
        });
        if let Ok(CallResult::Success(result)) = child
            .call(
                |port| AgentMsg::Run(assignment, ReplyTo::Parent(port)),
                None,
            )
            .await
        {
            return Ok((result.payload, child_account));
        }
        // The child died holding our task. Money it spent stays booked in its account.
        child_account.record_restart();
        let reason = child_account
            .crash_reason()
            .unwrap_or_else(|| format!("`{name}` crashed"));
        let restarted = state
            .children
            .exited(slot, true, &reason, &state.plan, &cell)
            .await?;
        if restarted
            && child_plan.on_crash == OnCrash::Retry
            && !retried
            && !child_account.is_cancelled()
        {
            retried = true;
            continue;
        }
        if child_account.finish(Outcome::Failed) {
            child_plan.tasks.count(Outcome::Failed);
        }
        return Ok((end(Outcome::Failed, reason), child_account));
    }
}
