//! What the [`Maintenance`](crate::Maintenance) handle publishes: typed events, where they came
//! from, and the subscription that receives them.
//!
//! Events name connections by [`ConnectionId`], a small value: the maintenance model knows
//! nothing of connections themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::endpoint::{ConnectionId, Endpoint};
use crate::error::Error;
use crate::maintenance::azure::AzureEvent;
use crate::maintenance::endpoint_type::EndpointType;
use crate::maintenance::notification::Notification;
use crate::maintenance::status::RelaxationEnd;

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
    /// The server's id for that connection (`CLIENT ID`), when known: for logs.
    pub client_id: Option<i64>,
    /// The connection itself, when the push came from one: what tells connections apart.
    pub connection: Option<ConnectionId>,
}

impl PushOrigin {
    /// A push received on a connection to the configured endpoint itself.
    pub fn new(endpoint: Endpoint) -> Self {
        PushOrigin {
            source: endpoint.clone(),
            endpoint,
            client_id: None,
            connection: None,
        }
    }

    /// The same origin, received on connection `id` to `source` (server id `client_id`).
    #[must_use]
    pub fn with_connection(
        mut self,
        id: ConnectionId,
        source: Endpoint,
        client_id: Option<i64>,
    ) -> Self {
        self.connection = Some(id);
        self.source = source;
        self.client_id = client_id;
        self
    }
}

// ===== MaintenanceEvent =====

/// Something that happened to a configured endpoint: a notification, a handoff step, a circuit
/// change. Published by the demux and by the other layers through [`Maintenance::emit`](crate::Maintenance::emit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MaintenanceEvent {
    /// The configured endpoint (the key of the state; see [`PushOrigin`]).
    pub endpoint: Endpoint,
    /// The endpoint of the connection the event concerns or came from.
    pub source: Endpoint,
    /// The server's id for that connection (`CLIENT ID`), when known: for logs.
    pub client_id: Option<i64>,
    /// That connection, when the event concerns one: compare with
    /// [`Connection::id`](crate::Connection::id) to pick out a connection's own events.
    pub connection: Option<ConnectionId>,
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
            connection: None,
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
            connection: origin.connection,
            at: Instant::now(),
            kind,
        }
    }

    /// The same event, about connection `id` to `source` (server id `client_id`).
    #[must_use]
    pub fn with_connection(
        mut self,
        id: ConnectionId,
        source: Endpoint,
        client_id: Option<i64>,
    ) -> Self {
        self.connection = Some(id);
        self.source = source;
        self.client_id = client_id;
        self
    }

    /// Whether the event came from (or concerns) the connection `id`.
    pub fn is_from(&self, id: ConnectionId) -> bool {
        self.connection == Some(id)
    }
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

/// A subscription to a [`Maintenance`](crate::Maintenance) handle's events; see
/// [`Maintenance::subscribe`](crate::Maintenance::subscribe).
#[derive(Debug)]
pub struct MaintenanceEvents {
    pub(crate) rx: broadcast::Receiver<std::sync::Arc<MaintenanceEvent>>,
    pub(crate) missed: u64,
}

impl MaintenanceEvents {
    /// The next event, or `None` once every handle is gone.
    ///
    /// A subscriber that falls more than the configured event buffer behind skips what it
    /// missed, with a warning in the log, and counted ([`MaintenanceEvents::missed`]). The
    /// handoffs themselves do not depend on this stream: the events a stack's control task acts
    /// on reach it on a path of its own that never drops one. (The circuit breaker reads this
    /// stream; the event buffer bounds how far it may fall behind.)
    pub async fn recv(&mut self) -> Option<MaintenanceEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(std::sync::Arc::unwrap_or_clone(event)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.missed += n;
                    tracing::warn!(
                        missed = n,
                        "a maintenance event subscriber fell behind and missed events"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many events this subscriber skipped because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<MaintenanceEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(std::sync::Arc::unwrap_or_clone(event)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.missed += n;
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
