//! The maintenance simulator: a RESP proxy that plays managed-Redis maintenance on command.
//!
//! Redis Open Source sends no maintenance notifications, so everything this crate does about
//! them is tested through this simulator, and applications can rehearse maintenance with it.
//! It listens on several local ports ("nodes"); each client connection gets its own upstream
//! connection to a real redis-server (nodes may share one, so the data stays the same when a
//! client moves) or to the embedded in-memory store ([`Backend::Memory`]) for demos.
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
//! | faults | [`refuse`](Simulator::refuse), [`blackhole`](Simulator::blackhole), [`reset_all`](Simulator::reset_all), [`latency`](Simulator::latency), [`garbage`](Simulator::garbage), [`send_raw`](Simulator::send_raw); [`restore`](Simulator::restore) undoes them |
//!
//! A client gets SCH notifications only after it opted in with
//! `CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type <type>` (answered by the simulator), as on
//! Redis Software. Frames are injected only between two whole replies. Every notification sent
//! is recorded ([`Simulator::notifications`]) so tests can assert on what was sent and when.
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
pub mod http;
mod intercept;
mod proxy;
mod resp;
mod store;
mod upstream;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The moving-endpoint-type a client asks for: the form of the address its `MOVING` carries.
pub use crate::maintenance::EndpointType;
/// The Pub/Sub channel Azure publishes maintenance events on.
pub use crate::maintenance::AZURE_CHANNEL;
pub use azure::{AzureEvent, AzureEventKind};
pub use http::HttpServer;

use crate::endpoint::Endpoint;
use intercept::{Interceptors, SlotOwner};
use proxy::{Conn, Control, Node};
use resp::Value;
use store::MemoryStore;
use upstream::Target;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ===== public types =====

/// What the nodes forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redis-server at `host:port`.
    Redis(String),
    /// The embedded in-memory store, shared by all nodes of the simulator (for demos).
    Memory,
}

impl Backend {
    /// A redis-server at `addr` (`host:port`).
    pub fn redis(addr: impl Into<String>) -> Self {
        Backend::Redis(addr.into())
    }

    fn target(&self) -> Result<Target, SimError> {
        match self {
            Backend::Memory => Ok(Target::Memory),
            Backend::Redis(addr) => {
                let e: Endpoint = addr.parse().map_err(|e| SimError::InvalidArgument {
                    message: format!("backend address: {e}"),
                })?;
                Ok(Target::Redis {
                    host: e.host().to_string(),
                    port: e.port(),
                })
            }
        }
    }
}

/// Which clients a scenario addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every client of every node.
    All,
    /// Every client of one node.
    Node(usize),
    /// One connection, by its id (`conn_<millis>_<random>`).
    Connection(String),
}

impl From<usize> for Scope {
    fn from(node: usize) -> Self {
        Scope::Node(node)
    }
}

impl From<&str> for Scope {
    fn from(id: &str) -> Self {
        Scope::Connection(id.to_string())
    }
}

/// A frame the simulator sent to a client, as recorded in [`Simulator::notifications`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// `MOVING`, `MIGRATING`, `MIGRATED`, `FAILING_OVER`, `FAILED_OVER`, the Azure type
    /// (`NodeMaintenanceStarting`), `garbage` or `raw`.
    pub name: String,
    /// The sequence number, for SCH notifications.
    pub seq: Option<i64>,
    /// The node (index) of the connection.
    pub node: usize,
    /// The connection it went to.
    pub connection_id: String,
    /// The bytes written.
    pub bytes: Bytes,
    /// When it was queued for the client (wall clock).
    pub at: SystemTime,
    /// When it was queued, measured from the simulator's start.
    pub since_start: Duration,
}

