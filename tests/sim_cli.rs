//! `redis-handoff sim`, configured the way Redis's test proxy is: by environment variables.
#![cfg(feature = "sim")]

mod common;

use std::process::{Command, Stdio};

use common::{free_port, wait_for_port, RawClient, RedisServer};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sim_command_reads_the_proxy_environment_variables() {
    let server = RedisServer::start();
    let (p1, p2, api) = (free_port(), free_port(), free_port());
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_redis-handoff"))
            .arg("sim")
            .env("LISTEN_PORT", format!("{p1},{p2}"))
            .env("LISTEN_HOST", "127.0.0.1")
            .env("TARGET_HOST", "127.0.0.1")
            .env("TARGET_PORT", server.port.to_string())
            .env("API_PORT", api.to_string())
            .env("DEFAULT_INTERCEPTORS", "cluster,hitless")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    wait_for_port(api);
    let (status, body) = common::http(
        format!("127.0.0.1:{api}").parse().unwrap(),
        "GET",
        "/nodes",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let target = server.port;
    assert_eq!(
        v,
        serde_json::json!({ "ids": [format!("127.0.0.1:{target}@{p1}"), format!("127.0.0.1:{target}@{p2}")] })
    );
    let mut c = RawClient::opted_in(("127.0.0.1", p2), "internal-ip").await;
    assert_eq!(&c.cmd(&["SET", "cli", "works"]).await[..], b"+OK\r\n");
    let slots = c.cmd(&["CLUSTER", "SLOTS"]).await;
    assert!(slots.starts_with(b"*2\r\n*3\r\n:0\r\n:8191\r\n"));
    let mut other = RawClient::resp3(("127.0.0.1", p1)).await;
    assert_eq!(&other.cmd(&["GET", "cli"]).await[..], b"$5\r\nworks\r\n");
}
