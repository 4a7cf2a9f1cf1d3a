//! What a reconcile came to, and what follows from it: the status, the Event and when to look again.
//!
//! Every step of the reconcile pipeline ends in an [`Outcome`]; [`report`] is the one place that turns it
//! into conditions (as kstatus, Flux and `kubectl wait` read them), an Event (only with a change users can
//! see, so a resync of a failing binding does not flood Events) and a [`Requeue`]. Pure: the time comes in as
//! an argument, so every outcome is a row of a table test.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::core::reason::{Reason, Severity};
use crate::{
    api::binding::{
        AccessPolicyStatus, FederatedCredentialStatus, IdentityStatus, RoleAssignmentStatus,
        WorkloadIdentityBindingStatus,
    },
    core::{
        claim::Holder,
        conditions::{self, Want},
        validate::Invalid,
        wiring::{Unwired, Wiring},
    },
};

/// What only one binding may hold, and another already does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// A ServiceAccount (by name, in the binding's namespace): it carries one client id.
    ServiceAccount(String),
    /// A brought identity (its resource id).
    Identity(String),
}

impl Claimed {
    fn part(&self) -> Part {
        match self {
            Claimed::ServiceAccount(_) => Part::ServiceAccount,
            Claimed::Identity(_) => Part::Identity,
        }
    }

    fn reason(&self) -> Reason {
        match self {
            Claimed::ServiceAccount(_) => Reason::ServiceAccountConflict,
            Claimed::Identity(_) => Reason::IdentityInUse,
        }
    }
}

/// The part of a binding a failure concerns: each has its own condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Identity,
    FederatedCredential,
    RoleAssignments,
    ServiceAccount,
    /// Verification: the ServiceAccount's token exchanges for the identity.
    Federation,
    /// Verification: the identity's token opens the vaults.
    Access,
    /// The SecretProviderClasses the spec names carry the identity's ids.
    SecretProviderClasses,
    /// The export ConfigMap carries the identity's ids.
    Export,
}

impl Part {
    pub fn condition(self) -> &'static str {
        match self {
            Part::Identity => conditions::IDENTITY_READY,
            Part::FederatedCredential => conditions::FEDERATED_CREDENTIAL_READY,
            Part::RoleAssignments => conditions::ROLE_ASSIGNMENTS_READY,
            Part::ServiceAccount => conditions::SERVICE_ACCOUNT_READY,
            Part::Federation => conditions::FEDERATION_VERIFIED,
            Part::Access => conditions::ACCESS_VERIFIED,
            Part::SecretProviderClasses => conditions::SECRET_PROVIDER_CLASSES_READY,
            Part::Export => conditions::EXPORT_READY,
        }
    }
}

/// Why a part of the binding is not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub part: Part,
    /// The stable PascalCase reason: condition reason, Event reason and metric label.
    pub reason: Reason,
    pub message: String,
    /// How long Azure asked us to wait, when it said.
    pub retry_after: Option<Duration>,
}

/// What the binding holds once Azure matches its spec: the status's record of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub identity: IdentityStatus,
    pub federated_credential: FederatedCredentialStatus,
    pub role_assignments: Vec<RoleAssignmentStatus>,
    pub access_policies: Vec<AccessPolicyStatus>,
}

/// How a reconcile of a binding ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The policies' cache holds no full list yet: judging against part of them could let through what a
    /// policy not yet seen forbids, so nothing was judged or written.
    NotSynced,
    /// The spec, the operator's ceiling or a `WorkloadIdentityPolicy` refuses the binding; nothing was
    /// written to Azure. Only a change of the spec or of a policy helps.
    Invalid(Vec<Invalid>),
    /// The ceiling or a `WorkloadIdentityPolicy` refuses part of the spec in a namespace an administrator has
    /// said something about: what they no longer allow was taken back and the rest kept, with nothing new
    /// written. `held` is what the binding holds now, when that is all the allowed part (`None`: the status
    /// keeps its record); `pending` says why taking back is not finished (it is tried again).
    Refused { problems: Vec<Invalid>, held: Option<Box<Held>>, pending: Option<Failure> },
    /// Another binding, created first, holds what this one claims.
    Conflict { claimed: Claimed, holder: Holder },
    /// Waiting for a turn at the request budget (others' identities are created first).
    Deferred { part: Part, message: String, wait: Duration },
    /// A failure that may heal by retrying (throttling, a 5xx, replication lag).
    Transient(Failure),
    /// A failure that needs someone to change something (a name taken, a vault missing).
    Stalled(Failure),
    /// Azure holds what the binding asks for, but its ServiceAccount does not exist (yet).
    ServiceAccountMissing { held: Box<Held>, namespace: String, service_account: String },
    /// Azure and the ServiceAccount match the spec. `previous_client_id` is what the ServiceAccount's
    /// annotation said before; `proof` what verification proved (`None` with verification off); `wiring` what
    /// became of the SecretProviderClasses and the export the spec names (Ready only once they carry the
    /// ids).
    Converged {
        held: Box<Held>,
        service_account: String,
        previous_client_id: Option<String>,
        proof: Option<Proof>,
        wiring: Wiring,
    },
    /// Azure and the ServiceAccount match the spec, and verification waits for Azure to propagate it: `part`
    /// (federation or access) is not proven yet; `federation` says what is, when access is the part waiting.
    Unproven {
        held: Box<Held>,
        service_account: String,
        part: Part,
        federation: Option<String>,
        message: String,
        wait: Duration,
        wiring: Wiring,
    },
}

/// What verification proved, as the conditions' messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub federation: String,
    /// `None` when only federation is verified.
    pub access: Option<String>,
}

impl Outcome {
    /// The metric result (`ok`, `error`, `deferred`) and, for an error, its category.
    pub fn result(&self) -> (&'static str, Option<Reason>) {
        match self {
            Outcome::Converged { wiring, .. } => match wiring.problem() {
                Some(unwired) => ("error", Some(unwired.reason)),
                None => ("ok", None),
            },
            Outcome::NotSynced => ("ok", None),
            Outcome::Unproven { .. } => ("deferred", None),
            Outcome::Deferred { .. } => ("deferred", None),
            Outcome::Invalid(problems) | Outcome::Refused { problems, .. } => {
                ("error", problems.first().map(|p| p.reason))
            }
            Outcome::Conflict { claimed, .. } => ("error", Some(claimed.reason())),
            Outcome::Transient(f) | Outcome::Stalled(f) => ("error", Some(f.reason)),
            Outcome::ServiceAccountMissing { .. } => ("error", Some(Reason::ServiceAccountNotFound)),
        }
    }
}

