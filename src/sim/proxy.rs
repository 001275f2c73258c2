//! The RESP proxy: nodes that accept clients, and the two pumps of each client connection.
//!
//! Each client connection gets its own upstream: a TCP connection to the node's redis-server,
//! or a session of the in-memory store. Two loops serve it:
//!
//! - the **reader** cuts what the client sends into whole frames, runs them through the
//!   interceptors, answers the maintenance handshake itself, and forwards the rest;
//! - the **writer** is the only one that writes to the client. It writes whole frames only:
//!   replies from upstream, answers given by the proxy (kept in their place among the replies,
//!   so a pipelining client gets its answers in order), and frames injected by scenarios, which
//!   therefore always land between two replies.
//!
//! The node's fault state is applied here: forwarding held (failover), both directions held
//! (blackhole, of a node or of single connections), added latency on replies, replies written
//! one byte at a time (trickle), refused connections (the listener is closed, so clients get a
//! real `connection refused`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::intercept::Outcome;
use super::resp::{self, command_args, encode_command, Cut, Elem, FrameCutter, FrameLimits};
use super::store::Session;
use super::topology::{self, Rewrite};
use super::upstream::{Target, UpFrame};
use super::{lock, Core, EndpointType, AZURE_CHANNEL};

/// The fault state of a node, changed by scenarios.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) failovers: u32,
    pub(crate) migrations: u32,
    pub(crate) blackhole: bool,
    pub(crate) refusing: bool,
    pub(crate) latency: Duration,
    /// Write to clients one byte at a time, pausing this long after each byte.
    pub(crate) trickle: Option<Duration>,
}

/// `trickle_nanos` when bytes are written as they come.
const NO_TRICKLE: u64 = u64::MAX;

/// One listening port of the simulator.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) key: usize,
    pub(crate) id: String,
    pub(crate) listen_host: String,
    pub(crate) addr: SocketAddr,
    pub(crate) target: Target,
    /// In cluster mode, the addresses its cluster node goes by (the target, and what the node
    /// announces for itself): the addresses replaced by this node's in topology replies.
    pub(crate) aliases: Vec<(String, u16)>,
    pub(crate) shard_id: String,
    pub(crate) total: AtomicU64,
    pub(crate) faults: Mutex<Faults>,
    /// The last MIGRATED / FAILED_OVER (name, seq), replayed to new connections when replay is on.
    pub(crate) last_end: Mutex<Option<(&'static str, i64)>>,
    /// The maintenance window in progress, for connections that join during it.
    pub(crate) window: Mutex<Option<super::notification::Window>>,
    accepting: watch::Sender<bool>,
    /// Client frames are not forwarded (failover, blackhole).
    hold: watch::Sender<bool>,
    /// Nothing is written to clients either (blackhole).
    dark: watch::Sender<bool>,
    latency_nanos: AtomicU64,
    trickle_nanos: AtomicU64,
    pub(crate) stop: CancellationToken,
}

