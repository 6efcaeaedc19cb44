//! The harness's policy, evaluated before every tool call — never by the model: which tools a
//! role may call, change-freeze windows for destructive effects, dry-run-first, and human approval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::tool::Effect;

/// A change-freeze window, in Unix seconds (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    /// Start (inclusive).
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Why, shown with a denial.
    pub reason: String,
    /// Dry runs are refused too (by default a dry run, which changes nothing, is allowed
    /// during a freeze).
    pub block_dry_runs: bool,
}

/// The policy of a topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Role → tools it may call (`delegate` is always allowed).
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Windows during which destructive calls are refused (their dry runs are allowed, unless
    /// the window says `block_dry_runs`).
    pub freeze: Vec<Freeze>,
    /// A destructive call must have run with `dry_run: true` and the same arguments earlier in
    /// the task.
    pub dry_run_first: bool,
    /// Destructive calls need a human's approval.
    pub approval: bool,
    /// How long an approval may take before it counts as denied.
    pub approval_timeout: Duration,
}

/// What the policy says about a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Go ahead once a human approves.
    NeedsApproval,
    /// Refused by `rule`, for `reason`.
    Deny {
        /// `role`, `freeze`, `dry_run_first`.
        rule: &'static str,
        /// Why.
        reason: String,
    },
}

/// Whether `args` ask for a dry run.
pub fn is_dry_run(args: &Value) -> bool {
    args.get("dry_run").and_then(Value::as_bool) == Some(true)
}

/// `args` without `dry_run`: what a later real call must match.
pub fn without_dry_run(args: &Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "dry_run")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Policy {
    /// Judges a call of `tool` (with `effect` and `args`) by an agent with `role`, at `now`
    /// (Unix seconds), given the dry runs already made in the task (`(tool, args without dry_run)`).
    pub fn check(
        &self,
        role: Option<&str>,
        tool: &str,
        effect: Effect,
        args: &Value,
        dry_runs: &[(String, Value)],
        now: u64,
    ) -> Verdict {
        if let Some(role) = role {
            let allowed = self
                .roles
                .get(role)
                .is_some_and(|tools| tools.contains(tool));
            if !allowed {
                return Verdict::Deny {
                    rule: "role",
                    reason: format!("role `{role}` may not call `{tool}`"),
                };
            }
        }
        if effect != Effect::Destructive {
            return Verdict::Allow;
        }
        // `args` reach here with `dry_run: true` only for a tool that honours it (the harness
        // judges a dry-run flag to any other tool as the real call): such a dry run changes
        // nothing, so a freeze lets it through unless it blocks dry runs too.
        let dry = is_dry_run(args);
        if let Some(f) = self.freeze_at(now).filter(|f| !dry || f.block_dry_runs) {
            return Verdict::Deny {
                rule: "freeze",
                reason: format!("change freeze in force: {}", f.reason),
            };
        }
        if dry {
            return Verdict::Allow;
        }
        if self.dry_run_first {
            let wanted = without_dry_run(args);
            if !dry_runs.iter().any(|(t, a)| t == tool && *a == wanted) {
                return Verdict::Deny {
                    rule: "dry_run_first",
                    reason: format!(
                        "`{tool}` is destructive: call it with `dry_run: true` and the same arguments first"
                    ),
                };
            }
        }
        if self.approval {
            Verdict::NeedsApproval
        } else {
            Verdict::Allow
        }
    }
}

impl Policy {
    /// The change-freeze window in force at `now` (Unix seconds), if any.
    pub fn freeze_at(&self, now: u64) -> Option<&Freeze> {
        self.freeze.iter().find(|f| f.from <= now && now < f.to)
    }
}