/// How many problems of an invalid spec its conditions show (the Events list them all).
const SHOWN_PROBLEMS: usize = 3;

/// `message` as Event notes of at most `limit` bytes each (Kubernetes keeps a note to 1 kB): split between
/// its "; "-separated items, each part numbered when there are several, an item longer than a note cut.
pub fn note_parts(message: &str, limit: usize) -> Vec<String> {
    // Room for the "(12/34) " numbering.
    let room = limit.saturating_sub(10).max(1);
    let cut = |item: &str| {
        let mut end = item.len().min(room);
        while !item.is_char_boundary(end) {
            end -= 1;
        }
        item[..end].to_string()
    };
    let mut parts: Vec<String> = Vec::new();
    for item in message.split("; ").map(cut) {
        match parts.last_mut() {
            Some(last) if last.len() + 2 + item.len() <= room => {
                last.push_str("; ");
                last.push_str(&item);
            }
            _ => parts.push(item),
        }
    }
    let n = parts.len();
    if n > 1 {
        for (i, part) in parts.iter_mut().enumerate() {
            *part = format!("({}/{n}) {part}", i + 1);
        }
    }
    parts
}

/// An Event to publish about the binding; its type is its reason's (`Reason::severity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: Reason,
    pub message: String,
}

impl Note {
    fn new(reason: Reason, message: impl Into<String>) -> Note {
        Note { reason, message: message.into() }
    }

    fn from(f: &Failure) -> Note {
        Note::new(f.reason, f.message.clone())
    }

    pub fn severity(&self) -> Severity {
        self.reason.severity()
    }
}

/// When to reconcile the binding again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only when something changes (the spec, a policy, its ServiceAccount).
    AwaitChange,
    /// After this long.
    After(Duration),
    /// After the binding's next backoff step (or Azure's Retry-After), but not sooner than `at_least`.
    Backoff { retry_after: Option<Duration>, at_least: Duration },
    /// At the next drift check; the binding's backoff starts over.
    Resync,
}

/// What a reconcile writes and does next.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The status to write; equal to the one before when nothing users can see changed (then nothing is
    /// written).
    pub status: WorkloadIdentityBindingStatus,
    /// Only with a status change.
    pub event: Option<Note>,
    pub requeue: Requeue,
}

/// How long a binding whose ServiceAccount or identity another binding holds waits before looking again: the
/// holder's deletion is no event of this binding's.
const CONFLICT_RECHECK: Duration = Duration::from_secs(30);
/// The least a stalled binding waits before it is tried again (something has to change first).
const STALLED_RECHECK: Duration = Duration::from_secs(30);

/// The status, Event and requeue that `outcome` calls for, given the status `before` it and the binding's
/// `generation`.
pub fn report(
    before: Option<&WorkloadIdentityBindingStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) -> Report {
    report_admitted(before, outcome, None, generation, now)
}

/// [`report`], for a reconcile whose gate let the binding through with `admitted_by` the policies that
/// selected its namespace (`None`: the gate stopped it, and the record stays as it was).
pub fn report_admitted(
    before: Option<&WorkloadIdentityBindingStatus>,
    outcome: &Outcome,
    admitted_by: Option<&[String]>,
    generation: Option<i64>,
    now: &Time,
) -> Report {
    let before = before.cloned().unwrap_or_default();
    if let Some(requeue) = quiet(&before, outcome, generation) {
        return Report { status: before, event: None, requeue };
    }
    let mut next = Conditions::new(before.clone(), generation, now);
    let (event, requeue) = next.record(outcome);
    let mut status = next.status;
    if let Some(by) = admitted_by {
        status.admitted_by = by.to_vec();
    }
    // An Event only with a change users can see.
    let event = event.filter(|_| status != before);
    Report { status, event, requeue }
}

/// The outcomes that leave the status as it is, and when to look again: nothing judged yet, or a wait or a
/// transient failure of a binding Ready for this very spec, which says nothing about its Azure objects (the
/// status stays rather than flapping what GitOps health checks read).
fn quiet(
    before: &WorkloadIdentityBindingStatus,
    outcome: &Outcome,
    generation: Option<i64>,
) -> Option<Requeue> {
    let ready_for_generation = conditions::is_true(&before.conditions, conditions::READY)
        && before.observed_generation == generation;
    match outcome {
        Outcome::NotSynced => Some(Requeue::After(Duration::from_secs(2))),
        Outcome::Deferred { wait, .. } if ready_for_generation => Some(Requeue::After(*wait)),
        Outcome::Transient(f) if ready_for_generation => Some(backoff(f)),
        _ => None,
    }
}

/// The part of the wiring that keeps a converged binding from Ready, and why: the classes first, then the
/// export.
fn unwired(wiring: &Wiring) -> Option<(Part, Unwired)> {
    let classes = wiring.classes_problem().map(|p| (Part::SecretProviderClasses, p));
    classes.or_else(|| wiring.export_problem().map(|p| (Part::Export, p)))
}

/// A transient failure's requeue: the binding's next backoff step, or Azure's Retry-After.
fn backoff(f: &Failure) -> Requeue {
    Requeue::Backoff { retry_after: f.retry_after, at_least: Duration::ZERO }
}

/// The status being built: conditions set for one generation at one time.
struct Conditions<'a> {
    status: WorkloadIdentityBindingStatus,
    generation: Option<i64>,
    now: &'a Time,
}

impl<'a> Conditions<'a> {
    fn new(mut status: WorkloadIdentityBindingStatus, generation: Option<i64>, now: &'a Time) -> Self {
        status.observed_generation = generation;
        Conditions { status, generation, now }
    }