impl Node {
    pub(crate) fn new(
        key: usize,
        listen_host: String,
        addr: SocketAddr,
        target: Target,
        aliases: Vec<(String, u16)>,
        stop: CancellationToken,
    ) -> Node {
        let id = format!("{}:{}@{}", target.host(), target.port(), addr.port());
        Node {
            key,
            id,
            listen_host,
            addr,
            target,
            aliases,
            shard_id: (key + 1).to_string(),
            total: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            last_end: Mutex::new(None),
            window: Mutex::new(None),
            accepting: watch::Sender::new(true),
            hold: watch::Sender::new(false),
            dark: watch::Sender::new(false),
            latency_nanos: AtomicU64::new(0),
            trickle_nanos: AtomicU64::new(NO_TRICKLE),
            stop,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether its cluster node goes by `host:port`.
    pub(crate) fn knows(&self, host: &str, port: u16) -> bool {
        self.aliases
            .iter()
            .any(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
    }

    /// The address clients are told to use for it: the listen host, or `127.0.0.1` when it
    /// listens on every address (`0.0.0.0`, `::`), which nobody can dial.
    pub(crate) fn announce(&self) -> super::topology::Announce {
        let host = match self.listen_host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            _ => self.listen_host.clone(),
        };
        super::topology::Announce {
            host,
            port: self.port(),
        }
    }

    /// Changes the fault state and publishes what follows from it.
    pub(crate) fn update_faults(&self, migrate_latency: Duration, f: impl FnOnce(&mut Faults)) {
        let mut faults = lock(&self.faults);
        f(&mut faults);
        let hold = faults.failovers > 0 || faults.blackhole;
        let mut latency = faults.latency;
        if faults.migrations > 0 {
            latency = latency.saturating_add(migrate_latency);
        }
        self.latency_nanos.store(
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let trickle = faults.trickle.map_or(NO_TRICKLE, |p| {
            u64::try_from(p.as_nanos()).unwrap_or(NO_TRICKLE - 1)
        });
        self.trickle_nanos.store(trickle, Ordering::Relaxed);
        self.hold
            .send_if_modified(|h| std::mem::replace(h, hold) != hold);
        let dark = faults.blackhole;
        self.dark
            .send_if_modified(|d| std::mem::replace(d, dark) != dark);
        let accept = !faults.refusing;
        self.accepting
            .send_if_modified(|a| std::mem::replace(a, accept) != accept);
    }

    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    /// The pause after each byte written to a client, when replies trickle.
    fn trickle(&self) -> Option<Duration> {
        match self.trickle_nanos.load(Ordering::Relaxed) {
            NO_TRICKLE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

/// What a scenario asks of a connection.
#[derive(Debug)]
pub(crate) enum Control {
    /// Write these bytes at the next frame boundary.
    Send(Bytes),
    /// Close the connection: with a reset (RST) or a graceful FIN.
    Close { reset: bool },
}

/// What a client has asked of the proxy, as seen by scenarios.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnState {
    pub(crate) maint: Option<EndpointType>,
    pub(crate) azure: bool,
    pub(crate) resp3: bool,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: String,
    pub(crate) node: usize,
    pub(crate) serial: u64,
    pub(crate) client: SocketAddr,
    pub(crate) connected_at: SystemTime,
    pub(crate) state: Mutex<ConnState>,
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
    /// This connection alone is blackholed: nothing forwarded, nothing written.
    pub(crate) dark: watch::Sender<bool>,
    /// When it was registered: the origin of `active_ms`.
    pub(crate) born: Instant,
    /// Milliseconds after `born` when bytes last came from or went to the client.
    pub(crate) active_ms: AtomicU64,
}

impl Conn {
    /// Queues bytes for the client; false when the connection is gone.
    pub(crate) fn send(&self, bytes: Bytes) -> bool {
        self.ctl.send(Control::Send(bytes)).is_ok()
    }

    /// Asks the connection to close; false when it is already gone.
    pub(crate) fn close(&self, reset: bool) -> bool {
        self.ctl.send(Control::Close { reset }).is_ok()
    }

    pub(crate) fn state(&self) -> ConnState {
        lock(&self.state).clone()
    }

    /// Notes that bytes came from or went to the client just now.
    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.active_ms.store(ms, Ordering::Relaxed);
    }

    /// How long nothing came from or went to the client.
    fn idle(&self) -> Duration {
        let active = Duration::from_millis(self.active_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(active)
    }

    /// Blackholes this connection in both directions, or ends that.
    pub(crate) fn set_dark(&self, dark: bool) {
        self.dark
            .send_if_modified(|d| std::mem::replace(d, dark) != dark);
    }
}

/// Two flags that both must be false for traffic to pass: the node's and the connection's.
struct Gate {
    node: watch::Receiver<bool>,
    conn: watch::Receiver<bool>,
}

impl Gate {
    fn new(node: &watch::Sender<bool>, conn: &watch::Sender<bool>) -> Gate {
        Gate {
            node: node.subscribe(),
            conn: conn.subscribe(),
        }
    }

    fn is_shut(&mut self) -> bool {
        *self.node.borrow_and_update() || *self.conn.borrow_and_update()
    }

    /// Waits until both flags are false; an error when the node or connection is gone.
    async fn opened(&mut self) -> Result<(), ()> {
        while self.is_shut() {
            tokio::select! {
                r = self.node.changed() => r.map_err(|_| ())?,
                r = self.conn.changed() => r.map_err(|_| ())?,
            }
        }
        Ok(())
    }

    /// Resolves when either flag changes.
    async fn changed(&mut self) -> Result<(), ()> {
        tokio::select! {
            r = self.node.changed() => r.map_err(|_| ()),
            r = self.conn.changed() => r.map_err(|_| ()),
        }
    }
}

/// The instant `d` from now, saturating far in the future instead of overflowing.
pub(crate) fn after(d: Duration) -> Instant {
    crate::clock::deadline(tokio::time::Instant::now(), d).into_std()
}

// ===== accept loop =====

/// Accepts clients on a node until the simulator stops or the node is removed.
pub(crate) async fn run_node(core: Arc<Core>, node: Arc<Node>, listener: TcpListener) {
    let mut accepting = node.accepting.subscribe();
    let mut listener = Some(listener);
    loop {
        let open = *accepting.borrow_and_update();
        if !open {
            // Closing the socket makes new clients see a real `connection refused`.
            listener = None;
        } else if listener.is_none() {
            listener = tokio::select! {
                _ = node.stop.cancelled() => return,
                l = rebind(&node) => l,
            };
        }
        tokio::select! {
            _ = node.stop.cancelled() => return,
            changed = accepting.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = accept(listener.as_ref()) => match accepted {
                // A client that connected between `refuse` and the listener's closing (the
                // kernel completes handshakes on its own) is reset, as the closed port would.
                Ok((stream, _)) if !*node.accepting.borrow() => {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let core = Arc::clone(&core);
                    let node = Arc::clone(&node);
                    tokio::spawn(async move { serve(core, node, stream, peer).await });
                }
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn rebind(node: &Node) -> Option<TcpListener> {
    let mut delay = Duration::from_millis(10);
    for _ in 0..50 {
        match TcpListener::bind(node.addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "cannot listen again yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
    tracing::error!(node = %node.id, "gave up listening again on {}", node.addr);
    None
}

// ===== one connection =====

enum Upstream {
    Tcp(OwnedWriteHalf),
    Memory(Session),
}

/// What the writer owes the client, in order.
#[derive(Debug)]
enum Owed {
    /// This many replies from upstream (pushes excluded), rewritten so in cluster mode.
    Replies { n: usize, rewrite: Rewrite },
    /// An answer the proxy gives itself.
    Local(Bytes),
    /// Close once everything before this is written.
    Close,
}

async fn serve(core: Arc<Core>, node: Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let conn = core.register(&node, peer, ctl_tx);
    tracing::debug!(node = %node.id, connection = %conn.id, client = %peer, "client connected");
    let (up_tx, up_rx) = mpsc::channel::<UpFrame>(1024);
    let (upstream, up_read) = match &node.target {
        Target::Memory => (Upstream::Memory(core.memory.session(up_tx.clone())), None),
        Target::Redis { host, port } => {
            let dial = TcpStream::connect((host.as_str(), *port));
            match tokio::time::timeout(Duration::from_secs(5), dial).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    (Upstream::Tcp(w), Some(r))
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = %node.id, error = %e, "cannot reach the backend {host}:{port}; closing the client");
                    core.unregister(&conn.id);
                    return;
                }
                Err(_) => {
                    tracing::warn!(node = %node.id, "the backend {host}:{port} did not answer in 5 s; closing the client");
                    core.unregister(&conn.id);
                    return;
                }
            }
        }
    };
    let (client_r, client_w) = stream.into_split();
    let (owed_tx, owed_rx) = mpsc::unbounded_channel();
    let memory_tx = match upstream {
        Upstream::Memory(_) => Some(up_tx.clone()),
        Upstream::Tcp(_) => None,
    };
    let mut reader = Reader {
        core: Arc::clone(&core),
        node: Arc::clone(&node),
        conn: Arc::clone(&conn),
        upstream,
        up_tx: memory_tx,
        owed: owed_tx,
    };
    let mut writer = Writer {
        core: Arc::clone(&core),
        gate: Gate::new(&node.dark, &conn.dark),
        node: Arc::clone(&node),
        conn: Arc::clone(&conn),
        out: client_w,
        pending: VecDeque::new(),
        buf: BytesMut::new(),
    };
    let pump_node = Arc::clone(&node);
    let pump = async move {
        if let Some(r) = up_read {
            pump_upstream(r, &pump_node, up_tx).await;
        } else {
            drop(up_tx);
        }
        std::future::pending::<()>().await
    };
    let reason = tokio::select! {
        _ = node.stop.cancelled() => "the simulator stopped",
        idle = idle_watch(&conn, core.idle_timeout) => idle,
        r = reader.run(client_r) => r,
        w = writer.run(ctl_rx, owed_rx, up_rx) => w,
        _ = pump => "unreachable",
    };
    tracing::debug!(node = %node.id, connection = %conn.id, reason, "connection closed");
    core.unregister(&conn.id);
}

/// Resolves once the connection has been idle (nothing read from the client, nothing written to
/// it) for `timeout`, as the test proxy's socket timeout closes it; never without a timeout.
async fn idle_watch(conn: &Conn, timeout: Option<Duration>) -> &'static str {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let idle = conn.idle();
        if idle >= timeout {
            return "idle for longer than the timeout";
        }
        tokio::time::sleep(timeout - idle).await;
    }
}

/// Reads replies from the backend, cut into frames and stamped with the latency in force.
async fn pump_upstream(mut r: OwnedReadHalf, node: &Node, tx: mpsc::Sender<UpFrame>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut cutter = FrameCutter::new(FrameLimits::SERVER);
    loop {
        loop {
            match cutter.next(&mut buf) {
                Ok(Some(Cut::Frame(bytes))) => {
                    let due = after(node.latency());
                    if tx.send(UpFrame { bytes, due }).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Cut::Inline(_))) | Ok(None) => break,
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e, "the backend sent bytes that are not RESP; closing");
                    return;
                }
            }
        }
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

// ===== reader: client -> upstream =====

/// Resolves once the client has closed its side; what it sends meanwhile stays in `buf`.
async fn client_gone(conn: &Conn, client: &mut OwnedReadHalf, buf: &mut BytesMut) -> &'static str {
    loop {
        if buf.len() >= FrameLimits::CLIENT.max_frame {
            // Enough buffered: stop reading until the command in hand is done.
            return std::future::pending().await;
        }
        match client.read_buf(buf).await {
            Ok(0) => return "the client closed the connection",
            Err(_) => return "reading from the client failed",
            Ok(_) => conn.touch(),
        }
    }
}

struct Reader {
    core: Arc<Core>,
    node: Arc<Node>,
    conn: Arc<Conn>,
    upstream: Upstream,
    up_tx: Option<mpsc::Sender<UpFrame>>,
    owed: mpsc::UnboundedSender<Owed>,
}

/// Reads what the client has sent so far into `buf`; an error when the client has closed or
/// reset the connection, in which case what was read is not to be served.
async fn drain_if_open(client: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<(), &'static str> {
    let start = buf.len();
    // A few reads: enough to find the end of what was sent into the dark, never a wait on a
    // client that keeps sending.
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(20), client.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                buf.truncate(start);
                return Err("the client gave the connection up while its path was dark");
            }
            Ok(Ok(_)) => continue,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

impl Reader {
    async fn run(&mut self, mut client: OwnedReadHalf) -> &'static str {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut cutter = FrameCutter::new(FrameLimits::CLIENT);
        let mut hold = Gate::new(&self.node.hold, &self.conn.dark);
        loop {
            let mut batch = BytesMut::new();
            loop {
                let cut = match cutter.next(&mut buf) {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        if let Err(r) = self.flush(&mut batch).await {
                            return r;
                        }
                        tracing::warn!(connection = %self.conn.id, error = %e, "client sent bytes that are not RESP");
                        self.owe(Owed::Local(Bytes::from(format!(
                            "-ERR Protocol error: {e}\r\n"
                        ))));
                        self.owe(Owed::Close);
                        // The writer closes the connection once the error is written.
                        return std::future::pending().await;
                    }
                };
                if hold.is_shut() {
                    if let Err(r) = self.flush(&mut batch).await {
                        return r;
                    }
                    let dark = *self.node.dark.borrow() || *self.conn.dark.borrow();
                    if hold.opened().await.is_err() {
                        return "the node was removed";
                    }
                    // After a blackhole, what the client sent meanwhile was still on its way
                    // (its kernel retransmitting): it arrives only if the client still holds
                    // the connection. One that closed or reset it gave it up, and none of it
                    // runs.
                    if dark {
                        if let Err(r) = drain_if_open(&mut client, &mut buf).await {
                            return r;
                        }
                    }
                }
                // A blocking command of the memory store may wait long; a client that leaves
                // meanwhile ends it, as Redis unblocks a client that disconnects.
                let conn = Arc::clone(&self.conn);
                let handled = tokio::select! {
                    biased;
                    r = self.handle(cut, &mut batch) => r,
                    gone = client_gone(&conn, &mut client, &mut buf) => return gone,
                };
                if let Err(r) = handled {
                    return r;
                }
            }
            if let Err(r) = self.flush(&mut batch).await {
                return r;
            }
            // Held (a failover, a blackhole): what the client sends from now on stays in the
            // socket, as it would in the network, and goes on once the gate opens; a client
            // that reset the connection meanwhile is found then, and nothing of it runs. What
            // was read before had reached the server already.
            match client.read_buf(&mut buf).await {
                Ok(0) => return "the client closed the connection",
                Ok(_) => self.conn.touch(),
                Err(_) => return "reading from the client failed",
            }
        }
    }

    fn owe(&self, owed: Owed) {
        let _ = self.owed.send(owed);
    }

    async fn flush(&mut self, batch: &mut BytesMut) -> Result<(), &'static str> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Upstream::Tcp(w) = &mut self.upstream {
            if w.write_all(batch).await.is_err() {
                return Err("writing to the backend failed");
            }
        }
        batch.clear();
        Ok(())
    }

