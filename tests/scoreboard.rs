//! The tokenomics scoreboard through the CLI (`docs/tokenomics.md`): value and ROI to the
//! nano-dollar, energy against EcoLogits' formula, re-sent tokens on a known transcript, and
//! compaction on the investigation example.

use std::process::Command;

use baton_core::ModelSize;
use baton_core::hosted_joules;
use serde_json::Value;

mod common;
use common::{example, temp_file, temp_path};

const TASK: &str = "Why is checkout slow?";

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Runs a topology file with `--json` and an audit trail: the report, and the trail's records.
fn run(topology: &std::path::Path, audit: &str) -> (Value, Vec<Value>) {
    let trail = temp_path(audit);
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            topology.to_str().expect("utf-8"),
            "--task",
            TASK,
            "--json",
            "--audit",
            trail.to_str().expect("utf-8"),
        ])
        .output()
        .expect("baton runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    let records = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON record"))
        .collect();
    (report, records)
}

fn model_calls(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "model_call")
        .collect()
}

/// Without compaction: every figure of the scoreboard recomputed from the audit trail (the calls
/// as they happened) and the topology's declarations.
#[test]
fn value_roi_energy_and_resent_tokens_agree_with_the_calls() {
    let file = temp_file(
        "investigation-plain.yaml",
        &example(
            "investigation.yaml",
            &[(
                "    context: { compact_over_tokens: 1500, compactor: summariser, keep_last: 2 }\n",
                "",
            )],
        ),
    );
    let (r, records) = run(&file, "plain.audit.jsonl");
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let calls = model_calls(&records);
    assert_eq!(calls.len(), 20, "twenty steps, one call each");
    let b = &r["scoreboard"];
    // Value: the answer names 4f2a9c1, so `on_answer_matching` credits $0.50, exactly.
    assert!(r["answer"].as_str().expect("answer").contains("4f2a9c1"));
    assert_eq!(u(&b["value_nanousd"]), 500_000_000);
    assert_eq!(u(&r["totals"]["value_nanousd"]), 500_000_000);
    // Cost: $3 / $15 per million tokens, from the trail.
    let cost: u64 = calls
        .iter()
        .map(|c| u(&c["tokens_in"]) * 3_000 + u(&c["tokens_out"]) * 15_000)
        .sum();
    assert_eq!(u(&r["totals"]["cost_nanousd"]), cost);
    assert_eq!(u(&b["cost_per_completed_workflow_nanousd"]), cost);
    let roi = b["roi"].as_f64().expect("roi");
    assert!((roi - 500_000_000.0 / cost as f64).abs() < 1e-12, "{roi}");
    // Energy of the model calls: EcoLogits' formula for a 70 B dense model, per call, to the
    // micro-joule; the step records carry the same figure.
    let size = ModelSize {
        active_b: 70.0,
        total_b: 70.0,
    };
    let mut model_uj = 0;
    for c in &calls {
        let want = (hosted_joules(size, u(&c["tokens_out"]), 1.2) * 1e6).round() as u64;
        assert_eq!(u(&c["energy_uj"]), want);
        assert_eq!(c["energy_method"], "estimated");
        model_uj += want;
    }
    assert_eq!(u(&b["sums"]["energy_model_uj"]), model_uj);
    // Tools: their measured CPU time × the declared 10 W a core (estimated, not measured).
    let total_uj = u(&b["sums"]["energy_measured_uj"]) + u(&b["sums"]["energy_estimated_uj"]);
    assert_eq!(u(&b["sums"]["energy_measured_uj"]), 0);
    assert!(total_uj >= model_uj);
    assert_eq!(b["energy_method"], "estimated");
    assert_eq!(b["energy_complete"], true);
    let j = b["energy_j"].as_f64().expect("J");
    assert!((j - total_uj as f64 / 1e6).abs() < 1e-9);
    assert!((b["energy_wh"].as_f64().expect("Wh") - j / 3600.0).abs() < 1e-12);
    // The audit trail's end-of-task record carries the same value and energy.
    let end = records
        .iter()
        .find(|r| r["kind"] == "task_end")
        .expect("a task_end record");
    assert_eq!(u(&end["value_nanousd"]), 500_000_000);
    assert_eq!(u(&end["energy_uj"]), total_uj);
    // Re-sent tokens: the transcript only grows, so each call re-sends the previous prompt.
    let ins: Vec<u64> = calls.iter().map(|c| u(&c["tokens_in"])).collect();
    assert!(ins.windows(2).all(|w| w[0] < w[1]), "{ins:?}");
    let resent: u64 = ins[..ins.len() - 1].iter().sum();
    assert_eq!(u(&b["tokens_resent"]), resent);
    assert_eq!(u(&r["totals"]["tokens_resent"]), resent);
    assert_eq!(u(&r["agents"][0]["tokens_resent"]), resent);
    // Quality: one model of quality 100; value per watt shows its inputs.
    assert_eq!(b["quality"].as_f64(), Some(100.0));
    let i = &b["value_per_watt_inputs"];
    let vpw = u(&i["output_tokens"]) as f64
        / (i["energy_wh"].as_f64().expect("Wh") * i["cost_usd"].as_f64().expect("$"));
    assert!((b["value_per_watt"].as_f64().expect("vpw") - vpw).abs() / vpw < 1e-9);
    assert_eq!(b["free_tier_share"].as_f64(), Some(0.0));
    // The human report shows the same scoreboard.
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", file.to_str().expect("utf-8"), "--task", TASK])
        .output()
        .expect("baton runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scoreboard:"), "{text}");
    assert!(text.contains("value $0.500000"), "{text}");
    assert!(
        text.contains(&format!("re-sent {resent} input tokens")),
        "{text}"
    );
}

