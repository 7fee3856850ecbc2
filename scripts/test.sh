#!/usr/bin/env bash
# The test command: set the machine up, then run every test of the workspace
# (unit, golden, property, and the BPF integration tests, which need root).
# With CI=true the BPF tests refuse to skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
# The Helm chart rendered by Helm's own library and every object validated
# against the Kubernetes schemas (see docs/kubernetes.md).
"${POLICYC_CHART_VENV:-/opt/policyc/chart-venv}/bin/python" charts/tests/chart_test.py
