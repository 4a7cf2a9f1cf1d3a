//! Resources beyond identities and vaults, as a binding's "roles on any Azure resource" sees them: GET of
//! seeded Storage accounts, Service Bus and Event Hubs namespaces, container registries and App Configuration
//! stores; Providers_Get to pick an api-version; Subscriptions_Get; role assignments scoped to those
//! resources; role definitions found by display name.

mod common;

use common::*;
use idbind_sim::{Seed, SimConfig, Simulator};
use serde_json::{Value, json};

const STORAGE: &str = "stshoporders";
const SERVICE_BUS: &str = "sb-shop";
const EVENT_HUB: &str = "evh-shop";
const REGISTRY: &str = "ShopRegistry";
const APP_CONFIG: &str = "appcs-shop";

const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const SB_SENDER: &str = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39";

fn id(provider_type: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/{provider_type}/{name}")
}

fn storage_id() -> String {
    id("Microsoft.Storage/storageAccounts", STORAGE)
}

fn container_id(name: &str) -> String {
    format!("{}/blobServices/default/containers/{name}", storage_id())
}

fn service_bus_id() -> String {
    id("Microsoft.ServiceBus/namespaces", SERVICE_BUS)
}

fn resources_config() -> Result<SimConfig, String> {
    let mut cfg = config();
    cfg.seed.add_resource_id(&storage_id())?;
    cfg.seed.add_resource_id(&container_id("orders"))?;
    cfg.seed.add_resource_id(&service_bus_id())?;
    cfg.seed.add_resource_id(&id("Microsoft.EventHub/namespaces", EVENT_HUB))?;
    cfg.seed
        .add_resource_id(&format!("{}@eastus", id("Microsoft.ContainerRegistry/registries", REGISTRY)))?;
    cfg.seed.add_resource_id(&id("Microsoft.AppConfiguration/configurationStores", APP_CONFIG))?;
    Ok(cfg)
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_resources_answer_get_in_their_providers_shapes() -> TestResult {
    let h = Simulator::start(resources_config()?).await?;
    let arm = Arm::new(&h).await?;

    let st = arm.get(&format!("{}?api-version=2025-06-01", storage_id())).await?;
    assert_eq!(st.status, 200, "{}", st.body);
    assert_eq!(st.body["id"], storage_id());
    assert_eq!(
        (str_of(&st.body, "/name"), str_of(&st.body, "/type"), str_of(&st.body, "/location")),
        (STORAGE, "Microsoft.Storage/storageAccounts", "westeurope")
    );
    assert_eq!(st.body["kind"], "StorageV2");
    assert_eq!(st.body["sku"], json!({"name": "Standard_LRS", "tier": "Standard"}));
    assert_eq!(st.body["tags"], json!({}));
    assert_eq!(st.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        st.body["properties"]["primaryEndpoints"]["blob"],
        format!("https://{STORAGE}.blob.core.windows.net/")
    );
    assert_eq!(
        st.body["properties"]["primaryEndpoints"]["queue"],
        format!("https://{STORAGE}.queue.core.windows.net/")
    );

    // Names and fixed segments in any case find the same resource, which keeps its own name.
    let upper = storage_id().to_ascii_uppercase().replace("MICROSOFT.STORAGE", "microsoft.storage");
    let st2 = arm.get(&format!("{upper}?api-version=2023-01-01")).await?;
    assert_eq!((st2.status, st2.body["name"].clone()), (200, json!(STORAGE)));

    let sb = arm.get(&format!("{}?api-version=2024-01-01", service_bus_id())).await?;
    assert_eq!(sb.status, 200, "{}", sb.body);
    assert_eq!(sb.body["type"], "Microsoft.ServiceBus/Namespaces");
    assert_eq!(sb.body["sku"], json!({"name": "Standard", "tier": "Standard"}));
    assert_eq!(
        sb.body["properties"]["serviceBusEndpoint"],
        format!("https://{SERVICE_BUS}.servicebus.windows.net:443/")
    );
    assert_eq!(sb.body["properties"]["metricId"], format!("{SUB}:{SERVICE_BUS}"));

    let eh = arm
        .get(&format!("{}?api-version=2024-01-01", id("Microsoft.EventHub/namespaces", EVENT_HUB)))
        .await?;
    assert_eq!((eh.status, str_of(&eh.body, "/type")), (200, "Microsoft.EventHub/Namespaces"));
    assert_eq!(eh.body["sku"]["capacity"], 1);
    assert_eq!(
        eh.body["properties"]["serviceBusEndpoint"],
        format!("https://{EVENT_HUB}.servicebus.windows.net:443/")
    );

    let cr = arm
        .get(&format!("{}?api-version=2025-04-01", id("Microsoft.ContainerRegistry/registries", REGISTRY)))
        .await?;
    assert_eq!(cr.status, 200, "{}", cr.body);
    assert_eq!(
        (
            str_of(&cr.body, "/name"),
            str_of(&cr.body, "/location"),
            str_of(&cr.body, "/properties/loginServer")
        ),
        (REGISTRY, "eastus", "shopregistry.azurecr.io")
    );

    let ac = arm
        .get(&format!(
            "{}?api-version=2024-06-01",
            id("Microsoft.AppConfiguration/configurationStores", APP_CONFIG)
        ))
        .await?;
    assert_eq!(ac.status, 200, "{}", ac.body);
    assert_eq!(ac.body["type"], "Microsoft.AppConfiguration/configurationStores");
    assert_eq!(ac.body["properties"]["endpoint"], format!("https://{APP_CONFIG}.azconfig.io"));
    assert!(ac.body["systemData"]["createdAt"].is_string());

    // A missing resource: ARM's ResourceNotFound wording.
    let missing = arm
        .get(&format!("{}?api-version=2025-06-01", id("Microsoft.Storage/storageAccounts", "nope")))
        .await?;
    assert_eq!((missing.status, missing.code()), (404, "ResourceNotFound"));
    assert_eq!(
        missing.body["error"]["message"],
        format!(
            "The Resource 'Microsoft.Storage/storageAccounts/nope' under resource group '{KV_RG}' was not \
             found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )
    );
    let no_rg = storage_id().replace(KV_RG, "rg-gone");
    let r = arm.get(&format!("{no_rg}?api-version=2025-06-01")).await?;
    assert_eq!((r.status, r.code()), (404, "ResourceGroupNotFound"));
    let no_sub = storage_id().replace(SUB, "00000000-0000-0000-0000-00000000dead");
    let r = arm.get(&format!("{no_sub}?api-version=2025-06-01")).await?;
    assert_eq!((r.status, r.code()), (404, "SubscriptionNotFound"));

    // An api-version the provider does not have: NoRegisteredProviderFound, newest first.
    let bad = arm.get(&format!("{}?api-version=2099-01-01", storage_id())).await?;
    assert_eq!((bad.status, bad.code()), (400, "NoRegisteredProviderFound"));
    let msg = str_of(&bad.body, "/error/message");
    assert!(
        msg.starts_with(
            "No registered resource provider found for location 'westeurope' and API version '2099-01-01' \
             for type 'storageAccounts'. The supported api-versions are '2026-09-01, 2026-06-01, "
        ),
        "{msg}"
    );
    let bad = arm.get(&format!("{}?api-version=2025-06-01", service_bus_id())).await?;
    assert_eq!((bad.status, bad.code()), (400, "NoRegisteredProviderFound"));
    assert!(str_of(&bad.body, "/error/message").contains("for type 'namespaces'"));

    // A type the namespace does not have; a child the simulator does not model; a verb it does not serve.
    let r = arm
        .get(&format!(
            "/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.Storage/bogusAccounts/x?api-version=2025-06-01"
        ))
        .await?;
    assert_eq!((r.status, r.code()), (404, "InvalidResourceType"));
    let r = arm.get(&format!("{}/blobServices/default?api-version=2025-06-01", storage_id())).await?;
    assert_eq!(r.status, 404);
    let r = arm
        .put(&format!("{}?api-version=2025-06-01", storage_id()), json!({"location": "westeurope"}))
        .await?;
    assert_eq!((r.status, r.code()), (405, "MethodNotAllowed"));

    let counters = h.counters();
    assert_eq!(counters.get("StorageAccounts_GetProperties", "200"), 2);
    assert_eq!(counters.get("Registries_Get", "200"), 1);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_containers_of_seeded_accounts_answer_get() -> TestResult {
    let h = Simulator::start(resources_config()?).await?;
    let arm = Arm::new(&h).await?;
    let c = arm.get(&format!("{}?api-version=2025-06-01", container_id("ORDERS"))).await?;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["id"], container_id("orders"));
    assert_eq!(c.body["name"], "orders");
    assert_eq!(c.body["type"], "Microsoft.Storage/storageAccounts/blobServices/containers");
    assert!(c.body["etag"].as_str().is_some_and(|e| e.starts_with("\"0x")));
    assert_eq!(c.body["properties"]["publicAccess"], "None");
    assert!(c.body.get("location").is_none(), "a proxy resource has no location");

    let missing = arm.get(&format!("{}?api-version=2025-06-01", container_id("returns"))).await?;
    assert_eq!((missing.status, missing.code()), (404, "ContainerNotFound"));
    let no_account = container_id("orders").replace(STORAGE, "stgone");
    let r = arm.get(&format!("{no_account}?api-version=2025-06-01")).await?;
    assert_eq!((r.status, r.code()), (404, "ResourceNotFound"));
    assert!(str_of(&r.body, "/error/message").contains("'Microsoft.Storage/storageAccounts/stgone'"));
    // 2017-10-01 predates blob containers in the management API.
    let old = arm.get(&format!("{}?api-version=2017-10-01", container_id("orders"))).await?;
    assert_eq!((old.status, old.code()), (400, "NoRegisteredProviderFound"));
    assert!(
        str_of(&old.body, "/error/message").contains("for type 'storageAccounts/blobServices/containers'")
    );

    let p =
        arm.get(&format!("/subscriptions/{SUB}/providers/Microsoft.Storage?api-version=2021-04-01")).await?;
    let version =
        newest_stable(&p.body, "storageAccounts/blobServices/containers").ok_or("containers listed")?;
    assert_eq!(arm.get(&format!("{}?api-version={version}", container_id("orders"))).await?.status, 200);
    assert_eq!(h.counters().get("BlobContainers_Get", "200"), 2);
    h.shutdown().await?;
    Ok(())
}

/// The newest stable api-version a Providers_Get answer lists for `resource_type`.
fn newest_stable(provider: &Value, resource_type: &str) -> Option<String> {
    let types = provider["resourceTypes"].as_array()?;
    let t = types
        .iter()
        .find(|t| t["resourceType"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(resource_type)))?;
    let versions = t["apiVersions"].as_array()?;
    versions.iter().filter_map(Value::as_str).find(|v| !v.contains("preview")).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_get_lists_what_the_simulator_serves() -> TestResult {
    let h = Simulator::start(resources_config()?).await?;
    let arm = Arm::new(&h).await?;

    let p =
        arm.get(&format!("/subscriptions/{SUB}/providers/microsoft.storage?api-version=2021-04-01")).await?;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["id"], format!("/subscriptions/{SUB}/providers/Microsoft.Storage"));
    assert_eq!(p.body["namespace"], "Microsoft.Storage");
    assert_eq!(p.body["registrationState"], "Registered");
    let sa = &p.body["resourceTypes"][0];
    assert_eq!(sa["resourceType"], "storageAccounts");
    assert!(sa["locations"].as_array().is_some_and(|l| l.iter().any(|x| x == "West Europe")));
    let versions: Vec<&str> = sa["apiVersions"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(versions.first(), Some(&"2026-09-01"));
    assert!(versions.windows(2).all(|w| w[0] > w[1]), "newest first: {versions:?}");
    assert!(versions.contains(&"2020-08-01-preview"), "previews are listed, as ARM lists them");

    // What a client does before GETting a resource of a type: the newest stable version, which we serve.
    for (namespace, resource_type, resource) in [
        ("Microsoft.Storage", "storageAccounts", storage_id()),
        ("Microsoft.ServiceBus", "namespaces", service_bus_id()),
        ("Microsoft.EventHub", "namespaces", id("Microsoft.EventHub/namespaces", EVENT_HUB)),
        ("Microsoft.ContainerRegistry", "registries", id("Microsoft.ContainerRegistry/registries", REGISTRY)),
        (
            "Microsoft.AppConfiguration",
            "configurationStores",
            id("Microsoft.AppConfiguration/configurationStores", APP_CONFIG),
        ),
        ("Microsoft.KeyVault", "vaults", vault_scope(KV_RBAC)),
    ] {
        let p =
            arm.get(&format!("/subscriptions/{SUB}/providers/{namespace}?api-version=2021-04-01")).await?;
        assert_eq!(p.status, 200, "{namespace}: {}", p.body);
        let version =
            newest_stable(&p.body, resource_type).ok_or(format!("{namespace} lists {resource_type}"))?;
        let r = arm.get(&format!("{resource}?api-version={version}")).await?;
        assert_eq!(r.status, 200, "GET {resource} with {version}: {}", r.body);
    }
    let msi = arm
        .get(&format!("/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity?api-version=2021-04-01"))
        .await?;
    assert_eq!(newest_stable(&msi.body, "userAssignedIdentities").as_deref(), Some(MSI_API));
    let authz = arm
        .get(&format!("/subscriptions/{SUB}/providers/Microsoft.Authorization?api-version=2021-04-01"))
        .await?;
    assert_eq!(newest_stable(&authz.body, "roleAssignments").as_deref(), Some(AUTHZ_API));

    // At the tenant: no registration state.
    let t = arm.get("/providers/Microsoft.ServiceBus?api-version=2021-04-01").await?;
    assert_eq!((t.status, t.body["id"].clone()), (200, json!("/providers/Microsoft.ServiceBus")));
    assert!(t.body.get("registrationState").is_none());

    let unknown =
        arm.get(&format!("/subscriptions/{SUB}/providers/Microsoft.Nope?api-version=2021-04-01")).await?;
    assert_eq!((unknown.status, unknown.code()), (404, "InvalidResourceNamespace"));
    assert_eq!(unknown.body["error"]["message"], "The resource namespace 'Microsoft.Nope' is invalid.");
    let no_sub = arm
        .get("/subscriptions/00000000-0000-0000-0000-00000000dead/providers/Microsoft.Storage?api-version=2021-04-01")
        .await?;
    assert_eq!((no_sub.status, no_sub.code()), (404, "SubscriptionNotFound"));
    let bad =
        arm.get(&format!("/subscriptions/{SUB}/providers/Microsoft.Storage?api-version=2099-01-01")).await?;
    assert_eq!((bad.status, bad.code()), (400, "InvalidApiVersionParameter"));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_get_answers_like_arm() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let s = arm.get(&format!("/subscriptions/{SUB}?api-version=2022-12-01")).await?;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["id"], format!("/subscriptions/{SUB}"));
    assert_eq!(s.body["subscriptionId"], SUB);
    assert_eq!(s.body["tenantId"], h.tenant_id());
    assert_eq!(s.body["state"], "Enabled");
    assert_eq!(s.body["displayName"], format!("Subscription {SUB}"));
    assert!(s.body["subscriptionPolicies"]["quotaId"].is_string());
    let gone = arm.get("/subscriptions/00000000-0000-0000-0000-00000000dead?api-version=2022-12-01").await?;
    assert_eq!((gone.status, gone.code()), (404, "SubscriptionNotFound"));
    let bad = arm.get(&format!("/subscriptions/{SUB}?api-version=2099-01-01")).await?;
    assert_eq!((bad.status, bad.code()), (400, "InvalidApiVersionParameter"));
    let none = arm.get(&format!("/subscriptions/{SUB}")).await?;
    assert_eq!((none.status, none.code()), (400, "MissingApiVersionParameter"));
    h.shutdown().await?;
    Ok(())
}

fn assignment(role_guid: &str, principal: &str) -> Value {
    json!({"properties": {
        "roleDefinitionId": role_id(role_guid),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }})
}

async fn list_for(
    arm: &Arm,
    scope: &str,
    principal: &str,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let r = arm
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ_API}&$filter=principalId%20eq%20'{principal}'"
        ))
        .await?;
    if r.status != 200 {
        return Err(format!("list at {scope}: {} {}", r.status, r.body).into());
    }
    Ok(r.body["value"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_assignments_on_a_storage_account_and_a_service_bus_namespace() -> TestResult {
    let h = Simulator::start(resources_config()?).await?;
    let arm = Arm::new(&h).await?;
    for (scope, role, name) in [
        (storage_id(), BLOB_READER, "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0001"),
        (service_bus_id(), SB_SENDER, "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0002"),
    ] {
        let path = ra_path(&scope, name);
        let created = arm.put(&path, assignment(role, WORKLOAD_OID)).await?;
        assert_eq!(created.status, 201, "{scope}: {}", created.body);
        assert_eq!(created.body["properties"]["scope"], scope);
        assert_eq!(
            created.body["id"],
            format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
        );
        assert_eq!(created.body["properties"]["roleDefinitionId"], role_id(role));

        let got = arm.get(&path).await?;
        assert_eq!((got.status, got.body["name"].clone()), (200, json!(name)));
        // principalId filter: at the resource, and from the group and subscription above it.
        for at in [scope.clone(), rg_scope(KV_RG), format!("/subscriptions/{SUB}")] {
            let listed = list_for(&arm, &at, WORKLOAD_OID).await?;
            assert!(listed.iter().any(|a| a["name"] == name), "{name} listed at {at}");
        }
        // Another principal's: only its Owner assignment on the subscription, above the scope.
        let apps: Vec<Value> =
            list_for(&arm, &scope, APP_OID).await?.iter().map(|a| a["name"].clone()).collect();
        assert_eq!(apps, [json!(APP_OWNER_ASSIGNMENT)]);

        let again = arm.put(&path, assignment(role, WORKLOAD_OID)).await?;
        assert_eq!(again.status, 200, "an identical re-PUT succeeds");
        assert_eq!(arm.delete(&path).await?.status, 200);
        assert_eq!(arm.delete(&path).await?.status, 204);
        assert!(list_for(&arm, &scope, WORKLOAD_OID).await?.is_empty());
    }

    // A scope below an existing account (a blob container) is accepted; one below a missing account, or a
    // missing resource itself, is the account's ResourceNotFound, as ARM answers it.
    let container = format!("{}/blobServices/default/containers/orders", storage_id());
    let r = arm
        .put(
            &ra_path(&container, "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0003"),
            assignment(BLOB_READER, WORKLOAD_OID),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let gone = id("Microsoft.Storage/storageAccounts", "stgone");
    for scope in [gone.clone(), format!("{gone}/blobServices/default/containers/orders")] {
        let r = arm
            .put(
                &ra_path(&scope, "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0004"),
                assignment(BLOB_READER, WORKLOAD_OID),
            )
            .await?;
        assert_eq!((r.status, r.code()), (404, "ResourceNotFound"), "{scope}: {}", r.body);
        assert_eq!(
            r.body["error"]["message"],
            format!(
                "The Resource 'Microsoft.Storage/storageAccounts/stgone' under resource group '{KV_RG}' was not \
                 found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            )
        );
    }
    let r = arm
        .put(
            &ra_path(&vault_scope("kv-none"), "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0005"),
            assignment(SECRETS_USER, WORKLOAD_OID),
        )
        .await?;
    assert_eq!((r.status, r.code()), (404, "ResourceNotFound"));
    let r = arm
        .put(
            &ra_path(&service_bus_id().replace(KV_RG, "rg-gone"), "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0006"),
            assignment(SB_SENDER, WORKLOAD_OID),
        )
        .await?;
    assert_eq!((r.status, r.code()), (404, "ResourceGroupNotFound"));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_definitions_are_found_by_display_name_in_any_case() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let by_name = |name: &str| {
        let filter: String =
            url::form_urlencoded::byte_serialize(format!("roleName eq '{name}'").as_bytes()).collect();
        format!(
            "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTHZ_API}&$filter={filter}"
        )
    };
    for name in ["Storage Blob Data Reader", "storage blob data reader", "STORAGE BLOB DATA READER"] {
        let r = arm.get(&by_name(name)).await?;
        assert_eq!(r.status, 200, "{}", r.body);
        let found = r.body["value"].as_array().cloned().unwrap_or_default();
        assert_eq!(found.len(), 1, "{name}: {}", r.body);
        let d = &found[0];
        assert_eq!(d["name"], BLOB_READER);
        assert_eq!(d["id"], role_id(BLOB_READER));
        assert_eq!(d["properties"]["roleName"], "Storage Blob Data Reader");
        assert_eq!(d["properties"]["type"], "BuiltInRole");
        assert_eq!(
            d["properties"]["permissions"][0]["dataActions"],
            json!(["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"])
        );
        assert_eq!(
            d["properties"]["permissions"][0]["actions"],
            json!([
                "Microsoft.Storage/storageAccounts/blobServices/containers/read",
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"
            ])
        );
    }
    // Every role the feature's catalogue names is there, with its real GUID.
    for (name, guid) in [
        ("Storage Blob Data Contributor", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),
        ("Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),
        ("Storage Queue Data Reader", "19e7f393-937e-4f77-808e-94535e297925"),
        ("Storage Queue Data Contributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"),
        ("Azure Service Bus Data Receiver", "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"),
        ("Azure Service Bus Data Sender", SB_SENDER),
        ("Azure Service Bus Data Owner", "090c5cfd-751d-490a-894a-3ce6f1109419"),
        ("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d"),
        ("AcrPush", "8311e382-0749-4cb8-b61a-304f252e45ec"),
        ("App Configuration Data Reader", "516239f1-63e1-4d78-a4de-a74fb236a071"),
        ("App Configuration Data Owner", "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b"),
        ("Azure Event Hubs Data Receiver", "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"),
        ("Azure Event Hubs Data Sender", "2b629674-e913-4c01-ae53-ef4638d8f975"),
        ("Role Based Access Control Administrator", "f58310d9-a9f6-439a-9e8d-f62e7b41a168"),
        ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    ] {
        let r = arm.get(&by_name(name)).await?;
        let names: Vec<Value> = r.body["value"]
            .as_array()
            .map(|v| v.iter().map(|d| d["name"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![json!(guid)], "{name}");
    }
    let acr = arm.get(&by_name("AcrPull")).await?;
    assert_eq!(
        acr.body["value"][0]["properties"]["permissions"][0],
        json!({"actions": ["Microsoft.ContainerRegistry/registries/pull/read"], "notActions": [], "dataActions": [], "notDataActions": []})
    );
    let nobody = arm.get(&by_name("Storage Blob Data Reader ")).await?;
    assert_eq!(nobody.body["value"], json!([]), "the name matches whole, not as a prefix");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_seeded_at_runtime_and_their_assignments_survive_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let persistent = || {
        let mut cfg = config();
        cfg.state_file = Some(dir.path().join("state.json"));
        cfg
    };
    let h = Simulator::start(persistent()).await?;
    let mut seed = Seed::default();
    seed.add_resource_id(&storage_id())?;
    h.seed(seed).await?;
    let arm = Arm::new(&h).await?;
    let path = ra_path(&storage_id(), "0b6f1a6e-6c51-4a8f-9d1e-5e0d3a1c0007");
    assert_eq!(arm.put(&path, assignment(BLOB_READER, WORKLOAD_OID)).await?.status, 201);
    h.shutdown().await?;

    // Restarted without that seed: the account and the assignment come from the state file.
    let h2 = Simulator::start(persistent()).await?;
    let arm2 = Arm::new(&h2).await?;
    assert_eq!(arm2.get(&format!("{}?api-version=2025-06-01", storage_id())).await?.status, 200);
    let got = arm2.get(&path).await?;
    assert_eq!((got.status, got.body["properties"]["scope"].clone()), (200, json!(storage_id())));
    h2.shutdown().await?;
    Ok(())
}
