//! The [`Maintenance`] handle: per-endpoint state, typed events, counters and hooks, shared by
//! every layer of a stack (and by anyone else who wants to listen).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::broadcast;

use crate::connection::Connection;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::azure::{AzureEvent, AzureEventKind, AZURE_CHANNEL};
use crate::maintenance::config::MaintenanceConfig;
use crate::maintenance::endpoint_type::EndpointType;
use crate::maintenance::hook::{HookAction, HookContext, HookOutcome, Notice, NotificationHook};
use crate::maintenance::notification::{text, Notification, NotificationKind};

/// How many (name, seq) pairs and Azure events are remembered for de-duplication.
const DEDUP_CAPACITY: usize = 4096;
/// How long a push notification's (name, seq) is remembered: long enough to recognise the
/// replays Redis Software sends to new connections hours later.
const PUSH_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How long an Azure event is remembered: the copies sent to every subscribed connection
/// arrive within moments of each other, and a real repeat may come minutes later.
const AZURE_MEMORY: Duration = Duration::from_secs(10);
/// How much of a dropped frame is shown in logs and events.
const PREVIEW_BYTES: usize = 256;

// ===== PushOrigin =====

/// Where a push came from: the stack's configured endpoint, and the connection that received it.
///
/// State is kept per *configured* endpoint: the address a client stack was configured with,
/// which names the logical database it serves. After a handoff the stack talks to another node
/// (the `source`), but that node serves the same database, so the state stays where it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PushOrigin {
    /// The configured endpoint: the key of the per-endpoint state.
    pub endpoint: Endpoint,
    /// The endpoint of the connection the push arrived on.
    pub source: Endpoint,
    /// The server's id for that connection (`CLIENT ID`), when known. With `source` it tells
    /// connections apart.
    pub client_id: Option<i64>,
}

impl PushOrigin {
    /// A push received on a connection to the configured endpoint itself.
    pub fn new(endpoint: Endpoint) -> Self {
        PushOrigin {
            source: endpoint.clone(),
            endpoint,
            client_id: None,
        }
    }

    /// A push received on `connection`, for a stack configured with `configured`.
    pub fn from_connection(configured: Endpoint, connection: &Connection) -> Self {
        PushOrigin {
            endpoint: configured,
            source: connection.endpoint().clone(),
            client_id: client_id(connection),
        }
    }

    /// The same origin with another source connection.
    #[must_use]
    pub fn with_source(mut self, source: Endpoint, client_id: Option<i64>) -> Self {
        self.source = source;
        self.client_id = client_id;
        self
    }

    /// Whether this is the origin of pushes received on `connection`.
    pub fn is_connection(&self, connection: &Connection) -> bool {
        self.source == *connection.endpoint() && self.client_id == client_id(connection)
    }
}

fn client_id(connection: &Connection) -> Option<i64> {
    Some(connection.server_info().id).filter(|&id| id != 0)
}

// ===== EndpointStatus =====

/// Whether the server behind an endpoint agreed to send maintenance notifications, as the last
/// connection made to it found. This is what the server supports, kept apart from the
/// configured [`MaintenanceMode`](crate::maintenance::MaintenanceMode), which it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotificationSupport {
    /// No connection has asked yet (or the mode is `Disabled`).
    Unknown,
    /// The server accepted `CLIENT MAINT_NOTIFICATIONS`.
    Enabled,
    /// The server refused it.
    Refused,
}

/// A `MOVING` notification being acted on: where to go and by when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MovingTarget {
    /// The notification's sequence number.
    pub seq: u64,
    /// Where to reconnect; `None`: to the configured endpoint, at half the grace period.
    pub endpoint: Option<Endpoint>,
    /// The grace period the server gave.
    pub time: Duration,
    /// When the notification was received.
    pub received: Instant,
    /// When the server is expected to close connections to the old endpoint.
    pub deadline: Instant,
    /// The connection that received it.
    pub source: Endpoint,
}

/// The maintenance state of one configured endpoint.
///
/// Reads are lock-free atomics, cheap enough for every command: deadlines are kept as
/// nanoseconds since an epoch owned by the [`Maintenance`] handle. Timeouts are relaxed while
/// either of two deadlines is in the future:
///
/// - the **maintenance** deadline, set by a start (`MIGRATING`, `FAILING_OVER`, `SMIGRATING`,
///   Azure `NodeMaintenanceStarting` / `NodeMaintenanceStart`) to now + the relaxation
///   backstop, and cleared by the matching end (`MIGRATED`, `FAILED_OVER`, `SMIGRATED`, Azure
///   `...FailoverComplete` / `...ScaleComplete` / `...Ended`); the backstop ends a maintenance
///   whose end notification was lost;
/// - the **handoff** deadline, set by `MOVING` to now + its time + the post-handoff relaxed
///   duration, and moved to now + the post-handoff relaxed duration by
///   [`Maintenance::handoff_switched`].
pub struct EndpointStatus {
    endpoint: Endpoint,
    epoch: Instant,
    maintenance_until: AtomicU64,
    handoff_until: AtomicU64,
    // Bumped on every deadline change, so a pending expiry check knows it is stale.
    generation: AtomicU64,
    support: AtomicU8,
    moving: Mutex<Option<MovingTarget>>,
}

impl fmt::Debug for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointStatus")
            .field("endpoint", &self.endpoint)
            .field("relaxed_until", &self.relaxed_until())
            .field("in_maintenance", &self.in_maintenance())
            .field("moving", &self.moving())
            .field("notification_support", &self.notification_support())
            .finish()
    }
}

fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl EndpointStatus {
    fn new(endpoint: Endpoint, epoch: Instant) -> Self {
        EndpointStatus {
            endpoint,
            epoch,
            maintenance_until: AtomicU64::new(0),
            handoff_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            support: AtomicU8::new(0),
            moving: Mutex::new(None),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        to_nanos(t.saturating_duration_since(self.epoch))
    }

    fn instant(&self, nanos: u64) -> Option<Instant> {
        self.epoch.checked_add(Duration::from_nanos(nanos))
    }

    fn deadline(&self) -> u64 {
        self.maintenance_until
            .load(Ordering::Acquire)
            .max(self.handoff_until.load(Ordering::Acquire))
    }

    /// The configured endpoint this state belongs to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether timeouts are relaxed at `now`.
    pub fn is_relaxed(&self, now: Instant) -> bool {
        self.nanos(now) < self.deadline()
    }

    /// Until when timeouts are relaxed, if they are now.
    pub fn relaxed_until(&self) -> Option<Instant> {
        let deadline = self.deadline();
        (self.nanos(Instant::now()) < deadline)
            .then(|| self.instant(deadline))
            .flatten()
    }

    /// Whether a maintenance (migration, failover, Azure maintenance) has started and neither
    /// ended nor run past the backstop.
    pub fn in_maintenance(&self) -> bool {
        self.nanos(Instant::now()) < self.maintenance_until.load(Ordering::Acquire)
    }

    /// When the backstop ends the current maintenance, if one is under way.
    pub fn maintenance_until(&self) -> Option<Instant> {
        let until = self.maintenance_until.load(Ordering::Acquire);
        (self.nanos(Instant::now()) < until)
            .then(|| self.instant(until))
            .flatten()
    }

    /// Until when a `MOVING` (or a handoff just done) keeps timeouts relaxed, if it does now.
    pub fn handoff_relaxed_until(&self) -> Option<Instant> {
        let until = self.handoff_until.load(Ordering::Acquire);
        (self.nanos(Instant::now()) < until)
            .then(|| self.instant(until))
            .flatten()
    }

    /// The latest `MOVING` not yet acted on: cleared by [`Maintenance::handoff_switched`].
    pub fn moving(&self) -> Option<MovingTarget> {
        self.moving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the server agreed to send notifications, as the last connection found.
    pub fn notification_support(&self) -> NotificationSupport {
        match self.support.load(Ordering::Relaxed) {
            1 => NotificationSupport::Enabled,
            2 => NotificationSupport::Refused,
            _ => NotificationSupport::Unknown,
        }
    }

    fn set_moving(&self, target: Option<MovingTarget>) {
        *self
            .moving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
    }

    fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Why the relaxation that has just run out ended.
    fn expiry_cause(&self) -> RelaxationEnd {
        let m = self.maintenance_until.load(Ordering::Acquire);
        if m != 0 && m >= self.handoff_until.load(Ordering::Acquire) {
            RelaxationEnd::Backstop
        } else {
            RelaxationEnd::HandoffWindowElapsed
        }
    }
}

// ===== events =====

/// Something that happened to a configured endpoint: a notification, a handoff step, a circuit
/// change. Published by the demux and by the other layers through [`Maintenance::emit`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MaintenanceEvent {
    /// The configured endpoint (the key of the state; see [`PushOrigin`]).
    pub endpoint: Endpoint,
    /// The endpoint of the connection the event concerns or came from.
    pub source: Endpoint,
    /// The server's id for that connection, when known.
    pub client_id: Option<i64>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

impl MaintenanceEvent {
    /// An event about `endpoint` (also its source), happening now.
    pub fn new(endpoint: Endpoint, kind: EventKind) -> Self {
        MaintenanceEvent {
            source: endpoint.clone(),
            endpoint,
            client_id: None,
            at: Instant::now(),
            kind,
        }
    }

    /// An event from a push's origin, happening now.
    pub fn from_origin(origin: &PushOrigin, kind: EventKind) -> Self {
        MaintenanceEvent {
            endpoint: origin.endpoint.clone(),
            source: origin.source.clone(),
            client_id: origin.client_id,
            at: Instant::now(),
            kind,
        }
    }

    /// The same event with another source connection.
    #[must_use]
    pub fn with_source(mut self, source: Endpoint, client_id: Option<i64>) -> Self {
        self.source = source;
        self.client_id = client_id;
        self
    }

    /// Whether the event came from (or concerns) `connection`.
    pub fn is_from(&self, connection: &Connection) -> bool {
        self.source == *connection.endpoint() && self.client_id == client_id(connection)
    }
}

/// Why timeouts stopped being relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelaxationEnd {
    /// An end notification (`MIGRATED`, `FAILED_OVER`, `SMIGRATED`, an Azure end) arrived.
    EndNotification,
    /// No end notification came within the relaxation backstop.
    Backstop,
    /// The window opened by `MOVING` (or kept open after a handoff) ran out.
    HandoffWindowElapsed,
}

/// What a [`MaintenanceEvent`] says happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// A maintenance notification was processed (after the pre-hooks, not a duplicate).
    Notification(Notification),
    /// An Azure maintenance event was processed.
    Azure(AzureEvent),
    /// A malformed maintenance notification or Azure message was dropped.
    NotificationDropped {
        /// What was wrong with it.
        reason: Arc<str>,
        /// The start of its bytes, escaped.
        preview: Arc<str>,
    },
    /// A notification that repeated one already processed was suppressed.
    DuplicateSuppressed {
        /// Its name, such as `"MIGRATED"` or `"NodeMaintenanceEnded"`.
        name: Arc<str>,
        /// Its sequence number (Azure events have none).
        seq: Option<u64>,
    },
    /// The server accepted `CLIENT MAINT_NOTIFICATIONS` on a new connection.
    NotificationsEnabled {
        /// The `moving-endpoint-type` asked for.
        endpoint_type: EndpointType,
    },
    /// The server refused `CLIENT MAINT_NOTIFICATIONS`; in `Auto` mode the connection carries on
    /// without notifications.
    NotificationsRefused {
        /// The server's answer.
        answer: Arc<str>,
    },
    /// Timeouts for the endpoint are no longer relaxed.
    RelaxationEnded {
        /// Why.
        cause: RelaxationEnd,
    },
    /// A handoff began: a new connection is being made.
    HandoffStarted {
        /// The endpoint being left.
        from: Endpoint,
        /// The endpoint being dialled.
        to: Endpoint,
        /// The `MOVING` notification's sequence number, when one started it.
        seq: Option<u64>,
    },
    /// The new connection of a handoff is up.
    HandoffConnected {
        /// Its endpoint.
        to: Endpoint,
        /// Which attempt succeeded, from 1.
        attempt: u32,
        /// How long dial and handshake took.
        took: Duration,
    },
    /// New commands now go to the new connection.
    HandoffSwitched {
        /// The endpoint left.
        from: Endpoint,
        /// The endpoint now served.
        to: Endpoint,
    },
    /// The old connection answered everything it owed and was closed.
    HandoffDrained {
        /// The endpoint left.
        from: Endpoint,
        /// How many replies it still delivered after the switch.
        drained: usize,
        /// How long draining took.
        took: Duration,
    },
    /// Every attempt of a handoff failed; the old connection serves until it closes.
    HandoffFailed {
        /// The endpoint the handoff was moving to.
        to: Endpoint,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        error: Error,
    },
    /// The circuit opened: commands fail fast.
    CircuitOpened {
        /// Why it opened.
        reason: Arc<str>,
    },
    /// The circuit lets a trial command through.
    CircuitHalfOpen,
    /// The circuit closed: commands flow again.
    CircuitClosed {
        /// How long it was open.
        open_for: Duration,
    },
    /// The connection closed or failed.
    Disconnected {
        /// Why.
        reason: Arc<str>,
    },
    /// A reconnection attempt is scheduled.
    Reconnecting {
        /// Which attempt, from 1.
        attempt: u32,
        /// How long until it is made.
        delay: Duration,
    },
    /// A connection is up again.
    Reconnected {
        /// How many attempts it took.
        attempts: u32,
        /// How long the endpoint was without a connection.
        took: Duration,
    },
    /// Every reconnection attempt of an outage failed; commands fail fast until the next one
    /// starts another round.
    ReconnectFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        error: Error,
    },
}

