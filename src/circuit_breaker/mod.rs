//! [`CircuitBreaker`]: stops sending to an endpoint that is down, or announced as going down,
//! and lets traffic back once it answers again.
//!
//! # States
//! One circuit per configured endpoint (per [`CircuitBreakerLayer`]; every service the layer
//! makes shares it):
//!
//! - **Closed**: commands flow. It opens after `consecutive_failures` failures in a row (default
//!   5), or when at least `failure_rate` of the calls in the sliding `window` failed (default 50%
//!   over 10 s, once the window holds `minimum_calls`, default 20).
//! - **Open**: commands are not sent (see [`OpenMode`]). After a wait (1 s the first time,
//!   doubling with each opening that follows a failed probe, at most 30 s, up to 20% shorter at
//!   random) it turns half-open.
//! - **HalfOpen**: `half_open_probes` trial commands (default 1) go through; when they all
//!   succeed the circuit closes, when one fails it opens again with a longer wait.
//!
//! What counts as a failure is decided in one place for every layer,
//! [`ErrorClass::counts_as_failure`]: connection failures and timeouts count. A server error
//! reply (`WRONGTYPE`, `ERR ...`) proves the endpoint answers: it counts as a success and never
//! opens the circuit.
//!
//! # Maintenance
//! The circuit follows the [`Maintenance`] handle's events for its endpoint:
//!
//! - Azure `NodeMaintenanceStart` opens it until the connection is back (`Reconnected`,
//!   `HandoffSwitched`) or `NodeMaintenanceFailoverComplete`, `...ScaleComplete` or `...Ended`
//!   arrives, for at most `azure_hold_max` (60 s), after which it turns half-open.
//! - The connection coming back, or an Azure end, turns a circuit that failures opened
//!   half-open at once, so that a probe can close it without waiting out the backoff.
//! - While a handoff is switching connections (from `HandoffStarted` to `HandoffSwitched` or
//!   `HandoffFailed`, at most `handoff_hold`), failures are not counted (they are the
//!   maintenance, and [`HandoffRetry`](crate::handoff::HandoffRetry) deals with them) and an
//!   open circuit holds commands rather than failing them, whatever the mode.
//!
//! Every transition is published on the handle as
//! [`EventKind::CircuitOpened`](crate::EventKind::CircuitOpened),
//! [`CircuitHalfOpen`](crate::EventKind::CircuitHalfOpen) or
//! [`CircuitClosed`](crate::EventKind::CircuitClosed). A [`CircuitHandle`] reads the state and
//! counters and can [`force_open`](CircuitHandle::force_open) and
//! [`reset`](CircuitHandle::reset) the circuit.
//!
//! # What an open circuit does
//! - [`OpenMode::FailFast`] (default): `poll_ready` is ready at once and the command fails with
//!   [`Error::CircuitOpen`], which names the endpoint and why it opened, without the inner
//!   service being polled or called.
//! - [`OpenMode::Wait`]: `poll_ready` stays pending until the circuit lets the command through
//!   (it is woken by the transition), for at most `max`; then it is ready and the command fails
//!   with [`Error::CircuitOpen`].
//!
//! `poll_ready` never fails because of the circuit: the service stays usable, and only the
//! command that was not let through fails. A half-open probe slot taken in `poll_ready` is
//! given back if the service is dropped before `call`, or the response future before it
//! completes.
//!
//! # Cost
//! In a closed circuit a command reads one atomic word in `poll_ready` and, when it completes,
//! adds to a bucket of the window (one `fetch_add`) and clears the run of failures if there is
//! one: no lock, no allocation, no clock read. Transitions (rare) take a short lock so that
//! the state, its reason and its event change together; a rejected command reads the open
//! reason under a read lock.
//!
//! # Runtime
//! A background task per circuit ages the failure-rate window (one bucket per tenth of the
//! window) and turns an open circuit half-open on time; the maintenance events are acted on as
//! they are emitted, by an observer registered on the handle with the task. Both start when
//! the layer is made inside a Tokio runtime, otherwise with the first command; they end with
//! the last service and handle. Without a runtime the circuit still opens, fails fast and
//! half-opens when a command arrives after the wait, but hears no events and its window does
//! not slide.
//!
//! # Example
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use redis_handoff::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
//! use redis_handoff::{Command, Endpoint, Error, Maintenance, Reply};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::new(
//!     Maintenance::default(),
//!     Endpoint::new("127.0.0.1", 6379),
//!     CircuitBreakerConfig { consecutive_failures: 3, ..Default::default() },
//! );
//! let circuit = layer.handle();
//! let sent = Arc::new(AtomicUsize::new(0));
//! let counter = sent.clone();
//! let redis = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(move |_: Command| {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         async { Err::<Reply, _>(Error::NotSent { reason: "connection refused".into() }) }
//!     }));
//!
//! for _ in 0..3 {
//!     let err = redis.clone().oneshot(Command::new("PING")).await.unwrap_err();
//!     assert!(matches!(err, Error::NotSent { .. }));
//! }
//! assert_eq!(circuit.state(), CircuitState::Open);
//! let err = redis.clone().oneshot(Command::new("PING")).await.unwrap_err();
//! assert!(matches!(err, Error::CircuitOpen { .. }));
//! assert_eq!(sent.load(Ordering::SeqCst), 3, "the fourth was not sent");
//!
//! circuit.reset();
//! assert_eq!(circuit.state(), CircuitState::Closed);
//! # }
//! ```
//!
//! [`ErrorClass::counts_as_failure`]: crate::ErrorClass::counts_as_failure
//! [`Maintenance`]: crate::Maintenance

