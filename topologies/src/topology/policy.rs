//! `policy:` resolved and checked: roles name declared tools, freeze windows parse.

use super::*;

impl Validator<'_> {
    /// Resolves `policy:`: roles name declared tools, agents name declared roles, freeze windows
    /// parse.
    pub(super) fn check_policy(&mut self, spec: &TopologySpec) -> Policy {
        let mut out = Policy {
            approval_timeout: baton_core::defaults::APPROVAL_TIMEOUT,
            ..Policy::default()
        };
        for (name, a) in &spec.agents {
            if let Some(r) = &a.role
                && !spec
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.roles.contains_key(r))
            {
                self.report(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key("role")],
                    format!("role `{r}` is not declared under `policy.roles`"),
                    spec.policy
                        .as_ref()
                        .and_then(|p| did_you_mean(r, p.roles.keys())),
                );
            }
        }
        let Some(p) = &spec.policy else { return out };
        for (role, tools) in &p.roles {
            for t in tools {
                if t != DELEGATE_TOOL
                    && !spec.tools.contains_key(t)
                    && !crate::mcp::resolves(spec, t)
                {
                    self.report(
                        &[
                            Seg::Key("policy"),
                            Seg::Key("roles"),
                            Seg::Key(role),
                            Seg::Item(t),
                        ],
                        format!("role `{role}` allows `{t}`, which is not declared under `tools:` or `mcp_servers:`"),
                        did_you_mean(t, spec.tools.keys().chain(spec.mcp_servers.keys())),
                    );
                }
            }
            out.roles
                .insert(role.clone(), tools.iter().cloned().collect());
        }
        for (i, f) in p.freeze.iter().enumerate() {
            match (
                baton_core::policy::parse_utc(&f.from),
                baton_core::policy::parse_utc(&f.to),
            ) {
                (Ok(from), Ok(to)) if from < to => out.freeze.push(baton_core::policy::Freeze {
                    from,
                    to,
                    reason: if f.reason.is_empty() {
                        format!("freeze window {}", i + 1)
                    } else {
                        f.reason.clone()
                    },
                    block_dry_runs: f.block_dry_runs,
                }),
                (Ok(_), Ok(_)) => self.report(
                    &[Seg::Key("policy"), Seg::Key("freeze")],
                    format!("freeze window {}: `to` is not after `from`", i + 1),
                    None,
                ),
                (Err(e), _) | (_, Err(e)) => self.report(
                    &[Seg::Key("policy"), Seg::Key("freeze")],
                    format!("freeze window {}: {e}", i + 1),
                    None,
                ),
            }
        }
        out.dry_run_first = p.dry_run_first.unwrap_or(false);
        out.approval = p.approval.unwrap_or(false);
        if let Some(t) = p.approval_timeout {
            if t.is_zero() {
                self.report(
                    &[Seg::Key("policy"), Seg::Key("approval_timeout")],
                    "`approval_timeout` must be longer than zero".into(),
                    None,
                );
            }
            out.approval_timeout = t;
        }
        out
    }
}
