//! [`Pool`]: many handoff-aware connections behind one service, with bounded handoff workers.
//!
//! One multiplexed connection carries a lot, but blocking commands, Pub/Sub-heavy apps and
//! large replies want more than one. A pool holds `size` [`HandoffRetry`] stacks, each with its
//! own connection, all sharing one [`Maintenance`] handle:
//!
//! - A command goes to the less loaded of two stacks picked at random (fewest commands in
//!   flight): nearly as good as the least loaded of all, without scanning them. The pick is
//!   made in `poll_ready`, as tower's `balance` does, and waits there for that stack's queue:
//!   backpressure reaches the caller instead of piling up in response futures.
//! - A blocking command (`BLPOP`, `XREAD ... BLOCK`, `WAIT`, ...) takes a connection of its own
//!   for its duration, so other commands never queue behind it. If its caller drops the future
//!   before the reply (axum does when the HTTP client goes away), that connection is closed at
//!   once and its stack reconnects: the server stops blocking for nobody, and an element pushed
//!   later stays in the list for a live caller instead of being popped for a dead one (one
//!   popped in the instant between the server's reply and the drop is lost, as with any client).
//!   A command that arrives while blocking commands hold every connection waits for one to be
//!   freed (up to `wait_for_connection`, then [`Error::NotSent`]) rather than queue behind a
//!   connection the server is blocking. Blocking commands never take the first connection
//!   (unless it is the only one): it carries the subscriptions. A command that raced onto a
//!   connection just as a blocking command took it fails with the abort, as
//!   [`Error::ConnectionLost`].
//! - Pub/Sub commands all go to the first connection, so one subscriber's subscriptions live on
//!   one connection; [`Pool::pushes`] is one stream of every connection's pushes.
//! - A [`Pipeline`](crate::Pipeline) or [`Transaction`](crate::Transaction) runs on one
//!   connection, as one request; [`Pool::dedicated`] opens a connection of one's own for
//!   `WATCH` and other connection-state commands, which the pool's shared connections refuse.
//! - A `MOVING` reaches every connection at once; each stack hands off on its own, but through
//!   one [`HandoffLimiter`]: at most `max_workers` handoffs dial at once and at most
//!   `handoff_queue_size` wait. A handoff that finds the queue full fails with an error and a
//!   `HandoffFailed` event (its stack keeps its old connection until it closes, then
//!   reconnects): never a silent drop. Both figures come from the
//!   [`MaintenanceConfig`](crate::MaintenanceConfig), sized for the pool when left on auto.
//!
//! # Example
//! ```no_run
//! use redis_handoff::handoff::HandoffConfig;
//! use redis_handoff::pool::Pool;
//! use redis_handoff::{cmd, ConnectOptions, Connector, Maintenance, NotificationDemux};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let maintenance = Maintenance::default();
//! let connector = Connector::new(ConnectOptions::from_url("redis://127.0.0.1:6379")?)?;
//! let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
//! let pool = Pool::connect(demuxed, maintenance, 8, HandoffConfig::default()).await?;
//! let popped = pool.clone().oneshot(cmd!("BLPOP", "jobs", 5)).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_service::Service;

use crate::connection::{Connection, MakeConnection, PushHub, Pushes};
use crate::dedicated::Dedicated;
use crate::error::Error;
use crate::handoff::{self, HandoffConfig, HandoffRetry};
use crate::maintenance::HandoffLimiter;
use crate::maintenance::Maintenance;
use crate::reply::FromReply;
use crate::request::Request;
use crate::Command;

/// A pool of handoff-aware connections; see the [module docs](self). Cheap to clone.
pub struct Pool {
    inner: Arc<Inner>,
    // The stack picked by `poll_ready`, ready for the next `call` (its queue slot reserved).
    ready: Option<HandoffRetry>,
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        // A clone makes its own pick: the reservation belongs to this handle.
        Pool {
            inner: self.inner.clone(),
            ready: None,
        }
    }
}

struct Inner {
    stacks: Vec<HandoffRetry>,
    // Held by a blocking command for its duration.
    held: Vec<AtomicBool>,
    freed: Notify,
    limiter: HandoffLimiter,
    maintenance: Maintenance,
    wait_for_connection: Duration,
    // Every stack's pushes, as one stream.
    pushes: Arc<PushHub>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.stacks.len())
            .field("limiter", &self.inner.limiter)
            .finish()
    }
}

