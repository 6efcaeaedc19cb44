//! One tool call under the harness. The order in which a tool call's concerns see it, outermost
//! first: the tool is known → arguments fit its schema → a retried task's journal (a completed
//! write is not repeated) → policy (role, freeze, dry-run-first) → approval → timeout + deadline +
//! cancellation → CPU meter → panic catching → the tool → output cap. Every refusal is an
//! observation the model sees.

use std::panic::AssertUnwindSafe;

use baton_core::ToolCall;
use futures::FutureExt;

use super::turn::{Observed, Stop};
use super::{TaskCx, panic_text};
use crate::observer::Event;
use crate::telemetry::CpuTimed;

/// Runs a tool call through the harness and returns what the model will see, and whether the
/// call was a bad one. A panicking tool crashes the task ([`Stop::Crash`]).
pub(crate) async fn run_tool(cx: &TaskCx<'_>, call: &ToolCall) -> Result<Observed, Stop> {
    let (me, account) = (cx.me(), cx.account);
    let Some(i) = me.tools.iter().position(|t| t.name() == call.name) else {
        let names: Vec<&str> = me.schemas.iter().map(|s| s.name.as_str()).collect();
        return Ok((
            format!(
                "error: no tool named `{}`; available: {}",
                call.name,
                names.join(", ")
            ),
            true,
        ));
    };
    let (tool, m, gate) = (&me.tools[i], &me.tool_metrics[i], &me.tool_gates[i]);
    let effect = gate.effect;
    // Arguments that do not fit the tool's schema never reach it (nor a human approver): the
    // model is told what is wrong and can correct itself.
    if let Some(problems) = invalid_arguments(gate, call) {
        m.calls[crate::plan::ToolOutcome::Invalid as usize].increment(1);
        return Ok((
            format!(
                "error: invalid arguments for `{}`: {problems}. Its parameters: {}",
                call.name,
                tool.parameters()
            ),
            true,
        ));
    }
    // A retried task resumes: a write or destructive call its crashed attempt completed is not
    // made again; the model sees the earlier result.
    if effect != baton_core::Effect::Read
        && let Some(earlier) = cx.journal.replay(&call.name, &call.arguments)
    {
        return Ok((
            format!("(done before the crash; not repeated) {earlier}"),
            false,
        ));
    }
    // `dry_run: true` to a tool that does not honour it is the real call: judged (and recorded)
    // as one.
    let claimed_dry = baton_core::policy::is_dry_run(&call.arguments);
    let dry_run = claimed_dry && gate.dry_run;
    let judged_args;
    let judged = if claimed_dry && !dry_run {
        judged_args = baton_core::policy::without_dry_run(&call.arguments);
        &judged_args
    } else {
        &call.arguments
    };
    // The harness decides, never the model: whatever the transcript says.
    match judge(cx, call, judged, effect).await {
        Judged::Go => {}
        Judged::Denied(text) => return Ok((text, false)),
        Judged::Cancelled => return Err(Stop::Cancelled),
        Judged::Unrecorded(why) => return Err(Stop::Fail(why)),
    }
    let result = invoke(cx, i, call, dry_run).await?;
    let result = match result {
        Some(Err(why)) => return Err(Stop::Crash(why)),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    if effect == baton_core::Effect::Destructive
        && dry_run
        && let Some(Ok(text)) = &result
    {
        let arguments = baton_core::policy::without_dry_run(&call.arguments);
        cx.journal
            .dry_run_outputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((call.name.clone(), arguments.clone(), text.clone()));
        cx.journal
            .dry_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((call.name.clone(), arguments));
    }
    let completed = matches!(result, Some(Ok(_)));
    if gate.sensitive {
        // What it said (or failed saying) is private: the task keeps to local models now.
        account.mark_private();
    }
    let observation = match result {
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
    };
    if completed && effect != baton_core::Effect::Read && !dry_run {
        cx.journal.record(&call.name, &call.arguments, &observation);
    }
    Ok((observation, false))
}

/// What is wrong with a call's arguments against the tool's schema (at most five problems), or
/// `None` when they fit (or the schema did not compile). Valid arguments allocate nothing.
fn invalid_arguments(gate: &crate::plan::ToolGate, call: &ToolCall) -> Option<String> {
    let v = gate.validator.as_ref()?;
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let args = if call.arguments.is_null() {
        &empty
    } else {
        &call.arguments
    };
    if v.is_valid(args) {
        return None;
    }
    let problems: Vec<String> = v
        .iter_errors(args)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    Some(problems.join("; "))
}

/// What a tool call gave: its result, a panic's reason (`Err`), or `None` when it ran out of time.
type Invoked = Option<Result<Result<String, baton_core::ToolError>, String>>;

/// Calls the agent's tool `i` under its timeout, the task's deadline and cancellation, with its
/// panics caught and its CPU time metered; counts its duration, CPU, energy and outcome.
async fn invoke(
    cx: &TaskCx<'_>,
    i: usize,
    call: &ToolCall,
    dry_run: bool,
) -> Result<Invoked, Stop> {
    let (me, env, account) = (cx.me(), cx.env, cx.account);
    let (tool, m, gate) = (&me.tools[i], &me.tool_metrics[i], &me.tool_gates[i]);
    let started = std::time::Instant::now();
    let tool_cx = baton_core::ToolContext::new(&me.name, env.task)
        .with_root(baton_core::TaskId(env.trace.0))
        .with_dry_run(dry_run)
        .with_deadline(env.deadline);
    let mut timed = CpuTimed::new(tool.call(&tool_cx, call.arguments.clone()));
    let run = async {
        match AssertUnwindSafe(&mut timed).catch_unwind().await {
            Ok(r) => Ok(r),
            Err(panic) => Err(format!(
                "`{}` crashed: tool `{}` panicked: {}",
                me.name,
                call.name,
                panic_text(&*panic)
            )),
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
            () = account.cancelled() => return Err(Stop::Cancelled),
        },
    };
    m.duration.record(started.elapsed().as_secs_f64());
    m.cpu.record(timed.cpu.as_secs_f64());
    let energy = cx.plan().cpu_power.energy(timed.cpu);
    crate::plan::count_energy(&m.energy_uj, energy);
    account.record_energy(baton_core::EnergyKind::Tool, energy);
    use crate::plan::ToolOutcome;
    let outcome = match &result {
        Some(Ok(Ok(_))) => ToolOutcome::Ok,
        Some(Ok(Err(_))) => ToolOutcome::Error,
        None => ToolOutcome::Timeout,
        Some(Err(_)) => ToolOutcome::Panic,
    };
    m.calls[outcome as usize].increment(1);
    Ok(result)
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

/// The policy event of a decision on `call`: `[decision, rule, reason]`.
fn policy_event<'a>(
    cx: &'a TaskCx<'_>,
    call: &'a ToolCall,
    [decision, rule, reason]: [&'a str; 3],
) -> Event<'a> {
    Event::Policy {
        agent: &cx.me().name,
        task: cx.task(),
        root: cx.env.trace.0,
        tool: &call.name,
        decision,
        rule,
        reason,
    }
}

enum Judged {
    Go,
    Denied(String),
    Cancelled,
    /// The decision to run a destructive call could not be recorded: the call is not made.
    Unrecorded(String),
}

/// Applies the policy to a tool call: role, freeze, dry-run-first, approval. Every decision on a
/// destructive call, and every denial, is an event (audited) and denials are counted.
async fn judge(
    cx: &TaskCx<'_>,
    call: &ToolCall,
    arguments: &serde_json::Value,
    effect: baton_core::Effect,
) -> Judged {
    use baton_core::policy::Verdict;
    let dry_runs = if effect == baton_core::Effect::Destructive {
        cx.journal.dry_runs()
    } else {
        Vec::new()
    };
    let j = Judge {
        cx,
        call,
        arguments,
        effect,
        dry_runs,
    };
    match j.check() {
        Verdict::Deny { rule, reason } => j.deny(rule, reason),
        Verdict::Allow => {
            if effect == baton_core::Effect::Destructive {
                let rule = if baton_core::policy::is_dry_run(arguments) {
                    "dry_run"
                } else {
                    "none"
                };
                return j.go("allowed", rule, "allowed");
            }
            Judged::Go
        }
        Verdict::NeedsApproval => j.ask_a_human().await,
    }
}

/// One tool call before the policy: what [`judge`] decides with.
struct Judge<'a, 'c> {
    cx: &'a TaskCx<'c>,
    call: &'a ToolCall,
    arguments: &'a serde_json::Value,
    effect: baton_core::Effect,
    /// The destructive calls the task dry-ran (for `dry_run_first`).
    dry_runs: Vec<(String, serde_json::Value)>,
}

impl Judge<'_, '_> {
    /// The policy's verdict as it stands now.
    fn check(&self) -> baton_core::policy::Verdict {
        let (plan, me) = (self.cx.plan(), self.cx.me());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        plan.policy.check(
            me.role.as_deref(),
            &self.call.name,
            self.effect,
            self.arguments,
            &self.dry_runs,
            now,
        )
    }

    /// Keeps a decision on the task's account (the run's report lists them).
    fn keep(&self, decision: &str, rule: &str, reason: &str) {
        self.cx.account.record_policy(baton_core::PolicyRecord {
            tool: self.call.name.clone(),
            decision: decision.to_string(),
            rule: rule.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Keeps a decision and tells the observers.
    fn decided(&self, decision: &str, rule: &str, reason: &str) {
        self.keep(decision, rule, reason);
        self.cx
            .plan()
            .observe(&policy_event(self.cx, self.call, [decision, rule, reason]));
    }

    /// A decision to go ahead with a destructive call is on the record (synced to disk) before
    /// the call runs; when it cannot be, the call is not made.
    fn go(&self, decision: &str, rule: &str, reason: &str) -> Judged {
        self.keep(decision, rule, reason);
        let event = policy_event(self.cx, self.call, [decision, rule, reason]);
        match self.cx.plan().observe_decision(&event) {
            Ok(()) => Judged::Go,
            Err(e) => Judged::Unrecorded(format!(
                "the audit trail cannot record the decision to run `{}` ({e}): the call was not made",
                self.call.name
            )),
        }
    }

    /// Denies the call by `rule`, counted and on the record; the model sees why.
    fn deny(&self, rule: &str, reason: String) -> Judged {
        // A rule not on the list (none today) counts as the last resort that denied it.
        let i = crate::plan::DENIAL_RULES
            .iter()
            .position(|r| *r == rule)
            .unwrap_or(crate::plan::DENIAL_RULES.len() - 1);
        self.cx.me().denials[i].increment(1);
        self.decided("denied", rule, &reason);
        Judged::Denied(format!("denied by policy ({rule}): {reason}"))
    }

    /// Asks the approver and waits, within the policy's approval timeout (cancellation ends the
    /// wait); an approval is judged again against the policy as it stands when it comes.
    async fn ask_a_human(&self) -> Judged {
        use crate::approval::ApprovalDecision;
        let (plan, me, env) = (self.cx.plan(), self.cx.me(), self.cx.env);
        let request = crate::approval::ApprovalRequest {
            agent: me.name.to_string(),
            task: env.task.0,
            root: env.trace.0,
            tool: self.call.name.clone(),
            arguments: self.arguments.clone(),
            dry_run: self
                .cx
                .journal
                .dry_run_output(&self.call.name, self.arguments),
            timeout: plan.policy.approval_timeout,
        };
        self.decided("requested", "approval", "waiting for a human's approval");
        let timeout = plan.policy.approval_timeout;
        let answer = tokio::select! {
            biased;
            () = self.cx.account.cancelled() => return Judged::Cancelled,
            r = tokio::time::timeout(timeout, plan.approver.decide(&request)) => r,
        };
        match answer {
            Ok(d @ (ApprovalDecision::Approved | ApprovalDecision::ApprovedBy(_))) => {
                let who = match d {
                    ApprovalDecision::ApprovedBy(who) => who,
                    _ => "approved by a human".to_string(),
                };
                // The approval may come minutes later: the policy is judged again as it stands
                // now (a change freeze may have begun meanwhile).
                if let baton_core::policy::Verdict::Deny { rule, reason } = self.check() {
                    return self.deny(
                        rule,
                        format!(
                            "{reason} (it began after the request; the approval no longer applies)"
                        ),
                    );
                }
                self.go("approved", "approval", &who)
            }
            Ok(ApprovalDecision::Denied(why)) => self.deny("approval", why),
            Err(_) => self.deny(
                "approval",
                format!(
                    "no answer within {}: denied",
                    baton_core::format_duration(timeout)
                ),
            ),
        }
    }
}
