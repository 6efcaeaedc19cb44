//! The `baton` command line.

/// See the `mimalloc` feature in Cargo.toml for why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `std::println!`, except that a closed stdout (`baton ... | head`) ends the process quietly with
/// the shell's code for SIGPIPE (141) instead of panicking.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
        }
    }};
}

mod approvals;
mod batch;
mod inspect;
mod ledger;
mod loops;
#[cfg(feature = "otel")]
mod otel;
mod print;
mod push;
mod rules;
mod serve;
mod service;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use baton::actors::{RunReport, Runtime};
use baton::core::NanoUsd;
use baton::topologies::Topology;
use clap::{Parser, Subcommand};
use inspect::{GraphFormat, ValidateFormat};
use loops::{interrupted, run_loops};
use print::{Printer, print_summary, usd};

/// Exit code for bad input: an invalid topology file or flag.
const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Run hierarchies of LLM agents as supervised actors, on a budget."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum ApprovalsCommand {
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
enum RulesCommand {
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
enum LedgerCommand {
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
enum AuditCommand {
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

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    baton::core::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_usd(s: &str) -> Result<NanoUsd, String> {
    NanoUsd::parse_usd(s).map_err(|e| e.to_string())
}

/// Logs to stderr (`RUST_LOG`, default `warn`); with `--features otel` and an OTLP endpoint in
/// the environment, spans are also exported (the returned handle flushes them at exit).
fn init_tracing() -> Option<Box<dyn FnOnce()>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    if let Some((otel, layer)) = otel::Otel::from_env() {
        registry.with(layer).init();
        return Some(Box::new(move || otel.shutdown()));
    }
    registry.init();
    None
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A panic inside a model or tool crashes its agent, which its supervisor handles and the
    // report shows; log one line for it, not a backtrace.
    {
        std::panic::set_hook(Box::new(|info| {
            let what = baton::core::panic_text(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::warn!("panic{at}: {what}");
        }));
    }
    let otel = init_tracing();
    match cli.command {
        Command::Run(options) => on_tokio(run(*options), otel),
        Command::Serve(options) => on_tokio(serve_command(options), otel),
        Command::Validate { files, format } => inspect::validate(&files, format),
        Command::State { file } => inspect::show_state(&file),
        Command::Approvals { command } => match command {
            ApprovalsCommand::List { addr, json } => approvals::list(addr, json),
            ApprovalsCommand::Approve { id, addr, by } => {
                approvals::answer(addr, id, true, by, None)
            }
            ApprovalsCommand::Deny {
                id,
                addr,
                by,
                reason,
            } => approvals::answer(addr, id, false, by, reason),
        },
        Command::Audit {
            command: AuditCommand::Verify { file, expect_head },
        } => inspect::verify_audit(&file, expect_head),
        Command::Tools { format } => inspect::tools(format),
        Command::Ledger {
            command: LedgerCommand::Status { ledger, json },
        } => on_tokio(ledger::status(ledger, json), None),
        Command::Rules {
            command:
                RulesCommand::Test {
                    file,
                    agent,
                    step,
                    task,
                    last,
                    model,
                    json,
                },
        } => rules::test(
            &file,
            &rules::Probe {
                agent,
                step,
                task,
                last,
                model,
                json,
            },
        ),
        Command::Schema { rules: true, .. } => {
            print!("{}", baton::core::rules_json_schema());
            ExitCode::SUCCESS
        }
        Command::Schema { openapi: false, .. } => {
            print!("{}", baton::topologies::json_schema());
            ExitCode::SUCCESS
        }
        Command::Schema { openapi: true, .. } => {
            let doc = service::openapi::document();
            match serde_json::to_string_pretty(&doc) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Graph {
            file,
            format,
            detail,
        } => inspect::graph(&file, format, detail),
    }
}

/// `baton run`'s flags.
#[derive(clap::Args)]
struct RunOptions {
    /// The topology file (YAML or TOML).
    file: PathBuf,
    /// The task for the root agent.
    #[arg(long, conflicts_with = "tasks")]
    task: Option<String>,
    /// A batch of tasks, one a line (plain text, or {"task": ..., "budget_usd": ...}), run at
    /// once on one runtime; --budget-usd is then the whole batch's budget.
    #[arg(long, value_name = "FILE.jsonl")]
    tasks: Option<PathBuf>,
    /// With --tasks: how many tasks run at once (default 64).
    #[arg(long, value_name = "N", requires = "tasks", value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Option<u32>,
    /// Print one JSON report instead of the step-by-step log.
    #[arg(long)]
    json: bool,
    /// With --task: under each step, why its model answered so (a scripted model: the rule that
    /// fired, with its conditions). The audit's model_call records carry it as `explain`.
    #[arg(long, conflicts_with = "json")]
    explain: bool,
    /// With standing loops: print each run's step log and agent table, as --task runs do.
    #[arg(long, conflicts_with = "json")]
    verbose: bool,
    /// Override the root agent's money budget, in dollars (e.g. 0.05).
    #[arg(long, value_name = "USD", allow_negative_numbers = true, value_parser = parse_usd)]
    budget_usd: Option<NanoUsd>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// With schedules and no --task: run the standing loops this long (default: until Ctrl-C).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    run_for: Option<std::time::Duration>,
    /// With schedules: keep the loops' state (period spend, breaker, every run's outcome) in
    /// this file, so that a restart continues where the last process stopped or died.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Append the hash-chained audit trail of the run to this file (continuing its chain).
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// On stop (--for, Ctrl-C, SIGTERM), how long runs in flight may go on before they are
    /// cancelled (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<std::time::Duration>,
    /// Queue destructive calls that need approval and serve the queue at http://ADDR/approvals
    /// (answer with `baton approvals approve|deny ID --addr ADDR`); with --state, requests
    /// survive a crash. Set BATON_APPROVALS_TOKEN to require a bearer token.
    #[arg(long, value_name = "ADDR")]
    approvals_addr: Option<std::net::SocketAddr>,
    /// Keep serving /metrics this long after the work ends (e.g. 30s), so a scraper sees the
    /// final values; if no scrape has come since the work ended when it is up, keep serving
    /// until one does (at most 5 minutes more).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "metrics_addr")]
    linger: Option<std::time::Duration>,
    /// Before any work starts, wait (at most this long) for the first scrape of /metrics: every
    /// series is then in Prometheus at zero, so the run's first events are visible rises to
    /// rate() and increase() even for a run shorter than the scrape interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "metrics_addr")]
    wait_for_scrape: Option<std::time::Duration>,
    /// When the run ends — completed, failed, or interrupted by SIGTERM / Ctrl-C — push its final
    /// metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091), grouped by job
    /// `baton`, the topology and --push-instance. For one-off runs that end before any scrape.
    #[arg(long, value_name = "URL", env = "BATON_PUSHGATEWAY")]
    push_metrics: Option<String>,
    /// The `instance` label of pushed metrics (default: the host's name). Each instance's push
    /// replaces that instance's previous one.
    #[arg(long, value_name = "NAME", env = "BATON_PUSH_INSTANCE")]
    push_instance: Option<String>,
}

#[derive(clap::Args)]
struct ServeOptions {
    /// The topology file (YAML or TOML).
    file: PathBuf,
    /// Where to listen. A non-loopback address needs BATON_TOKEN (every request then carries
    /// `Authorization: Bearer <token>`; with a loopback address the token is optional).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Keep the served tasks and their reports, the topology budget's spend, the approval queue
    /// and the loops' state in this file: a restarted server still answers for finished tasks,
    /// and tasks it was running end `interrupted`, charged their worst case.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Append every model call, tool call, policy decision and outcome to this hash-chained
    /// audit trail.
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// On SIGTERM or Ctrl-C: how long running tasks may take to end before they are cancelled
    /// (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<std::time::Duration>,
}

/// Runs a command on a multi-thread tokio runtime, then flushes the exported spans (if any).
fn on_tokio(
    command: impl std::future::Future<Output = ExitCode>,
    flush: Option<Box<dyn FnOnce()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(command);
    if let Some(flush) = flush {
        flush();
    }
    code
}

async fn serve_command(o: ServeOptions) -> ExitCode {
    let topology = match Topology::from_path(&o.file) {
        Ok(t) => t,
        Err(e) => {
            eprint!("{}", e.render());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if !topology.warnings().is_empty() {
        eprint!("{}", topology.render_warnings());
    }
    let audit = match o
        .audit
        .map(|p| baton::core::audit::AuditLog::open_with_key(&p, audit_key()))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: audit trail: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let options = service::Options {
        addr: o.addr,
        state: o.state,
        audit,
        grace: o.grace.unwrap_or(std::time::Duration::from_secs(30)),
    };
    match service::serve(topology, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Says a bad input on stderr; the exit code for it.
fn invalid(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_INVALID)
}

/// What `baton run` sets up before its first task, each part refused with exit 2 when a flag
/// or a file is wrong: the topology (with `--budget-usd`), the batch, the metrics recorder
/// (and its endpoint), the audit trail, the state file and the approvals endpoint.
struct RunSetup {
    topology: Topology,
    batch: Option<Vec<batch::BatchTask>>,
    recorder: Option<metrics_exporter_prometheus::PrometheusHandle>,
    audit: Option<baton::core::audit::AuditLog>,
    store: Option<std::sync::Arc<baton::actors::LoopStore>>,
    approvals: Option<std::sync::Arc<baton::actors::ApprovalQueue>>,
}

async fn set_up(o: &RunOptions) -> Result<RunSetup, ExitCode> {
    if let Some(url) = &o.push_metrics
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(format_args!(
            "--push-metrics takes the Pushgateway's http:// or https:// URL, not {url:?}"
        )));
    }
    let mut topology = Topology::from_path(&o.file).map_err(|e| {
        eprint!("{}", e.render());
        ExitCode::from(EXIT_INVALID)
    })?;
    if !topology.warnings().is_empty() {
        eprint!("{}", topology.render_warnings());
    }
    let batch = o
        .tasks
        .as_deref()
        .map(batch::read_tasks)
        .transpose()
        .map_err(|e| invalid(format_args!("{e:#}")))?;
    if o.task.is_none() && batch.is_none() && topology.schedules().is_empty() {
        return Err(invalid(
            "--task is required: give the root agent something to do (this topology has no schedules)",
        ));
    }
    if let Some(b) = o.budget_usd {
        if b == NanoUsd::ZERO {
            return Err(invalid("--budget-usd must be more than zero"));
        }
        // A batch's budget is the batch's, not each task's.
        if batch.is_none() {
            topology.set_root_budget(b);
        }
    }
    if (o.task.is_some() || batch.is_some()) && o.state.is_some() {
        return Err(invalid(
            "--state applies to standing loops (a run without --task)",
        ));
    }
    // The recorder, when anything reads it: the live endpoint, or the push at the end.
    let recorder = if o.metrics_addr.is_some() || o.push_metrics.is_some() {
        Some(
            baton::metrics::install_for_topology(topology.name())
                .map_err(|e| invalid(format_args!("installing the Prometheus recorder: {e}")))?,
        )
    } else {
        None
    };
    if let (Some(addr), Some(handle)) = (o.metrics_addr, &recorder) {
        let bound = serve::serve(addr, handle.clone())
            .await
            .map_err(|e| invalid(format_args!("{e:#}")))?;
        eprintln!("metrics: http://{bound}/metrics");
    }
    if let Some(limit) = o.wait_for_scrape {
        // Waited for once the runtime has started (its series are registered at zero).
        let _ = serve::WAIT_FOR_SCRAPE.set(limit);
    }
    let audit = o
        .audit
        .as_ref()
        .map(|p| baton::core::audit::AuditLog::open_with_key(p, audit_key()))
        .transpose()
        .map_err(|e| invalid(format_args!("audit trail: {e}")))?;
    let store = o
        .state
        .as_ref()
        .map(baton::actors::LoopStore::open)
        .transpose()
        .map_err(invalid)?
        .map(std::sync::Arc::new);
    let approvals = match o.approvals_addr {
        None => None,
        Some(addr) => {
            let queue = match &store {
                Some(s) => baton::actors::ApprovalQueue::durable(std::sync::Arc::clone(s)),
                None => Ok(baton::actors::ApprovalQueue::new()),
            }
            .map_err(|e| {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            })?;
            let queue = std::sync::Arc::new(queue);
            let bound = serve::serve_approvals(addr, std::sync::Arc::clone(&queue))
                .await
                .map_err(|e| invalid(format_args!("{e:#}")))?;
            eprintln!("approvals: http://{bound}/approvals");
            Some(queue)
        }
    };
    Ok(RunSetup {
        topology,
        batch,
        recorder,
        audit,
        store,
        approvals,
    })
}

async fn run(o: RunOptions) -> ExitCode {
    let RunSetup {
        topology,
        batch,
        recorder,
        audit,
        store,
        approvals,
    } = match set_up(&o).await {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let topology_name = topology.name().to_string();
    let outcome = match (o.task, batch) {
        (_, Some(tasks)) => {
            let concurrency = o.concurrency.unwrap_or(64) as usize;
            run_batch(
                topology,
                tasks,
                (concurrency, o.budget_usd, o.json),
                audit,
                approvals,
            )
            .await
        }
        (Some(task), None) => run_inner(topology, task, (o.json, o.explain), audit, approvals)
            .await
            .map(|r| r.outcome),
        (None, None) => {
            let grace = o.grace.unwrap_or(std::time::Duration::from_secs(30));
            run_loops(
                topology,
                (o.json, o.verbose),
                audit,
                (o.run_for, grace),
                store,
                approvals,
            )
            .await
        }
    };
    let code = match outcome {
        Ok(outcome) => ExitCode::from(u8::try_from(outcome.exit_code()).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    if let (Some(url), Some(handle)) = (&o.push_metrics, &recorder) {
        let instance = o.push_instance.unwrap_or_else(push::host_name);
        match push::push(url, &topology_name, &instance, handle).await {
            Ok(target) => eprintln!("metrics: pushed to {target}"),
            // The run's outcome stands; the missing push is said.
            Err(e) => eprintln!("error: pushing metrics to {url}: {e:#}"),
        }
    }
    if let Some(linger) = o.linger {
        linger_for_a_scrape(linger).await;
    }
    code
}

/// `--linger`: the final figures stay served for `linger`, and past it until a scrape has
/// collected them (at most [`LINGER_FOR_A_SCRAPE`] more).
async fn linger_for_a_scrape(linger: std::time::Duration) {
    let ended = serve::scrapes();
    eprintln!(
        "metrics: serving for {} more",
        baton::core::format_duration(linger)
    );
    tokio::time::sleep(linger).await;
    if serve::scrapes() == ended {
        eprintln!(
            "metrics: nothing has scraped the final figures yet; serving until a scrape does (at most 5m more)"
        );
        if !serve::scraped_after(ended, LINGER_FOR_A_SCRAPE).await {
            eprintln!("metrics: no scrape came; the final figures were not collected");
        }
    }
}

/// `BATON_AUDIT_KEY`, when set and not empty: the key of keyed audit trails (read here, by the
/// binary; the libraries read no environment for it).
pub(crate) fn audit_key() -> Option<Vec<u8>> {
    std::env::var("BATON_AUDIT_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(String::into_bytes)
}

/// How long `--linger` goes on, past its duration, for a scrape of the final figures.
const LINGER_FOR_A_SCRAPE: std::time::Duration = std::time::Duration::from_secs(300);

async fn run_inner(
    topology: Topology,
    task: String,
    (json, explain): (bool, bool),
    audit: Option<baton::core::audit::AuditLog>,
    approvals: Option<std::sync::Arc<baton::actors::ApprovalQueue>>,
) -> anyhow::Result<RunReport> {
    let mut builder = Runtime::builder(topology.clone());
    if let Some(log) = audit {
        builder = builder.observer(baton::actors::AuditObserver::new(log));
    }
    if let Some(q) = approvals {
        builder = builder.approver(q);
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        builder = builder.approver(TerminalApprover);
    }
    // Ctrl-C or SIGTERM cancels the task, which still ends with one recorded outcome
    // (`cancelled`, exit 6), audited and reported like any other.
    let interrupt = interrupted();
    if !json {
        builder = builder.observer(Printer::new(&topology).explain(explain));
        println!("▶ {} ← {task}", topology.graph()[topology.root()].name);
    }
    let runtime = builder.start().await.context("starting the runtime")?;
    serve::before_work().await;
    let report = {
        let mut run = runtime.spawn(task);
        tokio::select! {
            report = &mut run => report,
            () = interrupt => {
                eprintln!("interrupted: cancelling the task");
                run.cancel();
                run.await
            }
        }
    }
    .context("running the task")?;
    runtime.shutdown().await;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_summary(&mut out, &report)?;
    }
    out.flush()?;
    Ok(report)
}

/// Runs a batch of tasks (`--tasks`) on one runtime.
async fn run_batch(
    topology: Topology,
    tasks: Vec<batch::BatchTask>,
    options: (usize, Option<NanoUsd>, bool),
    audit: Option<baton::core::audit::AuditLog>,
    approvals: Option<std::sync::Arc<baton::actors::ApprovalQueue>>,
) -> anyhow::Result<baton::core::Outcome> {
    let mut builder = Runtime::builder(topology.clone());
    if let Some(log) = audit {
        builder = builder.observer(baton::actors::AuditObserver::new(log));
    }
    if let Some(q) = approvals {
        builder = builder.approver(q);
    }
    let runtime = builder.start().await.context("starting the runtime")?;
    serve::before_work().await;
    batch::run_batch(runtime, &topology, tasks, options).await
}

/// Asks the person at the terminal to approve a destructive call.
struct TerminalApprover;

#[baton::core::async_trait]
impl baton::actors::Approver for TerminalApprover {
    async fn decide(&self, r: &baton::actors::ApprovalRequest) -> baton::actors::ApprovalDecision {
        let prompt = format!(
            "\n[approval] `{}` wants to call `{}` with {}. Approve? [y/N] ",
            print::safe(&r.agent),
            print::safe(&r.tool),
            print::safe(&r.arguments.to_string())
        );
        let answer = tokio::task::spawn_blocking(move || {
            eprint!("{prompt}");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes") => {
                baton::actors::ApprovalDecision::Approved
            }
            _ => baton::actors::ApprovalDecision::Denied("denied at the terminal".into()),
        }
    }
}
