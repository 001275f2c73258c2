//! The simulator's HTTP admin API: the routes and JSON shapes of Redis's test proxy, and the
//! scenario routes under `/sim/`.
#![cfg(feature = "sim")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sim::{api_call, is_conn_id, redis_and_sim};
use common::{show, RawClient, RedisServer};
use redis_handoff::sim::{HttpServer, Simulator};
use serde_json::{json, Value};

struct Setup {
    _server: RedisServer,
    sim: Simulator,
    http: HttpServer,
    target: u16,
}

async fn setup(nodes: usize) -> Setup {
    let (server, sim) = redis_and_sim(nodes).await;
    let http = sim.serve_http("127.0.0.1:0").await.unwrap();
    Setup {
        target: server.port,
        _server: server,
        sim,
        http,
    }
}

async fn call(api: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    api_call(api, method, path, body).await
}

fn node_id(s: &Setup, i: usize) -> String {
    format!("127.0.0.1:{}@{}", s.target, s.sim.node_addr(i).port())
}

#[tokio::test]
async fn stats_and_connections_have_the_proxy_shapes() {
    let s = setup(2).await;
    let api = s.http.addr();
    let (status, stats) = call(api, "GET", "/stats", b"").await;
    assert_eq!(status, 200);
    let n0 = &stats[node_id(&s, 0)];
    assert_eq!(n0["activeConnections"], 0);
    assert_eq!(n0["totalConnections"], 0);
    assert_eq!(n0["connections"], json!([]));
    assert_eq!(
        n0["globalInterceptors"],
        json!([{ "name": "hitless-simulation-interceptor", "matchCount": 0, "invokeCount": 0 }])
    );

    let mut a = RawClient::opted_in(s.sim.node_addr(0), "internal-ip").await;
    let _b = RawClient::resp3(s.sim.node_addr(1)).await;
    a.cmd(&["PING"]).await;
    let (_, stats) = call(api, "GET", "/stats", b"").await;
    let n0 = &stats[node_id(&s, 0)];
    assert_eq!(n0["activeConnections"], 1);
    assert_eq!(n0["totalConnections"], 1);
    let conn = &n0["connections"][0];
    assert!(is_conn_id(conn["id"].as_str().unwrap()), "{conn}");
    assert_eq!(conn["clientAddress"], "127.0.0.1");
    assert!(conn["clientPort"].as_u64().unwrap() > 0);
    assert!(conn["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(conn["interceptors"], json!([]));
    let hitless = &n0["globalInterceptors"][0];
    assert_eq!(hitless["matchCount"], 1);
    assert_eq!(hitless["invokeCount"], 3); // HELLO, the handshake, PING

    let (status, conns) = call(api, "GET", "/connections", b"").await;
    assert_eq!(status, 200);
    let ids0 = conns[node_id(&s, 0)].as_array().unwrap();
    let ids1 = conns[node_id(&s, 1)].as_array().unwrap();
    assert_eq!((ids0.len(), ids1.len()), (1, 1));
    assert_ne!(ids0[0], ids1[0], "connection ids are unique across nodes");
}

#[tokio::test]
async fn sends_reach_clients_in_both_encodings() {
    let s = setup(2).await;
    let api = s.http.addr();
    let mut a = RawClient::resp3(s.sim.node_addr(0)).await;
    let mut b = RawClient::resp3(s.sim.node_addr(1)).await;
    let id_a = s.sim.node(0).connections()[0].id.clone();
    let id_b = s.sim.node(1).connections()[0].id.clone();

    // base64 is the default: "*1\r\n$4\r\nPING\r\n".
    let (status, v) = call(
        api,
        "POST",
        &format!("/send-to-client/{id_a}"),
        b"KjENCiQ0DQpQSU5HDQo=",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "success": true, "connectionId": id_a }));
    assert_eq!(&a.frame().await[..], b"*1\r\n$4\r\nPING\r\n");

    let raw = b">4\r\n$6\r\nMOVING\r\n:1\r\n:2\r\n$6\r\nhost:3\r\n";
    let path = format!("/send-to-client/{id_b}?encoding=raw");
    let (_, v) = call(api, "POST", &path, raw).await;
    assert_eq!(v["success"], true);
    assert_eq!(show(&b.frame().await), show(raw));

    let (status, v) = call(
        api,
        "POST",
        "/send-to-client/non-existent-connection",
        b"UElORw==",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({ "success": false, "error": "Connection not found", "connectionId": "non-existent-connection" })
    );

    let path = format!("/send-to-clients?connectionIds={id_a},{id_b}&encoding=raw");
    let (status, v) = call(api, "POST", &path, b"+multi\r\n").await;
    assert_eq!(status, 200);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["success"] == true));
    assert_eq!(&a.frame().await[..], b"+multi\r\n");
    assert_eq!(&b.frame().await[..], b"+multi\r\n");

    let (status, v) = call(
        api,
        "POST",
        "/send-to-all-clients?encoding=raw",
        b"+all\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(&a.frame().await[..], b"+all\r\n");
    assert_eq!(&b.frame().await[..], b"+all\r\n");

    let (status, v) = call(api, "POST", "/send-to-clients", b"UElORw==").await;
    assert_eq!(status, 400);
    assert_eq!(v["success"], false);
    assert!(v["error"].is_object());
    let (status, _) = call(api, "POST", "/send-to-all-clients?encoding=hex", b"00").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn odd_base64_never_gives_a_400() {
    let s = setup(1).await;
    let api = s.http.addr();
    let mut a = RawClient::resp3(s.sim.node_addr(0)).await;
    let id = s.sim.node(0).connections()[0].id.clone();
    for body in [
        &b"!!!"[..],
        b"K",
        b"KjE",
        b"Kj EN\nCi",
        b"K\xff\xfejENCg===",
    ] {
        let (status, v) = call(api, "POST", &format!("/send-to-client/{id}"), body).await;
        assert_eq!(status, 200, "{}", show(body));
        assert_eq!(v["success"], true);
    }
    // "!!!" and "K" decode to nothing, "KjE" to "*1", the others to "*1\r\n".
    let got = a.read_raw(10).await;
    assert_eq!(show(&got), show(b"*1*1\r\n*1\r\n"));
}

#[tokio::test]
async fn delete_connection_closes_it() {
    let s = setup(1).await;
    let api = s.http.addr();
    let mut a = RawClient::resp3(s.sim.node_addr(0)).await;
    let id = s.sim.node(0).connections()[0].id.clone();
    let (status, v) = call(api, "DELETE", &format!("/connections/{id}"), b"").await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "success": true, "connectionId": id }));
    assert!(a.closed_within(Duration::from_secs(3)).await);
    let (_, v) = call(api, "DELETE", "/connections/non-existent-connection", b"").await;
    assert_eq!(
        v,
        json!({ "success": false, "connectionId": "non-existent-connection" })
    );
}

