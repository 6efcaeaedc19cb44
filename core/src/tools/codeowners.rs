use std::path::PathBuf;

use async_trait::async_trait;
use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// The arguments of [`Codeowners`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeownersArgs {
    /// Repository-relative file path.
    pub path: String,
}

/// Looks up the owners of a path in a GitHub-style `CODEOWNERS` file (the last matching pattern wins).
#[derive(Debug, Clone)]
pub struct Codeowners {
    name: String,
    path: PathBuf,
}

impl Codeowners {
    /// A tool named `name` over the CODEOWNERS file at `path`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Codeowners {
        Codeowners {
            name: name.into(),
            path: path.into(),
        }
    }
}

/// Translates a CODEOWNERS pattern to an anchored regex over a repository-relative path.
fn pattern_regex(pattern: &str) -> Option<Regex> {
    let anchored = pattern.starts_with('/') || pattern.trim_end_matches('/').contains('/');
    let dir = pattern.ends_with('/');
    let body = pattern.trim_start_matches('/').trim_end_matches('/');
    let mut re = String::from(if anchored { "^" } else { "^(?:.*/)?" });
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    // A pattern matches the path itself or anything beneath it (a directory match).
    re.push_str(if dir { "/.*$" } else { "(?:/.*)?$" });
    Regex::new(&re).ok()
}

#[async_trait]
impl Tool for Codeowners {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "Look up the owners of a file path in CODEOWNERS."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<CodeownersArgs>()
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: CodeownersArgs = parse_args(args)?;
        let path = args.path.trim_start_matches('/');
        let text = super::read(&self.path).await?;
        let mut owners: Option<Vec<&str>> = None;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut parts = line.split_whitespace();
            let Some(pattern) = parts.next() else {
                continue;
            };
            if pattern_regex(pattern).is_some_and(|re| re.is_match(path)) {
                owners = Some(parts.collect());
            }
        }
        Ok(match owners {
            Some(o) if !o.is_empty() => format!("{path}: owners {}", o.join(" ")),
            _ => format!("{path}: no owners"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn last_match_wins() {
        let p = std::env::temp_dir().join(format!("baton-co-{}", std::process::id()));
        std::fs::write(&p, "* @org/all\n/services/checkout/ @team-checkout\n*.go @gophers # comment\n/services/checkout/pricing/** @alice @payments\n").unwrap();
        let t = Codeowners::new("owners", &p);
        let cx = crate::tool::ToolContext::new("test", crate::TaskId(1));
        let ask = |path: &str| t.call(&cx, json!({"path": path}));
        assert_eq!(
            ask("README.md").await.unwrap(),
            "README.md: owners @org/all"
        );
        assert_eq!(
            ask("services/checkout/api.ts").await.unwrap(),
            "services/checkout/api.ts: owners @team-checkout"
        );
        assert_eq!(
            ask("services/checkout/main.go").await.unwrap(),
            "services/checkout/main.go: owners @gophers"
        );
        assert_eq!(
            ask("services/checkout/pricing/cache.go").await.unwrap(),
            "services/checkout/pricing/cache.go: owners @alice @payments"
        );
    }
}
