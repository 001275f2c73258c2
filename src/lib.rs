//! # redis-handoff
//!
//! Tower layers that keep a Redis client working while the server is under maintenance.
//!
//! Managed Redis (Redis Cloud, Redis Software, Azure Cache for Redis) announces maintenance
//! before it happens. This crate listens, relaxes timeouts while the server is slow, and moves
//! traffic to the new endpoint before the old one goes away, so the application sees no errors.
//!
//! Everything stands on [`Connection`], a multiplexed RESP3 connection that is a
//! [`tower::Service`] from [`Command`] to [`Reply`].
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
pub mod command;
pub mod connection;
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
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod stack;

pub use command::{Args, Command, ToArg};
pub use connection::{ConnectOptions, Connection, Connector, Limits, TlsOptions};
pub use demux::{NotificationDemux, NotificationDemuxLayer};
pub use endpoint::{ConnectionId, Endpoint};
pub use error::{Error, ErrorClass, Execution, ServerError};
pub use maintenance::{
    AzureEvent, EndpointStatus, EndpointType, EventKind, Maintenance, MaintenanceConfig,
    MaintenanceEvent, MaintenanceMode, Notification, NotificationHook,
};
pub use metrics::{Metrics, MetricsHook, MetricsHookLayer, MetricsSnapshot};
pub use reply::Reply;
pub use stack::{Stack, StackBuilder};
