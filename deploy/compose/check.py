#!/usr/bin/env python3
"""Static checks of the compose demo stack, beyond what `docker compose config` validates.

    python3 deploy/compose/check.py                      # the default stack
    python3 deploy/compose/check.py --profile rabbitmq   # with the RabbitMQ profile
    python3 deploy/compose/check.py -f docker-compose.yml -f my-override.yml

It asserts the rules the stack is built on, so that an edit cannot quietly break them:

1. Every service says how it restarts. Every long-running one has a healthcheck; a
   one-shot job (`restart: "no"`) has none, and some service must wait for it with
   `service_completed_successfully` instead.
2. Only the gateway is published to the world, on exactly one port; everything else that
   is published binds 127.0.0.1.
3. Every service waits, with `service_healthy`, for each service its environment points
   at (DATABASE_URL, KAFKA_BROKERS, AMQP_URL, USER_SERVICE_URL, ...).
4. The gateway's routes (deploy/compose/gateway/nginx.conf) and Prometheus' targets
   (deploy/compose/prometheus/prometheus.yml) name services and ports that exist, every
   application service is scraped, and the gateway waits for each service it routes to.
5. The Dockerfile's shared dependency layer is cooked for every service compose builds.
6. The gateway serves the storefront: the folder nginx.conf's `root` names is a read-only
   bind mount of the repository's web/public/, which has an index.html.
7. Observability: every image is pinned to a version (the helper images built under
   deploy/compose/ too, in their Dockerfiles); every application service names itself in
   OTEL_SERVICE_NAME and sends OTLP to a service of the stack; the gateway's tracing
   exports to one too; Grafana's data sources name services defined in the compose file
   (Loki's only in the `logs` profile) and every dashboard panel uses one of them.

It reads the stack as compose resolves it (`docker compose config --format json`: anchors,
defaults and profiles applied), and falls back to reading the YAML with PyYAML when no
compose CLI is installed. Exits non-zero with one line per broken rule.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy/compose/gateway/nginx.conf"
PROMETHEUS_CONF = ROOT / "deploy/compose/prometheus/prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"
GATEWAY_TRACING = ROOT / "deploy/compose/gateway/otel/tracing.conf"
GRAFANA = ROOT / "deploy/compose/grafana"
STOREFRONT = ROOT / "web/public"
GATEWAY = "gateway"


def load_stack(files, profiles):
    """The compose model with profiles applied, as `docker compose config` prints it."""
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif shutil.which("docker"):
        command = ["docker", "compose"]
    else:
        return load_stack_with_pyyaml(files, profiles)
    for profile in profiles:
        command += ["--profile", profile]
    for file in files:
        command += ["-f", str(file)]
    command += ["config", "--format", "json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)


def load_stack_with_pyyaml(files, profiles):
    import yaml  # only needed without a compose CLI

    if len(files) != 1:
        sys.exit("without a compose CLI, only one compose file can be checked")
    stack = yaml.safe_load(Path(files[0]).read_text())
    stack["services"] = {
        name: service
        for name, service in stack["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }
    return stack


def depends_on(service):
    """{dependency: condition}, whether compose's long or short syntax was used."""
    entries = service.get("depends_on") or {}
    if isinstance(entries, list):
        return {name: "service_started" for name in entries}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in entries.items()}


def published_ports(service):
    """(host_ip, published port) of each published port."""
    ports = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published"):
                ports.append((port.get("host_ip", ""), str(port["published"])))
        else:  # short syntax, "[ip:]published:target"
            parts = str(port).rsplit(":", 2)
            if len(parts) == 3:
                ports.append((parts[0], parts[1]))
            elif len(parts) == 2:
                ports.append(("", parts[0]))
    return ports


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {key: str(value) for key, value in env.items() if value is not None}


def hosts_in(value):
    """Host names in an environment value: URLs, or comma-separated host:port lists."""
    hosts = set()
    for item in value.split(","):
        item = item.strip()
        if "://" in item:
            host = urlsplit(item).hostname
        elif re.fullmatch(r"[A-Za-z0-9.-]+:\d+", item):
            host = item.split(":")[0]
        else:
            host = None
        if host:
            hosts.add(host)
    return hosts


def listen_port(service):
    """The port a service built from our Dockerfile listens on (its HTTP_ADDR)."""
    addr = environment(service).get("HTTP_ADDR", "")
    return addr.rsplit(":", 1)[-1] if ":" in addr else None


