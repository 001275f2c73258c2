//! The cluster client against redis-rs's async cluster client and fred's clustered client, on a
//! 3-primary Redis Cluster the bench starts: steady throughput, then the same load through a
//! resharding of thousands of slots and back.
//!
//! ```text
//! cargo bench --bench cluster
//! ```
//!
//! The bench starts three `redis-server` processes with `cluster-enabled yes` (from `PATH`, or
//! `REDIS_SERVER`; `redis-cli` from `PATH`, or `REDIS_CLI`) on free loopback ports and joins
//! them with `redis-cli --cluster create`. Each client then runs `BENCH_TASKS` tasks of `GET`
//! and `SET` (half each) over `BENCH_KEYS` random keys:
//!
//! - **steady**: a warm-up, then `BENCH_ROUNDS` timed windows per client, the clients taking
//!   turns (one window each per round, so that a noisy moment on a shared machine falls on
//!   all of them alike); the median operations per second, and the latency over all rounds.
//! - **resharding**: the same load while `redis-cli --cluster reshard` moves `BENCH_SLOTS`
//!   slots from the first primary to the second and back. Counted for each client: commands
//!   that failed, replies that cannot be the answer to their command (a `GET` of `key` answers
//!   nil or the value `SET` writes for `key`, which names the key: anything else is another
//!   command's reply), the slowest command, p99.9 inside the window against the steady p99.9
//!   (and split: the commands whose key's slot was among those moved, the others, and those
//!   to the third primary, which takes no part in the resharding, against their own steady
//!   p99.9),
//!   and whether the client froze (no command answered for `BENCH_FREEZE_SECS`, or tasks still
//!   waiting on their command 30 s after the run ended). With
//!   `BENCH_RESHARD_RUNS=50` the resharding run repeats, to catch a freeze that happens once
//!   in a while.
//!
//! | variable             | default | meaning                                              |
//! | -------------------- | ------- | ---------------------------------------------------- |
//! | `BENCH_SECS`         | 5       | length of one steady window, in seconds              |
//! | `BENCH_ROUNDS`       | 3       | steady windows per client, taken in turns            |
//! | `BENCH_WARMUP_SECS`  | 1       | warm-up before it                                    |
//! | `BENCH_TASKS`        | 100     | tasks sending commands, one at a time each           |
//! | `BENCH_KEYS`         | 10000   | keys the tasks pick from                             |
//! | `BENCH_SLOTS`        | 2000    | slots moved away and back in each resharding run     |
//! | `BENCH_RESHARD_RUNS` | 1       | resharding runs per client                           |
//! | `BENCH_FREEZE_SECS`  | 10      | no answer for this long counts as a freeze           |
//! | `BENCH_CLIENTS`      | (all)   | subset of `cluster,redis-rs,fred`, by commas         |
//!
//! All clients share one multi-thread tokio runtime with two workers.

use std::error::Error as StdError;
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface};
use hdrhistogram::Histogram;
use redis_handoff::cluster::key_slot;
use redis_handoff::{cmd, Cluster, ConnectOptions};
use tower::ServiceExt;

#[path = "support/env.rs"]
mod env;

type BoxError = Box<dyn StdError + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    window: Duration,
    rounds: usize,
    warmup: Duration,
    tasks: usize,
    keys: usize,
    slots: usize,
    runs: usize,
    freeze: Duration,
    clients: Vec<String>,
    server_bin: String,
    cli_bin: String,
    env: env::Env,
    // The slots of the third primary, which takes no part in the resharding (read once the
    // cluster is up).
    bystander: Option<std::ops::RangeInclusive<u16>>,
}

impl Settings {
    fn read() -> Result<Settings> {
        let mut env = env::Env::default();
        let clients = env
            .var("BENCH_CLIENTS")
            .map(|v| v.split(',').map(|c| c.trim().to_string()).collect())
            .unwrap_or_else(|| vec!["cluster".into(), "redis-rs".into(), "fred".into()]);
        Ok(Settings {
            bystander: None,
            window: env.secs("BENCH_SECS", 5.0)?,
            rounds: env.count("BENCH_ROUNDS", 3)?.max(1),
            warmup: env.secs("BENCH_WARMUP_SECS", 1.0)?,
            tasks: env.count("BENCH_TASKS", 100)?.max(1),
            keys: env.count("BENCH_KEYS", 10_000)?.max(1),
            slots: env.count("BENCH_SLOTS", 2000)?.clamp(1, 5000),
            runs: env.count("BENCH_RESHARD_RUNS", 1)?,
            freeze: env.secs("BENCH_FREEZE_SECS", 10.0)?,
            clients,
            server_bin: env
                .var("REDIS_SERVER")
                .unwrap_or_else(|| "redis-server".into()),
            cli_bin: env.var("REDIS_CLI").unwrap_or_else(|| "redis-cli".into()),
            env,
        })
    }
}

