//! The ARM front door: authentication, api-version, throttling, authorization, holds and the FIC write
//! window, then the resource providers (`resources`, `msi`, `authorization`, `keyvault`, and `generic` for
//! the seeded resources of `catalog`).

pub mod authorization;
pub mod catalog;
pub mod conditions;
pub mod generic;
pub mod keyvault;
pub mod msi;
pub mod rbac;
pub mod resources;
pub mod roles;
pub mod route;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::error::ArmError;
use crate::harness::holds::HoldPhase;
use crate::harness::throttle::ThrottleRequest;
use crate::shared::{Sim, lock};
pub use route::{Operation, Route};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub oid: String,
    pub appid: String,
}

/// Query parameters, looked up case-insensitively (`$skiptoken` and `$skipToken` both occur).
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct ArmRequest {
    pub method: Method,
    /// The request path as sent (for nextLink).
    pub path: String,
    pub route: Route,
    pub op: Operation,
    pub query: Query,
    pub body: Bytes,
    /// `scheme://host[:port]` the caller used.
    pub base_url: String,
    pub api_version: String,
    pub caller: Caller,
}

impl ArmRequest {
    /// The body as JSON; ARM's InvalidRequestContent when it is not.
    pub fn json(&self) -> Result<Value, ArmError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ArmError::invalid_content("The request content is empty"));
        }
        let v: Value = serde_json::from_slice(&self.body).map_err(ArmError::invalid_content)?;
        if !v.is_object() {
            return Err(ArmError::invalid_content("The request content must be a JSON object"));
        }
        Ok(v)
    }

    /// A nextLink for the same path with these query parameters.
    pub fn next_link(&self, params: &[(&str, String)]) -> String {
        let mut link = format!("{}{}?api-version={}", self.base_url, self.path, enc(&self.api_version));
        for (k, v) in params {
            link.push('&');
            link.push_str(k);
            link.push('=');
            link.push_str(&enc(v));
        }
        link
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What a provider answers: a status and an optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
}

impl ArmResponse {
    pub fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body: Some(body) }
    }

    pub fn created(body: Value) -> Self {
        Self { status: StatusCode::CREATED, body: Some(body) }
    }

    pub fn status(status: StatusCode) -> Self {
        Self { status, body: None }
    }
}

/// `{value, nextLink}` for `items[skip..skip+size]`; `link(next_offset)` builds the nextLink.
pub fn page(items: Vec<Value>, skip: usize, size: usize, link: impl Fn(usize) -> String) -> Value {
    let total = items.len();
    let size = size.max(1);
    let end = skip.saturating_add(size).min(total);
    let value: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
    let mut body = serde_json::json!({ "value": value });
    if end < total {
        body["nextLink"] = Value::String(link(end));
    }
    body
}

/// Parses a skip token we issued (an offset); anything else starts from the beginning, as an opaque token
/// from elsewhere means nothing to us.
pub fn skip_of(query: &Query, names: &[&str]) -> usize {
    names.iter().find_map(|n| query.get(n)).and_then(|t| t.parse().ok()).unwrap_or(0)
}

const AUDIENCES: &[&str] = &["https://management.azure.com", "https://management.core.windows.net"];

fn audience_ok(aud: &str, base_url: &str, sim: &Sim) -> bool {
    let aud = aud.trim_end_matches('/');
    if AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud))
        || aud.eq_ignore_ascii_case(base_url.trim_end_matches('/'))
    {
        return true;
    }
    let urls = sim.urls.get();
    urls.is_some_and(|u| {
        [&u.https, &u.http].into_iter().flatten().any(|x| x.trim_end_matches('/').eq_ignore_ascii_case(aud))
    })
}

fn unauthorized(code: &str, message: String, base_url: &str, tenant: &str) -> ArmError {
    let challenge = format!(
        "Bearer authorization_uri=\"{base_url}/{tenant}\", error=\"invalid_token\", \
         error_description=\"{code}\""
    );
    let err = ArmError::new(StatusCode::UNAUTHORIZED, code, message);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => err.with_header(axum::http::header::WWW_AUTHENTICATE, v),
        Err(_) => err,
    }
}

