//! `baton rules test`: which rule of a scripted model fires for an agent's step, why the rules
//! before it did not, and the reply it gives — without running anything.

use std::path::Path;
use std::process::ExitCode;

use baton::core::{Message, ModelRequest, Role, ScriptedModel};
use baton::topologies::{Provider, Topology};

use crate::EXIT_INVALID;

/// What to test: the request a scripted model would see.
pub(crate) struct Probe {
    pub(crate) agent: String,
    pub(crate) step: u32,
    pub(crate) task: String,
    pub(crate) last: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) json: bool,
}

/// Prints the explanation; exit 0 when a rule fires, 1 when none does, 2 on bad input.
pub(crate) fn test(file: &Path, probe: &Probe) -> ExitCode {
    let topology = match Topology::from_path(file) {
        Ok(t) => t,
        Err(e) => {
            eprint!("{}", e.render());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match explain(&topology, probe) {
        Ok(e) => {
            if probe.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&e).unwrap_or_else(|_| "{}".into())
                );
            } else {
                print_explanation(&e, probe);
            }
            if e.fires.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn explain(t: &Topology, probe: &Probe) -> Result<baton::core::Explanation, String> {
    let node = t
        .graph()
        .node_indices()
        .map(|n| &t.graph()[n])
        .find(|a| *a.name == *probe.agent)
        .ok_or_else(|| {
            let names: Vec<&str> = t
                .graph()
                .node_indices()
                .map(|n| &*t.graph()[n].name)
                .collect();
            let hint = baton::topologies::closest(&probe.agent, names.iter().copied())
                .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
            format!("no agent `{}` in {}{hint}", probe.agent, t.name())
        })?;
    let scripted = |name: &str| {
        t.models()
            .find(|m| &*m.name == name)
            .filter(|m| m.provider == Provider::Scripted)
    };
    let def = match &probe.model {
        Some(m) => {
            scripted(m).ok_or_else(|| format!("`{m}` is not a scripted model of the topology"))?
        }
        None => node
            .ladder
            .iter()
            .find_map(|m| scripted(m))
            .ok_or_else(|| {
                format!(
                    "agent `{}` has no scripted model on its ladder",
                    probe.agent
                )
            })?,
    };
    let rules = def
        .rules
        .as_deref()
        .ok_or_else(|| format!("model `{}` has no rules file", def.name))?;
    let model = ScriptedModel::from_file(&def.name, rules).map_err(|e| e.to_string())?;
    let mut messages = Vec::new();
    if let Some(system) = &node.system {
        messages.push(Message::new(Role::System, system.as_str()));
    }
    messages.push(Message::new(Role::User, probe.task.as_str()));
    if let Some(last) = &probe.last {
        messages.push(Message::new(Role::Tool, last.as_str()));
    }
    Ok(model.explain(&ModelRequest {
        agent: &node.name,
        step: probe.step,
        messages: &messages,
        tools: &[],
        tool_tokens: None,
        max_tokens: def.max_output_tokens,
        confidence: false,
    }))
}

fn print_explanation(e: &baton::core::Explanation, probe: &Probe) {
    println!(
        "model `{}`, agent `{}`, step {}:",
        e.model, probe.agent, probe.step
    );
    for r in &e.rules {
        match &r.why_not {
            None => println!("  rule {:>2} ✓ {}", r.rule, r.conditions),
            Some(why) => println!("  rule {:>2} ✗ {} — {why}", r.rule, r.conditions),
        }
    }
    match e.fires {
        None => println!("no rule fires: the call would fail (no rule matches)"),
        Some(n) => {
            println!("rule {n} fires:");
            if let Some(text) = &e.text {
                println!("  text: {text}");
            }
            for c in &e.tool_calls {
                println!("  call: {} {}", c.name, c.arguments);
            }
            if let Some(f) = e.fault {
                println!("  fault: {}", serde_json::to_string(&f).unwrap_or_default());
            }
        }
    }
}
