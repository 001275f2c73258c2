//! Topology refreshes, collapsed: however many callers ask at once, one refresh runs.
//!
//! A storm of `MOVED` replies during a resharding, or every command to a dead primary, asks
//! for a refresh. The [`Refresher`] lets at most one run at a time: a caller that asks while
//! one runs is coalesced into a single follow-up run after it (it might have started too
//! early to see what the caller saw), and no run starts sooner than the cool-down after the
//! previous one started. Callers that need the new map wait for the next run to finish
//! ([`Refresher::finished_after`]), bounded by their own timeout; nobody holds a lock while a
//! refresh talks to the network (the state is a few fields under a `std` mutex, taken for a
//! few instructions), and a refresh is itself bounded by the cluster's refresh timeout, so a
//! node that never answers cannot freeze the map.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The collapsing state of one cluster's refreshes; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Refresher {
    state: Mutex<State>,
    // The number of runs finished so far.
    done: watch::Sender<u64>,
    cool_down: Duration,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    again: bool,
    last_start: Option<Instant>,
}

impl Refresher {
    pub(crate) fn new(cool_down: Duration) -> Self {
        Refresher {
            state: Mutex::new(State::default()),
            done: watch::channel(0).0,
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks for a refresh. True when the caller must start the runner (none is running); false
    /// when the running one will run once more after its current run.
    pub(crate) fn request(&self) -> bool {
        let mut state = self.lock();
        if state.running {
            state.again = true;
            false
        } else {
            state.running = true;
            true
        }
    }

    /// For the runner, before a run: how long to wait for the cool-down. The run counts as
    /// started at the end of that wait.
    pub(crate) fn start(&self) -> Duration {
        let mut state = self.lock();
        let now = Instant::now();
        let at = state
            .last_start
            .map_or(now, |last| (last + self.cool_down).max(now));
        state.last_start = Some(at);
        at - now
    }

    /// For the runner, after a run: whether to run again (someone asked meanwhile). When not,
    /// the runner is done and the next request starts a new one.
    pub(crate) fn finish(&self) -> bool {
        let mut state = self.lock();
        self.done.send_modify(|n| *n += 1);
        if state.again {
            state.again = false;
            true
        } else {
            state.running = false;
            false
        }
    }

    /// How many runs have finished.
    pub(crate) fn runs(&self) -> u64 {
        *self.done.borrow()
    }

    /// Waits until more than `runs` runs have finished, for at most `wait`; whether one did.
    pub(crate) async fn finished_after(&self, runs: u64, wait: Duration) -> bool {
        let mut rx = self.done.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|&n| n > runs))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A runner as the cluster has it: a refresh that takes 20 ms.
    async fn runner(r: Arc<Refresher>, runs: Arc<AtomicU32>) {
        loop {
            tokio::time::sleep(r.start()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            runs.fetch_add(1, Ordering::SeqCst);
            if !r.finish() {
                return;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_requests_makes_at_most_two_runs() {
        let r = Arc::new(Refresher::new(Duration::from_millis(100)));
        let runs = Arc::new(AtomicU32::new(0));
        let mut started = 0;
        for _ in 0..1000 {
            if r.request() {
                started += 1;
                tokio::spawn(runner(r.clone(), runs.clone()));
            }
        }
        assert_eq!(started, 1);
        let before = r.runs();
        assert!(r.finished_after(before, Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The first run, and one more for everyone who asked while it ran.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(r.runs(), 2);
        // Nothing runs now: the next request starts a runner again.
        assert!(r.request());
    }

    #[tokio::test(start_paused = true)]
    async fn runs_respect_the_cool_down() {
        let r = Refresher::new(Duration::from_millis(100));
        assert_eq!(r.start(), Duration::ZERO);
        let wait = r.start();
        assert!(wait >= Duration::from_millis(99), "{wait:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(r.start(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_run_is_bounded() {
        let r = Refresher::new(Duration::ZERO);
        assert!(!r.finished_after(0, Duration::from_millis(50)).await);
    }
}
