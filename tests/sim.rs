//! The maintenance simulator against real redis-server backends, seen by a bare RESP3 client.
#![cfg(feature = "sim")]

mod common;

use std::time::{Duration, Instant};

use common::{encode, frame_len, show, RawClient, RedisServer};
use redis_handoff::sim::{
    AzureEvent, AzureEventKind, Backend, EndpointType, Scope, SimError, Simulator,
};

async fn sim_over(server: &RedisServer, nodes: usize) -> Simulator {
    Simulator::builder()
        .backend(Backend::redis(server.addr()))
        .nodes(nodes)
        .migrate_latency(Duration::from_millis(300))
        .start()
        .await
        .expect("simulator starts")
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn moving(seq: i64, time: i64, endpoint: Option<&str>) -> Vec<u8> {
    let end = endpoint.map_or("_\r\n".to_string(), bulk);
    format!(">4\r\n$6\r\nMOVING\r\n:{seq}\r\n:{time}\r\n{end}").into_bytes()
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn migrate_sends_migrating_then_migrated_to_opted_in_clients_only() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let addr = sim.node_addr(0);
    let mut opted = RawClient::opted_in(addr, "internal-ip").await;
    let mut plain = RawClient::resp3(addr).await;

    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate(0, Duration::from_millis(800)).await })
    };
    assert_eq!(
        show(&opted.frame().await),
        show(b">4\r\n$9\r\nMIGRATING\r\n:1\r\n:1\r\n*1\r\n$1\r\n1\r\n")
    );
    // Replies are slower while the shard migrates.
    let started = Instant::now();
    assert_eq!(&plain.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "PING took {:?} during a migration",
        started.elapsed()
    );
    assert_eq!(migration.await.unwrap().unwrap(), 1);
    assert_eq!(
        show(&opted.frame().await),
        show(b">3\r\n$8\r\nMIGRATED\r\n:1\r\n*1\r\n$1\r\n1\r\n")
    );
    assert!(
        plain.silent_for(QUIET).await,
        "a client that did not opt in got {}",
        show(plain.leftover())
    );

    let log = sim.notifications();
    let names: Vec<&str> = log.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["MIGRATING", "MIGRATED"]);
    let opted_id = &sim.connections()[0].id;
    assert!(log
        .iter()
        .all(|n| &n.connection_id == opted_id && n.seq == Some(1)));
    assert!(log[1].since_start >= log[0].since_start + Duration::from_millis(700));
}

#[tokio::test]
async fn failover_holds_commands_until_failed_over() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let mut c = RawClient::opted_in(sim.node_addr(0), "internal-fqdn").await;
    let failover = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.failover(0, Duration::from_millis(700)).await })
    };
    assert_eq!(
        show(&c.frame().await),
        show(b">4\r\n$12\r\nFAILING_OVER\r\n:1\r\n:1\r\n*1\r\n$1\r\n1\r\n")
    );
    let started = Instant::now();
    c.send(&["PING"]).await;
    let first = c.frame().await;
    let second = c.frame().await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "PING was answered after {:?}, during the failover",
        started.elapsed()
    );
    let mut got = vec![show(&first), show(&second)];
    got.sort();
    assert_eq!(
        got,
        [
            show(b"+PONG\r\n"),
            show(b">3\r\n$11\r\nFAILED_OVER\r\n:1\r\n*1\r\n$1\r\n1\r\n")
        ]
    );
    assert_eq!(failover.await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn moving_endpoint_follows_the_requested_type() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 2).await;
    let (from, to) = (sim.node_addr(0), sim.node_addr(1).port());
    let mut clients = Vec::new();
    for kind in [
        "internal-ip",
        "external-ip",
        "internal-fqdn",
        "external-fqdn",
        "none",
    ] {
        clients.push((kind, RawClient::opted_in(from, kind).await));
    }
    let mut plain = RawClient::resp3(from).await;

    let m = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    assert_eq!((m.seq(), m.recipients()), (1, 5));
    for (kind, c) in &mut clients {
        let ip = format!("127.0.0.1:{to}");
        let fqdn = format!("localhost:{to}");
        let want = match *kind {
            "internal-ip" | "external-ip" => moving(1, 2, Some(&ip)),
            "internal-fqdn" | "external-fqdn" => moving(1, 2, Some(&fqdn)),
            _ => moving(1, 2, None),
        };
        assert_eq!(show(&c.frame().await), show(&want), "{kind}");
    }
    assert!(
        plain.silent_for(QUIET).await,
        "got {}",
        show(plain.leftover())
    );
    let types: Vec<Option<EndpointType>> =
        sim.connections().iter().map(|c| c.endpoint_type).collect();
    assert!(types.contains(&Some(EndpointType::ExternalFqdn)));
    assert!(types.contains(&None));
    m.abort();
}

