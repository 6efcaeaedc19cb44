//! One step's model call: routing along the ladder, retries, and the call itself.
//!
//! The order in which a model call's concerns see it is written here, outermost first:
//! `call_ladder` (routing: the cheapest rung that clears the bar, escalation on failure, low
//! confidence or a context window, the budget reroute) → `attempt` (trace span, retry with
//! backoff bounded by the deadline and the budget) → `call_once` (context window, budget
//! reservation, timeout + deadline + cancellation, latency meter, panic catching, the call) →
//! `book` (the one path by which a billed call — answered or failed — reaches the ledger, the
//! metrics and the call records).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{
    BudgetEventKind, CallRecord, Message, ModelError, ModelRequest, ModelResponse, NanoUsd,
    Outcome, Refusal, Reservation, TokenUsage,
};
use baton_topologies::{BudgetAction, MissingConfidence, Truncated};
use futures::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::{TaskCx, TaskResult, end, otel_int};
use crate::observer::Event;
use crate::plan::Rung;
use crate::supervisor::Abort;

enum Attempt {
    Answered(ModelResponse),
    Refused(Refusal),
    /// A budget shared with other replicas cannot cover the call (why): a refusal like the
    /// task's own ledger's (the ladder goes on, and `reroute` may go below the bar).
    SharedRefused(String),
    Failed(String),
    Ended(TaskResult),
    Crash(String),
}

/// A call's reservations: on the task's own ledger, and on the budget shared with other
/// replicas when there is one. Dropped, both are released.
pub(super) struct Holds {
    local: Reservation,
    shared: Vec<Box<dyn baton_core::SharedHold>>,
}

/// How a step's routing ended, when the agent goes on (a crash is the `Err(Abort)` beside it).
pub(crate) enum Routed {
    /// A model answered: its reply, and its rung on the ladder.
    Answered(ModelResponse, usize),
    /// The task ends on this step, with this result (nothing fit the budget, every rung
    /// failed, it was cancelled or timed out).
    Ended(TaskResult),
}

