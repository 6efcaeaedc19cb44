//! Supervision of an agent's children, with OTP's semantics: strategies (`one_for_one`,
//! `one_for_all`, `rest_for_one`), restart types (`permanent`, `transient`, `temporary`) and restart
//! intensity (more than `max_restarts` within `within` and the supervisor gives up: it stops its
//! children and fails, escalating to its own supervisor).
//!
//! Children are kept in declaration order, which is their start order. A lazy child that never ran
//! is "not started": strategies restart only children that were running.

use std::collections::VecDeque;
use std::sync::Arc;

use baton_topologies::{RestartType, Strategy, Supervision};
use ractor::{Actor, ActorCell, ActorRef};
use tokio::time::Instant;

use crate::agent::{AgentActor, AgentArgs, AgentMsg};
use crate::observer::Event;
use crate::plan::Plan;

struct Slot {
    name: Arc<str>,
    plan: usize,
    actor: Option<ActorRef<AgentMsg>>,
    /// A temporary child that stopped: it is never started again.
    gone: bool,
}

/// The agent must stop its children and fail (crash), for this reason: its restart intensity was
/// exceeded, or a model or tool panicked in its hands.
#[derive(Debug)]
pub(crate) struct Abort(pub(crate) String);

pub(crate) struct Children {
    supervisor: Arc<str>,
    escalations: metrics::Counter,
    sup: Supervision,
    slots: Vec<Slot>,
    restarts: VecDeque<Instant>,
}

