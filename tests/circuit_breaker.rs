//! CircuitBreaker against real redis-server processes, directly and through the maintenance
//! simulator: it opens when the server is gone, fails fast without touching the network, closes
//! through a half-open probe, follows Azure maintenance events, ignores server error replies,
//! and in wait mode holds commands through a failover.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::client::handoff_to_url;
use common::events::wait_until;
use common::sim::{handoff_to, sim_over};
use common::RedisServer;
use redis_handoff::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitHandle, CircuitState,
    OpenMode,
};
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::{AzureEvents, MaintenanceEvents};
use redis_handoff::sim::{AzureEvent, AzureEventKind, Simulator};
use redis_handoff::{
    cmd, Command, Error, ErrorClass, EventKind, Maintenance, MaintenanceConfig, Reply,
};
use tower::{Service, ServiceBuilder, ServiceExt};

const WIDE: Duration = Duration::from_secs(30);

/// Counts what reaches the service below the circuit: every `poll_ready` and every `call`.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted {
            inner,
            polls: Arc::default(),
            calls: Arc::default(),
        }
    }
}

impl<S: Service<Command, Response = Reply, Error = Error>> Service<Command> for Counted<S> {
    type Response = Reply;
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, command: Command) -> S::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(command)
    }
}

type Stack = CircuitBreaker<Counted<HandoffRetry>>;

struct Setup {
    redis: Stack,
    circuit: CircuitHandle,
    events: MaintenanceEvents,
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Setup {
    fn reached(&self) -> (usize, usize) {
        (
            self.polls.load(Ordering::SeqCst),
            self.calls.load(Ordering::SeqCst),
        )
    }
}

fn handoff_config() -> HandoffConfig {
    HandoffConfig {
        connect_timeout: Duration::from_millis(500),
        max_reconnect_attempts: 2,
        backoff_base: Duration::from_millis(20),
        wait_for_connection: Duration::from_millis(500),
        ..HandoffConfig::default()
    }
}

fn circuit_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        consecutive_failures: 3,
        minimum_calls: 5,
        ..CircuitBreakerConfig::default()
    }
}

fn stack(
    maintenance: Maintenance,
    redis: HandoffRetry,
    events: MaintenanceEvents,
    config: CircuitBreakerConfig,
) -> Setup {
    let endpoint = redis.configured_endpoint().clone();
    let counted = Counted::new(redis);
    let (polls, calls) = (counted.polls.clone(), counted.calls.clone());
    let layer = CircuitBreakerLayer::new(maintenance, endpoint, config);
    let circuit = layer.handle();
    let redis = ServiceBuilder::new().layer(layer).service(counted);
    Setup {
        redis,
        circuit,
        events,
        polls,
        calls,
    }
}

/// The stack straight over a redis-server: CircuitBreaker over HandoffRetry (which reconnects).
async fn direct(server: &RedisServer, config: CircuitBreakerConfig) -> Setup {
    let maintenance = Maintenance::default();
    let events = maintenance.subscribe();
    let redis = handoff_to_url(&server.url(), &maintenance, handoff_config()).await;
    stack(maintenance, redis, events, config)
}

/// The stack through the simulator, listening to Azure events: CircuitBreaker over
/// HandoffRetry over NotificationDemux.
async fn through_sim(server: &RedisServer, config: CircuitBreakerConfig) -> (Simulator, Setup) {
    let sim = sim_over(server, 1).await;
    let maintenance = Maintenance::new(
        MaintenanceConfig::builder()
            .azure_events(AzureEvents::On)
            .build()
            .unwrap(),
    );
    let events = maintenance.subscribe();
    let redis = handoff_to(&sim, &maintenance, handoff_config()).await;
    let setup = stack(maintenance, redis, events, config);
    // The subscription to AzureRedisEvents went out with the handshake; wait until the
    // simulator has seen it.
    azure_subscribed(&sim).await;
    (sim, setup)
}

/// The simulator has seen the stack's subscription to AzureRedisEvents.
async fn azure_subscribed(sim: &Simulator) {
    wait_until(
        "the subscription to AzureRedisEvents",
        WIDE,
        Duration::from_millis(10),
        || sim.connections().iter().any(|c| c.azure_subscribed),
    )
    .await;
}