/// Routes one step: the cheapest model on the ladder that clears the agent's quality bar and whose
/// worst case fits the budget, escalating to the next on a failure. With `reroute`, when nothing at
/// or above the bar fits, a cheaper model below the bar is tried before giving up.
pub(crate) async fn call_ladder(
    cx: &TaskCx<'_>,
    (step, bar): (u32, u8),
    messages: &[Message],
) -> Result<Routed, Abort> {
    let (me, env, account) = (cx.me(), cx.env, cx.account);
    let mut refusal: Option<Refusal> = None;
    let mut shared_refusal: Option<String> = None;
    let mut failure: Option<String> = None;
    let mut doubted = false;
    // A private task's data goes to local models only: the others are not on its ladder.
    let private = account.is_private();
    let allowed = |r: &Rung| !private || r.local;
    let mut kept_local = false;
    // The last model at or above the bar: a reply from any other may be set aside.
    let last = me
        .ladder
        .iter()
        .rposition(|r| r.quality >= bar && allowed(r));
    for (i, rung) in me.ladder.iter().enumerate().filter(|(_, r)| {
        let passed_over = private && !r.local && r.quality >= bar;
        kept_local |= passed_over;
        r.quality >= bar && allowed(r)
    }) {
        match attempt(cx, rung, step, messages).await {
            Attempt::Answered(r) => {
                let higher = (Some(i) != last, i + 1 < me.ladder.len());
                match vet(cx, rung, higher, &r) {
                    Vetted::Use => {}
                    Vetted::Escalate(reason) => {
                        account.set_aside_last_call();
                        escalated(cx, &rung.name, &reason);
                        doubted = true;
                        continue;
                    }
                    Vetted::End(result) => {
                        account.set_aside_last_call();
                        return Ok(Routed::Ended(result));
                    }
                }
                use crate::plan::Route;
                let refused = refusal.is_some() || shared_refusal.is_some();
                let reason = match (&failure, refused) {
                    (Some(_), _) => Route::Escalated,
                    (None, true) => Route::Budget,
                    (None, false) if doubted || bar > me.quality_bar => Route::Escalated,
                    (None, false) => Route::Cheapest,
                };
                rung.decisions[reason as usize].increment(1);
                tracing::debug!(agent = %me.name, task = env.task.0, step, model = %rung.name, reason = reason.label(), "routed");
                if private {
                    account.record_private_step();
                    me.private_steps.increment(1);
                }
                return Ok(Routed::Answered(r, i));
            }
            Attempt::Refused(r) => refusal = Some(r),
            Attempt::SharedRefused(why) => shared_refusal = Some(why),
            Attempt::Failed(f) => failure = Some(f),
            Attempt::Ended(result) => return Ok(Routed::Ended(result)),
            Attempt::Crash(why) => return Err(Abort::Crashed(why)),
        }
    }
    if failure.is_none()
        && (refusal.is_some() || shared_refusal.is_some())
        && me.on_budget_exceeded == BudgetAction::Reroute
        && let Some(routed) =
            reroute_below(cx, (step, bar), messages, &allowed, &mut failure).await?
    {
        return Ok(routed);
    }
    // Nothing local could serve a private step, and a hosted model might have: the data is
    // never sent on, and the reason says why hosted models were not tried.
    // (A budget refusal stays `budget_exceeded`: the budget, not privacy, ended it.)
    if private
        && kept_local
        && (failure.is_some() || (refusal.is_none() && shared_refusal.is_none()))
    {
        let why = match &failure {
            Some(f) => format!(": the local model failed ({f})"),
            None if last.is_none() => {
                ": no local model on the ladder clears the quality bar".into()
            }
            None => String::new(),
        };
        return Ok(Routed::Ended(end(
            Outcome::Failed,
            format!(
                "privacy: `{}`'s task may use local models only (a sensitive tool's output is in its transcript, or the agent is `privacy: local_only`), and none could serve step {step}{why}",
                me.name
            ),
        )));
    }
    Ok(Routed::Ended(match (failure, refusal) {
        (Some(f), _) => end(Outcome::Failed, f),
        (None, Some(r)) => {
            account.record_event(BudgetEventKind::Refused, r.to_string());
            end(Outcome::BudgetExceeded, r.to_string())
        }
        // (Its refusal was recorded when the shared budget gave it.)
        (None, None) if shared_refusal.is_some() => {
            end(Outcome::BudgetExceeded, shared_refusal.unwrap_or_default())
        }
        (None, None) => end(
            Outcome::Failed,
            "no model on the ladder clears the agent's quality bar",
        ),
    }))
}

/// What becomes of a model's reply before the step uses it.
enum Vetted {
    Use,
    /// Paid for, set aside, asked again one rung up, for this reason.
    Escalate(String),
    /// Set aside, and the task ends with this result.
    End(TaskResult),
}