mod config;
mod future;
mod layer;
mod state;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_service::Service;

pub use config::{CircuitBreakerConfig, OpenMode};
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use state::{CircuitHandle, CircuitState, CircuitStats};

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::Maintenance;
use crate::request::Request;
use future::Admission;
pub(crate) use state::Shared;
use state::{changed_or, Admit, Outcome, ProbeSlot, Word};

/// What the last `poll_ready` decided for the next `call`.
enum Ready {
    /// Nothing yet.
    None,
    /// Closed: let through, counted against this generation.
    Pass(u64),
    /// Half-open: let through as a probe.
    Probe(Box<ProbeSlot>),
    /// Not let through; how long it was held first, if it was.
    Reject(Option<Duration>),
    /// Blocked, and held while the mode or a handoff says so (boxed, as the probe slot:
    /// every clone of a service carries a gate, few ever hold).
    Holding(Box<Held>),
}

/// A command held at an open circuit.
struct Held {
    since: Instant,
    wake: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

/// The circuit's part of one service clone: what its `poll_ready` decided for its next `call`,
/// and the command it holds at an open circuit. [`CircuitBreaker`] keeps one over its inner
/// service; the fused [`Stack`](crate::Stack) keeps one over the layers below it, so that
/// both admit, hold and count commands by the same rules.
pub(crate) struct Gate {
    ready: Ready,
}

impl Gate {
    pub(crate) const fn new() -> Self {
        Gate { ready: Ready::None }
    }

