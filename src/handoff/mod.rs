//! [`HandoffRetry`]: moves traffic to a new endpoint before the old one goes away, reconnects
//! after an unannounced loss, and sends again what is safe to send again.
//!
//! HandoffRetry owns the stack's current [`Connection`] and a [`MakeConnection`] that opens new
//! ones. A background task (one per stack) makes every change of connection:
//!
//! - **MOVING with an endpoint**: dial it at once (dial plus handshake bounded by
//!   `handoff_timeout`, up to `max_handoff_retries` attempts with backoff and jitter), restore the
//!   Pub/Sub subscriptions on it, then switch: new commands go to the new connection while the
//!   old one finishes the replies it owes and closes (make before break). A newer MOVING
//!   supersedes one in progress.
//! - **MOVING with a null endpoint**: the same, to the configured address, at half the grace
//!   period (with jitter, so a fleet does not reconnect in lockstep).
//! - **Azure `NodeMaintenanceFailoverComplete` or `NodeMaintenanceScaleComplete`**: the same
//!   switch, to a fresh connection to the configured address (the replica promoted behind it).
//! - **An unannounced loss** (server restart, network reset): reconnect to the configured
//!   address with backoff and jitter, a bounded number of attempts per outage.
//! - **If every handoff attempt fails**: keep serving on the old connection until it closes,
//!   then reconnect to the configured address.
//!
//! The configured address is never overwritten. Commands never wait on the switch itself (it is
//! one pointer swap); while there is no connection at all they wait up to
//! `wait_for_connection`, then fail with [`Error::NotSent`].
//!
//! A command whose connection ended under it is sent again on the next connection when that
//! cannot run it twice: always when it was never written ([`Error::NotSent`]); when it was
//! written and its reply lost, per the [`ResendPolicy`] (by default [`Resend::SafeOnly`]: only
//! read-only and idempotent commands). Other commands get [`Error::ConnectionLost`], which says
//! they may have run.
//!
//! Pub/Sub subscriptions are kept from the subscription commands the stack forwards, and made
//! again on every new connection. At a handoff the new connection subscribes before the old
//! one unsubscribes, so nothing published in between is lost; its messages are held until the
//! old connection has delivered its last ones, so each channel still arrives in publication
//! order (what was published during that overlap comes twice; see `hold` for the bounds).
//! A subscription the server ends on its own is dropped from
//! that record too: Redis 7 sends an `sunsubscribe` push to every subscriber of a shard channel
//! whose slot leaves the node, and making it again there would only be refused (`MOVED`). The
//! push itself is passed on like any other.
//!
//! # Why a trait instead of `tower::MakeService`
//! Making a connection here needs two things a `MakeService<Endpoint>` cannot say: the stack's
//! configured address (where to go back to) and a per-attempt bound (`handoff_timeout` for a
//! handoff, `connect_timeout` for a reconnect). [`MakeConnection`] carries both. It lives with
//! the connection (`crate::connection`), implemented there for [`Connector`](crate::Connector)
//! and by the demux for [`NotificationDemux`](crate::NotificationDemux) over one, so this
//! layer names no other layer.
//!
//! # Example
//! ```no_run
//! use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
//! use redis_handoff::{cmd, ConnectOptions, Connector, Maintenance, NotificationDemux};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let maintenance = Maintenance::default();
//! let connector = Connector::new(ConnectOptions::from_url("redis://127.0.0.1:6379")?)?;
//! let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
//! let redis = HandoffRetry::connect(demuxed, maintenance, HandoffConfig::default()).await?;
//! let reply = redis.clone().oneshot(cmd!("PING")).await?;
//! # Ok(()) }
//! ```

mod config;
mod control;
mod future;
mod hold;
mod layer;
mod session;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tower_service::Service;

pub use config::{HandoffConfig, Resend, ResendPolicy};

pub use crate::maintenance::HandoffLimiter;
use crate::maintenance::{EventKind, Maintenance, MaintenanceEvent, MaintenanceEvents};
pub(crate) use future::Attempt;
pub use future::ResponseFuture;
pub use layer::HandoffRetryLayer;

use crate::command::Command;
use crate::connection::expiry::{Expiry, SharedRelaxation};
pub use crate::connection::MakeConnection;
use crate::connection::{AnswerFuture, Connection, PushFilter, PushHub, Pushes, Subscriptions};
use crate::endpoint::{ConnectionId, Endpoint};
use crate::error::Error;
use crate::request::Request;
use session::Session;

