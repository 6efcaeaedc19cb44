//! The command line: `baton`'s commands, their flags and their parsers (clap).

use std::path::PathBuf;

use baton::core::NanoUsd;
use clap::{Parser, Subcommand};

use crate::inspect::{self, GraphFormat, ValidateFormat};

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Run hierarchies of LLM agents as supervised actors, on a budget."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a topology: on one task (`--task`), or its standing loops (`schedules:`).
    Run(Box<RunOptions>),
    /// Run a topology as a service: tasks submitted over HTTP (`POST /v1/tasks`) and its
    /// standing loops, concurrently on one runtime, with live event streams, the approval queue,
    /// `/metrics` and a web console at `/`. SIGTERM or Ctrl-C drains it.
    Serve(ServeOptions),
    /// Check topology files (YAML or TOML); exit 0 when all are valid, 1 on errors.
    Validate {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `human` (rustc-style, the default) or `json` (one object per file).
        #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
        format: ValidateFormat,
    },
    /// Print the JSON Schema of topology files (for editors: completion and checking), or with
    /// --openapi the OpenAPI 3.1 description of `baton serve`'s HTTP API.
    Schema {
        /// The API's OpenAPI document instead.
        #[arg(long, conflicts_with = "rules")]
        openapi: bool,
        /// The JSON Schema of scripted rules files instead (docs/scripted.md).
        #[arg(long)]
        rules: bool,
    },
    /// Show a standing loops' state file (`baton run --state FILE`): per loop its period's
    /// spend, breaker and every run's recorded outcome, as JSON.
    State {
        /// The state file.
        file: PathBuf,
    },
    /// Answer the approval requests of a running `baton run --approvals-addr ADDR`.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Audit trails.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The shared ledger (PostgreSQL) through which replicas spend one budget.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Scripted rules files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// List the built-in tools a topology's `kind:` can name, with their arguments (from their
    /// JSON schemas), effect and dry-run support.
    Tools {
        /// `human` (the default) or `json` (each tool's description, effect and JSON schema).
        #[arg(long, value_enum, default_value_t = inspect::ToolsFormat::Human)]
        format: inspect::ToolsFormat,
    },
    /// Draw a topology's graph: supervision, delegation and fallback edges.
    Graph {
        /// The topology file.
        file: PathBuf,
        /// `dot` (Graphviz, the default) or `mermaid`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Also draw each agent's role and tools (kind, effect; destructive ones in red) and the
        /// standing loops that tick the root.
        #[arg(long)]
        detail: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List the requests (pending, answered, timed out).
    List {
        /// The endpoint (`baton run --approvals-addr`).
        #[arg(long, env = "BATON_APPROVALS_ADDR")]
        addr: std::net::SocketAddr,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Approve request ID.
    Approve {
        /// The request's id.
        id: u64,
        /// The endpoint (`baton run --approvals-addr`).
        #[arg(long, env = "BATON_APPROVALS_ADDR")]
        addr: std::net::SocketAddr,
        /// Who approves (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Deny request ID.
    Deny {
        /// The request's id.
        id: u64,
        /// The endpoint (`baton run --approvals-addr`).
        #[arg(long, env = "BATON_APPROVALS_ADDR")]
        addr: std::net::SocketAddr,
        /// Who denies (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Why (the model is told).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RulesCommand {
    /// Which rule of an agent's scripted model fires for a step, why the rules before it do
    /// not, and the reply it gives (nothing runs). Exit 0 when a rule fires, 1 when none does.
    Test {
        /// The topology file.
        file: PathBuf,
        /// The calling agent.
        #[arg(long)]
        agent: String,
        /// The step of its task (from 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        step: u32,
        /// The task (the first user message).
        #[arg(long, default_value = "")]
        task: String,
        /// The last message (a tool's result, say); without it the task is the last message.
        #[arg(long)]
        last: Option<String>,
        /// The scripted model (default: the first scripted model on the agent's ladder).
        #[arg(long)]
        model: Option<String>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum LedgerCommand {
    /// Each shared budget: its limit, what settled leases spent, what live leases hold, and how
    /// many leases are live (and expired: their replica stopped renewing them; any replica
    /// books them, conservatively).
    Status {
        /// The database (`postgres://user@host:port/db`).
        #[arg(long, env = "DATABASE_URL", value_name = "URL")]
        ledger: String,
        /// One JSON object per budget.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check a trail's hash chain; exit 0 when intact, 1 naming the first broken record. Uses
    /// BATON_AUDIT_KEY when the trail was written with one.
    Verify {
        /// The trail.
        file: PathBuf,
        /// A head kept elsewhere (`SEQ:HASH`, as this command prints it): the trail must still
        /// reach it. (`FILE.head`, the signed head a keyed trail keeps beside it, is checked
        /// whenever it exists.)
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<baton::core::audit::Head>,
    },
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    baton::core::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_usd(s: &str) -> Result<NanoUsd, String> {
    NanoUsd::parse_usd(s).map_err(|e| e.to_string())
}

/// `baton run`'s flags.
#[derive(clap::Args)]
pub(crate) struct RunOptions {
    /// The topology file (YAML or TOML).
    pub(crate) file: PathBuf,
    /// The task for the root agent.
    #[arg(long, conflicts_with = "tasks")]
    pub(crate) task: Option<String>,
    /// A batch of tasks, one a line (plain text, or {"task": ..., "budget_usd": ...}), run at
    /// once on one runtime; --budget-usd is then the whole batch's budget.
    #[arg(long, value_name = "FILE.jsonl")]
    pub(crate) tasks: Option<PathBuf>,
    /// With --tasks: how many tasks run at once (default 64).
    #[arg(long, value_name = "N", requires = "tasks", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: Option<u32>,
    /// Print one JSON report instead of the step-by-step log.
    #[arg(long)]
    pub(crate) json: bool,
    /// With --task: under each step, why its model answered so (a scripted model: the rule that
    /// fired, with its conditions). The audit's model_call records carry it as `explain`.
    #[arg(long, conflicts_with = "json")]
    pub(crate) explain: bool,
    /// With standing loops: print each run's step log and agent table, as --task runs do.
    #[arg(long, conflicts_with = "json")]
    pub(crate) verbose: bool,
    /// Override the root agent's money budget, in dollars (e.g. 0.05).
    #[arg(long, value_name = "USD", allow_negative_numbers = true, value_parser = parse_usd)]
    pub(crate) budget_usd: Option<NanoUsd>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// With schedules and no --task: run the standing loops this long (default: until Ctrl-C).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) run_for: Option<std::time::Duration>,
    /// With schedules: keep the loops' state (period spend, breaker, every run's outcome) in
    /// this file, so that a restart continues where the last process stopped or died.
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// Append the hash-chained audit trail of the run to this file (continuing its chain).
    #[arg(long, value_name = "FILE")]
    pub(crate) audit: Option<PathBuf>,
    /// On stop (--for, Ctrl-C, SIGTERM), how long runs in flight may go on before they are
    /// cancelled (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) grace: Option<std::time::Duration>,
    /// Queue destructive calls that need approval and serve the queue at http://ADDR/approvals
    /// (answer with `baton approvals approve|deny ID --addr ADDR`); with --state, requests
    /// survive a crash. Set BATON_APPROVALS_TOKEN to require a bearer token.
    #[arg(long, value_name = "ADDR")]
    pub(crate) approvals_addr: Option<std::net::SocketAddr>,
    /// Keep serving /metrics this long after the work ends (e.g. 30s), so a scraper sees the
    /// final values; if no scrape has come since the work ended when it is up, keep serving
    /// until one does (at most 5 minutes more).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "metrics_addr")]
    pub(crate) linger: Option<std::time::Duration>,
    /// Before any work starts, wait (at most this long) for the first scrape of /metrics: every
    /// series is then in Prometheus at zero, so the run's first events are visible rises to
    /// rate() and increase() even for a run shorter than the scrape interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "metrics_addr")]
    pub(crate) wait_for_scrape: Option<std::time::Duration>,
    /// When the run ends — completed, failed, or interrupted by SIGTERM / Ctrl-C — push its final
    /// metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091), grouped by job
    /// `baton`, the topology and --push-instance. For one-off runs that end before any scrape.
    #[arg(long, value_name = "URL", env = "BATON_PUSHGATEWAY")]
    pub(crate) push_metrics: Option<String>,
    /// The `instance` label of pushed metrics (default: the host's name). Each instance's push
    /// replaces that instance's previous one.
    #[arg(long, value_name = "NAME", env = "BATON_PUSH_INSTANCE")]
    pub(crate) push_instance: Option<String>,
    /// A PostgreSQL database (`postgres://user@host:port/db`) through which the topology's
    /// `budget:` (`max_usd`, `max_usd_per_day`, `max_usd_per_hour`) is shared with every other
    /// process run with it — together they never spend more — and each tick of its standing
    /// loops runs on one of them (see docs/scale-out.md). Overrides the topology's `ledger:`.
    #[arg(long, value_name = "URL")]
    pub(crate) ledger: Option<String>,
    /// How long a replica's leases on the shared ledger (budget slices, running tasks) live
    /// unless renewed: after a replica dies, the others take them over once this has passed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub(crate) ledger_lease: std::time::Duration,
}

#[derive(clap::Args)]
pub(crate) struct ServeOptions {
    /// The topology file (YAML or TOML).
    pub(crate) file: PathBuf,
    /// Where to listen. A non-loopback address needs BATON_TOKEN (every request then carries
    /// `Authorization: Bearer <token>`; with a loopback address the token is optional).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) addr: std::net::SocketAddr,
    /// Keep the served tasks and their reports, the topology budget's spend, the approval queue
    /// and the loops' state in this file: a restarted server still answers for finished tasks,
    /// and tasks it was running end `interrupted`, charged their worst case.
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// Append every model call, tool call, policy decision and outcome to this hash-chained
    /// audit trail.
    #[arg(long, value_name = "FILE")]
    pub(crate) audit: Option<PathBuf>,
    /// On SIGTERM or Ctrl-C: how long running tasks may take to end before they are cancelled
    /// (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) grace: Option<std::time::Duration>,
    /// A PostgreSQL database (`postgres://user@host:port/db`) shared by replicas of this
    /// server: one task queue (a task submitted to any replica runs on one, and every replica
    /// answers for it and streams its events), the topology's `budget:` shared by all, and each
    /// tick of the standing loops run on one replica (see docs/scale-out.md). Overrides the
    /// topology's `ledger:`. Not with `--state`.
    #[arg(long, value_name = "URL")]
    pub(crate) ledger: Option<String>,
    /// How long a replica's leases on the shared ledger (budget slices, running tasks) live
    /// unless renewed: after a replica dies, the others take them over once this has passed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub(crate) ledger_lease: std::time::Duration,
    /// With a shared ledger: what becomes of a task whose replica dies, unless its submission
    /// says (`on_interrupted`). `end`: another replica ends it `interrupted`; `resume`: another
    /// replica runs it again from the start — its tool calls too — within what its budget has
    /// left, at most three runs in all.
    #[arg(long, value_name = "WHAT", value_enum, default_value = "end")]
    pub(crate) on_interrupted: crate::service::OnInterrupted,
}
