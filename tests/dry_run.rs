//! `idbind plan`: the writes a binding would cause, read from Azure without writing to it; and the CLI as a
//! CI job runs it: the operator's ConfigMap through the kubeconfig, multi-document manifests, the API
//! server's schema check, the policies, and an exit code to gate on.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use idbind::core::reason::Reason;
use idbind::{
    api::binding::{KeyVaultAccess, WorkloadIdentityBinding, WorkloadIdentityBindingSpec},
    azure::governed::Governed,
    core::grants::{self, role_assignments},
    core::plan::Action,
    core::settings::Ceiling,
    reconcile::{DryRun, dry_run},
};
use idbind_testkit::e2e::{
    APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestError, TestResult, apply_cluster, operator_namespace,
    settings, start, start_without_operator,
};
use serde_json::{Value, json};

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
    Ok(Governed::new(Arc::new(idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?), None, None))
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
                        Action::Grant(grants::Change::RoleAssignment(
                            role_assignments::Change::Create { .. }
                        ))
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
    let owner = binding(&env.ns, "owner", &["Owner"]);
    assert!(
        matches!(dry_run(&azure, &settings, &Ceiling::default(), None, &owner).await, DryRun::Invalid(ref p) if p[0].field == "spec.keyVaults[0].roles[0]")
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

/// A binding manifest as a user writes it: `roles` on kv-shop.
fn manifest(ns: &str, name: &str, roles: &[&str]) -> Value {
    json!({
        "apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceAccountName": name, "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": roles}]},
    })
}

fn service_account(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

/// The documents as one multi-document YAML file, in the test's folder.
fn write_manifests(env: &Env, file: &str, documents: &[Value]) -> Result<PathBuf, TestError> {
    let path = folder(env)?.join(file);
    let texts = documents.iter().map(serde_yaml::to_string).collect::<Result<Vec<_>, _>>()?;
    std::fs::write(&path, texts.join("---\n"))?;
    Ok(path)
}

fn folder(env: &Env) -> Result<PathBuf, TestError> {
    let dir = env.plane.dir().join("dry-run").join(&env.ns);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn home(env: &Env) -> Result<PathBuf, TestError> {
    let dir = folder(env)?.join("home");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The operator's ConfigMap as an install holds it, in [`operator_namespace`]: this cluster's settings, the
/// simulator as the cloud, and what only the operator's pod uses (its credential kind, a CA path inside it),
/// which a plan must leave aside. Returns the namespace.
fn install_config_map(env: &Env, location: &str) -> Result<String, TestError> {
    let op_ns = operator_namespace(&env.ns);
    let data = json!({
        "IDBIND_CLUSTER_NAME": "e2e",
        "IDBIND_OIDC_ISSUER": env.plane.server(),
        "AZURE_SUBSCRIPTION_ID": SUB,
        "AZURE_TENANT_ID": env.sim.tenant_id(),
        "IDBIND_RESOURCE_GROUP": RG,
        "IDBIND_LOCATION": location,
        "IDBIND_CLOUD": "custom",
        "IDBIND_ARM_ENDPOINT": env.sim.https_url().ok_or("no HTTPS")?,
        "IDBIND_AUTHORITY_HOST": env.sim.authority_host().ok_or("no authority")?,
        "IDBIND_CREDENTIAL": "workload-identity",
        "IDBIND_CA_FILE": "/etc/idbind/ca/ca.pem",
        "IDBIND_CONCURRENCY": "8",
        "IDBIND_ALLOW_ANY_ROLE": "false",
    });
    apply_cluster(
        env.plane,
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": op_ns}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "idbind-config", "namespace": op_ns}, "data": data},
        ]}),
    )?;
    Ok(op_ns)
}

