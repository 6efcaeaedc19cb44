//! Errors of baton-core.

use std::path::PathBuf;

/// What can go wrong in baton-core's parsing, ledger and built-in providers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Occurs when a dollar amount is not a plain non-negative decimal (`0.15`, `3`, `"12.5"`).
    #[error("invalid dollar amount `{input}`: {reason}")]
    InvalidAmount {
        /// The text as given.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Occurs when a duration is not a number followed by `ms`, `s`, `m` or `h` (`250ms`, `30s`, `5m`).
    #[error(
        "invalid duration `{input}`: expected a number followed by ms, s, m or h (e.g. `250ms`, `5m`)"
    )]
    InvalidDuration {
        /// The text as given.
        input: String,
    },
    /// Occurs when a file a topology refers to cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Occurs when an audit trail cannot be opened or continued: not a regular file, in use by
    /// another process, or its last record damaged.
    #[error("audit trail {}: {message}", path.display())]
    Audit {
        /// The trail.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Occurs when a scripted model's rules file is malformed.
    #[error("scripted rules {}: {message}", path.display())]
    Rules {
        /// The rules file (or `<inline>`).
        path: PathBuf,
        /// What is wrong, with line and column where known.
        message: String,
    },
}