    async fn handle(&mut self, cut: Cut, batch: &mut BytesMut) -> Result<(), &'static str> {
        let frame = match &cut {
            Cut::Frame(b) => b.clone(),
            Cut::Inline(args) => encode_command(args),
        };
        let args = command_args(&cut);
        let core = Arc::clone(&self.core);
        let outcome = core.interceptors.intercept(
            self.node.key,
            &self.conn.id,
            &frame,
            args.as_deref(),
            || core.slot_owners(),
        );
        match outcome {
            Outcome::Respond(bytes) => {
                self.owe(Owed::Local(bytes));
                Ok(())
            }
            Outcome::Handshake => {
                self.handshake(args.as_deref().unwrap_or(&[]));
                Ok(())
            }
            Outcome::Forward => self.forward(frame, args, batch).await,
        }
    }

    /// Answers `CLIENT MAINT_NOTIFICATIONS ON [moving-endpoint-type <type>]` and `... OFF`.
    fn handshake(&mut self, args: &[Bytes]) {
        let rest = args.get(2..).unwrap_or(&[]);
        let answer: Result<Option<EndpointType>, String> = match rest.first() {
            Some(on) if on.eq_ignore_ascii_case(b"on") => {
                if lock(&self.conn.state).resp3 {
                    parse_options(&rest[1..]).map(Some)
                } else {
                    Err("ERR maintenance notifications need RESP3: send HELLO 3 first".to_string())
                }
            }
            Some(off) if off.eq_ignore_ascii_case(b"off") && rest.len() == 1 => Ok(None),
            _ => Err("ERR syntax error".to_string()),
        };
        match answer {
            Err(msg) => self.owe(Owed::Local(Bytes::from(format!("-{msg}\r\n")))),
            Ok(kind) => {
                lock(&self.conn.state).maint = kind;
                tracing::debug!(connection = %self.conn.id, endpoint_type = ?kind, "maintenance notifications set");
                self.owe(Owed::Local(Bytes::from_static(b"+OK\r\n")));
                if kind.is_some() {
                    if let Some(frame) = self.core.replay_frame(&self.node, &self.conn) {
                        self.owe(Owed::Local(frame));
                    }
                    if let Some(frame) = self.core.late_frame(&self.node, &self.conn) {
                        self.owe(Owed::Local(frame));
                    }
                }
            }
        }
    }

    async fn forward(
        &mut self,
        frame: Bytes,
        args: Option<Vec<Bytes>>,
        batch: &mut BytesMut,
    ) -> Result<(), &'static str> {
        let name = args
            .as_ref()
            .and_then(|a| a.first())
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .unwrap_or_default();
        let quit = name == "quit";
        match &mut self.upstream {
            Upstream::Tcp(_) => {
                let resp3 = lock(&self.conn.state).resp3;
                let n = expected_replies(&name, args.as_deref(), resp3);
                track(&self.conn, &name, args.as_deref());
                let rewrite = args
                    .as_deref()
                    .map(Rewrite::for_command)
                    .unwrap_or_default();
                self.owe(Owed::Replies { n, rewrite });
                batch.extend_from_slice(&frame);
            }
            Upstream::Memory(session) => {
                let Some(args) = args else {
                    self.owe(Owed::Local(Bytes::from_static(
                        b"-ERR Protocol error: expected an array of bulk strings\r\n",
                    )));
                    return Ok(());
                };
                let frames = session.execute(&args).await;
                track(&self.conn, &name, Some(&args));
                lock(&self.conn.state).resp3 = session.resp3();
                let replies = frames.iter().filter(|f| f.first() != Some(&b'>')).count();
                self.owe(Owed::Replies {
                    n: replies,
                    rewrite: Rewrite::Redirects,
                });
                let due = after(self.node.latency());
                if let Some(tx) = &self.up_tx {
                    for bytes in frames {
                        if tx.send(UpFrame { bytes, due }).await.is_err() {
                            return Err("the connection is closing");
                        }
                    }
                }
            }
        }
        if quit {
            self.owe(Owed::Close);
        }
        Ok(())
    }
}