/// Counters kept by a stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandoffStats {
    /// Commands sent again after their connection ended.
    pub retried: u64,
    /// Handoffs that switched to a new connection.
    pub handoffs: u64,
    /// Handoffs where every attempt failed.
    pub handoffs_failed: u64,
    /// Reconnects after an unannounced loss.
    pub reconnects: u64,
}

/// An instruction to move the stack to another connection: to `endpoint` now, or with none to
/// the configured address at half of `time`. A `MOVING` has a sequence number; an Azure refresh
/// has none.
pub(crate) struct Move {
    pub(crate) seq: Option<u64>,
    pub(crate) time: Duration,
    pub(crate) endpoint: Option<Endpoint>,
}

/// An unsubscribe on its way: its family (as the family's subscribe kind) and the names it
/// gives (none: the whole family).
struct Leaving {
    id: u64,
    family: crate::command::SubscriptionKind,
    names: Vec<bytes::Bytes>,
}

/// What [`Inner::install_subscribed`] did: the old connection, the answers of the
/// subscription changes queued on the new one, and the commands that release the old one.
pub(super) struct Switched {
    pub(super) old: Option<Connection>,
    pub(super) caught_up: Vec<AnswerFuture<Command>>,
    pub(super) release: Vec<Command>,
}

/// Waits for the answers of the subscription changes made on a new connection at its switch.
pub(super) async fn caught_up(answers: Vec<AnswerFuture<Command>>) {
    for answer in answers {
        if let Err(f) = answer.await {
            tracing::warn!(error = %f.error, "a subscription made during the switch failed on the new connection");
        }
    }
}

/// What a stack tells when the server ends one of its shard channel subscriptions.
pub(crate) type ShardChannelEnded = Arc<dyn Fn(&bytes::Bytes) + Send + Sync>;

/// A Pub/Sub message's family (as the family's subscribe kind) and the channel, pattern or
/// shard channel it came through; `None` for every other frame.
fn message_of(
    frame: &redis_protocol::resp3::types::BytesFrame,
) -> Option<(crate::command::SubscriptionKind, &bytes::Bytes)> {
    use crate::command::SubscriptionKind;
    let (kind, name) = crate::frame::push_head(frame)?;
    let family = if kind.eq_ignore_ascii_case(b"message") {
        SubscriptionKind::Subscribe
    } else if kind.eq_ignore_ascii_case(b"pmessage") {
        SubscriptionKind::PSubscribe
    } else if kind.eq_ignore_ascii_case(b"smessage") {
        SubscriptionKind::SSubscribe
    } else {
        return None;
    };
    Some((family, name))
}

/// Whether a message of `family` through `name` is on the Azure events channel (maintenance).
fn is_azure_event(family: crate::command::SubscriptionKind, name: &bytes::Bytes) -> bool {
    family == crate::command::SubscriptionKind::Subscribe
        && name.as_ref() == crate::maintenance::AZURE_CHANNEL.as_bytes()
}

/// Whether `frame` is a Pub/Sub message (not one on the Azure events channel).
fn is_message(frame: &redis_protocol::resp3::types::BytesFrame) -> bool {
    message_of(frame).is_some_and(|(family, name)| !is_azure_event(family, name))
}

/// The subscribe kind of `kind`'s family.
fn family(kind: crate::command::SubscriptionKind) -> crate::command::SubscriptionKind {
    use crate::command::SubscriptionKind as K;
    match kind {
        K::Subscribe | K::Unsubscribe => K::Subscribe,
        K::PSubscribe | K::PUnsubscribe => K::PSubscribe,
        K::SSubscribe | K::SUnsubscribe => K::SSubscribe,
    }
}

