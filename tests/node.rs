//! `make test-node` (root only): idbind as it runs on AKS, on a real node (`idbind_testenv::node`): the
//! operator as two pods of the Helm chart from the image `make image` builds, signed in to the API server and
//! to Azure (the simulator) with its pods' projected ServiceAccount tokens, and a workload pod of a bound
//! ServiceAccount, set up as the azure-workload-identity webhook sets pods up, reading its secret with
//! Azure's Go SDK.
//!
//! One scenario in order (a node is machine-wide, so there is one at a time), then the teardown, which must
//! leave the machine as it found it: no process, mount, interface, iptables rule or chain, cgroup, folder or
//! sysctl change (`node::down` returns what still differs, and this test fails on any). The figures are
//! printed at the end.
//!
//! The webhook itself is not buildable here (the Go proxy refuses github.com/Azure/azure-workload-identity),
//! so the workload pod carries what it injects, by hand: AZURE_CLIENT_ID, AZURE_TENANT_ID,
//! AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST and the projected token volume `azure-identity-token`.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, ExitCode},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use idbind::azure::{AzureApi, FederatedCredential};
use idbind::core::resource_id::ResourceId;
use idbind_sim::{Seed, SeedApp, SimConfig, SimHandle, Simulator};
use idbind_testenv::{
    ControlPlane, Lifetime,
    node::{self, GATEWAY},
    workspace_root,
};
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-0000000000d1";
const RG: &str = "rg-identities";
const KV_RG: &str = "rg-shop";
/// The app that sets the operator's own identity up (as an admin would, once, with the Azure CLI).
const SETUP_APP: &str = "11111111-1111-1111-1111-1111111111d1";
const SETUP_SECRET: &str = "setup-secret";
const OPERATOR_NS: &str = "idbind-system";
const RELEASE: &str = "idbind";
const SHOP: &str = "shop";
const SECRET_VALUE: &str = "correct-horse-battery-staple";

/// What the scenario measured, printed at the end.
#[derive(Default)]
struct Figures {
    lines: Vec<String>,
}

impl Figures {
    fn note(&mut self, what: &str, value: impl std::fmt::Display) {
        println!("figure: {what}: {value}");
        self.lines.push(format!("{what}: {value}"));
    }
}