impl Pool {
    /// Opens `size` connections through `connector` (at least 1) and waits until all are up.
    /// Handoff workers and queue come from `maintenance`'s configuration for a pool of `size`.
    pub async fn connect<M: MakeConnection>(
        connector: M,
        maintenance: Maintenance,
        size: usize,
        config: HandoffConfig,
    ) -> Result<Pool, Error> {
        let size = size.max(1);
        let m = maintenance.config();
        let limiter = HandoffLimiter::new(m.max_workers(size), m.handoff_queue_size(size, None));
        maintenance.publish_limiter(limiter.clone());
        let config = HandoffConfig {
            limiter: Some(limiter.clone()),
            ..config
        };
        let wait_for_connection = config.wait_for_connection;
        let mut pending = Vec::with_capacity(size);
        for _ in 0..size {
            let (c, m, cfg) = (connector.clone(), maintenance.clone(), config.clone());
            pending.push(tokio::spawn(async move {
                HandoffRetry::connect(c, m, cfg).await
            }));
        }
        let mut stacks = Vec::with_capacity(size);
        for p in pending {
            let stack = p.await.map_err(|e| Error::Config {
                message: format!("a pool connection task failed: {e}").into(),
            })??;
            stacks.push(stack);
        }
        let pushes = Arc::new(PushHub::new(connector.configured_endpoint(), 4096));
        for stack in &stacks {
            stack.forward_pushes(&pushes);
        }
        Ok(Pool {
            ready: None,
            inner: Arc::new(Inner {
                pushes,
                held: (0..size).map(|_| AtomicBool::new(false)).collect(),
                stacks,
                freed: Notify::new(),
                limiter,
                maintenance,
                wait_for_connection,
            }),
        })
    }

    /// Sends `command` on one of the pool's connections and converts its reply to `T` (any
    /// [`FromReply`] type); see `Stack::query`.
    ///
    /// ```no_run
    /// # async fn run(pool: redis_handoff::Pool) -> Result<(), redis_handoff::Error> {
    /// use redis_handoff::cmd;
    /// let popped: Option<(String, String)> = pool.query(cmd!("BLPOP", "jobs", 5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn query<T: FromReply>(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        let pool = self.clone();
        async move { pool.oneshot(command).await?.parse() }
    }

    /// The number of connections.
    pub fn size(&self) -> usize {
        self.inner.stacks.len()
    }

    /// The stacks, one per connection.
    pub fn stacks(&self) -> &[HandoffRetry] {
        &self.inner.stacks
    }

    /// The shared handoff bound: workers, queue depth, utilisation, refusals.
    pub fn limiter(&self) -> &HandoffLimiter {
        &self.inner.limiter
    }

    /// The maintenance handle the pool's stacks share.
    pub fn maintenance(&self) -> &Maintenance {
        &self.inner.maintenance
    }

    /// Push frames from every connection of the pool, as one stream: Pub/Sub messages (all
    /// subscriptions live on the first connection), client-tracking invalidations.
    pub fn pushes(&self) -> Pushes {
        self.inner.pushes.subscribe()
    }

    /// Opens a connection of one's own (with the pool's connector and handoff settings) for
    /// `WATCH`, `MULTI` by hand, `SELECT` and other connection-state commands; see
    /// [`Dedicated`]. Closed when dropped.
    pub async fn dedicated(&self) -> Result<Dedicated<HandoffRetry>, Error> {
        self.inner.stacks[0].dedicated().await
    }

    /// How many connections a blocking command holds now.
    pub fn held(&self) -> usize {
        self.inner
            .held
            .iter()
            .filter(|h| h.load(Ordering::Relaxed))
            .count()
    }

    /// The less loaded of two random stacks not held by a blocking command; `None` when a
    /// blocking command holds every one.
    fn pick(&self) -> Option<usize> {
        pick(&self.inner)
    }
}

fn pick(inner: &Inner) -> Option<usize> {
    let n = inner.stacks.len();
    let free = |i: usize| !inner.held[i].load(Ordering::Relaxed);
    if n == 1 {
        return free(0).then_some(0);
    }
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    match (free(a), free(b)) {
        (true, true) => {
            if inner.stacks[b].in_flight() < inner.stacks[a].in_flight() {
                Some(b)
            } else {
                Some(a)
            }
        }
        (true, false) => Some(a),
        (false, true) => Some(b),
        // Both held: any free one. None: a command never queues behind a blocked one.
        (false, false) => (0..n).find(|&i| free(i)),
    }
}

/// Waits, at most `wait_for_connection`, until a stack is not held by a blocking command.
async fn wait_free(inner: &Inner) -> Result<usize, Error> {
    let deadline = tokio::time::Instant::now() + inner.wait_for_connection;
    loop {
        let freed = inner.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some(i) = pick(inner) {
            // Pass the wake-up on: a blocking command may be waiting for the same release.
            inner.freed.notify_one();
            return Ok(i);
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            return Err(all_held(inner));
        }
    }
}

fn all_held(inner: &Inner) -> Error {
    Error::NotSent {
        reason: format!(
            "every connection of the pool ({}) is held by a blocking command",
            inner.stacks.len()
        )
        .into(),
    }
}

/// Releases a connection held by a blocking command.
struct Hold {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.inner.held[self.index].store(false, Ordering::Release);
        self.inner.freed.notify_one();
    }
}

