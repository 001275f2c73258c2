//! The [`Metrics`] handle: where the command path records, where the maintenance events are
//! counted, and where snapshots come from.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::layer::MetricsHookLayer;
use super::recorder::{
    nanos, to_histogram, Buckets, CommandRecorder, Failure, BUCKETS, ERROR_KINDS, OTHER,
};
use super::snapshot::{
    CommandLatency, Latency, MaintenanceStats, MetricsSnapshot, NotificationCount, Outcomes,
    PoolStats,
};
use crate::endpoint::{ConnectionId, Endpoint};

use crate::maintenance::{
    AzureEventKind, EventKind, HookContext, HookOutcome, Maintenance, MaintenanceEvent, Notice,
    NotificationHook, NotificationKind, Observer, WeakMaintenance,
};

// ===== notice types =====

const PUSH_KINDS: usize = NotificationKind::ALL.len();
/// Push notification kinds, then the known Azure kinds, then unknown Azure types.
pub(crate) const NOTICE_TYPES: usize = PUSH_KINDS + AzureEventKind::KNOWN.len() + 1;

/// The name of notice type `i`, in counter order (`"Unknown"` for unknown Azure types).
pub(crate) fn notice_name(i: usize) -> &'static str {
    match NotificationKind::ALL.get(i) {
        Some(kind) => kind.name(),
        None => AzureEventKind::KNOWN_NAMES
            .get(i - PUSH_KINDS)
            .copied()
            .unwrap_or("Unknown"),
    }
}

fn notice_index(notice: &Notice) -> usize {
    match notice {
        Notice::Push(n) => n.kind().index(),
        Notice::Azure(e) => PUSH_KINDS + e.kind.index(),
    }
}

// ===== the maintenance recorder =====

/// How many connections are remembered to count each one opened once.
const CONNECTIONS_REMEMBERED: usize = 1024;
/// How many handoff starts are remembered, per (endpoint, target) and in all.
const STARTS_PER_TARGET: usize = 16;
const START_TARGETS: usize = 256;

#[derive(Default)]
pub(crate) struct MaintenanceRecorder {
    pub(crate) notices: [AtomicU64; NOTICE_TYPES],
    pub(crate) applied: [AtomicU64; NOTICE_TYPES],
    pub(crate) duplicates: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) processing: LazyBuckets,
    pub(crate) handoffs_started: AtomicU64,
    pub(crate) handoffs_succeeded: AtomicU64,
    pub(crate) handoffs_failed: AtomicU64,
    pub(crate) handoff_duration: LazyBuckets,
    pub(crate) failed_handoff_duration: LazyBuckets,
    pub(crate) relaxations: AtomicU64,
    relaxed_ended: AtomicU64,
    relaxed_since: Mutex<HashMap<Endpoint, Instant>>,
    pub(crate) circuit_opened: AtomicU64,
    pub(crate) circuit_half_opened: AtomicU64,
    pub(crate) circuit_closed: AtomicU64,
    pub(crate) circuit_open_nanos: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) reconnect_failures: AtomicU64,
}

/// Buckets made on first use: most stacks never see a handoff.
#[derive(Default)]
pub(crate) struct LazyBuckets(std::sync::OnceLock<Buckets>);

impl LazyBuckets {
    fn record(&self, d: Duration) {
        self.0.get_or_init(Buckets::new).record_duration(d);
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.0
            .get()
            .map_or_else(|| vec![0; BUCKETS], Buckets::counts)
    }

