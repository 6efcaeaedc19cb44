//! OpenAI-compatible chat completions: OpenAI, vLLM, llama.cpp's server, Ollama, LiteLLM and most
//! gateways speak it. `POST {endpoint}/chat/completions`.

use baton_core::async_trait;
use baton_core::{
    Message, Model, ModelError, ModelRequest, ModelResponse, Role, TokenUsage, ToolCall,
};
use serde_json::{Value, json};

use crate::http::{self, malformed, u64_at};
use crate::{ProviderConfig, tokens};

/// A model behind an OpenAI-compatible endpoint.
pub struct OpenAi {
    config: ProviderConfig,
    client: reqwest::Client,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// A model with this configuration.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: ProviderConfig) -> Result<OpenAi, String> {
        let client = http::client(config.connect_timeout)?;
        Ok(OpenAi { config, client })
    }

    fn body(&self, req: &ModelRequest<'_>) -> Value {
        let messages: Vec<Value> = req.messages.iter().map(message).collect();
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": req.max_tokens,
        });
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        if req.confidence {
            body["logprobs"] = json!(true);
        }
        if self.config.stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

fn message(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant => {
            let mut v = json!({"role": "assistant", "content": if m.content.is_empty() { Value::Null } else { json!(m.content) }});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
                    .collect();
            }
            v
        }
    }
}

fn usage(u: &Value) -> TokenUsage {
    TokenUsage {
        input: u64_at(u, &["prompt_tokens"]),
        output: u64_at(u, &["completion_tokens"]),
        cached_input: u64_at(u, &["prompt_tokens_details", "cached_tokens"]),
    }
}

fn arguments(model: &str, name: &str, raw: &str) -> Result<Value, ModelError> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(raw).map_err(|e| {
        malformed(
            model,
            format!("tool call `{name}` has arguments that are not JSON ({e})"),
        )
    })
}

/// The geometric mean of the tokens' probabilities, from `logprobs.content[].logprob` (what
/// OpenAI, vLLM and llama.cpp's server return with `logprobs: true`).
fn confidence(sum: f64, n: u64) -> Option<f32> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    (n > 0).then(|| (sum / n as f64).exp() as f32)
}

fn logprobs(choice: &Value) -> (f64, u64) {
    choice
        .pointer("/logprobs/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("logprob").and_then(Value::as_f64))
        .fold((0.0, 0), |(s, n), lp| (s + lp, n + 1))
}

/// Parses a non-streaming reply.
pub(crate) fn parse_reply(model: &str, v: &Value) -> Result<ModelResponse, ModelError> {
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| malformed(model, "the reply has no `choices[0].message`"))?;
    if let Some(r) = msg.get("refusal").and_then(Value::as_str) {
        return Err(ModelError::Refused {
            model: model.to_string(),
            message: r.to_string(),
        });
    }
    let u = v
        .get("usage")
        .ok_or_else(|| malformed(model, "the reply has no `usage`: it cannot be billed"))?;
    let mut tool_calls = Vec::new();
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(model, "a tool call has no function name"))?;
        let raw = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        tool_calls.push(ToolCall {
            id: c
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: name.to_string(),
            arguments: arguments(model, name, raw)?,
        });
    }
    Ok(ModelResponse {
        text: msg
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_string),
        tool_calls,
        usage: usage(u),
        confidence: v
            .pointer("/choices/0")
            .map(logprobs)
            .and_then(|(s, n)| confidence(s, n)),
    })
}

#[derive(Default)]
struct Partial {
    text: String,
    refusal: String,
    calls: Vec<(String, String, String)>,
    usage: Option<TokenUsage>,
    logprob_sum: f64,
    logprob_n: u64,
}

impl http::EventSink for Partial {
    fn billed(&self) -> Option<TokenUsage> {
        self.usage
    }

    fn event(&mut self, name: &str, event: crate::sse::Event) -> Result<bool, ModelError> {
        if event.data.trim() == "[DONE]" {
            return Ok(true);
        }
        let v: Value = serde_json::from_str(&event.data)
            .map_err(|e| malformed(name, format!("a stream chunk is not JSON ({e})")))?;
        if let Some(err) = v.get("error") {
            return Err(ModelError::Transport {
                model: name.to_string(),
                message: format!(
                    "error in stream: {}",
                    err.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                ),
                billed: self.usage,
            });
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage(u));
        }
        if let Some(c) = v.pointer("/choices/0") {
            let (s, n) = logprobs(c);
            self.logprob_sum += s;
            self.logprob_n += n;
        }
        if let Some(d) = v.pointer("/choices/0/delta") {
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                self.text.push_str(t);
            }
            if let Some(t) = d.get("refusal").and_then(Value::as_str) {
                self.refusal.push_str(t);
            }
            for c in d
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = usize::try_from(c.get("index").and_then(Value::as_u64).unwrap_or(0))
                    .unwrap_or(0);
                while self.calls.len() <= i {
                    self.calls.push(Default::default());
                }
                let slot = &mut self.calls[i];
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    slot.0.push_str(id);
                }
                if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                    slot.1.push_str(n);
                }
                if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.2.push_str(a);
                }
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl Model for OpenAi {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let name = self.config.name.as_str();
        let url = format!(
            "{}/chat/completions",
            self.config.endpoint.trim_end_matches('/')
        );
        let mut http = self.client.post(url).json(&self.body(&request));
        if let Some(key) = &self.config.api_key {
            http = http.bearer_auth(key.expose());
        }
        let response = http::send(name, http).await?;
        if !self.config.stream {
            return parse_reply(name, &http::json_body(name, response).await?);
        }
        let mut p = Partial::default();
        http::for_each_event(name, response, &mut p).await?;
        if !p.refusal.is_empty() {
            return Err(ModelError::Refused {
                model: name.to_string(),
                message: p.refusal,
            });
        }
        let usage = p.usage.ok_or_else(|| {
            malformed(
                name,
                "the stream carried no usage (stream_options.include_usage): it cannot be billed",
            )
        })?;
        let mut tool_calls = Vec::new();
        for (id, call, raw) in p.calls {
            tool_calls.push(ToolCall {
                arguments: arguments(name, &call, &raw)?,
                id,
                name: call,
            });
        }
        Ok(ModelResponse {
            text: (!p.text.is_empty()).then_some(p.text),
            tool_calls,
            usage,
            confidence: confidence(p.logprob_sum, p.logprob_n),
        })
    }

    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        match tokens::openai_tokenizer(&self.config.model) {
            Some(bpe) => tokens::estimate_with(bpe, request),
            None => baton_core::model::conservative_input_tokens(request),
        }
    }
}
