//! [`Cluster`]: a Redis Cluster client made of one handoff-aware [`Stack`] per primary.
//!
//! A cluster spreads its keys over 16384 hash slots ([`key_slot`]), each served by one
//! primary. [`Cluster`] keeps a map of who serves what ([`Topology`]) and routes every
//! request to the node that serves its keys:
//!
//! ```text
//!  your code ── Command / Pipeline / Transaction ──▶ Cluster
//!      route        the slot of the keys (route), CROSSSLOT refused before sending
//!      slot map     an Arc snapshot, swapped atomically: one array read per command
//!      node         the primary's Stack: metrics, circuit breaker, relaxed timeout,
//!                   handoff (MOVING, reconnects, safe resends), demux, connection
//!      refusals     MOVED / ASK / TRYAGAIN / CLUSTERDOWN followed (redirect), bounded
//!      refresh      CLUSTER SHARDS (or SLOTS), at most one at a time (refresh)
//! ```
//!
//! - **Routing** ([`route`](self#routing)): a command goes to the primary of its keys' slot;
//!   a command whose keys span slots is refused with [`Error::CrossSlot`] before anything is
//!   sent; keyless commands go to any primary, and those that change every node (`FLUSHALL`,
//!   `SCRIPT LOAD`, `CONFIG SET`, ...) to every primary with one combined reply. A
//!   [`Pipeline`](crate::Pipeline) is split by node, the parts are sent at once, and the
//!   results come back in the caller's order (commands on one node keep their order on it;
//!   across nodes there is no order). A [`Transaction`](crate::Transaction) must keep its
//!   keys in one slot.
//! - **Topology**: read from any seed at start, then refreshed on `MOVED` (lazily: the slot
//!   the `MOVED` names is updated at once), on `SMIGRATED`, when a node cannot be reached, and
//!   every [`refresh_period`](ClusterBuilder::refresh_period). Refreshes are collapsed: one
//!   at a time however many ask, bounded by [`refresh_timeout`](ClusterBuilder::refresh_timeout).
//!   New primaries are dialled before the map sends them traffic (make before break);
//!   primaries that left the map are dropped from it, and their connections close once the
//!   commands already on them are answered.
//! - **The cluster protocol** ([`redirect`](self#the-cluster-protocol)): `MOVED` updates the
//!   map and resends to the new owner; `ASK` sends `ASKING` and the command to the target, back
//!   to back on its shared connection, once; `TRYAGAIN` and `CLUSTERDOWN` wait and resend
//!   within the command's [`retry_budget`](ClusterBuilder::retry_budget). A command is sent
//!   again only when the server refused it or it never left: never after it may have run
//!   (the node's stack has already applied its [`ResendPolicy`](crate::ResendPolicy)).
//! - **Maintenance**: every node's stack shares one [`Maintenance`] handle and one
//!   [`Metrics`]; each node's state is kept under its own endpoint, so a `SMIGRATING` relaxes
//!   the timeouts of the node that sent it (until its `SMIGRATED` or the backstop), and
//!   `MOVING`, `MIGRATING` and `FAILING_OVER` act on the node that sent them exactly as on a
//!   single endpoint. A `SMIGRATED` moves its slots in the map at once, before a redirect can
//!   reach a caller, then a lazy refresh confirms it; each one is applied once, whichever
//!   nodes broadcast it (de-duplicated by sequence number in bounded memory).
//!   [`Cluster::events`] says what the cluster did, naming nodes and slots.
//! - **Failover**: a lost primary is reported by its stack; commands that were not sent wait
//!   for a refresh (which finds the promoted replica) and go to the new primary; commands that
//!   may have run come back as [`Error::ConnectionLost`] or [`Error::Timeout`].
//! - **Sharded Pub/Sub** ([below](self#sharded-pubsub)): an `SSUBSCRIBE` goes to the node
//!   that serves its channels' slot, and follows the slot when it moves to another primary
//!   (the old owner's `sunsubscribe`, `SMIGRATED`, `MOVED` or a refresh tell the cluster): it
//!   is made on the new owner, then let go on the old one; the messages keep coming on
//!   [`Cluster::pushes`]. [`ClusterEvent::ShardChannelsMoved`] says when a move is done.
//!
//! # Example
//! ```no_run
//! use redis_handoff::{cmd, Cluster, Pipeline};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), redis_handoff::Error> {
//! let cluster = Cluster::connect("redis://127.0.0.1:7000").await?;
//! cluster.clone().oneshot(cmd!("SET", "{user1}:name", "ada")).await?;
//! let replies = cluster
//!     .clone()
//!     .oneshot(Pipeline::new().cmd(cmd!("GET", "{user1}:name")).cmd(cmd!("INCR", "visits")))
//!     .await?;
//! assert_eq!(replies.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # Routing
//! The key positions, the commands sent to every primary and how their replies combine, are
//! listed in the [`route`] table. `SCAN` is refused (its cursor belongs to one node):
//! scan each primary on its own stack, from [`Cluster::primaries`].
//!
//! # The cluster protocol
//! What each refusal makes the cluster do is in the [`redirect`] table.
//!
//! # Sharded Pub/Sub
//! The shard channels subscribed with `SSUBSCRIBE` through the cluster are registered with the
//! node each is subscribed on (the registry holds what the caller subscribed, nothing else);
//! `SUNSUBSCRIBE` takes them out, and one without channels ends every registered channel on
//! every node that holds some, answering all their confirmations together. A registered
//! channel follows its slot: when the node that holds it ends it (Redis 7 sends
//! `sunsubscribe` to the subscribers of a slot's channels when the slot leaves the node), when
//! a `SMIGRATED` or a `MOVED` gives its slot to another primary, or when a refresh finds it
//! there. The cluster subscribes it on the slot's owner (refreshing the topology first when the
//! map still names the node that ended it), through that node's stack, so that the stack makes
//! it again after its reconnects; then the old node's stack lets go of it (make before break).
//! Refusals are retried within the [`retry_budget`](ClusterBuilder::retry_budget); a move given
//! up is logged, counted ([`ClusterStats::shard_channel_failures`]), reported
//! ([`ClusterEvent::ShardChannelsNotMoved`]) and tried again at the next change of the map or
//! refresh. The `ssubscribe` and `sunsubscribe` confirmations of these moves, and the server's
//! `sunsubscribe` of a channel still subscribed, are not passed on: [`Cluster::pushes`] shows the
//! confirmations of the caller's own commands and the messages.
//!
//! A move announced with `SMIGRATING` (Redis Cloud and Redis Software behind their OSS Cluster
//! API, and the simulator) is made before it happens: for the registered channels of the
//! announced slots on the node that sent it, the cluster asks that node for `CLUSTER NODES`
//! (every 25 ms, for 5 s at most, until the slot is `MIGRATING` there and its `myself` line
//! names the importing node as `[<slot>->-<node id>]`), then subscribes them on the importing
//! node after `ASKING` (Redis serves a slot's shard channels there only so while the slot is
//! importing), as one write on that node's shared connection and through its stack. They are
//! then subscribed on both nodes; when the move completes (the old owner's `sunsubscribe`,
//! `SMIGRATED`, `MOVED` or a refresh), nothing is subscribed again: the old node is released.
//! Counted in [`ClusterStats::shard_channels_ahead`]; a refusal
//! ([`ClusterStats::shard_channels_ahead_failed`], logged) leaves the channels to follow their
//! slot as without the announcement.
//!
//! What is delivered: Redis Pub/Sub delivers at most once, to the subscribers a node has when a
//! message is published there, and the cluster adds no store or replay. Every message published
//! while the channel's slot stays where the subscription is, and every message published after
//! the `SSUBSCRIBE` on the new owner is acknowledged ([`ClusterEvent::ShardChannelsMoved`]), is
//! delivered, in the order its node published them. When the move is announced with
//! `SMIGRATING` and the importing node is subscribed before the slot moves (above), there is no
//! gap: every message published after the caller's `SSUBSCRIBE` was acknowledged is delivered,
//! on whichever node it was published, once (the slot is served by one node at a time, and a
//! message is published on the node that serves it). Without an announcement (Redis Open
//! Source resharding with `redis-cli --cluster reshard` or `CLUSTER SETSLOT`), no client can
//! know the destination before the move (nothing tells it a slot is migrating, and it only
//! learns the new owner when the old one lets go), so a message published on the new owner
//! after the old owner dropped the subscription and before the new one is acknowledged is
//! missed: that window is the time from the old owner's `sunsubscribe` (or the map's change)
//! to the answer of the new owner, about one round trip to each of the two nodes and one
//! `CLUSTER SHARDS` when the map had not followed yet (more when a node refuses and the
//! cluster retries). When the old owner ended the subscription itself (what Redis does), its
//! last messages arrive before its `sunsubscribe`, so before any of the new owner's; when the
//! cluster moved first (on `SMIGRATED` or `MOVED`, while the old owner still delivered), the
//! two nodes' messages can interleave. A move delivers nothing twice: a shard channel's
//! messages are published on the one node that serves its slot (a node's own handoff can, see
//! [`HandoffRetry::pushes`](crate::HandoffRetry::pushes)).
//!
//! Only what goes through [`Cluster`] is followed: an `SSUBSCRIBE` sent on a node's own stack
//! (from [`Cluster::primaries`]) stays on that node.
//!
//! Classic `SUBSCRIBE` and `PSUBSCRIBE` are [below](self#classic-pubsub).
//!
//! # Decisions
//! - **One maintenance handle and one metrics store for all nodes.** Per-node state is kept
//!   under each node's address in the shared [`Maintenance`] handle (as a pool of stacks to one
//!   endpoint already shares one), so relaxation, de-duplication and `MOVING` stay per node,
//!   while a user subscribes once and reads one [`Metrics`] for the cluster.
//! - **`CROSSSLOT` is an error, not a split.** Splitting `MSET` or `RENAME` across nodes would
//!   lose their atomicity and change what the caller asked for; a pipeline of single-key
//!   commands is the split a caller can choose.
//! - **`ASKING` on a shared connection.** The crate refuses a caller's `ASKING` there; the
//!   cluster writes its own `ASKING` and the command as one contiguous batch, which makes it
//!   safe (see the connection's batch writes and `crate::request`'s `Asking`).
//! - **Nodes wait briefly for a connection.** A node's stack normally holds a command up to
//!   its `wait_for_connection` while it reconnects; in a cluster that wait is cut to at most
//!   500 ms (unless set with [`ClusterBuilder::handoff`]), so that a command for a dead primary
//!   fails as not sent before its timeout and is routed again after a refresh, instead of
//!   timing out as "may have run".
//! - **Always ready.** `poll_ready` cannot know the node before the request; the node's own
//!   `poll_ready` runs inside the response future.
//! - **Sharded subscriptions follow their slot; the server's end of one is hidden.** A caller
//!   that reads `Cluster::pushes` sees one subscription for as long as it did not unsubscribe,
//!   wherever the slot goes: an `sunsubscribe` it did not ask for would read as the end of it
//!   while the messages keep coming. How the moves are made is in the `pubsub` module's own
//!   notes (not public).
//!
//! # Reading from replicas
//! By default every command goes to a primary. With
//! [`read_from`](ClusterBuilder::read_from)`(`[`ReadFrom::PreferReplica`]`)` (or
//! [`ReadFrom::PrimaryAndReplicas`]) the cluster also keeps a stack for every replica the
//! topology lists (its connections send `READONLY` in their handshake, so it survives
//! reconnects and handoffs), and a single command that only reads (the list is in the
//! [`route`] module: `GET`, `HGETALL`, `ZRANGE`, `EVAL_RO`, ...) goes to a connected replica of
//! its slot's shard, picked at random. A shard with no replica connected is read from its
//! primary. A replica's refusal (`MOVED` when the slot moved on, `LOADING` while it
//! synchronises, `MASTERDOWN`) is followed as any refusal, to the primary; a replica whose
//! connection is lost or that does not answer in time leaves the read to the primary at once
//! (a read is safe to send twice), counted in [`ClusterStats::replica_reads_retried`].
//! Replicas the topology no longer lists (gone, or promoted: a primary has its own stack,
//! without `READONLY`) are dropped at the next refresh. Pipelines and transactions go to the
//! primaries. Redis replicates asynchronously: a read on a replica may not see a write made a
//! moment before on the primary.
//!
//! # Classic Pub/Sub
//! A cluster passes every `PUBLISH` on to all its nodes, so `SUBSCRIBE` and `PSUBSCRIBE` work
//! on any one. The cluster sends them, and their unsubscribes, to one primary, the home
//! (picked at random among the connected ones by the first of them), so that an
//! `UNSUBSCRIBE` reaches the node that holds the subscription whatever the slot map did in
//! between. It keeps what the caller subscribed; when the home leaves the map (a primary that
//! died and was replaced by its replica), the refresh that finds it gone makes every channel
//! and pattern again on another connected primary
//! ([`ClusterEvent::SubscriptionsMoved`], [`ClusterStats::subscription_moves`]), and the
//! messages keep coming on [`Cluster::pushes`]; the confirmations of those re-subscriptions are
//! not passed on. Messages published between the home's death and the new subscription's
//! acknowledgement are missed (Pub/Sub is at most once); every later one arrives.
//!
//! # What is not here yet
//! Reads from replicas inside pipelines, and splitting multi-key commands across slots.

