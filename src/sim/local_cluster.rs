//! A Redis Cluster of local `redis-server` processes, for the simulator's cluster mode to
//! front when there is no cluster at hand (`redis-handoff drill --sim --cluster`).
//!
//! [`LocalCluster::start`] starts `primaries` processes with `cluster-enabled yes` on free
//! ports, each in its own directory under one temporary directory, joins them with
//! `redis-cli --cluster create ... --cluster-yes`, and waits until every node says
//! `cluster_state:ok` and agrees on the slot map. Dropping it kills the processes and removes
//! the directory. `redis-server` and `redis-cli` (Redis 7 or later, for `cluster-port`) must
//! be on the `PATH`; when one is missing the error says so.
//!
//! ```no_run
//! use redis_handoff::sim::{LocalCluster, Simulator};
//!
//! # async fn run() -> Result<(), redis_handoff::sim::SimError> {
//! let cluster = LocalCluster::start(3).await?;
//! let sim = Simulator::builder().cluster(cluster.addrs()).start().await?;
//! println!("connect a cluster client to {}", sim.node(0).url());
//! # Ok(()) }
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cluster::{parse_cluster_nodes, Admin};
use super::SimError;

/// How long the processes are given to listen, and the cluster to settle.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of local `redis-server` processes, for the simulator's cluster mode to
/// front when there is no cluster at hand (`redis-handoff drill --sim --cluster`).
///
/// [`LocalCluster::start`] starts `primaries` processes with `cluster-enabled yes` on free
/// ports, each in its own directory under one temporary directory, joins them with
/// `redis-cli --cluster create ... --cluster-yes`, and waits until every node says
/// `cluster_state:ok` and agrees on the slot map. Dropping it kills the processes and removes
/// the directory. `redis-server` and `redis-cli` (Redis 7 or later, for `cluster-port`) must
/// be on the `PATH`; when one is missing the error says so.
///
/// ```no_run
/// use redis_handoff::sim::{LocalCluster, Simulator};
///
/// # async fn run() -> Result<(), redis_handoff::sim::SimError> {
/// let cluster = LocalCluster::start(3).await?;
/// let sim = Simulator::builder().cluster(cluster.addrs()).start().await?;
/// println!("connect a cluster client to {}", sim.node(0).url());
/// # Ok(()) }
/// ```
///
/// Every process is killed, and its directory removed, when this is dropped.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalNode>,
    dir: PathBuf,
}

#[derive(Debug)]
struct LocalNode {
    port: u16,
    child: Child,
}

fn process_error(program: &str, message: impl Into<String>) -> SimError {
    SimError::Process {
        program: program.to_string(),
        message: message.into(),
    }
}

/// A port nobody listens on now, as the operating system hands them out.
fn free_port() -> Result<u16, SimError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| process_error("redis-server", format!("no free port to listen on: {e}")))
}

