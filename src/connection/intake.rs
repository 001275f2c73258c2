//! The queue between a connection's handles and its I/O task.
//!
//! Every command of a busy connection passes through here, from many tasks on several threads
//! to the one I/O task, so the queue is built for that path. A command costs one atomic
//! increment for its slot and one short critical section to queue it; the I/O task takes every
//! waiting command in one critical section, gives their slots back with one atomic subtraction,
//! and is woken only when the queue goes from empty to not empty, not once per command.
//!
//! It is bounded: a handle takes a slot before it queues a command (`poll_ready` reserves one
//! for the next `call`), and slots come back when the I/O task takes commands off the queue.
//! Handles that find it full wait on a [`Notify`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::io::Job;
use crate::error::Error;

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every slot is taken.
    Full,
    /// The connection takes no more commands.
    Closed,
}

pub(crate) struct Intake {
    /// Slots in use: commands queued plus slots reserved for commands to come.
    used: AtomicUsize,
    capacity: usize,
    /// Set once no new commands are taken; the copy under the lock is the one that counts.
    closed: AtomicBool,
    /// The connection is to close now, owed replies or not.
    aborted: AtomicBool,
    /// Whether a handle waits on `space` for a slot.
    waiting: AtomicBool,
    space: Notify,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Job>,
    /// No new commands are taken (drained, or the connection ended).
    closed: bool,
    /// Every handle is gone.
    senders_gone: bool,

    /// The I/O task, when it found the queue empty.
    io_waker: Option<Waker>,
}

impl Intake {
    pub(crate) fn new(capacity: usize) -> Self {
        Intake {
            used: AtomicUsize::new(0),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            space: Notify::new(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                senders_gone: false,
                io_waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock still holds a sound state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a command to come, if one is free.
    pub(crate) fn try_reserve(&self) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        // Sequentially consistent with `release`: a waiter that set `waiting` before this
        // check either sees the slot given back or is notified (see `reserve`).
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used >= self.capacity {
                return Err(Refused::Full);
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Waits for a free slot and takes it; fails once the connection takes no more commands.
    pub(crate) async fn reserve(&self) -> Result<(), Refused> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before the check: a slot freed after it wakes this waiter.
            notified.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            match self.try_reserve() {
                Err(Refused::Full) => notified.await,
                done => return done,
            }
        }
    }

    /// Gives back `n` slots, and wakes the handles waiting for one.
    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.space.notify_waiters();
        }
    }

    /// Gives back a reserved slot that was not used.
    pub(crate) fn unreserve(&self) {
        self.release(1);
    }

    /// Queues a command if a slot is free; hands it back with the reason otherwise.
    pub(crate) fn try_push(&self, job: Job) -> Result<(), (Job, Refused)> {
        match self.try_reserve() {
            Ok(()) => self.push_reserved(job).map_err(|j| (j, Refused::Closed)),
            Err(why) => Err((job, why)),
        }
    }

    /// Queues a command now, room or not (a few of the crate's own commands that must go in a
    /// fixed order, such as the subscriptions moved at a handoff); hands it back if the
    /// connection takes no more commands.
    pub(crate) fn push_now(&self, job: Job) -> Result<(), Job> {
        self.used.fetch_add(1, Ordering::SeqCst);
        self.push_reserved(job)
    }

    /// Queues a command in a slot reserved for it; hands it back if the connection takes no
    /// more commands.
    pub(crate) fn push_reserved(&self, job: Job) -> Result<(), Job> {
        let waker = {
            let mut s = self.lock();
            if s.closed {
                drop(s);
                self.release(1);
                return Err(job);
            }
            s.queue.push_back(job);
            s.io_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Takes up to `max` commands for the I/O task, oldest first, into `out`. `Ready(false)`
    /// when the queue is empty and will stay so: every handle is gone or it was closed.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut VecDeque<Job>,
    ) -> Poll<bool> {
        let n = {
            let mut s = self.lock();
            if s.queue.is_empty() {
                if s.senders_gone || s.closed {
                    return Poll::Ready(false);
                }
                match &mut s.io_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let n = max.min(s.queue.len());
            if n == s.queue.len() && out.is_empty() {
                std::mem::swap(&mut s.queue, out);
            } else {
                out.extend(s.queue.drain(..n));
            }
            n
        };
        self.release(n);
        Poll::Ready(true)
    }

    /// Takes no more commands. Those already queued stay, for the I/O task to take (a drain)
    /// or to refuse (the end of the connection, with [`Intake::take_all`]).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waker = {
            let mut s = self.lock();
            s.closed = true;
            s.io_waker.take()
        };
        self.waiting.store(false, Ordering::SeqCst);
        self.space.notify_waiters();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Closes the connection now: the I/O task ends at its next poll, and every command it owes
    /// fails.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        // Wakes the I/O task if it waits for commands.
        self.close();
    }

    /// Where to wake the I/O task once it takes no more commands (a drained connection still
    /// owing replies), so that [`Intake::abort`] reaches it.
    pub(crate) fn register_io_waker(&self, waker: &Waker) {
        let mut s = self.lock();
        match &mut s.io_waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
    }

    /// Whether [`Intake::abort`] was called.
    #[inline]
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Whether the queue takes no more commands.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes out of the queue the commands `expired` answers with an error (their deadline
    /// passed before the I/O task took them), giving their slots back, and returns them with
    /// it, oldest first. For the I/O task's look at its deadlines, once per tick: the queue is
    /// empty or short then (the task takes it whole whenever it has room).
    pub(crate) fn take_expired(
        &self,
        expired: &mut impl FnMut(&mut Job) -> Option<Error>,
    ) -> Vec<(Job, Error)> {
        let out = super::io::take_expired(&mut self.lock().queue, expired);
        if !out.is_empty() {
            self.release(out.len());
        }
        out
    }

    /// Every command still queued.
    pub(crate) fn take_all(&self) -> VecDeque<Job> {
        std::mem::take(&mut self.lock().queue)
    }

    /// The last handle is gone: the I/O task finishes once nothing more is owed.
    pub(crate) fn senders_gone(&self) {
        let waker = {
            let mut s = self.lock();
            s.senders_gone = true;
            s.io_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}
