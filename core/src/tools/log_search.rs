use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// The arguments of [`LogSearch`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSearchArgs {
    /// Only lines containing this text.
    #[serde(default)]
    pub contains: Option<String>,
    /// Only lines stamped at or after this time.
    #[serde(default)]
    pub after: Option<String>,
    /// Only lines stamped strictly before this time.
    #[serde(default)]
    pub before: Option<String>,
    /// Keep only the last N matches.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub last: Option<u64>,
}

/// Searches a log file whose lines start with a sortable timestamp (`14:05`, `2026-11-24T14:05Z`).
#[derive(Debug, Clone)]
pub struct LogSearch {
    name: String,
    path: PathBuf,
    description: String,
}

impl LogSearch {
    /// A tool named `name` over the log at `path`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> LogSearch {
        LogSearch {
            name: name.into(),
            path: path.into(),
            description:
                "Search a log: lines containing a text, after/before a timestamp, the last N."
                    .into(),
        }
    }

    /// Replaces the description the model sees.
    pub fn with_description(mut self, description: impl Into<String>) -> LogSearch {
        self.description = description.into();
        self
    }
}

#[async_trait]
impl Tool for LogSearch {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<LogSearchArgs>()
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: LogSearchArgs = parse_args(args)?;
        let (contains, after, before) = (
            args.contains.as_deref(),
            args.after.as_deref(),
            args.before.as_deref(),
        );
        let last = match args.last {
            Some(0) => {
                return Err(ToolError::InvalidArguments(
                    "`last` must be a positive integer".into(),
                ));
            }
            n => n,
        };
        let text = super::read(&self.path).await?;
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter(|l| {
                let stamp = l.split_whitespace().next().unwrap_or("");
                contains.is_none_or(|c| l.contains(c))
                    && after.is_none_or(|a| stamp >= a)
                    && before.is_none_or(|b| stamp < b)
            })
            .collect();
        let keep = last.map_or(hits.len(), |n| {
            usize::try_from(n).unwrap_or(usize::MAX).min(hits.len())
        });
        let hits = &hits[hits.len() - keep..];
        if hits.is_empty() {
            return Ok("no matching lines".into());
        }
        Ok(hits.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn filters() {
        let p = std::env::temp_dir().join(format!("baton-log-{}.log", std::process::id()));
        std::fs::write(
            &p,
            "# header\n13:10 deploy a\n13:58 deploy b\n14:20 deploy c\n14:21 note x\n",
        )
        .unwrap();
        let t = LogSearch::new("log", &p);
        assert_eq!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"contains": "deploy", "before": "14:05", "last": 1})
            )
            .await
            .unwrap(),
            "13:58 deploy b"
        );
        assert_eq!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"after": "14:21"})
            )
            .await
            .unwrap(),
            "14:21 note x"
        );
        assert_eq!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"contains": "zzz"})
            )
            .await
            .unwrap(),
            "no matching lines"
        );
        assert!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"last": 0})
            )
            .await
            .is_err()
        );
    }
}
