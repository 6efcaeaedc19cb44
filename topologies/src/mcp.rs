//! `mcp_servers:` — MCP servers whose tools agents may use, resolved and checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_core::{McpTransport, defaults};

use crate::locate::Seg;
use crate::spec::{McpServerSpec, TopologySpec};
use crate::topology::{Validator, did_you_mean};

/// The separator between a server's name and its tool's in the name agents and models use.
pub const MCP_SEPARATOR: &str = "__";

/// An MCP server, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpServerDef {
    /// Its name (the prefix of its tools' names).
    pub name: Arc<str>,
    /// How it is reached.
    pub transport: McpTransport,
    /// The tools to offer (all when `None`).
    pub allow: Option<Vec<String>>,
    /// The effect of its tools, unless `effects` names one.
    pub effect: Option<baton_core::Effect>,
    /// Effects of single tools.
    pub effects: BTreeMap<String, baton_core::Effect>,
    /// Effects from the tools' MCP annotations where `effect`/`effects` say nothing.
    pub trust_annotations: bool,
    /// Its tools honour `dry_run: true`.
    pub dry_run: bool,
    /// Output of its tools longer than this many tokens is cut.
    pub max_output_tokens: u32,
    /// How long one call of its tools may take.
    pub timeout: Duration,
    /// How long starting it may take.
    pub startup_timeout: Duration,
    /// Restarts allowed within `restart_window`.
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    pub restart_window: Duration,
    /// Its tools' output makes a task private (local models only from then on).
    pub sensitive: bool,
}

use crate::secrets::{has_inline_secret, is_credential_name as is_credential};

