use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Effect, Tool, ToolError, parse_args, schema_for};

/// The arguments of [`RestartService`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartServiceArgs {
    /// The service to restart.
    pub service: String,
    /// Describe the restart without doing it.
    #[serde(default)]
    pub dry_run: bool,
}

/// A simulated service restart, for examples and policy rehearsals: destructive, and honours
/// `dry_run: true` by saying what it would do. It changes nothing real.
#[derive(Debug, Clone)]
pub struct RestartService {
    name: String,
}

impl RestartService {
    /// A tool named `name`.
    pub fn new(name: impl Into<String>) -> RestartService {
        RestartService { name: name.into() }
    }
}

#[async_trait]
impl Tool for RestartService {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "Restart a service (destructive). Call with dry_run: true first to see what would happen."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<RestartServiceArgs>()
    }
    fn effect(&self) -> Effect {
        Effect::Destructive
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: RestartServiceArgs = parse_args(args)?;
        let service = &args.service;
        if args.dry_run {
            Ok(format!(
                "dry run: would restart {service} (rolling, 3 pods, ~40s)"
            ))
        } else {
            Ok(format!("restarted {service} (simulated)"))
        }
    }
}
