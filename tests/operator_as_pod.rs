//! The operator as its pod runs it: the `idbind run` process, signed in with a TokenRequest token of its own
//! ServiceAccount bound to the RBAC in config/rbac/, against the real RBAC-enforcing API server, with leader
//! election on.
//!
//! - Least privilege, proven: with the shipped rules a binding (naming a SecretProviderClass and an export
//!   ConfigMap) converges and nothing is refused; with any one rule removed, the operator fails visibly (a
//!   403 naming that rule's resource in its log, and the binding not Ready, or its Event missing); with any
//!   one verb on classes or ConfigMaps removed, the operator is refused that verb when it needs it.
//! - Of two replicas only the leader reconciles; SIGTERM stops the leader cleanly (exit 0) and its Lease goes
//!   to the standby at once.
//! - No token or secret reaches the logs, even at trace level.
//! - The text log written to a file is plain text and has one line per Azure write and delete; each is an
//!   Event on the binding too.

use std::time::Duration;

use idbind::core::conditions::{EXPORT_READY, READY, SECRET_PROVIDER_CLASSES_READY};
use idbind::core::reason::Reason;
use idbind_testkit::{
    e2e::{
        APP_SECRET, Env, KV_RG, TestError, TestResult, eventually, install_class_crd, install_operator_rbac,
        install_operator_rbac_without_verb, operator_kubeconfig, operator_namespace, start_without_operator,
    },
    process::Operator,
    steps::step,
};
use serde_json::{Value, json};

fn binding(env: &Env, name: &str) -> TestResult {
    env.kubectl(&["create", "serviceaccount", name])?;
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
                      "spec": {"serviceAccountName": name, "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}}))
}

/// A binding that needs every permission: its ServiceAccount, a SecretProviderClass it names (of the azure
/// provider, so idbind writes it) and an export ConfigMap, each named `name`. Needs the class CRD
/// ([`install_class_crd`]).
fn wiring_binding(env: &Env, name: &str) -> TestResult {
    env.kubectl(&["create", "serviceaccount", name])?;
    env.apply(&json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": name},
                      "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop"}}}))?;
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
                      "spec": {"serviceAccountName": name, "secretProviderClasses": [name], "export": {"configMapName": name}}}))
}

fn leader_env(env: &Env) -> Vec<(&'static str, String)> {
    vec![("IDBIND_LEADER_ELECT", "true".into()), ("POD_NAMESPACE", operator_namespace(&env.ns))]
}

fn start(env: &Env, run: &str, extra: &[(&str, String)]) -> Result<Operator, TestError> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Operator::start(env, run, &extra)
}

/// The rules of the shipped ClusterRole and lease Role, as (kind, index, first resource).
fn shipped_rules() -> Result<Vec<(&'static str, usize, String)>, TestError> {
    let root = idbind_testenv::workspace_root().join("config/rbac");
    let mut out = Vec::new();
    for (kind, file) in [("ClusterRole", "cluster_role.yaml"), ("Role", "leader_election_role.yaml")] {
        let role: Value = serde_yaml::from_str(&std::fs::read_to_string(root.join(file))?)?;
        for (i, rule) in role["rules"].as_array().ok_or("a role without rules")?.iter().enumerate() {
            out.push((kind, i, rule["resources"][0].as_str().ok_or("a rule without resources")?.to_string()));
        }
    }
    Ok(out)
}

fn ready(env: &Env, name: &str) -> Result<bool, TestError> {
    Ok(env.kubectl(&[
        "get",
        "wib",
        name,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{READY}\")].status}}"),
    ])? == "True")
}