    /// `poll_ready` of a service whose inner readiness is `inner`: admits the next command
    /// (holding it while the mode or a handoff says so), then asks the inner service.
    #[inline]
    pub(crate) fn poll_ready(
        &mut self,
        shared: &Arc<Shared>,
        cx: &mut Context<'_>,
        mut inner: impl FnMut(&mut Context<'_>) -> Poll<Result<(), Error>>,
    ) -> Poll<Result<(), Error>> {
        shared.ensure_started();
        loop {
            match &self.ready {
                Ready::None | Ready::Holding(_) => {}
                Ready::Reject(_) => return Poll::Ready(Ok(())),
                Ready::Probe(_) => return self.poll_inner(shared, cx, &mut inner),
                Ready::Pass(generation) => {
                    // Let through earlier while the inner service was not ready: still closed?
                    if shared.word().generation() == *generation {
                        return self.poll_inner(shared, cx, &mut inner);
                    }
                    self.set(Ready::None);
                }
            }
            match shared.admit() {
                Admit::Pass(generation) => {
                    self.set(Ready::Pass(generation));
                    return self.poll_inner(shared, cx, &mut inner);
                }
                Admit::Probe(slot) => {
                    self.set(Ready::Probe(slot));
                    return self.poll_inner(shared, cx, &mut inner);
                }
                Admit::Blocked(seen) => match self.hold(shared, cx, seen) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {}
                    Poll::Ready(Some(waited)) => {
                        self.set(Ready::Reject(waited));
                        return Poll::Ready(Ok(()));
                    }
                },
            }
        }
    }

    #[inline]
    fn poll_inner(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
        inner: &mut impl FnMut(&mut Context<'_>) -> Poll<Result<(), Error>>,
    ) -> Poll<Result<(), Error>> {
        match inner(cx) {
            Poll::Ready(Err(e)) => {
                // The inner service failed before the command could go: that is its outcome.
                match std::mem::replace(&mut self.ready, Ready::None) {
                    Ready::Pass(generation) => {
                        shared.record(generation, Outcome::of::<()>(&Err(e.clone())))
                    }
                    Ready::Probe(mut slot) => slot.record(Outcome::of::<()>(&Err(e.clone()))),
                    Ready::None | Ready::Reject(_) | Ready::Holding(_) => {}
                }
                Poll::Ready(Err(e))
            }
            other => other,
        }
    }

    /// What `call` does with the next command: let it through (its outcome to be counted
    /// against the returned admission) or reject it with [`Error::CircuitOpen`].
    #[inline]
    pub(crate) fn admit(&mut self, shared: &Arc<Shared>) -> Result<Admitted, Error> {
        match std::mem::replace(&mut self.ready, Ready::None) {
            Ready::Pass(generation) => Ok(Admitted::Closed(generation)),
            Ready::Probe(slot) => Ok(Admitted::Probe(slot)),
            Ready::Reject(waited) => Err(shared.rejection(waited)),
            // Called without `poll_ready` (or before it was ready): decide now, and never hold.
            Ready::Holding(held) => {
                drop(held);
                Gate::decide(shared)
            }
            Ready::None => Gate::decide(shared),
        }
    }

    /// Admission for a caller with no gate of its own (one that borrows the service rather
    /// than cloning it, as [`Stack::send`](crate::Stack::send) does): a command let through
    /// at once while the circuit is closed, exactly as `poll_ready` and `call` would let it
    /// through; `None` while it is not, for the full path to hold, probe or reject. Takes
    /// nothing, so a `None` or an admission dropped unused changes nothing.
    #[inline]
    pub(crate) fn admit_closed(shared: &Arc<Shared>) -> Option<Admitted> {
        shared.ensure_started();
        let w = shared.word();
        (w.state() == CircuitState::Closed).then(|| Admitted::Closed(w.generation()))
    }

    fn decide(shared: &Arc<Shared>) -> Result<Admitted, Error> {
        match shared.admit() {
            Admit::Pass(generation) => Ok(Admitted::Closed(generation)),
            Admit::Probe(slot) => Ok(Admitted::Probe(slot)),
            Admit::Blocked(_) => Err(shared.rejection(None)),
        }
    }

    /// Moves on to `next`. Each variant that owns something is taken apart by name, so that
    /// the common moves (from nothing to let through) compile to a store, not a drop call.
    #[inline]
    fn set(&mut self, next: Ready) {
        match std::mem::replace(&mut self.ready, next) {
            Ready::Probe(slot) => drop(slot),
            Ready::Holding(held) => drop(held),
            Ready::None | Ready::Pass(_) | Ready::Reject(_) => {}
        }
    }

    /// Holds a command that the circuit blocks, when the mode or a handoff says so.
    /// `Ready(None)`: look again; `Ready(Some(waited))`: give up on it.
    fn hold(
        &mut self,
        shared: &Arc<Shared>,
        cx: &mut Context<'_>,
        seen: Word,
    ) -> Poll<Option<Option<Duration>>> {
        let now = Instant::now();
        let handoff = shared.handoff_hold_until(now);
        let max = match shared.config.mode {
            OpenMode::Wait { max } => Some(max),
            OpenMode::FailFast => None,
        };
        if handoff.is_none() && max.is_none() {
            return Poll::Ready(Some(None));
        }
        if !matches!(self.ready, Ready::Holding(_)) {
            shared.note_held();
            self.set(Ready::Holding(Box::new(Held {
                since: now,
                wake: None,
            })));
        }
        let Ready::Holding(held) = &mut self.ready else {
            // Just set: not reached.
            return Poll::Ready(None);
        };
        let by_mode = max.map(|m| {
            held.since
                .checked_add(m)
                .unwrap_or(now + Duration::from_secs(86_400))
        });
        let hold_until = match (by_mode, handoff) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(now),
        };
        if now >= hold_until {
            return Poll::Ready(Some(Some(now.saturating_duration_since(held.since))));
        }
        let wake = held.wake.get_or_insert_with(|| {
            let wake_at = shared
                .open_until(seen)
                .map_or(hold_until, |t| t.min(hold_until));
            Box::pin(changed_or(shared.clone(), seen, wake_at))
        });
        match wake.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                held.wake = None;
                Poll::Ready(None)
            }
        }
    }
}

