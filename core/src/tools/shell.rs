use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Effect, Tool, ToolError, parse_args, schema_for};

/// Runs an allow-listed program with arguments, directly (no shell: nothing in the arguments is
/// interpolated, globbed or chained), with a timeout; `dry_run: true` says what would run and
/// runs nothing. Destructive unless the topology says otherwise.
#[derive(Debug, Clone)]
pub struct Shell {
    name: String,
    allow: Vec<String>,
    timeout: Duration,
    description: String,
}

/// The arguments of [`Shell`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellArgs {
    /// The program, one of those the tool allows.
    pub command: String,
    /// Its arguments, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// Say what would run, and run nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Shell {
    /// A tool named `name` that may run the programs in `allow`, each for at most `timeout`.
    pub fn new(name: impl Into<String>, allow: Vec<String>, timeout: Duration) -> Shell {
        let description = format!(
            "Run a command (no shell) and read its output. Allowed commands: {}. Call with dry_run: true to see what would run.",
            allow.join(", ")
        );
        Shell {
            name: name.into(),
            allow,
            timeout,
            description,
        }
    }
}

#[async_trait]
impl Tool for Shell {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<ShellArgs>()
    }
    fn effect(&self) -> Effect {
        Effect::Destructive
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
        let args: ShellArgs = parse_args(args)?;
        if !self.allow.contains(&args.command) {
            return Err(ToolError::Failed(format!(
                "`{}` is not an allowed command (allowed: {})",
                args.command,
                self.allow.join(", ")
            )));
        }
        let line = std::iter::once(args.command.as_str())
            .chain(args.args.iter().map(String::as_str))
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        if args.dry_run {
            return Ok(format!("dry run: would run {line}"));
        }
        let child = tokio::process::Command::new(&args.command)
            .args(&args.args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, child)
            .await
            .map_err(|_| {
                ToolError::Failed(format!("{line} did not finish within {:?}", self.timeout))
            })?
            .map_err(|e| ToolError::Failed(format!("cannot run {line}: {e}")))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            text.push_str("\n[stderr]\n");
            text.push_str(&stderr);
        }
        if out.status.success() {
            Ok(text)
        } else {
            Err(ToolError::Failed(format!(
                "{line} exited with {}: {text}",
                out.status
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shell() -> Shell {
        Shell::new(
            "shell",
            vec!["echo".into(), "touch".into(), "sleep".into()],
            Duration::from_millis(300),
        )
    }

    #[tokio::test]
    async fn runs_allowed_programs_without_a_shell() {
        let out = shell()
            .call(json!({"command": "echo", "args": ["$(id)", ";", "rm", "-rf", "*"]}))
            .await
            .expect("runs");
        assert_eq!(out, "$(id) ; rm -rf *\n", "nothing interpolated or chained");
        let e = shell()
            .call(json!({"command": "rm", "args": ["-rf", "/tmp/x"]}))
            .await
            .expect_err("not allowed");
        assert!(
            e.to_string().starts_with("`rm` is not an allowed command"),
            "{e}"
        );
        let e = shell()
            .call(json!({"command": "/bin/echo"}))
            .await
            .expect_err("a path is not the allowed name");
        assert!(e.to_string().contains("not an allowed command"), "{e}");
    }

    #[tokio::test]
    async fn dry_run_runs_nothing_and_slow_commands_time_out() {
        let f = std::env::temp_dir().join(format!("baton-shell-{}", std::process::id()));
        let _ = std::fs::remove_file(&f);
        let path = f.to_string_lossy().into_owned();
        let out = shell()
            .call(json!({"command": "touch", "args": [path], "dry_run": true}))
            .await
            .expect("dry run");
        assert!(out.starts_with("dry run: would run \"touch\""), "{out}");
        assert!(!f.exists(), "nothing ran");
        let e = shell()
            .call(json!({"command": "sleep", "args": ["5"]}))
            .await
            .expect_err("too slow");
        assert!(e.to_string().contains("did not finish within"), "{e}");
    }
}
