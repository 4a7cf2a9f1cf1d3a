//! `kubectl apply -k config/default` on the real control plane: it installs every object, the Deployment's
//! pods pass the namespace's "restricted" Pod Security admission, a second apply changes nothing, and the
//! operator's ServiceAccount can do exactly what the operator needs (checked with `kubectl auth can-i`, as
//! the ServiceAccount and its groups).
//!
//! This test binary has a control plane of its own, so installing cluster-scoped objects (the CRD, the
//! ClusterRole) cannot disturb other tests. There is no kubelet (nor a ReplicaSet controller): no pod ever
//! runs, so the assertions are about objects and admission.

use std::{
    io::Write,
    path::PathBuf,
    process::{Output, Stdio},
    sync::OnceLock,
};

use idbind_testenv::{ControlPlane, workspace_root};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const NS: &str = "idbind-system";
const SA: &str = "system:serviceaccount:idbind-system:idbind";

fn config_default() -> String {
    workspace_root().join("config/default").display().to_string()
}

fn plane() -> &'static ControlPlane {
    idbind_testenv::shared()
}

/// The first `kubectl apply -k config/default` of this binary, run once (the tests run concurrently; one
/// installs, all inspect): its stdout and stderr.
fn install() -> &'static (String, String) {
    static OUTPUT: OnceLock<(String, String)> = OnceLock::new();
    OUTPUT.get_or_init(|| {
        let out = plane().kubectl(&["apply", "-k", &config_default()]).output().expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl apply -k config/default failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// Runs kubectl with `input` as JSON on stdin.
fn kubectl_stdin(args: &[&str], input: &Value) -> Result<Output, Box<dyn std::error::Error + Send + Sync>> {
    let mut child =
        plane().kubectl(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(input.to_string().as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn get(args: &[&str]) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&plane().kubectl_ok(&all)?)?)
}

/// Waits until the API server serves both CRDs: their status stops changing.
fn crds_established() -> TestResult {
    plane().kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workloadidentitybindings.idbind.dev",
        "crd/workloadidentitypolicies.idbind.dev",
    ])?;
    Ok(())
}

/// The installed Deployment.
fn deployment() -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    install();
    get(&["get", "-n", NS, "deployment", "idbind"])
}

#[test]
fn apply_k_config_default_creates_every_object_once() -> TestResult {
    let (stdout, stderr) = install();
    // The namespace enforces (and warns about) the restricted Pod Security Standard: a Deployment that would
    // violate it makes kubectl print a warning at apply time.
    assert!(!stderr.contains("violate"), "Pod Security warnings:\n{stderr}");
    let mut created: Vec<&str> = stdout.lines().filter_map(|l| l.strip_suffix(" created")).collect();
    created.sort_unstable();
    pretty_assertions::assert_eq!(
        created,
        [
            "clusterrole.rbac.authorization.k8s.io/idbind",
            "clusterrole.rbac.authorization.k8s.io/idbind-edit",
            "clusterrole.rbac.authorization.k8s.io/idbind-view",
            "clusterrolebinding.rbac.authorization.k8s.io/idbind",
            "configmap/idbind-config",
            "customresourcedefinition.apiextensions.k8s.io/workloadidentitybindings.idbind.dev",
            "customresourcedefinition.apiextensions.k8s.io/workloadidentitypolicies.idbind.dev",
            "deployment.apps/idbind",
            "namespace/idbind-system",
            "poddisruptionbudget.policy/idbind",
            "role.rbac.authorization.k8s.io/idbind-leader-election",
            "rolebinding.rbac.authorization.k8s.io/idbind-leader-election",
            "service/idbind-metrics",
            "serviceaccount/idbind",
            "validatingadmissionpolicy.admissionregistration.k8s.io/idbind-operator-writes",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/idbind-operator-writes",
        ],
        "kubectl apply printed:\n{stdout}"
    );
    crds_established()
}

