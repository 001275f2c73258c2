//! The simulator in front of a real Redis Cluster: topology replies and redirects name the
//! simulator's nodes, slots migrate for real with `SMIGRATING` before and `SMIGRATED` after,
//! nodes come and go, through the library, the admin API and the command line.
#![cfg(feature = "sim")]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{key_slot, Admin, RedisCluster, Value as AdminValue};
use common::sim::api_call;
use common::{free_port, show, wait_for_port, RawClient};
use redis_handoff::sim::{Backend, Habits, MigrateSlots, Simulator, Slots};
use serde_json::json;

// ===== helpers =====

/// A reply as these tests look at it: the protocol's kinds, strings as text.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Str(String),
    Int(i64),
    Err(String),
    Nil,
    Array(Vec<Resp>),
    Map(Vec<(Resp, Resp)>),
    Push(Vec<Resp>),
}

impl Resp {
    fn parse(bytes: &[u8]) -> Resp {
        let (v, end) = Resp::at(bytes, 0);
        assert_eq!(end, bytes.len(), "one whole frame: {}", show(bytes));
        v
    }

    fn at(b: &[u8], pos: usize) -> (Resp, usize) {
        let line_end = pos + b[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
        let line = std::str::from_utf8(&b[pos + 1..line_end]).unwrap();
        let next = line_end + 2;
        let count = || line.parse::<i64>().unwrap();
        match b[pos] {
            b'+' => (Resp::Str(line.into()), next),
            b'-' => (Resp::Err(line.into()), next),
            b':' => (Resp::Int(count()), next),
            b'_' => (Resp::Nil, next),
            b'$' | b'=' if count() < 0 => (Resp::Nil, next),
            b'$' | b'=' => {
                let n = count() as usize;
                let text = String::from_utf8_lossy(&b[next..next + n]).into_owned();
                let text = if b[pos] == b'=' {
                    text[4..].to_string()
                } else {
                    text
                };
                (Resp::Str(text), next + n + 2)
            }
            b'*' if count() < 0 => (Resp::Nil, next),
            b'*' | b'>' | b'~' => {
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..count() {
                    let (v, after) = Resp::at(b, at);
                    items.push(v);
                    at = after;
                }
                let v = if b[pos] == b'>' {
                    Resp::Push(items)
                } else {
                    Resp::Array(items)
                };
                (v, at)
            }
            b'%' => {
                let mut pairs = Vec::new();
                let mut at = next;
                for _ in 0..count() {
                    let (k, after) = Resp::at(b, at);
                    let (v, after) = Resp::at(b, after);
                    pairs.push((k, v));
                    at = after;
                }
                (Resp::Map(pairs), at)
            }
            other => panic!("unexpected type byte {:?} in {}", other as char, show(b)),
        }
    }

    fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(items) | Resp::Push(items) => items,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Resp::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    /// A field of a RESP3 map or a RESP2 flat key/value array.
    fn field(&self, key: &str) -> Option<&Resp> {
        match self {
            Resp::Map(pairs) => pairs.iter().find(|(k, _)| k.text() == key).map(|(_, v)| v),
            Resp::Array(items) => items
                .chunks(2)
                .find(|p| p[0] == Resp::Str(key.into()))
                .map(|p| &p[1]),
            _ => None,
        }
    }
}

/// A cluster of three primaries and a simulator node in front of each.
async fn cluster_and_sim() -> (RedisCluster, Simulator) {
    let cluster = RedisCluster::start(3, 0);
    let sim = Simulator::builder()
        .cluster(cluster.addrs())
        .start()
        .await
        .expect("the simulator starts in front of the cluster");
    (cluster, sim)
}

fn sim_ports(sim: &Simulator) -> BTreeSet<u16> {
    sim.nodes().iter().map(|n| n.port()).collect()
}

/// `(from, to, primary host, primary port)` of every range of a `CLUSTER SLOTS` reply.
fn slot_ranges(reply: &[u8]) -> Vec<(i64, i64, String, u16)> {
    Resp::parse(reply)
        .items()
        .iter()
        .map(|r| {
            let parts = r.items();
            let primary = parts[2].items();
            (
                parts[0].int(),
                parts[1].int(),
                primary[0].text().to_string(),
                primary[1].int() as u16,
            )
        })
        .collect()
}

/// The simulator port shown as owner of `slot` in a `CLUSTER SLOTS` reply.
fn owner_in(reply: &[u8], slot: u16) -> u16 {
    slot_ranges(reply)
        .into_iter()
        .find(|(from, to, _, _)| (*from..=*to).contains(&i64::from(slot)))
        .map(|(_, _, _, port)| port)
        .unwrap_or_else(|| panic!("no range holds slot {slot}"))
}

/// A hash tag whose keys live in `slot`.
fn tag_for(slot: u16) -> String {
    (0..)
        .map(|i| format!("t{i}"))
        .find(|t| key_slot(t) == slot)
        .unwrap()
}

/// The simulator node in front of the cluster node on `port`.
fn front_of(sim: &Simulator, cluster_port: u16) -> usize {
    sim.nodes()
        .iter()
        .find(|n| n.target() == Some(format!("127.0.0.1:{cluster_port}")))
        .map(|n| n.index())
        .expect("a simulator node fronts it")
}

/// The next push, skipping replies that are not pushes.
async fn next_push(c: &mut RawClient) -> Vec<u8> {
    loop {
        let f = c.frame().await;
        if f.first() == Some(&b'>') {
            return f;
        }
    }
}

// ===== topology =====

#[tokio::test]
async fn topology_replies_name_only_simulator_addresses_in_resp2_and_resp3() {
    let (cluster, sim) = cluster_and_sim().await;
    let sims = sim_ports(&sim);
    let real: BTreeSet<u16> = cluster.ports().into_iter().collect();

    // CLUSTER SLOTS, RESP2 and RESP3: every owner is a simulator node, each range owned by the
    // node in front of the cluster node that owns it.
    let mut resp2 = RawClient::connect(sim.node_addr(0)).await.unwrap();
    let mut resp3 = RawClient::resp3(sim.node_addr(1)).await;
    for reply in [
        resp2.cmd(&["CLUSTER", "SLOTS"]).await,
        resp3.cmd(&["cluster", "slots"]).await,
    ] {
        let ranges = slot_ranges(&reply);
        assert_eq!(ranges.len(), 3, "{}", show(&reply));
        for (from, _, host, port) in &ranges {
            assert_eq!(host, "127.0.0.1");
            assert!(
                sims.contains(port),
                "{port} is not a simulator port: {}",
                show(&reply)
            );
            let owner = cluster.owner_port(*from as u16);
            assert_eq!(*port, sim.node(front_of(&sim, owner)).port());
        }
        for p in &real {
            assert!(
                !show(&reply).contains(&format!(":{p}\\r\\n")),
                "cluster port {p} in {}",
                show(&reply)
            );
        }
    }

    // CLUSTER SHARDS: a map per shard in RESP3, a flat array in RESP2; every node's port,
    // ip and endpoint are the simulator's.
    for (client, map) in [(&mut resp3, true), (&mut resp2, false)] {
        let reply = client.cmd(&["CLUSTER", "SHARDS"]).await;
        assert_eq!(reply[0], b'*', "{}", show(&reply));
        let shards = Resp::parse(&reply);
        assert_eq!(shards.items().len(), 3);
        for shard in shards.items() {
            assert_eq!(matches!(shard, Resp::Map(_)), map, "{shard:?}");
            for node in shard.field("nodes").unwrap().items() {
                let port = node.field("port").unwrap().int() as u16;
                assert!(sims.contains(&port), "{node:?}");
                assert_eq!(node.field("ip").unwrap().text(), "127.0.0.1");
                assert_eq!(node.field("endpoint").unwrap().text(), "127.0.0.1");
            }
        }
    }

    // CLUSTER NODES: one string of lines, `ip:port@cport` naming the simulator.
    for client in [&mut resp3, &mut resp2] {
        let reply = client.cmd(&["CLUSTER", "NODES"]).await;
        let text = Resp::parse(&reply).text().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for line in lines {
            let addr = line.split(' ').nth(1).unwrap();
            let port: u16 = addr
                .split('@')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(addr.starts_with("127.0.0.1:"), "{line}");
            assert!(sims.contains(&port), "{line}");
        }
        for p in &real {
            assert!(
                !text.contains(&format!(":{p}@")),
                "cluster port {p} in {text}"
            );
        }
    }
}

#[tokio::test]
async fn moved_and_ask_through_the_simulator_name_simulator_addresses() {
    let (cluster, sim) = cluster_and_sim().await;
    let key = "moved:{a}";
    let slot = key_slot(key);
    let owner = cluster.owner_port(slot);
    let wrong = cluster.ports().into_iter().find(|p| *p != owner).unwrap();
    let mut c = RawClient::resp3(sim.node_addr(front_of(&sim, wrong))).await;
    let reply = c.cmd(&["GET", key]).await;
    let owner_sim = sim.node(front_of(&sim, owner)).port();
    assert_eq!(
        show(&reply),
        show(format!("-MOVED {slot} 127.0.0.1:{owner_sim}\r\n").as_bytes())
    );

    // Half-way through a migration the source answers a missing key with ASK.
    let dest = wrong;
    let (src_id, dest_id) = (
        cluster.node_id(cluster.index_of(owner)),
        cluster.node_id(cluster.index_of(dest)),
    );
    let s = slot.to_string();
    Admin::connect(dest).ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]);
    Admin::connect(owner).ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &dest_id]);
    let mut at_owner = RawClient::connect(sim.node_addr(front_of(&sim, owner)))
        .await
        .unwrap();
    let reply = at_owner.cmd(&["GET", key]).await;
    let dest_sim = sim.node(front_of(&sim, dest)).port();
    assert_eq!(
        show(&reply),
        show(format!("-ASK {slot} 127.0.0.1:{dest_sim}\r\n").as_bytes())
    );
    Admin::connect(dest).ok(&["CLUSTER", "SETSLOT", &s, "STABLE"]);
    Admin::connect(owner).ok(&["CLUSTER", "SETSLOT", &s, "STABLE"]);
}

