//! The probe and metrics endpoints the Deployment points at: `/healthz` (liveness), `/readyz` (readiness) and
//! `/metrics` (Prometheus).
//!
//! Liveness and readiness mean different things on purpose. `/healthz` answers as long as the process serves
//! HTTP, so the kubelet restarts only a wedged process. `/readyz` turns true only when [`Health::set_ready`]
//! says so (after the informer caches have synced), so a rollout waits for a replica that can actually
//! reconcile instead of trusting an always-OK probe.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::telemetry::Metrics;

/// Flags the probes report, shared between the controller (which sets them) and the HTTP server (which reads
/// them). Clones share the same flags.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the replica ready (caches synced) or not (shutting down, caches lost).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// What `/readyz` currently answers.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Arc<Metrics>,
}

/// The routes, apart from the listener so tests and embedders can mount them elsewhere.
fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, Metrics::content_type())], state.metrics.encode())
}

/// Serves GET /healthz (200 "ok" while the process runs), /readyz (200 "ready" once set_ready(true), else 503
/// "not ready"), /metrics (metrics.encode() with its content type) on `listener` until `shutdown` completes.
///
/// On shutdown the server stops accepting, lets requests in flight finish and closes idle keep-alive
/// connections, so a scrape in progress during SIGTERM still gets its answer.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    struct Server {
        base: String,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Server {
        async fn start(health: Health, metrics: Arc<Metrics>) -> std::io::Result<Server> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, health, metrics, async move {
                let _ = stopped.await;
            }));
            Ok(Server { base, stop, task })
        }

        /// Status, content type and body of a GET.
        async fn get(&self, path: &str) -> Result<(u16, Option<String>, String), reqwest::Error> {
            let response = reqwest::get(format!("{}{path}", self.base)).await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((status, content_type, response.text().await?))
        }

        async fn stop(self) -> TestResult {
            let _ = self.stop.send(());
            tokio::time::timeout(Duration::from_secs(10), self.task).await???;
            Ok(())
        }
    }

    #[tokio::test]
    async fn healthz_is_ok_and_readyz_follows_the_flag() -> TestResult {
        let health = Health::default();
        let server = Server::start(health.clone(), Metrics::new()).await?;

        assert_eq!(
            server.get("/healthz").await?,
            (200, Some("text/plain; charset=utf-8".into()), "ok".into())
        );
        let (status, _, body) = server.get("/readyz").await?;
        assert_eq!((status, body.as_str()), (503, "not ready"));

        health.set_ready(true);
        assert!(health.is_ready());
        let (status, _, body) = server.get("/readyz").await?;
        assert_eq!((status, body.as_str()), (200, "ready"));

        health.set_ready(false);
        let (status, _, body) = server.get("/readyz").await?;
        assert_eq!((status, body.as_str()), (503, "not ready"));
        // Liveness does not depend on readiness.
        assert_eq!(server.get("/healthz").await?.0, 200);
        server.stop().await
    }

    #[tokio::test]
    async fn metrics_serves_the_exposition_with_its_content_type() -> TestResult {
        let metrics = Metrics::new();
        let server = Server::start(Health::default(), metrics.clone()).await?;
        metrics.reconcile_finished("error", Some("Throttled"), Duration::from_millis(10));
        metrics.set_leader(true);

        let (status, content_type, body) = server.get("/metrics").await?;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some(Metrics::content_type()));
        assert!(body.contains("idbind_reconcile_errors_total{category=\"Throttled\"} 1\n"), "{body}");
        assert!(body.contains("idbind_leader 1\n"), "{body}");

        assert_eq!(server.get("/nope").await?.0, 404);
        server.stop().await
    }

    #[tokio::test]
    async fn shutdown_stops_the_server_and_frees_the_port() -> TestResult {
        let server = Server::start(Health::default(), Metrics::new()).await?;
        assert_eq!(server.get("/healthz").await?.0, 200);
        let base = server.base.clone();
        server.stop().await?;
        assert!(reqwest::get(format!("{base}/healthz")).await.is_err(), "still answering after shutdown");
        Ok(())
    }

    #[test]
    fn clones_share_the_flag() {
        let a = Health::default();
        let b = a.clone();
        assert!(!b.is_ready());
        a.set_ready(true);
        assert!(b.is_ready());
    }
}