#[tokio::test]
async fn interceptors_answer_whole_frames_case_insensitively() {
    let s = setup(1).await;
    let api = s.http.addr();
    let body = json!({
        "name": "fake-get",
        "match": "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
        "response": "$4\r\nfake\r\n",
        "encoding": "raw",
    });
    let (status, v) = call(api, "POST", "/interceptors", body.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "success": true, "name": "fake-get" }));
    let mut c = RawClient::resp3(s.sim.node_addr(0)).await;
    assert_eq!(&c.cmd(&["get", "KEY"]).await[..], b"$4\r\nfake\r\n");
    assert_eq!(&c.cmd(&["GET", "other"]).await[..], b"_\r\n");

    // Same name: replaced.
    let body = json!({
        "name": "fake-get",
        "match": "KjINCiQzDQpHRVQNCiQzDQprZXkNCg==",
        "response": "JDQNCm5ldzENCg==",
        "encoding": "base64",
    });
    call(api, "POST", "/interceptors", body.to_string().as_bytes()).await;
    assert_eq!(&c.cmd(&["GET", "key"]).await[..], b"$4\r\nnew1\r\n");
    let (_, stats) = call(api, "GET", "/stats", b"").await;
    let list = stats[node_id(&s, 0)]["globalInterceptors"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = list.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fake-get", "hitless-simulation-interceptor"]);
    assert_eq!(list[0]["matchCount"], 1);

    let (status, v) = call(api, "POST", "/interceptors", br#"{"name":"x"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(v["success"], false);
    let (status, _) = call(api, "POST", "/interceptors", b"not json").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn scenarios_answer_the_next_frames_in_order() {
    let s = setup(1).await;
    let api = s.http.addr();
    let mut c = RawClient::resp3(s.sim.node_addr(0)).await;
    let body = json!({ "responses": ["+first\r\n", "-ERR second\r\n"], "encoding": "raw" });
    let (status, v) = call(api, "POST", "/scenarios", body.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "success": true, "totalResponses": 2 }));
    assert_eq!(&c.cmd(&["GET", "a"]).await[..], b"+first\r\n");
    assert_eq!(&c.cmd(&["SET", "a", "1"]).await[..], b"-ERR second\r\n");
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    let (status, _) = call(api, "POST", "/scenarios", br#"{"responses":[]}"#).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn nodes_are_listed_added_and_removed() {
    let s = setup(1).await;
    let api = s.http.addr();
    let (_, v) = call(api, "GET", "/nodes", b"").await;
    assert_eq!(v, json!({ "ids": [node_id(&s, 0)] }));

    let body = json!({ "listenPort": 0, "targetHost": "127.0.0.1", "targetPort": s.target });
    let (status, v) = call(api, "POST", "/nodes", body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    let port = v["cfg"]["listenPort"].as_u64().unwrap() as u16;
    let new_id = format!("127.0.0.1:{}@{port}", s.target);
    let (_, v) = call(api, "GET", "/nodes", b"").await;
    assert_eq!(v["ids"].as_array().unwrap().len(), 2);
    assert!(v["ids"].as_array().unwrap().contains(&json!(new_id)));

    let mut c = RawClient::resp3(("127.0.0.1", port)).await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");

    let (status, v) = call(api, "DELETE", &format!("/nodes/{new_id}"), b"").await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "success": true }));
    assert!(c.closed_within(Duration::from_secs(3)).await);
    let (_, v) = call(api, "DELETE", "/nodes/nope:1@2", b"").await;
    assert_eq!(v, json!({ "success": false }));
    let (status, _) = call(api, "POST", "/nodes", br#"{"listenPort":0}"#).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn scenario_routes_drive_the_simulator() {
    let s = setup(2).await;
    let api = s.http.addr();
    let mut c = RawClient::opted_in(s.sim.node_addr(0), "internal-fqdn").await;
    let mut sub = RawClient::resp3(s.sim.node_addr(1)).await;
    sub.cmd(&["SUBSCRIBE", "AzureRedisEvents"]).await;

    let (_, v) = call(
        api,
        "POST",
        "/sim/migrate",
        br#"{"node":0,"durationMs":50,"wait":true}"#,
    )
    .await;
    assert_eq!(v["seq"], 1, "{v}");
    assert!(c.frame().await.starts_with(b">4\r\n$9\r\nMIGRATING"));
    assert!(c.frame().await.starts_with(b">3\r\n$8\r\nMIGRATED"));

    let node1 = node_id(&s, 1);
    let body = json!({ "from": 0, "to": node1, "graceMs": 60000 });
    let (_, v) = call(api, "POST", "/sim/moving", body.to_string().as_bytes()).await;
    assert_eq!(
        (v["seq"].clone(), v["recipients"].clone()),
        (json!(2), json!(1)),
        "{v}"
    );
    let fqdn = format!("localhost:{}", s.sim.node_addr(1).port());
    let want = format!(
        ">4\r\n$6\r\nMOVING\r\n:2\r\n:60\r\n${}\r\n{fqdn}\r\n",
        fqdn.len()
    );
    assert_eq!(show(&c.frame().await), show(want.as_bytes()));

    let body = br#"{"type":"Starting","startTime":"2021-03-02T23:34:56"}"#;
    let (_, v) = call(api, "POST", "/sim/azure", body).await;
    assert_eq!(v["recipients"], 1, "{v}");
    let msg = sub.frame().await;
    assert!(msg.ends_with(b"NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001\r\n"), "{}", show(&msg));

    let (_, v) = call(api, "POST", "/sim/faults/refuse", br#"{"node":1}"#).await;
    assert_eq!(v["success"], true);
    assert!(RawClient::connect(s.sim.node_addr(1)).await.is_err());
    call(api, "POST", "/sim/restore", br#"{"node":1}"#).await;
    let (_, v) = call(api, "POST", "/sim/faults/reset", br#"{"node":1}"#).await;
    assert_eq!(v["connections"], 1);
    let (_, v) = call(
        api,
        "POST",
        "/sim/faults/latency",
        br#"{"node":9,"latencyMs":5}"#,
    )
    .await;
    assert_eq!(
        v["success"], false,
        "an unknown node is a failure, not a 400"
    );
    let (status, _) = call(api, "POST", "/sim/faults/melt", br#"{"node":0}"#).await;
    assert_eq!(status, 400);

    let (_, v) = call(api, "GET", "/sim/notifications", b"").await;
    let names: Vec<&str> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["MIGRATING", "MIGRATED", "MOVING", "NodeMaintenanceStarting"]
    );
    let (_, v) = call(api, "GET", "/sim/nodes", b"").await;
    assert_eq!(v["nodes"][0]["optedIn"], 1);
}
