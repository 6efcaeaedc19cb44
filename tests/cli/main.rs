//! End-to-end tests of the `baton` binary, as a user runs it.
//!
//! - `run`: the ops-triage example completes, its costs add up, budgets hold, bad flags are refused.
//! - `validate`: valid and broken topology files.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;
use common::{example, fast_ops_loop, temp_file, temp_path};

const TRIAGE: &str = "examples/topologies/ops-triage.yaml";
const ALERT: &str = "p99 latency of checkout doubled at 14:05";

fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the baton binary runs")
}

fn json_report(args: &[&str]) -> (Value, i32) {
    let out = baton(args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON report ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().expect("exited"))
}

/// Runs baton, which must succeed, and parses its stdout as JSON lines.
fn json_lines(args: &[&str]) -> Vec<Value> {
    let out = baton(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

/// A path in this test process's temp dir, with nothing at it yet.
mod run;

mod loops;

mod examples;

mod validate;

mod batch;

mod ledger;
