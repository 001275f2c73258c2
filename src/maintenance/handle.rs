//! The [`Maintenance`] handle: shared by every layer of a stack (and by anyone else who wants to
//! listen). It holds the configuration, the per-endpoint [`EndpointStatus`], the event bus, the
//! hooks, the de-duplication memory and the counters; each of those lives in a room of its own
//! (`status`, `events`, `hook`, `dedup`, `counters`). The push pipeline that feeds it is the
//! demux's (`crate::demux::pipeline`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Instant;

use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::{broadcast, mpsc};

use crate::endpoint::Endpoint;
use crate::maintenance::config::MaintenanceConfig;
use crate::maintenance::counters::{Counters, NotificationCounts, Published};
use crate::maintenance::dedup::{Dedup, DedupKey};
use crate::maintenance::events::{EventKind, MaintenanceEvent, MaintenanceEvents, PushOrigin};
use crate::maintenance::hook::{Notice, NotificationHook, PushOutcome};
use crate::maintenance::limiter::HandoffLimiter;
use crate::maintenance::notification::Notification;
use crate::maintenance::status::{Change, EndpointStatus, NotificationSupport, RelaxationEnd};

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

pub(crate) type Hooks = Arc<[Arc<dyn NotificationHook>]>;

/// A layer that follows every event of a handle synchronously; see [`Maintenance::observe`].
///
/// It runs on the thread that emits the event, so it must be quick and must not wait. It may
/// emit events in turn.
pub(crate) trait Observer: Send + Sync {
    /// Sees one event; `false` once the observer is gone (it is then dropped from the list).
    fn on_event(&self, event: &MaintenanceEvent) -> bool;
    /// Whether it still wants events.
    fn alive(&self) -> bool;
}

