//! [`HandoffLimiter`]: bounds how many handoffs of a pool run at once and how many may wait.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by the stacks of a pool: at most `workers` handoffs dial at once, at most
/// `queue_size` wait for a worker; a handoff that finds the queue full fails with an error and
/// an event instead of piling up (a `MOVING` reaches every connection of a pool at once).
#[derive(Debug, Clone)]
pub struct HandoffLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Arc<Semaphore>,
    workers: usize,
    queue_size: usize,
    waiting: AtomicUsize,
    active: AtomicUsize,
    peak_active: AtomicUsize,
    peak_waiting: AtomicUsize,
    rejected: AtomicU64,
}

/// A worker slot, held from dial to switch.
#[derive(Debug)]
pub(crate) struct WorkerPermit {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl Drop for WorkerPermit {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The queue was full: the handoff was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    pub(crate) queue_size: usize,
}

impl HandoffLimiter {
    /// At most `workers` concurrent handoffs (at least 1), at most `queue_size` waiting.
    pub fn new(workers: usize, queue_size: usize) -> Self {
        let workers = workers.max(1);
        HandoffLimiter {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(workers)),
                workers,
                queue_size,
                waiting: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                peak_active: AtomicUsize::new(0),
                peak_waiting: AtomicUsize::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) async fn acquire(&self) -> Result<WorkerPermit, QueueFull> {
        let inner = &self.inner;
        let waiting = inner.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        if waiting > inner.queue_size {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(QueueFull {
                queue_size: inner.queue_size,
            });
        }
        inner.peak_waiting.fetch_max(waiting, Ordering::AcqRel);
        let permit = inner.permits.clone().acquire_owned().await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| QueueFull {
            queue_size: inner.queue_size,
        })?;
        let active = inner.active.fetch_add(1, Ordering::AcqRel) + 1;
        inner.peak_active.fetch_max(active, Ordering::AcqRel);
        Ok(WorkerPermit {
            _permit: permit,
            inner: inner.clone(),
        })
    }

    /// How many handoffs may run at once.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// How many handoffs may wait for a worker.
    pub fn queue_size(&self) -> usize {
        self.inner.queue_size
    }

    /// Handoffs running now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Handoffs waiting for a worker now (the queue depth).
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// The most handoffs that ever ran at once.
    pub fn peak_active(&self) -> usize {
        self.inner.peak_active.load(Ordering::Acquire)
    }

    /// The deepest the queue ever was.
    pub fn peak_waiting(&self) -> usize {
        self.inner.peak_waiting.load(Ordering::Acquire)
    }

    /// Handoffs refused because the queue was full.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// The share of workers busy now, from 0 to 1.
    pub fn utilisation(&self) -> f64 {
        self.active() as f64 / self.inner.workers as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_workers_and_refuses_past_the_queue() {
        let limiter = HandoffLimiter::new(2, 3);
        let a = limiter.acquire().await.unwrap();
        let _b = limiter.acquire().await.unwrap();
        assert_eq!(limiter.active(), 2);
        // Three may wait; the fourth is refused.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.acquire().await.map(|_| ()) })
            })
            .collect();
        while limiter.waiting() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(limiter.acquire().await.unwrap_err().queue_size, 3);
        assert_eq!(limiter.rejected(), 1);
        drop(a);
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert!(limiter.peak_active() <= 2);
        assert_eq!(limiter.peak_waiting(), 3);
    }
}
