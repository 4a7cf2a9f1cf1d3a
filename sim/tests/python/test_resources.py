"""Resources to scope role assignments on, through Azure's own Python SDKs, unchanged:
azure-mgmt-resource (Providers_Get, Resources_GetById), azure-mgmt-resource-subscriptions
(Subscriptions_Get) and azure-mgmt-authorization (roles at a Storage account and a Service Bus namespace)."""

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from conftest import KV_RG, SERVICE_BUS, STORAGE, SUB

BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def resource_id(provider_type, name):
    return f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/{provider_type}/{name}"


def newest_stable(resources, namespace, resource_type):
    provider = resources.providers.get(namespace)
    assert provider.registration_state == "Registered"
    t = next(t for t in provider.resource_types if t.resource_type.lower() == resource_type.lower())
    return next(v for v in t.api_versions if "preview" not in v)


def test_pick_a_version_from_providers_get_then_get_by_id(sim):
    resources = ResourceManagementClient(sim.credential(), SUB, **sim.mgmt_kwargs())
    for namespace, resource_type, rid in [
        ("Microsoft.Storage", "storageAccounts", resource_id("Microsoft.Storage/storageAccounts", STORAGE)),
        ("Microsoft.ServiceBus", "namespaces", resource_id("Microsoft.ServiceBus/namespaces", SERVICE_BUS)),
    ]:
        version = newest_stable(resources, namespace, resource_type)
        r = resources.resources.get_by_id(rid, api_version=version)
        assert r.id == rid
        assert r.properties["provisioningState"] == "Succeeded"
    account = resources.resources.get_by_id(resource_id("Microsoft.Storage/storageAccounts", STORAGE), api_version="2025-06-01")
    assert account.kind == "StorageV2" and account.sku.name == "Standard_LRS"
    assert account.properties["primaryEndpoints"]["blob"] == f"https://{STORAGE}.blob.core.windows.net/"
    with pytest.raises(ResourceNotFoundError) as missing:
        resources.resources.get_by_id(resource_id("Microsoft.Storage/storageAccounts", "stnone"), api_version="2025-06-01")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as unknown:
        resources.providers.get("Microsoft.Nope")
    assert unknown.value.error.code == "InvalidResourceNamespace"


def test_subscriptions_get(sim):
    subscriptions = SubscriptionClient(sim.credential(), **sim.mgmt_kwargs())
    s = subscriptions.subscriptions.get(SUB)
    assert (s.subscription_id, s.tenant_id, s.state) == (SUB, sim.tenant, "Enabled")
    with pytest.raises(ResourceNotFoundError) as gone:
        subscriptions.subscriptions.get("00000000-0000-0000-0000-00000000dead")
    assert gone.value.error.code == "SubscriptionNotFound"


def test_role_assignment_at_a_storage_account(sim):
    client = AuthorizationManagementClient(sim.credential(), SUB, **sim.mgmt_kwargs())
    scope = resource_id("Microsoft.Storage/storageAccounts", STORAGE)
    roles = list(client.role_definitions.list(scope, filter="roleName eq 'storage blob data reader'"))
    assert [r.name for r in roles] == [BLOB_READER]
    assert roles[0].permissions[0].data_actions == ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]
    principal = "99999999-9999-9999-9999-999999999999"
    name = "9a8b7c6d-5e4f-4a3b-8c2d-000000000016"
    params = {"role_definition_id": roles[0].id, "principal_id": principal, "principal_type": "ServicePrincipal"}
    created = client.role_assignments.create(scope, name, params)
    assert created.scope == scope
    found = list(client.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal}'"))
    assert [a.name for a in found] == [name]
    assert client.role_assignments.delete(scope, name).name == name
    with pytest.raises(ResourceNotFoundError) as missing:
        client.role_assignments.create(resource_id("Microsoft.Storage/storageAccounts", "stnone"), name, params)
    assert missing.value.error.code == "ResourceNotFound"
