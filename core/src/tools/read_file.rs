use std::path::{Path, PathBuf};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// Reads a text file inside a declared root, and nothing outside it: `..`, absolute paths and
/// symbolic links that lead out are refused, by an open that cannot leave the root (cap-std), so
/// no rename racing a check can lead it outside.
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

    /// Opens `path` beneath the root and reads it: the check and the open are one operation
    /// (`openat2` with `RESOLVE_BENEATH` on Linux, component by component elsewhere), so a
    /// rename or a symbolic link swapped in while it runs cannot lead outside.
    fn read_beneath(&self, path: &str) -> Result<String, ToolError> {
        use std::io::Read as _;
        let (dir, relative) = beneath(&self.root, path)?;
        let file = dir.open(&relative).map_err(|e| {
            // cap-std reports an escape as PermissionDenied ("a path led outside of the
            // filesystem"): say it in the tool's words.
            if e.kind() == std::io::ErrorKind::PermissionDenied || e.to_string().contains("outside")
            {
                ToolError::Failed(format!("`{path}` is outside the root this tool may read"))
            } else {
                ToolError::Failed(format!("cannot read `{path}`: {e}"))
            }
        })?;
        let meta = file
            .metadata()
            .map_err(|e| ToolError::Failed(format!("cannot read `{path}`: {e}")))?;
        if !meta.is_file() {
            return Err(ToolError::Failed(format!("`{path}` is not a file")));
        }
        if meta.len() > self.max_bytes {
            return Err(ToolError::Failed(format!(
                "`{path}` is {} bytes, more than the {} this tool reads",
                meta.len(),
                self.max_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // Read no more than the cap, even if the file grew since its size was read.
        file.take(self.max_bytes)
            .read_to_end(&mut bytes)
            .map_err(|e| ToolError::Failed(format!("cannot read `{path}`: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| ToolError::Failed(format!("`{path}` is not UTF-8 text")))
    }
}

/// The root opened as a capability, and the path `path` names beneath it, relative to it: `..`
/// components are resolved by the open itself (which refuses to leave the root); an absolute path
/// must lie inside the root. Shared by the file tools.
pub(super) fn beneath(root: &Path, path: &str) -> Result<(cap_std::fs::Dir, PathBuf), ToolError> {
    let dir =
        cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| {
            ToolError::Failed(format!("the root {} is unreadable: {e}", root.display()))
        })?;
    let wanted = Path::new(path);
    if !wanted.is_absolute() {
        return Ok((dir, wanted.to_path_buf()));
    }
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let relative = wanted
        .strip_prefix(&real_root)
        .or_else(|_| wanted.strip_prefix(root))
        .map(Path::to_path_buf)
        .map_err(|_| {
            ToolError::Failed(format!("`{path}` is outside the root this tool may read"))
        })?;
    Ok((dir, relative))
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
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: ReadFileArgs = parse_args(args)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_beneath(&args.path))
            .await
            .map_err(|e| ToolError::Failed(format!("the read was interrupted: {e}")))?
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
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"path": "runbooks/cache.md"})
            )
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
            let e = t
                .call(
                    &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                    json!({"path": escape}),
                )
                .await
                .expect_err("outside");
            assert!(e.to_string().contains("outside the root"), "{escape}: {e}");
        }
        #[cfg(unix)]
        {
            let link = root.join("sneaky");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&outside, &link).expect("symlink");
            let e = t
                .call(
                    &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                    json!({"path": "sneaky"}),
                )
                .await
                .expect_err("link out");
            assert!(e.to_string().contains("outside the root"), "{e}");
        }
        let e = t
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"file": "x"}),
            )
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

    /// The race of the hardening issue: a directory inside the root is swapped, again and
    /// again, with a symbolic link to a folder outside it while the tool reads through it. No
    /// read may ever return the outside file (the check and the open are one operation).
    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rename_racing_the_read_never_leads_outside() {
        let base = std::env::temp_dir().join(format!("baton-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("d")).expect("root");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(root.join("d/f"), "inside").expect("inside");
        std::fs::write(outside.join("f"), "SECRET").expect("secret");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("link");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (root, stop) = (root.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::rename(root.join("d"), root.join("real"));
                    let _ = std::fs::rename(root.join("link"), root.join("d"));
                    let _ = std::fs::rename(root.join("d"), root.join("link"));
                    let _ = std::fs::rename(root.join("real"), root.join("d"));
                }
            })
        };
        let t = ReadFile::new("read_file", &root);
        let mut read_inside = 0;
        for _ in 0..2000 {
            if let Ok(text) = t
                .call(
                    &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                    json!({"path": "d/f"}),
                )
                .await
            {
                assert_ne!(text, "SECRET", "a read led outside the root");
                read_inside += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().expect("swapper");
        assert!(read_inside > 0, "the file inside was read at times");
        let _ = std::fs::remove_dir_all(&base);
    }
}
