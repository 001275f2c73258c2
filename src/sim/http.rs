//! The simulator's HTTP admin API.
//!
//! It serves the routes of Redis's test proxy (`cae-resp-proxy`) with the same JSON shapes, so
//! test suites written for that proxy drive this simulator unchanged:
//!
//! | route | answer |
//! |---|---|
//! | `GET /stats` | per node id: `activeConnections`, `totalConnections`, `globalInterceptors`, `connections` |
//! | `GET /connections` | per node id: its connection ids |
//! | `POST /send-to-client/{id}?encoding=base64\|raw` | `{success, connectionId}` (`error` on failure) |
//! | `POST /send-to-clients?connectionIds=a,b&encoding=...` | `{results: [...]}` |
//! | `POST /send-to-all-clients?encoding=...` | `{results: [...]}` |
//! | `DELETE /connections/{id}` | `{success, connectionId}` |
//! | `POST /interceptors` `{name, match, response, encoding}` | `{success: true, name}` |
//! | `DELETE /interceptors/{name}` (an addition) | `{success, name}` |
//! | `POST /scenarios` `{responses, encoding}` | `{success: true, totalResponses}` |
//! | `GET /nodes`, `POST /nodes`, `DELETE /nodes/{nodeId}` | `{ids}`, `{success, cfg}`, `{success}` |
//!
//! Node ids are `<targetHost>:<targetPort>@<listenPort>`; connection ids `conn_<millis>_<random>`.
//! Payloads are read as bytes whatever the `Content-Type`; `encoding` defaults to base64, which is
//! decoded leniently (characters outside the alphabet are skipped, padding is optional). A
//! malformed request is answered with HTTP 400 and `{success: false, error: {...}}`; every other
//! failure with HTTP 200 and `success: false`.
//!
//! The scenarios have their own routes under `/sim/` (JSON bodies; `node` is a node index or a
//! node id):
//!
//! | route | body |
//! |---|---|
//! | `POST /sim/migrate`, `POST /sim/failover` | `{node, durationMs, wait?}` |
//! | `POST /sim/moving` | `{from, to, graceMs}` |
//! | `POST /sim/moving-null` | `{node, graceMs, outageMs}` |
//! | `POST /sim/azure` | `{node?, type, startTime?, isReplica?, ipAddress?, sslPort?, nonSslPort?}` |
//! | `POST /sim/faults/{refuse\|blackhole\|reset\|latency\|garbage}` | `{node, latencyMs?}` |
//! | `POST /sim/restore` | `{node}` |
//! | `POST /sim/replay` | `{enabled}` |
//! | `POST /sim/send` | `{scope?: node or connection id, data, encoding?}` |
//! | `GET /sim/nodes`, `GET /sim/notifications`, `DELETE /sim/notifications` | |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value as Json_};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::azure::iso_utc;
use super::upstream::Target;
use super::{AzureEvent, AzureEventKind, Scope, SimError, Simulator};

/// A running admin API. Stops when dropped, on [`HttpServer::shutdown`], or when the simulator
/// stops.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until the server has stopped (after a shutdown, or the simulator's).
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn serve(sim: Simulator, addr: &str) -> Result<HttpServer, SimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SimError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| SimError::Bind {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    // The server must not keep the simulator alive: it holds the core, not a stopping handle.
    let state = Simulator::from_core(Arc::clone(sim.core()));
    let stop = sim.core().stop.child_token();
    let app = router(state);
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    tracing::info!("simulator admin API on http://{local}");
    Ok(HttpServer {
        addr: local,
        stop,
        task: Some(task),
    })
}