// ===== slot migration =====

#[tokio::test]
async fn slots_migrate_for_real_and_every_client_hears_smigrating_then_smigrated() {
    let (cluster, sim) = cluster_and_sim().await;
    // Two slots of two different owners, moved to the third primary.
    let (a, b) = (100u16, 6000u16);
    let (owner_a, owner_b) = (cluster.owner_port(a), cluster.owner_port(b));
    assert_ne!(owner_a, owner_b);
    let dest = cluster
        .ports()
        .into_iter()
        .find(|p| *p != owner_a && *p != owner_b)
        .unwrap();
    let mut keys = Vec::new();
    for (slot, owner) in [(a, owner_a), (b, owner_b)] {
        let tag = tag_for(slot);
        let mut admin = Admin::connect(owner);
        for i in 0..5 {
            let key = format!("{{{tag}}}:{i}");
            admin.ok(&["SET", &key, &format!("v{i}")]);
            keys.push((key, format!("v{i}")));
        }
    }
    let mut clients = Vec::new();
    for node in sim.nodes() {
        clients.push(RawClient::opted_in(node.addr(), "internal-ip").await);
    }

    let slots: Slots = format!("{a},{b}").parse().unwrap();
    let to = front_of(&sim, dest);
    let done = sim.migrate_slots(&slots, to).await.expect("the slots move");
    assert_eq!(done.keys_moved, 10);
    assert_eq!(done.recipients, 3);
    let name = |port| format!("127.0.0.1:{}", sim.node(front_of(&sim, port)).port());
    let triples = [
        (name(owner_a), name(dest), a.to_string()),
        (name(owner_b), name(dest), b.to_string()),
    ];
    assert_eq!(done.moves.len(), 2);
    for (m, (src, dst, s)) in done.moves.iter().zip(&triples) {
        assert_eq!(
            (&m.source, &m.destination, m.slots.to_string()),
            (src, dst, s.clone())
        );
    }

    // Every client: SMIGRATING with the slots, then SMIGRATED with a seq of its own and the
    // triples, in the shapes of PROTOCOL.md section 12.
    let seq = done.smigrating_seq;
    let end = done.smigrated_seq.expect("SMIGRATED was sent");
    assert!(end > seq);
    let mut smigrated = format!(">3\r\n+SMIGRATED\r\n:{end}\r\n*2\r\n");
    for (src, dst, s) in &triples {
        smigrated.push_str(&format!("*3\r\n+{src}\r\n+{dst}\r\n+{s}\r\n"));
    }
    for c in &mut clients {
        assert_eq!(
            show(&next_push(c).await),
            show(format!(">3\r\n+SMIGRATING\r\n:{seq}\r\n+{a},{b}\r\n").as_bytes())
        );
        assert_eq!(show(&next_push(c).await), show(smigrated.as_bytes()));
    }

    // The slots are the destination's, as every primary sees it, and so is the data: read on
    // the cluster node itself and through the simulator node in front of it.
    cluster.wait_until_settled();
    assert_eq!(cluster.owner_port(a), dest);
    assert_eq!(cluster.owner_port(b), dest);
    let mut direct = Admin::connect(dest);
    let mut through = RawClient::resp3(sim.node_addr(to)).await;
    for (key, value) in &keys {
        assert_eq!(direct.cmd(&["GET", key]), AdminValue::Text(value.clone()));
        let got = through.cmd(&["GET", key]).await;
        assert_eq!(
            show(&got),
            show(format!("${}\r\n{value}\r\n", value.len()).as_bytes())
        );
    }
    let slots_reply = clients[0].cmd(&["CLUSTER", "SLOTS"]).await;
    assert_eq!(owner_in(&slots_reply, a), sim.node(to).port());
    assert_eq!(owner_in(&slots_reply, b), sim.node(to).port());

    // Asking again for slots the node owns already is a clear error, and nothing is sent.
    let before = sim.notifications().len();
    let err = sim.migrate_slots(&slots, to).await.unwrap_err();
    assert!(err.to_string().contains("nothing to migrate"), "{err}");
    assert_eq!(sim.notifications().len(), before);
}

