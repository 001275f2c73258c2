//! The response future of [`MetricsHook`](super::MetricsHook).

use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::{pin_project, pinned_drop};

use super::recorder::{clock, record, Failure, Finished};
use crate::error::{Error, ErrorClass};

/// The inner service's answer, unchanged; its time and outcome are recorded when it comes,
/// or the command is counted as cancelled if the future is dropped first.
///
/// It does not keep the [`Metrics`](super::Metrics) handle alive: a command that finishes
/// after every clone of the handle is gone is not recorded.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    response: F,
    // Taken when the answer is recorded.
    pending: Option<Pending>,
    span: CommandSpan,
}

/// A request being timed: recorded once, when it finishes or is dropped unfinished.
#[derive(Debug)]
pub(crate) struct Pending {
    // Never 0, so that an `Option<Pending>` is no larger than a `Pending`.
    pub(super) recorder: NonZeroU64,
    // A raw reading of the metrics clock.
    pub(super) started: u64,
    pub(super) slot: u32,
}

/// A command's `redis.command` span, kept only when it is more than nothing: with no
/// subscriber that wants it (and no `log` fallback), `debug_span!` gives an empty span, which
/// would still be 40 bytes moved with every command's future.
pub(crate) struct CommandSpan(Option<Box<tracing::Span>>);

impl CommandSpan {
    #[inline]
    pub(crate) fn new(span: tracing::Span) -> Self {
        if span.is_none() {
            CommandSpan(None)
        } else {
            CommandSpan(Some(Box::new(span)))
        }
    }

    /// Enters the span, if there is one, until the guard is dropped.
    #[inline]
    pub(crate) fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.0.as_deref().map(tracing::Span::enter)
    }

    #[inline]
    fn record_outcome(&self, failure: Option<Failure>) {
        if let Some(span) = &self.0 {
            if !span.is_disabled() {
                span.record("outcome", outcome_name(failure));
            }
        }
    }
}

impl Pending {
    /// Records the outcome of a request that finished, and names it in `span`.
    #[inline]
    pub(crate) fn finish<T>(self, out: &Result<T, Error>, span: &CommandSpan) {
        let failure = out.as_ref().err().map(failure);
        let clock = clock();
        let elapsed = Some(clock.delta(self.started, clock.raw()));
        record(
            self.recorder.get(),
            Finished {
                slot: self.slot as usize,
                elapsed,
                failure,
            },
        );
        span.record_outcome(failure);
    }

    /// Records a request dropped before it finished.
    pub(crate) fn cancel(self, span: &CommandSpan) {
        record(
            self.recorder.get(),
            Finished {
                slot: self.slot as usize,
                elapsed: None,
                failure: Some(Failure::Cancelled),
            },
        );
        span.record_outcome(Some(Failure::Cancelled));
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(response: F, pending: Pending, span: CommandSpan) -> Self {
        ResponseFuture {
            response,
            pending: Some(pending),
            span,
        }
    }
}

/// The failure an error counts as.
pub(crate) fn failure(error: &Error) -> Failure {
    match error {
        Error::Timeout { relaxed: true, .. } => Failure::RelaxedTimeout,
        e => match e.class() {
            ErrorClass::Server => Failure::Server,
            ErrorClass::Timeout => Failure::Timeout,
            ErrorClass::CircuitOpen => Failure::CircuitOpen,
            ErrorClass::Connection => Failure::Connection,
            _ => Failure::Other,
        },
    }
}

/// The outcome's name in spans, logs and metric labels.
pub(crate) fn outcome_name(failure: Option<Failure>) -> &'static str {
    match failure {
        None => "ok",
        Some(Failure::Server) => "server_error",
        Some(Failure::Timeout) => "timeout",
        Some(Failure::RelaxedTimeout) => "relaxed_timeout",
        Some(Failure::CircuitOpen) => "circuit_open",
        Some(Failure::Connection) => "connection_lost",
        Some(Failure::Other) => "other_error",
        Some(Failure::Cancelled) => "cancelled",
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let out = match this.response.poll(cx) {
            Poll::Ready(out) => out,
            Poll::Pending => return Poll::Pending,
        };
        if let Some(p) = this.pending.take() {
            p.finish(&out, this.span);
        }
        Poll::Ready(out)
    }
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(p) = this.pending.take() {
            p.cancel(this.span);
        }
    }
}