#[tokio::test]
async fn moving_closes_old_connections_after_grace_and_the_new_node_has_the_data() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 2).await;
    let mut old = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    assert_eq!(
        &old.cmd(&["SET", "moved-key", "same data"]).await[..],
        b"+OK\r\n"
    );

    let m = sim.moving(0, 1, Duration::from_millis(400)).await.unwrap();
    let notice = old.frame().await;
    assert!(
        notice.starts_with(b">4\r\n$6\r\nMOVING\r\n"),
        "{}",
        show(&notice)
    );
    // Still served during the grace period.
    assert_eq!(
        &old.cmd(&["GET", "moved-key"]).await[..],
        b"$9\r\nsame data\r\n"
    );
    m.done().await;
    assert!(old.closed_within(Duration::from_secs(3)).await);
    assert!(
        RawClient::connect(sim.node_addr(0)).await.is_err(),
        "the old node still accepts connections"
    );

    let mut new = RawClient::resp3(sim.node_addr(1)).await;
    assert_eq!(
        &new.cmd(&["GET", "moved-key"]).await[..],
        b"$9\r\nsame data\r\n"
    );

    sim.restore(0).unwrap();
    let mut back = connect_retrying(sim.node_addr(0)).await;
    assert_eq!(&back.cmd(&["PING"]).await[..], b"+PONG\r\n");
}

async fn connect_retrying(addr: std::net::SocketAddr) -> RawClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match RawClient::connect(addr).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn moving_with_a_null_endpoint_comes_back_at_the_same_address() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let addr = sim.node_addr(0);
    let mut c = RawClient::opted_in(addr, "internal-ip").await;
    let m = sim
        // A long outage, so that the check below falls inside it even on a loaded machine.
        .moving_null(0, Duration::from_millis(200), Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(show(&c.frame().await), show(&moving(1, 1, None)));
    assert!(c.closed_within(Duration::from_secs(3)).await);
    assert!(
        RawClient::connect(addr).await.is_err(),
        "accepted during the outage"
    );
    m.done().await;
    let mut again = RawClient::resp3(addr).await;
    assert_eq!(&again.cmd(&["PING"]).await[..], b"+PONG\r\n");
}

#[tokio::test]
async fn azure_events_reach_subscribed_clients_in_the_exact_format() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 2).await;
    let mut sub3 = RawClient::resp3(sim.node_addr(0)).await;
    let confirm = sub3.cmd(&["SUBSCRIBE", "AzureRedisEvents"]).await;
    assert_eq!(
        show(&confirm),
        show(b">3\r\n$9\r\nsubscribe\r\n$16\r\nAzureRedisEvents\r\n:1\r\n")
    );
    let mut sub2 = RawClient::connect(sim.node_addr(1)).await.unwrap();
    sub2.cmd(&["SUBSCRIBE", "AzureRedisEvents"]).await;
    let mut other = RawClient::resp3(sim.node_addr(0)).await;
    assert!(sim.wait_for_connections(1, 1, Duration::from_secs(2)).await);

    let kinds = [
        AzureEventKind::Scheduled,
        AzureEventKind::Starting,
        AzureEventKind::Start,
        AzureEventKind::FailoverComplete,
        AzureEventKind::ScaleComplete,
        AzureEventKind::Ended,
    ];
    for kind in kinds {
        let event = AzureEvent::new(kind.clone())
            .start_time("2021-03-02T23:34:56")
            .ip_address("10.0.0.5")
            .ports(15001, 13001);
        let payload = format!(
            "NotificationType|{}|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001",
            kind.wire_name()
        );
        assert_eq!(event.payload(), payload);
        assert_eq!(sim.azure(Scope::All, &event).unwrap(), 2, "{kind}");
        let body = format!(
            "{}{}{}",
            bulk("message"),
            bulk("AzureRedisEvents"),
            bulk(&payload)
        );
        assert_eq!(
            show(&sub3.frame().await),
            show(format!(">3\r\n{body}").as_bytes())
        );
        assert_eq!(
            show(&sub2.frame().await),
            show(format!("*3\r\n{body}").as_bytes())
        );
    }
    assert!(
        other.silent_for(QUIET).await,
        "got {}",
        show(other.leftover())
    );

    // One node only, and not after unsubscribing.
    let start = AzureEvent::new(AzureEventKind::Start);
    assert_eq!(sim.azure(1, &start).unwrap(), 1);
    assert!(sub3.silent_for(QUIET).await);
    sub2.frame().await;
    sub3.cmd(&["UNSUBSCRIBE", "AzureRedisEvents"]).await;
    assert_eq!(sim.azure(0, &start).unwrap(), 0);
    assert!(matches!(
        sim.azure(7, &start),
        Err(SimError::NoSuchNode { node: 7 })
    ));
}