/// Parses an RFC 3339 time such as `2026-12-20T00:00:00Z` (or with an offset,
/// `2026-12-20T01:00:00+01:00`) to Unix seconds.
///
/// # Errors
/// A description of what is wrong: not a time with an offset, or before 1970.
pub fn parse_utc(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a UTC time like 2026-12-20T00:00:00Z");
    let t: jiff::Timestamp = text.trim().parse().map_err(|_| bad())?;
    u64::try_from(t.as_second()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            roles: BTreeMap::from([(
                "responder".into(),
                BTreeSet::from(["restart".to_string(), "read".to_string()]),
            )]),
            freeze: vec![Freeze {
                from: parse_utc("2026-12-20T00:00:00Z").expect("time"),
                to: parse_utc("2027-01-02T00:00:00Z").expect("time"),
                reason: "holiday freeze".into(),
                block_dry_runs: false,
            }],
            dry_run_first: true,
            approval: true,
            approval_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_utc("2026-11-24T00:00:00Z"), Ok(1_795_478_400));
        assert_eq!(parse_utc(" 2026-11-24T01:00:00+01:00 "), Ok(1_795_478_400));
        assert_eq!(parse_utc("2028-02-29T23:59:59Z"), Ok(1_835_481_599));
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T00:00:00",
            "1969-12-31T23:59:59Z",
            "tomorrow",
        ] {
            let e = parse_utc(bad).expect_err(bad);
            assert!(e.contains("is not a UTC time like"), "{e}");
        }
    }

    #[test]
    fn dry_run_flags_and_freeze_windows() {
        assert!(is_dry_run(&json!({"dry_run": true})));
        assert!(!is_dry_run(&json!({"dry_run": "true"})), "only the boolean");
        assert!(!is_dry_run(&json!({"dry_run": false})));
        assert!(!is_dry_run(&json!({})));
        assert_eq!(
            without_dry_run(&json!({"service": "a", "dry_run": true})),
            json!({"service": "a"})
        );
        assert_eq!(without_dry_run(&json!("plain")), json!("plain"));
        let p = policy();
        let (from, to) = (p.freeze[0].from, p.freeze[0].to);
        assert!(p.freeze_at(from - 1).is_none());
        assert_eq!(
            p.freeze_at(from).map(|f| f.reason.as_str()),
            Some("holiday freeze")
        );
        assert!(p.freeze_at(to - 1).is_some());
        assert!(p.freeze_at(to).is_none(), "the end is exclusive");
    }

    #[test]
    fn what_each_rule_says_and_what_it_leaves_alone() {
        let mut p = policy();
        let now = parse_utc("2026-11-24T12:00:00Z").expect("time");
        let frozen = parse_utc("2026-12-24T12:00:00Z").expect("time");
        let svc = json!({"service": "checkout-api"});
        let deny = |v: Verdict| match v {
            Verdict::Deny { rule, reason } => (rule, reason),
            other => panic!("not a denial: {other:?}"),
        };
        assert_eq!(
            deny(p.check(Some("intern"), "read", Effect::Read, &svc, &[], now)),
            ("role", "role `intern` may not call `read`".to_string())
        );
        assert_eq!(
            deny(p.check(None, "restart", Effect::Destructive, &svc, &[], frozen)),
            (
                "freeze",
                "change freeze in force: holiday freeze".to_string()
            )
        );
        assert_eq!(
            deny(p.check(None, "restart", Effect::Destructive, &svc, &[], now)),
            (
                "dry_run_first",
                "`restart` is destructive: call it with `dry_run: true` and the same arguments first"
                    .to_string()
            )
        );
        // Writes and reads pass freezes, dry-run-first and approval.
        for effect in [Effect::Read, Effect::Write] {
            assert_eq!(
                p.check(None, "restart", effect, &svc, &[], frozen),
                Verdict::Allow,
                "{effect:?}"
            );
        }
        // A dry run of another tool with the same arguments does not count.
        let other_tool = [("drain".to_string(), svc.clone())];
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &svc, &other_tool, now),
            Verdict::Deny {
                rule: "dry_run_first",
                ..
            }
        ));
        // Without approval, a dry-run-first call goes ahead; without either rule, at once.
        p.approval = false;
        let done = [("restart".to_string(), svc.clone())];
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &svc, &done, now),
            Verdict::Allow
        );
        p.dry_run_first = false;
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &svc, &[], now),
            Verdict::Allow
        );
        p.approval = true;
        assert_eq!(
            p.check(
                Some("responder"),
                "restart",
                Effect::Destructive,
                &svc,
                &[],
                now
            ),
            Verdict::NeedsApproval
        );
    }

    #[test]
    fn each_rule() {
        let p = policy();
        let now = parse_utc("2026-11-24T12:00:00Z").expect("time");
        let svc = json!({"service": "checkout-api"});
        let dry = json!({"service": "checkout-api", "dry_run": true});
        assert!(matches!(
            p.check(Some("intern"), "read", Effect::Read, &svc, &[], now),
            Verdict::Deny { rule: "role", .. }
        ));
        assert_eq!(
            p.check(Some("responder"), "read", Effect::Read, &svc, &[], now),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &svc, &[], now),
            Verdict::Deny {
                rule: "dry_run_first",
                ..
            }
        ));
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &dry, &[], now),
            Verdict::Allow
        );
        let done = [("restart".to_string(), without_dry_run(&dry))];
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &svc, &done, now),
            Verdict::NeedsApproval
        );
        let other = json!({"service": "search-api"});
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &other, &done, now),
            Verdict::Deny {
                rule: "dry_run_first",
                ..
            }
        ));
        // During a freeze: the real call is refused, even after its dry run; the dry run itself
        // changes nothing and goes ahead, unless the window blocks dry runs too.
        let frozen = parse_utc("2026-12-24T12:00:00Z").expect("time");
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &dry, &[], frozen),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &svc, &done, frozen),
            Verdict::Deny { rule: "freeze", .. }
        ));
        let mut strict = p.clone();
        strict.freeze[0].block_dry_runs = true;
        assert!(matches!(
            strict.check(None, "restart", Effect::Destructive, &dry, &[], frozen),
            Verdict::Deny { rule: "freeze", .. }
        ));
        // A role is checked first, freeze or not.
        assert!(matches!(
            p.check(
                Some("intern"),
                "restart",
                Effect::Destructive,
                &dry,
                &[],
                frozen
            ),
            Verdict::Deny { rule: "role", .. }
        ));
    }
}