/// The admin API as an axum [`Router`], to mount in an application of your own.
pub fn router(sim: Simulator) -> Router {
    let sim = Simulator::from_core(Arc::clone(sim.core()));
    Router::new()
        .route("/stats", get(stats))
        .route("/connections", get(connections))
        .route("/connections/{id}", delete(close_connection))
        .route("/send-to-client/{id}", post(send_to_client))
        .route("/send-to-clients", post(send_to_clients))
        .route("/send-to-all-clients", post(send_to_all))
        .route("/interceptors", post(add_interceptor))
        .route("/interceptors/{name}", delete(remove_interceptor))
        .route("/scenarios", post(add_scenario))
        .route("/nodes", get(list_nodes).post(add_node))
        .route("/nodes/{id}", delete(remove_node))
        .route("/sim/nodes", get(sim_nodes))
        .route(
            "/sim/notifications",
            get(sim_notifications).delete(sim_clear_notifications),
        )
        .route("/sim/migrate", post(sim_migrate))
        .route("/sim/failover", post(sim_failover))
        .route("/sim/moving", post(sim_moving))
        .route("/sim/moving-null", post(sim_moving_null))
        .route("/sim/azure", post(sim_azure))
        .route("/sim/faults/{kind}", post(sim_fault))
        .route("/sim/restore", post(sim_restore))
        .route("/sim/replay", post(sim_replay))
        .route("/sim/send", post(sim_send))
        .with_state(sim)
}

// ===== helpers =====

/// An HTTP 400 with the validation problems.
fn invalid(issues: Vec<(&str, String)>) -> Response {
    let issues: Vec<Json_> = issues
        .into_iter()
        .map(|(path, message)| json!({ "path": [path], "message": message }))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "success": false,
            "error": { "name": "ValidationError", "issues": issues }
        })),
    )
        .into_response()
}

/// A request that does not validate: answered with HTTP 400.
#[derive(Debug)]
struct Invalid(Vec<(&'static str, String)>);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        invalid(self.0)
    }
}

fn bad(issues: Vec<(&'static str, String)>) -> Invalid {
    Invalid(issues)
}

fn ok(v: Json_) -> Response {
    Json(v).into_response()
}

fn failed(err: impl std::fmt::Display) -> Response {
    Json(json!({ "success": false, "error": err.to_string() })).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    Raw,
}

fn encoding_of(value: Option<&str>) -> Result<Encoding, Invalid> {
    match value {
        None | Some("base64") => Ok(Encoding::Base64),
        Some("raw") => Ok(Encoding::Raw),
        Some(other) => Err(bad(vec![(
            "encoding",
            format!("expected 'base64' or 'raw', got {other:?}"),
        )])),
    }
}

fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, Invalid> {
    match q {
        Ok(Query(m)) => Ok(m),
        Err(e) => Err(bad(vec![("query", e.body_text())])),
    }
}

fn decode(data: &[u8], encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Raw => Bytes::copy_from_slice(data),
        Encoding::Base64 => Bytes::from(decode_base64_lenient(data)),
    }
}

/// Decodes base64 the forgiving way: URL-safe letters are accepted, anything outside the
/// alphabet is skipped, decoding stops at the first `=`, and a dangling last character is
/// dropped. It never fails: the worst input decodes to fewer bytes.
pub(crate) fn decode_base64_lenient(data: &[u8]) -> Vec<u8> {
    let mut clean = Vec::with_capacity(data.len());
    for &b in data {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => clean.push(b),
            b'-' => clean.push(b'+'),
            b'_' => clean.push(b'/'),
            b'=' => break,
            _ => {}
        }
    }
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(&clean).unwrap_or_default()
}

fn parse_json(body: &[u8]) -> Result<serde_json::Map<String, Json_>, Invalid> {
    match serde_json::from_slice::<Json_>(body) {
        Ok(Json_::Object(m)) => Ok(m),
        Ok(_) => Err(bad(vec![("body", "expected a JSON object".into())])),
        Err(e) => Err(bad(vec![("body", format!("invalid JSON: {e}"))])),
    }
}