pub(crate) struct Inner {
    configured: Endpoint,
    config: HandoffConfig,
    // Read for every command by `is_connected`: swapped, never locked.
    current: ArcSwapOption<Connection>,
    generation: AtomicU64,
    changed: watch::Sender<u64>,
    kick: Arc<Notify>,
    down: AtomicBool,
    last_error: Mutex<Option<Error>>,
    subscriptions: Mutex<Subscriptions>,
    // Unsubscribe commands sent and not answered yet: their channels' messages still come (the
    // server sends what was published before it processed the command) and still count.
    leaving: Mutex<Vec<Leaving>>,
    leave_seq: AtomicU64,
    // Connections switched away from whose release (their unsubscribes) is not answered yet:
    // they still deliver messages, so a caller's unsubscribe goes to them too.
    releasing: Mutex<Vec<Connection>>,
    // The hold on the current connection's messages (see `hold`), while an older connection
    // may still deliver before it.
    holding: Mutex<std::sync::Weak<hold::Hold>>,
    // Told the name of a shard channel whose subscription the server ended on its own (a
    // cluster follows it to the slot's new owner).
    shard_channel_ended: Mutex<Option<ShardChannelEnded>>,
    pushes: Arc<PushHub>,
    maintenance: Maintenance,
    // Boxed: the channel allocates its first block of slots with the stack.
    triggers: mpsc::UnboundedSender<Box<Move>>,
    // Published on the maintenance handle, which observers read without keeping the stack.
    retried: Arc<AtomicU64>,
    handoffs: AtomicU64,
    handoffs_failed: AtomicU64,
    reconnects: AtomicU64,
    // Whether one owner uses this stack (see `HandoffRetry::dedicated`), and what it set on
    // its connection.
    dedicated: bool,
    session: Mutex<Session>,
    // Opens a dedicated stack over the same connector, maintenance handle and configuration.
    sibling: Arc<dyn Fn() -> HandoffRetry + Send + Sync>,
    // Dropped with the last handle: the control task sees it and ends.
    _shutdown: oneshot::Sender<()>,
}

impl Inner {
    fn current(&self) -> Option<Connection> {
        self.current.load().as_deref().cloned()
    }

    pub(super) fn usable(&self) -> Option<Connection> {
        self.current().filter(|c| !c.is_closed())
    }

    fn install(&self, connection: Option<Connection>) -> Option<Connection> {
        let old = self
            .current
            .swap(connection.map(Arc::new))
            .map(|old| Arc::try_unwrap(old).unwrap_or_else(|shared| (*shared).clone()));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.send_replace(generation);
        old
    }

    /// Logs what the stack did and publishes it on the maintenance handle, as coming from
    /// `source` (the connection concerned) when there is one.
    fn report(&self, kind: EventKind, source: Option<&Connection>) {
        match &kind {
            EventKind::HandoffFailed { .. }
            | EventKind::ReconnectFailed { .. }
            | EventKind::Disconnected { .. } => {
                tracing::warn!(endpoint = %self.configured, event = ?kind, "connection")
            }
            _ => tracing::info!(endpoint = %self.configured, event = ?kind, "connection"),
        }
        let mut event = MaintenanceEvent::new(self.configured.clone(), kind);
        if let Some(conn) = source {
            event = event.with_connection(
                conn.id(),
                conn.endpoint().clone(),
                Some(conn.server_info().id),
            );
        }
        self.maintenance.emit(event);
    }

    /// Whether a push from one of the stack's connections is for the stack's subscribers: a
    /// Pub/Sub message only while its channel (pattern, shard channel) is subscribed or an
    /// unsubscribe from it is still unanswered (the server sends what was published before it
    /// processed the unsubscribe), so that neither a connection still being prepared nor an old
    /// one being released delivers one after the caller's `UNSUBSCRIBE` was answered. The connections' own `AzureRedisEvents`
    /// messages and every other push pass.
    fn wants(&self, frame: &redis_protocol::resp3::types::BytesFrame) -> bool {
        let Some((family, name)) = message_of(frame) else {
            return true;
        };
        if is_azure_event(family, name) {
            return true;
        }
        if self.lock_subscriptions().contains(family, name) {
            return true;
        }
        self.lock_leaving()
            .iter()
            .any(|l| l.family == family && (l.names.is_empty() || l.names.contains(name)))
    }