/// What a CI job gives `idbind plan`: the kubeconfig (as admin here) and its own Azure sign-in (the
/// operator's app with a secret, trusting the simulator's CA), nothing else.
fn ci_environment(env: &Env) -> Result<Vec<(String, String)>, TestError> {
    let ca = folder(env)?.join("ca.pem");
    std::fs::write(&ca, env.sim.ca_pem().ok_or("no CA")?)?;
    Ok([
        ("KUBECONFIG", env.plane.kubeconfig().display().to_string()),
        ("AZURE_CLIENT_ID", APP_ID.into()),
        ("AZURE_CLIENT_SECRET", APP_SECRET.into()),
        ("IDBIND_CA_FILE", ca.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// An `idbind plan` that ran: its exit code and output.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// `idbind plan <args>` with exactly `environment` (and `stdin`, if any), and an empty home folder: no
/// `~/.kube/config` of the machine's is read.
fn idbind_plan(
    env: &Env,
    args: &[&str],
    environment: &[(String, String)],
    stdin: Option<&str>,
) -> Result<Ran, TestError> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idbind"))
        .arg("plan")
        .args(args)
        .env_clear()
        .env("HOME", home(env)?)
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(stdin.unwrap_or_default().as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// The table's row of `ns/name` (its first line).
fn row<'a>(ran: &'a Ran, ns: &str, name: &str) -> &'a str {
    let key = format!("{ns}/{name} ");
    ran.stdout.lines().find(|l| l.starts_with(&key)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_document_file_is_planned_binding_by_binding_with_the_config_map_s_settings() -> TestResult {
    let env = start_without_operator("plan-multi", |_| {}).await?;
    let op_ns = install_config_map(&env, "westeurope")?;
    apply_cluster(env.plane, &idbind_testkit::e2e::team_policy(&env.ns))?;
    let ci = ci_environment(&env)?;
    let writes = env.writes();
    let ns = env.ns.as_str();
    let file = write_manifests(
        &env,
        "app.yaml",
        &[
            service_account(ns, "payments"),
            manifest(ns, "payments", &["Key Vault Secrets User"]),
            manifest(ns, "reports", &["Key Vault Reader"]),
        ],
    )?;

    // Settings only from the ConfigMap (the environment names no cluster, issuer or subscription), but the
    // location from a flag, which wins over the ConfigMap's.
    let args = ["-f", path(&file), "--operator-namespace", &op_ns, "--location", "northeurope"];
    let ran = idbind_plan(&env, &args, &ci, None)?;
    assert_eq!(ran.code, Some(2), "new bindings are changes:\n{ran}");
    assert!(ran.stderr.contains("ignored 1 ServiceAccount"), "{ran}");
    assert!(ran.stderr.contains(&format!("settings from ConfigMap {op_ns}/idbind-config")), "{ran}");
    for name in ["payments", "reports"] {
        assert!(row(&ran, ns, name).contains(" changes "), "{name}:\n{ran}");
    }
    for needle in ["put identity", "in northeurope", "idbind.dev.cluster=e2e", "put federated credential"] {
        assert!(ran.stdout.contains(needle), "missing {needle:?}:\n{ran}");
    }
    assert!(
        ran.stdout.contains("Key Vault Secrets User") && ran.stdout.contains("Key Vault Reader"),
        "{ran}"
    );
    assert!(!ran.stdout.contains("westeurope"), "the flag overrides the ConfigMap:\n{ran}");

    // The same as a JSON document.
    let ran = idbind_plan(&env, &[&args[..], &["-o", "json"]].concat(), &ci, None)?;
    assert_eq!(ran.code, Some(2), "{ran}");
    let document: Value = serde_json::from_str(&ran.stdout)?;
    let bindings = document["bindings"].as_array().ok_or("no bindings")?;
    let names: Vec<(&str, &str, &str)> = bindings
        .iter()
        .map(|b| {
            let text = |field: &str| b[field].as_str().unwrap_or_default();
            (text("namespace"), text("name"), text("result"))
        })
        .collect();
    assert_eq!(names, [(ns, "payments", "changes"), (ns, "reports", "changes")]);
    for b in bindings {
        let writes: Vec<&str> =
            b["writes"].as_array().ok_or("no writes")?.iter().filter_map(Value::as_str).collect();
        assert!(writes.len() == 3 && writes[0].starts_with("put identity "), "{writes:?}");
        assert!(writes[2].starts_with("create role assignment "), "{writes:?}");
        assert_eq!(b["problems"], json!([]));
    }
    assert_eq!(document["ignored"], json!([{"kind": "ServiceAccount", "count": 1}]));
    let config_map = format!("{op_ns}/idbind-config");
    assert_eq!(document["checks"], json!({"configMap": config_map, "schema": true, "policies": true}));

    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exit_code_is_0_for_no_changes_2_for_changes_and_1_for_a_refusal() -> TestResult {
    let env = start("plan-exit").await?;
    let op_ns = install_config_map(&env, "westeurope")?;
    let ci = ci_environment(&env)?;
    let ns = env.ns.as_str();
    env.ready_binding("live", &["Key Vault Secrets User"])?;
    let writes = env.writes();
    let live = manifest(ns, "live", &["Key Vault Secrets User"]);
    let plan = |file: &str, documents: &[Value]| -> Result<Ran, TestError> {
        let file = write_manifests(&env, file, documents)?;
        idbind_plan(&env, &["-f", path(&file), "--operator-namespace", &op_ns], &ci, None)
    };

    // The manifest of a converged binding, as applied (no UID: the live object's is used): nothing to do.
    let ran = plan("live.yaml", std::slice::from_ref(&live))?;
    assert_eq!(ran.code, Some(0), "{ran}");
    assert!(row(&ran, ns, "live").contains("no-changes"), "{ran}");

    // A role added to it, or a new binding beside it: changes.
    let ran = plan("edited.yaml", &[manifest(ns, "live", &["Key Vault Secrets User", "Key Vault Reader"])])?;
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(
        ran.stdout.contains("create role assignment") && ran.stdout.contains("Key Vault Reader"),
        "{ran}"
    );
    let ran = plan("new.yaml", &[live.clone(), manifest(ns, "new", &["Key Vault Reader"])])?;
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(
        row(&ran, ns, "live").contains("no-changes") && row(&ran, ns, "new").contains("changes"),
        "{ran}"
    );

    // Any refusal fails the plan, whatever the others say.
    let ran = plan("owner.yaml", &[live, manifest(ns, "owner", &["Owner"])])?;
    assert_eq!(ran.code, Some(1), "{ran}");
    let refused = row(&ran, ns, "owner");
    assert!(
        refused.contains("refused")
            && refused.contains(&format!("{}: spec.keyVaults[0].roles[0]", Reason::PolicyViolation)),
        "{ran}"
    );

    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_refuses_a_role_fails_the_plan_and_is_named() -> TestResult {
    let env = start_without_operator("plan-policy", |_| {}).await?;
    let op_ns = install_config_map(&env, "westeurope")?;
    let ci = ci_environment(&env)?;
    let ns = env.ns.as_str();
    let policy = format!("{ns}-readers");
    apply_cluster(
        env.plane,
        &json!({
            "apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy", "metadata": {"name": policy},
            "spec": {"namespaces": [ns], "keyVaults": [{"resourceGroup": KV_RG}], "roles": ["Key Vault Reader"]},
        }),
    )?;
    let plan = |file: &str, roles: &[&str], extra: &[&str]| -> Result<Ran, TestError> {
        let file = write_manifests(&env, file, &[manifest(ns, "app", roles)])?;
        idbind_plan(&env, &[&["-f", path(&file), "--operator-namespace", &op_ns], extra].concat(), &ci, None)
    };

    // The ceiling allows Key Vault Secrets User; the policy for this namespace does not.
    let ran = plan("secrets.yaml", &["Key Vault Secrets User"], &[])?;
    assert_eq!(ran.code, Some(1), "{ran}");
    let refused = row(&ran, ns, "app");
    assert!(
        refused.contains("refused")
            && refused.contains(&format!("{}: spec.keyVaults[0].roles[0]", Reason::PolicyViolation)),
        "{ran}"
    );
    assert!(refused.contains(&policy), "the refusal names the policy:\n{ran}");
    // What it allows is planned.
    let ran = plan("reader.yaml", &["Key Vault Reader"], &[])?;
    assert_eq!(ran.code, Some(2), "{ran}");

    // Without the cluster the policies are not consulted, and the plan says so.
    let offline: Vec<(String, String)> = ci
        .iter()
        .filter(|(k, _)| k != "KUBECONFIG")
        .cloned()
        .chain(
            [
                ("IDBIND_CLUSTER_NAME", "e2e"),
                ("IDBIND_OIDC_ISSUER", env.plane.server()),
                ("AZURE_SUBSCRIPTION_ID", SUB),
                ("AZURE_TENANT_ID", env.sim.tenant_id()),
                ("IDBIND_RESOURCE_GROUP", RG),
                ("IDBIND_LOCATION", "westeurope"),
                ("IDBIND_CLOUD", "custom"),
                ("IDBIND_ARM_ENDPOINT", env.sim.https_url().ok_or("no HTTPS")?),
                ("IDBIND_AUTHORITY_HOST", &env.sim.authority_host().ok_or("no authority")?),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect();
    let file = write_manifests(&env, "secrets.yaml", &[manifest(ns, "app", &["Key Vault Secrets User"])])?;
    let ran = idbind_plan(&env, &["-f", path(&file), "--no-cluster", "-o", "json"], &offline, None)?;
    assert!(ran.stderr.contains("planning without the cluster: --no-cluster"), "{ran}");
    let document: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(document["checks"], json!({"configMap": null, "schema": false, "policies": false}), "{ran}");
    assert_eq!(ran.code, Some(2), "{ran}");

    env.plane.kubectl_ok(&["delete", "workloadidentitypolicy", &policy])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_rejects_what_the_schema_refuses() -> TestResult {
    let env = start_without_operator("plan-schema", |_| {}).await?;
    let op_ns = install_config_map(&env, "westeurope")?;
    apply_cluster(env.plane, &idbind_testkit::e2e::team_policy(&env.ns))?;
    let ci = ci_environment(&env)?;
    let writes = env.writes();
    let ns = env.ns.as_str();
    // The same vault twice (a CEL rule of the CRD refuses it; idbind's own validation never sees it), a
    // version the CRD does not serve, and a binding that is fine.
    let mut twice = manifest(ns, "twice", &["Key Vault Reader"]);
    twice["spec"]["keyVaults"] = json!([
        {"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Reader"]},
        {"name": "KV-SHOP", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]},
    ]);
    let mut future = manifest(ns, "future", &["Key Vault Reader"]);
    future["apiVersion"] = json!("idbind.dev/v1");
    let fine = manifest(ns, "fine", &["Key Vault Reader"]);
    let file = write_manifests(&env, "schema.yaml", &[twice, future, fine.clone()])?;

    let ran =
        idbind_plan(&env, &["-f", path(&file), "--operator-namespace", &op_ns, "-o", "json"], &ci, None)?;
    assert_eq!(ran.code, Some(1), "{ran}");
    let document: Value = serde_json::from_str(&ran.stdout)?;
    let result = |i: usize| document["bindings"][i]["result"].as_str().unwrap_or_default().to_string();
    assert_eq!([result(0), result(1), result(2)], ["rejected", "rejected", "changes"], "{ran}");
    let problem = |i: usize| document["bindings"][i]["problems"][0].clone();
    assert_eq!(problem(0)["reason"], Reason::SchemaRejected.as_str(), "{ran}");
    assert_eq!(problem(0)["field"], "spec.keyVaults", "{ran}");
    let message = problem(0)["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("must not list the same vault twice"), "the API server's message:\n{ran}");
    assert_eq!(problem(1)["reason"], Reason::SchemaRejected.as_str(), "{ran}");
    assert!(problem(1)["message"].as_str().unwrap_or_default().contains("idbind.dev/v1"), "{ran}");

    assert_eq!(document["checks"]["schema"], true, "{ran}");
    let ran = idbind_plan(&env, &["-f", path(&file), "--operator-namespace", &op_ns], &ci, None)?;
    assert!(
        row(&ran, ns, "twice").contains(&format!("rejected    {}: spec.keyVaults: ", Reason::SchemaRejected)),
        "{ran}"
    );

    // A binding whose namespace the same manifests create: the API server has nowhere to check it, so it is
    // planned as read, and the plan says that the schema was not checked for every binding.
    let new_ns = format!("{ns}-new");
    apply_cluster(env.plane, &idbind_testkit::e2e::team_policy(&new_ns))?;
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_ns}});
    let file = write_manifests(
        &env,
        "new-namespace.yaml",
        &[namespace, fine, manifest(&new_ns, "first", &["Key Vault Reader"])],
    )?;
    let ran =
        idbind_plan(&env, &["-f", path(&file), "--operator-namespace", &op_ns, "-o", "json"], &ci, None)?;
    assert_eq!(ran.code, Some(2), "{ran}");
    assert!(ran.stderr.contains(&format!("namespace {new_ns} does not exist yet")), "{ran}");
    let document: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(document["bindings"][1]["result"], "changes", "{ran}");
    assert_eq!(document["checks"]["schema"], false, "{ran}");
    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_printed_without_any_azure_credential() -> TestResult {
    let env = start_without_operator("plan-no-credential", |_| {}).await?;
    let op_ns = install_config_map(&env, "westeurope")?;
    let ns = env.ns.as_str();
    let before = env.sim.counters();
    let documents = [service_account(ns, "app"), manifest(ns, "app", &["Owner"])];
    let stdin = documents.iter().map(serde_yaml::to_string).collect::<Result<Vec<_>, _>>()?.join("---\n");

    // Only the kubeconfig: no Azure variable, no CA, no credential of any kind; the manifests on stdin.
    let kubeconfig = [("KUBECONFIG".to_string(), env.plane.kubeconfig().display().to_string())];
    let ran = idbind_plan(&env, &["-f", "-", "--operator-namespace", &op_ns], &kubeconfig, Some(&stdin))?;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(
        row(&ran, ns, "app")
            .contains(&format!("refused     {}: spec.keyVaults[0].roles[0]", Reason::PolicyViolation)),
        "{ran}"
    );
    assert!(!ran.stderr.contains("Error"), "{ran}");

    // Nor a kubeconfig: the settings from the environment, said on stderr.
    let settings = [
        ("IDBIND_CLUSTER_NAME", "e2e"),
        ("IDBIND_OIDC_ISSUER", env.plane.server()),
        ("AZURE_SUBSCRIPTION_ID", SUB),
        ("IDBIND_RESOURCE_GROUP", RG),
        ("IDBIND_LOCATION", "westeurope"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let ran = idbind_plan(&env, &["-f", "-"], &settings, Some(&stdin))?;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(ran.stderr.contains("planning without the cluster: no kubeconfig"), "{ran}");
    assert!(row(&ran, ns, "app").contains(&format!("refused     {}", Reason::PolicyViolation)), "{ran}");
    assert_eq!(env.sim.counters(), before, "no request reached Azure");

    // A file without a binding is an error, not a clean plan.
    let ran = idbind_plan(&env, &["-f", "-"], &settings, Some(&serde_yaml::to_string(&documents[0])?))?;
    assert_eq!(ran.code, Some(1), "{ran}");
    assert!(ran.stderr.contains("no WorkloadIdentityBinding"), "{ran}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_kubeconfig_the_cli_plans_from_flags_and_environment() -> TestResult {
    let env = start_without_operator("dry-run-cli", |_| {}).await?;
    let writes = env.writes();

    // The CLI prints the same, from a manifest file.
    let dir = folder(&env)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, env.sim.ca_pem().ok_or("no CA")?)?;
    let manifest = dir.join("binding.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&binding(&env.ns, "from-file", &["Key Vault Reader"]))?)?;
    let out = Command::new(env!("CARGO_BIN_EXE_idbind"))
        .args(["plan", "-f"])
        .arg(&manifest)
        .env_clear()
        .env("HOME", home(&env)?)
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("planning without the cluster: no kubeconfig"), "{stderr}");
    for needle in ["put identity", "put federated credential", "create role assignment", "Key Vault Reader"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(env.writes(), writes, "a plan writes nothing");
    Ok(())
}
