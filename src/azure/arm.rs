//! [`AzureApi`] over Azure's Rust SDK 0.21 (`azure_mgmt_msi`, `azure_mgmt_authorization`), for any cloud:
//! public, China, US Government, or explicit endpoints (the simulator, Azure Stack), with an optional extra
//! CA.
//!
//! Choices from reading the SDK (docs/azure.md#sdk-pitfalls):
//! - The SDK's retry policy is off: it would sleep inside the request honouring `Retry-After`, blocking a
//!   controller worker and hiding throttling from the controller's budget.
//! - The SDK's own error keeps the answer's headers private, so `Retry-After` would be lost. A pipeline
//!   policy ([`ArmFailurePolicy`]) turns every error answer into an error that carries status, ARM code,
//!   message and retry hint, before the generated code sees it.
//! - Never the `*_by_id` role-definition calls: 0.21's `role_definitions_client().get_by_id()` sends
//!   `%3Fdisambiguation_dummy` as part of the id. Role assignments are deleted by (scope, name), role names
//!   resolved with `$filter=roleName eq '…'`.
//! - Every request goes where idbind judged. The generated clients put the strings they are handed into a
//!   path template (`/{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`) and set it with
//!   `Url::set_path`, which reads `\` as `/`, resolves `.` and `..` segments and percent-encodes what it does
//!   not take literally; they check nothing. So each call is made with an [`Address`], built from the parsed
//!   [`ResourceId`] (whose spelling [`ResourceId::parse`] holds to what a URL carries unchanged), and a
//!   pipeline policy ([`AddressPolicy`]) refuses to send any request, the generated clients' and our own,
//!   whose URL's path is not that address.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::headers::{RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::{
    ClientOptions, Context, HttpClient, Policy, PolicyResult, Request, RetryOptions, TransportOptions, Url,
};
use futures::StreamExt;
use serde_json::Value;

use super::error::parse_retry_after;
use super::{
    AccessPolicyChange, AccessPolicyEntry, AzureApi, AzureError, FederatedCredential, FoundIdentity,
    IdentityIds, IdentityPage, RoleAssignment, VaultInfo,
};
use crate::core::{
    grants::role_assignments,
    plan::ObservedIdentity,
    resource_id::{
        KEY_VAULT, ROLE_ASSIGNMENT, ROLE_DEFINITION, ResourceId, ResourceType, USER_ASSIGNED_IDENTITY,
    },
    roles::Permissions,
};

// Every api-version idbind sends, and why, is in docs/azure.md#api-versions.

/// Key Vault management api-version for vault reads (the SDK has no 0.21 Key Vault mgmt crate among our
/// dependencies; one GET does not justify one).
const KEYVAULT_API_VERSION: &str = "2023-07-01";
/// Microsoft.Resources' api-version for ResourceGroups_Get and Providers_Get, and the subscriptions API's for
/// Subscriptions_Get (the versions of Azure's own current SDKs; both have been stable for years).
const RESOURCES_API_VERSION: &str = "2021-04-01";
const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";
/// The managed-identity api-version of the SDK's default tag, for the hand-paged identity list.
const MSI_API_VERSION: &str = "2023-01-31";

/// Which Azure to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cloud {
    AzurePublicCloud,
    AzureChinaCloud,
    AzureUSGovernment,
    /// Explicit endpoints: Azure Stack, the simulator. `audience` is the ARM token audience (the scope
    /// requested is `{audience}/.default`).
    Custom {
        arm_endpoint: String,
        authority_host: String,
        audience: String,
    },
}

impl Cloud {
    pub fn arm_endpoint(&self) -> &str {
        match self {
            Cloud::AzurePublicCloud => "https://management.azure.com",
            Cloud::AzureChinaCloud => "https://management.chinacloudapi.cn",
            Cloud::AzureUSGovernment => "https://management.usgovcloudapi.net",
            Cloud::Custom { arm_endpoint, .. } => arm_endpoint,
        }
    }

    pub fn authority_host(&self) -> &str {
        match self {
            Cloud::AzurePublicCloud => "https://login.microsoftonline.com",
            Cloud::AzureChinaCloud => "https://login.chinacloudapi.cn",
            Cloud::AzureUSGovernment => "https://login.microsoftonline.us",
            Cloud::Custom { authority_host, .. } => authority_host,
        }
    }

    pub fn audience(&self) -> &str {
        match self {
            Cloud::AzurePublicCloud => "https://management.azure.com",
            Cloud::AzureChinaCloud => "https://management.chinacloudapi.cn",
            Cloud::AzureUSGovernment => "https://management.usgovcloudapi.net",
            Cloud::Custom { audience, .. } => audience,
        }
    }

    /// Key Vault's token audience (its data plane's resource). A custom cloud (Azure Stack, the simulator)
    /// gets the public cloud's unless told otherwise.
    pub fn keyvault_audience(&self) -> &str {
        match self {
            Cloud::AzureChinaCloud => "https://vault.azure.cn",
            Cloud::AzureUSGovernment => "https://vault.usgovcloudapi.net",
            Cloud::AzurePublicCloud | Cloud::Custom { .. } => "https://vault.azure.net",
        }
    }

    /// The OAuth scope for ARM tokens.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.audience().trim_end_matches('/'))
    }
}

/// The HTTP transport for ARM and Entra: rustls, the system roots plus `extra_ca_pem` (one or more PEM
/// certificates), and timeouts so a silent peer cannot hold a worker forever.
pub fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<Arc<dyn HttpClient>, AzureError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| AzureError::Config(format!("extra CA: {e}")))?;
        if certs.is_empty() {
            return Err(AzureError::Config("extra CA: no PEM certificate found".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| AzureError::Config(format!("HTTP client: {e}")))?;
    Ok(Arc::new(client))
}

/// [`http_client`] with the extra CA read from a file.
pub fn http_client_with_ca_file(ca_file: Option<&Path>) -> Result<Arc<dyn HttpClient>, AzureError> {
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| AzureError::Config(format!("reading CA file {}: {e}", path.display())))?;
            http_client(Some(&pem))
        }
        None => http_client(None),
    }
}

