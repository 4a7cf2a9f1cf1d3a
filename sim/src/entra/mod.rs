//! The Entra side: `POST /{tenant}/oauth2/v2.0/token` (client credentials with a secret, or with a client
//! assertion validated against a FIC: workload identity federation), the discovery documents SDKs fetch
//! first, and the JWKS of the simulator's token key.

pub mod oidc;
pub mod tokens;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};

use crate::error::EntraError;
use crate::shared::Sim;
use tokens::AccessClaims;

/// Which Entra endpoint a request is for.
#[derive(Debug, Clone, PartialEq)]
pub enum EntraRoute {
    Token { tenant: String },
    OpenIdConfiguration { tenant: String, v2: bool },
    InstanceDiscovery,
    Keys,
}

impl EntraRoute {
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Token { .. } => "Token",
            Self::OpenIdConfiguration { .. } => "OpenIdConfiguration",
            Self::InstanceDiscovery => "InstanceDiscovery",
            Self::Keys => "Keys",
        }
    }

    /// Whether serving it changes what the simulator holds (`crate::operations`): never.
    pub fn writes(&self) -> bool {
        match self {
            // A POST that reads: it exchanges a credential (a secret, or a federated token checked against
            // the identity's federated credentials) for an access token; Entra keeps nothing a client could
            // read back, and idbind's steady state signs in as often as its tokens expire.
            Self::Token { .. } => false,
            Self::OpenIdConfiguration { .. } | Self::InstanceDiscovery | Self::Keys => false,
        }
    }
}

pub fn parse(method: &Method, path: &str) -> Option<EntraRoute> {
    let s: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET;
    match s.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] if method == Method::POST => {
            Some(EntraRoute::Token { tenant: (*tenant).to_owned() })
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] if get => {
            Some(EntraRoute::OpenIdConfiguration { tenant: (*tenant).to_owned(), v2: true })
        }
        [tenant, ".well-known", "openid-configuration"] if get => {
            Some(EntraRoute::OpenIdConfiguration { tenant: (*tenant).to_owned(), v2: false })
        }
        [_, "discovery", "instance"] | [_, "discovery", "v2.0", "instance"] if get => {
            Some(EntraRoute::InstanceDiscovery)
        }
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] if get => Some(EntraRoute::Keys),
        _ => None,
    }
}

pub async fn handle(
    sim: &Sim,
    route: EntraRoute,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    base_url: &str,
) -> Response {
    match route {
        EntraRoute::Token { tenant } => match token(sim, &tenant, headers, body, base_url).await {
            Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Err(e) => e.into_response(),
        },
        EntraRoute::OpenIdConfiguration { tenant, v2 } => {
            axum::Json(openid_configuration(sim, &tenant, v2, base_url)).into_response()
        }
        EntraRoute::InstanceDiscovery => match instance_discovery(sim, query, base_url) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => e.into_response(),
        },
        EntraRoute::Keys => axum::Json(sim.tokens.jwks()).into_response(),
    }
}

fn tenant_for_docs<'a>(sim: &'a Sim, tenant: &'a str) -> &'a str {
    if ["common", "organizations", "consumers"].contains(&tenant) { sim.tenant_id() } else { tenant }
}

fn openid_configuration(sim: &Sim, tenant: &str, v2: bool, base: &str) -> Value {
    let t = tenant_for_docs(sim, tenant);
    let (issuer, suffix) = if v2 {
        (format!("{base}/{t}/v2.0"), "v2.0/")
    } else {
        (format!("https://sts.windows.net/{t}/"), "")
    };
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{t}/oauth2/{suffix}authorize"),
        "token_endpoint": format!("{base}/{t}/oauth2/{suffix}token"),
        "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{t}/discovery/{suffix}keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    })
}

