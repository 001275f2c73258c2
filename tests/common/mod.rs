//! Test support: real redis-server processes on free ports, started and stopped by the tests.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server process that lives as long as this value.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// A plain server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `--flag value` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args,
        };
        server.spawn_and_wait(true);
        server
    }

    fn spawn_and_wait(&mut self, tcp_port: bool) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(if tcp_port {
                self.port.to_string()
            } else {
                "0".into()
            })
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server on the PATH"));
        if tcp_port {
            wait_for_port(self.port);
        }
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
        self.spawn_and_wait(true);
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
