"""Pydantic models of a project's config files.

A project is a folder::

    syncer.yml              warehouse, ledger, defaults (ProjectConfig)
    segments/<name>.yml     one segment per file (SegmentConfig); SQL inline or in a .sql file
    destinations/<name>.yml one platform account per file (DestinationConfig, discriminated on type)
    syncs/<name>.yml        segment x destination x audience (SyncConfig)

The name of a segment, destination or sync is its file's stem. Every model forbids unknown keys so a
typo fails loudly, and no model holds a secret: credentials are names of environment variables
(fields ending in ``_env``), resolved at run time by ``resolve_secret``.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from syncer.errors import ConfigError

IdentifierKind = Literal[
    "email", "phone", "first_name", "last_name", "postal_code", "city", "state", "country",
    "madid", "external_id", "date_of_birth", "gender",
]
Channel = Literal["ads", "email", "sms"]
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CADENCE = re.compile(r"^(@(hourly|daily|weekly)|every \d+[mh]|(\S+\s+){4}\S+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(
            "expected the NAME of an environment variable (like META_ACCESS_TOKEN), got a value that is not one;"
            " secrets never go in files"
        )
    return value


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


class ConversionSource(_Strict):
    """The fast path: a table of conversions read by an increasing cursor, suppressing people at once."""

    url: str | None = Field(None, description="SQLAlchemy URL of the database holding the table; default: the warehouse. ${VAR} is read from the environment; relative sqlite/duckdb paths are relative to the project.")
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="Table (or view) of conversions.")
    cursor_column: str = Field("conversion_id", description="Increasing column read past the last one seen: an id, or a timestamp with tiebreak_column.")
    tiebreak_column: str | None = Field(None, description="With a timestamp cursor_column: a unique id ordering rows that share a timestamp.")
    member_key_column: str = Field("customer_id", description="Column holding the member key (as in the segments).")
    type_column: str = Field("type", description="Column holding the conversion type.")
    time_column: str = Field("converted_at", description="Column holding when the conversion happened (UTC); time-to-suppression is measured from it.")
    rules: list[SuppressionRule] = Field(min_length=1, description="Which types suppress which segments.")
    poll_interval_ms: int = Field(100, ge=10, le=60_000, description="How often the fast path looks for new conversions.")


class ProjectConfig(_Strict):
    """syncer.yml: where the data and the ledger live, and defaults for every sync."""

    name: str = Field("syncer", description="Project name shown in the CLI and Dagster.")
    warehouse_url: str = Field(description="SQLAlchemy URL of the warehouse; ${VAR} is replaced from the environment. Relative duckdb paths are relative to the project folder.")
    ledger_url: str = Field("sqlite:///.syncer/ledger.db", description="SQLAlchemy URL of the ledger (SQLite in WAL mode or Postgres).")
    default_region: str = Field("US", min_length=2, max_length=2, description="Region used to parse phone numbers written without a country code.")
    chunk_rows: int = Field(100_000, ge=1_000, description="Rows per extraction chunk (bounds memory).")
    memory_limit: str = Field("600MB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$", description="Most memory the in-process diff (DuckDB) may use; beyond it DuckDB spills to .syncer/tmp. The default keeps a 10M-member plan under 1 GB of process memory.")
    diff_mode: Literal["local", "warehouse"] = Field("local", description="Where the diff runs: 'local' (read-only warehouse credentials; members streamed into an in-process DuckDB) or 'warehouse' (snapshots kept in bookkeeping_schema and the diff run there as SQL, so only changed rows leave; DuckDB and PostgreSQL warehouses).")
    bookkeeping_schema: str = Field("syncer", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="With diff_mode: warehouse, the warehouse schema the syncer may write its snapshots to.")
    gates: GateConfig = Field(default_factory=GateConfig, description="Default gates for every sync.")
    owners: list[str] = Field(default_factory=list, description="Owners shown in Dagster (emails or team:name).")
    conversions: ConversionSource | None = Field(None, description="The fast path: conversions that suppress people from segments within seconds.")

    @model_validator(mode="after")
    def _warehouse_mode_needs_a_supported_warehouse(self) -> "ProjectConfig":
        scheme = self.warehouse_url.split(":", 1)[0].split("+", 1)[0].lower()
        if self.diff_mode == "warehouse" and scheme not in ("duckdb", "postgresql", "postgres"):
            raise ValueError(f"diff_mode: warehouse runs the diff in DuckDB or PostgreSQL warehouses; this warehouse_url is"
                             f" '{scheme}'. Use diff_mode: local (the default), which needs read access only")
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


class SegmentConfig(_Strict):
    """segments/<name>.yml: one audience defined as SQL returning one row per member."""

    description: str = ""
    sql: str | None = Field(None, description="The query, inline.")
    sql_file: str | None = Field(None, description="Path of a .sql file, relative to the segment file.")
    member_key: str = Field(description="Column holding a stable member id (never PII).")
    identifiers: dict[IdentifierKind, str] = Field(description="Identifier kind -> column, e.g. {email: email, phone: phone}.")
    phone_region: str | None = Field(None, description="Default region for phones without country code; else the project's.")
    phone_region_column: str | None = Field(None, description="Column holding each member's ISO country, used as the phone region.")
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    cadence: str = Field("@hourly", description="How often to refresh: @hourly, @daily, 'every 15m' or a cron expression.")
    owners: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_query(self) -> "SegmentConfig":
        if self.sql and self.sql_file:
            raise ValueError("both 'sql' and 'sql_file' are given; keep exactly one (inline query or path to a .sql file)")
        if not self.sql and not self.sql_file:
            raise ValueError("give exactly one of 'sql' (inline) or 'sql_file' (path to a .sql file)")
        if not self.identifiers:
            raise ValueError("'identifiers' must map at least one identifier kind to a column")
        return self

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        if not CADENCE.match(value.strip()):
            raise ValueError("expected @hourly, @daily, @weekly, 'every 15m' / 'every 2h', or a 5-field cron expression")
        return value


class _DestinationBase(_Strict):
    description: str = ""
    endpoint: str | None = Field(None, description="Override of the API base URL (the local sandbox, a proxy).")
    requests_per_second: float | None = Field(None, gt=0, description="Cap on our request rate to this account.")
    owners: list[str] = Field(default_factory=list)


class MetaAudienceConfig(_DestinationBase):
    """A Meta ad account whose Custom Audiences we keep in sync."""

    type: Literal["meta_audience"]
    ad_account_id: str = Field(pattern=r"^(act_)?\d+$", description="Ad account id, with or without act_.")
    access_token_env: str = Field(description="Environment variable holding a token with ads_management.")
    app_secret_env: str | None = Field(None, description="Environment variable holding the app secret (enables appsecret_proof).")
    api_version: str = Field("v26.0", pattern=r"^v\d+\.\d+$", description="Graph API version used in request paths, e.g. v26.0.")
    request_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one Graph API response before the call counts as failed (retried).")

    _check_env = field_validator("access_token_env", "app_secret_env")(classmethod(lambda cls, v: _env_name(v)))


def _envs(*names: str):
    return field_validator(*names)(classmethod(lambda cls, v: _env_name(v)))


class GoogleCustomerMatchConfig(_DestinationBase):
    """A Google Ads account whose Customer Match user lists we keep in sync."""

    type: Literal["google_customer_match"]
    customer_id: str = Field(pattern=r"^\d{3}-?\d{3}-?\d{4}$", description="Google Ads customer id that owns the user lists (dashes optional).")
    login_customer_id: str | None = Field(None, pattern=r"^\d{3}-?\d{3}-?\d{4}$", description="Manager account id sent as login-customer-id, when access goes through a manager.")
    transport: Literal["google_ads_api", "data_manager"] = Field("data_manager", description="google_ads_api: OfflineUserDataJobService over gRPC; data_manager: the Data Manager API (required for new integrations since April 2026).")
    developer_token_env: str | None = Field(None, description="Environment variable holding the developer token (google_ads_api transport).")
    access_token_env: str = Field(description="Environment variable holding an OAuth access token with the adwords or datamanager scope.")
    api_version: str = Field("v26", pattern=r"^v\d+$", description="Google Ads API version (google_ads_api transport).")
    customer_match_terms_accepted: bool = Field(False, description="Set true to state that the Customer Match terms (support.google.com/adspolicy/answer/6299717) are accepted for this account; the data_manager transport sends it with every ingest, and Google refuses uploads without it.")
    request_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one Google call before it counts as failed (retried); the SDK sets no deadline by itself.")

    _check_env = _envs("developer_token_env", "access_token_env")


class KlaviyoListConfig(_DestinationBase):
    """A Klaviyo account; each sync's audience_id is a list id.

    Membership never touches consent: members join and leave the list through the list's profile
    relationships; a remove never unsubscribes anyone.
    """

    type: Literal["klaviyo_list"]
    api_key_env: str = Field(description="Environment variable holding a private API key with lists:write and profiles:write.")
    revision: str = Field("2026-07-15", pattern=r"^\d{4}-\d{2}-\d{2}$", description="Klaviyo API revision header.")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one Klaviyo response before the call counts as failed (retried).")
    import_poll_interval_s: float = Field(1.0, gt=0, le=60, description="Seconds between polls of a profile bulk import job.")
    import_timeout_s: float = Field(300.0, gt=0, description="Seconds to wait for a profile bulk import job before the batch is retried (the job is resumed, not resent).")

    _check_env = _envs("api_key_env")


class MailchimpAudienceConfig(_DestinationBase):
    """A Mailchimp account; each sync's audience_id names the audience (list) and the tag or static segment.

    Membership never touches consent: a remove takes the tag off (or leaves the static segment); the
    contact's subscription status is never changed and nobody is unsubscribed or archived.
    """

    type: Literal["mailchimp_audience"]
    api_key_env: str = Field(description="Environment variable holding the API key (its -usN suffix names the data center).")
    membership: Literal["tag", "static_segment"] = Field("tag", description="How an audience_id of the form 'LIST_ID:NAME' is read: NAME is a tag name (tag) or a static segment id (static_segment). 'LIST_ID:tag:NAME' and 'LIST_ID:segment:ID' say it explicitly.")
    granted_status: Literal["subscribed", "pending"] = Field("subscribed", description="Status given to a NEW contact whose email consent is granted (pending sends Mailchimp's double opt-in email). New contacts without granted consent get 'transactional' (non-subscribed); existing contacts' status is never changed.")
    merge_fields: dict[Literal["first_name", "last_name", "phone"], str] = Field(
        default_factory=lambda: {"first_name": "FNAME", "last_name": "LNAME"},
        description="Identifier -> merge tag written on NEW contacts only (e.g. {phone: PHONE} when the audience has a phone merge field).")
    max_connections: int = Field(10, ge=1, le=10, description="Concurrent requests to the account (Mailchimp allows 10 simultaneous connections per account).")
    request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one Mailchimp response before the call counts as failed (retried).")

    _check_env = _envs("api_key_env")


class BrazeConfig(_DestinationBase):
    """A Braze workspace; each sync's audience_id is the boolean custom attribute that marks membership.

    Membership never touches consent: a remove sets the attribute to false and never unsubscribes anyone.
    """

    type: Literal["braze"]
    api_key_env: str = Field(description="Environment variable holding a REST API key with users.track.")
    instance_url: str = Field("https://rest.iad-01.braze.com", description="REST endpoint of the workspace's cluster.")
    subscription_groups: dict[str, str] = Field(
        default_factory=dict,
        description="Sync audience_id -> Braze subscription group id. On add, a member whose consent for the sync's"
                    " channel is granted is subscribed to that group; a remove never unsubscribes anyone.")
    update_existing_only: bool = Field(
        False, description="Only update members who already have a Braze profile; never create one on add."
                           " Removes always run in update-only mode.")
    max_objects_per_request: int = Field(
        75, ge=1, le=75,
        description="Attribute objects per /users/track request: 75 (the default limit), 50 for workspaces on"
                    " Monthly Active Users CY 24-25 plans.")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one Braze response before the call counts as failed (retried).")

    _check_env = _envs("api_key_env")


class IterableListConfig(_DestinationBase):
    """An Iterable project; each sync's audience_id is a list id.

    Membership never touches consent: removes unsubscribe from the list only (channelUnsubscribe false).
    """

    type: Literal["iterable_list"]
    api_key_env: str = Field(description="Environment variable holding a server-side API key.")
    data_center: Literal["US", "EU"] = Field("US", description="US (api.iterable.com) or EU (api.eu.iterable.com) project.")
    prefer_user_id: bool = Field(
        False, description="Identify members by userId (the external_id identifier) when they have one; default: email"
                           " first, userId only for members without an email.")
    update_existing_users_only: bool = Field(
        False, description="Never create Iterable users on add: members without a profile are rejected (not found).")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one Iterable response before the call counts as failed (retried).")

    _check_env = _envs("api_key_env")


class AttentiveConfig(_DestinationBase):
    """An Attentive company; each sync's audience_id is the custom attribute that marks membership.

    Membership is written with the Custom Attributes API only; the connector never calls a subscribe
    endpoint (that would text the person).
    """

    type: Literal["attentive"]
    api_key_env: str = Field(description="Environment variable holding a private app API key (scope attributes:write).")
    member_value: str = Field("true", min_length=1, description="Attribute value written when a member is added. Attentive types an attribute by its first value; for a property created in the Attentive UI it must be one of the values defined there.")
    removed_value: str = Field("false", min_length=1, description="Attribute value written when a member is removed (Attentive has no call that deletes an attribute).")
    concurrency: int = Field(8, ge=1, le=64, description="Requests in flight at once (one member per request); the request rate stays under requests_per_second.")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for one response before the call counts as failed (retried; setting an attribute is idempotent).")

    _check_env = _envs("api_key_env")

    @model_validator(mode="after")
    def _distinct_values(self) -> "AttentiveConfig":
        if self.member_value == self.removed_value:
            raise ValueError("member_value and removed_value must differ, or removed members would still look like members")
        return self


class TwilioSmsConfig(_DestinationBase):
    """A Twilio account that texts a member once when they enter a segment (sync mode: trigger)."""

    type: Literal["twilio_sms"]
    account_sid_env: str = Field(description="Environment variable holding the Account SID.")
    auth_token_env: str = Field(description="Environment variable holding the auth token.")
    from_number: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$", description="Sender number in E.164 (or use messaging_service_sid).")
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$", description="Messaging Service that sends (handles opt-out keywords).")
    messages: dict[str, str] = Field(description="Message body per sync audience_id, e.g. {cart_reminder: 'You left items in your cart...'}.")
    status_callback: str | None = Field(None, description="URL Twilio calls with each message's delivery status (StatusCallback).")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for Twilio's answer to one send; after that the text may have gone out, so it is recorded as sent (delivery_unknown) and never resent.")

    _check_env = _envs("account_sid_env", "auth_token_env")

    @model_validator(mode="after")
    def _sender_and_bodies(self) -> "TwilioSmsConfig":
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("give from_number (E.164) or messaging_service_sid: Twilio needs a sender")
        for audience_id, body in self.messages.items():
            if not body.strip():
                raise ValueError(f"messages.{audience_id} is empty; Twilio refuses a message without a body")
            if len(body) > 1600:
                raise ValueError(f"messages.{audience_id} has {len(body)} characters; Twilio accepts at most 1600")
        return self


class FakeConfig(_DestinationBase):
    """An in-process destination for tests and dry runs; it keeps members in memory."""

    type: Literal["fake"]
    max_batch: int = Field(1000, ge=1, description="Largest batch the fake accepts, like a platform's limit.")


DestinationConfig = Annotated[
    Union[MetaAudienceConfig, GoogleCustomerMatchConfig, KlaviyoListConfig, MailchimpAudienceConfig, BrazeConfig,
          IterableListConfig, AttentiveConfig, TwilioSmsConfig, FakeConfig],
    Field(discriminator="type"),
]


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
    owners: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_audience(self) -> "SyncConfig":
        if (self.audience_id is None) == (self.create_audience is None):
            raise ValueError("give exactly one of 'audience_id' (an existing audience) or 'create_audience' (make one on the first run)")
        return self

    @field_validator("identifiers")
    @classmethod
    def _some(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError("list at least one identifier to send")
        if len(set(kinds)) != len(kinds):
            raise ValueError("an identifier is listed twice")
        return kinds


def resolve_secret(env_name: str, *, what: str) -> SecretStr:
    """Read a secret from the environment at run time; raise ``ConfigError`` naming the variable."""
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} is not set; export it before running")
    return SecretStr(value)


def expand_env(url: str) -> str:
    """Replace ${VAR} and ${VAR:-default} from the environment; raise ``ConfigError`` naming a missing one."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} (used in a URL) is not set")

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}", sub, url)
