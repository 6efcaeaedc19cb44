//! Supervision of an agent's children, with OTP's semantics: strategies (`one_for_one`,
//! `one_for_all`, `rest_for_one`), restart types (`permanent`, `transient`, `temporary`) and restart
//! intensity (more than `max_restarts` within `within` and the supervisor gives up: it stops its
//! children and fails, escalating to its own supervisor).
//!
//! A child "crashes" when one of its tasks panics (the task ends; the child's other tasks go on)
//! or when its actor fails (it gave up on its own children). Either counts against this
//! supervisor's intensity, and the strategy restarts the siblings it names: a sibling's actor is
//! stopped — its in-flight tasks end `cancelled`, naming why — and started again.
//!
//! Children are kept in declaration order, which is their start order. A lazy child that never ran
//! is "not started": strategies restart only children that were running.

use std::sync::Arc;

use baton_core::Outcome;
use baton_topologies::{RestartType, Strategy, Supervision};
use ractor::{Actor, ActorCell, ActorRef, SupervisionEvent};

use crate::agent::{AgentActor, AgentArgs, AgentMsg, AgentShared, Running, Supervisor, Verdict};
use crate::observer::Event;

struct Slot {
    name: Arc<str>,
    plan: usize,
    actor: Option<ActorRef<AgentMsg>>,
    shared: Option<Arc<AgentShared>>,
    /// A temporary child that stopped: it is never started again.
    gone: bool,
}

/// Why an agent must stop its children and fail (crash). Its text is the crash reason the log,
/// the audit and the report carry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abort {
    /// Its restart intensity was exceeded: more than `max_restarts` within `within`.
    #[error(
        "supervisor `{supervisor}` gave up: more than {max_restarts} restarts within {within} (last: `{last}` {reason})"
    )]
    GaveUp {
        /// The agent that gave up.
        supervisor: Arc<str>,
        max_restarts: u32,
        /// The intensity's window, as written in the topology (`5s`).
        within: String,
        /// The child whose crash was one too many, and why it crashed.
        last: Arc<str>,
        reason: String,
    },
    /// A model or a tool crashed (panicked) in its hands: the reason names which.
    #[error("{0}")]
    Crashed(String),
}

pub(crate) struct Children {
    own: Arc<AgentShared>,
    sup: Supervision,
    slots: Vec<Slot>,
    restarts: Intensity,
}

/// A supervisor's restart intensity (the conductor's and every agent's): baton-core's, shared
/// with the MCP connector.
pub(crate) type Intensity = baton_core::RestartIntensity;

/// Counts a restart under `sup`'s intensity; `false` when the supervisor must give up.
pub(crate) fn admit(i: &mut Intensity, sup: &Supervision) -> bool {
    i.admit(sup.max_restarts, sup.within)
}

/// Whether a child of this restart type comes back after it exited (`crashed`: not a normal stop).
pub(crate) fn restarts(kind: RestartType, crashed: bool) -> bool {
    match kind {
        RestartType::Permanent => true,
        RestartType::Transient => crashed,
        RestartType::Temporary => false,
    }
}

/// The actor a supervision event is about, whether it crashed, and why it exited; `None` for
/// events that are not an exit.
pub(crate) fn exit_of(event: &SupervisionEvent) -> Option<(&ActorCell, bool, String)> {
    match event {
        SupervisionEvent::ActorFailed(cell, e) => Some((cell, true, e.to_string())),
        SupervisionEvent::ActorTerminated(cell, _, r) => Some((
            cell,
            false,
            format!("stopped: {}", r.as_deref().unwrap_or("normal exit")),
        )),
        _ => None,
    }
}

impl Children {
    pub(crate) fn new(own: Arc<AgentShared>) -> Children {
        let a = Arc::clone(&own.me);
        Children {
            sup: a.supervision.clone(),
            slots: a
                .children
                .iter()
                .map(|(name, idx)| Slot {
                    name: Arc::clone(name),
                    plan: *idx,
                    actor: None,
                    shared: None,
                    gone: false,
                })
                .collect(),
            restarts: Intensity::default(),
            own,
        }
    }

    /// The slot holding the actor `cell`, if it is one of ours.
    pub(crate) fn find(&self, cell: &ActorCell) -> Option<usize> {
        let id = cell.get_id();
        self.slots
            .iter()
            .position(|s| s.actor.as_ref().is_some_and(|a| a.get_id() == id))
    }