    /// Takes note of what a push from connection `from` says about the stack's subscriptions:
    /// an `sunsubscribe` the server sent on its own (Redis 7 does when the slot of a shard
    /// channel leaves the node) ends that subscription, so that the next connection does not
    /// make it again on a node that no longer serves its slot. Only the current connection's
    /// count, and only when no unsubscribe of the stack's own names the channel: the
    /// confirmations of those, and of the release of an old connection, change nothing.
    fn heard(&self, frame: &redis_protocol::resp3::types::BytesFrame, from: ConnectionId) {
        use crate::command::SubscriptionKind;
        let redis_protocol::resp3::types::BytesFrame::Push { data, .. } = frame else {
            return;
        };
        let (Some(kind), Some(name)) = (
            data.first().and_then(crate::frame::text),
            data.get(1).and_then(crate::frame::text),
        ) else {
            return;
        };
        if !kind.eq_ignore_ascii_case(b"sunsubscribe") {
            return;
        }
        let current = self.current().is_some_and(|c| c.id() == from);
        if !current {
            return;
        }
        let asked = self.lock_leaving().iter().any(|l| {
            l.family == SubscriptionKind::SSubscribe
                && (l.names.is_empty() || l.names.contains(name))
        });
        if asked {
            return;
        }
        let mut subs = self.lock_subscriptions();
        if !subs.contains(SubscriptionKind::SSubscribe, name) {
            return;
        }
        subs.apply(SubscriptionKind::SUnsubscribe, name);
        drop(subs);
        tracing::info!(endpoint = %self.configured, channel = %String::from_utf8_lossy(name),
            "the server ended a shard channel subscription (its slot left the node)");
        let told = self
            .shard_channel_ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(tell) = told {
            tell(name);
        }
    }

    fn lock_leaving(&self) -> std::sync::MutexGuard<'_, Vec<Leaving>> {
        self.leaving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes an unsubscribe command about to be sent; its id, to forget it once answered.
    fn leaving(&self, command: &Command) -> Option<u64> {
        let sub = command.subscription().filter(|s| s.kind.is_unsubscribe())?;
        let id = self.leave_seq.fetch_add(1, Ordering::Relaxed);
        let names = command.subscription_names();
        self.lock_leaving().push(Leaving {
            id,
            family: family(sub.kind),
            names,
        });
        Some(id)
    }

