"""Pydantic models of a project's config files.

A project is a folder::

    syncer.yml              warehouse, ledger, defaults (ProjectConfig)
    segments/<name>.yml     one segment per file (SegmentConfig); SQL inline or in a .sql file
    destinations/<name>.yml one platform account per file (DestinationConfig, discriminated on type)
    syncs/<name>.yml        segment x destination x audience (SyncConfig)

The name of a segment, destination or sync is its file's stem. Every model forbids unknown keys so a
typo fails loudly, and no model holds a secret: credentials are names of environment variables
(fields ending in ``_env``), resolved at run time by ``syncer.environment.resolve_secret``. Each
platform's destination model lives in its folder (``destinations/<platform>/config.py``); the union
of them all is built from the registry.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from destinations.registry import SPECS
from syncer.environment import scheme_of
from syncer.project.rule_models import SegmentRules

IdentifierKind = Literal[
    "email", "phone", "first_name", "last_name", "postal_code", "city", "state", "country",
    "madid", "external_id", "date_of_birth", "gender",
]
Channel = Literal["ads", "email", "sms"]
CADENCE = re.compile(r"^(@(hourly|daily|weekly)|every \d+[mh]|(\S+\s+){4}\S+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateConfig(_Strict):
    """Safety gates checked between plan and apply. A tripped gate holds the sync."""

    zero_row_guard: bool = Field(True, description="Hold when the segment returned no rows but the audience holds members.")
    max_removal_pct: float | None = Field(20.0, ge=0, le=100, description="Hold when removals exceed this share (%) of the audience.")
    max_removals: int | None = Field(None, ge=0, description="Hold when removals exceed this many members.")
    min_audience_size: int = Field(0, ge=0, description="Hold when the planned audience would be smaller than this.")


class SuppressionRule(_Strict):
    """Which conversions suppress which segments, and for how long."""

    types: list[str] = Field(description="Conversion types this rule reacts to, e.g. [purchase].")
    segments: list[str] = Field(description="Segments the person is suppressed from; ['*'] for every segment.")
    ttl_hours: float | None = Field(None, gt=0, description="Suppression lasts this long; null: until the person leaves the segment.")


class _CursorTable(_Strict):
    """A table read past a cursor kept in the ledger: the conversions and events sources share this shape."""

    url: str | None = Field(None, description="SQLAlchemy URL of the database holding the table; default: the warehouse. ${VAR} is read from the environment; relative sqlite/duckdb paths are relative to the project.")
    tiebreak_column: str | None = Field(None, description="With a timestamp cursor_column: a unique id ordering rows that share a timestamp.")
    member_key_column: str = Field("customer_id", description="Column holding the member key (as in the segments).")
    poll_interval_ms: int = Field(100, ge=10, le=60_000, description="How often the table is read for new rows (`syncer suppress --follow`, `syncer follow`, the Dagster sensors).")


class ConversionSource(_CursorTable):
    """The fast path: a table of conversions read by an increasing cursor, suppressing people at once."""

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="Table (or view) of conversions.")
    cursor_column: str = Field("conversion_id", description="Increasing column read past the last one seen: an id, or a timestamp with tiebreak_column.")
    type_column: str = Field("type", description="Column holding the conversion type.")
    time_column: str = Field("converted_at", description="Column holding when the conversion happened (UTC); time-to-suppression is measured from it.")
    rules: list[SuppressionRule] = Field(min_length=1, description="Which types suppress which segments.")


class EventSource(_CursorTable):
    """Real-time segments: a table of behavioural events read by an increasing cursor. A segment that lists
    an event type under its ``events:`` is re-evaluated for the members those events touch, within a second."""

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="Table (or view) of events.")
    cursor_column: str = Field("event_id", description="Increasing column read past the last one seen: an id, or a timestamp with tiebreak_column.")
    type_column: str = Field("type", description="Column holding the event type, matched against each segment's `events:`.")
    time_column: str = Field("occurred_at", description="Column holding when the event happened (UTC); latency is measured from it.")


class StreamGateConfig(_Strict):
    """Limits on what the real-time path may send for one sync per window, so a broken event feed cannot flood
    or empty an audience. A tripped limit holds the sync's stream (the batch run still runs, with its own gates)."""

    window_minutes: float = Field(60, gt=0, description="Length of the sliding window the limits count over.")
    max_adds: int | None = Field(None, ge=0, description="Most members added per window; default: the sync's max_removals, else max_removal_pct of the audience (at least 100).")
    max_removes: int | None = Field(None, ge=0, description="Most members removed per window; default as max_adds.")


