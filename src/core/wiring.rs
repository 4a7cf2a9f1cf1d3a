//! What idbind writes on the objects that carry the bound identity's ids besides the ServiceAccount, and what
//! it may take back: the `SecretProviderClass`es a binding names (the Key Vault CSI driver's; idbind keeps
//! `spec.parameters.clientID` and `tenantId`) and the ConfigMap it exports the ids to. Pure: the adapter
//! (`k8s::secret_provider_class`, `k8s::export`) observes the objects, these functions decide, and
//! [`super::report`] turns the results into the `SecretProviderClassesReady` and `ExportReady` conditions.
//!
//! The rules: a class is written only when its provider is `azure`, only those two parameters, only under
//! idbind's own field manager, and only by the binding that holds it (the oldest naming it, as with
//! ServiceAccounts); idbind takes back only what its field manager owns and only when no binding names the
//! class any more. An exported ConfigMap is written or deleted only when it is the one idbind created for
//! this binding: its UID recorded in the binding's status at creation ([`WrittenStatus`], which tenants
//! cannot write), the binding its controller owner and idbind's label on it; an owner reference alone, which
//! anyone who may edit the ConfigMap can write, proves nothing. What someone else changes on either is undone
//! once and then left alone ([`super::rewrite`]).

use std::collections::BTreeMap;

use crate::{
    api::binding::WrittenStatus,
    core::{
        claim::Holder,
        conditions::{self, Want},
        plan::IdentityIds,
        reason::Reason,
        rewrite::Need,
    },
};

/// The field manager of what idbind writes on SecretProviderClasses: not the one of the status and the
/// ServiceAccount annotations, so `managedFields` tell apart what idbind wrote there, and applying an empty
/// object under it takes back exactly that.
pub const CLASS_FIELD_MANAGER: &str = "idbind.dev/secret-provider-class";
/// The field manager of the exported ConfigMaps.
pub const EXPORT_FIELD_MANAGER: &str = "idbind.dev/export";
/// The only provider whose classes idbind writes: the Azure Key Vault provider reads `clientID`/`tenantId`.
pub const AZURE_PROVIDER: &str = "azure";
/// The Azure provider's parameter that selects workload identity: the identity's client id.
pub const CLIENT_ID_PARAMETER: &str = "clientID";
/// The Azure provider's tenant parameter (lower-case `d`, unlike `clientID`).
pub const TENANT_ID_PARAMETER: &str = "tenantId";
/// The label on exported ConfigMaps: what the operator's watch of them selects.
pub const EXPORT_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "idbind");

/// A SecretProviderClass as read just before idbind would write it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ObservedClass {
    /// `spec.provider`.
    pub provider: Option<String>,
    /// `spec.parameters.clientID`.
    pub client_id: Option<String>,
    /// `spec.parameters.tenantId`.
    pub tenant_id: Option<String>,
    /// Whether idbind's field manager owns any of its fields (`managedFields`).
    pub written_by_idbind: bool,
    /// The field managers other than idbind's that own `clientID` or `tenantId`.
    pub others: Vec<String>,
}

/// What to do with a class the binding holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassPlan {
    /// An `azure` class, and what it needs for the two parameters ([`super::rewrite::decide`] says whether
    /// idbind writes it).
    Azure(Need),
    /// Another provider's class: left untouched, reported.
    Unsupported { provider: String },
}

/// What `class` needs to carry the identity's `ids`. Parameters that are right but set by someone else are
/// still applied (a write that changes no value): idbind then co-owns them, so a later edit is repaired and
/// withdrawing takes back only what no one else set.
pub fn class_plan(class: &ObservedClass, ids: &IdentityIds) -> ClassPlan {
    let provider = class.provider.as_deref().unwrap_or_default();
    if provider != AZURE_PROVIDER {
        return ClassPlan::Unsupported { provider: provider.to_string() };
    }
    let right = class.client_id.as_deref() == Some(ids.client_id.as_str())
        && class.tenant_id.as_deref() == Some(ids.tenant_id.as_str());
    ClassPlan::Azure(match (right, class.written_by_idbind) {
        (true, true) => Need::Nothing,
        (true, false) => Need::Ownership,
        (false, _) => Need::Values { by: class.others.clone() },
    })
}

