//! The metrics the runtime emits, described once, and the CPU-time measurement of tools.
//!
//! Libraries emit through the `metrics` facade; the binary installs the exporter and calls
//! [`describe_metrics`] so that every family carries its HELP text. Names follow Prometheus
//! conventions: `baton_` prefix, base units, `_total` for counters; labels come only from the
//! topology (agent, model, tool) and from fixed sets (kind, outcome, reason).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Every metric family Baton emits, with its kind and HELP text.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "baton_shared_lease_draws_total",
        "counter",
        "Leases drawn from a budget shared with other replicas (--ledger), by budget and outcome: granted, refused (the budget cannot cover the reservation), error (the database could not be asked).",
    ),
    (
        "baton_shared_draw_seconds",
        "histogram",
        "How long a draw from a shared budget took, by budget: the wait on the budget's row is the contention between replicas.",
    ),
    (
        "baton_shared_leases_reaped_total",
        "counter",
        "Leases of replicas that stopped renewing them, booked (what they reported they may have spent) and the rest returned by this replica, by budget: takeovers.",
    ),
    (
        "baton_shared_db_retries_total",
        "counter",
        "Statements to the shared ledger tried again on a new connection after the database or the network went away, by what they were doing.",
    ),
    (
        "baton_shared_tasks_taken_over_total",
        "counter",
        "Tasks of the shared queue whose replica stopped renewing their lease (it died), taken over by this replica (ended interrupted, or run again), by topology.",
    ),
    (
        "baton_shared_tasks_resumed_total",
        "counter",
        "Tasks of the shared queue whose replica died, run again by this replica (on_interrupted: resume), by topology.",
    ),
    (
        "baton_tool_output_tokens_saved_total",
        "counter",
        "Tokens of long tool output cut before it re-entered a model's context, by agent and tool.",
    ),
    (
        "baton_mcp_restarts_total",
        "counter",
        "Restarts of MCP servers (stdio) whose session closed, by server.",
    ),
    (
        "baton_loop_runs_total",
        "counter",
        "Runs of standing loops, by schedule and outcome.",
    ),
    (
        "baton_loop_skipped_total",
        "counter",
        "Ticks of standing loops that started no run, by schedule and reason (overlap, breaker, paused, runtime_down; with a shared ledger elsewhere: another replica ran it, unclaimed: the ledger was unreachable).",
    ),
    (
        "baton_loop_breaker_state",
        "gauge",
        "A standing loop's spend circuit breaker: 0 closed, 1 half-open, 2 open.",
    ),
    (
        "baton_loop_breaker_trips_total",
        "counter",
        "Times a standing loop's spend circuit breaker opened.",
    ),
    (
        "baton_tokens_total",
        "counter",
        "Tokens billed by model calls, by kind: input (cached included), output, cached_input.",
    ),
    (
        "baton_cost_nanousd_total",
        "counter",
        "Money booked in the ledger for model calls, in nano-dollars (exact integer).",
    ),
    (
        "baton_model_requests_total",
        "counter",
        "Model calls, by outcome (ok or error).",
    ),
    (
        "baton_model_usage_estimated_total",
        "counter",
        "Model replies booked at Baton's conservative estimate because the server reported no usage, by agent and model.",
    ),
    (
        "baton_model_replies_truncated_total",
        "counter",
        "Model replies cut at the completion-token ceiling (finish_reason length, stop_reason max_tokens), by agent and model.",
    ),
    (
        "baton_model_request_duration_seconds",
        "histogram",
        "Latency of model calls.",
    ),
    (
        "baton_model_retries_total",
        "counter",
        "Model calls retried after a retryable failure (rate limit, overload, server or transport error).",
    ),
    (
        "baton_token_estimate_ratio",
        "histogram",
        "Billed prompt tokens divided by the estimate reserved before the call (above 1: the estimate was short).",
    ),
    (
        "baton_router_decisions_total",
        "counter",
        "Which model answered a step and why: cheapest, escalated (after a failure) or budget (after a refusal).",
    ),
    (
        "baton_agent_steps_total",
        "counter",
        "Loop iterations of agents.",
    ),
    (
        "baton_tool_calls_total",
        "counter",
        "Tool calls, by outcome (ok, error, timeout, panic, invalid: arguments refused by the schema).",
    ),
    (
        "baton_tool_duration_seconds",
        "histogram",
        "Wall-clock duration of tool calls.",
    ),
    (
        "baton_privacy_local_steps_total",
        "counter",
        "Steps kept on a local model because their task was private (a sensitive tool's output, a local_only agent).",
    ),
    (
        "baton_energy_uj_total",
        "counter",
        "Energy of model and tool calls, in micro-joules (exact integer), by kind (model, tool), method (measured, estimated) and model.",
    ),
    (
        "baton_workflow_energy_joules",
        "histogram",
        "Energy per finished workflow (a root task or a loop run), in joules, by workflow.",
    ),
    (
        "baton_workflow_value_nanousd_total",
        "counter",
        "Value produced by completed workflows, in nano-dollars (exact integer), by workflow.",
    ),
    (
        "baton_loop_roi",
        "gauge",
        "A standing loop's return on spend (value / cost) over its breaker's window.",
    ),
    (
        "baton_free_tier_steps_total",
        "counter",
        "Agent steps answered by a free (price 0) model, by agent.",
    ),
    (
        "baton_resent_tokens_total",
        "counter",
        "Input tokens a model call re-sent (already sent by an earlier call of the same task), by agent.",
    ),
    (
        "baton_model_cpu_seconds",
        "histogram",
        "CPU time of this machine's inference per model call (embedded models).",
    ),
    (
        "baton_tool_cpu_seconds",
        "histogram",
        "CPU time spent inside tool calls (the CPU side of the bill).",
    ),
    (
        "baton_policy_denials_total",
        "counter",
        "Tool calls the harness's policy denied (role, freeze, dry-run-first, approval).",
    ),
    ("baton_tasks_total", "counter", "Tasks by terminal outcome."),
    (
        "baton_workflow_cost_usd",
        "histogram",
        "Cost of each completed run (root task and everything it delegated), in dollars.",
    ),
    (
        "baton_budget_refusals_total",
        "counter",
        "Reservations refused because they did not fit a budget.",
    ),
    (
        "baton_budget_cutoffs_total",
        "counter",
        "Agents cut off by their supervisor after exceeding a budget.",
    ),
    (
        "baton_budget_reroutes_total",
        "counter",
        "Budget reroutes, by reason: cheaper_model or fallback_agent.",
    ),
    (
        "baton_budget_remaining_usd",
        "gauge",
        "What is left of the budget of the agent's latest task after its latest call, in dollars.",
    ),
    (
        "baton_restarts_total",
        "counter",
        "Agent restarts by their supervisor.",
    ),
    (
        "baton_escalations_total",
        "counter",
        "Supervisors that gave up (restart intensity exceeded) and escalated.",
    ),
    (
        "baton_agents_running",
        "gauge",
        "Agent actors currently running.",
    ),
];

/// Registers the HELP text of every metric with the installed recorder. Call it once, after
/// installing one (the CLI does).
pub fn describe_metrics() {
    for (name, kind, help) in METRICS {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "gauge" => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Wraps a future and adds up the time spent inside its polls: the CPU a tool burns on the
/// runtime's threads, wherever it is polled. A poll is synchronous code on one thread, so its
/// duration is its CPU time (unless the OS preempts the thread mid-poll, which counts against the
/// tool — the honest side to err on). Time spent waiting between polls (I/O, timers) is not
/// counted. This costs two vDSO clock reads per poll; the thread CPU clock would cost two system
/// calls (measured: 15% of a tool-heavy workflow's framework time).
pub(crate) struct CpuTimed<F> {
    inner: F,
    pub(crate) cpu: Duration,
}

impl<F> CpuTimed<F> {
    pub(crate) fn new(inner: F) -> CpuTimed<F> {
        CpuTimed {
            inner,
            cpu: Duration::ZERO,
        }
    }
}

impl<F: Future + Unpin> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = std::time::Instant::now();
        let r = Pin::new(&mut self.inner).poll(cx);
        self.cpu += start.elapsed();
        r
    }
}
