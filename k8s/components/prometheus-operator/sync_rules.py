#!/usr/bin/env python3
"""Writes prometheus-rule.yaml (next to this file) from the compose stack's alert rules,
deploy/compose/prometheus/alerts.yml, so that Kubernetes alerts on exactly the same
conditions. `make alerts-sync` runs it; k8s/check.py fails when the two differ.

    python3 k8s/components/prometheus-operator/sync_rules.py [--check]

With --check it writes nothing and exits 1 when the file is not up to date. Needs PyYAML.
"""

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "deploy/compose/prometheus/alerts.yml"
TARGET = HERE / "prometheus-rule.yaml"

HEADER = """\
# GENERATED from deploy/compose/prometheus/alerts.yml by `make alerts-sync`: edit that
# file, then run it again. k8s/check.py fails when the two differ.
"""


def rendered() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "shop-alerts", "labels": {"app.kubernetes.io/name": "shop-alerts"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    text = rendered()
    if "--check" in sys.argv[1:]:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET.name} is not up to date with {SOURCE.name}: run `make alerts-sync`",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
