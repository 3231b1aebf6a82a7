#!/usr/bin/env python3
"""Walks the main flows of the four services and checks every answer.

register -> token -> admin creates a product -> public product list -> place an order ->
the order is pending at the catalog price -> the saga confirms it within 2 seconds and
charges the wallet -> an order above the balance is rejected with insufficient_funds ->
every service is ready -> /metrics counted those requests -> Swagger UI loads.

Standard library only. Service addresses come from USER_URL, ORDER_URL, PAYMENT_URL and
INVENTORY_URL (defaults: the local ports 8081-8084).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

URLS = {
    "user": os.environ.get("USER_URL", "http://127.0.0.1:8081"),
    "order": os.environ.get("ORDER_URL", "http://127.0.0.1:8082"),
    "payment": os.environ.get("PAYMENT_URL", "http://127.0.0.1:8083"),
    "inventory": os.environ.get("INVENTORY_URL", "http://127.0.0.1:8084"),
}
ADMIN = (os.environ.get("ADMIN_EMAIL", "admin@example.com"),
         os.environ.get("ADMIN_PASSWORD", "admin-password"))


def call(service, method, path, body=None, token=None):
    """Returns (status, headers, body as text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(URLS[service] + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def expect(step, status, expected, text):
    if status != expected:
        sys.exit(f"FAILED {step}: expected {expected}, got {status}: {text}")
    print(f"ok  {step} ({status})")


def wait_until_ready(deadline_s=90):
    deadline = time.monotonic() + deadline_s
    pending = set(URLS)
    while pending and time.monotonic() < deadline:
        for service in sorted(pending):
            try:
                status, _, _ = call(service, "GET", "/health/ready")
            except OSError:
                continue
            if status == 200:
                pending.discard(service)
        if pending:
            time.sleep(0.25)
    if pending:
        sys.exit(f"FAILED: not ready after {deadline_s}s: {', '.join(sorted(pending))}")
    print("ok  all four services are ready")


def metric(service, endpoint, method, status):
    _, _, text = call(service, "GET", "/metrics")
    for line in text.splitlines():
        if (line.startswith("shop_http_requests_total{")
                and f'endpoint="{endpoint}"' in line
                and f'method="{method}"' in line
                and f'status="{status}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main():
    wait_until_ready()

    email = f"walk-{uuid.uuid4().hex[:8]}@example.com"
    status, _, text = call("user", "POST", "/api/v1/users",
                           {"email": email, "password": "walk-password", "name": "Walker"})
    expect("register a customer", status, 201, text)

    status, _, text = call("user", "POST", "/api/v1/auth/token",
                           {"email": email, "password": "walk-password"})
    expect("get a customer token", status, 200, text)
    customer = json.loads(text)["access_token"]

    status, _, text = call("user", "POST", "/api/v1/auth/token",
                           {"email": ADMIN[0], "password": ADMIN[1]})
    expect("get an admin token", status, 200, text)
    admin = json.loads(text)["access_token"]

    # payment-service opens the wallet when UserRegistered arrives.
    deadline = time.monotonic() + 10.0
    while call("payment", "GET", "/api/v1/wallets/me", token=customer)[0] != 200:
        if time.monotonic() > deadline:
            sys.exit("FAILED: no wallet opened for the new customer within 10 s")
        time.sleep(0.05)
    print("ok  payment-service opened the customer's wallet (UserRegistered)")

    sku = f"WALK-{uuid.uuid4().hex[:8]}"
    status, _, text = call("inventory", "POST", "/api/v1/products",
                           {"sku": sku, "name": "Walk mug", "description": "Enamel",
                            "price_cents": 1250, "stock": 10}, admin)
    expect("admin creates a product", status, 201, text)
    product = json.loads(text)

    status, _, text = call("inventory", "GET", "/api/v1/products?limit=100")
    expect("public product list", status, 200, text)
    if product["id"] not in [p["id"] for p in json.loads(text)["items"]]:
        sys.exit("FAILED: the new product is not in the public list")

    status, _, text = call("order", "POST", "/api/v1/orders",
                           {"items": [{"product_id": product["id"], "quantity": 2}]}, customer)
    expect("place an order", status, 202, text)
    order_id = json.loads(text)["id"]

    status, _, text = call("order", "GET", f"/api/v1/orders/{order_id}", token=customer)
    expect("read the order", status, 200, text)
    order = json.loads(text)
    if order["status"] != "pending":
        sys.exit(f"FAILED: order status is {order['status']}, expected pending")
    if order["items"][0]["unit_price_cents"] != 1250 or order["total_cents"] != 2500:
        sys.exit(f"FAILED: order not priced from the catalog: {order}")
    print("ok  the order is pending at the catalog price (2 x 1250 = 2500)")

    # The saga: pending -> confirmed by events, within 2 seconds.
    deadline = time.monotonic() + 2.0
    while True:
        status, _, text = call("order", "GET", f"/api/v1/orders/{order_id}", token=customer)
        current = json.loads(text)
        if current["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if current["status"] != "confirmed":
        sys.exit(f"FAILED: order not confirmed within 2 s: {current['status']} {current.get('status_reason')}")
    print("ok  the saga confirmed the order within 2 seconds")

    status, _, text = call("payment", "GET", "/api/v1/wallets/me", token=customer)
    expect("read the wallet", status, 200, text)
    balance = json.loads(text)["balance_cents"]
    if balance != 100000 - 2500:
        sys.exit(f"FAILED: wallet balance {balance}, expected 97500")
    print("ok  the wallet was charged 2500")

    status, _, text = call("inventory", "POST", "/api/v1/products",
                           {"sku": f"WALK-BIG-{uuid.uuid4().hex[:8]}", "name": "Walk espresso machine",
                            "description": "", "price_cents": 150000, "stock": 3}, admin)
    expect("admin creates an expensive product", status, 201, text)
    expensive = json.loads(text)
    status, _, text = call("order", "POST", "/api/v1/orders",
                           {"items": [{"product_id": expensive["id"], "quantity": 1}]}, customer)
    expect("place an order above the balance", status, 202, text)
    big_order = json.loads(text)["id"]
    deadline = time.monotonic() + 10.0
    while True:
        status, _, text = call("order", "GET", f"/api/v1/orders/{big_order}", token=customer)
        current = json.loads(text)
        if current["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if (current["status"], current.get("status_reason")) != ("rejected", "insufficient_funds"):
        sys.exit(f"FAILED: expected rejected/insufficient_funds, got {current['status']}/{current.get('status_reason')}")
    print("ok  the order above the balance was rejected: insufficient_funds")

    for service in URLS:
        status, _, text = call(service, "GET", "/health/ready")
        expect(f"{service}-service /health/ready", status, 200, text)

    counted = [
        ("user", "/api/v1/users", "POST", "201"),
        ("user", "/api/v1/auth/token", "POST", "200"),
        ("inventory", "/api/v1/products", "POST", "201"),
        ("inventory", "/api/v1/products", "GET", "200"),
        ("order", "/api/v1/orders", "POST", "202"),
        ("order", "/api/v1/orders/{id}", "GET", "200"),
    ]
    for service, endpoint, method, status_code in counted:
        value = metric(service, endpoint, method, status_code)
        if value < 1:
            sys.exit(f"FAILED: {service}-service /metrics has no {method} {endpoint} {status_code}")
        print(f"ok  {service}-service /metrics counts {method} {endpoint} {status_code}: {value:g}")

    for service in URLS:
        status, _, text = call(service, "GET", "/swagger-ui/")
        expect(f"{service}-service /swagger-ui/", status, 200, text[:200])
        if "swagger-ui" not in text:
            sys.exit(f"FAILED: {service}-service /swagger-ui/ is not the Swagger UI page")

    print("walk complete: 4 services and the saga, every step as documented")


if __name__ == "__main__":
    main()
