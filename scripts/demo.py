#!/usr/bin/env python3
"""`make demo`: a walk through the system that a learner can read and follow.

It registers a customer, gets a token, lists the catalog, places three orders — one that
is confirmed, one rejected as out of stock, one rejected for insufficient funds — cancels
the confirmed one, and shows the final state of the orders, the wallet and the stock.

Works against `make run` (each service on its own port) or `docker compose up` (everything
behind the gateway on port 8080): it uses the gateway when one answers on
DEMO_GATEWAY_URL (default http://localhost:8080), else the local ports. Needs the demo
catalog (`make run` and the compose stack load it). Standard library only.

Each order's trace is drawn as a tree when a dev-otlp receiver answers on DEMO_TRACES_URL
(default http://127.0.0.1:4318, where `make run` starts one): the trace id comes from the
`traceresponse` header of the order's POST. DEMO_TRACE_ALL=1 shows every span, not only
the ones that cross a process and the event handlers' steps.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

GATEWAY = os.environ.get("DEMO_GATEWAY_URL", "http://localhost:8080")
TRACES = os.environ.get("DEMO_TRACES_URL", "http://127.0.0.1:4318")
LOCAL = {
    "user": "http://127.0.0.1:8081",
    "order": "http://127.0.0.1:8082",
    "payment": "http://127.0.0.1:8083",
    "inventory": "http://127.0.0.1:8084",
}
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = GREEN = RED = RESET = ""


class Unreachable(OSError):
    """Nothing answered at a URL (refused, timed out, unknown host). An OSError, so that
    the probes of the gateway and of the trace receiver treat it as before."""

    def __init__(self, url, reason):
        super().__init__(f"{url} did not answer ({reason})")
        self.url, self.reason = url, reason


def http(method, url, body=None, token=None, headers_out=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if headers_out is not None:
                headers_out.update({k.lower(): v for k, v in response.headers.items()})
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError as error:
        # URLError wraps the socket's error; a timeout while reading comes bare.
        reason = getattr(error, "reason", None) or error
        raise Unreachable(url, getattr(reason, "strerror", None) or reason) from error


def base_urls():
    try:
        status, _ = http("GET", f"{GATEWAY}/api/v1/products?limit=1")
        if status == 200:
            return {service: GATEWAY for service in LOCAL}, f"the gateway at {GATEWAY}"
    except (OSError, ValueError):
        pass
    return LOCAL, "the services on ports 8081-8084"


URLS, WHERE = base_urls()


def step(title):
    print(f"\n{BOLD}▸ {title}{RESET}")


def call(service, method, path, body=None, token=None, expect=None, headers_out=None):
    status, answer = http(method, URLS[service] + path, body, token, headers_out)
    shown = json.dumps(body) if body is not None else ""
    print(f"  {DIM}{method} {path} {shown}{RESET}")
    colour = GREEN if 200 <= status < 300 else RED
    print(f"  {colour}← {status}{RESET}")
    if expect is not None and status != expect:
        sys.exit(f"{RED}unexpected answer {status}: {answer}{RESET}")
    return answer


def wait_until_settled(token, order_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        _, order = http("GET", f"{URLS['order']}/api/v1/orders/{order_id}", token=token)
        if order["status"] != "pending" or time.monotonic() > deadline:
            return order
        time.sleep(0.1)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)


# The spans that show the saga's shape: those that cross a process, and the steps of an
# event's handling. The others (a handler's own functions, its queries) are folded away.
SHOWN_KINDS = {"server", "client", "producer", "consumer"}
SHOWN_INTERNAL = ("transaction", "handle ")


def trace_id_of(traceresponse):
    parts = (traceresponse or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def fetch_trace(trace_id, timeout=10.0):
    """The trace's spans once no new one has arrived for a while (the saga's last steps
    arrive after the order settles), or None without a receiver."""
    deadline, spans, stable_since = time.monotonic() + timeout, [], time.monotonic()
    while time.monotonic() < deadline:
        try:
            status, answer = http("GET", f"{TRACES}/traces/{trace_id}")
        except (OSError, ValueError):
            return None
        if status == 200 and len(answer["spans"]) != len(spans):
            spans, stable_since = answer["spans"], time.monotonic()
        elif spans and time.monotonic() - stable_since > 1.5:
            break
        time.sleep(0.2)
    return spans


def draw_trace(spans):
    show_all = os.environ.get("DEMO_TRACE_ALL") == "1"
    by_id = {s["span_id"]: s for s in spans}
    shown = {
        s["span_id"] for s in spans
        if show_all or s["kind"] in SHOWN_KINDS or s["name"].startswith(SHOWN_INTERNAL)
    }

    def shown_parent(span):
        parent = by_id.get(span["parent_span_id"])
        while parent is not None and parent["span_id"] not in shown:
            parent = by_id.get(parent["parent_span_id"])
        return parent["span_id"] if parent else None

    children = {}
    for span in spans:
        if span["span_id"] in shown:
            children.setdefault(shown_parent(span), []).append(span)
    start = min(s["start_unix_nano"] for s in spans)

    def label(span):
        name = span["name"]
        event = span["attributes"].get("cloudevents.event_type") or span["attributes"].get("event_type")
        if event:
            name += f"  {event}"
        elif span["kind"] == "client":
            name += "  " + span["attributes"].get("url.full", "").split("?")[0]
        return name

    rows = []

    def draw(span, prefix, last, depth):
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        rows.append((f"{prefix}{branch}{label(span)}", span))
        below = sorted(children.get(span["span_id"], []), key=lambda s: s["start_unix_nano"])
        for i, child in enumerate(below):
            extend = "" if depth == 0 else ("   " if last else "│  ")
            draw(child, prefix + extend, i == len(below) - 1, depth + 1)

    for root in sorted(children.get(None, []), key=lambda s: s["start_unix_nano"]):
        draw(root, "", True, 0)
    width = max(len(text) for text, _ in rows)
    print(f"  {DIM}{'span':<{width}}  {'service':<17}  {'kind':<8}  {'duration':>11}  start{RESET}")
    for text, span in rows:
        offset = (span["start_unix_nano"] - start) / 1e6
        error = f" {RED}error{RESET}" if span["status"] == "error" else ""
        print(f"  {text:<{width}}  {span['service']:<17}  {span['kind']:<8}  "
              f"{span['duration_ms']:>8.1f} ms  {DIM}+{offset:.0f} ms{RESET}{error}")
    hidden = len(spans) - len(shown)
    if hidden:
        print(f"  {DIM}(+{hidden} internal spans; DEMO_TRACE_ALL=1 shows them){RESET}")


def show_traces(traces):
    step(f"5b. Each order is one trace across the services (spans from the receiver at {TRACES})")
    for label, trace_id in traces.items():
        if trace_id is None:
            print("  no traceresponse header: is the order-service tracing?")
            return
        spans = fetch_trace(trace_id)
        if spans is None:
            print(f"  {DIM}no dev-otlp receiver at {TRACES}: traces go to the collector you configured"
                  f" (with docker compose, open the trace UI the README lists){RESET}")
            return
        print(f"\n  {BOLD}{label}{RESET}  trace {trace_id}")
        if not spans:
            print(f"  {DIM}no spans arrived (is OTEL_EXPORTER_OTLP_ENDPOINT set for the services?){RESET}")
            continue
        draw_trace(spans)


def not_answering(url, reason):
    """The one-line message for a service that does not answer, rather than a traceback."""
    if url.startswith(GATEWAY) and URLS["user"] == GATEWAY:
        who = f"the gateway at {GATEWAY}"
    else:
        service = next((s for s, base in LOCAL.items() if url.startswith(base)), None)
        who = f"{service}-service at {LOCAL[service]}" if service else url
    return (f"make demo: {who} did not answer ({reason}). Start the stack first with "
            f"`make run` (or `docker compose up`), then run `make demo` again.")


def check_reachable():
    """Before anything is created: every service answers (behind the gateway, one did)."""
    if URLS["user"] == GATEWAY:
        return
    for base in LOCAL.values():
        try:
            http("GET", f"{base}/health/live")
        except Unreachable as error:
            sys.exit(not_answering(error.url, error.reason))


def main():
    check_reachable()
    print(f"{BOLD}Shop demo{RESET} — talking to {WHERE}")

    step("1. Register a customer (user-service publishes UserRegistered; payment-service opens a wallet)")
    email = f"demo-{uuid.uuid4().hex[:6]}@example.com"
    call("user", "POST", "/api/v1/users", {"email": email, "password": "demo-password", "name": "Demo Customer"}, expect=201)

    step("2. Log in: an EdDSA-signed JWT, verified by the other services against user-service's JWKS")
    token = call("user", "POST", "/api/v1/auth/token", {"email": email, "password": "demo-password"}, expect=200)["access_token"]
    print(f"  token: {token[:32]}…")
    wait_for(lambda: http("GET", f"{URLS['payment']}/api/v1/wallets/me", token=token)[0] == 200)
    wallet = call("payment", "GET", "/api/v1/wallets/me", token=token, expect=200)
    print(f"  wallet: {wallet['balance_cents'] / 100:.2f} USD")

    step("3. The catalog (public)")
    catalog = call("inventory", "GET", "/api/v1/products?limit=100", expect=200)["items"]
    by_sku = {p["sku"]: p for p in catalog}
    for product in catalog:
        print(f"  {product['sku']:<24} {product['price_cents'] / 100:>9.2f} USD   available {product['available']}")
    try:
        mug, limited, espresso = by_sku["DEMO-ENAMEL-MUG"], by_sku["DEMO-LIMITED-PRINT"], by_sku["DEMO-ESPRESSO-MACHINE"]
    except KeyError:
        sys.exit("The demo catalog is missing: run `inventory-service seed-demo` (make run does).")

    step("4. Three orders. Each is accepted as 'pending' (202); the saga decides in the background")
    orders, traces = {}, {}
    for label, product, quantity in [
        ("a mug", mug, 1),
        (f"3 limited prints (only {limited['available']} in stock)", limited, 3),
        ("an espresso machine (more than the wallet holds)", espresso, 1),
    ]:
        print(f"  {BOLD}{label}{RESET}")
        headers = {}
        order = call("order", "POST", "/api/v1/orders", {"items": [{"product_id": product["id"], "quantity": quantity}]}, token=token, expect=202, headers_out=headers)
        orders[label] = order["id"]
        traces[label] = trace_id_of(headers.get("traceresponse"))

    step("5. The outcomes, once the events have flowed (OrderPlaced → Stock* → Payment* → order)")
    settled = {label: wait_until_settled(token, order_id) for label, order_id in orders.items()}
    for label, order in settled.items():
        reason = f" ({order['status_reason']})" if order.get("status_reason") else ""
        print(f"  {label:<55} {BOLD}{order['status']}{reason}{RESET}")
    confirmed = settled["a mug"]
    if confirmed["status"] != "confirmed":
        sys.exit(f"{RED}the mug order was not confirmed; is the broker running?{RESET}")
    show_traces(traces)

    wallet = call("payment", "GET", "/api/v1/wallets/me", token=token, expect=200)
    print(f"  wallet after paying for the mug: {wallet['balance_cents'] / 100:.2f} USD")

    step("6. Cancel the confirmed order: OrderCancelled → payment refunds (once), inventory returns the stock")
    cancelled = call("order", "POST", f"/api/v1/orders/{confirmed['id']}/cancel", token=token, expect=200)
    print(f"  status: {BOLD}{cancelled['status']} ({cancelled['status_reason']}){RESET}")
    wait_for(lambda: http("GET", f"{URLS['payment']}/api/v1/wallets/me", token=token)[1]["balance_cents"] == 100000)

    step("7. Final state")
    for label, order_id in orders.items():
        _, order = http("GET", f"{URLS['order']}/api/v1/orders/{order_id}", token=token)
        reason = f" ({order['status_reason']})" if order.get("status_reason") else ""
        print(f"  order {order_id[:8]}… {label:<55} {order['status']}{reason}")
    wallet = call("payment", "GET", "/api/v1/wallets/me", token=token, expect=200)
    print(f"  wallet: {wallet['balance_cents'] / 100:.2f} USD (the refund is back)")
    for product in (mug, limited, espresso):
        _, now = http("GET", f"{URLS['inventory']}/api/v1/products/{product['id']}")
        print(f"  stock {now['sku']:<24} available {now['available']}, reserved {now['reserved']}")
    print(f"\n{GREEN}Demo complete.{RESET}")


if __name__ == "__main__":
    try:
        main()
    except Unreachable as error:  # a service went away during the walk
        sys.exit(not_answering(error.url, error.reason))
