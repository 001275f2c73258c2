//! The slot map: which primary serves each of the 16384 slots, and how it is read from the
//! servers.
//!
//! A [`Topology`] holds one entry per slot (an index into its list of [`Shard`]s), so finding
//! a slot's owner is one array read. It is built from `CLUSTER SHARDS` (Redis 7 and newer, in
//! its RESP3 map shape or the flat RESP2 array shape) or, where that command is unknown, from
//! `CLUSTER SLOTS`. Odd replies never panic: a range outside `0..=16383` or with its ends
//! reversed, a node without a port, an entry of the wrong type, are skipped (and counted in
//! [`Topology::skipped`]); a reply that leaves no slot served at all is an error, so a
//! refresh that read garbage never replaces a working map.
//!
//! Deltas (`MOVED` for one slot, the triples of `SMIGRATED`) are applied to a copy in place
//! ([`Topology::assign`]); the cluster swaps the copy in atomically.

use std::fmt;
use std::sync::Arc;

use redis_protocol::resp3::types::BytesFrame;

use super::slot::SLOT_COUNT;
use crate::endpoint::Endpoint;
use crate::maintenance::SlotRange;

/// An owner index that means "no node serves this slot".
const NONE: u16 = u16::MAX;

/// At most this many shards are read from one reply; a real cluster has at most 16384
/// primaries (one slot each), so anything beyond is not a topology.
const MAX_SHARDS: usize = SLOT_COUNT as usize;

/// One primary and what is known of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shard {
    /// Where the primary is reached (after the cluster's address map).
    pub primary: Endpoint,
    /// The primary's node id, when the server said it.
    pub id: Option<Arc<str>>,
    /// Where its replicas are reached.
    pub replicas: Vec<Endpoint>,
}

/// Which primary serves each slot: one entry per slot, read from `CLUSTER SHARDS` or
/// `CLUSTER SLOTS` by the [`Cluster`](super::Cluster), changed in place by `MOVED` and
/// `SMIGRATED`.
#[derive(Clone, PartialEq, Eq)]
pub struct Topology {
    owners: Box<[u16]>,
    shards: Vec<Shard>,
    skipped: usize,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (range, owner) in self.ranges() {
            map.entry(&format_args!("{range}"), owner);
        }
        map.finish()
    }
}

impl Topology {
    /// A map in which no slot is served.
    pub(crate) fn empty() -> Self {
        Topology {
            owners: vec![NONE; usize::from(SLOT_COUNT)].into_boxed_slice(),
            shards: Vec::new(),
            skipped: 0,
        }
    }

    /// The primary that serves `slot`, if one does.
    pub fn owner(&self, slot: u16) -> Option<&Endpoint> {
        self.owner_index(slot).map(|i| &self.shards[i].primary)
    }

    /// The index in [`Topology::shards`] of the owner of `slot`.
    pub(crate) fn owner_index(&self, slot: u16) -> Option<usize> {
        let i = *self.owners.get(usize::from(slot))?;
        (i != NONE && usize::from(i) < self.shards.len()).then_some(usize::from(i))
    }

    /// The shards (primaries with their replicas), in the order the server listed them.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The primaries' endpoints.
    pub fn primaries(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        self.shards.iter().map(|s| &s.primary)
    }

    /// The index of the shard whose primary is `endpoint`.
    pub(crate) fn index_of(&self, endpoint: &Endpoint) -> Option<usize> {
        self.shards.iter().position(|s| &s.primary == endpoint)
    }

    /// How many slots have an owner.
    pub fn covered(&self) -> usize {
        self.owners.iter().filter(|&&o| o != NONE).count()
    }

    /// How many entries of the reply it was read from were skipped as malformed.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Contiguous ranges of slots with their owner, in slot order.
    pub fn ranges(&self) -> Vec<(SlotRange, &Endpoint)> {
        let mut out: Vec<(SlotRange, &Endpoint)> = Vec::new();
        let mut start = 0u16;
        while start < SLOT_COUNT {
            let owner = self.owners[usize::from(start)];
            let mut end = start;
            while end + 1 < SLOT_COUNT && self.owners[usize::from(end + 1)] == owner {
                end += 1;
            }
            if let (Some(shard), Some(range)) = (
                self.shards.get(usize::from(owner)),
                SlotRange::new(start, end),
            ) {
                out.push((range, &shard.primary));
            }
            start = end + 1;
        }
        out
    }