/// Whether idbind takes back what it wrote on a class no longer named by the binding that wired it: only if
/// its field manager owns something there, and no other binding (not being deleted) of the namespace names
/// the class (that one keeps it wired; idbind has one field manager for all bindings).
pub fn withdraws(class: Option<&ObservedClass>, named_by_another: bool) -> bool {
    class.is_some_and(|c| c.written_by_idbind) && !named_by_another
}

/// What became of one class the binding names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassState {
    /// It carries the identity's client and tenant ids.
    Wired,
    /// No such class in the binding's namespace (yet).
    NotFound,
    /// Another provider's class.
    UnsupportedProvider(String),
    /// An older binding of the namespace names it and keeps it wired.
    HeldBy(Holder),
    /// Someone else changed the two parameters again after idbind undid a change (`undone`: that change's
    /// writers, `by`: this one's): left alone.
    Contested { undone: String, by: String },
    /// The cluster does not serve the SecretProviderClass API (the CSI driver is not installed).
    Unavailable,
}

/// One class named by the binding and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub state: ClassState,
}

/// A ConfigMap as read just before idbind would write it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ObservedConfigMap {
    /// Its `metadata.uid`.
    pub uid: String,
    /// The UID in its controller owner reference, when that reference names a WorkloadIdentityBinding.
    pub controlling_binding: Option<String>,
    pub data: BTreeMap<String, String>,
    /// For each key of `data`, the field managers other than idbind's that own it.
    pub data_writers: BTreeMap<String, Vec<String>>,
    /// Whether it carries [`EXPORT_LABEL`] (the watch sees it, the operator's admission policy lets it be
    /// written).
    pub labelled: bool,
    /// Whether it has `binaryData` or is `immutable`: never something idbind's create makes.
    pub more_than_data: bool,
}

/// Why a ConfigMap of the export's name is not the binding's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// Its controller is not this binding (or it has none).
    NotControlled,
    /// It is controlled by this binding but idbind has no record of creating it, and it is not exactly what
    /// idbind's create makes.
    NotRecorded,
    /// idbind made it, but its label was removed: idbind (and its admission policy) write only labelled
    /// ConfigMaps.
    Unlabelled,
}

/// What to do about the binding's export ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportPlan {
    /// It does not exist: create it.
    Create,
    /// It is this binding's: its UID is recorded, or (`adopted`) it is exactly what idbind's create makes,
    /// which is how a create whose record was lost (a crash before the status write, or an idbind from before
    /// records) looks. What it needs; [`super::rewrite::decide`] says whether idbind writes it.
    Ours { need: Need, adopted: bool },
    /// It exists and is not this binding's: never written or deleted.
    Foreign(Foreign),
}