// ===== the cluster =====

struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TestCluster {
    nodes: Vec<Node>,
    cli: String,
}

impl TestCluster {
    fn start(server: &str, cli: &str) -> Result<TestCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Process::new(server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "5000"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("could not start `{server}`: {e}"))?;
            nodes.push(Node {
                child,
                port,
                _dir: dir,
            });
        }
        for n in &nodes {
            wait_for(|| std::net::TcpStream::connect(("127.0.0.1", n.port)).is_ok())?;
        }
        let mut create = Process::new(cli);
        create.args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("could not run `{cli}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let cluster = TestCluster {
            nodes,
            cli: cli.to_string(),
        };
        cluster.settle()?;
        Ok(cluster)
    }

    fn cli(&self, port: u16, args: &[&str]) -> Result<String> {
        let out = Process::new(&self.cli)
            .args(["-p", &port.to_string()])
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn settle(&self) -> Result<()> {
        wait_for(|| {
            self.nodes.iter().all(|n| {
                self.cli(n.port, &["CLUSTER", "INFO"])
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            })
        })?;
        // Every node agrees on the owner of every range.
        wait_for(|| {
            let views: Vec<String> = self
                .nodes
                .iter()
                .filter_map(|n| self.cli(n.port, &["CLUSTER", "SLOTS"]).ok())
                .map(|v| {
                    let mut lines: Vec<&str> = v.lines().collect();
                    lines.sort();
                    lines.join("\n")
                })
                .collect();
            views.windows(2).all(|w| w[0] == w[1])
        })
    }

    fn id(&self, i: usize) -> Result<String> {
        Ok(self
            .cli(self.nodes[i].port, &["CLUSTER", "MYID"])?
            .trim()
            .to_string())
    }

    /// Moves `slots` slots from node `from` to node `to` with `redis-cli --cluster reshard`.
    fn reshard(&self, from: usize, to: usize, slots: usize) -> Result<()> {
        let out = Process::new(&self.cli)
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.nodes[from].port))
            .args(["--cluster-from", &self.id(from)?])
            .args(["--cluster-to", &self.id(to)?])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-yes", "--cluster-pipeline", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster reshard failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        self.settle()
    }
}

impl TestCluster {
    /// The one range of slots node `i` serves.
    fn served_by(&self, i: usize) -> Result<std::ops::RangeInclusive<u16>> {
        let nodes = self.cli(self.nodes[i].port, &["CLUSTER", "NODES"])?;
        let mine = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
        let ranges: Vec<&str> = mine.split_whitespace().skip(8).collect();
        let parsed = match ranges.as_slice() {
            [one] => one
                .split_once('-')
                .and_then(|(a, b)| Some(a.parse::<u16>().ok()?..=b.parse::<u16>().ok()?)),
            _ => None,
        };
        parsed.ok_or_else(|| format!("node {i} does not serve one range of slots: {mine}").into())
    }