mod classic;
mod future;
mod pubsub;
pub mod redirect;
mod refresh;
pub mod route;
mod send;
mod slot;
mod topology;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::broadcast;
use tower::ServiceExt;
use tower_service::Service;

pub use future::ResponseFuture;
pub use slot::{key_slot, SLOT_COUNT};
pub use topology::{Shard, Topology};

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::command::{Command, SubscriptionKind};
use crate::connection::{ConnectOptions, PushHub, Pushes};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::handoff::HandoffConfig;
use crate::maintenance::{
    EventKind, Maintenance, MaintenanceConfig, MaintenanceEvent, Notification, SlotMove, SlotRange,
};
use crate::metrics::Metrics;
use crate::reply::FromReply;
use crate::request::{ClusterRequest, Request};
use crate::stack::{Stack, StackBuilder};
use route::Route;

/// Turns an address the cluster announces (in its topology, `MOVED`, `ASK`, `SMIGRATED`) into
/// the address to dial: for clusters behind NAT, port forwarding or a proxy.
pub type AddressMap = Arc<dyn Fn(&Endpoint) -> Endpoint + Send + Sync>;

/// How many `SMIGRATED` sequence numbers are remembered to ignore their copies.
const MIGRATION_MEMORY: usize = 1024;

/// A Redis Cluster client; see the [module docs](self). Cheap to clone: every clone is the
/// same client.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("primaries", &self.inner.routes.load().stacks.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Settings of a [`Cluster`]: the seeds, the settings of every node's stack, and the
/// cluster's own bounds.
#[derive(Clone)]
pub struct ClusterBuilder {
    stack: StackBuilder,
    handoff_set: bool,
    seeds: Vec<Endpoint>,
    config: Config,
    address_map: Option<AddressMap>,
}