    /// The unsubscribe `id` was answered (or failed): its channels' messages stop counting.
    fn left(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.lock_leaving().retain(|l| l.id != id);
        }
    }

    fn lock_releasing(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.releasing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connections still being released, for an unsubscribe to reach them too.
    fn releasing(&self) -> Vec<Connection> {
        self.lock_releasing()
            .iter()
            .filter(|c| !c.is_closed())
            .cloned()
            .collect()
    }

    /// `old`'s release was answered (or given up on): it delivers no more messages.
    pub(super) fn released(&self, old: &Connection) {
        self.lock_releasing().retain(|c| c.id() != old.id());
    }

    /// Whether `conn` is the current connection.
    fn is_current(&self, conn: &Connection) -> bool {
        self.current().is_some_and(|c| c.id() == conn.id())
    }

    fn lock_holding(&self) -> std::sync::MutexGuard<'_, std::sync::Weak<hold::Hold>> {
        self.holding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_subscriptions(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `conn` current. It was prepared with the subscriptions `restored`; what callers
    /// subscribed or unsubscribed since is queued on it first, under the subscriptions' lock: a
    /// caller's subscription command goes to the current connection under the same lock (see
    /// `future::subscription`), so none can fall between the two connections. Returns the old
    /// connection, the answers of what was queued on the new one, and the commands that
    /// release the old one. Those go out once the answers are in (the caller of this sends
    /// them; only the release goes to the old connection from now on): released at once, the
    /// old connection could stop delivering a channel subscribed during the switch before the
    /// new one starts, and a message published in between would be lost.
    fn install_subscribed(&self, conn: Connection, restored: &Subscriptions) -> Switched {
        let subs = self.lock_subscriptions();
        let caught_up: Vec<_> = subs
            .commands_since(restored)
            .into_iter()
            .map(|c| conn.queue_now(c))
            .collect();
        let old = self.install(Some(conn));
        let release = match &old {
            Some(old) if !old.is_closed() => subs.union(restored).release_commands(),
            _ => Vec::new(),
        };
        if let (Some(old), false) = (&old, release.is_empty()) {
            // Under the subscriptions' lock: an unsubscribe from now on finds it.
            self.lock_releasing().push(old.clone());
        }
        Switched {
            old,
            caught_up,
            release,
        }
    }

    fn last_error(&self) -> Option<Error> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_last_error(&self, error: Error) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    /// Waits until a usable connection exists, for at most `wait_for_connection`.
    async fn wait_for_connection(&self) -> Result<Connection, Error> {
        let deadline = tokio::time::Instant::now() + self.config.wait_for_connection;
        let mut changed = self.changed.subscribe();
        loop {
            if let Some(conn) = self.usable() {
                return Ok(conn);
            }
            // Ask the control task to act: a closed connection it has not noticed yet, or a
            // stack that gave up and should try again now that a command wants it.
            self.kick.notify_one();
            if self.down.load(Ordering::Acquire) {
                return Err(self.unavailable("every reconnect attempt failed"));
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(self.unavailable("the stack is shutting down")),
                Err(_) => {
                    return Err(self.unavailable(&format!(
                        "no connection within {:?}",
                        self.config.wait_for_connection
                    )))
                }
            }
        }
    }

    pub(super) fn unavailable(&self, what: &str) -> Error {
        let reason = match self.last_error() {
            Some(e) => format!("{what} to {}: {e}", self.configured),
            None => format!("{what} to {}", self.configured),
        };
        Error::NotSent {
            reason: reason.into(),
        }
    }

    fn should_retry<R: Request>(&self, error: &Error, request: &R) -> bool {
        // A slot's refusal goes up at once, to the cluster layer that can wait it out.
        !future::slot_refusal(error) && request.resend(error, &*self.config.resend)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`Service`] that keeps commands flowing across handoffs and reconnects; see the
/// [module docs](self).
pub struct HandoffRetry {
    inner: Arc<Inner>,
    reservation: Reservation,
}

impl Clone for HandoffRetry {
    fn clone(&self) -> Self {
        HandoffRetry {
            inner: self.inner.clone(),
            reservation: self.reservation.clone(),
        }
    }
}

/// The handoff layer's part of one service clone: the current connection as last seen (by
/// its generation) and whether `poll_ready` reserved a slot on it for the next `call`.
/// [`HandoffRetry`] keeps one; so does the fused [`Stack`](crate::Stack), over the same
/// shared state, so that both send by the same rules.
#[derive(Default)]
pub(crate) struct Reservation {
    cached: Option<Connection>,
    // The generation `cached` is of, in its low 32 bits: a clone of the reservation is made
    // and moved with every command, so it is kept to 32 bytes. A cache that skipped exactly
    // 2^32 handoffs between two looks would be taken for current; it closes with its
    // connection all the same, and the call then waits for the next one.
    generation: u32,
    reserved: bool,
}

impl Clone for Reservation {
    fn clone(&self) -> Self {
        // The connection as seen; the reserved slot is this clone's own.
        Reservation {
            cached: self.cached.clone(),
            generation: self.generation,
            reserved: false,
        }
    }
}

impl Reservation {
    /// Takes the current connection as seen now: what a clone made before its first
    /// `poll_ready` starts from (clones of a stack that was never polled itself would each
    /// look the connection up again).
    pub(crate) fn prime(&mut self, inner: &Inner) {
        self.refresh(inner);
    }

    fn refresh(&mut self, inner: &Inner) {
        // Truncated on purpose: see `generation`.
        let generation = inner.generation.load(Ordering::Acquire) as u32;
        if self.cached.is_none() || self.generation != generation {
            self.cached = inner.current();
            self.generation = generation;
            self.reserved = false;
        }
    }

    /// `poll_ready`: a slot on the current connection, or ready at once to wait in `call`
    /// for the next connection when there is none.
    #[inline]
    pub(crate) fn poll_ready<R: Request>(
        &mut self,
        inner: &Inner,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        self.refresh(inner);
        match &mut self.cached {
            Some(conn) if !conn.is_closed() => match Service::<R>::poll_ready(conn, cx) {
                Poll::Ready(Ok(())) => {
                    self.reserved = true;
                    Poll::Ready(Ok(()))
                }
                // Closed under us: the call waits for the next connection.
                Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Ready(Ok(())),
        }
    }

    /// `call`: sends on the reserved slot, or starts the wait for a connection (and the
    /// subscription or dedicated paths).
    #[inline]
    pub(crate) fn call<R: Request>(&mut self, inner: &Arc<Inner>, request: R) -> Attempt<R> {
        self.call_expiring(inner, request, None, None)
    }

    /// [`Reservation::call`] with a deadline for the connection to keep when the request goes
    /// straight to one (see `connection::expiry`); on the other paths the caller keeps it.
    #[inline]
    pub(crate) fn call_expiring<R: Request>(
        &mut self,
        inner: &Arc<Inner>,
        request: R,
        expiry: Option<Expiry>,
        relaxation: Option<&SharedRelaxation>,
    ) -> Attempt<R> {
        if request
            .as_command()
            .is_some_and(|c| c.subscription().is_some())
        {
            // Tracked and queued under the subscriptions' lock, on whichever connection is
            // current then.
            if std::mem::take(&mut self.reserved) {
                self.cached = None;
            }
            return Attempt::subscription(request, inner.clone());
        }
        if inner.dedicated {
            // One owner: its session decides, on the connection the request really goes to.
            if std::mem::take(&mut self.reserved) {
                // Dropping the connection handle gives back the slot it reserved.
                self.cached = None;
            }
            return Attempt::dedicated(request, inner.clone());
        }
        match (&mut self.cached, std::mem::take(&mut self.reserved)) {
            (Some(conn), true) => Attempt::sent(conn.call_expiring(request, expiry, relaxation)),
            _ => Attempt::waiting(request, inner.clone()),
        }
    }
}

/// A queue slot taken on a stack's current connection for one request, by a caller that
/// borrows the stack's [`Reservation`] rather than cloning it ([`Reservation::slot_for`]).
/// Given back if dropped unused.
pub(crate) struct Slot<'a> {
    conn: SlotConnection<'a>,
    armed: bool,
}

/// The connection a [`Slot`] is on: the reservation's cached one while it is current, or
/// the current one, looked up, after a handoff the reservation has not seen.
enum SlotConnection<'a> {
    Cached(&'a Connection),
    Current(Connection),
}

impl SlotConnection<'_> {
    #[inline]
    fn get(&self) -> &Connection {
        match self {
            SlotConnection::Cached(conn) => conn,
            SlotConnection::Current(conn) => conn,
        }
    }
}

impl Slot<'_> {
    /// Sends `request` on the slot, with a deadline for the connection to keep.
    #[inline]
    pub(crate) fn send<R: Request>(
        mut self,
        request: R,
        expiry: Option<Expiry>,
        relaxation: Option<&SharedRelaxation>,
    ) -> Attempt<R> {
        self.armed = false;
        Attempt::sent(self.conn.get().call_on_slot(request, expiry, relaxation))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.get().give_back_slot();
        }
    }
}

