//! The public handle on a running topology.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::{Account, Budget, Envelope, Model, Outcome, Tool};
use baton_topologies::Topology;
use ractor::{Actor, ActorRef, MessagingErr};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent::{AgentMsg, Assignment, TaskResult};
use crate::conductor::{Conductor, ConductorMsg};
use crate::error::RuntimeError;
use crate::observer::Observer;
use crate::plan::Plan;
use crate::report::RunReport;

/// Configures a [`Runtime`]: the topology, plus models, tools and an observer supplied in code.
pub struct RuntimeBuilder {
    topology: Topology,
    models: HashMap<String, Arc<dyn Model>>,
    tools: HashMap<String, Arc<dyn Tool>>,
    observers: Vec<Box<dyn Observer>>,
    approver: Option<Arc<dyn crate::approval::Approver>>,
}

impl RuntimeBuilder {
    /// Who approves destructive tool calls when the policy asks for approval. Without one, such
    /// calls are denied at once (an unattended run never waits).
    pub fn approver(mut self, approver: impl crate::approval::Approver) -> RuntimeBuilder {
        self.approver = Some(Arc::new(approver));
        self
    }

    /// Registers the implementation of a model the topology declares with `provider: custom`.
    pub fn model(mut self, name: impl Into<String>, model: impl Model) -> RuntimeBuilder {
        self.models.insert(name.into(), Arc::new(model));
        self
    }

    /// Registers the implementation of a tool the topology declares with `kind: custom`.
    pub fn tool(mut self, tool: impl Tool) -> RuntimeBuilder {
        self.tools.insert(tool.name().to_string(), Arc::new(tool));
        self
    }

    /// Receives every step, tool call, delegation and outcome as it happens. Several observers
    /// may be added; each sees every event, in the order they were added.
    pub fn observer(mut self, observer: impl Observer) -> RuntimeBuilder {
        self.observers.push(Box::new(observer));
        self
    }

    /// Builds the models and tools and starts the conductor (the root agent starts with it; the
    /// others on their first task).
    ///
    /// # Errors
    /// [`RuntimeError`] when a model's rules cannot be loaded, a custom model or tool is missing, or
    /// the conductor cannot start.
    pub async fn start(self) -> Result<Runtime, RuntimeError> {
        let observer: Option<Arc<dyn Observer>> = match self.observers.len() {
            0 => None,
            _ => Some(Arc::new(crate::audit::Many(self.observers))),
        };
        let mcp = crate::plan::connect_mcp(&self.topology).await?;
        let plan = Arc::new(Plan::build(
            &self.topology,
            self.models,
            self.tools,
            mcp,
            observer,
            self.approver,
        )?);
        let (conductor, handle) = Actor::spawn(None, Conductor, Arc::clone(&plan))
            .await
            .map_err(|e| RuntimeError::Spawn {
                what: "conductor".into(),
                message: e.to_string(),
            })?;
        Ok(Runtime {
            workflow_cost: metrics::histogram!("baton_workflow_cost_usd", "topology" => self.topology.name().to_string()),
            user: Arc::from("user"),
            conductor,
            handle,
            plan,
            topology: self.topology,
        })
    }
}

/// A running topology: submit tasks, read reports, shut down.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use baton_actors::Runtime;
/// use baton_topologies::Topology;
///
/// let topology = Topology::from_path("examples/topologies/ops-triage.yaml")?;
/// let runtime = Runtime::builder(topology).start().await?;
/// let report = runtime.run("p99 latency of checkout doubled at 14:05").await?;
/// println!("{:?}: {}", report.outcome, report.answer.unwrap_or_default());
/// runtime.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Runtime {
    workflow_cost: metrics::Histogram,
    /// The sender of root tasks, allocated once.
    user: Arc<str>,
    conductor: ActorRef<ConductorMsg>,
    plan: Arc<Plan>,
    handle: JoinHandle<()>,
    topology: Topology,
}

/// Takes a root task off the table of tasks in flight when its caller is done with it.
struct Unlist<'a>(&'a Plan, baton_core::TaskId);

impl Drop for Unlist<'_> {
    fn drop(&mut self) {
        self.0.tasks.remove(&self.1);
    }
}

