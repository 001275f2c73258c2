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
mod tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use pin_project::pin_project;
use redis_protocol::resp3::types::BytesFrame;
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::PollSender;
use tower_service::Service;

pub use codec::Limits;
pub use connect::{Connector, Established};
pub use options::{ConnectOptions, Password, TlsOptions};

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

/// State shared between the handles and the I/O task.
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    server: ServerInfoCell,
    closed: watch::Sender<Option<Arc<str>>>,
    in_flight: AtomicUsize,
    unheard_pushes: AtomicU64,
}

#[derive(Default)]
struct ServerInfoCell(OnceLock<ServerInfo>);

impl Shared {
    fn new(endpoint: Endpoint) -> Self {
        Shared {
            endpoint,
            server: ServerInfoCell::default(),
            closed: watch::Sender::new(None),
            in_flight: AtomicUsize::new(0),
            unheard_pushes: AtomicU64::new(0),
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

    pub(crate) fn count_unheard_push(&self) {
        self.unheard_pushes.fetch_add(1, Ordering::Relaxed);
    }

    fn closed_reason(&self) -> Option<Arc<str>> {
        self.closed.borrow().clone()
    }
}

/// A multiplexed RESP3 connection; see the [module docs](self).
pub struct Connection {
    sender: PollSender<Request>,
    shared: Arc<Shared>,
    // Weak, so that the push stream ends when the I/O task (the only strong sender) ends.
    pushes: broadcast::WeakSender<BytesFrame>,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        // A clone starts without a reserved slot, as tower expects.
        Connection {
            sender: self.sender.clone(),
            shared: self.shared.clone(),
            pushes: self.pushes.clone(),
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
    /// [`ConnectOptions::push_buffer`] pushes behind misses the oldest ones and is told how many.
    /// Pushes that arrive while nobody subscribes are counted
    /// ([`Connection::unheard_pushes`]) and dropped.
    pub fn pushes(&self) -> Pushes {
        let rx = match self.pushes.upgrade() {
            Some(tx) => tx.subscribe(),
            None => {
                // Already closed: a stream that ends at once.
                let (tx, rx) = broadcast::channel(1);
                drop(tx);
                rx
            }
        };
        Pushes {
            rx,
            endpoint: self.shared.endpoint.clone(),
        }
    }

    /// How many push frames arrived while nobody was subscribed.
    pub fn unheard_pushes(&self) -> u64 {
        self.shared.unheard_pushes.load(Ordering::Relaxed)
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
        let Some(sender) = self.sender.get_ref() else {
            return Err(Failed {
                error: self.not_sent(),
                command: Some(command),
            });
        };
        if let Err(e) = sender.send(Request::Command { command, reply: tx }).await {
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
        match self
            .sender
            .send_item(Request::Command { command, reply: tx })
        {
            Ok(()) => AnswerFuture::waiting(rx, self.shared.clone()),
            Err(e) => {
                let command = e.into_inner().and_then(|r| match r {
                    Request::Command { command, .. } => Some(command),
                    Request::Drain => None,
                });
                AnswerFuture::failed(Failed {
                    error: self.not_sent(),
                    command,
                })
            }
        }
    }

    /// Stops taking commands and closes the socket once every command already taken has its
    /// answer: how a handoff retires the old connection. Commands sent afterwards through any
    /// handle fail with [`Error::NotSent`]. Resolves when the connection has closed.
    pub async fn drain(&self) -> Arc<str> {
        if let Some(sender) = self.sender.get_ref() {
            let _ = sender.send(Request::Drain).await;
        }
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

    fn from_parts(
        sender: tokio::sync::mpsc::Sender<Request>,
        shared: Arc<Shared>,
        pushes: broadcast::Sender<BytesFrame>,
    ) -> Self {
        Connection {
            sender: PollSender::new(sender),
            shared,
            pushes: pushes.downgrade(),
        }
    }
}

impl Service<Command> for Connection {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.sender.poll_reserve(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.not_sent())),
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

/// A subscription to a connection's push frames; see [`Connection::pushes`].
#[derive(Debug)]
pub struct Pushes {
    rx: broadcast::Receiver<BytesFrame>,
    endpoint: Endpoint,
}

impl Pushes {
    /// The next push frame, or `None` once the connection has closed and every push was seen.
    ///
    /// A subscriber that fell behind skips what it missed, with a warning in the log.
    pub async fn recv(&mut self) -> Option<BytesFrame> {
        loop {
            match self.rx.recv().await {
                Ok(frame) => return Some(frame),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(endpoint = %self.endpoint, missed = n, "a push subscriber fell behind and missed push frames");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next push frame if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<BytesFrame> {
        loop {
            match self.rx.try_recv() {
                Ok(frame) => return Some(frame),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(endpoint = %self.endpoint, missed = n, "a push subscriber fell behind and missed push frames");
                }
                Err(_) => return None,
            }
        }
    }

    /// The endpoint of the connection these pushes come from.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}
