"""The Meta emulator's reading of request bodies and payloads: every encoding, every validation rule.

Big batches take a whole-column fast path; these tests hold it to the value-by-value rules (an oracle
written from the module docstring) on mixed batches, so the fast path can never accept what the rules
refuse.
"""

from __future__ import annotations

import hashlib
import json
import random
from urllib.parse import urlencode

import pytest
from urllib3 import encode_multipart_formdata

from destinations.meta.emulator import MetaEmulator

TOKEN = "t"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def meta() -> MetaEmulator:
    emulator = MetaEmulator(TOKEN)
    emulator.create_audience("1001")
    return emulator


_sessions = iter(range(1, 1_000_000))


def post(meta: MetaEmulator, payload, *, encoding: str = "multipart", remove: bool = False, path: str = "/v26.0/1001/users"):
    fields = {"payload": payload if isinstance(payload, str) else json.dumps(payload),
              "session": json.dumps({"session_id": next(_sessions), "batch_seq": 1, "last_batch_flag": True})}
    if remove:
        fields["method"] = "DELETE"
    if encoding == "multipart":
        body, content_type = encode_multipart_formdata(fields)
    elif encoding == "form":
        body, content_type = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    else:
        body, content_type = json.dumps({k: json.loads(v) if k != "method" else v for k, v in fields.items()}).encode(), "application/json"
    status, _, out = meta.handle("POST", path, f"access_token={TOKEN}", body, content_type)
    return status, json.loads(out)


# ----- the documented rules, value by value ----------------------------------------------------------
def _reason(key: str, value) -> str | None:
    if not isinstance(value, str):
        return f"{key}: not a string"
    if key == "EXTERN_ID":
        return None
    if key == "MADID":
        import re
        ok = re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}", value)
        return None if ok else "MADID: not a lowercase mobile advertiser id"
    import re
    return None if re.fullmatch(r"[0-9a-f]{64}", value) else f"{key}: not a lowercase hex SHA-256"