    /// The slots `endpoint` serves, as ranges.
    pub fn slots_of(&self, endpoint: &Endpoint) -> Vec<SlotRange> {
        self.ranges()
            .into_iter()
            .filter(|(_, e)| *e == endpoint)
            .map(|(r, _)| r)
            .collect()
    }

    /// Gives `range` to `endpoint`, adding it as a primary if it is not one yet. Returns
    /// whether anything changed. Primaries left without a slot stay listed until the next full
    /// refresh says otherwise (a `MOVED` says nothing about the rest of the cluster).
    pub(crate) fn assign(&mut self, range: SlotRange, endpoint: &Endpoint) -> bool {
        let index = match self.index_of(endpoint) {
            Some(i) => i,
            None => {
                if self.shards.len() >= MAX_SHARDS {
                    return false;
                }
                self.shards.push(Shard {
                    primary: endpoint.clone(),
                    id: None,
                    replicas: Vec::new(),
                });
                self.shards.len() - 1
            }
        };
        // `index` < MAX_SHARDS = 16384 < NONE, so it fits.
        let index = index as u16;
        let mut changed = false;
        for slot in range.start..=range.end {
            let owner = &mut self.owners[usize::from(slot)];
            if *owner != index {
                *owner = index;
                changed = true;
            }
        }
        changed
    }

