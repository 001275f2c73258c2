//! How a [`CircuitBreaker`](super::CircuitBreaker) decides to open, how long it stays open, and
//! what an open circuit does to a command.

use std::time::Duration;

/// What an open circuit does to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Fail at once with [`Error::CircuitOpen`](crate::Error::CircuitOpen), without calling the
    /// inner service. The default.
    #[default]
    FailFast,
    /// Hold the command: `poll_ready` stays pending until the circuit lets it through, for at
    /// most `max`; then the command fails with [`Error::CircuitOpen`](crate::Error::CircuitOpen).
    Wait {
        /// The longest one command is held.
        max: Duration,
    },
}

/// Settings of a [`CircuitBreaker`](super::CircuitBreaker).
///
/// Build it with struct update syntax:
/// `CircuitBreakerConfig { consecutive_failures: 3, ..Default::default() }`.
///
/// What counts as a failure is decided in one place, [`ErrorClass::counts_as_failure`]:
/// connection failures and timeouts count; server error replies such as `WRONGTYPE` never do.
///
/// [`ErrorClass::counts_as_failure`]: crate::ErrorClass::counts_as_failure
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfig {
    /// Open after this many failures in a row. Default 5; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// Open when at least this share of the calls in the `window` failed (0.5 is 50%), once the
    /// window holds at least `minimum_calls` calls. Default 0.5; 0 turns this trigger off.
    pub failure_rate: f64,
    /// The sliding window of the failure rate, kept in ten buckets. Default 10 s.
    pub window: Duration,
    /// The fewest calls in the window for the failure rate to count. Default 20.
    pub minimum_calls: u32,
    /// How long the circuit stays open the first time. Default 1 s.
    pub open_wait: Duration,
    /// The longest it stays open: the wait doubles with each opening that follows a failed
    /// probe, up to this. Each wait is up to 20% shorter at random, so that a fleet of clients
    /// does not probe in lockstep. Default 30 s.
    pub max_open_wait: Duration,
    /// How many trial commands a half-open circuit lets through; when all of them succeed it
    /// closes, when one fails it opens again. Default 1 (at most 255).
    pub half_open_probes: u8,
    /// The longest an Azure `NodeMaintenanceStart` keeps the circuit open when neither the
    /// connection coming back nor `NodeMaintenanceFailoverComplete` / `...ScaleComplete` /
    /// `...Ended` closes it first; then it turns half-open. Default 60 s.
    pub azure_hold_max: Duration,
    /// The longest commands are held at an open circuit while a handoff switches connections
    /// (from `HandoffStarted` to `HandoffSwitched` or `HandoffFailed`), whatever the mode.
    /// Default 15 s, the default handoff timeout.
    pub handoff_hold: Duration,
    /// What an open circuit does to a command. Default [`OpenMode::FailFast`].
    pub mode: OpenMode,
    /// When set, an Azure `NodeMaintenanceStarting` with a `StartTimeInUTC` opens the circuit
    /// this long before that time, as `NodeMaintenanceStart` would (held in
    /// [`OpenMode::Wait`], failed fast otherwise) until the connection is back or the
    /// maintenance is over. Default `None`: only `NodeMaintenanceStart` opens it.
    pub azure_hold_before_start: Option<Duration>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            minimum_calls: 20,
            open_wait: Duration::from_secs(1),
            max_open_wait: Duration::from_secs(30),
            half_open_probes: 1,
            azure_hold_max: Duration::from_secs(60),
            handoff_hold: Duration::from_secs(15),
            mode: OpenMode::FailFast,
            azure_hold_before_start: None,
        }
    }
}

/// The share of a wait that jitter may take off.
const JITTER: f64 = 0.2;

impl CircuitBreakerConfig {
    /// The wait after the `opening`-th opening in a row (from 1): `open_wait` doubled each
    /// time, capped at `max_open_wait`, then shortened by up to 20% at random.
    pub(crate) fn open_wait_for(&self, opening: u32) -> Duration {
        let doubled = self
            .open_wait
            .saturating_mul(1u32 << opening.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_open_wait.max(self.open_wait));
        capped.mul_f64(1.0 - JITTER * fastrand::f64())
    }

    /// The probes a half-open circuit allows, at least one.
    pub(crate) fn probes(&self) -> u8 {
        self.half_open_probes.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_wait_doubles_is_capped_and_jittered() {
        let c = CircuitBreakerConfig::default();
        let s = Duration::from_secs;
        for (opening, full) in [(1, s(1)), (2, s(2)), (3, s(4)), (5, s(16)), (6, s(30))] {
            let w = c.open_wait_for(opening);
            assert!(w <= full && w >= full.mul_f64(0.8), "{opening}: {w:?}");
        }
        assert!(c.open_wait_for(u32::MAX) <= s(30));
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| c.open_wait_for(3)).collect();
        assert!(waits.len() > 1, "jittered");
    }
}