fn main() -> ExitCode {
    if let Err(e) = node::require_root() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let mut figures = Figures::default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plane_dir = workspace_root().join(".cache/test-clusters/node");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(scenario(&plane_dir, &mut figures))
    }));
    let failed = match outcome {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            eprintln!("FAILED: {e:#}");
            eprintln!(
                "logs: {} and {}",
                node::state_dir().join("logs").display(),
                plane_dir.join("logs").display()
            );
            true
        }
        Err(_) => true,
    };
    // The teardown is part of the test: the machine must be as it was.
    let started = Instant::now();
    let teardown = node::down();
    idbind_testenv::stop_detached(&plane_dir).ok();
    let clean = match teardown {
        Ok(left) if left.is_empty() => {
            figures.note("teardown (make down's undo) took", format!("{:.1?}", started.elapsed()));
            true
        }
        Ok(left) => {
            eprintln!("FAILED: the node left this behind:\n  {}", left.join("\n  "));
            false
        }
        Err(e) => {
            eprintln!("FAILED: teardown: {e:#}");
            false
        }
    };
    println!("\n--- figures\n{}", figures.lines.join("\n"));
    if failed || !clean { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

async fn scenario(plane_dir: &std::path::Path, figures: &mut Figures) -> Result<()> {
    let images = node_images()?;
    let (plane, node) = node::start_with_plane(plane_dir, Lifetime::TiedToCaller, &images)?;
    figures.note("node start (containerd start → node Ready)", format!("{:.2?}", node.started_in));

    let sim = simulator(&plane).await?;
    let operator_client_id = operator_identity(&plane, &sim).await?;
    install_operator(&plane, &sim, &operator_client_id, figures)?;
    let leader = wait_for_leader(&plane, None, Duration::from_secs(60))?;
    println!("leader: {leader}");

    // A binding converges, from the operator's pods.
    plane.kubectl_ok(&["create", "namespace", SHOP])?;
    idbind_testkit::e2e::apply_cluster(&plane, &idbind_testkit::e2e::team_policy(SHOP))
        .map_err(|e| anyhow::anyhow!(e))?;
    plane.kubectl_ok(&["create", "serviceaccount", "payments", "-n", SHOP])?;
    apply(&plane, &binding("payments", "kv-shop"))?;
    plane
        .kubectl_ok(&["wait", "-n", SHOP, "--for=condition=Ready", "--timeout=120s", "wib/payments"])
        .context("the binding did not become Ready")?;

    // The workload reads its secret through the whole chain.
    let workload_started = Instant::now();
    start_workload(&plane, &sim)?;
    wait_until(Duration::from_secs(60), "the workload pod to run", || {
        Ok(plane.kubectl_ok(&["get", "pod", "workload", "-n", SHOP, "-o", "jsonpath={.status.phase}"])?
            == "Running")
    })?;
    figures.note("workload pod applied → Running", format!("{:.2?}", workload_started.elapsed()));
    let first = wait_for_log(&plane, "workload", 0, Duration::from_secs(120), |l| l["ok"] == true)?;
    ensure!(first["value"] == SECRET_VALUE, "the workload read {first}");
    figures
        .note("workload pod applied → its first secret read", format!("{:.1?}", workload_started.elapsed()));

    // The role goes: the workload is refused once Azure's propagation window (5 s here) has passed.
    let last_read =
        wait_for_log(&plane, "workload", attempt(&first), Duration::from_secs(30), |l| l["ok"] == true)?;
    apply(&plane, &binding("payments", "kv-other"))?;
    wait_until(Duration::from_secs(60), "the kv-shop role assignment to go", || {
        let assignments = sim.state()["roleAssignments"].clone();
        let scopes =
            assignments.as_object().map(|a| a.values().map(|r| r["scope"].to_string()).collect::<Vec<_>>());
        Ok(scopes.is_some_and(|s| !s.iter().any(|scope| scope.contains("/vaults/kv-shop"))))
    })?;
    let removed = Instant::now();
    let denied = wait_for_log(&plane, "workload", attempt(&last_read), Duration::from_secs(60), |l| {
        l["ok"] == false && l["status"] == 403
    })?;
    figures.note(
        "role assignment deleted in Azure → the workload's first 403",
        format!("{:.1?}", removed.elapsed()),
    );
    // Azure keeps honouring a deleted assignment for its propagation window: a 403 sooner would mean the
    // workload saw something else (the poll that saw the deletion may lag it by 100 ms).
    ensure!(removed.elapsed() >= Duration::from_millis(4_500), "refused before the 5 s window: {denied}");
    ensure!(
        denied["error"].as_str().is_some_and(|e| e.contains("ForbiddenByRbac")),
        "not Key Vault's RBAC refusal: {denied}"
    );

    // The leader's pod is deleted: the standby takes the Lease over and reconciling goes on.
    let deleted = Instant::now();
    plane.kubectl_ok(&["delete", "pod", "-n", OPERATOR_NS, &leader, "--wait=false"])?;
    let next = wait_for_leader(&plane, Some(&leader), Duration::from_secs(60))?;
    figures.note("leader pod deleted → the standby holds the Lease", format!("{:.1?}", deleted.elapsed()));
    plane.kubectl_ok(&["create", "serviceaccount", "orders", "-n", SHOP])?;
    apply(&plane, &binding("orders", "kv-shop"))?;
    plane
        .kubectl_ok(&["wait", "-n", SHOP, "--for=condition=Ready", "--timeout=120s", "wib/orders"])
        .context("no reconcile after the leader changed")?;
    println!("new leader {next} reconciled a new binding");

    rollout_on_config_change(&plane, figures)?;
    readiness_gates_endpoints(&plane, figures)?;

    // The role comes back, and the kubelet rotates the workload's token (at 80 % of its 600 s): the workload
    // reads its secret with the new token.
    apply(&plane, &binding("payments", "kv-shop"))?;
    let issued = first["tokenIssuedAt"].as_i64().context("the workload did not report its token's iat")?;
    let rotated = wait_for_log(&plane, "workload", 0, Duration::from_secs(600), |l| {
        l["ok"] == true && l["tokenIssuedAt"].as_i64().is_some_and(|iat| iat > issued)
    })?;
    let rotated_after = rotated["tokenIssuedAt"].as_i64().unwrap_or_default() - issued;
    figures.note(
        "projected token (600 s) rotated by the kubelet after",
        format!("{rotated_after} s, and read the secret with it"),
    );

    sim.shutdown().await?;
    drop(node);
    drop(plane);
    Ok(())
}

/// The archives the node imports: the sandbox image, the operator's image (`make image`) and the workload's.
fn node_images() -> Result<Vec<PathBuf>> {
    let dir = node::images_dir();
    let images: Vec<PathBuf> =
        ["pause.tar", "idbind.tar", "workload.tar"].iter().map(|f| dir.join(f)).collect();
    for image in &images {
        ensure!(image.is_file(), "{} is missing: run `make node-images`", image.display());
    }
    Ok(images)
}

/// The simulator on the bridge's address, where pods reach it: ARM, Entra and the proxy that plays Key
/// Vault's hosts; kv-shop holds the workload's secret, kv-other is where the binding moves to.
async fn simulator(plane: &ControlPlane) -> Result<SimHandle> {
    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.add_vault(SUB, KV_RG, "kv-shop", true);
    seed.add_vault(SUB, KV_RG, "kv-other", true);
    seed.apps.push(SeedApp {
        client_id: SETUP_APP.into(),
        client_secret: SETUP_SECRET.into(),
        object_id: None,
        display_name: Some("setup".into()),
    });
    // The administrator who sets idbind up: Owner of the subscription.
    seed.assign(&idbind_sim::seed::derived_object_id(SETUP_APP), "Owner", &format!("/subscriptions/{SUB}"));
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    let on_bridge = format!("{GATEWAY}:0").parse()?;
    config.https_addr = Some(on_bridge);
    config.proxy_addr = Some(on_bridge);
    config.tls = idbind_sim::config::TlsConfig::Generate { extra_hostnames: vec![GATEWAY.into()] };
    config.entra.extra_ca_files = vec![plane.ca_file()];
    // Azure's propagation, shortened: a removed role still works for this long.
    config.behaviour.role_propagation_ms = 5_000;
    let sim = Simulator::start(config).await?;
    sim.set_secret("kv-shop", "db-password", SECRET_VALUE).await?;
    Ok(sim)
}

/// The operator's own managed identity, federated with its ServiceAccount (what `az identity create` and `az
/// identity federated-credential create` do once per cluster); returns its client id.
async fn operator_identity(plane: &ControlPlane, sim: &SimHandle) -> Result<String> {
    let arm = idbind_testkit::arm_api(sim, SETUP_APP, SETUP_SECRET).map_err(|e| anyhow::anyhow!(e))?;
    let identity: ResourceId = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/idbind-operator"
    )
    .parse()?;
    let ids = arm.put_identity(&identity, "westeurope", &BTreeMap::new()).await?;
    let fic = FederatedCredential {
        name: "idbind".into(),
        issuer: plane.server().to_string(),
        subject: format!("system:serviceaccount:{OPERATOR_NS}:idbind"),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };
    arm.put_federated_credential(&identity, &fic).await?;
    // README step 3: exactly the Azure roles it needs.
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{RG}")];
    idbind_testkit::azure_rbac::grant_operator_roles_now(sim, &ids.principal_id, &identities)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(ids.client_id)
}

