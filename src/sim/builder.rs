//! The builder: how a simulator is configured before it starts.
//!
//! Everything here is a setting with a default; [`SimulatorBuilder::start`] binds the nodes and
//! hands back the running [`Simulator`].
//!
//! A node forwards to a target of its own: with a [`backend`](SimulatorBuilder::backend) every
//! node has the same one (several addresses in front of one database), with
//! [`cluster`](SimulatorBuilder::cluster) each node has its own cluster node.

use std::sync::Arc;
use std::time::Duration;

use super::upstream::Target;
use super::{Backend, Core, SimError, Simulator};

/// The default interceptors of Redis's test proxy, by their `DEFAULT_INTERCEPTORS` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefaultInterceptor {
    Hitless,
    Cluster,
    Logger,
}

/// Configures and starts a [`Simulator`]. See [`Simulator::builder`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    backend: Backend,
    /// Cluster mode: the cluster nodes, one simulator node each.
    cluster: Vec<String>,
    nodes: usize,
    ports: Vec<u16>,
    listen_host: String,
    /// The default interceptors, in the order they are installed (each in front of the last).
    defaults: Vec<DefaultInterceptor>,
    replay: bool,
    habits: super::Habits,
    migrate_latency: Duration,
    idle_timeout: Option<Duration>,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        SimulatorBuilder {
            backend: Backend::Memory,
            cluster: Vec::new(),
            nodes: 1,
            ports: Vec::new(),
            listen_host: "127.0.0.1".to_string(),
            defaults: vec![DefaultInterceptor::Hitless],
            replay: false,
            habits: super::Habits::default(),
            migrate_latency: Duration::from_millis(100),
            idle_timeout: None,
        }
    }
}

// ===== impl SimulatorBuilder =====

