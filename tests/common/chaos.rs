//! The chaos suite's harness: load from many tasks that check every reply they get, Pub/Sub
//! subscribers that check every message they are owed, and the [`Tally`] of one case.
//!
//! What is checked, for every case:
//! - every command is answered exactly once, a result or an error, within [`ANSWER_WAIT`];
//! - each task reads back only its own values: it SETs its own key to a value no other command
//!   ever writes and GETs it back, so a reply meant for another command shows as a wrong value;
//! - its counter holds every acknowledged `INCR`, and more only up to the number of `INCR`s
//!   whose error said they may have run;
//! - a subscriber gets every message owed to it (published after its `SUBSCRIBE` was
//!   acknowledged and while it had a connection that could carry it), in order, and none
//!   published after its `UNSUBSCRIBE` was acknowledged; across a handoff both connections are
//!   subscribed for a moment, so a message may come twice (delivery is at least once): such
//!   repeats are counted in their own column, not failed;
//! - nothing panics, not even a background task, and the process's memory stays bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use redis_handoff::connection::Pushes;
use redis_handoff::frame::BytesFrame;
use redis_handoff::{cmd, Command, Connection, Error, Pipeline, Reply};
use tower::{Service, ServiceExt};

/// How long any one command may take before it counts as never answered: only a hang gets
/// there.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How much the process's resident memory may grow over one case.
pub const RSS_BOUND_KIB: i64 = 256 * 1024;

/// How long a load task waits after a round with a failure.
const FAILURE_BACKOFF: Duration = Duration::from_millis(10);

/// How long before a fault a message must have been acknowledged to be owed across it: a
/// message on its way to the client when a connection is lost without notice is lost with it.
const IN_TRANSIT: Duration = Duration::from_millis(200);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the load and the subscribers send through: the recommended stack, a pool, any
/// service of the crate.
pub trait Client: Clone + Send + Sync + 'static {
    /// Sends one command.
    fn command(&self, command: Command) -> BoxFuture<Result<Reply, Error>>;
    /// Sends one pipeline.
    fn pipeline(&self, pipeline: Pipeline) -> BoxFuture<Result<Vec<Result<Reply, Error>>, Error>>;
}

impl<S> Client for S
where
    S: Service<Command, Response = Reply, Error = Error>
        + Service<Pipeline, Response = Vec<Result<Reply, Error>>, Error = Error>
        + Clone
        + Send
        + Sync
        + 'static,
    <S as Service<Command>>::Future: Send,
    <S as Service<Pipeline>>::Future: Send,
{
    fn command(&self, command: Command) -> BoxFuture<Result<Reply, Error>> {
        Box::pin(ServiceExt::<Command>::oneshot(self.clone(), command))
    }

    fn pipeline(&self, pipeline: Pipeline) -> BoxFuture<Result<Vec<Result<Reply, Error>>, Error>> {
        Box::pin(ServiceExt::<Pipeline>::oneshot(self.clone(), pipeline))
    }
}

/// The variant of an error, as the table shows it: `Timeout`, `ConnectionLost`, ...
pub fn kind(e: &Error) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

async fn answered<T>(f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(ANSWER_WAIT, f).await.ok()
}

/// Polls `cond` every millisecond for at most `within`; whether it came true.
pub async fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Sleeps `ms` milliseconds.
pub async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ===== load =====

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// How many tasks, each with its own keys.
    pub tasks: usize,
    /// 0: each round is `SET`, `GET`, `INCR`, one command at a time. n > 0: each round is one
    /// pipeline of `SET`, n `INCR`s and `GET`.
    pub pipeline: usize,
    /// The pause after each round.
    pub pause: Duration,
}

impl LoadSpec {
    /// `tasks` tasks sending one command at a time, a millisecond between rounds.
    pub fn commands(tasks: usize) -> Self {
        LoadSpec {
            tasks,
            pipeline: 0,
            pause: Duration::from_millis(1),
        }
    }
}

/// What one task saw.
#[derive(Debug, Default)]
pub struct TaskOutcome {
    /// Its counter's key.
    pub counter: String,
    /// Commands sent (a pipeline counts its commands).
    pub sent: u64,
    /// Commands answered with the reply they should have.
    pub ok: u64,
    /// Commands failed, by error kind.
    pub failed: BTreeMap<String, u64>,
    /// Commands not answered within [`ANSWER_WAIT`].
    pub hung: u64,
    /// Replies that cannot be this command's: a value this task never wrote, a wrong type, a
    /// count that does not fit.
    pub misrouted: u64,
    /// `INCR`s acknowledged.
    pub incr_acked: u64,
    /// `INCR`s that failed saying they may have run (or never answered).
    pub incr_may_have_run: u64,
    /// The first few problems, described.
    pub problems: Vec<String>,
}

