//! How HandoffRetry moves, reconnects and retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::command::Command;
use crate::error::{Error, Execution};

/// Decides whether [`HandoffRetry`](super::HandoffRetry) sends a command again on the next
/// connection after the one it went to ended under it.
///
/// Shaped like tower's retry `Policy`, with one difference: the command comes back from the
/// connection that failed it, so nothing is cloned up front. The decision is made on
/// [`Error::execution`]: a command that did not run ([`Execution::NotRun`]) is safe to send again
/// whatever the policy; one that may have run ([`Execution::MayHaveRun`]) only if the policy says
/// so. [`Resend`] is the default; implement this trait for a rule of your own (per key prefix,
/// say) and set it with [`HandoffConfig::resend`].
///
/// ```
/// use redis_handoff::handoff::{HandoffConfig, ResendPolicy};
/// use redis_handoff::{Command, Error};
///
/// /// Sends again whatever did not run, and lost `INCR`s on `stats:` keys (counts may drift).
/// #[derive(Debug)]
/// struct StatsMayDrift;
///
/// impl ResendPolicy for StatsMayDrift {
///     fn resend(&self, command: &Command, error: &Error) -> bool {
///         error.certainly_not_executed()
///             || (error.may_have_executed()
///                 && command.name() == "INCR"
///                 && command.arg_at(1).is_some_and(|k| k.starts_with(b"stats:")))
///     }
/// }
///
/// let config = HandoffConfig::default().resend(StatsMayDrift);
/// ```
///
/// [`Error::execution`]: crate::Error::execution
/// [`Execution::NotRun`]: crate::error::Execution::NotRun
/// [`Execution::MayHaveRun`]: crate::error::Execution::MayHaveRun
///
/// A pipeline asks the policy once per command, and is sent again only when every answer is
/// yes; a transaction is only ever sent again when it did not run. A command the server refused
/// for now (`LOADING`, `MASTERDOWN`) did not run: the policy is asked at the first refusal (a
/// policy that says no makes the caller get the refusal at once), and the command is tried
/// again after waits of 10 ms doubling to 640 ms, eight times (about 1.9 s, unless the caller's
/// timeout ends it first), and then the caller gets the refusal. A dedicated stack's commands
/// are tried again at most three times, after 10, 20 and 40 ms. A `TRYAGAIN` (a cluster slot
/// being migrated under a multi-key command) is never sent again here: it is an answer about
/// the cluster's slots, which [`Cluster`](crate::Cluster) waits out with its slot map and
/// retry budget.
pub trait ResendPolicy: fmt::Debug + Send + Sync + 'static {
    /// Whether `command`, failed with `error` because its connection ended, is sent again. At
    /// most three resends are made whatever this says.
    fn resend(&self, command: &Command, error: &Error) -> bool;
}

/// The built-in [`ResendPolicy`]: which commands that may have run (written, reply lost) are sent
/// again. Commands that did not run are always sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Resend {
    /// Never: such a command fails with [`Error::ConnectionLost`](crate::Error::ConnectionLost).
    Never,
    /// Only read-only and idempotent commands ([`Command::is_idempotent`](crate::Command::is_idempotent)).
    #[default]
    SafeOnly,
    /// Every command, accepting that some may run twice.
    Always,
}

impl ResendPolicy for Resend {
    fn resend(&self, command: &Command, error: &Error) -> bool {
        match error.execution() {
            Execution::NotRun => true,
            Execution::MayHaveRun => match self {
                Resend::Never => false,
                Resend::SafeOnly => command.is_idempotent(),
                Resend::Always => true,
            },
            // Answered: there is nothing to send again.
            _ => false,
        }
    }
}

/// Settings of [`HandoffRetry`](super::HandoffRetry) for reconnects and resends. The handoff's own
/// bounds (`handoff_timeout`, `max_handoff_retries`) come from the
/// [`MaintenanceConfig`](crate::MaintenanceConfig), where all maintenance settings live.
///
/// Build it with struct update syntax (`HandoffConfig { wait_for_connection: d, ..Default::default() }`)
/// and [`HandoffConfig::resend`] for the resend policy.
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
    /// Which lost commands are sent again; [`Resend::SafeOnly`] by default.
    pub resend: Arc<dyn ResendPolicy>,
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
            resend: Arc::new(Resend::SafeOnly),
            limiter: None,
        }
    }
}

impl HandoffConfig {
    /// The same settings with `policy` deciding which lost commands are sent again.
    #[must_use]
    pub fn resend(mut self, policy: impl ResendPolicy) -> Self {
        self.resend = Arc::new(policy);
        self
    }

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
    fn the_default_resend_policy_decides_on_whether_the_command_ran() {
        use crate::cmd;
        let unsent = Error::NotSent {
            reason: "closed".into(),
        };
        let lost = Error::ConnectionLost {
            reason: "reset".into(),
        };
        let answered = Error::Server(crate::ServerError::new("ERR no"));
        for policy in [Resend::Never, Resend::SafeOnly, Resend::Always] {
            assert!(policy.resend(&cmd!("INCR", "k"), &unsent), "{policy:?}");
            assert!(!policy.resend(&cmd!("GET", "k"), &answered), "{policy:?}");
        }
        assert!(!Resend::Never.resend(&cmd!("GET", "k"), &lost));
        assert!(Resend::SafeOnly.resend(&cmd!("GET", "k"), &lost));
        assert!(!Resend::SafeOnly.resend(&cmd!("INCR", "k"), &lost));
        assert!(Resend::Always.resend(&cmd!("INCR", "k"), &lost));
        assert_eq!(format!("{:?}", HandoffConfig::default().resend), "SafeOnly");
    }

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
