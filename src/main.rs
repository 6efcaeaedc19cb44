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
mod cli;
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
use std::process::ExitCode;

use anyhow::Context;
use baton::actors::{RunReport, Runtime};
use baton::core::NanoUsd;
use baton::topologies::Topology;
use clap::Parser;
use cli::{
    ApprovalsCommand, AuditCommand, Cli, Command, LedgerCommand, RulesCommand, RunOptions,
    ServeOptions,
};
use loops::{interrupted, run_loops};
use print::{Printer, print_summary, usd};

/// Exit code for bad input: an invalid topology file or flag.
const EXIT_INVALID: u8 = 2;

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
        ledger: o.ledger,
        lease: o.ledger_lease,
        on_interrupted: o.on_interrupted,
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
    /// `--ledger`: this process's side of the topology's shared budget.
    shared: Option<ledger::Shared>,
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
    let url = ledger::url(o.ledger.as_deref(), &topology).map_err(|e| invalid(format!("{e:#}")))?;
    let shared = match url {
        None => None,
        Some(url) => Some(
            ledger::Shared::join(&url, &topology, o.ledger_lease)
                .await
                .map_err(|e| invalid(format!("{e:#}")))?,
        ),
    };
    Ok(RunSetup {
        topology,
        batch,
        recorder,
        audit,
        store,
        approvals,
        shared,
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
        shared,
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
                shared.as_ref(),
            )
            .await
        }
        (Some(task), None) => run_inner(
            topology,
            task,
            (o.json, o.explain),
            audit,
            approvals,
            shared.as_ref(),
        )
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
                shared.as_ref(),
            )
            .await
        }
    };
    if let Some(shared) = shared {
        shared.finish().await;
    }
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
    shared: Option<&ledger::Shared>,
) -> anyhow::Result<RunReport> {
    let mut builder = Runtime::builder(topology.clone());
    if let Some(shared) = shared {
        builder = shared.attach(builder);
    }
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
    shared: Option<&ledger::Shared>,
) -> anyhow::Result<baton::core::Outcome> {
    let mut builder = Runtime::builder(topology.clone());
    if let Some(shared) = shared {
        builder = shared.attach(builder);
    }
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
