//! OpenAI-compatible chat completions: OpenAI, vLLM, llama.cpp's server, Ollama, LiteLLM and most
//! gateways speak it. `POST {endpoint}/chat/completions`.

use baton_core::async_trait;
use baton_core::{
    Message, Model, ModelError, ModelRequest, ModelResponse, NullContent, Role, TokenUsage,
    ToolCall,
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
    pub fn new(config: ProviderConfig) -> Result<OpenAi, crate::ProviderError> {
        let client = http::client(config.connect_timeout)?;
        // Loading a tokenizer takes a quarter of a second: start it now, off the first call's path.
        tokens::warm_up(&config.model);
        Ok(OpenAi { config, client })
    }

    fn body(&self, req: &ModelRequest<'_>) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| message(m, self.config.null_content))
            .collect();
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
            if let Some(choice) = self.config.tool_choice.wire() {
                body["tool_choice"] = json!(choice);
            }
        }
        if req.confidence {
            // Some servers send no probabilities unless `top_logprobs` is set too.
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(1);
        }
        if self.config.stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

fn message(m: &Message, null_content: NullContent) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant => {
            let mut v = json!({"role": "assistant", "content": m.content});
            if !m.tool_calls.is_empty() {
                if m.content.is_empty() {
                    match null_content {
                        NullContent::Empty => {}
                        NullContent::Null => v["content"] = Value::Null,
                        NullContent::Omit => {
                            if let Some(o) = v.as_object_mut() {
                                o.remove("content");
                            }
                        }
                    }
                }
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
        // OpenAI does not bill cache writes apart.
        cache_write_input: 0,
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

/// Parses a non-streaming reply. A reply without `usage` comes back with `estimated` set and no
/// usage: the caller estimates it. A reply that cannot be used carries the usage it reported.
pub(crate) fn parse_reply(model: &str, v: &Value) -> Result<ModelResponse, ModelError> {
    let billed = v.get("usage").filter(|u| u.is_object()).map(usage);
    let bad = |message: &str| http::malformed_billed(model, message, billed);
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| bad("the reply has no `choices[0].message`"))?;
    if let Some(r) = msg.get("refusal").and_then(Value::as_str) {
        return Err(ModelError::Refused {
            model: model.to_string(),
            message: http::said(r),
        });
    }
    let mut tool_calls = Vec::new();
    for (i, c) in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call has no function name"))?;
        // OpenAI sends the arguments as a JSON string; some compatible servers (Ollama's native
        // shape, some vLLM parsers) send the object itself.
        let arguments = match c.pointer("/function/arguments") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            other => arguments(model, name, other.and_then(Value::as_str).unwrap_or(""))
                .map_err(|e| with_billed(e, billed))?,
        };
        tool_calls.push(ToolCall {
            // A call without an id (those same servers) gets one: its result must quote it,
            // and two calls must not share one.
            id: c
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map_or_else(|| format!("call_{}", i + 1), str::to_string),
            name: name.to_string(),
            arguments,
        });
    }
    Ok(ModelResponse {
        cpu: std::time::Duration::ZERO,
        explain: None,
        text: msg
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        tool_calls,
        usage: billed.unwrap_or_default(),
        confidence: v
            .pointer("/choices/0")
            .map(logprobs)
            .and_then(|(s, n)| confidence(s, n)),
        estimated: billed.is_none(),
        truncated: v
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            == Some("length"),
    })
}

/// `e` (malformed) carrying the usage its reply reported.
fn with_billed(e: ModelError, billed: Option<TokenUsage>) -> ModelError {
    match e {
        ModelError::Malformed { model, message, .. } => ModelError::Malformed {
            model,
            message,
            billed,
        },
        e => e,
    }
}

#[derive(Default)]
struct Partial {
    text: String,
    refusal: String,
    calls: Vec<(String, String, String)>,
    usage: Option<TokenUsage>,
    logprob_sum: f64,
    logprob_n: u64,
    finish: Option<String>,
}

impl http::EventSink for Partial {
    fn billed(&self) -> Option<TokenUsage> {
        self.usage
    }

    fn event(&mut self, name: &str, event: crate::sse::Event) -> Result<bool, ModelError> {
        if event.data.trim() == "[DONE]" {
            return Ok(true);
        }
        let v: Value = serde_json::from_str(&event.data).map_err(|e| {
            http::malformed_billed(
                name,
                format!("a stream chunk is not JSON ({e})"),
                self.usage,
            )
        })?;
        if let Some(err) = v.get("error") {
            return Err(ModelError::Transport {
                model: name.to_string(),
                message: format!(
                    "error in stream: {}",
                    http::said(
                        err.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                    )
                ),
                billed: self.usage,
            });
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            // Some servers send usage in several chunks: a field's last non-zero value wins.
            let now = usage(u);
            let mut u = self.usage.unwrap_or_default();
            for (field, new) in [
                (&mut u.input, now.input),
                (&mut u.output, now.output),
                (&mut u.cached_input, now.cached_input),
            ] {
                if new > 0 {
                    *field = new;
                }
            }
            self.usage = Some(u);
        }
        if let Some(c) = v.pointer("/choices/0") {
            let (s, n) = logprobs(c);
            self.logprob_sum += s;
            self.logprob_n += n;
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.to_string());
            }
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
        let cap = http::reply_cap(request.max_tokens);
        let mut reply = if self.config.stream {
            let mut p = Partial::default();
            http::for_each_event(name, response, &mut p, cap).await?;
            if !p.refusal.is_empty() {
                return Err(ModelError::Refused {
                    model: name.to_string(),
                    message: http::said(&p.refusal),
                });
            }
            let mut tool_calls = Vec::new();
            for (id, call, raw) in p.calls {
                tool_calls.push(ToolCall {
                    arguments: arguments(name, &call, &raw).map_err(|e| with_billed(e, p.usage))?,
                    id,
                    name: call,
                });
            }
            ModelResponse {
                cpu: std::time::Duration::ZERO,
                explain: None,
                text: (!p.text.is_empty()).then_some(p.text),
                tool_calls,
                usage: p.usage.unwrap_or_default(),
                confidence: confidence(p.logprob_sum, p.logprob_n),
                estimated: p.usage.is_none(),
                truncated: p.finish.as_deref() == Some("length"),
            }
        } else {
            parse_reply(name, &http::json_body(name, response, cap).await?)?
        };
        if reply.estimated {
            // The server sent no usage (some never do, even when asked): the reply is kept and
            // booked at a conservative estimate — the prompt as reserved, the completion counted.
            reply.usage = TokenUsage {
                input: self.estimate_input_tokens(&request),
                output: tokens::output_tokens(&self.config.model, &reply),
                cached_input: 0,
                cache_write_input: 0,
            };
        }
        Ok(reply)
    }

    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        match tokens::openai_tokenizer(&self.config.model) {
            Some(bpe) => tokens::estimate_with(bpe, request),
            None => baton_core::conservative_input_tokens(request),
        }
    }
}
