//! The Helm chart (charts/idbind) with Helm itself (built from Go modules by hack/build-helm.sh) on the real
//! control plane:
//!
//! - `helm lint --strict` passes, with the defaults and with every optional part on;
//! - the chart's crds/ are byte for byte the generated crds/ (Helm installs them from its own folder);
//! - a wrong value fails at install (values.schema.json), and the install then leaves nothing behind;
//! - `helm template` is accepted by a server-side dry run, in a namespace enforcing the "restricted" Pod
//!   Security Standard;
//! - the chart's defaults and `kubectl kustomize config/default` (and config/overlays/verification with
//!   `verification.enabled`) give the same RBAC rules, the same admission policy on the operator's writes,
//!   the same ConfigMap settings and the same pod;
//! - the ServiceMonitor selects the metrics Service, and the PrometheusRule's alerts are over metrics and
//!   labels the operator really exports;
//! - `helm install`, then `idbind run` as the chart's pod would run it (a TokenRequest token of the chart's
//!   ServiceAccount, so the chart's RBAC is all it may do; the environment the Deployment gives its
//!   container, from the chart's ConfigMap) converges a binding against the simulator; `helm upgrade` with
//!   changed values changes the ConfigMap and the Deployment (and verification's admission policy guards the
//!   chart's ServiceAccount); `helm uninstall` leaves no cluster-scoped object but the CRDs.
//!
//! This test binary has a control plane of its own (installing cluster-scoped objects cannot disturb other
//! tests). There is no kubelet: no pod ever runs, so the operator runs as a process of this test, set up from
//! the installed Deployment as the kubelet would set up its container.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind_sim::{FaultAction, FaultRule, SimConfig, SimHandle, Simulator};
use idbind_testenv::{ControlPlane, workspace_root};
use idbind_testkit::{
    e2e::{APP_ID, APP_OBJECT_ID, APP_SECRET, KV_RG, RG, SUB, TestError, TestResult, eventually},
    steps::step,
};
use serde_json::{Value, json};

/// The release and its namespace in the lifecycle test: the names the kustomize tree uses.
const RELEASE: &str = "idbind";
const NS: &str = "idbind-system";

fn chart_dir() -> String {
    workspace_root().join("charts/idbind").display().to_string()
}

fn plane() -> &'static ControlPlane {
    idbind_testenv::shared()
}

/// Helm: `$IDBIND_HELM`, else the build of hack/build-helm.sh.
fn helm_bin() -> PathBuf {
    let path = std::env::var_os("IDBIND_HELM")
        .map_or_else(|| workspace_root().join(".cache/tools/helm"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: build Helm with hack/build-helm.sh (it builds the version pinned in \
         tools/helm/go.mod), \
         or point IDBIND_HELM at a helm binary",
        path.display()
    );
    path
}

/// A helm command with its own cache, config and data folders (never the user's), talking to `plane` when
/// given (template and lint need no cluster).
fn helm(plane: Option<&ControlPlane>, args: &[&str]) -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut cmd = Command::new(helm_bin());
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .args(args);
    if let Some(plane) = plane {
        cmd.env("KUBECONFIG", plane.kubeconfig());
    }
    cmd
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `cmd` and returns its stdout, or fails with everything it printed.
fn ok(mut cmd: Command) -> Result<String, TestError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed:\n{}", text(&out)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on stdin.
fn with_stdin(mut cmd: Command, input: &str) -> Result<Output, TestError> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// The objects of a multi-document YAML stream (empty documents skipped).
fn documents(yaml: &str) -> Result<Vec<Value>, TestError> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(document)?)?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// `helm template <release> charts/idbind -n <namespace>` with `values` (a values file, as JSON), parsed.
fn render(release: &str, namespace: &str, values: &Value) -> Result<Vec<Value>, TestError> {
    documents(&render_text(release, namespace, values)?)
}

fn render_text(release: &str, namespace: &str, values: &Value) -> Result<String, TestError> {
    let file = values_file(&format!("template-{release}-{namespace}"), values)?;
    ok(helm(None, &["template", release, &chart_dir(), "-n", namespace, "-f", &file]))
}

/// Writes `values` to a file of their own (JSON is YAML), named after `name` and unique in this run (the
/// tests run concurrently), and returns its path.
fn values_file(name: &str, values: &Value) -> Result<String, TestError> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-values");
    std::fs::create_dir_all(&dir)?;
    // Helm splits `-f` at commas: the name keeps letters, digits and dashes only.
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{name}-{}-{n}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string_pretty(values)?)?;
    Ok(path.display().to_string())
}

/// `kubectl kustomize <dir>` (config/default, an overlay), parsed.
fn kustomize(dir: &str) -> Result<Vec<Value>, TestError> {
    let mut cmd = Command::new(idbind_testenv::bin_dir().join("kubectl"));
    cmd.args(["kustomize", &workspace_root().join(dir).display().to_string()]);
    documents(&ok(cmd)?)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, TestError> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .ok_or_else(|| format!("no {kind} {name} among {:?}", kinds_and_names(objects)).into())
}

fn kinds_and_names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// Values that turn every optional part of the chart on.
fn everything_on() -> Value {
    json!({
        "image": {"repository": "registry.example/idbind", "tag": "0.1.0",
                  "digest": format!("sha256:{}", "a".repeat(64))},
        "verification": {"enabled": true},
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
                    "prometheusRule": {"enabled": true}},
        "serviceAccount": {"annotations": {"azure.workload.identity/client-id": APP_ID}},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "extraEnvFrom": [{"secretRef": {"name": "idbind-azure"}}],
    })
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_with_every_option_on() -> TestResult {
    for (what, values) in [("defaults", json!({})), ("every option on", everything_on())] {
        let file = values_file(&format!("lint-{what}"), &values)?;
        let out = helm(None, &["lint", "--strict", &chart_dir(), "-f", &file]).output()?;
        assert!(out.status.success(), "helm lint --strict with {what}:\n{}", text(&out));
        assert!(text(&out).contains("1 chart(s) linted, 0 chart(s) failed"), "{}", text(&out));
    }
    Ok(())
}

