#!/usr/bin/env bash
# The two images a real kubelet node needs for the node tests, built without a container engine and
# without a registry: the node has no internet, so containerd gets them as archives.
#
#   hack/node/images.sh [--out DIR]          (default DIR: target/node-images)
#
# Writes, in DIR:
#   pause.tar     idbind.local/pause:3.10, the pod sandbox image: Kubernetes' own pause program, compiled
#                 static from the k8s.io/kubernetes module that controlplane/go.mod pins (its
#                 build/pause/linux/pause.c, with the flags of its build/pause/Makefile), as /pause;
#                 ENTRYPOINT ["/pause"], USER 65535:65535, as upstream's image
#   idbind.tar    idbind.local/idbind:<version>, the operator image `make image` built (target/image), renamed
#   workload.tar  idbind.local/workload:dev, tools/workload (Azure's Go SDK reading a Key Vault secret with
#                 the webhook's environment), static (CGO_ENABLED=0), as /workload, with /etc/passwd and
#                 /etc/group naming nonroot; USER 65532:65532. No CA bundle: the pod mounts the one to
#                 trust and sets SSL_CERT_FILE
#   *.oci/        the OCI layouts they are copied from, and *.inputs, the fingerprint of what each was
#                 built from
#
# Load them into the node's containerd (the CRI plugin's namespace is k8s.io):
#   ctr -n k8s.io images import DIR/pause.tar
#   ctr -n k8s.io images import DIR/workload.tar
# The archives are docker-archives (skopeo's), not oci-archives: their manifest.json carries RepoTags,
# which is what `ctr images import` names the image after (an OCI layout's ref.name annotation is only a
# tag, so containerd 1.6 would not import it as idbind.local/...).
#
# The layouts come from hack/image/oci.py layout, the operator image's writer: the same fixed tar
# headers, gzip and JSON, so the same inputs give the same digest. The timestamp is SOURCE_DATE_EPOCH, else
# 0 (not the commit's time, which would change the images with every commit though their bytes do not).
#
# Fast when nothing changed: each image is rebuilt only when the fingerprint of its inputs (the program's
# bytes, oci.py, this script, the epoch) differs from DIR/<image>.inputs; the Go build itself is cached by
# go. Outputs are replaced only once the new ones are complete.
#
# Tools: gcc (static glibc: Debian's libc6-dev), go, python3, skopeo.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/target/node-images
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in gcc go python3 skopeo sha256sum; do
  command -v "$tool" >/dev/null || { echo "$tool is required to build the node images" >&2; exit 1; }
done

epoch=${SOURCE_DATE_EPOCH:-0}
oci=$root/hack/image/oci.py
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The fingerprint of an image's inputs: the files named, the script and the writer, and the extra words.
fingerprint() {
  { sha256sum "$@" "$0" "$oci" | cut -d' ' -f1; echo "epoch=$epoch"; } | sha256sum | cut -d' ' -f1
}

