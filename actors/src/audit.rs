//! Writes what happens in a run to the hash-chained audit trail ([`baton_core::audit`]).

use baton_core::audit::AuditLog;
use serde_json::{Value, json};

use crate::observer::{Event, Observer};

/// An [`Observer`] that appends every model call, tool call and result, policy decision, budget
/// action, retry, restart, escalation and task outcome to an audit trail. Arguments and results
/// are recorded as the model sent and saw them (results capped at 2,000 characters); credentials
/// never pass through events.
pub struct AuditObserver {
    log: AuditLog,
}

impl AuditObserver {
    /// Audits to `log`.
    pub fn new(log: AuditLog) -> AuditObserver {
        AuditObserver { log }
    }
}

fn cap(s: &str) -> String {
    if s.chars().count() > 2000 {
        format!("{}…", s.chars().take(2000).collect::<String>())
    } else {
        s.to_string()
    }
}

impl AuditObserver {
    /// The record of `event`: its kind and fields.
    fn record(event: &Event<'_>) -> (&'static str, Value) {
        let (kind, fields) = match event {
            Event::Step {
                agent,
                task,
                step,
                model,
                usage,
                cost,
                estimated,
                truncated,
            } => {
                let mut f = json!({"agent": agent, "task": task, "step": step, "model": model, "tokens_in": usage.input,
                       "tokens_out": usage.output, "tokens_cached": usage.cached_input, "cost_nanousd": cost.0});
                if *estimated {
                    f["estimated"] = json!(true);
                }
                if *truncated {
                    f["truncated"] = json!(true);
                }
                ("model_call", f)
            }
            Event::Escalated {
                agent,
                task,
                model,
                reason,
            } => (
                "escalation",
                json!({"agent": agent, "task": task, "model": model, "reason": reason}),
            ),
            Event::ModelFailed {
                agent,
                task,
                model,
                error,
            } => (
                "model_error",
                json!({"agent": agent, "task": task, "model": model, "error": error}),
            ),
            Event::Retrying {
                agent,
                task,
                model,
                attempt,
                delay,
            } => (
                "model_retry",
                json!({"agent": agent, "task": task, "model": model, "attempt": attempt, "delay_ms": delay.as_millis() as u64}),
            ),
            Event::ToolCall {
                agent,
                task,
                tool,
                call,
                arguments,
            } => (
                "tool_call",
                json!({"agent": agent, "task": task, "tool": tool, "call": call, "arguments": arguments}),
            ),
            Event::Observation {
                agent,
                task,
                tool,
                call,
                text,
            } => {
                let outcome = if text.starts_with("denied by policy") {
                    "denied"
                } else if text.starts_with("error") {
                    "error"
                } else {
                    "ok"
                };
                (
                    "tool_result",
                    json!({"agent": agent, "task": task, "tool": tool, "call": call, "outcome": outcome, "result": cap(text)}),
                )
            }
            Event::Policy {
                agent,
                task,
                tool,
                decision,
                rule,
                reason,
            } => (
                "policy",
                json!({"agent": agent, "task": task, "tool": tool, "decision": decision, "rule": rule, "reason": reason}),
            ),
            Event::Restarted {
                agent,
                supervisor,
                reason,
            } => (
                "restart",
                json!({"agent": agent, "supervisor": supervisor, "reason": reason}),
            ),
            Event::Breaker {
                schedule,
                state,
                reason,
            } => (
                "breaker",
                json!({"schedule": schedule, "state": state, "reason": reason}),
            ),
            Event::GaveUp { supervisor, reason } => (
                "escalation",
                json!({"supervisor": supervisor, "reason": reason}),
            ),
            Event::BudgetAction {
                agent,
                task,
                action,
            } => (
                "budget",
                json!({"agent": agent, "task": task, "action": action}),
            ),
            Event::Finished {
                agent,
                task,
                outcome,
                detail,
            } => (
                "task_end",
                json!({"agent": agent, "task": task, "outcome": outcome, "detail": cap(detail)}),
            ),
        };
        (kind, fields)
    }
}

impl Observer for AuditObserver {
    fn on_event(&self, event: &Event<'_>) {
        let (kind, fields) = Self::record(event);
        let Value::Object(fields) = fields else {
            return;
        };
        if let Err(e) = self.log.append(kind, fields) {
            tracing::error!("audit trail: {e}");
        }
    }

    /// Written and synced to disk before the call it decides runs.
    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        let (kind, fields) = Self::record(event);
        let Value::Object(fields) = fields else {
            return Ok(());
        };
        self.log.append_durable(kind, fields).map_err(|e| {
            tracing::error!("audit trail: {e}");
            e.to_string()
        })
    }
}

/// Fans one event out to several observers, in order.
pub(crate) struct Many(pub(crate) Vec<Box<dyn Observer>>);

impl Observer for Many {
    fn on_event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.on_event(event);
        }
    }

    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        // Every observer sees it; the first failure is the answer.
        let mut first = Ok(());
        for o in &self.0 {
            if let Err(e) = o.on_decision(event)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}
