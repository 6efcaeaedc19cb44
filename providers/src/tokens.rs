//! Token estimates before a call, for the ledger's reservation. They must be upper bounds.
//!
//! OpenAI models use their real tokenizer (tiktoken's `o200k_base` or `cl100k_base`, shipped
//! offline by tiktoken-rs) plus the documented framing (4 tokens per message, 3 to prime the
//! reply), with a 10% + 16 token margin for tool schemas, whose formatting is not documented.
//! Other models get [`baton_core::conservative_input_tokens`].

use std::sync::OnceLock;

use baton_core::ModelRequest;
use tiktoken_rs::CoreBPE;

fn o200k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// The tokenizer of an OpenAI model, if we know it.
pub(crate) fn openai_tokenizer(model: &str) -> Option<&'static CoreBPE> {
    let m = model.to_ascii_lowercase();
    if [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ]
    .iter()
    .any(|p| m.starts_with(p))
    {
        o200k()
    } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        cl100k()
    } else {
        None
    }
}

/// Loads `model`'s tokenizer (if Baton knows it) on a thread of its own, so that the first call
/// does not pay for it.
pub(crate) fn warm_up(model: &str) {
    let model = model.to_string();
    std::thread::spawn(move || openai_tokenizer(&model));
}

/// A conservative count of the completion tokens of `reply` (its text and tool calls), for a
/// server that reported none: `model`'s tokenizer when known, else one token per three bytes.
pub(crate) fn output_tokens(model: &str, reply: &baton_core::ModelResponse) -> u64 {
    let mut parts: Vec<String> = reply.text.iter().cloned().collect();
    for c in &reply.tool_calls {
        parts.push(c.name.clone());
        parts.push(c.arguments.to_string());
    }
    let framing = 4 * reply.tool_calls.len() as u64;
    match openai_tokenizer(model) {
        Some(bpe) => {
            framing
                + parts
                    .iter()
                    .map(|p| bpe.encode_ordinary(p).len() as u64)
                    .sum::<u64>()
        }
        None => {
            framing
                + parts
                    .iter()
                    .map(|p| (p.len() as u64).div_ceil(3))
                    .sum::<u64>()
        }
    }
}

/// An upper bound on the prompt tokens of `request` for a model using `bpe`.
pub(crate) fn estimate_with(bpe: &CoreBPE, request: &ModelRequest<'_>) -> u64 {
    let count = |s: &str| bpe.encode_ordinary(s).len() as u64;
    let mut n: u64 = 3;
    for m in request.messages {
        n += 4 + count(&m.content);
        for c in &m.tool_calls {
            n += 4 + count(&c.name) + count(&c.arguments.to_string());
        }
    }
    let tools = match request.tool_tokens {
        // Counted once by the caller with this estimator (its share of `n + n / 10`, plus one
        // for the rounding the split may lose).
        Some(t) => t + 1,
        None => {
            let mut t = 0;
            for s in request.tools {
                t += 8 + count(&s.name) + count(&s.description) + count(&s.parameters.to_string());
            }
            t + t / 10
        }
    };
    n + n / 10 + tools + 16
}
