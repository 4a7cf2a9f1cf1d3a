//! Microsoft.Resources: resource groups (PUT and GET), enough for tests and the demo to make the groups
//! identities live in.

use axum::http::Method;
use serde_json::{Value, json};

use super::{ArmRequest, ArmResponse, Route, subscription_not_found, tags_of};
use crate::core::Sim;
use crate::error::ArmError;
use crate::state::{ResourceGroup, key};

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
    let Route::ResourceGroup { sub, rg } = &req.route else {
        return Err(ArmError::not_found("NotFound", "Not a resource group route."));
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
