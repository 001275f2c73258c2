//! How HandoffRetry moves, reconnects and retries.

use std::time::Duration;

/// Which commands are sent again when the connection died after they were written (their
/// reply lost, so they may have run). Commands that were never written are always sent again:
/// they certainly did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Never: such a command fails with [`Error::ConnectionLost`](crate::Error::ConnectionLost).
    Never,
    /// Only read-only and idempotent commands ([`Command::is_idempotent`](crate::Command::is_idempotent)).
    #[default]
    SafeOnly,
    /// Every command, accepting that some may run twice.
    Always,
}

/// Settings of [`HandoffRetry`](super::HandoffRetry) for reconnects and resends. The handoff's own
/// bounds (`handoff_timeout`, `max_handoff_retries`) come from the
/// [`MaintenanceConfig`](crate::MaintenanceConfig), where all maintenance settings live.
///
/// Build it with struct update syntax: `HandoffConfig { retry: RetryPolicy::Never, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct HandoffConfig {
    /// Bound on one reconnect attempt after an unannounced loss. Default 5 s.
    pub connect_timeout: Duration,
    /// Reconnect attempts per outage before the stack reports itself down (it tries again when
    /// the next command arrives). Default 10.
    pub max_reconnect_attempts: u32,
    /// First backoff between attempts; doubled each time, with jitter. Default 100 ms.
    pub backoff_base: Duration,
    /// Largest backoff between attempts. Default 3 s.
    pub backoff_max: Duration,
    /// How long a command waits for a connection while the stack reconnects before it fails
    /// with [`Error::NotSent`](crate::Error::NotSent). Default 10 s.
    pub wait_for_connection: Duration,
    /// Which lost commands are sent again.
    pub retry: RetryPolicy,
    /// Shared bound on concurrent handoffs, for the stacks of a pool. None: unbounded.
    pub limiter: Option<super::HandoffLimiter>,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            connect_timeout: Duration::from_secs(5),
            max_reconnect_attempts: 10,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(3),
            wait_for_connection: Duration::from_secs(10),
            retry: RetryPolicy::SafeOnly,
            limiter: None,
        }
    }
}

impl HandoffConfig {
    /// The backoff before attempt `attempt` (1-based), with up to 50% random jitter.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.backoff_max);
        jitter(capped, 0.5)
    }
}

/// `d` scaled by a random factor in `[1 - spread, 1]`, so a fleet does not act in lockstep.
pub(crate) fn jitter(d: Duration, spread: f64) -> Duration {
    d.mul_f64(1.0 - spread * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = HandoffConfig::default();
        for attempt in 1..20 {
            let b = c.backoff(attempt);
            assert!(b <= c.backoff_max, "{attempt}: {b:?}");
            assert!(
                b >= c.backoff_base.min(c.backoff_max) / 2,
                "{attempt}: {b:?}"
            );
        }
        assert!(c.backoff(1) <= Duration::from_millis(100));
        assert!(c.backoff(12) >= Duration::from_millis(1500));
    }
}
