//! The admin API against Redis's test proxy (`cae-resp-proxy`), point by point: what a suite
//! written for that proxy sends, and what it gets back, byte for byte where it matters.
#![cfg(feature = "sim")]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sim::{api_call, is_conn_id, sim_over_with};
use common::{free_port, http, http_with_headers, show, wait_for_port, RawClient, RedisServer};
use redis_handoff::sim::{HttpServer, Simulator, SimulatorBuilder};
use serde_json::{json, Value};

const LOGGER: &str = "logging-interceptor";
const HITLESS: &str = "hitless-simulation-interceptor";
const CLUSTER: &str = "cluster-simulation-interceptor";
const CLUSTER_SLOTS: &str = "*2\r\n$7\r\ncluster\r\n$5\r\nslots\r\n";

struct Proxy {
    server: RedisServer,
    sim: Simulator,
    http: HttpServer,
}

impl Proxy {
    /// `nodes` nodes over a fresh redis-server, with `DEFAULT_INTERCEPTORS` as given.
    async fn start(nodes: usize, defaults: &str) -> Proxy {
        Proxy::start_with(|b| b.nodes(nodes), defaults).await
    }

    async fn start_with(
        configure: impl FnOnce(SimulatorBuilder) -> SimulatorBuilder,
        defaults: &str,
    ) -> Proxy {
        let server = RedisServer::start();
        let sim = sim_over_with(&server, |b| {
            configure(b)
                .default_interceptors(defaults)
                .expect("known default interceptors")
        })
        .await;
        let http = sim.serve_http("127.0.0.1:0").await.unwrap();
        Proxy { server, sim, http }
    }

    fn api(&self) -> SocketAddr {
        self.http.addr()
    }

