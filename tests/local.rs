//! The local-first example (`examples/topologies/local-first.yaml`) through the CLI, on the real
//! embedded model (SmolLM2-135M-Instruct, fetched by `scripts/fetch-local-model.sh`). Required in
//! CI (`BATON_REQUIRE_LOCAL=1`), skipped elsewhere with the reason printed. The tests assert
//! mechanics, not the tiny model's wisdom: the local model really generated (tokens and CPU
//! time), every reply parsed under the grammar, confidence was computed and a forced low
//! confidence escalated, and a sensitive observation kept the task local.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The model file, or `None` (with the reason printed) when it is absent and not required.
fn model_path() -> Option<PathBuf> {
    baton_providers::testing::local_model_or_skip()
}

/// The example, with the model path, its rules and fixtures made absolute and `edit` applied, in
/// a folder of its own.
fn example(name: &str, model: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let text = std::fs::read_to_string(dir.join("local-first.yaml")).unwrap();
    let text = text
        .replace(
            "path: ~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            &format!("path: {}", model.display()),
        )
        .replace(
            "path: fixtures/",
            &format!("path: {}/fixtures/", dir.display()),
        )
        .replace(
            "rules: local-first.rules.yaml",
            &format!("rules: {}/local-first.rules.yaml", dir.display()),
        );
    let out = std::env::temp_dir().join(format!("baton-local-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("local-first.yaml");
    std::fs::write(&file, edit(text)).unwrap();
    file
}

/// Runs one task of the topology; returns its JSON report and its audit trail's events.
fn run(topology: &Path, task: &str) -> (Value, Vec<Value>) {
    let audit = topology.with_file_name("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            topology.to_str().unwrap(),
            "--task",
            task,
            "--json",
            "--audit",
        ])
        .arg(&audit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let events = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, events)
}

fn model<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
}

/// Every record of kind `kind` in the audit trail (`model_call`, `escalation`, `tool_call`).
fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn the_local_rung_generates_under_the_grammar_and_reports_its_cpu() {
    let Some(m) = model_path() else { return };
    let topology = example("plain", &m, |t| t);
    let (report, audit) = run(
        &topology,
        r#"Call query_metrics with {"series": "search_p99_ms"}, then answer quiet or incident."#,
    );
    let smol = model(&report, "smol").expect("the local model was called");
    assert!(smol["calls"].as_u64().unwrap() >= 1);
    assert!(smol["tokens_out"].as_u64().unwrap() > 0, "it generated");
    assert_eq!(smol["cost_nanousd"], 0, "nothing metered");
    // Every reply parsed under the grammar: no model call failed.
    assert_eq!(report["totals"]["model_errors"], 0, "{report:#}");
    let steps = events(&audit, "model_call");
    let local: Vec<_> = steps.iter().filter(|e| e["model"] == "smol").collect();
    assert!(!local.is_empty(), "{audit:#?}");
    for s in &local {
        assert!(
            s["cpu_ms"].as_f64().is_some_and(|c| c > 0.0),
            "CPU time measured: {s}"
        );
        assert!(s["tokens_in"].as_u64().unwrap() > 0);
    }
    // Exactly one outcome, whatever it was.
    assert!(report["outcome"].is_string(), "{report:#}");
}

#[test]
fn a_forced_low_confidence_goes_to_the_frontier_rung() {
    let Some(m) = model_path() else { return };
    // No answer of a 135M model is 100% sure: every one is set aside.
    let topology = example("unsure", &m, |t| {
        t.replace("min_confidence: 50", "min_confidence: 100")
    });
    let (report, audit) = run(
        &topology,
        r#"Call query_metrics with {"series": "search_p99_ms"}, then answer quiet or incident."#,
    );
    let escalated = events(&audit, "escalation");
    assert!(!escalated.is_empty(), "{audit:#?}");
    for e in &escalated {
        assert_eq!(e["model"], "smol");
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("low confidence "),
            "confidence was computed: {reason}"
        );
        assert!(reason.ends_with("< 100%"), "{reason}");
    }
    assert_eq!(report["outcome"], "completed", "{report:#}");
    assert_eq!(
        report["answer"], "quiet: baseline 124 ms, no spike.",
        "the frontier rung answered from the series"
    );
    let frontier = model(&report, "frontier").unwrap();
    assert!(frontier["cost_nanousd"].as_u64().unwrap() > 0);
    assert_eq!(
        report["totals"]["saved_vs_top_rung_nanousd"], 0,
        "set-aside local answers save nothing"
    );
}

#[test]
fn a_sensitive_series_keeps_the_task_on_the_local_model() {
    let Some(m) = model_path() else { return };
    // The frontier rung reads the series (every local answer is set aside until then); from then
    // on the transcript holds sensitive data and only the local model may answer.
    let topology = example("private", &m, |t| {
        t.replace("min_confidence: 50", "min_confidence: 100")
            .replace(
                "  query_metrics:\n    kind: metrics_series\n",
                "  query_metrics:\n    kind: metrics_series\n    sensitive: true\n",
            )
    });
    let (report, audit) = run(
        &topology,
        r#"Call query_metrics with {"series": "checkout_p99_ms"}, then answer quiet or incident."#,
    );
    let steps = events(&audit, "model_call");
    let tool_calls = events(&audit, "tool_call");
    let first_read = tool_calls
        .iter()
        .position(|c| c["tool"] == "query_metrics")
        .expect("the series was read");
    let read_at = audit
        .iter()
        .position(|e| std::ptr::eq(e, tool_calls[first_read]))
        .unwrap();
    let after: Vec<_> = audit[read_at..]
        .iter()
        .filter(|e| e["kind"] == "model_call")
        .collect();
    assert!(!after.is_empty(), "{audit:#?}");
    for s in &after {
        assert_eq!(s["model"], "smol", "after the sensitive read: {s}");
    }
    assert!(
        steps.iter().all(|s| s["agent"] == "watch"),
        "triage (hosted only) never ran a step"
    );
    assert!(
        report["totals"]["private_steps"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
}