/// A client connection, as the simulator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its id, `conn_<millis>_<random>`, unique across nodes.
    pub id: String,
    /// The node (index) it connected to.
    pub node: usize,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// When it connected.
    pub connected_at: SystemTime,
    /// The endpoint type of its handshake, when it opted in to maintenance notifications.
    pub endpoint_type: Option<EndpointType>,
    /// Whether it is subscribed to `AzureRedisEvents`.
    pub azure_subscribed: bool,
    /// Whether it speaks RESP3.
    pub resp3: bool,
}

/// What went wrong in the simulator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SimError {
    /// There is no node with this index (never started, or removed).
    NoSuchNode {
        /// The index asked for.
        node: usize,
    },
    /// A node could not listen on its address.
    Bind {
        /// The address.
        addr: String,
        /// The operating system's error.
        message: String,
    },
    /// An argument is out of range or malformed.
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoSuchNode { node } => {
                write!(
                    f,
                    "the simulator has no node {node} (nodes are numbered from 0)"
                )
            }
            SimError::Bind { addr, message } => write!(
                f,
                "cannot listen on {addr}: {message}; pick another port or stop what uses it"
            ),
            SimError::InvalidArgument { message } => write!(f, "invalid argument: {message}"),
        }
    }
}

impl std::error::Error for SimError {}

// ===== builder =====

/// Configures and starts a [`Simulator`]. See [`Simulator::builder`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    backend: Backend,
    nodes: usize,
    ports: Vec<u16>,
    listen_host: String,
    handshake: bool,
    cluster: bool,
    logger: bool,
    replay: bool,
    migrate_latency: Duration,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        SimulatorBuilder {
            backend: Backend::Memory,
            nodes: 1,
            ports: Vec::new(),
            listen_host: "127.0.0.1".to_string(),
            handshake: true,
            cluster: false,
            logger: false,
            replay: false,
            migrate_latency: Duration::from_millis(100),
        }
    }
}

impl SimulatorBuilder {
    /// Where the nodes forward to. Default: [`Backend::Memory`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How many nodes, on free ports. Default 1. Ignored when [`ports`](Self::ports) is set.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// The ports of the nodes, one node each (0 picks a free port).
    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = ports.into_iter().collect();
        self
    }

    /// The address the nodes listen on. Default `127.0.0.1`.
    pub fn listen_host(mut self, host: impl Into<String>) -> Self {
        self.listen_host = host.into();
        self
    }

    /// Whether the simulator answers `CLIENT MAINT_NOTIFICATIONS` itself (the `hitless`
    /// interceptor). Default true. When false the handshake goes to the backend, which refuses
    /// it as Redis Open Source does, and no client ever opts in.
    pub fn handshake(mut self, on: bool) -> Self {
        self.handshake = on;
        self
    }

    /// Whether `CLUSTER SLOTS` is answered with the nodes (the `cluster` interceptor).
    /// Default false.
    pub fn cluster_slots(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Whether every client frame is logged at info level (the `logger` interceptor).
    /// Default false.
    pub fn log_frames(mut self, on: bool) -> Self {
        self.logger = on;
        self
    }

    /// Whether a client that opts in is sent the node's last `MIGRATED` or `FAILED_OVER`
    /// again, as Redis Software does. Default false; see [`Simulator::set_replay`].
    pub fn replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// The latency a migration adds to every reply of the node. Default 100 ms.
    pub fn migrate_latency(mut self, latency: Duration) -> Self {
        self.migrate_latency = latency;
        self
    }

    /// Default interceptors by name, as `DEFAULT_INTERCEPTORS` lists them (`hitless`,
    /// `cluster`, `logger`, comma separated). Replaces [`handshake`](Self::handshake),
    /// [`cluster_slots`](Self::cluster_slots) and [`log_frames`](Self::log_frames).
    pub fn default_interceptors(mut self, names: &str) -> Result<Self, SimError> {
        self.handshake = false;
        self.cluster = false;
        self.logger = false;
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "hitless" => self.handshake = true,
                "cluster" => self.cluster = true,
                "logger" => self.logger = true,
                other => {
                    return Err(SimError::InvalidArgument {
                        message: format!(
                        "unknown default interceptor {other:?} (known: hitless, cluster, logger)"
                    ),
                    })
                }
            }
        }
        Ok(self)
    }

    /// Binds every node and starts serving. Must be called inside a Tokio runtime.
    pub async fn start(self) -> Result<Simulator, SimError> {
        let target = self.backend.target()?;
        let core = Arc::new(Core {
            interceptors: Interceptors::default(),
            memory: MemoryStore::new(),
            nodes: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
            next_key: AtomicUsize::new(0),
            seq: AtomicI64::new(0),
            log: Mutex::new(Vec::new()),
            replay: AtomicBool::new(self.replay),
            started: Instant::now(),
            listen_host: self.listen_host.clone(),
            default_target: target.clone(),
            migrate_latency: self.migrate_latency,
            stop: CancellationToken::new(),
        });
        if self.logger {
            core.interceptors.install_logger();
        }
        if self.cluster {
            core.interceptors.install_cluster();
        }
        if self.handshake {
            core.interceptors.install_hitless();
        }
        let sim = Simulator {
            core: Arc::clone(&core),
            _guard: Some(Arc::new(StopOnDrop(core.stop.clone()))),
        };
        let ports = if self.ports.is_empty() {
            vec![0; self.nodes]
        } else {
            self.ports.clone()
        };
        for port in ports {
            core.add_node(&self.listen_host, port, target.clone())
                .await?;
        }
        Ok(sim)
    }
}