    async fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        api_call(self.api(), method, path, body).await
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, body.to_string().as_bytes()).await
    }

    fn node_id(&self, i: usize) -> String {
        format!(
            "127.0.0.1:{}@{}",
            self.server.port,
            self.sim.node_addr(i).port()
        )
    }

    fn conn_id(&self, node: usize, nth: usize) -> String {
        self.sim.node(node).connections()[nth].id.clone()
    }

    /// The global interceptors of node `i` as `/stats` lists them: (name, matchCount, invokeCount).
    async fn interceptors(&self, i: usize) -> Vec<(String, u64, u64)> {
        let (_, stats) = self.call("GET", "/stats", b"").await;
        stats[self.node_id(i)]["globalInterceptors"]
            .as_array()
            .expect("globalInterceptors is an array")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_string(),
                    s["matchCount"].as_u64().unwrap_or(u64::MAX),
                    s["invokeCount"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect()
    }

    async fn interceptor_names(&self, i: usize) -> Vec<String> {
        self.interceptors(i)
            .await
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The zod issues of a 400, after checking its exact shape.
fn zod_issues(status: u16, v: &Value) -> Vec<Value> {
    assert_eq!(status, 400, "{v}");
    assert_eq!(keys(v), ["error", "success"], "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(keys(&v["error"]), ["message", "name"], "{v}");
    let error = &v["error"];
    assert_eq!(error["name"], "ZodError");
    let message = error["message"].as_str().expect("message is a string");
    let issues: Value = serde_json::from_str(message).expect("message holds the issues as JSON");
    let issues = issues.as_array().expect("an array of issues").clone();
    assert!(!issues.is_empty());
    for issue in &issues {
        assert!(issue["code"].is_string(), "{issue}");
        assert!(issue["path"].is_array(), "{issue}");
        assert!(issue["message"].is_string(), "{issue}");
    }
    issues
}

fn paths(issues: &[Value]) -> Vec<Value> {
    issues.iter().map(|i| i["path"].clone()).collect()
}

fn slot_entry(from: u32, to: u32, host: &str, port: u16) -> String {
    let id = format!("proxy-id-{port}");
    format!(
        "*3\r\n:{from}\r\n:{to}\r\n*3\r\n${}\r\n{host}\r\n:{port}\r\n${}\r\n{id}\r\n",
        host.len(),
        id.len()
    )
}

// ===== interceptors =====

#[tokio::test]
async fn a_new_interceptor_goes_in_front_of_the_defaults() {
    let p = Proxy::start(2, "cluster,hitless,logger").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let defaults = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert!(
        defaults.starts_with(b"*2\r\n*3\r\n:0\r\n:8191\r\n"),
        "{}",
        show(&defaults)
    );

    let own = "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$4\r\nmine\r\n";
    let (status, v) = p
        .post_json(
            "/interceptors",
            json!({ "name": "my-slots", "match": CLUSTER_SLOTS, "response": own, "encoding": "raw" }),
        )
        .await;
    assert_eq!(
        (status, v),
        (200, json!({ "success": true, "name": "my-slots" }))
    );
    assert_eq!(
        show(&c.cmd(&["CLUSTER", "SLOTS"]).await),
        show(own.as_bytes())
    );
    assert_eq!(
        p.interceptor_names(0).await,
        ["my-slots", LOGGER, HITLESS, CLUSTER]
    );
    let cluster = p.interceptors(0).await.pop().unwrap();
    assert_eq!(
        cluster.1, 1,
        "the default answered only the first CLUSTER SLOTS"
    );
}

#[tokio::test]
async fn an_interceptor_posted_again_under_its_name_replaces_it_in_front() {
    let p = Proxy::start(1, "hitless").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let post = |name: &'static str, response: &'static str| {
        let body = json!({ "name": name, "match": "*1\r\n$4\r\nPING\r\n", "response": response, "encoding": "raw" });
        let p = &p;
        async move { p.post_json("/interceptors", body).await }
    };
    post("a", "+A1\r\n").await;
    post("b", "+B\r\n").await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+B\r\n");
    assert_eq!(p.interceptor_names(0).await, ["b", "a", HITLESS]);

    post("a", "+A2\r\n").await;
    assert_eq!(p.interceptor_names(0).await, ["a", "b", HITLESS]);
    let fresh = p.interceptors(0).await;
    assert_eq!(
        (fresh[0].1, fresh[0].2),
        (0, 0),
        "the replacement counts afresh"
    );
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+A2\r\n");

    // There is no DELETE in the reference: a test resets one with a match that never occurs.
    let body = json!({ "name": "a", "match": "never", "response": "", "encoding": "raw" });
    p.post_json("/interceptors", body).await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+B\r\n");
}

#[tokio::test]
async fn interceptors_match_the_whole_frame_without_regard_to_case() {
    let p = Proxy::start(1, "hitless").await;
    let body = json!({ "name": "get", "match": "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", "response": "$4\r\nfake\r\n", "encoding": "raw" });
    p.post_json("/interceptors", body).await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    assert_eq!(&c.cmd(&["get", "KEY"]).await[..], b"$4\r\nfake\r\n");
    assert_eq!(&c.cmd(&["GeT", "kEy"]).await[..], b"$4\r\nfake\r\n");
    // More arguments, another key, the same frame inside a bigger one: not matched.
    assert!(c.cmd(&["GET", "key", "x"]).await.starts_with(b"-ERR"));
    assert_eq!(&c.cmd(&["GET", "keys"]).await[..], b"_\r\n");
    let frame = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    assert_eq!(
        &c.cmd(&["ECHO", frame]).await[..],
        format!("${}\r\n{frame}\r\n", frame.len()).as_bytes()
    );
    let counts = p.interceptors(0).await;
    assert_eq!(
        (counts[0].1, counts[0].2),
        (2, 6),
        "HELLO and five commands"
    );
}

// ===== scenarios =====

#[tokio::test]
async fn a_scenario_answers_the_next_frames_on_any_connection_in_order() {
    let p = Proxy::start(2, "cluster,hitless").await;
    let mut a = RawClient::resp3(p.sim.node_addr(0)).await;
    let mut b = RawClient::resp3(p.sim.node_addr(1)).await;
    // No encoding: base64. "+one\r\n", "+two\r\n", "-ERR three\r\n".
    let (status, v) = p
        .post_json(
            "/scenarios",
            json!({ "responses": ["K29uZQ0K", "K3R3bw0K", "LUVSUiB0aHJlZQ0K"] }),
        )
        .await;
    assert_eq!(
        (status, v),
        (200, json!({ "success": true, "totalResponses": 3 }))
    );
    assert_eq!(&a.cmd(&["GET", "x"]).await[..], b"+one\r\n");
    assert_eq!(&b.cmd(&["SET", "x", "1"]).await[..], b"+two\r\n");
    // In front of the defaults too: CLUSTER SLOTS gets the third answer.
    assert_eq!(&a.cmd(&["CLUSTER", "SLOTS"]).await[..], b"-ERR three\r\n");
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(&a.cmd(&["GET", "x"]).await[..], b"_\r\n", "SET never ran");
    assert_eq!(p.interceptor_names(1).await[0], "scenario-interceptor");

    // Posted again: the new one replaces the old, in front.
    p.post_json(
        "/scenarios",
        json!({ "responses": ["+again\r\n"], "encoding": "raw" }),
    )
    .await;
    assert_eq!(
        p.interceptor_names(0).await,
        ["scenario-interceptor", HITLESS, CLUSTER]
    );
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+again\r\n");
}

// ===== encodings and bodies =====

#[tokio::test]
async fn base64_is_lenient_and_never_a_400() {
    let p = Proxy::start(1, "hitless").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let id = p.conn_id(0, 0);
    // Whitespace, a line break, characters outside the alphabet, no padding: "+OK\r\n".
    let (status, v) = p
        .call("POST", &format!("/send-to-client/{id}"), b" K0\n9LD*Qo")
        .await;
    assert_eq!((status, &v["success"]), (200, &json!(true)));
    assert_eq!(&c.frame().await[..], b"+OK\r\n");
    // JSON posted without an encoding is read as base64, never refused.
    let (status, v) = p
        .call("POST", &format!("/send-to-client/{id}"), br#"{"a":1}"#)
        .await;
    assert_eq!((status, &v["success"]), (200, &json!(true)));
    for path in [
        "/send-to-all-clients",
        &format!("/send-to-clients?connectionIds={id}"),
    ] {
        let (status, _) = p.call("POST", path, b"%%%").await;
        assert_eq!(status, 200, "{path}");
    }
    let body = json!({ "name": "x", "match": "not base64!", "response": "~~" });
    let (status, _) = p.post_json("/interceptors", body).await;
    assert_eq!(status, 200);
    let (status, _) = p
        .post_json("/scenarios", json!({ "responses": ["***"] }))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn raw_bodies_are_taken_byte_for_byte_whatever_the_content_type() {
    let p = Proxy::start(1, "hitless").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let id = p.conn_id(0, 0);
    let frame = b">3\r\n+MIGRATED\r\n:7\r\n+[1]\r\n";
    for content_type in ["application/json", "application/octet-stream", "text/plain"] {
        let (status, text) = http_with_headers(
            p.api(),
            "POST",
            &format!("/send-to-client/{id}?encoding=raw"),
            &[("Content-Type", content_type)],
            frame,
        )
        .await;
        assert_eq!(status, 200, "{content_type}: {text}");
        assert_eq!(show(&c.frame().await), show(frame), "{content_type}");
    }
    // base64 under a JSON Content-Type is still base64.
    let (status, _) = http_with_headers(
        p.api(),
        "POST",
        &format!("/send-to-client/{id}"),
        &[("Content-Type", "application/json")],
        b"K09LDQo=",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&c.frame().await[..], b"+OK\r\n");
    // A JSON body is read whatever its Content-Type says, or without one.
    let body = json!({ "responses": ["+scripted\r\n"], "encoding": "raw" }).to_string();
    for headers in [&[("Content-Type", "text/plain")][..], &[]] {
        let (status, text) =
            http_with_headers(p.api(), "POST", "/scenarios", headers, body.as_bytes()).await;
        assert_eq!(status, 200, "{headers:?}: {text}");
    }
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+scripted\r\n");
}

// ===== errors =====

#[tokio::test]
async fn validation_errors_are_zod_errors_with_status_400() {
    let p = Proxy::start(1, "hitless").await;
    let (status, v) = p.post_json("/interceptors", json!({ "name": "x" })).await;
    let issues = zod_issues(status, &v);
    assert_eq!(paths(&issues), [json!(["match"]), json!(["response"])]);
    assert_eq!(
        issues[0],
        json!({ "expected": "string", "code": "invalid_type", "path": ["match"], "message": "Invalid input: expected string, received undefined" })
    );

    let (status, v) = p
        .post_json(
            "/interceptors",
            json!({ "name": "x", "match": "", "response": "", "encoding": "hex" }),
        )
        .await;
    let issues = zod_issues(status, &v);
    assert_eq!(issues[0]["code"], "invalid_value");
    assert_eq!(issues[0]["values"], json!(["base64", "raw"]));

    let (status, v) = p.post_json("/scenarios", json!({ "responses": [] })).await;
    let issues = zod_issues(status, &v);
    assert_eq!(issues[0]["code"], "too_small");
    assert_eq!(issues[0]["message"], "At least one response is required");
    let (status, v) = p
        .post_json("/scenarios", json!({ "responses": ["+a\r\n", 7] }))
        .await;
    assert_eq!(paths(&zod_issues(status, &v)), [json!(["responses", 1])]);

    let (status, v) = p
        .call("POST", "/send-to-all-clients?encoding=utf8", b"")
        .await;
    assert_eq!(paths(&zod_issues(status, &v)), [json!(["encoding"])]);
    let (status, v) = p.call("POST", "/interceptors", b"{not json").await;
    zod_issues(status, &v);
    let (status, v) = p.post_json("/nodes", json!({ "listenPort": 0 })).await;
    assert_eq!(
        paths(&zod_issues(status, &v)),
        [json!(["targetHost"]), json!(["targetPort"])]
    );
}

#[tokio::test]
async fn unknown_routes_get_a_plain_text_404() {
    let p = Proxy::start(1, "hitless").await;
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/stats/extra"),
        ("GET", "/interceptors"),
        ("PUT", "/nodes"),
    ] {
        let (status, body) = http(p.api(), method, path, b"").await;
        assert_eq!(
            (status, body.as_str()),
            (404, "404 Not Found"),
            "{method} {path}"
        );
    }
}

// ===== sending =====

#[tokio::test]
async fn send_to_client_reports_an_unknown_connection() {
    let p = Proxy::start(1, "hitless").await;
    let (status, v) = p
        .call("POST", "/send-to-client/conn_1_abcdefghi", b"K09LDQo=")
        .await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({ "success": false, "error": "Connection not found", "connectionId": "conn_1_abcdefghi" })
        )
    );
}

#[tokio::test]
async fn send_to_clients_without_ids_is_a_400() {
    let p = Proxy::start(1, "hitless").await;
    let (status, v) = p.call("POST", "/send-to-clients", b"K09LDQo=").await;
    let issues = zod_issues(status, &v);
    assert_eq!(paths(&issues), [json!(["connectionIds"])]);
    let (status, v) = p
        .call(
            "POST",
            "/send-to-clients?connectionIds=&encoding=raw",
            b"+OK\r\n",
        )
        .await;
    let issues = zod_issues(status, &v);
    assert_eq!(
        issues[0]["message"],
        "At least one connection ID is required"
    );
}

#[tokio::test]
async fn send_to_clients_answers_for_the_live_connections_node_by_node() {
    let p = Proxy::start(2, "hitless").await;
    let mut a = RawClient::resp3(p.sim.node_addr(0)).await;
    let mut b = RawClient::resp3(p.sim.node_addr(1)).await;
    let (id_a, id_b) = (p.conn_id(0, 0), p.conn_id(1, 0));
    let path =
        format!("/send-to-clients?connectionIds={id_b},conn_1_nosuchone,{id_a}&encoding=raw");
    let (status, v) = p.call("POST", &path, b"+hi\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({ "results": [
            { "success": true, "connectionId": id_a },
            { "success": true, "connectionId": id_b },
        ] })
    );
    assert_eq!(&a.frame().await[..], b"+hi\r\n");
    assert_eq!(&b.frame().await[..], b"+hi\r\n");
}