impl EventKind {
    /// A short, stable name for the kind of event, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Notification(_) => "notification",
            EventKind::Azure(_) => "azure_event",
            EventKind::NotificationDropped { .. } => "notification_dropped",
            EventKind::DuplicateSuppressed { .. } => "duplicate_suppressed",
            EventKind::NotificationsEnabled { .. } => "notifications_enabled",
            EventKind::NotificationsRefused { .. } => "notifications_refused",
            EventKind::RelaxationEnded { .. } => "relaxation_ended",
            EventKind::HandoffStarted { .. } => "handoff_started",
            EventKind::HandoffConnected { .. } => "handoff_connected",
            EventKind::HandoffSwitched { .. } => "handoff_switched",
            EventKind::HandoffDrained { .. } => "handoff_drained",
            EventKind::HandoffFailed { .. } => "handoff_failed",
            EventKind::CircuitOpened { .. } => "circuit_opened",
            EventKind::CircuitHalfOpen => "circuit_half_open",
            EventKind::CircuitClosed { .. } => "circuit_closed",
            EventKind::Disconnected { .. } => "disconnected",
            EventKind::Reconnecting { .. } => "reconnecting",
            EventKind::Reconnected { .. } => "reconnected",
            EventKind::ReconnectFailed { .. } => "reconnect_failed",
        }
    }
}

/// A subscription to a [`Maintenance`] handle's events; see [`Maintenance::subscribe`].
#[derive(Debug)]
pub struct MaintenanceEvents {
    rx: broadcast::Receiver<MaintenanceEvent>,
}

impl MaintenanceEvents {
    /// The next event, or `None` once every handle is gone.
    ///
    /// A subscriber that falls more than the configured event buffer behind skips what it
    /// missed, with a warning in the log.
    pub async fn recv(&mut self) -> Option<MaintenanceEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "a maintenance event subscriber fell behind and missed events"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<MaintenanceEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "a maintenance event subscriber fell behind and missed events"
                    );
                }
                Err(_) => return None,
            }
        }
    }
}

// ===== counters =====

const AZURE_KINDS: usize = AzureEventKind::KNOWN.len() + 1;

#[derive(Default)]
struct Counters {
    notifications: [AtomicU64; NotificationKind::ALL.len()],
    azure: [AtomicU64; AZURE_KINDS],
    dropped: AtomicU64,
    duplicates: AtomicU64,
    skipped: AtomicU64,
}

/// A snapshot of a [`Maintenance`] handle's counters; see [`Maintenance::counts`].
///
/// Notifications are counted as received, before the hooks and de-duplication, so a broadcast
/// that reaches several connections counts once per connection; [`duplicates`](Self::duplicates)
/// says how many of them were suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    notifications: [u64; NotificationKind::ALL.len()],
    azure: [u64; AZURE_KINDS],
    dropped: u64,
    duplicates: u64,
    skipped: u64,
}

impl NotificationCounts {
    /// How many notifications of this kind were received.
    pub fn notifications(&self, kind: NotificationKind) -> u64 {
        self.notifications[kind.index()]
    }

    /// How many Azure events of this kind were received (every unknown type counts under any
    /// `Unknown`).
    pub fn azure(&self, kind: &AzureEventKind) -> u64 {
        self.azure[kind.index()]
    }

    /// How many push notifications were received, of every kind.
    pub fn total_notifications(&self) -> u64 {
        self.notifications.iter().sum()
    }

    /// How many Azure events were received, of every kind.
    pub fn total_azure(&self) -> u64 {
        self.azure.iter().sum()
    }

    /// How many malformed notifications and Azure messages were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many repeats were suppressed.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// How many were skipped by a pre-hook.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// What [`Maintenance::process_push`] did with a push frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Not a maintenance notification nor an Azure event: left alone.
    NotMaintenance,
    /// Processed: the state was updated and the event published.
    Applied(Notice),
    /// A pre-hook skipped it.
    Skipped,
    /// It repeated one already processed.
    Duplicate,
    /// It was malformed: counted, logged and dropped.
    Dropped {
        /// What was wrong with it.
        reason: Arc<str>,
    },
}

// ===== de-duplication =====

#[derive(Clone, PartialEq, Eq, Hash)]
enum DedupKey {
    Push {
        endpoint: Endpoint,
        kind: NotificationKind,
        seq: u64,
        // MOVING is an instruction to each connection, so each connection's copy counts.
        connection: Option<(Endpoint, Option<i64>)>,
    },
    Azure {
        endpoint: Endpoint,
        event: AzureEvent,
    },
}

/// Remembers recent notices, within a fixed number of entries.
#[derive(Default)]
struct Dedup {
    expires: HashMap<DedupKey, Instant>,
    order: VecDeque<(DedupKey, Instant)>,
}

impl Dedup {
    /// Whether `key` was seen and has not expired; remembers it if not.
    fn seen(&mut self, key: DedupKey, now: Instant, memory: Duration) -> bool {
        if self.expires.get(&key).is_some_and(|&until| now < until) {
            return true;
        }
        let until = now.checked_add(memory).unwrap_or(now);
        self.expires.insert(key.clone(), until);
        self.order.push_back((key, until));
        while self.order.len() > DEDUP_CAPACITY {
            if let Some((old, old_until)) = self.order.pop_front() {
                // Only forget it if it was not remembered again since.
                if self.expires.get(&old) == Some(&old_until) {
                    self.expires.remove(&old);
                }
            }
        }
        false
    }
}

// ===== Maintenance =====

