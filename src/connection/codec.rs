//! Reading RESP3 frames from bytes the network sent, within limits.
//!
//! redis-protocol builds the frames, but its decoder is recursive and reparses an incomplete
//! frame from the start on every read. So before it sees any bytes, [`FrameScanner`] walks the
//! frame iteratively: it checks the structure, enforces the maximum frame size and nesting depth
//! from the first byte (a `$4000000000` header is refused before any of its body arrives), and
//! remembers how many bytes a partial frame still needs so a large reply is not rescanned on
//! every read. Only a complete, bounded frame is handed to redis-protocol.

use bytes::{Buf, BytesMut};
use redis_protocol::resp3::types::BytesFrame;

use crate::error::Error;

/// Limits on what the server may send, enforced on every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted, in bytes, headers included. Default 512 MiB, Redis's own
    /// largest bulk string.
    pub max_frame_size: usize,
    /// The deepest nesting of arrays, maps, sets and pushes accepted. Default 64; at most 1024.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 512 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// What a scan found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A whole frame of this many bytes.
    Complete(usize),
    /// Not yet a whole frame; at least this many bytes in all are needed.
    Incomplete(usize),
}

/// Finds frame boundaries and enforces [`Limits`].
#[derive(Debug)]
pub(crate) struct FrameScanner {
    limits: Limits,
    // Elements still owed by each open aggregate; reused between frames.
    stack: Vec<u64>,
    // Bytes the buffer must hold before a rescan can make progress.
    need: usize,
    // Whether RESP2's `$-1` and `*-1` are accepted as nulls (the simulator's proxy, which carries
    // RESP2 clients too; a RESP3 connection never receives them).
    resp2_nulls: bool,
}

impl FrameScanner {
    pub(crate) fn new(limits: Limits) -> Self {
        FrameScanner {
            limits: Limits {
                max_depth: limits.max_depth.clamp(1, 1024),
                max_frame_size: limits.max_frame_size.max(64),
            },
            stack: Vec::new(),
            need: 0,
            resp2_nulls: false,
        }
    }

    /// Also accepts RESP2's null bulk string `$-1` and null array `*-1` (the simulator's proxy
    /// reads what RESP2 clients send; a connection of ours speaks RESP3 only).
    #[cfg(feature = "sim")]
    pub(crate) fn with_resp2_nulls(mut self) -> Self {
        self.resp2_nulls = true;
        self
    }

