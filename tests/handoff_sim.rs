//! HandoffRetry through the maintenance simulator in front of a real redis-server: every node
//! of the simulator serves the same data, so a client that moves keeps its keys.

mod common;

use std::time::Duration;

use common::client::{message_number, Publisher};
use common::events::{handoff_drained, handoff_failed, handoff_switched, next_event};
use common::load::{self, counter, Load, Outcome};
use common::sim::{answer_next_with, handoff_to, moving_until, redis_and_sim, LOADING};
use common::RedisServer;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::{EndpointType, MaintenanceEvents};
use redis_handoff::sim::Simulator;
use redis_handoff::{cmd, Endpoint, EventKind, Maintenance, MaintenanceConfig};
use tower::ServiceExt;

struct Setup {
    _server: RedisServer,
    sim: Simulator,
    redis: HandoffRetry,
    events: MaintenanceEvents,
}

async fn setup(nodes: usize, config: MaintenanceConfig) -> Setup {
    let (server, sim) = redis_and_sim(nodes).await;
    let maintenance = Maintenance::new(config);
    let events = maintenance.subscribe();
    let handoff = HandoffConfig {
        backoff_base: Duration::from_millis(20),
        ..HandoffConfig::default()
    };
    let redis = handoff_to(&sim, &maintenance, handoff).await;
    Setup {
        _server: server,
        sim,
        redis,
        events,
    }
}

