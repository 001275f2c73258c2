//! The recommended stack in one call.
//!
//! [`Stack::connect`] builds, over one multiplexed connection:
//!
//! ```text
//! MetricsHook         latency histograms and outcome counts; maintenance counts
//! CircuitBreaker      fails fast while the endpoint is down; holds commands through a handoff
//! RelaxedTimeout      timeout, relaxed (never tightened) while the endpoint is in maintenance
//! HandoffRetry        make-before-break handoffs on MOVING, reconnects, safe resends
//! NotificationDemux   maintenance notifications and Azure events into the Maintenance handle
//! Connection          RESP3, pipelined
//! ```
//!
//! The result is a cheap `Clone` [`tower::Service`] for commands, pipelines and transactions
//! (any [`Request`]): share it between axum handlers, tonic services or tasks as it is.
//! [`Stack::dedicated`] opens a connection of one's own under the same layers for `WATCH` and
//! other connection-state commands, which the shared one refuses. Each part stays available for
//! callers who want to assemble their own stack with `ServiceBuilder`, and
//! [`Stack::maintenance`] gives the handle to subscribe to what happens.
//!
//! The `Stack` runs these layers fused rather than nested. Each layer keeps two kinds of state:
//! what all clones share (the circuit, the deadline table, the metrics, the handoff's current
//! connection) and what one clone keeps between `poll_ready` and `call` (a circuit admission,
//! a timer on a full queue, a reserved queue slot). The `Stack` keeps the first kind for every
//! layer in one reference-counted block and the second kind side by side, and its
//! [`ResponseFuture`] does each layer's step, in the nested order, with one reference to the
//! block. The steps are the layers' own (`circuit_breaker::Gate`, `relaxed_timeout::Deadline`,
//! `handoff::Reservation`, `Metrics::begin`), shared with their `Service` impls, so the two
//! behave alike; [`Stack::into_service`] gives the nested [`StackService`] over the same state.
//! Nested, a `stack.clone()` and its call took eight shared reference counts (one per layer for
//! the clone, the connection, and three for the layers' futures) and moved a future of four
//! nested ones; fused, they take three (the block twice, the connection) and move one.
//!
//! Fused, the timeout layer's step is also done where it costs least: the `Stack` hands each
//! command's deadline to the connection it goes to, whose I/O task keeps it with the command
//! and answers it with [`Error::Timeout`] once it has passed (see the
//! [`relaxed_timeout`](mod@crate::relaxed_timeout) module docs); the nested layer keeps a table of
//! its own. A connected `Stack` also keeps the current connection, so that its clones start
//! from it rather than each looking it up. Knowing the layer below, it also tells a command
//! whose time ran out while it waited for a reconnect, or between the tries of a `LOADING`,
//! from one that may have run: the first fails with [`Error::NotSent`] or the refusal (and
//! counts for the circuit as the timeout it is), the second with [`Error::Timeout`]; the
//! nested timeout layer says `Timeout` for both, as do subscription commands.
//!
//! [`Stack::send`] goes one step further for a caller that can lend the stack rather than
//! give a clone away: while the circuit is closed and the current connection has room, it does
//! each layer's step on the way down without a clone of its own (no `poll_ready` state to keep,
//! no clone to drop, no reference count), and its future borrows the shared block; anything
//! else (an open or half-open circuit, a full queue, a handoff under way, a subscription, a
//! dedicated stack) goes down the full path of a clone, so the two answer alike. Per GET from
//! 100 tasks that is about 400 instructions fewer than `stack.clone().oneshot(..)`.
//!
//! A clone and its future are moved with every command, so what they carry is kept small: a
//! clone is 64 bytes (with a `Command`, 128: tower's `Oneshot` moves it with a few stores, not
//! a `memcpy` call), the future 112. What only a rare path needs is boxed there (a half-open
//! probe's slot, a command held at an open circuit, a rejection's error, a connection's wait
//! for a queue slot), and the `redis.command` span is kept only when a subscriber (or the
//! `log` fallback) wants it. A test holds these sizes.
//!
//! ```no_run
//! use redis_handoff::{cmd, Stack};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let redis = Stack::connect("redis://127.0.0.1:6379").await?;
//! redis.clone().oneshot(cmd!("SET", "greeting", "hello")).await?;
//! // Typed: the reply converted to the type asked for.
//! let greeting: Option<String> = redis.query(cmd!("GET", "greeting")).await?;
//! let visits: i64 = redis.query(cmd!("INCR", "visits")).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::{pin_project, pinned_drop};
use tower_service::Service;

