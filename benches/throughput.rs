//! Throughput of `redis_handoff::Connection` and of the full `Stack` against fred, redis-rs
//! (multiplexed connection and `ConnectionManager`) and redis-tower on one local Redis: single
//! commands, pipelines and transactions; with the `redis-rs` feature also code written against
//! redis-rs's API running on our `Stack`.
//!
//! ```text
//! cargo bench --features redis-rs --bench throughput
//! cargo bench --bench throughput        # without the redis-rs API row
//! ```
//!
//! The bench starts its own `redis-server` (from `PATH`, or `REDIS_SERVER`) on a free loopback
//! port with persistence off, opens one connection per client, and runs each workload through
//! each client: a warm-up, then a timed window. Rounds interleave the clients (in an order
//! reversed every other round) so that machine noise falls on all of them alike. The tables
//! report the median of each client's rounds, and each ratio as the median over the rounds of
//! the ratio within one round. Our clients run side by side, the bare connection next to the
//! `Stack`, so that the ratios between them compare runs seconds apart.
//!
//! Besides operations per second it reports, per operation, the CPU time of the bench process
//! (the client under test: only one runs at a time) and of the server, and how many commands the
//! server ran per socket read (from `INFO`), which shows how well a client pipelines. On a busy
//! machine the CPU times move much less than the throughput.
//!
//! Settings, all from the environment:
//!
//! | variable            | default        | meaning                                                |
//! | ------------------- | -------------- | ------------------------------------------------------ |
//! | `BENCH_SECS`        | 3              | length of one timed window, in seconds                 |
//! | `BENCH_ROUNDS`      | 3              | rounds; the median of them is reported                 |
//! | `BENCH_WARMUP_SECS` | 0.5            | warm-up before each timed window, in seconds           |
//! | `BENCH_NODELAY`     | 0              | 1: set `TCP_NODELAY` on fred's and redis-rs's sockets (redis-tower always sets it) |
//! | `BENCH_FILTER`      | (all)          | only the workloads whose name contains this text       |
//! | `BENCH_TASKS`       | 100            | tasks of the many-task workloads (one connection)      |
//! | `BENCH_CLIENTS`     | (all)          | subset of `tower,send,stack,stack-send,compat,fred,redis-rs,redis-rs-cm,redis-tower`, by commas |
//! | `REDIS_SERVER`      | `redis-server` | the server binary                                      |
//!
//! All clients share one multi-thread tokio runtime with two workers.
//!
//! Besides the tables, the bench draws ops/s against tasks, one line per client, to
//! `target/bench/throughput.svg`.
//!
//! The pipeline workload sends a `Pipeline` of 100 `SET`s per call (redis-rs: `redis::pipe()`,
//! fred: `client.pipeline()`, redis-tower: `redis_tower::Pipeline`), the transaction workload a
//! `Transaction` of 5 commands (redis-rs: `redis::pipe().atomic()`, fred: `client.multi()`,
//! redis-tower: `redis_tower::Transaction`); both count commands per second, so a pipeline is
//! 100 operations.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::process::{Command as Process, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{ClientLike, KeysInterface};
use redis_handoff::{cmd, Connection, Pipeline, Stack, Transaction};
use redis_tower::commands as tower_cmd;
use tower::ServiceExt;

type BoxError = Box<dyn StdError + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const WORKERS: usize = 2;
const VALUE_SIZE: usize = 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    window: Duration,
    warmup: Duration,
    rounds: usize,
    nodelay: bool,
    filter: Option<String>,
    tasks: usize,
    clients: Option<Vec<String>>,
    server_bin: String,
    /// The environment variables read, to repeat those set in the printed command.
    env: Env,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let mut env = Env::default();
        let window = env.secs("BENCH_SECS", 3.0)?;
        if window.is_zero() {
            return Err("BENCH_SECS must be more than 0".into());
        }
        let warmup = env.secs("BENCH_WARMUP_SECS", 0.5)?;
        let rounds = env.count("BENCH_ROUNDS", 3)?;
        let nodelay = matches!(
            env.var("BENCH_NODELAY").as_deref().map(str::trim),
            Some("1" | "true" | "yes")
        );
        let filter = env.var("BENCH_FILTER");
        let tasks = env.count("BENCH_TASKS", 100)?;
        let clients = env.var("BENCH_CLIENTS").map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        let server_bin = env
            .var("REDIS_SERVER")
            .unwrap_or_else(|| "redis-server".to_owned());
        Ok(Settings {
            window,
            warmup,
            rounds,
            nodelay,
            filter,
            tasks,
            clients,
            server_bin,
            env,
        })
    }

    fn command_line(&self) -> String {
        let line = self.env.command_line("throughput");
        if cfg!(feature = "redis-rs") {
            // The redis-rs API row needs the feature to be there again.
            line.replace("cargo bench", "cargo bench --features redis-rs")
        } else {
            line
        }
    }
}

