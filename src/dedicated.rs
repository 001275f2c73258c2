//! [`Dedicated`]: a connection of one's own, with the same layers, for what a shared
//! connection refuses: `WATCH` ... `MULTI` ... `EXEC`, `SELECT`, client tracking by hand.
//!
//! A [`Stack`](crate::Stack) or [`Pool`](crate::Pool) multiplexes every caller on shared
//! connections, so it refuses commands that change the connection for everyone
//! ([`StateCommand`](crate::StateCommand)). `stack.dedicated().await?` opens a new connection
//! that only its owner uses, under the same layers (timeouts, circuit breaker, metrics) and
//! with the same handoff behaviour, and closes it when dropped. `Dedicated` is not `Clone`, so
//! it is not shared by accident; the clone that [`Dedicated::watch`] hands its body is for that
//! body's reads, and ends with it. Send on it one request after another: requests in flight at
//! once on a dedicated connection are not ordered across a handoff.
//!
//! Through a handoff or a reconnect the dedicated stack carries over what its owner set (the
//! database, the client name, client tracking, `READONLY`, `AUTH`), and reports what it cannot
//! carry: once the connection that held a `WATCH` or an open `MULTI` is replaced, the next
//! `EXEC` fails with [`Error::WatchLost`] instead of running unguarded.
//!
//! [`Dedicated::watch`] runs the optimistic-locking loop: `WATCH` the keys, read, build a
//! [`Transaction`], `EXEC`; again when a watched key changed (or the watch was lost), up to a
//! bound.
//!
//! ```no_run
//! use redis_handoff::{cmd, Stack, Transaction};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let redis = Stack::connect("redis://127.0.0.1:6379").await?;
//! let mut own = redis.dedicated().await?;
//! // Move 10 from a to b, only if a has it, retrying when another client changes either.
//! let moved = own
//!     .watch(["account:a", "account:b"], 16, |conn| async move {
//!         let a = conn.oneshot(cmd!("GET", "account:a")).await?.as_i64().unwrap_or(0);
//!         if a < 10 {
//!             return Ok(None);
//!         }
//!         Ok(Some(
//!             Transaction::new()
//!                 .cmd(cmd!("DECRBY", "account:a", 10))
//!                 .cmd(cmd!("INCRBY", "account:b", 10)),
//!         ))
//!     })
//!     .await?;
//! assert!(moved.is_some() || moved.is_none());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use tower::ServiceExt;
use tower_service::Service;

use crate::command::{Command, ToArg};
use crate::error::Error;
use crate::reply::Reply;
use crate::request::{Request, Transaction};

/// A connection of one's own under the same layers; see the [module docs](self).
pub struct Dedicated<S> {
    service: S,
}

impl<S> fmt::Debug for Dedicated<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedicated").finish_non_exhaustive()
    }
}

impl<S> Dedicated<S> {
    pub(crate) fn new(service: S) -> Self {
        Dedicated { service }
    }

    /// The service underneath.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The service underneath, by value: still a connection of its own, as long as it is not
    /// cloned and shared.
    pub fn into_inner(self) -> S {
        self.service
    }

    /// Sends a request and waits for its answer.
    pub async fn send<R>(&mut self, request: R) -> Result<R::Response, Error>
    where
        R: Request,
        S: Service<R, Response = R::Response, Error = Error>,
    {
        self.service.ready().await?.call(request).await
    }

    /// The optimistic-locking loop: `WATCH keys`, then `body` reads what it needs through the
    /// handle it is given (a handle on this same connection) and returns the [`Transaction`] to
    /// run, or `None` to give up (the keys are unwatched and `Ok(None)` returned). When `EXEC`
    /// finds that a watched key changed, or the watch was lost with its connection in a
    /// handoff, the whole loop runs again, at most `attempts` times in all; after that the
    /// error is [`Error::WatchConflict`]. Any other error ends the loop and is returned.
    pub async fn watch<K, F, Fut>(
        &mut self,
        keys: impl IntoIterator<Item = K>,
        attempts: u32,
        mut body: F,
    ) -> Result<Option<Vec<Result<Reply, Error>>>, Error>
    where
        K: ToArg,
        S: Service<Command, Response = Reply, Error = Error>
            + Service<Transaction, Response = Vec<Result<Reply, Error>>, Error = Error>
            + Clone,
        F: FnMut(S) -> Fut,
        Fut: Future<Output = Result<Option<Transaction>, Error>>,
    {
        let watch = Command::new("WATCH").args_from(keys);
        if watch.args().len() < 2 {
            return Err(Error::config("watch needs at least one key"));
        }
        let attempts = attempts.max(1);
        let mut last = Error::WatchConflict { attempts };
        for attempt in 1..=attempts {
            match self.send(watch.clone()).await {
                Ok(_) => {}
                Err(Error::WatchLost { reason }) => {
                    last = Error::WatchLost { reason };
                    continue;
                }
                Err(e) => return Err(e),
            }
            let transaction = match body(self.service.clone()).await {
                Ok(Some(t)) => t,
                outcome => {
                    // Giving up, or failed: nothing more is guarded.
                    let _ = self.send(Command::new("UNWATCH")).await;
                    return outcome.map(|_| None);
                }
            };
            match self.send(transaction).await {
                Ok(results) => return Ok(Some(results)),
                Err(Error::WatchConflict { .. }) => {
                    last = Error::WatchConflict { attempts: attempt };
                }
                Err(Error::WatchLost { reason }) => last = Error::WatchLost { reason },
                Err(e) => return Err(e),
            }
            tokio::task::yield_now().await;
        }
        Err(match last {
            Error::WatchConflict { .. } => Error::WatchConflict { attempts },
            other => other,
        })
    }
}

impl<S, R> Service<R> for Dedicated<S>
where
    R: Request,
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.service.call(request)
    }
}
