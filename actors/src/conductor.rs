//! The conductor: the root supervisor of one topology.
//!
//! Like an OTP supervisor it is not on the message path: callers hand tasks straight to the root
//! agent (whose address the conductor publishes), and the conductor steps in only to start the
//! root agent when it is not running, and to clean up when it dies. The task table records every
//! root task an agent holds; when the root agent dies, each task it held is recorded `failed`
//! (its caller also learns it from the dropped reply port; the first to record wins), and the
//! agent is started again for the next task.

use std::sync::Arc;

use baton_core::Outcome;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::agent::{AgentActor, AgentArgs, AgentMsg};
use crate::plan::Plan;

pub(crate) enum ConductorMsg {
    /// Start the root agent if needed and deliver this task to it.
    Deliver(AgentMsg),
}

pub(crate) struct Conductor;

pub(crate) struct ConductorState {
    plan: Arc<Plan>,
    root: Option<ActorRef<AgentMsg>>,
}

impl ConductorState {
    async fn root_agent(
        &mut self,
        myself: &ActorRef<ConductorMsg>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        if let Some(r) = &self.root {
            return Ok(r.clone());
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
        let mut state = ConductorState { plan, root: None };
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
                // the caller records `failed`.
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
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ConductorMsg>,
        event: SupervisionEvent,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        let (SupervisionEvent::ActorFailed(cell, _)
        | SupervisionEvent::ActorTerminated(cell, _, _)) = &event
        else {
            return Ok(());
        };
        let dead = cell.get_id();
        if state.root.as_ref().is_some_and(|r| r.get_id() == dead) {
            metrics::counter!("baton_restarts_total", "agent" => state.plan.agents[state.plan.root].name.to_string()).increment(1);
            state.root = None;
            state.plan.publish_root(None);
        }
        // Every task the dead agent held ends failed, exactly once.
        let root = &state.plan.agents[state.plan.root];
        state.plan.tasks.retain(|_, (account, holder)| {
            if *holder != dead {
                return true;
            }
            if account.finish(Outcome::Failed) {
                root.tasks.count(Outcome::Failed);
            }
            false
        });
        Ok(())
    }
}