/// Settings from the environment.
#[path = "support/env.rs"]
mod env;
use env::Env;

// ---------------------------------------------------------------------------------------------
// The server

/// A `redis-server` child process, stopped when dropped.
#[path = "support/server.rs"]
mod server;
use server::Server;

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tower,
    Send,
    Stack,
    StackSend,
    /// redis-rs's API (`AsyncCommands`, `redis::pipe()`) over our `Stack`.
    Compat,
    Fred,
    RedisRs,
    RedisRsManager,
    RedisTower,
}

impl Kind {
    /// Every client this build can run: the redis-rs API over our stack needs the `redis-rs`
    /// feature.
    fn all() -> Vec<Kind> {
        let mut all = vec![Kind::Tower, Kind::Send, Kind::Stack, Kind::StackSend];
        if cfg!(feature = "redis-rs") {
            all.push(Kind::Compat);
        }
        all.extend([
            Kind::Fred,
            Kind::RedisRs,
            Kind::RedisRsManager,
            Kind::RedisTower,
        ]);
        all
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Tower => "redis-handoff",
            Kind::Send => "redis-handoff (send)",
            Kind::Stack => "redis-handoff Stack",
            Kind::StackSend => "redis-handoff Stack (send)",
            Kind::Compat => "redis-rs API on Stack",
            Kind::Fred => "fred 10.1",
            Kind::RedisRs => "redis-rs 1.8",
            Kind::RedisRsManager => "redis-rs 1.8 ConnectionManager",
            Kind::RedisTower => "redis-tower 0.1",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::Tower => "tower",
            Kind::Send => "send",
            Kind::Stack => "stack",
            Kind::StackSend => "stack-send",
            Kind::Compat => "compat",
            Kind::Fred => "fred",
            Kind::RedisRs => "redis-rs",
            Kind::RedisRsManager => "redis-rs-cm",
            Kind::RedisTower => "redis-tower",
        }
    }
}

/// One connection of one client library; cloned into every task of a workload.
#[derive(Clone)]
enum Client {
    /// Our connection, called through tower: `conn.clone().oneshot(command)`.
    Tower(Connection),
    /// Our connection, called through `Connection::send`.
    Send(Connection),
    /// Our full stack (every layer on), called through tower.
    Stack(Stack),
    /// Our full stack, called through `Stack::send` (the stack borrowed).
    StackSend(Stack),
    /// Our full stack, called through redis-rs's API.
    #[cfg(feature = "redis-rs")]
    Compat(Stack),
    Fred(fred::clients::Client),
    RedisRs(redis::aio::MultiplexedConnection),
    RedisRsManager(redis::aio::ConnectionManager),
    RedisTower(redis_tower::MultiplexedClient),
}

/// A redis-rs client for `url`, with `TCP_NODELAY` if asked.
fn redis_rs_client(url: &str, nodelay: bool) -> Result<redis::Client> {
    use redis::IntoConnectionInfo as _;
    let mut info = url.into_connection_info()?;
    if nodelay {
        info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    }
    Ok(redis::Client::open(info)?)
}

/// The workloads' operations through redis-rs's API, for every connection it drives: its own
/// multiplexed connection and connection manager, and our `Stack`.
mod redis_rs_api {
    use super::Result;
    use bytes::Bytes;
    use redis::aio::ConnectionLike;
    use redis::AsyncCommands;

    pub(super) async fn set<C: ConnectionLike + Send + Sync>(
        c: &mut C,
        key: &str,
        value: &Bytes,
    ) -> Result<()> {
        c.set::<_, _, ()>(key, &value[..]).await?;
        Ok(())
    }

    pub(super) async fn incr<C: ConnectionLike + Send + Sync>(c: &mut C, key: &str) -> Result<i64> {
        // INCR itself (AsyncCommands::incr sends INCRBY), as the other clients send.
        Ok(redis::cmd("INCR").arg(key).query_async::<i64>(c).await?)
    }

    pub(super) async fn get<C: ConnectionLike + Send + Sync>(
        c: &mut C,
        key: &str,
    ) -> Result<usize> {
        Ok(c.get::<_, Vec<u8>>(key).await?.len())
    }

    pub(super) async fn pipeline<C: ConnectionLike + Send + Sync>(
        c: &mut C,
        key: &str,
        n: usize,
        value: &Bytes,
    ) -> Result<u64> {
        let mut p = redis::pipe();
        for i in 0..n {
            p.cmd("SET").arg(format!("{key}:{i}")).arg(&value[..]);
        }
        let replies: Vec<redis::Value> = p.query_async(c).await?;
        Ok(replies.len() as u64)
    }

