//! Observing a run as it happens: every step, tool call, delegation and outcome.

use baton_core::{NanoUsd, Outcome, TokenUsage};

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
    },
    /// The router set a model's answer aside, or raised the step's quality bar: the next call
    /// goes up the ladder.
    Escalated {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
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
        /// `cut_off`, `rerouted to <agent>` or `rerouted to model <model>`.
        action: &'a str,
    },
    /// A task ended.
    Finished {
        /// Agent.
        agent: &'a str,
        /// Task id.
        task: u64,
        /// How.
        outcome: Outcome,
        /// The final answer or the reason it ended.
        detail: &'a str,
    },
}

/// Receives [`Event`]s. Called inline on the agent's actor: keep it quick.
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
}
