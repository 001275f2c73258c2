//! `redis-handoff`: the command-line tool.
//!
//! `redis-handoff sim` runs the maintenance simulator: RESP proxy nodes in front of a
//! redis-server (or the in-memory store) and the HTTP admin API, configured by flags or by the
//! environment variables Redis's test proxy reads (`LISTEN_PORT`, `LISTEN_HOST`, `TARGET_HOST`,
//! `TARGET_PORT`, `TIMEOUT`, `ENABLE_LOGGING`, `API_PORT`, `DEFAULT_INTERCEPTORS`), or by its
//! flags (`--listenPort` and the like). With `--cluster` it fronts a Redis Cluster, one node per
//! cluster node, and `--scenario migrate-slots` moves slots once it runs.
//!
//! `redis-handoff drill` runs a workload through the recommended stack (or a bare connection)
//! while the embedded simulator plays maintenance, and reports what the application saw; the
//! engine is [`redis_handoff::drill`], this file only reads the flags and prints.

use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use redis_handoff::drill::{self, Drill, DrillConfig, DrillReport, Scenario, StackKind, Target};
use redis_handoff::sim::{Backend, Habits, ShardIds, Simulator, Slots};
use redis_handoff::ConnectOptions;

/// The drill's progress on stderr: a bar or plain lines.
#[path = "redis-handoff/progress.rs"]
mod progress;

