#!/usr/bin/env bash
# Prepare a fresh Debian machine to build and run policyc/policyd: install the
# packages the build and tests need, and mount the filesystems BPF needs.
# Idempotent: installs only what is missing, mounts only what is absent.
# Must run as root (policyd loads BPF programs; tests attach them).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (BPF programs need CAP_BPF/CAP_SYS_ADMIN)" >&2
  exit 1
fi

# clang/llvm build the BPF templates; libbpf-dev gives bpf_helpers.h; sudo is
# what the shipped policy audits and the integration test runs; bpftool and jq
# are for operators and the demo; prometheus scrapes policyd in
# runtime/tests/prometheus.rs.
packages=(clang llvm libbpf-dev sudo bpftool jq ca-certificates prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

# Filesystems: bpffs for pinned maps, tracefs for tracepoint ids, cgroup2.
mount_if_absent() { # TYPE DIR
  local type=$1 dir=$2
  if ! findmnt -rn -t "$type" "$dir" >/dev/null 2>&1; then
    mkdir -p "$dir"
    mount -t "$type" "$type" "$dir" && echo "setup: mounted $type on $dir" >&2
  fi
}
mount_if_absent bpf /sys/fs/bpf
if ! findmnt -rn -t tracefs >/dev/null 2>&1; then
  mount_if_absent tracefs /sys/kernel/tracing
fi
if ! findmnt -rn -t cgroup2 >/dev/null 2>&1; then
  mount_if_absent cgroup2 /sys/fs/cgroup
fi

if [ ! -r /sys/kernel/btf/vmlinux ]; then
  echo "setup: warning: /sys/kernel/btf/vmlinux is missing; policyd needs a kernel with CONFIG_DEBUG_INFO_BTF" >&2
fi

# The chart test (charts/tests/chart_test.py) renders charts/policyd with
# Helm's Go SDK (helm-python-sdk ships it as a shared library) and validates
# the objects with kubernetes-validate, in a virtualenv of pinned versions.
# Reinstalled only when charts/tests/requirements.txt changes.
chart_venv=${POLICYC_CHART_VENV:-/opt/policyc/chart-venv}
chart_reqs="$(dirname "$0")/../charts/tests/requirements.txt"
if ! cmp -s "$chart_reqs" "$chart_venv/requirements.txt" 2>/dev/null; then
  echo "setup: installing the chart test's Python packages in $chart_venv" >&2
  rm -rf "$chart_venv"
  python3 -m venv "$chart_venv"
  "$chart_venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$chart_reqs"
  cp "$chart_reqs" "$chart_venv/requirements.txt"
fi
