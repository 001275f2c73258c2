//! Cluster mode: the simulator in front of a real Redis Cluster, and the slot migration it
//! plays there for real.
//!
//! [`SimulatorBuilder::cluster`](super::SimulatorBuilder::cluster) starts one simulator node
//! per cluster node, each forwarding to its own cluster node. Topology replies and redirects
//! are rewritten to the simulator's addresses (see the `topology` module docs: `CLUSTER
//! SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES`, `-MOVED`, `-ASK`), so a cluster client that
//! starts at any simulator node keeps talking through the simulator. Each simulator node
//! knows its cluster node by the address it forwards to and by the address the cluster node
//! announces for itself (asked with `CLUSTER NODES` when the simulator node starts).
//!
//! [`Simulator::migrate_slots`] moves slots as Redis Software does behind its OSS Cluster API,
//! and tells the clients as it does (PROTOCOL.md section 12):
//!
//! 1. `SMIGRATING <seq> <slots>` to every opted-in client of every node;
//! 2. after [`Habits::effect_delay`](super::Habits::effect_delay) (or
//!    [`MigrateSlots::delay`]), the real move, over admin connections of the simulator's own
//!    to the cluster nodes: `CLUSTER SETSLOT <slot> IMPORTING` on the destination, `MIGRATING`
//!    on the source, `CLUSTER GETKEYSINSLOT` and `MIGRATE ... KEYS` until the slot is empty,
//!    then `CLUSTER SETSLOT <slot> NODE` on the destination, the source and every other primary;
//! 3. `SMIGRATED <seq> [[source, destination, slots], ...]` (a seq of its own, addresses the
//!    simulator's) to the same clients.
//!
//! A node added at run time ([`Simulator::add_node_to`], `POST /nodes`) joins the rewritten
//! topology at once; a removed one ([`Simulator::remove_node`], `DELETE /nodes/{id}`) closes
//! its connections and leaves it: its cluster node's address then appears in topology replies
//! and redirects as the cluster writes it, so a client that follows them talks to that cluster
//! node directly, past the simulator (as a client of Redis Software sees a node leave the
//! topology during a rolling upgrade, and must follow the slots to the nodes that stay).
//!
//! ```no_run
//! use redis_handoff::sim::{Simulator, Slots};
//!
//! # async fn run() -> Result<(), redis_handoff::sim::SimError> {
//! let sim = Simulator::builder()
//!     .cluster(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
//!     .start()
//!     .await?;
//! let slots: Slots = "0-99,5000".parse()?;
//! let done = sim.migrate_slots(&slots, 2).await?;
//! println!("moved {} keys: {:?}", done.keys_moved, done.moves);
//! # Ok(()) }
//! ```
//!
//! Limits: the admin connections do not authenticate (a cluster with `requirepass` refuses
//! them with a clear error), and a migration that fails half-way leaves its slot `MIGRATING` /
//! `IMPORTING` as `redis-cli --cluster reshard` would (`redis-cli --cluster fix` repairs it).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::notification::Window;
use super::proxy::Node;
use super::resp::{encode_command, Cut, FrameCutter, FrameLimits, Value};
use super::topology::{split_host_port, Announce, Item};
use super::upstream::Target;
use super::{lock, Core, SimError, Simulator};

/// The number of hash slots of a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

// ===== Slots =====

/// A set of hash slots, kept as sorted, merged ranges. Written as Redis Software writes it in
/// `SMIGRATING`: `123,456,5000-7000`.
///
/// ```
/// use redis_handoff::sim::Slots;
///
/// let slots: Slots = "5000-7000, 456,123,124".parse().unwrap();
/// assert_eq!(slots.to_string(), "123-124,456,5000-7000");
/// assert_eq!(slots.len(), 2004);
/// assert!("16384".parse::<Slots>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slots {
    ranges: Vec<(u16, u16)>,
}

