//! Cluster topology as clients see it through the simulator: every address of a cluster node
//! replaced by the address of the simulator node in front of it.
//!
//! In cluster mode ([`SimulatorBuilder::cluster`](super::SimulatorBuilder::cluster)) the
//! replies to `CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES` and `CLUSTER REPLICAS` (or
//! `SLAVES`) coming from upstream, and `-MOVED` / `-ASK` errors to any command, are rewritten
//! on their way to the client, so a cluster client that follows them stays behind the
//! simulator. An address no simulator node fronts (a node that was removed, one never added)
//! is left as the cluster wrote it.
//!
//! The rewriting works on parsed frames, never on text searched for addresses: a reply is
//! parsed into an [`Item`] tree that keeps each value's wire form (a bulk string stays a bulk
//! string, a RESP3 map stays a map, a RESP2 flat array of keys and values stays one), the
//! addresses are replaced in place, and the tree is written back. So RESP2 and RESP3 replies
//! come out in the protocol they came in. Parsing is bounded (size, nesting, number of
//! values); a reply that does not parse or does not have the expected shape goes to the
//! client unchanged.

use bytes::{BufMut, Bytes, BytesMut};

use crate::connection::codec::{find_crlf, parse_int};

/// Replies larger than this are passed on unchanged (a topology of thousands of nodes is far
/// smaller).
const MAX_REWRITE_BYTES: usize = 64 * 1024 * 1024;
/// Deepest nesting parsed (`CLUSTER SHARDS` needs 4).
const MAX_DEPTH: usize = 16;
/// Most values parsed in one reply.
const MAX_ITEMS: usize = 4 * 1024 * 1024;

// ===== a lossless tree =====

/// A RESP2 or RESP3 value parsed without losing its wire form: encoding it again gives the
/// bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A value on one line (`+`, `-`, `:`, `_`, `#`, `,`, `(`, and the RESP2 nulls `$-1` and
    /// `*-1`): its type byte and the line without it and without the CRLF.
    Line { kind: u8, line: Bytes },
    /// A blob (`$`, `!`, `=`): its type byte and its body.
    Blob { kind: u8, data: Bytes },
    /// An aggregate (`*`, `~`, `>`, `%`): a map's keys and values are flat, key first.
    Agg { kind: u8, items: Vec<Item> },
}

impl Item {
    /// Parses one whole frame; `None` when it is not one, has bytes after it, holds an
    /// attribute (`|`), or is beyond the limits.
    pub(crate) fn parse(frame: &Bytes) -> Option<Item> {
        if frame.len() > MAX_REWRITE_BYTES {
            return None;
        }
        let mut budget = MAX_ITEMS;
        let (item, end) = parse_at(frame, 0, 0, &mut budget)?;
        (end == frame.len()).then_some(item)
    }

