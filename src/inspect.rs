//! The commands that read a file and print what they find: `baton validate` (topologies and the
//! rules files they name), `baton graph`, `baton state` and `baton audit verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use baton::topologies::Topology;

use crate::EXIT_INVALID;

/// `baton validate --format`.
#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ValidateFormat {
    Human,
    Json,
}

/// `baton graph --format`.
#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
}

/// `baton validate FILE...`: every file's diagnostics; exit 1 when any has an error.
pub(crate) fn validate(files: &[PathBuf], format: ValidateFormat) -> ExitCode {
    use baton::topologies::{Diagnostic, Severity, TopologyError};
    let mut ok = true;
    let mut reports = Vec::new();
    for f in files {
        let (diagnostics, rendered): (Vec<Diagnostic>, String) = match Topology::from_path(f) {
            Ok(t) => (t.warnings().to_vec(), t.render_warnings()),
            Err(e) => {
                ok = false;
                let rendered = e.render();
                let diagnostics = match e {
                    TopologyError::Invalid { diagnostics, .. } => diagnostics,
                    TopologyError::Parse {
                        line,
                        column,
                        message,
                        ..
                    } => vec![Diagnostic {
                        severity: Severity::Error,
                        path: String::new(),
                        line: Some(line),
                        column: Some(column),
                        length: None,
                        message,
                        hint: None,
                        redacted: false,
                    }],
                    other => vec![Diagnostic {
                        severity: Severity::Error,
                        path: String::new(),
                        line: None,
                        column: None,
                        length: None,
                        message: other.to_string(),
                        hint: None,
                        redacted: false,
                    }],
                };
                (diagnostics, rendered)
            }
        };
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        match format {
            ValidateFormat::Human => {
                eprint!("{rendered}");
                if errors == 0 {
                    println!("{}: ok ({} warning(s))", f.display(), diagnostics.len());
                } else {
                    println!("{}: {errors} error(s)", f.display());
                }
            }
            ValidateFormat::Json => reports.push(serde_json::json!({
                "file": f.display().to_string(),
                "valid": errors == 0,
                "diagnostics": diagnostics,
            })),
        }
    }
    if format == ValidateFormat::Json {
        println!("{}", serde_json::Value::Array(reports));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Unix milliseconds as an RFC 3339 time (UTC, to the millisecond); empty when out of range.
fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(String::new, |t| format!("{t:.3}"))
}

/// `baton state FILE`: the state file as JSON: each run and approval with its times in RFC 3339
/// beside the Unix milliseconds, and each approval a loop's run asked for naming that run.
pub(crate) fn show_state(file: &Path) -> ExitCode {
    if !file.is_file() {
        eprintln!("error: {}: no such state file", file.display());
        return ExitCode::from(EXIT_INVALID);
    }
    let shown = (|| -> Result<serde_json::Value, baton::actors::StoreError> {
        let store = baton::actors::LoopStore::open(file)?;
        let mut loops = Vec::new();
        // Root task → (schedule, run): which run asked for each approval.
        let mut run_of = std::collections::HashMap::new();
        for name in store.schedules()? {
            let runs: Vec<serde_json::Value> = store
                .runs(&name)?
                .into_iter()
                .map(|(n, r)| {
                    if r.task != 0 {
                        run_of.insert(r.task, (name.clone(), n));
                    }
                    let mut v = serde_json::json!(r);
                    v["run"] = n.into();
                    v["started"] = rfc3339(r.started_ms).into();
                    v
                })
                .collect();
            loops.push(
                serde_json::json!({"schedule": name, "state": store.load(&name)?, "runs": runs}),
            );
        }
        let approvals: Vec<serde_json::Value> = store
            .approvals()?
            .into_iter()
            .map(|a| {
                let mut v = serde_json::json!(a);
                v["requested"] = rfc3339(a.requested_ms).into();
                if let Some(ms) = a.decided_ms {
                    v["decided"] = rfc3339(ms).into();
                }
                if let Some((schedule, run)) = run_of.get(&a.root) {
                    v["schedule"] = schedule.as_str().into();
                    v["run"] = (*run).into();
                }
                v
            })
            .collect();
        Ok(serde_json::json!({ "loops": loops, "approvals": approvals }))
    })();
    match shown {
        Ok(v) => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `baton audit verify FILE`: the hash chain, and every head there is (the signed one beside the
/// file, one kept elsewhere with `--expect-head`); exit 1 when broken.
pub(crate) fn verify_audit(file: &Path, expect_head: Option<baton::core::audit::Head>) -> ExitCode {
    let key = crate::audit_key();
    let key = key.as_deref();
    // The chain, and every head there is (the signed one beside the file, one kept
    // elsewhere): the trail must still reach each.
    let checked = baton::core::audit::read_head(file, key).and_then(|signed| {
        let heads: Vec<_> = signed.into_iter().chain(expect_head).collect();
        let mut result = baton::core::audit::verify_against(file, key, None)?;
        for h in &heads {
            if result.is_ok() {
                result = baton::core::audit::verify_against(file, key, Some(h))?;
            }
        }
        Ok(result)
    });
    match checked {
        Ok(Ok(v)) => {
            let head = v.last.map_or_else(String::new, |h| format!(", head {h}"));
            println!("{}: intact ({} records{head})", file.display(), v.records);
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!(
                "{}:{}: broken: {}",
                file.display(),
                broken.line,
                broken.reason
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `baton graph FILE`: the topology drawn as Graphviz dot or Mermaid.
pub(crate) fn graph(file: &Path, format: GraphFormat, detail: bool) -> ExitCode {
    let detail = if detail {
        baton::topologies::Detail::Full
    } else {
        baton::topologies::Detail::Agents
    };
    match Topology::from_path(file) {
        Ok(t) => {
            // Each built-in kind's effect, as its tool says (`Tool::effect()`).
            let tools = builtins();
            let effect_of = |kind: &str| {
                tools
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, tool)| tool.effect())
            };
            let drawing = match format {
                GraphFormat::Dot => baton::topologies::to_dot_with(&t, detail, &effect_of),
                GraphFormat::Mermaid => baton::topologies::to_mermaid_with(&t, detail, &effect_of),
            };
            print!("{drawing}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}", e.render());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `baton tools --format`.
#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ToolsFormat {
    Human,
    Json,
}

/// Every built-in tool kind (the topology's `kind:`), as the model sees it: its description and
/// the JSON schema of its arguments, with its default effect.
fn builtins() -> Vec<(&'static str, std::sync::Arc<dyn baton::core::Tool>)> {
    use baton::core::tools::{
        Chaos, Codeowners, ListDir, LogSearch, MetricsSeries, ReadFile, RestartService, Shell,
    };
    use std::sync::Arc;
    // Paths that do not exist: a schema that lists what a folder holds (metrics_series) lists
    // nothing here.
    let nowhere = Path::new("/nonexistent/baton-tools");
    let mut out: Vec<(&'static str, Arc<dyn baton::core::Tool>)> = vec![
        (
            "metrics_series",
            Arc::new(MetricsSeries::new("metrics_series", nowhere)),
        ),
        (
            "log_search",
            Arc::new(LogSearch::new("log_search", nowhere)),
        ),
        (
            "codeowners",
            Arc::new(Codeowners::new("codeowners", nowhere)),
        ),
        ("read_file", Arc::new(ReadFile::new("read_file", nowhere))),
        ("list_dir", Arc::new(ListDir::new("list_dir", nowhere))),
        (
            "shell",
            Arc::new(Shell::new(
                "shell",
                vec!["<the allow list>".into()],
                std::time::Duration::from_secs(30),
            )),
        ),
        (
            "restart_service",
            Arc::new(RestartService::new("restart_service")),
        ),
        (
            "chaos",
            Arc::new(Chaos::new("chaos", baton::core::FaultSpec::default())),
        ),
    ];
    if let Ok(h) = baton_providers::tools::HttpGet::new(
        "http_get",
        vec!["<the allow list>".into()],
        std::time::Duration::from_secs(30),
    ) {
        out.push(("http_get", Arc::new(h)));
    }
    out
}

/// `baton tools`: the built-in tools with their arguments (from their JSON schemas), effect,
/// dry-run support and limits — what `kind:` can name in a topology.
pub(crate) fn tools(format: ToolsFormat) -> ExitCode {
    let tools = builtins();
    if format == ToolsFormat::Json {
        let list: Vec<serde_json::Value> = tools
            .iter()
            .map(|(kind, t)| {
                serde_json::json!({
                    "kind": kind,
                    "description": t.description(),
                    "effect": t.effect(),
                    "dry_run": t.supports_dry_run(),
                    "parameters": t.parameters(),
                })
            })
            .collect();
        return match serde_json::to_string_pretty(&list) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    for (kind, t) in &tools {
        let effect = serde_json::to_value(t.effect())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let dry = if t.supports_dry_run() {
            ", honours dry_run"
        } else {
            ""
        };
        println!("{kind} ({effect}{dry})\n  {}", t.description());
        let schema = t.parameters();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if let Some(props) = schema["properties"].as_object() {
            let width = props.keys().map(String::len).max().unwrap_or(0);
            for (name, p) in props {
                let ty = match &p["type"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str())
                        .filter(|t| *t != "null")
                        .collect::<Vec<_>>()
                        .join("|"),
                    _ => "any".into(),
                };
                let req = if required.contains(&name.as_str()) {
                    "required"
                } else {
                    "optional"
                };
                let what = p["description"].as_str().unwrap_or("");
                println!("    {name:<width$}  {ty:<8}  {req:<8}  {what}");
            }
        }
        println!();
    }
    println!(
        "Every tool: `timeout` (default 30s) and `max_output_tokens` (default 4000) in the topology; `shell` also `max_output_bytes` (default 1 MiB). Custom tools: `kind: custom`."
    );
    ExitCode::SUCCESS
}
