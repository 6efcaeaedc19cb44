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