#[tokio::test]
async fn a_migration_can_send_duplicates_and_leave_smigrated_out() {
    let (cluster, sim) = cluster_and_sim().await;
    let slot = 200u16;
    let owner = cluster.owner_port(slot);
    let dest = cluster.ports().into_iter().find(|p| *p != owner).unwrap();
    let mut c = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    let slots: Slots = slot.to_string().parse().unwrap();
    let options = MigrateSlots::new()
        .duplicates(true)
        .smigrated(false)
        .delay(Duration::from_millis(50));
    let done = sim
        .migrate_slots_with(&slots, front_of(&sim, dest), options)
        .await
        .unwrap();
    assert_eq!(done.smigrated_seq, None);
    let want = format!(
        ">3\r\n+SMIGRATING\r\n:{}\r\n+{slot}\r\n",
        done.smigrating_seq
    );
    assert_eq!(show(&next_push(&mut c).await), show(want.as_bytes()));
    assert_eq!(show(&next_push(&mut c).await), show(want.as_bytes()));
    let names: Vec<String> = sim.notifications().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["SMIGRATING", "SMIGRATING"]);
    assert_eq!(cluster.owner_port(slot), dest);

    // Not in cluster mode, or to a node that is not there: clear errors.
    assert!(sim.migrate_slots(&slots, 9).await.is_err());
    let plain = Simulator::builder().start().await.unwrap();
    let err = plain.migrate_slots(&slots, 0).await.unwrap_err();
    assert!(err.to_string().contains("cluster mode"), "{err}");
}