/// The shared maintenance state of a client: per-endpoint status, typed events, counters and
/// notification hooks. Cheap to clone; every clone is the same handle.
///
/// The [`NotificationDemux`](crate::demux::NotificationDemux) writes into it; the other layers
/// (and any task of yours) read its per-endpoint [`EndpointStatus`] or
/// [`subscribe`](Maintenance::subscribe) to its events. See the
/// [module docs](crate::maintenance) for the model.
///
/// ```
/// use redis_handoff::maintenance::{Maintenance, PushOrigin, PushOutcome};
/// use redis_handoff::maintenance::Notification;
/// use redis_handoff::Endpoint;
/// use std::time::{Duration, Instant};
///
/// let maintenance = Maintenance::default();
/// let endpoint = Endpoint::new("10.0.0.1", 6379);
/// let status = maintenance.status(&endpoint);
/// assert!(!status.is_relaxed(Instant::now()));
///
/// let migrating = Notification::Migrating { seq: 1, time: Duration::from_secs(10), shards: vec![] };
/// let origin = PushOrigin::new(endpoint.clone());
/// assert!(matches!(maintenance.process_push(&origin, &migrating.to_push()), PushOutcome::Applied(_)));
/// assert!(status.in_maintenance() && status.is_relaxed(Instant::now()));
/// // The same (name, seq) again is a duplicate.
/// assert_eq!(maintenance.process_push(&origin, &migrating.to_push()), PushOutcome::Duplicate);
///
/// let migrated = Notification::Migrated { seq: 1, shards: vec![] };
/// maintenance.process_push(&origin, &migrated.to_push());
/// assert!(!status.is_relaxed(Instant::now()));
/// assert_eq!(maintenance.counts().duplicates(), 1);
/// ```
#[derive(Clone)]
pub struct Maintenance {
    inner: Arc<Inner>,
}

type Hooks = Arc<[Arc<dyn NotificationHook>]>;

struct Inner {
    config: MaintenanceConfig,
    epoch: Instant,
    statuses: RwLock<HashMap<Endpoint, Arc<EndpointStatus>>>,
    events: broadcast::Sender<MaintenanceEvent>,
    dedup: Mutex<Dedup>,
    hooks: RwLock<Hooks>,
    counters: Counters,
}

impl fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints = self
            .inner
            .statuses
            .read()
            .map(|s| s.len())
            .unwrap_or_default();
        f.debug_struct("Maintenance")
            .field("config", &self.inner.config)
            .field("endpoints", &endpoints)
            .field("hooks", &self.hooks().len())
            .finish()
    }
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance::new(MaintenanceConfig::default())
    }
}

