//! An axum app whose handlers share one redis-handoff stack, and keep answering while the
//! Redis endpoint moves under them.
//!
//! The stack is a cheap `Clone` tower service, so the router's state holds it as it is (boxed
//! once into a `BoxCloneSyncService`, so the state has one concrete type whatever stack is
//! passed in) and each handler clones it for its command.
//!
//! ```sh
//! cargo run --example axum_app            # Redis at REDIS_URL, or redis://127.0.0.1:6379
//! curl -X POST http://127.0.0.1:3000/visits/home
//! curl http://127.0.0.1:3000/visits/home
//! ```
//!
//! Open-source Redis sends no maintenance notifications, so the example starts an embedded
//! maintenance simulator with two nodes in front of that Redis, connects through node 0, and
//! every 10 seconds moves the endpoint from one node to the other (`MOVING` with a 2 s grace
//! period, after which the old node closes every connection). Requests keep succeeding; the
//! maintenance events are printed as they happen. `ADDR` changes the listen address.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redis_handoff::sim::{Backend, Simulator};
use redis_handoff::{cmd, Command, ConnectOptions, Error, Reply, Stack};
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// The Redis service the handlers share.
pub type Redis = BoxCloneSyncService<Command, Reply, Error>;

/// The app: `POST /visits/{page}` counts a visit, `GET /visits/{page}` reads the count,
/// `GET /healthz` pings Redis.
///
/// Takes any clone-able Redis service: the [`Stack`], or a stack assembled by hand.
pub fn app<S>(redis: S) -> Router
where
    S: Service<Command, Response = Reply, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    Router::new()
        .route("/visits/{page}", get(visits).post(visit))
        .route("/healthz", get(health))
        .with_state(BoxCloneSyncService::new(redis))
}

async fn visit(State(redis): State<Redis>, Path(page): Path<String>) -> Result<Json<Value>, Fail> {
    let reply = redis.oneshot(cmd!("INCR", key(&page))).await?;
    Ok(Json(json!({ "page": page, "visits": reply.as_i64() })))
}

async fn visits(State(redis): State<Redis>, Path(page): Path<String>) -> Result<Json<Value>, Fail> {
    let reply = redis.oneshot(cmd!("GET", key(&page))).await?;
    Ok(Json(
        json!({ "page": page, "visits": reply.as_i64().unwrap_or(0) }),
    ))
}

async fn health(State(redis): State<Redis>) -> Result<&'static str, Fail> {
    redis.oneshot(cmd!("PING")).await?;
    Ok("ok")
}

/// The Redis key of a page's counter.
pub fn key(page: &str) -> String {
    format!("visits:{page}")
}

/// A Redis error as an HTTP answer: 500 when Redis refused the command, 503 when it could not
/// be reached in time.
struct Fail(Error);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(e)
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let status = match self.0 {
            Error::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.0.to_string()).into_response()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    let mut events = stack.maintenance().subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            println!("maintenance: {} {:?}", event.kind.name(), event.kind);
        }
    });
    tokio::spawn(rehearse(sim));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr}: try  curl -X POST http://{addr}/visits/home");
    axum::serve(listener, app(stack))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Moves the endpoint back and forth between the simulator's two nodes, every 10 seconds.
async fn rehearse(sim: Simulator) {
    let (mut from, mut to) = (0, 1);
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        println!("simulator: MOVING node {from} -> node {to}, 2 s grace");
        let moving = match sim.moving(from, to, Duration::from_secs(2)).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("simulator: {e}");
                return;
            }
        };
        moving.done().await;
        // The old node refuses connections after the grace period; bring it back for the next
        // move in the other direction.
        let _ = sim.restore(from);
        std::mem::swap(&mut from, &mut to);
    }
}
