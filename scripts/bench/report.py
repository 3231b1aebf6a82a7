#!/usr/bin/env python3
"""Turns what scripts/bench.sh recorded (one JSON object per line) into the results section
of docs/performance.md: every figure with its ratio to the pgbench limits measured in the
same run, the consistency oracle's verdicts, replicas and resources.

    report.py RESULTS.jsonl REPORT.md    (REPORT "-": print the section only)

The section replaces whatever lies between the `<!-- bench:begin -->` and
`<!-- bench:end -->` markers of REPORT; the prose around them is left alone."""

import json
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MODES = {"kafka": "Kafka mode (dev broker)", "rabbitmq": "RabbitMQ mode"}


def load(path):
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def first(records, **match):
    return next((r for r in records if all(r.get(k) == v for k, v in match.items())), None)


def ms(value):
    return f"{float(value):.1f} ms"


def mib(kib):
    return f"{int(kib) / 1024:.0f} MiB"


def section(records):
    machine = first(records, kind="machine")
    pgbench = first(records, kind="pgbench")
    placement_limit = float(pgbench["placement_tps"])
    saga_limit = float(pgbench["saga_orders_per_s"])
    out = [
        f"## Results ({machine['date']}, commit `{machine['commit']}`)",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; "
        f"PostgreSQL {machine['postgres']}, RabbitMQ {machine['rabbitmq']}, rustc {machine['rustc']}. "
        "Everything (database, broker, services, load generator) shares these CPUs.",
        "",
        "### The database's own limit (pgbench, 8 clients, the services' SQL)",
        "",
        "| what | per second |",
        "|---|---:|",
        f"| placement transaction (`scripts/bench/placement.sql`) | {placement_limit:.0f} |",
        f"| the saga's database work per order (`scripts/bench/saga.sql`) | {saga_limit:.0f} orders |",
        "",
    ]
    for mode, title in MODES.items():
        rows = [r for r in records if r.get("kind") == "load" and r.get("label") == mode]
        if not rows:
            continue
        out += [
            f"### {title}",
            "",
            "| run | requests | errors | per second | × pgbench | p50 | p95 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            run = row["run"]
            if run == "saturated-place":
                ratio = f"{row['throughput'] / placement_limit:.2f} × placement"
            elif run == "saturated-saga":
                ratio = f"{row['throughput'] / saga_limit:.2f} × saga"
            else:
                ratio = "—"
            out.append(
                f"| {row['name']} | {row['requests']} | {row['errors']} | {row['throughput']:.0f} | {ratio} "
                f"| {ms(row['p50_ms'])} | {ms(row['p95_ms'])} | {ms(row['p99_ms'])} | {ms(row['max_ms'])} |"
            )
        out.append("")
    oracles = [r for r in records if r.get("kind") == "oracle"]
    if oracles:
        out += [
            "### Consistency oracle, after each saturated run",
            "",
            "| run | verdict | confirmed | not confirmed | pending | stock left reserved | units sold / in confirmed orders | cents charged / confirmed totals | wallets + charged = credited |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for o in oracles:
            conserved = int(o["balance_cents"]) + int(o["charged_cents"])
            out.append(
                f"| {o['label']} | {'holds' if o['ok'] == 'true' else '**FAILED**'} | {o['confirmed']} | {o['rejected']} "
                f"| {o['pending']} | {o['reserved']} ({o['open_reservations']} reservations) "
                f"| {o['units_sold']} / {o['units_confirmed']} | {o['charged_cents']} / {o['confirmed_total_cents']} "
                f"| {o['balance_cents']} + {o['charged_cents']} = {conserved} |"
            )
        out.append("")
    scaling = []
    for label, replicas in [("kafka", "1")] + [
        (r["label"], r["replicas"]) for r in records if r.get("kind") == "load" and r.get("label", "").startswith("kafka-x") and r["run"] == "saturated-saga"
    ]:
        row = first(records, kind="load", label=label, run="saturated-saga")
        if row:
            scaling.append((replicas, row))
    if len(scaling) > 1:
        out += [
            "### Replicas (Kafka mode, 3 partitions, saturated by 16 clients)",
            "",
            "| replicas of order, payment and inventory | confirmed orders per second | × pgbench saga | p50 placed → confirmed |",
            "|---:|---:|---:|---:|",
        ]
        for replicas, row in scaling:
            out.append(
                f"| {replicas} | {row['throughput']:.0f} | {row['throughput'] / saga_limit:.2f} | {ms(row['p50_ms'])} |"
            )
        out.append("")
    out += [
        "### Resources",
        "",
        "| service | release binary | start → ready (Kafka / RabbitMQ) | memory idle (Kafka / RabbitMQ) | memory at saturation (Kafka / RabbitMQ) |",
        "|---|---:|---:|---:|---:|",
    ]
    for service in ["user", "order", "payment", "inventory"]:
        binary = first(records, kind="binary", service=service)
        cells = []
        for kind, key, fmt in [("startup", "ms", lambda v: f"{int(v)} ms"), ("rss", "kib", mib), ("rss", "kib", mib)]:
            values = []
            for mode in MODES:
                extra = {}
                if kind == "rss":
                    extra["state"] = "idle" if len(cells) == 1 else "saturated"
                record = first(records, kind=kind, label=mode, service=service, **extra)
                values.append(fmt(record[key]) if record else "—")
            cells.append(" / ".join(values))
        out.append(
            f"| {service}-service | {int(binary['bytes']) / 1048576:.1f} MiB | {cells[0]} | {cells[1]} | {cells[2]} |"
        )
    out.append("")
    return "\n".join(out)


def main():
    results, report = sys.argv[1], sys.argv[2]
    text = section(load(results))
    print(text)
    if report == "-":
        return
    with open(report, encoding="utf-8") as f:
        document = f.read()
    if BEGIN in document and END in document:
        head, rest = document.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        document = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    else:
        document = f"{document.rstrip()}\n\n{BEGIN}\n{text}\n{END}\n"
    with open(report, "w", encoding="utf-8") as f:
        f.write(document)
    print(f"written to {report}")


if __name__ == "__main__":
    main()
