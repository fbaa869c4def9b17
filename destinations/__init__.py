"""One folder per platform (``destinations/<platform>/``: config model, connector, emulator, spec),
behind the connector contract in ``destinations.base`` and registered in ``destinations.registry``.
"""

from destinations.base import AudienceRef, BatchResult, Capabilities, Destination, Member, RowOutcome, RowStatus

__all__ = ["AudienceRef", "BatchResult", "Capabilities", "Destination", "Member", "RowOutcome", "RowStatus"]
