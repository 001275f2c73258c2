//! The RESP3 frame types, re-exported from redis-protocol (fred's `Resp3Frame` is `BytesFrame`),
//! and the few helpers on them that the crate shares.

use bytes::Bytes;
pub use redis_protocol::resp3::types::{BytesFrame, FrameKind};

/// How much of a frame is shown in logs and events.
const PREVIEW_BYTES: usize = 256;

/// The bytes of a string frame (simple, bulk or verbatim).
pub(crate) fn text(frame: &BytesFrame) -> Option<&Bytes> {
    match frame {
        BytesFrame::BlobString { data, .. }
        | BytesFrame::SimpleString { data, .. }
        | BytesFrame::VerbatimString { data, .. } => Some(data),
        _ => None,
    }
}

/// A push frame's kind and its first argument (`message` and its channel, `subscribe` and its
/// name, ...), when it has both as strings.
pub(crate) fn push_head(frame: &BytesFrame) -> Option<(&Bytes, &Bytes)> {
    let BytesFrame::Push { data, .. } = frame else {
        return None;
    };
    Some((data.first().and_then(text)?, data.get(1).and_then(text)?))
}

/// The start of a frame's bytes in RESP, escaped for a log line.
pub(crate) fn preview(frame: &BytesFrame) -> String {
    let mut out = Vec::with_capacity(PREVIEW_BYTES);
    write_preview(frame, &mut out);
    let mut shown = out.escape_ascii().to_string();
    if out.len() >= PREVIEW_BYTES {
        shown.push_str("...");
    }
    shown
}

fn write_preview(frame: &BytesFrame, out: &mut Vec<u8>) {
    let room = |out: &Vec<u8>| PREVIEW_BYTES.saturating_sub(out.len());
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        let n = bytes.len().min(room(out));
        out.extend_from_slice(&bytes[..n]);
    };
    if room(out) == 0 {
        return;
    }
    match frame {
        BytesFrame::BlobString { data, .. } | BytesFrame::VerbatimString { data, .. } => {
            put(out, format!("${}\r\n", data.len()).as_bytes());
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::SimpleString { data, .. } => {
            put(out, b"+");
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::BlobError { data, .. } => {
            put(out, format!("!{}\r\n", data.len()).as_bytes());
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::SimpleError { data, .. } => {
            put(out, b"-");
            put(out, data.as_bytes());
            put(out, b"\r\n");
        }
        BytesFrame::BigNumber { data, .. } => {
            put(out, b"(");
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::Number { data, .. } => put(out, format!(":{data}\r\n").as_bytes()),
        BytesFrame::Double { data, .. } => put(out, format!(",{data}\r\n").as_bytes()),
        BytesFrame::Boolean { data, .. } => put(out, if *data { b"#t\r\n" } else { b"#f\r\n" }),
        BytesFrame::Null => put(out, b"_\r\n"),
        BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => {
            let tag = if matches!(frame, BytesFrame::Push { .. }) {
                '>'
            } else {
                '*'
            };
            put(out, format!("{tag}{}\r\n", data.len()).as_bytes());
            for f in data {
                if room(out) == 0 {
                    break;
                }
                write_preview(f, out);
            }
        }
        BytesFrame::Set { data, .. } => {
            put(out, format!("~{}\r\n", data.len()).as_bytes());
            for f in data {
                if room(out) == 0 {
                    break;
                }
                write_preview(f, out);
            }
        }
        BytesFrame::Map { data, .. } => {
            put(out, format!("%{}\r\n", data.len()).as_bytes());
            for (k, v) in data {
                if room(out) == 0 {
                    break;
                }
                write_preview(k, out);
                write_preview(v, out);
            }
        }
        // Never read from a server (the scanner refuses streamed strings); shown without
        // formatting their contents whole.
        BytesFrame::ChunkedString(data) => {
            put(out, format!(";{}\r\n", data.len()).as_bytes());
            put(out, data);
            put(out, b"\r\n");
        }
        BytesFrame::Hello { .. } => put(out, b"HELLO\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_bounded() {
        let big = BytesFrame::BlobString {
            data: Bytes::from(vec![b'x'; 10_000]),
            attributes: None,
        };
        let shown = preview(&big);
        assert!(
            shown.len() < PREVIEW_BYTES + 16 && shown.ends_with("..."),
            "{shown}"
        );
        for frame in [
            BytesFrame::SimpleError {
                data: "e".repeat(10_000).into(),
                attributes: None,
            },
            BytesFrame::ChunkedString(Bytes::from(vec![b'c'; 10_000])),
            BytesFrame::Array {
                data: vec![big.clone(); 1000],
                attributes: None,
            },
        ] {
            let shown = preview(&frame);
            assert!(shown.len() < PREVIEW_BYTES + 16, "{shown}");
        }
    }
}
