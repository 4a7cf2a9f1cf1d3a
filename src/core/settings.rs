//! The operator's configuration as the core sees it: the settings that shape a binding's Azure objects, and
//! the ceiling on what any namespace may bind.

/// Settings of the operator that shape a binding's Azure objects.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OperatorSettings {
    pub cluster_name: String,
    pub subscription_id: String,
    pub default_resource_group: Option<String>,
    pub default_location: Option<String>,
    /// The cluster's OIDC issuer, verbatim from configuration (never from a binding).
    pub issuer: String,
    /// What the operator itself is, never bindable: the client id it signs in to Azure as, and its own
    /// ServiceAccount (namespace, name).
    pub operator_client_id: Option<String>,
    pub operator_service_account: Option<(String, String)>,
}

/// The operator's ceiling (its `--allow-*` and `--open-namespaces` flags): the most any namespace may bind,
/// whatever a `WorkloadIdentityPolicy` says. Not to be confused with those policies, which
/// [`crate::core::policy`] judges within it. The default is the safe one: a namespace no policy selects binds
/// nothing, and a selected one at most the data-plane reader roles, in the operator's subscription, with no
/// brought identities.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ceiling {
    pub allow_any_role: bool,
    pub allow_other_subscriptions: bool,
    pub allow_existing_identity: bool,
    /// Namespaces no `WorkloadIdentityPolicy` selects may bind what the rest of the ceiling allows, on any
    /// vault and resource the operator can reach: every namespace editor may then read every team's secrets.
    /// Off (the default), such a namespace binds nothing (see [`crate::core::policy`]). For single-team
    /// clusters only.
    pub open_namespaces: bool,
}

#[cfg(test)]
impl OperatorSettings {
    /// The settings the core's tests judge bindings with: cluster aks1, subscription …0001, defaults rg-ids
    /// and westeurope.
    pub(crate) fn example() -> Self {
        OperatorSettings {
            cluster_name: "aks1".into(),
            subscription_id: "00000000-0000-0000-0000-000000000001".into(),
            default_resource_group: Some("rg-ids".into()),
            default_location: Some("westeurope".into()),
            issuer: "https://oidc.example/issuer/".into(),
            operator_client_id: Some("11111111-0000-0000-0000-00000000c11d".into()),
            operator_service_account: Some(("idbind-system".into(), "idbind".into())),
        }
    }
}
