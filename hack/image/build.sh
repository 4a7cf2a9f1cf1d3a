#!/usr/bin/env bash
# `make image`: the idbind operator's OCI image, built without a container engine, byte for byte
# reproducible (two builds of one commit give one digest: tests/image.rs builds twice and compares).
#
#   hack/image/build.sh [--out DIR]          (default DIR: target/image)
#
# Writes, in DIR:
#   oci/            an OCI image layout, tagged with the crate's version (index.json)
#   idbind.oci.tar  the same layout as one file, to push:
#                     skopeo copy oci-archive:target/image/idbind.oci.tar:<version> docker://<registry>/idbind:<version>
#   idbind.cdx.json the SBOM: every crate compiled into the binary (CycloneDX 1.5, from cargo-cyclonedx),
#                   also attached to the image in the layout as an OCI 1.1 referrer (a manifest whose
#                   subject is the image: `oras cp -r --from-oci-layout` carries it along; skopeo copies
#                   the image alone)
#   digest          the image's manifest digest (sha256:...), to pin in a Deployment or the Helm chart
#
# What is in the image (hack/image/oci.py, which the Dockerfile runs too): the release binary
# (`cargo build --release --locked --bin idbind`, the glibc build: the musl target is not installable
# here), exactly the shared libraries `ldd` lists for it, the CA bundle, /etc/passwd and /etc/group with
# nonroot 65532, and the Debian copyright and dpkg records of those libraries; no shell. It runs as
# 65532:65532, ENTRYPOINT ["/usr/local/bin/idbind"], CMD ["run"], EXPOSE 8080, with the labels
# org.opencontainers.image.{source,revision,version,licenses,created,title,description}.
#
# Reproducible: every timestamp is the commit's time (SOURCE_DATE_EPOCH overrides it); tar entries
# sorted, owned by 0:0 with normalised modes; gzip without a name or mtime. The digest then depends only
# on the binary, the system's glibc, libgcc and ca-certificates packages, and the labels. The revision is
# the commit, with "-dirty" when the work tree has changes.
#
# Tools: cargo, python3, ldd and dpkg-query (Debian), git; cargo-cyclonedx is installed from crates.io
# with `cargo install --locked` into .cache/tools on first use. tests/image.rs also needs umoci, skopeo
# and runc (Debian: apt-get install -y umoci skopeo runc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/target/image
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

for tool in cargo python3 ldd dpkg-query git; do
  command -v "$tool" >/dev/null || { echo "$tool is required to build the image" >&2; exit 1; }
done

# The SBOM tool, pinned: cargo-cyclonedx, the CycloneDX project's own cargo plugin (maintained, on
# crates.io), built once into .cache/tools like Helm. A stamp holds the version it was built from.
cyclonedx_version=0.5.9
tools=$root/.cache/tools
cyclonedx=$tools/bin/cargo-cyclonedx
if [[ ! -x $cyclonedx || $(cat "$tools/cargo-cyclonedx.version" 2>/dev/null) != "$cyclonedx_version" ]]; then
  echo "installing cargo-cyclonedx $cyclonedx_version into $tools" >&2
  cargo install --locked --quiet --root "$tools" --version "$cyclonedx_version" cargo-cyclonedx
  echo "$cyclonedx_version" > "$tools/cargo-cyclonedx.version"
fi

# Run from `cargo test` (tests/image.rs), this script inherits the variables cargo sets for the test
# (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...); ring's build script reruns when CARGO_MANIFEST_DIR changes, so
# they would rebuild half the release tree. The build is the same as from a shell without them.
for var in $(compgen -e); do
  case $var in
    CARGO_MANIFEST_*|CARGO_PKG_*|CARGO_CRATE_NAME|CARGO_BIN_NAME|CARGO_PRIMARY_PACKAGE|CARGO_TARGET_TMPDIR) unset "$var" ;;
  esac
done
cargo build --release --locked --bin idbind
binary=$root/target/release/idbind

commit=$(git rev-parse HEAD)
revision=$commit
if [[ -n $(git status --porcelain) ]]; then
  revision=$commit-dirty
  echo "warning: the work tree has changes; the image is labelled revision=$revision" >&2
fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}

# The crate's metadata, from cargo rather than by parsing Cargo.toml.
read -r version license repository description < <(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys
p = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "idbind")
print(p["version"], p["license"] or "", p["repository"] or "-", json.dumps(p["description"] or ""))')
labels=(
  --label "org.opencontainers.image.title=idbind"
  --label "org.opencontainers.image.description=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]))' "$description")"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.licenses=$license"
)
# The source: IDBIND_IMAGE_SOURCE, else Cargo.toml's package.repository. Never the git remote, which
# differs between clones and so would change the digest.
source=${IDBIND_IMAGE_SOURCE:-}
[[ -z $source && $repository != - ]] && source=$repository
if [[ -n $source ]]; then
  labels+=(--label "org.opencontainers.image.source=$source")
else
  echo "warning: no org.opencontainers.image.source label: set package.repository in Cargo.toml" \
    "(or IDBIND_IMAGE_SOURCE)" >&2
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The SBOM of the binary: the crates of the idbind bin target for this platform (no dev- or build-
# dependencies, no other workspace member). cargo-cyclonedx writes one file beside each member's
# Cargo.toml, so it runs on a copy of the tracked sources in the work folder, never in the tree.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work/src"
SOURCE_DATE_EPOCH=$epoch "$cyclonedx" cyclonedx --manifest-path "$work/src/Cargo.toml" --format json \
  --spec-version 1.5 --describe binaries --target x86_64-unknown-linux-gnu --no-build-deps -q
python3 "$root/hack/image/sbom.py" --in "$work/src/idbind_bin.cdx.json" --out "$work/idbind.cdx.json" \
  --workspace "$work/src" --binary "$binary" --revision "$revision"

python3 "$root/hack/image/oci.py" rootfs --binary "$binary" --out "$work/rootfs"
digest=$(python3 "$root/hack/image/oci.py" layout --rootfs "$work/rootfs" --out "$work/oci" \
  --archive "$work/idbind.oci.tar" --created "$epoch" --sbom "$work/idbind.cdx.json" "${labels[@]}")
echo "$digest" > "$work/digest"

# Replace the previous build's outputs only now that the new ones are complete.
for f in oci idbind.oci.tar idbind.cdx.json digest; do
  rm -rf "${out:?}/$f"
  mv "$work/$f" "$out/$f"
done
size=$(du -sb "$out/idbind.oci.tar" | cut -f1)
echo "image $digest (idbind $version, revision $revision); $(( size / 1024 / 1024 )) MiB archive" >&2
echo "  layout:  $out/oci (tag $version)" >&2
echo "  archive: $out/idbind.oci.tar   push: skopeo copy oci-archive:$out/idbind.oci.tar:$version docker://<registry>/idbind:$version" >&2
echo "  sbom:    $out/idbind.cdx.json" >&2
echo "$digest"
