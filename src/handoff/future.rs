//! The response future of [`HandoffRetry`](super::HandoffRetry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

use super::session::Verdict;
use super::Inner;
use crate::command::Command;
use crate::connection::{AnswerFuture, Failed};
use crate::error::{Error, Execution};
use crate::request::Request;

/// Sends again at most this many times: a request that keeps meeting dying connections fails.
const MAX_RESENDS: u32 = 3;

/// How long an unsubscribe waits for a connection being released to answer it too.
const RELEASING_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

type Resend<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// The answer to a request sent through [`HandoffRetry`](super::HandoffRetry).
#[pin_project]
pub struct ResponseFuture<R: Request = Command> {
    #[pin]
    attempt: Attempt<R>,
    inner: Arc<Inner>,
}

/// A request on its way: sent on the current connection, or on the path that waits for a
/// connection and sends again. It holds no reference to the stack's shared state on the
/// common path: whoever polls it passes that in ([`ResponseFuture`] here, the fused
/// [`Stack`](crate::Stack)'s future there).
#[pin_project(project = AttemptProj)]
pub(crate) enum Attempt<R: Request> {
    // The common case: sent on the current connection, nothing boxed.
    Sent {
        #[pin]
        answer: AnswerFuture<R>,
    },
    // The cold path: waiting for a connection, sending again, or a dedicated stack.
    Resending {
        future: Resend<R::Response>,
        // Where a command or batch on its way again is, for a timeout that ends it (none for
        // subscriptions and dedicated stacks, whose timeouts stay plain).
        progress: Option<Arc<Progress>>,
    },
}

/// How far a request on the resend path got, so that a deadline that passes on the way says
/// what is true of it: a request never written (waiting for a connection, or waiting out a
/// `LOADING`) did not run, and its caller may send it again; only one that was on a
/// connection when its time ran out, or was on one that failed under it, may have run.
#[derive(Debug, Default)]
pub(crate) struct Progress(std::sync::Mutex<Stage>);

#[derive(Debug, Default)]
struct Stage {
    /// Written to a connection and not answered yet.
    sending: bool,
    /// How an earlier try ended that may have run it (written to a connection that was lost
    /// under it): whatever comes later, it may have run.
    ran: Option<Error>,
    /// The refusal being waited out (`LOADING`, `MASTERDOWN`), until the next try.
    refused: Option<Error>,
}

impl Progress {
    fn after(error: &Error) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        progress.failed(error);
        progress
    }

    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sending(&self) {
        let mut stage = self.stage();
        stage.sending = true;
        stage.refused = None;
    }

    /// A try failed with `error` and the request goes again: a refusal is waited out, a lost
    /// connection may have run it.
    fn failed(&self, error: &Error) {
        let mut stage = self.stage();
        stage.sending = false;
        if stage.ran.is_none() && !error.certainly_not_executed() {
            stage.ran = Some(error.clone());
        }
        stage.refused = refusal(error).then(|| error.clone());
    }

    /// The error the request ends with, when its last try ended with `error`: one that says
    /// it did not run (no connection came back, a refusal past its tries) is not the whole
    /// truth after an earlier try that may have run it, which is given instead.
    fn last(&self, error: Error) -> Error {
        if !error.certainly_not_executed() {
            return error;
        }
        match &self.stage().ran {
            Some(ran) => ran.clone(),
            None => error,
        }
    }

    /// What a `timeout` that ends the request says: the timeout itself if the request may
    /// have run, else the refusal it was waiting out (while the server that refused is still
    /// connected), else that it was never sent.
    fn timed_out(&self, timeout: Error, inner: &Inner) -> Error {
        let Error::Timeout { after, .. } = timeout else {
            return timeout;
        };
        let stage = self.stage();
        if stage.sending || stage.ran.is_some() {
            return timeout;
        }
        match &stage.refused {
            Some(refusal) if inner.usable().is_some() => refusal.clone(),
            _ => {
                let waited = std::time::Duration::from_millis(after.as_millis() as u64);
                inner.unavailable(&format!(
                    "no connection before the command's timeout (after {waited:?})"
                ))
            }
        }
    }
}

