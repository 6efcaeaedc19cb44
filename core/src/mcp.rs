//! How an MCP server is reached: the topology declares it, the MCP connector (baton-mcp) uses it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// How an MCP server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpTransport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program (an absolute path once a topology has resolved it, or a name on `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables; values may hold `${VAR}` references, read at start.
        env: BTreeMap<String, String>,
        /// Its working directory.
        cwd: Option<PathBuf>,
    },
    /// A streamable HTTP endpoint (`http://127.0.0.1:3001/mcp`).
    Http {
        /// The endpoint's URL.
        url: String,
        /// Extra headers; values may hold `${VAR}` references, read at start.
        headers: BTreeMap<String, String>,
    },
}
