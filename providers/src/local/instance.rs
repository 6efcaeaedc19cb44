//! An instance: an OS thread owning one llama.cpp context, serving calls from the queue — the
//! prompt (minus what the context already holds), then one token at a time under the grammar,
//! with the cancel flag checked between tokens.

use super::*;

/// One instance: creates its context, says it is ready, then serves calls until the queue closes.
pub(super) fn instance(
    backend: &LlamaBackend,
    model: &LlamaModel,
    config: &LocalConfig,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    ready: &mpsc::Sender<Result<(), String>>,
    generated: &AtomicU64,
) {
    let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // The tokens whose keys and values the context holds, from position 0.
    let mut cached: Vec<LlamaToken> = Vec::new();
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        if job.cancel.load(Ordering::Relaxed) || job.reply.is_closed() {
            continue; // abandoned while it queued
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate(model, &mut ctx, &mut cached, config, &job, generated)
        }))
        .unwrap_or_else(|p| {
            // Nothing is known of the cache after a panic: start the next call afresh.
            cached.clear();
            ctx.clear_kv_cache();
            Err(format!(
                "llama.cpp binding panicked: {}",
                baton_core::panic_text(&*p)
            ))
        });
        let _ = job.reply.send(result);
    }
}

/// The thread's CPU clock.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Runs one call on `ctx`: the prompt in batches, then one token at a time until the end of
/// generation, the grammar's end, `max_tokens` or a cancel.
///
/// The prompt's beginning that the context already holds (`cached`: the steps of one task share
/// their system message, tools and earlier turns) is not computed again: only the rest is
/// decoded, as llama.cpp's server does with `cache_prompt`.
fn generate(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    cached: &mut Vec<LlamaToken>,
    config: &LocalConfig,
    job: &Job,
    generated: &AtomicU64,
) -> Result<Generated, String> {
    let started = thread_cpu();
    // At least the prompt's last token is decoded: its logits start the reply.
    let mut keep = cached
        .iter()
        .zip(&job.prompt)
        .take_while(|(a, b)| a == b)
        .count()
        .min(job.prompt.len().saturating_sub(1));
    if ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_err() {
        ctx.clear_kv_cache();
        keep = 0;
    }
    cached.truncate(keep);
    // llama.cpp may round the context up; the declared size is the one that holds.
    let n_ctx = (ctx.n_ctx().min(config.context)) as usize;
    if job.prompt.len() + 1 > n_ctx {
        return Err(format!(
            "a prompt of {} tokens does not fit the context of {n_ctx}",
            job.prompt.len()
        ));
    }
    let cancelled = || job.cancel.load(Ordering::Relaxed);
    let n_batch = ctx.n_batch().max(1) as usize;
    let mut batch = LlamaBatch::new(n_batch, 1);
    let last = job.prompt.len().saturating_sub(1);
    for (c, chunk) in job.prompt[keep..].chunks(n_batch).enumerate() {
        if cancelled() {
            return Err("cancelled".into());
        }
        batch.clear();
        for (j, t) in chunk.iter().enumerate() {
            let pos = keep + c * n_batch + j;
            batch
                .add(*t, pos as i32, &[0], pos == last)
                .map_err(|e| e.to_string())?;
        }
        ctx.decode(&mut batch).map_err(|e| format!("prompt: {e}"))?;
        cached.extend_from_slice(chunk);
    }
    let mut grammar = match &job.grammar {
        Some(g) => Some(LlamaSampler::grammar(model, g, "root").map_err(|e| e.to_string())?),
        None => None,
    };
    let mut sampler = (config.temperature > 0.0).then(|| {
        LlamaSampler::chain_simple([
            LlamaSampler::temp(config.temperature),
            LlamaSampler::dist(config.seed),
        ])
    });
    let vocab = model.vocab();
    let room = n_ctx - job.prompt.len();
    let limit = (job.max_tokens as usize).min(room);
    let mut text = Vec::new();
    let mut log_prob = 0f64;
    let mut scored = 0u64;
    let mut produced = 0usize;
    let mut pos = job.prompt.len();
    let mut logits_at = batch.n_tokens() - 1;
    let mut truncated = false;
    loop {
        if cancelled() {
            return Err("cancelled".into());
        }
        let logits = ctx.get_logits_ith(logits_at);
        let token = pick(logits, grammar.as_mut(), sampler.as_mut());
        if job.confidence {
            log_prob += log_softmax_at(logits, token);
            scored += 1;
        }
        if let Some(g) = grammar.as_mut() {
            g.accept(token);
        }
        if vocab.is_eog(token) {
            break;
        }
        if produced == limit {
            truncated = true;
            break;
        }
        produced += 1;
        generated.fetch_add(1, Ordering::Relaxed);
        text.extend(vocab.token_to_piece(token, false, None));
        batch.clear();
        batch
            .add(token, pos as i32, &[0], true)
            .map_err(|e| e.to_string())?;
        pos += 1;
        ctx.decode(&mut batch)
            .map_err(|e| format!("generation: {e}"))?;
        cached.push(token);
        logits_at = 0;
    }
    let cpu = (thread_cpu().saturating_sub(started)) * config.threads;
    Ok(Generated {
        reused: keep as u64,
        text: String::from_utf8_lossy(&text).into_owned(),
        output_tokens: produced as u64,
        log_prob,
        scored,
        truncated,
        cpu,
    })
}

/// The next token: the likeliest (or a sample at the temperature) of those the grammar allows.
/// The unconstrained choice is tried against the grammar first (one check instead of a pass over
/// the vocabulary); only when the grammar refuses it is the whole vocabulary filtered.
fn pick(
    logits: &[f32],
    grammar: Option<&mut LlamaSampler>,
    mut sampler: Option<&mut LlamaSampler>,
) -> LlamaToken {
    let candidates = || {
        LlamaTokenDataArray::from_iter(
            (0i32..)
                .zip(logits)
                .map(|(i, l)| LlamaTokenData::new(LlamaToken(i), *l, 0.0)),
            false,
        )
    };
    let choose = |mut array: LlamaTokenDataArray, sampler: Option<&mut LlamaSampler>| match sampler
    {
        Some(s) => {
            array.apply_sampler(s);
            array.selected_token().unwrap_or(LlamaToken(0))
        }
        None => argmax(&array),
    };
    match grammar {
        None => match sampler {
            None => LlamaToken(argmax_slice(logits)),
            Some(s) => choose(candidates(), Some(s)),
        },
        Some(g) => {
            let first = match sampler {
                None => LlamaToken(argmax_slice(logits)),
                Some(ref mut s) => choose(candidates(), Some(s)),
            };
            let mut one = LlamaTokenDataArray::new(
                vec![LlamaTokenData::new(first, logits[first.0 as usize], 0.0)],
                false,
            );
            one.apply_sampler(g);
            if one.data[0].logit().is_finite() {
                return first;
            }
            let mut all = candidates();
            all.apply_sampler(g);
            choose(all, sampler)
        }
    }
}

fn argmax_slice(logits: &[f32]) -> i32 {
    let mut best = 0usize;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as i32
}

fn argmax(array: &LlamaTokenDataArray) -> LlamaToken {
    array
        .data
        .iter()
        .filter(|d| d.logit().is_finite())
        .max_by(|a, b| a.logit().total_cmp(&b.logit()))
        .map_or(LlamaToken(0), LlamaTokenData::id)
}

/// ln softmax(logits)[token], computed stably.
fn log_softmax_at(logits: &[f32], token: LlamaToken) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|l| (*l as f64 - max).exp()).sum();
    let at = logits
        .get(token.0 as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY) as f64;
    at - max - sum.ln()
}