fn config(endpoint_type: EndpointType) -> MaintenanceConfig {
    MaintenanceConfig::builder()
        .endpoint_type(endpoint_type)
        .handoff_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// The keys the load's counters live under.
const KEYS: &str = "sim-load";

/// 50 tasks incrementing and reading back their counters, a millisecond apart.
fn start_load(redis: &HandoffRetry, stagger: Duration) -> Load {
    load::start(redis, 50, KEYS, stagger, Duration::from_millis(1))
}

/// Zero failed commands, and each counter holds exactly the increments acknowledged.
async fn assert_no_failures(redis: &HandoffRetry, outcomes: &[Outcome]) {
    for (t, o) in outcomes.iter().enumerate() {
        assert!(o.errors.is_empty(), "task {t}: {:?}", o.errors);
        assert!(o.incr_ok > 0 && o.get_ok > 0, "task {t} made no progress");
        assert_eq!(
            counter(redis, format!("{KEYS}:{t}")).await,
            o.incr_ok,
            "task {t}: counter"
        );
    }
}

async fn moving_with_endpoint(endpoint_type: EndpointType, host: &str) {
    let mut s = setup(2, config(endpoint_type)).await;
    let load = start_load(&s.redis, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grace = Duration::from_secs(2);
    let (moving, seen) = moving_until(&s.sim, &mut s.events, (0, 1), grace, |k| {
        matches!(
            k,
            EventKind::Notification(redis_handoff::Notification::Moving { .. })
        )
    })
    .await;
    let target = Endpoint::new(host, s.sim.node(1).port());
    assert!(
        matches!(&seen, EventKind::Notification(redis_handoff::Notification::Moving { endpoint: Some(e), .. }) if *e == target),
        "{seen:?}"
    );
    next_event(&mut s.events, handoff_switched).await;
    next_event(&mut s.events, handoff_drained).await;
    // The grace period ends and node 0 closes its connections: nobody notices.
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(target));
    assert_eq!(s.redis.configured_endpoint(), &s.sim.node(0).endpoint());
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_an_ip_endpoint_moves_every_command_with_none_failed() {
    moving_with_endpoint(EndpointType::InternalIp, "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_an_fqdn_endpoint_moves_every_command_with_none_failed() {
    moving_with_endpoint(EndpointType::InternalFqdn, "localhost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_with_a_null_endpoint_reconnects_to_the_configured_address_at_half_time() {
    let mut s = setup(1, config(EndpointType::None)).await;
    let load = start_load(&s.redis, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = tokio::time::Instant::now();
    let moving = s
        .sim
        .moving_null(0, Duration::from_secs(2), Duration::from_millis(500))
        .await
        .unwrap();
    next_event(&mut s.events, handoff_switched).await;
    let switched_after = sent.elapsed();
    // Half of the 2 s grace, less up to a quarter of that for jitter: well before the close.
    assert!(
        switched_after >= Duration::from_millis(600)
            && switched_after < Duration::from_millis(1900),
        "switched after {switched_after:?}"
    );
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_a_null_moving_waits_is_replaced_at_once() {
    let mut s = setup(1, config(EndpointType::None)).await;
    let load = start_load(&s.redis, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A 60 s grace: the stack would wait about 30 s before reconnecting.
    let moving = s
        .sim
        .moving_null(0, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = tokio::time::Instant::now();
    // The node drops the connection long before that.
    assert!(s.sim.reset_all(0).unwrap() >= 1);
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffSwitched { .. })
    })
    .await;
    let replaced_after = sent.elapsed();
    moving.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    // Far sooner than half the grace period; the bound is wide for a slow machine.
    assert!(
        replaced_after < Duration::from_secs(15),
        "replaced after {replaced_after:?}"
    );
    // Commands in flight when the reset came may have run; every other one went through.
    for (t, o) in outcomes.iter().enumerate() {
        assert_eq!(
            o.errors.len() as u64,
            o.incr_lost,
            "task {t}: {:?}",
            o.errors
        );
        assert!(o.get_ok > 0, "task {t} made no progress");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_that_refuses_fails_the_handoff_and_the_old_connection_keeps_serving() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    s.sim.refuse(1).unwrap();
    let load = start_load(&s.redis, Duration::ZERO);
    let grace = Duration::from_secs(30);
    let (moving, failed) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_failed).await;
    assert!(
        matches!(failed, EventKind::HandoffFailed { attempts: 3, .. }),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    moving.abort();
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_that_blackholes_times_out_and_the_old_connection_keeps_serving() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    s.sim.blackhole(1).unwrap();
    let load = start_load(&s.redis, Duration::ZERO);
    let started = tokio::time::Instant::now();
    let grace = Duration::from_secs(30);
    let (moving, failed) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_failed).await;
    let took = started.elapsed();
    match &failed {
        EventKind::HandoffFailed {
            attempts, error, ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(
                matches!(error, redis_handoff::Error::ConnectTimeout { .. }),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Three attempts of 500 ms each, bounded: not stuck on the blackhole.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let outcomes = load.finish().await;
    moving.abort();
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(0).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_connection_killed_mid_drain_retries_safe_commands_and_never_doubles_an_incr() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    // Slow replies on node 0, so commands are still owed when the switch happens.
    s.sim.latency(0, Duration::from_millis(400)).unwrap();
    // Staggered, so that at any moment some tasks are reading and others writing.
    let load = start_load(&s.redis, Duration::from_millis(7));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let grace = Duration::from_secs(30);
    let (moving, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_switched).await;
    let killed = s.sim.reset_all(0).unwrap();
    assert!(killed >= 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;
    moving.abort();

    let mut lost = 0;
    for (t, o) in outcomes.iter().enumerate() {
        for e in &o.errors {
            // Only INCRs fail, and they say they may have run; GETs were sent again.
            assert!(
                e.starts_with("INCR: ") && e.contains("may have been executed"),
                "task {t}: {e}"
            );
        }
        lost += o.incr_lost;
        let value = counter(&s.redis, format!("{KEYS}:{t}")).await;
        assert!(
            value >= o.incr_ok && value <= o.incr_ok + o.incr_lost,
            "task {t}: counter {value}, acknowledged {}, lost {}",
            o.incr_ok,
            o.incr_lost
        );
    }
    let errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    assert!(lost > 0, "some INCRs were in flight on the old connection (errors {errors}, killed {killed}, stats {:?})", s.redis.stats());
    assert!(s.redis.stats().retried > 0, "some GETs were sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_movings_in_a_row_end_on_the_last_node_with_none_failed() {
    let mut s = setup(3, config(EndpointType::InternalIp)).await;
    let load = start_load(&s.redis, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grace = Duration::from_secs(2);
    let (first, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_switched).await;
    let (second, _) = moving_until(&s.sim, &mut s.events, (1, 2), grace, handoff_switched).await;
    first.done().await;
    second.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(2).endpoint()));
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_every_message_published_across_the_move() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    let mut pushes = s.redis.pushes();
    s.redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "orders"))
        .await
        .unwrap();
    // The publisher talks to the backend directly: it is not moving.
    let publisher = Publisher::start(&s._server.url(), "orders", Duration::from_millis(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grace = Duration::from_secs(2);
    let (moving, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_drained).await;
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = publisher.stop().await;

    let mut seen = std::collections::BTreeSet::new();
    while (seen.len() as u64) < total {
        let Ok(frame) = tokio::time::timeout(Duration::from_secs(10), pushes.recv()).await else {
            let missing: Vec<u64> = (0..total).filter(|i| !seen.contains(i)).collect();
            panic!(
                "{} of {total} messages never arrived: {:?}",
                missing.len(),
                &missing[..missing.len().min(20)]
            );
        };
        if let Some(n) = message_number(&frame.unwrap()) {
            seen.insert(n);
        }
    }
    assert_eq!(seen.len() as u64, total, "every message arrived");
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(1).endpoint()));
}

/// The numbers of the `message` pushes a subscriber got, read all along in a task of their
/// own so that its queue never falls behind.
struct Collected {
    got: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collected {
    /// Collects what `redis` gets once subscribed to `channel`.
    async fn subscribe(redis: &HandoffRetry, channel: &str) -> Collected {
        let collected = Collected::start(redis.pushes());
        redis
            .clone()
            .oneshot(cmd!("SUBSCRIBE", channel))
            .await
            .unwrap();
        collected
    }

    fn start(mut pushes: redis_handoff::connection::Pushes) -> Collected {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let got = got.clone();
            tokio::spawn(async move {
                while let Some(frame) = pushes.recv().await {
                    if let Some(n) = message_number(&frame) {
                        got.lock().unwrap().push(n);
                    }
                }
            })
        };
        Collected { got, task }
    }

    /// Waits (at most `wait`) until every number in `owed` came; what came, in order.
    async fn wait_for(self, owed: std::ops::Range<u64>, wait: Duration) -> Vec<u64> {
        let missing = || {
            let got = self.got.lock().unwrap();
            let seen: std::collections::BTreeSet<u64> = got.iter().copied().collect();
            owed.clone().filter(|n| !seen.contains(n)).count()
        };
        let deadline = tokio::time::Instant::now() + wait;
        while missing() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task.abort();
        let got = self.got.lock().unwrap().clone();
        got
    }
}

/// Publishes `0, 1, 2, ...` to `channel` straight to the backend at `url`, one after the
/// other, pausing `pause` after each (none: as fast as one connection goes).
struct Ticks {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    published: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticks {
    async fn start(url: &str, channel: &'static str, pause: Option<Duration>) -> Ticks {
        use std::sync::atomic::Ordering;
        let conn = redis_handoff::Connection::connect(url).await.unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = {
            let (stop, published) = (stop.clone(), published.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    conn.send(cmd!("PUBLISH", channel, n)).await.unwrap();
                    n += 1;
                    published.store(n, Ordering::Relaxed);
                    if let Some(pause) = pause {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        };
        Ticks {
            stop,
            published,
            task,
        }
    }

    /// How many were published so far.
    fn published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops; how many were published in all.
    async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let published = self.published.clone();
        self.task.await.unwrap();
        published.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Both connections deliver the channel while one replaces the other (make before break), and
/// two I/O tasks read them: the new one's messages wait until the old one has delivered its
/// last, so the subscriber sees the channel in publication order, the overlap's messages
/// repeated after it, never an older one after a newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_published_flat_out_arrives_in_order_across_six_moves_over_seven_nodes() {
    let mut s = setup(7, config(EndpointType::InternalIp)).await;
    let collected = Collected::subscribe(&s.redis, "ticks").await;
    // The overlap of the two connections is full of messages.
    let ticks = Ticks::start(&s._server.url(), "ticks", None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grace = Duration::from_secs(1);
    for hop in 0..6 {
        let (moving, _) = moving_until(
            &s.sim,
            &mut s.events,
            (hop, hop + 1),
            grace,
            handoff_drained,
        )
        .await;
        moving.done().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let total = ticks.stop().await;
    let got = collected.wait_for(0..total, Duration::from_secs(10)).await;

    let (mut seen, mut highest) = (std::collections::BTreeSet::new(), None::<u64>);
    let (mut repeated, mut out_of_order) = (0u64, Vec::new());
    for &n in &got {
        if !seen.insert(n) {
            repeated += 1;
        } else if highest.is_some_and(|h| n < h) {
            out_of_order.push(n);
        }
        highest = highest.max(Some(n));
    }
    assert_eq!(
        seen.len() as u64,
        total,
        "every message arrived ({repeated} repeated)"
    );
    assert!(
        out_of_order.is_empty(),
        "{} of {total} messages came after a newer one (first {:?}; {repeated} repeated)",
        out_of_order.len(),
        &out_of_order[..out_of_order.len().min(10)]
    );
    assert_eq!(s.redis.stats().handoffs, 6);
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(6).endpoint()));
}

/// An old connection that goes silent during the handoff never answers its unsubscribes: the
/// new connection's messages are held only for a bounded time, then passed on, while the old
/// one still waits for its end (the grace period's close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_for_an_old_connection_that_went_silent_are_passed_on_after_a_bound() {
    let config = MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .handoff_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut s = setup(2, config).await;
    let collected = Collected::subscribe(&s.redis, "ticks").await;
    let ticks = Ticks::start(&s._server.url(), "ticks", Some(Duration::from_millis(1))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The new node answers slowly, so that the old connection goes dark before the switch.
    s.sim.latency(1, Duration::from_millis(100)).unwrap();
    let moving = s.sim.moving(0, 1, Duration::from_secs(8)).await.unwrap();
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffStarted { .. })
    })
    .await;
    assert_eq!(s.sim.blackhole_connections(0).unwrap(), 1);
    next_event(&mut s.events, |k| {
        matches!(k, EventKind::HandoffConnected { .. })
    })
    .await;
    // Published once the new connection was subscribed: owed, whatever the old one does.
    let from = ticks.published();
    next_event(&mut s.events, handoff_switched).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to = ticks.stop().await;
    assert!(to > from + 10, "published {from}..{to}");

    // Well within the old connection's grace period of 8 s, the hold's bound (1 s) is past.
    let got = collected.wait_for(from..to, Duration::from_secs(5)).await;
    let missing = (from..to).filter(|n| !got.contains(n)).count();
    assert_eq!(missing, 0, "messages published after the switch never came");
    while let Some(event) = s.events.try_recv() {
        assert!(
            !handoff_drained(&event.kind),
            "the old connection was to be still waiting for its end: {event:?}"
        );
    }
    let owed_order: Vec<u64> = got.iter().copied().filter(|n| *n >= from).collect();
    assert!(
        owed_order.windows(2).all(|w| w[0] < w[1]),
        "the new connection's messages in order: {owed_order:?}"
    );
    moving.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_failover_complete_refreshes_the_connection_with_none_failed() {
    use redis_handoff::maintenance::AzureEvents;
    use redis_handoff::sim::{AzureEvent, AzureEventKind, Scope};
    let config = MaintenanceConfig::builder()
        .azure_events(AzureEvents::On)
        .build()
        .unwrap();
    let mut s = setup(1, config).await;
    let load = start_load(&s.redis, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = s
        .sim
        .azure(
            Scope::All,
            &AzureEvent::new(AzureEventKind::FailoverComplete),
        )
        .unwrap();
    assert_eq!(
        sent, 1,
        "the stack's connection is subscribed to AzureRedisEvents"
    );
    let switched = next_event(&mut s.events, handoff_switched).await;
    // A fresh connection to the configured address, made before the old one was dropped.
    assert!(
        matches!(&switched, EventKind::HandoffSwitched { to, .. } if *to == s.sim.node(0).endpoint()),
        "{switched:?}"
    );
    next_event(&mut s.events, handoff_drained).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_no_failures(&s.redis, &outcomes).await;
    assert_eq!(s.redis.stats().handoffs, 1);
}

/// A handoff stack over one simulated node whose next frames are answered with `replies`
/// (raw RESP) rather than by the server.
async fn answered_with(replies: &[&str]) -> (RedisServer, Simulator, HandoffRetry) {
    let (server, sim) = redis_and_sim(1).await;
    let http = sim.serve_http("127.0.0.1:0").await.unwrap();
    let redis = common::client::handoff_to_url(
        &sim.node(0).url(),
        &Maintenance::default(),
        HandoffConfig::default(),
    )
    .await;
    answer_next_with(http.addr(), replies).await;
    (server, sim, redis)
}

#[tokio::test]
async fn a_command_refused_while_the_server_loads_is_sent_again_and_runs_once() {
    // Answered twice as a restarted server reading its data back answers.
    let (_server, _sim, redis) = answered_with(&[LOADING, LOADING]).await;

    let reply = redis
        .clone()
        .oneshot(cmd!("INCR", "loading:n"))
        .await
        .unwrap();
    assert_eq!(reply.as_i64(), Some(1), "run once, after the refusals");
    assert_eq!(redis.stats().retried, 2);
    // A refusal is not an error that ran: it never reaches the caller while tries are left.
    let again = redis
        .clone()
        .oneshot(cmd!("INCR", "loading:n"))
        .await
        .unwrap();
    assert_eq!(again.as_i64(), Some(2));
}

#[tokio::test]
async fn a_refusal_that_outlasts_its_tries_goes_to_the_caller_as_not_run() {
    // Nine refusals: the first try and eight more, about 1.9 s of waits.
    let (_server, _sim, redis) = answered_with(&[LOADING; 9]).await;

    let error = redis
        .clone()
        .oneshot(cmd!("INCR", "loading:long"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, redis_handoff::Error::Server(e) if e.code() == "LOADING"),
        "{error:?}"
    );
    assert!(error.certainly_not_executed(), "{error:?}");
    assert_eq!(redis.stats().retried, 8);
    let reply = redis
        .clone()
        .oneshot(cmd!("INCR", "loading:long"))
        .await
        .unwrap();
    assert_eq!(reply.as_i64(), Some(1), "the refused one never ran");
}

#[tokio::test]
async fn a_slot_refusal_goes_to_the_caller_at_once_as_not_run() {
    // As a cluster node answers a multi-key command whose keys a migration has split.
    let tryagain = "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
    let (_server, _sim, redis) = answered_with(&[tryagain]).await;

    let error = redis
        .clone()
        .oneshot(cmd!("INCR", "tryagain:n"))
        .await
        .unwrap_err();
    // Not waited out here (that is the cluster's, with the slot map): the refusal itself, which
    // says the command did not run, rather than a timeout that says it may have.
    assert!(
        matches!(&error, redis_handoff::Error::Server(e) if e.code() == "TRYAGAIN"),
        "{error:?}"
    );
    assert!(error.certainly_not_executed(), "{error:?}");
    assert_eq!(redis.stats().retried, 0);
    let reply = redis
        .clone()
        .oneshot(cmd!("INCR", "tryagain:n"))
        .await
        .unwrap();
    assert_eq!(reply.as_i64(), Some(1), "the refused one never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_made_and_dropped_during_a_handoff_are_all_in_place_after_it() {
    let mut s = setup(2, config(EndpointType::InternalIp)).await;
    s.redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "early"))
        .await
        .unwrap();
    // The new node answers slowly, so preparing the new connection (its handshake, then
    // `early` restored on it) takes a while; subscriptions keep changing meanwhile.
    s.sim.latency(1, Duration::from_millis(100)).unwrap();
    let switched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let redis = s.redis.clone();
        let switched = switched.clone();
        tokio::spawn(async move {
            let mut made = 0usize;
            while !switched.load(std::sync::atomic::Ordering::Relaxed) || made < 5 {
                let channel = format!("churn:{made}");
                redis
                    .clone()
                    .oneshot(cmd!("SUBSCRIBE", &channel))
                    .await
                    .unwrap();
                // Every third one is dropped again at once.
                if made % 3 == 2 {
                    redis
                        .clone()
                        .oneshot(cmd!("UNSUBSCRIBE", &channel))
                        .await
                        .unwrap();
                }
                made += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            made
        })
    };
    let grace = Duration::from_secs(30);
    let (moving, _) = moving_until(&s.sim, &mut s.events, (0, 1), grace, handoff_switched).await;
    switched.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = churn.await.unwrap();
    next_event(&mut s.events, handoff_drained).await;
    moving.abort();
    s.sim.latency(1, Duration::ZERO).unwrap();
    assert_eq!(s.redis.current_endpoint(), Some(s.sim.node(1).endpoint()));
    // Counted at the backend: the old connection is closed, so only the new one subscribes.
    let backend = redis_handoff::Connection::connect(&s._server.url())
        .await
        .unwrap();
    let channels: Vec<String> = (0..made).map(|i| format!("churn:{i}")).collect();
    let counts = backend
        .send(cmd!("PUBSUB", "NUMSUB", "early").args_from(&channels))
        .await
        .unwrap();
    let counts = counts.as_array().unwrap();
    let numsub = |i: usize| match &counts[2 * i + 1] {
        redis_handoff::frame::BytesFrame::Number { data, .. } => *data,
        other => panic!("{other:?}"),
    };
    assert_eq!(numsub(0), 1, "early");
    for i in 0..made {
        let expected = if i % 3 == 2 { 0 } else { 1 };
        assert_eq!(numsub(i + 1), expected, "churn:{i} of {made}");
    }
}