/// `context:` compacts the transcript: input tokens fall by at least 40% (the compactor's own
/// calls included), the answer is the same, the compactor's calls are booked on the task, and
/// conservation holds.
#[test]
fn compaction_cuts_input_tokens_and_keeps_the_answer() {
    let plain = temp_file(
        "investigation-nocontext.yaml",
        &example(
            "investigation.yaml",
            &[(
                "    context: { compact_over_tokens: 1500, compactor: summariser, keep_last: 2 }\n",
                "",
            )],
        ),
    );
    let compacted = temp_file(
        "investigation-context.yaml",
        &example("investigation.yaml", &[]),
    );
    let (a, _) = run(&plain, "nocontext.audit.jsonl");
    let (b, records) = run(&compacted, "context.audit.jsonl");
    assert_eq!(a["outcome"], "completed");
    assert_eq!(b["outcome"], "completed");
    assert_eq!(a["answer"], b["answer"], "the same answer");
    let (ia, ib) = (u(&a["totals"]["tokens_in"]), u(&b["totals"]["tokens_in"]));
    assert!(
        ib * 10 <= ia * 6,
        "input tokens fell from {ia} to {ib}: less than 40%"
    );
    let sb = &b["scoreboard"];
    let compactions = u(&sb["compactions"]);
    assert!(compactions >= 2, "{sb:#}");
    assert!(u(&sb["compaction_tokens_saved"]) > 0);
    // The compactor's calls are model calls of the task, on its budget, at its price.
    let calls = model_calls(&records);
    let summaries = calls.iter().filter(|c| c["model"] == "summariser").count() as u64;
    assert_eq!(summaries, compactions);
    let cost: u64 = calls
        .iter()
        .map(|c| {
            let (pi, po) = if c["model"] == "summariser" {
                (150, 600)
            } else {
                (3_000, 15_000)
            };
            u(&c["tokens_in"]) * pi + u(&c["tokens_out"]) * po
        })
        .sum();
    assert_eq!(u(&b["totals"]["cost_nanousd"]), cost);
    assert_eq!(u(&b["tasks"][0]["cost_nanousd"]), cost, "conservation");
    assert!(u(&b["totals"]["cost_nanousd"]) < u(&a["totals"]["cost_nanousd"]));
    // After a compaction the prompt shrinks: some call sends fewer tokens than the one before.
    let ins: Vec<u64> = calls
        .iter()
        .filter(|c| c["model"] == "analyst")
        .map(|c| u(&c["tokens_in"]))
        .collect();
    assert!(ins.windows(2).any(|w| w[1] < w[0]), "{ins:?}");
    assert!(ins.iter().all(|&n| n <= 1500 + 400), "{ins:?}");
}