/// Deletes the Lease a candidate left in the operator's namespace, if any.
fn delete_lease(env: &Env) {
    let _ = env
        .plane
        .kubectl(&[
            "delete",
            "lease",
            "idbind-leader",
            "-n",
            &operator_namespace(&env.ns),
            "--ignore-not-found",
        ])
        .output();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_of_the_shipped_rbac_is_needed_and_enough() -> TestResult {
    let env = start_without_operator("least-priv", |_| {}).await?;
    install_class_crd(env.plane)?;

    step("the shipped rules are enough", async {
        // The shipped rules: the binding converges with its class and ConfigMap, its Event is published,
        // nothing is refused.
        install_operator_rbac(env.plane, &env.ns, &[])?;
        let operator = start(&env, "full", &leader_env(&env))?;
        wiring_binding(&env, "full")?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/full"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        for condition in [SECRET_PROVIDER_CLASSES_READY, EXPORT_READY] {
            env.kubectl(&["wait", &format!("--for=condition={condition}"), "--timeout=10s", "wib/full"])?;
        }
        eventually("the Ready Event", Duration::from_secs(30), || {
            let events = env.kubectl(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name=full,reason={}", Reason::Ready),
                "-o",
                "name",
            ])?;
            Ok((!events.trim().is_empty()).then_some(()))
        })
        .await?;
        let log = operator.log_text();
        assert!(!log.contains("forbidden"), "the shipped RBAC refused something:\n{log}");
        operator.kill()?;
        Ok(())
    })
    .await?;

    // Each rule removed in turn: the operator says which permission it lacks, and the binding does not
    // converge (or, for Events, converges without its Event).
    let rules = shipped_rules()?;
    assert_eq!(rules.len(), 10, "a rule was added or removed: extend this test");
    for (kind, index, resource) in rules {
        let name = format!("minus-{}-{index}", kind.to_lowercase());
        step(&name, async {
            install_operator_rbac(env.plane, &env.ns, &[(kind, index)])?;
            // A Lease left by an earlier run would let a candidate without `create` lead.
            delete_lease(&env);
            let operator = start(&env, &name, &leader_env(&env))?;
            wiring_binding(&env, &name)?;
            let mut wanted = format!("resource \\\"{resource}\\\"");
            let mut plain = format!("resource \"{resource}\"");
            if resource == "workloadidentitybindings/finalizers" {
                // The refusal of OwnerReferencesPermissionEnforcement (on in the test control plane, as on
                // OpenShift) names the check, not the owner's subresource.
                wanted =
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set \
                          finalizers on"
                        .into();
                plain.clone_from(&wanted);
            }
            eventually(&format!("{name}: a refusal naming {resource}"), Duration::from_secs(60), || {
                let log = operator.log_text();
                Ok((log.contains("forbidden") && (log.contains(&wanted) || log.contains(&plain)))
                    .then_some(()))
            })
            .await
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            if resource == "events" {
                assert!(
                    env.kubectl(&[
                        "get",
                        "events",
                        "--field-selector",
                        &format!("involvedObject.name={name},reason={}", Reason::Ready),
                        "-o",
                        "name"
                    ])?
                    .trim()
                    .is_empty(),
                    "{name}: an Event was published without the events rule"
                );
            } else {
                assert!(!ready(&env, &name)?, "{name}: Ready without the {kind} rule for {resource}");
            }
            operator.kill()?;
            env.kubectl(&["delete", "wib", &name, "--wait=false"])?;
            Ok(())
        })
        .await?;
    }
    step("cleanup", async {
        // Back to the shipped rules, so the finalizers of the refused bindings can be removed.
        install_operator_rbac(env.plane, &env.ns, &[])?;
        delete_lease(&env);
        let operator = start(&env, "cleanup", &leader_env(&env))?;
        eventually("every binding deleted", Duration::from_secs(90), || {
            Ok(env
                .kubectl(&["get", "wib", "-o", "name"])?
                .lines()
                .all(|l| l.ends_with("/full"))
                .then_some(()))
        })
        .await?;
        operator.kill()?;
        Ok(())
    })
    .await
}

