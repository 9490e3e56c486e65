#!/bin/bash
# The whole test suite, on a fresh Debian machine, as root: installs what it
# needs (lab/setup.sh, the gRPC-enabled FRR build), then lint and pytest.
# Extra arguments go to pytest (e.g. `bash lab/test.sh -k render`).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
VENV=${FRRCTL_VENV:-/opt/frrctl-venv}

bash lab/setup.sh
# The gRPC driver's tests need FRR's northbound gRPC module, which Debian's
# package lacks: build it from Debian's own source (cached, reused when present).
FRRCTL_FRR_GRPC=$(bash lab/build-frr-grpc.sh | tail -n1)
export FRRCTL_FRR_GRPC
# tests/guestos boot real Debian guest images (mmdebstrap; cached, reused when present).
FRRCTL_IMAGES=$(bash lab/build-images.sh | tail -n1)
export FRRCTL_IMAGES

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" frrctl
started=$(date +%s)
"$VENV/bin/python" -m pytest -v -rs --durations=15 "$@"
echo "test suite: $(( $(date +%s) - started )) s"
