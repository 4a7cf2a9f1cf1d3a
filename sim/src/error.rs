//! Error types. `ArmError` is what an ARM route answers (`{"error":{"code","message"}}`), `EntraError` what
//! the token endpoint answers (OAuth2 error JSON with an AADSTS code), `SimError` what can go wrong while
//! starting or persisting the simulator itself.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered the way ARM answers it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// The body ARM sends for a request whose JSON could not be read. `InvalidRequestContent` is ARM's own
    /// code for this (seen in deployment errors); the wording follows ARM's.
    pub fn invalid_content(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }

    /// 405 for a verb the resource does not support, in the ASP.NET wording ARM answers with.
    pub fn method_not_allowed(method: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        )
    }

    /// `ResourceGroupNotFound` (404), wording from docs/azure.md#arm-errors.
    pub fn resource_group_not_found(rg: &str) -> Self {
        Self::not_found("ResourceGroupNotFound", format!("Resource group '{rg}' could not be found."))
    }

    /// `ResourceNotFound` (404) in the form of ARM's troubleshooting doc (docs/azure.md#arm-errors).
    pub fn resource_not_found(resource_type: &str, name: &str, rg: &str) -> Self {
        Self::not_found(
            "ResourceNotFound",
            format!(
                "The Resource '{resource_type}/{name}' under resource group '{rg}' was not found. For more \
                 details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().append(name, value);
        }
        resp
    }
}

/// An error from the Entra token endpoint, shaped like Entra's OAuth2 errors (docs/azure.md#error-shape).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}: AADSTS{aadsts}: {description}")]
pub struct EntraError {
    pub status: StatusCode,
    /// OAuth2 error, e.g. `invalid_client`, `invalid_request`.
    pub error: &'static str,
    /// The AADSTS number, e.g. 70021.
    pub aadsts: u32,
    pub description: String,
}

impl EntraError {
    pub fn new(status: StatusCode, error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        Self { status, error, aadsts, description: description.into() }
    }

    pub fn bad_request(error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, aadsts, description)
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let trace = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {}", self.aadsts, self.description),
            "error_codes": [self.aadsts],
            "timestamp": crate::harness::clock::format_rfc3339(time::OffsetDateTime::now_utc()),
            "trace_id": trace,
            "correlation_id": trace,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Failures of the simulator itself (start-up, TLS material, persistence, configuration).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot parse {what}: {message}")]
    Parse { what: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("persistence failed: {0}")]
    Persist(String),
}
