//! The client a drill's load goes through: the recommended stack or a bare connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_service::Service;

use super::{DrillError, StackKind};
use crate::cluster::Cluster;
use crate::command::Command;
use crate::connection::{ConnectOptions, Connection};
use crate::error::Error;
use crate::maintenance::{AzureEvents, EventKind, MaintenanceConfig};
use crate::reply::Reply;
use crate::request::Pipeline;
use crate::sim::lock;
use crate::stack::Stack;

/// How long a bare connection waits between two attempts to dial again.
const REDIAL_PAUSE: Duration = Duration::from_millis(100);

/// The counters a client keeps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientStats {
    pub(crate) retried: u64,
    pub(crate) handoffs: u64,
    pub(crate) handoffs_failed: u64,
    pub(crate) reconnects: u64,
    pub(crate) moved: u64,
    pub(crate) asked: u64,
    pub(crate) refreshes: u64,
}

/// One task's handle on the client.
#[derive(Clone)]
pub(crate) enum Client {
    Stack(Stack),
    Bare(Bare),
    Cluster(Cluster),
}

impl Client {
    pub(crate) async fn connect(
        kind: StackKind,
        url: &str,
        timeout: Duration,
        azure: bool,
    ) -> Result<Client, DrillError> {
        let options = ConnectOptions::from_url(url).map_err(DrillError::Connect)?;
        let maintenance = || {
            let mut maintenance = MaintenanceConfig::builder();
            if azure {
                maintenance = maintenance.azure_events(AzureEvents::On);
            }
            maintenance.build().map_err(DrillError::Connect)
        };
        match kind {
            StackKind::Cluster => {
                let cluster = Cluster::builder(options)
                    .maintenance(maintenance()?)
                    .timeout(timeout)
                    .connect()
                    .await
                    .map_err(DrillError::Connect)?;
                Ok(Client::Cluster(cluster))
            }
            StackKind::Full => {
                let maintenance = maintenance()?;
                let stack = Stack::builder(options)
                    .maintenance(maintenance)
                    .timeout(timeout)
                    .connect()
                    .await
                    .map_err(DrillError::Connect)?;
                Ok(Client::Stack(stack))
            }
            StackKind::None => Ok(Client::Bare(
                Bare::connect(options).await.map_err(DrillError::Connect)?,
            )),
        }
    }

    /// Sends one command, waiting for room first.
    pub(crate) async fn call(&mut self, command: Command) -> Result<Reply, Error> {
        match self {
            Client::Stack(stack) => {
                ServiceExt::<Command>::ready(stack)
                    .await?
                    .call(command)
                    .await
            }
            Client::Bare(bare) => {
                let mut conn = bare.current();
                ServiceExt::<Command>::ready(&mut conn)
                    .await?
                    .call(command)
                    .await
            }
            Client::Cluster(cluster) => cluster.clone().oneshot(command).await,
        }
    }

