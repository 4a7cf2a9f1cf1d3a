//! Crash consistency: the operator (a real `idbind run` process) is killed at every distinct point of a
//! binding's life, restarted, and must converge with no duplicate identity, FIC or role assignment, and leave
//! nothing behind after delete.
//!
//! Azure writes are interrupted from the simulator's side: it holds the first matching write either before it
//! changes anything or after it did but before it answers, and the test SIGKILLs the operator while it waits
//! for that answer. The status write is interrupted by the operator's own crash point (`IDBIND_CRASH_AT`),
//! which aborts the process just before or just after it.

use std::time::Duration;

use idbind::core::conditions::EXPORT_READY;
use idbind::core::reason::Reason;
use idbind_sim::{HoldPhase, HoldSpec};
use idbind_testkit::{
    e2e::{
        Env, KV_RG, TestError, TestResult, eventually, identities, install_operator_rbac,
        start_without_operator,
    },
    process::Operator,
};
use serde_json::json;

const CREATE_WRITES: [&str; 3] = [
    "UserAssignedIdentities_CreateOrUpdate",
    "FederatedIdentityCredentials_CreateOrUpdate",
    "RoleAssignments_Create",
];
const DELETE_WRITES: [&str; 3] =
    ["RoleAssignments_Delete", "FederatedIdentityCredentials_Delete", "UserAssignedIdentities_Delete"];

fn apply_binding(env: &Env, name: &str) -> TestResult {
    env.kubectl(&["create", "serviceaccount", name])?;
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
                      "spec": {"serviceAccountName": name, "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}}))
}

/// Exactly one identity tagged for `binding`, with exactly one FIC, and exactly one role assignment for its
/// principal; or, with `gone`, none of them.
fn azure_holds_exactly(env: &Env, binding: &str, gone: bool) -> Result<(), TestError> {
    let state = env.sim.state_typed();
    let ours: Vec<_> = identities(&state)
        .into_iter()
        .filter(|i| i.tags.get("idbind.dev.binding").map(String::as_str) == Some(binding))
        .collect();
    if gone {
        if !ours.is_empty() {
            return Err(format!(
                "{binding}: identity left behind: {:?}",
                ours.iter().map(|i| &i.name).collect::<Vec<_>>()
            )
            .into());
        }
        // Role assignments of a deleted identity would stay as orphans: none may remain for a principal that
        // no identity has.
        let principals: Vec<String> = identities(&state).iter().map(|i| i.principal_id.clone()).collect();
        let orphans: Vec<_> =
            idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID)
                .into_iter()
                .filter(|ra| !principals.contains(&ra.principal_id))
                .map(|ra| ra.name.clone())
                .collect();
        return if orphans.is_empty() {
            Ok(())
        } else {
            Err(format!("{binding}: orphaned role assignments {orphans:?}").into())
        };
    }
    let [identity] = ours.as_slice() else {
        return Err(format!("{binding}: {} identities", ours.len()).into());
    };
    if identity.federated_identity_credentials.len() != 1 {
        return Err(format!("{binding}: {} FICs", identity.federated_identity_credentials.len()).into());
    }
    let assignments =
        state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id).count();
    if assignments != 1 {
        return Err(format!("{binding}: {assignments} role assignments").into());
    }
    Ok(())
}

