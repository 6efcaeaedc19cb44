//! Human approval of destructive tool calls. The harness asks an [`Approver`]; an approval that
//! does not come within the policy's `approval_timeout` is a denial, and a runtime with no
//! approver denies at once, saying why — an unattended run never waits for nobody.

use baton_core::async_trait;

/// What is asked of the human.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    /// The agent that wants to call the tool.
    pub agent: String,
    /// Its task.
    pub task: u64,
    /// The root task (the submitted task whose run this is; its trace id).
    pub root: u64,
    /// The tool.
    pub tool: String,
    /// The arguments it would be called with.
    pub arguments: serde_json::Value,
    /// What the same call's dry run said, when one was made first (`dry_run_first`).
    pub dry_run: Option<String>,
    /// How long the harness waits for the answer (the policy's `approval_timeout`): a request
    /// older than this is no longer answerable, even one kept across a restart.
    pub timeout: std::time::Duration,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Go ahead.
    Approved,
    /// Go ahead, saying who approved (and which request): recorded in the audit trail.
    ApprovedBy(String),
    /// Do not; why.
    Denied(String),
}

/// Someone who answers approval requests: a terminal prompt, a queue behind an HTTP endpoint, a
/// chat bot.
///
/// ```
/// use baton::prelude::*;
///
/// /// Approves restarts of anything but the database; says who decided.
/// struct OnCall;
///
/// #[async_trait]
/// impl Approver for OnCall {
///     async fn decide(&self, request: &ApprovalRequest) -> ApprovalDecision {
///         if request.arguments.to_string().contains("postgres") {
///             ApprovalDecision::Denied("the database is restarted by hand".into())
///         } else {
///             ApprovalDecision::ApprovedBy("on-call bot".into())
///         }
///     }
/// }
/// // Runtime::builder(topology).approver(OnCall) — asked when the policy requires approval.
/// ```
#[async_trait]
pub trait Approver: Send + Sync + 'static {
    /// Decides on one request.
    async fn decide(&self, request: &ApprovalRequest) -> ApprovalDecision;
}

#[async_trait]
impl<T: Approver + ?Sized> Approver for std::sync::Arc<T> {
    async fn decide(&self, request: &ApprovalRequest) -> ApprovalDecision {
        (**self).decide(request).await
    }
}

/// The approver of a runtime nobody attends.
pub(crate) struct Unattended;

#[async_trait]
impl Approver for Unattended {
    async fn decide(&self, _: &ApprovalRequest) -> ApprovalDecision {
        ApprovalDecision::Denied(
            "no terminal and no approval endpoint: denied at once (unattended runs never wait)"
                .into(),
        )
    }
}

/// Where an approval request stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a human.
    Pending,
    /// Approved.
    Approved,
    /// Denied.
    Denied,
    /// Not answered within the policy's `approval_timeout` (a denial).
    TimedOut,
}

/// An approval request as the queue (and the state file) keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ApprovalRecord {
    /// Its id: unique in the state file, and (starting at a random number) across processes.
    pub id: u64,
    /// The agent that wants to call the tool.
    pub agent: String,
    /// Its task.
    pub task: u64,
    /// The root task (the submitted task whose run this is); 0 in records written before it was
    /// kept.
    #[serde(default)]
    pub root: u64,
    /// The tool.
    pub tool: String,
    /// The arguments.
    pub arguments: serde_json::Value,
    /// What the same call's dry run said, when one was made first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<String>,
    /// When it was asked (Unix milliseconds).
    pub requested_ms: u64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why (for a denial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was answered (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<u64>,
    /// The process that asked died while it waited: its task is gone. An answer still counts:
    /// it is given to the same agent's next call of the same tool with the same arguments.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphaned: bool,
    /// The decision was given to a call (an orphaned request's, to a later one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used: bool,
}

/// Why an answer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// No request has that id.
    #[error("no approval request #{0}")]
    NotFound(u64),
    /// It was answered already (or timed out).
    #[error("approval request #{id} is already {state:?}")]
    AlreadyDecided {
        /// The request.
        id: u64,
        /// Where it stands.
        state: ApprovalState,
    },
}