impl Slots {
    /// The slots of these ranges; an error for a slot above 16383 or a range whose start is
    /// after its end.
    pub fn from_ranges(
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Result<Slots, SimError> {
        let mut list = Vec::new();
        for r in ranges {
            let (from, to) = (*r.start(), *r.end());
            if from > to {
                return Err(invalid(format!("slot range {from}-{to} runs backwards")));
            }
            if to >= SLOT_COUNT {
                return Err(invalid(format!(
                    "slot {to} is out of range (slots are 0 to {})",
                    SLOT_COUNT - 1
                )));
            }
            list.push((from, to));
        }
        list.sort_unstable();
        let mut ranges: Vec<(u16, u16)> = Vec::with_capacity(list.len());
        for (from, to) in list {
            match ranges.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => ranges.push((from, to)),
            }
        }
        Ok(Slots { ranges })
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|(a, b)| usize::from(*b - *a) + 1)
            .sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `slot` is one of them.
    pub fn contains(&self, slot: u16) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }

    /// The slots in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|(a, b)| *a..=*b)
    }

    /// The merged ranges in order.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<u16>> + '_ {
        self.ranges.iter().map(|(a, b)| *a..=*b)
    }

    fn from_sorted(slots: &[u16]) -> Slots {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for &s in slots {
            match ranges.last_mut() {
                Some(last) if s == last.1.saturating_add(1) => last.1 = s,
                _ => ranges.push((s, s)),
            }
        }
        Slots { ranges }
    }
}

impl fmt::Display for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Slots {
    type Err = SimError;

    /// Slots and `from-to` ranges separated by commas (spaces allowed): `100-200,300`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let slot = |t: &str| {
                t.trim()
                    .parse::<u16>()
                    .map_err(|_| invalid(format!("{t:?} is not a slot number in {s:?}")))
            };
            let range = match part.split_once('-') {
                Some((a, b)) => slot(a)?..=slot(b)?,
                None => {
                    let n = slot(part)?;
                    n..=n
                }
            };
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(invalid(format!(
                "no slots in {s:?} (write them as 100-200,300)"
            )));
        }
        Slots::from_ranges(ranges)
    }
}

fn invalid(message: String) -> SimError {
    SimError::InvalidArgument { message }
}

// ===== options and report =====

/// How [`Simulator::migrate_slots_with`] plays a migration. The default: the habits' effect
/// delay, `SMIGRATED` sent, each notification once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateSlots {
    delay: Option<Duration>,
    smigrated: bool,
    duplicates: bool,
}

impl Default for MigrateSlots {
    fn default() -> Self {
        MigrateSlots {
            delay: None,
            smigrated: true,
            duplicates: false,
        }
    }
}

impl MigrateSlots {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time between `SMIGRATING` and the start of the move. Default: the habits'
    /// [`effect_delay`](super::Habits::effect_delay).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Whether `SMIGRATED` is sent once the slots have moved (default true). Without it,
    /// clients learn of the move only from `-MOVED` replies, as when the notification is lost.
    pub fn smigrated(mut self, on: bool) -> Self {
        self.smigrated = on;
        self
    }

    /// Whether each notification is sent twice with the same seq (default false), as the same
    /// event reaches a client more than once in the field.
    pub fn duplicates(mut self, on: bool) -> Self {
        self.duplicates = on;
        self
    }
}

/// Slots that moved from one node to another, addresses as `SMIGRATED` names them (the
/// simulator's, or the cluster's own for a node no simulator node fronts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMove {
    /// The node that owned them, `host:port`.
    pub source: String,
    /// The node that owns them now, `host:port`.
    pub destination: String,
    /// The slots.
    pub slots: Slots,
}

/// What [`Simulator::migrate_slots`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMigration {
    /// The seq of `SMIGRATING`.
    pub smigrating_seq: i64,
    /// The seq of `SMIGRATED`, when it was sent.
    pub smigrated_seq: Option<i64>,
    /// The moves, one per source node, as the `SMIGRATED` triples list them.
    pub moves: Vec<SlotMove>,
    /// How many keys `MIGRATE` moved.
    pub keys_moved: usize,
    /// How many client connections were sent `SMIGRATING` (duplicates not counted).
    pub recipients: usize,
}

// ===== the scenario =====

/// Keys moved by one `MIGRATE`.
const MIGRATE_BATCH: usize = 100;
/// The `MIGRATE` timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;

