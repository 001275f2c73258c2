//! The maintenance simulator in front of a real redis-server, and the client stacks tests build
//! over it.

use std::net::SocketAddr;
use std::time::Duration;

use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::maintenance::MaintenanceEvents;
use redis_handoff::sim::{Backend, Moving, Simulator, SimulatorBuilder};
use redis_handoff::{Connector, EventKind, Maintenance, NotificationDemux};

use super::client::connector;
use super::events::next_event;
use super::RedisServer;

/// A simulator in front of `server`, configured further by `configure` (nodes, latency, replay).
pub async fn sim_over_with(
    server: &RedisServer,
    configure: impl FnOnce(SimulatorBuilder) -> SimulatorBuilder,
) -> Simulator {
    configure(Simulator::builder().backend(Backend::redis(server.addr())))
        .start()
        .await
        .expect("simulator starts")
}

/// A simulator of `nodes` nodes in front of `server`.
pub async fn sim_over(server: &RedisServer, nodes: usize) -> Simulator {
    sim_over_with(server, |b| b.nodes(nodes)).await
}

/// A fresh redis-server and a simulator of `nodes` nodes in front of it (keep both alive).
pub async fn redis_and_sim(nodes: usize) -> (RedisServer, Simulator) {
    let server = RedisServer::start();
    let sim = sim_over(&server, nodes).await;
    (server, sim)
}

/// A demux over a connector configured with node `node` of `sim`.
pub fn demux_to(
    sim: &Simulator,
    node: usize,
    maintenance: &Maintenance,
) -> NotificationDemux<Connector> {
    NotificationDemux::over_connector(connector(&sim.node(node).url()), maintenance.clone())
}

/// HandoffRetry over a demux to node 0 of `sim`, connected.
pub async fn handoff_to(
    sim: &Simulator,
    maintenance: &Maintenance,
    config: HandoffConfig,
) -> HandoffRetry {
    HandoffRetry::connect(demux_to(sim, 0, maintenance), maintenance.clone(), config)
        .await
        .expect("the stack connects through the simulator")
}

/// Sends a `MOVING` from node `from` to node `to` with `grace`, then waits for the first event
/// that `until` accepts; returns the `MOVING` (to wait for or abort) and that event's kind.
pub async fn moving_until(
    sim: &Simulator,
    events: &mut MaintenanceEvents,
    (from, to): (usize, usize),
    grace: Duration,
    until: impl Fn(&EventKind) -> bool,
) -> (Moving, EventKind) {
    let moving = sim.moving(from, to, grace).await.unwrap();
    let seen = next_event(events, until).await;
    (moving, seen)
}

/// An admin API call whose answer is JSON: the status and the parsed body.
pub async fn api_call(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (status, text) = super::http(api, method, path, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, v)
}

/// Whether `id` has the test proxy's connection id shape: `conn_<millis>_<9 base-36 chars>`.
pub fn is_conn_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('_').collect();
    parts.len() == 3
        && parts[0] == "conn"
        && parts[1].len() >= 13
        && parts[1].chars().all(|c| c.is_ascii_digit())
        && parts[2].len() == 9
        && parts[2]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A restarted server's refusal while it reads its data back, as raw RESP.
#[allow(dead_code)]
pub const LOADING: &str = "-LOADING Redis is loading the dataset in memory\r\n";

/// Has the simulator whose admin API listens at `http` answer the next frames (on any
/// connection, one each) with `replies`, raw RESP, instead of forwarding them.
#[allow(dead_code)]
pub async fn answer_next_with(http: SocketAddr, replies: &[&str]) {
    let quoted: Vec<String> = replies
        .iter()
        .map(|r| format!("\"{}\"", r.replace("\r\n", "\\r\\n")))
        .collect();
    let body = format!(r#"{{"responses":[{}],"encoding":"raw"}}"#, quoted.join(","));
    let (status, text) = super::http(http, "POST", "/scenarios", body.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
}
