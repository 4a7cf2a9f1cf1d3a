//! The admin API under `/_sim/` (no authentication: it is a test fixture's control panel):
//!
//! | Method and path | Does |
//! |---|---|
//! | `GET /_sim/healthz` | `ok` |
//! | `GET /_sim/info` | URLs, tenant, identity count |
//! | `GET /_sim/state` | the full state as JSON |
//! | `POST /_sim/reset` | back to the seeded start; clears faults, holds, counters, buckets |
//! | `POST /_sim/seed` | merges a seed document (JSON body) |
//! | `GET /_sim/counters`, `DELETE /_sim/counters` | `{operation: {status: count}}`, reset |
//! | `GET /_sim/faults`, `PUT /_sim/faults`, `DELETE /_sim/faults` | fault rules (JSON array) |
//! | `GET /_sim/holds`, `POST /_sim/holds`, `DELETE /_sim/holds` | hold rules and held requests |
//! | `POST /_sim/holds/{id}/release`, `POST /_sim/holds/release-all` | release held requests |
//! | `GET /_sim/holds/wait?count=N&timeoutMs=T` | waits until N requests are held (200) or times out (408) |
//! | `GET /_sim/clock`, `POST /_sim/clock/advance` (`{"seconds": s}`) | the simulator's clock |
//! | `GET`/`PUT /_sim/throttle`, `/_sim/latency`, `/_sim/behaviour` | runtime configuration |
//! | `PUT /_sim/vaults/{vault}/secrets/{name}` (`{"value": …, "contentType"?, "tags"?}`) | a new secret version |
//! | `PUT /_sim/vaults/{vault}/certificates/{name}`, `PUT /_sim/vaults/{vault}/keys/{name}` | a new self-signed certificate (with its key and secret), a new EC key |

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::harness::faults::FaultRule;
use crate::harness::holds::HoldSpec;
use crate::http::{empty, json};
use crate::seed::Seed;
use crate::shared::{Sim, lock};

fn bad(message: impl std::fmt::Display) -> Response {
    json(StatusCode::BAD_REQUEST, json!({"error": {"code": "BadRequest", "message": message.to_string()}}))
}

