//! The end-to-end harness: the shared real control plane, a simulator over HTTPS seeded with one
//! subscription, the identities' resource group and an RBAC vault, and idbind's controller running in this
//! process against one fresh namespace.

use std::{
    io::Write,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use idbind::{
    azure::budget::{Limits, SharedBudget},
    azure::governed::Governed,
    core::reason::Reason,
    core::settings::{Ceiling, OperatorSettings},
    reconcile::{self, Context},
    runtime::controller,
};
use idbind_sim::{Seed, SeedApp, SimConfig, SimHandle, Simulator, State};
use idbind_testenv::ControlPlane;
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

pub type TestError = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), TestError>;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000e2";
pub const RG: &str = "rg-identities";
pub const KV_RG: &str = "rg-shop";
pub const APP_ID: &str = "11111111-1111-1111-1111-1111111111e2";
pub const APP_OBJECT_ID: &str = "22222222-2222-2222-2222-2222222222e2";
pub const APP_SECRET: &str = "operator-secret";
pub const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
pub const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

pub struct Env {
    pub plane: &'static ControlPlane,
    pub sim: SimHandle,
    pub ns: String,
}

/// Control plane + simulator + a running controller with the default ceiling, and the namespace selected by
/// [`team_policy`], as a platform team would set a team up.
pub async fn start(prefix: &str) -> Result<Env, TestError> {
    let env = start_with(prefix, Ceiling::default(), |_| {}).await?;
    apply_cluster(env.plane, &team_policy(&env.ns))?;
    Ok(env)
}

/// What a platform team gives a team's namespace `ns`: the vaults of the resource group [`KV_RG`], with the
/// data-plane reader roles. Namespaces no policy selects bind nothing.
pub fn team_policy(ns: &str) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
           "metadata": {"name": format!("team-{ns}")},
           "spec": {"namespaces": [ns], "keyVaults": [{"resourceGroup": KV_RG}]}})
}

/// The ceiling of a cluster whose namespaces may bind without a policy (`--open-namespaces`), for tests of
/// what the ceiling alone allows.
pub fn open() -> Ceiling {
    Ceiling { open_namespaces: true, ..Ceiling::default() }
}

/// Like [`start`], with a policy and a last word on the simulator's configuration (extra vaults, grants,
/// behaviours) before it starts.
pub async fn start_with(
    prefix: &str,
    ceiling: Ceiling,
    customize: impl FnOnce(&mut SimConfig),
) -> Result<Env, TestError> {
    // ARM's limits scaled up tenfold, so tests do not wait on the managed-identity API's one GET per 2 s per
    // identity.
    start_with_budget(prefix, ceiling, Limits::default().scaled(10.0), customize).await
}

/// Like [`start_with`], with the operator's request budget at `limits`.
pub async fn start_with_budget(
    prefix: &str,
    ceiling: Ceiling,
    limits: Limits,
    customize: impl FnOnce(&mut SimConfig),
) -> Result<Env, TestError> {
    start_operator(prefix, ceiling, limits, Duration::from_secs(2), customize).await
}

/// Like [`start`], with drift checked only every `resync`: what happens sooner came from a watch.
pub async fn start_with_resync(prefix: &str, resync: Duration) -> Result<Env, TestError> {
    let env =
        start_operator(prefix, Ceiling::default(), Limits::default().scaled(10.0), resync, |_| {}).await?;
    apply_cluster(env.plane, &team_policy(&env.ns))?;
    Ok(env)
}

async fn start_operator(
    prefix: &str,
    ceiling: Ceiling,
    limits: Limits,
    resync: Duration,
    customize: impl FnOnce(&mut SimConfig),
) -> Result<Env, TestError> {
    let env = start_without_operator(prefix, customize).await?;
    // Never as admin: the operator's own ServiceAccount, bound to the RBAC that ships.
    install_operator_rbac(env.plane, &env.ns, &[])?;
    spawn_controller(&env, &env.ns, ceiling, limits, resync).await?;
    Ok(env)
}

/// Another controller on `env`'s simulator, watching namespace `watched` (another tenant's), with `ceiling`:
/// with it, namespaces of one test share one Azure, as the namespaces of one cluster do.
pub async fn also_watch(env: &Env, watched: &str, ceiling: Ceiling) -> TestResult {
    spawn_controller(env, watched, ceiling, Limits::default().scaled(10.0), Duration::from_secs(2)).await
}

