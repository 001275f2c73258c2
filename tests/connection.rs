mod common;

use common::RedisServer;
use redis_handoff::{cmd, Connection};
use tower::ServiceExt;

#[tokio::test]
async fn set_then_get_round_trips() {
    let server = RedisServer::start();
    let conn = Connection::connect(&server.url()).await.unwrap();
    assert!(conn
        .clone()
        .oneshot(cmd!("SET", "k", "v"))
        .await
        .unwrap()
        .is_ok());
    let got = conn.clone().oneshot(cmd!("GET", "k")).await.unwrap();
    assert_eq!(got.as_str(), Some("v"));
    assert_eq!(conn.server_info().proto, 3);
    assert_eq!(conn.server_info().server, "redis");
}
