//! Memory per idle connection: redis-handoff's bare connection and full stack, fred 10.1,
//! redis-rs 1.8 (multiplexed connection and `ConnectionManager`) and redis-tower 0.1
//! (`MultiplexedClient`), each measured in a fresh child process (resident set size before and
//! after opening the connections, each used once, then left idle).
//!
//! ```sh
//! cargo bench --bench memory            # 1,000 connections per client
//! MEMORY_CONNS=200 cargo bench --bench memory
//! ```

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use redis_handoff::{cmd, Connection, Stack};

const KINDS: [&str; 6] = [
    "redis-handoff Connection",
    "redis-handoff Stack",
    "fred 10.1",
    "redis-rs 1.8",
    "redis-rs 1.8 ConnectionManager",
    "redis-tower 0.1",
];

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(6390)
}

/// In the child: open `n` connections of one kind, use each once, idle, report bytes.
fn child(kind: usize, url: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Warm the runtime and the allocator with one connection of the kind, not counted.
        let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
        let one = open(kind, url).await;
        keep.push(one);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        for _ in 0..n {
            keep.push(open(kind, url).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_bytes();
        println!("{}", (after.saturating_sub(before)) / n as u64);
        drop(keep);
    });
}

async fn open(kind: usize, url: &str) -> Box<dyn std::any::Any> {
    match kind {
        0 => {
            let c = Connection::connect(url).await.expect("connect");
            c.send(cmd!("PING")).await.expect("ping");
            Box::new(c)
        }
        1 => {
            let s = Stack::connect(url).await.expect("connect");
            let mut svc = s.clone();
            tower::ServiceExt::<redis_handoff::Command>::ready(&mut svc)
                .await
                .expect("ready");
            tower::Service::call(&mut svc, cmd!("PING"))
                .await
                .expect("ping");
            Box::new(s)
        }
        2 => {
            use fred::prelude::{ClientLike, Config};
            let client = fred::prelude::Builder::from_config(Config::from_url(url).expect("url"))
                .build()
                .expect("build");
            client.init().await.expect("init");
            let _: String = client.ping(None).await.expect("ping");
            Box::new(client)
        }
        3 => {
            let client = redis::Client::open(url).expect("url");
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let _: String = redis::cmd("PING").query_async(&mut c).await.expect("ping");
            Box::new(c)
        }
        4 => {
            let client = redis::Client::open(url).expect("url");
            let mut c = redis::aio::ConnectionManager::new(client)
                .await
                .expect("connect");
            let _: String = redis::cmd("PING").query_async(&mut c).await.expect("ping");
            Box::new(c)
        }
        _ => {
            let c = redis_tower::MultiplexedClient::connect_url(url)
                .await
                .expect("connect");
            c.execute(redis_tower::commands::Ping::new())
                .await
                .expect("ping");
            Box::new(c)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let kind = args[i + 1].parse().unwrap_or(0);
        let url = &args[i + 2];
        let n = args[i + 3].parse().unwrap_or(1000);
        child(kind, url, n);
        return;
    }
    let n: usize = std::env::var("MEMORY_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("redis-handoff-memory-{port}"));
    let _ = std::fs::create_dir_all(&dir);
    let mut server = match Process::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "20000",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start redis-server ({e}); install it (apt-get install redis-server) and rerun");
            std::process::exit(2);
        }
    };
    let url = format!("redis://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let exe = std::env::current_exe().expect("own path");
    let rounds = 3;
    let mut results = vec![Vec::new(); KINDS.len()];
    for _ in 0..rounds {
        for (k, r) in results.iter_mut().enumerate() {
            let out = Process::new(&exe)
                .args(["--child", &k.to_string(), &url, &n.to_string()])
                .output()
                .expect("child");
            let bytes: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            r.push(bytes);
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let median = |v: &Vec<u64>| {
        let mut v = v.clone();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let ours = median(&results[0]);
    println!(
        "\nMemory per idle connection ({n} connections, median of {rounds} fresh processes each)\n"
    );
    println!(
        "| client | bytes per connection | for {n} connections | vs redis-handoff Connection |"
    );
    println!("|---|---:|---:|---:|");
    for (k, r) in results.iter().enumerate() {
        let m = median(r);
        let ratio = if ours > 0 {
            m as f64 / ours as f64
        } else {
            0.0
        };
        println!(
            "| {} | {} | {:.1} MiB | {:.2}x |",
            KINDS[k],
            m,
            (m as f64 * n as f64) / (1024.0 * 1024.0),
            ratio
        );
    }
    println!("\ncommand: cargo bench --bench memory");
}