/// The Entra instances MSAL knows about, as `/common/discovery/instance` lists them: (preferred network host,
/// preferred cache host, aliases). [OBS: the answer of login.microsoftonline.com, as MSAL's sources and logs
/// show it; the German and other retired clouds are left out.]
pub const CLOUD_INSTANCES: &[(&str, &str, &[&str])] = &[
    (
        "login.microsoftonline.com",
        "login.windows.net",
        &["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
    ),
    (
        "login.partner.microsoftonline.cn",
        "login.partner.microsoftonline.cn",
        &["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    ),
    (
        "login.microsoftonline.us",
        "login.microsoftonline.us",
        &["login.microsoftonline.us", "login.usgovcloudapi.net"],
    ),
];

/// `host[:port]` of a URL such as `https://127.0.0.1:8443`.
fn authority_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// MSAL's instance discovery (`GET /common/discovery/instance?api-version=1.1&authorization_endpoint=…`): the
/// tenant discovery endpoint of the instance asked about, and the metadata of every instance Entra knows,
/// which includes the simulator's own listeners (each its own only alias) besides the clouds. An instance
/// that is neither answers 400 AADSTS50049, as Entra does for a host it does not know.
fn instance_discovery(sim: &Sim, query: Option<&str>, base: &str) -> Result<Value, EntraError> {
    let authorize = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "authorization_endpoint")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| format!("{base}/common/oauth2/authorize"));
    let parsed = url::Url::parse(&authorize).ok();
    let asked = authority_of(&authorize);
    let tenant = parsed
        .as_ref()
        .and_then(|u| u.path_segments().and_then(|mut s| s.next().map(str::to_owned)))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| String::from("common"));
    // The simulator's own listeners, as (scheme, host[:port]).
    let mut own: Vec<(String, String)> = [Some(base.to_owned())]
        .into_iter()
        .chain(sim.urls.get().into_iter().flat_map(|u| [u.https.clone(), u.http.clone()]))
        .flatten()
        .filter_map(|u| Some((url::Url::parse(&u).ok()?.scheme().to_owned(), authority_of(&u)?)))
        .filter(|(_, h)| !CLOUD_INSTANCES.iter().any(|(_, _, aliases)| aliases.contains(&h.as_str())))
        .collect();
    own.dedup();
    let (Some(url), Some(asked)) = (parsed, asked) else {
        return Err(unknown_instance());
    };
    let known = own.iter().any(|(_, h)| *h == asked)
        || CLOUD_INSTANCES.iter().any(|(_, _, aliases)| aliases.contains(&asked.as_str()));
    // MSAL asks about `https://{host}/{tenant}/oauth2/v2.0/authorize` with the authority's host name only,
    // without its port (MSAL Python's `Authority` uses the URL's hostname), so a listener of the simulator's
    // own is also recognised by scheme and host name alone, and the answer names it with its port: MSAL
    // fetches the tenant discovery endpoint it is given.
    let host = if known {
        asked
    } else if url.port().is_none() {
        let name = url.host_str().unwrap_or("").to_ascii_lowercase();
        let host_name = |h: &str| h.rsplit_once(':').map_or(h, |(n, _)| n).to_owned();
        own.iter()
            .find(|(scheme, h)| scheme == url.scheme() && host_name(h) == name)
            .map(|(_, h)| h.clone())
            .ok_or_else(unknown_instance)?
    } else {
        return Err(unknown_instance());
    };
    let mut metadata: Vec<Value> = CLOUD_INSTANCES
        .iter()
        .map(|(network, cache, aliases)| {
            json!({"preferred_network": network, "preferred_cache": cache, "aliases": aliases})
        })
        .collect();
    metadata.extend(
        own.iter().map(|(_, h)| json!({"preferred_network": h, "preferred_cache": h, "aliases": [h]})),
    );
    Ok(json!({
        "tenant_discovery_endpoint":
            format!("{}://{host}/{tenant}/v2.0/.well-known/openid-configuration", url.scheme()),
        "api-version": "1.1",
        "metadata": metadata,
    }))
}