#[test]
fn the_deployment_runs_the_operator_federated_probed_and_locked_down() -> TestResult {
    let deployment = deployment()?;
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true");
    assert_eq!(deployment["metadata"]["labels"]["app.kubernetes.io/part-of"], "idbind");
    assert_eq!(pod["serviceAccountName"], "idbind");
    assert_eq!(container["args"], json!(["run"]));
    assert_eq!(container["envFrom"][0]["configMapRef"]["name"], "idbind-config");
    let env = |name: &str| {
        container["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    // The operator refuses to annotate its own ServiceAccount: it must know which one that is.
    assert_eq!(env("POD_SERVICE_ACCOUNT")["valueFrom"]["fieldRef"]["fieldPath"], "spec.serviceAccountName");
    // The token file the operator reads is the projected, audience-bound token the pod mounts.
    let token_volume = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["projected"]["sources"][0]["serviceAccountToken"].is_object()))
        .ok_or("no projected token volume")?;
    let projection = &token_volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projection["audience"], "api://AzureADTokenExchange");
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == token_volume["name"]))
        .ok_or("token volume not mounted")?;
    assert_eq!(
        env("AZURE_FEDERATED_TOKEN_FILE")["value"].as_str(),
        Some(
            format!(
                "{}/{}",
                mount["mountPath"].as_str().unwrap_or_default(),
                projection["path"].as_str().unwrap_or_default()
            )
            .as_str()
        )
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &container["securityContext"];
    assert_eq!(
        (sc["readOnlyRootFilesystem"].as_bool(), sc["allowPrivilegeEscalation"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string(),
        "{:#}",
        container["resources"]
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let port_name = &container["ports"][0]["name"];
    assert_eq!(
        (&container["livenessProbe"]["httpGet"]["path"], &container["livenessProbe"]["httpGet"]["port"]),
        (&json!("/healthz"), port_name)
    );
    assert_eq!(
        (&container["readinessProbe"]["httpGet"]["path"], &container["readinessProbe"]["httpGet"]["port"]),
        (&json!("/readyz"), port_name)
    );
    Ok(())
}

#[test]
fn the_deployment_s_pod_passes_admission_in_its_restricted_namespace() -> TestResult {
    let deployment = deployment()?;
    let namespace = get(&["get", "namespace", NS])?;
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    // The pod the Deployment asks for passes admission in its namespace ("restricted" Pod Security, the
    // ServiceAccount's existence): a server-side dry run of a Pod made of the template. (This control plane
    // runs no ReplicaSet controller, so no real pod is created.)
    let pod_manifest = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idbind-admission-check", "namespace": NS, "labels": spec["template"]["metadata"]["labels"]}, "spec": pod});
    let admitted = kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &pod_manifest)?;
    assert!(
        admitted.status.success(),
        "the Deployment's pod is refused: {}",
        String::from_utf8_lossy(&admitted.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&admitted.stderr).contains("violate"),
        "{}",
        String::from_utf8_lossy(&admitted.stderr)
    );
    Ok(())
}

#[test]
fn the_metrics_service_and_the_disruption_budget_select_the_operator_s_pods() -> TestResult {
    let deployment = deployment()?;
    let spec = &deployment["spec"];
    let port_name = &spec["template"]["spec"]["containers"][0]["ports"][0]["name"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let selects_the_pods = |selector: &Value| {
        selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &pod_labels[k] == v))
    };
    let service = get(&["get", "-n", NS, "service", "idbind-metrics"])?;
    assert!(selects_the_pods(&service["spec"]["selector"]), "{service:#}");
    assert_eq!(
        (&service["spec"]["ports"][0]["port"], &service["spec"]["ports"][0]["targetPort"]),
        (&json!(8080), port_name)
    );
    let pdb = get(&["get", "-n", NS, "poddisruptionbudget", "idbind"])?;
    assert!(selects_the_pods(&pdb["spec"]["selector"]["matchLabels"]), "{pdb:#}");
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    let config = get(&["get", "-n", NS, "configmap", "idbind-config"])?;
    assert_eq!(config["data"]["IDBIND_HTTP_ADDR"], "0.0.0.0:8080");
    Ok(())
}

#[test]
fn a_second_apply_changes_nothing() -> TestResult {
    install();
    // Once the CRDs are established nothing changes their status any more.
    crds_established()?;
    // Applying the same tree again is a no-op: the server writes nothing (no resourceVersion moves) and has
    // nothing to diff. (kubectl's own summary cannot tell: it prints "configured" for the PodDisruptionBudget
    // every time, because the selector's patchStrategy=replace makes its computed patch non-empty even when
    // it changes nothing.)
    let versions = || {
        plane().kubectl_ok(&[
            "get",
            "-k",
            &config_default(),
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{'\\n'}{end}",
        ])
    };
    let before = versions()?;
    assert_eq!(before.lines().count(), 16, "{before}");
    let again = plane().kubectl_ok(&["apply", "-k", &config_default()])?;
    assert_eq!(versions()?, before, "a second apply wrote to the server; kubectl printed:\n{again}");
    let diff = plane().kubectl(&["diff", "-k", &config_default()]).output()?;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "kubectl diff after apply:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    Ok(())
}

/// Every setting `idbind run --help` lists is documented in the ConfigMap (as a key, or commented out where
/// it has no safe default) or set by the Deployment, and every key the ConfigMap sets is a setting.
#[test]
fn the_config_map_documents_every_setting() -> TestResult {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_idbind")).args(["run", "--help"]).output()?;
    let help = String::from_utf8(help.stdout)?;
    let settings: Vec<&str> =
        help.split("[env: ").skip(1).filter_map(|rest| rest.split(['=', ']']).next()).collect();
    assert!(
        settings.len() > 20 && settings.contains(&"IDBIND_OIDC_ISSUER"),
        "no settings found in idbind run --help:\n{help}"
    );

    let path: PathBuf = workspace_root().join("config/manager/config_map.yaml");
    let text = std::fs::read_to_string(&path)?;
    let deployment = std::fs::read_to_string(workspace_root().join("config/manager/deployment.yaml"))?;
    let from_deployment = |s: &str| deployment.contains(&format!("- name: {s}\n"));
    let undocumented: Vec<&str> =
        settings.iter().copied().filter(|s| !text.contains(s) && !from_deployment(s)).collect();
    assert!(undocumented.is_empty(), "{} does not mention {undocumented:?}", path.display());
    let config: Value = serde_yaml::from_str(&text)?;
    let data = config["data"].as_object().ok_or("no data")?;
    let unknown: Vec<&String> = data.keys().filter(|k| !settings.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "keys that are no setting of idbind run: {unknown:?}");
    // An empty variable counts as set (clap reads "" as a value), so no key may be empty.
    let empty: Vec<&String> =
        data.iter().filter(|(_, v)| v.as_str().is_none_or(str::is_empty)).map(|(k, _)| k).collect();
    assert!(empty.is_empty(), "empty or non-string values: {empty:?}");

    // The values parse: `idbind run` with exactly this environment (plus the required settings an install
    // adds) gets past argument parsing to its first check of a value.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idbind"))
        .arg("run")
        .env_clear()
        .envs(data.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())))
        .envs([
            ("IDBIND_CLUSTER_NAME", "c"),
            ("AZURE_SUBSCRIPTION_ID", "s"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("IDBIND_OIDC_ISSUER", "http://not-https.example"),
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--oidc-issuer must be an https URL"),
        "idbind run with the ConfigMap's values:\n{stderr}"
    );
    Ok(())
}

/// crds/Kustomization (what config/crd includes) lists every CRD that `make crds` writes.
#[test]
fn the_crd_kustomization_lists_every_crd() -> TestResult {
    let dir = workspace_root().join("crds");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let kustomization: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("Kustomization"))?)?;
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .ok_or("no resources")?
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    listed.sort();
    assert_eq!(listed, on_disk, "crds/Kustomization is out of date");
    Ok(())
}

