//! The conductor: the root supervisor of one topology.
//!
//! It accepts tasks, opens each run's root account, hands the task to the root agent, and answers
//! the caller with exactly one result per task — also when the root agent crashes, in which case
//! every task it held ends `failed` and the agent is started again for the next task.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::{Account, Budget, Envelope, Outcome, TaskId, Usage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::agent::{AgentActor, AgentArgs, AgentMsg, Assignment, ReplyTo, TaskResult};
use crate::plan::Plan;

/// A run's result as the conductor hands it back: the root task's result and its account tree.
pub(crate) struct Finished {
    pub(crate) result: Envelope<TaskResult>,
    pub(crate) account: Account,
}

pub(crate) struct Submission {
    pub(crate) task: String,
    pub(crate) budget: Budget,
}

pub(crate) enum ConductorMsg {
    Submit(Box<Submission>, RpcReplyPort<Finished>),
    Done(Box<Envelope<TaskResult>>),
}

pub(crate) struct Conductor;

struct Pending {
    reply: RpcReplyPort<Finished>,
    account: Account,
    envelope: Envelope<()>,
}

pub(crate) struct ConductorState {
    plan: Arc<Plan>,
    root: Option<ActorRef<AgentMsg>>,
    pending: HashMap<TaskId, Pending>,
}

impl ConductorState {
    async fn root_agent(&mut self, myself: &ActorRef<ConductorMsg>) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        if let Some(r) = &self.root {
            return Ok(r.clone());
        }
        let args = AgentArgs {
            plan: Arc::clone(&self.plan),
            me: self.plan.root,
        };
        let (r, _) = Actor::spawn_linked(None, AgentActor, args, myself.get_cell()).await?;
        self.root = Some(r.clone());
        Ok(r)
    }

    fn fail_all(&mut self, why: &str) {
        for (_, p) in self.pending.drain() {
            p.account.finish(Outcome::Failed);
            metrics::counter!("baton_tasks_total", "agent" => p.account.agent().to_string(), "outcome" => Outcome::Failed.as_str())
                .increment(1);
            let result = p.envelope.reply(
                Arc::clone(p.account.agent()),
                Usage::default(),
                TaskResult {
                    outcome: Outcome::Failed,
                    text: why.to_string(),
                },
            );
            drop(p.reply.send(Finished {
                result,
                account: p.account,
            }));
        }
    }
}

impl Actor for Conductor {
    type Msg = ConductorMsg;
    type State = ConductorState;
    type Arguments = Arc<Plan>;

    async fn pre_start(&self, myself: ActorRef<ConductorMsg>, plan: Arc<Plan>) -> Result<ConductorState, ActorProcessingErr> {
        let mut state = ConductorState {
            plan,
            root: None,
            pending: HashMap::new(),
        };
        state.root_agent(&myself).await?;
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<ConductorMsg>, msg: ConductorMsg, state: &mut ConductorState) -> Result<(), ActorProcessingErr> {
        match msg {
            ConductorMsg::Submit(sub, reply) => {
                let root_plan = &state.plan.agents[state.plan.root];
                let budget = sub.budget.tightest(&root_plan.budget);
                let envelope = Envelope::root("user", budget, sub.task);
                let account = Account::root(envelope.task.0, Arc::clone(&root_plan.name), envelope.budget.max_cost, envelope.budget.max_tokens);
                let agent = state.root_agent(&myself).await?;
                let meta = envelope.reply(Arc::from("user"), Usage::default(), ());
                state.pending.insert(
                    envelope.task,
                    Pending {
                        reply,
                        account: account.clone(),
                        envelope: meta,
                    },
                );
                let assignment = Box::new(Assignment { envelope, account });
                if let Err(e) = agent.send_message(AgentMsg::Run(assignment, ReplyTo::Conductor(myself.clone()))) {
                    state.root = None;
                    state.fail_all(&format!("the root agent is not running: {e}"));
                }
            }
            ConductorMsg::Done(result) => {
                if let Some(p) = state.pending.remove(&result.task) {
                    p.account.finish(result.payload.outcome);
                    drop(p.reply.send(Finished {
                        result: *result,
                        account: p.account,
                    }));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ConductorMsg>,
        event: SupervisionEvent,
        state: &mut ConductorState,
    ) -> Result<(), ActorProcessingErr> {
        let why = match &event {
            SupervisionEvent::ActorFailed(_, e) => format!("the root agent crashed: {e}"),
            SupervisionEvent::ActorTerminated(_, _, reason) => {
                format!("the root agent stopped: {}", reason.as_deref().unwrap_or("no reason given"))
            }
            _ => return Ok(()),
        };
        if event
            .actor_cell()
            .is_some_and(|c| state.root.as_ref().is_some_and(|r| r.get_id() == c.get_id()))
        {
            metrics::counter!("baton_restarts_total", "agent" => state.plan.agents[state.plan.root].name.to_string()).increment(1);
            state.root = None;
            // Every task the root agent held ends failed; the next task starts it again.
            state.fail_all(&why);
        }
        Ok(())
    }
}