use crate::circuit_breaker::{
    self, Admitted, CircuitBreaker, CircuitBreakerConfig, CircuitHandle, Gate,
};
use crate::command::{Command, ToArg};
use crate::connection::expiry::{Expiry, SharedRelaxation};
use crate::connection::{ConnectOptions, Connector, Liveness};
use crate::dedicated::Dedicated;
use crate::demux::NotificationDemux;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::handoff::{self, Attempt, HandoffConfig, HandoffRetry, Reservation};
use crate::maintenance::{EndpointStatus, Maintenance, MaintenanceConfig};
use crate::metrics::{CommandSpan, Metrics, MetricsHook, Pending};
use crate::relaxed_timeout::{self, Deadline, RelaxedTimeout, Waiting};
use crate::reply::{FromReply, Reply};
use crate::request::{Request, Transaction};

/// The recommended stack as nested layers: what [`Stack::into_service`] gives, to wrap in more
/// layers or take apart.
pub type StackService =
    MetricsHook<CircuitBreaker<RelaxedTimeout<HandoffRetry, Arc<EndpointStatus>>>>;

/// The recommended stack; see the [module docs](self).
///
/// It behaves as [`StackService`], the same layers nested, and shares their state
/// (the circuit, the deadline table, the metrics, the connection) with it. It runs them fused:
/// one reference-counted block of shared state instead of one per layer, each layer's
/// per-clone readiness side by side, and one flat future that does each layer's step when the
/// answer comes. A clone and a call take three shared reference counts rather than eight, and
/// the future is moved and dropped as one piece.
pub struct Stack {
    parts: Arc<Parts>,
    // Each layer's per-clone state, as the nested layers keep it.
    gate: Gate,
    waiting: Waiting,
    reservation: Reservation,
}

/// What every clone of a [`Stack`] and every command on its way share: the state of each
/// layer, which the nested [`StackService`] shares too.
pub(crate) struct Parts {
    metrics: Metrics,
    circuit: Arc<circuit_breaker::Shared>,
    timeout: Arc<relaxed_timeout::Shared<Arc<EndpointStatus>>>,
    // The timeout's relaxation, for the connections that keep the deadlines.
    relaxation: SharedRelaxation,
    handoff: HandoffRetry,
}

impl Clone for Stack {
    fn clone(&self) -> Self {
        Stack {
            parts: self.parts.clone(),
            gate: Gate::new(),
            waiting: Waiting::default(),
            reservation: self.reservation.clone(),
        }
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("handoff", self.handoff())
            .field("circuit", &self.circuit().state())
            .finish()
    }
}

/// Settings of a [`Stack`], with the defaults of the individual layers.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    pub(crate) options: ConnectOptions,
    pub(crate) maintenance: MaintenanceConfig,
    pub(crate) handoff: HandoffConfig,
    pub(crate) circuit: CircuitBreakerConfig,
    pub(crate) timeout: Duration,
}

impl Stack {
    /// Connects to a `redis://` or `rediss://` URL with every default.
    pub async fn connect(url: &str) -> Result<Stack, Error> {
        Stack::builder(ConnectOptions::from_url(url)?)
            .connect()
            .await
    }