    /// Takes the next whole frame off the front of `buf`, if there is one.
    pub(crate) fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<BytesFrame>, Error> {
        if buf.is_empty() || buf.len() < self.need {
            return Ok(None);
        }
        match self.scan(buf)? {
            Scan::Incomplete(need) => {
                self.need = need;
                Ok(None)
            }
            Scan::Complete(len) => {
                self.need = 0;
                if let Some(frame) = take_scalar(buf, len) {
                    return Ok(Some(frame));
                }
                let mut frame_bytes = buf.split_to(len);
                match redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut frame_bytes) {
                    Ok(Some((frame, used, _))) if used == len => Ok(Some(frame)),
                    Ok(_) => Err(Error::protocol(format!(
                        "frame boundaries disagree while decoding {}",
                        preview(&frame_bytes)
                    ))),
                    Err(e) => Err(Error::protocol(format!(
                        "{} in {}",
                        e.details(),
                        preview(&frame_bytes)
                    ))),
                }
            }
        }
    }

    /// Walks one frame at the start of `buf` without building it.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Scan, Error> {
        let max = self.limits.max_frame_size;
        self.stack.clear();
        let mut pos = 0usize;
        loop {
            if pos > max {
                return Err(too_large(max));
            }
            let Some(&kind) = buf.get(pos) else {
                return Ok(Scan::Incomplete(pos + 1));
            };
            let Some(line_end) = find_crlf(buf, pos + 1, max) else {
                if buf.len() > max {
                    return Err(too_large(max));
                }
                return Ok(Scan::Incomplete(buf.len() + 1));
            };
            let line = &buf[pos + 1..line_end];
            pos = line_end + 2;
            // How many child elements this frame opens (0 for a scalar).
            let children: u64 = match kind {
                b'+' | b'-' => 0,
                b':' => {
                    parse_int(line).ok_or_else(|| bad("integer", line))?;
                    0
                }
                b'_' => {
                    if !line.is_empty() {
                        return Err(bad("null", line));
                    }
                    0
                }
                b'#' => {
                    if line != b"t" && line != b"f" {
                        return Err(bad("boolean", line));
                    }
                    0
                }
                b',' | b'(' => {
                    if line.is_empty() {
                        return Err(bad("number", line));
                    }
                    0
                }
                b'$' | b'!' | b'=' => {
                    let len = parse_int(line).ok_or_else(|| bad("length", line))?;
                    if len == -1 && kind == b'$' && self.resp2_nulls {
                        0
                    } else if len < 0 {
                        return Err(bad("length", line));
                    } else {
                        let len = len as usize;
                        if len > max {
                            return Err(too_large(max));
                        }
                        let end = pos + len + 2;
                        if end > max {
                            return Err(too_large(max));
                        }
                        if buf.len() < end {
                            return Ok(Scan::Incomplete(end));
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(Error::protocol(
                                "a bulk string is not followed by CRLF".to_string(),
                            ));
                        }
                        pos = end;
                        0
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(line).ok_or_else(|| bad("aggregate length", line))?;
                    if n == -1 && kind == b'*' && self.resp2_nulls {
                        0
                    } else if n < 0 {
                        return Err(bad("aggregate length", line));
                    } else {
                        let per = if kind == b'%' || kind == b'|' { 2 } else { 1 };
                        let n = (n as u64).saturating_mul(per);
                        // Each element takes at least three bytes: a frame that claims more
                        // elements than fit in the limit is refused now.
                        if n.saturating_mul(3) > max as u64 {
                            return Err(too_large(max));
                        }
                        if n > 0 || kind == b'|' {
                            if self.stack.len() >= self.limits.max_depth {
                                return Err(Error::protocol(format!(
                                    "frame nested deeper than the limit of {}",
                                    self.limits.max_depth
                                )));
                            }
                            // An attribute map is followed by the frame it describes, which
                            // stands in the attribute's place in its parent.
                            let owed = if kind == b'|' { n + 1 } else { n };
                            self.stack.push(owed);
                            continue;
                        }
                        0
                    }
                }
                other => {
                    return Err(Error::protocol(format!(
                        "unknown RESP3 type byte 0x{other:02x} at the start of {}",
                        preview(&buf[..buf.len().min(pos)])
                    )))
                }
            };
            debug_assert_eq!(children, 0);
            // A frame finished: pop every aggregate it completes.
            loop {
                match self.stack.last_mut() {
                    None => return Ok(Scan::Complete(pos)),
                    Some(owed) => {
                        *owed -= 1;
                        if *owed == 0 {
                            self.stack.pop();
                        } else {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Builds the commonest replies (integers, nulls, simple and bulk strings), which the scan has
/// already checked, without a second parse; `None` leaves the frame to redis-protocol.
fn take_scalar(buf: &mut BytesMut, len: usize) -> Option<BytesFrame> {
    let frame = buf.get(..len)?;
    let frame = match frame.first()? {
        b':' => BytesFrame::Number {
            data: parse_int(frame.get(1..len - 2)?)?,
            attributes: None,
        },
        b'_' => BytesFrame::Null,
        b'+' => {
            let mut line = buf.split_to(len);
            line.truncate(len - 2);
            line.advance(1);
            return Some(BytesFrame::SimpleString {
                data: line.freeze(),
                attributes: None,
            });
        }
        b'$' => {
            let header = find_crlf(frame, 1, len)?;
            let size = usize::try_from(parse_int(frame.get(1..header)?)?).ok()?;
            if header + 2 + size + 2 != len {
                return None;
            }
            let mut data = buf.split_to(len);
            data.truncate(len - 2);
            data.advance(header + 2);
            return Some(BytesFrame::BlobString {
                data: data.freeze(),
                attributes: None,
            });
        }
        _ => return None,
    };
    buf.advance(len);
    Some(frame)
}

pub(crate) fn find_crlf(buf: &[u8], from: usize, max: usize) -> Option<usize> {
    let end = buf.len().min(max.saturating_add(2));
    let hay = buf.get(from..end)?;
    let mut i = 0;
    while let Some(off) = hay[i..].iter().position(|&b| b == b'\r') {
        let at = i + off;
        if hay.get(at + 1) == Some(&b'\n') {
            return Some(from + at);
        }
        i = at + 1;
    }
    None
}

pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn too_large(max: usize) -> Error {
    Error::protocol(format!(
        "frame larger than the limit of {max} bytes (raise Limits::max_frame_size if this is expected)"
    ))
}

fn bad(what: &str, line: &[u8]) -> Error {
    Error::protocol(format!(
        "invalid {what} {:?}",
        String::from_utf8_lossy(&line[..line.len().min(64)])
    ))
}

/// The first bytes of a buffer, escaped, for error messages and logs.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(96)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > 96 {
        format!("\"{shown}...\" ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> FrameScanner {
        FrameScanner::new(Limits {
            max_frame_size: 1024,
            max_depth: 4,
        })
    }

    #[test]
    fn finds_whole_frames() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-12\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"$3\r\nabc\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"%1\r\n+k\r\n*1\r\n:1\r\n",
            b">4\r\n$6\r\nMOVING\r\n:17\r\n:15\r\n$14\r\n10.0.0.2:12000\r\n",
            b"|1\r\n+a\r\n+b\r\n:5\r\n",
            b"=7\r\ntxt:abc\r\n",
        ];
        for case in cases {
            let mut s = scanner();
            assert_eq!(
                s.scan(case).unwrap(),
                Scan::Complete(case.len()),
                "{}",
                preview(case)
            );
            for cut in 0..case.len() {
                assert!(
                    matches!(s.scan(&case[..cut]).unwrap(), Scan::Incomplete(n) if n > cut),
                    "prefix {cut} of {}",
                    preview(case)
                );
            }
            let mut buf = BytesMut::from(&case[..]);
            buf.extend_from_slice(b"+NEXT\r\n");
            assert!(s.next_frame(&mut buf).unwrap().is_some());
            assert_eq!(&buf[..], b"+NEXT\r\n");
        }
    }

    #[test]
    fn builds_scalars_as_redis_protocol_does() {
        let cases: &[&[u8]] = &[
            b":0\r\n",
            b":-9223372036854775808\r\n",
            b"_\r\n",
            b"+OK\r\n",
            b"+\r\n",
            b"$0\r\n\r\n",
            b"$5\r\na\r\nbc\r\n",
        ];
        for case in cases {
            let mut fast = BytesMut::from(&case[..]);
            fast.extend_from_slice(b"+NEXT\r\n");
            let mut s = scanner();
            let got = s.next_frame(&mut fast).unwrap().unwrap();
            let mut slow = BytesMut::from(&case[..]);
            let (want, _, _) = redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut slow)
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{}", preview(case));
            assert_eq!(&fast[..], b"+NEXT\r\n", "{}", preview(case));
        }
    }

    #[test]
    fn refuses_oversized_headers_before_the_body() {
        let mut s = scanner();
        let err = s.scan(b"$4000000000\r\n").unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
        let err = s.scan(b"*100000\r\n").unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
        let long_line = vec![b'+'; 2048];
        assert!(s.scan(&long_line).is_err());
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut s = scanner();
        let deep = b"*1\r\n".repeat(5);
        let err = s.scan(&deep).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let ok = [b"*1\r\n".repeat(4), b":1\r\n".to_vec()].concat();
        assert_eq!(s.scan(&ok).unwrap(), Scan::Complete(ok.len()));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b"hello\r\n"[..],
            b":abc\r\n",
            b"$3\r\nabcde\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b"$-5\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
        ] {
            assert!(scanner().scan(bad).is_err(), "{}", preview(bad));
        }
    }

    #[test]
    fn accepts_resp2_nulls_only_when_asked() {
        for null in [&b"$-1\r\n"[..], b"*-1\r\n", b"*2\r\n$-1\r\n:1\r\n"] {
            assert!(scanner().scan(null).is_err());
            assert_eq!(
                scanner().with_resp2_nulls().scan(null).unwrap(),
                Scan::Complete(null.len())
            );
        }
    }

    #[test]
    fn remembers_what_a_partial_frame_needs() {
        let mut s = scanner();
        let mut buf = BytesMut::from(&b"$500\r\nabc"[..]);
        assert!(s.next_frame(&mut buf).unwrap().is_none());
        assert_eq!(s.need, 500 + 6 + 2);
        buf.extend_from_slice(&[b'x'; 497]);
        buf.extend_from_slice(b"\r\n");
        assert!(s.next_frame(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
    }
}