/// The state of one task's keys, and what it saw.
struct Task {
    key: String,
    name: String,
    /// The value of the last acknowledged SET.
    acked: Option<String>,
    /// Values of SETs that may have run without an acknowledgement: one may land late.
    ambiguous: BTreeSet<String>,
    out: TaskOutcome,
}

impl Task {
    fn problem(&mut self, what: String) {
        if self.out.problems.len() < 5 {
            self.out.problems.push(format!("{}: {what}", self.name));
        }
    }

    fn failure(&mut self, e: &Error, commands: u64) {
        *self.out.failed.entry(kind(e)).or_default() += commands;
    }

    fn set(&mut self, answer: Option<Result<Reply, Error>>, value: &str) {
        match answer {
            None => {
                self.out.hung += 1;
                self.ambiguous.insert(value.to_string());
                self.problem(format!("SET {value} never answered"));
            }
            Some(Ok(r)) if r.is_ok() => {
                self.out.ok += 1;
                self.acked = Some(value.to_string());
            }
            Some(Ok(r)) => {
                self.out.misrouted += 1;
                self.ambiguous.insert(value.to_string());
                self.problem(format!("SET {value} answered {:?}", r.frame()));
            }
            Some(Err(e)) => {
                self.failure(&e, 1);
                if !e.certainly_not_executed() {
                    self.ambiguous.insert(value.to_string());
                }
            }
        }
    }

    fn get(&mut self, answer: Option<Result<Reply, Error>>) {
        match answer {
            None => {
                self.out.hung += 1;
                self.problem("GET never answered".into());
            }
            Some(Ok(r)) => {
                let fits = match r.frame() {
                    BytesFrame::Null => self.acked.is_none(),
                    _ => r.as_str().is_some_and(|v| {
                        self.acked.as_deref() == Some(v) || self.ambiguous.contains(v)
                    }),
                };
                if fits {
                    self.out.ok += 1;
                } else {
                    self.out.misrouted += 1;
                    let acked = self.acked.clone();
                    self.problem(format!(
                        "GET {} answered {:?}, expected {acked:?}",
                        self.key,
                        r.frame()
                    ));
                }
            }
            Some(Err(e)) => self.failure(&e, 1),
        }
    }

    fn incr(&mut self, answer: Option<Result<Reply, Error>>) {
        match answer {
            None => {
                self.out.hung += 1;
                self.out.incr_may_have_run += 1;
                self.problem("INCR never answered".into());
            }
            Some(Ok(r)) => {
                // The counter counts this task's INCRs that ran: at least every acknowledged
                // one and this, at most those and every one that may have run.
                let low = self.out.incr_acked as i64 + 1;
                let high = low + self.out.incr_may_have_run as i64;
                match r.frame() {
                    BytesFrame::Number { data, .. } if (low..=high).contains(data) => {
                        self.out.ok += 1;
                        self.out.incr_acked += 1;
                    }
                    other => {
                        self.out.misrouted += 1;
                        self.problem(format!("INCR answered {other:?}, expected {low}..={high}"));
                    }
                }
            }
            Some(Err(e)) => {
                self.failure(&e, 1);
                if e.may_have_executed() {
                    self.out.incr_may_have_run += 1;
                }
            }
        }
    }