async fn spawn_controller(
    env: &Env,
    watched: &str,
    ceiling: Ceiling,
    limits: Limits,
    resync: Duration,
) -> TestResult {
    // The production stack: the ARM client behind the request budget.
    let azure = Arc::new(Governed::new(
        Arc::new(crate::arm_api(&env.sim, APP_ID, APP_SECRET)?),
        Some(SharedBudget::new(limits)),
        None,
    ));
    let kubeconfig = operator_kubeconfig(env.plane, &env.ns, &format!("in-process-{watched}"))?;
    let kube_config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(kube_config)?;
    let budget = azure.budget().cloned();
    let (caches, writers) = reconcile::caches();
    let ctx = Arc::new(
        Context::new(client, azure, settings(env.plane), ceiling, resync, caches).with_budget(budget),
    );
    // Each test runs its own controller and simulator, so each watches only its own namespace.
    let watched = watched.to_string();
    tokio::spawn(async move { controller::run(ctx, writers, 4, Some(&watched)).await });
    Ok(())
}

/// The control plane, a simulator and a fresh namespace, with no operator: for tests that run `idbind run` as
/// a process of its own (see [`crate::process`]).
pub async fn start_without_operator(
    prefix: &str,
    customize: impl FnOnce(&mut SimConfig),
) -> Result<Env, TestError> {
    let plane = idbind_testenv::shared_with_crds();
    let mut config = SimConfig::for_tests();
    config.seed = seed();
    // The simulator's Entra endpoint fetches the API server's JWKS over HTTPS.
    config.entra.extra_ca_files.push(plane.ca_file());
    // Azure's propagation delays, short: a new federated credential is unusable at token exchange for a
    // second, a role assignment takes effect in Key Vault a second after it is made (Azure: minutes).
    config.behaviour.fic_propagation_ms = 1_000;
    config.behaviour.role_propagation_ms = 1_000;
    customize(&mut config);
    // Azure RBAC as README "Install on AKS" step 3 has an administrator set it up, for what the seed holds
    // once `customize` added to it: the operator's identity gets exactly the roles listed there, and an
    // administrator owns each subscription for the tests' own setup.
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{RG}")];
    crate::azure_rbac::grant_operator_roles(&mut config.seed, APP_OBJECT_ID, &identities)?;
    crate::azure_rbac::seed_administrator(&mut config.seed);
    let sim = Simulator::start(config).await?;
    let ns = plane.fresh_namespace(prefix)?;
    Ok(Env { plane, sim, ns })
}

/// The Azure the tests start from: one subscription with the identities' resource group and the RBAC vault
/// kv-shop, and the operator's app registration (no roles yet).
pub fn seed() -> Seed {
    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.add_vault(SUB, KV_RG, "kv-shop", true);
    seed.apps.push(SeedApp {
        client_id: APP_ID.into(),
        client_secret: APP_SECRET.into(),
        object_id: Some(APP_OBJECT_ID.into()),
        display_name: Some("idbind".into()),
    });
    seed
}

/// The operator settings every test uses (the cluster's issuer is the API server's).
pub fn settings(plane: &ControlPlane) -> OperatorSettings {
    OperatorSettings {
        cluster_name: "e2e".into(),
        subscription_id: SUB.into(),
        default_resource_group: Some(RG.into()),
        default_location: Some("westeurope".into()),
        issuer: plane.server().to_string(),
        operator_client_id: Some(APP_ID.into()),
        operator_service_account: Some(("idbind-system".into(), "idbind".into())),
    }
}

