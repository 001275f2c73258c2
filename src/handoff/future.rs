//! The response future of [`HandoffRetry`](super::HandoffRetry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

use super::Inner;
use crate::command::Command;
use crate::connection::{AnswerFuture, Failed};
use crate::error::Error;
use crate::reply::Reply;

/// Sends again at most this many times: a command that keeps meeting dying connections fails.
const MAX_RESENDS: u32 = 3;

type Resend = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;

/// The answer to a command sent through [`HandoffRetry`](super::HandoffRetry).
#[pin_project]
pub struct ResponseFuture {
    #[pin]
    state: State,
    inner: Arc<Inner>,
}

#[pin_project(project = StateProj)]
enum State {
    // The common case: sent on the current connection, nothing boxed.
    Sent {
        #[pin]
        answer: AnswerFuture,
    },
    // The cold path: waiting for a connection, or sending again.
    Resending {
        future: Resend,
    },
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Sent { .. } => "sent",
            State::Resending { .. } => "resending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl ResponseFuture {
    pub(super) fn sent(answer: AnswerFuture, inner: Arc<Inner>) -> Self {
        ResponseFuture {
            state: State::Sent { answer },
            inner,
        }
    }

    pub(super) fn waiting(command: Command, inner: Arc<Inner>) -> Self {
        let future = Box::pin(resend(inner.clone(), command, 0));
        ResponseFuture {
            state: State::Resending { future },
            inner,
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Reply, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Sent { answer } => match answer.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(reply)) => return Poll::Ready(Ok(reply)),
                    Poll::Ready(Err(Failed { error, command })) => match command {
                        Some(command) if this.inner.should_retry(&error, &command) => {
                            this.inner.retried.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(command = command.name(), %error, "sending again");
                            let future = Box::pin(resend(this.inner.clone(), command, 1));
                            this.state.set(State::Resending { future });
                        }
                        _ => return Poll::Ready(Err(error)),
                    },
                },
                StateProj::Resending { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

/// Waits for a usable connection and sends there, again while the connection keeps dying
/// under a command that may be sent again.
async fn resend(inner: Arc<Inner>, mut command: Command, mut resends: u32) -> Result<Reply, Error> {
    loop {
        let conn = inner.wait_for_connection().await?;
        match conn.send_recoverable(command).await {
            Ok(reply) => return Ok(reply),
            Err(Failed {
                error,
                command: Some(returned),
            }) if resends < MAX_RESENDS && inner.should_retry(&error, &returned) => {
                resends += 1;
                inner.retried.fetch_add(1, Ordering::Relaxed);
                command = returned;
            }
            Err(failed) => return Err(failed.error),
        }
    }
}