fn req_str(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<String, Invalid> {
    match m.get(key) {
        Some(Json_::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(vec![(key, "expected a string".into())])),
        None => Err(bad(vec![(key, "required".into())])),
    }
}

fn opt_u64(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<Option<u64>, Invalid> {
    match m.get(key) {
        None | Some(Json_::Null) => Ok(None),
        Some(Json_::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(vec![(key, "expected a non-negative integer".into())])),
        Some(Json_::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad(vec![(key, "expected a non-negative integer".into())])),
        Some(_) => Err(bad(vec![(key, "expected a non-negative integer".into())])),
    }
}

fn req_ms(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<Duration, Invalid> {
    opt_u64(m, key)?
        .map(Duration::from_millis)
        .ok_or_else(|| bad(vec![(key, "required (milliseconds)".into())]))
}

/// A node given as an index (number or numeric string) or as a node id.
fn node_of(
    sim: &Simulator,
    m: &serde_json::Map<String, Json_>,
    key: &'static str,
) -> Result<Result<usize, SimError>, Invalid> {
    match m.get(key) {
        Some(Json_::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(i) => Ok(Ok(i)),
            None => Err(bad(vec![(key, "expected a node index or id".into())])),
        },
        Some(Json_::String(s)) => {
            if let Ok(i) = s.parse::<usize>() {
                return Ok(Ok(i));
            }
            Ok(sim
                .nodes()
                .iter()
                .find(|n| n.id() == s)
                .map(|n| n.index())
                .ok_or_else(|| SimError::InvalidArgument {
                    message: format!("no node with id {s:?}"),
                }))
        }
        None => Err(bad(vec![(key, "required".into())])),
        Some(_) => Err(bad(vec![(key, "expected a node index or id".into())])),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(invalid) => return invalid.into_response(),
        }
    };
}

macro_rules! sim_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return failed(e),
        }
    };
}

fn iso_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}Z", iso_utc(d.as_secs()), d.subsec_millis())
}

fn send_result(sim: &Simulator, id: &str, data: &Bytes) -> Json_ {
    match sim.core().conn(id) {
        None => json!({ "success": false, "error": "Connection not found", "connectionId": id }),
        Some(conn) => {
            if sim.core().send_recorded(&conn, "raw", None, data.clone()) {
                json!({ "success": true, "connectionId": id })
            } else {
                json!({ "success": false, "error": "Connection closed", "connectionId": id })
            }
        }
    }
}

// ===== cae-resp-proxy routes =====

async fn stats(State(sim): State<Simulator>) -> Response {
    let core = sim.core();
    let mut out = serde_json::Map::new();
    for node in core.nodes() {
        let conns = core.conns(Some(node.key));
        let interceptors: Vec<Json_> = core
            .interceptors
            .stats(node.key)
            .into_iter()
            .map(|s| {
                json!({ "name": s.name, "matchCount": s.match_count, "invokeCount": s.invoke_count })
            })
            .collect();
        let connections: Vec<Json_> = conns
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "clientAddress": c.client.ip().to_string(),
                    "clientPort": c.client.port(),
                    "connectedAt": iso_millis(c.connected_at),
                    "interceptors": [],
                })
            })
            .collect();
        out.insert(
            node.id.clone(),
            json!({
                "activeConnections": conns.len(),
                "totalConnections": node.total.load(std::sync::atomic::Ordering::Relaxed),
                "globalInterceptors": interceptors,
                "connections": connections,
            }),
        );
    }
    ok(Json_::Object(out))
}

async fn connections(State(sim): State<Simulator>) -> Response {
    let core = sim.core();
    let mut out = serde_json::Map::new();
    for node in core.nodes() {
        let ids: Vec<Json_> = core
            .conns(Some(node.key))
            .iter()
            .map(|c| Json_::String(c.id.clone()))
            .collect();
        out.insert(node.id.clone(), Json_::Array(ids));
    }
    ok(Json_::Object(out))
}

async fn close_connection(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let success = sim.close_connection(&id);
    ok(json!({ "success": success, "connectionId": id }))
}

async fn send_to_client(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let q = tri!(query_map(q));
    let encoding = tri!(encoding_of(q.get("encoding").map(String::as_str)));
    let data = decode(&body, encoding);
    ok(send_result(&sim, &id, &data))
}

async fn send_to_clients(
    State(sim): State<Simulator>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let q = tri!(query_map(q));
    let encoding = tri!(encoding_of(q.get("encoding").map(String::as_str)));
    let ids: Vec<&str> = q
        .get("connectionIds")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return invalid(vec![(
            "connectionIds",
            "At least one connection ID is required".into(),
        )]);
    }
    let data = decode(&body, encoding);
    let results: Vec<Json_> = ids.iter().map(|id| send_result(&sim, id, &data)).collect();
    ok(json!({ "results": results }))
}

