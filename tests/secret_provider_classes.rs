//! SecretProviderClasses and the export ConfigMap end to end: the real API server with the CSI driver's
//! SecretProviderClass CRD (tests/fixtures), the simulator, and idbind's controller with the shipped RBAC.
//! What users rely on: a class named by a binding carries the identity's client and tenant ids and nothing
//! else of it changes; a hand edit is repaired; a new identity reaches the class; taking the name out of the
//! spec takes back only what idbind wrote; another provider's class is reported and untouched; a class made
//! after its binding is wired when it appears; the export ConfigMap carries the ids, is repaired, goes with
//! its binding, and a ConfigMap idbind did not make is never overwritten.
//!
//! The controller resyncs only every 5 minutes here, so what happens within a test's timeouts came from the
//! watches of classes and ConfigMaps.

use std::time::Duration;

use idbind::core::conditions::{
    EXPORT_READY, READY, RECONCILING, SECRET_PROVIDER_CLASSES_READY, SERVICE_ACCOUNT_READY, STALLED,
};
use idbind::core::reason::Reason;
use idbind_testkit::{
    e2e::{Env, KV_RG, TestError, TestResult, eventually, install_class_crd, start_with_resync},
    steps::step,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const RESYNC: Duration = Duration::from_secs(300);

/// The objects the Azure provider reads, as users write them (a YAML string inside a parameter).
const OBJECTS: &str =
    "array:\n  - |\n    objectName: db-password\n    objectType: secret\n    objectVersion: \"\"\n";

async fn start(prefix: &str) -> Result<Env, TestError> {
    let env = start_with_resync(prefix, RESYNC).await?;
    install_class_crd(env.plane)?;
    Ok(env)
}

/// A SecretProviderClass as a user applies it (kubectl's client-side apply), without clientID and tenantId,
/// with fields idbind must never touch: parameters of its own, secretObjects, labels.
fn class_manifest(name: &str, provider: &str, parameters: Value) -> Value {
    let mut all = json!({
        "usePodIdentity": "false",
        "keyvaultName": "kv-shop",
        "cloudName": "",
        "objects": OBJECTS,
        "team-note": "set by the team, not by idbind",
    });
    if let (Some(all), Some(more)) = (all.as_object_mut(), parameters.as_object()) {
        all.extend(more.clone());
    }
    json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": name, "labels": {"team": "shop"}, "annotations": {"owner": "shop-team"}},
        "spec": {
            "provider": provider,
            "parameters": all,
            "secretObjects": [{
                "secretName": "db",
                "type": "Opaque",
                "labels": {"app": "shop"},
                "data": [{"objectName": "db-password", "key": "password"}],
            }],
        },
    })
}

fn class(env: &Env, name: &str, provider: &str) -> TestResult {
    env.apply(&class_manifest(name, provider, json!({})))
}

fn get(env: &Env, kind: &str, name: &str) -> Result<Value, TestError> {
    Ok(serde_json::from_str(&env.kubectl(&["get", kind, name, "-o", "json"])?)?)
}

fn spc(env: &Env, name: &str) -> Result<Value, TestError> {
    get(env, "secretproviderclass", name)
}

/// What of a class is not idbind's: all of it but clientID, tenantId and the bookkeeping every write moves.
fn not_idbinds(class: &Value) -> Value {
    let mut rest = class.clone();
    if let Some(metadata) = rest["metadata"].as_object_mut() {
        for field in ["resourceVersion", "generation", "managedFields"] {
            metadata.remove(field);
        }
    }
    if let Some(parameters) = rest["spec"]["parameters"].as_object_mut() {
        for parameter in ["clientID", "tenantId"] {
            parameters.remove(parameter);
        }
    }
    rest
}

/// (clientID, tenantId) of a class: empty strings when absent.
fn ids_of_class(env: &Env, name: &str) -> Result<(String, String), TestError> {
    let class = spc(env, name)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok((text(&class["spec"]["parameters"]["clientID"]), text(&class["spec"]["parameters"]["tenantId"])))
}

/// (client id, tenant id) of the identity a binding holds, as its status says.
fn identity(env: &Env, binding: &str) -> Result<(String, String), TestError> {
    let status = get(env, "wib", binding)?["status"]["identity"].clone();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok((text(&status["clientId"]), text(&status["tenantId"])))
}

/// Applies binding `name` of ServiceAccount `name` with Key Vault Secrets User on kv-shop and `extra` spec
/// fields.
fn bind(env: &Env, name: &str, extra: Value) -> TestResult {
    let mut spec = json!({
        "serviceAccountName": name,
        "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
                      "metadata": {"name": name}, "spec": spec}))
}

