"""``GoogleCustomerMatchDestination``: one interface, two transports (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from destinations.base import (
    AudienceRef,
    BatchResult,
    Capabilities,
    Destination,
    Member,
    Op,
    RowOutcome,
    RowStatus,
)
from destinations.google_customer_match._common import (
    ADS_API_IDENTIFIERS,
    CONSENT_KEY,
    DATA_MANAGER_IDENTIFIERS,
    FINAL_STATUSES,
    Context,
    Group,
    Transport,
    digits,
)
from syncer.errors import ConfigError, PermanentError
from syncer.project.config import GoogleCustomerMatchConfig, resolve_secret

__all__ = ["GoogleCustomerMatchDestination", "JobStatus"]

JobStatus = dict[str, "str | None"]
"""{"status", "failure_reason", "match_rate_range"} of one job or request (see ``poll_jobs``)."""

MAX_BATCH = 10_000
ADS_API_CAPABILITIES = Capabilities(platform="google", identifiers=ADS_API_IDENTIFIERS, max_batch=MAX_BATCH, channel="ads",
                                    consent_marker=True)
DATA_MANAGER_CAPABILITIES = Capabilities(platform="google_data_manager", identifiers=DATA_MANAGER_IDENTIFIERS,
                                         max_batch=MAX_BATCH, channel="ads", consent_marker=True,
                                         requests_per_second=5.0)  # 300 requests a minute per Cloud project


class GoogleCustomerMatchDestination(Destination):
    """Adds and removes members of Google Ads Customer Match user lists.

    ``jobs`` lists what this instance submitted, oldest first: Ads API job resource names
    (``customers/{cid}/offlineUserDataJobs/{id}``) or Data Manager request ids. Nothing here waits for
    them; store them and call ``poll_jobs`` in a later step or run.
    """

    kind = "google_customer_match"
    capabilities: ClassVar[Capabilities] = ADS_API_CAPABILITIES
    """The google_ads_api transport's; an instance carries its own transport's (``capabilities_for``)."""
    final_statuses: ClassVar[frozenset[str]] = FINAL_STATUSES
    """Job statuses after which ``poll_jobs`` reports nothing new."""

    def __init__(self, config: GoogleCustomerMatchConfig, *, name: str | None = None) -> None:
        """Build the transport's client; reads the secrets from the environment now, without a network call.

        Raises:
            ConfigError: an environment variable named in the config is not set, or the google_ads_api
                transport has no ``developer_token_env``.
        """
        self.config = config
        self.capabilities = self.capabilities_for(config)  # type: ignore[misc] - per transport, as FakeDestination does
        self.jobs: list[str] = []
        customer_id = digits(config.customer_id) or ""
        self._ctx = Context(destination=name or f"google_customer_match {customer_id}", customer_id=customer_id,
                            login_customer_id=digits(config.login_customer_id), access_token_env=config.access_token_env,
                            developer_token_env=config.developer_token_env, transport=config.transport,
                            endpoint=config.endpoint or "", api_version=config.api_version)
        what = f"Google Customer Match destination '{self._ctx.destination}'"
        token = resolve_secret(config.access_token_env, what=what).get_secret_value()
        self._transport: Transport
        if config.transport == "google_ads_api":
            if not config.developer_token_env:
                raise ConfigError(f"{what}: the google_ads_api transport needs developer_token_env (the environment"
                                  " variable holding your Google Ads developer token)")
            developer_token = resolve_secret(config.developer_token_env, what=what).get_secret_value()
            from destinations.google_customer_match.ads_api import AdsApiTransport

            self._transport = AdsApiTransport(config, self._ctx, token, developer_token)
        else:
            from destinations.google_customer_match.data_manager import (
                DataManagerTransport,
            )

            self._transport = DataManagerTransport(config, self._ctx, token)

    @classmethod
    def capabilities_for(cls, config: GoogleCustomerMatchConfig) -> Capabilities:
        """The capabilities of the transport ``config`` names (identity rule set "google" or "google_data_manager")."""
        return ADS_API_CAPABILITIES if config.transport == "google_ads_api" else DATA_MANAGER_CAPABILITIES

    @property
    def name(self) -> str:
        return self._ctx.destination

    @name.setter
    def name(self, value: str) -> None:  # build_destination names the instance after construction
        self._ctx.destination = value

    # ----- Destination --------------------------------------------------------------------------
    def check(self, audience: AudienceRef | None = None) -> None:
        """Verify the credentials and account access (and the user list when given); ``ConfigError`` says what to fix."""
        self._transport.check(audience)

    def add(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._send("add", audience, members)

    def remove(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._send("remove", audience, members)

    def close(self) -> None:
        self._transport.close()

    # ----- job polling --------------------------------------------------------------------------
    def poll_jobs(self, names: Sequence[str] | None = None) -> dict[str, JobStatus]:
        """Status of submitted jobs (default: ``self.jobs``); never waits for one to finish.

        Returns:
            name -> {"status", "failure_reason", "match_rate_range"}. google_ads_api: status PENDING, RUNNING,
            SUCCESS or FAILED, ``match_rate_range`` like MATCH_RANGE_61_TO_70 (an estimate while RUNNING).
            data_manager: PROCESSING, SUCCESS, PARTIAL_SUCCESS or FAILED, like MATCH_RATE_RANGE_61_TO_70.
            NOT_FOUND for a name the platform does not know. ``FINAL_STATUSES`` need no further polling.

        Raises:
            ConfigError, TransientError, RateLimited: as for ``add``.
        """
        names = list(self.jobs if names is None else names)
        return self._transport.poll(names) if names else {}

    # ----- internals ----------------------------------------------------------------------------
    def _send(self, op: Op, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if not members:
            return BatchResult(op, (), requests=0)
        if len(members) > self.capabilities.max_batch:
            raise PermanentError(f"Refusing to send {len(members)} members in one Google call; the limit is"
                                 f" {self.capabilities.max_batch} (the caller must split batches)")
        refused: dict[str, RowOutcome] = {}
        groups: dict[str | None, list[Member]] = {}
        for member in members:
            marker = member.identifiers.get(CONSENT_KEY, "unknown")
            if op == "add" and marker == "denied":
                refused[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "consent_denied")
            elif not self._transport.sendable(member):
                refused[member.member_key] = RowOutcome(member.member_key, RowStatus.REJECTED, "no_supported_identifier")
            else:
                # Removes carry no consent: a member whose consent was withdrawn must still leave the list.
                groups.setdefault(None if op == "remove" else ("granted" if marker == "granted" else "unknown"), []).append(member)
        if not groups:
            return BatchResult(op, tuple(refused[m.member_key] for m in members), requests=0)
        ordered = [Group(consent, tuple(groups[consent])) for consent in ("granted", "unknown", None) if consent in groups]  # type: ignore[arg-type]
        sent = self._transport.send(op, audience, ordered)
        self.jobs.extend(sent.jobs)
        by_key = {o.member_key: o for o in sent.outcomes} | refused
        return BatchResult(op, tuple(by_key[m.member_key] for m in members), requests=sent.requests,
                           platform_counts=dict(sent.counts))
