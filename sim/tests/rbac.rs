//! ARM authorizes every request from the caller's role assignments, over HTTPS: the role definitions'
//! `actions` and `notActions` at the request's scope or above, conditions on role assignment management, and
//! ARM's 403 `AuthorizationFailed` otherwise (docs/azure.md#arm-errors).

mod common;

use std::time::Duration;

use common::*;
use idbind_sim::{
    Seed, SeedApp, SeedRoleDefinition, SimHandle, Simulator, arm::conditions::delegation_condition,
    state::RolePermission,
};
use serde_json::json;

/// A second app that starts with no role at all.
const DELEGATE_ID: &str = "77777777-7777-7777-7777-777777777777";
const DELEGATE_SECRET: &str = "delegate-secret";
const DELEGATE_OID: &str = "77777777-0000-4000-8000-000000000077";
const RBAC_ADMIN: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
const KV_API: &str = "api-version=2023-07-01";

async fn start_with_delegate() -> Result<(SimHandle, Arm, Arm), Box<dyn std::error::Error + Send + Sync>> {
    let mut cfg = config();
    cfg.seed.apps.push(SeedApp {
        client_id: DELEGATE_ID.into(),
        client_secret: DELEGATE_SECRET.into(),
        object_id: Some(DELEGATE_OID.into()),
        display_name: Some("delegate".into()),
    });
    let h = Simulator::start(cfg).await?;
    let owner = Arm::new(&h).await?;
    let delegate = owner.with_token(secret_token(&h, &owner.client, DELEGATE_ID, DELEGATE_SECRET).await?);
    Ok((h, owner, delegate))
}

