//! Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials
//! (docs/azure.md#managed-identity-api; spec: Azure/azure-rest-api-specs
//! `specification/msi/resource-manager/Microsoft.ManagedIdentity/stable/2024-11-30/ManagedIdentity.json`;
//! 2023-01-31 differs only in not returning `isolationScope`).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ArmRequest, ArmResponse, Route, page, skip_of, subscription_not_found, tags_of};
use crate::error::ArmError;
use crate::shared::Sim;
use crate::state::{DirectoryObject, Fic, Identity, State, key};

const UAI_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
const FIC_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";

/// ARM's id form for identities: lowercase `resourcegroups`, names in their own case
/// (docs/azure.md#managed-identity-api, from the spec's examples).
pub fn identity_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/{UAI_TYPE}/{name}")
}

pub fn render_identity(sub: &str, rg: &str, i: &Identity, api_version: &str) -> Value {
    let mut props =
        json!({ "tenantId": i.tenant_id, "principalId": i.principal_id, "clientId": i.client_id });
    // `isolationScope` is new in 2024-11-30 (docs/azure.md#api-versions); older versions do not return it.
    if api_version >= "2024-11-30" {
        props["isolationScope"] =
            Value::String(i.isolation_scope.clone().unwrap_or_else(|| String::from("None")));
    }
    json!({
        "id": identity_id(sub, rg, &i.name),
        "name": i.name,
        "type": UAI_TYPE,
        "location": i.location,
        "tags": i.tags,
        "properties": props,
    })
}

pub fn render_fic(sub: &str, rg: &str, identity: &str, f: &Fic) -> Value {
    json!({
        "id": format!("{}/federatedIdentityCredentials/{}", identity_id(sub, rg, identity), f.name),
        "name": f.name,
        "type": FIC_TYPE,
        "properties": { "issuer": f.issuer, "subject": f.subject, "audiences": f.audiences },
    })
}

/// Resolves subscription and resource group or answers as ARM does when either is missing.
fn check_rg(s: &State, sub: &str, rg: &str) -> Result<(String, String), ArmError> {
    let (subscription, group) = super::resource_group(s, sub, rg)?;
    Ok((subscription.id.clone(), group.name.clone()))
}

fn identity_not_found(name: &str, rg: &str) -> ArmError {
    ArmError::resource_not_found(UAI_TYPE, name, rg)
}

/// Identity names: 3–128 letters, digits, `-`, `_`, starting with a letter or digit [DOC
/// resource-name-rules].
fn valid_identity_name(name: &str) -> bool {
    valid_name(name, 128)
}

/// FIC names: `^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$` (docs/azure.md#managed-identity-api).
fn valid_fic_name(name: &str) -> bool {
    valid_name(name, 120)
}

