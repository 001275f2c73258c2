//! The maintenance drill: a workload through a client stack while maintenance happens, and a
//! report of what the application saw.
//!
//! A [`Drill`] connects a client, either the recommended [`Stack`](crate::Stack)
//! ([`StackKind::Full`]) or a bare [`Connection`](crate::Connection) ([`StackKind::None`]), to
//! an embedded [`Simulator`](crate::sim::Simulator) or to an endpoint of your own, runs
//! `concurrency` tasks that send `GET`, `SET` and `INCR` back to back for `duration`, and plays
//! the [`Scenario`]s on the simulator while they run. The [`DrillReport`] it returns counts the
//! commands, the failures, the retries and the handoffs, gives the latency percentiles overall
//! and inside the maintenance windows, and counts the notifications the client heard.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_handoff::drill::{Drill, DrillConfig, Scenario, StackKind, Target};
//! use redis_handoff::sim::Backend;
//!
//! # async fn run() -> Result<(), redis_handoff::drill::DrillError> {
//! let report = Drill::new(DrillConfig {
//!     target: Target::Simulator(Backend::Memory),
//!     stack: StackKind::Full,
//!     scenarios: vec![Scenario::Moving],
//!     duration: Duration::from_secs(5),
//!     ..DrillConfig::default()
//! })
//! .run()
//! .await?;
//! println!("{report}");
//! assert_eq!(report.failed, 0);
//! # Ok(()) }
//! ```
//!
//! # What is measured
//!
//! - Every command's latency is the time its task waited, from asking the service for room to
//!   the reply or the error, answered or failed alike. Latencies go into
//!   [`hdrhistogram::Histogram`]s.
//! - A maintenance window runs from a scenario's first notification to its end: `MIGRATED`,
//!   `FAILED_OVER`, the Azure `NodeMaintenanceEnded`, or for `MOVING` the end of its grace period
//!   (for a `MOVING` with a null endpoint, the end of the outage that follows it). A command is
//!   inside a window when it *started* inside it. Against an endpoint of your own the windows
//!   are taken from the notifications the stack hears.
//! - A task whose command failed pauses for [`DrillConfig::failure_pause`] before the next one,
//!   as a client backs off, so that a dead connection is not counted as millions of instant
//!   failures.
//! - A bare connection that closes is dialled again (one attempt at a time, every 100 ms),
//!   as an application without this crate would do; commands sent until it is back fail and
//!   are counted.

mod client;
mod plot;
mod report;
mod scenario;
mod svg;
mod workload;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sim::{Backend, SimError};

pub use plot::{stacked_svg, PlotLayout};
pub use report::{
    side_by_side, DrillReport, LatencySummary, TimelineBucket, Window, TIMELINE_BUCKET,
};

use client::Client;

// ===== configuration =====

/// A maintenance the drill plays on the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// `MOVING` from the node the client is on to the other one; the old node closes its
    /// connections when the grace period is over, then serves again (as a database's address
    /// leads to the new node once the move is over). Later scenarios play on the new node.
    Moving,
    /// `MOVING` with a null endpoint: the node closes the connections it had when the grace
    /// period is over and refuses new ones for half a second.
    MovingNull,
    /// `MIGRATING`, added latency, `MIGRATED`.
    Migrate,
    /// `FAILING_OVER`, commands held, `FAILED_OVER`.
    Failover,
    /// Azure events: `NodeMaintenanceStarting`, added latency,
    /// `NodeMaintenanceFailoverComplete`, `NodeMaintenanceEnded`.
    Azure,
    /// Cluster only ([`Target::SimulatedCluster`]): slots that the drill's keys hash to move
    /// for real to another primary, with `SMIGRATING` before and `SMIGRATED` after
    /// ([`Simulator::migrate_slots`](crate::sim::Simulator::migrate_slots)). Not part of
    /// `all`.
    MigrateSlots,
}

impl Scenario {
    /// Every scenario, in the order `all` plays them: `MOVING` changes the node the client is
    /// on, so it comes last and every other scenario happens on the node the client started on.
    pub const ALL: [Scenario; 5] = [
        Scenario::Migrate,
        Scenario::Failover,
        Scenario::MovingNull,
        Scenario::Azure,
        Scenario::Moving,
    ];