impl Children {
    pub(crate) fn new(plan: &Plan, me: usize) -> Children {
        let a = &plan.agents[me];
        Children {
            supervisor: Arc::clone(&a.name),
            escalations: a.escalations.clone(),
            sup: a.supervision.clone(),
            slots: a
                .children
                .iter()
                .map(|(name, idx)| Slot {
                    name: Arc::clone(name),
                    plan: *idx,
                    actor: None,
                    gone: false,
                })
                .collect(),
            restarts: VecDeque::new(),
        }
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| &*s.name == name)
    }

    pub(crate) fn position_of_plan(&self, plan: usize) -> Option<usize> {
        self.slots.iter().position(|s| s.plan == plan)
    }

    pub(crate) fn name(&self, i: usize) -> &Arc<str> {
        &self.slots[i].name
    }

    pub(crate) fn plan_index(&self, i: usize) -> usize {
        self.slots[i].plan
    }

    /// The slot holding the actor `id`, if it is one of ours.
    pub(crate) fn find(&self, cell: &ActorCell) -> Option<usize> {
        let id = cell.get_id();
        self.slots
            .iter()
            .position(|s| s.actor.as_ref().is_some_and(|a| a.get_id() == id))
    }

    async fn spawn(
        &mut self,
        i: usize,
        plan: &Arc<Plan>,
        myself: &ActorCell,
    ) -> Result<ActorRef<AgentMsg>, String> {
        let args = AgentArgs {
            plan: Arc::clone(plan),
            me: self.slots[i].plan,
        };
        let (actor, _) = Actor::spawn_linked(None, AgentActor, args, myself.clone())
            .await
            .map_err(|e| format!("could not start `{}`: {e}", self.slots[i].name))?;
        self.slots[i].actor = Some(actor.clone());
        Ok(actor)
    }

    /// Starts the children declared `activation: eager`, in order.
    pub(crate) async fn start_eager(
        &mut self,
        plan: &Arc<Plan>,
        myself: &ActorCell,
    ) -> Result<(), String> {
        for i in 0..self.slots.len() {
            if plan.agents[self.slots[i].plan].activation == baton_topologies::Activation::Eager {
                self.spawn(i, plan, myself).await?;
            }
        }
        Ok(())
    }

    /// The running child in slot `i`, started if it is not running.
    ///
    /// # Errors
    /// When it is a temporary child that already stopped, or it cannot be started.
    pub(crate) async fn get(
        &mut self,
        i: usize,
        plan: &Arc<Plan>,
        myself: &ActorCell,
    ) -> Result<ActorRef<AgentMsg>, String> {
        if self.slots[i].gone {
            return Err(format!(
                "`{}` has stopped and is temporary: it is not restarted",
                self.slots[i].name
            ));
        }
        match &self.slots[i].actor {
            Some(a) => Ok(a.clone()),
            None => self.spawn(i, plan, myself).await,
        }
    }

    /// Stops the child in slot `i` (a deliberate stop: no restart), killing it after the shutdown
    /// timeout.
    pub(crate) async fn stop(&mut self, i: usize) {
        if let Some(a) = self.slots[i].actor.take()
            && a.stop_and_wait(None, Some(self.sup.shutdown))
                .await
                .is_err()
        {
            a.kill();
        }
    }

    /// Stops every child, last started first.
    pub(crate) async fn stop_all(&mut self) {
        for i in (0..self.slots.len()).rev() {
            self.stop(i).await;
        }
    }

    /// Applies the strategy after the child in slot `i` exited (`crashed` tells a crash from a
    /// normal stop). Returns whether slot `i` runs again.
    ///
    /// # Errors
    /// [`Abort`] when the restart intensity is exceeded; the caller must stop all children and fail.
    pub(crate) async fn exited(
        &mut self,
        i: usize,
        crashed: bool,
        reason: &str,
        plan: &Arc<Plan>,
        myself: &ActorCell,
    ) -> Result<bool, Abort> {
        self.slots[i].actor = None;
        let kind = plan.agents[self.slots[i].plan].restart;
        let restart = match kind {
            RestartType::Permanent => true,
            RestartType::Transient => crashed,
            RestartType::Temporary => false,
        };
        if !restart {
            self.slots[i].gone = kind == RestartType::Temporary;
            return Ok(false);
        }
        let now = Instant::now();
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.sup.within)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() > self.sup.max_restarts as usize {
            let why = format!(
                "supervisor `{}` gave up: more than {} restarts within {} (last: `{}` {reason})",
                self.supervisor,
                self.sup.max_restarts,
                baton_core::format_duration(self.sup.within),
                self.slots[i].name
            );
            plan.observe(&Event::GaveUp {
                supervisor: &self.supervisor,
                reason: &why,
            });
            self.escalations.increment(1);
            return Err(Abort(why));
        }
        // Which slots restart, in start order.
        let others: Vec<usize> = match self.sup.strategy {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => (0..self.slots.len())
                .filter(|&j| j != i && self.slots[j].actor.is_some())
                .collect(),
            Strategy::RestForOne => (i + 1..self.slots.len())
                .filter(|&j| self.slots[j].actor.is_some())
                .collect(),
        };
        for &j in others.iter().rev() {
            self.stop(j).await;
        }
        let mut order = others;
        order.push(i);
        order.sort_unstable();
        for j in order {
            if j != i && plan.agents[self.slots[j].plan].restart == RestartType::Temporary {
                self.slots[j].gone = true;
                continue;
            }
            let why = if j == i {
                reason.to_string()
            } else {
                format!(
                    "{:?}: sibling `{}` {reason}",
                    self.sup.strategy, self.slots[i].name
                )
            };
            if self.spawn(j, plan, myself).await.is_err() {
                continue;
            }
            let agent = &plan.agents[self.slots[j].plan];
            agent.restarts.increment(1);
            plan.observe(&Event::Restarted {
                agent: &agent.name,
                supervisor: &self.supervisor,
                reason: &why,
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use baton_core::{Model, NanoUsd, ScriptedModel};
    use baton_topologies::{AgentSpec, ModelSpec, TopologyBuilder};
    use ractor::ActorProcessingErr;

    use super::*;

    struct Host;

    impl Actor for Host {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// Restart types on a normal exit and on a crash, as OTP defines them.
    #[tokio::test]
    async fn restart_types_on_normal_exit_and_crash() {
        let topology = TopologyBuilder::new("t")
            .model("m", ModelSpec::custom(NanoUsd(1), NanoUsd(1)))
            .agent("lead", AgentSpec::new(["m"]).children(["p", "tr", "tmp"]))
            .agent("p", AgentSpec::new(["m"]).restart(RestartType::Permanent))
            .agent("tr", AgentSpec::new(["m"]).restart(RestartType::Transient))
            .agent("tmp", AgentSpec::new(["m"]).restart(RestartType::Temporary))
            .build()
            .expect("valid");
        let mut models: HashMap<String, Arc<dyn Model>> = HashMap::new();
        models.insert("m".into(), Arc::new(ScriptedModel::always("m", "ok")));
        let plan = Arc::new(
            Plan::build(
                &topology,
                models,
                HashMap::new(),
                HashMap::new(),
                None,
                None,
            )
            .expect("plan"),
        );
        let lead = plan
            .agents
            .iter()
            .position(|a| &*a.name == "lead")
            .expect("lead");
        let (host, _) = Actor::spawn(None, Host, ()).await.expect("host");
        let cell = host.get_cell();
        let mut kids = Children::new(&plan, lead);
        let (p, tr, tmp) = (
            kids.position("p").expect("p"),
            kids.position("tr").expect("tr"),
            kids.position("tmp").expect("tmp"),
        );

        // Normal exit: only permanent children come back.
        assert!(
            kids.exited(p, false, "stopped", &plan, &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            !kids
                .exited(tr, false, "stopped", &plan, &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.get(tr, &plan, &cell).await.is_ok(),
            "a transient child that stopped normally starts on its next task"
        );
        assert!(
            !kids
                .exited(tmp, false, "stopped", &plan, &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.get(tmp, &plan, &cell).await.is_err(),
            "a temporary child never comes back"
        );

        // Crash: permanent and transient children come back.
        assert!(
            kids.exited(p, true, "crashed", &plan, &cell)
                .await
                .expect("within intensity")
        );
        assert!(
            kids.exited(tr, true, "crashed", &plan, &cell)
                .await
                .expect("within intensity")
        );
        // Three restarts so far (p twice, tr once); the default intensity is 3 within 5s, so the
        // fourth gives up.
        let err = kids
            .exited(p, true, "crashed", &plan, &cell)
            .await
            .expect_err("fourth exceeds");
        assert!(
            err.0.contains("more than 3 restarts within 5s"),
            "{}",
            err.0
        );
        kids.stop_all().await;
        host.stop(None);
    }
}
