//! Opening connections: dial, TLS, the pipelined handshake, and the I/O task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tower_service::Service;

use super::io::IoTask;
use super::liveness::Reset;
use super::options::ConnectOptions;
use super::{tls, Connection, Pushes, ServerInfo, Shared};
use crate::command::Command;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::reply::Reply;

/// Makes [`Connection`]s with one set of [`ConnectOptions`], to the configured endpoint or to
/// any other (a handoff's target). A [`Service`](tower_service::Service) from [`Endpoint`] to
/// [`Connection`] (what tower calls a make-service). Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    options: ConnectOptions,
    tls: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("options", &self.inner.options)
            .finish()
    }
}

/// A new connection with what its handshake produced.
#[derive(Debug)]
#[non_exhaustive]
pub struct Established {
    /// The connection, ready for commands.
    pub connection: Connection,
    /// Its push frames, subscribed before the first byte was read, so none is missed.
    pub pushes: Pushes,
    /// The answers to the extra setup commands, in order.
    pub setup: Vec<Result<Reply, Error>>,
}

impl Connector {
    /// A connector for these options. Fails only on an unusable TLS configuration.
    pub fn new(options: ConnectOptions) -> Result<Self, Error> {
        let tls = options.tls.as_ref().map(tls::client_config).transpose()?;
        Ok(Connector {
            inner: Arc::new(Inner { options, tls }),
        })
    }

    /// The options connections are made with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// The configured endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.options.endpoint
    }

    /// Connects to the configured endpoint.
    pub async fn connect(&self) -> Result<Connection, Error> {
        self.connect_to(&self.inner.options.endpoint).await
    }

    /// Connects to another endpoint with the same options (credentials, database, TLS).
    pub async fn connect_to(&self, endpoint: &Endpoint) -> Result<Connection, Error> {
        Ok(self
            .establish(endpoint, Vec::new(), self.inner.options.connect_timeout)
            .await?
            .connection)
    }

    /// Connects to `endpoint` within `timeout` (dial, TLS and handshake), sending `setup` in the
    /// same round trip as the handshake. The setup commands' answers come back in
    /// [`Established::setup`]; an error answer there does not fail the connection, the caller
    /// decides.
    pub async fn establish(
        &self,
        endpoint: &Endpoint,
        setup: Vec<Command>,
        timeout: Duration,
    ) -> Result<Established, Error> {
        match tokio::time::timeout(timeout, self.establish_inner(endpoint, setup)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                endpoint: endpoint.clone(),
                after: timeout,
            }),
        }
    }

    async fn establish_inner(
        &self,
        endpoint: &Endpoint,
        setup: Vec<Command>,
    ) -> Result<Established, Error> {
        let opts = &self.inner.options;
        let tcp = TcpStream::connect((endpoint.host(), endpoint.port()))
            .await
            .map_err(|e| Error::Connect {
                endpoint: endpoint.clone(),
                source: Arc::new(e),
            })?;
        let _ = tcp.set_nodelay(true);
        opts.liveness.apply_keepalive(&tcp);
        let reset = Reset::of(&tcp);

        let shared = Arc::new(Shared::new(
            endpoint.clone(),
            opts.push_buffer,
            opts.queue_size,
        ));
        let connection = Connection::from_parts(shared.clone());
        // Subscribed before the first byte is read: no push is missed.
        // Maintenance frames on this subscription are never dropped, whatever the Pub/Sub traffic.
        let pushes = shared.pushes.subscribe_keeping_maintenance();
        // Channels the setup subscribes to belong to the connection, not to its callers.
        let internal: Vec<Bytes> = setup
            .iter()
            .filter(|c| c.is("SUBSCRIBE"))
            .flat_map(|c| {
                c.args()
                    .skip(1)
                    .map(Bytes::copy_from_slice)
                    .collect::<Vec<_>>()
            })
            .collect();
        match &self.inner.tls {
            Some(config) => {
                let stream = tls::wrap(config.clone(), endpoint, tcp).await?;
                let task = IoTask::new(
                    stream,
                    shared.clone(),
                    opts.limits,
                    opts.max_in_flight,
                    internal,
                    &opts.liveness,
                    reset,
                );
                tokio::spawn(task.run());
            }
            None => {
                let task = IoTask::new(
                    tcp,
                    shared.clone(),
                    opts.limits,
                    opts.max_in_flight,
                    internal,
                    &opts.liveness,
                    reset,
                );
                tokio::spawn(task.run());
            }
        }

        // The whole handshake goes out in one write and comes back in one read.
        let mut hello = Command::new("HELLO").arg("3");
        if let Some(password) = &opts.password {
            hello = hello
                .arg("AUTH")
                .arg(opts.username.as_deref().unwrap_or("default"))
                .arg(password.expose());
        }
        if let Some(name) = &opts.client_name {
            hello = hello.arg("SETNAME").arg(name.as_str());
        }
        let mut steps: Vec<(&'static str, Command)> = vec![("HELLO", hello)];
        if opts.database != 0 {
            steps.push(("SELECT", Command::new("SELECT").arg(opts.database)));
        }
        if let Some(tracking) = &opts.tracking {
            steps.push(("CLIENT TRACKING", tracking.command()));
        }
        if opts.read_only {
            steps.push(("READONLY", Command::new("READONLY")));
        }
        steps.push((
            "CLIENT SETINFO",
            Command::new("CLIENT")
                .arg("SETINFO")
                .arg("LIB-NAME")
                .arg("redis-handoff"),
        ));
        steps.push((
            "CLIENT SETINFO",
            Command::new("CLIENT")
                .arg("SETINFO")
                .arg("LIB-VER")
                .arg(env!("CARGO_PKG_VERSION")),
        ));
        let extra = setup.len();
        steps.extend(setup.into_iter().map(|c| ("setup", c)));

        let mut answers = Vec::with_capacity(steps.len());
        for (step, command) in steps {
            answers.push((step, connection.enqueue(command).await));
        }

        let mut setup_replies = Vec::with_capacity(extra);
        for (step, rx) in answers {
            let answer = rx.await.map_err(|f| f.error);
            match (step, answer) {
                ("HELLO", Ok(reply)) => {
                    let info = server_info(reply.frame());
                    let _ = shared.server.0.set(info);
                }
                ("HELLO", Err(Error::Server(e))) => return Err(hello_error(e.text())),
                (step @ ("SELECT" | "CLIENT TRACKING" | "READONLY"), Err(Error::Server(e))) => {
                    return Err(Error::Handshake {
                        step,
                        message: e.text().into(),
                    })
                }
                ("CLIENT SETINFO", Err(Error::Server(e))) => {
                    // Servers before 7.2 do not know SETINFO; that costs nothing.
                    tracing::debug!(endpoint = %endpoint, answer = %e, "CLIENT SETINFO refused");
                }
                ("setup", answer) => setup_replies.push(answer),
                (_, Err(e)) => return Err(e),
                (_, Ok(_)) => {}
            }
        }
        tracing::debug!(endpoint = %endpoint, "connected");
        Ok(Established {
            connection,
            pushes,
            setup: setup_replies,
        })
    }
}