// The error is the finished HTTP answer, returned once per request: its size does not matter.
#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"code": "InternalServerError", "message": e.to_string()}}),
        ),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn handle(sim: &Sim, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Response {
    match inner(sim, method, path, query, body).await {
        Ok(r) | Err(r) => r,
    }
}

#[allow(clippy::result_large_err)]
async fn inner(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response, Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let m = method.as_str();
    let arm_err = |e: crate::error::ArmError| json(e.status, e.body());
    Ok(match (m, segs.as_slice()) {
        ("GET", ["healthz"]) => json(StatusCode::OK, json!("ok")),
        ("GET", ["info"]) => json(
            StatusCode::OK,
            json!({
                "urls": sim.urls.get(),
                "tenantId": sim.tenant_id(),
                "identities": sim.read(super::state::State::identity_count),
                "roleAssignments": sim.read(|s| s.role_assignments.len()),
            }),
        ),
        ("GET", ["state"]) => sim.read(to_json),
        ("POST", ["reset"]) => {
            sim.reset().await.map_err(arm_err)?;
            empty(StatusCode::NO_CONTENT)
        }
        ("POST", ["seed"]) => {
            let seed: Seed = parse(body)?;
            seed.validate().map_err(bad)?;
            let now = sim.clock.now_ms();
            sim.write(|s| {
                seed.apply(s, now);
                Ok(())
            })
            .await
            .map_err(arm_err)?;
            empty(StatusCode::NO_CONTENT)
        }
        ("GET", ["counters"]) => to_json(&sim.counters.snapshot()),
        ("DELETE", ["counters"]) => {
            sim.counters.reset();
            empty(StatusCode::NO_CONTENT)
        }
        ("GET", ["faults"]) => to_json(&sim.faults.get()),
        ("PUT", ["faults"]) => {
            let rules: Vec<FaultRule> = parse(body)?;
            sim.faults.set(rules);
            to_json(&sim.faults.get())
        }
        ("DELETE", ["faults"]) => {
            sim.faults.set(Vec::new());
            empty(StatusCode::NO_CONTENT)
        }
        ("GET", ["holds"]) => to_json(&sim.holds.status()),
        ("POST", ["holds"]) => {
            let spec: HoldSpec = parse(body)?;
            let id = sim.holds.add(spec);
            json(StatusCode::CREATED, json!({"id": id}))
        }
        ("DELETE", ["holds"]) => {
            sim.holds.clear();
            empty(StatusCode::NO_CONTENT)
        }
        ("POST", ["holds", "release-all"]) => {
            json(StatusCode::OK, json!({"released": sim.holds.release_all()}))
        }
        ("POST", ["holds", id, "release"]) => {
            let id: u64 = id.parse().map_err(|_| bad(format!("'{id}' is not a hold id")))?;
            if sim.holds.release(id) {
                json(StatusCode::OK, json!({"released": 1}))
            } else {
                json(
                    StatusCode::NOT_FOUND,
                    json!({"error": {"code": "NotFound", "message": format!("no held request {id}")}}),
                )
            }
        }
        ("GET", ["holds", "wait"]) => {
            let count = query_param(query, "count").and_then(|c| c.parse().ok()).unwrap_or(1);
            let timeout = query_param(query, "timeoutMs").and_then(|c| c.parse().ok()).unwrap_or(10_000);
            let ok = sim.holds.wait_held(count, Duration::from_millis(timeout)).await;
            let status = if ok { StatusCode::OK } else { StatusCode::REQUEST_TIMEOUT };
            json(status, json!({"held": sim.holds.held_count()}))
        }
        ("GET", ["clock"]) => json(
            StatusCode::OK,
            json!({"nowMs": sim.clock.now_ms(), "now": crate::harness::clock::format_rfc3339(sim.clock.now())}),
        ),
        ("POST", ["clock", "advance"]) => {
            let v: Value = parse(body)?;
            let secs = v
                .get("seconds")
                .and_then(Value::as_f64)
                .filter(|s| *s >= 0.0 && s.is_finite())
                .ok_or_else(|| bad("expected {\"seconds\": non-negative number}"))?;
            sim.clock.advance(Duration::from_secs_f64(secs));
            json(StatusCode::OK, json!({"nowMs": sim.clock.now_ms()}))
        }
        ("GET", ["throttle"]) => to_json(&sim.throttle.config()),
        ("PUT", ["throttle"]) => {
            sim.throttle.set_config(parse(body)?);
            to_json(&sim.throttle.config())
        }
        ("GET", ["latency"]) => to_json(&*lock(&sim.latency)),
        ("PUT", ["latency"]) => {
            *lock(&sim.latency) = parse(body)?;
            to_json(&*lock(&sim.latency))
        }
        ("GET", ["behaviour"]) => to_json(&sim.behaviour()),
        ("PUT", ["behaviour"]) => {
            *lock(&sim.behaviour) = parse(body)?;
            to_json(&sim.behaviour())
        }
        ("PUT", ["vaults", vault, kind, name]) => {
            let kind = match *kind {
                "secrets" => crate::kv::Kind::Secret,
                "certificates" => crate::kv::Kind::Certificate,
                "keys" => crate::kv::Kind::Key,
                other => return Err(bad(format!("'{other}' is not secrets, certificates or keys"))),
            };
            match crate::kv::objects::admin_put(sim, vault, kind, name, body).await {
                Ok(bundle) => json(StatusCode::OK, bundle),
                Err(e) => json(e.status, e.body()),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound", "message": format!("no admin endpoint {m} {path}")}}),
        ),
    })
}