def bind_mounts(service):
    """{target: (source, read_only)} of a service's bind mounts, long or short syntax."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:  # short syntax, "source:target[:mode]"
            parts = str(volume).split(":")
            if len(parts) >= 2 and parts[0].startswith((".", "/")):
                mounts[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return mounts


def built_here(service):
    """Whether compose builds the service from the repository's Dockerfile (an
    application), rather than a helper image from its own folder under deploy/compose/."""
    build = service.get("build")
    if not build:
        return False
    context = build if isinstance(build, str) else build.get("context", ".")
    return (COMPOSE_FILE.parent / context).resolve() == ROOT


def pinned(image):
    """Whether an image reference names a version: a digest, or a tag other than latest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def check_observability(services, app_services, defined):
    """Rule 7. `defined` holds every service of the compose file, whatever its profile."""
    problems = []
    for name, service in sorted(services.items()):
        build = service.get("build")
        if build and not built_here(service):
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (COMPOSE_FILE.parent / context).resolve() / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
            for base in re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M):
                if not pinned(base):
                    problems.append(f"{name}: {dockerfile.relative_to(ROOT)} starts FROM {base}, "
                                    f"which is not pinned to a version")
        elif not build and service.get("image") and not pinned(service["image"]):
            problems.append(f"{name}: image {service['image']} is not pinned to a version")
    for name in sorted(app_services):
        env = environment(services[name])
        if env.get("OTEL_SERVICE_NAME") != name:
            problems.append(f"{name}: OTEL_SERVICE_NAME is {env.get('OTEL_SERVICE_NAME')!r}, "
                            f"expected {name!r}")
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not endpoint or not hosts_in(endpoint) & set(services):
            problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT ({endpoint}) does not name a "
                            f"service of the stack")
    if GATEWAY in services and GATEWAY_TRACING.is_file():
        endpoint = re.search(r"^\s*endpoint\s+([^;\s]+);", GATEWAY_TRACING.read_text(), re.M)
        host = endpoint.group(1).split("://")[-1].split(":")[0] if endpoint else None
        if host not in services:
            problems.append(f"{GATEWAY_TRACING.relative_to(ROOT)}: exports to {host}, which is "
                            f"not a service of the stack")
        if bind_mounts(services[GATEWAY]).get("/etc/nginx/otel", (None,))[0] is None:
            problems.append(f"{GATEWAY}: deploy/compose/gateway/otel is not mounted at "
                            f"/etc/nginx/otel, where nginx.conf includes it from")
    datasources = {}
    for path in sorted((GRAFANA / "provisioning/datasources").glob("*.yaml")):
        text = path.read_text()
        for uid, url in re.findall(r"^\s+uid:\s*(\S+)\s*\n(?:\s+\w+:.*\n)*?\s+url:\s*(\S+)",
                                   text, re.M):
            datasources[uid] = url
            host = urlsplit(url).hostname
            if host not in defined:
                problems.append(f"{path.relative_to(ROOT)}: data source {uid} points at {host}, "
                                f"which is not a service of docker-compose.yml")
    uids = set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        if board.get("uid") in uids:
            problems.append(f"{path.relative_to(ROOT)}: uid {board.get('uid')} is used twice")
        uids.add(board.get("uid"))

        def walk(panels):
            for panel in panels:
                walk(panel.get("panels", []))
                for item in [panel] + panel.get("targets", []):
                    uid = (item.get("datasource") or {}).get("uid")
                    if uid and uid not in datasources:
                        problems.append(f"{path.relative_to(ROOT)}: panel {panel.get('title')!r} "
                                        f"uses data source {uid}, which is not provisioned")
        walk(board.get("panels", []))
    return problems


def defined_services(files):
    """Every service the compose files define, in any profile."""
    try:
        import yaml
    except ImportError:
        return None
    names = set()
    for file in files:
        names |= set((yaml.safe_load(Path(file).read_text()) or {}).get("services") or {})
    return names


