//! `scripted`: a deterministic, offline model driven by rules in a file.
//!
//! Every example and the main job run on it, so it behaves like a real provider where that matters:
//! it bills realistic token counts (about four characters per token, with per-message framing), honours
//! `max_tokens`, and can take time (`latency`).
//!
//! A rules file:
//!
//! ```yaml
//! latency: 20ms              # default for every rule (optional)
//! rules:
//!   - agent: rca             # match on the calling agent (optional; `model:` on the model's name)
//!     step: 1                # ... on the loop step (optional)
//!     last_contains: "alert" # ... on text in the last message (optional)
//!     reply:
//!       tool_calls:
//!         - name: query_metrics
//!           args: { series: checkout_p99 }
//!   - agent: rca
//!     last_matches: 'spike at (?P<t>\d\d:\d\d)'     # regex on the last message; captures fill {{t}}
//!     transcript_matches: ['deploy (?P<sha>\w+)']   # each must match some message; captures too
//!     reply:
//!       text: "The spike at {{t}} follows deploy {{sha}}. Task was: {{task}}"
//! ```
//!
//! A reply may carry `confidence: 0.4` (0 to 1), as a local model reporting how sure it is:
//! agents with `min_confidence` escalate a local-tier model's reply below it.
//!
//! The first rule that matches wins; `times: N` makes a rule fire at most N times. Templates: `{{task}}` (the first user message), `{{last}}` (the
//! last message), and named regex captures; they work in `text` and in every string of `args`.
//!
//! ## Rehearsing failure
//!
//! A rule can reply with a fault instead of an answer — `reply: { fault: error }` — and a rules file
//! (or the topology's model entry) can inject faults at random, reproducibly:
//!
//! ```yaml
//! faults: { seed: 7, error: 0.05, timeout: 0.02, malformed: 0.02, panic: 0.01 }
//! ```
//!
//! - `error`: the provider answers with an error (nothing billed); the agent escalates up its ladder.
//! - `timeout`: no answer; the call is abandoned at the model's `timeout` or the task's deadline.
//! - `malformed`: a reply that cannot be parsed (nothing billed).
//! - `panic`: the provider code panics, which crashes the agent: supervision takes over.
//! - `runaway` (rules only): call the first offered tool, every step, forever.
//!
//! [`ScriptedModel::injected`] counts what was injected, so tests can check reports against it.

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::{
    Message, Model, ModelError, ModelRequest, ModelResponse, Role, ToolCall, ToolSchema,
};
use crate::usage::TokenUsage;

// Fault injection (what `faults:` rehearses) in its own file.
mod faults;
pub use faults::{Fault, FaultSpec, InjectedFaults};
pub(crate) use faults::{FaultCounts, RandomFaults};

// Rule patterns and reply templates (captures, `{{task}}`, `{{last}}`) in their own file.
mod template;
use template::{Pattern, fill_json, push_captures, render};

// Why a rule fires or not (`baton rules test`, `baton run --explain`) in its own file.
mod explain;
use explain::Miss;
pub use explain::{Explanation, RuleVerdict};

// The rules file's shape (what serde reads and the JSON Schema documents) in its own file.
mod spec;
use spec::RulesFile;
pub use spec::rules_json_schema;

/// A deterministic model that answers from rules.
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    latency: Duration,
    rules: Vec<Rule>,
    faults: Option<RandomFaults>,
    injected: FaultCounts,
}

#[derive(Debug)]
struct Rule {
    model: Option<String>,
    agent: Option<String>,
    step: Option<u32>,
    last_contains: Option<String>,
    last_matches: Option<Pattern>,
    transcript_matches: Vec<Pattern>,
    text: Option<String>,
    calls: Vec<(String, serde_json::Value)>,
    fault: Option<Fault>,
    confidence: Option<f32>,
    latency: Option<Duration>,
    /// Fires at most this many times (then it no longer matches).
    times: Option<u32>,
    fired: AtomicU64,
    /// How a reply names it (`rule 3 (agent: rca · step: 2)`), made once at load so that a
    /// call only clones a pointer.
    label: std::sync::Arc<str>,
}

