//! `tools:` resolved and checked: kinds, paths, allow-lists, output caps, fault rates.

use super::*;

impl Validator<'_> {
    pub(super) fn check_faults(&mut self, at: &[Seg<'_>], f: Option<&FaultSpec>) {
        let Some(f) = f else { return };
        let ps = [f.error, f.timeout, f.malformed, f.panic];
        let mut path = at.to_vec();
        path.push(Seg::Key("faults"));
        if ps.iter().any(|p| !(0.0..=1.0).contains(p)) {
            self.report(
                &path,
                "fault probabilities must be between 0 and 1".into(),
                None,
            );
        } else if ps.iter().sum::<f64>() > 1.0 {
            self.report(
                &path,
                "fault probabilities add up to more than 1".into(),
                None,
            );
        }
    }

    pub(super) fn check_tools(
        &mut self,
        tools: &BTreeMap<String, ToolSpec>,
        base: &Path,
    ) -> BTreeMap<Arc<str>, ToolDef> {
        let mut out = BTreeMap::new();
        for (name, t) in tools {
            let at = |k: &'static str| [Seg::Key("tools"), Seg::Key(name), Seg::Key(k)];
            if name == DELEGATE_TOOL {
                self.report(
                    &[Seg::Key("tools"), Seg::Key(name)],
                    "`delegate` is a built-in tool name".into(),
                    Some("choose another name".into()),
                );
            }
            if t.max_output_tokens == Some(0) {
                self.report(
                    &at("max_output_tokens"),
                    "`max_output_tokens` must be more than zero".into(),
                    None,
                );
            }
            if t.faults.is_some() && t.kind != ToolKind::Chaos {
                self.report(
                    &at("faults"),
                    "`faults` applies to `chaos` tools only".into(),
                    None,
                );
            }
            self.check_faults(&[Seg::Key("tools"), Seg::Key(name)], t.faults.as_ref());
            match (t.max_output_bytes, t.kind) {
                (Some(0), ToolKind::Shell) => self.report(
                    &at("max_output_bytes"),
                    "`max_output_bytes` must be at least 1".into(),
                    None,
                ),
                (Some(_), ToolKind::Shell) | (None, _) => {}
                (Some(_), _) => self.report(
                    &at("max_output_bytes"),
                    "`max_output_bytes` applies to `shell` tools only (others cap their output with `max_output_tokens`)".into(),
                    None,
                ),
            }
            self.check_allow(name, t);
            if t.timeout.is_some_and(|d| d.is_zero()) {
                self.report(
                    &at("timeout"),
                    "`timeout` must be longer than zero".into(),
                    None,
                );
            }
            let path = self.tool_path(name, t, base);
            let name: Arc<str> = name.as_str().into();
            out.insert(
                Arc::clone(&name),
                ToolDef {
                    name,
                    kind: t.kind,
                    path,
                    description: t.description.clone(),
                    faults: t.faults.clone(),
                    effect: t.effect,
                    max_output_tokens: t
                        .max_output_tokens
                        .unwrap_or(baton_core::defaults::TOOL_OUTPUT_TOKENS),
                    allow: t.allow.clone().unwrap_or_default(),
                    timeout: t.timeout.unwrap_or(baton_core::defaults::TOOL_TIMEOUT),
                    dry_run: t.dry_run,
                    max_output_bytes: t.max_output_bytes,
                    sensitive: t.sensitive.unwrap_or(false),
                },
            );
        }
        out
    }

    /// `allow:` of `shell` (programs) and `http_get` (hosts): required there, refused elsewhere.
    fn check_allow(&mut self, name: &str, t: &ToolSpec) {
        let at = |k: &'static str| [Seg::Key("tools"), Seg::Key(name), Seg::Key(k)];
        let allows = matches!(t.kind, ToolKind::Shell | ToolKind::HttpGet);
        match (&t.allow, allows) {
            (Some(_), false) => self.report(
                &at("allow"),
                "`allow` applies to `shell` and `http_get` tools only".into(),
                None,
            ),
            (Some(a), true) if a.is_empty() || a.iter().any(|x| x.trim().is_empty()) => {
                self.report(
                    &at("allow"),
                    "`allow` must list at least one entry, none blank".into(),
                    None,
                );
            }
            (None, true) => self.report(
                &[Seg::Key("tools"), Seg::Key(name)],
                format!(
                    "`{name}` needs `allow:`, the {} it may use",
                    if t.kind == ToolKind::Shell {
                        "programs"
                    } else {
                        "hosts"
                    }
                ),
                Some(
                    if t.kind == ToolKind::Shell {
                        "e.g. `allow: [uptime, df]`"
                    } else {
                        "e.g. `allow: [status.example.com]`"
                    }
                    .into(),
                ),
            ),
            _ => {}
        }
    }

    /// Where a tool works: `shell` in its folder (by default the topology file's), the file
    /// tools on a file or folder that must exist; relative to the topology file.
    fn tool_path(&mut self, name: &str, t: &ToolSpec, base: &Path) -> Option<PathBuf> {
        let at = |k: &'static str| [Seg::Key("tools"), Seg::Key(name), Seg::Key(k)];
        match (t.kind, &t.path) {
            // `shell` runs in its `path` (a folder), by default the topology file's own.
            (ToolKind::Shell, p) => {
                let dir = p
                    .as_ref()
                    .map_or_else(|| base.to_path_buf(), |p| base.join(p));
                if p.is_some() && !dir.is_dir() {
                    self.report(
                        &at("path"),
                        format!(
                            "folder `{}` not found (where `{name}` runs its commands)",
                            dir.display()
                        ),
                        Some("paths are relative to the topology file".into()),
                    );
                }
                Some(dir)
            }
            (
                ToolKind::Custom | ToolKind::Chaos | ToolKind::RestartService | ToolKind::HttpGet,
                _,
            ) => t.path.as_ref().map(|p| base.join(p)),
            (_, None) => {
                self.report(
                    &at("kind"),
                    format!("built-in tool `{name}` needs `path:`"),
                    None,
                );
                None
            }
            (kind, Some(p)) => {
                let p = base.join(p);
                let folder = matches!(
                    kind,
                    ToolKind::MetricsSeries | ToolKind::ReadFile | ToolKind::ListDir
                );
                let ok = if folder { p.is_dir() } else { p.is_file() };
                if !ok {
                    let what = if folder { "folder" } else { "file" };
                    self.report(
                        &at("path"),
                        format!("{what} `{}` not found", p.display()),
                        Some("paths are relative to the topology file".into()),
                    );
                }
                Some(p)
            }
        }
    }
}
