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
