//! MCP connectors: the tools of [Model Context Protocol](https://modelcontextprotocol.io) servers
//! as Baton [`Tool`]s, over stdio (a child process) or streamable HTTP, with the official Rust SDK
//! ([rmcp](https://crates.io/crates/rmcp)).
//!
//! [`McpServer::connect`] starts (or reaches) a server, initialises the session and lists its
//! tools; [`McpServer::tools`] gives them as tools named `<server>__<tool>`, each with the
//! server's JSON schema and an [`Effect`] taken from the topology, else **destructive**: the MCP
//! specification says a client must treat annotations from servers it does not trust as hints,
//! so they are read only for a server marked `trust_annotations` (`readOnlyHint` → read;
//! otherwise `destructiveHint`, which MCP defaults to true → destructive; a tool that says it is
//! not destructive → write). A tool's `dry_run` argument counts as a dry run only for a server
//! declared `dry_run: supported`. The harness then applies the same policy and audit to them as
//! to built-ins.
//!
//! A stdio server that dies is supervised: the next call finds the session closed and starts the
//! server again, at most `max_restarts` times within `restart_window` (then the server is given
//! up and calls fail, saying why). A call that was in flight when the server died fails; it is not
//! retried, since it may have had an effect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use baton_core::{Effect, Tool, ToolError};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};

/// How a server is reached (the type the topology resolves, from baton-core).
pub use baton_core::McpTransport as Transport;

/// A server's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Its name in the topology (the prefix of its tools' names).
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// The server's tools to expose (all when `None`).
    pub allow: Option<Vec<String>>,
    /// Effects by the server's tool name, overriding the annotations.
    pub effects: BTreeMap<String, Effect>,
    /// The effect of tools without an entry in `effects` (else from their annotations when
    /// `trust_annotations`, else destructive).
    pub effect: Option<Effect>,
    /// Read the tools' MCP annotations (`readOnlyHint`, `destructiveHint`) for their effect.
    /// Off by default: a server's own claims are hints, not policy.
    pub trust_annotations: bool,
    /// The server's tools honour `dry_run: true` (change nothing, say what they would do).
    pub dry_run: bool,
    /// How long starting and initialising the session may take.
    pub startup_timeout: Duration,
    /// Restarts of a dead stdio server allowed within `restart_window`.
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    pub restart_window: Duration,
}

impl ServerConfig {
    /// Settings with defaults: every tool, destructive unless the topology says otherwise
    /// (annotations not trusted), no dry runs, 30 s to start, 3 restarts a minute.
    pub fn new(name: impl Into<String>, transport: Transport) -> Self {
        Self {
            name: name.into(),
            transport,
            allow: None,
            effects: BTreeMap::new(),
            effect: None,
            trust_annotations: false,
            dry_run: false,
            startup_timeout: baton_core::defaults::MCP_STARTUP_TIMEOUT,
            max_restarts: baton_core::defaults::MCP_MAX_RESTARTS,
            restart_window: baton_core::defaults::MCP_RESTART_WINDOW,
        }
    }
}

/// Why a server could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The process could not be started.
    #[error("MCP server `{server}`: cannot start `{command}`")]
    Spawn {
        /// The server.
        server: String,
        /// The program.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The session did not initialise.
    #[error("MCP server `{server}`: {what}")]
    Session {
        /// The server.
        server: String,
        /// What went wrong.
        what: String,
    },
    /// A `${VAR}` reference names a variable that is not set.
    #[error("MCP server `{server}`: environment variable `{var}` is not set")]
    MissingVar {
        /// The server.
        server: String,
        /// The variable.
        var: String,
    },
    /// `allow` names a tool the server does not have.
    #[error("MCP server `{server}` has no tool `{tool}` (it has: {available})")]
    UnknownTool {
        /// The server.
        server: String,
        /// The tool asked for.
        tool: String,
        /// The tools it has.
        available: String,
    },
}

