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
    let server = FakeServer::start([Reply::json(200, fixture("openai/chat_logprobs.json"))]).await;
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
    let server = FakeServer::start([Reply::json(200, fixture("openai/chat_tool_call.json"))]).await;
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
