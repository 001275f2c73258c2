//! Client-side pieces tests build on: a connector and a HandoffRetry for a URL, and a publisher
//! whose messages are numbered so a subscriber can tell which ones it missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_handoff::frame::BytesFrame;
use redis_handoff::handoff::{HandoffConfig, HandoffRetry};
use redis_handoff::{cmd, ConnectOptions, Connection, Connector, Maintenance};

/// A connector for a `redis://` URL, with every other option at its default.
pub fn connector(url: &str) -> Connector {
    Connector::new(ConnectOptions::from_url(url).unwrap()).unwrap()
}

/// HandoffRetry straight over the server at `url` (no demux), connected.
pub async fn handoff_to_url(
    url: &str,
    maintenance: &Maintenance,
    config: HandoffConfig,
) -> HandoffRetry {
    HandoffRetry::connect(connector(url), maintenance.clone(), config)
        .await
        .unwrap()
}

/// A task on its own connection that publishes 0, 1, 2, ... to a channel until stopped.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Publisher {
    /// Connects to `url` and publishes to `channel`, pausing `pause` after each message.
    pub async fn start(url: &str, channel: &str, pause: Duration) -> Publisher {
        let publisher = Connection::connect(url).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            let channel = channel.to_string();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    publisher.send(cmd!("PUBLISH", &channel, i)).await.unwrap();
                    i += 1;
                    tokio::time::sleep(pause).await;
                }
                i
            })
        };
        Publisher { stop, task }
    }

    /// Stops publishing; how many messages were published (numbered `0..n`).
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The number a [`Publisher`]'s message carries, if `frame` is a pub/sub `message` push.
pub fn message_number(frame: &BytesFrame) -> Option<u64> {
    let BytesFrame::Push { data, .. } = frame else {
        return None;
    };
    if !matches!(data.first(), Some(BytesFrame::BlobString { data, .. }) if &data[..] == b"message")
    {
        return None;
    }
    match data.get(2) {
        Some(BytesFrame::BlobString { data, .. }) => {
            Some(String::from_utf8_lossy(data).parse::<u64>().unwrap())
        }
        _ => None,
    }
}
