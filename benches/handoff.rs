//! Maintenance through the simulator: redis-handoff's full stack against fred 10.1 with a
//! reconnect policy, redis-rs 1.8 (`ConnectionManager`, and its multiplexed connection, which
//! never reconnects) and redis-tower 0.1 with its maintenance handling on, under the same
//! read/write load.
//!
//! ```text
//! cargo bench --features sim --bench handoff
//! HANDOFF_BENCH_SCENARIOS=moving HANDOFF_BENCH_RATE=5000 cargo bench --features sim --bench handoff
//! ```
//!
//! The bench starts its own `redis-server` (from `PATH`, or `REDIS_SERVER`) on a free loopback
//! port and, for every client and scenario, a fresh simulator with two nodes in front of it.
//! The client connects to node 0; 50 tasks each alternate `INCR` and `GET` on a key of their own.
//! A run is a warm-up (1 s, not measured), the steady state (measured), the scenario, a tail.
//!
//! | scenario   | what the simulator does                                                    | window                          |
//! | ---------- | -------------------------------------------------------------------------- | ------------------------------- |
//! | `moving`   | `MOVING` node 0 -> node 1, 2 s grace; then node 0 closes its connections and refuses new ones for an outage (1 s), then accepts again | `MOVING` sent until grace end + 1 s |
//! | `migrate`  | `MIGRATING`, 300 ms added to every reply of node 0 for 3 s, `MIGRATED`      | the 3 s                         |
//! | `failover` | `FAILING_OVER`, commands to node 0 held for 2 s, `FAILED_OVER`              | the 2 s                         |
//! | `silent`   | node 0's open connections go dark both ways, unannounced (a NAT entry dropped, a VM gone behind a load balancer); new connections are served; after 8 s the path heals | the 8 s                         |
//!
//! redis-handoff opts in to maintenance notifications with `moving-endpoint-type internal-ip`,
//! so its `MOVING` carries node 1's address. redis-tower opts in with `moving-endpoint-type
//! none` (the only kind it handles) and reconnects to its configured address at half the grace
//! period; its `MOVING` is played as Redis plays one without an endpoint (`moving_null`): the
//! address stays and the node behind it changes, so a connection made after the `MOVING` is a
//! connection to the new node and stays open, and only the older ones close after the grace
//! period. fred and redis-rs are told nothing. Managed Redis re-points the database's address
//! to the new node, so after the grace period node 0 comes back after the outage and stands for
//! that new node: the peers' reconnects to their configured address succeed again.
//! redis-handoff has left node 0 by then.
//!
//! What is measured:
//!
//! - **failed**: every command that returned an error, over the whole run.
//! - **latency**: of successful commands; closed loop from the call to the reply, at a fixed rate
//!   from the command's scheduled start (so time spent behind a stalled command counts).
//!   Steady p99.9: the commands that started and ended in the steady state. Window percentiles: the
//!   commands whose run overlapped the window (a command held across its start counts).
//! - **silent: dark -> first reply**: from the moment the connections went dark to the first
//!   successful reply of a command that started after it, on whatever connection: how long a
//!   silently dead peer stops the client. redis-handoff's commands have a 1 s timeout (the
//!   stack's default), and its health check replaces the connection; the peers keep waiting on
//!   theirs until the path heals.
//! - **MOVING -> first reply from the new node**: from the moment the simulator sent `MOVING`.
//!   redis-handoff: to the reply of the first command that started after the stack's
//!   `HandoffSwitched` event (from then on commands go to the new connection); redis-tower: the
//!   same after its `Reconnected` event. The other peers: to their first successful reply after
//!   node 0 came back from the outage (the first moment their reconnect can reach "the new
//!   node").
//! - **INCR/GET mismatches**: each task knows what its counter must hold; an `INCR` that does not
//!   answer the last value + 1, or a `GET` that does not answer the last value, is counted (a
//!   reply for another command, or an increment applied twice). After a failed `INCR` the task
//!   re-learns the value from its next `GET`.
//! - **unacknowledged increments**: at the end, the counters (read from redis-server directly)
//!   less the `INCR`s acknowledged: increments that ran although the client reported an error.
//!
//! Settings, all from the environment:
//!
//! | variable                   | default                   | meaning                                      |
//! | -------------------------- | ------------------------- | -------------------------------------------- |
//! | `HANDOFF_BENCH_SCENARIOS`  | `moving,migrate,failover` | the scenarios to run                         |
//! | `HANDOFF_BENCH_CLIENTS`    | `ours,fred,redis-rs,redis-rs-mux,redis-tower` | the clients to run       |
//! | `HANDOFF_BENCH_RATE`       | (closed loop)             | a fixed rate instead, in commands/s in total |
//! | `HANDOFF_BENCH_OUTAGE_MS`  | 1000                      | how long node 0 refuses after the grace      |
//! | `HANDOFF_BENCH_STEADY_SECS`| 3                         | the measured steady state                    |
//! | `HANDOFF_BENCH_TAIL_SECS`  | 2                         | load after the window (and the outage)       |
//! | `REDIS_SERVER`             | `redis-server`            | the server binary                            |
//!
//! A task pauses 10 ms after a failed command, as an app's retry loop would, so that a client
//! failing fast does not spin. The clients run on a multi-thread tokio runtime with two
//! workers, the simulator on another.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface};
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{
    cmd, ConnectOptions, Connection, EndpointType, EventKind, MaintenanceConfig, MaintenanceEvent,
    Stack,
};
use tower::ServiceExt;

