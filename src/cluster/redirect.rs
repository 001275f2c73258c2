//! The cluster protocol's refusals, and what the cluster does about each.
//!
//! | the server says | meaning | the cluster |
//! |---|---|---|
//! | `MOVED <slot> <host:port>` | the slot lives on another node now | updates the slot map for that slot at once, schedules a lazy full refresh, sends the command to the new owner |
//! | `MOVED` back to a node that already redirected this command | two nodes disagree about the slot for now (each redirects to the other) | waits as for `TRYAGAIN` before following it, counted as a wait, not a redirect, so such a loop is bounded by the retry budget |
//! | `ASK <slot> <host:port>` | the slot is being migrated and this key is already on the target | sends `ASKING` and the command to the target, back to back, once; the map is not changed |
//! | `TRYAGAIN` | a multi-key command whose keys are split by a migration in progress | waits a little (10 ms doubling to 200 ms, with jitter) and sends again |
//! | `CLUSTERDOWN` | the cluster cannot serve the slot now (a failover under way) | waits the same way, refreshes the topology, sends again |
//! | `LOADING`, `MASTERDOWN` | the node is not ready | waits the same way |
//! | a node that cannot be reached, before the command was written (`NotSent`, a connect error, an open circuit) | the node is down or gone | refreshes the topology (one refresh for every caller that asks at once) and routes again |
//!
//! Each of these means the command did not run, so sending it again is always safe. A command
//! that may have run (its connection was lost after it was written, or it timed out) is never
//! sent again by the cluster: its node's stack has already applied the resend policy, and the
//! caller gets the error, which says the command may have run. A refresh is still scheduled,
//! so that the next command finds the new primary.
//!
//! All of this happens within the command's retry budget and redirect limit
//! ([`ClusterBuilder::retry_budget`](super::ClusterBuilder::retry_budget),
//! [`ClusterBuilder::redirect_limit`](super::ClusterBuilder::redirect_limit)); past either,
//! the caller gets [`Error::Redirects`], which says what the last refusal was.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::{Error, ServerError};

/// What a failed attempt asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// The slot lives on `to` now.
    Moved { slot: u16, to: Endpoint },
    /// Send it to `to` after `ASKING`, this once.
    Ask { to: Endpoint },
    /// Wait a little and send it again; with `refresh`, refresh the topology too.
    Wait { refresh: bool },
    /// The node could not be reached and the command was not sent: refresh and route again.
    Reroute,
    /// The answer stands: give it to the caller.
    Stop,
}

/// What to do after `error`, which the node at `answered_by` gave (its host stands in for a
/// redirect that names none); `map` turns the announced address into the one to dial.
pub(crate) fn next(
    error: &Error,
    answered_by: &Endpoint,
    map: &dyn Fn(Endpoint) -> Endpoint,
) -> Next {
    match error {
        Error::Server(e) => refusal(e, answered_by, map).unwrap_or(Next::Stop),
        e if unreachable(e) => Next::Reroute,
        _ => Next::Stop,
    }
}

