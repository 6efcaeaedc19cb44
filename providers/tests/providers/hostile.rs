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
    let key = baton_providers::Secret::from_value("TEST_KEY", "sk-test-echoed-0123456789abcdef");
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