impl Maintenance {
    /// A handle with this configuration, no state and no hooks.
    pub fn new(config: MaintenanceConfig) -> Self {
        let (events, _) = broadcast::channel(config.event_buffer().max(1));
        Maintenance {
            inner: Arc::new(Inner {
                config,
                epoch: Instant::now(),
                statuses: RwLock::new(HashMap::new()),
                events,
                dedup: Mutex::new(Dedup::default()),
                hooks: RwLock::new(Arc::from(Vec::new())),
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration every layer sharing this handle follows.
    pub fn config(&self) -> &MaintenanceConfig {
        &self.inner.config
    }

    /// The state of a configured endpoint, created on first use. Keep the `Arc`: reading it is
    /// lock-free, while this lookup takes a read lock.
    pub fn status(&self, endpoint: &Endpoint) -> Arc<EndpointStatus> {
        if let Some(s) = self
            .inner
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
        {
            return s.clone();
        }
        self.inner
            .statuses
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(endpoint.clone())
            .or_insert_with(|| Arc::new(EndpointStatus::new(endpoint.clone(), self.inner.epoch)))
            .clone()
    }

    /// Subscribes to the events from now on.
    pub fn subscribe(&self) -> MaintenanceEvents {
        MaintenanceEvents {
            rx: self.inner.events.subscribe(),
        }
    }

    /// Publishes an event to every subscriber (for layers and tasks that report what they did).
    pub fn emit(&self, event: MaintenanceEvent) {
        tracing::trace!(endpoint = %event.endpoint, source = %event.source, event = event.kind.name(), "maintenance event");
        // No subscriber is fine: nobody is listening.
        let _ = self.inner.events.send(event);
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> NotificationCounts {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotificationCounts {
            notifications: std::array::from_fn(|i| load(&c.notifications[i])),
            azure: std::array::from_fn(|i| load(&c.azure[i])),
            dropped: load(&c.dropped),
            duplicates: load(&c.duplicates),
            skipped: load(&c.skipped),
        }
    }

    /// Adds a notification hook; hooks run in the order they were added.
    pub fn add_hook(&self, hook: impl NotificationHook) {
        let mut hooks = self.inner.hooks.write().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<Arc<dyn NotificationHook>> = hooks.iter().cloned().collect();
        list.push(Arc::new(hook));
        *hooks = Arc::from(list);
    }

    /// The same handle with `hook` added; see [`Maintenance::add_hook`].
    #[must_use]
    pub fn with_hook(self, hook: impl NotificationHook) -> Self {
        self.add_hook(hook);
        self
    }

    fn hooks(&self) -> Hooks {
        self.inner
            .hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the handle that the handoff of `endpoint`'s stack has switched to its new
    /// connection: timeouts stay relaxed for the post-handoff relaxed duration from now, and
    /// the pending `MOVING` is cleared.
    pub fn handoff_switched(&self, endpoint: &Endpoint) {
        let status = self.status(endpoint);
        let now = status.nanos(Instant::now());
        let post = to_nanos(self.inner.config.post_handoff_relaxed_duration());
        status.set_moving(None);
        status
            .handoff_until
            .store(now.saturating_add(post), Ordering::Release);
        self.schedule_expiry(&status);
    }

    pub(crate) fn record_support(&self, endpoint: &Endpoint, support: NotificationSupport) {
        let value = match support {
            NotificationSupport::Unknown => 0,
            NotificationSupport::Enabled => 1,
            NotificationSupport::Refused => 2,
        };
        self.status(endpoint)
            .support
            .store(value, Ordering::Relaxed);
    }

    /// Processes one push frame received from `origin`: a maintenance notification or an
    /// `AzureRedisEvents` message is parsed, shown to the hooks, de-duplicated, applied to the
    /// state of `origin.endpoint` and published; a malformed one is counted, logged at warn
    /// with its bytes and dropped; anything else is left alone.
    ///
    /// The demux calls this for every push; a client of another kind can feed its own pushes.
    pub fn process_push(&self, origin: &PushOrigin, frame: &BytesFrame) -> PushOutcome {
        let received = Instant::now();
        let elements = match frame {
            BytesFrame::Push { data, .. } | BytesFrame::Array { data, .. } => data,
            _ => return PushOutcome::NotMaintenance,
        };
        match Notification::from_elements(elements) {
            Ok(Some(n)) => return self.process_at(origin, Notice::Push(n), received),
            Ok(None) => {}
            Err(e) => return self.drop_malformed(origin, &e.to_string(), frame),
        }
        let payload = match azure_payload(elements) {
            None => return PushOutcome::NotMaintenance,
            Some(Err(reason)) => return self.drop_malformed(origin, reason, frame),
            Some(Ok(payload)) => payload,
        };
        let Ok(message) = std::str::from_utf8(payload) else {
            return self.drop_malformed(
                origin,
                "malformed AzureRedisEvents message: not UTF-8",
                frame,
            );
        };
        match AzureEvent::parse(message, SystemTime::now()) {
            Ok(event) => self.process_at(origin, Notice::Azure(event), received),
            Err(e) => self.drop_malformed(origin, &e.to_string(), frame),
        }
    }

    /// Processes a notice that is already parsed (from a test, a simulator or another client),
    /// exactly as [`Maintenance::process_push`] would.
    pub fn process_notice(&self, origin: &PushOrigin, notice: Notice) -> PushOutcome {
        self.process_at(origin, notice, Instant::now())
    }

    fn process_at(
        &self,
        origin: &PushOrigin,
        mut notice: Notice,
        received: Instant,
    ) -> PushOutcome {
        let counters = &self.inner.counters;
        match &notice {
            Notice::Push(n) => {
                counters.notifications[n.kind().index()].fetch_add(1, Ordering::Relaxed)
            }
            Notice::Azure(e) => counters.azure[e.kind.index()].fetch_add(1, Ordering::Relaxed),
        };
        let hooks = self.hooks();
        let cx = HookContext { origin, received };
        let mut skipped = false;
        for hook in hooks.iter() {
            let action = catch_unwind(AssertUnwindSafe(|| hook.pre(&cx, &mut notice)))
                .unwrap_or_else(|_| {
                    tracing::error!(endpoint = %origin.endpoint, "a notification pre-hook panicked; carrying on");
                    HookAction::Continue
                });
            if action == HookAction::Skip {
                skipped = true;
                break;
            }
        }
        let outcome = if skipped {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = notice.name(), "a hook skipped a maintenance notification");
            HookOutcome::Skipped
        } else if self.is_duplicate(origin, &notice, received) {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = notice.name(), seq = ?notice.seq(), "suppressed a repeated maintenance notification");
            self.emit(MaintenanceEvent::from_origin(
                origin,
                EventKind::DuplicateSuppressed {
                    name: notice.name().into(),
                    seq: notice.seq(),
                },
            ));
            HookOutcome::Duplicate
        } else {
            match &notice {
                Notice::Azure(e) if e.is_late() => {
                    tracing::warn!(endpoint = %origin.endpoint, source = %origin.source, event = e.kind.name(), start_time = ?e.start_time, received_at = ?e.received_at, "an Azure maintenance event arrived after its start time: this client is too slow to act on it in time (overloaded?)");
                }
                Notice::Azure(e)
                    if e.kind == AzureEventKind::NodeMaintenanceScheduled
                        || e.kind == AzureEventKind::NodeMaintenanceEnded =>
                {
                    tracing::info!(endpoint = %origin.endpoint, event = e.kind.name(), start_time = ?e.start_time, "Azure maintenance");
                }
                _ => {}
            }
            tracing::debug!(endpoint = %origin.endpoint, source = %origin.source, notice = ?notice, "maintenance notification");
            let ended = self.apply(origin, &notice, received);
            let kind = match &notice {
                Notice::Push(n) => EventKind::Notification(n.clone()),
                Notice::Azure(e) => EventKind::Azure(e.clone()),
            };
            self.emit(MaintenanceEvent::from_origin(origin, kind));
            if let Some(cause) = ended {
                self.emit(MaintenanceEvent::from_origin(
                    origin,
                    EventKind::RelaxationEnded { cause },
                ));
            }
            HookOutcome::Applied
        };
        for hook in hooks.iter() {
            if catch_unwind(AssertUnwindSafe(|| hook.post(&cx, &notice, outcome))).is_err() {
                tracing::error!(endpoint = %origin.endpoint, "a notification post-hook panicked; carrying on");
            }
        }
        match outcome {
            HookOutcome::Applied => PushOutcome::Applied(notice),
            HookOutcome::Skipped => PushOutcome::Skipped,
            HookOutcome::Duplicate => PushOutcome::Duplicate,
        }
    }

    fn is_duplicate(&self, origin: &PushOrigin, notice: &Notice, now: Instant) -> bool {
        let (key, memory) = match notice {
            Notice::Push(n) => (
                DedupKey::Push {
                    endpoint: origin.endpoint.clone(),
                    kind: n.kind(),
                    seq: n.seq(),
                    connection: (n.kind() == NotificationKind::Moving)
                        .then(|| (origin.source.clone(), origin.client_id)),
                },
                PUSH_MEMORY,
            ),
            Notice::Azure(e) => {
                let mut event = e.clone();
                event.received_at = UNIX_EPOCH;
                (
                    DedupKey::Azure {
                        endpoint: origin.endpoint.clone(),
                        event,
                    },
                    AZURE_MEMORY,
                )
            }
        };
        self.inner
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen(key, now, memory)
    }

    /// Updates the state for a notice; says so when it ended the relaxation.
    fn apply(
        &self,
        origin: &PushOrigin,
        notice: &Notice,
        received: Instant,
    ) -> Option<RelaxationEnd> {
        let status = self.status(&origin.endpoint);
        let config = &self.inner.config;
        let now = status.nanos(received);
        if let Notice::Push(Notification::Moving {
            seq,
            time,
            endpoint,
        }) = notice
        {
            status.set_moving(Some(MovingTarget {
                seq: *seq,
                endpoint: endpoint.clone(),
                time: *time,
                received,
                deadline: received.checked_add(*time).unwrap_or(received),
                source: origin.source.clone(),
            }));
            let until = now
                .saturating_add(to_nanos(*time))
                .saturating_add(to_nanos(config.post_handoff_relaxed_duration()));
            status.handoff_until.fetch_max(until, Ordering::AcqRel);
            self.schedule_expiry(&status);
            None
        } else if notice.is_start() {
            let until = now.saturating_add(to_nanos(config.relaxation_backstop()));
            status.maintenance_until.store(until, Ordering::Release);
            self.schedule_expiry(&status);
            None
        } else if notice.is_end() {
            let was_relaxed = status.is_relaxed(received);
            status.maintenance_until.store(0, Ordering::Release);
            if status.is_relaxed(received) {
                // A MOVING still holds the relaxation: its own expiry ends it.
                self.schedule_expiry(&status);
                None
            } else {
                status.bump();
                was_relaxed.then_some(RelaxationEnd::EndNotification)
            }
        } else {
            None
        }
    }

    /// Arranges for a `RelaxationEnded` event when the current deadline passes, unless the
    /// state changes first. Needs a Tokio runtime; without one the state is still right, only
    /// the event is not sent.
    fn schedule_expiry(&self, status: &Arc<EndpointStatus>) {
        let generation = status.bump();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        let status = status.clone();
        runtime.spawn(async move {
            loop {
                let Some(deadline) = status.instant(status.deadline()) else {
                    return;
                };
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                if status.generation.load(Ordering::Acquire) != generation {
                    return;
                }
                if status.is_relaxed(Instant::now()) {
                    continue;
                }
                expire(&inner, &status);
                return;
            }
        });
    }

    fn drop_malformed(&self, origin: &PushOrigin, reason: &str, frame: &BytesFrame) -> PushOutcome {
        self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        let preview = preview(frame);
        tracing::warn!(endpoint = %origin.endpoint, source = %origin.source, reason, bytes = %preview, "dropped a malformed maintenance notification");
        let reason: Arc<str> = reason.into();
        self.emit(MaintenanceEvent::from_origin(
            origin,
            EventKind::NotificationDropped {
                reason: reason.clone(),
                preview: preview.into(),
            },
        ));
        PushOutcome::Dropped { reason }
    }
}

fn expire(inner: &Weak<Inner>, status: &EndpointStatus) {
    let Some(inner) = inner.upgrade() else {
        return;
    };
    let cause = status.expiry_cause();
    if cause == RelaxationEnd::Backstop {
        tracing::warn!(endpoint = %status.endpoint, backstop = ?inner.config.relaxation_backstop(), "no end of maintenance arrived within the backstop; timeouts are no longer relaxed");
    }
    Maintenance { inner }.emit(MaintenanceEvent::new(
        status.endpoint.clone(),
        EventKind::RelaxationEnded { cause },
    ));
}

/// The payload of a Pub/Sub message on `AzureRedisEvents`, if the push is one.
fn azure_payload(elements: &[BytesFrame]) -> Option<Result<&Bytes, &'static str>> {
    let name = text(elements.first()?)?;
    let (channel, payload) = if name.eq_ignore_ascii_case(b"message") {
        (elements.get(1)?, elements.get(2))
    } else if name.eq_ignore_ascii_case(b"pmessage") {
        (elements.get(2)?, elements.get(3))
    } else {
        return None;
    };
    if text(channel)?.as_ref() != AZURE_CHANNEL.as_bytes() {
        return None;
    }
    Some(
        payload
            .and_then(text)
            .ok_or("malformed AzureRedisEvents message: the payload is not a string"),
    )
}

/// The start of a frame's bytes in RESP, escaped for a log line.
pub(crate) fn preview(frame: &BytesFrame) -> String {
    let mut out = Vec::with_capacity(PREVIEW_BYTES);
    write_preview(frame, &mut out);
    let mut shown = out.escape_ascii().to_string();
    if out.len() >= PREVIEW_BYTES {
        shown.push_str("...");
    }
    shown
}

fn write_preview(frame: &BytesFrame, out: &mut Vec<u8>) {
    let room = |out: &Vec<u8>| PREVIEW_BYTES.saturating_sub(out.len());
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        let n = bytes.len().min(room(out));
        out.extend_from_slice(&bytes[..n]);
    };
    if room(out) == 0 {
        return;
    }
    match frame {
        BytesFrame::BlobString { data, .. } | BytesFrame::VerbatimString { data, .. } => {
            put(out, format!("${}\r\n", data.len()).as_bytes());
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::SimpleString { data, .. } => {
            put(out, b"+");
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::BlobError { data, .. } => {
            put(out, format!("!{}\r\n", data.len()).as_bytes());
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::SimpleError { data, .. } => {
            put(out, format!("-{data}\r\n").as_bytes());
        }
        BytesFrame::BigNumber { data, .. } => {
            put(out, b"(");
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::Number { data, .. } => put(out, format!(":{data}\r\n").as_bytes()),
        BytesFrame::Double { data, .. } => put(out, format!(",{data}\r\n").as_bytes()),
        BytesFrame::Boolean { data, .. } => put(out, if *data { b"#t\r\n" } else { b"#f\r\n" }),
        BytesFrame::Null => put(out, b"_\r\n"),
        BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => {
            let tag = if matches!(frame, BytesFrame::Push { .. }) {
                '>'
            } else {
                '*'
            };
            put(out, format!("{tag}{}\r\n", data.len()).as_bytes());
            for f in data {
                write_preview(f, out);
            }
        }
        BytesFrame::Set { data, .. } => {
            put(out, format!("~{}\r\n", data.len()).as_bytes());
            for f in data {
                write_preview(f, out);
            }
        }
        BytesFrame::Map { data, .. } => {
            put(out, format!("%{}\r\n", data.len()).as_bytes());
            for (k, v) in data {
                write_preview(k, out);
                write_preview(v, out);
            }
        }
        BytesFrame::Hello { .. } | BytesFrame::ChunkedString(_) => {
            put(out, format!("{frame:?}").as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::hook::post_hook;
    use std::sync::atomic::AtomicUsize;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn quick(backstop_ms: u64, relaxed_ms: u64) -> Maintenance {
        Maintenance::new(
            MaintenanceConfig::builder()
                .relaxation_backstop(Duration::from_millis(backstop_ms))
                .relaxed_timeout(Duration::from_millis(relaxed_ms))
                .build()
                .unwrap(),
        )
    }

    fn push(n: &Notification) -> BytesFrame {
        n.to_push()
    }

    fn migrating(seq: u64) -> Notification {
        Notification::Migrating {
            seq,
            time: Duration::from_secs(10),
            shards: vec![],
        }
    }

    fn migrated(seq: u64) -> Notification {
        Notification::Migrated {
            seq,
            shards: vec![],
        }
    }

    fn azure_message(payload: &str) -> BytesFrame {
        BytesFrame::Push {
            data: vec![
                BytesFrame::BlobString {
                    data: "message".into(),
                    attributes: None,
                },
                BytesFrame::BlobString {
                    data: AZURE_CHANNEL.into(),
                    attributes: None,
                },
                BytesFrame::BlobString {
                    data: Bytes::copy_from_slice(payload.as_bytes()),
                    attributes: None,
                },
            ],
            attributes: None,
        }
    }

    #[test]
    fn start_relaxes_and_end_clears() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let status = m.status(&origin.endpoint);
        for (start, end) in [
            (
                migrating(1),
                Notification::Migrated {
                    seq: 1,
                    shards: vec![],
                },
            ),
            (
                Notification::FailingOver {
                    seq: 2,
                    time: Duration::from_secs(1),
                    shards: vec![],
                },
                Notification::FailedOver {
                    seq: 2,
                    shards: vec![],
                },
            ),
            (
                Notification::SMigrating {
                    seq: 3,
                    slots: vec![],
                },
                Notification::SMigrated {
                    seq: 3,
                    moves: vec![],
                },
            ),
        ] {
            m.process_push(&origin, &push(&start));
            let now = Instant::now();
            assert!(status.in_maintenance() && status.is_relaxed(now), "{start}");
            let until = status.relaxed_until().unwrap();
            // The backstop: 60 s by default.
            assert!(
                until > now + Duration::from_secs(59) && until <= now + Duration::from_secs(60)
            );
            m.process_push(&origin, &push(&end));
            assert!(
                !status.in_maintenance() && !status.is_relaxed(Instant::now()),
                "{end}"
            );
            assert_eq!(status.relaxed_until(), None);
        }
    }

    #[test]
    fn moving_relaxes_for_its_time_plus_the_post_handoff_duration() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let status = m.status(&origin.endpoint);
        let before = Instant::now();
        m.process_push(
            &origin,
            &push(&Notification::Moving {
                seq: 9,
                time: Duration::from_secs(15),
                endpoint: Some(ep("10.0.0.2:6379")),
            }),
        );
        let target = status.moving().unwrap();
        assert_eq!(target.endpoint, Some(ep("10.0.0.2:6379")));
        assert_eq!(target.deadline, target.received + Duration::from_secs(15));
        // 15 s + 2 x 10 s.
        let until = status.handoff_relaxed_until().unwrap();
        assert!(until >= before + Duration::from_secs(35));
        assert!(until <= Instant::now() + Duration::from_secs(35));
        assert!(!status.in_maintenance());

        let switched_at = Instant::now();
        m.handoff_switched(&origin.endpoint);
        assert_eq!(status.moving(), None);
        let until = status.relaxed_until().unwrap();
        assert!(until >= switched_at + Duration::from_secs(20));
        assert!(until <= Instant::now() + Duration::from_secs(20));
    }

    #[test]
    fn an_end_leaves_a_moving_relaxation_in_place() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let status = m.status(&origin.endpoint);
        m.process_push(&origin, &push(&migrating(1)));
        m.process_push(
            &origin,
            &push(&Notification::Moving {
                seq: 2,
                time: Duration::from_secs(5),
                endpoint: None,
            }),
        );
        m.process_push(&origin, &push(&migrated(1)));
        assert!(!status.in_maintenance());
        assert!(status.is_relaxed(Instant::now()));
    }

    #[test]
    fn duplicates_are_suppressed_by_name_and_seq() {
        let m = Maintenance::default();
        let a = PushOrigin::new(ep("10.0.0.1:6379"));
        let b = a.clone().with_source(ep("10.0.0.1:6379"), Some(42));
        assert!(matches!(
            m.process_push(&a, &push(&migrating(1))),
            PushOutcome::Applied(_)
        ));
        // The same broadcast on another connection of the same stack.
        assert_eq!(
            m.process_push(&b, &push(&migrating(1))),
            PushOutcome::Duplicate
        );
        // Another name with the same seq is not a repeat.
        assert!(matches!(
            m.process_push(&a, &push(&migrated(1))),
            PushOutcome::Applied(_)
        ));
        // A replay of the old end later.
        assert_eq!(
            m.process_push(&b, &push(&migrated(1))),
            PushOutcome::Duplicate
        );
        // Another configured endpoint has its own sequence numbers.
        let other = PushOrigin::new(ep("10.0.0.9:6379"));
        assert!(matches!(
            m.process_push(&other, &push(&migrating(1))),
            PushOutcome::Applied(_)
        ));
        let counts = m.counts();
        assert_eq!(counts.duplicates(), 2);
        assert_eq!(counts.notifications(NotificationKind::Migrating), 3);
        assert_eq!(counts.notifications(NotificationKind::Migrated), 2);
        assert_eq!(counts.total_notifications(), 5);
    }

    #[test]
    fn moving_counts_once_per_connection() {
        let m = Maintenance::default();
        let a = PushOrigin::new(ep("10.0.0.1:6379")).with_source(ep("10.0.0.1:6379"), Some(1));
        let b = a.clone().with_source(ep("10.0.0.1:6379"), Some(2));
        let moving = push(&Notification::Moving {
            seq: 5,
            time: Duration::from_secs(15),
            endpoint: None,
        });
        assert!(matches!(
            m.process_push(&a, &moving),
            PushOutcome::Applied(_)
        ));
        assert!(matches!(
            m.process_push(&b, &moving),
            PushOutcome::Applied(_)
        ));
        assert_eq!(m.process_push(&a, &moving), PushOutcome::Duplicate);
    }

    #[test]
    fn dedup_memory_is_bounded() {
        let mut d = Dedup::default();
        let now = Instant::now();
        let key = |seq| DedupKey::Push {
            endpoint: ep("h:1"),
            kind: NotificationKind::Migrated,
            seq,
            connection: None,
        };
        for seq in 0..(DEDUP_CAPACITY as u64 * 3) {
            assert!(!d.seen(key(seq), now, PUSH_MEMORY));
        }
        assert!(d.expires.len() <= DEDUP_CAPACITY && d.order.len() <= DEDUP_CAPACITY);
        // The oldest were forgotten, the newest are remembered.
        assert!(!d.seen(key(0), now, PUSH_MEMORY));
        assert!(d.seen(key(DEDUP_CAPACITY as u64 * 3 - 1), now, PUSH_MEMORY));
        // And entries expire.
        assert!(!d.seen(
            key(0),
            now + PUSH_MEMORY + Duration::from_secs(1),
            PUSH_MEMORY
        ));
    }

    #[test]
    fn azure_events_relax_and_end_and_dedupe_by_content() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("contoso.redis.cache.windows.net:6380"));
        let status = m.status(&origin.endpoint);
        let starting = azure_message("NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2030-01-01T00:00:00|IPAddress|10.0.0.5|SSLPort|15001");
        assert!(matches!(
            m.process_push(&origin, &starting),
            PushOutcome::Applied(Notice::Azure(_))
        ));
        assert!(status.in_maintenance());
        assert_eq!(m.process_push(&origin, &starting), PushOutcome::Duplicate);
        let scheduled = azure_message("NotificationType|NodeMaintenanceScheduled");
        m.process_push(&origin, &scheduled);
        assert!(status.in_maintenance());
        m.process_push(
            &origin,
            &azure_message("NotificationType|NodeMaintenanceEnded"),
        );
        assert!(!status.in_maintenance() && !status.is_relaxed(Instant::now()));
        let counts = m.counts();
        assert_eq!(counts.azure(&AzureEventKind::NodeMaintenanceStarting), 2);
        assert_eq!(counts.azure(&AzureEventKind::NodeMaintenanceEnded), 1);
        assert_eq!(counts.total_azure(), 4);
    }

    #[test]
    fn malformed_notices_are_counted_and_dropped() {
        let m = Maintenance::default();
        let mut events = m.subscribe();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let bad_push = BytesFrame::Push {
            data: vec![
                BytesFrame::SimpleString {
                    data: "MOVING".into(),
                    attributes: None,
                },
                BytesFrame::SimpleString {
                    data: "soon".into(),
                    attributes: None,
                },
            ],
            attributes: None,
        };
        let PushOutcome::Dropped { reason } = m.process_push(&origin, &bad_push) else {
            panic!("not dropped");
        };
        assert!(reason.contains("malformed MOVING"), "{reason}");
        let event = events.try_recv().unwrap();
        match event.kind {
            EventKind::NotificationDropped { preview, .. } => {
                assert_eq!(&*preview, ">2\\r\\n+MOVING\\r\\n+soon\\r\\n")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.process_push(&origin, &azure_message("rubbish")),
            PushOutcome::Dropped { .. }
        ));
        assert_eq!(m.counts().dropped(), 2);
        assert_eq!(m.counts().total_notifications(), 0);
    }

    #[test]
    fn other_pushes_are_left_alone() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let message = BytesFrame::Push {
            data: vec![
                BytesFrame::BlobString {
                    data: "message".into(),
                    attributes: None,
                },
                BytesFrame::BlobString {
                    data: "news".into(),
                    attributes: None,
                },
                BytesFrame::BlobString {
                    data: "NotificationType|NodeMaintenanceStart".into(),
                    attributes: None,
                },
            ],
            attributes: None,
        };
        assert_eq!(
            m.process_push(&origin, &message),
            PushOutcome::NotMaintenance
        );
        assert_eq!(
            m.process_push(&origin, &BytesFrame::Null),
            PushOutcome::NotMaintenance
        );
        assert_eq!(m.counts(), NotificationCounts::default());
    }

    #[test]
    fn previews_are_bounded() {
        let big = BytesFrame::BlobString {
            data: Bytes::from(vec![b'x'; 10_000]),
            attributes: None,
        };
        let shown = preview(&big);
        assert!(
            shown.len() < PREVIEW_BYTES + 16 && shown.ends_with("..."),
            "{shown}"
        );
    }

    #[test]
    fn hooks_run_in_order_change_skip_and_see_outcomes() {
        let m = Maintenance::default();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        // First: rewrite every MIGRATING's seq to 100.
        m.add_hook(move |_cx: &HookContext<'_>, notice: &mut Notice| {
            o.lock().unwrap().push("rewrite");
            if let Notice::Push(Notification::Migrating { seq, .. }) = notice {
                *seq = 100;
            }
            HookAction::Continue
        });
        let o = order.clone();
        // Second: skip FAILING_OVER.
        m.add_hook(move |_cx: &HookContext<'_>, notice: &mut Notice| {
            o.lock().unwrap().push("skip");
            if notice.name() == "FAILING_OVER" {
                HookAction::Skip
            } else {
                HookAction::Continue
            }
        });
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let seen = outcomes.clone();
        m.add_hook(post_hook(
            move |_cx: &HookContext<'_>, notice: &Notice, outcome| {
                seen.lock().unwrap().push((notice.seq(), outcome));
            },
        ));

        let mut events = m.subscribe();
        assert!(matches!(
            m.process_push(&origin, &push(&migrating(1))),
            PushOutcome::Applied(Notice::Push(Notification::Migrating { seq: 100, .. }))
        ));
        match events.try_recv().unwrap().kind {
            EventKind::Notification(n) => assert_eq!(n.seq(), 100),
            other => panic!("{other:?}"),
        }
        let failing = push(&Notification::FailingOver {
            seq: 2,
            time: Duration::from_secs(1),
            shards: vec![],
        });
        assert_eq!(m.process_push(&origin, &failing), PushOutcome::Skipped);
        // Rewritten to the same seq as before: a duplicate.
        assert_eq!(
            m.process_push(&origin, &push(&migrating(3))),
            PushOutcome::Duplicate
        );
        assert_eq!(
            *order.lock().unwrap(),
            ["rewrite", "skip", "rewrite", "skip", "rewrite", "skip"]
        );
        assert_eq!(
            *outcomes.lock().unwrap(),
            [
                (Some(100), HookOutcome::Applied),
                (Some(2), HookOutcome::Skipped),
                (Some(100), HookOutcome::Duplicate)
            ]
        );
        assert_eq!(m.counts().skipped(), 1);
        // The skipped failover changed nothing: the state is that of the MIGRATING.
        assert!(m.status(&origin.endpoint).in_maintenance());
    }

