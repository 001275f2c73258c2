//! [`MetricsHook`]: per-command latency and outcomes, and the maintenance side of a client
//! (notifications, handoffs, relaxed timeouts, the circuit, connections), in one [`Metrics`]
//! handle.
//!
//! # Commands
//! The layer records, for every command that passes through it:
//!
//! - its **latency**, from the call to the answer, overall and per command name. The first 64
//!   distinct names (case-blind) get a distribution each; later ones share `"other"`.
//! - its **outcome**, one of: ok, server error ([`ErrorClass::Server`]), timeout and relaxed
//!   timeout ([`Error::Timeout`] with `relaxed` false or true), circuit open
//!   ([`ErrorClass::CircuitOpen`]), connection lost (any [`ErrorClass::Connection`] error:
//!   `ConnectionLost`, `NotSent`, connect failures), other error, or cancelled (the future was
//!   dropped before the answer).
//! - **retried**: a retry happens inside HandoffRetry, below this layer, where the command is
//!   sent again on the next connection; the layer sees one command with one outcome. The stacks
//!   publish their resend counts on the [`Maintenance`](crate::Maintenance) handle
//!   ([`Maintenance::retried`](crate::Maintenance::retried)), read at each snapshot from the
//!   handles given to [`Metrics::attach`] or [`Metrics::follow`]. Metrics imports no other
//!   layer: everything it counts comes through the handle.
//!
//! Recording takes no lock, allocates nothing once warm, and shares no written memory between
//! threads:
//!
//! - the command's name is found in a fixed table filled by compare-and-swap;
//! - its time is read from the CPU's time-stamp counter (through `quanta`, which falls back to
//!   the OS clock where the counter is unreliable), at a fraction of the cost of
//!   `std::time::Instant`;
//! - it goes into log-linear buckets (32 per power of two, so a bucket is at most 1/32 of its
//!   value wide) that belong to the thread completing the command: each thread finds its own
//!   counters through a thread-local and is their only writer, so a success is one plain
//!   increment, with no locked instruction and no cache line bouncing between cores; a failure
//!   is two.
//!
//! The first time a thread records into a handle it registers its counters (one short lock),
//! and the first time it records a name it allocates that name's buckets (about 9 KiB). A
//! [`snapshot`](Metrics::snapshot) merges every thread's counters into `hdrhistogram`
//! histograms. Each counter has a single writer, so no update is lost; a snapshot taken after
//! the commands finished counts each exactly once. `benches/metrics_hook.rs` measures the cost
//! per call.
//!
//! Each command also runs in a `debug`-level span `redis.command` with fields `command` (its
//! name) and `outcome`; with debug off, the span costs a level check.
//!
//! # Maintenance
//! [`Metrics::attach`] connects the handle to a [`Maintenance`](crate::Maintenance) handle:
//!
//! - as a [`NotificationHook`](crate::NotificationHook) (the trait your own hooks implement),
//!   whose post-hook counts every notice by type and outcome (applied, repeat, skipped) and
//!   records its processing time, from receipt to the post-hooks;
//! - as an observer of its events, called as each event is emitted (no task, no buffer, so
//!   none is missed), which counts malformed notices (errors), handoffs started, succeeded and failed and their
//!   durations, periods and time of relaxed timeouts, circuit transitions, and connections
//!   opened and closed, and logs each event at `info`.
//!
//! A connection pool reports its handoff queue depth and its busy workers with
//! [`Metrics::set_handoff_queue`] and [`Metrics::set_handoff_workers`].
//!
//! # Exporting
//! With the `metrics` feature, `Metrics::export` hands what was recorded since the last export
//! to the [`metrics`](https://docs.rs/metrics) facade, under the names other Redis clients use
//! with OpenTelemetry (`db.client.operation.duration`, `redis.client.maintenance.notifications`,
//! `redis.client.connection.handoff`, `redis.client.connection.relaxed_timeout`, ...), so a
//! Prometheus or OpenTelemetry exporter picks them up as they are; `Metrics::spawn_exporter`
//! does it on an interval. The `export` module lists the names. The command path never
//! touches the facade.
//!
//! # Example
//! ```
//! use redis_handoff::metrics::Metrics;
//! use redis_handoff::{cmd, Command, Error, Reply, ServerError};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metrics = Metrics::new();
//! let svc = ServiceBuilder::new()
//!     .layer(metrics.layer())
//!     .service(service_fn(|c: Command| async move {
//!         if c.is("GET") {
//!             Ok(Reply::from(redis_handoff::frame::BytesFrame::Null))
//!         } else {
//!             Err(Error::Server(ServerError::new("ERR unknown command")))
//!         }
//!     }));
//! for _ in 0..3 {
//!     svc.clone().oneshot(cmd!("GET", "k")).await.unwrap();
//! }
//! svc.oneshot(cmd!("NOPE")).await.unwrap_err();
//!
//! let snapshot = metrics.snapshot();
//! assert_eq!(snapshot.outcomes.ok, 3);
//! assert_eq!(snapshot.outcomes.server_error, 1);
//! assert_eq!(snapshot.command("get").unwrap().count, 3);
//! println!("{snapshot}");
//! # }
//! ```
//!
//! With the maintenance side and the rest of a stack:
//! ```no_run
//! use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
//! use redis_handoff::metrics::Metrics;
//! use redis_handoff::{cmd, ConnectOptions, Connector, Maintenance, NotificationDemux};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let maintenance = Maintenance::default();
//! let metrics = Metrics::new();
//! metrics.attach(&maintenance);
//! let connector = Connector::new(ConnectOptions::from_url("redis://127.0.0.1:6379")?)?;
//! let demuxed = NotificationDemux::over_connector(connector, maintenance.clone());
//! let stack = HandoffRetry::connect(demuxed, maintenance, HandoffConfig::default()).await?;
//! let redis = ServiceBuilder::new().layer(metrics.layer()).service(stack);
//! redis.oneshot(cmd!("PING")).await?;
//! println!("{}", metrics.snapshot());
//! # Ok(()) }
//! ```
//!
//! [`ErrorClass::Server`]: crate::ErrorClass::Server
//! [`ErrorClass::CircuitOpen`]: crate::ErrorClass::CircuitOpen
//! [`ErrorClass::Connection`]: crate::ErrorClass::Connection
//! [`Error::Timeout`]: crate::Error::Timeout

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod export;
mod future;
mod layer;
mod recorder;
mod snapshot;
mod store;

