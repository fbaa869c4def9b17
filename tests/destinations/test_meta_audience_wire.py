"""What MetaAudienceDestination puts on the wire for a full batch, seen by the sandbox emulator.

The payload goes as one multipart form field (as Meta's ``curl -F payload=...`` examples send it) so
requests does not percent-encode a megabyte byte by byte; these tests pin that the platform still
receives exactly the payload and session the SDK would have sent.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from destinations.base import Member, RowStatus
from destinations.meta.connector import MetaAudienceDestination
from tests.destinations.test_meta_audience import AUDIENCE, TOKEN, config, sandbox, sha  # noqa: F401  (sandbox: the fixture)


@pytest.fixture
def dest(sandbox, monkeypatch):
    monkeypatch.setenv("META_TOKEN", TOKEN)
    destination = MetaAudienceDestination(config(sandbox.url), name="meta_vip")
    yield destination
    destination.close()


@pytest.fixture
def bodies(sandbox, monkeypatch):
    """(content type, params) of each Graph request the emulator parsed."""
    from destinations.meta import emulator

    seen: list[tuple[str, dict]] = []
    parse = emulator._parse_params

    def spy(query, body, content_type):
        params = parse(query, body, content_type)
        seen.append((content_type.split(";")[0], {k: v for k, v in params.items() if k not in ("access_token", "appsecret_proof")}))
        return params

    monkeypatch.setattr(emulator, "_parse_params", spy)
    return seen


def full_batch(n: int = 10_000) -> list[Member]:
    return [Member(f"k{i}", {"email": sha(f"p{i}@example.com"), "phone": sha(f"1415555{i:04d}")}) for i in range(n)]


def test_a_full_multi_key_batch_arrives_as_the_sdk_would_encode_it(dest, sandbox, bodies):
    members = full_batch()
    result = dest.add(AUDIENCE, members)
    assert [o.member_key for o in result.outcomes] == [m.member_key for m in members]
    assert {o.status for o in result.outcomes} == {RowStatus.SENT}
    [(content_type, params)] = bodies
    assert content_type == "multipart/form-data"
    expected = {"schema": ["EMAIL", "PHONE"], "data": [[m.identifiers["email"], m.identifiers["phone"]] for m in members]}
    assert params["payload"] == json.dumps(expected, sort_keys=True, separators=(",", ":"))  # byte for byte
    session = json.loads(params["session"])
    assert session["batch_seq"] == 1 and session["last_batch_flag"] is True and session["estimated_num_total"] == 10_000
    assert len(sandbox.meta.members(AUDIENCE.audience_id)) == 10_000


def test_a_remove_is_a_post_with_the_method_override_and_the_same_payload(dest, sandbox, bodies):
    members = full_batch(50)
    dest.add(AUDIENCE, members)
    result = dest.remove(AUDIENCE, members[:20])
    assert len(result.outcomes) == 20 and result.requests == 1
    content_type, params = bodies[-1]
    assert content_type == "multipart/form-data" and params["method"] == "DELETE"
    assert json.loads(params["payload"])["data"][0] == [members[0].identifiers["email"], members[0].identifiers["phone"]]
    assert sandbox.meta.requests[-1][0] == "POST"
    assert len(sandbox.meta.members(AUDIENCE.audience_id)) == 30


def test_invalid_samples_and_skipped_members_keep_their_outcomes_in_input_order(dest):
    members = [Member("a", {"email": sha("a@example.com")}), Member("none", {"gender": ""}),
               Member("bad", {"email": "NOT-A-HASH"}), Member("b", {"email": sha("b@example.com")})]
    result = dest.add(AUDIENCE, members)
    assert [(o.member_key, o.status, o.reason) for o in result.outcomes] == [
        ("a", RowStatus.SENT, None), ("none", RowStatus.REJECTED, "no_supported_identifier"),
        ("bad", RowStatus.REJECTED, "meta_invalid_entry"), ("b", RowStatus.SENT, None)]
    assert dict(result.platform_counts) == {"num_received": 3, "num_invalid_entries": 1}


def test_a_replace_sends_every_batch_as_multipart(dest, sandbox, bodies, monkeypatch):
    monkeypatch.setattr(MetaAudienceDestination, "capabilities", dataclasses.replace(MetaAudienceDestination.capabilities, max_batch=4))
    members = full_batch(10)
    result = dest.replace(AUDIENCE, members)
    assert result.requests == 3 and len(result.outcomes) == 10
    assert [c for c, _ in bodies] == ["multipart/form-data"] * 3
    assert [json.loads(p["session"])["batch_seq"] for _, p in bodies] == [1, 2, 3]
    assert {m["EMAIL"] for m in sandbox.meta.members(AUDIENCE.audience_id)} == {m.identifiers["email"] for m in members}