impl fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("stack", &self.stack)
            .field("seeds", &self.seeds)
            .field("config", &self.config)
            .field("address_map", &self.address_map.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) read_from: ReadFrom,
    pub(crate) redirect_limit: u32,
    pub(crate) retry_budget: Duration,
    pub(crate) refresh_period: Option<Duration>,
    pub(crate) refresh_timeout: Duration,
    pub(crate) refresh_cool_down: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_from: ReadFrom::Primary,
            redirect_limit: 16,
            retry_budget: Duration::from_secs(5),
            refresh_period: Some(Duration::from_secs(30)),
            refresh_timeout: Duration::from_secs(2),
            refresh_cool_down: Duration::from_millis(100),
        }
    }
}

/// Which nodes serve the reads a replica may serve (the commands listed in the [`route`]
/// module); see [`ClusterBuilder::read_from`]. Writes, pipelines, transactions and everything
/// else go to the primary whatever this says.
///
/// A replica answers from what it has received of its primary's writes: a read sent there may
/// miss a write made a moment before (Redis replicates asynchronously). Read from the primary
/// when a read must see the caller's own last write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every read from the primary of its slot (the default): no replica is dialled.
    #[default]
    Primary,
    /// Reads from a replica of the slot's shard, picked at random among those connected; from
    /// the primary when the shard has none connected.
    PreferReplica,
    /// Reads spread at random over the primary and the replicas of the slot's shard that are
    /// connected.
    PrimaryAndReplicas,
}

/// Counters of what the cluster did; from [`Cluster::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// `MOVED` redirects followed.
    pub moved: u64,
    /// `ASK` redirects followed.
    pub asked: u64,
    /// Waits after `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` or `MASTERDOWN`.
    pub waits: u64,
    /// Commands routed again because their node could not be reached (nothing was sent).
    pub rerouted: u64,
    /// Topology refreshes that read a topology.
    pub refreshes: u64,
    /// Topology refreshes that failed (no node answered in time, or none sensibly).
    pub refresh_failures: u64,
    /// `SMIGRATED` notifications applied to the slot map.
    pub migrations: u64,
    /// `SMIGRATED` copies ignored (the same sequence number from another node).
    pub duplicate_migrations: u64,
    /// Primaries added (dialled) since the start.
    pub nodes_added: u64,
    /// Primaries that left the map and were dropped.
    pub nodes_removed: u64,
    /// Shard channels subscribed again on their slot's new owner (or, after their node ended
    /// them, on the node the map names).
    pub shard_channels_moved: u64,
    /// Shard channels whose move was given up after its retries (a channel counts again each
    /// time a later try is given up too).
    pub shard_channel_failures: u64,
    /// Shard channels subscribed on the node importing their slot while it was moving, after
    /// the slot's owner announced the move with `SMIGRATING` (see
    /// [Sharded Pub/Sub](self#sharded-pubsub)).
    pub shard_channels_ahead: u64,
    /// Shard channels whose subscription ahead of an announced move was refused or timed out
    /// (they followed their slot as without the announcement).
    pub shard_channels_ahead_failed: u64,
    /// Times the classic Pub/Sub subscriptions moved to another primary because theirs left
    /// the map (see [Classic Pub/Sub](self#classic-pubsub)).
    pub subscription_moves: u64,
    /// Moves of the classic Pub/Sub subscriptions that failed (tried again at the next
    /// refresh).
    pub subscription_move_failures: u64,
    /// Reads sent to a replica (see [`ReadFrom`]).
    pub replica_reads: u64,
    /// Reads sent to a replica whose connection was lost before they were answered, sent
    /// again to the primary (a read is safe to send twice).
    pub replica_reads_retried: u64,
}

/// What the cluster did, as it happens; from [`Cluster::events`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A refresh read the topology from `from`.
    Refreshed {
        /// The node that answered.
        from: Endpoint,
        /// Whether the map changed.
        changed: bool,
        /// How many primaries serve slots now.
        primaries: usize,
    },
    /// A refresh failed; the map stays as it was.
    RefreshFailed {
        /// Why.
        reason: Arc<str>,
    },
    /// A `MOVED` gave a slot to another node.
    Moved {
        /// The slot.
        slot: u16,
        /// Its new owner.
        to: Endpoint,
    },
    /// A node announced that slots are moving (`SMIGRATING`): its timeouts are relaxed.
    SlotsMigrating {
        /// The node that sent it.
        node: Endpoint,
        /// The notification's sequence number.
        seq: u64,
        /// The slots.
        slots: Vec<SlotRange>,
    },
    /// A `SMIGRATED` was applied to the slot map.
    SlotsMigrated {
        /// The node whose copy was applied.
        node: Endpoint,
        /// The notification's sequence number.
        seq: u64,
        /// What moved where (destinations after the address map).
        moves: Vec<SlotMove>,
    },
    /// A primary was dialled for the first time.
    NodeAdded {
        /// Its address.
        node: Endpoint,
    },
    /// A primary left the map; its connection closes once it has answered what it owes.
    NodeRemoved {
        /// Its address.
        node: Endpoint,
    },
    /// Shard channels subscribed through the cluster followed their slot: the `SSUBSCRIBE` on
    /// `to` is acknowledged, so every message published on `to` from now on is delivered.
    /// `from` is released after this event. `from` and `to` are the same node when that node
    /// ended the subscriptions and still serves their slot.
    ShardChannelsMoved {
        /// The channels (all of one slot).
        channels: Vec<Bytes>,
        /// The node they were subscribed on.
        from: Endpoint,
        /// The node they are subscribed on now.
        to: Endpoint,
    },
    /// The classic Pub/Sub subscriptions made through the cluster were made again on `to`,
    /// because `from`, which held them, left the slot map; every message that reaches `to`
    /// from now on is delivered.
    SubscriptionsMoved {
        /// The channels (`SUBSCRIBE`).
        channels: Vec<Bytes>,
        /// The patterns (`PSUBSCRIBE`).
        patterns: Vec<Bytes>,
        /// The node that held them.
        from: Endpoint,
        /// The node that holds them now.
        to: Endpoint,
    },
    /// Shard channels could not be subscribed on their slot's owner within the retry budget;
    /// they are tried again at the next change of the slot map (see
    /// [`ClusterStats::shard_channel_failures`]).
    ShardChannelsNotMoved {
        /// The channels (all of one slot).
        channels: Vec<Bytes>,
        /// The node they were subscribed on.
        from: Endpoint,
        /// The last refusal or error.
        reason: Arc<str>,
    },
}

