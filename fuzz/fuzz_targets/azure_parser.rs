//! Any bytes as an `AzureRedisEvents` message, parsed directly and through a `Maintenance`
//! handle: no panic, and whatever is understood means the same once written back.
//! `tests/parser_properties.rs` checks the same properties.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use redis_handoff::frame::BytesFrame;
use redis_handoff::maintenance::{AzureEvent, Maintenance, PushOrigin, AZURE_CHANNEL};
use redis_handoff::Endpoint;

fn blob(data: Bytes) -> BytesFrame {
    BytesFrame::BlobString {
        data,
        attributes: None,
    }
}

fuzz_target!(|data: &[u8]| {
    static MAINTENANCE: OnceLock<(Maintenance, PushOrigin)> = OnceLock::new();
    let (maintenance, origin) = MAINTENANCE.get_or_init(|| {
        (
            Maintenance::default(),
            PushOrigin::new(Endpoint::new("127.0.0.1", 6379)),
        )
    });
    if let Ok(message) = std::str::from_utf8(data) {
        let received = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if let Ok(event) = AzureEvent::parse(message, received) {
            assert_eq!(
                AzureEvent::parse(&event.to_message(), received),
                Ok(event.clone())
            );
            let _ = event.endpoint(true);
        }
    }
    let push = BytesFrame::Push {
        data: vec![
            blob(Bytes::from_static(b"message")),
            blob(Bytes::from_static(AZURE_CHANNEL.as_bytes())),
            blob(Bytes::copy_from_slice(data)),
        ],
        attributes: None,
    };
    let _ = maintenance.process_push(origin, &push);
});
