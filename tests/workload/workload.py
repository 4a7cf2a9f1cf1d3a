"""A workload pod's code, as the azure-workload-identity webhook sets its environment up, using Azure's
official SDKs unchanged: `WorkloadIdentityCredential` (from `azure-identity`) signs in with the projected
ServiceAccount token, and `SecretClient` (from `azure-keyvault-secrets`) reads a secret.

One process plays many pods: it reads one JSON request per line on stdin,
    {"vault_url": ..., "secret": ..., "client_id": ..., "tenant_id": ..., "token_file": ...}
makes one attempt (no retry of its own) and answers one JSON line on stdout:
    {"ok": true, "value": "..."} or {"ok": false, "status": 403, "error": "..."}.

The environment points the SDKs at the simulator the way they are pointed at Azure: AZURE_AUTHORITY_HOST
(https://login.microsoftonline.com), HTTPS_PROXY (the simulator's proxy, which plays Azure's hosts) and
REQUESTS_CA_BUNDLE (the simulator's CA).
"""

import json
import sys

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient


def one_line(error):
    """The SDK's whole message (Key Vault's code, message and inner error) on one line."""
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip())


def read(request):
    credential = WorkloadIdentityCredential(
        tenant_id=request["tenant_id"],
        client_id=request["client_id"],
        token_file_path=request["token_file"],
        retry_total=0,
    )
    # No retry of the SDK's own either: the read must succeed at the first try.
    client = SecretClient(request["vault_url"], credential, retry_total=0)
    try:
        return {"ok": True, "value": client.get_secret(request["secret"]).value}
    except ClientAuthenticationError as e:
        return {"ok": False, "status": 401, "error": one_line(e)}
    except HttpResponseError as e:
        return {"ok": False, "status": e.status_code, "error": one_line(e)}
    finally:
        client.close()
        credential.close()


def main():
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(read(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
