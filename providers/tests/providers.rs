//! The providers against a local server that answers with the providers' documented wire format
//! (fixtures under `fixtures/`): what is sent, what is parsed, and how failures are classified.
//!
//! - `openai`: chat completions, tool calls, streaming, cache tokens, refusals, error bodies.
//! - `anthropic`: messages, tool_use blocks, streaming events, overload and rate-limit errors.
//! - `failures`: a body cut short, truncated JSON, a stream ended early.

use std::time::Duration;

use baton_core::{Message, Model, ModelError, ModelRequest, Role, ToolCall, ToolSchema};
use baton_providers::testing::{FakeServer, Reply};
use baton_providers::{Anthropic, OpenAi, ProviderConfig};
use serde_json::json;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}

fn config(server: &FakeServer, stream: bool, model: &str) -> ProviderConfig {
    ProviderConfig {
        stream,
        connect_timeout: Duration::from_secs(2),
        ..ProviderConfig::new("test-model", model, server.url())
    }
}

fn transcript() -> Vec<Message> {
    vec![
        Message::new(Role::System, "You find root causes."),
        Message::new(Role::User, "p99 doubled at 14:05"),
        Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "query_metrics".into(),
                arguments: json!({"series": "checkout_p99_ms"}),
            }],
            tool_call_id: None,
        },
        Message {
            role: Role::Tool,
            content: "spike at 14:05".into(),
            tool_calls: Vec::new(),
            tool_call_id: Some("call_1".into()),
        },
    ]
}

fn tools() -> Vec<ToolSchema> {
    vec![ToolSchema {
        name: "lookup_owners".into(),
        description: "Owners of a path".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    }]
}

async fn call(model: &impl Model) -> Result<baton_core::ModelResponse, ModelError> {
    call_asking(model, false).await
}

/// [`call`], asking the model for its confidence or not.
async fn call_asking(
    model: &impl Model,
    confidence: bool,
) -> Result<baton_core::ModelResponse, ModelError> {
    let messages = transcript();
    let tools = tools();
    model
        .call(ModelRequest {
            agent: "rca",
            step: 2,
            messages: &messages,
            tools: &tools,
            tool_tokens: None,
            max_tokens: 256,
            confidence,
        })
        .await
}

mod openai {
    use super::*;

