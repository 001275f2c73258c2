//! Pub/Sub: `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`, `PUBLISH`.
//!
//! Subscriptions are kept twice: in the session (so it can answer with its count and leave
//! cleanly when dropped) and in the store (so a publisher finds the subscribers). Messages reach
//! a subscriber through the same queue as its replies, as frames of their own.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::glob::glob_match;
use super::{one, wrong_args, Family, Reply, Run, Session, StoreInner};
use crate::sim::resp::Value;
use crate::sim::upstream::UpFrame;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("subscribe", -2),
        ("psubscribe", -2),
        ("unsubscribe", -1),
        ("punsubscribe", -1),
        ("publish", 3),
    ],
    run: Run::Session(run),
};

/// Where a subscribed session's messages go, and in which protocol.
#[derive(Debug, Clone)]
pub(super) struct Subscriber {
    out: mpsc::Sender<UpFrame>,
    resp3: bool,
}

fn run(s: &mut Session, inner: &mut StoreInner, name: &str, a: &[Bytes]) -> Reply {
    match name {
        "subscribe" | "psubscribe" => {
            if a.is_empty() {
                return one(wrong_args(name));
            }
            s.subscribe(inner, name == "psubscribe", a)
        }
        "unsubscribe" | "punsubscribe" => s.unsubscribe(inner, name == "punsubscribe", a),
        "publish" => match a {
            [channel, message] => one(Value::Int(inner.publish(channel, message))),
            _ => one(wrong_args("publish")),
        },
        _ => one(wrong_args(name)),
    }
}

// ===== impl StoreInner =====

impl StoreInner {
    /// Publishes a message; returns how many subscribers got it.
    fn publish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let mut n = 0;
        if let Some(subs) = self.channels.get(channel) {
            for sub in subs.values() {
                let msg = Value::Push(vec![
                    Value::bulk("message"),
                    Value::Bulk(channel.clone()),
                    Value::Bulk(message.clone()),
                ]);
                if deliver(sub, &msg) {
                    n += 1;
                }
            }
        }
        for (pattern, subs) in &self.patterns {
            if glob_match(pattern, channel) {
                for sub in subs.values() {
                    let msg = Value::Push(vec![
                        Value::bulk("pmessage"),
                        Value::Bulk(pattern.clone()),
                        Value::Bulk(channel.clone()),
                        Value::Bulk(message.clone()),
                    ]);
                    if deliver(sub, &msg) {
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

fn deliver(sub: &Subscriber, msg: &Value) -> bool {
    let frame = UpFrame {
        bytes: msg.encode(sub.resp3),
        due: Instant::now(),
    };
    match sub.out.try_send(frame) {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!("memory backend: a subscriber is not reading; message dropped");
            false
        }
    }
}

fn remove_sub(map: &mut HashMap<Bytes, HashMap<i64, Subscriber>>, key: &Bytes, id: i64) {
    if let Some(subs) = map.get_mut(key) {
        subs.remove(&id);
        if subs.is_empty() {
            map.remove(key);
        }
    }
}

// ===== impl Session =====

impl Session {
    /// Whether the session is subscribed to a channel or a pattern.
    pub(super) fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    fn subscribe(&mut self, inner: &mut StoreInner, pattern: bool, names: &[Bytes]) -> Reply {
        let sub = Subscriber {
            out: self.out.clone(),
            resp3: self.resp3,
        };
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            let (set, map) = if pattern {
                (&mut self.patterns, &mut inner.patterns)
            } else {
                (&mut self.channels, &mut inner.channels)
            };
            set.insert(name.clone());
            map.entry(name.clone())
                .or_default()
                .insert(self.id, sub.clone());
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(if pattern { "psubscribe" } else { "subscribe" }),
                Value::Bulk(name.clone()),
                Value::Int(count),
            ]));
        }
        replies
    }

    fn unsubscribe(&mut self, inner: &mut StoreInner, pattern: bool, names: &[Bytes]) -> Reply {
        let kind = if pattern {
            "punsubscribe"
        } else {
            "unsubscribe"
        };
        let names: Vec<Bytes> = if names.is_empty() {
            let set = if pattern {
                &self.patterns
            } else {
                &self.channels
            };
            set.iter().cloned().collect()
        } else {
            names.to_vec()
        };
        let mut replies = Vec::new();
        for name in &names {
            if pattern {
                self.patterns.remove(name);
                remove_sub(&mut inner.patterns, name, self.id);
            } else {
                self.channels.remove(name);
                remove_sub(&mut inner.channels, name, self.id);
            }
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(kind),
                Value::Bulk(name.clone()),
                Value::Int(count),
            ]));
        }
        if replies.is_empty() {
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Value::Push(vec![
                Value::bulk(kind),
                Value::Null,
                Value::Int(count),
            ]));
        }
        replies
    }

    /// Leaves every channel and pattern (`RESET`).
    pub(super) fn unsubscribe_all(&mut self, inner: &mut StoreInner) {
        for c in self.channels.drain() {
            remove_sub(&mut inner.channels, &c, self.id);
        }
        for p in self.patterns.drain() {
            remove_sub(&mut inner.patterns, &p, self.id);
        }
    }
}
