//! The handle to a running simulator, and the views of its nodes and connections.
//!
//! [`Simulator`] is what [`SimulatorBuilder::start`](super::SimulatorBuilder::start) returns.
//! This module holds what it says about itself (nodes, connections, what was sent); the
//! scenarios and faults it plays are in their own modules.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::proxy::{self, Conn, Node};
use super::upstream::Target;
use super::{http, lock, Core, EndpointType, HttpServer, SentNotification, SimError};
use super::{Backend, SimulatorBuilder};
use crate::endpoint::Endpoint;

/// A running simulator. Cheap to clone; it stops (closing every node and connection) when the
/// last clone made by [`SimulatorBuilder::start`] is dropped, or on [`Simulator::shutdown`].
///
/// Nodes are numbered from 0 in the order they were started. Scenario methods never panic:
/// a bad node number is a [`SimError::NoSuchNode`]. They are safe to call concurrently.
#[derive(Debug, Clone)]
pub struct Simulator {
    pub(super) core: Arc<Core>,
    _guard: Option<Arc<StopOnDrop>>,
}

/// A node of a running simulator. See [`Simulator::node`].
#[derive(Debug, Clone)]
pub struct SimNode {
    node: Arc<Node>,
    core: Arc<Core>,
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

/// Stops the simulator when the last handle made by the builder is dropped.
#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

// ===== impl Simulator =====

impl Simulator {
    /// A builder: backend, number of nodes or their ports, default interceptors.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// A handle that does not stop the simulator when dropped (the HTTP API's).
    pub(crate) fn from_core(core: Arc<Core>) -> Simulator {
        Simulator { core, _guard: None }
    }

    /// The shared state.
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The handle the builder returns: the simulator stops when its last clone is dropped.
    pub(super) fn stopping_on_drop(core: Arc<Core>) -> Simulator {
        let guard = Arc::new(StopOnDrop(core.stop.clone()));
        Simulator {
            core,
            _guard: Some(guard),
        }
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
    /// returns its index. In cluster mode a node needs a cluster node of its own: an error
    /// that points to [`add_node_to`](Self::add_node_to).
    pub async fn add_node(&self, port: u16) -> Result<usize, SimError> {
        if self.core.cluster {
            return Err(SimError::InvalidArgument {
                message: "in cluster mode each node fronts a cluster node of its own: use add_node_to(port, Backend::redis(\"host:port\"))".into(),
            });
        }
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

    /// Starts one more node (on a free port when `port` is 0) that forwards to `backend`;
    /// returns its index. In cluster mode `backend` is the cluster node it fronts, and the
    /// node joins the rewritten topology at once (as a node joins during a rolling upgrade).
    pub async fn add_node_to(&self, port: u16, backend: Backend) -> Result<usize, SimError> {
        let target = backend.target()?;
        let node = self
            .core
            .add_node(&self.core.listen_host, port, target)
            .await?;
        Ok(node.key)
    }

    /// Stops a node: closes its listener and connections. Returns whether it existed.
    ///
    /// In cluster mode its cluster node's address is no longer rewritten: topology replies and
    /// redirects name that cluster node as the cluster does, and a client that follows them
    /// talks to it directly.
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

    /// Sets Redis Software's habits for what follows: the shapes of notifications, the delay
    /// before their effect, what late joiners are told; see [`Habits`](super::Habits).
    pub fn set_habits(&self, habits: super::Habits) {
        *super::lock(&self.core.habits) = habits;
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

    /// Serves the HTTP admin API on `addr` (such as `127.0.0.1:3000`, or port 0 for a free one).
    pub async fn serve_http(&self, addr: &str) -> Result<HttpServer, SimError> {
        http::serve(self.clone(), addr).await
    }
}

// ===== impl SimNode =====

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

    /// The `host:port` it forwards to (in cluster mode, its cluster node); `None` for the
    /// in-memory store.
    pub fn target(&self) -> Option<String> {
        match &self.node.target {
            Target::Redis { host, port } if host.contains(':') => Some(format!("[{host}]:{port}")),
            Target::Redis { host, port } => Some(format!("{host}:{port}")),
            Target::Memory => None,
        }
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

/// What a connection looks like from outside.
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
