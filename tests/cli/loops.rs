//! `baton run` on standing loops: bounded runs, breakers, approvals over HTTP, state that survives SIGKILL, grace.

use super::*;

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
        // The hour's spend beside the day's (latency-watch has per_hour_usd: 0.05).
        assert_eq!(u(&r["hour_spent_nanousd"]), spent);
        assert_eq!(u(&r["hour_limit_nanousd"]), 50_000_000);
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
        verdict.starts_with("INCIDENT: Suspected change: 4f2a9c1") && verdict.contains("Paged @"),
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
    let audit = temp_path("approve.audit.jsonl");
    let (topo, state, audit) = (
        topo.to_str().expect("utf-8"),
        state.to_str().expect("utf-8"),
        audit.to_str().expect("utf-8"),
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
        "--audit",
        audit,
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
    // The approval names the run that asked for it, and says when in RFC 3339 too.
    let asked = &shown["approvals"][0];
    assert_eq!(
        (&asked["schedule"], &asked["run"]),
        (&Value::from("fix"), &Value::from(1)),
        "{shown:#}"
    );
    let requested = asked["requested"].as_str().expect("requested");
    assert!(
        requested.ends_with('Z') && requested.len() == 24,
        "{requested}"
    );
    assert_eq!(
        shown["loops"][0]["runs"][0]["task"], asked["root"],
        "{shown:#}"
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
        "--audit",
        audit,
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
    // The trail, appended by both processes: a run_start for each run, every record of a run
    // tagged with its schedule and number, and task ids that never repeat across the restart.
    let records: Vec<Value> = std::fs::read_to_string(audit)
        .expect("the trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    let starts: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "run_start")
        .collect();
    assert_eq!(starts.len(), 2, "{records:#?}");
    let roots: Vec<u64> = starts.iter().map(|r| u(&r["task"])).collect();
    assert_ne!(roots[0], roots[1], "ids restart at the clock, not at 1");
    for (n, root) in roots.iter().enumerate() {
        let of_run: Vec<&Value> = records.iter().filter(|r| r["root"] == *root).collect();
        assert!(of_run.len() > 2, "{of_run:#?}");
        for r in of_run {
            assert_eq!(
                (&r["schedule"], u(&r["run"])),
                (&Value::from("fix"), n as u64 + 1),
                "{r}"
            );
        }
    }
    let started: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "task_start")
        .map(|r| u(&r["task"]))
        .collect();
    let mut unique = started.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), started.len(), "{started:?}");
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

/// The loop's console tells the story (#19): every line starts with a time, the run line shows
/// the hour's spend beside the day's, and `--verbose` prints each run's step log and agent
/// table as a `--task` run does.
#[test]
fn loop_lines_carry_a_time_the_hours_spend_and_verbose_step_logs() {
    let out = baton(&[
        "run",
        "examples/topologies/latency-watch.yaml",
        "--for",
        "1s",
        "--verbose",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let run = text
        .lines()
        .find(|l| l.contains("[search-latency] run 1:"))
        .unwrap_or_else(|| panic!("a run line:\n{text}"));
    let time = run.get(..8).expect("a time");
    assert!(
        time.len() == 8
            && time.chars().enumerate().all(|(i, c)| if i == 2 || i == 5 {
                c == ':'
            } else {
                c.is_ascii_digit()
            }),
        "{run}"
    );
    assert!(run.contains(" of $0.500000 · this hour $"), "{run}");
    assert!(run.contains(" of $0.050000 · quiet:"), "{run}");
    // --verbose: the step log and the agent table, before the run line.
    let step = text.find("[watcher] step 1 · local").expect("the step log");
    let table = text.find("agent   tasks calls").expect("the agent table");
    let line = text.find("[search-latency] run 1:").expect("the run line");
    assert!(step < table && table < line, "{text}");
    // Without it, neither.
    let quiet = baton(&[
        "run",
        "examples/topologies/latency-watch.yaml",
        "--for",
        "1s",
    ]);
    let text = String::from_utf8_lossy(&quiet.stdout);
    assert!(
        !text.contains("[watcher] step 1") && !text.contains("agent   tasks"),
        "{text}"
    );
}

/// A loop's run line says what the policy refused (#19): the ops loop's incidents propose a
/// restart, which needs an approval no one gives in an unattended run.
#[test]
fn a_loop_run_line_says_what_was_denied() {
    let topo = fast_ops_loop();
    let out = baton(&["run", topo.to_str().expect("utf-8"), "--for", "1500ms"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let incident = text
        .lines()
        .find(|l| l.contains("[checkout-latency] run 1:"))
        .unwrap_or_else(|| panic!("a checkout run:\n{text}"));
    assert!(
        incident.contains(" · denied restart_service (approval) · "),
        "{incident}"
    );
    let quiet = text
        .lines()
        .find(|l| l.contains("[search-latency] run 1:"))
        .unwrap_or_else(|| panic!("a search run:\n{text}"));
    assert!(!quiet.contains("denied"), "{quiet}");
}

/// With `BATON_APPROVALS_TOKEN` set, the approvals endpoint answers only requests bearing
/// that token: none or a wrong one is 401 (and approves nothing); `baton approvals` sends the
/// token from the same variable, and the approved call then runs.
#[test]
fn the_approvals_endpoint_requires_its_bearer_token() {
    use std::io::BufRead;
    let topo = restart_loop("token", "");
    let addr = free_addr();
    let token = "s3cret-approvals-token";
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", topo.to_str().expect("utf-8"), "--json"])
        .args(["--approvals-addr", &addr])
        .env("BATON_APPROVALS_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let with_token = |args: &[&str], token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
        c.args(args).env_remove("BATON_APPROVALS_TOKEN");
        if let Some(t) = token {
            c.env("BATON_APPROVALS_TOKEN", t);
        }
        c.output().expect("runs")
    };
    // Wait for the request, asking with the token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let id = loop {
        let out = with_token(
            &["approvals", "list", "--addr", &addr, "--json"],
            Some(token),
        );
        let first = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<Value>(l).ok());
        if let Some(id) = first.and_then(|v| v["id"].as_u64()) {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "no request listed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let get = |auth: &str| {
        format!("GET /approvals HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
    };
    assert_eq!(raw_http(&addr, &get("")), 401, "no token");
    assert_eq!(
        raw_http(&addr, &get("Authorization: Bearer wrong-token\r\n")),
        401
    );
    assert_eq!(
        raw_http(&addr, &get(&format!("Authorization: Bearer {token}\r\n"))),
        200
    );
    let approve = |auth: &str| {
        format!(
            "POST /approvals/{id}/approve HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    assert_eq!(raw_http(&addr, &approve("")), 401);
    assert_eq!(
        raw_http(&addr, &approve("Authorization: Bearer wrong-token\r\n")),
        401
    );
    let refused = with_token(
        &["approvals", "approve", &id.to_string(), "--addr", &addr],
        None,
    );
    assert!(!refused.status.success(), "the CLI without the token");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = with_token(
        &["approvals", "list", "--addr", &addr, "--json"],
        Some(token),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"pending\""),
        "nothing was approved without the token"
    );
    let approved = with_token(
        &["approvals", "approve", &id.to_string(), "--addr", &addr],
        Some(token),
    );
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let run: Value =
        serde_json::from_str(&lines.next().expect("a run line").expect("utf-8")).expect("JSON");
    assert_eq!(run["report"]["outcome"], "completed", "{run}");
    child.kill().expect("stop");
    let _ = child.wait();
}
