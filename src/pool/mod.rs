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
//!   for its duration, so other commands never queue behind it.
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

use crate::command::Command;
use crate::connection::MakeConnection;
use crate::error::Error;
use crate::handoff::{self, HandoffConfig, HandoffRetry};
use crate::maintenance::HandoffLimiter;
use crate::maintenance::Maintenance;
use crate::reply::Reply;

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
        Ok(Pool {
            ready: None,
            inner: Arc::new(Inner {
                held: (0..size).map(|_| AtomicBool::new(false)).collect(),
                stacks,
                freed: Notify::new(),
                limiter,
                maintenance,
                wait_for_connection,
            }),
        })
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

    /// How many connections a blocking command holds now.
    pub fn held(&self) -> usize {
        self.inner
            .held
            .iter()
            .filter(|h| h.load(Ordering::Relaxed))
            .count()
    }

    /// The less loaded of two random stacks not held by a blocking command.
    fn pick(&self) -> usize {
        let n = self.inner.stacks.len();
        if n == 1 {
            return 0;
        }
        let free = |i: usize| !self.inner.held[i].load(Ordering::Relaxed);
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (free(a), free(b)) {
            (true, true) => {
                if self.inner.stacks[b].in_flight() < self.inner.stacks[a].in_flight() {
                    b
                } else {
                    a
                }
            }
            (true, false) => a,
            (false, true) => b,
            // Both held: look for any free one, else share one anyway.
            (false, false) => (0..n).find(|&i| free(i)).unwrap_or(a),
        }
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
            if inner.held[i].load(Ordering::Relaxed) {
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
            return Err(Error::NotSent {
                reason: format!(
                    "every connection of the pool ({}) is held by a blocking command",
                    inner.stacks.len()
                )
                .into(),
            });
        }
    }
}

/// The answer to a command sent through a [`Pool`].
#[pin_project]
pub struct ResponseFuture {
    #[pin]
    state: State,
}

#[pin_project(project = StateProj)]
enum State {
    // The common case: sent on the stack picked in `poll_ready`, nothing boxed.
    Sent {
        #[pin]
        answer: handoff::ResponseFuture,
    },
    // A blocking command: waits for a connection of its own first.
    Blocking {
        future: Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>,
    },
}

impl fmt::Debug for ResponseFuture {
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

impl Future for ResponseFuture {
    type Output = Result<Reply, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { answer } => answer.poll(cx),
            StateProj::Blocking { future } => future.as_mut().poll(cx),
        }
    }
}

impl Service<Command> for Pool {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    /// Picks the less loaded of two random stacks and waits until it can take a command.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let stack = match &mut self.ready {
            Some(stack) => stack,
            None => self.ready.insert(self.inner.stacks[self.pick()].clone()),
        };
        stack.poll_ready(cx)
    }

    fn call(&mut self, command: Command) -> ResponseFuture {
        if command.blocking().is_some() {
            // The stack picked for it is given back (dropping it returns its queue slot): a
            // blocking command takes the idlest connection nobody holds.
            self.ready = None;
            let inner = self.inner.clone();
            let future = Box::pin(async move {
                let hold = hold_one(inner.clone()).await?;
                let stack = inner.stacks[hold.index].clone();
                let reply = stack.oneshot(command).await;
                drop(hold);
                reply
            });
            return ResponseFuture {
                state: State::Blocking { future },
            };
        }
        let mut stack = match self.ready.take() {
            Some(stack) => stack,
            // `call` without `poll_ready` breaks the Service contract; the stack copes (the
            // command waits for a slot in its response future) rather than panic.
            None => self.inner.stacks[self.pick()].clone(),
        };
        ResponseFuture {
            state: State::Sent {
                answer: stack.call(command),
            },
        }
    }
}
