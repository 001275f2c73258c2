//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

use super::state::Shared;
use super::Admitted;
use crate::error::Error;

/// How a command got through the circuit, with the circuit to count its outcome in.
pub(crate) struct Admission {
    pub(crate) shared: Arc<Shared>,
    pub(crate) admitted: Admitted,
}

impl Admission {
    #[inline]
    fn record<T>(self, result: &Result<T, Error>) {
        self.admitted.record(&self.shared, result);
    }
}

/// The inner service's answer, counted by the circuit; or [`Error::CircuitOpen`] at once when
/// the circuit did not let the command through.
#[pin_project(project = KindProj)]
enum Kind<F> {
    Called {
        #[pin]
        response: F,
        admission: Option<Admission>,
    },
    Rejected {
        error: Option<Error>,
    },
}

/// The response future of [`CircuitBreaker`](super::CircuitBreaker): the inner service's
/// answer, whose outcome the circuit counts, or [`Error::CircuitOpen`] at once when the circuit
/// did not let the command through.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn called(response: F, admission: Admission) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                response,
                admission: Some(admission),
            },
        }
    }

    pub(crate) fn rejected(error: Error) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                response,
                admission,
            } => {
                let result = std::task::ready!(response.poll(cx));
                if let Some(admission) = admission.take() {
                    admission.record(&result);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::config("a circuit breaker response was polled after it completed")
            }))),
        }
    }
}