class DbtConfig(_Strict):
    """The dbt project whose models segments may name (``dbt: <model>`` in a segment file)."""

    project_dir: str = Field(min_length=1, description="Folder of the dbt project (holding dbt_project.yml), relative to the syncer project.")
    manifest: str | None = Field(None, description="Path of the dbt manifest.json, relative to the syncer project; default <project_dir>/target/manifest.json (written by `dbt parse`, `dbt compile` or `dbt build`).")
    profiles_dir: str | None = Field(None, description="Folder holding the dbt profiles.yml, relative to the syncer project; default: dbt's own search (the dbt project folder, then ~/.dbt).")
    target: str | None = Field(None, description="dbt target (of profiles.yml) Dagster runs the models with; default: the profile's own target.")


class ServeConfig(_Strict):
    """`syncer serve`: the HTTP endpoint receiving Twilio's inbound STOP webhooks and signed event posts."""

    event_secret_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="Environment variable holding the shared secret that signs event posts (POST /events, header X-Syncer-Signature); unset: /events is not served.")
    twilio_destinations: list[str] | None = Field(None, description="twilio_sms destinations whose Auth Token validates inbound webhooks (POST /twilio/inbound); default: every twilio_sms destination. [] serves no Twilio route.")
    public_url: str | None = Field(None, pattern=r"^https?://[^\s?#]+$", description="Base URL the world reaches this server at, e.g. https://hooks.example.com/syncer; Twilio signs the full URL it called, so behind a proxy this must be the public one. Default: the URL of each request as this server sees it.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on (--host overrides it).")
    port: int = Field(8600, ge=0, le=65535, description="Port to listen on (--port overrides it); 0 picks a free one.")


