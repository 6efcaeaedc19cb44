//! A declared agent at run time: one actor that supervises the agent's tasks and its children.
//!
//! The actor never runs a task in its message handler. A task is admitted on the agent's shared
//! state (within `max_concurrency` running and `queue` waiting, or refused `busy` at once) and runs
//! inside the task that awaits it ([`Running::run_here`]: `submit`'s caller for a root task, the
//! delegating turn for a sub-task), so one waiting task — on a model, an approval, a `Retry-After`
//! or a child — never holds up another. Only tasks the conductor delivers and delegations deeper
//! than the inline bound are spawned ([`Running::deliver`]). The actor's handlers stay short:
//! activating children and deciding what a crash means.
//!
//! Submodules, along the flow of a task: [`turn`] (the loop and one reply's tool calls, run
//! concurrently), [`call`] (one step's model call: routing, retries and the call itself),
//! [`harness`] (one tool call under schema, policy, approval, timeout and output cap), and
//! [`delegation`] (a sub-task handed to a child, its crash, cut-off and reroute).
//!
//! A panic in a task's code ends that task, not the agent: the worker catches it, asks the agent's
//! supervisor (its parent agent, or the conductor) for a verdict — which counts it against the
//! restart intensity and applies the strategy to siblings — and then retries the task once
//! (`on_crash: retry`) or ends it `failed`.

mod call;
mod compact;
mod delegation;
mod harness;
mod turn;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use baton_core::{Account, Envelope, Outcome};
use baton_topologies::OnCrash;
use dashmap::DashMap;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::conductor::ConductorMsg;
use crate::observer::Event;
use crate::plan::{AgentPlan, IdHasher, Plan};
use crate::supervisor::Children;

/// Delegations deeper than this are refused: a guard against handoff loops.
pub(crate) const MAX_HOPS: u32 = 64;

/// A task handed to an agent, with the account its spending is booked to.
pub(crate) struct Assignment {
    pub(crate) envelope: Envelope<String>,
    pub(crate) account: Account,
}

/// How a task ended.
#[derive(Clone, Debug)]
pub struct TaskResult {
    /// The terminal outcome.
    pub outcome: Outcome,
    /// The answer (completed) or the reason it ended (otherwise).
    pub text: String,
}

pub(crate) fn end(outcome: Outcome, text: impl Into<String>) -> TaskResult {
    TaskResult {
        outcome,
        text: text.into(),
    }
}

/// Where a task's result goes: its caller (a parent's delegation, or `Runtime::submit`). A reply
/// dropped without a result means the agent stopped before the task started: the caller delivers
/// it again.
pub(crate) type Reply = oneshot::Sender<TaskResult>;

/// What a supervisor decided about a crashed task's agent.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Within the restart intensity: the agent carries on (and the task may be retried).
    Restarted,
    /// The agent is not restarted (it is temporary, and stops).
    NotRestarted,
    /// The supervisor gave up (its intensity was exceeded): why.
    GaveUp(String),
}

/// Messages an agent actor handles.
pub(crate) enum AgentMsg {
    /// Admit a task (or refuse it `busy`) and start it.
    Run(Box<Assignment>, Reply),
    /// The running child in `slot`, started if it is not running.
    Activate(usize, RpcReplyPort<Result<Running, String>>),
    /// A task of child `slot` crashed: decide (intensity, restart type, strategy).
    ChildCrashed {
        slot: usize,
        reason: String,
        reply: oneshot::Sender<Verdict>,
    },
}

/// Who supervises an agent: its parent agent (with the agent's slot there) or the conductor.
pub(crate) enum Supervisor {
    Agent(ActorRef<AgentMsg>, usize),
    Conductor(ActorRef<ConductorMsg>),
}

/// A running agent: its actor (for supervision and activation) and what its tasks share (for
/// handing it tasks directly).
#[derive(Clone)]
pub(crate) struct Running {
    pub(crate) actor: ActorRef<AgentMsg>,
    pub(crate) shared: Arc<AgentShared>,
}

