"""Starts `$IDBIND_SIM_BIN` (the `idbind-sim` binary) as a subprocess, seeded for the tests, and hands out clients."""

import json
import os
import subprocess
import tempfile

import pytest

from issuer import Issuer

SUB = "00000000-0000-0000-0000-0000000000b1"
RG = "rg-identities"
KV_RG = "rg-shop"
APP_ID = "11111111-1111-1111-1111-111111111111"
APP_SECRET = "operator-secret"
APP_OID = "22222222-2222-2222-2222-222222222222"
# Workloads that read Key Vault: the first gets roles in the tests that need them, the second never does.
WORKLOAD_ID = "33333333-3333-3333-3333-333333333333"
WORKLOAD_SECRET = "workload-secret"
WORKLOAD_OID = "44444444-4444-4444-4444-444444444444"
STRANGER_ID = "55555555-5555-5555-5555-555555555555"
STRANGER_SECRET = "stranger-secret"
STRANGER_OID = "66666666-6666-6666-6666-666666666666"
VAULT = "kv-rbac"
# Resources a binding scopes roles to (test_resources.py).
STORAGE = "stshoporders"
SERVICE_BUS = "sb-shop"
SEEDED_SECRET = ("db-password", "s3cr3t=with=equals")


class Sim:
    def __init__(self, endpoint, proc, state_dir):
        self.https = endpoint["https"]
        self.http = endpoint["http"]
        self.tenant = endpoint["tenantId"]
        self.ca_file = endpoint["caFile"]
        self.admin = endpoint["admin"]
        # The CONNECT proxy: with HTTPS_PROXY pointing here (and the CA trusted) clients reach the simulator
        # as login.microsoftonline.com, management.azure.com and <vault>.vault.azure.net.
        self.proxy = endpoint["proxy"]
        self.proc = proc
        self.state_dir = state_dir

    def credential(self, client_id=APP_ID, secret=APP_SECRET):
        from azure.identity import ClientSecretCredential

        # Instance discovery would ask login.microsoftonline.com about our host; a custom
        # authority host is declared known by turning it off, as for Azure Stack.
        return ClientSecretCredential(
            self.tenant,
            client_id,
            secret,
            authority=self.https,
            disable_instance_discovery=True,
            connection_verify=self.ca_file,
        )

    def mgmt_kwargs(self):
        return dict(
            base_url=self.https,
            credential_scopes=["https://management.azure.com/.default"],
            connection_verify=self.ca_file,
            retry_total=0,
        )


def sim_binary():
    """The simulator binary named by IDBIND_SIM_BIN (e.g. target/debug/idbind-sim); fails the test if unset."""
    binary = os.environ.get("IDBIND_SIM_BIN")
    if not binary:
        pytest.fail("IDBIND_SIM_BIN is not set: it must name the idbind-sim binary (e.g. target/debug/idbind-sim)")
    return binary


@pytest.fixture(scope="session")
def issuer():
    """The cluster's service-account token issuer, which the simulator trusts for workload identity."""
    iss = Issuer()
    yield iss
    iss.close()


@pytest.fixture(scope="session")
def sim(issuer):
    binary = sim_binary()
    state_dir = tempfile.mkdtemp(prefix="idbind-sim-")
    proc = subprocess.Popen(
        [
            binary,
            "--https-addr", "127.0.0.1:0",
            "--http-addr", "127.0.0.1:0",
            "--state-dir", state_dir,
            "--resource-group", f"{SUB}/{RG}@westeurope",
            "--proxy-addr", "127.0.0.1:0",
            "--vault", f"{SUB}/{KV_RG}/{VAULT}@rbac",
            "--resource", f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.Storage/storageAccounts/{STORAGE}",
            "--resource", f"/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.ServiceBus/namespaces/{SERVICE_BUS}",
            "--secret", f"{VAULT}/{SEEDED_SECRET[0]}={SEEDED_SECRET[1]}",
            "--app", f"{APP_ID}:{APP_SECRET}:{APP_OID}",
            "--app", f"{WORKLOAD_ID}:{WORKLOAD_SECRET}:{WORKLOAD_OID}",
            "--app", f"{STRANGER_ID}:{STRANGER_SECRET}:{STRANGER_OID}",
            # The tests act as the subscription's owner; the workload and the stranger have no ARM role.
            "--role-assignment", f"{APP_OID}=Owner@/subscriptions/{SUB}",
            "--trust-ca", issuer.ca_file,
            "--no-throttle",
            "--principal-replication-delay-ms", "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    # The simulator prints one JSON line with its URLs once it is ready.
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the simulator exited before it was ready (status {proc.wait()})")
    endpoint = json.loads(line)
    with open(os.path.join(state_dir, "endpoint.json")) as f:
        assert json.load(f)["https"] == endpoint["https"]
    yield Sim(endpoint, proc, state_dir)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