    fn latency(&self) -> Latency {
        match self.0.get() {
            Some(b) => Latency::from_histogram(&to_histogram(&b.counts())),
            None => Latency::default(),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl MaintenanceRecorder {
    fn relax_begin(&self, endpoint: &Endpoint, at: Instant) {
        let mut since = self.relaxed_since.lock().unwrap_or_else(|p| p.into_inner());
        if !since.contains_key(endpoint) {
            since.insert(endpoint.clone(), at);
            add(&self.relaxations, 1);
        }
    }

    fn relax_end(&self, endpoint: &Endpoint, at: Instant) {
        let began = self
            .relaxed_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(endpoint);
        if let Some(began) = began {
            add(
                &self.relaxed_ended,
                nanos(at.saturating_duration_since(began)),
            );
        }
    }

    /// Endpoints relaxed now, and the time spent relaxed so far.
    pub(crate) fn relaxed(&self) -> (u64, Duration) {
        let now = Instant::now();
        let since = self.relaxed_since.lock().unwrap_or_else(|p| p.into_inner());
        let ongoing: Duration = since
            .values()
            .map(|&t| now.saturating_duration_since(t))
            .sum();
        (
            since.len() as u64,
            Duration::from_nanos(load(&self.relaxed_ended)).saturating_add(ongoing),
        )
    }

    /// Counts one event; `state` is the watching task's memory.
    fn on_event(&self, event: &MaintenanceEvent, state: &mut WatchState) {
        let at = event.at;
        match &event.kind {
            EventKind::Notification(n)
                if n.kind() == NotificationKind::Moving || n.kind().is_start() =>
            {
                self.relax_begin(&event.endpoint, at)
            }
            EventKind::Azure(e) if e.kind.is_start() => self.relax_begin(&event.endpoint, at),
            EventKind::NotificationDropped { .. } => add(&self.errors, 1),
            EventKind::NotificationsEnabled { .. } | EventKind::NotificationsRefused { .. } => {
                self.opened(event, state)
            }
            EventKind::RelaxationEnded { .. } => self.relax_end(&event.endpoint, at),
            EventKind::HandoffStarted { to, .. } => {
                add(&self.handoffs_started, 1);
                state.started(&event.endpoint, to, at);
            }
            EventKind::HandoffConnected { to, took, .. } => {
                self.handoff_duration.record(*took);
                state.finished(&event.endpoint, to);
                self.opened(event, state);
            }
            EventKind::HandoffSwitched { .. } => {
                add(&self.handoffs_succeeded, 1);
                // The handle keeps timeouts relaxed for a while after a switch.
                self.relax_begin(&event.endpoint, at);
            }
            EventKind::HandoffDrained { .. } | EventKind::Disconnected { .. } => {
                add(&self.connections_closed, 1)
            }
            EventKind::HandoffFailed { to, .. } => {
                add(&self.handoffs_failed, 1);
                if let Some(began) = state.finished(&event.endpoint, to) {
                    self.failed_handoff_duration
                        .record(at.saturating_duration_since(began));
                }
            }
            EventKind::CircuitOpened { .. } => add(&self.circuit_opened, 1),
            EventKind::CircuitHalfOpen => add(&self.circuit_half_opened, 1),
            EventKind::CircuitClosed { open_for } => {
                add(&self.circuit_closed, 1);
                add(&self.circuit_open_nanos, nanos(*open_for));
            }
            EventKind::Reconnected { .. } => {
                add(&self.reconnects, 1);
                self.opened(event, state);
            }
            EventKind::ReconnectFailed { .. } => add(&self.reconnect_failures, 1),
            _ => {}
        }
    }

    fn opened(&self, event: &MaintenanceEvent, state: &mut WatchState) {
        if state.first_sight(event) {
            add(&self.connections_opened, 1);
        }
    }

    fn stats(&self) -> MaintenanceStats {
        let notifications = (0..NOTICE_TYPES)
            .filter_map(|i| {
                let received = load(&self.notices[i]);
                (received > 0).then(|| NotificationCount {
                    name: notice_name(i),
                    received,
                    applied: load(&self.applied[i]),
                })
            })
            .collect();
        let (relaxed_now, time_relaxed) = self.relaxed();
        MaintenanceStats {
            notifications,
            duplicates: load(&self.duplicates),
            skipped: load(&self.skipped),
            processing: self.processing.latency(),
            errors: load(&self.errors),
            handoffs_started: load(&self.handoffs_started),
            handoffs_succeeded: load(&self.handoffs_succeeded),
            handoffs_failed: load(&self.handoffs_failed),
            handoff_duration: self.handoff_duration.latency(),
            failed_handoff_duration: self.failed_handoff_duration.latency(),
            relaxations: load(&self.relaxations),
            relaxed_now,
            time_relaxed,
            circuit_opened: load(&self.circuit_opened),
            circuit_half_opened: load(&self.circuit_half_opened),
            circuit_closed: load(&self.circuit_closed),
            time_circuit_open: Duration::from_nanos(load(&self.circuit_open_nanos)),
            connections_opened: load(&self.connections_opened),
            connections_closed: load(&self.connections_closed),
            reconnects: load(&self.reconnects),
            reconnect_failures: load(&self.reconnect_failures),
        }
    }
}

/// What the event observer remembers between events.
#[derive(Default)]
struct WatchState {
    // Connections already counted as opened.
    seen: HashSet<ConnectionId>,
    seen_order: VecDeque<ConnectionId>,
    // When handoffs began, per (configured endpoint, target), oldest first.
    starts: HashMap<(Endpoint, Endpoint), VecDeque<Instant>>,
}

impl WatchState {
    /// Whether the event's connection has not been counted yet. An event that names no
    /// connection cannot be told apart from others, so it is always counted.
    fn first_sight(&mut self, event: &MaintenanceEvent) -> bool {
        let Some(key) = event.connection else {
            return true;
        };
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        while self.seen_order.len() > CONNECTIONS_REMEMBERED {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn started(&mut self, endpoint: &Endpoint, to: &Endpoint, at: Instant) {
        if self.starts.len() >= START_TARGETS {
            self.starts.clear();
        }
        let q = self
            .starts
            .entry((endpoint.clone(), to.clone()))
            .or_default();
        if q.len() >= STARTS_PER_TARGET {
            q.pop_front();
        }
        q.push_back(at);
    }

    fn finished(&mut self, endpoint: &Endpoint, to: &Endpoint) -> Option<Instant> {
        let key = (endpoint.clone(), to.clone());
        let q = self.starts.get_mut(&key)?;
        let began = q.pop_front();
        if q.is_empty() {
            self.starts.remove(&key);
        }
        began
    }
}

// ===== pool =====

#[derive(Default)]
pub(crate) struct PoolRecorder {
    pub(crate) queue_depth: AtomicU64,
    pub(crate) queue_peak: AtomicU64,
    pub(crate) queue_capacity: AtomicU64,
    pub(crate) workers_busy: AtomicU64,
    pub(crate) workers_peak: AtomicU64,
    pub(crate) workers_max: AtomicU64,
}

impl PoolRecorder {
    fn stats(&self) -> PoolStats {
        PoolStats {
            queue_depth: load(&self.queue_depth),
            queue_peak: load(&self.queue_peak),
            queue_capacity: load(&self.queue_capacity),
            workers_busy: load(&self.workers_busy),
            workers_peak: load(&self.workers_peak),
            workers_max: load(&self.workers_max),
        }
    }
}

// ===== Metrics =====

type RetrySource = Box<dyn Fn() -> u64 + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) commands: CommandRecorder,
    pub(crate) maintenance: MaintenanceRecorder,
    pub(crate) pool: PoolRecorder,
    retry_sources: RwLock<Vec<RetrySource>>,
    // The maintenance handles followed: their stacks' resends and their pools' handoff
    // limiters are read at every snapshot. Weak: the handle holds this one as a hook.
    followed: RwLock<Vec<WeakMaintenance>>,
    #[cfg(feature = "metrics")]
    pub(crate) exported: Mutex<super::export::Exported>,
}

/// The metrics of a client stack: per-command latency and outcomes recorded by
/// [`MetricsHook`](super::MetricsHook), and the maintenance side counted from a
/// [`Maintenance`] handle's events and hooks. Cheap to clone; every clone is the same handle.
/// See the [module docs](super).
#[derive(Clone)]
pub struct Metrics {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures = self.inner.commands.failures();
        f.debug_struct("Metrics")
            .field("names", &self.inner.commands.names.entries().len())
            .field("failures", &failures.iter().sum::<u64>())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A handle with nothing recorded.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                commands: CommandRecorder::new(),
                maintenance: MaintenanceRecorder::default(),
                pool: PoolRecorder::default(),
                retry_sources: RwLock::new(Vec::new()),
                followed: RwLock::new(Vec::new()),
                #[cfg(feature = "metrics")]
                exported: Mutex::new(super::export::Exported::default()),
            }),
        }
    }

    /// A [`MetricsHookLayer`] that records into this handle.
    pub fn layer(&self) -> MetricsHookLayer {
        MetricsHookLayer::new(self.clone())
    }

    /// Counts what `maintenance` sees: adds this handle as a notification hook (notices per
    /// type, their processing time), [watches](Metrics::watch) its events (handoffs, relaxed
    /// timeouts, the circuit, connections) and [follows](Metrics::follow) what its stacks
    /// publish (resends, pool gauges). Attach once per maintenance handle: twice counts
    /// everything twice. Needs no Tokio runtime.
    pub fn attach(&self, maintenance: &Maintenance) {
        maintenance.add_hook(self.clone());
        self.watch(maintenance);
        self.follow(maintenance);
    }

    /// Counts `maintenance`'s events from now on, as they are emitted (no task, no buffer: none
    /// is missed), until this handle (every clone) is gone. Notices themselves are counted by
    /// the hook ([`Metrics::attach`] adds both). Each event is also logged at info.
    pub fn watch(&self, maintenance: &Maintenance) {
        maintenance.observe(Arc::new(EventWatch {
            inner: Arc::downgrade(&self.inner),
            state: std::sync::Mutex::new(WatchState::default()),
        }));
    }

    /// Adds a count of retried commands, read at every snapshot, to [`Outcomes::retried`].
    pub fn add_retry_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        self.inner
            .retry_sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(source));
    }

    /// Reads, at every snapshot, what the stacks sharing `maintenance` publish there: the
    /// commands they sent again after their connection ended (added to [`Outcomes::retried`])
    /// and the handoff queue depth and worker utilisation (peaks included) of its pools.
    /// [`Metrics::attach`] does this too. Does not keep the handle alive.
    pub fn follow(&self, maintenance: &Maintenance) {
        self.inner
            .followed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(maintenance.downgrade());
    }

    fn followed(&self) -> Vec<Maintenance> {
        self.inner
            .followed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(WeakMaintenance::upgrade)
            .collect()
    }

    fn refresh_pools(&self) {
        for l in self.followed().iter().flat_map(Maintenance::limiters) {
            self.set_handoff_queue(l.waiting(), l.queue_size());
            self.set_handoff_workers(l.active(), l.workers());
            let p = &self.inner.pool;
            p.queue_peak
                .fetch_max(l.peak_waiting() as u64, Ordering::Relaxed);
            p.workers_peak
                .fetch_max(l.peak_active() as u64, Ordering::Relaxed);
        }
    }

    /// For a connection pool: how many handoffs wait for a worker now, and how many may wait.
    pub fn set_handoff_queue(&self, depth: usize, capacity: usize) {
        let p = &self.inner.pool;
        p.queue_depth.store(depth as u64, Ordering::Relaxed);
        p.queue_peak.fetch_max(depth as u64, Ordering::Relaxed);
        p.queue_capacity.store(capacity as u64, Ordering::Relaxed);
    }

    /// For a connection pool: how many handoff workers are busy now, out of how many.
    pub fn set_handoff_workers(&self, busy: usize, max: usize) {
        let p = &self.inner.pool;
        p.workers_busy.store(busy as u64, Ordering::Relaxed);
        p.workers_peak.fetch_max(busy as u64, Ordering::Relaxed);
        p.workers_max.store(max as u64, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) -> u64 {
        let sources: u64 = self
            .inner
            .retry_sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|f| f())
            .sum();
        sources
            + self
                .followed()
                .iter()
                .map(Maintenance::retried)
                .sum::<u64>()
    }

    /// The command names kept apart and their latency counts, `"other"` last.
    pub(crate) fn command_counts(&self) -> Vec<(String, Vec<u64>)> {
        let c = &self.inner.commands;
        let mut out: Vec<(String, Vec<u64>)> = c
            .names
            .entries()
            .into_iter()
            .filter_map(|(slot, name)| c.slot_counts(slot).map(|counts| (name, counts)))
            .collect();
        if let Some(counts) = c.slot_counts(OTHER) {
            out.push(("other".to_string(), counts));
        }
        out
    }

    /// The failure counts, in [`Failure`] order.
    pub(crate) fn failures(&self) -> [u64; ERROR_KINDS] {
        self.inner.commands.failures()
    }

    /// Counts and percentiles now.
    ///
    /// Recording goes on while a snapshot is taken, so a snapshot under load may catch a
    /// command half recorded; once the commands are done, every count is exact.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.refresh_pools();
        let mut all = vec![0u64; BUCKETS];
        let mut by_command: Vec<CommandLatency> = self
            .command_counts()
            .into_iter()
            .map(|(name, counts)| {
                for (a, c) in all.iter_mut().zip(&counts) {
                    *a += c;
                }
                CommandLatency {
                    name,
                    latency: Latency::from_histogram(&to_histogram(&counts)),
                }
            })
            .filter(|c| c.latency.count > 0)
            .collect();
        by_command.sort_by(|a, b| {
            (a.name == "other")
                .cmp(&(b.name == "other"))
                .then(b.latency.count.cmp(&a.latency.count))
                .then(a.name.cmp(&b.name))
        });
        let f = self.failures();
        let finished: u64 = all.iter().sum();
        let at = |k: Failure| f[k as usize];
        let mut outcomes = Outcomes {
            ok: 0,
            server_error: at(Failure::Server),
            timeout: at(Failure::Timeout),
            relaxed_timeout: at(Failure::RelaxedTimeout),
            circuit_open: at(Failure::CircuitOpen),
            connection_lost: at(Failure::Connection),
            other_error: at(Failure::Other),
            cancelled: at(Failure::Cancelled),
            retried: self.retried(),
        };
        outcomes.ok = finished.saturating_sub(outcomes.errors());
        MetricsSnapshot {
            outcomes,
            latency: Latency::from_histogram(&to_histogram(&all)),
            by_command,
            maintenance: self.inner.maintenance.stats(),
            pool: self.inner.pool.stats(),
        }
    }

    /// The latency of every command so far as an hdrhistogram of nanoseconds, for other
    /// quantiles or for merging elsewhere.
    pub fn latency_histogram(&self) -> Histogram<u64> {
        let mut all = vec![0u64; BUCKETS];
        for (_, counts) in self.command_counts() {
            for (a, c) in all.iter_mut().zip(&counts) {
                *a += c;
            }
        }
        to_histogram(&all)
    }

    /// The latency of one command name (any case; `"other"` for the rest) as an hdrhistogram
    /// of nanoseconds, if any was recorded under it.
    pub fn command_histogram(&self, name: &str) -> Option<Histogram<u64>> {
        self.command_counts()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, counts)| to_histogram(&counts))
    }
}

