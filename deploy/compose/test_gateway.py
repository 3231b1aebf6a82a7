#!/usr/bin/env python3
"""Runs the gateway's real nginx.conf against stand-in services, with no Docker.

    python3 deploy/compose/test_gateway.py [--nginx /path/to/nginx]

The configuration is copied with four substitutions only — each upstream `http://name:port`
becomes a local stand-in that echoes what it received, the listen port a free local port,
/tmp a scratch directory, and the storefront's root the repository's web/public — then
nginx runs it in the foreground while this script checks what the gateway promises
(docs/deployment-compose.md, "The gateway"): the routes, the headers it sets, removes and
passes through, status codes, the storefront's files and their security headers, and its
problem+json errors. One stand-in is left unstarted to see how the gateway answers when a
service is down.

`make run`'s proxy (web/serve.py) mirrors the gateway; web/tests/test_serve.py runs the
same checks (`run_checks`) against it.

Needs an nginx binary (any version from 1.19 on): `nginx` on the PATH, or --nginx.
Standard library only. Ends with an "N passed, N failed" line.
"""

import argparse
import hashlib
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONF = Path(__file__).resolve().parent / "gateway" / "nginx.conf"
STOREFRONT = Path(__file__).resolve().parents[2] / "web" / "public"
STOREFRONT_IN_IMAGE = "/usr/share/nginx/html"  # where docker-compose.yml mounts it
DOWN = "payment-service"  # the stand-in that is never started


class Echo(BaseHTTPRequestHandler):
    """A stand-in service: answers with the method, path, headers and body (its length and
    digest) it received; with the status `x-echo-status` asks for (default 200)."""

    def handle_one(self):
        length = int(self.headers.get("content-length") or 0)
        received = self.rfile.read(length)
        body = json.dumps({
            "service": self.server.service_name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": len(received),
            "body_sha256": hashlib.sha256(received).hexdigest(),
        }).encode()
        self.send_response(int(self.headers.get("x-echo-status") or 200))
        self.send_header("content-type", "application/json")
        self.send_header("location", "/api/v1/echo/1")
        # The services echo the request id too; the gateway must not send it twice.
        self.send_header("x-request-id", self.headers.get("x-request-id", ""))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = handle_one

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upstreams_of(text):
    """The (service, port) pairs a gateway configuration routes to."""
    return sorted(set(re.findall(r"http://([a-z0-9-]+):(\d+)", text)))


def start_stand_ins(names):
    """An Echo stand-in on a free port for each service name, except DOWN: {name: port}."""
    ports = {}
    for name in names:
        if name == DOWN:
            ports[name] = free_port()  # nothing listens there
            continue
        server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        server.service_name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ports[name] = server.server_address[1]
    return ports


def start_gateway(nginx, scratch):
    text = CONF.read_text()
    upstreams = upstreams_of(text)
    ports = start_stand_ins(name for name, _ in upstreams)
    for name, port in upstreams:
        text = text.replace(f"http://{name}:{port}", f"http://127.0.0.1:{ports[name]}")
    gateway_port = free_port()
    text = re.sub(r"listen\s+8080;", f"listen 127.0.0.1:{gateway_port};", text)
    text = text.replace("/tmp/", f"{scratch}/")
    if STOREFRONT_IN_IMAGE not in text:
        sys.exit(f"{CONF.name} does not serve the storefront from {STOREFRONT_IN_IMAGE}")
    text = text.replace(STOREFRONT_IN_IMAGE, str(STOREFRONT))
    conf = Path(scratch) / "nginx.conf"
    conf.write_text(text)
    process = subprocess.Popen(
        [nginx, "-e", "stderr", "-p", f"{scratch}/", "-c", str(conf),
         "-g", "daemon off; master_process off;"],
        stdout=subprocess.DEVNULL, stderr=open(Path(scratch) / "error.log", "w"))
    for _ in range(100):
        if process.poll() is not None:
            sys.exit("nginx did not start:\n" + (Path(scratch) / "error.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", gateway_port), timeout=0.1).close()
            return process, gateway_port, {name for name, _ in upstreams}
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("nginx did not listen within 5 s")


