//! The agents' graph, checked as it is built: each agent's settings, supervision and
//! delegation edges (a tree), every agent under the root, budgets that nest, and fallbacks
//! (declared siblings, no cycles).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::suggest::did_you_mean;
use super::{AgentNode, Edge, Validator};
use crate::locate::Seg;
use crate::spec::{AgentSpec, BudgetAction};

/// The agents after `extends:`, by name.
type Agents = BTreeMap<String, AgentSpec>;
/// The graph's node of each agent, by name.
type Index = HashMap<Arc<str>, NodeIndex>;

impl Validator<'_> {
    /// An agent's own settings: percentages within 0 to 100, concurrency at least 1.
    pub(super) fn check_settings(&mut self, name: &str, a: &AgentSpec) {
        if a.min_confidence.is_some_and(|q| q > 100) {
            self.report(
                &[
                    Seg::Key("agents"),
                    Seg::Key(name),
                    Seg::Key("min_confidence"),
                ],
                "`min_confidence` is a percentage from 0 to 100".into(),
                None,
            );
        }
        for (key, value) in [
            ("max_concurrency", a.max_concurrency),
            ("max_parallel_tools", a.max_parallel_tools),
        ] {
            if value == Some(0) {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key(key)],
                    format!("`{key}` must be at least 1"),
                    Some(format!("`{key}: 1` runs one at a time")),
                );
            }
        }
        if a.quality_bar.is_some_and(|q| q > 100) {
            self.report(
                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("quality_bar")],
                "`quality_bar` is a score from 0 to 100".into(),
                None,
            );
        }
    }

    /// Supervision and delegation edges: every child declared, and declared once, by one
    /// parent; delegation within supervision. Returns each child's parent.
    pub(super) fn link_children<'a>(
        &mut self,
        agents: &'a Agents,
        index: &Index,
        graph: &mut DiGraph<AgentNode, Edge>,
    ) -> HashMap<&'a str, &'a str> {
        // Supervision edges: every child declared once, by one parent.
        let mut parent_of: HashMap<&str, &str> = HashMap::new();
        for (name, a) in agents {
            for child in &a.children {
                let at = [
                    Seg::Key("agents"),
                    Seg::Key(name),
                    Seg::Key("children"),
                    Seg::Item(child),
                ];
                let Some(&c) = index.get(child.as_str()) else {
                    self.report(
                        &at,
                        format!("child `{child}` is not a declared agent"),
                        did_you_mean(child, agents.keys()),
                    );
                    continue;
                };
                if child == name {
                    self.report(&at, format!("agent `{name}` lists itself as a child"), None);
                    continue;
                }
                if let Some(prev) = parent_of.insert(child, name) {
                    self.report(
                    &at,
                    format!("agent `{child}` already has the parent `{prev}`; supervision must be a tree"),
                    Some("give each agent one parent; declare a second agent if two parents need one".into()),
                );
                    continue;
                }
                let p = index[name.as_str()];
                graph.add_edge(p, c, Edge::Supervises);
                if a.delegates.as_ref().is_none_or(|d| d.contains(child)) {
                    graph.add_edge(p, c, Edge::DelegatesTo);
                } else {
                    self.warn(
                    &at,
                    format!("`{name}` supervises `{child}` but never delegates to it: `{child}` can never receive a task"),
                    Some(format!("add `{child}` to `delegates:`, or remove it")),
                );
                }
            }
            for d in a.delegates.iter().flatten() {
                if !a.children.contains(d) {
                    self.report(
                        &[
                            Seg::Key("agents"),
                            Seg::Key(name),
                            Seg::Key("delegates"),
                            Seg::Item(d),
                        ],
                        format!("`{name}` delegates to `{d}`, which it does not supervise"),
                        Some(format!(
                            "delegation stays within supervision: list `{d}` under `children:` too"
                        )),
                    );
                }
            }
        }
        parent_of
    }

    /// Every agent must be under the root (this also rules out supervision cycles).
    pub(super) fn check_under_root(
        &mut self,
        root: NodeIndex,
        graph: &DiGraph<AgentNode, Edge>,
        index: &Index,
        parent_of: &HashMap<&str, &str>,
    ) {
        // Every agent must be under the root (this also rules out supervision cycles).
        let mut seen = vec![false; graph.node_count()];
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n.index()], true) {
                continue;
            }
            stack.extend(
                graph
                    .edges_directed(n, Direction::Outgoing)
                    .map(|e| e.target()),
            );
        }
        // A root that is someone's child is already reported: that its ancestors are "not under
        // the root" is a knock-on of the same mistake, not a second one.
        let root_is_a_child = parent_of.contains_key(&*graph[root].name);
        for (name, &n) in index {
            if !seen[n.index()] && !root_is_a_child {
                self.report(
                &[Seg::Key("agents"), Seg::Key(name)],
                format!("agent `{name}` is not under the root `{}` (a second root, or a supervision cycle)", graph[root].name),
                Some("list it under `children:` of an agent beneath the root".into()),
            );
            }
        }
    }

    /// A child's money limit cannot exceed its parent's.
    pub(super) fn check_budgets_nest(&mut self, agents: &Agents, parent_of: &HashMap<&str, &str>) {
        // A child's money limit cannot exceed its parent's.
        for (child, parent) in parent_of {
            let (c, p) = (&agents[*child], &agents[*parent]);
            if let (Some(cm), Some(pm)) = (c.budget.max_usd, p.budget.max_usd)
                && cm > pm
            {
                self.report(
                    &[
                        Seg::Key("agents"),
                        Seg::Key(child),
                        Seg::Key("budget"),
                        Seg::Key("max_usd"),
                    ],
                    format!(
                        "budget {} is larger than its parent `{parent}`'s {}",
                        cm.0, pm.0
                    ),
                    Some("a child only ever spends out of its parent's budget; lower it".into()),
                );
            }
        }
    }

    /// Fallbacks: declared, a sibling (delegation stays within what supervision allows), and
    /// a reroute with somewhere to go.
    pub(super) fn link_fallbacks(
        &mut self,
        agents: &Agents,
        index: &Index,
        parent_of: &HashMap<&str, &str>,
        graph: &mut DiGraph<AgentNode, Edge>,
    ) {
        // Fallbacks: declared, a sibling (delegation stays within what supervision allows), no cycles.
        for (name, a) in agents {
            let at = [Seg::Key("agents"), Seg::Key(name), Seg::Key("fallback")];
            if a.on_budget_exceeded == Some(BudgetAction::Reroute)
                && a.fallback.is_none()
                && a.quality_bar.unwrap_or(0) == 0
            {
                self.report(
                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("on_budget_exceeded")],
                format!("agent `{name}` reroutes but has nowhere to go"),
                Some("set `fallback:` to a sibling agent, or a `quality_bar` with cheaper models below it on the ladder".into()),
            );
            }
            let Some(fb) = &a.fallback else { continue };
            let Some(&f) = index.get(fb.as_str()) else {
                self.report(
                    &at,
                    format!("fallback `{fb}` is not a declared agent"),
                    did_you_mean(fb, agents.keys()),
                );
                continue;
            };
            if fb == name {
                self.report(&at, format!("agent `{name}` is its own fallback"), None);
                continue;
            }
            match (parent_of.get(name.as_str()), parent_of.get(fb.as_str())) {
                (Some(p), Some(q)) if p == q => {}
                (Some(p), q) => {
                    // A fallback is a sibling: name the ones there are, rather than suggest
                    // moving an agent under its own child or away from its supervisor.
                    let mut siblings: Vec<&str> = parent_of
                        .iter()
                        .filter(|(c, pp)| *pp == p && **c != name.as_str())
                        .map(|(c, _)| *c)
                        .collect();
                    siblings.sort_unstable();
                    let hint = match (q, siblings.is_empty()) {
                        (_, false) => format!(
                            "a fallback is a sibling under `{p}`: one of {}",
                            siblings
                                .iter()
                                .map(|s| format!("`{s}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        (Some(q), true) => format!(
                            "`{fb}` is supervised by `{q}`, and `{name}` has no sibling under `{p}` to reroute to: add one to `{p}`'s `children:`"
                        ),
                        (None, true) => format!(
                            "`{name}` has no sibling under `{p}`: add one to `{p}`'s `children:` and name it here"
                        ),
                    };
                    self.report(
                        &at,
                        format!(
                            "fallback `{fb}` is not a child of `{p}`, which supervises `{name}`"
                        ),
                        Some(hint),
                    );
                    continue;
                }
                (None, _) => {
                    self.report(
                        &at,
                        format!("the root agent `{name}` has no supervisor to reroute through"),
                        None,
                    );
                    continue;
                }
            }
            graph.add_edge(index[name.as_str()], f, Edge::FallsBackTo);
        }
    }

    /// A fallback chain must end: following it never comes back to where it started.
    pub(super) fn check_fallback_cycles(&mut self, agents: &Agents) {
        for (name, a) in agents {
            // Follow the fallback chain; coming back to the start is a cycle.
            let mut seen = vec![name.as_str()];
            let mut cur = a.fallback.as_deref();
            while let Some(next) = cur {
                if next == name {
                    self.report(
                        &[Seg::Key("agents"), Seg::Key(name), Seg::Key("fallback")],
                        format!("fallback cycle: {} -> {next}", seen.join(" -> ")),
                        Some("a fallback chain must end at an agent without `fallback:`".into()),
                    );
                    break;
                }
                if seen.contains(&next) {
                    break;
                }
                seen.push(next);
                cur = agents.get(next).and_then(|x| x.fallback.as_deref());
            }
        }
    }
}
