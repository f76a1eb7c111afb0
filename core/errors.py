"""Domain errors raised by services and mapped to HTTP in one place (core.api)."""


class ApplicationError(Exception):
    """A request that the domain refuses; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(
        self, message: str, *, field: str | None = None, extra: dict | None = None
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}


class NotFound(ApplicationError):
    status = 404


class Conflict(ApplicationError):
    status = 409


class Forbidden(ApplicationError):
    status = 403
