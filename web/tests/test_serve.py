#!/usr/bin/env python3
"""Tests of web/serve.py, `make run`'s same-origin proxy, against stand-in services.

    python3 web/tests/test_serve.py

The proxy must behave like the compose gateway, so it first passes the gateway's own
checks (deploy/compose/test_gateway.py `run_checks`: routes, headers, status codes, the
storefront's files and headers, problem+json errors, a service that is down). Then what
only the proxy promises: its route table is the gateway's, and a response body is passed on
as it arrives, not after it ended. Standard library only; ends with "N passed, N failed".
"""

import http.client
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True  # no __pycache__ left in the tree by the imports below
sys.path.insert(0, str(ROOT / "deploy" / "compose"))
sys.path.insert(0, str(ROOT / "web"))

import serve  # noqa: E402
import test_gateway as gateway  # noqa: E402

SERVICE_OF_HOST = {f"{name}-service": name for name in serve.DEFAULT_UPSTREAMS}


def start_proxy(ports):
    command = [sys.executable, str(ROOT / "web" / "serve.py"), "--listen", "127.0.0.1:0"]
    for host, port in ports.items():
        command += [f"--{SERVICE_OF_HOST[host]}", f"http://127.0.0.1:{port}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        process.kill()
        sys.exit(f"the proxy did not start: {line!r}")
    return process, int(match.group(1))


def nginx_routes():
    """(path regex, service) of each API location of nginx.conf, in order."""
    routes = []
    pattern = r"location\s+(~|=)\s+(\S+)\s*\{\s*set \$upstream http://([a-z-]+):\d+;"
    for kind, path, host in re.findall(pattern, gateway.CONF.read_text()):
        regex = path if kind == "~" else "^" + path.replace(".", r"\.") + "$"
        routes.append((regex, SERVICE_OF_HOST[host]))
    return routes


class Slow(BaseHTTPRequestHandler):
    """Answers in two chunks, the second only once the test has read the first."""

    protocol_version = "HTTP/1.1"
    first_read = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in (b"first ", b"second"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            if piece == b"first ":
                Slow.first_read.wait(timeout=10)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def run_own_checks(check):
    routes = [(pattern.pattern, service) for pattern, service in serve.ROUTES]
    check("the proxy's routes are nginx.conf's, in the same order", routes == nginx_routes(),
          f"{routes} != {nginx_routes()}")

    slow = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    process, port = start_proxy({"order-service": slow.server_address[1]})
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/v1/orders")
        response = connection.getresponse()
        try:
            first = response.read1(64)
        except TimeoutError:
            first = b""
        Slow.first_read.set()
        check("a body is passed on as it arrives (streamed)", first == b"first ", first)
        if first:
            rest = response.read()
            check("  and whole", first + rest == b"first second", first + rest)
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        slow.shutdown()


def main():
    upstreams = {name for name, _ in gateway.upstreams_of(gateway.CONF.read_text())}
    ports = gateway.start_stand_ins(upstreams)
    process, port = start_proxy(ports)
    results = []
    try:
        results += gateway.run_checks(port, upstreams)
    finally:
        process.terminate()
        process.wait(timeout=10)

    def check(name, condition, detail=""):
        results.append(bool(condition))
        print(f"{'ok  ' if condition else 'FAIL'} {name}" + ("" if condition else f": {detail}"))

    run_own_checks(check)
    passed = sum(results)
    print(f"\n{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
