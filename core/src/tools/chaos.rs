use async_trait::async_trait;
use serde_json::json;

use crate::scripted::{Fault, FaultCounts, FaultSpec, InjectedFaults, RandomFaults};
use crate::tool::{Tool, ToolError};

/// A tool for rehearsing failure: it answers `ok`, or, at the configured probabilities, fails
/// (`error`), never returns (`timeout`), returns garbage (`malformed`) or panics (`panic`).
/// Reproducible from its seed; [`Chaos::injected`] counts what it did.
#[derive(Debug)]
pub struct Chaos {
    name: String,
    dice: RandomFaults,
    injected: FaultCounts,
}

impl Chaos {
    /// A chaos tool named `name`.
    pub fn new(name: impl Into<String>, spec: FaultSpec) -> Chaos {
        Chaos {
            name: name.into(),
            dice: RandomFaults::new(spec, 0x5EED),
            injected: FaultCounts::default(),
        }
    }

    /// Faults injected so far.
    pub fn injected(&self) -> InjectedFaults {
        self.injected.snapshot()
    }
}

#[async_trait]
impl Tool for Chaos {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "A tool that sometimes fails, hangs, returns garbage or panics (for rehearsing failure)."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        _args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let Some(fault) = self.dice.draw() else {
            return Ok("ok".into());
        };
        self.injected.count(fault);
        match fault {
            Fault::Error => Err(ToolError::Failed(
                "injected fault: backend unavailable".into(),
            )),
            Fault::Timeout => {
                std::future::pending::<()>().await;
                Ok(String::new())
            }
            Fault::Malformed => Ok("\u{fffd}\u{0}{{{not json".into()),
            Fault::Panic | Fault::Runaway => panic!("{}: injected fault: tool panicked", self.name),
        }
    }
}
