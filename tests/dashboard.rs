//! The Grafana dashboard is checked structurally (no Grafana server can run in CI): it parses, its
//! panels are laid out on the 24-column grid with unique ids, every query names only metrics Baton
//! exports, and the headline questions each have a panel.

use std::collections::BTreeSet;

use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/baton.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("dashboards/baton.json exists"))
        .expect("valid JSON")
}

/// Metric names used in a PromQL expression (histogram series mapped to their family).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("baton_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &expr[start..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.push(family.to_string());
        i = end;
    }
    out
}

#[test]
fn every_query_names_an_exported_metric() {
    let exported: BTreeSet<String> = baton::actors::METRICS
        .iter()
        .map(|(n, _, _)| (*n).to_string())
        .chain(
            [
                "baton_cost_usd_total",
                "baton_energy_joules_total",
                "baton_workflow_value_usd_total",
            ]
            .map(String::from),
        ) // derived by the endpoint
        .collect();
    let d = dashboard();
    let panels = d["panels"].as_array().expect("panels");
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate panel id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(x + w <= 24, "panel {} overflows the grid", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        assert!(
            !p["title"].as_str().unwrap_or("").is_empty(),
            "a panel without a title"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "queries use the datasource variable"
            );
            let expr = t["expr"].as_str().expect("expr");
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "query names no Baton metric: {expr}");
            for n in names {
                assert!(
                    exported.contains(&n),
                    "panel {} queries {n}, which Baton does not export",
                    p["title"]
                );
                used.insert(n);
            }
        }
    }
    for headline in [
        "baton_cost_usd_total",
        "baton_workflow_cost_usd",
        "baton_budget_remaining_usd",
        "baton_budget_cutoffs_total",
        "baton_budget_reroutes_total",
        "baton_restarts_total",
        "baton_model_request_duration_seconds",
        "baton_tool_calls_total",
        "baton_router_decisions_total",
        "baton_tool_cpu_seconds",
        "baton_policy_denials_total",
        "baton_model_retries_total",
        "baton_tool_output_tokens_saved_total",
        "baton_token_estimate_ratio",
        "baton_mcp_restarts_total",
        "baton_loop_roi",
        "baton_workflow_value_usd_total",
        "baton_workflow_energy_joules",
    ] {
        assert!(used.contains(headline), "no panel shows {headline}");
    }
}

/// Every query answers to the dashboard's filters: each metric selector names the `topology` and
/// `instance` variables (and `agent`, `model` where the family has them), and every range is
/// Grafana's (`$__rate_interval` for rates, `$__range` for a stat's total), never a hard-coded
/// `[5m]` that averages a loop's cheap ticks with its incident runs or misses a short run.
#[test]
fn every_query_follows_the_variables_and_grafanas_ranges() {
    let d = dashboard();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        vars,
        ["datasource", "topology", "agent", "model", "instance"]
    );
    for v in &d["templating"]["list"].as_array().expect("variables")[1..] {
        let q = v["query"]["query"].as_str().expect("query");
        assert!(q.starts_with("label_values("), "{q}");
        assert_eq!(
            v["allValue"], ".*",
            "All matches series without the label too"
        );
    }
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            for range in expr.split('[').skip(1) {
                let range = range.split(']').next().unwrap_or("");
                assert!(
                    range == "$__rate_interval" || (range == "$__range" && p["type"] == "stat"),
                    "panel {}: range [{range}] in {expr}",
                    p["title"]
                );
            }
            let selectors = expr.matches("baton_").count();
            for filter in ["topology=~\"$topology\"", "instance=~\"$instance\""] {
                assert_eq!(
                    expr.matches(filter).count(),
                    selectors,
                    "panel {}: every selector filters by {filter}: {expr}",
                    p["title"]
                );
            }
        }
    }
}
