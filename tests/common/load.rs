//! A workload for tests that run commands across maintenance: tasks that each increment their
//! own counter (and read it back) until stopped, recording every outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_handoff::{cmd, Command, Error, Reply};
use tower::{Service, ServiceExt};

/// What one task saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// INCRs acknowledged.
    pub incr_ok: u64,
    /// INCRs whose reply was lost: they may have run.
    pub incr_lost: u64,
    /// GETs answered.
    pub get_ok: u64,
    /// Every failure, as `"INCR: ..."` or `"GET: ..."`.
    pub errors: Vec<String>,
}

/// Tasks running until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

/// Starts `tasks` tasks on `service` that each round INCR their key and GET it back; task `t`
/// uses the key `{prefix}:{t}`, starts `stagger x t` late (so that tasks do not move in
/// lockstep) and pauses `pause` between rounds.
pub fn start<S>(service: &S, tasks: usize, prefix: &str, stagger: Duration, pause: Duration) -> Load
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    spawn(service, tasks, prefix, stagger, pause, true)
}

/// Like [`start`], with an INCR alone each round (no GET).
pub fn start_incr_only<S>(
    service: &S,
    tasks: usize,
    prefix: &str,
    stagger: Duration,
    pause: Duration,
) -> Load
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    spawn(service, tasks, prefix, stagger, pause, false)
}

fn spawn<S>(
    service: &S,
    tasks: usize,
    prefix: &str,
    stagger: Duration,
    pause: Duration,
    get: bool,
) -> Load
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..tasks)
        .map(|t| {
            let service = service.clone();
            let stop = stop.clone();
            let key = format!("{prefix}:{t}");
            tokio::spawn(async move {
                let mut o = Outcome::default();
                tokio::time::sleep(stagger * t as u32).await;
                while !stop.load(Ordering::Relaxed) {
                    match service.clone().oneshot(cmd!("INCR", &key)).await {
                        Ok(_) => o.incr_ok += 1,
                        Err(e) => {
                            if e.may_have_executed() {
                                o.incr_lost += 1;
                            }
                            o.errors.push(format!("INCR: {e}"));
                        }
                    }
                    if get {
                        match service.clone().oneshot(cmd!("GET", &key)).await {
                            Ok(_) => o.get_ok += 1,
                            Err(e) => o.errors.push(format!("GET: {e}")),
                        }
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                o
            })
        })
        .collect();
    Load { stop, tasks }
}

impl Load {
    /// Stops the tasks and collects what each saw (a task that hangs fails the test).
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a load task hung");
            out.push(outcome.expect("a load task panicked"));
        }
        out
    }
}

/// The value of a counter the load incremented.
pub async fn counter<S>(service: &S, key: String) -> u64
where
    S: Service<Command, Response = Reply, Error = Error> + Clone,
{
    let r = service
        .clone()
        .oneshot(cmd!("GET", key))
        .await
        .expect("GET");
    r.as_i64().unwrap_or(0) as u64
}
