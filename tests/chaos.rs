//! Chaos: faults played by the simulator in front of real redis-server processes, while many
//! tasks run commands and subscribers count their messages. The checks are the same for every
//! case (see `common::chaos`); each case prints its row of the reliability table (run with
//! `--nocapture` to see them) before it asserts.
#![cfg(feature = "sim")]

mod common;

use std::time::Duration;

use common::chaos::{
    before_fault, finish_all, pause, recovered, start_load, wait_for, Case, Churn, Client, Demand,
    Feed, Load, LoadSpec, Subscriber,
};
use common::sim::{demux_to, sim_over};
use common::RedisServer;
use redis_handoff::connection::Pushes;
use redis_handoff::handoff::HandoffConfig;
use redis_handoff::maintenance::{AzureEvents, EndpointType};
use redis_handoff::pool::Pool;
use redis_handoff::sim::{AzureEvent, AzureEventKind, Moving, Simulator};
use redis_handoff::{cmd, ConnectOptions, EventKind, Maintenance, MaintenanceConfig, Stack};

/// The longest a stack may take to notice a fault and get back on its feet: wide, it takes
/// milliseconds to seconds.
const RECOVERY: Duration = Duration::from_secs(30);

// ===== the rig: a redis-server, the simulator in front of it, the stack through it =====

struct Rig {
    server: RedisServer,
    sim: Simulator,
    stack: Stack,
}

impl Rig {
    /// A simulator of `nodes` nodes over a fresh server, and the recommended stack on node 0.
    async fn start(nodes: usize) -> Rig {
        Rig::over(RedisServer::start(), nodes, Duration::from_secs(1)).await
    }

    /// The same over `server`, with `timeout` as the stack's command timeout.
    async fn over(server: RedisServer, nodes: usize, timeout: Duration) -> Rig {
        Rig::with(
            server,
            nodes,
            timeout,
            ConnectOptions::default().push_buffer,
        )
        .await
    }

    /// The same with room for `push_buffer` pushes waiting for their subscribers.
    async fn with(server: RedisServer, nodes: usize, timeout: Duration, push_buffer: usize) -> Rig {
        let sim = sim_over(&server, nodes).await;
        let mut options = ConnectOptions::from_url(&sim.node(0).url()).unwrap();
        options.push_buffer = push_buffer;
        let maintenance = MaintenanceConfig::builder()
            .endpoint_type(EndpointType::InternalIp)
            .handoff_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let stack = Stack::builder(options)
            .maintenance(maintenance)
            .handoff(HandoffConfig {
                backoff_base: Duration::from_millis(20),
                ..HandoffConfig::default()
            })
            .timeout(timeout)
            .connect()
            .await
            .expect("the stack connects through the simulator");
        Rig { server, sim, stack }
    }

    fn pushes(&self) -> Pushes {
        self.stack.handoff().pushes()
    }

    /// The node the stack's commands go to now.
    fn node_now(&self) -> Option<usize> {
        let current = self.stack.handoff().current_endpoint()?;
        self.sim
            .nodes()
            .iter()
            .find(|n| n.endpoint() == current)
            .map(|n| n.index())
    }

    fn reconnects(&self) -> u64 {
        self.stack.handoff().stats().reconnects
    }

    fn handoffs(&self) -> u64 {
        self.stack.handoff().stats().handoffs
    }

    /// Waits until the stack has reconnected more than `before` times and has a connection.
    async fn reconnected_since(&self, before: u64) -> bool {
        let h = self.stack.handoff();
        wait_for(RECOVERY, || {
            h.stats().reconnects > before && h.current_endpoint().is_some()
        })
        .await
    }

    /// Waits until no handoff has switched for a second (a backlog of MOVINGs is worked off).
    async fn settled(&self) -> bool {
        let mut last = (self.handoffs(), std::time::Instant::now());
        wait_for(RECOVERY, || {
            let now = self.handoffs();
            if now != last.0 {
                last = (now, std::time::Instant::now());
            }
            last.1.elapsed() >= Duration::from_secs(1)
        })
        .await
    }

    /// A `MOVING` from the node the stack is on to the other one of two, with a grace period
    /// long enough that only the stack closes its old connections.
    async fn moving_away(&self) -> (Moving, usize) {
        let from = self.node_now().unwrap_or(0);
        let to = 1 - from;
        let moving = self
            .sim
            .moving(from, to, Duration::from_secs(30))
            .await
            .unwrap();
        (moving, to)
    }
}

/// `n` publishers to channels `{prefix}:ch{i}`, a message every 2 ms, straight to the server.
fn steady_feeds(server: &RedisServer, prefix: &str, n: usize) -> Vec<Feed> {
    (0..n)
        .map(|i| {
            let mut f = Feed::new(&server.url(), &format!("{prefix}:ch{i}"));
            f.steady(Duration::from_millis(2));
            f
        })
        .collect()
}

