//! The task that owns a connection's socket.
//!
//! One task per connection does all the I/O in a single poll loop, with no lock and no second
//! task: it takes every command waiting in the queue and encodes them into one write buffer
//! (commands that arrive while a write is in flight go out together in the next write), writes,
//! reads, splits frames, and hands each reply to the oldest command still owed one (RESP replies
//! come back in the order commands were sent). Push frames never take a command's place: they go
//! to the push subscribers, except the confirmations of a `SUBSCRIBE`-family command, which are
//! that command's answer.
//!
//! Three habits keep the connection fast. After answering callers, the task lets them run
//! before it does anything else, so their next commands share one write and go out before the
//! task spends a system call finding the socket empty. It answers a large read in slices
//! ([`REPLY_SLICE`] replies at a time, at most [`MAX_SLICES`] slices), writing the commands the
//! first slice's callers send before it answers the next: the server then works on those while
//! the client answers the rest, instead of the two taking turns on one big batch. And when
//! callers were answered since the last write, it waits for them once more before writing, so
//! that a burst of next commands is not cut into one write each.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp3::types::BytesFrame;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::command::{Command, SubscriptionKind};
use crate::connection::codec::{FrameScanner, Limits};
use crate::connection::expiry::Expiry;
use crate::connection::liveness::{Liveness, Owing, Reset, Verdict, Watchdog};
use crate::connection::{Shared, Subscriptions};
use crate::error::Error;
use crate::reply::{self, Reply};
use crate::request::Batch;

/// Work for the I/O task: a command, or a batch (a pipeline or a transaction) written as one.
/// The answer goes back on `reply`.
pub enum Job {
    /// One command.
    One {
        /// The command.
        command: Command,
        /// Where its answer goes.
        reply: oneshot::Sender<Answer>,
        /// Written right after an `ASKING` of its own, whose reply is dropped (a cluster's
        /// subscription on a node importing the slot; see `crate::request`'s
        /// `AskingSubscription`).
        asking: bool,
        /// The deadline the I/O task keeps for it, if its sender handed one over.
        expiry: Option<Expiry>,
    },
    /// Commands written together, answered together.
    Batch {
        /// The commands.
        batch: Batch,
        /// Where the frames of their replies go, in order.
        reply: oneshot::Sender<BatchAnswer>,
        /// The deadline the I/O task keeps for it, if its sender handed one over.
        expiry: Option<Expiry>,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::One { command, .. } => f.debug_tuple("Job::One").field(command).finish(),
            Job::Batch { batch, .. } => f.debug_tuple("Job::Batch").field(batch).finish(),
        }
    }
}

impl Job {
    /// The deadline the I/O task is to keep for this job.
    #[inline]
    pub(crate) fn set_expiry(&mut self, deadline: Expiry) {
        match self {
            Job::One { expiry, .. } | Job::Batch { expiry, .. } => *expiry = Some(deadline),
        }
    }

    fn expiry(&self) -> Option<&Expiry> {
        match self {
            Job::One { expiry, .. } | Job::Batch { expiry, .. } => expiry.as_ref(),
        }
    }

    fn expiry_mut(&mut self) -> &mut Option<Expiry> {
        match self {
            Job::One { expiry, .. } | Job::Batch { expiry, .. } => expiry,
        }
    }

    /// Answers the job with a timeout: it was never written, so nothing ran, and it is not
    /// given back to be sent again (its caller's time is up).
    fn time_out(self, error: Error) {
        match self {
            Job::One { reply, .. } => {
                let _ = reply.send(Err(Failed::from(error)));
            }
            Job::Batch { reply, .. } => {
                let _ = reply.send(Err(Failed::from(error)));
            }
        }
    }

    /// Answers the job with `error` without sending it; the request comes back with it.
    pub(crate) fn fail(self, error: Error) {
        match self {
            Job::One { command, reply, .. } => {
                let _ = reply.send(Err(Failed {
                    error,
                    command: Some(command),
                }));
            }
            Job::Batch { batch, reply, .. } => {
                let _ = reply.send(Err(Failed {
                    error,
                    command: Some(batch),
                }));
            }
        }
    }
}

