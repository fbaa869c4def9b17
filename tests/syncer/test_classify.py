"""New members' adds are built by column; they must be exactly what the row-by-row rules give, in key order."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from syncer.identity import rows as identity
from syncer.ledger.store import Ledger
from syncer.planning.classify import classify_chunk
from syncer.planning.plan import PlanRows, SyncPlan

KINDS = ["email", "first_name", "phone"]
ROWS = [  # member_key, email, first_name, phone, consent
    ("a1", "Ann@Example.com", "Ann", "+1 415 555 0101", "granted"),
    ("a2", "bob@example.com", 'O"Brien', "+44 20 7946 0958", "unknown"),  # a quote: JSON must escape it
    ("a3", "zoe@example.com", "Zoë", None, "granted"),  # non-ASCII: json.dumps writes \\u00eb
    ("a4", "not-an-email", None, "12", "unknown"),  # rejected
    ("a5", None, "Back\\slash", "+1 415 555 0105", "granted"),
    ("a6", "eve@example.com", None, None, "unknown"),
]


@pytest.mark.parametrize("platform", ["plain", "meta"])
def test_column_built_adds_equal_the_row_rules_in_key_order(tmp_path: Path, platform: str) -> None:
    keys, emails, names, phones, consents = (list(c) for c in zip(*ROWS))
    candidates = pa.table({"member_key": keys, "raw_fp": [f"fp{k}" for k in keys], "k_email": emails,
                           "k_first_name": names, "k_phone": phones, "consent": consents,
                           "was_held": [False] * len(keys), "was_rejected": [k == "a4" for k in keys]})
    plan = SyncPlan(sync="s", segment="g", destination="d", audience_id="1", mode="mirror", base_version=0,
                    members=0, held_before=0, adds=PlanRows(spill_dir=tmp_path, chunk_rows=2))
    dropped: dict[str, int] = {}
    classify_chunk(plan, candidates, KINDS, platform=platform, region="US", has_region=False,
                         ledger=Ledger(f"sqlite:///{tmp_path}/ledger.db"), resend_all=False,
                         pending={"a2": "add"}, dropped=dropped)
    expected = identity.identify_many([dict(zip(KINDS, (e, n, p))) for e, n, p in zip(emails, names, phones)], KINDS,
                                      platform=platform, region="US")
    wanted = [(k, f"fp{k}", dict(r.identifiers) | {"_consent": c})
              for k, r, c in zip(keys, expected, consents) if r.reason is None]
    assert [(r.member_key, r.raw_fp, r.identifiers) for r in plan.adds] == wanted
    # the stored JSON text is json.dumps' own, so a saved plan reloads with the same hash
    assert plan.adds.digest("add") == PlanRows(list(plan.adds)).digest("add")
    assert plan.rejections == [("a4", "fpa4", expected[3].reason)] and plan.cleared_rejections == ["a4"]
    assert plan.retried == 1
    assert sum(dropped.values()) == sum(len(r.dropped) for r in expected)