impl<R: Request> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.attempt {
            Attempt::Sent { .. } => "sent",
            Attempt::Resending { .. } => "resending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<R: Request> ResponseFuture<R> {
    pub(super) fn new(attempt: Attempt<R>, inner: Arc<Inner>) -> Self {
        ResponseFuture { attempt, inner }
    }
}

impl<R: Request> Attempt<R> {
    pub(super) fn sent(answer: AnswerFuture<R>) -> Self {
        Attempt::Sent { answer }
    }

    pub(super) fn waiting(request: R, inner: Arc<Inner>) -> Self {
        let progress = Arc::new(Progress::default());
        Attempt::Resending {
            future: Box::pin(resend(inner, request, 0, false, progress.clone())),
            progress: Some(progress),
        }
    }

    pub(super) fn subscription(request: R, inner: Arc<Inner>) -> Self {
        Attempt::Resending {
            future: Box::pin(subscription(inner, request)),
            progress: None,
        }
    }

    pub(super) fn dedicated(request: R, inner: Arc<Inner>) -> Self {
        Attempt::Resending {
            future: Box::pin(dedicated(inner, request)),
            progress: None,
        }
    }

    /// What the deadline's `error` becomes for this request, which the caller's timeout ends
    /// while it is not on a connection that keeps the deadline itself: the timeout, unless
    /// the request is on its way again and was never written ([`Progress`]).
    #[cold]
    pub(crate) fn timed_out(&self, error: Error, inner: &Inner) -> Error {
        match self {
            Attempt::Resending {
                progress: Some(progress),
                ..
            } => progress.timed_out(error, inner),
            _ => error,
        }
    }

    /// Whether the request is on a connection, which keeps the deadline it was given.
    #[inline]
    pub(crate) fn is_sent(&self) -> bool {
        matches!(self, Attempt::Sent { .. })
    }

    /// Polls the request; `inner` is the shared state of the stack it was sent through.
    #[inline]
    pub(crate) fn poll(
        mut self: Pin<&mut Self>,
        inner: &Arc<Inner>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<R::Response, Error>> {
        let failed = match self.as_mut().project() {
            AttemptProj::Sent { answer } => match answer.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(reply)) => return Poll::Ready(Ok(reply)),
                Poll::Ready(Err(failed)) => failed,
            },
            AttemptProj::Resending { future, .. } => return future.as_mut().poll(cx),
        };
        self.failed(failed, inner, cx)
    }

    /// The connection failed the request: send it again if it may go again, else the error.
    #[cold]
    #[inline(never)]
    fn failed(
        mut self: Pin<&mut Self>,
        Failed { error, command }: Failed<R>,
        inner: &Arc<Inner>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<R::Response, Error>> {
        match command {
            Some(request) if inner.should_retry(&error, &request) => {
                inner.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(command = request.name(), %error, "sending again");
                let refused = refusal(&error);
                let (resends, refusals) = if refused { (0, true) } else { (1, false) };
                let progress = Progress::after(&error);
                let mut future = Box::pin(resend(
                    inner.clone(),
                    request,
                    resends,
                    refusals,
                    progress.clone(),
                ));
                let poll = future.as_mut().poll(cx);
                self.set(Attempt::Resending {
                    future,
                    progress: Some(progress),
                });
                poll
            }
            _ => Poll::Ready(Err(error)),
        }
    }
}

impl<R: Request> Future for ResponseFuture<R> {
    type Output = Result<R::Response, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.attempt.poll(this.inner, cx)
    }
}

