//! Drawing a topology: Graphviz DOT and Mermaid. Supervision edges are solid, delegation dashed,
//! fallbacks dotted; each node shows the agent's model ladder and budget.

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

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The topology as a Graphviz digraph.
pub fn to_dot(t: &Topology) -> String {
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
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\\n{}\"{root}];",
            dot_escape(&a.name),
            dot_escape(&a.name),
            dot_escape(&ladder_line(a)),
            dot_escape(&budget_line(a))
        );
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

/// The topology as a Mermaid flowchart.
pub fn to_mermaid(t: &Topology) -> String {
    let g = t.graph();
    let id = |n: petgraph::graph::NodeIndex| format!("a{}", n.index());
    let text = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("flowchart TD\n");
    for n in g.node_indices() {
        let a = &g[n];
        let _ = writeln!(
            out,
            "  {}[\"<b>{}</b><br/>{}<br/>{}\"]",
            id(n),
            text(&a.name),
            text(&ladder_line(a)),
            text(&budget_line(a))
        );
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
