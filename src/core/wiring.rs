//! What idbind writes on the objects that carry the bound identity's ids besides the ServiceAccount, and what
//! it may take back: the `SecretProviderClass`es a binding names (the Key Vault CSI driver's; idbind keeps
//! `spec.parameters.clientID` and `tenantId`) and the ConfigMap it exports the ids to. Pure: the adapter
//! (`k8s::secret_provider_class`, `k8s::export`) observes the objects, these functions decide, and
//! [`super::report`] turns the results into the `SecretProviderClassesReady` and `ExportReady` conditions.
//!
//! The rules: a class is written only when its provider is `azure`, only those two parameters, only under
//! idbind's own field manager, and only by the binding that holds it (the oldest naming it, as with
//! ServiceAccounts); idbind takes back only what its field manager owns and only when no binding names the
//! class any more. An exported ConfigMap is written only when it does not exist or is controlled by this
//! binding (its UID in the controller owner reference), and deleted only then.

use std::collections::BTreeMap;

use crate::core::{claim::Holder, plan::IdentityIds};

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

/// Condition reasons of the SecretProviderClass wiring and of the export.
pub const WIRED: &str = "Wired";
pub const CLASS_NOT_FOUND: &str = "SecretProviderClassNotFound";
pub const UNSUPPORTED_PROVIDER: &str = "UnsupportedProvider";
pub const CLASSES_UNAVAILABLE: &str = "SecretProviderClassesUnavailable";
pub const CLASS_CONFLICT: &str = "SecretProviderClassConflict";
pub const EXPORTED: &str = "Exported";
pub const EXPORT_CONFLICT: &str = "ExportConflict";

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
}

/// What to do with a class the binding holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassPlan {
    /// Apply the two parameters (they differ, or idbind does not own them yet).
    Write,
    /// They are idbind's and already right: nothing to write.
    InPlace,
    /// Another provider's class: left untouched, reported.
    Unsupported { provider: String },
}

/// What to do with `class`, given the identity's `ids`. A class whose parameters are right but set by someone
/// else is still applied: idbind then co-owns them, so a later edit is repaired and withdrawing takes back
/// only what no one else set.
pub fn class_plan(class: &ObservedClass, ids: &IdentityIds) -> ClassPlan {
    let provider = class.provider.as_deref().unwrap_or_default();
    if provider != AZURE_PROVIDER {
        return ClassPlan::Unsupported { provider: provider.to_string() };
    }
    let right = class.client_id.as_deref() == Some(ids.client_id.as_str())
        && class.tenant_id.as_deref() == Some(ids.tenant_id.as_str());
    if right && class.written_by_idbind { ClassPlan::InPlace } else { ClassPlan::Write }
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
    /// The UID in its controller owner reference, when that reference names a WorkloadIdentityBinding.
    pub controlling_binding: Option<String>,
    pub data: BTreeMap<String, String>,
    /// Whether it carries [`EXPORT_LABEL`] (the watch sees it).
    pub labelled: bool,
}

/// What to do about the binding's export ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportPlan {
    /// It does not exist: create it.
    Create,
    /// It is this binding's and differs: apply.
    Update,
    /// It is this binding's and right.
    InPlace,
    /// It exists and is not this binding's: never written.
    Conflict,
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

/// What to do about the export ConfigMap (`None`: it does not exist) of the binding with `binding_uid`.
pub fn export_plan(
    observed: Option<&ObservedConfigMap>,
    binding_uid: &str,
    data: &BTreeMap<String, String>,
) -> ExportPlan {
    match observed {
        None => ExportPlan::Create,
        Some(cm) if cm.controlling_binding.as_deref() != Some(binding_uid) => ExportPlan::Conflict,
        Some(cm) if cm.labelled && data.iter().all(|(k, v)| cm.data.get(k) == Some(v)) => ExportPlan::InPlace,
        Some(_) => ExportPlan::Update,
    }
}

/// Whether idbind may delete a ConfigMap it no longer exports to: only one this binding controls.
pub fn deletes_export(observed: Option<&ObservedConfigMap>, binding_uid: &str) -> bool {
    observed.is_some_and(|cm| cm.controlling_binding.as_deref() == Some(binding_uid))
}

