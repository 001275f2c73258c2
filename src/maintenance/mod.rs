//! The maintenance model: notifications, Azure events, configuration, and the shared
//! [`Maintenance`] handle. No tower here; the layers build on it.
//!
//! Managed Redis announces maintenance before it happens, in two ways:
//!
//! - **Smart client handoff** notifications ([`Notification`]): RESP3 push frames (`MOVING`,
//!   `MIGRATING`, `MIGRATED`, `FAILING_OVER`, `FAILED_OVER`, `SMIGRATING`, `SMIGRATED`) sent by
//!   Redis Cloud and Redis Software to clients that opted in with
//!   `CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type <type>` ([`MaintenanceMode`],
//!   [`EndpointType`]).
//! - **Azure Cache for Redis** events ([`AzureEvent`]): Pub/Sub messages on `AzureRedisEvents`
//!   ([`AzureEvents`]).
//!
//! The [`NotificationDemux`](crate::demux::NotificationDemux) layer parses both from a
//! connection's pushes and hands them to the [`Maintenance`] handle, which
//!
//! 1. runs the [`NotificationHook`]s (a pre-hook may change a notice or skip it),
//! 2. suppresses repeats: a notification is identified by its name and sequence number, an Azure
//!    event by its content, and remembered within a bounded memory. A `MOVING` is an instruction
//!    to each connection, so it is a repeat only on the same connection;
//! 3. updates the [`EndpointStatus`] of the configured endpoint: a start relaxes timeouts until
//!    its end, or until the relaxation backstop if the end is lost; a `MOVING` relaxes them
//!    until its grace period plus the post-handoff relaxed duration have passed (or the
//!    post-handoff duration after [`Maintenance::handoff_switched`]);
//! 4. publishes a [`MaintenanceEvent`] to every subscriber.
//!
//! State is kept per **configured** endpoint, the address a client stack was built for: it names
//! the logical database the stack serves, and after a handoff the new node serves the same
//! database. Each event also says which connection it came from ([`MaintenanceEvent::source`] and
//! [`MaintenanceEvent::client_id`]), so a layer can pick out its own connection's `MOVING`.
//!
//! Configuration lives in one place, [`MaintenanceConfig`], held by the handle; every layer that
//! shares the handle follows it.
//!
//! ```
//! use redis_handoff::maintenance::{EventKind, Maintenance, MaintenanceConfig, PushOrigin};
//! use redis_handoff::maintenance::Notification;
//! use redis_handoff::Endpoint;
//! use std::time::{Duration, Instant};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let maintenance = Maintenance::new(MaintenanceConfig::default());
//! let mut events = maintenance.subscribe();
//!
//! let endpoint = Endpoint::new("10.0.0.1", 12000);
//! let moving = Notification::Moving {
//!     seq: 17,
//!     time: Duration::from_secs(15),
//!     endpoint: Some(Endpoint::new("10.0.0.2", 12000)),
//! };
//! maintenance.process_push(&PushOrigin::new(endpoint.clone()), &moving.to_push());
//!
//! let status = maintenance.status(&endpoint);
//! assert!(status.is_relaxed(Instant::now()));
//! assert_eq!(status.moving().unwrap().endpoint, Some(Endpoint::new("10.0.0.2", 12000)));
//! let event = events.recv().await.unwrap();
//! assert!(matches!(event.kind, EventKind::Notification(Notification::Moving { seq: 17, .. })));
//! # }
//! ```

mod azure;
mod config;
mod counters;
mod dedup;
mod endpoint_type;
mod events;
mod handle;
mod hook;
mod limiter;
mod notification;
mod status;
#[cfg(test)]
mod tests;

pub(crate) use azure::payload as azure_payload;
pub use azure::{format_utc, AzureEvent, AzureEventKind, ParseAzureEventError, AZURE_CHANNEL};
pub use config::{AzureEvents, MaintenanceConfig, MaintenanceConfigBuilder, MaintenanceMode};
pub use counters::NotificationCounts;
pub use endpoint_type::{EndpointType, RESOLVE_TIMEOUT};
pub use events::{EventKind, MaintenanceEvent, MaintenanceEvents, PushOrigin};
pub use handle::Maintenance;
pub(crate) use handle::{Observer, WeakMaintenance};
pub use hook::PushOutcome;
pub use hook::{
    post_hook, HookAction, HookContext, HookOutcome, Notice, NotificationHook, PostHook,
};
pub use limiter::HandoffLimiter;
pub(crate) use notification::slots_to_string;
pub use notification::{
    Notification, NotificationKind, ParseNotificationError, SlotMove, SlotRange, SLOTS,
};
pub use status::{EndpointStatus, MovingTarget, NotificationSupport, RelaxationEnd};

/// Whether a push frame is maintenance: a notification (`MOVING`, `MIGRATING`, ...) or a
/// message on the Azure events channel. Such frames are never dropped on the way to the demux.
pub(crate) fn is_maintenance_frame(frame: &redis_protocol::resp3::types::BytesFrame) -> bool {
    use redis_protocol::resp3::types::BytesFrame;
    let BytesFrame::Push { data, .. } = frame else {
        return false;
    };
    let Some(name) = data.first().and_then(crate::frame::text) else {
        return false;
    };
    if NotificationKind::from_name(name).is_some() {
        return true;
    }
    name.eq_ignore_ascii_case(b"message")
        && data
            .get(1)
            .and_then(crate::frame::text)
            .is_some_and(|channel| channel.as_ref() == AZURE_CHANNEL.as_bytes())
}
