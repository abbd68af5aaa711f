//! Backoff for calls that are safe to repeat.

use std::time::{Duration, Instant};

/// How long a retried call keeps trying before it gives up.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// Exponential backoff: 100 ms, 200 ms, ... capped at 2 s, until a budget is spent.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
    deadline: Instant,
}

impl Backoff {
    /// A backoff that gives up `budget` from now.
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            attempt: 0,
            deadline: Instant::now() + budget,
        }
    }

    /// The delay before attempt number `attempt` (0-based) is retried.
    pub(crate) fn delay(attempt: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)))
            .min(Duration::from_secs(2))
    }

    /// Sleep before the next try; `false` when the budget is spent.
    pub(crate) async fn wait(&mut self) -> bool {
        let delay = Self::delay(self.attempt);
        if Instant::now() + delay > self.deadline {
            return false;
        }
        self.attempt += 1;
        tokio::time::sleep(delay).await;
        true
    }

    /// Start over after progress was made (a stream reconnected).
    pub(crate) fn reset(&mut self, budget: Duration) {
        *self = Self::new(budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        assert_eq!(Backoff::delay(0), Duration::from_millis(100));
        assert_eq!(Backoff::delay(1), Duration::from_millis(200));
        assert_eq!(Backoff::delay(4), Duration::from_millis(1600));
        assert_eq!(Backoff::delay(5), Duration::from_secs(2));
        assert_eq!(Backoff::delay(60), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_empty_budget_gives_up_at_once() {
        assert!(!Backoff::new(Duration::ZERO).wait().await);
    }
}
