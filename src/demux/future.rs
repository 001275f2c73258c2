use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::connection::Connection;
use crate::error::Error;

/// A connection being made by a [`NotificationDemux`](super::NotificationDemux) over a
/// [`Connector`](crate::Connector). Boxed: connecting is rare next to commands, and the
/// handshake's future is large.
pub struct ConnectFuture {
    inner: Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + 'static>>,
}

impl ConnectFuture {
    pub(super) fn new(
        future: impl Future<Output = Result<Connection, Error>> + Send + 'static,
    ) -> Self {
        ConnectFuture {
            inner: Box::pin(future),
        }
    }
}

impl fmt::Debug for ConnectFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectFuture")
    }
}

impl Future for ConnectFuture {
    type Output = Result<Connection, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
