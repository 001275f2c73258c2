//! Per-call cost of the layers over an in-process service that is always ready and answers at
//! once, so that only the layer is measured: the bare service, tower's `Timeout`, our
//! `RelaxedTimeout`, our `CircuitBreaker` and tower-resilience's circuit breaker, all in the same
//! run.
//!
//! A call is what a caller does for one command: `poll_ready`, `call`, poll the response future
//! (which is ready at once) and drop it. The futures are polled by hand with a no-op waker, inside
//! a Tokio runtime context (the timeouts arm their timers in it), so that no executor or
//! `async` state machine of the caller's is counted.
//!
//! The machine may be shared, so the layers take turns in short batches of `BATCH` calls,
//! `BATCHES` times over: a pause of the process falls on one batch, not on one layer. A layer's
//! cost per call is the median over its batches, and its added cost the median over the batches
//! of its time minus the bare service's time in the batch just before.
//!
//! Run with `cargo bench --bench layers`.

use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use redis_handoff::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use redis_handoff::frame::BytesFrame;
use redis_handoff::relaxed_timeout::{RelaxationSwitch, RelaxedTimeout};
use redis_handoff::{Command, Endpoint, Error, Maintenance, Reply};
use tower::{service_fn, Service};

const BATCH: u32 = 1_000;
const BATCHES: usize = 500;

/// Runs one batch and returns ns per call.
type Batch = Box<dyn FnMut() -> f64>;

/// One measured stack.
struct Case {
    name: &'static str,
    batch: Batch,
    totals: Vec<f64>,
    added: Vec<f64>,
}

fn case<S>(name: &'static str, mut svc: S) -> Case
where
    S: Service<Command, Response = Reply> + 'static,
    S::Error: Debug,
{
    // A static argument: cloning the command costs one small allocation and no atomics.
    let command = Command::new(Bytes::from_static(b"PING"));
    Case {
        name,
        batch: Box::new(move || {
            let mut cx = Context::from_waker(Waker::noop());
            let started = Instant::now();
            for _ in 0..BATCH {
                match svc.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => {}
                    other => panic!("{name} is not ready: {other:?}"),
                }
                let mut response = pin!(svc.call(command.clone()));
                match response.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(reply)) => {
                        black_box(reply);
                    }
                    other => panic!("{name} did not answer at once: {other:?}"),
                }
            }
            started.elapsed().as_nanos() as f64 / f64::from(BATCH)
        }),
        totals: Vec::new(),
        added: Vec::new(),
    }
}

fn bare() -> impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send {
    service_fn(|_: Command| std::future::ready(Ok::<_, Error>(Reply::from(BytesFrame::Null))))
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();

    let timeout = Duration::from_secs(1);
    let ours = CircuitBreaker::new(
        bare(),
        Maintenance::default(),
        Endpoint::new("127.0.0.1", 6379),
        CircuitBreakerConfig::default(),
    );
    let theirs = tower::Layer::layer(
        &tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .build()
            .expect("the default configuration is valid"),
        bare(),
    );
    let mut cases = vec![
        case("bare service", bare()),
        case(
            "tower::timeout::Timeout",
            tower::timeout::Timeout::new(bare(), timeout),
        ),
        case(
            "RelaxedTimeout (RelaxationSwitch)",
            RelaxedTimeout::new(bare(), timeout, timeout * 10, RelaxationSwitch::new()),
        ),
        case("CircuitBreaker (redis-handoff)", ours),
        case("tower-resilience CircuitBreaker", theirs),
    ];

    // Warm-up, then the layers take turns.
    for c in &mut cases {
        for _ in 0..50 {
            (c.batch)();
        }
    }
    for _ in 0..BATCHES {
        let mut bare_ns = f64::NAN;
        for (i, c) in cases.iter_mut().enumerate() {
            let ns = (c.batch)();
            if i == 0 {
                bare_ns = ns;
            }
            c.totals.push(ns);
            c.added.push(ns - bare_ns);
        }
    }

    let results: Vec<(&str, f64, f64)> = cases
        .iter()
        .map(|c| (c.name, median(&c.totals), median(&c.added)))
        .collect();
    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or((f64::NAN, f64::NAN), |(_, total, added)| (*total, *added))
    };
    let (ours_total, ours_added) = get("CircuitBreaker (redis-handoff)");
    let (theirs_total, theirs_added) = get("tower-resilience CircuitBreaker");

    println!("Command: `cargo bench --bench layers` ({BATCHES} batches of {BATCH} calls per layer, taking turns; medians; futures polled by hand)");
    println!();
    println!("| layer | ns per call | added over the bare service |");
    println!("|---|---:|---:|");
    for (name, total, added) in &results {
        println!("| {name} | {total:.1} | {added:.1} |");
    }
    println!();
    println!(
        "tower-resilience's circuit breaker adds {:.1}x what ours adds per call \
         ({:.1}x counting the service itself); target: at least 10x.",
        theirs_added / ours_added.max(0.1),
        theirs_total / ours_total
    );
}
