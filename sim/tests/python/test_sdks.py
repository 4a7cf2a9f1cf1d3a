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


RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


def delegation_condition(roles):
    """Microsoft's "constrain roles and principal types" delegation condition, for service principals."""
    listed = ", ".join(roles)
    parts = []
    for action, source in (("write", "Request"), ("delete", "Resource")):
        parts.append(
            f"((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR "
            f"(@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{listed}}} "
            f"AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    return " AND ".join(parts)


def test_arm_authorizes_from_role_assignments_and_their_conditions(sim):
    from conftest import STRANGER_ID, STRANGER_SECRET

    # A principal without any role is refused, in ARM's words, through the SDK.
    stranger = ManagedServiceIdentityClient(sim.credential(STRANGER_ID, STRANGER_SECRET), SUB, **sim.mgmt_kwargs())
    with pytest.raises(HttpResponseError) as denied:
        stranger.user_assigned_identities.create_or_update(RG, "not-mine", {"location": "westeurope"})
    assert (denied.value.status_code, denied.value.error.code) == (403, "AuthorizationFailed")

    # A delegate: Role Based Access Control Administrator on the vault, limited to Key Vault Secrets User for
    # service principals by Microsoft's delegation condition.
    delegate_id, delegate_secret, delegate_oid = "77777777-7777-7777-7777-777777777777", "delegate", "77777777-0000-4000-8000-000000000077"
    vault = f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-rbac"
    admin(sim, "POST", "seed", {
        "apps": [{"clientId": delegate_id, "clientSecret": delegate_secret, "objectId": delegate_oid}],
        "roleAssignments": [{"principalId": delegate_oid, "role": "Role Based Access Control Administrator", "scope": vault,
                             "condition": delegation_condition([SECRETS_USER]), "conditionVersion": "2.0"}],
    })
    delegate = AuthorizationManagementClient(sim.credential(delegate_id, delegate_secret), SUB, **sim.mgmt_kwargs())
    role = lambda guid: f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    principal = "88888888-8888-8888-8888-0000000000aa"
    allowed = {"role_definition_id": role(SECRETS_USER), "principal_id": principal, "principal_type": "ServicePrincipal"}
    name = "9a8b7c6d-5e4f-4a3b-8c2d-0000000000a1"
    assert delegate.role_assignments.create(vault, name, allowed).name == name
    for refused in ({**allowed, "role_definition_id": role(OWNER)}, {**allowed, "principal_type": "User"}):
        with pytest.raises(HttpResponseError) as no:
            delegate.role_assignments.create(vault, "9a8b7c6d-5e4f-4a3b-8c2d-0000000000a2", refused)
        assert (no.value.status_code, no.value.error.code) == (403, "AuthorizationFailed")
        assert "ABAC condition not fulfilled" in no.value.error.message
    # Not above its scope, and deleting what the condition allows works.
    with pytest.raises(HttpResponseError) as above:
        delegate.role_assignments.create(f"/subscriptions/{SUB}", "9a8b7c6d-5e4f-4a3b-8c2d-0000000000a3", allowed)
    assert above.value.error.code == "AuthorizationFailed"
    assert delegate.role_assignments.delete(vault, name).name == name

    # A condition the simulator cannot evaluate is refused, not stored.
    with pytest.raises(HttpResponseError) as bad:
        authz(sim).role_assignments.create(vault, "9a8b7c6d-5e4f-4a3b-8c2d-0000000000a4", {
            **allowed, "condition": "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEquals 'x'",
            "condition_version": "2.0"})
    assert (bad.value.status_code, bad.value.error.code) == (400, "InvalidCondition")
    assert bad.value.error.message.startswith("The given role assignment condition is invalid.")


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