impl Running {
    /// Whether the agent still takes tasks: its actor has not begun to stop.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        ) && !self.shared.stopping.is_cancelled()
    }

    /// Hands the agent a task. Admission needs no message: it is a counter and a spawn, done by
    /// the caller on the agent's shared state, so a task reaches its worker without waiting for
    /// the agent's mailbox (nor waking the actor's thread). A task handed to an agent that has
    /// begun to stop is given back, to be delivered to its successor.
    pub(crate) fn deliver(
        &self,
        assignment: Assignment,
        reply: Reply,
    ) -> Option<(Assignment, Reply)> {
        if !self.is_alive() {
            return Some((assignment, reply));
        }
        admit(&self.shared, assignment, reply);
        None
    }

    /// Runs a sub-task of the caller's task on this agent, inside the caller's task: admitted
    /// (or refused `busy`), then run to its result. `None` when the agent has begun to stop
    /// before the task started: the caller delivers it again, to its successor.
    pub(crate) async fn run_here(&self, assignment: Assignment) -> Option<TaskResult> {
        if !self.is_alive() {
            return None;
        }
        if let Err(busy) = admission(&self.shared, &assignment) {
            return Some(busy);
        }
        worker(Arc::clone(&self.shared), assignment).await
    }
}

/// What an agent's actor and its task workers share. One per running actor: a restarted agent
/// gets a new one, and the old one's workers wind down.
pub(crate) struct AgentShared {
    pub(crate) plan: Arc<Plan>,
    pub(crate) me: Arc<AgentPlan>,
    myself: OnceLock<ActorRef<AgentMsg>>,
    sup: Supervisor,
    /// The children's running actors and what they share, for workers to hand tasks to without
    /// a hop through any actor.
    children: RwLock<Vec<Option<Running>>>,
    /// Running tasks (`max_concurrency` permits).
    slots: Semaphore,
    /// Tasks running or waiting: at most `max_concurrency + queue`.
    admitted: AtomicUsize,
    /// Started tasks by id, so that stopping the agent can end them.
    inflight: DashMap<u64, Account, std::hash::BuildHasherDefault<IdHasher>>,
    /// Cancelled when the agent stops: waiting tasks leave (to be delivered again).
    stopping: CancellationToken,
    halted: OnceLock<()>,
}

impl AgentShared {
    pub(crate) fn new(plan: Arc<Plan>, me: usize, sup: Supervisor) -> Arc<AgentShared> {
        let agent = Arc::clone(&plan.agents[me]);
        Arc::new(AgentShared {
            children: RwLock::new(vec![None; agent.children.len()]),
            slots: Semaphore::new(agent.max_concurrency as usize),
            admitted: AtomicUsize::new(0),
            inflight: DashMap::default(),
            stopping: CancellationToken::new(),
            halted: OnceLock::new(),
            myself: OnceLock::new(),
            sup,
            me: agent,
            plan,
        })
    }

    /// Sets the actor these are shared with (done in `pre_start`).
    pub(crate) fn set_myself(&self, actor: ActorRef<AgentMsg>) {
        let _ = self.myself.set(actor);
    }

    /// Ends every started task of this agent with `outcome` and why, cancels them (and their
    /// subtrees), and sends waiting tasks back to their callers. Idempotent: the first reason wins.
    /// The accounts of the tasks it holds now.
    pub(crate) fn held(&self) -> Vec<baton_core::Account> {
        self.inflight.iter().map(|e| e.value().clone()).collect()
    }

    pub(crate) fn halt(&self, outcome: Outcome, reason: &str) {
        if self.halted.set(()).is_err() {
            return;
        }
        self.stopping.cancel();
        for entry in &self.inflight {
            let account = entry.value();
            account.end(outcome, reason);
            account.cancel();
        }
    }

