//! What `idbind plan` asks the cluster of the current kubeconfig: the operator's ConfigMap, the
//! `WorkloadIdentityPolicy` objects, and a server-side dry run of each binding, so that the CRD's schema and
//! CEL rules are the API server's to enforce, exactly as they are at `kubectl apply`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    core::Status,
};
use serde_json::Value;

use super::{PlanError, config::CONFIG_MAP, report::Problem};
use crate::core::reason::Reason;
use crate::{
    api::{binding::WorkloadIdentityBinding, policy::WorkloadIdentityPolicy},
    core::policy::Rule,
    runtime::run::direct_client,
};

/// The field manager of the dry runs (which the API server records nowhere: nothing is persisted).
pub const FIELD_MANAGER: &str = "idbind-plan";

/// The cluster a plan consults, or why it consults none.
pub enum Cluster {
    Reached(Reached),
    /// `--no-cluster`, or no kubeconfig: why, for the note on stderr.
    NotConsulted(String),
}

/// A cluster reached through the kubeconfig, and the operator's ConfigMap read from it.
pub struct Reached {
    pub client: Client,
    pub operator_namespace: String,
    pub config: BTreeMap<String, String>,
}

impl Cluster {
    /// The cluster of the current kubeconfig (or the pod's own), with the operator's ConfigMap read from
    /// `operator_namespace`. No kubeconfig at all is a plan without the cluster; a kubeconfig whose cluster
    /// cannot be read is an error, because planning without its policies would pass what they refuse.
    pub async fn connect(operator_namespace: &str) -> Result<Cluster, PlanError> {
        let config = match kube::Config::infer().await {
            Ok(config) => config,
            Err(e) => return Ok(Cluster::NotConsulted(format!("no kubeconfig ({e})"))),
        };
        let client = direct_client(config).map_err(|e| PlanError::Connect(message(&e)))?;
        let map = Api::<ConfigMap>::namespaced(client.clone(), operator_namespace).get(CONFIG_MAP).await;
        let map = map.map_err(|e| PlanError::ConfigMap {
            namespace: operator_namespace.to_string(),
            message: message(&e),
        })?;
        let config = map.data.unwrap_or_default();
        Ok(Cluster::Reached(Reached { client, operator_namespace: operator_namespace.to_string(), config }))
    }

    pub fn reached(&self) -> Option<&Reached> {
        match self {
            Cluster::Reached(reached) => Some(reached),
            Cluster::NotConsulted(_) => None,
        }
    }
}

/// What the API server said of a binding.
pub enum ServerCheck {
    /// Accepted: the object as it would be stored (defaults applied), with the live object's UID and status
    /// when it exists.
    Accepted(Box<WorkloadIdentityBinding>),
    /// Refused: the API server's reasons.
    Rejected(Vec<Problem>),
    /// The namespace does not exist (yet: the same manifests may create it), so nothing in it can be checked.
    NamespaceMissing,
}

impl Reached {
    /// The policies as the operator's gate sees them.
    pub async fn policy_rules(&self, subscription: &str) -> Result<Vec<Rule>, PlanError> {
        let policies = Api::<WorkloadIdentityPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| PlanError::Policies(message(&e)))?;
        Ok(policies.iter().map(|p| Rule::from_policy(&p.name_any(), &p.spec, subscription)).collect())
    }

    /// The kubeconfig context's namespace, for bindings whose manifest and flags name none.
    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    /// A server-side apply of `manifest` as `namespace/name` with dryRun=All (forced: the dry run checks the
    /// schema, not who owns which field), and the live object's UID and status, which say whose identity
    /// Azure holds and which access policies the binding holds.
    pub async fn check(
        &self,
        namespace: &str,
        name: &str,
        manifest: &Value,
    ) -> Result<ServerCheck, PlanError> {
        let api = Api::<WorkloadIdentityBinding>::namespaced(self.client.clone(), namespace);
        let failed = |e: kube::Error| PlanError::DryRun {
            binding: format!("{namespace}/{name}"),
            message: message(&e),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        let mut applied = match api.patch(name, &params, &Patch::Apply(manifest)).await {
            Ok(applied) => applied,
            Err(kube::Error::Api(status)) if rejection(&status) => {
                return Ok(ServerCheck::Rejected(problems(&status)));
            }
            Err(kube::Error::Api(status)) if namespace_missing(&status) => {
                return Ok(ServerCheck::NamespaceMissing);
            }
            Err(e) => return Err(failed(e)),
        };
        let live = api.get_opt(name).await.map_err(failed)?;
        applied.metadata.uid = live.as_ref().and_then(|l| l.metadata.uid.clone());
        applied.status = live.and_then(|l| l.status);
        Ok(ServerCheck::Accepted(Box::new(applied)))
    }
}

/// Whether the API server refused the object itself (400: malformed, wrong apiVersion or kind; 422: the
/// schema or a CEL rule), rather than the request (403, a missing CRD, an outage).
fn rejection(status: &Status) -> bool {
    matches!(status.code, 400 | 422)
}

/// Whether the API server answered that the namespace itself is not there.
fn namespace_missing(status: &Status) -> bool {
    status.code == 404 && status.details.as_ref().is_some_and(|d| d.kind == "namespaces")
}

/// The API server's causes, each with its field when it names one; its message when it gives none.
fn problems(status: &Status) -> Vec<Problem> {
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let problem = |field: &str, message: &str| Problem {
        field: (!field.is_empty()).then(|| field.to_string()),
        reason: Reason::SchemaRejected.into(),
        message: message.to_string(),
    };
    match causes {
        [] => vec![problem("", &status.message)],
        causes => causes.iter().map(|c| problem(&c.field, &c.message)).collect(),
    }
}

/// A Kubernetes error as a person reads it: the API server's own message when it sent one.
fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}