// ===== Inner =====

/// The slot map and the stacks of its primaries, swapped as one.
pub(crate) struct Routes {
    pub(crate) topology: Topology,
    /// One per shard of `topology`, in the same order.
    pub(crate) stacks: Vec<Stack>,
    /// The replicas' stacks of each shard, in the same order; empty when reads go to the
    /// primaries only.
    pub(crate) replicas: Vec<Vec<Stack>>,
}

impl Routes {
    fn empty() -> Self {
        Routes {
            topology: Topology::empty(),
            stacks: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// The stack a read of `slot` goes to under `read_from`, and whether it is a replica's.
    pub(crate) fn pick_read(&self, slot: u16, read_from: ReadFrom) -> Option<(&Stack, bool)> {
        let shard = self.topology.owner_index(slot)?;
        let primary = self.stacks.get(shard)?;
        let replicas = self.replicas.get(shard).map_or(&[][..], Vec::as_slice);
        // The primary counts as one more candidate when reads are spread over it too.
        let candidates = match read_from {
            ReadFrom::Primary => 0,
            ReadFrom::PreferReplica => replicas.len(),
            ReadFrom::PrimaryAndReplicas => replicas.len() + 1,
        };
        if candidates == 0 {
            return Some((primary, false));
        }
        let start = fastrand::usize(..candidates);
        for i in 0..candidates {
            let pick = (start + i) % candidates;
            match replicas.get(pick) {
                Some(replica) if replica.handoff().is_connected() => return Some((replica, true)),
                Some(_) => {}
                // The slot past the replicas is the primary's.
                None => return Some((primary, false)),
            }
        }
        Some((primary, false))
    }

    /// The stack a request on `route` goes to now, if the map knows one.
    pub(crate) fn pick(&self, route: &Route) -> Option<&Stack> {
        match route {
            Route::Slot(slot) => self
                .topology
                .owner_index(*slot)
                .and_then(|i| self.stacks.get(i)),
            Route::Any | Route::All(_) => self.any(),
            Route::PubSub => self.stacks.first(),
        }
    }

    /// A primary picked at random, a connected one if there is.
    fn any(&self) -> Option<&Stack> {
        let n = self.stacks.len();
        if n == 0 {
            return None;
        }
        let start = fastrand::usize(..n);
        (0..n)
            .map(|i| &self.stacks[(start + i) % n])
            .find(|s| s.handoff().is_connected())
            .or_else(|| self.stacks.get(start))
    }
}

#[derive(Default)]
struct Counters {
    moved: AtomicU64,
    asked: AtomicU64,
    waits: AtomicU64,
    rerouted: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    migrations: AtomicU64,
    duplicate_migrations: AtomicU64,
    nodes_added: AtomicU64,
    nodes_removed: AtomicU64,
    shard_channels_moved: AtomicU64,
    shard_channel_failures: AtomicU64,
    shard_channels_ahead: AtomicU64,
    shard_channels_ahead_failed: AtomicU64,
    replica_reads: AtomicU64,
    replica_reads_retried: AtomicU64,
    subscription_moves: AtomicU64,
    subscription_move_failures: AtomicU64,
}

/// The sequence numbers of the `SMIGRATED`s applied, the oldest forgotten first.
#[derive(Default)]
struct SeqMemory {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

impl SeqMemory {
    /// Whether `seq` was seen; remembers it if not.
    fn seen(&mut self, seq: u64) -> bool {
        if !self.seen.insert(seq) {
            return true;
        }
        self.order.push_back(seq);
        while self.order.len() > MIGRATION_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        false
    }
}

pub(crate) struct Inner {
    pub(crate) routes: ArcSwap<Routes>,
    // Serialises the writers of `routes` (refreshes, MOVED, SMIGRATED) between a load and a
    // store; never held across an await.
    writing: Mutex<()>,
    // Every primary's stack, and the stacks of nodes a redirect named.
    nodes: Mutex<HashMap<Endpoint, Stack>>,
    // The replicas' stacks (their connections send `READONLY`), when reads go to replicas.
    replica_nodes: Mutex<HashMap<Endpoint, Stack>>,
    seeds: Vec<Endpoint>,
    template: StackBuilder,
    maintenance: Maintenance,
    metrics: Metrics,
    pub(crate) config: Config,
    address_map: Option<AddressMap>,
    refresher: refresh::Refresher,
    counters: Counters,
    events: broadcast::Sender<ClusterEvent>,
    migrations: Mutex<SeqMemory>,
    // Every node's pushes, as one stream.
    pushes: Arc<PushHub>,
    // The shard channels subscribed through the cluster, followed to their slots' owners.
    shard: Arc<pubsub::ShardChannels>,
    // The classic subscriptions made through the cluster, and the node that holds them.
    classic: Arc<classic::Classic>,
}

impl Inner {
    /// The address to dial for one the cluster announced.
    pub(crate) fn map(&self, endpoint: Endpoint) -> Endpoint {
        match &self.address_map {
            Some(map) => map(&endpoint),
            None => endpoint,
        }
    }

    fn emit(&self, event: ClusterEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    fn connect_timeout(&self) -> Duration {
        self.template.handoff.connect_timeout
    }

    /// How long a new node is given to connect before traffic is routed to it anyway (its
    /// stack then holds the commands until it is up): within a refresh's bound.
    fn dial_wait(&self) -> Duration {
        self.connect_timeout().min(self.config.refresh_timeout)
    }

    /// The stack of `endpoint`, started if there is none yet (and then whether it is new).
    fn node(&self, endpoint: &Endpoint) -> Result<(Stack, bool), Error> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stack) = nodes.get(endpoint) {
            return Ok((stack.clone(), false));
        }
        let stack = self
            .template
            .start_node(endpoint.clone(), &self.maintenance, &self.metrics)?;
        self.shard
            .watch(endpoint, &stack, &self.pushes, &self.classic);
        nodes.insert(endpoint.clone(), stack.clone());
        drop(nodes);
        self.counters.nodes_added.fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %endpoint, "cluster node added");
        self.emit(ClusterEvent::NodeAdded {
            node: endpoint.clone(),
        });
        Ok((stack, true))
    }

    /// The stack of the replica at `endpoint` (its connections send `READONLY`), started if
    /// there is none yet. Not waited for: reads go to a replica only once it is connected.
    fn replica_node(&self, endpoint: &Endpoint) -> Result<Stack, Error> {
        let mut nodes = self.replica_nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stack) = nodes.get(endpoint) {
            return Ok(stack.clone());
        }
        let mut template = self.template.clone();
        template.options.read_only = true;
        let stack = template.start_node(endpoint.clone(), &self.maintenance, &self.metrics)?;
        nodes.insert(endpoint.clone(), stack.clone());
        drop(nodes);
        tracing::info!(node = %endpoint, "cluster replica added for reads");
        Ok(stack)
    }

