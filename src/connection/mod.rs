//! The low-level RESP3 connection: a [`tower::Service`] for commands, pipelines and
//! transactions (any [`Request`]).
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
//! - **Connection state stays put.** Commands that change the connection for every caller
//!   (`MULTI`, `WATCH`, `SELECT`, `CLIENT TRACKING`, ...) are refused with
//!   [`Error::Refused`] before anything is written, unless [`Connection::into_dedicated`] says
//!   one caller owns it; `HELLO`, `RESET`, `CLIENT REPLY`, `MONITOR`, `QUIT` never go, since the
//!   server would stop answering one reply per command. A [`Pipeline`](crate::Pipeline) or
//!   [`Transaction`](crate::Transaction) is written as one, with nothing else in between.
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
mod decode;
pub(crate) mod expiry;
mod intake;
mod io;
mod liveness;
mod make;
mod options;
mod pushes;
mod subscriptions;
mod tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use pin_project::pin_project;
use tokio::sync::{oneshot, watch};
use tower_service::Service;

pub use codec::Limits;
pub use connect::{Connector, Established};
pub use liveness::Liveness;
pub use make::MakeConnection;
#[cfg(feature = "sim")]
pub(crate) use options::redact_url;
pub use options::{ClientTracking, ConnectOptions, Password, TlsOptions};
pub use pushes::Pushes;
pub(crate) use pushes::{PushFilter, PushHub};
pub(crate) use subscriptions::Subscriptions;

use crate::command::Command;
use crate::endpoint::{ConnectionId, Endpoint};
use crate::error::Error;
use crate::request::wire::Wire;
use crate::request::Request;
use intake::{Intake, Refused};
pub(crate) use io::{Answer, BatchAnswer, Failed, Job};

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

type Reserve = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send + Sync>>;

/// State shared between the handles and the I/O task.
pub(crate) struct Shared {
    pub(crate) id: ConnectionId,
    pub(crate) endpoint: Endpoint,
    server: ServerInfoCell,
    closed: watch::Sender<Option<Arc<str>>>,
    // Whether `closed` holds a reason: read on every call by the layers above, without a lock.
    is_closed: AtomicBool,
    in_flight: AtomicUsize,
    // Whether one caller owns the connection, so that it takes connection-state commands.
    dedicated: AtomicBool,
    pub(crate) pushes: PushHub,
    /// The command queue, from the handles to the I/O task.
    pub(crate) intake: Intake,
    /// What the deadlines the I/O task keeps follow: the relaxation of the stack that sends
    /// on this connection (see `expiry`), given with its first command that has a deadline.
    /// Set, it also tells the I/O task that commands waiting in the queue may have deadlines.
    relaxation: OnceLock<expiry::SharedRelaxation>,
}

#[derive(Default)]
struct ServerInfoCell(OnceLock<ServerInfo>);

impl Shared {
    fn new(endpoint: Endpoint, push_buffer: usize, queue_size: usize) -> Self {
        Shared {
            id: ConnectionId::next(),
            intake: Intake::new(queue_size),
            pushes: PushHub::new(endpoint.clone(), push_buffer),
            endpoint,
            server: ServerInfoCell::default(),
            closed: watch::Sender::new(None),
            is_closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            dedicated: AtomicBool::new(false),
            relaxation: OnceLock::new(),
        }
    }