use std::task::{Context, Poll};

use tower_service::Service;

pub use future::ResponseFuture;
pub(crate) use future::{CommandSpan, Pending};
pub use layer::MetricsHookLayer;
pub use snapshot::{
    CommandLatency, Latency, MaintenanceStats, MetricsSnapshot, NotificationCount, Outcomes,
    PoolStats,
};
pub use store::Metrics;

use crate::error::Error;
use crate::request::Request;

/// [`Service`] that records each command's latency and outcome into a [`Metrics`] handle; see
/// the [module docs](self).
#[derive(Debug, Clone)]
pub struct MetricsHook<S> {
    inner: S,
    metrics: Metrics,
}

// ===== impl MetricsHook =====

impl<S> MetricsHook<S> {
    /// Wraps `inner`, recording into `metrics`.
    pub const fn new(inner: S, metrics: Metrics) -> Self {
        MetricsHook { inner, metrics }
    }

    /// The handle commands are recorded into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

impl<S, R> Service<R> for MetricsHook<S>
where
    R: Request,
    S: Service<R, Error = Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, command: R) -> Self::Future {
        let (pending, span) = self.metrics.begin(&command);
        let response = {
            let _entered = span.enter();
            self.inner.call(command)
        };
        ResponseFuture::new(response, pending, span)
    }
}

impl Metrics {
    /// What recording a request takes when it is sent: its name's slot, the clock, its span.
    /// Shared by [`MetricsHook`] and the fused [`Stack`](crate::Stack).
    #[inline]
    pub(crate) fn begin<R: Request>(&self, command: &R) -> (Pending, CommandSpan) {
        let commands = &self.inner.commands;
        let name = match command.as_command() {
            Some(c) => c.name_bytes(),
            None => command.name().as_bytes(),
        };
        let slot = commands.names.slot(name);
        let span = match command.as_command() {
            Some(c) => tracing::debug_span!(
                "redis.command",
                command = c.name(),
                outcome = tracing::field::Empty
            ),
            // A pipeline or transaction: one entry, under its own name, with its size.
            None => tracing::debug_span!(
                "redis.command",
                command = command.name(),
                size = command.len(),
                outcome = tracing::field::Empty
            ),
        };
        let pending = Pending {
            recorder: commands.key(),
            started: recorder::clock().raw(),
            slot: slot as u32,
        };
        (pending, CommandSpan::new(span))
    }
}
