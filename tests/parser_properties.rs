//! Properties of the push-notification and Azure parsers, the same ones the fuzz targets in
//! `fuzz/` check, run here on every test run, and of what a reply shows of itself.
//!
//! The frame scanner's property (a frame cut at random points decodes as when whole) is with
//! the scanner, in `src/connection/codec.rs`: the scanner is private to the crate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use redis_handoff::frame::BytesFrame;
use redis_handoff::maintenance::{
    AzureEvent, AzureEventKind, Maintenance, Notification, NotificationKind, PushOrigin, SlotMove,
    SlotRange, AZURE_CHANNEL,
};
use redis_handoff::{Endpoint, Reply};

// ===== strategies =====

fn blob(data: Vec<u8>) -> BytesFrame {
    BytesFrame::BlobString {
        data: Bytes::from(data),
        attributes: None,
    }
}

fn leaf() -> impl Strategy<Value = BytesFrame> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(blob),
        "[ -~]{0,24}".prop_map(|s| BytesFrame::SimpleString {
            data: Bytes::from(s),
            attributes: None,
        }),
        // Strings that look like the values servers send.
        "[0-9a-f:.\\[\\],-]{0,24}".prop_map(|s| blob(s.into_bytes())),
        any::<i64>().prop_map(|data| BytesFrame::Number {
            data,
            attributes: None
        }),
        (-5i64..70_000).prop_map(|data| BytesFrame::Number {
            data,
            attributes: None
        }),
        "-?[0-9]{1,30}".prop_map(|s| BytesFrame::BigNumber {
            data: Bytes::from(s),
            attributes: None,
        }),
        any::<bool>().prop_map(|data| BytesFrame::Boolean {
            data,
            attributes: None
        }),
        any::<f64>().prop_map(|data| BytesFrame::Double {
            data,
            attributes: None
        }),
        Just(BytesFrame::Null),
    ]
}

fn frame() -> impl Strategy<Value = BytesFrame> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|data| BytesFrame::Array {
                data,
                attributes: None
            }),
            proptest::collection::vec(inner, 0..6).prop_map(|data| BytesFrame::Push {
                data,
                attributes: None
            }),
        ]
    })
}

/// A push whose name is a maintenance notification's (in any case, simple or bulk) followed by
/// anything: the parser's hardest input.
fn maintenance_shaped_push() -> impl Strategy<Value = BytesFrame> {
    (
        proptest::sample::select(NotificationKind::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(frame(), 0..6),
    )
        .prop_map(|(kind, lower, simple, rest)| {
            let name = if lower {
                kind.name().to_ascii_lowercase()
            } else {
                kind.name().to_string()
            };
            let name = if simple {
                BytesFrame::SimpleString {
                    data: Bytes::from(name),
                    attributes: None,
                }
            } else {
                blob(name.into_bytes())
            };
            let mut data = vec![name];
            data.extend(rest);
            BytesFrame::Push {
                data,
                attributes: None,
            }
        })
}

fn azure_push(payload: BytesFrame) -> BytesFrame {
    BytesFrame::Push {
        data: vec![
            blob(b"message".to_vec()),
            blob(AZURE_CHANNEL.as_bytes().to_vec()),
            payload,
        ],
        attributes: None,
    }
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let host = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string()),
        any::<[u8; 16]>().prop_map(|o| IpAddr::from(o).to_string()),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{1,5}){0,2}",
    ];
    (host, any::<u16>()).prop_map(|(h, p)| Endpoint::new(h, p))
}

fn slot_ranges() -> impl Strategy<Value = Vec<SlotRange>> {
    proptest::collection::vec(
        (0u16..16384, 0u16..16384)
            .prop_map(|(a, b)| SlotRange::new(a.min(b), a.max(b)).expect("ordered and in range")),
        0..5,
    )
}

fn shards() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[A-Za-z0-9_]{1,8}", 0..4)
}

fn secs() -> impl Strategy<Value = Duration> {
    prop_oneof![0u64..100, any::<u64>()].prop_map(Duration::from_secs)
}

fn notification() -> impl Strategy<Value = Notification> {
    prop_oneof![
        (any::<u64>(), secs(), proptest::option::of(endpoint())).prop_map(
            |(seq, time, endpoint)| Notification::Moving {
                seq,
                time,
                endpoint
            }
        ),
        (any::<u64>(), secs(), shards())
            .prop_map(|(seq, time, shards)| { Notification::Migrating { seq, time, shards } }),
        (any::<u64>(), shards()).prop_map(|(seq, shards)| Notification::Migrated { seq, shards }),
        (any::<u64>(), secs(), shards())
            .prop_map(|(seq, time, shards)| { Notification::FailingOver { seq, time, shards } }),
        (any::<u64>(), shards()).prop_map(|(seq, shards)| Notification::FailedOver { seq, shards }),
        (any::<u64>(), slot_ranges())
            .prop_map(|(seq, slots)| Notification::SMigrating { seq, slots }),
        (
            any::<u64>(),
            proptest::collection::vec(
                (endpoint(), endpoint(), slot_ranges()).prop_map(|(source, destination, slots)| {
                    SlotMove {
                        source,
                        destination,
                        slots,
                    }
                }),
                0..4
            )
        )
            .prop_map(|(seq, moves)| Notification::SMigrated { seq, moves }),
    ]
}

