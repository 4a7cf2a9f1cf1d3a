//! The admission policy on the operator's own writes (config/rbac/operator_writes_policy.yaml), on the real
//! API server: requests made as the operator's ServiceAccount (`kubectl --as`), as a thief of its token would
//! make them. RBAC lets that ServiceAccount create, patch and delete any ConfigMap and patch any
//! SecretProviderClass; the policy lets through only what idbind does: its export ConfigMaps (labelled and
//! controlled by a binding, before and after), and `clientID`/`tenantId` of classes. Everyone else is not
//! held to it. That idbind's own writes pass under it is what every other end-to-end test shows: each runs
//! the operator with it installed.

use std::time::Duration;

use serde_json::{Value, json};

use idbind_testkit::e2e::{
    Env, TestError, TestResult, eventually, install_class_crd, install_operator_rbac, operator_namespace,
    operator_writes_policy, start_without_operator,
};

/// Runs kubectl as the operator's ServiceAccount: its output, or the API server's refusal.
fn as_operator(env: &Env, args: &[&str]) -> Result<Result<String, String>, TestError> {
    let user = format!("--as=system:serviceaccount:{}:operator", operator_namespace(&env.ns));
    let mut all = vec![user.as_str()];
    all.extend_from_slice(args);
    let out = env.plane.kubectl(&all).output()?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// Asserts that the policy (not RBAC) refused `answer`, for `why`.
fn refused_by_policy(env: &Env, answer: Result<String, String>, why: &str) {
    let policy = operator_writes_policy(&operator_namespace(&env.ns));
    match answer {
        Err(e) => assert!(
            e.contains(&format!("ValidatingAdmissionPolicy '{policy}'")),
            "{why}: refused, but not by the policy: {e}"
        ),
        Ok(out) => panic!("{why}: allowed ({out})"),
    }
}

/// A merge patch of `kind` `name` in `namespace`, as the operator's ServiceAccount.
fn patch_as_operator(
    env: &Env,
    kind: &str,
    name: &str,
    namespace: &str,
    patch: Value,
) -> Result<Result<String, String>, TestError> {
    as_operator(env, &["patch", kind, name, "-n", namespace, "--type=merge", "-p", &patch.to_string()])
}

/// `object` created from a file, as the operator's ServiceAccount.
fn create_as_operator(env: &Env, object: &Value) -> Result<Result<String, String>, TestError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let file = env.plane.dir().join(format!("{}-{name}.json", env.ns));
    std::fs::write(&file, object.to_string())?;
    as_operator(env, &["create", "-f", &file.display().to_string()])
}

/// An owner reference making a WorkloadIdentityBinding the controller, as idbind writes it.
fn binding_owner() -> Value {
    json!([{"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "name": "b",
            "uid": "00000000-0000-0000-0000-000000000001", "controller": true}])
}

