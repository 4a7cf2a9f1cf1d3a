//! idbind and the other writers of the objects it keeps in step, end to end: the real API server with its
//! real root-CA publisher (kube-controller-manager's), the simulator, and `idbind run` as a process with the
//! shipped RBAC. What users rely on:
//!
//! - a ConfigMap a tenant dresses up as the binding's (an owner reference naming it, which anyone who may
//!   edit the ConfigMap can write) is never written: `kube-root-ca.crt` stays the publisher's and idbind
//!   makes no request that writes it (the binding reports `ExportConflict`);
//! - another writer changing what idbind keeps (the export ConfigMap's data, a SecretProviderClass's
//!   `clientID`, the ServiceAccount's annotations) has its first change undone and its second left alone: the
//!   binding stalls instead of the two writing in turn for ever.
//!
//! idbind's writes are counted from the API server's audit log, which records every request of the operator's
//! ServiceAccount on these objects. `IDBIND_TEST_OPERATOR` runs another build of the operator (an older one
//! shows the loops these tests catch).

use std::time::Duration;

use idbind::core::conditions::{
    EXPORT_READY, READY, SECRET_PROVIDER_CLASSES_READY, SERVICE_ACCOUNT_READY, STALLED,
};
use idbind::core::reason::Reason;
use idbind_testkit::{
    audit::{operator_reads, operator_requests, operator_writes},
    e2e::{
        Env, KV_RG, TestError, TestResult, eventually, install_class_crd, install_operator_rbac,
        start_without_operator,
    },
    process::Operator,
    steps::step,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// How many changes the other writer makes at most: far more than idbind may answer.
const ROUNDS: usize = 8;

/// The control plane, the simulator and `idbind run` for a fresh namespace that a policy lets bind kv-shop
/// (so the tests hold whatever the default for unselected namespaces is).
async fn start(prefix: &str) -> Result<(Env, Operator), TestError> {
    let env = start_without_operator(prefix, |_| {}).await?;
    install_class_crd(env.plane)?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-policy", env.ns)},
        "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG, "name": "kv-shop"}]}});
    env.apply(&policy)?;
    let operator = Operator::start(&env, "operator", &[])?;
    Ok((env, operator))
}

/// Binding `name` of ServiceAccount `name` with Key Vault Secrets User on kv-shop and `extra` spec fields.
fn binding_manifest(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "serviceAccountName": name,
        "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": spec})
}

/// Applies [`binding_manifest`].
fn bind(env: &Env, name: &str, extra: Value) -> TestResult {
    env.apply(&binding_manifest(name, extra))
}

fn get(env: &Env, kind: &str, name: &str) -> Result<Value, TestError> {
    Ok(serde_json::from_str(&env.kubectl(&["get", kind, name, "-o", "json"])?)?)
}

/// The client id the binding's status shows.
fn client_id(env: &Env, binding: &str) -> Result<String, TestError> {
    Ok(get(env, "wib", binding)?["status"]["identity"]["clientId"].as_str().unwrap_or_default().to_string())
}

