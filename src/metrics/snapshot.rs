//! [`MetricsSnapshot`]: what [`Metrics::snapshot`](super::Metrics::snapshot) returns, plain
//! counts and percentiles, with a [`Display`](fmt::Display) that prints a table.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency distribution summed up: count, extremes, mean and percentiles.
///
/// Values are within about 2.5% of the recorded ones: the recorder's buckets are at most 1/32
/// of their value wide and stand for their middle, and the histogram they are merged into
/// keeps two significant digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// How many values were recorded.
    pub count: u64,
    /// The smallest.
    pub min: Duration,
    /// The mean.
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The 99.9th percentile.
    pub p999: Duration,
    /// The largest.
    pub max: Duration,
}

impl Latency {
    /// Sums up a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let at = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
        Latency {
            count: h.len(),
            min: Duration::from_nanos(h.min()),
            mean: Duration::from_nanos(h.mean() as u64),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_nanos(h.max()),
        }
    }
}

/// What became of the commands that went through a [`MetricsHook`](super::MetricsHook).
///
/// Every command is counted once, under one outcome; [`retried`](Self::retried) is apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcomes {
    /// Answered with a reply.
    pub ok: u64,
    /// Answered with an error reply ([`ErrorClass::Server`](crate::ErrorClass::Server)).
    pub server_error: u64,
    /// Timed out under the normal timeout ([`Error::Timeout`](crate::Error::Timeout) with
    /// `relaxed: false`).
    pub timeout: u64,
    /// Timed out under the relaxed timeout, during maintenance (`relaxed: true`).
    pub relaxed_timeout: u64,
    /// Failed fast because the circuit was open ([`Error::CircuitOpen`](crate::Error::CircuitOpen)).
    pub circuit_open: u64,
    /// Failed because the connection was lost, closed or could not be made
    /// ([`ErrorClass::Connection`](crate::ErrorClass::Connection): `ConnectionLost`, `NotSent`,
    /// connect errors).
    pub connection_lost: u64,
    /// Failed for another reason (a usage or configuration error).
    pub other_error: u64,
    /// Dropped by the caller before an answer came (their time is not in the latencies).
    pub cancelled: u64,
    /// Commands sent again by [`HandoffRetry`](crate::handoff::HandoffRetry) after their
    /// connection ended, as the stacks of the followed maintenance handles published them
    /// ([`Metrics::follow`](super::Metrics::follow)). A retried command is also counted once
    /// under its final outcome.
    pub retried: u64,
}

impl Outcomes {
    /// Every command counted, each under its one outcome (retries not added).
    pub fn total(&self) -> u64 {
        self.ok + self.errors() + self.cancelled
    }

    /// The commands that failed.
    pub fn errors(&self) -> u64 {
        self.server_error
            + self.timeout
            + self.relaxed_timeout
            + self.circuit_open
            + self.connection_lost
            + self.other_error
    }
}

/// The latency of one command name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandLatency {
    /// The command's name in upper case, or `"other"` for the names beyond the first 64.
    pub name: String,
    /// Its latency, whatever the outcome.
    pub latency: Latency,
}

/// How many maintenance notices of one type were received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotificationCount {
    /// The type: a push notification's name (`"MOVING"`) or an Azure event type
    /// (`"NodeMaintenanceStarting"`; `"Unknown"` for types this crate does not know).
    pub name: &'static str,
    /// Received, as the hooks saw them (a broadcast reaching several connections counts once
    /// per connection).
    pub received: u64,
    /// Of those, how many were processed (neither skipped by a hook nor a repeat).
    pub applied: u64,
}

