use tower_layer::Layer;

use crate::connection::{Connection, Connector};
use crate::endpoint::Endpoint;
use crate::maintenance::Maintenance;

use super::NotificationDemux;

/// [`Layer`] that demuxes maintenance notifications from a [`Connector`]'s connections (the form
/// to use) or from one existing [`Connection`]; see the [module docs](super) for details.
///
/// ```no_run
/// use redis_handoff::demux::NotificationDemuxLayer;
/// use redis_handoff::maintenance::Maintenance;
/// use redis_handoff::{ConnectOptions, Connector};
/// use tower::ServiceBuilder;
///
/// # async fn run() -> Result<(), redis_handoff::Error> {
/// let maintenance = Maintenance::default();
/// let connector = Connector::new(ConnectOptions::from_url("redis://127.0.0.1:6379")?)?;
/// let make_connections = ServiceBuilder::new()
///     .layer(NotificationDemuxLayer::new(maintenance.clone()))
///     .service(connector);
/// let conn = make_connections.connect().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NotificationDemuxLayer {
    maintenance: Maintenance,
    configured: Option<Endpoint>,
}

impl NotificationDemuxLayer {
    /// A layer publishing to `maintenance`, which also holds the configuration.
    pub const fn new(maintenance: Maintenance) -> Self {
        NotificationDemuxLayer {
            maintenance,
            configured: None,
        }
    }

    /// For the connection form: keep state under `endpoint`, the endpoint the client was
    /// configured with, rather than the connection's own. The connector form always uses the
    /// connector's endpoint.
    #[must_use]
    pub fn configured_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.configured = Some(endpoint);
        self
    }
}

impl Layer<Connector> for NotificationDemuxLayer {
    type Service = NotificationDemux<Connector>;

    fn layer(&self, connector: Connector) -> Self::Service {
        NotificationDemux::over_connector(connector, self.maintenance.clone())
    }
}

/// Spawns the connection's demux task: must be used within a Tokio runtime.
impl Layer<Connection> for NotificationDemuxLayer {
    type Service = NotificationDemux<Connection>;

    fn layer(&self, connection: Connection) -> Self::Service {
        let configured = self
            .configured
            .clone()
            .unwrap_or_else(|| connection.endpoint().clone());
        NotificationDemux::over_connection_for(configured, connection, self.maintenance.clone())
    }
}
