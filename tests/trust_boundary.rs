//! The trust boundary, tried as an attacker with only a tenant's rights (create bindings and ServiceAccounts
//! in its own namespace), plus one who can write a binding's status. Each test is one of the attacks that
//! worked against idbind before its trust model (SECURITY.md): it asserts what the attack must never achieve,
//! whatever idbind answers on the way (a refusal by the API server, a stalled binding).
//!
//! One operator watches every namespace, as a real install does; it signs in to Azure as a user-assigned
//! identity of its own. The tests take turns (see `idbind_testkit::tenancy`).

use std::{process::Stdio, str::FromStr, time::Duration};

use serde::Deserialize;

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind_testkit::{
    e2e::{KV_RG, RG, SUB, TestResult, eventually, install_class_crd},
    tenancy::{self, CLUSTER, Cluster},
};
use serde_json::{Value, json};

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": spec})
}

fn reader_on_kv_shop() -> Value {
    json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}])
}

fn identity_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// The subjects the identity `id` trusts, sorted.
fn subjects(cluster: &Cluster, id: &str) -> Vec<String> {
    let mut subjects: Vec<String> = cluster
        .identity(id)
        .map(|i| i.federated_identity_credentials.values().map(|f| f.subject.clone()).collect())
        .unwrap_or_default();
    subjects.sort();
    subjects
}

/// A tenant sets ownership tags in another letter case, naming another team's binding, on an identity with
/// the name that team's binding will use. Before: accepted, and the other team's binding adopted the identity
/// with the attacker's federated credential still on it, so the attacker's token exchanged for the identity
/// holding the other team's Key Vault role; deleting the attacker's binding then deleted that role.
#[tokio::test(flavor = "multi_thread")]
async fn forged_ownership_tags_in_another_case_never_hand_over_another_teams_identity() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-tags", &[]).await?;
    let attacker = cluster.env.here();
    let team_b = cluster.env.other_namespace("tb-tags-b")?;
    attacker.kubectl(&["create", "serviceaccount", "evil"])?;
    team_b.kubectl(&["create", "serviceaccount", "payments"])?;
    let forged = json!({"name": "shop-payments", "tags": {
        "IDBIND.dev.cluster": CLUSTER, "IDBIND.dev.namespace": team_b.ns, "IDBIND.dev.binding": "payments"}});
    let spec = json!({"serviceAccountName": "evil", "identity": forged, "keyVaults": reader_on_kv_shop()});
    // The API server may refuse it outright; if it takes it, idbind must not act on the forged tags.
    let accepted = attacker.apply(&binding("grab", spec)).is_ok();
    if accepted {
        cluster.settled(&attacker.ns, "grab").await?;
    }
    let spec = json!({"serviceAccountName": "payments", "identity": {"name": "shop-payments"}, "keyVaults": reader_on_kv_shop()});
    team_b.apply(&binding("payments", spec))?;
    let (ready, reason) = cluster.settled(&team_b.ns, "payments").await?;
    let held = cluster.status(&team_b.ns, "payments", "identity.resourceId")?;
    if ready == "True" {
        // Team B's identity trusts team B's ServiceAccount and nothing else.
        assert_eq!(subjects(&cluster, &held), [format!("system:serviceaccount:{}:payments", team_b.ns)]);
    } else {
        assert_eq!(
            reason,
            Reason::IdentityConflict.as_str(),
            "team B's binding neither Ready nor refusing the identity"
        );
    }
    if accepted {
        attacker.kubectl(&["delete", "wib", "grab", "--timeout=60s"])?;
    }
    if ready == "True" {
        let principal = cluster.status(&team_b.ns, "payments", "identity.principalId")?;
        assert_eq!(cluster.assignments_of(&principal).len(), 1, "team B's role assignment is still there");
    }
    Ok(())
}