/// A headless approver: requests wait in a queue, are listed and answered by id — unique across
/// processes: a new queue starts at a random id, a state file continues its own — (over HTTP, see
/// the CLI's `--approvals-addr`, or in code), and — with a state file — are written down before
/// anyone sees them, so a crash forgets none: at the next start, a request whose asker died is
/// kept `orphaned`; answered, its decision goes to the same agent's next identical call (a
/// resumed run asks again), and a still-pending one is taken up by that call instead of a new one.
pub struct ApprovalQueue {
    state: std::sync::Mutex<QueueState>,
    store: Option<std::sync::Arc<crate::store::LoopStore>>,
}

struct QueueState {
    records: std::collections::BTreeMap<u64, ApprovalRecord>,
    waiters: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<ApprovalDecision>>,
    next: u64,
}

impl std::fmt::Debug for ApprovalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalQueue").finish_non_exhaustive()
    }
}

/// Where a process's request ids start when no state file continues them: a random number from
/// 1,000,000 up, so that an id meant for one process (`baton approvals approve 1234567`) never
/// names a request of another.
fn first_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::store::now_ms());
    h.write_u32(std::process::id());
    1_000_000 + h.finish() % 999_000_000
}

impl ApprovalQueue {
    /// A queue in memory only. Its request ids start at a random number (see the type's docs).
    pub fn new() -> ApprovalQueue {
        ApprovalQueue {
            state: std::sync::Mutex::new(QueueState {
                records: std::collections::BTreeMap::new(),
                waiters: std::collections::HashMap::new(),
                next: first_id(),
            }),
            store: None,
        }
    }