    /// The bytes of this value.
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }

    fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Item::Line { kind, line } => {
                out.put_u8(*kind);
                out.put_slice(line);
                out.put_slice(b"\r\n");
            }
            Item::Blob { kind, data } => {
                out.put_u8(*kind);
                out.put_slice(data.len().to_string().as_bytes());
                out.put_slice(b"\r\n");
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Item::Agg { kind, items } => {
                let n = if *kind == b'%' {
                    items.len() / 2
                } else {
                    items.len()
                };
                out.put_u8(*kind);
                out.put_slice(n.to_string().as_bytes());
                out.put_slice(b"\r\n");
                for item in items {
                    item.encode_into(out);
                }
            }
        }
    }

    /// The text of a simple, bulk or verbatim string (a verbatim string without its format).
    pub(crate) fn text(&self) -> Option<&[u8]> {
        match self {
            Item::Line { kind: b'+', line } => Some(line),
            Item::Blob { kind: b'$', data } => Some(data),
            Item::Blob { kind: b'=', data } => data.get(4..),
            _ => None,
        }
    }

    /// The text of an error reply (`-...` or `!...`).
    pub(crate) fn error(&self) -> Option<&[u8]> {
        match self {
            Item::Line { kind: b'-', line } => Some(line),
            Item::Blob { kind: b'!', data } => Some(data),
            _ => None,
        }
    }

    /// An integer, also one written as a string of digits.
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Item::Line { kind: b':', line } => parse_int(line),
            other => parse_int(other.text()?),
        }
    }

    /// The elements of an array, set or push (`None` for a map or anything else).
    pub(crate) fn elements(&self) -> Option<&[Item]> {
        match self {
            Item::Agg { kind, items } if *kind != b'%' => Some(items),
            _ => None,
        }
    }

    /// Replaces the text of a string, keeping its kind; false when this is not a string (or
    /// the text cannot be a simple string's).
    fn set_text(&mut self, text: &[u8]) -> bool {
        match self {
            Item::Line { kind: b'+', line } => {
                if text.iter().any(|&b| b == b'\r' || b == b'\n') {
                    return false;
                }
                *line = Bytes::copy_from_slice(text);
                true
            }
            Item::Blob { kind: b'$', data } => {
                *data = Bytes::copy_from_slice(text);
                true
            }
            Item::Blob { kind: b'=', data } => {
                let mut new = BytesMut::with_capacity(4 + text.len());
                new.put_slice(data.get(..4).unwrap_or(b"txt:"));
                new.put_slice(text);
                *data = new.freeze();
                true
            }
            _ => false,
        }
    }

    /// Replaces an integer (`:`), or a string of digits, with `n`.
    fn set_int(&mut self, n: i64) -> bool {
        match self {
            Item::Line { kind: b':', line } => {
                *line = Bytes::from(n.to_string());
                true
            }
            other => other.set_text(n.to_string().as_bytes()),
        }
    }

    /// The flat key/value list of a record: a RESP3 map, or a RESP2 array of even length.
    fn record_mut(&mut self) -> Option<&mut Vec<Item>> {
        match self {
            Item::Agg { kind: b'%', items } => Some(items),
            Item::Agg { kind: b'*', items } if items.len() % 2 == 0 => Some(items),
            _ => None,
        }
    }
}

/// Parses the value at `pos`; returns it and where it ends.
fn parse_at(frame: &Bytes, pos: usize, depth: usize, budget: &mut usize) -> Option<(Item, usize)> {
    *budget = budget.checked_sub(1)?;
    let kind = *frame.get(pos)?;
    let end = find_crlf(frame, pos + 1, frame.len())?;
    let line = frame.slice(pos + 1..end);
    let next = end + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Some((Item::Line { kind, line }, next)),
        b'$' | b'!' | b'=' => {
            let len = parse_int(&line)?;
            if len < 0 {
                return (kind == b'$' && len == -1).then_some((Item::Line { kind, line }, next));
            }
            let body_end = next.checked_add(usize::try_from(len).ok()?)?;
            if frame.get(body_end..body_end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let data = frame.slice(next..body_end);
            Some((Item::Blob { kind, data }, body_end + 2))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = parse_int(&line)?;
            if n < 0 {
                return (kind == b'*' && n == -1).then_some((Item::Line { kind, line }, next));
            }
            if depth >= MAX_DEPTH {
                return None;
            }
            let n = usize::try_from(n).ok()?;
            let n = if kind == b'%' { n.checked_mul(2)? } else { n };
            // Every value takes at least three bytes: never reserve for more than could come.
            let mut items = Vec::with_capacity(n.min((frame.len() - next) / 3));
            let mut at = next;
            for _ in 0..n {
                let (item, after) = parse_at(frame, at, depth + 1, budget)?;
                items.push(item);
                at = after;
            }
            Some((Item::Agg { kind, items }, at))
        }
        _ => None,
    }
}

// ===== the address map =====

/// Where clients are sent instead of a cluster node: the simulator node in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announce {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Announce {
    /// `host:port`, as Redis writes addresses (an IPv6 address without brackets).
    pub(crate) fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Cluster node addresses and the simulator addresses that replace them. The first entry for
/// an address wins (two simulator nodes in front of one cluster node: the older one).
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrMap {
    entries: Vec<(String, u16, Announce)>,
}

impl AddrMap {
    /// Maps the cluster address `host:port` to `to`.
    pub(crate) fn insert(&mut self, host: &str, port: u16, to: Announce) {
        self.entries.push((normal_host(host.as_bytes()), port, to));
    }