    /// Its name on the command line: `moving`, `moving-null`, `migrate`, `failover`, `azure`,
    /// `migrate-slots`.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Moving => "moving",
            Scenario::MovingNull => "moving-null",
            Scenario::Migrate => "migrate",
            Scenario::Failover => "failover",
            Scenario::Azure => "azure",
            Scenario::MigrateSlots => "migrate-slots",
        }
    }

    /// Every scenario a name can be given for: [`Scenario::ALL`] and the cluster's own.
    const NAMED: [Scenario; 6] = [
        Scenario::Migrate,
        Scenario::Failover,
        Scenario::MovingNull,
        Scenario::Azure,
        Scenario::Moving,
        Scenario::MigrateSlots,
    ];

    /// A scenario by name, or a list of them: `all` (every one, in the order of
    /// [`Scenario::ALL`]), `none` (an empty list), or names separated by commas.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, DrillError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Scenario::ALL.to_vec()),
            "none" | "" => Ok(Vec::new()),
            list => list.split(',').map(|n| n.trim().parse()).collect(),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = DrillError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        Scenario::NAMED
            .into_iter()
            .find(|sc| sc.name() == key)
            .ok_or_else(|| DrillError::Config {
                message: format!(
                    "unknown scenario {s:?} (known: moving, moving-null, migrate, failover, azure, migrate-slots, all, none)"
                ),
            })
    }
}

/// The client the workload goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StackKind {
    /// The recommended [`Stack`](crate::Stack): relaxed timeouts, handoffs and retries over the
    /// notification demux.
    #[default]
    Full,
    /// One bare [`Connection`](crate::Connection), dialled again when it closes.
    None,
    /// The [`Cluster`](crate::Cluster) client against a Redis Cluster (an endpoint of your own:
    /// any node of it, or [`Target::SimulatedCluster`]): one full stack per primary, keys
    /// routed by slot. The report counts
    /// the `MOVED` and `ASK` redirects it followed and the topology refreshes it made.
    Cluster,
}

impl StackKind {
    /// Its name on the command line: `full`, `none` or `cluster`.
    pub const fn name(self) -> &'static str {
        match self {
            StackKind::Full => "full",
            StackKind::None => "none",
            StackKind::Cluster => "cluster",
        }
    }
}

impl fmt::Display for StackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StackKind {
    type Err = DrillError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(StackKind::Full),
            "none" | "bare" => Ok(StackKind::None),
            "cluster" => Ok(StackKind::Cluster),
            _ => Err(DrillError::Config {
                message: format!("unknown stack {s:?} (known: full, none, cluster)"),
            }),
        }
    }
}

/// Where the workload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An embedded simulator with two nodes in front of this backend; the client connects to
    /// node 0 and the drill plays the scenarios on it.
    Simulator(Backend),
    /// An endpoint of your own (a `redis://` or `rediss://` URL, or `host:port`): a
    /// `redis-handoff sim` started elsewhere, or a managed database during its maintenance.
    /// The drill plays no scenario here; it records the maintenance the server announces.
    Endpoint(String),
    /// An embedded Redis Cluster: three local `redis-server` primaries started for the drill
    /// ([`LocalCluster`](crate::sim::LocalCluster): `redis-server` and `redis-cli` on the
    /// `PATH`) with the simulator in cluster mode in front of them; the client connects to
    /// the simulator's node 0. For [`StackKind::Cluster`] and [`Scenario::MigrateSlots`].
    SimulatedCluster,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Simulator(Backend::Memory) => f.write_str("simulator over the in-memory store"),
            Target::Simulator(Backend::Redis(addr)) => {
                write!(f, "simulator over redis-server at {addr}")
            }
            // Never the password of a `redis://user:password@host` target.
            Target::Endpoint(url) => f.write_str(&crate::connection::redact_url(url)),
            Target::SimulatedCluster => {
                f.write_str("simulator over a local Redis Cluster of 3 primaries")
            }
        }
    }
}

