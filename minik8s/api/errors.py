"""Kubernetes ``Status`` errors, shared by the API server (which raises and serialises them)
and the client (which turns a Status answer back into the same typed exception), so that
both sides agree on code, reason and details without a translation table of their own."""

from __future__ import annotations

from typing import Any, ClassVar


class StatusError(Exception):
    """An error that crosses the wire as a ``meta.k8s.io/v1`` Status."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 causes: list[dict[str, str]] | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})
        if causes:
            self.details["causes"] = causes
        if retry_after is not None:
            self.details["retryAfterSeconds"] = retry_after

    @property
    def causes(self) -> list[dict[str, str]]:
        return self.details.get("causes", [])

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    @staticmethod
    def from_status(status: dict[str, Any], http_code: int | None = None) -> "StatusError":
        """The typed error for a Status body (or for a bare HTTP code when the body is not one)."""
        reason = status.get("reason") or ""
        code = int(status.get("code") or http_code or 500)
        cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or StatusError
        err = cls.__new__(cls)
        StatusError.__init__(err, status.get("message") or reason or f"HTTP {code}",
                             details=status.get("details"))
        if cls is StatusError:
            err.code, err.reason = code, reason or "Unknown"  # type: ignore[misc]
        return err

    # Constructors that produce Kubernetes' exact wording. ``resource`` is the plural,
    # ``group`` the API group ("" for core): kubectl prints ``pods "x" not found`` and
    # ``deployments.apps "x" not found``.
    @classmethod
    def for_object(cls, resource: str, group: str, name: str, message: str) -> "StatusError":
        qualified = f"{resource}.{group}" if group else resource
        details = {"name": name, "group": group, "kind": resource}
        return cls(f'{qualified} "{name}" {message}', details=details)


class BadRequest(StatusError):
    code, reason = 400, "BadRequest"


class Unauthorized(StatusError):
    code, reason = 401, "Unauthorized"


class Forbidden(StatusError):
    code, reason = 403, "Forbidden"


class NotFound(StatusError):
    code, reason = 404, "NotFound"

    @classmethod
    def object(cls, resource: str, group: str, name: str) -> "NotFound":
        return cls.for_object(resource, group, name, "not found")  # type: ignore[return-value]


class MethodNotAllowed(StatusError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(StatusError):
    code, reason = 406, "NotAcceptable"


class AlreadyExists(StatusError):
    code, reason = 409, "AlreadyExists"

    @classmethod
    def object(cls, resource: str, group: str, name: str) -> "AlreadyExists":
        return cls.for_object(resource, group, name, "already exists")  # type: ignore[return-value]


class Conflict(StatusError):
    code, reason = 409, "Conflict"

    @classmethod
    def object(cls, resource: str, group: str, name: str, why: str) -> "Conflict":
        qualified = f"{resource}.{group}" if group else resource
        return cls(f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
                   details={"name": name, "group": group, "kind": resource})


class Gone(StatusError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(StatusError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(StatusError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(StatusError):
    code, reason = 422, "Invalid"

    @classmethod
    def object(cls, kind: str, group: str, name: str,
               causes: list[dict[str, str]]) -> "Invalid":
        qualified = f"{kind}.{group}" if group else kind
        summary = ", ".join(
            f'{c["field"]}: {c["message"]}' if c.get("field") else c["message"] for c in causes)
        return cls(f'{qualified} "{name}" is invalid: {summary}',
                   details={"name": name, "group": group, "kind": kind}, causes=causes)


class TooManyRequests(StatusError):
    code, reason = 429, "TooManyRequests"


class InternalError(StatusError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(StatusError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(StatusError):
    code, reason = 504, "Timeout"


_ALL = [BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, NotAcceptable,
        AlreadyExists, Conflict, Gone, RequestEntityTooLarge, UnsupportedMediaType, Invalid,
        TooManyRequests, InternalError, ServiceUnavailable, Timeout]
_BY_REASON = {c.reason: c for c in _ALL}
_BY_REASON["Gone"] = Gone
# A bare HTTP code without a known reason: 409 means a write conflict more often than not.
_BY_CODE = {c.code: c for c in _ALL if c is not AlreadyExists}


def field_cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One ``details.causes`` entry, as the API server reports a failed field check."""
    return {"reason": reason, "message": message, "field": field}


__all__ = [
    "StatusError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "NotAcceptable", "AlreadyExists", "Conflict", "Gone", "RequestEntityTooLarge",
    "UnsupportedMediaType", "Invalid", "TooManyRequests", "InternalError",
    "ServiceUnavailable", "Timeout", "field_cause",
]