// ===== core =====

/// The state shared by the simulator's handles, nodes and connections.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) interceptors: Interceptors,
    pub(crate) memory: Arc<MemoryStore>,
    nodes: Mutex<Vec<Arc<Node>>>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    serial: AtomicU64,
    next_key: AtomicUsize,
    seq: AtomicI64,
    log: Mutex<Vec<SentNotification>>,
    replay: AtomicBool,
    started: Instant,
    listen_host: String,
    default_target: Target,
    migrate_latency: Duration,
    stop: CancellationToken,
}

#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Core {
    pub(crate) async fn add_node(
        self: &Arc<Self>,
        listen_host: &str,
        port: u16,
        target: Target,
    ) -> Result<Arc<Node>, SimError> {
        let bind_addr = format!("{}:{}", bracket(listen_host), port);
        let listener = TcpListener::bind(&bind_addr)
            .await
            .map_err(|e| SimError::Bind {
                addr: bind_addr.clone(),
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| SimError::Bind {
            addr: bind_addr,
            message: e.to_string(),
        })?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let node = Arc::new(Node::new(
            key,
            listen_host.to_string(),
            addr,
            target,
            self.stop.child_token(),
        ));
        lock(&self.nodes).push(Arc::clone(&node));
        tokio::spawn(proxy::run_node(
            Arc::clone(self),
            Arc::clone(&node),
            listener,
        ));
        tracing::info!(node = %node.id, index = key, "simulator node listening on {addr}");
        Ok(node)
    }

    pub(crate) fn remove_node(&self, key: usize) -> bool {
        let node = {
            let mut nodes = lock(&self.nodes);
            match nodes.iter().position(|n| n.key == key) {
                Some(i) => nodes.remove(i),
                None => return false,
            }
        };
        node.stop.cancel();
        true
    }

    pub(crate) fn node(&self, key: usize) -> Result<Arc<Node>, SimError> {
        lock(&self.nodes)
            .iter()
            .find(|n| n.key == key)
            .cloned()
            .ok_or(SimError::NoSuchNode { node: key })
    }

    pub(crate) fn nodes(&self) -> Vec<Arc<Node>> {
        lock(&self.nodes).clone()
    }

    pub(crate) fn slot_owners(&self) -> Vec<SlotOwner> {
        lock(&self.nodes)
            .iter()
            .map(|n| SlotOwner {
                host: n.listen_host.clone(),
                port: n.port(),
            })
            .collect()
    }

    pub(crate) fn register(
        &self,
        node: &Node,
        client: SocketAddr,
        ctl: mpsc::UnboundedSender<Control>,
    ) -> Arc<Conn> {
        node.total.fetch_add(1, Ordering::Relaxed);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut conns = lock(&self.conns);
        let id = loop {
            let random: String = (0..9)
                .map(|_| {
                    let n = fastrand::u8(0..36);
                    char::from_digit(u32::from(n), 36).unwrap_or('0')
                })
                .collect();
            let id = format!("conn_{millis}_{random}");
            if !conns.contains_key(&id) {
                break id;
            }
        };
        let conn = Arc::new(Conn {
            id: id.clone(),
            node: node.key,
            serial,
            client,
            connected_at: now,
            state: Mutex::new(Default::default()),
            ctl,
        });
        conns.insert(id, Arc::clone(&conn));
        conn
    }

    pub(crate) fn unregister(&self, id: &str) {
        lock(&self.conns).remove(id);
    }

    /// The live connections, oldest first; of one node when `node` is given.
    pub(crate) fn conns(&self, node: Option<usize>) -> Vec<Arc<Conn>> {
        let mut v: Vec<Arc<Conn>> = lock(&self.conns)
            .values()
            .filter(|c| node.is_none_or(|n| c.node == n))
            .cloned()
            .collect();
        v.sort_by_key(|c| c.serial);
        v
    }

    pub(crate) fn conn(&self, id: &str) -> Option<Arc<Conn>> {
        lock(&self.conns).get(id).cloned()
    }

    fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends to one connection and records it.
    pub(crate) fn send_recorded(
        &self,
        conn: &Conn,
        name: &str,
        seq: Option<i64>,
        bytes: Bytes,
    ) -> bool {
        let ok = conn.send(bytes.clone());
        if ok {
            self.record(conn, name, seq, bytes);
        }
        ok
    }

    fn record(&self, conn: &Conn, name: &str, seq: Option<i64>, bytes: Bytes) {
        lock(&self.log).push(SentNotification {
            name: name.to_string(),
            seq,
            node: conn.node,
            connection_id: conn.id.clone(),
            bytes,
            at: SystemTime::now(),
            since_start: self.started.elapsed(),
        });
    }

    /// Sends an SCH notification to every opted-in client of a node; returns how many got it.
    fn notify(
        &self,
        node: &Node,
        name: &str,
        seq: i64,
        build: impl Fn(EndpointType) -> Value,
    ) -> usize {
        let mut sent = 0;
        for conn in self.conns(Some(node.key)) {
            let state = conn.state();
            let Some(kind) = state.maint else { continue };
            let bytes = build(kind).encode(state.resp3);
            if self.send_recorded(&conn, name, Some(seq), bytes) {
                sent += 1;
            }
        }
        tracing::info!(node = %node.id, name, seq, clients = sent, "notification sent");
        sent
    }

    /// The node's last end-of-maintenance notification, for a client that just opted in.
    pub(crate) fn replay_frame(&self, node: &Node, conn: &Conn) -> Option<Bytes> {
        if !self.replay.load(Ordering::Relaxed) {
            return None;
        }
        let (name, seq) = (*lock(&node.last_end))?;
        let bytes = end_frame(name, seq, &node.shard_id).encode(conn.state().resp3);
        self.record(conn, name, Some(seq), bytes.clone());
        Some(bytes)
    }

    fn update_faults(&self, node: &Node, f: impl FnOnce(&mut proxy::Faults)) {
        node.update_faults(self.migrate_latency, f);
    }

    fn close_all(&self, node: &Node, reset: bool) -> usize {
        self.conns(Some(node.key))
            .iter()
            .filter(|c| c.close(reset))
            .count()
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn secs_ceil(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

fn shard_ids(shard: &str) -> Value {
    Value::Array(vec![Value::bulk(shard)])
}

fn start_frame(name: &str, seq: i64, time: i64, shard: &str) -> Value {
    Value::Push(vec![
        Value::bulk(name),
        Value::Int(seq),
        Value::Int(time),
        shard_ids(shard),
    ])
}

fn end_frame(name: &str, seq: i64, shard: &str) -> Value {
    Value::Push(vec![Value::bulk(name), Value::Int(seq), shard_ids(shard)])
}

/// The address of a node in the form a client asked for.
fn endpoint_for(node: &Node, kind: EndpointType) -> Option<String> {
    match kind {
        EndpointType::None => None,
        EndpointType::InternalFqdn | EndpointType::ExternalFqdn => {
            Some(format!("localhost:{}", node.port()))
        }
        // `auto` is never asked for (the handshake refuses it); it would mean an IP address.
        EndpointType::InternalIp | EndpointType::ExternalIp | EndpointType::Auto => {
            let ip = match node.listen_host.parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => ip,
                _ => IpAddr::from([127, 0, 0, 1]),
            };
            Some(SocketAddr::new(ip, node.port()).to_string())
        }
    }
}

fn moving_frame(seq: i64, time: i64, endpoint: Option<String>) -> Value {
    Value::Push(vec![
        Value::bulk("MOVING"),
        Value::Int(seq),
        Value::Int(time),
        endpoint.map_or(Value::Null, Value::bulk),
    ])
}

// ===== the simulator =====

/// A running simulator. Cheap to clone; it stops (closing every node and connection) when the
/// last clone made by [`SimulatorBuilder::start`] is dropped, or on [`Simulator::shutdown`].
///
/// Nodes are numbered from 0 in the order they were started. Scenario methods never panic:
/// a bad node number is a [`SimError::NoSuchNode`]. They are safe to call concurrently.
#[derive(Debug, Clone)]
pub struct Simulator {
    core: Arc<Core>,
    _guard: Option<Arc<StopOnDrop>>,
}

/// A node of a running simulator. See [`Simulator::node`].
#[derive(Debug, Clone)]
pub struct SimNode {
    node: Arc<Node>,
    core: Arc<Core>,
}

impl SimNode {
    /// Its index.
    pub fn index(&self) -> usize {
        self.node.key
    }

    /// Its id as the admin API shows it: `<targetHost>:<targetPort>@<listenPort>`.
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// The address clients connect to, as an [`Endpoint`].
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from(self.node.addr)
    }

    /// A `redis://` URL for it.
    pub fn url(&self) -> String {
        format!("redis://{}", self.node.addr)
    }

    /// Its live client connections.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.core
            .conns(Some(self.node.key))
            .iter()
            .map(|c| info(c))
            .collect()
    }
}

