"""The agent desk in a real browser, against real API and consumer processes, Kafka and Redis."""

import json
import re
import time
from datetime import datetime
from pathlib import Path

import httpx
from kafka import KafkaProducer
from playwright.sync_api import Page, expect

from api.enquiries import completion_event
from events.producer import publish
from models.enquiries import EnquiryComplete
from models.tables import Enquiry
from tests import access
from tests.conftest import Stack, free_port, wait_until
from tests.desk.conftest import AGENT_NAME, assert_accessible
from tests.factories import example_data, make_event

CITIZEN = "C-DESK-1"
PHONE = "07700 900777"


def send(
    producer: KafkaProducer, stack: Stack, type_: str, *, minutes_ago: float = 0, **data: object
) -> None:
    """Publish one event about CITIZEN to the stack's topic and wait for Kafka's acknowledgement."""
    event = make_event(CITIZEN, type_=type_, minutes_ago=minutes_ago, data=example_data(type_, **data))
    publish(producer, stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"], event).get(timeout=10)


def a_known_citizen(producer: KafkaProducer, stack: Stack) -> None:
    """A citizen with personal needs, a phone number and some history, as the consumer has applied it."""
    send(
        producer,
        stack,
        "profile.updated",
        minutes_ago=60 * 24 * 9,
        summary="Prefers Welsh; needs a BSL interpreter",
        preferred_language="cy",
        communication_needs=["bsl-interpreter"],
        vulnerability_flags=["bereavement"],
        phone=PHONE,
    )
    send(
        producer,
        stack,
        "case.opened",
        minutes_ago=60 * 24 * 6,
        summary="Housing benefit claim HB-4471 opened",
    )
    send(producer, stack, "payment.failed", minutes_ago=60 * 24 * 2)
    send(producer, stack, "call.ended", minutes_ago=60 * 24, summary="Called about HB-4471 and the payment")
    send(producer, stack, "call.ended", minutes_ago=60 * 5, summary="Asked for the evidence list again")
    send(producer, stack, "call.started", minutes_ago=1, summary="Inbound call from a known number")

    wait_until(lambda: stack.applied() >= 6, what="the citizen's history applied")


def a_known_citizen_found_by_phone(stack: Stack, page: Page, producer: KafkaProducer, token: str) -> None:
    """The consumer and the API running, a known citizen, and the desk signed in with their phone number
    typed, for the test to start the enquiry its own way."""
    stack.consumer()
    stack.api()
    a_known_citizen(producer, stack)
    page.goto(f"/desk/#token={token}")
    page.get_by_label("Phone number").fill(PHONE)


def sign_in_with_keyboard(page: Page, token: str) -> None:
    """Sign in as an agent who uses only the keyboard: Tab to the token field, type, Tab, Enter."""
    page.goto("/desk/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "token":
            break
    expect(page.get_by_label("Access token")).to_be_focused()
    page.keyboard.insert_text(token)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text(AGENT_NAME)


def timeline(page: Page) -> list[str]:
    return page.locator("#timeline-list > li .event-summary").all_inner_texts()


def test_an_agent_follows_an_enquiry_live_through_an_api_restart_and_completes_it(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str, screenshot_path: Path
) -> None:
    stack.consumer()
    api = stack.api()
    a_known_citizen(producer, stack)

    streams: list[str] = []
    page.on("websocket", lambda websocket: streams.append(websocket.url))
    sign_in_with_keyboard(page, agent_token)
    assert_accessible(page, "start an enquiry")

    # The caller's number is all the agent has; Enter in the field starts the enquiry.
    expect(page.get_by_label("Phone number")).to_be_focused()
    page.keyboard.type(PHONE)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("role", "status")
    status = page.locator("#connection-text")
    expect(status).to_have_text(re.compile("^Live"))

    # What must not be missed comes first: personal needs, then the summary, then the timeline.
    headings = page.locator("#enquiry h2").all_inner_texts()
    assert headings[:3] == ["Personal needs", "Summary", "Timeline (newest first)"]
    needs = page.get_by_role("region", name="Personal needs")
    expect(needs).to_contain_text("Welsh (cy)")
    expect(needs).to_contain_text("BSL interpreter")
    expect(needs).to_contain_text("Bereavement")
    expect(page.get_by_role("region", name="Summary")).to_contain_text("HB-4471")
    assert timeline(page)[0] == "Inbound call from a known number"

    # An event published to Kafka is on the page within two seconds, and announced politely.
    send(producer, stack, "chat.message", summary="Asked whether the assessment can be moved")
    expect(page.locator("#timeline-list > li").first).to_contain_text(
        "Asked whether the assessment can be moved", timeout=2000
    )
    expect(page.locator("#announcer")).to_contain_text("Asked whether the assessment can be moved")
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"
    page.screenshot(path=str(screenshot_path), full_page=True)
    assert_accessible(page, "an enquiry, live")

    # The API restarts (a rolling deployment); an update published while it is down is not lost.
    api.stop()
    expect(status).to_have_text(re.compile("lost|Reconnecting"), timeout=10_000)
    send(producer, stack, "email.received", summary="Sent the payslips while the desk was reconnecting")
    time.sleep(1)  # the consumer applies it while no API runs
    stack.api()
    expect(page.locator("#timeline-list > li").first).to_contain_text(
        "Sent the payslips while the desk was reconnecting", timeout=20_000
    )
    expect(status).to_have_text(re.compile("^Live"))
    # It resumed from where it was (the server sends just what was missed), without anyone asking.
    assert "version=7" in streams[-1]
    assert "epoch=" in streams[-1]
    summaries = timeline(page)
    assert summaries[:3] == [
        "Sent the payslips while the desk was reconnecting",
        "Asked whether the assessment can be moved",
        "Inbound call from a known number",
    ]
    assert len(summaries) == len(set(summaries)) == 8

    # Completing the enquiry puts it on the timeline, and the live view ends by itself.
    page.get_by_label("Outcome").select_option("resolved")
    page.get_by_label("Notes").fill("Payslips received; will call back on Friday.")
    page.get_by_role("button", name="Complete enquiry").click()
    expect(page.get_by_text("The enquiry is complete.")).to_be_focused()
    completed = page.locator("#timeline-list > li").first
    expect(completed).to_contain_text("Enquiry completed", timeout=10_000)
    expect(completed).to_contain_text("Notes: Payslips received; will call back on Friday.")
    expect(completed).to_contain_text("Outcome: Resolved")
    expect(status).to_have_text(re.compile("^Enquiry completed"))
    assert_accessible(page, "enquiry completed")


def test_a_sign_in_link_keeps_its_token_out_of_the_address_bar(
    stack: Stack, page: Page, agent_token: str
) -> None:
    stack.api()
    response = page.goto(f"/desk/#token={agent_token}")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe" not in policy
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    assert page.url.endswith("/desk/")
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") == agent_token
    # The link's entry in the history was replaced, not kept: back leads to where the tab was before.
    page.go_back()
    assert page.url == "about:blank"
    page.go_forward()
    assert page.url.endswith("/desk/")

    # A number nobody is known by is said plainly, next to the field.
    page.get_by_label("Phone number").fill("07700 900000")
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("alert")).to_have_text("No citizen is known for this phone number.")
    assert_accessible(page, "an error")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") is None
    assert_accessible(page, "signed out")


def test_a_sign_in_link_never_replaces_the_session_open_in_the_tab(
    stack: Stack, page: Page, agent_token: str
) -> None:
    # Anyone can send a colleague a link carrying their own token: followed, the colleague would work, and
    # write notes, as the sender.
    stack.api()
    page.goto(f"/desk/#token={agent_token}")
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    senders = access.token("A-sender")

    page.goto(f"/desk/#token={senders}")
    page.reload()  # a fragment alone does not load the page again

    expect(page.get_by_role("alert")).to_have_text(
        "This tab is signed in already, so the sign-in link was not used. Sign out first to use it."
    )
    expect(page.get_by_role("banner")).to_contain_text(AGENT_NAME)
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") == agent_token
    assert page.url.endswith("/desk/")


def test_a_sign_in_link_replaces_a_session_that_has_expired(
    stack: Stack, page: Page, agent_token: str
) -> None:
    stack.api()
    expired = stack.cli("token", "--agent", "A-late", "--ttl", "1s").strip()
    time.sleep(1.5)
    page.goto("/desk/")
    # The tab's session, which expired meanwhile.
    page.evaluate("(token) => sessionStorage.setItem('citizen-context.token', token)", expired)

    page.goto(f"/desk/#token={agent_token}")
    page.reload()

    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text(AGENT_NAME)
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") == agent_token


def test_an_expired_sign_in_link_asks_to_sign_in_at_once(stack: Stack, page: Page) -> None:
    stack.api()
    expired = stack.cli("token", "--agent", "A-late", "--ttl", "1s").strip()
    time.sleep(1.5)
    page.goto(f"/desk/#token={expired}")
    # Before anything is typed into an enquiry form that could not be sent.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Your sign-in has expired. Please sign in again.")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") is None
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_hidden()


def test_the_desk_reflows_at_400_percent_zoom_and_respects_reduced_motion(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    stack.consumer()
    stack.api()
    a_known_citizen(producer, stack)
    # 400% zoom of a 1280 x 1024 screen is a 320 x 256 CSS pixel viewport (WCAG 1.4.10).
    page.set_viewport_size({"width": 320, "height": 256})
    page.emulate_media(reduced_motion="reduce")
    page.goto(f"/desk/#token={agent_token}")
    page.get_by_label("Find the citizen by").select_option("citizen_id")
    page.get_by_label("Citizen id").fill(CITIZEN)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Live"))
    send(producer, stack, "chat.message", summary="A message that arrives while zoomed in")
    new_item = page.locator("#timeline-list > li.new")
    expect(new_item).to_contain_text("A message that arrives while zoomed in")
    assert new_item.evaluate("node => getComputedStyle(node).animationName") == "none"
    # A reload (or a crashed tab restored) reopens the enquiry in hand, live again.
    page.reload()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Live"))
    expect(page.locator("#timeline-list > li").first).to_contain_text(
        "A message that arrives while zoomed in"
    )
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    assert_accessible(page, "400% zoom")


def test_a_completion_kafka_did_not_acknowledge_is_said_plainly_and_only_the_servers_word_completes_it(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    stack.consumer()
    send(producer, stack, "call.started", minutes_ago=1, summary="Inbound call from a known number")
    wait_until(lambda: stack.applied() >= 1, what="the citizen's call applied")
    # This API's producer finds no broker where it looks (a port nobody listens on): every completion
    # it publishes fails. Its streams re-check their enquiry every half second.
    working = dict(stack.env)
    stack.env = {
        **working,
        "CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "CITIZEN_CONTEXT_SECURITY_ACCESS_CHECK_S": "0.5",
    }
    api = stack.api()

    page.goto(f"/desk/#token={agent_token}")
    page.get_by_label("Find the citizen by").select_option("citizen_id")
    page.get_by_label("Citizen id").fill(CITIZEN)
    page.get_by_role("button", name="Start enquiry").click()
    status = page.locator("#connection-text")
    expect(status).to_have_text(re.compile("^Live"))

    page.get_by_label("Outcome").select_option("callback-booked")
    page.get_by_label("Notes").fill("Will call back on Friday.")
    page.get_by_role("button", name="Complete enquiry").click()
    error = page.locator("#complete-error")
    expect(error).to_contain_text("The enquiry is not completed yet")
    expect(error).to_contain_text("Nothing is lost")
    # What the server recorded is what a retry must send: shown, and fixed.
    expect(page.get_by_label("Outcome")).to_be_disabled()
    expect(page.get_by_label("Outcome")).to_have_value("callback-booked")
    expect(page.get_by_label("Notes")).to_have_value("Will call back on Friday.")
    expect(page.get_by_label("Notes")).not_to_be_editable()
    assert_accessible(page, "a completion not acknowledged")
    # Several access checks later the enquiry is still active: its live view goes on, nothing says done.
    page.wait_for_timeout(2000)
    expect(status).to_have_text(re.compile("^Live"))
    expect(page.get_by_text("The enquiry is complete.")).to_be_hidden()

    # Kafka may have the event although the API heard no acknowledgement. Published as the API would
    # have, it joins the timeline and ends the enquiry's stream (4410); the enquiry is still not
    # completed, and the desk does not say it is.
    with httpx.Client(base_url=stack.api_url, headers=access.bearer(agent_token)) as client:
        [held] = client.get("/v1/enquiries").json()["enquiries"]
    at = datetime.fromisoformat(held["completed_at"].replace("Z", "+00:00"))
    completion = EnquiryComplete(outcome=held["outcome"], notes=held["notes"])
    enquiry = Enquiry(
        id=held["id"], agent_id=held["agent_id"], citizen_id=held["citizen_id"], channel=held["channel"]
    )
    topic = stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"]
    publish(producer, topic, completion_event(enquiry, completion, at=at)).get(timeout=10)
    expect(page.locator("#timeline-list > li").first).to_contain_text("Enquiry completed", timeout=10_000)
    expect(status).to_have_text("Live updates have stopped.")
    expect(error).to_contain_text("its completion was not confirmed")
    expect(page.get_by_role("button", name="Complete enquiry")).to_be_visible()
    expect(page.get_by_text("The enquiry is complete.")).to_be_hidden()

    # A reload finds the enquiry still in hand, with the completion to confirm.
    page.reload()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    expect(error).to_contain_text("its completion was not confirmed")
    expect(page.get_by_label("Notes")).to_have_value("Will call back on Friday.")
    # Its stream's snapshot, which holds the completion, came and ended it (4410), before the API stops:
    # a stream that reconnected only after the retry below would be closed at once, with no snapshot.
    expect(page.locator("#timeline-list > li").first).to_contain_text("Enquiry completed")
    expect(status).to_have_text("Live updates have stopped.")

    # Kafka answers again; the retry completes the enquiry, whose completion the timeline shows once.
    api.stop()
    stack.env = working
    stack.api()
    page.get_by_role("button", name="Complete enquiry").click()
    expect(page.get_by_text("The enquiry is complete.")).to_be_focused()
    expect(status).to_have_text(re.compile("^Enquiry completed"))
    assert len([text for text in timeline(page) if "completed: callback-booked" in text]) == 1


def test_an_erased_citizens_data_leaves_the_page_and_the_enquiry_is_not_resumed(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    a_known_citizen_found_by_phone(stack, page, producer, agent_token)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Live"))
    expect(page.get_by_role("region", name="Personal needs")).to_contain_text("BSL interpreter")

    erased = httpx.delete(f"{stack.api_url}/v1/citizens/{CITIZEN}", headers=access.admin(), timeout=30)
    assert erased.status_code == 200, erased.text

    # The stream ends (4411): nothing of the citizen's stays in the page, for the next user of the tab.
    expect(page.locator("#connection-text")).to_have_text(
        "This citizen's data has been erased at their request."
    )
    assert timeline(page) == []
    expect(page.get_by_role("region", name="Personal needs")).not_to_contain_text("BSL interpreter")
    expect(page.get_by_role("region", name="Summary")).not_to_contain_text("HB-4471")
    expect(page.locator("#complete-form")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.enquiry')") is None


def test_a_double_click_starts_one_enquiry(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    a_known_citizen_found_by_phone(stack, page, producer, agent_token)
    page.get_by_role("button", name="Start enquiry").dblclick()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    bearer = {"Authorization": f"Bearer {agent_token}"}
    held = httpx.get(f"{stack.api_url}/v1/enquiries", headers=bearer, timeout=10)
    assert held.status_code == 200, held.text
    assert len(held.json()["enquiries"]) == 1


def test_a_sign_in_link_is_refused_while_the_sign_in_settings_cannot_be_read(
    stack: Stack, page: Page, agent_token: str
) -> None:
    # Unread, they may name an identity provider, where a link is never used (login CSRF): not "none set up".
    stack.api()
    page.route("**/desk/config.json", lambda route: route.fulfill(status=502, body="Bad Gateway"))
    page.goto(f"/desk/#token={agent_token}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(
        "The desk could not load its sign-in settings. Reload the page to try again."
    )
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") is None
    assert page.url.endswith("/desk/")


def test_a_reload_while_the_server_cannot_answer_keeps_the_enquiry_for_the_next_one(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    a_known_citizen_found_by_phone(stack, page, producer, agent_token)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()

    # The enquiry's read answers 503 (a database failing over) as the page reloads.
    unavailable = json.dumps({"title": "Service Unavailable", "status": 503, "detail": "Try again shortly."})
    page.route(
        re.compile(r".*/v1/enquiries/[^/]+$"),
        lambda route: route.fulfill(status=503, body=unavailable, content_type="application/problem+json"),
    )
    page.reload()
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.enquiry')") is not None

    page.unroute(re.compile(r".*/v1/enquiries/[^/]+$"))
    page.reload()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()


# Renders, in the desk's page, an event and a summary whose values from events each start with U+202E
# (RIGHT-TO-LEFT OVERRIDE); gives, for each text node holding it, how its element lays out bidirectional text.
RENDER_MARKED_VALUES = """async () => {
  const render = await import("/desk/render.js");
  const mark = "\u202e";
  const time = "2026-12-01T09:00:00Z";
  document.body.append(render.timelineItem({
    source: "/t", id: "1", type: "enquiry.completed", time,
    data: { channel: "phone", summary: `${mark}Resolved`, outcome: "resolved", notes: `${mark}Call back` },
  }));
  document.body.append(render.timelineItem({
    source: "/t", id: "2", type: `${mark}permit.renewed`, time, data: { channel: "web" },
  }));
  render.renderSummary({
    contacts_7d: {}, contacts_30d: {},
    open_cases: [{ case_ref: `${mark}HB-1`, status: `${mark}open`, updated_at: time }],
    upcoming_appointments: [{ appointment_id: `${mark}AP-1`, starts_at: time, location: `${mark}Town hall` }],
    missed_appointments: [{ appointment_id: `${mark}AP-0`, starts_at: time }],
    recent_failed_payments: [{ currency: "GBP", amount: "2.50", time, reason: `${mark}refused` }],
  });
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.data.includes(mark)) found.push([node.data, getComputedStyle(node.parentElement).unicodeBidi]);
  }
  return found;
}"""


def test_a_direction_mark_in_an_events_text_cannot_turn_the_desks_own_words_around(
    stack: Stack, page: Page
) -> None:
    # A case reference ending in U+202E showed ": Open, updated 1 Dec 2026" after it reversed.
    stack.api()
    page.goto("/desk/")
    found = page.evaluate(RENDER_MARKED_VALUES)
    assert len(found) == 9
    assert {text: layout for text, layout in found if layout != "isolate"} == {}


def test_a_type_outside_the_taxonomy_is_shown_as_published_even_one_named_like_a_built_in(
    stack: Stack, page: Page
) -> None:
    # "constructor" found the label object's own built-in function, and the heading showed its source.
    stack.api()
    page.goto("/desk/")
    headings = page.evaluate(
        """async () => {
          const render = await import("/desk/render.js");
          return ["constructor", "toString", "permit.renewed", "call.started"].map((type) =>
            render.timelineItem({ source: "/t", id: type, type, time: "2026-12-01T09:00:00Z", data: {} })
              .querySelector("h3").textContent);
        }"""
    )
    assert headings == ["constructor", "toString", "permit.renewed", "Call started"]
