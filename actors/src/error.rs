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
    /// Occurs when a topology declares a `custom` model or tool that was not registered in code.
    #[error("{kind} `{name}` is declared `{}` but no implementation was registered under that name ({}){}",
        kind.declared(), kind.register_call(), registered_hint(.name, .registered.as_deref()))]
    NotRegistered {
        /// Model or tool.
        kind: Component,
        /// The name the topology declares.
        name: String,
        /// The name code registered that is closest to it, if any (a did-you-mean).
        registered: Option<String>,
    },
    /// Occurs when code registers a model or tool the topology does not declare as custom.
    #[error("{kind} `{name}` was registered in code but the topology declares no custom {kind} of that name{}",
        declared_hint(.declared.as_deref()))]
    Undeclared {
        /// Model or tool.
        kind: Component,
        /// The name code registered.
        name: String,
        /// The custom name the topology declares that is closest to it, if any.
        declared: Option<String>,
    },
    /// Occurs when a tool registered under one name calls itself another.
    #[error(
        "tool registered as `{registered}` calls itself `{calls_itself}`; the names must agree"
    )]
    NameMismatch {
        /// The name it was registered under (the topology's).
        registered: String,
        /// What its `Tool::name` says.
        calls_itself: String,
    },
    /// Occurs when a built-in model or tool cannot be set up (a scripted model without rules, an
    /// `http_get` tool whose allow-list is malformed).
    #[error("{kind} `{name}`: {message}")]
    Setup {
        /// Model or tool.
        kind: Component,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
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

/// What a registration error is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Component {
    /// A model (`RuntimeBuilder::model`, `provider: custom`).
    Model,
    /// A tool (`RuntimeBuilder::tool`, `kind: custom`).
    Tool,
}

impl Component {
    fn declared(self) -> &'static str {
        match self {
            Component::Model => "provider: custom",
            Component::Tool => "kind: custom",
        }
    }

    fn register_call(self) -> &'static str {
        match self {
            Component::Model => "RuntimeBuilder::model",
            Component::Tool => "RuntimeBuilder::tool",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Component::Model => "model",
            Component::Tool => "tool",
        })
    }
}

/// The did-you-mean of [`RuntimeError::NotRegistered`].
fn registered_hint(name: &str, registered: Option<&str>) -> String {
    registered.map_or_else(String::new, |r| {
        format!("; code registered `{r}`: did you mean to register it as `{name}`?")
    })
}

/// The did-you-mean of [`RuntimeError::Undeclared`].
fn declared_hint(declared: Option<&str>) -> String {
    declared.map_or_else(String::new, |d| format!("; did you mean `{d}`?"))
}