    /// Checks that node `i` serves slots `0..n`: the slots a reshard from the first node took
    /// (redis-cli takes the source's lowest slots first), which the latency split relies on.
    fn owns_lowest(&self, i: usize, n: usize) -> Result<()> {
        let nodes = self.cli(self.nodes[i].port, &["CLUSTER", "NODES"])?;
        let want = if n == 1 {
            "0".to_owned()
        } else {
            format!("0-{}", n - 1)
        };
        let mine = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
        if mine.split_whitespace().skip(8).any(|r| r == want) {
            Ok(())
        } else {
            Err(format!("after the reshard node {i} does not serve slots {want}: {mine}").into())
        }
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if Instant::now() > deadline {
            return Err("the cluster did not settle within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ===== the clients =====

#[derive(Clone)]
enum Client {
    Ours(Cluster),
    RedisRs(redis::cluster_async::ClusterConnection),
    Fred(fred::clients::Client),
}

/// What a command's answer was.
enum Answer {
    Ok,
    /// A reply that cannot be the answer to this command.
    Wrong(String),
}

impl Client {
    async fn connect(name: &str, port: u16) -> Result<Client> {
        let url = format!("redis://127.0.0.1:{port}");
        Ok(match name {
            "cluster" => Client::Ours(
                Cluster::builder(ConnectOptions::from_url(&url)?)
                    .connect()
                    .await?,
            ),
            "redis-rs" => {
                let client = redis::cluster::ClusterClient::new(vec![url])?;
                Client::RedisRs(client.get_async_connection().await?)
            }
            "fred" => {
                let config = fred::prelude::Config {
                    server: fred::prelude::ServerConfig::new_clustered(vec![(
                        "127.0.0.1".to_string(),
                        port,
                    )]),
                    ..Default::default()
                };
                let client = fred::prelude::Builder::from_config(config).build()?;
                client.init().await?;
                Client::Fred(client)
            }
            other => return Err(format!("unknown client {other:?}").into()),
        })
    }

    async fn set(&mut self, key: &str) -> Result<Answer> {
        let ok = match self {
            Client::Ours(c) => c.clone().oneshot(cmd!("SET", key, key)).await?.is_ok(),
            Client::RedisRs(c) => {
                let r: String = redis::cmd("SET").arg(key).arg(key).query_async(c).await?;
                r == "OK"
            }
            Client::Fred(c) => {
                let r: fred::types::Value = c.set(key, key, None, None, false).await?;
                r.as_str().is_some_and(|s| s == "OK")
            }
        };
        Ok(if ok {
            Answer::Ok
        } else {
            Answer::Wrong(format!("SET {key} did not answer OK"))
        })
    }

    async fn get(&mut self, key: &str) -> Result<Answer> {
        let value: Option<String> = match self {
            Client::Ours(c) => {
                let r = c.clone().oneshot(cmd!("GET", key)).await?;
                if r.is_null() {
                    None
                } else {
                    Some(r.as_str().unwrap_or("<not a string>").to_string())
                }
            }
            Client::RedisRs(c) => redis::cmd("GET").arg(key).query_async(c).await?,
            Client::Fred(c) => c.get(key).await?,
        };
        Ok(match value {
            Some(v) if v != key => Answer::Wrong(format!("GET {key} answered {v:?}")),
            _ => Answer::Ok,
        })
    }
}

// ===== the load =====

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    wrong: u64,
    // Tasks still waiting on their command when the run ended: the client froze.
    stuck: u64,
    first_problem: Option<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    last_answer_ms: Arc<AtomicU64>,
    t0: Instant,
    tasks: Vec<tokio::task::JoinHandle<(Tally, Latency)>>,
}

/// Latencies in microseconds: all commands, and those whose key is in one of the slots the
/// resharding moves (below `moving`, the slots `redis-cli --cluster reshard` takes first).
struct Latency {
    all: Histogram<u64>,
    moving: Histogram<u64>,
    // The commands to the third primary, which takes no part in the resharding.
    bystander: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        let h = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        Latency {
            all: h(),
            moving: h(),
            bystander: h(),
        }
    }

    fn add(&mut self, other: &Latency) {
        let _ = self.all.add(&other.all);
        let _ = self.moving.add(&other.moving);
        let _ = self.bystander.add(&other.bystander);
    }

    /// The other commands: those whose slot stayed where it was.
    fn still(&self) -> Histogram<u64> {
        let mut h = self.all.clone();
        let _ = h.subtract(&self.moving);
        h
    }
}

fn start_load(client: &Client, s: &Settings) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let tasks = (0..s.tasks)
        .map(|t| {
            let (mut client, stop, last, keys, moving) =
                (client.clone(), stop.clone(), last.clone(), s.keys, s.slots);
            let bystander = s.bystander.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut hist = Latency::new();
                let mut rng = fastrand::Rng::with_seed(t as u64);
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("bench:{}", rng.usize(..keys));
                    let started = Instant::now();
                    let answer = if rng.bool() {
                        client.get(&key).await
                    } else {
                        client.set(&key).await
                    };
                    let us = started.elapsed().as_micros() as u64;
                    let _ = hist.all.record(us);
                    let slot = key_slot(key.as_bytes());
                    if usize::from(slot) < moving {
                        let _ = hist.moving.record(us);
                    }
                    if bystander.as_ref().is_some_and(|r| r.contains(&slot)) {
                        let _ = hist.bystander.record(us);
                    }
                    last.fetch_max(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                    match answer {
                        Ok(Answer::Ok) => tally.ok += 1,
                        Ok(Answer::Wrong(what)) => {
                            tally.wrong += 1;
                            tally.first_problem.get_or_insert(what);
                        }
                        Err(e) => {
                            tally.failed += 1;
                            tally.first_problem.get_or_insert(e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (tally, hist)
            })
        })
        .collect();
    Load {
        stop,
        last_answer_ms: last,
        t0,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (Tally, Latency) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        let mut hist = Latency::new();
        // One deadline for all of them: a task stuck on a frozen client is left behind (and
        // the freeze reported) without every other stuck task waiting its own turn.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for t in self.tasks {
            match tokio::time::timeout_at(deadline, t).await {
                Ok(Ok((tally, h))) => {
                    all.ok += tally.ok;
                    all.failed += tally.failed;
                    all.wrong += tally.wrong;
                    if all.first_problem.is_none() {
                        all.first_problem = tally.first_problem;
                    }
                    hist.add(&h);
                }
                _ => {
                    all.failed += 1;
                    all.stuck += 1;
                    all.first_problem
                        .get_or_insert("a task never finished".into());
                }
            }
        }
        (all, hist)
    }

    /// How long since the last answer, now.
    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_answer_ms.load(Ordering::Relaxed));
        self.t0.elapsed().saturating_sub(last)
    }
}

