#!/usr/bin/env bash
# Runs the Python SDK tests against the simulator. Creates the venv in .cache/venv (at the
# repository root) when it is missing. IDBIND_SIM_BIN must name the simulator binary
# (`idbind-sim`, e.g. target/debug/idbind-sim; `make test-python` builds it and sets it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${IDBIND_VENV:-$root/.cache/venv}"
if [[ -z "${IDBIND_SIM_BIN:-}" ]]; then
  echo "IDBIND_SIM_BIN is not set: point it at the simulator binary (cargo build -p idbind-sim; target/debug/idbind-sim)" >&2
  exit 2
fi
if [[ ! -x "$IDBIND_SIM_BIN" ]]; then
  echo "IDBIND_SIM_BIN=$IDBIND_SIM_BIN is not an executable file (cargo build -p idbind-sim builds target/debug/idbind-sim)" >&2
  exit 2
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# Install (or bring up to date) the pinned requirements; a no-op when they are already there.
if ! cmp -s "$here/requirements.txt" "$venv/.idbind-sim-requirements" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.idbind-sim-requirements"
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"