/// Helm installs CRDs from the chart's crds/ folder only; they must be the generated ones, byte for byte.
#[test]
fn the_chart_s_crds_are_the_generated_crds() -> TestResult {
    let yaml_files = |dir: &Path| -> Result<BTreeMap<String, String>, TestError> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                files.insert(name, std::fs::read_to_string(&path)?);
            }
        }
        Ok(files)
    };
    let generated = yaml_files(&workspace_root().join("crds"))?;
    let in_chart = yaml_files(&workspace_root().join("charts/idbind/crds"))?;
    assert!(!generated.is_empty());
    assert_eq!(
        in_chart.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "charts/idbind/crds/ must hold exactly the files of crds/ (cp crds/*.yaml charts/idbind/crds/)"
    );
    for (name, text) in &generated {
        assert!(
            in_chart[name] == *text,
            "charts/idbind/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/idbind/crds/"
        );
    }
    Ok(())
}

/// values.schema.json (and the chart's own checks) refuse wrong values before anything reaches the cluster.
#[test]
fn a_wrong_value_fails_at_install_and_leaves_nothing() -> TestResult {
    let cases: &[(&str, Value, &str)] = &[
        ("a number as text", json!({"config": {"resyncSeconds": "ten"}}), "/config/resyncSeconds"),
        ("a misspelt setting", json!({"config": {"resyncSecond": 60}}), "resyncSecond"),
        ("a misspelt top-level key", json!({"replicas": 2}), "replicas"),
        ("an unknown cloud", json!({"config": {"cloud": "azure"}}), "/config/cloud"),
        ("an unknown credential", json!({"config": {"credential": "password"}}), "/config/credential"),
        (
            "a subscription that is no GUID",
            json!({"config": {"subscriptionId": "prod"}}),
            "/config/subscriptionId",
        ),
        ("an http issuer", json!({"config": {"oidcIssuer": "http://issuer.example"}}), "/config/oidcIssuer"),
        ("zero concurrency", json!({"config": {"concurrency": 0}}), "/config/concurrency"),
        ("a boolean as text", json!({"config": {"openNamespaces": "yes"}}), "/config/openNamespaces"),
        ("a custom cloud without endpoints", json!({"config": {"cloud": "custom"}}), "armEndpoint"),
        ("a tag as digest", json!({"image": {"digest": "latest"}}), "/image/digest"),
        (
            "an unknown verification mode",
            json!({"verification": {"enabled": true, "mode": "all"}}),
            "/verification/mode",
        ),
        (
            "the client secret in the ConfigMap",
            json!({"extraConfig": {"AZURE_CLIENT_SECRET": "s3cret"}}),
            "AZURE_CLIENT_SECRET",
        ),
        (
            "a setting the chart owns, through extraConfig",
            json!({"extraConfig": {"IDBIND_RESYNC_SECONDS": "5"}}),
            "IDBIND_RESYNC_SECONDS",
        ),
        (
            "two replicas without leader election",
            json!({"leaderElection": {"enabled": false}}),
            "replicaCount > 1 needs leaderElection.enabled",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, values, named) in cases {
        let file = values_file(&format!("wrong-{what}"), values)?;
        let out = helm(None, &["template", "idbind", &chart_dir(), "-f", &file]).output()?;
        if out.status.success() || !text(&out).contains(named) {
            wrong.push(format!(
                "{what}: exit {:?}, expected a refusal naming {named}:\n{}",
                out.status.code(),
                text(&out)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The same at `helm install` against the cluster: refused, no release recorded, nothing created.
    let plane = plane();
    let ns = plane.fresh_namespace("helm-wrong")?;
    let file = values_file("wrong-install", &json!({"config": {"resyncSeconds": "ten"}}))?;
    let out = helm(Some(plane), &["install", "wrong", &chart_dir(), "-n", &ns, "-f", &file]).output()?;
    assert!(!out.status.success() && text(&out).contains("/config/resyncSeconds"), "{}", text(&out));
    let releases = ok(helm(Some(plane), &["list", "-n", &ns, "-a", "-q"]))?;
    assert_eq!(releases.trim(), "", "a refused install recorded a release");
    // (Helm installs crds/ before it checks the values, so the CRDs may be there: nothing else is.)
    let cluster_wide = plane.kubectl_ok(&["get", "clusterroles,clusterrolebindings", "-o", "name"])?;
    assert!(!cluster_wide.contains("wrong-idbind"), "{cluster_wide}");
    let left = plane.kubectl_ok(&[
        "get",
        "configmaps,serviceaccounts,deployments,roles",
        "-n",
        &ns,
        "-o",
        "name",
    ])?;
    assert!(left.lines().all(|l| l.ends_with("/kube-root-ca.crt") || l.ends_with("/default")), "{left}");
    Ok(())
}

/// The rendered chart, with the defaults and with verification on, passes the API server's validation and
/// admission (a server-side dry run), in a namespace that enforces the "restricted" Pod Security Standard:
/// the Deployment's pod meets it.
#[test]
fn helm_template_passes_a_server_side_dry_run() -> TestResult {
    let plane = plane();
    let ns = plane.fresh_namespace("helm-dry-run")?;
    plane.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ])?;
    for (what, values) in
        [("defaults", json!({})), ("verification on", json!({"verification": {"enabled": true}}))]
    {
        let manifest = render_text("dry-run", &ns, &values)?;
        let objects = documents(&manifest)?;
        let out = with_stdin(plane.kubectl(&["apply", "--dry-run=server", "-f", "-"]), &manifest)?;
        assert!(out.status.success(), "server-side dry run with {what}:\n{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("violate"), "Pod Security warnings with {what}:\n{stderr}");
        // Every object was sent (kubectl prints one line per object).
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.lines().filter(|l| l.ends_with("(server dry run)")).count(),
            objects.len(),
            "{stdout}"
        );
    }
    Ok(())
}

/// What the two install paths must agree on: the chart's defaults (release `idbind` in `idbind-system`) and
/// `kubectl kustomize config/default` give the same RBAC rules and subjects, the same ConfigMap settings
/// (keys and values), and the same pod: security contexts, container, volumes, replicas and rollout.
#[test]
fn the_chart_and_config_default_render_the_same_rbac_settings_and_pod() -> TestResult {
    let chart = render(RELEASE, NS, &json!({}))?;
    let kustomized = kustomize("config/default")?;
    let same = |kind: &str, name: &str, path: &[&str]| -> TestResult {
        let pick = |objects: &[Value]| -> Result<Value, TestError> {
            let mut v = find(objects, kind, name)?.clone();
            for p in path {
                v = v[*p].take();
            }
            Ok(v)
        };
        let (from_chart, from_kustomize) = (pick(&chart)?, pick(&kustomized)?);
        assert!(!from_kustomize.is_null(), "{kind} {name} has no {path:?} in config/default");
        pretty_assertions::assert_eq!(
            from_chart,
            from_kustomize,
            "{kind} {name} {path:?}: chart vs config/default"
        );
        Ok(())
    };
    same("ClusterRole", "idbind", &["rules"])?;
    same("ClusterRoleBinding", "idbind", &["roleRef"])?;
    same("ClusterRoleBinding", "idbind", &["subjects"])?;
    // The admission policy on the operator's own writes: the same rules, for the same ServiceAccount.
    same("ValidatingAdmissionPolicy", "idbind-operator-writes", &["spec"])?;
    same("ValidatingAdmissionPolicyBinding", "idbind-operator-writes", &["spec"])?;
    same("Role", "idbind-leader-election", &["rules"])?;
    for user_role in ["idbind-edit", "idbind-view"] {
        same("ClusterRole", user_role, &["rules"])?;
        let aggregation = |objects: &[Value]| -> Result<Vec<String>, TestError> {
            let labels = find(objects, "ClusterRole", user_role)?["metadata"]["labels"].clone();
            let labels = labels.as_object().cloned().unwrap_or_default();
            Ok(labels.keys().filter(|k| k.contains("aggregate-to-")).cloned().collect())
        };
        assert_eq!(
            aggregation(&chart)?,
            aggregation(&kustomized)?,
            "{user_role}: aggregated into the same roles"
        );
    }
    same("RoleBinding", "idbind-leader-election", &["subjects"])?;
    same("ConfigMap", "idbind-config", &["data"])?;
    same("Deployment", "idbind", &["spec", "replicas"])?;
    same("Deployment", "idbind", &["spec", "strategy"])?;
    for field in
        ["securityContext", "containers", "volumes", "serviceAccountName", "terminationGracePeriodSeconds"]
    {
        same("Deployment", "idbind", &["spec", "template", "spec", field])?;
    }
    same("Service", "idbind-metrics", &["spec", "ports"])?;
    same("Service", "idbind-metrics", &["metadata", "annotations"])?;
    same("PodDisruptionBudget", "idbind", &["spec", "minAvailable"])?;

    // The pod's labels: the webhook's opt-in, and every label the chart's selectors (Deployment, Service,
    // PodDisruptionBudget, the spread constraint) use.
    let deployment = find(&chart, "Deployment", "idbind")?;
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["azure.workload.identity/use"], "true");
    let selects_the_pods = |selector: &Value| {
        selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &pod_labels[k] == v))
    };
    let pod = &deployment["spec"]["template"]["spec"];
    for selector in [
        &deployment["spec"]["selector"]["matchLabels"],
        &find(&chart, "Service", "idbind-metrics")?["spec"]["selector"],
        &find(&chart, "PodDisruptionBudget", "idbind")?["spec"]["selector"]["matchLabels"],
        &pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
    ] {
        assert!(selects_the_pods(selector), "{selector} does not select the pods ({pod_labels})");
    }
    let mut spread = pod["topologySpreadConstraints"].clone();
    let mut kustomized_spread =
        find(&kustomized, "Deployment", "idbind")?["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .clone();
    spread[0]["labelSelector"].take();
    kustomized_spread[0]["labelSelector"].take();
    assert_eq!(spread, kustomized_spread);

    // Verification: the chart's option and the kustomize overlay grant and guard the same, and set the same.
    let chart = render(RELEASE, NS, &json!({"verification": {"enabled": true}}))?;
    let kustomized = kustomize("config/overlays/verification")?;
    for (kind, name, path) in [
        ("ClusterRole", "idbind-verification", &["rules"][..]),
        ("ClusterRoleBinding", "idbind-verification", &["subjects"][..]),
        ("ValidatingAdmissionPolicy", "idbind-verification-tokens", &["spec"][..]),
        ("ValidatingAdmissionPolicyBinding", "idbind-verification-tokens", &["spec"][..]),
        ("ConfigMap", "idbind-config", &["data"][..]),
    ] {
        let pick = |objects: &[Value]| -> Result<Value, TestError> {
            let mut v = find(objects, kind, name)?.clone();
            for p in path {
                v = v[*p].take();
            }
            Ok(v)
        };
        pretty_assertions::assert_eq!(
            pick(&chart)?,
            pick(&kustomized)?,
            "{kind} {name}: chart vs the overlay"
        );
    }
    Ok(())
}

/// Every setting the ConfigMap documents is a value of the chart: with every value set, the chart's ConfigMap
/// carries every setting of `idbind run` except those the Deployment sets and the client secret (which never
/// goes into a ConfigMap).
#[test]
fn every_setting_of_the_config_map_is_a_value() -> TestResult {
    let help = Command::new(env!("CARGO_BIN_EXE_idbind")).args(["run", "--help"]).output()?;
    let help = String::from_utf8(help.stdout)?;
    let settings: Vec<&str> =
        help.split("[env: ").skip(1).filter_map(|rest| rest.split(['=', ']']).next()).collect();
    assert!(settings.len() > 20, "no settings found in idbind run --help:\n{help}");
    let values = json!({
        "leaderElection": {"leaseName": "custom-leader"},
        "verification": {"enabled": true, "mode": "federation"},
        "config": {
            "clusterName": "aks-prod-weu", "oidcIssuer": "https://issuer.example/tenant/guid/",
            "subscriptionId": SUB, "resourceGroup": RG, "location": "westeurope", "cloud": "custom",
            "armEndpoint": "https://management.example.internal",
            "authorityHost": "https://login.example.internal/",
            "armAudience": "https://management.example.internal", "caFile": "/etc/idbind/ca/ca.pem",
            "credential": "client-secret", "clientId": APP_ID, "tenantId": APP_OBJECT_ID,
            "concurrency": 16, "resyncSeconds": 1_000_000, "federationCheckResyncs": 3,
            "watchNamespace": "team-a",
            "httpAddr": "0.0.0.0:9090", "budgetScale": 0.5, "logFormat": "text",
            "verifyFederationWindowSeconds": 60, "verifyAccessWindowSeconds": 120,
            "keyvaultAudience": "https://vault.example.internal", "allowAnyRole": true,
            "allowOtherSubscriptions": true, "allowExistingIdentity": true, "openNamespaces": true,
        },
    });
    let chart = render("idbind", NS, &values)?;
    let data = find(&chart, "ConfigMap", "idbind-config")?["data"].as_object().cloned().ok_or("no data")?;
    let from_deployment = ["POD_NAME", "POD_NAMESPACE", "POD_SERVICE_ACCOUNT", "AZURE_FEDERATED_TOKEN_FILE"];
    let missing: Vec<&&str> = settings
        .iter()
        .filter(|s| !data.contains_key(**s) && !from_deployment.contains(s) && **s != "AZURE_CLIENT_SECRET")
        .collect();
    assert!(missing.is_empty(), "settings of idbind run no value of the chart sets: {missing:?}\n{data:#?}");
    // Numbers are written as the operator parses them (a large one not in exponent notation).
    assert_eq!(data["IDBIND_RESYNC_SECONDS"], "1000000");
    assert_eq!(data["IDBIND_BUDGET_SCALE"], "0.5");
    assert_eq!(data["IDBIND_LEASE_NAME"], "custom-leader");
    assert_eq!(data["IDBIND_VERIFY"], "federation");
    // The Lease the operator is told to use is the one its Role grants, and the port it serves is the
    // container's and the Service's.
    let role = find(&chart, "Role", "idbind-leader-election")?;
    assert_eq!(role["rules"][1]["resourceNames"], json!(["custom-leader"]));
    let deployment = find(&chart, "Deployment", "idbind")?;
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 9090);
    assert_eq!(find(&chart, "Service", "idbind-metrics")?["spec"]["ports"][0]["port"], 9090);

    // These values parse: `idbind run` with exactly this environment gets past argument parsing.
    let out = Command::new(env!("CARGO_BIN_EXE_idbind"))
        .arg("run")
        .env_clear()
        .envs(data.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())))
        .env("IDBIND_OIDC_ISSUER", "http://not-https.example")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--oidc-issuer must be an https URL"),
        "idbind run with the chart's values:\n{stderr}"
    );
    Ok(())
}