type BoxError = Box<dyn StdError + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const TASKS: usize = 50;
const WORKERS: usize = 2;
const WARMUP: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(2);
/// The moving window runs this long past the grace period.
const AFTER_GRACE: Duration = Duration::from_secs(1);
const MIGRATE_FOR: Duration = Duration::from_secs(3);
const MIGRATE_LATENCY: Duration = Duration::from_millis(300);
const FAILOVER_FOR: Duration = Duration::from_secs(2);
const SILENT_FOR: Duration = Duration::from_secs(8);
/// fred's reconnect policy: a constant delay, no limit on attempts.
const FRED_RECONNECT_MS: u32 = 100;
/// How long a task waits after a failed command before its next one.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// How long a task may take to finish its last command once the load stops.
const HANG_LIMIT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoff bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Moving,
    Migrate,
    Failover,
    Silent,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::Moving,
        Scenario::Migrate,
        Scenario::Failover,
        Scenario::Silent,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Moving => "moving",
            Scenario::Migrate => "migrate",
            Scenario::Failover => "failover",
            Scenario::Silent => "silent",
        }
    }

    fn title(self, s: &Settings) -> String {
        match self {
            Scenario::Moving => format!(
                "moving: MOVING node 0 -> node 1, {} s grace, then node 0 closed and refusing for {} ms, then back; window: MOVING until grace end + {} s",
                GRACE.as_secs(),
                s.outage.as_millis(),
                AFTER_GRACE.as_secs()
            ),
            Scenario::Migrate => format!(
                "migrate: MIGRATING, +{} ms on every reply of node 0 for {} s, MIGRATED; window: those {} s",
                MIGRATE_LATENCY.as_millis(),
                MIGRATE_FOR.as_secs(),
                MIGRATE_FOR.as_secs()
            ),
            Scenario::Failover => format!(
                "failover: FAILING_OVER, commands to node 0 held for {} s, FAILED_OVER; window: those {} s",
                FAILOVER_FOR.as_secs(),
                FAILOVER_FOR.as_secs()
            ),
            Scenario::Silent => format!(
                "silent: node 0's open connections dark both ways with no notice, new ones served; the path heals after {} s; window: those {} s",
                SILENT_FOR.as_secs(),
                SILENT_FOR.as_secs()
            ),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Fred,
    /// redis-rs's `ConnectionManager`: a multiplexed connection that reconnects.
    RedisRs,
    /// redis-rs's multiplexed connection alone: it never reconnects.
    RedisRsMux,
    /// redis-tower's `MultiplexedClient` with its maintenance handling.
    RedisTower,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Ours,
        Kind::Fred,
        Kind::RedisRs,
        Kind::RedisRsMux,
        Kind::RedisTower,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "redis-handoff Stack",
            Kind::Fred => "fred 10.1",
            Kind::RedisRs => "redis-rs 1.8 ConnectionManager",
            Kind::RedisRsMux => "redis-rs 1.8 multiplexed",
            Kind::RedisTower => "redis-tower 0.1 (maintenance on)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Fred => "fred",
            Kind::RedisRs => "redis-rs",
            Kind::RedisRsMux => "redis-rs-mux",
            Kind::RedisTower => "redis-tower",
        }
    }

    /// Whether it follows a `MOVING` itself (it opted in), rather than waiting for the old
    /// node's address to serve again.
    fn follows_moving(self) -> bool {
        matches!(self, Kind::Ours | Kind::RedisTower)
    }
}

/// Settings from the environment.
#[path = "support/env.rs"]
mod env;
use env::Env;

struct Settings {
    scenarios: Vec<Scenario>,
    kinds: Vec<Kind>,
    /// Commands per second in total; None: closed loop.
    rate: Option<f64>,
    outage: Duration,
    steady: Duration,
    tail: Duration,
    server_bin: String,
    /// The environment variables read, to repeat those set in the printed command.
    env: Env,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let mut env = Env::default();
        let scenarios = match env.var("HANDOFF_BENCH_SCENARIOS") {
            None => Scenario::ALL.to_vec(),
            Some(v) => pick(&v, "HANDOFF_BENCH_SCENARIOS", &Scenario::ALL, |s| s.name())?,
        };
        let kinds = match env.var("HANDOFF_BENCH_CLIENTS") {
            None => Kind::ALL.to_vec(),
            Some(v) => pick(&v, "HANDOFF_BENCH_CLIENTS", &Kind::ALL, |k| k.short())?,
        };
        let rate = match env.var("HANDOFF_BENCH_RATE") {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Some(r),
                _ => return Err(format!("HANDOFF_BENCH_RATE={v:?} must be more than 0").into()),
            },
        };
        let outage =
            Duration::from_secs_f64(env.number("HANDOFF_BENCH_OUTAGE_MS", 1000.0)? / 1000.0);
        let steady = env.secs("HANDOFF_BENCH_STEADY_SECS", 3.0)?;
        if steady.is_zero() {
            return Err("HANDOFF_BENCH_STEADY_SECS must be more than 0".into());
        }
        let tail = env.secs("HANDOFF_BENCH_TAIL_SECS", 2.0)?;
        let server_bin = env
            .var("REDIS_SERVER")
            .unwrap_or_else(|| "redis-server".to_owned());
        Ok(Settings {
            scenarios,
            kinds,
            rate,
            outage,
            steady,
            tail,
            server_bin,
            env,
        })
    }

    fn command_line(&self) -> String {
        // The bench needs the simulator.
        self.env
            .command_line("handoff")
            .replace("cargo bench", "cargo bench --features sim")
    }

    fn load(&self) -> String {
        match self.rate {
            None => format!("{TASKS} tasks, closed loop"),
            Some(r) => format!("{TASKS} tasks, fixed rate {r:.0} commands/s in total"),
        }
    }
}

/// The items named in a comma-separated list, in the order of `all`.
fn pick<T: Copy>(list: &str, var: &str, all: &[T], name: fn(T) -> &'static str) -> Result<Vec<T>> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for n in &names {
        if !all.iter().any(|&x| name(x) == *n) {
            let known: Vec<&str> = all.iter().map(|&x| name(x)).collect();
            return Err(format!("unknown {n:?} in {var} (known: {})", known.join(", ")).into());
        }
    }
    let picked: Vec<T> = all
        .iter()
        .copied()
        .filter(|&x| names.contains(&name(x)))
        .collect();
    if picked.is_empty() {
        return Err(format!("{var} names nothing to run").into());
    }
    Ok(picked)
}