/// What became of the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub config_map: String,
    /// Written (or already right); `false`: a ConfigMap of that name is not this binding's.
    pub exported: bool,
}

/// What the wiring step did: the classes the spec names (empty: no condition) and the export (`None`: no
/// condition).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Wiring {
    pub classes: Vec<Class>,
    pub export: Option<Export>,
}

/// Why the wiring keeps a binding from being Ready: the part's condition reason, a message naming every class
/// (or the ConfigMap) concerned, and whether retrying alone will not help (Stalled; a missing class is waited
/// for instead, as a missing ServiceAccount is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwired {
    pub reason: &'static str,
    pub message: String,
    pub stalled: bool,
}

impl Wiring {
    /// The SecretProviderClassesReady condition: `None` when the spec names no class, else whether every
    /// class is wired, its reason and message.
    pub fn classes_condition(&self, client_id: &str) -> Option<(bool, &'static str, String)> {
        if self.classes.is_empty() {
            return None;
        }
        Some(match self.classes_problem() {
            Some(Unwired { reason, message, .. }) => (false, reason, message),
            None => {
                let names: Vec<&str> = self.classes.iter().map(|c| c.name.as_str()).collect();
                let message = format!(
                    "SecretProviderClass(es) {} carry client id {client_id} and its tenant id",
                    names.join(", ")
                );
                (true, WIRED, message)
            }
        })
    }

