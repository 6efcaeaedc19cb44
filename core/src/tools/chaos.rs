use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::json;

use crate::scripted::{FaultSpec, InjectedFaults};
use crate::tool::{Tool, ToolError};

/// A tool for rehearsing failure: it answers `ok`, or, at the configured probabilities, fails
/// (`error`), never returns (`timeout`), returns garbage (`malformed`) or panics (`panic`).
/// Reproducible from its seed; [`Chaos::injected`] counts what it did.
#[derive(Debug)]
pub struct Chaos {
    name: String,
    spec: FaultSpec,
    state: AtomicU64,
    injected: [AtomicU64; 4],
}

impl Chaos {
    /// A chaos tool named `name`.
    pub fn new(name: impl Into<String>, spec: FaultSpec) -> Chaos {
        Chaos {
            name: name.into(),
            state: AtomicU64::new(spec.seed ^ 0x5EED),
            spec,
            injected: Default::default(),
        }
    }

    /// Faults injected so far.
    pub fn injected(&self) -> InjectedFaults {
        let n = |i: usize| self.injected[i].load(Ordering::Relaxed);
        InjectedFaults {
            error: n(0),
            timeout: n(1),
            malformed: n(2),
            panic: n(3),
        }
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
    async fn call(&self, _args: serde_json::Value) -> Result<String, ToolError> {
        let x = (crate::scripted::next_random(&self.state) >> 11) as f64 / (1u64 << 53) as f64;
        let s = &self.spec;
        let mut edge = 0.0;
        for (i, p) in [s.error, s.timeout, s.malformed, s.panic]
            .into_iter()
            .enumerate()
        {
            edge += p;
            if x < edge {
                self.injected[i].fetch_add(1, Ordering::Relaxed);
                return match i {
                    0 => Err(ToolError::Failed(
                        "injected fault: backend unavailable".into(),
                    )),
                    1 => {
                        std::future::pending::<()>().await;
                        Ok(String::new())
                    }
                    2 => Ok("\u{fffd}\u{0}{{{not json".into()),
                    _ => panic!("{}: injected fault: tool panicked", self.name),
                };
            }
        }
        Ok("ok".into())
    }
}
