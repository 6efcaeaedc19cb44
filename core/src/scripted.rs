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
//!   - agent: rca             # match on the calling agent (optional)
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
//! The first rule that matches wins. Templates: `{{task}}` (the first user message), `{{last}}` (the
//! last message), and named regex captures; they work in `text` and in every string of `args`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use crate::Error;
use crate::model::{
    Message, Model, ModelError, ModelRequest, ModelResponse, Role, ToolCall, ToolSchema,
};
use crate::usage::TokenUsage;

/// A deterministic model that answers from rules.
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    latency: Duration,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    agent: Option<String>,
    step: Option<u32>,
    last_contains: Option<String>,
    last_matches: Option<Regex>,
    transcript_matches: Vec<Regex>,
    text: Option<String>,
    calls: Vec<(String, serde_json::Value)>,
    latency: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default, with = "crate::budget::duration_opt")]
    latency: Option<Duration>,
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    agent: Option<String>,
    step: Option<u32>,
    last_contains: Option<String>,
    last_matches: Option<String>,
    #[serde(default)]
    transcript_matches: Vec<String>,
    reply: ReplySpec,
    #[serde(default, with = "crate::budget::duration_opt")]
    latency: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplySpec {
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
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
        let file: RulesFile = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let re = |p: &str| {
                Regex::new(p).map_err(|e| err(format!("rule {}: bad regex `{p}`: {e}", i + 1)))
            };
            if r.reply.text.is_none() && r.reply.tool_calls.is_empty() {
                return Err(err(format!(
                    "rule {}: reply needs `text` or `tool_calls`",
                    i + 1
                )));
            }
            rules.push(Rule {
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
                latency: r.latency,
            });
        }
        Ok(ScriptedModel {
            name: name.to_string(),
            latency: file.latency.unwrap_or_default(),
            rules,
        })
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
                agent: None,
                step: None,
                last_contains: None,
                last_matches: None,
                transcript_matches: Vec::new(),
                text: Some(text.to_string()),
                calls: Vec::new(),
                latency: None,
            }],
        }
    }

    fn respond(&self, req: &ModelRequest<'_>) -> Result<(ModelResponse, Duration), ModelError> {
        let last = req.messages.last().map_or("", |m| m.content.as_str());
        let mut captures: Vec<(String, String)> = Vec::new();
        let rule = self.rules.iter().find(|r| {
            captures.clear();
            r.matches(req, last, &mut captures)
        });
        let Some(rule) = rule else {
            return Err(ModelError::NoRule {
                model: self.name.clone(),
                agent: req.agent.to_string(),
                step: req.step,
                last: last.chars().take(120).collect(),
            });
        };
        let task = req
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let fill = |s: &str| render(s, task, last, &captures);
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
            input: input_tokens(req.messages, req.tools),
            output: output.min(u64::from(req.max_tokens)),
            cached_input: 0,
        };
        Ok((
            ModelResponse {
                text,
                tool_calls,
                usage,
            },
            rule.latency.unwrap_or(self.latency),
        ))
    }
}

impl Rule {
    fn matches(
        &self,
        req: &ModelRequest<'_>,
        last: &str,
        caps: &mut Vec<(String, String)>,
    ) -> bool {
        if self
            .agent
            .as_deref()
            .is_some_and(|a| a != req.agent && a != "*")
        {
            return false;
        }
        if self.step.is_some_and(|s| s != req.step) {
            return false;
        }
        if self
            .last_contains
            .as_deref()
            .is_some_and(|c| !last.contains(c))
        {
            return false;
        }
        for re in &self.transcript_matches {
            // The most recent message that matches supplies the captures.
            let Some(c) = req
                .messages
                .iter()
                .rev()
                .find_map(|m| re.captures(&m.content))
            else {
                return false;
            };
            push_captures(re, &c, caps);
        }
        if let Some(re) = &self.last_matches {
            let Some(c) = re.captures(last) else {
                return false;
            };
            push_captures(re, &c, caps);
        }
        true
    }
}

fn push_captures(re: &Regex, c: &regex::Captures<'_>, caps: &mut Vec<(String, String)>) {
    for name in re.capture_names().flatten() {
        if let Some(m) = c.name(name) {
            caps.push((name.to_string(), m.as_str().to_string()));
        }
    }
}

fn render(template: &str, task: &str, last: &str, caps: &[(String, String)]) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim();
        match key {
            "task" => out.push_str(task),
            "last" => out.push_str(last),
            _ => match caps.iter().rev().find(|(k, _)| k == key) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("{{");
                    out.push_str(&after[..close]);
                    out.push_str("}}");
                }
            },
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn fill_json(v: &serde_json::Value, fill: &impl Fn(&str) -> String) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(fill(s)),
        serde_json::Value::Array(a) => a.iter().map(|x| fill_json(x, fill)).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| (k.clone(), fill_json(x, fill)))
            .collect(),
        other => other.clone(),
    }
}

/// The scripted tokenizer: one token per four characters, rounded up.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
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
        let (response, latency) = self.respond(&request)?;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        Ok(response)
    }

    /// Exact: the scripted model's billing is a function of the request alone.
    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        input_tokens(request.messages, request.tools)
    }
}

/// The path a scripted rules file is read from, resolved against a topology's directory.
pub fn resolve(base: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
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
            max_tokens: 256,
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
        assert!(e.contains("needs `text` or `tool_calls`"), "{e}");
    }

    #[test]
    fn output_is_capped_at_max_tokens() {
        let m = ScriptedModel::always("m", &"word ".repeat(1000));
        let msgs = vec![Message::new(Role::User, "go")];
        let mut r = req("a", 1, &msgs);
        r.max_tokens = 10;
        let (resp, _) = m.respond(&r).unwrap();
        assert_eq!(resp.usage.output, 10);
        assert_eq!(resp.text.unwrap().chars().count(), 40);
    }
}