#[tokio::test]
async fn a_client_that_opts_in_during_a_migration_is_told_smigrating_with_late_joiners() {
    let (cluster, sim) = cluster_and_sim().await;
    sim.set_habits(Habits {
        late_joiners: true,
        ..Habits::default()
    });
    let slot = 9000u16;
    let owner = cluster.owner_port(slot);
    let dest = cluster.ports().into_iter().find(|p| *p != owner).unwrap();
    let to = front_of(&sim, dest);
    let slots: Slots = slot.to_string().parse().unwrap();
    // A wide delay between SMIGRATING and the move: the window in which the client joins.
    let options = MigrateSlots::new().delay(Duration::from_secs(3));
    let mut early = RawClient::opted_in(sim.node_addr(1), "internal-ip").await;
    let migration = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.migrate_slots_with(&slots, to, options).await })
    };
    // The window is open once a client there has heard of it.
    let first = next_push(&mut early).await;
    let mut late = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    let told = next_push(&mut late).await;
    let done = migration.await.unwrap().unwrap();
    assert_eq!(show(&told), show(&first));
    assert_eq!(
        show(&told),
        show(
            format!(
                ">3\r\n+SMIGRATING\r\n:{}\r\n+{slot}\r\n",
                done.smigrating_seq
            )
            .as_bytes()
        )
    );
    assert!(next_push(&mut late)
        .await
        .starts_with(b">3\r\n+SMIGRATED\r\n"));
}