#[tokio::test]
async fn send_to_all_clients_with_no_connections_gives_no_results() {
    let p = Proxy::start(2, "hitless").await;
    let (status, v) = p.call("POST", "/send-to-all-clients", b"K09LDQo=").await;
    assert_eq!((status, v), (200, json!({ "results": [] })));

    let mut a = RawClient::resp3(p.sim.node_addr(1)).await;
    let mut b = RawClient::resp3(p.sim.node_addr(0)).await;
    let (_, v) = p
        .call("POST", "/send-to-all-clients?encoding=raw", b"+all\r\n")
        .await;
    assert_eq!(
        v,
        json!({ "results": [
            { "success": true, "connectionId": p.conn_id(0, 0) },
            { "success": true, "connectionId": p.conn_id(1, 0) },
        ] })
    );
    assert_eq!(&a.frame().await[..], b"+all\r\n");
    assert_eq!(&b.frame().await[..], b"+all\r\n");
}

#[tokio::test]
async fn delete_connection_answers_success_and_the_id() {
    let p = Proxy::start(1, "hitless").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let id = p.conn_id(0, 0);
    let (status, v) = p.call("DELETE", &format!("/connections/{id}"), b"").await;
    assert_eq!(
        (status, v),
        (200, json!({ "success": true, "connectionId": id }))
    );
    assert!(c.closed_within(Duration::from_secs(3)).await);
    let (status, v) = p.call("DELETE", &format!("/connections/{id}"), b"").await;
    assert_eq!(
        (status, v),
        (200, json!({ "success": false, "connectionId": id }))
    );
}

