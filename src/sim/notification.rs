//! Notifications: the frames scenarios send to clients, and the record of what was sent.
//!
//! Smart client handoff notifications (`MOVING`, `MIGRATING`, `MIGRATED`, `FAILING_OVER`,
//! `FAILED_OVER`) go only to clients that opted in, in the form each asked for; every frame a
//! scenario sends is recorded as a [`SentNotification`], so tests can assert on what was sent,
//! to whom and when.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::proxy::{Conn, Node};
use super::resp::Value;
use super::{lock, Core, EndpointType};

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

    /// The node's last end-of-maintenance notification, for a client that just opted in.
    pub(crate) fn replay_frame(&self, node: &Node, conn: &Conn) -> Option<Bytes> {
        if !self.replay.load(Ordering::Relaxed) {
            return None;
        }
        let (name, seq) = (*lock(&node.last_end))?;
        let bytes = end_frame(name, seq, &node.shard_id).encode(conn.state().resp3);
        self.record(conn, name, Some(seq), bytes.clone());
        Some(bytes)
    }
}

// ===== frames =====

pub(super) fn secs_ceil(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

fn shard_ids(shard: &str) -> Value {
    Value::Array(vec![Value::bulk(shard)])
}

pub(super) fn start_frame(name: &str, seq: i64, time: i64, shard: &str) -> Value {
    Value::Push(vec![
        Value::bulk(name),
        Value::Int(seq),
        Value::Int(time),
        shard_ids(shard),
    ])
}

pub(super) fn end_frame(name: &str, seq: i64, shard: &str) -> Value {
    Value::Push(vec![Value::bulk(name), Value::Int(seq), shard_ids(shard)])
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