fn unknown_instance() -> EntraError {
    EntraError::bad_request("invalid_instance", 50049, "Unknown or invalid instance.")
}

fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// client_secret_basic: `Authorization: Basic base64(urlenc(id):urlenc(secret))`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((dec(id), dec(secret)))
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn token(
    sim: &Sim,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
    base_url: &str,
) -> Result<Value, EntraError> {
    let f = form(body);
    let tenant_ok = tenant.eq_ignore_ascii_case(sim.tenant_id()) || tenant == "organizations";
    if !tenant_ok {
        return Err(EntraError::bad_request(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are \
                 signing into the correct cloud."
            ),
        ));
    }
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(EntraError::bad_request(
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ));
        }
        None => {
            return Err(EntraError::bad_request(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ));
        }
    }
    let scope = f.get("scope").cloned().unwrap_or_default();
    // MSAL adds the OIDC scopes to every request, app-only grants included (docs/azure.md#token-exchange);
    // Entra ignores them there. What must be exactly one is the resource.
    let resources: Vec<&str> = scope.split_whitespace().filter(|s| !is_oidc_scope(s)).collect();
    let resource = match resources.as_slice() {
        [one] if one.ends_with("/.default") => one.trim_end_matches(".default").to_owned(),
        [] if scope.trim().is_empty() => {
            return Err(EntraError::bad_request(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            ));
        }
        _ => {
            return Err(EntraError::bad_request(
                "invalid_scope",
                70011,
                format!(
                    "The provided request must include a 'scope' input parameter. The provided value for \
                     the input parameter 'scope' is not valid. The scope {scope} is not valid. The client \
                     credentials flow takes exactly one scope ending in /.default."
                ),
            ));
        }
    };
    let basic = basic_auth(headers);
    let client_id = f.get("client_id").cloned().or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return Err(EntraError::bad_request(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let (oid, appid) = if let Some(assertion) = f.get("client_assertion") {
        if f.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
            return Err(EntraError::bad_request(
                "invalid_request",
                50027,
                format!("Invalid client_assertion_type; expected '{ASSERTION_TYPE}'."),
            ));
        }
        federated(sim, &client_id, assertion).await?
    } else {
        let secret = f.get("client_secret").cloned().or_else(|| basic.map(|b| b.1));
        let Some(secret) = secret else {
            return Err(EntraError::bad_request(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or \
                 'client_secret'.",
            ));
        };
        let app = sim.read(|s| s.apps.get(&client_id.to_ascii_lowercase()).cloned());
        let Some(app) = app else {
            return Err(unknown_client(&client_id, sim.tenant_id()));
        };
        if app.client_secret != secret {
            return Err(EntraError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the \
                     client secret value, not the client secret ID, for a secret added to app \
                     '{client_id}'."
                ),
            ));
        }
        (app.object_id, app.client_id)
    };
    let lifetime = sim.config.entra.token_lifetime_secs.max(1);
    let now = sim.clock.now_secs();
    let claims = AccessClaims {
        aud: resource,
        iss: format!("https://sts.windows.net/{}/", sim.tenant_id()),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        oid: oid.clone(),
        tid: sim.tenant_id().to_owned(),
        appid,
        sub: oid,
        idtyp: String::from("app"),
        ver: String::from("1.0"),
    };
    let access_token = sim.tokens.issue(&claims).map_err(|e| {
        EntraError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000, e.to_string())
    })?;
    let _ = base_url;
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "expires_on": (now + lifetime).to_string(),
        "not_before": now.to_string(),
        "access_token": access_token,
    }))
}

/// The OpenID Connect scopes MSAL sends along with a resource scope.
const OIDC_SCOPES: &[&str] = &["openid", "offline_access", "profile"];

fn is_oidc_scope(scope: &str) -> bool {
    OIDC_SCOPES.iter().any(|s| s.eq_ignore_ascii_case(scope))
}