/// A command's answer. A command that failed because the connection ended comes back with it,
/// so a layer above can send it again elsewhere without having kept a copy.
pub(crate) type Answer = Result<Reply, Failed>;

/// A batch's answer: the frames of its replies, in order, or the batch back with the error.
pub(crate) type BatchAnswer = Result<Vec<BytesFrame>, Failed<Batch>>;

/// A failed request and, when the connection ended under it, the request itself.
#[derive(Debug)]
pub struct Failed<C = Command> {
    pub(crate) error: Error,
    pub(crate) command: Option<C>,
}

impl<C> From<Error> for Failed<C> {
    fn from(error: Error) -> Self {
        Failed {
            error,
            command: None,
        }
    }
}

impl<C> Failed<C> {
    /// The same failure, with the request it carries turned into another.
    pub(crate) fn map<D>(self, f: impl FnOnce(C) -> D) -> Failed<D> {
        Failed {
            error: self.error,
            command: self.command.map(f),
        }
    }
}

/// A request written (or being written) whose answer has not come back yet.
struct Pending {
    owed: Owed,
    /// Its deadline, until it passes (the caller is then answered with a timeout, and the
    /// reply, when it comes, is read and dropped).
    expiry: Option<Expiry>,
    /// Where the request's bytes start and end in the stream of everything encoded; it has
    /// reached the socket once `written` passes `end`.
    start: u64,
    end: u64,
}

enum Owed {
    One {
        command: Command,
        reply: oneshot::Sender<Answer>,
        expect: Expect,
        /// The reply of the `ASKING` written before it is still to come.
        asking: bool,
    },
    Batch {
        batch: Batch,
        reply: oneshot::Sender<BatchAnswer>,
        /// Frames still to come, and those come so far.
        left: usize,
        got: Vec<BytesFrame>,
    },
}

impl Owed {
    /// Back to the job it was, to be failed like one never written.
    fn into_job(self) -> Job {
        match self {
            Owed::One {
                command,
                reply,
                asking,
                ..
            } => Job::One {
                command,
                reply,
                asking,
                expiry: None,
            },
            Owed::Batch { batch, reply, .. } => Job::Batch {
                batch,
                reply,
                expiry: None,
            },
        }
    }

    /// Answers the caller with a timeout now; the reply, when it comes, goes nowhere.
    fn time_out(&mut self, error: Error) {
        match self {
            Owed::One { reply, .. } => {
                let (gone, _) = oneshot::channel();
                let _ = std::mem::replace(reply, gone).send(Err(Failed::from(error)));
            }
            Owed::Batch { reply, .. } => {
                let (gone, _) = oneshot::channel();
                let _ = std::mem::replace(reply, gone).send(Err(Failed::from(error)));
            }
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Owed::One { reply, .. } => reply.is_closed(),
            Owed::Batch { reply, .. } => reply.is_closed(),
        }
    }
}

enum Expect {
    /// One reply frame.
    Reply,
    /// Confirmations pushed by the server for a subscription change.
    Confirmations {
        kind: SubscriptionKind,
        /// None until the first confirmation comes, for an unsubscribe from "all".
        remaining: Option<usize>,
        got: Vec<BytesFrame>,
    },
}

// The most replies answered before the callers they woke get to send their next commands.
// With many callers, answering a large read in slices keeps the server working on the first
// slice's next commands while the client answers the rest, where answering it all at once
// makes client and server take turns. `cargo bench --bench throughput` (2 cores, 100 tasks on
// one connection, INCR): 16 about 1.55M ops/s, 8 about 1.2M, 32 and unsliced about 0.76M.
const REPLY_SLICE: usize = 16;
// The most slices one read is answered in; the rest of a larger burst is answered at once.
const MAX_SLICES: usize = 8;
// The most pushes handed out before the push subscribers get to run: a burst of Pub/Sub
// messages is not pushed into their bounded queues faster than they can be read (a reader takes
// at most Tokio's cooperative budget, 128, per turn; 10,000 messages in one burst through the
// chaos suite lost thousands at 512 and none at 64).
const PUSH_SLICE: usize = 64;

// Stop taking commands once this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

