"""Browser tests of the web UI: Debian's Chromium driven by Playwright, against a server that
.ci/browser.sh started on a fresh data directory (CUTOVER_URL, CUTOVER_OWNER_TOKEN)."""

import json
import os
import pathlib
import urllib.request

import pytest
from axe_playwright_python.sync_playwright import Axe

BASE = os.environ["CUTOVER_URL"]
OWNER = os.environ["CUTOVER_OWNER_TOKEN"]
SHOTS = pathlib.Path(os.environ.get("CUTOVER_SCREENSHOTS", "target/screenshots"))
SHOTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Debian's Chromium: `playwright install` downloads browsers and cannot work here.
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": ["--no-sandbox"]}


@pytest.fixture(scope="session")
def base_url():
    return BASE


def api(method, path, token=OWNER, body=None, headers=None):
    """Calls the HTTP API; answers (status, JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def token(role, environments=(), name=None):
    status, body = api("POST", "/api/v1/tokens", body={"name": name or role, "role": role, "environments": list(environments)})
    assert status == 201, body
    return body["secret"]


_world = {}


@pytest.fixture(scope="session")
def world():
    """staging and production (protected); prompts/welcome v1 live in production, v2 in staging."""
    if not _world:
        for name, protected in (("staging", False), ("production", True)):
            status, body = api("POST", "/api/v1/environments", body={"name": name, "protected": protected})
            assert status == 201, body
        for key, kind in (("prompts/welcome", "prompt"), ("flags/checkout", "flag")):
            status, body = api("POST", "/api/v1/artifacts", body={"key": key, "value_type": "string", "kind": kind})
            assert status == 201, body
        for content, env in (("Hello.\nBe brief.\n", "production"), ("Hello.\nBe very brief.\n", "staging")):
            status, body = api(
                "POST",
                "/api/v1/artifacts/prompts%2Fwelcome/versions",
                body={"content": content, "message": f"for {env}", "environments": [env]},
            )
            assert status == 201, body
        status, body = api("POST", "/api/v1/artifacts/flags%2Fcheckout/versions", body={"content": "on", "environments": ["staging", "production"]})
        assert status == 201, body
        _world["ready"] = True
    return _world


class Watched:
    """A page whose console errors and failed requests are collected."""

    def __init__(self, page):
        self.page = page
        self.errors = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))


@pytest.fixture
def watched(page):
    return Watched(page)


def sign_in(page, secret):
    page.goto("/sign-in")
    page.fill("#token", secret)
    page.click("button[type=submit]")
    page.wait_for_url(BASE + "/")


def check_page(watched, name, expect_errors=False):
    """Saves a screenshot, then asserts no console error and no serious or critical axe finding."""
    watched.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    results = Axe().run(watched.page)
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, "\n".join(serious)
    if not expect_errors:
        assert not watched.errors, watched.errors
