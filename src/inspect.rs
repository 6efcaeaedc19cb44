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

/// `baton state FILE`: the state file as JSON.
pub(crate) fn show_state(file: &Path) -> ExitCode {
    if !file.is_file() {
        eprintln!("error: {}: no such state file", file.display());
        return ExitCode::from(EXIT_INVALID);
    }
    let shown = (|| -> Result<serde_json::Value, baton::actors::StoreError> {
        let store = baton::actors::LoopStore::open(file)?;
        let mut loops = Vec::new();
        for name in store.schedules()? {
            let runs: Vec<serde_json::Value> = store
                .runs(&name)?
                .into_iter()
                .map(|(n, r)| {
                    let mut v = serde_json::json!(r);
                    v["run"] = n.into();
                    v
                })
                .collect();
            loops.push(
                serde_json::json!({"schedule": name, "state": store.load(&name)?, "runs": runs}),
            );
        }
        Ok(serde_json::json!({ "loops": loops, "approvals": store.approvals()? }))
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
    let key = std::env::var("BATON_AUDIT_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let key = key.as_deref().map(str::as_bytes);
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
pub(crate) fn graph(file: &Path, format: GraphFormat) -> ExitCode {
    match Topology::from_path(file) {
        Ok(t) => {
            let drawing = match format {
                GraphFormat::Dot => baton::topologies::to_dot(&t),
                GraphFormat::Mermaid => baton::topologies::to_mermaid(&t),
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
