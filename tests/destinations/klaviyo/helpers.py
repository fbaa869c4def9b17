"""Plain helpers of the Klaviyo tests (fixtures are in ``conftest.py`` beside this module)."""

from __future__ import annotations

from destinations.base import AudienceRef, Member
from destinations.klaviyo.config import KlaviyoListConfig

LIST = "LsT001"
AUDIENCE = AudienceRef(sync="vip_klaviyo", audience_id=LIST)
RELATIONSHIPS = f"/api/lists/{LIST}/relationships/profiles/"


class DictCache:
    """The ledger's id cache, in memory, counting reads and writes."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.puts: list[dict[str, str]] = []

    def get_many(self, member_keys):
        return {k: self.ids[k] for k in member_keys if k in self.ids}

    def put_many(self, ids):
        self.puts.append(dict(ids))
        self.ids.update(ids)

    def profile_of(self, member_key: str) -> str:
        """The profile id cached for a member (the ledger keeps it with a digest of its identifiers)."""
        return self.ids[member_key].partition("#")[0]


def member(i: int, **identifiers: str) -> Member:
    return Member(f"k{i}", identifiers or {"email": f"person{i}@example.com"})


def config(url: str | None, **overrides) -> KlaviyoListConfig:
    fields = {"type": "klaviyo_list", "api_key_env": "KLAVIYO_KEY", "endpoint": url, "import_poll_interval_s": 0.01} | overrides
    return KlaviyoListConfig(**fields)


def calls(sandbox, method: str | None = None, fragment: str = "") -> list[tuple[str, str, int]]:
    """The Klaviyo emulator's requests (method, path, rows), filtered by method and a part of the path."""
    return [r for r in sandbox.klaviyo.requests if (method is None or r[0] == method) and fragment in r[1]]