/// A client-secret credential against the cloud's authority host.
pub fn client_secret_credential(
    cloud: &Cloud,
    http: Arc<dyn HttpClient>,
    tenant_id: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    let authority = Url::parse(cloud.authority_host())
        .map_err(|e| AzureError::Config(format!("authority host {:?}: {e}", cloud.authority_host())))?;
    Ok(Arc::new(azure_identity::ClientSecretCredential::new(
        http,
        authority,
        tenant_id.to_string(),
        client_id.to_string(),
        client_secret.to_string(),
    )))
}

/// The real Azure layer.
pub struct ArmApi {
    msi: azure_mgmt_msi::Client,
    authz: azure_mgmt_authorization::Client,
    /// For the vault GET, with the same transport and policies as the SDK clients.
    pipeline: azure_core::Pipeline,
    endpoint: Url,
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

impl std::fmt::Debug for ArmApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmApi")
            .field("endpoint", &self.endpoint.as_str())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ArmApi {
    /// Clients for `cloud` over `http`, authenticating with `credential`, SDK retries off.
    pub fn new(
        cloud: &Cloud,
        http: Arc<dyn HttpClient>,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self, AzureError> {
        let endpoint = Url::parse(cloud.arm_endpoint())
            .map_err(|e| AzureError::Config(format!("ARM endpoint {:?}: {e}", cloud.arm_endpoint())))?;
        let scope = cloud.scope();
        let mut options = ClientOptions::new(TransportOptions::new(http)).retry(RetryOptions::none());
        // Checked first: a request to another resource than the one judged leaves nothing behind, not even a
        // failed GET.
        options.per_retry_policies_mut().push(Arc::new(AddressPolicy));
        options.per_retry_policies_mut().push(Arc::new(ArmFailurePolicy));
        let msi = azure_mgmt_msi::Client::new(
            endpoint.clone(),
            credential.clone(),
            vec![scope.clone()],
            options.clone(),
        );
        let authz = azure_mgmt_authorization::Client::new(
            endpoint.clone(),
            credential.clone(),
            vec![scope.clone()],
            options.clone(),
        );
        let pipeline = azure_core::Pipeline::new(
            Some("idbind"),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            Vec::new(),
        );
        Ok(Self { msi, authz, pipeline, endpoint, credential, scope })
    }

    fn identity_parts(id: &ResourceId) -> Result<(&str, &str, &str), AzureError> {
        resource_parts(id, USER_ASSIGNED_IDENTITY)
    }

    async fn bearer(&self, operation: &'static str) -> Result<String, AzureError> {
        let token =
            self.credential.get_token(&[self.scope.as_str()]).await.map_err(|e| from_core(operation, e))?;
        Ok(format!("Bearer {}", token.token.secret()))
    }
}

/// The operation that reads `scope`: Subscriptions_Get, ResourceGroups_Get or (for a resource)
/// Resources_GetById; for the request and the budget's metrics alike.
pub fn scope_operation(scope: &ResourceId) -> &'static str {
    match (scope.resource_group(), scope.provider()) {
        (None, None) => "Subscriptions_Get",
        (Some(_), None) => "ResourceGroups_Get",
        _ => "Resources_GetById",
    }
}

/// The newest stable api-version of `versions` (ARM's dates sort as text), else the newest preview: what a
/// resource's GET is sent with.
fn newest_api_version(versions: &[&str]) -> Option<String> {
    let stable = versions.iter().filter(|v| !v.to_ascii_lowercase().contains("preview")).max();
    stable.or_else(|| versions.iter().max()).map(ToString::to_string)
}

#[async_trait]
impl AzureApi for ArmApi {
    async fn get_identity(&self, resource_id: &ResourceId) -> Result<Option<FoundIdentity>, AzureError> {
        const OP: &str = "UserAssignedIdentities_Get";
        let (sub, rg, name) = Self::identity_parts(resource_id)?;
        let get = self.msi.user_assigned_identities_client().get(sub, rg, name);
        match addressed(Address::id(resource_id), get.into_future()).await {
            Ok(identity) => {
                let ids = identity_ids(OP, resource_id, &identity)?;
                let observed = ObservedIdentity {
                    location: identity.tracked_resource.location.clone(),
                    tags: tags_of(identity.tracked_resource.tags.as_ref()),
                    client_id: ids.client_id.clone(),
                    principal_id: ids.principal_id.clone(),
                };
                Ok(Some(FoundIdentity { observed, ids }))
            }
            Err(e) => match from_core(OP, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn put_identity(
        &self,
        resource_id: &ResourceId,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<IdentityIds, AzureError> {
        const OP: &str = "UserAssignedIdentities_CreateOrUpdate";
        let (sub, rg, name) = Self::identity_parts(resource_id)?;
        let mut tracked = azure_mgmt_msi::models::TrackedResource::new(location.to_string());
        tracked.tags =
            Some(Value::Object(tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()));
        let put = self.msi.user_assigned_identities_client().create_or_update(
            sub,
            rg,
            name,
            azure_mgmt_msi::models::Identity::new(tracked),
        );
        let identity =
            addressed(Address::id(resource_id), put.into_future()).await.map_err(|e| from_core(OP, e))?;
        identity_ids(OP, resource_id, &identity)
    }

    async fn delete_identity(&self, resource_id: &ResourceId) -> Result<(), AzureError> {
        let (sub, rg, name) = Self::identity_parts(resource_id)?;
        // `send()`: the 204 answer has no body for the generated decoder to read.
        let delete = self.msi.user_assigned_identities_client().delete(sub, rg, name).send();
        addressed(Address::id(resource_id), delete)
            .await
            .map(|_| ())
            .map_err(|e| from_core("UserAssignedIdentities_Delete", e))
    }

    async fn list_identities_page(
        &self,
        group: &ResourceId,
        next: Option<&str>,
    ) -> Result<IdentityPage, AzureError> {
        // By hand rather than through the SDK's pager, which fetches every page at once: the managed-identity
        // API limits a list like a resource (0.25/s), so each page has to wait for its own turn in the
        // request budget.
        const OP: &str = "UserAssignedIdentities_ListByResourceGroup";
        let address = Address::collection(group, USER_ASSIGNED_IDENTITY);
        let url = match next {
            Some(link) => {
                let url = Url::parse(link).map_err(|e| invalid(OP, &format!("nextLink {link:?}: {e}")))?;
                // Only ever follow a link back to the ARM endpoint we talk to (it carries our token).
                if url.origin() != self.endpoint.origin() {
                    return Err(invalid(OP, &format!("nextLink {link:?} leaves {}", self.endpoint)));
                }
                url
            }
            None => {
                if group.resource_group().is_none() || group.provider().is_some() {
                    return Err(AzureError::InvalidResourceId {
                        kind: "resource group",
                        id: group.to_string(),
                    });
                }
                let mut url = self.endpoint.clone();
                url.set_path(address.path());
                url.query_pairs_mut().append_pair("api-version", MSI_API_VERSION);
                url
            }
        };
        let body = self.send_url(OP, azure_core::Method::Get, url, &address, None).await?;
        let items = body.get("value").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let identities = items.iter().map(listed_identity).collect::<Result<Vec<_>, _>>()?;
        let next = body.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()).map(str::to_string);
        Ok(IdentityPage { identities, next })
    }

    async fn list_federated_credentials(
        &self,
        identity_id: &ResourceId,
    ) -> Result<Vec<FederatedCredential>, AzureError> {
        const OP: &str = "FederatedIdentityCredentials_List";
        let (sub, rg, name) = Self::identity_parts(identity_id)?;
        let address = Address::children(identity_id, FEDERATED_CREDENTIALS);
        let mut pages = self.msi.federated_identity_credentials_client().list(sub, rg, name).into_stream();
        let mut out = Vec::new();
        while let Some(page) = addressed(address.clone(), pages.next()).await {
            for fic in page.map_err(|e| from_core(OP, e))?.value {
                let name = fic
                    .proxy_resource
                    .resource
                    .name
                    .ok_or_else(|| invalid(OP, "a federated credential without a name"))?;
                let props =
                    fic.properties.ok_or_else(|| invalid(OP, "a federated credential without properties"))?;
                out.push(FederatedCredential {
                    name,
                    issuer: props.issuer,
                    subject: props.subject,
                    audiences: props.audiences,
                });
            }
        }
        Ok(out)
    }

    async fn put_federated_credential(
        &self,
        identity_id: &ResourceId,
        fic: &FederatedCredential,
    ) -> Result<(), AzureError> {
        let (sub, rg, name) = Self::identity_parts(identity_id)?;
        let mut body = azure_mgmt_msi::models::FederatedIdentityCredential::new();
        body.properties = Some(azure_mgmt_msi::models::FederatedIdentityCredentialProperties::new(
            fic.issuer.clone(),
            fic.subject.clone(),
            fic.audiences.clone(),
        ));
        let put = self.msi.federated_identity_credentials_client().create_or_update(
            sub,
            rg,
            name,
            fic.name.clone(),
            body,
        );
        addressed(Address::child(identity_id, FEDERATED_CREDENTIALS, &fic.name)?, put.into_future())
            .await
            .map(|_| ())
            .map_err(|e| from_core("FederatedIdentityCredentials_CreateOrUpdate", e))
    }

    async fn delete_federated_credential(
        &self,
        identity_id: &ResourceId,
        name: &str,
    ) -> Result<(), AzureError> {
        let (sub, rg, identity) = Self::identity_parts(identity_id)?;
        let delete = self.msi.federated_identity_credentials_client().delete(sub, rg, identity, name).send();
        addressed(Address::child(identity_id, FEDERATED_CREDENTIALS, name)?, delete)
            .await
            .map(|_| ())
            .map_err(|e| from_core("FederatedIdentityCredentials_Delete", e))
    }

    async fn list_role_assignments(
        &self,
        scope: &ResourceId,
        principal_id: &str,
    ) -> Result<Vec<role_assignments::Observed>, AzureError> {
        let filter = format!("principalId eq '{}'", odata_quote(principal_id));
        Ok(self.role_assignments(scope, Some(filter)).await?.into_iter().map(|ra| ra.assignment).collect())
    }

    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError> {
        self.role_assignments(&ResourceId::subscription_scope(subscription), None).await
    }

    async fn create_role_assignment(
        &self,
        scope: &ResourceId,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
    ) -> Result<(), AzureError> {
        use azure_mgmt_authorization::models::{
            RoleAssignmentCreateParameters, RoleAssignmentProperties,
            role_assignment_properties::PrincipalType,
        };
        let role_definition_id =
            subscription_scope(scope)?.provider_resource(ROLE_DEFINITION, role_definition_guid);
        let mut props =
            RoleAssignmentProperties::new(role_definition_id.to_string(), principal_id.to_string());
        // Without it ARM looks the principal up in Entra, which lags behind a new identity
        // (docs/azure.md#propagation).
        props.principal_type = Some(PrincipalType::ServicePrincipal);
        let create = self.authz.role_assignments_client().create(
            sdk_scope(scope),
            name,
            RoleAssignmentCreateParameters::new(props),
        );
        addressed(Address::id(&scope.provider_resource(ROLE_ASSIGNMENT, name)), create.into_future())
            .await
            .map(|_| ())
            .map_err(|e| from_core("RoleAssignments_Create", e))
    }

    async fn delete_role_assignment(&self, id: &ResourceId) -> Result<(), AzureError> {
        let invalid_id = || AzureError::InvalidResourceId { kind: "role assignment", id: id.to_string() };
        let (Some(scope), Some(name)) = (id.parent(), id.name()) else {
            return Err(invalid_id());
        };
        if !id.is(ROLE_ASSIGNMENT) || scope.subscription().is_none() {
            return Err(invalid_id());
        }
        // `send()`: a 204 has no body to decode.
        let delete = self.authz.role_assignments_client().delete(sdk_scope(&scope), name).send();
        addressed(Address::id(id), delete)
            .await
            .map(|_| ())
            .map_err(|e| from_core("RoleAssignments_Delete", e))
    }

    async fn resolve_role(&self, scope: &ResourceId, role_name: &str) -> Result<String, AzureError> {
        const OP: &str = "RoleDefinitions_List";
        let subscription = subscription_scope(scope)?;
        let mut pages = self
            .authz
            .role_definitions_client()
            .list(sdk_scope(&subscription))
            .filter(format!("roleName eq '{}'", odata_quote(role_name)))
            .into_stream();
        let address = Address::collection(&subscription, ROLE_DEFINITION);
        let mut found = None;
        while let Some(page) = addressed(address.clone(), pages.next()).await {
            for def in page.map_err(|e| from_core(OP, e))?.value {
                let named = def
                    .properties
                    .as_ref()
                    .and_then(|p| p.role_name.as_deref())
                    .is_some_and(|n| n.eq_ignore_ascii_case(role_name));
                if named && found.is_none() {
                    found = def.name.or_else(|| {
                        def.id.as_deref().and_then(|id| id.rsplit('/').next()).map(str::to_string)
                    });
                }
            }
        }
        found.ok_or_else(|| AzureError::RoleNotFound {
            role: role_name.to_string(),
            scope: subscription.to_string(),
        })
    }

    async fn get_vault(&self, resource_id: &ResourceId) -> Result<Option<VaultInfo>, AzureError> {
        const OP: &str = "Vaults_Get";
        resource_parts(resource_id, KEY_VAULT)?;
        let body = match self.send_raw(OP, azure_core::Method::Get, &Address::id(resource_id), None).await {
            Ok(body) => body,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let rbac =
            body.pointer("/properties/enableRbacAuthorization").and_then(Value::as_bool).unwrap_or(false);
        let entries = body
            .pointer("/properties/accessPolicies")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let access_policies = entries
            .iter()
            .map(|e| AccessPolicyEntry {
                tenant_id: e.get("tenantId").and_then(Value::as_str).unwrap_or_default().to_string(),
                object_id: e.get("objectId").and_then(Value::as_str).unwrap_or_default().to_string(),
                application_id: e
                    .get("applicationId")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
                permissions: Permissions {
                    secrets: string_set(e.pointer("/permissions/secrets")),
                    keys: string_set(e.pointer("/permissions/keys")),
                    certificates: string_set(e.pointer("/permissions/certificates")),
                },
            })
            .collect();
        Ok(Some(VaultInfo {
            resource_id: match body.get("id").and_then(Value::as_str) {
                Some(id) => ResourceId::parse(id).map_err(|e| invalid(OP, &e.to_string()))?,
                None => resource_id.clone(),
            },
            rbac_authorization: rbac,
            access_policies,
            vault_uri: body.pointer("/properties/vaultUri").and_then(Value::as_str).map(str::to_string),
        }))
    }

    async fn api_version_for(&self, resource: &ResourceId) -> Result<Option<String>, AzureError> {
        const OP: &str = "Providers_Get";
        let (Some(subscription), Some(namespace), Some(ty)) =
            (resource.subscription(), resource.provider(), resource.resource_type())
        else {
            return Err(AzureError::InvalidResourceId { kind: "resource", id: resource.to_string() });
        };
        let address = Address::provider(subscription, namespace);
        let body =
            match self.send_at(OP, azure_core::Method::Get, &address, RESOURCES_API_VERSION, None).await {
                Ok(body) => body,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
        let types =
            body.get("resourceTypes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let versions = types
            .iter()
            .find(|t| {
                t.get("resourceType").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(&ty))
            })
            .and_then(|t| t.get("apiVersions"))
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        Ok(newest_api_version(&versions))
    }

    async fn scope_id(
        &self,
        scope: &ResourceId,
        api_version: Option<&str>,
    ) -> Result<Option<String>, AzureError> {
        let op = scope_operation(scope);
        let version = match (scope.resource_group(), scope.provider(), api_version) {
            (None, None, _) => SUBSCRIPTIONS_API_VERSION,
            (Some(_), None, _) => RESOURCES_API_VERSION,
            (_, Some(_), Some(version)) => version,
            (_, Some(_), None) => {
                return Err(AzureError::InvalidResourceId {
                    kind: "scope with an api-version",
                    id: scope.to_string(),
                });
            }
        };
        match self.send_at(op, azure_core::Method::Get, &Address::id(scope), version, None).await {
            // Every ARM resource, resource group and subscription answers a GET with its id; without one,
            // nothing shows where the request landed.
            Ok(body) => match body.get("id").and_then(Value::as_str) {
                Some(id) => Ok(Some(id.to_string())),
                None => Err(invalid(op, &format!("the GET of {scope} answered without an id"))),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update_access_policy(
        &self,
        vault_id: &ResourceId,
        change: AccessPolicyChange,
        tenant_id: &str,
        object_id: &str,
        permissions: &Permissions,
    ) -> Result<(), AzureError> {
        // One entry added or removed, never the list rewritten (docs/azure.md#key-vault-management).
        const OP: &str = "Vaults_UpdateAccessPolicy";
        resource_parts(vault_id, KEY_VAULT)?;
        let kind = match change {
            AccessPolicyChange::Add => "add",
            AccessPolicyChange::Remove => "remove",
        };
        let address = Address::child(vault_id, "accessPolicies", kind)?;
        let body = serde_json::json!({"properties": {"accessPolicies": [{
            "tenantId": tenant_id,
            "objectId": object_id,
            "permissions": {"secrets": permissions.secrets, "keys": permissions.keys, "certificates": permissions.certificates},
        }]}});
        self.send_raw(OP, azure_core::Method::Put, &address, Some(body)).await.map(|_| ())
    }
}

impl ArmApi {
    /// Role assignments at, above and below `scope`, all pages, with an optional OData filter.
    async fn role_assignments(
        &self,
        scope: &ResourceId,
        filter: Option<String>,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        const OP: &str = "RoleAssignments_ListForScope";
        let mut request = self.authz.role_assignments_client().list_for_scope(sdk_scope(scope));
        if let Some(filter) = filter {
            request = request.filter(filter);
        }
        let address = Address::collection(scope, ROLE_ASSIGNMENT);
        let mut pages = request.into_stream();
        let mut out = Vec::new();
        while let Some(page) = addressed(address.clone(), pages.next()).await {
            for ra in page.map_err(|e| from_core(OP, e))?.value {
                let props =
                    ra.properties.ok_or_else(|| invalid(OP, "a role assignment without properties"))?;
                let (Some(id), Some(name), Some(scope)) = (ra.id, ra.name, props.scope) else {
                    return Err(invalid(OP, "a role assignment without id, name or scope"));
                };
                let (Ok(parsed_id), Ok(parsed_scope)) = (ResourceId::parse(&id), ResourceId::parse(&scope))
                else {
                    // At a resource whose name idbind refuses (non-ASCII letters, punctuation a URL parser
                    // rewrites): not an assignment idbind made or could address, and the subscription-wide
                    // list holds everyone's, which must not fail for one of them.
                    tracing::debug!(id, "skipping a role assignment at an id idbind does not address");
                    continue;
                };
                let assignment = role_assignments::Observed {
                    id: parsed_id,
                    name,
                    scope: parsed_scope,
                    role_definition_id: props.role_definition_id,
                };
                out.push(RoleAssignment { principal_id: props.principal_id, assignment });
            }
        }
        Ok(out)
    }

    /// One Key Vault management request through the SDK's pipeline (same transport, policies and error
    /// handling as the generated clients), returning the JSON body.
    async fn send_raw(
        &self,
        operation: &'static str,
        method: azure_core::Method,
        address: &Address,
        body: Option<Value>,
    ) -> Result<Value, AzureError> {
        self.send_at(operation, method, address, KEYVAULT_API_VERSION, body).await
    }

    /// One request to `address` at `api_version`.
    async fn send_at(
        &self,
        operation: &'static str,
        method: azure_core::Method,
        address: &Address,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<Value, AzureError> {
        let mut url = self.endpoint.clone();
        url.set_path(address.path());
        url.query_pairs_mut().append_pair("api-version", api_version);
        self.send_url(operation, method, url, address, body).await
    }

    /// One request to `url`, which must address `address`, through the SDK's pipeline, returning the JSON
    /// body.
    async fn send_url(
        &self,
        operation: &'static str,
        method: azure_core::Method,
        url: Url,
        address: &Address,
        body: Option<Value>,
    ) -> Result<Value, AzureError> {
        let mut request = Request::new(url, method);
        request.insert_header(azure_core::headers::AUTHORIZATION, self.bearer(operation).await?);
        if let Some(body) = body {
            request.insert_header(azure_core::headers::CONTENT_TYPE, "application/json");
            request.set_body(serde_json::to_vec(&body).map_err(|e| invalid(operation, &e.to_string()))?);
        }
        let context = Context::new();
        let sent = addressed(address.clone(), self.pipeline.send(&context, &mut request));
        let response = sent.await.map_err(|e| from_core(operation, e))?;
        let bytes = response.into_body().collect().await.map_err(|e| from_core(operation, e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| invalid(operation, &e.to_string()))
    }
}

/// The path of the child collection of federated credentials under an identity.
const FEDERATED_CREDENTIALS: &str = "federatedIdentityCredentials";

/// Where the requests of one ARM call go: the path of an id, of a collection under one, or of a provider,
/// always made from a [`ResourceId`] (parsed, so spelled as a URL carries it), never from a user's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    /// The resource, resource group or subscription `id`.
    pub fn id(id: &ResourceId) -> Address {
        Address(id.to_string())
    }

    /// The collection of `ty` resources under `scope` (`{scope}/providers/{namespace}/{type}`).
    pub fn collection(scope: &ResourceId, ty: ResourceType) -> Address {
        Address(scope.collection_path(ty))
    }

    /// The collection of `child_type` children of the resource `parent`.
    pub fn children(parent: &ResourceId, child_type: &str) -> Address {
        Address(format!("{parent}/{child_type}"))
    }

    /// The child `child_type`/`name` of the resource `parent`.
    pub fn child(parent: &ResourceId, child_type: &str, name: &str) -> Result<Address, AzureError> {
        let child = parent.child(child_type, name);
        child.as_ref().map(Address::id).ok_or_else(|| AzureError::InvalidResourceId {
            kind: "resource with children",
            id: parent.to_string(),
        })
    }

    /// A provider's registration in a subscription (`/subscriptions/{s}/providers/{namespace}`), taken from
    /// the parts of a parsed id.
    pub fn provider(subscription: &str, namespace: &str) -> Address {
        Address(format!("{}/providers/{namespace}", ResourceId::subscription_scope(subscription)))
    }

    pub fn path(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

tokio::task_local! {
    /// The address of the ARM call under way, for [`AddressPolicy`] to check every request of it against.
    static ADDRESS: Address;
}

/// Runs `call` (one ARM call, however many requests it pages through) with its requests held to `address`.
async fn addressed<T>(address: Address, call: impl Future<Output = T>) -> T {
    ADDRESS.scope(address, call).await
}

/// A request that was not sent: its URL's path is not the address of its call, or its call has none.
#[derive(Debug)]
struct Misaddressed {
    address: Option<Address>,
    sent: String,
}

impl std::fmt::Display for Misaddressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.address {
            Some(address) => write!(f, "the path {:?} is not {address}", self.sent),
            None => write!(f, "a request to {:?} was made outside any addressed ARM call", self.sent),
        }
    }
}

impl std::error::Error for Misaddressed {}

/// Whether `url` addresses exactly `address`. The URL parser under the SDK reads `\` as `/`, resolves `.` and
/// `..` segments and percent-encodes what it does not take literally, so a path that differs is a request to
/// another resource than the one judged. ARM reads paths without regard to case, and so does this (the
/// generated clients write `Microsoft.ManagedIdentity` where an id may say `microsoft.managedidentity`).
pub fn addresses(url: &Url, address: &Address) -> bool {
    url.path().eq_ignore_ascii_case(address.path())
}

/// Refuses to send a request whose URL does not address its call's [`Address`], or that belongs to no
/// addressed call: the one check every ARM request passes, the SDK's generated clients' and our own.
#[derive(Debug)]
struct AddressPolicy;

#[async_trait]
impl Policy for AddressPolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let address = ADDRESS.try_with(Address::clone).ok();
        if !address.as_ref().is_some_and(|a| addresses(request.url(), a)) {
            let misaddressed = Misaddressed { address, sent: request.url().path().to_string() };
            return Err(azure_core::Error::new(ErrorKind::Other, misaddressed));
        }
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::message(
                ErrorKind::Other,
                "AddressPolicy must not be the last policy",
            ));
        };
        first.send(ctx, request, rest).await
    }
}

fn string_set(v: Option<&Value>) -> std::collections::BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The SDK's scope parameters are inserted after a `/` of their own.
fn sdk_scope(scope: &ResourceId) -> String {
    scope.to_string().trim_start_matches('/').to_string()
}

/// (subscription, resource group, name) of a resource of type `ty`, or why not.
fn resource_parts(id: &ResourceId, ty: ResourceType) -> Result<(&str, &str, &str), AzureError> {
    match (id.subscription(), id.resource_group(), id.name()) {
        (Some(sub), Some(rg), Some(name))
            if id.is(ty) && id.parent().is_some_and(|p| p.provider().is_none()) =>
        {
            Ok((sub, rg, name))
        }
        _ => Err(AzureError::InvalidResourceId { kind: ty.types[0], id: id.to_string() }),
    }
}

/// The subscription `scope` is in, as a scope of its own.
fn subscription_scope(scope: &ResourceId) -> Result<ResourceId, AzureError> {
    scope
        .subscription()
        .map(ResourceId::subscription_scope)
        .ok_or_else(|| AzureError::InvalidResourceId { kind: "subscription-scoped", id: scope.to_string() })
}

/// OData string literal content: a quote is doubled.
fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

fn invalid(operation: &'static str, message: &str) -> AzureError {
    AzureError::InvalidResponse { operation, message: message.to_string() }
}

/// One identity of a `UserAssignedIdentities_ListByResourceGroup` page.
fn listed_identity(item: &Value) -> Result<FoundIdentity, AzureError> {
    const OP: &str = "UserAssignedIdentities_ListByResourceGroup";
    let text = |p: &str| item.pointer(p).and_then(Value::as_str).map(str::to_string);
    let (Some(id), Some(client_id), Some(principal_id), Some(tenant_id)) = (
        text("/id"),
        text("/properties/clientId"),
        text("/properties/principalId"),
        text("/properties/tenantId"),
    ) else {
        return Err(invalid(OP, "an identity without id, clientId, principalId or tenantId"));
    };
    let observed = ObservedIdentity {
        location: text("/location").unwrap_or_default(),
        tags: tags_of(item.get("tags")),
        client_id: client_id.clone(),
        principal_id: principal_id.clone(),
    };
    let resource_id = ResourceId::parse(&id).map_err(|e| invalid(OP, &e.to_string()))?;
    Ok(FoundIdentity { observed, ids: IdentityIds { resource_id, client_id, principal_id, tenant_id } })
}

fn tags_of(tags: Option<&Value>) -> BTreeMap<String, String> {
    tags.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

fn identity_ids(
    operation: &'static str,
    resource_id: &ResourceId,
    identity: &azure_mgmt_msi::models::Identity,
) -> Result<IdentityIds, AzureError> {
    let props =
        identity.properties.as_ref().ok_or_else(|| invalid(operation, "an identity without properties"))?;
    let (Some(client_id), Some(principal_id), Some(tenant_id)) =
        (props.client_id.clone(), props.principal_id.clone(), props.tenant_id.clone())
    else {
        return Err(invalid(operation, "an identity without clientId, principalId or tenantId"));
    };
    Ok(IdentityIds {
        resource_id: match &identity.tracked_resource.resource.id {
            Some(id) => ResourceId::parse(id).map_err(|e| invalid(operation, &e.to_string()))?,
            None => resource_id.clone(),
        },
        client_id,
        principal_id,
        tenant_id,
    })
}

/// An ARM error answer, read in full by [`ArmFailurePolicy`].
#[derive(Debug)]
struct ArmFailure {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for ArmFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ArmFailure {}

/// Turns an error answer into an [`ArmFailure`] while its headers are still at hand.
#[derive(Debug)]
struct ArmFailurePolicy;

#[async_trait]
impl Policy for ArmFailurePolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            // The pipeline always ends in the transport policy, after this one.
            return Err(azure_core::Error::message(
                ErrorKind::Other,
                "ArmFailurePolicy must not be the last policy",
            ));
        };
        let response = first.send(ctx, request, rest).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let (status, headers, body) = response.deconstruct();
        let retry_after = parse_retry_after(
            headers.get_optional_str(&RETRY_AFTER),
            headers
                .get_optional_str(&X_MS_RETRY_AFTER_MS)
                .or_else(|| headers.get_optional_str(&RETRY_AFTER_MS)),
        );
        let bytes = body.collect().await?;
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = parsed
            .pointer("/error/code")
            .and_then(Value::as_str)
            .or_else(|| headers.get_optional_str(&azure_core::headers::ERROR_CODE))
            .unwrap_or_default()
            .to_string();
        let message = parsed
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(500).collect());
        let failure = ArmFailure { status: u16::from(status), code: code.clone(), message, retry_after };
        Err(azure_core::Error::new(ErrorKind::HttpResponse { status, error_code: Some(code) }, failure))
    }
}

/// Classifies an SDK error for `operation`.
fn from_core(operation: &'static str, e: azure_core::Error) -> AzureError {
    if let Some(m) = e.downcast_ref::<Misaddressed>() {
        let address = m.address.as_ref().map_or_else(|| "addressed".to_string(), ToString::to_string);
        return AzureError::Misaddressed { operation, address, sent: m.sent.clone() };
    }
    if let Some(f) = e.downcast_ref::<ArmFailure>() {
        return AzureError::Arm {
            operation,
            status: f.status,
            code: f.code.clone(),
            message: f.message.clone(),
            retry_after: f.retry_after,
        };
    }
    let message = error_chain(&e);
    match e.kind() {
        // An error answer that did not pass through our policy (should not happen).
        ErrorKind::HttpResponse { status, error_code } => AzureError::Arm {
            operation,
            status: u16::from(*status),
            code: error_code.clone().unwrap_or_default(),
            message,
            retry_after: None,
        },
        ErrorKind::Io => AzureError::Network { operation, message },
        ErrorKind::Credential => AzureError::Credential { operation, message },
        _ => AzureError::InvalidResponse { operation, message },
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The real ARM client over a transport that records each request and answers from a function: for tests of
/// what the client sends, and of what idbind does with what Azure answers.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use azure_core::{BytesStream, Response, StatusCode, auth::AccessToken, headers::Headers};

    use super::*;

    pub const ENDPOINT: &str = "https://management.azure.com";

    /// What the transport answers a request (its method and URL) with: a 200 with this JSON body.
    pub type Answer = Box<dyn Fn(&str, &Url) -> Value + Send + Sync>;

    /// A transport that records each request's method and path.
    pub struct Recorder {
        sent: Mutex<Vec<(String, String)>>,
        answer: Answer,
    }

    impl std::fmt::Debug for Recorder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Recorder").field("sent", &self.sent).finish_non_exhaustive()
        }
    }

    impl Recorder {
        /// (method, path) of every request that reached the transport, in order.
        pub fn sent(&self) -> Vec<(String, String)> {
            self.sent.lock().map(|r| r.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl HttpClient for Recorder {
        async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
            let (method, path) = (request.method().to_string(), request.url().path().to_string());
            let body = (self.answer)(&method, request.url());
            if let Ok(mut sent) = self.sent.lock() {
                sent.push((method, path));
            }
            let bytes = serde_json::to_vec(&body).map_err(|e| azure_core::Error::new(ErrorKind::Other, e))?;
            Ok(Response::new(StatusCode::Ok, Headers::new(), Box::pin(BytesStream::new(bytes))))
        }
    }

    #[derive(Debug)]
    struct StaticToken;

    #[async_trait]
    impl TokenCredential for StaticToken {
        async fn get_token(&self, _: &[&str]) -> azure_core::Result<AccessToken> {
            Ok(AccessToken::new("token", time::OffsetDateTime::now_utc() + Duration::from_secs(3600)))
        }

        async fn clear_cache(&self) -> azure_core::Result<()> {
            Ok(())
        }
    }

    /// The ARM client at [`ENDPOINT`] over a [`Recorder`] answering with `answer`.
    pub fn api(answer: Answer) -> (ArmApi, Arc<Recorder>) {
        let recorder = Arc::new(Recorder { sent: Mutex::default(), answer });
        let cloud = Cloud::Custom {
            arm_endpoint: ENDPOINT.into(),
            authority_host: "https://login.microsoftonline.com".into(),
            audience: ENDPOINT.into(),
        };
        let api =
            ArmApi::new(&cloud, recorder.clone(), Arc::new(StaticToken)).unwrap_or_else(|e| panic!("{e}"));
        (api, recorder)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::reason::Reason;
    use azure_core::Method;
    use proptest::prelude::*;

    use super::testing::{ENDPOINT, Recorder};
    use super::*;
    use crate::core::resource_id::strategies::spelled_scope;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    const ROLE: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const PRINCIPAL: &str = "00000000-0000-0000-0000-0000000000aa";
    const RG_IDENTITIES: &str = "rg-identities";

    /// The client over a transport that answers as ARM would in shape: a list for a collection, the addressed
    /// resource's id otherwise.
    fn api() -> (ArmApi, Arc<Recorder>) {
        testing::api(Box::new(|_, url| {
            if url.path().ends_with("/roleAssignments") {
                serde_json::json!({"value": []})
            } else {
                serde_json::json!({"id": url.path()})
            }
        }))
    }

    fn block_on<T>(call: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        runtime.unwrap_or_else(|e| panic!("{e}")).block_on(call)
    }

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The scope issue 23's tenant wrote, as idbind would have judged it without its `\` and `..`: an
    /// accessPolicies child of the team's own vault.
    fn judged() -> ResourceId {
        id(&format!(
            "/subscriptions/{SUB}/resourceGroups/rg-team/providers/Microsoft.KeyVault/vaults/kv-team/accessPolicies/x"
        ))
    }

    #[test]
    fn a_request_whose_url_is_not_its_address_is_not_sent() {
        let (api, recorder) = api();
        // The SDK's path template around the tenant's text, and where a URL parser takes it.
        let mut url = Url::parse(ENDPOINT).unwrap_or_else(|e| panic!("{e}"));
        url.set_path(&format!(
            r"{}\..\..\..\..\..\..\..\..\resourceGroups\rg-shop\providers\Microsoft.KeyVault\vaults\kv-shop",
            judged()
        ));
        assert_eq!(
            url.path(),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg-shop/providers/Microsoft.KeyVault/vaults/kv-shop"
            )
        );
        let sent =
            block_on(api.send_url("Resources_GetById", Method::Get, url, &Address::id(&judged()), None));
        assert!(
            matches!(sent, Err(AzureError::Misaddressed { operation: "Resources_GetById", .. })),
            "{sent:?}"
        );
        assert_eq!(sent.err().map(|e| e.reason()), Some(Reason::InvalidResourceId));
        assert_eq!(recorder.sent(), Vec::<(String, String)>::new(), "nothing reached the transport");
    }

    #[test]
    fn a_request_outside_any_addressed_call_is_not_sent() {
        let (api, recorder) = api();
        let url = Url::parse(&format!("{ENDPOINT}/subscriptions/{SUB}")).unwrap_or_else(|e| panic!("{e}"));
        let mut request = Request::new(url, Method::Get);
        let sent = block_on(api.pipeline.send(&Context::new(), &mut request));
        let error = sent.err().map(|e| from_core("Subscriptions_Get", e));
        assert!(matches!(error, Some(AzureError::Misaddressed { .. })), "{error:?}");
        assert!(recorder.sent().is_empty());
    }

    #[test]
    fn addresses_compare_paths_as_arm_does() {
        let identity = id(&format!(
            "/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.managedidentity/userAssignedIdentities/id1"
        ));
        let sdk = Url::parse(&format!(
            "{ENDPOINT}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1?api-version=1"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(addresses(&sdk, &Address::id(&identity)), "casing is not another resource");
        let encoded = Url::parse(&format!("{ENDPOINT}/subscriptions/{SUB}/resourceGroups/r%67"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!addresses(&encoded, &Address::id(&ResourceId::resource_group_scope(SUB, "rg"))));
    }

    /// ARM pages a list with a nextLink to the same path: every page is sent (the address holds for the whole
    /// call, however many requests it pages through), and a link elsewhere is not followed.
    #[test]
    fn every_page_of_a_list_is_sent_and_a_link_elsewhere_is_not() {
        let (api, recorder) = testing::api(Box::new(|_, url| {
            let first_page = !url.query().unwrap_or_default().contains("skiptoken");
            if first_page {
                let link = format!("{ENDPOINT}{}?api-version=2022-04-01&$skiptoken=2", url.path());
                serde_json::json!({"value": [], "nextLink": link})
            } else {
                serde_json::json!({"value": []})
            }
        }));
        let scope = ResourceId::resource_group_scope(SUB, "rg-team");
        assert_eq!(block_on(api.list_role_assignments(&scope, PRINCIPAL)), Ok(Vec::new()));
        let path = scope.collection_path(ROLE_ASSIGNMENT);
        assert_eq!(recorder.sent(), vec![("GET".to_string(), path); 2], "both pages");

        let group = ResourceId::resource_group_scope(SUB, RG_IDENTITIES);
        let elsewhere = format!(
            "{ENDPOINT}/subscriptions/{SUB}/resourceGroups/rg-shop/providers/Microsoft.ManagedIdentity/userAssignedIdentities?$skiptoken=2"
        );
        let followed = block_on(api.list_identities_page(&group, Some(&elsewhere)));
        assert!(matches!(followed, Err(AzureError::Misaddressed { .. })), "{followed:?}");
        assert_eq!(recorder.sent().len(), 2, "the link elsewhere was not followed");
    }

    /// Every ARM call an azureRoles scope goes through, with the path each request must carry.
    async fn calls_on(api: &ArmApi, scope: &ResourceId) -> Vec<(Result<(), AzureError>, String)> {
        let name = "11111111-1111-1111-1111-111111111111";
        let assignment = scope.provider_resource(ROLE_ASSIGNMENT, name);
        vec![
            (api.scope_id(scope, Some("2023-07-01")).await.map(|_| ()), scope.to_string()),
            (
                api.list_role_assignments(scope, PRINCIPAL).await.map(|_| ()),
                scope.collection_path(ROLE_ASSIGNMENT),
            ),
            (api.create_role_assignment(scope, name, ROLE, PRINCIPAL).await, assignment.to_string()),
            (api.delete_role_assignment(&assignment).await, assignment.to_string()),
        ]
    }

    proptest! {
        /// However a scope is spelled, either idbind refuses it, or every request the ARM client sends for it
        /// (the SDK's and its own, through the same pipeline) carries exactly the id idbind judged.
        #[test]
        fn a_scope_is_refused_or_every_request_carries_the_judged_id(text in spelled_scope()) {
            let Ok(judged) = ResourceId::parse(&text) else { return Ok(()) };
            let (api, recorder) = api();
            let calls = block_on(calls_on(&api, &judged));
            let sent: Vec<String> = recorder.sent().into_iter().map(|(_, path)| path).collect();
            let wanted: Vec<String> = calls.iter().map(|(_, path)| path.clone()).collect();
            for (result, _) in &calls {
                prop_assert!(result.is_ok(), "{:?}: {:?}", text, result);
            }
            prop_assert_eq!(sent, wanted, "{:?}", text);
        }
    }
}
