use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::json;

use crate::tool::{Tool, ToolError, opt_str_arg};

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
        json!({
            "type": "object",
            "properties": {
                "contains": {"type": "string"},
                "after": {"type": "string", "description": "only lines stamped at or after this time"},
                "before": {"type": "string", "description": "only lines stamped strictly before this time"},
                "last": {"type": "integer", "minimum": 1, "description": "keep only the last N matches"}
            },
            "additionalProperties": false
        })
    }
    async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
        let contains = opt_str_arg(&args, "contains")?;
        let after = opt_str_arg(&args, "after")?;
        let before = opt_str_arg(&args, "before")?;
        let last = match args.get("last") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                ToolError::InvalidArguments("`last` must be a positive integer".into())
            })?),
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
            t.call(json!({"contains": "deploy", "before": "14:05", "last": 1}))
                .await
                .unwrap(),
            "13:58 deploy b"
        );
        assert_eq!(
            t.call(json!({"after": "14:21"})).await.unwrap(),
            "14:21 note x"
        );
        assert_eq!(
            t.call(json!({"contains": "zzz"})).await.unwrap(),
            "no matching lines"
        );
        assert!(t.call(json!({"last": 0})).await.is_err());
    }
}
