//! Unit tests of `command`.

use super::*;

#[test]
fn tables_are_sorted_for_binary_search() {
    assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
    assert!(RESENDABLE_WRITES.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn encodes_as_resp_array_of_bulk_strings() {
    let mut out = BytesMut::new();
    cmd!("SET", "k", "").encode(&mut out);
    assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    let mut out = BytesMut::new();
    Command::new("PING").arg(1234567890u64).encode(&mut out);
    assert_eq!(&out[..], b"*2\r\n$4\r\nPING\r\n$10\r\n1234567890\r\n");
}

#[test]
fn keeps_arguments_inline_then_on_the_heap() {
    let small = cmd!("INCR", "bench:incr:100:57");
    assert!(matches!(small.body, Body::Inline { .. }));
    let big = [b'x'; 3 * INLINE];
    for (i, c) in [
        cmd!("SET", "k", &big[..]),
        cmd!("SET", &big[..], "v"),
        Command::new(&big[..]),
    ]
    .iter()
    .enumerate()
    {
        assert!(matches!(c.body, Body::Heap(_)), "case {i}");
    }
    // Growing argument by argument across the inline limit keeps every argument whole.
    let mut grown = Command::new("RPUSH");
    let mut expected: Vec<Vec<u8>> = vec![b"RPUSH".to_vec()];
    for i in 0..40u32 {
        let a = format!("item-{i}-{}", "y".repeat(i as usize % 7));
        grown.push_arg(&a);
        expected.push(a.into_bytes());
    }
    assert_eq!(grown.args().len(), 41);
    assert!(grown.args().eq(expected.iter().map(|a| &a[..])));
    assert_eq!(grown.arg_at(40), Some(&expected[40][..]));
    assert_eq!(grown.arg_at(41), None);
    let mut out = BytesMut::new();
    grown.encode(&mut out);
    assert!(out.starts_with(b"*41\r\n$5\r\nRPUSH\r\n$7\r\nitem-0-\r\n"));
    // Equality looks at arguments, not at where they are kept.
    assert_eq!(grown.clone(), grown);
    assert_ne!(cmd!("GET", "a"), cmd!("GET", "b"));
    assert_ne!(cmd!("GET", "ab"), cmd!("GET", "a", "b"));
}

proptest::proptest! {
    #[test]
    fn arguments_survive_building_and_encoding(
        args in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..90),
            1..12,
        ),
        number in proptest::prelude::any::<i64>(),
    ) {
        let mut c = Command::new(&args[0][..]);
        for a in &args[1..] {
            c.push_arg(&a[..]);
        }
        c.push_arg(number);
        let number_text = number.to_string().into_bytes();
        let expected: Vec<&[u8]> =
            args.iter().map(|a| &a[..]).chain([&number_text[..]]).collect();
        proptest::prop_assert!(c.args().eq(expected.iter().copied()));
        proptest::prop_assert_eq!(c.args().len(), expected.len());
        // Where the name is was kept as it was written, inline or on the heap.
        proptest::prop_assert_eq!(c.name_bytes(), &args[0][..]);
        let mut out = BytesMut::new();
        c.encode(&mut out);
        let len = out.len();
        let decoded = redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut out);
        let Ok(Some((frame, used, _))) = decoded else {
            return Err(proptest::test_runner::TestCaseError::fail("not one RESP frame"));
        };
        proptest::prop_assert_eq!(used, len);
        let want = redis_protocol::resp3::types::BytesFrame::Array {
            data: expected
                .iter()
                .map(|a| redis_protocol::resp3::types::BytesFrame::BlobString {
                    data: Bytes::copy_from_slice(a),
                    attributes: None,
                })
                .collect(),
            attributes: None,
        };
        proptest::prop_assert_eq!(frame, want);
    }
}