/// Vets a reply of `rung`: a local model unsure of its answer (or silent about it) when a model
/// above it may answer (`higher.0`), and a tool call cut at the token ceiling, as the agent says
/// (`higher.1`: a rung above exists).
fn vet(cx: &TaskCx<'_>, rung: &Rung, higher: (bool, bool), r: &ModelResponse) -> Vetted {
    let me = cx.me();
    if let (true, Some(min), true) = (rung.local, me.min_confidence, higher.0) {
        let doubt = match r.confidence {
            Some(c) if c * 100.0 < f32::from(min) => {
                Some(format!("low confidence {:.0}% < {min}%", c * 100.0))
            }
            Some(_) => None,
            None => match me.on_missing_confidence {
                MissingConfidence::Escalate => {
                    Some("no confidence reported (on_missing_confidence: escalate)".to_string())
                }
                MissingConfidence::Accept => None,
                MissingConfidence::Fail => {
                    return Vetted::End(end(
                        Outcome::Failed,
                        format!(
                            "model `{}` reported no confidence and `{}` requires it (on_missing_confidence: fail)",
                            rung.name, me.name
                        ),
                    ));
                }
            },
        };
        if let Some(reason) = doubt {
            return Vetted::Escalate(reason);
        }
    }
    // A tool call cut at the token ceiling may be incomplete: as the agent says, asked again one
    // rung up (at the top: used), used, or the end of the task.
    if r.truncated && !r.tool_calls.is_empty() {
        match me.on_truncated {
            Truncated::Escalate if higher.1 => {
                return Vetted::Escalate(
                    "tool call cut at max_output_tokens (finish_reason: length)".into(),
                );
            }
            Truncated::Fail => {
                return Vetted::End(end(
                    Outcome::Failed,
                    format!(
                        "model `{}` cut its tool call at max_output_tokens ({}) and `{}` does not accept truncated calls (on_truncated: fail)",
                        rung.name, rung.max_output, me.name
                    ),
                ));
            }
            _ => {}
        }
    }
    Vetted::Use
}

/// `reroute`: nothing at or above the bar fit the budget, so the models below it are tried,
/// cheapest first. `None` when none answered (a failure is kept in `failure`).
async fn reroute_below(
    cx: &TaskCx<'_>,
    (step, bar): (u32, u8),
    messages: &[Message],
    allowed: &impl Fn(&Rung) -> bool,
    failure: &mut Option<String>,
) -> Result<Option<Routed>, Abort> {
    let (plan, me, env, account) = (cx.plan(), cx.me(), cx.env, cx.account);
    for (i, rung) in me
        .ladder
        .iter()
        .enumerate()
        .filter(|(_, r)| r.quality < bar && allowed(r))
    {
        match attempt(cx, rung, step, messages).await {
            Attempt::Answered(r) => {
                let reason = crate::plan::Route::Fallback;
                rung.decisions[reason as usize].increment(1);
                tracing::debug!(agent = %me.name, task = env.task.0, step, model = %rung.name, reason = reason.label(), "routed");
                let action = format!("rerouted to model {}", rung.name);
                account.record_event(
                    BudgetEventKind::ReroutedModel,
                    format!("step {step}: {action}"),
                );
                me.reroutes_model.increment(1);
                plan.observe(&Event::BudgetAction {
                    agent: &me.name,
                    task: env.task.0,
                    root: env.trace.0,
                    action: &action,
                });
                return Ok(Some(Routed::Answered(r, i)));
            }
            Attempt::Refused(_) | Attempt::SharedRefused(_) => {}
            Attempt::Failed(f) => *failure = Some(f),
            Attempt::Ended(result) => return Ok(Some(Routed::Ended(result))),
            Attempt::Crash(why) => return Err(Abort::Crashed(why)),
        }
    }
    Ok(None)
}

/// Tells the observers that `model`'s answer was not good enough, or a step goes above it.
pub(crate) fn escalated(cx: &TaskCx<'_>, model: &str, reason: &str) {
    cx.observe(&Event::Escalated {
        agent: &cx.me().name,
        task: cx.task(),
        root: cx.env.trace.0,
        model,
        reason,
    });
}

