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
//! A background task per circuit follows the maintenance events, ages the failure-rate window
//! (one bucket per tenth of the window) and turns an open circuit half-open on time. It starts
//! when the layer is made inside a Tokio runtime, otherwise with the first command; it ends
//! with the last service and handle. Without a runtime the circuit still opens, fails fast and
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

use crate::command::Command;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::maintenance::Maintenance;
use crate::reply::Reply;
use future::Admission;
use state::{changed_or, Admit, Outcome, ProbeSlot, Shared, Word};

/// What the last `poll_ready` decided for the next `call`.
enum Ready {
    /// Nothing yet.
    None,
    /// Closed: let through, counted against this generation.
    Pass(u64),
    /// Half-open: let through as a probe.
    Probe(ProbeSlot),
    /// Not let through; how long it was held first, if it was.
    Reject(Option<Duration>),
}

/// A command held at an open circuit.
struct Held {
    since: Instant,
    wake: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

/// [`Service`] that fails fast (or holds commands) while its endpoint is down or in
/// maintenance; see the [module docs](self).
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    ready: Ready,
    held: Option<Held>,
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            ready: Ready::None,
            held: None,
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
            ready: Ready::None,
            held: None,
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

    /// Holds a command that the circuit blocks, when the mode or a handoff says so.
    /// `Ready(None)`: look again; `Ready(Some(waited))`: give up on it.
    fn hold(&mut self, cx: &mut Context<'_>, seen: Word) -> Poll<Option<Option<Duration>>> {
        let shared = &self.shared;
        let now = Instant::now();
        let handoff = shared.handoff_hold_until(now);
        let max = match shared.config.mode {
            OpenMode::Wait { max } => Some(max),
            OpenMode::FailFast => None,
        };
        if handoff.is_none() && max.is_none() {
            return Poll::Ready(Some(None));
        }
        let held = self.held.get_or_insert_with(|| {
            shared.note_held();
            Held {
                since: now,
                wake: None,
            }
        });
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

impl<S> CircuitBreaker<S>
where
    S: Service<Command, Response = Reply, Error = Error>,
{
    #[inline]
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // The inner service failed before the command could go: that is its outcome.
                match std::mem::replace(&mut self.ready, Ready::None) {
                    Ready::Pass(generation) => self
                        .shared
                        .record(generation, Outcome::of::<()>(&Err(e.clone()))),
                    Ready::Probe(mut slot) => slot.record(Outcome::of::<()>(&Err(e.clone()))),
                    Ready::None | Ready::Reject(_) => {}
                }
                Poll::Ready(Err(e))
            }
            other => other,
        }
    }
}

