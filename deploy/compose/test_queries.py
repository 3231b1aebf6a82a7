#!/usr/bin/env python3
"""Evaluates every Grafana panel query and every alert expression against a real
Prometheus scraping the running services, and fails when one errors or names a metric the
services do not export.

    python3 deploy/compose/test_queries.py [--prometheus PATH] [--no-drive]

Needs the four services on their default ports (8081-8084), as `make run`, `make smoke`
or scripts/check-queries.sh start them, and a `prometheus` binary (Debian's package:
`apt-get install prometheus`). It

1. writes a Prometheus configuration from deploy/compose/prometheus/prometheus.yml with
   only the targets moved to 127.0.0.1, the intervals shortened to 1 s and the rule files
   made absolute, and starts Prometheus on a free loopback port with a scratch TSDB;
2. drives the system with scripts/demo.py (three orders: confirmed, rejected twice,
   one cancelled) unless --no-drive, then waits for a scrape of every service after it;
3. takes the metric names Prometheus holds (`/api/v1/label/__name__/values`) and, for
   each dashboard panel under deploy/compose/grafana/dashboards/, each template variable
   and each rule of alerts.yml, evaluates the expression through `/api/v1/query` and
   checks that every metric it names is among them (`up` and the other series
   Prometheus makes itself included); a histogram must be named by its `_bucket`, `_sum`
   or `_count` series;
4. checks that every rule group loaded and evaluates without error.

Grafana's variables are replaced before evaluation: `$__rate_interval` by 1m, `$__range`
by 5m, `$__interval` by 15s and the dashboards' own variables (`$service`) by `.+`.
Prints one line per expression, then the metrics that are missing and where they are used,
and ends with an "N passed, N failed" line. Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONF = ROOT / "deploy/compose/prometheus/prometheus.yml"
DASHBOARDS = ROOT / "deploy/compose/grafana/dashboards"
DEMO = ROOT / "scripts/demo.py"

# Series Prometheus writes itself for every target and rule.
SYNTHETIC = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
# PromQL words that are neither metrics nor functions.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "atan2", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`|\d[\w.]*|[A-Za-z_:][\w:]*|\S')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr):
    """The metric names a PromQL expression selects (not its functions, labels or
    keywords)."""
    tokens = TOKEN.findall(expr)
    names, i, braces, brackets = set(), 0, 0, 0
    while i < len(tokens):
        token = tokens[i]
        if token == "{":
            braces += 1
        elif token == "}":
            braces -= 1
        elif token == "[":
            brackets += 1
        elif token == "]":
            brackets -= 1
        elif braces or brackets or token[0] in "\"'`" or token[0].isdigit():
            pass
        elif token in GROUPING:
            # The label list that follows, e.g. `by (job, le)`.
            if i + 1 < len(tokens) and tokens[i + 1] == "(":
                i = tokens.index(")", i + 1)
        elif re.fullmatch(r"[A-Za-z_:][\w:]*", token) and token not in KEYWORDS:
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            # A function or an aggregation (`sum(...)`, `sum by (le) (...)`) is not a metric.
            if following != "(" and following not in ("by", "without"):
                names.add(token)
        i += 1
    return names


def substitute_variables(expr, dashboard_variables):
    def replace(match):
        name = match.group(1) or match.group(2)
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        if name in dashboard_variables:
            return ".+"
        raise ValueError(f"unknown Grafana variable ${name}")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def dashboard_queries():
    """(where, expression) of every Prometheus query of every committed dashboard."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        title = board.get("title", path.name)
        variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query or "")
            if not match:
                raise ValueError(f"{title}: variable ${variable['name']}: unsupported query {query!r}")
            queries.append((f"{title} / variable ${variable['name']}", match.group(1)))

        def walk(panels):
            for panel in panels:
                walk(panel.get("panels", []))
                for target in panel.get("targets", []):
                    datasource = target.get("datasource") or panel.get("datasource") or {}
                    if datasource.get("type") == "prometheus" and target.get("expr"):
                        where = f"{title} / {panel.get('title')} [{target.get('refId')}]"
                        queries.append((where, substitute_variables(target["expr"], variables)))
        walk(board.get("panels", []))
    return queries


def rule_expressions(rule_files):
    """(rule name, where, expression) of every rule, read without a YAML library:
    alerts.yml keeps each `expr` either on its line or as a `|` block below it."""
    found = []
    for path in rule_files:
        lines = path.read_text().splitlines()
        name = None
        for index, line in enumerate(lines):
            header = re.match(r"\s*-\s*(alert|record):\s*(\S+)", line)
            if header:
                name = header.group(2)
                continue
            match = re.match(r"(\s*)expr:\s*(.*)$", line)
            if not match:
                continue
            indent, value = len(match.group(1)), match.group(2).strip()
            if value in ("|", ">", "|-", ">-"):
                block = []
                for following in lines[index + 1:]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(part for part in block if part)
            found.append((name, f"{path.name} / {name}", value))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_configuration(scratch):
    """prometheus.yml with the targets on 127.0.0.1, 1 s intervals, absolute rule files."""
    text = PROMETHEUS_CONF.read_text()
    text = re.sub(r'"([a-z0-9-]+):(\d+)"', r'"127.0.0.1:\2"', text)
    text = re.sub(r"(scrape_interval|evaluation_interval):\s*\S+", r"\1: 1s", text)
    text = re.sub(r"scrape_timeout:\s*\S+", "scrape_timeout: 1s", text)
    rule_files = []

    def absolute(match):
        path = (PROMETHEUS_CONF.parent / match.group(2)).resolve()
        rule_files.append(path)
        return f"{match.group(1)}{path}"
    section = re.search(r"^rule_files:\n((?:\s+-\s*\S+\n)+)", text, re.M)
    if section:
        rewritten = re.sub(r"^(\s+-\s*)(\S+)$", absolute, section.group(1), flags=re.M)
        text = text[:section.start(1)] + rewritten + text[section.end(1):]
    conf = Path(scratch) / "prometheus.yml"
    conf.write_text(text)
    return conf, rule_files


