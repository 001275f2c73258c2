//! [`RelaxedTimeout`]: a per-command timeout that relaxes while the endpoint is in maintenance
//! and never tightens.
//!
//! - Normally a command gets `timeout`.
//! - While the endpoint is relaxed (a `MIGRATING`, `FAILING_OVER` or `SMIGRATING` until its end
//!   notification or the backstop; a `MOVING` until `post_handoff_relaxed_duration` after the
//!   switch; Azure's `NodeMaintenanceStarting` and `NodeMaintenanceStart`), it gets
//!   `max(timeout, relaxed)`: a relaxed timeout shorter than the normal one changes nothing.
//! - Blocking commands (`BLPOP`, `BRPOP`, `BLMOVE`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`, `BZMPOP`,
//!   `XREAD`/`XREADGROUP ... BLOCK`, `WAIT`, `WAITAOF`) get their block time on top of that, and
//!   no timeout at all when they block forever (`BLPOP key 0`).
//! - A timeout fails with [`Error::Timeout`], which says how long the command waited and
//!   whether the relaxed timeout was in force.
//! - Waiting in `poll_ready` for room below (a full queue, a connection on its way) is bounded
//!   the same way: past it, `poll_ready` fails with [`Error::NotSent`] (nothing was sent).
//!
//! Per call it reads the clock and one atomic. A command still waiting after its first poll
//! takes a slot in a deadline table shared by the service and its clones, kept by one sweeper
//! task, instead of a Tokio timer of its own (see `deadlines.rs`): a timeout fires at the first
//! sweep after its deadline, up to a twentieth of the normal timeout late (at most 50 ms), never
//! early. A `poll_ready` that has to wait arms one Tokio timer.
//!
//! The fused [`Stack`](crate::Stack) keeps the same deadlines by the same rules another way: it
//! knows the service below is its connection, and hands each command's deadline to the
//! connection with the command. The connection's I/O task, which holds every command it owes an
//! answer to anyway, looks at their deadlines once per tick and answers the expired ones with
//! [`Error::Timeout`] in place (their late replies are read and dropped), so a command costs
//! its caller no table slot, lock or waker. Only a command that waits for a connection or is
//! sent again after one was lost takes a slot in the table.
//!
//! The fused `Stack` also knows where such a command is when its time runs out, and says so:
//! one waiting for a reconnect, or between the tries of a `LOADING`, and never written fails
//! with [`Error::NotSent`], or with the refusal it was waiting out, both of which say it did
//! not run and may be sent again (the circuit still counts the timeout); one that was on a
//! connection, or was on one lost under it, fails with [`Error::Timeout`] (it may have run),
//! and so does one whose deadline passes in a connection's queue. This layer over a service it
//! knows nothing of gives `Error::Timeout` in every case.
//!
//! Whether the endpoint is relaxed comes from a [`Relaxation`]: the maintenance handle's
//! per-endpoint status, or anything else that can say "relaxed until".
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use redis_handoff::relaxed_timeout::{RelaxationSwitch, RelaxedTimeoutLayer};
//! use redis_handoff::{Command, Reply};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let switch = RelaxationSwitch::new();
//! let svc = ServiceBuilder::new()
//!     .layer(RelaxedTimeoutLayer::new(Duration::from_millis(50), Duration::from_secs(1), switch.clone()))
//!     .service(service_fn(|_: Command| async {
//!         tokio::time::sleep(Duration::from_millis(200)).await;
//!         Ok::<_, redis_handoff::Error>(Reply::from(redis_handoff::frame::BytesFrame::Null))
//!     }));
//! let err = svc.clone().oneshot(Command::new("GET")).await.unwrap_err();
//! assert!(matches!(err, redis_handoff::Error::Timeout { relaxed: false, .. }));
//! switch.relax_for(Duration::from_secs(5));
//! assert!(svc.oneshot(Command::new("GET")).await.is_ok());
//! # }
//! ```

mod deadlines;
mod future;
mod layer;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_service::Service;

use crate::connection::expiry::Budget;
pub(crate) use future::Deadline;
pub use future::ResponseFuture;
pub use layer::RelaxedTimeoutLayer;

use crate::clock;
use crate::command::Block;
use crate::error::Error;
use crate::request::Request;

/// Says until when an endpoint's timeouts are relaxed. Read on every command: keep it to an
/// atomic load.
pub trait Relaxation: Send + Sync + 'static {
    /// The end of the current relaxation, or `None` when not relaxed.
    fn relaxed_until(&self) -> Option<Instant>;

    /// Whether timeouts are relaxed at `now` (read on every command with the clock already
    /// read; override it when that saves reading the clock again).
    fn relaxed_at(&self, now: Instant) -> bool {
        self.relaxed_until().is_some_and(|until| until > now)
    }
}