    /// Sets the conditions `outcome` calls for; the Event it calls for and when to look again.
    fn record(&mut self, outcome: &Outcome) -> (Option<Note>, Requeue) {
        match outcome {
            Outcome::NotSynced => (None, Requeue::After(Duration::from_secs(2))),
            Outcome::Invalid(problems) => (Some(self.invalid(problems)), Requeue::AwaitChange),
            Outcome::Refused { problems, held, pending } => self.refused(problems, held.as_deref(), pending),
            Outcome::Conflict { claimed, holder } => {
                (Some(self.conflict(claimed, holder)), Requeue::After(CONFLICT_RECHECK))
            }
            Outcome::Deferred { part, message, wait } => {
                self.reconciling(*part, Reason::AwaitingRequestBudget, message);
                (None, Requeue::After(*wait))
            }
            Outcome::Transient(f) => {
                self.reconciling(f.part, f.reason, &f.message);
                (Some(Note::from(f)), backoff(f))
            }
            Outcome::Stalled(f) => {
                self.stalled(f.part, f.reason, &f.message);
                let requeue = Requeue::Backoff { retry_after: None, at_least: STALLED_RECHECK };
                (Some(Note::from(f)), requeue)
            }
            Outcome::ServiceAccountMissing { held, namespace, service_account } => {
                (Some(self.service_account_missing(held, namespace, service_account)), Requeue::Resync)
            }
            Outcome::Converged { held, service_account, previous_client_id, proof, wiring } => {
                self.proven(proof.as_ref());
                match unwired(wiring) {
                    Some((part, problem)) => {
                        self.bound(held, service_account, wiring);
                        self.unwired(part, &problem)
                    }
                    None => {
                        let note =
                            self.converged(held, service_account, previous_client_id.as_deref(), wiring);
                        (note, Requeue::Resync)
                    }
                }
            }
            Outcome::Unproven { held, service_account, part, federation, message, wait, wiring } => {
                self.bound(held, service_account, wiring);
                if let Some(federation) = federation {
                    self.set(conditions::FEDERATION_VERIFIED, true, Reason::Verified, federation);
                }
                self.reconciling(*part, Reason::PropagationPending, message);
                (None, Requeue::After(*wait))
            }
        }
    }

    fn set(&mut self, type_: &str, ok: bool, reason: Reason, message: &str) {
        self.want(&Want { type_, status: ok, reason, message: message.to_string() });
    }

    fn want(&mut self, want: &Want<'_>) {
        conditions::set(&mut self.status.conditions, want, self.generation, self.now);
    }

    fn remove(&mut self, type_: &str) {
        conditions::remove(&mut self.status.conditions, type_);
    }

    /// `part` and Ready false; Reconciling: work goes on.
    fn reconciling(&mut self, part: Part, reason: Reason, message: &str) {
        self.set(part.condition(), false, reason, message);
        self.set(conditions::READY, false, reason, message);
        self.set(conditions::RECONCILING, true, reason, message);
        self.remove(conditions::STALLED);
    }

    /// `part` and Ready false; Stalled: retrying alone will not help.
    fn stalled(&mut self, part: Part, reason: Reason, message: &str) {
        self.set(part.condition(), false, reason, message);
        self.set(conditions::READY, false, reason, message);
        self.set(conditions::STALLED, true, reason, message);
        self.remove(conditions::RECONCILING);
    }

    /// The first problems and a count in the conditions (the largest spec once made a ~10 kB message,
    /// repeated in Ready and Stalled); every problem in the Event.
    fn invalid(&mut self, problems: &[Invalid]) -> Note {
        let reason = problems.first().map_or(Reason::InvalidSpec, |p| p.reason);
        let all: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect();
        let mut shown = all.iter().take(SHOWN_PROBLEMS).cloned().collect::<Vec<_>>().join("; ");
        if all.len() > SHOWN_PROBLEMS {
            let more = all.len() - SHOWN_PROBLEMS;
            shown.push_str(&format!("; and {more} more problem(s), listed in the Events (kubectl describe)"));
        }
        self.set(conditions::READY, false, reason, &shown);
        self.set(conditions::STALLED, true, reason, &shown);
        self.remove(conditions::RECONCILING);
        Note::new(reason, all.join("; "))
    }

    /// A refusal of part of the spec: the problems as for an invalid spec, the record of what the binding
    /// still holds, and, while taking back is not finished, why (in RoleAssignmentsReady), tried again.
    fn refused(
        &mut self,
        problems: &[Invalid],
        held: Option<&Held>,
        pending: &Option<Failure>,
    ) -> (Option<Note>, Requeue) {
        if let Some(held) = held {
            self.held(held);
        }
        let note = self.invalid(problems);
        match pending {
            None => (Some(note), Requeue::AwaitChange),
            Some(f) => {
                let message = format!("taking back what the policies no longer allow: {}", f.message);
                self.set(conditions::ROLE_ASSIGNMENTS_READY, false, f.reason, &message);
                (Some(note), backoff(f))
            }
        }
    }

    fn conflict(&mut self, claimed: &Claimed, holder: &Holder) -> Note {
        let (holder, precedence) = (&holder.binding, holder.precedence());
        let message = match claimed {
            Claimed::ServiceAccount(service_account) => format!(
                "spec.serviceAccountName: ServiceAccount {service_account} is already bound by \
                 WorkloadIdentityBinding {holder} ({precedence}); a ServiceAccount carries one client id, so \
                 point this binding at another ServiceAccount or delete one of them"
            ),
            Claimed::Identity(resource_id) => format!(
                "spec.identity.resourceId: identity {resource_id} is already brought by WorkloadIdentityBinding \
                 {holder} ({precedence}); whoever federates an identity gets every role it holds, so one \
                 identity serves one binding: bring another identity or delete one of the bindings"
            ),
        };
        let (part, reason) = (claimed.part(), claimed.reason());
        self.stalled(part, reason, &message);
        Note::new(reason, message)
    }

    /// Records what the binding holds in Azure, with the three Azure conditions true.
    fn held(&mut self, held: &Held) {
        let Held { identity, federated_credential, role_assignments, access_policies } = held;
        self.status.identity = Some(identity.clone());
        self.status.federated_credential = Some(federated_credential.clone());
        self.status.role_assignments = role_assignments.clone();
        self.status.access_policies = access_policies.clone();
        self.set(
            conditions::IDENTITY_READY,
            true,
            Reason::IdentityReady,
            &format!("identity {} exists", identity.resource_id),
        );
        let trusts = format!("trusts {} for {}", federated_credential.issuer, federated_credential.subject);
        self.set(conditions::FEDERATED_CREDENTIAL_READY, true, Reason::FederatedCredentialReady, &trusts);
        let (assignments, policies) = (role_assignments.len(), access_policies.len());
        let granted = if policies == 0 {
            format!("{assignments} role assignment(s) in place")
        } else {
            format!("{assignments} role assignment(s) and {policies} access polic(ies) in place")
        };
        self.set(conditions::ROLE_ASSIGNMENTS_READY, true, Reason::RoleAssignmentsReady, &granted);
    }