#[tokio::test]
async fn faults_refuse_blackhole_reset_latency_garbage_and_raw_frames() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let addr = sim.node_addr(0);

    sim.refuse(0).unwrap();
    assert!(
        RawClient::connect(addr).await.is_err(),
        "refused node accepted"
    );
    sim.restore(0).unwrap();
    let mut c = connect_retrying(addr).await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");

    sim.blackhole(0).unwrap();
    let mut dark = RawClient::connect(addr)
        .await
        .expect("a blackholed node accepts");
    dark.send(&["PING"]).await;
    c.send(&["PING"]).await;
    assert!(dark.silent_for(QUIET).await);
    assert!(c.silent_for(Duration::from_millis(50)).await);
    sim.restore(0).unwrap();
    assert_eq!(&dark.frame().await[..], b"+PONG\r\n");
    assert_eq!(&c.frame().await[..], b"+PONG\r\n");

    sim.latency(0, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert!(started.elapsed() >= Duration::from_millis(250));
    sim.restore(0).unwrap();

    assert_eq!(sim.garbage(0).unwrap(), 2);
    let junk = c.read_raw(8).await;
    assert!(junk.starts_with(b"\x00\x13garbage"), "{}", show(&junk));
    assert!(dark.read_raw(8).await.starts_with(b"\x00\x13garbage"));

    // The oldest connection is `c`.
    let id = sim.node(0).connections()[0].id.clone();
    assert_eq!(
        sim.send_raw(id.as_str(), &b">2\r\n$4\r\ntest\r\n:1\r\n"[..])
            .unwrap(),
        1
    );
    assert_eq!(show(&c.frame().await), show(b">2\r\n$4\r\ntest\r\n:1\r\n"));
    assert!(dark.silent_for(Duration::from_millis(100)).await);
    assert_eq!(sim.send_raw("conn_missing", &b"+x\r\n"[..]).unwrap(), 0);

    assert_eq!(sim.reset_all(0).unwrap(), 2);
    assert!(dark.closed_within(Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_blackhole_holds_established_connections_both_ways_and_trickle_writes_byte_by_byte() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let addr = sim.node_addr(0);
    let mut publisher = RawClient::connect(server.addr()).await.unwrap();
    let mut sub = RawClient::resp3(addr).await;
    sub.send(&["SUBSCRIBE", "ch"]).await;
    assert!(sub.frame().await.starts_with(b">3\r\n$9\r\nsubscribe"));
    let mut other = RawClient::resp3(addr).await;

    // Only the connections open now go dark; new ones are served.
    assert_eq!(sim.blackhole_connections(0).unwrap(), 2);
    let mut fresh = RawClient::connect(addr).await.unwrap();
    assert_eq!(&fresh.cmd(&["PING"]).await[..], b"+PONG\r\n");
    publisher.cmd(&["PUBLISH", "ch", "held"]).await;
    other.send(&["PING"]).await;
    assert!(
        sub.silent_for(QUIET).await,
        "a message reached a dark connection"
    );
    assert!(other.silent_for(Duration::from_millis(50)).await);
    sim.restore(0).unwrap();
    assert!(show(&sub.frame().await).contains("held"));
    assert_eq!(&other.frame().await[..], b"+PONG\r\n");

    // A blackholed node holds the reply to a command it forwarded before, too.
    sim.latency(0, Duration::from_millis(200)).unwrap();
    other.send(&["PING"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.blackhole(0).unwrap();
    assert!(other.silent_for(Duration::from_millis(400)).await);
    sim.restore(0).unwrap();
    assert_eq!(&other.frame().await[..], b"+PONG\r\n");

    // Trickled: every byte its own read, the frame whole.
    sim.trickle(0, Some(Duration::from_millis(5))).unwrap();
    fresh.send(&["ECHO", "trickled"]).await;
    let mut reads = Vec::new();
    let mut stream = Vec::new();
    while frame_len(&stream).unwrap() != Some(stream.len()) || stream.is_empty() {
        let chunk = fresh.read_raw(1).await;
        assert!(!chunk.is_empty(), "the reply stopped at {}", show(&stream));
        reads.push(chunk.len());
        stream.extend_from_slice(&chunk);
    }
    assert_eq!(show(&stream), show(b"$8\r\ntrickled\r\n"));
    assert!(reads.len() >= 8, "read in {reads:?}");
    sim.restore(0).unwrap();
    assert_eq!(&fresh.cmd(&["PING"]).await[..], b"+PONG\r\n");
}

#[tokio::test]
async fn replay_sends_the_last_migrated_to_clients_that_opt_in_later() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    sim.migrate(0, Duration::from_millis(50)).await.unwrap();
    let seq = sim.failover(0, Duration::from_millis(50)).await.unwrap();
    assert_eq!(seq, 2, "sequence numbers increase per simulator");

    let mut before = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    assert!(
        before.silent_for(QUIET).await,
        "replayed while replay is off"
    );

    sim.set_replay(true);
    let mut late = RawClient::opted_in(sim.node_addr(0), "none").await;
    assert_eq!(
        show(&late.frame().await),
        show(b">3\r\n$11\r\nFAILED_OVER\r\n:2\r\n*1\r\n$1\r\n1\r\n")
    );
    let last = sim.notifications().pop().unwrap();
    assert_eq!((last.name.as_str(), last.seq), ("FAILED_OVER", Some(2)));
}

#[tokio::test]
async fn pipelined_answers_keep_their_place_among_replies() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let mut c = RawClient::resp3(sim.node_addr(0)).await;
    // Replies from redis-server are slow; the simulator's own answer must still wait its turn.
    sim.latency(0, Duration::from_millis(200)).unwrap();
    let mut batch = encode(&["INCR", "pipelined"]);
    batch.extend(encode(&[
        "CLIENT",
        "MAINT_NOTIFICATIONS",
        "ON",
        "moving-endpoint-type",
        "internal-ip",
    ]));
    batch.extend(encode(&["INCR", "pipelined"]));
    batch.extend(b"PING\r\n");
    c.write(&batch).await;
    let frames = [
        c.frame().await,
        c.frame().await,
        c.frame().await,
        c.frame().await,
    ];
    let frames: Vec<String> = frames.iter().map(|f| show(f)).collect();
    assert_eq!(
        frames,
        [":1", "+OK", ":2", "+PONG"].map(|s| format!("{s}\\r\\n"))
    );
}

#[tokio::test]
async fn pushes_land_between_whole_replies() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let mut c = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    let big = "x".repeat(256 * 1024);
    assert_eq!(&c.cmd(&["SET", "big", &big]).await[..], b"+OK\r\n");
    let n = 40;
    let mut batch = Vec::new();
    for _ in 0..n {
        batch.extend(encode(&["GET", "big"]));
    }
    c.write(&batch).await;
    let push = b">4\r\n$6\r\nMOVING\r\n:99\r\n:5\r\n$14\r\n127.0.0.1:9999\r\n";
    for _ in 0..5 {
        sim.send_raw(0, &push[..]).unwrap();
        tokio::task::yield_now().await;
    }
    let (mut replies, mut pushes) = (0, 0);
    while replies < n || pushes < 5 {
        let f = c.frame().await;
        if f[0] == b'>' {
            assert_eq!(show(&f), show(push));
            pushes += 1;
        } else {
            assert_eq!(
                f.len(),
                big.len() + 11,
                "a reply was cut: {}",
                show(&f[..40])
            );
            replies += 1;
        }
    }
}

#[tokio::test]
async fn handshake_is_answered_per_connection() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let addr = sim.node_addr(0);

    let mut resp2 = RawClient::connect(addr).await.unwrap();
    let refused = resp2
        .cmd(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip",
        ])
        .await;
    assert!(refused.starts_with(b"-ERR"), "{}", show(&refused));

    let mut c = RawClient::resp3(addr).await;
    let bad = c
        .cmd(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "carrier-pigeon",
        ])
        .await;
    assert!(bad.starts_with(b"-ERR"), "{}", show(&bad));
    let ok = c
        .cmd(&[
            "client",
            "maint_notifications",
            "on",
            "moving-endpoint-type",
            "EXTERNAL-IP",
        ])
        .await;
    assert_eq!(&ok[..], b"+OK\r\n");
    assert_eq!(
        sim.connections()[1].endpoint_type,
        Some(EndpointType::ExternalIp)
    );
    assert_eq!(
        &c.cmd(&["CLIENT", "MAINT_NOTIFICATIONS", "OFF"]).await[..],
        b"+OK\r\n"
    );
    sim.migrate(0, Duration::from_millis(10)).await.unwrap();
    assert!(c.silent_for(QUIET).await, "notified after OFF");

    // Without the hitless interceptor the handshake reaches redis-server, which refuses it.
    let plain = Simulator::builder()
        .backend(Backend::redis(server.addr()))
        .handshake(false)
        .start()
        .await
        .unwrap();
    let mut c = RawClient::resp3(plain.node_addr(0)).await;
    let err = c
        .cmd(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip",
        ])
        .await;
    assert!(err.starts_with(b"-ERR"), "{}", show(&err));
    assert_eq!(plain.connections()[0].endpoint_type, None);
}

