//! The WorkloadIdentityBinding API against a real kube-apiserver, driven with the real kubectl: the CRD
//! installs, the samples are accepted, every validation rule rejects bad input with a message naming the
//! field, and `kubectl get` / `kubectl explain` show what users read.

use std::{io::Write, process::Stdio};

use idbind::core::reason::Reason;
use idbind_testenv::ControlPlane;
use serde_json::{Value, json};

fn plane() -> &'static ControlPlane {
    idbind_testenv::shared_with_crds()
}

/// `kubectl apply -f -` of one object; Ok(stdout) or Err(stderr).
fn apply(namespace: &str, object: &Value) -> Result<String, String> {
    let mut child = plane()
        .kubectl(&["apply", "-n", namespace, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(object.to_string().as_bytes())
        .expect("writing to kubectl");
    let out = child.wait_with_output().expect("kubectl finishes");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": spec})
}

fn vault(extra: Value) -> Value {
    let mut v = json!({"name": "kv-shop", "resourceGroup": "rg-shop", "roles": ["Key Vault Secrets User"]});
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            if val.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

const SUB: &str = "00000000-0000-0000-0000-000000000001";

#[test]
fn samples_are_accepted() {
    let ns = plane().fresh_namespace("samples").expect("namespace");
    let samples = idbind_testenv::workspace_root().join("config/samples");
    let mut count = 0;
    for entry in std::fs::read_dir(&samples).expect("config/samples exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            plane()
                .kubectl_ok(&["apply", "-n", &ns, "-f", &path.display().to_string()])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 3, "expected at least three samples, found {count}");
    // Every sample is a binding, but the policies they need (cluster-scoped, like every policy).
    let policies =
        plane().kubectl_ok(&["get", "wip", "team-shop", "self-service", "-o", "name"]).expect("get");
    assert_eq!(policies.lines().count(), 2, "the samples' policies: {policies}");
    let names = plane().kubectl_ok(&["get", "wib", "-n", &ns, "-o", "name"]).expect("get");
    assert_eq!(names.lines().count(), count - 2, "every other sample became a binding: {names}");
}

#[test]
fn invalid_bindings_are_rejected_naming_the_field() {
    let ns = plane().fresh_namespace("invalid").expect("namespace");
    let long = "a".repeat(129);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing serviceAccountName", json!({}), "spec.serviceAccountName"),
        (
            "serviceAccountName not DNS-1123",
            json!({"serviceAccountName": "Orders_API"}),
            "spec.serviceAccountName",
        ),
        (
            "identity.name too short",
            json!({"serviceAccountName": "sa", "identity": {"name": "ab"}}),
            "spec.identity.name",
        ),
        (
            "identity.name bad character",
            json!({"serviceAccountName": "sa", "identity": {"name": "my.identity"}}),
            "spec.identity.name",
        ),
        (
            "identity.name too long",
            json!({"serviceAccountName": "sa", "identity": {"name": long}}),
            "spec.identity.name",
        ),
        (
            "identity.resourceGroup ends with a period",
            json!({"serviceAccountName": "sa", "identity": {"resourceGroup": "rg."}}),
            "spec.identity.resourceGroup",
        ),
        (
            "identity.location display name",
            json!({"serviceAccountName": "sa", "identity": {"location": "West Europe"}}),
            "spec.identity.location",
        ),
        (
            "identity.tags reserved name",
            json!({"serviceAccountName": "sa", "identity": {"tags": {"idbind.dev.owner": "me"}}}),
            "spec.identity.tags",
        ),
        (
            "identity.resourceId with name",
            json!({"serviceAccountName": "sa", "identity": {"name": "abc", "resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/abc")}}),
            "spec.identity.resourceId",
        ),
        (
            "identity.resourceId of another type",
            json!({"serviceAccountName": "sa", "identity": {"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/abc")}}),
            "spec.identity.resourceId",
        ),
        (
            "vault name without resourceGroup",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"resourceGroup": null}))]}),
            "spec.keyVaults[0]",
        ),
        (
            "vault with both resourceId and name",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"resourceGroup": null, "resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-shop")}))]}),
            "spec.keyVaults[0]",
        ),
        (
            "vault name with --",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"name": "kv--shop"}))]}),
            "spec.keyVaults[0].name",
        ),
        (
            "vault name too long",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"name": "kv-abcdefghijklmnopqrstuvwxyz"}))]}),
            "spec.keyVaults[0].name",
        ),
        (
            "vault resourceId malformed",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"name": null, "resourceGroup": null, "resourceId": "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"}))]}),
            "spec.keyVaults[0].resourceId",
        ),
        (
            "vault without roles",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"roles": []}))]}),
            "spec.keyVaults[0].roles",
        ),
        (
            "role with forbidden characters",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"roles": ["Owner; DROP"]}))]}),
            "spec.keyVaults[0].roles[0]",
        ),
        (
            "duplicate role",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"roles": ["Key Vault Reader", "Key Vault Reader"]}))]}),
            "spec.keyVaults[0].roles[1]",
        ),
        (
            "too many roles",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"roles": ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"]}))]}),
            "spec.keyVaults[0].roles",
        ),
        (
            "same vault twice",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({})), vault(json!({"name": "KV-SHOP", "roles": ["Key Vault Reader"]}))]}),
            "spec.keyVaults",
        ),
        (
            "too many vaults",
            json!({"serviceAccountName": "sa", "keyVaults": (0..17).map(|i| vault(json!({"name": format!("kv-{i:03}")}))).collect::<Vec<_>>()}),
            "spec.keyVaults",
        ),
        (
            "unknown deletionPolicy",
            json!({"serviceAccountName": "sa", "deletionPolicy": "Orphan"}),
            "spec.deletionPolicy",
        ),
        ("unknown field", json!({"serviceAccountName": "sa", "identty": {}}), "spec.identty"),
        (
            "SecretProviderClass name not DNS",
            json!({"serviceAccountName": "sa", "secretProviderClasses": ["Orders_KV"]}),
            "spec.secretProviderClasses[0]",
        ),
        (
            "SecretProviderClass named twice",
            json!({"serviceAccountName": "sa", "secretProviderClasses": ["kv", "kv"]}),
            "spec.secretProviderClasses[1]",
        ),
        (
            "too many SecretProviderClasses",
            json!({"serviceAccountName": "sa", "secretProviderClasses": (0..17).map(|i| format!("kv-{i}")).collect::<Vec<_>>()}),
            "spec.secretProviderClasses",
        ),
        (
            "export without a name",
            json!({"serviceAccountName": "sa", "export": {}}),
            "spec.export.configMapName",
        ),
        (
            "export name not DNS",
            json!({"serviceAccountName": "sa", "export": {"configMapName": "Orders IDs"}}),
            "spec.export.configMapName",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        match apply(&ns, &binding(&format!("bad-{i}"), spec.clone())) {
            Ok(out) => failures.push(format!("{what}: accepted ({})", out.trim())),
            Err(err) if !err.contains(field) => {
                failures.push(format!("{what}: rejected without naming {field}: {}", err.trim()));
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid bindings were not rejected as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn location_cannot_change_without_a_new_identity_name() {
    let ns = plane().fresh_namespace("immutable").expect("namespace");
    let spec = |name: &str, location: &str| json!({"serviceAccountName": "sa", "identity": {"name": name, "location": location}});
    apply(&ns, &binding("moving", spec("id-one", "westeurope"))).expect("the first version is valid");
    let err = apply(&ns, &binding("moving", spec("id-one", "eastus")))
        .expect_err("moving the same identity must be rejected");
    assert!(err.contains("spec.identity.location"), "{err}");
    apply(&ns, &binding("moving", spec("id-two", "eastus")))
        .expect("a new name with a new location is a new identity, and allowed");
}

#[test]
fn kubectl_get_shows_the_printer_columns() {
    let ns = plane().fresh_namespace("columns").expect("namespace");
    apply(&ns, &binding("orders-api", json!({"serviceAccountName": "orders-api"}))).expect("valid binding");
    let table = plane().kubectl_ok(&["get", "wib", "-n", &ns]).expect("kubectl get wib");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["NAME", "READY", "CLIENT ID", "IDENTITY", "AGE"], "{table}");
    let wide = plane()
        .kubectl_ok(&["get", "workloadidentitybindings.idbind.dev", "-n", &ns, "-o", "wide"])
        .expect("kubectl get -o wide");
    assert!(
        wide.contains("REASON") && wide.contains("SERVICE ACCOUNT") && wide.contains("orders-api"),
        "{wide}"
    );
}

#[test]
fn kubectl_explain_shows_the_field_docs() {
    // The OpenAPI document of a new CRD is published a few seconds after it is established.
    let spec = plane()
        .kubectl_eventually(&["explain", "wib.spec"], std::time::Duration::from_secs(90))
        .expect("kubectl explain wib.spec");
    for field in
        ["serviceAccountName", "identity", "keyVaults", "deletionPolicy", "secretProviderClasses", "export"]
    {
        assert!(spec.contains(field), "explain wib.spec lacks {field}:\n{spec}");
    }
    assert!(
        spec.contains("system:serviceaccount"),
        "the serviceAccountName doc explains the subject:\n{spec}"
    );
    // kubectl wraps at its own width: compare with whitespace folded.
    let roles = plane().kubectl_ok(&["explain", "wib.spec.keyVaults.roles"]).expect("kubectl explain roles");
    let roles = roles.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(roles.contains("Key Vault Secrets User"), "{roles}");
    let status =
        plane().kubectl_ok(&["explain", "wib.status.identity.clientId"]).expect("kubectl explain status");
    let status = status.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(status.contains("azure.workload.identity/client-id"), "{status}");
    let classes =
        plane().kubectl_ok(&["explain", "wib.spec.secretProviderClasses"]).expect("kubectl explain");
    let classes = classes.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        classes.contains("spec.parameters.clientID") && classes.contains("provider is azure"),
        "{classes}"
    );
    let export = plane().kubectl_ok(&["explain", "wib.spec.export.configMapName"]).expect("kubectl explain");
    let export = export.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        export.contains("AZURE_CLIENT_ID") && export.contains(Reason::ExportConflict.as_str()),
        "{export}"
    );
}