    async fn round<C: Client>(&mut self, client: &C, counter: &str, round: u64, incrs: usize) {
        let value = format!("{}:{round}", self.name);
        if incrs == 0 {
            self.out.sent += 3;
            let set = answered(client.command(cmd!("SET", &self.key, &value))).await;
            self.set(set, &value);
            let get = answered(client.command(cmd!("GET", &self.key))).await;
            self.get(get);
            let incr = answered(client.command(cmd!("INCR", counter))).await;
            self.incr(incr);
            return;
        }
        let mut p = Pipeline::with_capacity(incrs + 2).cmd(cmd!("SET", &self.key, &value));
        for _ in 0..incrs {
            p.push(cmd!("INCR", counter));
        }
        p.push(cmd!("GET", &self.key));
        let n = incrs as u64 + 2;
        self.out.sent += n;
        match answered(client.pipeline(p)).await {
            None => {
                self.out.hung += n;
                self.out.incr_may_have_run += incrs as u64;
                self.ambiguous.insert(value);
                self.problem("a pipeline never answered".into());
            }
            Some(Err(e)) => {
                self.failure(&e, n);
                if !e.certainly_not_executed() {
                    // Some of it may have run, up to all of it.
                    self.out.incr_may_have_run += incrs as u64;
                    self.ambiguous.insert(value);
                }
            }
            Some(Ok(replies)) if replies.len() != incrs + 2 => {
                self.out.misrouted += n;
                self.out.incr_may_have_run += incrs as u64;
                self.ambiguous.insert(value);
                self.problem(format!("a pipeline of {n} got {} replies", replies.len()));
            }
            Some(Ok(replies)) => {
                let mut replies = replies.into_iter();
                self.set(replies.next(), &value);
                for _ in 0..incrs {
                    self.incr(replies.next());
                }
                self.get(replies.next());
            }
        }
    }
}

/// Tasks running until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<TaskOutcome>>,
}

/// Starts the load on `client`: task `t` uses the keys `{prefix}:v:{t}` and `{prefix}:n:{t}`.
pub fn start_load<C: Client>(client: &C, prefix: &str, spec: LoadSpec) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..spec.tasks)
        .map(|t| {
            let client = client.clone();
            let stop = stop.clone();
            let counter = format!("{prefix}:n:{t}");
            let mut task = Task {
                key: format!("{prefix}:v:{t}"),
                name: format!("{prefix}:{t}"),
                acked: None,
                ambiguous: BTreeSet::new(),
                out: TaskOutcome {
                    counter: counter.clone(),
                    ..TaskOutcome::default()
                },
            };
            tokio::spawn(async move {
                // Staggered, so that the tasks do not move in lockstep.
                tokio::time::sleep(Duration::from_micros(300) * t as u32).await;
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let failed = task.out.failed.values().sum::<u64>();
                    task.round(&client, &counter, round, spec.pipeline).await;
                    if task.out.failed.values().sum::<u64>() > failed {
                        // As a caller would, back off a little after a failure rather than spin
                        // on an open circuit.
                        tokio::time::sleep(FAILURE_BACKOFF).await;
                    } else if !spec.pause.is_zero() {
                        tokio::time::sleep(spec.pause).await;
                    }
                }
                task.out
            })
        })
        .collect();
    Load { stop, tasks }
}

impl Load {
    /// Stops the tasks and collects what each saw. A task ends within a round of being told
    /// (each command is bounded by [`ANSWER_WAIT`]); one that does not is counted as hung.
    pub async fn finish(self) -> Vec<TaskOutcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            match tokio::time::timeout(ANSWER_WAIT * 4, t).await {
                Ok(Ok(o)) => out.push(o),
                Ok(Err(e)) => out.push(TaskOutcome {
                    problems: vec![format!("a load task panicked: {e}")],
                    misrouted: 1,
                    ..TaskOutcome::default()
                }),
                Err(_) => out.push(TaskOutcome {
                    problems: vec!["a load task never finished".into()],
                    hung: 1,
                    ..TaskOutcome::default()
                }),
            }
        }
        out
    }
}

// ===== Pub/Sub =====

/// The numbers a publisher has handed out, shared with the subscribers that check them.
#[derive(Debug, Clone, Default)]
pub struct FeedCounters {
    /// Numbers below this have been sent (or given up).
    started: Arc<AtomicU64>,
    /// Numbers below this were acknowledged by the server, except the skipped ones.
    acked: Arc<AtomicU64>,
    /// Numbers whose PUBLISH failed: they may or may not have been published.
    skipped: Arc<Mutex<BTreeSet<u64>>>,
}

impl FeedCounters {
    /// The next number to be published: every message from this one on is published later.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Messages below this number have been published (or given up).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    fn skipped(&self) -> BTreeSet<u64> {
        self.skipped.lock().unwrap().clone()
    }
}