pub(crate) struct IoTask<S> {
    stream: S,
    // Commands taken off the shared queue and not yet encoded.
    taken: VecDeque<Job>,
    requests_closed: bool,
    draining: bool,
    pending: VecDeque<Pending>,
    max_in_flight: usize,
    wbuf: BytesMut,
    encoded: u64,
    written: u64,
    need_flush: bool,
    // Replies handed out since the last write, and whether this write already waited once for
    // the callers they woke.
    answered: usize,
    yielded: bool,
    more_frames: bool,
    // Slices of the current read answered so far.
    slices: usize,
    rbuf: BytesMut,
    scanner: FrameScanner,
    shared: Arc<Shared>,
    subscriptions: Subscriptions,
    // Channels the connection's own setup subscribed to (`AzureRedisEvents`): a caller's
    // `UNSUBSCRIBE` with no channel leaves them.
    internal: Vec<Bytes>,
    // The health rule (see `liveness`), and how many reads returned bytes.
    watchdog: Option<Watchdog>,
    reads: u64,
    // Pushes handed out since the task last let others run.
    pushed: usize,
    // Closes the socket with a reset when the connection fails.
    reset: Reset,
    // While requests with a deadline are owed: the next look at their deadlines, and how
    // often to look (see `expiry`).
    expiry_timer: Option<Pin<Box<Sleep>>>,
    expiry_floor_ms: u32,
}