class ProjectConfig(_Strict):
    """syncer.yml: where the data and the ledger live, and defaults for every sync."""

    name: str = Field("syncer", description="Project name shown in the CLI and Dagster.")
    warehouse_url: str = Field(description="SQLAlchemy URL of the warehouse; ${VAR} is replaced from the environment. Relative duckdb paths are relative to the project folder.")
    ledger_url: str = Field("sqlite:///.syncer/ledger.db", description="SQLAlchemy URL of the ledger (SQLite in WAL mode or Postgres).")
    default_region: str = Field("US", min_length=2, max_length=2, description="Region used to parse phone numbers written without a country code.")
    chunk_rows: int = Field(100_000, ge=1_000, description="Rows per extraction chunk (bounds memory).")
    lease_ttl_seconds: float = Field(60, gt=0, description="How long a sync's lease outlives its holder's last renewal (renewed before every batch): another run takes over a sync whose holder stopped renewing this long ago. $SYNCER_LEASE_TTL_S overrides it.")
    memory_limit: str = Field("600MB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$", description="Most memory the in-process diff (DuckDB) may use; beyond it DuckDB spills to .syncer/tmp. The default keeps a 10M-member plan under 1 GB of process memory. With diff_mode: warehouse on a DuckDB warehouse, the warehouse and the in-process diff are one DuckDB instance under it.")
    diff_mode: Literal["local", "warehouse"] = Field("local", description="Where the diff runs: 'local' (read-only warehouse credentials; members streamed into an in-process DuckDB) or 'warehouse' (snapshots kept in bookkeeping_schema and the diff run there as SQL, so only changed rows leave; DuckDB, PostgreSQL, Snowflake, Spark (spark://) and BigQuery warehouses).")
    bookkeeping_schema: str = Field("syncer", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="With diff_mode: warehouse, the warehouse schema the syncer may write its snapshots to.")
    gates: GateConfig = Field(default_factory=GateConfig, description="Default gates for every sync.")
    owners: list[str] = Field(default_factory=list, description="Owners shown in Dagster (emails or team:name).")
    conversions: ConversionSource | None = Field(None, description="The fast path: conversions that suppress people from segments within seconds.")
    serve: ServeConfig | None = Field(None, description="`syncer serve`: the endpoint for Twilio's inbound STOP webhooks and signed event posts; default: its defaults.")
    dbt: DbtConfig | None = Field(None, description="The dbt project whose models segments may name (dbt: <model>); in Dagster its models become assets upstream of those segments.")
    events: EventSource | None = Field(None, description="Real-time segments: events that make the segments listing their type re-evaluate the members they touch.")

    @model_validator(mode="after")
    def _warehouse_mode_needs_a_supported_warehouse(self) -> "ProjectConfig":
        scheme = scheme_of(self.warehouse_url)
        # the engines syncer.planning.warehouse_dialects writes SQL for (config sits below planning: listed here)
        if self.diff_mode == "warehouse" and scheme not in ("duckdb", "postgresql", "postgres", "snowflake", "spark", "bigquery",
                                                            "databricks"):
            raise ValueError(f"diff_mode: warehouse runs the diff in DuckDB, PostgreSQL, Snowflake, Spark (spark://, e.g. on"
                             f" Databricks), Databricks SQL (databricks://) or BigQuery warehouses; this warehouse_url is"
                             f" '{scheme}'. Use diff_mode: local"
                             f" (the default), which needs read access only")
        if self.diff_mode == "local" and scheme == "spark":
            raise ValueError("a spark:// warehouse_url runs the diff in Spark: set diff_mode: warehouse")
        return self

    @field_validator("warehouse_url", "ledger_url")
    @classmethod
    def _no_password(cls, url: str) -> str:
        if re.search(r"://[^/@:]+:(?!\$\{)[^/@]+@", url):
            raise ValueError(
                "the URL holds a literal password; write it as ${ENV_VAR}"
                " (e.g. postgresql://user:${PG_PASSWORD}@host/db) and export the password in that variable"
            )
        return url


class ConsentConfig(_Strict):
    """Consent columns per channel: true = granted, false = denied, NULL = unknown."""

    ads: str | None = Field(None, description="Column with consent to use data for advertising.")
    email: str | None = Field(None, description="Column with email marketing consent.")
    sms: str | None = Field(None, description="Column with SMS marketing consent.")


_SEGMENT_SOURCES = ("sql", "sql_file", "rules", "dbt")


class SegmentConfig(_Strict):
    """segments/<name>.yml: one audience defined as SQL returning one row per member."""

    description: str = ""
    sql: str | None = Field(None, description="The query, inline.")
    sql_file: str | None = Field(None, description="Path of a .sql file, relative to the segment file.")
    rules: SegmentRules | None = Field(None, description="The query written as rules over the warehouse's tables instead of SQL (compiled to SQL for the warehouse's dialect).")
    dbt: str | None = Field(None, min_length=1, description="Name of a dbt model whose relation is the segment, resolved from the dbt project's manifest.json.")
    member_key: str = Field(description="Column holding a stable member id (never PII).")
    identifiers: dict[IdentifierKind, str] = Field(description="Identifier kind -> column, e.g. {email: email, phone: phone}.")
    phone_region: str | None = Field(None, description="Default region for phones without country code; else the project's.")
    phone_region_column: str | None = Field(None, description="Column holding each member's ISO country, used as the phone region.")
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    cadence: str = Field("@hourly", description="How often to refresh: @hourly, @daily, 'every 15m' or a cron expression.")
    events: list[str] = Field(default_factory=list, description="Event types (of syncer.yml's `events:` source) that re-evaluate the members they touch within a second; ['*'] for any type.")
    expires_at: str | None = Field(None, description="Column holding when each member leaves the segment (UTC timestamp), e.g. last cart event + 24 h: a member is out from that moment, removed by `syncer follow` without waiting for the next run.")
    owners: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_query(self) -> "SegmentConfig":
        given = [name for name in _SEGMENT_SOURCES if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(repr(g) for g in given)} are given; keep exactly one source of members")
        if not given:
            raise ValueError("give exactly one of 'sql' (inline), 'sql_file' (path to a .sql file), 'rules' (conditions"
                             " over the warehouse's tables) or 'dbt' (a dbt model's name)")
        if not self.identifiers:
            raise ValueError("'identifiers' must map at least one identifier kind to a column")
        return self

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        if not CADENCE.match(value.strip()):
            raise ValueError("expected @hourly, @daily, @weekly, 'every 15m' / 'every 2h', or a 5-field cron expression")
        return value