// ===== stats, connections, ids =====

#[tokio::test]
async fn stats_name_every_field_of_the_reference() {
    let p = Proxy::start(2, "cluster,hitless").await;
    let _c = RawClient::resp3(p.sim.node_addr(0)).await;
    let (status, stats) = p.call("GET", "/stats", b"").await;
    assert_eq!(status, 200);
    let mut want = vec![p.node_id(0), p.node_id(1)];
    want.sort();
    assert_eq!(keys(&stats), want);
    let node = &stats[p.node_id(0)];
    assert_eq!(
        keys(node),
        [
            "activeConnections",
            "connections",
            "globalInterceptors",
            "totalConnections"
        ]
    );
    assert_eq!(node["activeConnections"], 1);
    assert_eq!(node["totalConnections"], 1);
    for i in node["globalInterceptors"].as_array().unwrap() {
        assert_eq!(keys(i), ["invokeCount", "matchCount", "name"]);
    }
    let conn = &node["connections"][0];
    assert_eq!(
        keys(conn),
        [
            "clientAddress",
            "clientPort",
            "connectedAt",
            "id",
            "interceptors"
        ]
    );
    assert_eq!(conn["clientAddress"], "127.0.0.1");
    assert!(conn["clientPort"].as_u64().is_some_and(|p| p > 0));
    // An ISO 8601 time with milliseconds, as a JavaScript Date serializes.
    let at = conn["connectedAt"].as_str().unwrap();
    assert_eq!(
        (at.len(), &at[10..11], &at[19..20], &at[23..]),
        (24, "T", ".", "Z"),
        "{at}"
    );
    assert_eq!(conn["interceptors"], json!([]));
    assert_eq!(stats[p.node_id(1)]["connections"], json!([]));
}

