"""The alert package's exceptions; all derive from server.errors.ServerError."""

from __future__ import annotations

from server.errors import ServerError


class AlertError(ServerError):
    """Base of the alert package's own errors."""


class AlertConfigError(AlertError, ValueError):
    """A rule, policy or channel setting is invalid."""


class UnknownAlertError(AlertError, KeyError):
    """No alert with that id is known to the alert book."""


class AlertStateError(AlertError):
    """The requested transition is not allowed from the alert's current state."""


class ConfirmationRequiredError(AlertStateError):
    """Gas and electric alarms resolve only with a person's on-site confirmation and a note."""


class LinkError(AlertError):
    """An acknowledge link is not valid."""


class LinkExpiredError(LinkError):
    """The link was genuine but its time is up."""


class LinkSignatureError(LinkError):
    """The link was altered, malformed, or signed with a key we do not hold."""