/// Starts the control plane with the operator's RBAC and its admission policy (no operator runs: the test
/// makes its requests).
async fn start(prefix: &str) -> Result<Env, TestError> {
    let env = start_without_operator(prefix, |_| {}).await?;
    install_class_crd(env.plane)?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    Ok(env)
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_systems_and_other_namespaces_config_maps_are_out_of_the_operators_reach() -> TestResult {
    let env = start("op-admission-cm").await?;
    let other = env.other_namespace("op-admission-other")?;
    other.kubectl(&["create", "configmap", "team-settings", "--from-literal=mode=strict"])?;
    let kube_system = |args: &[&str]| {
        let mut all = vec!["-n", "kube-system"];
        all.extend_from_slice(args);
        env.plane.kubectl_ok(&all)
    };
    kube_system(&["create", "configmap", "cluster-settings", "--from-literal=a=b"])?;
    let label = json!({"labels": {"app.kubernetes.io/managed-by": "idbind"}});
    let dressed_up =
        json!({"labels": {"app.kubernetes.io/managed-by": "idbind"}, "ownerReferences": binding_owner()});
    let targets = [
        ("kube-system", "cluster-settings"),
        ("kube-system", "kube-root-ca.crt"),
        (other.ns.as_str(), "team-settings"),
    ];
    for (namespace, name) in targets {
        for (patch, why) in [
            (json!({"data": {"a": "stolen"}}), "a patch"),
            (json!({"metadata": label}), "idbind's label"),
            (json!({"metadata": dressed_up}), "dressed up as an export"),
        ] {
            let answer = patch_as_operator(&env, "configmap", name, namespace, patch)?;
            refused_by_policy(&env, answer, &format!("{namespace}/{name}: {why}"));
        }
        let deleted = as_operator(&env, &["delete", "configmap", name, "-n", namespace])?;
        refused_by_policy(&env, deleted, &format!("{namespace}/{name}: delete"));
    }
    for namespace in ["kube-system", env.ns.as_str()] {
        let planted =
            as_operator(&env, &["create", "configmap", "planted", "-n", namespace, "--from-literal=a=b"])?;
        refused_by_policy(&env, planted, &format!("a ConfigMap that is not an export in {namespace}"));
    }
    let settings: Value =
        serde_json::from_str(&kube_system(&["get", "configmap", "cluster-settings", "-o", "json"])?)?;
    assert_eq!(settings["data"], json!({"a": "b"}), "nothing of the refused writes landed");
    // Anyone else (an administrator here) is not held to it.
    kube_system(&["patch", "configmap", "cluster-settings", "--type=merge", "-p", r#"{"data":{"a":"c"}}"#])?;
    kube_system(&["delete", "configmap", "cluster-settings"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_keeps_its_export_config_maps_and_cannot_unmark_them() -> TestResult {
    let env = start("op-admission-export").await?;
    let ns = env.ns.as_str();
    let export = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ids", "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "idbind"},
                     "ownerReferences": binding_owner()},
        "data": {"clientId": "c"}});
    let created = create_as_operator(&env, &export)?;
    assert!(created.is_ok(), "the operator creates its export ConfigMap: {created:?}");
    let kept = patch_as_operator(&env, "configmap", "ids", ns, json!({"data": {"clientId": "d"}}))?;
    assert!(kept.is_ok(), "the operator keeps it: {kept:?}");
    for (patch, why) in [
        (json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}), "taking the label off"),
        (json!({"metadata": {"ownerReferences": null}}), "taking the owner off"),
    ] {
        refused_by_policy(&env, patch_as_operator(&env, "configmap", "ids", ns, patch)?, why);
    }
    let mut unowned = export.clone();
    unowned["metadata"]["name"] = json!("unowned");
    unowned["metadata"]["ownerReferences"].take();
    refused_by_policy(&env, create_as_operator(&env, &unowned)?, "labelled but no binding's");
    let deleted = as_operator(&env, &["delete", "configmap", "ids", "-n", ns])?;
    assert!(deleted.is_ok(), "the operator deletes it: {deleted:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_may_change_only_the_two_ids_of_a_class_and_never_create_or_delete_one() -> TestResult {
    let env = start("op-admission-spc").await?;
    let ns = env.ns.as_str();
    env.apply(&json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": "kv", "labels": {"team": "shop"}},
        "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop"},
                 "secretObjects": [{"secretName": "db", "type": "Opaque",
                                    "data": [{"objectName": "db", "key": "password"}]}]}}))?;
    let class = |patch| patch_as_operator(&env, "secretproviderclass", "kv", ns, patch);
    let wired = class(json!({"spec": {"parameters": {"clientID": "c", "tenantId": "t"}}}))?;
    assert!(wired.is_ok(), "the operator sets clientID and tenantId: {wired:?}");
    let released = class(json!({"spec": {"parameters": {"clientID": null, "tenantId": null}}}))?;
    assert!(released.is_ok(), "the operator takes them back: {released:?}");
    for (patch, why) in [
        (json!({"spec": {"parameters": {"keyvaultName": "kv-other"}}}), "another parameter"),
        (json!({"spec": {"parameters": {"keyvaultName": null}}}), "another parameter removed"),
        (
            json!({"spec": {"parameters": {"clientID": "c", "objects": "array: []"}}}),
            "one added with clientID",
        ),
        (json!({"spec": {"provider": "vault"}}), "the provider"),
        (json!({"spec": {"secretObjects": []}}), "secretObjects"),
        (json!({"metadata": {"labels": {"team": "other"}}}), "a label"),
        (json!({"metadata": {"annotations": {"note": "x"}}}), "an annotation"),
        (json!({"metadata": {"finalizers": ["example.com/hold"]}}), "a finalizer"),
    ] {
        refused_by_policy(&env, class(patch)?, why);
    }
    // RBAC grants neither create nor delete; widened to, the policy still refuses both.
    let widened = format!("{ns}-widened");
    let resource = "secretproviderclasses.secrets-store.csi.x-k8s.io";
    env.plane.kubectl_ok(&[
        "create",
        "clusterrole",
        &widened,
        "--verb=create,delete",
        &format!("--resource={resource}"),
    ])?;
    let subject = format!("--serviceaccount={}:operator", operator_namespace(ns));
    env.plane.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &widened,
        &format!("--clusterrole={widened}"),
        &subject,
    ])?;
    eventually("the widened RBAC", Duration::from_secs(30), || {
        let answer = as_operator(&env, &["auth", "can-i", "delete", resource, "-n", ns])?;
        Ok(answer.is_ok_and(|a| a.trim() == "yes").then_some(()))
    })
    .await?;
    let planted = json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": "planted", "namespace": ns}, "spec": {"provider": "azure"}});
    refused_by_policy(&env, create_as_operator(&env, &planted)?, "creating a class");
    refused_by_policy(
        &env,
        as_operator(&env, &["delete", "secretproviderclass", "kv", "-n", ns])?,
        "deleting one",
    );
    let now: Value =
        serde_json::from_str(&env.kubectl(&["get", "secretproviderclass", "kv", "-o", "json"])?)?;
    assert_eq!(now["spec"]["parameters"], json!({"keyvaultName": "kv-shop"}), "nothing refused landed");
    // Anyone else is not held to it.
    env.kubectl(&[
        "patch",
        "secretproviderclass",
        "kv",
        "--type=merge",
        "-p",
        r#"{"spec":{"provider":"vault"}}"#,
    ])?;
    Ok(())
}