impl<R: Relaxation + ?Sized> Relaxation for Arc<R> {
    fn relaxed_until(&self) -> Option<Instant> {
        (**self).relaxed_until()
    }

    fn relaxed_at(&self, now: Instant) -> bool {
        (**self).relaxed_at(now)
    }
}

/// The maintenance handle's state for one endpoint: relaxed from a start notification until its
/// end (or the backstop), and from `MOVING` until the post-handoff tail has passed.
impl Relaxation for crate::maintenance::EndpointStatus {
    fn relaxed_until(&self) -> Option<Instant> {
        crate::maintenance::EndpointStatus::relaxed_until(self)
    }

    fn relaxed_at(&self, now: Instant) -> bool {
        self.is_relaxed(now)
    }
}

/// A [`Relaxation`] switched by hand: for tests, drills, and apps with their own signal.
#[derive(Debug, Clone, Default)]
pub struct RelaxationSwitch {
    // Nanoseconds after the clock's epoch (`crate::clock`); 0 means not relaxed.
    until: Arc<AtomicU64>,
}

impl RelaxationSwitch {
    /// Not relaxed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Relaxed from now for `duration`.
    pub fn relax_for(&self, duration: Duration) {
        let until = clock::after(clock::now(), duration);
        self.until.store(until.max(1), Ordering::Release);
    }

    /// Not relaxed any more.
    pub fn end(&self) {
        self.until.store(0, Ordering::Release);
    }
}

impl Relaxation for RelaxationSwitch {
    fn relaxed_until(&self) -> Option<Instant> {
        match self.until.load(Ordering::Acquire) {
            0 => None,
            n => clock::instant(n),
        }
    }

    fn relaxed_at(&self, now: Instant) -> bool {
        clock::nanos(now) < self.until.load(Ordering::Acquire)
    }
}

/// [`Service`] that bounds each command's time; see the [module docs](self).
#[derive(Debug)]
pub struct RelaxedTimeout<S, R> {
    inner: S,
    // The budgets, the relaxation and the deadline table, shared by every clone.
    shared: Arc<Shared<R>>,
    // Armed while `poll_ready` waits for room below: the wait is bounded by the timeout too.
    waiting: Waiting,
}

/// What the clones of one [`RelaxedTimeout`] and their commands share. The fused
/// [`Stack`](crate::Stack) keeps one too and runs its commands' deadlines by the same rules.
#[derive(Debug)]
pub(crate) struct Shared<R> {
    timeout: Duration,
    relaxed: Duration,
    relaxation: R,
    deadlines: Arc<deadlines::Deadlines>,
    // The deadline of a command that does not block, sent while relaxed and while not,
    // but for its start: worked out once.
    plain: Plain,
}

/// The budgets of a command that does not block, as a deadline keeps them.
#[derive(Debug, Clone, Copy)]
struct Plain {
    normal: Budget,
    relaxed: Budget,
}

impl<S: Clone, R> Clone for RelaxedTimeout<S, R> {
    fn clone(&self) -> Self {
        RelaxedTimeout {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            waiting: Waiting::default(),
        }
    }
}

// ===== impl RelaxedTimeout =====