impl<S> IoTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        stream: S,
        shared: Arc<Shared>,
        limits: Limits,
        max_in_flight: usize,
        internal: Vec<Bytes>,
        liveness: &Liveness,
        reset: Reset,
    ) -> Self {
        IoTask {
            stream,
            taken: VecDeque::new(),
            requests_closed: false,
            draining: false,
            pending: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            wbuf: BytesMut::with_capacity(8 * 1024),
            encoded: 0,
            written: 0,
            need_flush: false,
            answered: 0,
            yielded: false,
            more_frames: false,
            slices: 0,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            scanner: FrameScanner::new(limits),
            shared,
            subscriptions: Subscriptions::default(),
            internal,
            watchdog: Watchdog::new(liveness),
            reads: 0,
            pushed: 0,
            reset,
            expiry_timer: None,
            expiry_floor_ms: u32::MAX,
        }
    }

    /// Runs until every handle is gone and every answer delivered, or the connection fails.
    pub(crate) async fn run(mut self) {
        let outcome = poll_fn(|cx| self.poll_io(cx)).await;
        let reason: Arc<str> = match &outcome {
            Ok(()) if self.draining => "the connection was drained and closed by the client".into(),
            Ok(()) => "the connection was closed by the client".into(),
            Err(Error::ConnectionLost { reason }) => reason.clone(),
            Err(e) => e.to_string().into(),
        };
        match &outcome {
            Ok(()) => tracing::debug!(endpoint = %self.shared.endpoint, "connection closed"),
            Err(e) => {
                tracing::debug!(endpoint = %self.shared.endpoint, error = %e, "connection failed")
            }
        }
        self.shared.mark_closed(reason.clone());
        self.shared.intake.close();
        self.shared.pushes.close();
        let written = self.written;
        for p in self.pending.drain(..) {
            // Whether the server may have run any of it: a command runs only once all of it has
            // arrived; some of a pipeline's commands may have while the rest was unwritten; a
            // transaction runs only at its EXEC, its last bytes.
            let may_have_run = match &p.owed {
                Owed::Batch { batch, .. } if !batch.atomic => p.start < written,
                _ => p.end <= written,
            };
            let err = if may_have_run {
                match &outcome {
                    Err(Error::Protocol { .. }) => outcome.clone().err(),
                    _ => None,
                }
                .unwrap_or(Error::ConnectionLost {
                    reason: reason.clone(),
                })
            } else {
                Error::NotSent {
                    reason: reason.clone(),
                }
            };
            p.owed.into_job().fail(err);
        }
        self.shared.set_in_flight(0);
        // Close the socket now, then answer whatever is still queued or sent by a handle that
        // had reserved a slot. A failed connection is reset: what it had not delivered must not
        // reach the server later, after the callers were told it may have run.
        if outcome.is_err() {
            self.reset.arm();
        }
        drop(self.stream);
        drop(self.reset);
        let unsent = self.taken.drain(..).chain(self.shared.intake.take_all());
        for job in unsent {
            job.fail(Error::NotSent {
                reason: reason.clone(),
            });
        }
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Once per wake, not per turn of the loop: the timer wakes the task when it is due.
        self.poll_expiries(cx);
        loop {
            let mut progress = false;
            if self.shared.intake.is_aborted() {
                return Poll::Ready(Err(io_lost(
                    "closed by the client while the server still owed a reply (its caller gave up)",
                )));
            }

            // Take every waiting command there is room for, in one go, and encode them.
            let room = self.max_in_flight.saturating_sub(self.pending.len());
            let has_room = room > 0 && self.wbuf.len() < WRITE_HIGH_WATER;
            if !has_room && self.expiry_timer.is_none() && self.shared.relaxation.get().is_some() {
                // Commands of a stack that hands deadlines over wait unwritten (here or in the
                // queue) while nothing with a deadline is owed to arm the timer: their
                // deadlines are looked at all the same.
                self.arm_expiry(u32::MAX);
            }
            if self.taken.is_empty() && !self.requests_closed && has_room {
                match self.shared.intake.poll_take(cx, room, &mut self.taken) {
                    Poll::Ready(true) => progress = true,
                    Poll::Ready(false) => {
                        // Every handle is gone, or the connection was drained: the commands
                        // taken so far are still answered, new ones fail with `NotSent`.
                        self.requests_closed = true;
                        self.draining = self.shared.intake.is_closed();
                    }
                    Poll::Pending => {}
                }
            }
            while self.wbuf.len() < WRITE_HIGH_WATER && self.pending.len() < self.max_in_flight {
                let Some(job) = self.taken.pop_front() else {
                    break;
                };
                self.enqueue(job);
            }

            // Several callers were just answered and will send their next commands at once:
            // let them run before writing, so one write carries all of them instead of one
            // write each. A lone caller never waits for this.
            if !self.wbuf.is_empty() && !self.yielded && self.answered >= 2 {
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !self.wbuf.is_empty() {
                self.answered = 0;
                self.yielded = false;
                match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io_lost("the socket accepted no more bytes")))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.wbuf.advance(n);
                        self.written += n as u64;
                        self.need_flush = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io_lost(&e.to_string()))),
                    Poll::Pending => {}
                }
            }
            if self.need_flush && self.wbuf.is_empty() {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.need_flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io_lost(&e.to_string()))),
                    Poll::Pending => {}
                }
            }

            // Read only once everything read so far is answered.
            if !self.more_frames {
                if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                    self.rbuf.reserve(READ_CHUNK);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf)
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io_lost("the server closed the connection")))
                    }
                    Poll::Ready(Ok(_)) => {
                        self.reads += 1;
                        self.more_frames = true;
                        self.slices = 0;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io_lost(&e.to_string()))),
                    Poll::Pending => {}
                }
            }
            if self.more_frames {
                let before = self.answered;
                // A burst is cut in a bounded number of slices: each slice waits for the
                // callers ahead of the I/O task on its worker, which a busy runtime makes long.
                let limit = if self.slices < MAX_SLICES {
                    REPLY_SLICE
                } else {
                    usize::MAX
                };
                self.slices += 1;
                self.more_frames = self.process_frames(limit)?;
                progress = true;
                if self.answered > before || self.pushed >= PUSH_SLICE {
                    self.pushed = 0;
                    // Callers were just answered: let them run first. The next poll writes
                    // their next commands, then answers the next slice if more replies wait,
                    // or reads; the read that finds the socket empty happens after the write,
                    // not between a reply and the caller's next command.
                    self.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }

            if self.requests_closed && self.wbuf.is_empty() && self.taken.is_empty() {
                // Every handle is gone: finish once nobody is owed an answer any more.
                if self.pending.iter().all(|p| p.owed.is_closed()) {
                    return Poll::Ready(Ok(()));
                }
            }
            if !progress {
                // The health timer: polled only when there is nothing else to do (a busy
                // connection is reading anyway), which also registers it for the next tick.
                if let Some(dog) = self.watchdog.as_mut() {
                    let (pending, written) = (&self.pending, self.written);
                    if let Poll::Ready(verdict) =
                        dog.poll(cx, self.reads, || owing(pending, written))
                    {
                        match verdict {
                            Verdict::Fine => {}
                            // A dedicated connection may be inside its owner's MULTI (a PING
                            // would be queued into the transaction) or before a one-shot
                            // `CLIENT CACHING`: it is never probed. Silent with replies owed,
                            // it is taken for dead a period later all the same.
                            Verdict::Probe
                                if self.shared.dedicated.load(std::sync::atomic::Ordering::Relaxed) =>
                            {
                                if self.pending.is_empty() {
                                    dog.cancel_probe();
                                }
                            }
                            Verdict::Probe => self.probe(),
                            Verdict::Dead(silent) => {
                                return Poll::Ready(Err(io_lost(&format!(
                                    "the server sent nothing for {silent:?} with replies owed, \
                                     not even the answer to a PING: the connection is taken for dead"
                                ))))
                            }
                        }
                        continue;
                    }
                }
                if self.requests_closed {
                    // Taking no more commands, still owing replies: an abort must still wake us
                    // (checked after registering, so one that came in between is not missed).
                    self.shared.intake.register_io_waker(cx.waker());
                    if self.shared.intake.is_aborted() {
                        cx.waker().wake_by_ref();
                    }
                }
                // A deadline timer armed during this poll must be registered before the task
                // sleeps.
                self.poll_expiries(cx);
                return Poll::Pending;
            }
        }
    }

    /// Writes a `PING` nobody waits for: its answer, or any other byte, shows the peer alive.
    fn probe(&mut self) {
        tracing::debug!(endpoint = %self.shared.endpoint, "nothing read for a while: probing with PING");
        let (reply, _) = oneshot::channel();
        let start = self.encoded;
        let before = self.wbuf.len();
        let command = Command::new("PING");
        command.encode(&mut self.wbuf);
        self.encoded += (self.wbuf.len() - before) as u64;
        self.pending.push_back(Pending {
            owed: Owed::One {
                command,
                reply,
                expect: Expect::Reply,
                asking: false,
            },
            expiry: None,
            start,
            end: self.encoded,
        });
        self.shared.set_in_flight(self.pending.len());
    }

    fn enqueue(&mut self, job: Job) {
        if let Some(dog) = self.watchdog.as_mut() {
            dog.on_request();
        }
        let start = self.encoded;
        let before = self.wbuf.len();
        let owed = match job {
            Job::One {
                command,
                reply,
                asking,
                expiry,
            } => {
                if let Some(e) = &expiry {
                    self.keep_expiry(e);
                }
                let command = match self.keep_internal(command) {
                    Ok(command) => command,
                    Err(confirmation) => {
                        // Nothing of the caller's to unsubscribe: answered without a write.
                        let _ = reply.send(Ok(confirmation));
                        return;
                    }
                };
                let expect = match command.subscription() {
                    Some(sub) => Expect::Confirmations {
                        kind: sub.kind,
                        remaining: (sub.channels > 0).then_some(sub.channels),
                        got: Vec::new(),
                    },
                    None => Expect::Reply,
                };
                if asking {
                    // Contiguous with the command: nothing of another caller's falls between.
                    self.wbuf.extend_from_slice(crate::request::ASKING);
                }
                command.encode(&mut self.wbuf);
                (
                    Owed::One {
                        command,
                        reply,
                        expect,
                        asking,
                    },
                    expiry,
                )
            }
            Job::Batch {
                batch,
                reply,
                expiry,
            } => {
                if let Some(e) = &expiry {
                    self.keep_expiry(e);
                }
                batch.encode(&mut self.wbuf);
                let left = batch.frames();
                (
                    Owed::Batch {
                        got: Vec::with_capacity(left),
                        batch,
                        reply,
                        left,
                    },
                    expiry,
                )
            }
        };
        let (owed, expiry) = owed;
        self.encoded += (self.wbuf.len() - before) as u64;
        self.pending.push_back(Pending {
            owed,
            expiry,
            start,
            end: self.encoded,
        });
        self.shared.set_in_flight(self.pending.len());
    }

    /// A request with a deadline was taken: the deadlines are looked at every tick from now
    /// on, at the tick the shortest budget among them wants.
    #[inline]
    fn keep_expiry(&mut self, expiry: &Expiry) {
        if self.expiry_timer.is_none() || expiry.budget_ms() < self.expiry_floor_ms {
            self.arm_expiry(expiry.budget_ms());
        }
    }

    #[cold]
    fn arm_expiry(&mut self, budget_ms: u32) {
        self.expiry_floor_ms = self.expiry_floor_ms.min(budget_ms);
        let at = crate::clock::deadline(Instant::now(), self.expiry_tick());
        match &mut self.expiry_timer {
            Some(timer) if timer.deadline() <= at => {}
            Some(timer) => timer.as_mut().reset(at),
            None => self.expiry_timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// How often the deadlines are looked at: a twentieth of the shortest budget among them.
    fn expiry_tick(&self) -> Duration {
        super::expiry::tick_for(Duration::from_millis(u64::from(self.expiry_floor_ms)))
    }

    /// When the tick is due: answers every request whose deadline has passed with a timeout
    /// (those written keep their place until their reply comes and is dropped; those not
    /// written yet are taken out and never go), then sets the next tick, or stops ticking when
    /// no deadline is left.
    fn poll_expiries(&mut self, cx: &mut Context<'_>) {
        let Some(timer) = self.expiry_timer.as_mut() else {
            return;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return;
        }
        let now = Instant::now();
        let relaxation = self.shared.relaxation.get();
        let relaxed = || relaxation.is_some_and(|r| r.relaxed_at(now.into_std()));
        // Whether any deadline is still to come.
        let left = std::cell::Cell::new(false);
        for p in &mut self.pending {
            let Some(expiry) = p.expiry.as_mut() else {
                continue;
            };
            match expiry.check(now, relaxed) {
                None => left.set(true),
                Some(error) => {
                    p.expiry = None;
                    p.owed.time_out(error);
                }
            }
        }
        // Not written yet (the socket is not taking more): out of the queue, never sent.
        let mut check = |job: &mut Job| {
            let error = job.expiry_mut().as_mut()?.check(now, relaxed);
            if error.is_none() {
                left.set(true);
            }
            error
        };
        let mut timed_out = take_expired(&mut self.taken, &mut check);
        timed_out.extend(self.shared.intake.take_expired(&mut check));
        for (job, error) in timed_out {
            job.time_out(error);
        }
        if left.get() {
            let next = crate::clock::deadline(now, self.expiry_tick());
            if let Some(timer) = self.expiry_timer.as_mut() {
                timer.as_mut().reset(next);
                // Registered for the next tick.
                let _ = timer.as_mut().poll(cx);
            }
        } else {
            self.expiry_timer = None;
            self.expiry_floor_ms = u32::MAX;
        }
    }

    /// The channels the connection's own setup subscribed to (`AzureRedisEvents`) are not a
    /// caller's to remove. A caller's `UNSUBSCRIBE` with no channel becomes an `UNSUBSCRIBE` of
    /// every other channel; one that names them leaves them out. When nothing of the caller's is
    /// left to unsubscribe, it is answered at once with the confirmations the server would send,
    /// without a write.
    fn keep_internal(&self, command: Command) -> Result<Command, Reply> {
        let Some(sub) = command
            .subscription()
            .filter(|s| s.kind == SubscriptionKind::Unsubscribe)
        else {
            return Ok(command);
        };
        let kept = |ch: &[u8]| self.internal.iter().any(|i| i.as_ref() == ch);
        let held = self.internal.iter().any(|i| {
            self.subscriptions
                .contains(SubscriptionKind::Unsubscribe, i)
        });
        if !held {
            return Ok(command);
        }
        let left = self.subscriptions.len(SubscriptionKind::Subscribe) as i64;
        if sub.channels == 0 {
            let others: Vec<&Bytes> = self.subscriptions.channels().filter(|c| !kept(c)).collect();
            if others.is_empty() {
                return Err(unsubscribed(&[None], left));
            }
            return Ok(Command::new(command.name_bytes()).args_from(others));
        }
        let named: Vec<&[u8]> = command.args().skip(1).collect();
        if !named.iter().any(|c| kept(c)) {
            return Ok(command);
        }
        let others: Vec<&[u8]> = named.iter().copied().filter(|c| !kept(c)).collect();
        if others.is_empty() {
            let names: Vec<Option<&[u8]>> = named.into_iter().map(Some).collect();
            return Err(unsubscribed(&names, left));
        }
        Ok(Command::new(command.name_bytes()).args_from(others))
    }

    /// Answers the replies read so far, at most `limit` of them; whether complete frames are
    /// left in the buffer.
    fn process_frames(&mut self, limit: usize) -> Result<bool, Error> {
        let mut n = 0;
        while let Some(frame) = self.scanner.next_frame(&mut self.rbuf)? {
            if let BytesFrame::Push { data, .. } = &frame {
                if self.confirms_front(data) {
                    self.take_confirmation(frame);
                } else {
                    self.track_subscription(data);
                    if let Some(dog) = self.watchdog.as_mut() {
                        if let Some(start) = data.first().and_then(maintenance_push) {
                            dog.maintenance(start);
                        }
                    }
                    self.publish_push(frame);
                }
                self.pushed += 1;
                if self.pushed >= PUSH_SLICE {
                    return Ok(true);
                }
                continue;
            }
            n += 1;
            match self.pending.front_mut().map(|p| &mut p.owed) {
                None => {
                    return Err(Error::protocol(format!(
                        "the server sent a reply nobody asked for: {}",
                        crate::frame::preview(&frame)
                    )))
                }
                Some(Owed::One { asking, .. }) if *asking => {
                    // `ASKING`'s own reply, whatever it says: the command's follows.
                    *asking = false;
                    if n >= limit {
                        return Ok(true);
                    }
                    continue;
                }
                Some(Owed::Batch { left, got, .. }) if *left > 1 => {
                    // More of this batch's replies to come.
                    *left -= 1;
                    got.push(frame);
                    if n >= limit {
                        return Ok(true);
                    }
                    continue;
                }
                Some(_) => {}
            }
            let Some(p) = self.pending.pop_front() else {
                continue;
            };
            self.shared.set_in_flight(self.pending.len());
            self.answered += 1;
            match p.owed {
                Owed::One { reply, command, .. } => {
                    let answer = match reply::from_frame(frame) {
                        Ok(r) => Ok(r),
                        // Refused for now and certainly not run: the command comes back, so a
                        // layer above may send it again shortly.
                        Err(Error::Server(e)) if e.is_transient_refusal() => Err(Failed {
                            error: Error::Server(e),
                            command: Some(command),
                        }),
                        Err(e) => Err(Failed::from(e)),
                    };
                    let _ = reply.send(answer);
                }
                Owed::Batch { reply, mut got, .. } => {
                    got.push(frame);
                    let _ = reply.send(Ok(got));
                }
            }
            if n >= limit {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether this push confirms the subscription change at the front of the queue.
    fn confirms_front(&self, data: &[BytesFrame]) -> bool {
        let Some(Pending {
            owed:
                Owed::One {
                    expect: Expect::Confirmations { kind, .. },
                    asking: false,
                    ..
                },
            ..
        }) = self.pending.front()
        else {
            return false;
        };
        data.first()
            .and_then(crate::frame::text)
            .is_some_and(|name| name.eq_ignore_ascii_case(kind.push_name().as_bytes()))
    }

    fn take_confirmation(&mut self, frame: BytesFrame) {
        if let BytesFrame::Push { data, .. } = &frame {
            self.track_subscription(data);
        }
        let Some(Pending {
            owed:
                Owed::One {
                    expect:
                        Expect::Confirmations {
                            kind,
                            remaining,
                            got,
                        },
                    ..
                },
            ..
        }) = self.pending.front_mut()
        else {
            return;
        };
        if remaining.is_none() {
            // "Unsubscribe from all": one confirmation per subscription that existed before this
            // one was processed (the sets were just updated for it), or one if there were none.
            let before = self.subscriptions.len(*kind) + 1;
            *remaining = Some(before.max(1));
        }
        got.push(frame.clone());
        let left = remaining.map_or(0, |r| r.saturating_sub(1));
        *remaining = Some(left);
        // Subscribers see confirmations too: a Pub/Sub listener learns what it is subscribed to.
        self.publish_push(frame);
        if left == 0 {
            if let Some(p) = self.pending.pop_front() {
                self.shared.set_in_flight(self.pending.len());
                if let Owed::One {
                    reply,
                    expect: Expect::Confirmations { got, .. },
                    ..
                } = p.owed
                {
                    let _ = reply.send(Ok(Reply::from(BytesFrame::Array {
                        data: got,
                        attributes: None,
                    })));
                }
            }
        }
    }

    /// Keeps the sets of subscribed channels and patterns current from confirmations.
    fn track_subscription(&mut self, data: &[BytesFrame]) {
        let (Some(name), Some(channel)) = (data.first().and_then(crate::frame::text), data.get(1))
        else {
            return;
        };
        let Some(kind) = SubscriptionKind::from_command(name) else {
            return;
        };
        if let Some(channel) = crate::frame::text(channel) {
            self.subscriptions.apply(kind, channel);
        }
    }

    fn publish_push(&self, frame: BytesFrame) {
        self.shared.pushes.publish(frame);
    }
}

/// The answer to an `UNSUBSCRIBE` that leaves the subscriptions as they are: one confirmation
/// per channel named (a null channel for none), each with the `count` still subscribed.
fn unsubscribed(channels: &[Option<&[u8]>], count: i64) -> Reply {
    let confirmation = |channel: &Option<&[u8]>| BytesFrame::Push {
        data: vec![
            BytesFrame::BlobString {
                data: Bytes::from_static(b"unsubscribe"),
                attributes: None,
            },
            match channel {
                Some(c) => BytesFrame::BlobString {
                    data: Bytes::copy_from_slice(c),
                    attributes: None,
                },
                None => BytesFrame::Null,
            },
            BytesFrame::Number {
                data: count,
                attributes: None,
            },
        ],
        attributes: None,
    };
    Reply::from(BytesFrame::Array {
        data: channels.iter().map(confirmation).collect(),
        attributes: None,
    })
}

/// Takes out of `queue` the jobs `expired` answers with an error, oldest first, keeping the
/// order of the rest.
pub(crate) fn take_expired(
    queue: &mut VecDeque<Job>,
    expired: &mut impl FnMut(&mut Job) -> Option<Error>,
) -> Vec<(Job, Error)> {
    let mut out = Vec::new();
    if queue.iter().all(|j| j.expiry().is_none()) {
        return out;
    }
    let mut kept = VecDeque::with_capacity(queue.len());
    for mut job in queue.drain(..) {
        match expired(&mut job) {
            Some(error) => out.push((job, error)),
            None => kept.push_back(job),
        }
    }
    *queue = kept;
    out
}

/// What the I/O task owes, for the health rule. While the oldest request is still being
/// written (a large command on its way) the server cannot answer yet: that silence is not
/// counted, as for a blocking command. (Writes alone are no sign of life: a blackholed socket
/// takes them into the kernel's buffer.)
fn owing(pending: &VecDeque<Pending>, written: u64) -> Owing {
    let Some(oldest) = pending.front() else {
        return Owing::Nothing;
    };
    if oldest.end > written {
        return Owing::Blocking;
    }
    let blocking = pending.iter().any(|p| match &p.owed {
        Owed::One { command, .. } => command.blocking().is_some(),
        Owed::Batch { batch, .. } => batch.commands.iter().any(|c| c.blocking().is_some()),
    });
    if blocking {
        Owing::Blocking
    } else {
        Owing::Replies
    }
}

/// Whether a push's name starts maintenance on this connection (`Some(true)`), ends it
/// (`Some(false)`), or is something else.
fn maintenance_push(name: &BytesFrame) -> Option<bool> {
    let kind = crate::maintenance::NotificationKind::from_name(crate::frame::text(name)?)?;
    Some(!kind.is_end())
}

fn io_lost(why: &str) -> Error {
    Error::ConnectionLost { reason: why.into() }
}