#[test]
fn formats_numbers_and_binary_arguments() {
    let c = cmd!(
        "X",
        -42i64,
        u128::MAX,
        1.5f64,
        Bytes::from_static(b"\r\n\0"),
        "",
        i64::MIN,
        0u8,
        u64::MAX,
        i8::MIN
    );
    let args: Vec<&[u8]> = c.args().collect();
    assert_eq!(
        args,
        [
            &b"X"[..],
            b"-42",
            u128::MAX.to_string().as_bytes(),
            b"1.5",
            b"\r\n\0",
            b"",
            b"-9223372036854775808",
            b"0",
            b"18446744073709551615",
            b"-128",
        ]
    );
    assert_eq!(Command::new("").name(), "");
    assert_eq!(Command::new(&b"\xff"[..]).name(), "");
    assert_eq!(Command::new(&b"\xff"[..]).name_bytes(), b"\xff");
}

#[test]
fn classifies_reads_and_writes() {
    assert!(cmd!("get", "k").is_read_only());
    assert!(cmd!("CONFIG", "GET", "maxmemory").is_read_only());
    assert!(!cmd!("CONFIG", "SET", "maxmemory", "1").is_read_only());
    assert!(cmd!("SET", "k", "v", "EX", 10).is_idempotent());
    assert!(!cmd!("SET", "lock", "me", "NX", "PX", 3000).is_idempotent());
    assert!(!cmd!("SET", "k", "v", "GET").is_idempotent());
    assert!(!cmd!("INCR", "k").is_idempotent());
    assert!(!cmd!("LPUSH", "k", "v").is_idempotent());
    assert!(!cmd!("PUBLISH", "c", "m").is_idempotent());
    assert!(!cmd!("EVAL", "return 1", 0).is_idempotent());
    assert!(!cmd!("ZADD", "z", "INCR", 1, "m").is_idempotent());
    assert!(cmd!("EXPIRE", "k", 10).is_idempotent());
    assert!(!cmd!("EXPIRE", "k", 10, "NX").is_idempotent());
    assert!(!cmd!("PEXPIREAT", "k", 10, "gt").is_idempotent());
    // A second run answers differently, or wipes what others wrote in between.
    for name in [
        "DEL", "UNLINK", "SADD", "SREM", "HSET", "HDEL", "ZADD", "ZREM", "PFADD", "PERSIST",
        "SETBIT", "TOUCH", "FLUSHALL", "FLUSHDB", "SELECT",
    ] {
        assert!(
            !Command::new(name).arg("k").arg(1).arg("m").is_idempotent(),
            "{name} must not be sent again after a lost reply"
        );
    }
    assert!(!Command::new(&b"\xff\xfe"[..]).is_idempotent());
}

#[test]
fn finds_block_times() {
    assert_eq!(cmd!("BLPOP", "a", "b", 0).blocking(), Some(Block::Forever));
    assert_eq!(
        cmd!("BLPOP", "a", "2.5").blocking(),
        Some(Block::For(Duration::from_millis(2500)))
    );
    assert_eq!(
        cmd!("BLMPOP", 3, 2, "a", "b", "LEFT").blocking(),
        Some(Block::For(Duration::from_secs(3)))
    );
    assert_eq!(
        cmd!("XREAD", "COUNT", 1, "BLOCK", 1500, "STREAMS", "s", "$").blocking(),
        Some(Block::For(Duration::from_millis(1500)))
    );
    assert_eq!(cmd!("XREAD", "STREAMS", "s", "0").blocking(), None);
    assert_eq!(cmd!("WAIT", 1, 0).blocking(), Some(Block::Forever));
    assert_eq!(
        cmd!("WAITAOF", 1, 0, 100).blocking(),
        Some(Block::For(Duration::from_millis(100)))
    );
    assert_eq!(cmd!("GET", "k").blocking(), None);
    assert_eq!(cmd!("BLPOP").blocking(), None);
}

#[test]
fn recognises_subscriptions() {
    let s = cmd!("subscribe", "a", "b").subscription().unwrap();
    assert_eq!((s.kind, s.channels), (SubscriptionKind::Subscribe, 2));
    assert_eq!(s.kind.push_name(), "subscribe");
    let u = cmd!("PUNSUBSCRIBE").subscription().unwrap();
    assert_eq!((u.kind, u.channels), (SubscriptionKind::PUnsubscribe, 0));
    assert!(cmd!("SET", "k", "v").subscription().is_none());
    assert!(cmd!("PUBLISH", "c", "m").subscription().is_none());
}

