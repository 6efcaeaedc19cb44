//! The `Model` trait: one async call from a request to a response, and the types on both sides.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::usage::TokenUsage;

/// Who wrote a message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the agent.
    System,
    /// The task (or a user's turn).
    User,
    /// The model's own turn.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Id the result must quote back.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments (a JSON object).
    pub arguments: serde_json::Value,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Tool calls (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text only.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A tool result answering `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Message {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
        }
    }
}

/// What a model sees of a tool: its name, description and JSON-schema parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSchema {
    /// Tool name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of its arguments.
    pub parameters: serde_json::Value,
}

/// One model call. Borrowed, so that a step does not copy the conversation.
#[derive(Clone, Copy, Debug)]
pub struct ModelRequest<'a> {
    /// The agent making the call (scripted models match on it; real providers ignore it).
    pub agent: &'a str,
    /// The loop iteration, from 1.
    pub step: u32,
    /// The conversation so far.
    pub messages: &'a [Message],
    /// The tools the model may call.
    pub tools: &'a [ToolSchema],
    /// The prompt tokens `tools` add, when the caller counted them once with [`tool_tokens`] for
    /// this model (the runtime does, at start); `None` to count them from `tools`. Estimators and
    /// token counters that walk the schemas use it instead.
    pub tool_tokens: Option<u64>,
    /// Maximum completion tokens.
    pub max_tokens: u32,
    /// Ask the model to report its confidence (for OpenAI-compatible servers: token
    /// log-probabilities, whose mean probability becomes [`ModelResponse::confidence`]). Set when
    /// the router would escalate on low confidence.
    pub confidence: bool,
}

/// What a request to an OpenAI-compatible server says about the tools it offers
/// (`tool_choice`). Some servers (llama-cpp-python's function-calling formats) ignore `tools`
/// unless it is set.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// `"auto"`: the model may call a tool or answer (the default).
    #[default]
    Auto,
    /// `"required"`: the model must call a tool.
    Required,
    /// `"none"`: the model must not call a tool.
    None,
    /// The field is left out (the server's own default applies).
    Omit,
}

impl ToolChoice {
    /// The wire value, or `None` for [`ToolChoice::Omit`].
    pub fn wire(self) -> Option<&'static str> {
        match self {
            ToolChoice::Auto => Some("auto"),
            ToolChoice::Required => Some("required"),
            ToolChoice::None => Some("none"),
            ToolChoice::Omit => None,
        }
    }
}

/// How an assistant turn that has tool calls and no text is sent to an OpenAI-compatible server.
/// OpenAI accepts `null`; several compatible servers answer `null` with HTTP 500 and accept `""`.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NullContent {
    /// `"content": ""` (the default: what the widest set of servers accepts).
    #[default]
    Empty,
    /// `"content": null`.
    Null,
    /// No `content` field.
    Omit,
}

/// A model's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// Text (a final answer when there are no tool calls).
    pub text: Option<String>,
    /// Tool calls to run before the next step.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens as the provider reports them.
    pub usage: TokenUsage,
    /// How sure the model is of this reply, from 0 to 1, when it says: the geometric mean of
    /// its tokens' probabilities (from log-probabilities), or a scripted rule's `confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// The usage is Baton's conservative estimate, not the provider's count: the server sent
    /// none (a stream without usage). Booked all the same, and marked so in the report, the audit
    /// and the metrics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    /// The reply was cut at the completion-token ceiling (`finish_reason: "length"`,
    /// `stop_reason: "max_tokens"`): its text or tool call may be incomplete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// CPU time this machine spent producing the reply (an embedded model's inference); zero
    /// for a model that runs elsewhere.
    #[serde(default, skip_serializing_if = "Duration::is_zero")]
    pub cpu: Duration,
    /// The model's own account of why it answered so, when it has one (the scripted model:
    /// the rule that fired); `baton run --explain` shows it beside the step.
    pub explain: Option<std::sync::Arc<str>>,
}

impl ModelResponse {
    /// A final answer.
    ///
    /// ```
    /// # use baton_core::{ModelRequest, ModelResponse};
    /// # fn demo(request: &ModelRequest<'_>) -> ModelResponse {
    /// ModelResponse::text("21°C, clear skies", request.usage_for(12))
    /// # }
    /// ```
    pub fn text(text: impl Into<String>, usage: TokenUsage) -> ModelResponse {
        ModelResponse {
            text: Some(text.into()),
            usage,
            ..ModelResponse::default()
        }
    }

