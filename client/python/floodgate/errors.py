"""Exceptions raised by the floodgate client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .models import Batch, Run

__all__ = [
    "FloodgateError",
    "FloodgateConnectionError",
    "BatchError",
    "BatchFailedError",
    "BatchCancelledError",
    "BatchTimeoutError",
]


class FloodgateError(Exception):
    """floodgate answered with an error (an ``application/problem+json`` body).

    Attributes:
        status: The HTTP status code (``None`` when floodgate could not be reached).
        detail: The human message, e.g. ``"runs[0].parameters: must be an object"``.
        field: The request field at fault, e.g. ``"runs[0].parameters"``, when the server names
            one.
        title: The problem title, e.g. ``"Unprocessable Content"``.
        errors: Every field error (``[{"field": ..., "message": ...}]``) when there are several.
        method: The request method.
        url: The request URL.
        body: The decoded response body (a dict for JSON bodies, else the text).
    """

    def __init__(
        self,
        detail: str,
        *,
        status: Optional[int] = None,
        field: Optional[str] = None,
        title: Optional[str] = None,
        errors: Optional[Sequence[Mapping[str, Any]]] = None,
        method: Optional[str] = None,
        url: Optional[str] = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.field = field
        self.title = title
        self.errors: List[Dict[str, Any]] = [dict(e) for e in (errors or [])]
        self.method = method
        self.url = url
        self.body = body
        super().__init__(self._message())

    def _message(self) -> str:
        if self.status is None:
            return self.detail
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        return f"floodgate answered {self.status}{where}: {self.detail}"

    def __reduce__(self) -> Any:  # keep the keyword arguments through pickling
        return (
            _rebuild_error,
            (
                type(self),
                self.detail,
                {
                    "status": self.status,
                    "field": self.field,
                    "title": self.title,
                    "errors": self.errors,
                    "method": self.method,
                    "url": self.url,
                    "body": self.body,
                },
            ),
        )


def _rebuild_error(cls: Any, detail: str, kwargs: Dict[str, Any]) -> Any:
    return cls(detail, **kwargs)


class FloodgateConnectionError(FloodgateError):
    """floodgate could not be reached (refused, reset, timed out, DNS...).

    ``status`` is ``None``; ``detail`` names the URL and the underlying error, and the original
    exception is chained as ``__cause__``.
    """


class BatchError(Exception):
    """A batch ended in a state other than COMPLETED.

    Attributes:
        batch: The batch as it ended.
        runs: Every run of the batch, in index order.
    """

    def __init__(self, message: str, batch: "Batch", runs: Sequence["Run"]) -> None:
        super().__init__(message)
        self.batch = batch
        self.runs: List["Run"] = list(runs)

    @property
    def batch_id(self) -> str:
        """The id of the batch."""
        return self.batch.id


class BatchFailedError(BatchError):
    """The batch ended FAILED: more children failed than it tolerates.

    Attributes:
        failed_runs: The runs that failed (FAILED, CRASHED, LAUNCH_FAILED or STUCK), in index order.
    """

    def __init__(
        self,
        message: str,
        batch: "Batch",
        runs: Sequence["Run"],
        failed_runs: Sequence["Run"],
    ) -> None:
        super().__init__(message, batch, runs)
        self.failed_runs: List["Run"] = list(failed_runs)


class BatchCancelledError(BatchError):
    """The batch was cancelled before it finished."""


class BatchTimeoutError(TimeoutError):
    """Waiting for a batch took longer than the timeout; the batch keeps running.

    Attributes:
        batch: The batch as last seen.
    """

    def __init__(self, message: str, batch: "Batch") -> None:
        super().__init__(message)
        self.batch = batch

    @property
    def batch_id(self) -> str:
        """The id of the batch."""
        return self.batch.id
