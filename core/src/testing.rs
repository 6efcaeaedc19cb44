//! Test doubles for code that runs agents (feature `testing`): a model and a tool driven by a
//! closure, and helpers that build the replies a test model gives. Tests across the workspace
//! share these instead of each writing its own `impl Model` and `impl Tool`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    Effect, ModelError, ModelRequest, ModelResponse, TokenUsage, Tool, ToolCall, ToolContext,
    ToolError,
};

/// A model that answers as a closure says, after `latency` of (tokio) time — virtual under paused
/// time. Its prompt-token estimate is the scripted model's, so reservations match what it bills.
pub struct FnModel<F> {
    f: F,
    latency: Duration,
}

impl<F> FnModel<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    /// Answers at once.
    pub fn new(f: F) -> Self {
        FnModel {
            f,
            latency: Duration::ZERO,
        }
    }

    /// Takes `latency` per call.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

#[async_trait]
impl<F> crate::Model for FnModel<F>
where
    F: Fn(&ModelRequest<'_>) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
{
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        (self.f)(&request)
    }
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        crate::scripted::input_tokens(request.messages, request.tools)
    }
}

/// A tool named `name`, with `effect`, that answers as a closure says after `latency`.
pub struct FnTool<F> {
    name: String,
    effect: Effect,
    latency: Duration,
    parameters: Value,
    dry_run: bool,
    f: F,
}

impl<F> FnTool<F>
where
    F: Fn(&ToolContext<'_>, Value) -> Result<String, ToolError> + Send + Sync + 'static,
{
    /// A tool that reads (`Effect::Read`) and answers at once.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnTool {
            name: name.into(),
            effect: Effect::Read,
            latency: Duration::ZERO,
            parameters: serde_json::json!({"type": "object"}),
            dry_run: false,
            f,
        }
    }

    /// Its parameters' JSON schema (by default any object).
    #[must_use]
    pub fn with_parameters(mut self, parameters: Value) -> Self {
        self.parameters = parameters;
        self
    }

    /// It honours `dry_run: true` (its closure sees the flag in [`ToolContext`]).
    #[must_use]
    pub fn with_dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// What a call can change.
    #[must_use]
    pub fn with_effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }

    /// Takes `latency` per call (before the closure runs).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

#[async_trait]
impl<F> Tool for FnTool<F>
where
    F: Fn(&ToolContext<'_>, Value) -> Result<String, ToolError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "a test tool"
    }
    fn parameters(&self) -> Value {
        self.parameters.clone()
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn supports_dry_run(&self) -> bool {
        self.dry_run
    }
    async fn call(&self, cx: &ToolContext<'_>, arguments: Value) -> Result<String, ToolError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        (self.f)(cx, arguments)
    }
}

/// What a test model bills: the request's prompt (as the scripted model counts it) and `output`
/// tokens.
pub fn usage(request: &ModelRequest<'_>, output: u64) -> TokenUsage {
    TokenUsage {
        input: crate::scripted::input_tokens(request.messages, request.tools),
        output,
        cached_input: 0,
        cache_write_input: 0,
    }
}

/// A text answer (5 output tokens).
pub fn text(request: &ModelRequest<'_>, text: &str) -> ModelResponse {
    ModelResponse {
        text: Some(text.to_string()),
        usage: usage(request, 5),
        ..ModelResponse::default()
    }
}

/// A reply calling each (tool, arguments) of `list` (10 output tokens), with ids unique per step.
pub fn calls(request: &ModelRequest<'_>, list: &[(&str, Value)]) -> ModelResponse {
    ModelResponse {
        tool_calls: list
            .iter()
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: format!("c{}_{i}", request.step),
                name: (*name).into(),
                arguments: arguments.clone(),
            })
            .collect(),
        usage: usage(request, 10),
        ..ModelResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Model, Role, TaskId};

    #[tokio::test(start_paused = true)]
    async fn doubles_answer_as_their_closures_say_after_their_latency() {
        let model = FnModel::new(|r: &ModelRequest<'_>| Ok(text(r, &format!("step {}", r.step))))
            .with_latency(Duration::from_millis(50));
        let messages = [Message {
            role: Role::User,
            content: "hi".into(),
            tool_calls: vec![],
            tool_call_id: None,
        }];
        let request = ModelRequest {
            agent: "a",
            step: 3,
            messages: &messages,
            tools: &[],
            tool_tokens: None,
            max_tokens: 100,
            confidence: false,
        };
        let t0 = tokio::time::Instant::now();
        let reply = model.call(request).await.expect("answers");
        assert_eq!(t0.elapsed(), Duration::from_millis(50));
        assert_eq!(reply.text.as_deref(), Some("step 3"));
        assert_eq!(reply.usage.output, 5);
        assert_eq!(model.estimate_input_tokens(&request), reply.usage.input);
        let tool = FnTool::new("echo", |cx: &ToolContext<'_>, args: Value| {
            Ok(format!("{} {}", cx.agent, args["x"]))
        })
        .with_effect(Effect::Write);
        assert_eq!((tool.name(), tool.effect()), ("echo", Effect::Write));
        let said = tool
            .call(
                &ToolContext::new("ops", TaskId(1)),
                serde_json::json!({"x": 1}),
            )
            .await;
        assert_eq!(said.expect("ok"), "ops 1");
        let r = calls(&request, &[("echo", serde_json::json!({}))]);
        assert_eq!((r.tool_calls[0].id.as_str(), r.usage.output), ("c3_0", 10));
    }
}