/// A publisher on a connection of its own to the redis-server (not through the simulator):
/// messages `0, 1, 2, ...` on one channel.
pub struct Feed {
    pub channel: String,
    pub counters: FeedCounters,
    url: String,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Feed {
    /// A publisher to `channel` on the server at `url`, not started yet.
    pub fn new(url: &str, channel: &str) -> Feed {
        Feed {
            channel: channel.to_string(),
            counters: FeedCounters::default(),
            url: url.to_string(),
            stop: Arc::new(AtomicBool::new(false)),
            task: None,
        }
    }

    /// Publishes one message at a time, pausing `pause` after each, until stopped.
    pub fn steady(&mut self, pause: Duration) {
        self.run(u64::MAX, 1, pause);
    }

    /// Publishes `total` messages as fast as the server takes them, `batch` per pipeline.
    pub fn flood(&mut self, total: u64, batch: usize) {
        self.run(total, batch, Duration::ZERO);
    }

    fn run(&mut self, total: u64, batch: usize, pause: Duration) {
        let (url, channel, stop, c) = (
            self.url.clone(),
            self.channel.clone(),
            self.stop.clone(),
            self.counters.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            let mut conn: Option<Connection> = None;
            let mut next = 0u64;
            while next < total && !stop.load(Ordering::Relaxed) {
                let Some(publisher) = conn.clone() else {
                    // The server is away (a case killed it): try again shortly.
                    conn = Connection::connect(&url).await.ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                };
                let n = (batch as u64).min(total - next);
                let batch: Pipeline = (next..next + n)
                    .map(|i| cmd!("PUBLISH", &channel, i))
                    .collect();
                c.started.store(next + n, Ordering::Release);
                let published = publisher.oneshot(batch).await;
                if !matches!(&published, Ok(r) if r.iter().all(|r| r.is_ok())) {
                    // Never numbered again: a message is either owed or skipped, never doubled.
                    c.skipped.lock().unwrap().extend(next..next + n);
                    conn = None;
                }
                next += n;
                c.acked.store(next, Ordering::Release);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }

    /// Waits for a flood to end (at most `within`); whether it did.
    pub async fn wait(&mut self, within: Duration) -> bool {
        let Some(t) = self.task.as_mut() else {
            return true;
        };
        let ended = tokio::time::timeout(within, t).await.is_ok();
        if ended {
            self.task = None;
        }
        ended
    }

    /// Stops publishing; the number of messages handed out.
    pub async fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(ANSWER_WAIT, t).await;
        }
        self.counters.acked()
    }
}

/// The number of a Pub/Sub message on `channel`, if `frame` is one.
fn message_on(frame: &BytesFrame, channel: &str) -> Option<u64> {
    let BytesFrame::Push { data, .. } = frame else {
        return None;
    };
    let text = |i: usize| match data.get(i) {
        Some(BytesFrame::BlobString { data, .. }) | Some(BytesFrame::SimpleString { data, .. }) => {
            Some(&data[..])
        }
        _ => None,
    };
    if text(0)? != b"message" || text(1)? != channel.as_bytes() {
        return None;
    }
    std::str::from_utf8(text(2)?).ok()?.parse().ok()
}

/// One subscriber: a channel's messages as they arrive, and the windows of messages it is owed.
pub struct Subscriber {
    pub channel: String,
    counters: FeedCounters,
    /// `[start, end)` ranges of message numbers owed.
    windows: Vec<(u64, u64)>,
    open: Option<u64>,
    /// `[start, end)` ranges published after an UNSUBSCRIBE was acknowledged and before the
    /// next SUBSCRIBE was sent: none of them may come.
    gaps: Vec<(u64, u64)>,
    left: Option<u64>,
    received: Arc<Mutex<Vec<u64>>>,
    stop: Arc<tokio::sync::Notify>,
    collector: tokio::task::JoinHandle<u64>,
    sent: u64,
    ok: u64,
    failed: BTreeMap<String, u64>,
    hung: u64,
}

/// What a subscriber saw.
#[derive(Debug, Default)]
pub struct SubOutcome {
    pub channel: String,
    /// SUBSCRIBE/UNSUBSCRIBE sent, answered, failed by kind, never answered.
    pub sent: u64,
    pub ok: u64,
    pub failed: BTreeMap<String, u64>,
    pub hung: u64,
    /// Messages owed, and those of them that never came.
    pub owed: u64,
    pub missing: u64,
    /// Messages that came more than once, and that came after a later one.
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Messages that came although they were published after an acknowledged UNSUBSCRIBE.
    pub after_unsubscribe: u64,
    /// Pushes the subscriber's queue dropped because it fell behind.
    pub queue_missed: u64,
    pub problems: Vec<String>,
}

impl Subscriber {
    /// Starts collecting `feed`'s channel from `pushes` (taken before subscribing, so nothing
    /// published after the acknowledgement can slip by), then subscribes through `client`.
    pub async fn subscribe<C: Client>(client: &C, pushes: Pushes, feed: &Feed) -> Subscriber {
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(tokio::sync::Notify::new());
        let collector = {
            let (received, stop, channel) = (received.clone(), stop.clone(), feed.channel.clone());
            let mut pushes = pushes;
            tokio::spawn(async move {
                let stopped = stop.notified();
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        frame = pushes.recv() => match frame {
                            Some(f) => {
                                if let Some(n) = message_on(&f, &channel) {
                                    received.lock().unwrap().push(n);
                                }
                            }
                            // The stack's push stream never ends while the stack lives.
                            None => break,
                        },
                    }
                }
                pushes.missed()
            })
        };
        let mut s = Subscriber {
            channel: feed.channel.clone(),
            counters: feed.counters.clone(),
            windows: Vec::new(),
            open: None,
            gaps: Vec::new(),
            left: None,
            received,
            stop,
            collector,
            sent: 0,
            ok: 0,
            failed: BTreeMap::new(),
            hung: 0,
        };
        s.join(client).await;
        s
    }

    /// Sends `command` until it is acknowledged (every attempt counts as a command sent);
    /// whether it was.
    async fn until_acknowledged<C: Client>(&mut self, client: &C, command: Command) -> bool {
        for _ in 0..100 {
            self.sent += 1;
            match answered(client.command(command.clone())).await {
                Some(Ok(_)) => {
                    self.ok += 1;
                    return true;
                }
                Some(Err(e)) => *self.failed.entry(kind(&e)).or_default() += 1,
                None => self.hung += 1,
            }
            pause(20).await;
        }
        false
    }

    /// Subscribes; the messages published from the acknowledgement on are owed.
    pub async fn join<C: Client>(&mut self, client: &C) {
        if let Some(start) = self.left.take() {
            let end = self.counters.acked();
            if end > start {
                self.gaps.push((start, end));
            }
        }
        self.until_acknowledged(client, cmd!("SUBSCRIBE", &self.channel))
            .await;
        self.open = Some(self.counters.started());
    }

    /// Unsubscribes; the messages published before it are owed, those published after its
    /// acknowledgement (until the next [`join`](Self::join)) must not come.
    pub async fn leave<C: Client>(&mut self, client: &C) {
        self.close_at(self.counters.acked());
        if self
            .until_acknowledged(client, cmd!("UNSUBSCRIBE", &self.channel))
            .await
        {
            self.left = Some(self.counters.started());
        }
    }

    fn close_at(&mut self, end: u64) {
        if let Some(start) = self.open.take() {
            if end > start {
                self.windows.push((start, end));
            }
        }
    }

    /// How many messages have come so far.
    pub fn received(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Before a fault that loses the connection without notice: what was acknowledged until
    /// now stays owed; what follows is not (until [`recovered`](Self::recovered)).
    pub fn fault(&mut self) {
        let end = self.counters.acked();
        self.close_at(end);
    }

    /// The stack is on a new connection with its subscriptions restored: owed again from here.
    /// (A stack restores them before it puts a new connection in place.)
    pub fn recovered(&mut self) {
        if self.open.is_none() {
            self.open = Some(self.counters.started());
        }
    }

    /// Closes the window still open at what `feed` has published, waits (at most 10 s) for
    /// every owed message, and checks what came.
    pub async fn finish(mut self) -> SubOutcome {
        self.close_at(self.counters.acked());
        let skipped = self.counters.skipped();
        let owed: BTreeSet<u64> = self
            .windows
            .iter()
            .flat_map(|&(a, b)| a..b)
            .filter(|n| !skipped.contains(n))
            .collect();
        let received = self.received.clone();
        let all_in = || {
            let got: BTreeSet<u64> = received.lock().unwrap().iter().copied().collect();
            owed.iter().all(|n| got.contains(n))
        };
        wait_for(Duration::from_secs(10), all_in).await;
        // A little longer, for a duplicate that would come after the last owed message.
        pause(100).await;
        self.stop.notify_one();
        let queue_missed = tokio::time::timeout(ANSWER_WAIT, self.collector)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let got = self.received.lock().unwrap().clone();
        let mut seen = BTreeSet::new();
        let (mut duplicated, mut out_of_order, mut highest) = (0, 0, None);
        for &n in &got {
            if !seen.insert(n) {
                duplicated += 1;
            } else if highest.is_some_and(|h| n < h) {
                out_of_order += 1;
            }
            highest = highest.max(Some(n));
        }
        let missing: Vec<u64> = owed.iter().filter(|n| !seen.contains(n)).copied().collect();
        let unwanted: Vec<u64> = seen
            .iter()
            .filter(|n| self.gaps.iter().any(|&(a, b)| (a..b).contains(*n)))
            .copied()
            .collect();
        let mut problems = Vec::new();
        if !unwanted.is_empty() {
            problems.push(format!(
                "{}: {} messages came after an acknowledged UNSUBSCRIBE (first {:?})",
                self.channel,
                unwanted.len(),
                &unwanted[..unwanted.len().min(8)]
            ));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{}: {} of {} owed messages never came (first {:?}; windows {:?})",
                self.channel,
                missing.len(),
                owed.len(),
                &missing[..missing.len().min(8)],
                self.windows
            ));
        }
        if duplicated > 0 || out_of_order > 0 {
            problems.push(format!(
                "{}: {duplicated} duplicated, {out_of_order} out of order",
                self.channel
            ));
        }
        SubOutcome {
            channel: self.channel,
            sent: self.sent,
            ok: self.ok,
            failed: self.failed,
            hung: self.hung,
            owed: owed.len() as u64,
            missing: missing.len() as u64,
            duplicated,
            out_of_order,
            after_unsubscribe: unwanted.len() as u64,
            queue_missed,
            problems,
        }
    }
}

