//! What the operator did to the objects it keeps in step, as the API server's audit log says (the test
//! control plane logs every get and write by a ServiceAccount of ConfigMaps, ServiceAccounts and
//! SecretProviderClasses): counts no object state can hide, since every request is there, refused or not.

use serde_json::Value;

use crate::e2e::{Env, TestError, operator_namespace};

/// The verbs that change an object.
const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];

/// One request of the operator's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    /// The API server's answer (201, 200, 403, ...).
    pub code: u64,
}

impl Request {
    pub fn writes(&self) -> bool {
        WRITES.contains(&self.verb.as_str())
    }
}

/// The operator's (the test's `operator` ServiceAccount's) requests on `resource` (`configmaps`,
/// `serviceaccounts`, `secretproviderclasses`) `name` in the test's namespace, in order.
pub fn operator_requests(env: &Env, resource: &str, name: &str) -> Result<Vec<Request>, TestError> {
    let user = format!("system:serviceaccount:{}:operator", operator_namespace(&env.ns));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(env
        .plane
        .audit_events()?
        .into_iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| {
            let object = &e["objectRef"];
            object["resource"] == resource && object["namespace"] == env.ns.as_str() && object["name"] == name
        })
        .map(|e| Request { verb: text(&e["verb"]), code: e["responseStatus"]["code"].as_u64().unwrap_or(0) })
        .collect())
}

/// How many of the operator's requests on the object wrote (or tried to).
pub fn operator_writes(env: &Env, resource: &str, name: &str) -> Result<usize, TestError> {
    Ok(operator_requests(env, resource, name)?.iter().filter(|r| r.writes()).count())
}

/// How many times the operator read the object (each reconcile that looks at it reads it once).
pub fn operator_reads(env: &Env, resource: &str, name: &str) -> Result<usize, TestError> {
    Ok(operator_requests(env, resource, name)?.iter().filter(|r| r.verb == "get").count())
}