/// The optional Prometheus Operator objects: the ServiceMonitor scrapes the metrics Service's port, and each
/// alert of the PrometheusRule has its expression, duration, severity and text. (That their metrics and
/// labels are the operator's own is checked on the running operator, in the lifecycle test.)
#[test]
fn the_service_monitor_and_the_alerts_are_off_by_default_and_well_formed_when_on() -> TestResult {
    let kinds = |objects: &[Value]| {
        objects.iter().filter_map(|o| o["kind"].as_str().map(String::from)).collect::<Vec<_>>()
    };
    let rendered = render(RELEASE, NS, &json!({}))?;
    let defaults = kinds(&rendered);
    assert!(!defaults.iter().any(|k| k == "ServiceMonitor" || k == "PrometheusRule"), "{defaults:?}");
    // Verification's admission policy comes with verification; the one on the operator's writes always.
    let policies: Vec<String> = kinds_and_names(&rendered)
        .into_iter()
        .filter(|k| k.starts_with("ValidatingAdmissionPolicy"))
        .collect();
    assert_eq!(
        policies,
        [
            "ValidatingAdmissionPolicy/idbind-operator-writes",
            "ValidatingAdmissionPolicyBinding/idbind-operator-writes"
        ],
        "{defaults:?}"
    );

    let chart = render(RELEASE, NS, &everything_on())?;
    let service = find(&chart, "Service", "idbind-metrics")?;
    let monitor = find(&chart, "ServiceMonitor", "idbind")?;
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().ok_or("no selector")?;
    assert!(!selector.is_empty() && selector.iter().all(|(k, v)| &service["metadata"]["labels"][k] == v));
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!([NS]));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let rules = alerts(&chart)?;
    let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        names,
        ["IdbindNoLeader", "IdbindBindingsNotReady", "IdbindArmThrottled", "IdbindReconcileErrors"]
    );
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap_or_default();
        assert!(
            expr.contains(&format!("namespace=\"{NS}\"")) && expr.contains("job=\"idbind-metrics\""),
            "{rule}"
        );
        assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{rule}");
        assert_eq!(expr.matches('{').count(), expr.matches('}').count(), "{rule}");
        assert!(rule["for"].as_str().is_some_and(|f| f.ends_with('m')), "{rule}");
        assert_eq!(rule["labels"]["severity"], "warning");
        assert!(rule["annotations"]["summary"].is_string() && rule["annotations"]["description"].is_string());
    }
    // Without leader election no replica ever leads: no alert for it.
    let single = render(
        RELEASE,
        NS,
        &json!({"replicaCount": 1, "leaderElection": {"enabled": false},
                                              "metrics": {"prometheusRule": {"enabled": true}}}),
    )?;
    let names: Vec<String> =
        alerts(&single)?.iter().filter_map(|r| r["alert"].as_str().map(String::from)).collect();
    assert!(!names.iter().any(|n| n == "IdbindNoLeader"), "{names:?}");
    assert!(
        !kinds(&single).iter().any(|k| k == "PodDisruptionBudget" || k == "Role"),
        "{:?}",
        kinds(&single)
    );
    Ok(())
}

