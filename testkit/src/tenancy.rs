//! A shared cluster for the trust-boundary tests: one operator process watching every namespace, as a real
//! install does, signed in to Azure as a user-assigned identity of its own through workload identity (its
//! ServiceAccount's token exchanged at the simulator's Entra), so that a tenant can try to bring it. Tenants
//! are namespaces; the test itself is the cluster administrator.
//!
//! Two operators watching the same namespaces would both act on them, so the tests of a binary that use this
//! take turns ([`serial`]), and each starts by removing what an earlier one may have left.

use std::time::Duration;

use idbind::core::conditions::{READY, STALLED};
use idbind::{
    api::binding::TOKEN_EXCHANGE_AUDIENCE,
    azure::{AzureApi, FederatedCredential},
    core::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY},
};
use idbind_sim::state::{Identity, RoleAssignment};
use serde_json::Value;

use crate::{
    e2e::{
        Env, RG, SUB, TestError, identities, install_operator_rbac, operator_namespace,
        start_without_operator,
    },
    process::Operator,
};

/// The operator's cluster name (ownership tags, derived names).
pub const CLUSTER: &str = "e2e";

/// The cluster: the control plane, the simulator and the operator, with the operator's own identity.
pub struct Cluster {
    pub env: Env,
    pub operator: Operator,
    /// The operator's namespace and ServiceAccount (`operator`).
    pub operator_namespace: String,
    /// The user-assigned identity the operator signs in as.
    pub operator_identity: ResourceId,
    pub operator_client_id: String,
}

/// Tests that run an operator over every namespace take turns.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Starts the cluster (after [`serial`]): the ceiling lets namespaces bring identities and bind without a
/// policy (`IDBIND_OPEN_NAMESPACES`), the most open ceiling, under which a brought identity is judged by
/// policies alone. `extra` is more of the operator's environment.
pub async fn start(prefix: &str, extra: &[(&str, &str)]) -> Result<Cluster, TestError> {
    start_with(prefix, extra, |_| Ok(())).await
}

/// Like [`start`], with `prepare` run on the cluster before the operator starts (verification's RBAC, a CRD
/// it should find at once).
pub async fn start_with(
    prefix: &str,
    extra: &[(&str, &str)],
    prepare: impl FnOnce(&Env) -> Result<(), TestError>,
) -> Result<Cluster, TestError> {
    let env = start_without_operator(prefix, |_| {}).await?;
    clear_leftovers(&env)?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    prepare(&env)?;
    let operator_namespace = operator_namespace(&env.ns);
    let (operator_identity, operator_client_id) = operator_identity(&env, &operator_namespace).await?;
    let token_file = env.plane.dir().join(format!("{}-operator-token", env.ns));
    refresh_token(&env, &operator_namespace, &token_file)?;
    let token = token_file.display().to_string();
    let mut environment = vec![
        ("IDBIND_WATCH_NAMESPACE", ""),
        ("IDBIND_CLUSTER_NAME", CLUSTER),
        ("IDBIND_CREDENTIAL", "workload-identity"),
        ("AZURE_CLIENT_SECRET", ""),
        ("AZURE_CLIENT_ID", operator_client_id.as_str()),
        ("AZURE_FEDERATED_TOKEN_FILE", token.as_str()),
        ("IDBIND_ALLOW_EXISTING_IDENTITY", "true"),
        ("IDBIND_OPEN_NAMESPACES", "true"),
        ("POD_SERVICE_ACCOUNT", "operator"),
    ];
    environment.extend_from_slice(extra);
    let operator = Operator::start(&env, "tenants", &environment)?;
    Ok(Cluster { env, operator, operator_namespace, operator_identity, operator_client_id })
}

/// The operator's own identity, federated with its ServiceAccount and given the Azure roles README lists,
/// made as an Azure administrator would (README "Install on AKS", steps 2 and 3).
async fn operator_identity(env: &Env, operator_namespace: &str) -> Result<(ResourceId, String), TestError> {
    let api = crate::azure_rbac::admin_arm(env)?;
    let id = ResourceId::resource_group_scope(SUB, RG)
        .provider_resource(USER_ASSIGNED_IDENTITY, "idbind-operator");
    let ids = api.put_identity(&id, "westeurope", &Default::default()).await?;
    let fic = FederatedCredential {
        name: "idbind-operator".into(),
        issuer: env.plane.server().to_string(),
        subject: format!("system:serviceaccount:{operator_namespace}:operator"),
        audiences: vec![TOKEN_EXCHANGE_AUDIENCE.into()],
    };
    api.put_federated_credential(&id, &fic).await?;
    let identities = [ResourceId::resource_group_scope(SUB, RG).to_string()];
    crate::azure_rbac::grant_operator_roles_now(&env.sim, &ids.principal_id, &identities).await?;
    Ok((id, ids.client_id))
}

