//! Quick start: the recommended stack through a rehearsed maintenance.
//!
//! ```sh
//! cargo run --features sim --example quickstart # Redis at REDIS_URL or 127.0.0.1:6379, else the embedded store
//! ```
//!
//! The program
//!
//! 1. starts the maintenance simulator: two local "nodes" in front of your Redis (or in front of
//!    an embedded in-memory store when no Redis answers), which play what managed Redis does
//!    during maintenance;
//! 2. builds the recommended stack with tower's `ServiceBuilder`, connected to node 0;
//! 3. sends traffic from 20 tasks while the simulator migrates a shard (`MIGRATING`, slower
//!    replies, `MIGRATED`) and then moves the database to node 1 (`MOVING`, and node 0 closes
//!    its connections once the grace period is over);
//! 4. prints what the stack heard and did, and checks that no command failed and that every
//!    acknowledged `INCR` is in the database exactly once.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_handoff::handoff::{HandoffConfig, HandoffRetryLayer};
use redis_handoff::relaxed_timeout::RelaxedTimeoutLayer;
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{
    cmd, ConnectOptions, Connection, Connector, EventKind, Maintenance, MaintenanceConfig,
    Notification, NotificationDemuxLayer,
};
use tower::{ServiceBuilder, ServiceExt};

/// How many tasks send commands at once.
const TASKS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let summary = run(&redis).await?;
    if summary.failed > 0 || summary.counters_wrong > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// What happened, for the caller (and the crate's tests) to check.
#[derive(Debug, Default)]
pub struct Summary {
    /// Commands sent.
    pub commands: u64,
    /// Commands that failed.
    pub failed: u64,
    /// Handoffs to a new connection.
    pub handoffs: u64,
    /// The notifications the stack heard, in order.
    pub notifications: Vec<String>,
    /// Counters whose value is not the number of acknowledged `INCR`s.
    pub counters_wrong: usize,
}

