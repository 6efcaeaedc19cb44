//! Framework overhead per agent step and per delegated workflow, beside the floors they are built on.
//!
//! Run with `cargo bench --bench step`. Results and ratios live in BENCHMARKS.md.
//!
//! Group `round_trip` (one request, one reply):
//! - `tokio_mpsc_oneshot`: a raw tokio channel to a task that answers on a oneshot (baseline).
//! - `ractor_call`: a bare ractor `call` to an actor that answers (baseline).
//! - `baton_agent_step`: one task through the conductor to an agent that makes one call to a
//!   zero-latency scripted model: envelope, root account, reservation and commit, metrics, the reply.
//!
//! Group `workflow`: a delegated task of 8 model calls, 3 tool calls and 2 delegations with an
//! instant model, the shape the project's speed bar is stated for.
//!
//! Group `in_flight_100`: 100 such workflows submitted at once, on a current-thread runtime and on
//! a two-worker multi-thread runtime, beside 100 tokio tasks each making 8 channel round trips
//! (baseline).
//!
//! Group `model_50ms`: the same workflow with a model that takes 50 ms a call: one task, and 1,000
//! tasks at once on one runtime (the concurrency bar: 1,000 should take about one's time).

// The allocator of the `baton` binary (see the `mimalloc` feature), for baselines and Baton alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;

use baton::actors::Runtime;
use baton::core::{Budget, NanoUsd, ScriptedModel, Tool, ToolError, async_trait};
use baton::topologies::{AgentSpec, ModelSpec, ToolSpec, TopologyBuilder};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::rss;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

struct Echo;

impl Actor for Echo {
    type Msg = RpcReplyPort<u64>;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        port: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = port.send(1);
        Ok(())
    }
}

struct Noop;

#[async_trait]
impl Tool for Noop {
    fn name(&self) -> &str {
        "noop"
    }
    fn description(&self) -> &str {
        "does nothing"
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"type": "object"})
    }
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        _: serde_json::Value,
    ) -> Result<String, ToolError> {
        Ok("ok".into())
    }
}

const WORKFLOW_RULES: &str = r#"
rules:
  - { agent: lead, step: 1, reply: { tool_calls: [ { name: delegate, args: { agent: a, task: "part one" } } ] } }
  - { agent: lead, step: 2, reply: { tool_calls: [ { name: delegate, args: { agent: b, task: "part two" } } ] } }
  - { agent: lead, reply: { text: "both parts done" } }
  - { agent: a, step: 1, reply: { tool_calls: [ { name: noop, args: {} } ] } }
  - { agent: a, step: 2, reply: { tool_calls: [ { name: noop, args: {} } ] } }
  - { agent: a, reply: { text: "a done" } }
  - { agent: b, step: 1, reply: { tool_calls: [ { name: noop, args: {} } ] } }
  - { agent: b, reply: { text: "b done" } }
"#;

fn price() -> ModelSpec {
    ModelSpec::custom(baton::core::Price::per_million_tokens(
        NanoUsd(150_000_000),
        NanoUsd(600_000_000),
    ))
}

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("round_trip");

    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>(64);
    rt.spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(1);
        }
    });
    g.bench_function("tokio_mpsc_oneshot", |b| {
        b.to_async(&rt).iter(|| async {
            let (otx, orx) = tokio::sync::oneshot::channel();
            tx.send(otx).await.expect("send");
            orx.await.expect("reply")
        })
    });

    let (echo, _) = rt.block_on(Actor::spawn(None, Echo, ())).expect("spawn");
    g.bench_function("ractor_call", |b| {
        b.to_async(&rt)
            .iter(|| async { echo.call(|p| p, None).await.expect("call") })
    });

    let topology = TopologyBuilder::new("bench")
        .model("instant", price())
        .agent("solo", AgentSpec::new(["instant"]))
        .build()
        .expect("topology");
    let runtime = rt
        .block_on(
            Runtime::builder(topology)
                .model("instant", ScriptedModel::always("instant", "done"))
                .start(),
        )
        .expect("runtime");
    g.bench_function("baton_agent_step", |b| {
        b.to_async(&rt)
            .iter(|| async { runtime.submit("go", Budget::UNLIMITED).await.expect("run") })
    });
    g.finish();
    rt.block_on(runtime.shutdown());
}

