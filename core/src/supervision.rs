//! What every supervisor in Baton shares: the restart intensity (at most `max_restarts` restarts
//! within a window, else give up — OTP's), and the text of a caught panic.

use std::collections::VecDeque;
use std::time::Duration;

// tokio's clock: under paused time (tests) the window is virtual.
use tokio::time::Instant;

/// A supervisor's restart intensity: the restarts of the last `within`, refused past
/// `max_restarts`. The agents' supervisors, the conductor and the MCP connector each keep one.
#[derive(Debug, Default)]
pub struct RestartIntensity(VecDeque<Instant>);

impl RestartIntensity {
    /// Counts a restart now; `false` when it makes more than `max_restarts` within `within`
    /// (the supervisor must give up; the refused restart is not counted).
    pub fn admit(&mut self, max_restarts: u32, within: Duration) -> bool {
        let now = Instant::now();
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) > within)
        {
            self.0.pop_front();
        }
        if self.0.len() >= max_restarts as usize {
            return false;
        }
        self.0.push_back(now);
        true
    }
}

/// The message of a caught panic's payload (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_past_max_restarts_within_the_window() {
        let mut i = RestartIntensity::default();
        let w = Duration::from_secs(5);
        assert!(i.admit(2, w));
        assert!(i.admit(2, w));
        assert!(!i.admit(2, w), "a third within 5 s");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(i.admit(2, w), "the first two have left the window");
        assert!(!i.admit(0, w), "max_restarts 0: never");
    }

    #[test]
    fn panic_payloads() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).expect_err("panics");
        assert_eq!(panic_text(&*p), "boom 1");
        let p = std::panic::catch_unwind(|| panic!("static")).expect_err("panics");
        assert_eq!(panic_text(&*p), "static");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).expect_err("panics");
        assert_eq!(panic_text(&*p), "a panic without a message");
    }
}
