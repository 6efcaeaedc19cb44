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
    /// The tool.
    pub tool: String,
    /// The arguments it would be called with.
    pub arguments: serde_json::Value,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Go ahead.
    Approved,
    /// Do not; why.
    Denied(String),
}

/// Someone who answers approval requests: a terminal prompt, a queue behind an HTTP endpoint, a
/// chat bot.
#[async_trait]
pub trait Approver: Send + Sync + 'static {
    /// Decides on one request.
    async fn decide(&self, request: &ApprovalRequest) -> ApprovalDecision;
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