    /// A builder for these connection options.
    pub fn builder(options: ConnectOptions) -> StackBuilder {
        StackBuilder {
            options,
            maintenance: MaintenanceConfig::default(),
            handoff: HandoffConfig::default(),
            circuit: CircuitBreakerConfig::default(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Sends `command` through every layer and converts its reply to `T` (any
    /// [`FromReply`] type: `String`, integers, floats, `bool`, `Option<T>`, `Vec<T>`, maps,
    /// tuples, ...). A reply of another shape is an [`Error::Conversion`]; the command ran.
    /// The future owns a clone of the stack, so it can be spawned; `stack.send(command)` and
    /// [`Reply::parse`] do the same with the stack borrowed.
    ///
    /// ```no_run
    /// use std::collections::HashMap;
    /// use redis_handoff::{cmd, Stack};
    ///
    /// # async fn run() -> Result<(), redis_handoff::Error> {
    /// let redis = Stack::connect("redis://127.0.0.1:6379").await?;
    /// let n: i64 = redis.query(cmd!("INCR", "visits")).await?;
    /// let user: HashMap<String, String> = redis.query(cmd!("HGETALL", "user:1")).await?;
    /// let missing: Option<String> = redis.query(cmd!("GET", "no-such-key")).await?;
    /// # Ok(()) }
    /// ```
    pub fn query<T: FromReply>(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        // The future owns a clone (so that it can be spawned); `send` on it takes the
        // borrowed way down when it can.
        let stack = self.clone();
        async move { stack.send(command).await?.parse() }
    }

    /// The maintenance handle: notifications, handoffs, reconnects, as events and state.
    pub fn maintenance(&self) -> &Maintenance {
        self.handoff().maintenance()
    }

    /// The handoff layer: the current endpoint, counters, the stable push stream.
    pub fn handoff(&self) -> &HandoffRetry {
        &self.parts.handoff
    }

    /// The circuit breaker: its state, counters, and manual `force_open` / `reset`.
    pub fn circuit(&self) -> CircuitHandle {
        CircuitHandle {
            shared: self.parts.circuit.clone(),
        }
    }

    /// The metrics: `metrics().snapshot()` for counts and percentiles.
    pub fn metrics(&self) -> &Metrics {
        &self.parts.metrics
    }

    /// The layers nested over `handoff`, sharing this stack's circuit, deadlines and metrics.
    fn nested(&self, handoff: HandoffRetry) -> StackService {
        let parts = &self.parts;
        let timed = RelaxedTimeout::from_shared(handoff, parts.timeout.clone());
        let guarded = CircuitBreaker::from_shared(timed, parts.circuit.clone());
        MetricsHook::new(guarded, parts.metrics.clone())
    }

    /// Opens a connection of one's own under the same layers (the same timeouts, circuit
    /// breaker and metrics as this stack, its own handoffs), for what a shared connection
    /// refuses: `WATCH`/`MULTI`/`EXEC` by hand, `SELECT`, client tracking. Closed when dropped.
    /// See [`Dedicated`].
    pub async fn dedicated(&self) -> Result<Dedicated<StackService>, Error> {
        let own = self.handoff().dedicated().await?.into_inner();
        Ok(Dedicated::new(self.nested(own)))
    }

    /// The optimistic-locking loop on a dedicated connection opened for it:
    /// [`Dedicated::watch`]. For several transactions in a row, keep one
    /// [`dedicated`](Stack::dedicated) connection and call `watch` on it instead.
    pub async fn watch<K, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = K>,
        attempts: u32,
        body: F,
    ) -> Result<Option<Vec<Result<Reply, Error>>>, Error>
    where
        K: ToArg,
        F: FnMut(StackService) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Transaction>, Error>>,
    {
        self.dedicated().await?.watch(keys, attempts, body).await
    }

    /// The same stack as nested layers, sharing this one's state, for taking apart or
    /// wrapping in layers that need the concrete types. Wrapping the `Stack` itself in more
    /// layers needs none of this: it is a [`Service`] as it is.
    pub fn into_service(self) -> StackService {
        self.nested(self.parts.handoff.clone())
    }
}

impl StackBuilder {
    /// The maintenance settings (mode, endpoint type, relaxed timeout, handoff bounds, ...).
    #[must_use]
    pub fn maintenance(mut self, config: MaintenanceConfig) -> Self {
        self.maintenance = config;
        self
    }

    /// Reconnect and resend settings.
    #[must_use]
    pub fn handoff(mut self, config: HandoffConfig) -> Self {
        self.handoff = config;
        self
    }

    /// Circuit breaker settings.
    #[must_use]
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.circuit = config;
        self
    }

    /// The normal per-command timeout (default 1 s); relaxed to the maintenance settings'
    /// relaxed timeout during maintenance. Unless the options set their own
    /// [`Liveness`], it is also the connection's health bound (at least 1 s):
    /// with replies owed and nothing read for that long the connection is probed with `PING`,
    /// and replaced if the probe goes unanswered as long again.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and waits for the first connection.
    pub async fn connect(self) -> Result<Stack, Error> {
        let maintenance = Maintenance::new(self.maintenance.clone());
        let metrics = Metrics::new();
        metrics.attach(&maintenance);
        let mut stack = self.start(maintenance, metrics)?;
        stack.handoff().wait_connected().await?;
        // Its clones start from the connection as it is now, not from nothing.
        let inner = stack.parts.handoff.inner().clone();
        stack.reservation.prime(&inner);
        Ok(stack)
    }

    /// A stack for `endpoint` with these settings, sharing `maintenance` and `metrics` with
    /// others (the nodes of a cluster), which connects in the background: commands sent
    /// before its first connection wait for it. Needs a Tokio runtime.
    pub(crate) fn start_node(
        &self,
        endpoint: Endpoint,
        maintenance: &Maintenance,
        metrics: &Metrics,
    ) -> Result<Stack, Error> {
        let mut builder = self.clone();
        builder.options.endpoint = endpoint;
        builder.start(maintenance.clone(), metrics.clone())
    }

    fn start(self, maintenance: Maintenance, metrics: Metrics) -> Result<Stack, Error> {
        let endpoint = self.options.endpoint.clone();
        let mut options = self.options;
        if options.liveness == Liveness::default() {
            // A dead peer is found in two to three command timeouts, not the kernel's minutes.
            options.liveness.timeout = Some(self.timeout.max(Duration::from_secs(1)));
            options.liveness.relaxed_timeout = maintenance
                .config()
                .relaxed_timeout()
                .max(options.liveness.relaxed_timeout);
        }
        let connector = Connector::new(options)?;
        let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
        let handoff = HandoffRetry::new(demuxed, maintenance.clone(), self.handoff);
        let relaxed = maintenance.config().relaxed_timeout();
        let timeout =
            relaxed_timeout::Shared::new(self.timeout, relaxed, maintenance.status(&endpoint));
        let circuit = circuit_breaker::Shared::new(maintenance, endpoint, self.circuit);
        let relaxation: SharedRelaxation = timeout.relaxation().clone();
        Ok(Stack {
            parts: Arc::new(Parts {
                metrics,
                circuit,
                timeout,
                relaxation,
                handoff,
            }),
            gate: Gate::new(),
            waiting: Waiting::default(),
            reservation: Reservation::default(),
        })
    }
}

/// Commands, pipelines and transactions alike: each layer's step in the nested order
/// (metrics, circuit, timeout, handoff) on the way down, and back up when the answer comes.
impl<R: Request> Service<R> for Stack {
    type Response = R::Response;
    type Error = Error;
    type Future = ResponseFuture<R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let parts = &*self.parts;
        let waiting = &mut self.waiting;
        let reservation = &mut self.reservation;
        self.gate.poll_ready(&parts.circuit, cx, |cx| {
            parts.timeout.poll_room(waiting, cx, |cx| {
                reservation.poll_ready::<R>(parts.handoff.inner(), cx)
            })
        })
    }

    #[inline]
    fn call(&mut self, request: R) -> ResponseFuture<R> {
        let gate = &mut self.gate;
        let reservation = &mut self.reservation;
        ResponseFuture {
            flight: Flight::start(
                self.parts.clone(),
                request,
                |circuit| gate.admit(circuit),
                // Sent straight to a connection, the request's deadline is kept there.
                |inner, request, expiry, relaxation| {
                    reservation.call_expiring(inner, request, expiry, relaxation)
                },
            ),
        }
    }
}

impl Stack {
    /// Sends a request (a command, a pipeline or a transaction) through every layer and
    /// waits for its answer: what `stack.clone().oneshot(request)` does, without the clone.
    ///
    /// While the circuit is closed and the current connection has room (nearly always), the
    /// request goes straight onto that connection with each layer's step done on the way, and
    /// the stack is only borrowed; otherwise it takes the full path of a clone's `poll_ready`
    /// and `call`, which holds it at an open circuit, waits for room or for the next
    /// connection. Either way it is timed, counted and answered alike. The future borrows the
    /// stack; for one that owns it (to spawn, say), use `stack.clone().oneshot(request)`.
    ///
    /// ```no_run
    /// use redis_handoff::{cmd, Pipeline, Stack};
    ///
    /// # async fn run() -> Result<(), redis_handoff::Error> {
    /// let redis = Stack::connect("redis://127.0.0.1:6379").await?;
    /// let reply = redis.send(cmd!("INCR", "visits")).await?;
    /// let replies = redis
    ///     .send(Pipeline::new().cmd(cmd!("GET", "a")).cmd(cmd!("GET", "b")))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn send<R: Request>(&self, request: R) -> Result<R::Response, Error> {
        match self.send_borrowed(request) {
            Ok(flight) => flight.await,
            Err(request) => tower::ServiceExt::oneshot(self.clone(), request).await,
        }
    }

