//! Faults a scripted model (or the `chaos` tool) injects at seeded random: which, how often,
//! and the counts the chaos tests check reports against.

use super::*;

/// A fault the scripted model can inject.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A provider error.
    Error,
    /// No answer.
    Timeout,
    /// An unparseable reply.
    Malformed,
    /// The provider code panics.
    Panic,
    /// Call a tool every step, forever (rules only).
    Runaway,
}

/// Random faults: a probability per kind, drawn from a seeded generator so runs are reproducible.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Seed of the generator.
    #[serde(default)]
    pub seed: u64,
    /// Probability of a provider error per call.
    #[serde(default)]
    pub error: f64,
    /// Probability of no answer.
    #[serde(default)]
    pub timeout: f64,
    /// Probability of an unparseable reply.
    #[serde(default)]
    pub malformed: f64,
    /// Probability of a panic.
    #[serde(default)]
    pub panic: f64,
}

/// Draws faults at a spec's rates from a seeded generator (shared by the scripted model and the
/// chaos tool).
#[derive(Debug)]
pub(crate) struct RandomFaults {
    spec: FaultSpec,
    state: AtomicU64,
}

/// Counts of injected faults, by kind.
#[derive(Debug, Default)]
pub(crate) struct FaultCounts([AtomicU64; 4]);

impl FaultCounts {
    pub(crate) fn count(&self, fault: Fault) {
        let i = match fault {
            Fault::Error => 0,
            Fault::Timeout => 1,
            Fault::Malformed => 2,
            Fault::Panic => 3,
            Fault::Runaway => return,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> InjectedFaults {
        let n = |i: usize| self.0[i].load(Ordering::Relaxed);
        InjectedFaults {
            error: n(0),
            timeout: n(1),
            malformed: n(2),
            panic: n(3),
        }
    }
}

/// How many faults a scripted model injected, by kind.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// Provider errors.
    pub error: u64,
    /// Timeouts.
    pub timeout: u64,
    /// Malformed replies.
    pub malformed: u64,
    /// Panics.
    pub panic: u64,
}

impl InjectedFaults {
    /// All faults.
    pub fn total(&self) -> u64 {
        self.error + self.timeout + self.malformed + self.panic
    }
}

/// The next value of a splitmix64 generator (for reproducible fault injection).
pub(crate) fn next_random(state: &AtomicU64) -> u64 {
    crate::splitmix64(state.fetch_add(crate::random::GOLDEN_GAMMA, Ordering::Relaxed))
}

impl RandomFaults {
    /// A generator for `spec`, its seed mixed with `salt` (so two users of one spec differ).
    pub(crate) fn new(spec: FaultSpec, salt: u64) -> RandomFaults {
        RandomFaults {
            state: AtomicU64::new(spec.seed ^ salt),
            spec,
        }
    }

    pub(crate) fn draw(&self) -> Option<Fault> {
        // 53 random bits to a float in [0, 1): probabilities are configuration, not money.
        let x = (next_random(&self.state) >> 11) as f64 / (1u64 << 53) as f64;
        let s = &self.spec;
        let mut edge = 0.0;
        for (p, f) in [
            (s.error, Fault::Error),
            (s.timeout, Fault::Timeout),
            (s.malformed, Fault::Malformed),
            (s.panic, Fault::Panic),
        ] {
            edge += p;
            if x < edge {
                return Some(f);
            }
        }
        None
    }
}