/// The maintenance side: notifications, handoffs, relaxed timeouts, the circuit and the
/// connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceStats {
    /// Notices received per type, for every type seen at least once.
    pub notifications: Vec<NotificationCount>,
    /// Notices suppressed as repeats.
    pub duplicates: u64,
    /// Notices skipped by a pre-hook.
    pub skipped: u64,
    /// How long each notice took to process (hooks, de-duplication, state update, publishing).
    pub processing: Latency,
    /// Malformed notifications and Azure messages that were dropped.
    pub errors: u64,
    /// Handoffs begun.
    pub handoffs_started: u64,
    /// Handoffs that switched to their new connection.
    pub handoffs_succeeded: u64,
    /// Handoffs where every attempt failed.
    pub handoffs_failed: u64,
    /// Time from the start of a successful handoff to its new connection being ready (the
    /// switch follows at once).
    pub handoff_duration: Latency,
    /// Time from the start of a failed handoff to its failure.
    pub failed_handoff_duration: Latency,
    /// Periods of relaxed timeouts begun (per configured endpoint).
    pub relaxations: u64,
    /// Configured endpoints whose timeouts are relaxed now.
    pub relaxed_now: u64,
    /// Total time spent relaxed, over every endpoint, periods under way included.
    pub time_relaxed: Duration,
    /// Times the circuit opened.
    pub circuit_opened: u64,
    /// Times the circuit let a trial command through.
    pub circuit_half_opened: u64,
    /// Times the circuit closed.
    pub circuit_closed: u64,
    /// Total time the circuit was open, over the periods that have ended.
    pub time_circuit_open: Duration,
    /// Connections opened: handshakes reported by the notification demux, new connections of
    /// handoffs, reconnects (each connection once).
    pub connections_opened: u64,
    /// Connections closed: lost without notice, or drained and closed after a handoff.
    pub connections_closed: u64,
    /// Reconnects after an unannounced loss that succeeded.
    pub reconnects: u64,
    /// Outages where every reconnect attempt failed.
    pub reconnect_failures: u64,
}

impl MaintenanceStats {
    /// How many notices of this type were received (`"MOVING"`, `"NodeMaintenanceEnded"`).
    pub fn notifications(&self, name: &str) -> u64 {
        self.notifications
            .iter()
            .filter(|n| n.name.eq_ignore_ascii_case(name))
            .map(|n| n.received)
            .sum()
    }

    /// How many notices were received, of every type.
    pub fn total_notifications(&self) -> u64 {
        self.notifications.iter().map(|n| n.received).sum()
    }
}

/// A connection pool's handoff queue and workers, as the pool last reported them
/// ([`Metrics::set_handoff_queue`](super::Metrics::set_handoff_queue),
/// [`Metrics::set_handoff_workers`](super::Metrics::set_handoff_workers)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Handoffs waiting for a worker now.
    pub queue_depth: u64,
    /// The most that ever waited.
    pub queue_peak: u64,
    /// How many may wait.
    pub queue_capacity: u64,
    /// Workers running a handoff now.
    pub workers_busy: u64,
    /// The most that ever ran at once.
    pub workers_peak: u64,
    /// How many workers there are.
    pub workers_max: u64,
}

impl PoolStats {
    /// The share of workers busy now, from 0 to 1 (0 with no workers).
    pub fn utilisation(&self) -> f64 {
        if self.workers_max == 0 {
            0.0
        } else {
            self.workers_busy as f64 / self.workers_max as f64
        }
    }

    fn reported(&self) -> bool {
        self.queue_capacity > 0 || self.workers_max > 0 || self.queue_peak > 0
    }
}

/// Counts and percentiles at one moment; see [`Metrics::snapshot`](super::Metrics::snapshot).
/// `Display` prints a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// What became of the commands.
    pub outcomes: Outcomes,
    /// The latency of every command, whatever its outcome (cancelled ones aside).
    pub latency: Latency,
    /// The latency per command name, most used first, `"other"` last.
    pub by_command: Vec<CommandLatency>,
    /// The maintenance side.
    pub maintenance: MaintenanceStats,
    /// A pool's handoff queue and workers.
    pub pool: PoolStats,
}

impl MetricsSnapshot {
    /// The latency of one command name (any case), if it was recorded under its own name.
    pub fn command(&self, name: &str) -> Option<&Latency> {
        self.by_command
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| &c.latency)
    }
}

// ===== Display =====

/// A duration in a short human form: `850ns`, `35.2µs`, `1.23ms`, `2.50s`.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let text = if ns < 1_000 {
            format!("{ns}ns")
        } else if ns < 1_000_000 {
            format!("{:.1}µs", ns as f64 / 1e3)
        } else if ns < 1_000_000_000 {
            format!("{:.2}ms", ns as f64 / 1e6)
        } else {
            format!("{:.2}s", ns as f64 / 1e9)
        };
        f.pad(&text)
    }
}

fn latency_row(f: &mut fmt::Formatter<'_>, label: &str, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "  {:<22}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        label,
        l.count,
        Short(l.min),
        Short(l.mean),
        Short(l.p50),
        Short(l.p90),
        Short(l.p99),
        Short(l.p999),
        Short(l.max)
    )
}