    /// The borrowed way down for [`Stack::send`], if the request can go straight to the
    /// current connection; the request back otherwise.
    #[inline]
    fn send_borrowed<R: Request>(&self, request: R) -> Result<Flight<R, &Parts>, R> {
        let parts = &*self.parts;
        let inner = parts.handoff.inner();
        // Both are looked at before anything is counted or started: a `None` changes nothing.
        let Some(admitted) = Gate::admit_closed(&parts.circuit) else {
            return Err(request);
        };
        let Some(slot) = self.reservation.slot_for(inner, &request) else {
            return Err(request);
        };
        Ok(Flight::start(
            parts,
            request,
            |_| Ok(admitted),
            |_, request, expiry, relaxation| slot.send(request, expiry, relaxation),
        ))
    }
}

/// The answer to a request sent through a [`Stack`]: the connection's reply, or the error a
/// layer gave (a timeout, an open circuit, a lost connection), counted by the circuit and
/// recorded in the metrics as the nested layers would.
#[pin_project]
pub struct ResponseFuture<R: Request> {
    #[pin]
    flight: Flight<R, Arc<Parts>>,
}

/// A request on its way back up through the fused layers. `P` is how it reaches the stack's
/// shared parts: owned (an `Arc`) by the `Service`'s future, borrowed by [`Stack::send`]'s,
/// which so takes and gives back no reference count.
#[pin_project(PinnedDrop)]
struct Flight<R: Request, P: Deref<Target = Parts>> {
    #[pin]
    kind: Kind<R>,
    // Taken when the answer is recorded.
    pending: Option<Pending>,
    span: CommandSpan,
    parts: P,
}

