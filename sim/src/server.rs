//! Accept loops for the HTTPS and HTTP listeners. Our own loop (rather than a framework's `serve`) gives us
//! TLS with our certificate, a per-connection "drop now" switch for the dropped-connection fault, and a
//! graceful shutdown that waits for in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::http::ConnCtl;

/// How long a graceful shutdown waits for open connections before cutting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, tls.clone(), app.clone(), scheme, shutdown.clone()));
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            conns.abort_all();
        }
    })
}

async fn connection(
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    scheme: &'static str,
    shutdown: watch::Receiver<bool>,
) {
    match tls {
        Some(acceptor) => serve_tls(stream, acceptor, app, shutdown).await,
        None => serve_io(TokioIo::new(stream), app, scheme, shutdown).await,
    }
}

/// Terminates TLS on a stream (a listener's connection, or a tunnel the CONNECT proxy opened) and serves the
/// simulator's HTTP on it.
pub(crate) async fn serve_tls<S>(
    stream: S,
    acceptor: TlsAcceptor,
    app: axum::Router,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(Ok(tls_stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    serve_io(TokioIo::new(tls_stream), app, "https", shutdown).await;
}

async fn serve_io<I>(io: I, app: axum::Router, scheme: &'static str, shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let ctl = ConnCtl { kill: kill.clone(), scheme };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ctl.clone());
        let app = app.clone();
        async move { app.oneshot(req.map(axum::body::Body::new)).await }
    });
    drive(io, service, kill, shutdown).await;
}

async fn drive<I, S>(io: I, service: S, kill: Arc<Notify>, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Dropping the connection future closes the socket without an answer.
        _ = kill.notified() => {}
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once shutdown was requested (or the handle is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it before anything else is awaited.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
