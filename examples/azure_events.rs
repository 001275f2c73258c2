//! An app that reacts to Azure Cache for Redis maintenance events.
//!
//! ```sh
//! cargo run --example azure_events        # Redis at REDIS_URL, or redis://127.0.0.1:6379
//! ```
//!
//! Azure announces maintenance on the Pub/Sub channel `AzureRedisEvents`. With
//! `azure_events(AzureEvents::On)` (automatic for `*.redis.cache.windows.net` and the other Azure
//! host names) the stack subscribes to it on every connection and handles the events itself:
//!
//! | event | the stack | this app |
//! |---|---|---|
//! | `NodeMaintenanceScheduled` | nothing | logs when it starts |
//! | `NodeMaintenanceStarting` | relaxes timeouts | notes that they are relaxed |
//! | `NodeMaintenanceStart` | keeps them relaxed | pauses its background writes |
//! | `NodeMaintenanceFailoverComplete`, `ScaleComplete` | refreshes its connection, make-before-break | resumes its background writes |
//! | `NodeMaintenanceEnded` | ends the relaxation | back to normal |
//!
//! The app hears them by subscribing to the stack's `Maintenance` handle.
//!
//! Redis outside Azure sends no such events, so the example starts an embedded maintenance
//! simulator in front of that Redis, runs a background writer through it, and has the
//! simulator publish the whole sequence, one event a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redis_handoff::maintenance::{AzureEvent, AzureEventKind, AzureEvents, EndpointStatus};
use redis_handoff::sim::{self, Backend, Scope, Simulator};
use redis_handoff::{cmd, ConnectOptions, Error, EventKind, MaintenanceConfig, Stack};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// What the app did about one Azure event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The event's type.
    pub kind: AzureEventKind,
    /// What the app did.
    pub action: Action,
}

/// The app's part; the stack's own (relaxing, refreshing) happens without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Scheduled: logged.
    Logged,
    /// Starting: checked that the stack has relaxed its timeouts (`true` when it has).
    Relaxed(bool),
    /// Start: background writes paused.
    Paused,
    /// FailoverComplete or ScaleComplete: background writes resumed on the fresh connection.
    Resumed,
    /// Ended: back to normal.
    Normal,
    /// A type the app does not know: logged.
    Ignored,
}

/// The app's background work: it writes unless paused.
#[derive(Debug, Clone, Default)]
pub struct Worker {
    paused: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
}

impl Worker {
    /// Whether background writes are paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Writes made, and writes held back while paused.
    pub fn tally(&self) -> (u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.held.load(Ordering::Relaxed),
        )
    }

    /// Writes a heartbeat every `every` until the stack is dropped, unless paused.
    pub async fn run(self, stack: Stack, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if self.is_paused() {
                self.held.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let write = stack
                .clone()
                .oneshot(cmd!("INCR", "azure_events:heartbeats"));
            match write.await {
                Ok(_) => {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => eprintln!("heartbeat failed: {e}"),
            }
        }
    }
}

/// Subscribes to the stack's maintenance events and reacts to the Azure ones; each reaction is
/// also sent to the returned receiver (dropping it is fine).
pub fn watch(stack: &Stack, worker: Worker) -> mpsc::UnboundedReceiver<Reaction> {
    let mut events = stack.maintenance().subscribe();
    let status = stack
        .maintenance()
        .status(stack.handoff().configured_endpoint());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let EventKind::Azure(azure) = &event.kind {
                let action = react(azure, &status, &worker);
                let _ = tx.send(Reaction {
                    kind: azure.kind.clone(),
                    action,
                });
            }
        }
    });
    rx
}

/// What the app does about `event`.
fn react(event: &AzureEvent, status: &EndpointStatus, worker: &Worker) -> Action {
    match &event.kind {
        AzureEventKind::NodeMaintenanceScheduled => {
            match event
                .start_time
                .map(|t| t.duration_since(SystemTime::now()))
            {
                Some(Ok(left)) => println!(
                    "app: maintenance scheduled, starts in about {} s",
                    left.as_secs()
                ),
                _ => println!("app: maintenance scheduled"),
            }
            Action::Logged
        }
        AzureEventKind::NodeMaintenanceStarting => {
            let relaxed = status.is_relaxed(Instant::now());
            println!("app: maintenance starting; the stack has relaxed its timeouts: {relaxed}");
            Action::Relaxed(relaxed)
        }
        AzureEventKind::NodeMaintenanceStart => {
            worker.paused.store(true, Ordering::Release);
            println!("app: maintenance imminent, background writes paused");
            Action::Paused
        }
        AzureEventKind::NodeMaintenanceFailoverComplete
        | AzureEventKind::NodeMaintenanceScaleComplete => {
            worker.paused.store(false, Ordering::Release);
            println!(
                "app: {}; the stack refreshes its connection, background writes resume",
                event.kind.name()
            );
            Action::Resumed
        }
        AzureEventKind::NodeMaintenanceEnded => {
            worker.paused.store(false, Ordering::Release);
            println!("app: maintenance over, back to normal");
            Action::Normal
        }
        other => {
            println!("app: Azure event {} ignored", other.name());
            Action::Ignored
        }
    }
}

/// The stack's maintenance settings: Azure events on, whatever the host name.
pub fn config() -> Result<MaintenanceConfig, Error> {
    MaintenanceConfig::builder()
        .azure_events(AzureEvents::On)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut options = ConnectOptions::from_url(&url)?;
    let sim = Simulator::builder()
        .backend(Backend::redis(options.endpoint.to_string()))
        .start()
        .await?;
    options.endpoint = sim.node(0).endpoint();
    let stack = Stack::builder(options)
        .maintenance(config()?)
        .connect()
        .await?;

    let worker = Worker::default();
    let _reactions = watch(&stack, worker.clone());
    tokio::spawn(
        worker
            .clone()
            .run(stack.clone(), Duration::from_millis(100)),
    );

    use sim::AzureEventKind as Kind;
    for kind in [
        Kind::Scheduled,
        Kind::Starting,
        Kind::Start,
        Kind::FailoverComplete,
        Kind::Ended,
    ] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("simulator: {kind}");
        sim.azure(Scope::All, &sim::AzureEvent::new(kind))?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (written, held) = worker.tally();
    println!(
        "{written} heartbeats written, {held} held back during maintenance; {} handoff(s)",
        stack.handoff().stats().handoffs
    );
    Ok(())
}
