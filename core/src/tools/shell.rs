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
    max_output: usize,
    /// Where its commands run (the process's own directory when unset).
    cwd: Option<std::path::PathBuf>,
}

/// What [`Shell`] reads of a program's stdout and of its stderr by default: 1 MiB each, like
/// `read_file` and `http_get`.
pub const SHELL_MAX_OUTPUT: usize = 1 << 20;

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
            max_output: SHELL_MAX_OUTPUT,
            cwd: None,
        }
    }

    /// Runs its commands in `dir` (a topology's `shell` runs in its `path:`, by default the
    /// topology file's directory, so that `ls inbox` means the same from wherever Baton starts).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<std::path::PathBuf>) -> Shell {
        self.cwd = Some(dir.into());
        self
    }

    /// Reads at most `bytes` of a program's stdout (and as much of its stderr): a program that
    /// writes more is killed, and the observation says its output was cut.
    #[must_use]
    pub fn max_output(mut self, bytes: usize) -> Shell {
        self.max_output = bytes;
        self
    }
}

/// Reads at most `cap` bytes of `r`; `true` when there was more.
async fn read_capped(
    r: Option<impl tokio::io::AsyncRead + Unpin>,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt;
    let Some(r) = r else {
        return Ok((Vec::new(), false));
    };
    let mut buf = Vec::new();
    r.take(cap as u64 + 1).read_to_end(&mut buf).await?;
    let over = buf.len() > cap;
    buf.truncate(cap);
    Ok((buf, over))
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
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
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
        let mut command = tokio::process::Command::new(&args.command);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .args(&args.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ToolError::Failed(format!("cannot run {line}: {e}")))?;
        let cap = self.max_output;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            // Both pipes are read at once (a program filling one while we wait on the other
            // would block), each up to the cap: what is beyond it is never buffered.
            let (out, err) = tokio::try_join!(read_capped(stdout, cap), read_capped(stderr, cap))?;
            let status = if out.1 || err.1 {
                // More than the cap: the program is stopped rather than read to the end.
                child.start_kill()?;
                None
            } else {
                Some(child.wait().await?)
            };
            Ok::<_, std::io::Error>((out, err, status))
        };
        let ((stdout, out_cut), (stderr, err_cut), status) =
            tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| {
                    ToolError::Failed(format!("{line} did not finish within {:?}", self.timeout))
                })?
                .map_err(|e| ToolError::Failed(format!("cannot run {line}: {e}")))?;
        let mut text = String::from_utf8_lossy(&stdout).into_owned();
        if out_cut {
            text.push_str(&format!(
                "\n[output cut by Baton at {cap} bytes: the program wrote more and was stopped]"
            ));
        }
        let stderr = String::from_utf8_lossy(&stderr);
        if !stderr.trim().is_empty() {
            text.push_str("\n[stderr]\n");
            text.push_str(&stderr);
            if err_cut {
                text.push_str(&format!("\n[stderr cut by Baton at {cap} bytes]"));
            }
        }
        match status {
            Some(s) if s.success() => Ok(text),
            Some(s) => Err(ToolError::Failed(format!("{line} exited with {s}: {text}"))),
            None => Ok(text),
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
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "echo", "args": ["$(id)", ";", "rm", "-rf", "*"]}),
            )
            .await
            .expect("runs");
        assert_eq!(out, "$(id) ; rm -rf *\n", "nothing interpolated or chained");
        let e = shell()
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "rm", "args": ["-rf", "/tmp/x"]}),
            )
            .await
            .expect_err("not allowed");
        assert!(
            e.to_string().starts_with("`rm` is not an allowed command"),
            "{e}"
        );
        let e = shell()
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "/bin/echo"}),
            )
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
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "touch", "args": [path], "dry_run": true}),
            )
            .await
            .expect("dry run");
        assert!(out.starts_with("dry run: would run \"touch\""), "{out}");
        assert!(!f.exists(), "nothing ran");
        let e = shell()
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "sleep", "args": ["5"]}),
            )
            .await
            .expect_err("too slow");
        assert!(e.to_string().contains("did not finish within"), "{e}");
    }

    /// Commands run in the tool's directory, not the process's: `ls inbox` means the folder
    /// beside the topology file wherever Baton was started; a failing command's exit status is
    /// part of the observation.
    #[tokio::test]
    async fn commands_run_in_the_tools_directory() {
        let dir = std::env::temp_dir().join(format!("baton-shell-cwd-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inbox")).expect("dir");
        std::fs::write(dir.join("inbox/mail-1.txt"), "hi").expect("file");
        let ls = Shell::new("shell", vec!["ls".into()], Duration::from_secs(5)).cwd(&dir);
        let out = ls
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "ls", "args": ["inbox"]}),
            )
            .await
            .expect("runs");
        assert_eq!(out.trim(), "mail-1.txt");
        let e = ls
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "ls", "args": ["no-such-folder"]}),
            )
            .await
            .expect_err("ls fails");
        assert!(e.to_string().contains("exited with"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An allow-listed `cat /dev/zero` once grew the process to 2.3 GB: now what is read is
    /// capped, the program is killed, and the observation says so.
    #[tokio::test]
    async fn endless_output_is_cut_at_the_cap_and_the_program_stopped() {
        let cat = Shell::new("shell", vec!["cat".into()], Duration::from_secs(10)).max_output(4096);
        let out = cat
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"command": "cat", "args": ["/dev/zero"]}),
            )
            .await
            .expect("cut, not failed");
        assert!(
            out.ends_with(
                "[output cut by Baton at 4096 bytes: the program wrote more and was stopped]"
            ),
            "{}",
            &out[out.len().saturating_sub(120)..]
        );
        assert!(out.len() < 4096 + 200, "{}", out.len());
    }
}