/// A temporary directory of its own, unique in this process and among processes.
fn temp_dir() -> Result<PathBuf, SimError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "redis-handoff-cluster-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| {
        process_error(
            "redis-server",
            format!("cannot create the directory {}: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

fn spawn_error(program: &str, e: &std::io::Error) -> SimError {
    if e.kind() == std::io::ErrorKind::NotFound {
        process_error(
            program,
            format!(
                "{program} is not on the PATH: install Redis 7 or later (its server and redis-cli)"
            ),
        )
    } else {
        process_error(program, format!("cannot start {program}: {e}"))
    }
}

impl LocalCluster {
    /// Starts `primaries` (at least 3, as `redis-cli --cluster create` requires) primaries
    /// without replicas, joined into one cluster that serves every slot; see
    /// [`LocalCluster`].
    pub async fn start(primaries: usize) -> Result<LocalCluster, SimError> {
        if primaries < 3 {
            return Err(SimError::InvalidArgument {
                message: format!(
                    "a cluster needs at least 3 primaries (redis-cli --cluster create), not {primaries}"
                ),
            });
        }
        let mut cluster = LocalCluster {
            nodes: Vec::with_capacity(primaries),
            dir: temp_dir()?,
        };
        for i in 0..primaries {
            let node = cluster.spawn(&format!("node-{i}"))?;
            cluster.nodes.push(node);
        }
        for i in 0..primaries {
            // A free port can be taken by another process between being found and being
            // bound: a node that exits before listening gets fresh ports, twice at most.
            let mut attempt = 0;
            while let Some(node) = cluster.nodes.get_mut(i) {
                let Err(e) = wait_listening(node).await else {
                    break;
                };
                let exited = matches!(node.child.try_wait(), Ok(Some(_)));
                attempt += 1;
                if !exited || attempt > 2 {
                    return Err(e);
                }
                let fresh = cluster.spawn(&format!("node-{i}-again-{attempt}"))?;
                if let Some(slot) = cluster.nodes.get_mut(i) {
                    *slot = fresh;
                }
            }
        }
        let addrs = cluster.addrs();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        })
        .await
        .map_err(|e| process_error("redis-cli", format!("did not run to its end: {e}")))?;
        let out = created.map_err(|e| spawn_error("redis-cli", &e))?;
        if !out.status.success() {
            return Err(process_error(
                "redis-cli",
                format!(
                    "--cluster create failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        cluster.wait_until_settled().await?;
        Ok(cluster)
    }

    /// Starts one node on fresh ports, keeping its files under `name` in the cluster's
    /// directory.
    fn spawn(&self, name: &str) -> Result<LocalNode, SimError> {
        let port = free_port()?;
        // The cluster bus port is given explicitly: `port + 10000` may be above 65535.
        let bus = free_port()?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| {
            process_error(
                "redis-server",
                format!("cannot create the directory {}: {e}", dir.display()),
            )
        })?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .arg("--dir")
            .arg(&dir)
            .args(["--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error("redis-server", &e))?;
        Ok(LocalNode { port, child })
    }

    /// `127.0.0.1:port` of every node, in the order `redis-cli --cluster create` gave them
    /// slots.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// The ports of every node, in the order of [`addrs`](Self::addrs).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The directory the nodes keep their files (`nodes.conf`, `redis.log`) in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until every node says `cluster_state:ok` and gives the same slot map.
    async fn wait_until_settled(&self) -> Result<(), SimError> {
        let started = Instant::now();
        loop {
            let mut views = Vec::new();
            let mut ok = true;
            for port in self.ports() {
                let mut admin = Admin::connect("127.0.0.1", port).await?;
                let info = admin.call(&[b"CLUSTER", b"INFO"]).await?;
                ok &= info
                    .text()
                    .is_some_and(|t| String::from_utf8_lossy(t).contains("cluster_state:ok"));
                let nodes = admin.call(&[b"CLUSTER", b"NODES"]).await?;
                let text = nodes
                    .text()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_default();
                let mut view: Vec<(u16, Vec<_>)> = parse_cluster_nodes(&text)
                    .into_iter()
                    .filter(|n| n.primary)
                    .map(|n| (n.port, n.slots))
                    .collect();
                view.sort_by_key(|(p, _)| *p);
                views.push(view);
            }
            if ok && views.windows(2).all(|w| w[0] == w[1]) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(process_error(
                    "redis-server",
                    format!(
                        "the cluster did not settle (cluster_state:ok, one slot map) within {START_TIMEOUT:?}; see the logs under {}",
                        self.dir.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the node accepts connections, or says why it never will.
async fn wait_listening(node: &mut LocalNode) -> Result<(), SimError> {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", node.port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            let mut said = String::new();
            if let Some(mut err) = node.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut said);
            }
            return Err(process_error(
                "redis-server",
                format!(
                    "exited ({status}) before listening on port {}: {}",
                    node.port,
                    said.trim()
                ),
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(process_error(
                "redis-server",
                format!(
                    "did not listen on port {} within {START_TIMEOUT:?}",
                    node.port
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