/// One step's call to one model, with retries: each attempt reserves its worst case anew (a retry
/// the budget cannot pay for is not made), waits what the provider asked or a jittered backoff
/// (never past the deadline), and books what failed attempts were billed.
async fn attempt(cx: &TaskCx<'_>, rung: &Rung, step: u32, messages: &[Message]) -> Attempt {
    let (plan, me, env, account) = (cx.plan(), cx.me(), cx.env, cx.account);
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
            let once = call_once(cx, rung, step, messages, true)
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
            call_once(cx, rung, step, messages, true).await
        };
        let error = match once {
            Once::Done(a) => return a,
            Once::Failed(e) => e,
        };
        let msg = error.to_string();
        if !error.retryable() || tries >= rung.retry.max_attempts {
            return Attempt::Failed(msg);
        }
        // A local server (often one request at a time) may still be generating the reply the
        // timeout abandoned: a retry would queue behind it. The step goes up the ladder instead.
        if rung.local && matches!(error, ModelError::Timeout { .. }) {
            return Attempt::Failed(format!(
                "{msg} (not retried: a local server may still be generating the abandoned reply)"
            ));
        }
        if let Some(asked) = error
            .retry_after()
            .filter(|d| *d > rung.retry.max_retry_after)
        {
            return Attempt::Failed(format!(
                "{msg} (not retried: the provider asked to wait {} s, more than max_retry_after {} s)",
                asked.as_secs(),
                rung.retry.max_retry_after.as_secs()
            ));
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
            root: env.trace.0,
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

enum Once {
    Done(Attempt),
    Failed(ModelError),
}

/// Why a helper call (the compactor's) gave no reply.
pub(super) enum HelperFailed {
    /// The task ended meanwhile (cancelled, its deadline passed).
    Ended(TaskResult),
    /// The model crashed the agent.
    Crash(String),
    /// No reply (refused by the budget, a provider error): the task goes on without it.
    Skipped(String),
}

/// One call of a helper model, without tools, paid from the task's budget like any call: its
/// reply, or why there is none.
pub(super) async fn helper_call(
    cx: &TaskCx<'_>,
    rung: &Rung,
    step: u32,
    messages: &[Message],
) -> Result<ModelResponse, HelperFailed> {
    match call_once(cx, rung, step, messages, false).await {
        Once::Done(Attempt::Answered(r)) => Ok(r),
        Once::Done(Attempt::Ended(t)) => Err(HelperFailed::Ended(t)),
        Once::Done(Attempt::Crash(why)) => Err(HelperFailed::Crash(why)),
        Once::Done(Attempt::Refused(r)) => Err(HelperFailed::Skipped(r.to_string())),
        Once::Done(Attempt::SharedRefused(why)) => Err(HelperFailed::Skipped(why)),
        Once::Done(Attempt::Failed(why)) => Err(HelperFailed::Skipped(why)),
        Once::Failed(e) => Err(HelperFailed::Skipped(e.to_string())),
    }
}

/// One model call, under a reservation of its worst case, its timeout, the task's deadline and the
/// task's cancellation.
async fn call_once(
    cx: &TaskCx<'_>,
    rung: &Rung,
    step: u32,
    messages: &[Message],
    offer_tools: bool,
) -> Once {
    let (me, env, account) = (cx.me(), cx.env, cx.account);
    let request = ModelRequest {
        agent: &me.name,
        step,
        messages,
        tools: if offer_tools { &me.schemas } else { &[] },
        tool_tokens: Some(if offer_tools { rung.tool_tokens } else { 0 }),
        max_tokens: rung.max_output,
        confidence: rung.local && me.min_confidence.is_some(),
    };
    let estimate = rung.model.estimate_input_tokens(&request);
    // What the server is expected to count (for the context window), and what is reserved:
    // never less than the estimate.
    let expected = rung.calibrated(estimate);
    let input = expected.max(estimate);
    let max_out = u64::from(rung.max_output);
    // A conversation the model cannot hold goes up the ladder without a call.
    if let Some(window) = rung.context_window
        && expected + max_out > window
    {
        let reason = format!(
            "the call needs {expected} + {max_out} tokens, more than its context window of {window}"
        );
        escalated(cx, &rung.name, &reason);
        return Once::Done(Attempt::Failed(format!("{}: {reason}", rung.name)));
    }
    let worst = rung.price.worst_case(input, max_out);
    // Budgets shared with other replicas are asked first (each may take a round trip to draw a
    // lease): the topology's, and a standing loop's own when this task is one of its runs. Their
    // holds are released if a later one, or the task's own ledger, refuses.
    let run_budget = cx
        .plan()
        .live
        .run_budgets
        .get(&env.trace.0)
        .map(|b| Arc::clone(b.value()));
    let mut shared = Vec::new();
    for s in cx.plan().shared.iter().chain(run_budget.as_ref()) {
        match s.reserve(worst).await {
            Ok(baton_core::SharedReserved::Held(hold)) => shared.push(hold),
            Ok(baton_core::SharedReserved::Refused(limit)) => {
                me.refusals.increment(1);
                let why = format!(
                    "the shared budget `{limit}` cannot cover {worst} for a call to {} (spent or held by the replicas)",
                    rung.name
                );
                account.record_event(BudgetEventKind::Refused, why.clone());
                return Once::Done(Attempt::SharedRefused(why));
            }
            Err(e) => {
                return Once::Done(Attempt::Failed(format!(
                    "{}: the shared budget `{}` could not be asked: {e}",
                    rung.name,
                    s.name()
                )));
            }
        }
    }
    let reservation = match account.reserve(worst, input + max_out) {
        Ok(r) => Holds { local: r, shared },
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
    let latency = started.map_or(std::time::Duration::ZERO, |t| t.elapsed());
    rung.latency.record(latency.as_secs_f64());
    let result = match polled {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(panic)) => {
            rung.requests_err.increment(1);
            account.record_model_error();
            return Once::Done(Attempt::Crash(format!(
                "`{}` crashed: model `{}` panicked: {}",
                me.name,
                rung.name,
                super::panic_text(&*panic)
            )));
        }
        Err(elapsed) => Err(elapsed),
    };
    let error = match result {
        Ok(Ok(response)) => {
            return answered(cx, rung, step, reservation, response, estimate, latency);
        }
        Ok(Err(e)) => e,
        Err(_)
            if env
                .deadline
                .is_some_and(|d| timeout_at.is_none_or(|t| d <= t)) =>
        {
            return abandoned(cx, rung, step, reservation, (input, max_out));
        }
        Err(_) => ModelError::Timeout {
            model: rung.name.to_string(),
            timeout_ms: u64::try_from(rung.timeout.as_millis()).unwrap_or(u64::MAX),
        },
    };
    failed(cx, rung, step, reservation, error)
}

/// A model call that answered: booked, counted and observed.
fn answered(
    cx: &TaskCx<'_>,
    rung: &Rung,
    step: u32,
    reservation: Holds,
    response: ModelResponse,
    estimate: u64,
    latency: Duration,
) -> Once {
    let (plan, me, env, account) = (cx.plan(), cx.me(), cx.env, cx.account);
    let (cost, energy) = book(
        cx,
        rung,
        step,
        reservation,
        &response.usage,
        true,
        response.cpu,
    );
    rung.requests_ok.increment(1);
    if response.estimated {
        rung.estimated.increment(1);
        account.record_estimated_call();
    }
    if response.truncated {
        rung.truncated.increment(1);
    }
    if !response.cpu.is_zero() {
        rung.cpu.record(response.cpu.as_secs_f64());
    }
    if estimate > 0 && !response.estimated {
        rung.estimate_ratio
            .record(response.usage.input as f64 / estimate as f64);
        rung.learn(response.usage.input, estimate);
    }
    let left = account.remaining_cost();
    if left != NanoUsd::MAX {
        me.remaining.set(left.as_usd_f64());
    }
    plan.observe(&Event::Step {
        agent: &me.name,
        task: env.task.0,
        root: env.trace.0,
        step,
        model: &rung.name,
        usage: &response.usage,
        cost,
        estimated: response.estimated,
        truncated: response.truncated,
        latency,
        cpu: response.cpu,
        energy,
        explain: response.explain.as_deref(),
        said: response
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty() && !response.tool_calls.is_empty()),
    });
    Once::Done(Attempt::Answered(response))
}

