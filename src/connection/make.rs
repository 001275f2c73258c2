//! [`MakeConnection`]: how a stack that changes connection (HandoffRetry, a pool) opens a new
//! one, with the configured address and a bound per attempt. Implemented here for the bare
//! [`Connector`], and by the notification demux for a demuxed one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{Connection, Connector};
use crate::endpoint::Endpoint;
use crate::error::Error;

/// Opens connections for a stack that changes connection (HandoffRetry): to the configured
/// address or to a handoff's target.
pub trait MakeConnection: Clone + Send + Sync + 'static {
    /// The stack's configured address: where reconnects go, never changed by a handoff.
    fn configured_endpoint(&self) -> Endpoint;

    /// How many pushes the stack's own push stream (the one that outlives its connections)
    /// keeps for a subscriber that falls behind before it misses some: the connections'
    /// [`ConnectOptions::push_buffer`](super::ConnectOptions::push_buffer). Default 4096.
    fn push_buffer(&self) -> usize {
        super::options::DEFAULT_PUSH_BUFFER
    }

    /// Opens a connection to `endpoint`, dial and handshake within `timeout`.
    fn make_connection(
        &self,
        endpoint: Endpoint,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + 'static>>;
}

impl MakeConnection for Connector {
    fn configured_endpoint(&self) -> Endpoint {
        self.endpoint().clone()
    }

    fn push_buffer(&self) -> usize {
        self.options().push_buffer
    }

    fn make_connection(
        &self,
        endpoint: Endpoint,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move {
            Ok(this
                .establish(&endpoint, Vec::new(), timeout)
                .await?
                .connection)
        })
    }
}
