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
//! Payloads are read as bytes whatever the `Content-Type`, and JSON bodies are parsed whatever
//! it says. `encoding` defaults to base64, which is decoded leniently (characters outside the
//! alphabet are skipped, padding is optional), so no payload is ever refused. With `raw`, a
//! request body is taken byte for byte, and a string of a JSON body gives one byte per
//! character, as the test proxy reads it (`"\u00ff"` is the byte 0xFF).
//!
//! A new interceptor goes in front of the existing ones, the defaults included; one with the
//! name of an existing interceptor replaces it and goes in front as well. `POST /scenarios`
//! installs one named `scenario-interceptor` the same way.
//! `POST /send-to-clients` answers for the listed ids of live connections only, node by node.
//!
//! A request that does not validate is answered with HTTP 400 and
//! `{"success": false, "error": {"name": "ZodError", "message": "..."}}`, the message being the
//! problems as a JSON array in zod's shape (`code`, `path`, `message`, ...); every other
//! failure with HTTP 200 and `success: false`. An unknown route (or a known one with another
//! method) gets a plain-text `404 Not Found`.
//!
//! `POST /nodes` takes the node's own target (`targetHost`, `targetPort`): in cluster mode
//! (`redis-handoff sim --cluster`, [`SimulatorBuilder::cluster`](super::SimulatorBuilder::cluster))
//! that is the cluster node it fronts, and it joins the rewritten topology at once;
//! `DELETE /nodes/{nodeId}` takes a node out of it (its cluster node's address is then shown
//! as the cluster writes it).
//!
//! The scenarios have their own routes under `/sim/` (JSON bodies; `node` is a node index, a
//! node id or the address a node listens on):
//!
//! | route | body |
//! |---|---|
//! | `POST /sim/migrate`, `POST /sim/failover`, `POST /sim/in-place-upgrade` | `{node, durationMs, wait?}` (an upgrade: relaxed for `durationMs`, then its connections dropped with no `MOVING`) |
//! | `POST /sim/moving` | `{from, to, graceMs}` |
//! | `POST /sim/migrate-slots` (cluster mode) | `{slots: "100-200,300", to, delayMs?, smigrated?, duplicates?, wait?}`: `SMIGRATING`, the slots moved for real to the cluster node behind `to`, `SMIGRATED` ([`Simulator::migrate_slots`]); with `wait`, the answer lists the moves |
//! | `POST /sim/moving-null` | `{node, graceMs, outageMs}` |
//! | `POST /sim/azure` | `{node?, type, startTime?, isReplica?, ipAddress?, sslPort?, nonSslPort?}` |
//! | `POST /sim/faults/{refuse\|blackhole\|reset\|latency\|garbage}` | `{node, latencyMs?}` |
//! | `POST /sim/restore` | `{node}` |
//! | `POST /sim/replay` | `{enabled}` |
//! | `POST /sim/habits` | `{shardIds?: "array"\|"string"\|"absent", migratingWithoutTime?, effectDelayMs?, lateJoiners?, redisSoftware?}` (missing fields: the defaults, or Redis Software's with `redisSoftware`) |
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
use serde::Serialize;
use serde_json::{json, Value as Json_};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::azure::iso_utc;
use super::proxy::Conn;
use super::upstream::Target;
use super::{AzureEvent, AzureEventKind, MigrateSlots, Scope, SimError, Simulator, Slots};

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
        .route("/sim/migrate-slots", post(sim_migrate_slots))
        .route("/sim/moving-null", post(sim_moving_null))
        .route("/sim/azure", post(sim_azure))
        .route("/sim/faults/{kind}", post(sim_fault))
        .route("/sim/restore", post(sim_restore))
        .route("/sim/replay", post(sim_replay))
        .route("/sim/habits", post(sim_habits))
        .route("/sim/in-place-upgrade", post(sim_upgrade))
        .route("/sim/send", post(sim_send))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(sim)
}

// ===== helpers =====

