#!/usr/bin/env python3
"""Drives the dashboard (/ui) in a real browser: Debian's chromium through its
chromium-driver, spoken to over the W3C WebDriver protocol with the standard library
only (no browser download, no pip package).

It starts `tenantry serve` (the demo, on a fresh redb store) and checks, as a user would:
- the admin signs in and sees the demo tenants;
- a pod opened from a tenant's page shows its tree of nodes and their states;
- a handler invoked over HTTP shows in the tenant's calls, rate and p99 without a
  reload, and its activation appears in the tenant page's live events, as do throttles;
- a tenant key sees its own tenant only: no other tenant's name on the page or in any
  response the page fetched;
- the admin onboards a tenant and offboards it from the UI, through a confirmation that
  names it;
- every page, at 1280x800 and 390x844, has no horizontal overflow; a screenshot of each
  is written to the output directory;
- with TENANTRY_TEST_POSTGRES_URL and TENANTRY_TEST_NATS_URL set, two cluster nodes are
  started too, and the admin's page shows both members and every shard's owner.

Usage: .ci/browser.py path/to/tenantry [output-dir]
"""

import base64
import random
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ADMIN = "browser-admin-key"
TENANTS = {"acme": "demo-acme-key", "globex": "demo-globex-key", "initech": "demo-initech-key"}
SIZES = [(1280, 800), (390, 844)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, key=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(what, check, timeout=15.0, every=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the page may be between renders
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Browser:
    """A WebDriver session on chromium."""

    def __init__(self, driver_url):
        self.base = driver_url
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,800"],
            },
        }}}
        value = self.call("POST", "/session", caps)
        self.session = f"/session/{value['sessionId']}"

    def call(self, method, path, body=None):
        status, raw = http(method, self.base + path, body if body is not None else ({} if method == "POST" else None), timeout=60)
        answer = json.loads(raw or b"{}")
        if status >= 400:
            raise RuntimeError(f"webdriver {method} {path}: {status} {answer}")
        return answer.get("value")

    def s(self, method, path, body=None):
        return self.call(method, self.session + path, body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.s("POST", "/execute/sync", {"script": source, "args": list(args)})

    def find(self, css):
        found = self.s("POST", "/elements", {"using": "css selector", "value": css})
        return [next(iter(e.values())) for e in found]

    def one(self, css, timeout=15.0):
        return wait_for(f"an element {css}", lambda: (self.find(css) or [None])[0], timeout)

    def click(self, css):
        # The page redraws its tables every 2 s: an element found just before may be
        # gone by the click; find it again.
        for attempt in range(5):
            try:
                self.s("POST", f"/element/{self.one(css)}/click")
                return
            except RuntimeError as error:
                if "stale" not in str(error) or attempt == 4:
                    raise
                time.sleep(0.2)

    def type(self, css, text):
        element = self.one(css)
        self.s("POST", f"/element/{element}/clear")
        self.s("POST", f"/element/{element}/value", {"text": text})

    def text(self):
        return self.script("return document.body.innerText;")

    def size(self, width, height):
        self.s("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))

    def quit(self):
        try:
            self.s("DELETE", "")
        except Exception:
            pass


def check_layout(browser, out, name, focus=None):
    """Screenshots the page at each size (scrolled to `focus`, a CSS selector, if given)
    and checks nothing overflows sideways."""
    for width, height in SIZES:
        browser.size(width, height)
        time.sleep(0.4)
        if focus:
            browser.script("document.querySelector(arguments[0]).scrollIntoView();", focus)
        overflow = browser.script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
        browser.screenshot(os.path.join(out, f"{name}-{width}x{height}.png"))
        assert overflow[0] <= overflow[1], f"{name} overflows at {width}x{height}: {overflow}"
    browser.size(*SIZES[0])


def sign_in(browser, base, key):
    browser.go(f"{base}/ui#/")
    browser.script("sessionStorage.clear(); window.beforeReload = true; location.reload();")
    wait_for("the page reloaded", lambda: browser.script(
        "return window.beforeReload === undefined && document.readyState === 'complete'"
        " && !!document.querySelector('#key');"))
    browser.type("#key", key)
    browser.click("#sign-in button")
    wait_for("signed in", lambda: browser.find("#sign-out") and "Sign in" not in browser.text())


def cell_of(browser, tenant, column):
    return browser.script(
        "const cell = document.querySelector("
        "`#tenants tr[data-partition='${arguments[0]}'] td[data-column='${arguments[1]}']`);"
        "return cell ? cell.textContent : null;", tenant, column)


def calls_of(browser, tenant):
    text = cell_of(browser, tenant, "admitted")
    return None if text is None else int(text)


def serve(binary, data, **env):
    """Starts `tenantry serve` on a free port with `env` added; returns it and its URL."""
    port = free_port()
    env = dict(os.environ, TENANTRY_ADMIN_KEY=ADMIN, RUST_LOG="warn", **env)
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}"


def stop(server):
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def check_cluster(browser, binary, out):
    """Two cluster nodes on PostgreSQL and NATS: the admin's page on one shows both
    members, each with the shards it owns, and a square per shard coloured by owner."""
    pg, nats = os.environ.get("TENANTRY_TEST_POSTGRES_URL"), os.environ.get("TENANTRY_TEST_NATS_URL")
    if not pg or not nats:
        print("cluster view: skipped (TENANTRY_TEST_POSTGRES_URL and TENANTRY_TEST_NATS_URL not set)")
        return
    tag = f"{random.getrandbits(32):x}"
    schema = f"tenantry_browser_{tag}"
    data = tempfile.mkdtemp()
    nodes = []
    try:
        for n in ("n0", "n1"):
            nodes.append(serve(binary, os.path.join(data, n), TENANTRY_POSTGRES_URL=pg,
                               TENANTRY_POSTGRES_SCHEMA=schema, TENANTRY_CLUSTER=nats,
                               TENANTRY_CLUSTER_NAME=f"ui{tag}", TENANTRY_NODE=n))
        base = nodes[0][1]

        def settled():
            status, body = http("GET", f"{base}/v1/admin/cluster", key=ADMIN)
            if status != 200:
                return None
            result = json.loads(body)["result"]
            owners = result["owners"]
            # Both members, every shard owned, and the shards spread (a node that just
            # joined owns none until the next rounds hand it its share).
            spread = all(owners.count(m["node"]) >= len(owners) // 4 for m in result["members"])
            return result if len(result["members"]) == 2 and owners and all(owners) and spread else None
        shards = len(wait_for("two nodes sharing every shard", settled, timeout=90)["owners"])
        sign_in(browser, base, ADMIN)

        def shown():
            owned = browser.script(
                "return Object.fromEntries([...document.querySelectorAll('#members tr[data-node]')]"
                ".map(r => [r.dataset.node, Number(r.querySelector(\"td[data-column='owned']\").textContent)]));")
            squares = browser.script(
                "return [...document.querySelectorAll('#shard-grid .shard')].map(s => s.dataset.owner);")
            # The page draws what the record says: the counts match the squares.
            drawn = {n: squares.count(n) for n in set(squares)}
            ok = (set(owned) == {"n0", "n1"} and sum(owned.values()) == shards
                  and len(squares) == shards and drawn == owned and all(owned.values()))
            return (owned, drawn) if ok else None
        wait_for("both members and every shard's owner drawn", shown, timeout=30)
        check_layout(browser, out, "cluster", focus="#shard-grid")
    finally:
        for server, _ in nodes:
            stop(server)
        shutil.rmtree(data, ignore_errors=True)
        if shutil.which("psql"):
            subprocess.run(["psql", pg, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    print("cluster view: both members and every shard's owner shown")


def main():
    binary = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "target/ui-screenshots"
    os.makedirs(out, exist_ok=True)
    data = tempfile.mkdtemp()
    driver_port = free_port()
    server, base = serve(binary, data)
    driver = subprocess.Popen([shutil.which("chromedriver") or "/usr/bin/chromedriver", f"--port={driver_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    browser = None
    try:
        wait_for("the server", lambda: http("GET", f"{base}/readyz")[0] == 200)
        wait_for("the driver", lambda: http("GET", f"http://127.0.0.1:{driver_port}/status")[0] == 200)
        browser = Browser(f"http://127.0.0.1:{driver_port}")

        # The admin sees the demo tenants.
        sign_in(browser, base, ADMIN)
        for tenant in TENANTS:
            wait_for(f"tenant {tenant} listed", lambda t=tenant: calls_of(browser, t) is not None)
        check_layout(browser, out, "tenants")

        # A call over HTTP shows without a reload.
        before = calls_of(browser, "acme")
        for _ in range(5):
            status, _ = http("POST", f"{base}/v1/partitions/acme/invoke/tenant-db.query",
                             {"sql": "select 1"}, TENANTS["acme"])
            assert status == 200, status
        wait_for("acme's calls to rise", lambda: calls_of(browser, "acme") >= before + 5)
        # Once their second is whole, they show in the rate and the p99 too.
        wait_for("acme's rate and p99", lambda: float(cell_of(browser, "acme", "rate")) > 0
                 and cell_of(browser, "acme", "p99").endswith(" ms"))

        # The tenant page: its live events show an activation made over HTTP.
        browser.go(f"{base}/ui#/tenant/acme")
        wait_for("the event stream open", lambda: browser.find("#events[data-state='open']"))
        status, _ = http("POST", f"{base}/v1/partitions/acme/invoke/workspace_workers.note?key=browser",
                         {"text": "seen in a browser"}, TENANTS["acme"])
        assert status == 200, status
        wait_for("the activation in the live events",
                 lambda: browser.find("#events li[data-kind='started']"))
        wait_for("the agent listed", lambda: "browser" in browser.script(
            "return document.querySelector('#agent-table tbody')?.innerText || '';"))
        check_layout(browser, out, "tenant-acme")

        # A pod, opened from the list: its tree of nodes with their states.
        status, _ = http("POST", f"{base}/v1/partitions/acme/pods/workspace_pods/team", {}, TENANTS["acme"])
        assert status == 200, status
        browser.click("#agent-search")  # the list refreshes on its own
        browser.click("button[data-pod='team']")
        tree = wait_for("the pod's tree", lambda: browser.find("#pod li[data-node='coordinator']") and browser.script(
            "return document.querySelector('#pod').innerText;"))
        assert "coordinator (agent) adopted" in tree and "reviewer (agent) stopped" in tree, tree
        check_layout(browser, out, "pod-team", focus="#pod")

        # A tenant key: its own tenant only, on the page and in every response it fetched.
        sign_in(browser, base, TENANTS["globex"])
        wait_for("globex's page", lambda: "Tenant globex" in browser.text())
        # Its throttles show in its live events, once a second at most.
        wait_for("globex's event stream open", lambda: browser.find("#events[data-state='open']"))
        status, _ = http("PUT", f"{base}/v1/admin/config/tenants.globex.limits",
                         {"rate_per_sec": 0.1, "burst": 1}, ADMIN)
        assert status == 200, status
        answers = [http("POST", f"{base}/v1/partitions/globex/invoke/tenant-db.query",
                        {"sql": "select 1"}, TENANTS["globex"])[0] for _ in range(3)]
        assert 429 in answers, answers
        throttled = wait_for("the throttle in the live events", lambda: browser.script(
            "return document.querySelector(\"#events li[data-kind='throttled']\")?.textContent;"))
        assert "_quota/rate" in throttled and "limit=rate" in throttled, throttled
        time.sleep(2.5)  # at least one refresh
        page = browser.text()
        for other in ("acme", "initech"):
            assert other not in page, f"{other} on globex's page"
        urls = browser.script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(u => u.includes('/v1/') && !u.endsWith('/events'));")
        assert urls, "the page fetched nothing"
        for url in set(urls):
            assert "/v1/admin" not in url, f"a tenant page asked for {url}"
            status, body = http("GET", url, key=TENANTS["globex"])
            for other in ("acme", "initech"):
                assert other.encode() not in body, f"{url} answered with {other}"
        check_layout(browser, out, "tenant-globex")

        # The admin onboards a tenant, then offboards it through the confirmation.
        sign_in(browser, base, ADMIN)
        browser.type("#new-tenant", "hooli")
        browser.click("#onboard button")
        wait_for("hooli onboarded", lambda: "Onboarded hooli" in browser.text())
        browser.go(f"{base}/ui#/tenant/hooli")
        browser.click("#offboard")
        confirm = wait_for("the confirmation", lambda: browser.find("#confirm-offboard") and browser.text())
        assert "Offboard hooli?" in confirm and "data is kept" in confirm, confirm
        check_layout(browser, out, "offboard-confirm")
        browser.click("#confirm-offboard-yes")
        wait_for("back on the tenants", lambda: browser.find("#tenants"))
        wait_for("hooli gone", lambda: calls_of(browser, "hooli") is None and calls_of(browser, "acme") is not None)
        status, _ = http("GET", f"{base}/v1/admin/partitions/hooli/placement", key=ADMIN)
        assert status == 404, status
        stop(server)

        check_cluster(browser, binary, out)
        print(f"dashboard: every check passed; screenshots in {out}")
    finally:
        if browser:
            browser.quit()
        driver.terminate()
        stop(server)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