/// A model call abandoned at the task's deadline: the request reached the provider, which may
/// bill it, so it is booked at its worst case, `(input, max_out)` tokens.
fn abandoned(
    cx: &TaskCx<'_>,
    rung: &Rung,
    step: u32,
    reservation: Holds,
    (input, max_out): (u64, u64),
) -> Once {
    let (me, env, account) = (cx.me(), cx.env, cx.account);
    // The request reached the provider, which may bill it: the abandoned attempt is
    // booked at its worst case (marked estimated), counted, and on the record.
    let usage = TokenUsage {
        input,
        output: max_out,
        cached_input: 0,
        cache_write_input: 0,
    };
    let (cost, _) = book(cx, rung, step, reservation, &usage, false, Duration::ZERO);
    rung.requests_err.increment(1);
    rung.estimated.increment(1);
    account.record_model_error();
    account.record_estimated_call();
    let error = format!(
        "{}: abandoned at the task's deadline; booked at its worst case, {input} + {max_out} tokens (estimated: the provider may bill it)",
        rung.name
    );
    model_failed(cx, rung, &error);
    tracing::debug!(agent = %me.name, task = env.task.0, cost = cost.0, "{error}");
    Once::Done(Attempt::Ended(end(
        Outcome::TimedOut,
        format!("deadline passed waiting for {}", rung.name),
    )))
}