impl Simulator {
    /// Moves `slots` to the cluster node behind simulator node `to` (cluster mode), as Redis
    /// Software does behind its OSS Cluster API, and tells the clients as it does
    /// (PROTOCOL.md section 12):
    ///
    /// 1. `SMIGRATING <seq> <slots>` (`>3 +SMIGRATING :12 +123,456,5000-7000`) to every
    ///    opted-in client of every node;
    /// 2. after [`Habits::effect_delay`](super::Habits::effect_delay) (or
    ///    [`MigrateSlots::delay`]), the real move over admin connections of the simulator's
    ///    own: `CLUSTER SETSLOT <slot> IMPORTING` on the destination, `MIGRATING` on the
    ///    source, `CLUSTER GETKEYSINSLOT` and `MIGRATE ... KEYS` until the slot is empty, then
    ///    `CLUSTER SETSLOT <slot> NODE` on the destination, the source and every other primary;
    /// 3. `SMIGRATED <seq> [[source, destination, slots], ...]`, with a seq of its own and the
    ///    simulator's addresses, to the same clients.
    ///
    /// Slots `to` owns already are left out; an error when that leaves none. Returns once
    /// `SMIGRATED` is sent. A failure half-way (a [`SimError::Cluster`]) leaves the slot
    /// `MIGRATING`/`IMPORTING` as `redis-cli --cluster reshard` would (`redis-cli --cluster
    /// fix` repairs it), and sends no `SMIGRATED`.
    ///
    /// ```no_run
    /// use redis_handoff::sim::{Simulator, Slots};
    ///
    /// # async fn run() -> Result<(), redis_handoff::sim::SimError> {
    /// let sim = Simulator::builder()
    ///     .cluster(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
    ///     .start()
    ///     .await?;
    /// let slots: Slots = "0-99,5000".parse()?;
    /// let done = sim.migrate_slots(&slots, 2).await?;
    /// println!("moved {} keys: {:?}", done.keys_moved, done.moves);
    /// # Ok(()) }
    /// ```
    pub async fn migrate_slots(&self, slots: &Slots, to: usize) -> Result<SlotMigration, SimError> {
        self.migrate_slots_with(slots, to, MigrateSlots::default())
            .await
    }

