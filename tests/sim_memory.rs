//! The simulator's `memory` backend: the commands a demo and a client's handshake use, in
//! RESP2 and RESP3, shared by every node.
#![cfg(feature = "sim")]

mod common;

use std::time::Duration;

use common::{encode, show, RawClient};
use redis_handoff::sim::{AzureEvent, AzureEventKind, Backend, Simulator};

async fn memory_sim(nodes: usize) -> Simulator {
    Simulator::builder()
        .backend(Backend::Memory)
        .nodes(nodes)
        .start()
        .await
        .unwrap()
}

async fn expect(c: &mut RawClient, args: &[&str], want: &str) {
    let got = c.cmd(args).await;
    assert_eq!(show(&got), show(want.as_bytes()), "{args:?}");
}

#[tokio::test]
async fn hello_3_and_connection_commands() {
    let sim = memory_sim(1).await;
    let mut c = RawClient::connect(sim.node_addr(0)).await.unwrap();
    let hello = c
        .cmd(&["HELLO", "3", "AUTH", "default", "secret", "SETNAME", "demo"])
        .await;
    let text = String::from_utf8_lossy(&hello).into_owned();
    assert!(
        text.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{text}"
    );
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(
        text.contains("$4\r\nmode\r\n$10\r\nstandalone\r\n"),
        "{text}"
    );
    expect(&mut c, &["PING"], "+PONG\r\n").await;
    expect(&mut c, &["PING", "hi"], "$2\r\nhi\r\n").await;
    expect(&mut c, &["ECHO", "x"], "$1\r\nx\r\n").await;
    expect(&mut c, &["AUTH", "pw"], "+OK\r\n").await;
    expect(&mut c, &["SELECT", "2"], "+OK\r\n").await;
    expect(
        &mut c,
        &["SELECT", "99"],
        "-ERR DB index is out of range\r\n",
    )
    .await;
    expect(&mut c, &["CLIENT", "GETNAME"], "$4\r\ndemo\r\n").await;
    expect(&mut c, &["CLIENT", "SETNAME", "other"], "+OK\r\n").await;
    expect(
        &mut c,
        &["CLIENT", "SETINFO", "lib-name", "redis-handoff"],
        "+OK\r\n",
    )
    .await;
    let id = c.cmd(&["CLIENT", "ID"]).await;
    assert_eq!(id[0], b':');
    expect(&mut c, &["GET", "missing"], "_\r\n").await;
    let err = c.cmd(&["NOSUCHCMD", "a"]).await;
    assert!(
        err.starts_with(b"-ERR unknown command 'NOSUCHCMD'"),
        "{}",
        show(&err)
    );
    expect(
        &mut c,
        &["HELLO", "4"],
        "-NOPROTO sorry, this protocol version is not supported\r\n",
    )
    .await;

    // RESP2 clients get RESP2 nulls.
    let mut old = RawClient::connect(sim.node_addr(0)).await.unwrap();
    expect(&mut old, &["GET", "missing"], "$-1\r\n").await;
    // The simulator answers the handshake itself; the backend never sees it.
    let mut c = RawClient::opted_in(sim.node_addr(0), "internal-ip").await;
    expect(&mut c, &["PING"], "+PONG\r\n").await;
}

