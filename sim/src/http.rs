//! The front of the HTTP server: sends each request to the admin API, the Entra endpoints, a vault's data
//! plane (by `Host`) or ARM, applies injected faults and latency, and counts outcomes by operation and
//! status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::arm::{self, Operation, Query, Route};
use crate::config::KeyVaultConfig;
use crate::entra::{self, EntraRoute};
use crate::error::ArmError;
use crate::kv::{KvRoute, VaultHost};
use crate::shared::{Sim, lock};

/// Per-connection control, put into each request's extensions by the accept loop.
#[derive(Clone)]
pub struct ConnCtl {
    /// Notified to close the connection without an answer (the "drop" fault).
    pub kill: Arc<Notify>,
    pub scheme: &'static str,
}

/// Largest request body we read; ARM's own limit is 4 MB for most providers.
const MAX_BODY: usize = 4 * 1024 * 1024;

enum Target {
    Arm(Route, Operation),
    Entra(EntraRoute),
    Vault(VaultHost, Option<KvRoute>),
    Invalid(ArmError),
}

pub async fn dispatch(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let ctl = req.extensions().get::<ConnCtl>().cloned();
    let scheme = ctl.as_ref().map(|c| c.scheme).unwrap_or("http");
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(ToString::to_string))
        .unwrap_or_else(|| String::from("localhost"));
    let base_url = format!("{scheme}://{host}");
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().map(str::to_owned);

    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ArmError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("The request body could not be read: {e}"),
            )
            .into_response();
        }
    };
    let vault = crate::kv::vault_host(&sim.config.keyvault, &host);
    if is_admin(vault.as_ref(), &path) {
        return crate::admin::handle(&sim, &method, &path, raw_query.as_deref(), &bytes).await;
    }

    let target = target(vault, &method, &path);
    let op_name = target.operation();

    let faults = sim.faults.decide(op_name);
    let delay = lock(&sim.latency).for_operation(op_name) + faults.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if faults.drop {
        sim.counters.record(op_name, "dropped");
        if let Some(ctl) = &ctl {
            ctl.kill.notify_one();
        }
        // The connection task drops this request with the connection.
        std::future::pending::<()>().await;
    }
    if let Some(err) = faults.error {
        sim.counters.record(op_name, err.status.as_str());
        return err.into_response();
    }

    // Run the request in its own task: a client that disconnects (an operator killed mid-request) must not
    // cancel a write halfway, as it would not in Azure.
    let task_sim = sim.clone();
    let headers: HeaderMap = parts.headers;
    let task = tokio::spawn(async move {
        match target {
            Target::Arm(route, op) => {
                arm::serve(
                    &task_sim,
                    method,
                    path,
                    route,
                    op,
                    Query::parse(raw_query.as_deref()),
                    headers,
                    bytes,
                    base_url,
                )
                .await
            }
            Target::Entra(route) => {
                entra::handle(&task_sim, route, raw_query.as_deref(), &headers, &bytes, &base_url).await
            }
            Target::Vault(host, route) => {
                let req = crate::kv::KvRequest {
                    host,
                    route,
                    query: Query::parse(raw_query.as_deref()),
                    headers,
                    body: bytes,
                    base_url: vault_base(&base_url),
                };
                crate::kv::handle(&task_sim, req).await
            }
            Target::Invalid(e) => e.into_response(),
        }
    });
    let resp = match task.await {
        Ok(r) => r,
        Err(e) => ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("The request failed inside the simulator: {e}"),
        )
        .into_response(),
    };
    sim.counters.record(op_name, resp.status().as_str());
    resp
}

fn first_segment(path: &str) -> String {
    path.split('/').find(|s| !s.is_empty()).unwrap_or("").to_ascii_lowercase()
}

/// The admin API (`/_sim/...`), on any host but a vault's.
fn is_admin(vault: Option<&VaultHost>, path: &str) -> bool {
    vault.is_none() && first_segment(path) == "_sim"
}

/// Where a request other than the admin API's goes: a vault's host name is its data plane whatever the path;
/// everything else is routed by path, to ARM or to Entra.
fn target(vault: Option<VaultHost>, method: &Method, path: &str) -> Target {
    let first = first_segment(path);
    if let Some(vault) = vault {
        Target::Vault(vault, crate::kv::parse(method, path))
    } else if first == "subscriptions" || first == "providers" {
        match arm::route::parse(path).and_then(|r| arm::route::operation(&r, method).map(|o| (r, o))) {
            Ok((r, o)) => Target::Arm(r, o),
            Err(e) => Target::Invalid(e),
        }
    } else {
        match entra::parse(method, path) {
            Some(r) => Target::Entra(r),
            None => Target::Invalid(ArmError::not_found(
                "NotFound",
                format!("The requested path '{path}' was not found."),
            )),
        }
    }
}

impl Target {
    /// The name counters, faults, holds and latency know the request by.
    fn operation(&self) -> &'static str {
        match self {
            Self::Arm(_, op) => op.name,
            Self::Entra(r) => r.operation(),
            Self::Vault(_, Some(r)) => r.operation(),
            Self::Vault(_, None) | Self::Invalid(_) => "Unknown",
        }
    }

    /// Whether serving it may change what the simulator holds (see `crate::operations`).
    fn writes(&self) -> bool {
        match self {
            Self::Arm(_, op) => op.is_write(),
            Self::Entra(r) => r.writes(),
            Self::Vault(_, Some(r)) => r.writes(),
            Self::Vault(_, None) | Self::Invalid(_) => false,
        }
    }
}

/// What [`dispatch`] counts a request to `host` and `path` as: its operation and whether it writes; `None`
/// for the admin API and for what no operation serves (counted as `Unknown`). The catalogue of operations
/// (`crate::operations`) is made of its answers.
pub(crate) fn classify(
    keyvault: &KeyVaultConfig,
    method: &Method,
    host: &str,
    path: &str,
) -> Option<(&'static str, bool)> {
    let vault = crate::kv::vault_host(keyvault, host);
    if is_admin(vault.as_ref(), path) {
        return None;
    }
    match target(vault, method, path) {
        Target::Vault(_, None) | Target::Invalid(_) => None,
        served => Some((served.operation(), served.writes())),
    }
}

/// A vault's ids start with `https://{host}` as the client addressed it, lowercase and without the default
/// port.
fn vault_base(base_url: &str) -> String {
    base_url.trim_end_matches(":443").to_ascii_lowercase()
}

pub fn router(sim: Arc<Sim>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(sim)
}

/// A JSON response with a status.
pub fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

pub fn empty(status: StatusCode) -> Response {
    Response::builder().status(status).body(Body::empty()).unwrap_or_else(|_| status.into_response())
}