// ---------------------------------------------------------------------------------------------
// The server

/// A `redis-server` child process, stopped when dropped.
#[path = "support/server.rs"]
mod server;
use server::Server;

// ---------------------------------------------------------------------------------------------
// Clients

/// One client of one library, cloned into every task.
#[derive(Clone)]
enum Client {
    Ours(Stack),
    Fred(fred::clients::Client),
    RedisRs(redis::aio::ConnectionManager),
    RedisRsMux(redis::aio::MultiplexedConnection),
    RedisTower(TowerPeer),
}

/// redis-tower's client with its maintenance handling on, and what its event bus reported.
#[derive(Clone)]
struct TowerPeer {
    client: redis_tower::MultiplexedClient,
    /// Maintenance handling lasts as long as this handle.
    _maintenance: Arc<redis_tower::MaintenanceListenerHandle>,
    events: Arc<Mutex<Vec<(Instant, redis_tower::ConnectionEvent)>>>,
    collector: Arc<tokio::task::JoinHandle<()>>,
}

impl TowerPeer {
    async fn connect(url: &str) -> Result<TowerPeer> {
        use futures_util::StreamExt as _;
        let addr = url
            .strip_prefix("redis://")
            .ok_or("redis-tower's factory takes host:port")?;
        let bus = redis_tower::ConnectionEventBus::new(1024);
        let mut stream = bus.subscribe();
        let events: Arc<Mutex<Vec<(Instant, redis_tower::ConnectionEvent)>>> = Arc::default();
        let collector = {
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(event) = stream.next().await {
                    if let Ok(event) = event {
                        lock(&events).push((Instant::now(), event));
                    }
                }
            })
        };
        let (client, maintenance) =
            redis_tower::MultiplexedClient::from_factory_with_maintenance_and_events(
                redis_tower::reconnect::Resp3AddrConnectionFactory::new(addr),
                redis_tower::AutoPipelineConfig::default(),
                redis_tower::auto_pipeline::AutoPipelineReconnectConfig::default(),
                bus,
            )
            .await?;
        Ok(TowerPeer {
            client,
            _maintenance: Arc::new(maintenance),
            events,
            collector: Arc::new(collector),
        })
    }

    /// When it reconnected after `since` (a `MOVING`), by its event bus.
    fn reconnected_after(&self, since: Instant) -> Option<Instant> {
        lock(&self.events).iter().find_map(|(at, e)| {
            (*at >= since && matches!(e, redis_tower::ConnectionEvent::Reconnected { .. }))
                .then_some(*at)
        })
    }

    /// Its events from `since` on, each with its time against `origin`.
    fn details(&self, since: Instant, origin: Instant) -> Vec<String> {
        const SHOWN: usize = 8;
        let events = lock(&self.events);
        let later: Vec<_> = events.iter().filter(|(at, _)| *at >= since).collect();
        let mut out: Vec<String> = later
            .iter()
            .take(SHOWN)
            .map(|(at, e)| format!("redis-tower event at {}: {e:?}", offset(*at, origin)))
            .collect();
        if later.len() > SHOWN {
            out.push(format!(
                "... and {} more redis-tower events",
                later.len() - SHOWN
            ));
        }
        out
    }
}

impl Client {
    async fn connect(kind: Kind, url: &str) -> Result<Client> {
        Ok(match kind {
            Kind::Ours => {
                let maintenance = MaintenanceConfig::builder()
                    .endpoint_type(EndpointType::InternalIp)
                    .build()?;
                let stack = Stack::builder(ConnectOptions::from_url(url)?)
                    .maintenance(maintenance)
                    .connect()
                    .await?;
                Client::Ours(stack)
            }
            Kind::Fred => {
                let config = fred::prelude::Config::from_url(url)?;
                let mut builder = fred::prelude::Builder::from_config(config);
                builder.set_policy(fred::prelude::ReconnectPolicy::new_constant(
                    0,
                    FRED_RECONNECT_MS,
                ));
                let client = builder.build()?;
                client.init().await?;
                Client::Fred(client)
            }
            Kind::RedisRs => {
                let client = redis::Client::open(url)?;
                Client::RedisRs(redis::aio::ConnectionManager::new(client).await?)
            }
            Kind::RedisRsMux => {
                let client = redis::Client::open(url)?;
                Client::RedisRsMux(client.get_multiplexed_async_connection().await?)
            }
            Kind::RedisTower => Client::RedisTower(TowerPeer::connect(url).await?),
        })
    }

