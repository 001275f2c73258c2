//! Command deadlines kept by the I/O task.
//!
//! A [`RelaxedTimeout`](crate::relaxed_timeout::RelaxedTimeout) over an arbitrary service keeps
//! its commands' deadlines in a table of its own, with a waker per waiting command (see
//! `relaxed_timeout::deadlines`). The fused [`Stack`](crate::Stack) knows the service below it is
//! a connection, which already holds every command it owes an answer to, in order. So the
//! Stack hands each command's deadline to the connection with the command, and the I/O task
//! keeps it: once per tick while commands with a deadline are outstanding, it looks through
//! what it owes and answers those whose deadline has passed with [`Error::Timeout`], keeping
//! their place, so that their late replies are read and dropped. A command costs its caller
//! no lock, no waker and no table slot; the I/O task's look is one pass over what it owes,
//! twenty times per normal timeout at most.
//!
//! The rules are the timeout layer's own ([`Expiry::check`] is what both use): a command sent
//! before a maintenance began moves to the relaxed deadline when its normal one passes while
//! the endpoint is relaxed (the I/O task asks the relaxation the Stack gave the connection),
//! and a deadline is noticed at the first tick after it: up to a tick late, never early.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::relaxed_timeout::Relaxation;

/// Shortest and longest tick.
const MIN_TICK: Duration = Duration::from_millis(1);
const MAX_TICK: Duration = Duration::from_millis(50);

/// How often deadlines of `budget` are looked at: a twentieth of it, within 1 ms and 50 ms.
pub(crate) fn tick_for(budget: Duration) -> Duration {
    (budget / 20).clamp(MIN_TICK, MAX_TICK)
}

/// One request's deadline: when it was sent, its budget, and the longer budget it gets if its
/// endpoint is relaxed by then. Read from Tokio's clock, so that paused-time tests see it pass.
/// It travels with every command, so it is kept small (24 bytes, and an `Option<Expiry>` no
/// larger): budgets in whole milliseconds, rounded up (a deadline is never early), `u32::MAX`
/// for one beyond about 49 days, which never comes.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    started: Instant,
    budget: Budget,
}

/// An [`Expiry`] but for its start: worked out once for the commands that share it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    budget_ms: u32,
    /// Until the relaxed budget is in force: that budget, if longer, or 0 for none (at most
    /// [`EXTEND_NEVER`], which stands for one that never runs out); and in the top bit
    /// ([`RELAXED`]) whether the relaxed budget is the one in force.
    extend: u32,
}

/// The top bit of [`Budget::extend`]: the relaxed budget is the one in force.
const RELAXED: u32 = 1 << 31;
/// The largest relaxed budget kept: one of this many milliseconds (about 24 days) or more
/// never runs out.
const EXTEND_NEVER: u32 = RELAXED - 1;

impl Budget {
    /// `budget`; `extend` is the relaxed budget it moves to if the endpoint is relaxed when
    /// `budget` runs out; `relaxed` says whether `budget` already is the relaxed one.
    pub(crate) fn new(budget: Duration, relaxed: bool, extend: Option<Duration>) -> Self {
        let extend = extend.map_or(0, |e| millis(e).clamp(1, EXTEND_NEVER));
        Budget {
            budget_ms: millis(budget),
            extend: extend | if relaxed { RELAXED } else { 0 },
        }
    }

    fn relaxed(&self) -> bool {
        self.extend & RELAXED != 0
    }
}

/// The relaxation a connection's deadlines follow: the one of the stack that sends on it.
pub(crate) type SharedRelaxation = Arc<dyn Relaxation>;