fn assertion_error(aadsts: u32, msg: impl Into<String>) -> EntraError {
    EntraError::bad_request("invalid_client", aadsts, msg)
}

/// Validates a client assertion for the identity with `client_id` and returns its (principal id, client id).
async fn federated(sim: &Sim, client_id: &str, assertion: &str) -> Result<(String, String), EntraError> {
    let identity = sim.read(|s| s.identity_by_client_id(client_id).cloned());
    let Some(identity) = identity else {
        return Err(unknown_client(client_id, sim.tenant_id()));
    };
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| assertion_error(50027, format!("JWT token is invalid or malformed: {e}.")))?;
    let claims = unverified_claims(assertion)
        .ok_or_else(|| assertion_error(50027, "JWT token is invalid or malformed."))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("").to_owned();
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("").to_owned();
    let auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    // Issuer and subject compare exactly: case and trailing slash matter
    // (docs/azure.md#federated-credentials). A FIC still propagating does not match yet, and the answer is
    // the same as for none (docs/azure.md#propagation).
    let now_ms = sim.clock.now_ms();
    let matched = identity.federated_identity_credentials.values().any(|f| {
        f.issuer == iss
            && f.subject == sub
            && f.audiences.iter().any(|a| auds.contains(a))
            && now_ms >= f.effective_from_ms
    });
    if !matched {
        return Err(EntraError::bad_request(
            "invalid_request",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: \
                 '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                auds.join(",")
            ),
        ));
    }
    let allowed = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
    ];
    if !allowed.contains(&header.alg) {
        return Err(assertion_error(
            5002738,
            format!("The client assertion uses an unsupported signing algorithm {:?}.", header.alg),
        ));
    }
    let key = sim.oidc.key_for(&iss, header.kid.as_deref()).await.map_err(|e| match e {
        oidc::OidcError::Fetch(m) => assertion_error(50166, m),
        oidc::OidcError::NoKey(m) => {
            assertion_error(700027, format!("Client assertion failed signature validation. {m}"))
        }
    })?;
    let mut validation = Validation::new(header.alg);
    // Time is checked below against the simulator's clock; audience and issuer were matched against the FIC
    // above.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| assertion_error(700027, format!("Client assertion failed signature validation. {e}")))?;
    let now = sim.clock.now_secs();
    let skew = sim.config.entra.assertion_clock_skew_secs;
    let exp = claims.get("exp").and_then(Value::as_u64);
    let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(0);
    let fmt = |t: u64| crate::harness::clock::format_ms(t * 1000);
    match exp {
        Some(exp) if exp + skew > now && nbf <= now + skew => Ok((identity.principal_id, identity.client_id)),
        Some(exp) => Err(assertion_error(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid \
                 from {}, expiry time of assertion {}.",
                fmt(now),
                fmt(nbf),
                fmt(exp)
            ),
        )),
        None => Err(assertion_error(700024, "Client assertion has no expiry time (exp).")),
    }
}

fn unverified_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// AADSTS700016: no app or identity with this client id, in Entra's wording.
fn unknown_client(client_id: &str, tenant_id: &str) -> EntraError {
    EntraError::bad_request(
        "unauthorized_client",
        700016,
        format!("Application with identifier '{client_id}' was not found in the directory '{tenant_id}'."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            parse(&Method::POST, "/t/oauth2/v2.0/token"),
            Some(EntraRoute::Token { tenant: "t".into() })
        );
        assert_eq!(parse(&Method::GET, "/t/oauth2/v2.0/token"), None);
        assert_eq!(
            parse(&Method::GET, "/t/v2.0/.well-known/openid-configuration"),
            Some(EntraRoute::OpenIdConfiguration { tenant: "t".into(), v2: true })
        );
        assert_eq!(parse(&Method::GET, "/common/discovery/instance"), Some(EntraRoute::InstanceDiscovery));
        assert_eq!(parse(&Method::GET, "/t/discovery/v2.0/keys"), Some(EntraRoute::Keys));
    }
}
