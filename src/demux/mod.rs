//! [`NotificationDemux`]: turns a connection's push frames into typed maintenance events.
//!
//! The first of the maintenance layers, and the source of everything the others react to. It
//! reads every push frame of the connections it watches, parses maintenance notifications and
//! `AzureRedisEvents` messages, runs the notification hooks and publishes to the shared
//! [`Maintenance`] handle (see [`Maintenance::process_push`]). Other pushes (Pub/Sub messages,
//! client-tracking invalidations) reach their own subscribers untouched: the connection hands
//! every push to every subscriber of [`Connection::pushes`], and the demux is just one more. A
//! malformed notification is counted, logged at warn with its bytes and dropped; the connection
//! and its commands carry on. Commands pass straight through: the demux adds nothing to the
//! command path.
//!
//! It wraps either of two things:
//!
//! - **A [`Connector`]** (the form to use). `NotificationDemux<Connector>` is a
//!   [`MakeConnection`] (what HandoffRetry and a pool open connections with): every connection
//!   it makes, to the configured endpoint or to a handoff's target, gets the opt-in
//!   `CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type <type>` (and `SUBSCRIBE AzureRedisEvents`
//!   when Azure events are wanted) pipelined with its handshake, and a task that demuxes its
//!   pushes until it closes. The configured mode decides what a refusal means
//!   ([`MaintenanceMode`]); every new connection asks again.
//! - **An existing [`Connection`]**. The demux subscribes to its pushes from now on. It cannot
//!   add the opt-in to a handshake that is over, so the server only sends what the connection
//!   already asked for: use this form for connections made elsewhere, or for Azure events on a
//!   connection that subscribes itself.
//!
//! ```no_run
//! use redis_handoff::demux::NotificationDemuxLayer;
//! use redis_handoff::maintenance::{Maintenance, MaintenanceConfig, MaintenanceMode};
//! use redis_handoff::{cmd, ConnectOptions, Connector};
//! use tower::{Layer, ServiceExt};
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let config = MaintenanceConfig::builder().mode(MaintenanceMode::Auto).build()?;
//! let maintenance = Maintenance::new(config);
//! let connector = Connector::new(ConnectOptions::from_url("redis://127.0.0.1:6379")?)?;
//! let demux = NotificationDemuxLayer::new(maintenance.clone()).layer(connector);
//!
//! let conn = demux.connect().await?;
//! conn.clone().oneshot(cmd!("SET", "k", "v")).await?;
//!
//! let mut events = maintenance.subscribe();
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         println!("{}: {:?}", event.endpoint, event.kind);
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! [`MaintenanceMode`]: crate::maintenance::MaintenanceMode

mod layer;
pub(crate) mod pipeline;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::OnceCell;
use tower_service::Service;

pub use layer::NotificationDemuxLayer;

use crate::command::Command;
use crate::connection::{Connection, Connector, Established, MakeConnection, Pushes};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::{
    EndpointType, EventKind, Maintenance, MaintenanceEvent, MaintenanceMode, NotificationSupport,
    PushOrigin, AZURE_CHANNEL,
};
use crate::request::Request;

/// Demuxes the push frames of a connection, or of every connection a connector makes, into the
/// [`Maintenance`] handle; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct NotificationDemux<S> {
    inner: S,
    maintenance: Maintenance,
    // The `auto` endpoint type, decided once per configured address.
    endpoint_type: Arc<OnceCell<EndpointType>>,
}

// ===== impl NotificationDemux =====

impl<S> NotificationDemux<S> {
    /// The shared handle the demux publishes to.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service. A connection's demux task goes on until the connection closes.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl NotificationDemux<Connector> {
    /// Demuxes every connection `connector` makes; the configured endpoint is the connector's.
    pub fn over_connector(connector: Connector, maintenance: Maintenance) -> Self {
        NotificationDemux {
            inner: connector,
            maintenance,
            endpoint_type: Arc::new(OnceCell::new()),
        }
    }

    /// Connects to the configured endpoint within the connector's connect timeout.
    pub async fn connect(&self) -> Result<Connection, Error> {
        let endpoint = self.inner.endpoint().clone();
        self.connect_within(&endpoint, self.inner.options().connect_timeout)
            .await
    }

    /// Connects to `endpoint` (a handoff's target, say) within the connector's connect timeout.
    pub async fn connect_to(&self, endpoint: &Endpoint) -> Result<Connection, Error> {
        self.connect_within(endpoint, self.inner.options().connect_timeout)
            .await
    }

    /// Connects to `endpoint` with dial, TLS and handshake (opt-in included) bounded by
    /// `timeout`. Deciding the `auto` endpoint type, once per demux, may take up to
    /// [`RESOLVE_TIMEOUT`](crate::maintenance::RESOLVE_TIMEOUT) more.
    ///
    /// Fails with [`Error::MaintenanceUnsupported`] when the mode is `Enabled` and the server
    /// refuses notifications. Must be called within a Tokio runtime.
    pub async fn connect_within(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Connection, Error> {
        establish(
            self.inner.clone(),
            self.maintenance.clone(),
            self.endpoint_type.clone(),
            endpoint.clone(),
            timeout,
        )
        .await
    }
}

impl NotificationDemux<Connection> {
    /// Demuxes the pushes of an existing connection from now on, keeping state under the
    /// connection's own endpoint. Must be called within a Tokio runtime.
    ///
    /// The handshake is over, so no opt-in is sent: prefer
    /// [`NotificationDemux::over_connector`].
    pub fn over_connection(connection: Connection, maintenance: Maintenance) -> Self {
        let configured = connection.endpoint().clone();
        NotificationDemux::over_connection_for(configured, connection, maintenance)
    }