    pub(super) async fn transaction<C: ConnectionLike + Send + Sync>(
        c: &mut C,
        key: &str,
        side: &str,
    ) -> Result<usize> {
        let replies: Vec<redis::Value> = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(key)
            .cmd("INCR")
            .arg(key)
            .cmd("INCR")
            .arg(key)
            .cmd("GET")
            .arg(key)
            .cmd("SET")
            .arg(side)
            .arg("v")
            .query_async(c)
            .await?;
        Ok(replies.len())
    }
}

impl Client {
    async fn connect(kind: Kind, url: &str, nodelay: bool) -> Result<Client> {
        Ok(match kind {
            Kind::Tower => Client::Tower(Connection::connect(url).await?),
            Kind::Send => Client::Send(Connection::connect(url).await?),
            Kind::Stack => Client::Stack(Stack::connect(url).await?),
            Kind::StackSend => Client::StackSend(Stack::connect(url).await?),
            #[cfg(feature = "redis-rs")]
            Kind::Compat => Client::Compat(Stack::connect(url).await?),
            #[cfg(not(feature = "redis-rs"))]
            Kind::Compat => {
                return Err("the redis-rs API over Stack needs --features redis-rs".into())
            }
            Kind::Fred => {
                let config = fred::prelude::Config::from_url(url)?;
                let mut builder = fred::prelude::Builder::from_config(config);
                if nodelay {
                    builder.with_connection_config(|c| c.tcp.nodelay = Some(true));
                }
                let client = builder.build()?;
                client.init().await?;
                Client::Fred(client)
            }
            Kind::RedisRs => Client::RedisRs(
                redis_rs_client(url, nodelay)?
                    .get_multiplexed_async_connection()
                    .await?,
            ),
            Kind::RedisRsManager => Client::RedisRsManager(
                redis::aio::ConnectionManager::new(redis_rs_client(url, nodelay)?).await?,
            ),
            Kind::RedisTower => {
                Client::RedisTower(redis_tower::MultiplexedClient::connect_url(url).await?)
            }
        })
    }

    async fn set(&mut self, key: &str, value: Bytes) -> Result<()> {
        match self {
            Client::Tower(c) | Client::Send(c) => {
                c.send(cmd!("SET", key, value)).await?;
            }
            Client::Stack(c) => {
                c.clone().oneshot(cmd!("SET", key, value)).await?;
            }
            Client::StackSend(c) => {
                c.send(cmd!("SET", key, value)).await?;
            }
            #[cfg(feature = "redis-rs")]
            Client::Compat(c) => redis_rs_api::set(c, key, &value).await?,
            Client::Fred(c) => c.set::<(), _, _>(key, value, None, None, false).await?,
            Client::RedisRs(c) => redis_rs_api::set(c, key, &value).await?,
            Client::RedisRsManager(c) => redis_rs_api::set(c, key, &value).await?,
            Client::RedisTower(c) => {
                c.execute(tower_cmd::Set::new(key, value)).await?;
            }
        }
        Ok(())
    }

    async fn incr(&mut self, key: &str) -> Result<i64> {
        let n = match self {
            Client::Tower(c) => {
                let reply = c.clone().oneshot(cmd!("INCR", key)).await?;
                reply.as_i64().ok_or("INCR did not answer an integer")?
            }
            Client::Send(c) => {
                let reply = c.send(cmd!("INCR", key)).await?;
                reply.as_i64().ok_or("INCR did not answer an integer")?
            }
            Client::Stack(c) => {
                let reply = c.clone().oneshot(cmd!("INCR", key)).await?;
                reply.as_i64().ok_or("INCR did not answer an integer")?
            }
            Client::StackSend(c) => {
                let reply = c.send(cmd!("INCR", key)).await?;
                reply.as_i64().ok_or("INCR did not answer an integer")?
            }
            #[cfg(feature = "redis-rs")]
            Client::Compat(c) => redis_rs_api::incr(c, key).await?,
            Client::Fred(c) => c.incr::<i64, _>(key).await?,
            Client::RedisRs(c) => redis_rs_api::incr(c, key).await?,
            Client::RedisRsManager(c) => redis_rs_api::incr(c, key).await?,
            Client::RedisTower(c) => c.execute(tower_cmd::Incr::new(key)).await?,
        };
        Ok(n)
    }