/// One subscriber per feed, each subscribed through `client` with a push stream of its own.
async fn subscribe_all<C: Client>(
    client: &C,
    feeds: &[Feed],
    mut pushes: impl FnMut() -> Pushes,
) -> Vec<Subscriber> {
    let mut subs = Vec::new();
    for f in feeds {
        subs.push(Subscriber::subscribe(client, pushes(), f).await);
    }
    subs
}

/// Whether a SET and a GET of a fresh key work through `client` (trying for a while: a circuit
/// opened by the fault may still be open).
async fn later_commands_work<C: Client>(client: &C) -> bool {
    let deadline = std::time::Instant::now() + RECOVERY;
    let mut i = 0;
    while std::time::Instant::now() < deadline {
        i += 1;
        let key = format!("chaos:probe:{i}");
        let set = client.command(cmd!("SET", &key, i)).await;
        let get = client.command(cmd!("GET", &key)).await;
        if set.is_ok_and(|r| r.is_ok()) && get.is_ok_and(|r| r.as_i64() == Some(i)) {
            return true;
        }
        pause(300).await;
    }
    false
}

/// Ends a case: stops the load and the feeds, checks later commands, every counter and every
/// subscriber, prints the row and asserts.
async fn conclude<C: Client>(
    mut case: Case,
    client: &C,
    url: &str,
    load: Load,
    mut feeds: Vec<Feed>,
    subs: Vec<Subscriber>,
    demand: Demand,
) {
    let outcomes = load.finish().await;
    case.expect("later commands work", later_commands_work(client).await);
    for f in &mut feeds {
        f.stop().await;
    }
    let subs = finish_all(subs).await;
    let tally = case.tally(url, outcomes, subs).await;
    case.conclude(&tally, demand);
}

/// The reasons of the disconnects the stack reported since `events` was taken.
fn disconnect_reasons(events: &mut redis_handoff::maintenance::MaintenanceEvents) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = events.try_recv() {
        if let EventKind::Disconnected { reason } = &e.kind {
            out.push(reason.to_string());
        }
    }
    out
}

// ===== 1. an established connection blackholed =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_blackholed_both_ways_is_given_up_and_the_stack_carries_on() {
    let mut case = Case::begin("1. established connection blackholed both ways").await;
    let r = Rig::start(1).await;
    let feeds = steady_feeds(&r.server, "c1", 2);
    let mut subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c1", LoadSpec::commands(32));
    pause(300).await;

    before_fault(&mut subs).await;
    let before = r.reconnects();
    // The node keeps serving new connections: only the path of this one went silent.
    let dark = r.sim.blackhole_connections(0).unwrap();
    case.expect("the stack's connection went dark", dark >= 1);
    let back = r.reconnected_since(before).await;
    case.expect(
        "the stack gives up the silent connection and reconnects (within 30 s)",
        back,
    );
    if back {
        recovered(&mut subs);
    }
    pause(500).await;
    // The path heals: what the dark connection held goes through (or finds it closed).
    r.sim.restore(0).unwrap();
    pause(300).await;
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::ClearErrors,
    )
    .await;
}

// ===== 2. connections reset mid-pipeline =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_pipeline_fail_pipelines_clearly_and_lose_no_write() {
    let mut case = Case::begin("2. reset mid-pipeline").await;
    let r = Rig::start(1).await;
    let feeds = steady_feeds(&r.server, "c2", 2);
    let mut subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let spec = LoadSpec {
        tasks: 16,
        pipeline: 100,
        pause: Duration::from_millis(1),
    };
    let load = start_load(&r.stack, "c2", spec);
    // Replies wait a little, so that pipelines are in flight when the resets come.
    r.sim.latency(0, Duration::from_millis(30)).unwrap();
    pause(300).await;
    for _ in 0..3 {
        let busy = wait_for(Duration::from_secs(5), || r.stack.handoff().in_flight() > 0).await;
        case.expect("pipelines are in flight before the reset", busy);
        before_fault(&mut subs).await;
        let before = r.reconnects();
        let reset = r.sim.reset_all(0).unwrap();
        case.expect("the stack's connection was reset", reset >= 1);
        let back = r.reconnected_since(before).await;
        case.expect("the stack reconnects after each reset (within 30 s)", back);
        if back {
            recovered(&mut subs);
        }
        pause(300).await;
    }
    r.sim.restore(0).unwrap();
    pause(200).await;
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::ClearErrors,
    )
    .await;
}