impl Reservation {
    /// For a caller that borrows this reservation rather than cloning it
    /// ([`Stack::send`](crate::Stack::send)): a slot on the current connection (the cached
    /// one while it is current, so that nothing is looked up or counted), if `request` goes
    /// straight to a connection (not a subscription, not a dedicated stack) and that
    /// connection is open and has room. `None` sends the caller down the full path
    /// (`poll_ready` and `call` on a clone), which waits for room or for the next connection.
    #[inline]
    pub(crate) fn slot_for<R: Request>(&self, inner: &Inner, request: &R) -> Option<Slot<'_>> {
        if inner.dedicated
            || request
                .as_command()
                .is_some_and(|c| c.subscription().is_some())
        {
            return None;
        }
        // Truncated as in `refresh`.
        let generation = inner.generation.load(Ordering::Acquire) as u32;
        let conn = match &self.cached {
            Some(cached) if self.generation == generation => SlotConnection::Cached(cached),
            _ => SlotConnection::Current(inner.current()?),
        };
        if conn.get().is_closed() || !conn.get().try_take_slot() {
            // No slot was taken: nothing to give back (a `Slot` is made only with one).
            return None;
        }
        Some(Slot { conn, armed: true })
    }
}

impl fmt::Debug for HandoffRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffRetry")
            .field("configured", &self.inner.configured)
            .field(
                "current",
                &self.inner.current().map(|c| c.endpoint().clone()),
            )
            .finish()
    }
}

impl HandoffRetry {
    /// Starts a stack over `connector` and connects in the background; commands sent before
    /// the first connection is up wait for it (up to `wait_for_connection`). Needs a Tokio
    /// runtime.
    ///
    /// Handoffs start on the `MOVING` notifications `maintenance` hears from the stack's own
    /// connection (use [`NotificationDemux`](crate::NotificationDemux) over the connector so that it hears them), and take
    /// `handoff_timeout` and `max_handoff_retries` from its configuration. Everything the stack
    /// does is published there as events.
    pub fn new<M: MakeConnection>(
        connector: M,
        maintenance: Maintenance,
        config: HandoffConfig,
    ) -> Self {
        let retried = Arc::new(AtomicU64::new(0));
        maintenance.publish_retries(retried.clone());
        HandoffRetry::start(connector, maintenance, config, false, retried)
    }