/// The RBAC objects hold exactly the operator's rules, and `kubectl auth can-i` as the ServiceAccount (with
/// the groups its token carries) grants each of them and refuses the neighbours an over-broad role would let
/// through.
#[test]
fn the_service_account_may_do_exactly_what_the_operator_needs() -> TestResult {
    install();
    let rules = |kind: &str, name: &str| -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let mut args = vec!["get", kind, name];
        if kind == "role" {
            args.extend_from_slice(&["-n", NS]);
        }
        Ok(get(&args)?["rules"].clone())
    };
    pretty_assertions::assert_eq!(
        rules("clusterrole", "idbind")?,
        json!([
            {"apiGroups": ["idbind.dev"], "resources": ["workloadidentitybindings"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": ["idbind.dev"], "resources": ["workloadidentitybindings/status"], "verbs": ["patch"]},
            {"apiGroups": ["idbind.dev"], "resources": ["workloadidentitypolicies"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["idbind.dev"], "resources": ["workloadidentitybindings/finalizers"], "verbs": ["update"]},
        ])
    );
    pretty_assertions::assert_eq!(
        rules("role", "idbind-leader-election")?,
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["idbind-leader"], "verbs": ["get", "update"]},
        ])
    );

    const WIB: &str = "workloadidentitybindings.idbind.dev";
    const WIP: &str = "workloadidentitypolicies.idbind.dev";
    const LEASES: &str = "leases.coordination.k8s.io";
    const LEADER: &str = "leases.coordination.k8s.io/idbind-leader";
    const SPC: &str = "secretproviderclasses.secrets-store.csi.x-k8s.io";
    // kubectl resolves a resource by discovery before it asks (one not served is asked wrongly): the CSI
    // driver's CRD as the tests define it.
    let crd = workspace_root().join("tests/fixtures/secretproviderclass-crd.yaml");
    plane().kubectl_ok(&["apply", "-f", &crd.display().to_string()])?;
    plane().wait_for_discovery(
        "secrets-store.csi.x-k8s.io",
        "secretproviderclasses",
        std::time::Duration::from_secs(60),
    )?;
    // (verb, resource, namespace: None = all namespaces, extra flag)
    let granted: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("get", WIB, Some("default"), None),
        ("list", WIB, None, None),
        ("watch", WIB, None, None),
        ("patch", WIB, Some("default"), None),
        ("update", WIB, Some("default"), None),
        ("patch", WIB, Some("default"), Some("--subresource=status")),
        ("list", WIP, None, None),
        ("watch", WIP, None, None),
        ("get", "serviceaccounts", Some("default"), None),
        ("list", "serviceaccounts", None, None),
        ("watch", "serviceaccounts", None, None),
        ("patch", "serviceaccounts", Some("default"), None),
        ("create", "events.events.k8s.io", Some("default"), None),
        ("patch", "events.events.k8s.io", Some("default"), None),
        ("get", SPC, Some("default"), None),
        ("list", SPC, None, None),
        ("watch", SPC, None, None),
        ("patch", SPC, Some("default"), None),
        ("get", "configmaps", Some("default"), None),
        ("list", "configmaps", None, None),
        ("watch", "configmaps", None, None),
        ("create", "configmaps", Some("default"), None),
        ("patch", "configmaps", Some("default"), None),
        ("delete", "configmaps", Some("default"), None),
        ("update", WIB, Some("default"), Some("--subresource=finalizers")),
        ("create", LEASES, Some(NS), None),
        ("get", LEADER, Some(NS), None),
        ("update", LEADER, Some(NS), None),
    ];
    let refused: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("create", WIB, Some("default"), None),
        ("delete", WIB, Some("default"), None),
        ("update", WIB, Some("default"), Some("--subresource=status")),
        ("create", WIP, None, None),
        ("update", WIP, None, None),
        ("delete", WIP, None, None),
        ("create", "serviceaccounts", Some("default"), None),
        ("delete", "serviceaccounts", Some("default"), None),
        // Patching ServiceAccounts must not extend to minting their tokens.
        ("create", "serviceaccounts", Some("default"), Some("--subresource=token")),
        ("get", "secrets", Some("default"), None),
        ("list", "secrets", Some(NS), None),
        // A SecretProviderClass is never made up or deleted, only its two parameters written; an exported
        // ConfigMap is patched (server-side apply), never replaced, and deleted one by one.
        ("create", SPC, Some("default"), None),
        ("update", SPC, Some("default"), None),
        ("delete", SPC, Some("default"), None),
        ("update", "configmaps", Some("default"), None),
        ("deletecollection", "configmaps", Some("default"), None),
        ("patch", WIB, Some("default"), Some("--subresource=finalizers")),
        ("create", "pods", Some(NS), None),
        ("create", "events", Some("default"), None),
        ("delete", "events.events.k8s.io", Some("default"), None),
        ("list", LEASES, Some(NS), None),
        ("watch", LEASES, Some(NS), None),
        ("delete", LEADER, Some(NS), None),
        ("get", "leases.coordination.k8s.io/someone-else", Some(NS), None),
        ("update", "leases.coordination.k8s.io/someone-else", Some(NS), None),
        ("create", LEASES, Some("default"), None),
        ("get", LEADER, Some("default"), None),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None, None),
        ("impersonate", "users", None, None),
        ("*", "*", None, None),
    ];
    let mut wrong = Vec::new();
    for (want, checks) in [(true, granted), (false, refused)] {
        for &(verb, resource, namespace, extra) in checks {
            let got = can_i(verb, resource, namespace, extra)?;
            if got != want {
                wrong.push(format!(
                    "{verb} {resource} {} {}: {}",
                    namespace.unwrap_or("(all namespaces)"),
                    extra.unwrap_or(""),
                    if got { "granted" } else { "refused" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "unexpected permissions of {SA}:\n{}", wrong.join("\n"));
    Ok(())
}

/// A namespace's editors manage its bindings and its viewers read them, with Kubernetes' own `edit` and
/// `view` roles (the shipped ClusterRoles aggregate into them): no extra RBAC for a team to use `wib`.
#[test]
fn namespace_editors_manage_bindings_and_viewers_read_them_with_their_usual_roles() -> TestResult {
    install();
    crds_established()?;
    let ns = plane().fresh_namespace("team")?;
    for (user, role) in [("editor", "edit"), ("viewer", "view")] {
        plane().kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            "-n",
            &ns,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ])?;
    }
    let can = can_as;
    let wib = "workloadidentitybindings.idbind.dev";
    // The aggregation controller copies the rules into edit and view a moment after they are created.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(can("editor", "create", wib, &ns)? && can("viewer", "list", wib, &ns)?) {
        assert!(std::time::Instant::now() < deadline, "edit and view never got the bindings' rules");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for verb in ["get", "list", "watch", "create", "update", "patch", "delete"] {
        assert!(can("editor", verb, wib, &ns)?, "an editor may {verb} bindings");
    }
    for verb in ["get", "list", "watch"] {
        assert!(can("viewer", verb, wib, &ns)?, "a viewer may {verb} bindings");
        assert!(can("viewer", verb, &format!("{wib}/status"), &ns)?, "a viewer may {verb} their status");
    }
    for verb in ["create", "update", "patch", "delete"] {
        assert!(!can("viewer", verb, wib, &ns)?, "a viewer may not {verb} bindings");
    }
    // Only in their own namespace, and never the status (the operator's) or the cluster's policies.
    assert!(!can("editor", "create", wib, "default")?);
    assert!(!can("editor", "update", &format!("{wib}/status"), &ns)?);
    assert!(!can("editor", "create", "workloadidentitypolicies.idbind.dev", &ns)?);
    Ok(())
}

/// `kubectl auth can-i` as a user; `resource` may end in `/status`, the subresource (which kubectl would
/// otherwise read as an object's name).
fn can_as(
    user: &str,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let (resource, subresource) = resource.split_once('/').map_or((resource, None), |(r, s)| (r, Some(s)));
    let subresource = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", verb, resource, "-n", namespace, "--as", user];
    args.extend(subresource.as_deref());
    let out = plane().kubectl(&args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
}

/// `kubectl auth can-i` as the operator's ServiceAccount, with the groups its tokens carry (so a grant to all
/// ServiceAccounts or to all authenticated users counts too).
fn can_i(
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    extra: Option<&str>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let mut args = vec![
        "auth",
        "can-i",
        verb,
        resource,
        "--as",
        SA,
        "--as-group=system:serviceaccounts",
        "--as-group=system:serviceaccounts:idbind-system",
        "--as-group=system:authenticated",
    ];
    match namespace {
        Some(ns) => args.extend_from_slice(&["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    args.extend(extra);
    let out: Output = plane().kubectl(&args).output()?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (answer.as_str(), out.status.code()) {
        ("yes", Some(0)) => Ok(true),
        ("no", Some(1)) => Ok(false),
        _ => {
            Err(format!("kubectl {}: {answer} {}", args.join(" "), String::from_utf8_lossy(&out.stderr))
                .into())
        }
    }
}
