"""The stale banner: a page whose server goes away says so, and recovers when it comes back.
This test starts a server of its own (the shared one must stay up for the other tests)."""

import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from conftest import check_page

BINARY = os.environ.get("CUTOVER_BINARY")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnServer:
    """`cutover serve` on a data directory and port of its own, stopped and started at will."""

    def __init__(self, data_dir, port):
        self.data_dir, self.port, self.process = data_dir, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self):
        log = open(pathlib.Path(self.data_dir) / "server.log", "ab")
        self.process = subprocess.Popen(
            [BINARY, "serve", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CUTOVER_LOG": "warn"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz") as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start: " + (pathlib.Path(self.data_dir) / "server.log").read_text())

    def kill(self):
        self.process.kill()
        self.process.wait()

    def api(self, method, path, body):
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.owner_token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 201, answer.read()

    def owner_token(self):
        return (pathlib.Path(self.data_dir) / "cutover-owner-token").read_text().strip()


@pytest.fixture
def own_server():
    if not BINARY:
        pytest.skip("CUTOVER_BINARY is not set (.ci/browser.sh sets it)")
    with tempfile.TemporaryDirectory() as data_dir:
        server = OwnServer(data_dir, free_port())
        server.start()
        try:
            yield server
        finally:
            if server.process.poll() is None:
                server.kill()


def test_the_stale_banner_shows_while_the_server_is_down_and_goes_when_it_is_back(watched, own_server):
    page = watched.page
    page.goto(own_server.url + "/sign-in")
    page.fill("#token", own_server.owner_token())
    page.click("button[type=submit]")
    page.wait_for_url(own_server.url + "/")
    stale = page.locator("#stale")
    # Connected: the banner is there but hidden.
    expect(stale).to_be_hidden()
    page.wait_for_timeout(500)
    expect(stale).to_be_hidden()

    own_server.kill()
    expect(stale).to_be_visible(timeout=15_000)
    expect(stale).to_contain_text("may be stale")
    check_page(watched, "stale-banner", expect_errors=True)

    # Back on the same port and data directory: the page reconnects by itself, with the same
    # session, and the banner goes.
    own_server.start()
    expect(stale).to_be_hidden(timeout=45_000)
    # And it is live again: a change made now reaches the page without reload.
    own_server.api("POST", "/api/v1/environments", {"name": "after-outage"})
    own_server.api("POST", "/api/v1/artifacts", {"key": "outage/check", "value_type": "string"})
    own_server.api("POST", "/api/v1/artifacts/outage%2Fcheck/versions", {"content": "back", "environments": ["after-outage"]})
    expect(page.locator("#matrix")).to_contain_text("outage/check", timeout=15_000)
    check_page(watched, "stale-recovered", expect_errors=True)
