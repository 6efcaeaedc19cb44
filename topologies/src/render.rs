//! Drawing a topology: Graphviz DOT and Mermaid. Supervision edges are solid, delegation dashed,
//! fallbacks dotted; each node shows the agent's model ladder and budget. With detail
//! ([`Detail::Full`]) the drawing also shows each agent's role and tools (with their kind and
//! effect, destructive ones in red), and the standing loops that give the root its tasks.

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;

use crate::topology::{AgentNode, Edge, Topology};

fn budget_line(a: &AgentNode) -> String {
    let mut parts = Vec::new();
    if let Some(c) = a.budget.max_cost {
        parts.push(format!("{c}"));
    }
    if let Some(t) = a.budget.max_tokens {
        parts.push(format!("{t} tokens"));
    }
    if let Some(s) = a.budget.max_steps {
        parts.push(format!("{s} steps"));
    }
    if let Some(w) = a.budget.max_wall {
        parts.push(baton_core::format_duration(w));
    }
    parts.join(" · ")
}

fn ladder_line(a: &AgentNode) -> String {
    a.ladder
        .iter()
        .map(|m| &**m)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// How much a drawing shows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Agents, their ladders and budgets, and the edges between them.
    #[default]
    Agents,
    /// Also roles, tools and schedules.
    Full,
}

/// What a built-in tool kind (named as in the file: `restart_service`) can change, as its
/// implementation says (`Tool::effect()`): the CLI asks the tools themselves. Drawings with
/// [`Detail::Full`] show it; a tool's own `effect:` in the file wins.
pub type EffectOf<'a> = &'a dyn Fn(&str) -> Option<baton_core::Effect>;