    pub(crate) fn set_child(&self, slot: usize, actor: Option<Running>) {
        if let Some(s) = self
            .children
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(slot)
        {
            *s = actor;
        }
    }

    /// The running child in `slot`: from the table when it runs, else activated by the agent's
    /// actor (one message).
    pub(crate) async fn child(&self, slot: usize) -> Result<Running, String> {
        let known = self
            .children
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(slot)
            .cloned()
            .flatten();
        if let Some(r) = known
            && r.is_alive()
        {
            return Ok(r);
        }
        let me = self
            .myself
            .get()
            .ok_or_else(|| format!("`{}` is not running", self.me.name))?;
        match me.call(|port| AgentMsg::Activate(slot, port), None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            _ => Err(format!("`{}` has stopped", self.me.name)),
        }
    }

    /// Asks this agent's supervisor what a crash of one of its tasks means.
    async fn report_crash(&self, reason: &str) -> Verdict {
        let (tx, rx) = oneshot::channel();
        let sent = match &self.sup {
            Supervisor::Agent(parent, slot) => parent
                .send_message(AgentMsg::ChildCrashed {
                    slot: *slot,
                    reason: reason.to_string(),
                    reply: tx,
                })
                .is_ok(),
            Supervisor::Conductor(c) => c
                .send_message(ConductorMsg::RootCrashed {
                    reason: reason.to_string(),
                    reply: tx,
                })
                .is_ok(),
        };
        let gone = || Verdict::GaveUp(format!("the supervisor of `{}` has stopped", self.me.name));
        if !sent {
            return gone();
        }
        rx.await.unwrap_or_else(|_| gone())
    }
}

/// The actor type of every agent.
pub(crate) struct AgentActor;

pub(crate) struct AgentArgs {
    pub(crate) shared: Arc<AgentShared>,
}

pub(crate) struct AgentState {
    shared: Arc<AgentShared>,
    children: Children,
}

impl Drop for AgentState {
    /// The state lives exactly as long as the actor runs, crash or not.
    fn drop(&mut self) {
        self.shared.me.running.decrement(1.0);
    }
}

