//! What a dedicated connection's owner set on it, so that a new connection gets it too, and
//! what cannot survive a change of connection.
//!
//! A dedicated stack (one owner, see `HandoffRetry::dedicated`) takes connection-state commands.
//! Some of what they set is carried over to the next connection after a handoff or reconnect,
//! sent before any of the owner's commands: the database (`SELECT`), `AUTH`, the client name,
//! client tracking, `READONLY`, `CLIENT NO-EVICT`/`NO-TOUCH`. A `WATCH` and an open `MULTI`
//! cannot be: the server forgets them with the connection. They are tied to the connection they
//! were sent on, and once that connection is replaced the next `EXEC` (or `Transaction`, or
//! `MULTI`) fails with [`Error::WatchLost`] instead of running unguarded; a command that would
//! have been queued in the lost `MULTI` fails the same way, and `DISCARD` / `UNWATCH` are
//! answered `OK` without being sent.

use crate::command::{Command, StateCommand};
use crate::endpoint::ConnectionId;
use crate::error::Error;
use crate::frame::BytesFrame;
use crate::reply::Reply;

/// What to do with a request on a dedicated stack, given its session.
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Answer it without sending (a `DISCARD` or `UNWATCH` of state already gone).
    Answer(Reply),
    /// Fail it without sending.
    Fail(Error),
}

/// The owner's connection state; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Session {
    // The connection a WATCH or MULTI was sent on.
    watch_on: Option<ConnectionId>,
    multi_on: Option<ConnectionId>,
    // What is sent again on a new connection, in this order.
    auth: Option<Command>,
    database: Option<Command>,
    name: Option<Command>,
    tracking: Option<Command>,
    readonly: Option<Command>,
    flags: Vec<Command>,
}

fn ok() -> Reply {
    Reply::from(BytesFrame::SimpleString {
        data: bytes::Bytes::from_static(b"OK"),
        attributes: None,
    })
}

fn lost(what: &str) -> Error {
    Error::WatchLost {
        reason: format!(
            "the connection that held the {what} was replaced by a handoff or a reconnect"
        )
        .into(),
    }
}

impl Session {
    /// Whether `parts` (a command, or a batch's commands; `transaction` when they are a
    /// `Transaction`) may go to connection `conn`.
    pub(crate) fn before(
        &mut self,
        parts: &[Command],
        transaction: bool,
        conn: ConnectionId,
    ) -> Verdict {
        let first = parts.first();
        let is = |n: &str| parts.len() == 1 && first.is_some_and(|c| c.is(n));
        if self.multi_on.is_some_and(|id| id != conn) {
            if is("DISCARD") {
                self.multi_on = None;
                self.watch_on = None;
                return Verdict::Answer(ok());
            }
            if is("EXEC") {
                self.multi_on = None;
                self.watch_on = None;
            }
            return Verdict::Fail(lost("MULTI"));
        }
        if transaction && self.multi_on.is_some() {
            // Its MULTI would fail as nested, and its commands would join the open one.
            return Verdict::Fail(Error::Refused {
                command: "TRANSACTION".into(),
                reason: "a MULTI sent by hand is open on this connection: EXEC or DISCARD it \
                         before sending a Transaction",
            });
        }
        if let Some(lost_on) = self.watch_on.filter(|&id| id != conn) {
            if is("UNWATCH") {
                self.watch_on = None;
                return Verdict::Answer(ok());
            }
            if is("MULTI") {
                // What the owner queues next must not run as plain commands: the MULTI counts
                // as open, and lost, until EXEC or DISCARD.
                self.watch_on = None;
                self.multi_on = Some(lost_on);
                return Verdict::Fail(lost("WATCH"));
            }
            if transaction || is("EXEC") || is("WATCH") {
                self.watch_on = None;
                return Verdict::Fail(lost("WATCH"));
            }
        }
        if self.multi_on.is_some() && parts.iter().any(|c| c.state_change().is_some()) {
            let inner = parts.iter().all(|c| {
                ["EXEC", "DISCARD", "WATCH", "UNWATCH", "MULTI"]
                    .iter()
                    .any(|n| c.is(n))
            });
            if !inner {
                // Queued, it would change the connection only at EXEC, out of sight.
                return Verdict::Fail(Error::Refused {
                    command: parts
                        .first()
                        .map_or_else(String::new, |c| c.name().to_ascii_uppercase())
                        .into(),
                    reason: "connection-state commands are refused inside a MULTI sent by hand: \
                             send them before MULTI or after EXEC",
                });
            }
        }
        // What is about to be written, recorded now: the answer may never be seen (a timeout
        // above drops this request), and the server acts on it all the same.
        if let [c] = parts {
            if c.is("EXEC") || c.is("DISCARD") {
                self.multi_on = None;
                self.watch_on = None;
            } else if c.is("UNWATCH") {
                self.watch_on = None;
            } else if c.is("MULTI") {
                self.multi_on = Some(conn);
            } else if c.is("WATCH") && self.multi_on.is_none() {
                self.watch_on = Some(conn);
            }
        }
        if transaction {
            // Its EXEC ends any WATCH, whatever becomes of it.
            self.watch_on = None;
        }
        Verdict::Send
    }

    /// Records what `parts` did on `conn`, now that they were answered (`ok`: without an error).
    pub(crate) fn after(
        &mut self,
        parts: &[Command],
        transaction: bool,
        ok: bool,
        conn: ConnectionId,
    ) {
        if transaction {
            // EXEC ends any WATCH, whatever it answers.
            self.watch_on = None;
            return;
        }
        for c in parts {
            self.record(c, ok, conn);
        }
    }