fn parse_options(opts: &[Bytes]) -> Result<EndpointType, String> {
    let mut kind = EndpointType::InternalIp;
    let mut i = 0;
    while i < opts.len() {
        let key = &opts[i];
        let Some(value) = opts.get(i + 1) else {
            return Err("ERR syntax error".to_string());
        };
        if key.eq_ignore_ascii_case(b"moving-endpoint-type") {
            kind = std::str::from_utf8(value)
                .ok()
                .and_then(endpoint_type_named)
                .ok_or_else(|| {
                    format!(
                        "ERR invalid moving-endpoint-type '{}'",
                        String::from_utf8_lossy(value)
                    )
                })?;
        } else {
            return Err(format!(
                "ERR unknown option '{}'",
                String::from_utf8_lossy(key)
            ));
        }
        i += 2;
    }
    Ok(kind)
}

/// The `moving-endpoint-type` named `name`, in any case. `auto` is not one: a client decides
/// it for itself and sends what it decided.
fn endpoint_type_named(name: &str) -> Option<EndpointType> {
    [
        EndpointType::InternalIp,
        EndpointType::InternalFqdn,
        EndpointType::ExternalIp,
        EndpointType::ExternalFqdn,
        EndpointType::None,
    ]
    .into_iter()
    .find(|t| name.eq_ignore_ascii_case(t.as_str()))
}