/// Whoever can write a binding's status points it at another binding's identity as if idbind managed it.
/// Before: the next resync, and the binding's deletion, removed the other binding's role assignments.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_status_never_makes_idbind_remove_what_another_binding_holds() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-status", &[]).await?;
    let mine = cluster.env.here();
    let team_b = cluster.env.other_namespace("tb-status-b")?;
    team_b.ready_binding("payments", &["Key Vault Secrets User"])?;
    mine.ready_binding("mine", &["Key Vault Reader"])?;
    let theirs = cluster.status(&team_b.ns, "payments", "identity.resourceId")?;
    let principal = cluster.status(&team_b.ns, "payments", "identity.principalId")?;
    let own = cluster.status(&mine.ns, "mine", "identity.resourceId")?;
    let forge = || -> TestResult {
        let patch = json!({"status": {"identity": {"resourceId": theirs, "name": "x", "managed": true}}});
        let patch = patch.to_string();
        mine.kubectl(&["patch", "wib", "mine", "--subresource=status", "--type=merge", "-p", &patch])?;
        Ok(())
    };
    forge()?;
    // The next resync rewrites the status from what Azure shows.
    eventually("mine's status rewritten", Duration::from_secs(60), || {
        Ok((cluster.status(&mine.ns, "mine", "identity.resourceId")? == own).then_some(()))
    })
    .await?;
    assert_eq!(cluster.assignments_of(&principal).len(), 1, "team B's role assignment survived the resync");
    // And the binding's deletion, with the status forged again.
    forge()?;
    mine.kubectl(&["delete", "wib", "mine", "--timeout=60s"])?;
    assert_eq!(cluster.assignments_of(&principal).len(), 1, "team B's role assignment survived the delete");
    assert_eq!(subjects(&cluster, &theirs), [format!("system:serviceaccount:{}:payments", team_b.ns)]);
    Ok(())
}

/// A tenant brings the identity idbind itself signs in as. Before, under the documented ceiling (brought
/// identities allowed, no policy required), idbind federated its own identity with the tenant's
/// ServiceAccount. Now no identity can be brought without a policy that lists it, and the operator's own
/// never, even when a policy lists it by mistake.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_own_identity_can_never_be_brought() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-own-id", &[]).await?;
    let tenant = cluster.env.here();
    tenant.kubectl(&["create", "serviceaccount", "app"])?;
    let own = cluster.operator_identity.to_string();
    let spec = json!({"serviceAccountName": "app", "identity": {"resourceId": own}});
    tenant.apply(&binding("borrow", spec))?;
    let (ready, reason) = cluster.settled(&tenant.ns, "borrow").await?;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", Reason::PolicyViolation.as_str()),
        "without a policy listing it"
    );
    // A policy lists it by mistake: still refused, saying why.
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-mistake", tenant.ns)},
        "spec": {"namespaces": [tenant.ns], "existingIdentities": [own]}});
    tenant.apply(&policy)?;
    tenant
        .wait_condition("borrow", READY, "False", Reason::OperatorIdentity, Duration::from_secs(60))
        .await?;
    let operator_fics = subjects(&cluster, &own);
    let expected = format!("system:serviceaccount:{}:operator", cluster.operator_namespace);
    assert_eq!(operator_fics, [expected], "nothing was written to the operator's identity");
    Ok(())
}

