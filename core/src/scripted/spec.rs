//! The rules file as written: the types serde reads it into (unknown keys refused) and from which
//! `baton schema --rules` derives its JSON Schema.

use super::*;

/// A scripted model's rules file (docs/scripted.md).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Baton scripted rules")]
pub(super) struct RulesFile {
    /// How long every reply takes, unless a rule or the topology's `latency` says otherwise
    /// (default 0).
    #[serde(default, with = "crate::serde_helpers::duration_opt")]
    #[schemars(schema_with = "crate::serde_helpers::duration_schema")]
    pub(super) latency: Option<Duration>,
    /// Random faults to inject, drawn from a seeded generator.
    #[serde(default)]
    pub(super) faults: Option<FaultSpec>,
    /// The rules, tried in order: the first that matches answers.
    pub(super) rules: Vec<RuleSpec>,
}

/// One rule: when it matches (every condition given must hold) and what it answers.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    /// The model's name in the topology is this (for a rules file shared by several models).
    pub(super) model: Option<String>,
    /// The calling agent's name is this (`"*"`: every agent).
    pub(super) agent: Option<String>,
    /// The step of the agent's task is this (from 1; a sub-task starts at 1 again).
    pub(super) step: Option<u32>,
    /// The last message contains this text (case-sensitive).
    pub(super) last_contains: Option<String>,
    /// This regex matches the last message; its named captures fill the reply's templates.
    pub(super) last_matches: Option<String>,
    /// Each regex matches some message of the transcript (the most recent match supplies the
    /// captures).
    #[serde(default)]
    pub(super) transcript_matches: Vec<String>,
    /// What the model answers.
    pub(super) reply: ReplySpec,
    /// How long this reply takes.
    #[serde(default, with = "crate::serde_helpers::duration_opt")]
    #[schemars(schema_with = "crate::serde_helpers::duration_schema")]
    pub(super) latency: Option<Duration>,
    /// The rule fires at most this many times (counted per model, across all tasks).
    pub(super) times: Option<u32>,
}

/// A scripted reply: a text, tool calls, or a fault.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplySpec {
    /// The text (a final answer unless it also calls tools); `{{name}}` fills in a capture,
    /// `{{task}}` the task, `{{last}}` the last message.
    pub(super) text: Option<String>,
    /// Tool calls to run before the next step.
    #[serde(default)]
    pub(super) tool_calls: Vec<CallSpec>,
    /// A fault instead of an answer.
    pub(super) fault: Option<Fault>,
    /// How sure the model says it is, from 0 to 1 (for an agent's `min_confidence`).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub(super) confidence: Option<f32>,
}

/// A tool call of a scripted reply.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CallSpec {
    /// The tool (or `delegate`).
    pub(super) name: String,
    /// Its arguments; string values are templates.
    #[serde(default)]
    pub(super) args: serde_json::Value,
}

/// The JSON Schema of scripted rules files (`baton schema --rules`), for editors.
pub fn rules_json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(RulesFile)).unwrap_or_default() + "\n"
}
