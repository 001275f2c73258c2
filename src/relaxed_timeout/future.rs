//! The response future of [`RelaxedTimeout`](super::RelaxedTimeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::Instant;

use super::{Relaxation, Shared};
use crate::connection::expiry::{Budget, Expiry};
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
    armed: Armed<R>,
}

/// A deadline with the table it may hold a slot in, given back when dropped.
#[derive(Debug)]
struct Armed<R> {
    shared: Arc<Shared<R>>,
    deadline: Deadline,
}

impl<R> Drop for Armed<R> {
    fn drop(&mut self) {
        self.deadline.release(&self.shared);
    }
}

/// One command's deadline: when it was sent, its budget, and its slot in the deadline table
/// once it has had to wait. It holds no reference to the table: whoever keeps it gives the
/// slot back with [`Deadline::release`] (the layer's future when dropped, the fused stack's
/// future likewise). The fused stack hands its [`Expiry`] to the connection instead while the
/// command is on one, and takes a slot only on the path that waits for a connection.
#[derive(Debug)]
pub(crate) struct Deadline {
    // Present while the command has a deadline.
    expiry: Option<Expiry>,
    // The slot in the deadline table, taken on the first poll that has to wait (a `u32`,
    // as small as it can be: it is moved with every command).
    slot: Option<u32>,
}

impl Deadline {
    pub(super) fn new(
        started: Instant,
        budget: Option<Duration>,
        relaxed: bool,
        extend: Option<Duration>,
    ) -> Self {
        let expiry = budget.map(|b| Expiry::new(started, b, relaxed, extend));
        Deadline { expiry, slot: None }
    }

    /// A deadline with a budget worked out beforehand.
    #[inline]
    pub(super) fn from_budget(started: Instant, budget: Budget) -> Self {
        Deadline {
            expiry: Some(Expiry::from_budget(started, budget)),
            slot: None,
        }
    }

    /// The deadline, for a connection to keep; `None` when the command has none.
    #[inline]
    pub(crate) fn expiry(&self) -> Option<Expiry> {
        self.expiry
    }

    /// Gives the slot back to `shared`'s table, if the command took one: once it is answered
    /// (rather than when its future is dropped) and when it is dropped unanswered.
    #[inline]
    pub(crate) fn release<R>(&mut self, shared: &Shared<R>) {
        if let Some(key) = self.slot.take() {
            self.expiry = None;
            shared.deadlines.release(key as usize);
        }
    }

    /// For a command not answered yet: `Pending` until its deadline (the sweeper of
    /// `shared`'s table wakes it then), or the error to fail it with.
    pub(crate) fn poll_expired<R: Relaxation>(
        &mut self,
        shared: &Shared<R>,
        cx: &mut Context<'_>,
    ) -> Poll<Error> {
        let Some(expiry) = self.expiry.as_mut() else {
            return Poll::Pending;
        };
        let Some(key) = self.slot else {
            // The first wait: the sweeper wakes this command once the deadline has passed.
            return match shared.deadlines.register(expiry.deadline(), cx.waker()) {
                Ok(key) => match u32::try_from(key) {
                    Ok(key) => {
                        self.slot = Some(key);
                        Poll::Pending
                    }
                    // Four billion commands waiting at once: not a table this can keep.
                    Err(_) => {
                        shared.deadlines.release(key);
                        Poll::Ready(Error::Config {
                            message: "too many commands waiting for their deadlines".into(),
                        })
                    }
                },
                Err(_) => Poll::Ready(Error::Config {
                    message: "RelaxedTimeout needs a Tokio runtime to keep its deadlines".into(),
                }),
            };
        };
        let now = Instant::now();
        let before = expiry.deadline();
        if let Some(error) = expiry.check(now, || shared.relaxation.relaxed_at(now.into_std())) {
            return Poll::Ready(error);
        }
        if expiry.deadline() == before {
            shared.deadlines.refresh(key as usize, cx.waker());
        } else {
            // A maintenance began since the command was sent: the relaxed deadline now.
            shared
                .deadlines
                .reset(key as usize, expiry.deadline(), cx.waker());
        }
        Poll::Pending
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(super) fn new(response: F, deadline: Deadline, shared: &Arc<Shared<R>>) -> Self {
        ResponseFuture {
            response,
            armed: Armed {
                shared: shared.clone(),
                deadline,
            },
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
        let armed = this.armed;
        if let Poll::Ready(out) = this.response.poll(cx) {
            // The slot goes back to the table now rather than when the future is dropped.
            armed.deadline.release(&armed.shared);
            return Poll::Ready(out);
        }
        armed.deadline.poll_expired(&armed.shared, cx).map(Err)
    }
}
