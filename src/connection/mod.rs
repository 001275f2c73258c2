//! The low-level RESP3 connection: a [`tower::Service`] from [`Command`] to [`Reply`].
//!
//! Every layer of the crate wraps a [`Connection`]. It is a cheap `Clone` handle to one socket
//! owned by a background task:
//!
//! - **Multiplexed and pipelined.** Many tasks call it at once; commands that arrive while a
//!   write is in flight go out together in the next write, and replies are matched to commands
//!   in the order they were sent.
//! - **Backpressure.** `poll_ready` reserves a slot in a bounded queue
//!   ([`ConnectOptions::queue_size`]); a slot reserved by a `poll_ready` whose `call` never
//!   comes is released when the handle is dropped.
//! - **Push frames stay out of band.** RESP3 pushes (Pub/Sub messages, client-tracking
//!   invalidations, maintenance notifications) never reach a caller as a reply; they go to
//!   whoever subscribed with [`Connection::pushes`]. `SUBSCRIBE` and friends are answered with
//!   their confirmations, and other commands keep flowing on the same connection.
//! - **Clear failure.** When the socket closes, each command in flight gets
//!   [`Error::ConnectionLost`] (it was written: it may have run) or [`Error::NotSent`] (it was
//!   not: it did not run), and later calls fail at once with `NotSent`. Dropping every handle
//!   closes the socket once the replies still owed have arrived.
//!
//! ```no_run
//! use redis_handoff::{cmd, Connection};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let conn = Connection::connect("redis://127.0.0.1:6379").await?;
//! conn.clone().oneshot(cmd!("SET", "greeting", "hello")).await?;
//! let reply = conn.clone().oneshot(cmd!("GET", "greeting")).await?;
//! assert_eq!(reply.as_str(), Some("hello"));
//! # Ok(()) }
//! ```

pub(crate) mod codec;
mod connect;
mod io;
mod options;
mod pushes;
mod tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use pin_project::pin_project;
use tokio::sync::mpsc::{self, error::TrySendError, OwnedPermit};
use tokio::sync::{oneshot, watch};
use tower_service::Service;

pub use codec::Limits;
pub use connect::{Connector, Established};
pub use options::{ConnectOptions, Password, TlsOptions};
pub(crate) use pushes::PushHub;
pub use pushes::Pushes;

use crate::command::Command;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::reply::Reply;
use io::Request;
pub(crate) use io::{Answer, Failed};

/// What the server said about itself in its answer to `HELLO 3`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `server`: `redis`, `valkey`, ...
    pub server: String,
    /// `version`, such as `7.0.15`.
    pub version: String,
    /// The protocol in use; always 3 here.
    pub proto: i64,
    /// The connection's id, as in `CLIENT ID`.
    pub id: i64,
    /// `mode`: `standalone`, `cluster` or `sentinel`.
    pub mode: String,
    /// `role`: `master` or `replica`.
    pub role: String,
}

type Reserve = Pin<
    Box<
        dyn Future<Output = Result<OwnedPermit<Request>, mpsc::error::SendError<()>>> + Send + Sync,
    >,
>;

/// State shared between the handles and the I/O task.
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    server: ServerInfoCell,
    closed: watch::Sender<Option<Arc<str>>>,
    in_flight: AtomicUsize,
    pub(crate) pushes: PushHub,
}

#[derive(Default)]
struct ServerInfoCell(OnceLock<ServerInfo>);

