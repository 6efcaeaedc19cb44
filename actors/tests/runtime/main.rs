//! Integration tests of the runtime: a task's life through the conductor and its agents.
//!
//! - `loop_`: termination conditions (answer, max_steps, deadline, budget) and failures (model
//!   errors and panics, tool errors and panics).
//! - `delegation`: delegation, child budgets, and ledger conservation across the tree.
//! - `concurrency`: many tasks at once, each ending exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use baton_actors::{RunReport, Runtime};
use baton_core::{
    Budget, Model, ModelError, ModelRequest, ModelResponse, NanoUsd, Outcome, Role, ScriptedModel,
    TokenUsage, Tool, ToolCall, ToolError, async_trait,
};
use baton_topologies::{AgentSpec, BudgetSpec, ModelSpec, ToolSpec, Topology, TopologyBuilder};
use serde_json::json;

/// $1 per million tokens in and out: 1000 nano-dollars per token.
fn dollar_per_mtok() -> ModelSpec {
    ModelSpec::custom(baton_core::Price::per_million_tokens(
        NanoUsd::from_usd(1),
        NanoUsd::from_usd(1),
    ))
    .max_output_tokens(100)
}

fn usd(s: &str) -> Option<baton_core::Usd> {
    Some(baton_core::Usd(
        NanoUsd::parse_usd(s).expect("valid amount"),
    ))
}

use baton_core::testing::{FnModel, text, usage};

/// Wraps a model and writes down, apart from the ledger, every reply it gave and to which agent:
/// the oracle that conservation checks compare the report with.
struct Recording<M> {
    inner: M,
    seen: Arc<std::sync::Mutex<Vec<(String, TokenUsage)>>>,
}

#[async_trait]
impl<M: Model> Model for Recording<M> {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let agent = request.agent.to_string();
        let r = self.inner.call(request).await;
        if let Ok(reply) = &r {
            self.seen.lock().expect("oracle").push((agent, reply.usage));
        }
        r
    }
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        self.inner.estimate_input_tokens(request)
    }
}

fn call(req: &ModelRequest<'_>, name: &str, args: serde_json::Value) -> ModelResponse {
    ModelResponse {
        text: None,
        tool_calls: vec![ToolCall {
            id: format!("c{}", req.step),
            name: name.into(),
            arguments: args,
        }],
        usage: usage(req, 10),
        ..ModelResponse::default()
    }
}

/// `echo`: answers with its arguments; `{"mode": "panic"}` panics, `{"mode": "fail"}` fails.
fn echo() -> impl Tool {
    baton_core::testing::FnTool::new("echo", |_, args| {
        match args.get("mode").and_then(|m| m.as_str()) {
            Some("panic") => panic!("echo was asked to panic"),
            Some("fail") => Err(ToolError::Failed("echo failed on purpose".into())),
            _ => Ok(format!("echo {args}")),
        }
    })
}

fn single(agent: AgentSpec) -> Topology {
    TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("echo", ToolSpec::custom())
        .agent("solo", agent)
        .build()
        .expect("valid topology")
}

async fn run_with<M: Model>(
    topology: Topology,
    model: M,
    task: &str,
) -> (RunReport, baton_actors::TaskRun) {
    let rt = Runtime::builder(topology.clone())
        .model("m", model)
        .tool(echo())
        .start()
        .await
        .expect("starts");
    let raw = rt.submit(task, Budget::UNLIMITED).await.expect("runs");
    let snapshot = raw.account.snapshot();
    let report = RunReport::from_ledger(&snapshot, raw.result.outcome, None, None);
    raw.account.check_conservation().expect("conservation");
    rt.shutdown().await;
    (report, raw)
}

mod loop_;

mod crashes;

mod delegation;

mod concurrency;

mod supervision;

mod chaos;

mod policy;

mod harness;

mod router;

mod builtins;

mod loops;

/// Errors you can match and read (#19): a custom model or tool registered under a name the
/// topology does not use says which name it meant, both ways.
mod registration;
