//! Microsoft.Authorization 2022-04-01: role assignments and role definitions, as
//! docs/azure.md#role-assignments-api, docs/azure.md#role-assignment-rules and docs/azure.md#role-definitions
//! describe them (spec: Azure/azure-rest-api-specs
//! `specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/`).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::route::{scope_resource_group, scope_subscription};
use super::{ArmRequest, ArmResponse, Route, page, scope_within, skip_of, subscription_not_found};
use crate::error::ArmError;
use crate::harness::clock::format_ms;
use crate::shared::Sim;
use crate::state::{RevokedAssignment, RoleAssignment, RoleDefinition, State, key};

const RA_TYPE: &str = "Microsoft.Authorization/roleAssignments";
const RD_TYPE: &str = "Microsoft.Authorization/roleDefinitions";

/// Upper bound per subscription [DOC, conflicting 4,000/5,000: we design for 4,000,
/// docs/azure.md#role-assignment-rules].
const MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION: usize = 4000;

pub fn render_assignment(a: &RoleAssignment) -> Value {
    let mut props = json!({
        "roleDefinitionId": a.role_definition_id,
        "principalId": a.principal_id,
        "principalType": a.principal_type,
        "scope": a.scope,
        "createdOn": format_ms(a.created_on_ms),
        "updatedOn": format_ms(a.updated_on_ms),
        "createdBy": a.created_by,
        "updatedBy": a.updated_by,
    });
    for (k, v) in [
        ("description", &a.description),
        ("condition", &a.condition),
        ("conditionVersion", &a.condition_version),
        ("delegatedManagedIdentityResourceId", &a.delegated_managed_identity_resource_id),
    ] {
        if let Some(v) = v {
            props[k] = Value::String(v.clone());
        }
    }
    json!({
        "properties": props,
        "id": format!("{}/providers/{RA_TYPE}/{}", a.scope, a.name),
        "type": RA_TYPE,
        "name": a.name,
    })
}

/// A role definition's id as seen from `scope`: the subscription form under a subscription, the tenant form
/// otherwise (docs/azure.md#role-assignments-api: real output uses the subscription form).
pub fn role_definition_id(scope: &str, guid: &str, def: Option<&RoleDefinition>) -> String {
    let sub = def.and_then(|d| d.subscription_id.clone()).or_else(|| scope_subscription(scope));
    match sub {
        Some(sub) => format!("/subscriptions/{sub}/providers/{RD_TYPE}/{guid}"),
        None => format!("/providers/{RD_TYPE}/{guid}"),
    }
}

pub fn render_definition(scope: &str, d: &RoleDefinition) -> Value {
    json!({
        "properties": {
            "roleName": d.role_name,
            "type": d.role_type,
            "description": d.description,
            "assignableScopes": d.assignable_scopes,
            "permissions": d.permissions.iter().map(|p| json!({
                "actions": p.actions, "notActions": p.not_actions,
                "dataActions": p.data_actions, "notDataActions": p.not_data_actions,
            })).collect::<Vec<_>>(),
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": "2024-01-01T00:00:00.0000000Z",
            "createdBy": Value::Null,
            "updatedBy": Value::Null,
        },
        "id": role_definition_id(scope, &d.name, Some(d)),
        "type": RD_TYPE,
        "name": d.name,
    })
}

pub async fn handle(sim: &Sim, req: &ArmRequest) -> Result<ArmResponse, ArmError> {
    match (&req.route, &req.method) {
        (Route::RoleAssignment { scope, name }, &Method::PUT) => put_assignment(sim, req, scope, name).await,
        (Route::RoleAssignment { scope, name }, &Method::GET) => sim.read(|s| {
            let a = find_assignment(s, scope, name).ok_or_else(|| assignment_not_found(name))?;
            Ok(ArmResponse::ok(render_assignment(a)))
        }),
        (Route::RoleAssignment { scope, name }, &Method::DELETE) => delete_assignment(sim, scope, name).await,
        (Route::RoleAssignments { scope }, &Method::GET) => list_assignments(sim, req, scope),
        (Route::RoleDefinitions { scope }, &Method::GET) => list_definitions(sim, req, scope),
        (Route::RoleDefinition { scope, id }, &Method::GET) => sim.read(|s| {
            let d = s
                .role_definitions
                .get(&key(id))
                .ok_or_else(|| definition_not_found(id, StatusCode::NOT_FOUND))?;
            Ok(ArmResponse::ok(render_definition(scope, d)))
        }),
        _ => Err(ArmError::method_not_allowed(&req.method)),
    }
}