    /// The simulator address for a cluster address, host compared without regard to case or
    /// IPv6 brackets.
    pub(crate) fn lookup(&self, host: &[u8], port: u16) -> Option<&Announce> {
        if host.is_empty() {
            return None;
        }
        let host = normal_host(host);
        self.entries
            .iter()
            .find(|(h, p, _)| *p == port && *h == host)
            .map(|(_, _, to)| to)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn normal_host(host: &[u8]) -> String {
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    String::from_utf8_lossy(host).to_ascii_lowercase()
}

/// Splits `host:port` at the last colon (IPv6 hosts have colons of their own).
pub(crate) fn split_host_port(addr: &[u8]) -> Option<(&[u8], u16)> {
    let colon = addr.iter().rposition(|&b| b == b':')?;
    let port = std::str::from_utf8(&addr[colon + 1..]).ok()?.parse().ok()?;
    Some((&addr[..colon], port))
}

// ===== what to rewrite =====

/// How the reply to a forwarded command is rewritten in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Rewrite {
    /// Only a `-MOVED` or `-ASK` error.
    #[default]
    Redirects,
    /// `CLUSTER SLOTS`.
    Slots,
    /// `CLUSTER SHARDS`.
    Shards,
    /// `CLUSTER NODES`: one string of node lines.
    Nodes,
    /// `CLUSTER REPLICAS` / `SLAVES`: an array of node lines.
    NodeLines,
}

impl Rewrite {
    /// What the reply to this command needs.
    pub(crate) fn for_command(args: &[Bytes]) -> Rewrite {
        let [name, sub, ..] = args else {
            return Rewrite::Redirects;
        };
        if !name.eq_ignore_ascii_case(b"cluster") {
            return Rewrite::Redirects;
        }
        let sub = sub.to_ascii_lowercase();
        match &sub[..] {
            b"slots" => Rewrite::Slots,
            b"shards" => Rewrite::Shards,
            b"nodes" => Rewrite::Nodes,
            b"replicas" | b"slaves" => Rewrite::NodeLines,
            _ => Rewrite::Redirects,
        }
    }
}

/// Whether a reply may need rewriting: a cheap look before the address map is built.
pub(crate) fn may_rewrite(frame: &[u8], rewrite: Rewrite) -> bool {
    rewrite != Rewrite::Redirects || frame.starts_with(b"-MOVED ") || frame.starts_with(b"-ASK ")
}

/// The reply rewritten for the client, or `None` when it stays as it is (nothing to rewrite,
/// no address known, or not the expected shape).
pub(crate) fn rewrite_reply(frame: &Bytes, rewrite: Rewrite, map: &AddrMap) -> Option<Bytes> {
    if map.is_empty() {
        return None;
    }
    let first = *frame.first()?;
    if first == b'-' {
        return rewrite_redirect(frame, map);
    }
    if rewrite == Rewrite::Redirects {
        return None;
    }
    let mut item = Item::parse(frame)?;
    let changed = match rewrite {
        Rewrite::Slots => rewrite_slots(&mut item, map),
        Rewrite::Shards => rewrite_shards(&mut item, map),
        Rewrite::Nodes => rewrite_node_string(&mut item, map),
        Rewrite::NodeLines => match &mut item {
            Item::Agg { kind: b'*', items } => items
                .iter_mut()
                .fold(false, |any, line| rewrite_node_string(line, map) | any),
            _ => false,
        },
        Rewrite::Redirects => false,
    };
    changed.then(|| item.encode())
}

/// `-MOVED <slot> <host:port>` and `-ASK <slot> <host:port>` with the address replaced.
fn rewrite_redirect(frame: &Bytes, map: &AddrMap) -> Option<Bytes> {
    let line = frame.strip_prefix(b"-")?.strip_suffix(b"\r\n")?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (word, slot, addr) = (parts.next()?, parts.next()?, parts.next()?);
    if !(word == b"MOVED" || word == b"ASK") {
        return None;
    }
    let (host, port) = split_host_port(addr)?;
    let to = map.lookup(host, port)?;
    let mut out = BytesMut::with_capacity(frame.len() + 16);
    out.put_u8(b'-');
    out.put_slice(word);
    out.put_u8(b' ');
    out.put_slice(slot);
    out.put_u8(b' ');
    out.put_slice(to.addr().as_bytes());
    out.put_slice(b"\r\n");
    Some(out.freeze())
}

/// `CLUSTER SLOTS`: `[[from, to, [host, port, id, {meta}], ...], ...]`.
fn rewrite_slots(item: &mut Item, map: &AddrMap) -> bool {
    let Item::Agg { kind: b'*', items } = item else {
        return false;
    };
    let mut changed = false;
    for range in items {
        let Item::Agg {
            kind: b'*',
            items: parts,
        } = range
        else {
            continue;
        };
        for node in parts.iter_mut().skip(2) {
            let Item::Agg {
                kind: b'*',
                items: fields,
            } = node
            else {
                continue;
            };
            changed |= rewrite_slots_node(fields, map);
        }
    }
    changed
}

fn rewrite_slots_node(fields: &mut [Item], map: &AddrMap) -> bool {
    let Some(port) = fields.get(1).and_then(Item::int) else {
        return false;
    };
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    // The endpoint first; then the ip and hostname of the metadata (Redis 7), for a node
    // announced by a name the map does not know.
    let mut hosts: Vec<Vec<u8>> = Vec::new();
    if let Some(h) = fields.first().and_then(Item::text) {
        hosts.push(h.to_vec());
    }
    if let Some(meta) = fields.get_mut(3).and_then(Item::record_mut) {
        for pair in meta.chunks_exact(2) {
            if matches_key(&pair[0], &["ip", "hostname"]) {
                hosts.extend(pair[1].text().map(<[u8]>::to_vec));
            }
        }
    }
    let Some(to) = hosts.iter().find_map(|h| map.lookup(h, port)).cloned() else {
        return false;
    };
    if let Some(endpoint) = fields.first_mut() {
        // An empty endpoint means "the node you asked", which is the simulator node already.
        if endpoint.text().is_some_and(|h| !h.is_empty()) {
            endpoint.set_text(to.host.as_bytes());
        }
    }
    if let Some(p) = fields.get_mut(1) {
        p.set_int(i64::from(to.port));
    }
    if let Some(meta) = fields.get_mut(3).and_then(Item::record_mut) {
        for pair in meta.chunks_exact_mut(2) {
            if matches_key(&pair[0], &["ip", "hostname"]) {
                pair[1].set_text(to.host.as_bytes());
            }
        }
    }
    true
}

/// `CLUSTER SHARDS`: `[{slots: [...], nodes: [{id, port, ip, endpoint, hostname?, ...}]}]`,
/// as maps in RESP3 and flat key/value arrays in RESP2.
fn rewrite_shards(item: &mut Item, map: &AddrMap) -> bool {
    let Item::Agg { kind: b'*', items } = item else {
        return false;
    };
    let mut changed = false;
    for shard in items {
        let Some(shard) = shard.record_mut() else {
            continue;
        };
        for pair in shard.chunks_exact_mut(2) {
            if !matches_key(&pair[0], &["nodes"]) {
                continue;
            }
            let Item::Agg {
                kind: b'*',
                items: nodes,
            } = &mut pair[1]
            else {
                continue;
            };
            for node in nodes {
                if let Some(fields) = node.record_mut() {
                    changed |= rewrite_shard_node(fields, map);
                }
            }
        }
    }
    changed
}

fn rewrite_shard_node(fields: &mut [Item], map: &AddrMap) -> bool {
    const HOSTS: [&str; 3] = ["ip", "endpoint", "hostname"];
    let mut port = None;
    let mut hosts: Vec<Vec<u8>> = Vec::new();
    for pair in fields.chunks_exact(2) {
        if matches_key(&pair[0], &["port"]) {
            port = pair[1].int().and_then(|p| u16::try_from(p).ok());
        } else if matches_key(&pair[0], &HOSTS) {
            hosts.extend(pair[1].text().map(<[u8]>::to_vec));
        }
    }
    let Some(port) = port else {
        return false;
    };
    let Some(to) = hosts.iter().find_map(|h| map.lookup(h, port)).cloned() else {
        return false;
    };
    for pair in fields.chunks_exact_mut(2) {
        if matches_key(&pair[0], &["port"]) {
            pair[1].set_int(i64::from(to.port));
        } else if matches_key(&pair[0], &HOSTS) && pair[1].text().is_some_and(|h| !h.is_empty()) {
            pair[1].set_text(to.host.as_bytes());
        }
    }
    true
}

fn matches_key(key: &Item, names: &[&str]) -> bool {
    key.text()
        .is_some_and(|k| names.iter().any(|n| k.eq_ignore_ascii_case(n.as_bytes())))
}

/// A string of `CLUSTER NODES` lines, rewritten in place.
fn rewrite_node_string(item: &mut Item, map: &AddrMap) -> bool {
    let Some(text) = item.text() else {
        return false;
    };
    let Some(new) = rewrite_node_lines(text, map) else {
        return false;
    };
    item.set_text(&new)
}

/// `<id> <ip:port@cport[,hostname]> <flags> ...` per line: the address (and a hostname) of
/// each known node replaced; the cluster bus port is left, as nobody dials it through here.
pub(crate) fn rewrite_node_lines(text: &[u8], map: &AddrMap) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut changed = false;
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        match rewrite_node_line(line, map) {
            Some(new) => {
                out.extend_from_slice(&new);
                changed = true;
            }
            None => out.extend_from_slice(line),
        }
    }
    changed.then_some(out)
}

