//! The concurrent runtime: many tasks per agent, one reply's tool calls at once, backpressure,
//! supervision of concurrent tasks, and the ledger's memory. Every timing here is virtual (paused
//! tokio time): the assertions are about orderings and virtual durations, never wall-clock time.
//!
//! - `fan_out`: a reply's delegations run together; reads together, writes after, in order.
//! - `many`: 100 tasks at once take one task's time; an approval wait holds up nobody else.
//! - `backpressure`: `max_concurrency` and `queue`, the `busy` outcome.
//! - `supervision`: a panic ends its own task only; strategies and siblings' in-flight tasks; a
//!   retried task does not repeat a completed destructive call.
//! - `money`: parallel children racing for the last of a budget; accounts freed after tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_actors::{ApprovalDecision, ApprovalRequest, Approver, Event, Observer, Runtime};
use baton_core::{
    Budget, Effect, Model, ModelError, ModelRequest, ModelResponse, NanoUsd, Outcome, Role, Tool,
    ToolError, async_trait,
};
use baton_topologies::{
    AgentSpec, BudgetSpec, ModelSpec, PolicySpec, ToolSpec, Topology, TopologyBuilder,
};
use serde_json::json;
use tokio::time::Instant;

/// $1 per million tokens in and out.
fn priced() -> ModelSpec {
    ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd::from_usd(1),
        NanoUsd::from_usd(1),
    ))
    .max_output_tokens(100)
}

use baton_core::testing::{FnModel, calls, text, usage};

/// A model that takes `ms` of (virtual) time per call, then answers as the closure says.
fn slow<F>(ms: u64, f: F) -> FnModel<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    FnModel::new(f).with_latency(Duration::from_millis(ms))
}

/// One reply delegating each (agent, task) of `list`.
fn delegations(req: &ModelRequest<'_>, list: &[(&str, &str)]) -> ModelResponse {
    let list: Vec<(&str, serde_json::Value)> = list
        .iter()
        .map(|(agent, task)| ("delegate", json!({"agent": agent, "task": task})))
        .collect();
    calls(req, &list)
}

fn task_of(req: &ModelRequest<'_>) -> String {
    req.messages
        .iter()
        .find(|m| m.role == Role::User)
        .map_or(String::new(), |m| m.content.clone())
}

fn observations(req: &ModelRequest<'_>) -> String {
    req.messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A tool of a given effect that takes `ms` of virtual time and logs when each call starts and
/// ends (in ms since `origin`).
struct Timed {
    name: &'static str,
    effect: Effect,
    ms: u64,
    origin: Instant,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Tool for Timed {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "takes its time"
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let at = |i: Instant| i.duration_since(self.origin).as_millis();
        let dry = if args.get("dry_run").and_then(serde_json::Value::as_bool) == Some(true) {
            " dry"
        } else {
            ""
        };
        self.log.lock().expect("log").push(format!(
            "{}{dry} start {}",
            self.name,
            at(Instant::now())
        ));
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.log.lock().expect("log").push(format!(
            "{}{dry} end {}",
            self.name,
            at(Instant::now())
        ));
        Ok(format!("{}{dry} done", self.name))
    }
}

mod fan_out;

mod many;

mod backpressure;

mod supervision;

mod harness;

mod money;

mod handle;