    /// A queue kept in `store`: the requests found there are taken up, those still pending
    /// marked orphaned (their asker died with the process).
    ///
    /// # Errors
    /// When the state file cannot be read or written.
    pub fn durable(
        store: std::sync::Arc<crate::store::LoopStore>,
    ) -> Result<ApprovalQueue, crate::store::StoreError> {
        let mut records = std::collections::BTreeMap::new();
        for mut r in store.approvals()? {
            if r.state == ApprovalState::Pending && !r.orphaned {
                r.orphaned = true;
                store.save_approval(&r)?;
            }
            records.insert(r.id, r);
        }
        // A state file continues its own numbering; a new one starts at a random id.
        let next = records.keys().next_back().map_or_else(first_id, |k| k + 1);
        Ok(ApprovalQueue {
            state: std::sync::Mutex::new(QueueState {
                records,
                waiters: std::collections::HashMap::new(),
                next,
            }),
            store: Some(store),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn persist(&self, r: &ApprovalRecord) {
        if let Some(s) = &self.store
            && let Err(e) = s.save_approval(r)
        {
            tracing::error!("{e}");
        }
    }

    /// Every request, oldest first.
    pub fn list(&self) -> Vec<ApprovalRecord> {
        self.lock().records.values().cloned().collect()
    }

    /// Answers request `id`: approves it, or denies it with `reason`.
    ///
    /// # Errors
    /// [`AnswerError`] when there is no such request or it was answered already.
    pub fn answer(
        &self,
        id: u64,
        approve: bool,
        by: Option<String>,
        reason: Option<String>,
    ) -> Result<ApprovalRecord, AnswerError> {
        let mut st = self.lock();
        let r = st.records.get_mut(&id).ok_or(AnswerError::NotFound(id))?;
        if r.state != ApprovalState::Pending {
            return Err(AnswerError::AlreadyDecided { id, state: r.state });
        }
        r.state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        r.by = by;
        r.reason = reason;
        r.decided_ms = Some(crate::store::now_ms());
        let decision = decision_of(r);
        let mut record = r.clone();
        if let Some(tx) = st.waiters.remove(&id)
            && tx.send(decision).is_ok()
        {
            record.used = true;
            if let Some(r) = st.records.get_mut(&id) {
                r.used = true;
            }
        }
        drop(st);
        self.persist(&record);
        Ok(record)
    }

    /// Marks request `id` timed out, unless it was answered meanwhile.
    fn expire(&self, id: u64) {
        let mut st = self.lock();
        st.waiters.remove(&id);
        let Some(r) = st.records.get_mut(&id) else {
            return;
        };
        if r.state == ApprovalState::Pending {
            r.state = ApprovalState::TimedOut;
            r.decided_ms = Some(crate::store::now_ms());
            let record = r.clone();
            drop(st);
            self.persist(&record);
        }
    }
}

impl Default for ApprovalQueue {
    fn default() -> Self {
        Self::new()
    }
}

fn decision_of(r: &ApprovalRecord) -> ApprovalDecision {
    match r.state {
        ApprovalState::Approved => ApprovalDecision::ApprovedBy(match &r.by {
            Some(by) => format!("approved by {by} (request #{})", r.id),
            None => format!("approved (request #{})", r.id),
        }),
        _ => ApprovalDecision::Denied(match (&r.by, &r.reason) {
            (Some(by), Some(why)) => format!("denied by {by} (request #{}): {why}", r.id),
            (Some(by), None) => format!("denied by {by} (request #{})", r.id),
            (None, Some(why)) => format!("denied (request #{}): {why}", r.id),
            (None, None) => format!("denied (request #{})", r.id),
        }),
    }
}

/// Marks a request timed out when the call stops waiting for it (the policy's timeout, or the
/// task's cancellation), unless it was answered.
struct Expire<'q>(&'q ApprovalQueue, u64);

impl Drop for Expire<'_> {
    fn drop(&mut self) {
        self.0.expire(self.1);
    }
}

#[async_trait]
impl Approver for ApprovalQueue {
    async fn decide(&self, request: &ApprovalRequest) -> ApprovalDecision {
        let now = crate::store::now_ms();
        let timeout_ms = u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX);
        let fresh_enough = |r: &ApprovalRecord| now.saturating_sub(r.requested_ms) <= timeout_ms;
        let same = |r: &ApprovalRecord| {
            r.orphaned
                && !r.used
                && fresh_enough(r)
                && r.agent == request.agent
                && r.tool == request.tool
                && r.arguments == request.arguments
        };
        let (id, rx, fresh) = {
            let mut st = self.lock();
            // An orphan whose timeout passed while the process was down is a denial on the
            // record (`timed_out`), never an approval for a later call.
            let stale: Vec<ApprovalRecord> = st
                .records
                .values_mut()
                .filter(|r| r.orphaned && r.state == ApprovalState::Pending && !fresh_enough(r))
                .map(|r| {
                    r.state = ApprovalState::TimedOut;
                    r.decided_ms = Some(now);
                    r.reason =
                        Some("its approval_timeout passed while the process was down".to_string());
                    r.clone()
                })
                .collect();
            for r in &stale {
                self.persist(r);
            }
            // An answer given to an orphaned request goes to this call.
            if let Some(r) = st.records.values_mut().find(|r| {
                same(r) && matches!(r.state, ApprovalState::Approved | ApprovalState::Denied)
            }) {
                r.used = true;
                let (record, decision) = (r.clone(), decision_of(r));
                drop(st);
                self.persist(&record);
                tracing::info!(
                    id = record.id,
                    "an answer given after a restart decides this call"
                );
                return decision;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A pending orphaned request is taken up rather than asked again.
            let taken = st
                .records
                .values_mut()
                .find(|r| same(r) && r.state == ApprovalState::Pending)
                .map(|r| {
                    r.task = request.task;
                    r.root = request.root;
                    r.id
                });
            let (id, fresh) = match taken {
                Some(id) => (id, None),
                None => {
                    let id = st.next;
                    st.next += 1;
                    let record = ApprovalRecord {
                        id,
                        agent: request.agent.clone(),
                        task: request.task,
                        root: request.root,
                        tool: request.tool.clone(),
                        arguments: request.arguments.clone(),
                        dry_run: request.dry_run.clone(),
                        requested_ms: crate::store::now_ms(),
                        state: ApprovalState::Pending,
                        by: None,
                        reason: None,
                        decided_ms: None,
                        orphaned: false,
                        used: false,
                    };
                    st.records.insert(id, record.clone());
                    (id, Some(record))
                }
            };
            st.waiters.insert(id, tx);
            (id, rx, fresh)
        };
        if let Some(r) = &fresh {
            self.persist(r);
        }
        tracing::warn!(
            id,
            agent = %request.agent,
            tool = %request.tool,
            arguments = %request.arguments,
            "approval request #{id} is waiting (answer it: baton approvals approve|deny {id} --addr ADDR)"
        );
        let expire = Expire(self, id);
        let decision = rx.await.unwrap_or_else(|_| {
            ApprovalDecision::Denied(format!("approval request #{id} was dropped"))
        });
        drop(expire);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(timeout: std::time::Duration) -> ApprovalRequest {
        ApprovalRequest {
            agent: "ops".into(),
            task: 7,
            root: 7,
            tool: "restart".into(),
            arguments: serde_json::json!({"service": "checkout-api"}),
            dry_run: None,
            timeout,
        }
    }

    /// The attack: a request left pending when the process died, approved long after its
    /// timeout (or approved in time but taken up only after it), must not approve a later
    /// identical call of a new run. It is recorded `timed_out`, and the call asks anew.
    #[tokio::test]
    async fn an_orphan_past_its_timeout_approves_nothing() {
        let path = std::env::temp_dir().join(format!("baton-orphan-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = std::sync::Arc::new(crate::store::LoopStore::open(&path).expect("store"));
        let hour_ago = crate::store::now_ms() - 3_600_000;
        for (id, state) in [(1, ApprovalState::Pending), (2, ApprovalState::Approved)] {
            let mut r = ApprovalRecord {
                id,
                agent: "ops".into(),
                task: 1,
                root: 1,
                tool: "restart".into(),
                arguments: serde_json::json!({"service": "checkout-api"}),
                dry_run: None,
                requested_ms: hour_ago,
                state,
                by: None,
                reason: None,
                decided_ms: None,
                orphaned: true,
                used: false,
            };
            if id == 2 {
                r.by = Some("mallory".into());
            }
            store.save_approval(&r).expect("saved");
        }
        let queue = ApprovalQueue::durable(std::sync::Arc::clone(&store)).expect("queue");
        let asked = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            queue.decide(&request(std::time::Duration::from_secs(120))),
        )
        .await;
        assert!(
            asked.is_err(),
            "no stale answer decided the call: {asked:?}"
        );
        let records = queue.list();
        assert_eq!(
            records[0].state,
            ApprovalState::TimedOut,
            "{:?}",
            records[0]
        );
        assert!(
            !records[1].used,
            "the stale approval was not given to the call"
        );
        assert_eq!(records.len(), 3, "the call asked anew: {records:?}");
        let kept = store.approvals().expect("read");
        assert_eq!(
            kept[0].state,
            ApprovalState::TimedOut,
            "recorded in the state file"
        );
        // Within its timeout, an orphan's answer still counts (what `on_interrupted: resume`
        // relies on).
        let queue = ApprovalQueue::new();
        {
            let mut st = queue.lock();
            let mut r = kept[1].clone();
            r.id = 9;
            r.requested_ms = crate::store::now_ms();
            st.records.insert(9, r);
        }
        assert_eq!(
            queue
                .decide(&request(std::time::Duration::from_secs(120)))
                .await,
            ApprovalDecision::ApprovedBy("approved by mallory (request #9)".into())
        );
        let _ = std::fs::remove_file(&path);
    }
}
