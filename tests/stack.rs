//! The recommended stack as a whole, against a real redis-server.

mod common;

use std::time::Duration;

use common::RedisServer;
use redis_handoff::{cmd, Connection, Stack};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_of_a_stack_closes_its_connection() {
    let server = RedisServer::start();
    let watcher = Connection::connect(&server.url()).await.unwrap();
    let url = format!("{}?client_name=stack-under-test", server.url());
    let stack = Stack::connect(&url).await.unwrap();
    let other = stack.clone();
    stack.clone().oneshot(cmd!("SET", "k", "v")).await.unwrap();
    assert_eq!(
        other
            .clone()
            .oneshot(cmd!("GET", "k"))
            .await
            .unwrap()
            .as_str(),
        Some("v")
    );
    let listed = |list: &str| list.contains("name=stack-under-test");
    let list = watcher.send(cmd!("CLIENT", "LIST")).await.unwrap();
    assert!(listed(list.as_str().unwrap()));
    assert_eq!(stack.metrics().snapshot().outcomes.ok, 2);

    drop(stack);
    drop(other);
    // Its layers' tasks end and its connection closes: nothing keeps the stack alive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = watcher.send(cmd!("CLIENT", "LIST")).await.unwrap();
        if !listed(list.as_str().unwrap()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still sees the dropped stack's connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