    /// [`migrate_slots`](Self::migrate_slots) with options: the delay before the move, whether
    /// `SMIGRATED` is sent, duplicate notifications.
    pub async fn migrate_slots_with(
        &self,
        slots: &Slots,
        to: usize,
        options: MigrateSlots,
    ) -> Result<SlotMigration, SimError> {
        let core = Arc::clone(&self.core);
        if !core.cluster {
            return Err(invalid(
                "slots can be migrated in cluster mode only (SimulatorBuilder::cluster)".into(),
            ));
        }
        if slots.is_empty() {
            return Err(invalid("no slots to migrate".into()));
        }
        let dest_node = core.node(to)?;
        let Target::Redis { host, port } = &dest_node.target else {
            return Err(invalid(format!("node {to} does not front a cluster node")));
        };
        let mut dest = Admin::connect(host, *port).await?;
        let topology = dest.cluster_nodes().await?;
        let dest_id = dest.text(&[b"CLUSTER", b"MYID"]).await?;
        let Some(me) = topology.iter().find(|n| n.id == dest_id) else {
            return Err(dest.fail(format!("its id {dest_id} is not in its own CLUSTER NODES")));
        };
        if !me.primary {
            return Err(dest.fail("it is a replica: slots can only move to a primary".to_string()));
        }
        let dest_cluster_addr = (me.host.clone(), me.port);
        // Slot by slot, who owns it now; grouped by source, sources in the order of their
        // first slot.
        let mut by_source: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for slot in slots.iter() {
            let Some(owner) = topology
                .iter()
                .find(|n| n.primary && n.slots.iter().any(|r| r.contains(&slot)))
            else {
                return Err(dest.fail(format!("slot {slot} has no owner: nothing to move it from")));
            };
            if owner.id == dest_id {
                continue;
            }
            if !by_source.contains_key(&owner.id) {
                order.push(owner.id.clone());
            }
            by_source.entry(owner.id.clone()).or_default().push(slot);
        }
        if by_source.is_empty() {
            return Err(invalid(format!(
                "slots {slots} are on node {to} already: nothing to migrate"
            )));
        }
        let moving: Vec<u16> = by_source.values().flatten().copied().collect();
        let mut moving_sorted = moving.clone();
        moving_sorted.sort_unstable();
        let announced = Slots::from_sorted(&moving_sorted).to_string();

        let habits = *lock(&core.habits);
        let delay = options.delay.unwrap_or(habits.effect_delay);
        let seq = core.next_seq();
        let window_nodes = core.open_slot_window(seq, &announced);
        let times = if options.duplicates { 2 } else { 1 };
        let frame = smigrating_frame(seq, &announced);
        let mut recipients = 0;
        for i in 0..times {
            let sent = core.notify_all("SMIGRATING", seq, &frame);
            if i == 0 {
                recipients = sent;
            }
        }
        let moved = async {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let map = core.addr_map();
            let dest_announce = map
                .lookup(dest_cluster_addr.0.as_bytes(), dest_cluster_addr.1)
                .cloned();
            let mut keys = 0;
            let mut moves = Vec::new();
            for source_id in &order {
                let Some(source) = topology.iter().find(|n| &n.id == source_id) else {
                    continue;
                };
                let list = by_source.get(source_id).map(Vec::as_slice).unwrap_or(&[]);
                let (src_host, src_port) = core.dial_addr(&source.host, source.port);
                let mut src = Admin::connect(&src_host, src_port).await?;
                for &slot in list {
                    keys += move_slot(
                        &mut src,
                        &mut dest,
                        slot,
                        (&source.id, &dest_id),
                        &dest_cluster_addr,
                    )
                    .await?;
                }
                for other in topology
                    .iter()
                    .filter(|n| n.primary && n.id != dest_id && n.id != source.id && !n.failed)
                {
                    set_owner_on(&core, other, list, &dest_id).await;
                }
                let name = |host: &str, port: u16, to: Option<&Announce>| {
                    to.map_or_else(|| format!("{host}:{port}"), Announce::addr)
                };
                moves.push(SlotMove {
                    source: name(
                        &source.host,
                        source.port,
                        map.lookup(source.host.as_bytes(), source.port),
                    ),
                    destination: name(
                        &dest_cluster_addr.0,
                        dest_cluster_addr.1,
                        dest_announce.as_ref(),
                    ),
                    slots: Slots::from_sorted(list),
                });
            }
            Ok::<_, SimError>((moves, keys))
        }
        .await;
        core.close_slot_window(&window_nodes, seq);
        let (moves, keys_moved) = moved?;
        tracing::info!(slots = %announced, to = %dest_node.id, keys = keys_moved, "slots migrated");
        let smigrated_seq = if options.smigrated {
            let seq = core.next_seq();
            let frame = smigrated_frame(seq, &moves);
            for _ in 0..times {
                core.notify_all("SMIGRATED", seq, &frame);
            }
            Some(seq)
        } else {
            None
        };
        Ok(SlotMigration {
            smigrating_seq: seq,
            smigrated_seq,
            moves,
            keys_moved,
            recipients,
        })
    }
}

/// Moves one slot with its keys, as `redis-cli --cluster reshard` does; returns how many keys.
async fn move_slot(
    src: &mut Admin,
    dest: &mut Admin,
    slot: u16,
    (src_id, dest_id): (&str, &str),
    (dest_host, dest_port): &(String, u16),
) -> Result<usize, SimError> {
    let s = slot.to_string();
    let s = s.as_bytes();
    dest.ok(&[b"CLUSTER", b"SETSLOT", s, b"IMPORTING", src_id.as_bytes()])
        .await?;
    src.ok(&[b"CLUSTER", b"SETSLOT", s, b"MIGRATING", dest_id.as_bytes()])
        .await?;
    let batch = MIGRATE_BATCH.to_string();
    let port = dest_port.to_string();
    let timeout = MIGRATE_TIMEOUT_MS.to_string();
    let mut keys = 0;
    loop {
        let reply = src
            .call(&[b"CLUSTER", b"GETKEYSINSLOT", s, batch.as_bytes()])
            .await?;
        let names: Vec<Bytes> = match reply.elements() {
            Some(items) => items
                .iter()
                .filter_map(|k| k.text().map(Bytes::copy_from_slice))
                .collect(),
            None => return Err(src.refused("CLUSTER GETKEYSINSLOT", &reply)),
        };
        if names.is_empty() {
            break;
        }
        let mut args: Vec<&[u8]> = vec![
            b"MIGRATE",
            dest_host.as_bytes(),
            port.as_bytes(),
            b"",
            b"0",
            timeout.as_bytes(),
            b"KEYS",
        ];
        args.extend(names.iter().map(|k| &k[..]));
        let reply = src.call(&args).await?;
        // `NOKEY`: the keys expired or were deleted meanwhile; the slot is emptier anyway.
        if !matches!(reply.text(), Some(b"OK") | Some(b"NOKEY")) {
            return Err(src.refused("MIGRATE", &reply));
        }
        keys += names.len();
    }
    // The destination first, so that once the source lets go the slot has an owner that knows.
    dest.ok(&[b"CLUSTER", b"SETSLOT", s, b"NODE", dest_id.as_bytes()])
        .await?;
    src.ok(&[b"CLUSTER", b"SETSLOT", s, b"NODE", dest_id.as_bytes()])
        .await?;
    Ok(keys)
}