impl Shared {
    fn new(endpoint: Endpoint, push_buffer: usize) -> Self {
        Shared {
            pushes: PushHub::new(endpoint.clone(), push_buffer),
            endpoint,
            server: ServerInfoCell::default(),
            closed: watch::Sender::new(None),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub(crate) fn mark_closed(&self, reason: Arc<str>) {
        self.closed.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    fn closed_reason(&self) -> Option<Arc<str>> {
        self.closed.borrow().clone()
    }
}

/// A multiplexed RESP3 connection; see the [module docs](self).
pub struct Connection {
    sender: mpsc::Sender<Request>,
    // A queue slot reserved by `poll_ready` for the next `call`; released if dropped unused.
    permit: Option<OwnedPermit<Request>>,
    // Waiting for a slot when the queue was full (the only allocation on this path).
    reserving: Option<Reserve>,
    shared: Arc<Shared>,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        // A clone starts without a reserved slot, as tower expects.
        Connection {
            sender: self.sender.clone(),
            permit: None,
            reserving: None,
            shared: self.shared.clone(),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.shared.endpoint)
            .field("in_flight", &self.in_flight())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to a `redis://` or `rediss://` URL with default options.
    pub async fn connect(url: &str) -> Result<Connection, Error> {
        Connector::new(ConnectOptions::from_url(url)?)?
            .connect()
            .await
    }

    /// Connects with the given options.
    pub async fn connect_with(options: ConnectOptions) -> Result<Connection, Error> {
        Connector::new(options)?.connect().await
    }

    /// The endpoint this connection is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// What the server said about itself during the handshake.
    pub fn server_info(&self) -> &ServerInfo {
        static EMPTY: OnceLock<ServerInfo> = OnceLock::new();
        self.shared
            .server
            .0
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(ServerInfo::default))
    }

    /// How many commands are written or being written and still owed a reply.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the connection has closed or failed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<Arc<str>> {
        self.shared.closed_reason()
    }

    /// Waits until the connection has closed or failed, and says why.
    pub fn closed(&self) -> impl Future<Output = Arc<str>> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().unwrap_or_else(|| "closed".into()),
                Err(_) => "closed".into(),
            }
        }
    }

    /// Subscribes to the connection's push frames from now on: Pub/Sub messages, subscription
    /// confirmations, client-tracking invalidations, maintenance notifications.
    ///
    /// Each subscriber gets every push. A subscriber that falls more than
    /// [`ConnectOptions::push_buffer`] pushes behind misses the newest ones
    /// ([`Pushes::missed`] counts them).
    /// Pushes that arrive while nobody subscribes are counted
    /// ([`Connection::unheard_pushes`]) and dropped.
    pub fn pushes(&self) -> Pushes {
        self.shared.pushes.subscribe()
    }

    /// How many push frames arrived while nobody was subscribed.
    pub fn unheard_pushes(&self) -> u64 {
        self.shared.pushes.unheard()
    }

    /// Sends a command and waits for its answer, without going through `poll_ready`.
    ///
    /// The same as `self.clone().oneshot(command)`, a little cheaper.
    pub async fn send(&self, command: Command) -> Result<Reply, Error> {
        self.send_recoverable(command).await.map_err(|f| f.error)
    }

    /// Sends a command; if the connection ends under it, the command comes back with the error.
    pub(crate) async fn send_recoverable(&self, command: Command) -> Answer {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self
            .sender
            .send(Request::Command { command, reply: tx })
            .await
        {
            let command = match e.0 {
                Request::Command { command, .. } => Some(command),
                Request::Drain => None,
            };
            return Err(Failed {
                error: self.not_sent(),
                command,
            });
        }
        AnswerFuture::waiting(rx, self.shared.clone()).await
    }

    /// Like [`Service::call`], but the command comes back with the error if the connection ends
    /// under it. `poll_ready` must have returned ready first, as for `call`.
    pub(crate) fn call_recoverable(&mut self, command: Command) -> AnswerFuture {
        let (tx, rx) = oneshot::channel();
        let request = Request::Command { command, reply: tx };
        let sent = match self.permit.take() {
            Some(permit) => {
                permit.send(request);
                Ok(())
            }
            // `call` without `poll_ready`: take a free slot if there is one.
            None => self.sender.try_send(request).map_err(|e| match e {
                TrySendError::Full(r) => (
                    r,
                    Some("the command queue is full and `call` came without `poll_ready`"),
                ),
                TrySendError::Closed(r) => (r, None),
            }),
        };
        match sent {
            Ok(()) => AnswerFuture::waiting(rx, self.shared.clone()),
            Err((request, why)) => {
                let command = match request {
                    Request::Command { command, .. } => Some(command),
                    Request::Drain => None,
                };
                let error = match why {
                    Some(why) => Error::NotSent { reason: why.into() },
                    None => self.not_sent(),
                };
                AnswerFuture::failed(Failed { error, command })
            }
        }
    }

    /// Stops taking commands and closes the socket once every command already taken has its
    /// answer: how a handoff retires the old connection. Commands sent afterwards through any
    /// handle fail with [`Error::NotSent`]. Resolves when the connection has closed.
    pub async fn drain(&self) -> Arc<str> {
        let _ = self.sender.send(Request::Drain).await;
        self.closed().await
    }

    fn not_sent(&self) -> Error {
        Error::NotSent {
            reason: self
                .shared
                .closed_reason()
                .unwrap_or_else(|| "the connection is closed".into()),
        }
    }

    fn from_parts(sender: tokio::sync::mpsc::Sender<Request>, shared: Arc<Shared>) -> Self {
        Connection {
            sender,
            permit: None,
            reserving: None,
            shared,
        }
    }
}