/// Validates the bearer token (our own JWT), ARM's 401 answers otherwise.
pub fn authenticate(sim: &Sim, headers: &HeaderMap, base_url: &str) -> Result<Caller, ArmError> {
    let tenant = sim.tenant_id();
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        if sim.config.allow_anonymous {
            let p = sim.config.anonymous_principal.clone();
            return Ok(Caller { oid: p.clone(), appid: p });
        }
        return Err(unauthorized(
            "AuthenticationFailed",
            String::from("Authentication failed. The 'Authorization' header is missing."),
            base_url,
            tenant,
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized(
                "AuthenticationFailed",
                String::from(
                    "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                ),
                base_url,
                tenant,
            )
        })?;
    let claims = sim.tokens.verify(token).map_err(|_| {
        unauthorized(
            "InvalidAuthenticationToken",
            String::from("The access token is invalid."),
            base_url,
            tenant,
        )
    })?;
    let now = sim.clock.now_secs();
    if claims.exp <= now {
        return Err(unauthorized(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                crate::harness::clock::format_ms(claims.exp * 1000),
                crate::harness::clock::format_ms(now * 1000)
            ),
            base_url,
            tenant,
        ));
    }
    if !audience_ok(&claims.aud, base_url, sim) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly \
                 match with one of the allowed audiences \
                 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud
            ),
            base_url,
            tenant,
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(tenant) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{}'. It must match the tenant '{tenant}'.",
                claims.iss
            ),
            base_url,
            tenant,
        ));
    }
    Ok(Caller { oid: claims.oid, appid: claims.appid })
}

fn looks_like_api_version(v: &str) -> bool {
    let date = v.get(..10).unwrap_or("");
    let b = date.as_bytes();
    date.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && date.chars().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (v.len() == 10 || v[10..].starts_with('-'))
}

/// Checks `api-version` against the operation's provider.
///
/// ARM answers an absent version with `MissingApiVersionParameter` and a malformed one with
/// `InvalidApiVersionParameter`. For a well-formed version the provider does not serve, ARM itself (resource
/// groups) answers `InvalidApiVersionParameter`, while a resource provider's types get
/// `NoRegisteredProviderFound` ("No registered resource provider found for location … and API version …").
/// [OBS: both wordings appear in public logs; which one a given RP type yields is our most plausible
/// reading.]
pub fn check_api_version(op: &Operation, query: &Query, location: &str) -> Result<String, ArmError> {
    let Some(v) = query.get("api-version") else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let supported = op.family.api_versions();
    if supported.contains(&v) {
        return Ok(v.to_owned());
    }
    let list = catalog::newest_first(supported).join(", ");
    let arm_itself = matches!(op.family, route::Family::Resources | route::Family::Subscriptions);
    if !looks_like_api_version(v) || arm_itself {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{v}' is invalid. The supported versions are '{list}'."),
        ));
    }
    Err(ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location '{location}' and API version '{v}' for type \
             '{}'. The supported api-versions are '{list}'.",
            op.resource_type
        ),
    ))
}