/// Cancels a root task whose caller stopped waiting, so that it still ends with an outcome.
struct CancelOnDrop(Option<Account>);

impl CancelOnDrop {
    fn disarm(mut self) -> Option<Account> {
        self.0.take()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.end(Outcome::Cancelled, "its caller stopped waiting");
            a.cancel();
        }
    }
}

/// The raw result of a task: its result and its account tree (for callers that want more than the
/// report, such as conservation checks).
pub struct TaskRun {
    /// The root task's outcome and answer or reason.
    pub result: TaskResult,
    /// The run's root account (its subtree holds every delegation).
    pub account: Account,
}

impl Runtime {
    /// Starts configuring a runtime for `topology`.
    pub fn builder(topology: Topology) -> RuntimeBuilder {
        RuntimeBuilder {
            topology,
            models: HashMap::new(),
            tools: HashMap::new(),
            observers: Vec::new(),
            approver: None,
        }
    }

    /// The topology this runtime runs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Runs one task under the root agent's budget and returns its report.
    ///
    /// # Errors
    /// [`RuntimeError::ConductorDown`] when the runtime has stopped. A task that fails is not an
    /// error: it is a report with a non-`completed` outcome.
    pub async fn run(&self, task: impl Into<String>) -> Result<RunReport, RuntimeError> {
        self.run_with_budget(task, Budget::UNLIMITED).await
    }

    /// Runs one task under `budget` (tightened by the root agent's own) and returns its report.
    ///
    /// # Errors
    /// As [`Runtime::run`].
    pub async fn run_with_budget(
        &self,
        task: impl Into<String>,
        budget: Budget,
    ) -> Result<RunReport, RuntimeError> {
        let run = self.submit(task, budget).await?;
        let snapshot = run.account.snapshot();
        let (answer, error) = match run.result.outcome {
            Outcome::Completed => (Some(run.result.text), None),
            _ => (None, Some(run.result.text)),
        };
        Ok(RunReport::from_ledger(
            &snapshot,
            run.result.outcome,
            answer,
            error,
        ))
    }

    /// Root tasks submitted and not yet ended: running, or waiting for a running slot.
    pub fn in_flight(&self) -> usize {
        self.plan.tasks.len()
    }

    /// Root tasks an agent holds right now, with their ids.
    pub fn tasks_in_flight(&self) -> Vec<u64> {
        self.plan.tasks.iter().map(|e| e.key().0).collect()
    }

    /// Cancels a root task (by id) and its whole subtree; it ends `cancelled`. Returns whether the
    /// task was in flight.
    pub fn cancel(&self, task: u64) -> bool {
        match self.plan.tasks.get(&baton_core::TaskId(task)) {
            Some(e) => {
                e.value().cancel();
                true
            }
            None => false,
        }
    }

    /// Runs one task and returns its raw result and account.
    ///
    /// Dropping the returned future cancels the task: it ends `cancelled`.
    ///
    /// # Errors
    /// As [`Runtime::run`].
    pub async fn submit(
        &self,
        task: impl Into<String>,
        budget: Budget,
    ) -> Result<TaskRun, RuntimeError> {
        let (envelope, account) = self.prepare(task.into(), budget, None);
        self.submit_prepared(envelope, account).await
    }

    /// Runs one task whose account is opened under `parent` (say, a batch's account): the
    /// parent's limits apply too, and its spend includes the task's.
    ///
    /// Dropping the returned future cancels the task: it ends `cancelled`.
    ///
    /// # Errors
    /// As [`Runtime::run`].
    pub async fn submit_under(
        &self,
        task: impl Into<String>,
        budget: Budget,
        parent: &Account,
    ) -> Result<TaskRun, RuntimeError> {
        let (envelope, account) = self.prepare(task.into(), budget, Some(parent));
        self.submit_prepared(envelope, account).await
    }

    /// Passes an event to the runtime's observers (the audit trail among them).
    pub(crate) fn observe(&self, event: &crate::observer::Event<'_>) {
        self.plan.observe(event);
    }