    fn start<M: MakeConnection>(
        connector: M,
        maintenance: Maintenance,
        config: HandoffConfig,
        dedicated: bool,
        retried: Arc<AtomicU64>,
    ) -> Self {
        let (changed, _) = watch::channel(0);
        let (triggers_tx, triggers_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let kick = Arc::new(Notify::new());
        let sibling: Arc<dyn Fn() -> HandoffRetry + Send + Sync> = {
            let (connector, maintenance, config, retried) = (
                connector.clone(),
                maintenance.clone(),
                config.clone(),
                retried.clone(),
            );
            Arc::new(move || {
                HandoffRetry::start(
                    connector.clone(),
                    maintenance.clone(),
                    config.clone(),
                    true,
                    retried.clone(),
                )
            })
        };
        let inner = Arc::new(Inner {
            configured: connector.configured_endpoint(),
            config,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            changed,
            kick: kick.clone(),
            down: AtomicBool::new(false),
            last_error: Mutex::new(None),
            subscriptions: Mutex::new(Subscriptions::default()),
            leaving: Mutex::new(Vec::new()),
            leave_seq: AtomicU64::new(0),
            releasing: Mutex::new(Vec::new()),
            holding: Mutex::new(std::sync::Weak::new()),
            shard_channel_ended: Mutex::new(None),
            pushes: Arc::new(PushHub::new(
                connector.configured_endpoint(),
                connector.push_buffer(),
            )),
            maintenance: maintenance.clone(),
            triggers: triggers_tx,
            retried,
            handoffs: AtomicU64::new(0),
            handoffs_failed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dedicated,
            session: Mutex::new(Session::default()),
            sibling,
            _shutdown: shutdown_tx,
        });
        tokio::spawn(control::run(
            Arc::downgrade(&inner),
            connector,
            triggers_rx,
            maintenance.triggers(),
            shutdown_rx,
            kick,
        ));
        HandoffRetry {
            inner,
            reservation: Reservation::default(),
        }
    }

    /// Starts a stack and waits for its first connection, failing with the connect error if
    /// the configured address cannot be reached (after the reconnect attempts).
    pub async fn connect<M: MakeConnection>(
        connector: M,
        maintenance: Maintenance,
        config: HandoffConfig,
    ) -> Result<Self, Error> {
        HandoffRetry::new(connector, maintenance, config)
            .connected()
            .await
    }

    /// Opens a stack of its own for one owner: a new connection (with the same connector,
    /// maintenance handle and configuration, so it hands off and reconnects like this one)
    /// that takes connection-state commands (`WATCH`, `MULTI`, `SELECT`, ...). What they set
    /// is carried over to a new connection where possible, and a `WATCH` or `MULTI` lost with
    /// its connection makes the next `EXEC` fail with [`Error::WatchLost`]; see
    /// [`Dedicated`](crate::Dedicated). The connection closes when the result is dropped.
    pub async fn dedicated(&self) -> Result<crate::Dedicated<HandoffRetry>, Error> {
        let stack = (self.inner.sibling)().connected().await?;
        Ok(crate::Dedicated::new(stack))
    }

    /// Forwards the stack's pushes to `to` as they arrive (a pool's hub).
    pub(crate) fn forward_pushes(&self, to: &Arc<PushHub>) {
        self.inner.pushes.forward_to(to, None);
    }

    /// Forwards the stack's pushes that `filter` accepts to `to` as they arrive (a cluster's
    /// hub, which keeps its own subscription changes to itself).
    pub(crate) fn forward_pushes_filtered(&self, to: &Arc<PushHub>, filter: PushFilter) {
        self.inner.pushes.forward_to(to, Some(filter));
    }

    /// Tells `tell` the name of every shard channel whose subscription the server ends on its
    /// own from now on (it runs on the connection's task: it must not block).
    pub(crate) fn on_shard_channel_ended(&self, tell: ShardChannelEnded) {
        *self
            .inner
            .shard_channel_ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tell);
    }

    /// Those of `names` the stack counts as subscribed shard channels.
    pub(crate) fn tracked_shard_channels(&self, names: &[bytes::Bytes]) -> Vec<bytes::Bytes> {
        let subs = self.inner.lock_subscriptions();
        names
            .iter()
            .filter(|n| subs.contains(crate::command::SubscriptionKind::SSubscribe, n))
            .cloned()
            .collect()
    }

    /// Stops counting `names` as subscribed shard channels without sending anything: for a
    /// subscription the server has ended already, whose `SUNSUBSCRIBE` could not be sent.
    pub(crate) fn forget_shard_channels(&self, names: &[bytes::Bytes]) {
        let mut subs = self.inner.lock_subscriptions();
        for name in names {
            subs.apply(crate::command::SubscriptionKind::SUnsubscribe, name);
        }
    }