#[test]
fn debug_redacts_secrets() {
    let hello = cmd!("HELLO", 3, "AUTH", "default", "hunter2");
    let shown = format!("{hello:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let auth = format!("{:?}", cmd!("auth", "hunter2"));
    assert!(!auth.contains("hunter2"), "{auth}");
    assert_eq!(format!("{:?}", cmd!("GET", "k")), r#"Command("GET", "k")"#);
}

#[test]
fn connection_state_commands_are_recognised_and_others_are_not() {
    use super::StateCommand as S;
    let cases: &[(Command, Option<S>)] = &[
        (cmd!("MULTI"), Some(S::Transaction)),
        (cmd!("exec"), Some(S::Transaction)),
        (cmd!("Discard"), Some(S::Transaction)),
        (cmd!("WATCH", "k"), Some(S::Watch)),
        (cmd!("UNWATCH"), Some(S::Watch)),
        (cmd!("SELECT", 3), Some(S::Select)),
        (cmd!("AUTH", "pw"), Some(S::Auth)),
        (cmd!("READONLY"), Some(S::ReadOnly)),
        (cmd!("READWRITE"), Some(S::ReadOnly)),
        (cmd!("ASKING"), Some(S::Asking)),
        (cmd!("HELLO", 2), Some(S::Protocol)),
        (cmd!("RESET"), Some(S::Protocol)),
        (cmd!("MONITOR"), Some(S::Replies)),
        (cmd!("QUIT"), Some(S::Replies)),
        (cmd!("SYNC"), Some(S::Replies)),
        (cmd!("PSYNC", "?", -1), Some(S::Replies)),
        (cmd!("CLIENT", "REPLY", "OFF"), Some(S::Replies)),
        (cmd!("REPLCONF", "ACK", 0), Some(S::Replies)),
        (cmd!("SCRIPT", "DEBUG", "YES"), Some(S::Replies)),
        (cmd!("SCRIPT", "LOAD", "return 1"), None),
        (cmd!("client", "setname", "x"), Some(S::ClientName)),
        (
            cmd!("CLIENT", "SETINFO", "LIB-NAME", "x"),
            Some(S::ClientName),
        ),
        (cmd!("CLIENT", "TRACKING", "ON"), Some(S::Tracking)),
        (cmd!("CLIENT", "CACHING", "YES"), Some(S::Tracking)),
        (cmd!("CLIENT", "NO-EVICT", "ON"), Some(S::ClientFlag)),
        (
            cmd!("CLIENT", "MAINT_NOTIFICATIONS", "ON"),
            Some(S::Maintenance),
        ),
        (cmd!("CLIENT", "ID"), None),
        (cmd!("CLIENT", "LIST"), None),
        (cmd!("GET", "k"), None),
        (cmd!("SET", "k", "v"), None),
        (cmd!("EXISTS", "k"), None),
        (cmd!("SUBSCRIBE", "c"), None),
        (cmd!("SETEX", "k", 1, "v"), None),
        (cmd!("HSET", "k", "f", "v"), None),
        (cmd!("MSET", "k", "v"), None),
        (cmd!("RENAME", "a", "b"), None),
        (cmd!("PUBLISH", "c", "m"), None),
    ];
    for (command, expected) in cases {
        assert_eq!(command.state_change(), *expected, "{command:?}");
    }
    assert!(S::Transaction.allowed_on_dedicated());
    assert!(!S::Replies.allowed_on_dedicated());
    assert!(!S::Protocol.allowed_on_dedicated());
}

#[test]
fn bulk_headers_are_written_for_every_length() {
    for n in [
        0,
        1,
        9,
        10,
        11,
        99,
        100,
        12_345,
        u32::MAX as usize,
        usize::MAX,
    ] {
        let mut buf = [0u8; 24];
        assert_eq!(
            super::bulk_header(&mut buf, n),
            format!("${n}\r\n").as_bytes(),
            "{n}"
        );
    }
}
