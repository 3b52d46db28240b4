"""Errors services raise; the API turns them into responses (homepot.api)."""


class ServiceError(Exception):
    status_code = 400
    code = "invalid"
    # Sent as Retry-After when set (a 429 or 503 the client should come back from).
    retry_after_seconds: int | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class CredentialRejected(ServiceError):
    """A secret (enrollment token) that is unknown, expired or revoked."""

    status_code = 401
    code = "credential_rejected"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"
