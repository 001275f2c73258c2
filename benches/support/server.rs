//! A redis-server process started by a benchmark on a free port, stopped when dropped.
//! Shared by the benches with `#[path = "support/server.rs"] mod server;`.

use std::error::Error as StdError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

type BoxError = Box<dyn StdError + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    pub(crate) version: String,
    _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(bin: &str) -> Result<Server> {
        let version = match Process::new(bin).arg("--version").output() {
            Ok(out) => {
                // "Redis server v=7.0.15 sha=... " -> "Redis 7.0.15"
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix("v="))
                    .map_or_else(|| text.trim().to_owned(), |v| format!("Redis {v}"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "`{bin}` was not found. This bench starts its own Redis server: install \
                     redis-server (e.g. `apt-get install redis-server`) or point REDIS_SERVER \
                     at the binary."
                )
                .into())
            }
            Err(e) => return Err(format!("could not run `{bin} --version`: {e}").into()),
        };
        let dir = tempfile::tempdir()?;
        // Take a free port from the kernel; a race with another process is unlikely and is
        // caught below when the server fails to start.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Process::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--logfile", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{bin}`: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                return Err(format!("`{bin}` exited at start ({status}): {}", err.trim()).into());
            }
            if ping(port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    format!("`{bin}` did not answer PING on port {port} within 10 s").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            child,
            port,
            version,
            _dir: dir,
        })
    }

    #[allow(dead_code)]
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    #[allow(dead_code)]
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
