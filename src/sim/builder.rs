//! The builder: how a simulator is configured before it starts.
//!
//! Everything here is a setting with a default; [`SimulatorBuilder::start`] binds the nodes and
//! hands back the running [`Simulator`].

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Core, SimError, Simulator};

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
    habits: super::Habits,
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
            habits: super::Habits::default(),
            migrate_latency: Duration::from_millis(100),
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
        let core = Core::new(
            target.clone(),
            self.listen_host.clone(),
            self.replay,
            self.migrate_latency,
        );
        *super::lock(&core.habits) = self.habits;
        if self.logger {
            core.interceptors.install_logger();
        }
        if self.cluster {
            core.interceptors.install_cluster();
        }
        if self.handshake {
            core.interceptors.install_hitless();
        }
        let sim = Simulator::stopping_on_drop(Arc::clone(&core));
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
