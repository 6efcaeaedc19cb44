//! baton-providers: model providers over HTTP, on reqwest (rustls with ring).
//!
//! - [`OpenAi`]: OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp's server, Ollama,
//!   LiteLLM, most gateways), with streaming over server-sent events and usage in the final chunk.
//! - [`Anthropic`]: the Anthropic messages API, with `tool_use` / `tool_result` blocks, cache usage
//!   and streaming events.
//!
//! - [`local::LocalModel`] (feature `local`): a GGUF model run in-process by llama.cpp, with
//!   tool calls by grammar, exact token counts and confidence from its own probabilities.
//!
//! Providers make one HTTP call per [`Model::call`](baton_core::Model::call) and classify what
//! went wrong ([`baton_core::ModelError::retryable`], `retry_after`, `billed`); retries, budgets
//! and deadlines are the runtime's layers around the call. API keys come from the environment by
//! reference ([`Secret`]) and never appear in errors, logs or reports.

mod anthropic;
mod error;
mod http;
#[cfg(feature = "local")]
pub mod local;
mod openai;
mod secret;
mod sse;
mod tokens;
pub mod tools;

use std::time::Duration;

pub use anthropic::{ANTHROPIC_VERSION, Anthropic};
pub use error::ProviderError;
pub use openai::OpenAi;
pub use secret::{Secret, parse_reference, register_secret, scrub};

/// The default endpoint of OpenAI's API.
pub const OPENAI_ENDPOINT: &str = "https://api.openai.com/v1";
/// The default endpoint of Anthropic's API.
pub const ANTHROPIC_ENDPOINT: &str = "https://api.anthropic.com";

/// How to reach one model.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The model's name in the topology (used in errors and metrics).
    pub name: String,
    /// The provider's name for the model (`gpt-4o-mini`, `claude-sonnet-4-20250514`).
    pub model: String,
    /// Base URL (`https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` for Ollama).
    pub endpoint: String,
    /// The API key, when the endpoint needs one.
    pub api_key: Option<Secret>,
    /// Stream the reply (server-sent events) instead of waiting for the whole body.
    pub stream: bool,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// OpenAI-compatible servers: the `tool_choice` sent with tools.
    pub tool_choice: baton_core::ToolChoice,
    /// OpenAI-compatible servers: how an assistant turn with tool calls and no text is sent.
    pub null_content: baton_core::NullContent,
    /// Anthropic: mark the stable prefix (tools, system prompt, the transcript so far) with
    /// `cache_control` breakpoints, so that the next call reads it from the prompt cache.
    pub prompt_cache: bool,
}

impl ProviderConfig {
    /// A configuration with the defaults: no key, no streaming, a 10 s connect timeout,
    /// `tool_choice: auto`, `null_content: empty`.
    pub fn new(
        name: impl Into<String>,
        model: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            model: model.into(),
            endpoint: endpoint.into(),
            api_key: None,
            stream: false,
            connect_timeout: Duration::from_secs(10),
            tool_choice: baton_core::ToolChoice::default(),
            null_content: baton_core::NullContent::default(),
            prompt_cache: false,
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;
