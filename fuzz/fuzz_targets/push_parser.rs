//! Any bytes, decoded into RESP3 frames the way a connection would, then parsed as maintenance
//! notifications and processed by a `Maintenance` handle: no panic, and whatever is understood
//! means the same once written back. `tests/parser_properties.rs` checks the same properties.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redis_handoff::maintenance::{Maintenance, Notification, PushOrigin};
use redis_handoff::Endpoint;

fuzz_target!(|data: &[u8]| {
    static MAINTENANCE: OnceLock<(Maintenance, PushOrigin)> = OnceLock::new();
    let (maintenance, origin) = MAINTENANCE.get_or_init(|| {
        (
            Maintenance::default(),
            PushOrigin::new(Endpoint::new("127.0.0.1", 6379)),
        )
    });
    let mut buf = BytesMut::from(data);
    while let Ok(Some((frame, _, _))) =
        redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf)
    {
        if let Ok(Some(notification)) = Notification::from_push(&frame) {
            assert_eq!(
                Notification::from_push(&notification.to_push()),
                Ok(Some(notification.clone()))
            );
            let _ = notification.to_string();
        }
        let _ = maintenance.process_push(origin, &frame);
    }
});