/// Two bindings bring one identity. Before, each deleted the other's role assignment and recreated its own on
/// every resync, both reporting Ready. Now the first keeps the identity and the second is refused, and
/// nothing churns.
#[tokio::test(flavor = "multi_thread")]
async fn two_bindings_never_fight_over_one_brought_identity() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-shared", &[]).await?;
    let first = cluster.env.here();
    let second = cluster.env.other_namespace("tb-shared-b")?;
    let api = idbind_testkit::arm_api(
        &cluster.env.sim,
        idbind_testkit::e2e::APP_ID,
        idbind_testkit::e2e::APP_SECRET,
    )?;
    let shared = identity_id("shared-tools");
    idbind::azure::AzureApi::put_identity(&api, &shared.parse()?, "westeurope", &Default::default()).await?;
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-shared", first.ns)},
        "spec": {"namespaces": [first.ns, second.ns], "keyVaults": [{"resourceGroup": KV_RG}],
                 "roles": ["Key Vault Secrets User", "Key Vault Reader"], "existingIdentities": [shared]}});
    first.apply(&policy)?;
    for (tenant, role) in [(&first, "Key Vault Secrets User"), (&second, "Key Vault Reader")] {
        tenant.kubectl(&["create", "serviceaccount", "tools"])?;
        let vaults = json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": [role]}]);
        tenant.apply(&binding(
            "tools",
            json!({"serviceAccountName": "tools", "identity": {"resourceId": shared}, "keyVaults": vaults}),
        ))?;
        cluster.settled(&tenant.ns, "tools").await?;
        // The older binding holds the identity; created in the same second, the name would decide. So the
        // second is created only once a new second has begun (the API server stamps whole seconds).
        let created =
            tenant.kubectl(&["get", "wib", "tools", "-o", "jsonpath={.metadata.creationTimestamp}"])?;
        let created = k8s_openapi::jiff::Timestamp::from_str(created.trim())?.as_second();
        eventually("a new second", Duration::from_secs(5), || {
            Ok((k8s_openapi::jiff::Timestamp::now().as_second() > created).then_some(()))
        })
        .await?;
    }
    assert_eq!(
        cluster.status(&first.ns, "tools", &format!("conditions[?(@.type==\"{READY}\")].status"))?,
        "True"
    );
    assert_eq!(
        cluster.status(&second.ns, "tools", &format!("conditions[?(@.type==\"{READY}\")].reason"))?,
        Reason::IdentityInUse.as_str()
    );
    // Several resyncs of both: no role assignment is written or deleted.
    let counters = cluster.env.sim.counters();
    let writes = |c: &idbind_sim::CounterSnapshot| {
        c.total("RoleAssignments_Create") + c.total("RoleAssignments_Delete")
    };
    let fic_lists = counters.total("FederatedIdentityCredentials_List");
    eventually("several resyncs", Duration::from_secs(60), || {
        Ok((cluster.env.sim.counters().total("FederatedIdentityCredentials_List") >= fic_lists + 4)
            .then_some(()))
    })
    .await?;
    assert_eq!(writes(&cluster.env.sim.counters()), writes(&counters), "role assignments churned");
    Ok(())
}

/// A binding names the operator's own ServiceAccount, or one whose client-id annotation someone else set.
/// Before, idbind replaced the annotation (on AKS the operator lost its Azure identity at its next restart)
/// and removed it when the binding went.
#[tokio::test(flavor = "multi_thread")]
async fn service_accounts_annotated_by_someone_else_are_never_taken_over() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-sa", &[]).await?;
    let tenant = cluster.env.here();
    let client_id = |ns: &str, sa: &str| {
        let path = "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}";
        cluster.env.plane.kubectl_ok(&["get", "sa", sa, "-n", ns, "-o", path]).map(|s| s.trim().to_string())
    };
    let operator_ns = cluster.operator_namespace.clone();
    let set_by_hand = format!("azure.workload.identity/client-id={}", cluster.operator_client_id);
    cluster.env.plane.kubectl_ok(&["annotate", "sa", "operator", "-n", &operator_ns, &set_by_hand])?;
    tenant.kubectl(&["create", "serviceaccount", "legacy"])?;
    tenant.kubectl(&["annotate", "sa", "legacy", "azure.workload.identity/client-id=set-by-the-app-team"])?;
    let admin = idbind_testkit::e2e::Namespace { plane: cluster.env.plane, ns: operator_ns.clone() };
    admin.apply(&binding("operator", json!({"serviceAccountName": "operator"})))?;
    tenant.apply(&binding("legacy", json!({"serviceAccountName": "legacy"})))?;
    let judged = cluster.settled(&operator_ns, "operator").await?;
    assert_eq!(judged, ("False".into(), Reason::PolicyViolation.into()), "the operator's own ServiceAccount");
    let judged = cluster.settled(&tenant.ns, "legacy").await?;
    assert_eq!(
        judged,
        ("False".into(), Reason::ServiceAccountAnnotatedByOthers.into()),
        "a client id set by someone else"
    );
    assert_eq!(client_id(&operator_ns, "operator")?, cluster.operator_client_id);
    assert_eq!(client_id(&tenant.ns, "legacy")?, "set-by-the-app-team");
    // Deleting the bindings leaves the annotations as their owners set them.
    admin.kubectl(&["delete", "wib", "operator", "--timeout=60s"])?;
    tenant.kubectl(&["delete", "wib", "legacy", "--timeout=60s"])?;
    assert_eq!(client_id(&operator_ns, "operator")?, cluster.operator_client_id);
    assert_eq!(client_id(&tenant.ns, "legacy")?, "set-by-the-app-team");
    Ok(())
}

