//! Start-up and scale: how long a runtime takes to start, and what a large declared fleet costs.
//!
//! Run with `cargo bench --bench scale`. Results live in BENCHMARKS.md.
//!
//! - `ractor_spawn_and_stop` (baseline): spawn one bare ractor actor and stop it.
//! - `start_ops_triage`: load, validate and start the main job's topology file (parse, graph,
//!   plan with models and tools, conductor, root agent), then shut it down.
//! - `start_100k_agents`: validate and start a declared fleet of 100,000 agents (a root over 100
//!   leads over 999 workers each; agents are lazy, so only the root's actor starts).
//! - `parse_100k_agents_yaml`: parse and validate the same fleet written as a YAML file (one
//!   line per agent), generated here: what `baton validate` does with a 100,000-agent file.
//! - The resident memory the started 100k-agent runtime holds is printed once (`/proc/self/statm`),
//!   since criterion measures time only.
//! - `first_call/cli_custom_priced` (baseline) and `first_call/cli_openai_priced`: a whole
//!   `baton run --task` process answering one step, against a local server speaking OpenAI's
//!   wire format: with an OpenAI model (whose tokenizer is loaded, off the call's path) and with
//!   a model Baton has no tokenizer for. The gap is what loading the tokenizer still costs a
//!   one-task process.

use std::time::Duration;

use baton::actors::Runtime;
use baton::core::{NanoUsd, ScriptedModel};
use baton::topologies::{AgentSpec, ModelSpec, Topology, TopologyBuilder};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::rss;

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

fn fleet() -> Topology {
    let mut b = TopologyBuilder::new("fleet").model(
        "m",
        ModelSpec::custom(baton::core::Price::per_million_tokens(
            NanoUsd::from_usd(1),
            NanoUsd::from_usd(2),
        ))
        .max_output_tokens(256),
    );
    let leads: Vec<String> = (0..LEADS).map(|l| format!("lead-{l}")).collect();
    b = b.agent(
        "root",
        AgentSpec::new(["m"]).children(leads.iter().cloned()),
    );
    for (l, lead) in leads.iter().enumerate() {
        let workers: Vec<String> = (0..WORKERS).map(|w| format!("worker-{l}-{w}")).collect();
        for w in &workers {
            b = b.agent(w.clone(), AgentSpec::new(["m"]));
        }
        b = b.agent(lead.clone(), AgentSpec::new(["m"]).children(workers));
    }
    b.build().expect("a valid fleet")
}

/// [`fleet`] as a YAML file's text.
fn fleet_yaml() -> String {
    use std::fmt::Write as _;
    let mut y = String::from(
        "models:\n  m: { provider: custom, price: { input: 1, output: 2 }, max_output_tokens: 256 }\nagents:\n",
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
            let _ = writeln!(y, "  {w}: {{ models: [m] }}");
        }
        let _ = writeln!(
            y,
            "  {lead}: {{ models: [m], children: [{}] }}",
            workers.join(", ")
        );
    }
    y
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

    let before = rss();
    let t = fleet();
    assert_eq!(t.graph().node_count(), 1 + LEADS + LEADS * WORKERS);
    let runtime = rt
        .block_on(
            Runtime::builder(t.clone())
                .model("m", ScriptedModel::always("m", "done"))
                .start(),
        )
        .expect("starts");
    let held = rss().saturating_sub(before);
    println!(
        "start/100k_agents: resident memory of the validated topology and started runtime: {} MB",
        held / 1_000_000
    );
    rt.block_on(runtime.shutdown());
    drop(t);

    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let yaml = fleet_yaml();
    g.bench_function("parse_100k_agents_yaml", |b| {
        b.iter(|| {
            let t = Topology::from_yaml_str(&yaml, "fleet.yaml".as_ref(), ".".as_ref())
                .expect("a valid fleet");
            assert_eq!(t.graph().node_count(), 1 + LEADS + LEADS * WORKERS);
        })
    });
    g.bench_function("start_100k_agents", |b| {
        b.to_async(&rt).iter(|| async {
            let runtime = Runtime::builder(fleet())
                .model("m", ScriptedModel::always("m", "done"))
                .start()
                .await
                .expect("starts");
            runtime.shutdown().await;
        })
    });
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
