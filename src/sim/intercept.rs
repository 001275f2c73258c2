//! Interceptors: answers given in place of the backend's, frame by frame.
//!
//! Every whole frame a client sends passes the interceptors of the simulator in order. The first
//! that matches answers it and the frame is not forwarded. The defaults are chosen by
//! configuration (`hitless`, `cluster`, `logger`, as in Redis's test proxy); the admin API adds
//! named ones (`POST /interceptors`, a whole-frame, case-insensitive match) and a scenario
//! (`POST /scenarios`, which answers the next N frames whatever they are).
//!
//! As in Redis's test proxy, a new interceptor goes in front of those already there, the
//! defaults included, so a test can answer `CLUSTER SLOTS` itself. One with the name of an
//! existing interceptor replaces it: the old one is removed and the new one, with counters at
//! zero, goes in front like any new one. The defaults are installed one after the other in the
//! order they are listed, so `cluster,hitless,logger` runs the logger first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

use super::lock;
use super::resp::preview;

/// Name of the interceptor that answers the maintenance-notification handshake.
pub(crate) const HITLESS: &str = "hitless-simulation-interceptor";
/// Name of the interceptor that answers `CLUSTER SLOTS`.
pub(crate) const CLUSTER: &str = "cluster-simulation-interceptor";
/// Name of the interceptor that logs every frame.
pub(crate) const LOGGER: &str = "logging-interceptor";
/// Name of the interceptor `POST /scenarios` installs.
pub(crate) const SCENARIO: &str = "scenario-interceptor";

/// What the `hitless` default looks for, compared without regard to case, anywhere in a frame.
const HANDSHAKE_PREFIX: &[u8] = b"*5\r\n$6\r\nclient\r\n$19\r\nmaint_notifications\r\n$2\r\non\r\n";
/// The one frame the `cluster` default answers, compared without regard to case.
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\ncluster\r\n$5\r\nslots\r\n";

/// What to do with a client's frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send it to the backend.
    Forward,
    /// Answer with these bytes instead.
    Respond(Bytes),
    /// It is the maintenance-notification handshake: the connection answers it itself.
    Handshake,
}

#[derive(Debug)]
enum Kind {
    Exact { frame: Bytes, response: Bytes },
    Sequence { responses: Vec<Bytes>, next: usize },
    Hitless,
    Cluster,
    Logger,
}

#[derive(Debug)]
struct Interceptor {
    name: String,
    kind: Mutex<Kind>,
    // (match count, invoke count) by node key.
    counts: Mutex<HashMap<usize, (u64, u64)>>,
}

/// Counters of one interceptor on one node, as `/stats` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterceptorStats {
    pub(crate) name: String,
    pub(crate) match_count: u64,
    pub(crate) invoke_count: u64,
}

/// The interceptors of one simulator, in the order they run.
#[derive(Debug, Default)]
pub(crate) struct Interceptors {
    list: Mutex<Vec<Arc<Interceptor>>>,
}

/// A node as `CLUSTER SLOTS` shows it.
#[derive(Debug, Clone)]
pub(crate) struct SlotOwner {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Interceptors {
    fn install(&self, name: &str, kind: Kind) {
        let new = Arc::new(Interceptor {
            name: name.to_string(),
            kind: Mutex::new(kind),
            counts: Mutex::new(HashMap::new()),
        });
        let mut list = lock(&self.list);
        list.retain(|i| i.name != name);
        list.insert(0, new);
    }

    /// Installs the `hitless` default: the handshake is answered by the simulator.
    pub(crate) fn install_hitless(&self) {
        self.install(HITLESS, Kind::Hitless);
    }

    /// Installs the `cluster` default: `CLUSTER SLOTS` is answered with the nodes.
    pub(crate) fn install_cluster(&self) {
        self.install(CLUSTER, Kind::Cluster);
    }

    /// Installs the `logger` default: every frame is logged at info level.
    pub(crate) fn install_logger(&self) {
        self.install(LOGGER, Kind::Logger);
    }

    /// Installs a named whole-frame match (case-insensitive) answered with `response`.
    pub(crate) fn install_exact(&self, name: &str, frame: Bytes, response: Bytes) {
        self.install(name, Kind::Exact { frame, response });
    }

    /// Installs the scenario: the next `responses.len()` frames get these answers in order.
    pub(crate) fn install_sequence(&self, responses: Vec<Bytes>) {
        self.install(SCENARIO, Kind::Sequence { responses, next: 0 });
    }

    /// Removes an interceptor; returns whether there was one by that name.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let mut list = lock(&self.list);
        let before = list.len();
        list.retain(|i| i.name != name);
        list.len() != before
    }

    /// The counters of every interceptor on one node.
    pub(crate) fn stats(&self, node: usize) -> Vec<InterceptorStats> {
        lock(&self.list)
            .iter()
            .map(|i| {
                let (m, n) = lock(&i.counts).get(&node).copied().unwrap_or((0, 0));
                InterceptorStats {
                    name: i.name.clone(),
                    match_count: m,
                    invoke_count: n,
                }
            })
            .collect()
    }