fn hello_error(text: &str) -> Error {
    let upper = text.to_ascii_uppercase();
    if upper.starts_with("NOPROTO") || upper.contains("UNKNOWN COMMAND") {
        Error::Resp3Unsupported {
            message: text.into(),
        }
    } else if upper.starts_with("WRONGPASS")
        || upper.starts_with("NOAUTH")
        || upper.contains("INVALID PASSWORD")
        || upper.contains("INVALID USERNAME")
    {
        Error::Auth {
            message: text.into(),
        }
    } else {
        Error::Handshake {
            step: "HELLO",
            message: text.into(),
        }
    }
}

fn server_info(frame: &BytesFrame) -> ServerInfo {
    let mut info = ServerInfo::default();
    let pairs: Vec<(&BytesFrame, &BytesFrame)> = match frame {
        BytesFrame::Map { data, .. } => data.iter().collect(),
        BytesFrame::Array { data, .. } => data
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        _ => return info,
    };
    for (k, v) in pairs {
        let key = frame_str(k).unwrap_or_default();
        match key.as_str() {
            "server" => info.server = frame_str(v).unwrap_or_default(),
            "version" => info.version = frame_str(v).unwrap_or_default(),
            "mode" => info.mode = frame_str(v).unwrap_or_default(),
            "role" => info.role = frame_str(v).unwrap_or_default(),
            "proto" => info.proto = frame_int(v).unwrap_or(3),
            "id" => info.id = frame_int(v).unwrap_or(0),
            _ => {}
        }
    }
    info
}

fn frame_str(f: &BytesFrame) -> Option<String> {
    match f {
        BytesFrame::BlobString { data, .. }
        | BytesFrame::SimpleString { data, .. }
        | BytesFrame::VerbatimString { data, .. } => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        _ => None,
    }
}

fn frame_int(f: &BytesFrame) -> Option<i64> {
    match f {
        BytesFrame::Number { data, .. } => Some(*data),
        _ => frame_str(f)?.parse().ok(),
    }
}

impl Service<Endpoint> for Connector {
    type Response = Connection;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect_to(&endpoint).await })
    }
}