fn workflow(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runtime = w1_runtime(&rt, None);
    // Check the shape once: 8 model calls, 3 tool calls + 2 delegations.
    let run = rt
        .block_on(runtime.submit("go", Budget::UNLIMITED))
        .expect("run");
    let snap = run.account.snapshot();
    let mut calls = 0;
    let mut tools = 0;
    snap.walk(&mut |a| {
        calls += a.own.model_calls;
        tools += a.own.tool_calls;
    });
    assert_eq!(
        (calls, tools),
        (8, 5),
        "8 model calls; 3 tool calls and 2 delegations"
    );
    let mut g = c.benchmark_group("workflow");
    g.bench_function("baton_8_calls_3_tools_2_delegations", |b| {
        b.to_async(&rt)
            .iter(|| async { runtime.submit("go", Budget::UNLIMITED).await.expect("run") })
    });
    g.finish();
    rt.block_on(runtime.shutdown());
}

fn w1_runtime(rt: &tokio::runtime::Runtime, latency: Option<std::time::Duration>) -> Runtime {
    w1_runtime_with(rt, latency, 0)
}

/// W1, with `extra` more children declared under the lead (lazy: never started, never used).
fn w1_runtime_with(
    rt: &tokio::runtime::Runtime,
    latency: Option<std::time::Duration>,
    extra: usize,
) -> Runtime {
    let extras: Vec<String> = (0..extra).map(|i| format!("idle{i}")).collect();
    let mut children = vec!["a".to_string(), "b".to_string()];
    children.extend(extras.iter().cloned());
    let mut builder = TopologyBuilder::new("bench")
        .model("instant", price())
        .tool("noop", ToolSpec::custom())
        .agent("lead", AgentSpec::new(["instant"]).children(children))
        .agent("a", AgentSpec::new(["instant"]).tools(["noop"]))
        .agent("b", AgentSpec::new(["instant"]).tools(["noop"]));
    for name in &extras {
        builder = builder.agent(name.as_str(), AgentSpec::new(["instant"]));
    }
    let topology = builder.build().expect("topology");
    let mut model =
        ScriptedModel::from_yaml("instant", WORKFLOW_RULES, Path::new("<bench>")).expect("rules");
    if let Some(l) = latency {
        model = model.with_latency(l);
    }
    rt.block_on(
        Runtime::builder(topology)
            .model("instant", model)
            .tool(Noop)
            .start(),
    )
    .expect("runtime")
}

/// Submits `n` tasks at once and waits for them all. The tasks are spawned and awaited by one
/// driver task on the runtime, so that only its end wakes the bench's thread (which, outside the
/// runtime's workers, would otherwise be woken — and take a core from them — at every task's end).
async fn all_at_once(runtime: &std::sync::Arc<Runtime>, n: usize) {
    let runtime = std::sync::Arc::clone(runtime);
    tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let r = std::sync::Arc::clone(&runtime);
            set.spawn(async move { r.submit("go", Budget::UNLIMITED).await.expect("run") });
        }
        while let Some(done) = set.join_next().await {
            assert_eq!(
                done.expect("joined").result.outcome,
                baton::core::Outcome::Completed
            );
        }
    })
    .await
    .expect("driver");
}

