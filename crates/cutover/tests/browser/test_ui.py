"""What a person does in the web UI, in a real Chromium."""

import re
import urllib.parse

from playwright.sync_api import expect

from conftest import BASE, SHOTS, api, check_page, sign_in, token


def test_sign_in_and_out(watched):
    page = watched.page
    page.goto("/")
    expect(page).to_have_url(BASE + "/sign-in")
    check_page(watched, "sign-in")
    page.fill("#token", "cutover_not-a-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not a Cutover token")
    sign_in(page, token("viewer", name="reader"))
    expect(page.locator(".who")).to_contain_text("reader")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["cutover_session"]["httpOnly"] and cookies["cutover_session"]["sameSite"] == "Strict"
    page.click("text=Sign out")
    expect(page).to_have_url(BASE + "/sign-in")
    page.goto("/")
    expect(page).to_have_url(BASE + "/sign-in")


def test_the_matrix_and_its_filters(watched, world):
    page = watched.page
    sign_in(page, token("owner", name="olive"))
    production = page.locator("tr", has_text="prompts/welcome").locator("td[data-env=production]")
    expect(production).to_contain_text("v1")
    expect(production).to_contain_text("behind")
    expect(page.locator("thead")).to_contain_text("protected")
    check_page(watched, "matrix")
    page.fill("input[name=prefix]", "flags/")
    page.click("text=Show")
    expect(page.locator("table.matrix tbody tr")).to_have_count(1)
    expect(page.locator("table.matrix")).to_contain_text("flags/checkout")
    page.goto("/?at=2000-01-01T00:00:00")
    expect(page.get_by_role("status").first).to_contain_text("Time travel")
    check_page(watched, "matrix-time-travel")


def test_publish_then_diff(watched, world):
    page = watched.page
    sign_in(page, token("editor", name="eddie"))
    page.goto("/artifacts/flags%2Fcheckout")
    page.fill("#content", "off")
    page.fill("#message", "turn it off")
    page.click("text=Publish v2")
    expect(page.locator("#v2")).to_contain_text("turn it off")
    expect(page.locator("#v2")).to_contain_text("eddie")
    check_page(watched, "artifact")
    page.click("#v2 >> text=Diff with v1")
    expect(page.locator(".diff .removed")).to_contain_text("on")
    expect(page.locator(".diff .added")).to_contain_text("off")
    check_page(watched, "diff")


def test_promote_with_preview_confirmed_in_history_and_seen_live_in_a_second_tab(watched, world, context):
    page = watched.page
    owner = token("owner", name="pat")
    sign_in(page, owner)
    other = context.new_page()
    other.goto("/")
    cell = other.locator("tr", has_text="prompts/welcome").locator("td[data-env=production]")
    expect(cell).to_contain_text("v1")
    other.wait_for_timeout(500)  # the change stream is open

    page.goto("/artifacts/prompts%2Fwelcome")
    row = page.locator("#pin-staging")
    row.locator("select[name=to]").select_option("production")
    row.locator("text=Promote…").click()
    expect(page.locator("#before")).to_contain_text('"variant": "v1"')
    expect(page.locator("#after")).to_contain_text('"variant": "v2"')
    expect(page.locator("#command")).to_contain_text("cutover promote prompts/welcome --from staging --to production")
    check_page(watched, "preview")
    page.fill("#reason", "ship the shorter greeting")
    page.click("text=Promote v2 from staging to production")
    expect(page).to_have_url(re.compile(r".*/history/production$"))
    expect(page.locator("#history")).to_contain_text("ship the shorter greeting")
    check_page(watched, "history")

    # The other tab was not reloaded: the change came through the stream.
    expect(cell).to_contain_text("v2", timeout=10_000)
    other.bring_to_front()
    other.screenshot(path=str(SHOTS / "matrix-updated-live.png"))