/// Holds `operation`'s next write in `phase`, starts an operator, kills it once the write is held, lets the
/// write finish (or not) into the void, and starts a fresh operator.
async fn crash_during(
    env: &Env,
    label: &str,
    operation: &str,
    phase: HoldPhase,
    trigger: impl FnOnce() -> TestResult,
) -> Result<Operator, TestError> {
    env.sim.hold(HoldSpec { operation: Some(operation.into()), path_contains: None, nth: Some(1), phase });
    let operator = Operator::start(env, &format!("{label}-first"), &[])?;
    trigger()?;
    if !env.sim.wait_for_held(1, Duration::from_secs(60)).await {
        return Err(
            format!("{label}: {operation} was never held; operator log:\n{}", operator.log_text()).into()
        );
    }
    operator.kill()?;
    // The write goes on without anyone waiting for its answer (before commit: it commits now; after commit:
    // only its answer is lost), as a request in flight at a crash would.
    env.sim.release_all_holds();
    Operator::start(env, &format!("{label}-second"), &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_every_step_it_converges_without_duplicates_and_cleans_up() -> TestResult {
    let env = start_without_operator("crash", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let mut crashes = 0;

    // Creation: killed around each Azure write, in both phases.
    for (i, operation) in CREATE_WRITES.iter().enumerate() {
        for (p, phase) in [HoldPhase::BeforeCommit, HoldPhase::AfterCommit].into_iter().enumerate() {
            let name = format!("create-{i}-{p}");
            let restarted =
                crash_during(&env, &name, operation, phase, || apply_binding(&env, &name)).await?;
            env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")])
                .map_err(|e| {
                    format!("{name} after a crash at {operation} ({phase:?}): {e}\n{}", restarted.log_text())
                })?;
            azure_holds_exactly(&env, &name, false)?;
            restarted.kill()?;
            crashes += 1;
        }
    }

    // Creation: killed just before and just after the status write.
    for point in
        [idbind::reconcile::failpoint::BEFORE_STATUS_WRITE, idbind::reconcile::failpoint::AFTER_STATUS_WRITE]
    {
        let name = format!("status-{point}");
        let mut crashing = Operator::start(&env, &name, &[("IDBIND_CRASH_AT", point)])?;
        apply_binding(&env, &name)?;
        let status = crashing.wait_exit(Duration::from_secs(90))?;
        assert!(!status.success(), "{name}: the operator should have aborted at {point}");
        let restarted = Operator::start(&env, &format!("{name}-second"), &[])?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")])?;
        azure_holds_exactly(&env, &name, false)?;
        restarted.kill()?;
        crashes += 1;
    }

    // Deletion: killed around each Azure delete, in both phases, on the bindings made above.
    let mut victims = vec![];
    for (i, _) in CREATE_WRITES.iter().enumerate() {
        victims.push(format!("create-{i}-0"));
        victims.push(format!("create-{i}-1"));
    }
    let mut next = victims.into_iter();
    for operation in DELETE_WRITES {
        for phase in [HoldPhase::BeforeCommit, HoldPhase::AfterCommit] {
            let name = next.next().ok_or("more crash points than bindings")?;
            let label = format!("delete-{name}-{operation}-{phase:?}");
            let restarted = crash_during(&env, &label, operation, phase, || {
                env.kubectl(&["delete", "wib", &name, "--wait=false"])?;
                Ok(())
            })
            .await?;
            eventually(
                &format!("{name} deleted after a crash at {operation} ({phase:?})"),
                Duration::from_secs(90),
                || {
                    let left = env.kubectl(&["get", "wib", "-o", "name"])?;
                    Ok((!left.lines().any(|l| l == format!("workloadidentitybinding.idbind.dev/{name}")))
                        .then_some(()))
                },
            )
            .await
            .map_err(|e| format!("{e}\n{}", restarted.log_text()))?;
            azure_holds_exactly(&env, &name, true)?;
            restarted.kill()?;
            crashes += 1;
        }
    }

    // What is left is exactly what the remaining bindings ask for.
    let remaining = ["status-before-status-write", "status-after-status-write"];
    for name in remaining {
        azure_holds_exactly(&env, name, false)?;
    }
    assert_eq!(identities(&env.sim.state_typed()).len(), remaining.len(), "no other identity exists");
    eprintln!("crash consistency: {crashes} crash points, each converged with no duplicate and no orphan");
    assert_eq!(crashes, 14);
    Ok(())
}

/// The ConfigMap of `spec.export` is created before the binding's status records its UID (the proof that
/// idbind made it): killed between the two, the operator must neither lose track of the ConfigMap it made nor
/// take for its own one that someone changed meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn killed_between_the_export_create_and_its_record_it_neither_orphans_nor_adopts_a_changed_one()
-> TestResult {
    let env = start_without_operator("crash-export", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let point = idbind::reconcile::failpoint::AFTER_EXPORT_CREATE;
    let recorded_uid = |binding: &str| -> Result<String, TestError> {
        let b: serde_json::Value =
            serde_json::from_str(&env.kubectl(&["get", "wib", binding, "-o", "json"])?)?;
        let written = b["status"]["written"].as_array().cloned().unwrap_or_default();
        let record = written.iter().find(|w| w["kind"] == "ConfigMap").cloned().unwrap_or_default();
        Ok(record["uid"].as_str().unwrap_or_default().to_string())
    };
    let config_map_uid =
        |name: &str| env.kubectl(&["get", "configmap", name, "-o", "jsonpath={.metadata.uid}"]);
    for (name, changed_meanwhile) in [("untouched", false), ("changed", true)] {
        let mut crashing = Operator::start(&env, &format!("export-{name}"), &[("IDBIND_CRASH_AT", point)])?;
        apply_binding(&env, name)?;
        let export = json!({"spec": {"export": {"configMapName": format!("{name}-ids")}}});
        env.kubectl(&["patch", "wib", name, "--type=merge", "-p", &export.to_string()])?;
        let status = crashing.wait_exit(Duration::from_secs(90))?;
        assert!(!status.success(), "{name}: the operator should have aborted at {point}");
        let made = config_map_uid(&format!("{name}-ids"))?;
        assert!(!made.is_empty(), "{name}: the ConfigMap was created before the crash");
        assert_eq!(recorded_uid(name)?, "", "{name}: the status has no record of it yet");
        if changed_meanwhile {
            let edit = json!({"data": {"note": "added while the operator was down"}});
            env.kubectl(&[
                "patch",
                "configmap",
                &format!("{name}-ids"),
                "--type=merge",
                "-p",
                &edit.to_string(),
            ])?;
        }
        let restarted = Operator::start(&env, &format!("export-{name}-second"), &[])?;
        if changed_meanwhile {
            // Indistinguishable from a ConfigMap a tenant dressed up as the binding's: left alone, and the
            // message says how to get a new one.
            env.kubectl(&["wait", "--for=condition=Stalled", "--timeout=90s", &format!("wib/{name}")])
                .map_err(|e| format!("{e}\n{}", restarted.log_text()))?;
            assert_eq!(env.condition(name, EXPORT_READY)?, ("False".into(), Reason::ExportConflict.into()));
            let data =
                env.kubectl(&["get", "configmap", &format!("{name}-ids"), "-o", "jsonpath={.data.note}"])?;
            assert_eq!(data, "added while the operator was down", "{name}: the ConfigMap was written");
            env.kubectl(&["delete", "configmap", &format!("{name}-ids")])?;
        }
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")])
            .map_err(|e| format!("{name}: {e}\n{}", restarted.log_text()))?;
        let now = config_map_uid(&format!("{name}-ids"))?;
        assert_eq!(recorded_uid(name)?, now, "{name}: the status records the ConfigMap's UID");
        if !changed_meanwhile {
            assert_eq!(now, made, "{name}: the ConfigMap made before the crash is the binding's");
        }
        azure_holds_exactly(&env, name, false)?;
        restarted.kill()?;
    }
    Ok(())
}
