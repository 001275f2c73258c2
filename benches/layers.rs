//! Per-call cost of the layers over an in-process service that is always ready and answers at
//! once, so that only the layer is measured: the bare service, tower's `Timeout`, our
//! `RelaxedTimeout`, our `CircuitBreaker` and tower-resilience's circuit breaker, all in the same
//! run. Each round sends `CALLS` commands one after the other through `ready().await` and
//! `call().await` on a current-thread runtime; the rounds of the layers are interleaved and the
//! median round is reported.
//!
//! Run with `cargo bench --bench layers`.

use std::fmt::Debug;
use std::hint::black_box;
use std::time::{Duration, Instant};

use redis_handoff::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use redis_handoff::frame::BytesFrame;
use redis_handoff::relaxed_timeout::{RelaxationSwitch, RelaxedTimeout};
use redis_handoff::{Command, Endpoint, Error, Maintenance, Reply};
use tower::{service_fn, Service, ServiceExt};

const CALLS: u32 = 200_000;
const ROUNDS: usize = 9;

/// One measured stack, type-erased behind a closure that runs a round and returns ns per call.
struct Case {
    name: &'static str,
    round: Box<dyn FnMut(&tokio::runtime::Runtime) -> f64>,
    samples: Vec<f64>,
}

fn case<S>(name: &'static str, mut svc: S) -> Case
where
    S: Service<Command, Response = Reply> + 'static,
    S::Error: Debug,
{
    let command = Command::new("PING");
    Case {
        name,
        round: Box::new(move |rt| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..CALLS {
                    let ready = svc.ready().await.expect("always ready");
                    let reply = ready.call(command.clone()).await.expect("always answers");
                    black_box(reply);
                }
                started.elapsed().as_nanos() as f64 / f64::from(CALLS)
            })
        }),
        samples: Vec::new(),
    }
}

fn bare() -> impl Service<Command, Response = Reply, Error = Error, Future: Send> + Clone + Send {
    service_fn(|_: Command| std::future::ready(Ok::<_, Error>(Reply::from(BytesFrame::Null))))
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
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

    // A warm-up round each, then interleaved rounds so that noise on the machine is shared.
    for c in &mut cases {
        (c.round)(&rt);
    }
    for _ in 0..ROUNDS {
        for c in &mut cases {
            let ns = (c.round)(&rt);
            c.samples.push(ns);
        }
    }

    let results: Vec<(&str, f64)> = cases
        .iter_mut()
        .map(|c| (c.name, median(&mut c.samples)))
        .collect();
    let base = results[0].1;
    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    };
    for (name, ns) in &results {
        println!(
            "{name:<36} {ns:>8.1} ns/call  (+{:.1} ns over bare)",
            ns - base
        );
    }

    let ours = get("CircuitBreaker (redis-handoff)");
    let theirs = get("tower-resilience CircuitBreaker");
    let overhead_ratio = (theirs - base) / (ours - base).max(0.1);
    let total_ratio = theirs / ours;

    println!();
    println!("Command: `cargo bench --bench layers` ({CALLS} calls per round, median of {ROUNDS} rounds, current-thread runtime)");
    println!();
    println!("| layer | ns per call | over the bare service |");
    println!("|---|---:|---:|");
    for (name, ns) in &results {
        println!("| {name} | {ns:.1} | {:.1} |", ns - base);
    }
    println!();
    println!(
        "tower-resilience's circuit breaker costs {overhead_ratio:.1}x ours in added time per call \
         ({total_ratio:.1}x counting the service itself); target: at least 10x."
    );
}
