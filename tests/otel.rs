//! `--features otel`: a run's spans reach an OTLP/HTTP collector (here a loopback receiver that
//! decodes the protobuf), named with the GenAI semantic conventions, and their token counts add up
//! to the run's report.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use serde_json::Value;

/// Accepts OTLP/HTTP exports (`POST /v1/traces`, protobuf) and keeps the decoded requests.
fn receiver() -> (u16, Arc<Mutex<Vec<ExportTraceServiceRequest>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || {
                let mut w = stream.try_clone().expect("clone");
                let mut r = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).map_or(true, |n| n == 0) {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).map_or(true, |n| n == 0) {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    if line.starts_with("POST /v1/traces") {
                        let req = ExportTraceServiceRequest::decode(body.as_slice())
                            .expect("an OTLP protobuf export");
                        keep.lock().expect("lock").push(req);
                    }
                    let _ = w.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (port, got)
}

#[test]
fn spans_reach_an_otlp_collector_with_genai_attributes() {
    let (port, got) = receiver();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            "examples/topologies/ops-triage.yaml",
            "--task",
            "p99 latency of checkout doubled at 14:05",
            "--json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("OTEL_SERVICE_NAME", "baton-test")
        .output()
        .expect("baton runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");

    let exports = got.lock().expect("lock");
    assert!(!exports.is_empty(), "the spans were exported before exit");
    let mut names: Vec<String> = Vec::new();
    let (mut input, mut output, mut cost) = (0i64, 0i64, 0i64);
    let mut services = Vec::new();
    for export in exports.iter() {
        for rs in &export.resource_spans {
            for a in rs.resource.iter().flat_map(|r| &r.attributes) {
                if a.key == "service.name"
                    && let Some(Any::StringValue(s)) =
                        a.value.as_ref().and_then(|v| v.value.clone())
                {
                    services.push(s);
                }
            }
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                names.push(span.name.clone());
                let attrs: HashMap<&str, Option<Any>> = span
                    .attributes
                    .iter()
                    .map(|a| {
                        (
                            a.key.as_str(),
                            a.value.as_ref().and_then(|v| v.value.clone()),
                        )
                    })
                    .collect();
                let int = |k: &str| match attrs.get(k) {
                    Some(Some(Any::IntValue(n))) => *n,
                    _ => 0,
                };
                if span.name.starts_with("chat ") {
                    assert_eq!(
                        attrs.get("gen_ai.operation.name"),
                        Some(&Some(Any::StringValue("chat".into())))
                    );
                    assert!(attrs.contains_key("gen_ai.request.model"), "{attrs:?}");
                    input += int("gen_ai.usage.input_tokens");
                    output += int("gen_ai.usage.output_tokens");
                    cost += int("baton.cost_nanousd");
                }
            }
        }
    }
    assert!(services.iter().all(|s| s == "baton-test"), "{services:?}");
    for expected in [
        "invoke_agent triage",
        "invoke_agent rca",
        "invoke_agent paging",
        "chat frontier",
        "chat small",
        "execute_tool delegate",
        "execute_tool restart_service",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let totals = &report["totals"];
    assert_eq!(
        (input, output, cost),
        (
            totals["tokens_in"].as_i64().expect("tokens_in"),
            totals["tokens_out"].as_i64().expect("tokens_out"),
            totals["cost_nanousd"].as_i64().expect("cost"),
        ),
        "the chat spans add up to the report"
    );
}