    /// Deletes `keys`: in `DEL`s of a few hundred keys, or on a cluster in one pipeline of a
    /// `DEL` each (the keys are in many slots, which one `DEL` cannot span).
    pub(crate) async fn delete(&mut self, keys: &[String]) -> Result<(), Error> {
        if let Client::Cluster(cluster) = self {
            let deletes: Pipeline = keys.iter().map(|k| Command::new("DEL").arg(k)).collect();
            let replies = cluster.clone().oneshot(deletes).await?;
            return replies.into_iter().try_for_each(|r| r.map(drop));
        }
        for chunk in keys.chunks(256) {
            self.call(Command::new("DEL").args_from(chunk.iter()))
                .await?;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> ClientStats {
        match self {
            Client::Stack(stack) => {
                let s = stack.handoff().stats();
                ClientStats {
                    retried: s.retried,
                    handoffs: s.handoffs,
                    handoffs_failed: s.handoffs_failed,
                    reconnects: s.reconnects,
                    ..ClientStats::default()
                }
            }
            Client::Bare(bare) => ClientStats {
                reconnects: bare.inner.reconnects.load(Ordering::Relaxed),
                ..ClientStats::default()
            },
            Client::Cluster(cluster) => {
                let mut stats = ClientStats::default();
                for (_, stack) in cluster.primaries() {
                    let s = stack.handoff().stats();
                    stats.handoffs += s.handoffs;
                    stats.handoffs_failed += s.handoffs_failed;
                    stats.reconnects += s.reconnects;
                }
                // Every node's resends, also those of nodes that left the map.
                stats.retried = cluster.maintenance().retried();
                let c = cluster.stats();
                stats.moved = c.moved;
                stats.asked = c.asked;
                stats.refreshes = c.refreshes;
                stats
            }
        }
    }

    /// Starts recording the maintenance events the client hears (none for a bare connection).
    pub(crate) fn record_events(&self) -> EventRecorder {
        let mut events = match self {
            Client::Stack(stack) => stack.maintenance().subscribe(),
            Client::Cluster(cluster) => cluster.maintenance().subscribe(),
            Client::Bare(_) => return EventRecorder { task: None },
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut seen = Vec::new();
                loop {
                    tokio::select! {
                        biased;
                        event = events.recv() => match event {
                            Some(e) => seen.push((e.at, e.kind)),
                            None => break,
                        },
                        _ = stop.cancelled() => {
                            while let Some(e) = events.try_recv() {
                                seen.push((e.at, e.kind));
                            }
                            break;
                        }
                    }
                }
                seen
            }
        });
        EventRecorder {
            task: Some((stop, task)),
        }
    }

    /// Ends the client's background work.
    pub(crate) fn close(self) {
        if let Client::Bare(bare) = self {
            bare.inner.stop.cancel();
        }
    }
}

/// Events with the instant they happened.
type Heard = Vec<(Instant, EventKind)>;

/// What a client heard, as it happened.
pub(crate) struct EventRecorder {
    task: Option<(CancellationToken, JoinHandle<Heard>)>,
}

/// An event, at its offset from the start of the load.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) at: Duration,
    pub(crate) kind: EventKind,
}

impl EventRecorder {
    pub(crate) async fn finish(self, t0: Instant) -> Vec<Observed> {
        let Some((stop, task)) = self.task else {
            return Vec::new();
        };
        stop.cancel();
        task.await
            .unwrap_or_default()
            .into_iter()
            .map(|(at, kind)| Observed {
                at: at.saturating_duration_since(t0),
                kind,
            })
            .collect()
    }
}

// ===== the bare connection =====

/// One [`Connection`], dialled again in the background when it closes: what an application
/// without handoffs does.
#[derive(Clone)]
pub(crate) struct Bare {
    inner: Arc<BareInner>,
}

struct BareInner {
    current: Mutex<Connection>,
    reconnects: AtomicU64,
    stop: CancellationToken,
}

impl Bare {
    async fn connect(options: ConnectOptions) -> Result<Bare, Error> {
        let conn = Connection::connect_with(options.clone()).await?;
        let inner = Arc::new(BareInner {
            current: Mutex::new(conn),
            reconnects: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        tokio::spawn(redial(Arc::clone(&inner), options));
        Ok(Bare { inner })
    }

    fn current(&self) -> Connection {
        lock(&self.inner.current).clone()
    }
}

/// Waits for the connection to close, then dials until a new one is up; until stopped.
async fn redial(inner: Arc<BareInner>, options: ConnectOptions) {
    let stop = inner.stop.clone();
    loop {
        let conn = lock(&inner.current).clone();
        tokio::select! {
            reason = conn.closed() => {
                tracing::debug!(%reason, "drill: the bare connection closed; dialling again");
            }
            _ = stop.cancelled() => return,
        }
        loop {
            let attempt = tokio::select! {
                r = Connection::connect_with(options.clone()) => r,
                _ = stop.cancelled() => return,
            };
            match attempt {
                Ok(conn) => {
                    *lock(&inner.current) = conn;
                    inner.reconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "drill: dialling the bare connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(REDIAL_PAUSE) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }
}