/// The post-hook counts every notice by type and outcome and records how long it took to
/// process, from its receipt ([`HookContext::received`]) to the post-hooks. Added by
/// [`Metrics::attach`]; add it yourself with [`Maintenance::add_hook`] after your own hooks
/// to include their time.
impl NotificationHook for Metrics {
    fn post(&self, cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome) {
        let m = &self.inner.maintenance;
        let i = notice_index(notice);
        add(&m.notices[i], 1);
        match outcome {
            HookOutcome::Applied => add(&m.applied[i], 1),
            HookOutcome::Duplicate => add(&m.duplicates, 1),
            HookOutcome::Skipped => add(&m.skipped, 1),
        }
        m.processing.record(cx.received.elapsed());
    }
}

/// Counts and logs the events of one maintenance handle for one metrics store, as they are
/// emitted; gone with the store.
struct EventWatch {
    inner: Weak<Inner>,
    state: std::sync::Mutex<WatchState>,
}

impl Observer for EventWatch {
    fn on_event(&self, event: &MaintenanceEvent) -> bool {
        let Some(inner) = self.inner.upgrade() else {
            return false;
        };
        tracing::info!(
            endpoint = %event.endpoint,
            source = %event.source,
            event = event.kind.name(),
            detail = ?event.kind,
            "maintenance event"
        );
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        inner.maintenance.on_event(event, &mut state);
        true
    }