ORDER = ("EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "MADID", "COUNTRY")


def oracle(schema, data) -> tuple[int, int, dict[str, str]]:
    """(valid rows, invalid rows, samples) as the rules say."""
    valid, invalid, samples = 0, 0, {}
    for row in data:
        values = [(row, schema)] if isinstance(schema, str) else sorted(zip(row, schema), key=lambda vk: ORDER.index(vk[1]))
        key_of = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID", "EXTERN_ID": "EXTERN_ID"}
        bad, seen = None, False
        for value, key in values:
            key = key_of.get(key, key)
            if value == "":
                if isinstance(schema, str):
                    bad = ("", "empty value")
                    break
                continue
            reason = _reason(key, value)
            if reason:
                bad = (str(value), reason)
                break
            seen = True
        if bad is None and not seen:
            bad = ("", "all values empty")
        if bad is None:
            valid += 1
        else:
            invalid += 1
            if len(samples) < 100:
                samples[bad[0]] = bad[1]
    return valid, invalid, samples


ODD = ["", sha("x").upper(), sha("y")[:63], 123, None, sha("a") + "\n" + sha("b"), sha("c") + "\n", "person@example.com",
       "6d92078a-8246-4ba4-ae5b-76104861e7dc", "ext-1\n2", sha("d")[:31] + "\n" + sha("d")[:32]]  # the last: 64 long


def batch(columns: int, n: int, odd_share: float, seed: int) -> list:
    rnd = random.Random(seed)
    def value(i: int, j: int):
        return rnd.choice(ODD) if rnd.random() < odd_share else sha(f"{seed}-{i}-{j}")
    return [value(i, 0) if columns == 0 else [value(i, j) for j in range(columns)] for i in range(n)]


@pytest.mark.parametrize("schema", ["EMAIL_SHA256", "PHONE_SHA256", "EXTERN_ID", "MOBILE_ADVERTISER_ID",
                                    ["EMAIL", "PHONE"], ["PHONE", "EMAIL", "FN"], ["MADID", "EXTERN_ID", "EMAIL"]])
@pytest.mark.parametrize("odd_share", [0.0, 0.001, 0.3])
@pytest.mark.parametrize("encoding", ["multipart", "form", "json"])
def test_counts_and_samples_follow_the_rules_value_by_value(meta, schema, odd_share, encoding):
    data = batch(0 if isinstance(schema, str) else len(schema), 2_000, odd_share, seed=len(str(schema)) + int(odd_share * 1000))
    status, body = post(meta, {"schema": schema, "data": data}, encoding=encoding)
    assert status == 200, body
    valid, invalid, samples = oracle(schema, data)
    assert (body["num_received"], body["num_invalid_entries"], body["invalid_entry_samples"]) == (valid + invalid, invalid, samples)


def test_only_empty_rows_of_valid_columns_are_invalid(meta):
    a, b = sha("a"), sha("b")
    status, body = post(meta, {"schema": ["PHONE", "EMAIL"], "data": [[a, ""], ["", ""], ["", b]]})
    assert status == 200 and (body["num_invalid_entries"], body["invalid_entry_samples"]) == (1, {"": "all values empty"})
    assert sorted(meta.members("1001"), key=str) == sorted([{"PHONE": a}, {"EMAIL": b}], key=str)


def test_rows_that_share_an_identifier_merge_within_one_batch_and_across_batches(meta):
    e1, e2, p1 = sha("e1"), sha("e2"), sha("p1")
    post(meta, {"schema": ["EMAIL", "PHONE"], "data": [[e1, p1], [e2, p1]]})  # same phone: one person
    assert meta.members("1001") == [{"EMAIL": e2, "PHONE": p1}]
    post(meta, {"schema": "EMAIL_SHA256", "data": [e1, e1]})  # a repeated value within the batch: one person
    assert len(meta.members("1001")) == 2
    post(meta, {"schema": "PHONE_SHA256", "data": [p1]}, remove=True)
    assert meta.members("1001") == [{"EMAIL": e1}]


def test_a_big_batch_of_new_people_lands_whole_and_leaves_whole(meta):
    rows = [[sha(f"e{i}"), sha(f"p{i}")] for i in range(10_000)]
    status, body = post(meta, {"schema": ["EMAIL", "PHONE"], "data": rows})
    assert status == 200 and body["num_received"] == 10_000 and len(meta.members("1001")) == 10_000
    post(meta, {"schema": "EMAIL_SHA256", "data": [r[0] for r in rows[:4_000]]}, remove=True)
    post(meta, {"schema": ["PHONE"], "data": [[r[1]] for r in rows[4_000:9_999]]}, remove=True)
    assert meta.members("1001") == [{"EMAIL": rows[-1][0], "PHONE": rows[-1][1]}]


def test_rows_not_aligned_to_the_schema_fail_the_request(meta):
    status, body = post(meta, {"schema": ["EMAIL", "PHONE"], "data": [[sha("a"), sha("b")], [sha("c")]]})
    assert status == 400 and body["error"]["code"] == 100 and "aligned to the schema" in body["error"]["message"]
    assert meta.members("1001") == []


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{}\r\n--x--\r\n"),  # no boundary
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{}\r\n"),  # unterminated
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Type: text/plain\r\n\r\n{}\r\n--x--\r\n"),  # a part without a name
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: attachment; name=\"payload\"\r\n\r\n{}\r\n--x--\r\n"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n\xff\r\n--x--\r\n"),
    ("text/plain", b"payload={}"),
])
def test_an_unreadable_body_is_code_100(meta, content_type, body):
    status, _, out = meta.handle("POST", "/v26.0/1001/users", f"access_token={TOKEN}", body, content_type)
    assert status == 400 and json.loads(out)["error"]["code"] == 100


def test_a_file_part_is_not_a_parameter(meta):
    body, content_type = encode_multipart_formdata({"payload": ("payload.json", json.dumps({"schema": "EMAIL_SHA256", "data": [sha("a")]}))})
    status, _, out = meta.handle("POST", "/v26.0/1001/users", f"access_token={TOKEN}", body, content_type)
    assert status == 400 and "payload is required" in json.loads(out)["error"]["message"]


def test_multipart_fields_carry_the_token_too(meta):
    body, content_type = encode_multipart_formdata({"access_token": "wrong", "payload": json.dumps({"schema": "EMAIL_SHA256", "data": [sha("a")]}),
                                                    "session": json.dumps({"session_id": 5, "batch_seq": 1, "last_batch_flag": True})})
    status, _, out = meta.handle("POST", "/v26.0/1001/users", "", body, content_type)
    assert status == 400 and json.loads(out)["error"]["code"] == 190