#[pin_project(project = KindProj)]
enum Kind<R: Request> {
    /// Let through by the circuit and sent (or on its way) through the handoff layer.
    Called {
        #[pin]
        attempt: Attempt<R>,
        // Taken when the outcome is counted.
        admitted: Option<Admitted>,
        deadline: Deadline,
    },
    /// Not let through by the circuit (boxed: an error is larger than the rest of the future).
    Rejected { error: Option<Box<Error>> },
}

impl<R: Request, P: Deref<Target = Parts>> Flight<R, P> {
    /// Both ways down ([`Stack`]'s `call` and [`Stack::send`]): counts the request in the
    /// metrics, lets it through the circuit with `admit` (a refusal is answered by the
    /// future), starts its deadline and sends it with `send` (given the handoff layer's
    /// shared state), which hands the deadline to the connection where the request goes
    /// straight to one.
    #[inline(always)]
    fn start(
        parts: P,
        request: R,
        admit: impl FnOnce(&Arc<circuit_breaker::Shared>) -> Result<Admitted, Error>,
        send: impl FnOnce(
            &Arc<handoff::Inner>,
            R,
            Option<Expiry>,
            Option<&SharedRelaxation>,
        ) -> Attempt<R>,
    ) -> Self {
        let (pending, span) = parts.metrics.begin(&request);
        let kind = {
            let _entered = span.enter();
            match admit(&parts.circuit) {
                Ok(admitted) => {
                    let deadline = parts.timeout.start(request.blocking());
                    let attempt = send(
                        parts.handoff.inner(),
                        request,
                        deadline.expiry(),
                        Some(&parts.relaxation),
                    );
                    Kind::Called {
                        attempt,
                        admitted: Some(admitted),
                        deadline,
                    }
                }
                Err(error) => Kind::Rejected {
                    error: Some(Box::new(error)),
                },
            }
        };
        Flight {
            kind,
            pending: Some(pending),
            span,
            parts,
        }
    }
}

impl<R: Request> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.flight.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("pending", &self.flight.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Request> Future for ResponseFuture<R> {
    type Output = Result<R::Response, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().flight.poll(cx)
    }
}