/// Glob match with `*`, case-insensitive (RBAC action patterns).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let mut rest = a.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// Whether `inner` is `outer` or below it (segment-wise, case-insensitive; "" is the root).
pub fn scope_within(inner: &str, outer: &str) -> bool {
    let i: Vec<String> = inner.split('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect();
    let o: Vec<String> = outer.split('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect();
    i.len() >= o.len() && i[..o.len()] == o[..]
}

/// The scope an operation acts on, for authorization and its error message.
fn authz_scope(req_path: &str) -> String {
    let segs: Vec<&str> = req_path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}

/// Reads of tenant-level metadata every signed-in caller may make: role definitions and resource providers at
/// the tenant root (`/providers/…`), which describe Azure itself, not anyone's resources [UNVERIFIED: taken
/// from how the portal and CLI read them for any user].
fn open_to_every_caller(route: &Route) -> bool {
    match route {
        Route::RoleDefinitions { scope } | Route::RoleDefinition { scope, .. } => scope.is_empty(),
        Route::Provider { sub, .. } => sub.is_none(),
        _ => false,
    }
}

/// Authorizes the request from the caller's role assignments (`rbac`), with ARM's 403 when they do not allow
/// it. A request under a subscription the simulator does not know is let through, to be answered
/// `SubscriptionNotFound` (404) as ARM answers it, before any role is looked at.
fn authorize(
    sim: &Sim,
    caller: &Caller,
    op: &Operation,
    route: &Route,
    path: &str,
    body: &Bytes,
) -> Result<(), ArmError> {
    let scope = authz_scope(path);
    if open_to_every_caller(route) && !op.is_write() {
        return Ok(());
    }
    // For a role assignment PUT without principalType: whether the directory shows the principal yet.
    let directory_view = match route {
        Route::RoleAssignment { .. } if op.is_write() => {
            (sim.clock.now_ms(), sim.behaviour().principal_replication_delay_ms)
        }
        _ => (0, 0),
    };
    let allowed = sim.read(|s| {
        if let Some(sub) = route::subscription_of(route)
            && !s.subscriptions.contains_key(&crate::state::key(&sub))
        {
            return true;
        }
        let written = written_assignment(s, directory_view, route, op, body);
        let deleted = deleted_assignment(s, route, op);
        let attributes = rbac::RequestAttributes {
            request: written.as_ref(),
            resource: deleted.as_ref().and_then(Option::as_ref),
            deletes_nothing: matches!(deleted, Some(None)),
        };
        rbac::arm_permits(s, &caller.oid, op.action, &scope, &attributes)
    });
    if allowed {
        return Ok(());
    }
    // Wording from docs/azure.md#arm-errors [OBS]; role-assignment writes get the ABAC variant [DOC].
    let what = if op.action.starts_with("Microsoft.Authorization/roleAssignments/") && op.is_write() {
        "does not have authorization or an ABAC condition not fulfilled to perform action"
    } else {
        "does not have authorization to perform action"
    };
    Err(ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{}' with object id '{}' {what} '{}' over scope '{scope}' or the scope is invalid. \
             If access was recently granted, please refresh your credentials.",
            caller.appid, caller.oid, op.action
        ),
    ))
}

/// What a role assignment PUT asks for, as a condition's `@Request[…]` attributes (from the body as sent: a
/// body that is not JSON gives none, and the provider then answers 400 to whoever may write). Without
/// `principalType` the type is the directory's, when the directory knows the principal (replicated); else it
/// is unknown, which fulfils no condition on it [UNVERIFIED: what ARM evaluates then is not documented].
fn written_assignment(
    s: &crate::state::State,
    (now_ms, replication_delay_ms): (u64, u64),
    route: &Route,
    op: &Operation,
    body: &Bytes,
) -> Option<conditions::Attributes> {
    if !matches!(route, Route::RoleAssignment { .. }) || op.kind != crate::harness::throttle::OpKind::Write {
        return None;
    }
    let body: Value = serde_json::from_slice(body).ok()?;
    let props = body.get("properties")?;
    let text = |field: &str| props.get(field).and_then(Value::as_str).map(str::to_owned);
    let principal_id = text("principalId");
    let principal_type = text("principalType").or_else(|| {
        let known = s.directory.get(&crate::state::key(principal_id.as_deref()?))?;
        (now_ms.saturating_sub(known.created_at_ms) >= replication_delay_ms)
            .then(|| known.principal_type.clone())
    });
    Some(conditions::Attributes {
        role_definition_id: text("roleDefinitionId")
            .map(|id| id.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned()),
        principal_id,
        principal_type,
    })
}