/// The operator ServiceAccount's projected token, as the kubelet would mount it.
fn refresh_token(env: &Env, namespace: &str, file: &std::path::Path) -> Result<(), TestError> {
    let args = ["create", "token", "operator", "-n", namespace, "--audience", TOKEN_EXCHANGE_AUDIENCE];
    let token = env.plane.kubectl_ok(&[&args[..], &["--duration", "2h"]].concat())?;
    std::fs::write(file, token.trim())?;
    Ok(())
}

/// Removes the bindings and policies an earlier test of this binary left (its operator is gone, so their
/// finalizers are dropped by hand), so that this test's operator starts from a clean cluster.
fn clear_leftovers(env: &Env) -> Result<(), TestError> {
    let listed: Value = serde_json::from_str(&env.plane.kubectl_ok(&["get", "wib", "-A", "-o", "json"])?)?;
    for item in listed["items"].as_array().into_iter().flatten() {
        let (ns, name) = (item["metadata"]["namespace"].as_str(), item["metadata"]["name"].as_str());
        let (Some(ns), Some(name)) = (ns, name) else { continue };
        let unhold = r#"{"metadata":{"finalizers":null}}"#;
        env.plane.kubectl_ok(&["patch", "wib", name, "-n", ns, "--type=merge", "-p", unhold])?;
        env.plane.kubectl_ok(&["delete", "wib", name, "-n", ns, "--ignore-not-found", "--wait=false"])?;
    }
    env.plane.kubectl_ok(&["delete", "wip", "--all", "--ignore-not-found"])?;
    Ok(())
}

impl Cluster {
    /// The identity named `id` in the simulator, if it exists.
    pub fn identity(&self, id: &str) -> Option<Identity> {
        let id = ResourceId::parse(id).ok()?;
        identities(&self.env.sim.state_typed()).into_iter().find(|i| Some(i.name.as_str()) == id.name())
    }

    /// The role assignments the simulator holds for `principal`.
    pub fn assignments_of(&self, principal: &str) -> Vec<RoleAssignment> {
        let state = self.env.sim.state_typed();
        state
            .role_assignments
            .into_values()
            .filter(|ra| ra.principal_id.eq_ignore_ascii_case(principal))
            .collect()
    }

    /// A status field of a binding, by JSONPath (empty when absent).
    pub fn status(&self, ns: &str, binding: &str, path: &str) -> Result<String, TestError> {
        let jsonpath = format!("jsonpath={{.status.{path}}}");
        Ok(self.env.plane.kubectl_ok(&["get", "wib", binding, "-n", ns, "-o", &jsonpath])?.trim().to_string())
    }

    /// Waits until `binding` is either Ready or Stalled for its current spec: the operator has judged it.
    pub async fn settled(&self, ns: &str, binding: &str) -> Result<(String, String), TestError> {
        crate::e2e::eventually(&format!("{ns}/{binding} settled"), Duration::from_secs(90), || {
            // One read, so the conditions and the generations are of one version of the object.
            let text = self.env.plane.kubectl_ok(&["get", "wib", binding, "-n", ns, "-o", "json"])?;
            let b: Value = serde_json::from_str(&text)?;
            let condition = |t: &str| {
                let all = b["status"]["conditions"].as_array().cloned().unwrap_or_default();
                all.into_iter().find(|c| c["type"] == t).unwrap_or(Value::Null)
            };
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let (ready, stalled) = (condition(READY), condition(STALLED));
            let current = b["status"]["observedGeneration"] == b["metadata"]["generation"];
            let judged = current && (ready["status"] == "True" || stalled["status"] == "True");
            Ok(judged.then(|| (text(&ready["status"]), text(&ready["reason"]))))
        })
        .await
    }
}
