//! A real Redis Cluster for tests: several `redis-server` processes with `cluster-enabled yes` on
//! free ports, joined with `redis-cli --cluster create`, and the operations tests need to drive
//! it (slot migration step by step, resharding, failover, kills) through a small blocking RESP
//! client of its own.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::RedisServer;

/// A running cluster; every process is killed when it is dropped.
pub struct RedisCluster {
    /// Every node, primaries first (in the order `--cluster create` gave them slots), then replicas.
    pub nodes: Vec<RedisServer>,
    /// How many of `nodes` were started as primaries.
    pub primaries: usize,
}

/// One reply of the blocking client, RESP2 shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+...` or `$...`
    Text(String),
    /// `:...`
    Int(i64),
    /// `-...`
    Error(String),
    /// `$-1` / `*-1`
    Nil,
    /// `*...`
    Array(Vec<Value>),
}

impl Value {
    /// The text of a simple or bulk string; panics otherwise.
    pub fn text(&self) -> &str {
        match self {
            Value::Text(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }
}

/// A blocking RESP2 client for driving the cluster from tests (not the client under test).
pub struct Admin {
    reader: BufReader<TcpStream>,
}

impl Admin {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Admin {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to a cluster node");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        Admin {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Value {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out).expect("write");
        self.read()
    }

    /// Sends one command and panics unless it is answered `+OK`.
    pub fn ok(&mut self, args: &[&str]) {
        let v = self.cmd(args);
        assert_eq!(v, Value::Text("OK".into()), "{args:?} answered {v:?}");
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a reply line");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Value::Text(rest.to_string()),
            "-" => Value::Error(rest.to_string()),
            ":" => Value::Int(rest.parse().expect("an integer")),
            "$" => {
                let n: i64 = rest.parse().expect("a length");
                if n < 0 {
                    return Value::Nil;
                }
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf).expect("bulk");
                buf.truncate(n as usize);
                Value::Text(String::from_utf8_lossy(&buf).into_owned())
            }
            "*" => {
                let n: i64 = rest.parse().expect("a length");
                if n < 0 {
                    return Value::Nil;
                }
                Value::Array((0..n).map(|_| self.read()).collect())
            }
            other => panic!("unexpected reply type {other:?} in {line:?}"),
        }
    }
}

/// The CRC16 (XMODEM) slot of a key, with `{hash tags}`, computed here independently of the
/// crate so the tests do not check the crate against itself.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

