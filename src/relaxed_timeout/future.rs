//! The response future of [`RelaxedTimeout`](super::RelaxedTimeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::Instant;

use super::{Relaxation, Shared};
use crate::error::Error;

/// The inner service's answer, or [`Error::Timeout`] when it takes too long.
///
/// A command sent before a maintenance began is not cut off by it: when its normal deadline
/// passes, the relaxation is read once more and, if the endpoint is relaxed by then, the
/// deadline moves to the relaxed one.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F, R> {
    #[pin]
    response: F,
    // Present while the command has a deadline.
    timer: Option<Timer<R>>,
    started: Instant,
    relaxed: bool,
}

#[derive(Debug)]
struct Timer<R> {
    shared: Arc<Shared<R>>,
    deadline: Instant,
    // Until the relaxed budget is in force: that budget, if longer.
    extend: Option<Duration>,
    // The slot in the deadline table, taken on the first poll that has to wait.
    slot: Option<usize>,
}

impl<R> Drop for Timer<R> {
    fn drop(&mut self) {
        if let Some(key) = self.slot {
            self.shared.deadlines.release(key);
        }
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(super) fn new(
        response: F,
        started: Instant,
        budget: Option<Duration>,
        relaxed: bool,
        extend: Option<Duration>,
        shared: &Arc<Shared<R>>,
    ) -> Self {
        // A budget too large for the clock (`Duration::MAX`) is no deadline at all.
        let timer = budget
            .and_then(|b| started.checked_add(b))
            .map(|deadline| Timer {
                shared: shared.clone(),
                deadline,
                extend,
                slot: None,
            });
        ResponseFuture {
            response,
            timer,
            started,
            relaxed,
        }
    }
}

impl<F, R, T> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<T, Error>>,
    R: Relaxation,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.response.poll(cx) {
            // The slot goes back to the table now rather than when the future is dropped.
            *this.timer = None;
            return Poll::Ready(out);
        }
        let Some(timer) = this.timer.as_mut() else {
            return Poll::Pending;
        };
        let Some(slot) = timer.slot else {
            // The first wait: the sweeper wakes this command once the deadline has passed.
            return match timer.shared.deadlines.register(timer.deadline, cx.waker()) {
                Ok(key) => {
                    timer.slot = Some(key);
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(Error::Config {
                    message: "RelaxedTimeout needs a Tokio runtime to keep its deadlines".into(),
                })),
            };
        };
        let now = Instant::now();
        if now < timer.deadline {
            timer.shared.deadlines.refresh(slot, cx.waker());
            return Poll::Pending;
        }
        // The deadline passed. Did a maintenance begin since the command was sent?
        if let Some(budget) = timer.extend.take() {
            let relaxed_now = timer.shared.relaxation.relaxed_at(now.into_std());
            match this.started.checked_add(budget) {
                Some(deadline) if relaxed_now && deadline > now => {
                    *this.relaxed = true;
                    timer.deadline = deadline;
                    timer.shared.deadlines.reset(slot, deadline, cx.waker());
                    return Poll::Pending;
                }
                // The relaxed budget is beyond the clock: no deadline any more.
                None if relaxed_now => {
                    *this.relaxed = true;
                    *this.timer = None;
                    return Poll::Pending;
                }
                _ => {}
            }
        }
        Poll::Ready(Err(Error::Timeout {
            after: this.started.elapsed(),
            relaxed: *this.relaxed,
        }))
    }
}