    async fn spawn(&mut self, i: usize, myself: &ActorCell) -> Result<Running, String> {
        let me: ActorRef<AgentMsg> = myself.clone().into();
        let shared = AgentShared::new(
            Arc::clone(&self.own.plan),
            self.slots[i].plan,
            Supervisor::Agent(me, i),
        );
        let args = AgentArgs {
            shared: Arc::clone(&shared),
        };
        let (actor, _) = Actor::spawn_linked(None, AgentActor, args, myself.clone())
            .await
            .map_err(|e| format!("could not start `{}`: {e}", self.slots[i].name))?;
        self.slots[i].actor = Some(actor.clone());
        self.slots[i].shared = Some(Arc::clone(&shared));
        let running = Running { actor, shared };
        self.own.set_child(i, Some(running.clone()));
        Ok(running)
    }

    /// Starts the children declared `activation: eager`, in order.
    pub(crate) async fn start_eager(&mut self, myself: &ActorCell) -> Result<(), String> {
        for i in 0..self.slots.len() {
            // Read off the declaration: a lazy child's plan is not built until it works.
            if self.own.plan.agents.declared(self.slots[i].plan).activation
                == baton_topologies::Activation::Eager
            {
                self.spawn(i, myself).await?;
            }
        }
        Ok(())
    }

    /// The running child in slot `i`, started if it is not running.
    ///
    /// # Errors
    /// When it is a temporary child that already stopped, or it cannot be started.
    pub(crate) async fn get(&mut self, i: usize, myself: &ActorCell) -> Result<Running, String> {
        let Some(slot) = self.slots.get(i) else {
            return Err(format!("no child in slot {i}"));
        };
        if slot.gone {
            return Err(format!(
                "`{}` has stopped and is temporary: it is not restarted",
                slot.name
            ));
        }
        match (&slot.actor, &slot.shared) {
            (Some(actor), Some(shared)) => Ok(Running {
                actor: actor.clone(),
                shared: Arc::clone(shared),
            }),
            _ => self.spawn(i, myself).await,
        }
    }

    /// Stops the child in slot `i` (a deliberate stop: no restart): its in-flight tasks end with
    /// `outcome` and why; its actor is killed after the shutdown timeout.
    pub(crate) async fn stop(&mut self, i: usize, outcome: Outcome, why: &str) {
        if let Some(shared) = self.slots[i].shared.take() {
            shared.halt(outcome, why);
        }
        self.own.set_child(i, None);
        if let Some(a) = self.slots[i].actor.take()
            && a.stop_and_wait(None, Some(self.sup.shutdown))
                .await
                .is_err()
        {
            a.kill();
        }
    }

    /// Stops every child, last started first.
    pub(crate) async fn stop_all(&mut self, outcome: Outcome, why: &str) {
        for i in (0..self.slots.len()).rev() {
            self.stop(i, outcome, why).await;
        }
    }

    /// A task of the child in slot `i` crashed (the child's actor runs on): counts it against the
    /// intensity and applies the restart type and the strategy.
    ///
    /// # Errors
    /// [`Abort`] when the restart intensity is exceeded; the caller must stop all children and fail.
    pub(crate) async fn crashed(
        &mut self,
        i: usize,
        reason: &str,
        myself: &ActorCell,
    ) -> Result<Verdict, Abort> {
        if i >= self.slots.len() {
            return Ok(Verdict::NotRestarted);
        }
        if self.own.plan.agents[self.slots[i].plan].restart == RestartType::Temporary {
            let why = format!(
                "`{}` is temporary: it crashed ({reason}) and is not restarted",
                self.slots[i].name
            );
            self.stop(i, Outcome::Cancelled, &why).await;
            self.slots[i].gone = true;
            return Ok(Verdict::NotRestarted);
        }
        self.count(i, reason)?;
        self.restart(i, reason, myself, false).await;
        Ok(Verdict::Restarted)
    }

    /// The actor of the child in slot `i` exited (`crashed` tells a failure from a normal stop):
    /// applies its restart type, the intensity and the strategy. Returns whether it runs again.
    ///
    /// # Errors
    /// [`Abort`] when the restart intensity is exceeded; the caller must stop all children and fail.
    pub(crate) async fn exited(
        &mut self,
        i: usize,
        crashed: bool,
        reason: &str,
        myself: &ActorCell,
    ) -> Result<bool, Abort> {
        self.slots[i].actor = None;
        if let Some(shared) = self.slots[i].shared.take() {
            shared.halt(Outcome::Failed, reason);
        }
        self.own.set_child(i, None);
        let kind = self.own.plan.agents[self.slots[i].plan].restart;
        if !restarts(kind, crashed) {
            self.slots[i].gone = kind == RestartType::Temporary;
            return Ok(false);
        }
        self.count(i, reason)?;
        self.restart(i, reason, myself, true).await;
        Ok(true)
    }