    /// What the binding holds, its ServiceAccount annotated, and what became of its SecretProviderClasses and
    /// export.
    fn bound(&mut self, held: &Held, service_account: &str, wiring: &Wiring) {
        self.held(held);
        self.status.service_account = Some(service_account.to_string());
        let annotated = format!("ServiceAccount {service_account} carries the client id");
        self.set(conditions::SERVICE_ACCOUNT_READY, true, Reason::ServiceAccountAnnotated, &annotated);
        self.wired(held, wiring);
    }

    /// The wiring's conditions (each present only when the spec asks for its part) and its status records:
    /// the classes named, the ConfigMap exported to, and what idbind wrote on them and on the ServiceAccount.
    fn wired(&mut self, held: &Held, wiring: &Wiring) {
        let client_id = held.identity.client_id.as_deref().unwrap_or_default();
        let parts = [
            (conditions::SECRET_PROVIDER_CLASSES_READY, wiring.classes_condition(client_id)),
            (conditions::EXPORT_READY, wiring.export_condition()),
        ];
        for (type_, want) in parts {
            match want {
                Some(want) => self.want(&want),
                None => self.remove(type_),
            }
        }
        self.status.secret_provider_classes = wiring.classes.iter().map(|c| c.name.clone()).collect();
        self.status.exported_config_map =
            wiring.export.as_ref().filter(|e| e.ours()).map(|e| e.config_map.clone());
        self.status.written = wiring.written.clone();
    }

    /// Azure and the ServiceAccount are done, but a class or the export the spec names is not: Ready false,
    /// stalled or waiting (a class not created yet, which the watch of classes brings back).
    fn unwired(&mut self, part: Part, problem: &Unwired) -> (Option<Note>, Requeue) {
        let Unwired { reason, message, stalled } = problem;
        let reason = *reason;
        if *stalled {
            self.stalled(part, reason, message);
            let requeue = Requeue::Backoff { retry_after: None, at_least: STALLED_RECHECK };
            (Some(Note::new(reason, message.clone())), requeue)
        } else {
            self.reconciling(part, reason, message);
            (Some(Note::new(reason, message.clone())), Requeue::Resync)
        }
    }

    /// The verification conditions: true with what was proven, absent with verification off.
    fn proven(&mut self, proof: Option<&Proof>) {
        match proof {
            Some(Proof { federation, access }) => {
                self.set(conditions::FEDERATION_VERIFIED, true, Reason::Verified, federation);
                match access {
                    Some(access) => self.set(conditions::ACCESS_VERIFIED, true, Reason::Verified, access),
                    None => self.remove(conditions::ACCESS_VERIFIED),
                }
            }
            None => {
                self.remove(conditions::FEDERATION_VERIFIED);
                self.remove(conditions::ACCESS_VERIFIED);
            }
        }
    }

    fn service_account_missing(&mut self, held: &Held, namespace: &str, service_account: &str) -> Note {
        self.held(held);
        self.status.service_account = None;
        let message = format!(
            "ServiceAccount {namespace}/{service_account} does not exist; the binding completes when it is created"
        );
        self.reconciling(Part::ServiceAccount, Reason::ServiceAccountNotFound, &message);
        Note::new(Reason::ServiceAccountNotFound, message)
    }

    /// Everything true; the Event says what a user needs to know: that pods must restart for a new client id,
    /// or that the binding became Ready.
    fn converged(
        &mut self,
        held: &Held,
        service_account: &str,
        previous_client_id: Option<&str>,
        wiring: &Wiring,
    ) -> Option<Note> {
        let was_ready = conditions::is_true(&self.status.conditions, conditions::READY);
        self.bound(held, service_account, wiring);
        self.set(conditions::READY, true, Reason::Reconciled, "Azure and the ServiceAccount match the spec");
        self.remove(conditions::RECONCILING);
        self.remove(conditions::STALLED);
        let client_id = held.identity.client_id.clone().unwrap_or_default();
        if previous_client_id.is_some_and(|p| p != client_id) {
            let message = format!(
                "ServiceAccount {service_account} now names client id {client_id}; running pods keep the old one \
                 until they restart"
            );
            Some(Note::new(Reason::ClientIdChanged, message))
        } else if !was_ready {
            let message = format!("identity {client_id} bound to ServiceAccount {service_account}");
            Some(Note::new(Reason::Ready, message))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::{WrittenKind, WrittenStatus};
    use crate::core::wiring::{Class, ClassState, Export, ExportState, Foreign};

    const GENERATION: Option<i64> = Some(3);
    const BROUGHT: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/\
                           userAssignedIdentities/shared";

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
    }

    fn held(client_id: &str) -> Held {
        Held {
            identity: IdentityStatus {
                resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/\
                              userAssignedIdentities/id"
                    .into(),
                name: "id".into(),
                client_id: Some(client_id.into()),
                principal_id: Some("p".into()),
                tenant_id: Some("t".into()),
                managed: true,
            },
            federated_credential: FederatedCredentialStatus {
                name: "fic".into(),
                issuer: "https://issuer/".into(),
                subject: "system:serviceaccount:shop:app".into(),
            },
            role_assignments: vec![RoleAssignmentStatus::default()],
            access_policies: Vec::new(),
        }
    }

    fn converged(client_id: &str) -> Outcome {
        wired(client_id, Wiring::default())
    }

    /// Converged, with `wiring` of the SecretProviderClasses and the export.
    fn wired(client_id: &str, wiring: Wiring) -> Outcome {
        Outcome::Converged {
            held: Box::new(held(client_id)),
            service_account: "app".into(),
            previous_client_id: None,
            proof: None,
            wiring,
        }
    }

    fn failure(reason: Reason) -> Failure {
        Failure {
            part: Part::RoleAssignments,
            reason,
            message: format!("{reason} happened"),
            retry_after: Some(Duration::from_secs(7)),
        }
    }

    fn invalid() -> Outcome {
        Outcome::Invalid(vec![
            Invalid {
                field: "spec.keyVaults[0]".into(),
                reason: Reason::PolicyViolation,
                message: "not allowed".into(),
            },
            Invalid {
                field: "spec.identity.name".into(),
                reason: Reason::InvalidSpec,
                message: "too short".into(),
            },
        ])
    }

    #[test]
    fn an_invalid_spec_shows_its_first_problems_and_a_count_and_the_event_all_of_them() {
        let problems: Vec<Invalid> = (0..20)
            .map(|i| Invalid {
                field: format!("spec.keyVaults[{i}].roles[0]"),
                reason: Reason::PolicyViolation,
                message: format!("role {i} is not allowed here by the policy team-shop"),
            })
            .collect();
        let r = report(None, &Outcome::Invalid(problems), GENERATION, &at(100));
        for type_ in ["Ready", "Stalled"] {
            let c = r.status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.message.clone());
            let message = c.unwrap_or_default();
            assert!(message.contains("spec.keyVaults[2].roles[0]"), "{message}");
            assert!(!message.contains("spec.keyVaults[3]"), "{message}");
            assert!(message.ends_with("and 17 more problem(s), listed in the Events (kubectl describe)"));
        }
        let note = r.event.map(|e| e.message).unwrap_or_default();
        assert!(note.contains("spec.keyVaults[19].roles[0]: role 19"), "{note}");
    }