struct Row {
    client: String,
    steady_ops: f64,
    steady_p999_us: u64,
    reshard_failed: u64,
    reshard_wrong: u64,
    reshard_p999_us: u64,
    // p99.9 inside the window of the commands to the slots that moved, and to the others.
    moving_p999_us: u64,
    still_p999_us: u64,
    // The third primary's commands: p99.9 steady and inside the window.
    bystander_steady_p999_us: u64,
    bystander_p999_us: u64,
    reshard_max_us: u64,
    freezes: usize,
    runs: usize,
    problem: Option<String>,
}

fn run() -> Result<()> {
    let mut s = Settings::read()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cluster = Arc::new(TestCluster::start(&s.server_bin, &s.cli_bin)?);
    s.bystander = Some(cluster.served_by(2)?);
    let seed = cluster.nodes[0].port;
    let clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for name in &s.clients {
            clients.push((name.clone(), Client::connect(name, seed).await?));
        }
        Ok::<_, Box<dyn StdError + Send + Sync>>(clients)
    })?;
    // Steady state first, the clients taking turns, before any resharding (after which a
    // client may not answer any more).
    let mut steadies: Vec<Steady> = Vec::new();
    for round in 0..s.rounds {
        for (i, (name, client)) in clients.iter().enumerate() {
            eprintln!("cluster bench: {name}, steady round {}", round + 1);
            let window = runtime.block_on(steady_window(client, &s, round == 0));
            match steadies.get_mut(i) {
                Some(st) => st.add(window),
                None => steadies.push(Steady::from(window)),
            }
        }
    }
    let mut rows = Vec::new();
    for ((name, client), steady) in clients.iter().zip(steadies) {
        eprintln!("cluster bench: {name}, resharding");
        let row = runtime.block_on(bench_resharding(name, client, steady, &cluster, &s))?;
        rows.push(row);
    }
    println!(
        "cluster bench: 3 primaries, {} tasks of GET/SET over {} keys; steady: median of {} window(s) of {:?}, taken in turns; resharding {} slots away and back, {} run(s)",
        s.tasks, s.keys, s.rounds, s.window, s.slots, s.runs
    );
    println!(
        "\n| client | steady ops/s | steady p99.9 | failed in resharding | wrong replies | p99.9 in resharding | slowest | freezes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} ms | {} | {} | {:.2} ms ({:.1}x) | {:.1} ms | {} of {} |",
            r.client,
            r.steady_ops,
            r.steady_p999_us as f64 / 1000.0,
            r.reshard_failed,
            r.reshard_wrong,
            r.reshard_p999_us as f64 / 1000.0,
            r.reshard_p999_us as f64 / (r.steady_p999_us.max(1)) as f64,
            r.reshard_max_us as f64 / 1000.0,
            r.freezes,
            r.runs,
        );
    }
    println!(
        "\nInside the resharding window, by where the key's slot was (slots below {} moved, the others stayed):\n",
        s.slots
    );
    println!("| client | p99.9, slots that moved | p99.9, slots that stayed | steady p99.9 | third primary (not resharding): p99.9 in the window vs steady |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms vs {:.2} ms ({:.1}x) |",
            r.client,
            r.moving_p999_us as f64 / 1000.0,
            r.still_p999_us as f64 / 1000.0,
            r.steady_p999_us as f64 / 1000.0,
            r.bystander_p999_us as f64 / 1000.0,
            r.bystander_steady_p999_us as f64 / 1000.0,
            r.bystander_p999_us as f64 / (r.bystander_steady_p999_us.max(1)) as f64,
        );
    }
    for r in &rows {
        if let Some(p) = &r.problem {
            println!("{}: first problem: {p}", r.client);
        }
    }
    println!("\n{}", s.env.command_line("cluster"));
    Ok(())
}