impl AgentState {
    /// The agent gives up (its intensity was exceeded): its tasks and its children's end
    /// `failed` with why, its children stop; the caller then fails the actor.
    async fn give_up(&mut self, why: &str) {
        self.shared.halt(Outcome::Failed, why);
        self.children.stop_all(Outcome::Failed, why).await;
    }
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let shared = args.shared;
        shared.set_myself(myself);
        shared.me.running.increment(1.0);
        Ok(AgentState {
            children: Children::new(Arc::clone(&shared)),
            shared,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        state.children.start_eager(&myself.get_cell()).await?;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // A stop its supervisor ordered has already halted it with the reason; otherwise (the
        // runtime shutting down) its tasks end cancelled.
        let why = format!("`{}` was stopped", state.shared.me.name);
        state.shared.halt(Outcome::Cancelled, &why);
        state.children.stop_all(Outcome::Cancelled, &why).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Run(assignment, reply) => admit(&state.shared, *assignment, reply),
            AgentMsg::Activate(slot, port) => {
                let r = state.children.get(slot, &myself.get_cell()).await;
                drop(port.send(r));
            }
            AgentMsg::ChildCrashed {
                slot,
                reason,
                reply,
            } => match state
                .children
                .crashed(slot, &reason, &myself.get_cell())
                .await
            {
                Ok(v) => drop(reply.send(v)),
                Err(abort) => {
                    let why = abort.to_string();
                    drop(reply.send(Verdict::GaveUp(why.clone())));
                    state.give_up(&why).await;
                    return Err(why.into());
                }
            },
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<AgentMsg>,
        event: SupervisionEvent,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // A child actor stopped (it gave up, or stopped on its own): restart it per its type.
        let Some((cell, crashed, reason)) = crate::supervisor::exit_of(&event) else {
            return Ok(());
        };
        let Some(i) = state.children.find(cell) else {
            return Ok(());
        };
        if let Err(abort) = state
            .children
            .exited(i, crashed, &reason, &myself.get_cell())
            .await
        {
            let why = abort.to_string();
            state.give_up(&why).await;
            return Err(why.into());
        }
        Ok(())
    }
}

/// Admits a task: refused `busy` (its result, at once) when `max_concurrency` tasks run and
/// `queue` wait; otherwise `Ok`, and the caller runs it (see [`worker`]).
fn admission(shared: &AgentShared, assignment: &Assignment) -> Result<(), TaskResult> {
    let me = &shared.me;
    let limit = me.max_concurrency as usize + me.queue as usize;
    if shared.admitted.fetch_add(1, Ordering::AcqRel) < limit {
        return Ok(());
    }
    shared.admitted.fetch_sub(1, Ordering::AcqRel);
    let why = format!(
        "`{}` is busy: {} tasks running and {} waiting (its max_concurrency and queue); try again later",
        me.name, me.max_concurrency, me.queue
    );
    let account = &assignment.account;
    if account.end(Outcome::Busy, why.clone()) {
        me.tasks.count(Outcome::Busy);
    }
    shared.plan.observe(&Event::Finished {
        agent: &me.name,
        task: assignment.envelope.task.0,
        root: assignment.envelope.trace.0,
        outcome: Outcome::Busy,
        detail: &why,
        score: account.score(),
    });
    Err(end(Outcome::Busy, why))
}

/// Admits a task and spawns its worker, which sends the result to `reply` (a root task: its
/// caller is not a task of ours). A reply dropped without a result means the agent stopped before
/// the task started: the caller delivers it again.
fn admit(shared: &Arc<AgentShared>, assignment: Assignment, reply: Reply) {
    if let Err(busy) = admission(shared, &assignment) {
        drop(reply.send(busy));
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if let Some(result) = worker(shared, assignment).await {
            // A caller that gave up is not an error of ours.
            drop(reply.send(result));
        }
    });
}

/// Gives the admission back when a worker ends, however it ends.
struct Admitted<'a>(&'a AgentShared);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A task whose worker was dropped before it ended (its caller stopped waiting: a delegating turn
/// was abandoned, a `submit` future dropped, or the runtime is going away) still ends with exactly one outcome: `cancelled`, recorded here.
struct Unfinished<'a> {
    shared: &'a AgentShared,
    account: &'a Account,
    task: u64,
    root: u64,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.inflight.remove(&self.task);
        let why = "cancelled: its caller stopped waiting for it";
        let me = &self.shared.me;
        if self.account.end(Outcome::Cancelled, why) {
            me.tasks.count(Outcome::Cancelled);
        }
        self.account.cancel();
        self.shared.plan.observe(&Event::Finished {
            agent: &me.name,
            task: self.task,
            root: self.root,
            outcome: self.account.outcome().unwrap_or(Outcome::Cancelled),
            detail: why,
            score: self.account.score(),
        });
    }
}