/// Waits for a usable connection and sends there, again while the connection keeps dying
/// under a request that may be sent again, or the server refuses it for now (`LOADING`).
async fn resend<R: Request>(
    inner: Arc<Inner>,
    mut request: R,
    mut resends: u32,
    refused: bool,
    progress: Arc<Progress>,
) -> Result<R::Response, Error> {
    // After a refusal (`LOADING`), wait before the next try; after a lost connection, not.
    let mut refusals = u32::from(refused);
    loop {
        if refusals > 0 {
            tokio::time::sleep(refusal_backoff(refusals)).await;
        }
        let conn = match inner.wait_for_connection().await {
            Ok(conn) => conn,
            Err(error) => return Err(progress.last(error)),
        };
        progress.sending();
        match conn.send_recoverable(request).await {
            Ok(reply) => return Ok(reply),
            Err(Failed {
                error,
                command: Some(returned),
            }) if refusal(&error) && refusals < MAX_REFUSALS => {
                // The server is up but not ready (a restart reading its data back): the
                // caller's timeout bounds how long this goes on.
                progress.failed(&error);
                refusals += 1;
                inner.retried.fetch_add(1, Ordering::Relaxed);
                request = returned;
            }
            Err(Failed {
                error,
                command: Some(returned),
            }) if !refusal(&error)
                && resends < MAX_RESENDS
                && inner.should_retry(&error, &returned) =>
            {
                // A lost connection (a refusal past its tries goes to the caller).
                progress.failed(&error);
                resends += 1;
                refusals = 0;
                inner.retried.fetch_add(1, Ordering::Relaxed);
                request = returned;
            }
            Err(failed) => return Err(progress.last(failed.error)),
        }
    }
}

