//! The deadlines of one [`RelaxedTimeout`](super::RelaxedTimeout) and all its clones, kept by
//! one sweeper task instead of one Tokio timer per command.
//!
//! A command's deadline is almost never reached: it is answered in microseconds and its budget
//! is a second. A Tokio timer per command costs an entry in the runtime's timer wheel on the
//! first poll, its removal when the answer comes, and a runtime handle; that was the largest
//! part of what the full stack cost over the bare connection. Here a command that is still
//! waiting after its first poll takes a slot in a table shared by the service's clones (one
//! short lock, no allocation once the table is warm) and gives it back when it is answered or
//! dropped. One task per table wakes every `tick` while commands wait, and wakes the commands
//! whose deadline has passed; each woken command reads the clock and decides for itself (the
//! relaxation may have moved its deadline on). When nothing has waited for a whole tick the task
//! parks until the next command registers.
//!
//! The cost of this is precision: a deadline is noticed at the first tick after it, so a timeout
//! fires up to one tick late, never early. The tick is a twentieth of the normal timeout,
//! between 1 ms and 50 ms.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The tick for a normal timeout: a twentieth of it, within 1 ms and 50 ms (the rule the
/// connection's own deadlines follow too).
pub(super) use crate::connection::expiry::tick_for;

/// The table of waiting commands; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Deadlines {
    state: Mutex<State>,
    // Held by the sweeper too, so that dropping the table can wake a parked sweeper to end.
    wake: Arc<Notify>,
    tick: Duration,
}

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<usize>,
    waiting: usize,
    // A command registered since the last sweep: the sweeper keeps ticking.
    busy: bool,
    sweeper: Sweeper,
}

#[derive(Debug, Default)]
struct Slot {
    deadline: Option<Instant>,
    // Taken by the sweeper when the deadline passes.
    waker: Option<Waker>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Sweeper {
    #[default]
    NotStarted,
    Running,
    Parked,
}

/// No Tokio runtime to run the sweeper on.
#[derive(Debug)]
pub(super) struct NoRuntime;

impl Deadlines {
    pub(super) fn new(tick: Duration) -> Self {
        Deadlines {
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
            tick,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half-way through an update; a poisoned lock still
        // holds a consistent table.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a command waiting until `deadline`, woken through `waker` once it has
    /// passed. Starts the sweeper on the current Tokio runtime the first time.
    pub(super) fn register(
        self: &Arc<Self>,
        deadline: Instant,
        waker: &Waker,
    ) -> Result<usize, NoRuntime> {
        let mut state = self.lock();
        match state.sweeper {
            Sweeper::Running => {}
            Sweeper::Parked => {
                state.sweeper = Sweeper::Running;
                self.wake.notify_one();
            }
            Sweeper::NotStarted => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
                handle.spawn(sweep(Arc::downgrade(self), self.wake.clone(), self.tick));
                state.sweeper = Sweeper::Running;
            }
        }
        let slot = Slot {
            deadline: Some(deadline),
            waker: Some(waker.clone()),
        };
        let key = match state.free.pop() {
            Some(key) => {
                state.slots[key] = slot;
                key
            }
            None => {
                state.slots.push(slot);
                state.slots.len() - 1
            }
        };
        state.waiting += 1;
        state.busy = true;
        Ok(key)
    }

    /// Up to once per tick: wakes the commands whose deadline has passed; whether the table has
    /// gone quiet (nothing waits and nothing registered for a whole tick).
    fn sweep_once(&self, now: Instant, due: &mut Vec<Waker>) -> bool {
        let mut state = self.lock();
        for slot in &mut state.slots {
            if slot.deadline.is_some_and(|d| d <= now) {
                if let Some(w) = slot.waker.take() {
                    due.push(w);
                }
            }
        }
        let quiet = state.waiting == 0 && !state.busy;
        state.busy = false;
        if quiet {
            state.sweeper = Sweeper::Parked;
        }
        quiet
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        // A parked sweeper wakes, finds the table gone and ends.
        self.wake.notify_one();
    }
}

impl Deadlines {
    /// The command in slot `key` was polled again while still waiting: make sure `waker` is
    /// the one woken.
    pub(super) fn refresh(&self, key: usize, waker: &Waker) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(key) {
            match &slot.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => slot.waker = Some(waker.clone()),
            }
        }
    }

    /// The deadline moved (a relaxation began while the command waited).
    pub(super) fn reset(&self, key: usize, deadline: Instant, waker: &Waker) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(key) {
            slot.deadline = Some(deadline);
            slot.waker = Some(waker.clone());
        }
        state.busy = true;
    }

    /// Gives slot `key` back: its command was answered, timed out or dropped.
    pub(super) fn release(&self, key: usize) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(key) {
            if slot.deadline.is_some() {
                *slot = Slot::default();
                state.free.push(key);
                state.waiting = state.waiting.saturating_sub(1);
            }
        }
    }
}

/// The sweeper: ticks while commands wait, parks when none has for a whole tick, ends with its
/// table.
async fn sweep(table: Weak<Deadlines>, wake: Arc<Notify>, tick: Duration) {
    let mut due = Vec::new();
    loop {
        tokio::time::sleep(tick).await;
        let Some(t) = table.upgrade() else { return };
        let quiet = t.sweep_once(Instant::now(), &mut due);
        drop(t);
        for w in due.drain(..) {
            w.wake();
        }
        if quiet {
            wake.notified().await;
            if table.strong_count() == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_wakes_once_and_a_later_one_not_yet() {
        let table = Arc::new(Deadlines::new(Duration::from_millis(10)));
        let (early, w1) = counter();
        let (late, w2) = counter();
        let now = Instant::now();
        table
            .register(now + Duration::from_millis(25), &w1)
            .unwrap();
        table.register(now + Duration::from_secs(5), &w2).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(early.0.load(Ordering::SeqCst), 1);
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_given_back_and_reused_and_the_sweeper_parks_and_resumes() {
        let table = Arc::new(Deadlines::new(Duration::from_millis(10)));
        let (_, w) = counter();
        let a = table
            .register(Instant::now() + Duration::from_secs(1), &w)
            .unwrap();
        table.release(a);
        table.release(a);
        assert_eq!(
            table.lock().waiting,
            0,
            "a slot given back twice counts once"
        );
        let b = table
            .register(Instant::now() + Duration::from_secs(1), &w)
            .unwrap();
        assert_eq!(b, a, "the free slot is reused");
        table.release(b);
        // Quiet for more than a tick: parked.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(table.lock().sweeper, Sweeper::Parked);
        // A new registration resumes it, and its deadline is kept.
        let (fired, w) = counter();
        table
            .register(Instant::now() + Duration::from_millis(5), &w)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fired.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_a_runtime_registration_says_so() {
        let table = Arc::new(Deadlines::new(Duration::from_millis(10)));
        let (_, w) = counter();
        let at = Instant::now() + Duration::from_secs(1);
        assert!(table.register(at, &w).is_err());
    }
}
