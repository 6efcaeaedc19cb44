//! Baton against a local server speaking the providers' real wire formats (the fixtures in
//! `providers/tests/fixtures/`): for each case, what Baton did — retried or not, how long it
//! waited, what it booked, what the agent saw.

use std::path::Path;
use std::time::{Duration, Instant};

use baton::actors::{RunReport, Runtime};
use baton::core::Budget;
use baton::topologies::Topology;
use baton_providers::testing::{FakeServer, Reply};
use serde_json::Value;

fn fixture(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers/tests/fixtures");
    std::fs::read_to_string(root.join(path)).expect("fixture exists")
}

/// One agent on one HTTP model (and, when `fallback` is set, a scripted second rung).
fn topology(provider: &str, server: &FakeServer, budget: &str, fallback: bool) -> Topology {
    // A file of its own per topology: tests run at once, and one writing the file while another
    // reads it would hand the reader an empty file.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rules = std::env::temp_dir().join(format!(
        "baton-steady-{}-{n}.rules.yaml",
        std::process::id()
    ));
    std::fs::write(
        &rules,
        "rules:\n  - reply: { text: \"answered by steady\" }\n",
    )
    .expect("write rules");
    let ladder = if fallback {
        "[remote, steady]"
    } else {
        "[remote]"
    };
    let yaml = format!(
        "models:\n  remote:\n    provider: {provider}\n    model: {}\n    endpoint: {}\n    retry: {{ base_delay: 20ms, max_delay: 200ms }}\n  steady:\n    provider: scripted\n    rules: {}\n    price: {{ input: 3, output: 15 }}\nagents:\n  assistant:\n    models: {ladder}\n    budget: {budget}\n",
        if provider == "openai" {
            "gpt-4o-mini"
        } else {
            "claude-sonnet-4-20250514"
        },
        server.url(),
        rules.display(),
    );
    Topology::from_yaml_str(&yaml, Path::new("test.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

async fn run(t: Topology) -> (RunReport, Duration) {
    let rt = Runtime::builder(t).start().await.expect("starts");
    let started = Instant::now();
    let raw = rt
        .submit("Which deploy preceded the spike?", Budget::UNLIMITED)
        .await
        .expect("runs");
    let took = started.elapsed();
    raw.account.check_conservation().expect("conservation");
    let report = RunReport::from_ledger(
        &raw.account.snapshot(),
        raw.result.outcome,
        Some(raw.result.text),
        None,
    );
    rt.shutdown().await;
    (report, took)
}

const ANSWER: &str = "{max_steps: 1}";

#[tokio::test]
async fn success_is_booked_at_the_built_in_price() {
    let server = FakeServer::start([Reply::json(200, fixture("openai/chat_text.json"))]).await;
    let (r, _) = run(topology("openai", &server, ANSWER, false)).await;
    assert_eq!(r.outcome.as_str(), "completed");
    assert_eq!(
        r.answer.as_deref(),
        Some("The p99 spike follows deploy 4f2a9c1.")
    );
    // gpt-4o-mini: $0.15 in, $0.60 out, $0.075 cached per million; 1117 in (1024 cached), 12 out.
    let expected = (93 * 150 + 1024 * 75 + 12 * 600) as u64; // micro-dollars per million = nanos
    assert_eq!(r.totals.cost_nanousd, expected);
    assert_eq!((r.totals.tokens_in, r.totals.tokens_cached), (1117, 1024));
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let server = FakeServer::start([
        Reply::json(429, fixture("openai/error_429.json")).header("retry-after", "1"),
        Reply::json(200, fixture("openai/chat_text.json")),
    ])
    .await;
    let (r, took) = run(topology("openai", &server, ANSWER, false)).await;
    assert_eq!(r.outcome.as_str(), "completed");
    let got = server.received();
    assert_eq!(got.len(), 2, "one retry");
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(990),
        "waited {waited:?}, Retry-After said 1s"
    );
    assert!(took < Duration::from_secs(5));
    assert_eq!(r.totals.model_errors, 1);
    assert_eq!(r.totals.model_calls, 1, "the failed attempt was not billed");
}

#[tokio::test]
async fn server_errors_back_off_exponentially_then_succeed() {
    let server = FakeServer::start([
        Reply::json(500, fixture("openai/error_500.json")),
        Reply::json(503, fixture("openai/error_500.json")),
        Reply::json(200, fixture("openai/chat_text.json")),
    ])
    .await;
    let (r, _) = run(topology("openai", &server, ANSWER, false)).await;
    assert_eq!(r.outcome.as_str(), "completed");
    let got = server.received();
    assert_eq!(got.len(), 3);
    let (w1, w2) = (got[1].at - got[0].at, got[2].at - got[1].at);
    // base 20ms with equal jitter: [10, 20] then [20, 40] (plus scheduling).
    assert!(
        w1 >= Duration::from_millis(10) && w1 < Duration::from_millis(150),
        "{w1:?}"
    );
    assert!(
        w2 >= Duration::from_millis(20) && w2 < Duration::from_millis(200),
        "{w2:?}"
    );
}

/// Retries give up after `max_attempts` (3 by default): a server failing every time gets
/// exactly three requests, then the step escalates to the next model on the ladder; no
/// failed attempt is billed.
#[tokio::test]
async fn retries_give_up_after_three_attempts_and_escalate() {
    let server = FakeServer::start([
        Reply::json(503, fixture("openai/error_500.json")),
        Reply::json(503, fixture("openai/error_500.json")),
        Reply::json(503, fixture("openai/error_500.json")),
        Reply::json(200, fixture("openai/chat_text.json")),
    ])
    .await;
    let (r, _) = run(topology("openai", &server, "{max_steps: 4}", true)).await;
    assert_eq!(server.received().len(), 3, "three attempts, no fourth");
    assert_eq!(r.answer.as_deref(), Some("answered by steady"));
    let remote = r
        .models
        .iter()
        .find(|m| m.name == "remote")
        .map_or((0, 0), |m| (m.calls, m.cost_nanousd));
    assert_eq!(remote, (0, 0), "nothing billed for the remote model");
    assert_eq!(r.totals.model_errors, 3, "each failed attempt is counted");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_escalate() {
    let server = FakeServer::start([Reply::json(400, fixture("openai/error_400.json"))]).await;
    let (r, _) = run(topology("openai", &server, "{max_steps: 4}", true)).await;
    assert_eq!(server.received().len(), 1, "a 400 is not retried");
    // The scripted second rung answered the step the remote model could not.
    assert_eq!(r.answer.as_deref(), Some("answered by steady"));
    assert_eq!((r.totals.model_errors, r.totals.model_calls), (1, 1));
    let (r, _) = {
        let server = FakeServer::start([Reply::json(401, fixture("openai/error_401.json"))]).await;
        run(topology("openai", &server, ANSWER, false)).await
    };
    assert_eq!(r.outcome.as_str(), "failed");
    assert!(
        r.answer
            .as_deref()
            .unwrap_or("")
            .contains("HTTP 401 invalid_request_error"),
        "{:?}",
        r.answer
    );
}

#[tokio::test]
async fn anthropic_overload_is_retried() {
    let server = FakeServer::start([
        Reply::json(529, fixture("anthropic/error_529.json")),
        Reply::json(200, fixture("anthropic/message_text.json")),
    ])
    .await;
    let (r, _) = run(topology("anthropic", &server, ANSWER, false)).await;
    assert_eq!(r.outcome.as_str(), "completed");
    assert_eq!(
        r.answer.as_deref(),
        Some("Page @bob, the payments-team primary.")
    );
    assert_eq!(server.received().len(), 2);
    // claude-sonnet-4: $3 in, $15 out per million: 610 in, 14 out.
    assert_eq!(r.totals.cost_nanousd, 610 * 3000 + 14 * 15_000);
}

#[tokio::test]
async fn a_retry_the_budget_cannot_pay_for_is_not_made() {
    // The stream dies after message_start reported 600 prompt tokens: they are billed and booked.
    let sse = fixture("anthropic/message_stream.sse");
    let cut = sse.find("event: content_block_delta").expect("deltas");
    let server = FakeServer::start([
        Reply::CutShort {
            content_type: "text/event-stream".into(),
            body: sse.clone(),
            sent: cut,
        },
        Reply::sse(sse),
    ])
    .await;
    // One call's worst case is (a ~27-token prompt + 1024 out) at $3/$15: $0.01544. A budget of
    // $0.0165 covers the first attempt, but not a second once the first was billed $0.00145.
    let mut t = topology(
        "anthropic",
        &server,
        "{max_usd: 0.0165, max_steps: 3}",
        false,
    );
    let mut spec = t.spec().clone();
    spec.models.get_mut("remote").expect("remote").stream = Some(true);
    t = Topology::from_spec(spec, Path::new(".")).expect("valid");
    let (r, _) = run(t).await;
    assert_eq!(server.received().len(), 1, "the retry was not made");
    assert_eq!(r.outcome.as_str(), "budget_exceeded");
    // message_start reported 600 prompt tokens (128 of them cache reads, at $0.30 per million)
    // and 2 output tokens: that is what was billed, and booked.
    assert_eq!(
        r.totals.cost_nanousd,
        472 * 3000 + 128 * 300 + 2 * 15_000,
        "the billed usage was booked"
    );
    assert_eq!(r.totals.model_errors, 1);
}

#[tokio::test]
async fn retry_after_past_the_deadline_is_not_waited_for() {
    let server = FakeServer::start([
        Reply::json(429, fixture("openai/error_429.json")).header("retry-after", "30")
    ])
    .await;
    let (r, took) = run(topology("openai", &server, "{max_wall: 2s}", false)).await;
    assert_eq!(server.received().len(), 1);
    assert!(
        took < Duration::from_secs(2),
        "gave up at once, took {took:?}"
    );
    assert_eq!(r.outcome.as_str(), "failed");
    assert!(
        r.answer
            .as_deref()
            .unwrap_or("")
            .contains("not retried: the task's deadline comes first"),
        "{:?}",
        r.answer
    );
}

#[tokio::test]
async fn truncated_json_escalates_to_the_next_model() {
    let body = fixture("openai/chat_text.json");
    let server = FakeServer::start([Reply::json(200, &body[..body.len() / 2])]).await;
    let (r, _) = run(topology("openai", &server, "{max_steps: 4}", true)).await;
    assert_eq!(
        server.received().len(),
        1,
        "malformed replies are not retried"
    );
    assert_eq!(r.answer.as_deref(), Some("answered by steady"));
    assert_eq!(r.totals.model_errors, 1);
}

/// Secrets: read from the environment by reference, sent as the provider expects, and nowhere in
/// the report or the logs — checked through the CLI, as a user runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_sent_and_never_shown() {
    let server = FakeServer::start([Reply::json(401, fixture("openai/error_401.json"))]).await;
    let dir = std::env::temp_dir().join(format!("baton-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "models:\n  remote:\n    provider: openai\n    model: gpt-4o-mini\n    endpoint: {}\n    api_key: ${{BATON_TEST_OPENAI_KEY}}\nagents:\n  a:\n    models: [remote]\n",
            server.url()
        ),
    )
    .expect("write");
    let secret = "sk-baton-test-4e1f0c2d9b";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            file.to_str().expect("utf-8"),
            "--task",
            "x",
            "--json",
        ])
        .env("BATON_TEST_OPENAI_KEY", secret)
        .env("RUST_LOG", "debug")
        .output()
        .expect("runs");
    let got = server.received();
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the key leaked:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["outcome"], "failed");
    // Unset: the runtime refuses to start, naming the variable only.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", file.to_str().expect("utf-8"), "--task", "x"])
        .env_remove("BATON_TEST_OPENAI_KEY")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("environment variable `BATON_TEST_OPENAI_KEY` is not set")
    );
}

