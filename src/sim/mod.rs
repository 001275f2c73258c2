//! The maintenance simulator: a RESP proxy that plays managed-Redis maintenance on command.
//!
//! Redis Open Source sends no maintenance notifications, so everything this crate does about
//! them is tested through this simulator, and applications can rehearse maintenance with it.
//! It listens on several local ports ("nodes"); each client connection gets its own upstream
//! connection to a real redis-server (nodes may share one, so the data stays the same when a
//! client moves) or to the embedded in-memory store ([`Backend::Memory`]) for demos and drills.
//!
//! On command it plays what Redis Software and Azure do:
//!
//! | scenario | what clients see |
//! |---|---|
//! | [`Simulator::migrate`] | `MIGRATING`, added latency for the duration, `MIGRATED` |
//! | [`Simulator::failover`] | `FAILING_OVER`, commands held for the duration, `FAILED_OVER` |
//! | [`Simulator::moving`] | `MOVING` with the new node's address in the form each client asked for, then after the grace period every connection closed and new ones refused |
//! | [`Simulator::moving_null`] | `MOVING` with a null endpoint; the node comes back at the same address after an outage |
//! | [`Simulator::azure`] | an Azure event on `AzureRedisEvents` to subscribed clients |
//! | [`Simulator::migrate_slots`] (cluster mode) | `SMIGRATING`, the slots moved for real between the cluster's nodes, `SMIGRATED` with `[source, destination, slots]` triples |
//! | faults | [`refuse`](Simulator::refuse), [`blackhole`](Simulator::blackhole), [`blackhole_connections`](Simulator::blackhole_connections), [`reset_all`](Simulator::reset_all), [`latency`](Simulator::latency), [`trickle`](Simulator::trickle), [`garbage`](Simulator::garbage), [`send_raw`](Simulator::send_raw); [`restore`](Simulator::restore) undoes them |
//!
//! A client gets SCH notifications only after it opted in with
//! `CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type <type>` (answered by the simulator), as on
//! Redis Software. Frames are injected only between two whole replies. Every notification sent
//! is recorded ([`Simulator::notifications`]) so tests can assert on what was sent and when.
//!
//! In cluster mode ([`SimulatorBuilder::cluster`]) each node fronts a cluster node of its own,
//! where otherwise all nodes forward to one backend; the topology the cluster sends (`CLUSTER
//! SLOTS`, `SHARDS`, `NODES`, `-MOVED`, `-ASK`) reaches clients with the simulator's addresses,
//! so a cluster client stays behind the simulator. Nodes can be added
//! ([`Simulator::add_node_to`]) and removed at run time, as during a rolling upgrade. See
//! [`Slots`] and [`MigrateSlots`] for the slot migration.
//!
//! The HTTP admin API ([`Simulator::serve_http`], module [`http`]) is a drop-in for Redis's
//! test proxy (`cae-resp-proxy`), plus routes for the scenarios above under `/sim/`.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_handoff::sim::{Backend, Simulator};
//!
//! # async fn run() -> Result<(), redis_handoff::sim::SimError> {
//! let sim = Simulator::builder()
//!     .backend(Backend::redis("127.0.0.1:6379"))
//!     .nodes(2)
//!     .start()
//!     .await?;
//! println!("connect to {}", sim.node(0).url());
//! sim.migrate(0, Duration::from_secs(2)).await?;
//! let moving = sim.moving(0, 1, Duration::from_secs(1)).await?;
//! moving.done().await; // node 0 has closed its connections and refuses new ones
//! sim.restore(0)?;
//! for n in sim.notifications() {
//!     println!("{} seq {:?} to {}", n.name, n.seq, n.connection_id);
//! }
//! # Ok(()) }
//! ```

mod azure;
mod builder;
mod cluster;
mod error;
mod fault;
mod habits;
pub mod http;
mod intercept;
mod local_cluster;
mod notification;
mod proxy;
mod registry;
mod resp;
mod scenario;
mod simulator;
mod store;
mod topology;
mod upstream;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The moving-endpoint-type a client asks for: the form of the address its `MOVING` carries.
pub use crate::maintenance::EndpointType;
/// The Pub/Sub channel Azure publishes maintenance events on.
pub use crate::maintenance::AZURE_CHANNEL;
pub use azure::{AzureEvent, AzureEventKind};
pub use builder::SimulatorBuilder;
pub use cluster::{MigrateSlots, SlotMigration, SlotMove, Slots, SLOT_COUNT};
pub use error::SimError;
pub use habits::{Habits, ShardIds};
pub use http::HttpServer;
pub use local_cluster::LocalCluster;
pub use notification::SentNotification;
pub use scenario::{Moving, Scope};
pub use simulator::{ConnectionInfo, SimNode, Simulator};
pub use upstream::Backend;

pub(crate) use registry::Core;

/// Locks a mutex, also when a panic elsewhere poisoned it: the simulator's state stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