    fn alive(&self) -> bool {
        self.inner.strong_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::{Notification, PushOrigin, RelaxationEnd};
    use crate::metrics::recorder::{record, Finished};

    fn within(got: Duration, want: Duration) -> bool {
        let (g, w) = (got.as_nanos() as f64, want.as_nanos() as f64);
        (g - w).abs() <= w * 0.025
    }

    #[test]
    fn percentiles_of_exact_latencies_are_within_the_histogram_precision() {
        let m = Metrics::new();
        let c = &m.inner.commands;
        let get = c.names.slot(b"GET");
        let ms = Duration::from_millis;
        for (n, d) in [(900, ms(1)), (90, ms(10)), (9, ms(100)), (1, ms(1000))] {
            for _ in 0..n {
                let event = Finished {
                    slot: get,
                    elapsed: Some(d),
                    failure: None,
                };
                record(c.id(), event);
            }
        }
        let s = m.snapshot();
        let l = s.command("GET").copied().unwrap_or_default();
        assert_eq!(
            (s.latency.count, l.count, s.outcomes.ok),
            (1000, 1000, 1000)
        );
        for (got, want) in [
            (l.min, ms(1)),
            (l.p50, ms(1)),
            (l.p90, ms(1)),
            (l.p99, ms(10)),
            (l.p999, ms(100)),
            (l.max, ms(1000)),
        ] {
            assert!(within(got, want), "{got:?} is not {want:?} within 2.5%");
        }
        let h = m.latency_histogram();
        assert_eq!(h.len(), 1000);
        assert!(within(
            Duration::from_nanos(h.value_at_quantile(0.95)),
            ms(10)
        ));
    }

    #[test]
    fn the_hook_counts_notices_by_type_and_outcome() {
        let m = Metrics::new();
        let maintenance = Maintenance::default().with_hook(m.clone());
        let origin = PushOrigin::new(Endpoint::new("10.0.0.1", 6379));
        let migrating = Notification::Migrating {
            seq: 1,
            time: Duration::from_secs(10),
            shards: vec![],
        };
        maintenance.process_push(&origin, &migrating.to_push());
        maintenance.process_push(&origin, &migrating.to_push());
        let migrated = Notification::Migrated {
            seq: 1,
            shards: vec![],
        };
        maintenance.process_push(&origin, &migrated.to_push());
        let s = m.snapshot().maintenance;
        assert_eq!(s.notifications("MIGRATING"), 2);
        assert_eq!(s.notifications("migrated"), 1);
        assert_eq!(s.total_notifications(), 3);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.processing.count, 3);
        let applied: u64 = s.notifications.iter().map(|n| n.applied).sum();
        assert_eq!(applied, 2);
    }

