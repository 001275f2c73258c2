//! Test support: real redis-server processes on free ports, started and stopped by the tests.
//! Built on them: the simulator and stacks over it (`sim`), connectors and a publisher
//! (`client`), a workload (`load`), event and condition waits (`events`), log capture (`logs`),
//! the chaos suite's checking harness (`chaos`).
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "sim")]
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod events;
pub mod load;
pub mod logs;
#[cfg(feature = "sim")]
pub mod sim;

/// A redis-server process that lives as long as this value.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

/// Every port handed out in this test process (cluster bus ports too).
static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A port nobody listens on right now, and never handed out before in this test process.
///
/// The kernel may hand the same ephemeral port to two tests that ask one right after the
/// other; two servers started on it would leave one test talking to the other's server.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A port for a cluster node: free as [`free_port`]'s, and so is its cluster bus port, 10000
/// above it, which the node binds too (a node whose bus port is taken does not start).
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&bus) && TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            given.push(bus);
            return port;
        }
    }
}

impl RedisServer {
    /// A plain server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `--flag value` arguments.
    ///
    /// A port another process takes between our check and the server's bind makes the server
    /// exit at once: it is started again on fresh ports, a few times.
    pub fn start_with(extra: &[&str]) -> Self {
        let cluster = extra.contains(&"--cluster-enabled");
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            args,
        };
        for _ in 0..5 {
            server.port = if cluster {
                free_cluster_port()
            } else {
                free_port()
            };
            server.spawn();
            if server.wait_listening() {
                return server;
            }
        }
        panic!("redis-server did not start on five fresh ports in a row");
    }

    /// Waits (at most 10 s) until the server listens; false if it exited first.
    fn wait_listening(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nothing listens on port {} after 10 s", self.port);
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server on the PATH"));
    }

    /// The server's address as `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `redis://` URL for it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once (no shutdown handshake), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(
            self.wait_listening(),
            "redis-server exited when restarted on port {}",
            self.port
        );
    }

    /// The directory the server runs in (for certificates and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts connections on the port (at most 10 s).
pub fn wait_for_port(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port} after 10 s");
}

/// A file path inside a directory, as a String.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A bare RESP client for the simulator's tests: it writes commands and reads frames back as
/// the raw bytes the server sent, so tests can compare them byte for byte.
pub struct RawClient {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// How long a raw client waits for a frame before giving up.
pub const FRAME_WAIT: Duration = Duration::from_secs(5);

impl RawClient {
    /// Connects to `addr`.
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<RawClient> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects and switches to RESP3 (`HELLO 3`).
    pub async fn resp3(addr: impl tokio::net::ToSocketAddrs) -> RawClient {
        let mut c = RawClient::connect(addr).await.expect("connect");
        let hello = c.cmd(&["HELLO", "3"]).await;
        assert_eq!(hello[0], b'%', "HELLO 3 answered {}", show(&hello));
        c
    }

    /// Connects, switches to RESP3 and opts in to maintenance notifications.
    pub async fn opted_in(addr: impl tokio::net::ToSocketAddrs, endpoint_type: &str) -> RawClient {
        let mut c = RawClient::resp3(addr).await;
        let ok = c
            .cmd(&[
                "CLIENT",
                "MAINT_NOTIFICATIONS",
                "ON",
                "moving-endpoint-type",
                endpoint_type,
            ])
            .await;
        assert_eq!(&ok[..], b"+OK\r\n", "handshake answered {}", show(&ok));
        c
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes a command.
    pub async fn send(&mut self, args: &[&str]) {
        self.write(&encode(args)).await;
    }

    /// Writes a command and reads the next frame.
    pub async fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args).await;
        self.frame().await
    }

    /// The next frame; panics after [`FRAME_WAIT`] or at end of stream.
    pub async fn frame(&mut self) -> Vec<u8> {
        match self.try_frame(FRAME_WAIT).await {
            Ok(Some(f)) => f,
            Ok(None) => panic!("no frame within {FRAME_WAIT:?}"),
            Err(e) => panic!("connection ended while waiting for a frame: {e}"),
        }
    }

    /// The next frame within `wait`: `Ok(None)` on timeout, `Err` when the connection ended.
    pub async fn try_frame(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, String> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(len) = frame_len(&self.buf)? {
                return Ok(Some(self.buf.drain(..len).collect()));
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err("end of stream".into()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// Reads raw bytes until at least `n` are buffered (for streams that are not RESP).
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        self.buf.drain(..).collect()
    }

    /// Whether the server closes the connection within `wait` (frames before the close are
    /// skipped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.try_frame(left).await {
                Err(_) => return true,
                Ok(None) => return false,
                Ok(Some(_)) => continue,
            }
        }
    }

    /// Nothing arrives for `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        matches!(self.try_frame(wait).await, Ok(None)) && self.buf.is_empty()
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Bytes shown with escapes, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// The length of the RESP2/RESP3 frame at the start of `buf`, if it is complete.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    fn line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
        let rel = buf.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((from + rel, from + rel + 2))
    }
    // Iterative: a stack of the elements each open aggregate still owes.
    let mut owed: Vec<i64> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        let Some((end, next)) = line(buf, pos + 1) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&buf[pos + 1..end]).map_err(|e| e.to_string())?;
        pos = next;
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let n: i64 = text.parse().map_err(|_| format!("bad length {text:?}"))?;
                if n >= 0 {
                    let after = pos + n as usize + 2;
                    if buf.len() < after {
                        return Ok(None);
                    }
                    pos = after;
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n: i64 = text.parse().map_err(|_| format!("bad length {text:?}"))?;
                let n = if kind == b'%' || kind == b'|' {
                    n * 2
                } else {
                    n
                };
                let n = if kind == b'|' { n + 1 } else { n };
                if n > 0 {
                    owed.push(n);
                    continue;
                }
            }
            other => return Err(format!("not RESP: type byte 0x{other:02x}")),
        }
        loop {
            match owed.last_mut() {
                None => return Ok(Some(pos)),
                Some(n) => {
                    *n -= 1;
                    if *n == 0 {
                        owed.pop();
                    } else {
                        break;
                    }
                }
            }
        }
    }
}

/// A minimal HTTP/1.1 request (`Connection: close`); returns the status and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    http_with_headers(addr, method, path, &[], body).await
}

/// [`http`] with extra request headers (`Content-Type` and the like).
pub async fn http_with_headers(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin API");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the admin API answers within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
