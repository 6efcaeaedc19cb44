//! `models:` in a topology file: who answers, at what price, with which retries and wire
//! options, and where it runs.

use super::*;

/// Where a model runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// On your own hardware (llama.cpp, vLLM, Ollama): cheap or free per token.
    Local,
    /// A hosted top model: used when cheaper ones do not clear the bar.
    Frontier,
}

/// Which implementation answers a model's calls.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The offline, rule-driven model (needs `rules`).
    Scripted,
    /// A model implemented in code and registered with the runtime under the model's name.
    Custom,
    /// An OpenAI-compatible chat completions endpoint: OpenAI, vLLM, llama.cpp's server, Ollama,
    /// LiteLLM, most gateways.
    Openai,
    /// The Anthropic messages API.
    Anthropic,
    /// A GGUF model run in-process by llama.cpp (needs `path`; Baton built with the `local`
    /// feature). Free per token; its CPU time is reported per call.
    Local,
}

impl Provider {
    /// Whether the provider is reached over HTTP.
    pub fn is_http(self) -> bool {
        matches!(self, Provider::Openai | Provider::Anthropic)
    }
}

/// Retries of a failed model call (rate limits, overload, server and transport errors), with
/// jittered exponential backoff that honours `Retry-After`; never past the task's deadline, and
/// never one the budget cannot pay for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included (default 3 for HTTP providers, 1 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The first backoff (default `500ms`), doubled at each attempt.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub base_delay: Option<Duration>,
    /// The longest backoff (default `30s`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub max_delay: Option<Duration>,
    /// The longest `Retry-After` the provider may ask for and still be waited out (default
    /// `60s`); a longer one ends the attempt (escalate or fail) instead of sleeping.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub max_retry_after: Option<Duration>,
}

/// A model declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Who answers.
    pub provider: Provider,
    /// For HTTP providers: the provider's name for the model (default: this model's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// For HTTP providers: the base URL (default: the provider's public API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// For HTTP providers: the API key, by reference only (`${OPENAI_API_KEY}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// For HTTP providers: stream replies over server-sent events (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// For HTTP providers: time to establish a connection (default `10s`).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub connect_timeout: Option<Duration>,
    /// Retries of failed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// For `scripted`: the rules file, relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// For `scripted`: overrides the rules file's default latency.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub latency: Option<Duration>,
    /// Dollars per million tokens; may be left out for models the built-in price table knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceSpec>,
    /// Completion-token ceiling per call (also what a call reserves for its output).
    #[serde(
        default = "default_max_output",
        skip_serializing_if = "is_default_max_output"
    )]
    pub max_output_tokens: u32,
    /// The most tokens (prompt and completion) one call can hold; the router passes over the
    /// model for a step that would not fit (default: no limit checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Where the model runs: `local` (your hardware) or `frontier` (a hosted top model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// How good the model is, 0 to 100 (default 100): the router skips models below an agent's
    /// `quality_bar`.
    #[serde(
        default,
        deserialize_with = "quality_pct",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 100))]
    pub quality: Option<u8>,
    /// How long a call may take before it is abandoned (default 120s).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub timeout: Option<Duration>,
    /// For `scripted`: random faults to inject (replacing the rules file's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSpec>,
    /// For `openai`: the `tool_choice` sent when tools are offered: `auto` (default),
    /// `required`, `none` or `omit` (leave the field out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<baton_core::ToolChoice>,
    /// For `openai`: how an assistant turn with tool calls and no text is sent: `empty`
    /// (`"content": ""`, default), `null` or `omit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_content: Option<baton_core::NullContent>,
    /// Whether the model's server returns token probabilities (default: true for `openai` and
    /// `scripted`, false for `anthropic`). An agent's `min_confidence` needs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// For `local`: the GGUF file (`${VAR}` and a leading `~` are expanded; relative to the
    /// topology file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For `local`: tokens one call can hold, prompt and completion (default 4096). Also the
    /// model's `context_window` unless that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
    /// For `local`: CPU threads per instance (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// For `local`: how many calls run at once, each in its own context (default 1); calls
    /// beyond that queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// For `local`: sampling temperature from 0 to 2 (default 0: always the likeliest token,
    /// so the same prompt gets the same reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// For `local`: the sampler's seed when `temperature` is above 0 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// For hosted models: active parameters per token, in billions — what the energy estimate
    /// (EcoLogits' method) needs. Without it, and without a built-in estimate for the model,
    /// its calls have no energy figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_b: Option<f64>,
    /// For hosted mixture-of-experts models: total parameters, in billions (default
    /// `params_b`): how many GPUs hold the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_total_b: Option<f64>,
    /// For `anthropic`: mark the stable prefix (system prompt, tools, the transcript so far)
    /// for prompt caching (`cache_control` breakpoints). Reads are billed at `cached_input`,
    /// writes at `cache_write` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache: Option<bool>,
}

