//! What each layer of the full `Stack` costs over the bare `Connection`, against a real
//! redis-server: the same GET from many tasks through the connection, the handoff layer alone,
//! each other layer over it, the whole `Stack` (its layers fused), and the same layers nested
//! (`Stack::into_service`); then the connection and the `Stack` borrowed, through their `send`.
//!
//! ```text
//! cargo bench --bench stack_cost
//! ```
//!
//! prints operations per second and the bench process's CPU time per operation for each.
//! Timings on a shared machine move; instruction counts do not. For those, run a fixed number
//! of operations through one variant under callgrind and compare totals:
//!
//! ```text
//! cargo bench --bench stack_cost --no-run
//! OPS=20000 ONLY=connection valgrind --tool=callgrind target/release/deps/stack_cost-<hash>
//! OPS=20000 ONLY=stack      valgrind --tool=callgrind target/release/deps/stack_cost-<hash>
//! ```
//!
//! | variable  | default        | meaning                                                         |
//! | --------- | -------------- | --------------------------------------------------------------- |
//! | `TASKS`   | 100            | tasks sharing the service                                       |
//! | `SECS`    | 2              | length of one timed run                                         |
//! | `ROUNDS`  | 3              | rounds over every variant                                       |
//! | `OPS`     | (unset)        | run exactly this many operations instead of a timed window      |
//! | `ONLY`    | (all)          | one variant: connection, handoff, timeout, circuit, metrics, stack, nested, connection-send, stack-send |
//! | `REDIS_SERVER` | `redis-server` | the server binary                                          |

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_handoff::circuit_breaker::CircuitBreaker;
use redis_handoff::metrics::{Metrics, MetricsHook};
use redis_handoff::relaxed_timeout::RelaxedTimeout;
use redis_handoff::{
    cmd, CircuitBreakerConfig, Command, ConnectOptions, Connection, Connector, Error,
    HandoffConfig, HandoffRetry, Maintenance, MaintenanceConfig, NotificationDemux, Reply, Stack,
};
use tower::{Service, ServiceExt};

#[path = "support/server.rs"]
mod server;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// CPU time of this process (user and system), in seconds.
fn cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// One GET, the way a variant sends it.
trait Get: Clone + Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Reply, Error>> + Send;
}

/// Through tower, as a layer above would: `svc.clone().oneshot(command)`.
#[derive(Clone)]
struct Tower<S>(S);

impl<S> Get for Tower<S>
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    fn get(&self, key: &str) -> impl Future<Output = Result<Reply, Error>> + Send {
        self.0.clone().oneshot(cmd!("GET", key))
    }
}

/// The service borrowed: `send(&self, command)`.
#[derive(Clone)]
struct Borrowed<T>(T);

impl Get for Borrowed<Connection> {
    fn get(&self, key: &str) -> impl Future<Output = Result<Reply, Error>> + Send {
        self.0.send(cmd!("GET", key))
    }
}

impl Get for Borrowed<Stack> {
    fn get(&self, key: &str) -> impl Future<Output = Result<Reply, Error>> + Send {
        self.0.send(cmd!("GET", key))
    }
}

/// Runs GET from `tasks` tasks for `window`, or `ops` GETs in all when set.
async fn run<S: Get>(
    name: &str,
    svc: S,
    tasks: usize,
    window: Duration,
    ops: Option<u64>,
) -> Result<(), BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_start = cpu();
    let start = Instant::now();
    let per_task = ops.map(|n| n / tasks as u64);
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let svc = svc.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let key = format!("stack_cost:{task}");
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) && per_task.is_none_or(|n| done < n) {
                svc.get(&key).await?;
                done += 1;
            }
            Ok::<u64, Error>(done)
        }));
    }
    if ops.is_none() {
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = (cpu() - cpu_start) * 1e6 / total as f64;
    println!(
        "{name:<16} {:>12.0} ops/s {cpu_us:>8.2} µs CPU/op",
        total as f64 / elapsed
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let server = server::Server::start(&bin)?;
    let url = format!("redis://127.0.0.1:{}", server.port);
    runtime.block_on(async {
        let tasks: usize = env("TASKS").unwrap_or(100);
        let window = Duration::from_secs_f64(env("SECS").unwrap_or(2.0));
        let rounds: usize = env("ROUNDS").unwrap_or(3);
        let ops: Option<u64> = env("OPS");
        let only: Option<String> = env("ONLY");

        let connection = Connection::connect(&url).await?;
        let maintenance = Maintenance::new(MaintenanceConfig::default());
        let options = ConnectOptions::from_url(&url)?;
        let endpoint = options.endpoint.clone();
        let demuxed =
            NotificationDemux::over_connector(Connector::new(options)?, maintenance.clone());
        let handoff =
            HandoffRetry::connect(demuxed, maintenance.clone(), HandoffConfig::default()).await?;
        let timeout = RelaxedTimeout::new(
            handoff.clone(),
            Duration::from_secs(1),
            Duration::from_secs(10),
            maintenance.status(&endpoint),
        );
        let circuit = CircuitBreaker::new(
            handoff.clone(),
            maintenance.clone(),
            endpoint,
            CircuitBreakerConfig::default(),
        );
        let metrics = MetricsHook::new(handoff.clone(), Metrics::new());
        let stack = Stack::connect(&url).await?;
        // The metrics' clock calibrates itself on first use (a few milliseconds, and millions
        // of instructions that vary from run to run): done here, outside the counted callers.
        stack.clone().oneshot(cmd!("PING")).await?;
        let nested = Stack::connect(&url).await?.into_service();

        println!(
            "{}; GET from {tasks} tasks; each variant over its own connection",
            server.version
        );
        for round in 0..if only.is_some() { 1 } else { rounds } {
            if only.is_none() {
                println!("round {}", round + 1);
            }
            let wants = |v: &str| only.as_deref().is_none_or(|o| o == v);
            if wants("connection") {
                run("connection", Tower(connection.clone()), tasks, window, ops).await?;
            }
            if wants("handoff") {
                run("+handoff", Tower(handoff.clone()), tasks, window, ops).await?;
            }
            if wants("timeout") {
                run("+timeout", Tower(timeout.clone()), tasks, window, ops).await?;
            }
            if wants("circuit") {
                run("+circuit", Tower(circuit.clone()), tasks, window, ops).await?;
            }
            if wants("metrics") {
                run("+metrics", Tower(metrics.clone()), tasks, window, ops).await?;
            }
            if wants("stack") {
                run("stack", Tower(stack.clone()), tasks, window, ops).await?;
            }
            if wants("nested") {
                run("nested", Tower(nested.clone()), tasks, window, ops).await?;
            }
            if wants("connection-send") {
                let borrowed = Borrowed(connection.clone());
                run("connection send", borrowed, tasks, window, ops).await?;
            }
            if wants("stack-send") {
                run("stack send", Borrowed(stack.clone()), tasks, window, ops).await?;
            }
        }
        Ok::<(), BoxError>(())
    })?;
    drop(server);
    Ok(())
}