#[tokio::test]
async fn connections_lists_the_ids_of_each_node() {
    let p = Proxy::start(2, "hitless").await;
    let (_, v) = p.call("GET", "/connections", b"").await;
    assert_eq!(v, json!({ p.node_id(0): [], p.node_id(1): [] }));
    let _a = RawClient::resp3(p.sim.node_addr(0)).await;
    let _b = RawClient::resp3(p.sim.node_addr(0)).await;
    let _c = RawClient::resp3(p.sim.node_addr(1)).await;
    let (status, v) = p.call("GET", "/connections", b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({
            p.node_id(0): [p.conn_id(0, 0), p.conn_id(0, 1)],
            p.node_id(1): [p.conn_id(1, 0)],
        })
    );
}

#[tokio::test]
async fn connection_ids_are_unique_across_nodes_and_node_ids_name_target_and_port() {
    let p = Proxy::start(3, "hitless").await;
    let mut clients = Vec::new();
    for node in 0..3 {
        for _ in 0..4 {
            clients.push(RawClient::resp3(p.sim.node_addr(node)).await);
        }
    }
    let mut ids: Vec<String> = p.sim.connections().into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 12);
    assert!(ids.iter().all(|id| is_conn_id(id)), "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "ids are unique across nodes");
    let (_, v) = p.call("GET", "/nodes", b"").await;
    let want: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}@{}", p.server.port, p.sim.node_addr(i).port()))
        .collect();
    assert_eq!(v, json!({ "ids": want }));
}