/// The ConfigMap's data: the ids under their own names and under the Azure SDKs' environment variable names,
/// so a container can take it whole with `envFrom`.
pub fn export_data(ids: &IdentityIds) -> BTreeMap<String, String> {
    [
        ("clientId", ids.client_id.clone()),
        ("tenantId", ids.tenant_id.clone()),
        ("principalId", ids.principal_id.clone()),
        ("resourceId", ids.resource_id.to_string()),
        ("AZURE_CLIENT_ID", ids.client_id.clone()),
        ("AZURE_TENANT_ID", ids.tenant_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What to do about the export ConfigMap (`None`: it does not exist) of the binding with `binding_uid`, given
/// idbind's `record` of the ConfigMap of that name, and the `data` it exports.
pub fn export_plan(
    observed: Option<&ObservedConfigMap>,
    record: Option<&WrittenStatus>,
    binding_uid: &str,
    data: &BTreeMap<String, String>,
) -> ExportPlan {
    let Some(cm) = observed else {
        return ExportPlan::Create;
    };
    if cm.controlling_binding.as_deref() != Some(binding_uid) {
        return ExportPlan::Foreign(Foreign::NotControlled);
    }
    let recorded = record.is_some_and(|r| r.uid == cm.uid);
    if !cm.labelled {
        return ExportPlan::Foreign(if recorded { Foreign::Unlabelled } else { Foreign::NotRecorded });
    }
    if recorded {
        let wrong: Vec<&String> =
            data.iter().filter(|(k, v)| cm.data.get(*k) != Some(*v)).map(|(k, _)| k).collect();
        if wrong.is_empty() {
            return ExportPlan::Ours { need: Need::Nothing, adopted: false };
        }
        let mut by: Vec<String> =
            wrong.iter().flat_map(|k| cm.data_writers.get(*k).cloned().unwrap_or_default()).collect();
        by.sort();
        by.dedup();
        return ExportPlan::Ours { need: Need::Values { by }, adopted: false };
    }
    // Exactly what idbind's create makes: nothing in it is anyone else's, so taking it as the binding's
    // changes nothing and loses nothing, whoever made it.
    if cm.data == *data && !cm.more_than_data {
        return ExportPlan::Ours { need: Need::Nothing, adopted: true };
    }
    ExportPlan::Foreign(Foreign::NotRecorded)
}

/// Whether idbind may delete a ConfigMap it no longer exports to: only one that is this binding's by the
/// rules of [`export_plan`].
pub fn deletes_export(
    observed: Option<&ObservedConfigMap>,
    record: Option<&WrittenStatus>,
    binding_uid: &str,
    data: &BTreeMap<String, String>,
) -> bool {
    observed
        .is_some_and(|_| matches!(export_plan(observed, record, binding_uid, data), ExportPlan::Ours { .. }))
}

/// What became of the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportState {
    /// Written (or already right).
    Exported,
    /// A ConfigMap of that name is not this binding's.
    Foreign(Foreign),
    /// Someone else changed its data again after idbind undid a change (`undone`: that change's writers,
    /// `by`: this one's): left alone.
    Contested { undone: String, by: String },
}

/// What became of the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub config_map: String,
    pub state: ExportState,
}

impl Export {
    /// Whether the ConfigMap is the one idbind made for the binding (so the status names it, and idbind
    /// deletes it when the export moves away).
    pub fn ours(&self) -> bool {
        !matches!(self.state, ExportState::Foreign(_))
    }
}

/// What the bind and wiring steps did: the classes the spec names (empty: no condition), the export (`None`:
/// no condition), and idbind's record of what it wrote on the ServiceAccount, the classes and the export
/// ConfigMap (the status keeps it).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Wiring {
    pub classes: Vec<Class>,
    pub export: Option<Export>,
    pub written: Vec<WrittenStatus>,
}

/// Why the wiring keeps a binding from being Ready: the part's condition reason, a message naming every class
/// (or the ConfigMap) concerned, and whether retrying alone will not help (Stalled; a missing class is waited
/// for instead, as a missing ServiceAccount is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwired {
    pub reason: Reason,
    pub message: String,
    pub stalled: bool,
}

impl Unwired {
    /// Condition `type_` false for this problem.
    fn condition(self, type_: &'static str) -> Want<'static> {
        Want { type_, status: false, reason: self.reason, message: self.message }
    }
}

impl Wiring {
    /// The SecretProviderClassesReady condition: `None` when the spec names no class, else whether every
    /// class is wired, its reason and message.
    pub fn classes_condition(&self, client_id: &str) -> Option<Want<'static>> {
        if self.classes.is_empty() {
            return None;
        }
        let type_ = conditions::SECRET_PROVIDER_CLASSES_READY;
        Some(match self.classes_problem() {
            Some(problem) => problem.condition(type_),
            None => {
                let names: Vec<&str> = self.classes.iter().map(|c| c.name.as_str()).collect();
                let message = format!(
                    "SecretProviderClass(es) {} carry client id {client_id} and its tenant id",
                    names.join(", ")
                );
                Want { type_, status: true, reason: Reason::Wired, message }
            }
        })
    }

