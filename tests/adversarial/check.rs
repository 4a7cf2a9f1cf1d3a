//! The checker: the trust model's invariants (SECURITY.md), asserted on the simulator's full state and the
//! cluster after every step of the adversarial run. A broken invariant is recorded, not thrown, so that one
//! run reports every kind it finds.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::Duration,
};

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind::{
    api::{
        binding::{KeyVaultAccess, ScopedRoles, WorkloadIdentityBindingSpec},
        policy::WorkloadIdentityPolicySpec,
    },
    core::{
        naming,
        policy::{self, Rule},
        resource_id::{KEY_VAULT, ResourceId},
        settings::{Ceiling, OperatorSettings},
        validate::validate,
    },
};
use idbind_sim::state::{Identity, State};
use serde_json::Value;

use super::{Act, Run, all_identities, condition, text};
use idbind_testkit::{
    e2e::{RG, SUB, TestError, eventually},
    tenancy::CLUSTER,
};

/// What the operator's own identity looks like before the run: nothing may change it.
pub struct Baseline {
    operator_fics: BTreeSet<String>,
    operator_tags: BTreeMap<String, String>,
    operator_principal: String,
    /// The role assignments the Azure administrator gave the operator's identity (README's step 3).
    operator_roles: BTreeSet<String>,
}

impl Baseline {
    pub fn take(run: &Run<'_>) -> Result<Baseline, TestError> {
        let state = run.cluster.env.sim.state_typed();
        let (_, own) = operator_identity(run, &state).ok_or("the operator's identity is missing")?;
        Ok(Baseline {
            operator_fics: own.federated_identity_credentials.keys().cloned().collect(),
            operator_tags: own.tags.clone(),
            operator_principal: own.principal_id.clone(),
            operator_roles: roles_of(&state, &own.principal_id),
        })
    }
}

fn operator_identity(run: &Run<'_>, state: &State) -> Option<(String, Identity)> {
    let own = run.cluster.operator_identity.to_string();
    all_identities(state).into_iter().find(|(id, _)| id.eq_ignore_ascii_case(&own))
}

/// A binding as the checker needs it.
struct Seen {
    ns: String,
    name: String,
    uid: String,
    created: String,
    service_account: String,
    brings: Option<String>,
    deleting: bool,
    raw: Value,
}

impl Seen {
    fn of(b: &Value) -> Seen {
        let m = &b["metadata"];
        Seen {
            ns: text(&m["namespace"]),
            name: text(&m["name"]),
            uid: text(&m["uid"]),
            created: text(&m["creationTimestamp"]),
            service_account: text(&b["spec"]["serviceAccountName"]),
            brings: b["spec"]["identity"]["resourceId"].as_str().map(str::to_ascii_lowercase),
            deleting: !m["deletionTimestamp"].is_null(),
            raw: b.clone(),
        }
    }

    fn fic_name(&self) -> String {
        naming::federated_credential_name(CLUSTER, &self.ns, &self.name)
    }

    fn ready(&self) -> bool {
        condition(&self.raw, READY).0 == "True"
    }
}

/// Asserts every invariant on the state after one step.
pub async fn invariants(run: &mut Run<'_>, baseline: &Baseline) -> Result<(), TestError> {
    let state = run.cluster.env.sim.state_typed();
    let bindings: Vec<Seen> = run.bindings()?.iter().map(Seen::of).collect();
    let mut broken = Vec::new();
    trust(run, &state, &bindings, &mut broken);
    operator_untouched(run, &state, baseline, &mut broken);
    ready_is_true(run, &state, &bindings, &mut broken)?;
    annotations_kept(run, &mut broken)?;
    events_published(run, &bindings, &mut broken)?;
    broken.extend(grants_allowed(run).await?);
    broken.extend(kubernetes_writes(run)?);
    run.checks += 8;
    let at = run.at();
    run.violations.extend(broken.into_iter().map(|b| format!("{at}: {b}")));
    Ok(())
}