// ===== nodes =====

#[tokio::test]
async fn nodes_are_listed_added_at_run_time_and_removed() {
    let p = Proxy::start(1, "cluster,hitless").await;
    let port = free_port();
    let target = p.server.port;
    let (status, v) = p
        .post_json(
            "/nodes",
            json!({ "listenPort": port, "targetHost": "127.0.0.1", "targetPort": target }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["cfg"]["listenPort"], port);
    assert_eq!(v["cfg"]["targetHost"], "127.0.0.1");
    assert_eq!(v["cfg"]["targetPort"], target);
    let new_id = format!("127.0.0.1:{target}@{port}");
    let (_, v) = p.call("GET", "/nodes", b"").await;
    assert_eq!(v, json!({ "ids": [p.node_id(0), new_id] }));

    let mut c = RawClient::resp3(("127.0.0.1", port)).await;
    assert_eq!(&c.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    let slots = c.cmd(&["CLUSTER", "SLOTS"]).await;
    let want = format!(
        "*2\r\n{}{}",
        slot_entry(0, 8191, "127.0.0.1", p.sim.node_addr(0).port()),
        slot_entry(8192, 16383, "127.0.0.1", port)
    );
    assert_eq!(show(&slots), show(want.as_bytes()));

    let (status, v) = p.call("DELETE", &format!("/nodes/{new_id}"), b"").await;
    assert_eq!((status, v), (200, json!({ "success": true })));
    assert!(c.closed_within(Duration::from_secs(3)).await);
    let (_, v) = p.call("DELETE", &format!("/nodes/{new_id}"), b"").await;
    assert_eq!(v, json!({ "success": false }));
    let (_, v) = p.call("GET", "/nodes", b"").await;
    assert_eq!(v, json!({ "ids": [p.node_id(0)] }));
}

// ===== default interceptors =====

#[tokio::test]
async fn hitless_answers_ok_to_any_frame_holding_the_handshake() {
    let p = Proxy::start(1, "hitless").await;
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    for args in [
        [
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip",
        ],
        [
            "client",
            "maint_notifications",
            "on",
            "moving-endpoint-type",
            "none",
        ],
        [
            "Client",
            "Maint_Notifications",
            "On",
            "MOVING-ENDPOINT-TYPE",
            "EXTERNAL-FQDN",
        ],
    ] {
        assert_eq!(&c.cmd(&args).await[..], b"+OK\r\n", "{args:?}");
    }
    // The prefix anywhere in a frame is enough, as in the reference.
    let inner = "*5\r\n$6\r\nclient\r\n$19\r\nmaint_notifications\r\n$2\r\non\r\n";
    assert_eq!(&c.cmd(&["SET", "k", inner]).await[..], b"+OK\r\n");
    assert_eq!(
        &c.cmd(&["EXISTS", "k"]).await[..],
        b":0\r\n",
        "the SET was answered, not run"
    );
    let hitless = p.interceptors(0).await.remove(0);
    assert_eq!((hitless.0.as_str(), hitless.1), (HITLESS, 4));
}

#[tokio::test]
async fn cluster_answers_the_exact_frame_with_the_listen_ports_in_order() {
    let ports = [free_port(), free_port(), free_port()];
    let mut listed = ports;
    listed.sort();
    listed.reverse();
    let p = Proxy::start_with(|b| b.ports(listed).listen_host("localhost"), "cluster").await;
    let mut c = RawClient::resp3(p.sim.node_addr(2)).await;
    let want = format!(
        "*3\r\n{}{}{}",
        slot_entry(0, 5460, "localhost", listed[0]),
        slot_entry(5461, 10921, "localhost", listed[1]),
        slot_entry(10922, 16383, "localhost", listed[2])
    );
    for args in [
        ["CLUSTER", "SLOTS"],
        ["cluster", "slots"],
        ["Cluster", "sLoTs"],
    ] {
        assert_eq!(show(&c.cmd(&args).await), show(want.as_bytes()), "{args:?}");
    }
    // Any other frame goes to the server (a standalone one refuses CLUSTER).
    let other = c.cmd(&["CLUSTER", "SLOTS", "x"]).await;
    assert!(other.starts_with(b"-ERR"), "{}", show(&other));
    let shards = c.cmd(&["CLUSTER", "SHARDS"]).await;
    assert!(shards.starts_with(b"-ERR"), "{}", show(&shards));
    let cluster = p.interceptors(2).await.remove(0);
    assert_eq!((cluster.0.as_str(), cluster.1), (CLUSTER, 3));
}

#[tokio::test]
async fn only_the_default_interceptors_selected_are_installed_in_their_order() {
    let p = Proxy::start(1, "cluster,hitless,logger").await;
    assert_eq!(p.interceptor_names(0).await, [LOGGER, HITLESS, CLUSTER]);
    let p = Proxy::start(1, "logger,cluster").await;
    assert_eq!(p.interceptor_names(0).await, [CLUSTER, LOGGER]);
    // Without hitless the handshake reaches redis-server.
    let mut c = RawClient::resp3(p.sim.node_addr(0)).await;
    let refused = c
        .cmd(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip",
        ])
        .await;
    assert!(refused.starts_with(b"-ERR"), "{}", show(&refused));
    let p = Proxy::start(1, "").await;
    assert!(p.interceptor_names(0).await.is_empty());
    assert!(Simulator::builder()
        .default_interceptors("cluster,magic")
        .is_err());
}

// ===== configuration =====

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_timeout() {
    let p = Proxy::start_with(
        |b| b.nodes(1).idle_timeout(Duration::from_millis(300)),
        "hitless",
    )
    .await;
    let mut idle = RawClient::resp3(p.sim.node_addr(0)).await;
    let mut busy = RawClient::resp3(p.sim.node_addr(0)).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(&busy.cmd(&["PING"]).await[..], b"+PONG\r\n");
    }
    assert!(
        idle.closed_within(Duration::from_millis(100)).await,
        "idle for 800 ms"
    );
    assert_eq!(&busy.cmd(&["PING"]).await[..], b"+PONG\r\n");
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_command_line_reads_every_setting_of_the_reference_from_the_environment() {
    let server = RedisServer::start();
    let (p1, p2, api) = (free_port(), free_port(), free_port());
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
            .arg("sim")
            .env("LISTEN_PORT", format!("{p1},{p2}"))
            .env("LISTEN_HOST", "127.0.0.1")
            .env("TARGET_HOST", "127.0.0.1")
            .env("TARGET_PORT", server.port.to_string())
            .env("TIMEOUT", "400")
            .env("ENABLE_LOGGING", "true")
            .env("API_PORT", api.to_string())
            .env("DEFAULT_INTERCEPTORS", "cluster,hitless,logger")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    wait_for_port(api);
    let api: SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    let target = server.port;
    let ids = [
        format!("127.0.0.1:{target}@{p1}"),
        format!("127.0.0.1:{target}@{p2}"),
    ];
    let (_, v) = api_call(api, "GET", "/nodes", b"").await;
    assert_eq!(v, json!({ "ids": ids }));
    let (_, stats) = api_call(api, "GET", "/stats", b"").await;
    let names: Vec<&str> = stats[&ids[0]]["globalInterceptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [LOGGER, HITLESS, CLUSTER]);

    let mut c = RawClient::opted_in(("127.0.0.1", p2), "internal-ip").await;
    let slots = c.cmd(&["CLUSTER", "SLOTS"]).await;
    let want = format!(
        "*2\r\n{}{}",
        slot_entry(0, 8191, "127.0.0.1", p1),
        slot_entry(8192, 16383, "127.0.0.1", p2)
    );
    assert_eq!(show(&slots), show(want.as_bytes()));
    // TIMEOUT: idle for 400 ms, the connection is closed.
    assert!(c.closed_within(Duration::from_secs(3)).await);
}
