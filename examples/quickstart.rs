//! Quick start: connect, send a few commands, see the replies.
//!
//! ```sh
//! cargo run --example quickstart            # 127.0.0.1:6379, or REDIS_URL
//! ```

use redis_handoff::{cmd, Connection};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = Connection::connect(&url).await?;
    let info = conn.server_info();
    println!(
        "connected to {} {} {} (RESP{})",
        conn.endpoint(),
        info.server,
        info.version,
        info.proto
    );

    conn.clone()
        .oneshot(cmd!("SET", "quickstart:greeting", "hello"))
        .await?;
    let greeting = conn
        .clone()
        .oneshot(cmd!("GET", "quickstart:greeting"))
        .await?;
    println!(
        "GET quickstart:greeting -> {:?}",
        greeting.as_str().unwrap_or_default()
    );

    // Many tasks share one connection; their commands are pipelined together.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.oneshot(cmd!("INCR", "quickstart:visits")).await })
        })
        .collect();
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await??.as_i64().unwrap_or_default());
    }
    println!("100 concurrent INCRs -> quickstart:visits = {last}");
    conn.clone()
        .oneshot(cmd!("DEL", "quickstart:greeting", "quickstart:visits"))
        .await?;
    Ok(())
}