    async fn get(&mut self, key: &str) -> Result<usize> {
        let len = match self {
            Client::Tower(c) => {
                let reply = c.clone().oneshot(cmd!("GET", key)).await?;
                reply.as_bytes().ok_or("GET did not answer a string")?.len()
            }
            Client::Send(c) => {
                let reply = c.send(cmd!("GET", key)).await?;
                reply.as_bytes().ok_or("GET did not answer a string")?.len()
            }
            Client::Stack(c) => {
                let reply = c.clone().oneshot(cmd!("GET", key)).await?;
                reply.as_bytes().ok_or("GET did not answer a string")?.len()
            }
            Client::StackSend(c) => {
                let reply = c.send(cmd!("GET", key)).await?;
                reply.as_bytes().ok_or("GET did not answer a string")?.len()
            }
            #[cfg(feature = "redis-rs")]
            Client::Compat(c) => redis_rs_api::get(c, key).await?,
            Client::Fred(c) => c.get::<Bytes, _>(key).await?.len(),
            Client::RedisRs(c) => redis_rs_api::get(c, key).await?,
            Client::RedisRsManager(c) => redis_rs_api::get(c, key).await?,
            Client::RedisTower(c) => c
                .execute(tower_cmd::Get::new(key))
                .await?
                .ok_or("GET did not answer a string")?
                .len(),
        };
        Ok(len)
    }

    /// A pipeline of `n` `SET`s of `value` on `key:0` .. `key:n-1`; the commands answered.
    async fn pipeline(&mut self, key: &str, n: usize, value: &Bytes) -> Result<u64> {
        let ours = || -> Pipeline {
            (0..n)
                .map(|i| cmd!("SET", format!("{key}:{i}"), value))
                .collect()
        };
        let answered = match self {
            Client::Tower(c) => ok_count(c.clone().oneshot(ours()).await?)?,
            Client::Send(c) => ok_count(c.send(ours()).await?)?,
            Client::Stack(c) => ok_count(c.clone().oneshot(ours()).await?)?,
            Client::StackSend(c) => ok_count(c.send(ours()).await?)?,
            #[cfg(feature = "redis-rs")]
            Client::Compat(c) => redis_rs_api::pipeline(c, key, n, value).await?,
            Client::Fred(c) => {
                use fred::prelude::KeysInterface as _;
                let p = c.pipeline();
                for i in 0..n {
                    let () = p
                        .set(format!("{key}:{i}"), value.clone(), None, None, false)
                        .await?;
                }
                let replies: Vec<fred::types::Value> = p.all().await?;
                replies.len() as u64
            }
            Client::RedisRs(c) => redis_rs_api::pipeline(c, key, n, value).await?,
            Client::RedisRsManager(c) => redis_rs_api::pipeline(c, key, n, value).await?,
            Client::RedisTower(c) => {
                let mut p = redis_tower::Pipeline::new();
                for i in 0..n {
                    p = p.push(tower_cmd::Set::new(format!("{key}:{i}"), value.clone()));
                }
                let replies = p.execute(c).await?;
                if replies.has_errors() {
                    return Err("a redis-tower pipeline answered an error".into());
                }
                replies.len() as u64
            }
        };
        if answered != n as u64 {
            return Err(format!("a pipeline of {n} got {answered} OKs").into());
        }
        Ok(answered)
    }

    /// A transaction of 5 commands on `key`: three `INCR`s, a `GET`, a `SET` of a sibling key.
    async fn transaction(&mut self, key: &str) -> Result<u64> {
        let side = format!("{key}:side");
        let ours = || {
            Transaction::new()
                .cmd(cmd!("INCR", key))
                .cmd(cmd!("INCR", key))
                .cmd(cmd!("INCR", key))
                .cmd(cmd!("GET", key))
                .cmd(cmd!("SET", side.as_str(), "v"))
        };
        let results = match self {
            Client::Tower(c) => c.clone().oneshot(ours()).await?.len(),
            Client::Send(c) => c.send(ours()).await?.len(),
            Client::Stack(c) => c.clone().oneshot(ours()).await?.len(),
            Client::StackSend(c) => c.send(ours()).await?.len(),
            #[cfg(feature = "redis-rs")]
            Client::Compat(c) => redis_rs_api::transaction(c, key, &side).await?,
            Client::Fred(c) => {
                use fred::interfaces::TransactionInterface as _;
                let tx = c.multi();
                let () = tx.incr(key).await?;
                let () = tx.incr(key).await?;
                let () = tx.incr(key).await?;
                let () = tx.get(key).await?;
                let () = tx.set(side.as_str(), "v", None, None, false).await?;
                let replies: Vec<fred::types::Value> = tx.exec(true).await?;
                replies.len()
            }
            Client::RedisRs(c) => redis_rs_api::transaction(c, key, &side).await?,
            Client::RedisRsManager(c) => redis_rs_api::transaction(c, key, &side).await?,
            Client::RedisTower(c) => {
                let committed = redis_tower::Transaction::new()
                    .push(tower_cmd::Incr::new(key))
                    .push(tower_cmd::Incr::new(key))
                    .push(tower_cmd::Incr::new(key))
                    .push(tower_cmd::Get::new(key))
                    .push(tower_cmd::Set::new(side.as_str(), "v"))
                    .execute(c)
                    .await?
                    .committed()
                    .ok_or("a redis-tower transaction was aborted")?;
                if committed.has_errors() {
                    return Err("a redis-tower transaction answered an error".into());
                }
                committed.len()
            }
        };
        if results != 5 {
            return Err(format!("a transaction of 5 answered {results} results").into());
        }
        Ok(5)
    }
}

