//! Replays every request example under `tests/azure-rest-api-specs/specification/**/examples/` (unmodified
//! copies from Azure/azure-rest-api-specs, see its README and docs/azure.md#spec-copies) against the
//! simulator and checks the example's status codes and field structure.
//!
//! The request of an example is found through the swagger that references it (`x-ms-examples`), so a new
//! example under an operation we already know needs no code. Examples without a swagger beside them (Key
//! Vault) use a path table below. Preconditions (the identity a GET reads, the assignment a DELETE removes)
//! come from `setup`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use idbind_sim::{Seed, SeedRoleDefinition, SimConfig, Simulator};
use serde_json::{Value, json};

fn spec_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure-rest-api-specs/specification")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

#[derive(Debug, Clone)]
struct OpInfo {
    operation_id: String,
    method: String,
    template: String,
}

/// example file (canonical path) → operation, from every swagger's x-ms-examples.
fn operations_by_example(files: &[PathBuf]) -> BTreeMap<PathBuf, OpInfo> {
    let mut map = BTreeMap::new();
    for f in files.iter().filter(|f| !f.components().any(|c| c.as_os_str() == "examples")) {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        // `x-ms-paths` holds operations whose path differs only by query (`?disambiguation_dummy`).
        let all = ["paths", "x-ms-paths"]
            .iter()
            .filter_map(|k| doc.get(*k).and_then(Value::as_object))
            .flat_map(|m| m.iter());
        for (template, ops) in all {
            let template = template.split('?').next().unwrap_or("").to_owned();
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                let Some(examples) = op.get("x-ms-examples").and_then(Value::as_object) else {
                    continue;
                };
                for ex in examples.values() {
                    let Some(r) = ex.get("$ref").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some(dir) = f.parent() else { continue };
                    let Ok(path) = dir.join(r).canonicalize() else {
                        continue;
                    };
                    map.insert(
                        path,
                        OpInfo {
                            operation_id: op
                                .get("operationId")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            method: method.to_uppercase(),
                            template: template.clone(),
                        },
                    );
                }
            }
        }
    }
    map
}

/// Examples whose swagger is not among the copies.
fn fallback(file_name: &str) -> Option<OpInfo> {
    match file_name {
        "getVault.json" => Some(OpInfo {
            operation_id: "Vaults_Get".into(),
            method: "GET".into(),
            template: "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}".into(),
        }),
        _ => None,
    }
}

fn param(params: &Value, name: &str) -> String {
    match params.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn fill(template: &str, params: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&param(params, &rest[start + 1..start + end]));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every subscription, resource group and role definition GUID an example mentions, so the simulator has the
/// world the example assumes.
fn seed_for(example: &Value) -> Seed {
    let mut seed = seed();
    // The examples run as a tenant-wide administrator: whatever subscription or tenant-level scope they name.
    seed.assign(APP_OID, "Owner", "/");
    let params = &example["parameters"];
    let sub = param(params, "subscriptionId");
    let rg = param(params, "resourceGroupName");
    if !sub.is_empty() {
        seed.subscription_mut(&sub);
        if !rg.is_empty() {
            seed.add_rg(&sub, &rg, None);
        }
    }
    let scope = param(params, "scope");
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() >= 2 && segs[0].eq_ignore_ascii_case("subscriptions") {
        seed.subscription_mut(segs[1]);
        if segs.len() >= 4 {
            seed.add_rg(segs[1], segs[3], None);
        }
    }
    let text = example.to_string();
    for part in text.split("roleDefinitions/").skip(1) {
        let guid: String = part.chars().take_while(|c| c.is_ascii_hexdigit() || *c == '-').collect();
        if guid.len() == 36 && !seed.role_definitions.iter().any(|r| r.name == guid) {
            seed.role_definitions.push(SeedRoleDefinition {
                name: guid,
                role_name: "Example Role".into(),
                description: "from an example".into(),
                role_type: None,
                permissions: vec![],
                assignable_scopes: vec!["/".into()],
                subscription_id: None,
            });
        }
    }
    seed
}

/// `expected`'s structure must be present in `actual`: same keys (recursively), same JSON kinds; arrays
/// compare their first elements. `tags` is a free-form map: only its kind counts.
fn structure_diff(expected: &Value, actual: &Value, at: &str, omitted: &[&str], out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let path = format!("{at}/{k}");
                if omitted.contains(&path.as_str()) {
                    continue;
                }
                match a.get(k) {
                    None => out.push(format!("{path}: missing")),
                    Some(av) if k == "tags" => {
                        if !av.is_object() {
                            out.push(format!("{path}: expected an object, got {av}"));
                        }
                    }
                    Some(av) => structure_diff(ev, av, &path, omitted, out),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => match (e.first(), a.first()) {
            (Some(ef), Some(af)) => structure_diff(ef, af, &format!("{at}/0"), omitted, out),
            (Some(_), None) => out.push(format!("{at}: expected a non-empty array")),
            _ => {}
        },
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Null, _) => {}
        (e, a) => out.push(format!("{at}: expected a value like {e}, got {a}")),
    }
}