    /// The ExportReady condition: `None` without an export.
    pub fn export_condition(&self) -> Option<Want<'static>> {
        let export = self.export.as_ref()?;
        let type_ = conditions::EXPORT_READY;
        Some(match self.export_problem() {
            Some(problem) => problem.condition(type_),
            None => Want {
                type_,
                status: true,
                reason: Reason::Exported,
                message: format!("ConfigMap {} carries the identity's ids", export.config_map),
            },
        })
    }

    /// What keeps the binding from Ready, if anything: the classes first, then the export.
    pub fn problem(&self) -> Option<Unwired> {
        self.classes_problem().or_else(|| self.export_problem())
    }

    /// What keeps the classes from being wired, if anything.
    pub fn classes_problem(&self) -> Option<Unwired> {
        // The most pressing reason leads: what only an administrator can fix, then what the spec or another
        // binding must change, then what merely has not been created yet.
        let order = [
            Reason::SecretProviderClassesUnavailable,
            Reason::UnsupportedProvider,
            Reason::SecretProviderClassConflict,
            Reason::SecretProviderClassNotFound,
        ];
        let problems: Vec<(Reason, String)> = self.classes.iter().filter_map(class_problem).collect();
        let reason = order.into_iter().find(|r| problems.iter().any(|(p, _)| p == r))?;
        if reason == Reason::SecretProviderClassesUnavailable {
            let message = "spec.secretProviderClasses: the cluster does not serve SecretProviderClasses \
                (secrets-store.csi.x-k8s.io): install the Secrets Store CSI driver and its Azure provider; \
                idbind looks again periodically"
                .to_string();
            return Some(Unwired { reason, message, stalled: true });
        }
        let message = problems.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ");
        Some(Unwired { reason, message, stalled: reason != Reason::SecretProviderClassNotFound })
    }

    /// What keeps the export from being written, if anything.
    pub fn export_problem(&self) -> Option<Unwired> {
        let export = self.export.as_ref()?;
        let name = &export.config_map;
        let message = match &export.state {
            ExportState::Exported => return None,
            ExportState::Foreign(Foreign::NotControlled) => format!(
                "spec.export.configMapName: ConfigMap {name} exists and was not created by idbind for this \
                 binding (its controller is not this binding); idbind never writes or deletes it: delete it, \
                 or export to another name"
            ),
            ExportState::Foreign(Foreign::NotRecorded) => format!(
                "spec.export.configMapName: ConfigMap {name} names this binding as its controller, but idbind \
                 has no record of creating it (status.written) and it holds more than the ids idbind exports; \
                 an owner reference anyone who may edit the ConfigMap can write proves nothing, so idbind \
                 never writes or deletes it: delete it (idbind then creates its own), or export to another \
                 name"
            ),
            ExportState::Foreign(Foreign::Unlabelled) => format!(
                "spec.export.configMapName: ConfigMap {name}, which idbind made for this binding, lost the \
                 label {}={}; idbind writes only ConfigMaps carrying it (its admission policy allows no \
                 other): put the label back, or delete the ConfigMap (idbind makes it anew)",
                EXPORT_LABEL.0, EXPORT_LABEL.1
            ),
            ExportState::Contested { undone, by } => format!(
                "spec.export.configMapName: ConfigMap {name}: its data was changed again (by {by}) after \
                 idbind undid a change (by {undone}); another writer is changing it, and idbind does not \
                 fight it: stop that writer, then delete the ConfigMap (idbind makes it anew) or put back \
                 the ids the binding's status shows"
            ),
        };
        Some(Unwired { reason: Reason::ExportConflict, message, stalled: true })
    }
}

