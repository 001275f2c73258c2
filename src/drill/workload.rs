//! The load: tasks that send commands back to back and remember how each one went.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::{DrillConfig, Progress};
use crate::cmd;
use crate::command::Command;
use crate::error::Error;

/// How one command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When it started, in microseconds from the start of the load.
    pub(crate) start_us: u32,
    /// How long its task waited, in microseconds.
    pub(crate) latency_us: u32,
    /// `None` when answered, else the kind of failure (an index into [`FAILURES`]).
    pub(crate) failure: Option<u8>,
}

/// The kinds of failure, as the report names them.
pub(crate) const FAILURES: [&str; 9] = [
    "server_error",
    "connection_lost",
    "not_sent",
    "connect",
    "timeout",
    "circuit_open",
    "handoff_failed",
    "other",
    "unanswered",
];

const UNANSWERED: u8 = 8;

fn failure_kind(e: &Error) -> u8 {
    match e {
        Error::Server(_) => 0,
        Error::ConnectionLost { .. } => 1,
        Error::NotSent { .. } => 2,
        Error::Connect { .. } | Error::ConnectTimeout { .. } => 3,
        Error::Timeout { .. } => 4,
        Error::CircuitOpen { .. } => 5,
        Error::HandoffFailed { .. } => 6,
        _ => 7,
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The running load.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    abort: CancellationToken,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

/// Starts `config.concurrency` tasks sending commands through `client`.
pub(crate) fn start(
    client: &Client,
    config: &DrillConfig,
    t0: Instant,
    progress: Progress,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let abort = CancellationToken::new();
    let value = Bytes::from(vec![b'x'; config.value_size]);
    let tasks = (0..config.concurrency)
        .map(|id| {
            let worker = Worker {
                id,
                client: client.clone(),
                stop: Arc::clone(&stop),
                abort: abort.clone(),
                progress: progress.clone(),
                value: value.clone(),
                keys: config.keys,
                failure_pause: config.failure_pause,
                t0,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    Load { stop, abort, tasks }
}

impl Load {
    /// Stops sending, waits up to `drain` for the replies still owed (those that do not come
    /// count as `unanswered`), and returns every sample.
    pub(crate) async fn finish(self, drain: Duration) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let abort = self.abort.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            abort.cancel();
        });
        let mut samples = Vec::new();
        for task in self.tasks {
            if let Ok(mut s) = task.await {
                samples.append(&mut s);
            }
        }
        timer.abort();
        samples.sort_unstable_by_key(|s| s.start_us);
        samples
    }

    /// Stops every task at once.
    pub(crate) fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.abort.cancel();
    }
}

/// Deletes the keys the load wrote, best effort, within a few seconds.
pub(crate) async fn clean_up(client: &Client, config: &DrillConfig) {
    let keys = (0..config.keys)
        .map(|k| format!("drill:{k}"))
        .chain((0..config.concurrency).map(|t| format!("drill:counter:{t}")))
        .collect::<Vec<_>>();
    let mut client = client.clone();
    let delete = async move {
        if let Err(e) = client.delete(&keys).await {
            tracing::debug!(error = %e, "drill: the keys could not be deleted");
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), delete).await;
}

struct Worker {
    id: usize,
    client: Client,
    stop: Arc<AtomicBool>,
    abort: CancellationToken,
    progress: Progress,
    value: Bytes,
    keys: usize,
    failure_pause: Duration,
    t0: Instant,
}

impl Worker {
    /// Half `GET`, three in ten `SET`, two in ten `INCR` of the task's own counter.
    fn command(&self, n: u64, rng: &mut fastrand::Rng) -> Command {
        let key = format!("drill:{}", rng.usize(..self.keys));
        match n % 10 {
            0..=4 => cmd!("GET", key),
            5..=7 => cmd!("SET", key, &self.value),
            _ => cmd!("INCR", format!("drill:counter:{}", self.id)),
        }
    }

    async fn run(mut self) -> Vec<Sample> {
        let mut rng = fastrand::Rng::with_seed(self.id as u64);
        let mut samples = Vec::with_capacity(4096);
        // Tasks start at different points of the mix, so that each kind runs at every moment.
        let mut n = self.id as u64;
        while !self.stop.load(Ordering::Relaxed) {
            let command = self.command(n, &mut rng);
            n += 1;
            let started = Instant::now();
            let result = tokio::select! {
                r = self.client.call(command) => Some(r),
                _ = self.abort.cancelled() => None,
            };
            let failure = match &result {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some(failure_kind(e)),
                None => Some(UNANSWERED),
            };
            samples.push(Sample {
                start_us: micros(started.saturating_duration_since(self.t0)),
                latency_us: micros(started.elapsed()),
                failure,
            });
            self.progress.record(failure.is_none());
            match (result, failure) {
                (None, _) => break,
                (_, Some(_)) if !self.failure_pause.is_zero() => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.failure_pause) => {}
                        _ = self.abort.cancelled() => break,
                    }
                }
                // Failures can be instant: let the other tasks run.
                (_, Some(_)) => tokio::task::yield_now().await,
                _ => {}
            }
        }
        samples
    }
}
