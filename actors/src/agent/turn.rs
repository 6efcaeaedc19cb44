//! The loop of one task, and the tool calls of one reply.
//!
//! route → reserve → call model → commit → run tools (or delegate) → observe → repeat, until the
//! model answers without tool calls (completed), a reservation is refused (budget_exceeded), the
//! deadline passes (timed_out), the task is cancelled, `max_steps` is reached, or every model on the
//! ladder fails (failed).
//!
//! One reply's tool calls run concurrently where order cannot matter: calls of `read` tools,
//! delegations and calls of no known tool start together (at most `max_parallel_tools` at once);
//! then `write` and `destructive` calls run one at a time in the model's order, so that a dry run
//! comes before the real call and approvals and freezes keep their meaning. The model sees the
//! observations in call order. A call that ends the task (cancellation, a crash) drops the turn's
//! other calls: their reservations are released and their sub-tasks cancelled.

use baton_core::defaults::MAX_STEPS;
use baton_core::{Effect, Message, ModelResponse, Outcome, Role, ToolCall};
use baton_topologies::DELEGATE_TOOL;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::{TaskCx, TaskResult, call, compact, delegation, end, harness, otel_int};
use crate::observer::Event;
use crate::supervisor::Abort;

/// Why a tool call ended its task's turn.
pub(crate) enum Stop {
    /// The task was cancelled meanwhile.
    Cancelled,
    /// A tool (or something under it) crashed: the agent's task crashes.
    Crash(String),
    /// The task cannot go on safely (the audit trail cannot record a destructive call's
    /// decision): it ends `failed` with this reason, without a crash or a restart.
    Fail(String),
}

/// An observation, and whether the call was a bad one (a call of no tool, or arguments that did
/// not fit), which raises the next step's quality bar.
pub(crate) type Observed = (String, bool);