#[derive(Debug, Parser)]
#[command(
    name = "redis-handoff",
    version,
    about = "Tools for rehearsing managed-Redis maintenance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the maintenance simulator: proxy nodes and the HTTP admin API.
    Sim(SimArgs),
    /// Run a workload through the stack while maintenance happens, and report what it saw.
    Drill(DrillArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// Forward to the redis-server at --target-host:--target-port.
    Redis,
    /// Serve from the embedded in-memory store (for demos without Redis).
    Memory,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Ports the proxy nodes listen on, comma separated (0 picks a free port). With
    /// --cluster: one port per cluster node, or one port P for P, P+1, ... (0: free ports).
    #[arg(
        long = "listen-port",
        visible_alias = "listenPort",
        env = "LISTEN_PORT",
        value_delimiter = ',',
        default_value = "6379"
    )]
    listen_port: Vec<u16>,

    /// Address the proxy nodes listen on; also the host announced in `CLUSTER SLOTS` (and,
    /// with --cluster, in every rewritten topology reply and redirect; `0.0.0.0` is announced
    /// as 127.0.0.1).
    #[arg(
        long = "listen-host",
        visible_alias = "listenHost",
        env = "LISTEN_HOST",
        default_value = "127.0.0.1"
    )]
    listen_host: String,

    /// Host of the redis-server to forward to. Without it (or with `memory`) the in-memory
    /// store serves the data.
    #[arg(
        long = "target-host",
        visible_alias = "targetHost",
        env = "TARGET_HOST"
    )]
    target_host: Option<String>,

    /// Port of the redis-server to forward to.
    #[arg(
        long = "target-port",
        visible_alias = "targetPort",
        env = "TARGET_PORT",
        default_value_t = 6379
    )]
    target_port: u16,

    /// Close a client connection idle (nothing read or written) for this many milliseconds;
    /// 0 or absent: never.
    #[arg(long, env = "TIMEOUT", value_name = "MS")]
    timeout: Option<u64>,

    /// Log every client connection and disconnection (the simulator's debug level).
    #[arg(
        long = "enable-logging",
        visible_alias = "enableLogging",
        env = "ENABLE_LOGGING",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    enable_logging: bool,

    /// Port of the HTTP admin API.
    #[arg(
        long = "api-port",
        visible_alias = "apiPort",
        env = "API_PORT",
        default_value_t = 3000
    )]
    api_port: u16,

    /// Address of the HTTP admin API.
    #[arg(long = "api-host", env = "API_HOST", default_value = "127.0.0.1")]
    api_host: String,

    /// Default interceptors, comma separated: hitless (answer the maintenance-notification
    /// handshake), cluster (answer CLUSTER SLOTS with the nodes), logger (log every frame).
    #[arg(
        long = "default-interceptors",
        visible_alias = "defaultInterceptors",
        env = "DEFAULT_INTERCEPTORS",
        default_value = "hitless"
    )]
    default_interceptors: String,

    /// Backend; by default redis when a target host is given, memory otherwise.
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,

    /// Front a Redis Cluster: its nodes' addresses (host:port), comma separated; one proxy
    /// node each, forwarding to its own cluster node, in this order (node 0 fronts the first).
    /// CLUSTER SLOTS / SHARDS / NODES / REPLICAS replies and -MOVED / -ASK errors are rewritten
    /// to name the proxy nodes, so cluster clients stay behind the simulator. Replaces
    /// --target-host and --backend.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ADDR,ADDR,...",
        conflicts_with_all = ["target_host", "backend"]
    )]
    cluster: Vec<String>,

    /// A scenario to play on its own once the simulator runs (others are triggered through the
    /// admin API). `migrate-slots` (with --cluster): SMIGRATING to every opted-in client, the
    /// --slots moved for real to the cluster node behind --to (SETSLOT IMPORTING/MIGRATING,
    /// MIGRATE of the keys, SETSLOT NODE), then SMIGRATED; the same as
    /// `POST /sim/migrate-slots`.
    #[arg(long, value_enum, requires_all = ["cluster", "slots", "to"])]
    scenario: Option<SimScenario>,

    /// The slots --scenario migrate-slots moves: slots and ranges, comma separated
    /// (`100-200,300`).
    #[arg(long, value_parser = parse_slots)]
    slots: Option<Slots>,

    /// The node --scenario migrate-slots moves the slots to: a proxy node index (0 is the
    /// first --cluster address), a node id or a listen address.
    #[arg(long, value_name = "NODE")]
    to: Option<String>,

    /// How long after start-up the --scenario plays (`5s`, `500ms`), so clients can connect
    /// first.
    #[arg(long = "scenario-after", default_value = "5s", value_parser = parse_duration)]
    scenario_after: Duration,

    /// Replay the last MIGRATED / FAILED_OVER to clients that opt in, as Redis Software does.
    #[arg(long)]
    replay: bool,

    /// Latency a migration adds to every reply, in milliseconds.
    #[arg(long = "migrate-latency-ms", default_value_t = 100)]
    migrate_latency_ms: u64,

    /// Play every Redis Software habit below at once (shard ids as `+[1]`, MIGRATING without
    /// time, a 2 s delay before the effect, late joiners told); the flags below override parts.
    #[arg(long = "redis-software")]
    redis_software: bool,

    /// How shard ids are written in MIGRATING/MIGRATED/FAILING_OVER/FAILED_OVER: `array`
    /// (`*1 $1 1`), `string` (`+[1]`, as Redis Software writes them) or `absent`.
    #[arg(long = "shard-ids", value_enum)]
    shard_ids: Option<ShardIdsArg>,

    /// Leave `time` out of MIGRATING, as Redis Software sometimes does.
    #[arg(long = "migrating-without-time")]
    migrating_without_time: bool,

    /// Milliseconds between MIGRATING/FAILING_OVER and the slowdown or pause (Redis Software's
    /// `state_machine_smart_client_handoffs_delay_ms`, 0 to 10000).
    #[arg(long = "effect-delay-ms", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    effect_delay_ms: Option<u64>,

    /// Tell a connection that opts in during a window the window's start notification, or its
    /// MOVING again, with the time left (0 or negative once it is over).
    #[arg(long = "late-joiners")]
    late_joiners: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SimScenario {
    /// Move --slots to --to for real, with SMIGRATING before and SMIGRATED after.
    MigrateSlots,
}