fn latency_header(f: &mut fmt::Formatter<'_>, title: &str) -> fmt::Result {
    writeln!(
        f,
        "{:<24}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        title, "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
    )
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcomes;
        writeln!(f, "commands")?;
        for (label, n) in [
            ("total", o.total()),
            ("ok", o.ok),
            ("server error", o.server_error),
            ("timeout", o.timeout),
            ("relaxed timeout", o.relaxed_timeout),
            ("circuit open", o.circuit_open),
            ("connection lost", o.connection_lost),
            ("other error", o.other_error),
            ("cancelled", o.cancelled),
            ("retried", o.retried),
        ] {
            writeln!(f, "  {label:<22}{n:>9}")?;
        }
        latency_header(f, "latency")?;
        latency_row(f, "all", &self.latency)?;
        for c in &self.by_command {
            latency_row(f, &c.name, &c.latency)?;
        }

        let m = &self.maintenance;
        writeln!(
            f,
            "{:<24}{:>12} {:>9}",
            "maintenance notices", "received", "applied"
        )?;
        for n in &m.notifications {
            writeln!(f, "  {:<22}{:>12} {:>9}", n.name, n.received, n.applied)?;
        }
        for (label, n) in [
            ("duplicates", m.duplicates),
            ("skipped", m.skipped),
            ("malformed", m.errors),
        ] {
            writeln!(f, "  {label:<22}{n:>12}")?;
        }
        latency_header(f, "maintenance timings")?;
        latency_row(f, "notice processing", &m.processing)?;
        latency_row(f, "handoff", &m.handoff_duration)?;
        latency_row(f, "failed handoff", &m.failed_handoff_duration)?;
        writeln!(f, "handoffs and connections")?;
        for (label, n) in [
            ("handoffs started", m.handoffs_started),
            ("handoffs succeeded", m.handoffs_succeeded),
            ("handoffs failed", m.handoffs_failed),
            ("connections opened", m.connections_opened),
            ("connections closed", m.connections_closed),
            ("reconnects", m.reconnects),
            ("reconnect failures", m.reconnect_failures),
            ("relaxations", m.relaxations),
            ("relaxed now", m.relaxed_now),
            ("circuit opened", m.circuit_opened),
            ("circuit half-open", m.circuit_half_opened),
            ("circuit closed", m.circuit_closed),
        ] {
            writeln!(f, "  {label:<22}{n:>9}")?;
        }
        writeln!(f, "  {:<22}{:>9}", "time relaxed", Short(m.time_relaxed))?;
        writeln!(
            f,
            "  {:<22}{:>9}",
            "time circuit open",
            Short(m.time_circuit_open)
        )?;
        if self.pool.reported() {
            let p = &self.pool;
            writeln!(f, "pool")?;
            writeln!(
                f,
                "  {:<22}{:>9} of {} (peak {})",
                "handoff queue", p.queue_depth, p.queue_capacity, p.queue_peak
            )?;
            writeln!(
                f,
                "  {:<22}{:>9} of {} busy (peak {}, {:.0}%)",
                "handoff workers",
                p.workers_busy,
                p.workers_max,
                p.workers_peak,
                p.utilisation() * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_read_well() {
        let s = |d| Short(d).to_string();
        assert_eq!(s(Duration::from_nanos(850)), "850ns");
        assert_eq!(s(Duration::from_nanos(35_240)), "35.2µs");
        assert_eq!(s(Duration::from_micros(1_234)), "1.23ms");
        assert_eq!(s(Duration::from_millis(2_500)), "2.50s");
    }

    #[test]
    fn the_table_names_every_row() {
        let mut snap = MetricsSnapshot::default();
        snap.outcomes.ok = 7;
        snap.by_command.push(CommandLatency {
            name: "GET".into(),
            latency: Latency {
                count: 7,
                ..Latency::default()
            },
        });
        snap.maintenance.notifications.push(NotificationCount {
            name: "MOVING",
            received: 2,
            applied: 1,
        });
        let table = snap.to_string();
        for word in ["ok", "GET", "MOVING", "handoffs started", "time relaxed"] {
            assert!(table.contains(word), "{word} missing from\n{table}");
        }
        assert!(!table.contains("pool"), "no pool reported");
    }
}
