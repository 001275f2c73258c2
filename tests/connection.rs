//! The low-level connection against real redis-server processes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use redis_handoff::frame::BytesFrame;
use redis_handoff::{cmd, ClientTracking, Command, ConnectOptions, Connection, Error, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

const WIDE: Duration = Duration::from_secs(20);

async fn connect(server: &RedisServer) -> Connection {
    Connection::connect(&server.url()).await.expect("connect")
}

#[tokio::test]
async fn set_then_get_round_trips() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    assert!(conn
        .clone()
        .oneshot(cmd!("SET", "k", "v"))
        .await
        .unwrap()
        .is_ok());
    let got = conn.clone().oneshot(cmd!("GET", "k")).await.unwrap();
    assert_eq!(got.as_str(), Some("v"));
    assert!(conn.send(cmd!("GET", "missing")).await.unwrap().is_null());
    assert_eq!(conn.server_info().proto, 3);
    assert_eq!(conn.server_info().server, "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tasks_share_one_connection_and_every_reply_is_their_own() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let mut tasks = Vec::new();
    for t in 0..100 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("counter:{t}");
            for expected in 1..=1000i64 {
                let reply = conn.clone().oneshot(cmd!("INCR", &key)).await.unwrap();
                assert_eq!(
                    reply.as_i64(),
                    Some(expected),
                    "task {t} got another's reply"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..100 {
        let v = conn
            .send(cmd!("GET", format!("counter:{t}")))
            .await
            .unwrap();
        assert_eq!(v.as_i64(), Some(1000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_interleaved_with_replies_never_take_a_replys_place() {
    let server = RedisServer::start();
    // Client-side caching: reads register keys, and writes from elsewhere push invalidations.
    let opts = ConnectOptions::from_url(&server.url())
        .unwrap()
        .with_tracking(ClientTracking::new());
    let conn = Connection::connect_with(opts).await.unwrap();
    let publisher = connect(&server).await;
    let mut pushes = conn.pushes();
    // Pub/Sub on the same RESP3 connection, answered with its confirmation.
    let confirm = conn.send(cmd!("SUBSCRIBE", "news", "sport")).await.unwrap();
    assert_eq!(confirm.as_array().map(|a| a.len()), Some(2));

    const MESSAGES: usize = 500;
    let workers: Vec<_> = (0..20)
        .map(|t| {
            let conn = conn.clone();
            tokio::spawn(async move {
                for expected in 1..=300i64 {
                    let r = conn.send(cmd!("INCR", format!("n:{t}"))).await.unwrap();
                    assert_eq!(r.as_i64(), Some(expected), "task {t} got another's reply");
                    // Reading a key makes the server track it for this connection; the
                    // publisher's writes to it then push invalidations.
                    let g = conn
                        .send(cmd!("GET", format!("tracked:{}", expected % 20)))
                        .await
                        .unwrap();
                    assert!(g.is_null() || g.as_str() == Some("x"), "{g:?}");
                }
            })
        })
        .collect();
    let publisher_task = tokio::spawn(async move {
        for i in 0..MESSAGES {
            publisher
                .send(cmd!("PUBLISH", "news", format!("m{i}")))
                .await
                .unwrap();
            publisher
                .send(cmd!("SET", format!("tracked:{}", i % 20), "x"))
                .await
                .unwrap();
        }
    });
    for w in workers {
        w.await.unwrap();
    }
    publisher_task.await.unwrap();

    // Deterministic part: messages arrive in order, and nothing else is mistaken for them.
    let mut messages = Vec::new();
    let mut invalidations = 0;
    let deadline = tokio::time::Instant::now() + WIDE;
    while messages.len() < MESSAGES && tokio::time::Instant::now() < deadline {
        let Ok(Some(frame)) = tokio::time::timeout(WIDE, pushes.recv()).await else {
            break;
        };
        let BytesFrame::Push { data, .. } = frame else {
            panic!("a push subscriber received a non-push frame");
        };
        match data.first().map(frame_text).as_deref() {
            Some("message") => messages.push(frame_text(&data[2])),
            Some("invalidate") => invalidations += 1,
            _ => {}
        }
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(messages, expected);
    assert!(invalidations > 0, "no invalidation push arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stay_matched_while_pushes_flow() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let publisher = connect(&server).await;
    conn.send(cmd!("SUBSCRIBE", "chatter")).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                publisher
                    .send(cmd!("PUBLISH", "chatter", "noise"))
                    .await
                    .unwrap();
                sent += 1;
            }
            sent
        })
    };
    let workers: Vec<_> = (0..20)
        .map(|t| {
            let conn = conn.clone();
            tokio::spawn(async move {
                for expected in 1..=500i64 {
                    let r = conn.send(cmd!("INCR", format!("own:{t}"))).await.unwrap();
                    assert_eq!(r.as_i64(), Some(expected), "a push took a reply's place");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(flood.await.unwrap() > 0);
    // Unsubscribing from everything is answered too, and the connection keeps working.
    conn.send(cmd!("UNSUBSCRIBE")).await.unwrap();
    assert_eq!(
        conn.send(cmd!("PING")).await.unwrap().as_str(),
        Some("PONG")
    );
}

fn frame_text(f: &BytesFrame) -> String {
    match f {
        BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. } => {
            String::from_utf8_lossy(data).into_owned()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn authenticates_with_requirepass_and_with_an_acl_user() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port);
    let conn = Connection::connect(&url).await.unwrap();
    assert_eq!(
        conn.send(cmd!("PING")).await.unwrap().as_str(),
        Some("PONG")
    );

    conn.send(cmd!(
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-pass",
        "~*",
        "+@all"
    ))
    .await
    .unwrap();
    let url = format!("redis://app:app-pass@127.0.0.1:{}", server.port);
    let app = Connection::connect(&url).await.unwrap();
    let who = app.send(cmd!("ACL", "WHOAMI")).await.unwrap();
    assert_eq!(who.as_str(), Some("app"));

    let bad = format!("redis://app:wrong@127.0.0.1:{}", server.port);
    let err = Connection::connect(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(
        !format!("{err:?} {err}").contains("wrong"),
        "the password leaked: {err}"
    );

    let err = Connection::connect(&server.url()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth { message } if message.starts_with("NOAUTH")),
        "{err:?}"
    );
}

#[tokio::test]
async fn selects_the_database_and_sets_the_client_name() {
    let server = RedisServer::start();
    let url = format!(
        "redis://127.0.0.1:{}/5?client_name=checkout-api",
        server.port
    );
    let conn = Connection::connect(&url).await.unwrap();
    conn.send(cmd!("SET", "where", "db5")).await.unwrap();
    let list = conn.send(cmd!("CLIENT", "LIST")).await.unwrap();
    let list = list.as_str().unwrap().to_string();
    assert!(list.contains("name=checkout-api"), "{list}");
    assert!(list.contains("db=5"), "{list}");
    // A connection of one's own takes SELECT by hand; a shared one refuses it.
    let plain = connect(&server).await;
    assert!(matches!(
        plain.send(cmd!("SELECT", 5)).await,
        Err(Error::Refused { .. })
    ));
    let plain = plain.into_dedicated();
    assert!(plain.send(cmd!("GET", "where")).await.unwrap().is_null());
    plain.send(cmd!("SELECT", 5)).await.unwrap();
    assert_eq!(
        plain.send(cmd!("GET", "where")).await.unwrap().as_str(),
        Some("db5")
    );

    let err = Connection::connect(&format!("redis://127.0.0.1:{}/99", server.port))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake { step: "SELECT", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn connects_over_tls_verifying_the_servers_certificate() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let tls_port = common::free_port();
    let cert_file = dir.path().join("cert.pem").display().to_string();
    let key_file = dir.path().join("key.pem").display().to_string();
    let port = tls_port.to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &cert_file,
        "--tls-auth-clients",
        "no",
    ]);
    common::wait_for_port(tls_port);

    for host in ["localhost", "127.0.0.1"] {
        let opts = ConnectOptions::from_url(&format!("rediss://{host}:{tls_port}"))
            .unwrap()
            .with_tls(
                TlsOptions::new()
                    .with_root_pem(cert_pem.as_bytes())
                    .unwrap()
                    .only_given_roots(),
            );
        let conn = Connection::connect_with(opts).await.unwrap();
        conn.send(cmd!("SET", "secure", host)).await.unwrap();
        assert_eq!(
            conn.send(cmd!("GET", "secure")).await.unwrap().as_str(),
            Some(host)
        );
    }

    // Without trusting the test's certificate, the handshake is refused.
    let err = Connection::connect(&format!("rediss://localhost:{tls_port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_in_flight_commands_and_new_calls_fail_fast() {
    let mut server = RedisServer::start();
    let conn = connect(&server).await;
    let mut tasks = Vec::new();
    for t in 0..50 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                match conn.clone().oneshot(cmd!("INCR", format!("k:{t}"))).await {
                    Ok(_) => ok += 1,
                    Err(e) => return (ok, e),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let results = tokio::time::timeout(WIDE, async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
    .await
    .expect("every task gets an answer");
    let mut lost = 0;
    for (ok, err) in &results {
        assert!(*ok > 0, "each task had replies before the kill");
        match err {
            Error::ConnectionLost { .. } => {
                assert!(err.may_have_executed());
                lost += 1;
            }
            Error::NotSent { .. } => assert!(err.certainly_not_executed()),
            other => panic!("unexpected error: {other:?}"),
        }
    }
    assert!(
        lost > 0,
        "some commands were in flight when the server died"
    );

    let err = tokio::time::timeout(Duration::from_secs(5), conn.clone().oneshot(cmd!("PING")))
        .await
        .expect("fails fast")
        .unwrap_err();
    assert!(matches!(err, Error::NotSent { .. }), "{err:?}");
    assert!(conn.is_closed());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() {
    let server = RedisServer::start();
    let watcher = connect(&server).await;
    let url = format!("{}?client_name=short-lived", server.url());
    let conn = Connection::connect(&url).await.unwrap();
    let other = conn.clone();
    let closed = conn.closed();
    conn.send(cmd!("PING")).await.unwrap();
    drop(conn);
    drop(other);
    let reason = tokio::time::timeout(WIDE, closed).await.expect("closed");
    assert!(reason.contains("closed by the client"), "{reason}");
    let deadline = tokio::time::Instant::now() + WIDE;
    loop {
        let list = watcher.send(cmd!("CLIENT", "LIST")).await.unwrap();
        if !list.as_str().unwrap().contains("short-lived") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still sees the client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slot_reserved_by_poll_ready_is_released_when_call_never_comes() {
    let server = RedisServer::start();
    let mut opts = ConnectOptions::from_url(&server.url()).unwrap();
    opts.queue_size = 1;
    let conn = Connection::connect_with(opts).await.unwrap();
    for _ in 0..10 {
        let mut reserving = conn.clone();
        std::future::poll_fn(|cx| Service::<Command>::poll_ready(&mut reserving, cx))
            .await
            .unwrap();
        drop(reserving);
    }
    let pong = tokio::time::timeout(WIDE, conn.clone().oneshot(cmd!("PING")))
        .await
        .expect("the queue is not wedged")
        .unwrap();
    assert_eq!(pong.as_str(), Some("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_callers_wait_and_every_command_still_runs_once() {
    let server = RedisServer::start();
    let mut opts = ConnectOptions::from_url(&server.url()).unwrap();
    opts.queue_size = 2;
    let conn = Connection::connect_with(opts).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..40 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("full-queue:{t}");
            for i in 1..=200i64 {
                // Half the tasks go through tower (`poll_ready` waits for a slot), half through
                // `send` (which waits inside).
                let reply = if t % 2 == 0 {
                    conn.clone().oneshot(cmd!("INCR", &key)).await
                } else {
                    conn.send(cmd!("INCR", &key)).await
                };
                assert_eq!(reply.unwrap().as_i64(), Some(i), "{key}");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(WIDE, t)
            .await
            .expect("no caller is left waiting for a slot")
            .unwrap();
    }
    for t in 0..40 {
        let n = conn
            .send(cmd!("GET", format!("full-queue:{t}")))
            .await
            .unwrap();
        assert_eq!(n.as_str(), Some("200"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_for_a_slot_fail_fast_when_the_connection_is_drained() {
    let server = RedisServer::start();
    let mut opts = ConnectOptions::from_url(&server.url()).unwrap();
    opts.queue_size = 1;
    opts.max_in_flight = 1;
    let conn = Connection::connect_with(opts).await.unwrap();
    // Park the connection on a blocking command so the queue fills up behind it.
    let blocker = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(cmd!("BLPOP", "never-pushed", 1)).await })
    };
    let mut waiting = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        waiting.push(tokio::spawn(async move {
            conn.clone().oneshot(cmd!("SET", format!("w:{i}"), i)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reason = tokio::time::timeout(WIDE, conn.drain())
        .await
        .expect("the drain finishes");
    assert!(reason.contains("drained"), "{reason}");
    let mut refused = 0;
    for w in waiting {
        match tokio::time::timeout(WIDE, w)
            .await
            .expect("no caller hangs")
            .unwrap()
        {
            Ok(_) => {}
            Err(Error::NotSent { .. }) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        refused > 0,
        "some callers were still waiting when the drain began"
    );
    assert!(blocker.await.unwrap().is_ok());
    assert!(matches!(
        conn.send(cmd!("PING")).await,
        Err(Error::NotSent { .. })
    ));
}

#[tokio::test]
async fn connect_errors_name_the_endpoint() {
    let port = common::free_port();
    let err = Connection::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// A fake server: answers the handshake like Redis, then sends `evil` in reply to the first
/// command after it.
async fn hostile_server(evil: Vec<u8>) -> (u16, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        // The handshake: HELLO, CLIENT SETINFO x2, all pipelined.
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        let mut seen = Vec::new();
        while count_commands(&seen) < 3 {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                return 0;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        sock.write_all(hello).await.unwrap();
        sock.write_all(b"+OK\r\n+OK\r\n").await.unwrap();
        let _ = sock.read(&mut buf).await;
        let _ = sock.write_all(&evil).await;
        // Keep sending garbage until the client hangs up; count what it took.
        let mut sent = evil.len();
        let filler = vec![b'x'; 64 * 1024];
        while sent < 64 * 1024 * 1024 {
            match tokio::time::timeout(Duration::from_secs(2), sock.write_all(&filler)).await {
                Ok(Ok(())) => sent += filler.len(),
                _ => break,
            }
        }
        sent
    });
    (port, task)
}

fn count_commands(bytes: &[u8]) -> usize {
    bytes
        .windows(3)
        .filter(|w| w[0] == b'\n' && w[1] == b'*')
        .count()
        + usize::from(bytes.first() == Some(&b'*'))
}

#[tokio::test]
async fn a_hostile_server_gets_a_protocol_error_and_a_closed_connection() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "oversized bulk string",
            b"$4000000000\r\n".to_vec(),
            "larger than the limit",
        ),
        ("too deep", b"*1\r\n".repeat(100), "nested deeper"),
        ("garbage", b"hello there\r\n".to_vec(), "unknown RESP3 type"),
        (
            "huge aggregate",
            b"*999999999999\r\n".to_vec(),
            "larger than the limit",
        ),
        // Small enough in bytes (3 each), too many values to decode.
        (
            "element bomb",
            b"*200000\r\n".to_vec(),
            "Limits::max_elements",
        ),
    ];
    for (what, evil, says) in cases {
        let (port, server) = hostile_server(evil).await;
        let opts = ConnectOptions::from_url(&format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .with_limits(redis_handoff::Limits {
                max_frame_size: 1024 * 1024,
                max_depth: 32,
                max_elements: 100_000,
            });
        let conn = Connection::connect_with(opts).await.unwrap();
        let err = tokio::time::timeout(WIDE, conn.send(cmd!("GET", "k")))
            .await
            .unwrap_or_else(|_| panic!("{what}: hung"))
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{what}: {err:?}");
        assert!(err.to_string().contains(says), "{what}: {err}");
        tokio::time::timeout(WIDE, conn.closed())
            .await
            .expect("closed");
        let sent = server.await.unwrap();
        // The client hung up instead of buffering the flood (64 MiB offered).
        assert!(
            sent < 48 * 1024 * 1024,
            "{what}: the client kept reading {sent} bytes"
        );
        let err = conn.send(cmd!("PING")).await.unwrap_err();
        assert!(matches!(err, Error::NotSent { .. }), "{what}: {err:?}");
    }
}
