#!/usr/bin/env python3
"""The storefront and the API on one origin, without Docker: `make run` starts this.

    python3 web/serve.py [--listen 127.0.0.1:8080] [--root web/public]
                         [--user URL] [--order URL] [--payment URL] [--inventory URL]

It does locally what the compose gateway (deploy/compose/gateway/nginx.conf) does:
serves the static files of web/public/ at /, and forwards /api/v1/... by path prefix to
the service that owns it (the same routes; web/tests/test_serve.py checks that they stay
the same). Requests and answers pass through unchanged — method, path and query, headers
(Authorization, Idempotency-Key, traceparent, ...), status codes, bodies streamed — except
for the headers a proxy must own: X-Forwarded-For is set to the client's address, never
appended to; Forwarded is dropped; X-Request-Id is kept when safe, made up otherwise, and
returned. Errors of its own answer in problem+json like the gateway's. The static files
carry a Content-Security-Policy of default-src 'self'.

Listens on 127.0.0.1 only: it is a development tool, not a production server (compose and
Kubernetes use nginx and an Ingress). Standard library only.
"""

import argparse
import http.client
import json
import re
import sys
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent / "public"

# Path prefix -> service, in the gateway's order. Keep in step with nginx.conf.
ROUTES = [
    (re.compile(r"^/api/v1/(users|auth)(/|$)"), "user"),
    (re.compile(r"^/\.well-known/jwks\.json$"), "user"),
    (re.compile(r"^/api/v1/orders(/|$)"), "order"),
    (re.compile(r"^/api/v1/(wallets|payments)(/|$)"), "payment"),
    (re.compile(r"^/api/v1/products(/|$)"), "inventory"),
]
DEFAULT_UPSTREAMS = {
    "user": "http://127.0.0.1:8081",
    "order": "http://127.0.0.1:8082",
    "payment": "http://127.0.0.1:8083",
    "inventory": "http://127.0.0.1:8084",
}

MAX_BODY_BYTES = 256 * 1024  # the gateway's client_max_body_size; services apply less
CONNECT_TIMEOUT_SECS = 2
READ_TIMEOUT_SECS = 15
CHUNK = 64 * 1024

