//! The providers against a local server that answers with the providers' documented wire format
//! (fixtures under `fixtures/`): what is sent, what is parsed, and how failures are classified.
//!
//! - `openai`: chat completions, tool calls, streaming, cache tokens, refusals, error bodies.
//! - `anthropic`: messages, tool_use blocks, streaming events, overload and rate-limit errors.
//! - `failures`: a body cut short, truncated JSON, a stream ended early.

use std::time::Duration;

use baton_core::{Message, Model, ModelError, ModelRequest, Role, ToolCall, ToolSchema};
use baton_providers::testing::{FakeServer, Reply};
use baton_providers::{Anthropic, OpenAi, ProviderConfig};
use serde_json::json;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}

fn config(server: &FakeServer, stream: bool, model: &str) -> ProviderConfig {
    ProviderConfig {
        stream,
        connect_timeout: Duration::from_secs(2),
        ..ProviderConfig::new("test-model", model, server.url())
    }
}

fn transcript() -> Vec<Message> {
    vec![
        Message::new(Role::System, "You find root causes."),
        Message::new(Role::User, "p99 doubled at 14:05"),
        Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "query_metrics".into(),
                arguments: json!({"series": "checkout_p99_ms"}),
            }],
            tool_call_id: None,
        },
        Message {
            role: Role::Tool,
            content: "spike at 14:05".into(),
            tool_calls: Vec::new(),
            tool_call_id: Some("call_1".into()),
        },
    ]
}

fn tools() -> Vec<ToolSchema> {
    vec![ToolSchema {
        name: "lookup_owners".into(),
        description: "Owners of a path".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    }]
}

async fn call(model: &impl Model) -> Result<baton_core::ModelResponse, ModelError> {
    call_asking(model, false).await
}

/// [`call`], asking the model for its confidence or not.
async fn call_asking(
    model: &impl Model,
    confidence: bool,
) -> Result<baton_core::ModelResponse, ModelError> {
    let messages = transcript();
    let tools = tools();
    model
        .call(ModelRequest {
            agent: "rca",
            step: 2,
            messages: &messages,
            tools: &tools,
            tool_tokens: None,
            max_tokens: 256,
            confidence,
        })
        .await
}

mod openai;

mod anthropic;

mod failures;

/// OpenAI-compatible servers as they really are (llama.cpp's server, llama-cpp-python, Ollama,
/// vLLM): requests they accept, and replies that carry less than OpenAI's.
mod compatible;

/// Replies a hostile or broken server might send: huge bodies, endless lines, echoed keys.
mod hostile;

mod anthropic_usage;

/// Replies recorded from a real llama.cpp-family server — llama-cpp-python 0.3.36 serving
/// SmolLM2-135M-Instruct Q4_1 with `--chat_format chatml-function-calling` — replayed through
/// the fake server (`fixtures/llama-cpp-python/requests.json` holds the request of each).
mod llama_cpp_python;