    /// Runs a client frame through the interceptors.
    ///
    /// `args` are the command's arguments when the frame is a command; `owners` lists the nodes
    /// for `CLUSTER SLOTS`, computed only when that interceptor matches.
    pub(crate) fn intercept(
        &self,
        node: usize,
        conn_id: &str,
        frame: &Bytes,
        args: Option<&[Bytes]>,
        owners: impl Fn() -> Vec<SlotOwner>,
    ) -> Outcome {
        let list: Vec<Arc<Interceptor>> = lock(&self.list).clone();
        for i in list {
            let outcome = {
                let mut kind = lock(&i.kind);
                match &mut *kind {
                    Kind::Logger => {
                        match args {
                            // A command is logged as `Command`'s Debug shows it: the arguments
                            // of AUTH, HELLO ... AUTH, ACL, CONFIG, MIGRATE redacted.
                            Some([name, rest @ ..]) => {
                                let command = crate::Command::new(name).args_from(rest);
                                tracing::info!(node, connection = conn_id, command = ?command, "client command");
                            }
                            _ => {
                                tracing::info!(node, connection = conn_id, frame = %preview(frame), "client frame");
                            }
                        }
                        None
                    }
                    // The connection answers the handshake itself (it records the endpoint type,
                    // and refuses it without RESP3); any other frame that holds the five-argument
                    // prefix gets the `+OK` the test proxy gives it.
                    Kind::Hitless => match args {
                        Some([a, b, ..])
                            if a.eq_ignore_ascii_case(b"client")
                                && b.eq_ignore_ascii_case(b"maint_notifications") =>
                        {
                            Some(Outcome::Handshake)
                        }
                        _ if contains_ignore_case(frame, HANDSHAKE_PREFIX) => {
                            Some(Outcome::Respond(Bytes::from_static(b"+OK\r\n")))
                        }
                        _ => None,
                    },
                    Kind::Cluster => {
                        if frame.eq_ignore_ascii_case(CLUSTER_SLOTS) {
                            Some(Outcome::Respond(cluster_slots(&owners())))
                        } else {
                            None
                        }
                    }
                    Kind::Exact {
                        frame: want,
                        response,
                    } => {
                        if want.eq_ignore_ascii_case(frame) {
                            Some(Outcome::Respond(response.clone()))
                        } else {
                            None
                        }
                    }
                    Kind::Sequence { responses, next } => match responses.get(*next) {
                        Some(r) => {
                            *next += 1;
                            Some(Outcome::Respond(r.clone()))
                        }
                        None => None,
                    },
                }
            };
            {
                let mut counts = lock(&i.counts);
                let entry = counts.entry(node).or_insert((0, 0));
                entry.1 += 1;
                if outcome.is_some() {
                    entry.0 += 1;
                }
            }
            if let Some(o) = outcome {
                return o;
            }
        }
        Outcome::Forward
    }
}

/// Whether `needle` occurs in `haystack`, ASCII letters compared without regard to case.
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The `CLUSTER SLOTS` answer for these nodes, in the order given (the nodes' order): each gets
/// `floor(16384 / N)` contiguous slots, the last one up to 16383, each entry
/// `[start, end, [host, port, "proxy-id-<port>"]]`.
pub(crate) fn cluster_slots(owners: &[SlotOwner]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(format!("*{}\r\n", owners.len()).as_bytes());
    if owners.is_empty() {
        return out.freeze();
    }
    let per = 16384 / owners.len() as u32;
    let mut start = 0u32;
    for (i, o) in owners.iter().enumerate() {
        let end = if i + 1 == owners.len() {
            16383
        } else {
            start + per - 1
        };
        let id = format!("proxy-id-{}", o.port);
        out.put_slice(
            format!(
                "*3\r\n:{start}\r\n:{end}\r\n*3\r\n${}\r\n{}\r\n:{}\r\n${}\r\n{id}\r\n",
                o.host.len(),
                o.host,
                o.port,
                id.len()
            )
            .as_bytes(),
        );
        start = end + 1;
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(port: u16) -> SlotOwner {
        SlotOwner {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn cluster_slots_split_evenly_in_node_order() {
        let owners = vec![owner(7001), owner(7000), owner(7002)];
        let text = String::from_utf8(cluster_slots(&owners).to_vec()).unwrap();
        assert!(text.starts_with(
            "*3\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$13\r\nproxy-id-7001\r\n"
        ));
        assert!(text.contains(":5461\r\n:10921\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n"));
        assert!(text.contains(":10922\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n"));
    }

    #[test]
    fn a_new_interceptor_replaces_one_of_the_same_name_in_front() {
        let i = Interceptors::default();
        let f = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
        i.install_exact("x", f.clone(), Bytes::from_static(b"+A\r\n"));
        i.install_hitless();
        i.install_exact("x", f.clone(), Bytes::from_static(b"+B\r\n"));
        let lower = Bytes::from_static(b"*1\r\n$4\r\nping\r\n");
        assert_eq!(
            i.intercept(0, "c", &lower, None, Vec::new),
            Outcome::Respond(Bytes::from_static(b"+B\r\n"))
        );
        let stats = i.stats(0);
        let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["x", HITLESS]);
        assert_eq!((stats[0].match_count, stats[0].invoke_count), (1, 1));
        assert_eq!(stats[1].invoke_count, 0);
    }

    #[test]
    fn hitless_answers_any_frame_holding_the_handshake_prefix() {
        let i = Interceptors::default();
        i.install_hitless();
        let inside = Bytes::from_static(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50\r\n*5\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$2\r\nON\r\n\r\n",
        );
        assert_eq!(
            i.intercept(0, "c", &inside, None, Vec::new),
            Outcome::Respond(Bytes::from_static(b"+OK\r\n"))
        );
        let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(i.intercept(0, "c", &ping, None, Vec::new), Outcome::Forward);
    }

    #[test]
    fn cluster_answers_only_the_exact_frame() {
        let i = Interceptors::default();
        i.install_cluster();
        let owners = || vec![owner(7000)];
        let upper = Bytes::from_static(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSlots\r\n");
        assert!(matches!(
            i.intercept(0, "c", &upper, None, owners),
            Outcome::Respond(_)
        ));
        let more = Bytes::from_static(b"*3\r\n$7\r\ncluster\r\n$5\r\nslots\r\n$1\r\nx\r\n");
        assert_eq!(i.intercept(0, "c", &more, None, owners), Outcome::Forward);
    }
}
