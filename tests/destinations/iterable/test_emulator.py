"""The sandbox's Iterable emulator on its own, over raw HTTP: the strictness and state the connector tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from syncer.sandbox import Sandbox

KEY = "sandbox-iterable-key"
LIST_ID = 1001
NEWSLETTER = 42  # a message type id


@pytest.fixture
def sandbox(sandbox):
    sandbox.iterable.create_list(LIST_ID, "vip")
    return sandbox


def call(sandbox: Sandbox, op: str, body: dict) -> requests.Response:
    return requests.post(f"{sandbox.url_for('iterable')}/api/lists/{op}", json=body, headers={"Api-Key": KEY}, timeout=10)


def test_a_channel_unsubscribe_shows_in_the_users_consent(sandbox):
    """The emulator records a channel unsubscribe, so the connector's 'consent never changes' proves something."""
    sandbox.iterable.add_user(email="person1@example.com")
    body = {"listId": LIST_ID, "subscribers": [{"email": "person1@example.com"}], "channelUnsubscribe": True}
    assert call(sandbox, "unsubscribe", body).status_code == 200
    assert sandbox.iterable.subscription_state(email="person1@example.com")["unsubscribedChannelIds"] == [1]
    assert sandbox.iterable.consent_of(str(LIST_ID), {"email": "person1@example.com"})["unsubscribedChannelIds"] == [1]


def test_the_emulator_refuses_more_than_1000_subscribers(sandbox):
    body = {"listId": LIST_ID, "subscribers": [{"email": f"p{i}@example.com"} for i in range(1001)]}
    response = call(sandbox, "subscribe", body)
    assert response.status_code == 400 and response.json()["code"] == "BatchTooLarge"
    assert sandbox.iterable.list_members(LIST_ID) == set()


def test_throttle_next_answers_as_iterable_throttles_once(sandbox):
    assert sandbox.iterable.throttle_next(7.0) is None  # Iterable's 429 names no wait
    body = {"listId": LIST_ID, "subscribers": [{"email": "person1@example.com"}]}
    throttled = call(sandbox, "subscribe", body)
    assert throttled.status_code == 429 and throttled.json()["code"] == "RateLimitExceeded"
    assert "Retry-After" not in throttled.headers
    assert sandbox.iterable.list_members(LIST_ID) == set()
    assert call(sandbox, "subscribe", body).status_code == 200


def test_consent_of_reads_the_user_by_email_else_user_id(sandbox):
    iterable = sandbox.iterable
    iterable.add_user(email="person1@example.com", unsubscribed_channel_ids=[7], subscribed_message_type_ids=[NEWSLETTER])
    iterable.add_user(user_id="u-2", unsubscribed_message_type_ids=[NEWSLETTER])
    assert iterable.consent_of("1001", {"email": "Person1@example.com", "external_id": "u-2"}) == {
        "unsubscribedChannelIds": [7], "unsubscribedMessageTypeIds": [], "subscribedMessageTypeIds": [NEWSLETTER]}
    assert iterable.consent_of("1001", {"external_id": "u-2"})["unsubscribedMessageTypeIds"] == [NEWSLETTER]
    assert iterable.consent_of("1001", {"email": "nobody@example.com"}) is None


def test_emulator_state_survives_a_save_and_load(tmp_path: Path, sandbox):
    iterable = sandbox.iterable
    iterable.add_user(email="person2@example.com", unsubscribed_channel_ids=[7], unsubscribed_message_type_ids=[NEWSLETTER])
    call(sandbox, "subscribe", {"listId": LIST_ID, "subscribers": [{"email": "person1@example.com"},
                                                                   {"userId": "u-9", "preferUserId": True}]})
    sandbox.save(tmp_path / "state.json")
    restored = Sandbox(port=0, state_file=tmp_path / "state.json")
    assert restored.iterable.list_members(LIST_ID) == {"person1@example.com", "u-9"}
    assert restored.iterable.subscription_states() == iterable.subscription_states()