/// Waits until the operator has reconciled `binding` twice more, each time reading `resource` `name`:
/// anything the first of those reconciles wrote is in the audit log by the time the second reads (a binding's
/// reconciles never overlap). Each is started by a touch of the binding's metadata.
async fn two_more_reconciles(env: &Env, binding: &str, resource: &str, name: &str) -> TestResult {
    for touch in ["1", "2"] {
        let before = operator_reads(env, resource, name)?;
        let annotation = format!("idbind.test/touched={touch}-{before}");
        env.kubectl(&["annotate", "--overwrite", "wib", binding, &annotation])?;
        eventually(&format!("the operator reading {resource} {name} again"), WAIT, || {
            Ok((operator_reads(env, resource, name)? > before).then_some(()))
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_owner_reference_on_kube_root_ca_crt_gets_it_no_write() -> TestResult {
    let (env, operator) = start("root-ca").await?;
    // The tenant: `edit` in its namespace and nothing else (which covers bindings through idbind's user
    // roles, aggregated into it).
    let user_roles = idbind_testenv::workspace_root().join("config/rbac/user_roles.yaml");
    env.plane.kubectl_ok(&["apply", "-f", &user_roles.display().to_string()])?;
    env.kubectl(&["create", "rolebinding", "tenant-edit", "--clusterrole=edit", "--user=tenant"])?;
    eventually("edit aggregating idbind's user roles", WAIT, || {
        let answer = env.kubectl(&["auth", "can-i", "patch", "workloadidentitybindings", "--as=tenant"]);
        Ok(answer.is_ok_and(|a| a.trim() == "yes").then_some(()))
    })
    .await?;
    let as_tenant = |args: &[&str]| {
        let mut all = vec!["--as=tenant"];
        all.extend_from_slice(args);
        env.kubectl(&all)
    };
    let publishers = eventually("the root-CA publisher's ConfigMap", WAIT, || {
        Ok(env.kubectl(&["get", "configmap", "kube-root-ca.crt", "-o", "json"]).ok())
    })
    .await?;
    let publishers: Value = serde_json::from_str(&publishers)?;
    let ca = std::fs::read_to_string(env.plane.ca_file())?;
    assert_eq!(publishers["data"], json!({"ca.crt": ca}), "the publisher's data");

    step("the tenant names kube-root-ca.crt, owned by its binding", async {
        as_tenant(&["create", "serviceaccount", "app"])?;
        let binding = env.plane.dir().join(format!("{}-binding.json", env.ns));
        std::fs::write(&binding, binding_manifest("app", json!({})).to_string())?;
        as_tenant(&["apply", "-f", &binding.display().to_string()])?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        let uid = get(&env, "wib", "app")?["metadata"]["uid"].clone();
        let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "idbind.dev/v1alpha1",
            "kind": "WorkloadIdentityBinding", "name": "app", "uid": uid, "controller": true}]}});
        as_tenant(&["patch", "configmap", "kube-root-ca.crt", "--type=merge", "-p", &owner.to_string()])?;
        let export = json!({"spec": {"export": {"configMapName": "kube-root-ca.crt"}}});
        as_tenant(&["patch", "wib", "app", "--type=merge", "-p", &export.to_string()])?;
        Ok(())
    })
    .await?;

    step("idbind never writes it, and says why", async {
        eventually("the export judged", WAIT, || {
            Ok((!env.condition("app", EXPORT_READY)?.0.is_empty()).then_some(()))
        })
        .await?;
        two_more_reconciles(&env, "app", "configmaps", "kube-root-ca.crt").await?;
        let requests = operator_requests(&env, "configmaps", "kube-root-ca.crt")?;
        let writes: Vec<String> =
            requests.iter().filter(|r| r.writes()).map(|r| format!("{} {}", r.verb, r.code)).collect();
        assert!(
            writes.is_empty(),
            "idbind wrote kube-root-ca.crt {} times: {}",
            writes.len(),
            writes.join(", ")
        );
        assert_eq!(env.condition("app", EXPORT_READY)?, ("False".into(), Reason::ExportConflict.into()));
        assert_eq!(env.condition("app", STALLED)?, ("True".into(), Reason::ExportConflict.into()));
        let message = env.message("app", EXPORT_READY)?;
        assert!(message.contains("spec.export.configMapName") && message.contains("no record"), "{message}");
        let now = get(&env, "configmap", "kube-root-ca.crt")?;
        assert_eq!(now["data"], json!({"ca.crt": ca}), "kube-root-ca.crt's data is the publisher's");
        let managers: Vec<&str> = now["metadata"]["managedFields"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
            .unwrap_or_default();
        assert!(!managers.iter().any(|m| m.starts_with("idbind")), "{managers:?}");
        Ok(())
    })
    .await?;

    // What idbind cannot undo: the tenant's own owner reference lets the garbage collector delete the
    // ConfigMap with the binding (as the tenant could delete it outright); the publisher makes it anew.
    step("the binding gone, kube-root-ca.crt is the publisher's again", async {
        env.kubectl(&["delete", "wib", "app", "--wait=true", "--timeout=60s"])?;
        let old_uid = publishers["metadata"]["uid"].clone();
        eventually("kube-root-ca.crt made anew by the publisher", WAIT, || {
            let now = env.kubectl(&["get", "configmap", "kube-root-ca.crt", "-o", "json"]).ok();
            let now: Option<Value> = now.and_then(|t| serde_json::from_str(&t).ok());
            Ok(now
                .filter(|cm| cm["metadata"]["uid"] != old_uid && cm["data"] == json!({"ca.crt": ca}))
                .map(|_| ()))
        })
        .await?;
        assert_eq!(operator_writes(&env, "configmaps", "kube-root-ca.crt")?, 0);
        Ok(())
    })
    .await
}

/// What the other writer's loop saw.
#[derive(Debug, PartialEq, Eq)]
struct Fight {
    /// How many changes it made.
    changes: usize,
    /// Whether the binding stalled (else idbind undid every change, up to [`ROUNDS`]).
    stalled: bool,
}

/// Plays another controller: changes the object with `change` whenever it carries idbind's values again
/// (`idbinds`), until the binding stalls with `reason` or [`ROUNDS`] changes were made. Each round waits for
/// idbind's answer, never for a time.
async fn fight(
    env: &Env,
    binding: &str,
    reason: Reason,
    idbinds: impl Fn() -> Result<bool, TestError>,
    change: impl Fn(usize) -> TestResult,
) -> Result<Fight, TestError> {
    let mut changes = 0;
    while changes < ROUNDS {
        change(changes)?;
        changes += 1;
        let stalled = eventually("idbind's answer to the change", WAIT, || {
            if env.condition(binding, STALLED)? == ("True".to_string(), reason.to_string()) {
                return Ok(Some(true));
            }
            Ok(idbinds()?.then_some(false))
        })
        .await?;
        if stalled {
            return Ok(Fight { changes, stalled: true });
        }
    }
    Ok(Fight { changes, stalled: false })
}

