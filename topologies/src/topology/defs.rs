//! The resolved definitions a validated topology holds: agents, models, tools, schedules and
//! their settings with defaults applied and names resolved.

use super::*;

/// Supervision settings with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervision {
    /// The restart strategy.
    pub strategy: Strategy,
    /// At most this many restarts ...
    pub max_restarts: u32,
    /// ... within this window, else the supervisor gives up and escalates.
    pub within: Duration,
    /// How long a stopping child may take before it is killed.
    pub shutdown: Duration,
}

impl Supervision {
    pub(super) fn from_spec(s: Option<&SupervisionSpec>) -> Supervision {
        let d = SupervisionSpec::default();
        let s = s.unwrap_or(&d);
        Supervision {
            strategy: s.strategy.unwrap_or_default(),
            max_restarts: s.max_restarts.unwrap_or(baton_core::defaults::MAX_RESTARTS),
            within: s.within.unwrap_or(baton_core::defaults::RESTART_WINDOW),
            shutdown: s.shutdown.unwrap_or(baton_core::defaults::SHUTDOWN),
        }
    }
}

/// An agent as the runtime sees it: its spec with defaults applied and names resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentNode {
    /// The agent's name.
    pub name: Arc<str>,
    /// Model names, cheapest first (all declared).
    pub ladder: Vec<Arc<str>>,
    /// Tool names (all declared).
    pub tools: Vec<Arc<str>>,
    /// The per-task budget, with `max_steps` defaulted.
    pub budget: Budget,
    /// The system prompt.
    pub system: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// How it supervises its children.
    pub supervision: Supervision,
    /// When its supervisor restarts it.
    pub restart: RestartType,
    /// What happens to its task when it crashes.
    pub on_crash: OnCrash,
    /// What its supervisor does when its task exceeds the budget.
    pub on_budget_exceeded: BudgetAction,
    /// The sibling that takes over on `reroute`.
    pub fallback: Option<Arc<str>>,
    /// When its actor starts.
    pub activation: Activation,
    /// The lowest model quality the router may use for it (0 = any).
    pub quality_bar: u8,
    /// The least confidence (percent) it accepts from a local-tier model.
    pub min_confidence: Option<u8>,
    /// What a local-tier reply without probabilities becomes under `min_confidence`.
    pub on_missing_confidence: crate::spec::MissingConfidence,
    /// Where its data may be sent.
    pub privacy: crate::spec::Privacy,
    /// What a tool call cut at `max_output_tokens` becomes.
    pub on_truncated: crate::spec::Truncated,
    /// Its role under the policy, if any.
    pub role: Option<Arc<str>>,
    /// How many tasks it runs at once.
    pub max_concurrency: u32,
    /// How many tasks may wait beyond `max_concurrency` before one is refused `busy`.
    pub queue: u32,
    /// The most tool calls of one reply that run at once (1 when `parallel_tool_calls: false`).
    pub max_parallel_tools: u32,
    /// What its completed tasks are worth.
    pub value: Option<ValueDef>,
    /// Transcript compaction.
    pub context: Option<ContextDef>,
}

/// A model as the runtime sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDef {
    /// The model's name in the topology.
    pub name: Arc<str>,
    /// Who answers.
    pub provider: Provider,
    /// For `scripted`: the rules file, resolved against the topology's folder.
    pub rules: Option<PathBuf>,
    /// For `scripted`: a latency overriding the rules file's.
    pub latency: Option<Duration>,
    /// Price per million tokens.
    pub price: Price,
    /// Completion-token ceiling per call.
    pub max_output_tokens: u32,
    /// The most tokens one call can hold, if known.
    pub context_window: Option<u32>,
    /// Where it runs, if declared.
    pub tier: Option<Tier>,
    /// How good the model is, 0 to 100.
    pub quality: u8,
    /// How long a call may take.
    pub timeout: Duration,
    /// For `scripted`: random faults to inject.
    pub faults: Option<FaultSpec>,
    /// The provider's name for the model.
    pub wire_model: String,
    /// For HTTP providers: the base URL, if not the provider's default.
    pub endpoint: Option<String>,
    /// For HTTP providers: the API key reference (`${VAR}`), resolved when the runtime starts.
    pub api_key: Option<String>,
    /// For HTTP providers: stream replies.
    pub stream: bool,
    /// For HTTP providers: time to connect.
    pub connect_timeout: Duration,
    /// Retries of failed calls.
    pub retry: RetryPolicy,
    /// Where the price came from.
    pub price_source: PriceSource,
    /// For `openai`: the `tool_choice` sent with tools.
    pub tool_choice: baton_core::ToolChoice,
    /// For `openai`: how an assistant turn with tool calls and no text is sent.
    pub null_content: baton_core::NullContent,
    /// Whether the model's server returns token probabilities.
    pub logprobs: bool,
    /// For `local`: how the embedded model is loaded and sampled.
    pub local: Option<LocalDef>,
    /// Its size for the energy estimate of hosted calls, and where that comes from.
    pub size: Option<(baton_core::ModelSize, SizeSource)>,
    /// `anthropic`: mark the stable prefix for prompt caching.
    pub prompt_cache: bool,
}

