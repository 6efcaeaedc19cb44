//! Start-up and scale: how long a runtime takes to start, and what a large declared fleet costs.
//!
//! Run with `cargo bench --bench scale`. Results live in BENCHMARKS.md.
//!
//! - `ractor_spawn_and_stop` (baseline): spawn one bare ractor actor and stop it.
//! - `start_ops_triage`: load, validate and start the main job's topology file (parse, graph,
//!   plan with models and tools, conductor, root agent), then shut it down.
//! - `parse_100k_agents_yaml`: read and validate a declared fleet of 100,000 agents from a YAML
//!   file (a root over 100 leads over 999 workers each, one line per agent; every agent has one
//!   model, every worker two tools), generated here: what `baton validate` does with the file.
//! - `start_100k_agents`: start a runtime on that validated fleet and shut it down (agents are
//!   lazy, so only the root's actor starts).
//! - What a declared agent costs, printed once (criterion measures time only): the heap the
//!   validated topology and the started runtime hold (bytes allocated minus bytes freed, counted
//!   by stats_alloc's instrumented allocator, which every benchmark here runs under), per
//!   declared agent; the resident memory (`/proc/self/statm`); and the time to validate and to
//!   start.
//! - `first_call/cli_custom_priced` (baseline) and `first_call/cli_openai_priced`: a whole
//!   `baton run --task` process answering one step, against a local server speaking OpenAI's
//!   wire format: with an OpenAI model (whose tokenizer is loaded, off the call's path) and with
//!   a model Baton has no tokenizer for. The gap is what loading the tokenizer still costs a
//!   one-task process.

use std::time::Duration;

use baton::actors::Runtime;
use baton::core::ScriptedModel;
use baton::topologies::Topology;
use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::rss;

/// Every allocation of this benchmark counted, so the heap a fleet holds can be read exactly.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

struct Idle;

impl ractor::Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<()>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

const LEADS: usize = 100;
const WORKERS: usize = 999;

/// The 100,000-agent fleet as a YAML file's text: a root over [`LEADS`] leads over [`WORKERS`]
/// workers each, one line per agent; every agent has model `m`, every worker the tools `status`
/// and `uptime`.
fn fleet_yaml() -> String {
    use std::fmt::Write as _;
    let mut y = String::from(
        "models:\n  m: { provider: custom, price: { input: 1, output: 2 }, max_output_tokens: 256 }\n\
         tools:\n  status: { kind: http_get, allow: [status.example.com] }\n  uptime: { kind: shell, allow: [uptime] }\n\
         agents:\n",
    );
    let leads: Vec<String> = (0..LEADS).map(|l| format!("lead-{l}")).collect();
    let _ = writeln!(
        y,
        "  root: {{ models: [m], children: [{}] }}",
        leads.join(", ")
    );
    for (l, lead) in leads.iter().enumerate() {
        let workers: Vec<String> = (0..WORKERS).map(|w| format!("worker-{l}-{w}")).collect();
        for w in &workers {
            let _ = writeln!(y, "  {w}: {{ models: [m], tools: [status, uptime] }}");
        }
        let _ = writeln!(
            y,
            "  {lead}: {{ models: [m], children: [{}] }}",
            workers.join(", ")
        );
    }
    y
}

/// The fleet written to a file in the temporary folder.
fn fleet_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("baton-fleet-{}.yaml", std::process::id()));
    std::fs::write(&path, fleet_yaml()).expect("the fleet file is written");
    path
}

/// Bytes the heap holds now (allocated minus freed since the start).
fn heap() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128
}