/// What a [`Drill`] does; every field has a default ([`DrillConfig::default`]).
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// Where the workload goes. Default: a simulator over the in-memory store.
    pub target: Target,
    /// The client. Default: the full stack.
    pub stack: StackKind,
    /// The maintenance to play, in order. Default: [`Scenario::ALL`]. Must be empty for
    /// [`Target::Endpoint`], and [`Scenario::MigrateSlots`] alone (or nothing) for
    /// [`Target::SimulatedCluster`].
    pub scenarios: Vec<Scenario>,
    /// How many tasks send commands, each one at a time. Default 16.
    pub concurrency: usize,
    /// How long the load runs. Default 20 s. When the scenarios need longer, the load runs
    /// until they are over and a short tail after them.
    pub duration: Duration,
    /// The full stack's normal per-command timeout (relaxed during maintenance). Default 1 s.
    /// The bare connection has no timeout.
    pub timeout: Duration,
    /// How many keys `GET` and `SET` spread over (`drill:0`, `drill:1`, ...; each task also
    /// increments `drill:counter:<task>`). The drill deletes them when it is over. Default 1000.
    pub keys: usize,
    /// The size of the values `SET` writes, in bytes. Default 64.
    pub value_size: usize,
    /// How long a task pauses after a failed command. Default 10 ms.
    pub failure_pause: Duration,
    /// How long the load waits, once it is over, for the commands still owed a reply; those
    /// that get none count as failed (`unanswered`). Default 15 s.
    pub drain_timeout: Duration,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            target: Target::Simulator(Backend::Memory),
            stack: StackKind::Full,
            scenarios: Scenario::ALL.to_vec(),
            concurrency: 16,
            duration: Duration::from_secs(20),
            timeout: Duration::from_secs(1),
            keys: 1000,
            value_size: 64,
            failure_pause: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(15),
        }
    }
}

/// Why a drill could not run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DrillError {
    /// The configuration cannot be run as it is.
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The simulator failed to start or to play a scenario.
    Simulator(SimError),
    /// The client could not connect.
    Connect(Error),
}

impl fmt::Display for DrillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrillError::Config { message } => write!(f, "invalid drill: {message}"),
            DrillError::Simulator(e) => write!(f, "simulator: {e}"),
            DrillError::Connect(e) => write!(f, "cannot connect: {e}"),
        }
    }
}

impl std::error::Error for DrillError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DrillError::Config { .. } => None,
            DrillError::Simulator(e) => Some(e),
            DrillError::Connect(e) => Some(e),
        }
    }
}

impl From<SimError> for DrillError {
    fn from(e: SimError) -> Self {
        DrillError::Simulator(e)
    }
}

// ===== progress =====

/// A live view of a running drill, for a progress bar; see [`Drill::progress`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    shared: Arc<ProgressShared>,
}

#[derive(Debug, Default)]
struct ProgressShared {
    commands: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    started: OnceLock<Instant>,
    planned_ms: AtomicU64,
    phase: Mutex<String>,
    finished: AtomicBool,
}

/// What a drill has done so far; see [`Progress::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// Time since the load started (zero before).
    pub elapsed: Duration,
    /// How long the load is planned to run (it may run longer when scenarios need it).
    pub planned: Duration,
    /// Commands answered or failed so far.
    pub commands: u64,
    /// Commands answered.
    pub ok: u64,
    /// Commands failed.
    pub failed: u64,
    /// What the drill is doing: `connecting`, `load`, a scenario's name, `draining`, `done`.
    pub phase: String,
    /// Whether the drill is over.
    pub finished: bool,
}