    /// Counts a restart of slot `i` against the intensity.
    fn count(&mut self, i: usize, reason: &str) -> Result<(), Abort> {
        if !crate::supervisor::admit(&mut self.restarts, &self.sup) {
            let me = &self.own.me;
            let abort = Abort::GaveUp {
                supervisor: me.name.clone(),
                max_restarts: self.sup.max_restarts,
                within: baton_core::format_duration(self.sup.within),
                last: self.slots[i].name.clone(),
                reason: reason.to_string(),
            };
            self.own.plan.observe(&Event::GaveUp {
                supervisor: &me.name,
                reason: &abort.to_string(),
            });
            me.escalations.increment(1);
            return Err(abort);
        }
        Ok(())
    }

    /// Applies the strategy after slot `i` crashed: the siblings it names are stopped (last started
    /// first) and started again (in start order); slot `i` itself is started again when its actor
    /// is gone (`respawn`). Every restart is an event and a count.
    async fn restart(&mut self, i: usize, reason: &str, myself: &ActorCell, respawn: bool) {
        let others: Vec<usize> = match self.sup.strategy {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => (0..self.slots.len())
                .filter(|&j| j != i && self.slots[j].actor.is_some())
                .collect(),
            Strategy::RestForOne => (i + 1..self.slots.len())
                .filter(|&j| self.slots[j].actor.is_some())
                .collect(),
        };
        let strategy = match self.sup.strategy {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        };
        let sibling = format!(
            "restarted by `{}` ({strategy}): sibling `{}` {reason}",
            self.own.me.name, self.slots[i].name
        );
        // The tasks the siblings hold now: their restart is part of those tasks' story (and of
        // their runs' reports), as the crashed child's is part of its task's.
        let held: Vec<(usize, Vec<baton_core::Account>)> = others
            .iter()
            .map(|&j| {
                let accounts = self.slots[j]
                    .shared
                    .as_ref()
                    .map_or_else(Vec::new, |s| s.held());
                (j, accounts)
            })
            .collect();
        for &j in others.iter().rev() {
            self.stop(j, Outcome::Cancelled, &sibling).await;
        }
        let mut order = others;
        order.push(i);
        order.sort_unstable();
        let plan = Arc::clone(&self.own.plan);
        for j in order {
            if j != i && plan.agents[self.slots[j].plan].restart == RestartType::Temporary {
                self.slots[j].gone = true;
                continue;
            }
            if (j != i || respawn) && self.spawn(j, myself).await.is_err() {
                continue;
            }
            let agent = &plan.agents[self.slots[j].plan];
            agent.restarts.increment(1);
            if let Some((_, accounts)) = held.iter().find(|(k, _)| *k == j) {
                for a in accounts {
                    a.record_restart();
                }
            }
            plan.observe(&Event::Restarted {
                agent: &agent.name,
                supervisor: &self.own.me.name,
                reason: if j == i { reason } else { &sibling },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use baton_core::{Model, NanoUsd, ScriptedModel};
    use baton_topologies::{AgentSpec, ModelSpec, TopologyBuilder};
    use ractor::ActorProcessingErr;

    use super::*;
    use crate::plan::Plan;

    /// Stands in for the supervising agent's actor.
    struct Host;

    impl Actor for Host {
        type Msg = AgentMsg;
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<AgentMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// Stands in for the supervising agent's actor and reports which of its children
    /// terminated, in order.
    struct Watcher;

    impl Actor for Watcher {
        type Msg = AgentMsg;
        type State = tokio::sync::mpsc::UnboundedSender<ractor::ActorId>;
        type Arguments = tokio::sync::mpsc::UnboundedSender<ractor::ActorId>;
        async fn pre_start(
            &self,
            _: ActorRef<AgentMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }
        async fn handle_supervisor_evt(
            &self,
            _: ActorRef<AgentMsg>,
            event: ractor::SupervisionEvent,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let ractor::SupervisionEvent::ActorTerminated(who, ..)
            | ractor::SupervisionEvent::ActorFailed(who, _) = event
            {
                let _ = tx.send(who.get_id());
            }
            Ok(())
        }
    }

    /// A topology under construction with one model, `m`.
    fn with_model() -> TopologyBuilder {
        TopologyBuilder::new("t").model(
            "m",
            ModelSpec::custom(baton_core::Price::per_million_tokens(
                NanoUsd(1),
                NanoUsd(1),
            )),
        )
    }

    /// The children of agent `lead` in `topology`, supervised by `host`.
    fn lead_children(topology: &baton_topologies::Topology, host: &ActorRef<AgentMsg>) -> Children {
        let mut models: HashMap<String, Arc<dyn Model>> = HashMap::new();
        models.insert("m".into(), Arc::new(ScriptedModel::always("m", "ok")));
        let lead = topology.agent("lead").expect("lead").index();
        let topology = Arc::new(topology.clone());
        let plan = Arc::new(
            Plan::build(topology, models, HashMap::new(), HashMap::new(), None, None)
                .expect("plan"),
        );
        let own = AgentShared::new(Arc::clone(&plan), lead, Supervisor::Agent(host.clone(), 0));
        own.set_myself(host.clone());
        Children::new(own)
    }

    /// Children are stopped last started first, by `stop_all` and by a strategy restarting
    /// the siblings of a crashed child (which itself keeps running).
    #[tokio::test]
    async fn children_stop_last_started_first() {
        let topology = with_model()
            .agent(
                "lead",
                AgentSpec::new(["m"]).children(["a", "b", "c"]).supervision(
                    baton_topologies::SupervisionSpec {
                        strategy: Some(baton_topologies::Strategy::OneForAll),
                        ..baton_topologies::SupervisionSpec::default()
                    },
                ),
            )
            .agent("a", AgentSpec::new(["m"]))
            .agent("b", AgentSpec::new(["m"]))
            .agent("c", AgentSpec::new(["m"]))
            .build()
            .expect("valid");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (host, _) = Actor::spawn(None, Watcher, tx).await.expect("host");
        let cell = host.get_cell();
        let mut kids = lead_children(&topology, &host);
        let slots: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|n| kids.position(n).expect("a child"))
            .collect();
        let mut started = Vec::new();
        for &i in &slots {
            kids.get(i, &cell).await.expect("starts");
            started.push(kids.slots[i].actor.as_ref().expect("running").get_id());
        }
        let (a, b, c) = (started[0], started[1], started[2]);
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a termination")
                .expect("open")
        };

        // `b` crashed: one_for_all stops `c`, then `a`; `b` runs on.
        kids.crashed(slots[1], "crashed", &cell)
            .await
            .expect("within intensity");
        assert_eq!([next().await, next().await], [c, a]);
        let b_now = kids.slots[slots[1]]
            .actor
            .as_ref()
            .expect("b runs")
            .get_id();
        assert_eq!(b_now, b, "the crashed child keeps its actor");

        // stop_all: c, b, a (the restarted ones have new actors).
        let now: Vec<_> = slots
            .iter()
            .map(|&i| kids.slots[i].actor.as_ref().expect("running").get_id())
            .collect();
        kids.stop_all(Outcome::Cancelled, "test over").await;
        assert_eq!(
            [next().await, next().await, next().await],
            [now[2], now[1], now[0]]
        );
        host.stop(None);
    }

    impl Children {
        fn position(&self, name: &str) -> Option<usize> {
            self.slots.iter().position(|s| &*s.name == name)
        }
    }

    /// Restart types on a normal exit and on a crash, as OTP defines them.
    #[tokio::test]
    async fn restart_types_on_normal_exit_and_crash() {
        let topology = with_model()
            .agent("lead", AgentSpec::new(["m"]).children(["p", "tr", "tmp"]))
            .agent("p", AgentSpec::new(["m"]).restart(RestartType::Permanent))
            .agent("tr", AgentSpec::new(["m"]).restart(RestartType::Transient))
            .agent("tmp", AgentSpec::new(["m"]).restart(RestartType::Temporary))
            .build()
            .expect("valid");
        let (host, _) = Actor::spawn(None, Host, ()).await.expect("host");
        let cell = host.get_cell();
        let mut kids = lead_children(&topology, &host);
        let (p, tr, tmp) = (
            kids.position("p").expect("p"),
            kids.position("tr").expect("tr"),
            kids.position("tmp").expect("tmp"),
        );

        // Normal exit: only permanent children come back.
        assert!(
            kids.exited(p, false, "stopped", &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            !kids
                .exited(tr, false, "stopped", &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.get(tr, &cell).await.is_ok(),
            "a transient child that stopped normally starts on its next task"
        );
        assert!(
            !kids
                .exited(tmp, false, "stopped", &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.get(tmp, &cell).await.is_err(),
            "a temporary child never comes back"
        );

        // Crash: permanent and transient children come back.
        assert!(
            kids.exited(p, true, "crashed", &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.exited(tr, true, "crashed", &cell)
                .await
                .expect("within intensity")
        );
        // Three restarts so far (p twice, tr once); the default intensity is 3 within 5s, so the
        // fourth gives up.
        let err = kids
            .exited(p, true, "crashed", &cell)
            .await
            .expect_err("fourth exceeds");
        let Abort::GaveUp {
            max_restarts,
            ref within,
            ref last,
            ..
        } = err
        else {
            panic!("a give-up, not {err:?}");
        };
        assert_eq!((max_restarts, within.as_str()), (3, "5s"));
        assert_eq!(&**last, "p", "the child whose crash was one too many");
        assert!(
            err.to_string().contains("more than 3 restarts within 5s"),
            "{err}"
        );
        kids.stop_all(Outcome::Cancelled, "test over").await;
        host.stop(None);
    }
}