/// How many replies of a batch are `OK`; an error reply fails the bench.
fn ok_count(replies: Vec<Result<redis_handoff::Reply, redis_handoff::Error>>) -> Result<u64> {
    let mut n = 0;
    for r in replies {
        if r?.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy)]
enum Op {
    Incr,
    Get,
    /// A `Pipeline` of this many `SET`s.
    Pipeline(usize),
    /// A `Transaction` of 5 commands.
    Transaction,
}

#[derive(Clone)]
struct Workload {
    name: String,
    op: Op,
    tasks: usize,
}

/// The workloads: one task, then `many` tasks sharing one connection; then pipelines from 10
/// tasks and transactions from 50.
fn workloads(many: usize) -> [Workload; 5] {
    [
        Workload {
            name: "INCR, 1 task".to_owned(),
            op: Op::Incr,
            tasks: 1,
        },
        Workload {
            name: format!("INCR, {many} tasks"),
            op: Op::Incr,
            tasks: many,
        },
        Workload {
            name: format!("GET 1 KiB, {many} tasks"),
            op: Op::Get,
            tasks: many,
        },
        Workload {
            name: "Pipeline of 100 SET, 10 tasks".to_owned(),
            op: Op::Pipeline(100),
            tasks: 10,
        },
        Workload {
            name: "Transaction of 5, 50 tasks".to_owned(),
            op: Op::Transaction,
            tasks: 50,
        },
    ]
}

impl Workload {
    fn key(&self, task: usize) -> String {
        match self.op {
            Op::Incr => format!("bench:incr:{}:{task}", self.tasks),
            Op::Get => format!("bench:get:{}:{task}", self.tasks),
            Op::Pipeline(_) => format!("bench:pipe:{}:{task}", self.tasks),
            Op::Transaction => format!("bench:multi:{}:{task}", self.tasks),
        }
    }

    /// Writes the values the workload reads.
    async fn prepare(&self, client: &Client) -> Result<()> {
        if let Op::Get = self.op {
            let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
            let mut client = client.clone();
            for task in 0..self.tasks {
                client.set(&self.key(task), value.clone()).await?;
            }
        }
        Ok(())
    }

    /// Runs the workload for `window`.
    async fn measure(&self, client: &Client, window: Duration, ctl: &Connection) -> Result<Sample> {
        let before = ServerStats::read(ctl).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_start = process_cpu();
        let start = Instant::now();
        let mut handles = Vec::with_capacity(self.tasks);
        for task in 0..self.tasks {
            let mut client = client.clone();
            let key = self.key(task);
            let stop = stop.clone();
            let op = self.op;
            let value = Bytes::from(vec![b'x'; 16]);
            handles.push(tokio::spawn(async move {
                let mut done: u64 = 0;
                loop {
                    let ops = match op {
                        Op::Incr => {
                            client.incr(&key).await?;
                            1
                        }
                        Op::Get => {
                            let len = client.get(&key).await?;
                            if len != VALUE_SIZE {
                                return Err(format!("GET {key} answered {len} bytes").into());
                            }
                            1
                        }
                        Op::Pipeline(n) => client.pipeline(&key, n, &value).await?,
                        Op::Transaction => client.transaction(&key).await?,
                    };
                    // An operation that finishes after the window closed is not counted.
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    done += ops;
                }
                Ok::<u64, BoxError>(done)
            }));
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + window)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = start.elapsed();
        let cpu = process_cpu().zip(cpu_start).map(|(end, start)| end - start);
        let mut total = 0u64;
        for handle in handles {
            total += handle.await??;
        }
        let after = ServerStats::read(ctl).await?;
        let reads = after.reads.saturating_sub(before.reads);
        // Less the INFO that took the second snapshot.
        let commands = after.commands.saturating_sub(before.commands + 1);
        let per = |x: f64, n: u64| if n == 0 { f64::NAN } else { x / n as f64 };
        Ok(Sample {
            ops: total as f64 / elapsed.as_secs_f64(),
            per_read: per(commands as f64, reads),
            client_us: per(cpu.unwrap_or(f64::NAN) * 1e6, total),
            server_us: per((after.cpu - before.cpu) * 1e6, commands),
        })
    }
}

/// CPU time of this process (every thread, user and system) in seconds, where Linux's
/// `/proc` tells it.
fn process_cpu() -> Option<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Process::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses: state is the first of
    // them, utime the 12th and stime the 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// One timed window.
