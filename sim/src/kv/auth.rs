//! Who may call a vault: the bearer challenge and the token checks (docs/azure.md#key-vault-data-plane), then
//! authorization from role assignments' data actions on an RBAC vault, or from the vault's access policies
//! otherwise. The 401 and 403 answers follow Key Vault's shapes; where a wording was not seen in a real
//! answer, the comment says so.

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use super::{KvError, KvRoute, VaultHost};
use crate::arm::rbac::{Plane, RequestAttributes, permits};
use crate::shared::Sim;
use crate::state::{AccessPolicy, RoleAssignment, State, Vault};

/// The Key Vault service's application id, which Entra also accepts as the resource of a token request.
pub const KEY_VAULT_APP_ID: &str = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093";

/// The caller a valid token names.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCaller {
    pub oid: String,
    pub appid: String,
    pub iss: String,
}

impl KvCaller {
    /// How Key Vault names a caller in its 403 messages.
    fn describe(&self) -> String {
        format!("appid={};oid={};iss={}", self.appid, self.oid, self.iss)
    }
}

/// What authorization needs of a vault, copied out of the state.
#[derive(Debug, Clone)]
pub struct VaultRef {
    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}`.
    pub scope: String,
    pub name: String,
    pub location: String,
    pub rbac: bool,
    pub tenant_id: String,
    pub access_policies: Vec<AccessPolicy>,
}

impl VaultRef {
    pub fn of(sub: &str, rg: &str, v: &Vault) -> Self {
        Self {
            scope: crate::arm::keyvault::vault_id(sub, rg, &v.name),
            name: v.name.clone(),
            location: v.location.clone(),
            rbac: v.enable_rbac_authorization,
            tenant_id: v.tenant_id.clone(),
            access_policies: v.access_policies.clone(),
        }
    }
}

/// `Bearer authorization="{authority}/{tenant}", resource="https://{suffix}"` (docs/azure.md#key-vault-data-plane).
fn challenge(sim: &Sim, host: &VaultHost) -> Option<HeaderValue> {
    let authority = host.cloud.authority_host.trim_end_matches('/');
    let value = format!(
        "Bearer authorization=\"{authority}/{}\", resource=\"https://{}\"",
        sim.tenant_id(),
        host.cloud.dns_suffix
    );
    HeaderValue::from_str(&value).ok()
}

fn unauthorized(sim: &Sim, host: &VaultHost, message: String) -> KvError {
    KvError {
        challenge: challenge(sim, host),
        ..KvError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }
}

/// The vault's resource (`https://vault.azure.net`) or Key Vault's app id, either with or without a trailing
/// slash: the simulator's token endpoint keeps the slash of `{resource}/.default`, so a token asked for with
/// `cfa8b339-…/.default` says `cfa8b339-…/`.
fn audience_ok(aud: &str, host: &VaultHost) -> bool {
    let resource = format!("https://{}", host.cloud.dns_suffix);
    let aud = aud.trim_end_matches('/');
    aud.eq_ignore_ascii_case(&resource) || aud.eq_ignore_ascii_case(KEY_VAULT_APP_ID)
}

