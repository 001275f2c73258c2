//! The response future of [`RelaxedTimeout`](super::RelaxedTimeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::Relaxation;
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
    #[pin]
    sleep: Option<Sleep>,
    started: Instant,
    relaxed: bool,
    // Until the relaxed budget is in force: where to read the relaxation, and that budget.
    extend: Option<(R, Duration)>,
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn new(
        response: F,
        started: Instant,
        budget: Option<Duration>,
        relaxed: bool,
        extend: Option<(R, Duration)>,
    ) -> Self {
        ResponseFuture {
            response,
            // A budget too large for the clock (`Duration::MAX`) is no deadline at all.
            sleep: budget
                .and_then(|b| started.checked_add(b))
                .map(tokio::time::sleep_until),
            started,
            relaxed,
            extend,
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
        let mut this = self.project();
        if let Poll::Ready(out) = this.response.poll(cx) {
            return Poll::Ready(out);
        }
        loop {
            let Some(sleep) = this.sleep.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            if sleep.poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The deadline passed. Did a maintenance begin since the command was sent?
            if let Some((relaxation, budget)) = this.extend.take() {
                let now = Instant::now();
                let relaxed_now = relaxation
                    .relaxed_until()
                    .is_some_and(|until| until > now.into_std());
                let deadline = this.started.checked_add(budget);
                if relaxed_now && deadline.is_none_or(|d| d > now) {
                    *this.relaxed = true;
                    match deadline {
                        Some(deadline) => {
                            if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                                sleep.reset(deadline);
                            }
                        }
                        // The relaxed budget is beyond the clock: no deadline any more.
                        None => this.sleep.set(None),
                    }
                    continue;
                }
            }
            return Poll::Ready(Err(Error::Timeout {
                after: this.started.elapsed(),
                relaxed: *this.relaxed,
            }));
        }
    }
}
