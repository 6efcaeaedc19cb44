//! The conductor: the root supervisor of one topology.
//!
//! Like an OTP supervisor it is not on the message path: callers hand tasks straight to the root
//! agent (whose address the conductor publishes), and the conductor steps in only to start the root
//! agent when it is not running, and to restart it when it dies — at most `max_restarts` times
//! within `within` (the topology's top-level `supervision:`), after which it gives up and the
//! runtime stops taking tasks. The task table records every root task an agent holds; when the root
//! agent dies, its entries are dropped (their callers record `failed`, or retry once per the root
//! agent's `on_crash`).

use std::collections::VecDeque;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};
use tokio::time::Instant;

use crate::agent::{AgentActor, AgentArgs, AgentMsg};
use crate::observer::Event;
use crate::plan::Plan;

pub(crate) enum ConductorMsg {
    /// Start the root agent if needed and deliver this task to it.
    Deliver(AgentMsg),
}

pub(crate) struct Conductor;

pub(crate) struct ConductorState {
    plan: Arc<Plan>,
    root: Option<ActorRef<AgentMsg>>,
    restarts: VecDeque<Instant>,
}

impl ConductorState {
    async fn root_agent(
        &mut self,
        myself: &ActorRef<ConductorMsg>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        if let Some(r) = &self.root {
            if r.get_status() == ActorStatus::Running {
                return Ok(r.clone());
            }
            // It died and its supervision event has not reached us yet.
            let id = r.get_id();
            self.root_died(id, "stopped")?;
        }
        let args = AgentArgs {
            plan: Arc::clone(&self.plan),
            me: self.plan.root,
        };
        let (r, _) = Actor::spawn_linked(None, AgentActor, args, myself.get_cell()).await?;
        self.root = Some(r.clone());
        self.plan.publish_root(Some(r.clone()));
        Ok(r)
    }

    /// Handles the death of actor `id` once: forgets it if it was the root agent, counts the
    /// restart against the intensity, and drops its task table entries.
    fn root_died(&mut self, id: ActorId, reason: &str) -> Result<(), ActorProcessingErr> {
        self.plan.tasks.retain(|_, (_, holder)| *holder != id);
        if self.root.as_ref().is_none_or(|r| r.get_id() != id) {
            return Ok(());
        }
        self.root = None;
        self.plan.publish_root(None);
        let sup = &self.plan.supervision;
        let now = Instant::now();
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > sup.within)
        {
            self.restarts.pop_front();
        }
        let root = &self.plan.agents[self.plan.root];
        if self.restarts.len() > sup.max_restarts as usize {
            let why = format!(
                "the conductor gave up: the root agent `{}` stopped more than {} times within {} (last: {reason})",
                root.name,
                sup.max_restarts,
                baton_core::format_duration(sup.within)
            );
            let _ = self.plan.gave_up.set(why.clone());
            metrics::counter!("baton_escalations_total", "supervisor" => "conductor").increment(1);
            self.plan.observe(&Event::GaveUp {
                supervisor: "conductor",
                reason: &why,
            });
            return Err(why.into());
        }
        root.restarts.increment(1);
        self.plan.observe(&Event::Restarted {
            agent: &root.name,
            supervisor: "conductor",
            reason,
        });
        Ok(())
    }
}

impl Actor for Conductor {
    type Msg = ConductorMsg;
    type State = ConductorState;
    type Arguments = Arc<Plan>;

    async fn pre_start(
        &self,
        myself: ActorRef<ConductorMsg>,
        plan: Arc<Plan>,
    ) -> Result<ConductorState, ActorProcessingErr> {
        let mut state = ConductorState {
            plan,
            root: None,
            restarts: VecDeque::new(),
        };
        state.root_agent(&myself).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ConductorMsg>,
        msg: ConductorMsg,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConductorMsg::Deliver(task) => {
                let agent = state.root_agent(&myself).await?;
                // If the agent died in between, the task (and its caller's reply port) is dropped:
                // the caller records the outcome.
                drop(agent.send_message(task));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConductorMsg>,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        state.plan.publish_root(None);
        if let Some(r) = state.root.take() {
            let shutdown = state.plan.agents[state.plan.root].supervision.shutdown;
            if r.stop_and_wait(None, Some(shutdown)).await.is_err() {
                r.kill();
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ConductorMsg>,
        event: SupervisionEvent,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, format!("crashed: {e}")),
            SupervisionEvent::ActorTerminated(cell, _, r) => (
                cell,
                format!("stopped: {}", r.as_deref().unwrap_or("normal exit")),
            ),
            _ => return Ok(()),
        };
        let was_root = state
            .root
            .as_ref()
            .is_some_and(|r| r.get_id() == cell.get_id());
        state.root_died(cell.get_id(), &reason)?;
        if was_root {
            // Restart now, so the next task finds it running (and a retry has somewhere to go).
            state.root_agent(&myself).await?;
        }
        Ok(())
    }
}
