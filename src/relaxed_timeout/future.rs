//! The response future of [`RelaxedTimeout`](super::RelaxedTimeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::Error;

/// The inner service's answer, or [`Error::Timeout`] when it takes too long.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    response: F,
    #[pin]
    sleep: Option<Sleep>,
    started: Instant,
    relaxed: bool,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(response: F, deadline: Option<(Instant, Duration)>, relaxed: bool) -> Self {
        let started = deadline.map_or_else(Instant::now, |(now, _)| now);
        ResponseFuture {
            response,
            sleep: deadline.map(|(now, budget)| tokio::time::sleep_until(now + budget)),
            started,
            relaxed,
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.response.poll(cx) {
            return Poll::Ready(out);
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => match sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Error::Timeout {
                    after: this.started.elapsed(),
                    relaxed: *this.relaxed,
                })),
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}
