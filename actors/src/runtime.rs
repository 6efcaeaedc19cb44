//! The public handle on a running topology.

use std::collections::HashMap;
use std::sync::Arc;

use baton_core::{Account, Budget, Envelope, Model, Outcome, TaskId, Tool};
use baton_topologies::Topology;
use ractor::{Actor, ActorRef};
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
    shared: Option<Arc<dyn baton_core::SharedBudget>>,
    claims: Option<Arc<dyn baton_core::TickClaims>>,
    loop_budgets: HashMap<String, Arc<dyn baton_core::SharedBudget>>,
}

impl RuntimeBuilder {
    /// A budget shared with other processes (replicas of this runtime): every model call also
    /// reserves its worst case on it, and commits what it cost. A call it cannot cover ends the
    /// task `budget_exceeded`, saying so.
    pub fn shared_budget(mut self, budget: Arc<dyn baton_core::SharedBudget>) -> RuntimeBuilder {
        self.shared = Some(budget);
        self
    }

    /// Standing loops shared with other processes (replicas of this runtime): each tick is
    /// claimed through `claims` and runs on the one replica that wins it. `every` ticks are then
    /// aligned to the clock (multiples of the period since the Unix epoch), so that every
    /// replica's ticks fall at the same times.
    pub fn tick_claims(mut self, claims: Arc<dyn baton_core::TickClaims>) -> RuntimeBuilder {
        self.claims = Some(claims);
        self
    }

    /// A standing loop's own per-period budget (`per_day_usd`, `per_hour_usd`) shared with other
    /// replicas: each of `schedule`'s runs reserves every model call on it too.
    pub fn loop_budget(
        mut self,
        schedule: impl Into<String>,
        budget: Arc<dyn baton_core::SharedBudget>,
    ) -> RuntimeBuilder {
        self.loop_budgets.insert(schedule.into(), budget);
        self
    }

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
            _ => Some(Arc::new(crate::observer::Many(self.observers))),
        };
        let mcp = crate::plan::connect_mcp(&self.topology).await?;
        let topology = Arc::new(self.topology);
        let mut plan = Plan::build(
            Arc::clone(&topology),
            self.models,
            self.tools,
            mcp,
            observer,
            self.approver,
        )?;
        plan.shared = self.shared;
        plan.claims = self.claims;
        plan.loop_budgets = self.loop_budgets;
        let plan = Arc::new(plan);
        let (conductor, handle) = Actor::spawn(None, Conductor, Arc::clone(&plan))
            .await
            .map_err(|e| RuntimeError::Spawn {
                what: "conductor".into(),
                message: e.to_string(),
            })?;
        Ok(Runtime(Arc::new(Inner {
            workflow_cost: metrics::histogram!("baton_workflow_cost_usd", "topology" => topology.name().to_string()),
            user: Arc::from("user"),
            conductor,
            handle: tokio::sync::Mutex::new(Some(handle)),
            plan,
            topology,
        })))
    }
}

/// A running topology: submit tasks, read reports, shut down.
///
/// A cheap handle: clones share the one runtime (its agents, ledger and observers), so that
/// many callers (request handlers, loops) can submit to it at once. Tasks run concurrently.
///
/// ```
/// use baton::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let price = Price::per_million_tokens(NanoUsd::parse_usd("0.50")?, NanoUsd::parse_usd("1.50")?);
/// let topology = TopologyBuilder::new("desk")
///     .model("house", ModelSpec::custom(price))
///     .agent("desk", AgentSpec::new(["house"]))
///     .build()?;
/// let runtime = Runtime::builder(topology)
///     .model("house", ScriptedModel::always("house", "All green."))
///     .start()
///     .await?;
/// // Many callers at once: each clone is the same runtime, each task runs on its own.
/// let handles: Vec<TaskHandle> = (0..3).map(|i| runtime.spawn(format!("check {i}"))).collect();
/// for handle in handles {
///     let report = handle.await?;
///     assert_eq!(report.answer.as_deref(), Some("All green."));
/// }
/// runtime.shutdown().await;
/// # Ok(()) }
/// ```
///
/// From a file: `Runtime::builder(Topology::from_path("ops-triage.yaml")?)`.
#[derive(Clone)]
pub struct Runtime(Arc<Inner>);

struct Inner {
    workflow_cost: metrics::Histogram,
    /// The sender of root tasks, allocated once.
    user: Arc<str>,
    conductor: ActorRef<ConductorMsg>,
    plan: Arc<Plan>,
    /// The conductor's task, taken by the first `shutdown`.
    handle: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Shared with the plan, which builds an agent's plan from it on first use.
    topology: Arc<Topology>,
}