/// Sends a `SUBSCRIBE`-family command: the stack's record of its subscriptions is updated and
/// the command queued on the current connection under one lock, the lock a handoff holds while
/// it switches (see `Inner::install_subscribed`). So the command reaches either the old
/// connection before its subscriptions are carried over, or the new one: never the old one
/// after, where the release would undo it.
async fn subscription<R: Request>(inner: Arc<Inner>, mut request: R) -> Result<R::Response, Error> {
    let mut resends = 0;
    loop {
        let conn = inner.wait_for_connection().await?;
        let sent = request.as_command().cloned();
        let (answer, also, leaving) = {
            let mut subs = inner.lock_subscriptions();
            if !inner.is_current(&conn) {
                // Switched while this waited for the lock.
                continue;
            }
            let leaving = request.as_command().and_then(|command| {
                subs.track(command);
                inner.leaving(command)
            });
            // An unsubscribe goes to a connection still being released too: it still
            // delivers the channel, and would go on after the caller's answer until its
            // release is answered (and across a subscribe again to the same channel).
            let also: Vec<_> = match (&leaving, request.as_command()) {
                (Some(_), Some(command)) => inner
                    .releasing()
                    .into_iter()
                    .map(|old| old.queue_now(command.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            (conn.queue_now(request), also, Left(inner.clone(), leaving))
        };
        let answer = answer.await;
        // Answered only once the released connections have stopped delivering it too (or,
        // if one does not answer soon, without it: it is on its way out).
        for old in also {
            match tokio::time::timeout(RELEASING_WAIT, old).await {
                Ok(Ok(_)) => {}
                Ok(Err(f)) => {
                    tracing::debug!(error = %f.error, "unsubscribing a released connection failed");
                }
                Err(_) => tracing::debug!("a released connection did not answer an unsubscribe"),
            }
        }
        drop(leaving);
        if let (
            Err(Failed {
                error: Error::Server(_),
                ..
            }),
            Some(command),
        ) = (&answer, &sent)
        {
            // Refused (`NOPERM`): not a subscription to make again on the next connection.
            inner.lock_subscriptions().untrack_refused(command);
        }
        match answer {
            Ok(response) => return Ok(response),
            Err(Failed {
                error,
                command: Some(returned),
            }) if resends < MAX_RESENDS && inner.should_retry(&error, &returned) => {
                resends += 1;
                inner.retried.fetch_add(1, Ordering::Relaxed);
                request = returned;
            }
            Err(failed) => return Err(failed.error),
        }
    }
}

/// Forgets an unsubscribe on its way once answered, or when its caller gives up on it.
struct Left(Arc<Inner>, Option<u64>);

impl Drop for Left {
    fn drop(&mut self) {
        self.0.left(self.1.take());
    }
}

/// Whether the server refused the command for now for a reason of its own (`LOADING`,
/// `MASTERDOWN`): it did not run, and this layer waits and sends it again.
fn refusal(error: &Error) -> bool {
    matches!(error, Error::Server(e) if e.is_transient_refusal()) && !slot_refusal(error)
}

/// Whether the server refused the command for its slot (`TRYAGAIN`: a multi-key command whose
/// keys a slot migration has split). It did not run either, but waiting on this one node is
/// not this layer's to do: the answer is about the cluster's slots, and the cluster layer
/// above waits it out with the slot map and its retry budget (following `ASK` or `MOVED`
/// once the migration ends). A server that is not a cluster node never sends it.
pub(super) fn slot_refusal(error: &Error) -> bool {
    matches!(error, Error::Server(e) if e.code() == "TRYAGAIN")
}

/// Tries after a `LOADING`-like refusal: waits of 10 ms doubling to 640 ms, about 1.9 s in all.
const MAX_REFUSALS: u32 = 8;

fn refusal_backoff(refusals: u32) -> std::time::Duration {
    std::time::Duration::from_millis(10 << refusals.saturating_sub(1).min(6))
}

/// Sends a dedicated stack's request: its session says first whether it may go to the
/// connection it would go to (a WATCH or MULTI lost with its connection stops it), and learns
/// from the answer what the request set. State commands only come alone (a pipeline refuses
/// them), so a command's own answer says whether it took effect.
async fn dedicated<R: Request>(inner: Arc<Inner>, mut request: R) -> Result<R::Response, Error> {
    let mut resends = 0;
    loop {
        let conn = inner.wait_for_connection().await?;
        let id = conn.id();
        let transaction = request.is_transaction();
        match inner
            .lock_session()
            .before(request.parts(), transaction, id)
        {
            Verdict::Send => {}
            Verdict::Answer(reply) => return R::finish(R::local(reply)).map_err(|f| f.error),
            Verdict::Fail(error) => return Err(error),
        }
        let state = request
            .as_command()
            .filter(|c| c.state_change().is_some())
            .cloned();
        let outcome = conn.send_recoverable(request).await;
        let answered = match &outcome {
            Ok(_) => Some(true),
            // Answered by the server: an EXEC answered null or EXECABORT still ended the WATCH.
            Err(Failed { error, .. })
                if error.execution() == Execution::Ran
                    || matches!(
                        error,
                        Error::WatchConflict { .. } | Error::TransactionDiscarded { .. }
                    ) =>
            {
                Some(false)
            }
            Err(_) => None,
        };
        // A transaction written whole ended its WATCH whatever became of it: by its EXEC, or
        // with the connection that closed under it.
        let answered = answered.or_else(|| {
            let written =
                matches!(&outcome, Err(Failed { error, .. }) if error.may_have_executed());
            (transaction && written).then_some(false)
        });
        if let Some(ok) = answered {
            let mut session = inner.lock_session();
            match &state {
                Some(c) => session.after(std::slice::from_ref(c), false, ok, id),
                None if transaction => session.after(&[], true, ok, id),
                None => {}
            }
        }
        match outcome {
            Ok(response) => return Ok(response),
            Err(Failed {
                error,
                command: Some(returned),
            }) if resends < MAX_RESENDS && inner.should_retry(&error, &returned) => {
                resends += 1;
                inner.retried.fetch_add(1, Ordering::Relaxed);
                if refusal(&error) {
                    tokio::time::sleep(refusal_backoff(resends)).await;
                }
                request = returned;
            }
            Err(failed) => return Err(failed.error),
        }
    }
}