impl<S, R: Relaxation> RelaxedTimeout<S, R> {
    /// Wraps `inner` with a normal `timeout` and a `relaxed` one for maintenance windows.
    pub fn new(inner: S, timeout: Duration, relaxed: Duration, relaxation: R) -> Self {
        Self::from_shared(inner, Shared::new(timeout, relaxed, relaxation))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<R>>) -> Self {
        RelaxedTimeout {
            inner,
            shared,
            waiting: Waiting::default(),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget for `command` now, and whether it is the relaxed one; `None` for no timeout.
    #[cfg(test)]
    fn budget<Q: Request>(&self, command: &Q, now: Instant) -> (Option<Duration>, bool) {
        let shared = &self.shared;
        let relaxed = shared.relaxation.relaxed_at(now);
        let budget = shared.budget_with(command.blocking(), relaxed);
        (budget, relaxed && shared.relaxed > shared.timeout)
    }
}

impl<R: Relaxation> Shared<R> {
    pub(crate) fn new(timeout: Duration, relaxed: Duration, relaxation: R) -> Arc<Self> {
        let longer = relaxed > timeout;
        let plain = Plain {
            normal: Budget::new(timeout, false, longer.then_some(relaxed)),
            relaxed: Budget::new(timeout.max(relaxed), longer, None),
        };
        Arc::new(Shared {
            timeout,
            relaxed,
            relaxation,
            deadlines: Arc::new(deadlines::Deadlines::new(deadlines::tick_for(timeout))),
            plain,
        })
    }

    /// What says whether the endpoint is relaxed.
    pub(crate) fn relaxation(&self) -> &R {
        &self.relaxation
    }

    /// The budget for a command that blocks as `block` says, with or without the relaxation.
    fn budget_with(&self, block: Option<Block>, relaxed: bool) -> Option<Duration> {
        let base = if relaxed {
            self.timeout.max(self.relaxed)
        } else {
            self.timeout
        };
        match block {
            None => Some(base),
            Some(Block::Forever) => None,
            Some(Block::For(block)) => Some(block.saturating_add(base)),
        }
    }

    /// `poll_ready` of a service whose inner readiness is `inner`: a wait for room below is
    /// bounded as a command would be, then fails without sending anything.
    #[inline]
    pub(crate) fn poll_room(
        &self,
        waiting: &mut Waiting,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<Result<(), Error>>,
    ) -> Poll<Result<(), Error>> {
        match inner(cx) {
            Poll::Pending => {}
            ready => {
                if waiting.0.is_some() {
                    waiting.0 = None;
                }
                return ready;
            }
        }
        // No room below (a full queue, a connection on its way): wait as long as a command
        // would, then fail without sending anything.
        let now = tokio::time::Instant::now();
        let bound = if self.relaxation.relaxed_at(now.into_std()) {
            self.timeout.max(self.relaxed)
        } else {
            self.timeout
        };
        // A wait abandoned long ago (its caller gave up on readiness) left its timer behind:
        // this is a new wait, not that one's end.
        if waiting
            .0
            .as_ref()
            .is_some_and(|s| clock::deadline(s.deadline(), bound) <= now)
        {
            waiting.0 = None;
        }
        let sleep = waiting
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(clock::deadline(now, bound))));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                waiting.0 = None;
                Poll::Ready(Err(Error::NotSent {
                    reason: format!("no room to send within {bound:?} (the queue stayed full)")
                        .into(),
                }))
            }
        }
    }

    /// The deadline of a command that blocks as `block` says, sent now.
    #[inline]
    pub(crate) fn start(&self, block: Option<Block>) -> Deadline {
        let now = tokio::time::Instant::now();
        let relaxed_now = self.relaxation.relaxed_at(now.into_std());
        if block.is_none() {
            // Most commands: budgets worked out once.
            let plain = if relaxed_now {
                self.plain.relaxed
            } else {
                self.plain.normal
            };
            return Deadline::from_budget(now, plain);
        }
        let budget = self.budget_with(block, relaxed_now);
        let relaxed = relaxed_now && self.relaxed > self.timeout;
        // A maintenance that begins while the command waits can still give it the relaxed
        // budget; kept only when that budget is longer (or unbounded).
        let extend = if relaxed || budget.is_none() || self.relaxed <= self.timeout {
            None
        } else {
            match self.budget_with(block, true) {
                Some(longer) if budget.is_some_and(|normal| longer > normal) => Some(longer),
                _ => None,
            }
        };
        Deadline::new(now, budget, relaxed, extend)
    }
}

/// The timer a `poll_ready` waiting for room below arms.
#[derive(Debug, Default)]
pub(crate) struct Waiting(Option<Pin<Box<tokio::time::Sleep>>>);