async fn send_to_all(
    State(sim): State<Simulator>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let q = tri!(query_map(q));
    let encoding = tri!(encoding_of(q.get("encoding").map(String::as_str)));
    let data = decode(&body, encoding);
    let results: Vec<Json_> = sim
        .core()
        .conns(None)
        .iter()
        .map(|c| send_result(&sim, &c.id, &data))
        .collect();
    ok(json!({ "results": results }))
}

async fn add_interceptor(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let name = tri!(req_str(&m, "name"));
    let matched = tri!(req_str(&m, "match"));
    let response = tri!(req_str(&m, "response"));
    let encoding = match m.get("encoding") {
        None | Some(Json_::Null) => Encoding::Base64,
        Some(Json_::String(s)) => tri!(encoding_of(Some(s))),
        Some(_) => return invalid(vec![("encoding", "expected 'base64' or 'raw'".into())]),
    };
    sim.core().interceptors.install_exact(
        &name,
        decode(matched.as_bytes(), encoding),
        decode(response.as_bytes(), encoding),
    );
    ok(json!({ "success": true, "name": name }))
}

async fn remove_interceptor(State(sim): State<Simulator>, Path(name): Path<String>) -> Response {
    let success = sim.core().interceptors.remove(&name);
    ok(json!({ "success": success, "name": name }))
}

async fn add_scenario(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let encoding = match m.get("encoding") {
        None | Some(Json_::Null) => Encoding::Base64,
        Some(Json_::String(s)) => tri!(encoding_of(Some(s))),
        Some(_) => return invalid(vec![("encoding", "expected 'base64' or 'raw'".into())]),
    };
    let responses: Vec<Bytes> = match m.get("responses") {
        Some(Json_::Array(items)) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json_::String(s) => out.push(decode(s.as_bytes(), encoding)),
                    _ => return invalid(vec![("responses", "expected strings".into())]),
                }
            }
            out
        }
        Some(Json_::Array(_)) => {
            return invalid(vec![(
                "responses",
                "At least one response is required".into(),
            )])
        }
        _ => return invalid(vec![("responses", "required: an array of strings".into())]),
    };
    let total = responses.len();
    sim.core().interceptors.install_sequence(responses);
    ok(json!({ "success": true, "totalResponses": total }))
}

async fn list_nodes(State(sim): State<Simulator>) -> Response {
    let ids: Vec<String> = sim.nodes().iter().map(|n| n.id().to_string()).collect();
    ok(json!({ "ids": ids }))
}

async fn add_node(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let listen_port = tri!(opt_u64(&m, "listenPort")).unwrap_or(0);
    let Ok(listen_port) = u16::try_from(listen_port) else {
        return invalid(vec![("listenPort", "expected a port number".into())]);
    };
    let target_host = tri!(req_str(&m, "targetHost"));
    let Some(target_port) = tri!(opt_u64(&m, "targetPort")) else {
        return invalid(vec![("targetPort", "required".into())]);
    };
    let Ok(target_port) = u16::try_from(target_port) else {
        return invalid(vec![("targetPort", "expected a port number".into())]);
    };
    let listen_host = match m.get("listenHost") {
        Some(Json_::String(s)) => s.clone(),
        _ => sim.core().listen_host.clone(),
    };
    let target = if target_host == "memory" {
        Target::Memory
    } else {
        Target::Redis {
            host: target_host.clone(),
            port: target_port,
        }
    };
    let node = sim_try!(sim.core().add_node(&listen_host, listen_port, target).await);
    ok(json!({
        "success": true,
        "cfg": {
            "listenPort": node.port(),
            "listenHost": listen_host,
            "targetHost": target_host,
            "targetPort": target_port,
            "nodeId": node.id,
        }
    }))
}