class Prometheus:
    def __init__(self, binary, scratch):
        self.conf, self.rule_files = test_configuration(scratch)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(scratch) / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.conf}", f"--storage.tsdb.path={scratch}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path, **params):
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)

    def wait(self, what, condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"prometheus exited:\n{Path(self.log.name).read_text()}")
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"timed out after {timeout} s waiting for {what}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def scraped_after(prometheus, moment):
    """Whether every service target has been scraped after `moment` (epoch seconds)."""
    result = prometheus.query('min(timestamp(up{job=~".+-service"}))')["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) > moment


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "",
                        help="the prometheus binary (default: prometheus on the PATH)")
    parser.add_argument("--no-drive", action="store_true",
                        help="do not run scripts/demo.py first (the stack already saw traffic)")
    args = parser.parse_args()
    if not args.prometheus:
        sys.exit("no prometheus binary: apt-get install prometheus, or pass --prometheus PATH")

    queries = dashboard_queries()
    with tempfile.TemporaryDirectory(prefix="query-test-") as scratch:
        prometheus = Prometheus(args.prometheus, scratch)
        try:
            rules = rule_expressions(prometheus.rule_files)
            queries += [(where, expr) for _, where, expr in rules]
            prometheus.wait("Prometheus to be ready",
                            lambda: urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2).status == 200, 30)

            def targets_up():
                targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
                return targets and all(t["health"] == "up" for t in targets)
            prometheus.wait("every target to be up (are the four services running?)", targets_up, 60)
            if not args.no_drive:
                # The demo talks to the services directly when no gateway answers there.
                env = dict(os.environ, DEMO_GATEWAY_URL="http://127.0.0.1:9")
                subprocess.run([sys.executable, str(DEMO)], env=env, check=True,
                               stdout=subprocess.DEVNULL)
            driven = time.time()
            prometheus.wait("a scrape of every service after the traffic",
                            lambda: scraped_after(prometheus, driven + 1), 30)

            def rules_evaluated():
                groups = prometheus.get("/api/v1/rules")["data"]["groups"]
                # Never evaluated yet: the zero time, 0001-01-01T00:00:00Z.
                return all(not rule.get("lastEvaluation", "0001").startswith("0001")
                           for group in groups for rule in group["rules"])
            prometheus.wait("the first evaluation of every rule", rules_evaluated, 30)

            exported = set(prometheus.get("/api/v1/label/__name__/values")["data"]) | SYNTHETIC
            metadata = prometheus.get("/api/v1/metadata")["data"]
            histograms = {name for name, entries in metadata.items()
                          if any(e.get("type") == "histogram" for e in entries)}
            results, missing = [], {}
            for where, expr in queries:
                answer = prometheus.query(expr)
                problems = []
                if answer.get("status") != "success":
                    problems.append(f"query error: {answer.get('error')}")
                for name in sorted(metric_names(expr) - exported):
                    if name in histograms:
                        problems.append(f"{name} is a histogram: select {name}_bucket, _sum or _count")
                    else:
                        problems.append(f"{name} is not exported")
                        missing.setdefault(name, []).append(where)
                results.append(not problems)
                print(f"{'ok  ' if not problems else 'FAIL'} {where}")
                for problem in problems:
                    print(f"       {problem}")

            groups = prometheus.get("/api/v1/rules")["data"]["groups"]
            loaded = {rule["name"] for group in groups for rule in group["rules"]}
            expected = {name for name, _, _ in rules}
            for group in groups:
                for rule in group["rules"]:
                    healthy = rule.get("health") == "ok"
                    results.append(healthy)
                    print(f"{'ok  ' if healthy else 'FAIL'} rule {rule['name']} evaluates"
                          + ("" if healthy else f": {rule.get('lastError')}"))
            results.append(loaded == expected)
            print(f"{'ok  ' if loaded == expected else 'FAIL'} Prometheus loaded every rule of "
                  f"the rule files" + ("" if loaded == expected else f": {sorted(expected ^ loaded)}"))
        finally:
            prometheus.stop()

    if missing:
        print("\nMetrics named by a dashboard or an alert that the services do not export:")
        for name in sorted(missing):
            print(f"  {name}  ({len(missing[name])} use(s): {'; '.join(missing[name])})")
    passed = sum(results)
    print(f"\n{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