/// Resource ids spelled so that a URL parser would send idbind's requests elsewhere (`\` read as `/`, dot
/// segments resolved, percent-encodings decoded, look-alike letters) are refused at admission, naming the
/// field and why; the same ids spelled plainly, in any keyword casing, are accepted.
#[test]
fn resource_ids_spelled_to_land_elsewhere_are_rejected_saying_why() {
    let ns = plane().fresh_namespace("spelling").expect("namespace");
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-team");
    let team_vault = format!("{rg}/providers/Microsoft.KeyVault/vaults/kv-team");
    let escape =
        r"x\..\..\..\..\..\..\..\..\resourceGroups\rg-shop\providers\Microsoft.KeyVault\vaults\kv-shop";
    let scope = |scope: String| json!({"serviceAccountName": "sa", "azureRoles": [{"scope": scope, "roles": ["Reader"]}]});
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "backslashes and dot segments",
            scope(format!("{team_vault}/accessPolicies/{escape}")),
            "spec.azureRoles[0].scope",
        ),
        (
            "dot segments",
            scope(format!("{team_vault}/accessPolicies/x/../../../../../../../..")),
            "spec.azureRoles[0].scope",
        ),
        (
            "a trailing dot segment",
            scope(format!("{rg}/providers/Microsoft.Storage/storageAccounts/sa/..")),
            "spec.azureRoles[0].scope",
        ),
        (
            "percent-encoded dots",
            scope(format!("{team_vault}/accessPolicies/%2e%2e")),
            "spec.azureRoles[0].scope",
        ),
        (
            "an empty segment",
            scope(format!("{rg}//providers/Microsoft.Storage/storageAccounts/sa")),
            "spec.azureRoles[0].scope",
        ),
        (
            "a tab",
            scope(format!("{rg}/providers/Microsoft.Storage/storageAccounts/sa\t")),
            "spec.azureRoles[0].scope",
        ),
        (
            "a Cyrillic a in the namespace",
            scope(format!("{rg}/providers/Microsoft.KeyV\u{430}ult/vaults/kv/keys/k")),
            "spec.azureRoles[0].scope",
        ),
        (
            "a fullwidth solidus in a name",
            scope(format!("{rg}/providers/Microsoft.Storage/storageAccounts/sa\u{ff0f}x")),
            "spec.azureRoles[0].scope",
        ),
        (
            "a vault id with a dot segment",
            json!({"serviceAccountName": "sa", "keyVaults": [vault(json!({"name": null, "resourceGroup": null, "resourceId": format!(r"{team_vault}\..\..\..\..\rg-shop/providers/Microsoft.KeyVault/vaults/kv-shop")}))]}),
            "spec.keyVaults[0].resourceId",
        ),
        (
            "an identity id with a backslash",
            json!({"serviceAccountName": "sa", "identity": {"resourceId": format!(r"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id\..\other")}}),
            "spec.identity.resourceId",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, spec, field)) in refused.iter().enumerate() {
        match apply(&ns, &binding(&format!("spelled-{i}"), spec.clone())) {
            Ok(out) => failures.push(format!("{what}: accepted ({})", out.trim())),
            Err(err) if !(err.contains(field) && err.contains("must be spelled plainly")) => {
                failures.push(format!("{what}: rejected without naming {field} and why: {}", err.trim()));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let accepted = [
        format!("{rg}/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default/containers/$web"),
        format!(
            "/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/rg-team/PROVIDERS/microsoft.storage/storageAccounts/sa/"
        ),
        format!("{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg.1"),
        rg.clone(),
        format!("/subscriptions/{SUB}"),
    ];
    for (i, text) in accepted.into_iter().enumerate() {
        apply(&ns, &binding(&format!("plain-{i}"), scope(text.clone())))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

/// A policy's existingIdentities are identity ids spelled as spec.identity.resourceId must be.
#[test]
fn policy_existing_identities_must_be_plain_identity_ids() {
    let policy = |name: &str, id: String| {
        json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy", "metadata": {"name": name},
               "spec": {"namespaces": ["team-a"], "existingIdentities": [id]}})
    };
    let identity = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared"
    );
    let name = format!("existing-{}", std::process::id());
    let err = apply("default", &policy(&format!("{name}-bad"), format!(r"{identity}\..\other")))
        .expect_err("a backslash in an existing identity's id is refused");
    assert!(err.contains("spec.existingIdentities") && err.contains("spelled plainly"), "{err}");
    apply("default", &policy(&name, identity)).expect("a plain identity id is accepted");
    plane().kubectl_ok(&["delete", "wip", &name]).expect("cleanup");
}