#[tokio::test(flavor = "multi_thread")]
async fn another_writer_of_the_export_config_map_is_not_fought() -> TestResult {
    let (env, _operator) = start("fight-cm").await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    bind(&env, "app", json!({"export": {"configMapName": "app-identity"}}))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])?;
    let ours = client_id(&env, "app")?;
    let data = |key: &str| -> Result<String, TestError> {
        Ok(get(&env, "configmap", "app-identity")?["data"][key].as_str().unwrap_or_default().to_string())
    };
    let fight = fight(
        &env,
        "app",
        Reason::ExportConflict,
        || Ok(data("clientId")? == ours),
        |round| {
            let edit = json!({"data": {"clientId": format!("other-{round}")}});
            env.kubectl(&["patch", "configmap", "app-identity", "--type=merge", "-p", &edit.to_string()])?;
            Ok(())
        },
    )
    .await?;
    two_more_reconciles(&env, "app", "configmaps", "app-identity").await?;
    let requests = operator_requests(&env, "configmaps", "app-identity")?;
    let writes: Vec<&str> = requests.iter().filter(|r| r.writes()).map(|r| r.verb.as_str()).collect();
    assert_eq!(fight, Fight { changes: 2, stalled: true }, "idbind wrote {writes:?}");
    assert_eq!(writes, ["create", "patch"], "the create and one repair, nothing after");
    assert_eq!(data("clientId")?, "other-1", "the other writer's value stays");
    let message = env.message("app", EXPORT_READY)?;
    assert!(message.contains("kubectl-patch") && message.contains("does not fight"), "{message}");
    // Put back by hand (the other writer stopped): the binding is Ready again without a write.
    let back = json!({"data": {"clientId": ours}});
    env.kubectl(&["patch", "configmap", "app-identity", "--type=merge", "-p", &back.to_string()])?;
    env.wait_condition("app", READY, "True", Reason::Reconciled, WAIT).await?;
    assert_eq!(operator_writes(&env, "configmaps", "app-identity")?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_writer_of_a_class_is_not_fought() -> TestResult {
    let (env, _operator) = start("fight-spc").await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    env.apply(&json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": "app-kv"}, "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop"}}}))?;
    bind(&env, "app", json!({"secretProviderClasses": ["app-kv"]}))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])?;
    let ours = client_id(&env, "app")?;
    let class_client_id = || -> Result<String, TestError> {
        let class = get(&env, "secretproviderclass", "app-kv")?;
        Ok(class["spec"]["parameters"]["clientID"].as_str().unwrap_or_default().to_string())
    };
    let fight = fight(
        &env,
        "app",
        Reason::SecretProviderClassConflict,
        || Ok(class_client_id()? == ours),
        |round| {
            let edit = json!({"spec": {"parameters": {"clientID": format!("00000000-0000-0000-0000-00000000000{round}")}}});
            env.kubectl(&["patch", "secretproviderclass", "app-kv", "--type=merge", "-p", &edit.to_string()])?;
            Ok(())
        },
    )
    .await?;
    two_more_reconciles(&env, "app", "secretproviderclasses", "app-kv").await?;
    let requests = operator_requests(&env, "secretproviderclasses", "app-kv")?;
    let writes: Vec<&str> = requests.iter().filter(|r| r.writes()).map(|r| r.verb.as_str()).collect();
    assert_eq!(fight, Fight { changes: 2, stalled: true }, "idbind wrote {writes:?}");
    assert_eq!(writes, ["patch", "patch"], "the wiring and one repair, nothing after");
    assert_eq!(class_client_id()?, "00000000-0000-0000-0000-000000000001", "the other writer's value stays");
    let message = env.message("app", SECRET_PROVIDER_CLASSES_READY)?;
    assert!(message.contains("kubectl-patch") && message.contains("does not fight"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_writer_removing_the_annotations_is_not_fought() -> TestResult {
    let (env, _operator) = start("fight-sa").await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    bind(&env, "app", json!({}))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])?;
    let ours = client_id(&env, "app")?;
    let annotation = || -> Result<String, TestError> {
        let sa = get(&env, "serviceaccount", "app")?;
        Ok(sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    // A controller that keeps the ServiceAccount's annotations to its own list, which lacks idbind's.
    let fight = fight(
        &env,
        "app",
        Reason::ServiceAccountAnnotatedByOthers,
        || Ok(annotation()? == ours),
        |_| {
            env.kubectl(&["annotate", "serviceaccount", "app", "azure.workload.identity/client-id-"])?;
            Ok(())
        },
    )
    .await?;
    two_more_reconciles(&env, "app", "serviceaccounts", "app").await?;
    let requests = operator_requests(&env, "serviceaccounts", "app")?;
    let writes: Vec<&str> = requests.iter().filter(|r| r.writes()).map(|r| r.verb.as_str()).collect();
    assert_eq!(fight, Fight { changes: 2, stalled: true }, "idbind wrote {writes:?}");
    assert_eq!(writes, ["patch", "patch"], "the annotation and one repair, nothing after");
    assert_eq!(annotation()?, "", "removed, and left so");
    let message = env.message("app", SERVICE_ACCOUNT_READY)?;
    assert!(message.contains("does not fight"), "{message}");
    Ok(())
}