/// The router example with its frontier model served over HTTP: the step the local model cannot
/// do goes to the frontier, the rest stays local, and the report says where each went and what
/// routing saved against using the frontier model for every step.
#[tokio::test]
async fn router_sends_one_step_to_the_http_frontier() {
    let server = FakeServer::start([Reply::json(200, fixture("openai/chat_tool_call.json"))]).await;
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let yaml = format!(
        "models:\n  local:\n    provider: scripted\n    rules: {rules}\n    tier: local\n    quality: 60\n    price: {{ input: 0, output: 0 }}\n  frontier:\n    provider: openai\n    model: gpt-4o\n    endpoint: {url}\n    tier: frontier\ntools:\n  query_metrics: {{ kind: metrics_series, path: {ex}/fixtures/metrics }}\n  deploys: {{ kind: log_search, path: {ex}/fixtures/deploys.log }}\nagents:\n  assistant:\n    models: [local, frontier]\n    tools: [query_metrics, deploys]\n    budget: {{ max_usd: 0.05, max_steps: 6 }}\n",
        rules = ex.join("router.rules.yaml").display(),
        url = server.url(),
        ex = ex.display(),
    );
    let t = Topology::from_yaml_str(&yaml, Path::new("router.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let (r, _) = run(t).await;
    assert_eq!(r.outcome.as_str(), "completed", "{:?}", r.answer);
    assert_eq!(
        r.answer.as_deref(),
        Some("Deploy 4f2a9c1 of checkout-api at 13:58 preceded the spike.")
    );
    let calls: Vec<(&str, u64)> = r
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.calls))
        .collect();
    assert!(
        calls.contains(&("frontier", 1)) && calls.contains(&("local", 2)),
        "{calls:?}"
    );
    // gpt-4o from the built-in table: 82 in, 17 out at $2.50 / $10 per million.
    let frontier = r
        .models
        .iter()
        .find(|m| m.name == "frontier")
        .expect("frontier");
    assert_eq!(frontier.cost_nanousd, 82 * 2500 + 17 * 10_000);
    assert_eq!(
        r.totals.cost_nanousd, frontier.cost_nanousd,
        "local steps are free"
    );
    assert!(
        r.totals.saved_vs_top_rung_nanousd > 0,
        "the local steps would have cost money on the frontier"
    );
}

