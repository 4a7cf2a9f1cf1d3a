//! `idbind plan`: the writes a binding would cause, read from Azure without writing to it.

use std::sync::Arc;

mod common;

use common::e2e::{
    APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestError, TestResult, settings, start, start_without_operator,
};
use idbind::{
    api::binding::{KeyVaultAccess, WorkloadIdentityBinding, WorkloadIdentityBindingSpec},
    azure::governed::Governed,
    core::plan::Action,
    core::settings::Ceiling,
    reconcile::{DryRun, dry_run},
};

fn binding(ns: &str, name: &str, roles: &[&str]) -> WorkloadIdentityBinding {
    let spec = WorkloadIdentityBindingSpec {
        service_account_name: name.into(),
        key_vaults: vec![KeyVaultAccess {
            name: Some("kv-shop".into()),
            resource_group: Some(KV_RG.into()),
            roles: roles.iter().map(ToString::to_string).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut b = WorkloadIdentityBinding::new(name, spec);
    b.metadata.namespace = Some(ns.into());
    b
}

/// The ARM client a plan reads Azure with (no request budget), signed in as the operator.
fn azure(env: &Env) -> Result<Governed, TestError> {
    Ok(Governed::new(Arc::new(common::arm_api(&env.sim, APP_ID, APP_SECRET)?), None, None))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_binding_plans_its_identity_fic_and_role_assignment_and_writes_nothing() -> TestResult {
    let env = start_without_operator("dry-run-new", |_| {}).await?;
    let azure = azure(&env)?;
    let settings = settings(env.plane);
    let writes = env.writes();

    // A new binding: the identity, its FIC and the role assignment, in that order.
    match dry_run(
        &azure,
        &settings,
        &Ceiling::default(),
        None,
        &binding(&env.ns, "planned", &["Key Vault Secrets User"]),
    )
    .await
    {
        DryRun::Writes(w) => {
            assert!(
                matches!(
                    w.as_slice(),
                    [
                        Action::PutIdentity { .. },
                        Action::PutFederatedCredential { .. },
                        Action::CreateRoleAssignment { .. }
                    ]
                ),
                "{w:?}"
            );
        }
        other => return Err(format!("expected writes, got {other:?}").into()),
    }
    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_input_plans_nothing_and_says_why() -> TestResult {
    let env = start_without_operator("dry-run-refused", |_| {}).await?;
    let azure = azure(&env)?;
    let settings = settings(env.plane);
    let writes = env.writes();

    // Refused input says why, still without a write.
    assert!(
        matches!(dry_run(&azure, &settings, &Ceiling::default(), None, &binding(&env.ns, "owner", &["Owner"])).await, DryRun::Invalid(ref p) if p[0].field == "spec.keyVaults[0].roles[0]")
    );
    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_converged_binding_plans_nothing() -> TestResult {
    let env = start("dry-run-live").await?;
    let azure = azure(&env)?;
    let settings = settings(env.plane);
    let writes = env.writes();

    // A converged binding plans nothing.
    env.ready_binding("live", &["Key Vault Secrets User"])?;
    let live: WorkloadIdentityBinding =
        serde_json::from_str(&env.kubectl(&["get", "wib", "live", "-o", "json"])?)?;
    assert!(
        matches!(dry_run(&azure, &settings, &Ceiling::default(), None, &live).await, DryRun::Writes(ref w) if w.is_empty())
    );
    assert_eq!(env.writes(), writes + 3, "only the live binding's three writes happened");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_the_plan_of_a_manifest_file() -> TestResult {
    let env = start_without_operator("dry-run-cli", |_| {}).await?;
    let writes = env.writes();

    // The CLI prints the same, from a manifest file.
    let dir = env.plane.dir().join("dry-run");
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, env.sim.ca_pem().ok_or("no CA")?)?;
    let manifest = dir.join("binding.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&binding(&env.ns, "from-file", &["Key Vault Reader"]))?)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idbind"))
        .args(["plan", "-f"])
        .arg(&manifest)
        .env_clear()
        .env("HOME", &dir)
        .envs([
            ("IDBIND_CLUSTER_NAME", "e2e"),
            ("IDBIND_OIDC_ISSUER", env.plane.server()),
            ("AZURE_SUBSCRIPTION_ID", SUB),
            ("AZURE_TENANT_ID", env.sim.tenant_id()),
            ("AZURE_CLIENT_ID", APP_ID),
            ("AZURE_CLIENT_SECRET", APP_SECRET),
        ])
        .envs([
            ("IDBIND_RESOURCE_GROUP", RG),
            ("IDBIND_LOCATION", "westeurope"),
            ("IDBIND_CLOUD", "custom"),
            ("IDBIND_ARM_ENDPOINT", env.sim.https_url().ok_or("no HTTPS")?),
        ])
        .env("IDBIND_AUTHORITY_HOST", env.sim.authority_host().ok_or("no authority")?)
        .env("IDBIND_CA_FILE", &ca)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "changes:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["put identity", "put federated credential", "create role assignment", "Key Vault Reader"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}