async fn send(redis: &Stack, command: Command) -> Result<Reply, Error> {
    tokio::time::timeout(WIDE, redis.clone().oneshot(command))
        .await
        .expect("every command gets an answer")
}

async fn next(events: &mut MaintenanceEvents, name: &str) -> EventKind {
    tokio::time::timeout(WIDE, async {
        loop {
            match events.recv().await {
                Some(e) if e.kind.name() == name => return e.kind,
                Some(_) => {}
                None => panic!("the event stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event"))
}

/// Sends PING until the circuit rejects one; returns the failures that reached the server side.
async fn fail_until_open(s: &Setup) -> Vec<Error> {
    let mut failures = Vec::new();
    for _ in 0..20 {
        match send(&s.redis, cmd!("PING")).await {
            Err(Error::CircuitOpen { .. }) => return failures,
            Err(e) => failures.push(e),
            Ok(r) => panic!("the server is down, yet PING answered {r:?}"),
        }
    }
    panic!("the circuit never opened: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_opens_it_after_n_failures_and_then_it_fails_fast_off_the_network() {
    let mut server = RedisServer::start();
    let mut s = direct(
        &server,
        CircuitBreakerConfig {
            open_wait: Duration::from_secs(60),
            max_open_wait: Duration::from_secs(60),
            ..circuit_config()
        },
    )
    .await;
    send(&s.redis, cmd!("PING")).await.unwrap();
    assert_eq!(s.reached().1, 1);

    server.kill();
    let failures = fail_until_open(&s).await;
    assert_eq!(failures.len(), 3, "{failures:?}");
    for e in &failures {
        assert!(
            matches!(e.class(), ErrorClass::Connection | ErrorClass::Timeout),
            "{e}"
        );
    }
    let EventKind::CircuitOpened { reason } = next(&mut s.events, "circuit_opened").await else {
        unreachable!()
    };
    assert!(
        reason.contains("3 connection failures in a row"),
        "{reason}"
    );
    assert_eq!(s.circuit.state(), CircuitState::Open);

    // From now on nothing goes below the circuit: not even poll_ready.
    let before = s.reached();
    assert_eq!(before.1, 4, "the PING and the three failures");
    for _ in 0..50 {
        match send(&s.redis, cmd!("GET", "k")).await {
            Err(Error::CircuitOpen {
                endpoint,
                reason: r,
            }) => {
                assert_eq!(endpoint.port(), server.port);
                assert_eq!(r, reason);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.reached(), before);
    let stats = s.circuit.stats();
    assert_eq!((stats.opened, stats.rejected), (1, 51));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_server_is_back_a_half_open_probe_closes_it() {
    let mut server = RedisServer::start();
    let mut s = direct(
        &server,
        CircuitBreakerConfig {
            open_wait: Duration::from_millis(200),
            max_open_wait: Duration::from_millis(400),
            ..circuit_config()
        },
    )
    .await;
    send(&s.redis, cmd!("SET", "cb:k", "before")).await.unwrap();
    server.kill();
    fail_until_open(&s).await;
    next(&mut s.events, "circuit_opened").await;

    server.restart();
    // Commands keep coming: rejected while open, one probe at each half-open, until a probe
    // finds the server back.
    let started = Instant::now();
    let reply = loop {
        assert!(started.elapsed() < WIDE, "the circuit never closed");
        match send(&s.redis, cmd!("SET", "cb:k", "after")).await {
            Ok(reply) => break reply,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(reply.is_ok());
    assert_eq!(s.circuit.state(), CircuitState::Closed);
    // It went through half-open: the success was a probe.
    let mut saw_half_open = false;
    loop {
        match next_any(&mut s.events).await {
            EventKind::CircuitHalfOpen => saw_half_open = true,
            EventKind::CircuitClosed { .. } => {
                assert!(saw_half_open, "closed without a probe");
                break;
            }
            _ => {}
        }
    }
    assert!(s.circuit.stats().probes >= 1);
    let got = send(&s.redis, cmd!("GET", "cb:k")).await.unwrap();
    assert_eq!(got.as_str(), Some("after"));
}

async fn next_any(events: &mut MaintenanceEvents) -> EventKind {
    tokio::time::timeout(WIDE, events.recv())
        .await
        .expect("an event")
        .expect("the event stream goes on")
        .kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_start_then_failover_complete_from_the_simulator_opens_and_closes_it() {
    let server = RedisServer::start();
    let (sim, mut s) = through_sim(&server, circuit_config()).await;
    send(&s.redis, cmd!("SET", "cb:azure", "1")).await.unwrap();

    assert_eq!(
        sim.azure(0, &AzureEvent::new(AzureEventKind::Start))
            .unwrap(),
        1
    );
    let EventKind::CircuitOpened { reason } = next(&mut s.events, "circuit_opened").await else {
        unreachable!()
    };
    assert!(reason.contains("NodeMaintenanceStart"), "{reason}");
    let before = s.reached();
    for _ in 0..10 {
        assert!(matches!(
            send(&s.redis, cmd!("GET", "cb:azure")).await,
            Err(Error::CircuitOpen { .. })
        ));
    }
    assert_eq!(s.reached(), before, "nothing was sent while open");

    sim.azure(0, &AzureEvent::new(AzureEventKind::FailoverComplete))
        .unwrap();
    next(&mut s.events, "circuit_closed").await;
    assert_eq!(s.circuit.state(), CircuitState::Closed);
    let got = send(&s.redis, cmd!("GET", "cb:azure")).await.unwrap();
    assert_eq!(got.as_str(), Some("1"));
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongtype_errors_never_open_it() {
    let server = RedisServer::start();
    let mut s = direct(&server, circuit_config()).await;
    send(&s.redis, cmd!("SET", "cb:string", "v")).await.unwrap();
    for _ in 0..50 {
        match send(&s.redis, cmd!("LPUSH", "cb:string", "x")).await {
            Err(Error::Server(e)) => assert_eq!(e.code(), "WRONGTYPE"),
            other => panic!("{other:?}"),
        }
    }
    let stats = s.circuit.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.opened, stats.consecutive_failures), (0, 0));
    assert_eq!(stats.window_failures, 0);
    assert!(stats.window_calls >= 50);
    while let Some(e) = s.events.try_recv() {
        assert!(!e.kind.name().starts_with("circuit"), "{:?}", e.kind);
    }
    assert_eq!(s.reached().1, 51, "every one was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_mode_holds_commands_through_a_short_failover_and_every_one_succeeds() {
    let server = RedisServer::start();
    let (sim, mut s) = through_sim(
        &server,
        CircuitBreakerConfig {
            mode: OpenMode::Wait { max: WIDE },
            ..circuit_config()
        },
    )
    .await;

    // 20 tasks write their own key and read it back, until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let redis = s.redis.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = format!("cb:wait:{t}");
                let (mut done, mut errors) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let value = done.to_string();
                    match redis.clone().oneshot(cmd!("SET", &key, &value)).await {
                        Ok(_) => {}
                        Err(e) => errors.push(format!("SET: {e}")),
                    }
                    match redis.clone().oneshot(cmd!("GET", &key)).await {
                        Ok(r) if r.as_str() == Some(value.as_str()) => done += 1,
                        Ok(r) => errors.push(format!("GET: {r:?}, wanted {value}")),
                        Err(e) => errors.push(format!("GET: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (done, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    sim.azure(0, &AzureEvent::new(AzureEventKind::Start))
        .unwrap();
    next(&mut s.events, "circuit_opened").await;
    // Held, not failed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.circuit.state(), CircuitState::Open);
    let held = s.circuit.stats().held;
    assert!(held > 0, "no command was held");

    // The failover: the node drops every connection; the stack reconnects.
    sim.reset_all(0).unwrap();
    next(&mut s.events, "reconnected").await;
    next(&mut s.events, "circuit_closed").await;
    azure_subscribed(&sim).await;
    sim.azure(0, &AzureEvent::new(AzureEventKind::FailoverComplete))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    for (t, task) in tasks.into_iter().enumerate() {
        let (done, errors) = tokio::time::timeout(WIDE, task)
            .await
            .expect("a task hung")
            .unwrap();
        assert!(errors.is_empty(), "task {t}: {errors:?}");
        assert!(done > 0, "task {t} made no progress");
    }
    let stats = s.circuit.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!(stats.rejected, 0);
    assert!(stats.held >= 20, "{stats:?}");
    sim.shutdown();
}