impl<R: Request, P: Deref<Target = Parts>> Future for Flight<R, P> {
    type Output = Result<R::Response, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let parts = &**this.parts;
        // The answer stays where the attempt wrote it: the steps look at it by reference,
        // and it is moved once, out to the caller (a reply is 104 bytes), straight from the
        // arm that has it.
        match this.kind.project() {
            KindProj::Called {
                mut attempt,
                admitted,
                deadline,
            } => {
                let inner = parts.handoff.inner();
                let mut poll = if attempt.is_sent() {
                    attempt.as_mut().poll(inner, cx)
                } else {
                    Poll::Pending
                };
                match &poll {
                    // The deadline's slot goes back now, not when the future is dropped.
                    Poll::Ready(_) => deadline.release(&parts.timeout),
                    // On a connection, which keeps the deadline and answers with the timeout.
                    Poll::Pending if attempt.is_sent() => return Poll::Pending,
                    // Waiting for a connection, or sending again: the deadline table's.
                    Poll::Pending => {
                        poll = poll_unsent(attempt, deadline, admitted, parts, cx);
                        if poll.is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
                if let Poll::Ready(out) = &poll {
                    if let Some(admitted) = admitted.take() {
                        admitted.record(&parts.circuit, out);
                    }
                    if let Some(pending) = this.pending.take() {
                        pending.finish(out, this.span);
                    }
                }
                poll
            }
            KindProj::Rejected { error } => {
                let out = Err(error.take().map_or_else(
                    || Error::config("a stack's response was polled after it completed"),
                    |e| *e,
                ));
                if let Some(pending) = this.pending.take() {
                    finish_rejected(pending, &out, this.span);
                }
                Poll::Ready(out)
            }
        }
    }
}

/// A request not on a connection (waiting for one, or between tries): its deadline is looked
/// at before it is polled, so that one whose time is up is not tried again, and once more
/// after. Its answer at the deadline is what its progress says of it (never written:
/// `NotSent`, or the refusal it was waiting out), which the circuit counts as the timeout it
/// is. Out of line: the common path is a request on a connection.
#[cold]
#[inline(never)]
fn poll_unsent<R: Request>(
    mut attempt: Pin<&mut Attempt<R>>,
    deadline: &mut Deadline,
    admitted: &mut Option<Admitted>,
    parts: &Parts,
    cx: &mut Context<'_>,
) -> Poll<Result<R::Response, Error>> {
    let inner = parts.handoff.inner();
    let timeout = match deadline.poll_expired(&parts.timeout, cx) {
        Poll::Ready(timeout) => timeout,
        Poll::Pending => {
            let poll = attempt.as_mut().poll(inner, cx);
            match &poll {
                Poll::Ready(_) => {
                    deadline.release(&parts.timeout);
                    return poll;
                }
                // Still not on a connection (a request never goes back to one).
                Poll::Pending => match deadline.poll_expired(&parts.timeout, cx) {
                    Poll::Ready(timeout) => timeout,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    };
    let answer = attempt.timed_out(timeout.clone(), inner);
    if let Some(admitted) = admitted.take() {
        admitted.record(&parts.circuit, &Err::<(), Error>(timeout));
    }
    Poll::Ready(Err(answer))
}

/// Records a command the circuit turned away: out of line, so that the common path keeps
/// the one recording step inlined.
#[cold]
#[inline(never)]
fn finish_rejected<T>(pending: Pending, out: &Result<T, Error>, span: &CommandSpan) {
    pending.finish(out, span);
}

#[pinned_drop]
impl<R: Request, P: Deref<Target = Parts>> PinnedDrop for Flight<R, P> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let KindProj::Called { deadline, .. } = this.kind.project() {
            deadline.release(&this.parts.timeout);
        }
        if let Some(pending) = this.pending.take() {
            pending.cancel(this.span);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use crate::command::Command;

    /// A clone of the stack and its future are moved with every command: what they weigh is
    /// part of what a command costs. A clone and its command fit in 128 bytes, the size up
    /// to which a move is a few stores rather than a `memcpy` call.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_clone_with_its_command_and_the_future_stay_small() {
        assert!(
            size_of::<super::Stack>() <= 64,
            "{}",
            size_of::<super::Stack>()
        );
        let oneshot = size_of::<tower::util::Oneshot<super::Stack, Command>>();
        assert!(oneshot <= 128, "{oneshot}");
        let future = size_of::<super::ResponseFuture<Command>>();
        assert!(future <= 112, "{future}");
        assert!(size_of::<Option<crate::metrics::Pending>>() <= 24);
        assert!(size_of::<crate::relaxed_timeout::Deadline>() <= 32);
        assert!(size_of::<Option<crate::connection::expiry::Expiry>>() <= 24);
    }
}
