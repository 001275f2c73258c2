//! A tonic gRPC service whose calls share one redis-handoff stack, and keep answering while the
//! Redis endpoint moves under them.
//!
//! ```sh
//! cargo run --example tonic_service       # Redis at REDIS_URL, or redis://127.0.0.1:6379
//! ```
//!
//! Open-source Redis sends no maintenance notifications, so the example starts an embedded
//! maintenance simulator with two nodes in front of that Redis and connects through node 0. It
//! serves the service on `ADDR` (default 127.0.0.1:50051), runs 10 gRPC clients against it for
//! six seconds while the simulator moves the endpoint to node 1 (`MOVING`, 2 s grace, then the
//! old node closes every connection), prints how many calls succeeded, and keeps serving until
//! Ctrl-C.
//!
//! The service, in protobuf terms:
//!
//! ```proto
//! syntax = "proto3";
//! package visits;
//!
//! service Visits {
//!   rpc Hit(PageRequest) returns (VisitsReply);    // counts a visit to the page
//!   rpc Count(PageRequest) returns (VisitsReply);  // reads the page's count
//! }
//! message PageRequest { string page = 1; }
//! message VisitsReply { string page = 1; int64 visits = 2; }
//! ```
//!
//! The messages are written out below with `#[derive(prost::Message)]` and the routing with
//! tonic's `server::Grpc` and `client::Grpc`, which is what `tonic-build` would generate from
//! that file; so the example builds with cargo alone, no `protoc`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{cmd, Command, ConnectOptions, Error, Reply, Stack};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// The messages of `visits.proto`.
pub mod proto {
    /// Names a page.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PageRequest {
        /// The page.
        #[prost(string, tag = "1")]
        pub page: String,
    }

    /// A page's visit count.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VisitsReply {
        /// The page.
        #[prost(string, tag = "1")]
        pub page: String,
        /// How many visits it has had.
        #[prost(int64, tag = "2")]
        pub visits: i64,
    }
}

use proto::{PageRequest, VisitsReply};

/// Any error, for the client and the demo.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The Redis service the calls share.
pub type Redis = BoxCloneSyncService<Command, Reply, Error>;

const HIT: &str = "/visits.Visits/Hit";
const COUNT: &str = "/visits.Visits/Count";

// ===== the service =====

/// The `visits.Visits` gRPC service.
#[derive(Clone)]
pub struct VisitsServer {
    redis: Redis,
}

/// The service over any clone-able Redis service: the [`Stack`], or one assembled by hand.
pub fn service<S>(redis: S) -> VisitsServer
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    VisitsServer {
        redis: BoxCloneSyncService::new(redis),
    }
}

/// The Redis key of a page's counter.
pub fn key(page: &str) -> String {
    format!("visits:{page}")
}

async fn hit(redis: Redis, request: Request<PageRequest>) -> Result<Response<VisitsReply>, Status> {
    let page = request.into_inner().page;
    let reply = redis.oneshot(cmd!("INCR", key(&page))).await;
    let visits = reply.map_err(status)?.as_i64().unwrap_or(0);
    Ok(Response::new(VisitsReply { page, visits }))
}

async fn count(
    redis: Redis,
    request: Request<PageRequest>,
) -> Result<Response<VisitsReply>, Status> {
    let page = request.into_inner().page;
    let reply = redis.oneshot(cmd!("GET", key(&page))).await;
    let visits = reply.map_err(status)?.as_i64().unwrap_or(0);
    Ok(Response::new(VisitsReply { page, visits }))
}

/// A Redis error as a gRPC status: `INTERNAL` when Redis refused the command, `UNAVAILABLE`
/// when it could not be reached in time.
fn status(e: Error) -> Status {
    match e {
        Error::Server(_) => Status::internal(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}

impl NamedService for VisitsServer {
    const NAME: &'static str = "visits.Visits";
}

/// Routes a gRPC request to its method, as generated code does.
impl Service<http::Request<Body>> for VisitsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let redis = self.redis.clone();
        match request.uri().path() {
            HIT => Box::pin(async move {
                let method = tower::service_fn(move |r| hit(redis.clone(), r));
                let mut grpc = tonic::server::Grpc::new(ProstCodec::new());
                Ok(grpc.unary(method, request).await)
            }),
            COUNT => Box::pin(async move {
                let method = tower::service_fn(move |r| count(redis.clone(), r));
                let mut grpc = tonic::server::Grpc::new(ProstCodec::new());
                Ok(grpc.unary(method, request).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Serves `server` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    server: VisitsServer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

// ===== the client =====

/// A client of `visits.Visits`.
#[derive(Debug, Clone)]
pub struct VisitsClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl VisitsClient {
    /// Connects to `url`, such as `http://127.0.0.1:50051`.
    pub async fn connect(url: String) -> Result<Self, BoxError> {
        let channel = Channel::from_shared(url)?.connect().await?;
        Ok(VisitsClient {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    /// Counts a visit to `page`; returns the new count.
    pub async fn hit(&mut self, page: &str) -> Result<i64, Status> {
        self.unary(HIT, page).await
    }

    /// The visit count of `page`.
    pub async fn count(&mut self, page: &str) -> Result<i64, Status> {
        self.unary(COUNT, page).await
    }

    async fn unary(&mut self, path: &'static str, page: &str) -> Result<i64, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = Request::new(PageRequest { page: page.into() });
        let reply: Response<VisitsReply> = self
            .grpc
            .unary(request, PathAndQuery::from_static(path), ProstCodec::new())
            .await?;
        Ok(reply.into_inner().visits)
    }
}

// ===== the demo =====

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut options = ConnectOptions::from_url(&url)?;
    let sim = Simulator::builder()
        .backend(Backend::redis(options.endpoint.to_string()))
        .nodes(2)
        .start()
        .await?;
    options.endpoint = sim.node(0).endpoint();
    let stack = Stack::builder(options).connect().await?;

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, service(stack.clone()), async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    println!("serving visits.Visits on {addr}");

    let clients: Vec<_> = (0..10)
        .map(|c| {
            let url = format!("http://{addr}");
            tokio::spawn(async move {
                let mut client = VisitsClient::connect(url).await?;
                let (mut ok, mut failed) = (0u64, 0u64);
                let until = tokio::time::Instant::now() + Duration::from_secs(6);
                while tokio::time::Instant::now() < until {
                    match client.hit(&format!("demo-{c}")).await {
                        Ok(_) => ok += 1,
                        Err(status) => {
                            failed += 1;
                            eprintln!("client {c}: {status}");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, BoxError>((ok, failed))
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("simulator: MOVING node 0 -> node 1, 2 s grace");
    let moving = sim.moving(0, 1, Duration::from_secs(2)).await?;
    moving.done().await;
    println!(
        "node 0 has closed its connections; the stack now talks to {:?}",
        stack.handoff().current_endpoint().map(|e| e.to_string())
    );

    let (mut ok, mut failed) = (0, 0);
    for client in clients {
        let (o, f) = client.await??;
        ok += o;
        failed += f;
    }
    println!("{ok} calls succeeded, {failed} failed, across the move");
    println!("still serving on {addr}; Ctrl-C to stop");
    server.await??;
    Ok(())
}
