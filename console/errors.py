"""The console's errors: one subclass of the root per kind of refusal.

Each has a stable ``code`` that is sent to the browser or agent in an error
message, so a page or a test can match on it.
"""

from __future__ import annotations

from kernel.errors import CallshieldError


class ConsoleError(CallshieldError):
    """The console could not start or serve (bad config, port in use, ...)."""

    code = "console_error"


class StoreError(ConsoleError):
    """The store file is unusable (newer schema, corrupt, not a database)."""

    code = "store_error"


class NotAuthenticated(ConsoleError):
    """The socket has not logged in, or its session or token is not valid."""

    code = "not_authenticated"


class Forbidden(ConsoleError):
    """The user's role, or the agent's calls, do not allow this message."""

    code = "forbidden"


class BadRequest(ConsoleError):
    """A well-formed message that cannot be carried out (unknown call, missing reason)."""

    code = "bad_request"
