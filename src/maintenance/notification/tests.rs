//! Unit tests of `notification`.

use super::*;
use bytes::BytesMut;

/// Decodes raw RESP3 bytes, as they arrive from the network.
fn decode(raw: &[u8]) -> BytesFrame {
    let mut buf = BytesMut::from(raw);
    match redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf) {
        Ok(Some((frame, _, _))) => frame,
        other => panic!("cannot decode {raw:?}: {other:?}"),
    }
}

fn parse_raw(raw: &[u8]) -> Result<Option<Notification>, ParseNotificationError> {
    Notification::from_push(&decode(raw))
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

#[test]
fn parses_the_documented_examples() {
    assert_eq!(
        parse_raw(b">4\r\n$6\r\nMOVING\r\n:17\r\n:15\r\n$14\r\n10.0.0.2:12000\r\n"),
        Ok(Some(Notification::Moving {
            seq: 17,
            time: Duration::from_secs(15),
            endpoint: Some(ep("10.0.0.2:12000")),
        }))
    );
    assert_eq!(
        parse_raw(b">4\r\n$6\r\nMOVING\r\n:18\r\n:15\r\n_\r\n"),
        Ok(Some(Notification::Moving {
            seq: 18,
            time: Duration::from_secs(15),
            endpoint: None,
        }))
    );
    assert_eq!(
        parse_raw(b">4\r\n$9\r\nMIGRATING\r\n:19\r\n:10\r\n*1\r\n$1\r\n1\r\n"),
        Ok(Some(Notification::Migrating {
            seq: 19,
            time: Duration::from_secs(10),
            shards: vec!["1".into()],
        }))
    );
    assert_eq!(
        parse_raw(b">3\r\n$8\r\nMIGRATED\r\n:19\r\n*1\r\n$1\r\n1\r\n"),
        Ok(Some(Notification::Migrated {
            seq: 19,
            shards: vec!["1".into()],
        }))
    );
    assert_eq!(
        parse_raw(b">3\r\n+FAILING_OVER\r\n:20\r\n:10\r\n"),
        Ok(Some(Notification::FailingOver {
            seq: 20,
            time: Duration::from_secs(10),
            shards: vec![],
        }))
    );
}

#[test]
fn accepts_the_shapes_seen_in_the_wild() {
    // Simple-string endpoint, numbers as strings, trailing extras.
    assert_eq!(
        parse_raw(b">5\r\n+MOVING\r\n$2\r\n21\r\n+15\r\n+host.example:7000\r\n:99\r\n"),
        Ok(Some(Notification::Moving {
            seq: 21,
            time: Duration::from_secs(15),
            endpoint: Some(ep("host.example:7000")),
        }))
    );
    // Shard ids as one string listing several.
    assert_eq!(
        parse_raw(b">3\r\n$11\r\nFAILED_OVER\r\n:22\r\n$5\r\n1, 2 \r\n"),
        Ok(Some(Notification::FailedOver {
            seq: 22,
            shards: vec!["1".into(), "2".into()],
        }))
    );
    // Shard ids as integers in an array; lower-case name.
    assert_eq!(
        parse_raw(b">4\r\n$9\r\nmigrating\r\n:23\r\n:5\r\n*2\r\n:3\r\n:4\r\n"),
        Ok(Some(Notification::Migrating {
            seq: 23,
            time: Duration::from_secs(5),
            shards: vec!["3".into(), "4".into()],
        }))
    );
    // Missing optional shard ids.
    assert_eq!(
        parse_raw(b">2\r\n$8\r\nMIGRATED\r\n:24\r\n"),
        Ok(Some(Notification::Migrated {
            seq: 24,
            shards: vec![]
        }))
    );
}

#[test]
fn endpoints_mean_exactly_what_they_say() {
    let moving = |e: &str| {
        Notification::from_elements(&[blob("MOVING"), number(1), number(2), blob(e)])
            .unwrap()
            .unwrap()
    };
    let target = |n: Notification| match n {
        Notification::Moving { endpoint, .. } => endpoint,
        _ => unreachable!(),
    };
    assert_eq!(
        target(moving("cache.internal")),
        Some(ep("cache.internal:6379"))
    );
    assert_eq!(
        target(moving("[2001:db8::1]:7000")),
        Some(ep("[2001:db8::1]:7000"))
    );
    let v6 = target(moving("2001:db8::1:7000")).unwrap();
    assert_eq!((v6.host(), v6.port()), ("2001:db8::1", 7000));
    assert_eq!(target(moving("")), None);
}

#[test]
fn cluster_notifications_carry_slots_and_moves() {
    assert_eq!(
        Notification::from_elements(&[blob("SMIGRATING"), number(5), blob("1,100-200")]),
        Ok(Some(Notification::SMigrating {
            seq: 5,
            slots: vec![
                SlotRange::new(1, 1).unwrap(),
                SlotRange::new(100, 200).unwrap()
            ],
        }))
    );
    let moves = array(vec![array(vec![
        blob("10.0.0.1:7000"),
        blob("10.0.0.2:7000"),
        blob("0-99"),
    ])]);
    let expected = Notification::SMigrated {
        seq: 6,
        moves: vec![SlotMove {
            source: ep("10.0.0.1:7000"),
            destination: ep("10.0.0.2:7000"),
            slots: vec![SlotRange::new(0, 99).unwrap()],
        }],
    };
    assert_eq!(
        Notification::from_elements(&[blob("SMIGRATED"), number(6), moves]),
        Ok(Some(expected.clone()))
    );
    // One move given flat.
    let flat = array(vec![
        blob("10.0.0.1:7000"),
        blob("10.0.0.2:7000"),
        blob("0-99"),
    ]);
    assert_eq!(
        Notification::from_elements(&[blob("SMIGRATED"), number(6), flat]),
        Ok(Some(expected))
    );
}

#[test]
fn malformed_notifications_say_what_is_wrong() {
    let cases: Vec<(Vec<BytesFrame>, &str)> = vec![
        (vec![blob("MOVING")], "sequence number is missing"),
        (vec![blob("MOVING"), number(1)], "time is missing"),
        (
            vec![
                blob("MOVING"),
                BytesFrame::Number {
                    data: -1,
                    attributes: None,
                },
                number(1),
            ],
            "non-negative",
        ),
        (
            vec![blob("MOVING"), number(1), number(1), blob("host:port")],
            "endpoint",
        ),
        (
            // A lone value after the seq is the shard ids (Redis Software may leave `time`
            // out); with both, the time must be a number.
            vec![
                blob("MIGRATING"),
                number(1),
                blob("soon"),
                BytesFrame::Array {
                    data: vec![blob("1")],
                    attributes: None,
                },
            ],
            "time must be",
        ),
        (vec![blob("SMIGRATING"), number(1)], "slots are missing"),
        (
            vec![blob("SMIGRATING"), number(1), blob("9-3")],
            "ends before",
        ),
        (
            vec![blob("SMIGRATED"), number(1), blob("x")],
            "must be an array",
        ),
        (
            vec![
                blob("MIGRATED"),
                number(1),
                BytesFrame::Boolean {
                    data: true,
                    attributes: None,
                },
            ],
            "shard ids",
        ),
    ];
    for (elements, says) in cases {
        let err = Notification::from_elements(&elements).unwrap_err();
        assert!(err.to_string().contains(says), "{elements:?}: {err}");
    }
}

#[test]
fn redis_software_shapes_of_a_start_notification_are_taken() {
    let shards =
        |f: BytesFrame| match Notification::from_elements(&[blob("MIGRATING"), number(4), f]) {
            Ok(Some(Notification::Migrating { time, shards, .. })) => (time, shards),
            other => panic!("{other:?}"),
        };
    // No time, shard ids as one simple string `+[1]` or a list.
    assert_eq!(
        shards(BytesFrame::SimpleString {
            data: "[1]".into(),
            attributes: None
        }),
        (Duration::ZERO, vec!["1".to_string()])
    );
    assert_eq!(
        shards(blob("[1,2]")),
        (Duration::ZERO, vec!["1".to_string(), "2".to_string()])
    );
    // A time and no shard ids.
    assert_eq!(shards(number(15)), (Duration::from_secs(15), Vec::new()));
}

#[test]
fn other_pushes_are_not_ours() {
    for raw in [
        &b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"[..],
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        b">1\r\n$7\r\nUNKNOWN\r\n",
        b">1\r\n:1\r\n",
        b"+OK\r\n",
    ] {
        assert_eq!(parse_raw(raw), Ok(None), "{raw:?}");
    }
    assert_eq!(Notification::from_elements(&[]), Ok(None));
}

#[test]
fn to_push_round_trips() {
    let all = [
        Notification::Moving {
            seq: 1,
            time: Duration::from_secs(15),
            endpoint: Some(ep("[::1]:7000")),
        },
        Notification::Moving {
            seq: u64::MAX,
            time: Duration::from_secs(0),
            endpoint: None,
        },
        Notification::FailingOver {
            seq: 3,
            time: Duration::from_secs(10),
            shards: vec![],
        },
        Notification::SMigrating {
            seq: 4,
            slots: vec![SlotRange::new(0, 16383).unwrap()],
        },
    ];
    for n in all {
        assert_eq!(Notification::from_push(&n.to_push()), Ok(Some(n.clone())));
    }
}

#[test]
fn slot_ranges_parse_as_servers_write_them() {
    let slots = parse_slots("1, 5-10").unwrap();
    assert_eq!(
        slots,
        vec![
            SlotRange::new(1, 1).unwrap(),
            SlotRange::new(5, 10).unwrap()
        ]
    );
    assert!(parse_slots("10-5").is_err());
    assert!(parse_slots("16384").is_err());
}

#[test]
fn a_malformed_slot_is_quoted_in_part() {
    let long = "9".repeat(100_000);
    for slots in [long, format!("5{}-3", " ".repeat(100_000))] {
        let err = parse_slots(&slots).unwrap_err();
        assert!(err.len() < 200, "{} bytes: {err}", err.len());
    }
}