#[tokio::test]
async fn cluster_slots_lists_the_nodes() {
    let server = RedisServer::start();
    let sim = Simulator::builder()
        .backend(Backend::redis(server.addr()))
        .nodes(2)
        .cluster_slots(true)
        .start()
        .await
        .unwrap();
    // In the nodes' order, as the test proxy lists its listen ports.
    let ports = [sim.node_addr(0).port(), sim.node_addr(1).port()];
    let mut c = RawClient::resp3(sim.node_addr(1)).await;
    let got = c.cmd(&["cluster", "SLOTS"]).await;
    let entry = |from: u32, to: u32, port: u16| {
        let id = format!("proxy-id-{port}");
        format!(
            "*3\r\n:{from}\r\n:{to}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n${}\r\n{id}\r\n",
            id.len()
        )
    };
    let want = format!(
        "*2\r\n{}{}",
        entry(0, 8191, ports[0]),
        entry(8192, 16383, ports[1])
    );
    assert_eq!(show(&got), show(want.as_bytes()));
}

#[tokio::test]
async fn scenarios_run_concurrently_and_reject_unknown_nodes() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 2).await;
    let mut a = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    let mut b = RawClient::opted_in(sim.node_addr(1), "internal-ip").await;
    let (x, y, z) = tokio::join!(
        sim.migrate(0, Duration::from_millis(200)),
        sim.failover(1, Duration::from_millis(200)),
        sim.migrate(0, Duration::from_millis(100)),
    );
    let mut seqs = vec![x.unwrap(), y.unwrap(), z.unwrap()];
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3]);
    for _ in 0..4 {
        a.frame().await;
    }
    for _ in 0..2 {
        b.frame().await;
    }
    assert!(matches!(
        sim.migrate(9, Duration::ZERO).await,
        Err(SimError::NoSuchNode { node: 9 })
    ));
    assert!(sim.moving(0, 9, Duration::ZERO).await.is_err());
    assert!(sim.refuse(9).is_err() && sim.restore(9).is_err() && sim.reset_all(9).is_err());
    assert!(sim.try_node(9).is_none());
    // The latency of the migrations is gone once they end.
    let started = Instant::now();
    assert_eq!(&a.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn odd_input_is_an_error_or_harmless_never_a_panic() {
    let server = RedisServer::start();
    let sim = sim_over(&server, 1).await;
    let mut c = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    sim.latency(0, Duration::MAX).unwrap();
    sim.restore(0).unwrap();
    assert_eq!(sim.migrate(0, Duration::ZERO).await.unwrap(), 1);
    let m = sim.moving(0, 0, Duration::ZERO).await.unwrap();
    m.done().await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    sim.restore(0).unwrap();
    assert_eq!(sim.send_raw(Scope::All, Vec::new()).unwrap(), 0);
    assert!(sim.remove_node(0));
    assert!(!sim.remove_node(0));
    assert!(sim.migrate(0, Duration::ZERO).await.is_err());
    assert!(sim
        .azure(
            Scope::Connection("x".into()),
            &AzureEvent::new(AzureEventKind::Other("Odd".into()))
        )
        .is_ok());
    sim.shutdown();
}
