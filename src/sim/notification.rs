//! Notifications: the frames scenarios send to clients, and the record of what was sent.
//!
//! Smart client handoff notifications (`MOVING`, `MIGRATING`, `MIGRATED`, `FAILING_OVER`,
//! `FAILED_OVER`) go only to clients that opted in, in the form each asked for; every frame a
//! scenario sends is recorded as a [`SentNotification`], so tests can assert on what was sent,
//! to whom and when.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::proxy::{Conn, Node};
use super::resp::Value;
use super::{lock, Core, EndpointType, Habits, ShardIds};

/// A frame the simulator sent to a client, as recorded in [`Simulator::notifications`](super::Simulator::notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// `MOVING`, `MIGRATING`, `MIGRATED`, `FAILING_OVER`, `FAILED_OVER`, the Azure type
    /// (`NodeMaintenanceStarting`), `garbage` or `raw`.
    pub name: String,
    /// The sequence number, for SCH notifications.
    pub seq: Option<i64>,
    /// The node (index) of the connection.
    pub node: usize,
    /// The connection it went to.
    pub connection_id: String,
    /// The bytes written.
    pub bytes: Bytes,
    /// When it was queued for the client (wall clock).
    pub at: SystemTime,
    /// When it was queued, measured from the simulator's start.
    pub since_start: Duration,
}

// ===== impl Core =====

impl Core {
    pub(super) fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends to one connection and records it.
    pub(crate) fn send_recorded(
        &self,
        conn: &Conn,
        name: &str,
        seq: Option<i64>,
        bytes: Bytes,
    ) -> bool {
        let ok = conn.send(bytes.clone());
        if ok {
            self.record(conn, name, seq, bytes);
        }
        ok
    }

    fn record(&self, conn: &Conn, name: &str, seq: Option<i64>, bytes: Bytes) {
        lock(&self.log).push(SentNotification {
            name: name.to_string(),
            seq,
            node: conn.node,
            connection_id: conn.id.clone(),
            bytes,
            at: SystemTime::now(),
            since_start: self.started.elapsed(),
        });
    }

    /// Sends an SCH notification to every opted-in client of a node; returns how many got it.
    pub(super) fn notify(
        &self,
        node: &Node,
        name: &str,
        seq: i64,
        build: impl Fn(EndpointType) -> Value,
    ) -> usize {
        let mut sent = 0;
        for conn in self.conns(Some(node.key)) {
            let state = conn.state();
            let Some(kind) = state.maint else { continue };
            let bytes = build(kind).encode(state.resp3);
            if self.send_recorded(&conn, name, Some(seq), bytes) {
                sent += 1;
            }
        }
        tracing::info!(node = %node.id, name, seq, clients = sent, "notification sent");
        sent
    }

    /// The window in progress on the node, for a client that just opted in, when late joiners
    /// are told.
    pub(crate) fn late_frame(&self, node: &Node, conn: &Conn) -> Option<Bytes> {
        let habits = *lock(&self.habits);
        if !habits.late_joiners {
            return None;
        }
        let state = conn.state();
        let kind = state.maint?;
        let (name, seq, frame) = match lock(&node.window).as_ref()? {
            Window::Start { name, seq, ends } => (
                *name,
                *seq,
                start_frame(name, *seq, secs_left(*ends), &node.shard_id, &habits),
            ),
            Window::Slots { seq, slots } => (
                "SMIGRATING",
                *seq,
                super::cluster::smigrating_frame(*seq, slots),
            ),
            Window::Moving { seq, ends, to } => (
                "MOVING",
                *seq,
                moving_frame(
                    *seq,
                    secs_left(*ends),
                    to.as_ref().and_then(|to| endpoint_for(to, kind)),
                ),
            ),
        };
        let bytes = frame.encode(state.resp3);
        self.record(conn, name, Some(seq), bytes.clone());
        Some(bytes)
    }

    /// The node's last end-of-maintenance notification, for a client that just opted in.
    pub(crate) fn replay_frame(&self, node: &Node, conn: &Conn) -> Option<Bytes> {
        if !self.replay.load(Ordering::Relaxed) {
            return None;
        }
        let (name, seq) = (*lock(&node.last_end))?;
        let habits = *lock(&self.habits);
        let bytes = end_frame(name, seq, &node.shard_id, &habits).encode(conn.state().resp3);
        self.record(conn, name, Some(seq), bytes.clone());
        Some(bytes)
    }
}

// ===== frames =====

pub(super) fn secs_ceil(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

fn shard_ids(shard: &str, form: ShardIds) -> Option<Value> {
    match form {
        ShardIds::Array => Some(Value::Array(vec![Value::bulk(shard)])),
        ShardIds::SimpleString => Some(Value::Simple(format!("[{shard}]"))),
        ShardIds::Absent => None,
    }
}

/// A start notification (`MIGRATING`, `FAILING_OVER`) in the shapes `habits` asks for.
pub(super) fn start_frame(name: &str, seq: i64, time: i64, shard: &str, habits: &Habits) -> Value {
    let mut items = vec![Value::bulk(name), Value::Int(seq)];
    if !(habits.migrating_without_time && name == "MIGRATING") {
        items.push(Value::Int(time));
    }
    items.extend(shard_ids(shard, habits.shard_ids));
    Value::Push(items)
}

/// An end notification (`MIGRATED`, `FAILED_OVER`) in the shapes `habits` asks for.
pub(super) fn end_frame(name: &str, seq: i64, shard: &str, habits: &Habits) -> Value {
    let mut items = vec![Value::bulk(name), Value::Int(seq)];
    items.extend(shard_ids(shard, habits.shard_ids));
    Value::Push(items)
}

/// A maintenance window in progress on a node, told again to a connection that joins during it
/// (with [`Habits::late_joiners`]).
#[derive(Debug)]
pub(crate) enum Window {
    /// `MIGRATING` or `FAILING_OVER` until `ends`.
    Start {
        name: &'static str,
        seq: i64,
        ends: Instant,
    },
    /// A slot migration (`SMIGRATING`) in progress, on every node of a cluster.
    Slots { seq: i64, slots: String },
    /// `MOVING` (to `to`, or a null endpoint) with its grace period ending at `ends`.
    Moving {
        seq: i64,
        ends: Instant,
        to: Option<Arc<Node>>,
    },
}

/// Whole seconds from now to `ends`, rounded down: 0 or negative once it has passed.
fn secs_left(ends: Instant) -> i64 {
    let now = Instant::now();
    if ends >= now {
        i64::try_from(ends.duration_since(now).as_secs()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(now.duration_since(ends).as_secs()).unwrap_or(i64::MAX)
    }
}

/// The address of a node in the form a client asked for.
pub(super) fn endpoint_for(node: &Node, kind: EndpointType) -> Option<String> {
    match kind {
        EndpointType::None => None,
        EndpointType::InternalFqdn | EndpointType::ExternalFqdn => {
            Some(format!("localhost:{}", node.port()))
        }
        // `auto` is never asked for (the handshake refuses it); it would mean an IP address.
        EndpointType::InternalIp | EndpointType::ExternalIp | EndpointType::Auto => {
            let ip = match node.listen_host.parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => ip,
                _ => IpAddr::from([127, 0, 0, 1]),
            };
            Some(SocketAddr::new(ip, node.port()).to_string())
        }
    }
}

pub(super) fn moving_frame(seq: i64, time: i64, endpoint: Option<String>) -> Value {
    Value::Push(vec![
        Value::bulk("MOVING"),
        Value::Int(seq),
        Value::Int(time),
        endpoint.map_or(Value::Null, Value::bulk),
    ])
}