    /// The ExportReady condition: `None` without an export.
    pub fn export_condition(&self) -> Option<(bool, &'static str, String)> {
        let export = self.export.as_ref()?;
        Some(match self.export_problem() {
            Some(Unwired { reason, message, .. }) => (false, reason, message),
            None => (true, EXPORTED, format!("ConfigMap {} carries the identity's ids", export.config_map)),
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
        let order = [CLASSES_UNAVAILABLE, UNSUPPORTED_PROVIDER, CLASS_CONFLICT, CLASS_NOT_FOUND];
        let problems: Vec<(&'static str, String)> = self.classes.iter().filter_map(class_problem).collect();
        let reason = order.into_iter().find(|r| problems.iter().any(|(p, _)| p == r))?;
        if reason == CLASSES_UNAVAILABLE {
            let message = "spec.secretProviderClasses: the cluster does not serve SecretProviderClasses \
                (secrets-store.csi.x-k8s.io): install the Secrets Store CSI driver and its Azure provider; \
                idbind looks again periodically"
                .to_string();
            return Some(Unwired { reason, message, stalled: true });
        }
        let message = problems.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ");
        Some(Unwired { reason, message, stalled: reason != CLASS_NOT_FOUND })
    }

    /// What keeps the export from being written, if anything.
    pub fn export_problem(&self) -> Option<Unwired> {
        let export = self.export.as_ref().filter(|e| !e.exported)?;
        let message = format!(
            "spec.export.configMapName: ConfigMap {} exists and was not created by idbind for this binding; \
             idbind never overwrites it: delete it, or export to another name",
            export.config_map
        );
        Some(Unwired { reason: EXPORT_CONFLICT, message, stalled: true })
    }
}

/// A class's reason and message, when it is not wired.
fn class_problem(class: &Class) -> Option<(&'static str, String)> {
    let name = &class.name;
    match &class.state {
        ClassState::Wired => None,
        ClassState::Unavailable => Some((CLASSES_UNAVAILABLE, String::new())),
        ClassState::NotFound => Some((
            CLASS_NOT_FOUND,
            format!("SecretProviderClass {name} does not exist; idbind wires it when it is created"),
        )),
        ClassState::UnsupportedProvider(provider) => Some((
            UNSUPPORTED_PROVIDER,
            format!(
                "SecretProviderClass {name} has provider {provider:?}: idbind writes clientID and tenantId only \
                 on classes of the azure provider, and left it untouched"
            ),
        )),
        ClassState::HeldBy(holder) => Some((
            CLASS_CONFLICT,
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
        }
    }

    #[test]
    fn only_azure_classes_are_written_and_only_when_something_differs() {
        let unsupported = |p: &str| ClassPlan::Unsupported { provider: p.into() };
        let table = [
            ("a fresh azure class", class("azure", None, None, false), ClassPlan::Write),
            ("idbind's, right", class("azure", Some("c1"), Some("t"), true), ClassPlan::InPlace),
            ("idbind's, edited by hand", class("azure", Some("x"), Some("t"), true), ClassPlan::Write),
            ("idbind's, tenant edited", class("azure", Some("c1"), Some("x"), true), ClassPlan::Write),
            (
                "right, but set by someone else",
                class("azure", Some("c1"), Some("t"), false),
                ClassPlan::Write,
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

    #[test]
    fn a_config_map_is_written_only_when_absent_or_this_bindings() {
        let data = export_data(&ids("c1"));
        let cm = |owner: Option<&str>, data: &BTreeMap<String, String>, labelled| ObservedConfigMap {
            controlling_binding: owner.map(str::to_string),
            data: data.clone(),
            labelled,
        };
        let stale = export_data(&ids("c0"));
        let mut extra = data.clone();
        extra.insert("team".into(), "shop".into());
        let table = [
            ("absent", None, ExportPlan::Create),
            ("ours, right", Some(cm(Some("uid-1"), &data, true)), ExportPlan::InPlace),
            ("ours, with a key someone added", Some(cm(Some("uid-1"), &extra, true)), ExportPlan::InPlace),
            ("ours, stale ids", Some(cm(Some("uid-1"), &stale, true)), ExportPlan::Update),
            ("ours, label removed", Some(cm(Some("uid-1"), &data, false)), ExportPlan::Update),
            ("someone else's", Some(cm(None, &data, true)), ExportPlan::Conflict),
            (
                "an earlier binding's of the same name",
                Some(cm(Some("uid-0"), &data, true)),
                ExportPlan::Conflict,
            ),
        ];
        for (case, observed, want) in table {
            assert_eq!(export_plan(observed.as_ref(), "uid-1", &data), want, "{case}");
            let deletable = matches!(want, ExportPlan::InPlace | ExportPlan::Update);
            assert_eq!(deletes_export(observed.as_ref(), "uid-1"), deletable, "{case}");
        }
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
        Wiring { classes, export: None }
    }

    #[test]
    fn the_most_pressing_class_problem_leads_and_every_class_is_named() {
        let held = ClassState::HeldBy(Holder { binding: "first".into(), tie_by_name: false });
        // (case, wiring, the leading reason and whether it stalls)
        type Row = (&'static str, Wiring, Option<(&'static str, bool)>);
        let table: Vec<Row> = vec![
            ("no class", wiring(&[]), None),
            ("all wired", wiring(&[("a", ClassState::Wired), ("b", ClassState::Wired)]), None),
            (
                "missing: waited for",
                wiring(&[("a", ClassState::Wired), ("b", ClassState::NotFound)]),
                Some((CLASS_NOT_FOUND, false)),
            ),
            (
                "another provider outranks a missing class",
                wiring(&[
                    ("a", ClassState::NotFound),
                    ("b", ClassState::UnsupportedProvider("vault".into())),
                ]),
                Some((UNSUPPORTED_PROVIDER, true)),
            ),
            ("held by another binding", wiring(&[("a", held.clone())]), Some((CLASS_CONFLICT, true))),
            (
                "no CRD",
                wiring(&[("a", ClassState::Unavailable), ("b", ClassState::Unavailable)]),
                Some((CLASSES_UNAVAILABLE, true)),
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
        let (ok, reason, message) = wired.classes_condition("c1").unwrap_or((false, "", String::new()));
        assert_eq!((ok, reason), (true, WIRED));
        assert!(message.contains("c1"), "{message}");
        let conflict = Wiring {
            classes: Vec::new(),
            export: Some(Export { config_map: "ids".into(), exported: false }),
        };
        assert_eq!(conflict.export_condition().map(|(ok, r, _)| (ok, r)), Some((false, EXPORT_CONFLICT)));
        assert_eq!(conflict.problem().map(|p| (p.reason, p.stalled)), Some((EXPORT_CONFLICT, true)));
    }
}
