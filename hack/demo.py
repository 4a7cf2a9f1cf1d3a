#!/usr/bin/env python3
"""The small JSON jobs of `make demo` (hack/demo.sh), one subcommand each, standard library only.

usage: hack/demo.py endpoint FILE KEY           a field of the simulator's endpoint.json
       hack/demo.py free-port                   a free TCP port on 127.0.0.1
       hack/demo.py config-patch KEY=VALUE...   a merge patch setting a ConfigMap's data
       hack/demo.py state                       the simulator's /_sim/state (stdin): identities, FICs, role assignments
       hack/demo.py token                       an Entra token response (stdin), the token cut short
       hack/demo.py workload CLIENT TENANT FILE the input of tests/workload/workload.py for the payments secret
"""
import json
import socket
import sys


def endpoint(path, key):
    with open(path) as f:
        print(json.load(f)[key])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])


def config_patch(*assignments):
    print(json.dumps({"data": dict(a.split("=", 1) for a in assignments)}))


def state():
    s = json.load(sys.stdin)
    for sub in s["subscriptions"].values():
        for group in sub["resourceGroups"].values():
            for i in group["identities"].values():
                print("identity", i["name"], "clientId", i["clientId"], "tags", i["tags"])
                for f in i["federatedIdentityCredentials"].values():
                    print("  fic", f["name"], f["issuer"], f["subject"])
    for r in s["roleAssignments"].values():
        print("roleAssignment", r["name"], r["roleDefinitionGuid"], r["principalType"], r["scope"])


def token():
    r = json.load(sys.stdin)
    print(
        "token_type", r.get("token_type"),
        "expires_in", r.get("expires_in"),
        "access_token", (r.get("access_token") or "")[:24] + "...",
        r.get("error", ""),
    )


def workload(client_id, tenant_id, token_file):
    print(json.dumps(dict(
        vault_url="https://kv-shop.vault.azure.net", secret="payments-db-password",
        client_id=client_id, tenant_id=tenant_id, token_file=token_file,
    )))


COMMANDS = {
    "endpoint": endpoint, "free-port": free_port, "config-patch": config_patch,
    "state": state, "token": token, "workload": workload,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
