//! Why a scripted model answers as it does: for a request, each rule in order with the
//! condition that stopped it, the rule that fires, and its reply (`baton rules test`); and the
//! rule a reply came from (`ModelResponse::explain`, shown by `baton run --explain`).

use std::fmt;

use super::{Rule, ScriptedModel};
use crate::model::{ModelRequest, ToolCall};
use crate::scripted::Fault;

/// The condition that kept a rule from firing (borrowed from the rule: no allocation on a
/// model call's path).
#[derive(Debug)]
pub(super) enum Miss<'r> {
    /// `model:` names another model.
    Model(&'r str),
    /// `times:` is used up.
    Times(u32),
    /// `agent:` names another agent.
    Agent(&'r str),
    /// `step:` is another step.
    Step(u32),
    /// The last message does not contain this text.
    LastContains(&'r str),
    /// No message of the transcript matches this regex.
    Transcript(&'r str),
    /// The last message does not match this regex.
    LastMatches(&'r str),
}

impl fmt::Display for Miss<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Model(m) => write!(f, "it is for model `{m}`"),
            Miss::Times(t) => write!(f, "it has fired its {t} time(s)"),
            Miss::Agent(a) => write!(f, "it is for agent `{a}`"),
            Miss::Step(s) => write!(f, "it is for step {s}"),
            Miss::LastContains(c) => write!(f, "the last message does not contain {c:?}"),
            Miss::Transcript(p) => write!(f, "no message matches `{p}`"),
            Miss::LastMatches(p) => write!(f, "the last message does not match `{p}`"),
        }
    }
}

/// One rule, as an explanation sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleVerdict {
    /// Its place in the file, from 1.
    pub rule: usize,
    /// Its conditions, as written (`agent: rca · step: 2 · last_matches: '…'`).
    pub conditions: String,
    /// Whether it fires (the first rule that matches does).
    pub fires: bool,
    /// Why it does not match, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// What a scripted model would answer to a request, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Explanation {
    /// The model.
    pub model: String,
    /// The rules up to the one that fires (all of them when none does).
    pub rules: Vec<RuleVerdict>,
    /// The rule that fires, from 1.
    pub fires: Option<usize>,
    /// Its reply's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Its reply's tool calls, templates filled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The fault it replies with instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// A rule's conditions, as written.
fn conditions(r: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &r.model {
        parts.push(format!("model: {m}"));
    }
    if let Some(a) = &r.agent {
        parts.push(format!("agent: {a}"));
    }
    if let Some(s) = r.step {
        parts.push(format!("step: {s}"));
    }
    if let Some(c) = &r.last_contains {
        parts.push(format!("last_contains: {c:?}"));
    }
    if let Some(p) = &r.last_matches {
        parts.push(format!("last_matches: '{}'", p.src));
    }
    for p in &r.transcript_matches {
        parts.push(format!("transcript_matches: '{}'", p.src));
    }
    if let Some(t) = r.times {
        parts.push(format!("times: {t}"));
    }
    if parts.is_empty() {
        "(any request)".into()
    } else {
        parts.join(" · ")
    }
}

/// How a reply names the rule it came from.
pub(super) fn fired(i: usize, rule: &Rule) -> String {
    format!("rule {} ({})", i + 1, conditions(rule))
}

impl ScriptedModel {
    /// What this model would answer to `request`, and why: each rule in order with the
    /// condition that stops it, up to the rule that fires, and that rule's reply. Nothing is
    /// consumed (a `times:` rule keeps its firings).
    pub fn explain(&self, request: &ModelRequest<'_>) -> Explanation {
        let last = request.messages.last().map_or("", |m| m.content.as_str());
        let mut out = Explanation {
            model: self.name.clone(),
            rules: Vec::new(),
            fires: None,
            text: None,
            tool_calls: Vec::new(),
            fault: None,
        };
        let mut caps = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            caps.clear();
            let verdict = r.check(&self.name, request, last, &mut caps, false);
            out.rules.push(RuleVerdict {
                rule: i + 1,
                conditions: conditions(r),
                fires: verdict.is_ok(),
                why_not: verdict.as_ref().err().map(ToString::to_string),
            });
            if verdict.is_ok() {
                out.fires = Some(i + 1);
                match self.reply(i, request, last, &caps).0 {
                    Ok(r) => {
                        out.text = r.text;
                        out.tool_calls = r.tool_calls;
                    }
                    Err(f) => out.fault = Some(f),
                }
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Role};

    const RULES: &str = r#"
rules:
  - agent: triage
    reply: { text: "not me" }
  - agent: rca
    step: 1
    reply: { text: "first step" }
  - agent: rca
    last_matches: 'spike at (?P<t>\d\d:\d\d)'
    times: 1
    reply:
      tool_calls:
        - { name: read_log, args: { before: "{{t}}" } }
  - agent: rca
    reply: { fault: error }
"#;

    fn ask<'a>(step: u32, messages: &'a [Message]) -> ModelRequest<'a> {
        ModelRequest {
            agent: "rca",
            step,
            messages,
            tools: &[],
            tool_tokens: None,
            max_tokens: 256,
            confidence: false,
        }
    }

    #[tokio::test]
    async fn says_why_each_rule_does_not_fire_and_consumes_nothing() {
        let m = ScriptedModel::from_yaml("small", RULES, std::path::Path::new("r.yaml"))
            .expect("rules");
        let msgs = [
            Message::new(Role::User, "p99 doubled"),
            Message::new(Role::Tool, "baseline 120; spike at 14:05: 260"),
        ];
        let e = m.explain(&ask(2, &msgs));
        assert_eq!(e.fires, Some(3));
        let why: Vec<Option<&str>> = e.rules.iter().map(|r| r.why_not.as_deref()).collect();
        assert_eq!(
            why,
            [
                Some("it is for agent `triage`"),
                Some("it is for step 1"),
                None
            ]
        );
        assert_eq!(e.tool_calls[0].arguments["before"], "14:05");
        assert_eq!(
            e.rules[2].conditions,
            "agent: rca · last_matches: 'spike at (?P<t>\\d\\d:\\d\\d)' · times: 1"
        );
        // Explaining twice consumes nothing: the `times: 1` rule still fires on a real call,
        // and the reply names it.
        assert_eq!(m.explain(&ask(2, &msgs)).fires, Some(3));
        use crate::model::Model;
        let r = m.call(ask(2, &msgs)).await.expect("reply");
        assert_eq!(
            r.explain.as_deref(),
            Some("rule 3 (agent: rca · last_matches: 'spike at (?P<t>\\d\\d:\\d\\d)' · times: 1)")
        );
        // Now it has fired its one time: the next rule (a fault) is the one.
        let e = m.explain(&ask(2, &msgs));
        assert_eq!(
            e.rules[2].why_not.as_deref(),
            Some("it has fired its 1 time(s)")
        );
        assert_eq!((e.fires, e.fault), (Some(4), Some(Fault::Error)));
        // Another agent: no rule fires, and each says why.
        let other = ModelRequest {
            agent: "paging",
            ..ask(1, &msgs)
        };
        let e = m.explain(&other);
        assert_eq!(e.fires, None);
        assert_eq!(e.rules.len(), 4);
    }
}