/// Marks a fault without notice for every subscriber, then waits long enough for what was
/// acknowledged before it to have been delivered: call it just before injecting the fault.
pub async fn before_fault(subs: &mut [Subscriber]) {
    for s in subs.iter_mut() {
        s.fault();
    }
    tokio::time::sleep(IN_TRANSIT).await;
}

/// Marks every subscriber as owed again (see [`Subscriber::recovered`]).
pub fn recovered(subs: &mut [Subscriber]) {
    for s in subs.iter_mut() {
        s.recovered();
    }
}

/// Checks what every subscriber got, all at once (each waits for its owed messages).
pub async fn finish_all(subs: Vec<Subscriber>) -> Vec<SubOutcome> {
    let waits: Vec<_> = subs.into_iter().map(|s| tokio::spawn(s.finish())).collect();
    let mut out = Vec::new();
    for w in waits {
        out.push(w.await.unwrap_or_else(|e| SubOutcome {
            problems: vec![format!("checking a subscriber panicked: {e}")],
            ..SubOutcome::default()
        }));
    }
    out
}

/// Subscribers that join and leave their channels over and over until stopped.
pub struct Churn {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Subscriber>>,
}

impl Churn {
    /// One churning subscriber per feed; `pushes` makes each its own push stream.
    pub async fn start<C: Client>(
        client: &C,
        feeds: &[Feed],
        mut pushes: impl FnMut() -> Pushes,
    ) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for feed in feeds {
            let sub = Subscriber::subscribe(client, pushes(), feed).await;
            let (client, stop) = (client.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut sub = sub;
                while !stop.load(Ordering::Relaxed) {
                    pause(fastrand::u64(10..40)).await;
                    sub.leave(&client).await;
                    pause(fastrand::u64(2..10)).await;
                    sub.join(&client).await;
                }
                sub
            }));
        }
        Churn { stop, tasks }
    }

    /// Stops churning (each subscriber stays subscribed) and hands the subscribers back.
    pub async fn stop(self) -> Result<Vec<Subscriber>, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            match tokio::time::timeout(ANSWER_WAIT * 4, t).await {
                Ok(Ok(sub)) => out.push(sub),
                Ok(Err(e)) => return Err(format!("a churning subscriber panicked: {e}")),
                Err(_) => return Err("a churning subscriber never finished".into()),
            }
        }
        Ok(out)
    }
}