impl ScriptedModel {
    /// Loads a rules file. `name` is the model's name in the topology (used in errors).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Rules`] when it is malformed (with line and
    /// column), or a regex does not compile.
    pub fn from_file(name: &str, path: &Path) -> Result<ScriptedModel, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(name, &text, path)
    }

    /// Parses rules from YAML text; `origin` names the source in errors.
    ///
    /// # Errors
    /// [`Error::Rules`] when the text is malformed or a regex does not compile.
    pub fn from_yaml(name: &str, text: &str, origin: &Path) -> Result<ScriptedModel, Error> {
        let err = |message: String| Error::Rules {
            path: origin.to_path_buf(),
            message,
        };
        // The parser's own message without its rendered snippet (which would name the text
        // `<input>`): "line L column C: what".
        let file: RulesFile = serde_saphyr::from_str(text).map_err(|e| {
            let said = e.without_snippet().to_string();
            let said = said.strip_prefix("error: ").unwrap_or(&said).to_string();
            match e.location() {
                Some(l) if !said.starts_with("line ") => {
                    err(format!("line {} column {}: {said}", l.line(), l.column()))
                }
                _ => err(said),
            }
        })?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let re = |p: &str| {
                Pattern::new(p).map_err(|e| err(format!("rule {}: bad regex `{p}`: {e}", i + 1)))
            };
            if r.reply
                .confidence
                .is_some_and(|c| !(0.0..=1.0).contains(&c))
            {
                return Err(err(format!(
                    "rule {}: `confidence` must be between 0 and 1",
                    i + 1
                )));
            }
            if r.reply.text.is_none() && r.reply.tool_calls.is_empty() && r.reply.fault.is_none() {
                return Err(err(format!(
                    "rule {}: reply needs `text`, `tool_calls` or `fault`",
                    i + 1
                )));
            }
            rules.push(Rule {
                model: r.model,
                agent: r.agent,
                step: r.step,
                last_contains: r.last_contains,
                last_matches: r.last_matches.as_deref().map(re).transpose()?,
                transcript_matches: r
                    .transcript_matches
                    .iter()
                    .map(|p| re(p))
                    .collect::<Result<_, _>>()?,
                text: r.reply.text,
                calls: r
                    .reply
                    .tool_calls
                    .into_iter()
                    .map(|c| (c.name, c.args))
                    .collect(),
                fault: r.reply.fault,
                confidence: r.reply.confidence,
                latency: r.latency,
                times: r.times,
                fired: AtomicU64::new(0),
                label: std::sync::Arc::from(""),
            });
            let last = rules.len() - 1;
            rules[last].label = std::sync::Arc::from(explain::fired(last, &rules[last]));
        }
        let model = ScriptedModel {
            name: name.to_string(),
            latency: file.latency.unwrap_or_default(),
            rules,
            faults: None,
            injected: Default::default(),
        };
        Ok(match file.faults {
            Some(f) => model.with_faults(f),
            None => model,
        })
    }

    /// Injects random faults (replacing the rules file's `faults:`).
    pub fn with_faults(mut self, spec: FaultSpec) -> ScriptedModel {
        self.faults = Some(RandomFaults::new(spec, 0));
        self
    }

    /// Faults injected so far.
    pub fn injected(&self) -> InjectedFaults {
        self.injected.snapshot()
    }

    async fn inject(
        &self,
        fault: Fault,
        req: &ModelRequest<'_>,
    ) -> Result<ModelResponse, ModelError> {
        if fault == Fault::Runaway {
            let Some(tool) = req.tools.first() else {
                return Err(ModelError::Malformed {
                    model: self.name.clone(),
                    message: "runaway fault, but no tool is offered".into(),
                    billed: None,
                });
            };
            let call = ToolCall {
                id: format!("call_{}_1", req.step),
                name: tool.name.clone(),
                arguments: serde_json::json!({}),
            };
            let output = tokens(&call.name) + 5;
            return Ok(ModelResponse {
                text: None,
                tool_calls: vec![call],
                usage: TokenUsage {
                    input: request_tokens(req),
                    output: output.min(u64::from(req.max_tokens)),
                    cached_input: 0,
                    cache_write_input: 0,
                },
                truncated: output > u64::from(req.max_tokens),
                ..ModelResponse::default()
            });
        }

        self.injected.count(fault);
        match fault {
            Fault::Error => Err(ModelError::Provider {
                model: self.name.clone(),
                message: "injected fault: 503 service unavailable".into(),
            }),
            Fault::Malformed => Err(ModelError::Malformed {
                model: self.name.clone(),
                message: "injected fault: reply is not valid JSON".into(),
                billed: None,
            }),
            Fault::Panic => panic!("{}: injected fault: provider panicked", self.name),
            _ => {
                // Never answers: the caller's timeout or deadline ends the wait.
                std::future::pending::<()>().await;
                Err(ModelError::Provider {
                    model: self.name.clone(),
                    message: "unreachable".into(),
                })
            }
        }
    }

    /// Replaces the default latency (every rule without its own).
    pub fn with_latency(mut self, latency: Duration) -> ScriptedModel {
        self.latency = latency;
        self
    }

    /// A model with a single rule that always answers `text` (handy in tests and benchmarks).
    pub fn always(name: &str, text: &str) -> ScriptedModel {
        ScriptedModel {
            name: name.to_string(),
            latency: Duration::ZERO,
            rules: vec![Rule {
                model: None,
                agent: None,
                step: None,
                last_contains: None,
                last_matches: None,
                transcript_matches: Vec::new(),
                text: Some(text.to_string()),
                calls: Vec::new(),
                fault: None,
                confidence: None,
                latency: None,
                times: None,
                fired: AtomicU64::new(0),
                label: std::sync::Arc::from("rule 1 (any request)"),
            }],
            faults: None,
            injected: Default::default(),
        }
    }

    fn respond(
        &self,
        req: &ModelRequest<'_>,
    ) -> Result<(Result<ModelResponse, Fault>, Duration), ModelError> {
        let last = req.messages.last().map_or("", |m| m.content.as_str());
        let mut captures: Vec<(String, String)> = Vec::new();
        let rule = self.rules.iter().position(|r| {
            captures.clear();
            r.check(&self.name, req, last, &mut captures, true).is_ok()
        });
        let Some(i) = rule else {
            return Err(ModelError::NoRule {
                model: self.name.clone(),
                agent: req.agent.to_string(),
                step: req.step,
                last: last.chars().take(120).collect(),
            });
        };
        Ok(self.reply(i, req, last, &captures))
    }

    /// The reply of rule `i` (0-based) to `req`, its templates filled from `captures`.
    fn reply(
        &self,
        i: usize,
        req: &ModelRequest<'_>,
        last: &str,
        captures: &[(String, String)],
    ) -> (Result<ModelResponse, Fault>, Duration) {
        let rule = &self.rules[i];
        if let Some(f) = rule.fault {
            return (Err(f), rule.latency.unwrap_or(self.latency));
        }
        let task = req
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let fill = |s: &str| render(s, task, last, captures);
        let max_chars = usize::try_from(req.max_tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        let text = rule.text.as_deref().map(|t| {
            let mut t = fill(t);
            if t.chars().count() > max_chars {
                // Like a real provider, stop at max_tokens.
                t = t.chars().take(max_chars).collect();
            }
            t
        });
        let tool_calls: Vec<ToolCall> = rule
            .calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("call_{}_{}", req.step, i + 1),
                name: name.clone(),
                arguments: fill_json(args, &fill),
            })
            .collect();
        let mut output = text.as_deref().map_or(0, tokens);
        for c in &tool_calls {
            output += tokens(&c.name) + json_tokens(&c.arguments) + 4;
        }
        let usage = TokenUsage {
            input: request_tokens(req),
            output: output.min(u64::from(req.max_tokens)),
            cached_input: 0,
            cache_write_input: 0,
        };
        (
            Ok(ModelResponse {
                text,
                tool_calls,
                usage,
                confidence: rule.confidence,
                truncated: output > u64::from(req.max_tokens),
                estimated: false,
                cpu: std::time::Duration::ZERO,
                explain: Some(std::sync::Arc::clone(&rule.label)),
            }),
            rule.latency.unwrap_or(self.latency),
        )
    }
}