// ===== nodes come and go =====

#[tokio::test]
async fn nodes_added_and_removed_change_what_cluster_slots_answers() {
    let (cluster, sim) = cluster_and_sim().await;
    let third = cluster.nodes[2].port;
    let mut c = RawClient::resp3(sim.node_addr(0)).await;
    let before = c.cmd(&["CLUSTER", "SLOTS"]).await;
    let slot_of_third = slot_ranges(&before)
        .into_iter()
        .find(|r| r.3 == sim.node(2).port())
        .map(|r| r.0 as u16)
        .expect("node 2 owns slots");
    assert_eq!(cluster.owner_port(slot_of_third), third);
    assert_eq!(owner_in(&before, slot_of_third), sim.node(2).port());

    // Removed: the cluster node's own address shows, as the cluster writes it.
    assert!(sim.remove_node(2));
    let removed = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert_eq!(owner_in(&removed, slot_of_third), third);
    let text = Resp::parse(&c.cmd(&["CLUSTER", "NODES"]).await)
        .text()
        .to_string();
    assert!(text.contains(&format!("127.0.0.1:{third}@")), "{text}");

    // Added back on a new port: that port is the owner now.
    let added = sim
        .add_node_to(0, Backend::redis(cluster.nodes[2].addr()))
        .await
        .unwrap();
    let after = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert_eq!(owner_in(&after, slot_of_third), sim.node(added).port());
    assert!(
        sim.add_node(0).await.is_err(),
        "cluster mode needs a target per node"
    );
}

// ===== admin API and command line =====

