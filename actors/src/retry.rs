//! The retry layer's mechanism: how long to wait before the next attempt. Its configuration is
//! the model's `retry:` ([`baton_topologies::RetryPolicy`]); the loop that uses it (in
//! `agent::attempt`) re-reserves before every attempt — a retry the budget cannot pay for is not
//! made — and never sleeps past the task's deadline.

use std::time::Duration;

use baton_topologies::RetryPolicy;

/// The wait before attempt `next` (2 for the first retry): the provider's `Retry-After` when it
/// gave one, else exponential backoff from `base_delay`, capped at `max_delay`, with "equal
/// jitter" (a random point in the upper half) so that many agents do not retry in lockstep.
pub(crate) fn backoff(
    policy: &RetryPolicy,
    next: u32,
    retry_after: Option<Duration>,
    seed: u64,
) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << next.saturating_sub(2).min(16))
        .min(policy.max_delay);
    let half = exp / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if nanos == 0 {
        0
    } else {
        baton_core::splitmix64(seed) % nanos
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn exponential_with_equal_jitter_capped() {
        for seed in 0..50 {
            let d2 = backoff(&policy(), 2, None, seed);
            assert!(
                d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100),
                "{d2:?}"
            );
            let d3 = backoff(&policy(), 3, None, seed);
            assert!(
                d3 >= Duration::from_millis(100) && d3 <= Duration::from_millis(200),
                "{d3:?}"
            );
            let d9 = backoff(&policy(), 9, None, seed);
            assert!(
                d9 >= Duration::from_millis(350) && d9 <= Duration::from_millis(700),
                "{d9:?}"
            );
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|s| backoff(&policy(), 3, None, s)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn retry_after_wins() {
        assert_eq!(
            backoff(&policy(), 2, Some(Duration::from_secs(20)), 1),
            Duration::from_secs(20)
        );
    }
}