def test_a_stale_rollback_is_refused_clearly(watched, world):
    page = watched.page
    sign_in(page, token("owner", name="rita"))
    api("PUT", "/api/v1/artifacts/prompts%2Fwelcome/pins/staging", body={"version": 1, "reason": "try v1"})
    page.goto("/artifacts/prompts%2Fwelcome/history/staging")
    button = page.locator("text=Roll back to v2").first
    expect(button).to_be_visible()
    # Someone else moves the pin while the page is open.
    bob = token("editor", name="bob")
    status, _ = api("PUT", "/api/v1/artifacts/prompts%2Fwelcome/pins/staging", token=bob, body={"version": 2, "reason": "back"})
    assert status == 200
    button.click()
    expect(page.get_by_role("alert")).to_contain_text("staging was changed by bob meanwhile")
    check_page(watched, "stale-rollback", expect_errors=True)
    status, pin = api("GET", "/api/v1/artifacts/prompts%2Fwelcome/pins/staging")
    assert pin["version"] == 2


def test_a_viewer_sees_no_write_buttons_and_a_forged_post_is_refused(watched, world):
    page = watched.page
    sign_in(page, token("viewer", name="vera"))
    page.goto("/artifacts/prompts%2Fwelcome")
    expect(page.locator("h1")).to_contain_text("prompts/welcome")
    for control in ("Publish v", "Make live", "Promote…"):
        expect(page.locator(f"text={control}")).to_have_count(0)
    page.goto("/artifacts/prompts%2Fwelcome/history/production")
    expect(page.locator("text=Roll back")).to_have_count(0)
    check_page(watched, "viewer-history")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(
        BASE + "/artifacts/prompts%2Fwelcome/pin",
        headers={"Origin": BASE},
        form={"csrf": csrf, "env": "production", "version": "1", "expected": "0"},
    )
    assert answer.status == 403, answer.text()
    assert "a viewer token cannot change anything" in answer.text()


def test_a_cross_site_request_is_refused(watched, world):
    page = watched.page
    sign_in(page, token("owner", name="carl"))
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    # From another origin, with the right token: refused by the Origin check.
    answer = page.request.post(
        BASE + "/artifacts/prompts%2Fwelcome/pin",
        headers={"Origin": "http://evil.example"},
        form={"csrf": csrf, "env": "staging", "version": "1", "expected": "0"},
    )
    assert answer.status == 403
    # From this origin without the token: refused by the CSRF check.
    answer = page.request.post(
        BASE + "/artifacts/prompts%2Fwelcome/pin",
        headers={"Origin": BASE},
        form={"env": "staging", "version": "1", "expected": "0"},
    )
    assert answer.status == 403
    assert "CSRF" in answer.text()


def test_every_other_screen_renders_cleanly(watched, world):
    page = watched.page
    sign_in(page, token("owner", name="otto"))
    for path, name in (
        ("/experiments", "experiments"),
        ("/rollouts", "rollouts"),
        ("/audit", "audit"),
        ("/audit?object_type=artifact&object_id=" + urllib.parse.quote("prompts/welcome", safe=""), "audit-filtered"),
        ("/audit?action=pin.&since=2000-01-01T00:00&until=2999-01-01T00:00", "audit-time-range"),
    ):
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        check_page(watched, name)


