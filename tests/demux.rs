//! NotificationDemux against a real redis-server (which does not send maintenance
//! notifications: the simulator-based tests cover those).

mod common;

use common::events::next_picked;
use common::logs::CapturedLogs;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use redis_handoff::demux::{NotificationDemux, NotificationDemuxLayer};
use redis_handoff::frame::BytesFrame;
use redis_handoff::maintenance::{
    AzureEventKind, AzureEvents, EndpointType, EventKind, Maintenance, MaintenanceConfig,
    MaintenanceMode, NotificationSupport, AZURE_CHANNEL,
};
use redis_handoff::{cmd, Command, ConnectOptions, Connection, Connector, Endpoint, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, ServiceExt};

fn maintenance(mode: MaintenanceMode, azure: AzureEvents) -> Maintenance {
    Maintenance::new(
        MaintenanceConfig::builder()
            .mode(mode)
            .azure_events(azure)
            .build()
            .unwrap(),
    )
}

fn connector(port: u16) -> Connector {
    Connector::new(ConnectOptions::new(Endpoint::new("127.0.0.1", port))).unwrap()
}

/// How long a test waits for an event before it gives up.
const EVENT_WAIT: Duration = Duration::from_secs(5);

async fn publish(server: &RedisServer, channel: &str, payload: &str) {
    let publisher = Connection::connect(&server.url()).await.unwrap();
    publisher
        .send(cmd!("PUBLISH", channel, payload))
        .await
        .unwrap();
}

async fn set_then_get(conn: &Connection) {
    conn.clone()
        .oneshot(cmd!("SET", "demux:k", "v"))
        .await
        .unwrap();
    let got = conn.clone().oneshot(cmd!("GET", "demux:k")).await.unwrap();
    assert_eq!(got.as_str(), Some("v"));
}

/// A TCP proxy in front of the server that records every byte the client sends.
struct RecordingProxy {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
                });
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match client_rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                record.lock().unwrap().extend_from_slice(&buf[..n]);
                                if server_wr.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        RecordingProxy { port, sent }
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

fn init_logging() {
    common::logs::init("debug", false);
}

#[tokio::test]
async fn auto_mode_against_plain_redis_connects_cleanly_without_notifications() {
    init_logging();
    let logs = CapturedLogs::start();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::Auto);
    let mut events = maintenance.subscribe();
    let demux = NotificationDemuxLayer::new(maintenance.clone()).layer(connector(server.port));

    let conn = demux
        .connect()
        .await
        .expect("Auto carries on without notifications");
    set_then_get(&conn).await;

    let answer = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::NotificationsRefused { answer } => Some(answer.clone()),
        _ => None,
    })
    .await;
    assert!(answer.contains("MAINT_NOTIFICATIONS"), "{answer}");
    let status = maintenance.status(demux.get_ref().endpoint());
    assert_eq!(status.notification_support(), NotificationSupport::Refused);
    assert!(!status.in_maintenance());

    let lines = logs.lines();
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("does not support maintenance notifications"))
        .collect();
    assert_eq!(refusals.len(), 1, "{lines:#?}");
    assert!(refusals[0].contains("DEBUG"), "{}", refusals[0]);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(" WARN ") || l.contains("ERROR")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn enabled_mode_against_plain_redis_fails_naming_the_answer() {
    init_logging();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Enabled, AzureEvents::Off);
    let demux = NotificationDemux::over_connector(connector(server.port), maintenance.clone());

    let err = demux
        .connect_to(&Endpoint::new("127.0.0.1", server.port))
        .await
        .expect_err("Enabled needs the server to agree");
    let Error::MaintenanceUnsupported { endpoint, message } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(endpoint.port(), server.port);
    assert!(message.contains("MAINT_NOTIFICATIONS"), "{message}");
    let shown = err.to_string();
    assert!(
        shown.contains("refused maintenance notifications") && shown.contains(&**message),
        "{shown}"
    );
    assert!(err.certainly_not_executed());
    assert_eq!(
        maintenance
            .status(&Endpoint::new("127.0.0.1", server.port))
            .notification_support(),
        NotificationSupport::Refused
    );
}

#[tokio::test]
async fn disabled_mode_never_sends_the_opt_in() {
    init_logging();
    let server = RedisServer::start();
    let proxy = RecordingProxy::start(server.port).await;
    let demux = NotificationDemux::over_connector(
        connector(proxy.port),
        maintenance(MaintenanceMode::Disabled, AzureEvents::Off),
    );
    let conn = demux.connect().await.unwrap();
    set_then_get(&conn).await;

    let sent = proxy.sent();
    assert!(sent.contains("HELLO") && sent.contains("GET"), "{sent}");
    assert!(
        !sent.to_ascii_uppercase().contains("MAINT_NOTIFICATIONS"),
        "{sent}"
    );
}

