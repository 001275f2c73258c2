//! Replies: the response type of every service in the crate.
//!
//! A [`Reply`] is one RESP3 frame from the server, as redis-protocol's [`BytesFrame`] (the same
//! type fred calls `Resp3Frame`), so every byte string in it shares the connection's read buffer
//! instead of being copied. Error replies never become a `Reply`: the connection turns them into
//! [`Error::Server`].
//!
//! [`Reply::parse`] converts a reply to the common Rust types, with no feature needed:
//! strings, bytes, integers of every width (range-checked), floats, booleans, `Option<T>`,
//! `Vec<T>`, maps, sets and tuples ([`FromReply`]; the [`convert`] module says what each type
//! accepts). A mismatch is an [`Error::Conversion`] that names the type expected and shows the
//! start of what came. `Stack::query` and `Pool::query` send a command and convert its reply in
//! one call.
//!
//! ```
//! use redis_handoff::Reply;
//! use redis_handoff::frame::BytesFrame;
//!
//! let reply = Reply::from(BytesFrame::Number { data: 42, attributes: None });
//! assert_eq!(reply.as_i64(), Some(42));
//! let n: u32 = reply.clone().parse()?;
//! assert_eq!(n, 42);
//! assert!(reply.parse::<Vec<String>>().is_err());
//! # Ok::<(), redis_handoff::Error>(())
//! ```
//!
//! With the `fred` feature, `Reply::convert` converts through fred's `FromValue` as well.

use std::fmt;

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;

#[cfg(feature = "fred")]
use crate::error::ConversionError;
use crate::error::Error;

pub mod convert;
pub use convert::FromReply;

/// One reply from the server.
#[derive(Clone, PartialEq)]
pub struct Reply {
    frame: BytesFrame,
}

impl Reply {
    /// The frame as decoded.
    pub fn frame(&self) -> &BytesFrame {
        &self.frame
    }

    /// The frame, by value.
    pub fn into_frame(self) -> BytesFrame {
        self.frame
    }

    /// Whether the reply is RESP3 null (a missing key, a timed-out blocking pop).
    pub fn is_null(&self) -> bool {
        matches!(self.frame, BytesFrame::Null)
    }

    /// Whether the reply is the simple string `OK`.
    pub fn is_ok(&self) -> bool {
        matches!(&self.frame, BytesFrame::SimpleString { data, .. } if &data[..] == b"OK")
    }

    /// The bytes of a string reply (simple, bulk or verbatim).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.frame {
            BytesFrame::BigNumber { data, .. } => Some(data),
            frame => crate::frame::text(frame),
        }
    }

    /// A string reply as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// An integer reply, or a string reply that holds an integer (`GET` of a counter).
    pub fn as_i64(&self) -> Option<i64> {
        match &self.frame {
            BytesFrame::Number { data, .. } => Some(*data),
            _ => self.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// The elements of an array or push reply. A RESP3 set (`SMEMBERS`) is unordered: read it
    /// from [`Reply::frame`] (`BytesFrame::Set`).
    pub fn as_array(&self) -> Option<&[BytesFrame]> {
        match &self.frame {
            BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Converts to fred's [`Value`](fred::types::Value).
    #[cfg(feature = "fred")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fred")))]
    pub fn into_value(self) -> Result<fred::types::Value, Error> {
        fred::types::Value::try_from(self.frame).map_err(|e| {
            Error::Conversion(ConversionError::from_library(
                "a fred Value",
                e.details().to_owned(),
            ))
        })
    }

    /// Converts to any type fred's [`FromValue`](fred::types::FromValue) supports. Without
    /// fred, [`Reply::parse`] does the same for the common types.
    #[cfg(feature = "fred")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fred")))]
    pub fn convert<T: fred::types::FromValue>(self) -> Result<T, Error> {
        self.into_value()?.convert().map_err(|e| {
            Error::Conversion(ConversionError::from_library(
                std::any::type_name::<T>(),
                e.details().to_owned(),
            ))
        })
    }
}

impl From<BytesFrame> for Reply {
    fn from(frame: BytesFrame) -> Self {
        Reply { frame }
    }
}

impl From<Reply> for BytesFrame {
    fn from(reply: Reply) -> Self {
        reply.frame
    }
}

/// Shows a string reply as a string and any other as the start of its RESP bytes, both cut
/// at a few hundred bytes: a reply may be as large as the server sends.
impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) if s.len() <= DEBUG_STRING => write!(f, "Reply({s:?})"),
            Some(s) => {
                let cut = (0..=DEBUG_STRING)
                    .rev()
                    .find(|&i| s.is_char_boundary(i))
                    .unwrap_or(0);
                write!(f, "Reply({:?}... ({} bytes))", &s[..cut], s.len())
            }
            None => write!(f, "Reply({})", crate::frame::preview(&self.frame)),
        }
    }
}

// How much of a string reply `Debug` shows.
const DEBUG_STRING: usize = 256;

/// Splits a decoded frame into a reply or the server's error.
pub(crate) fn from_frame(frame: BytesFrame) -> Result<Reply, Error> {
    match frame {
        BytesFrame::SimpleError { data, .. } => {
            Err(Error::Server(crate::error::ServerError::new(&*data)))
        }
        BytesFrame::BlobError { data, .. } => Err(Error::Server(crate::error::ServerError::new(
            String::from_utf8_lossy(&data).into_owned(),
        ))),
        frame => Ok(Reply { frame }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_a_bounded_start_of_a_large_reply() {
        let string = Reply::from(BytesFrame::BlobString {
            data: Bytes::from("é".repeat(100_000)),
            attributes: None,
        });
        let shown = format!("{string:?}");
        assert!(
            shown.len() < 400 && shown.ends_with("... (200000 bytes))"),
            "{shown}"
        );
        let array = Reply::from(BytesFrame::Array {
            data: vec![BytesFrame::Null; 1_000_000],
            attributes: None,
        });
        let shown = format!("{array:?}");
        // 256 bytes of RESP, escaped (at most four characters a byte).
        assert!(
            shown.len() < 4 * 256 + 32 && shown.starts_with("Reply(*1000000\\r\\n_"),
            "{shown}"
        );
        assert_eq!(
            format!(
                "{:?}",
                Reply::from(BytesFrame::SimpleString {
                    data: "OK".into(),
                    attributes: None
                })
            ),
            "Reply(\"OK\")"
        );
    }
}