fn info(c: &Conn) -> ConnectionInfo {
    let state = c.state();
    ConnectionInfo {
        id: c.id.clone(),
        node: c.node,
        client_addr: c.client,
        connected_at: c.connected_at,
        endpoint_type: state.maint,
        azure_subscribed: state.azure,
        resp3: state.resp3,
    }
}

/// A `MOVING` that was sent; the old node closes its connections in the background.
#[derive(Debug)]
pub struct Moving {
    seq: i64,
    recipients: usize,
    task: JoinHandle<()>,
}

impl Moving {
    /// The notification's sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// How many clients were sent the notification.
    pub fn recipients(&self) -> usize {
        self.recipients
    }

    /// Waits until the grace period is over and the old node's connections are closed (and, for
    /// [`Simulator::moving_null`], until the node accepts connections again).
    pub async fn done(self) {
        let _ = self.task.await;
    }

    /// Cancels what is still to come (closing, refusing, coming back).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Undoes a counted fault when a scenario ends, even if its future is dropped half-way.
struct FaultGuard<'a> {
    core: &'a Core,
    node: Arc<Node>,
    undo: fn(&mut proxy::Faults),
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        self.core.update_faults(&self.node, self.undo);
    }
}

impl Simulator {
    /// A builder: backend, number of nodes or their ports, default interceptors.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    pub(crate) fn from_core(core: Arc<Core>) -> Simulator {
        Simulator { core, _guard: None }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Node `index`.
    ///
    /// # Panics
    ///
    /// When there is no such node; use [`try_node`](Self::try_node) to get an `Option`.
    pub fn node(&self, index: usize) -> SimNode {
        match self.try_node(index) {
            Some(n) => n,
            None => panic!("the simulator has no node {index}"),
        }
    }

