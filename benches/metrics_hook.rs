//! The per-call cost of `MetricsHook`: a service that answers at once, bare and wrapped.
//!
//! A plain binary (`cargo bench --bench metrics_hook`). Each round makes `CALLS` calls
//! (`poll_ready`, `call`, one poll of the ready future) on one thread; rounds of the bare
//! service and of `MetricsHook` over it alternate. It prints, per variant, the median ns per
//! call over the rounds and the 10th percentile: rounds are short (a fraction of a
//! millisecond) so that most run without being preempted, and on a busy machine the quiet
//! rounds are the ones that show what the code costs. The difference is the layer's cost.

use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use redis_handoff::frame::BytesFrame;
use redis_handoff::metrics::{Metrics, MetricsHook};
use redis_handoff::{Command, Error, Reply};
use tower::{Layer, Service};

const CALLS: usize = 2_000;
const ROUNDS: usize = 2_001;

/// Answers every command at once, in process. It keeps the commands it was given until the
/// round is over, so that freeing them is not part of the time measured.
struct ReadyService {
    kept: Vec<Command>,
}

impl ReadyService {
    fn new() -> Self {
        ReadyService {
            kept: Vec::with_capacity(CALLS),
        }
    }
}

impl Service<Command> for ReadyService {
    type Response = Reply;
    type Error = Error;
    type Future = Ready<Result<Reply, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, command: Command) -> Self::Future {
        self.kept.push(command);
        ready(Ok(Reply::from(BytesFrame::Null)))
    }
}

/// Reaches the [`ReadyService`] at the bottom, to drop what it kept between rounds.
trait Bottom {
    fn bottom(&mut self) -> &mut ReadyService;
}

impl Bottom for ReadyService {
    fn bottom(&mut self) -> &mut ReadyService {
        self
    }
}

impl Bottom for MetricsHook<ReadyService> {
    fn bottom(&mut self) -> &mut ReadyService {
        self.get_mut()
    }
}

/// Commands made before the clock starts (their arguments are static: no copy).
fn commands(names: &[&'static str]) -> Vec<Command> {
    (0..CALLS)
        .map(|i| {
            Command::new(Bytes::from_static(names[i % names.len()].as_bytes()))
                .arg(Bytes::from_static(b"key"))
        })
        .collect()
}

/// Nanoseconds per call over one round.
fn round<S>(svc: &mut S, cmds: Vec<Command>) -> f64
where
    S: Service<Command, Response = Reply, Error = Error> + Bottom,
{
    let mut cx = Context::from_waker(Waker::noop());
    let n = cmds.len();
    let start = Instant::now();
    for c in cmds {
        if svc.poll_ready(&mut cx).is_pending() {
            unreachable!("the service is always ready");
        }
        let fut = pin!(svc.call(c));
        match fut.poll(&mut cx) {
            Poll::Ready(r) => {
                black_box(r.is_ok());
            }
            Poll::Pending => unreachable!("the answer is ready"),
        }
    }
    let took = start.elapsed();
    svc.bottom().kept.clear();
    took.as_nanos() as f64 / n as f64
}

/// The median and the 10th percentile.
fn median_and_p10(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() / 10])
}

fn compare(label: &str, names: &[&'static str]) {
    let metrics = Metrics::new();
    let mut bare = ReadyService::new();
    let mut hooked = metrics.layer().layer(ReadyService::new());
    // Warm up: names claimed, buckets allocated, caches filled.
    for _ in 0..50 {
        round(&mut bare, commands(names));
        round(&mut hooked, commands(names));
    }
    let (mut b, mut h) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(round(&mut bare, commands(names)));
        h.push(round(&mut hooked, commands(names)));
    }
    let ((b, b10), (h, h10)) = (median_and_p10(b), median_and_p10(h));
    println!(
        "{label:<20} median: bare {b:>6.1}  MetricsHook {h:>6.1}  cost {:>5.1} ns/call   \
         p10: bare {b10:>6.1}  MetricsHook {h10:>6.1}  cost {:>5.1} ns/call",
        h - b,
        h10 - b10
    );
    let snap = metrics.snapshot();
    assert_eq!(
        snap.outcomes.ok,
        ((ROUNDS + 50) * CALLS) as u64,
        "every call counted"
    );
}

/// What reading a clock costs here (the fastest of a few runs): the layer reads one twice per
/// call.
fn clock_cost<T>(now: impl Fn() -> T) -> f64 {
    let n = 100_000;
    (0..50)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(now());
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    println!(
        "clock read: std::time::Instant {:.1} ns, quanta::Instant {:.1} ns",
        clock_cost(Instant::now),
        clock_cost(quanta::Instant::now)
    );
    println!(
        "MetricsHook per-call cost over a ready in-process service: {ROUNDS} rounds of {CALLS} calls, one thread"
    );
    compare("one command name", &["GET"]);
    compare(
        "eight command names",
        &[
            "GET", "SET", "HGET", "HSET", "INCR", "DEL", "EXPIRE", "MGET",
        ],
    );
}