/// One admitted task, from its running slot to its result; `None` when the agent stopped before
/// the task started (the caller delivers it again).
///
/// A task runs inside the task of whoever awaits it ([`Running::run_here`]): `Runtime::submit`'s
/// caller (a `Runtime::spawn` handle's own task) for a root task, the delegating turn for a
/// sub-task. A task is awaited by exactly one caller, so it needs no task, channel or wake-up of
/// its own, and a whole workflow stays on one thread while others run on the other workers
/// (fan-outs still run concurrently, as futures of their turn). Only a task delivered through
/// the conductor (the root agent was restarting) or a delegation deeper than the inline bound is
/// spawned ([`admit`]). Either way it ends with exactly one outcome.
async fn worker(shared: Arc<AgentShared>, assignment: Assignment) -> Option<TaskResult> {
    let _admitted = Admitted(&shared);
    let Assignment {
        mut envelope,
        account,
    } = assignment;
    let task = envelope.task.0;
    let mut unfinished = Unfinished {
        shared: &shared,
        account: &account,
        task,
        root: envelope.trace.0,
        armed: true,
    };
    let permit = tokio::select! {
        biased;
        // The agent stopped before the task started: the caller delivers it again.
        () = shared.stopping.cancelled() => {
            unfinished.armed = false;
            return None;
        }
        () = account.cancelled() => None,
        p = shared.slots.acquire() => match p {
            Ok(p) => Some(p),
            Err(_) => {
                unfinished.armed = false;
                return None;
            }
        },
    };
    let me = Arc::clone(&shared.me);
    let result = match permit {
        None => end(
            Outcome::Cancelled,
            "cancelled while waiting for a running slot",
        ),
        Some(_permit) => {
            shared.inflight.insert(task, account.clone());
            if shared.stopping.is_cancelled() {
                shared.inflight.remove(&task);
                unfinished.armed = false;
                return None;
            }
            shared.plan.observe(&Event::Started {
                agent: &shared.me.name,
                task,
                root: envelope.trace.0,
                parent: envelope.parent.map(|p| p.0),
            });
            let text = std::mem::take(&mut envelope.payload);
            let r = run(&shared, &envelope, &account, text).await;
            shared.inflight.remove(&task);
            r
        }
    };
    unfinished.armed = false;
    // Whoever ended the task first (its loop, or its agent being stopped) decides its outcome.
    let result = if account.finish(result.outcome) {
        result
    } else {
        let outcome = account.outcome().unwrap_or(result.outcome);
        let text = account
            .end_reason()
            .map_or(result.text, ToString::to_string);
        TaskResult { outcome, text }
    };
    me.tasks.count(result.outcome);
    if result.outcome != Outcome::Completed {
        // Anything the task left running under it (a sub-task of an abandoned turn) stops.
        account.cancel();
    }
    shared.plan.observe(&Event::Finished {
        agent: &me.name,
        task,
        root: envelope.trace.0,
        outcome: result.outcome,
        detail: &result.text,
        score: account.score(),
    });
    Some(result)
}