DestinationConfig = Annotated[Union[tuple(spec.config for spec in SPECS.values())], Field(discriminator="type")]
"""Any platform's destination file, told apart by its ``type``."""


class CreateAudience(_Strict):
    """Create the audience on the platform the first time the sync runs (opt-in)."""

    name: str = Field(min_length=1, max_length=200, description="Name of the new audience on the platform.")
    description: str = Field("", description="Description of the new audience.")


class SyncConfig(_Strict):
    """syncs/<name>.yml: keep one segment mirrored into one audience of one destination."""

    description: str = ""
    segment: str = Field(description="Name of a segment (its file stem).")
    destination: str = Field(description="Name of a destination (its file stem).")
    audience_id: str | None = Field(None, min_length=1, description="Audience / list id on the platform (omit it with create_audience).")
    create_audience: CreateAudience | None = Field(None, description="Create the audience on the first run instead of naming an existing one; its id is kept in the ledger.")
    mode: Literal["mirror", "add_only", "trigger"] = Field("mirror", description="mirror sends adds and removes; add_only never removes; trigger sends once per entry into the segment (Twilio).")
    identifiers: list[IdentifierKind] = Field(description="Which of the segment's identifiers to send.")
    channel: Channel | None = Field(None, description="Consent channel that must not be denied for a member to be sent; default: the destination's (ads, email or sms).")
    send_unknown_consent: bool | None = Field(None, description="Send members whose consent column is NULL; default: yes for ads, no for email and sms.")
    gates: GateConfig | None = Field(None, description="Gates for this sync; default: the project's.")
    stream_gates: StreamGateConfig | None = Field(None, description="Limits for the real-time path (events and expiries) per window; default: derived from the sync's gates.")
    max_plan_age_minutes: float = Field(60, gt=0, description="`syncer apply` refuses a saved plan of this sync older than this: its segment has moved on since (plan again).")
    extras: Literal["keep", "remove"] = Field("keep", description="What `syncer reconcile` does with members the platform lists that this sync never sent (people added by hand): keep them (default) or remove them (mirror syncs only, within the gates).")
    traits: dict[str, str] = Field(default_factory=dict, description="Profile properties sent with the membership, platform property name -> segment column (Klaviyo properties, Braze custom attributes, Iterable dataFields, Mailchimp merge field tags); sent again only when a value changes.")
    null_traits: Literal["keep", "clear"] = Field("keep", description="A NULL trait value: 'keep' leaves the platform's value as it is (the property is left out), 'clear' clears it on the platform.")
    owners: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_audience(self) -> "SyncConfig":
        if (self.audience_id is None) == (self.create_audience is None):
            raise ValueError("give exactly one of 'audience_id' (an existing audience) or 'create_audience' (make one on the first run)")
        return self

    @field_validator("traits")
    @classmethod
    def _trait_names(cls, traits: dict[str, str]) -> dict[str, str]:
        for name, column in traits.items():
            if not name.strip() or name.startswith("_") or not column.strip():
                raise ValueError(f"trait {name!r}: give a property name (not starting with '_') and a segment column")
        return traits

    @field_validator("identifiers")
    @classmethod
    def _some(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError("list at least one identifier to send")
        if len(set(kinds)) != len(kinds):
            raise ValueError("an identifier is listed twice")
        return kinds