/// For a role assignment DELETE: `Some(Some(attributes))` of the assignment it removes, `Some(None)` when
/// there is none; `None` for every other request.
fn deleted_assignment(
    s: &crate::state::State,
    route: &Route,
    op: &Operation,
) -> Option<Option<conditions::Attributes>> {
    let Route::RoleAssignment { scope, name } = route else {
        return None;
    };
    if op.kind != crate::harness::throttle::OpKind::Delete {
        return None;
    }
    Some(authorization::find_assignment(s, scope, name).map(rbac::attributes_of))
}

/// Location used in NoRegisteredProviderFound: the resource group's, when we know it.
fn location_hint(sim: &Sim, route: &Route) -> String {
    let (sub, rg) = match route {
        Route::IdentityList { sub, rg: Some(rg) }
        | Route::Identity { sub, rg, .. }
        | Route::FicList { sub, rg, .. }
        | Route::Fic { sub, rg, .. }
        | Route::Vault { sub, rg, .. }
        | Route::VaultAccessPolicy { sub, rg, .. }
        | Route::Resource { sub, rg, .. }
        | Route::BlobContainer { sub, rg, .. } => (sub, rg),
        _ => return String::from("global"),
    };
    sim.read(|s| s.resource_group(sub, rg).map(|g| g.location.clone()))
        .unwrap_or_else(|| String::from("global"))
}

/// Releases the identity's FIC write slot when the request is done.
struct FicSlot<'a> {
    sim: &'a Sim,
    key: String,
}

impl Drop for FicSlot<'_> {
    fn drop(&mut self) {
        lock(&self.sim.fic_inflight).remove(&self.key);
    }
}

fn fic_slot<'a>(sim: &'a Sim, route: &Route) -> Result<Option<FicSlot<'a>>, ArmError> {
    let Route::Fic { sub, rg, identity, .. } = route else {
        return Ok(None);
    };
    let key = format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.managedidentity/userassignedidentities/{identity}").to_ascii_lowercase();
    if !lock(&sim.fic_inflight).insert(key.clone()) {
        // Status [DOC], code and wording [OBS] (docs/azure.md#federated-credentials).
        return Err(ArmError::conflict(
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
            format!(
                "Too many Federated Identity Credentials are written concurrently for the managed identity \
                 '{key}'. Concurrent Federated Identity Credentials writes under the same managed identity \
                 are not supported."
            ),
        ));
    }
    Ok(Some(FicSlot { sim, key }))
}

