//! The conversation as the model reads it: the transcript through the GGUF's chat template, with
//! the tools and the reply's shape in the system message, and the grammar a reply must follow
//! when tools are offered.

use super::*;

pub(super) fn chat_message(role: &str, content: String) -> Result<LlamaChatMessage, String> {
    LlamaChatMessage::new(role.to_string(), content).map_err(|e| format!("message: {e}"))
}

/// What the system message says about the tools and the reply's shape.
pub(super) fn tools_preamble(tools: &[ToolSchema]) -> String {
    if tools.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n\nYou can call a tool. To call one, reply with only {\"tool\": \"<name>\", \"arguments\": {...}}. \
         To give your final answer, reply with only {\"answer\": \"<your answer>\"}.\nTools:",
    );
    for t in tools {
        s.push_str(&format!(
            "\n- {}: {} Arguments: {}",
            t.name, t.description, t.parameters
        ));
    }
    s
}

/// An assistant turn as the model wrote it: tool calls in the grammar's shape.
pub(super) fn assistant_text(m: &Message, tools: bool) -> String {
    if m.tool_calls.is_empty() {
        if tools {
            return serde_json::json!({ "answer": m.content }).to_string();
        }
        return m.content.clone();
    }
    m.tool_calls
        .iter()
        .map(|c| serde_json::json!({ "tool": c.name, "arguments": c.arguments }).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tool's result, said as a user turn (the small models' templates know no `tool` role).
pub(super) fn tool_result_text(m: &Message, all: &[Message]) -> String {
    let name = m.tool_call_id.as_deref().and_then(|id| {
        all.iter()
            .flat_map(|x| &x.tool_calls)
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    });
    // Small models repeat a call they have just made unless told what comes next.
    let next = "Now give your final answer as {\"answer\": \"...\"}, or call another tool if you need more.";
    match name {
        Some(n) => format!("Result of {n}: {}\n{next}", m.content),
        None => format!("Tool result: {}\n{next}", m.content),
    }
}

/// The grammar of a reply when `tools` are offered: one tool call with that tool's arguments, or
/// an answer. Keys are written in this order (the model names the tool before its arguments).
pub(super) fn reply_grammar(tools: &[ToolSchema]) -> Result<String, String> {
    let mut branches =
        vec![r#"{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}"#.to_string()];
    for t in tools {
        let args = t.parameters.to_string();
        let name = serde_json::Value::String(t.name.clone()).to_string();
        let branch = |args: &str| {
            format!(
                r#"{{"type":"object","properties":{{"tool":{{"const":{name}}},"arguments":{args}}},"required":["tool","arguments"],"additionalProperties":false}}"#
            )
        };
        // A schema the converter cannot express (remote `$ref`s, say) is offered as any object:
        // the runtime still checks the arguments against the full schema before the tool runs.
        let schema = format!(r#"{{"oneOf":[{}]}}"#, branch(&args));
        branches.push(if llama_cpp_2::json_schema_to_grammar(&schema).is_ok() {
            branch(&args)
        } else {
            branch(r#"{"type":"object"}"#)
        });
    }
    let schema = format!(r#"{{"oneOf":[{}]}}"#, branches.join(","));
    llama_cpp_2::json_schema_to_grammar(&schema).map_err(|e| format!("tool grammar: {e}"))
}