/// A tool's line: its kind, and its effect as the file declares it or its kind's tool says.
fn tool_line(t: &Topology, name: &str, effect_of: EffectOf<'_>) -> (String, bool) {
    let Some(def) = t.tools().find(|d| &*d.name == name) else {
        // An MCP server's tool, or a whole server: what it is, as far as the file says.
        return ("mcp".into(), false);
    };
    let kind = serde_json::to_value(def.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let effect = def.effect.or_else(|| effect_of(&kind));
    let destructive = effect == Some(baton_core::Effect::Destructive);
    let mut line = match effect {
        Some(e) => format!("{kind} · {}", format!("{e:?}").to_lowercase()),
        None => kind,
    };
    if def.sensitive {
        line.push_str(" · sensitive");
    }
    (line, destructive)
}

/// The tools any agent lists, in first-seen order.
fn tools_used(t: &Topology) -> Vec<std::sync::Arc<str>> {
    let mut seen: Vec<std::sync::Arc<str>> = Vec::new();
    for n in t.graph().node_indices() {
        for tool in &t.graph()[n].tools {
            if !seen.contains(tool) {
                seen.push(std::sync::Arc::clone(tool));
            }
        }
    }
    seen
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The topology as a Graphviz digraph (agents and edges).
pub fn to_dot(t: &Topology) -> String {
    to_dot_with(t, Detail::Agents, &|_| None)
}

/// The topology as a Graphviz digraph, with `detail` (tools' effects from `effect_of`).
pub fn to_dot_with(t: &Topology, detail: Detail, effect_of: EffectOf<'_>) -> String {
    let g = t.graph();
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(t.name()));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(
        out,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"
    );
    for n in g.node_indices() {
        let a = &g[n];
        let root = if n == t.root() { ", penwidth=2" } else { "" };
        let role = match (&a.role, detail) {
            (Some(r), Detail::Full) => format!("\\nrole: {}", dot_escape(r)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\\n{}{role}\"{root}];",
            dot_escape(&a.name),
            dot_escape(&a.name),
            dot_escape(&ladder_line(a)),
            dot_escape(&budget_line(a))
        );
    }
    if detail == Detail::Full {
        for tool in tools_used(t) {
            let (line, destructive) = tool_line(t, &tool, effect_of);
            let color = if destructive {
                ", color=red, fontcolor=red"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"tool:{}\" [shape=note, label=\"{}\\n{}\"{color}];",
                dot_escape(&tool),
                dot_escape(&tool),
                dot_escape(&line)
            );
        }
        for n in g.node_indices() {
            for tool in &g[n].tools {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"tool:{}\" [style=dashed, color=gray, arrowhead=none];",
                    dot_escape(&g[n].name),
                    dot_escape(tool)
                );
            }
        }
        for s in t.schedules() {
            let _ = writeln!(
                out,
                "  \"schedule:{}\" [shape=hexagon, label=\"{}\\n{}\"];",
                dot_escape(&s.name),
                dot_escape(&s.name),
                dot_escape(&s.cadence.to_string())
            );
            let _ = writeln!(
                out,
                "  \"schedule:{}\" -> \"{}\" [color=darkgreen, label=\"ticks\"];",
                dot_escape(&s.name),
                dot_escape(&g[t.root()].name)
            );
        }
    }
    for e in g.edge_references() {
        let (from, to) = (&g[e.source()].name, &g[e.target()].name);
        let style = match e.weight() {
            Edge::Supervises => "style=solid, label=\"supervises\"",
            Edge::DelegatesTo => "style=dashed, color=blue, label=\"delegates\"",
            Edge::FallsBackTo => "style=dotted, color=orange, label=\"falls back to\"",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [{style}];",
            dot_escape(from),
            dot_escape(to)
        );
    }
    out.push_str("}\n");
    out
}

/// The topology as a Mermaid flowchart (agents and edges).
pub fn to_mermaid(t: &Topology) -> String {
    to_mermaid_with(t, Detail::Agents, &|_| None)
}

/// The topology as a Mermaid flowchart, with `detail` (tools' effects from `effect_of`).
pub fn to_mermaid_with(t: &Topology, detail: Detail, effect_of: EffectOf<'_>) -> String {
    let g = t.graph();
    let id = |n: petgraph::graph::NodeIndex| format!("a{}", n.index());
    let text = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("flowchart TD\n");
    for n in g.node_indices() {
        let a = &g[n];
        let role = match (&a.role, detail) {
            (Some(r), Detail::Full) => format!("<br/>role: {}", text(r)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}[\"<b>{}</b><br/>{}<br/>{}{role}\"]",
            id(n),
            text(&a.name),
            text(&ladder_line(a)),
            text(&budget_line(a))
        );
    }
    if detail == Detail::Full {
        let tools = tools_used(t);
        for (i, tool) in tools.iter().enumerate() {
            let (line, destructive) = tool_line(t, tool, effect_of);
            let _ = writeln!(out, "  t{i}[/\"{}<br/>{}\"/]", text(tool), text(&line));
            if destructive {
                let _ = writeln!(out, "  style t{i} stroke:#d00,color:#d00");
            }
        }
        for n in g.node_indices() {
            for tool in &g[n].tools {
                if let Some(i) = tools.iter().position(|x| x == tool) {
                    let _ = writeln!(out, "  {} -.- t{i}", id(n));
                }
            }
        }
        for (i, s) in t.schedules().iter().enumerate() {
            let _ = writeln!(
                out,
                "  s{i}{{{{\"{}<br/>{}\"}}}}",
                text(&s.name),
                text(&s.cadence.to_string())
            );
            let _ = writeln!(out, "  s{i} -->|ticks| {}", id(t.root()));
        }
    }
    for e in g.edge_references() {
        let arrow = match e.weight() {
            Edge::Supervises => "-->|supervises|",
            Edge::DelegatesTo => "-.->|delegates|",
            Edge::FallsBackTo => "==>|falls back to|",
        };
        let _ = writeln!(out, "  {} {arrow} {}", id(e.source()), id(e.target()));
    }
    let _ = writeln!(out, "  style {} stroke-width:3px", id(t.root()));
    out
}