/// A local-tier ladder against the replies of a real llama.cpp-family server (llama-cpp-python
/// 0.3.36 on SmolLM2-135M, recorded in `providers/tests/fixtures/llama-cpp-python/`): the tool
/// call it makes carries no probabilities and its text answer is 9% sure, so with
/// `min_confidence: 50` both are set aside — booked as billed (at its price, 0) — and the
/// scripted rung answers; nothing counts as saved.
#[tokio::test]
async fn a_local_server_ladder_with_min_confidence_on_recorded_replies() {
    // A tool call without probabilities; a text answer whose tokens' geometric mean is 9%.
    for reply in ["chat_tools_logprobs.json", "chat_logprobs.json"] {
        let recorded = fixture(&format!("llama-cpp-python/{reply}"));
        let billed: Value = serde_json::from_str(&recorded).expect("json");
        let server = FakeServer::start([Reply::json(200, recorded.clone())]).await;
        let rules = std::env::temp_dir().join(format!(
            "baton-local-ladder-{}.rules.yaml",
            std::process::id()
        ));
        std::fs::write(
            &rules,
            "rules:\n  - reply: { text: \"answered by steady\" }\n",
        )
        .expect("write rules");
        let metrics =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies/fixtures/metrics");
        let yaml = format!(
            "models:\n  smol:\n    provider: openai\n    model: smollm2\n    endpoint: {}\n    tier: local\n    price: {{ input: 0, output: 0 }}\n  steady:\n    provider: scripted\n    rules: {}\n    price: {{ input: 3, output: 15 }}\ntools:\n  query_metrics: {{ kind: metrics_series, path: {} }}\nagents:\n  assistant:\n    models: [smol, steady]\n    tools: [query_metrics]\n    min_confidence: 50\n    budget: {{ max_steps: 3 }}\n",
            server.url(),
            rules.display(),
            metrics.display(),
        );
        let t = Topology::from_yaml_str(&yaml, Path::new("test.yaml"), Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let (r, _) = run(t).await;
        assert_eq!(r.outcome.as_str(), "completed", "{reply}");
        assert_eq!(r.answer.as_deref(), Some("answered by steady"), "{reply}");
        let smol = r
            .models
            .iter()
            .find(|m| m.name == "smol")
            .expect("smol was called");
        assert_eq!(
            (smol.calls, smol.tokens_in, smol.tokens_out),
            (
                1,
                billed["usage"]["prompt_tokens"].as_u64().expect("prompt"),
                billed["usage"]["completion_tokens"]
                    .as_u64()
                    .expect("completion")
            ),
            "{reply}: the set-aside reply is booked as billed"
        );
        assert_eq!(
            r.totals.saved_vs_top_rung_nanousd, 0,
            "{reply}: the scripted rung answered"
        );
        let sent = server.received()[0].json();
        assert_eq!(sent["tool_choice"], "auto");
        assert_eq!(
            (&sent["logprobs"], &sent["top_logprobs"]),
            (&Value::Bool(true), &Value::from(1))
        );
    }
}
