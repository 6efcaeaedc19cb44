//! The conductor: the root supervisor of one topology.
//!
//! Like an OTP supervisor it is not on the message path: callers hand tasks straight to the root
//! agent (whose address the conductor publishes), and the conductor steps in only to start the root
//! agent when it is not running, to judge a crash of one of the root agent's tasks, and to restart
//! the root agent when its actor fails — at most `max_restarts` times within `within` (the
//! topology's top-level `supervision:`), after which it gives up and the runtime stops taking
//! tasks, naming why.

use std::sync::Arc;

use baton_core::Outcome;
use baton_topologies::RestartType;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};
use tokio::sync::oneshot;

use crate::agent::{AgentActor, AgentArgs, AgentMsg, AgentShared, Supervisor, Verdict};
use crate::observer::Event;
use crate::plan::Plan;
use crate::supervisor::{Intensity, exit_of, restarts};

pub(crate) enum ConductorMsg {
    /// Start the root agent if needed and deliver this task to it.
    Deliver(AgentMsg),
    /// A task of the root agent crashed: decide.
    RootCrashed {
        reason: String,
        reply: oneshot::Sender<Verdict>,
    },
}

pub(crate) struct Conductor;

pub(crate) struct ConductorState {
    plan: Arc<Plan>,
    root: Option<(ActorRef<AgentMsg>, Arc<AgentShared>)>,
    restarts: Intensity,
}

impl ConductorState {
    async fn root_agent(
        &mut self,
        myself: &ActorRef<ConductorMsg>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        if let Some((r, _)) = &self.root {
            // A root agent still starting is alive: only a stopping or stopped one is dead.
            if !matches!(r.get_status(), ActorStatus::Stopping | ActorStatus::Stopped) {
                return Ok(r.clone());
            }
            // It died and its supervision event has not reached us yet.
            let id = r.get_id();
            self.root_died(id, "stopped")?;
        }
        self.spawn_root(myself).await
    }

    async fn spawn_root(
        &mut self,
        myself: &ActorRef<ConductorMsg>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        let shared = AgentShared::new(
            Arc::clone(&self.plan),
            self.plan.root,
            Supervisor::Conductor(myself.clone()),
        );
        let args = AgentArgs {
            shared: Arc::clone(&shared),
        };
        let (r, _) = Actor::spawn_linked(None, AgentActor, args, myself.get_cell()).await?;
        self.root = Some((r.clone(), Arc::clone(&shared)));
        self.plan.publish_root(Some(crate::agent::Running {
            actor: r.clone(),
            shared,
        }));
        Ok(r)
    }

    /// Counts a restart of the root agent against the conductor's intensity; gives up past it.
    fn count(&mut self, reason: &str) -> Result<(), String> {
        let sup = &self.plan.supervision;
        let root = &self.plan.agents[self.plan.root];
        if !crate::supervisor::admit(&mut self.restarts, sup) {
            return Err(format!(
                "the conductor gave up: the root agent `{}` crashed more than {} times within {} (last: {reason})",
                root.name,
                sup.max_restarts,
                baton_core::format_duration(sup.within)
            ));
        }
        Ok(())
    }

    /// Stops taking tasks: records why, ends the root agent's tasks `failed` and stops it.
    async fn give_up(&mut self, why: &str) {
        let _ = self.plan.live.gave_up.set(why.to_string());
        self.plan.live.down.cancel();
        conductor_escalations().increment(1);
        self.plan.observe(&Event::GaveUp {
            supervisor: "conductor",
            reason: why,
        });
        self.stop_root(Outcome::Failed, why).await;
    }

    async fn stop_root(&mut self, outcome: Outcome, why: &str) {
        self.plan.publish_root(None);
        if let Some((r, shared)) = self.root.take() {
            shared.halt(outcome, why);
            let shutdown = self.plan.supervision.shutdown;
            if r.stop_and_wait(None, Some(shutdown)).await.is_err() {
                r.kill();
            }
        }
    }

    fn restarted(&self, reason: &str) {
        let root = &self.plan.agents[self.plan.root];
        root.restarts.increment(1);
        self.plan.observe(&Event::Restarted {
            agent: &root.name,
            supervisor: "conductor",
            reason,
        });
    }

    /// Handles the death of actor `id` once: forgets it if it was the root agent and counts the
    /// restart against the intensity.
    fn root_died(&mut self, id: ActorId, reason: &str) -> Result<(), ActorProcessingErr> {
        if self.root.as_ref().is_none_or(|(r, _)| r.get_id() != id) {
            return Ok(());
        }
        if let Some((_, shared)) = self.root.take() {
            shared.halt(Outcome::Failed, reason);
        }
        self.plan.publish_root(None);
        self.count(reason)?;
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
        // Born at zero: a panel shows 0 give-ups rather than "No data", and the first is a rise.
        conductor_escalations().increment(0);
        let mut state = ConductorState {
            plan,
            root: None,
            restarts: Intensity::default(),
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
                let agent = match state.root_agent(&myself).await {
                    Ok(a) => a,
                    Err(e) => {
                        let why = e.to_string();
                        state.give_up(&why).await;
                        return Err(why.into());
                    }
                };
                // If the agent died in between, the task (and its caller's reply) is dropped: the
                // caller delivers it again or records the outcome.
                drop(agent.send_message(task));
            }
            ConductorMsg::RootCrashed { reason, reply } => {
                let root = &state.plan.agents[state.plan.root];
                let verdict = if root.restart == RestartType::Temporary {
                    Err(format!(
                        "the conductor gave up: the root agent `{}` is temporary and crashed ({reason}); it is not restarted",
                        root.name
                    ))
                } else {
                    state.count(&reason)
                };
                match verdict {
                    Ok(()) => {
                        state.restarted(&reason);
                        drop(reply.send(Verdict::Restarted));
                    }
                    Err(why) => {
                        drop(reply.send(Verdict::GaveUp(why.clone())));
                        state.give_up(&why).await;
                        return Err(why.into());
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConductorMsg>,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .stop_root(Outcome::Cancelled, "the runtime shut down")
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ConductorMsg>,
        event: SupervisionEvent,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, crashed, reason)) = exit_of(&event) else {
            return Ok(());
        };
        let was_root = state
            .root
            .as_ref()
            .is_some_and(|(r, _)| r.get_id() == cell.get_id());
        if !was_root {
            return Ok(());
        }
        let kind = state.plan.agents[state.plan.root].restart;
        let restart = restarts(kind, crashed);
        if let Err(e) = state.root_died(cell.get_id(), &reason) {
            let why = e.to_string();
            state.give_up(&why).await;
            return Err(why.into());
        }
        if !restart {
            if kind == RestartType::Temporary && crashed {
                let why = format!(
                    "the conductor gave up: the root agent is temporary and stopped ({reason}); it is not restarted"
                );
                state.give_up(&why).await;
                return Err(why.into());
            }
            return Ok(());
        }
        // Restart now, so the next task finds it running.
        state.spawn_root(&myself).await?;
        state.restarted(&reason);
        Ok(())
    }
}

/// The conductor's escalations counter (it gave up on the root agent).
fn conductor_escalations() -> metrics::Counter {
    metrics::counter!("baton_escalations_total", "supervisor" => "conductor")
}