    /// The replicas' stacks of every shard of `topology`, when reads go to replicas.
    fn replica_stacks(&self, topology: &Topology) -> Vec<Vec<Stack>> {
        if self.config.read_from == ReadFrom::Primary {
            return Vec::new();
        }
        topology
            .shards()
            .iter()
            .map(|shard| {
                shard
                    .replicas
                    .iter()
                    .filter_map(|e| match self.replica_node(e) {
                        Ok(stack) => Some(stack),
                        Err(error) => {
                            tracing::warn!(node = %e, %error, "cluster replica cannot be used for reads");
                            None
                        }
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn read_sent_to_replica(&self) {
        self.counters.replica_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn replica_read_retried(&self) {
        self.counters
            .replica_reads_retried
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The stack of `endpoint`, dialled before it is used when it is new (make before break;
    /// bounded by `dial_wait`: a node that does not answer yet still gets its stack, and
    /// commands to it wait for it there).
    pub(crate) async fn ready_node(&self, endpoint: &Endpoint) -> Result<Stack, Error> {
        let (stack, new) = self.node(endpoint)?;
        if new {
            let _ = tokio::time::timeout(self.dial_wait(), stack.handoff().wait_connected()).await;
        }
        Ok(stack)
    }

    /// Gives `ranges` to `to` (served by `stack`) in the map; whether anything changed.
    fn assign(&self, ranges: &[SlotRange], to: &Endpoint, stack: &Stack) -> bool {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.routes.load_full();
        let mut topology = current.topology.clone();
        let mut changed = false;
        for r in ranges {
            changed |= topology.assign(*r, to);
        }
        if !changed {
            return false;
        }
        let mut stacks = current.stacks.clone();
        let mut replicas = current.replicas.clone();
        // `assign` adds `to` at the end when it was not a primary yet (its replicas are not
        // known before the next refresh).
        while stacks.len() < topology.shards().len() {
            stacks.push(stack.clone());
            if !replicas.is_empty() {
                replicas.push(Vec::new());
            }
        }
        self.routes.store(Arc::new(Routes {
            topology,
            stacks,
            replicas,
        }));
        self.shard.map_changed();
        true
    }

    /// The stack of `endpoint`, if the cluster has one.
    fn stack_of(&self, endpoint: &Endpoint) -> Option<Stack> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
            .cloned()
    }

    /// Follows a `MOVED`: the slot goes to `to` at once, a full refresh follows lazily.
    pub(crate) async fn moved(self: &Arc<Self>, slot: u16, to: &Endpoint) -> Result<Stack, Error> {
        self.counters.moved.fetch_add(1, Ordering::Relaxed);
        let stack = self.ready_node(to).await?;
        if let Some(range) = SlotRange::new(slot, slot) {
            if self.assign(&[range], to, &stack) {
                tracing::debug!(slot, to = %to, "MOVED: slot map updated");
                self.emit(ClusterEvent::Moved {
                    slot,
                    to: to.clone(),
                });
            }
        }
        self.refresh_lazily();
        Ok(stack)
    }

    /// The target of an `ASK`.
    pub(crate) async fn asked(&self, to: &Endpoint) -> Result<Stack, Error> {
        self.counters.asked.fetch_add(1, Ordering::Relaxed);
        self.ready_node(to).await
    }

    pub(crate) fn waited(&self) {
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks for a refresh; it runs in the background (one at a time, see `refresh`).
    pub(crate) fn refresh_lazily(self: &Arc<Self>) {
        if self.refresher.request() {
            tokio::spawn(run_refreshes(Arc::downgrade(self)));
        }
    }

    /// Asks for a refresh and waits for the next one to finish, until `deadline` at most.
    pub(crate) async fn reroute(self: &Arc<Self>, deadline: tokio::time::Instant) {
        self.counters.rerouted.fetch_add(1, Ordering::Relaxed);
        let runs = self.refresher.runs();
        self.refresh_lazily();
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(self.config.refresh_timeout + self.config.refresh_cool_down);
        self.refresher.finished_after(runs, wait).await;
    }

    /// One refresh: the topology from the first node that gives one, installed.
    async fn refresh_once(&self) -> Result<(), Error> {
        let routes = self.routes.load_full();
        // Connected primaries first, in random order, then the rest, then the seeds.
        let mut candidates: Vec<Stack> = routes.stacks.clone();
        fastrand::shuffle(&mut candidates);
        candidates.sort_by_key(|s| !s.handoff().is_connected());
        let mut last = None;
        for stack in candidates.iter().take(4) {
            match self.fetch(stack).await {
                Ok(t) => return self.install(t, stack.handoff().configured_endpoint()).await,
                Err(e) => last = Some(e),
            }
        }
        for seed in &self.seeds {
            if routes.topology.index_of(seed).is_some() {
                continue;
            }
            let stack = self
                .template
                .start_node(seed.clone(), &self.maintenance, &self.metrics)?;
            self.shard.watch(seed, &stack, &self.pushes, &self.classic);
            let attempt = async {
                stack.handoff().wait_connected().await?;
                self.fetch(&stack).await
            };
            match tokio::time::timeout(self.dial_wait(), attempt).await {
                Ok(Ok(t)) => return self.install(t, seed).await,
                Ok(Err(e)) => last = Some(e),
                Err(_) => {}
            }
        }
        Err(last.unwrap_or_else(|| Error::NotSent {
            reason: "no node of the cluster could be asked for its topology".into(),
        }))
    }

    /// Reads the topology from one node: `CLUSTER SHARDS`, or `CLUSTER SLOTS` where that is
    /// unknown.
    async fn fetch(&self, stack: &Stack) -> Result<Topology, Error> {
        let asked = stack.handoff().configured_endpoint().clone();
        let tls = self.template.options.tls.is_some();
        let map = |e: Endpoint| self.map(e);
        let wait = self.config.refresh_timeout;
        let shards = tokio::time::timeout(
            wait,
            stack.clone().oneshot(Command::new("CLUSTER").arg("SHARDS")),
        )
        .await
        .map_err(|_| timeout_error(wait))?;
        let parsed = match shards {
            Ok(reply) => Topology::from_shards(reply.frame(), &asked, tls, &map),
            Err(Error::Server(_)) => {
                let slots = tokio::time::timeout(
                    wait,
                    stack.clone().oneshot(Command::new("CLUSTER").arg("SLOTS")),
                )
                .await
                .map_err(|_| timeout_error(wait))??;
                Topology::from_slots(slots.frame(), &asked, &map)
            }
            Err(e) => return Err(e),
        };
        parsed.map_err(|e| Error::protocol(format!("the topology from {asked}: {e}")))
    }

    /// Installs a topology read from `from`: its new primaries are dialled first, then the
    /// map is swapped, then the primaries that left are dropped.
    async fn install(&self, topology: Topology, from: &Endpoint) -> Result<(), Error> {
        let mut stacks = Vec::with_capacity(topology.shards().len());
        let mut new = Vec::new();
        for shard in topology.shards() {
            let (stack, is_new) = self.node(&shard.primary)?;
            // Only new nodes are waited for: a known one that is down (a primary that died and
            // is not replaced yet) must not hold up the map.
            if is_new {
                new.push(stack.clone());
            }
            stacks.push(stack);
        }
        if !new.is_empty() {
            let wait = self.dial_wait();
            futures_util::future::join_all(new.iter().map(|s| async move {
                let _ = tokio::time::timeout(wait, s.handoff().wait_connected()).await;
            }))
            .await;
        }
        let replicas = self.replica_stacks(&topology);
        let primaries = stacks.len();
        let changed = {
            let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
            let changed = self.routes.load().topology != topology;
            if changed {
                self.routes.store(Arc::new(Routes {
                    topology,
                    stacks,
                    replicas,
                }));
            }
            changed
        };
        self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        if changed {
            tracing::info!(from = %from, primaries, "cluster topology changed");
        } else {
            tracing::debug!(from = %from, primaries, "cluster topology unchanged");
        }
        self.emit(ClusterEvent::Refreshed {
            from: from.clone(),
            changed,
            primaries,
        });
        self.prune();
        // Changed or not: a shard channel that could not be followed before is tried again.
        self.shard.map_changed();
        Ok(())
    }

    /// Drops the stacks of nodes that serve no slot in the map. Commands already sent on them
    /// keep them alive until they are answered; then their connections close.
    fn prune(&self) {
        let routes = self.routes.load();
        let removed: Vec<Endpoint> = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<Endpoint> = nodes
                .keys()
                .filter(|e| routes.topology.index_of(e).is_none())
                .cloned()
                .collect();
            for e in &gone {
                nodes.remove(e);
            }
            gone
        };
        for node in removed {
            self.counters.nodes_removed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(node = %node, "cluster node removed");
            self.emit(ClusterEvent::NodeRemoved { node });
        }
        // Replicas no shard lists any more (gone, or promoted: a primary has its own stack,
        // without `READONLY`).
        let replicas: HashSet<&Endpoint> = routes
            .topology
            .shards()
            .iter()
            .flat_map(|s| s.replicas.iter())
            .collect();
        self.replica_nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e, _| {
                let keep = replicas.contains(e);
                if !keep {
                    tracing::info!(node = %e, "cluster replica dropped");
                }
                keep
            });
        // The states of nodes whose stacks are all gone (this prune's, once their last commands
        // were answered, or earlier ones'): the handle would otherwise keep one per address the
        // cluster ever used.
        let forgotten = self.maintenance.forget_unused();
        if forgotten > 0 {
            tracing::debug!(forgotten, "maintenance states of departed nodes dropped");
        }
    }

    /// Applies a `SMIGRATED` heard from `node`, unless its copy from another node was.
    async fn migrated(&self, node: &Endpoint, seq: u64, moves: Vec<SlotMove>) {
        let duplicate = self
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen(seq);
        if duplicate {
            self.counters
                .duplicate_migrations
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(node = %node, seq, "SMIGRATED already applied");
            return;
        }
        let mut applied = Vec::with_capacity(moves.len());
        for m in moves {
            let destination = self.map(m.destination.clone());
            let source = self.map(m.source.clone());
            match self.ready_node(&destination).await {
                Ok(stack) => {
                    self.assign(&m.slots, &destination, &stack);
                    tracing::info!(
                        node = %node,
                        seq,
                        source = %source,
                        destination = %destination,
                        slots = %crate::maintenance::slots_to_string(&m.slots),
                        "SMIGRATED: slots moved in the slot map"
                    );
                }
                Err(e) => {
                    tracing::warn!(node = %node, seq, destination = %destination, error = %e, "SMIGRATED names a node that cannot be dialled; the refresh decides")
                }
            }
            applied.push(SlotMove {
                source,
                destination,
                slots: m.slots,
            });
        }
        self.counters.migrations.fetch_add(1, Ordering::Relaxed);
        self.emit(ClusterEvent::SlotsMigrated {
            node: node.clone(),
            seq,
            moves: applied,
        });
    }
}

fn timeout_error(after: Duration) -> Error {
    Error::Timeout {
        after,
        relaxed: false,
    }
}

/// Runs refreshes while they are asked for (see `refresh::Refresher`), each bounded by the
/// refresh timeout.
async fn run_refreshes(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let delay = inner.refresher.start();
        drop(inner);
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else { return };
        let bound = inner.config.refresh_timeout * 2;
        let outcome = tokio::time::timeout(bound, inner.refresh_once()).await;
        let failure = match outcome {
            Ok(Ok(())) => {
                classic::map_changed(&inner);
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no topology within {bound:?}")),
        };
        if let Some(reason) = failure {
            inner
                .counters
                .refresh_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%reason, "cluster topology refresh failed; the slot map stays as it was");
            inner.emit(ClusterEvent::RefreshFailed {
                reason: reason.into(),
            });
        }
        if !inner.refresher.finish() {
            return;
        }
    }
}

/// Follows what the nodes announce: `SMIGRATING` (logged and published: the node's own stack
/// relaxes its timeouts) and `SMIGRATED` (applied to the slot map), on the lossless path.
async fn follow_notifications(
    weak: Weak<Inner>,
    mut triggers: tokio::sync::mpsc::UnboundedReceiver<Arc<MaintenanceEvent>>,
) {
    while let Some(event) = triggers.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let event = Arc::unwrap_or_clone(event);
        match event.kind {
            EventKind::Notification(Notification::SMigrating { seq, slots }) => {
                tracing::info!(node = %event.endpoint, seq, slots = %crate::maintenance::slots_to_string(&slots), "SMIGRATING: timeouts relaxed on this node");
                if inner.shard.holds_in(&event.endpoint, &slots) {
                    tokio::spawn(pubsub::ahead(
                        Arc::downgrade(&inner),
                        event.endpoint.clone(),
                        slots.clone(),
                    ));
                }
                inner.emit(ClusterEvent::SlotsMigrating {
                    node: event.endpoint,
                    seq,
                    slots,
                });
            }
            EventKind::Notification(Notification::SMigrated { seq, moves }) => {
                inner.migrated(&event.endpoint, seq, moves).await;
                inner.refresh_lazily();
            }
            _ => {}
        }
    }
}

/// Refreshes when a node's connection is lost (a hint: the broadcast may skip some), and
/// every `period` when one is set.
async fn watch_nodes(
    weak: Weak<Inner>,
    mut events: crate::maintenance::MaintenanceEvents,
    period: Option<Duration>,
) {
    let mut tick = period.map(|p| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let lost = tokio::select! {
            event = events.recv() => match event {
                Some(e) => matches!(e.kind, EventKind::Disconnected { .. } | EventKind::ReconnectFailed { .. }),
                None => return,
            },
            _ = async {
                match tick.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending().await,
                }
            } => true,
        };
        let Some(inner) = weak.upgrade() else { return };
        if lost {
            inner.refresh_lazily();
        }
    }
}

// ===== impl Cluster =====

impl Cluster {
    /// Connects to the cluster that a `redis://` or `rediss://` URL names one node of, with
    /// every default.
    pub async fn connect(url: &str) -> Result<Cluster, Error> {
        Cluster::builder(ConnectOptions::from_url(url)?)
            .connect()
            .await
    }

    /// A builder whose first seed is `options.endpoint`; every node's connection takes the
    /// rest of `options` (user, password, TLS, client name, ...).
    pub fn builder(options: ConnectOptions) -> ClusterBuilder {
        let seeds = vec![options.endpoint.clone()];
        ClusterBuilder {
            stack: Stack::builder(options),
            handoff_set: false,
            seeds,
            config: Config::default(),
            address_map: None,
        }
    }

    /// The slot map as it is now.
    pub fn topology(&self) -> Topology {
        self.inner.routes.load().topology.clone()
    }

    /// The primaries and their stacks, in the order of [`Topology::shards`]: for what goes to
    /// one node at a time (`SCAN`, `INFO` of each node, `CLIENT LIST`).
    pub fn primaries(&self) -> Vec<(Endpoint, Stack)> {
        let routes = self.inner.routes.load();
        routes
            .topology
            .shards()
            .iter()
            .zip(routes.stacks.iter())
            .map(|(shard, stack)| (shard.primary.clone(), stack.clone()))
            .collect()
    }

    /// Sends `command` to its node and converts its reply to `T` (any [`FromReply`] type), as
    /// [`Stack::query`] does. A reply of another shape is an [`Error::Conversion`]; the
    /// command ran.
    ///
    /// ```no_run
    /// use redis_handoff::{cmd, Cluster};
    ///
    /// # async fn run() -> Result<(), redis_handoff::Error> {
    /// let cluster = Cluster::connect("redis://127.0.0.1:7000").await?;
    /// let visits: i64 = cluster.query(cmd!("INCR", "visits")).await?;
    /// let name: Option<String> = cluster.query(cmd!("GET", "{user1}:name")).await?;
    /// # Ok(()) }
    /// ```
    pub fn query<T: FromReply>(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<T, Error>> + Send {
        let cluster = self.clone();
        async move { cluster.oneshot(command).await?.parse() }
    }

    /// The replicas the cluster reads from and their stacks (connections that sent
    /// `READONLY`), shard by shard in the order of [`Topology::shards`]; empty with
    /// [`ReadFrom::Primary`], which dials no replica.
    pub fn replicas(&self) -> Vec<(Endpoint, Stack)> {
        let routes = self.inner.routes.load();
        routes
            .replicas
            .iter()
            .flatten()
            .map(|stack| (stack.handoff().configured_endpoint().clone(), stack.clone()))
            .collect()
    }

    /// The stack of the node that serves `slot` now.
    pub fn node_for_slot(&self, slot: u16) -> Option<Stack> {
        self.inner.routes.load().pick(&Route::Slot(slot)).cloned()
    }

    /// The maintenance handle every node's stack shares: notifications, handoffs and
    /// reconnects of all nodes, each event naming its node ([`MaintenanceEvent::endpoint`]),
    /// and each node's [`EndpointStatus`](crate::EndpointStatus) under its address.
    pub fn maintenance(&self) -> &Maintenance {
        &self.inner.maintenance
    }

    /// The metrics of every node's stack, together.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Counters of redirects, refreshes and migrations so far.
    pub fn stats(&self) -> ClusterStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            moved: get(&c.moved),
            asked: get(&c.asked),
            waits: get(&c.waits),
            rerouted: get(&c.rerouted),
            refreshes: get(&c.refreshes),
            refresh_failures: get(&c.refresh_failures),
            migrations: get(&c.migrations),
            duplicate_migrations: get(&c.duplicate_migrations),
            nodes_added: get(&c.nodes_added),
            nodes_removed: get(&c.nodes_removed),
            shard_channels_moved: get(&c.shard_channels_moved),
            shard_channel_failures: get(&c.shard_channel_failures),
            shard_channels_ahead: get(&c.shard_channels_ahead),
            shard_channels_ahead_failed: get(&c.shard_channels_ahead_failed),
            subscription_moves: get(&c.subscription_moves),
            subscription_move_failures: get(&c.subscription_move_failures),
            replica_reads: get(&c.replica_reads),
            replica_reads_retried: get(&c.replica_reads_retried),
        }
    }

    /// What the cluster does from now on: refreshes, `MOVED` updates, migrations, nodes added
    /// and removed. A subscriber that falls more than 256 events behind misses the oldest
    /// (`RecvError::Lagged`); the counters of [`Cluster::stats`] miss nothing.
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// Push frames from every node, as one stream: Pub/Sub messages (a `SUBSCRIBE` goes to one
    /// node, which hears every `PUBLISH` of the cluster; an `SSUBSCRIBE` goes to the node that
    /// serves its channel's slot, and follows the slot when it moves: see
    /// [Sharded Pub/Sub](self#sharded-pubsub)), the confirmations of the caller's subscription
    /// commands, client-tracking invalidations.
    pub fn pushes(&self) -> Pushes {
        self.inner.pushes.subscribe()
    }

    /// Refreshes the topology now and waits for it (at most the refresh timeout, twice).
    pub async fn refresh(&self) -> Result<(), Error> {
        let bound = self.inner.config.refresh_timeout * 2;
        tokio::time::timeout(bound, self.inner.refresh_once())
            .await
            .map_err(|_| timeout_error(bound))?
    }
}

// ===== impl ClusterBuilder =====

impl ClusterBuilder {
    /// Adds a node to start from when the first seed cannot be reached.
    #[must_use]
    pub fn seed(mut self, endpoint: Endpoint) -> Self {
        if !self.seeds.contains(&endpoint) {
            self.seeds.push(endpoint);
        }
        self
    }

    /// The maintenance settings of every node (one handle shared by all of them).
    #[must_use]
    pub fn maintenance(mut self, config: MaintenanceConfig) -> Self {
        self.stack = self.stack.maintenance(config);
        self
    }

    /// Reconnect and resend settings of every node. Unless set here, a node waits at most
    /// 500 ms (and at most half the timeout) for a connection before a command fails with
    /// [`Error::NotSent`]: the cluster then routes it again after a refresh, which finds the
    /// replica promoted in a dead primary's place.
    #[must_use]
    pub fn handoff(mut self, config: HandoffConfig) -> Self {
        self.stack = self.stack.handoff(config);
        self.handoff_set = true;
        self
    }

    /// Circuit breaker settings of every node.
    #[must_use]
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.stack = self.stack.circuit_breaker(config);
        self
    }

    /// The per-command timeout of every node (default 1 s); see [`StackBuilder::timeout`].
    /// It bounds each attempt; the [`retry_budget`](Self::retry_budget) bounds them together.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.stack = self.stack.timeout(timeout);
        self
    }