fn default_max_output() -> u32 {
    baton_core::defaults::MAX_OUTPUT_TOKENS
}

fn is_default_max_output(v: &u32) -> bool {
    *v == baton_core::defaults::MAX_OUTPUT_TOKENS
}

impl ModelSpec {
    /// A declaration of `provider` with every optional key left out.
    fn bare(provider: Provider) -> ModelSpec {
        ModelSpec {
            provider,
            model: None,
            endpoint: None,
            api_key: None,
            stream: None,
            connect_timeout: None,
            retry: None,
            rules: None,
            latency: None,
            price: None,
            max_output_tokens: baton_core::defaults::MAX_OUTPUT_TOKENS,
            context_window: None,
            tier: None,
            quality: None,
            timeout: None,
            faults: None,
            tool_choice: None,
            null_content: None,
            logprobs: None,
            path: None,
            context: None,
            threads: None,
            instances: None,
            temperature: None,
            seed: None,
            params_b: None,
            params_total_b: None,
            prompt_cache: None,
        }
    }

    /// A scripted model reading `rules`, priced in dollars per million input and output tokens.
    pub fn scripted(rules: impl Into<PathBuf>, input: NanoUsd, output: NanoUsd) -> ModelSpec {
        ModelSpec {
            rules: Some(rules.into()),
            price: Some(PriceSpec::per_mtok(input, output)),
            ..ModelSpec::bare(Provider::Scripted)
        }
    }

    /// A model behind an HTTP provider (`openai` or `anthropic`) with the provider's name for it;
    /// the price comes from the built-in table unless set with [`ModelSpec::price`].
    pub fn http(provider: Provider, model: impl Into<String>) -> ModelSpec {
        ModelSpec {
            model: Some(model.into()),
            ..ModelSpec::bare(provider)
        }
    }

    /// An embedded GGUF model run by llama.cpp (`provider: local`; Baton built with the `local`
    /// feature), free per token, on the local tier.
    pub fn local(path: impl Into<String>) -> ModelSpec {
        ModelSpec {
            path: Some(path.into()),
            ..ModelSpec::bare(Provider::Local)
        }
    }

    /// Sets the price per million input and output tokens.
    pub fn price(mut self, input: NanoUsd, output: NanoUsd) -> ModelSpec {
        self.price = Some(PriceSpec::per_mtok(input, output));
        self
    }

    /// A model implemented in code, registered with the runtime under this model's name, at
    /// `price` (`Price::per_million_tokens(input, output)`).
    pub fn custom(price: baton_core::Price) -> ModelSpec {
        ModelSpec {
            price: Some(PriceSpec::from(price)),
            ..ModelSpec::bare(Provider::Custom)
        }
    }

    /// Sets the completion-token ceiling.
    pub fn max_output_tokens(mut self, n: u32) -> ModelSpec {
        self.max_output_tokens = n;
        self
    }

    /// Sets its size for the energy estimate: active parameters and, for a mixture of experts,
    /// total parameters, in billions (`params_b`, `params_total_b`).
    pub fn params(mut self, active_b: f64, total_b: Option<f64>) -> ModelSpec {
        self.params_b = Some(active_b);
        self.params_total_b = total_b;
        self
    }

    /// Sets where it runs and its quality score (0 to 100).
    pub fn tier(mut self, tier: Tier, quality: u8) -> ModelSpec {
        self.tier = Some(tier);
        self.quality = Some(quality);
        self
    }
}

/// Prices in dollars per million tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Uncached input tokens.
    pub input: Usd,
    /// Output tokens.
    pub output: Usd,
    /// Cached input tokens (defaults to the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Usd>,
    /// Input tokens written to the prompt cache (defaults to the input price; Anthropic bills
    /// 1.25× the input's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Usd>,
}

impl PriceSpec {
    /// Input and output prices per million tokens.
    pub fn per_mtok(input: NanoUsd, output: NanoUsd) -> PriceSpec {
        PriceSpec {
            input: Usd(input),
            output: Usd(output),
            cached_input: None,
            cache_write: None,
        }
    }
}

impl From<baton_core::Price> for PriceSpec {
    fn from(p: baton_core::Price) -> PriceSpec {
        PriceSpec {
            input: Usd(p.input_per_mtok),
            output: Usd(p.output_per_mtok),
            cached_input: (p.cached_input_per_mtok != p.input_per_mtok)
                .then_some(Usd(p.cached_input_per_mtok)),
            cache_write: (p.cache_write_per_mtok != p.input_per_mtok)
                .then_some(Usd(p.cache_write_per_mtok)),
        }
    }
}
