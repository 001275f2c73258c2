//! Deadlines that fit in an atomic word.
//!
//! The maintenance state, the circuit breaker and the manual relaxation switch are read on every
//! command, so they keep their deadlines as nanoseconds since one process-wide epoch in an
//! `AtomicU64` instead of an `Instant` behind a lock. This is the one place that converts
//! between the two, and that turns a duration into a timer's deadline. Every conversion saturates: a `Duration::MAX` from a configuration becomes
//! "never", not a panic.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The instant every stored deadline counts from, fixed on first use: as long before it as
/// the platform's clock allows (up to a day), so that an instant read just before the first use
/// (or by a Tokio clock paused earlier) still converts to its own value rather than to 0.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        [86_400, 3_600, 60, 1]
            .into_iter()
            .find_map(|s| now.checked_sub(Duration::from_secs(s)))
            .unwrap_or(now)
    })
}

/// A duration in nanoseconds, `u64::MAX` when it does not fit (about 584 years).
pub(crate) fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `t` as nanoseconds since the epoch (0 for anything before it).
pub(crate) fn nanos(t: Instant) -> u64 {
    to_nanos(t.saturating_duration_since(epoch()))
}

/// Now, as nanoseconds since the epoch.
pub(crate) fn now() -> u64 {
    nanos(Instant::now())
}

/// The instant `n` nanoseconds after the epoch, if the platform's clock can represent it.
pub(crate) fn instant(n: u64) -> Option<Instant> {
    epoch().checked_add(Duration::from_nanos(n))
}

/// `d` from `from` (nanoseconds since the epoch), saturating.
pub(crate) fn after(from: u64, d: Duration) -> u64 {
    from.saturating_add(to_nanos(d))
}

/// A timer deadline `d` after `from`; a duration too long for the clock gives one about a
/// century away rather than an overflow.
pub(crate) fn deadline(from: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    from.checked_add(d)
        .or_else(|| from.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        let t = Instant::now() + Duration::from_millis(5);
        let back = instant(nanos(t)).unwrap();
        assert!(back <= t && t - back < Duration::from_micros(1));
        assert_eq!(to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(after(now(), Duration::MAX), u64::MAX);
        assert_eq!(nanos(epoch()), 0);
        let before = Instant::now();
        assert!(
            nanos(before) > 0,
            "an instant read before first use keeps its value"
        );
    }
}