    /// The root envelope and account of a task; the account opened under `parent` when given
    /// (a standing loop's period account), so that the parent's limits apply too.
    pub(crate) fn prepare(
        &self,
        task: String,
        budget: Budget,
        parent: Option<&Account>,
    ) -> (Envelope<String>, Account) {
        let root = &self.plan.agents[self.plan.root];
        let envelope = Envelope::root(Arc::clone(&self.user), budget.tightest(&root.budget), task);
        let account = match parent {
            Some(p) => p.open_child(
                envelope.task.0,
                Arc::clone(&root.name),
                envelope.budget.max_cost,
                envelope.budget.max_tokens,
            ),
            None => Account::root(
                envelope.task.0,
                Arc::clone(&root.name),
                envelope.budget.max_cost,
                envelope.budget.max_tokens,
            ),
        };
        (envelope, account)
    }

    /// Why the runtime takes no more tasks, when it is down: its conductor gave up on the root
    /// agent (every later submission is refused with this reason).
    pub fn down(&self) -> Option<&str> {
        self.plan.gave_up.get().map(String::as_str)
    }

    /// Completes when the runtime goes down (see [`Runtime::down`]).
    pub async fn gone_down(&self) {
        self.plan.down.cancelled().await;
    }

    /// Runs a prepared task to its result.
    pub(crate) async fn submit_prepared(
        &self,
        envelope: Envelope<String>,
        account: Account,
    ) -> Result<TaskRun, RuntimeError> {
        if let Some(why) = self.plan.gave_up.get() {
            account.end(Outcome::Failed, why.clone());
            return Err(RuntimeError::ConductorDown(why.clone()));
        }
        let root = &self.plan.agents[self.plan.root];
        let id = envelope.task;
        self.plan.tasks.insert(id, account.clone());
        let _listed = Unlist(&self.plan, id);
        let guard = CancelOnDrop(Some(account.clone()));
        loop {
            let (tx, rx) = oneshot::channel();
            let assignment = Box::new(Assignment {
                envelope: envelope.clone(),
                account: account.clone(),
            });
            let msg = AgentMsg::Run(assignment, tx);
            // Straight to the root agent; through the conductor only when it is not running.
            let undelivered = match self.plan.root_agent() {
                Some(agent) => match agent.send_message(msg) {
                    Ok(()) => None,
                    Err(MessagingErr::SendErr(msg)) => Some(msg),
                    Err(e) => return Err(RuntimeError::ConductorDown(e.to_string())),
                },
                None => Some(msg),
            };
            if let Some(msg) = undelivered
                && self
                    .conductor
                    .send_message(ConductorMsg::Deliver(msg))
                    .is_err()
            {
                let why = self
                    .plan
                    .gave_up
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "it has stopped".into());
                drop(guard.disarm());
                account.end(Outcome::Failed, why.clone());
                return Err(RuntimeError::ConductorDown(why));
            }
            match rx.await {
                Ok(result) => {
                    drop(guard.disarm());
                    if result.outcome == Outcome::Completed {
                        self.workflow_cost.record(account.spent().as_usd_f64());
                    }
                    return Ok(TaskRun { result, account });
                }
                // The root agent stopped with the task still waiting: deliver it again (the
                // conductor starts its successor); this is neither a retry nor a restart.
                Err(_)
                    if !account.was_started()
                        && !account.is_cancelled()
                        && self.plan.gave_up.get().is_none() =>
                {
                    tokio::task::yield_now().await;
                }
                Err(_) => {
                    drop(guard.disarm());
                    let why = account
                        .end_reason()
                        .map(str::to_string)
                        .or_else(|| self.plan.gave_up.get().cloned())
                        .or_else(|| account.crash_reason())
                        .unwrap_or_else(|| "the root agent stopped while it held the task".into());
                    if account.end(Outcome::Failed, why.clone()) {
                        root.tasks.count(Outcome::Failed);
                    }
                    return Ok(TaskRun {
                        result: TaskResult {
                            outcome: account.outcome().unwrap_or(Outcome::Failed),
                            text: why,
                        },
                        account,
                    });
                }
            }
        }
    }

    /// Stops the conductor and every agent, and waits for them.
    pub async fn shutdown(self) {
        self.conductor.stop(None);
        let _ = self.handle.await;
    }
}