/// Whether `error` says the node could not be reached and the command was not sent.
pub(crate) fn unreachable(error: &Error) -> bool {
    matches!(
        error,
        Error::NotSent { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::CircuitOpen { .. }
            | Error::HandoffFailed { .. }
    )
}

/// The cluster refusal in a server error, if it is one.
pub(crate) fn refusal(
    error: &ServerError,
    answered_by: &Endpoint,
    map: &dyn Fn(Endpoint) -> Endpoint,
) -> Option<Next> {
    match error.code() {
        "MOVED" | "ASK" => {
            let (slot, to) = target(error.text(), answered_by)?;
            let to = map(to);
            Some(if error.code() == "MOVED" {
                Next::Moved { slot, to }
            } else {
                Next::Ask { to }
            })
        }
        "TRYAGAIN" | "LOADING" | "MASTERDOWN" => Some(Next::Wait { refresh: false }),
        "CLUSTERDOWN" => Some(Next::Wait { refresh: true }),
        _ => None,
    }
}

/// The slot and node of `MOVED <slot> <host:port>` or `ASK ...`. Redis 7 may leave the host
/// out (`:6380`) or write `?` for it when it does not know its own: the node that answered is
/// on the same host.
fn target(text: &str, answered_by: &Endpoint) -> Option<(u16, Endpoint)> {
    let mut words = text.split_ascii_whitespace().skip(1);
    let slot: u16 = words.next()?.parse().ok()?;
    if slot >= super::slot::SLOT_COUNT {
        return None;
    }
    let address = words.next()?;
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() || host == "?" {
        answered_by.host()
    } else {
        host
    };
    Some((slot, Endpoint::new(host.to_string(), port)))
}

/// How long to wait before try `attempt` (from 1) after a `TRYAGAIN`-like refusal: 10 ms
/// doubling to 200 ms, with up to half again of jitter so that callers do not retry in step.
/// The nodes that answered one request with `MOVED`, to notice when they send it back and
/// forth: two nodes can disagree for a moment about who owns a slot (a slot moved away and
/// back faster than the cluster's gossip settles, as seen with a slot moved four times in 40
/// ms), and following each `MOVED` at once would spend the redirect limit in a few
/// milliseconds. A `MOVED` back to a node that already redirected the request is followed after
/// a [`backoff`] instead, and counted as a wait, not a redirect: such a loop is bounded by the
/// retry budget, as `TRYAGAIN` is.
#[derive(Debug, Default)]
pub(crate) struct Bounces {
    seen: Vec<Endpoint>,
}

impl Bounces {
    /// Notes that `by` answered `MOVED` to `to`; whether `to` itself redirected this request
    /// before (the nodes disagree for now).
    pub(crate) fn bounced(&mut self, by: &Endpoint, to: &Endpoint) -> bool {
        let back = self.seen.contains(to);
        if !self.seen.contains(by) {
            self.seen.push(by.clone());
        }
        back
    }
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = (10u64 << attempt.saturating_sub(1).min(5)).min(200);
    Duration::from_millis(base + fastrand::u64(0..=base / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_back_to_a_node_that_redirected_before_is_a_bounce() {
        let (a, b, c) = (
            Endpoint::new("127.0.0.1", 7000),
            Endpoint::new("127.0.0.1", 7001),
            Endpoint::new("127.0.0.1", 7002),
        );
        let mut bounces = Bounces::default();
        assert!(!bounces.bounced(&a, &b), "a first redirect");
        assert!(!bounces.bounced(&b, &c), "on to a third node");
        assert!(bounces.bounced(&c, &a), "back to a node that redirected");
        assert!(bounces.bounced(&a, &b));
    }

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }
    fn same(e: Endpoint) -> Endpoint {
        e
    }
    fn server(text: &str) -> Error {
        Error::Server(ServerError::new(text))
    }

    #[test]
    fn moved_and_ask_name_a_slot_and_a_node() {
        let by = ep("10.0.0.1:7000");
        assert_eq!(
            next(&server("MOVED 3999 127.0.0.1:6381"), &by, &same),
            Next::Moved {
                slot: 3999,
                to: ep("127.0.0.1:6381")
            }
        );
        assert_eq!(
            next(&server("ASK 3999 127.0.0.1:6381"), &by, &same),
            Next::Ask {
                to: ep("127.0.0.1:6381")
            }
        );
        // No host, or an unknown one: the host of the node that answered.
        assert_eq!(
            next(&server("MOVED 1 :7001"), &by, &same),
            Next::Moved {
                slot: 1,
                to: ep("10.0.0.1:7001")
            }
        );
        assert_eq!(
            next(&server("MOVED 1 ?:7001"), &by, &same),
            Next::Moved {
                slot: 1,
                to: ep("10.0.0.1:7001")
            }
        );
        assert_eq!(
            next(&server("MOVED 1 ::1:7001"), &by, &same),
            Next::Moved {
                slot: 1,
                to: Endpoint::new("::1", 7001)
            }
        );
        let map = |e: Endpoint| Endpoint::new("nat", e.port() + 1);
        assert_eq!(
            next(&server("ASK 1 10.9.9.9:7001"), &by, &map),
            Next::Ask { to: ep("nat:7002") }
        );
    }

    #[test]
    fn malformed_redirects_are_the_callers_errors() {
        let by = ep("h:1");
        for text in [
            "MOVED",
            "MOVED x h:1",
            "MOVED 16384 h:1",
            "MOVED 1",
            "MOVED 1 h",
            "MOVED 1 h:0",
            "MOVED 1 h:99999",
        ] {
            assert_eq!(next(&server(text), &by, &same), Next::Stop, "{text}");
        }
    }

    #[test]
    fn waits_reroutes_and_answers() {
        let by = ep("h:1");
        assert_eq!(
            next(
                &server("TRYAGAIN Multiple keys request during rehashing of slot"),
                &by,
                &same
            ),
            Next::Wait { refresh: false }
        );
        assert_eq!(
            next(&server("CLUSTERDOWN The cluster is down"), &by, &same),
            Next::Wait { refresh: true }
        );
        assert_eq!(
            next(&Error::NotSent { reason: "x".into() }, &by, &same),
            Next::Reroute
        );
        assert_eq!(
            next(&Error::ConnectionLost { reason: "x".into() }, &by, &same),
            Next::Stop
        );
        assert_eq!(
            next(
                &Error::Timeout {
                    after: Duration::from_secs(1),
                    relaxed: false
                },
                &by,
                &same
            ),
            Next::Stop
        );
        assert_eq!(next(&server("WRONGTYPE x"), &by, &same), Next::Stop);
        for attempt in 1..20 {
            assert!(backoff(attempt) <= Duration::from_millis(300));
        }
    }
}
