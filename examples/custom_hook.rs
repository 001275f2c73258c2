//! Your own code in the stack: a tower layer of yours between our layers, and a notification
//! hook on the maintenance handle.
//!
//! ```sh
//! cargo run --example custom_hook         # Redis at REDIS_URL, or redis://127.0.0.1:6379
//! ```
//!
//! The stack is assembled by hand with `ServiceBuilder`, from the outside in:
//!
//! ```text
//! RelaxedTimeout      ours: 2 s per command, relaxed during maintenance
//! SlowLog             yours: counts every command, logs the slow ones
//! HandoffRetry        ours: handoffs, reconnects, safe resends
//! NotificationDemux   ours: maintenance notifications into the Maintenance handle
//! Connector           ours: RESP3 connections
//! ```
//!
//! Placed under RelaxedTimeout, SlowLog counts every command, including those the timeout later
//! gives up on, and times each one as the layers below served it (waits for a connection
//! during a handoff included). A command the timeout abandons is dropped before SlowLog can time
//! it: to log timeouts as well, put the layer above RelaxedTimeout.
//!
//! The hook, [`MaintenanceLog`], logs every `MIGRATING` the server sends and skips
//! `FAILING_OVER`, so that failovers keep the normal timeout: this app would rather fail fast
//! during a failover than wait up to the relaxed timeout. A skipped notification changes no
//! state and publishes no event; the handle counts it (`maintenance.counts().skipped()`).
//!
//! Open-source Redis sends no maintenance notifications, so the example starts an embedded
//! maintenance simulator in front of that Redis, runs a few workers through a migration and a
//! failover, and prints what the layer and the hook saw. `RUST_LOG=info` (the default) shows
//! their log lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis_handoff::demux::NotificationDemuxLayer;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry, HandoffRetryLayer};
use redis_handoff::maintenance::{EndpointStatus, HookAction, HookContext, HookOutcome, Notice};
use redis_handoff::relaxed_timeout::{RelaxedTimeout, RelaxedTimeoutLayer};
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{
    cmd, Command, ConnectOptions, Connector, Error, Maintenance, MaintenanceConfig, Notification,
    NotificationHook, Reply,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

// ===== the layer =====

/// What [`SlowLogLayer`] has seen; cheap to clone, shared by every clone of the service.
#[derive(Debug, Clone, Default)]
pub struct SlowLog {
    commands: Arc<AtomicU64>,
    slow: Arc<AtomicU64>,
}

impl SlowLog {
    /// How many commands went through.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// How many of them took longer than the threshold.
    pub fn slow(&self) -> u64 {
        self.slow.load(Ordering::Relaxed)
    }
}

/// [`Layer`] that counts every command and logs those slower than a threshold.
#[derive(Debug, Clone)]
pub struct SlowLogLayer {
    threshold: Duration,
    log: SlowLog,
}

impl SlowLogLayer {
    /// Logs commands that take longer than `threshold`, counting into `log`.
    pub fn new(threshold: Duration, log: SlowLog) -> Self {
        SlowLogLayer { threshold, log }
    }
}

impl<S> Layer<S> for SlowLogLayer {
    type Service = SlowLogService<S>;

    fn layer(&self, inner: S) -> SlowLogService<S> {
        SlowLogService {
            inner,
            threshold: self.threshold,
            log: self.log.clone(),
        }
    }
}

/// The service of [`SlowLogLayer`].
#[derive(Debug, Clone)]
pub struct SlowLogService<S> {
    inner: S,
    threshold: Duration,
    log: SlowLog,
}

impl<S> Service<Command> for SlowLogService<S>
where
    S: Service<Command, Response = Reply, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, command: Command) -> Self::Future {
        self.log.commands.fetch_add(1, Ordering::Relaxed);
        let name = command.name().to_owned();
        let (threshold, log) = (self.threshold, self.log.clone());
        let started = Instant::now();
        let response = self.inner.call(command);
        Box::pin(async move {
            let result = response.await;
            let took = started.elapsed();
            if took > threshold {
                log.slow.fetch_add(1, Ordering::Relaxed);
                tracing::info!(command = %name, ?took, ok = result.is_ok(), "slow command");
            }
            result
        })
    }
}

// ===== the hook =====

/// Logs `MIGRATING` notifications and skips `FAILING_OVER` ones.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceLog {
    migrations: Arc<AtomicU64>,
}

