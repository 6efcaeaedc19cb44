//! Observing a run as it happens: every step, tool call, delegation and outcome.

use baton_core::{NanoUsd, Outcome, TokenUsage};
use serde_json::{Value, json};

/// Something that happened in a run. Borrowed, so that observing costs nothing when nobody listens.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A model call was made and booked.
    Step {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Loop iteration, from 1.
        step: u32,
        /// Model that answered.
        model: &'a str,
        /// Tokens billed.
        usage: &'a TokenUsage,
        /// Cost booked.
        cost: NanoUsd,
        /// The usage is Baton's estimate: the server reported none.
        estimated: bool,
        /// The reply was cut at the completion-token ceiling.
        truncated: bool,
        /// How long the model took to answer (zero for one that answered at its first poll).
        latency: std::time::Duration,
        /// CPU time this machine spent on the reply (an embedded model's inference; zero for a
        /// model that runs elsewhere).
        cpu: std::time::Duration,
        /// The call's energy and how it was obtained (see docs/tokenomics.md).
        energy: baton_core::Energy,
        /// Why the model answered so, when it says (the scripted model: the rule that fired).
        explain: Option<&'a str>,
        /// The text of a reply that also calls tools (a final answer's text is the task's
        /// outcome instead).
        said: Option<&'a str>,
    },
    /// The router set a model's answer aside, or raised the step's quality bar: the next call
    /// goes up the ladder.
    Escalated {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// The model whose answer was not good enough.
        model: &'a str,
        /// Why (`low confidence 42% < 70%`, `invalid tool call: ...`).
        reason: &'a str,
    },
    /// A model call failed; the agent escalates to the next model on its ladder, if any.
    ModelFailed {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Model that failed.
        model: &'a str,
        /// Why.
        error: &'a str,
    },
    /// A failed model call will be retried after `delay`.
    Retrying {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Model.
        model: &'a str,
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// How long it waits first.
        delay: std::time::Duration,
    },
    /// The model asked for a tool.
    ToolCall {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Tool name.
        tool: &'a str,
        /// The call's id (as the model gave it): pairs it with its observation when the calls
        /// of one reply run concurrently.
        call: &'a str,
        /// Arguments.
        arguments: &'a serde_json::Value,
    },
    /// A tool (or a delegation) returned; this is what the model will see.
    Observation {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Tool name.
        tool: &'a str,
        /// The id of the call this answers.
        call: &'a str,
        /// The result text.
        text: &'a str,
    },
    /// The harness decided on a tool call (before it ran): `allowed`, `denied` or `approved`.
    Policy {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// Tool.
        tool: &'a str,
        /// `allowed`, `approved` or `denied`.
        decision: &'a str,
        /// The rule that decided: `role`, `freeze`, `dry_run_first`, `approval`.
        rule: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A supervisor restarted a child (or the conductor the root agent).
    Restarted {
        /// The restarted agent.
        agent: &'a str,
        /// Its supervisor (`conductor` for the root agent).
        supervisor: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A standing loop's spend circuit breaker changed state.
    Breaker {
        /// The schedule.
        schedule: &'a str,
        /// The new state: `open`, `half_open` or `closed`.
        state: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A supervisor exceeded its restart intensity, stopped its children and escalated.
    GaveUp {
        /// The supervisor.
        supervisor: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A supervisor acted on a child whose task exceeded its budget.
    BudgetAction {
        /// The child.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// `cut_off`, `rerouted to <agent>` or `rerouted to model <model>`.
        action: &'a str,
    },
    /// A task started running on its agent (it had its running slot; it may have waited for one
    /// in the agent's queue). Every started task ends with one [`Event::Finished`]; a task refused
    /// `busy` (or cancelled while it waited) finishes without starting.
    Started {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id).
        root: u64,
        /// The task that delegated this one (none for a root task).
        parent: Option<u64>,
    },
    /// A task ended.
    Finished {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// The root task's id (the run's trace id): ties a delegated task's events to the task
        /// that was submitted.
        root: u64,
        /// How.
        outcome: Outcome,
        /// The final answer or the reason it ended.
        detail: &'a str,
        /// The task's own scoreboard figures: value credited, energy, re-sent tokens.
        score: baton_core::TaskScore,
    },
    /// A standing loop started a run: its root task, which every event of the run names as
    /// `root`. Audited as `run_start`; the audit trail then tags each record of the run with its
    /// `schedule` and `run`.
    RunStarted {
        /// The schedule.
        schedule: &'a str,
        /// The run's number (counted across restarts when the loop keeps a state file).
        run: u64,
        /// The run's root task.
        task: u64,
        /// The most the run may spend (nano-dollars), when it has a limit.
        limit_nanousd: Option<u64>,
        /// The interrupted run it resumes, if any.
        resumes: Option<u64>,
    },
}

impl Event<'_> {
    /// The event as a record: its kind (`model_call`, `tool_call`, `tool_result`, `policy`,
    /// `task_end`, ...) and its fields as JSON, as the audit trail and `baton serve`'s event
    /// streams write them. Owned: it can be sent down a channel. Long texts (a tool's result, a
    /// task's answer) are capped at 2,000 characters.
    pub fn record(&self) -> (&'static str, Value) {
        self.record_fields()
    }

    /// The root task (the submitted task whose run this is) the event belongs to; `None` for
    /// events of the runtime itself (a restart, a breaker, a supervisor giving up).
    pub fn root(&self) -> Option<u64> {
        match self {
            Event::Step { root, .. }
            | Event::Escalated { root, .. }
            | Event::ModelFailed { root, .. }
            | Event::Retrying { root, .. }
            | Event::ToolCall { root, .. }
            | Event::Observation { root, .. }
            | Event::Policy { root, .. }
            | Event::BudgetAction { root, .. }
            | Event::Started { root, .. }
            | Event::Finished { root, .. } => Some(*root),
            Event::RunStarted { task, .. } => Some(*task),
            Event::Restarted { .. } | Event::Breaker { .. } | Event::GaveUp { .. } => None,
        }
    }

    /// The fields of a `model_call` record.
    fn step_fields(&self) -> Value {
        let Event::Step {
            agent,
            task,
            root,
            step,
            model,
            usage,
            cost,
            estimated,
            truncated,
            latency,
            cpu,
            energy,
            explain,
            said,
        } = self
        else {
            return Value::Null;
        };
        let mut f = json!({"agent": agent, "task": task, "root": root, "step": step, "model": model, "tokens_in": usage.input,
               "tokens_out": usage.output, "tokens_cached": usage.cached_input, "cost_nanousd": cost.0,
               "latency_ms": u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)});
        if *estimated {
            f["estimated"] = json!(true);
        }
        if *truncated {
            f["truncated"] = json!(true);
        }
        if !cpu.is_zero() {
            f["cpu_ms"] = json!(cpu.as_secs_f64() * 1000.0);
        }
        if usage.cache_write_input > 0 {
            f["tokens_cache_write"] = json!(usage.cache_write_input);
        }
        if let Some(why) = explain {
            f["explain"] = json!(why);
        }
        if let Some(text) = said {
            f["said"] = json!(cap(text));
        }
        f["energy_uj"] = json!(energy.microjoules);
        f["energy_method"] = json!(energy.method.as_str());
        f
    }

    /// The fields of a `task_end` record.
    fn finished_fields(&self) -> Value {
        let Event::Finished {
            agent,
            task,
            root,
            outcome,
            detail,
            score,
        } = self
        else {
            return Value::Null;
        };
        let mut f = json!({"agent": agent, "task": task, "root": root, "outcome": outcome, "detail": cap(detail)});
        if score.value.0 > 0 {
            f["value_nanousd"] = json!(score.value.0);
        }
        if score.energy_uj() > 0 {
            f["energy_uj"] = json!(score.energy_uj());
        }
        if score.tokens_resent > 0 {
            f["tokens_resent"] = json!(score.tokens_resent);
        }
        f
    }

    fn record_fields(&self) -> (&'static str, Value) {
        let (kind, fields) = match self {
            Event::Step { .. } => ("model_call", self.step_fields()),
            Event::Escalated {
                agent,
                task,
                root,
                model,
                reason,
            } => (
                "escalation",
                json!({"agent": agent, "task": task, "root": root, "model": model, "reason": reason}),
            ),
            Event::ModelFailed {
                agent,
                task,
                root,
                model,
                error,
            } => (
                "model_error",
                json!({"agent": agent, "task": task, "root": root, "model": model, "error": error}),
            ),
            Event::Retrying {
                agent,
                task,
                root,
                model,
                attempt,
                delay,
            } => (
                "model_retry",
                json!({"agent": agent, "task": task, "root": root, "model": model, "attempt": attempt, "delay_ms": delay.as_millis() as u64}),
            ),
            Event::ToolCall {
                agent,
                task,
                root,
                tool,
                call,
                arguments,
            } => (
                "tool_call",
                json!({"agent": agent, "task": task, "root": root, "tool": tool, "call": call, "arguments": arguments}),
            ),
            Event::Observation {
                agent,
                task,
                root,
                tool,
                call,
                text,
            } => (
                "tool_result",
                json!({"agent": agent, "task": task, "root": root, "tool": tool, "call": call, "outcome": result_outcome(text), "result": cap(text)}),
            ),
            Event::Policy {
                agent,
                task,
                root,
                tool,
                decision,
                rule,
                reason,
            } => (
                "policy",
                json!({"agent": agent, "task": task, "root": root, "tool": tool, "decision": decision, "rule": rule, "reason": reason}),
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
            Event::RunStarted {
                schedule,
                run,
                task,
                limit_nanousd,
                resumes,
            } => (
                "run_start",
                json!({"schedule": schedule, "run": run, "task": task, "root": task,
                    "limit_nanousd": limit_nanousd, "resumes": resumes}),
            ),
            Event::GaveUp { supervisor, reason } => (
                "escalation",
                json!({"supervisor": supervisor, "reason": reason}),
            ),
            Event::BudgetAction {
                agent,
                task,
                root,
                action,
            } => (
                "budget",
                json!({"agent": agent, "task": task, "root": root, "action": action}),
            ),
            Event::Started {
                agent,
                task,
                root,
                parent,
            } => (
                "task_start",
                json!({"agent": agent, "task": task, "root": root, "parent": parent}),
            ),
            Event::Finished { .. } => ("task_end", self.finished_fields()),
        };
        (kind, fields)
    }
}

/// How a tool result reads: `denied` by the policy, an `error`, or `ok`.
fn result_outcome(text: &str) -> &'static str {
    if text.starts_with("denied by policy") {
        "denied"
    } else if text.starts_with("error") {
        "error"
    } else {
        "ok"
    }
}