async fn remove_node(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let key = sim.nodes().iter().find(|n| n.id() == id).map(|n| n.index());
    let success = key.is_some_and(|k| sim.remove_node(k));
    ok(json!({ "success": success }))
}

// ===== scenario routes =====

async fn sim_nodes(State(sim): State<Simulator>) -> Response {
    let nodes: Vec<Json_> = sim
        .nodes()
        .iter()
        .map(|n| {
            let conns = n.connections();
            json!({
                "index": n.index(),
                "id": n.id(),
                "address": n.addr().to_string(),
                "connections": conns.len(),
                "optedIn": conns.iter().filter(|c| c.endpoint_type.is_some()).count(),
            })
        })
        .collect();
    ok(json!({ "nodes": nodes }))
}

async fn sim_notifications(State(sim): State<Simulator>) -> Response {
    let engine = base64::engine::general_purpose::STANDARD;
    let list: Vec<Json_> = sim
        .notifications()
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "seq": n.seq,
                "node": n.node,
                "connectionId": n.connection_id,
                "bytes": engine.encode(&n.bytes),
                "text": String::from_utf8_lossy(&n.bytes),
                "at": iso_millis(n.at),
                "sinceStartMs": n.since_start.as_millis() as u64,
            })
        })
        .collect();
    ok(json!({ "notifications": list }))
}

async fn sim_clear_notifications(State(sim): State<Simulator>) -> Response {
    sim.clear_notifications();
    ok(json!({ "success": true }))
}

fn wait_flag(m: &serde_json::Map<String, Json_>) -> bool {
    matches!(m.get("wait"), Some(Json_::Bool(true)))
}

async fn sim_migrate(State(sim): State<Simulator>, body: Bytes) -> Response {
    timed_scenario(sim, body, "migrate").await
}

async fn sim_failover(State(sim): State<Simulator>, body: Bytes) -> Response {
    timed_scenario(sim, body, "failover").await
}

async fn timed_scenario(sim: Simulator, body: Bytes, which: &'static str) -> Response {
    let m = tri!(parse_json(&body));
    let node = sim_try!(tri!(node_of(&sim, &m, "node")));
    let duration = tri!(req_ms(&m, "durationMs"));
    sim_try!(sim.core().node(node));
    let run = {
        let sim = sim.clone();
        async move {
            if which == "migrate" {
                sim.migrate(node, duration).await
            } else {
                sim.failover(node, duration).await
            }
        }
    };
    if wait_flag(&m) {
        let seq = sim_try!(run.await);
        ok(json!({ "success": true, "scenario": which, "node": node, "seq": seq }))
    } else {
        tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::warn!(error = %e, "scenario failed");
            }
        });
        ok(json!({ "success": true, "scenario": which, "node": node, "started": true }))
    }
}

async fn sim_moving(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let from = sim_try!(tri!(node_of(&sim, &m, "from")));
    let to = sim_try!(tri!(node_of(&sim, &m, "to")));
    let grace = tri!(req_ms(&m, "graceMs"));
    let moving = sim_try!(sim.moving(from, to, grace).await);
    ok(json!({ "success": true, "seq": moving.seq(), "recipients": moving.recipients() }))
}

async fn sim_moving_null(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let node = sim_try!(tri!(node_of(&sim, &m, "node")));
    let grace = tri!(req_ms(&m, "graceMs"));
    let outage = tri!(opt_u64(&m, "outageMs")).unwrap_or(1000);
    let moving = sim_try!(
        sim.moving_null(node, grace, Duration::from_millis(outage))
            .await
    );
    ok(json!({ "success": true, "seq": moving.seq(), "recipients": moving.recipients() }))
}