    #[test]
    fn a_panicking_hook_does_not_stop_processing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let m = Maintenance::default()
            .with_hook(|_cx: &HookContext<'_>, _n: &mut Notice| -> HookAction {
                panic!("hook bug")
            })
            .with_hook(post_hook(move |_cx: &HookContext<'_>, _n: &Notice, _o| {
                c.fetch_add(1, Ordering::SeqCst);
            }));
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        assert!(matches!(
            m.process_push(&origin, &push(&migrating(1))),
            PushOutcome::Applied(_)
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_backstop_ends_a_maintenance_whose_end_was_lost() {
        let m = quick(80, 1000);
        let mut events = m.subscribe();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        let status = m.status(&origin.endpoint);
        m.process_push(&origin, &push(&migrating(1)));
        assert!(status.in_maintenance());
        assert!(matches!(
            events.recv().await.unwrap().kind,
            EventKind::Notification(_)
        ));
        let ended = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            ended.kind,
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::Backstop
            }
        ));
        assert!(!status.in_maintenance() && !status.is_relaxed(Instant::now()));
    }

    #[tokio::test]
    async fn an_end_notification_ends_the_relaxation_once() {
        let m = quick(80, 1000);
        let mut events = m.subscribe();
        let origin = PushOrigin::new(ep("10.0.0.1:6379"));
        m.process_push(&origin, &push(&migrating(1)));
        m.process_push(&origin, &push(&migrated(1)));
        let kinds: Vec<&str> = [
            events.recv().await.unwrap(),
            events.recv().await.unwrap(),
            events.recv().await.unwrap(),
        ]
        .iter()
        .map(|e| match &e.kind {
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::EndNotification,
            } => "ended",
            k => k.name(),
        })
        .collect();
        assert_eq!(kinds, ["notification", "notification", "ended"]);
        // The backstop timer of the MIGRATING is stale and stays silent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(events.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_handoff_window_runs_out() {
        let m = quick(60_000, 20);
        let mut events = m.subscribe();
        let endpoint = ep("10.0.0.1:6379");
        m.handoff_switched(&endpoint);
        assert!(m.status(&endpoint).is_relaxed(Instant::now()));
        let ended = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            ended.kind,
            EventKind::RelaxationEnded {
                cause: RelaxationEnd::HandoffWindowElapsed
            }
        ));
        assert!(!m.status(&endpoint).is_relaxed(Instant::now()));
    }
}
