//! The Key Vault data plane, served for `Host: <vault>.vault.azure.net` (and the other clouds' suffixes,
//! `KeyVaultConfig`): secrets (set, get, list, versions), certificates and keys (get, list, versions), with
//! Key Vault's bearer challenge, its token checks, and authorization from role assignments (RBAC vaults) or
//! access policies, as the Key Vault REST API (7.x to 2026-04-01) and docs/azure.md#key-vault-data-plane
//! describe. Not subject to ARM's throttling buckets: Key Vault has limits of its own, which the simulator
//! does not model.
//!
//! | Operation | Method and path | Data action (RBAC) | Access policy |
//! |---|---|---|---|
//! | `Secrets_Set` | `PUT /secrets/{name}` | `secrets/setSecret/action` | secrets `set` |
//! | `Secrets_Get` | `GET /secrets/{name}[/{version}]` | `secrets/getSecret/action` | secrets `get` |
//! | `Secrets_List` | `GET /secrets` | `secrets/readMetadata/action` | secrets `list` |
//! | `Secrets_ListVersions` | `GET /secrets/{name}/versions` | `secrets/readMetadata/action` | secrets `list` |
//! | `Certificates_Get` | `GET /certificates/{name}[/{version}]` | `certificates/read` | certificates `get` |
//! | `Certificates_List`, `Certificates_ListVersions` | `GET /certificates[/{name}/versions]` | `certificates/read` | certificates `list` |
//! | `Keys_Get` | `GET /keys/{name}[/{version}]` | `keys/read` | keys `get` |
//! | `Keys_List`, `Keys_ListVersions` | `GET /keys[/{name}/versions]` | `keys/read` | keys `list` |

pub mod auth;
pub mod objects;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::config::{KeyVaultConfig, VaultCloud};
use crate::shared::Sim;

/// API versions Key Vault answers; `azure-keyvault-*` and the other SDKs send one of these. The newest is
/// what `azure-keyvault-secrets` 4.12 sends by default; 2016-10-01 is the first GA version, which that SDK
/// still offers.
const API_VERSIONS: &[&str] = &[
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-06-01-preview",
    "2025-07-01",
    "2026-04-01",
];

/// A request's vault: its name and the cloud whose suffix the host carries.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultHost {
    pub vault: String,
    pub cloud: VaultCloud,
}

/// The suffix ARM's `vaultUri` uses.
pub fn primary_suffix(cfg: &KeyVaultConfig) -> &str {
    cfg.clouds.first().map_or("vault.azure.net", |c| c.dns_suffix.as_str())
}

/// `kv-shop.vault.azure.net[:443]` → the vault `kv-shop` of the public cloud; anything else → None.
pub fn vault_host(cfg: &KeyVaultConfig, host: &str) -> Option<VaultHost> {
    let host = host.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    cfg.clouds.iter().find_map(|c| {
        let name = host.strip_suffix(&c.dns_suffix.to_ascii_lowercase())?.strip_suffix('.')?;
        (!name.is_empty() && !name.contains('.'))
            .then(|| VaultHost { vault: name.to_owned(), cloud: c.clone() })
    })
}

/// The three kinds of vault objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Certificate,
    Key,
}

impl Kind {
    /// The path segment, which is also the access-policy permission list's name.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Certificate => "certificates",
            Self::Key => "keys",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Certificate => "certificate",
            Self::Key => "key",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum KvRoute {
    List(Kind),
    Versions(Kind, String),
    Get(Kind, String, Option<String>),
    SetSecret(String),
}

impl KvRoute {
    pub fn kind(&self) -> Kind {
        match self {
            Self::List(k) | Self::Versions(k, _) | Self::Get(k, ..) => *k,
            Self::SetSecret(_) => Kind::Secret,
        }
    }

    /// The object the request is about, for the resource named in a denial.
    pub fn object(&self) -> Option<&str> {
        match self {
            Self::Versions(_, n) | Self::Get(_, n, _) | Self::SetSecret(n) => Some(n),
            Self::List(_) => None,
        }
    }

