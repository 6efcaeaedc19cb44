use super::*;

const ALERTS: &str = "examples/tasks/alerts.jsonl";

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report a line"))
        .collect()
}

/// `--tasks` runs every line on one runtime: one JSON report per finished task, each with its
/// `task` text and line; a line's `budget_usd` caps that task; the exit code is the worst
/// outcome's (here `budget_exceeded`, 4).
/// SIGTERM cancels a batch: every task still running or waiting ends `cancelled`, each with
/// its one report line, and the exit code is `cancelled`'s.
#[test]
fn sigterm_cancels_the_rest_of_a_batch() {
    a_signal_cancels_the_rest_of_a_batch("TERM", 15);
}

/// Ctrl-C (SIGINT) does the same as SIGTERM.
#[test]
fn ctrl_c_cancels_the_rest_of_a_batch() {
    a_signal_cancels_the_rest_of_a_batch("INT", 2);
}

fn a_signal_cancels_the_rest_of_a_batch(name: &str, signo: u32) {
    let slow = temp_file(
        &format!("batch-slow-{name}.yaml"),
        &example("ops-triage.yaml", &[("latency: 150ms", "latency: 60s")]),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            slow.to_str().expect("utf-8"),
            "--tasks",
            ALERTS,
            "--json",
        ])
        .args(["--concurrency", "5"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("baton runs");
    common::wait_until_catching(child.id(), signo);
    let out = common::signal(child, name);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("interrupted: cancelling the batch"),
        "{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 20, "one report per task");
    assert!(
        lines.iter().all(|r| r["outcome"] == "cancelled"),
        "{lines:?}"
    );
    let mut numbers: Vec<u64> = lines.iter().filter_map(|r| r["line"].as_u64()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<u64>>(), "each line once");
}

#[test]
fn a_batch_reports_every_task_once() {
    let out = baton(&["run", TRIAGE, "--tasks", ALERTS, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = lines(&out);
    assert_eq!(reports.len(), 20);
    let mut seen: Vec<u64> = reports
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
    for r in &reports {
        let capped = r["task"] == "p99 latency of checkout doubled at 14:41";
        let want = if capped {
            "budget_exceeded"
        } else {
            "completed"
        };
        assert_eq!(r["outcome"], want, "{r}");
        assert!(r["task"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

/// `--budget-usd` is the budget of the whole batch: what all tasks spent together stays
/// within it, and tasks that would pass it end `budget_exceeded`.
#[test]
fn the_budget_is_the_batch_budget() {
    let out = baton(&[
        "run",
        TRIAGE,
        "--tasks",
        ALERTS,
        "--json",
        "--budget-usd",
        "0.05",
        "--concurrency",
        "4",
    ]);
    let reports = lines(&out);
    assert_eq!(reports.len(), 20);
    let spent: u64 = reports
        .iter()
        .map(|r| r["totals"]["cost_nanousd"].as_u64().expect("cost"))
        .sum();
    assert!(
        spent <= 50_000_000,
        "the batch spent {spent} nano-dollars of 50,000,000"
    );
    let refused = reports
        .iter()
        .filter(|r| r["outcome"] == "budget_exceeded")
        .count();
    assert!(refused >= 15, "{refused} tasks refused");
    assert_eq!(out.status.code(), Some(4));
}

/// A malformed line is refused before anything runs, naming the file and the line.
#[test]
fn a_broken_tasks_file_names_its_line() {
    let file = temp_file("tasks.jsonl", "first task\n{\"task\": 3}\n");
    let out = baton(&["run", TRIAGE, "--tasks", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tasks.jsonl:2: not a task line"), "{err}");
}