/// A class's reason and message, when it is not wired.
fn class_problem(class: &Class) -> Option<(Reason, String)> {
    let name = &class.name;
    match &class.state {
        ClassState::Wired => None,
        ClassState::Unavailable => Some((Reason::SecretProviderClassesUnavailable, String::new())),
        ClassState::NotFound => Some((
            Reason::SecretProviderClassNotFound,
            format!("SecretProviderClass {name} does not exist; idbind wires it when it is created"),
        )),
        ClassState::UnsupportedProvider(provider) => Some((
            Reason::UnsupportedProvider,
            format!(
                "SecretProviderClass {name} has provider {provider:?}: idbind writes clientID and tenantId only \
                 on classes of the azure provider, and left it untouched"
            ),
        )),
        ClassState::Contested { undone, by } => Some((
            Reason::SecretProviderClassConflict,
            format!(
                "SecretProviderClass {name}: spec.parameters.{CLIENT_ID_PARAMETER} or {TENANT_ID_PARAMETER} \
                 was changed again (by {by}) after idbind undid a change (by {undone}); another writer keeps \
                 setting them, and idbind does not fight it: leave both out of what that writer applies, then \
                 put back the client and tenant ids the binding's status shows (or re-create the class)"
            ),
        )),
        ClassState::HeldBy(holder) => Some((
            Reason::SecretProviderClassConflict,
            format!(
                "SecretProviderClass {name} is wired by WorkloadIdentityBinding {} ({}); a class carries one \
                 client id: name another class, or take it out of one of the bindings",
                holder.binding,
                holder.precedence()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resource_id::ResourceId;

    fn ids(client_id: &str) -> IdentityIds {
        IdentityIds {
            resource_id: ResourceId::parse(
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/\
                 Microsoft.ManagedIdentity/userAssignedIdentities/id",
            )
            .unwrap_or_else(|e| panic!("{e}")),
            client_id: client_id.into(),
            principal_id: "p".into(),
            tenant_id: "t".into(),
        }
    }

    fn class(provider: &str, client_id: Option<&str>, tenant_id: Option<&str>, ours: bool) -> ObservedClass {
        ObservedClass {
            provider: (!provider.is_empty()).then(|| provider.to_string()),
            client_id: client_id.map(str::to_string),
            tenant_id: tenant_id.map(str::to_string),
            written_by_idbind: ours,
            others: if ours { Vec::new() } else { vec!["kubectl-edit".into()] },
        }
    }

    #[test]
    fn only_azure_classes_are_written_and_only_when_something_differs() {
        let unsupported = |p: &str| ClassPlan::Unsupported { provider: p.into() };
        let by_hand = || ClassPlan::Azure(Need::Values { by: vec!["kubectl-edit".into()] });
        let table = [
            ("a fresh azure class", class("azure", None, None, false), by_hand()),
            ("idbind's, right", class("azure", Some("c1"), Some("t"), true), ClassPlan::Azure(Need::Nothing)),
            (
                "idbind's, stale",
                class("azure", Some("c0"), Some("t"), true),
                ClassPlan::Azure(Need::Values { by: vec![] }),
            ),
            ("edited by hand", class("azure", Some("x"), Some("t"), false), by_hand()),
            ("tenant edited by hand", class("azure", Some("c1"), Some("x"), false), by_hand()),
            (
                "right, but set by someone else",
                class("azure", Some("c1"), Some("t"), false),
                ClassPlan::Azure(Need::Ownership),
            ),
            ("the vault provider", class("vault", None, None, false), unsupported("vault")),
            ("provider in another case", class("Azure", None, None, false), unsupported("Azure")),
            ("no provider", class("", None, None, false), unsupported("")),
        ];
        for (case, observed, want) in table {
            assert_eq!(class_plan(&observed, &ids("c1")), want, "{case}");
        }
    }

    #[test]
    fn only_what_idbind_wrote_is_taken_back_and_only_when_no_binding_names_the_class() {
        let ours = class("azure", Some("c1"), Some("t"), true);
        let theirs = class("azure", Some("c1"), Some("t"), false);
        assert!(withdraws(Some(&ours), false));
        assert!(!withdraws(Some(&ours), true), "another binding keeps it wired");
        assert!(!withdraws(Some(&theirs), false), "nothing of idbind's there");
        assert!(!withdraws(None, false), "gone");
    }

    fn config_map(uid: &str, owner: Option<&str>, data: &BTreeMap<String, String>) -> ObservedConfigMap {
        ObservedConfigMap {
            uid: uid.into(),
            controlling_binding: owner.map(str::to_string),
            data: data.clone(),
            data_writers: data.keys().map(|k| (k.clone(), vec!["kubectl-patch".to_string()])).collect(),
            labelled: true,
            more_than_data: false,
        }
    }

    fn recorded(uid: &str) -> WrittenStatus {
        WrittenStatus {
            kind: crate::api::binding::WrittenKind::ConfigMap,
            name: "ids".into(),
            uid: uid.into(),
            client_id: "c1".into(),
            generation: 1,
            undone: None,
            contested: None,
        }
    }

    /// (case, the ConfigMap, idbind's record, what to do)
    type ExportRow = (&'static str, Option<ObservedConfigMap>, Option<WrittenStatus>, ExportPlan);

    /// Checks each row for the binding `uid-1`, which exports `data`: deleted exactly when written.
    fn check_export(table: Vec<ExportRow>, data: &BTreeMap<String, String>) {
        for (case, observed, record, want) in table {
            assert_eq!(export_plan(observed.as_ref(), record.as_ref(), "uid-1", data), want, "{case}");
            let deletable = matches!(want, ExportPlan::Ours { .. });
            assert_eq!(
                deletes_export(observed.as_ref(), record.as_ref(), "uid-1", data),
                deletable,
                "{case}"
            );
        }
    }

    fn owned(uid: &str, data: &BTreeMap<String, String>) -> Option<ObservedConfigMap> {
        Some(config_map(uid, Some("uid-1"), data))
    }

    #[test]
    fn a_config_map_is_written_or_deleted_only_when_idbind_recorded_creating_it_for_this_binding() {
        use Foreign::{NotControlled, Unlabelled};
        let data = export_data(&ids("c1"));
        let mut extra = data.clone();
        extra.insert("team".into(), "shop".into());
        let unlabelled =
            Some(ObservedConfigMap { labelled: false, ..config_map("cm-1", Some("uid-1"), &data) });
        let edited =
            ExportPlan::Ours { need: Need::Values { by: vec!["kubectl-patch".into()] }, adopted: false };
        let right = || ExportPlan::Ours { need: Need::Nothing, adopted: false };
        let r1 = || Some(recorded("cm-1"));
        let foreign = ExportPlan::Foreign;
        check_export(
            vec![
                ("absent", None, None, ExportPlan::Create),
                ("recorded, right", owned("cm-1", &data), r1(), right()),
                ("recorded, with a key someone added", owned("cm-1", &extra), r1(), right()),
                ("recorded, edited", owned("cm-1", &export_data(&ids("c0"))), r1(), edited),
                ("recorded, label removed", unlabelled, r1(), foreign(Unlabelled)),
                (
                    "recorded, owner reference gone",
                    Some(config_map("cm-1", None, &data)),
                    r1(),
                    foreign(NotControlled),
                ),
                ("someone else's", Some(config_map("cm-1", None, &data)), None, foreign(NotControlled)),
                (
                    "an earlier binding's",
                    Some(config_map("cm-1", Some("uid-0"), &data)),
                    r1(),
                    foreign(NotControlled),
                ),
            ],
            &data,
        );
    }

    #[test]
    fn an_owner_reference_alone_proves_nothing_unless_the_config_map_is_exactly_idbinds() {
        use Foreign::NotRecorded;
        let data = export_data(&ids("c1"));
        let mut extra = data.clone();
        extra.insert("team".into(), "shop".into());
        // What a tenant makes of kube-root-ca.crt: the binding's owner reference on someone else's data.
        let root_ca: BTreeMap<String, String> = [("ca.crt".to_string(), "PEM".to_string())].into();
        let unlabelled =
            Some(ObservedConfigMap { labelled: false, ..config_map("cm-1", Some("uid-1"), &data) });
        let binary =
            Some(ObservedConfigMap { more_than_data: true, ..config_map("cm-1", Some("uid-1"), &data) });
        let adopted = || ExportPlan::Ours { need: Need::Nothing, adopted: true };
        // A forged record (a status writer's): the record is the proof, so it is trusted like status is.
        let forged = ExportPlan::Ours { need: Need::Values { by: vec![] }, adopted: false };
        let foreign = || ExportPlan::Foreign(NotRecorded);
        check_export(
            vec![
                ("kube-root-ca.crt, owner reference added", owned("cm-9", &root_ca), None, foreign()),
                ("the same, a record of another", owned("cm-9", &root_ca), Some(recorded("cm-1")), foreign()),
                ("the same, a forged record", owned("cm-9", &root_ca), Some(recorded("cm-9")), forged),
                ("idbind's ids and more", owned("cm-1", &extra), None, foreign()),
                ("idbind's ids, binary data too", binary, None, foreign()),
                ("idbind's ids, unlabelled", unlabelled, None, foreign()),
                ("exactly what idbind's create makes", owned("cm-1", &data), None, adopted()),
                (
                    "the same, made anew since the record",
                    owned("cm-2", &data),
                    Some(recorded("cm-1")),
                    adopted(),
                ),
            ],
            &data,
        );
    }

    #[test]
    fn the_export_carries_every_id_under_both_names() {
        let data = export_data(&ids("c1"));
        assert_eq!(data["clientId"], "c1");
        assert_eq!(data["AZURE_CLIENT_ID"], "c1");
        assert_eq!((data["tenantId"].as_str(), data["AZURE_TENANT_ID"].as_str()), ("t", "t"));
        assert_eq!(data["principalId"], "p");
        assert!(data["resourceId"].ends_with("/userAssignedIdentities/id"), "{}", data["resourceId"]);
    }

    fn wiring(states: &[(&str, ClassState)]) -> Wiring {
        let classes = states
            .iter()
            .map(|(name, state)| Class { name: name.to_string(), state: state.clone() })
            .collect();
        Wiring { classes, export: None, written: Vec::new() }
    }

    #[test]
    fn the_most_pressing_class_problem_leads_and_every_class_is_named() {
        let held = ClassState::HeldBy(Holder { binding: "first".into(), tie_by_name: false });
        // (case, wiring, the leading reason and whether it stalls)
        type Row = (&'static str, Wiring, Option<(Reason, bool)>);
        let table: Vec<Row> = vec![
            ("no class", wiring(&[]), None),
            ("all wired", wiring(&[("a", ClassState::Wired), ("b", ClassState::Wired)]), None),
            (
                "missing: waited for",
                wiring(&[("a", ClassState::Wired), ("b", ClassState::NotFound)]),
                Some((Reason::SecretProviderClassNotFound, false)),
            ),
            (
                "another provider outranks a missing class",
                wiring(&[
                    ("a", ClassState::NotFound),
                    ("b", ClassState::UnsupportedProvider("vault".into())),
                ]),
                Some((Reason::UnsupportedProvider, true)),
            ),
            (
                "held by another binding",
                wiring(&[("a", held.clone())]),
                Some((Reason::SecretProviderClassConflict, true)),
            ),
            (
                "no CRD",
                wiring(&[("a", ClassState::Unavailable), ("b", ClassState::Unavailable)]),
                Some((Reason::SecretProviderClassesUnavailable, true)),
            ),
        ];
        for (case, w, want) in table {
            let got = w.problem().map(|p| (p.reason, p.stalled));
            assert_eq!(got, want, "{case}");
        }
        let both =
            wiring(&[("a", ClassState::NotFound), ("b", ClassState::UnsupportedProvider("vault".into()))]);
        let message = both.problem().map(|p| p.message).unwrap_or_default();
        assert!(message.contains("SecretProviderClass a does not exist"), "{message}");
        assert!(message.contains("SecretProviderClass b has provider \"vault\""), "{message}");
    }

    #[test]
    fn conditions_are_present_only_for_what_the_spec_asks() {
        let none = Wiring::default();
        assert_eq!((none.classes_condition("c1"), none.export_condition()), (None, None));
        let wired = wiring(&[("a", ClassState::Wired)]);
        let want = wired.classes_condition("c1");
        let want = want.as_ref();
        assert_eq!(
            want.map(|w| (w.type_, w.status, w.reason)),
            Some((conditions::SECRET_PROVIDER_CLASSES_READY, true, Reason::Wired))
        );
        let message = want.map(|w| w.message.as_str()).unwrap_or_default();
        assert!(message.contains("c1"), "{message}");
        let conflict = Wiring {
            classes: Vec::new(),
            export: Some(Export {
                config_map: "ids".into(),
                state: ExportState::Foreign(Foreign::NotRecorded),
            }),
            written: Vec::new(),
        };
        assert_eq!(
            conflict.export_condition().map(|w| (w.type_, w.status, w.reason)),
            Some((conditions::EXPORT_READY, false, Reason::ExportConflict))
        );
        assert_eq!(conflict.problem().map(|p| (p.reason, p.stalled)), Some((Reason::ExportConflict, true)));
    }

    #[test]
    fn every_refused_export_and_contested_class_stalls_naming_the_field_and_the_way_out() {
        let export = |state| Wiring {
            classes: Vec::new(),
            export: Some(Export { config_map: "ids".into(), state }),
            written: Vec::new(),
        };
        let contested = ExportState::Contested { undone: "kubectl-patch".into(), by: "argocd".into() };
        for (state, says) in [
            (ExportState::Foreign(Foreign::NotControlled), "its controller is not this binding"),
            (ExportState::Foreign(Foreign::NotRecorded), "no record of creating it"),
            (ExportState::Foreign(Foreign::Unlabelled), "app.kubernetes.io/managed-by=idbind"),
            (contested, "by argocd"),
        ] {
            let problem = export(state).problem().unwrap_or_else(|| panic!("{says}: no problem"));
            assert_eq!((problem.reason, problem.stalled), (Reason::ExportConflict, true), "{says}");
            assert!(
                problem.message.starts_with("spec.export.configMapName: ConfigMap ids"),
                "{}",
                problem.message
            );
            assert!(problem.message.contains(says), "{}", problem.message);
        }
        let fought =
            wiring(&[("kv", ClassState::Contested { undone: "kubectl-patch".into(), by: "argocd".into() })]);
        let problem = fought.problem().unwrap_or_else(|| panic!("no problem"));
        assert_eq!((problem.reason, problem.stalled), (Reason::SecretProviderClassConflict, true));
        assert!(problem.message.contains("SecretProviderClass kv") && problem.message.contains("by argocd"));
        let ours = Export { config_map: "ids".into(), state: ExportState::Exported };
        assert!(ours.ours());
        assert!(
            Export {
                config_map: "ids".into(),
                state: ExportState::Contested { undone: String::new(), by: String::new() }
            }
            .ours()
        );
        assert!(
            !Export { config_map: "ids".into(), state: ExportState::Foreign(Foreign::NotControlled) }.ours()
        );
    }
}