pub(crate) async fn run_task(cx: &TaskCx<'_>, task: String) -> Result<TaskResult, Abort> {
    let me = cx.me();
    let (env, account) = (cx.env, cx.account);
    let max_steps = env.budget.max_steps.unwrap_or(MAX_STEPS);
    let mut messages: Vec<Message> = Vec::with_capacity(2 + 2 * max_steps.min(16) as usize);
    if let Some(system) = &me.system {
        messages.push(Message::new(Role::System, system.as_str()));
    }
    messages.push(Message::new(Role::User, task));
    // The step's quality bar: the agent's, raised for the step after a bad answer.
    let mut bar = me.quality_bar;
    // The previous call's billed prompt (re-sent in full by the next call, the transcript
    // being append-only), and what compactions keep out of each call.
    let mut previous_input: u64 = 0;
    let mut compaction_saved: u64 = 0;
    for step in 1..=max_steps {
        if account.is_cancelled() {
            return Ok(end(Outcome::Cancelled, "cancelled"));
        }
        if env.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(end(Outcome::TimedOut, "deadline passed"));
        }
        account.record_step();
        me.steps.increment(1);
        if let Some(compactor) = &me.compactor {
            match compact::maybe(cx, compactor, step, &mut messages).await {
                compact::Compacted::No => {}
                compact::Compacted::Saved(saved) => {
                    compaction_saved += saved;
                    // The prefix changed: the system prompt alone was sent before.
                    previous_input = 0;
                }
                compact::Compacted::Ended(result) => return Ok(result),
                compact::Compacted::Crash(why) => return Err(Abort::Crashed(why)),
            }
        }
        // Spans cost a poll-time enter and exit even when nobody listens: only when enabled.
        let ladder = call::call_ladder(cx, (step, bar), &messages);
        let routed = if tracing::enabled!(tracing::Level::DEBUG) {
            ladder
                .instrument(tracing::debug_span!("step", step, task = env.task.0, agent = %me.name))
                .await
        } else {
            ladder.await
        };
        let (response, answered) = match routed? {
            call::Routed::Answered(response, rung) => (response, rung),
            call::Routed::Ended(result) => return Ok(result),
        };
        let ModelResponse {
            text,
            tool_calls,
            usage,
            ..
        } = response;
        let rung = &me.ladder[answered];
        let resent = previous_input.min(usage.input);
        me.resent.increment(resent);
        let free = rung.price.input_per_mtok.0 == 0 && rung.price.output_per_mtok.0 == 0;
        if free {
            me.free_steps.increment(1);
        }
        account.record_step_score(&baton_core::StepScore {
            resent,
            quality: rung.quality,
            output: usage.output,
            free,
            compaction_saved,
        });
        previous_input = usage.input;
        if tool_calls.is_empty() {
            let answer = text.unwrap_or_default();
            if let Some(value) = &me.value {
                account.record_value(value.of(&answer));
            }
            return Ok(end(Outcome::Completed, answer));
        }
        let observations = match run_calls(cx, &tool_calls).await {
            Ok(o) => o,
            Err(Stop::Cancelled) => return Ok(end(Outcome::Cancelled, "cancelled")),
            Err(Stop::Crash(why)) => return Err(Abort::Crashed(why)),
            Err(Stop::Fail(why)) => return Ok(end(Outcome::Failed, why)),
        };
        // A bad answer (a call of no tool, or arguments that do not fit) raises the next step's
        // bar above the model that gave it, if the ladder has a better one; a good one resets it.
        bar = me.quality_bar;
        if observations.iter().any(|(_, bad)| *bad)
            && let Some(better) = me
                .ladder
                .iter()
                .map(|r| r.quality)
                .filter(|q| *q > me.ladder[answered].quality)
                .min()
        {
            bar = better.max(me.quality_bar);
            let reason = format!("invalid tool call: the next step needs quality {better} or more");
            call::escalated(cx, &me.ladder[answered].name, &reason);
        }
        // The model sees its own turn, then each result in call order.
        let ids: Vec<String> = tool_calls.iter().map(|c| c.id.clone()).collect();
        messages.push(Message {
            role: Role::Assistant,
            content: text.unwrap_or_default(),
            tool_calls,
            tool_call_id: None,
        });
        for (id, (content, _)) in ids.into_iter().zip(observations) {
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

/// Whether a call may run beside the others of its reply: reads, delegations and calls of no
/// known tool (answered at once) may; writes and destructive calls may not.
fn concurrent(cx: &TaskCx<'_>, call: &ToolCall) -> bool {
    if call.name == DELEGATE_TOOL {
        return true;
    }
    cx.me()
        .tools
        .iter()
        .position(|t| t.name() == call.name)
        .is_none_or(|i| cx.me().tool_gates[i].effect == Effect::Read)
}

/// Runs one reply's tool calls (see the module docs) and returns their observations in call order.
async fn run_calls(cx: &TaskCx<'_>, calls: &[ToolCall]) -> Result<Vec<Observed>, Stop> {
    let max = cx.me().max_parallel_tools.max(1) as usize;
    if calls.len() == 1 || max == 1 {
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            out.push(one_call(cx, call).await?);
        }
        return Ok(out);
    }
    let mut out: Vec<Option<Observed>> = vec![None; calls.len()];
    let (together, after): (Vec<usize>, Vec<usize>) =
        (0..calls.len()).partition(|&i| concurrent(cx, &calls[i]));
    if !together.is_empty() {
        let mut running =
            futures::stream::iter(together.into_iter().map(|i| one_indexed(cx, calls, i)))
                .buffer_unordered(max);
        // The first call that ends the task returns at once: dropping `running` drops the others.
        while let Some((i, r)) = running.next().await {
            out[i] = Some(r?);
        }
    }
    for i in after {
        out[i] = Some(one_call(cx, &calls[i]).await?);
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or_else(|| (String::from("error: the call did not run"), false)))
        .collect())
}

async fn one_indexed(
    cx: &TaskCx<'_>,
    calls: &[ToolCall],
    i: usize,
) -> (usize, Result<Observed, Stop>) {
    (i, one_call(cx, &calls[i]).await)
}

/// One tool call or delegation, with its events and span.
async fn one_call(cx: &TaskCx<'_>, call: &ToolCall) -> Result<Observed, Stop> {
    let me = cx.me();
    cx.account.record_tool_call();
    cx.observe(&Event::ToolCall {
        agent: &me.name,
        task: cx.task(),
        root: cx.env.trace.0,
        tool: &call.name,
        call: &call.id,
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
            baton.task = otel_int(cx.task()),
        )
    } else {
        tracing::Span::none()
    };
    let observed = if call.name == DELEGATE_TOOL {
        Box::pin(delegation::delegate(cx, call))
            .instrument(span)
            .await
            .map(|o| (o, false))?
    } else {
        Box::pin(harness::run_tool(cx, call))
            .instrument(span)
            .await?
    };
    cx.observe(&Event::Observation {
        agent: &me.name,
        task: cx.task(),
        root: cx.env.trace.0,
        tool: &call.name,
        call: &call.id,
        text: &observed.0,
    });
    Ok(observed)
}