def test_experiment_results_equal_the_api_s(watched, world):
    page = watched.page
    status, body = api("POST", "/api/v1/artifacts", body={"key": "exp/banner", "value_type": "string", "kind": "copy"})
    assert status == 201, body
    for content, envs in (("Buy now", ["staging"]), ("Try it free", [])):
        status, body = api("POST", "/api/v1/artifacts/exp%2Fbanner/versions", body={"content": content, "environments": envs})
        assert status == 201, body
    status, made = api(
        "POST",
        "/api/v1/environments/staging/experiments",
        body={"artifact": "exp/banner", "name": "free trial banner", "treatments": [2], "primary_metric": "signup"},
    )
    assert status == 201, made
    sign_in(page, token("owner", name="erin"))
    page.goto(f"/experiments/{made['id']}")
    # Starting goes through the preview: each variant's share and OFREP answer, and the CLI.
    page.click("text=Start…")
    expect(page.locator("[data-variant=treatment-1]")).to_contain_text("Try it free")
    expect(page.locator("[data-variant=control]")).to_contain_text("50% of all users")
    expect(page.locator("#command")).to_have_text(f"cutover experiment start {made['id']}")
    check_page(watched, "experiment-start-preview")
    page.click("button:has-text('Start free trial banner')")
    expect(page.locator("#status")).to_have_text("running")
    sdk = token("sdk", ["staging"], name="app")
    for i in range(30):
        status, _ = api("POST", "/ofrep/v1/evaluate/flags/exp%2Fbanner", token=sdk, body={"context": {"targetingKey": f"user-{i}"}})
        assert status == 200
    status, body = api("POST", "/api/v1/events", token=sdk, body={"events": [{"metric": "signup", "targeting_key": f"user-{i}"} for i in range(0, 30, 3)]})
    assert status == 200, body
    page.reload()
    status, results = api("GET", f"/api/v1/experiments/{made['id']}/results")
    assert status == 200
    expect(page.get_by_role("status").last).to_contain_text(f"{results['exposures']} users exposed")
    rows = page.locator("section.metric[data-metric=signup] tbody tr")
    for index, variant in enumerate(results["metrics"][0]["variants"]):
        cells = rows.nth(index).locator("td")
        expect(cells.nth(1)).to_have_text(str(variant["exposures"]))
        expect(cells.nth(2)).to_have_text(str(variant["conversions"]))
    check_page(watched, "experiment-results")


def test_a_rollout_progresses_live_then_is_stopped_and_resumed(watched, world):
    page = watched.page
    status, body = api("POST", "/api/v1/environments", body={"name": "edge", "targets": [{"name": "eu-1"}, {"name": "us-1"}]})
    assert status == 201, body
    status, made = api(
        "POST",
        "/api/v1/rollouts",
        body={"artifact": "prompts/welcome", "environment": "edge", "version": 2, "max_parallel": 1, "executor": {"type": "manual"}},
    )
    assert status == 201, made
    rollout = made["id"]
    sign_in(page, token("owner", name="rory"))
    page.goto(f"/rollouts/{rollout}")
    first = page.locator(".task").first
    expect(first).to_contain_text("running", timeout=15_000)
    target = first.get_attribute("data-target")
    check_page(watched, "rollout")
    # A person completes the first target's task through the API; the page follows without reload.
    _, detail = api("GET", f"/api/v1/rollouts/{rollout}")
    task = next(t["id"] for o in detail["operations"] if o["target"] == target for t in o["tasks"])
    status, body = api("POST", f"/api/v1/rollouts/{rollout}/tasks/{task}/complete", body={"message": "done by hand"})
    assert status == 200, body
    expect(page.locator(f".task[data-target='{target}'] .badge")).to_have_text("completed", timeout=15_000)
    page.click("button:text-is('stop')")
    expect(page.locator("#rollout-state")).not_to_have_text("running", timeout=15_000)
    resume = page.locator("button:text-is('resume')")
    expect(resume).to_be_visible(timeout=20_000)
    resume.click()
    expect(page.locator("#rollout-state")).to_have_text(re.compile("running|completed"), timeout=15_000)
    check_page(watched, "rollout-resumed")


def test_a_rollout_started_from_the_page_through_its_preview(watched, world):
    page = watched.page
    status, body = api("POST", "/api/v1/environments", body={"name": "fleet", "targets": [{"name": n} for n in ("eu-1", "eu-2", "us-1")]})
    assert status == 201, body
    sign_in(page, token("owner", name="paula"))
    page.goto("/artifacts/prompts%2Fwelcome")
    page.click("#v2 >> text=Roll out…")
    page.select_option("#environment", "fleet")
    page.fill("#max_parallel", "2")
    page.fill("#steps", "check apply")
    check_page(watched, "rollout-new")
    page.click("text=Preview the rollout")
    expect(page.locator("#waves li")).to_have_count(2)
    expect(page.locator("[data-wave='1']")).to_contain_text("eu-1, eu-2")
    expect(page.locator("#command")).to_contain_text("--max-parallel 2")
    check_page(watched, "rollout-preview")
    page.click("button:has-text('Start the rollout of v2 to fleet')")
    expect(page).to_have_url(re.compile(r"/rollouts/[0-9a-f-]+$"))
    expect(page.locator(".task")).to_have_count(3)


