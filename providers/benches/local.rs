//! The embedded model (`provider: local`) on SmolLM2-135M-Instruct Q4_1, beside llama.cpp's own
//! decode loop on the same model, context size and threads (the baseline):
//!
//! - `decode/baton_64`: a 64-token reply through `LocalModel::call` (queue, thread hop, the
//!   token loop with confidence, detokenising), the prompt included;
//! - `decode/llama_64`: the same prompt and 64 tokens with llama-cpp-2 directly: decode, greedy
//!   sampler, next — what llama.cpp's simple example does;
//! - `prefill/300`: a 300-token prompt and one generated token;
//! - `tool_call`: a grammar-constrained tool call, prompt to parsed call;
//! - `load`: the model loaded and one context created.
//!
//! Run with the model fetched (`scripts/fetch-local-model.sh`):
//! `cargo bench -p baton-providers --features local --bench local`
#![allow(missing_docs, clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::{Message, Model, ModelRequest, Role, ToolSchema};
use baton_providers::local::{LocalConfig, LocalModel};
use criterion::{Criterion, criterion_group, criterion_main};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;

const THREADS: u32 = 2;
const CONTEXT: u32 = 2048;
const TOKENS: u32 = 64;

fn model_path() -> Option<PathBuf> {
    let p = baton_providers::local::fetched_model_path();
    p.is_file().then_some(p)
}

fn config(path: PathBuf) -> LocalConfig {
    LocalConfig {
        context: CONTEXT,
        threads: THREADS,
        ..LocalConfig::new(path)
    }
}

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSchema], max: u32) -> ModelRequest<'a> {
    ModelRequest {
        agent: "bench",
        step: 1,
        messages,
        tools,
        tool_tokens: None,
        max_tokens: max,
        confidence: true,
    }
}

/// llama.cpp's own loop: decode the prompt, then greedy-sample and decode one token at a time.
fn llama_loop(ctx: &mut LlamaContext<'_>, model: &LlamaModel, prompt: &str, max: u32) -> u32 {
    ctx.clear_kv_cache();
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let mut batch = LlamaBatch::new(512, 1);
    let last = tokens.len() - 1;
    for (i, t) in tokens.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i == last).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let mut sampler = LlamaSampler::greedy();
    let mut pos = tokens.len() as i32;
    let mut n = 0;
    while n < max {
        let t = sampler.sample(ctx, batch.n_tokens() - 1);
        sampler.accept(t);
        n += 1;
        batch.clear();
        batch.add(t, pos, &[0], true).unwrap();
        pos += 1;
        ctx.decode(&mut batch).unwrap();
    }
    n
}

fn bench(c: &mut Criterion) {
    let Some(path) = model_path() else {
        eprintln!("skipped: the local model is missing (run scripts/fetch-local-model.sh)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = LocalModel::load("smol", &config(path.clone())).unwrap();
    // A prompt that does not end early: the reply runs to the token ceiling. Each iteration's
    // prompt starts differently, so that neither side reuses the previous one's cache.
    let mut n = 0u64;
    let mut fresh = move || {
        n += 1;
        vec![
            Message::new(
                Role::System,
                format!("Session {n}. You are a helpful assistant."),
            ),
            Message::new(Role::User, "Count from 1 to 500, separated by commas."),
        ]
    };
    let mut fresh_prompt = {
        let mut fresh = fresh;
        let local = &local;
        move || {
            let m = fresh();
            local.prompt(&request(&m, &[], TOKENS)).unwrap()
        }
    };

    let mut g = c.benchmark_group("decode");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("baton_64", |b| {
        b.iter(|| {
            let messages = fresh();
            let r = rt
                .block_on(local.call(request(&messages, &[], TOKENS)))
                .unwrap();
            assert_eq!(r.usage.output, u64::from(TOKENS));
            assert!(
                r.usage.cached_input < 8,
                "only the template's first tokens are shared"
            );
        })
    });
    // The baseline shares the process's llama.cpp backend (initialised once).
    let backend = baton_providers::local::llama_backend().unwrap();
    let raw = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(CONTEXT))
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = raw.new_context(backend, params).unwrap();
    g.bench_function("llama_64", |b| {
        b.iter(|| {
            let prompt = fresh_prompt();
            assert_eq!(llama_loop(&mut ctx, &raw, &prompt, TOKENS), TOKENS)
        })
    });
    g.finish();

    let body = "The service reported elevated latency in the checkout path. ".repeat(28);
    let mut k = 0u64;
    let mut long = move || {
        k += 1;
        vec![
            Message::new(
                Role::System,
                format!("Session {k}. You are a helpful assistant."),
            ),
            Message::new(Role::User, body.clone()),
        ]
    };
    let sample = long();
    let n = local.estimate_input_tokens(&request(&sample, &[], 1));
    eprintln!("prefill prompt: {n} tokens");
    let mut g = c.benchmark_group("prefill");
    g.sample_size(10);
    g.bench_function("300", |b| {
        b.iter(|| {
            let m = long();
            let r = rt.block_on(local.call(request(&m, &[], 1))).unwrap();
            assert!(
                r.usage.cached_input < 8,
                "only the template's first tokens are shared"
            );
        })
    });
    g.finish();

    let tools = [ToolSchema {
        name: "query_metrics".into(),
        description: "Query a metrics time series.".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"series": {"type": "string", "enum": ["checkout_p99_ms", "search_p99_ms"]}},
            "required": ["series"], "additionalProperties": false
        }),
    }];
    let ask = vec![
        Message::new(Role::System, "You watch latency. Call query_metrics first."),
        Message::new(Role::User, "Series checkout_p99_ms: quiet or incident?"),
    ];
    let mut t = 0u64;
    c.bench_function("tool_call", |b| {
        b.iter(|| {
            t += 1;
            let mut ask = ask.clone();
            ask[0].content = format!("Session {t}. {}", ask[0].content);
            let r = rt.block_on(local.call(request(&ask, &tools, 64))).unwrap();
            assert!(!r.tool_calls.is_empty() || r.text.is_some());
        })
    });

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("model_and_context", |b| {
        b.iter(|| LocalModel::load("again", &config(path.clone())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