/// A binding with the longest name Kubernetes allows gets its Events. Before, the Event's own name (the
/// binding's name plus a suffix) was longer than 253 characters and the API server refused it.
#[tokio::test(flavor = "multi_thread")]
async fn bindings_with_the_longest_names_get_their_events() -> TestResult {
    let _turn = tenancy::serial().await;
    let cluster = tenancy::start("tb-long", &[]).await?;
    let tenant = cluster.env.here();
    // 253 characters in DNS labels of at most 63.
    let label = "a".repeat(63);
    let name = format!("{label}.{label}.{label}.{}", "b".repeat(253 - 3 * 64));
    assert_eq!(name.len(), 253);
    tenant.apply(&binding(&name, json!({"serviceAccountName": "nobody-yet"})))?;
    tenant
        .wait_condition(&name, READY, "False", Reason::ServiceAccountNotFound, Duration::from_secs(60))
        .await?;
    let selector = format!("involvedObject.name={name}");
    eventually("the binding's Event", Duration::from_secs(30), || {
        let events = tenant.kubectl(&["get", "events", "--field-selector", &selector, "-o", "name"])?;
        Ok((!events.trim().is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}

/// Every binding and policy the documentation shows is accepted by the API server as written, and so is what
/// comes with them in one example (a SecretProviderClass: the CSI driver's CRD is installed).
#[tokio::test(flavor = "multi_thread")]
async fn every_example_in_the_documentation_is_accepted() -> TestResult {
    let plane = idbind_testenv::shared_with_crds();
    install_class_crd(plane)?;
    let root = idbind_testenv::workspace_root();
    let ns = plane.fresh_namespace("tb-docs")?;
    let mut examples = Vec::new();
    let mut docs: Vec<String> =
        ["README.md", "ARCHITECTURE.md", "SECURITY.md", "CONTRIBUTING.md"].map(String::from).to_vec();
    for entry in std::fs::read_dir(root.join("docs"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        docs.extend(name.ends_with(".md").then(|| format!("docs/{name}")));
    }
    for doc in docs {
        let Ok(text) = std::fs::read_to_string(root.join(&doc)) else { continue };
        examples.extend(yaml_blocks(&text).into_iter().map(|y| (doc.clone(), y)));
    }
    for entry in std::fs::read_dir(root.join("config/samples"))? {
        let path = entry?.path();
        examples.push((path.display().to_string(), std::fs::read_to_string(&path)?));
    }
    let mut checked = 0;
    for (doc, yaml) in examples.into_iter().filter(|(_, y)| y.contains("apiVersion: idbind.dev/")) {
        for document in serde_yaml::Deserializer::from_str(&yaml) {
            let mut object = serde_json::to_value(serde_yaml::Value::deserialize(document)?)?;
            // Applied in the test's namespace, wherever the example puts it.
            if let Some(metadata) = object["metadata"].as_object_mut() {
                metadata.remove("namespace");
            }
            let out = plane
                .kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            let out = feed(out, &object.to_string())?;
            assert!(out.status.success(), "{doc}: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} examples found");
    Ok(())
}

/// Writes `input` to a child's stdin and waits for it.
fn feed(
    mut child: std::process::Child,
    input: &str,
) -> Result<std::process::Output, idbind_testkit::e2e::TestError> {
    use std::io::Write;
    child.stdin.take().ok_or("no stdin")?.write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// The ```yaml blocks of a Markdown text.
fn yaml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) if line.trim_start().starts_with("```yaml") => current = Some(String::new()),
            (Some(block), true) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), false) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}