#[tokio::test]
async fn the_admin_api_migrates_slots_and_adds_and_removes_nodes() {
    let (cluster, sim) = cluster_and_sim().await;
    let http = sim.serve_http("127.0.0.1:0").await.unwrap();
    let api = http.addr();
    let slot = 7000u16;
    let owner = cluster.owner_port(slot);
    let dest = cluster.ports().into_iter().find(|p| *p != owner).unwrap();
    let to = sim.node(front_of(&sim, dest));
    // A client on a node that stays when `to` is removed below.
    let stays = (0..3).find(|&i| i != to.index()).unwrap();
    let mut c = RawClient::opted_in(sim.node_addr(stays), "internal-ip").await;

    let (status, v) = api_call(
        api,
        "POST",
        "/sim/migrate-slots",
        json!({ "slots": slot.to_string(), "to": to.addr().to_string(), "wait": true })
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true, "{v}");
    let src = format!("127.0.0.1:{}", sim.node(front_of(&sim, owner)).port());
    assert_eq!(
        v["moves"],
        json!([{ "source": src, "destination": to.addr().to_string(), "slots": slot.to_string() }])
    );
    assert!(next_push(&mut c)
        .await
        .starts_with(b">3\r\n+SMIGRATING\r\n"));
    assert!(next_push(&mut c).await.starts_with(b">3\r\n+SMIGRATED\r\n"));
    assert_eq!(cluster.owner_port(slot), dest);

    let (status, v) = api_call(
        api,
        "POST",
        "/sim/migrate-slots",
        json!({ "slots": "5-3", "to": 0 }).to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["name"]),
        (400, &json!("ZodError")),
        "{v}"
    );

    // DELETE /nodes/{id}, POST /nodes with the cluster node as its target.
    let (status, v) = api_call(api, "DELETE", &format!("/nodes/{}", to.id()), b"").await;
    assert_eq!((status, v), (200, json!({ "success": true })));
    let reply = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert_eq!(owner_in(&reply, slot), dest);
    let port = free_port();
    let (status, v) = api_call(
        api,
        "POST",
        "/nodes",
        json!({ "listenPort": port, "targetHost": "127.0.0.1", "targetPort": dest })
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let reply = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert_eq!(owner_in(&reply, slot), port);
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_command_line_fronts_a_cluster_and_plays_migrate_slots() {
    let cluster = RedisCluster::start(3, 0);
    let ports = [free_port(), free_port(), free_port()];
    let api = free_port();
    let slot = 300u16;
    let owner = cluster.owner_port(slot);
    let dest_index = (0..3).find(|&i| cluster.nodes[i].port != owner).unwrap();
    let tag = tag_for(slot);
    Admin::connect(owner).ok(&["SET", &format!("{{{tag}}}:cli"), "moved"]);
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
            .arg("sim")
            .arg("--cluster")
            .arg(cluster.addrs().join(","))
            .arg("--listen-port")
            .arg(ports.map(|p| p.to_string()).join(","))
            .args(["--api-port", &api.to_string()])
            .args(["--scenario", "migrate-slots", "--slots", &slot.to_string()])
            .args(["--to", &dest_index.to_string(), "--scenario-after", "1s"])
            .env_remove("TARGET_HOST")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    wait_for_port(api);
    let (_, v) = api_call(
        format!("127.0.0.1:{api}").parse().unwrap(),
        "GET",
        "/nodes",
        b"",
    )
    .await;
    let ids: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}@{}", cluster.nodes[i].port, ports[i]))
        .collect();
    assert_eq!(v, json!({ "ids": ids }));
    let mut c = RawClient::resp3(("127.0.0.1", ports[0])).await;
    let reply = c.cmd(&["CLUSTER", "SLOTS"]).await;
    for (_, _, _, port) in slot_ranges(&reply) {
        assert!(ports.contains(&port), "{}", show(&reply));
    }

    // The scenario moves the slot once it runs; a wide bound, not a timing.
    let dest = cluster.nodes[dest_index].port;
    let start = Instant::now();
    while cluster.owner_port(slot) != dest {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slot did not move"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut through = RawClient::resp3(("127.0.0.1", ports[dest_index])).await;
    let got = through.cmd(&["GET", &format!("{{{tag}}}:cli")]).await;
    assert_eq!(show(&got), show(b"$5\r\nmoved\r\n"));

    let help = Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
        .args(["sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--cluster",
        "--scenario",
        "--slots",
        "--to",
        "--scenario-after",
    ] {
        assert!(help.contains(flag), "--help explains {flag}");
    }
}