async fn wait_ready(env: &Env, binding: &str) -> TestResult {
    env.wait_condition(binding, READY, "True", Reason::Reconciled, WAIT).await
}

/// Waits until `check` holds of class `name`.
async fn wait_class(
    env: &Env,
    name: &str,
    what: &str,
    check: impl Fn(&(String, String)) -> bool,
) -> Result<(), TestError> {
    eventually(what, WAIT, || {
        let ids = ids_of_class(env, name)?;
        Ok(check(&ids).then_some(()))
    })
    .await
}

/// The notes of the binding's Events of `reason`.
fn events(env: &Env, binding: &str, reason: Reason) -> Result<Vec<String>, TestError> {
    let selector = format!("involvedObject.name={binding},reason={reason}");
    let list: Value = serde_json::from_str(&env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &selector,
        "-o",
        "json",
    ])?)?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items.iter().map(|e| e["message"].as_str().unwrap_or_default().to_string()).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_class_carries_the_identity_is_repaired_follows_it_and_is_let_go() -> TestResult {
    let env = start("spc-life").await?;
    env.kubectl(&["create", "serviceaccount", "orders"])?;
    class(&env, "orders-kv", "azure")?;
    let original = not_idbinds(&spc(&env, "orders-kv")?);

    let first = step("wired: the class carries the identity's client and tenant ids", async {
        bind(&env, "orders", json!({"secretProviderClasses": ["orders-kv"]}))?;
        wait_ready(&env, "orders").await?;
        let ids = identity(&env, "orders")?;
        assert!(!ids.0.is_empty() && !ids.1.is_empty(), "{ids:?}");
        assert_eq!(ids_of_class(&env, "orders-kv")?, ids);
        assert_eq!(
            env.condition("orders", SECRET_PROVIDER_CLASSES_READY)?,
            ("True".into(), Reason::Wired.into())
        );
        assert_eq!(
            not_idbinds(&spc(&env, "orders-kv")?),
            original,
            "idbind changed more than its two fields"
        );
        let notes = events(&env, "orders", Reason::SecretProviderClassWired)?;
        assert!(notes.iter().any(|n| n.contains("orders-kv") && n.contains(&ids.0)), "{notes:?}");
        Ok(ids)
    })
    .await?;

    step("repaired: a hand edit of clientID is undone at once", async {
        let edit = json!({"spec": {"parameters": {"clientID": "00000000-0000-0000-0000-00000000dead"}}});
        env.kubectl(&["patch", "secretproviderclass", "orders-kv", "--type=merge", "-p", &edit.to_string()])?;
        wait_class(&env, "orders-kv", "the clientID repaired", |ids| *ids == first).await?;
        assert_eq!(not_idbinds(&spc(&env, "orders-kv")?), original);
        Ok(())
    })
    .await?;

    step("follows: a new identity's client id reaches the class", async {
        bind(
            &env,
            "orders",
            json!({"secretProviderClasses": ["orders-kv"], "identity": {"name": "orders-v2"}}),
        )?;
        eventually("the new identity", WAIT, || {
            let ids = identity(&env, "orders")?;
            Ok((!ids.0.is_empty() && ids.0 != first.0).then_some(ids))
        })
        .await?;
        let second = identity(&env, "orders")?;
        wait_class(&env, "orders-kv", "the new client id", |ids| *ids == second).await?;
        wait_ready(&env, "orders").await?;
        assert_eq!(not_idbinds(&spc(&env, "orders-kv")?), original);
        Ok(())
    })
    .await?;

    step("let go: taking the name out takes back exactly what idbind wrote", async {
        bind(&env, "orders", json!({"identity": {"name": "orders-v2"}}))?;
        wait_class(&env, "orders-kv", "clientID and tenantId gone", |ids| {
            ids.0.is_empty() && ids.1.is_empty()
        })
        .await?;
        let now = spc(&env, "orders-kv")?;
        assert_eq!(not_idbinds(&now), original, "more than idbind's fields went");
        assert_eq!(now["spec"]["parameters"]["objects"], OBJECTS, "the objects parameter changed");
        let managers: Vec<&str> = now["metadata"]["managedFields"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
            .unwrap_or_default();
        assert!(!managers.contains(&"idbind.dev/secret-provider-class"), "{managers:?}");
        env.wait_condition_gone("orders", SECRET_PROVIDER_CLASSES_READY, WAIT).await?;
        wait_ready(&env, "orders").await?;
        eventually("the Event", WAIT, || {
            Ok((!events(&env, "orders", Reason::SecretProviderClassReleased)?.is_empty()).then_some(()))
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_id_the_team_also_set_stays_when_idbind_lets_go() -> TestResult {
    let env = start("spc-shared").await?;
    env.ready_binding("pay", &["Key Vault Secrets User"])?;
    let (client_id, tenant_id) = identity(&env, "pay")?;
    // The way it was done by hand: the team copied the ids into its own manifest.
    let copied = json!({"clientID": client_id, "tenantId": tenant_id});
    env.apply(&class_manifest("pay-kv", "azure", copied))?;
    bind(&env, "pay", json!({"secretProviderClasses": ["pay-kv"]}))?;
    env.wait_condition("pay", SECRET_PROVIDER_CLASSES_READY, "True", Reason::Wired, WAIT).await?;
    // The team's fields are its own as much as idbind's: idbind letting go leaves them.
    bind(&env, "pay", json!({}))?;
    eventually("the class released", WAIT, || {
        let class = spc(&env, "pay-kv")?;
        let managers = class["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        Ok((!managers.iter().any(|e| e["manager"] == "idbind.dev/secret-provider-class")).then_some(()))
    })
    .await?;
    assert_eq!(ids_of_class(&env, "pay-kv")?, (client_id, tenant_id));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_providers_class_is_reported_and_left_untouched() -> TestResult {
    let env = start("spc-vault").await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    class(&env, "hashicorp", "vault")?;
    let before = spc(&env, "hashicorp")?;
    bind(&env, "app", json!({"secretProviderClasses": ["hashicorp"]}))?;
    env.wait_condition("app", SECRET_PROVIDER_CLASSES_READY, "False", Reason::UnsupportedProvider, WAIT)
        .await?;
    assert_eq!(env.condition("app", READY)?, ("False".into(), Reason::UnsupportedProvider.into()));
    assert_eq!(env.condition("app", STALLED)?, ("True".into(), Reason::UnsupportedProvider.into()));
    // The ServiceAccount is bound all the same: only the class is refused.
    assert_eq!(env.condition("app", SERVICE_ACCOUNT_READY)?.0, "True");
    let after = spc(&env, "hashicorp")?;
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"], "it was written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_made_after_its_binding_is_wired_when_it_appears() -> TestResult {
    let env = start("spc-later").await?;
    env.kubectl(&["create", "serviceaccount", "late"])?;
    bind(&env, "late", json!({"secretProviderClasses": ["late-kv"]}))?;
    env.wait_condition(
        "late",
        SECRET_PROVIDER_CLASSES_READY,
        "False",
        Reason::SecretProviderClassNotFound,
        WAIT,
    )
    .await?;
    assert_eq!(env.condition("late", READY)?, ("False".into(), Reason::SecretProviderClassNotFound.into()));
    assert_eq!(env.condition("late", RECONCILING)?.0, "True");
    // Created now: the watch of classes brings the binding back (no resync within the test's time).
    class(&env, "late-kv", "azure")?;
    wait_ready(&env, "late").await?;
    assert_eq!(ids_of_class(&env, "late-kv")?, identity(&env, "late")?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_class_is_wired_by_the_first_binding_naming_it() -> TestResult {
    let env = start("spc-two").await?;
    class(&env, "shared-kv", "azure")?;
    env.kubectl(&["create", "serviceaccount", "first"])?;
    bind(&env, "first", json!({"secretProviderClasses": ["shared-kv"]}))?;
    wait_ready(&env, "first").await?;
    env.kubectl(&["create", "serviceaccount", "second"])?;
    bind(&env, "second", json!({"secretProviderClasses": ["shared-kv"]}))?;
    env.wait_condition(
        "second",
        SECRET_PROVIDER_CLASSES_READY,
        "False",
        Reason::SecretProviderClassConflict,
        WAIT,
    )
    .await?;
    assert_eq!(ids_of_class(&env, "shared-kv")?, identity(&env, "first")?, "the class changed hands");
    Ok(())
}

/// The export ConfigMap's data.
fn exported(env: &Env, name: &str) -> Result<Value, TestError> {
    Ok(get(env, "configmap", name)?["data"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_carries_the_ids_is_repaired_and_goes_with_its_binding() -> TestResult {
    let env = start("export").await?;
    env.kubectl(&["create", "serviceaccount", "billing"])?;

    let ids = step("exported: every id under both names, owned by the binding", async {
        bind(&env, "billing", json!({"export": {"configMapName": "billing-identity"}}))?;
        wait_ready(&env, "billing").await?;
        assert_eq!(env.condition("billing", EXPORT_READY)?, ("True".into(), Reason::Exported.into()));
        let binding = get(&env, "wib", "billing")?;
        let status = &binding["status"]["identity"];
        let data = exported(&env, "billing-identity")?;
        assert_eq!(
            data,
            json!({
                "clientId": status["clientId"], "tenantId": status["tenantId"],
                "principalId": status["principalId"], "resourceId": status["resourceId"],
                "AZURE_CLIENT_ID": status["clientId"], "AZURE_TENANT_ID": status["tenantId"],
            })
        );
        let owners = get(&env, "configmap", "billing-identity")?["metadata"]["ownerReferences"].clone();
        assert_eq!(
            owners,
            json!([{"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "name": "billing",
                    "uid": binding["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
        );
        Ok(data)
    })
    .await?;

    step("repaired: an edit and a deletion are undone at once", async {
        let edit = json!({"data": {"clientId": "edited"}});
        env.kubectl(&["patch", "configmap", "billing-identity", "--type=merge", "-p", &edit.to_string()])?;
        eventually(
            "the edit undone",
            WAIT,
            || Ok((exported(&env, "billing-identity")? == ids).then_some(())),
        )
        .await?;
        env.kubectl(&["delete", "configmap", "billing-identity"])?;
        eventually("the ConfigMap made again", WAIT, || {
            Ok(env
                .kubectl(&["get", "configmap", "billing-identity", "-o", "name", "--ignore-not-found"])?
                .contains("billing-identity")
                .then_some(()))
        })
        .await?;
        assert_eq!(exported(&env, "billing-identity")?, ids);
        Ok(())
    })
    .await?;

    step("moved: a new name gets the ConfigMap and the old one is deleted", async {
        bind(&env, "billing", json!({"export": {"configMapName": "billing-ids"}}))?;
        eventually("the old ConfigMap deleted", WAIT, || {
            let names = env.kubectl(&["get", "configmap", "-o", "name"])?;
            Ok((names.contains("configmap/billing-ids") && !names.contains("configmap/billing-identity"))
                .then_some(()))
        })
        .await?;
        assert_eq!(exported(&env, "billing-ids")?, ids);
        eventually("the Event", WAIT, || {
            Ok((!events(&env, "billing", Reason::ConfigMapDeleted)?.is_empty()).then_some(()))
        })
        .await
    })
    .await?;

    step("collected: deleting the binding deletes the ConfigMap", async {
        env.kubectl(&["delete", "wib", "billing", "--wait=true", "--timeout=60s"])?;
        eventually("the garbage collector", WAIT, || {
            let left =
                env.kubectl(&["get", "configmap", "billing-ids", "-o", "name", "--ignore-not-found"])?;
            Ok(left.trim().is_empty().then_some(()))
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_map_idbind_did_not_make_is_never_overwritten() -> TestResult {
    let env = start("export-taken").await?;
    env.kubectl(&["create", "configmap", "taken", "--from-literal=clientId=the-team-s-own"])?;
    let before = get(&env, "configmap", "taken")?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    bind(&env, "app", json!({"export": {"configMapName": "taken"}}))?;
    env.wait_condition("app", EXPORT_READY, "False", Reason::ExportConflict, WAIT).await?;
    assert_eq!(env.condition("app", READY)?, ("False".into(), Reason::ExportConflict.into()));
    assert_eq!(env.condition("app", STALLED)?.0, "True");
    // Exported elsewhere: the foreign ConfigMap stays exactly as it was, and is not deleted either.
    bind(&env, "app", json!({"export": {"configMapName": "free"}}))?;
    wait_ready(&env, "app").await?;
    assert_eq!(exported(&env, "free")?["clientId"], identity(&env, "app")?.0);
    let after = get(&env, "configmap", "taken")?;
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    // Without an export the ConfigMap idbind made goes.
    bind(&env, "app", json!({}))?;
    eventually("the export deleted", WAIT, || {
        let left = env.kubectl(&["get", "configmap", "free", "-o", "name", "--ignore-not-found"])?;
        Ok(left.trim().is_empty().then_some(()))
    })
    .await?;
    env.wait_condition_gone("app", EXPORT_READY, WAIT).await?;
    assert_eq!(
        get(&env, "configmap", "taken")?["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    Ok(())
}