impl MaintenanceLog {
    /// How many `MIGRATING` notifications were logged.
    pub fn migrations(&self) -> u64 {
        self.migrations.load(Ordering::Relaxed)
    }
}

impl NotificationHook for MaintenanceLog {
    fn pre(&self, _cx: &HookContext<'_>, notice: &mut Notice) -> HookAction {
        match notice {
            // Keep the normal timeout through failovers: no relaxation, no event.
            Notice::Push(Notification::FailingOver { .. }) => HookAction::Skip,
            _ => HookAction::Continue,
        }
    }

    fn post(&self, cx: &HookContext<'_>, notice: &Notice, outcome: HookOutcome) {
        match (notice, outcome) {
            (Notice::Push(Notification::Migrating { seq, time, shards }), HookOutcome::Applied) => {
                self.migrations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    seq,
                    ?time,
                    ?shards,
                    from = %cx.origin.source,
                    "shard migration starting: commands may be slower for a while"
                );
            }
            (Notice::Push(Notification::FailingOver { seq, .. }), HookOutcome::Skipped) => {
                tracing::info!(seq, "failover starting: keeping the normal timeout");
            }
            _ => {}
        }
    }
}

// ===== the stack =====

/// The hand-built stack's service type, outside in.
pub type Redis = RelaxedTimeout<SlowLogService<HandoffRetry>, Arc<EndpointStatus>>;

/// The hand-built stack, with the handles to what it sees.
#[derive(Debug, Clone)]
pub struct App {
    /// The Redis service: a cheap `Clone`.
    pub redis: Redis,
    /// The maintenance handle the layers share.
    pub maintenance: Maintenance,
    /// What the slow-command layer has seen.
    pub slow_log: SlowLog,
    /// What the notification hook has seen.
    pub hook: MaintenanceLog,
}

/// The normal per-command timeout.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Commands slower than this are logged.
pub const SLOW: Duration = Duration::from_millis(50);

/// Builds the stack for `options`; it connects in the background (commands wait for the
/// first connection). Call within a Tokio runtime.
pub fn build(options: ConnectOptions) -> Result<App, Error> {
    let maintenance = Maintenance::new(MaintenanceConfig::default());
    let hook = MaintenanceLog::default();
    maintenance.add_hook(hook.clone());
    let slow_log = SlowLog::default();
    let endpoint = options.endpoint.clone();
    let connector = Connector::new(options)?;
    let redis = ServiceBuilder::new()
        .layer(RelaxedTimeoutLayer::from_maintenance(
            TIMEOUT,
            &maintenance,
            &endpoint,
        ))
        .layer(SlowLogLayer::new(SLOW, slow_log.clone()))
        .layer(HandoffRetryLayer::new(
            maintenance.clone(),
            HandoffConfig::default(),
        ))
        .layer(NotificationDemuxLayer::new(maintenance.clone()))
        .service(connector);
    Ok(App {
        redis,
        maintenance,
        slow_log,
        hook,
    })
}

// ===== the demo =====

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut options = ConnectOptions::from_url(&url)?;
    let sim = Simulator::builder()
        .backend(Backend::redis(options.endpoint.to_string()))
        .start()
        .await?;
    options.endpoint = sim.node(0).endpoint();
    let app = build(options)?;
    app.redis.clone().oneshot(cmd!("PING")).await?;

    let workers: Vec<_> = (0..5)
        .map(|w| {
            let redis = app.redis.clone();
            tokio::spawn(async move {
                let key = format!("custom_hook:{w}");
                let mut failed = 0u64;
                for i in 0..300 {
                    if redis.clone().oneshot(cmd!("SET", &key, i)).await.is_err() {
                        failed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                failed
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("simulator: MIGRATING for 1 s");
    sim.migrate(0, Duration::from_secs(1)).await?;
    println!("simulator: FAILING_OVER for 500 ms");
    sim.failover(0, Duration::from_millis(500)).await?;

    let mut failed = 0;
    for w in workers {
        failed += w.await?;
    }
    let counts = app.maintenance.counts();
    println!(
        "SlowLog saw {} commands, {} slower than {SLOW:?}; {failed} failed",
        app.slow_log.commands(),
        app.slow_log.slow()
    );
    println!(
        "MaintenanceLog logged {} MIGRATING; the handle skipped {} notification(s) of {} received",
        app.hook.migrations(),
        counts.skipped(),
        counts.total_notifications()
    );
    Ok(())
}
