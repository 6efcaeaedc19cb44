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
        records.iter().any(
            |r| r.to_string().contains("files__write_file") && r.to_string().contains("denied")
        ),
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
        if name.ends_with(".rules.yaml") || !(name.ends_with(".yaml") || name.ends_with(".toml")) {
            continue;
        }
        // The local-first example names the embedded model's file, fetched by a script;
        // tests/local.rs runs it (required in CI).
        let local = name == "local-first.yaml";
        if local && !local_model_fetched() {
            eprintln!("skipped {name}: its model is not fetched (scripts/fetch-local-model.sh)");
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
        // research-fleet.yaml keeps its budget on a shared ledger named by DATABASE_URL.
        if name == "research-fleet.yaml" {
            let Some((_rt, url)) = super::ledger::database("example_fleet") else {
                continue;
            };
            let out = Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["run", &file, "--task", "a task for the example", "--json"])
                .env("DATABASE_URL", &url)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("baton runs");
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
            assert_eq!(
                (r["outcome"].as_str(), out.status.code()),
                (Some("completed"), Some(0)),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let status = Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["ledger", "status", "--json"])
                .env("DATABASE_URL", &url)
                .output()
                .expect("baton runs");
            let listed = String::from_utf8_lossy(&status.stdout);
            for budget in [
                "research-fleet",
                "research-fleet/day/",
                "research-fleet/hour/",
            ] {
                assert!(
                    listed.contains(&format!("\"budget\":\"{budget}")),
                    "{listed}"
                );
            }
            n += 1;
            continue;
        }
        let (r, code) = json_report(&["run", &file, "--task", "a task for the example", "--json"]);
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
