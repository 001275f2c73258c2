//! The response future of [`Cluster`](super::Cluster).
//!
//! A command whose node is known and connected is sent straight to that node's stack and its
//! future polled in place: no allocation beyond the copy of the command kept in case the
//! server redirects it. A redirect, a pipeline, a transaction or a command for every primary
//! continues in a boxed future (`send`), where the rare and the larger cases live.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::ServiceExt;

use super::redirect::{self, Next};
use super::route::{self, Route};
use super::{send, Inner, ReadFrom};
use crate::command::Command;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::request::{ClusterAnswer, Request};
use crate::stack::Stack;

pub(crate) type Slow = Pin<Box<dyn Future<Output = Result<ClusterAnswer, Error>> + Send>>;

/// The answer of a [`Cluster`](super::Cluster) call: a command sent straight to its node is
/// polled in place, everything else goes on in a boxed future.
#[pin_project]
pub struct ResponseFuture<R> {
    #[pin]
    state: State,
    _request: PhantomData<fn() -> R>,
}

// The straight path holds the node's stack and its future in place, which is what makes it
// large; boxing it would cost an allocation per command on the hot path instead.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = StateProj)]
enum State {
    Sent {
        #[pin]
        sent: Oneshot<Stack, Command>,
        command: Option<Command>,
        route: Route,
        by: Endpoint,
        // Sent to a replica (a read): sent again to the primary if the replica cannot answer.
        replica: bool,
        inner: Arc<Inner>,
        started: Instant,
    },
    Slow {
        future: Slow,
    },
    Ready {
        answer: Option<Result<ClusterAnswer, Error>>,
    },
}

impl<R> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sent { by, .. } => format!("sent to {by}"),
            State::Slow { .. } => "following the cluster".to_string(),
            State::Ready { .. } => "answered".to_string(),
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<R> ResponseFuture<R> {
    pub(super) fn command(inner: &Arc<Inner>, command: Command, started: Instant) -> Self {
        let route = match route::route(&command) {
            Ok(route) => route,
            Err(e) => return Self::ready(Err(e)),
        };
        if let Route::All(combine) = route {
            return Self::slow(Box::pin(send::fan_out(inner.clone(), command, combine)));
        }
        let routes = inner.routes.load();
        let picked = match route {
            Route::Slot(slot)
                if inner.config.read_from != ReadFrom::Primary
                    && route::replica_may_serve(&command) =>
            {
                routes.pick_read(slot, inner.config.read_from)
            }
            _ => routes.pick(&route).map(|stack| (stack, false)),
        };
        match picked {
            Some((stack, replica)) if stack.handoff().is_connected() => {
                if replica {
                    inner.read_sent_to_replica();
                }
                let by = stack.handoff().configured_endpoint().clone();
                let sent = stack.clone().oneshot(command.clone());
                Self::with(State::Sent {
                    sent,
                    command: Some(command),
                    route,
                    by,
                    replica,
                    inner: inner.clone(),
                    started,
                })
            }
            _ => Self::slow(Box::pin(send::command(
                inner.clone(),
                command,
                route,
                None,
                started,
            ))),
        }
    }

    pub(super) fn slow(future: Slow) -> Self {
        Self::with(State::Slow { future })
    }

    pub(super) fn ready(answer: Result<ClusterAnswer, Error>) -> Self {
        Self::with(State::Ready {
            answer: Some(answer),
        })
    }

    fn with(state: State) -> Self {
        ResponseFuture {
            state,
            _request: PhantomData,
        }
    }
}

impl<R: Request> Future for ResponseFuture<R> {
    type Output = Result<R::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let answer = match this.state.as_mut().project() {
                StateProj::Sent {
                    sent,
                    command,
                    route,
                    by,
                    replica,
                    inner,
                    started,
                } => match sent.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(reply)) => Ok(ClusterAnswer::One(reply)),
                    Poll::Ready(Err(error)) => {
                        let map = |e: Endpoint| inner.map(e);
                        let next = redirect::next(&error, by, &map);
                        if *replica
                            && matches!(next, Next::Stop | Next::Reroute)
                            && (matches!(
                                error,
                                Error::ConnectionLost { .. } | Error::Timeout { .. }
                            ) || redirect::unreachable(&error))
                        {
                            if let Some(command) = command.take() {
                                // A read the replica could not answer: safe to send again,
                                // to the primary (the route picks it), at once.
                                tracing::debug!(replica = %by, %error, "read sent again to the primary");
                                inner.replica_read_retried();
                                let future = Box::pin(send::command(
                                    inner.clone(),
                                    command,
                                    route.clone(),
                                    None,
                                    *started,
                                ));
                                this.state.set(State::Slow { future });
                                continue;
                            }
                        }
                        match (next, command.take()) {
                            (Next::Stop, _) | (_, None) => {
                                if matches!(error, Error::ConnectionLost { .. }) {
                                    // The primary may be gone: the next command should find
                                    // its successor.
                                    inner.refresh_lazily();
                                }
                                Err(error)
                            }
                            (_, Some(command)) => {
                                let future = Box::pin(send::command(
                                    inner.clone(),
                                    command,
                                    route.clone(),
                                    Some((error, by.clone())),
                                    *started,
                                ));
                                this.state.set(State::Slow { future });
                                continue;
                            }
                        }
                    }
                },
                StateProj::Slow { future } => match future.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(answer) => answer,
                },
                StateProj::Ready { answer } => answer.take().unwrap_or_else(|| {
                    Err(Error::config(
                        "a cluster response polled after it was answered",
                    ))
                }),
            };
            return Poll::Ready(answer.and_then(R::from_cluster));
        }
    }
}