/// An embedded model's settings, resolved (`provider: local`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalDef {
    /// The GGUF file, with `${VAR}` and `~` expanded and resolved against the topology's folder.
    pub path: PathBuf,
    /// Tokens one call can hold.
    pub context: u32,
    /// CPU threads per instance.
    pub threads: u32,
    /// Calls served at once.
    pub instances: u32,
    /// Sampling temperature (0: the likeliest token).
    pub temperature: f32,
    /// The sampler's seed.
    pub seed: u32,
}

/// A standing loop, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDef {
    /// Its name.
    pub name: Arc<str>,
    /// When its runs start.
    pub cadence: Cadence,
    /// The task of each run.
    pub task: String,
    /// Limits per run.
    pub budget: Budget,
    /// Money per 24-hour period.
    pub per_day: Option<NanoUsd>,
    /// Money per hour, inside the day's.
    pub per_hour: Option<NanoUsd>,
    /// What a tick does while a run is going.
    pub overlap: Overlap,
    /// Random delay bound per run.
    pub jitter: Duration,
    /// The spend circuit breaker, if any.
    pub breaker: Option<BreakerDef>,
    /// What becomes of a run the process died in.
    pub on_interrupted: OnInterrupted,
    /// What a completed run is worth.
    pub value: Option<ValueDef>,
}

/// A loop's spend circuit breaker, resolved (see [`crate::BreakerSpec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerDef {
    /// The sliding window over which spend is summed.
    pub window: Duration,
    /// Spend within the window that opens the breaker.
    pub max_cost: Option<NanoUsd>,
    /// A completed run costing more than this multiple of the recent median opens it.
    pub spike: Option<u32>,
    /// How long it stays open before a trial run.
    pub cool_down: Duration,
    /// The least value per dollar of the window's runs, in thousandths (`min_roi: 1.0` is
    /// 1000): integer, so that the check is exact.
    pub min_roi_permille: Option<u64>,
    /// Runs that must have ended within the window before `min_roi` judges.
    pub min_runs: u32,
}

/// Retries with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited out.
    pub max_retry_after: Duration,
}

/// Where a model's price came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// The topology's `price:`.
    Topology,
    /// The built-in table ([`baton_core::prices`]).
    BuiltIn,
}

/// A tool as the runtime sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    /// The tool's name.
    pub name: Arc<str>,
    /// Which implementation.
    pub kind: ToolKind,
    /// The file or folder it reads, resolved against the topology's folder.
    pub path: Option<PathBuf>,
    /// A description overriding the built-in one.
    pub description: Option<String>,
    /// For `chaos`: the fault rates.
    pub faults: Option<FaultSpec>,
    /// An effect overriding the tool's own.
    pub effect: Option<baton_core::Effect>,
    /// Output longer than this many tokens is cut.
    pub max_output_tokens: u32,
    /// For `shell`: the programs it may run; for `http_get`: the hosts.
    pub allow: Vec<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// What the topology says of its dry runs (`None`: what the tool says).
    pub dry_run: Option<crate::spec::DryRunSupport>,
    /// For `shell`: the most bytes read of each of a program's output streams.
    pub max_output_bytes: Option<u64>,
    /// Its output makes a task private (local models only from then on).
    pub sensitive: bool,
}
