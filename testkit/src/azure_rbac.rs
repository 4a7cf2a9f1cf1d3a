//! Azure RBAC as an administrator sets it up for idbind, in the simulator: the roles README "Install on AKS"
//! step 3 tells administrators to give the operator's identity (and nothing more), an administrator of each
//! subscription for the tests' own setup, and a tenant's workload signing in to ARM with its federated token
//! to show what it may not do.
//!
//! The simulator authorizes every ARM request from role assignments alone, so what the operator can do in a
//! test is exactly what these assignments allow.

use std::sync::Arc;

use idbind::azure::{
    arm::{ArmApi, Cloud, http_client},
    workload_identity::FileFederatedCredential,
};
use idbind_sim::{
    Seed, SeedApp, SeedRoleDefinition, SimHandle, State, state::RoleAssignment, state::RolePermission,
};

use crate::e2e::{Env, TestError};
use crate::workload::exchange_token;

/// The delegation condition README has administrators write, as the simulator builds it.
pub use idbind_sim::arm::conditions::delegation_condition;

/// The custom role README step 3 has administrators create: what idbind reads at a subscription (its role
/// assignment list, role definitions by name, a provider's api-versions).
pub const IDBIND_READER: &str = "idbind Reader";
/// Its GUID in the tests (Azure makes one up when the role is created).
const IDBIND_READER_GUID: &str = "1db1d5ea-0000-4000-8000-00000000e2e2";
pub const IDBIND_READER_ACTIONS: &[&str] = &[
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/roleDefinitions/read",
    "Microsoft.Resources/subscriptions/providers/read",
];

pub const MANAGED_IDENTITY_CONTRIBUTOR: &str = "Managed Identity Contributor";
pub const RBAC_ADMINISTRATOR: &str = "Role Based Access Control Administrator";
pub const KEY_VAULT_CONTRIBUTOR: &str = "Key Vault Contributor";

/// The roles the operator may hand out in these tests (the delegation condition's list): the default reader
/// roles of README's table and the receivers and Key Vault Crypto User, which policies may name. A test that
/// lets bindings have more adds an assignment with [`delegation_condition`] of its own.
pub const DELEGABLE_ROLES: &[&str] = &[
    "Key Vault Secrets User",
    "Key Vault Certificate User",
    "Key Vault Reader",
    "Key Vault Crypto User",
    "Storage Blob Data Reader",
    "Storage Queue Data Reader",
    "AcrPull",
    "App Configuration Data Reader",
    "Azure Service Bus Data Receiver",
    "Azure Event Hubs Data Receiver",
];

/// An administrator of every seeded subscription (Owner), for a test's own setup: what a human would do in
/// the portal before or beside idbind (bringing an identity, changing the operator's roles).
pub const ADMIN_APP_ID: &str = "11111111-1111-4111-8111-0000000ad111";
pub const ADMIN_SECRET: &str = "administrator-secret";
const ADMIN_OBJECT_ID: &str = "22222222-2222-4222-8222-0000000ad111";

/// The GUID of a built-in role by its name.
pub fn role_guid(name: &str) -> Result<String, TestError> {
    idbind_sim::arm::roles::builtin_role_definitions()
        .into_iter()
        .find(|d| d.role_name.eq_ignore_ascii_case(name))
        .map(|d| d.name)
        .ok_or_else(|| format!("no built-in role '{name}'").into())
}

/// [`delegation_condition`] of [`DELEGABLE_ROLES`].
fn default_delegation_condition() -> Result<String, TestError> {
    let guids = DELEGABLE_ROLES.iter().map(|r| role_guid(r)).collect::<Result<Vec<_>, _>>()?;
    Ok(delegation_condition(&guids))
}

/// The scopes of a seed the operator's roles go on, as an administrator following README would choose them.
#[derive(Debug, Default, Clone, PartialEq)]
struct OperatorScopes {
    subscriptions: Vec<String>,
    /// Resource groups holding vaults or other resources bindings may get roles on.
    data_groups: Vec<String>,
    /// Vaults that use access policies.
    access_policy_vaults: Vec<String>,
}

impl OperatorScopes {
    fn of(seed: &Seed) -> Self {
        let mut out = Self::default();
        for s in &seed.subscriptions {
            out.subscriptions.push(format!("/subscriptions/{}", s.id));
            for g in &s.resource_groups {
                let group = format!("/subscriptions/{}/resourceGroups/{}", s.id, g.name);
                if !g.vaults.is_empty() || !g.resources.is_empty() {
                    out.data_groups.push(group.clone());
                }
                for v in g.vaults.iter().filter(|v| v.enable_rbac_authorization == Some(false)) {
                    out.access_policy_vaults
                        .push(format!("{group}/providers/Microsoft.KeyVault/vaults/{}", v.name));
                }
            }
        }
        out
    }