impl Env {
    /// The test's namespace.
    pub fn here(&self) -> Namespace<'_> {
        Namespace { plane: self.plane, ns: self.ns.clone() }
    }

    /// Another fresh namespace on the same control plane (a second tenant).
    pub fn other_namespace(&self, prefix: &str) -> Result<Namespace<'_>, TestError> {
        Ok(Namespace { plane: self.plane, ns: self.plane.fresh_namespace(prefix)? })
    }

    pub fn apply(&self, manifest: &Value) -> TestResult {
        self.here().apply(manifest)
    }

    /// Applies a binding of `sa` with `roles` on kv-shop (none: no vault).
    pub fn binding(&self, name: &str, sa: &str, roles: &[&str]) -> TestResult {
        self.here().binding(name, sa, roles)
    }

    /// A ServiceAccount `name`, a binding `name` of it with `roles` on kv-shop, and the binding Ready: the
    /// starting point of most tests.
    pub fn ready_binding(&self, name: &str, roles: &[&str]) -> TestResult {
        self.here().ready_binding(name, roles)
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, TestError> {
        self.here().kubectl(args)
    }

    /// (status, reason) of a condition; empty strings when it is absent.
    pub fn condition(&self, binding: &str, type_: &str) -> Result<(String, String), TestError> {
        self.here().condition(binding, type_)
    }

    /// The message of condition `type_` of `binding`; empty when it is absent.
    pub fn message(&self, binding: &str, type_: &str) -> Result<String, TestError> {
        self.here().message(binding, type_)
    }

    /// Waits until condition `type_` of `binding` has this status and reason.
    pub async fn wait_condition(
        &self,
        binding: &str,
        type_: &str,
        status: &str,
        reason: Reason,
        timeout: Duration,
    ) -> TestResult {
        self.here().wait_condition(binding, type_, status, reason, timeout).await
    }

    /// Waits until `binding` has no condition `type_`.
    pub async fn wait_condition_gone(&self, binding: &str, type_: &str, timeout: Duration) -> TestResult {
        self.here().wait_condition_gone(binding, type_, timeout).await
    }

    /// Azure writes the simulator has served so far (by its catalogue of operations).
    pub fn writes(&self) -> u64 {
        self.sim.counters().writes()
    }
}

/// One namespace of the test's control plane, as a tenant (or its administrator) acts in it.
pub struct Namespace<'a> {
    pub plane: &'a ControlPlane,
    pub ns: String,
}

impl Namespace<'_> {
    pub fn apply(&self, manifest: &Value) -> TestResult {
        kubectl_apply(self.plane, &["-n", &self.ns], manifest)
    }

    /// Applies a binding of `sa` with `roles` on kv-shop (none: no vault).
    pub fn binding(&self, name: &str, sa: &str, roles: &[&str]) -> TestResult {
        let mut spec = json!({"serviceAccountName": sa});
        if !roles.is_empty() {
            spec["keyVaults"] = json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": roles}]);
        }
        self.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": spec}))
    }

    /// A ServiceAccount `name`, a binding `name` of it with `roles` on kv-shop, and the binding Ready: the
    /// starting point of most tests.
    pub fn ready_binding(&self, name: &str, roles: &[&str]) -> TestResult {
        self.kubectl(&["create", "serviceaccount", name])?;
        self.binding(name, name, roles)?;
        self.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")])?;
        Ok(())
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, TestError> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        Ok(self.plane.kubectl_ok(&all)?)
    }

    /// (status, reason) of a condition; empty strings when it is absent.
    pub fn condition(&self, binding: &str, type_: &str) -> Result<(String, String), TestError> {
        let out = self.kubectl(&["get", "wib", binding, "-o", &format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}} {{.status.conditions[?(@.type==\"{type_}\")].reason}}")])?;
        let mut parts = out.split_whitespace();
        Ok((parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string()))
    }

    /// The message of condition `type_` of `binding`; empty when it is absent.
    pub fn message(&self, binding: &str, type_: &str) -> Result<String, TestError> {
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].message}}");
        self.kubectl(&["get", "wib", binding, "-o", &path])
    }

    /// Waits until condition `type_` of `binding` has this status and reason.
    pub async fn wait_condition(
        &self,
        binding: &str,
        type_: &str,
        status: &str,
        reason: Reason,
        timeout: Duration,
    ) -> TestResult {
        let want = (status.to_string(), reason.to_string());
        eventually(&format!("{binding}: {type_}={status} ({reason})"), timeout, || {
            Ok((self.condition(binding, type_)? == want).then_some(()))
        })
        .await
    }

    /// Waits until `binding` has no condition `type_`.
    pub async fn wait_condition_gone(&self, binding: &str, type_: &str, timeout: Duration) -> TestResult {
        eventually(&format!("{binding}: no {type_}"), timeout, || {
            Ok(self.condition(binding, type_)?.0.is_empty().then_some(()))
        })
        .await
    }
}

