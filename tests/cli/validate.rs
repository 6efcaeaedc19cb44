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

/// `--detail` adds roles, tools (kind, effect; destructive in red) and the loops that tick the
/// root (#19); without it the drawing is agents and edges only.
#[test]
fn graph_detail_shows_roles_tools_and_schedules() {
    let file = "examples/topologies/ops-loop.yaml";
    let plain = String::from_utf8_lossy(&baton(&["graph", file]).stdout).into_owned();
    assert!(
        !plain.contains("tool:") && !plain.contains("schedule:"),
        "{plain}"
    );
    let out = baton(&["graph", file, "--detail"]);
    assert!(out.status.success());
    let dot = String::from_utf8_lossy(&out.stdout);
    for needle in [
        r#""triage" [label="triage\nfrontier\n$0.100000 · 8 steps · 5m\nrole: commander"];"#,
        r#""tool:restart_service" [shape=note, label="restart_service\nrestart_service · destructive", color=red, fontcolor=red];"#,
        r#""tool:query_metrics" [shape=note, label="query_metrics\nmetrics_series · read"];"#,
        r#""rca" -> "tool:lookup_owners" [style=dashed, color=gray, arrowhead=none];"#,
        r#""schedule:search-latency" [shape=hexagon, label="search-latency\nevery 1m"];"#,
        r#""schedule:checkout-latency" -> "watcher" [color=darkgreen, label="ticks"];"#,
    ] {
        assert!(dot.contains(needle), "missing {needle}:\n{dot}");
    }
    // A tool two agents use is drawn once, linked to both.
    assert_eq!(dot.matches("\"tool:query_metrics\" [shape").count(), 1);
    assert_eq!(dot.matches("-> \"tool:query_metrics\"").count(), 2);
    let out = baton(&["graph", file, "--detail", "--format", "mermaid"]);
    let mermaid = String::from_utf8_lossy(&out.stdout);
    assert!(mermaid.contains("role: commander"), "{mermaid}");
    assert!(
        mermaid.contains("restart_service<br/>restart_service · destructive"),
        "{mermaid}"
    );
    assert!(mermaid.contains("stroke:#d00"), "{mermaid}");
    assert!(mermaid.contains("search-latency<br/>every 1m"), "{mermaid}");
    assert!(mermaid.contains("-->|ticks|"), "{mermaid}");
    // The effect is the tool's own (`Tool::effect()`), not a table in the drawing code: a
    // `shell` tool is destructive, and a file's `effect:` wins.
    let rules = temp_file(
        "graph-shell.rules.yaml",
        "rules:\n  - reply: { text: ok }\n",
    );
    let shells = temp_file(
        "graph-shell.yaml",
        &format!(
            "models:\n  m: {{ provider: scripted, rules: {}, price: {{ input: 1, output: 1 }} }}\n\
             tools:\n  sh: {{ kind: shell, allow: [cat] }}\n  \
             ls: {{ kind: shell, allow: [ls], effect: read }}\n\
             agents:\n  ops: {{ models: [m], tools: [sh, ls] }}\n",
            rules.display()
        ),
    );
    let out = baton(&["graph", shells.to_str().expect("utf-8"), "--detail"]);
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(
        dot.contains(r#"label="sh\nshell · destructive", color=red"#),
        "{dot}"
    );
    assert!(dot.contains(r#"label="ls\nshell · read"]"#), "{dot}");
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
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
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
        let doc: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read")).expect("YAML");
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

/// `baton rules test`: the rule that fires for a step, why the earlier ones do not, its reply
/// with templates filled; exit 1 when no rule fires, 2 for an agent the topology lacks (with a
/// did-you-mean). `baton run --explain` names the rule under each step.
#[test]
fn rules_test_explains_which_rule_fires() {
    let out = baton(&[
        "rules",
        "test",
        "examples/topologies/ops-triage.yaml",
        "--agent",
        "rca",
        "--step",
        "2",
        "--last",
        "checkout_p99_ms: baseline 120; spike at 14:05: 260 ms",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rule  7 ✗ agent: rca · step: 1 — it is for step 1"),
        "{text}"
    );
    assert!(
        text.contains("rule 10 ✓ agent: rca · last_matches: 'spike at"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"call: read_deploy_log {"before":"14:05","contains":"deploy checkout","last":1}"#
        ),
        "{text}"
    );
    let out = baton(&[
        "rules",
        "test",
        "examples/topologies/ops-triage.yaml",
        "--agent",
        "rca",
        "--step",
        "2",
        "--last",
        "nothing useful",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["model"], "small");
    assert_eq!(
        out.status.code(),
        Some(i32::from(v["fires"].is_null())),
        "{v:#}"
    );
    let out = baton(&[
        "rules",
        "test",
        "examples/topologies/ops-triage.yaml",
        "--agent",
        "rcaa",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no agent `rcaa`") && err.contains("did you mean `rca`?"),
        "{err}"
    );
    let out = baton(&[
        "run",
        "examples/topologies/ops-triage.yaml",
        "--task",
        "p99 latency of checkout doubled at 14:05",
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  ↳ rule 1 (agent: triage · step: 1)"),
        "{text}"
    );
    assert!(
        text.contains("    ↳ rule 7 (agent: rca · step: 1)"),
        "{text}"
    );
}
