//! Export through the [`metrics`] facade (feature `metrics`): the names and labels
//! [`Metrics::export`] uses, which are those other Redis clients emit with OpenTelemetry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use super::recorder::{bucket_value, Failure, BUCKETS, ERROR_KINDS};
use super::store::{notice_name, LazyBuckets, Metrics, NOTICE_TYPES};

/// `db.client.operation.duration`: the time of each command, in seconds (histogram; labels
/// `db.system.name`, `db.operation.name`).
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `redis.client.errors`: failed commands (counter; label `error.type`: `server_error`,
/// `timeout`, `relaxed_timeout`, `circuit_open`, `connection_lost`, `other_error`).
pub const ERRORS: &str = "redis.client.errors";
/// `redis.client.operation.cancelled`: commands dropped before their answer (counter).
pub const CANCELLED: &str = "redis.client.operation.cancelled";
/// `redis.client.operation.retries`: commands sent again after their connection ended
/// (counter).
pub const RETRIES: &str = "redis.client.operation.retries";
/// `redis.client.maintenance.notifications`: maintenance notices received (counter; label
/// `redis.client.connection.notification`: `MOVING`, `MIGRATING`, ..., or an Azure type).
pub const NOTIFICATIONS: &str = "redis.client.maintenance.notifications";
/// `redis.client.maintenance.notifications.suppressed`: notices not acted on (counter; label
/// `reason`: `duplicate` or `skipped`).
pub const NOTIFICATIONS_SUPPRESSED: &str = "redis.client.maintenance.notifications.suppressed";
/// `redis.client.maintenance.notifications.dropped`: malformed notices dropped (counter).
pub const NOTIFICATIONS_DROPPED: &str = "redis.client.maintenance.notifications.dropped";
/// `redis.client.maintenance.notification.duration`: time to process a notice, in seconds
/// (histogram).
pub const NOTIFICATION_DURATION: &str = "redis.client.maintenance.notification.duration";
/// `redis.client.connection.handoff`: connections handed off to a new endpoint (counter).
pub const HANDOFF: &str = "redis.client.connection.handoff";
/// `redis.client.connection.handoff.started`: handoffs begun (counter).
pub const HANDOFF_STARTED: &str = "redis.client.connection.handoff.started";
/// `redis.client.connection.handoff.failed`: handoffs where every attempt failed (counter).
pub const HANDOFF_FAILED: &str = "redis.client.connection.handoff.failed";
/// `redis.client.connection.handoff.duration`: time from a handoff's start to its new
/// connection, or to its failure, in seconds (histogram; label
/// `redis.client.connection.handoff.result`: `succeeded` or `failed`).
pub const HANDOFF_DURATION: &str = "redis.client.connection.handoff.duration";
/// `redis.client.connection.relaxed_timeout`: endpoints whose timeouts are relaxed now (gauge,
/// up on a relaxation, down at its end).
pub const RELAXED_TIMEOUT: &str = "redis.client.connection.relaxed_timeout";
/// `redis.client.connection.relaxed_timeout.time`: time spent relaxed, in milliseconds
/// (counter).
pub const RELAXED_TIME: &str = "redis.client.connection.relaxed_timeout.time";
/// `redis.client.circuit.transitions`: circuit changes (counter; label `state`: `open`,
/// `half_open`, `closed`).
pub const CIRCUIT_TRANSITIONS: &str = "redis.client.circuit.transitions";
/// `redis.client.connection.opened`: connections opened (counter).
pub const CONNECTIONS_OPENED: &str = "redis.client.connection.opened";
/// `redis.client.connection.closed`: connections closed (counter).
pub const CONNECTIONS_CLOSED: &str = "redis.client.connection.closed";
/// `redis.client.connection.reconnects`: reconnects after a loss (counter; label `result`:
/// `succeeded` or `failed`).
pub const RECONNECTS: &str = "redis.client.connection.reconnects";
/// `redis.client.handoff.queue.depth`: a pool's handoffs waiting for a worker (gauge).
pub const QUEUE_DEPTH: &str = "redis.client.handoff.queue.depth";
/// `redis.client.handoff.workers.busy`: a pool's handoff workers busy (gauge).
pub const WORKERS_BUSY: &str = "redis.client.handoff.workers.busy";
/// `redis.client.handoff.workers.utilization`: the share of a pool's handoff workers busy,
/// 0 to 1 (gauge).
pub const WORKERS_UTILIZATION: &str = "redis.client.handoff.workers.utilization";

const SYSTEM: (&str, &str) = ("db.system.name", "redis");

/// What has been handed to the facade so far, to send only what is new.
#[derive(Default)]
pub(crate) struct Exported {
    commands: HashMap<String, Vec<u64>>,
    failures: [u64; ERROR_KINDS],
    notices: [u64; NOTICE_TYPES],
    processing: Vec<u64>,
    handoff: Vec<u64>,
    failed_handoff: Vec<u64>,
    counters: HashMap<(&'static str, &'static str), u64>,
}

impl Exported {
    /// How much `now` grew since the last export under `key`.
    fn delta(&mut self, key: (&'static str, &'static str), now: u64) -> u64 {
        let last = self.counters.entry(key).or_default();
        let d = now.saturating_sub(*last);
        *last = now;
        d
    }
}

/// Per-bucket growth since `last` (updated), as (seconds, count) pairs.
fn bucket_deltas(last: &mut Vec<u64>, now: &[u64]) -> Vec<(f64, usize)> {
    if last.len() != BUCKETS {
        *last = vec![0; BUCKETS];
    }
    let mut out = Vec::new();
    for (i, (l, &n)) in last.iter_mut().zip(now).enumerate() {
        if n > *l {
            let d = usize::try_from(n - *l).unwrap_or(usize::MAX);
            out.push((bucket_value(i) as f64 / 1e9, d));
            *l = n;
        }
    }
    out
}

fn describe() {
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Command execution duration"
    );
    describe_counter!(ERRORS, "Failed commands, by error type");
    describe_counter!(CANCELLED, "Commands dropped before their answer");
    describe_counter!(RETRIES, "Commands sent again after their connection ended");
    describe_counter!(NOTIFICATIONS, "Maintenance notifications received");
    describe_counter!(
        NOTIFICATIONS_SUPPRESSED,
        "Maintenance notifications not acted on: repeats, or skipped by a hook"
    );
    describe_counter!(
        NOTIFICATIONS_DROPPED,
        "Malformed maintenance notifications dropped"
    );
    describe_histogram!(
        NOTIFICATION_DURATION,
        Unit::Seconds,
        "Time to process a maintenance notification"
    );
    describe_counter!(HANDOFF, "Connections handed off to a new endpoint");
    describe_counter!(HANDOFF_STARTED, "Handoffs begun");
    describe_counter!(HANDOFF_FAILED, "Handoffs where every attempt failed");
    describe_histogram!(HANDOFF_DURATION, Unit::Seconds, "Time a handoff took");
    describe_gauge!(RELAXED_TIMEOUT, "Endpoints whose timeouts are relaxed now");
    describe_counter!(
        RELAXED_TIME,
        Unit::Milliseconds,
        "Time spent with relaxed timeouts"
    );
    describe_counter!(CIRCUIT_TRANSITIONS, "Circuit breaker changes of state");
    describe_counter!(CONNECTIONS_OPENED, "Connections opened");
    describe_counter!(CONNECTIONS_CLOSED, "Connections closed");
    describe_counter!(RECONNECTS, "Reconnects after an unannounced loss");
    describe_gauge!(QUEUE_DEPTH, "Handoffs waiting for a worker");
    describe_gauge!(WORKERS_BUSY, "Handoff workers busy");
    describe_gauge!(WORKERS_UTILIZATION, "Share of handoff workers busy");
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    /// Hands what was recorded since the last export to the [`metrics`](::metrics) facade's
    /// recorder (the global one, or a local one set with
    /// [`metrics::with_local_recorder`](::metrics::with_local_recorder)).
    ///
    /// Counters get their growth, histograms the new values (each bucket's middle, with its
    /// count), gauges their current value. Names and labels follow the OpenTelemetry names
    /// other Redis clients emit, so Prometheus and OpenTelemetry exporters take them as they
    /// are:
    ///
    /// | name | kind | labels |
    /// |---|---|---|
    /// | `db.client.operation.duration` (s) | histogram | `db.system.name`, `db.operation.name` |
    /// | `redis.client.errors` | counter | `db.system.name`, `error.type` |
    /// | `redis.client.operation.cancelled`, `redis.client.operation.retries` | counter | `db.system.name` |
    /// | `redis.client.maintenance.notifications` | counter | `redis.client.connection.notification` |
    /// | `redis.client.maintenance.notifications.suppressed` | counter | `reason` |
    /// | `redis.client.maintenance.notifications.dropped` | counter | |
    /// | `redis.client.maintenance.notification.duration` (s) | histogram | |
    /// | `redis.client.connection.handoff` | counter | |
    /// | `redis.client.connection.handoff.started`, `.failed` | counter | |
    /// | `redis.client.connection.handoff.duration` (s) | histogram | `redis.client.connection.handoff.result` |
    /// | `redis.client.connection.relaxed_timeout` | gauge | |
    /// | `redis.client.connection.relaxed_timeout.time` (ms) | counter | |
    /// | `redis.client.circuit.transitions` | counter | `state` |
    /// | `redis.client.connection.opened`, `redis.client.connection.closed` | counter | |
    /// | `redis.client.connection.reconnects` | counter | `result` |
    /// | `redis.client.handoff.queue.depth`, `redis.client.handoff.workers.busy`, `redis.client.handoff.workers.utilization` | gauge | |
    ///
    /// Export from one place: two exports running at once hand over each value once, but a
    /// recorder switched between exports only gets what is new since the last one.
    pub fn export(&self) {
        let inner = &self.inner;
        let mut last = inner.exported.lock().unwrap_or_else(|p| p.into_inner());
        describe();

        // Commands.
        for (name, counts) in self.command_counts() {
            let deltas = bucket_deltas(last.commands.entry(name.clone()).or_default(), &counts);
            if deltas.is_empty() {
                continue;
            }
            let h =
                histogram!(OPERATION_DURATION, SYSTEM.0 => SYSTEM.1, "db.operation.name" => name);
            for (seconds, n) in deltas {
                h.record_many(seconds, n);
            }
        }
        let failures = self.failures();
        for kind in [
            Failure::Server,
            Failure::Timeout,
            Failure::RelaxedTimeout,
            Failure::CircuitOpen,
            Failure::Connection,
            Failure::Other,
        ] {
            let i = kind as usize;
            let d = failures[i].saturating_sub(last.failures[i]);
            last.failures[i] = failures[i];
            if d > 0 {
                let error_type = super::future::outcome_name(Some(kind));
                counter!(ERRORS, SYSTEM.0 => SYSTEM.1, "error.type" => error_type).increment(d);
            }
        }
        let i = Failure::Cancelled as usize;
        let d = failures[i].saturating_sub(last.failures[i]);
        last.failures[i] = failures[i];
        counter!(CANCELLED, SYSTEM.0 => SYSTEM.1).increment(d);
        let d = last.delta((RETRIES, ""), self.retried());
        counter!(RETRIES, SYSTEM.0 => SYSTEM.1).increment(d);

        // Notifications.
        let m = &inner.maintenance;
        for (i, name) in (0..NOTICE_TYPES).map(|i| (i, notice_name(i))) {
            let now = load(&m.notices[i]);
            let d = now.saturating_sub(last.notices[i]);
            last.notices[i] = now;
            if d > 0 {
                counter!(NOTIFICATIONS, "redis.client.connection.notification" => name)
                    .increment(d);
            }
        }
        for (reason, value) in [("duplicate", &m.duplicates), ("skipped", &m.skipped)] {
            let d = last.delta((NOTIFICATIONS_SUPPRESSED, reason), load(value));
            counter!(NOTIFICATIONS_SUPPRESSED, "reason" => reason).increment(d);
        }
        let d = last.delta((NOTIFICATIONS_DROPPED, ""), load(&m.errors));
        counter!(NOTIFICATIONS_DROPPED).increment(d);
        record_new(
            &mut last.processing,
            &m.processing,
            histogram!(NOTIFICATION_DURATION),
        );

        // Handoffs, relaxation, circuit, connections.
        for (name, value) in [
            (HANDOFF, &m.handoffs_succeeded),
            (HANDOFF_STARTED, &m.handoffs_started),
            (HANDOFF_FAILED, &m.handoffs_failed),
            (CONNECTIONS_OPENED, &m.connections_opened),
            (CONNECTIONS_CLOSED, &m.connections_closed),
        ] {
            let d = last.delta((name, ""), load(value));
            counter!(name).increment(d);
        }
        let result = "redis.client.connection.handoff.result";
        record_new(
            &mut last.handoff,
            &m.handoff_duration,
            histogram!(HANDOFF_DURATION, result => "succeeded"),
        );
        record_new(
            &mut last.failed_handoff,
            &m.failed_handoff_duration,
            histogram!(HANDOFF_DURATION, result => "failed"),
        );
        let (relaxed_now, time_relaxed) = m.relaxed();
        gauge!(RELAXED_TIMEOUT).set(relaxed_now as f64);
        let ms = u64::try_from(time_relaxed.as_millis()).unwrap_or(u64::MAX);
        let d = last.delta((RELAXED_TIME, ""), ms);
        counter!(RELAXED_TIME).increment(d);
        for (state, value) in [
            ("open", &m.circuit_opened),
            ("half_open", &m.circuit_half_opened),
            ("closed", &m.circuit_closed),
        ] {
            let d = last.delta((CIRCUIT_TRANSITIONS, state), load(value));
            counter!(CIRCUIT_TRANSITIONS, "state" => state).increment(d);
        }
        for (outcome, value) in [
            ("succeeded", &m.reconnects),
            ("failed", &m.reconnect_failures),
        ] {
            let d = last.delta((RECONNECTS, outcome), load(value));
            counter!(RECONNECTS, "result" => outcome).increment(d);
        }

        // A pool, if one reports.
        let p = &inner.pool;
        if load(&p.workers_max) > 0 || load(&p.queue_capacity) > 0 {
            let busy = load(&p.workers_busy);
            let max = load(&p.workers_max);
            gauge!(QUEUE_DEPTH).set(load(&p.queue_depth) as f64);
            gauge!(WORKERS_BUSY).set(busy as f64);
            let share = if max == 0 {
                0.0
            } else {
                busy as f64 / max as f64
            };
            gauge!(WORKERS_UTILIZATION).set(share);
        }
    }

    /// Calls [`Metrics::export`] every `every` (at least 1 ms), in a background task that ends
    /// when every clone of this handle is gone.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn spawn_exporter(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Metrics { inner }.export();
            }
        })
    }
}

fn record_new(last: &mut Vec<u64>, buckets: &LazyBuckets, h: ::metrics::Histogram) {
    for (seconds, n) in bucket_deltas(last, &buckets.counts()) {
        h.record_many(seconds, n);
    }
}
