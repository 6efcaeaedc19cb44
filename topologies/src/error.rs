//! Errors of baton-topologies.

use std::fmt;
use std::path::PathBuf;

/// A problem found in a topology, with where it is and how to mend it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The key path in the file, e.g. `agents.rca.models[0]`.
    pub path: String,
    /// 1-based line, when the text could be located.
    pub line: Option<usize>,
    /// 1-based column, when the text could be located.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to mend it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    },
    /// Occurs when the file parses but breaks the rules (unresolved names, not a tree, bad budgets).
    #[error("{}: {} error(s):\n{}", file.display(), diagnostics.len(), render(file, diagnostics))]
    Invalid {
        /// The file (or `<builder>` for a topology built in code).
        file: PathBuf,
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(file: &std::path::Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {}:{d}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}