pub(crate) fn find_assignment<'a>(s: &'a State, scope: &str, name: &str) -> Option<&'a RoleAssignment> {
    s.role_assignments
        .get(&key(name))
        .filter(|a| a.scope.trim_end_matches('/').eq_ignore_ascii_case(scope.trim_end_matches('/')))
}

fn assignment_not_found(name: &str) -> ArmError {
    // [OBS] code; wording varies in the wild (docs/azure.md#arm-errors).
    ArmError::not_found("RoleAssignmentNotFound", format!("The role assignment '{name}' is not found."))
}

fn definition_not_found(id: &str, status: StatusCode) -> ArmError {
    // [OBS] code and wording (docs/azure.md#role-definitions). GET answers 404; a role-assignment PUT naming
    // a missing definition answers 400 (it is a bad request body, not a missing resource).
    ArmError::new(
        status,
        "RoleDefinitionDoesNotExist",
        format!("The specified role definition with ID '{id}' does not exist."),
    )
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn opt_string(props: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, ArmError> {
    match props.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ArmError::invalid_content(format!("'{field}' must be a string"))),
    }
}

async fn put_assignment(
    sim: &Sim,
    req: &ArmRequest,
    scope: &str,
    name: &str,
) -> Result<ArmResponse, ArmError> {
    let body = req.json()?;
    let Some(Value::Object(props)) = body.get("properties") else {
        return Err(ArmError::invalid_content("The 'properties' property is required"));
    };
    let role_definition_id = opt_string(props, "roleDefinitionId")?
        .ok_or_else(|| ArmError::invalid_content("The 'roleDefinitionId' property is required"))?;
    let principal_id = opt_string(props, "principalId")?
        .ok_or_else(|| ArmError::invalid_content("The 'principalId' property is required"))?;
    let principal_type = opt_string(props, "principalType")?;
    let description = opt_string(props, "description")?;
    let condition = opt_string(props, "condition")?;
    let condition_version = opt_string(props, "conditionVersion")?;
    let delegated = opt_string(props, "delegatedManagedIdentityResourceId")?;
    if let Some(text) = &condition {
        // What the simulator cannot evaluate is refused rather than stored and ignored. Wording [DOC
        // conditions-troubleshoot], then what is wrong; the code is [UNVERIFIED].
        crate::arm::conditions::parse_versioned(text, condition_version.as_deref()).map_err(|e| {
            ArmError::bad_request(
                "InvalidCondition",
                format!("The given role assignment condition is invalid. {e}."),
            )
        })?;
    }
    // [UNVERIFIED] a condition without a version is taken as 2.0, the only one, and answered as such.
    let condition_version = condition
        .as_ref()
        .map(|_| condition_version.unwrap_or_else(|| crate::arm::conditions::CONDITION_VERSION.into()));
    if !is_guid(name) {
        // [UNVERIFIED] code; names must be GUIDs [SPEC: "can be any valid GUID"].
        return Err(ArmError::bad_request(
            "InvalidRoleAssignmentId",
            format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
        ));
    }
    if !is_guid(&principal_id) {
        // [UNVERIFIED] code and wording.
        return Err(ArmError::bad_request(
            "InvalidPrincipalId",
            format!("The principal ID '{principal_id}' is not valid. Principal ID must be a GUID."),
        ));
    }
    let role_guid = role_definition_id.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let now = sim.clock.now_ms();
    let delay = sim.behaviour().principal_replication_delay_ms;
    let propagation = sim.behaviour().role_propagation_ms;
    let caller = req.caller.oid.clone();
    let tenant = sim.tenant_id().to_owned();
    let scope = scope.to_owned();
    let (resp, generation) = sim.mutate(|s| {
        if let Some(sub) = scope_subscription(&scope) {
            let subscription = s.subscriptions.get(&key(&sub)).ok_or_else(|| subscription_not_found(&sub))?;
            if let Some(rg) = scope_resource_group(&scope)
                && !subscription.resource_groups.contains_key(&key(&rg))
            {
                return Err(ArmError::resource_group_not_found(&rg));
            }
        }
        super::generic::check_scope_exists(s, &scope)?;
        if !s.role_definitions.contains_key(&role_guid) {
            return Err(definition_not_found(&role_guid, StatusCode::BAD_REQUEST));
        }
        if let Some(existing) = s.role_assignments.get(&key(name)) {
            let same = existing.scope.trim_end_matches('/').eq_ignore_ascii_case(scope.trim_end_matches('/'))
                && existing.role_definition_guid == role_guid
                && existing.principal_id.eq_ignore_ascii_case(&principal_id);
            if !same {
                // [DOC] docs/azure.md#role-assignment-rules.
                return Err(ArmError::bad_request(
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
        }
        let duplicate = s.role_assignments.values().find(|a| {
            !a.name.eq_ignore_ascii_case(name)
                && a.scope.trim_end_matches('/').eq_ignore_ascii_case(scope.trim_end_matches('/'))
                && a.role_definition_guid == role_guid
                && a.principal_id.eq_ignore_ascii_case(&principal_id)
        });
        if let Some(dup) = duplicate {
            // [OBS] code, status and wording, with the existing id's 32-hex suffix
            // (docs/azure.md#role-assignment-rules).
            return Err(ArmError::conflict(
                "RoleAssignmentExists",
                format!(
                    "The role assignment already exists. The ID of the existing role assignment is {}.",
                    dup.name.replace('-', "").to_ascii_lowercase()
                ),
            ));
        }
        let directory_type = s
            .directory
            .get(&key(&principal_id))
            .filter(|p| now.saturating_sub(p.created_at_ms) >= delay)
            .map(|p| p.principal_type.clone());
        // With principalType set ARM skips the directory lookup [OBS]; without it a principal the directory
        // does not know (yet) is PrincipalNotFound (400) [DOC + OBS].
        let resolved_type = match (&principal_type, directory_type) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => t,
            (None, None) => {
                return Err(ArmError::bad_request(
                    "PrincipalNotFound",
                    format!(
                        "Principal {} does not exist in the directory {tenant}. Check that you have the \
                         correct principal ID. If you are creating this principal and then immediately \
                         assigning a role, this error might be related to a replication delay. In this \
                         case, set the role assignment principalType property to a value, such as \
                         ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                        principal_id.replace('-', "")
                    ),
                ));
            }
        };
        if let Some(existing) = s.role_assignments.get_mut(&key(name)) {
            // Same (scope, role, principal) under the same name: an idempotent re-PUT, which succeeds today
            // (docs/azure.md#role-assignment-rules). [UNVERIFIED] 200 vs 201: we answer 200 (update).
            existing.description = description;
            existing.condition = condition;
            existing.condition_version = condition_version;
            existing.updated_on_ms = now;
            existing.updated_by = caller.clone();
            existing.parsed_condition = crate::state::ParsedCondition::of(existing.condition.as_deref());
            return Ok(ArmResponse::ok(render_assignment(existing)));
        }
        if let Some(sub) = scope_subscription(&scope) {
            let count = s
                .role_assignments
                .values()
                .filter(|a| scope_subscription(&a.scope).is_some_and(|x| x.eq_ignore_ascii_case(&sub)))
                .count();
            if count >= MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION {
                return Err(ArmError::bad_request(
                    "RoleAssignmentLimitExceeded",
                    "No more role assignments can be created (code: RoleAssignmentLimitExceeded).",
                ));
            }
        }
        let def = s.role_definitions.get(&role_guid);
        let assignment = RoleAssignment {
            name: name.to_owned(),
            scope: scope.clone(),
            // Echo the subscription form (docs/azure.md#role-assignments-api), whatever form the caller sent.
            role_definition_id: role_definition_id_for_assignment(&scope, &role_guid, def),
            role_definition_guid: role_guid.clone(),
            principal_id: principal_id.clone(),
            principal_type: resolved_type,
            description,
            condition,
            condition_version,
            delegated_managed_identity_resource_id: delegated,
            created_on_ms: now,
            updated_on_ms: now,
            created_by: caller.clone(),
            updated_by: caller.clone(),
            effective_from_ms: now + propagation,
            parsed_condition: Default::default(),
        };
        let body = render_assignment(&assignment);
        s.insert_role_assignment(key(name), assignment);
        Ok(ArmResponse::created(body))
    })?;
    sim.durable(generation).await?;
    Ok(resp)
}

fn role_definition_id_for_assignment(scope: &str, guid: &str, def: Option<&RoleDefinition>) -> String {
    let name = def.map(|d| d.name.clone()).unwrap_or_else(|| guid.to_owned());
    role_definition_id(scope, &name, def)
}

async fn delete_assignment(sim: &Sim, scope: &str, name: &str) -> Result<ArmResponse, ArmError> {
    if sim.read(|s| find_assignment(s, scope, name).is_none()) {
        return Ok(ArmResponse::status(StatusCode::NO_CONTENT));
    }
    let now = sim.clock.now_ms();
    let propagation = sim.behaviour().role_propagation_ms;
    sim.write(|s| {
        if find_assignment(s, scope, name).is_none() {
            return Ok(ArmResponse::status(StatusCode::NO_CONTENT));
        }
        s.revoked_role_assignments.retain(|r| r.effective_until_ms > now);
        match s.remove_role_assignment(&key(name)) {
            Some(a) => {
                let body = render_assignment(&a);
                // Azure's caches keep a deleted assignment working for a while (docs/azure.md#propagation).
                if propagation > 0 {
                    s.revoked_role_assignments
                        .push(RevokedAssignment { assignment: a, effective_until_ms: now + propagation });
                }
                Ok(ArmResponse::ok(body))
            }
            None => Ok(ArmResponse::status(StatusCode::NO_CONTENT)),
        }
    })
    .await
}

/// The `$filter` forms ARM supports on role assignments (docs/azure.md#role-assignments-api).
#[derive(Debug, Default, PartialEq)]
struct AssignmentFilter {
    at_scope: bool,
    principal: Option<String>,
}

fn quoted(s: &str) -> Option<String> {
    let s = s.trim();
    s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')).map(str::to_owned)
}

fn parse_assignment_filter(f: Option<&str>) -> Result<AssignmentFilter, ArmError> {
    let mut out = AssignmentFilter::default();
    let Some(f) = f.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(out);
    };
    let unsupported = || {
        ArmError::bad_request(
            "UnsupportedQuery",
            format!(
                "The filter '{f}' is not supported. Supported filters are atScope(), principalId eq \
                 '{{id}}', assignedTo('{{id}}') and atScope() and assignedTo('{{id}}')."
            ),
        )
    };
    let lower = f.to_ascii_lowercase();
    let mut start = 0;
    let mut terms = Vec::new();
    while let Some(pos) = lower[start..].find(" and ") {
        terms.push(&f[start..start + pos]);
        start += pos + 5;
    }
    terms.push(&f[start..]);
    for term in terms {
        let t = term.trim();
        let tl = t.to_ascii_lowercase();
        if tl == "atscope()" {
            out.at_scope = true;
        } else if let Some(rest) = tl.strip_prefix("principalid eq ") {
            out.principal = Some(quoted(&t[t.len() - rest.len()..]).ok_or_else(unsupported)?);
        } else if tl.starts_with("assignedto(") && tl.ends_with(')') {
            out.principal = Some(quoted(&t["assignedto(".len()..t.len() - 1]).ok_or_else(unsupported)?);
        } else {
            return Err(unsupported());
        }
    }
    Ok(out)
}

fn list_assignments(sim: &Sim, req: &ArmRequest, scope: &str) -> Result<ArmResponse, ArmError> {
    let filter = parse_assignment_filter(req.query.get("$filter"))?;
    let items = sim.read(|s| -> Result<Vec<Value>, ArmError> {
        if let Some(sub) = scope_subscription(scope)
            && !s.subscriptions.contains_key(&key(&sub))
        {
            return Err(subscription_not_found(&sub));
        }
        Ok(s.role_assignments
            .values()
            .filter(|a| {
                let above_or_at = scope_within(scope, &a.scope);
                let below = scope_within(&a.scope, scope);
                // atScope(): at or above the scope [SPEC wording]; otherwise below counts too.
                let scope_ok = if filter.at_scope { above_or_at } else { above_or_at || below };
                scope_ok && filter.principal.as_deref().is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p))
            })
            .map(render_assignment)
            .collect())
    })?;
    let skip = skip_of(&req.query, &["$skipToken"]);
    let size = sim.behaviour().page_size;
    let filter_param = req.query.get("$filter").map(str::to_owned);
    Ok(ArmResponse::ok(page(items, skip, size, |next| {
        let mut p = Vec::new();
        if let Some(f) = &filter_param {
            p.push(("$filter", f.clone()));
        }
        p.push(("$skipToken", next.to_string()));
        req.next_link(&p)
    })))
}