    /// Tool calls to run before the next step, each `(tool name, arguments)`; their ids are
    /// generated (`call_1`, `call_2`, ...: unique within the reply, which is all a reply needs).
    ///
    /// ```
    /// # use baton_core::{ModelResponse, TokenUsage};
    /// # use serde_json::json;
    /// let reply = ModelResponse::tool_calls(
    ///     [("weather", json!({"city": "Lisbon"})), ("weather", json!({"city": "Porto"}))],
    ///     TokenUsage { input: 40, output: 12, cached_input: 0, cache_write_input: 0 },
    /// );
    /// assert_eq!(reply.tool_calls[1].id, "call_2");
    /// assert_eq!(reply.tool_calls[1].arguments["city"], "Porto");
    /// assert_eq!(reply.text, None);
    /// ```
    pub fn tool_calls<N: Into<String>>(
        calls: impl IntoIterator<Item = (N, serde_json::Value)>,
        usage: TokenUsage,
    ) -> ModelResponse {
        ModelResponse {
            tool_calls: calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall {
                    id: format!("call_{}", i + 1),
                    name: name.into(),
                    arguments,
                })
                .collect(),
            usage,
            ..ModelResponse::default()
        }
    }
}

impl ModelRequest<'_> {
    /// The usage to report for answering this request with `output` completion tokens, for a
    /// model whose backend counts no tokens: the prompt by Baton's conservative count (the same
    /// bound a reservation uses, [`conservative_input_tokens`]), so the booking never falls short
    /// of the reservation's assumption. A model that knows its real counts reports those instead.
    pub fn usage_for(&self, output: u64) -> TokenUsage {
        TokenUsage {
            input: conservative_input_tokens(self),
            output,
            cached_input: 0,
            cache_write_input: 0,
        }
    }
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Occurs when the provider answers with an error (HTTP status, or an injected fault).
    #[error("{model}: provider error: {message}")]
    Provider {
        /// Model name.
        model: String,
        /// What the provider said.
        message: String,
    },
    /// Occurs when the provider's reply cannot be understood (or is larger than Baton reads).
    #[error("{model}: malformed reply: {message}")]
    Malformed {
        /// Model name.
        model: String,
        /// What was wrong.
        message: String,
        /// Usage the reply reported although it could not be used (billed, so booked).
        billed: Option<TokenUsage>,
    },
    /// Occurs when a provider answers with an HTTP error status (the body's error kind and message
    /// are kept; credentials never are).
    #[error("{model}: HTTP {status} {kind}: {message}")]
    Http {
        /// Model name.
        model: String,
        /// HTTP status.
        status: u16,
        /// The provider's error type (`rate_limit_error`, `invalid_request_error`, ...).
        kind: String,
        /// The provider's message.
        message: String,
        /// What the provider asked us to wait before retrying (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// Occurs when the connection fails, is reset, or the reply is cut short.
    #[error("{model}: transport error: {message}")]
    Transport {
        /// Model name.
        model: String,
        /// What happened.
        message: String,
        /// Usage the provider reported before the failure (billed, so booked).
        billed: Option<TokenUsage>,
    },
    /// Occurs when the model refuses the request (a refusal is escalated, not retried).
    #[error("{model}: refused: {message}")]
    Refused {
        /// Model name.
        model: String,
        /// The refusal text.
        message: String,
    },
    /// Occurs when the call takes longer than the model's `timeout`.
    #[error("{model}: no reply within {timeout_ms} ms")]
    Timeout {
        /// Model name.
        model: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// Occurs when a scripted model has no rule for the request.
    #[error(
        "{model}: no scripted rule matches agent `{agent}` at step {step} (last message: {last:?})"
    )]
    NoRule {
        /// Model name.
        model: String,
        /// Requesting agent.
        agent: String,
        /// Step.
        step: u32,
        /// The start of the last message.
        last: String,
    },
}