#[derive(Clone, Copy)]
struct Sample {
    /// Operations per second.
    ops: f64,
    /// Commands per read the server made: how well the client pipelined.
    per_read: f64,
    /// CPU time of the bench process (the client under test) per operation, in µs.
    client_us: f64,
    /// CPU time of the server per command, in µs.
    server_us: f64,
}

/// Counters from the server's `INFO`.
struct ServerStats {
    commands: u64,
    reads: u64,
    /// used_cpu_user + used_cpu_sys, in seconds.
    cpu: f64,
}

impl ServerStats {
    async fn read(ctl: &Connection) -> Result<ServerStats> {
        let reply = ctl.send(cmd!("INFO")).await?;
        let text = reply.as_str().ok_or("INFO did not answer text")?;
        let field = |name: &str| -> Result<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("INFO has no {name}").into())
        };
        Ok(ServerStats {
            commands: field("total_commands_processed")? as u64,
            reads: field("total_reads_processed")? as u64,
            cpu: field("used_cpu_user")? + field("used_cpu_sys")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Running and reporting

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let kinds: Vec<Kind> = match &settings.clients {
        None => Kind::all(),
        Some(names) => {
            let mut kinds = Vec::new();
            for name in names {
                let kind = Kind::all()
                    .into_iter()
                    .find(|k| k.short() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Kind::all().into_iter().map(Kind::short).collect();
                        format!(
                            "unknown client {name:?} in BENCH_CLIENTS ({}; compat needs --features redis-rs)",
                            known.join(", ")
                        )
                    })?;
                kinds.push(kind);
            }
            kinds
        }
    };
    let workloads: Vec<Workload> = workloads(settings.tasks)
        .into_iter()
        .filter(|w| {
            settings
                .filter
                .as_ref()
                .is_none_or(|f| w.name.contains(f.as_str()))
        })
        .collect();
    if workloads.is_empty() || kinds.is_empty() {
        return Err("BENCH_FILTER / BENCH_CLIENTS left nothing to run".into());
    }

    let server = Server::start(&settings.server_bin)?;
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()?;

    let per_measure = settings.warmup + settings.window;
    let total = per_measure * (settings.rounds * workloads.len() * kinds.len()) as u32;
    eprintln!(
        "{} on 127.0.0.1:{}; {} round(s) x {} workload(s) x {} client(s), {:.1} s warm-up + {:.1} s each: about {:.0} s",
        server.version,
        server.port,
        settings.rounds,
        workloads.len(),
        kinds.len(),
        settings.warmup.as_secs_f64(),
        settings.window.as_secs_f64(),
        total.as_secs_f64(),
    );

    // results[workload][kind] = one sample per round
    let results = runtime.block_on(async {
        // A connection of its own for INFO, idle while a window runs.
        let ctl = Connection::connect(&url).await?;
        let mut clients = Vec::new();
        for &kind in &kinds {
            let client = Client::connect(kind, &url, settings.nodelay)
                .await
                .map_err(|e| format!("{} could not connect to {url}: {e}", kind.label()))?;
            clients.push(client);
        }
        for w in &workloads {
            w.prepare(&clients[0]).await?;
        }
        let mut results = vec![vec![Vec::new(); kinds.len()]; workloads.len()];
        let order = run_order(&kinds);
        for round in 0..settings.rounds {
            for (wi, w) in workloads.iter().enumerate() {
                for i in 0..kinds.len() {
                    // Every other round the other way round, so that no client always runs
                    // first, last or right after the same one; our clients that a ratio
                    // compares stay next to each other (see `run_order`).
                    let pos = if (round + wi) % 2 == 0 {
                        i
                    } else {
                        kinds.len() - 1 - i
                    };
                    let ki = order[pos];
                    let client = &clients[ki];
                    let label = kinds[ki].label();
                    let fail =
                        |e: BoxError| -> BoxError { format!("{label}, {}: {e}", w.name).into() };
                    if !settings.warmup.is_zero() {
                        w.measure(client, settings.warmup, &ctl)
                            .await
                            .map_err(fail)?;
                    }
                    let sample = w
                        .measure(client, settings.window, &ctl)
                        .await
                        .map_err(fail)?;
                    eprintln!(
                        "  round {}/{}  {:<20} {:<20} {:>8.0} ops/s  client {:>5.2} µs/op  server {:>5.2} µs/op  {:>5.1} cmds/server read",
                        round + 1,
                        settings.rounds,
                        w.name,
                        label,
                        sample.ops,
                        sample.client_us,
                        sample.server_us,
                        sample.per_read,
                    );
                    results[wi][ki].push(sample);
                }
            }
        }
        if let Some(Client::Fred(c)) = clients.iter().find(|c| matches!(c, Client::Fred(_))) {
            let _ = c.quit().await;
        }
        Ok::<_, BoxError>(results)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    let report = Report {
        settings: &settings,
        kinds: &kinds,
        workloads: &workloads,
        results,
        server_version: server.version.clone(),
    };
    drop(server);
    println!();
    println!("{}", report.plain());
    println!("{}", report.markdown());
    report.write_chart();
    Ok(())
}

struct Report<'a> {
    settings: &'a Settings,
    kinds: &'a [Kind],
    workloads: &'a [Workload],
    results: Vec<Vec<Vec<Sample>>>,
    server_version: String,
}

/// The order the clients run in within a round (indices into `kinds`; reversed every other
/// round): the two `send` rows together, the bare connection next to the `Stack`, the redis-rs
/// API on the `Stack` next to it, so that the pairs those ratios compare are measured seconds
/// apart; the peers after.
fn run_order(kinds: &[Kind]) -> Vec<usize> {
    let rank = |k: Kind| match k {
        Kind::Send => 0,
        Kind::StackSend => 1,
        Kind::Tower => 2,
        Kind::Stack => 3,
        Kind::Compat => 4,
        _ => 5,
    };
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    // Stable: the peers keep their order.
    order.sort_by_key(|&i| rank(kinds[i]));
    order
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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

fn fixed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{r:.2}x"),
        _ => "-".to_owned(),
    }
}

