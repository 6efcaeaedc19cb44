//! The embedded model (`provider: local`) against a real GGUF model: SmolLM2-135M-Instruct,
//! fetched by `scripts/fetch-local-model.sh`. Required in CI (`BATON_REQUIRE_LOCAL=1`); skipped
//! elsewhere with the reason printed. These tests check mechanics (exact counts, the grammar,
//! probabilities, cancellation, errors), not the tiny model's wisdom.
#![cfg(feature = "local")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{Message, Model, ModelError, ModelRequest, Role, ToolSchema};
use baton_providers::local::{LocalConfig, LocalError, LocalModel};
use serde_json::json;

/// The model file, or `None` (with the reason printed) when it is absent and not required.
fn model_path() -> Option<PathBuf> {
    baton_providers::testing::local_model_or_skip()
}

/// One model per test binary: loading takes a fraction of a second, but there is no need.
fn model() -> Option<Arc<LocalModel>> {
    static MODEL: std::sync::OnceLock<Option<Arc<LocalModel>>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = model_path()?;
            let config = LocalConfig {
                context: 2048,
                instances: 2,
                ..LocalConfig::new(path)
            };
            Some(Arc::new(LocalModel::load("smol", &config).unwrap()))
        })
        .clone()
}

fn request<'a>(
    messages: &'a [Message],
    tools: &'a [ToolSchema],
    max_tokens: u32,
) -> ModelRequest<'a> {
    ModelRequest {
        agent: "a",
        step: 1,
        messages,
        tools,
        tool_tokens: None,
        max_tokens,
        confidence: true,
    }
}

fn chat(system: &str, user: &str) -> Vec<Message> {
    vec![
        Message::new(Role::System, system),
        Message::new(Role::User, user),
    ]
}

#[tokio::test]
async fn a_reply_books_the_exact_prompt_and_reports_cpu_and_confidence() {
    let Some(m) = model() else { return };
    let messages = chat(
        "You are a helpful assistant.",
        "What is the capital of France?",
    );
    let req = request(&messages, &[], 24);
    let estimate = m.estimate_input_tokens(&req);
    let first = m.call(req).await.unwrap();
    assert_eq!(
        first.usage.input, estimate,
        "the reservation is the real prompt length"
    );
    assert!(first.usage.output > 0 && first.usage.output <= 24);
    assert!(!first.estimated);
    assert!(first.cpu > Duration::ZERO, "inference CPU time is measured");
    let c = first.confidence.expect("confidence was asked for");
    assert!(c > 0.0 && c <= 1.0, "{c}");
    assert!(!first.text.as_deref().unwrap_or("").is_empty());
    // Temperature 0: the same prompt gets the same reply.
    let again = m.call(request(&messages, &[], 24)).await.unwrap();
    assert_eq!(again.text, first.text);
    assert_eq!(
        (again.usage.input, again.usage.output),
        (first.usage.input, first.usage.output)
    );
}

/// The prompt a context already holds is not computed again: a task's next step on the same
/// instance decodes only what was added, and says so in `cached_input`.
#[tokio::test]
async fn a_prompt_the_context_holds_is_reused() {
    let Some(path) = model_path() else { return };
    let m = LocalModel::load("one", &LocalConfig::new(path)).unwrap();
    let mut messages = chat("You are a helpful assistant.", "Name a colour.");
    let first = m.call(request(&messages, &[], 8)).await.unwrap();
    assert_eq!(first.usage.cached_input, 0);
    messages.push(Message::new(
        Role::Assistant,
        first.text.clone().unwrap_or_default(),
    ));
    messages.push(Message::new(Role::User, "Another one."));
    let second = m.call(request(&messages, &[], 8)).await.unwrap();
    // Everything up to the first reply (at least the system and user turns) was held.
    assert!(
        second.usage.cached_input >= first.usage.input - 1,
        "{:?} after {:?}",
        second.usage,
        first.usage
    );
    assert!(second.usage.cached_input < second.usage.input);
}

#[tokio::test]
async fn with_tools_the_reply_is_a_valid_call_or_an_answer() {
    let Some(m) = model() else { return };
    let tools = [ToolSchema {
        name: "weather".into(),
        description: "The current weather in a city.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
            "additionalProperties": false
        }),
    }];
    let prompts = [
        "What is the weather in Paris? Call the weather tool.",
        "Use the weather tool for Lisbon.",
        "Say hello.",
    ];
    let mut calls = 0;
    for p in prompts {
        let messages = chat("You are a helpful assistant.", p);
        let r = m.call(request(&messages, &tools, 96)).await.unwrap();
        assert!(!r.truncated, "{p}: {r:?}");
        match r.tool_calls.as_slice() {
            [] => assert!(r.text.is_some(), "{p}: an answer"),
            [call] => {
                calls += 1;
                assert_eq!(call.name, "weather");
                let args = call.arguments.as_object().unwrap();
                assert!(args["city"].is_string(), "{p}: {args:?}");
                assert!(args.keys().all(|k| k == "city" || k == "days"), "{args:?}");
                if let Some(d) = args.get("days") {
                    assert!(d.is_i64() || d.is_u64(), "{d}");
                }
            }
            more => panic!("one call per reply under the grammar, got {more:?}"),
        }
    }
    assert!(calls > 0, "the model called the tool at least once");
}