/// 3..=`max` letters, digits, `-`, `_`, starting with a letter or digit.
fn valid_name(name: &str, max: usize) -> bool {
    (3..=max).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub async fn handle(sim: &Sim, req: &ArmRequest) -> Result<ArmResponse, ArmError> {
    match (&req.route, &req.method) {
        (Route::Identity { sub, rg, name }, &Method::PUT) => put_identity(sim, req, sub, rg, name).await,
        (Route::Identity { sub, rg, name }, &Method::PATCH) => patch_identity(sim, req, sub, rg, name).await,
        (Route::Identity { sub, rg, name }, &Method::GET) => sim.read(|s| {
            let (sub, rg_name) = check_rg(s, sub, rg)?;
            let group = s.resource_group(&sub, rg).ok_or_else(|| ArmError::resource_group_not_found(rg))?;
            let i = group.identities.get(&key(name)).ok_or_else(|| identity_not_found(name, rg))?;
            Ok(ArmResponse::ok(render_identity(&sub, &rg_name, i, &req.api_version)))
        }),
        (Route::Identity { sub, rg, name }, &Method::DELETE) => delete_identity(sim, sub, rg, name).await,
        (Route::IdentityList { sub, rg }, &Method::GET) => list_identities(sim, req, sub, rg.as_deref()),
        (Route::Fic { sub, rg, identity, name }, &Method::PUT) => {
            put_fic(sim, req, sub, rg, identity, name).await
        }
        (Route::Fic { sub, rg, identity, name }, &Method::GET) => sim.read(|s| {
            let (sub, rg_name) = check_rg(s, sub, rg)?;
            let i = s
                .resource_group(&sub, rg)
                .and_then(|g| g.identities.get(&key(identity)))
                .ok_or_else(parent_not_found)?;
            let f = i.federated_identity_credentials.get(&key(name)).ok_or_else(|| {
                ArmError::resource_not_found(
                    &format!("{UAI_TYPE}/{}/federatedIdentityCredentials", i.name),
                    name,
                    rg,
                )
            })?;
            Ok(ArmResponse::ok(render_fic(&sub, &rg_name, &i.name, f)))
        }),
        (Route::Fic { sub, rg, identity, name }, &Method::DELETE) => {
            delete_fic(sim, sub, rg, identity, name).await
        }
        (Route::FicList { sub, rg, identity }, &Method::GET) => list_fics(sim, req, sub, rg, identity),
        _ => Err(ArmError::method_not_allowed(&req.method)),
    }
}

fn parent_not_found() -> ArmError {
    // Status and message [DOC] (docs/azure.md#federated-credentials); the code is ARM's usual one for a
    // missing parent [UNVERIFIED].
    ArmError::not_found("ParentResourceNotFound", "The parent user-assigned identity doesn't exist.")
}

async fn put_identity(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    sim.read(|s| check_rg(s, sub, rg))?;
    let body = req.json()?;
    let location = match body.get("location") {
        Some(Value::String(l)) if !l.trim().is_empty() => l.clone(),
        // ARM's own code for a tracked resource without location.
        None | Some(Value::Null) => {
            return Err(ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        Some(_) => return Err(ArmError::invalid_content("'location' must be a string")),
    };
    let tags = tags_of(&body)?;
    let isolation_scope = match body.pointer("/properties/isolationScope") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) if v == "None" || v == "Regional" => Some(v.clone()),
        Some(other) => {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                format!(
                    "The value '{other}' is not valid for isolationScope; expected 'None' or 'Regional'."
                ),
            ));
        }
    };
    if !valid_identity_name(name) {
        // [UNVERIFIED] code; ARM's generic code for a bad resource name, with the rule spelled out.
        return Err(ArmError::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name '{name}' is invalid. The name can contain only letters, numbers, underscores \
                 and hyphens, must start with a letter or number, and must be 3 to 128 characters long."
            ),
        ));
    }
    let now = sim.clock.now_ms();
    let tenant = sim.tenant_id().to_owned();
    let api_version = req.api_version.clone();
    sim.write(|s| {
        let (sub_id, rg_name) = check_rg(s, sub, rg)?;
        let group =
            s.resource_group_mut(&sub_id, rg).ok_or_else(|| ArmError::resource_group_not_found(rg))?;
        if let Some(existing) = group.identities.get_mut(&key(name)) {
            if !existing.location.eq_ignore_ascii_case(&location) {
                // [UNVERIFIED] ARM's answer to a PUT that moves a resource: 409 InvalidResourceLocation.
                return Err(ArmError::conflict(
                    "InvalidResourceLocation",
                    format!(
                        "The resource '{}' already exists in location '{}' in resource group '{rg_name}'. A \
                         resource with the same name cannot be created in location '{location}'. Please \
                         select a new resource name.",
                        existing.name, existing.location
                    ),
                ));
            }
            // PUT replaces what the caller controls.
            existing.tags = tags.unwrap_or_default();
            if isolation_scope.is_some() {
                existing.isolation_scope = isolation_scope;
            }
            return Ok(ArmResponse::ok(render_identity(&sub_id, &rg_name, existing, &api_version)));
        }
        let identity = Identity {
            name: name.to_owned(),
            location,
            tags: tags.unwrap_or_default(),
            client_id: uuid::Uuid::new_v4().to_string(),
            principal_id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant,
            isolation_scope,
            federated_identity_credentials: Default::default(),
            created_at_ms: now,
        };
        let body = render_identity(&sub_id, &rg_name, &identity, &api_version);
        let principal = DirectoryObject {
            object_id: identity.principal_id.clone(),
            principal_type: String::from("ServicePrincipal"),
            display_name: identity.name.clone(),
            created_at_ms: now,
        };
        group.identities.insert(key(name), identity);
        s.directory.insert(key(&principal.object_id), principal);
        Ok(ArmResponse::created(body))
    })
    .await
}

async fn patch_identity(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    sim.read(|s| check_rg(s, sub, rg))?;
    let body = req.json()?;
    let tags = tags_of(&body)?;
    let api_version = req.api_version.clone();
    sim.write(|s| {
        let (sub_id, rg_name) = check_rg(s, sub, rg)?;
        let i = s
            .resource_group_mut(&sub_id, rg)
            .and_then(|g| g.identities.get_mut(&key(name)))
            .ok_or_else(|| identity_not_found(name, rg))?;
        if let Some(tags) = tags {
            i.tags = tags;
        }
        Ok(ArmResponse::ok(render_identity(&sub_id, &rg_name, i, &api_version)))
    })
    .await
}