    /// Node `index`, if there is one.
    pub fn try_node(&self, index: usize) -> Option<SimNode> {
        self.core.node(index).ok().map(|node| SimNode {
            node,
            core: Arc::clone(&self.core),
        })
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> Vec<SimNode> {
        self.core
            .nodes()
            .into_iter()
            .map(|node| SimNode {
                node,
                core: Arc::clone(&self.core),
            })
            .collect()
    }

    /// The address node `index` listens on.
    ///
    /// # Panics
    ///
    /// When there is no such node.
    pub fn node_addr(&self, index: usize) -> SocketAddr {
        self.node(index).addr()
    }

    /// Starts one more node (on a free port when `port` is 0) with the simulator's backend;
    /// returns its index.
    pub async fn add_node(&self, port: u16) -> Result<usize, SimError> {
        let node = self
            .core
            .add_node(
                &self.core.listen_host,
                port,
                self.core.default_target.clone(),
            )
            .await?;
        Ok(node.key)
    }

    /// Stops a node: closes its listener and connections. Returns whether it existed.
    pub fn remove_node(&self, index: usize) -> bool {
        self.core.remove_node(index)
    }

    /// Every live client connection, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.core.conns(None).iter().map(|c| info(c)).collect()
    }

    /// Waits until node `index` has at least `n` live connections; false on timeout.
    pub async fn wait_for_connections(&self, index: usize, n: usize, timeout: Duration) -> bool {
        let deadline = proxy::after(timeout);
        loop {
            if self.core.conns(Some(index)).len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes one connection (a graceful close); false when there is no such connection.
    pub fn close_connection(&self, id: &str) -> bool {
        self.core.conn(id).is_some_and(|c| c.close(false))
    }

    /// Every frame sent so far by scenarios, in order.
    pub fn notifications(&self) -> Vec<SentNotification> {
        lock(&self.core.log).clone()
    }

    /// Forgets the recorded notifications.
    pub fn clear_notifications(&self) {
        lock(&self.core.log).clear();
    }

    /// Turns replay on or off: when on, a client that opts in gets the node's last `MIGRATED`
    /// or `FAILED_OVER` again, as Redis Software replays it to new connections.
    pub fn set_replay(&self, on: bool) {
        self.core.replay.store(on, Ordering::Relaxed);
    }

    /// Stops every node and closes every connection.
    pub fn shutdown(&self) {
        self.core.stop.cancel();
    }

    // ===== scenarios =====

    /// A shard migration on `node`: `MIGRATING` (seq, time, shard ids) to its opted-in clients,
    /// added latency on its replies for `duration`, then `MIGRATED` (same seq). Returns the seq.
    pub async fn migrate(&self, node: usize, duration: Duration) -> Result<i64, SimError> {
        let core = &*self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let shard = node.shard_id.clone();
        // The latency is in force before any client hears of the migration.
        core.update_faults(&node, |f| f.migrations += 1);
        core.notify(&node, "MIGRATING", seq, |_| {
            start_frame("MIGRATING", seq, secs_ceil(duration), &shard)
        });
        {
            let _guard = FaultGuard {
                core,
                node: Arc::clone(&node),
                undo: |f| f.migrations = f.migrations.saturating_sub(1),
            };
            tokio::time::sleep(duration).await;
        }
        core.notify(&node, "MIGRATED", seq, |_| {
            end_frame("MIGRATED", seq, &shard)
        });
        *lock(&node.last_end) = Some(("MIGRATED", seq));
        Ok(seq)
    }

    /// A failover of `node`: `FAILING_OVER` to its opted-in clients, commands held (not
    /// forwarded) for `duration`, then `FAILED_OVER` (same seq). Returns the seq.
    pub async fn failover(&self, node: usize, duration: Duration) -> Result<i64, SimError> {
        let core = &*self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let shard = node.shard_id.clone();
        core.update_faults(&node, |f| f.failovers += 1);
        core.notify(&node, "FAILING_OVER", seq, |_| {
            start_frame("FAILING_OVER", seq, secs_ceil(duration), &shard)
        });
        {
            let _guard = FaultGuard {
                core,
                node: Arc::clone(&node),
                undo: |f| f.failovers = f.failovers.saturating_sub(1),
            };
            tokio::time::sleep(duration).await;
        }
        core.notify(&node, "FAILED_OVER", seq, |_| {
            end_frame("FAILED_OVER", seq, &shard)
        });
        *lock(&node.last_end) = Some(("FAILED_OVER", seq));
        Ok(seq)
    }

    /// `MOVING` from node `from` to node `to`: each opted-in client of `from` gets `to`'s address
    /// in the form it asked for (ip: `127.0.0.1:port`, fqdn: `localhost:port`, none: null) and
    /// the grace period in seconds. After `grace`, every connection of `from` is closed and new
    /// ones are refused until [`restore`](Self::restore). Returns once the notification is sent.
    pub async fn moving(
        &self,
        from: usize,
        to: usize,
        grace: Duration,
    ) -> Result<Moving, SimError> {
        let core = &self.core;
        let from_node = core.node(from)?;
        let to_node = core.node(to)?;
        let seq = core.next_seq();
        let time = secs_ceil(grace);
        let recipients = core.notify(&from_node, "MOVING", seq, |kind| {
            moving_frame(seq, time, endpoint_for(&to_node, kind))
        });
        let task = self.after_grace(from_node, grace, None);
        Ok(Moving {
            seq,
            recipients,
            task,
        })
    }

    /// `MOVING` with a null endpoint to every opted-in client of `node`: the address stays, the
    /// node behind it changes. After `grace` the connections that existed when the `MOVING` was
    /// sent are closed and new ones refused for `outage`, then it accepts again at the same
    /// address. Connections made after the `MOVING` (a client reconnecting at half the grace
    /// period, as it should) count as made to the new node and stay open.
    pub async fn moving_null(
        &self,
        node: usize,
        grace: Duration,
        outage: Duration,
    ) -> Result<Moving, SimError> {
        let core = &self.core;
        let node = core.node(node)?;
        let seq = core.next_seq();
        let time = secs_ceil(grace);
        let existing: Vec<String> = core
            .conns(Some(node.key))
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let recipients = core.notify(&node, "MOVING", seq, |_| moving_frame(seq, time, None));
        let task = self.after_grace(node, grace, Some((outage, existing)));
        Ok(Moving {
            seq,
            recipients,
            task,
        })
    }

    /// After `grace`: refuse new connections and close the node's connections (with an outage,
    /// only the listed ones, and accept again after it).
    fn after_grace(
        &self,
        node: Arc<Node>,
        grace: Duration,
        outage: Option<(Duration, Vec<String>)>,
    ) -> JoinHandle<()> {
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            let stop = node.stop.clone();
            let run = async {
                tokio::time::sleep(grace).await;
                core.update_faults(&node, |f| f.refusing = true);
                let closed = match &outage {
                    None => core.close_all(&node, false),
                    Some((_, old)) => old
                        .iter()
                        .filter_map(|id| core.conn(id))
                        .filter(|c| c.close(false))
                        .count(),
                };
                tracing::info!(node = %node.id, closed, "grace period over: connections closed, new ones refused");
                if let Some((outage, _)) = outage {
                    tokio::time::sleep(outage).await;
                    core.update_faults(&node, |f| f.refusing = false);
                    tracing::info!(node = %node.id, "node is back");
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        })
    }

    /// Publishes an Azure maintenance event on `AzureRedisEvents` to the clients in `scope`
    /// that are subscribed to it (RESP3 clients get a push, RESP2 clients a Pub/Sub message).
    /// Returns how many clients got it.
    pub fn azure(&self, scope: impl Into<Scope>, event: &AzureEvent) -> Result<usize, SimError> {
        let payload = event.payload();
        let conns = self.scoped(scope.into())?;
        let mut sent = 0;
        for conn in conns {
            let state = conn.state();
            if !state.azure {
                continue;
            }
            let msg = Value::Push(vec![
                Value::bulk("message"),
                Value::bulk(AZURE_CHANNEL),
                Value::bulk(&payload),
            ]);
            if self
                .core
                .send_recorded(&conn, event.kind.name(), None, msg.encode(state.resp3))
            {
                sent += 1;
            }
        }
        tracing::info!(kind = %event.kind, clients = sent, "Azure event sent");
        Ok(sent)
    }

    fn scoped(&self, scope: Scope) -> Result<Vec<Arc<Conn>>, SimError> {
        Ok(match scope {
            Scope::All => self.core.conns(None),
            Scope::Node(n) => {
                self.core.node(n)?;
                self.core.conns(Some(n))
            }
            Scope::Connection(id) => self.core.conn(&id).into_iter().collect(),
        })
    }

    // ===== faults =====

    /// Refuses new connections to `node` (its listener is closed) until [`restore`](Self::restore).
    pub fn refuse(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.refusing = true);
        Ok(())
    }

    /// Blackholes `node` until [`restore`](Self::restore): connections are accepted but nothing
    /// is answered or forwarded (what clients send is held).
    pub fn blackhole(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.blackhole = true);
        Ok(())
    }