impl<S> Service<Command> for CircuitBreaker<S>
where
    S: Service<Command, Response = Reply, Error = Error>,
{
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.ensure_started();
        loop {
            match &self.ready {
                Ready::None => {}
                Ready::Reject(_) => return Poll::Ready(Ok(())),
                Ready::Probe(_) => return self.poll_inner(cx),
                Ready::Pass(generation) => {
                    // Let through earlier while the inner service was not ready: still closed?
                    if self.shared.word().generation() == *generation {
                        return self.poll_inner(cx);
                    }
                    self.ready = Ready::None;
                }
            }
            match self.shared.admit() {
                Admit::Pass(generation) => {
                    if self.held.is_some() {
                        self.held = None;
                    }
                    self.ready = Ready::Pass(generation);
                    return self.poll_inner(cx);
                }
                Admit::Probe(slot) => {
                    self.held = None;
                    self.ready = Ready::Probe(slot);
                    return self.poll_inner(cx);
                }
                Admit::Blocked(seen) => match self.hold(cx, seen) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {}
                    Poll::Ready(Some(waited)) => {
                        self.held = None;
                        self.ready = Ready::Reject(waited);
                        return Poll::Ready(Ok(()));
                    }
                },
            }
        }
    }

    #[inline]
    fn call(&mut self, command: Command) -> Self::Future {
        let admission = match std::mem::replace(&mut self.ready, Ready::None) {
            Ready::Pass(generation) => Admission::Closed {
                shared: self.shared.clone(),
                generation,
            },
            Ready::Probe(slot) => Admission::Probe(slot),
            Ready::Reject(waited) => {
                return ResponseFuture::rejected(self.shared.rejection(waited))
            }
            // Called without `poll_ready`: decide now, and never hold.
            Ready::None => match self.shared.admit() {
                Admit::Pass(generation) => Admission::Closed {
                    shared: self.shared.clone(),
                    generation,
                },
                Admit::Probe(slot) => Admission::Probe(slot),
                Admit::Blocked(_) => return ResponseFuture::rejected(self.shared.rejection(None)),
            },
        };
        ResponseFuture::called(self.inner.call(command), admission)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    use std::time::SystemTime;

    use redis_protocol::resp3::types::BytesFrame;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::error::ServerError;
    use crate::maintenance::{
        AzureEvent, AzureEventKind, EventKind, MaintenanceEvent, MaintenanceEvents,
    };

    const OK: u8 = 0;
    const DOWN: u8 = 1;
    const WRONGTYPE: u8 = 2;

    /// An in-process backend whose answer is switched by hand, counting the commands it gets.
    #[derive(Clone, Default)]
    struct Backend {
        calls: Arc<AtomicUsize>,
        answer: Arc<AtomicU8>,
    }

    impl Backend {
        fn set(&self, answer: u8) {
            self.answer.store(answer, Ordering::SeqCst);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn service(
            &self,
        ) -> impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send
        {
            let this = self.clone();
            service_fn(move |_: Command| {
                this.calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(match this.answer.load(Ordering::SeqCst) {
                    OK => Ok(Reply::from(BytesFrame::Null)),
                    DOWN => Err(Error::NotSent {
                        reason: "connection refused".into(),
                    }),
                    _ => Err(Error::Server(ServerError::new(
                        "WRONGTYPE Operation against a key holding the wrong kind of value",
                    ))),
                })
            })
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint::new("10.0.0.1", 6379)
    }

    fn breaker(
        config: CircuitBreakerConfig,
    ) -> (
        Maintenance,
        Backend,
        CircuitBreaker<
            impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send,
        >,
    ) {
        let maintenance = Maintenance::default();
        let backend = Backend::default();
        let svc = CircuitBreaker::new(backend.service(), maintenance.clone(), endpoint(), config);
        (maintenance, backend, svc)
    }

    fn config() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            consecutive_failures: 3,
            open_wait: Duration::from_millis(50),
            ..CircuitBreakerConfig::default()
        }
    }

    async fn send<S>(svc: &S) -> Result<Reply, Error>
    where
        S: Service<Command, Response = Reply, Error = Error> + Clone,
    {
        svc.clone().oneshot(Command::new("PING")).await
    }

    fn spawn_send<S>(svc: &S) -> tokio::task::JoinHandle<Result<Reply, Error>>
    where
        S: Service<Command, Response = Reply, Error = Error> + Clone + Send + 'static,
        S::Future: Send,
    {
        let svc = svc.clone();
        tokio::spawn(async move { svc.oneshot(Command::new("PING")).await })
    }

    async fn next(events: &mut MaintenanceEvents, name: &str) -> EventKind {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.recv().await {
                    Some(e) if e.kind.name() == name => return e.kind,
                    Some(_) => {}
                    None => panic!("no more events"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {name} event"))
    }

    fn azure(maintenance: &Maintenance, kind: AzureEventKind) {
        maintenance.emit(MaintenanceEvent::new(
            endpoint(),
            EventKind::Azure(AzureEvent::new(kind, SystemTime::now())),
        ));
    }

    fn handoff(maintenance: &Maintenance, kind: EventKind) {
        maintenance.emit(MaintenanceEvent::new(endpoint(), kind));
    }

    #[tokio::test]
    async fn consecutive_failures_open_it_and_then_it_fails_fast_without_calling_inner() {
        let (maintenance, backend, svc) = breaker(config());
        let mut events = maintenance.subscribe();
        backend.set(DOWN);
        for _ in 0..3 {
            assert!(matches!(send(&svc).await, Err(Error::NotSent { .. })));
        }
        let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
            unreachable!()
        };
        assert!(
            reason.contains("3 connection failures in a row"),
            "{reason}"
        );
        for _ in 0..10 {
            match send(&svc).await {
                Err(Error::CircuitOpen {
                    endpoint: e,
                    reason: r,
                }) => {
                    assert_eq!(e, endpoint());
                    assert_eq!(r, reason);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(backend.calls(), 3);
        let stats = svc.handle().stats();
        assert_eq!((stats.opened, stats.rejected), (1, 10));
    }

    #[tokio::test]
    async fn a_success_ends_the_run_of_failures() {
        let (_m, backend, svc) = breaker(CircuitBreakerConfig {
            failure_rate: 0.0,
            ..config()
        });
        for _ in 0..10 {
            backend.set(DOWN);
            let _ = send(&svc).await;
            let _ = send(&svc).await;
            backend.set(OK);
            assert!(send(&svc).await.is_ok());
        }
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        assert_eq!(svc.handle().stats().consecutive_failures, 0);
    }

    #[tokio::test]
    async fn a_failure_rate_over_the_window_opens_it() {
        let (_m, backend, svc) = breaker(CircuitBreakerConfig {
            consecutive_failures: 0,
            minimum_calls: 10,
            failure_rate: 0.5,
            ..config()
        });
        for i in 0..9 {
            backend.set(if i % 2 == 0 { DOWN } else { OK });
            let _ = send(&svc).await;
        }
        // 5 of 9: under the minimum number of calls.
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        backend.set(OK);
        let _ = send(&svc).await;
        backend.set(DOWN);
        let _ = send(&svc).await;
        // 6 of 11.
        assert_eq!(svc.handle().state(), CircuitState::Open);
        let reason = svc.handle().open_reason().unwrap();
        assert!(reason.contains("6 of the last 11 calls failed"), "{reason}");
    }

    #[tokio::test]
    async fn server_errors_never_count() {
        let (_m, backend, svc) = breaker(CircuitBreakerConfig {
            minimum_calls: 1,
            ..config()
        });
        backend.set(WRONGTYPE);
        for _ in 0..100 {
            assert!(matches!(send(&svc).await, Err(Error::Server(_))));
        }
        let stats = svc.handle().stats();
        assert_eq!(stats.state, CircuitState::Closed);
        assert_eq!((stats.window_calls, stats.window_failures), (100, 0));
        assert_eq!((stats.consecutive_failures, stats.opened), (0, 0));
    }

    #[tokio::test]
    async fn a_probe_failure_reopens_for_longer_and_a_probe_success_closes_it() {
        let (maintenance, backend, svc) = breaker(config());
        let mut events = maintenance.subscribe();
        backend.set(DOWN);
        for _ in 0..3 {
            let _ = send(&svc).await;
        }
        next(&mut events, "circuit_opened").await;
        next(&mut events, "circuit_half_open").await;
        assert_eq!(svc.handle().state(), CircuitState::HalfOpen);
        assert!(matches!(send(&svc).await, Err(Error::NotSent { .. })));
        let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
            unreachable!()
        };
        assert!(reason.contains("probe failed"), "{reason}");
        let until = svc.shared.open_until(svc.shared.word()).unwrap();
        assert!(
            until > Instant::now() + Duration::from_millis(60),
            "the wait doubled"
        );
        next(&mut events, "circuit_half_open").await;
        backend.set(OK);
        assert!(send(&svc).await.is_ok());
        assert!(matches!(
            next(&mut events, "circuit_closed").await,
            EventKind::CircuitClosed { open_for } if open_for >= Duration::from_millis(100)
        ));
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        assert_eq!(backend.calls(), 5);
        assert_eq!(svc.handle().stats().probes, 2);
    }

    #[tokio::test]
    async fn a_probe_slot_taken_in_poll_ready_is_given_back_when_the_call_never_comes() {
        let (_m, backend, svc) = breaker(CircuitBreakerConfig {
            open_wait: Duration::from_millis(1),
            max_open_wait: Duration::from_millis(1),
            ..config()
        });
        backend.set(DOWN);
        for _ in 0..3 {
            let _ = send(&svc).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut first = svc.clone();
        first.ready().await.unwrap();
        assert!(matches!(first.ready, Ready::Probe(_)));
        // The only slot is taken: another command fails fast.
        assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
        drop(first);
        backend.set(OK);
        assert!(send(&svc).await.is_ok());
        assert_eq!(svc.handle().state(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_dropped_probe_gives_its_slot_back() {
        let layer = CircuitBreakerLayer::new(
            Maintenance::default(),
            endpoint(),
            CircuitBreakerConfig {
                open_wait: Duration::from_millis(1),
                max_open_wait: Duration::from_millis(1),
                ..config()
            },
        );
        let circuit = layer.handle();
        let backend = Backend::default();
        let svc = tower::Layer::layer(&layer, backend.service());
        let never = tower::Layer::layer(
            &layer,
            service_fn(|_: Command| std::future::pending::<Result<Reply, Error>>()),
        );
        backend.set(DOWN);
        for _ in 0..3 {
            let _ = send(&svc).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let probe = send(&never);
        assert!(tokio::time::timeout(Duration::from_millis(20), probe)
            .await
            .is_err());
        assert_eq!(circuit.state(), CircuitState::HalfOpen);
        backend.set(OK);
        assert!(send(&svc).await.is_ok());
        assert_eq!(circuit.state(), CircuitState::Closed);
    }

    #[tokio::test]
    async fn wait_mode_holds_commands_until_the_circuit_closes() {
        let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
            mode: OpenMode::Wait {
                max: Duration::from_secs(10),
            },
            ..config()
        });
        let mut events = maintenance.subscribe();
        azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
        next(&mut events, "circuit_opened").await;
        let held: Vec<_> = (0..5).map(|_| spawn_send(&svc)).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(backend.calls(), 0);
        assert_eq!(svc.handle().stats().held, 5);
        azure(
            &maintenance,
            AzureEventKind::NodeMaintenanceFailoverComplete,
        );
        for h in held {
            assert!(h.await.unwrap().is_ok());
        }
        assert_eq!(backend.calls(), 5);
        assert_eq!(svc.handle().stats().rejected, 0);
    }

    #[tokio::test]
    async fn wait_mode_gives_up_after_its_bound() {
        let (_m, backend, svc) = breaker(CircuitBreakerConfig {
            mode: OpenMode::Wait {
                max: Duration::from_millis(100),
            },
            ..config()
        });
        svc.handle().force_open("drill");
        let started = Instant::now();
        match send(&svc).await {
            Err(Error::CircuitOpen { reason, .. }) => {
                assert!(reason.starts_with("drill; still not closed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn an_open_circuit_holds_commands_while_a_handoff_switches() {
        let (maintenance, backend, svc) = breaker(config());
        let mut events = maintenance.subscribe();
        azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
        next(&mut events, "circuit_opened").await;
        assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
        handoff(
            &maintenance,
            EventKind::HandoffStarted {
                from: endpoint(),
                to: Endpoint::new("10.0.0.2", 6379),
                seq: Some(1),
            },
        );
        next(&mut events, "handoff_started").await;
        let held = spawn_send(&svc);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!held.is_finished());
        handoff(
            &maintenance,
            EventKind::HandoffSwitched {
                from: endpoint(),
                to: Endpoint::new("10.0.0.2", 6379),
            },
        );
        assert!(held.await.unwrap().is_ok());
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        assert_eq!(backend.calls(), 1);
    }

    #[tokio::test]
    async fn failures_during_a_handoff_do_not_count() {
        let (maintenance, backend, svc) = breaker(config());
        let mut events = maintenance.subscribe();
        handoff(
            &maintenance,
            EventKind::HandoffStarted {
                from: endpoint(),
                to: Endpoint::new("10.0.0.2", 6379),
                seq: Some(1),
            },
        );
        next(&mut events, "handoff_started").await;
        // The task has seen it once a probe event of ours would come after it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        backend.set(DOWN);
        for _ in 0..10 {
            let _ = send(&svc).await;
        }
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        handoff(
            &maintenance,
            EventKind::HandoffFailed {
                to: Endpoint::new("10.0.0.2", 6379),
                attempts: 3,
                error: Error::NotSent {
                    reason: "refused".into(),
                },
            },
        );
        next(&mut events, "handoff_failed").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..3 {
            let _ = send(&svc).await;
        }
        assert_eq!(svc.handle().state(), CircuitState::Open);
    }

    #[tokio::test]
    async fn azure_start_opens_it_for_at_most_the_hold_then_it_half_opens() {
        let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
            azure_hold_max: Duration::from_millis(100),
            ..config()
        });
        let mut events = maintenance.subscribe();
        azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
        let EventKind::CircuitOpened { reason } = next(&mut events, "circuit_opened").await else {
            unreachable!()
        };
        assert!(reason.contains("NodeMaintenanceStart"), "{reason}");
        assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
        next(&mut events, "circuit_half_open").await;
        assert!(send(&svc).await.is_ok());
        assert_eq!(svc.handle().state(), CircuitState::Closed);
        assert_eq!(backend.calls(), 1);
    }

    #[tokio::test]
    async fn the_connection_coming_back_closes_an_azure_circuit_and_half_opens_a_failed_one() {
        let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
            open_wait: Duration::from_secs(30),
            ..config()
        });
        let mut events = maintenance.subscribe();
        azure(&maintenance, AzureEventKind::NodeMaintenanceStart);
        next(&mut events, "circuit_opened").await;
        handoff(
            &maintenance,
            EventKind::Reconnected {
                attempts: 1,
                took: Duration::from_millis(5),
            },
        );
        next(&mut events, "circuit_closed").await;

        backend.set(DOWN);
        for _ in 0..3 {
            let _ = send(&svc).await;
        }
        next(&mut events, "circuit_opened").await;
        handoff(
            &maintenance,
            EventKind::Reconnected {
                attempts: 1,
                took: Duration::from_millis(5),
            },
        );
        next(&mut events, "circuit_half_open").await;
        backend.set(OK);
        assert!(send(&svc).await.is_ok());
        next(&mut events, "circuit_closed").await;
    }

    #[tokio::test]
    async fn a_forced_circuit_stays_open_until_reset() {
        let (maintenance, backend, svc) = breaker(CircuitBreakerConfig {
            open_wait: Duration::from_millis(1),
            ..config()
        });
        let mut events = maintenance.subscribe();
        let circuit = svc.handle();
        circuit.force_open("drill");
        next(&mut events, "circuit_opened").await;
        azure(&maintenance, AzureEventKind::NodeMaintenanceEnded);
        handoff(
            &maintenance,
            EventKind::Reconnected {
                attempts: 1,
                took: Duration::from_millis(5),
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(circuit.state(), CircuitState::Open);
        assert_eq!(circuit.open_reason().as_deref(), Some("drill"));
        assert!(matches!(send(&svc).await, Err(Error::CircuitOpen { .. })));
        circuit.reset();
        next(&mut events, "circuit_closed").await;
        assert!(send(&svc).await.is_ok());
        assert_eq!(backend.calls(), 1);
        assert_eq!(circuit.open_reason(), None);
    }

    #[test]
    fn the_service_and_its_parts_can_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<CircuitBreaker<crate::handoff::HandoffRetry>>();
        send::<ResponseFuture<crate::handoff::ResponseFuture>>();
        send_sync::<CircuitBreakerLayer>();
        send_sync::<CircuitHandle>();
    }

    #[test]
    fn without_a_runtime_it_still_opens_and_fails_fast() {
        let (_m, backend, mut svc) = breaker(config());
        assert!(!svc.shared.started());
        backend.set(DOWN);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut send_now = || {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let mut response = std::pin::pin!(svc.call(Command::new("PING")));
            match response.as_mut().poll(&mut cx) {
                Poll::Ready(result) => result,
                Poll::Pending => panic!("the backend answers at once"),
            }
        };
        for _ in 0..3 {
            assert!(matches!(send_now(), Err(Error::NotSent { .. })));
        }
        assert!(matches!(send_now(), Err(Error::CircuitOpen { .. })));
        assert_eq!(backend.calls(), 3);
    }
}