// ===== 3. replies trickled one byte at a time =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_trickled_one_byte_at_a_time_are_all_read_whole_and_in_order() {
    let case = Case::begin("3. replies trickled byte by byte").await;
    // A wide command timeout: this case is about framing, not speed.
    let r = Rig::over(RedisServer::start(), 1, Duration::from_secs(10)).await;
    let feeds = steady_feeds(&r.server, "c3", 2);
    let subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c3", LoadSpec::commands(32));
    pause(300).await;
    r.sim.trickle(0, Some(Duration::ZERO)).unwrap();
    pause(2000).await;
    r.sim.restore(0).unwrap();
    pause(300).await;
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::NoFailures,
    )
    .await;
}

// ===== 4. the redis-server killed and restarted =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_on_its_port_is_reconnected_to_and_keeps_every_write() {
    let mut case = Case::begin("4. redis-server killed and restarted").await;
    // Every acknowledged write is on disk before its reply, so a kill loses none of them.
    let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut r = Rig::over(server, 1, Duration::from_secs(1)).await;
    let feeds = steady_feeds(&r.server, "c4", 2);
    let mut subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c4", LoadSpec::commands(16));
    pause(300).await;

    before_fault(&mut subs).await;
    let before = r.reconnects();
    r.server.kill();
    pause(500).await;
    r.server.restart();
    let back = r.reconnected_since(before).await;
    case.expect(
        "the stack reconnects to the restarted server (within 30 s)",
        back,
    );
    if back {
        recovered(&mut subs);
    }
    pause(500).await;
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::ClearErrors,
    )
    .await;
}

// ===== 5. twenty MOVINGs in two seconds =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_movings_in_two_seconds_back_and_forth_fail_nothing() {
    let mut case = Case::begin("5. 20 MOVINGs in 2 s across 2 nodes").await;
    let r = Rig::start(2).await;
    let feeds = steady_feeds(&r.server, "c5", 2);
    let subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c5", LoadSpec::commands(32));
    pause(300).await;

    let mut movings = Vec::new();
    for _ in 0..20 {
        movings.push(r.moving_away().await.0);
        pause(100).await;
    }
    case.expect(
        "the handoffs settle after the storm (within 30 s)",
        r.settled().await,
    );
    // The stack still follows a MOVING heard on the connection it is on now.
    let before = r.handoffs();
    let (last, to) = r.moving_away().await;
    movings.push(last);
    let moved = wait_for(RECOVERY, || {
        r.handoffs() > before && r.node_now() == Some(to)
    })
    .await;
    case.expect(
        "a MOVING after the storm still moves the stack (within 30 s)",
        moved,
    );
    pause(300).await;
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    for m in &movings {
        m.abort();
    }
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::NoFailures,
    )
    .await;
}

// ===== 6. a Pub/Sub flood while a MOVING arrives =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_in_a_flood_of_ten_thousand_messages_moves_the_stack_and_loses_no_message() {
    let mut case = Case::begin("6. 10,000-message Pub/Sub flood with a MOVING").await;
    // Room for the whole burst: what this case tests is that the handoff loses nothing, not
    // whether the subscriber task keeps up with a 10,000-message burst on a loaded machine
    // (beyond the buffer, pushes are dropped and counted, as documented).
    let r = Rig::with(RedisServer::start(), 2, Duration::from_secs(1), 16_384).await;
    let mut flood = Feed::new(&r.server.url(), "c6:flood");
    let subs = vec![Subscriber::subscribe(&r.stack, r.pushes(), &flood).await];
    let load = start_load(&r.stack, "c6", LoadSpec::commands(16));
    pause(200).await;

    // All of it in one pipeline: the server writes it as one burst.
    flood.flood(10_000, 10_000);
    // The MOVING goes out while the burst is on its way to the client.
    let flowing = wait_for(Duration::from_secs(10), || subs[0].received() >= 1_500).await;
    case.expect("the flood reaches the subscriber", flowing);
    let before = r.handoffs();
    let moving = r.sim.moving(0, 1, Duration::from_secs(3)).await.unwrap();
    let moved = wait_for(RECOVERY, || {
        r.handoffs() > before && r.node_now() == Some(1)
    })
    .await;
    case.expect(
        "the MOVING sent among the flood moves the stack to node 1 (within 30 s)",
        moved,
    );
    case.expect(
        "the flood is published (within 30 s)",
        flood.wait(RECOVERY).await,
    );
    // Node 0 closes its connections at the end of the grace period.
    moving.done().await;
    pause(300).await;
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        vec![flood],
        subs,
        Demand::NoFailures,
    )
    .await;
}

