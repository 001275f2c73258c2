//! `redis-handoff`: the command-line tool.
//!
//! `redis-handoff sim` runs the maintenance simulator: RESP proxy nodes in front of a
//! redis-server (or the in-memory store) and the HTTP admin API, configured by flags or by the
//! environment variables Redis's test proxy reads (`LISTEN_PORT`, `LISTEN_HOST`, `TARGET_HOST`,
//! `TARGET_PORT`, `API_PORT`, `DEFAULT_INTERCEPTORS`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use redis_handoff::sim::{Backend, Simulator};

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
    /// Ports the proxy nodes listen on, comma separated (0 picks a free port).
    #[arg(
        long = "listen-port",
        visible_alias = "listenPort",
        env = "LISTEN_PORT",
        value_delimiter = ',',
        default_value = "6379"
    )]
    listen_port: Vec<u16>,

    /// Address the proxy nodes listen on; also the host `CLUSTER SLOTS` reports.
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

    /// Replay the last MIGRATED / FAILED_OVER to clients that opt in, as Redis Software does.
    #[arg(long)]
    replay: bool,

    /// Latency a migration adds to every reply, in milliseconds.
    #[arg(long = "migrate-latency-ms", default_value_t = 100)]
    migrate_latency_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
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
    let sim = Simulator::builder()
        .backend(backend.clone())
        .ports(args.listen_port.iter().copied())
        .listen_host(args.listen_host.clone())
        .replay(args.replay)
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
    match &backend {
        Backend::Memory => println!("backend: in-memory store"),
        Backend::Redis(addr) => println!("backend: redis-server at {addr}"),
    }
    for node in sim.nodes() {
        println!("node {} ({}): {}", node.index(), node.id(), node.url());
    }
    println!("admin API: {}", http.url());
    println!("press Ctrl-C to stop");
    if let Err(e) = tokio::signal::ctrl_c().await {
        return Err(format!("cannot wait for Ctrl-C: {e}"));
    }
    sim.shutdown();
    Ok(())
}