def request(port, method, path, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return response.status, response.headers, payload


def run_checks(port, upstreams):
    results = []

    def check(name, condition, detail=""):
        results.append(bool(condition))
        print(f"{'ok  ' if condition else 'FAIL'} {name}" + ("" if condition else f": {detail}"))

    routes = {
        "/api/v1/users": "user-service",
        "/api/v1/users/me": "user-service",
        "/api/v1/auth/token": "user-service",
        "/.well-known/jwks.json": "user-service",
        "/api/v1/orders": "order-service",
        "/api/v1/orders/0190-abc/cancel": "order-service",
        "/api/v1/products?ids=a,b": "inventory-service",
        "/api/v1/products/0190-abc/stock": "inventory-service",
    }
    check("every upstream of the configuration is covered",
          upstreams >= set(routes.values()) | {DOWN}, sorted(upstreams))
    for path, service in routes.items():
        status, _, body = request(port, "GET", path)
        got = body.get("service") if isinstance(body, dict) else None
        check(f"GET {path} -> {service}", status == 200 and got == service, f"{status} {body}")
        if got:
            check(f"  path and query reach {service} unchanged", body["path"] == path, body["path"])

    for path in ["/api/v1/usersx", "/api/v1/productsfoo", "/metrics", "/health/ready",
                 "/swagger-ui/", "/api-docs/openapi.json", "/api/v2/orders", "/nothing.js"]:
        status, headers, body = request(port, "GET", path)
        check(f"GET {path} -> 404 problem+json (not routed)",
              status == 404 and headers.get("content-type") == "application/problem+json"
              and isinstance(body, dict) and body.get("status") == 404, f"{status} {body}")
    status, _, _ = request(port, "GET", "/api/v1/products/../../metrics")
    check("a dot-dot path cannot reach an internal endpoint", status == 404, status)
    for path in ["/../README.md", "/%2e%2e/README.md", "/js/../../README.md"]:
        status, _, _ = request(port, "GET", path)
        check(f"GET {path} cannot leave the storefront's folder", status in (400, 404), status)

    # The storefront: its files, with the security headers that keep the page to one origin.
    status, headers, body = request(port, "GET", "/")
    check("GET / -> the storefront's index.html",
          status == 200 and headers.get("content-type", "").startswith("text/html")
          and isinstance(body, str) and 'src="js/main.js"' in body, f"{status} {headers}")
    check("  with a Content-Security-Policy of default-src 'self'",
          "default-src 'self'" in (headers.get("content-security-policy") or ""),
          headers.get("content-security-policy"))
    check("  nosniff, no referrer, revalidated",
          headers.get("x-content-type-options") == "nosniff"
          and headers.get("referrer-policy") == "no-referrer"
          and headers.get("cache-control") == "no-cache", dict(headers))
    check("  and its request id", headers.get("x-request-id"), dict(headers))
    for path, kind in [("/js/main.js", "text/javascript"), ("/app.css", "text/css"),
                       ("/favicon.svg", "image/svg+xml")]:
        status, headers, body = request(port, "GET", path)
        check(f"GET {path} -> 200 {kind}", status == 200
              and headers.get("content-type", "").split(";")[0] == kind
              and (STOREFRONT / path.lstrip("/")).read_text() == body, f"{status} {headers}")
    status, headers, body = request(port, "POST", "/index.html", {"content-type": "text/plain"}, b"x")
    check("POST to a storefront file -> 405 problem+json",
          status == 405 and headers.get("content-type") == "application/problem+json", f"{status} {body}")

    # What a client sends reaches the service, and what it answers comes back.
    payload = json.dumps({"items": [{"product_id": "0190-abc", "quantity": 2}]}).encode()
    status, headers, body = request(port, "POST", "/api/v1/orders?x=1", {
        "content-type": "application/json", "authorization": "Bearer a.b.c",
        "idempotency-key": "key-42", "x-echo-status": "202"}, body=payload)
    sent = body["headers"] if isinstance(body, dict) else {}
    check("POST passes method, body, Authorization and Idempotency-Key through",
          body.get("method") == "POST" and body.get("body_length") == len(payload)
          and body.get("body_sha256") == hashlib.sha256(payload).hexdigest()
          and sent.get("authorization") == "Bearer a.b.c" and sent.get("idempotency-key") == "key-42",
          body)
    check("  and the service's status and headers back", status == 202
          and headers.get("location") == "/api/v1/echo/1", f"{status} {dict(headers)}")
    for code in [401, 404, 409, 422, 429]:
        status, _, _ = request(port, "GET", "/api/v1/products", {"x-echo-status": str(code)})
        check(f"a service's {code} passes through unchanged", status == code, status)

    status, headers, body = request(port, "GET", "/api/v1/products", {
        "X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9",
        "X-Request-Id": "demo-42.a:b",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    sent = body["headers"]
    check("X-Forwarded-For is set to the client address, not appended to",
          sent.get("x-forwarded-for") == "127.0.0.1", sent.get("x-forwarded-for"))
    check("Forwarded is removed", "forwarded" not in sent, sent.get("forwarded"))
    check("a safe X-Request-Id is passed through", sent.get("x-request-id") == "demo-42.a:b",
          sent.get("x-request-id"))
    check("the response carries the request id once",
          headers.get_all("x-request-id") == ["demo-42.a:b"], headers.get_all("x-request-id"))
    check("traceparent passes unchanged", sent.get("traceparent", "").startswith("00-0af76519"),
          sent.get("traceparent"))

    for bad in ["has space", "x" * 129, "<script>"]:
        status, headers, body = request(port, "GET", "/api/v1/products", {"X-Request-Id": bad})
        generated = body["headers"].get("x-request-id", "")
        check(f"an unsafe X-Request-Id ({bad[:12]!r}) is replaced",
              re.fullmatch(r"[0-9a-f]{32}", generated) is not None
              and headers.get("x-request-id") == generated, generated)

    status, headers, body = request(port, "POST", "/api/v1/orders", {
        "content-type": "application/json"}, body=b"x" * 300_000)
    check("a body over the gateway's limit -> 413 problem+json",
          status == 413 and headers.get("content-type") == "application/problem+json",
          f"{status} {body}")
    status, _, body = request(port, "POST", "/api/v1/orders", {
        "content-type": "application/json"}, body=b"x" * 100_000)
    check("a body under it is forwarded (the service applies its own limit)",
          status == 200, status)

    for path in ["/api/v1/wallets/me", "/api/v1/payments?order_id=0190-abc"]:
        status, headers, body = request(port, "GET", path)
        check(f"GET {path} -> {DOWN}, which is down: 503 problem+json with Retry-After",
              status == 503 and headers.get("content-type") == "application/problem+json"
              and headers.get("retry-after") == "5" and headers.get("x-request-id"),
              f"{status} {dict(headers)} {body}")

    status, _, body = request(port, "GET", "/healthz")
    check("GET /healthz -> 200 (the container healthcheck)", status == 200, status)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nginx", default=shutil.which("nginx") or "",
                        help="the nginx binary (default: nginx on the PATH)")
    args = parser.parse_args()
    if not args.nginx:
        sys.exit("no nginx binary: install nginx or pass --nginx PATH")
    with tempfile.TemporaryDirectory(prefix="gateway-test-") as scratch:
        process, port, upstreams = start_gateway(args.nginx, scratch)
        try:
            results = run_checks(port, upstreams)
        finally:
            process.terminate()
            process.wait(timeout=10)
    passed = sum(results)
    print(f"\n{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
