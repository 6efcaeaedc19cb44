//! Anthropic messages: `POST {endpoint}/v1/messages` with `x-api-key` and `anthropic-version`.
//!
//! Usage mapping: Baton's `input` counts every prompt token — `input_tokens` plus cache reads and
//! cache writes — `cached_input` the cache reads (priced at the cached rate) and
//! `cache_write_input` the cache writes (priced at the cache-write rate: 1.25× the input's in the
//! built-in table).

use baton_core::async_trait;
use baton_core::{
    Message, Model, ModelError, ModelRequest, ModelResponse, Role, TokenUsage, ToolCall,
};
use serde_json::{Value, json};

use crate::ProviderConfig;
use crate::http::{self, u64_at};

/// The API version header Baton speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A model behind the Anthropic messages API.
pub struct Anthropic {
    config: ProviderConfig,
    client: reqwest::Client,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A model with this configuration.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: ProviderConfig) -> Result<Anthropic, crate::ProviderError> {
        let client = http::client(config.connect_timeout)?;
        Ok(Anthropic { config, client })
    }

    fn body(&self, req: &ModelRequest<'_>) -> Value {
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let mut messages: Vec<Value> = Vec::new();
        for m in req.messages.iter().filter(|m| m.role != Role::System) {
            let (role, blocks) = blocks(m);
            // The API wants user and assistant turns to alternate: merge neighbours of one role.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(arr) = last["content"].as_array_mut() {
                        arr.extend(blocks);
                    }
                }
                _ => messages.push(json!({"role": role, "content": blocks})),
            }
        }
        let cache = self.config.prompt_cache;
        let breakpoint = json!({"type": "ephemeral"});
        if cache
            && let Some(last) = messages
                .last_mut()
                .and_then(|m| m["content"].as_array_mut())
                .and_then(|blocks| blocks.last_mut())
        {
            // The transcript so far: the next call's prefix.
            last["cache_control"] = breakpoint.clone();
        }
        let mut body = json!({
            "model": self.config.model,
            "max_tokens": req.max_tokens,
            "messages": messages,
        });
        if !system.is_empty() {
            let text = system.join("\n\n");
            body["system"] = if cache {
                json!([{"type": "text", "text": text, "cache_control": breakpoint}])
            } else {
                json!(text)
            };
        }
        if !req.tools.is_empty() {
            let mut tools: Vec<Value> = req
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            if cache && let Some(last) = tools.last_mut() {
                last["cache_control"] = breakpoint;
            }
            body["tools"] = Value::Array(tools);
        }
        if self.config.stream {
            body["stream"] = json!(true);
        }
        body
    }
}

fn blocks(m: &Message) -> (&'static str, Vec<Value>) {
    match m.role {
        Role::Tool => (
            "user",
            vec![
                json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}),
            ],
        ),
        Role::Assistant => {
            let mut b = Vec::new();
            if !m.content.is_empty() {
                b.push(json!({"type": "text", "text": m.content}));
            }
            for c in &m.tool_calls {
                b.push(
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                );
            }
            ("assistant", b)
        }
        _ => ("user", vec![json!({"type": "text", "text": m.content})]),
    }
}

fn usage(u: &Value) -> TokenUsage {
    let read = u64_at(u, &["cache_read_input_tokens"]);
    let written = u64_at(u, &["cache_creation_input_tokens"]);
    TokenUsage {
        input: u64_at(u, &["input_tokens"]) + read + written,
        output: u64_at(u, &["output_tokens"]),
        cached_input: read,
        cache_write_input: written,
    }
}

fn refused(model: &str, v: &Value) -> Option<ModelError> {
    (v.get("stop_reason").and_then(Value::as_str) == Some("refusal")).then(|| ModelError::Refused {
        model: model.to_string(),
        message: "the model declined (stop_reason: refusal)".into(),
    })
}

/// Parses a non-streaming reply. A reply without `usage` comes back with `estimated` set: the
/// caller estimates it. A reply that cannot be used carries the usage it reported.
pub(crate) fn parse_reply(model: &str, v: &Value) -> Result<ModelResponse, ModelError> {
    if let Some(e) = refused(model, v) {
        return Err(e);
    }
    let billed = v.get("usage").filter(|u| u.is_object()).map(usage);
    let bad = |message: &str| http::malformed_billed(model, message, billed);
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the reply has no `content` blocks"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in content {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a tool_use block has no name"))?
                    .to_string(),
                arguments: b.get("input").cloned().unwrap_or_else(|| json!({})),
            }),
            _ => {}
        }
    }
    Ok(ModelResponse {
        cpu: std::time::Duration::ZERO,
        explain: None,
        text: (!text.is_empty()).then_some(text),
        tool_calls,
        usage: billed.unwrap_or_default(),
        // The messages API reports no token probabilities.
        confidence: None,
        estimated: billed.is_none(),
        truncated: v.get("stop_reason").and_then(Value::as_str) == Some("max_tokens"),
    })
}

#[derive(Default)]
struct Partial {
    /// (type, text or partial JSON, id, name) per content block index.
    blocks: Vec<(String, String, String, String)>,
    /// The usage fields reported so far, by name: `input_tokens`, `cache_read_input_tokens`,
    /// `cache_creation_input_tokens`, `output_tokens`.
    reported: [Option<u64>; 4],
    stop_reason: Option<String>,
}

