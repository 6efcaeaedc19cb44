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
    let v: serde_json::Value = serde_json::from_str(&recorded("chat_logprobs.json")).expect("json");
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
