"""`/docs` in a real headless Chromium: the page is self-contained (no request leaves for
anything but the page itself, no script errors), lists every operation of the OpenAPI
document with its answers, and its type links lead to the schemas.

Chromium comes from Debian (`apt-get install chromium`), driven by Playwright through
`executable_path`, as for the demo page.
"""

from __future__ import annotations

from pathlib import Path

from relay.openapi import spec
from relay.openapi.docs_page import operations

# Where the last run leaves its screenshot, for a person to look at.
SCREENSHOT = Path("/tmp/relay-docs-page.png")


async def test_the_docs_page_shows_every_operation_from_itself_alone(
    browser, relay_url: str
) -> None:  # type: ignore[no-untyped-def]
    page = await browser.new_page(viewport={"width": 1100, "height": 1400})
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    response = await page.goto(relay_url + "/docs")
    assert response is not None and response.status == 200
    assert await page.title() == "relay API"
    assert requested == [relay_url + "/docs"]  # no CDN, no script, no font, no image
    assert errors == []
    document = spec.build()
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert (
        await page.eval_on_selector_all(
            "main article[id]:not([id^='schema-'])", "els => els.map(e => e.id)"
        )
        == ids
    )
    events = page.locator("#getSessionEvents")
    assert (
        await events.locator("h3").text_content()
        == "GET/v1/sessions/{session_id}/events Follow a session (SSE)"
    )
    answers = await events.locator("table").last.locator("td:first-child").all_text_contents()
    assert answers == ["200", "204", "400", "401", "403", "404", "421", "500", "503"]
    await page.screenshot(path=str(SCREENSHOT))


async def test_a_type_link_leads_to_its_schema(browser, relay_url: str) -> None:  # type: ignore[no-untyped-def]
    page = await browser.new_page()
    await page.goto(relay_url + "/docs")
    await page.locator("#createSession a[href='#schema-CreateSessionBody']").first.click()
    assert page.url.endswith("#schema-CreateSessionBody")
    schema = page.locator("#schema-CreateSessionBody")
    assert await schema.is_visible()
    fields = await schema.locator("td:first-child code").all_text_contents()
    assert fields[:2] == ["model", "messages"]