#[tokio::test]
async fn every_new_connection_asks_again_with_the_resolved_endpoint_type() {
    init_logging();
    let server = RedisServer::start();
    let proxy = RecordingProxy::start(server.port).await;
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::Off);
    let demux = NotificationDemux::over_connector(connector(proxy.port), maintenance);
    let first = demux.connect().await.unwrap();
    let second = demux.connect().await.unwrap();
    set_then_get(&first).await;
    set_then_get(&second).await;

    // A refusal does not stop the next connection from asking (configured mode and detected
    // support are kept apart); `auto` is resolved before it is sent: loopback without TLS.
    let sent = proxy.sent();
    let expected = format!(
        "moving-endpoint-type\r\n${}\r\n{}",
        EndpointType::InternalIp.as_str().len(),
        EndpointType::InternalIp
    );
    assert_eq!(sent.matches("MAINT_NOTIFICATIONS").count(), 2, "{sent}");
    assert_eq!(sent.matches(&expected).count(), 2, "{sent}");
    assert!(!sent.contains("auto"), "{sent}");
    // Pipelined with the handshake: the opt-in goes out before the first command.
    assert!(
        sent.find("MAINT_NOTIFICATIONS") < sent.find("demux:k"),
        "{sent}"
    );
}

#[tokio::test]
async fn azure_events_on_request_become_typed_events() {
    init_logging();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::On);
    let mut events = maintenance.subscribe();
    let demux = NotificationDemux::over_connector(connector(server.port), maintenance.clone());
    let conn = demux.connect().await.unwrap();

    let payload = "NotificationType|NodeMaintenanceStarting|StartTimeInUTC|2021-03-02T23:34:56|IsReplica|False|IPAddress|10.0.0.5|SSLPort|15001|NonSSLPort|13001";
    publish(&server, AZURE_CHANNEL, payload).await;

    let (event, endpoint, source) = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::Azure(a) => Some((a.clone(), e.endpoint.clone(), e.source.clone())),
        _ => None,
    })
    .await;
    assert_eq!(event.kind, AzureEventKind::NodeMaintenanceStarting);
    assert_eq!(event.ip_address, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(
        (event.ssl_port, event.non_ssl_port, event.is_replica),
        (Some(15001), Some(13001), false)
    );
    assert!(event.is_late());
    assert_eq!(endpoint, Endpoint::new("127.0.0.1", server.port));
    assert_eq!(source, *conn.endpoint());
    assert!(maintenance.status(&endpoint).in_maintenance());
    assert_eq!(
        maintenance
            .counts()
            .azure(&AzureEventKind::NodeMaintenanceStarting),
        1
    );
    // Subscribed on the same RESP3 connection, which still serves commands.
    set_then_get(&conn).await;

    publish(
        &server,
        AZURE_CHANNEL,
        "NotificationType|NodeMaintenanceEnded",
    )
    .await;
    next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::Azure(a) if a.kind == AzureEventKind::NodeMaintenanceEnded => Some(()),
        _ => None,
    })
    .await;
    assert!(!maintenance.status(&endpoint).in_maintenance());
}

#[tokio::test]
async fn ordinary_pubsub_messages_reach_their_subscribers_untouched() {
    init_logging();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::On);
    let demux = NotificationDemux::over_connector(connector(server.port), maintenance.clone());
    let conn = demux.connect().await.unwrap();
    let mut pushes = conn.pushes();
    conn.send(cmd!("SUBSCRIBE", "news")).await.unwrap();

    publish(&server, "news", "hello").await;
    let azure = "NotificationType|NodeMaintenanceScheduled";
    publish(&server, AZURE_CHANNEL, azure).await;

    let blob = |s: &str| BytesFrame::BlobString {
        data: s.to_owned().into(),
        attributes: None,
    };
    let message = |channel: &str, payload: &str| BytesFrame::Push {
        data: vec![blob("message"), blob(channel), blob(payload)],
        attributes: None,
    };
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 2 {
            let frame = pushes.recv().await.unwrap();
            if matches!(&frame, BytesFrame::Push { data, .. } if data.first() == Some(&blob("message")))
            {
                got.push(frame);
            }
        }
    })
    .await
    .unwrap();
    // Exactly as the server sent them, the Azure message included.
    assert_eq!(
        got,
        [message("news", "hello"), message(AZURE_CHANNEL, azure)]
    );
    let counts = maintenance.counts();
    assert_eq!(counts.total_azure(), 1);
    assert_eq!(counts.dropped(), 0);
    assert_eq!(counts.total_notifications(), 0);
}