    /// The operation name counters and faults use.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::SetSecret(_) => "Secrets_Set",
            Self::Get(Kind::Secret, ..) => "Secrets_Get",
            Self::List(Kind::Secret) => "Secrets_List",
            Self::Versions(Kind::Secret, _) => "Secrets_ListVersions",
            Self::Get(Kind::Certificate, ..) => "Certificates_Get",
            Self::List(Kind::Certificate) => "Certificates_List",
            Self::Versions(Kind::Certificate, _) => "Certificates_ListVersions",
            Self::Get(Kind::Key, ..) => "Keys_Get",
            Self::List(Kind::Key) => "Keys_List",
            Self::Versions(Kind::Key, _) => "Keys_ListVersions",
        }
    }

    /// Whether serving it changes what the vault holds (`crate::operations`): a new secret version does.
    pub fn writes(&self) -> bool {
        match self {
            Self::SetSecret(_) => true,
            Self::List(_) | Self::Versions(..) | Self::Get(..) => false,
        }
    }

    /// The RBAC data action and the access-policy permission the operation needs.
    pub fn permission(&self) -> (&'static str, &'static str) {
        match self {
            Self::SetSecret(_) => ("Microsoft.KeyVault/vaults/secrets/setSecret/action", "set"),
            Self::Get(Kind::Secret, ..) => ("Microsoft.KeyVault/vaults/secrets/getSecret/action", "get"),
            Self::List(Kind::Secret) | Self::Versions(Kind::Secret, _) => {
                ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", "list")
            }
            Self::Get(Kind::Certificate, ..) => ("Microsoft.KeyVault/vaults/certificates/read", "get"),
            Self::List(Kind::Certificate) | Self::Versions(Kind::Certificate, _) => {
                ("Microsoft.KeyVault/vaults/certificates/read", "list")
            }
            Self::Get(Kind::Key, ..) => ("Microsoft.KeyVault/vaults/keys/read", "get"),
            Self::List(Kind::Key) | Self::Versions(Kind::Key, _) => {
                ("Microsoft.KeyVault/vaults/keys/read", "list")
            }
        }
    }
}

/// Recognises a data-plane path. SDKs ask for the current version as `/secrets/{name}/` (an empty version),
/// so empty segments are ignored.
pub fn parse(method: &Method, path: &str) -> Option<KvRoute> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (first, rest) = segs.split_first()?;
    let kind = match first.to_ascii_lowercase().as_str() {
        "secrets" => Kind::Secret,
        "certificates" => Kind::Certificate,
        "keys" => Kind::Key,
        _ => return None,
    };
    let get = method == Method::GET;
    let o = |s: &str| s.to_owned();
    match rest {
        [] if get => Some(KvRoute::List(kind)),
        [name] if get => Some(KvRoute::Get(kind, o(name), None)),
        [name] if method == Method::PUT && kind == Kind::Secret => Some(KvRoute::SetSecret(o(name))),
        [name, v] if get && v.eq_ignore_ascii_case("versions") => Some(KvRoute::Versions(kind, o(name))),
        [name, version] if get => Some(KvRoute::Get(kind, o(name), Some(o(version)))),
        _ => None,
    }
}

/// An error as Key Vault answers it: `{"error":{"code","message","innererror"?}}`, and for a 401 the bearer
/// challenge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct KvError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub inner: Option<&'static str>,
    pub challenge: Option<HeaderValue>,
}