    #[test]
    fn a_narrowed_binding_is_refused_records_what_it_keeps_and_retries_only_an_unfinished_revocation() {
        let problems = vec![Invalid {
            field: "spec.keyVaults[1]".into(),
            reason: Reason::PolicyViolation,
            message: "no policy for namespace shop allows vault kv-other".into(),
        }];
        let ready = report(None, &converged("c1"), GENERATION, &at(100)).status;
        let mut kept = held("c1");
        kept.role_assignments.clear();
        let done = Outcome::Refused { problems: problems.clone(), held: Some(Box::new(kept)), pending: None };
        let r = report(Some(&ready), &done, GENERATION, &at(200));
        let condition = |s: &WorkloadIdentityBindingStatus, t: &str| {
            s.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()))
        };
        assert_eq!(condition(&r.status, "Ready"), Some(("False".into(), Reason::PolicyViolation.into())));
        assert_eq!(condition(&r.status, "Stalled"), Some(("True".into(), Reason::PolicyViolation.into())));
        assert!(r.status.role_assignments.is_empty(), "the record names what the binding still holds");
        assert_eq!(r.requeue, Requeue::AwaitChange);
        assert_eq!(r.event.map(|e| e.reason), Some(Reason::PolicyViolation));
        // Taking back failed (throttled): the binding comes back, the record stays, and says why.
        let pending = Outcome::Refused { problems, held: None, pending: Some(failure(Reason::Throttled)) };
        let r = report(Some(&ready), &pending, GENERATION, &at(200));
        assert_eq!(r.status.role_assignments, ready.role_assignments);
        assert_eq!(
            condition(&r.status, conditions::ROLE_ASSIGNMENTS_READY),
            Some(("False".into(), Reason::Throttled.into()))
        );
        assert_eq!(condition(&r.status, "Ready"), Some(("False".into(), Reason::PolicyViolation.into())));
        assert_eq!(
            r.requeue,
            Requeue::Backoff { retry_after: Some(Duration::from_secs(7)), at_least: Duration::ZERO }
        );
    }

    #[test]
    fn the_policies_that_let_a_binding_through_are_recorded_and_kept_when_it_is_refused() {
        let by = ["team-shop".to_string()];
        let r = report_admitted(None, &converged("c1"), Some(&by), GENERATION, &at(100));
        assert_eq!(r.status.admitted_by, by);
        // Refused later (the gate let nothing through): the record stays, so that a namespace no policy
        // selects any more is known to have been taken back.
        let r = report_admitted(Some(&r.status), &invalid(), None, GENERATION, &at(200));
        assert_eq!(r.status.admitted_by, by);
        // Let through in an open namespace: no policy.
        let r = report_admitted(Some(&r.status), &converged("c1"), Some(&[]), GENERATION, &at(300));
        assert!(r.status.admitted_by.is_empty());
    }

    #[test]
    fn a_long_message_goes_out_as_numbered_notes_within_the_limit() {
        let items: Vec<String> =
            (0..40).map(|i| format!("spec.keyVaults[{i}].roles: {}", "x".repeat(60))).collect();
        let parts = note_parts(&items.join("; "), 1024);
        assert!(parts.len() > 1, "{parts:?}");
        assert!(parts.iter().all(|p| p.len() <= 1024));
        assert!(parts[0].starts_with(&format!("(1/{}) spec.keyVaults[0]", parts.len())), "{}", parts[0]);
        for item in &items {
            assert!(parts.iter().any(|p| p.contains(item.as_str())), "{item} lost");
        }
        assert_eq!(note_parts("short", 1024), vec!["short".to_string()]);
        // One item longer than a note is cut on a character boundary.
        assert!(note_parts(&"é".repeat(2000), 1024).iter().all(|p| p.len() <= 1024));
    }

    /// The status a binding has after `outcome` for `generation`, reported at time 100.
    fn status_after(outcome: &Outcome, generation: Option<i64>) -> WorkloadIdentityBindingStatus {
        report(None, outcome, generation, &at(100)).status
    }

    /// One row: what users see of a report.
    #[derive(Debug, PartialEq)]
    struct Seen {
        ready: (String, String),
        stalled: bool,
        reconciling: bool,
        event: Option<(Severity, Reason)>,
        requeue: Requeue,
        written: bool,
    }

    fn seen(before: Option<&WorkloadIdentityBindingStatus>, outcome: &Outcome) -> Seen {
        let r = report(before, outcome, GENERATION, &at(200));
        let condition = |t: &str| r.status.conditions.iter().find(|c| c.type_ == t);
        Seen {
            ready: condition(conditions::READY)
                .map(|c| (c.status.clone(), c.reason.clone()))
                .unwrap_or_default(),
            stalled: conditions::is_true(&r.status.conditions, conditions::STALLED),
            reconciling: conditions::is_true(&r.status.conditions, conditions::RECONCILING),
            event: r.event.as_ref().map(|e| (e.severity(), e.reason)),
            requeue: r.requeue,
            written: r.status != before.cloned().unwrap_or_default(),
        }
    }

    /// What users should see: Ready's status and reason, and by default nothing else, a resync, and a write.
    fn expect(status: &str, reason: Reason) -> Seen {
        let ready = (status.to_string(), reason.to_string());
        Seen {
            ready,
            stalled: false,
            reconciling: false,
            event: None,
            requeue: Requeue::Resync,
            written: true,
        }
    }

    impl Seen {
        fn stalled(self) -> Self {
            Seen { stalled: true, ..self }
        }

        fn reconciling(self) -> Self {
            Seen { reconciling: true, ..self }
        }

        fn event(self, severity: Severity, reason: Reason) -> Self {
            Seen { event: Some((severity, reason)), ..self }
        }

        fn requeue(self, requeue: Requeue) -> Self {
            Seen { requeue, ..self }
        }

        fn unwritten(self) -> Self {
            Seen { written: false, ..self }
        }
    }

    type Row<'a> = (&'a str, Option<&'a WorkloadIdentityBindingStatus>, Outcome, Seen);

    fn check(table: Vec<Row<'_>>) {
        for (name, before, outcome, want) in table {
            assert_eq!(seen(before, &outcome), want, "{name}");
        }
    }

    fn deferred() -> Outcome {
        Outcome::Deferred { part: Part::Identity, message: "due in 3 s".into(), wait: Duration::from_secs(3) }
    }

    const BACKOFF: Requeue =
        Requeue::Backoff { retry_after: Some(Duration::from_secs(7)), at_least: Duration::ZERO };

    #[test]
    fn failures_and_waits_are_reported_by_kind() {
        use Severity::{Normal, Warning};
        let ready = status_after(&converged("c1"), GENERATION);
        let missing = Outcome::ServiceAccountMissing {
            held: Box::new(held("c1")),
            namespace: "shop".into(),
            service_account: "app".into(),
        };
        let turn = Requeue::After(Duration::from_secs(3));
        let stalled = Requeue::Backoff { retry_after: None, at_least: STALLED_RECHECK };
        check(vec![
            (
                "caches not synced: nothing is judged",
                None,
                Outcome::NotSynced,
                Seen {
                    ready: Default::default(),
                    ..expect("", Reason::Reconciled)
                        .requeue(Requeue::After(Duration::from_secs(2)))
                        .unwritten()
                },
            ),
            ("invalid: stalled, first reason, waits for a change", None, invalid(), {
                expect("False", Reason::PolicyViolation)
                    .stalled()
                    .event(Warning, Reason::PolicyViolation)
                    .requeue(Requeue::AwaitChange)
            }),
            ("waiting for a turn emits no Event", None, deferred(), {
                expect("False", Reason::AwaitingRequestBudget).reconciling().requeue(turn)
            }),
            (
                "a transient failure is reported, with Azure's Retry-After",
                None,
                Outcome::Transient(failure(Reason::Throttled)),
                {
                    expect("False", Reason::Throttled)
                        .reconciling()
                        .event(Normal, Reason::Throttled)
                        .requeue(BACKOFF)
                },
            ),
            (
                "a stalled failure waits at least 30 s",
                Some(&ready),
                Outcome::Stalled(failure(Reason::VaultNotFound)),
                {
                    expect("False", Reason::VaultNotFound)
                        .stalled()
                        .event(Warning, Reason::VaultNotFound)
                        .requeue(stalled)
                },
            ),
            ("Azure done, ServiceAccount missing", None, missing, {
                let e = expect("False", Reason::ServiceAccountNotFound).reconciling();
                e.event(Warning, Reason::ServiceAccountNotFound)
            }),
        ]);
    }

    fn holder(binding: &str) -> Holder {
        Holder { binding: binding.into(), tie_by_name: false }
    }

    #[test]
    fn what_another_binding_holds_stalls_the_binding_and_is_looked_at_again() {
        let ready = status_after(&converged("c1"), GENERATION);
        let conflict =
            Outcome::Conflict { claimed: Claimed::ServiceAccount("app".into()), holder: holder("first") };
        let in_use =
            Outcome::Conflict { claimed: Claimed::Identity(BROUGHT.into()), holder: holder("a/first") };
        check(vec![
            ("another binding holds the ServiceAccount", Some(&ready), conflict, {
                let e = expect("False", Reason::ServiceAccountConflict).stalled();
                e.event(Severity::Warning, Reason::ServiceAccountConflict)
                    .requeue(Requeue::After(CONFLICT_RECHECK))
            }),
            ("another binding brings the identity", Some(&ready), in_use, {
                let e = expect("False", Reason::IdentityInUse).stalled();
                e.event(Severity::Warning, Reason::IdentityInUse).requeue(Requeue::After(CONFLICT_RECHECK))
            }),
        ]);
    }

    #[test]
    fn a_ready_binding_stays_ready_through_waits_and_transient_failures() {
        let ready = status_after(&converged("c1"), GENERATION);
        let ready_for_older_spec = status_after(&converged("c1"), Some(2));
        let turn = Requeue::After(Duration::from_secs(3));
        check(vec![
            ("waiting for a turn keeps a Ready binding Ready", Some(&ready), deferred(), {
                expect("True", Reason::Reconciled).requeue(turn).unwritten()
            }),
            (
                "a transient failure keeps a Ready binding Ready",
                Some(&ready),
                Outcome::Transient(failure(Reason::Throttled)),
                { expect("True", Reason::Reconciled).requeue(BACKOFF).unwritten() },
            ),
            ("a Ready status of an older spec does not hold", Some(&ready_for_older_spec), deferred(), {
                expect("False", Reason::AwaitingRequestBudget).reconciling().requeue(turn)
            }),
        ]);
    }

    #[test]
    fn verification_gates_ready_and_says_what_was_proven() {
        let condition = |status: &WorkloadIdentityBindingStatus, t: &str| {
            status.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()))
        };
        let pair = |s: &str, r: Reason| Some((s.to_string(), r.to_string()));
        let proven = Outcome::Converged {
            held: Box::new(held("c1")),
            service_account: "app".into(),
            previous_client_id: None,
            proof: Some(Proof { federation: "exchanges".into(), access: Some("lists secrets".into()) }),
            wiring: Wiring::default(),
        };
        let status = status_after(&proven, GENERATION);
        assert_eq!(condition(&status, conditions::READY), pair("True", Reason::Reconciled));
        assert_eq!(condition(&status, conditions::FEDERATION_VERIFIED), pair("True", Reason::Verified));
        assert_eq!(condition(&status, conditions::ACCESS_VERIFIED), pair("True", Reason::Verified));
        // Waiting for the role to reach the vault: federation proven, access pending, not Ready.
        let pending = Outcome::Unproven {
            held: Box::new(held("c1")),
            service_account: "app".into(),
            part: Part::Access,
            federation: Some("exchanges".into()),
            message: "waiting".into(),
            wait: Duration::from_secs(2),
            wiring: Wiring::default(),
        };
        let r = report(Some(&status), &pending, Some(4), &at(300));
        assert_eq!(condition(&r.status, conditions::READY), pair("False", Reason::PropagationPending));
        assert_eq!(condition(&r.status, conditions::RECONCILING), pair("True", Reason::PropagationPending));
        assert_eq!(
            condition(&r.status, conditions::ACCESS_VERIFIED),
            pair("False", Reason::PropagationPending)
        );
        assert_eq!(condition(&r.status, conditions::FEDERATION_VERIFIED), pair("True", Reason::Verified));
        assert_eq!(
            condition(&r.status, conditions::SERVICE_ACCOUNT_READY),
            pair("True", Reason::ServiceAccountAnnotated)
        );
        assert_eq!((r.event, r.requeue), (None, Requeue::After(Duration::from_secs(2))));
        // Verification turned off: its conditions go.
        let proven_status = status_after(&proven, GENERATION);
        let off = report(Some(&proven_status), &converged("c1"), GENERATION, &at(300)).status;
        assert_eq!(condition(&off, conditions::FEDERATION_VERIFIED), None);
        assert_eq!(condition(&off, conditions::ACCESS_VERIFIED), None);
    }

    #[test]
    fn convergence_is_announced_once_and_a_new_client_id_says_pods_must_restart() {
        let ready = status_after(&converged("c1"), GENERATION);
        let moved = Outcome::Converged {
            held: Box::new(held("c2")),
            service_account: "app".into(),
            previous_client_id: Some("c1".into()),
            proof: None,
            wiring: Wiring::default(),
        };
        check(vec![
            ("converged: Ready, announced once", None, converged("c1"), {
                expect("True", Reason::Reconciled).event(Severity::Normal, Reason::Ready)
            }),
            ("converged again: nothing written, no Event", Some(&ready), converged("c1"), {
                expect("True", Reason::Reconciled).unwritten()
            }),
            ("a new client id says pods must restart", Some(&ready), moved, {
                expect("True", Reason::Reconciled).event(Severity::Normal, Reason::ClientIdChanged)
            }),
        ]);
    }

    fn classes(states: &[(&str, ClassState)]) -> Wiring {
        let classes =
            states.iter().map(|(name, state)| Class { name: name.to_string(), state: state.clone() });
        Wiring { classes: classes.collect(), export: None, written: Vec::new() }
    }

    #[test]
    fn ready_waits_for_every_class_and_the_export_the_spec_names() {
        use Severity::Warning;
        let ready = status_after(&converged("c1"), GENERATION);
        let wired_status = status_after(&wired("c1", classes(&[("kv", ClassState::Wired)])), GENERATION);
        let stalled = Requeue::Backoff { retry_after: None, at_least: STALLED_RECHECK };
        let exported = |state| Wiring {
            classes: Vec::new(),
            export: Some(Export { config_map: "ids".into(), state }),
            written: Vec::new(),
        };
        let held_by = ClassState::HeldBy(holder("first"));
        let foreign = ExportState::Foreign(Foreign::NotRecorded);
        let stalls = |reason| expect("False", reason).stalled().event(Warning, reason).requeue(stalled);
        check(vec![
            ("every class wired: Ready", Some(&ready), wired("c1", classes(&[("kv", ClassState::Wired)])), {
                expect("True", Reason::Reconciled)
            }),
            (
                "wired again: nothing written",
                Some(&wired_status),
                wired("c1", classes(&[("kv", ClassState::Wired)])),
                { expect("True", Reason::Reconciled).unwritten() },
            ),
            (
                "a class not created yet: waited for, the watch brings it",
                Some(&ready),
                wired("c1", classes(&[("kv", ClassState::Wired), ("db", ClassState::NotFound)])),
                {
                    expect("False", Reason::SecretProviderClassNotFound)
                        .reconciling()
                        .event(Warning, Reason::SecretProviderClassNotFound)
                },
            ),
            (
                "another provider's class: stalled",
                Some(&ready),
                wired("c1", classes(&[("kv", ClassState::UnsupportedProvider("vault".into()))])),
                stalls(Reason::UnsupportedProvider),
            ),
            (
                "a class another binding holds: stalled",
                None,
                wired("c1", classes(&[("kv", held_by)])),
                stalls(Reason::SecretProviderClassConflict),
            ),
            (
                "no SecretProviderClass API: stalled, looked at again",
                None,
                wired("c1", classes(&[("kv", ClassState::Unavailable)])),
                stalls(Reason::SecretProviderClassesUnavailable),
            ),
            ("exported: Ready", None, wired("c1", exported(ExportState::Exported)), {
                expect("True", Reason::Reconciled).event(Severity::Normal, Reason::Ready)
            }),
            (
                "someone else's ConfigMap: stalled",
                Some(&ready),
                wired("c1", exported(foreign)),
                stalls(Reason::ExportConflict),
            ),
        ]);
    }

    #[test]
    fn an_object_another_writer_keeps_changing_stalls_the_binding() {
        use Severity::Warning;
        let ready = status_after(&converged("c1"), GENERATION);
        let stalled = Requeue::Backoff { retry_after: None, at_least: STALLED_RECHECK };
        let fought = Wiring {
            classes: Vec::new(),
            export: Some(Export {
                config_map: "ids".into(),
                state: ExportState::Contested { undone: "kubectl-patch".into(), by: "other".into() },
            }),
            written: Vec::new(),
        };
        let class_fought =
            classes(&[("kv", ClassState::Contested { undone: "kubectl-patch".into(), by: "argocd".into() })]);
        check(vec![
            ("its ConfigMap changed twice by someone else", Some(&ready), wired("c1", fought), {
                expect("False", Reason::ExportConflict)
                    .stalled()
                    .event(Warning, Reason::ExportConflict)
                    .requeue(stalled)
            }),
            ("a class changed twice by someone else", Some(&ready), wired("c1", class_fought), {
                expect("False", Reason::SecretProviderClassConflict)
                    .stalled()
                    .event(Warning, Reason::SecretProviderClassConflict)
                    .requeue(stalled)
            }),
        ]);
    }

    #[test]
    fn the_wiring_conditions_and_records_follow_the_spec() {
        let condition = |status: &WorkloadIdentityBindingStatus, t: &str| {
            status.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()))
        };
        let pair = |s: &str, r: Reason| Some((s.to_string(), r.to_string()));
        let record = |kind, name: &str| WrittenStatus {
            kind,
            name: name.into(),
            uid: format!("uid-{name}"),
            client_id: "c1".into(),
            generation: 3,
            undone: None,
            contested: None,
        };
        let written = vec![
            record(WrittenKind::ServiceAccount, "app"),
            record(WrittenKind::SecretProviderClass, "kv"),
            record(WrittenKind::ConfigMap, "ids"),
        ];
        let both = Wiring {
            classes: vec![Class { name: "kv".into(), state: ClassState::Wired }],
            export: Some(Export { config_map: "ids".into(), state: ExportState::Exported }),
            written: written.clone(),
        };
        let status = status_after(&wired("c1", both), GENERATION);
        assert_eq!(
            condition(&status, conditions::SECRET_PROVIDER_CLASSES_READY),
            pair("True", Reason::Wired)
        );
        assert_eq!(condition(&status, conditions::EXPORT_READY), pair("True", Reason::Exported));
        assert_eq!(
            (status.secret_provider_classes.clone(), status.exported_config_map.clone()),
            (vec!["kv".to_string()], Some("ids".to_string()))
        );
        assert_eq!(status.written, written, "what idbind wrote is recorded");
        // The names leave the spec: the conditions and the records go.
        let after = report(Some(&status), &converged("c1"), GENERATION, &at(300)).status;
        assert_eq!(condition(&after, conditions::SECRET_PROVIDER_CLASSES_READY), None);
        assert_eq!(condition(&after, conditions::EXPORT_READY), None);
        assert!(after.secret_provider_classes.is_empty() && after.exported_config_map.is_none());
        // A ConfigMap idbind did not write is not recorded as exported: nothing of it is idbind's to delete.
        let conflict = Wiring {
            classes: Vec::new(),
            export: Some(Export {
                config_map: "ids".into(),
                state: ExportState::Foreign(Foreign::NotControlled),
            }),
            written: Vec::new(),
        };
        assert_eq!(status_after(&wired("c1", conflict), GENERATION).exported_config_map, None);
        // One idbind made but another writer contests stays recorded: it is still idbind's to delete.
        let contested = Wiring {
            classes: Vec::new(),
            export: Some(Export {
                config_map: "ids".into(),
                state: ExportState::Contested { undone: "a".into(), by: "b".into() },
            }),
            written: vec![record(WrittenKind::ConfigMap, "ids")],
        };
        let status = status_after(&wired("c1", contested), GENERATION);
        assert_eq!(status.exported_config_map.as_deref(), Some("ids"));
        assert_eq!(status.written, vec![record(WrittenKind::ConfigMap, "ids")]);
        // A binding not Ready for its wiring counts as an error in the metrics.
        let missing = wired("c1", classes(&[("kv", ClassState::NotFound)]));
        assert_eq!(missing.result(), ("error", Some(Reason::SecretProviderClassNotFound)));
    }

    #[test]
    fn a_failure_seen_again_writes_nothing_and_publishes_nothing() {
        for outcome in [
            invalid(),
            Outcome::Stalled(failure(Reason::VaultNotFound)),
            Outcome::Transient(failure(Reason::Throttled)),
        ] {
            let first = report(None, &outcome, GENERATION, &at(100));
            let again = report(Some(&first.status), &outcome, GENERATION, &at(200));
            assert_eq!((&again.status, &again.event), (&first.status, &None), "{outcome:?}");
        }
    }

    #[test]
    fn the_status_records_what_the_binding_holds_and_for_which_generation() {
        let status = status_after(&converged("c1"), GENERATION);
        let h = held("c1");
        assert_eq!(status.observed_generation, GENERATION);
        assert_eq!(
            (status.identity, status.federated_credential, status.role_assignments, status.service_account),
            (Some(h.identity), Some(h.federated_credential), h.role_assignments, Some("app".to_string()))
        );
        assert!(status.conditions.iter().all(|c| c.status == "True" && c.observed_generation == GENERATION));
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                conditions::IDENTITY_READY,
                conditions::FEDERATED_CREDENTIAL_READY,
                conditions::ROLE_ASSIGNMENTS_READY,
                conditions::SERVICE_ACCOUNT_READY,
                conditions::READY
            ]
        );
    }

    #[test]
    fn a_failure_keeps_what_the_binding_held_and_when_ready_last_changed() {
        let ready = status_after(&converged("c1"), Some(2));
        let failed =
            report(Some(&ready), &Outcome::Stalled(failure(Reason::RoleNotFound)), GENERATION, &at(300))
                .status;
        assert_eq!(
            (&failed.identity, &failed.federated_credential),
            (&ready.identity, &ready.federated_credential)
        );
        let since = |s: &WorkloadIdentityBindingStatus, t: &str| {
            s.conditions.iter().find(|c| c.type_ == t).map(|c| c.last_transition_time.clone())
        };
        assert_eq!(since(&failed, conditions::READY), Some(at(300)), "Ready flipped");
        assert_eq!(
            since(&failed, conditions::IDENTITY_READY),
            Some(at(100)),
            "the identity condition did not"
        );
        let message = failed.conditions.iter().find(|c| c.type_ == conditions::ROLE_ASSIGNMENTS_READY);
        assert_eq!(
            message.map(|c| (c.status.as_str(), c.message.as_str())),
            Some(("False", "RoleNotFound happened"))
        );
    }

    #[test]
    fn invalid_messages_name_every_field() {
        let status = status_after(&invalid(), GENERATION);
        let ready =
            status.conditions.iter().find(|c| c.type_ == conditions::READY).map(|c| c.message.clone());
        assert_eq!(ready.as_deref(), Some("spec.keyVaults[0]: not allowed; spec.identity.name: too short"));
    }

    #[test]
    fn metric_results_follow_the_outcome() {
        assert_eq!(converged("c").result(), ("ok", None));
        assert_eq!(invalid().result(), ("error", Some(Reason::PolicyViolation)));
        assert_eq!(
            Outcome::Transient(failure(Reason::Throttled)).result(),
            ("error", Some(Reason::Throttled))
        );
        let deferred =
            Outcome::Deferred { part: Part::Identity, message: String::new(), wait: Duration::ZERO };
        assert_eq!(deferred.result(), ("deferred", None));
    }
}