    #[test]
    fn a_pool_reports_its_queue_and_workers() {
        let m = Metrics::new();
        m.set_handoff_queue(3, 500);
        m.set_handoff_queue(1, 500);
        m.set_handoff_workers(4, 10);
        m.set_handoff_workers(2, 10);
        let p = m.snapshot().pool;
        assert_eq!((p.queue_depth, p.queue_peak, p.queue_capacity), (1, 3, 500));
        assert_eq!((p.workers_busy, p.workers_peak, p.workers_max), (2, 4, 10));
        assert!((p.utilisation() - 0.2).abs() < 1e-9);
        assert!(m
            .snapshot()
            .to_string()
            .contains("2 of 10 busy (peak 4, 20%)"));
    }

    fn event(kind: EventKind, at: Instant) -> MaintenanceEvent {
        let mut e = MaintenanceEvent::new(Endpoint::new("db", 6379), kind);
        e.at = at;
        e
    }

    #[test]
    fn events_count_handoffs_relaxation_circuit_and_connections() {
        let m = Metrics::new();
        let r = &m.inner.maintenance;
        let mut state = WatchState::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let (old, new) = (Endpoint::new("n0", 1), Endpoint::new("n1", 2));
        let moving = Notification::Moving {
            seq: 1,
            time: Duration::from_secs(2),
            endpoint: Some(new.clone()),
        };
        let conn = |e: MaintenanceEvent, source: &Endpoint, id| {
            e.with_connection(ConnectionId::test(id as u64), source.clone(), Some(id))
        };
        let enabled = EventKind::NotificationsEnabled {
            endpoint_type: crate::maintenance::EndpointType::InternalIp,
        };
        for e in [
            conn(event(enabled.clone(), at(0)), &old, 7),
            event(EventKind::Notification(moving), at(10)),
            event(
                EventKind::HandoffStarted {
                    from: old.clone(),
                    to: new.clone(),
                    seq: Some(1),
                },
                at(10),
            ),
            conn(event(enabled, at(40)), &new, 8),
            conn(
                event(
                    EventKind::HandoffConnected {
                        to: new.clone(),
                        attempt: 1,
                        took: Duration::from_millis(30),
                    },
                    at(40),
                ),
                &new,
                8,
            ),
            event(
                EventKind::HandoffSwitched {
                    from: old.clone(),
                    to: new.clone(),
                },
                at(40),
            ),
            event(
                EventKind::HandoffDrained {
                    from: old.clone(),
                    drained: 3,
                    took: Duration::from_millis(5),
                },
                at(45),
            ),
            event(
                EventKind::RelaxationEnded {
                    cause: RelaxationEnd::HandoffWindowElapsed,
                },
                at(510),
            ),
            event(
                EventKind::HandoffStarted {
                    from: new.clone(),
                    to: old.clone(),
                    seq: Some(2),
                },
                at(600),
            ),
            event(
                EventKind::HandoffFailed {
                    to: old.clone(),
                    attempts: 3,
                    error: crate::Error::config("refused"),
                },
                at(700),
            ),
            event(
                EventKind::CircuitOpened {
                    reason: "down".into(),
                },
                at(800),
            ),
            event(EventKind::CircuitHalfOpen, at(900)),
            event(
                EventKind::CircuitClosed {
                    open_for: Duration::from_millis(150),
                },
                at(950),
            ),
            event(
                EventKind::NotificationDropped {
                    reason: "bad".into(),
                    preview: "".into(),
                },
                at(960),
            ),
        ] {
            r.on_event(&e, &mut state);
        }
        let s = m.snapshot().maintenance;
        assert_eq!(
            (s.handoffs_started, s.handoffs_succeeded, s.handoffs_failed),
            (2, 1, 1)
        );
        assert_eq!(s.handoff_duration.count, 1);
        assert!(within(s.handoff_duration.p50, Duration::from_millis(30)));
        assert_eq!(s.failed_handoff_duration.count, 1);
        assert!(within(
            s.failed_handoff_duration.max,
            Duration::from_millis(100)
        ));
        assert_eq!((s.relaxations, s.relaxed_now), (1, 0));
        assert_eq!(s.time_relaxed, Duration::from_millis(500));
        assert_eq!(
            (s.circuit_opened, s.circuit_half_opened, s.circuit_closed),
            (1, 1, 1)
        );
        assert_eq!(s.time_circuit_open, Duration::from_millis(150));
        // The handoff's new connection was announced twice (handshake, then handoff): once.
        assert_eq!((s.connections_opened, s.connections_closed), (2, 1));
        assert_eq!(s.errors, 1);
    }

    #[test]
    fn notice_names_follow_the_counter_order() {
        for (i, k) in NotificationKind::ALL.iter().enumerate() {
            assert_eq!(notice_name(k.index()), k.name(), "{i}");
        }
        for k in AzureEventKind::KNOWN.iter() {
            assert_eq!(notice_name(PUSH_KINDS + k.index()), k.name());
        }
        let unknown = AzureEventKind::Unknown("NodeRebooted".into());
        assert_eq!(notice_name(PUSH_KINDS + unknown.index()), "Unknown");
    }
}