fn in_flight(c: &mut Criterion) {
    let mut g = c.benchmark_group("in_flight_100");
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>(1024);
    multi.spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(1);
        }
    });
    g.bench_function("tokio_100_tasks_8_round_trips", |b| {
        b.to_async(&multi).iter(|| {
            let tx = tx.clone();
            async move {
                tokio::spawn(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..100 {
                        let tx = tx.clone();
                        set.spawn(async move {
                            for _ in 0..8 {
                                let (otx, orx) = tokio::sync::oneshot::channel();
                                tx.send(otx).await.expect("send");
                                orx.await.expect("reply");
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                })
                .await
                .expect("driver");
            }
        })
    });
    let on_single = std::sync::Arc::new(w1_runtime(&single, None));
    g.bench_function("baton_w1_current_thread", |b| {
        b.to_async(&single).iter(|| all_at_once(&on_single, 100))
    });
    let on_multi = std::sync::Arc::new(w1_runtime(&multi, None));
    g.bench_function("baton_w1_multi_thread_2", |b| {
        b.to_async(&multi).iter(|| all_at_once(&on_multi, 100))
    });
    g.finish();
}

fn model_50ms(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let runtime = std::sync::Arc::new(w1_runtime(&rt, Some(std::time::Duration::from_millis(50))));
    let mut g = c.benchmark_group("model_50ms");
    g.sample_size(10);
    g.bench_function("one_task", |b| {
        b.to_async(&rt).iter(|| all_at_once(&runtime, 1))
    });
    g.bench_function("thousand_tasks_at_once", |b| {
        b.to_async(&rt).iter(|| all_at_once(&runtime, 1000))
    });
    g.finish();
}

/// A lead with 10,000 declared (idle) children beside one with 2: what a declared child costs
/// its parent's steps (the `delegate` schema and its token count are computed once, at plan time).
fn children(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let two = w1_runtime(&rt, None);
    let many = w1_runtime_with(&rt, None, 9_998);
    let mut g = c.benchmark_group("children");
    g.bench_function("w1_lead_with_2_children", |b| {
        b.to_async(&rt)
            .iter(|| async { two.submit("go", Budget::UNLIMITED).await.expect("run") })
    });
    g.bench_function("w1_lead_with_10000_children", |b| {
        b.to_async(&rt)
            .iter(|| async { many.submit("go", Budget::UNLIMITED).await.expect("run") })
    });
    g.finish();
    rt.block_on(two.shutdown());
    rt.block_on(many.shutdown());
}

/// Memory, printed (criterion measures time only): bytes retained per finished W1 task over
/// 50,000 sequential tasks, and bytes per in-flight W1 task with 1,000 tasks waiting on a 50 ms
/// model. Timed as well: the 1,000 tasks at once.
fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let instant = std::sync::Arc::new(w1_runtime(&rt, None));
    let sequential = |n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                instant.submit("go", Budget::UNLIMITED).await.expect("run");
            }
        });
    };
    sequential(1_000);
    let (before, live_before) = (rss(), baton::core::live_accounts());
    sequential(50_000);
    let (after, live_after) = (rss(), baton::core::live_accounts());
    println!(
        "memory: 50,000 sequential W1 tasks: RSS {} -> {} KiB ({:.1} bytes retained a task); live accounts {live_before} -> {live_after}",
        before / 1024,
        after / 1024,
        (after as f64 - before as f64) / 50_000.0
    );
    let slow = std::sync::Arc::new(w1_runtime(&rt, Some(std::time::Duration::from_millis(50))));
    let idle = rss();
    let peak = rt.block_on(async {
        let mut handles = Vec::with_capacity(1_000);
        for _ in 0..1_000 {
            let r = std::sync::Arc::clone(&slow);
            handles.push(tokio::spawn(async move {
                r.submit("go", Budget::UNLIMITED).await.expect("run")
            }));
        }
        // Every task is in flight, waiting on its model.
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        let peak = rss();
        for h in handles {
            h.await.expect("joined");
        }
        peak
    });
    println!(
        "memory: 1,000 W1 tasks in flight on a 50 ms model: RSS {} -> {} KiB ({:.0} bytes a task in flight)",
        idle / 1024,
        peak / 1024,
        (peak as f64 - idle as f64) / 1_000.0
    );
    let mut g = c.benchmark_group("memory");
    g.sample_size(10);
    g.bench_function("w1_50ms_1000_in_flight", |b| {
        b.to_async(&rt).iter(|| all_at_once(&slow, 1_000))
    });
    g.finish();
}

criterion_group!(
    benches, round_trip, workflow, in_flight, model_50ms, children, memory
);
criterion_main!(benches);