/// Runs the whole rehearsal against the Redis at `redis_url`, or the embedded store when it
/// does not answer.
pub async fn run(redis_url: &str) -> Result<Summary, Box<dyn Error>> {
    // 1. The simulator, in front of Redis if one answers.
    let backend = match redis_address(redis_url).await {
        Some(addr) => {
            println!("Redis answers at {addr}: the simulator forwards to it.");
            Backend::redis(addr)
        }
        None => {
            println!("No Redis answers at {redis_url}: the simulator serves from its embedded in-memory store.");
            Backend::Memory
        }
    };
    let sim = Simulator::builder()
        .backend(backend)
        .nodes(2)
        .start()
        .await?;
    println!(
        "Simulator nodes: 0 at {}, 1 at {}.\n",
        sim.node(0).addr(),
        sim.node(1).addr()
    );

    // 2. The stack. Read it from the bottom up: a connector makes connections to node 0; the
    //    demux opts each one in to maintenance notifications and publishes what it hears on
    //    the `Maintenance` handle; HandoffRetry owns the current connection and moves to a new
    //    one on MOVING, make before break; RelaxedTimeout gives each command 1 s, relaxed to
    //    10 s while the endpoint is in maintenance. (`Stack::connect` builds the same in one
    //    call.)
    let maintenance = Maintenance::new(MaintenanceConfig::default());
    let connector = Connector::new(ConnectOptions::from_url(&sim.node(0).url())?)?;
    let endpoint = connector.endpoint().clone();
    let redis = ServiceBuilder::new()
        .layer(RelaxedTimeoutLayer::from_maintenance(
            Duration::from_secs(1),
            &maintenance,
            &endpoint,
        ))
        .layer(HandoffRetryLayer::new(
            maintenance.clone(),
            HandoffConfig::default(),
        ))
        .layer(NotificationDemuxLayer::new(maintenance.clone()))
        .service(connector);

    // Everything the stack hears and does is an event on the handle: print them as they come.
    let started = Instant::now();
    let mut events = maintenance.subscribe();
    let (stop_printing, mut printing_stopped) = tokio::sync::oneshot::channel::<()>();
    let printer = tokio::spawn(async move {
        let mut notifications = Vec::new();
        loop {
            let event = tokio::select! {
                Some(event) = events.recv() => event,
                _ = &mut printing_stopped => break,
            };
            let what = match &event.kind {
                EventKind::Notification(Notification::Moving {
                    seq,
                    time,
                    endpoint,
                }) => {
                    let to = endpoint
                        .as_ref()
                        .map_or("the same address".into(), |e| e.to_string());
                    format!("heard MOVING (seq {seq}): move to {to} within {time:?}")
                }
                EventKind::Notification(n) => format!("heard {} (seq {})", n.name(), n.seq()),
                EventKind::HandoffStarted { to, .. } => format!("handoff: dialling {to}"),
                EventKind::HandoffSwitched { to, .. } => {
                    format!("handoff: new commands now go to {to}")
                }
                EventKind::HandoffDrained { drained, .. } => format!(
                    "handoff: the old connection closed after the {drained} replies it still owed"
                ),
                EventKind::RelaxationEnded { cause } => {
                    format!("timeouts back to normal ({cause:?})")
                }
                _ => continue,
            };
            if let EventKind::Notification(n) = &event.kind {
                notifications.push(n.name().to_string());
            }
            let at = event.at.saturating_duration_since(started).as_secs_f64();
            println!("{at:6.2} s  {what}");
        }
        notifications
    });

    // 3. Traffic: each task increments its own counter and reads it back, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let redis = redis.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = format!("quickstart:{t}");
                let (mut sent, mut failed, mut incremented) = (0u64, 0u64, 0i64);
                while !stop.load(Ordering::Relaxed) {
                    for command in [cmd!("INCR", &key), cmd!("GET", &key)] {
                        let is_incr = command.name() == "INCR";
                        sent += 1;
                        match redis.clone().oneshot(command).await {
                            Ok(_) if is_incr => incremented += 1,
                            Ok(_) => {}
                            Err(e) => {
                                failed += 1;
                                eprintln!("task {t}: {e}");
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (key, sent, failed, incremented)
            })
        })
        .collect();

    // 4. The maintenance: a shard migration, then a move to node 1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.migrate(0, Duration::from_secs(2)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moving = sim.moving(0, 1, Duration::from_secs(2)).await?;
    moving.done().await; // node 0 has closed every connection and refuses new ones
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    // 5. What happened.
    let mut summary = Summary::default();
    for task in tasks {
        let (key, sent, failed, incremented) = task.await?;
        summary.commands += sent;
        summary.failed += failed;
        let value = redis.clone().oneshot(cmd!("GET", &key)).await?;
        if value.as_i64() != Some(incremented) {
            summary.counters_wrong += 1;
            eprintln!("{key} is {value:?}, but {incremented} INCRs were acknowledged");
        }
        redis.clone().oneshot(cmd!("DEL", &key)).await?;
    }
    let handoff = redis.get_ref();
    summary.handoffs = handoff.stats().handoffs;
    let now_on = handoff.current_endpoint();
    let _ = stop_printing.send(());
    summary.notifications = printer.await?;
    sim.shutdown();

    println!();
    println!("notifications heard: {}", summary.notifications.join(", "));
    println!(
        "handoffs: {}; the stack now talks to {}",
        summary.handoffs,
        now_on.map_or_else(|| "nothing".to_string(), |e| e.to_string())
    );
    println!(
        "commands: {} sent, {} failed; every counter holds exactly its acknowledged INCRs: {}",
        summary.commands,
        summary.failed,
        if summary.counters_wrong == 0 {
            "yes"
        } else {
            "NO"
        }
    );
    Ok(summary)
}

/// The `host:port` of the Redis at `url`, if it answers within a second.
async fn redis_address(url: &str) -> Option<String> {
    let connect = Connection::connect(url);
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Ok(conn)) => Some(conn.endpoint().to_string()),
        _ => None,
    }
}
