//! A sub-task handed to a child: its account opened under the task's, admitted by the child
//! (a counter and a spawn on its shared state, no message), awaited for exactly one result; then the child's `on_budget_exceeded` (cut
//! off its subtree, or reroute the rest to its fallback with what is left of its budget).
//! A crash of the child's task is judged where it happened (the child's worker asks this agent's
//! actor for a verdict); here it is only an outcome.

use std::sync::Arc;

use baton_core::{Account, Budget, BudgetEventKind, NanoUsd, Outcome, ToolCall, Usd};
use baton_topologies::BudgetAction;

use super::turn::Stop;
use super::{Assignment, MAX_HOPS, TaskCx, TaskResult, end};
use crate::observer::Event;

/// Hands a sub-task to a child and returns what the model will see. Applies the child's
/// `on_crash` (retry once on the restarted child, or fail) and `on_budget_exceeded` (cut off, or
/// reroute to its fallback with what is left of its budget).
pub(crate) async fn delegate(cx: &TaskCx<'_>, call: &ToolCall) -> Result<String, Stop> {
    let (plan, me, env) = (cx.plan(), cx.me(), cx.env);
    let (Some(target), Some(task)) = (
        call.arguments.get("agent").and_then(|v| v.as_str()),
        call.arguments.get("task").and_then(|v| v.as_str()),
    ) else {
        return Ok("error: delegate needs `agent` and `task` (strings)".into());
    };
    let Some(slot) = me.children.iter().position(|(n, _)| &**n == target) else {
        let names: Vec<&str> = me.children.iter().map(|(n, _)| &**n).collect();
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
    let child_plan = Arc::clone(&plan.agents[me.children[slot].1]);
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
    let (result, child_account) = run_child(cx, slot, task.to_string(), budget).await?;
    // A private sub-task's answer may quote what made it private: it comes back private.
    if child_account.is_private() {
        cx.account.mark_private();
    }
    let name = Arc::clone(&child_plan.name);
    Ok(match result.outcome {
        Outcome::Completed => result.text,
        Outcome::BudgetExceeded => {
            match (
                child_plan.on_budget_exceeded,
                child_plan
                    .fallback
                    .and_then(|f| me.children.iter().position(|(_, p)| *p == f)),
            ) {
                (BudgetAction::Reroute, Some(fb)) => {
                    let left = child_account.remaining_cost();
                    let fb_name = Arc::clone(&me.children[fb].0);
                    let action = format!("rerouted to {fb_name}");
                    child_account.record_event(
                        BudgetEventKind::ReroutedAgent,
                        format!("{action} with {left} left"),
                    );
                    child_plan.reroutes_agent.increment(1);
                    plan.observe(&Event::BudgetAction {
                        agent: &name,
                        task: env.task.0,
                        root: env.trace.0,
                        action: &action,
                    });
                    let mut budget = plan.agents[me.children[fb].1].budget.clone();
                    budget.max_cost = Some(budget.max_cost.map_or(left, |c| c.min(left)));
                    let rest = format!(
                        "{task}\n\n(Taken over from `{name}`, which ran out of budget: {})",
                        result.text
                    );
                    let (fb_result, fb_account) = run_child(cx, fb, rest, budget).await?;
                    if fb_account.is_private() {
                        cx.account.mark_private();
                    }
                    match fb_result.outcome {
                        Outcome::Completed => fb_result.text,
                        o => format!(
                            "`{name}` ran out of budget; its fallback `{fb_name}` ended {o}: {}",
                            fb_result.text
                        ),
                    }
                }
                _ => {
                    // Cut off: the task's subtree stops (anything it left running under it); the
                    // agent and its other tasks carry on.
                    child_account.record_event(BudgetEventKind::CutOff, result.text.clone());
                    child_plan.cutoffs.increment(1);
                    plan.observe(&Event::BudgetAction {
                        agent: &name,
                        task: env.task.0,
                        root: env.trace.0,
                        action: "cut_off",
                    });
                    child_account.cancel();
                    format!("`{name}` was cut off: {}", result.text)
                }
            }
        }
        o => format!("`{name}` ended {o}: {}", result.text),
    })
}

/// Sub-tasks this many hops deep or less run inside their parent's task; deeper ones are spawned.
const INLINE_HOPS: u32 = 8;

/// Runs one sub-task on the child in `slot` to exactly one result, opening its account under
/// the task's. A task the child's actor dropped before starting it (the child was stopping) is
/// delivered again, to its successor.
async fn run_child(
    cx: &TaskCx<'_>,
    slot: usize,
    task: String,
    budget: Budget,
) -> Result<(TaskResult, Account), Stop> {
    let (plan, me, env, account) = (cx.plan(), cx.me(), cx.env, cx.account);
    let child_plan = &plan.agents[me.children[slot].1];
    let name = &child_plan.name;
    let child_env = env.child(Arc::clone(&me.name), budget, task);
    let child_account = account.open_child(
        child_env.task.0,
        Arc::clone(name),
        child_env.budget.max_cost,
        child_env.budget.max_tokens,
    );
    // However this ends — even dropped with its turn before the child took the task — the
    // sub-task has exactly one outcome.
    let _ends = Abandoned {
        cx,
        account: child_account.clone(),
        agent: child_plan,
    };
    let failed = |why: String| {
        if child_account.end(Outcome::Failed, why.clone()) {
            child_plan.tasks.count(Outcome::Failed);
        }
        let outcome = child_account.outcome().unwrap_or(Outcome::Failed);
        end(outcome, why)
    };
    let mut deliveries = 0u32;
    loop {
        let child = match cx.shared.child(slot).await {
            Ok(c) => c,
            Err(why) => return Ok((failed(why), child_account)),
        };
        let assignment = Assignment {
            envelope: child_env.clone(),
            account: child_account.clone(),
        };
        if child_env.hops <= INLINE_HOPS {
            // Run inside this task: when our task is cancelled, the child's account (under ours)
            // is too, and the child ends itself, with its outcome recorded.
            if let Some(result) = Box::pin(child.run_here(assignment)).await {
                if account.is_cancelled() {
                    return Err(Stop::Cancelled);
                }
                return Ok((result, child_account));
            }
        } else {
            // Deeper chains get a task of their own: polling dozens of nested turns from one task
            // would need a deep stack.
            let (tx, rx) = tokio::sync::oneshot::channel();
            if child.deliver(assignment, tx).is_none() {
                let answer = tokio::select! {
                    biased;
                    r = rx => r.ok(),
                    // Our task ended (cancelled, or its agent stopped): the child's is cancelled with it.
                    () = account.cancelled() => return Err(Stop::Cancelled),
                };
                if let Some(result) = answer {
                    return Ok((result, child_account));
                }
            }
        }
        deliveries += 1;
        if child_account.was_started() || child_account.is_cancelled() || deliveries > 64 {
            let why = child_account
                .end_reason()
                .map(str::to_string)
                .or_else(|| child_account.crash_reason())
                .unwrap_or_else(|| format!("`{name}` stopped while it held the task"));
            return Ok((failed(why), child_account));
        }
        tokio::task::yield_now().await;
    }
}

/// Ends a sub-task `cancelled` (counted, and told to the observers) if it has no outcome when its
/// delegation is dropped: its turn was abandoned before the child took it, or ended it.
struct Abandoned<'a, 'c> {
    cx: &'a TaskCx<'c>,
    account: Account,
    agent: &'a crate::plan::AgentPlan,
}

impl Drop for Abandoned<'_, '_> {
    fn drop(&mut self) {
        let why = "cancelled: the turn that delegated it ended first";
        if self.account.end(Outcome::Cancelled, why) {
            self.agent.tasks.count(Outcome::Cancelled);
            self.account.cancel();
            self.cx.observe(&Event::Finished {
                agent: &self.agent.name,
                task: self.account.task(),
                root: self.cx.env.trace.0,
                outcome: Outcome::Cancelled,
                detail: why,
                score: self.account.score(),
            });
        }
    }
}
