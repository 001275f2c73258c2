//! # redis-handoff
//!
//! Tower layers that keep a Redis client working while the server is under maintenance.
//!
//! Managed Redis (Redis Cloud, Redis Software, Azure Cache for Redis) announces maintenance
//! before it happens. This crate listens, relaxes timeouts while the server is slow, and moves
//! traffic to the new endpoint before the old one goes away, so the application sees no errors.
//!
//! Everything stands on [`Connection`], a multiplexed RESP3 connection that is a
//! [`tower::Service`] for every [`Request`]: a [`Command`] (answered with a [`Reply`]), a
//! [`Pipeline`] or a [`Transaction`]. Commands that would change a shared connection for every
//! caller (`MULTI`, `SELECT`, `CLIENT REPLY`, ...) are refused; [`Dedicated`] connections take
//! them ([`dedicated`] module).
//!
//! ```no_run
//! use redis_handoff::{cmd, Connection};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), redis_handoff::Error> {
//! let conn = Connection::connect("redis://127.0.0.1:6379").await?;
//! let n = conn.clone().oneshot(cmd!("INCR", "visits")).await?;
//! println!("visit number {}", n.as_i64().unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! [`Stack::connect`] assembles the recommended layers in one call; each layer is also a
//! [`tower::Layer`] of its own, to put in a `ServiceBuilder` with yours in between.
//! [`Cluster`] is the same service over a Redis Cluster: one stack per primary, requests routed
//! by slot, redirects and `SMIGRATED` followed ([`cluster`] module).
//!
//! [`Reply::parse`] converts a reply to the common Rust types (strings, bytes, integers,
//! floats, booleans, `Option`, `Vec`, maps, sets, tuples: [`FromReply`]), and
//! [`Stack::query`] sends a command and converts its reply in one call, with no feature needed.
//! With the `redis-rs` feature, `compat::redis_rs` makes a [`Stack`] or a [`Pool`] a
//! redis-rs connection, so code written against redis-rs runs through the layers unchanged.
//!
//! # The path of a command
//!
//! Each hop is one module; the layers never import each other.
//!
//! ```text
//!  your code ── Command ──▶ metrics          MetricsHook: latency, outcome
//!                           circuit_breaker  CircuitBreaker: fail fast while the endpoint is down
//!                           relaxed_timeout  RelaxedTimeout: deadline, relaxed in maintenance
//!                           handoff          HandoffRetry: the current connection; resends
//!                           demux            NotificationDemux: commands pass straight through
//!                           connection       Connection: queue (intake) -> I/O task (io) ->
//!                                            socket; replies matched in order (codec)
//!  your code ◀── Reply or Error ── back up the same way
//! ```
//!
//! Failures are classified once, in [`error`]: [`Error::execution`] says whether the command
//! ran (HandoffRetry's [`ResendPolicy`] decides on it), [`Error::class`] what kind of failure
//! it was (what the circuit counts and metrics label).
//!
//! # The path of a `MOVING`
//!
//! ```text
//!  socket ─▶ connection::io     a push frame, not a reply: to the connection's push hub
//!         ─▶ demux::pipeline    parsed (maintenance::notification), hooks run
//!                               (maintenance::hook), de-duplicated (maintenance::dedup)
//!         ─▶ maintenance::status  the endpoint's relaxation window opens: RelaxedTimeout
//!                               reads it on every command
//!         ─▶ maintenance::events  a MaintenanceEvent, naming the connection by ConnectionId
//!         ─▶ handoff::control   the stack whose connection heard it dials the target
//!                               (connection::make), switches, drains the old connection;
//!                               circuit_breaker holds commands during the switch
//!         ─▶ metrics            counts the notice, the handoff and its duration
//! ```
//!
//! The layers meet only through the [`Maintenance`] handle ([`maintenance`]): the demux writes
//! into it, the others read its [`EndpointStatus`] or subscribe to its events, and publish
//! what observers need (resends, pool gauges) back into it.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod circuit_breaker;
mod clock;
pub mod cluster;
pub mod command;
pub mod compat;
pub mod connection;
pub mod dedicated;
pub mod demux;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod drill;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod handoff;
pub mod maintenance;
pub mod metrics;
pub mod pool;
pub mod relaxed_timeout;
pub mod reply;
pub mod request;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod stack;

// The request, the response, the error and the address.
pub use command::{Args, Command, StateCommand, ToArg};
pub use endpoint::{ConnectionId, Endpoint};
pub use error::{ConversionError, Error, ErrorClass, Execution, ServerError};
pub use reply::{FromReply, Reply};
pub use request::{Pipeline, Request, Transaction};

// The connection at the bottom of every stack, and how stacks open new ones.
pub use connection::{
    ClientTracking, ConnectOptions, Connection, Connector, Limits, Liveness, MakeConnection,
    TlsOptions,
};

// The shared maintenance model the layers meet through.
pub use maintenance::{
    AzureEvent, EndpointStatus, EndpointType, EventKind, Maintenance, MaintenanceConfig,
    MaintenanceEvent, MaintenanceMode, Notification, NotificationHook,
};

// Every layer and its `Layer`, bottom to top, and their configuration.
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
pub use demux::{NotificationDemux, NotificationDemuxLayer};
pub use handoff::{HandoffConfig, HandoffRetry, HandoffRetryLayer, Resend, ResendPolicy};
pub use metrics::{Metrics, MetricsHook, MetricsHookLayer, MetricsSnapshot};
pub use relaxed_timeout::{RelaxedTimeout, RelaxedTimeoutLayer};

// Assembled: the recommended stack in one call, and a pool of them.
pub use dedicated::Dedicated;
pub use pool::Pool;
pub use stack::{Stack, StackBuilder};

// A Redis Cluster: one stack per primary, routed by slot.
pub use cluster::{Cluster, ClusterBuilder, ClusterEvent, ClusterStats, ReadFrom, Topology};