// ===== the tally of a case =====

/// What one case did, for the README's reliability table: one row per case.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub case: String,
    /// Commands sent (load and subscription commands; a pipeline counts its commands).
    pub sent: u64,
    /// Commands answered as they should be.
    pub ok: u64,
    /// Commands failed, by error kind.
    pub failed: BTreeMap<String, u64>,
    /// Commands never answered.
    pub hung: u64,
    /// Acknowledged INCRs missing from the counters.
    pub lost_incrs: u64,
    /// INCRs in the counters beyond those acknowledged or reported as maybe run.
    pub duplicated_incrs: u64,
    /// Replies that belong to another command.
    pub misrouted: u64,
    /// Messages delivered to a subscriber that had left the channel (shown as misrouted).
    pub messages_after_unsubscribe: u64,
    /// Pub/Sub messages owed, never delivered, delivered twice, delivered out of order.
    pub messages_owed: u64,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    pub messages_out_of_order: u64,
    /// Pushes dropped by a subscriber queue that fell behind (part of the lost messages).
    pub push_queue_missed: u64,
    /// Panics anywhere in the process during the case.
    pub panics: u64,
    /// Growth of the process's resident memory over the case.
    pub rss_growth_kib: i64,
    /// The first problems found, described.
    pub problems: Vec<String>,
}