async fn delete_identity(sim: &Sim, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    let existed = sim.read(|s| -> Result<bool, ArmError> {
        let (sub_id, _) = check_rg(s, sub, rg)?;
        Ok(s.resource_group(&sub_id, rg).is_some_and(|g| g.identities.contains_key(&key(name))))
    })?;
    if !existed {
        return Ok(ArmResponse::status(StatusCode::NO_CONTENT));
    }
    sim.write(|s| {
        let (sub_id, _) = check_rg(s, sub, rg)?;
        let removed = s.resource_group_mut(&sub_id, rg).and_then(|g| g.identities.remove(&key(name)));
        match removed {
            // Its FICs go with it; its role assignments stay behind, as in Azure [DOC].
            Some(i) => {
                s.directory.remove(&key(&i.principal_id));
                Ok(ArmResponse::status(StatusCode::OK))
            }
            None => Ok(ArmResponse::status(StatusCode::NO_CONTENT)),
        }
    })
    .await
}

fn list_identities(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: Option<&str>,
) -> Result<ArmResponse, ArmError> {
    let items = sim.read(|s| -> Result<Vec<Value>, ArmError> {
        let subscription = s.subscriptions.get(&key(sub)).ok_or_else(|| subscription_not_found(sub))?;
        let groups: Vec<_> = match rg {
            Some(rg) => vec![
                subscription
                    .resource_groups
                    .get(&key(rg))
                    .ok_or_else(|| ArmError::resource_group_not_found(rg))?,
            ],
            None => subscription.resource_groups.values().collect(),
        };
        Ok(groups
            .into_iter()
            .flat_map(|g| {
                g.identities
                    .values()
                    .map(move |i| render_identity(&subscription.id, &g.name, i, &req.api_version))
            })
            .collect())
    })?;
    let skip = skip_of(&req.query, &["$skiptoken"]);
    let size = sim.behaviour().page_size;
    Ok(ArmResponse::ok(page(items, skip, size, |next| req.next_link(&[("$skiptoken", next.to_string())]))))
}

fn list_fics(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: &str,
    identity: &str,
) -> Result<ArmResponse, ArmError> {
    let size = match req.query.get("$top") {
        None => sim.behaviour().page_size,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!(
                        "The value '{t}' of query parameter '$top' is invalid; it must be an integer of at \
                         least 1."
                    ),
                ));
            }
        },
    };
    let items = sim.read(|s| -> Result<Vec<Value>, ArmError> {
        let (sub_id, rg_name) = check_rg(s, sub, rg)?;
        let i = s
            .resource_group(&sub_id, rg)
            .and_then(|g| g.identities.get(&key(identity)))
            .ok_or_else(parent_not_found)?;
        Ok(i.federated_identity_credentials
            .values()
            .map(|f| render_fic(&sub_id, &rg_name, &i.name, f))
            .collect())
    })?;
    let skip = skip_of(&req.query, &["$skiptoken"]);
    let mut params = Vec::new();
    if req.query.get("$top").is_some() {
        params.push(("$top", size.to_string()));
    }
    // The spec's example link spells it `$skipToken` (docs/azure.md#managed-identity-api); we do the same and
    // accept both.
    Ok(ArmResponse::ok(page(items, skip, size, |next| {
        let mut p = params.clone();
        p.push(("$skipToken", next.to_string()));
        req.next_link(&p)
    })))
}

fn fic_bad_request(message: impl Into<String>) -> ArmError {
    // The FIC errors table [DOC] gives status and message but no code [UNVERIFIED]: `BadRequest` is what the
    // RP's other validation errors carry.
    ArmError::bad_request("BadRequest", message)
}

struct FicInput {
    issuer: String,
    subject: String,
    audiences: Vec<String>,
}

fn parse_fic(body: &Value) -> Result<FicInput, ArmError> {
    let props = match body.get("properties") {
        Some(Value::Object(m)) if !m.is_empty() => m,
        _ => {
            return Err(fic_bad_request("Federated Identity Credential from HTTP body has empty properties"));
        }
    };
    let string = |field: &str| -> Result<String, ArmError> {
        match props.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(fic_bad_request(format!(
                "The '{field}' property of the Federated Identity Credential is required."
            ))),
        }
    };
    let issuer = string("issuer")?;
    let subject = string("subject")?;
    let audiences: Vec<String> = match props.get("audiences") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ArmError::invalid_content("'audiences' must be an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if audiences.len() != 1 {
        return Err(fic_bad_request("Federated identity credentials must have exactly one audience."));
    }
    // Field limits [DOC include file]: issuer, subject and the audience at most 600 chars.
    for (what, v) in [("issuer", &issuer), ("subject", &subject), ("audience", &audiences[0])] {
        if v.len() > 600 {
            return Err(fic_bad_request(format!(
                "The {what} of a Federated Identity Credential must be at most 600 characters long."
            )));
        }
    }
    match url::Url::parse(&issuer) {
        Ok(u) if u.scheme() == "https" => {}
        // [UNVERIFIED] wording; the issuer is specified as an https URL.
        _ => {
            return Err(fic_bad_request(format!(
                "The issuer '{issuer}' of the Federated Identity Credential is not a valid https URL."
            )));
        }
    }
    Ok(FicInput { issuer, subject, audiences })
}