/// One problem with a request, in the shape zod reports it: the test proxy validates its
/// requests with zod, and answers a failure with the issues as the error's message.
#[derive(Debug, Serialize)]
struct Issue {
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'static str>,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<&'static [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusive: Option<bool>,
    path: Vec<Json_>,
    message: String,
}

const ENCODINGS: &[&str] = &["base64", "raw"];

impl Issue {
    fn base(code: &'static str, path: Vec<Json_>, message: String) -> Issue {
        Issue {
            origin: None,
            expected: None,
            code,
            values: None,
            minimum: None,
            inclusive: None,
            path,
            message,
        }
    }

    /// A value of the wrong JSON type, or none (`got` is `None`).
    fn invalid_type(path: Vec<Json_>, expected: &'static str, got: Option<&Json_>) -> Issue {
        let received = match got {
            None => "undefined",
            Some(Json_::Null) => "null",
            Some(Json_::Bool(_)) => "boolean",
            Some(Json_::Number(_)) => "number",
            Some(Json_::String(_)) if expected == "number" => "NaN",
            Some(Json_::String(_)) => "string",
            Some(Json_::Array(_)) => "array",
            Some(Json_::Object(_)) => "object",
        };
        Issue {
            expected: Some(expected),
            ..Issue::base(
                "invalid_type",
                path,
                format!("Invalid input: expected {expected}, received {received}"),
            )
        }
    }

    /// A value that is not one of `values`.
    fn invalid_option(path: Vec<Json_>, values: &'static [&'static str]) -> Issue {
        let listed: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        Issue {
            values: Some(values),
            ..Issue::base(
                "invalid_value",
                path,
                format!("Invalid option: expected one of {}", listed.join("|")),
            )
        }
    }

    /// An array with fewer than `minimum` items.
    fn too_few(path: Vec<Json_>, minimum: u64, message: &str) -> Issue {
        Issue {
            origin: Some("array"),
            minimum: Some(minimum),
            inclusive: Some(true),
            ..Issue::base("too_small", path, message.to_string())
        }
    }

    /// Any other problem.
    fn custom(path: Vec<Json_>, message: impl Into<String>) -> Issue {
        Issue::base("custom", path, message.into())
    }
}

fn at(key: &str) -> Vec<Json_> {
    vec![Json_::String(key.to_string())]
}

/// A request that does not validate: HTTP 400 with
/// `{"success": false, "error": {"name": "ZodError", "message": <the issues as JSON>}}`.
#[derive(Debug)]
struct Invalid(Vec<Issue>);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        let message = serde_json::to_string_pretty(&self.0).unwrap_or_default();
        (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "success": false,
                "error": { "name": "ZodError", "message": message }
            })),
        )
            .into_response()
    }
}

impl From<Issue> for Invalid {
    fn from(issue: Issue) -> Self {
        Invalid(vec![issue])
    }
}

/// Keeps the issues of one field and goes on, so a request is answered with all of them.
fn check<T>(issues: &mut Vec<Issue>, r: Result<T, Invalid>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(Invalid(more)) => {
            issues.extend(more);
            None
        }
    }
}

fn invalid(issue: Issue) -> Response {
    Invalid::from(issue).into_response()
}

fn ok(v: Json_) -> Response {
    Json(v).into_response()
}

fn failed(err: impl std::fmt::Display) -> Response {
    Json(json!({ "success": false, "error": err.to_string() })).into_response()
}

/// An unknown route, or a known one with another method: the test proxy's plain-text 404.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 Not Found").into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    Raw,
}

/// The `encoding` query parameter: base64 when absent.
fn query_encoding(q: &HashMap<String, String>) -> Result<Encoding, Invalid> {
    match q.get("encoding").map(String::as_str) {
        None | Some("base64") => Ok(Encoding::Base64),
        Some("raw") => Ok(Encoding::Raw),
        Some(_) => Err(Issue::invalid_option(at("encoding"), ENCODINGS).into()),
    }
}

/// The `encoding` field of a JSON body: base64 when absent.
fn json_encoding(m: &serde_json::Map<String, Json_>) -> Result<Encoding, Invalid> {
    match m.get("encoding") {
        None | Some(Json_::Null) => Ok(Encoding::Base64),
        Some(Json_::String(s)) if s == "base64" => Ok(Encoding::Base64),
        Some(Json_::String(s)) if s == "raw" => Ok(Encoding::Raw),
        Some(_) => Err(Issue::invalid_option(at("encoding"), ENCODINGS).into()),
    }
}

fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, Invalid> {
    match q {
        Ok(Query(m)) => Ok(m),
        Err(e) => Err(Issue::custom(Vec::new(), e.body_text()).into()),
    }
}

/// A request body: raw bytes are taken as they are.
fn decode_body(data: &[u8], encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Raw => Bytes::copy_from_slice(data),
        Encoding::Base64 => Bytes::from(decode_base64_lenient(data)),
    }
}

/// A string of a JSON body. Raw, each character is one byte (its low eight bits, as the test
/// proxy's `latin1` reading of the string gives), so `"\u00ff"` is the byte 0xFF.
fn decode_text(text: &str, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Raw => text
            .encode_utf16()
            .map(|unit| (unit & 0xff) as u8)
            .collect(),
        Encoding::Base64 => Bytes::from(decode_base64_lenient(text.as_bytes())),
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

/// A JSON object body, whatever the `Content-Type` says.
fn parse_json(body: &[u8]) -> Result<serde_json::Map<String, Json_>, Invalid> {
    match serde_json::from_slice::<Json_>(body) {
        Ok(Json_::Object(m)) => Ok(m),
        Ok(other) => Err(Issue::invalid_type(Vec::new(), "object", Some(&other)).into()),
        Err(_) => Err(Issue::custom(Vec::new(), "Malformed JSON in request body").into()),
    }
}

fn req_str(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<String, Invalid> {
    match m.get(key) {
        Some(Json_::String(s)) => Ok(s.clone()),
        got => Err(Issue::invalid_type(at(key), "string", got).into()),
    }
}

/// A whole number of at least 0, given as a number or a numeric string.
fn opt_u64(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<Option<u64>, Invalid> {
    let not_whole = || {
        Invalid::from(Issue::custom(
            at(key),
            "Expected a whole number of at least 0",
        ))
    };
    match m.get(key) {
        None | Some(Json_::Null) => Ok(None),
        Some(Json_::Number(n)) => n.as_u64().map(Some).ok_or_else(not_whole),
        Some(got @ Json_::String(s)) => match s.trim().parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) if s.trim().parse::<f64>().is_ok() => Err(not_whole()),
            Err(_) => Err(Issue::invalid_type(at(key), "number", Some(got)).into()),
        },
        got => Err(Issue::invalid_type(at(key), "number", got).into()),
    }
}

fn req_u64(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<u64, Invalid> {
    opt_u64(m, key)?.ok_or_else(|| Issue::invalid_type(at(key), "number", None).into())
}

fn port(key: &'static str, n: u64) -> Result<u16, Invalid> {
    u16::try_from(n)
        .map_err(|_| Issue::custom(at(key), "Expected a port number (0 to 65535)").into())
}

fn req_ms(m: &serde_json::Map<String, Json_>, key: &'static str) -> Result<Duration, Invalid> {
    req_u64(m, key).map(Duration::from_millis)
}

/// A node given as an index (number or numeric string) or as a node id.
fn node_of(
    sim: &Simulator,
    m: &serde_json::Map<String, Json_>,
    key: &'static str,
) -> Result<Result<usize, SimError>, Invalid> {
    let not_a_node = || Invalid::from(Issue::custom(at(key), "Expected a node index or a node id"));
    match m.get(key) {
        Some(Json_::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(i) => Ok(Ok(i)),
            None => Err(not_a_node()),
        },
        Some(Json_::String(s)) => {
            if let Ok(i) = s.parse::<usize>() {
                return Ok(Ok(i));
            }
            Ok(sim
                .nodes()
                .iter()
                .find(|n| n.id() == s || n.addr().to_string() == *s)
                .map(|n| n.index())
                .ok_or_else(|| SimError::InvalidArgument {
                    message: format!("no node with id or listen address {s:?}"),
                }))
        }
        None => Err(Issue::invalid_type(at(key), "string", None).into()),
        Some(_) => Err(not_a_node()),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(invalid) => return Invalid::into_response(invalid),
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

/// Sends `data` to one live connection, as the test proxy's `sendToClient` reports it.
fn send_to(sim: &Simulator, conn: &Conn, data: &Bytes) -> Json_ {
    let id = &conn.id;
    if sim.core().send_recorded(conn, "raw", None, data.clone()) {
        json!({ "success": true, "connectionId": id })
    } else {
        json!({ "success": false, "error": "Client socket is not writable", "connectionId": id })
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
    let encoding = tri!(query_encoding(&q));
    let data = decode_body(&body, encoding);
    match sim.core().conn(&id) {
        Some(conn) => ok(send_to(&sim, &conn, &data)),
        None => {
            ok(json!({ "success": false, "error": "Connection not found", "connectionId": id }))
        }
    }
}

/// Sends to the listed connections that are live, node by node as the test proxy does; ids of
/// no live connection get no result.
async fn send_to_clients(
    State(sim): State<Simulator>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let q = tri!(query_map(q));
    let mut issues = Vec::new();
    let ids: Option<Vec<&str>> = match q.get("connectionIds") {
        None => {
            issues.push(Issue::invalid_type(at("connectionIds"), "string", None));
            None
        }
        Some(s) => {
            let ids: Vec<&str> = s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if ids.is_empty() {
                issues.push(Issue::too_few(
                    at("connectionIds"),
                    1,
                    "At least one connection ID is required",
                ));
            }
            Some(ids)
        }
    };
    let encoding = check(&mut issues, query_encoding(&q));
    let (Some(ids), Some(encoding), true) = (ids, encoding, issues.is_empty()) else {
        return Invalid(issues).into_response();
    };
    let data = decode_body(&body, encoding);
    let core = sim.core();
    let mut results = Vec::new();
    for node in core.nodes() {
        let conns = core.conns(Some(node.key));
        for id in &ids {
            if let Some(conn) = conns.iter().find(|c| c.id == *id) {
                results.push(send_to(&sim, conn, &data));
            }
        }
    }
    ok(json!({ "results": results }))
}

async fn send_to_all(
    State(sim): State<Simulator>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let q = tri!(query_map(q));
    let encoding = tri!(query_encoding(&q));
    let data = decode_body(&body, encoding);
    let core = sim.core();
    let results: Vec<Json_> = core
        .nodes()
        .iter()
        .flat_map(|node| core.conns(Some(node.key)))
        .map(|c| send_to(&sim, &c, &data))
        .collect();
    ok(json!({ "results": results }))
}

async fn add_interceptor(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let mut issues = Vec::new();
    let name = check(&mut issues, req_str(&m, "name"));
    let encoding = check(&mut issues, json_encoding(&m));
    let matched = check(&mut issues, req_str(&m, "match"));
    let response = check(&mut issues, req_str(&m, "response"));
    let (Some(name), Some(encoding), Some(matched), Some(response)) =
        (name, encoding, matched, response)
    else {
        return Invalid(issues).into_response();
    };
    sim.core().interceptors.install_exact(
        &name,
        decode_text(&matched, encoding),
        decode_text(&response, encoding),
    );
    ok(json!({ "success": true, "name": name }))
}

async fn remove_interceptor(State(sim): State<Simulator>, Path(name): Path<String>) -> Response {
    let success = sim.core().interceptors.remove(&name);
    ok(json!({ "success": success, "name": name }))
}

async fn add_scenario(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let mut issues = Vec::new();
    let texts: Option<Vec<&str>> = match m.get("responses") {
        Some(Json_::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Json_::String(s) => texts.push(s.as_str()),
                    other => issues.push(Issue::invalid_type(
                        vec![json!("responses"), json!(i)],
                        "string",
                        Some(other),
                    )),
                }
            }
            if items.is_empty() {
                issues.push(Issue::too_few(
                    at("responses"),
                    1,
                    "At least one response is required",
                ));
            }
            Some(texts)
        }
        got => {
            issues.push(Issue::invalid_type(at("responses"), "array", got));
            None
        }
    };
    let encoding = check(&mut issues, json_encoding(&m));
    let (Some(texts), Some(encoding), true) = (texts, encoding, issues.is_empty()) else {
        return Invalid(issues).into_response();
    };
    let responses: Vec<Bytes> = texts.iter().map(|t| decode_text(t, encoding)).collect();
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
    let mut issues = Vec::new();
    let listen_port = check(
        &mut issues,
        opt_u64(&m, "listenPort").and_then(|p| port("listenPort", p.unwrap_or(0))),
    );
    let listen_host = match m.get("listenHost") {
        None => Some(sim.core().listen_host.clone()),
        Some(Json_::String(s)) => Some(s.clone()),
        got => {
            issues.push(Issue::invalid_type(at("listenHost"), "string", got));
            None
        }
    };
    let target_host = check(&mut issues, req_str(&m, "targetHost"));
    let target_port = check(
        &mut issues,
        req_u64(&m, "targetPort").and_then(|p| port("targetPort", p)),
    );
    let (Some(listen_port), Some(listen_host), Some(target_host), Some(target_port)) =
        (listen_port, listen_host, target_host, target_port)
    else {
        return Invalid(issues).into_response();
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
                "target": n.target(),
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

async fn sim_upgrade(State(sim): State<Simulator>, body: Bytes) -> Response {
    timed_scenario(sim, body, "in-place-upgrade").await
}

async fn timed_scenario(sim: Simulator, body: Bytes, which: &'static str) -> Response {
    let m = tri!(parse_json(&body));
    let node = sim_try!(tri!(node_of(&sim, &m, "node")));
    let duration = tri!(req_ms(&m, "durationMs"));
    sim_try!(sim.core().node(node));
    let run = {
        let sim = sim.clone();
        async move {
            match which {
                "migrate" => sim.migrate(node, duration).await,
                "in-place-upgrade" => sim.in_place_upgrade(node, duration).await,
                _ => sim.failover(node, duration).await,
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

async fn sim_migrate_slots(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let mut issues = Vec::new();
    let slots = match m.get("slots") {
        Some(Json_::String(text)) => match text.parse::<Slots>() {
            Ok(slots) => Some(slots),
            Err(e) => {
                issues.push(Issue::custom(at("slots"), e.to_string()));
                None
            }
        },
        got => {
            issues.push(Issue::invalid_type(at("slots"), "string", got));
            None
        }
    };
    let to = check(&mut issues, node_of(&sim, &m, "to"));
    let delay = check(&mut issues, opt_u64(&m, "delayMs"));
    let mut flag = |name: &'static str, default: bool| match m.get(name) {
        None | Some(Json_::Null) => default,
        Some(Json_::Bool(on)) => *on,
        got => {
            issues.push(Issue::invalid_type(at(name), "boolean", got));
            default
        }
    };
    let smigrated = flag("smigrated", true);
    let duplicates = flag("duplicates", false);
    let wait = flag("wait", false);
    let (Some(slots), Some(to), Some(delay), true) = (slots, to, delay, issues.is_empty()) else {
        return Invalid(issues).into_response();
    };
    let to = sim_try!(to);
    sim_try!(sim.core().node(to));
    if !sim.core().cluster {
        return failed("slots can be migrated in cluster mode only (redis-handoff sim --cluster)");
    }
    let mut options = MigrateSlots::new()
        .smigrated(smigrated)
        .duplicates(duplicates);
    if let Some(ms) = delay {
        options = options.delay(Duration::from_millis(ms));
    }
    if !wait {
        let sim = sim.clone();
        let slots_text = slots.to_string();
        tokio::spawn(async move {
            if let Err(e) = sim.migrate_slots_with(&slots, to, options).await {
                tracing::warn!(error = %e, "slot migration failed");
            }
        });
        return ok(json!({
            "success": true, "scenario": "migrate-slots", "slots": slots_text, "to": to, "started": true
        }));
    }
    let done = sim_try!(sim.migrate_slots_with(&slots, to, options).await);
    let moves: Vec<Json_> = done
        .moves
        .iter()
        .map(|mv| {
            json!({ "source": mv.source, "destination": mv.destination, "slots": mv.slots.to_string() })
        })
        .collect();
    ok(json!({
        "success": true,
        "scenario": "migrate-slots",
        "to": to,
        "smigratingSeq": done.smigrating_seq,
        "smigratedSeq": done.smigrated_seq,
        "moves": moves,
        "keysMoved": done.keys_moved,
        "recipients": done.recipients,
    }))
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
        return invalid(Issue::custom(
            at("sslPort"),
            "Expected port numbers (0 to 65535)",
        ));
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
            return invalid(Issue::custom(
                at("kind"),
                format!(
                    "unknown fault {other:?} (refuse, blackhole, reset, latency, garbage, restore)"
                ),
            ))
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
        got => invalid(Issue::invalid_type(at("enabled"), "boolean", got)),
    }
}

async fn sim_habits(State(sim): State<Simulator>, body: Bytes) -> Response {
    use super::{Habits, ShardIds};
    let m = tri!(parse_json(&body));
    let flag = |name: &str| match m.get(name) {
        None | Some(Json_::Null) => Ok(None),
        Some(Json_::Bool(on)) => Ok(Some(*on)),
        got => Err(Box::new(invalid(Issue::invalid_type(
            at(name),
            "boolean",
            got,
        )))),
    };
    let mut habits = match flag("redisSoftware") {
        Ok(Some(true)) => Habits::redis_software(),
        Ok(_) => Habits::default(),
        Err(response) => return *response,
    };
    match m.get("shardIds") {
        None | Some(Json_::Null) => {}
        Some(Json_::String(s)) if s == "array" => habits.shard_ids = ShardIds::Array,
        Some(Json_::String(s)) if s == "string" => habits.shard_ids = ShardIds::SimpleString,
        Some(Json_::String(s)) if s == "absent" => habits.shard_ids = ShardIds::Absent,
        got => {
            return invalid(Issue::invalid_type(
                at("shardIds"),
                "\"array\" | \"string\" | \"absent\"",
                got,
            ))
        }
    }
    match flag("migratingWithoutTime") {
        Ok(Some(on)) => habits.migrating_without_time = on,
        Ok(None) => {}
        Err(response) => return *response,
    }
    match flag("lateJoiners") {
        Ok(Some(on)) => habits.late_joiners = on,
        Ok(None) => {}
        Err(response) => return *response,
    }
    if m.get("effectDelayMs").is_some_and(|v| !v.is_null()) {
        habits.effect_delay = tri!(req_ms(&m, "effectDelayMs"));
    }
    sim.set_habits(habits);
    ok(json!({
        "success": true,
        "shardIds": match habits.shard_ids {
            ShardIds::Array => "array",
            ShardIds::SimpleString => "string",
            _ => "absent",
        },
        "migratingWithoutTime": habits.migrating_without_time,
        "effectDelayMs": u64::try_from(habits.effect_delay.as_millis()).unwrap_or(u64::MAX),
        "lateJoiners": habits.late_joiners,
    }))
}

async fn sim_send(State(sim): State<Simulator>, body: Bytes) -> Response {
    let m = tri!(parse_json(&body));
    let encoding = tri!(json_encoding(&m));
    let data = decode_text(&tri!(req_str(&m, "data")), encoding);
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

    #[test]
    fn raw_json_strings_give_one_byte_per_character() {
        assert_eq!(&decode_text("+OK\r\n", Encoding::Raw)[..], b"+OK\r\n");
        assert_eq!(&decode_text("\u{ff}\u{e9}", Encoding::Raw)[..], b"\xff\xe9");
        assert_eq!(&decode_text("K09L", Encoding::Base64)[..], b"+OK");
    }

    #[test]
    fn validation_errors_read_as_zod_issues() {
        let issue = Issue::invalid_type(at("match"), "string", None);
        let text = serde_json::to_string(&issue).unwrap();
        assert_eq!(
            text,
            r#"{"expected":"string","code":"invalid_type","path":["match"],"message":"Invalid input: expected string, received undefined"}"#
        );
        let issue = Issue::invalid_option(at("encoding"), ENCODINGS);
        assert_eq!(
            issue.message,
            r#"Invalid option: expected one of "base64"|"raw""#
        );
    }
}
