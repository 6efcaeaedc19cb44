//! Errors of baton-topologies.

use std::fmt;
use std::path::PathBuf;

/// How bad a diagnostic is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The topology cannot run.
    Error,
    /// Legal, but probably not what was meant.
    Warning,
}

/// A problem found in a topology, with where it is and how to mend it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The key path in the file, e.g. `agents.rca.models[smal]`.
    pub path: String,
    /// 1-based line, when the text could be located.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the text could be located.
    pub column: Option<usize>,
    /// Length of the offending text, in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to mend it.
    pub hint: Option<String>,
    /// The offending text may be a secret: never show it (the position is still given).
    #[serde(skip)]
    pub redacted: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// What can go wrong loading a topology.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// Occurs when the file cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Occurs when the file is not valid YAML for the schema (unknown key, wrong type, bad amount).
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
        /// The file's text, for rendering the offending line.
        text: Option<String>,
    },
    /// Occurs when the file parses but breaks the rules (unresolved names, not a tree, bad budgets).
    #[error("{}: {} error(s):\n{}", file.display(), diagnostics.iter().filter(|d| d.severity == Severity::Error).count(), render(file, diagnostics))]
    Invalid {
        /// The file (or `<builder>` for a topology built in code).
        file: PathBuf,
        /// Every problem found (errors and warnings), in file order.
        diagnostics: Vec<Diagnostic>,
        /// The file's text, for rendering the offending lines.
        text: Option<String>,
    },
}

impl TopologyError {
    /// Renders the error the way rustc does: each diagnostic with the offending line, a caret
    /// under the offending text, and the hint.
    pub fn render(&self) -> String {
        match self {
            TopologyError::Parse {
                file,
                line,
                column,
                message,
                text,
            } => {
                // Underline the offending word when the message quotes it.
                let quoted = [
                    "unknown field `",
                    "unknown variant `",
                    "unknown value `",
                    "invalid dollar amount `",
                    "invalid duration `",
                ]
                .iter()
                .find_map(|p| message.strip_prefix(p))
                .and_then(|rest| rest.split('`').next())
                .map(|w| w.chars().count().max(1));
                let hint = message.starts_with("a tab in the indentation").then(|| {
                    "indent with spaces: YAML does not allow tabs in indentation".to_string()
                });
                let d = Diagnostic {
                    severity: Severity::Error,
                    path: String::new(),
                    line: Some(*line),
                    column: Some(*column),
                    length: quoted.or(Some(1)),
                    message: message.clone(),
                    hint,
                    redacted: false,
                };
                render_diagnostics(file, text.as_deref(), std::slice::from_ref(&d))
            }
            TopologyError::Invalid {
                file,
                diagnostics,
                text,
            } => render_diagnostics(file, text.as_deref(), diagnostics),
            other => format!("error: {other}"),
        }
    }
}

/// Renders diagnostics rustc-style (with annotate-snippets, the renderer rustc uses).
pub fn render_diagnostics(
    file: &std::path::Path,
    text: Option<&str>,
    diagnostics: &[Diagnostic],
) -> String {
    use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
    let path = file.display().to_string();
    let renderer = Renderer::plain();
    // Whatever a diagnostic is about, the snippet it quotes never shows a credential.
    let masked = text.map(crate::secrets::mask_source);
    let text = masked.as_deref();
    let mut out = String::new();
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = if d.path.is_empty() {
            d.message.clone()
        } else {
            format!("{}: {}", d.path, d.message)
        };
        let span = match (text, d.line, d.column) {
            (Some(t), Some(l), Some(c)) if !d.redacted => byte_span(t, l, c, d.length.unwrap_or(1)),
            _ => None,
        };
        let mut group = Group::with_title(level.primary_title(title));
        let rendered = match (text, span) {
            (Some(t), Some(span)) => {
                let snippet = Snippet::source(t)
                    .line_start(1)
                    .path(path.as_str())
                    .fold(true)
                    .annotation(AnnotationKind::Primary.span(span));
                group = group.element(snippet);
                if let Some(h) = &d.hint {
                    group = group.element(Level::HELP.message(h.as_str()));
                }
                renderer.render(&[group])
            }
            _ => {
                let mut s = renderer.render(&[group]);
                match (d.line, d.column) {
                    (Some(l), Some(c)) => s.push_str(&format!("\n  --> {path}:{l}:{c}")),
                    _ => s.push_str(&format!("\n  --> {path}")),
                }
                if let Some(h) = &d.hint {
                    s.push_str(&format!("\n   = help: {h}"));
                }
                s
            }
        };
        out.push_str(&rendered);
        out.push_str("\n\n");
    }
    out
}

/// Byte range of `len` characters at 1-based `line` and character `col`.
fn byte_span(text: &str, line: usize, col: usize, len: usize) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let body = l.trim_end_matches(['\n', '\r']);
            let start = body
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(body.len(), |(b, _)| b);
            let end = body[start..]
                .char_indices()
                .nth(len)
                .map_or(body.len(), |(b, _)| start + b);
            return Some(offset + start..offset + end.max(start));
        }
        offset += l.len();
    }
    None
}

fn render(file: &std::path::Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {}:{d}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}