impl Rule {
    /// Whether the rule answers `req` to model `model`, or the first condition that stops it.
    /// `claim` takes one of a `times:` rule's firings (a call does; an explanation does not).
    fn check<'r>(
        &'r self,
        model: &str,
        req: &ModelRequest<'_>,
        last: &str,
        caps: &mut Vec<(String, String)>,
        claim: bool,
    ) -> Result<(), Miss<'r>> {
        if let Some(m) = self.model.as_deref().filter(|m| *m != model) {
            return Err(Miss::Model(m));
        }
        if let Some(t) = self
            .times
            .filter(|t| self.fired.load(Ordering::Relaxed) >= u64::from(*t))
        {
            return Err(Miss::Times(t));
        }
        if let Some(a) = self
            .agent
            .as_deref()
            .filter(|a| *a != req.agent && *a != "*")
        {
            return Err(Miss::Agent(a));
        }
        if let Some(s) = self.step.filter(|s| *s != req.step) {
            return Err(Miss::Step(s));
        }
        if let Some(c) = self.last_contains.as_deref().filter(|c| !last.contains(c)) {
            return Err(Miss::LastContains(c));
        }
        for p in &self.transcript_matches {
            let Some(re) = p.get() else {
                return Err(Miss::Transcript(&p.src));
            };
            // The most recent message that matches supplies the captures.
            let Some(c) = req
                .messages
                .iter()
                .rev()
                .find_map(|m| re.captures(&m.content))
            else {
                return Err(Miss::Transcript(&p.src));
            };
            push_captures(re, &c, caps);
        }
        if let Some(p) = &self.last_matches {
            let Some(c) = p.get().and_then(|re| re.captures(last)) else {
                return Err(Miss::LastMatches(&p.src));
            };
            if let Some(re) = p.get() {
                push_captures(re, &c, caps);
            }
        }
        // Last, once everything else matched: a rule with `times:` claims one of its firings in
        // one atomic step, so that concurrent tasks never fire it more than N times between them.
        // (Rules without `times:` count nothing: no counter for every task to contend on.)
        match self.times {
            Some(t) if claim => self
                .fired
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < u64::from(t)).then_some(n + 1)
                })
                .map(|_| ())
                .map_err(|_| Miss::Times(t)),
            _ => Ok(()),
        }
    }
}