impl Tally {
    /// Commands failed, all kinds together.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Commands never answered, acknowledged writes missing, owed messages never delivered.
    pub fn lost(&self) -> u64 {
        self.hung + self.lost_incrs + self.messages_lost
    }

    /// Writes applied twice. (A Pub/Sub message can arrive twice across a handoff, while both
    /// connections are subscribed: delivery is at least once, as documented on
    /// `HandoffRetry::pushes`; those repeats are counted apart.)
    pub fn duplicated(&self) -> u64 {
        self.duplicated_incrs
    }

    /// Replies that belong to another command, messages for a subscriber that had left.
    pub fn misrouted(&self) -> u64 {
        self.misrouted + self.messages_after_unsubscribe
    }

    /// The header of the table [`row`](Self::row) makes rows of.
    pub fn header() -> &'static str {
        "| case | commands | failed (kind) | lost | duplicated | misrouted | messages owed | messages repeated at a handoff | RSS growth |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|"
    }

    /// One row of the reliability table.
    pub fn row(&self) -> String {
        let kinds = if self.failed.is_empty() {
            "0".to_string()
        } else {
            let list: Vec<String> = self
                .failed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("{} ({})", self.failed_total(), list.join(", "))
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} MiB |",
            self.case,
            self.sent,
            kinds,
            self.lost(),
            self.duplicated(),
            self.misrouted(),
            self.messages_owed,
            self.messages_duplicated,
            self.rss_growth_kib / 1024
        )
    }
}

/// The resident memory of this process, in KiB.
pub fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts every panic in the process, also in tasks whose panic nobody looks at.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            previous(info);
        }));
    });
}

/// One case at a time: each measures memory and panics of its own, and two cores are shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a case's assertions demand beyond the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// Maintenance that was announced, or a fault that loses nothing: no command may fail.
    NoFailures,
    /// A fault without notice: commands may fail, with errors that say whether they ran.
    ClearErrors,
}

/// A case in progress: its name, what it found, and the measurements it started from.
pub struct Case {
    name: String,
    _serial: tokio::sync::MutexGuard<'static, ()>,
    rss: i64,
    panics: u64,
    expectations: Vec<(String, bool)>,
    notes: Vec<String>,
}