impl KvError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into(), inner: None, challenge: None }
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(inner) = self.inner {
            error["innererror"] = json!({"code": inner});
        }
        json!({ "error": error })
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(c) = self.challenge {
            resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

/// A data-plane request after routing.
pub struct KvRequest {
    pub host: VaultHost,
    /// `None` for a path Key Vault does not have.
    pub route: Option<KvRoute>,
    pub query: crate::arm::Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `https://{vault}.{suffix}`, as the client addressed it; object ids start with it.
    pub base_url: String,
}

pub async fn handle(sim: &Sim, req: KvRequest) -> Response {
    let result = serve(sim, &req).await;
    let mut resp = match result {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert(HeaderName::from_static("x-ms-request-id"), v);
    }
    resp
}

async fn serve(sim: &Sim, req: &KvRequest) -> Result<(StatusCode, serde_json::Value), KvError> {
    let caller = auth::authenticate(sim, &req.host, &req.headers)?;
    let api_version = check_api_version(&req.query)?;
    let Some(route) = &req.route else {
        return Err(KvError::new(StatusCode::NOT_FOUND, "NotFound", "The requested path was not found."));
    };
    let vault =
        sim.read(|s| s.vault_by_name(&req.host.vault).map(|(sub, rg, v)| auth::VaultRef::of(sub, rg, v)));
    let Some(vault) = vault else {
        // [UNVERIFIED] A real client fails to resolve the name of a vault that does not exist; the proxy
        // refuses such a CONNECT, and a request that still arrives (Host header on the direct listener) gets
        // this.
        return Err(KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("The vault '{}' does not exist.", req.host.vault),
        ));
    };
    auth::authorize(sim, &caller, &vault, route)?;
    let page = objects::Paging::from_query(&req.query, sim.config.keyvault.page_size, &api_version)?;
    match route {
        KvRoute::SetSecret(name) => {
            let input = objects::SecretInput::from_body(&req.body)?;
            let bundle = objects::set_secret(sim, &req.host.vault, name, input, &req.base_url).await?;
            Ok((StatusCode::OK, bundle))
        }
        KvRoute::Get(kind, name, version) => sim
            .read(|s| objects::get(s, &req.host.vault, *kind, name, version.as_deref(), &req.base_url))
            .map(|b| (StatusCode::OK, b)),
        KvRoute::List(kind) => {
            Ok((StatusCode::OK, sim.read(|s| objects::list(s, &req.host.vault, *kind, &req.base_url, &page))))
        }
        KvRoute::Versions(kind, name) => sim
            .read(|s| objects::versions(s, &req.host.vault, *kind, name, &req.base_url, &page))
            .map(|b| (StatusCode::OK, b)),
    }
}

/// `api-version` is required and must be one Key Vault serves. [UNVERIFIED] wording of both answers.
fn check_api_version(query: &crate::arm::Query) -> Result<String, KvError> {
    match query.get("api-version") {
        Some(v) if API_VERSIONS.contains(&v) => Ok(v.to_owned()),
        Some(v) => Err(KvError::bad_parameter(format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported version \
             (2026-04-01)."
        ))),
        None => Err(KvError::bad_parameter("The api-version query parameter is required.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_routes() {
        let cfg = KeyVaultConfig::default();
        assert_eq!(vault_host(&cfg, "KV-Shop.vault.azure.net:443").map(|v| v.vault), Some("kv-shop".into()));
        assert_eq!(
            vault_host(&cfg, "kv.vault.usgovcloudapi.net").map(|v| v.cloud.authority_host),
            Some("https://login.microsoftonline.us".into())
        );
        assert_eq!(vault_host(&cfg, "vault.azure.net"), None);
        assert_eq!(vault_host(&cfg, "a.b.vault.azure.net"), None);
        assert_eq!(vault_host(&cfg, "management.azure.com"), None);
        assert_eq!(parse(&Method::GET, "/secrets"), Some(KvRoute::List(Kind::Secret)));
        assert_eq!(parse(&Method::GET, "/secrets/s/"), Some(KvRoute::Get(Kind::Secret, "s".into(), None)));
        assert_eq!(
            parse(&Method::GET, "/keys/k/abc"),
            Some(KvRoute::Get(Kind::Key, "k".into(), Some("abc".into())))
        );
        assert_eq!(
            parse(&Method::GET, "/certificates/c/versions"),
            Some(KvRoute::Versions(Kind::Certificate, "c".into()))
        );
        assert_eq!(parse(&Method::PUT, "/secrets/s"), Some(KvRoute::SetSecret("s".into())));
        assert_eq!(parse(&Method::PUT, "/keys/k"), None);
        assert_eq!(parse(&Method::GET, "/storage"), None);
    }
}
