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