/// The PromQL of every panel of the Grafana dashboard (config/monitoring, the chart's copy is the same).
fn dashboard_queries() -> Result<Vec<String>, TestError> {
    let file = workspace_root().join("config/monitoring/idbind-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    Ok(panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect())
}

/// config/monitoring (for kustomize installs) holds what the chart's monitoring values render: the same
/// alerts and the same dashboard.
#[test]
fn config_monitoring_and_the_chart_have_the_same_alerts_and_dashboard() -> TestResult {
    let root = workspace_root();
    let dashboard = std::fs::read_to_string(root.join("config/monitoring/idbind-dashboard.json"))?;
    let chart_copy = std::fs::read_to_string(root.join("charts/idbind/dashboards/idbind.json"))?;
    assert_eq!(
        chart_copy, dashboard,
        "charts/idbind/dashboards/idbind.json differs from config/monitoring's"
    );
    let kustomized = kustomize("config/monitoring")?;
    let values =
        json!({"metrics": {"prometheusRule": {"enabled": true}, "grafanaDashboard": {"enabled": true}}});
    let chart = render(RELEASE, NS, &values)?;
    let spec = |objects: &[Value]| -> Result<Value, TestError> {
        Ok(find(objects, "PrometheusRule", "idbind")?["spec"].clone())
    };
    pretty_assertions::assert_eq!(
        spec(&chart)?,
        spec(&kustomized)?,
        "the alerts: chart vs config/monitoring"
    );
    for objects in [&chart, &kustomized] {
        let map = find(objects, "ConfigMap", "idbind-grafana-dashboard")?;
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1", "{map}");
        let data: Value =
            serde_json::from_str(map["data"]["idbind-dashboard.json"].as_str().unwrap_or_default())?;
        assert_eq!(data, serde_json::from_str::<Value>(&dashboard)?, "the dashboard in the ConfigMap");
    }
    Ok(())
}

/// The rules of the chart's PrometheusRule.
fn alerts(chart: &[Value]) -> Result<Vec<Value>, TestError> {
    let rule = find(chart, "PrometheusRule", "idbind")?;
    Ok(rule["spec"]["groups"]
        .as_array()
        .ok_or("no groups")?
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect())
}

/// The metric names an expression reads, each with the label names it matches on (other than the scrape's
/// namespace and job).
fn metrics_read(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("idbind_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = Vec::new();
        if let Some(matchers) = tail[end..].strip_prefix('{').and_then(|m| m.split('}').next()) {
            for matcher in matchers.split(',') {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or_default().trim().to_string();
                if !label.is_empty() && label != "namespace" && label != "job" {
                    labels.push(label);
                }
            }
        }
        // `by (category)`: the label the alert is split by.
        if let Some(by) = rest[..at].rsplit("by (").next().filter(|_| rest[..at].contains("by (")) {
            labels.extend(by.split(')').next().unwrap_or_default().split(',').map(|l| l.trim().to_string()));
        }
        out.push((name, labels));
        rest = &tail[end..];
    }
    out
}

// --- The lifecycle: install, run, upgrade, uninstall ------------------------------------------------------

/// The simulator as the e2e harness seeds it (one subscription, the identities' resource group, an RBAC
/// vault, the operator's app with the Azure roles README gives it), trusting this control plane's issuer.
async fn simulator(plane: &ControlPlane) -> Result<SimHandle, TestError> {
    let mut seed = idbind_testkit::e2e::seed();
    // The operator's identity holds exactly the Azure roles README "Install on AKS" step 3 lists.
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{RG}")];
    idbind_testkit::azure_rbac::grant_operator_roles(&mut seed, APP_OBJECT_ID, &identities)?;
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    // The simulator's Entra endpoint fetches the API server's JWKS over HTTPS.
    config.entra.extra_ca_files.push(plane.ca_file());
    Ok(Simulator::start(config).await?)
}

/// A Secret's data, decoded, as NUL-separated key and value pairs (kubectl's go-template).
const SECRET_AS_PAIRS: &str =
    r#"go-template={{range $k, $v := .data}}{{$k}}{{"\x00"}}{{$v | base64decode}}{{"\x00"}}{{end}}"#;

/// `idbind run` as the kubelet would start the chart's container: the container's args; the environment its
/// envFrom (ConfigMaps, Secrets) and env (values, Downward API fields) give; signed in with a TokenRequest
/// token of the pod's ServiceAccount (as its projected token would). Killed when dropped.
struct OperatorPod {
    child: Child,
    log: PathBuf,
}

impl OperatorPod {
    fn start(
        plane: &ControlPlane,
        namespace: &str,
        deployment: &Value,
        pod_name: &str,
    ) -> Result<Self, TestError> {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let service_account = pod["serviceAccountName"].as_str().ok_or("no serviceAccountName")?;
        let dir = plane.dir().join("helm-operator");
        std::fs::create_dir_all(&dir)?;
        let token =
            plane.kubectl_ok(&["create", "token", service_account, "-n", namespace, "--duration=2h"])?;
        let kubeconfig = dir.join(format!("{pod_name}.kubeconfig"));
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "local",
                          "cluster": {"server": plane.server(), "certificate-authority": plane.ca_file()}}],
            "users": [{"name": service_account, "user": {"token": token.trim()}}],
            "contexts": [{"name": "pod",
                          "context": {"cluster": "local", "user": service_account, "namespace": namespace}}],
        });
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config)?)?;

        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let cm: Value = serde_json::from_str(&plane.kubectl_ok(&[
                    "get",
                    "configmap",
                    name,
                    "-n",
                    namespace,
                    "-o",
                    "json",
                ])?)?;
                for (k, v) in cm["data"].as_object().into_iter().flatten() {
                    env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            } else if let Some(name) = source["secretRef"]["name"].as_str() {
                let pairs =
                    plane.kubectl_ok(&["get", "secret", name, "-n", namespace, "-o", SECRET_AS_PAIRS])?;
                let mut parts = pairs.split('\0');
                while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                    env.insert(k.to_string(), v.to_string());
                }
            } else {
                return Err(format!("an envFrom source this test cannot resolve: {source}").into());
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().ok_or("env without a name")?.to_string();
            let value = match (var["value"].as_str(), var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
                (Some(v), _) => v.to_string(),
                (None, Some("metadata.name")) => pod_name.to_string(),
                (None, Some("metadata.namespace")) => namespace.to_string(),
                (None, Some("spec.serviceAccountName")) => service_account.to_string(),
                _ => return Err(format!("an env entry this test cannot resolve: {var}").into()),
            };
            env.insert(name, value);
        }

        let log = dir.join(format!("{pod_name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_idbind"));
        cmd.args(container["args"].as_array().into_iter().flatten().filter_map(Value::as_str))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&env)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::options().append(true).open(&log)?);
        Ok(OperatorPod { child: idbind_testenv::spawn_tied(cmd)?, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every cluster-scoped object (but namespaces, which tests create), by kind and name.
fn cluster_scoped_objects(plane: &ControlPlane) -> Result<Vec<String>, TestError> {
    let kinds = plane.kubectl_ok(&[
        "api-resources",
        "--namespaced=false",
        "--verbs=list",
        "-o",
        "name",
        "--cached=false",
    ])?;
    let kinds: Vec<&str> = kinds.lines().filter(|k| *k != "namespaces" && !k.is_empty()).collect();
    let mut names: Vec<String> =
        plane.kubectl_ok(&["get", &kinds.join(","), "-o", "name"])?.lines().map(String::from).collect();
    names.sort();
    Ok(names)
}

fn get_json(plane: &ControlPlane, args: &[&str]) -> Result<Value, TestError> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&plane.kubectl_ok(&all)?)?)
}

