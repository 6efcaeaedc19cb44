use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::read_file::beneath;
use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// Lists a folder inside a declared root, and nothing outside it (the same confinement as
/// [`super::ReadFile`]: an open that cannot leave the root). One entry a line, sorted: folders
/// end with `/`, files show their size; at most 1,000 entries, the rest counted.
#[derive(Debug, Clone)]
pub struct ListDir {
    name: String,
    root: PathBuf,
}

/// The arguments of [`ListDir`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDirArgs {
    /// The folder, relative to the root (default: the root itself).
    #[serde(default)]
    pub path: Option<String>,
}

/// Entries listed at most; more are counted, not shown.
const MAX_ENTRIES: usize = 1_000;

impl ListDir {
    /// A tool named `name` listing folders inside `root`.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> ListDir {
        ListDir {
            name: name.into(),
            root: root.into(),
        }
    }

    fn list(&self, path: &str) -> Result<String, ToolError> {
        let (root, relative) = beneath(&self.root, path)?;
        let dir = if relative.as_os_str().is_empty() || relative == std::path::Path::new(".") {
            root
        } else {
            root.open_dir(&relative).map_err(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.to_string().contains("outside")
                {
                    ToolError::Failed(format!("`{path}` is outside the root this tool may read"))
                } else {
                    ToolError::Failed(format!("cannot list `{path}`: {e}"))
                }
            })?
        };
        let mut entries: Vec<String> = Vec::new();
        let mut total = 0usize;
        for entry in dir
            .entries()
            .map_err(|e| ToolError::Failed(format!("cannot list `{path}`: {e}")))?
        {
            let entry =
                entry.map_err(|e| ToolError::Failed(format!("cannot list `{path}`: {e}")))?;
            total += 1;
            if entries.len() >= MAX_ENTRIES {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let line = match entry.metadata() {
                Ok(m) if m.is_dir() => format!("{name}/"),
                Ok(m) => format!("{name}  {} bytes", m.len()),
                Err(_) => name,
            };
            entries.push(line);
        }
        entries.sort();
        if entries.is_empty() {
            return Ok(format!("`{path}` is empty"));
        }
        if total > entries.len() {
            entries.push(format!(
                "… and {} more (only the first {MAX_ENTRIES} are listed)",
                total - entries.len()
            ));
        }
        Ok(entries.join("\n"))
    }
}

#[async_trait]
impl Tool for ListDir {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "List a folder (a path relative to the tool's root folder; default the root): folders end with /, files show their size."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<ListDirArgs>()
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: ListDirArgs = parse_args(args)?;
        let me = self.clone();
        let path = args.path.unwrap_or_else(|| ".".into());
        tokio::task::spawn_blocking(move || me.list(&path))
            .await
            .map_err(|e| ToolError::Failed(format!("the listing was interrupted: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn lists_inside_its_root_only() {
        let root = std::env::temp_dir().join(format!("baton-list-dir-{}", std::process::id()));
        std::fs::create_dir_all(root.join("inbox/old")).expect("root");
        std::fs::write(root.join("inbox/a.eml"), "hello").expect("file");
        let outside =
            std::env::temp_dir().join(format!("baton-list-outside-{}", std::process::id()));
        std::fs::create_dir_all(&outside).expect("outside");
        let t = ListDir::new("list_dir", &root);
        assert_eq!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"path": "inbox"})
            )
            .await
            .expect("lists"),
            "a.eml  5 bytes\nold/"
        );
        assert_eq!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({})
            )
            .await
            .expect("lists the root"),
            "inbox/"
        );
        let name = outside.file_name().and_then(|n| n.to_str()).expect("name");
        for escape in [
            format!("../{name}"),
            outside.to_string_lossy().into_owned(),
            format!("inbox/../../{name}"),
        ] {
            let e = t
                .call(
                    &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                    json!({ "path": escape }),
                )
                .await
                .expect_err("refused");
            assert!(e.to_string().contains("outside the root"), "{escape}: {e}");
        }
        assert!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"folder": "x"})
            )
            .await
            .is_err(),
            "unknown argument"
        );
    }
}