fn system_time() -> impl Strategy<Value = SystemTime> {
    // From 1970 to the end of year 9999.
    (0u64..253_402_300_800, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n))
}

fn azure_kind() -> impl Strategy<Value = AzureEventKind> {
    prop_oneof![
        proptest::sample::select(AzureEventKind::KNOWN.to_vec()),
        "Custom[A-Za-z0-9]{0,12}".prop_map(AzureEventKind::Unknown),
    ]
}

fn azure_event() -> impl Strategy<Value = AzureEvent> {
    (
        azure_kind(),
        proptest::option::of(system_time()),
        system_time(),
        any::<bool>(),
        proptest::option::of(any::<IpAddr>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(kind, start, received, is_replica, ip, ssl, plain)| {
            let mut e = AzureEvent::new(kind, received);
            e.start_time = start;
            e.is_replica = is_replica;
            e.ip_address = ip;
            e.ssl_port = ssl;
            e.non_ssl_port = plain;
            e
        })
}

/// Messages built from the real keys with values that are sometimes right and often not.
fn azure_like_message() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "NotificationType",
        "StartTimeInUTC",
        "IsReplica",
        "IPAddress",
        "SSLPort",
        "NonSSLPort",
        "notificationtype",
        "Other",
        "",
    ]);
    let value = prop_oneof![
        "[ -{}~]{0,24}",
        "NodeMaintenance(Starting|Start|Ended|Scheduled|Failover|FailoverComplete|ScaleComplete)",
        "(True|False|true|FALSE|yes)",
        "[0-9]{1,6}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?Z?",
        any::<IpAddr>().prop_map(|ip| ip.to_string()),
    ];
    proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}|{v}"))
            .collect::<Vec<_>>()
            .join("|")
    })
}

fn origin() -> PushOrigin {
    PushOrigin::new(Endpoint::new("127.0.0.1", 6379))
}

// ===== properties =====

proptest! {
    #[test]
    fn the_push_parser_never_panics_and_its_output_is_stable(push in prop_oneof![frame(), maintenance_shaped_push()]) {
        if let Ok(Some(n)) = Notification::from_push(&push) {
            // What it understood, written back, means the same thing.
            prop_assert_eq!(Notification::from_push(&n.to_push()), Ok(Some(n.clone())));
            let _ = n.to_string();
        }
    }

    #[test]
    fn generated_notifications_round_trip(n in notification()) {
        prop_assert_eq!(Notification::from_push(&n.to_push()), Ok(Some(n.clone())));
    }

    #[test]
    fn any_bytes_decoded_and_parsed_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&raw[..]);
        if let Ok(Some((frame, _, _))) = redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf) {
            let _ = Notification::from_push(&frame);
        }
    }

    #[test]
    fn processing_any_push_never_panics(push in prop_oneof![frame(), maintenance_shaped_push(), frame().prop_map(azure_push), azure_like_message().prop_map(|m| azure_push(blob(m.into_bytes())))]) {
        let maintenance = Maintenance::default();
        let _ = maintenance.process_push(&origin(), &push);
        let _ = maintenance.process_push(&origin(), &push);
        let _ = maintenance.status(&origin().endpoint).relaxed_until();
    }

    #[test]
    fn the_azure_parser_never_panics_and_its_output_is_stable(message in prop_oneof![any::<String>(), azure_like_message()], received in system_time()) {
        if let Ok(event) = AzureEvent::parse(&message, received) {
            prop_assert_eq!(AzureEvent::parse(&event.to_message(), received), Ok(event.clone()));
            let _ = event.endpoint(true);
            let _ = event.is_late();
        }
    }

    #[test]
    fn a_reply_shows_a_bounded_start_of_any_frame(frame in prop_oneof![frame(), maintenance_shaped_push(), frame().prop_map(azure_push)]) {
        // At most 256 bytes of the frame, each escaped in at most four characters.
        let shown = format!("{:?}", Reply::from(frame));
        prop_assert!(shown.len() <= 4 * 256 + 32, "{} characters: {}", shown.len(), shown);
    }

    #[test]
    fn generated_azure_events_round_trip(event in azure_event()) {
        prop_assert_eq!(AzureEvent::parse(&event.to_message(), event.received_at), Ok(event.clone()));
    }
}