async fn put_fic(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: &str,
    identity: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    sim.read(|s| -> Result<(), ArmError> {
        let (sub_id, _) = check_rg(s, sub, rg)?;
        s.resource_group(&sub_id, rg)
            .and_then(|g| g.identities.get(&key(identity)))
            .ok_or_else(parent_not_found)?;
        Ok(())
    })?;
    if !valid_fic_name(name) {
        return Err(fic_bad_request(format!("Federated Identity Credential name '{name}' is invalid.")));
    }
    let input = parse_fic(&req.json()?)?;
    let max = sim.behaviour().max_fics_per_identity;
    let now = sim.clock.now_ms();
    let propagation = sim.behaviour().fic_propagation_ms;
    sim.write(|s| {
        let (sub_id, rg_name) = check_rg(s, sub, rg)?;
        let i = s
            .resource_group_mut(&sub_id, rg)
            .and_then(|g| g.identities.get_mut(&key(identity)))
            .ok_or_else(parent_not_found)?;
        let duplicate = i.federated_identity_credentials.values().any(|f| {
            !f.name.eq_ignore_ascii_case(name) && f.issuer == input.issuer && f.subject == input.subject
        });
        if duplicate {
            // Status and message [DOC] (docs/azure.md#federated-credentials); issuer and subject compare
            // exactly.
            return Err(fic_bad_request(
                "Issuer and subject combination already exists for this Managed Identity.",
            ));
        }
        let exists = i.federated_identity_credentials.contains_key(&key(name));
        if !exists && i.federated_identity_credentials.len() >= max {
            // The limit is documented [DOC]; status, code and wording are our choice [UNVERIFIED]
            // (docs/azure.md#federated-credentials); 400 BadRequest is the likeliest.
            return Err(fic_bad_request(format!(
                "The managed identity '{}' already has the maximum number of {max} Federated Identity \
                 Credentials.",
                identity_id(&sub_id, &rg_name, &i.name)
            )));
        }
        // A new FIC, or a changed issuer, subject or audiences, reaches the token service only after the
        // propagation window; a PUT that changes none of them changes nothing there.
        let unchanged = i.federated_identity_credentials.get(&key(name)).filter(|f| {
            f.issuer == input.issuer && f.subject == input.subject && f.audiences == input.audiences
        });
        let effective_from_ms = unchanged.map_or(now + propagation, |f| f.effective_from_ms);
        let fic = Fic {
            name: name.to_owned(),
            issuer: input.issuer,
            subject: input.subject,
            audiences: input.audiences,
            effective_from_ms,
        };
        let body = render_fic(&sub_id, &rg_name, &i.name, &fic);
        // An update keeps the name's original case.
        let stored_name = i.federated_identity_credentials.get(&key(name)).map(|f| f.name.clone());
        let fic = Fic { name: stored_name.unwrap_or(fic.name), ..fic };
        i.federated_identity_credentials.insert(key(name), fic);
        Ok(if exists { ArmResponse::ok(body) } else { ArmResponse::created(body) })
    })
    .await
}

async fn delete_fic(
    sim: &Sim,
    sub: &str,
    rg: &str,
    identity: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let existed = sim.read(|s| -> Result<bool, ArmError> {
        let (sub_id, _) = check_rg(s, sub, rg)?;
        Ok(s.resource_group(&sub_id, rg)
            .and_then(|g| g.identities.get(&key(identity)))
            .is_some_and(|i| i.federated_identity_credentials.contains_key(&key(name))))
    })?;
    if !existed {
        // Also for a missing parent identity: "does not exist" is what a cleanup wants to hear [UNVERIFIED:
        // ARM may answer 404 for a missing parent].
        return Ok(ArmResponse::status(StatusCode::NO_CONTENT));
    }
    sim.write(|s| {
        let (sub_id, _) = check_rg(s, sub, rg)?;
        let removed = s
            .resource_group_mut(&sub_id, rg)
            .and_then(|g| g.identities.get_mut(&key(identity)))
            .and_then(|i| i.federated_identity_credentials.remove(&key(name)));
        Ok(ArmResponse::status(if removed.is_some() { StatusCode::OK } else { StatusCode::NO_CONTENT }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_identity_name("abc"));
        assert!(valid_identity_name("a-b_c9"));
        assert!(!valid_identity_name("ab"));
        assert!(!valid_identity_name("-abc"));
        assert!(!valid_identity_name("a.bc"));
        assert!(!valid_identity_name(&"a".repeat(129)));
        assert!(valid_fic_name("fic-1"));
        assert!(!valid_fic_name("_fic"));
        assert!(!valid_fic_name(&"a".repeat(121)));
    }
}