    /// Resets (TCP RST) every connection of `node`; returns how many.
    pub fn reset_all(&self, node: usize) -> Result<usize, SimError> {
        let node = self.core.node(node)?;
        Ok(self.core.close_all(&node, true))
    }

    /// Adds `latency` to every reply of `node` (zero removes it).
    pub fn latency(&self, node: usize, latency: Duration) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| f.latency = latency);
        Ok(())
    }

    /// Writes bytes that are not RESP to every client of `node` (between two replies);
    /// returns how many clients got them.
    pub fn garbage(&self, node: usize) -> Result<usize, SimError> {
        let node = self.core.node(node)?;
        let bytes = Bytes::from_static(b"\x00\x13garbage\xff\xfe not RESP\r\n");
        Ok(self
            .core
            .conns(Some(node.key))
            .iter()
            .filter(|c| self.core.send_recorded(c, "garbage", None, bytes.clone()))
            .count())
    }

    /// Writes a raw frame to the clients in `scope` (between two replies); returns how many
    /// clients got it. Nothing checks that the bytes are valid RESP.
    pub fn send_raw(
        &self,
        scope: impl Into<Scope>,
        bytes: impl Into<Bytes>,
    ) -> Result<usize, SimError> {
        let bytes = bytes.into();
        Ok(self
            .scoped(scope.into())?
            .iter()
            .filter(|c| self.core.send_recorded(c, "raw", None, bytes.clone()))
            .count())
    }

    /// Ends the faults of `node`: accepts connections again, no blackhole, no added latency.
    /// Migrations and failovers in progress keep their effect until they end.
    pub fn restore(&self, node: usize) -> Result<(), SimError> {
        let node = self.core.node(node)?;
        self.core.update_faults(&node, |f| {
            f.refusing = false;
            f.blackhole = false;
            f.latency = Duration::ZERO;
        });
        Ok(())
    }

    /// Serves the HTTP admin API on `addr` (such as `127.0.0.1:3000`, or port 0 for a free one).
    pub async fn serve_http(&self, addr: &str) -> Result<HttpServer, SimError> {
        http::serve(self.clone(), addr).await
    }
}