pub(crate) struct Inner {
    config: MaintenanceConfig,
    statuses: RwLock<HashMap<Endpoint, Arc<EndpointStatus>>>,
    // Shared, not copied, by every slot of the buffer and every trigger queue: an event is a
    // few hundred bytes. The buffer is allocated in full, so it is made with the first
    // subscriber: before that, nobody could receive what is sent.
    events: OnceLock<broadcast::Sender<Arc<MaintenanceEvent>>>,
    // The layers that count or act on every event (metrics, circuit breakers), called as the
    // event is emitted: no task and no buffer slot each.
    observers: RwLock<Arc<[Arc<dyn Observer>]>>,
    // Each stack's own, lossless path for the events it acts on (see `Maintenance::triggers`).
    triggers: Mutex<Vec<mpsc::UnboundedSender<Arc<MaintenanceEvent>>>>,
    dedup: Mutex<Dedup>,
    hooks: RwLock<Hooks>,
    counters: Counters,
    published: Published,
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
        Maintenance {
            inner: Arc::new(Inner {
                config,
                statuses: RwLock::new(HashMap::new()),
                events: OnceLock::new(),
                observers: RwLock::new(Arc::from(Vec::new())),
                triggers: Mutex::new(Vec::new()),
                dedup: Mutex::new(Dedup::default()),
                hooks: RwLock::new(Arc::from(Vec::new())),
                counters: Counters::default(),
                published: Published::default(),
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
            .or_insert_with(|| Arc::new(EndpointStatus::new(endpoint.clone())))
            .clone()
    }

    /// Forgets the state of every endpoint nobody holds any more (no stack, layer or caller
    /// keeps its `Arc`): a cluster calls this as nodes leave its map, so that the states of
    /// nodes long gone do not pile up. A later [`status`](Self::status) for one of them starts
    /// afresh. How many were forgotten.
    pub(crate) fn forget_unused(&self) -> usize {
        let mut statuses = self
            .inner
            .statuses
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let before = statuses.len();
        // Under the write lock nobody is between a lookup and its clone: an entry used anywhere
        // has a second reference.
        statuses.retain(|_, status| Arc::strong_count(status) > 1);
        before - statuses.len()
    }

    /// Subscribes to the events from now on.
    pub fn subscribe(&self) -> MaintenanceEvents {
        MaintenanceEvents {
            rx: self
                .inner
                .events
                .get_or_init(|| broadcast::channel(self.inner.config.event_buffer().max(1)).0)
                .subscribe(),
            missed: 0,
        }
    }

    /// The events a stack or a cluster acts on (`MOVING`, Azure events, `SMIGRATING`,
    /// `SMIGRATED`), on a path of its own that never
    /// drops one: the broadcast of [`Maintenance::subscribe`] may skip events for a subscriber
    /// that falls behind, which is fine for an observer and not for a handoff.
    pub(crate) fn triggers(&self) -> mpsc::UnboundedReceiver<Arc<MaintenanceEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut triggers = self
            .inner
            .triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Stacks that are gone: not kept until the next MOVING.
        triggers.retain(|t| !t.is_closed());
        triggers.push(tx);
        rx
    }

    /// Publishes an event to every subscriber (for layers and tasks that report what they did).
    pub fn emit(&self, event: MaintenanceEvent) {
        tracing::trace!(endpoint = %event.endpoint, source = %event.source, event = event.kind.name(), "maintenance event");
        // MOVING and Azure events move stacks; SMIGRATING and SMIGRATED change a cluster's
        // slot map.
        let acted_on = matches!(
            event.kind,
            EventKind::Notification(
                Notification::Moving { .. }
                    | Notification::SMigrating { .. }
                    | Notification::SMigrated { .. }
            ) | EventKind::Azure(_)
        );
        let event = Arc::new(event);
        if acted_on {
            let mut triggers = self
                .inner
                .triggers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            triggers.retain(|t| t.send(event.clone()).is_ok());
        }
        // No subscriber is fine: nobody is listening.
        if let Some(events) = self.inner.events.get() {
            let _ = events.send(event.clone());
        }
        // Observers run after the broadcast, so that an event an observer emits in turn (a
        // circuit opening on a maintenance event) reaches subscribers after its cause.
        let observers = self
            .inner
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut gone = false;
        for observer in observers.iter() {
            gone |= !observer.on_event(&event);
        }
        if gone {
            self.renew_observers(None);
        }
    }

    /// Calls `observer` with every event emitted from now on, as it is emitted, until it says
    /// it is gone.
    pub(crate) fn observe(&self, observer: Arc<dyn Observer>) {
        self.renew_observers(Some(observer));
    }

    /// Drops the observers that are gone from the list, and adds `new`.
    fn renew_observers(&self, new: Option<Arc<dyn Observer>>) {
        let mut list = self
            .inner
            .observers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let next: Vec<Arc<dyn Observer>> = list
            .iter()
            .filter(|o| o.alive())
            .cloned()
            .chain(new)
            .collect();
        *list = Arc::from(next);
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> NotificationCounts {
        self.inner.counters.snapshot()
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

    /// Tells the handle that the handoff of `endpoint`'s stack has switched to its new
    /// connection: timeouts stay relaxed for the post-handoff relaxed duration from now, and
    /// the pending `MOVING` is cleared.
    pub fn handoff_switched(&self, endpoint: &Endpoint) {
        let status = self.status(endpoint);
        status.switched(self.inner.config.post_handoff_relaxed_duration());
        self.schedule_expiry(&status);
    }

    pub(crate) fn record_support(&self, endpoint: &Endpoint, support: NotificationSupport) {
        self.status(endpoint).set_support(support);
    }

    /// Processes one push frame received from `origin`: a maintenance notification or an
    /// `AzureRedisEvents` message is parsed, shown to the hooks, de-duplicated, applied to the
    /// state of `origin.endpoint` and published; a malformed one is counted, logged at warn
    /// with a bounded preview of its bytes and dropped; anything else is left alone.
    ///
    /// The demux calls this for every push (the pipeline itself lives in the demux: see
    /// [`NotificationDemux`](crate::NotificationDemux)); a client of another kind can feed its
    /// own pushes here.
    pub fn process_push(&self, origin: &PushOrigin, frame: &BytesFrame) -> PushOutcome {
        crate::demux::pipeline::process_push(self, origin, frame)
    }

    // ===== for the push pipeline =====

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn hooks(&self) -> Hooks {
        self.inner
            .hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `notice` from `origin` repeats one seen before; remembers it if not.
    pub(crate) fn is_duplicate(&self, origin: &PushOrigin, notice: &Notice, now: Instant) -> bool {
        let (key, memory) = DedupKey::of(origin, notice);
        self.inner
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen(key, now, memory)
    }

    /// Applies a notice to the state of `origin.endpoint`: the rule is
    /// [`EndpointStatus::apply`]; this schedules the expiry it asks for.
    pub(crate) fn apply(
        &self,
        origin: &PushOrigin,
        notice: &Notice,
        received: Instant,
    ) -> Option<RelaxationEnd> {
        let status = self.status(&origin.endpoint);
        match status.apply(notice, &origin.source, received, &self.inner.config) {
            Change::None => None,
            Change::Relaxed => {
                self.schedule_expiry(&status);
                None
            }
            Change::Ended(cause) => Some(cause),
        }
    }

    // ===== published by the stacks, read by observers =====

    /// Publishes a stack's count of commands sent again after their connection ended; read by
    /// [`Maintenance::retried`].
    pub(crate) fn publish_retries(&self, counter: Arc<AtomicU64>) {
        self.inner.published.add_retries(counter);
    }

    /// Publishes a pool's handoff limiter; read by [`Maintenance::limiters`].
    pub(crate) fn publish_limiter(&self, limiter: HandoffLimiter) {
        self.inner.published.add_limiter(limiter);
    }

    /// How many commands the stacks sharing this handle have sent again after their connection
    /// ended (HandoffRetry's resends), in total.
    pub fn retried(&self) -> u64 {
        self.inner.published.retried()
    }

    /// The handoff limiters of the pools sharing this handle: their queue depth, worker
    /// utilisation and peaks.
    pub fn limiters(&self) -> Vec<HandoffLimiter> {
        self.inner.published.limiters()
    }

    /// A reference that does not keep the handle alive (for an observer registered on it).
    pub(crate) fn downgrade(&self) -> WeakMaintenance {
        WeakMaintenance(Arc::downgrade(&self.inner))
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
                let Some(deadline) = status.deadline_instant() else {
                    return;
                };
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                if status.generation() != generation {
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
}

/// A [`Maintenance`] handle that does not keep it alive.
#[derive(Clone)]
pub(crate) struct WeakMaintenance(Weak<Inner>);

impl WeakMaintenance {
    pub(crate) fn upgrade(&self) -> Option<Maintenance> {
        self.0.upgrade().map(|inner| Maintenance { inner })
    }
}

fn expire(inner: &Weak<Inner>, status: &EndpointStatus) {
    let Some(inner) = inner.upgrade() else {
        return;
    };
    let cause = status.expiry_cause();
    if cause == RelaxationEnd::Backstop {
        tracing::warn!(endpoint = %status.endpoint(), backstop = ?inner.config.relaxation_backstop(), "no end of maintenance arrived within the backstop; timeouts are no longer relaxed");
    }
    Maintenance { inner }.emit(MaintenanceEvent::new(
        status.endpoint().clone(),
        EventKind::RelaxationEnded { cause },
    ));
}