/// The scripted tokenizer: one token per four characters, rounded up.
pub(crate) fn tokens(text: &str) -> u64 {
    let chars = if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    };
    (chars as u64).div_ceil(4)
}

fn json_tokens(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(s) => tokens(s) + 1,
        serde_json::Value::Array(a) => 1 + a.iter().map(json_tokens).sum::<u64>(),
        serde_json::Value::Object(o) => {
            1 + o
                .iter()
                .map(|(k, x)| tokens(k) + 1 + json_tokens(x))
                .sum::<u64>()
        }
        _ => 1,
    }
}

/// The prompt tokens of a request: its messages, and its tools as counted once by the caller
/// ([`ModelRequest::tool_tokens`]) or walked here.
fn request_tokens(req: &ModelRequest<'_>) -> u64 {
    match req.tool_tokens {
        Some(t) => input_tokens(req.messages, &[]) + t,
        None => input_tokens(req.messages, req.tools),
    }
}

/// Prompt tokens the scripted model bills for a conversation and tool list: text at four characters
/// a token, plus four tokens of framing per message and per tool, plus three to prime the reply.
pub fn input_tokens(messages: &[Message], tools: &[ToolSchema]) -> u64 {
    let mut n = 3;
    for m in messages {
        n += 4 + tokens(&m.content);
        for c in &m.tool_calls {
            n += tokens(&c.name) + json_tokens(&c.arguments);
        }
    }
    for t in tools {
        n += 4 + tokens(&t.name) + tokens(&t.description) + json_tokens(&t.parameters);
    }
    n
}

