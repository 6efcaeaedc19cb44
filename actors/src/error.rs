//! Errors of baton-actors.

/// What can go wrong starting or talking to a runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Occurs when a model declared in the topology cannot be built (rules file unreadable or
    /// malformed).
    #[error("model `{model}`: {source}")]
    Model {
        /// The model's name.
        model: String,
        /// Why.
        #[source]
        source: baton_core::Error,
    },
    /// Occurs when a topology declares a `custom` model or tool that was not registered in code, or
    /// code registers one the topology does not declare.
    #[error("{0}")]
    Registration(String),
    /// Occurs when an HTTP provider cannot be set up: its API key variable is unset, or the HTTP
    /// client cannot be built. The message names the variable, never a secret.
    #[error("model `{model}`: {message}")]
    Provider {
        /// The model's name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// Occurs when an actor cannot be spawned.
    #[error("cannot start the {what}: {message}")]
    Spawn {
        /// Which actor.
        what: String,
        /// ractor's error.
        message: String,
    },
    /// Occurs when an MCP server of the topology cannot be started or reached, or lacks a tool
    /// the topology names.
    #[error(transparent)]
    Mcp(#[from] baton_mcp::McpError),
    /// Occurs when the conductor has stopped and cannot take a task.
    #[error("the conductor is not running: {0}")]
    ConductorDown(String),
}