    /// The same, of what a running simulator holds.
    fn of_state(state: &State) -> Self {
        let mut out = Self::default();
        for s in state.subscriptions.values() {
            out.subscriptions.push(format!("/subscriptions/{}", s.id));
            for g in s.resource_groups.values() {
                let group = format!("/subscriptions/{}/resourceGroups/{}", s.id, g.name);
                if !g.vaults.is_empty() || !g.resources.is_empty() {
                    out.data_groups.push(group.clone());
                }
                for v in g.vaults.values().filter(|v| !v.enable_rbac_authorization) {
                    out.access_policy_vaults
                        .push(format!("{group}/providers/Microsoft.KeyVault/vaults/{}", v.name));
                }
            }
        }
        out
    }
}

/// The role assignments README step 3 tells administrators to give idbind's identity `principal` (and the
/// custom role's definition), at `scopes`: Managed Identity Contributor on each group of `identity_groups`
/// (resource group ids), the custom [`IDBIND_READER`] on each subscription, Role Based Access Control
/// Administrator with the delegation condition on each group holding vaults or other resources, and Key Vault
/// Contributor on each access-policy vault.
fn operator_roles(
    scopes: &OperatorScopes,
    principal: &str,
    identity_groups: &[String],
) -> Result<Seed, TestError> {
    let mut seed = Seed::default();
    seed.role_definitions.push(idbind_reader(&scopes.subscriptions));
    for group in identity_groups {
        seed.assign(principal, MANAGED_IDENTITY_CONTRIBUTOR, group);
    }
    for subscription in &scopes.subscriptions {
        seed.assign(principal, IDBIND_READER, subscription);
    }
    let condition = default_delegation_condition()?;
    for group in &scopes.data_groups {
        let assignment = seed.assign(principal, RBAC_ADMINISTRATOR, group);
        assignment.condition = Some(condition.clone());
        assignment.condition_version = Some("2.0".into());
    }
    for vault in &scopes.access_policy_vaults {
        seed.assign(principal, KEY_VAULT_CONTRIBUTOR, vault);
    }
    Ok(seed)
}

/// Adds [`operator_roles`] for what `seed` holds to `seed`. Applying it twice adds nothing.
pub fn grant_operator_roles(
    seed: &mut Seed,
    principal: &str,
    identity_groups: &[String],
) -> Result<(), TestError> {
    let mut roles = operator_roles(&OperatorScopes::of(seed), principal, identity_groups)?;
    roles.role_definitions.retain(|d| !seed.role_definitions.iter().any(|have| have.name == d.name));
    seed.extend(roles);
    Ok(())
}

/// [`operator_roles`] for what the running simulator holds, given now (as an administrator does after
/// creating idbind's identity, README steps 2 and 3).
pub async fn grant_operator_roles_now(
    sim: &SimHandle,
    principal: &str,
    identity_groups: &[String],
) -> Result<(), TestError> {
    let roles = operator_roles(&OperatorScopes::of_state(&sim.state_typed()), principal, identity_groups)?;
    Ok(sim.seed(roles).await?)
}

/// The custom role's definition, assignable at `subscriptions`.
fn idbind_reader(subscriptions: &[String]) -> SeedRoleDefinition {
    SeedRoleDefinition {
        name: IDBIND_READER_GUID.into(),
        role_name: IDBIND_READER.into(),
        description:
            "What idbind reads at a subscription: role assignments, role definitions, resource providers."
                .into(),
        role_type: None,
        permissions: vec![RolePermission {
            actions: IDBIND_READER_ACTIONS.iter().map(|a| (*a).to_string()).collect(),
            ..Default::default()
        }],
        assignable_scopes: subscriptions.to_vec(),
        subscription_id: None,
    }
}

/// Seeds the administrator app with Owner on every subscription of the seed.
pub fn seed_administrator(seed: &mut Seed) {
    if !seed.apps.iter().any(|a| a.client_id == ADMIN_APP_ID) {
        seed.apps.push(SeedApp {
            client_id: ADMIN_APP_ID.into(),
            client_secret: ADMIN_SECRET.into(),
            object_id: Some(ADMIN_OBJECT_ID.into()),
            display_name: Some("administrator".into()),
        });
    }
    let subscriptions = OperatorScopes::of(seed).subscriptions;
    for subscription in subscriptions {
        seed.assign(ADMIN_OBJECT_ID, "Owner", &subscription);
    }
}

/// The role assignments the harness seeded for the operator and the administrator.
fn is_harness_assignment(ra: &RoleAssignment, operator_principal: &str) -> bool {
    ra.principal_id.eq_ignore_ascii_case(operator_principal)
        || ra.principal_id.eq_ignore_ascii_case(ADMIN_OBJECT_ID)
}

/// The role assignments in `state` that are not the harness's own (what idbind and the tests made).
pub fn workload_assignments<'s>(state: &'s State, operator_principal: &str) -> Vec<&'s RoleAssignment> {
    state.role_assignments.values().filter(|ra| !is_harness_assignment(ra, operator_principal)).collect()
}