fn parse_slots(s: &str) -> Result<Slots, String> {
    s.parse()
        .map_err(|e: redis_handoff::sim::SimError| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShardIdsArg {
    /// `*1 $1 1`
    Array,
    /// `+[1]`
    String,
    /// Left out.
    Absent,
}

impl SimArgs {
    /// The habits these flags ask for.
    fn habits(&self) -> Habits {
        let mut habits = if self.redis_software {
            Habits::redis_software()
        } else {
            Habits::default()
        };
        if let Some(ids) = self.shard_ids {
            habits.shard_ids = match ids {
                ShardIdsArg::Array => ShardIds::Array,
                ShardIdsArg::String => ShardIds::SimpleString,
                ShardIdsArg::Absent => ShardIds::Absent,
            };
        }
        habits.migrating_without_time |= self.migrating_without_time;
        if let Some(ms) = self.effect_delay_ms {
            habits.effect_delay = Duration::from_millis(ms);
        }
        habits.late_joiners |= self.late_joiners;
        habits
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  redis-handoff drill                                   every scenario, in-memory store, 20 s
  redis-handoff drill --scenario moving --compare       full stack and bare connection side by side
  redis-handoff drill --backend redis://127.0.0.1:6379 --plot drill.svg
  redis-handoff drill --addr redis://127.0.0.1:6380 --scenario none --duration 5m
                                                        record the maintenance announced there
  redis-handoff drill --cluster --addr 127.0.0.1:7000 --json
                                                        the cluster client across a Redis Cluster
  redis-handoff drill --sim --cluster --duration 10s    a local 3-primary cluster behind the
                                                        simulator, slots migrated during the run")]
struct DrillArgs {
    /// Send the load to this endpoint (`redis://`, `rediss://` or host:port) instead of an
    /// embedded simulator. No scenario is played there: the drill records the maintenance the
    /// server announces (for a `redis-handoff sim`, trigger it through its admin API).
    #[arg(long, conflicts_with_all = ["sim", "backend"])]
    addr: Option<String>,

    /// Run an embedded simulator with two nodes and play the scenario on it (the default when
    /// --addr is not given). With --cluster: start a local Redis Cluster of 3 primaries
    /// (redis-server and redis-cli on the PATH; processes and files removed at the end), put
    /// the simulator in cluster mode in front of it, and play `migrate-slots` on it.
    #[arg(long)]
    sim: bool,

    /// What the simulator forwards to: `memory` (the embedded store) or a Redis URL.
    #[arg(long, default_value = "memory")]
    backend: String,

    /// The client: `full` (the recommended stack) or `none` (a bare connection).
    #[arg(long, value_enum, default_value_t = StackArg::Full, conflicts_with = "compare")]
    stack: StackArg,

    /// Run the load through the cluster client across a Redis Cluster: --addr names any node
    /// of it; without --addr (or with --sim) a local simulated cluster (see --sim) whose
    /// `migrate-slots` scenario moves the slots of the drill's keys for real, SMIGRATING
    /// before and SMIGRATED after. The report adds the MOVED and ASK redirects followed and
    /// the topology refreshes made.
    #[arg(long, conflicts_with_all = ["compare", "stack", "backend"])]
    cluster: bool,

    /// The maintenance to play: moving, moving-null, migrate, failover, azure, all or none
    /// (several separated by commas); migrate-slots or none with --sim --cluster. Default:
    /// all with the simulator, migrate-slots with --sim --cluster, none with --addr.
    #[arg(long)]
    scenario: Option<String>,

    /// How many tasks send commands, each one at a time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// How long the load runs (`20s`, `500ms`, `2m`). The scenarios are spread over it; when
    /// they need longer, the load goes on until they are over.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,

    /// The full stack's normal per-command timeout (relaxed during maintenance).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,

    /// Also print the report as one JSON object on the last line of the output.
    #[arg(long)]
    json: bool,

    /// Draw latency over time, maintenance windows shaded, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,

    /// Run the same scenario through the full stack and through a bare connection, one after
    /// the other, and print them side by side.
    #[arg(long)]
    compare: bool,

    /// How the progress shows on stderr: `auto` (a live bar with the elapsed time, commands,
    /// failures and the scenario when stderr is a terminal, a line every 2 s when it is not),
    /// `bar`, `plain` or `off`.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto, value_name = "WHEN")]
    progress: ProgressArg,

    /// No progress: the same as --progress off.
    #[arg(long, short, conflicts_with = "progress")]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// A bar redrawn a few times a second, terminal or not.
    Bar,
    /// A line every 2 s.
    Plain,
    /// Nothing.
    Off,
}

impl DrillArgs {
    fn progress_mode(&self) -> progress::Mode {
        match (self.quiet, self.progress) {
            (true, _) | (false, ProgressArg::Off) => progress::Mode::Off,
            (false, ProgressArg::Auto) => progress::Mode::auto(),
            (false, ProgressArg::Bar) => progress::Mode::Bar,
            (false, ProgressArg::Plain) => progress::Mode::Plain,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StackArg {
    /// The recommended stack: relaxed timeouts, handoffs, retries, notification demux.
    Full,
    /// A bare connection, dialled again when it closes.
    None,
}

/// `20s`, `500ms`, `2m`, `1h`, or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 20s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The drill prints a report: only warnings from the library and the simulator, unless
    // RUST_LOG says otherwise.
    let default_level = match &cli.command {
        Command::Sim(args) if args.enable_logging => "info,redis_handoff::sim=debug",
        Command::Sim(_) => "info",
        Command::Drill(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.command {
        // The report goes to stdout (its last line may be JSON): logs go to stderr, around the
        // progress bar while one is drawn.
        Command::Drill(_) => logs.with_writer(progress::Logs).init(),
        Command::Sim(_) => logs.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sim(args) => run_sim(args).await,
            Command::Drill(args) => run_drill(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sim(args: SimArgs) -> Result<(), String> {
    let target = args
        .target_host
        .as_deref()
        .filter(|h| !h.is_empty() && *h != "memory");
    let backend = match (args.backend, target) {
        (Some(BackendKind::Memory), _) | (None, None) => Backend::Memory,
        (Some(BackendKind::Redis), None) => {
            return Err("--backend redis needs --target-host (or TARGET_HOST)".into())
        }
        (_, Some(host)) => {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            Backend::redis(format!("{host}:{}", args.target_port))
        }
    };
    let mut builder = Simulator::builder();
    if let Some(ms) = args.timeout.filter(|ms| *ms > 0) {
        builder = builder.idle_timeout(Duration::from_millis(ms));
    }
    let cluster_interceptor = args
        .default_interceptors
        .split(',')
        .any(|n| n.trim() == "cluster");
    if !args.cluster.is_empty() && cluster_interceptor {
        eprintln!("warning: the cluster default interceptor answers CLUSTER SLOTS with a made-up topology in place of the cluster's; leave it out of --default-interceptors with --cluster");
    }
    let ports = if args.cluster.is_empty() {
        builder = builder.backend(backend.clone());
        args.listen_port.clone()
    } else {
        builder = builder.cluster(args.cluster.iter().cloned());
        cluster_ports(&args.listen_port, args.cluster.len())?
    };
    let sim = builder
        .ports(ports)
        .listen_host(args.listen_host.clone())
        .replay(args.replay)
        .habits(args.habits())
        .migrate_latency(Duration::from_millis(args.migrate_latency_ms))
        .default_interceptors(&args.default_interceptors)
        .map_err(|e| e.to_string())?
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api_addr = if args.api_host.contains(':') {
        format!("[{}]:{}", args.api_host, args.api_port)
    } else {
        format!("{}:{}", args.api_host, args.api_port)
    };
    let http = sim.serve_http(&api_addr).await.map_err(|e| e.to_string())?;
    if !args.cluster.is_empty() {
        println!("backend: Redis Cluster at {}", args.cluster.join(","));
    } else {
        match &backend {
            Backend::Memory => println!("backend: in-memory store"),
            Backend::Redis(addr) => println!("backend: redis-server at {addr}"),
        }
    }
    for node in sim.nodes() {
        match node.target().filter(|_| !args.cluster.is_empty()) {
            Some(target) => println!(
                "node {} ({}): {} -> {target}",
                node.index(),
                node.id(),
                node.url()
            ),
            None => println!("node {} ({}): {}", node.index(), node.id(), node.url()),
        }
    }
    println!("admin API: {}", http.url());
    if let (Some(SimScenario::MigrateSlots), Some(slots), Some(to)) =
        (args.scenario, args.slots.clone(), args.to.clone())
    {
        let to = node_named(&sim, &to)?;
        let sim = sim.clone();
        let after = args.scenario_after;
        println!("migrate-slots: {slots} to node {to} in {after:?}");
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            match sim.migrate_slots(&slots, to).await {
                Ok(done) => {
                    for m in &done.moves {
                        println!(
                            "migrate-slots: {} moved from {} to {}",
                            m.slots, m.source, m.destination
                        );
                    }
                    println!(
                        "migrate-slots: done, {} keys moved, SMIGRATING seq {} to {} clients, SMIGRATED seq {}",
                        done.keys_moved,
                        done.smigrating_seq,
                        done.recipients,
                        done.smigrated_seq.map_or("-".into(), |s| s.to_string())
                    );
                }
                Err(e) => eprintln!("error: migrate-slots: {e}"),
            }
        });
    }
    println!("press Ctrl-C to stop");
    if let Err(e) = tokio::signal::ctrl_c().await {
        return Err(format!("cannot wait for Ctrl-C: {e}"));
    }
    sim.shutdown();
    Ok(())
}

/// The listen ports for `n` cluster nodes: one each as given, or consecutive ports from a single
/// one (0: a free port each).
fn cluster_ports(given: &[u16], n: usize) -> Result<Vec<u16>, String> {
    match given {
        [0] => Ok(vec![0; n]),
        [first] => (0..n)
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| first.checked_add(i))
                    .ok_or_else(|| format!("--listen-port {first}: not enough ports above it for {n} cluster nodes"))
            })
            .collect(),
        ports if ports.len() == n => Ok(ports.to_vec()),
        ports => Err(format!(
            "--listen-port lists {} ports for {n} --cluster nodes: give one per cluster node, or one to count up from",
            ports.len()
        )),
    }
}

/// A node by index, id or listen address.
fn node_named(sim: &Simulator, name: &str) -> Result<usize, String> {
    if let Ok(i) = name.parse::<usize>() {
        return sim
            .try_node(i)
            .map(|n| n.index())
            .ok_or_else(|| format!("--to {i}: there is no node {i}"));
    }
    sim.nodes()
        .iter()
        .find(|n| n.id() == name || n.addr().to_string() == name)
        .map(|n| n.index())
        .ok_or_else(|| format!("--to {name:?}: no node has that id or listen address"))
}

// ===== drill =====

fn backend(arg: &str) -> Result<Backend, String> {
    if arg.eq_ignore_ascii_case("memory") {
        return Ok(Backend::Memory);
    }
    if arg.contains("://") {
        let options = ConnectOptions::from_url(arg).map_err(|e| format!("--backend: {e}"))?;
        return Ok(Backend::redis(options.endpoint.to_string()));
    }
    Ok(Backend::redis(arg))
}

async fn run_drill(args: DrillArgs) -> Result<(), String> {
    let target = match &args.addr {
        Some(addr) => Target::Endpoint(addr.clone()),
        None if args.cluster => Target::SimulatedCluster,
        None => Target::Simulator(backend(&args.backend)?),
    };
    let default_scenario = match target {
        Target::Endpoint(_) => "none",
        Target::SimulatedCluster => "migrate-slots",
        Target::Simulator(_) => "all",
    };
    let scenarios = Scenario::parse_list(args.scenario.as_deref().unwrap_or(default_scenario))
        .map_err(|e| e.to_string())?;
    let config = DrillConfig {
        target,
        stack: match args.stack {
            _ if args.cluster => StackKind::Cluster,
            StackArg::Full => StackKind::Full,
            StackArg::None => StackKind::None,
        },
        scenarios,
        concurrency: args.concurrency,
        duration: args.duration,
        timeout: args.timeout,
        ..DrillConfig::default()
    };
    let show = args.progress_mode();
    if args.compare {
        let full = run_one(
            DrillConfig {
                stack: StackKind::Full,
                ..config.clone()
            },
            show,
        )
        .await?;
        let bare = run_one(
            DrillConfig {
                stack: StackKind::None,
                ..config
            },
            show,
        )
        .await?;
        let mut out = format!(
            "drill: {} tasks against the {}; scenarios: {}\n\n",
            full.concurrency,
            full.target,
            scenario_names(&full)
        );
        out.push_str(&drill::side_by_side(&full, &bare));
        if let Some(path) = &args.plot {
            write_plot(path, &drill::stacked_svg(&[&full, &bare]))?;
        }
        if args.json {
            let both = serde_json::json!({ "full": full.to_json(), "none": bare.to_json() });
            out.push_str(&format!("{both}\n"));
        }
        print_out(&out)?;
    } else {
        let report = run_one(config, show).await?;
        let mut out = report.to_string();
        if let Some(path) = &args.plot {
            write_plot(path, &report.to_svg())?;
        }
        if args.json {
            out.push_str(&format!("{}\n", report.to_json()));
        }
        print_out(&out)?;
    }
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the report: {e}"))
        }
        _ => Ok(()),
    }
}

fn scenario_names(report: &DrillReport) -> String {
    if report.scenarios.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name()).collect();
    names.join(", ")
}

async fn run_one(config: DrillConfig, show: progress::Mode) -> Result<DrillReport, String> {
    let label = match config.stack {
        StackKind::Full => "full stack",
        StackKind::None => "bare connection",
        StackKind::Cluster => "cluster client",
    };
    let drill = Drill::new(config);
    let shown = progress::spawn(drill.progress(), label, show);
    let result = drill.run().await;
    // Cleared before anything else is printed.
    if let Some(shown) = shown {
        shown.finish().await;
    }
    result.map_err(|e| e.to_string())
}

fn write_plot(path: &std::path::Path, svg: &str) -> Result<(), String> {
    std::fs::write(path, svg)
        .map_err(|e| format!("cannot write the plot to {}: {e}", path.display()))?;
    eprintln!("plot written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn cluster_ports_are_given_one_each_or_counted_up() {
        assert_eq!(cluster_ports(&[7000], 3), Ok(vec![7000, 7001, 7002]));
        assert_eq!(cluster_ports(&[0], 2), Ok(vec![0, 0]));
        assert_eq!(cluster_ports(&[1, 2, 3], 3), Ok(vec![1, 2, 3]));
        assert!(cluster_ports(&[1, 2], 3).is_err());
        assert!(cluster_ports(&[65535], 2).is_err());
    }

    #[test]
    fn the_backend_is_memory_or_a_redis_address() {
        assert_eq!(backend("memory"), Ok(Backend::Memory));
        assert_eq!(
            backend("redis://127.0.0.1:6380"),
            Ok(Backend::redis("127.0.0.1:6380"))
        );
        assert_eq!(backend("db:6379"), Ok(Backend::redis("db:6379")));
    }
}