/// Tells another primary the slots' new owner. Its failure is not the migration's: gossip
/// carries the new owner there too, so it is logged only.
async fn set_owner_on(core: &Core, node: &ClusterNode, slots: &[u16], dest_id: &str) {
    let (host, port) = core.dial_addr(&node.host, node.port);
    let mut admin = match Admin::connect(&host, port).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell a primary the slots' new owner; gossip will");
            return;
        }
    };
    for slot in slots {
        let s = slot.to_string();
        if let Err(e) = admin
            .ok(&[
                b"CLUSTER",
                b"SETSLOT",
                s.as_bytes(),
                b"NODE",
                dest_id.as_bytes(),
            ])
            .await
        {
            tracing::warn!(error = %e, "cannot tell a primary the slot's new owner; gossip will");
            return;
        }
    }
}

/// `>3 +SMIGRATING :seq +slots`, the shape of PROTOCOL.md section 12.
pub(super) fn smigrating_frame(seq: i64, slots: &str) -> Value {
    Value::Push(vec![
        Value::Simple("SMIGRATING".into()),
        Value::Int(seq),
        Value::Simple(slots.to_string()),
    ])
}

/// `>3 +SMIGRATED :seq *n *3 +src +dst +slots ...`.
fn smigrated_frame(seq: i64, moves: &[SlotMove]) -> Value {
    let triples = moves
        .iter()
        .map(|m| {
            Value::Array(vec![
                Value::Simple(m.source.clone()),
                Value::Simple(m.destination.clone()),
                Value::Simple(m.slots.to_string()),
            ])
        })
        .collect();
    Value::Push(vec![
        Value::Simple("SMIGRATED".into()),
        Value::Int(seq),
        Value::Array(triples),
    ])
}

// ===== impl Core =====

impl Core {
    /// Sends a frame to every opted-in client of every node; returns how many got it.
    fn notify_all(&self, name: &str, seq: i64, frame: &Value) -> usize {
        self.nodes()
            .iter()
            .map(|node| self.notify(node, name, seq, |_| frame.clone()))
            .sum()
    }

    /// Opens the migration's window on every node that has none (for late joiners); returns
    /// those nodes.
    fn open_slot_window(&self, seq: i64, slots: &str) -> Vec<Arc<Node>> {
        let mut opened = Vec::new();
        for node in self.nodes() {
            let mut window = lock(&node.window);
            if window.is_none() {
                *window = Some(Window::Slots {
                    seq,
                    slots: slots.to_string(),
                });
                drop(window);
                opened.push(node);
            }
        }
        opened
    }

    fn close_slot_window(&self, nodes: &[Arc<Node>], seq: i64) {
        for node in nodes {
            let mut window = lock(&node.window);
            if matches!(&*window, Some(Window::Slots { seq: s, .. }) if *s == seq) {
                *window = None;
            }
        }
    }

    /// Where to dial a cluster node known by its announced address: the target of the
    /// simulator node in front of it when there is one (the address the simulator reaches it
    /// by), else the announced address.
    fn dial_addr(&self, host: &str, port: u16) -> (String, u16) {
        for node in self.nodes() {
            if node.knows(host, port) {
                if let Target::Redis { host, port } = &node.target {
                    return (host.clone(), *port);
                }
            }
        }
        (host.to_string(), port)
    }
}

// ===== CLUSTER NODES =====

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterNode {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The hostname after the comma, when the node announces one.
    pub(crate) hostname: Option<String>,
    pub(crate) myself: bool,
    pub(crate) primary: bool,
    pub(crate) failed: bool,
    pub(crate) slots: Vec<RangeInclusive<u16>>,
}

/// Parses `CLUSTER NODES`; lines that do not parse are skipped.
pub(crate) fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines().filter_map(parse_node_line).collect()
}