impl RedisCluster {
    /// `primaries` primaries (at least 3, as `redis-cli --cluster create` requires) with
    /// `replicas` replicas each, all agreeing on the slot map and `cluster_state:ok`.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "redis-cli --cluster create needs 3 primaries"
        );
        let total = primaries * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..total)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    // Writes stay possible while a slot is being moved in tests that kill nodes.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = create.output().expect("redis-cli on the PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes, primaries };
        cluster.wait_until_settled();
        cluster
    }

    /// Ports of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `host:port` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    /// A blocking client to node `i`.
    pub fn admin(&self, i: usize) -> Admin {
        Admin::connect(self.nodes[i].port)
    }

    /// The cluster node id of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.admin(i).cmd(&["CLUSTER", "MYID"]).text().to_string()
    }

    /// The port of the node that owns `slot` now, as node 0 (or the first live node) sees it.
    pub fn owner_port(&self, slot: u16) -> u16 {
        (0..self.nodes.len())
            .find(|&i| self.alive(i))
            .and_then(|i| self.owner_seen_by(i, slot))
            .unwrap_or_else(|| panic!("no node owns slot {slot}"))
    }

    fn alive(&self, i: usize) -> bool {
        TcpStream::connect(("127.0.0.1", self.nodes[i].port)).is_ok()
    }

    /// The port of the owner of `slot` in node `i`'s `CLUSTER SLOTS`.
    fn owner_seen_by(&self, i: usize, slot: u16) -> Option<u16> {
        let Value::Array(ranges) = self.admin(i).cmd(&["CLUSTER", "SLOTS"]) else {
            return None;
        };
        ranges.iter().find_map(|r| match r {
            Value::Array(parts) => match (&parts[0], &parts[1], &parts[2]) {
                (Value::Int(from), Value::Int(to), Value::Array(primary))
                    if (*from as u16..=*to as u16).contains(&slot) =>
                {
                    match primary[1] {
                        Value::Int(port) => Some(port as u16),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// The index in `nodes` of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// Waits (at most 30 s) until every live node says `cluster_state:ok` and all of them give
    /// the same `CLUSTER SLOTS`.
    pub fn wait_until_settled(&self) {
        let start = Instant::now();
        loop {
            let mut views = Vec::new();
            let mut ok = true;
            for (i, n) in self.nodes.iter().enumerate() {
                if TcpStream::connect(("127.0.0.1", n.port)).is_err() {
                    continue;
                }
                let mut a = self.admin(i);
                let info = a.cmd(&["CLUSTER", "INFO"]);
                if !info.text().contains("cluster_state:ok") {
                    ok = false;
                }
                views.push(normalise(a.cmd(&["CLUSTER", "SLOTS"])));
            }
            if ok && views.windows(2).all(|w| w[0] == w[1]) && !views.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cluster did not settle within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most 30 s) until every live node sees the same configuration epoch for every
    /// node (`CLUSTER NODES`, the eighth field).
    fn wait_for_epochs(&self) {
        let start = Instant::now();
        loop {
            let views: Vec<Vec<(String, String)>> = (0..self.nodes.len())
                .filter(|&i| self.alive(i))
                .map(|i| {
                    let nodes = self.admin(i).cmd(&["CLUSTER", "NODES"]);
                    let mut epochs: Vec<(String, String)> = nodes
                        .text()
                        .lines()
                        .filter_map(|line| {
                            let fields: Vec<&str> = line.split_whitespace().collect();
                            Some((fields.first()?.to_string(), fields.get(6)?.to_string()))
                        })
                        .collect();
                    epochs.sort();
                    epochs
                })
                .collect();
            if views.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the nodes did not agree on their epochs within 30 s: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves one slot from the node on `from_port` to the node on `to_port` the way
    /// `redis-cli --cluster reshard` does: `SETSLOT IMPORTING`/`MIGRATING`, `MIGRATE` of its
    /// keys in batches, then `SETSLOT NODE` on both and on every other primary.
    pub fn move_slot(&self, slot: u16, from_port: u16, to_port: u16) {
        // A move begun before the last one's epochs have spread can give the new owner an
        // epoch another node already has (it bumps to one more than the greatest it knows),
        // and the two then disagree about the slot for good.
        self.wait_for_epochs();
        let from = self.index_of(from_port);
        let to = self.index_of(to_port);
        let from_id = self.node_id(from);
        let to_id = self.node_id(to);
        let s = slot.to_string();
        let mut src = self.admin(from);
        let mut dst = self.admin(to);
        dst.ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        src.ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        loop {
            let keys = match src.cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]) {
                Value::Array(keys) => keys,
                other => panic!("GETKEYSINSLOT answered {other:?}"),
            };
            if keys.is_empty() {
                break;
            }
            let port = to_port.to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
            ];
            let names: Vec<String> = keys.iter().map(|k| k.text().to_string()).collect();
            args.extend(names.iter().map(String::as_str));
            src.ok(&args);
        }
        dst.ok(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        // The new owner's claim must outrank a stale one still in the cluster's gossip (the
        // same slot moved here a moment ago the other way): with a configuration epoch no
        // greater than the old owner's, a late message from it gives the slot back to it on
        // the new owner, and each then redirects to the other, for good.
        let _ = dst.cmd(&["CLUSTER", "BUMPEPOCH"]);
        src.ok(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        for i in 0..self.primaries {
            if i != from && i != to && TcpStream::connect(("127.0.0.1", self.nodes[i].port)).is_ok()
            {
                let _ = self
                    .admin(i)
                    .cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            }
        }
        // Done when every live node names the new owner. A slot moved away and back faster than
        // the cluster's gossip settles can have two nodes disagree about it for seconds (each
        // redirecting to the other), which is no longer the resharding a test means to make.
        let start = Instant::now();
        while (0..self.nodes.len())
            .any(|i| self.alive(i) && self.owner_seen_by(i, slot) != Some(to_port))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the nodes did not agree on slot {slot}'s new owner within 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Moves `count` slots from node `from` to node `to` (indices in `nodes`) with
    /// `redis-cli --cluster reshard`, and waits until the cluster agrees again.
    pub fn reshard(&self, from: usize, to: usize, count: usize) {
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &self.nodes[from].addr()])
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &count.to_string()])
            .args(["--cluster-yes", "--cluster-pipeline", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli on the PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_until_settled();
    }

    /// Kills node `i` at once, as a crash would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Waits (at most 30 s) until replica `i` has synchronised with its primary, as
    /// `CLUSTER FAILOVER` without `FORCE` or `TAKEOVER` needs.
    pub fn wait_for_replica_sync(&self, i: usize) {
        let start = Instant::now();
        loop {
            let info = self.admin(i).cmd(&["INFO", "replication"]);
            let info = info.text();
            if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0")
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "replica {i} did not synchronise within 30 s: {info}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes replica `i` with `CLUSTER FAILOVER` (coordinated with its primary, which must be
    /// alive) or, with `force_takeover`, `CLUSTER FAILOVER TAKEOVER` (when it is dead).
    pub fn failover(&self, i: usize, force_takeover: bool) {
        let mut a = self.admin(i);
        if force_takeover {
            a.ok(&["CLUSTER", "FAILOVER", "TAKEOVER"]);
        } else {
            a.ok(&["CLUSTER", "FAILOVER"]);
        }
        let start = Instant::now();
        while !a.cmd(&["ROLE"]).to_owned_text_first().eq("master") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {i} was not promoted within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of a replica of the primary at index `primary`, if it has one.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let id = self.node_id(primary);
        (0..self.nodes.len()).find(|&i| {
            i != primary
                && TcpStream::connect(("127.0.0.1", self.nodes[i].port)).is_ok()
                && self
                    .admin(i)
                    .cmd(&["CLUSTER", "NODES"])
                    .text()
                    .lines()
                    .any(|l| l.contains("myself") && l.contains(&format!("slave {id}")))
        })
    }
}

impl Value {
    fn to_owned_text_first(&self) -> String {
        match self {
            Value::Array(items) => items
                .first()
                .map(|v| v.text().to_string())
                .unwrap_or_default(),
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

/// `CLUSTER SLOTS` reduced to `(from, to, primary port)`, sorted, for comparing views.
fn normalise(slots: Value) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    if let Value::Array(ranges) = slots {
        for r in ranges {
            if let Value::Array(parts) = r {
                if let (Value::Int(from), Value::Int(to), Value::Array(primary)) =
                    (&parts[0], &parts[1], &parts[2])
                {
                    if let Value::Int(port) = primary[1] {
                        out.push((*from, *to, port));
                    }
                }
            }
        }
    }
    out.sort();
    out
}