#[async_trait]
impl Model for ScriptedModel {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        if let Some(f) = self.faults.as_ref().and_then(RandomFaults::draw) {
            return self.inject(f, &request).await;
        }
        let (response, latency) = self.respond(&request)?;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match response {
            Ok(r) => Ok(r),
            Err(fault) => self.inject(fault, &request).await,
        }
    }

    /// Exact: the scripted model's billing is a function of the request alone.
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        request_tokens(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
rules:
  - agent: rca
    step: 1
    reply:
      tool_calls:
        - name: query
          args: { series: "checkout", note: "{{task}}" }
  - agent: rca
    last_matches: 'spike at (?P<t>\d\d:\d\d)'
    transcript_matches: ['owner (?P<who>@\w+)']
    reply: { text: "spike {{t}} owned by {{who}}" }
  - agent: "*"
    reply: { text: "fallback: {{last}}" }
"#;

    fn req<'a>(agent: &'a str, step: u32, messages: &'a [Message]) -> ModelRequest<'a> {
        ModelRequest {
            agent,
            step,
            messages,
            tools: &[],
            tool_tokens: None,
            max_tokens: 256,
            confidence: false,
        }
    }

    #[tokio::test]
    async fn first_matching_rule_with_templates() {
        let m = ScriptedModel::from_yaml("small", RULES, Path::new("<test>")).unwrap();
        let msgs = vec![Message::new(Role::User, "p99 doubled")];
        let r = m.call(req("rca", 1, &msgs)).await.unwrap();
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].arguments["note"], "p99 doubled");
        assert_eq!(r.usage.input, input_tokens(&msgs, &[]));
        assert!(r.usage.output > 0);

        let msgs = vec![
            Message::new(Role::User, "p99 doubled"),
            Message::new(Role::Tool, "owner @alice"),
            Message::new(Role::Tool, "spike at 14:05"),
        ];
        let r = m.call(req("rca", 3, &msgs)).await.unwrap();
        assert_eq!(r.text.as_deref(), Some("spike 14:05 owned by @alice"));

        let r = m.call(req("other", 9, &msgs)).await.unwrap();
        assert_eq!(r.text.as_deref(), Some("fallback: spike at 14:05"));
    }

    #[tokio::test]
    async fn no_rule_is_a_clear_error() {
        let m = ScriptedModel::from_yaml(
            "small",
            "rules:\n  - agent: a\n    reply: {text: x}\n",
            Path::new("r.yaml"),
        )
        .unwrap();
        let msgs = vec![Message::new(Role::User, "hi")];
        let e = m.call(req("b", 2, &msgs)).await.err().unwrap().to_string();
        assert!(e.contains("agent `b` at step 2"), "{e}");
    }

    #[test]
    fn malformed_rules_name_the_problem() {
        let e = ScriptedModel::from_yaml(
            "m",
            "rules:\n  - agnt: a\n    reply: {text: x}\n",
            Path::new("r.yaml"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("r.yaml") && e.contains("agnt"), "{e}");
        let e = ScriptedModel::from_yaml(
            "m",
            "rules:\n  - last_matches: '('\n    reply: {text: x}\n",
            Path::new("r.yaml"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("bad regex"), "{e}");
        let e = ScriptedModel::from_yaml("m", "rules:\n  - reply: {}\n", Path::new("r.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs `text`, `tool_calls` or `fault`"), "{e}");
    }

    #[tokio::test]
    async fn rule_faults_and_counts() {
        let rules = "rules:\n  - step: 1\n    times: 1\n    reply: { fault: error }\n  - step: 2\n    reply: { fault: malformed }\n  - step: 3\n    reply: { fault: runaway }\n";
        let m = ScriptedModel::from_yaml("m", rules, Path::new("r.yaml")).unwrap();
        let msgs = vec![Message::new(Role::User, "go")];
        assert!(matches!(
            m.call(req("a", 1, &msgs)).await,
            Err(ModelError::Provider { .. })
        ));
        assert!(matches!(
            m.call(req("a", 2, &msgs)).await,
            Err(ModelError::Malformed { .. })
        ));
        let tools = [ToolSchema {
            name: "spin".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
        }];
        let mut r = req("a", 3, &msgs);
        r.tools = &tools;
        assert_eq!(m.call(r).await.unwrap().tool_calls[0].name, "spin");
        assert_eq!(
            m.injected(),
            InjectedFaults {
                error: 1,
                malformed: 1,
                ..Default::default()
            }
        );
    }

    /// `times: N` holds when many tasks call at once: one atomic claim per firing, so exactly N
    /// replies come from the rule whatever the interleaving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn times_holds_under_concurrent_calls() {
        let rules =
            "rules:\n  - times: 3\n    reply: { text: limited }\n  - reply: { text: other }\n";
        let m =
            std::sync::Arc::new(ScriptedModel::from_yaml("m", rules, Path::new("r.yaml")).unwrap());
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (m, barrier) = (std::sync::Arc::clone(&m), std::sync::Arc::clone(&barrier));
            set.spawn(async move {
                let msgs = vec![Message::new(Role::User, "go")];
                barrier.wait().await;
                m.call(req("a", 1, &msgs)).await.unwrap().text.unwrap()
            });
        }
        let mut limited = 0;
        while let Some(text) = set.join_next().await {
            if text.unwrap() == "limited" {
                limited += 1;
            }
        }
        assert_eq!(limited, 3);
    }

    #[tokio::test]
    async fn random_faults_are_reproducible_and_counted() {
        let spec = FaultSpec {
            seed: 42,
            error: 0.2,
            malformed: 0.1,
            ..FaultSpec::default()
        };
        let msgs = vec![Message::new(Role::User, "go")];
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let m = ScriptedModel::always("m", "ok").with_faults(spec.clone());
            let mut seen = Vec::new();
            for _ in 0..1000 {
                seen.push(m.call(req("a", 1, &msgs)).await.is_ok());
            }
            let inj = m.injected();
            assert_eq!(seen.iter().filter(|ok| !**ok).count() as u64, inj.total());
            assert!((150..250).contains(&inj.error), "{inj:?}");
            assert!((60..140).contains(&inj.malformed), "{inj:?}");
            outcomes.push(seen);
        }
        assert_eq!(outcomes[0], outcomes[1], "same seed, same faults");
    }

    #[test]
    fn output_is_capped_at_max_tokens() {
        let m = ScriptedModel::always("m", &"word ".repeat(1000));
        let msgs = vec![Message::new(Role::User, "go")];
        let mut r = req("a", 1, &msgs);
        r.max_tokens = 10;
        let (resp, _) = m.respond(&r).unwrap();
        let resp = resp.unwrap();
        assert_eq!(resp.usage.output, 10);
        assert_eq!(resp.text.unwrap().chars().count(), 40);
    }
}