def check(stack, defined=None):
    services = stack["services"]
    problems = []
    app_services = {name for name, s in services.items() if built_here(s)}
    one_shots = {name for name, s in services.items() if str(s.get("restart")) == "no"}

    # 1. Restart policies and healthchecks; one-shot jobs are waited for instead.
    for name, service in sorted(services.items()):
        healthcheck = service.get("healthcheck") or {}
        if not service.get("restart"):
            problems.append(f"{name}: no restart policy (unless-stopped for a service, "
                            f"\"no\" for a one-shot job)")
        elif name in one_shots:
            waiters = [w for w, s in services.items()
                       if depends_on(s).get(name) == "service_completed_successfully"]
            if not waiters:
                problems.append(f"{name}: a one-shot job (restart: \"no\") that no service waits "
                                f"for with condition: service_completed_successfully")
        elif not healthcheck.get("test") or healthcheck.get("disable"):
            problems.append(f"{name}: no healthcheck")

    # 2. One public port, the gateway's.
    if GATEWAY not in services:
        problems.append(f"no `{GATEWAY}` service")
    else:
        ports = published_ports(services[GATEWAY])
        if len(ports) != 1:
            problems.append(f"{GATEWAY}: publishes {len(ports)} ports, expected exactly one")
    for name, service in sorted(services.items()):
        if name == GATEWAY:
            continue
        for host_ip, port in published_ports(service):
            if host_ip not in ("127.0.0.1", "::1", "localhost"):
                problems.append(f"{name}: port {port} is published on all interfaces; only the "
                                f"gateway is public, publish others on 127.0.0.1")

    # 3. Wait for what the environment points at.
    for name in sorted(app_services | one_shots):
        needs = depends_on(services[name])
        for key, value in sorted(environment(services[name]).items()):
            for host in sorted(hosts_in(value) & set(services) - {name}):
                wanted = "service_completed_successfully" if host in one_shots else "service_healthy"
                if needs.get(host) != wanted:
                    problems.append(f"{name}: {key} points at `{host}`, but {name} does not "
                                    f"depend on it with condition: {wanted}")

    # 4. Gateway routes and Prometheus targets.
    ports = {name: listen_port(services[name]) for name in app_services}
    routes = set(re.findall(r"http://([a-z0-9-]+):(\d+)", NGINX_CONF.read_text()))
    if not routes:
        problems.append(f"{NGINX_CONF.relative_to(ROOT)}: no upstream found")
    for host, port in sorted(routes):
        if host not in app_services:
            problems.append(f"gateway routes to `{host}`, which is not a service built here")
        elif ports[host] != port:
            problems.append(f"gateway routes to {host}:{port}, but {host} listens on {ports[host]}")
        elif depends_on(services[GATEWAY]).get(host) != "service_healthy":
            problems.append(f"gateway routes to {host} without depending on it with "
                            f"condition: service_healthy")
    targets = set(re.findall(r"([a-z0-9-]+):(\d+)", " ".join(
        re.findall(r"targets:\s*\[([^\]]*)\]", PROMETHEUS_CONF.read_text()))))
    for host, port in sorted(targets):
        if host not in app_services or ports[host] != port:
            problems.append(f"prometheus scrapes {host}:{port}, which is not a service's HTTP_ADDR")
    for name in sorted(app_services - {host for host, _ in targets}):
        problems.append(f"prometheus does not scrape {name}")

    # 5. The Dockerfile cooks the dependencies of every image compose builds.
    cook = re.search(r"cargo chef cook(.*?)\n\n", DOCKERFILE.read_text(), re.S)
    cooked = set(re.findall(r"-p\s+([a-z0-9-]+)", cook.group(1))) if cook else set()
    for name, service in sorted(services.items()):
        build = (service.get("build") or {}) if built_here(service) else {}
        package = (build.get("args") or {}).get("SERVICE") if isinstance(build, dict) else None
        if build and not package:
            problems.append(f"{name}: built without a SERVICE build argument")
        elif package and package not in cooked:
            problems.append(f"{name}: SERVICE={package} is missing from the Dockerfile's "
                            f"`cargo chef cook -p ...` list")

    # 6. The storefront is what the gateway serves at /.
    roots = set(re.findall(r"^\s*root\s+([^;\s]+);", NGINX_CONF.read_text(), re.M))
    mounts = bind_mounts(services.get(GATEWAY) or {})
    if len(roots) != 1:
        problems.append(f"{NGINX_CONF.relative_to(ROOT)}: expected one `root` (the storefront), "
                        f"found {sorted(roots) or 'none'}")
    for root in sorted(roots):
        source, read_only = mounts.get(root, (None, False))
        if source is None:
            problems.append(f"{GATEWAY}: nothing is mounted at {root}, which nginx.conf serves")
        elif (COMPOSE_FILE.parent / source).resolve() != STOREFRONT:
            problems.append(f"{GATEWAY}: {root} is mounted from {source}, not web/public")
        elif not read_only:
            problems.append(f"{GATEWAY}: the storefront at {root} is not mounted read-only")
    if not (STOREFRONT / "index.html").is_file():
        problems.append("web/public/index.html is missing")

    # 7. Observability.
    problems += check_observability(services, app_services, defined or set(services))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--file", action="append", default=[],
                        help="a compose file (repeatable; default: docker-compose.yml)")
    parser.add_argument("--profile", action="append", default=[],
                        help="a compose profile to enable (repeatable)")
    args = parser.parse_args()
    files = args.file or [COMPOSE_FILE]
    stack = load_stack(files, args.profile)
    problems = check(stack, defined_services(files))
    names = ", ".join(Path(file).name for file in files)
    label = f"{names} (profiles: {', '.join(args.profile) or 'none'})"
    if problems:
        print(f"{label}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"{label}: {len(stack['services'])} services, all checks passed")


if __name__ == "__main__":
    main()