/// Takes a root task off the table of tasks in flight when its caller is done with it.
struct Unlist<'a>(&'a Plan, baton_core::TaskId);

impl Drop for Unlist<'_> {
    fn drop(&mut self) {
        self.0.live.tasks.remove(&self.1);
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
            shared: None,
            claims: None,
            loop_budgets: HashMap::new(),
            approver: None,
        }
    }

    /// The topology this runtime runs.
    pub fn topology(&self) -> &Topology {
        &self.0.topology
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
        Ok(self.report(run))
    }

    /// Root tasks submitted and not yet ended: running, or waiting for a running slot.
    pub fn in_flight(&self) -> usize {
        self.0.plan.live.tasks.len()
    }

    /// Root tasks an agent holds right now, with their ids.
    pub fn tasks_in_flight(&self) -> Vec<TaskId> {
        self.0.plan.live.tasks.iter().map(|e| *e.key()).collect()
    }

    /// Cancels a root task (by id) and its whole subtree; it ends `cancelled`, its reservations
    /// released. Returns whether the task was in flight.
    ///
    /// ```
    /// use baton::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let topology = TopologyBuilder::new("t")
    /// #     .model("slow", ModelSpec::custom(Price::per_million_tokens(NanoUsd(1), NanoUsd(1))))
    /// #     .agent("a", AgentSpec::new(["slow"]))
    /// #     .build()?;
    /// // A model that takes an hour to answer.
    /// let slow = ScriptedModel::always("slow", "late").with_latency(std::time::Duration::from_secs(3600));
    /// let runtime = Runtime::builder(topology).model("slow", slow).start().await?;
    /// let handle = runtime.spawn("take your time");
    /// assert!(runtime.cancel(handle.id()));
    /// let report = handle.await?; // a cancelled task still yields its report
    /// assert_eq!(report.outcome, Outcome::Cancelled);
    /// runtime.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self, task: TaskId) -> bool {
        match self.0.plan.live.tasks.get(&task) {
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
        self.0.plan.observe(event);
    }

    /// The root envelope and account of a task; the account opened under `parent` when given
    /// (a standing loop's period account), so that the parent's limits apply too.
    pub(crate) fn prepare(
        &self,
        task: String,
        budget: Budget,
        parent: Option<&Account>,
    ) -> (Envelope<String>, Account) {
        self.prepare_as(None, task, budget, parent)
    }

    fn prepare_as(
        &self,
        id: Option<TaskId>,
        task: String,
        budget: Budget,
        parent: Option<&Account>,
    ) -> (Envelope<String>, Account) {
        let root = &self.0.plan.agents[self.0.plan.root];
        let mut envelope = Envelope::root(
            Arc::clone(&self.0.user),
            budget.tightest(&root.budget),
            task,
        );
        if let Some(id) = id {
            // The root every event carries is the trace's id.
            envelope.task = id;
            envelope.trace = baton_core::TraceId(id.0);
        }
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
        self.0.plan.live.gave_up.get().map(String::as_str)
    }

    /// Binds root task `root` (a run of `schedule`) to the loop's shared budget, if it has one,
    /// until [`Runtime::unbind_run_budget`].
    pub(crate) fn bind_run_budget(&self, root: u64, schedule: &str) {
        if let Some(b) = self.0.plan.loop_budgets.get(schedule) {
            self.0.plan.live.run_budgets.insert(root, Arc::clone(b));
        }
    }

    /// Ends what [`Runtime::bind_run_budget`] began.
    pub(crate) fn unbind_run_budget(&self, root: u64) {
        self.0.plan.live.run_budgets.remove(&root);
    }

    /// How standing loops' ticks are claimed among replicas, if they are.
    pub(crate) fn tick_claims(&self) -> Option<&Arc<dyn baton_core::TickClaims>> {
        self.0.plan.claims.as_ref()
    }

    /// Pauses the standing loop `schedule`: its ticks are skipped (counted as
    /// `baton_loop_skipped_total{reason="paused"}`) until [`Runtime::resume_schedule`]; a run
    /// going on is not stopped. Returns whether the topology has that schedule.
    pub fn pause_schedule(&self, schedule: &str) -> bool {
        let known = self.has_schedule(schedule);
        if known {
            self.0.plan.live.paused.insert(schedule.to_string());
        }
        known
    }

    /// Resumes a paused standing loop: its next tick runs. Returns whether the topology has that
    /// schedule.
    pub fn resume_schedule(&self, schedule: &str) -> bool {
        self.0.plan.live.paused.remove(schedule);
        self.has_schedule(schedule)
    }

    /// Whether the standing loop `schedule` is paused by hand.
    pub fn schedule_paused(&self, schedule: &str) -> bool {
        self.0.plan.live.paused.contains(schedule)
    }

    fn has_schedule(&self, schedule: &str) -> bool {
        self.0
            .topology
            .schedules()
            .iter()
            .any(|s| &*s.name == schedule)
    }

    /// Completes when the runtime goes down (see [`Runtime::down`]).
    pub async fn gone_down(&self) {
        self.0.plan.live.down.cancelled().await;
    }

    /// Runs a prepared task to its result.
    pub(crate) async fn submit_prepared(
        &self,
        envelope: Envelope<String>,
        account: Account,
    ) -> Result<TaskRun, RuntimeError> {
        if let Some(why) = self.0.plan.live.gave_up.get() {
            account.end(Outcome::Failed, why.clone());
            return Err(RuntimeError::ConductorDown(why.clone()));
        }
        let root = &self.0.plan.agents[self.0.plan.root];
        let id = envelope.task;
        self.0.plan.live.tasks.insert(id, account.clone());
        let _listed = Unlist(&self.0.plan, id);
        let guard = CancelOnDrop(Some(account.clone()));
        loop {
            let assignment = Assignment {
                envelope: envelope.clone(),
                account: account.clone(),
            };
            // Straight to the root agent, run inside the caller's task (admitted on the agent's
            // shared state: no message, no task of its own); through the conductor only when the
            // root agent is not running.
            let answer = match self.0.plan.root_agent() {
                Some(agent) if agent.is_alive() => Box::pin(agent.run_here(assignment)).await,
                _ => {
                    let (tx, rx) = oneshot::channel();
                    let msg = AgentMsg::Run(Box::new(assignment), tx);
                    if self
                        .0
                        .conductor
                        .send_message(ConductorMsg::Deliver(msg))
                        .is_err()
                    {
                        let why = self
                            .0
                            .plan
                            .live
                            .gave_up
                            .get()
                            .cloned()
                            .unwrap_or_else(|| "it has stopped".into());
                        drop(guard.disarm());
                        account.end(Outcome::Failed, why.clone());
                        return Err(RuntimeError::ConductorDown(why));
                    }
                    rx.await.ok()
                }
            };
            match answer {
                Some(result) => {
                    drop(guard.disarm());
                    if result.outcome == Outcome::Completed {
                        self.0.workflow_cost.record(account.spent().as_usd_f64());
                    }
                    return Ok(TaskRun { result, account });
                }
                // The root agent stopped with the task still waiting: deliver it again (the
                // conductor starts its successor); this is neither a retry nor a restart.
                None if !account.was_started()
                    && !account.is_cancelled()
                    && self.0.plan.live.gave_up.get().is_none() =>
                {
                    tokio::task::yield_now().await;
                }
                None => {
                    drop(guard.disarm());
                    let why = account
                        .end_reason()
                        .map(str::to_string)
                        .or_else(|| self.0.plan.live.gave_up.get().cloned())
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

    /// Starts a task and returns its handle at once, as `tokio::spawn` does: the handle gives
    /// its id, cancels it, and is awaited for its report. Dropping the handle does not cancel the
    /// task (it runs to its end, as a detached tokio task does); [`TaskHandle::cancel`] does.
    ///
    /// ```no_run
    /// # async fn demo(runtime: baton_actors::Runtime) -> Result<(), baton_actors::RuntimeError> {
    /// let handle = runtime.spawn("p99 latency of checkout doubled at 14:05");
    /// println!("task {} started", handle.id());
    /// let report = handle.await?;
    /// println!("{:?}", report.outcome);
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self, task: impl Into<String>) -> TaskHandle {
        self.spawn_with(task, Budget::UNLIMITED, None)
    }

    /// Starts a task under `budget` (tightened by the root agent's own), its account opened under
    /// `parent` when given (a batch's or a service's budget: the parent's limits apply too, and
    /// its spend includes the task's). Returns its handle at once; see [`Runtime::spawn`].
    pub fn spawn_with(
        &self,
        task: impl Into<String>,
        budget: Budget,
        parent: Option<&Account>,
    ) -> TaskHandle {
        self.spawn_inner(None, task.into(), budget, parent, None)
    }

    /// [`Runtime::spawn_with`] under an id the caller chose (a task queue's, shared by
    /// replicas): every event of its run carries it as `root`. The caller keeps ids unique: a
    /// queue's ids are small numbers, and [`TaskId::fresh`] ones start at the process's start in
    /// microseconds since the epoch.
    pub fn spawn_as(
        &self,
        id: TaskId,
        task: impl Into<String>,
        budget: Budget,
        parent: Option<&Account>,
    ) -> TaskHandle {
        self.spawn_inner(Some(id), task.into(), budget, parent, None)
    }

    /// [`Runtime::spawn_as`], every model call of the task's whole subtree reserving on `shared`
    /// too (beside the topology's shared budget): the task's own account kept with other
    /// replicas, so that a run of it on another replica spends only what this one left.
    pub fn spawn_as_sharing(
        &self,
        id: TaskId,
        task: impl Into<String>,
        budget: Budget,
        parent: Option<&Account>,
        shared: Arc<dyn baton_core::SharedBudget>,
    ) -> TaskHandle {
        self.spawn_inner(Some(id), task.into(), budget, parent, Some(shared))
    }

    fn spawn_inner(
        &self,
        id: Option<TaskId>,
        task: String,
        budget: Budget,
        parent: Option<&Account>,
        shared: Option<Arc<dyn baton_core::SharedBudget>>,
    ) -> TaskHandle {
        let (envelope, account) = self.prepare_as(id, task, budget, parent);
        let id = envelope.task;
        // Listed before the handle returns, so that `cancel(handle.id())` finds it at once.
        self.0.plan.live.tasks.insert(id, account.clone());
        // Bound before its first call, unbound once it has ended.
        let bound = shared.is_some();
        if let Some(shared) = shared {
            self.0
                .plan
                .live
                .run_budgets
                .insert(envelope.trace.0, shared);
        }
        let runtime = self.clone();
        let ledger = account.clone();
        let join = tokio::spawn(async move {
            let trace = envelope.trace.0;
            let run = runtime.submit_prepared(envelope, account).await;
            if bound {
                runtime.unbind_run_budget(trace);
            }
            Ok(runtime.report(run?))
        });
        TaskHandle {
            id,
            account: ledger,
            join,
        }
    }

    /// The report of a finished task.
    fn report(&self, run: TaskRun) -> RunReport {
        let snapshot = run.account.snapshot();
        let (answer, error) = match run.result.outcome {
            Outcome::Completed => (Some(run.result.text), None),
            _ => (None, Some(run.result.text)),
        };
        let report = RunReport::from_ledger(&snapshot, run.result.outcome, answer, error);
        crate::scoreboard::count_workflow(&snapshot.agent, &report.scoreboard);
        report
    }

    /// Stops the conductor and every agent, and waits for them. Works on a shared handle: every
    /// clone may call it; the first stops the runtime, and all return once it has stopped.
    /// Tasks still running end `cancelled`.
    pub async fn shutdown(&self) {
        self.0.conductor.stop(None);
        let mut handle = self.0.handle.lock().await;
        if let Some(h) = handle.take() {
            let _ = h.await;
        }
        // What the tasks observed is written (the audit trail's writer has caught up).
        if let Some(o) = &self.0.plan.observer {
            o.flush();
        }
    }
}

/// A task started with [`Runtime::spawn`]: its id, a way to cancel it, and (awaited) its report.
///
/// A cancelled task still yields its report (outcome `cancelled`). Awaiting fails only when the
/// runtime is down ([`RuntimeError::ConductorDown`]) or the task's driver panicked.
#[must_use = "a task handle does nothing unless awaited (the task runs either way)"]
pub struct TaskHandle {
    id: TaskId,
    account: Account,
    join: JoinHandle<Result<RunReport, RuntimeError>>,
}

impl TaskHandle {
    /// The task's id (its trace id too: every event of its subtree carries it as `root`).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Cancels the task and its whole subtree: it ends `cancelled` (unless it already ended),
    /// its reservations released; the handle still yields the report.
    pub fn cancel(&self) {
        self.account.cancel();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// The task's account: its spend so far, live (the report has the final figures).
    pub fn account(&self) -> &Account {
        &self.account
    }
}

impl std::future::Future for TaskHandle {
    type Output = Result<RunReport, RuntimeError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.join)
            .poll(cx)
            .map(|r| match r {
                Ok(r) => r,
                Err(e) => Err(RuntimeError::ConductorDown(format!(
                    "the task's driver stopped: {e}"
                ))),
            })
    }
}