/// A text capped at 2,000 characters (an ellipsis marks the cut).
fn cap(s: &str) -> String {
    if s.chars().count() > 2000 {
        format!("{}…", s.chars().take(2000).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Receives [`Event`]s. Called inline on the agent's actor: keep it quick (send the event's
/// [record](Event::record) down a channel for anything slow).
///
/// ```
/// use baton::prelude::*;
/// use std::sync::{Arc, Mutex};
///
/// /// Every task's outcome, by agent.
/// #[derive(Default)]
/// struct Outcomes(Mutex<Vec<(String, Outcome)>>);
///
/// impl Observer for Outcomes {
///     fn on_event(&self, event: &Event<'_>) {
///         if let Event::Finished { agent, outcome, .. } = event {
///             self.0.lock().expect("no observer panicked holding it").push((agent.to_string(), *outcome));
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let topology = TopologyBuilder::new("t")
/// #     .model("m", ModelSpec::custom(Price::per_million_tokens(NanoUsd(1), NanoUsd(1))))
/// #     .agent("desk", AgentSpec::new(["m"]))
/// #     .build()?;
/// let outcomes = Arc::new(Outcomes::default());
/// let runtime = Runtime::builder(topology)
///     .model("m", ScriptedModel::always("m", "done"))
///     .observer(Arc::clone(&outcomes)) // keep a handle to read it
///     .start()
///     .await?;
/// runtime.run("a task").await?;
/// runtime.shutdown().await;
/// assert_eq!(*outcomes.0.lock().expect("not poisoned"), [("desk".to_string(), Outcome::Completed)]);
/// # Ok(()) }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &Event<'_>);

    /// An event the harness acts on only once it is recorded: the decision to run a destructive
    /// tool call. An observer that keeps a durable record (the audit trail) writes it through to
    /// disk and returns why it could not; the call is then not made and the task fails. The
    /// default passes it to [`Observer::on_event`].
    ///
    /// # Errors
    /// Why the event could not be recorded.
    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        self.on_event(event);
        Ok(())
    }

    /// Returns once everything observed so far is where the observer puts it (an observer that
    /// writes on a thread of its own, as the audit trail does, waits for its writer).
    /// `Runtime::shutdown` calls it. The default has nothing to wait for.
    fn flush(&self) {}
}

/// A shared observer observes: an `Arc` of one can be registered and kept (to read what it
/// gathered, or to send events on from async code).
impl<T: Observer + ?Sized> Observer for std::sync::Arc<T> {
    fn on_event(&self, event: &Event<'_>) {
        (**self).on_event(event);
    }

    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        (**self).on_decision(event)
    }

    fn flush(&self) {
        (**self).flush();
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

    fn flush(&self) {
        for o in &self.0 {
            o.flush();
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