    pub(crate) fn mark_closed(&self, reason: Arc<str>) {
        self.is_closed.store(true, Ordering::Release);
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
    handle: Arc<Handle>,
    // Whether `poll_ready` took a queue slot for the next `call`; given back if dropped unused.
    reserved: bool,
    // Waiting for a slot when the queue was full (the only allocations on this path). The
    // future is boxed once more so that the field is one thin pointer: every clone of every
    // service above carries a connection, and few ever wait for a slot.
    reserving: Option<Box<Reserve>>,
}

/// What every clone of a connection shares: cloning a handle is one reference count.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last clone is gone: the I/O task closes the socket once nothing more is owed.
        self.shared.intake.senders_gone();
    }
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        // A clone starts without a reserved slot, as tower expects.
        Connection {
            handle: self.handle.clone(),
            reserved: false,
            reserving: None,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.reserved {
            self.handle.shared.intake.unreserve();
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.handle.shared.endpoint)
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
        &self.handle.shared.endpoint
    }

    /// This connection's process-unique id: events and pushes name their connection by it.
    pub fn id(&self) -> ConnectionId {
        self.handle.shared.id
    }

    /// What the server said about itself during the handshake.
    pub fn server_info(&self) -> &ServerInfo {
        static EMPTY: OnceLock<ServerInfo> = OnceLock::new();
        self.handle
            .shared
            .server
            .0
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(ServerInfo::default))
    }

    /// How many requests (a command, or a whole pipeline or transaction) are written or being
    /// written and still owed a reply.
    pub fn in_flight(&self) -> usize {
        self.handle.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the connection has closed or failed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.is_closed.load(Ordering::Acquire)
    }

    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<Arc<str>> {
        self.handle.shared.closed_reason()
    }

    /// Waits until the connection has closed or failed, and says why.
    pub fn closed(&self) -> impl Future<Output = Arc<str>> + Send + 'static {
        let mut rx = self.handle.shared.closed.subscribe();
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
        self.handle.shared.pushes.subscribe()
    }

    /// Hands this connection's pushes from now on to `to` (those `filter` accepts) as they are
    /// read: how a stack gathers its connections' pushes without a bounded hop between.
    pub(crate) fn forward_pushes(&self, to: &Arc<PushHub>, filter: Option<pushes::PushFilter>) {
        self.handle.shared.pushes.forward_to(to, filter);
    }

    /// How many push frames arrived while nobody was subscribed.
    pub fn unheard_pushes(&self) -> u64 {
        self.handle.shared.pushes.unheard()
    }

    /// Sends a request (a command, a pipeline or a transaction) and waits for its answer,
    /// without going through `poll_ready`.
    ///
    /// The same as `self.clone().oneshot(request)`, a little cheaper.
    pub async fn send<R: Request>(&self, request: R) -> Result<R::Response, Error> {
        self.send_recoverable(request).await.map_err(|f| f.error)
    }

    /// Sends a request; if the connection ends under it, the request comes back with the error.
    pub(crate) async fn send_recoverable<R: Request>(
        &self,
        request: R,
    ) -> Result<R::Response, Failed<R>> {
        if let Err(error) = request.check(self.is_dedicated()) {
            return Err(Failed::from(error));
        }
        if let Some(raw) = request.immediate() {
            return R::finish(raw);
        }
        let (reply, rx) = oneshot::channel();
        self.queue(request.into_job(reply)).await;
        AnswerFuture::<R>::waiting(rx).await
    }

    /// Queues a job as soon as the queue has room; one the connection no longer takes is
    /// answered with [`Error::NotSent`].
    async fn queue(&self, job: Job) {
        let intake = &self.handle.shared.intake;
        let job = match intake.try_push(job) {
            Ok(()) => return,
            Err((job, Refused::Full)) => job,
            Err((job, Refused::Closed)) => return job.fail(self.not_sent()),
        };
        if intake.reserve().await.is_err() {
            job.fail(self.not_sent());
        } else if let Err(job) = intake.push_reserved(job) {
            job.fail(self.not_sent());
        }
    }

    /// Queues a command as soon as the queue has room, and returns the future of its answer:
    /// several commands can be queued before any answer is awaited. For the crate's own
    /// commands (the handshake): connection-state commands are not refused here.
    pub(crate) async fn enqueue(&self, command: Command) -> AnswerFuture<Command> {
        let (reply, rx) = oneshot::channel();
        self.queue(command.into_job(reply)).await;
        AnswerFuture::waiting(rx)
    }

    /// Queues a request at once, without waiting for room, and returns the future of its
    /// answer: for requests whose order against others queued under one lock matters (the
    /// subscription commands of a stack, see `HandoffRetry`).
    pub(crate) fn queue_now<R: Request>(&self, request: R) -> AnswerFuture<R> {
        if let Err(error) = request.check(self.is_dedicated()) {
            return AnswerFuture::done(Err(Failed::from(error)));
        }
        if let Some(raw) = request.immediate() {
            return AnswerFuture::done(R::finish(raw));
        }
        let (reply, rx) = oneshot::channel();
        if let Err(job) = self.handle.shared.intake.push_now(request.into_job(reply)) {
            job.fail(self.not_sent());
        }
        AnswerFuture::waiting(rx)
    }

    /// Like [`Service::call`], but the request comes back with the error if the connection ends
    /// under it. `poll_ready` must have returned ready first, as for `call`.
    #[inline]
    pub(crate) fn call_recoverable<R: Request>(&mut self, request: R) -> AnswerFuture<R> {
        self.call_expiring(request, None, None)
    }

    /// [`Connection::call_recoverable`] with a deadline the I/O task keeps: past it, the caller
    /// is answered with [`Error::Timeout`] (see `expiry`). The deadline moves to its relaxed one
    /// when `relaxation` (the first one given to this connection) says the endpoint is relaxed.
    #[inline]
    pub(crate) fn call_expiring<R: Request>(
        &mut self,
        request: R,
        expiry: Option<expiry::Expiry>,
        relaxation: Option<&expiry::SharedRelaxation>,
    ) -> AnswerFuture<R> {
        if let Some(answer) = self.answer_unsent(&request) {
            return answer;
        }
        let reserved = std::mem::take(&mut self.reserved);
        self.push_job(request, expiry, relaxation, reserved)
    }

    /// The answer to a request that is not sent: refused on this connection (not sent again
    /// by any layer), or answered without the server (an empty pipeline).
    #[inline]
    fn answer_unsent<R: Request>(&self, request: &R) -> Option<AnswerFuture<R>> {
        match request.check(self.is_dedicated()) {
            Err(error) => Some(AnswerFuture::done(Err(Failed::from(error)))),
            Ok(()) => request
                .immediate()
                .map(|raw| AnswerFuture::done(R::finish(raw))),
        }
    }

    /// Takes a queue slot for one [`Connection::call_on_slot`], if one is free: what
    /// `poll_ready` does, for a caller that keeps no handle of its own.
    #[inline]
    pub(crate) fn try_take_slot(&self) -> bool {
        self.handle.shared.intake.try_reserve().is_ok()
    }

    /// Gives back a slot taken with [`Connection::try_take_slot`] and not used.
    pub(crate) fn give_back_slot(&self) {
        self.handle.shared.intake.unreserve();
    }

    /// [`Connection::call_expiring`] on a slot taken with [`Connection::try_take_slot`]
    /// (given back if the request is refused or answered without being sent).
    #[inline]
    pub(crate) fn call_on_slot<R: Request>(
        &self,
        request: R,
        expiry: Option<expiry::Expiry>,
        relaxation: Option<&expiry::SharedRelaxation>,
    ) -> AnswerFuture<R> {
        if let Some(answer) = self.answer_unsent(&request) {
            self.give_back_slot();
            return answer;
        }
        self.push_job(request, expiry, relaxation, true)
    }

    /// Queues a checked request: on the slot reserved for it, or on a free one.
    #[inline]
    fn push_job<R: Request>(
        &self,
        request: R,
        expiry: Option<expiry::Expiry>,
        relaxation: Option<&expiry::SharedRelaxation>,
        reserved: bool,
    ) -> AnswerFuture<R> {
        let shared = &self.handle.shared;
        let intake = &shared.intake;
        let (reply, rx) = oneshot::channel();
        let mut job = request.into_job(reply);
        if let Some(expiry) = expiry {
            if let Some(relaxation) = relaxation {
                if shared.relaxation.get().is_none() {
                    let _ = shared.relaxation.set(relaxation.clone());
                }
            }
            job.set_expiry(expiry);
        }
        let queued = if reserved {
            intake.push_reserved(job).map_err(|j| (j, Refused::Closed))
        } else {
            // `call` without `poll_ready`: take a free slot if there is one.
            intake.try_push(job)
        };
        match queued {
            Ok(()) => {}
            Err((job, Refused::Closed)) => job.fail(self.not_sent()),
            Err((job, Refused::Full)) => job.fail(Error::NotSent {
                reason: "the command queue is full and `call` came without `poll_ready`".into(),
            }),
        }
        AnswerFuture::waiting(rx)
    }

    /// Whether one caller owns this connection, so that it takes connection-state commands.
    pub fn is_dedicated(&self) -> bool {
        self.handle.shared.dedicated.load(Ordering::Relaxed)
    }

    /// Marks the connection as owned by one caller: from now on it takes connection-state
    /// commands (`MULTI`, `WATCH`, `SELECT`, ...; see [`StateCommand`](crate::StateCommand)),
    /// which change it for every handle. Only for a connection that no other caller uses:
    /// clones share the state.
    pub fn into_dedicated(self) -> Self {
        self.set_dedicated();
        self
    }

    pub(crate) fn set_dedicated(&self) {
        self.handle.shared.dedicated.store(true, Ordering::Relaxed);
    }

    /// Stops taking commands and closes the socket once every command already taken has its
    /// answer: how a handoff retires the old connection. Commands sent afterwards through any
    /// handle fail with [`Error::NotSent`]. Resolves when the connection has closed.
    pub async fn drain(&self) -> Arc<str> {
        self.handle.shared.intake.close();
        self.closed().await
    }

    /// Closes the connection at once, without waiting for the replies it still owes: they fail
    /// with [`Error::ConnectionLost`]. For a connection the server is blocking on for a caller
    /// that went away (a pool's blocking command), which would otherwise be reused while the
    /// server still blocks, or answer nobody.
    pub(crate) fn abort(&self) {
        // Closed from now on for every layer above, before the I/O task gets to run.
        self.handle
            .shared
            .mark_closed("closed by the client: a blocking command's caller went away".into());
        self.handle.shared.intake.abort();
    }

    fn not_sent(&self) -> Error {
        Error::NotSent {
            reason: self
                .handle
                .shared
                .closed_reason()
                .unwrap_or_else(|| "the connection is closed".into()),
        }
    }

    fn from_parts(shared: Arc<Shared>) -> Self {
        Connection {
            handle: Arc::new(Handle { shared }),
            reserved: false,
            reserving: None,
        }
    }
}

