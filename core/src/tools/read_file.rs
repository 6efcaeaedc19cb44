use std::path::{Path, PathBuf};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// Reads a text file inside a declared root, and nothing outside it: `..`, absolute paths and
/// symbolic links that lead out are refused (the path is resolved before it is checked).
#[derive(Debug, Clone)]
pub struct ReadFile {
    name: String,
    root: PathBuf,
    max_bytes: u64,
}

/// The arguments of [`ReadFile`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    /// The file, relative to the root.
    pub path: String,
}

impl ReadFile {
    /// A tool named `name` reading inside `root` (files up to 1 MiB).
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> ReadFile {
        ReadFile {
            name: name.into(),
            root: root.into(),
            max_bytes: 1 << 20,
        }
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        let root = self.root.canonicalize().map_err(|e| {
            ToolError::Failed(format!(
                "the root {} is unreadable: {e}",
                self.root.display()
            ))
        })?;
        let wanted = Path::new(path);
        let joined = if wanted.is_absolute() {
            wanted.to_path_buf()
        } else {
            root.join(wanted)
        };
        let real = joined
            .canonicalize()
            .map_err(|e| ToolError::Failed(format!("cannot read `{path}`: {e}")))?;
        if !real.starts_with(&root) {
            return Err(ToolError::Failed(format!(
                "`{path}` is outside the root this tool may read"
            )));
        }
        Ok(real)
    }
}

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "Read a text file (a path relative to the tool's root folder)."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_for::<ReadFileArgs>()
    }
    async fn call(&self, args: serde_json::Value) -> Result<String, ToolError> {
        let args: ReadFileArgs = parse_args(args)?;
        let path = self.resolve(&args.path)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| ToolError::Failed(format!("cannot read `{}`: {e}", args.path)))?;
        if !meta.is_file() {
            return Err(ToolError::Failed(format!("`{}` is not a file", args.path)));
        }
        if meta.len() > self.max_bytes {
            return Err(ToolError::Failed(format!(
                "`{}` is {} bytes, more than the {} this tool reads",
                args.path,
                meta.len(),
                self.max_bytes
            )));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| ToolError::Failed(format!("cannot read `{}`: {e}", args.path)))?;
        String::from_utf8(bytes)
            .map_err(|_| ToolError::Failed(format!("`{}` is not UTF-8 text", args.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root() -> PathBuf {
        let d = std::env::temp_dir().join(format!("baton-read-file-{}", std::process::id()));
        std::fs::create_dir_all(d.join("runbooks")).expect("root");
        std::fs::write(d.join("runbooks/cache.md"), "flush the cache").expect("file");
        d
    }

    #[tokio::test]
    async fn reads_inside_its_root_only() {
        let outside = std::env::temp_dir().join(format!("baton-outside-{}", std::process::id()));
        std::fs::write(&outside, "secret").expect("outside file");
        let root = root();
        let t = ReadFile::new("read_file", &root);
        assert_eq!(
            t.call(json!({"path": "runbooks/cache.md"}))
                .await
                .expect("reads"),
            "flush the cache"
        );
        let name = outside.file_name().and_then(|n| n.to_str()).expect("name");
        for escape in [
            format!("../{name}"),
            outside.to_string_lossy().into_owned(),
            format!("runbooks/../../{name}"),
        ] {
            let e = t.call(json!({"path": escape})).await.expect_err("outside");
            assert!(e.to_string().contains("outside the root"), "{escape}: {e}");
        }
        #[cfg(unix)]
        {
            let link = root.join("sneaky");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&outside, &link).expect("symlink");
            let e = t
                .call(json!({"path": "sneaky"}))
                .await
                .expect_err("link out");
            assert!(e.to_string().contains("outside the root"), "{e}");
        }
        let e = t
            .call(json!({"file": "x"}))
            .await
            .expect_err("wrong argument");
        assert!(matches!(e, ToolError::InvalidArguments(_)), "{e}");
        let _ = std::fs::remove_file(&outside);
    }

    #[test]
    fn its_schema_comes_from_the_arguments_type() {
        let s = ReadFile::new("r", ".").parameters();
        assert_eq!(s["type"], "object");
        assert_eq!(s["properties"]["path"]["type"], "string");
        assert_eq!(s["required"], json!(["path"]));
        assert!(s.get("$schema").is_none());
    }
}
