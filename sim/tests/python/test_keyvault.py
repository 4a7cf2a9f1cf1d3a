"""Azure's Key Vault and identity SDKs (azure-keyvault-secrets, azure-identity, azure-mgmt-authorization),
unchanged, against the simulator under Azure's own host names: the clients are given nothing but the
environment a workload would have (HTTPS_PROXY = the simulator's CONNECT proxy, REQUESTS_CA_BUNDLE = its
CA, AZURE_AUTHORITY_HOST = https://login.microsoftonline.com) and talk to https://kv-rbac.vault.azure.net,
https://management.azure.com and https://login.microsoftonline.com."""

import json
import urllib.request
import uuid

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from conftest import (
    APP_ID, APP_SECRET, KV_RG, SEEDED_SECRET, STRANGER_ID, STRANGER_OID, STRANGER_SECRET, SUB, VAULT,
    WORKLOAD_ID, WORKLOAD_OID, WORKLOAD_SECRET,
)

VAULT_URL = f"https://{VAULT}.vault.azure.net"
VAULT_SCOPE = f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/{VAULT}"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


@pytest.fixture
def azure(sim, monkeypatch):
    """The process environment of a workload whose Azure traffic the simulator plays."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", sim.proxy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com")
    return sim


def admin(sim, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{sim.http}/_sim/{path}", data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def counter(sim, operation, status):
    return admin(sim, "GET", "counters").get(operation, {}).get(str(status), 0)


def workload(sim):
    return ClientSecretCredential(sim.tenant, WORKLOAD_ID, WORKLOAD_SECRET)


@pytest.fixture
def grant(azure):
    """Assigns roles as the operator app does, through azure-mgmt-authorization at management.azure.com;
    removes them again after the test."""
    client = AuthorizationManagementClient(ClientSecretCredential(azure.tenant, APP_ID, APP_SECRET), SUB)
    made = []

    def assign(role, principal=WORKLOAD_OID, scope=VAULT_SCOPE):
        name = str(uuid.uuid4())
        params = {
            "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "principal_id": principal,
            "principal_type": "ServicePrincipal",
        }
        made.append((scope, client.role_assignments.create(scope, name, params).name))

    yield assign
    for scope, name in made:
        client.role_assignments.delete(scope, name)


def forbidden_code(err):
    return err.response.json()["error"]["innererror"]["code"]


def test_without_a_role_the_sdk_raises_403_forbidden_by_rbac(azure):
    client = SecretClient(VAULT_URL, ClientSecretCredential(azure.tenant, STRANGER_ID, STRANGER_SECRET))
    with pytest.raises(HttpResponseError) as denied:
        client.get_secret(SEEDED_SECRET[0])
    assert denied.value.status_code == 403
    assert forbidden_code(denied.value) == "ForbiddenByRbac"
    assert denied.value.error.code == "Forbidden"
    assert "Caller is not authorized to perform action on resource" in denied.value.message
    assert f"oid={STRANGER_OID}" in denied.value.message
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in denied.value.message
    with pytest.raises(HttpResponseError) as listing:
        list(client.list_properties_of_secrets())
    assert listing.value.status_code == 403 and forbidden_code(listing.value) == "ForbiddenByRbac"


def test_a_secret_is_read_once_key_vault_secrets_user_is_granted(azure, grant):
    client = SecretClient(VAULT_URL, workload(azure))
    with pytest.raises(HttpResponseError) as before:
        client.get_secret(SEEDED_SECRET[0])
    assert before.value.status_code == 403 and forbidden_code(before.value) == "ForbiddenByRbac"

    grant(SECRETS_USER)
    secret = client.get_secret(SEEDED_SECRET[0])
    assert secret.value == SEEDED_SECRET[1]  # seeded with --secret
    assert secret.name == SEEDED_SECRET[0]
    assert secret.id.startswith(f"{VAULT_URL}/secrets/{SEEDED_SECRET[0]}/")
    assert len(secret.properties.version) == 32
    assert secret.properties.enabled is True
    assert secret.properties.vault_url == VAULT_URL
    # A given version, and one that does not exist.
    assert client.get_secret(SEEDED_SECRET[0], secret.properties.version).value == SEEDED_SECRET[1]
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("no-such-secret")
    assert missing.value.status_code == 404 and missing.value.error.code == "SecretNotFound"
    # Secrets User reads, it does not write.
    with pytest.raises(HttpResponseError) as write:
        client.set_secret(SEEDED_SECRET[0], "overwritten")
    assert write.value.status_code == 403 and forbidden_code(write.value) == "ForbiddenByRbac"
    assert counter(azure, "Secrets_Get", 200) >= 2
    assert counter(azure, "Secrets_Get", 401) >= 1  # the challenge, answered once per client


def test_list_secret_properties_follows_next_links(azure, grant):
    # More than one page (Key Vault pages by 25), written through the admin API.
    names = [f"listed-{i:02d}" for i in range(30)]
    for n in names:
        admin(azure, "PUT", f"vaults/{VAULT}/secrets/{n}", {"value": n, "contentType": "text/plain", "tags": {"n": n}})
    admin(azure, "PUT", f"vaults/{VAULT}/secrets/listed-00", {"value": "second version"})
    grant(SECRETS_USER)
    client = SecretClient(VAULT_URL, workload(azure))
    pages = list(client.list_properties_of_secrets().by_page())
    assert len(pages) >= 2
    listed = {p.name: p for page in pages for p in page}
    assert set(names) | {SEEDED_SECRET[0]} <= set(listed)
    assert listed["listed-07"].content_type == "text/plain"
    assert listed["listed-07"].tags == {"n": "listed-07"}
    assert listed["listed-07"].version is None  # list items name the secret, not a version
    versions = list(client.list_properties_of_secret_versions("listed-00"))
    assert len(versions) == 2 and all(len(v.version) == 32 for v in versions)
    assert client.get_secret("listed-00").value == "second version"


def test_set_secret_goes_through_the_challenge_with_its_body(azure, grant):
    grant(SECRETS_OFFICER)
    client = SecretClient(VAULT_URL, workload(azure))
    # The SDK's first request is the PUT without its body; after the 401 it sends it again with the body.
    written = client.set_secret("written-by-sdk", "value from python", content_type="text/plain")
    assert written.value == "value from python"
    again = client.set_secret("written-by-sdk", "newer")
    assert again.properties.version != written.properties.version
    assert client.get_secret("written-by-sdk").value == "newer"
    assert client.get_secret("written-by-sdk", written.properties.version).value == "value from python"


def test_a_token_request_with_msals_oidc_scopes_is_accepted(azure, grant):
    # MSAL Go sends these with every app-only request; MSAL Python does not, so the request is made by hand,
    # to the real host name through the proxy.
    resp = requests.post(
        f"https://login.microsoftonline.com/{azure.tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": WORKLOAD_ID,
            "client_secret": WORKLOAD_SECRET,
            "scope": "https://vault.azure.net/.default openid offline_access profile",
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    grant(SECRETS_USER)
    secret = requests.get(
        f"{VAULT_URL}/secrets/{SEEDED_SECRET[0]}?api-version=7.5",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=30,
    )
    assert secret.status_code == 200, secret.text
    assert secret.json()["value"] == SEEDED_SECRET[1]
    # Two resources are still one too many.
    two = requests.post(
        f"https://login.microsoftonline.com/{azure.tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": WORKLOAD_ID,
            "client_secret": WORKLOAD_SECRET,
            "scope": "https://vault.azure.net/.default https://management.azure.com/.default openid",
        },
        timeout=30,
    )
    assert two.status_code == 400 and two.json()["error_codes"] == [70011]


def test_instance_discovery_works_without_disabling_it_through_the_proxy(azure):
    # Asked about the public cloud's own authority.
    resp = requests.get(
        "https://login.microsoftonline.com/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"https://login.microsoftonline.com/{azure.tenant}/oauth2/v2.0/authorize",
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["tenant_discovery_endpoint"] == (
        f"https://login.microsoftonline.com/{azure.tenant}/v2.0/.well-known/openid-configuration"
    )
    # MSAL validates an authority host it does not know (here the simulator's direct listener) by asking
    # login.microsoftonline.com; through the proxy that is the simulator, which knows its own listener, so
    # disable_instance_discovery is not needed.
    before = counter(azure, "InstanceDiscovery", 200)
    credential = ClientSecretCredential(azure.tenant, APP_ID, APP_SECRET, authority=azure.https)
    token = credential.get_token("https://management.azure.com/.default")
    assert token.token and token.expires_on > 0
    assert counter(azure, "InstanceDiscovery", 200) == before + 1
    # The default authority (login.microsoftonline.com) is one MSAL knows: no discovery, a token all the same.
    assert workload(azure).get_token("https://vault.azure.net/.default").token


def test_workload_identity_credential_reads_the_secret_with_a_federated_token(azure, issuer, grant, monkeypatch, tmp_path):
    # What idbind arranges, done here with the management SDKs at management.azure.com: a user-assigned
    # identity, a FIC trusting the cluster's issuer for one service account, Key Vault Secrets User for the
    # identity's principal.
    operator = ClientSecretCredential(azure.tenant, APP_ID, APP_SECRET)
    msi = ManagedServiceIdentityClient(operator, SUB)
    subject = "system:serviceaccount:shop:orders"
    identity = msi.user_assigned_identities.create_or_update(KV_RG, "py-orders", {"location": "westeurope"})
    try:
        msi.federated_identity_credentials.create_or_update(
            KV_RG, "py-orders", "kubernetes",
            {"issuer": issuer.url, "subject": subject, "audiences": ["api://AzureADTokenExchange"]},
        )
        grant(SECRETS_USER, principal=identity.principal_id)
        # What the azure-workload-identity webhook injects, and the token kubelet projects.
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(issuer.token(subject))
        monkeypatch.setenv("AZURE_CLIENT_ID", identity.client_id)
        monkeypatch.setenv("AZURE_TENANT_ID", azure.tenant)
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
        client = SecretClient(VAULT_URL, WorkloadIdentityCredential())
        assert client.get_secret(SEEDED_SECRET[0]).value == SEEDED_SECRET[1]

        # A service account the FIC does not name gets no token: AADSTS70021.
        other = tmp_path / "other-token"
        other.write_text(issuer.token("system:serviceaccount:shop:intruder"))
        intruder = SecretClient(VAULT_URL, WorkloadIdentityCredential(token_file_path=str(other)))
        with pytest.raises(ClientAuthenticationError) as refused:
            intruder.get_secret(SEEDED_SECRET[0])
        assert "AADSTS70021" in str(refused.value)
    finally:
        msi.user_assigned_identities.delete(KV_RG, "py-orders")
