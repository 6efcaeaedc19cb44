//! Integration tests of baton-topologies.
//!
//! - `examples`: the shipped example files validate, and the builder yields the same graph.
//! - `diagnostics`: broken topologies report every problem, each with position and hint.
//! - `corpus`: every file under `tests/broken/` is refused with the diagnostic its snapshot holds
//!   (`tests/snapshots/`); files under `tests/warnings/` are valid with warnings.

use std::path::{Path, PathBuf};

use baton_core::NanoUsd;
use baton_topologies::{
    AgentSpec, BudgetSpec, Diagnostic, Edge, ModelSpec, ToolKind, ToolSpec, Topology,
    TopologyBuilder, TopologyError,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/topologies")
}

mod examples {
    use super::*;

    #[test]
    fn every_example_validates() {
        let mut n = 0;
        for entry in std::fs::read_dir(examples()).expect("examples folder") {
            let p = entry.expect("entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".yaml") && !name.ends_with(".rules.yaml") {
                Topology::from_path(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1);
    }

    #[test]
    fn builder_yields_the_same_graph_as_the_file() {
        let file = Topology::from_path(examples().join("ops-triage.yaml")).expect("valid");
        let usd = |s: &str| NanoUsd::parse_usd(s).expect("amount");
        let budget = |max: &str, steps: u32| BudgetSpec {
            max_usd: Some(baton_core::Usd(usd(max))),
            max_steps: Some(steps),
            ..BudgetSpec::default()
        };
        let mut small = ModelSpec::scripted("ops-triage.rules.yaml", usd("0.15"), usd("0.60"))
            .max_output_tokens(512)
            .params(18.0, None);
        small.latency = Some(std::time::Duration::from_millis(40));
        small.price.as_mut().expect("priced").cached_input = Some(baton_core::Usd(usd("0.075")));
        let mut frontier = ModelSpec::scripted("ops-triage.rules.yaml", usd("3"), usd("15"))
            .params(137.5, Some(440.0));
        frontier.latency = Some(std::time::Duration::from_millis(150));
        frontier.price.as_mut().expect("priced").cached_input = Some(baton_core::Usd(usd("0.30")));
        let mut deploys = ToolSpec::builtin(ToolKind::LogSearch, "fixtures/deploys.log");
        deploys.description = file.spec().tools["read_deploy_log"].description.clone();
        let mut oncall = ToolSpec::builtin(ToolKind::LogSearch, "fixtures/oncall.txt");
        oncall.description = file.spec().tools["oncall_schedule"].description.clone();
        let spec_of = |a: &str| file.spec().agents[a].clone();
        let mut triage_budget = budget("0.10", 8);
        triage_budget.max_wall = Some(std::time::Duration::from_secs(300));
        let mut restart = ToolSpec::builtin(ToolKind::RestartService, "x");
        restart.path = None;
        let policy = baton_topologies::PolicySpec {
            roles: [
                ("commander", vec!["restart_service"]),
                (
                    "investigator",
                    vec!["query_metrics", "read_deploy_log", "lookup_owners"],
                ),
                ("dispatcher", vec!["oncall_schedule"]),
            ]
            .into_iter()
            .map(|(r, t)| (r.to_string(), t.into_iter().map(str::to_string).collect()))
            .collect(),
            dry_run_first: Some(true),
            approval: Some(true),
            approval_timeout: Some(std::time::Duration::from_secs(120)),
            ..baton_topologies::PolicySpec::default()
        };
        let code = TopologyBuilder::new("ops-triage")
            .base_dir(examples())
            .model("small", small)
            .model("frontier", frontier)
            .tool(
                "query_metrics",
                ToolSpec::builtin(ToolKind::MetricsSeries, "fixtures/metrics"),
            )
            .tool("read_deploy_log", deploys)
            .tool(
                "lookup_owners",
                ToolSpec::builtin(ToolKind::Codeowners, "fixtures/CODEOWNERS"),
            )
            .tool("oncall_schedule", oncall)
            .tool("restart_service", restart)
            .policy(policy)
            .agent(
                "triage",
                AgentSpec::new(["frontier"])
                    .role("commander")
                    .tools(["restart_service"])
                    .children(["rca", "paging"])
                    .budget(triage_budget)
                    .value(
                        baton_topologies::ValueSpec::fixed(baton_core::Usd(usd("0.05")))
                            .on_answer_matching(
                                "Suspected change: [0-9a-f]{7}",
                                baton_core::Usd(usd("0.50")),
                            ),
                    )
                    .system(spec_of("triage").system.expect("prompt"))
                    .description(spec_of("triage").description.expect("description")),
            )
            .agent(
                "rca",
                AgentSpec::new(["small", "frontier"])
                    .role("investigator")
                    .tools(["query_metrics", "read_deploy_log", "lookup_owners"])
                    .budget(budget("0.03", 8))
                    .system(spec_of("rca").system.expect("prompt"))
                    .description(spec_of("rca").description.expect("description")),
            )
            .agent(
                "paging",
                AgentSpec::new(["small"])
                    .role("dispatcher")
                    .tools(["oncall_schedule"])
                    .budget(budget("0.01", 4))
                    .system(spec_of("paging").system.expect("prompt"))
                    .description(spec_of("paging").description.expect("description")),
            )
            .build()
            .expect("valid");
        assert_eq!(code.spec(), file.spec());
        let edges = |t: &Topology| {
            let g = t.graph();
            let mut e: Vec<(String, String, Edge)> = g
                .edge_indices()
                .filter_map(|i| {
                    g.edge_endpoints(i)
                        .map(|(a, b)| (g[a].name.to_string(), g[b].name.to_string(), g[i]))
                })
                .collect();
            e.sort_by(|a, b| (&a.0, &a.1, a.2 as u8).cmp(&(&b.0, &b.1, b.2 as u8)));
            e
        };
        assert_eq!(edges(&code), edges(&file));
        assert_eq!(code.graph()[code.root()], file.graph()[file.root()]);
        assert_eq!(
            code.models().collect::<Vec<_>>(),
            file.models().collect::<Vec<_>>()
        );
    }
}

mod diagnostics {
    use super::*;

    const HEAD: &str = "models:\n  m:\n    provider: custom\n    price: { input: 1, output: 2 }\n";

    fn diagnostics(body: &str) -> Vec<Diagnostic> {
        let text = format!("{HEAD}{body}");
        match Topology::from_yaml_str(&text, Path::new("t.yaml"), Path::new(".")) {
            Err(TopologyError::Invalid { diagnostics, .. }) => diagnostics,
            Err(other) => panic!("expected validation errors, got {other}"),
            Ok(_) => panic!("expected validation errors, got a valid topology"),
        }
    }

    fn has(ds: &[Diagnostic], line: usize, needle: &str) {
        assert!(
            ds.iter()
                .any(|d| d.line == Some(line) && d.to_string().contains(needle)),
            "no diagnostic at line {line} containing {needle:?} in:\n{}",
            ds.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn all_problems_at_once() {
        let ds = diagnostics(
            "agents:\n  lead:\n    models: [m, nope]\n    tools: [ghost]\n    children: [a, missing]\n  a:\n    models: []\n",
        );
        // line numbers count the 4 header lines
        has(&ds, 7, "model `nope` is not declared");
        has(&ds, 8, "tool `ghost` is not declared");
        has(&ds, 9, "child `missing` is not a declared agent");
        has(&ds, 11, "agent `a` has no model");
        assert_eq!(ds.len(), 4, "{ds:?}");
    }

    #[test]
    fn supervision_must_be_a_tree() {
        let ds = diagnostics(
            "agents:\n  lead:\n    models: [m]\n    children: [a, b]\n  a:\n    models: [m]\n    children: [b]\n  b:\n    models: [m]\n",
        );
        has(
            &ds,
            8,
            "agents.lead.children[b]: agent `b` already has the parent `a`",
        );
    }

    #[test]
    fn cycles_and_several_roots() {
        let ds = diagnostics(
            "agents:\n  a:\n    models: [m]\n    children: [b]\n  b:\n    models: [m]\n    children: [a]\n",
        );
        assert!(
            ds.iter()
                .any(|d| d.message.contains("supervision has a cycle")),
            "{ds:?}"
        );
        let ds = diagnostics("agents:\n  a:\n    models: [m]\n  b:\n    models: [m]\n");
        assert!(
            ds.iter().any(|d| d
                .message
                .contains("several agents have no parent (`a`, `b`)")),
            "{ds:?}"
        );
    }

    #[test]
    fn budgets() {
        let ds = diagnostics(
            "agents:\n  lead:\n    models: [m]\n    children: [a]\n    budget: { max_usd: 0.5 }\n  a:\n    models: [m]\n    budget:\n      max_usd: 2\n      max_steps: 0\n",
        );
        has(
            &ds,
            13,
            "budget $2.000000 is larger than its parent `lead`'s $0.500000",
        );
        has(&ds, 14, "`max_steps` must be at least 1");
        let ds = diagnostics("agents:\n  lead:\n    models: [m]\n    budget: { max_usd: 0 }\n");
        has(&ds, 8, "a zero budget can never run");
        // The topology's own budget: non-zero, each period inside the longer one.
        let ds = diagnostics(
            "agents:\n  lead:\n    models: [m]\nbudget:\n  max_usd: 10\n  max_usd_per_day: 20\n  max_usd_per_hour: 0\n",
        );
        has(&ds, 10, "`max_usd_per_day` is more than `max_usd`");
        has(&ds, 11, "`max_usd_per_hour` must be more than zero");
        let ok = format!(
            "{HEAD}agents:\n  lead:\n    models: [m]\nbudget:\n  max_usd: 10\n  max_usd_per_day: 5\n  max_usd_per_hour: 1\n"
        );
        let t = Topology::from_yaml_str(&ok, Path::new("t.yaml"), Path::new(".")).expect("valid");
        assert_eq!(t.budget().max, Some(baton_core::NanoUsd::from_usd(10)));
        assert_eq!(t.budget().per_day, Some(baton_core::NanoUsd::from_usd(5)));
        assert_eq!(t.budget().per_hour, Some(baton_core::NanoUsd::from_usd(1)));
    }

    #[test]
    fn delegate_is_reserved_and_builtins_need_paths() {
        let text = "models:\n  m:\n    provider: custom\n    price: { input: 1, output: 2 }\ntools:\n  logs:\n    kind: log_search\n    path: nowhere.log\n  delegate:\n    kind: custom\nagents:\n  lead:\n    models: [m]\n    tools: [delegate]\n";
        let Err(TopologyError::Invalid {
            diagnostics: ds, ..
        }) = Topology::from_yaml_str(text, Path::new("t.yaml"), Path::new("."))
        else {
            panic!("expected errors")
        };
        has(&ds, 8, "file `./nowhere.log` not found");
        has(&ds, 9, "`delegate` is a built-in tool name");
        has(&ds, 14, "`delegate` is built in");
    }

    /// `shell` runs in its `path` (a folder), by default the topology file's directory.
    #[test]
    fn shell_runs_in_its_folder() {
        let tool = |path: &str| {
            format!(
                "{HEAD}tools:\n  sh:\n    kind: shell\n    allow: [ls]\n{path}agents:\n  lead:\n    models: [m]\n    tools: [sh]\n"
            )
        };
        let base = std::env::temp_dir();
        let t = Topology::from_yaml_str(&tool(""), Path::new("t.yaml"), &base).expect("valid");
        let sh = t.tools().find(|d| &*d.name == "sh").expect("sh");
        assert_eq!(sh.path.as_deref(), Some(base.as_path()));
        let ds = match Topology::from_yaml_str(
            &tool("    path: no-such-folder\n"),
            Path::new("t.yaml"),
            &base,
        ) {
            Err(TopologyError::Invalid { diagnostics, .. }) => diagnostics,
            _ => panic!("expected errors"),
        };
        has(
            &ds,
            9,
            "no-such-folder` not found (where `sh` runs its commands)",
        );
    }

    #[test]
    fn scripted_models_need_rules_that_exist() {
        let text = "models:\n  s:\n    provider: scripted\n    price: { input: 1, output: 2 }\n  r:\n    provider: scripted\n    rules: missing.rules.yaml\n    price: { input: 1, output: 2 }\nagents:\n  lead:\n    models: [s, r]\n";
        let Err(TopologyError::Invalid {
            diagnostics: ds, ..
        }) = Topology::from_yaml_str(text, Path::new("t.yaml"), Path::new("."))
        else {
            panic!("expected errors")
        };
        has(&ds, 3, "scripted model `s` needs `rules:`");
        has(&ds, 7, "rules file `./missing.rules.yaml` not found");
    }

    #[test]
    fn parse_errors_have_positions() {
        for (body, line, needle) in [
            (
                "agents:\n  lead:\n    models: [m]\n    budget: { max_usd: -1 }\n",
                8,
                "cannot be negative",
            ),
            (
                "agents:\n  lead:\n    models: [m]\n    budget: { max_usd: lots }\n",
                8,
                "dollar amount",
            ),
            (
                "agents:\n  lead:\n    models: [m]\n    budget: { max_wall: 5 parsecs }\n",
                8,
                "invalid duration",
            ),
            (
                "agents:\n  lead:\n    modles: [m]\n",
                7,
                "did you mean `models`?",
            ),
        ] {
            let text = format!("{HEAD}{body}");
            match Topology::from_yaml_str(&text, Path::new("t.yaml"), Path::new(".")) {
                Err(TopologyError::Parse {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{message}");
                    assert!(message.contains(needle), "{message}");
                }
                Err(other) => panic!("expected a parse error, got {other}"),
                Ok(_) => panic!("expected a parse error for {body}"),
            }
        }
    }

    #[test]
    fn builder_errors_have_paths() {
        let err = TopologyBuilder::new("x")
            .model(
                "m",
                ModelSpec::custom(baton_core::Price::per_million_tokens(
                    NanoUsd(1),
                    NanoUsd(1),
                )),
            )
            .agent("lead", AgentSpec::new(["mm"]))
            .build()
            .expect_err("invalid");
        let s = err.to_string();
        assert!(
            s.contains("<builder>")
                && s.contains("agents.lead.models[mm]")
                && s.contains("did you mean `m`?"),
            "{s}"
        );
    }
}

mod corpus {
    use super::*;

    fn files(dir: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("corpus folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "toml"))
            .collect();
        v.sort();
        v
    }

    fn settings() -> insta::Settings {
        let mut s = insta::Settings::clone_current();
        s.set_snapshot_path("snapshots");
        s.set_prepend_module_to_snapshot(false);
        s.set_omit_expression(true);
        s
    }

    #[test]
    fn every_broken_file_is_refused_with_its_diagnostic() {
        let files = files("tests/broken");
        assert!(files.len() >= 40, "the corpus has {} files", files.len());
        settings().bind(|| {
            for f in &files {
                let rendered = match Topology::from_path(f) {
                    Ok(_) => panic!("{} should be refused", f.display()),
                    Err(e) => e.render(),
                };
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 name")
                    .to_string();
                insta::assert_snapshot!(name, rendered);
            }
        });
    }

    #[test]
    fn suspicious_files_are_valid_with_warnings() {
        settings().bind(|| {
            for f in &files("tests/warnings") {
                let t = Topology::from_path(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                assert!(!t.warnings().is_empty(), "{} has no warning", f.display());
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 name")
                    .to_string();
                insta::assert_snapshot!(name, t.render_warnings());
            }
        });
    }
}

mod roundtrip {
    use std::time::Duration;

    use baton_core::Usd;
    use baton_topologies::{OnCrash, RestartType, Strategy, SupervisionSpec};
    use proptest::prelude::*;

    use super::*;

    fn usd(nanos: u64) -> Usd {
        Usd(NanoUsd(nanos))
    }

    prop_compose! {
        fn topology_spec()(
            n in 1usize..8,
            parents in proptest::collection::vec(0usize..8, 8),
            models in 1usize..4,
            prices in proptest::collection::vec((0u64..20_000_000_000, 0u64..80_000_000_000), 4),
            budgets in proptest::collection::vec((proptest::option::of(1u64..2_000_000_000), proptest::option::of(1u32..30), proptest::option::of(1u64..600)), 8),
            flags in proptest::collection::vec((0u8..4, 0u8..3, 0u8..4), 8),
        ) -> baton_topologies::TopologySpec {
            let mut b = TopologyBuilder::new("generated");
            for (m, &(i, o)) in prices.iter().enumerate().take(models) {
                b = b.model(format!("model-{m}"), ModelSpec::custom(baton_core::Price::per_million_tokens(NanoUsd(i), NanoUsd(o))).max_output_tokens(256 + m as u32));
            }
            let mut children: Vec<Vec<String>> = vec![Vec::new(); n];
            let mut depth = vec![0u32; n];
            for i in 1..n {
                let p = parents[i] % i;
                children[p].push(format!("agent-{i}"));
                depth[i] = depth[p] + 1;
            }
            let root_cap = budgets[0].0;
            for i in 0..n {
                let (own_cap, steps, wall) = budgets[i];
                // A child's cap never exceeds its parent's: halve it at each level.
                let cap = own_cap.and(root_cap).map(|c| c >> depth[i]).filter(|c| *c > 0);
                let (restart, crash, strategy) = flags[i];
                let mut a = AgentSpec::new([format!("model-{}", i % models)]).children(children[i].clone()).budget(BudgetSpec {
                    max_usd: cap.map(usd),
                    max_steps: steps,
                    max_wall: wall.map(Duration::from_secs),
                    max_tokens: None,
                });
                match restart {
                    1 => a = a.restart(RestartType::Transient),
                    2 => a = a.restart(RestartType::Temporary),
                    _ => {}
                }
                if crash == 1 {
                    a = a.on_crash(OnCrash::Retry);
                }
                if !children[i].is_empty() && strategy > 0 {
                    a = a.supervision(SupervisionSpec {
                        strategy: Some([Strategy::OneForOne, Strategy::OneForAll, Strategy::RestForOne][strategy as usize - 1]),
                        max_restarts: Some(u32::from(strategy)),
                        within: Some(Duration::from_secs(u64::from(strategy) * 7)),
                        shutdown: None,
                    });
                }
                b = b.agent(format!("agent-{i}"), a);
            }
            b.build().expect("generated topologies are valid").spec().clone()
        }
    }

    fn edges(t: &Topology) -> Vec<(String, String, u8)> {
        let g = t.graph();
        let mut e: Vec<_> = g
            .edge_indices()
            .filter_map(|i| {
                g.edge_endpoints(i)
                    .map(|(a, b)| (g[a].name.to_string(), g[b].name.to_string(), g[i] as u8))
            })
            .collect();
        e.sort();
        e
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random valid topologies survive YAML and TOML and come back as the same graph.
        #[test]
        fn yaml_and_toml_round_trip_to_the_same_graph(spec in topology_spec()) {
            let built = Topology::from_spec(spec.clone(), Path::new(".")).expect("valid");
            let yaml = serde_saphyr::to_string(&spec).expect("to YAML");
            let from_yaml = Topology::from_yaml_str(&yaml, Path::new("g.yaml"), Path::new(".")).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
            let toml = toml::to_string(&spec).expect("to TOML");
            let from_toml = Topology::from_toml_str(&toml, Path::new("g.toml"), Path::new(".")).map_err(|e| TestCaseError::fail(format!("{e}\n{toml}")))?;
            prop_assert_eq!(from_yaml.spec(), &spec);
            prop_assert_eq!(from_toml.spec(), &spec);
            prop_assert_eq!(edges(&from_yaml), edges(&built));
            prop_assert_eq!(edges(&from_toml), edges(&built));
            prop_assert_eq!(from_yaml.graph()[from_yaml.root()].clone(), built.graph()[built.root()].clone());
        }
    }
}

mod scale {
    use baton_topologies::Topology;
    use std::fmt::Write as _;

    /// A YAML fleet of `n` agents: a root over `n / 1000` leads over workers.
    fn fleet_yaml(n: usize) -> String {
        let leads = n / 1000;
        let mut y = String::from(
            "models:\n  m: { provider: custom, price: { input: 1, output: 2 } }\nagents:\n",
        );
        let names: Vec<String> = (0..leads).map(|l| format!("lead{l}")).collect();
        let _ = writeln!(
            y,
            "  root: {{ models: [m], children: [{}] }}",
            names.join(", ")
        );
        for l in 0..leads {
            let workers: Vec<String> = (0..999).map(|w| format!("w{l}_{w}")).collect();
            let _ = writeln!(
                y,
                "  lead{l}: {{ models: [m], children: [{}] }}",
                workers.join(", ")
            );
            for w in &workers {
                let _ = writeln!(y, "  {w}: {{ models: [m], activation: lazy }}");
            }
        }
        y
    }

    /// A 100,000-agent fleet loads from YAML (serde-saphyr's default node budget stopped it at
    /// about 50,000, with a message naming no limit a user could act on).
    #[test]
    fn a_100k_agent_yaml_fleet_loads() {
        let text = fleet_yaml(100_000);
        let t = Topology::from_yaml_str(&text, "fleet.yaml".as_ref(), ".".as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.graph().node_count(), 100_001);
    }
}
