"""Azure's Python SDKs (azure-mgmt-msi, azure-mgmt-authorization, azure-identity), unchanged,
against the simulator over HTTPS with its CA."""

import json
import subprocess
import urllib.request
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from conftest import APP_OID, KV_RG, RG, SUB, sim_binary

SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def msi(sim):
    return ManagedServiceIdentityClient(sim.credential(), SUB, **sim.mgmt_kwargs())


def authz(sim):
    return AuthorizationManagementClient(sim.credential(), SUB, **sim.mgmt_kwargs())


def admin(sim, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{sim.http}/_sim/{path}", data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def test_help_works():
    out = subprocess.run([sim_binary(), "--help"], capture_output=True, text=True, check=True)
    assert "--state-dir" in out.stdout


def test_identities_and_federated_credentials(sim):
    client = msi(sim)
    identity = client.user_assigned_identities.create_or_update(RG, "py-identity", {"location": "westeurope", "tags": {"team": "shop"}})
    assert uuid.UUID(identity.client_id) and uuid.UUID(identity.principal_id)
    assert identity.tenant_id == sim.tenant
    assert identity.id == f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/py-identity"
    assert client.user_assigned_identities.get(RG, "py-identity").client_id == identity.client_id
    assert [i.name for i in client.user_assigned_identities.list_by_resource_group(RG)] == ["py-identity"]
    assert "py-identity" in [i.name for i in client.user_assigned_identities.list_by_subscription()]

    for i in range(5):
        client.federated_identity_credentials.create_or_update(
            RG, "py-identity", f"fic-{i}",
            {"issuer": "https://kube.example/issuer", "subject": f"system:serviceaccount:shop:sa-{i}", "audiences": ["api://AzureADTokenExchange"]},
        )
    # Paging with $top follows the simulator's nextLink.
    names = [f.name for f in client.federated_identity_credentials.list(RG, "py-identity", top=2)]
    assert sorted(names) == [f"fic-{i}" for i in range(5)]

    with pytest.raises(HttpResponseError) as dup:
        client.federated_identity_credentials.create_or_update(
            RG, "py-identity", "fic-dup",
            {"issuer": "https://kube.example/issuer", "subject": "system:serviceaccount:shop:sa-0", "audiences": ["api://AzureADTokenExchange"]},
        )
    assert dup.value.status_code == 400
    assert "Issuer and subject combination already exists" in str(dup.value)

    client.federated_identity_credentials.delete(RG, "py-identity", "fic-0")
    client.user_assigned_identities.delete(RG, "py-identity")
    with pytest.raises(ResourceNotFoundError):
        client.user_assigned_identities.get(RG, "py-identity")
    with pytest.raises(ResourceNotFoundError) as rg_missing:
        client.user_assigned_identities.create_or_update("rg-missing", "py-identity", {"location": "westeurope"})
    assert rg_missing.value.error.code == "ResourceGroupNotFound"


def test_role_assignments_and_definitions(sim):
    client = authz(sim)
    scope = f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-rbac"
    roles = list(client.role_definitions.list(scope, filter="roleName eq 'Key Vault Secrets User'"))
    assert [r.name for r in roles] == [SECRETS_USER]
    role_id = roles[0].id
    assert role_id == f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"

    principal = "88888888-8888-8888-8888-888888888888"
    name = "9a8b7c6d-5e4f-4a3b-8c2d-000000000001"
    params = {"role_definition_id": role_id, "principal_id": principal, "principal_type": "ServicePrincipal"}
    created = client.role_assignments.create(scope, name, params)
    assert created.name == name and created.scope == scope
    with pytest.raises(ResourceExistsError) as dup:
        client.role_assignments.create(scope, "9a8b7c6d-5e4f-4a3b-8c2d-000000000002", params)
    assert dup.value.error.code == "RoleAssignmentExists"
    with pytest.raises(HttpResponseError) as upd:
        client.role_assignments.create(scope, name, {**params, "role_definition_id": role_id.replace(SECRETS_USER, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635")})
    assert upd.value.error.code == "RoleAssignmentUpdateNotPermitted"

    found = list(client.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal}'"))
    assert [a.name for a in found] == [name]
    assert client.role_assignments.get_by_id(created.id).name == name
    deleted = client.role_assignments.delete(scope, name)
    assert deleted.name == name
    assert client.role_assignments.delete(scope, name) is None


def test_faults_and_counters_through_the_admin_api(sim):
    client = msi(sim)
    admin(sim, "PUT", "faults", [{"operation": "UserAssignedIdentities_Get", "kind": "error", "status": 503, "times": 1}])
    with pytest.raises(HttpResponseError) as err:
        client.user_assigned_identities.get(RG, "whatever")
    assert err.value.status_code == 503
    with pytest.raises(ResourceNotFoundError):
        client.user_assigned_identities.get(RG, "whatever")
    counters = admin(sim, "GET", "counters")
    assert counters["UserAssignedIdentities_Get"]["503"] == 1
    assert counters["UserAssignedIdentities_Get"]["404"] >= 1
    state = admin(sim, "GET", "state")
    assert SUB in state["subscriptions"]
    assert any(a["objectId"] == APP_OID for a in state["apps"].values())
