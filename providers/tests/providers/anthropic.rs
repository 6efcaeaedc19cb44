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