async fn sim_azure(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let kind: AzureEventKind = match req_str(&m, "type") {
        Ok(t) => match t.parse() {
            Ok(k) => k,
            Err(never) => match never {},
        },
        Err(r) => return r.into_response(),
    };
    let mut event = AzureEvent::new(kind);
    if let Some(Json_::String(t)) = m.get("startTime") {
        event = event.start_time(t.clone());
    }
    if let Some(Json_::Bool(b)) = m.get("isReplica") {
        event = event.replica(*b);
    }
    if let Some(Json_::String(ip)) = m.get("ipAddress") {
        event = event.ip_address(ip.clone());
    }
    let ssl = tri!(opt_u64(&m, "sslPort")).unwrap_or(u64::from(event.ssl_port));
    let plain = tri!(opt_u64(&m, "nonSslPort")).unwrap_or(u64::from(event.non_ssl_port));
    let (Ok(ssl), Ok(plain)) = (u16::try_from(ssl), u16::try_from(plain)) else {
        return invalid(vec![("sslPort", "expected port numbers".into())]);
    };
    event = event.ports(ssl, plain);
    let scope = if m.contains_key("node") {
        Scope::Node(sim_try!(tri!(node_of(&sim, &m, "node"))))
    } else {
        Scope::All
    };
    let sent = sim_try!(sim.azure(scope, &event));
    ok(json!({ "success": true, "recipients": sent, "payload": event.payload() }))
}

async fn sim_fault(
    State(sim): State<Simulator>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let m = tri!(parse_json(&body));
    let node = sim_try!(tri!(node_of(&sim, &m, "node")));
    match kind.as_str() {
        "refuse" => sim_try!(sim.refuse(node)),
        "blackhole" => sim_try!(sim.blackhole(node)),
        "reset" => {
            let n = sim_try!(sim.reset_all(node));
            return ok(json!({ "success": true, "connections": n }));
        }
        "latency" => {
            let latency = tri!(req_ms(&m, "latencyMs"));
            sim_try!(sim.latency(node, latency));
        }
        "garbage" => {
            let n = sim_try!(sim.garbage(node));
            return ok(json!({ "success": true, "connections": n }));
        }
        "restore" => sim_try!(sim.restore(node)),
        other => {
            return invalid(vec![(
                "kind",
                format!(
                    "unknown fault {other:?} (refuse, blackhole, reset, latency, garbage, restore)"
                ),
            )])
        }
    }
    ok(json!({ "success": true }))
}

async fn sim_restore(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let node = sim_try!(tri!(node_of(&sim, &m, "node")));
    sim_try!(sim.restore(node));
    ok(json!({ "success": true }))
}

async fn sim_replay(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    match m.get("enabled") {
        Some(Json_::Bool(on)) => {
            sim.set_replay(*on);
            ok(json!({ "success": true, "enabled": on }))
        }
        _ => invalid(vec![("enabled", "required: true or false".into())]),
    }
}

async fn sim_send(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let encoding = match m.get("encoding") {
        None | Some(Json_::Null) => Encoding::Base64,
        Some(Json_::String(s)) => tri!(encoding_of(Some(s))),
        Some(_) => return invalid(vec![("encoding", "expected 'base64' or 'raw'".into())]),
    };
    let data = decode(tri!(req_str(&m, "data")).as_bytes(), encoding);
    let scope = match m.get("scope") {
        None | Some(Json_::Null) => Scope::All,
        Some(Json_::String(s)) if s.starts_with("conn_") => Scope::Connection(s.clone()),
        Some(_) => Scope::Node(sim_try!(tri!(node_of(&sim, &m, "scope")))),
    };
    let n = sim_try!(sim.send_raw(scope, data));
    ok(json!({ "success": true, "recipients": n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_decoded_leniently() {
        assert_eq!(
            decode_base64_lenient(b"KjENCiQ0DQpQSU5HDQo="),
            b"*1\r\n$4\r\nPING\r\n"
        );
        assert_eq!(
            decode_base64_lenient(b"KjENCiQ0DQpQSU5HDQo"),
            b"*1\r\n$4\r\nPING\r\n"
        );
        assert_eq!(decode_base64_lenient(b"Kj EN\nCi"), b"*1\r\n");
        assert_eq!(decode_base64_lenient(b"!!!"), b"");
        assert_eq!(decode_base64_lenient(b"QUJD\xff=garbage"), b"ABC");
        assert_eq!(decode_base64_lenient(b"QUJDR"), b"ABC");
        assert_eq!(decode_base64_lenient(b"-_8"), decode_base64_lenient(b"+/8"));
    }
}