impl Case {
    /// Waits for the cases before it, then starts measuring.
    pub async fn begin(name: &str) -> Case {
        let serial = SERIAL.lock().await;
        count_panics();
        // `RUST_LOG=redis_handoff=warn` shows what the crate logged about the case.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Case {
            name: name.to_string(),
            _serial: serial,
            rss: rss_kib(),
            panics: PANICS.load(Ordering::Relaxed),
            expectations: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records something the case needs to hold; checked (after the row is printed) by
    /// [`conclude`](Self::conclude).
    pub fn expect(&mut self, what: impl Into<String>, holds: bool) {
        self.expectations.push((what.into(), holds));
    }

    /// Records something worth printing with the row.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Adds up the load's and the subscribers' outcomes, and reads every counter from the
    /// server at `url` (directly, not through the simulator).
    pub async fn tally(&self, url: &str, load: Vec<TaskOutcome>, subs: Vec<SubOutcome>) -> Tally {
        let mut t = Tally {
            case: self.name.clone(),
            ..Tally::default()
        };
        let direct = match Connection::connect(url).await {
            Ok(c) => Some(c),
            Err(e) => {
                t.problems.push(format!("cannot read the counters: {e}"));
                None
            }
        };
        for o in load {
            t.sent += o.sent;
            t.ok += o.ok;
            t.hung += o.hung;
            t.misrouted += o.misrouted;
            for (k, n) in o.failed {
                *t.failed.entry(k).or_default() += n;
            }
            t.problems.extend(o.problems);
            let Some(direct) = &direct else { continue };
            if o.counter.is_empty() {
                continue;
            }
            let value = match direct.send(cmd!("GET", &o.counter)).await {
                Ok(r) => r.as_i64().unwrap_or(0) as u64,
                Err(e) => {
                    t.problems.push(format!("GET {}: {e}", o.counter));
                    continue;
                }
            };
            if value < o.incr_acked {
                t.lost_incrs += o.incr_acked - value;
                t.problems.push(format!(
                    "{}: {value}, but {} INCRs were acknowledged",
                    o.counter, o.incr_acked
                ));
            } else if value > o.incr_acked + o.incr_may_have_run {
                t.duplicated_incrs += value - o.incr_acked - o.incr_may_have_run;
                t.problems.push(format!(
                    "{}: {value}, but {} acknowledged and {} may have run",
                    o.counter, o.incr_acked, o.incr_may_have_run
                ));
            }
        }
        for s in subs {
            t.sent += s.sent;
            t.ok += s.ok;
            t.hung += s.hung;
            for (k, n) in s.failed {
                *t.failed.entry(format!("{k} (subscription)")).or_default() += n;
            }
            t.messages_owed += s.owed;
            t.messages_lost += s.missing;
            t.messages_duplicated += s.duplicated;
            t.messages_out_of_order += s.out_of_order;
            t.messages_after_unsubscribe += s.after_unsubscribe;
            t.push_queue_missed += s.queue_missed;
            t.problems.extend(s.problems);
        }
        t.panics = PANICS.load(Ordering::Relaxed) - self.panics;
        t.rss_growth_kib = rss_kib() - self.rss;
        t
    }

    /// Prints the case's row, then asserts: every command answered, nothing lost, doubled or
    /// misrouted, no panic, memory bounded, the case's own expectations, and what `demand` adds.
    pub fn conclude(self, t: &Tally, demand: Demand) {
        static HEADER: Once = Once::new();
        HEADER.call_once(|| println!("{}", Tally::header()));
        println!("{}", t.row());
        for n in &self.notes {
            println!("    {}: {n}", self.name);
        }
        let mut broken: Vec<String> = self
            .expectations
            .iter()
            .filter(|(_, holds)| !holds)
            .map(|(what, _)| format!("expected: {what}"))
            .collect();
        let mut check = |ok: bool, what: String| {
            if !ok {
                broken.push(what);
            }
        };
        check(t.hung == 0, format!("{} commands never answered", t.hung));
        check(
            t.lost_incrs == 0,
            format!("{} acknowledged INCRs lost", t.lost_incrs),
        );
        check(
            t.duplicated_incrs == 0,
            format!("{} INCRs ran more often than reported", t.duplicated_incrs),
        );
        check(
            t.misrouted == 0,
            format!("{} replies misrouted", t.misrouted),
        );
        check(
            t.messages_after_unsubscribe == 0,
            format!(
                "{} messages delivered after an acknowledged UNSUBSCRIBE",
                t.messages_after_unsubscribe
            ),
        );
        check(
            t.messages_lost == 0,
            format!(
                "{} of {} owed messages lost ({} dropped by a full push queue)",
                t.messages_lost, t.messages_owed, t.push_queue_missed
            ),
        );
        check(
            t.messages_out_of_order == 0,
            format!(
                "{} messages out of order ({} repeated)",
                t.messages_out_of_order, t.messages_duplicated
            ),
        );
        check(t.panics == 0, format!("{} panics", t.panics));
        check(
            t.rss_growth_kib < RSS_BOUND_KIB,
            format!("resident memory grew by {} MiB", t.rss_growth_kib / 1024),
        );
        check(t.ok > 0, "no command succeeded".into());
        if demand == Demand::NoFailures {
            check(
                t.failed.is_empty(),
                format!("{} commands failed: {:?}", t.failed_total(), t.failed),
            );
        }
        assert!(
            broken.is_empty(),
            "{}: {}\nproblems: {:#?}",
            self.name,
            broken.join("; "),
            t.problems
        );
    }
}