async fn hold_one(inner: Arc<Inner>) -> Result<Hold, Error> {
    let deadline = tokio::time::Instant::now() + inner.wait_for_connection;
    let waiter = inner.clone();
    loop {
        let freed = waiter.freed.notified();
        // The idlest free connection.
        let mut best: Option<(usize, usize)> = None;
        for (i, stack) in inner.stacks.iter().enumerate() {
            // The first connection carries the subscriptions: never blocked, never closed for
            // a blocking command (unless it is the only one).
            if inner.held[i].load(Ordering::Relaxed) || (i == 0 && inner.stacks.len() > 1) {
                continue;
            }
            let load = stack.in_flight();
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((i, load));
            }
        }
        if let Some((index, _)) = best {
            if inner.held[index]
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Hold { inner, index });
            }
            continue;
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            return Err(all_held(&inner));
        }
    }
}

/// The answer to a request sent through a [`Pool`].
#[pin_project]
pub struct ResponseFuture<R: Request = crate::Command> {
    #[pin]
    state: State<R>,
}

#[pin_project(project = StateProj)]
enum State<R: Request> {
    // The common case: sent on the stack picked in `poll_ready`, nothing boxed.
    Sent {
        #[pin]
        answer: handoff::ResponseFuture<R>,
    },
    // A blocking command: waits for a connection of its own first.
    Blocking {
        future: Pin<Box<dyn Future<Output = Result<R::Response, Error>> + Send>>,
    },
}

impl<R: Request> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Sent { .. } => "sent",
            State::Blocking { .. } => "blocking",
        };
        f.debug_struct("pool::ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<R: Request> Future for ResponseFuture<R> {
    type Output = Result<R::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { answer } => answer.poll(cx),
            StateProj::Blocking { future } => future.as_mut().poll(cx),
        }
    }
}

/// Closes the connection a blocking command was sent on when its caller goes away before the
/// reply. The connection it was written to, not the stack's current one: after a handoff the
/// command is still owed by the old, draining connection.
struct AbortUnlessDone {
    sent_on: Option<Connection>,
    // The held stack, for a command that waited for its stack's next connection.
    stack: Option<HandoffRetry>,
}

impl Drop for AbortUnlessDone {
    fn drop(&mut self) {
        // Still held (the hold is released after this): whatever connection the stack has now
        // is the one the command went to if it had none when sent.
        let conn = self
            .sent_on
            .take()
            .or_else(|| self.stack.take().and_then(|s| s.current_connection()));
        if let Some(conn) = conn {
            tracing::debug!(
                endpoint = %conn.endpoint(),
                "a blocking command's caller went away before its reply: closing its connection"
            );
            conn.abort();
        }
    }
}

/// Commands, pipelines and transactions: each goes whole to one connection.
impl<R: Request> Service<R> for Pool {
    type Response = R::Response;
    type Error = Error;
    type Future = ResponseFuture<R>;

    /// Picks the less loaded of two random stacks and waits until it can take a command.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let stack = match &mut self.ready {
            Some(stack) => stack,
            None => match self.pick() {
                Some(i) => self.ready.insert(self.inner.stacks[i].clone()),
                // Every connection is blocked: `call` waits for one to be free.
                None => return Poll::Ready(Ok(())),
            },
        };
        Service::<R>::poll_ready(stack, cx)
    }

    fn call(&mut self, request: R) -> ResponseFuture<R> {
        if request.blocking().is_some() {
            // The stack picked for it is given back (dropping it returns its queue slot): a
            // blocking command takes the idlest connection nobody holds.
            self.ready = None;
            let inner = self.inner.clone();
            let future = Box::pin(async move {
                let hold = hold_one(inner.clone()).await?;
                let stack = inner.stacks[hold.index].clone();
                // The connection the command goes to: the stack's current one, taken just
                // before sending (or, if it had none, the one it has when the caller goes).
                let mut guard = AbortUnlessDone {
                    sent_on: stack.current_connection(),
                    stack: Some(stack.clone()),
                };
                let reply = stack.oneshot(request).await;
                // Answered: the connection is free again, and nothing is to be closed.
                guard.sent_on = None;
                guard.stack = None;
                drop(hold);
                reply
            });
            return ResponseFuture {
                state: State::Blocking { future },
            };
        }
        if request
            .as_command()
            .is_some_and(|c| c.subscription().is_some())
        {
            // One subscriber's subscriptions live on one connection: the first.
            self.ready = None;
            let mut stack = self.inner.stacks[0].clone();
            return ResponseFuture {
                state: State::Sent {
                    answer: stack.call(request),
                },
            };
        }
        let mut stack = match self.ready.take().or_else(|| {
            // `call` without `poll_ready` breaks the Service contract; the stack copes (the
            // command waits for a slot in its response future) rather than panic.
            self.pick().map(|i| self.inner.stacks[i].clone())
        }) {
            Some(stack) => stack,
            None => {
                let inner = self.inner.clone();
                let future = Box::pin(async move {
                    let i = wait_free(&inner).await?;
                    inner.stacks[i].clone().oneshot(request).await
                });
                return ResponseFuture {
                    state: State::Blocking { future },
                };
            }
        };
        ResponseFuture {
            state: State::Sent {
                answer: stack.call(request),
            },
        }
    }
}
