//! Writes what happens in a run to the hash-chained audit trail ([`baton_core::audit`]).

use baton_core::audit::AuditLog;
use serde_json::Value;

use crate::observer::{Event, Observer};

/// An [`Observer`] that appends every model call, tool call and result, policy decision, budget
/// action, retry, restart, escalation and task outcome to an audit trail. Arguments and results
/// are recorded as the model sent and saw them (results capped at 2,000 characters); credentials
/// never pass through events.
pub struct AuditObserver {
    log: AuditLog,
}

impl AuditObserver {
    /// Audits to `log`.
    pub fn new(log: AuditLog) -> AuditObserver {
        AuditObserver { log }
    }
}

impl Observer for AuditObserver {
    fn on_event(&self, event: &Event<'_>) {
        let (kind, fields) = event.record();
        let Value::Object(fields) = fields else {
            return;
        };
        if let Err(e) = self.log.append(kind, fields) {
            tracing::error!("audit trail: {e}");
        }
    }

    /// Written and synced to disk before the call it decides runs.
    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        let (kind, fields) = event.record();
        let Value::Object(fields) = fields else {
            return Ok(());
        };
        self.log.append_durable(kind, fields).map_err(|e| {
            tracing::error!("audit trail: {e}");
            e.to_string()
        })
    }
}

/// Fans one event out to several observers, in order.
pub(crate) struct Many(pub(crate) Vec<Box<dyn Observer>>);

impl Observer for Many {
    fn on_event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.on_event(event);
        }
    }

    fn on_decision(&self, event: &Event<'_>) -> Result<(), String> {
        // Every observer sees it; the first failure is the answer.
        let mut first = Ok(());
        for o in &self.0 {
            if let Err(e) = o.on_decision(event)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}
