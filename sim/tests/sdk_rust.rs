//! Azure's Rust SDK (azure_mgmt_msi / azure_mgmt_authorization / azure_identity 0.21) against the simulator
//! over HTTPS: a reqwest client that trusts the simulator's CA as transport, the simulator as authority host
//! and ARM endpoint, SDK retries off.

mod common;

use std::sync::Arc;

use azure_core::auth::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::{HttpClient, RetryOptions, TransportOptions, Url};
use common::*;
use futures::StreamExt;
use idbind_sim::SimHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn transport(h: &SimHandle) -> Arc<dyn HttpClient> {
    Arc::new(client(h))
}

fn credential(h: &SimHandle) -> Result<Arc<dyn TokenCredential>, BoxError> {
    let authority = Url::parse(&h.authority_host().unwrap_or_default())?;
    Ok(Arc::new(azure_identity::ClientSecretCredential::new(
        transport(h),
        authority,
        h.tenant_id().to_owned(),
        APP_ID.to_owned(),
        APP_SECRET.to_owned(),
    )))
}

fn error_code(e: &azure_core::Error) -> Option<(u16, String)> {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            Some((u16::from(*status), error_code.clone().unwrap_or_default()))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_identities_and_federated_credentials_with_the_rust_sdk() -> TestResult {
    let h = start().await?;
    let endpoint = Url::parse(&https(&h))?;
    let msi = azure_mgmt_msi::Client::builder(credential(&h)?)
        .endpoint(endpoint)
        .scopes(&[ARM_SCOPE])
        .retry(RetryOptions::none())
        .transport(TransportOptions::new(transport(&h)))
        .build()?;
    let identities = msi.user_assigned_identities_client();
    let mut tracked = azure_mgmt_msi::models::TrackedResource::new("westeurope".into());
    tracked.tags = Some(serde_json::json!({"team": "shop"}));
    let created = identities
        .create_or_update(SUB, RG, "sdk-identity", azure_mgmt_msi::models::Identity::new(tracked.clone()))
        .await?;
    let props = created.properties.clone().unwrap_or_default();
    assert!(props.client_id.is_some() && props.principal_id.is_some());
    assert_eq!(props.tenant_id.as_deref(), Some(h.tenant_id()));
    assert_eq!(created.tracked_resource.resource.id.as_deref(), Some(format!("/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/sdk-identity").as_str()));
    let got = identities.get(SUB, RG, "sdk-identity").await?;
    assert_eq!(got.properties.unwrap_or_default().client_id, props.client_id);

    let fics = msi.federated_identity_credentials_client();
    for i in 0..5 {
        let mut fic = azure_mgmt_msi::models::FederatedIdentityCredential::new();
        fic.properties = Some(azure_mgmt_msi::models::FederatedIdentityCredentialProperties::new(
            "https://kube.example/issuer".into(),
            format!("system:serviceaccount:shop:sa-{i}"),
            vec!["api://AzureADTokenExchange".into()],
        ));
        fics.create_or_update(SUB, RG, "sdk-identity", format!("fic-{i}"), fic).await?;
    }
    // Paging through the SDK's own nextLink handling.
    let mut stream = fics.list(SUB, RG, "sdk-identity").top(2).into_stream();
    let mut names = Vec::new();
    let mut pages = 0;
    while let Some(page) = stream.next().await {
        pages += 1;
        names.extend(page?.value.into_iter().filter_map(|f| f.proxy_resource.resource.name));
    }
    assert_eq!((names.len(), pages), (5, 3));

    // A duplicate issuer+subject comes back as an HTTP error with ARM's status.
    let mut dup = azure_mgmt_msi::models::FederatedIdentityCredential::new();
    dup.properties = Some(azure_mgmt_msi::models::FederatedIdentityCredentialProperties::new(
        "https://kube.example/issuer".into(),
        "system:serviceaccount:shop:sa-0".into(),
        vec!["api://AzureADTokenExchange".into()],
    ));
    let err = fics.create_or_update(SUB, RG, "sdk-identity", "fic-dup", dup).await.err();
    assert_eq!(err.as_ref().and_then(error_code).map(|(s, _)| s), Some(400));

    // Lists by resource group and subscription.
    let mut by_rg = identities.list_by_resource_group(SUB, RG).into_stream();
    let mut count = 0;
    while let Some(page) = by_rg.next().await {
        count += page?.value.len();
    }
    assert_eq!(count, 1);
    let mut by_sub = identities.list_by_subscription(SUB).into_stream();
    let first = by_sub.next().await.transpose()?.map(|p| p.value.len());
    assert_eq!(first, Some(1));

    let r = fics.delete(SUB, RG, "sdk-identity", "fic-0").send().await?;
    assert_eq!(u16::from(r.as_raw_response().status()), 200);
    identities.delete(SUB, RG, "sdk-identity").send().await?;
    let missing = identities.get(SUB, RG, "sdk-identity").await.err();
    assert_eq!(missing.as_ref().and_then(error_code), Some((404, String::from("ResourceNotFound"))));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_assignments_and_definitions_with_the_rust_sdk() -> TestResult {
    use azure_mgmt_authorization::models::{
        RoleAssignmentCreateParameters, RoleAssignmentProperties, role_assignment_properties::PrincipalType,
    };
    let h = start().await?;
    let authz = azure_mgmt_authorization::Client::builder(credential(&h)?)
        .endpoint(Url::parse(&https(&h))?)
        .scopes(&[ARM_SCOPE])
        .retry(RetryOptions::none())
        .transport(TransportOptions::new(transport(&h)))
        .build()?;
    let scope = vault_scope(KV_RBAC).trim_start_matches('/').to_owned();

    // Role definition by friendly name.
    let defs = authz.role_definitions_client();
    let mut stream = defs.list(scope.clone()).filter("roleName eq 'Key Vault Secrets User'").into_stream();
    let page = stream.next().await.transpose()?.map(|p| p.value).unwrap_or_default();
    assert_eq!(page.len(), 1);
    let def_id = page[0].id.clone().unwrap_or_default();
    assert_eq!(def_id, role_id(SECRETS_USER));
    let by_name = defs.get(scope.clone(), SECRETS_USER).await?;
    assert_eq!(by_name.properties.map(|p| p.role_name), Some(Some(String::from("Key Vault Secrets User"))));
    // A finding worth keeping in view: the 0.21 SDK's `get_by_id` builds its path from the swagger's
    // `/{roleId}?disambiguation_dummy` with `set_path`, so it sends `%3Fdisambiguation_dummy` as part of the
    // id. ARM cannot resolve that id and neither do we: idbind must use `get(scope, name)`, never the
    // `*_by_id` calls.
    let by_id = defs.get_by_id(def_id.trim_start_matches('/')).await.err();
    assert_eq!(by_id.as_ref().and_then(error_code), Some((404, String::from("RoleDefinitionDoesNotExist"))));

    let ras = authz.role_assignments_client();
    let principal = "77777777-7777-7777-7777-777777777777";
    let mut props = RoleAssignmentProperties::new(def_id.clone(), principal.into());
    props.principal_type = Some(PrincipalType::ServicePrincipal);
    let name = "8f5e3a2b-9c1d-4e6f-a7b8-000000000001";
    let created = ras.create(scope.clone(), name, RoleAssignmentCreateParameters::new(props.clone())).await?;
    assert_eq!(created.name.as_deref(), Some(name));
    let created_props = created.properties.clone();
    assert_eq!(created_props.as_ref().map(|p| p.role_definition_id.clone()), Some(def_id.clone()));
    assert!(created_props.and_then(|p| p.created_on).is_some());

    // The same trio under another name: 409 RoleAssignmentExists.
    let dup = ras
        .create(
            scope.clone(),
            "8f5e3a2b-9c1d-4e6f-a7b8-000000000002",
            RoleAssignmentCreateParameters::new(props.clone()),
        )
        .await
        .err();
    assert_eq!(dup.as_ref().and_then(error_code), Some((409, String::from("RoleAssignmentExists"))));

    let got = ras.get(scope.clone(), name).await?;
    assert_eq!(got.id, created.id);
    let id = created.id.clone().unwrap_or_default();
    let by_id = ras.get_by_id(id.trim_start_matches('/')).await?;
    assert_eq!(by_id.name.as_deref(), Some(name));

    let mut list =
        ras.list_for_scope(scope.clone()).filter(format!("principalId eq '{principal}'")).into_stream();
    let found = list.next().await.transpose()?.map(|p| p.value.len());
    assert_eq!(found, Some(1));

    ras.delete(scope.clone(), name).await?;
    let gone = ras.get(scope.clone(), name).await.err();
    assert_eq!(gone.as_ref().and_then(error_code).map(|(s, _)| s), Some(404));
    h.shutdown().await?;
    Ok(())
}