/// How a command got through the circuit, to count its outcome against.
pub(crate) enum Admitted {
    /// Let through while closed, in this generation.
    Closed(u64),
    /// A half-open probe; its slot is given back if the command is dropped unfinished.
    Probe(Box<ProbeSlot>),
}

impl Admitted {
    /// Counts the command's outcome.
    #[inline]
    pub(crate) fn record<T>(self, shared: &Shared, result: &Result<T, Error>) {
        match self {
            Admitted::Closed(generation) => shared.record(generation, Outcome::of(result)),
            Admitted::Probe(mut slot) => slot.record(Outcome::of(result)),
        }
    }
}

/// [`Service`] that fails fast (or holds commands) while its endpoint is down or in
/// maintenance; see the [module docs](self).
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    gate: Gate,
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            gate: Gate::new(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("endpoint", &self.shared.endpoint)
            .field("state", &self.shared.word().state())
            .finish()
    }
}

// ===== impl CircuitBreaker =====

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a new closed circuit for the stack configured with `endpoint`; see
    /// [`CircuitBreakerLayer::new`].
    pub fn new(
        inner: S,
        maintenance: Maintenance,
        endpoint: Endpoint,
        config: CircuitBreakerConfig,
    ) -> Self {
        Self::from_shared(inner, Shared::new(maintenance, endpoint, config))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        CircuitBreaker {
            inner,
            shared,
            gate: Gate::new(),
        }
    }

    /// A handle on the circuit: state, counters, `force_open` and `reset`.
    pub fn handle(&self) -> CircuitHandle {
        CircuitHandle {
            shared: self.shared.clone(),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for CircuitBreaker<S>
where
    R: Request,
    S: Service<R, Error = Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let inner = &mut self.inner;
        self.gate
            .poll_ready(&self.shared, cx, |cx| inner.poll_ready(cx))
    }

    #[inline]
    fn call(&mut self, command: R) -> Self::Future {
        match self.gate.admit(&self.shared) {
            Ok(admitted) => ResponseFuture::called(
                self.inner.call(command),
                Admission {
                    shared: self.shared.clone(),
                    admitted,
                },
            ),
            Err(error) => ResponseFuture::rejected(error),
        }
    }
}

#[cfg(test)]
mod tests;
