"""Which email addresses Mailchimp refuses, and the words it refuses them with (the emulator's rules).

Mailchimp publishes a few rules about the address of a contact; the emulator applies exactly those, so
it refuses no address Mailchimp is documented to take:

- **No international characters before the @; they are fine in the domain.** Mailchimp cannot process
  UTF-8 characters in a contact's email address prefix, but accepts internationalized domain names
  (IDN): it blocks ``direcciónelectrónica@domain.com`` and allows ``test@ñoñó1234.com``.
  https://mailchimp.com/help/international-characters-in-mailchimp/ (the note and its examples are in
  its es and de editions). So the local part must be ASCII, while a domain may be written in Unicode
  (``ann@пример.рф``) or as its A-label (``xn--...``), with any top-level label, letters or not.
- **No special characters before the @, no spaces anywhere.** http://kb.mailchimp.com/lists/growth/
  format-list-fields ("be sure your entries don't contain special characters before the @ symbol, or
  spaces anywhere in the address"). Special characters here are the ones an address can only carry
  inside quotes (RFC 5322 section 3.2.3 ``specials``: ``()<>[]:;@\\,"``) and control characters; the
  ``atext`` symbols (``+``, ``_``, ``'``, ...) are ordinary address characters.
- **A malformed or incomplete address is a syntax error**: one ``@`` with something on each side, and a
  domain of non-empty dotted labels without special characters ("john@aol" instead of "@aol.com",
  "john@aolcom ... missing the (.) dot").
  http://kb.mailchimp.com/article/syntax-errors-when-uploading-list/ and
  https://kb.mailchimp.com/lists/growth/troubleshooting-list-imports.

Not emulated, because Mailchimp publishes no rule for them, so the emulator is the more lenient side:

- **Length.** Mailchimp documents no limit on an address (``email_address`` is a plain string in the
  Marketing API's schema), so none is enforced; our identity rules already keep RFC 5321's.
- **Addresses that look fake.** The API also refuses real-looking addresses by judgement: reported for
  ``example.com`` (github.com/JustFixNYC/tenants2/issues/1554, github.com/HHS/simpler-grants-gov/issues/
  11084), disposable domains (yopmail.com, trash-mail.com: github.com/VingtCinq/python-mailchimp/
  issues/183, github.com/mailchimp/mc-magento2/issues/476) and, on file imports, misspelt common domains
  (gamil.com) and role addresses. Its lists are unpublished; emulating a guess would refuse addresses
  Mailchimp takes (the sandbox's own members are at example.com).

How a refusal reads. For one member (``POST /lists/{id}/members``, ``PUT .../members/{hash}``) it is
HTTP 400 problem+json, title "Invalid Resource", detail "<address> looks fake or invalid, please enter a
real email address." (github.com/JustFixNYC/tenants2/issues/1554, github.com/verbb/formie/issues/2276,
github.com/amro/gibbon/issues/265). The batch subscribe (``POST /lists/{id}``) answers HTTP 200 and
lists the member in ``errors[]`` with the same words as ``error`` (github.com/HHS/simpler-grants-gov/
issues/11084), ``error_code`` ``ERROR_GENERIC`` and the ``field``/``field_message`` pair Mailchimp added
to batch errors (github.com/mailchimp/mailchimp-client-lib-codegen/pull/303; the message text is [U]).
"""

from __future__ import annotations

from typing import Any

__all__ = ["INVALID_RESOURCE", "batch_error", "fake_or_invalid", "looks_fake_or_invalid"]

INVALID_RESOURCE = "Invalid Resource"
_SPECIALS = frozenset('()<>[]:;@\\,"')


def _special(char: str) -> bool:
    return char in _SPECIALS or ord(char) < 0x20 or ord(char) == 0x7F


def looks_fake_or_invalid(email: str) -> bool:
    """Whether Mailchimp refuses ``email`` by its published rules (see the module docstring)."""
    if email.count("@") != 1 or any(char.isspace() for char in email):
        return True
    local, _, domain = email.partition("@")
    if not local or not local.isascii() or any(_special(char) for char in local):
        return True
    labels = domain.split(".")
    return len(labels) < 2 or not all(labels) or any(_special(char) for char in domain)


def fake_or_invalid(email: str) -> str:
    """Mailchimp's words for a refused address: the ``detail`` of its 400, the ``error`` of a batch row."""
    return f"{email} looks fake or invalid, please enter a real email address."


def batch_error(email: str) -> dict[str, Any]:
    """The ``errors[]`` entry of a batch subscribe for a refused address."""
    return {"email_address": email, "error": fake_or_invalid(email), "error_code": "ERROR_GENERIC",
            "field": "email_address", "field_message": "Invalid email address"}