fn parse_node_line(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (id, addr, flags) = (*fields.first()?, *fields.get(1)?, *fields.get(2)?);
    let (addr, hostname) = match addr.split_once(',') {
        Some((a, h)) if !h.is_empty() => (a, Some(h.to_string())),
        Some((a, _)) => (a, None),
        None => (addr, None),
    };
    let addr = addr.split('@').next()?;
    let (host, port) = split_host_port(addr.as_bytes())?;
    let flags: Vec<&str> = flags.split(',').collect();
    let slots = fields
        .iter()
        .skip(8)
        // `[slot->-id]` / `[slot-<-id]`: a slot being migrated or imported, not owned.
        .filter(|f| !f.starts_with('['))
        .filter_map(|f| match f.split_once('-') {
            Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
            None => {
                let n: u16 = f.parse().ok()?;
                Some(n..=n)
            }
        })
        .collect();
    Some(ClusterNode {
        id: id.to_string(),
        host: String::from_utf8_lossy(host).into_owned(),
        port,
        hostname,
        myself: flags.contains(&"myself"),
        primary: flags.contains(&"master"),
        failed: flags.iter().any(|f| *f == "fail" || *f == "noaddr"),
        slots,
    })
}

/// The addresses a cluster node announces for itself (`ip:port`, and `hostname:port` when it
/// has a hostname), asked within a short time; empty when it does not answer as a cluster
/// node does.
pub(crate) async fn announced_addrs(host: &str, port: u16) -> Vec<(String, u16)> {
    let ask = async {
        let mut admin = Admin::connect(host, port).await?;
        admin.cluster_nodes().await
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(nodes)) => nodes
            .into_iter()
            .filter(|n| n.myself)
            .flat_map(|n| {
                let mut addrs = Vec::new();
                if !n.host.is_empty() {
                    addrs.push((n.host.clone(), n.port));
                }
                addrs.extend(n.hostname.map(|h| (h, n.port)));
                addrs
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot learn how the cluster node at {host}:{port} announces itself; its target address alone is mapped");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("the cluster node at {host}:{port} did not answer CLUSTER NODES within 2 s; its target address alone is mapped");
            Vec::new()
        }
    }
}

// ===== admin connections =====

/// How long an admin command may take (a `MIGRATE` included).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(MIGRATE_TIMEOUT_MS / 1000 + 5);

/// A connection of the simulator's own to a cluster node, RESP2, one command at a time.
#[derive(Debug)]
pub(crate) struct Admin {
    addr: String,
    stream: TcpStream,
    buf: BytesMut,
    cutter: FrameCutter,
}