impl<R: Request> Service<R> for Connection {
    type Response = R::Response;
    type Error = Error;
    type Future = ResponseFuture<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        if self.reserving.is_none() {
            match self.handle.shared.intake.try_reserve() {
                Ok(()) => {
                    self.reserved = true;
                    return Poll::Ready(Ok(()));
                }
                Err(Refused::Full) => {
                    let handle = self.handle.clone();
                    self.reserving = Some(Box::new(Box::pin(async move {
                        handle.shared.intake.reserve().await
                    })));
                }
                Err(Refused::Closed) => return Poll::Ready(Err(self.not_sent())),
            }
        }
        let Some(reserving) = self.reserving.as_mut() else {
            return Poll::Ready(Err(self.not_sent()));
        };
        match (**reserving).as_mut().poll(cx) {
            Poll::Ready(Ok(())) => {
                self.reserving = None;
                self.reserved = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => {
                self.reserving = None;
                Poll::Ready(Err(self.not_sent()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: R) -> ResponseFuture<R> {
        ResponseFuture {
            inner: self.call_recoverable(request),
        }
    }
}

/// The answer to one request sent on a [`Connection`].
#[pin_project]
pub struct ResponseFuture<R: Request = Command> {
    #[pin]
    inner: AnswerFuture<R>,
}

impl<R: Request> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("connection::ResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<R: Request> Future for ResponseFuture<R> {
    type Output = Result<R::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|a| a.map_err(|f| f.error))
    }
}

/// The answer to a request, with the request given back if the connection ended under it.
#[pin_project]
pub(crate) struct AnswerFuture<R: Request = Command> {
    #[pin]
    state: AnswerState<R>,
}

#[pin_project(project = AnswerStateProj)]
enum AnswerState<R: Request> {
    Waiting {
        #[pin]
        rx: oneshot::Receiver<R::Raw>,
    },
    // Answered without I/O (refused, or nothing to send): rare, so boxed, and the common
    // future stays the size of the receiver.
    Done {
        answer: Option<Box<Result<R::Response, Failed<R>>>>,
    },
}

impl<R: Request> fmt::Debug for AnswerFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerFuture").finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<R: Request> AnswerFuture<R> {
    fn waiting(rx: oneshot::Receiver<R::Raw>) -> Self {
        AnswerFuture {
            state: AnswerState::Waiting { rx },
        }
    }

    fn done(answer: Result<R::Response, Failed<R>>) -> Self {
        AnswerFuture {
            state: AnswerState::Done {
                answer: Some(Box::new(answer)),
            },
        }
    }
}

impl<R: Request> Future for AnswerFuture<R> {
    type Output = Result<R::Response, Failed<R>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AnswerStateProj::Waiting { rx } => match rx.poll(cx) {
                Poll::Ready(Ok(raw)) => Poll::Ready(R::finish(raw)),
                // The I/O task answers every request it takes; this is the task having gone
                // away abnormally (a runtime shutting down).
                Poll::Ready(Err(_)) => Poll::Ready(R::finish(R::lost(Error::ConnectionLost {
                    reason: "the connection's task ended without answering (was its runtime \
                             shut down?)"
                        .into(),
                }))),
                Poll::Pending => Poll::Pending,
            },
            AnswerStateProj::Done { answer } => Poll::Ready(answer.take().map_or_else(
                || {
                    Err(Failed::from(Error::NotSent {
                        reason: "the answer was already taken".into(),
                    }))
                },
                |answer| *answer,
            )),
        }
    }
}