    /// Which nodes serve reads (default [`ReadFrom::Primary`]). With another choice the cluster
    /// also dials every replica the topology lists (their connections send `READONLY`), and
    /// sends the reads a replica may serve (listed in the [`route`] module) to one that is
    /// connected. A replica's refusal (`MOVED`, `LOADING`, `MASTERDOWN`, ...) sends the read on
    /// to the primary, and so does the loss of the replica's connection before the answer.
    #[must_use]
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.config.read_from = read_from;
        self
    }

    /// How many redirects and waits one request follows before it fails with
    /// [`Error::Redirects`] (default 16).
    #[must_use]
    pub fn redirect_limit(mut self, limit: u32) -> Self {
        self.config.redirect_limit = limit;
        self
    }

    /// How long a request may keep being redirected, waiting after `TRYAGAIN` or
    /// `CLUSTERDOWN`, or waiting for a refresh after its node was lost, from when it was
    /// called (default 5 s).
    #[must_use]
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.config.retry_budget = budget;
        self
    }

    /// How often the topology is refreshed when nothing asks for it (default 30 s; `None`:
    /// never).
    #[must_use]
    pub fn refresh_period(mut self, period: Option<Duration>) -> Self {
        self.config.refresh_period = period;
        self
    }

    /// How long one node is given to answer a topology query (default 2 s); a whole refresh
    /// takes at most twice this.
    #[must_use]
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.config.refresh_timeout = timeout;
        self
    }

    /// The least time between the starts of two refreshes (default 100 ms).
    #[must_use]
    pub fn refresh_cool_down(mut self, cool_down: Duration) -> Self {
        self.config.refresh_cool_down = cool_down;
        self
    }

    /// Turns every address the cluster announces into the one to dial (NAT, port
    /// forwarding, a proxy in front of each node). Seeds are dialled as given.
    #[must_use]
    pub fn address_map(
        mut self,
        map: impl Fn(&Endpoint) -> Endpoint + Send + Sync + 'static,
    ) -> Self {
        self.address_map = Some(Arc::new(map));
        self
    }

    /// Reads the topology from the first seed that answers, dials every primary, and waits
    /// until the map is installed. Needs a Tokio runtime.
    pub async fn connect(self) -> Result<Cluster, Error> {
        let mut template = self.stack;
        if template.options.database != 0 {
            return Err(Error::config(
                "a Redis Cluster has database 0 only: leave the database out of the URL",
            ));
        }
        if !self.handoff_set {
            let wait =
                (template.timeout / 2).clamp(Duration::from_millis(50), Duration::from_millis(500));
            template.handoff.wait_for_connection = wait;
        }
        let maintenance = Maintenance::new(template.maintenance.clone());
        let metrics = Metrics::new();
        metrics.attach(&maintenance);
        let (events, _) = broadcast::channel(256);
        let seed_endpoint = self
            .seeds
            .first()
            .cloned()
            .ok_or_else(|| Error::config("a cluster needs at least one seed"))?;
        let (shard, shard_wakes) = pubsub::ShardChannels::new();
        let inner = Arc::new(Inner {
            routes: ArcSwap::from_pointee(Routes::empty()),
            writing: Mutex::new(()),
            nodes: Mutex::new(HashMap::new()),
            replica_nodes: Mutex::new(HashMap::new()),
            seeds: self.seeds,
            template,
            refresher: refresh::Refresher::new(self.config.refresh_cool_down),
            config: self.config,
            address_map: self.address_map,
            maintenance: maintenance.clone(),
            metrics,
            counters: Counters::default(),
            events,
            migrations: Mutex::new(SeqMemory::default()),
            pushes: Arc::new(PushHub::new(seed_endpoint, 4096)),
            shard,
            classic: Arc::default(),
        });
        // Listen before the first node connects, so that nothing it announces is missed.
        tokio::spawn(follow_notifications(
            Arc::downgrade(&inner),
            maintenance.triggers(),
        ));
        tokio::spawn(watch_nodes(
            Arc::downgrade(&inner),
            maintenance.subscribe(),
            inner.config.refresh_period,
        ));
        tokio::spawn(pubsub::follow(Arc::downgrade(&inner), shard_wakes));
        let mut last = None;
        for seed in inner.seeds.clone() {
            let (stack, _) = inner.node(&seed)?;
            let attempt = async {
                stack.handoff().wait_connected().await?;
                inner.fetch(&stack).await
            };
            let wait = inner.connect_timeout() + inner.config.refresh_timeout;
            match tokio::time::timeout(wait, attempt).await {
                Ok(Ok(topology)) => {
                    inner.install(topology, &seed).await?;
                    return Ok(Cluster { inner });
                }
                Ok(Err(e)) => {
                    tracing::warn!(seed = %seed, error = %e, "cluster seed gave no topology");
                    last = Some(e);
                }
                Err(_) => last = Some(timeout_error(wait)),
            }
            inner
                .nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seed);
        }
        Err(last.unwrap_or_else(|| Error::config("a cluster needs at least one seed")))
    }
}

