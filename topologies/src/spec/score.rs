//! The tokenomics scoreboard's keys: what a completed workflow is worth (`value:`), how energy is
//! figured (`energy:`), and how a long transcript is kept short (`context:`).

use super::*;

/// What a completed task (an agent's) or run (a schedule's) is worth. Only completed work
/// earns value; the first matching `on_answer_matching` entry replaces `value_usd`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// The value of a completed task or run, in dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_usd: Option<Usd>,
    /// Values for answers matching a regex, tried in order (`"(?i)paged"` is worth more than
    /// "nothing to do"); the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_answer_matching: Vec<AnswerValueSpec>,
}

impl ValueSpec {
    /// Completed work worth `value` dollars.
    pub fn fixed(value: Usd) -> ValueSpec {
        ValueSpec {
            value_usd: Some(value),
            on_answer_matching: Vec::new(),
        }
    }

    /// Adds a pattern: a completed answer matching `pattern` (a regex) is worth `value` instead
    /// (the first match wins).
    pub fn on_answer_matching(mut self, pattern: impl Into<String>, value: Usd) -> ValueSpec {
        self.on_answer_matching.push(AnswerValueSpec {
            pattern: pattern.into(),
            value_usd: value,
        });
        self
    }
}

/// One answer pattern and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerValueSpec {
    /// A regex searched in the final answer (Rust `regex` syntax; `(?i)` for any case).
    pub pattern: String,
    /// The value of a completed task or run whose answer matches, in dollars.
    pub value_usd: Usd,
}

/// How energy is figured (see docs/tokenomics.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnergySpec {
    /// Watts one busy core of this machine draws, for the local model's and tools' CPU time
    /// (default: measured from RAPL when readable, else half of an 85 W TDP shared by the
    /// cores, as CodeCarbon does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_watts_per_core: Option<f64>,
    /// Power usage effectiveness of hosted models' data centres (default 1.2, EcoLogits').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
}

/// Transcript compaction: when the next call would send more than `compact_over_tokens` input
/// tokens, the older turns are summarised by `compactor` (paid from the task's budget) and
/// replaced by the summary; the system prompt, the task and the last `keep_last` turns stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Input tokens above which the transcript is compacted before a call.
    pub compact_over_tokens: u64,
    /// The model (under `models:`) that writes the summary: a cheap or local one.
    pub compactor: String,
    /// Turns kept verbatim at the end (default 4): a turn is a model reply with the tool
    /// results that answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
}