impl SimulatorBuilder {
    /// Where the nodes forward to. Default: [`Backend::Memory`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Cluster mode: one node in front of each of these cluster nodes (`host:port`), each
    /// forwarding to its own, in the order given. Replaces [`backend`](Self::backend) and
    /// [`nodes`](Self::nodes); [`ports`](Self::ports), when set, gives one port per cluster node.
    ///
    /// Replies to `CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES` and `CLUSTER REPLICAS`,
    /// and `-MOVED` / `-ASK` errors, then name the simulator's nodes instead of the cluster's
    /// (the host announced is the [`listen_host`](Self::listen_host)), in RESP2 and RESP3, so
    /// a cluster client stays behind the simulator; and [`Simulator::migrate_slots`] moves
    /// slots for real. Leave the `cluster` default interceptor off
    /// ([`cluster_slots`](Self::cluster_slots)): it would answer `CLUSTER SLOTS` with a
    /// made-up topology in place of the cluster's.
    ///
    /// Each node knows its cluster node by the address given here and by the address the
    /// cluster node announces for itself (asked with `CLUSTER NODES` when the node starts). An
    /// address no node fronts (a node removed with [`Simulator::remove_node`]) is left as the
    /// cluster writes it. Two nodes in front of one cluster node: the older one is named.
    ///
    /// ```no_run
    /// use redis_handoff::sim::Simulator;
    ///
    /// # async fn run() -> Result<(), redis_handoff::sim::SimError> {
    /// let sim = Simulator::builder()
    ///     .cluster(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
    ///     .start()
    ///     .await?;
    /// println!("a cluster client starts at {}", sim.node(0).addr());
    /// # Ok(()) }
    /// ```
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster = nodes.into_iter().map(Into::into).collect();
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
        self.set_default(DefaultInterceptor::Hitless, on);
        self
    }

    /// Whether `CLUSTER SLOTS` is answered with the nodes (the `cluster` interceptor).
    /// Default false.
    pub fn cluster_slots(mut self, on: bool) -> Self {
        self.set_default(DefaultInterceptor::Cluster, on);
        self
    }

    /// Whether every client frame is logged at info level (the `logger` interceptor).
    /// Default false.
    pub fn log_frames(mut self, on: bool) -> Self {
        self.set_default(DefaultInterceptor::Logger, on);
        self
    }

    fn set_default(&mut self, which: DefaultInterceptor, on: bool) {
        let present = self.defaults.contains(&which);
        if on && !present {
            self.defaults.push(which);
        } else if !on {
            self.defaults.retain(|d| *d != which);
        }
    }

    /// Whether a client that opts in is sent the node's last `MIGRATED` or `FAILED_OVER`
    /// again, as Redis Software does. Default false; see [`Simulator::set_replay`].
    pub fn replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// Redis Software's habits (notification shapes, effect delay, late joiners); default: none
    /// of them. See [`Habits`](super::Habits).
    pub fn habits(mut self, habits: super::Habits) -> Self {
        self.habits = habits;
        self
    }

    /// The latency a migration adds to every reply of the node. Default 100 ms.
    pub fn migrate_latency(mut self, latency: Duration) -> Self {
        self.migrate_latency = latency;
        self
    }

    /// Closes a client connection when nothing has come from or gone to the client for
    /// `timeout`, as the test proxy's `TIMEOUT` does. Default: never.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Default interceptors by name, as `DEFAULT_INTERCEPTORS` lists them (`hitless`,
    /// `cluster`, `logger`, comma separated; an empty list installs none). Replaces
    /// [`handshake`](Self::handshake), [`cluster_slots`](Self::cluster_slots) and
    /// [`log_frames`](Self::log_frames).
    ///
    /// As in Redis's test proxy they are installed in the order listed, each in front of the
    /// one before, so the last one listed runs first.
    pub fn default_interceptors(mut self, names: &str) -> Result<Self, SimError> {
        self.defaults.clear();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let which = match name {
                "hitless" => DefaultInterceptor::Hitless,
                "cluster" => DefaultInterceptor::Cluster,
                "logger" => DefaultInterceptor::Logger,
                other => {
                    return Err(SimError::InvalidArgument {
                        message: format!(
                        "unknown default interceptor {other:?} (known: hitless, cluster, logger)"
                    ),
                    })
                }
            };
            self.set_default(which, true);
        }
        Ok(self)
    }

    /// Binds every node and starts serving. Must be called inside a Tokio runtime.
    ///
    /// In cluster mode an error when the ports given are not one per cluster node, or an
    /// address does not parse; a cluster node that does not answer yet is no error (its
    /// clients are closed until it does).
    pub async fn start(self) -> Result<Simulator, SimError> {
        let cluster = !self.cluster.is_empty();
        let targets: Vec<Target> = if cluster {
            if !self.ports.is_empty() && self.ports.len() != self.cluster.len() {
                return Err(SimError::InvalidArgument {
                    message: format!(
                        "{} ports for {} cluster nodes: give one port per cluster node, or none",
                        self.ports.len(),
                        self.cluster.len()
                    ),
                });
            }
            self.cluster
                .iter()
                .map(|addr| Backend::redis(addr.clone()).target())
                .collect::<Result<_, _>>()?
        } else {
            let n = if self.ports.is_empty() {
                self.nodes
            } else {
                self.ports.len()
            };
            vec![self.backend.target()?; n]
        };
        let target = if cluster {
            // Nodes added later name their cluster node themselves.
            Target::Memory
        } else {
            self.backend.target()?
        };
        let core = Core::new(
            target,
            cluster,
            self.listen_host.clone(),
            self.replay,
            self.migrate_latency,
            self.idle_timeout,
        );
        *super::lock(&core.habits) = self.habits;
        for which in &self.defaults {
            match which {
                DefaultInterceptor::Hitless => core.interceptors.install_hitless(),
                DefaultInterceptor::Cluster => core.interceptors.install_cluster(),
                DefaultInterceptor::Logger => core.interceptors.install_logger(),
            }
        }
        let sim = Simulator::stopping_on_drop(Arc::clone(&core));
        for (i, target) in targets.into_iter().enumerate() {
            let port = self.ports.get(i).copied().unwrap_or(0);
            core.add_node(&self.listen_host, port, target).await?;
        }
        Ok(sim)
    }
}