    async fn incr(&mut self, key: &str) -> Result<i64, String> {
        match self {
            Client::Ours(s) => {
                let reply = s
                    .clone()
                    .oneshot(cmd!("INCR", key))
                    .await
                    .map_err(|e| e.to_string())?;
                reply
                    .as_i64()
                    .ok_or_else(|| format!("INCR answered {:?}", reply.frame()))
            }
            Client::Fred(c) => c.incr::<i64, _>(key).await.map_err(|e| e.to_string()),
            Client::RedisRs(c) => redis::cmd("INCR")
                .arg(key)
                .query_async::<i64>(c)
                .await
                .map_err(|e| e.to_string()),
            Client::RedisRsMux(c) => redis::cmd("INCR")
                .arg(key)
                .query_async::<i64>(c)
                .await
                .map_err(|e| e.to_string()),
            Client::RedisTower(t) => t
                .client
                .execute(redis_tower::commands::Incr::new(key))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn get(&mut self, key: &str) -> Result<Option<i64>, String> {
        match self {
            Client::Ours(s) => {
                let reply = s
                    .clone()
                    .oneshot(cmd!("GET", key))
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.is_null() {
                    Ok(None)
                } else {
                    reply
                        .as_i64()
                        .map(Some)
                        .ok_or_else(|| format!("GET answered {:?}", reply.frame()))
                }
            }
            Client::Fred(c) => c
                .get::<Option<i64>, _>(key)
                .await
                .map_err(|e| e.to_string()),
            Client::RedisRs(c) => redis::cmd("GET")
                .arg(key)
                .query_async::<Option<i64>>(c)
                .await
                .map_err(|e| e.to_string()),
            Client::RedisRsMux(c) => redis::cmd("GET")
                .arg(key)
                .query_async::<Option<i64>>(c)
                .await
                .map_err(|e| e.to_string()),
            Client::RedisTower(t) => {
                let value = t
                    .client
                    .execute(redis_tower::commands::Get::new(key))
                    .await
                    .map_err(|e| e.to_string())?;
                match value {
                    None => Ok(None),
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .map(Some)
                        .ok_or_else(|| format!("GET answered {bytes:?}")),
                }
            }
        }
    }

    async fn close(self) {
        match self {
            Client::Fred(c) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
            }
            Client::RedisTower(t) => t.collector.abort(),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load

/// One command: start and end in µs since the run's base instant.
#[derive(Clone, Copy)]
struct Rec {
    start: u32,
    end: u32,
    ok: bool,
}

/// What one task saw. Shared with the runner, so that a task that hangs still reports.
#[derive(Default)]
struct TaskLog {
    recs: Vec<Rec>,
    /// Failures by message with the numbers taken out: count and the first message.
    errors: BTreeMap<String, (u64, String)>,
    mismatches: u64,
    first_mismatch: Option<String>,
    acked_incrs: u64,
    /// The start of the command in flight, if any.
    in_flight: Option<u32>,
}

/// `e` with every number replaced by `N`, to count failures that differ only in numbers
/// (durations, ids) together.
fn without_numbers(e: &str) -> String {
    let mut out = String::with_capacity(e.len());
    let mut in_number = false;
    for c in e.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('N');
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn micros(base: Instant, t: Instant) -> u32 {
    u32::try_from(t.saturating_duration_since(base).as_micros()).unwrap_or(u32::MAX)
}

fn at(base: Instant, us: u32) -> Instant {
    base + Duration::from_micros(u64::from(us))
}

struct Load {
    stop: Arc<AtomicBool>,
    logs: Vec<Arc<Mutex<TaskLog>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, keys: &[String], base: Instant, rate: Option<f64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        // At a fixed rate every task runs at rate / TASKS, the tasks spread over one period.
        let every = rate.map(|r| Duration::from_secs_f64(TASKS as f64 / r));
        let first = Instant::now();
        for (t, key) in keys.iter().enumerate() {
            let log = Arc::new(Mutex::new(TaskLog::default()));
            logs.push(log.clone());
            let schedule = every.map(|e| (first + e.mul_f64(t as f64 / TASKS as f64), e));
            tasks.push(tokio::spawn(task(
                client.clone(),
                key.clone(),
                base,
                schedule,
                stop.clone(),
                log,
            )));
        }
        Load { stop, logs, tasks }
    }

    /// Stops the load and waits for the tasks; returns the logs and the tasks that did not
    /// finish their last command within [`HANG_LIMIT`] (aborted).
    async fn finish(self) -> (Vec<TaskLog>, Vec<usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + HANG_LIMIT;
        let mut hung = Vec::new();
        for (t, handle) in self.tasks.into_iter().enumerate() {
            let abort = handle.abort_handle();
            if tokio::time::timeout_at(deadline, handle).await.is_err() {
                abort.abort();
                hung.push(t);
            }
        }
        let logs = self
            .logs
            .into_iter()
            .map(|l| std::mem::take(&mut *lock(&l)))
            .collect();
        (logs, hung)
    }
}

/// Alternates INCR and GET on `key` until stopped, checking each reply against what the
/// counter must hold.
async fn task(
    mut client: Client,
    key: String,
    base: Instant,
    schedule: Option<(Instant, Duration)>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<TaskLog>>,
) {
    // The key was deleted before the run: the counter is 0.
    let mut known: Option<i64> = Some(0);
    let mut next = schedule.map(|(first, _)| first);
    let mut incr = true;
    loop {
        let start = match (next.as_mut(), schedule) {
            (Some(due), Some((_, every))) => {
                let this = *due;
                *due += every;
                tokio::time::sleep_until(this.into()).await;
                this
            }
            _ => Instant::now(),
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let start_us = micros(base, start);
        lock(&log).in_flight = Some(start_us);
        let (ok, error, mismatch) = if incr {
            match client.incr(&key).await {
                Ok(n) => {
                    let mismatch = known
                        .filter(|&k| n != k + 1)
                        .map(|k| format!("INCR {key} answered {n}, expected {}", k + 1));
                    known = Some(n);
                    (true, None, mismatch)
                }
                Err(e) => {
                    // It may have run: the next GET tells.
                    known = None;
                    (false, Some(format!("INCR: {e}")), None)
                }
            }
        } else {
            match client.get(&key).await {
                Ok(v) => {
                    let v = v.unwrap_or(0);
                    let mismatch = known
                        .filter(|&k| v != k)
                        .map(|k| format!("GET {key} answered {v}, expected {k}"));
                    known = Some(v);
                    (true, None, mismatch)
                }
                Err(e) => (false, Some(format!("GET: {e}")), None),
            }
        };
        let end = micros(base, Instant::now());
        {
            let mut l = lock(&log);
            l.in_flight = None;
            l.recs.push(Rec {
                start: start_us,
                end,
                ok,
            });
            if ok && incr {
                l.acked_incrs += 1;
            }
            if let Some(e) = error {
                l.errors.entry(without_numbers(&e)).or_insert((0, e)).0 += 1;
            }
            if let Some(m) = mismatch {
                l.mismatches += 1;
                l.first_mismatch.get_or_insert(m);
            }
        }
        incr = !incr;
        // As an app's retry loop would, a task waits a moment after a failure: a client that
        // fails fast must not turn the closed loop into a spin.
        if !ok {
            tokio::time::sleep(FAILURE_PAUSE).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One run: one client through one scenario

/// When the scenario's steps happened.
struct Played {
    window: (Instant, Instant),
    /// When MOVING was sent.
    moving_sent: Option<Instant>,
    /// When node 0 accepted connections again after the grace period and the outage.
    back: Option<Instant>,
    /// How many clients the notifications went to.
    recipients: Option<usize>,
}

async fn play(
    scenario: Scenario,
    kind: Kind,
    sim: &Simulator,
    sim_rt: &tokio::runtime::Handle,
    settings: &Settings,
) -> Result<Played> {
    let s = sim.clone();
    match scenario {
        // A client that asked for no endpoint: the address stays, the node behind it changes.
        Scenario::Moving if kind == Kind::RedisTower => {
            let outage = settings.outage;
            let (sent, moving) = sim_rt
                .spawn(async move {
                    let sent = Instant::now();
                    (sent, s.moving_null(0, GRACE, outage).await)
                })
                .await?;
            let moving = moving?;
            let recipients = moving.recipients();
            // Over when the old connections are closed and the node accepts again.
            moving.done().await;
            let back = Instant::now();
            Ok(Played {
                window: (sent, sent + GRACE + AFTER_GRACE),
                moving_sent: Some(sent),
                back: Some(back),
                recipients: Some(recipients),
            })
        }
        Scenario::Moving => {
            let (sent, moving) = sim_rt
                .spawn(async move {
                    let sent = Instant::now();
                    (sent, s.moving(0, 1, GRACE).await)
                })
                .await?;
            let moving = moving?;
            let recipients = moving.recipients();
            moving.done().await;
            tokio::time::sleep(settings.outage).await;
            sim.restore(0)?;
            let back = Instant::now();
            Ok(Played {
                window: (sent, sent + GRACE + AFTER_GRACE),
                moving_sent: Some(sent),
                back: Some(back),
                recipients: Some(recipients),
            })
        }
        Scenario::Silent => {
            let (sent, dark) = sim_rt
                .spawn(async move { (Instant::now(), s.blackhole_connections(0)) })
                .await?;
            let dark = dark?;
            tokio::time::sleep_until((sent + SILENT_FOR).into()).await;
            sim.restore(0)?;
            Ok(Played {
                window: (sent, sent + SILENT_FOR),
                moving_sent: Some(sent),
                back: None,
                recipients: Some(dark),
            })
        }
        Scenario::Migrate | Scenario::Failover => {
            let (window, result) = sim_rt
                .spawn(async move {
                    let start = Instant::now();
                    let result = if scenario == Scenario::Migrate {
                        s.migrate(0, MIGRATE_FOR).await
                    } else {
                        s.failover(0, FAILOVER_FOR).await
                    };
                    // Taken here: the runner may wake up later on a busy machine.
                    ((start, Instant::now()), result)
                })
                .await?;
            result?;
            let recipients = sim
                .notifications()
                .iter()
                .filter(|n| matches!(n.name.as_str(), "MIGRATING" | "FAILING_OVER"))
                .count();
            Ok(Played {
                window,
                moving_sent: None,
                back: None,
                recipients: Some(recipients),
            })
        }
    }
}

struct RunResult {
    kind: Kind,
    commands: u64,
    failed: u64,
    steady_ops: f64,
    steady_p999: Option<Duration>,
    window_commands: u64,
    window_p99: Option<Duration>,
    window_p999: Option<Duration>,
    window_max: Option<Duration>,
    /// The scenario's start, which the instants below are reported against.
    origin: Instant,
    /// When the slowest command of the window started.
    window_max_started: Option<Instant>,
    steady_max: Option<Duration>,
    /// MOVING -> first reply from the new node.
    to_new_node: Option<Duration>,
    /// Failures by message with the numbers taken out: count and the first message.
    errors: BTreeMap<String, (u64, String)>,
    /// When the failed commands started and when they failed: (first, last) of each.
    failures: Option<((Instant, Instant), (Instant, Instant))>,
    mismatches: u64,
    first_mismatch: Option<String>,
    unacked_incrs: i64,
    /// Tasks that did not finish their last command, with how long it had been running.
    hung: Vec<(usize, Option<Duration>)>,
    /// What else the reader should know (ours: the stack's events and counters).
    details: Vec<String>,
}

fn percentile(sorted: &[u32], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(Duration::from_micros(u64::from(sorted[rank - 1])))
}

async fn run_one(
    kind: Kind,
    scenario: Scenario,
    settings: &Settings,
    server_addr: &str,
    ctl: &Connection,
    sim_rt: &tokio::runtime::Handle,
    run_id: usize,
) -> Result<RunResult> {
    let backend = Backend::redis(server_addr);
    let sim = sim_rt
        .spawn(
            Simulator::builder()
                .backend(backend)
                .nodes(2)
                .migrate_latency(MIGRATE_LATENCY)
                .start(),
        )
        .await??;
    let keys: Vec<String> = (0..TASKS)
        .map(|t| format!("handoff-bench:{run_id}:{t}"))
        .collect();
    for key in &keys {
        ctl.send(cmd!("DEL", key)).await?;
    }
    let url = sim.node(0).url();
    let client = Client::connect(kind, &url)
        .await
        .map_err(|e| format!("{} could not connect to {url}: {e}", kind.label()))?;

    // Our stack's events, as they happen.
    let events: Arc<Mutex<Vec<MaintenanceEvent>>> = Arc::default();
    let collector = match &client {
        Client::Ours(stack) => {
            let mut rx = stack.maintenance().subscribe();
            let events = events.clone();
            Some(tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    lock(&events).push(e);
                }
            }))
        }
        _ => None,
    };

    let base = Instant::now();
    let load = Load::start(&client, &keys, base, settings.rate);
    tokio::time::sleep(WARMUP).await;
    let steady_start = Instant::now();
    tokio::time::sleep(settings.steady).await;
    let steady = (steady_start, Instant::now());

    let played = play(scenario, kind, &sim, sim_rt, settings).await?;
    let settled = played
        .back
        .map_or(played.window.1, |b| b.max(played.window.1));
    tokio::time::sleep_until((settled + settings.tail).into()).await;
    let (logs, hung) = load.finish().await;
    let stopped = Instant::now();
    if let Some(c) = collector {
        c.abort();
    }

    // The counters, from redis-server itself.
    let mut unacked_incrs = 0i64;
    for (key, log) in keys.iter().zip(&logs) {
        let value = ctl.send(cmd!("GET", key)).await?.as_i64().unwrap_or(0);
        unacked_incrs += value - log.acked_incrs as i64;
    }

    let timeline = Timeline {
        base,
        steady,
        played,
        stopped,
    };
    let mut details = Vec::new();
    let mut switched = None;
    if let Client::Ours(stack) = &client {
        let events = lock(&events);
        switched = timeline.played.moving_sent.and_then(|sent| {
            events.iter().find_map(|e| {
                (e.at >= sent && matches!(e.kind, EventKind::HandoffSwitched { .. }))
                    .then_some(e.at)
            })
        });
        if scenario == Scenario::Moving && switched.is_none() {
            details.push("no HandoffSwitched event after the MOVING".to_owned());
        }
        details.extend(our_details(stack, &sim, &events, &timeline));
    }
    if let Client::RedisTower(tower) = &client {
        if let Some(sent) = timeline.played.moving_sent {
            switched = tower.reconnected_after(sent);
            if scenario == Scenario::Moving && switched.is_none() {
                details.push("no Reconnected event after the MOVING".to_owned());
            }
        }
        details.extend(tower.details(timeline.steady.1, timeline.played.window.0));
    }
    if let Some(n) = timeline.played.recipients {
        details.push(format!(
            "the simulator sent the scenario's notification to {n} connection(s)"
        ));
    }
    client.close().await;
    sim.shutdown();

    // Where "the new node" starts: for ours the switch (by command start), for the peers node
    // 0 coming back (by reply).
    let new_node_from = match (scenario, kind) {
        // Dark -> the first reply to a command that started after it.
        (Scenario::Silent, _) => timeline.played.moving_sent.map(|s| (s, true)),
        (Scenario::Moving, k) if k.follows_moving() => switched.map(|s| (s, true)),
        (_, Kind::Ours) => switched.map(|s| (s, true)),
        _ => timeline.played.back.map(|b| (b, false)),
    };
    let mut result = summarise(kind, settings, &timeline, &logs, new_node_from);
    result.unacked_incrs = unacked_incrs;
    result.hung = hung
        .iter()
        .map(|&t| {
            let running = logs[t]
                .in_flight
                .map(|s| stopped.saturating_duration_since(at(base, s)));
            (t, running)
        })
        .collect();
    result.details = details;
    Ok(result)
}

/// When a run's phases began and ended.
struct Timeline {
    /// The instant the commands' times count from.
    base: Instant,
    steady: (Instant, Instant),
    played: Played,
    /// When the load stopped.
    stopped: Instant,
}

/// The stack's counters and its events from the steady state on, timed from the scenario's
/// start.
fn our_details(
    stack: &Stack,
    sim: &Simulator,
    events: &[MaintenanceEvent],
    timeline: &Timeline,
) -> Vec<String> {
    let mut out = Vec::new();
    let stats = stack.handoff().stats();
    out.push(format!(
        "stack counters: handoffs {}, handoffs failed {}, reconnects {}, commands sent again {}; serving {} at the end (node 0 {}, node 1 {})",
        stats.handoffs,
        stats.handoffs_failed,
        stats.reconnects,
        stats.retried,
        stack
            .handoff()
            .current_endpoint()
            .map_or_else(|| "nothing".to_owned(), |e| e.to_string()),
        sim.node(0).addr(),
        sim.node(1).addr(),
    ));
    let origin = timeline.played.window.0;
    for e in events
        .iter()
        .filter(|e| e.at >= timeline.steady.0 && e.at <= timeline.stopped)
    {
        let when = offset(e.at, origin);
        let mut what = format!("{:?}", e.kind);
        if what.len() > 160 {
            let mut cut = 157;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
            what.push_str("...");
        }
        out.push(format!("event {when}: {what}"));
    }
    out
}

/// The numbers of one run from its tasks' logs. `new_node_from`: the instant from which a
/// reply comes from the new node, and whether it applies to the command's start (else to its
/// reply).
fn summarise(
    kind: Kind,
    settings: &Settings,
    timeline: &Timeline,
    logs: &[TaskLog],
    new_node_from: Option<(Instant, bool)>,
) -> RunResult {
    let base = timeline.base;
    let window = timeline.played.window;
    let (ws, we) = (micros(base, window.0), micros(base, window.1));
    let (ss, se) = (
        micros(base, timeline.steady.0),
        micros(base, timeline.steady.1),
    );
    let new_node_from = new_node_from.map(|(t, by_start)| (micros(base, t), by_start));
    let mut commands = 0u64;
    let mut failed = 0u64;
    let mut window_commands = 0u64;
    let mut steady_lat = Vec::new();
    let mut window_lat = Vec::new();
    // (latency, start) of the slowest command in the window.
    let mut slowest: Option<(u32, u32)> = None;
    let mut failures: Option<((u32, u32), (u32, u32))> = None;
    let mut errors: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut mismatches = 0;
    let mut first_mismatch = None;
    let mut to_new_node: Option<u32> = None;
    for log in logs {
        for r in &log.recs {
            commands += 1;
            let in_window = r.start <= we && r.end >= ws;
            if in_window {
                window_commands += 1;
            }
            if !r.ok {
                failed += 1;
                let ((fs, ls), (fe, le)) = failures.unwrap_or(((r.start, r.start), (r.end, r.end)));
                failures = Some((
                    (fs.min(r.start), ls.max(r.start)),
                    (fe.min(r.end), le.max(r.end)),
                ));
                continue;
            }
            let lat = r.end.saturating_sub(r.start);
            if r.start >= ss && r.end < se {
                steady_lat.push(lat);
            }
            if in_window {
                window_lat.push(lat);
                if slowest.is_none_or(|(l, _)| lat > l) {
                    slowest = Some((lat, r.start));
                }
            }
            if let Some((from, by_start)) = new_node_from {
                if (if by_start { r.start } else { r.end }) >= from {
                    to_new_node = Some(to_new_node.map_or(r.end, |t| t.min(r.end)));
                }
            }
        }
        for (key, (n, example)) in &log.errors {
            errors.entry(key.clone()).or_insert((0, example.clone())).0 += n;
        }
        mismatches += log.mismatches;
        if first_mismatch.is_none() {
            first_mismatch.clone_from(&log.first_mismatch);
        }
    }
    steady_lat.sort_unstable();
    window_lat.sort_unstable();
    RunResult {
        kind,
        commands,
        failed,
        steady_ops: steady_lat.len() as f64 / settings.steady.as_secs_f64(),
        steady_p999: percentile(&steady_lat, 0.999),
        window_commands,
        window_p99: percentile(&window_lat, 0.99),
        window_p999: percentile(&window_lat, 0.999),
        window_max: window_lat
            .last()
            .map(|&us| Duration::from_micros(u64::from(us))),
        window_max_started: slowest.map(|(_, start)| at(base, start)),
        steady_max: steady_lat
            .last()
            .map(|&us| Duration::from_micros(u64::from(us))),
        to_new_node: timeline
            .played
            .moving_sent
            .zip(to_new_node)
            .map(|(sent, end)| at(base, end).saturating_duration_since(sent)),
        errors,
        origin: window.0,
        failures: failures.map(|((fs, ls), (fe, le))| {
            ((at(base, fs), at(base, ls)), (at(base, fe), at(base, le)))
        }),
        mismatches,
        first_mismatch,
        unacked_incrs: 0,
        hung: Vec::new(),
        details: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Running and reporting

fn run() -> Result<()> {
    let began = Instant::now();
    let settings = Settings::from_env()?;
    let server = Server::start(&settings.server_bin)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()?;
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("simulator")
        .enable_all()
        .build()?;
    let per_run = WARMUP + settings.steady + settings.tail;
    let scenario_time = |s: Scenario| match s {
        Scenario::Moving => (GRACE + AFTER_GRACE).max(GRACE + settings.outage),
        Scenario::Migrate => MIGRATE_FOR,
        Scenario::Failover => FAILOVER_FOR,
        Scenario::Silent => SILENT_FOR,
    };
    let estimate: Duration = settings
        .scenarios
        .iter()
        .map(|&s| (per_run + scenario_time(s)) * settings.kinds.len() as u32)
        .sum();
    eprintln!(
        "{} on {}; {} scenario(s) x {} client(s), {}: about {:.0} s",
        server.version,
        server.addr(),
        settings.scenarios.len(),
        settings.kinds.len(),
        settings.load(),
        estimate.as_secs_f64(),
    );

    let server_addr = server.addr();
    let sim_handle = sim_runtime.handle().clone();
    let results = runtime.block_on(async {
        // Straight to redis-server, to reset and read the counters.
        let ctl = Connection::connect(&format!("redis://{server_addr}")).await?;
        let mut results = Vec::new();
        let mut run_id = 0;
        for &scenario in &settings.scenarios {
            let mut rows = Vec::new();
            for &kind in &settings.kinds {
                run_id += 1;
                eprintln!("  {} / {} ...", scenario.name(), kind.label());
                let r = run_one(
                    kind,
                    scenario,
                    &settings,
                    &server_addr,
                    &ctl,
                    &sim_handle,
                    run_id,
                )
                .await
                .map_err(|e| format!("{}, {}: {e}", kind.label(), scenario.name()))?;
                rows.push(r);
            }
            println!();
            println!("{}", scenario.title(&settings));
            println!("{}", table(scenario, &rows).plain());
            for line in details(&rows, true) {
                println!("  {line}");
            }
            results.push((scenario, rows));
        }
        Ok::<_, BoxError>(results)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    sim_runtime.shutdown_timeout(Duration::from_secs(1));
    let version = server.version.clone();
    drop(server);

    let took = began.elapsed();
    println!();
    println!("Markdown:\n");
    println!("`{}`\n", settings.command_line());
    for (scenario, rows) in &results {
        println!("**{}**\n", scenario.title(&settings));
        println!("{}", table(*scenario, rows).markdown());
        for line in details(rows, false) {
            println!("- {line}");
        }
        println!();
    }
    for note in notes(&settings, &version, took) {
        println!("- {note}");
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    let x = d.as_secs_f64() * 1000.0;
    if x < 10.0 {
        format!("{x:.2} ms")
    } else if x < 100.0 {
        format!("{x:.1} ms")
    } else {
        format!("{} ms", thousands(x))
    }
}

/// `t` from `origin` (the scenario's start), signed.
fn offset(t: Instant, origin: Instant) -> String {
    if t >= origin {
        format!("+{}", ms(t - origin))
    } else {
        format!("-{}", ms(origin - t))
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), ms)
}

fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(scenario: Scenario, rows: &[RunResult]) -> Table {
    let header = [
        "client",
        "commands",
        "failed",
        "steady p99.9",
        "window p99",
        "window p99.9",
        "window p99.9 / steady p99.9",
        "window max",
        match scenario {
            Scenario::Silent => "dark -> first reply",
            _ => "MOVING -> first reply from new node",
        },
    ];
    let rows = rows
        .iter()
        .map(|r| {
            let ratio = match (r.window_p999, r.steady_p999) {
                (Some(w), Some(s)) if !s.is_zero() => {
                    format!("{:.1}x", w.as_secs_f64() / s.as_secs_f64())
                }
                _ => "-".to_owned(),
            };
            let moving = if matches!(scenario, Scenario::Moving | Scenario::Silent) {
                opt_ms(r.to_new_node)
            } else {
                "n/a".to_owned()
            };
            vec![
                r.kind.label().to_owned(),
                thousands(r.commands as f64),
                thousands(r.failed as f64),
                opt_ms(r.steady_p999),
                opt_ms(r.window_p99),
                opt_ms(r.window_p999),
                ratio,
                opt_ms(r.window_max),
                moving,
            ]
        })
        .collect();
    Table {
        header: header.map(str::to_owned).to_vec(),
        rows,
        left: 1,
    }
}

/// Per client: failures, mismatches, hangs; with `full`, our stack's events too.
fn details(rows: &[RunResult], full: bool) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        let name = r.kind.label();
        let mut line = format!(
            "{name}: {} ops/s steady, {} commands in the window",
            thousands(r.steady_ops),
            thousands(r.window_commands as f64)
        );
        if let Some(started) = r.window_max_started {
            let _ = write!(
                line,
                "; slowest command in the window ({}) started at {} (steady max {})",
                opt_ms(r.window_max),
                offset(started, r.origin),
                opt_ms(r.steady_max)
            );
        }
        if let Some(((fs, ls), (fe, le))) = r.failures {
            let _ = write!(
                line,
                "; the failed commands started from {} to {} and failed from {} to {}",
                offset(fs, r.origin),
                offset(ls, r.origin),
                offset(fe, r.origin),
                offset(le, r.origin)
            );
        }
        let _ = write!(
            line,
            "; INCR/GET mismatches {}; increments that ran unacknowledged {}",
            r.mismatches, r.unacked_incrs
        );
        out.push(line);
        let mut errors: Vec<&(u64, String)> = r.errors.values().collect();
        errors.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (n, example) in errors.iter().take(if full { 6 } else { 3 }) {
            out.push(format!(
                "{name}: {n} failure(s) like `{}`",
                example.replace('`', "'")
            ));
        }
        if let Some(m) = &r.first_mismatch {
            out.push(format!("{name}: first mismatch: {m}"));
        }
        for (t, running) in &r.hung {
            out.push(format!(
                "{name}: task {t} did not finish (its command had been running {} when the load stopped); aborted after {} s",
                opt_ms(*running),
                HANG_LIMIT.as_secs()
            ));
        }
        if full {
            for d in &r.details {
                out.push(format!("{name}: {d}"));
            }
        } else if let Some(counters) = r.details.iter().find(|d| d.starts_with("stack counters")) {
            out.push(format!("{name}: {counters}"));
        }
    }
    out
}

fn notes(settings: &Settings, server_version: &str, took: Duration) -> Vec<String> {
    vec![
        format!(
            "{server_version} behind the simulator (2 nodes, a fresh simulator per client and scenario); {} logical CPU(s); full run took {:.0} s",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            took.as_secs_f64()
        ),
        format!(
            "load: {}, each task alternating INCR and GET on its own key; {} s warm-up, {} s steady state, the scenario, {} s tail",
            settings.load(),
            WARMUP.as_secs(),
            settings.steady.as_secs_f64(),
            settings.tail.as_secs_f64()
        ),
        "redis-handoff: `Stack` with `EndpointType::InternalIp`, 1 s command timeout (relaxed to 10 s during maintenance), other settings default; the only client that opts in to maintenance notifications".to_owned(),
        format!("fred 10.1: default config (RESP2), `ReconnectPolicy::new_constant(0, {FRED_RECONNECT_MS})`"),
        "redis-rs 1.8: `ConnectionManager::new(client)` and `get_multiplexed_async_connection()`, default config (RESP2; a 500 ms response timeout, redis-rs 1.x's default); the multiplexed connection never reconnects".to_owned(),
        "redis-tower 0.1: `MultiplexedClient::from_factory_with_maintenance_and_events` with a `Resp3AddrConnectionFactory`, default pipeline and reconnect config; it handles `MOVING` with a null endpoint only (`moving-endpoint-type none`): it reconnects to its configured address at half the grace period, which the simulator plays as a connection to the new node".to_owned(),
        format!(
            "moving: after the grace period node 0 closes every connection and refuses new ones; after {} ms it accepts again and stands for the new node behind the database's address (managed Redis re-points it), so the peers, who get no notification, reconnect to their configured address",
            settings.outage.as_millis()
        ),
        "failed: commands that returned an error, whole run; latency: successful commands, closed loop from call to reply (fixed rate: from the scheduled start); steady p99.9: commands started and answered in the steady state; window: commands whose run overlapped the window".to_owned(),
        "MOVING -> first reply from new node: redis-handoff: to the reply of the first command started after its HandoffSwitched event; peers: to their first successful reply after node 0 came back (their reconnect)".to_owned(),
        "INCR/GET mismatches: replies that contradict the task's own counter; increments that ran unacknowledged: counters read from redis-server less INCRs acknowledged".to_owned(),
    ]
}

/// A table of text cells: the first `left` columns align left, the others right.
#[path = "support/table.rs"]
mod table;
use table::Table;