fn rewrite_node_line(line: &[u8], map: &AddrMap) -> Option<Vec<u8>> {
    let mut fields = line.splitn(3, |&b| b == b' ');
    let (id, addr, rest) = (fields.next()?, fields.next()?, fields.next());
    let at = addr
        .iter()
        .position(|&b| b == b'@' || b == b',')
        .unwrap_or(addr.len());
    let (host, port) = split_host_port(&addr[..at])?;
    let to = map.lookup(host, port)?;
    let tail = &addr[at..];
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(id);
    out.push(b' ');
    out.extend_from_slice(to.addr().as_bytes());
    match tail.iter().position(|&b| b == b',') {
        // `@cport,hostname`: a hostname is an address too.
        Some(comma) if comma + 1 < tail.len() => {
            out.extend_from_slice(&tail[..=comma]);
            out.extend_from_slice(to.host.as_bytes());
        }
        _ => out.extend_from_slice(tail),
    }
    if let Some(rest) = rest {
        out.push(b' ');
        out.extend_from_slice(rest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> AddrMap {
        let mut m = AddrMap::default();
        let to = |port| Announce {
            host: "10.9.9.9".into(),
            port,
        };
        m.insert("127.0.0.1", 7000, to(16000));
        m.insert("127.0.0.1", 7001, to(16001));
        m
    }

    fn rw(frame: &[u8], rewrite: Rewrite) -> Option<String> {
        rewrite_reply(&Bytes::copy_from_slice(frame), rewrite, &map())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn the_tree_gives_back_the_bytes_it_was_parsed_from() {
        for frame in [
            &b"*2\r\n$-1\r\n*-1\r\n"[..],
            b"%1\r\n+a\r\n~2\r\n:1\r\n,1.5\r\n",
            b">3\r\n+x\r\n_\r\n#t\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b"!3\r\nERR\r\n",
            b"*0\r\n",
        ] {
            let item = Item::parse(&Bytes::copy_from_slice(frame)).unwrap();
            assert_eq!(&item.encode()[..], frame);
        }
    }

    #[test]
    fn odd_input_is_refused_without_panicking() {
        for frame in [
            &b""[..],
            b"*",
            b"*2\r\n:1\r\n",
            b"$5\r\nab\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"|1\r\n+a\r\n+b\r\n+c\r\n",
            b"*1\r\n:1\r\nextra",
            b"*99999999999999\r\n",
            b"?\r\n",
        ] {
            assert!(Item::parse(&Bytes::copy_from_slice(frame)).is_none());
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(Item::parse(&Bytes::from([&deep[..], b":1\r\n"].concat())).is_none());
        for frame in [
            &b"-MOVED\r\n"[..],
            b"-MOVED 1\r\n",
            b"-ASK 1 nocolon\r\n",
            b"-ASK 1 h:x\r\n",
        ] {
            assert_eq!(rw(frame, Rewrite::Redirects), None);
        }
        assert_eq!(rw(b"*1\r\n*1\r\n:5\r\n", Rewrite::Slots), None);
        assert_eq!(rw(b"*1\r\n%1\r\n+nodes\r\n:1\r\n", Rewrite::Shards), None);
        assert_eq!(rw(b"$3\r\na b\r\n", Rewrite::Nodes), None);
    }

    #[test]
    fn redirects_name_the_simulator() {
        assert_eq!(
            rw(b"-MOVED 3999 127.0.0.1:7001\r\n", Rewrite::Redirects).unwrap(),
            "-MOVED 3999 10.9.9.9:16001\r\n"
        );
        assert_eq!(
            rw(b"-ASK 12 127.0.0.1:7000\r\n", Rewrite::Slots).unwrap(),
            "-ASK 12 10.9.9.9:16000\r\n"
        );
        assert_eq!(
            rw(b"-MOVED 3999 127.0.0.1:7002\r\n", Rewrite::Redirects),
            None
        );
        assert_eq!(rw(b"-ERR no\r\n", Rewrite::Redirects), None);
    }

    #[test]
    fn slots_in_resp2_and_resp3_keep_their_shape() {
        let resp2 = b"*1\r\n*4\r\n:0\r\n:99\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nir\r\n";
        assert_eq!(
            rw(resp2, Rewrite::Slots).unwrap(),
            "*1\r\n*4\r\n:0\r\n:99\r\n*3\r\n$8\r\n10.9.9.9\r\n:16000\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nir\r\n"
        );
        let resp3 = b"*1\r\n*3\r\n:0\r\n:99\r\n*4\r\n$4\r\nhost\r\n:7001\r\n$2\r\nid\r\n%2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$4\r\nhost\r\n";
        assert_eq!(
            rw(resp3, Rewrite::Slots).unwrap(),
            "*1\r\n*3\r\n:0\r\n:99\r\n*4\r\n$8\r\n10.9.9.9\r\n:16001\r\n$2\r\nid\r\n%2\r\n$2\r\nip\r\n$8\r\n10.9.9.9\r\n$8\r\nhostname\r\n$8\r\n10.9.9.9\r\n"
        );
    }

    #[test]
    fn shards_as_maps_and_as_flat_arrays() {
        let node = |open: &str| {
            format!("{open}$4\r\nport\r\n:7000\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n")
        };
        let resp3 = format!(
            "*1\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:99\r\n$5\r\nnodes\r\n*1\r\n{}",
            node("%4\r\n")
        );
        let got = rw(resp3.as_bytes(), Rewrite::Shards).unwrap();
        assert!(got.contains("%4\r\n$4\r\nport\r\n:16000\r\n$2\r\nip\r\n$8\r\n10.9.9.9\r\n$8\r\nendpoint\r\n$8\r\n10.9.9.9\r\n"), "{got}");
        let resp2 = format!(
            "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:99\r\n$5\r\nnodes\r\n*1\r\n{}",
            node("*8\r\n")
        );
        let got = rw(resp2.as_bytes(), Rewrite::Shards).unwrap();
        assert!(got.starts_with("*1\r\n*4\r\n"), "{got}");
        assert!(got.contains("*8\r\n$4\r\nport\r\n:16000\r\n"), "{got}");
        assert!(!got.contains("127.0.0.1"), "{got}");
    }

    #[test]
    fn node_lines_keep_everything_but_the_address() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-99\n\
                    b2 127.0.0.1:7001@17001,db1 master - 0 1 2 connected 100-199\n\
                    c3 127.0.0.1:7002@17002 master - 0 1 3 connected\n";
        let bulk = format!("${}\r\n{text}\r\n", text.len());
        let got = rw(bulk.as_bytes(), Rewrite::Nodes).unwrap();
        let want = "a1 10.9.9.9:16000@17000 myself,master - 0 0 1 connected 0-99\n\
                    b2 10.9.9.9:16001@17001,10.9.9.9 master - 0 1 2 connected 100-199\n\
                    c3 127.0.0.1:7002@17002 master - 0 1 3 connected\n";
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()));
        let verbatim = format!("={}\r\ntxt:{text}\r\n", text.len() + 4);
        let got = rw(verbatim.as_bytes(), Rewrite::Nodes).unwrap();
        assert_eq!(got, format!("={}\r\ntxt:{want}\r\n", want.len() + 4));
        let lines = format!("*1\r\n${}\r\n{}\r\n", 40, &text[..40]);
        assert!(rw(lines.as_bytes(), Rewrite::NodeLines)
            .unwrap()
            .contains("10.9.9.9:16000"));
    }

    #[test]
    fn commands_are_told_apart_in_any_case() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            Rewrite::for_command(&args(&["cluster", "SLOTS"])),
            Rewrite::Slots
        );
        assert_eq!(
            Rewrite::for_command(&args(&["CLUSTER", "shards"])),
            Rewrite::Shards
        );
        assert_eq!(
            Rewrite::for_command(&args(&["CLUSTER", "NODES"])),
            Rewrite::Nodes
        );
        assert_eq!(
            Rewrite::for_command(&args(&["CLUSTER", "REPLICAS", "x"])),
            Rewrite::NodeLines
        );
        assert_eq!(
            Rewrite::for_command(&args(&["GET", "k"])),
            Rewrite::Redirects
        );
        assert_eq!(
            Rewrite::for_command(&args(&["CLUSTER"])),
            Rewrite::Redirects
        );
    }
}
