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
    let trail = std::env::temp_dir().join(format!("baton-audit-cli-{}.jsonl", std::process::id()));
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
    assert!(
        records.iter().any(|r| r["kind"] == "task_end"
            && r["agent"] == "triage"
            && r["outcome"] == "completed")
    );
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
    // The start line is printed just before the runtime starts: wait until its signal handler
    // is installed (polled, not a fixed sleep).
    common::wait_until_catching(child.id(), 15);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
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
        answer
            .ends_with("[output cut by Baton at 64 bytes: the program wrote more and was stopped]"),
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

/// `--json` reports carry the policy's decisions (#19): the dry run allowed, the approval
/// requested, the real restart denied (unattended), with the rule and why.
#[test]
fn json_reports_carry_policy_decisions() {
    let (r, _) = json_report(&["run", TRIAGE, "--task", ALERT, "--json"]);
    let policy = r["policy"].as_array().expect("policy");
    let seen: Vec<(String, String, String)> = policy
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().expect(k).to_string();
            (s("tool"), s("decision"), s("rule"))
        })
        .collect();
    let want = |t: &str, d: &str, ru: &str| (t.to_string(), d.to_string(), ru.to_string());
    assert_eq!(
        seen,
        [
            want("restart_service", "allowed", "dry_run"),
            want("restart_service", "requested", "approval"),
            want("restart_service", "denied", "approval"),
        ],
        "{policy:#?}"
    );
    assert!(policy.iter().all(|p| p["agent"] == "triage"));
    assert!(
        policy[2]["reason"]
            .as_str()
            .expect("reason")
            .contains("denied at once (unattended runs never wait)"),
        "{policy:#?}"
    );
}

/// The model's text beside its tool calls is shown (#19): the step log says what the commander
/// said when it delegated, and the audit's model_call record carries it as `said`.
#[test]
fn the_models_text_beside_tool_calls_is_shown() {
    let trail = temp_path("said.audit.jsonl");
    let out = baton(&[
        "run",
        TRIAGE,
        "--task",
        ALERT,
        "--audit",
        trail.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let step = text.find("[triage] step 1 ·").expect("step 1");
    let said = text
        .find("[triage] says: Delegating root-cause analysis.")
        .unwrap_or_else(|| panic!("{text}"));
    let call = text.find("[triage] → delegate").expect("the delegation");
    assert!(step < said && said < call, "{text}");
    let first: Value = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|r| r["kind"] == "model_call")
        .expect("a model call");
    assert_eq!(first["said"], "Delegating root-cause analysis.");
    // A final answer is the task's outcome, not a `says` line.
    assert!(!text.contains("says: Suspected change"), "{text}");
}
