#!/usr/bin/env python3
"""Ties cargo-cyclonedx's SBOM of the idbind binary to the binary it describes, and keeps it reproducible.

cargo-cyclonedx (run with SOURCE_DATE_EPOCH, so its timestamp is the commit's and it writes no random
serial number) names the workspace by its absolute path in the root component's bom-ref; that path differs
between checkouts, so it becomes `.`. The root component gets the binary's SHA-256 and the git revision, so
the SBOM names the exact file in the image, and the BOM a serial number derived from its content (the same
BOM, the same serial; a different BOM, a different one).

usage: sbom.py --in BOM.json --out OUT.json --workspace DIR --binary PATH --revision REV"""
import argparse
import hashlib
import json
import uuid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="src", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workspace", required=True, help="the folder cargo-cyclonedx ran in")
    parser.add_argument("--binary", required=True)
    parser.add_argument("--revision", required=True)
    args = parser.parse_args()

    with open(args.src) as f:
        text = f.read()
    bom = json.loads(text.replace(f"file://{args.workspace.rstrip('/')}", "file://."))
    if args.workspace in json.dumps(bom):
        raise SystemExit(f"sbom.py: the SBOM still names {args.workspace}")
    with open(args.binary, "rb") as f:
        binary_sha256 = hashlib.sha256(f.read()).hexdigest()
    metadata = bom.setdefault("metadata", {})
    component = metadata.setdefault("component", {})
    component["hashes"] = [{"alg": "SHA-256", "content": binary_sha256}]
    properties = [p for p in metadata.get("properties", []) if p.get("name") != "idbind:git:revision"]
    properties.append({"name": "idbind:git:revision", "value": args.revision})
    metadata["properties"] = properties
    bom.pop("serialNumber", None)
    content = json.dumps(bom, sort_keys=True, separators=(",", ":")).encode()
    bom["serialNumber"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, hashlib.sha256(content).hexdigest())}"
    with open(args.out, "w") as f:
        json.dump(bom, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