impl Progress {
    /// What the drill has done so far.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let s = &self.shared;
        ProgressSnapshot {
            elapsed: s.started.get().map_or(Duration::ZERO, Instant::elapsed),
            planned: Duration::from_millis(s.planned_ms.load(Ordering::Relaxed)),
            commands: s.commands.load(Ordering::Relaxed),
            ok: s.ok.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            phase: crate::sim::lock(&s.phase).clone(),
            finished: s.finished.load(Ordering::Acquire),
        }
    }

    pub(crate) fn set_phase(&self, phase: &str) {
        let mut p = crate::sim::lock(&self.shared.phase);
        p.clear();
        p.push_str(phase);
    }

    fn start(&self, at: Instant, planned: Duration) {
        let _ = self.shared.started.set(at);
        self.set_planned(planned);
    }

    pub(crate) fn set_planned(&self, planned: Duration) {
        let ms = u64::try_from(planned.as_millis()).unwrap_or(u64::MAX);
        self.shared.planned_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, ok: bool) {
        let s = &self.shared;
        s.commands.fetch_add(1, Ordering::Relaxed);
        if ok {
            s.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            s.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn finish(&self) {
        self.set_phase("done");
        self.shared.finished.store(true, Ordering::Release);
    }
}

// ===== the drill =====

/// A workload through a client while maintenance happens; see the [module docs](self).
#[derive(Debug)]
pub struct Drill {
    config: DrillConfig,
    progress: Progress,
}

impl Drill {
    /// A drill with this configuration; nothing happens until [`run`](Self::run).
    pub fn new(config: DrillConfig) -> Self {
        Drill {
            config,
            progress: Progress::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DrillConfig {
        &self.config
    }

    /// A live view of the drill, to draw a progress bar from while [`run`](Self::run) goes on.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Starts the simulator (for [`Target::Simulator`]), connects, runs the load and the
    /// scenarios, and reports. Needs a Tokio runtime with timers and I/O; a multi-threaded one
    /// keeps the load from delaying the simulator.
    pub async fn run(self) -> Result<DrillReport, DrillError> {
        let result = self.run_inner().await;
        self.progress.finish();
        result
    }

    async fn run_inner(&self) -> Result<DrillReport, DrillError> {
        let config = &self.config;
        validate(config)?;
        self.progress.set_phase("connecting");
        // Kept until the drill is over: dropping it stops the cluster's processes.
        let mut local_cluster = None;
        let sim = match &config.target {
            Target::Simulator(backend) => Some(
                crate::sim::Simulator::builder()
                    .backend(backend.clone())
                    .nodes(2)
                    .start()
                    .await?,
            ),
            Target::SimulatedCluster => {
                let cluster = crate::sim::LocalCluster::start(3).await?;
                let sim = crate::sim::Simulator::builder()
                    .cluster(cluster.addrs())
                    .start()
                    .await?;
                local_cluster = Some(cluster);
                Some(sim)
            }
            Target::Endpoint(_) => None,
        };
        let url = match (&sim, &config.target) {
            (Some(sim), _) => sim.node(0).url(),
            (None, Target::Endpoint(url)) if url.contains("://") => url.clone(),
            (None, Target::Endpoint(addr)) => format!("redis://{addr}"),
            (None, Target::Simulator(_) | Target::SimulatedCluster) => {
                return Err(DrillError::Config {
                    message: "the simulator did not start".into(),
                })
            }
        };
        let azure = config.scenarios.contains(&Scenario::Azure);
        let client = Client::connect(config.stack, &url, config.timeout, azure).await?;
        let events = client.record_events();

        let schedule = scenario::Schedule::new(&config.scenarios, config.duration);
        let t0 = Instant::now();
        self.progress
            .start(t0, config.duration.max(schedule.needs()));
        self.progress.set_phase("load");
        let load = workload::start(&client, config, t0, self.progress.clone());

        let played = match &sim {
            Some(sim) => scenario::play(sim, &schedule, t0, &self.progress, config).await,
            None => Ok(Vec::new()),
        };
        let windows = match played {
            Ok(w) => w,
            Err(e) => {
                load.abort();
                return Err(e.into());
            }
        };
        let tail = schedule.tail();
        let end = (t0 + config.duration).max(Instant::now() + tail);
        self.progress.set_planned(end - t0);
        tokio::time::sleep_until(end.into()).await;
        self.progress.set_phase("draining");
        let samples = load.finish(config.drain_timeout).await;
        let elapsed = t0.elapsed();
        let observed = events.finish(t0).await;
        let windows = if sim.is_some() {
            windows
        } else {
            report::windows_from_events(&observed, elapsed)
        };
        let stats = client.stats();
        self.progress.set_phase("cleaning up");
        workload::clean_up(&client, config).await;
        client.close();
        if let Some(sim) = &sim {
            sim.shutdown();
        }
        drop(local_cluster);
        Ok(report::build(report::Inputs {
            config,
            samples,
            windows,
            observed: &observed,
            stats,
            elapsed,
        }))
    }
}

fn validate(config: &DrillConfig) -> Result<(), DrillError> {
    let bad = |message: &str| {
        Err(DrillError::Config {
            message: message.to_string(),
        })
    };
    if config.concurrency == 0 {
        return bad("the concurrency must be at least 1");
    }
    if config.duration.is_zero() {
        return bad("the duration must be more than zero");
    }
    if config.keys == 0 {
        return bad("the key space must hold at least one key");
    }
    if config.duration > Duration::from_secs(3600) {
        return bad("a drill runs for an hour at most");
    }
    let cluster_target = matches!(
        config.target,
        Target::Endpoint(_) | Target::SimulatedCluster
    );
    if config.stack == StackKind::Cluster && !cluster_target {
        return bad(
            "the cluster client runs against a Redis Cluster: give any node of one of your own \
             as the endpoint (`--addr`), or use the simulated cluster (`--sim --cluster`); the \
             embedded two-node simulator plays a single database",
        );
    }
    if matches!(config.target, Target::SimulatedCluster) {
        if config.stack != StackKind::Cluster {
            return bad("the simulated cluster is driven through the cluster client (`--cluster`)");
        }
        if config
            .scenarios
            .iter()
            .any(|s| *s != Scenario::MigrateSlots)
        {
            return bad(
                "the simulated cluster plays `migrate-slots` only (or `none`); the other \
                 scenarios are for the two-node simulator",
            );
        }
    } else if config.scenarios.contains(&Scenario::MigrateSlots) {
        return bad("`migrate-slots` needs the simulated cluster (`--sim --cluster`)");
    }
    if matches!(config.target, Target::Endpoint(_)) && !config.scenarios.is_empty() {
        return bad(
            "scenarios are played by the embedded simulator only; against an endpoint of your \
             own use no scenario and trigger the maintenance there (for a `redis-handoff sim`, \
             through its admin API)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_url_is_shown_without_its_password() {
        let shown =
            Target::Endpoint("redis://app:hunter2@cache.internal:6380/1".into()).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cache.internal:6380"), "{shown}");
    }

    #[test]
    fn scenario_lists_parse_by_name() {
        assert_eq!(Scenario::parse_list("all").unwrap(), Scenario::ALL.to_vec());
        assert!(Scenario::parse_list("none").unwrap().is_empty());
        assert_eq!(
            Scenario::parse_list("moving-null, Migrate").unwrap(),
            vec![Scenario::MovingNull, Scenario::Migrate]
        );
        assert_eq!(
            "moving_null".parse::<Scenario>().unwrap(),
            Scenario::MovingNull
        );
        let err = Scenario::parse_list("moving,reboot").unwrap_err();
        assert!(err.to_string().contains("reboot"), "{err}");
        assert_eq!("none".parse::<StackKind>().unwrap(), StackKind::None);
        assert!("half".parse::<StackKind>().is_err());
    }

    #[test]
    fn a_scenario_against_an_endpoint_of_your_own_is_refused() {
        let config = DrillConfig {
            target: Target::Endpoint("127.0.0.1:6379".into()),
            scenarios: vec![Scenario::Moving],
            ..DrillConfig::default()
        };
        assert!(matches!(validate(&config), Err(DrillError::Config { .. })));
        let config = DrillConfig {
            concurrency: 0,
            ..DrillConfig::default()
        };
        assert!(validate(&config).is_err());
        assert!(validate(&DrillConfig::default()).is_ok());
        let config = DrillConfig {
            stack: StackKind::Cluster,
            ..DrillConfig::default()
        };
        assert!(
            validate(&config).is_err(),
            "the cluster client needs a cluster"
        );
        let config = DrillConfig {
            stack: StackKind::Cluster,
            target: Target::Endpoint("127.0.0.1:7000".into()),
            scenarios: Vec::new(),
            ..DrillConfig::default()
        };
        assert!(validate(&config).is_ok());
        assert_eq!("cluster".parse::<StackKind>().unwrap(), StackKind::Cluster);
    }
}