// ===== 7. SUBSCRIBE/UNSUBSCRIBE churn during handoffs =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_unsubscribe_churn_during_handoffs_keeps_every_subscription_whole() {
    let mut case = Case::begin("7. SUBSCRIBE/UNSUBSCRIBE churn during handoffs").await;
    let r = Rig::start(2).await;
    let feeds = steady_feeds(&r.server, "c7", 8);
    let churn = Churn::start(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c7", LoadSpec::commands(16));
    pause(300).await;

    let mut movings = Vec::new();
    for _ in 0..8 {
        movings.push(r.moving_away().await.0);
        pause(250).await;
    }
    case.expect("the handoffs settle (within 30 s)", r.settled().await);
    let subs = match churn.stop().await {
        Ok(subs) => subs,
        Err(e) => {
            case.expect(e, false);
            Vec::new()
        }
    };
    case.note(format!("stats {:?}", r.stack.handoff().stats()));
    for m in &movings {
        m.abort();
    }
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::NoFailures,
    )
    .await;
}

// ===== 8. a pool of 32 through an Azure failover =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_32_through_an_azure_failover_complete_fails_nothing() {
    let mut case = Case::begin("8. pool of 32, Azure FailoverComplete").await;
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let config = MaintenanceConfig::builder()
        .azure_events(AzureEvents::On)
        .build()
        .unwrap();
    let maintenance = Maintenance::new(config);
    let pool = Pool::connect(
        demux_to(&sim, 0, &maintenance),
        maintenance.clone(),
        32,
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    let feeds = steady_feeds(&server, "c8", 2);
    let subs = subscribe_all(&pool, &feeds, || pool.pushes()).await;
    let load = start_load(&pool, "c8", LoadSpec::commands(32));
    pause(300).await;

    let heard = sim
        .azure(0, &AzureEvent::new(AzureEventKind::FailoverComplete))
        .unwrap();
    case.note(format!(
        "{heard} connections subscribed to AzureRedisEvents heard it"
    ));
    case.expect("the pool's connections hear the event", heard >= 1);
    let refreshed = wait_for(RECOVERY, || {
        pool.stacks().iter().all(|s| s.stats().handoffs >= 1)
    })
    .await;
    case.expect(
        "every connection of the pool is refreshed (within 30 s)",
        refreshed,
    );
    pause(300).await;
    conclude(
        case,
        &pool,
        &server.url(),
        load,
        feeds,
        subs,
        Demand::NoFailures,
    )
    .await;
}

// ===== 9. hostile frames =====

/// Sends `frame` (or garbage, when None) to the stack's connection under load; the connection
/// must close with a protocol error, the stack reconnect and carry on.
async fn hostile(name: &str, frame: Option<Vec<u8>>) {
    let mut case = Case::begin(name).await;
    let r = Rig::start(1).await;
    let mut events = r.stack.maintenance().subscribe();
    let feeds = steady_feeds(&r.server, "c9", 1);
    let mut subs = subscribe_all(&r.stack, &feeds, || r.pushes()).await;
    let load = start_load(&r.stack, "c9", LoadSpec::commands(16));
    pause(300).await;

    before_fault(&mut subs).await;
    let before = r.reconnects();
    let got = match frame {
        Some(bytes) => r.sim.send_raw(0, bytes).unwrap(),
        None => r.sim.garbage(0).unwrap(),
    };
    case.expect("the stack's connection was sent the frame", got >= 1);
    let back = r.reconnected_since(before).await;
    case.expect(
        "the connection is closed and the stack reconnects (within 30 s)",
        back,
    );
    if back {
        recovered(&mut subs);
    }
    let reasons = disconnect_reasons(&mut events);
    case.expect(
        "the disconnect is reported as a protocol error",
        reasons.iter().any(|r| r.contains("protocol error")),
    );
    case.note(format!("disconnects {reasons:?}"));
    pause(500).await;
    conclude(
        case,
        &r.stack,
        &r.server.url(),
        load,
        feeds,
        subs,
        Demand::ClearErrors,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_string_header_beyond_the_frame_limit_closes_the_connection_clearly() {
    hostile(
        "9a. oversized bulk header ($4000000000)",
        Some(b"$4000000000\r\nabc".to_vec()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_deeper_than_the_limit_closes_the_connection_clearly() {
    let mut deep = b"*1\r\n".repeat(100);
    deep.extend_from_slice(b":1\r\n");
    hostile("9b. nesting 100 deep", Some(deep)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_element_count_bomb_closes_the_connection_clearly() {
    let mut bomb = b"*100000000\r\n".to_vec();
    bomb.extend_from_slice(&b":1\r\n".repeat(16));
    hostile("9c. element-count bomb (*100000000)", Some(bomb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_between_replies_closes_the_connection_clearly() {
    hostile("9d. garbage between replies", None).await;
}
