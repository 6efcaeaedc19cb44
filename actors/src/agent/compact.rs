//! Transcript compaction (`context:`): when the next call would send more than
//! `compact_over_tokens`, the older turns are summarised by the agent's compactor model and
//! replaced by the summary. The system prompt, the task and the last `keep_last` turns stay as
//! they were; a turn is a model reply with the tool results that answer it, so a tool result is
//! never separated from its call.

use baton_core::{Message, ModelRequest, Role};
use baton_topologies::ContextDef;

use super::TaskCx;
use super::call::{HelperFailed, helper_call};
use crate::plan::Rung;

/// How the summary is marked in the transcript (a user message after the task).
pub(crate) const SUMMARY_PREFIX: &str = "Summary of the earlier steps (compacted):";

/// What the compactor is asked to do.
const COMPACTOR_SYSTEM: &str = "You compact an agent's transcript. Summarise the steps below: \
    what was looked at, what was found (keep exact names, numbers and identifiers), and what is \
    left to do. Answer with the summary only.";

/// What a compaction did to the task.
pub(crate) enum Compacted {
    /// Nothing to do, or the compactor gave no summary: the transcript is unchanged.
    No,
    /// The older turns were replaced: the next calls send this many fewer input tokens.
    Saved(u64),
    /// The task ended meanwhile.
    Ended(super::TaskResult),
    /// The compactor crashed the agent.
    Crash(String),
}

/// The input tokens the agent's first model would be sent for `messages`.
pub(crate) fn prompt_tokens(cx: &TaskCx<'_>, messages: &[Message], step: u32) -> u64 {
    let me = cx.me();
    let Some(rung) = me.ladder.first() else {
        return 0;
    };
    rung.model.estimate_input_tokens(&ModelRequest {
        agent: &me.name,
        step,
        messages,
        tools: &me.schemas,
        tool_tokens: Some(rung.tool_tokens),
        max_tokens: rung.max_output,
        confidence: false,
    })
}

/// The text the compactor reads for `older`.
fn render(older: &[Message]) -> String {
    let mut out = String::new();
    for m in older {
        let who = match m.role {
            Role::Assistant => "agent",
            Role::Tool => "tool result",
            Role::User => "note",
            Role::System => "system",
        };
        out.push_str(&format!("[{who}] {}", m.content.trim()));
        for c in &m.tool_calls {
            out.push_str(&format!(" (calls {} {})", c.name, c.arguments));
        }
        out.push('\n');
    }
    out
}

/// Compacts `messages` when the next call would exceed the threshold.
pub(crate) async fn maybe(
    cx: &TaskCx<'_>,
    (rung, ctx): &(Rung, ContextDef),
    step: u32,
    messages: &mut Vec<Message>,
) -> Compacted {
    let before = prompt_tokens(cx, messages, step);
    if before <= ctx.compact_over_tokens {
        return Compacted::No;
    }
    // The head: the system prompt and the task (the first user message).
    let Some(task_at) = messages.iter().position(|m| m.role == Role::User) else {
        return Compacted::No;
    };
    let head_end = task_at + 1;
    let turns: Vec<usize> = (head_end..messages.len())
        .filter(|&i| messages[i].role == Role::Assistant)
        .collect();
    let keep = ctx.keep_last as usize;
    if turns.len() <= keep {
        return Compacted::No;
    }
    let cut = turns[turns.len() - keep..]
        .first()
        .copied()
        .unwrap_or(messages.len());
    if cut <= head_end {
        return Compacted::No;
    }
    let request = [
        Message::new(Role::System, COMPACTOR_SYSTEM),
        Message::new(
            Role::User,
            format!(
                "The task: {}\n\nThe steps so far:\n{}",
                messages[task_at].content,
                render(&messages[head_end..cut])
            ),
        ),
    ];
    let summary = match helper_call(cx, rung, step, &request).await {
        Ok(r) => {
            // Its output counts in the task's quality like any answer's.
            cx.account.record_step_score(&baton_core::StepScore {
                quality: rung.quality,
                output: r.usage.output,
                ..baton_core::StepScore::default()
            });
            r.text.unwrap_or_default()
        }
        Err(HelperFailed::Ended(t)) => return Compacted::Ended(t),
        Err(HelperFailed::Crash(why)) => return Compacted::Crash(why),
        Err(HelperFailed::Skipped(why)) => {
            tracing::debug!(agent = %cx.me().name, task = cx.env.task.0, "compaction skipped: {why}");
            return Compacted::No;
        }
    };
    if summary.trim().is_empty() {
        return Compacted::No;
    }
    let replaced: Vec<Message> = messages
        .splice(
            head_end..cut,
            [Message::new(
                Role::User,
                format!("{SUMMARY_PREFIX}\n{}", summary.trim()),
            )],
        )
        .collect();
    let after = prompt_tokens(cx, messages, step);
    if after >= before {
        // A summary longer than what it replaced: put the turns back.
        messages.splice(head_end..=head_end, replaced);
        return Compacted::No;
    }
    cx.account.record_compaction();
    Compacted::Saved(before - after)
}