/// Fields of an example we deliberately do not return, with the reason in `render_vault`.
const OMITTED: &[&str] = &["/properties/hsmPoolResourceId"];

async fn setup(
    arm: &Arm,
    op: &str,
    params: &Value,
    example: &Value,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let sub = param(params, "subscriptionId");
    let rg = param(params, "resourceGroupName");
    let api = param(params, "api-version");
    let identity = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
        param(params, "resourceName")
    );
    let needs_identity =
        ["UserAssignedIdentities_Get", "UserAssignedIdentities_Delete", "UserAssignedIdentities_Update"]
            .contains(&op)
            || op.starts_with("FederatedIdentityCredentials_");
    if needs_identity {
        let r = arm
            .put(
                &format!("{identity}?api-version={api}"),
                json!({"location": "eastus", "tags": {"key1": "value1", "key2": "value2"}}),
            )
            .await?;
        assert_eq!(r.status, 201, "setup identity: {}", r.body);
    }
    let fic = |name: &str| format!("{identity}/federatedIdentityCredentials/{name}?api-version={api}");
    match op {
        "FederatedIdentityCredentials_Get" | "FederatedIdentityCredentials_Delete" => {
            let r = arm
                .put(
                    &fic(&param(params, "federatedIdentityCredentialResourceName")),
                    fic_body(
                        "https://oidc.prod-aks.azure.com/TenantGUID/IssuerGUID",
                        "system:serviceaccount:ns:svcaccount",
                    ),
                )
                .await?;
            assert_eq!(r.status, 201, "setup fic: {}", r.body);
        }
        "FederatedIdentityCredentials_List" => {
            for (i, name) in ["ficResourceName", "ficResourceName2"].iter().enumerate() {
                let r = arm
                    .put(
                        &fic(name),
                        fic_body(
                            "https://oidc.prod-aks.azure.com/TenantGUID/IssuerGUID",
                            &format!("system:serviceaccount:ns:svcaccount{i}"),
                        ),
                    )
                    .await?;
                assert_eq!(r.status, 201, "setup fic: {}", r.body);
            }
        }
        "RoleAssignments_Get" | "RoleAssignments_Delete" | "RoleAssignments_ListForScope" => {
            // Create the assignment the example reads, from the example's own response.
            let (_, resp) = first_response(example);
            let body = resp
                .get("body")
                .map(|b| if b.get("value").is_some() { b["value"][0].clone() } else { b.clone() })
                .unwrap_or(Value::Null);
            let id = body["id"].as_str().unwrap_or_default();
            let props = &body["properties"];
            let r = arm
                .put(&format!("{id}?api-version=2022-04-01"), json!({"properties": {"roleDefinitionId": props["roleDefinitionId"], "principalId": props["principalId"], "principalType": props["principalType"]}}))
                .await?;
            assert_eq!(r.status, 201, "setup role assignment: {}", r.body);
        }
        _ => {}
    }
    Ok(())
}

fn first_response(example: &Value) -> (u16, Value) {
    example["responses"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.parse().unwrap_or(0), v.clone()))
        .unwrap_or((0, Value::Null))
}