fn assignment(role: &str, principal: &str, principal_type: &str) -> serde_json::Value {
    json!({"properties": {"roleDefinitionId": role_id(role), "principalId": principal, "principalType": principal_type}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_without_roles_may_do_nothing_and_one_with_roles_only_what_they_grant() -> TestResult {
    let (h, owner, delegate) = start_with_delegate().await?;
    // No role: neither reads nor writes, with ARM's wording, naming the caller, action and scope.
    let read = delegate.get(&identity_path("anything")).await?;
    assert_eq!((read.status, read.code()), (403, "AuthorizationFailed"), "{}", read.body);
    let message = read.body["error"]["message"].as_str().unwrap_or_default();
    let scope = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/anything"
    );
    assert_eq!(
        message,
        format!(
            "The client '{DELEGATE_ID}' with object id '{DELEGATE_OID}' does not have authorization to perform \
             action 'Microsoft.ManagedIdentity/userAssignedIdentities/read' over scope '{scope}' or the scope is \
             invalid. If access was recently granted, please refresh your credentials."
        )
    );
    assert_eq!(
        delegate.put(&identity_path("x"), json!({"location": "westeurope"})).await?.code(),
        "AuthorizationFailed"
    );
    // A subscription nobody knows is ARM's 404 before any role is looked at.
    let unknown =
        delegate.get("/subscriptions/00000000-0000-0000-0000-00000000dead?api-version=2022-12-01").await?;
    assert_eq!((unknown.status, unknown.code()), (404, "SubscriptionNotFound"));

    // A custom role at the identities' group: its actions there, nothing above or beside it, and its own
    // notActions taken away.
    let mut seed = Seed::default();
    seed.role_definitions.push(SeedRoleDefinition {
        name: "3c3c3c3c-0000-4000-8000-000000000001".into(),
        role_name: "Identity Writer".into(),
        permissions: vec![RolePermission {
            actions: vec!["Microsoft.ManagedIdentity/userAssignedIdentities/*".into()],
            not_actions: vec!["Microsoft.ManagedIdentity/userAssignedIdentities/delete".into()],
            ..Default::default()
        }],
        assignable_scopes: vec![format!("/subscriptions/{SUB}")],
        ..Default::default()
    });
    seed.assign(DELEGATE_OID, "Identity Writer", &rg_scope(RG));
    h.seed(seed).await?;
    assert_eq!(delegate.put(&identity_path("mine"), json!({"location": "westeurope"})).await?.status, 201);
    let put_fic = delegate
        .put(&fic_path("mine", "fic-one"), fic_body("https://issuer.example", "system:serviceaccount:a:b"))
        .await?;
    assert_eq!(put_fic.status, 201, "{}", put_fic.body);
    assert_eq!(delegate.delete(&identity_path("mine")).await?.code(), "AuthorizationFailed", "notActions");
    let elsewhere = format!(
        "/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={MSI_API}"
    );
    assert_eq!(delegate.get(&elsewhere).await?.code(), "AuthorizationFailed", "another group");
    assert_eq!(
        delegate.get(&format!("{}?{KV_API}", vault_scope(KV_RBAC))).await?.code(),
        "AuthorizationFailed",
        "another provider's resource"
    );
    // Role definitions and providers of the tenant are Azure's own and open to every caller.
    let tenant_role = delegate
        .get(&format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{RBAC_ADMIN}?api-version={AUTHZ_API}"
        ))
        .await?;
    assert_eq!(tenant_role.status, 200, "{}", tenant_role.body);

    // Deleting the assignment takes the access away at the next request, even with Key Vault's propagation
    // window on: ARM does not model its cache.
    h.set_role_propagation(Duration::from_secs(60));
    let listed = owner
        .get(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ_API}&$filter=principalId%20eq%20'{DELEGATE_OID}'",
            rg_scope(RG)
        ))
        .await?;
    let id = listed.body["value"][0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(owner.delete(&format!("{id}?api-version={AUTHZ_API}")).await?.status, 200);
    assert_eq!(delegate.get(&identity_path("mine")).await?.code(), "AuthorizationFailed");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delegation_condition_limits_role_assignment_management() -> TestResult {
    let (h, owner, delegate) = start_with_delegate().await?;
    let kv = vault_scope(KV_RBAC);
    let mut seed = Seed::default();
    let delegated = seed.assign(DELEGATE_OID, "Role Based Access Control Administrator", &kv);
    delegated.condition = Some(delegation_condition(&[SECRETS_USER]));
    delegated.condition_version = Some("2.0".into());
    h.seed(seed).await?;
    let workload = "88888888-0000-4000-8000-000000000001";
    let n = |i: u8| format!("6c2b7a1e-0a55-4d7c-9c1a-0000000000b{i}");

    // The listed role to a service principal: yes. Another role, a user, a group: the ABAC variant of 403.
    let ok =
        delegate.put(&ra_path(&kv, &n(1)), assignment(SECRETS_USER, workload, "ServicePrincipal")).await?;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["properties"]["principalType"], "ServicePrincipal");
    for (role, kind) in [
        (OWNER, "ServicePrincipal"),
        (RBAC_ADMIN, "ServicePrincipal"),
        (SECRETS_USER, "User"),
        (SECRETS_USER, "Group"),
    ] {
        let no = delegate.put(&ra_path(&kv, &n(2)), assignment(role, workload, kind)).await?;
        assert_eq!((no.status, no.code()), (403, "AuthorizationFailed"), "{role} to a {kind}: {}", no.body);
        let message = no.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(
                "does not have authorization or an ABAC condition not fulfilled to perform action \
                              'Microsoft.Authorization/roleAssignments/write'"
            ),
            "{message}"
        );
    }
    // Without principalType the directory's type counts: the seeded app is a service principal; a principal
    // the directory does not know has no type, which fulfils no condition.
    let untyped = |principal: &str| json!({"properties": {"roleDefinitionId": role_id(SECRETS_USER), "principalId": principal}});
    let directory_knows = delegate.put(&ra_path(&kv, &n(7)), untyped(APP_OID)).await?;
    assert_eq!(directory_knows.status, 201, "{}", directory_knows.body);
    let unknown = delegate.put(&ra_path(&kv, &n(8)), untyped(workload)).await?;
    assert_eq!((unknown.status, unknown.code()), (403, "AuthorizationFailed"), "{}", unknown.body);
    // Its */read still reads the vault; nothing above the vault.
    assert_eq!(delegate.get(&format!("{kv}?{KV_API}")).await?.status, 200);
    let above = delegate
        .put(&ra_path(&rg_scope(KV_RG), &n(3)), assignment(SECRETS_USER, workload, "ServicePrincipal"))
        .await?;
    assert_eq!(above.code(), "AuthorizationFailed");

    // Deletes are judged by the assignment they remove: its own kind yes, someone else's Owner no; deleting
    // an assignment that is not there is 204.
    let foreign = owner.put(&ra_path(&kv, &n(4)), assignment(OWNER, workload, "ServicePrincipal")).await?;
    assert_eq!(foreign.status, 201);
    let refused = delegate.delete(&ra_path(&kv, &n(4))).await?;
    assert_eq!((refused.status, refused.code()), (403, "AuthorizationFailed"), "{}", refused.body);
    assert_eq!(delegate.delete(&ra_path(&kv, &n(1))).await?.status, 200);
    assert_eq!(delegate.delete(&ra_path(&kv, &n(1))).await?.status, 204);

    // The owner writes conditions too: the stored one is answered back; what cannot be evaluated is a 400.
    let with_condition = json!({"properties": {"roleDefinitionId": role_id(RBAC_ADMIN), "principalId": workload,
        "principalType": "ServicePrincipal", "condition": delegation_condition(&[SECRETS_USER])}});
    let stored = owner.put(&ra_path(&kv, &n(5)), with_condition).await?;
    assert_eq!(stored.status, 201, "{}", stored.body);
    assert_eq!(stored.body["properties"]["conditionVersion"], "2.0");
    for (condition, version) in [
        (
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEquals 'logs'",
            "2.0",
        ),
        ("!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}) OR", "2.0"),
        ("!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})", "1.0"),
    ] {
        let body = json!({"properties": {"roleDefinitionId": role_id(RBAC_ADMIN), "principalId": workload,
            "principalType": "ServicePrincipal", "condition": condition, "conditionVersion": version}});
        let bad = owner.put(&ra_path(&kv, &n(6)), body).await?;
        assert_eq!((bad.status, bad.code()), (400, "InvalidCondition"), "{condition}: {}", bad.body);
        let message = bad.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("The given role assignment condition is invalid. "), "{message}");
    }
    assert_eq!(owner.get(&ra_path(&kv, &n(6))).await?.status, 404, "nothing stored");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_vault_takes_the_delete_action() -> TestResult {
    let (h, _owner, delegate) = start_with_delegate().await?;
    let kv = format!("{}?{KV_API}", vault_scope(KV_RBAC));
    let mut seed = Seed::default();
    seed.assign(DELEGATE_OID, "Key Vault Secrets User", &vault_scope(KV_RBAC));
    h.seed(seed).await?;
    let no = delegate.delete(&kv).await?;
    assert_eq!((no.status, no.code()), (403, "AuthorizationFailed"), "{}", no.body);
    assert!(
        no.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("'Microsoft.KeyVault/vaults/delete'")
    );
    let mut seed = Seed::default();
    seed.assign(DELEGATE_OID, "Key Vault Contributor", &rg_scope(KV_RG));
    h.seed(seed).await?;
    assert_eq!(delegate.delete(&kv).await?.status, 200);
    assert_eq!(delegate.get(&kv).await?.code(), "ResourceNotFound");
    assert_eq!(delegate.delete(&kv).await?.status, 204);
    assert_eq!(h.counters().get("Vaults_Delete", "403"), 1);
    h.shutdown().await?;
    Ok(())
}