const USAGE_FIELDS: [&str; 4] = [
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
];

impl Partial {
    /// Takes every usage field an event carries, the last non-zero value winning: gateways (and
    /// the API, for some fields) send `input_tokens` and the cache fields in `message_delta`,
    /// with `message_start` carrying zero or a placeholder.
    fn fold_usage(&mut self, u: &Value) {
        for (slot, field) in self.reported.iter_mut().zip(USAGE_FIELDS) {
            if let Some(n) = u.get(field).and_then(Value::as_u64)
                && (n > 0 || slot.is_none())
            {
                *slot = Some(n);
            }
        }
    }
}

impl http::EventSink for Partial {
    fn billed(&self) -> Option<TokenUsage> {
        if self.reported.iter().all(Option::is_none) {
            return None;
        }
        let [fresh, read, written, output] = self.reported.map(|n| n.unwrap_or(0));
        Some(TokenUsage {
            input: fresh + read + written,
            output,
            cached_input: read,
            cache_write_input: written,
        })
    }

    fn event(&mut self, name: &str, event: crate::sse::Event) -> Result<bool, ModelError> {
        let v: Value = serde_json::from_str(&event.data).map_err(|e| {
            http::malformed_billed(
                name,
                format!("a stream event is not JSON ({e})"),
                self.billed(),
            )
        })?;
        let kind = event
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.fold_usage(u);
                }
            }
            "content_block_start" => {
                let i = usize::try_from(v.get("index").and_then(Value::as_u64).unwrap_or(0))
                    .unwrap_or(0);
                while self.blocks.len() <= i {
                    self.blocks.push(Default::default());
                }
                let b = v.get("content_block").cloned().unwrap_or_default();
                let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                self.blocks[i] = (s("type"), s("text"), s("id"), s("name"));
            }
            "content_block_delta" => {
                let i = usize::try_from(v.get("index").and_then(Value::as_u64).unwrap_or(0))
                    .unwrap_or(0);
                let d = v.get("delta").cloned().unwrap_or_default();
                let piece = d
                    .get("text")
                    .or_else(|| d.get("partial_json"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(b) = self.blocks.get_mut(i) {
                    b.1.push_str(piece);
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.fold_usage(u);
                }
                self.stop_reason = v
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "message_stop" => return Ok(true),
            "error" => {
                let e = v.get("error").cloned().unwrap_or_default();
                let kind = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string();
                let status = match kind.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    _ => 400,
                };
                return Err(ModelError::Http {
                    model: name.to_string(),
                    status,
                    message: http::said(e.get("message").and_then(Value::as_str).unwrap_or("")),
                    kind: http::said(&kind),
                    retry_after: None,
                });
            }
            _ => {}
        }
        Ok(false)
    }
}

#[async_trait]
impl Model for Anthropic {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let name = self.config.name.as_str();
        let url = format!("{}/v1/messages", self.config.endpoint.trim_end_matches('/'));
        let mut http = self
            .client
            .post(url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&self.body(&request));
        if let Some(key) = &self.config.api_key {
            http = http.header("x-api-key", key.expose());
        }
        let response = http::send(name, http).await?;
        let cap = http::reply_cap(request.max_tokens);
        let mut reply = if self.config.stream {
            self.streamed(response, cap).await?
        } else {
            parse_reply(name, &http::json_body(name, response, cap).await?)?
        };
        if reply.estimated {
            // No usage in the reply: booked at a conservative estimate (the prompt as reserved,
            // the completion at one token per three bytes), marked as such.
            reply.usage = TokenUsage {
                input: self.estimate_input_tokens(&request),
                output: crate::tokens::output_tokens(&self.config.model, &reply),
                cached_input: 0,
                cache_write_input: 0,
            };
        }
        Ok(reply)
    }
}

impl Anthropic {
    async fn streamed(
        &self,
        response: reqwest::Response,
        cap: usize,
    ) -> Result<ModelResponse, ModelError> {
        use http::EventSink as _;
        let name = self.config.name.as_str();
        let mut p = Partial::default();
        http::for_each_event(name, response, &mut p, cap).await?;
        if p.stop_reason.as_deref() == Some("refusal") {
            return Err(ModelError::Refused {
                model: name.to_string(),
                message: "the model declined (stop_reason: refusal)".into(),
            });
        }
        let billed = p.billed();
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for (kind, body, id, call) in p.blocks {
            match kind.as_str() {
                "text" => text.push_str(&body),
                "tool_use" => {
                    let arguments = if body.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&body).map_err(|e| {
                            http::malformed_billed(
                                name,
                                format!("tool call `{call}` has input that is not JSON ({e})"),
                                billed,
                            )
                        })?
                    };
                    tool_calls.push(ToolCall {
                        id,
                        name: call,
                        arguments,
                    });
                }
                _ => {}
            }
        }
        Ok(ModelResponse {
            cpu: std::time::Duration::ZERO,
            explain: None,
            text: (!text.is_empty()).then_some(text),
            tool_calls,
            usage: billed.unwrap_or_default(),
            confidence: None,
            estimated: billed.is_none(),
            truncated: p.stop_reason.as_deref() == Some("max_tokens"),
        })
    }
}
