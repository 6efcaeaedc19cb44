//! The `Tool` trait: what an agent can do besides talk.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::envelope::{TaskId, TraceId};
use crate::model::ToolSchema;

/// What a tool's call can change, which decides the policy it must pass.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Reads only.
    #[default]
    Read,
    /// Changes something that can be changed back.
    Write,
    /// Changes something that cannot easily be undone (restart, rollback, delete).
    Destructive,
}

/// Why a tool call failed. The agent shows it to the model as an observation, so the model can
/// correct itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// Occurs when the arguments do not fit the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// Occurs when the tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

/// Who calls a tool, and how: given to every [`Tool::call`].
///
/// A tool can scope what it does by the caller (a per-agent sandbox, a per-task scratch folder),
/// tag what it sends elsewhere with the task and trace ids (so that a downstream log joins the
/// audit trail), and know whether the harness judged the call a dry run.
///
/// ```
/// use baton_core::{TaskId, ToolContext};
///
/// let cx = ToolContext::new("triage", TaskId(7)).with_dry_run(true);
/// assert_eq!((cx.agent, cx.task, cx.root, cx.dry_run), ("triage", TaskId(7), TaskId(7), true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolContext<'a> {
    /// The agent whose model asked for the call.
    pub agent: &'a str,
    /// That agent's task.
    pub task: TaskId,
    /// The run's root task (the task that was submitted; its id is the run's trace id).
    pub root: TaskId,
    /// The run's trace id: the same on every task of the run.
    pub trace: TraceId,
    /// Whether the harness judged this call a dry run: the arguments say `dry_run: true` and the
    /// tool [supports dry runs](Tool::supports_dry_run). A dry run must change nothing.
    pub dry_run: bool,
    /// When the task must end (its deadline), if it has one. The harness also stops waiting for
    /// the call then; a tool that hands work to another system can pass the deadline on.
    pub deadline: Option<tokio::time::Instant>,
}

impl<'a> ToolContext<'a> {
    /// The context of a call by `agent` on its root task `task` (no deadline, not a dry run):
    /// what a test or a direct caller outside a runtime passes.
    pub fn new(agent: &'a str, task: TaskId) -> ToolContext<'a> {
        ToolContext {
            agent,
            task,
            root: task,
            trace: TraceId(task.0),
            dry_run: false,
            deadline: None,
        }
    }

    /// The same, on a delegated task of the run rooted at `root`.
    #[must_use]
    pub fn with_root(mut self, root: TaskId) -> ToolContext<'a> {
        self.root = root;
        self.trace = TraceId(root.0);
        self
    }

    /// The same, judged a dry run (or not).
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> ToolContext<'a> {
        self.dry_run = dry_run;
        self
    }

    /// The same, with the task's deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<tokio::time::Instant>) -> ToolContext<'a> {
        self.deadline = deadline;
        self
    }
}

/// A tool an agent may call.
///
/// ```
/// # mod baton { pub mod prelude { pub use baton_core::*; } }
/// use baton::prelude::*;
///
/// /// The on-call engineer of a service, from a roster.
/// struct OnCall;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args {
///     /// The service, e.g. `checkout-api`.
///     service: String,
/// }
///
/// #[async_trait]
/// impl Tool for OnCall {
///     fn name(&self) -> &str { "on_call" }
///     fn description(&self) -> &str { "Who is on call for a service." }
///     fn parameters(&self) -> serde_json::Value { schema_for::<Args>() }
///     async fn call(&self, cx: &ToolContext<'_>, args: serde_json::Value) -> Result<String, ToolError> {
///         let args: Args = parse_args(args)?; // a bad argument is an observation the model sees
///         Ok(format!("{}: alice (asked by {} for task {})", args.service, cx.agent, cx.task))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cx = ToolContext::new("triage", TaskId(1));
/// let said = OnCall.call(&cx, serde_json::json!({"service": "checkout-api"})).await;
/// assert_eq!(said.expect("the roster answers"), "checkout-api: alice (asked by triage for task 1)");
/// # }
/// ```
/// A runtime takes it with `Runtime::builder(topology).tool(OnCall)`, for a `custom` tool of that
/// name in the topology.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Unique name, as the model calls it.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON schema of the arguments object.
    fn parameters(&self) -> serde_json::Value;
    /// What a call can change.
    fn effect(&self) -> Effect {
        Effect::Read
    }
    /// Whether the tool honours `dry_run: true` in its arguments (changes nothing, says what it
    /// would do). Only then does such a call count as a dry run for the policy's
    /// `dry_run_first`; for any other tool it is judged, and runs, as the real call. Default
    /// `false`: a tool that forwards arguments (an MCP tool) may ignore the flag and act.
    fn supports_dry_run(&self) -> bool {
        false
    }
    /// Runs the tool for the caller `cx` describes.
    ///
    /// # Errors
    /// A [`ToolError`], which the model sees as the call's result.
    async fn call(
        &self,
        cx: &ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError>;

    /// The schema the model sees.
    fn schema(&self) -> ToolSchema {
        ToolSchema {
            name: self.name().to_string(),
            description: self.description().to_string(),
            parameters: self.parameters(),
        }
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn description(&self) -> &str {
        (**self).description()
    }
    fn parameters(&self) -> serde_json::Value {
        (**self).parameters()
    }
    fn effect(&self) -> Effect {
        (**self).effect()
    }
    fn supports_dry_run(&self) -> bool {
        (**self).supports_dry_run()
    }
    async fn call(
        &self,
        cx: &ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError> {
        (**self).call(cx, arguments).await
    }
}

/// The JSON schema of an arguments type, for [`Tool::parameters`]: generated from the Rust type
/// (schemars), without the `$schema` and `title` keys models do not need.
pub fn schema_for<T: schemars::JsonSchema>() -> serde_json::Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

/// Reads a call's arguments into their Rust type.
///
/// # Errors
/// [`ToolError::InvalidArguments`] saying what does not fit.
pub fn parse_args<T: serde::de::DeserializeOwned>(args: serde_json::Value) -> Result<T, ToolError> {
    let args = if args.is_null() {
        serde_json::json!({})
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// Reads a required string argument.
///
/// # Errors
/// [`ToolError::InvalidArguments`] when it is missing or not a string.
pub fn str_arg<'a>(args: &'a serde_json::Value, name: &str) -> Result<&'a str, ToolError> {
    args.get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ToolError::InvalidArguments(format!("`{name}` (a string) is required")))
}

/// Reads an optional string argument.
///
/// # Errors
/// [`ToolError::InvalidArguments`] when present but not a string.
pub fn opt_str_arg<'a>(
    args: &'a serde_json::Value,
    name: &str,
) -> Result<Option<&'a str>, ToolError> {
    match args.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ToolError::InvalidArguments(format!(
            "`{name}` must be a string"
        ))),
    }
}