    /// Parses a `CLUSTER SHARDS` reply. `asked` is the node that answered: a node that gives no
    /// address of its own is reached at its host. `tls` picks `tls-port` where one is given;
    /// `map` turns every announced address into the one to dial.
    pub(crate) fn from_shards(
        reply: &BytesFrame,
        asked: &Endpoint,
        tls: bool,
        map: &dyn Fn(Endpoint) -> Endpoint,
    ) -> Result<Topology, String> {
        let shards = array(reply).ok_or("CLUSTER SHARDS did not answer an array")?;
        let mut topology = Topology::empty();
        for shard in shards.iter().take(MAX_SHARDS) {
            let Some(fields) = entries(shard) else {
                topology.skipped += 1;
                continue;
            };
            let mut ranges = Vec::new();
            let mut primary = None;
            let mut replicas = Vec::new();
            for (key, value) in fields {
                match key {
                    b"slots" => {
                        let Some(bounds) = array(value) else {
                            topology.skipped += 1;
                            continue;
                        };
                        for pair in bounds.chunks(2) {
                            match (pair.first().and_then(int), pair.get(1).and_then(int)) {
                                (Some(start), Some(end)) => match range(start, end) {
                                    Some(r) => ranges.push(r),
                                    None => topology.skipped += 1,
                                },
                                _ => topology.skipped += 1,
                            }
                        }
                    }
                    b"nodes" => {
                        for node in array(value).into_iter().flatten() {
                            match shard_node(node, asked, tls) {
                                Some((endpoint, id, true)) if primary.is_none() => {
                                    primary = Some((map(endpoint), id));
                                }
                                Some((endpoint, _, _)) => replicas.push(map(endpoint)),
                                None => topology.skipped += 1,
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A shard without slots (a primary that lost them all, a node being added) serves
            // nothing yet: it is not routed to.
            if let (Some((endpoint, id)), false) = (primary, ranges.is_empty()) {
                topology.add_shard(endpoint, id, replicas, &ranges);
            }
        }
        topology.checked()
    }

    /// Parses a `CLUSTER SLOTS` reply; see [`Topology::from_shards`] for the arguments.
    pub(crate) fn from_slots(
        reply: &BytesFrame,
        asked: &Endpoint,
        map: &dyn Fn(Endpoint) -> Endpoint,
    ) -> Result<Topology, String> {
        let entries = array(reply).ok_or("CLUSTER SLOTS did not answer an array")?;
        let mut topology = Topology::empty();
        for entry in entries.iter().take(usize::from(SLOT_COUNT)) {
            let Some(parts) = array(entry) else {
                topology.skipped += 1;
                continue;
            };
            let bounds = (parts.first().and_then(int), parts.get(1).and_then(int));
            let (Some(start), Some(end)) = bounds else {
                topology.skipped += 1;
                continue;
            };
            let Some(r) = range(start, end) else {
                topology.skipped += 1;
                continue;
            };
            let mut nodes = parts.iter().skip(2).filter_map(|n| slots_node(n, asked));
            let Some((primary, id)) = nodes.next() else {
                topology.skipped += 1;
                continue;
            };
            let replicas = nodes.map(|(e, _)| map(e)).collect();
            topology.add_shard(map(primary), id, replicas, &[r]);
        }
        topology.checked()
    }

    fn add_shard(
        &mut self,
        primary: Endpoint,
        id: Option<Arc<str>>,
        replicas: Vec<Endpoint>,
        ranges: &[SlotRange],
    ) {
        // CLUSTER SLOTS lists a primary once per range: one shard each.
        if self.index_of(&primary).is_none() {
            if self.shards.len() >= MAX_SHARDS {
                self.skipped += 1;
                return;
            }
            self.shards.push(Shard {
                primary: primary.clone(),
                id,
                replicas,
            });
        }
        for r in ranges {
            self.assign(*r, &primary);
        }
    }

    fn checked(self) -> Result<Topology, String> {
        if self.covered() == 0 {
            return Err("the reply names no node that serves a slot".into());
        }
        Ok(self)
    }
}

/// A slot range from two integers of a reply.
fn range(start: i64, end: i64) -> Option<SlotRange> {
    SlotRange::new(u16::try_from(start).ok()?, u16::try_from(end).ok()?)
}

/// A node of a `CLUSTER SHARDS` shard: its address, id, and whether it is the primary.
fn shard_node(
    node: &BytesFrame,
    asked: &Endpoint,
    tls: bool,
) -> Option<(Endpoint, Option<Arc<str>>, bool)> {
    let mut endpoint = None;
    let mut ip = None;
    let mut port = None;
    let mut tls_port = None;
    let mut id = None;
    let mut primary = false;
    let mut failed = false;
    for (key, value) in entries(node)? {
        match key {
            b"endpoint" => endpoint = string(value),
            b"ip" => ip = string(value),
            b"port" => port = int(value),
            b"tls-port" => tls_port = int(value),
            b"id" => id = string(value).map(Arc::from),
            b"role" => primary = string(value).is_some_and(|r| r == "master" || r == "primary"),
            b"health" => failed = string(value).is_some_and(|h| h == "fail" || h == "failed"),
            _ => {}
        }
    }
    let port = if tls { tls_port.or(port) } else { port }?;
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    let host = [endpoint, ip]
        .into_iter()
        .flatten()
        .find(|h| known_host(h))
        .unwrap_or_else(|| asked.host().to_string());
    // A failed primary still listed for its slots is kept: commands to it fail and a refresh
    // finds the replica promoted in its place. A failed replica is of no use.
    if failed && !primary {
        return None;
    }
    Some((Endpoint::new(host, port), id, primary))
}

/// A node of a `CLUSTER SLOTS` entry: `[host, port, id, ...]`.
fn slots_node(node: &BytesFrame, asked: &Endpoint) -> Option<(Endpoint, Option<Arc<str>>)> {
    let parts = array(node)?;
    let port = u16::try_from(parts.get(1).and_then(int)?)
        .ok()
        .filter(|&p| p != 0)?;
    let host = parts
        .first()
        .and_then(string)
        .filter(|h| known_host(h))
        .unwrap_or_else(|| asked.host().to_string());
    let id = parts.get(2).and_then(string).map(Arc::from);
    Some((Endpoint::new(host, port), id))
}

/// Whether a host from a reply names an address: `""` and `"?"` mean "the address you
/// reached me at".
fn known_host(host: &str) -> bool {
    !host.is_empty() && host != "?"
}

fn array(frame: &BytesFrame) -> Option<&[BytesFrame]> {
    match frame {
        BytesFrame::Array { data, .. } => Some(data),
        _ => None,
    }
}

/// The key/value pairs of a RESP3 map, or of a RESP2 array of alternating keys and values.
fn entries(frame: &BytesFrame) -> Option<Vec<(&[u8], &BytesFrame)>> {
    match frame {
        BytesFrame::Map { data, .. } => Some(
            data.iter()
                .filter_map(|(k, v)| Some((crate::frame::text(k)?.as_ref(), v)))
                .collect(),
        ),
        BytesFrame::Array { data, .. } if data.len() % 2 == 0 => Some(
            data.chunks(2)
                .filter_map(|kv| Some((crate::frame::text(&kv[0])?.as_ref(), &kv[1])))
                .collect(),
        ),
        _ => None,
    }
}

fn int(frame: &BytesFrame) -> Option<i64> {
    match frame {
        BytesFrame::Number { data, .. } => Some(*data),
        other => std::str::from_utf8(crate::frame::text(other)?)
            .ok()?
            .parse()
            .ok(),
    }
}

fn string(frame: &BytesFrame) -> Option<String> {
    let text = crate::frame::text(frame)?;
    std::str::from_utf8(text).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> BytesFrame {
        BytesFrame::BlobString {
            data: Bytes::copy_from_slice(v.as_bytes()),
            attributes: None,
        }
    }
    fn n(v: i64) -> BytesFrame {
        BytesFrame::Number {
            data: v,
            attributes: None,
        }
    }
    fn a(v: Vec<BytesFrame>) -> BytesFrame {
        BytesFrame::Array {
            data: v,
            attributes: None,
        }
    }
    fn m(v: Vec<(&str, BytesFrame)>) -> BytesFrame {
        BytesFrame::Map {
            data: v.into_iter().map(|(k, v)| (s(k), v)).collect(),
            attributes: None,
        }
    }
    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }
    fn same(e: Endpoint) -> Endpoint {
        e
    }

    fn node(ip: &str, port: i64, role: &str) -> Vec<(&'static str, BytesFrame)> {
        vec![
            ("id", s(&format!("id-{port}"))),
            ("port", n(port)),
            ("ip", s(ip)),
            ("endpoint", s(ip)),
            ("role", s(role)),
            ("health", s("online")),
        ]
    }

    fn shards_reply() -> BytesFrame {
        a(vec![
            m(vec![
                ("slots", a(vec![n(0), n(5460)])),
                (
                    "nodes",
                    a(vec![
                        m(node("10.0.0.1", 7000, "master")),
                        m(node("10.0.0.4", 7003, "replica")),
                    ]),
                ),
            ]),
            m(vec![
                ("slots", a(vec![n(5461), n(10922)])),
                ("nodes", a(vec![m(node("10.0.0.2", 7001, "master"))])),
            ]),
            m(vec![
                ("slots", a(vec![n(10923), n(16000), n(16001), n(16383)])),
                ("nodes", a(vec![m(node("", 7002, "master"))])),
            ]),
        ])
    }

    #[test]
    fn cluster_shards_in_its_resp3_shape() {
        let t = Topology::from_shards(&shards_reply(), &ep("seed:7002"), false, &same).unwrap();
        assert_eq!(t.covered(), 16384);
        assert_eq!(t.owner(0), Some(&ep("10.0.0.1:7000")));
        assert_eq!(t.owner(5461), Some(&ep("10.0.0.2:7001")));
        // No address of its own: the host it was reached at.
        assert_eq!(t.owner(16383), Some(&ep("seed:7002")));
        assert_eq!(t.shards()[0].replicas, vec![ep("10.0.0.4:7003")]);
        assert_eq!(t.shards()[0].id.as_deref(), Some("id-7000"));
        assert_eq!(t.ranges().len(), 3);
        assert_eq!(
            t.slots_of(&ep("seed:7002")),
            vec![SlotRange::new(10923, 16383).unwrap()]
        );
    }

    #[test]
    fn cluster_shards_in_its_resp2_shape_and_through_an_address_map() {
        fn flat(f: BytesFrame) -> BytesFrame {
            match f {
                BytesFrame::Map { data, .. } => {
                    a(data.into_iter().flat_map(|(k, v)| [k, flat(v)]).collect())
                }
                BytesFrame::Array { data, .. } => a(data.into_iter().map(flat).collect()),
                other => other,
            }
        }
        let map = |e: Endpoint| Endpoint::new("127.0.0.1", e.port() + 1000);
        let t = Topology::from_shards(&flat(shards_reply()), &ep("seed:1"), false, &map).unwrap();
        assert_eq!(t.covered(), 16384);
        assert_eq!(t.owner(100), Some(&ep("127.0.0.1:8000")));
    }

    #[test]
    fn cluster_slots_with_unknown_hosts() {
        let reply = a(vec![
            a(vec![
                n(0),
                n(8191),
                a(vec![s("10.0.0.1"), n(7000), s("id0")]),
                a(vec![s("10.0.0.3"), n(7002), s("id2")]),
            ]),
            a(vec![n(8192), n(16383), a(vec![s("?"), n(7001), s("id1")])]),
        ]);
        let t = Topology::from_slots(&reply, &ep("seed:9"), &same).unwrap();
        assert_eq!(t.owner(8191), Some(&ep("10.0.0.1:7000")));
        assert_eq!(t.owner(8192), Some(&ep("seed:7001")));
        assert_eq!(t.shards()[0].replicas, vec![ep("10.0.0.3:7002")]);
    }

    #[test]
    fn odd_replies_are_skipped_or_refused_never_a_panic() {
        let reply = a(vec![
            a(vec![n(10), n(5)]),
            a(vec![n(0), n(99999), a(vec![s("h"), n(1)])]),
            a(vec![n(-1), n(3), a(vec![s("h"), n(1)])]),
            a(vec![n(0), n(3), a(vec![s("h"), n(0)])]),
            s("garbage"),
            a(vec![n(0), n(3), a(vec![s("h"), n(70000)])]),
            a(vec![n(4), n(7), a(vec![s("h"), n(6379)])]),
        ]);
        let t = Topology::from_slots(&reply, &ep("seed:9"), &same).unwrap();
        assert_eq!(t.covered(), 4);
        assert_eq!(t.skipped(), 6);
        assert!(Topology::from_slots(&a(vec![]), &ep("s:1"), &same).is_err());
        assert!(Topology::from_slots(&n(3), &ep("s:1"), &same).is_err());
        assert!(
            Topology::from_shards(&a(vec![n(1), m(vec![])]), &ep("s:1"), false, &same).is_err()
        );
        let odd = a(vec![m(vec![
            ("slots", a(vec![n(0), n(5), n(7)])),
            ("nodes", a(vec![m(node("h", 1, "master")), s("x")])),
        ])]);
        let t = Topology::from_shards(&odd, &ep("s:1"), false, &same).unwrap();
        assert_eq!(t.covered(), 6);
    }

    #[test]
    fn deltas_are_applied_in_place() {
        let mut t = Topology::from_shards(&shards_reply(), &ep("seed:7002"), false, &same).unwrap();
        let before = t.clone();
        assert!(!t.assign(SlotRange::new(0, 10).unwrap(), &ep("10.0.0.1:7000")));
        assert_eq!(t, before);
        assert!(t.assign(SlotRange::new(5, 5).unwrap(), &ep("10.0.0.2:7001")));
        assert_eq!(t.owner(5), Some(&ep("10.0.0.2:7001")));
        assert_eq!(t.owner(4), Some(&ep("10.0.0.1:7000")));
        assert!(t.assign(SlotRange::new(100, 200).unwrap(), &ep("10.0.0.9:7009")));
        assert_eq!(t.owner(150), Some(&ep("10.0.0.9:7009")));
        assert_eq!(t.shards().len(), 4);
        assert_eq!(t.ranges().len(), 7);
    }
}