impl Validator<'_> {
    pub(crate) fn check_mcp(
        &mut self,
        spec: &TopologySpec,
        base: &Path,
    ) -> BTreeMap<Arc<str>, McpServerDef> {
        let mut out = BTreeMap::new();
        for (name, s) in &spec.mcp_servers {
            let here = [Seg::Key("mcp_servers"), Seg::Key(name)];
            let at = |k: &'static str| [Seg::Key("mcp_servers"), Seg::Key(name), Seg::Key(k)];
            if name.contains(MCP_SEPARATOR)
                || name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                self.report(
                    &here,
                    format!("`{name}` cannot name an MCP server"),
                    Some(
                        "letters, digits, `-` and single `_` (its tools are named `<server>__<tool>`)"
                            .into(),
                    ),
                );
            }
            if spec.tools.contains_key(name) {
                self.report(
                    &here,
                    format!("`{name}` is both a tool and an MCP server"),
                    Some("an agent's `tools:` entry must mean one thing: rename one".into()),
                );
            }
            let transport = self.mcp_transport(name, s, base);
            if let Some(allow) = &s.tools {
                if allow.is_empty() {
                    self.report(
                        &at("tools"),
                        "an empty list offers no tool".into(),
                        Some("leave `tools` out to offer all the server's tools".into()),
                    );
                }
                for t in s.effects.keys() {
                    if !allow.contains(t) {
                        self.report(
                            &[
                                Seg::Key("mcp_servers"),
                                Seg::Key(name),
                                Seg::Key("effects"),
                                Seg::Key(t),
                            ],
                            format!("`{t}` is not among the tools offered"),
                            did_you_mean(t, allow.iter()),
                        );
                    }
                }
            }
            if s.max_output_tokens == Some(0) {
                self.report(
                    &at("max_output_tokens"),
                    "`max_output_tokens` must be more than zero".into(),
                    None,
                );
            }
            if s.timeout.is_some_and(|d| d.is_zero())
                || s.startup_timeout.is_some_and(|d| d.is_zero())
                || s.restart_window.is_some_and(|d| d.is_zero())
            {
                self.report(&here, "durations must be longer than zero".into(), None);
            }
            if let Some(transport) = transport {
                out.insert(
                    Arc::from(name.as_str()),
                    McpServerDef {
                        name: name.as_str().into(),
                        transport,
                        allow: s.tools.clone(),
                        effect: s.effect,
                        effects: s.effects.clone(),
                        trust_annotations: s.trust_annotations.unwrap_or(false),
                        dry_run: s.dry_run == Some(crate::spec::DryRunSupport::Supported),
                        max_output_tokens: s
                            .max_output_tokens
                            .unwrap_or(defaults::TOOL_OUTPUT_TOKENS),
                        timeout: s.timeout.unwrap_or(defaults::MCP_TIMEOUT),
                        startup_timeout: s.startup_timeout.unwrap_or(defaults::MCP_STARTUP_TIMEOUT),
                        max_restarts: s.max_restarts.unwrap_or(defaults::MCP_MAX_RESTARTS),
                        restart_window: s.restart_window.unwrap_or(defaults::MCP_RESTART_WINDOW),
                        sensitive: s.sensitive.unwrap_or(false),
                    },
                );
            }
        }
        out
    }

    fn mcp_transport(
        &mut self,
        name: &str,
        s: &McpServerSpec,
        base: &Path,
    ) -> Option<McpTransport> {
        let at = |k: &'static str| [Seg::Key("mcp_servers"), Seg::Key(name), Seg::Key(k)];
        match (&s.command, &s.url) {
            (Some(_), Some(_)) => {
                self.report(
                    &at("url"),
                    "an MCP server has `command` (stdio) or `url` (HTTP), not both".into(),
                    None,
                );
                None
            }
            (None, None) => {
                self.report(
                    &[Seg::Key("mcp_servers"), Seg::Key(name)],
                    "an MCP server needs `command` (stdio) or `url` (streamable HTTP)".into(),
                    Some(
                        "e.g. `command: npx` with `args: [\"-y\", \"@modelcontextprotocol/server-everything\"]`"
                            .into(),
                    ),
                );
                None
            }
            (Some(command), None) => {
                if !s.headers.is_empty() {
                    self.report(
                        &at("headers"),
                        "`headers` apply to `url` servers only".into(),
                        None,
                    );
                }
                if command.trim().is_empty() {
                    self.report(&at("command"), "`command` is empty".into(), None);
                }
                for (k, v) in &s.env {
                    if is_credential(k) && has_inline_secret(v) {
                        self.report(
                            &[
                                Seg::Key("mcp_servers"),
                                Seg::Key(name),
                                Seg::Key("env"),
                                Seg::Key(k),
                            ],
                            "secrets are given by reference, never inline".into(),
                            Some(format!(
                                "write `{k}: ${{{k}}}` and set it in the environment"
                            )),
                        );
                    }
                }
                // Absolute, so that `cwd` does not change what a relative path means.
                let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
                let command = if command.contains('/') && Path::new(command).is_relative() {
                    absolute(base.join(command)).to_string_lossy().into_owned()
                } else {
                    command.clone()
                };
                Some(McpTransport::Stdio {
                    command,
                    args: s.args.clone(),
                    env: s.env.clone(),
                    cwd: s.cwd.as_ref().map(|c| absolute(base.join(c))),
                })
            }
            (None, Some(url)) => {
                if !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                    self.report(
                        &at("url"),
                        "`args`, `env` and `cwd` apply to `command` servers only".into(),
                        None,
                    );
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.report(
                        &at("url"),
                        format!("`{url}` is not an http:// or https:// URL"),
                        None,
                    );
                }
                for (k, v) in &s.headers {
                    if is_credential(k) && has_inline_secret(v) {
                        self.report(
                            &[
                                Seg::Key("mcp_servers"),
                                Seg::Key(name),
                                Seg::Key("headers"),
                                Seg::Key(k),
                            ],
                            "secrets are given by reference, never inline".into(),
                            Some("write e.g. `Authorization: Bearer ${MCP_TOKEN}`".into()),
                        );
                    }
                }
                Some(McpTransport::Http {
                    url: url.clone(),
                    headers: s.headers.clone(),
                })
            }
        }
    }
}

/// Whether `name` (an agent's or a role's `tools:` entry) names an MCP server or one of its
/// tools that the topology offers.
pub(crate) fn resolves(spec: &TopologySpec, name: &str) -> bool {
    if spec.mcp_servers.contains_key(name) {
        return true;
    }
    let Some((server, tool)) = name.split_once(MCP_SEPARATOR) else {
        return false;
    };
    spec.mcp_servers.get(server).is_some_and(|s| {
        !tool.is_empty()
            && s.tools
                .as_ref()
                .is_none_or(|allow| allow.iter().any(|t| t == tool))
    })
}

/// For `<server>__<tool>` naming a declared server with a `tools:` list: the server and what it
/// offers.
pub(crate) fn offered<'s, 'n>(
    spec: &'s TopologySpec,
    name: &'n str,
) -> Option<(&'s str, &'n str, Vec<&'s str>)> {
    let (server, tool) = name.split_once(MCP_SEPARATOR)?;
    let (key, s) = spec.mcp_servers.get_key_value(server)?;
    let allow = s.tools.as_ref()?;
    Some((
        key.as_str(),
        tool,
        allow.iter().map(String::as_str).collect(),
    ))
}