#[tokio::test]
async fn strings_keys_and_expiry() {
    let sim = memory_sim(2).await;
    let mut c = RawClient::resp3(sim.node_addr(0)).await;
    expect(&mut c, &["SET", "s", "v"], "+OK\r\n").await;
    expect(&mut c, &["SET", "s", "w", "NX"], "_\r\n").await;
    expect(&mut c, &["SET", "s", "w", "XX", "GET"], "$1\r\nv\r\n").await;
    expect(&mut c, &["GET", "s"], "$1\r\nw\r\n").await;
    expect(&mut c, &["APPEND", "s", "xyz"], ":4\r\n").await;
    expect(&mut c, &["STRLEN", "s"], ":4\r\n").await;
    expect(&mut c, &["INCR", "n"], ":1\r\n").await;
    expect(&mut c, &["INCRBY", "n", "10"], ":11\r\n").await;
    expect(&mut c, &["DECR", "n"], ":10\r\n").await;
    expect(&mut c, &["DECRBY", "n", "3"], ":7\r\n").await;
    expect(&mut c, &["INCRBYFLOAT", "f", "1.5"], "$3\r\n1.5\r\n").await;
    expect(
        &mut c,
        &["INCR", "s"],
        "-ERR value is not an integer or out of range\r\n",
    )
    .await;
    expect(&mut c, &["MSET", "a", "1", "b", "2"], "+OK\r\n").await;
    expect(
        &mut c,
        &["MGET", "a", "nope", "b"],
        "*3\r\n$1\r\n1\r\n_\r\n$1\r\n2\r\n",
    )
    .await;
    expect(&mut c, &["EXISTS", "a", "b", "nope"], ":2\r\n").await;
    expect(&mut c, &["TYPE", "a"], "+string\r\n").await;
    expect(&mut c, &["KEYS", "[ab]"], "*2\r\n$1\r\na\r\n$1\r\nb\r\n").await;
    expect(&mut c, &["DEL", "a", "nope"], ":1\r\n").await;
    expect(&mut c, &["GETDEL", "b"], "$1\r\n2\r\n").await;
    expect(&mut c, &["RENAME", "s", "t"], "+OK\r\n").await;
    expect(&mut c, &["SETNX", "t", "x"], ":0\r\n").await;

    expect(&mut c, &["TTL", "t"], ":-1\r\n").await;
    expect(&mut c, &["TTL", "nope"], ":-2\r\n").await;
    expect(&mut c, &["EXPIRE", "t", "100"], ":1\r\n").await;
    expect(&mut c, &["TTL", "t"], ":100\r\n").await;
    expect(&mut c, &["PERSIST", "t"], ":1\r\n").await;
    expect(&mut c, &["SET", "short", "v", "PX", "100"], "+OK\r\n").await;
    expect(&mut c, &["SETEX", "ex", "100", "v"], "+OK\r\n").await;
    let pttl = c.cmd(&["PTTL", "ex"]).await;
    assert!(
        pttl.starts_with(b":9") || pttl.starts_with(b":100000"),
        "{}",
        show(&pttl)
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    expect(&mut c, &["GET", "short"], "_\r\n").await;
    expect(&mut c, &["EXISTS", "short"], ":0\r\n").await;

    // The other node sees the same data.
    let mut other = RawClient::resp3(sim.node_addr(1)).await;
    expect(&mut other, &["GET", "t"], "$4\r\nwxyz\r\n").await;
    expect(&mut other, &["DBSIZE"], ":4\r\n").await;
    expect(&mut other, &["SELECT", "1"], "+OK\r\n").await;
    expect(&mut other, &["GET", "t"], "_\r\n").await;
    expect(&mut other, &["FLUSHALL"], "+OK\r\n").await;
    expect(&mut c, &["DBSIZE"], ":0\r\n").await;
}

#[tokio::test]
async fn hashes_and_lists() {
    let sim = memory_sim(1).await;
    let mut c = RawClient::resp3(sim.node_addr(0)).await;
    expect(&mut c, &["HSET", "h", "a", "1", "b", "2"], ":2\r\n").await;
    expect(&mut c, &["HSET", "h", "a", "3"], ":0\r\n").await;
    expect(&mut c, &["HGET", "h", "a"], "$1\r\n3\r\n").await;
    expect(&mut c, &["HMGET", "h", "a", "x"], "*2\r\n$1\r\n3\r\n_\r\n").await;
    expect(
        &mut c,
        &["HGETALL", "h"],
        "%2\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n2\r\n",
    )
    .await;
    expect(&mut c, &["HINCRBY", "h", "b", "5"], ":7\r\n").await;
    expect(&mut c, &["HLEN", "h"], ":2\r\n").await;
    expect(&mut c, &["HEXISTS", "h", "a"], ":1\r\n").await;
    expect(&mut c, &["HKEYS", "h"], "*2\r\n$1\r\na\r\n$1\r\nb\r\n").await;
    expect(&mut c, &["HDEL", "h", "a", "x"], ":1\r\n").await;
    expect(
        &mut c,
        &["GET", "h"],
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
    expect(&mut c, &["TYPE", "h"], "+hash\r\n").await;

    expect(&mut c, &["RPUSH", "l", "a", "b", "c"], ":3\r\n").await;
    expect(&mut c, &["LPUSH", "l", "z"], ":4\r\n").await;
    expect(
        &mut c,
        &["LRANGE", "l", "0", "-1"],
        "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
    )
    .await;
    expect(
        &mut c,
        &["LRANGE", "l", "1", "2"],
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    )
    .await;
    expect(&mut c, &["LINDEX", "l", "-1"], "$1\r\nc\r\n").await;
    expect(&mut c, &["LLEN", "l"], ":4\r\n").await;
    expect(&mut c, &["LPOP", "l"], "$1\r\nz\r\n").await;
    expect(&mut c, &["RPOP", "l", "2"], "*2\r\n$1\r\nc\r\n$1\r\nb\r\n").await;
    expect(&mut c, &["LPOP", "l"], "$1\r\na\r\n").await;
    expect(&mut c, &["LPOP", "l"], "_\r\n").await;
    expect(&mut c, &["EXISTS", "l"], ":0\r\n").await;

    // RESP2 flattens maps.
    let mut old = RawClient::connect(sim.node_addr(0)).await.unwrap();
    expect(&mut old, &["HGETALL", "h"], "*2\r\n$1\r\nb\r\n$1\r\n7\r\n").await;
}

#[tokio::test]
async fn pub_sub_and_azure_events() {
    let sim = memory_sim(2).await;
    let mut sub = RawClient::resp3(sim.node_addr(0)).await;
    expect(
        &mut sub,
        &["SUBSCRIBE", "news", "AzureRedisEvents"],
        ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    assert_eq!(
        show(&sub.frame().await),
        show(b">3\r\n$9\r\nsubscribe\r\n$16\r\nAzureRedisEvents\r\n:2\r\n")
    );
    // Commands still work on a RESP3 subscriber.
    expect(&mut sub, &["PING"], "+PONG\r\n").await;
    let mut psub = RawClient::connect(sim.node_addr(1)).await.unwrap();
    expect(
        &mut psub,
        &["PSUBSCRIBE", "n*"],
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n",
    )
    .await;

    let mut publisher = RawClient::resp3(sim.node_addr(1)).await;
    expect(&mut publisher, &["PUBLISH", "news", "hello"], ":2\r\n").await;
    assert_eq!(
        show(&sub.frame().await),
        show(b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
    );
    assert_eq!(
        show(&psub.frame().await),
        show(b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
    );

    assert_eq!(
        sim.azure(0, &AzureEvent::new(AzureEventKind::Ended))
            .unwrap(),
        1
    );
    let msg = sub.frame().await;
    assert!(msg.ends_with(b"$103\r\nNotificationType|NodeMaintenanceEnded|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001\r\n"), "{}", show(&msg));

    expect(
        &mut sub,
        &["UNSUBSCRIBE", "news"],
        ">3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    expect(&mut publisher, &["PUBLISH", "news", "again"], ":1\r\n").await;
    drop(psub);
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect(&mut publisher, &["PUBLISH", "news", "again"], ":0\r\n").await;
}

#[tokio::test]
async fn pipelines_inline_commands_and_protocol_errors() {
    let sim = memory_sim(1).await;
    let mut c = RawClient::connect(sim.node_addr(0)).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(encode(&["RPUSH", "p", &i.to_string()]));
    }
    batch.extend(b"LLEN p\r\n");
    c.write(&batch).await;
    for i in 1..=100 {
        assert_eq!(show(&c.frame().await), format!(":{i}\\r\\n"));
    }
    assert_eq!(&c.frame().await[..], b":100\r\n");
    c.write(b"*1\r\n$abc\r\n").await;
    let err = c.frame().await;
    assert!(err.starts_with(b"-ERR Protocol error"), "{}", show(&err));
    assert!(c.closed_within(Duration::from_secs(3)).await);
    expect(
        &mut RawClient::connect(sim.node_addr(0)).await.unwrap(),
        &["QUIT"],
        "+OK\r\n",
    )
    .await;
}

#[tokio::test]
async fn the_crate_connection_works_through_both_backends() {
    use redis_handoff::{cmd, Connection};
    use tower::ServiceExt;

    let server = common::RedisServer::start();
    for backend in [Backend::Memory, Backend::redis(server.addr())] {
        let sim = Simulator::builder().backend(backend).start().await.unwrap();
        let conn = Connection::connect(&sim.node(0).url()).await.unwrap();
        assert_eq!(conn.server_info().proto, 3);
        let set = conn
            .clone()
            .oneshot(cmd!("SET", "through", "sim"))
            .await
            .unwrap();
        assert!(set.is_ok());
        let got = conn.clone().oneshot(cmd!("GET", "through")).await.unwrap();
        assert_eq!(got.as_str(), Some("sim"));
        assert!(sim.connections()[0].resp3);
    }
}