impl Admin {
    pub(crate) async fn connect(host: &str, port: u16) -> Result<Admin, SimError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let stream =
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((host, port)))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(SimError::Cluster {
                        addr,
                        message: format!("cannot connect: {e}"),
                    })
                }
                Err(_) => {
                    return Err(SimError::Cluster {
                        addr,
                        message: "no connection within 5 s".into(),
                    })
                }
            };
        let _ = stream.set_nodelay(true);
        Ok(Admin {
            addr,
            stream,
            buf: BytesMut::with_capacity(4096),
            cutter: FrameCutter::new(FrameLimits::SERVER),
        })
    }

    fn fail(&self, message: String) -> SimError {
        SimError::Cluster {
            addr: self.addr.clone(),
            message,
        }
    }

    fn refused(&self, command: &str, reply: &Item) -> SimError {
        let said = reply.error().or_else(|| reply.text()).map_or_else(
            || String::from_utf8_lossy(&reply.encode()).into_owned(),
            |t| String::from_utf8_lossy(t).into_owned(),
        );
        self.fail(format!("{command} answered {said:?}"))
    }

    /// Sends one command and reads its reply (an error reply is a reply, not an `Err`).
    pub(crate) async fn call(&mut self, args: &[&[u8]]) -> Result<Item, SimError> {
        let frame = encode_command(
            &args
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect::<Vec<_>>(),
        );
        let started = Instant::now();
        match tokio::time::timeout(ADMIN_TIMEOUT, self.round_trip(&frame)).await {
            Ok(r) => r,
            Err(_) => Err(self.fail(format!(
                "{} did not answer within {:?}",
                String::from_utf8_lossy(args.first().copied().unwrap_or(b"")),
                started.elapsed()
            ))),
        }
    }

    async fn round_trip(&mut self, frame: &[u8]) -> Result<Item, SimError> {
        if let Err(e) = self.stream.write_all(frame).await {
            return Err(self.fail(format!("cannot write: {e}")));
        }
        loop {
            match self.cutter.next(&mut self.buf) {
                Ok(Some(Cut::Frame(bytes))) => {
                    return Item::parse(&bytes).ok_or_else(|| {
                        self.fail("sent a reply too large or too deep to read".into())
                    });
                }
                Ok(Some(Cut::Inline(_))) | Ok(None) => {}
                Err(e) => return Err(self.fail(format!("sent bytes that are not RESP: {e}"))),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(self.fail("closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(self.fail(format!("cannot read: {e}"))),
            }
        }
    }

    /// A command that must be answered `+OK`.
    async fn ok(&mut self, args: &[&[u8]]) -> Result<(), SimError> {
        let reply = self.call(args).await?;
        if reply.text() == Some(b"OK") {
            Ok(())
        } else {
            Err(self.refused(&command_name(args), &reply))
        }
    }

    /// A command answered with a string.
    async fn text(&mut self, args: &[&[u8]]) -> Result<String, SimError> {
        let reply = self.call(args).await?;
        match reply.text() {
            Some(t) => Ok(String::from_utf8_lossy(t).into_owned()),
            None => Err(self.refused(&command_name(args), &reply)),
        }
    }

    async fn cluster_nodes(&mut self) -> Result<Vec<ClusterNode>, SimError> {
        let text = self.text(&[b"CLUSTER", b"NODES"]).await?;
        Ok(parse_cluster_nodes(&text))
    }
}

/// `CLUSTER SETSLOT`, `MIGRATE`: the command's name for error messages (never its keys).
fn command_name(args: &[&[u8]]) -> String {
    let n = if args
        .first()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"cluster"))
    {
        2
    } else {
        1
    };
    args.iter()
        .take(n)
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_merge_and_print() {
        let s: Slots = "300, 100-200,201,5".parse().unwrap();
        assert_eq!(s.to_string(), "5,100-201,300");
        assert_eq!(s.len(), 104);
        assert!(s.contains(201) && !s.contains(202));
        for bad in ["", "a", "1-", "5-3", "16384", "0-16384", "-1"] {
            assert!(bad.parse::<Slots>().is_err(), "{bad:?}");
        }
        let all: Slots = "0-16383".parse().unwrap();
        assert_eq!(all.len(), 16384);
        assert_eq!(Slots::from_sorted(&[1, 2, 3, 7]).to_string(), "1-3,7");
    }

    #[test]
    fn cluster_nodes_lines_parse_with_migrating_slots_and_hostnames() {
        let text = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b]\n\
                    b 127.0.0.1:7001@17001,db-b master - 0 1 2 connected 5461-10922\n\
                    c 127.0.0.1:7002@17002 slave b 0 1 2 connected\n\
                    d :0@0 master,fail,noaddr - 0 1 4 disconnected\n\
                    garbage\n";
        let nodes = parse_cluster_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert!(nodes[0].myself && nodes[0].primary);
        assert_eq!(nodes[0].slots, vec![0..=5460]);
        assert_eq!(nodes[1].hostname.as_deref(), Some("db-b"));
        assert_eq!((nodes[1].host.as_str(), nodes[1].port), ("127.0.0.1", 7001));
        assert!(!nodes[2].primary);
        assert!(nodes[3].failed && nodes[3].host.is_empty());
    }

    #[test]
    fn notifications_have_the_section_12_shapes() {
        assert_eq!(
            &smigrating_frame(12, "123,456,5000-7000").encode(true)[..],
            b">3\r\n+SMIGRATING\r\n:12\r\n+123,456,5000-7000\r\n"
        );
        let moves = vec![SlotMove {
            source: "10.0.0.1:12000".into(),
            destination: "10.0.0.2:12000".into(),
            slots: "123,456,5000-7000".parse().unwrap(),
        }];
        assert_eq!(
            &smigrated_frame(13, &moves).encode(true)[..],
            &b">3\r\n+SMIGRATED\r\n:13\r\n*1\r\n*3\r\n+10.0.0.1:12000\r\n+10.0.0.2:12000\r\n+123,456,5000-7000\r\n"[..]
        );
    }
}