/// Creates first, then updates, then "already gone": the order in which an example's status codes can be
/// observed one after the other.
fn status_order(s: u16) -> u8 {
    match s {
        201 => 0,
        200 => 1,
        202 => 2,
        204 => 3,
        _ => 4,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spec_example_replays() -> TestResult {
    let root = spec_root();
    assert!(
        root.is_dir(),
        "the Azure REST API spec copies are missing: expected them at {} (see \
         sim/tests/azure-rest-api-specs/README.md). This test must not be skipped.",
        root.display()
    );
    let mut files = Vec::new();
    walk(&root, &mut files);
    let ops = operations_by_example(&files);
    let examples: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.parent().and_then(Path::file_name).is_some_and(|n| n == "examples"))
        .cloned()
        .collect();
    assert!(!examples.is_empty(), "no examples found under {}", root.display());

    let mut failures = Vec::new();
    let mut replayed = 0;
    for file in &examples {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let canonical = file.canonicalize()?;
        let Some(op) = ops.get(&canonical).cloned().or_else(|| fallback(&name)) else {
            failures.push(format!("{name}: no swagger references it and it has no fallback path: add one"));
            continue;
        };
        let example: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        let mut params = example["parameters"].clone();
        let (_, first) = first_response(&example);

        // Placeholders in the role-definition examples ("scope", "roleDefinitionId") are not paths; the
        // example's response id says where the definition lives.
        let mut seed = seed_for(&example);
        if op.operation_id.starts_with("RoleDefinitions_") {
            let id = first["body"]["id"].as_str().unwrap_or_default().to_owned();
            let (scope, guid) =
                id.split_once("/providers/Microsoft.Authorization/roleDefinitions/").unwrap_or(("", ""));
            let body = &first["body"]["properties"];
            seed.role_definitions.push(SeedRoleDefinition {
                name: guid.to_owned(),
                role_name: body["roleName"].as_str().unwrap_or_default().to_owned(),
                description: body["description"].as_str().unwrap_or_default().to_owned(),
                role_type: body["type"].as_str().map(str::to_owned),
                permissions: serde_json::from_value(body["permissions"].clone()).unwrap_or_default(),
                assignable_scopes: serde_json::from_value(body["assignableScopes"].clone())
                    .unwrap_or_default(),
                subscription_id: scope.split('/').nth(2).map(str::to_owned),
            });
            params["scope"] = Value::String(scope.trim_start_matches('/').to_owned());
            params["roleId"] = Value::String(id.trim_start_matches('/').to_owned());
        }
        if op.operation_id == "Vaults_Get" {
            let sub = param(&params, "subscriptionId");
            let rg = param(&params, "resourceGroupName");
            seed.add_vault(&sub, &rg, &param(&params, "vaultName"), false);
            // The vault the example shows has one access policy; so does ours.
            let policies = serde_json::from_value(first["body"]["properties"]["accessPolicies"].clone())?;
            if let Some(v) = seed
                .subscriptions
                .iter_mut()
                .flat_map(|s| s.resource_groups.iter_mut())
                .flat_map(|g| g.vaults.iter_mut())
                .last()
            {
                v.access_policies = policies;
            }
        }

        let mut cfg = SimConfig::for_tests();
        cfg.seed = seed;
        let h = Simulator::start(cfg).await?;
        let arm = Arm::new(&h).await?;
        setup(&arm, &op.operation_id, &params, &example).await?;

        let mut path = fill(&op.template, &params);
        path = format!("/{}", path.trim_start_matches('/'));
        let mut query = vec![format!("api-version={}", param(&params, "api-version"))];
        // The list example's `$top=20` over one credential would not page, yet its response has a nextLink;
        // over two credentials `$top=1` shows the same structure.
        if op.operation_id == "FederatedIdentityCredentials_List" {
            query.push(String::from("$top=1"));
        }
        let url = format!("{path}?{}", query.join("&"));
        let body = params.get("parameters").cloned();

        let mut statuses: Vec<(u16, Value)> = example["responses"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.parse().unwrap_or(0), v.clone())).collect())
            .unwrap_or_default();
        statuses.sort_by_key(|(s, _)| status_order(*s));
        for (status, expected) in statuses {
            let reply = arm.call(&op.method, &url, body.clone()).await?;
            if reply.status != status {
                failures.push(format!(
                    "{name} ({}): expected {status}, got {} {}",
                    op.operation_id, reply.status, reply.body
                ));
                continue;
            }
            match expected.get("body") {
                Some(eb) => {
                    let mut diffs = Vec::new();
                    structure_diff(eb, &reply.body, "", OMITTED, &mut diffs);
                    if !diffs.is_empty() {
                        failures.push(format!(
                            "{name} ({} {status}): {}\n  got: {}",
                            op.operation_id,
                            diffs.join("; "),
                            reply.body
                        ));
                    }
                }
                None if !reply.body.is_null() => failures.push(format!(
                    "{name} ({} {status}): expected no body, got {}",
                    op.operation_id, reply.body
                )),
                None => {}
            }
            replayed += 1;
        }
        // The list example's nextLink must lead to the rest.
        if op.operation_id == "FederatedIdentityCredentials_List" {
            let first_page = arm.call("GET", &url, None).await?;
            let next = first_page.body["nextLink"].as_str().unwrap_or_default().to_owned();
            let second = arm.get(&next).await?;
            if second.status != 200
                || second.body["value"].as_array().map(Vec::len) != Some(1)
                || second.body.get("nextLink").is_some()
            {
                failures.push(format!(
                    "{name}: following nextLink {next} gave {} {}",
                    second.status, second.body
                ));
            }
        }
        h.shutdown().await?;
    }
    assert!(failures.is_empty(), "{} example replay(s) failed:\n{}", failures.len(), failures.join("\n"));
    // 14 examples with 20 status codes between them at the time of writing.
    assert!(replayed >= examples.len(), "replayed {replayed} responses for {} examples", examples.len());
    println!("replayed {replayed} responses of {} examples", examples.len());
    Ok(())
}
