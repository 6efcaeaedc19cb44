use async_trait::async_trait;
use serde_json::json;

use crate::tool::{Effect, Tool, ToolError, str_arg};

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
        json!({
            "type": "object",
            "properties": {
                "service": {"type": "string"},
                "dry_run": {"type": "boolean", "description": "describe the restart without doing it"}
            },
            "required": ["service"]
        })
    }
    fn effect(&self) -> Effect {
        Effect::Destructive
    }
    async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
        let service = str_arg(&args, "service")?;
        if crate::policy::is_dry_run(&args) {
            Ok(format!(
                "dry run: would restart {service} (rolling, 3 pods, ~40s)"
            ))
        } else {
            Ok(format!("restarted {service} (simulated)"))
        }
    }
}
