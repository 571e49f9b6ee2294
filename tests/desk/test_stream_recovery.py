"""How the desk's live view recovers, or stops, when its stream is lost or refused, in a real browser.

The page, its tickets and its enquiries come from a real API; the stream's server side is played by the
browser's own WebSocket routing where a test needs a close code that only a failure would produce (a
server dropping every stream, a rate limit, a refused ticket, a dead network path).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaProducer
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from tests.conftest import Stack
from tests.desk.test_desk import CITIZEN, PHONE, a_known_citizen_found_by_phone

STREAM = re.compile(r".*/v1/enquiries/[^/]+/stream.*")
LIVE = re.compile("^Live")


# How the played server treats a connection: the socket, and which connection of the page's it is (1, 2, ...).
Behaviour = Callable[[WebSocketRoute, int], None]


@dataclass
class FakeStreams:
    """Plays the stream's server: each connection the page opens is recorded and handed to `behave`."""

    behave: Behaviour
    urls: list[str] = field(default_factory=list)

    def __call__(self, socket: WebSocketRoute) -> None:
        self.urls.append(socket.url)
        self.behave(socket, len(self.urls))


def enquiry_on_fake_streams(
    stack: Stack, page: Page, producer: KafkaProducer, token: str, behave: Behaviour
) -> FakeStreams:
    """The known citizen's enquiry started on the desk, its stream's server played by `behave`."""
    a_known_citizen_found_by_phone(stack, page, producer, token)
    streams = FakeStreams(behave)
    page.route_web_socket(STREAM, streams)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    return streams


def live_then(code: int) -> Behaviour:
    """A stream that goes live (a heartbeat saying so), then is closed at once with `code`."""

    def behave(socket: WebSocketRoute, _nth: int) -> None:
        socket.send('{"type":"heartbeat","epoch":"e","version":0,"live":true}')
        socket.close(code=code, reason="test")

    return behave


def closed_with(code: int) -> Behaviour:
    def behave(socket: WebSocketRoute, _nth: int) -> None:
        socket.close(code=code, reason="test")

    return behave


def test_streams_dropped_as_soon_as_they_go_live_are_retried_with_a_growing_pause(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, live_then(1011))
    # Pauses of 0.25, 0.5, 1 and 2 s (each jittered by up to half either way): at most five connections
    # in 3 s. Reset by every connection that went live, they stayed at 0.25 s: about a dozen.
    page.wait_for_timeout(3000)
    assert 2 <= len(streams.urls) <= 5, streams.urls
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Connection lost"))


def test_a_restart_before_the_stream_goes_live_waits_before_reconnecting(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, closed_with(1012))
    # "At once" is only for a stream that was live: before, every 1012 reconnected without a pause.
    page.wait_for_timeout(3000)
    assert 2 <= len(streams.urls) <= 5, streams.urls


def test_over_the_rate_limit_the_page_waits_at_least_five_seconds(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, closed_with(4429))
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Connection lost"))
    page.wait_for_timeout(4800)
    assert len(streams.urls) == 1, streams.urls


def test_a_refused_ticket_is_tried_once_more_before_the_agent_is_signed_out(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, closed_with(4401))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Your sign-in has expired. Please sign in again.")
    assert len(streams.urls) == 2, streams.urls
    # Each try had a ticket of its own.
    tickets = [re.search(r"ticket=([^&]+)", url) for url in streams.urls]
    assert all(tickets)
    assert len({ticket.group(1) for ticket in tickets if ticket}) == 2


def test_a_refused_resume_position_starts_again_from_a_snapshot_and_a_refused_request_stops(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    def behave(socket: WebSocketRoute, nth: int) -> None:
        if nth == 1:
            # A position to resume from, then 4400 (as for a version the server cannot read).
            socket.send('{"type":"reconnect","reason":"lifetime","epoch":"e","version":7}')
        socket.close(code=4400, reason="invalid query.version")

    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, behave)
    expect(page.locator("#connection-text")).to_have_text(
        "The live view could not be opened: the server refused the request. Reload the page to try again."
    )
    assert len(streams.urls) == 2, streams.urls
    assert "version=" not in streams.urls[1]
    # Not a refusal of access: the enquiry stays in hand for a reload.
    expect(page.locator("#complete-form")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.enquiry')") is not None


def test_silence_on_a_dead_path_reconnects_without_waiting_for_the_browser_to_close_it(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    # The page's clock is the test's: 25 s of silence pass at once.
    page.clock.install()

    def behave(socket: WebSocketRoute, _nth: int) -> None:
        socket.send('{"type":"heartbeat","epoch":"e","version":0,"live":true}')
        # A dead path: the page's close is never answered, so its socket never reports "close".
        socket.on_close(lambda _code, _reason: None)

    streams = enquiry_on_fake_streams(stack, page, producer, agent_token, behave)
    expect(page.locator("#connection-text")).to_have_text(LIVE)
    page.clock.run_for(26_000)
    expect(page.locator("#connection-text")).to_have_text(re.compile("^Connection lost"))
    page.clock.run_for(2_000)  # the first pause (0.25 s, jittered)
    expect(page.locator("#connection-text")).to_have_text(LIVE)
    assert len(streams.urls) == 2, streams.urls


def test_a_stopped_streams_late_failure_never_reaches_the_next_enquiry(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    a_known_citizen_found_by_phone(stack, page, producer, agent_token)
    held: list[Route] = []

    def tickets(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # the first enquiry's ticket request: answered later

    page.route("**/v1/stream-tickets", tickets)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()
    # The agent signs out while the first stream waits for its ticket, signs in again and starts another.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Access token").fill(agent_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.locator("#connection-text")).to_have_text(LIVE)

    # The first stream's ticket request fails only now: its stream, stopped, must not say so on this page.
    held[0].fulfill(status=503, content_type="application/problem+json", body='{"status":503}')
    page.wait_for_timeout(1500)
    expect(page.locator("#connection-text")).to_have_text(LIVE)
    expect(page.get_by_role("heading", name=f"Citizen {CITIZEN}")).to_be_visible()


def test_a_validation_error_is_shown_with_its_field(
    stack: Stack, page: Page, producer: KafkaProducer, agent_token: str
) -> None:
    a_known_citizen_found_by_phone(stack, page, producer, agent_token)
    page.get_by_label("Find the citizen by").select_option("citizen_id")
    page.get_by_label("Citizen id").fill("has a space")
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "The request is not valid. citizen_id: String should match"
    )