/// Polls `check` until it returns Some, or fails after `timeout` with the last observation.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, TestError>,
) -> Result<T, TestError> {
    let start = Instant::now();
    loop {
        let last = check();
        if let Ok(Some(v)) = last {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(
                format!("timed out after {timeout:?} waiting for {what} (last: {:?})", last.err()).into()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every identity the simulator holds.
pub fn identities(state: &State) -> Vec<idbind_sim::state::Identity> {
    state
        .subscriptions
        .values()
        .flat_map(|s| s.resource_groups.values())
        .flat_map(|g| g.identities.values().cloned())
        .collect()
}

/// The operator's own namespace for the test namespace `ns` (as idbind-system is in a real install): its
/// ServiceAccount and Lease live apart from the bindings, so deleting the bindings' namespace does not take
/// the operator's credentials with it.
pub fn operator_namespace(ns: &str) -> String {
    format!("{ns}-op")
}

/// The verification component (config/components/verification) for the test's operator: its ClusterRole and
/// binding, and its admission policy, renamed per test and pointed at the test's operator ServiceAccount.
pub fn install_verification(env: &Env) -> TestResult {
    let root = idbind_testenv::workspace_root().join("config/components/verification");
    let op_ns = operator_namespace(&env.ns);
    let suffix = &env.ns;
    let mut items: Vec<Value> = Vec::new();
    for file in ["token_role.yaml", "token_admission_policy.yaml"] {
        let text = std::fs::read_to_string(root.join(file))?.replace(
            "system:serviceaccount:idbind-system:idbind",
            &format!("system:serviceaccount:{op_ns}:operator"),
        );
        for document in serde_yaml::Deserializer::from_str(&text) {
            let mut object =
                serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(document)?)?;
            let name = format!("{}-{suffix}", object["metadata"]["name"].as_str().unwrap_or_default());
            object["metadata"]["name"] = json!(name);
            match object["kind"].as_str() {
                Some("ClusterRoleBinding") => {
                    object["roleRef"]["name"] = json!(format!("idbind-verification-{suffix}"));
                    object["subjects"] =
                        json!([{"kind": "ServiceAccount", "name": "operator", "namespace": op_ns}]);
                }
                Some("ValidatingAdmissionPolicyBinding") => {
                    object["spec"]["policyName"] = json!(format!("idbind-verification-tokens-{suffix}"));
                }
                _ => {}
            }
            items.push(object);
        }
    }
    apply_cluster(env.plane, &json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// The Secrets Store CSI driver's SecretProviderClass CRD (tests/fixtures/secretproviderclass-crd.yaml),
/// installed on the test binary's control plane once, and served (discovery lists it). Only the tests that
/// need it install it: the others run as on a cluster without the driver.
pub fn install_class_crd(plane: &ControlPlane) -> TestResult {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let file = idbind_testenv::workspace_root().join("tests/fixtures/secretproviderclass-crd.yaml");
        let crd = "crd/secretproviderclasses.secrets-store.csi.x-k8s.io";
        let installed = plane
            .kubectl_ok(&["apply", "-f", &file.display().to_string()])
            .and_then(|_| plane.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", crd]))
            .and_then(|_| {
                let group = "secrets-store.csi.x-k8s.io";
                plane.wait_for_discovery(group, "secretproviderclasses", Duration::from_secs(60))
            });
        installed.map_err(|e| e.to_string())
    });
    Ok(installed.clone()?)
}

/// `kubectl apply` of cluster-scoped objects (or objects that name their namespace).
pub fn apply_cluster(plane: &ControlPlane, manifest: &Value) -> TestResult {
    kubectl_apply(plane, &[], manifest)
}

/// `kubectl apply -f -` of `manifest` with `extra` arguments (e.g. `-n NS`); the error is kubectl's stderr.
fn kubectl_apply(plane: &ControlPlane, extra: &[&str], manifest: &Value) -> TestResult {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    let mut child =
        plane.kubectl(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(manifest.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(())
}

/// The RBAC objects the operator runs with, as shipped in config/rbac/, bound to a ServiceAccount `operator`
/// in [`operator_namespace`], with the lease Role there too, and the admission policy that narrows its writes
/// (config/rbac/operator_writes_policy.yaml, see [`install_operator_writes_policy`]). `without` drops rules
/// (the least-privilege test): `("ClusterRole", i)` or `("Role", i)`. The ClusterRole is named after the
/// namespace, so tests that change it stay apart.
pub fn install_operator_rbac(
    plane: &ControlPlane,
    ns: &str,
    without: &[(&str, usize)],
) -> Result<(), TestError> {
    install_operator_rbac_with(plane, ns, |kind, i, rule| (!without.contains(&(kind, i))).then_some(rule))
}

/// Like [`install_operator_rbac`], with `verb` taken out of the shipped ClusterRole's rule for `resource`
/// (the least-privilege test, verb by verb).
pub fn install_operator_rbac_without_verb(
    plane: &ControlPlane,
    ns: &str,
    resource: &str,
    verb: &str,
) -> Result<(), TestError> {
    install_operator_rbac_with(plane, ns, |kind, _, mut rule| {
        if kind == "ClusterRole"
            && rule["resources"][0] == resource
            && let Some(verbs) = rule["verbs"].as_array_mut()
        {
            verbs.retain(|v| v != verb);
        }
        Some(rule)
    })
}

/// The shipped RBAC with each rule (`kind`, index, rule) as `edit` returns it (`None`: dropped).
fn install_operator_rbac_with(
    plane: &ControlPlane,
    ns: &str,
    edit: impl Fn(&str, usize, Value) -> Option<Value>,
) -> Result<(), TestError> {
    let op_ns = operator_namespace(ns);
    let ns = op_ns.as_str();
    let root = idbind_testenv::workspace_root().join("config/rbac");
    let read = |file: &str| -> Result<Value, TestError> {
        Ok(serde_yaml::from_str(&std::fs::read_to_string(root.join(file))?)?)
    };
    let edit_rules = |mut role: Value, kind: &str| {
        if let Some(rules) = role["rules"].as_array_mut() {
            let edited = rules.drain(..).enumerate().filter_map(|(i, rule)| edit(kind, i, rule)).collect();
            *rules = edited;
        }
        role
    };
    let name = format!("idbind-{ns}");
    let mut cluster_role = edit_rules(read("cluster_role.yaml")?, "ClusterRole");
    cluster_role["metadata"] = json!({"name": name});
    let mut role = edit_rules(read("leader_election_role.yaml")?, "Role");
    role["metadata"] = json!({"name": "idbind-leader-election", "namespace": ns});
    let subject = json!([{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": ns}},
        cluster_role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "subjects": subject},
        role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "idbind-leader-election", "namespace": ns}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "idbind-leader-election"}, "subjects": subject},
    ]});
    apply_cluster(plane, &objects)?;
    install_operator_writes_policy(plane, ns)
}

/// The admission policy on the operator's writes (config/rbac/operator_writes_policy.yaml) for the test
/// operator of `op_ns` (its ServiceAccount `operator`), named after that namespace; returns once the API
/// server enforces it (a dry-run create of a ConfigMap that is not an export, as the operator, is refused).
fn install_operator_writes_policy(plane: &ControlPlane, op_ns: &str) -> TestResult {
    let file = idbind_testenv::workspace_root().join("config/rbac/operator_writes_policy.yaml");
    let user = format!("system:serviceaccount:{op_ns}:operator");
    let text = std::fs::read_to_string(file)?.replace("system:serviceaccount:idbind-system:idbind", &user);
    let name = operator_writes_policy(op_ns);
    let mut items: Vec<Value> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut object =
            serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(document)?)?;
        object["metadata"]["name"] = json!(name);
        if object["kind"] == "ValidatingAdmissionPolicyBinding" {
            object["spec"]["policyName"] = json!(name);
        }
        items.push(object);
    }
    apply_cluster(plane, &json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = plane
            .kubectl(&[
                "create",
                "configmap",
                "policy-probe",
                "-n",
                op_ns,
                "--dry-run=server",
                &format!("--as={user}"),
            ])
            .output()?;
        let refusal = String::from_utf8_lossy(&probe.stderr);
        // Refused by the policy, or by RBAC (a test that took the ConfigMap rule away): either way the
        // operator writes no ConfigMap the policy would not let through.
        if refusal.contains(&name) || refusal.contains("cannot create resource") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the policy {name} is not enforced after 60 s: {refusal}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The name of the admission policy (and its binding) on the writes of the test operator of `op_ns`.
pub fn operator_writes_policy(op_ns: &str) -> String {
    format!("idbind-operator-writes-{op_ns}")
}

/// A kubeconfig that signs in as the `operator` ServiceAccount (of [`operator_namespace`]) with a
/// TokenRequest token, as the operator's pod does: never as admin.
pub fn operator_kubeconfig(
    plane: &ControlPlane,
    ns: &str,
    file: &str,
) -> Result<std::path::PathBuf, TestError> {
    let token =
        plane.kubectl_ok(&["create", "token", "operator", "-n", &operator_namespace(ns), "--duration=2h"])?;
    let path = plane.dir().join(format!("{ns}-{file}.kubeconfig"));
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local", "cluster": {"server": plane.server(), "certificate-authority": plane.ca_file()}}],
        "users": [{"name": "operator", "user": {"token": token.trim()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator", "namespace": ns}}],
    });
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}