type Session = RunningService<RoleClient, ()>;

struct Live {
    session: Option<Arc<Session>>,
    restarts: baton_core::RestartIntensity,
    gave_up: bool,
    pid: Option<u32>,
}

/// A connected MCP server.
pub struct McpServer {
    config: ServerConfig,
    live: tokio::sync::Mutex<Live>,
    listed: Vec<rmcp::model::Tool>,
    restarts_total: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.config.name)
            .field("tools", &self.listed.len())
            .finish()
    }
}

/// Replaces each `${VAR}` in `value` with the variable's value.
fn expand(server: &str, value: &str) -> Result<String, McpError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => {
                return Err(McpError::MissingVar {
                    server: server.to_string(),
                    var: var.to_string(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl McpServer {
    /// Starts or reaches the server, initialises the session and lists its tools.
    ///
    /// # Errors
    /// [`McpError`] naming the server: it would not start, did not initialise in time, a
    /// `${VAR}` is unset, or `allow` names a tool it does not have.
    pub async fn connect(config: ServerConfig) -> Result<Arc<McpServer>, McpError> {
        let (session, pid) = Self::open(&config).await?;
        let listed = tokio::time::timeout(config.startup_timeout, session.list_all_tools())
            .await
            .map_err(|_| McpError::Session {
                server: config.name.clone(),
                what: "listing its tools timed out".into(),
            })?
            .map_err(|e| McpError::Session {
                server: config.name.clone(),
                what: format!("listing its tools failed: {e}"),
            })?;
        if let Some(allow) = &config.allow {
            for t in allow {
                if !listed.iter().any(|l| l.name == t.as_str()) {
                    return Err(McpError::UnknownTool {
                        server: config.name.clone(),
                        tool: t.clone(),
                        available: listed
                            .iter()
                            .map(|l| l.name.as_ref())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        tracing::info!(server = %config.name, tools = listed.len(), "MCP server connected");
        // Born at zero: the first restart is then a visible rise, and a panel shows 0, not
        // "No data".
        metrics::counter!("baton_mcp_restarts_total", "server" => config.name.clone()).absolute(0);
        Ok(Arc::new(McpServer {
            config,
            live: tokio::sync::Mutex::new(Live {
                session: Some(Arc::new(session)),
                restarts: baton_core::RestartIntensity::default(),
                gave_up: false,
                pid,
            }),
            listed,
            restarts_total: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    async fn open(config: &ServerConfig) -> Result<(Session, Option<u32>), McpError> {
        let name = &config.name;
        let session_err = |what: String| McpError::Session {
            server: name.clone(),
            what,
        };
        let started = async {
            match &config.transport {
                Transport::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => {
                    let mut vars = Vec::with_capacity(env.len());
                    for (k, v) in env {
                        vars.push((k.clone(), expand(name, v)?));
                    }
                    let cmd = tokio::process::Command::new(command).configure(|c| {
                        c.args(args).envs(vars);
                        if let Some(d) = cwd {
                            c.current_dir(d);
                        }
                    });
                    let (child, _stderr) = TokioChildProcess::builder(cmd)
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .map_err(|source| McpError::Spawn {
                            server: name.clone(),
                            command: command.clone(),
                            source,
                        })?;
                    let pid = child.id();
                    let session = ()
                        .serve(child)
                        .await
                        .map_err(|e| session_err(format!("the session did not initialise: {e}")))?;
                    Ok((session, pid))
                }
                Transport::Http { url, headers } => {
                    // reqwest is built with rustls and no provider of its own: ring's, once.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    let mut map = std::collections::HashMap::new();
                    for (k, v) in headers {
                        let value = expand(name, v)?;
                        let key = http::HeaderName::try_from(k.as_str())
                            .map_err(|e| session_err(format!("header `{k}`: {e}")))?;
                        let value = http::HeaderValue::try_from(value)
                            .map_err(|_| session_err(format!("header `{k}`: not a valid value")))?;
                        map.insert(key, value);
                    }
                    let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                        .custom_headers(map);
                    let transport = StreamableHttpClientTransport::from_config(config);
                    let session = ().serve(transport).await.map_err(|e| {
                        session_err(format!("the session with {url} did not initialise: {e}"))
                    })?;
                    Ok((session, None))
                }
            }
        };
        tokio::time::timeout(config.startup_timeout, started)
            .await
            .map_err(|_| {
                session_err(format!("did not start within {:?}", config.startup_timeout))
            })?
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The tools it listed at connection (before `allow`).
    pub fn listed(&self) -> impl Iterator<Item = &str> {
        self.listed.iter().map(|t| t.name.as_ref())
    }

    /// How many times it was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The process id of a stdio server's current process.
    pub async fn pid(&self) -> Option<u32> {
        self.live.lock().await.pid
    }

    /// Its tools, named `<server>__<tool>`, filtered by `allow`.
    pub fn tools(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        self.listed
            .iter()
            .filter(|t| {
                self.config
                    .allow
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|n| n == t.name.as_ref()))
            })
            .map(|t| {
                let effect = self
                    .config
                    .effects
                    .get(t.name.as_ref())
                    .copied()
                    .or(self.config.effect)
                    .unwrap_or_else(|| {
                        if self.config.trust_annotations {
                            effect_of(t)
                        } else {
                            Effect::Destructive
                        }
                    });
                Arc::new(McpTool {
                    server: Arc::clone(self),
                    remote: t.name.to_string(),
                    name: tool_name(&self.config.name, &t.name),
                    description: t
                        .description
                        .as_deref()
                        .unwrap_or("(no description)")
                        .to_string(),
                    parameters: serde_json::Value::Object((*t.input_schema).clone()),
                    effect,
                }) as Arc<dyn Tool>
            })
            .collect()
    }

    /// The live session, restarting a dead stdio server within its intensity.
    async fn session(&self) -> Result<Arc<Session>, ToolError> {
        let mut live = self.live.lock().await;
        if let Some(s) = &live.session
            && !s.is_closed()
            && !s.peer().is_transport_closed()
        {
            return Ok(Arc::clone(s));
        }
        if live.gave_up {
            return Err(ToolError::Failed(format!(
                "MCP server `{}` is down: it died more than {} times within {:?}",
                self.config.name, self.config.max_restarts, self.config.restart_window
            )));
        }
        if !live
            .restarts
            .admit(self.config.max_restarts, self.config.restart_window)
        {
            live.gave_up = true;
            live.session = None;
            tracing::error!(server = %self.config.name, "MCP server gave up: restart intensity exceeded");
            return Err(ToolError::Failed(format!(
                "MCP server `{}` is down: it died more than {} times within {:?}",
                self.config.name, self.config.max_restarts, self.config.restart_window
            )));
        }
        tracing::warn!(server = %self.config.name, "MCP server's session closed: restarting it");
        self.restarts_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("baton_mcp_restarts_total", "server" => self.config.name.clone())
            .increment(1);
        match Self::open(&self.config).await {
            Ok((s, pid)) => {
                let s = Arc::new(s);
                live.session = Some(Arc::clone(&s));
                live.pid = pid;
                Ok(s)
            }
            Err(e) => {
                live.session = None;
                Err(ToolError::Failed(format!("restarting it failed: {e}")))
            }
        }
    }
}

/// The name an agent and its model use for a server's tool.
pub fn tool_name(server: &str, tool: &str) -> String {
    format!("{server}__{tool}")
}

/// A tool's effect from its MCP annotations: read-only → read; else destructive unless it says
/// it is not (MCP's default for `destructiveHint` is true) → write.
fn effect_of(t: &rmcp::model::Tool) -> Effect {
    let a = t.annotations.as_ref();
    if a.and_then(|a| a.read_only_hint).unwrap_or(false) {
        Effect::Read
    } else if a.and_then(|a| a.destructive_hint) == Some(false) {
        Effect::Write
    } else {
        Effect::Destructive
    }
}

/// One tool of an MCP server.
struct McpTool {
    server: Arc<McpServer>,
    remote: String,
    name: String,
    description: String,
    parameters: serde_json::Value,
    effect: Effect,
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> serde_json::Value {
        self.parameters.clone()
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn supports_dry_run(&self) -> bool {
        self.server.config.dry_run
    }
    async fn call(
        &self,
        cx: &baton_core::ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args = match arguments {
            serde_json::Value::Object(m) => Some(m),
            serde_json::Value::Null => None,
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "the arguments must be an object, not {other}"
                )));
            }
        };
        let session = self.server.session().await?;
        let mut params = CallToolRequestParams::new(self.remote.clone());
        params.arguments = args;
        params.meta = Some(caller_meta(cx));
        let result = session.call_tool(params).await.map_err(|e| {
            ToolError::Failed(format!(
                "MCP server `{}`: {e} (the call is not retried: it may have had an effect)",
                self.server.config.name
            ))
        })?;
        let text = render(&result.content, result.structured_content.as_ref());
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(text));
        }
        Ok(text)
    }
}

/// A call's content as text: text blocks as they are, others named.
fn render(content: &[ContentBlock], structured: Option<&serde_json::Value>) -> String {
    let mut parts: Vec<String> = content
        .iter()
        .map(|c| match c {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio {}]", a.mime_type),
            ContentBlock::Resource(_) => "[embedded resource]".to_string(),
            ContentBlock::ResourceLink(r) => format!("[resource {}]", r.uri),
            _ => "[content of a kind this client does not read]".to_string(),
        })
        .collect();
    if parts.is_empty()
        && let Some(s) = structured
    {
        parts.push(s.to_string());
    }
    parts.join("\n")
}

/// The caller, as the request's `_meta`: a W3C `traceparent` (the run's trace id, the task as the
/// parent span) that a traced server joins, and `dev.baton/agent`, `dev.baton/task`,
/// `dev.baton/root` and `dev.baton/dry_run`.
fn caller_meta(cx: &baton_core::ToolContext<'_>) -> rmcp::model::RequestMetaObject {
    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.set_traceparent(format!("00-{:032x}-{:016x}-01", cx.trace.0, cx.task.0));
    let fields = &mut meta.0.0;
    fields.insert("dev.baton/agent".into(), cx.agent.into());
    fields.insert("dev.baton/task".into(), cx.task.0.into());
    fields.insert("dev.baton/root".into(), cx.root.0.into());
    fields.insert("dev.baton/dry_run".into(), cx.dry_run.into());
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_travels_in_the_request_meta() {
        let cx = baton_core::ToolContext::new("ops", baton_core::TaskId(0x2a))
            .with_root(baton_core::TaskId(7))
            .with_dry_run(true);
        let meta = serde_json::to_value(caller_meta(&cx)).expect("serialises");
        assert_eq!(
            meta,
            serde_json::json!({
                "traceparent": "00-00000000000000000000000000000007-000000000000002a-01",
                "dev.baton/agent": "ops",
                "dev.baton/task": 42,
                "dev.baton/root": 7,
                "dev.baton/dry_run": true,
            })
        );
    }

    #[test]
    fn references_are_read_from_the_environment_and_missing_ones_named() {
        // SAFETY-free: a variable name no one else uses.
        let var = "BATON_MCP_TEST_TOKEN_ABSENT";
        let e = expand("s", &format!("Bearer ${{{var}}}")).expect_err("unset");
        assert_eq!(
            e.to_string(),
            format!("MCP server `s`: environment variable `{var}` is not set")
        );
        assert_eq!(expand("s", "plain").expect("literal"), "plain");
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(expand("s", "x${PATH}y").expect("set"), format!("x{path}y"));
    }
}