#[tokio::test]
async fn a_tool_turn_in_the_transcript_is_rendered_and_counted() {
    let Some(m) = model() else { return };
    let tools = [ToolSchema {
        name: "weather".into(),
        description: "The current weather in a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }];
    let call = baton_core::ToolCall {
        id: "call_1".into(),
        name: "weather".into(),
        arguments: json!({"city": "Paris"}),
    };
    let mut messages = chat(
        "You are a helpful assistant.",
        "What is the weather in Paris?",
    );
    messages.push(Message {
        tool_calls: vec![call.clone()],
        ..Message::new(Role::Assistant, "")
    });
    messages.push(Message::tool_result(&call, "18°C and sunny"));
    let req = request(&messages, &tools, 64);
    let prompt = m.prompt(&req).unwrap();
    assert!(
        prompt.contains(r#"{"arguments":{"city":"Paris"},"tool":"weather"}"#)
            || prompt.contains(r#""tool":"weather""#),
        "{prompt}"
    );
    assert!(
        prompt.contains("Result of weather: 18°C and sunny"),
        "{prompt}"
    );
    let estimate = m.estimate_input_tokens(&req);
    let r = m.call(req).await.unwrap();
    assert_eq!(r.usage.input, estimate);
}

#[tokio::test]
async fn a_reply_cut_at_max_tokens_is_marked_truncated() {
    let Some(m) = model() else { return };
    let messages = chat(
        "You are a helpful assistant.",
        "Write a long story about a dragon.",
    );
    let r = m.call(request(&messages, &[], 3)).await.unwrap();
    assert!(r.truncated);
    assert_eq!(r.usage.output, 3);
}

#[tokio::test]
async fn a_dropped_call_stops_generating_and_frees_its_instance() {
    let Some(path) = model_path() else { return };
    let m = LocalModel::load("one", &LocalConfig::new(path)).unwrap();
    let messages = chat(
        "You are a helpful assistant.",
        "Count from 1 to 2000, one number per line.",
    );
    // Dropped by the timeout long before 2,000 tokens.
    let long = tokio::time::timeout(
        Duration::from_millis(300),
        m.call(request(&messages, &[], 2000)),
    )
    .await;
    assert!(long.is_err(), "the long call was still running");
    let before = m.generated_tokens();
    let short = chat("You are a helpful assistant.", "Say yes.");
    let r = m.call(request(&short, &[], 4)).await.unwrap();
    let after = m.generated_tokens();
    // The abandoned generation stopped: the single instance served the next call, and between
    // the two readings only that call's tokens (and at most one of the old) were generated.
    assert!(
        after - before <= r.usage.output + 1,
        "{before} -> {after}, short call {}",
        r.usage.output
    );
    assert!(
        before < 2000,
        "the dropped call stopped early ({before} tokens)"
    );
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let Some(path) = model_path() else { return };
    let m = LocalModel::load(
        "tiny",
        &LocalConfig {
            context: 64,
            ..LocalConfig::new(path)
        },
    )
    .unwrap();
    let long = "word ".repeat(200);
    let messages = chat("You are a helpful assistant.", &long);
    let err = m.call(request(&messages, &[], 8)).await.unwrap_err();
    let said = err.to_string();
    assert!(matches!(err, ModelError::Provider { .. }), "{said}");
    assert!(said.contains("does not fit the context of 64"), "{said}");
}

#[test]
fn bad_model_files_are_named_errors_not_crashes() {
    let dir = std::env::temp_dir().join(format!("baton-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = LocalModel::load("m", &LocalConfig::new(dir.join("nope.gguf"))).unwrap_err();
    assert!(matches!(missing, LocalError::Missing { .. }));
    assert!(
        missing.to_string().contains("scripts/fetch-local-model.sh"),
        "{missing}"
    );

    let text = dir.join("notes.gguf");
    std::fs::write(&text, "not a model").unwrap();
    let e = LocalModel::load("m", &LocalConfig::new(&text)).unwrap_err();
    assert!(matches!(e, LocalError::NotGguf { .. }), "{e}");
    assert!(e.to_string().contains("not a GGUF model file"), "{e}");

    let Some(real) = model_path() else { return };
    // The real file cut short: the header parses, the tensors are missing.
    let bytes = std::fs::read(&real).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..1 << 20]).unwrap();
    let e = LocalModel::load("m", &LocalConfig::new(&cut)).unwrap_err();
    assert!(matches!(e, LocalError::Load { .. }), "{e}");
    assert!(e.to_string().contains("corrupt, truncated"), "{e}");

    let e = LocalModel::load(
        "m",
        &LocalConfig {
            context: 1 << 20,
            ..LocalConfig::new(&real)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("was trained for"), "{e}");
    let e = LocalModel::load(
        "m",
        &LocalConfig {
            temperature: -1.0,
            ..LocalConfig::new(&real)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("temperature"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