/// A model call that failed: booked when the provider billed it (else its reservation is
/// released), counted and observed.
fn failed(cx: &TaskCx<'_>, rung: &Rung, step: u32, reservation: Holds, error: ModelError) -> Once {
    let account = cx.account;
    // A failed call the provider billed still costs: book it; otherwise release the reservation.
    match error.billed() {
        Some(usage) => {
            book(cx, rung, step, reservation, &usage, false, Duration::ZERO);
        }
        None => drop(reservation),
    }
    rung.requests_err.increment(1);
    account.record_model_error();
    model_failed(cx, rung, &error.to_string());
    Once::Failed(error)
}

/// Tells the observers that a call to `rung`'s model failed, and why.
fn model_failed(cx: &TaskCx<'_>, rung: &Rung, error: &str) {
    cx.observe(&Event::ModelFailed {
        agent: &cx.me().name,
        task: cx.task(),
        root: cx.env.trace.0,
        model: &rung.name,
        error,
    });
}

/// Books a billed call (answered, or failed and billed): commits it on the ledger, counts its
/// cost, tokens and energy, and records which model it went to. Returns its cost and energy. A
/// failed call saved nothing against the top rung (its record's baseline is zero).
pub(super) fn book(
    cx: &TaskCx<'_>,
    rung: &Rung,
    step: u32,
    reservation: Holds,
    usage: &TokenUsage,
    answered: bool,
    cpu: Duration,
) -> (NanoUsd, baton_core::Energy) {
    let me = cx.me();
    let cost = rung.price.cost(usage);
    reservation.local.commit(usage, cost);
    for shared in reservation.shared {
        shared.commit(cost);
    }
    let energy = rung.energy.of(usage.output, cpu);
    crate::plan::count_energy(&rung.energy_uj, energy);
    cx.account
        .record_energy(baton_core::EnergyKind::Model, energy);
    if usage.cached_input > 0 || usage.cache_write_input > 0 {
        cx.account
            .record_cache_saving(rung.price.cache_saving(usage));
    }
    rung.cost.increment(cost.0);
    rung.tokens_in.increment(usage.input);
    rung.tokens_out.increment(usage.output);
    rung.tokens_cached.increment(usage.cached_input);
    if me.sole_model.is_none() {
        cx.account.record_call(CallRecord {
            step,
            model: Arc::clone(&rung.name),
            tokens: *usage,
            cost,
            top_rung_cost: if answered {
                me.top_price.cost(usage)
            } else {
                NanoUsd::ZERO
            },
            energy,
        });
    }
    (cost, energy)
}