/// I8: every role assignment of an identity idbind manages for a binding (its exact tags name the namespace)
/// is on a scope, with a role, that a policy selecting that namespace allows now: judged by the operator's
/// own rules on the scope Azure holds the assignment at (so a spelling that landed elsewhere is caught),
/// including identities a deleted binding retained. Taking back is done at the binding's next reconcile,
/// which a policy change starts at once: the invariant is waited for, up to a minute.
async fn grants_allowed(run: &Run<'_>) -> Result<Vec<String>, TestError> {
    let mut last = Vec::new();
    let held = eventually("every grant allowed by a policy", Duration::from_secs(60), || {
        last = disallowed_grants(run)?;
        Ok(last.is_empty().then_some(()))
    })
    .await;
    Ok(if held.is_ok() { Vec::new() } else { last })
}

fn disallowed_grants(run: &Run<'_>) -> Result<Vec<String>, TestError> {
    let plane = run.cluster.env.plane;
    let listed: Value = serde_json::from_str(&plane.kubectl_ok(&["get", "wip", "-o", "json"])?)?;
    let rules: Vec<Rule> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let spec: WorkloadIdentityPolicySpec = serde_json::from_value(p["spec"].clone()).ok()?;
            Some(Rule::from_policy(p["metadata"]["name"].as_str()?, &spec, SUB))
        })
        .collect();
    let settings = OperatorSettings {
        cluster_name: CLUSTER.into(),
        subscription_id: SUB.into(),
        default_resource_group: Some(RG.into()),
        default_location: Some("westeurope".into()),
        issuer: plane.server().to_string(),
        operator_client_id: Some(run.cluster.operator_client_id.clone()),
        operator_service_account: Some((run.admin.ns.clone(), "operator".into())),
    };
    // The cluster's ceiling: closed namespaces, brought identities where a policy lists them.
    let ceiling = Ceiling { allow_existing_identity: true, ..Ceiling::default() };
    let state = run.cluster.env.sim.state_typed();
    let mut broken = Vec::new();
    for (_, identity) in all_identities(&state) {
        let Some(ns) = identity.tags.get("idbind.dev.namespace") else { continue };
        for ra in state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id) {
            let role = vec![ra.role_definition_guid.clone()];
            let spec = match ResourceId::parse(&ra.scope) {
                Ok(scope) if scope.is(KEY_VAULT) => WorkloadIdentityBindingSpec {
                    key_vaults: vec![KeyVaultAccess {
                        resource_id: Some(ra.scope.clone()),
                        roles: role,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                _ => WorkloadIdentityBindingSpec {
                    azure_roles: vec![ScopedRoles { scope: ra.scope.clone(), roles: role }],
                    ..Default::default()
                },
            };
            let spec = WorkloadIdentityBindingSpec { service_account_name: "probe".into(), ..spec };
            let allowed = validate(ns, "probe", &spec, &settings, &ceiling)
                .is_ok_and(|d| policy::check(ns, &d, &rules, &ceiling).is_empty());
            if !allowed {
                broken.push(format!(
                    "I8 {}'s identity {} holds role {} on {}, which no policy selecting {ns} allows",
                    ns, identity.name, ra.role_definition_guid, ra.scope
                ));
            }
        }
    }
    Ok(broken)
}

/// I9 and I10: the operator writes (as the API server's audit log shows every request of its ServiceAccount)
/// only ConfigMaps it created for a binding that named them (a create only of a name some binding of that
/// namespace named; any other write only after its own create), only classes a binding of the namespace named
/// (and never creates or deletes one), only ServiceAccounts a binding named; and nothing in a namespace that
/// is not a tenant's or the administrator's.
fn kubernetes_writes(run: &Run<'_>) -> Result<Vec<String>, TestError> {
    let user = format!("system:serviceaccount:{}:operator", run.admin.ns);
    let ours: BTreeSet<&str> =
        run.tenants.iter().map(|t| t.ns.as_str()).chain([run.admin.ns.as_str()]).collect();
    let mut created: BTreeSet<(String, String)> = BTreeSet::new();
    let mut broken = Vec::new();
    for event in run.cluster.env.plane.audit_events()? {
        let verb = text(&event["verb"]);
        if event["user"]["username"] != user.as_str()
            || !["create", "update", "patch", "delete"].contains(&verb.as_str())
        {
            continue;
        }
        let (resource, ns, name) = (
            text(&event["objectRef"]["resource"]),
            text(&event["objectRef"]["namespace"]),
            text(&event["objectRef"]["name"]),
        );
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        let key = (ns.clone(), name.clone());
        if !ours.contains(ns.as_str()) {
            broken.push(format!("I10 the operator's {verb} of {resource} {ns}/{name} (answered {code})"));
            continue;
        }
        let allowed = match (resource.as_str(), verb.as_str()) {
            // Create-if-absent: a create refused because one exists writes nothing.
            ("configmaps", "create") if code == 409 => true,
            ("configmaps", "create") => {
                let named = run.named.config_maps.contains(&key);
                if named && (200..300).contains(&code) {
                    created.insert(key.clone());
                }
                named
            }
            ("configmaps", _) => created.contains(&key),
            ("secretproviderclasses", "patch" | "update") => run.named.classes.contains(&key),
            ("serviceaccounts", "patch" | "update") => run.named.service_accounts.contains(&key),
            _ => false,
        };
        if !allowed {
            broken.push(format!("I9 the operator's {verb} of {resource} {ns}/{name} (answered {code}), which no binding named or it did not create"));
        }
    }
    Ok(broken)
}

/// I1: every federated credential idbind's issuer appears in trusts a ServiceAccount of a binding that holds
/// the identity as Azure shows it: the identity's exact ownership tags name that binding (and its UID), or
/// the binding brings the untagged identity and is its oldest claimant allowed to bring it. The operator's
/// identity trusts only the operator.
fn trust(run: &Run<'_>, state: &State, bindings: &[Seen], broken: &mut Vec<String>) {
    let issuer = run.cluster.env.plane.server().to_string();
    let own = run.cluster.operator_identity.to_string().to_ascii_lowercase();
    for (id, identity) in all_identities(state) {
        let lower = id.to_ascii_lowercase();
        for fic in identity.federated_identity_credentials.values().filter(|f| f.issuer == issuer) {
            if lower == own {
                if fic.name != "idbind-operator" {
                    broken.push(format!("I1 the operator's identity trusts {}", fic.subject));
                }
                continue;
            }
            let Some(holder) = bindings.iter().find(|b| b.fic_name() == fic.name) else {
                broken.push(format!("I1 {id} trusts {} for no binding", fic.subject));
                continue;
            };
            let subject = format!("system:serviceaccount:{}:{}", holder.ns, holder.service_account);
            if fic.subject != subject {
                broken.push(format!(
                    "I1 {id}: {}/{}'s credential trusts {}",
                    holder.ns, holder.name, fic.subject
                ));
            }
            if let Some(problem) = holds(holder, &lower, &identity, bindings) {
                broken.push(format!("I1 {id} trusts {}/{} but {problem}", holder.ns, holder.name));
            }
        }
    }
}

/// Why `b` does not hold the identity `id` as Azure shows it, if it does not.
fn holds(b: &Seen, id: &str, identity: &Identity, bindings: &[Seen]) -> Option<String> {
    let tag = |k: &str| identity.tags.get(k).cloned().unwrap_or_default();
    if identity.tags.contains_key("idbind.dev.binding") {
        let names = (tag("idbind.dev.namespace"), tag("idbind.dev.binding"));
        let uid = tag("idbind.dev.uid");
        return (names != (b.ns.clone(), b.name.clone()) || (!uid.is_empty() && uid != b.uid))
            .then(|| format!("its tags name {}/{} (uid {uid:?})", names.0, names.1));
    }
    if b.brings.as_deref() != Some(id) {
        return Some("it is untagged and the binding does not bring it".into());
    }
    // Only bindings allowed to bring it claim it (a refused one is judged PolicyViolation or InvalidSpec).
    let refusals = [Reason::PolicyViolation, Reason::InvalidSpec].map(Reason::as_str);
    let allowed = |o: &Seen| !refusals.contains(&condition(&o.raw, READY).1.as_str());
    let oldest = bindings
        .iter()
        .filter(|o| !o.deleting && o.brings.as_deref() == Some(id) && allowed(o))
        .min_by_key(|o| (o.created.clone(), format!("{}/{}", o.ns, o.name)))?;
    ((oldest.ns.as_str(), oldest.name.as_str()) != (b.ns.as_str(), b.name.as_str()))
        .then(|| format!("{}/{} brought it first", oldest.ns, oldest.name))
}

/// The names of `principal`'s role assignments.
fn roles_of(state: &State, principal: &str) -> BTreeSet<String> {
    state
        .role_assignments
        .values()
        .filter(|ra| ra.principal_id == principal)
        .map(|ra| ra.name.clone())
        .collect()
}

/// I2: nothing is ever written to the operator's own identity: its credentials, tags and role assignments (it
/// keeps exactly the roles the administrator gave it).
fn operator_untouched(run: &Run<'_>, state: &State, baseline: &Baseline, broken: &mut Vec<String>) {
    let Some((_, own)) = operator_identity(run, state) else {
        broken.push("I2 the operator's identity was deleted".into());
        return;
    };
    let fics: BTreeSet<String> = own.federated_identity_credentials.keys().cloned().collect();
    if fics != baseline.operator_fics {
        broken.push(format!("I2 the operator's identity has credentials {fics:?}"));
    }
    if own.tags != baseline.operator_tags {
        broken.push(format!("I2 the operator's identity was tagged {:?}", own.tags));
    }
    let roles = roles_of(state, &baseline.operator_principal);
    if roles != baseline.operator_roles {
        broken.push(format!("I2 the operator's identity holds role assignments {roles:?}"));
    }
}

/// I3: a Ready binding holds, in Azure, what its status says and its spec asks for: its identity trusts its
/// ServiceAccount, and each role assignment it reports exists for that identity's principal.
fn ready_is_true(
    run: &Run<'_>,
    state: &State,
    bindings: &[Seen],
    broken: &mut Vec<String>,
) -> Result<(), TestError> {
    let identities = all_identities(state);
    for b in bindings.iter().filter(|b| b.ready() && !b.deleting) {
        let status = &b.raw["status"];
        let id = text(&status["identity"]["resourceId"]).to_ascii_lowercase();
        let Some((_, identity)) = identities.iter().find(|(i, _)| i.to_ascii_lowercase() == id) else {
            broken.push(format!("I3 {}/{} is Ready with identity {id} missing", b.ns, b.name));
            continue;
        };
        let subject = format!("system:serviceaccount:{}:{}", b.ns, b.service_account);
        if !identity.federated_identity_credentials.values().any(|f| f.subject == subject) {
            broken.push(format!("I3 {}/{} is Ready but its identity does not trust {subject}", b.ns, b.name));
        }
        let roles_of = |list: &Value| {
            list.as_array()
                .map_or(0, |v| v.iter().map(|k| k["roles"].as_array().map_or(0, Vec::len)).sum::<usize>())
        };
        let wanted = roles_of(&b.raw["spec"]["keyVaults"]) + roles_of(&b.raw["spec"]["azureRoles"]);
        let reported = status["roleAssignments"].as_array().cloned().unwrap_or_default();
        if reported.len() != wanted {
            broken.push(format!("I3 {}/{} is Ready with {} of {wanted} roles", b.ns, b.name, reported.len()));
        }
        for ra in &reported {
            let id = text(&ra["id"]).to_ascii_lowercase();
            let name = id.rsplit('/').next().unwrap_or_default().to_string();
            let held = state
                .role_assignments
                .values()
                .any(|a| a.name.to_ascii_lowercase() == name && a.principal_id == identity.principal_id);
            if !held {
                broken.push(format!("I3 {}/{} is Ready but lost role assignment {name}", b.ns, b.name));
            }
        }
        let annotation = service_account_client_id(run, &b.ns, &b.service_account)?;
        if annotation != identity.client_id {
            broken
                .push(format!("I3 {}/{} is Ready but its ServiceAccount says {annotation:?}", b.ns, b.name));
        }
    }
    Ok(())
}

fn service_account_client_id(run: &Run<'_>, ns: &str, sa: &str) -> Result<String, TestError> {
    let path = "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}";
    let out = run.cluster.env.plane.kubectl(&["get", "sa", sa, "-n", ns, "-o", path]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// I4: a client-id annotation idbind did not write is never changed: the operator's own and those set by
/// hand.
fn annotations_kept(run: &Run<'_>, broken: &mut Vec<String>) -> Result<(), TestError> {
    let own = service_account_client_id(run, &run.admin.ns, "operator")?;
    if own != run.cluster.operator_client_id {
        broken.push(format!("I4 the operator's ServiceAccount now says {own:?}"));
    }
    for (ns, sa, value) in &run.by_hand {
        let now = service_account_client_id(run, ns, sa)?;
        if now != *value {
            broken.push(format!("I4 {ns}/{sa}, annotated by hand, now says {now:?}"));
        }
    }
    Ok(())
}

/// I5: every binding idbind judged has an Event, whatever the length of its name.
fn events_published(run: &Run<'_>, bindings: &[Seen], broken: &mut Vec<String>) -> Result<(), TestError> {
    let listed: Value =
        serde_json::from_str(&run.cluster.env.plane.kubectl_ok(&["get", "events", "-A", "-o", "json"])?)?;
    let about: BTreeSet<(String, String)> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "WorkloadIdentityBinding")
        .map(|e| (text(&e["involvedObject"]["namespace"]), text(&e["involvedObject"]["name"])))
        .collect();
    for b in bindings.iter().filter(|b| !b.deleting) {
        if !about.contains(&(b.ns.clone(), b.name.clone())) {
            broken.push(format!("I5 {}/{} ({} characters) has no Event", b.ns, b.name, b.name.len()));
        }
    }
    Ok(())
}

/// I6: once every binding is settled, idbind writes nothing to Azure (no binding undoes another's work):
/// checked over the time every Ready binding needs to read its federated credentials twice.
pub async fn steady_state(run: &mut Run<'_>) -> Result<(), TestError> {
    let sim = &run.cluster.env.sim;
    let ready = run.bindings()?.iter().map(Seen::of).filter(Seen::ready).count();
    if ready == 0 {
        return Ok(());
    }
    let before = sim.counters();
    let lists = before.total("FederatedIdentityCredentials_List");
    let wanted = lists + 2 * u64::try_from(ready)?;
    eventually("two federation checks per Ready binding", Duration::from_secs(120), || {
        Ok((sim.counters().total("FederatedIdentityCredentials_List") >= wanted).then_some(()))
    })
    .await?;
    let after = sim.counters();
    let mut writes = String::new();
    for op in idbind_sim::operations::write_operations() {
        let n = after.total(op) - before.total(op);
        if n > 0 {
            let _ = write!(writes, " {op}×{n}");
        }
    }
    run.checks += 1;
    if !writes.is_empty() {
        run.violations.push(format!("{}: I6 writes in steady state:{writes}", run.at()));
    }
    Ok(())
}

/// What a run did and found.
#[derive(Default)]
pub struct Figures {
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub acts: BTreeMap<Act, u32>,
    pub refused_by_api_server: u32,
    pub checks: u64,
    pub violations: Vec<String>,
}

impl Figures {
    pub fn of(run: &Run<'_>) -> Figures {
        Figures {
            seeds: vec![run.seed],
            steps: run.step,
            acts: run.acts.clone(),
            refused_by_api_server: run.refused_by_api_server,
            checks: run.checks,
            violations: run.violations.clone(),
        }
    }

    pub fn add(&mut self, other: &Figures) {
        self.seeds.extend(&other.seeds);
        self.steps += other.steps;
        for (act, n) in &other.acts {
            *self.acts.entry(*act).or_default() += n;
        }
        self.refused_by_api_server += other.refused_by_api_server;
        self.checks += other.checks;
        self.violations.extend(other.violations.iter().cloned());
    }

    pub fn line(&self) -> String {
        let acts: Vec<String> = self.acts.iter().map(|(a, n)| format!("{a:?} {n}")).collect();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            let kind = v.split("): ").nth(1).and_then(|s| s.split(' ').next()).unwrap_or("?");
            *kinds.entry(kind).or_default() += 1;
        }
        format!(
            "seeds {:?}, steps {}, actions [{}], refused by the API server {}, invariant checks {}, violations {} {:?}",
            self.seeds,
            self.steps,
            acts.join(", "),
            self.refused_by_api_server,
            self.checks,
            self.violations.len(),
            kinds
        )
    }
}