/// Checks the bearer token: one of the simulator's own, unexpired, for the vault's resource, of its tenant.
pub fn authenticate(sim: &Sim, host: &VaultHost, headers: &HeaderMap) -> Result<KvCaller, KvError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        // [OBS] Key Vault's answer to the SDKs' first, unauthenticated request.
        return Err(unauthorized(
            sim,
            host,
            String::from("AKV10000: Request is missing a Bearer or PoP token."),
        ));
    };
    // [UNVERIFIED] the wordings below; the codes (401, `Unauthorized`, the challenge) are Key Vault's.
    let claims = sim.tokens.verify(token).map_err(|_| {
        unauthorized(
            sim,
            host,
            String::from("AKV10013: Invalid token: the signature could not be validated."),
        )
    })?;
    let now = sim.clock.now_secs();
    if claims.exp <= now {
        return Err(unauthorized(
            sim,
            host,
            String::from("[TokenExpired] Error validating token: 'S2S12086'."),
        ));
    }
    if !audience_ok(&claims.aud, host) {
        return Err(unauthorized(
            sim,
            host,
            format!(
                "AKV10022: Invalid audience. Expected https://{}, found: {}.",
                host.cloud.dns_suffix, claims.aud
            ),
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(sim.tenant_id()) {
        return Err(unauthorized(
            sim,
            host,
            format!(
                "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{}/, found {}.",
                sim.tenant_id(),
                claims.iss
            ),
        ));
    }
    Ok(KvCaller { oid: claims.oid, appid: claims.appid, iss: claims.iss })
}

/// The resource a denial names: the object, or the collection for a list (lowercase, as Key Vault prints it).
fn resource(vault: &VaultRef, route: &KvRoute) -> String {
    let kind = route.kind().plural();
    let path = match route.object() {
        Some(name) => format!("{}/{kind}/{name}", vault.scope),
        None => format!("{}/{kind}", vault.scope),
    };
    path.to_ascii_lowercase()
}

pub fn authorize(sim: &Sim, caller: &KvCaller, vault: &VaultRef, route: &KvRoute) -> Result<(), KvError> {
    let (action, permission) = route.permission();
    if vault.rbac {
        let target = resource(vault, route);
        let now = sim.clock.now_ms();
        if sim.read(|s| rbac_allows(s, &caller.oid, &target, action, now)) {
            return Ok(());
        }
        // [OBS] the message of a real denial, line by line (docs/azure.md#key-vault-data-plane-errors).
        let message = format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
             assignments or role definitions were changed recently, please observe propagation time.\r\n\
             Caller: {}\r\nAction: '{action}'\r\nResource: '{target}'\r\nAssignment: (not found)\r\n\
             DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {};location={}\r\n",
            caller.describe(),
            vault.name.to_ascii_lowercase(),
            vault.location
        );
        return Err(KvError {
            inner: Some("ForbiddenByRbac"),
            ..KvError::new(StatusCode::FORBIDDEN, "Forbidden", message)
        });
    }
    let kind = route.kind().plural();
    if policies_allow(&vault.access_policies, &vault.tenant_id, caller, kind, permission) {
        return Ok(());
    }
    // [OBS] wording; the innererror code is unverified (docs/azure.md#key-vault-data-plane-errors).
    Err(KvError {
        inner: Some("AccessDenied"),
        ..KvError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "The user, group or application '{}' does not have {kind} {permission} permission on key \
                 vault '{};location={}'. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125287",
                caller.describe(),
                vault.name,
                vault.location
            ),
        )
    })
}

/// Whether an assignment authorizes now: `role_propagation_ms` after its creation, and until as long after
/// its deletion.
fn effective(s: &State, now_ms: u64) -> impl Iterator<Item = &RoleAssignment> {
    let live = s.role_assignments.values().filter(move |a| now_ms >= a.effective_from_ms);
    let revoked = s
        .revoked_role_assignments
        .iter()
        .filter(move |r| now_ms < r.effective_until_ms && now_ms >= r.assignment.effective_from_ms)
        .map(|r| &r.assignment);
    live.chain(revoked)
}

/// RBAC: some effective assignment of the principal at the resource or a scope above it (vault, resource
/// group, subscription) whose role grants the data action and does not exclude it, and whose condition (if
/// any) is fulfilled (`arm::rbac`).
pub fn rbac_allows(s: &State, oid: &str, resource: &str, action: &str, now_ms: u64) -> bool {
    let attributes = RequestAttributes::default();
    permits(s, effective(s, now_ms), oid, Plane::Data, action, resource, &attributes)
}

/// Access policies: an entry for the caller's object id in the vault's tenant (a compound entry with an
/// application id only for that application) listing the permission or `all`.
fn policies_allow(
    policies: &[AccessPolicy],
    tenant: &str,
    caller: &KvCaller,
    kind: &str,
    perm: &str,
) -> bool {
    policies
        .iter()
        .filter(|p| p.object_id.eq_ignore_ascii_case(&caller.oid) && p.tenant_id.eq_ignore_ascii_case(tenant))
        .filter(|p| p.application_id.as_deref().is_none_or(|a| a.eq_ignore_ascii_case(&caller.appid)))
        .any(|p| {
            let list = match kind {
                "secrets" => &p.permissions.secrets,
                "certificates" => &p.permissions.certificates,
                _ => &p.permissions.keys,
            };
            list.iter().any(|x| x.eq_ignore_ascii_case(perm) || x.eq_ignore_ascii_case("all"))
        })
}