    /// Like [`NotificationDemux::over_connection`], keeping state under `configured`, the
    /// endpoint the client was configured with (the connection may be to another node after a
    /// handoff).
    pub fn over_connection_for(
        configured: Endpoint,
        connection: Connection,
        maintenance: Maintenance,
    ) -> Self {
        let origin = origin_of(configured, &connection);
        spawn_demux(connection.pushes(), origin, maintenance.clone());
        NotificationDemux {
            inner: connection,
            maintenance,
            endpoint_type: Arc::new(OnceCell::new()),
        }
    }
}

/// Commands pass straight through.
impl<S, R> Service<R> for NotificationDemux<S>
where
    R: Request,
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.inner.call(request)
    }
}

/// Makes demuxed connections for a stack that changes connection (HandoffRetry, a pool).
impl MakeConnection for NotificationDemux<Connector> {
    fn configured_endpoint(&self) -> Endpoint {
        self.get_ref().endpoint().clone()
    }

    fn push_buffer(&self) -> usize {
        self.get_ref().options().push_buffer
    }

    fn make_connection(
        &self,
        endpoint: Endpoint,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move { this.connect_within(&endpoint, timeout).await })
    }
}

// ===== connecting =====

/// The opt-in command for an endpoint type.
fn opt_in(endpoint_type: EndpointType) -> Command {
    Command::new("CLIENT")
        .arg("MAINT_NOTIFICATIONS")
        .arg("ON")
        .arg("moving-endpoint-type")
        .arg(endpoint_type.as_str())
}

async fn establish(
    connector: Connector,
    maintenance: Maintenance,
    endpoint_type: Arc<OnceCell<EndpointType>>,
    endpoint: Endpoint,
    timeout: Duration,
) -> Result<Connection, Error> {
    let config = maintenance.config();
    let configured = connector.endpoint().clone();
    let mode = config.mode();

    let mut setup = Vec::with_capacity(2);
    let asked = if mode == MaintenanceMode::Disabled {
        None
    } else {
        let tls = connector.options().tls.is_some();
        let wanted = config.endpoint_type();
        let resolved = *endpoint_type
            .get_or_init(|| wanted.resolve(&configured, tls))
            .await;
        setup.push(opt_in(resolved));
        Some(resolved)
    };
    let azure = config.azure_events_for(&configured);
    if azure {
        setup.push(Command::new("SUBSCRIBE").arg(AZURE_CHANNEL));
    }

    let Established {
        connection,
        pushes,
        setup: answers,
        ..
    } = connector.establish(&endpoint, setup, timeout).await?;
    let origin = origin_of(configured.clone(), &connection);
    let mut answers = answers.into_iter();

    if let Some(endpoint_type) = asked {
        match answers.next() {
            Some(Ok(_)) => {
                tracing::debug!(endpoint = %endpoint, %endpoint_type, "maintenance notifications enabled");
                maintenance.record_support(&configured, NotificationSupport::Enabled);
                maintenance.emit(MaintenanceEvent::from_origin(
                    &origin,
                    EventKind::NotificationsEnabled { endpoint_type },
                ));
            }
            Some(Err(Error::Server(answer))) => {
                maintenance.record_support(&configured, NotificationSupport::Refused);
                if mode == MaintenanceMode::Enabled {
                    // Dropping the connection here closes it.
                    return Err(Error::MaintenanceUnsupported {
                        endpoint,
                        message: answer.text().into(),
                    });
                }
                tracing::debug!(endpoint = %endpoint, answer = %answer, "the server does not support maintenance notifications; carrying on without them");
                maintenance.emit(MaintenanceEvent::from_origin(
                    &origin,
                    EventKind::NotificationsRefused {
                        answer: answer.text().into(),
                    },
                ));
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(Error::protocol(
                    "the handshake returned no answer to CLIENT MAINT_NOTIFICATIONS",
                ))
            }
        }
    }
    if azure {
        match answers.next() {
            Some(Ok(_)) | None => {}
            Some(Err(Error::Server(answer))) => {
                tracing::warn!(endpoint = %endpoint, answer = %answer, "the server refused SUBSCRIBE AzureRedisEvents; carrying on without Azure maintenance events");
            }
            Some(Err(e)) => return Err(e),
        }
    }

    spawn_demux(pushes, origin, maintenance);
    Ok(connection)
}

/// Where the pushes of `connection`, in a stack configured for `configured`, come from.
fn origin_of(configured: Endpoint, connection: &Connection) -> PushOrigin {
    let client_id = Some(connection.server_info().id).filter(|&id| id != 0);
    PushOrigin::new(configured).with_connection(
        connection.id(),
        connection.endpoint().clone(),
        client_id,
    )
}

/// Reads a connection's pushes into the handle until the connection closes.
fn spawn_demux(mut pushes: Pushes, origin: PushOrigin, maintenance: Maintenance) {
    tokio::spawn(async move {
        while let Some(frame) = pushes.recv().await {
            maintenance.process_push(&origin, &frame);
        }
        tracing::trace!(endpoint = %origin.endpoint, source = %origin.source, "push demux finished: the connection closed");
    });
}