#[tokio::test]
async fn a_malformed_azure_message_is_counted_and_dropped_while_commands_continue() {
    init_logging();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::On);
    let mut events = maintenance.subscribe();
    let demux = NotificationDemux::over_connector(connector(server.port), maintenance.clone());
    let conn = demux.connect().await.unwrap();

    publish(
        &server,
        AZURE_CHANNEL,
        "NotificationType|NodeMaintenanceStart|SSLPort|many",
    )
    .await;
    let (reason, preview) = next_picked(&mut events, EVENT_WAIT, |e| match &e.kind {
        EventKind::NotificationDropped { reason, preview } => {
            Some((reason.clone(), preview.clone()))
        }
        _ => None,
    })
    .await;
    assert!(reason.contains("SSLPort"), "{reason}");
    assert!(preview.contains("SSLPort|many"), "{preview}");
    assert_eq!(maintenance.counts().dropped(), 1);
    assert!(!conn.is_closed());
    set_then_get(&conn).await;

    // A good message afterwards is still understood.
    publish(
        &server,
        AZURE_CHANNEL,
        "NotificationType|NodeMaintenanceStart",
    )
    .await;
    next_picked(&mut events, EVENT_WAIT, |e| {
        matches!(e.kind, EventKind::Azure(_)).then_some(())
    })
    .await;
    assert_eq!(maintenance.counts().dropped(), 1);
}

#[tokio::test]
async fn the_connection_form_demuxes_an_existing_connection() {
    init_logging();
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::Off);
    let mut events = maintenance.subscribe();
    let conn = Connection::connect(&server.url()).await.unwrap();
    let configured = Endpoint::new("cache.example", 6379);
    let mut demuxed = NotificationDemuxLayer::new(maintenance.clone())
        .configured_endpoint(configured.clone())
        .layer(conn.clone());

    // Commands pass straight through.
    let reply = ServiceExt::<Command>::ready(&mut demuxed)
        .await
        .unwrap()
        .call(cmd!("PING"))
        .await
        .unwrap();
    assert_eq!(reply.as_str(), Some("PONG"));
    ServiceExt::<Command>::ready(&mut demuxed)
        .await
        .unwrap()
        .call(cmd!("SUBSCRIBE", AZURE_CHANNEL))
        .await
        .unwrap();

    publish(
        &server,
        AZURE_CHANNEL,
        "NotificationType|NodeMaintenanceStarting",
    )
    .await;
    let event = next_picked(&mut events, EVENT_WAIT, |e| {
        matches!(e.kind, EventKind::Azure(_)).then(|| e.clone())
    })
    .await;
    assert_eq!(event.endpoint, configured);
    assert!(event.is_from(conn.id()));
    assert!(maintenance.status(&configured).in_maintenance());
}

#[tokio::test]
async fn a_callers_unsubscribe_from_everything_keeps_the_azure_subscription() {
    let server = RedisServer::start();
    let maintenance = maintenance(MaintenanceMode::Auto, AzureEvents::On);
    let demux = NotificationDemux::over_connector(connector(server.port), maintenance.clone());
    let conn = demux.connect().await.unwrap();
    let look = Connection::connect(&server.url()).await.unwrap();
    let numsub = |channel: &'static str| {
        let look = &look;
        async move {
            let reply = look.send(cmd!("PUBSUB", "NUMSUB", channel)).await.unwrap();
            reply
                .as_array()
                .and_then(|a| a.get(1))
                .and_then(|f| match f {
                    BytesFrame::Number { data, .. } => Some(*data),
                    _ => None,
                })
        }
    };
    assert_eq!(numsub(AZURE_CHANNEL).await, Some(1));

    // Nothing of the caller's yet: answered without touching the server's subscription.
    let reply = conn.send(cmd!("UNSUBSCRIBE")).await.unwrap();
    assert_eq!(reply.as_array().map(<[BytesFrame]>::len), Some(1));
    assert_eq!(numsub(AZURE_CHANNEL).await, Some(1));

    // With channels of its own: those go, the connection's stays.
    conn.send(cmd!("SUBSCRIBE", "news", "sports"))
        .await
        .unwrap();
    let reply = conn.send(cmd!("UNSUBSCRIBE")).await.unwrap();
    assert_eq!(reply.as_array().map(<[BytesFrame]>::len), Some(2));
    assert_eq!(numsub("news").await, Some(0));
    assert_eq!(numsub("sports").await, Some(0));
    assert_eq!(numsub(AZURE_CHANNEL).await, Some(1));
    // Named, it is left out: answered at once when nothing else is named, and the others
    // go when they are.
    let reply = conn.send(cmd!("UNSUBSCRIBE", AZURE_CHANNEL)).await.unwrap();
    assert_eq!(reply.as_array().map(<[BytesFrame]>::len), Some(1));
    conn.send(cmd!("SUBSCRIBE", "news")).await.unwrap();
    conn.send(cmd!("UNSUBSCRIBE", AZURE_CHANNEL, "news"))
        .await
        .unwrap();
    assert_eq!(numsub("news").await, Some(0));
    assert_eq!(numsub(AZURE_CHANNEL).await, Some(1));
    // And the connection still answers commands in order.
    assert_eq!(
        conn.send(cmd!("PING")).await.unwrap().as_str(),
        Some("PONG")
    );
}