# package NAME REF ROOTFS FINGERPRINT OCI-LAYOUT-OPTIONS...: lays ROOTFS out as an OCI image and copies it
# into DIR/NAME.tar as REF, unless DIR/NAME.inputs says it already is.
package() {
  local name=$1 ref=$2 rootfs=$3 inputs=$4
  shift 4
  local tag=${ref##*:}
  python3 "$oci" layout --rootfs "$rootfs" --out "$work/$name.oci" --created "$epoch" --tag "$tag" \
    --label "org.opencontainers.image.title=${ref%:*}" --label "org.opencontainers.image.version=$tag" "$@" \
    > "$work/$name.digest"
  skopeo copy --quiet "oci:$work/$name.oci:$tag" "docker-archive:$work/$name.tar:$ref"
  echo "$inputs" > "$work/$name.inputs"
  rm -rf "${out:?}/$name.oci"
  mv "$work/$name.oci" "$out/$name.oci"
  mv "$work/$name.tar" "$out/$name.tar"
  mv "$work/$name.inputs" "$out/$name.inputs"
  echo "$ref $(cat "$work/$name.digest") ($(( $(stat -c %s "$out/$name.tar") / 1024 )) KiB): $out/$name.tar" >&2
}

up_to_date() { # NAME FINGERPRINT
  [[ -s $out/$1.tar && $(cat "$out/$1.inputs" 2>/dev/null) == "$2" ]]
}

# --- The pause image. The kubernetes module's directory as go reports it (downloaded if the cache lacks it).
kubernetes=$(cd "$root/controlplane" && go mod download -json k8s.io/kubernetes |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
pause_src=$kubernetes/build/pause/linux/pause.c
# Upstream's flags (build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV)),
# with its TAG and our name for REV; `/pause -v` prints it.
pause_tag=$(sed -n 's/^TAG ?= *//p' "$kubernetes/build/pause/Makefile")
[[ -n $pause_tag ]] || { echo "no TAG in $kubernetes/build/pause/Makefile" >&2; exit 1; }
cflags=(-Os -Wall -Werror -static "-DVERSION=v$pause_tag-idbind")
inputs=$({ fingerprint "$pause_src"; gcc --version | head -1; echo "${cflags[*]}"; } | sha256sum | cut -d' ' -f1)
if up_to_date pause "$inputs"; then
  echo "idbind.local/pause:3.10 is up to date: $out/pause.tar" >&2
else
  mkdir -p "$work/pause-rootfs"
  gcc "${cflags[@]}" -o "$work/pause-rootfs/pause" "$pause_src"
  package pause idbind.local/pause:3.10 "$work/pause-rootfs" "$inputs" \
    --user 65535:65535 --entrypoint '["/pause"]' --cmd '[]' --env '[]' --expose '[]' \
    --label "org.opencontainers.image.description=Kubernetes' pause (k8s.io/kubernetes build/pause, v$pause_tag), the pod sandbox"
fi

# --- The workload image. go decides whether the binary changed; its bytes are the fingerprint.
mkdir -p "$work/workload-rootfs/etc"
(cd "$root/tools/workload" &&
  CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$work/workload-rootfs/workload" .)
inputs=$(fingerprint "$work/workload-rootfs/workload")
if up_to_date workload "$inputs"; then
  echo "idbind.local/workload:dev is up to date: $out/workload.tar" >&2
else
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "$work/workload-rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$work/workload-rootfs/etc/group"
  package workload idbind.local/workload:dev "$work/workload-rootfs" "$inputs" \
    --user 65532:65532 --entrypoint '["/workload"]' --cmd '[]' --env '[]' --expose '[]' \
    --label "org.opencontainers.image.description=tools/workload: Azure's Go SDK reads a Key Vault secret with workload identity"
fi

# --- The operator's image, as `make image` built it (target/image), renamed for the node: an oci-archive's
# ref.name is only its tag, so it becomes a docker-archive named idbind.local/idbind:<tag>, the name the
# node test's Helm values give. Skipped with a note when `make image` has not run.
image_dir=$root/target/image
if [[ -s $image_dir/idbind.oci.tar && -s $image_dir/digest ]]; then
  tag=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["manifests"]; print(next(x["annotations"]["org.opencontainers.image.ref.name"] for x in m if "annotations" in x))' "$image_dir/oci/index.json")
  inputs=$({ cat "$image_dir/digest"; echo "$tag"; } | sha256sum | cut -d' ' -f1)
  if up_to_date idbind "$inputs"; then
    echo "idbind.local/idbind:$tag is up to date: $out/idbind.tar" >&2
  else
    skopeo copy --quiet "oci-archive:$image_dir/idbind.oci.tar:$tag" "docker-archive:$work/idbind.tar:idbind.local/idbind:$tag"
    echo "$inputs" > "$work/idbind.inputs"
    mv "$work/idbind.tar" "$out/idbind.tar"
    mv "$work/idbind.inputs" "$out/idbind.inputs"
    echo "idbind.local/idbind:$tag $(cat "$image_dir/digest"): $out/idbind.tar" >&2
  fi
else
  echo "no operator image in $image_dir (run make image): $out/idbind.tar not written" >&2
fi