/// The verbs of the shipped ClusterRole's rule for `resource`.
fn shipped_verbs(resource: &str) -> Result<Vec<String>, TestError> {
    let file = idbind_testenv::workspace_root().join("config/rbac/cluster_role.yaml");
    let role: Value = serde_yaml::from_str(&std::fs::read_to_string(file)?)?;
    let rules = role["rules"].as_array().ok_or("a role without rules")?;
    let rule = rules.iter().find(|r| r["resources"][0] == resource).ok_or("no rule for the resource")?;
    let verbs = rule["verbs"].as_array().ok_or("a rule without verbs")?;
    Ok(verbs.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// Each verb on SecretProviderClasses and ConfigMaps, taken out alone, is refused when idbind needs it: get
/// reads a class or the ConfigMap before any write, list and watch feed the watches that repair hand edits,
/// patch writes a class and keeps the ConfigMap, create makes the ConfigMap, delete removes it when
/// spec.export goes.
#[tokio::test(flavor = "multi_thread")]
async fn every_verb_on_classes_and_config_maps_is_needed() -> TestResult {
    let env = start_without_operator("least-verb", |_| {}).await?;
    install_class_crd(env.plane)?;
    let mut cases = Vec::new();
    for (resource, short) in [("secretproviderclasses", "spc"), ("configmaps", "cm")] {
        cases.extend(shipped_verbs(resource)?.into_iter().map(|verb| (resource, short, verb)));
    }
    assert_eq!(cases.len(), 10, "a verb was added or removed: extend this test");
    for (resource, short, verb) in cases {
        let name = format!("minus-{verb}-{short}");
        step(&name, async {
            install_operator_rbac_without_verb(env.plane, &env.ns, resource, &verb)?;
            delete_lease(&env);
            let operator = start(&env, &name, &leader_env(&env))?;
            wiring_binding(&env, &name)?;
            // What needs the verb only after convergence: a hand edit to undo, the export taken out.
            let ready =
                || env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")]);
            match (resource, verb.as_str()) {
                ("configmaps", "patch") => {
                    ready().map_err(|e| format!("{e}\n{}", operator.log_text()))?;
                    let edit = json!({"data": {"clientId": "edited"}}).to_string();
                    env.kubectl(&["patch", "configmap", &name, "--type=merge", "-p", &edit])?;
                }
                ("configmaps", "delete") => {
                    ready().map_err(|e| format!("{e}\n{}", operator.log_text()))?;
                    let spec = json!({"spec": {"export": null}}).to_string();
                    env.kubectl(&["patch", "wib", &name, "--type=merge", "-p", &spec])?;
                }
                _ => {}
            }
            let (plain, quoted) = (
                format!("cannot {verb} resource \"{resource}\""),
                format!("cannot {verb} resource \\\"{resource}\\\""),
            );
            eventually(&format!("{name}: a refusal to {verb} {resource}"), Duration::from_secs(60), || {
                let log = operator.log_text();
                Ok((log.contains(&plain) || log.contains(&quoted)).then_some(()))
            })
            .await
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            operator.kill()?;
            env.kubectl(&["delete", "wib", &name, "--wait=false"])?;
            Ok(())
        })
        .await?;
    }
    step("cleanup", async {
        install_operator_rbac(env.plane, &env.ns, &[])?;
        delete_lease(&env);
        let operator = start(&env, "cleanup", &leader_env(&env))?;
        eventually("every binding deleted", Duration::from_secs(90), || {
            Ok(env.kubectl(&["get", "wib", "-o", "name"])?.trim().is_empty().then_some(()))
        })
        .await?;
        operator.kill()?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_reconciles_and_sigterm_hands_over_at_once() -> TestResult {
    let env = start_without_operator("leader", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let op_ns = operator_namespace(&env.ns);
    let holder = || -> Result<String, TestError> {
        Ok(env
            .plane
            .kubectl(&[
                "get",
                "lease",
                "idbind-leader",
                "-n",
                &op_ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?)
    };

    let mut first = start(&env, "replica-a", &leader_env(&env))?;
    eventually("replica-a to lead", Duration::from_secs(30), || Ok((holder()? == "replica-a").then_some(())))
        .await?;
    let second = start(&env, "replica-b", &leader_env(&env))?;
    binding(&env, "one")?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/one"])?;
    assert!(first.log_text().contains("azure write"), "the leader did the work");
    assert!(!second.log_text().contains("azure write"), "the standby must not write:\n{}", second.log_text());
    // The standby is ready (it can take over) and healthy.

    // SIGTERM: the leader finishes, releases the Lease and exits 0; the standby leads at once.
    first.terminate()?;
    let status = first.wait_exit(Duration::from_secs(30))?;
    assert!(status.success(), "SIGTERM must end the operator cleanly: {status:?}\n{}", first.log_text());
    eventually("replica-b to lead", Duration::from_secs(5), || Ok((holder()? == "replica-b").then_some(())))
        .await?;
    binding(&env, "two")?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/two"])
        .map_err(|e| format!("{e}\n{}", second.log_text()))?;
    assert!(second.log_text().contains("azure write"), "the new leader does the work");
    second.kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_secret_reaches_the_logs() -> TestResult {
    let env = start_without_operator("secrets", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let kubeconfig = operator_kubeconfig(env.plane, &env.ns, "secrets-probe")?;
    let kube_token =
        serde_yaml::from_str::<Value>(&std::fs::read_to_string(&kubeconfig)?)?["users"][0]["user"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    // Trace level for everything, idbind and its libraries alike.
    let operator = start(
        &env,
        "verbose",
        &[
            ("RUST_LOG", "trace".into()),
            ("IDBIND_LOG_FORMAT", "json".into()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
        ],
    )?;
    binding(&env, "quiet")?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/quiet"])?;
    env.kubectl(&["delete", "wib", "quiet", "--wait=true", "--timeout=60s"])?;
    let log = operator.log_text();
    assert!(log.lines().count() > 20, "the debug log is suspiciously short:\n{log}");
    assert!(!log.contains(APP_SECRET), "the client secret reached the log");
    assert!(!kube_token.is_empty() && !log.contains(&kube_token), "the ServiceAccount token reached the log");
    // Entra access tokens and Kubernetes tokens are JWTs: base64url of '{"' starts with eyJ.
    assert!(
        !log.contains("eyJ"),
        "a JWT reached the log: {}",
        log.lines().find(|l| l.contains("eyJ")).unwrap_or_default()
    );
    operator.kill()?;
    Ok(())
}

/// An on-call engineer reads the log to learn what idbind did in Azure: a log file (not a terminal) carries
/// no colour codes, every write and delete the simulator served has its line, and a deletion says what became
/// of the binding's Azure objects.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_file_is_plain_text_with_a_line_per_azure_write_and_delete() -> TestResult {
    let env = start_without_operator("audit", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let operator = start(&env, "audit", &[("IDBIND_LOG_FORMAT", "text".into())])?;
    binding(&env, "audited")?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/audited"])?;
    env.kubectl(&["delete", "wib", "audited", "--wait=true", "--timeout=60s"])?;
    let log = operator.log_text();
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{log}");
    let lines = |what: &str| log.lines().filter(|l| l.contains(what) && l.contains("audited")).count() as u64;
    let (writes, deletes) = (lines("azure write: "), lines("azure delete: "));
    for expected in ["put identity", "put federated credential", "create role assignment"] {
        assert_eq!(lines(&format!("azure write: {expected}")), 1, "{expected}:\n{log}");
    }
    assert_eq!(deletes, 3, "the role assignment, the federated credential and the identity:\n{log}");
    assert_eq!(writes + deletes, env.writes(), "a line for every write Azure served:\n{log}");
    assert_eq!(lines("binding deleted: what it held in Azure removed"), 1, "{log}");
    // And the same changes as Events on the binding, for whoever reads the cluster rather than the log.
    let events: Value = serde_json::from_str(&env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=audited",
        "-o",
        "json",
    ])?)?;
    let notes = |reason: Reason| -> Vec<String> {
        let items = events["items"].as_array().cloned().unwrap_or_default();
        let of_reason = items.into_iter().filter(|e| e["reason"] == reason.as_str());
        of_reason.map(|e| e["message"].as_str().unwrap_or_default().to_string()).collect()
    };
    let (updated, deleted) = (notes(Reason::AzureUpdated), notes(Reason::AzureDeleted));
    assert_eq!(updated.len() as u64, writes, "{updated:?}");
    assert!(updated.iter().any(|n| n.starts_with("create role assignment")), "{updated:?}");
    assert_eq!(deleted.len() as u64, deletes, "{deleted:?}");
    operator.kill()?;
    Ok(())
}

/// `idbind run` (named `label`, leader election `leader`) answers /readyz with success within 30 s, once its
/// caches hold a full list, and /healthz too.
async fn readyz_turns_ready(prefix: &str, label: &str, leader: &str) -> TestResult {
    let env = start_without_operator(prefix, |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let operator = start(
        &env,
        label,
        &[
            ("IDBIND_HTTP_ADDR", addr.clone()),
            ("IDBIND_LEADER_ELECT", leader.into()),
            ("POD_NAMESPACE", operator_namespace(&env.ns)),
        ],
    )?;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/readyz");
    let mut last = String::new();
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                break;
            }
            last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "{label}: /readyz never turned ready (last: {last})\n{}",
                operator.log_text()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(http.get(format!("http://{addr}/healthz")).send().await?.status().is_success());
    operator.kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_ready_once_the_caches_hold_a_full_list_without_leader_election() -> TestResult {
    readyz_turns_ready("readyz-single", "single", "false").await
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_ready_once_the_caches_hold_a_full_list_with_leader_election() -> TestResult {
    readyz_turns_ready("readyz-elected", "elected", "true").await
}
