//! Microsoft.Resources: resource groups (PUT and GET), enough for tests and the demo to make the groups
//! identities live in; Subscriptions_Get; Providers_Get (what a client reads to pick an api-version for a
//! resource type before it GETs a resource of that type).

use axum::http::Method;
use serde_json::{Value, json};

use super::catalog::{self, ProviderListing};
use super::{ArmRequest, ArmResponse, Route, subscription_not_found, tags_of};
use crate::error::ArmError;
use crate::shared::Sim;
use crate::state::{ResourceGroup, Subscription, key};

/// The regions a regional type lists in Providers_Get (display names, as ARM lists them). A fixed handful:
/// the simulator does not check locations.
const LOCATIONS: &[&str] = &[
    "East US",
    "East US 2",
    "West US 2",
    "Central US",
    "North Europe",
    "West Europe",
    "UK South",
    "Sweden Central",
];

/// Subscriptions_Get's shape [SPEC: Microsoft.Resources/stable/2022-12-01/examples/GetSubscription.json]; the
/// policies are a pay-as-you-go subscription's.
pub fn render_subscription(s: &Subscription, tenant: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{}", s.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": s.id,
        "tenantId": tenant,
        "displayName": s.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    })
}

/// Providers_Get's shape [SPEC: Microsoft.Resources/stable/2021-04-01/examples/GetProvider.json]: every
/// provider the simulator serves is registered.
pub fn render_provider(sub: Option<&str>, p: &ProviderListing) -> Value {
    let types: Vec<Value> = p
        .resource_types
        .iter()
        .map(|t| {
            let locations: &[&str] = if t.regional { LOCATIONS } else { &[] };
            json!({
                "resourceType": t.resource_type,
                "locations": locations,
                "apiVersions": t.api_versions,
                "capabilities": t.capabilities,
            })
        })
        .collect();
    let id = match sub {
        Some(sub) => format!("/subscriptions/{sub}/providers/{}", p.namespace),
        None => format!("/providers/{}", p.namespace),
    };
    let mut body = json!({
        "id": id,
        "namespace": p.namespace,
        "resourceTypes": types,
    });
    // The tenant-level answer carries no registration (registration is per subscription).
    if sub.is_some() {
        body["registrationState"] = json!("Registered");
        body["registrationPolicy"] = json!("RegistrationRequired");
    }
    body
}

fn provider_get(sim: &Sim, sub: Option<&str>, namespace: &str) -> Result<ArmResponse, ArmError> {
    let sub_id = match sub {
        Some(sub) => Some(sim.read(|s| {
            s.subscriptions.get(&key(sub)).map(|x| x.id.clone()).ok_or_else(|| subscription_not_found(sub))
        })?),
        None => None,
    };
    // ARM's code and wording for a namespace it does not know [OBS; the same answer as for a resource path
    // under an unknown namespace].
    let p = catalog::provider(namespace).ok_or_else(|| {
        ArmError::not_found(
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        )
    })?;
    Ok(ArmResponse::ok(render_provider(sub_id.as_deref(), &p)))
}

pub fn render(sub: &str, g: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{}", g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": g.tags,
        "properties": { "provisioningState": "Succeeded" },
    })
}

/// 1–90 characters of letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.` [DOC resource-name-rules].
fn valid_name(name: &str) -> bool {
    (1..=90).contains(&name.chars().count())
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_alphanumeric() || "_-.()".contains(c))
}

pub async fn handle(sim: &Sim, req: &ArmRequest) -> Result<ArmResponse, ArmError> {
    match (&req.route, &req.method) {
        (Route::Subscription { sub }, &Method::GET) => {
            return sim.read(|s| {
                let subscription =
                    s.subscriptions.get(&key(sub)).ok_or_else(|| subscription_not_found(sub))?;
                Ok(ArmResponse::ok(render_subscription(subscription, &s.tenant_id)))
            });
        }
        (Route::Provider { sub, namespace }, &Method::GET) => {
            return provider_get(sim, sub.as_deref(), namespace);
        }
        _ => {}
    }
    let Route::ResourceGroup { sub, rg } = &req.route else {
        return Err(ArmError::method_not_allowed(&req.method));
    };
    match req.method {
        Method::GET => sim.read(|s| {
            let (subscription, g) = super::resource_group(s, sub, rg)?;
            Ok(ArmResponse::ok(render(&subscription.id, g)))
        }),
        Method::PUT => {
            sim.read(|s| {
                s.subscriptions.get(&key(sub)).map(|_| ()).ok_or_else(|| subscription_not_found(sub))
            })?;
            if !valid_name(rg) {
                // [UNVERIFIED] code name.
                return Err(ArmError::bad_request(
                    "InvalidResourceGroup",
                    format!(
                        "The provided resource group name '{rg}' has these invalid characters or is too long."
                    ),
                ));
            }
            let body = req.json()?;
            let location = body
                .get("location")
                .and_then(Value::as_str)
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned);
            let Some(location) = location else {
                return Err(ArmError::bad_request(
                    "LocationRequired",
                    "The location property is required for this definition.",
                ));
            };
            let tags = tags_of(&body)?.unwrap_or_default();
            sim.write(|s| {
                let subscription =
                    s.subscriptions.get_mut(&key(sub)).ok_or_else(|| subscription_not_found(sub))?;
                let sub_id = subscription.id.clone();
                if let Some(g) = subscription.resource_groups.get_mut(&key(rg)) {
                    if !g.location.eq_ignore_ascii_case(&location) {
                        return Err(ArmError::conflict(
                            "InvalidResourceGroupLocation",
                            format!(
                                "Invalid resource group location '{location}'. The Resource group already \
                                 exists in location '{}'.",
                                g.location
                            ),
                        ));
                    }
                    g.tags = tags;
                    return Ok(ArmResponse::ok(render(&sub_id, g)));
                }
                let g = ResourceGroup { name: rg.clone(), location, tags, ..Default::default() };
                let body = render(&sub_id, &g);
                subscription.resource_groups.insert(key(rg), g);
                Ok(ArmResponse::created(body))
            })
            .await
        }
        _ => Err(ArmError::method_not_allowed(&req.method)),
    }
}