/// Runs the task's loop; a crash is judged by the agent's supervisor, and the task retried once
/// (`on_crash: retry`) or ended `failed`.
async fn run(
    shared: &Arc<AgentShared>,
    envelope: &Envelope<String>,
    account: &Account,
    mut task: String,
) -> TaskResult {
    let me = &shared.me;
    account.mark_started();
    if let Some(m) = &me.sole_model {
        account.set_sole_model(Arc::clone(m));
    }
    let span = if tracing::enabled!(tracing::Level::INFO) {
        tracing::info_span!(
            "task",
            task = envelope.task.0,
            parent = envelope.parent.map(|p| p.0),
            trace = envelope.trace.0,
            agent = %me.name,
            hops = envelope.hops,
            otel.name = %format_args!("invoke_agent {}", me.name),
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = %me.name,
            baton.outcome = tracing::field::Empty,
            baton.cost_nanousd = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let mut retried = false;
    // Survives a crash: a retry resumes rather than replays what changed the world.
    let journal = Journal::default();
    if shared.me.local_only {
        account.mark_private();
    }
    let result = loop {
        let cx = TaskCx {
            shared,
            env: envelope,
            account,
            journal: &journal,
        };
        // The task's text is copied only for an agent that may run it twice.
        let text = if me.on_crash == OnCrash::Retry && !retried {
            task.clone()
        } else {
            std::mem::take(&mut task)
        };
        let run = AssertUnwindSafe(turn::run_task(&cx, text))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let why = match run {
            Ok(Ok(result)) => break result,
            Ok(Err(abort)) => abort.to_string(),
            Err(panic) => format!("`{}` crashed: {}", me.name, panic_text(&*panic)),
        };
        account.record_crash(why.clone());
        // Out of the agent's table while its supervisor decides: a verdict that stops the agent
        // must not end this task as a bystander.
        shared.inflight.remove(&envelope.task.0);
        let verdict = shared.report_crash(&why).await;
        match verdict {
            Verdict::Restarted => {
                account.record_restart();
                if me.on_crash == OnCrash::Retry
                    && !retried
                    && !account.is_cancelled()
                    && account.outcome().is_none()
                    && !shared.stopping.is_cancelled()
                {
                    retried = true;
                    journal.attempt.fetch_add(1, Ordering::Relaxed);
                    shared.inflight.insert(envelope.task.0, account.clone());
                    continue;
                }
                break end(Outcome::Failed, why);
            }
            Verdict::NotRestarted => break end(Outcome::Failed, why),
            Verdict::GaveUp(gave_up) => break end(Outcome::Failed, format!("{why}; {gave_up}")),
        }
    };
    if !span.is_none() {
        span.record("baton.outcome", result.outcome.as_str());
        span.record("baton.cost_nanousd", otel_int(account.spent().0));
    }
    result
}

/// What every step of a task needs: the agent (plan, children, supervisor), the task's envelope
/// and its account.
pub(crate) struct TaskCx<'a> {
    pub(crate) shared: &'a Arc<AgentShared>,
    pub(crate) env: &'a Envelope<String>,
    pub(crate) account: &'a Account,
    pub(crate) journal: &'a Journal,
}

/// What a task did that must not be done twice: its completed write and destructive calls (with
/// the observation each returned) and its dry runs. Kept across an `on_crash: retry`, so that the
/// retry sees the call's earlier result instead of running it again.
#[derive(Default)]
pub(crate) struct Journal {
    /// (attempt, tool, arguments, observation) of completed write and destructive calls.
    pub(crate) done: std::sync::Mutex<Vec<(u32, String, serde_json::Value, String)>>,
    /// The current attempt: 0, then 1 for the retry after a crash.
    pub(crate) attempt: std::sync::atomic::AtomicU32,
    /// Destructive calls made as dry runs (tool, arguments without `dry_run`).
    pub(crate) dry_runs: std::sync::Mutex<Vec<(String, serde_json::Value)>>,
    /// What each dry run said (tool, arguments without `dry_run`, output), shown with the
    /// approval request of the real call.
    pub(crate) dry_run_outputs: std::sync::Mutex<Vec<(String, serde_json::Value, String)>>,
}

impl Journal {
    /// The observation of an identical call completed by an earlier attempt, if there was one.
    pub(crate) fn replay(&self, tool: &str, arguments: &serde_json::Value) -> Option<String> {
        let now = self.attempt.load(Ordering::Relaxed);
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(n, t, a, _)| *n < now && t == tool && a == arguments)
            .map(|(_, _, _, o)| o.clone())
    }

    /// Records a completed write or destructive call.
    pub(crate) fn record(&self, tool: &str, arguments: &serde_json::Value, observation: &str) {
        let now = self.attempt.load(Ordering::Relaxed);
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                now,
                tool.to_string(),
                arguments.clone(),
                observation.to_string(),
            ));
    }

    /// What the dry run of this call said, when there was one.
    pub(crate) fn dry_run_output(
        &self,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Option<String> {
        self.dry_run_outputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(t, a, _)| t == tool && a == arguments)
            .map(|(_, _, o)| o.clone())
    }

    pub(crate) fn dry_runs(&self) -> Vec<(String, serde_json::Value)> {
        self.dry_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl TaskCx<'_> {
    pub(crate) fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    pub(crate) fn me(&self) -> &AgentPlan {
        &self.shared.me
    }

    pub(crate) fn task(&self) -> u64 {
        self.env.task.0
    }

    pub(crate) fn observe(&self, event: &Event<'_>) {
        self.shared.plan.observe(event);
    }
}

/// A count as a span attribute: OpenTelemetry's integers are signed (a `u64` would be exported
/// as a string).
pub(crate) fn otel_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) use baton_core::panic_text;