/// `helm install` of the chart with the image from `make image`, in a namespace that enforces the restricted
/// Pod Security Standard, configured for the simulator; waits until both replicas are Ready.
fn install_operator(
    plane: &ControlPlane,
    sim: &SimHandle,
    client_id: &str,
    figures: &mut Figures,
) -> Result<()> {
    plane.kubectl_ok(&["create", "namespace", OPERATOR_NS])?;
    plane.kubectl_ok(&[
        "label",
        "namespace",
        OPERATOR_NS,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    config_map_with_ca(plane, OPERATOR_NS, sim)?;
    let values = json!({
        "image": {"repository": "idbind.local/idbind", "tag": env!("CARGO_PKG_VERSION"), "pullPolicy": "Never"},
        "config": {
            "clusterName": "node-e2e", "oidcIssuer": plane.server(), "subscriptionId": SUB,
            "resourceGroup": RG, "location": "westeurope", "cloud": "custom",
            "armEndpoint": sim.https_url().context("no HTTPS")?,
            "authorityHost": sim.authority_host().context("no authority host")?,
            "caFile": "/etc/idbind/sim-ca/ca.pem", "credential": "workload-identity",
            "clientId": client_id, "tenantId": sim.tenant_id(), "logFormat": "text",
        },
        "serviceAccount": {"annotations": {
            "azure.workload.identity/client-id": client_id, "azure.workload.identity/tenant-id": sim.tenant_id(),
        }},
        "extraVolumes": [{"name": "sim-ca", "configMap": {"name": "sim-ca"}}],
        "extraVolumeMounts": [{"name": "sim-ca", "mountPath": "/etc/idbind/sim-ca", "readOnly": true}],
    });
    let values_file = node::state_dir().join("values.json");
    std::fs::write(&values_file, values.to_string())?;
    let installed = Instant::now();
    helm(
        plane,
        &["install", RELEASE, "charts/idbind", "-n", OPERATOR_NS, "-f", &values_file.display().to_string()],
    )?;
    plane
        .kubectl_ok(&["rollout", "status", "-n", OPERATOR_NS, "deployment/idbind", "--timeout=180s"])
        .context("the operator's Deployment did not become available")?;
    figures.note("helm install → both operator pods Ready", format!("{:.1?}", installed.elapsed()));
    Ok(())
}

fn helm(plane: &ControlPlane, args: &[&str]) -> Result<String> {
    let home = node::state_dir().join("helm-home");
    let out = Command::new(workspace_root().join(".cache/tools/helm"))
        .current_dir(workspace_root())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", plane.kubeconfig())
        .args(args)
        .output()
        .context("running helm (make helm builds it)")?;
    ensure!(out.status.success(), "helm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A ConfigMap `sim-ca` with the simulator's CA, which pods trust as Azure's (a TLS-inspecting proxy's CA
/// would be mounted the same way).
fn config_map_with_ca(plane: &ControlPlane, ns: &str, sim: &SimHandle) -> Result<()> {
    let file = node::state_dir().join("sim-ca.pem");
    std::fs::write(&file, sim.ca_pem().context("the simulator has no CA")?)?;
    plane.kubectl_ok(&[
        "create",
        "configmap",
        "sim-ca",
        "-n",
        ns,
        &format!("--from-file=ca.pem={}", file.display()),
    ])?;
    Ok(())
}

fn binding(name: &str, vault: &str) -> Value {
    json!({
        "apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": SHOP},
        "spec": {
            "serviceAccountName": name,
            "keyVaults": [{"name": vault, "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}],
        },
    })
}

fn apply(plane: &ControlPlane, manifest: &Value) -> Result<()> {
    let file = node::state_dir().join(format!("apply-{}.json", std::process::id()));
    std::fs::write(&file, manifest.to_string())?;
    plane.kubectl_ok(&["apply", "-f", &file.display().to_string()])?;
    Ok(())
}

/// The workload pod: ServiceAccount payments, with exactly what the azure-workload-identity webhook injects
/// into a pod labelled `azure.workload.identity/use: "true"` (the client and tenant ids from the
/// ServiceAccount's annotations, which idbind wrote), plus the simulator's CA and proxy. The token lives 600
/// s (the API server's minimum; the webhook's default is 3600) so the kubelet rotates it, at 80 % of its
/// life, while the test runs.
fn start_workload(plane: &ControlPlane, sim: &SimHandle) -> Result<()> {
    config_map_with_ca(plane, SHOP, sim)?;
    let annotation = |key: &str| {
        plane
            .kubectl_ok(&[
                "get",
                "sa",
                "payments",
                "-n",
                SHOP,
                "-o",
                &format!("jsonpath={{.metadata.annotations.azure\\.workload\\.identity/{key}}}"),
            ])
            .map(|v| v.trim().to_string())
    };
    let (client_id, tenant_id) = (annotation("client-id")?, annotation("tenant-id")?);
    ensure!(!client_id.is_empty() && !tenant_id.is_empty(), "idbind did not annotate the ServiceAccount");
    let proxy = sim.proxy_url().context("the simulator has no proxy")?;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "workload", "namespace": SHOP, "labels": {"azure.workload.identity/use": "true"}},
        "spec": {
            "serviceAccountName": "payments",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "workload", "image": "idbind.local/workload:dev", "imagePullPolicy": "Never",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                "env": [
                    {"name": "AZURE_CLIENT_ID", "value": client_id},
                    {"name": "AZURE_TENANT_ID", "value": tenant_id},
                    {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": "/var/run/secrets/azure/tokens/azure-identity-token"},
                    {"name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.com/"},
                    {"name": "VAULT_URL", "value": "https://kv-shop.vault.azure.net"},
                    {"name": "SECRET_NAME", "value": "db-password"},
                    {"name": "READ_INTERVAL", "value": "1s"},
                    {"name": "HTTPS_PROXY", "value": proxy},
                    {"name": "SSL_CERT_FILE", "value": "/etc/sim-ca/ca.pem"},
                ],
                "volumeMounts": [
                    {"name": "azure-identity-token", "mountPath": "/var/run/secrets/azure/tokens", "readOnly": true},
                    {"name": "sim-ca", "mountPath": "/etc/sim-ca", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "azure-identity-token", "projected": {"sources": [{"serviceAccountToken": {
                    "path": "azure-identity-token", "audience": "api://AzureADTokenExchange", "expirationSeconds": 600,
                }}]}},
                {"name": "sim-ca", "configMap": {"name": "sim-ca"}},
            ],
        },
    });
    apply(plane, &pod)
}

/// The attempt number of a workload line.
fn attempt(line: &Value) -> u64 {
    line["attempt"].as_u64().unwrap_or_default()
}

/// Waits until a line of the workload pod's log (in [`SHOP`]) after attempt `after` matches; returns it.
fn wait_for_log(
    plane: &ControlPlane,
    pod: &str,
    after: u64,
    timeout: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let start = Instant::now();
    loop {
        if let Ok(out) = plane.kubectl_ok(&["logs", "-n", SHOP, pod]) {
            let mut lines = out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
            if let Some(line) = lines.find(|l| attempt(l) > after && matches(l)) {
                return Ok(line);
            }
        }
        if start.elapsed() > timeout {
            let tail = plane.kubectl_ok(&["logs", "-n", SHOP, pod, "--tail=5"]).unwrap_or_default();
            bail!("no matching line in {SHOP}/{pod}'s log within {timeout:?}; its tail:\n{tail}");
        }
        thread::sleep(Duration::from_millis(250));
    }
}

fn wait_until(timeout: Duration, what: &str, done: impl Fn() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The pod holding the Lease, once it is a running pod of the release other than `not`.
fn wait_for_leader(plane: &ControlPlane, not: Option<&str>, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        let holder = plane
            .kubectl_ok(&[
                "get",
                "lease",
                "idbind-leader",
                "-n",
                OPERATOR_NS,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .unwrap_or_default();
        let holder = holder.trim();
        if !holder.is_empty() && Some(holder) != not {
            return Ok(holder.to_string());
        }
        ensure!(start.elapsed() < timeout, "no new leader within {timeout:?} (holder {holder:?})");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A changed chart value changes the ConfigMap and its checksum in the pod template, so the pods roll; the
/// new pods carry the new setting and one of them leads.
fn rollout_on_config_change(plane: &ControlPlane, figures: &mut Figures) -> Result<()> {
    let before = pod_names(plane)?;
    let started = Instant::now();
    helm(
        plane,
        &[
            "upgrade",
            RELEASE,
            "charts/idbind",
            "-n",
            OPERATOR_NS,
            "--reuse-values",
            "--set",
            "config.resyncSeconds=300",
        ],
    )?;
    plane
        .kubectl_ok(&["rollout", "status", "-n", OPERATOR_NS, "deployment/idbind", "--timeout=180s"])
        .context("the rollout did not finish")?;
    for old in &before {
        plane.kubectl_ok(&[
            "wait",
            "--for=delete",
            "-n",
            OPERATOR_NS,
            &format!("pod/{old}"),
            "--timeout=60s",
        ])?;
    }
    let after = pod_names(plane)?;
    ensure!(after.len() == 2 && after.iter().all(|p| !before.contains(p)), "{before:?} → {after:?}");
    let resync = plane.kubectl_ok(&[
        "get",
        "cm",
        "idbind-config",
        "-n",
        OPERATOR_NS,
        "-o",
        "jsonpath={.data.IDBIND_RESYNC_SECONDS}",
    ])?;
    ensure!(resync.trim() == "300", "the ConfigMap says {resync}");
    let leader = wait_for_leader(plane, None, Duration::from_secs(60))?;
    wait_until(Duration::from_secs(60), "a new pod to lead", || {
        Ok(pod_names(plane)?.contains(&wait_for_leader(plane, None, Duration::from_secs(5))?))
    })?;
    figures
        .note("helm upgrade (changed ConfigMap value) → rollout done", format!("{:.1?}", started.elapsed()));
    println!("after the rollout {leader} leads");
    Ok(())
}

fn pod_names(plane: &ControlPlane) -> Result<Vec<String>> {
    let out = plane.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        OPERATOR_NS,
        "-l",
        "app.kubernetes.io/name=idbind",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
}

/// A replica whose /readyz fails is taken out of the Service's endpoints and put back once it passes. A
/// leader is ready only once its bindings cache holds a full list: with `list` on bindings taken from the
/// operator's ClusterRole, the standby that takes over cannot fill it, answers 503, and the kubelet's probe
/// takes it out of the Service while the new standby stays in; with the rule back it fills the cache and
/// returns.
fn readiness_gates_endpoints(plane: &ControlPlane, figures: &mut Figures) -> Result<()> {
    let role = plane.kubectl_ok(&["get", "clusterrole", "idbind", "-o", "json"])?;
    let mut narrowed: Value = serde_json::from_str(&role)?;
    let rules = narrowed["rules"].as_array_mut().context("the ClusterRole has no rules")?;
    let bindings_rule = rules
        .iter_mut()
        .find(|r| r["resources"] == json!(["workloadidentitybindings"]))
        .context("no rule for workloadidentitybindings")?;
    bindings_rule["verbs"] = json!(["get", "patch", "update"]);
    apply(plane, &narrowed)?;

    // The standby must be the one to take over, so it is a replica that was Ready before: with the node
    // cordoned the leader's replacement stays Pending until the standby leads.
    let leader = wait_for_leader(plane, None, Duration::from_secs(30))?;
    let standby = pod_names(plane)?.into_iter().find(|p| *p != leader).context("no standby")?;
    let standby_ip = pod_ip(plane, &standby)?;
    ensure!(endpoint_ready(plane, &standby_ip)? == Some(true), "the standby is not in the endpoints");
    plane.kubectl_ok(&["cordon", node::NODE_NAME])?;
    plane.kubectl_ok(&["delete", "pod", "-n", OPERATOR_NS, &leader, "--wait=false"])?;
    let blind = wait_for_leader(plane, Some(&leader), Duration::from_secs(60))?;
    ensure!(blind == standby, "{blind} leads, not the standby {standby}");
    let started = Instant::now();
    wait_until(Duration::from_secs(60), "the blind leader to leave the Service's endpoints", || {
        Ok(endpoint_ready(plane, &standby_ip)? == Some(false))
    })?;
    figures.note(
        "leader's /readyz failing → out of the Service's endpoints (probe: 3 × 5 s)",
        format!("{:.1?}", started.elapsed()),
    );
    let readyz = readyz_status(&standby_ip)?;
    ensure!(readyz == 503, "the blind leader's /readyz answered {readyz}");

    // The replacement starts as a standby, which is ready, and joins the endpoints.
    plane.kubectl_ok(&["uncordon", node::NODE_NAME])?;
    wait_until(Duration::from_secs(60), "the replacement in the endpoints", || {
        let pods = pod_names(plane)?;
        let Some(replacement) = pods.iter().find(|p| **p != standby && **p != leader) else {
            return Ok(false);
        };
        Ok(endpoint_ready(plane, &pod_ip(plane, replacement)?)? == Some(true))
    })?;
    let blind_ip = standby_ip;

    let mut restored: Value = serde_json::from_str(&role)?;
    restored["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
    apply(plane, &restored)?;
    let back = Instant::now();
    wait_until(Duration::from_secs(60), "the leader back in the endpoints", || {
        Ok(endpoint_ready(plane, &blind_ip)? == Some(true))
    })?;
    figures.note(
        "list on bindings restored → the leader back in the endpoints",
        format!("{:.1?}", back.elapsed()),
    );
    ensure!(readyz_status(&blind_ip)? == 200, "the leader's /readyz does not pass");
    Ok(())
}

fn pod_ip(plane: &ControlPlane, pod: &str) -> Result<String> {
    let ip = plane.kubectl_ok(&["get", "pod", "-n", OPERATOR_NS, pod, "-o", "jsonpath={.status.podIP}"])?;
    ensure!(!ip.trim().is_empty(), "{pod} has no IP");
    Ok(ip.trim().to_string())
}

/// Whether the metrics Service's EndpointSlices list `ip` as ready (None: not listed).
fn endpoint_ready(plane: &ControlPlane, ip: &str) -> Result<Option<bool>> {
    let slices: Value = serde_json::from_str(&plane.kubectl_ok(&[
        "get",
        "endpointslices",
        "-n",
        OPERATOR_NS,
        "-l",
        "kubernetes.io/service-name=idbind-metrics",
        "-o",
        "json",
    ])?)?;
    let endpoints = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten());
    Ok(endpoints
        .filter(|e| e["addresses"].as_array().is_some_and(|a| a.iter().any(|x| x == ip)))
        .map(|e| e["conditions"]["ready"] == true)
        .next())
}

/// What `/readyz` of the pod at `ip` answers, asked from the node as the kubelet's probe asks.
fn readyz_status(ip: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&format!("{ip}:8080").parse()?, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /readyz HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).with_context(|| format!("not HTTP: {answer}"))
}