def test_the_pools_pages_follow_a_pool_and_claim_from_it(watched, world):
    page = watched.page
    body = {"name": "warm", "artifact": "prompts/welcome", "environment": "staging", "executor": "provision",
            "desired": {"instances": 2}}
    status, made = api("POST", "/api/v1/pools", body=body)
    assert status == 201, made
    sign_in(page, token("owner", name="pat"))
    page.goto("/pools")
    row = page.locator("tr[data-pool=warm]")
    # The table refreshes itself while the engine fills the pool.
    expect(row.locator("td").nth(6)).to_have_text("2", timeout=30_000)
    check_page(watched, "pools")
    page.click("text=warm")
    expect(page.locator("tr[data-instance]")).to_have_count(2)
    check_page(watched, "pool")
    page.click("text=Claim a ready instance")
    expect(page.locator("#claimed")).to_contain_text("it is yours now")
    expect(page.locator("#claimed")).to_contain_text("Claimed by pat at ")
    check_page(watched, "pool-claimed")


def test_a_change_goes_through_a_manual_queue_from_the_pages(watched, world):
    page = watched.page
    body = {"name": "guard", "environment": "staging", "max_wait_seconds": 0, "executor": {"type": "manual"}}
    status, made = api("POST", "/api/v1/queues", body=body)
    assert status == 201, made
    status, made = api("POST", "/api/v1/artifacts", body={"key": "limits/max", "value_type": "number"})
    assert status == 201, made
    sign_in(page, token("owner", name="quinn"))
    page.click("nav >> text=Queue")
    expect(page).to_have_url(BASE + "/queues")
    expect(page.locator("tr[data-queue=guard]")).to_contain_text("manual")
    check_page(watched, "queues")
    page.click("text=guard")
    # A refused draft comes back with the reason; nothing is submitted.
    page.select_option("#artifact", "limits/max")
    page.fill("#content", "twelve")
    page.click("button:has-text('Submit to guard')")
    expect(page.locator(".banner.error")).to_contain_text("content is not valid JSON")
    expect(page.locator("#content")).to_have_value("twelve")
    expect(page.locator("#artifact")).to_have_value("limits/max")
    # The refused form's answer is a 400, which Chromium logs; nothing else may be logged.
    check_page(watched, "queue-refused", expect_errors=True)
    assert watched.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    watched.errors.clear()
    page.select_option("#artifact", "prompts/welcome")
    page.fill("#content", "Hello.\nBe brief, and kind.\n")
    page.fill("#message", "kinder welcome")
    page.click("button:has-text('Submit to guard')")
    expect(page).to_have_url(re.compile(r"/queues/guard/requests/1$"))
    expect(page.locator("pre.content")).to_contain_text("Be brief, and kind.")
    page.click("text=← Queue guard")
    # The panel refreshes itself until the engine starts the batch's check; a person passes it.
    check = page.locator("tr[data-check]")
    expect(check).to_have_count(1, timeout=30_000)
    expect(page.locator("tr[data-request='1']")).to_contain_text("processing")
    check_page(watched, "queue")
    check.locator("button:has-text('Pass check')").click()
    expect(page.locator("tr[data-request='1']")).to_contain_text("landed", timeout=30_000)
    expect(page.locator("#counts")).to_contain_text("1 landed")
    page.click("tr[data-request='1'] >> text=#1")
    expect(page.locator("#request-state")).to_have_text("landed")
    expect(page.locator("#landed")).to_contain_text("prompts/welcome v3")
    check_page(watched, "queue-request")
    page.click("#landed >> text=prompts/welcome v3")
    expect(page.locator("#pin-staging")).to_contain_text("v3")