// ===== impl Service =====

/// Commands, pipelines and transactions alike, routed by slot. Always ready: the node is known
/// only once the request is, so backpressure is applied by the node's stack inside the
/// response future.
impl<R: Request> Service<R> for Cluster {
    type Response = R::Response;
    type Error = Error;
    type Future = ResponseFuture<R>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> ResponseFuture<R> {
        let started = tokio::time::Instant::now();
        match request.into_cluster() {
            // The name is read once: this runs for every command.
            ClusterRequest::Command(command) => match command.subscription().map(|s| s.kind) {
                None => ResponseFuture::command(&self.inner, command, started),
                Some(SubscriptionKind::SSubscribe | SubscriptionKind::SUnsubscribe) => {
                    ResponseFuture::slow(Box::pin(pubsub::command(
                        self.inner.clone(),
                        command,
                        started,
                    )))
                }
                // SUBSCRIBE, PSUBSCRIBE and their unsubscribes.
                Some(_) => ResponseFuture::slow(Box::pin(classic::command(
                    self.inner.clone(),
                    command,
                    started,
                ))),
            },
            ClusterRequest::Pipeline(commands) => ResponseFuture::slow(Box::pin(send::pipeline(
                self.inner.clone(),
                commands,
                started,
            ))),
            ClusterRequest::Transaction(commands) => ResponseFuture::slow(Box::pin(
                send::transaction(self.inner.clone(), commands, started),
            )),
            ClusterRequest::Internal(what) => ResponseFuture::ready(Err(Error::config(format!(
                "{what} requests are the crate's own and never go through a cluster"
            )))),
        }
    }
}