/// Reads, validates and starts the fleet file once, and prints what a declared agent costs.
fn declared_agent_cost(rt: &tokio::runtime::Runtime, file: &std::path::Path) {
    let agents = (1 + LEADS + LEADS * WORKERS) as i128;
    let (heap_before, rss_before) = (heap(), rss());
    let t0 = std::time::Instant::now();
    let t = Topology::from_path(file).expect("a valid fleet");
    let validated = t0.elapsed();
    assert_eq!(t.graph().node_count() as i128, agents);
    let heap_validated = heap();
    let t1 = std::time::Instant::now();
    let runtime = rt
        .block_on(
            Runtime::builder(t)
                .model("m", ScriptedModel::always("m", "done"))
                .start(),
        )
        .expect("starts");
    let started = t1.elapsed();
    let (heap_after, rss_after) = (heap(), rss());
    println!(
        "declared agents: {agents} from YAML · validate {validated:.2?} · start {started:.2?} · \
         heap held {:.0} B per declared agent (topology {:.0} B, runtime {:.0} B) · RSS {} MB",
        (heap_after - heap_before) as f64 / agents as f64,
        (heap_validated - heap_before) as f64 / agents as f64,
        (heap_after - heap_validated) as f64 / agents as f64,
        rss_after.saturating_sub(rss_before) / 1_000_000
    );
    rt.block_on(runtime.shutdown());
}

fn start(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/topologies/ops-triage.yaml"
    );
    let mut g = c.benchmark_group("start");
    // Baseline: spawning one bare ractor actor and stopping it (what a runtime start is made of).
    g.bench_function("ractor_spawn_and_stop", |b| {
        b.to_async(&rt).iter(|| async {
            let (actor, handle) = ractor::Actor::spawn(None, Idle, ()).await.expect("spawns");
            actor.stop(None);
            handle.await.expect("stops");
        })
    });
    g.bench_function("start_ops_triage", |b| {
        b.to_async(&rt).iter(|| async {
            let t = Topology::from_path(file).expect("valid");
            let runtime = Runtime::builder(t).start().await.expect("starts");
            runtime.shutdown().await;
        })
    });

    let file = fleet_file();
    declared_agent_cost(&rt, &file);

    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function("parse_100k_agents_yaml", |b| {
        b.iter(|| {
            let t = Topology::from_path(&file).expect("a valid fleet");
            assert_eq!(t.graph().node_count(), 1 + LEADS + LEADS * WORKERS);
        })
    });
    let fleet = Topology::from_path(&file).expect("a valid fleet");
    g.bench_function("start_100k_agents", |b| {
        b.to_async(&rt).iter_batched(
            || fleet.clone(),
            |t| async {
                let runtime = Runtime::builder(t)
                    .model("m", ScriptedModel::always("m", "done"))
                    .start()
                    .await
                    .expect("starts");
                runtime.shutdown().await;
            },
            criterion::BatchSize::PerIteration,
        )
    });
    let _ = std::fs::remove_file(&file);
    g.finish();
}

/// One `baton run --task` process against `server`, with its model named `model`.
fn one_task(server: &str, model: &str) {
    let topology = std::env::temp_dir().join(format!(
        "baton-first-call-{}-{model}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &topology,
        format!(
            "models:\n  m: {{ provider: openai, model: {model}, endpoint: \"{server}\", price: {{ input: 0.15, output: 0.6 }} }}\nagents:\n  lead: {{ models: [m] }}\n"
        ),
    )
    .expect("topology");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            topology.to_str().expect("utf-8"),
            "--task",
            "status?",
            "--json",
        ])
        .output()
        .expect("baton runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn first_call(c: &mut Criterion) {
    use baton_providers::testing::{FakeServer, Reply};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let reply = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/tests/fixtures/openai/chat_text.json"
    ))
    .expect("fixture");
    let server = rt.block_on(FakeServer::start(
        std::iter::repeat_with(|| Reply::json(200, reply.clone())).take(100_000),
    ));
    let url = server.url();
    let mut g = c.benchmark_group("first_call");
    g.sample_size(20);
    g.bench_function("cli_custom_priced", |b| {
        b.iter(|| one_task(&url, "smollm2"))
    });
    g.bench_function("cli_openai_priced", |b| {
        b.iter(|| one_task(&url, "gpt-4o-mini"))
    });
    g.finish();
}

criterion_group!(benches, start, first_call);
criterion_main!(benches);