# Never forwarded: hop-by-hop headers (RFC 9110 §7.6.1), and those this proxy sets itself.
REQUEST_DROPPED = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host", "forwarded",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
    "expect",  # a 100-continue is answered here (http.server does it) before the body is read
}
RESPONSE_DROPPED = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "x-request-id", "server", "date",
}
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# The same policy as the gateway's: everything from this origin, nothing inline, no frames.
STATIC_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-dev-proxy"
    timeout = 30  # an idle or slow client frees its thread after this

    # Set on the class by serve().
    root = DEFAULT_ROOT
    upstreams = DEFAULT_UPSTREAMS

    def do_GET(self):
        length = self.headers.get("content-length", "")
        self.unread = int(length) if length.isdigit() else 0
        try:
            self.dispatch()
        except (BrokenPipeError, ConnectionResetError):
            # The browser went away (a page left while its request ran): nothing to answer.
            self.close_connection = True

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def dispatch(self):
        self.request_id = self.headers.get("x-request-id", "")
        if not SAFE_REQUEST_ID.match(self.request_id):
            self.request_id = uuid.uuid4().hex
        path = urllib.parse.urlsplit(self.path).path
        # nginx routes on the path with `.` and `..` resolved, so that
        # /api/v1/products/../../metrics cannot reach /metrics; browsers never send such
        # paths, so here they are simply refused.
        if any(s in (".", "..") for s in urllib.parse.unquote(path).split("/")):
            return self.not_found()
        for pattern, service in ROUTES:
            if pattern.match(path):
                return self.forward(service)
        if path == "/healthz":
            return self.reply(200, "text/plain", b"ok\n")
        return self.static(path)

    # --- the API ---------------------------------------------------------------------
    def forward(self, service):
        length = self.unread
        if self.headers.get("transfer-encoding"):
            self.close_connection = True
            return self.problem(411, "Length Required", "Send the request body with a Content-Length.")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return self.problem(413, "Content Too Large",
                                "The request body is larger than the gateway accepts.")
        base = urllib.parse.urlsplit(self.upstreams[service])
        upstream = http.client.HTTPConnection(base.hostname, base.port or 80,
                                              timeout=CONNECT_TIMEOUT_SECS)
        try:
            try:
                upstream.connect()
            except OSError:
                return self.unavailable()
            upstream.sock.settimeout(READ_TIMEOUT_SECS)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in REQUEST_DROPPED:
                    upstream.putheader(name, value)
            upstream.putheader("Host", self.headers.get("host", base.netloc))
            upstream.putheader("X-Forwarded-For", self.client_address[0])
            upstream.putheader("X-Forwarded-Proto", "http")
            upstream.putheader("X-Forwarded-Host", self.headers.get("host", ""))
            upstream.putheader("X-Request-Id", self.request_id)
            if length or self.command in ("POST", "PUT", "PATCH"):
                upstream.putheader("Content-Length", str(length))
            upstream.endheaders()
            while self.unread:
                chunk = self.rfile.read(min(CHUNK, self.unread))
                if not chunk:
                    break
                self.unread -= len(chunk)
                upstream.send(chunk)
            response = upstream.getresponse()
        except TimeoutError:
            return self.problem(504, "Gateway Timeout", "The service for this route did not answer in time.")
        except (OSError, http.client.HTTPException):
            return self.unavailable()
        with response:
            self.relay(response)
        upstream.close()

    def relay(self, response):
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in RESPONSE_DROPPED:
                self.send_header(name, value)
        self.send_header("X-Request-Id", self.request_id)
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        length = response.getheader("content-length")
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := response.read(CHUNK):
                self.wfile.write(chunk)
            return
        # No length: pass each piece on as it arrives (chunked), not after the end.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := response.read1(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def unavailable(self):
        self.log_error("%s %s: the service is not reachable", self.command, self.path)
        return self.problem(503, "Service Unavailable",
                            "The service for this route is not reachable. Try again shortly.",
                            {"Retry-After": "5"})

    # --- the storefront ---------------------------------------------------------------
    def static(self, path):
        segments = [s for s in urllib.parse.unquote(path).split("/") if s]
        # No way out of the root, and no hidden files.
        if any(s.startswith(".") or "\\" in s or "\0" in s for s in segments):
            return self.not_found()
        file = self.root.joinpath(*segments) if segments else self.root / "index.html"
        if file.is_dir():
            file = file / "index.html"
        if not file.is_file():
            return self.not_found()
        if self.command not in ("GET", "HEAD"):
            return self.problem(405, "Method Not Allowed", "The storefront files are read-only.",
                                {"Allow": "GET, HEAD"})
        content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
        return self.reply(200, content_type, file.read_bytes(), STATIC_HEADERS)

    def not_found(self):
        return self.problem(404, "Not Found", "No API route or storefront file matches this path.")

    # --- answers of its own -----------------------------------------------------------
    def problem(self, status, title, detail, headers=None):
        body = json.dumps({"type": "about:blank", "title": title, "status": status,
                           "detail": detail}).encode()
        self.discard_body()
        return self.reply(status, "application/problem+json", body, headers)

    def discard_body(self):
        # What the client sent and nobody read, so that the connection can serve the next
        # request (a body too large to read closes the connection instead).
        if 0 < self.unread <= MAX_BODY_BYTES and not self.close_connection:
            self.rfile.read(self.unread)
        self.unread = 0

    def reply(self, status, content_type, body, headers=None):
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", self.request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        # Quiet for answers that went well; make run's output is for the services' logs.
        if isinstance(code, int) and code >= 500:
            super().log_request(code, size)


def parse_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=parse_address, default=("127.0.0.1", 8080),
                        help="HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks one)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="the storefront's files (default web/public)")
    for service, url in DEFAULT_UPSTREAMS.items():
        parser.add_argument(f"--{service}", default=url, metavar="URL",
                            help=f"{service}-service (default {url})")
    args = parser.parse_args()
    Proxy.root = args.root.resolve()
    Proxy.upstreams = {service: getattr(args, service) for service in DEFAULT_UPSTREAMS}
    try:
        server = ThreadingHTTPServer(args.listen, Proxy)
    except OSError as error:
        sys.exit(f"cannot listen on {args.listen[0]}:{args.listen[1]} ({error.strerror}); "
                 f"stop what uses it or pass --listen HOST:PORT")
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"storefront on http://{host}:{port}/ ; API routed to "
          + ", ".join(f"{s} {u}" for s, u in Proxy.upstreams.items()), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