/// Everything after routing and fault injection.
// The request's parts travel separately because the front end already took them apart to route and count the
// request; bundling them would only move the list into a struct.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    sim: &Sim,
    method: Method,
    path: String,
    route: Route,
    op: Operation,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
    base_url: String,
) -> Response {
    let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let caller = authenticate(sim, &headers, &base_url)?;
        let api_version = check_api_version(&op, &query, &location_hint(sim, &route))?;
        let throttle_req = ThrottleRequest {
            subscription: route::subscription_of(&route),
            principal: caller.oid.clone(),
            kind: op.kind,
            msi: op.msi.map(|m| (m, authz_scope(&path))),
        };
        extra = sim.throttle.admit(&throttle_req, sim.clock.now_ms())?;
        authorize(sim, &caller, &op, &route, &path, &body)?;
        let is_fic_write = matches!(route, Route::Fic { .. }) && op.is_write();
        let _slot = if is_fic_write { fic_slot(sim, &route)? } else { None };
        if op.is_write()
            && let Some(ticket) = sim.holds.check(op.name, method.as_str(), &path, HoldPhase::BeforeCommit)
        {
            ticket.wait().await;
        }
        if is_fic_write {
            let d = sim.behaviour().fic_write_duration_ms;
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
        }
        let req = ArmRequest {
            method: method.clone(),
            path: path.clone(),
            route: route.clone(),
            op,
            query,
            body,
            base_url: base_url.clone(),
            api_version,
            caller,
        };
        let outcome = dispatch(sim, &req).await;
        if op.is_write()
            && let Some(ticket) = sim.holds.check(op.name, method.as_str(), &path, HoldPhase::AfterCommit)
        {
            ticket.wait().await;
        }
        outcome
    }
    .await;
    let mut resp = match result {
        Ok(ArmResponse { status, body: Some(body) }) => (status, axum::Json(body)).into_response(),
        Ok(ArmResponse { status, body: None }) => status.into_response(),
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    for (n, v) in extra {
        h.insert(n, v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(HeaderName::from_static("x-ms-request-id"), v.clone());
        h.insert(HeaderName::from_static("x-ms-correlation-request-id"), v);
    }
    resp
}

async fn dispatch(sim: &Sim, req: &ArmRequest) -> Result<ArmResponse, ArmError> {
    match &req.route {
        Route::ResourceGroup { .. } | Route::Subscription { .. } | Route::Provider { .. } => {
            resources::handle(sim, req).await
        }
        Route::Resource { .. } | Route::BlobContainer { .. } => generic::handle(sim, req),
        Route::IdentityList { .. } | Route::Identity { .. } | Route::FicList { .. } | Route::Fic { .. } => {
            msi::handle(sim, req).await
        }
        Route::Vault { .. } | Route::VaultAccessPolicy { .. } => keyvault::handle(sim, req).await,
        Route::RoleAssignments { .. }
        | Route::RoleAssignment { .. }
        | Route::RoleDefinitions { .. }
        | Route::RoleDefinition { .. } => authorization::handle(sim, req).await,
    }
}

/// The subscription and resource group named in a path, or ARM's 404 for whichever is missing.
pub fn resource_group<'a>(
    s: &'a crate::state::State,
    sub: &str,
    rg: &str,
) -> Result<(&'a crate::state::Subscription, &'a crate::state::ResourceGroup), ArmError> {
    let subscription =
        s.subscriptions.get(&crate::state::key(sub)).ok_or_else(|| subscription_not_found(sub))?;
    let group = subscription
        .resource_groups
        .get(&crate::state::key(rg))
        .ok_or_else(|| ArmError::resource_group_not_found(rg))?;
    Ok((subscription, group))
}

/// 404 SubscriptionNotFound, ARM's wording.
pub fn subscription_not_found(sub: &str) -> ArmError {
    ArmError::not_found("SubscriptionNotFound", format!("The subscription '{sub}' could not be found."))
}

/// Reads `tags` of a request body: absent → None; not a map of strings → InvalidRequestContent.
pub fn tags_of(body: &Value) -> Result<Option<crate::state::Tags>, ArmError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(ArmError::invalid_content(format!("Tag '{k}' has a non-string value {other}"))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(ArmError::invalid_content("'tags' must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(action_matches("*", "Microsoft.Authorization/roleAssignments/write"));
        assert!(action_matches("*/read", "Microsoft.KeyVault/vaults/read"));
        assert!(!action_matches("*/read", "Microsoft.KeyVault/vaults/write"));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/*",
            "microsoft.managedidentity/userAssignedIdentities/write"
        ));
        assert!(action_matches("Microsoft.*/x/*", "Microsoft.A/x/b"));
        assert!(!action_matches(
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete"
        ));
    }

    #[test]
    fn scopes() {
        assert!(scope_within("/subscriptions/S/resourceGroups/r", "/subscriptions/s"));
        assert!(scope_within("/subscriptions/s", ""));
        assert!(!scope_within("/subscriptions/s", "/subscriptions/s/resourceGroups/r"));
        assert!(!scope_within("/subscriptions/s2", "/subscriptions/s"));
    }

    #[test]
    fn api_version_shapes() {
        assert!(looks_like_api_version("2024-11-30"));
        assert!(looks_like_api_version("2020-10-01-preview"));
        assert!(!looks_like_api_version("latest"));
        assert!(!looks_like_api_version("2024-1-30"));
    }
}