    fn record(&mut self, c: &Command, ok: bool, conn: ConnectionId) {
        let Some(state) = c.state_change() else {
            return;
        };
        if c.is("EXEC") || c.is("DISCARD") {
            self.multi_on = None;
            self.watch_on = None;
            return;
        }
        if !ok {
            if c.is("MULTI") && self.multi_on == Some(conn) {
                // Refused (an ACL without transactions): no MULTI is open.
                self.multi_on = None;
            }
            return;
        }
        if c.is("UNWATCH") {
            self.watch_on = None;
            return;
        }
        if self.multi_on.is_some() {
            // Queued, not applied yet: what runs at EXEC is not tracked.
            return;
        }
        match state {
            StateCommand::Transaction => self.multi_on = Some(conn),
            StateCommand::Watch => self.watch_on = Some(conn),
            StateCommand::Select => self.database = Some(c.clone()),
            StateCommand::Auth => self.auth = Some(c.clone()),
            StateCommand::ClientName
                if c.arg_at(1)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"SETNAME")) =>
            {
                self.name = Some(c.clone())
            }
            StateCommand::Tracking
                if c.arg_at(1)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"TRACKING")) =>
            {
                let on = c.arg_at(2).is_some_and(|s| s.eq_ignore_ascii_case(b"ON"));
                self.tracking = on.then(|| c.clone());
            }
            StateCommand::ReadOnly => {
                self.readonly = c.is("READONLY").then(|| c.clone());
            }
            StateCommand::ClientFlag => {
                let flag = c.arg_at(1).map(<[u8]>::to_ascii_uppercase);
                self.flags
                    .retain(|f| f.arg_at(1).map(<[u8]>::to_ascii_uppercase) != flag);
                self.flags.push(c.clone());
            }
            _ => {}
        }
    }

    /// What to send on a new connection, before any of the owner's commands, to give it the
    /// state the old one had.
    pub(crate) fn restore_commands(&self) -> Vec<Command> {
        [
            &self.auth,
            &self.database,
            &self.name,
            &self.tracking,
            &self.readonly,
        ]
        .into_iter()
        .flatten()
        .chain(&self.flags)
        .cloned()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;

    fn id(n: u64) -> ConnectionId {
        ConnectionId::test(n)
    }

    #[test]
    fn a_watch_does_not_survive_its_connection() {
        let mut s = Session::default();
        s.after(&[cmd!("WATCH", "k")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("GET", "k")], false, id(1)),
            Verdict::Send
        ));
        // Replaced: reads go on, the transaction does not.
        assert!(matches!(
            s.before(&[cmd!("GET", "k")], false, id(2)),
            Verdict::Send
        ));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], true, id(2)),
            Verdict::Fail(Error::WatchLost { .. })
        ));
        // Reported once: the next transaction is unguarded by choice, not by accident.
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], true, id(2)),
            Verdict::Send
        ));
    }

    #[test]
    fn a_lost_multi_fails_everything_until_exec_or_discard() {
        let mut s = Session::default();
        s.after(&[cmd!("MULTI")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], false, id(2)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], false, id(2)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("DISCARD")], false, id(2)),
            Verdict::Answer(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], false, id(2)),
            Verdict::Send
        ));
    }

    #[test]
    fn a_transaction_is_refused_inside_a_multi_sent_by_hand() {
        let mut s = Session::default();
        s.after(&[cmd!("MULTI")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], true, id(1)),
            Verdict::Fail(Error::Refused { .. })
        ));
        s.after(&[cmd!("EXEC")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], true, id(1)),
            Verdict::Send
        ));
    }

    #[test]
    fn what_is_written_counts_even_if_its_answer_is_never_seen() {
        let mut s = Session::default();
        assert!(matches!(
            s.before(&[cmd!("MULTI")], false, id(1)),
            Verdict::Send
        ));
        assert!(matches!(
            s.before(&[cmd!("EXEC")], false, id(1)),
            Verdict::Send
        ));
        // The EXEC's answer was lost (a timeout): the MULTI is over all the same.
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], true, id(2)),
            Verdict::Send
        ));
    }

    #[test]
    fn a_multi_after_a_lost_watch_fails_what_would_have_been_queued() {
        let mut s = Session::default();
        s.after(&[cmd!("WATCH", "k")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("MULTI")], false, id(2)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], false, id(2)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("EXEC")], false, id(2)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            s.before(&[cmd!("INCR", "k")], false, id(2)),
            Verdict::Send
        ));
    }

    #[test]
    fn state_commands_inside_a_hand_written_multi_are_refused() {
        let mut s = Session::default();
        s.after(&[cmd!("MULTI")], false, true, id(1));
        assert!(matches!(
            s.before(&[cmd!("SELECT", 3)], false, id(1)),
            Verdict::Fail(Error::Refused { .. })
        ));
        assert!(matches!(
            s.before(&[cmd!("UNWATCH")], false, id(1)),
            Verdict::Send
        ));
    }

    #[test]
    fn database_name_and_tracking_are_carried_over() {
        let mut s = Session::default();
        s.after(&[cmd!("SELECT", 3)], false, true, id(1));
        s.after(&[cmd!("CLIENT", "SETNAME", "worker")], false, true, id(1));
        s.after(
            &[cmd!("CLIENT", "TRACKING", "ON", "BCAST")],
            false,
            true,
            id(1),
        );
        s.after(&[cmd!("SELECT", 9)], false, false, id(1));
        assert_eq!(
            s.restore_commands(),
            vec![
                cmd!("SELECT", 3),
                cmd!("CLIENT", "SETNAME", "worker"),
                cmd!("CLIENT", "TRACKING", "ON", "BCAST")
            ]
        );
        s.after(&[cmd!("CLIENT", "TRACKING", "OFF")], false, true, id(1));
        assert_eq!(s.restore_commands().len(), 2);
    }
}
