//! The operator end to end: the real kube-apiserver (driven with kubectl), the ARM simulator
//! over HTTPS, and idbind's controller in this process. A binding converges to Ready, Azure
//! holds exactly what it asks for, the federation works (a TokenRequest token is exchanged at
//! the simulator's Entra endpoint), steady state makes no Azure writes, role edits change
//! exactly the difference, bad input stalls with a reason and heals when fixed, and deletion
//! leaves nothing behind.

use std::{
    io::Write,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

mod common;

use idbind::{
    controller::{self, Context},
    validate::{OperatorSettings, Policy},
};
use idbind_sim::{Seed, SeedApp, SimConfig, SimHandle, Simulator, State};
use idbind_testenv::ControlPlane;
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const SUB: &str = "00000000-0000-0000-0000-0000000000e2";
const RG: &str = "rg-identities";
const KV_RG: &str = "rg-shop";
const APP_ID: &str = "11111111-1111-1111-1111-1111111111e2";
const APP_SECRET: &str = "operator-secret";
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

struct Env {
    plane: &'static ControlPlane,
    sim: SimHandle,
    ns: String,
}

/// Control plane + simulator + a running controller (as admin; the least-privilege run is issue 5).
async fn start(prefix: &str) -> Result<Env, Box<dyn std::error::Error + Send + Sync>> {
    let plane = idbind_testenv::shared_with_crds();

    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.add_vault(SUB, KV_RG, "kv-shop", true);
    seed.apps.push(SeedApp { client_id: APP_ID.into(), client_secret: APP_SECRET.into(), object_id: Some("22222222-2222-2222-2222-2222222222e2".into()), display_name: Some("idbind".into()) });
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    // The simulator's Entra endpoint fetches the API server's JWKS over HTTPS.
    config.entra.extra_ca_files.push(plane.ca_file());
    let sim = Simulator::start(config).await?;

    let azure = Arc::new(common::arm_api(&sim, APP_ID, APP_SECRET)?);

    let kube_config = kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(plane.kubeconfig())?, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(kube_config)?;
    let settings = OperatorSettings { cluster_name: "e2e".into(), subscription_id: SUB.into(), default_resource_group: Some(RG.into()), default_location: Some("westeurope".into()), issuer: plane.server().to_string() };
    let ctx = Arc::new(Context::new(client, azure, settings, Policy::default(), Duration::from_secs(2)));
    // Each test runs its own controller and simulator, so each watches only its own namespace.
    let ns = plane.fresh_namespace(prefix)?;
    let watched = ns.clone();
    tokio::spawn(async move { controller::run(ctx, 4, Some(&watched)).await });
    Ok(Env { plane, sim, ns })
}

impl Env {
    fn apply(&self, manifest: &Value) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut child = self.plane.kubectl(&["apply", "-n", &self.ns, "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        child.stdin.take().ok_or("no stdin")?.write_all(manifest.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(())
    }

    fn binding(&self, name: &str, sa: &str, roles: &[&str]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut spec = json!({"serviceAccountName": sa});
        if !roles.is_empty() {
            spec["keyVaults"] = json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": roles}]);
        }
        self.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": spec}))
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        Ok(self.plane.kubectl_ok(&all)?)
    }

    fn condition(&self, binding: &str, type_: &str) -> Result<(String, String), Box<dyn std::error::Error + Send + Sync>> {
        let out = self.kubectl(&["get", "wib", binding, "-o", &format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}} {{.status.conditions[?(@.type==\"{type_}\")].reason}}")])?;
        let mut parts = out.split_whitespace();
        Ok((parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string()))
    }

    fn writes(&self) -> u64 {
        let c = self.sim.counters();
        common::WRITE_OPERATIONS.iter().map(|op| c.total(op)).sum()
    }
}

/// Polls `check` until it returns Some, or fails after `timeout` with the last observation.
async fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>, Box<dyn std::error::Error + Send + Sync>>) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    let start = Instant::now();
    loop {
        let last = check();
        if let Ok(Some(v)) = last {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what} (last: {:?})", last.err()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn identities(state: &State) -> Vec<idbind_sim::state::Identity> {
    state.subscriptions.values().flat_map(|s| s.resource_groups.values()).flat_map(|g| g.identities.values().cloned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_converges_federates_stays_quiet_follows_edits_and_cleans_up() -> TestResult {
    let env = start("e2e-life").await?;
    env.kubectl(&["create", "serviceaccount", "orders"])?;
    env.binding("orders", "orders", &["Key Vault Secrets User"])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/orders"])?;

    // Azure holds exactly the identity (tagged as ours), the FIC and the role assignment.
    let state = env.sim.state_typed();
    let ids = identities(&state);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let identity = &ids[0];
    assert_eq!((identity.tags.get("idbind.dev.namespace"), identity.tags.get("idbind.dev.binding")), (Some(&env.ns), Some(&"orders".to_string())));
    let fics: Vec<_> = identity.federated_identity_credentials.values().collect();
    assert_eq!(fics.len(), 1);
    assert_eq!((fics[0].issuer.as_str(), fics[0].subject.clone(), fics[0].audiences.clone()), (env.plane.server(), format!("system:serviceaccount:{}:orders", env.ns), vec!["api://AzureADTokenExchange".to_string()]));
    let assignments: Vec<_> = state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id).collect();
    assert_eq!(assignments.len(), 1);
    assert_eq!((assignments[0].role_definition_guid.as_str(), assignments[0].principal_type.as_str()), (SECRETS_USER, "ServicePrincipal"));
    assert!(assignments[0].scope.to_ascii_lowercase().ends_with("/vaults/kv-shop"));

    // The ServiceAccount carries both annotations; describe shows conditions and the Event.
    let annotations = env.kubectl(&["get", "serviceaccount", "orders", "-o", "jsonpath={.metadata.annotations}"])?;
    assert!(annotations.contains(&identity.client_id) && annotations.contains(&identity.tenant_id), "{annotations}");
    let describe = env.kubectl(&["describe", "wib", "orders"])?;
    for needle in ["IdentityReady", "FederatedCredentialReady", "RoleAssignmentsReady", "ServiceAccountReady", "Reconciled"] {
        assert!(describe.contains(needle), "describe lacks {needle}:\n{describe}");
    }
    eventually("the Ready Event", Duration::from_secs(30), || {
        let events = env.kubectl(&["get", "events", "--field-selector", "involvedObject.name=orders,reason=Ready", "-o", "name"])?;
        Ok((!events.trim().is_empty()).then_some(()))
    })
    .await?;

    // Federation end to end: a TokenRequest token for the ServiceAccount buys a token for the
    // bound identity at the simulator's Entra endpoint.
    let assertion = env.kubectl(&["create", "token", "orders", "--audience", "api://AzureADTokenExchange"])?;
    let ca = reqwest::Certificate::from_pem(env.sim.ca_pem().ok_or("no CA")?.as_bytes())?;
    let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?;
    let token_url = format!("{}{}/oauth2/v2.0/token", env.sim.authority_host().ok_or("no authority")?, env.sim.tenant_id());
    let response = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", identity.client_id.as_str()),
            ("scope", "https://management.azure.com/.default"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.trim()),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert!(status.is_success() && body["access_token"].is_string(), "token exchange failed: {status} {body}");

    // Steady state: several resyncs (2 s each) read Azure and write nothing.
    let writes = env.writes();
    let gets = env.sim.counters().total("UserAssignedIdentities_Get");
    eventually("three more resyncs", Duration::from_secs(30), || Ok((env.sim.counters().total("UserAssignedIdentities_Get") >= gets + 3).then_some(()))).await?;
    assert_eq!(env.writes(), writes, "steady state must make no Azure writes");

    // Editing the roles adds and removes exactly the difference.
    env.binding("orders", "orders", &["Key Vault Reader"])?;
    eventually("the role swap", Duration::from_secs(60), || {
        let state = env.sim.state_typed();
        let guids: Vec<String> = state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id).map(|ra| ra.role_definition_guid.clone()).collect();
        Ok((guids == [READER]).then_some(()))
    })
    .await?;

    // Deleting the binding (deletionPolicy Delete) leaves none of our objects.
    env.kubectl(&["delete", "wib", "orders", "--wait=true", "--timeout=60s"])?;
    let state = env.sim.state_typed();
    assert!(identities(&state).is_empty(), "identity left behind");
    assert!(!state.role_assignments.values().any(|ra| ra.principal_id == identity.principal_id), "role assignment left behind");
    let annotations = env.kubectl(&["get", "serviceaccount", "orders", "-o", "jsonpath={.metadata.annotations}"])?;
    assert!(!annotations.contains("azure.workload.identity"), "annotations left behind: {annotations}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_a_missing_service_account_are_reported_and_heal() -> TestResult {
    let env = start("e2e-heal").await?;
    // Owner is not a Key Vault reader role: the default policy refuses it before any Azure write.
    let writes = env.writes();
    env.binding("escalate", "payments", &["Owner"])?;
    eventually("Stalled=PolicyViolation", Duration::from_secs(60), || Ok((env.condition("escalate", "Stalled")? == ("True".into(), "PolicyViolation".into())).then_some(()))).await?;
    assert_eq!(env.condition("escalate", "Ready")?.0, "False");
    assert_eq!(env.writes(), writes, "an invalid binding makes no Azure write");

    // Fixed input, but the ServiceAccount does not exist yet.
    env.binding("escalate", "payments", &["Key Vault Secrets User"])?;
    eventually("ServiceAccountNotFound", Duration::from_secs(60), || Ok((env.condition("escalate", "Ready")? == ("False".into(), "ServiceAccountNotFound".into())).then_some(()))).await?;
    assert_eq!(env.condition("escalate", "Stalled")?.0, "", "Stalled is gone once the input is fixed");

    // Creating the ServiceAccount completes the binding without any other change.
    env.kubectl(&["create", "serviceaccount", "payments"])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "wib/escalate"])?;
    env.kubectl(&["delete", "wib", "escalate", "--wait=true", "--timeout=60s"])?;
    assert!(identities(&env.sim.state_typed()).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn renaming_the_identity_leaves_nothing_behind_and_retain_keeps_azure() -> TestResult {
    let env = start("e2e-rename").await?;
    env.kubectl(&["create", "serviceaccount", "reports"])?;
    let manifest = |identity: &str, policy: &str| {
        json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "reports"},
               "spec": {"serviceAccountName": "reports", "identity": {"name": identity}, "deletionPolicy": policy,
                        "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}})
    };
    env.apply(&manifest("reports-one", "Delete"))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/reports"])?;
    let first = identities(&env.sim.state_typed());
    assert_eq!(first.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["reports-one"]);

    // A new name: the new identity takes over, the old one and its role assignment go.
    env.apply(&manifest("reports-two", "Delete"))?;
    let second = eventually("only reports-two left", Duration::from_secs(90), || {
        let state = env.sim.state_typed();
        let ids = identities(&state);
        let old_assignments = state.role_assignments.values().filter(|ra| ra.principal_id == first[0].principal_id).count();
        Ok((ids.len() == 1 && ids[0].name == "reports-two" && old_assignments == 0).then(|| ids[0].clone()))
    })
    .await?;
    eventually("the ServiceAccount names the new client id", Duration::from_secs(60), || {
        let annotations = env.kubectl(&["get", "serviceaccount", "reports", "-o", "jsonpath={.metadata.annotations}"])?;
        Ok(annotations.contains(&second.client_id).then_some(()))
    })
    .await?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "wib/reports"])?;

    // Retain: deleting the binding keeps the identity, its FIC and its role assignment.
    env.apply(&manifest("reports-two", "Retain"))?;
    env.kubectl(&["delete", "wib", "reports", "--wait=true", "--timeout=60s"])?;
    let state = env.sim.state_typed();
    let kept = identities(&state);
    assert_eq!(kept.len(), 1, "Retain keeps the identity");
    assert_eq!(kept[0].federated_identity_credentials.len(), 1, "Retain keeps the FIC");
    assert_eq!(state.role_assignments.values().filter(|ra| ra.principal_id == second.principal_id).count(), 1, "Retain keeps the role assignment");
    let annotations = env.kubectl(&["get", "serviceaccount", "reports", "-o", "jsonpath={.metadata.annotations}"])?;
    assert!(!annotations.contains("azure.workload.identity"), "the ServiceAccount annotations are withdrawn: {annotations}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_identity_and_a_missing_vault_stall_and_heal() -> TestResult {
    use idbind::azure::AzureApi;
    let env = start("e2e-conflict").await?;
    env.kubectl(&["create", "serviceaccount", "billing"])?;
    // Someone else's identity, with the name the binding asks for and no idbind tags.
    let foreign = format!("/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/billing");
    let api = common::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    api.put_identity(&foreign, "westeurope", &[("owner".to_string(), "someone-else".to_string())].into()).await?;
    let writes = env.writes();

    let manifest = |identity: &str, vault: &str| {
        json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "billing"},
               "spec": {"serviceAccountName": "billing", "identity": {"name": identity},
                        "keyVaults": [{"name": vault, "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}})
    };
    env.apply(&manifest("billing", "kv-shop"))?;
    eventually("Stalled=IdentityConflict", Duration::from_secs(60), || Ok((env.condition("billing", "Stalled")? == ("True".into(), "IdentityConflict".into())).then_some(()))).await?;
    assert_eq!(env.condition("billing", "IdentityReady")?.0, "False");
    assert_eq!(env.writes(), writes, "idbind never writes to an identity it does not own");
    let untouched = identities(&env.sim.state_typed());
    assert!(untouched.iter().all(|i| i.federated_identity_credentials.is_empty() && !i.tags.contains_key("idbind.dev.binding")), "{untouched:?}");

    // Another name but a vault that does not exist: VaultNotFound, still no Azure write.
    env.apply(&manifest("billing-own", "kv-nowhere"))?;
    eventually("Stalled=VaultNotFound", Duration::from_secs(60), || Ok((env.condition("billing", "Stalled")? == ("True".into(), "VaultNotFound".into())).then_some(()))).await?;
    assert_eq!(env.writes(), writes, "a missing vault is found before any write");

    // Fixed: Ready, and Stalled is gone.
    env.apply(&manifest("billing-own", "kv-shop"))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/billing"])?;
    assert_eq!(env.condition("billing", "Stalled")?.0, "");
    Ok(())
}