fn list_definitions(sim: &Sim, req: &ArmRequest, scope: &str) -> Result<ArmResponse, ArmError> {
    let filter = req.query.get("$filter").map(str::trim).filter(|f| !f.is_empty());
    let (role_name, role_type) = match filter {
        None => (None, None),
        Some(f) => {
            let lower = f.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("rolename eq ") {
                (Some(quoted(&f[f.len() - rest.len()..]).ok_or_else(|| bad_definition_filter(f))?), None)
            } else if let Some(rest) = lower.strip_prefix("type eq ") {
                (None, Some(quoted(&f[f.len() - rest.len()..]).ok_or_else(|| bad_definition_filter(f))?))
            } else if lower == "atscopeandbelow()" {
                (None, None)
            } else {
                return Err(bad_definition_filter(f));
            }
        }
    };
    let scope_sub = scope_subscription(scope);
    let items: Vec<Value> = sim.read(|s| {
        s.role_definitions
            .values()
            .filter(|d| match (&d.subscription_id, &scope_sub) {
                (None, _) => true,
                (Some(ds), Some(ss)) => ds.eq_ignore_ascii_case(ss),
                (Some(_), None) => false,
            })
            // Display names compare case-insensitively, like ARM's OData filter.
            .filter(|d| {
                role_name
                    .as_deref()
                    .is_none_or(|n| d.role_name.eq_ignore_ascii_case(n))
            })
            .filter(|d| {
                role_type
                    .as_deref()
                    .is_none_or(|t| d.role_type.eq_ignore_ascii_case(t))
            })
            .map(|d| render_definition(scope, d))
            .collect()
    });
    let skip = skip_of(&req.query, &["$skipToken"]);
    let size = sim.behaviour().page_size;
    Ok(ArmResponse::ok(page(items, skip, size, |next| {
        let mut p = Vec::new();
        if let Some(f) = filter {
            p.push(("$filter", f.to_owned()));
        }
        p.push(("$skipToken", next.to_string()));
        req.next_link(&p)
    })))
}

fn bad_definition_filter(f: &str) -> ArmError {
    ArmError::bad_request(
        "UnsupportedQuery",
        format!(
            "The filter '{f}' is not supported. Supported filters are roleName eq '{{name}}', type eq \
             'BuiltInRole'|'CustomRole' and atScopeAndBelow()."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(parse_assignment_filter(None).ok(), Some(AssignmentFilter::default()));
        assert_eq!(
            parse_assignment_filter(Some("atScope()")).ok(),
            Some(AssignmentFilter { at_scope: true, principal: None })
        );
        assert_eq!(
            parse_assignment_filter(Some("principalId eq 'AbC'")).ok(),
            Some(AssignmentFilter { at_scope: false, principal: Some("AbC".into()) })
        );
        assert_eq!(
            parse_assignment_filter(Some("atScope() and assignedTo('x')")).ok(),
            Some(AssignmentFilter { at_scope: true, principal: Some("x".into()) })
        );
        assert_eq!(
            parse_assignment_filter(Some("roleName eq 'x'")).map_err(|e| e.code),
            Err("UnsupportedQuery".into())
        );
        assert!(parse_assignment_filter(Some("principalId eq x")).is_err());
    }
}