impl Service<Command> for Connection {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.reserving.is_none() {
            match self.sender.clone().try_reserve_owned() {
                Ok(permit) => {
                    self.permit = Some(permit);
                    return Poll::Ready(Ok(()));
                }
                Err(TrySendError::Full(sender)) => {
                    self.reserving = Some(Box::pin(sender.reserve_owned()));
                }
                Err(TrySendError::Closed(_)) => return Poll::Ready(Err(self.not_sent())),
            }
        }
        let Some(reserving) = self.reserving.as_mut() else {
            return Poll::Ready(Err(self.not_sent()));
        };
        match reserving.as_mut().poll(cx) {
            Poll::Ready(Ok(permit)) => {
                self.reserving = None;
                self.permit = Some(permit);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => {
                self.reserving = None;
                Poll::Ready(Err(self.not_sent()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, command: Command) -> ResponseFuture {
        ResponseFuture {
            inner: self.call_recoverable(command),
        }
    }
}

/// The answer to one command sent on a [`Connection`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture {
    #[pin]
    inner: AnswerFuture,
}

impl Future for ResponseFuture {
    type Output = Result<Reply, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|a| a.map_err(|f| f.error))
    }
}

/// The answer to a command, with the command given back if the connection ended under it.
#[pin_project]
#[derive(Debug)]
pub(crate) struct AnswerFuture {
    #[pin]
    state: AnswerState,
}

#[pin_project(project = AnswerStateProj)]
#[derive(Debug)]
enum AnswerState {
    Waiting {
        #[pin]
        rx: oneshot::Receiver<Answer>,
        shared: Arc<Shared>,
    },
    Failed {
        failed: Option<Failed>,
    },
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AnswerFuture {
    fn waiting(rx: oneshot::Receiver<Answer>, shared: Arc<Shared>) -> Self {
        AnswerFuture {
            state: AnswerState::Waiting { rx, shared },
        }
    }

    fn failed(failed: Failed) -> Self {
        AnswerFuture {
            state: AnswerState::Failed {
                failed: Some(failed),
            },
        }
    }
}

impl Future for AnswerFuture {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project().state.project() {
            AnswerStateProj::Waiting { rx, shared } => match rx.poll(cx) {
                Poll::Ready(Ok(answer)) => Poll::Ready(answer),
                // The I/O task answers every command it takes; this is the task having gone
                // away abnormally (a runtime shutting down).
                Poll::Ready(Err(_)) => Poll::Ready(Err(Failed::from(Error::ConnectionLost {
                    reason: shared
                        .closed_reason()
                        .unwrap_or_else(|| "the connection task ended".into()),
                }))),
                Poll::Pending => Poll::Pending,
            },
            AnswerStateProj::Failed { failed } => {
                Poll::Ready(Err(failed.take().unwrap_or_else(|| {
                    Failed::from(Error::NotSent {
                        reason: "the connection is closed".into(),
                    })
                })))
            }
        }
    }
}
