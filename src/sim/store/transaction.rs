//! Transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
//!
//! After `MULTI` a session queues its commands (`+QUEUED`) and `EXEC` runs them one after the
//! other with the store locked, so no other session's command comes in between. A command
//! refused while queueing (unknown, wrong number of arguments) dooms the transaction: `EXEC`
//! answers `EXECABORT`. A key watched with `WATCH` that anyone changes before `EXEC`, the session
//! itself included, or that expires meanwhile, makes `EXEC` answer with a null array. Blocking
//! commands inside a transaction answer at once, with their timeout reply when there is nothing
//! to take.

use std::time::Instant;

use bytes::Bytes;

use super::{keys, one, Family, Reply, Run, Session, Step, StoreInner};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("multi", 1),
        ("exec", 1),
        ("discard", 1),
        ("watch", -2),
        ("unwatch", 1),
    ],
    run: Run::Session(run),
};

/// An open transaction: the commands queued since `MULTI`, and whether one was refused.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    queued: Vec<Queued>,
    refused: bool,
}

/// A command waiting for `EXEC`, already looked up and checked.
#[derive(Debug)]
struct Queued {
    run: Run,
    name: String,
    args: Vec<Bytes>,
}

/// A key a session watches, and its deadline when it was watched (to tell that it expired).
#[derive(Debug)]
pub(super) struct Watch {
    db: usize,
    key: Bytes,
    expires: Option<Instant>,
}

/// Whether a command runs at once inside `MULTI` instead of being queued.
pub(super) fn runs_at_once(name: &str) -> bool {
    matches!(
        name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

fn run(s: &mut Session, inner: &mut StoreInner, name: &str, a: &[Bytes]) -> Reply {
    match name {
        "multi" => {
            if s.multi.is_some() {
                return one(Value::err("ERR MULTI calls can not be nested"));
            }
            s.multi = Some(Box::default());
            one(Value::ok())
        }
        "exec" => one(s.exec(inner)),
        "discard" => match s.multi.take() {
            None => one(Value::err("ERR DISCARD without MULTI")),
            Some(_) => {
                s.unwatch(inner);
                one(Value::ok())
            }
        },
        "watch" => {
            if s.multi.is_some() {
                return one(Value::err("ERR WATCH inside MULTI is not allowed"));
            }
            s.watch(inner, a);
            one(Value::ok())
        }
        _ => {
            s.unwatch(inner);
            one(Value::ok())
        }
    }
}

// ===== impl Transaction =====

impl Transaction {
    pub(super) fn queue(&mut self, run: Run, name: String, args: &[Bytes]) {
        self.queued.push(Queued {
            run,
            name,
            args: args.to_vec(),
        });
    }
}

// ===== impl Session =====

impl Session {
    /// Marks the open transaction, if any, as doomed: a command was refused while queueing.
    pub(super) fn refuse(&mut self) {
        if let Some(multi) = &mut self.multi {
            multi.refused = true;
        }
    }

    /// Ends the transaction with `EXECABORT` for `reason`.
    pub(super) fn abort_exec(&mut self, inner: &mut StoreInner, reason: &str) -> Value {
        self.multi = None;
        self.unwatch(inner);
        Value::err(format!(
            "EXECABORT Transaction discarded because of: {reason}"
        ))
    }

    fn exec(&mut self, inner: &mut StoreInner) -> Value {
        let Some(multi) = self.multi.take() else {
            return Value::err("ERR EXEC without MULTI");
        };
        if multi.refused {
            self.unwatch(inner);
            return Value::err("EXECABORT Transaction discarded because of previous errors.");
        }
        let now = Instant::now();
        let expired = self
            .watching
            .iter()
            .any(|w| w.expires.is_some_and(|t| t <= now));
        let conflict = inner.dirty.contains(&self.id) || expired;
        self.unwatch(inner);
        if conflict {
            return Value::NullArray;
        }
        let mut replies = Vec::with_capacity(multi.queued.len());
        let mut extra = Vec::new();
        for q in &multi.queued {
            // Blocking commands do not block here, so every step is done at once.
            let Step::Done(mut got) = self.dispatch(inner, q.run, &q.name, &q.args, true) else {
                replies.push(Value::NullArray);
                continue;
            };
            if got.is_empty() {
                replies.push(Value::Null);
            } else {
                // A command with several replies (SUBSCRIBE to several channels) has its first
                // one in the array; Redis too counts one reply per command there.
                extra.extend(got.drain(1..));
                replies.extend(got);
            }
        }
        replies.extend(extra);
        Value::Array(replies)
    }

    fn watch(&mut self, inner: &mut StoreInner, keys: &[Bytes]) {
        let db = self.db;
        // Look the keys up first: dropping one that just expired counts as a change, which
        // must not count against this watch.
        let deadlines: Vec<Option<Instant>> = keys
            .iter()
            .map(|k| keys::live(inner.db(db), k).and_then(|e| e.expires))
            .collect();
        inner.settle();
        for (key, expires) in keys.iter().zip(deadlines) {
            if self.watching.iter().any(|w| w.db == db && w.key == key) {
                continue;
            }
            inner
                .watchers
                .entry((db, key.clone()))
                .or_default()
                .insert(self.id);
            self.watching.push(Watch {
                db,
                key: key.clone(),
                expires,
            });
        }
    }

    /// Forgets every watched key (`UNWATCH`, and after `EXEC` or `DISCARD`).
    pub(super) fn unwatch(&mut self, inner: &mut StoreInner) {
        for w in self.watching.drain(..) {
            let place = (w.db, w.key);
            if let Some(ids) = inner.watchers.get_mut(&place) {
                ids.remove(&self.id);
                if ids.is_empty() {
                    inner.watchers.remove(&place);
                }
            }
        }
        inner.dirty.remove(&self.id);
    }
}
