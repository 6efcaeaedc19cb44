//! Every default Baton applies where a topology (or an embedder's config) is silent, in one
//! place: the topology validator, the MCP connector and the runtime read them from here, and
//! `docs/topology.md` documents them.

use std::time::Duration;

// ---- agents

/// Loop iterations of a task when an agent's budget does not set `max_steps`: a runaway agent
/// always stops.
pub const MAX_STEPS: u32 = 16;
/// Tasks one declared agent runs at once (`max_concurrency`): enough for a server's worth of
/// tasks in flight; each waiting task costs a few KiB, not a thread.
pub const MAX_CONCURRENCY: u32 = 1024;
/// Tasks that may wait for an agent beyond its `max_concurrency` (`queue`); past that, a task is
/// refused at once with outcome `busy`.
pub const QUEUE: u32 = 8192;
/// One reply's tool calls that run at once (`max_parallel_tools`).
pub const MAX_PARALLEL_TOOLS: u32 = 16;
/// An agent's quality bar (`quality_bar`): any model on its ladder will do.
pub const QUALITY_BAR: u8 = 0;
/// Turns `context:` keeps verbatim at the end when it compacts a transcript (`keep_last`).
pub const KEEP_LAST: u32 = 4;

// ---- supervision

/// Restart intensity: at most 3 restarts ...
pub const MAX_RESTARTS: u32 = 3;
/// ... within 5 seconds.
pub const RESTART_WINDOW: Duration = Duration::from_secs(5);
/// The time a stopping child gets before it is killed (`shutdown`).
pub const SHUTDOWN: Duration = Duration::from_secs(5);

// ---- models

/// Completion-token ceiling per call when a model does not set `max_output_tokens`.
pub const MAX_OUTPUT_TOKENS: u32 = 1024;
/// The time a model call may take before it is abandoned (and the agent escalates).
pub const MODEL_TIMEOUT: Duration = Duration::from_secs(120);
/// The time an HTTP model's connection may take to open (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A model's quality score (`quality`, 0-100).
pub const MODEL_QUALITY: u8 = 100;
/// Attempts of an HTTP model's call, the first included (`retry.max_attempts`); other providers
/// make one.
pub const HTTP_MAX_ATTEMPTS: u32 = 3;
/// The first retry's delay (`retry.base_delay`), doubled each attempt ...
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
/// ... up to this (`retry.max_delay`).
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// The longest `Retry-After` a provider may ask for before the call fails instead
/// (`retry.max_retry_after`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A local (GGUF) model's context in tokens when `context` is not set.
pub const LOCAL_CONTEXT: u32 = 4096;

// ---- tools

/// What a tool's output may take of the context, in tokens (`max_output_tokens`).
pub const TOOL_OUTPUT_TOKENS: u32 = 4000;
/// The time a tool call may take (`timeout`).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// The time a human has to answer an approval request before the call is denied
/// (`policy.approval_timeout`).
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

// ---- MCP servers

/// The time one MCP tool call may take (`timeout`).
pub const MCP_TIMEOUT: Duration = Duration::from_secs(60);
/// The time an MCP server has to start and answer `initialize` (`startup_timeout`).
pub const MCP_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Restarts of a dead stdio MCP server allowed ...
pub const MCP_MAX_RESTARTS: u32 = 3;
/// ... within this window (`restart_window`).
pub const MCP_RESTART_WINDOW: Duration = Duration::from_secs(60);

// ---- standing loops

/// Runs a loop's breaker sees before it may trip (`breaker.min_runs`).
pub const BREAKER_MIN_RUNS: u32 = 5;

// ---- energy

/// The thermal design power CodeCarbon assumes for a CPU it does not know, W (a core's share of
/// half of it is the estimate).
pub const TDP_W: f64 = 85.0;
