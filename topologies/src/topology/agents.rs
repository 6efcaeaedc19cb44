//! `agents:` and `templates:` checked: references to models, tools and other agents, `extends`
//! resolved, each agent's own settings and supervision, and the root found.

use super::*;

impl Validator<'_> {
    pub(super) fn find_root(
        &mut self,
        spec: &TopologySpec,
        index: &HashMap<Arc<str>, NodeIndex>,
        parent_of: &HashMap<&str, &str>,
    ) -> Option<NodeIndex> {
        if let Some(r) = &spec.root {
            let Some(&n) = index.get(r.as_str()) else {
                self.report(
                    &[Seg::Key("root")],
                    format!("root `{r}` is not a declared agent"),
                    did_you_mean(r, spec.agents.keys()),
                );
                return None;
            };
            if let Some(p) = parent_of.get(r.as_str()) {
                self.report(
                    &[Seg::Key("root")],
                    format!("root `{r}` is a child of `{p}`"),
                    None,
                );
            }
            return Some(n);
        }
        let roots: Vec<&String> = spec
            .agents
            .keys()
            .filter(|a| !parent_of.contains_key(a.as_str()))
            .collect();
        match roots.as_slice() {
            [one] => Some(index[one.as_str()]),
            [] => {
                self.report(
                    &[Seg::Key("agents")],
                    "every agent is someone's child: supervision has a cycle".into(),
                    None,
                );
                None
            }
            many => {
                let names = many
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.report(
                    &[Seg::Key("root")],
                    format!("several agents have no parent ({names}); which one receives tasks?"),
                    Some("set `root:` or list the others under `children:`".into()),
                );
                None
            }
        }
    }

    /// Checks the names an agent or template lists itself (inherited lists were checked where
    /// they were written).
    pub(super) fn check_refs(
        &mut self,
        section: &'static str,
        name: &str,
        a: &AgentSpec,
        spec: &TopologySpec,
    ) {
        for m in &a.models {
            if !spec.models.contains_key(m) {
                self.report(
                    &[
                        Seg::Key(section),
                        Seg::Key(name),
                        Seg::Key("models"),
                        Seg::Item(m),
                    ],
                    format!("model `{m}` is not declared under `models:`"),
                    did_you_mean(m, spec.models.keys()),
                );
            }
        }
        for t in &a.tools {
            if t == DELEGATE_TOOL {
                self.report(
                    &[
                        Seg::Key(section),
                        Seg::Key(name),
                        Seg::Key("tools"),
                        Seg::Item(t),
                    ],
                    "`delegate` is built in: every agent with children has it".into(),
                    Some("remove it from `tools:`; list the agents under `children:`".into()),
                );
            } else if !spec.tools.contains_key(t) && !crate::mcp::resolves(spec, t) {
                let at = [
                    Seg::Key(section),
                    Seg::Key(name),
                    Seg::Key("tools"),
                    Seg::Item(t),
                ];
                match crate::mcp::offered(spec, t) {
                    Some((server, tool, offered)) => self.report(
                        &at,
                        format!("MCP server `{server}` does not offer `{tool}`"),
                        Some(format!("its `tools:` offers: {}", offered.join(", "))),
                    ),
                    None => self.report(
                        &at,
                        format!("tool `{t}` is not declared under `tools:` or `mcp_servers:`"),
                        did_you_mean(t, spec.tools.keys().chain(spec.mcp_servers.keys())),
                    ),
                }
            }
        }
        if section == "templates" && (!a.children.is_empty() || a.delegates.is_some()) {
            self.report(
                &[
                    Seg::Key(section),
                    Seg::Key(name),
                    Seg::Key(if a.children.is_empty() {
                        "delegates"
                    } else {
                        "children"
                    }),
                ],
                "templates cannot have children or delegates: supervision must stay a tree".into(),
                Some("declare children on each agent".into()),
            );
        }
    }

    /// Applies `extends:` chains; reports unknown templates and cycles.
    pub(super) fn resolve_extends(&mut self, spec: &TopologySpec) -> BTreeMap<String, AgentSpec> {
        for (t, tpl) in &spec.templates {
            let mut seen = vec![t.as_str()];
            let mut next = tpl.extends.as_deref();
            while let Some(n) = next {
                let at = [Seg::Key("templates"), Seg::Key(t), Seg::Key("extends")];
                if n == t {
                    self.report(
                        &at,
                        format!("template cycle: {} -> {n}", seen.join(" -> ")),
                        None,
                    );
                    break;
                }
                if seen.contains(&n) {
                    break;
                }
                seen.push(n);
                match spec.templates.get(n) {
                    Some(x) => next = x.extends.as_deref(),
                    None => {
                        if seen.len() == 2 {
                            self.report(
                                &at,
                                format!("template `{n}` is not declared under `templates:`"),
                                did_you_mean(n, spec.templates.keys()),
                            );
                        }
                        break;
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (name, a) in &spec.agents {
            let mut cur = a.clone();
            let mut seen: Vec<&str> = Vec::new();
            let mut next = a.extends.as_deref();
            while let Some(n) = next {
                if seen.contains(&n) {
                    break;
                }
                seen.push(n);
                match spec.templates.get(n) {
                    Some(tpl) => {
                        cur = cur.inherit(tpl);
                        next = tpl.extends.as_deref();
                    }
                    None => {
                        if seen.len() == 1 {
                            self.report(
                                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("extends")],
                                format!("template `{n}` is not declared under `templates:`"),
                                did_you_mean(n, spec.templates.keys()),
                            );
                        }
                        break;
                    }
                }
            }
            cur.extends = None;
            out.insert(name.clone(), cur);
        }
        out
    }

    pub(super) fn check_agent(&mut self, name: &str, a: &AgentSpec) -> AgentNode {
        let b = &a.budget;
        let budget_at = |k: &'static str| {
            [
                Seg::Key("agents"),
                Seg::Key(name),
                Seg::Key("budget"),
                Seg::Key(k),
            ]
        };
        if b.max_usd.is_some_and(|u| u.0 == NanoUsd::ZERO) {
            self.report(
                &budget_at("max_usd"),
                "a zero budget can never run".into(),
                Some("remove `max_usd` for no limit of its own".into()),
            );
        }
        if b.max_tokens == Some(0) {
            self.report(
                &budget_at("max_tokens"),
                "a zero token budget can never run".into(),
                None,
            );
        }
        if b.max_steps == Some(0) {
            self.report(
                &budget_at("max_steps"),
                "`max_steps` must be at least 1".into(),
                None,
            );
        }
        if b.max_wall.is_some_and(|w| w.is_zero()) {
            self.report(
                &budget_at("max_wall"),
                "`max_wall` must be longer than zero".into(),
                None,
            );
        }
        AgentNode {
            name: name.into(),
            ladder: a.models.iter().map(|m| Arc::from(m.as_str())).collect(),
            tools: a.tools.iter().map(|t| Arc::from(t.as_str())).collect(),
            budget: Budget {
                max_cost: b.max_usd.map(|u| u.0),
                max_tokens: b.max_tokens,
                max_steps: Some(b.max_steps.unwrap_or(defaults::MAX_STEPS)),
                max_wall: b.max_wall,
            },
            system: a.system.clone(),
            description: a.description.clone(),
            supervision: Supervision::from_spec(a.supervision.as_ref()),
            restart: a.restart.unwrap_or_default(),
            on_crash: a.on_crash.unwrap_or_default(),
            on_budget_exceeded: a.on_budget_exceeded.unwrap_or_default(),
            fallback: a.fallback.as_deref().map(Arc::from),
            activation: a.activation.unwrap_or_default(),
            quality_bar: a.quality_bar.unwrap_or(defaults::QUALITY_BAR),
            min_confidence: a.min_confidence,
            on_missing_confidence: a.on_missing_confidence.unwrap_or_default(),
            privacy: a.privacy.unwrap_or_default(),
            on_truncated: a.on_truncated.unwrap_or_default(),
            role: a.role.as_deref().map(Arc::from),
            max_concurrency: a.max_concurrency.unwrap_or(defaults::MAX_CONCURRENCY),
            queue: a.queue.unwrap_or(defaults::QUEUE),
            max_parallel_tools: match a.parallel_tool_calls {
                Some(false) => 1,
                _ => a.max_parallel_tools.unwrap_or(defaults::MAX_PARALLEL_TOOLS),
            },
            value: a.value.as_ref().map(|v| {
                self.check_value(&[Seg::Key("agents"), Seg::Key(name), Seg::Key("value")], v)
            }),
            context: None,
        }
    }

    pub(super) fn check_supervision(&mut self, at: &[Seg<'_>], s: Option<&SupervisionSpec>) {
        let Some(s) = s else { return };
        let mut path = at.to_vec();
        if s.within.is_some_and(|w| w.is_zero()) {
            path.push(Seg::Key("within"));
            self.report(&path, "`within` must be longer than zero".into(), None);
        }
    }
}