/// The administrator deletes, through ARM, every role assignment of `principal` with role `role` (a name) at
/// `scope` (any case; `None`: wherever it is); returns a seed that gives them back as they were
/// (`SimHandle::seed`). Fails when there is none: a test that takes a role away must take one.
pub async fn revoke(env: &Env, principal: &str, role: &str, scope: Option<&str>) -> Result<Seed, TestError> {
    use idbind::azure::AzureApi;
    let state = env.sim.state_typed();
    let definition = state
        .role_definitions
        .values()
        .find(|d| d.role_name.eq_ignore_ascii_case(role))
        .ok_or_else(|| format!("no role definition named '{role}'"))?;
    let matching: Vec<&RoleAssignment> = state
        .role_assignments
        .values()
        .filter(|ra| {
            ra.principal_id.eq_ignore_ascii_case(principal)
                && ra.role_definition_guid.eq_ignore_ascii_case(&definition.name)
                && scope.is_none_or(|s| {
                    ra.scope.trim_end_matches('/').eq_ignore_ascii_case(s.trim_end_matches('/'))
                })
        })
        .collect();
    if matching.is_empty() {
        return Err(format!("{principal} holds no '{role}' at {}", scope.unwrap_or("any scope")).into());
    }
    let admin = admin_arm(env)?;
    let mut restore = Seed::default();
    if definition.role_type != "BuiltInRole" {
        restore.role_definitions.push(SeedRoleDefinition {
            name: definition.name.clone(),
            role_name: definition.role_name.clone(),
            description: definition.description.clone(),
            role_type: Some(definition.role_type.clone()),
            permissions: definition.permissions.clone(),
            assignable_scopes: definition.assignable_scopes.clone(),
            subscription_id: definition.subscription_id.clone(),
        });
    }
    for ra in matching {
        let id = format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", ra.scope, ra.name);
        admin.delete_role_assignment(&id.parse()?).await?;
        let back = restore.assign(principal, &definition.name, &ra.scope);
        back.name = Some(ra.name.clone());
        back.condition.clone_from(&ra.condition);
        back.condition_version.clone_from(&ra.condition_version);
        back.principal_type = Some(ra.principal_type.clone());
    }
    Ok(restore)
}

/// An ARM client signed in as the administrator.
pub fn admin_arm(env: &Env) -> Result<ArmApi, TestError> {
    crate::arm_api(&env.sim, ADMIN_APP_ID, ADMIN_SECRET)
}

/// A tenant's workload signed in to ARM as its pod would sign in: the identity's client id (from the
/// ServiceAccount's annotation) and a TokenRequest token of the ServiceAccount for the exchange audience,
/// exchanged at Entra for an ARM token (`FileFederatedCredential`, as idbind's own workload-identity
/// credential). What it may do in ARM is then exactly what the identity's role assignments allow.
pub struct WorkloadArm {
    /// idbind's ARM client, signed in as the workload.
    pub api: ArmApi,
    credential: Arc<FileFederatedCredential>,
    base: String,
    http: reqwest::Client,
}

/// What ARM answered a raw request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl WorkloadArm {
    /// Signs in as a pod of ServiceAccount `ns/sa` (bound by idbind: it carries the client-id annotation).
    pub fn sign_in(env: &Env, ns: &str, sa: &str) -> Result<Self, TestError> {
        let client_id = env.plane.kubectl_ok(&[
            "get",
            "sa",
            sa,
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
        ])?;
        if client_id.trim().is_empty() {
            return Err(format!("ServiceAccount {ns}/{sa} has no client-id annotation").into());
        }
        let dir = env.plane.dir().join("workloads").join(ns);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{sa}.arm-token"));
        std::fs::write(&file, exchange_token(env, ns, sa)?)?;
        let base = env.sim.https_url().ok_or("simulator has no HTTPS listener")?.to_string();
        let cloud = Cloud::Custom {
            arm_endpoint: base.clone(),
            authority_host: env.sim.authority_host().ok_or("simulator has no authority host")?,
            audience: "https://management.azure.com".into(),
        };
        let ca = env.sim.ca_pem().ok_or("simulator has no CA")?;
        let http = http_client(Some(ca.as_bytes()))?;
        let credential = Arc::new(FileFederatedCredential::new(
            &cloud,
            http.clone(),
            env.sim.tenant_id(),
            client_id.trim(),
            &file,
        )?);
        let api = ArmApi::new(&cloud, http, credential.clone())?;
        let raw = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
            .build()?;
        Ok(Self { api, credential, base, http: raw })
    }

    /// One request to ARM (`path` with its `api-version`) with the workload's own token.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> Result<Answer, TestError> {
        use azure_core::auth::TokenCredential;
        let token = self.credential.get_token(&["https://management.azure.com/.default"]).await?;
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.token.secret())
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok(Answer {
            status,
            code: body["error"]["code"].as_str().unwrap_or_default().to_string(),
            message: body["error"]["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}