impl ModelError {
    /// Whether the same call may succeed if made again: rate limits, overload, server errors,
    /// transport failures and timeouts. Client errors (400, 401, 403, 404, 422), refusals and
    /// malformed replies are not retried (the router escalates instead).
    pub fn retryable(&self) -> bool {
        match self {
            ModelError::Http { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || *status >= 500
            }
            ModelError::Transport { .. } | ModelError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// How long the provider asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ModelError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Usage the provider billed for the failed call, if it reported any.
    pub fn billed(&self) -> Option<TokenUsage> {
        match self {
            ModelError::Transport { billed, .. } | ModelError::Malformed { billed, .. } => *billed,
            _ => None,
        }
    }
}

/// A language model: one async call from a request to a response.
///
/// Implementations must be cheap to share (`Arc<dyn Model>`) and report the usage the provider bills.
///
/// ```
/// # mod baton { pub mod prelude { pub use baton_core::*; } }
/// use baton::prelude::*;
///
/// /// Looks the weather up once, then answers with what the tool said.
/// struct House;
///
/// #[async_trait]
/// impl Model for House {
///     async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
///         // What the provider would bill: here, an estimate from the request (12 output tokens).
///         let usage = request.usage_for(12);
///         Ok(match request.messages.last() {
///             Some(m) if m.role == Role::Tool => ModelResponse::text(m.content.clone(), usage),
///             _ => ModelResponse::tool_calls([("weather", serde_json::json!({"city": "Lisbon"}))], usage),
///         })
///     }
/// }
/// // Runtime::builder(topology).model("house", House), for a `custom` model named `house`.
/// ```
#[async_trait]
pub trait Model: Send + Sync + 'static {
    /// Calls the model.
    ///
    /// # Errors
    /// A [`ModelError`] when the provider fails or its reply cannot be used.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the call; nothing is booked for it.
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError>;

    /// An upper bound on the prompt tokens `request` will be billed for, used to reserve budget before
    /// the call. The default is a documented conservative bound (see [`conservative_input_tokens`]);
    /// providers with an exact tokenizer override it.
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        conservative_input_tokens(request)
    }
}

#[async_trait]
impl<M: Model + ?Sized> Model for std::sync::Arc<M> {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        (**self).call(request).await
    }
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        (**self).estimate_input_tokens(request)
    }
}

/// A conservative bound on prompt tokens without a tokenizer: one token per three bytes of text
/// (BPE tokenizers average about four bytes per token on English and three on code and JSON), plus
/// eight tokens of framing per message and per tool.
pub fn conservative_input_tokens(request: &ModelRequest<'_>) -> u64 {
    let mut bytes = 0usize;
    let mut items = 0u64;
    for m in request.messages {
        bytes += m.content.len();
        for c in &m.tool_calls {
            bytes += c.name.len() + json_len(&c.arguments);
        }
        items += 1;
    }
    let tools = request
        .tool_tokens
        .unwrap_or_else(|| conservative_tool_tokens(request.tools));
    (bytes as u64).div_ceil(3) + 8 * items + 8 + tools
}

/// The share of [`conservative_input_tokens`] that tool schemas take (counted apart, rounded up
/// apart: the sum stays an upper bound).
fn conservative_tool_tokens(tools: &[ToolSchema]) -> u64 {
    let mut bytes = 0usize;
    for t in tools {
        bytes += t.name.len() + t.description.len() + json_len(&t.parameters);
    }
    (bytes as u64).div_ceil(3) + 8 * tools.len() as u64
}

/// The prompt tokens that `tools` add to a request to `model`, by `model`'s own estimate: the
/// estimate of a request with the tools less that of the same request without them. Counted once
/// per agent and model, and passed in [`ModelRequest::tool_tokens`].
pub fn tool_tokens(model: &dyn Model, tools: &[ToolSchema]) -> u64 {
    let request = |tools| ModelRequest {
        agent: "",
        step: 1,
        messages: &[],
        tools,
        tool_tokens: None,
        max_tokens: 0,
        confidence: false,
    };
    model
        .estimate_input_tokens(&request(tools))
        .saturating_sub(model.estimate_input_tokens(&request(&[])))
}

fn json_len(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Null => 4,
        serde_json::Value::Bool(_) => 5,
        serde_json::Value::Number(n) => n.to_string().len(),
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => 2 + a.iter().map(|x| json_len(x) + 1).sum::<usize>(),
        serde_json::Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + json_len(x))
                .sum::<usize>()
        }
    }
}
