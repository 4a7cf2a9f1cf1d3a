#!/usr/bin/env python3
"""The idbind image's root filesystem and its OCI layout, byte for byte reproducible.

Two steps, used by hack/image/build.sh (`make image`) and by the Dockerfile alike, so both ship the same
files:

  oci.py rootfs --binary target/release/idbind --out DIR
      DIR gets what the binary needs at run time and nothing else, as distroless/cc has it: the binary
      at /usr/local/bin/idbind; exactly the shared libraries `ldd` lists for it (glibc, libgcc_s, the
      dynamic loader), at the paths ldd gives; the CA bundle /etc/ssl/certs/ca-certificates.crt;
      /etc/passwd and /etc/group with root and nonroot (65532); /etc/nsswitch.conf (hosts: files dns,
      so a pod's /etc/hosts is read before DNS); the Debian copyright files of the packages those files
      come from, and their dpkg records in /var/lib/dpkg/status.d/ (where image scanners look for the
      glibc version, as in distroless). No shell, no package manager, no other program.

  oci.py layout --rootfs DIR --out LAYOUT --archive FILE --created EPOCH --label K=V... [--sbom FILE]
      LAYOUT becomes an OCI image layout (one gzip layer, the image config, the manifest, index.json
      tagged with org.opencontainers.image.version), FILE the same layout as a tar (an oci-archive:
      `skopeo copy oci-archive:FILE:TAG docker://...`). Prints the manifest digest.
      The image config is idbind's unless told otherwise, so another image can be laid out from any root
      filesystem (hack/node/images.sh does, for the node tests' pause and workload images):
        --tag T             the tag in index.json (default: the org.opencontainers.image.version label)
        --user U            default 65532:65532
        --entrypoint JSON   default ["/usr/local/bin/idbind"]
        --cmd JSON          default ["run"]
        --env JSON          default ["PATH=/usr/local/bin", "SSL_CERT_FILE=<the CA bundle>"]
        --expose JSON       default ["8080/tcp"]
      each JSON a list of strings; an empty list leaves the key out of the config.

Reproducible by construction: tar entries sorted by path, every entry owned by 0:0 with its mode
normalised (directories and executables 0755, other files 0644), every timestamp EPOCH (the commit's
time), USTAR headers with empty user and group names, gzip with mtime 0 and no file name, JSON with sorted
keys. The same inputs give the same digest; the inputs are the binary, the system's glibc, libgcc and CA
bundle (Debian's packages, so the same on every machine with the same package versions) and the labels.

The SBOM (--sbom) is attached as an OCI 1.1 referrer: a second manifest in index.json whose `subject` is
the image and whose one layer is the SBOM (artifactType application/vnd.cyclonedx+json), so registries and
tools that follow referrers (oras, `oras cp -r`) find it; the image's own digest does not depend on it."""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
CYCLONEDX = "application/vnd.cyclonedx+json"

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BINARY_PATH = "usr/local/bin/idbind"
NONROOT = 65532

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def die(message):
    print(f"oci.py: {message}", file=sys.stderr)
    sys.exit(1)


def shared_libraries(binary):
    """The files the dynamic loader maps for `binary`, as ldd names them (the interpreter included)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("linux-vdso") or not line:
            continue  # the kernel's, not a file
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if not m:
            die(f"ldd printed a line this script does not understand (a missing library?): {line!r}")
        libs.append(m.group(1))
    if not libs:
        die(f"ldd lists no library for {binary}: a static binary needs no libc; adapt this script")
    return sorted(set(libs))


def debian_package(path):
    """The Debian package that installed `path` (dpkg knows the merged-/usr spelling or the other)."""
    candidates = [path, os.path.realpath(path)]
    if path.startswith("/lib"):
        candidates.append("/usr" + path)
    for candidate in candidates:
        r = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            # "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
            return r.stdout.split(":")[0].strip()
    die(f"no Debian package owns {path}; this script expects Debian's glibc, libgcc and ca-certificates")


def dpkg_record(package):
    fields = "Package,Status,Source,Version,Architecture,Maintainer,Homepage,Description"
    fmt = "".join(f"{f}: ${{{f}}}\n" for f in fields.split(","))
    text = subprocess.run(
        ["dpkg-query", "-W", "-f", fmt, package], check=True, capture_output=True, text=True
    ).stdout
    # Drop fields a package does not have, and the long description's continuation lines are kept.
    return "".join(line + "\n" for line in text.splitlines() if not re.match(r"^[A-Za-z-]+: $", line))


def write(root, relative, data, mode):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def rootfs(args):
    binary = args.binary
    if not os.path.isfile(binary):
        die(f"no binary at {binary}")
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, mode=0o755)
    out = args.out

    with open(binary, "rb") as f:
        write(out, BINARY_PATH, f.read(), 0o755)
    packages = set()
    for lib in shared_libraries(binary):
        # The library's bytes at the path ldd gives (symlinks followed: the loader opens that path).
        with open(lib, "rb") as f:
            write(out, lib.lstrip("/"), f.read(), 0o755)
        packages.add(debian_package(lib))
    if not os.path.isfile(CA_BUNDLE):
        die(f"{CA_BUNDLE} is missing: apt-get install ca-certificates")
    with open(CA_BUNDLE, "rb") as f:
        write(out, CA_BUNDLE.lstrip("/"), f.read(), 0o644)
    packages.add("ca-certificates")
    write(out, "etc/passwd", PASSWD.encode(), 0o644)
    write(out, "etc/group", GROUP.encode(), 0o644)
    write(out, "etc/nsswitch.conf", NSSWITCH.encode(), 0o644)
    for package in sorted(packages):
        copyright_file = f"/usr/share/doc/{package}/copyright"
        if os.path.isfile(copyright_file):
            with open(copyright_file, "rb") as f:
                write(out, copyright_file.lstrip("/"), f.read(), 0o644)
        write(out, f"var/lib/dpkg/status.d/{package}", dpkg_record(package).encode(), 0o644)
    print(f"rootfs: {out} (Debian packages: {', '.join(sorted(packages))})", file=sys.stderr)


def tar_layer(root, epoch):
    """The root filesystem as an uncompressed tar, every header fixed but for name, type, size, mode."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            entries.append(os.path.relpath(full, root))
    # Sorted by path components, so a directory always comes before what it holds.
    entries.sort(key=lambda p: p.split(os.sep))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for relative in entries:
            full = os.path.join(root, relative)
            st = os.lstat(full)
            info = tarfile.TarInfo(relative)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                info.size = st.st_size
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                die(f"{relative}: only directories, files and symlinks belong in the image")
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # No file name and mtime 0 in the header: the bytes depend on the data (and zlib) alone.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Blobs:
    def __init__(self, layout):
        self.dir = os.path.join(layout, "blobs", "sha256")
        os.makedirs(self.dir, mode=0o755)

    def put(self, media_type, blob, **extra):
        digest = hashlib.sha256(blob).hexdigest()
        with open(os.path.join(self.dir, digest), "wb") as f:
            f.write(blob)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(blob), **extra}