    /// The connection commands go to now, if one is usable.
    pub(crate) fn current_connection(&self) -> Option<Connection> {
        self.inner.usable()
    }

    /// Whether this stack belongs to one owner (from [`HandoffRetry::dedicated`]).
    pub fn is_dedicated(&self) -> bool {
        self.inner.dedicated
    }

    /// Waits until the stack has a usable connection (at once when it has one), or fails with
    /// the error of its last connection attempt once its reconnect attempts have failed. For
    /// readiness checks: commands do not need it (they wait for the connection themselves).
    pub async fn wait_connected(&self) -> Result<(), Error> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            if self.inner.usable().is_some() {
                return Ok(());
            }
            if self.inner.down.load(Ordering::Acquire) {
                return Err(self
                    .inner
                    .last_error()
                    .unwrap_or_else(|| self.inner.unavailable("connecting failed")));
            }
            if changed.changed().await.is_err() {
                return Err(self.inner.unavailable("the stack is shutting down"));
            }
        }
    }

    /// Whether the stack has a usable connection now (cheaper than `current_endpoint`).
    pub fn is_connected(&self) -> bool {
        // One atomic load, no lock and no reference count: a cluster asks this of the node
        // it routes every command to.
        self.inner
            .current
            .load()
            .as_deref()
            .is_some_and(|c| !c.is_closed())
    }

    /// Waits for the first connection, or the reconnect attempts' error.
    async fn connected(self) -> Result<Self, Error> {
        let this = self;
        let mut changed = this.inner.changed.subscribe();
        loop {
            if this.inner.usable().is_some() {
                return Ok(this);
            }
            if this.inner.down.load(Ordering::Acquire) {
                return Err(this
                    .inner
                    .last_error()
                    .unwrap_or_else(|| this.inner.unavailable("connecting failed")));
            }
            if changed.changed().await.is_err() {
                return Err(this.inner.unavailable("the stack is shutting down"));
            }
        }
    }

    /// The configured address.
    pub fn configured_endpoint(&self) -> &Endpoint {
        &self.inner.configured
    }

    /// The endpoint commands go to now, if connected.
    pub fn current_endpoint(&self) -> Option<Endpoint> {
        self.inner.usable().map(|c| c.endpoint().clone())
    }

    /// Commands written on the current connection and still owed a reply (0 without one).
    pub fn in_flight(&self) -> usize {
        self.inner.current().map_or(0, |c| c.in_flight())
    }

    /// Push frames from whichever connection is current: Pub/Sub messages keep arriving here
    /// across handoffs and reconnects (a message published while both connections are
    /// subscribed, during a handoff, can arrive twice; none is lost).
    pub fn pushes(&self) -> Pushes {
        self.inner.pushes.subscribe()
    }

    /// What the stack does, as it happens: handoff, disconnect and reconnect events, together
    /// with the maintenance notifications (the maintenance handle's event stream).
    pub fn events(&self) -> MaintenanceEvents {
        self.inner.maintenance.subscribe()
    }

    /// The maintenance handle the stack reports to and listens on.
    pub fn maintenance(&self) -> &Maintenance {
        &self.inner.maintenance
    }

    /// Counters so far.
    pub fn stats(&self) -> HandoffStats {
        HandoffStats {
            retried: self.inner.retried.load(Ordering::Relaxed),
            handoffs: self.inner.handoffs.load(Ordering::Relaxed),
            handoffs_failed: self.inner.handoffs_failed.load(Ordering::Relaxed),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Starts a handoff as a `MOVING` notification would: to `endpoint`, or with `None` to the
    /// configured address at half of `time`.
    pub fn moving(&self, seq: u64, time: Duration, endpoint: Option<Endpoint>) {
        let _ = self.inner.triggers.send(Box::new(Move {
            seq: Some(seq),
            time,
            endpoint,
        }));
    }

    /// What the clones of this stack share.
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl<R: Request> Service<R> for HandoffRetry {
    type Response = R::Response;
    type Error = Error;
    type Future = ResponseFuture<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.reservation.poll_ready::<R>(&self.inner, cx)
    }

    fn call(&mut self, request: R) -> ResponseFuture<R> {
        let attempt = self.reservation.call(&self.inner, request);
        ResponseFuture::new(attempt, self.inner.clone())
    }
}