impl<S, R, Q> Service<Q> for RelaxedTimeout<S, R>
where
    Q: Request,
    S: Service<Q, Error = Error>,
    R: Relaxation + Clone,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let inner = &mut self.inner;
        self.shared
            .poll_room(&mut self.waiting, cx, |cx| inner.poll_ready(cx))
    }

    fn call(&mut self, command: Q) -> Self::Future {
        let deadline = self.shared.start(command.blocking());
        let response = self.inner.call(command);
        ResponseFuture::new(response, deadline, &self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;
    use crate::command::Command;

    /// A service that answers every command with a null after `delay`.
    fn answers_after(
        delay: Duration,
    ) -> impl Service<
        Command,
        Response = crate::Reply,
        Error = Error,
        Future = impl Future<Output = Result<crate::Reply, Error>> + Send,
    > + Clone
           + Send {
        tower::service_fn(move |_: Command| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Error>(crate::Reply::from(crate::frame::BytesFrame::Null))
        })
    }

    fn svc(
        timeout_ms: u64,
        relaxed_ms: u64,
        switch: RelaxationSwitch,
    ) -> RelaxedTimeout<(), RelaxationSwitch> {
        RelaxedTimeout::new(
            (),
            Duration::from_millis(timeout_ms),
            Duration::from_millis(relaxed_ms),
            switch,
        )
    }

    #[tokio::test]
    async fn budgets_follow_the_rules() {
        let switch = RelaxationSwitch::new();
        let s = svc(100, 1000, switch.clone());
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(s.budget(&cmd!("GET", "k"), now), (Some(ms(100)), false));
        assert_eq!(
            s.budget(&cmd!("BLPOP", "k", 2), now),
            (Some(ms(2100)), false)
        );
        assert_eq!(s.budget(&cmd!("BLPOP", "k", 0), now), (None, false));
        switch.relax_for(Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(s.budget(&cmd!("GET", "k"), now), (Some(ms(1000)), true));
        assert_eq!(
            s.budget(&cmd!("XREAD", "BLOCK", 500, "STREAMS", "s", "$"), now),
            (Some(ms(1500)), true)
        );
        switch.end();
        assert_eq!(
            s.budget(&cmd!("GET", "k"), Instant::now()),
            (Some(ms(100)), false)
        );
    }

    #[tokio::test]
    async fn relaxing_never_tightens() {
        let switch = RelaxationSwitch::new();
        switch.relax_for(Duration::from_secs(5));
        let s = svc(3000, 1000, switch);
        let (budget, relaxed) = s.budget(&cmd!("GET", "k"), Instant::now());
        assert_eq!(budget, Some(Duration::from_secs(3)));
        assert!(
            !relaxed,
            "the normal timeout is in force, not a relaxed one"
        );
    }

    #[tokio::test]
    async fn a_maintenance_that_begins_while_a_command_waits_relaxes_it_too() {
        use tower::ServiceExt;
        let switch = RelaxationSwitch::new();
        let slow = answers_after(Duration::from_millis(300));
        let svc = RelaxedTimeout::new(
            slow,
            Duration::from_millis(100),
            Duration::from_secs(5),
            switch.clone(),
        );
        let call = tokio::spawn(svc.clone().oneshot(cmd!("GET", "k")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        switch.relax_for(Duration::from_secs(10));
        assert!(
            call.await.unwrap().is_ok(),
            "the relaxation reached the command in flight"
        );

        // Without a relaxation the same command times out, after the normal budget.
        switch.end();
        let err = svc.oneshot(cmd!("GET", "k")).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { relaxed: false, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_timeout_beyond_the_clock_means_no_deadline_and_never_panics() {
        use tower::ServiceExt;
        let switch = RelaxationSwitch::new();
        let quick = tower::service_fn(|_: Command| async {
            Ok::<_, Error>(crate::Reply::from(crate::frame::BytesFrame::Null))
        });
        let svc = RelaxedTimeout::new(quick, Duration::MAX, Duration::MAX, switch.clone());
        assert!(svc.clone().oneshot(cmd!("GET", "k")).await.is_ok());
        switch.relax_for(Duration::MAX);
        assert!(svc.clone().oneshot(cmd!("BLPOP", "k", 5)).await.is_ok());
        // A normal timeout with a relaxed one beyond the clock, for a command that outlives it.
        let slow = answers_after(Duration::from_millis(50));
        switch.end();
        let svc = RelaxedTimeout::new(
            slow,
            Duration::from_millis(10),
            Duration::MAX,
            switch.clone(),
        );
        let call = tokio::spawn(svc.oneshot(cmd!("GET", "k")));
        switch.relax_for(Duration::from_secs(60));
        assert!(call.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_tokios_clock_so_paused_time_tests_see_timeouts() {
        use tower::ServiceExt;
        // Apps test their timeouts with Tokio's paused clock: a deadline on another clock
        // would never pass there.
        let stuck = answers_after(Duration::from_secs(3600));
        let svc = RelaxedTimeout::new(
            stuck,
            Duration::from_millis(100),
            Duration::from_secs(1),
            RelaxationSwitch::new(),
        );
        let started = tokio::time::Instant::now();
        let err = svc.oneshot(cmd!("GET", "k")).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { relaxed: false, .. }),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_expired_relaxation_is_not_in_force() {
        let switch = RelaxationSwitch::new();
        switch.relax_for(Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = svc(100, 1000, switch);
        assert!(!s.budget(&cmd!("GET", "k"), Instant::now()).1);
    }
}