def archive(layout, path, epoch):
    """The layout as a tar (an oci-archive), with the same fixed headers as the layer."""
    with open(path, "wb") as f:
        f.write(tar_layer(layout, epoch))


def json_list(text):
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise argparse.ArgumentTypeError(f"not a JSON list of strings: {text}")
    return value


def image_config(args, labels):
    """The config's `config`: idbind's by default, each part replaceable by its option."""
    env = args.env if args.env is not None else ["PATH=/usr/local/bin", f"SSL_CERT_FILE={CA_BUNDLE}"]
    entrypoint = args.entrypoint if args.entrypoint is not None else [f"/{BINARY_PATH}"]
    cmd = args.cmd if args.cmd is not None else ["run"]
    expose = args.expose if args.expose is not None else ["8080/tcp"]
    config = {
        "User": args.user,
        "Env": env,
        "Entrypoint": entrypoint,
        "Cmd": cmd,
        "ExposedPorts": {port: {} for port in expose},
        "WorkingDir": "/",
        "Labels": labels,
    }
    # An empty list means "none": the key is left out, as a Dockerfile without that instruction does.
    return {k: v for k, v in config.items() if v != [] and v != {}}


def layout(args):
    epoch = args.created
    labels = dict(kv.split("=", 1) for kv in args.label)
    tag = args.tag or labels.get("org.opencontainers.image.version")
    if not tag:
        die("--tag or --label org.opencontainers.image.version=... is required (it is the tag in index.json)")
    labels["org.opencontainers.image.created"] = rfc3339(epoch)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, mode=0o755)
    blobs = Blobs(args.out)

    layer = tar_layer(args.rootfs, epoch)
    layer_desc = blobs.put(OCI_LAYER_GZIP, gzip_bytes(layer))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": rfc3339(epoch),
        "config": image_config(args, labels),
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
        "history": [{"created": rfc3339(epoch), "created_by": "hack/image/oci.py"}],
    }
    config_desc = blobs.put(OCI_CONFIG, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": labels,
    }
    image = blobs.put(OCI_MANIFEST, canonical(manifest))
    manifests = [{**image, "annotations": {"org.opencontainers.image.ref.name": tag}}]

    if args.sbom:
        with open(args.sbom, "rb") as f:
            sbom = f.read()
        empty = blobs.put(OCI_EMPTY, b"{}", data="e30=")
        referrer = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": CYCLONEDX,
            "config": empty,
            "layers": [
                blobs.put(
                    CYCLONEDX,
                    sbom,
                    annotations={"org.opencontainers.image.title": os.path.basename(args.sbom)},
                )
            ],
            "subject": image,
            "annotations": {"org.opencontainers.image.created": rfc3339(epoch)},
        }
        manifests.append({**blobs.put(OCI_MANIFEST, canonical(referrer)), "artifactType": CYCLONEDX})

    with open(os.path.join(args.out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(args.out, "index.json"), "wb") as f:
        f.write(canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
    if args.archive:
        archive(args.out, args.archive, epoch)
    print(image["digest"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rootfs", help="collect the image's files into a directory")
    r.add_argument("--binary", required=True)
    r.add_argument("--out", required=True)
    lay = sub.add_parser("layout", help="write the OCI layout (and archive) of a root filesystem")
    lay.add_argument("--rootfs", required=True)
    lay.add_argument("--out", required=True)
    lay.add_argument("--archive")
    lay.add_argument("--created", type=int, required=True, help="seconds since the epoch")
    lay.add_argument("--label", action="append", default=[], help="K=V, an image label and annotation")
    lay.add_argument("--sbom", help="a CycloneDX JSON file, attached as a referrer of the image")
    lay.add_argument("--tag", help="the tag in index.json (default: the image.version label)")
    lay.add_argument("--user", default=f"{NONROOT}:{NONROOT}")
    for name in ("entrypoint", "cmd", "env", "expose"):
        lay.add_argument(f"--{name}", type=json_list, help="a JSON list of strings; [] for none")
    args = parser.parse_args()
    os.umask(0o022)
    {"rootfs": rootfs, "layout": layout}[args.command](args)


if __name__ == "__main__":
    main()