fn ready(plane: &ControlPlane, ns: &str, name: &str) -> Result<bool, TestError> {
    Ok(plane.kubectl_ok(&[
        "get",
        "wib",
        name,
        "-n",
        ns,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{READY}\")].status}}"),
    ])? == "True")
}

/// `kubectl create token` as the chart's ServiceAccount (impersonated): Ok on success, Err with kubectl's
/// refusal.
fn token_as_operator(plane: &ControlPlane, ns: &str, of: &str, audience: &str) -> Result<(), String> {
    let out = plane
        .kubectl(&[
            "create",
            "token",
            of,
            "-n",
            ns,
            "--audience",
            audience,
            "--duration=10m",
            &format!("--as=system:serviceaccount:{NS}:idbind"),
            "--as-group=system:serviceaccounts",
            "--as-group=system:authenticated",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

#[tokio::test(flavor = "multi_thread")]
async fn install_run_upgrade_and_uninstall_with_helm() -> TestResult {
    let plane = plane();
    let sim = simulator(plane).await?;
    // The release namespace, as the chart's README says to create it.
    plane.kubectl_ok(&["create", "namespace", NS])?;
    plane.kubectl_ok(&[
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ])?;
    let before = cluster_scoped_objects(plane)?;

    let dir = plane.dir().join("helm-operator");
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem().ok_or("the simulator has no CA")?)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // The values an install for this cluster and its Azure (the simulator) needs; the client secret, the
    // simulator's stand-in for workload identity, comes from a Secret named in extraEnvFrom. Installed with
    // open namespaces, as every release before closed namespaces behaved (`requirePolicy: false`, the old
    // default), and upgraded to the default below.
    let mut values = json!({
        "config": {
            "clusterName": "helm-e2e", "oidcIssuer": plane.server(), "subscriptionId": SUB,
            "tenantId": sim.tenant_id(), "clientId": APP_ID, "credential": "client-secret",
            "resourceGroup": RG, "location": "westeurope", "cloud": "custom",
            "armEndpoint": sim.https_url().ok_or("no HTTPS listener")?,
            "authorityHost": sim.authority_host().ok_or("no authority host")?,
            "caFile": ca.display().to_string(), "httpAddr": format!("127.0.0.1:{port}"),
            "budgetScale": 10, "logFormat": "text",
        },
        "extraEnvFrom": [{"secretRef": {"name": "idbind-azure"}}],
        "serviceAccount": {"annotations": {"azure.workload.identity/client-id": APP_ID}},
    });
    let closed_values = values_file("closed", &values)?;
    values["config"]["openNamespaces"] = json!(true);
    let values = values_file("install", &values)?;
    plane.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "idbind-azure",
        "-n",
        NS,
        &format!("--from-literal=AZURE_CLIENT_SECRET={APP_SECRET}"),
    ])?;

    step("helm install", async {
        let out = ok(helm(Some(plane), &["install", RELEASE, &chart_dir(), "-n", NS, "-f", &values]))?;
        assert!(out.contains("STATUS: deployed"), "{out}");
        // NOTES.txt names the CRD upgrade step.
        assert!(out.contains("kubectl apply --server-side --force-conflicts -f"), "{out}");
        plane.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workloadidentitybindings.idbind.dev",
            "crd/workloadidentitypolicies.idbind.dev",
        ])?;
        plane.wait_for_discovery("idbind.dev", "wib", Duration::from_secs(60))?;
        let sa = get_json(plane, &["get", "serviceaccount", "idbind", "-n", NS])?;
        assert_eq!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"], APP_ID);
        // The documented CRD upgrade step (Helm upgrades no CRD) works on the CRDs Helm installed, when a new
        // chart changed them: Helm's field manager owns their fields, so a plain server-side apply conflicts,
        // and --force-conflicts (as the README and NOTES say) takes them over.
        let crd = "idbind.dev_workloadidentitypolicies.yaml";
        let next = std::fs::read_to_string(workspace_root().join("charts/idbind/crds").join(crd))?
            .replace("they may bring (cluster-scoped).", "they may bring (cluster-scoped, next version).");
        assert!(next.contains("next version"));
        let plain = with_stdin(plane.kubectl(&["apply", "--server-side", "-f", "-"]), &next)?;
        assert!(
            !plain.status.success() && text(&plain).contains("conflict with \"helm\""),
            "{}",
            text(&plain)
        );
        let forced =
            with_stdin(plane.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", "-"]), &next)?;
        assert!(forced.status.success(), "{}", text(&forced));
        let served = plane.kubectl_ok(&[
            "get",
            "crd",
            "workloadidentitypolicies.idbind.dev",
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.description}",
        ])?;
        assert!(served.contains("next version"), "{served}");
        Ok(())
    })
    .await?;

    let deployment = get_json(plane, &["get", "deployment", "idbind", "-n", NS])?;
    let operator = OperatorPod::start(plane, NS, &deployment, "idbind-helm-0")?;
    let shop = plane.fresh_namespace("helm-shop")?;

    step("the operator, as the chart's pod, converges a binding", async {
        // One 429 from ARM on the way, so that the throttling alert's series is exported too.
        sim.set_faults(vec![FaultRule {
            operation: "UserAssignedIdentities_CreateOrUpdate".into(),
            action: FaultAction::Error { status: 429, retry_after_secs: Some(1) },
            rate: 1.0,
            times: Some(1),
        }]);
        plane.kubectl_ok(&["create", "serviceaccount", "payments", "-n", &shop])?;
        idbind_testkit::e2e::apply_cluster(plane, &idbind_testkit::e2e::team_policy(&shop))?;
        let binding = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "payments", "namespace": shop},
            "spec": {"serviceAccountName": "payments",
                     "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG,
                                    "roles": ["Key Vault Secrets User"]}]}});
        let out = with_stdin(plane.kubectl(&["apply", "-f", "-"]), &binding.to_string())?;
        assert!(out.status.success(), "{}", text(&out));
        plane
            .kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=90s", "-n", &shop, "wib/payments"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        let sa = get_json(plane, &["get", "serviceaccount", "payments", "-n", &shop])?;
        assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string(), "{sa:#}");
        // It led through the Lease the chart's Role grants, and the chart's RBAC refused it nothing.
        let holder = plane.kubectl_ok(&[
            "get",
            "lease",
            "idbind-leader",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])?;
        assert_eq!(holder, "idbind-helm-0");
        let log = operator.log_text();
        assert!(!log.contains("forbidden"), "the chart's RBAC refused something:\n{log}");
        Ok(())
    })
    .await?;

    step("the alerts read metrics and labels the operator exports", async {
        // A binding the default policy refuses (it brings its own identity): a reconcile error by category
        // and a binding not Ready.
        let refused = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "brought", "namespace": shop},
            "spec": {"serviceAccountName": "payments", "identity": {"resourceId":
                format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/\
                         userAssignedIdentities/brought")}}});
        let out = with_stdin(plane.kubectl(&["apply", "-f", "-"]), &refused.to_string())?;
        assert!(out.status.success(), "{}", text(&out));
        let with_rules = json!({"metrics": {"prometheusRule": {"enabled": true}}});
        let rules = alerts(&render(RELEASE, NS, &with_rules)?)?;
        let mut wanted: Vec<(String, Vec<String>)> =
            rules.iter().flat_map(|r| metrics_read(r["expr"].as_str().unwrap_or_default())).collect();
        assert_eq!(wanted.len(), 4, "{wanted:?}");
        // The dashboard's queries too: every metric and label a panel reads is one idbind exports.
        let queries = dashboard_queries()?;
        assert!(queries.len() >= 10, "{queries:?}");
        wanted.extend(queries.iter().flat_map(|q| metrics_read(q)));
        let url = format!("http://127.0.0.1:{port}/metrics");
        let http = reqwest::Client::new();
        // Polled until every series is there (the gauges refresh every 10 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let exposition = http.get(&url).send().await?.text().await?;
            let absent: Vec<String> = wanted
                .iter()
                .filter(|(name, labels)| {
                    let series: Vec<&str> = exposition
                        .lines()
                        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                        .collect();
                    let labelled = |label: &String| series.iter().any(|s| s.contains(&format!("{label}=\"")));
                    series.is_empty() || !labels.iter().all(labelled)
                })
                .map(|(name, labels)| format!("{name} {labels:?}"))
                .collect();
            let not_ready_counted = exposition.lines().any(|l| l == "idbind_bindings{ready=\"false\"} 1");
            let throttled = exposition
                .lines()
                .any(|l| l.starts_with("idbind_arm_requests_total{") && l.contains("code=\"429\""));
            if absent.is_empty() && not_ready_counted && throttled {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "absent: {absent:?}, not Ready counted: {not_ready_counted}, 429 counted: {throttled}\n\
                     {exposition}"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(!ready(plane, &shop, "brought")?);
        Ok(())
    })
    .await?;

    // An upgrade from open namespaces to the closed default revokes nothing: a binding of a namespace no
    // policy selects is refused and keeps all it holds until an administrator writes a policy.
    let legacy = plane.fresh_namespace("helm-legacy")?;
    step("while namespaces are open, a namespace no policy selects binds", async {
        plane.kubectl_ok(&["create", "serviceaccount", "app", "-n", &legacy])?;
        let binding = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "legacy", "namespace": legacy},
            "spec": {"serviceAccountName": "app",
                     "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}});
        let out = with_stdin(plane.kubectl(&["apply", "-f", "-"]), &binding.to_string())?;
        assert!(out.status.success(), "{}", text(&out));
        plane
            .kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=90s", "-n", &legacy, "wib/legacy"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        Ok(())
    })
    .await?;
    let held = |sim: &SimHandle| -> Result<(usize, usize), TestError> {
        let state = sim.state_typed();
        let identity = idbind_testkit::e2e::identities(&state)
            .into_iter()
            .find(|i| i.tags.get("idbind.dev.namespace") == Some(&legacy))
            .ok_or("the legacy binding's identity is gone")?;
        let assignments =
            state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id).count();
        Ok((identity.federated_identity_credentials.len(), assignments))
    };
    assert_eq!(held(&sim)?, (1, 1), "the legacy binding holds its credential and its role assignment");
    let writes = || sim.counters().writes();
    let writes_before = writes();
    step("helm upgrade to closed namespaces: refused, and nothing taken away", async {
        let out = ok(helm(
            Some(plane),
            &["upgrade", RELEASE, &chart_dir(), "-n", NS, "--reset-values", "-f", &closed_values],
        ))?;
        assert!(out.contains("REVISION: 2"), "{out}");
        let cm = get_json(plane, &["get", "configmap", "idbind-config", "-n", NS])?;
        assert_eq!(cm["data"]["IDBIND_OPEN_NAMESPACES"], "false");
        Ok(())
    })
    .await?;
    // The changed ConfigMap rolls the pod (its checksum annotation changed); the new one reads it.
    drop(operator);
    let deployment = get_json(plane, &["get", "deployment", "idbind", "-n", NS])?;
    let operator = OperatorPod::start(plane, NS, &deployment, "idbind-helm-1")?;
    step("the unselected namespace's binding reports PolicyViolation and keeps what it holds", async {
        eventually("the legacy binding refused", Duration::from_secs(60), || {
            let reason = plane.kubectl_ok(&[
                "get",
                "wib",
                "legacy",
                "-n",
                &legacy,
                "-o",
                &format!("jsonpath={{.status.conditions[?(@.type==\"{READY}\")].reason}}"),
            ])?;
            Ok((reason == Reason::PolicyViolation.as_str()).then_some(()))
        })
        .await
        .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        assert_eq!(held(&sim)?, (1, 1), "nothing revoked");
        assert_eq!(writes(), writes_before, "nothing written to Azure");
        let sa = get_json(plane, &["get", "serviceaccount", "app", "-n", &legacy])?;
        assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string(), "{sa:#}");
        // The administrator's policy brings it back, with nothing to write.
        idbind_testkit::e2e::apply_cluster(plane, &idbind_testkit::e2e::team_policy(&legacy))?;
        plane.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=90s", "-n", &legacy, "wib/legacy"])?;
        assert_eq!(writes(), writes_before, "the policy's arrival wrote nothing either");
        Ok(())
    })
    .await?;

    step("helm upgrade with changed values", async {
        let configmap = || get_json(plane, &["get", "configmap", "idbind-config", "-n", NS]);
        let deployment = || get_json(plane, &["get", "deployment", "idbind", "-n", NS]);
        let (cm_before, deploy_before) = (configmap()?, deployment()?);
        assert_eq!(cm_before["data"]["IDBIND_RESYNC_SECONDS"], "600");
        assert_eq!(cm_before["data"]["IDBIND_VERIFY"], "off");
        // Before verification is on, the chart's ServiceAccount may mint no token at all.
        let refused = token_as_operator(plane, &shop, "payments", "api://AzureADTokenExchange");
        assert!(refused.as_ref().is_err_and(|e| e.contains("forbidden")), "{refused:?}");

        let out = ok(helm(
            Some(plane),
            &[
                "upgrade",
                RELEASE,
                &chart_dir(),
                "-n",
                NS,
                "--reuse-values",
                "--set",
                "config.resyncSeconds=120",
                "--set",
                "replicaCount=3",
                "--set",
                "verification.enabled=true",
            ],
        ))?;
        assert!(out.contains("REVISION: 3"), "{out}");
        let (cm_after, deploy_after) = (configmap()?, deployment()?);
        assert_eq!(cm_after["data"]["IDBIND_RESYNC_SECONDS"], "120");
        assert_eq!(cm_after["data"]["IDBIND_VERIFY"], "access");
        // Values not named again are kept (--reuse-values).
        assert_eq!(cm_after["data"]["IDBIND_CLUSTER_NAME"], "helm-e2e");
        assert_eq!(deploy_after["spec"]["replicas"], 3);
        // envFrom is read at a container's start only: the changed settings roll the pods.
        let checksum =
            |d: &Value| d["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone();
        assert!(checksum(&deploy_before).is_string() && checksum(&deploy_after) != checksum(&deploy_before));

        // Verification: the chart's ServiceAccount may now request exchange tokens of at most 10 minutes, and
        // nothing else (the admission policy takes effect within seconds of its creation).
        eventually("the admission policy to refuse other audiences", Duration::from_secs(30), || {
            Ok(token_as_operator(plane, &shop, "payments", "https://kubernetes.default.svc")
                .is_err_and(|e| e.contains("only for the audience api://AzureADTokenExchange"))
                .then_some(()))
        })
        .await?;
        token_as_operator(plane, &shop, "payments", "api://AzureADTokenExchange")?;
        Ok(())
    })
    .await?;

    step("helm uninstall leaves the CRDs only", async {
        // Bindings go first, while the operator runs, so their finalizers are honoured.
        plane
            .kubectl_ok(&["delete", "wib", "--all", "-n", &shop, "--wait=true", "--timeout=90s"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        drop(operator);
        // The policies are the administrator's, not the release's.
        plane.kubectl_ok(&["delete", "wip", &format!("team-{shop}"), &format!("team-{legacy}")])?;
        let out = ok(helm(Some(plane), &["uninstall", RELEASE, "-n", NS, "--wait"]))?;
        assert!(out.contains("uninstalled"), "{out}");
        let after = cluster_scoped_objects(plane)?;
        let gone: Vec<&String> = before.iter().filter(|o| !after.contains(o)).collect();
        assert!(gone.is_empty(), "uninstall removed objects it never made: {gone:?}");
        // What is new since before the install: the CRDs (and the group version the API server registers for
        // them), which Helm never deletes. (They may predate `before`: Helm installs a chart's crds/ before
        // it checks the values, so the refused install of another test may have brought them already.)
        let crds = [
            "apiservice.apiregistration.k8s.io/v1alpha1.idbind.dev",
            "customresourcedefinition.apiextensions.k8s.io/workloadidentitybindings.idbind.dev",
            "customresourcedefinition.apiextensions.k8s.io/workloadidentitypolicies.idbind.dev",
        ];
        let left: Vec<&String> = after.iter().filter(|o| !before.contains(o)).collect();
        assert!(left.iter().all(|o| crds.contains(&o.as_str())), "objects left by the release: {left:?}");
        assert!(crds.iter().all(|c| after.iter().any(|o| o == c)), "the CRDs are gone: {after:#?}");
        let namespaced = plane.kubectl_ok(&[
            "get",
            "configmaps,secrets,serviceaccounts,deployments,services,poddisruptionbudgets,roles,rolebindings",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/instance=idbind",
            "-o",
            "name",
        ])?;
        assert_eq!(namespaced.trim(), "", "objects of the release left in {NS}");
        let releases = ok(helm(Some(plane), &["list", "-n", NS, "-a", "-q"]))?;
        assert_eq!(releases.trim(), "");
        Ok(())
    })
    .await
}
