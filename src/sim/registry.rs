//! The registry: the state a running simulator shares between its handles, nodes and
//! connections.
//!
//! Nodes are kept in the order they started and found by their index; connections by their id
//! (`conn_<millis>_<random>`), listed oldest first. Handles, the HTTP API and the proxy all go
//! through [`Core`], so they see the same nodes and connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::intercept::{Interceptors, SlotOwner};
use super::proxy::{self, Conn, Control, Node};
use super::store::MemoryStore;
use super::topology::AddrMap;
use super::upstream::Target;
use super::{lock, SentNotification, SimError};

/// The state shared by the simulator's handles, nodes and connections.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) interceptors: Interceptors,
    pub(crate) memory: Arc<MemoryStore>,
    nodes: Mutex<Vec<Arc<Node>>>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    serial: AtomicU64,
    next_key: AtomicUsize,
    /// The last sequence number given to a notification.
    pub(crate) seq: AtomicI64,
    /// Every frame scenarios sent, in order.
    pub(crate) log: Mutex<Vec<SentNotification>>,
    /// Whether a client that opts in is sent the node's last end-of-maintenance again.
    pub(crate) replay: AtomicBool,
    /// The shapes and timing of notifications.
    pub(crate) habits: Mutex<super::Habits>,
    pub(crate) started: Instant,
    pub(crate) listen_host: String,
    /// What nodes added later forward to.
    pub(crate) default_target: Target,
    /// Cluster mode: each node fronts its own cluster node, and topology replies and
    /// redirects are rewritten to the nodes' addresses.
    pub(crate) cluster: bool,
    pub(crate) migrate_latency: Duration,
    /// A client connection idle this long is closed (the test proxy's `TIMEOUT`).
    pub(crate) idle_timeout: Option<Duration>,
    /// Cancelled when the simulator stops.
    pub(crate) stop: CancellationToken,
}

// ===== impl Core =====

impl Core {
    /// The state of a simulator with no nodes yet, whose nodes forward to `default_target`.
    pub(crate) fn new(
        default_target: Target,
        cluster: bool,
        listen_host: String,
        replay: bool,
        migrate_latency: Duration,
        idle_timeout: Option<Duration>,
    ) -> Arc<Core> {
        Arc::new(Core {
            interceptors: Interceptors::default(),
            memory: MemoryStore::new(),
            nodes: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
            next_key: AtomicUsize::new(0),
            seq: AtomicI64::new(0),
            log: Mutex::new(Vec::new()),
            replay: AtomicBool::new(replay),
            habits: Mutex::new(super::Habits::default()),
            started: Instant::now(),
            listen_host,
            default_target,
            cluster,
            migrate_latency,
            idle_timeout,
            stop: CancellationToken::new(),
        })
    }

    pub(crate) async fn add_node(
        self: &Arc<Self>,
        listen_host: &str,
        port: u16,
        target: Target,
    ) -> Result<Arc<Node>, SimError> {
        let mut aliases = Vec::new();
        if let (true, Target::Redis { host, port }) = (self.cluster, &target) {
            aliases.push((host.clone(), *port));
            for alias in super::cluster::announced_addrs(host, *port).await {
                if !aliases.contains(&alias) {
                    aliases.push(alias);
                }
            }
        }
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
            aliases,
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

    /// Cluster addresses and the simulator addresses that replace them, nodes in order.
    pub(crate) fn addr_map(&self) -> AddrMap {
        let mut map = AddrMap::default();
        for node in lock(&self.nodes).iter() {
            let to = node.announce();
            for (host, port) in &node.aliases {
                map.insert(host, *port, to.clone());
            }
        }
        map
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
            dark: tokio::sync::watch::Sender::new(false),
            born: Instant::now(),
            active_ms: AtomicU64::new(0),
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

    /// Closes every connection of a node (with a reset or gracefully); returns how many.
    pub(crate) fn close_all(&self, node: &Node, reset: bool) -> usize {
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