/// `d` in whole milliseconds, rounded up; `u32::MAX` when it does not fit.
fn millis(d: Duration) -> u32 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl Expiry {
    /// A request sent at `started` with `budget`; `extend` is the relaxed budget it moves to
    /// if its endpoint is relaxed when `budget` runs out; `relaxed` says whether `budget`
    /// already is the relaxed one.
    #[inline]
    pub(crate) fn new(
        started: Instant,
        budget: Duration,
        relaxed: bool,
        extend: Option<Duration>,
    ) -> Self {
        Expiry::from_budget(started, Budget::new(budget, relaxed, extend))
    }

    /// A request sent at `started` with `budget`.
    #[inline]
    pub(crate) fn from_budget(started: Instant, budget: Budget) -> Self {
        Expiry { started, budget }
    }

    /// When it times out (a century away for a budget that never runs out).
    #[inline]
    pub(crate) fn deadline(&self) -> Instant {
        let budget = match self.budget.budget_ms {
            u32::MAX => Duration::MAX,
            ms => Duration::from_millis(u64::from(ms)),
        };
        crate::clock::deadline(self.started, budget)
    }

    /// At `now`, with `relaxed` saying whether the endpoint is relaxed (asked only once the
    /// deadline has passed): `None` while the request may still wait (its deadline moved on to
    /// the relaxed one if a maintenance began since it was sent), or the error to fail it with.
    #[inline]
    pub(crate) fn check(&mut self, now: Instant, relaxed: impl FnOnce() -> bool) -> Option<Error> {
        let elapsed = now.saturating_duration_since(self.started);
        // Whether a budget of `ms` has run out by now; `u32::MAX` never does.
        let past = |ms: u32| ms != u32::MAX && elapsed >= Duration::from_millis(u64::from(ms));
        if !past(self.budget.budget_ms) {
            return None;
        }
        let b = &mut self.budget;
        let extend = b.extend & EXTEND_NEVER;
        // Moved on once at most.
        b.extend &= RELAXED;
        if extend > b.budget_ms && relaxed() {
            b.extend = RELAXED;
            b.budget_ms = if extend == EXTEND_NEVER {
                u32::MAX
            } else {
                extend
            };
            if !past(b.budget_ms) {
                return None;
            }
        }
        Some(Error::Timeout {
            after: elapsed,
            relaxed: self.budget.relaxed(),
        })
    }

    /// Its budget in whole milliseconds (`u32::MAX`: one that never runs out).
    #[inline]
    pub(crate) fn budget_ms(&self) -> u32 {
        self.budget.budget_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_until_the_deadline_then_fails_with_a_timeout() {
        let t0 = Instant::now();
        let mut e = Expiry::new(t0, ms(100), false, None);
        assert!(e.check(t0, || true).is_none());
        assert_eq!(e.deadline(), t0 + ms(100));
        match e.check(t0 + ms(101), || true) {
            Some(Error::Timeout { after, relaxed }) => {
                assert!(after >= ms(100) && after < ms(102), "{after:?}");
                assert!(!relaxed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_relaxation_that_began_moves_the_deadline_once() {
        let t0 = Instant::now();
        let mut e = Expiry::new(t0, ms(100), false, Some(ms(1000)));
        assert!(e.check(t0 + ms(100), || true).is_none(), "moved on");
        assert_eq!(e.deadline(), t0 + ms(1000));
        let err = e.check(t0 + ms(1000), || true);
        assert!(matches!(err, Some(Error::Timeout { relaxed: true, .. })));
    }

    #[test]
    fn without_a_relaxation_the_normal_deadline_holds_and_is_not_asked_before_it() {
        let t0 = Instant::now();
        let mut e = Expiry::new(t0, ms(100), false, Some(ms(1000)));
        assert!(e
            .check(t0, || panic!("asked before the deadline"))
            .is_none());
        let err = e.check(t0 + ms(100), || false);
        assert!(matches!(err, Some(Error::Timeout { relaxed: false, .. })));
    }

    #[test]
    fn budgets_beyond_the_clock_never_time_out() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(86_400 * 365);
        let mut e = Expiry::new(t0, ms(10), false, Some(Duration::MAX));
        assert!(e.check(t0 + ms(10), || true).is_none());
        assert!(e.deadline() > far);
        let e = Expiry::new(t0, Duration::MAX, true, None);
        assert!(e.deadline() > far);
    }

    #[test]
    fn budgets_round_up_to_whole_milliseconds_so_no_deadline_is_early() {
        let t0 = Instant::now();
        let e = Expiry::new(t0, Duration::from_micros(150_500), false, None);
        assert_eq!(e.deadline(), t0 + ms(151));
        let e = Expiry::new(t0, ms(150), false, None);
        assert_eq!(e.deadline(), t0 + ms(150));
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_secs(100 * 86_400)), u32::MAX);
    }

    #[test]
    fn ticks_follow_the_budget_within_bounds() {
        assert_eq!(tick_for(Duration::from_secs(1)), ms(50));
        assert_eq!(tick_for(ms(200)), ms(10));
        assert_eq!(tick_for(Duration::ZERO), MIN_TICK);
        assert_eq!(tick_for(Duration::MAX), MAX_TICK);
        let e = Expiry::new(Instant::now(), ms(200), false, None);
        assert_eq!(e.budget_ms(), 200);
    }
}