/// A table of text cells: the first `left` columns align left, the others right.
#[path = "support/table.rs"]
mod table;
use table::Table;

impl Report<'_> {
    fn values(&self, wi: usize, ki: usize, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.results[wi][ki].iter().map(f).collect()
    }

    fn index(&self, kind: Kind) -> Option<usize> {
        self.kinds.iter().position(|&k| k == kind)
    }

    fn median_ops(&self, wi: usize, kind: Kind) -> Option<f64> {
        Some(median(&self.values(wi, self.index(kind)?, |s| s.ops)))
    }

    /// `a` over `b`: the median over the rounds of their ratio within each round, so that a
    /// machine whose speed drifts between rounds moves both sides of a ratio together.
    fn paired_ratio(&self, wi: usize, a: Kind, b: Kind) -> Option<f64> {
        let ours = self.values(wi, self.index(a)?, |s| s.ops);
        let theirs = self.values(wi, self.index(b)?, |s| s.ops);
        let ratios: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .filter(|(_, &t)| t > 0.0)
            .map(|(o, t)| o / t)
            .collect();
        Some(median(&ratios))
    }

    /// Every client on its own row, with the spread of the rounds and where the CPU went.
    fn detail(&self) -> Table {
        let header = [
            "workload",
            "client",
            "ops/s (median)",
            "rounds: min–max",
            "client CPU µs/op",
            "server CPU µs/op",
            "cmds/server read",
        ];
        let mut rows = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            for (ki, &kind) in self.kinds.iter().enumerate() {
                let ops = self.values(wi, ki, |s| s.ops);
                let min = ops.iter().copied().fold(f64::INFINITY, f64::min);
                let max = ops.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                rows.push(vec![
                    if ki == 0 { w.name.as_str() } else { "" }.to_owned(),
                    kind.label().to_owned(),
                    thousands(median(&ops)),
                    format!("{}–{}", thousands(min), thousands(max)),
                    fixed(median(&self.values(wi, ki, |s| s.client_us)), 2),
                    fixed(median(&self.values(wi, ki, |s| s.server_us)), 2),
                    fixed(median(&self.values(wi, ki, |s| s.per_read)), 1),
                ]);
            }
        }
        Table {
            header: header.map(str::to_owned).to_vec(),
            rows,
            left: 2,
        }
    }

    /// One row per workload: median ops/s of each client and how ours compares.
    fn summary(&self) -> Table {
        let mut header = vec!["workload".to_owned()];
        header.extend(self.kinds.iter().map(|k| format!("{} ops/s", k.label())));
        header.push("ours/redis-rs".to_owned());
        header.push("ours/fred".to_owned());
        header.push("Stack/redis-rs".to_owned());
        header.push("Stack/ours".to_owned());
        header.push("Stack (send)/ours (send)".to_owned());
        header.push("Stack/redis-tower".to_owned());
        header.push("redis-rs API on Stack/Stack".to_owned());
        let mut rows = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            let mut row = vec![w.name.clone()];
            row.extend(
                self.kinds
                    .iter()
                    .map(|&k| thousands(self.median_ops(wi, k).unwrap_or(f64::NAN))),
            );
            // "Ours" is the tower row, the way users call it; `send` when only it ran.
            let ours = if self.kinds.contains(&Kind::Tower) {
                Kind::Tower
            } else {
                Kind::Send
            };
            let pairs = [
                (ours, Kind::RedisRs),
                (ours, Kind::Fred),
                (Kind::Stack, Kind::RedisRs),
                (Kind::Stack, ours),
                (Kind::StackSend, Kind::Send),
                (Kind::Stack, Kind::RedisTower),
                (Kind::Compat, Kind::Stack),
            ];
            row.extend(pairs.map(|(a, b)| ratio(self.paired_ratio(wi, a, b))));
            rows.push(row);
        }
        Table {
            header,
            rows,
            left: 1,
        }
    }

    fn notes(&self) -> Vec<String> {
        let s = self.settings;
        let nodelay = if s.nodelay {
            "on (BENCH_NODELAY=1)"
        } else {
            "off (its default)"
        };
        vec![
            format!(
                "{}, started by the bench with `--save \"\" --appendonly no`; {} logical CPU(s)",
                self.server_version,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            format!(
                "median of {} round(s); each round runs every client in turn (the order reversed every other round): {:.1} s warm-up, then {:.1} s timed",
                s.rounds,
                s.warmup.as_secs_f64(),
                s.window.as_secs_f64()
            ),
            format!(
                "one connection per client, one multi-thread tokio runtime with {WORKERS} workers for all; each task on its own key"
            ),
            "redis-handoff: RESP3, TCP_NODELAY on; `conn.clone().oneshot(cmd)` through tower, and `conn.send(cmd)` in the (send) row".to_owned(),
            format!("fred 10.1: one client, default config (RESP2), TCP_NODELAY {nodelay}"),
            format!("redis-rs 1.8: `get_multiplexed_async_connection` (RESP2), TCP_NODELAY {nodelay}; the ConnectionManager row: `ConnectionManager::new(client)`, the same connection settings"),
            "redis-tower 0.1: `MultiplexedClient::connect_url(url)`, default config (RESP3 when the server speaks it; TCP_NODELAY always on), typed commands (`Incr`, `Get`, `Set`), `redis_tower::Pipeline` and `redis_tower::Transaction`".to_owned(),
            "redis-handoff Stack: `Stack::connect(url)` with every layer on (metrics, circuit breaker, relaxed timeout, handoff, demux), through tower; the (send) row: `stack.send(cmd)`, the stack borrowed".to_owned(),
            "redis-rs API on Stack (feature `redis-rs`): the redis-rs rows' code (`AsyncCommands`, `redis::cmd`, `redis::pipe()`, `.atomic()`) with a `Stack` as its connection".to_owned(),
            "ours/x: redis-handoff's ops/s (tower, the bare connection) over x's; Stack/x: the full Stack's over x's; Stack (send)/ours (send): both borrowed, through their `send`; redis-rs API on Stack/Stack: what redis-rs's API costs over the Stack's own".to_owned(),
            "every ratio is the median over the rounds of the two clients' ratio within one round (the Connection and the Stack run one after the other, as do the two send rows, and the Stack and the redis-rs API on it), not the ratio of the medians".to_owned(),
        ]
    }

    fn plain(&self) -> String {
        let mut out = self.detail().plain();
        out.push('\n');
        out.push_str(&self.summary().plain());
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "  {note}");
        }
        out.push_str(
            "  client CPU: the bench process's CPU time per operation; server CPU: redis-server's per command;\n  \
             cmds/server read: commands the server ran per socket read, i.e. how much the client pipelined\n",
        );
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::from("Markdown:\n\n");
        let _ = writeln!(out, "`{}`\n", self.settings.command_line());
        out.push_str(&self.summary().markdown());
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The chart

/// Operations per second against tasks, one line per client, as an SVG.
#[path = "support/chart.rs"]
mod chart;

impl Report<'_> {
    /// Draws the median ops/s of every client on every workload (a panel per operation, the
    /// part of the workload's name before its comma) to `target/bench/throughput.svg`.
    fn write_chart(&self) {
        let mut points = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            let operation = w
                .name
                .split_once(", ")
                .map_or(w.name.as_str(), |(op, _)| op);
            for (ki, kind) in self.kinds.iter().enumerate() {
                points.push(chart::Point {
                    operation: operation.to_owned(),
                    tasks: w.tasks,
                    client: kind.label().to_owned(),
                    ops: median(&self.values(wi, ki, |s| s.ops)),
                });
            }
        }
        let title = format!(
            "throughput by tasks: {}, median of {} round(s)",
            self.server_version, self.settings.rounds
        );
        let path = chart::default_path("throughput");
        match chart::write(&path, &chart::Chart::new(points).to_svg(&title)) {
            Ok(()) => println!("Chart: {}", path.display()),
            Err(e) => eprintln!("could not write the chart to {}: {e}", path.display()),
        }
    }
}