    #[tokio::test]
    async fn text_reply_with_cached_tokens_and_the_request_it_sent() {
        let server = FakeServer::start([Reply::json(200, fixture("openai/chat_text.json"))]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(
            r.text.as_deref(),
            Some("The p99 spike follows deploy 4f2a9c1.")
        );
        assert_eq!(
            (r.usage.input, r.usage.output, r.usage.cached_input),
            (1117, 12, 1024)
        );
        let sent = &server.received()[0];
        assert_eq!(sent.request_line, "POST /chat/completions HTTP/1.1");
        let b = sent.json();
        assert_eq!(b["model"], "gpt-4o-mini");
        assert_eq!(b["max_tokens"], 256);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(
            b["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"series\":\"checkout_p99_ms\"}"
        );
        assert_eq!(b["messages"][3]["role"], "tool");
        assert_eq!(b["messages"][3]["tool_call_id"], "call_1");
        assert_eq!(b["tools"][0]["type"], "function");
        assert_eq!(b["tools"][0]["function"]["name"], "lookup_owners");
        assert!(b.get("stream").is_none());
        // Cached tokens are priced at the cached rate ($0.15 in, $0.075 cached, $0.60 out), and
        // OpenAI bills no cache writes.
        let price = baton_core::prices::builtin_price("gpt-4o-mini").expect("known");
        assert_eq!(r.usage.cache_write_input, 0);
        assert_eq!(
            price.cost(&r.usage),
            baton_core::NanoUsd(93 * 150 + 1024 * 75 + 12 * 600)
        );
        assert_eq!(price.cache_saving(&r.usage), 1024 * 75);
    }

    /// Asked for its confidence, the request carries `logprobs: true`, and the reply's token
    /// log-probabilities become the geometric mean probability (exp of the mean: here -0.5).
    #[tokio::test]
    async fn logprobs_become_the_replys_confidence() {
        let server =
            FakeServer::start([Reply::json(200, fixture("openai/chat_logprobs.json"))]).await;
        let m = OpenAi::new(config(&server, false, "llama-3.1-8b-instruct")).expect("client");
        let r = call_asking(&m, true).await.expect("reply");
        let c = r.confidence.expect("a confidence");
        assert!((c - (-0.5f32).exp()).abs() < 1e-4, "{c}");
        assert_eq!(server.received()[0].json()["logprobs"], true);
        // Not asked: not sent, and a reply without logprobs has no confidence.
        let server = FakeServer::start([Reply::json(200, fixture("openai/chat_text.json"))]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.confidence, None);
        assert!(server.received()[0].json().get("logprobs").is_none());
    }

    #[tokio::test]
    async fn tool_call_arguments_are_parsed() {
        let server =
            FakeServer::start([Reply::json(200, fixture("openai/chat_tool_call.json"))]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].name, "query_metrics");
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"series": "checkout_p99_ms"})
        );
        assert_eq!(r.usage.input, 82);
    }

    #[tokio::test]
    async fn streaming_text_and_tool_calls_with_usage_in_the_last_chunk() {
        let server = FakeServer::start([
            Reply::sse(fixture("openai/chat_stream.sse")),
            Reply::sse(fixture("openai/chat_stream_tool_call.sse")),
        ])
        .await;
        let m = OpenAi::new(config(&server, true, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.text.as_deref(), Some("Deploy 4f2a9c1."));
        assert_eq!((r.usage.input, r.usage.output), (40, 4));
        let b = server.received()[0].json();
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        let r = call(&m).await.expect("reply");
        assert_eq!(r.tool_calls[0].name, "lookup_owners");
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"path": "services/checkout/pricing/cache.go"})
        );
        assert_eq!(r.usage.cached_input, 64);
    }

    #[tokio::test]
    async fn refusal_is_its_own_error() {
        let server = FakeServer::start([Reply::json(200, fixture("openai/refusal.json"))]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("refused");
        assert!(matches!(e, ModelError::Refused { .. }), "{e}");
        assert!(!e.retryable());
    }

    #[tokio::test]
    async fn error_bodies_are_classified() {
        let server = FakeServer::start([
            Reply::json(400, fixture("openai/error_400.json")),
            Reply::json(401, fixture("openai/error_401.json")),
            Reply::json(429, fixture("openai/error_429.json")).header("retry-after", "20"),
            Reply::json(500, fixture("openai/error_500.json")),
        ])
        .await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("400");
        assert!(!e.retryable());
        assert!(
            e.to_string()
                .contains("HTTP 400 invalid_request_error: Invalid value for 'max_tokens'"),
            "{e}"
        );
        let e = call(&m).await.expect_err("401");
        assert!(!e.retryable() && e.to_string().contains("HTTP 401"), "{e}");
        let e = call(&m).await.expect_err("429");
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(20)));
        let e = call(&m).await.expect_err("500");
        assert!(
            e.retryable() && e.to_string().contains("server_error"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn tokenizer_estimates_bound_the_billed_prompt() {
        let server = FakeServer::start([]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let messages = transcript();
        let tools = tools();
        let req = ModelRequest {
            agent: "rca",
            step: 2,
            messages: &messages,
            tools: &tools,
            tool_tokens: None,
            max_tokens: 256,
            confidence: false,
        };
        let est = m.estimate_input_tokens(&req);
        // A real tokenizer: far tighter than a bytes-based bound, and still an upper bound of the
        // ~70 tokens OpenAI bills for this prompt.
        assert!((70..140).contains(&est), "{est}");
        assert!(est < baton_core::conservative_input_tokens(&req));
    }
}

mod anthropic {
    use super::*;

    #[tokio::test]
    async fn tool_use_with_cache_usage_and_the_request_it_sent() {
        let server =
            FakeServer::start([Reply::json(200, fixture("anthropic/message_tool_use.json"))]).await;
        let cfg = config(&server, false, "claude-sonnet-4-20250514");
        let m = Anthropic::new(cfg).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(
            r.text.as_deref(),
            Some("I'll look up the owners of that path.")
        );
        assert_eq!(r.tool_calls[0].name, "lookup_owners");
        assert_eq!(r.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        // input counts every prompt token: 472 + 2048 read + 100 written; 2048 of them cached.
        assert_eq!(
            (r.usage.input, r.usage.output, r.usage.cached_input),
            (2620, 91, 2048)
        );
        let sent = &server.received()[0];
        assert_eq!(sent.request_line, "POST /v1/messages HTTP/1.1");
        assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
        let b = sent.json();
        assert_eq!(b["system"], "You find root causes.");
        assert_eq!(b["messages"][0]["role"], "user");
        assert_eq!(b["messages"][1]["role"], "assistant");
        assert_eq!(b["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(b["messages"][2]["role"], "user");
        assert_eq!(b["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(b["messages"][2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    }

    /// `prompt_cache: true`: breakpoints on the tools, the system prompt and the transcript (the
    /// request as Anthropic documents it); the reply's cache reads and writes are booked at
    /// their own prices — reads at a tenth of the input's, writes at 1.25× — to the nano-dollar.
    #[tokio::test]
    async fn prompt_cache_breakpoints_and_cache_write_pricing() {
        let server =
            FakeServer::start([Reply::json(200, fixture("anthropic/message_tool_use.json"))]).await;
        let cfg = ProviderConfig {
            prompt_cache: true,
            ..config(&server, false, "claude-sonnet-4-20250514")
        };
        let m = Anthropic::new(cfg).expect("client");
        let r = call(&m).await.expect("reply");
        let u = r.usage;
        assert_eq!(
            (u.input, u.cached_input, u.cache_write_input, u.output),
            (2620, 2048, 100, 91)
        );
        let b = server.received()[0].json();
        let ephemeral = json!({"type": "ephemeral"});
        assert_eq!(b["system"][0]["type"], "text");
        assert_eq!(b["system"][0]["text"], "You find root causes.");
        assert_eq!(b["system"][0]["cache_control"], ephemeral);
        let tools = b["tools"].as_array().expect("tools");
        assert_eq!(tools.last().expect("a tool")["cache_control"], ephemeral);
        assert!(
            tools[..tools.len() - 1]
                .iter()
                .all(|t| t.get("cache_control").is_none())
        );
        let last = b["messages"]
            .as_array()
            .expect("messages")
            .last()
            .cloned()
            .expect("a message");
        let blocks = last["content"].as_array().expect("blocks");
        assert_eq!(blocks.last().expect("a block")["cache_control"], ephemeral);
        // Four breakpoints at most: three used.
        assert_eq!(b.to_string().matches("cache_control").count(), 3);
        // $3 in, $0.30 cache reads, $3.75 cache writes, $15 out per million tokens.
        let price = baton_core::prices::builtin_price("claude-sonnet-4-20250514").expect("known");
        assert_eq!(
            price.cost(&u),
            baton_core::NanoUsd(472 * 3_000 + 2048 * 300 + 100 * 3_750 + 91 * 15_000)
        );
        assert_eq!(
            price.cache_saving(&u),
            2620 * 3_000 - (472 * 3_000 + 2048 * 300 + 100 * 3_750)
        );
        // The reservation's worst case prices every prompt token at the dearer write rate.
        assert_eq!(
            price.worst_case(2620, 256),
            baton_core::NanoUsd(2620 * 3_750 + 256 * 15_000)
        );
        // Without `prompt_cache`, nothing is marked.
        let server =
            FakeServer::start([Reply::json(200, fixture("anthropic/message_tool_use.json"))]).await;
        let m = Anthropic::new(config(&server, false, "claude-sonnet-4-20250514")).expect("client");
        call(&m).await.expect("reply");
        assert!(!server.received()[0].body.contains("cache_control"));
    }

    #[tokio::test]
    async fn streaming_events() {
        let server = FakeServer::start([Reply::sse(fixture("anthropic/message_stream.sse"))]).await;
        let m = Anthropic::new(config(&server, true, "claude-sonnet-4-20250514")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.text.as_deref(), Some("Checking the owners."));
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"path": "services/checkout/pricing/cache.go"})
        );
        assert_eq!(
            (r.usage.input, r.usage.output, r.usage.cached_input),
            (600, 89, 128)
        );
    }

    #[tokio::test]
    async fn overloaded_and_rate_limited_are_retryable_auth_is_not() {
        let server = FakeServer::start([
            Reply::json(529, fixture("anthropic/error_529.json")),
            Reply::json(429, fixture("anthropic/error_429.json")).header("retry-after", "3"),
            Reply::json(401, fixture("anthropic/error_401.json")),
            Reply::sse(fixture("anthropic/stream_overloaded.sse")),
        ])
        .await;
        let m = Anthropic::new(config(&server, false, "claude-sonnet-4-20250514")).expect("client");
        let e = call(&m).await.expect_err("529");
        assert!(
            e.retryable()
                && e.to_string()
                    .contains("HTTP 529 overloaded_error: Overloaded"),
            "{e}"
        );
        let e = call(&m).await.expect_err("429");
        assert!(
            e.retryable() && e.to_string().contains("rate_limit_error"),
            "{e}"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = call(&m).await.expect_err("401");
        assert!(
            !e.retryable() && e.to_string().contains("authentication_error"),
            "{e}"
        );
        let m = Anthropic::new(config(&server, true, "claude-sonnet-4-20250514")).expect("client");
        let e = call(&m).await.expect_err("overloaded mid-stream");
        assert!(
            e.retryable() && e.to_string().contains("overloaded_error"),
            "{e}"
        );
    }
}

mod failures {
    use super::*;

    #[tokio::test]
    async fn truncated_json_body_names_the_provider_and_the_problem() {
        let full = fixture("openai/chat_text.json");
        let server = FakeServer::start([Reply::json(200, &full[..full.len() / 2])]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("truncated");
        assert!(matches!(e, ModelError::Malformed { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("test-model: malformed reply: the reply is truncated JSON"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn body_cut_short_is_a_retryable_transport_error() {
        let full = fixture("openai/chat_text.json");
        let server = FakeServer::start([Reply::CutShort {
            content_type: "application/json".into(),
            sent: full.len() / 3,
            body: full,
        }])
        .await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("cut short");
        assert!(
            matches!(e, ModelError::Transport { .. }) && e.retryable(),
            "{e}"
        );
    }

    #[tokio::test]
    async fn stream_reset_after_usage_bills_what_was_reported() {
        let sse = fixture("anthropic/message_stream.sse");
        let cut = sse.find("event: content_block_delta").expect("has deltas");
        let server = FakeServer::start([Reply::CutShort {
            content_type: "text/event-stream".into(),
            sent: cut,
            body: sse,
        }])
        .await;
        let m = Anthropic::new(config(&server, true, "claude-sonnet-4-20250514")).expect("client");
        let e = call(&m).await.expect_err("reset mid-stream");
        assert!(e.retryable(), "{e}");
        let billed = e.billed().expect("message_start reported usage");
        assert_eq!(billed.input, 600);
    }

    #[tokio::test]
    async fn nobody_listening_is_a_transport_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let m = OpenAi::new(ProviderConfig {
            connect_timeout: Duration::from_secs(1),
            ..ProviderConfig::new(
                "test-model",
                "gpt-4o-mini",
                format!("http://127.0.0.1:{port}"),
            )
        })
        .expect("client");
        let e = call(&m).await.expect_err("refused");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        assert!(e.retryable());
    }
}

/// OpenAI-compatible servers as they really are (llama.cpp's server, llama-cpp-python, Ollama,
/// vLLM): requests they accept, and replies that carry less than OpenAI's.
mod compatible {
    use super::*;
    use baton_core::{NullContent, ToolChoice};

    fn chunk(delta: &str, finish: Option<&str>) -> String {
        let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    }

    #[tokio::test]
    async fn tools_come_with_tool_choice_auto_tool_turns_with_empty_content_and_logprobs_with_top_logprobs()
     {
        let server = FakeServer::start([
            Reply::json(200, fixture("openai/chat_text.json")),
            Reply::json(200, fixture("openai/chat_text.json")),
            Reply::json(200, fixture("openai/chat_text.json")),
        ])
        .await;
        let m = OpenAi::new(config(&server, false, "smollm2")).expect("client");
        call_asking(&m, true).await.expect("reply");
        let b = server.received()[0].json();
        assert_eq!(b["tool_choice"], "auto", "{b:#}");
        // The assistant turn that only called a tool: `""`, which every server accepts (llama-cpp-
        // python answers `null` with HTTP 500).
        assert_eq!(b["messages"][2]["content"], "", "{b:#}");
        assert_eq!(
            (&b["logprobs"], &b["top_logprobs"]),
            (&json!(true), &json!(1))
        );
        // Per model: `tool_choice: required`, `null_content: null`.
        let m = OpenAi::new(ProviderConfig {
            tool_choice: ToolChoice::Required,
            null_content: NullContent::Null,
            ..config(&server, false, "smollm2")
        })
        .expect("client");
        call(&m).await.expect("reply");
        let b = server.received()[1].json();
        assert_eq!(b["tool_choice"], "required");
        assert!(b["messages"][2]["content"].is_null(), "{b:#}");
        assert!(b.get("logprobs").is_none(), "confidence not asked for");
        // `omit` leaves both fields out.
        let m = OpenAi::new(ProviderConfig {
            tool_choice: ToolChoice::Omit,
            null_content: NullContent::Omit,
            ..config(&server, false, "smollm2")
        })
        .expect("client");
        call(&m).await.expect("reply");
        let b = server.received()[2].json();
        assert!(b.get("tool_choice").is_none(), "{b:#}");
        assert!(b["messages"][2].get("content").is_none(), "{b:#}");
    }

    #[tokio::test]
    async fn a_stream_without_usage_is_kept_and_booked_at_a_conservative_estimate() {
        // llama-cpp-python never sends usage in a stream, even with include_usage.
        let sse = [
            chunk(r#"{"role":"assistant","content":""}"#, None),
            chunk(r#"{"content":"Deploy 4f2a9c1 "}"#, None),
            chunk(r#"{"content":"preceded the spike."}"#, None),
            chunk("{}", Some("stop")),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let server = FakeServer::start([Reply::sse(sse)]).await;
        let m = OpenAi::new(config(&server, true, "smollm2")).expect("client");
        let r = call(&m).await.expect("the reply is kept");
        assert_eq!(
            r.text.as_deref(),
            Some("Deploy 4f2a9c1 preceded the spike.")
        );
        assert!(r.estimated, "marked as an estimate");
        let messages = transcript();
        let tools = tools();
        let reserved = m.estimate_input_tokens(&ModelRequest {
            agent: "rca",
            step: 2,
            messages: &messages,
            tools: &tools,
            tool_tokens: None,
            max_tokens: 256,
            confidence: false,
        });
        assert_eq!(r.usage.input, reserved, "the prompt as reserved");
        // 34 bytes of text at one token per three bytes, rounded up.
        assert_eq!(r.usage.output, 12);
        assert_eq!(
            server.received()[0].json()["stream_options"]["include_usage"],
            true
        );
    }

    #[tokio::test]
    async fn a_reply_cut_at_max_tokens_is_marked_truncated() {
        let mut v: serde_json::Value =
            serde_json::from_str(&fixture("openai/chat_text.json")).expect("json");
        v["choices"][0]["finish_reason"] = json!("length");
        let sse = [
            chunk(r#"{"content":"Deploy 4f2a"}"#, None),
            chunk("{}", Some("length")),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":256}}\n\n"
                .to_string(),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let server = FakeServer::start([Reply::json(200, v.to_string())]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert!(r.truncated && !r.estimated);
        let server = FakeServer::start([Reply::sse(sse)]).await;
        let m = OpenAi::new(config(&server, true, "gpt-4o-mini")).expect("client");
        let r = call(&m).await.expect("reply");
        assert!(r.truncated);
        assert_eq!(r.usage.output, 256);
    }

    #[tokio::test]
    async fn a_malformed_reply_that_reported_usage_is_billed() {
        let body = json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "lookup_owners", "arguments": "{\"path\": \"svc"}}]},
                "finish_reason": "length"}],
            "usage": {"prompt_tokens": 310, "completion_tokens": 520}
        });
        let server = FakeServer::start([Reply::json(200, body.to_string())]).await;
        let m = OpenAi::new(config(&server, false, "smollm2")).expect("client");
        let e = call(&m).await.expect_err("arguments are not JSON");
        assert!(matches!(e, ModelError::Malformed { .. }), "{e}");
        let billed = e.billed().expect("the server reported usage");
        assert_eq!((billed.input, billed.output), (310, 520));
    }
}

/// Replies a hostile or broken server might send: huge bodies, endless lines, echoed keys.
mod hostile {
    use super::*;

    #[tokio::test]
    async fn a_huge_success_body_is_not_read_past_what_max_tokens_allows() {
        // 5 MB of text for a 256-token call.
        let text = "A".repeat(5 << 20);
        let body = json!({"choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let server = FakeServer::start([Reply::json(200, body.to_string())]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("too large");
        assert!(
            matches!(e, ModelError::Malformed { .. })
                && e.to_string().contains("larger than 524288 bytes"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_huge_error_body_is_kept_as_a_short_excerpt() {
        let message = "x".repeat(10 << 20);
        let body = json!({"error": {"type": "server_error", "message": message}});
        let server = FakeServer::start([Reply::json(500, body.to_string())]).await;
        let m = OpenAi::new(config(&server, false, "gpt-4o-mini")).expect("client");
        let e = call(&m).await.expect_err("500");
        // The body was cut at 64 KiB, so it is not JSON: an excerpt of the raw text.
        assert!(e.to_string().len() < 1000, "{} bytes", e.to_string().len());
        assert!(e.retryable());
    }

    #[tokio::test]
    async fn an_endless_stream_line_is_refused_with_what_was_billed() {
        let mut sse = String::from(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":310,\"output_tokens\":1}}}\n\n",
        );
        sse.push_str("data: ");
        sse.push_str(&"y".repeat(3 << 20));
        let server = FakeServer::start([Reply::sse(sse)]).await;
        let m = Anthropic::new(config(&server, true, "claude-sonnet-4-20250514")).expect("client");
        let e = call(&m).await.expect_err("line too long");
        assert!(e.to_string().contains("longer than"), "{e}");
        assert_eq!(e.billed().map(|b| b.input), Some(310));
    }

    #[tokio::test]
    async fn an_error_that_echoes_the_api_key_never_shows_it() {
        let key =
            baton_providers::Secret::from_value("TEST_KEY", "sk-test-echoed-0123456789abcdef");
        let body = json!({"error": {"type": "invalid_request_error",
            "message": "Invalid header Authorization: Bearer sk-test-echoed-0123456789abcdef"}});
        let server = FakeServer::start([
            Reply::json(401, body.to_string()),
            Reply::json(
                401,
                "Authorization: Bearer sk-test-echoed-0123456789abcdef".to_string(),
            ),
        ])
        .await;
        let m = OpenAi::new(ProviderConfig {
            api_key: Some(key.clone()),
            ..config(&server, false, "gpt-4o-mini")
        })
        .expect("client");
        for _ in 0..2 {
            let e = call(&m).await.expect_err("401");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("sk-test-echoed"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        // Anthropic's error stream event, echoing it too.
        let sse = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad x-api-key sk-test-echoed-0123456789abcdef\"}}\n\n";
        let server = FakeServer::start([Reply::sse(sse)]).await;
        let m = Anthropic::new(ProviderConfig {
            api_key: Some(key),
            ..config(&server, true, "claude")
        })
        .expect("client");
        let e = call(&m).await.expect_err("error event");
        assert!(!format!("{e} {e:?}").contains("sk-test-echoed"), "{e}");
    }
}

mod anthropic_usage {
    use super::*;

    #[tokio::test]
    async fn a_gateway_stream_with_input_tokens_in_message_delta_is_billed_in_full() {
        // message_start carries a placeholder 0; the real counts come with message_delta.
        let sse = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":310,\"cache_read_input_tokens\":64,\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ]
        .concat();
        let server = FakeServer::start([
            Reply::sse(sse),
            Reply::sse(fixture("anthropic/message_stream.sse")),
        ])
        .await;
        let m = Anthropic::new(config(&server, true, "claude-sonnet-4-20250514")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(
            (r.usage.input, r.usage.output, r.usage.cached_input),
            (374, 9, 64)
        );
        assert!(!r.estimated);
        // The API's own shape (input in message_start, output in message_delta) still adds up.
        let r = call(&m).await.expect("reply");
        assert_eq!(r.usage.input, 600);
    }
}

/// Replies recorded from a real llama.cpp-family server — llama-cpp-python 0.3.36 serving
/// SmolLM2-135M-Instruct Q4_1 with `--chat_format chatml-function-calling` — replayed through
/// the fake server (`fixtures/llama-cpp-python/requests.json` holds the request of each).
mod llama_cpp_python {
    use super::*;

    fn recorded(name: &str) -> String {
        fixture(&format!("llama-cpp-python/{name}"))
    }

    fn usage_of(name: &str) -> (u64, u64) {
        let v: serde_json::Value = serde_json::from_str(&recorded(name)).expect("json");
        (
            v["usage"]["prompt_tokens"].as_u64().expect("prompt"),
            v["usage"]["completion_tokens"]
                .as_u64()
                .expect("completion"),
        )
    }

    async fn replay(name: &str, confidence: bool) -> baton_core::ModelResponse {
        let server = FakeServer::start([Reply::json(200, recorded(name))]).await;
        let m = OpenAi::new(config(&server, false, "smollm2")).expect("client");
        let r = call_asking(&m, confidence).await.expect(name);
        let (input, output) = usage_of(name);
        assert_eq!(
            (r.usage.input, r.usage.output),
            (input, output),
            "{name}: booked as billed"
        );
        assert!(!r.estimated, "{name}");
        r
    }

    #[tokio::test]
    async fn text_tools_and_tool_turn_replies_parse() {
        let r = replay("chat_text.json", false).await;
        assert!(
            r.text
                .as_deref()
                .is_some_and(|t| t.starts_with("A classic example"))
        );
        // With `tool_choice: "auto"` the server really calls the tool (`content: null`).
        let r = replay("chat_tools_auto.json", false).await;
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].name, "query_metrics");
        assert!(r.tool_calls[0].arguments["series"].is_string());
        assert!(r.text.as_deref().unwrap_or("").is_empty());
        // A transcript with a tool turn (`content: ""`) is accepted and answered.
        let r = replay("chat_tool_turn.json", false).await;
        assert!(!r.tool_calls.is_empty() || r.text.is_some());
        // Without `tool_choice`, the same server drops the tools and answers in prose: why
        // Baton always sends it.
        let r = replay("chat_tools_without_tool_choice.json", false).await;
        assert!(r.tool_calls.is_empty());
    }

    #[tokio::test]
    async fn confidence_is_the_recorded_tokens_geometric_mean_and_never_invented() {
        let v: serde_json::Value =
            serde_json::from_str(&recorded("chat_logprobs.json")).expect("json");
        let lps: Vec<f64> = v["choices"][0]["logprobs"]["content"]
            .as_array()
            .expect("content logprobs")
            .iter()
            .map(|t| t["logprob"].as_f64().expect("logprob"))
            .collect();
        let oracle = (lps.iter().sum::<f64>() / lps.len() as f64).exp() as f32;
        let r = replay("chat_logprobs.json", true).await;
        let c = r.confidence.expect("a confidence");
        assert!((c - oracle).abs() < 1e-4, "{c} vs {oracle}");
        // `logprobs: true` without `top_logprobs`: the server sends `"logprobs": null`; and a
        // tool-call reply carries none. Neither becomes a confidence (the router then follows
        // `on_missing_confidence`).
        assert_eq!(
            replay("chat_logprobs_without_top_logprobs.json", true)
                .await
                .confidence,
            None
        );
        let r = replay("chat_tools_logprobs.json", true).await;
        assert_eq!((r.tool_calls.len(), r.confidence), (1, None));
    }

    #[tokio::test]
    async fn a_reply_cut_at_max_tokens_is_truncated_and_booked() {
        let r = replay("chat_length.json", false).await;
        assert!(r.truncated);
        assert_eq!(r.text.as_deref(), Some("The series checkout_"));
    }

    #[tokio::test]
    async fn a_stream_without_usage_is_kept_booked_at_an_estimate_and_truncated() {
        let sse = recorded("chat_stream.sse");
        let text: String = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        let server = FakeServer::start([Reply::sse(sse)]).await;
        let m = OpenAi::new(config(&server, true, "smollm2")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.text.as_deref(), Some(text.as_str()));
        assert!(r.estimated, "this server never sends usage in a stream");
        assert!(r.usage.input > 0 && r.usage.output > 0);
        assert!(r.truncated, "finish_reason: length");
    }

    /// Some compatible servers send a tool call's arguments as an object and no id (Ollama's
    /// native shape through its OpenAI endpoint, some vLLM tool parsers): the arguments are kept,
    /// and each call gets an id of its own.
    #[tokio::test]
    async fn object_arguments_and_missing_ids_are_understood() {
        let body = json!({
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [
                    {"type": "function", "function": {"name": "query_metrics", "arguments": {"series": "checkout_p99_ms"}}},
                    {"type": "function", "function": {"name": "query_metrics", "arguments": {"series": "search_p99_ms"}}}
                ]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}
        });
        let server = FakeServer::start([Reply::json(200, body.to_string())]).await;
        let m = OpenAi::new(config(&server, false, "llama3.1")).expect("client");
        let r = call(&m).await.expect("reply");
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"series": "checkout_p99_ms"})
        );
        assert_eq!(
            r.tool_calls[1].arguments,
            json!({"series": "search_p99_ms"})
        );
        assert_ne!(r.tool_calls[0].id, r.tool_calls[1].id);
        assert!(!r.tool_calls[0].id.is_empty());
    }

    #[tokio::test]
    async fn null_content_is_answered_with_a_500_and_baton_never_sends_it() {
        let server =
            FakeServer::start([Reply::json(500, recorded("error_500_null_content.json"))]).await;
        let m = OpenAi::new(config(&server, false, "smollm2")).expect("client");
        let e = call(&m).await.expect_err("HTTP 500");
        assert!(matches!(e, ModelError::Http { status: 500, .. }), "{e}");
        assert!(e.to_string().contains("validation errors"), "{e}");
        // What Baton sent: the tool-calling assistant turn with `content: ""`.
        let b = server.received()[0].json();
        assert_eq!(b["messages"][2]["content"], "", "{b:#}");
        assert_eq!(b["tool_choice"], "auto");
    }
}