/// How many replies (pushes excluded) a forwarded command will get.
fn expected_replies(name: &str, args: Option<&[Bytes]>, resp3: bool) -> usize {
    let channels = args.map_or(0, |a| a.len().saturating_sub(1));
    match name {
        // In RESP3 the confirmations are pushes; in RESP2 one array per channel.
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" => {
            if resp3 {
                0
            } else {
                channels
            }
        }
        _ => 1,
    }
}

/// Follows the commands that change what scenarios send to this client.
fn track(conn: &Conn, name: &str, args: Option<&[Bytes]>) {
    match name {
        "hello" => {
            if let Some(v) = args.and_then(|a| a.get(1)) {
                let mut state = lock(&conn.state);
                match &v[..] {
                    b"3" => state.resp3 = true,
                    b"2" => state.resp3 = false,
                    _ => {}
                }
            }
        }
        "reset" => {
            let mut state = lock(&conn.state);
            *state = ConnState::default();
        }
        _ => {}
    }
}

// ===== writer: everything -> client =====

struct Writer {
    core: Arc<Core>,
    /// Shut while the node or this connection is blackholed: nothing is written, and replies
    /// from upstream are left unread (so the backend feels the back-pressure).
    gate: Gate,
    node: Arc<Node>,
    conn: Arc<Conn>,
    out: OwnedWriteHalf,
    pending: VecDeque<Owed>,
    buf: BytesMut,
}