/// One steady window: operations per second, latency, the first problem.
type Window = (f64, Latency, Option<String>);

/// The steady windows of one client.
struct Steady {
    ops: Vec<f64>,
    hist: Latency,
    problem: Option<String>,
}

impl Steady {
    fn from((ops, hist, problem): Window) -> Steady {
        Steady {
            ops: vec![ops],
            hist,
            problem,
        }
    }

    fn add(&mut self, (ops, hist, problem): Window) {
        self.ops.push(ops);
        self.hist.add(&hist);
        if self.problem.is_none() {
            self.problem = problem;
        }
    }

    fn median_ops(&self) -> f64 {
        let mut ops = self.ops.clone();
        ops.sort_by(f64::total_cmp);
        ops.get(ops.len() / 2).copied().unwrap_or(0.0)
    }
}

/// One steady window of `client` (after a warm-up when `warm_up`).
async fn steady_window(client: &Client, s: &Settings, warm_up: bool) -> Window {
    if warm_up {
        let warm = start_load(client, s);
        tokio::time::sleep(s.warmup).await;
        warm.finish().await;
    }
    let steady = start_load(client, s);
    let started = Instant::now();
    tokio::time::sleep(s.window).await;
    let elapsed = started.elapsed();
    let (tally, hist) = steady.finish().await;
    (
        tally.ok as f64 / elapsed.as_secs_f64(),
        hist,
        tally.first_problem,
    )
}

async fn bench_resharding(
    name: &str,
    client: &Client,
    steady: Steady,
    cluster: &Arc<TestCluster>,
    s: &Settings,
) -> Result<Row> {
    let steady_ops = steady.median_ops();
    let steady_p999 = steady.hist.all.value_at_quantile(0.999);
    let hist = steady.hist;
    let mut problem = steady.problem;

    // Through resharding, away and back, `runs` times.
    let mut failed = 0;
    let mut wrong = 0;
    let mut freezes = 0;
    let mut inside = Latency::new();
    for _ in 0..s.runs {
        let load = start_load(client, s);
        let done = Arc::new(Mutex::new(None));
        let mover = {
            let (cluster, done, slots) = (cluster.clone(), done.clone(), s.slots);
            std::thread::spawn(move || {
                let r = cluster
                    .reshard(0, 1, slots)
                    .and_then(|()| cluster.owns_lowest(1, slots))
                    .and_then(|()| cluster.reshard(1, 0, slots));
                *done.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(r.map_err(|e| e.to_string()));
            })
        };
        let mut froze = false;
        while !mover.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if load.silent_for() > s.freeze {
                froze = true;
            }
        }
        let _ = mover.join();
        if let Some(Err(e)) = done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.into());
        }
        if load.silent_for() > s.freeze {
            froze = true;
        }
        let (tally, hist) = load.finish().await;
        froze |= tally.stuck > 0;
        failed += tally.failed;
        wrong += tally.wrong;
        freezes += usize::from(froze);
        if problem.is_none() {
            problem = tally.first_problem;
        }
        inside.add(&hist);
    }
    Ok(Row {
        client: name.to_string(),
        steady_ops,
        steady_p999_us: steady_p999,
        reshard_failed: failed,
        reshard_wrong: wrong,
        reshard_p999_us: inside.all.value_at_quantile(0.999),
        moving_p999_us: inside.moving.value_at_quantile(0.999),
        still_p999_us: inside.still().value_at_quantile(0.999),
        bystander_steady_p999_us: hist.bystander.value_at_quantile(0.999),
        bystander_p999_us: inside.bystander.value_at_quantile(0.999),
        reshard_max_us: inside.all.max(),
        freezes,
        runs: s.runs,
        problem,
    })
}
