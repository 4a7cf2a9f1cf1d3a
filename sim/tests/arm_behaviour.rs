//! ARM semantics over HTTPS: status codes, ids, error bodies and the behaviours that make real ARM hard
//! (docs/azure.md#managed-identity-api, docs/azure.md#role-assignments-api, docs/azure.md#arm-errors).

mod common;

use std::time::Duration;

use common::*;
use idbind_sim::{HoldSpec, Simulator};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn identity_lifecycle_with_arm_ids_and_codes() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let created = arm
        .put(&identity_path("Orders-API"), json!({"location": "westeurope", "tags": {"team": "shop"}}))
        .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap_or_default();
    assert_eq!(
        id,
        format!(
            "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Orders-API"
        )
    );
    for field in ["clientId", "principalId"] {
        assert!(
            uuid::Uuid::parse_str(created.body["properties"][field].as_str().unwrap_or("")).is_ok(),
            "{field} is a GUID"
        );
    }
    assert_eq!(created.body["properties"]["tenantId"], h.tenant_id());
    assert_eq!(created.body["properties"]["isolationScope"], "None");

    // Same name in another case is the same resource: update, 200, ids unchanged.
    let updated = arm
        .put(&identity_path("orders-api"), json!({"location": "westeurope", "tags": {"team": "payments"}}))
        .await?;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["properties"]["clientId"], created.body["properties"]["clientId"]);
    assert_eq!(updated.body["name"], "Orders-API");

    // 2023-01-31 has no isolationScope.
    let old = arm.get(&identity_path("Orders-API").replace(MSI_API, "2023-01-31")).await?;
    assert_eq!(old.status, 200);
    assert!(old.body["properties"].get("isolationScope").is_none());

    let patched = arm.call("PATCH", &identity_path("Orders-API"), Some(json!({"tags": {"a": "b"}}))).await?;
    assert_eq!((patched.status, patched.body["tags"].clone()), (200, json!({"a": "b"})));

    let moved = arm.put(&identity_path("Orders-API"), json!({"location": "eastus"})).await?;
    assert_eq!((moved.status, moved.code()), (409, "InvalidResourceLocation"));

    let missing = arm.get(&identity_path("nope-nope")).await?;
    assert_eq!((missing.status, missing.code()), (404, "ResourceNotFound"));
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Microsoft.ManagedIdentity/userAssignedIdentities/nope-nope")
    );

    assert_eq!(arm.delete(&identity_path("Orders-API")).await?.status, 200);
    assert_eq!(arm.delete(&identity_path("Orders-API")).await?.status, 204);
    assert_eq!(arm.get(&identity_path("Orders-API")).await?.status, 404);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn request_validation_answers_like_arm() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let path = identity_path("valid-name");
    let cases = [
        (
            path.replace(&format!("api-version={MSI_API}"), "api-version=2099-01-01"),
            Some(json!({"location": "x"})),
            400,
            "NoRegisteredProviderFound",
        ),
        (
            path.replace(&format!("api-version={MSI_API}"), "api-version=latest"),
            Some(json!({"location": "x"})),
            400,
            "InvalidApiVersionParameter",
        ),
        (
            path.replace(&format!("?api-version={MSI_API}"), ""),
            Some(json!({"location": "x"})),
            400,
            "MissingApiVersionParameter",
        ),
        (path.clone(), Some(json!({"tags": {}})), 400, "LocationRequired"),
        (path.clone(), Some(json!({"location": "x", "tags": {"a": 1}})), 400, "InvalidRequestContent"),
        (identity_path("-bad"), Some(json!({"location": "x"})), 400, "InvalidResourceName"),
        (identity_path("ab"), Some(json!({"location": "x"})), 400, "InvalidResourceName"),
        (path.replace(RG, "rg-missing"), Some(json!({"location": "x"})), 404, "ResourceGroupNotFound"),
        (
            path.replace(SUB, "00000000-0000-0000-0000-00000000dead"),
            Some(json!({"location": "x"})),
            404,
            "SubscriptionNotFound",
        ),
        (
            format!("/subscriptions/{SUB}/resourceGroups/{RG}?api-version=2099-01-01"),
            Some(json!({"location": "x"})),
            400,
            "InvalidApiVersionParameter",
        ),
    ];
    for (p, body, status, code) in cases {
        let r = arm.call("PUT", &p, body).await?;
        assert_eq!((r.status, r.code()), (status, code), "PUT {p}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Malformed JSON.
    let r = arm
        .client
        .put(format!("{}{}", arm.base, path))
        .bearer_auth(&arm.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "InvalidRequestContent");
    // Unsupported verb.
    assert_eq!(arm.call("POST", &path, Some(json!({}))).await?.status, 405);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_groups_and_listing_with_paging() -> TestResult {
    let mut cfg = config();
    cfg.behaviour.page_size = 2;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-new?api-version=2021-04-01");
    let r = arm.put(&rg, json!({"location": "northeurope"})).await?;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (201, Some(format!("/subscriptions/{SUB}/resourceGroups/rg-new").as_str()))
    );
    assert_eq!(arm.put(&rg, json!({"location": "northeurope", "tags": {"x": "y"}})).await?.status, 200);
    assert_eq!(arm.get(&rg).await?.body["tags"]["x"], "y");
    assert_eq!(arm.get(&rg.replace("rg-new", "rg-none")).await?.code(), "ResourceGroupNotFound");

    for i in 0..5 {
        let p = identity_path(&format!("id-{i}"));
        assert_eq!(arm.put(&p, json!({"location": "westeurope"})).await?.status, 201);
    }
    let other = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-new/providers/Microsoft.ManagedIdentity/userAssignedIdentities/elsewhere?api-version={MSI_API}"
    );
    assert_eq!(arm.put(&other, json!({"location": "northeurope"})).await?.status, 201);

    async fn collect(
        arm: &Arm,
        first: &str,
    ) -> Result<(Vec<String>, usize), Box<dyn std::error::Error + Send + Sync>> {
        let mut names = Vec::new();
        let mut pages = 0;
        let mut next = Some(first.to_owned());
        while let Some(url) = next {
            let r = arm.get(&url).await?;
            assert_eq!(r.status, 200, "{}", r.body);
            pages += 1;
            names.extend(
                r.body["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["name"].as_str().map(str::to_owned)),
            );
            next = r.body["nextLink"].as_str().map(str::to_owned);
        }
        Ok((names, pages))
    }
    let (by_rg, pages) = collect(&arm, &format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={MSI_API}")).await?;
    assert_eq!((by_rg.len(), pages), (5, 3));
    let (by_sub, _) = collect(&arm, &format!("/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={MSI_API}")).await?;
    assert_eq!(by_sub.len(), 6);
    assert!(by_sub.contains(&"elsewhere".to_owned()));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_credentials_rules() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    assert_eq!(arm.put(&identity_path("wl-1"), json!({"location": "westeurope"})).await?.status, 201);
    let issuer = "https://kube.example/issuer";
    let r = arm.put(&fic_path("wl-1", "fic-0"), fic_body(issuer, "system:serviceaccount:shop:sa-0")).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["id"],
        format!(
            "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/wl-1/federatedIdentityCredentials/fic-0"
        )
    );
    assert_eq!(
        arm.put(&fic_path("wl-1", "fic-0"), fic_body(issuer, "system:serviceaccount:shop:sa-0"))
            .await?
            .status,
        200
    );

    // Duplicate issuer+subject under another name: 400 with the documented message.
    let dup =
        arm.put(&fic_path("wl-1", "fic-dup"), fic_body(issuer, "system:serviceaccount:shop:sa-0")).await?;
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body["error"]["message"],
        "Issuer and subject combination already exists for this Managed Identity."
    );
    // A trailing slash makes another issuer (exact match).
    let slash = arm
        .put(
            &fic_path("wl-1", "fic-slash"),
            fic_body(&format!("{issuer}/"), "system:serviceaccount:shop:sa-0"),
        )
        .await?;
    assert_eq!(slash.status, 201, "{}", slash.body);

    let bad = [
        (
            fic_path("wl-1", "_x"),
            fic_body(issuer, "s"),
            "Federated Identity Credential name '_x' is invalid.",
        ),
        (
            fic_path("wl-1", "fic-a"),
            json!({"properties": {}}),
            "Federated Identity Credential from HTTP body has empty properties",
        ),
        (
            fic_path("wl-1", "fic-a"),
            json!({"properties": {"issuer": issuer, "subject": "s", "audiences": ["a", "b"]}}),
            "Federated identity credentials must have exactly one audience.",
        ),
    ];
    for (p, body, message) in bad {
        let r = arm.put(&p, body).await?;
        assert_eq!((r.status, r.body["error"]["message"].as_str()), (400, Some(message)));
    }
    let orphan = arm.put(&fic_path("no-such-identity", "fic-a"), fic_body(issuer, "s")).await?;
    assert_eq!(
        (orphan.status, orphan.body["error"]["message"].as_str()),
        (404, Some("The parent user-assigned identity doesn't exist."))
    );

    // The 20-FIC limit: 18 more fit, the 21st does not.
    for i in 1..19 {
        assert_eq!(
            arm.put(
                &fic_path("wl-1", &format!("fic-{i}")),
                fic_body(issuer, &format!("system:serviceaccount:shop:sa-{i}"))
            )
            .await?
            .status,
            201
        );
    }
    let full =
        arm.put(&fic_path("wl-1", "fic-21"), fic_body(issuer, "system:serviceaccount:shop:sa-21")).await?;
    assert_eq!(full.status, 400, "{}", full.body);
    assert!(full.body["error"]["message"].as_str().unwrap_or("").contains("maximum number of 20"));
    // Updating one of the 20 still works.
    assert_eq!(
        arm.put(&fic_path("wl-1", "fic-1"), fic_body(issuer, "system:serviceaccount:shop:sa-1b"))
            .await?
            .status,
        200
    );

    // Paging with $top.
    let list = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/wl-1/federatedIdentityCredentials?api-version={MSI_API}&$top=7"
    );
    let mut next = Some(list);
    let mut seen = 0;
    let mut pages = 0;
    while let Some(url) = next {
        let r = arm.get(&url).await?;
        assert_eq!(r.status, 200);
        seen += r.body["value"].as_array().map(Vec::len).unwrap_or(0);
        pages += 1;
        next = r.body["nextLink"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.contains("$skipToken=") && n.contains("$top=7"), "{n}");
        }
    }
    assert_eq!((seen, pages), (20, 3));
    let top0 = arm.get(&format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/wl-1/federatedIdentityCredentials?api-version={MSI_API}&$top=0")).await?;
    assert_eq!(top0.status, 400);

    // Deleting a FIC, then the identity, takes its FICs with it.
    assert_eq!(arm.delete(&fic_path("wl-1", "fic-2")).await?.status, 200);
    assert_eq!(arm.delete(&fic_path("wl-1", "fic-2")).await?.status, 204);
    assert_eq!(arm.delete(&identity_path("wl-1")).await?.status, 200);
    assert_eq!(arm.put(&identity_path("wl-1"), json!({"location": "westeurope"})).await?.status, 201);
    assert_eq!(arm.get(&fic_path("wl-1", "fic-0")).await?.status, 404);
    assert_eq!(h.state_typed().identity_count(), 1);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fic_writes_on_one_identity_conflict() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    for id in ["one", "two"] {
        assert_eq!(arm.put(&identity_path(id), json!({"location": "westeurope"})).await?.status, 201);
    }
    // Hold the next FIC write in flight; a second write on the same identity conflicts, one on another
    // identity does not.
    h.hold(HoldSpec {
        operation: Some("FederatedIdentityCredentials_CreateOrUpdate".into()),
        ..Default::default()
    });
    let arm2 = arm.clone();
    let first = tokio::spawn(async move {
        arm2.put(&fic_path("one", "fic-a"), fic_body("https://i.example", "s-a"))
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    });
    assert!(h.wait_for_held(1, Duration::from_secs(10)).await);
    let second = arm.put(&fic_path("one", "fic-b"), fic_body("https://i.example", "s-b")).await?;
    assert_eq!(
        (second.status, second.code()),
        (409, "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity")
    );
    assert!(second.body["error"]["message"].as_str().unwrap_or("").contains(
        "/resourcegroups/rg-identities/providers/microsoft.managedidentity/userassignedidentities/one"
    ));
    let del = arm.delete(&fic_path("one", "fic-b")).await?;
    assert_eq!(del.status, 409, "deletes conflict too");
    assert_eq!(arm.put(&fic_path("two", "fic-a"), fic_body("https://i.example", "s-a")).await?.status, 201);
    assert_eq!(h.release_all_holds(), 1);
    assert_eq!(first.await?, Ok(201));
    // Once the first write is done, the next one goes through.
    assert_eq!(arm.put(&fic_path("one", "fic-b"), fic_body("https://i.example", "s-b")).await?.status, 201);

    // With a FIC write duration, two concurrent writes overlap by themselves.
    let mut b = h.behaviour();
    b.fic_write_duration_ms = 300;
    h.set_behaviour(b);
    let (pc, pd) = (fic_path("one", "fic-c"), fic_path("one", "fic-d"));
    let (a, c) = tokio::join!(
        arm.put(&pc, fic_body("https://i.example", "s-c")),
        arm.put(&pd, fic_body("https://i.example", "s-d"))
    );
    let mut statuses = [a?.status, c?.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_assignments_semantics() -> TestResult {
    let mut cfg = config();
    cfg.behaviour.principal_replication_delay_ms = 30_000;
    cfg.behaviour.page_size = 2;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let created = arm.put(&identity_path("wl-1"), json!({"location": "westeurope"})).await?;
    assert_eq!(created.status, 201, "{}", created.body);
    let principal = created.body["properties"]["principalId"].as_str().unwrap_or_default().to_owned();
    let kv = vault_scope(KV_RBAC);
    let name = "6c2b7a1e-0a55-4d7c-9c1a-000000000001";

    // A fresh principal without principalType: PrincipalNotFound (replication delay).
    let body = |role: &str, typed: bool| {
        let mut p = json!({"properties": {"roleDefinitionId": role_id(role), "principalId": principal}});
        if typed {
            p["properties"]["principalType"] = json!("ServicePrincipal");
        }
        p
    };
    let r = arm.put(&ra_path(&kv, name), body(SECRETS_USER, false)).await?;
    assert_eq!((r.status, r.code()), (400, "PrincipalNotFound"), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap_or("").contains("replication delay"));
    // With principalType it works at once.
    let r = arm.put(&ra_path(&kv, name), body(SECRETS_USER, true)).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["id"], format!("{kv}/providers/Microsoft.Authorization/roleAssignments/{name}"));
    assert_eq!(r.body["properties"]["roleDefinitionId"], role_id(SECRETS_USER));
    assert_eq!(r.body["properties"]["scope"], kv);
    // After the delay, principalType is not needed.
    h.advance_clock(Duration::from_secs(31));
    let name2 = "6c2b7a1e-0a55-4d7c-9c1a-000000000002";
    let r = arm.put(&ra_path(&kv, name2), body(CERT_USER, false)).await?;
    assert_eq!((r.status, r.body["properties"]["principalType"].as_str()), (201, Some("ServicePrincipal")));

    // Identical re-PUT: 200. Same trio under another name: 409 RoleAssignmentExists.
    assert_eq!(arm.put(&ra_path(&kv, name), body(SECRETS_USER, true)).await?.status, 200);
    let dup =
        arm.put(&ra_path(&kv, "6c2b7a1e-0a55-4d7c-9c1a-000000000003"), body(SECRETS_USER, true)).await?;
    assert_eq!((dup.status, dup.code()), (409, "RoleAssignmentExists"));
    assert!(
        dup.body["error"]["message"].as_str().unwrap_or("").ends_with(&format!("{}.", name.replace('-', "")))
    );
    // Changing role (or scope) under the same name: 400 RoleAssignmentUpdateNotPermitted.
    let upd = arm.put(&ra_path(&kv, name), body(OWNER, true)).await?;
    assert_eq!((upd.status, upd.code()), (400, "RoleAssignmentUpdateNotPermitted"));
    let moved = arm.put(&ra_path(&vault_scope(KV_POLICIES), name), body(SECRETS_USER, true)).await?;
    assert_eq!(moved.code(), "RoleAssignmentUpdateNotPermitted");
    // Bad inputs.
    assert_eq!(
        arm.put(&ra_path(&kv, "not-a-guid"), body(SECRETS_USER, true)).await?.code(),
        "InvalidRoleAssignmentId"
    );
    assert_eq!(
        arm.put(
            &ra_path(&kv, "6c2b7a1e-0a55-4d7c-9c1a-000000000009"),
            body("00000000-0000-0000-0000-000000000bad", true)
        )
        .await?
        .code(),
        "RoleDefinitionDoesNotExist"
    );
    let rg_missing =
        format!("/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.KeyVault/vaults/x");
    assert_eq!(
        arm.put(&ra_path(&rg_missing, "6c2b7a1e-0a55-4d7c-9c1a-000000000009"), body(SECRETS_USER, true))
            .await?
            .code(),
        "ResourceGroupNotFound"
    );

    // Another principal's assignment at subscription scope, and the filters.
    let other = "33333333-3333-3333-3333-333333333333";
    let sub_scope = format!("/subscriptions/{SUB}");
    let r = arm.put(&ra_path(&sub_scope, "6c2b7a1e-0a55-4d7c-9c1a-000000000004"), json!({"properties": {"roleDefinitionId": role_id("acdd72a7-3385-48ef-bd42-f606fba81ae7"), "principalId": other, "principalType": "User"}})).await?;
    assert_eq!(r.status, 201);
    async fn names(
        arm: &Arm,
        scope: &str,
        filter: Option<&str>,
    ) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        let mut url =
            format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ_API}");
        if let Some(f) = filter {
            url.push_str(&format!(
                "&$filter={}",
                url::form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
            ));
        }
        let mut out = Vec::new();
        let mut next = Some(url);
        while let Some(u) = next {
            let r = arm.get(&u).await?;
            assert_eq!(r.status, 200, "{}", r.body);
            out.extend(
                r.body["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["name"].as_str().map(str::to_owned)),
            );
            next = r.body["nextLink"].as_str().map(str::to_owned);
        }
        out.sort();
        Ok(out)
    }
    let n = |i: u8| format!("6c2b7a1e-0a55-4d7c-9c1a-00000000000{i}");
    // The caller's own Owner assignment on the subscription is above every scope here.
    let owner = APP_OWNER_ASSIGNMENT.to_owned();
    // No filter at the vault: at, above and below → all four.
    assert_eq!(names(&arm, &kv, None).await?, vec![owner.clone(), n(1), n(2), n(4)]);
    // atScope() at the vault: at or above.
    assert_eq!(names(&arm, &kv, Some("atScope()")).await?, vec![owner.clone(), n(1), n(2), n(4)]);
    // atScope() at the subscription: the vault's are below, so only the subscription's.
    assert_eq!(names(&arm, &sub_scope, Some("atScope()")).await?, vec![owner, n(4)]);
    assert_eq!(
        names(&arm, &sub_scope, Some(&format!("principalId eq '{principal}'"))).await?,
        vec![n(1), n(2)]
    );
    assert_eq!(names(&arm, &sub_scope, Some(&format!("assignedTo('{other}')"))).await?, vec![n(4)]);
    assert_eq!(
        names(&arm, &kv, Some(&format!("atScope() and assignedTo('{principal}')"))).await?,
        vec![n(1), n(2)]
    );
    let bad_filter = arm
        .get(&format!(
            "{kv}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ_API}&$filter=foo"
        ))
        .await?;
    assert_eq!(bad_filter.status, 400);

    // GET, DELETE by scope+name (200 with body, then 204), by id, and 404.
    assert_eq!(arm.get(&ra_path(&kv, name)).await?.body["name"], name);
    let del = arm.delete(&ra_path(&kv, name)).await?;
    assert_eq!((del.status, del.body["name"].as_str()), (200, Some(name)));
    assert_eq!(arm.delete(&ra_path(&kv, name)).await?.status, 204);
    let gone = arm.get(&ra_path(&kv, name)).await?;
    assert_eq!((gone.status, gone.code()), (404, "RoleAssignmentNotFound"));
    // By id with the leading slash doubled, as SDK path templates `/{roleAssignmentId}` send it.
    let by_id = format!("/{}", ra_path(&kv, &n(2)));
    assert_eq!(arm.get(&by_id).await?.status, 200);
    assert_eq!(arm.delete(&by_id).await?.status, 200);

    // Deleting an identity leaves its role assignments behind, as in Azure.
    let r = arm.put(&ra_path(&kv, &n(5)), body(SECRETS_USER, true)).await?;
    assert_eq!(r.status, 201);
    assert_eq!(arm.delete(&identity_path("wl-1")).await?.status, 200);
    assert_eq!(arm.get(&ra_path(&kv, &n(5))).await?.status, 200);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_definitions_by_name_and_id() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let kv = vault_scope(KV_RBAC);
    let expected = [
        ("Key Vault Administrator", "00482a5a-887f-4fb3-b363-3b7fe8e74483"),
        ("Key Vault Certificates Officer", "a4417e6f-fecd-4de8-b567-7b0420556985"),
        ("Key Vault Certificate User", "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"),
        ("Key Vault Crypto Officer", "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"),
        ("Key Vault Crypto User", "12338af0-0e69-4776-bea7-57ae8d297424"),
        ("Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2"),
        ("Key Vault Secrets Officer", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"),
        ("Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"),
        ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
        ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
        ("User Access Administrator", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"),
        ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    ];
    for (role, guid) in expected {
        let filter: String =
            url::form_urlencoded::byte_serialize(format!("roleName eq '{role}'").as_bytes()).collect();
        let r = arm.get(&format!("{kv}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTHZ_API}&$filter={filter}")).await?;
        assert_eq!(r.status, 200);
        let values = r.body["value"].as_array().cloned().unwrap_or_default();
        assert_eq!(values.len(), 1, "{role}: {}", r.body);
        assert_eq!(values[0]["name"], guid);
        assert_eq!(values[0]["id"], role_id(guid));
        assert_eq!(values[0]["properties"]["type"], "BuiltInRole");
        let by_id = arm.get(&format!("{}?api-version={AUTHZ_API}", role_id(guid))).await?;
        assert_eq!((by_id.status, by_id.body["properties"]["roleName"].as_str()), (200, Some(role)));
        let tenant_form = arm
            .get(&format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version={AUTHZ_API}"
            ))
            .await?;
        assert_eq!(
            tenant_form.body["id"],
            format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        );
    }
    let none = arm.get(&format!("{kv}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTHZ_API}&$filter=roleName%20eq%20'Nope'")).await?;
    assert_eq!(none.body["value"], json!([]));
    let missing = arm
        .get(&format!("{}?api-version={AUTHZ_API}", role_id("00000000-0000-0000-0000-000000000bad")))
        .await?;
    assert_eq!((missing.status, missing.code()), (404, "RoleDefinitionDoesNotExist"));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn key_vault_reads_and_access_policies() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let api = "api-version=2023-07-01";
    let rbac = arm.get(&format!("{}?{api}", vault_scope(KV_RBAC))).await?;
    assert_eq!(rbac.status, 200);
    assert_eq!(rbac.body["properties"]["enableRbacAuthorization"], true);
    assert_eq!(rbac.body["properties"]["vaultUri"], format!("https://{KV_RBAC}.vault.azure.net/"));
    let pol = vault_scope(KV_POLICIES);
    assert_eq!(arm.get(&format!("{pol}?{api}")).await?.body["properties"]["enableRbacAuthorization"], false);
    assert_eq!(arm.get(&format!("{}?{api}", vault_scope("kv-none"))).await?.code(), "ResourceNotFound");

    let oid = "44444444-4444-4444-4444-444444444444";
    let policy = |secrets: &[&str]| json!({"properties": {"accessPolicies": [{"tenantId": h.tenant_id(), "objectId": oid, "permissions": {"secrets": secrets}}]}});
    let add = arm.put(&format!("{pol}/accessPolicies/add?{api}"), policy(&["get"])).await?;
    assert_eq!(add.status, 200, "{}", add.body);
    assert_eq!(add.body["type"], "Microsoft.KeyVault/vaults/accessPolicies");
    arm.put(&format!("{pol}/accessPolicies/add?{api}"), policy(&["list"])).await?;
    let v = arm.get(&format!("{pol}?{api}")).await?;
    assert_eq!(v.body["properties"]["accessPolicies"][0]["permissions"]["secrets"], json!(["get", "list"]));
    arm.put(&format!("{pol}/accessPolicies/replace?{api}"), policy(&["set"])).await?;
    assert_eq!(
        arm.get(&format!("{pol}?{api}")).await?.body["properties"]["accessPolicies"][0]["permissions"]["secrets"],
        json!(["set"])
    );
    arm.put(&format!("{pol}/accessPolicies/remove?{api}"), policy(&["set"])).await?;
    assert_eq!(arm.get(&format!("{pol}?{api}")).await?.body["properties"]["accessPolicies"], json!([]));
    assert_eq!(arm.put(&format!("{pol}/accessPolicies/merge?{api}"), policy(&["get"])).await?.status, 400);
    assert_eq!(
        arm.put(&format!("{pol}/accessPolicies/add?{api}"), json!({"properties": {}})).await?.code(),
        "InvalidRequestContent"
    );
    h.shutdown().await?;
    Ok(())
}