enum Step {
    Ctl(Option<Control>),
    Gate(bool),
    Owed(Option<Owed>),
    Up(Option<UpFrame>),
}

const FLUSH_AT: usize = 64 * 1024;

impl Writer {
    async fn run(
        &mut self,
        mut ctl: mpsc::UnboundedReceiver<Control>,
        mut owed: mpsc::UnboundedReceiver<Owed>,
        mut up: mpsc::Receiver<UpFrame>,
    ) -> &'static str {
        let mut owed_open = true;
        loop {
            let dark = self.gate.is_shut();
            // Owed entries are taken before replies: the reader queues what a command is owed
            // before it sends the command, so its reply can never overtake its entry.
            let step = tokio::select! {
                biased;
                c = ctl.recv() => Step::Ctl(c),
                g = self.gate.changed(), if dark => Step::Gate(g.is_ok()),
                o = owed.recv(), if owed_open => Step::Owed(o),
                f = up.recv(), if !dark => Step::Up(f),
            };
            match step {
                Step::Ctl(Some(Control::Send(bytes))) => self.buf.extend_from_slice(&bytes),
                Step::Ctl(Some(Control::Close { reset })) => return self.close(reset).await,
                Step::Ctl(None) => return "the connection was dropped",
                // Light again: what was held is written below.
                Step::Gate(true) => {}
                Step::Gate(false) => return "the node was removed",
                Step::Owed(Some(o)) => self.pending.push_back(o),
                Step::Owed(None) => owed_open = false,
                Step::Up(Some(frame)) => {
                    if let Some(end) = self.wait_until(frame.due, &mut ctl).await {
                        return end;
                    }
                    self.reply(frame.bytes);
                }
                Step::Up(None) => {
                    let _ = self.flush().await;
                    return "the backend closed the connection";
                }
            }
            if self.drain_local() {
                let _ = self.flush().await;
                return self.close(false).await;
            }
            if self.buf.len() >= FLUSH_AT || (ctl.is_empty() && owed.is_empty() && up.is_empty()) {
                if let Err(e) = self.flush().await {
                    return e;
                }
            }
        }
    }

    /// Writes what is buffered, unless the connection is blackholed (then it stays buffered).
    /// When replies trickle, each byte is its own write, followed by the pause (a zero pause
    /// yields to the runtime, so the client's reads see the bytes one by one).
    async fn flush(&mut self) -> Result<(), &'static str> {
        if self.buf.is_empty() || self.gate.is_shut() {
            return Ok(());
        }
        let bytes = self.buf.split().freeze();
        self.conn.touch();
        let failed = |_| "writing to the client failed";
        let Some(pause) = self.node.trickle() else {
            return self.out.write_all(&bytes).await.map_err(failed);
        };
        for i in 0..bytes.len() {
            self.out.write_all(&bytes[i..=i]).await.map_err(failed)?;
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    async fn close(&mut self, reset: bool) -> &'static str {
        if reset {
            let _ = self.out.as_ref().set_zero_linger();
            "reset by the simulator"
        } else {
            let _ = self.flush().await;
            let _ = self.out.shutdown().await;
            "closed by the simulator"
        }
    }

    /// Waits for a delayed reply, still writing injected frames meanwhile (the reply has not
    /// started, so this is a frame boundary).
    async fn wait_until(
        &mut self,
        due: Instant,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<&'static str> {
        if due <= Instant::now() {
            return None;
        }
        if let Err(e) = self.flush().await {
            return Some(e);
        }
        let sleep = tokio::time::sleep_until(due.into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return None,
                c = ctl.recv() => match c {
                    Some(Control::Send(bytes)) => {
                        self.buf.extend_from_slice(&bytes);
                        if let Err(e) = self.flush().await {
                            return Some(e);
                        }
                    }
                    Some(Control::Close { reset }) => return Some(self.close(reset).await),
                    None => return Some("the connection was dropped"),
                },
            }
        }
    }

    fn reply(&mut self, mut bytes: Bytes) {
        self.observe(&bytes);
        let push = bytes.first() == Some(&b'>');
        if !push {
            if let Some(Owed::Replies { n, rewrite }) = self.pending.front_mut() {
                *n = n.saturating_sub(1);
                if self.core.cluster && topology::may_rewrite(&bytes, *rewrite) {
                    let map = self.core.addr_map();
                    if let Some(new) = topology::rewrite_reply(&bytes, *rewrite, &map) {
                        bytes = new;
                    }
                }
            }
        }
        self.buf.extend_from_slice(&bytes);
    }

    /// Writes the proxy's own answers that are next in line; true when a close is next.
    fn drain_local(&mut self) -> bool {
        loop {
            match self.pending.front() {
                Some(Owed::Local(bytes)) => {
                    self.buf.extend_from_slice(bytes);
                    self.pending.pop_front();
                }
                Some(Owed::Replies { n: 0, .. }) => {
                    self.pending.pop_front();
                }
                Some(Owed::Close) => return true,
                _ => return false,
            }
        }
    }

    /// Follows the Pub/Sub confirmations for the Azure channel.
    fn observe(&self, bytes: &Bytes) {
        if bytes.len() > 256 || !matches!(bytes.first(), Some(b'>') | Some(b'*')) {
            return;
        }
        let Some((_, elems)) = resp::parse_flat(bytes) else {
            return;
        };
        let [Elem::Str(kind), channel, Elem::Int(count)] = &elems[..] else {
            return;
        };
        let is_azure = channel
            .as_bytes()
            .is_some_and(|c| &c[..] == AZURE_CHANNEL.as_bytes());
        if kind.eq_ignore_ascii_case(b"subscribe") && is_azure {
            lock(&self.conn.state).azure = true;
        } else if kind.eq_ignore_ascii_case(b"unsubscribe") && (is_azure || *count == 0) {
            lock(&self.conn.state).azure = false;
        }
    }
}
