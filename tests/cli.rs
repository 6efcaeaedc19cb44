//! End-to-end tests of the `baton` binary, as a user runs it.
//!
//! - `run`: the ops-triage example completes, its costs add up, budgets hold, bad flags are refused.
//! - `validate`: valid and broken topology files.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

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
mod run {
    use super::*;

    #[test]
    fn ops_triage_completes_and_costs_add_up() {
        let trail = temp_path("triage-oracle.audit.jsonl");
        let _ = std::fs::remove_file(&trail);
        let (r, code) = json_report(&[
            "run",
            TRIAGE,
            "--task",
            ALERT,
            "--json",
            "--audit",
            trail.to_str().expect("utf-8"),
        ]);
        assert_eq!(r["outcome"], "completed", "{r:#}");
        assert_eq!(code, 0);
        let answer = r["answer"].as_str().expect("an answer");
        for needle in ["4f2a9c1", "@alice", "@bob", "14:05"] {
            assert!(answer.contains(needle), "answer lacks {needle}: {answer}");
        }
        let agents = r["agents"].as_array().expect("agents");
        let names: Vec<&str> = agents
            .iter()
            .map(|a| a["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["triage", "rca", "paging"]);
        // The oracle: every model call in the audit trail (written from the calls as they
        // happened, not from the ledger), priced here from the topology's prices — $0.15/$0.60
        // per million tokens for `small`, $3/$15 for `frontier`: 150/600 and 3,000/15,000
        // nano-dollars a token.
        let per_token = |model: &str| match model {
            "small" => (150, 600),
            "frontier" => (3_000, 15_000),
            other => panic!("unknown model {other}"),
        };
        let mut oracle: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for line in std::fs::read_to_string(&trail).expect("trail").lines() {
            let rec: Value = serde_json::from_str(line).expect("JSON");
            if rec["kind"] != "model_call" {
                continue;
            }
            let (pin, pout) = per_token(rec["model"].as_str().expect("model"));
            let e = oracle
                .entry(rec["agent"].as_str().expect("agent").to_string())
                .or_default();
            e.0 += 1;
            e.1 += u(&rec["tokens_in"]) * pin + u(&rec["tokens_out"]) * pout;
        }
        for a in agents {
            let name = a["name"].as_str().expect("name");
            assert_eq!(
                oracle.get(name).copied().unwrap_or_default(),
                (u(&a["model_calls"]), u(&a["cost_nanousd"])),
                "{name}: calls and cost by the oracle"
            );
        }
        let sum: u64 = oracle.values().map(|(_, c)| c).sum();
        assert_eq!(
            sum,
            u(&r["totals"]["cost_nanousd"]),
            "the total, by the oracle"
        );
        assert!(sum > 0);
        for key in ["tokens_in", "tokens_out", "steps"] {
            let s: u64 = agents.iter().map(|a| u(&a[key])).sum();
            assert_eq!(s, u(&r["totals"][key]), "{key} adds up");
        }
        for a in agents {
            assert_eq!(a["outcome"], "completed");
            assert!(u(&a["model_calls"]) > 0);
        }
        assert!(u(&r["totals"]["wall_ms"]) > 0);
        // The frontier-priced coordinator costs more per token than the small-model specialists.
        let per_token = |a: &Value| {
            u(&a["cost_nanousd"]) as f64 / (u(&a["tokens_in"]) + u(&a["tokens_out"])) as f64
        };
        assert!(per_token(&agents[0]) > 10.0 * per_token(&agents[1]));
    }

    #[test]
    fn human_output_shows_steps_answer_and_cost_table() {
        let out = baton(&["run", TRIAGE, "--task", ALERT]);
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "[triage] → delegate",
            "  [rca] → query_metrics",
            "  [rca] ← read_deploy_log: 13:58 deploy checkout-api 4f2a9c1",
            "  [paging] → oncall_schedule",
            "outcome: completed",
            "answer:  Suspected change: 4f2a9c1",
            "total ",
        ] {
            assert!(s.contains(needle), "output lacks {needle:?}:\n{s}");
        }
    }

    #[test]
    fn budget_below_the_need_ends_budget_exceeded_within_budget() {
        // $0.001 cannot cover the first frontier call's worst case; $0.02 runs out mid-way.
        for (budget, limit) in [("0.001", 1_000_000u64), ("0.02", 20_000_000)] {
            let (r, code) = json_report(&[
                "run",
                TRIAGE,
                "--task",
                ALERT,
                "--json",
                "--budget-usd",
                budget,
            ]);
            assert_eq!(r["outcome"], "budget_exceeded", "budget {budget}: {r:#}");
            assert_eq!(code, 4, "exit code for budget_exceeded");
            let total = u(&r["totals"]["cost_nanousd"]);
            assert!(total <= limit, "spent {total} > budget {limit}");
            let sum: u64 = r["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .map(|a| u(&a["cost_nanousd"]))
                .sum();
            assert_eq!(sum, total);
            assert!(
                r["error"]
                    .as_str()
                    .expect("a reason")
                    .contains("cannot cover the next call")
            );
        }
        let (r, _) = json_report(&[
            "run",
            TRIAGE,
            "--task",
            ALERT,
            "--json",
            "--budget-usd",
            "0.02",
        ]);
        assert!(
            u(&r["totals"]["cost_nanousd"]) > 0,
            "the mid-way run did real work before stopping"
        );
    }

    #[test]
    fn flaky_providers_recovers_reroutes_and_cuts_off_in_one_run() {
        let (r, code) = json_report(&[
            "run",
            "examples/topologies/flaky-providers.yaml",
            "--task",
            "Prepare the weekly incident digest",
            "--json",
        ]);
        assert_eq!(
            (r["outcome"].as_str(), code),
            (Some("completed"), 0),
            "{r:#}"
        );
        let agent = |name: &str| {
            r["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .find(|a| a["name"] == name)
                .unwrap_or_else(|| panic!("{name} ran"))
                .clone()
        };
        let kinds = |a: &Value| -> Vec<String> {
            a["budget_events"]
                .as_array()
                .expect("budget_events")
                .iter()
                .map(|e| e["kind"].as_str().expect("kind").to_string())
                .collect()
        };
        // Recovery from a provider error: escalated to the next model.
        assert_eq!(u(&agent("researcher")["model_errors"]), 1);
        assert_eq!(agent("researcher")["outcome"], "completed");
        // Recovery from a crash: restarted, task retried.
        assert_eq!(u(&agent("archivist")["restarts"]), 1);
        assert_eq!(agent("archivist")["outcome"], "completed");
        // Reroute to the fallback agent.
        assert_eq!(u(&agent("summarizer")["reroutes"]), 1);
        assert_eq!(kinds(&agent("summarizer")), ["refused", "rerouted_agent"]);
        assert_eq!(agent("summarizer-lite")["outcome"], "completed");
        // Cut-off.
        assert_eq!(kinds(&agent("auditor")), ["refused", "cut_off"]);
        assert_eq!(agent("auditor")["outcome"], "budget_exceeded");
        assert!(
            u(&agent("auditor")["cost_nanousd"]) <= 400_000,
            "the auditor stayed within its budget"
        );
        let sum: u64 = r["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|a| u(&a["cost_nanousd"]))
            .sum();
        assert_eq!(sum, u(&r["totals"]["cost_nanousd"]));
        assert_eq!(
            (u(&r["totals"]["restarts"]), u(&r["totals"]["reroutes"])),
            (1, 1)
        );
        let outcomes: Vec<&str> = r["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["outcome"].as_str().expect("outcome"))
            .collect();
        assert_eq!(
            outcomes,
            [
                "completed",
                "completed",
                "completed",
                "budget_exceeded",
                "completed",
                "budget_exceeded"
            ]
        );
    }

    /// The guarded restart: the dry run, the approval request and the decision are in the output
    /// and in the audit trail, which verifies, and stops verifying once edited.
    #[test]
    fn guarded_restart_is_shown_and_audited() {
        let trail =
            std::env::temp_dir().join(format!("baton-audit-cli-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&trail);
        let out = baton(&[
            "run",
            TRIAGE,
            "--task",
            ALERT,
            "--audit",
            trail.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "[triage] → restart_service {\"dry_run\":true,\"service\":\"checkout-api\"}",
            "[triage] ⚖ restart_service: requested (approval)",
            "[triage] ⚖ restart_service: denied (approval): no terminal and no approval endpoint",
            "Restart of checkout-api: denied by policy (approval)",
        ] {
            assert!(s.contains(needle), "output lacks {needle:?}:\n{s}");
        }
        let records: Vec<Value> = std::fs::read_to_string(&trail)
            .expect("trail written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        let policy: Vec<&str> = records
            .iter()
            .filter(|r| r["kind"] == "policy")
            .map(|r| r["decision"].as_str().expect("decision"))
            .collect();
        assert_eq!(policy, ["allowed", "requested", "denied"]);
        assert!(
            records
                .iter()
                .any(|r| r["kind"] == "model_call" && r["agent"] == "rca")
        );
        assert!(records.iter().any(|r| r["kind"] == "task_end"
            && r["agent"] == "triage"
            && r["outcome"] == "completed"));
        let out = baton(&["audit", "verify", trail.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A second run continues the chain.
        assert!(
            baton(&[
                "run",
                TRIAGE,
                "--task",
                ALERT,
                "--audit",
                trail.to_str().expect("utf-8")
            ])
            .status
            .success()
        );
        assert!(
            baton(&["audit", "verify", trail.to_str().expect("utf-8")])
                .status
                .success()
        );
        // Quietly turn the denial into an approval: caught, and the record named.
        let text = std::fs::read_to_string(&trail).expect("trail");
        let n = text
            .lines()
            .position(|l| l.contains("\"decision\":\"denied\""))
            .expect("a denial")
            + 1;
        std::fs::write(
            &trail,
            text.replacen("\"decision\":\"denied\"", "\"decision\":\"approved\"", 1),
        )
        .expect("edit");
        let out = baton(&["audit", "verify", trail.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(":{n}: broken:")) && err.contains("edited"),
            "{err}"
        );
    }

    /// A damaged state file (emptied, overwritten) stops `baton state` and `baton run --state`
    /// with exit 2 and a message naming the file: no panic (exit 101), no silent reset to $0.
    #[test]
    fn a_damaged_state_file_is_refused_with_exit_2() {
        for (name, bytes) in [("empty", Vec::new()), ("garbage", vec![0x42u8; 4096])] {
            let state = temp_path(&format!("damaged-{name}.redb"));
            std::fs::write(&state, &bytes).expect("write");
            let state = state.to_str().expect("utf-8");
            let out = baton(&["state", state]);
            assert_eq!(out.status.code(), Some(2), "{name}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(state) && !err.contains("panicked"), "{err}");
            let out = baton(&["run", TRIAGE, "--for", "1s", "--state", state]);
            assert_eq!(out.status.code(), Some(2), "{name}");
            assert_eq!(
                std::fs::read(state).expect("kept").len(),
                bytes.len(),
                "left as it was"
            );
        }
    }

    /// With `BATON_AUDIT_KEY`, a run leaves a signed head beside its trail: records cut from the
    /// trail's end (or the file emptied) no longer verify; `--expect-head` checks a head kept
    /// elsewhere.
    #[test]
    fn a_keyed_trail_cut_at_its_end_does_not_verify() {
        let trail = temp_path("keyed.audit.jsonl");
        let _ = std::fs::remove_file(&trail);
        let t = trail.to_str().expect("utf-8");
        let keyed = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(args)
                .env("BATON_AUDIT_KEY", "k3y-for-the-test")
                .output()
                .expect("runs")
        };
        assert!(
            keyed(&["run", TRIAGE, "--task", ALERT, "--audit", t])
                .status
                .success()
        );
        let out = keyed(&["audit", "verify", t]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        let head = said
            .split(", head ")
            .nth(1)
            .and_then(|h| h.strip_suffix(")\n"))
            .expect("the head is printed")
            .to_string();
        let text = std::fs::read_to_string(&trail).expect("trail");
        let kept: Vec<&str> = text.lines().collect();
        std::fs::write(&trail, kept[..kept.len() - 2].join("\n") + "\n").expect("cut");
        let out = keyed(&["audit", "verify", t]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("records were cut from its end"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(format!("{t}.head")).expect("head removed too");
        let out = keyed(&["audit", "verify", t, "--expect-head", &head]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "the head kept elsewhere catches it"
        );
    }

    /// After the conductor gives up, a standing loop's next tick is refused: printed with the
    /// reason, recorded (no run left `running`, so the next start charges nothing), and the
    /// process exits non-zero instead of running on, silently counting runs.
    #[test]
    fn a_loop_stops_and_fails_when_the_runtime_is_down() {
        let rules = temp_file(
            "down.rules.yaml",
            "rules:\n  - { agent: ops, reply: { text: fine } }\n",
        );
        let topo = temp_file(
            "down.yaml",
            &format!(
                "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }}, faults: {{ seed: 7, panic: 1.0 }} }}\n\
                 supervision: {{ max_restarts: 0, within: 1m }}\n\
                 agents:\n  ops: {{ models: [m] }}\n\
                 schedules:\n  check:\n    every: 1s\n    task: check\n    budget: {{ max_usd: 0.5 }}\n",
                rules.display()
            ),
        );
        let state = temp_path("down.redb");
        let _ = std::fs::remove_file(&state);
        let (topo, state) = (
            topo.to_str().expect("utf-8"),
            state.to_str().expect("utf-8"),
        );
        let out = baton(&["run", topo, "--for", "20s", "--json", "--state", state]);
        assert!(!out.status.success(), "a loop on a dead runtime fails");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let refused = lines
            .iter()
            .find(|l| l.get("refused").is_some())
            .unwrap_or_else(|| panic!("a refused tick is printed: {lines:?}"));
        assert!(
            refused["refused"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("gave up")),
            "{refused}"
        );
        let summary = lines.last().expect("the summary");
        assert_eq!(summary["loops"][0]["refused"], 1, "{summary}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the runtime is down"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value =
            serde_json::from_slice(&baton(&["state", state]).stdout).expect("state JSON");
        let runs = shown["loops"][0]["runs"].as_array().expect("runs");
        assert!(
            runs.iter().all(|r| r["outcome"] != "running"),
            "no run is left running to be charged later: {shown:#}"
        );
    }

    /// The documented exit codes of a one-task run, each from a run that ends that way: 3
    /// failed, 7 timed out, 8 max steps; and 6 for a run cancelled by SIGTERM, which still
    /// prints its report.
    #[test]
    fn each_outcome_has_its_exit_code() {
        let logs =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies/fixtures/deploys.log");
        let rules = temp_file(
            "codes.rules.yaml",
            "rules:\n  - { agent: looper, reply: { tool_calls: [ { name: logs, args: { contains: deploy } } ] } }\n  - { reply: { text: done } }\n",
        );
        let topo = |name: &str, model: &str, agent: &str| {
            temp_file(
                &format!("codes-{name}.yaml"),
                &format!(
                    "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }}{model} }}\n\
                     tools:\n  logs: {{ kind: log_search, path: {} }}\n\
                     agents:\n  {agent}\n",
                    rules.display(),
                    logs.display()
                ),
            )
        };
        for (name, model, agent, code) in [
            (
                "failed",
                ", faults: { seed: 1, error: 1.0 }",
                "solo: { models: [m] }",
                3,
            ),
            (
                "timed-out",
                ", latency: 5s",
                "solo: { models: [m], budget: { max_wall: 200ms } }",
                7,
            ),
            (
                "max-steps",
                "",
                "looper: { models: [m], tools: [logs], budget: { max_steps: 2 } }",
                8,
            ),
        ] {
            let file = topo(name, model, agent);
            let out = baton(&[
                "run",
                file.to_str().expect("utf-8"),
                "--task",
                "go",
                "--json",
            ]);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // SIGTERM during a slow call: the task is cancelled, reported, exit 6.
        let file = topo("cancelled", ", latency: 30s", "solo: { models: [m] }");
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", file.to_str().expect("utf-8"), "--task", "go"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).expect("the start line");
        assert!(first.starts_with("▶ solo"), "{first}");
        // The start line is printed just before the runtime starts: give it a moment to install
        // its signal handler (polled, not a fixed sleep: resend until the process reacts).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(std::time::Duration::from_millis(200));
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SIGTERM was not acted on"
            );
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).expect("rest");
        assert_eq!(status.code(), Some(6), "{rest}");
        assert!(rest.contains("outcome: cancelled"), "{rest}");
    }

    /// `max_output_bytes` caps what a `shell` tool reads: a program that writes without end is
    /// stopped there, and the model is told its output was cut.
    #[test]
    fn a_shell_tool_reads_no_more_than_its_max_output_bytes() {
        let rules = temp_file(
            "shell-cap.rules.yaml",
            "rules:\n  - { agent: ops, step: 1, reply: { tool_calls: [ { name: sh, args: { command: cat, args: [/dev/zero] } } ] } }\n  - { agent: ops, reply: { text: \"{{last}}\" } }\n",
        );
        let topo = temp_file(
            "shell-cap.yaml",
            &format!(
                "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }}, max_output_tokens: 4096 }}\n\
                 tools:\n  sh: {{ kind: shell, allow: [cat], max_output_bytes: 64 }}\n\
                 agents:\n  ops: {{ models: [m], tools: [sh] }}\n",
                rules.display()
            ),
        );
        let (r, code) = json_report(&[
            "run",
            topo.to_str().expect("utf-8"),
            "--task",
            "go",
            "--json",
        ]);
        assert_eq!(code, 0, "{r:#}");
        let answer = r["answer"].as_str().expect("answer");
        assert!(
            answer.ends_with(
                "[output cut by Baton at 64 bytes: the program wrote more and was stopped]"
            ),
            "{answer:?}"
        );
    }

    /// `--audit` must name a regular file: a device would be read forever (`/dev/zero` once
    /// allocated 2 GB), a FIFO would hang the start. Both are refused before anything runs.
    #[test]
    fn audit_to_a_device_or_a_fifo_is_refused() {
        let fifo = std::env::temp_dir().join(format!("baton-audit-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        for target in [Path::new("/dev/zero"), fifo.as_path()] {
            let out = baton(&[
                "run",
                TRIAGE,
                "--task",
                ALERT,
                "--audit",
                target.to_str().expect("utf-8"),
            ]);
            assert_eq!(out.status.code(), Some(2), "{}", target.display());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("is not a regular file"), "{err}");
        }
        let _ = std::fs::remove_file(&fifo);
    }

    /// A model (or a tool, or a web page through one) that writes terminal escape sequences
    /// cannot repaint the screen: the step log and the summary show them as visible escapes.
    #[test]
    fn escape_sequences_from_a_model_reach_the_terminal_escaped() {
        let rules = temp_file(
            "escapes.rules.yaml",
            "rules:\n  - { agent: lead, reply: { text: \"\\e]0;pwned\\a\\e[2J\\rall clear \\u202e\" } }\n",
        );
        let topo = temp_file(
            "escapes.yaml",
            &format!(
                "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }} }}\nagents:\n  lead: {{ models: [m] }}\n",
                rules.display()
            ),
        );
        let out = baton(&["run", topo.to_str().expect("utf-8"), "--task", "status?"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(
                !shown.contains(raw),
                "{raw:?} reached the terminal:\n{shown:?}"
            );
        }
        assert!(shown.contains("\\u{1b}]0;pwned\\u{7}"), "{shown}");
    }

    /// A standing loop for a bounded time: one JSON line per run, then the loops' summary.
    #[test]
    fn standing_loop_runs_for_a_bounded_time() {
        let lines = json_lines(&[
            "run",
            "examples/topologies/latency-watch.yaml",
            "--for",
            "3s",
            "--json",
        ]);
        let (runs, summary) = lines.split_at(lines.len() - 1);
        assert_eq!(runs.len(), 2, "runs at 0 s and 2 s: {lines:?}");
        let mut spent = 0;
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(u(&r["run"]), i as u64 + 1);
            assert_eq!(r["report"]["outcome"], "completed");
            assert!(
                r["report"]["answer"]
                    .as_str()
                    .expect("answer")
                    .starts_with("quiet: search p99 steady")
            );
            spent += u(&r["report"]["totals"]["cost_nanousd"]);
            assert_eq!(
                u(&r["period_spent_nanousd"]),
                spent,
                "the period's spend is the runs' spend"
            );
            assert_eq!(u(&r["period_limit_nanousd"]), 500_000_000);
        }
        let l = &summary[0]["loops"][0];
        assert_eq!(
            (l["schedule"].as_str(), u(&l["runs"]), u(&l["cost_nanousd"])),
            (Some("search-latency"), 2, spent)
        );
    }

    /// The spend breaker through the CLI: it opens after the run that passes its limit, the loop
    /// pauses, and the change is printed as a JSON line and written to the audit trail.
    #[test]
    fn standing_loop_breaker_pauses_and_is_audited() {
        let body = example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 400ms"),
                (
                    "breaker: { window: 1h, max_usd: 0.01, spike: 5, cool_down: 15m }",
                    "breaker: { window: 1h, max_usd: 0.00001, cool_down: 1h }",
                ),
            ],
        );
        let topo = temp_file("breaker.yaml", &body);
        let trail = temp_path("breaker-audit.jsonl");
        let lines = json_lines(&[
            "run",
            topo.to_str().expect("utf-8"),
            "--for",
            "1500ms",
            "--json",
            "--audit",
            trail.to_str().expect("utf-8"),
        ]);
        let runs = lines.iter().filter(|l| l.get("run").is_some()).count();
        // $0.00000755 a run: the second passes $0.00001 and opens the breaker.
        assert_eq!(runs, 2, "{lines:?}");
        let opened: Vec<&Value> = lines
            .iter()
            .filter(|l| l.get("breaker").is_some())
            .collect();
        assert_eq!(opened.len(), 1, "{lines:?}");
        assert_eq!(opened[0]["breaker"], "open");
        assert!(
            opened[0]["reason"]
                .as_str()
                .expect("reason")
                .contains("over the $0.000010 limit"),
            "{lines:?}"
        );
        let l = &lines.last().expect("summary")["loops"][0];
        assert_eq!(u(&l["breaker_trips"]), 1);
        assert!(u(&l["paused"]) >= 1, "ticks after opening are paused: {l}");
        let audit = std::fs::read_to_string(&trail).expect("audit trail");
        assert!(
            audit
                .lines()
                .any(|r| r.contains(r#""kind":"breaker""#) && r.contains(r#""state":"open""#)),
            "{audit}"
        );
        let verify = baton(&["audit", "verify", trail.to_str().expect("utf-8")]);
        assert!(verify.status.success(), "the trail verifies");
    }

    /// The ops example as a standing loop: a quiet tick costs one cheap call; a spike runs the
    /// whole triage hierarchy, which finds the change and pages its owner. Costs add up per run.
    #[test]
    fn ops_loop_quiet_ticks_are_cheap_and_spikes_run_the_hierarchy() {
        let topo = fast_ops_loop();
        let lines = json_lines(&[
            "run",
            topo.to_str().expect("utf-8"),
            "--for",
            "1500ms",
            "--json",
        ]);
        let run = |schedule: &str| {
            lines
                .iter()
                .find(|l| l["schedule"] == schedule && l.get("run").is_some())
                .unwrap_or_else(|| panic!("a {schedule} run: {lines:?}"))
                .clone()
        };
        let (quiet, incident) = (run("search-latency"), run("checkout-latency"));
        // The cron schedule ran on a whole second (its tick is when it was due, in UTC).
        let tick = incident["tick"].as_str().expect("a tick");
        assert!(
            tick.len() == 20 && tick.ends_with('Z') && tick.as_bytes()[10] == b'T',
            "{tick}"
        );
        assert!(
            quiet["report"]["answer"]
                .as_str()
                .expect("answer")
                .starts_with("quiet:")
        );
        let verdict = incident["report"]["answer"].as_str().expect("answer");
        assert!(
            verdict.starts_with("INCIDENT: Suspected change: 4f2a9c1")
                && verdict.contains("Paged @"),
            "{verdict}"
        );
        let cost = |r: &Value| u(&r["report"]["totals"]["cost_nanousd"]);
        assert!(
            cost(&quiet) * 100 < cost(&incident),
            "a quiet tick costs under 1% of an incident: {} vs {}",
            cost(&quiet),
            cost(&incident)
        );
        for r in [&quiet, &incident] {
            let agents: u64 = r["report"]["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .map(|a| u(&a["cost_nanousd"]))
                .sum();
            assert_eq!(agents, cost(r), "per-agent costs add up to the run's");
        }
        let names: Vec<&str> = incident["report"]["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .filter(|a| u(&a["model_calls"]) > 0)
            .map(|a| a["name"].as_str().expect("name"))
            .collect();
        for a in ["watcher", "triage", "rca", "paging"] {
            assert!(names.contains(&a), "{a} worked on the incident: {names:?}");
        }
    }

    /// Starts `baton run ARGS` with its stdout as JSON lines.
    fn spawn_json(args: &[&str]) -> (std::process::Child, impl Iterator<Item = Value> + use<>) {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts");
        let lines = std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .lines()
            .map(|l| serde_json::from_str(&l.expect("utf-8")).expect("JSON line"));
        (child, lines)
    }

    /// The approval requests a running `baton` lists (`baton approvals list --json`), polled
    /// until `until` holds.
    fn approvals_until(addr: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let out = baton(&["approvals", "list", "--addr", addr, "--json"]);
            let list: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("JSON"))
                .collect();
            if out.status.success() && until(&list) {
                return list;
            }
            assert!(std::time::Instant::now() < deadline, "{list:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    }

    /// A standing loop (hourly) whose agent restarts a service at once, behind a human's approval
    /// (10 minutes to answer); `schedule_extra` adds lines to the schedule. Its file, as a temp file.
    fn restart_loop(name: &str, schedule_extra: &str) -> std::path::PathBuf {
        let rules = temp_file(
            &format!("{name}.rules.yaml"),
            "rules:\n  - { agent: ops, step: 1, reply: { tool_calls: [ { name: restart, args: { service: checkout-api } } ] } }\n  - { agent: ops, reply: { text: \"done: {{last}}\" } }\n",
        );
        temp_file(
            &format!("{name}.yaml"),
            &format!(
                "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }} }}\n\
                 tools:\n  restart: {{ kind: restart_service }}\n\
                 policy: {{ approval: true, approval_timeout: 10m }}\n\
                 agents:\n  ops: {{ models: [m], tools: [restart] }}\n\
                 schedules:\n  fix:\n    every: 1h\n    task: restart checkout\n{schedule_extra}",
                rules.display()
            ),
        )
    }

    /// One raw HTTP/1.1 exchange, as a browser or an attacker would send it: the status code.
    fn raw_http(addr: &str, request: &str) -> u16 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connects");
        s.write_all(request.as_bytes()).expect("sends");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// The approvals endpoint against the browser: a DNS-rebinding page (foreign `Host`) cannot
    /// list the queue, a cross-site `text/plain` POST or a POST from a foreign `Origin` cannot
    /// approve; a non-loopback address without a token is refused at start; ids start at a
    /// random number, so an id meant for another process names nothing here.
    #[test]
    fn the_approvals_endpoint_refuses_rebinding_csrf_and_open_binds() {
        let topo = restart_loop("csrf", "");
        let topo = topo.to_str().expect("utf-8");
        let out = baton(&["run", topo, "--for", "1s", "--approvals-addr", "0.0.0.0:0"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("without a token"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let addr = free_addr();
        let (mut child, _) = spawn_json(&["run", topo, "--json", "--approvals-addr", &addr]);
        let pending = approvals_until(&addr, |l| l.len() == 1);
        let id = pending[0]["id"].as_u64().expect("id");
        assert!(id >= 1_000_000, "{id}");
        let rebinding = format!(
            "GET /approvals HTTP/1.1\r\nHost: attacker.example:{}\r\nConnection: close\r\n\r\n",
            addr.rsplit(':').next().expect("port")
        );
        assert_eq!(raw_http(&addr, &rebinding), 403);
        let simple_post = format!(
            "POST /approvals/{id}/approve HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        assert_eq!(raw_http(&addr, &simple_post), 415);
        let cross_origin = format!(
            "POST /approvals/{id}/approve HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://attacker.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        assert_eq!(raw_http(&addr, &cross_origin), 403);
        let still = approvals_until(&addr, |l| l.len() == 1);
        assert_eq!(
            still[0]["state"], "pending",
            "nothing was approved: {still:?}"
        );
        let out = baton(&["approvals", "approve", "1", "--addr", &addr]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("404"),
            "an id of another process names nothing here"
        );
        child.kill().expect("stop");
        let _ = child.wait();
    }

    /// An approval request waiting when the process is killed is not forgotten: it is in the
    /// state file; the restarted loop resumes the interrupted run (`on_interrupted: resume`),
    /// whose identical call takes up the same request rather than asking again; approved over
    /// the CLI, the call runs.
    #[test]
    fn a_pending_approval_survives_sigkill_and_is_taken_up_by_the_resumed_run() {
        let topo = restart_loop("approve", "    on_interrupted: resume\n");
        let state = temp_path("approve.redb");
        let (topo, state) = (
            topo.to_str().expect("utf-8"),
            state.to_str().expect("utf-8"),
        );
        let addr = free_addr();
        let args = [
            "run",
            topo,
            "--json",
            "--state",
            state,
            "--approvals-addr",
            &addr,
        ];
        let (mut child, _) = spawn_json(&args);
        let before = approvals_until(&addr, |l| l.len() == 1);
        assert_eq!(before[0]["state"], "pending");
        assert_eq!(before[0]["tool"], "restart");
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let shown: Value =
            serde_json::from_slice(&baton(&["state", state]).stdout).expect("state JSON");
        assert_eq!(shown["approvals"][0]["state"], "pending", "{shown:#}");

        let addr = free_addr();
        let args = [
            "run",
            topo,
            "--json",
            "--state",
            state,
            "--approvals-addr",
            &addr,
        ];
        let (mut child, mut lines) = spawn_json(&args);
        let resumed = lines.next().expect("a line");
        assert_eq!(resumed["resumed"]["interrupted"], serde_json::json!([1]));
        let during = approvals_until(&addr, |l| l.first().is_some_and(|r| r["orphaned"] == true));
        assert_eq!(during.len(), 1, "taken up, not asked again: {during:?}");
        let id = during[0]["id"].as_u64().expect("id").to_string();
        assert_eq!(
            id,
            before[0]["id"].as_u64().expect("id").to_string(),
            "the same request"
        );
        let out = baton(&[
            "approvals",
            "approve",
            &id,
            "--addr",
            &addr,
            "--by",
            "alice",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (id, says) in [("99", "404"), (id.as_str(), "409")] {
            let out = baton(&["approvals", "deny", id, "--addr", &addr]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains(says), "{id}: {err}");
        }
        let run = lines.next().expect("the resumed run");
        assert_eq!((u(&run["run"]), u(&run["resumes"])), (2, 1), "{run}");
        assert_eq!(run["report"]["outcome"], "completed", "{run}");
        let answer = run["report"]["answer"].as_str().expect("answer");
        assert!(answer.contains("restarted checkout-api"), "{answer}");
        child.kill().expect("stop");
        let _ = child.wait();
        let shown: Value =
            serde_json::from_slice(&baton(&["state", state]).stdout).expect("state JSON");
        let a = &shown["approvals"][0];
        assert_eq!(
            (&a["state"], &a["by"], &a["used"]),
            (
                &Value::from("approved"),
                &Value::from("alice"),
                &Value::from(true)
            ),
            "{shown:#}"
        );
        assert_eq!(shown["approvals"].as_array().map(Vec::len), Some(1));
    }

    /// `--grace`: on stop, a run in flight gets that long, then is cancelled — and still ends
    /// with one recorded outcome.
    #[test]
    fn grace_bounds_how_long_a_stopping_loop_waits() {
        let body = example(
            "latency-watch.yaml",
            &[(
                "max_output_tokens: 128",
                "max_output_tokens: 128\n    latency: 10s",
            )],
        );
        let topo = temp_file("grace.yaml", &body);
        let started = std::time::Instant::now();
        let lines = json_lines(&[
            "run",
            topo.to_str().expect("utf-8"),
            "--json",
            "--for",
            "200ms",
            "--grace",
            "300ms",
        ]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "it did not wait for the 10 s call: {:?}",
            started.elapsed()
        );
        let runs: Vec<&Value> = lines.iter().filter(|l| l.get("run").is_some()).collect();
        assert_eq!(runs.len(), 1, "{lines:?}");
        assert_eq!(runs[0]["report"]["outcome"], "cancelled", "{lines:?}");
    }

    /// Runs latency-watch with `breaker` (its breaker line replaced) until the breaker opens,
    /// kills it (SIGKILL), and restarts it on the same state file for a second: no run starts,
    /// ticks are paused, and the state file says open. Returns the run lines before the breaker
    /// opened, and the opening line.
    fn breaker_survives_sigkill(name: &str, breaker: &str) -> (Vec<Value>, Value) {
        let body = example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 300ms"),
                (
                    "    breaker: { window: 1h, max_usd: 0.01, spike: 5, cool_down: 15m }",
                    breaker,
                ),
            ],
        );
        let topo = temp_file(&format!("{name}.yaml"), &body);
        let state = temp_path(&format!("{name}.redb"));
        let (topo, state) = (
            topo.to_str().expect("utf-8"),
            state.to_str().expect("utf-8"),
        );
        let (mut child, mut lines) = spawn_json(&["run", topo, "--json", "--state", state]);
        let mut runs = Vec::new();
        let opened = loop {
            let l = lines.next().expect("the breaker opens");
            if l.get("breaker").is_some() {
                break l;
            }
            runs.push(l);
        };
        assert_eq!(opened["breaker"], "open");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let lines = json_lines(&["run", topo, "--json", "--state", state, "--for", "1s"]);
        assert!(
            lines.iter().all(|l| l.get("run").is_none()),
            "no run while the breaker is open: {lines:?}"
        );
        let summary = lines.last().expect("the summary");
        let paused = u(&summary["loops"][0]["paused"]);
        assert!(paused >= 2, "ticks were paused, not run: {summary}");
        let shown: Value = serde_json::from_slice(&baton(&["state", state]).stdout).expect("JSON");
        assert_eq!(
            shown["loops"][0]["state"]["breaker"][0], "open",
            "{shown:#}"
        );
        (runs, opened)
    }

    /// An open spend breaker survives SIGKILL: the restarted loop stays paused.
    #[test]
    fn an_open_breaker_survives_sigkill() {
        let (runs, _) = breaker_survives_sigkill(
            "breaker-kill",
            "    breaker: { window: 1h, max_usd: 0.000001, cool_down: 15m }",
        );
        assert_eq!(runs.len(), 1, "the breaker opens after the first run");
    }

    /// An ROI breaker opened by runs worth less than they cost survives SIGKILL like the spend
    /// breaker, and the event said which rule tripped it.
    #[test]
    fn an_open_roi_breaker_survives_sigkill() {
        let (runs, opened) = breaker_survives_sigkill(
            "roi-kill",
            "    breaker: { window: 1h, min_roi: 1.0, min_runs: 2, cool_down: 15m }\n    value: { value_usd: 0.000000001 }",
        );
        let why = opened["reason"].as_str().expect("a reason");
        assert!(why.contains("below min_roi 1"), "{why}");
        assert_eq!(
            runs.len(),
            2,
            "min_runs: two runs, then it judges: {runs:?}"
        );
        for r in &runs {
            let b = &r["report"]["scoreboard"];
            assert_eq!(u(&b["value_nanousd"]), 1);
            assert!(b["roi"].as_f64().expect("roi") < 1.0, "{b}");
        }
    }

    /// SIGKILL in the middle of a run, then a restart on the same state file: the day's spend
    /// continues (the interrupted run charged its worst case), run numbers continue, and the
    /// interrupted run is recorded as such.
    #[test]
    fn standing_loop_state_survives_sigkill() {
        let body = example(
            "latency-watch.yaml",
            &[
                ("every: 2s", "every: 500ms"),
                (
                    "max_output_tokens: 128",
                    "max_output_tokens: 128\n    latency: 1s",
                ),
            ],
        );
        let topo = temp_file("durable.yaml", &body);
        let state = temp_path("durable.redb");
        let (topo, state) = (
            topo.to_str().expect("utf-8").to_string(),
            state.to_str().expect("utf-8").to_string(),
        );
        let (mut child, mut lines) = spawn_json(&["run", &topo, "--json", "--state", &state]);
        // Run 1 takes 2 s (two calls of 1 s); run 2 starts at the next tick (within 500 ms) and
        // takes 2 s: the kill 1.5 s after run 1's line cuts it even when a loaded machine delays
        // its start by a second.
        let first = lines.find(|v| v.get("run").is_some()).expect("a run line");
        assert_eq!(u(&first["run"]), 1);
        let cost1 = u(&first["report"]["totals"]["cost_nanousd"]);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let lines = json_lines(&["run", &topo, "--json", "--state", &state, "--for", "200ms"]);
        let resumed = &lines[0]["resumed"];
        assert_eq!(u(&resumed["runs_before"]), 2, "{lines:?}");
        assert_eq!(resumed["interrupted"], serde_json::json!([2]), "{lines:?}");
        // Run 2 is charged its worst case: the per-run limit of $0.001.
        let carried = u(&resumed["period_spent_nanousd"]);
        assert_eq!(carried, cost1 + 1_000_000, "{lines:?}");
        let run3 = &lines[1];
        assert_eq!(u(&run3["run"]), 3, "{lines:?}");
        assert_eq!(
            u(&run3["period_spent_nanousd"]),
            carried + u(&run3["report"]["totals"]["cost_nanousd"]),
            "the day's spend continued from where it was"
        );
        // Every run has exactly one recorded outcome.
        let out = baton(&["state", &state]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let runs = &shown["loops"][0]["runs"];
        let outcomes: Vec<(u64, &str)> = runs
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| (u(&r["run"]), r["outcome"].as_str().expect("outcome")))
            .collect();
        assert_eq!(
            outcomes,
            [(1, "completed"), (2, "interrupted"), (3, "completed")],
            "{shown:#}"
        );
    }

    #[test]
    fn bad_budget_flags_are_refused_clearly() {
        for (flag, needle) in [
            ("-1", "negative"),
            ("abc", "plain decimal"),
            ("0", "more than zero"),
        ] {
            let out = baton(&["run", TRIAGE, "--task", ALERT, "--budget-usd", flag]);
            assert_eq!(out.status.code(), Some(2), "--budget-usd {flag}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(needle), "--budget-usd {flag}: {err}");
        }
    }

    #[test]
    fn missing_task_and_missing_file_are_errors() {
        let out = baton(&["run", TRIAGE]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--task is required"));
        let out = baton(&["run", "no/such/file.yaml", "--task", "x"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.yaml"));
    }
}

mod examples {
    use super::*;

    /// The attack of the hardening issue: a model adds `"dry_run": true` to an MCP server's
    /// write. The server does not honour dry runs (it would write), so the harness judges the
    /// call as the real one: approval is required, denied unattended, and nothing is written.
    /// And the server's own `readOnlyHint` claims make no tool of it read-only by default.
    #[test]
    fn a_claimed_dry_run_to_an_mcp_write_is_judged_as_the_write() {
        if !common::mcp_servers_installed() {
            return;
        }
        let root = temp_path("mcp-dry-run-root");
        std::fs::create_dir_all(&root).expect("root");
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mcp/node_modules/.bin/mcp-server-filesystem");
        let rules = temp_file(
            "mcp-dry.rules.yaml",
            &format!(
                "rules:\n  - {{ agent: ops, step: 1, reply: {{ tool_calls: [ {{ name: files__write_file, args: {{ path: {}, content: pwned, dry_run: true }} }} ] }} }}\n  - {{ agent: ops, reply: {{ text: \"{{{{last}}}}\" }} }}\n",
                root.join("note.md").display()
            ),
        );
        let topo = temp_file(
            "mcp-dry.yaml",
            &format!(
                "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 2 }} }}\n\
                 mcp_servers:\n  files: {{ command: {}, args: [{}], tools: [write_file] }}\n\
                 policy: {{ approval: true }}\n\
                 agents:\n  ops: {{ models: [m], tools: [files] }}\n",
                rules.display(),
                bin.display(),
                root.display()
            ),
        );
        let out = baton(&["run", topo.to_str().expect("utf-8"), "--task", "note it"]);
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            shown.contains("⚖ files__write_file: requested (approval)"),
            "{shown}"
        );
        assert!(
            !root.join("note.md").exists(),
            "the claimed dry run wrote nothing"
        );
    }

    /// The MCP example: the agent reads the runbook through the real filesystem MCP server
    /// (npm), and the server's `write_file` — destructive, since MCP does not mark it otherwise —
    /// is denied by the policy in an unattended run: nothing is written, the denial is counted
    /// and audited, and the model is told why.
    #[test]
    fn mcp_example_reads_through_a_real_server_and_the_policy_stops_its_write() {
        if !common::mcp_servers_installed() {
            return;
        }
        let trail = temp_path("mcp.audit.jsonl");
        let trail_s = trail.to_str().expect("utf-8");
        let (r, code) = json_report(&[
            "run",
            "examples/topologies/mcp.yaml",
            "--task",
            "checkout p99 doubled: what first?",
            "--json",
            "--audit",
            trail_s,
        ]);
        assert_eq!(
            (r["outcome"].as_str(), code),
            (Some("completed"), 0),
            "{r:#}"
        );
        let answer = r["answer"].as_str().expect("answer");
        assert!(
            answer.starts_with("First step from the runbook: Check the price cache hit rate")
                && answer.ends_with("denied by policy, approval)."),
            "{answer}"
        );
        assert!(
            !Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/topologies/fixtures/incident.md")
                .exists(),
            "the denied write did not happen"
        );
        let audit = std::fs::read_to_string(&trail).expect("the trail");
        let records: Vec<Value> = audit
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let text = audit.as_str();
        assert!(
            text.contains("files__read_text_file"),
            "the read is audited"
        );
        assert!(
            records
                .iter()
                .any(|r| r.to_string().contains("files__write_file")
                    && r.to_string().contains("denied")),
            "the denial is audited: {text}"
        );
        let verify = baton(&["audit", "verify", trail_s]);
        assert!(verify.status.success(), "the trail verifies");
    }

    /// Every example topology validates, draws, and runs to completion offline.
    #[test]
    fn every_example_topology_validates_renders_and_runs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("examples") {
            let p = entry.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.ends_with(".rules.yaml")
                || !(name.ends_with(".yaml") || name.ends_with(".toml"))
            {
                continue;
            }
            // The local-first example names the embedded model's file, fetched by a script;
            // tests/local.rs runs it (required in CI).
            let local = name == "local-first.yaml";
            if local && !local_model_fetched() {
                eprintln!(
                    "skipped {name}: its model is not fetched (scripts/fetch-local-model.sh)"
                );
                continue;
            }
            let file = format!("examples/topologies/{name}");
            let out = baton(&["validate", &file]);
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for format in ["dot", "mermaid"] {
                let out = baton(&["graph", &file, "--format", format]);
                assert!(
                    out.status.success() && !out.stdout.is_empty(),
                    "{name} draws as {format}"
                );
            }
            // local-server.yaml needs a local inference server (its replies are replayed in
            // tests/providers.rs).
            if (name == "mcp.yaml" && !common::mcp_servers_installed())
                || local
                || name == "local-server.yaml"
            {
                continue;
            }
            let (r, code) =
                json_report(&["run", &file, "--task", "a task for the example", "--json"]);
            assert_eq!(
                (r["outcome"].as_str(), code),
                (Some("completed"), 0),
                "{name}: {r:#}"
            );
            n += 1;
        }
        assert!(
            n >= 6,
            "hierarchy, flaky, pipeline (YAML and TOML), research, router: {n}"
        );
    }

    /// Whether the embedded model the local-first example names is where it says.
    fn local_model_fetched() -> bool {
        std::env::var_os("HOME").is_some_and(|h| {
            Path::new(&h)
                .join(".cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")
                .is_file()
        })
    }

    /// `baton tools` lists every built-in `kind:` with its arguments (from the JSON schema the
    /// model is given), effect and dry-run support.
    #[test]
    fn tools_lists_every_built_in_with_its_arguments() {
        let out = baton(&["tools", "--format", "json"]);
        assert!(out.status.success());
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let list = list.as_array().expect("a list");
        let kinds: Vec<&str> = list.iter().filter_map(|t| t["kind"].as_str()).collect();
        for k in &kinds {
            let kind: baton::topologies::ToolKind =
                serde_json::from_value(serde_json::json!(k)).expect("a real kind");
            assert_ne!(kind, baton::topologies::ToolKind::Custom);
        }
        assert_eq!(kinds.len(), 9, "every built-in: {kinds:?}");
        for t in list {
            assert_eq!(t["parameters"]["type"], "object", "{t}");
        }
        let shell = list.iter().find(|t| t["kind"] == "shell").expect("shell");
        assert_eq!(shell["effect"], "destructive");
        assert_eq!(shell["dry_run"], true);
        let human = baton(&["tools"]);
        let text = String::from_utf8_lossy(&human.stdout);
        let block = text
            .split("\n\n")
            .find(|b| b.starts_with("shell "))
            .expect("shell block");
        for arg in ["command", "args", "dry_run"] {
            assert!(
                block.lines().any(|l| l.trim_start().starts_with(arg)),
                "{block}"
            );
        }
        assert!(block.contains("required"), "{block}");
    }

    #[test]
    fn pipeline_in_toml_and_yaml_are_the_same_topology() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
        let y = baton::topologies::Topology::from_path(root.join("pipeline.yaml")).expect("yaml");
        let t = baton::topologies::Topology::from_path(root.join("pipeline.toml")).expect("toml");
        assert_eq!(y.spec(), t.spec());
        assert_eq!(baton::topologies::to_dot(&y), baton::topologies::to_dot(&t));
    }

    #[test]
    fn router_escalates_on_failure_and_on_low_confidence_and_stays_local_otherwise() {
        let (r, _) = json_report(&[
            "run",
            "examples/topologies/router.yaml",
            "--task",
            "x",
            "--json",
        ]);
        assert_eq!(r["outcome"], "completed");
        let a = &r["agents"][0];
        // Step 1 local fails (malformed) → frontier; step 2 local; step 3 local is unsure
        // (55 % < 70 %) → frontier.
        assert_eq!(
            (u(&a["model_calls"]), u(&a["model_errors"])),
            (4, 1),
            "{a:#}"
        );
        let calls: Vec<(&str, u64)> = r["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| (m["name"].as_str().expect("name"), u(&m["calls"])))
            .collect();
        assert_eq!(calls, [("frontier", 2), ("local", 2)], "{r:#}");
        // Only the escalated step was billed: the local model is free.
        assert!(u(&a["cost_nanousd"]) > 0);
    }
}

mod validate {
    use super::*;

    #[test]
    fn json_format_lists_diagnostics_per_file() {
        let p = temp_file(
            "two-errors.yaml",
            "models:\n  m: {provider: custom, price: {input: 1, output: 1}}\nagents:\n  lead:\n    models: [x]\n    tools: [y]\n",
        );
        let out = baton(&[
            "validate",
            "--format",
            "json",
            p.to_str().expect("utf-8 path"),
            TRIAGE,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v[0]["valid"], false);
        let ds = v[0]["diagnostics"].as_array().expect("diagnostics");
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0]["path"], "agents.lead.models[x]");
        assert_eq!(
            (ds[0]["line"].as_u64(), ds[0]["column"].as_u64()),
            (Some(5), Some(14))
        );
        assert_eq!(ds[0]["severity"], "error");
        assert_eq!(v[1]["valid"], true);
    }

    /// A topology's rules file is loaded by `validate` as the run would load it: a misspelt key
    /// is named at the rules file's line and column with a did-you-mean, a bad regex with its
    /// position, and `run` refuses the topology the same way (exit 2, said once, no `<input>`).
    #[test]
    fn validate_loads_the_rules_files_a_topology_names() {
        let check = |name: &str, rules: &str, wanted: &[&str]| {
            let r = temp_file(&format!("{name}-rules.yaml"), rules);
            let t = temp_file(
                &format!("{name}.yaml"),
                &format!(
                    "name: {name}\nmodels:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 1 }} }}\nagents:\n  solo: {{ models: [m] }}\n",
                    r.display()
                ),
            );
            let t = t.to_str().expect("utf-8 path");
            let out = baton(&["validate", t]);
            assert_eq!(out.status.code(), Some(1));
            let said = String::from_utf8_lossy(&out.stderr);
            for w in wanted {
                assert!(said.contains(w), "wanted {w:?} in:\n{said}");
            }
            let run = baton(&["run", t, "--task", "go"]);
            assert_eq!(run.status.code(), Some(2));
            let said = String::from_utf8_lossy(&run.stderr);
            assert_eq!(said.matches(wanted[0]).count(), 1, "said once:\n{said}");
            assert!(!said.contains("<input>"), "{said}");
        };
        check(
            "misspelt-key",
            "rules:\n  - agent: solo\n    last_match: x\n    reply: { text: hi }\n",
            &[
                "-rules.yaml:3:5: unknown field `last_match`",
                "did you mean `last_matches`?",
            ],
        );
        check(
            "bad-regex",
            "rules:\n  - last_matches: \"(unclosed\"\n    reply: { text: hi }\n",
            &["rule 1: bad regex `(unclosed`: unclosed group (at character 1)"],
        );
    }

    #[test]
    fn graph_draws_dot_and_mermaid() {
        let out = baton(&["graph", "examples/topologies/flaky-providers.yaml"]);
        assert!(out.status.success());
        let dot = String::from_utf8_lossy(&out.stdout);
        assert!(dot.starts_with("digraph \"flaky-providers\""), "{dot}");
        assert!(
            dot.contains("\"coordinator\" -> \"researcher\" [style=solid, label=\"supervises\"]"),
            "{dot}"
        );
        assert!(
            dot.contains("\"summarizer\" -> \"summarizer-lite\" [style=dotted"),
            "{dot}"
        );
        assert!(dot.contains("flaky → steady"), "ladders are shown: {dot}");
        let out = baton(&[
            "graph",
            "examples/topologies/ops-triage.yaml",
            "--format",
            "mermaid",
        ]);
        let mm = String::from_utf8_lossy(&out.stdout);
        assert!(mm.starts_with("flowchart TD"), "{mm}");
        assert!(mm.contains("-.->|delegates|"), "{mm}");
    }

    /// Past the YAML node bound (a guard against YAML bombs) the error names the limit and how
    /// to lift it; lifted, the same file loads.
    #[test]
    fn the_yaml_node_bound_is_named_and_can_be_lifted() {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["validate", TRIAGE])
            .env("BATON_YAML_MAX_NODES", "50")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the bound is 50 YAML nodes") && err.contains("BATON_YAML_MAX_NODES"),
            "{err}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["validate", TRIAGE])
            .env("BATON_YAML_MAX_NODES", "100000")
            .output()
            .expect("runs");
        assert!(out.status.success());
    }

    /// Asserts that `doc` (the file `name`) fits the schema, listing where it does not.
    fn assert_fits(validator: &jsonschema::Validator, doc: &Value, name: &str) {
        let problems: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }

    /// Every example topology (YAML and TOML) validates against the checked-in JSON Schema —
    /// what editors check files against — not only against the generator's earlier output.
    #[test]
    fn every_example_fits_the_shipped_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("schema/topology.schema.json")).expect("schema"),
        )
        .expect("JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let mut checked = 0;
        for entry in std::fs::read_dir(root.join("examples/topologies")).expect("examples") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let doc: Value = if name.ends_with(".rules.yaml")
                || !(name.ends_with(".yaml") || name.ends_with(".toml"))
            {
                continue;
            } else if name.ends_with(".toml") {
                toml::from_str(&text).expect("TOML")
            } else {
                serde_saphyr::from_str(&text).expect("YAML")
            };
            assert_fits(&validator, &doc, name);
            checked += 1;
        }
        assert!(checked >= 8, "{checked}");
        // And the schema is not vacuous: a misspelt key is refused.
        let bad = serde_json::json!({"agents": {"lead": {"modles": ["m"]}}});
        assert!(!validator.is_valid(&bad));
    }

    /// Every example rules file validates against `schema/rules.schema.json` (what editors use,
    /// printed by `baton schema --rules`), which is current and not vacuous.
    #[test]
    fn every_rules_file_fits_the_shipped_rules_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(root.join("schema/rules.schema.json"))
            .expect("schema/rules.schema.json is shipped");
        let out = baton(&["schema", "--rules"]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            shipped,
            "regenerate with `cargo run -- schema --rules > schema/rules.schema.json`"
        );
        let schema: Value = serde_json::from_str(&shipped).expect("JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let mut checked = 0;
        for entry in std::fs::read_dir(root.join("examples/topologies")).expect("examples") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".rules.yaml") {
                continue;
            }
            let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read"))
                .expect("YAML");
            assert_fits(&validator, &doc, name);
            checked += 1;
        }
        assert!(checked >= 8, "{checked}");
        let bad = serde_json::json!({"rules": [{"last_match": "x", "reply": {"text": "y"}}]});
        assert!(!validator.is_valid(&bad), "a misspelt key is refused");
        let bad = serde_json::json!({"rules": [{"reply": {"text": "y", "confidence": 1.5}}]});
        assert!(!validator.is_valid(&bad), "confidence is 0 to 1");
    }

    #[test]
    fn schema_command_prints_the_shipped_schema() {
        let out = baton(&["schema"]);
        assert!(out.status.success());
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/topology.schema.json"),
        )
        .expect("schema/topology.schema.json is shipped");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            shipped,
            "regenerate with `cargo run -- schema > schema/topology.schema.json`"
        );
    }

    #[test]
    fn example_is_valid() {
        let out = baton(&["validate", TRIAGE]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn broken_file_names_file_line_and_fix() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
        let body = format!(
            "models:\n  small:\n    provider: scripted\n    rules: {}/ops-triage.rules.yaml\n    price: {{ input: 0.15, output: 0.6 }}\nagents:\n  lead:\n    models: [smal]\n",
            root.display()
        );
        let p = temp_file("broken.yaml", &body);
        let out = baton(&["validate", p.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("broken.yaml"), "{err}");
        assert!(
            err.contains(
                "error: agents.lead.models[smal]: model `smal` is not declared under `models:`"
            ),
            "{err}"
        );
        assert!(err.contains("broken.yaml:8:14"), "{err}");
        assert!(
            err.contains("8 |     models: [smal]"),
            "the offending line is shown: {err}"
        );
        assert!(
            err.contains("  |              ^^^^"),
            "under a caret: {err}"
        );
        assert!(err.contains("help: did you mean `small`?"), "{err}");
        // `run` refuses it the same way, with the invalid-input exit code.
        let out = baton(&["run", p.to_str().expect("utf-8 path"), "--task", "x"]);
        assert_eq!(out.status.code(), Some(2));
    }

    #[test]
    fn unknown_key_is_a_parse_error_with_position() {
        let p = temp_file("typo.yaml", "agents:\n  lead:\n    modles: [x]\n");
        let out = baton(&["validate", p.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("typo.yaml:3:"), "{err}");
        assert!(err.contains("modles"), "{err}");
    }
}

mod batch {
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
        let slow = temp_file(
            "batch-slow.yaml",
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
        std::thread::sleep(std::time::Duration::from_millis(800));
        let out = common::terminate(child);
        assert_eq!(
            out.status.code(),
            Some(6),
            "{}",
            String::from_utf8_lossy(&out.stderr)
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
}
