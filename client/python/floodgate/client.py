"""The REST client: :class:`FloodgateClient`.

Standard library only (``urllib``). One client may be shared between threads: it keeps no
connection or other mutable state between calls.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import http.client
import json
import os
import pathlib
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._version import __version__
from .errors import BatchTimeoutError, FloodgateConnectionError, FloodgateError
from .models import BATCH_STATES, ITEM_STATES, Batch, Run

__all__ = ["FloodgateClient", "DEFAULT_URL", "UNSET", "json_default"]

#: Where the client looks for floodgate when neither ``base_url`` nor ``FLOODGATE_URL`` is set.
DEFAULT_URL = "http://127.0.0.1:8080"
#: The longest long-poll the service accepts (its ``max_wait_s``).
MAX_WAIT_S = 300.0


class _Unset(enum.Enum):
    """Marker for "leave this field as it is" where ``None`` has a meaning of its own."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Pass nothing: the field is not sent (used where ``None`` means "clear the value").
UNSET = _Unset.UNSET

# How a call may be retried after an error.
_IDEMPOTENT = "idempotent"  # any connection error, 429, 502, 503, 504
_SAFE = "safe"  # only when the request surely was not processed: refused, DNS, 429, 503
_RETRY_STATUSES = {_IDEMPOTENT: frozenset({429, 502, 503, 504}), _SAFE: frozenset({429, 503})}


def json_default(value: Any) -> Any:
    """Encode values that :mod:`json` does not know, the way Prefect's ``jsonable_encoder`` does.

    Handles datetimes, dates and times (ISO 8601), UUIDs, decimals, paths, enums, sets and
    tuples, dataclasses, and pydantic models (``model_dump``/``dict``). Anything else raises
    :class:`TypeError` naming the type.
    """
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, pathlib.PurePath)):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic v2
        return dump(mode="json")
    as_dict = getattr(value, "dict", None)
    if callable(as_dict):  # pydantic v1
        return as_dict()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON: {value!r}")


def _dumps(body: Any) -> bytes:
    try:
        text = json.dumps(body, default=json_default, allow_nan=False, separators=(",", ":"))
    except ValueError as e:  # NaN or infinity
        raise ValueError(f"the request cannot be sent as JSON: {e}") from e
    return text.encode("utf-8")


def _normalize_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ValueError("the floodgate URL is empty")
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


class _Response(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes


class _Unreachable(Exception):
    """A request got no HTTP answer. ``unsent`` is True when it surely never reached floodgate."""

    def __init__(self, reason: BaseException, unsent: bool) -> None:
        super().__init__(str(reason))
        self.reason = reason
        self.unsent = unsent


def _describe(reason: BaseException) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.timeout) or isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror or reason})"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    text = str(reason) or type(reason).__name__
    return text


def chunk_key(batch_key: str, n: int) -> str:
    """The ``Idempotency-Key`` of chunk ``n`` of the batch submitted under ``batch_key``: at
    most 255 characters, as the server takes (a long batch key is replaced by its SHA-256)."""
    base = batch_key if len(batch_key) <= 230 else hashlib.sha256(batch_key.encode()).hexdigest()
    return f"{base}:chunk-{n}"


class FloodgateClient:
    """A client of floodgate's REST API (``/v1/batches``).

    Args:
        base_url: floodgate's root URL, e.g. ``http://floodgate:8080``. Defaults to the
            ``FLOODGATE_URL`` environment variable, else ``http://127.0.0.1:8080``.
        timeout: Seconds to wait for an answer to one request (a long-poll adds its wait).
        retries: How many times a request is retried after a connection error or a 429/503
            (with exponential backoff and full jitter; ``Retry-After`` is honoured). Reads,
            ``update`` and ``submit`` (made safe by its ``Idempotency-Key``) retry after any
            connection error; ``cancel``/``pause``/``resume``/``redrive`` only when the request
            cannot have reached floodgate (connection refused) or floodgate answered 503.
        backoff_s: The first retry delay; doubles on each retry, up to ``max_backoff_s``.
        max_backoff_s: The longest delay between two retries.
        outage_tolerance_s: How long :meth:`wait` keeps trying while floodgate cannot be reached
            (e.g. during a restart), once it has seen the batch.
        headers: Extra headers sent with every request (e.g. ``Authorization`` for an ingress).
        token: floodgate API token, sent as ``Authorization: Bearer``. Defaults to the
            ``FLOODGATE_TOKEN`` environment variable; none when neither is set.

    Every method raises :class:`~floodgate.FloodgateError` when floodgate answers with an
    error and :class:`~floodgate.FloodgateConnectionError` when it cannot be reached.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        timeout: float = 30.0,
        *,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        outage_tolerance_s: float = 300.0,
        headers: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
    ) -> None:
        self.base_url = _normalize_url(base_url or os.environ.get("FLOODGATE_URL") or DEFAULT_URL)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.outage_tolerance_s = float(outage_tolerance_s)
        self.headers: Dict[str, str] = dict(headers or {})
        token = token if token is not None else os.environ.get("FLOODGATE_TOKEN")
        if token and not any(k.lower() == "authorization" for k in self.headers):
            self.headers["Authorization"] = f"Bearer {token}"
        self._opener = urllib.request.build_opener()
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"FloodgateClient({self.base_url!r})"

    # ------------------------------------------------------------------------------------------
    # Batches

    def submit(
        self,
        deployment: Optional[str] = None,
        runs: Iterable[Mapping[str, Any]] = (),
        *,
        deployment_id: Optional[str] = None,
        tags: Optional[Iterable[str]] = None,
        parent_flow_run_id: Optional[str] = None,
        limits: Optional[Mapping[str, Any]] = None,
        retry: Optional[Mapping[str, Any]] = None,
        track: bool = True,
        relaunch_crashed: Optional[int] = None,
        tolerated_failure_percentage: Optional[float] = None,
        tolerated_failure_count: Optional[int] = None,
        on_cancel: Optional[str] = None,
        start_deadline_s: Optional[float] = None,
        run_deadline_s: Optional[float] = None,
        on_deadline: Optional[str] = None,
        priority: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
        sealed: bool = True,
    ) -> Batch:
        """Submit a batch of deployment runs (``POST /v1/batches``).

        Args:
            deployment: ``"flow-name/deployment-name"`` or a deployment id.
            runs: One mapping per child run, with any of ``parameters``, ``name``, ``tags``,
                ``job_variables``, ``work_queue_name``, ``idempotency_key`` and ``deployment``
                (a per-run override), e.g. ``[{"parameters": {"x": 1}}, ...]``.
            deployment_id: A deployment id, instead of ``deployment``.
            tags: Tags added to every child.
            parent_flow_run_id: Link the children under this flow run, as
                ``run_deployment(as_subflow=True)`` does.
            limits: ``max_in_flight``, ``max_running``, ``launches_per_second``, ``burst``,
                ``max_backlog``.
            retry: ``max_attempts``, ``initial_delay_s``, ``max_delay_s``, ``max_elapsed_s``.
            track: Follow the children to their final state (False: the batch ends when every
                child is launched).
            relaunch_crashed: How many times a CRASHED child is launched again.
            tolerated_failure_percentage: Failures (in % of runs) the batch tolerates before it
                fails early.
            tolerated_failure_count: Failures (a count) the batch tolerates.
            on_cancel: ``"abandon"`` or ``"cancel_children"``.
            start_deadline_s: Seconds a child may take from its creation to its start
                (0: none; unset: the server's default).
            run_deadline_s: Seconds a child may run before it ends (0: none).
            on_deadline: What a child past a deadline (or deleted in Prefect) becomes:
                ``"report"`` (STUCK, left to you), ``"fail"`` (cancelled, FAILED) or
                ``"relaunch"`` (cancelled, launched again).
            priority: Weight in the fair sharing between batches (-1000 to 1000).
            labels: Free-form string labels.
            idempotency_key: Sent as the ``Idempotency-Key`` header: a repeat returns the
                batch made by the first call. When not given, a random key is made for this
                call, so a retry after a lost answer never creates a second batch.
            sealed: False: more runs will be appended (:meth:`append_runs`) and the batch does
                not finish before :meth:`seal`; ``runs`` may then be empty (with a
                ``deployment`` or ``deployment_id``). See :meth:`submit_in_chunks`.

        Returns:
            The batch, as accepted (usually QUEUED).
        """
        body: Dict[str, Any] = {"runs": [dict(r) for r in runs]}
        if deployment is not None:
            body["deployment"] = deployment
        if deployment_id is not None:
            body["deployment_id"] = deployment_id
        if tags is not None:
            if isinstance(tags, str):
                raise TypeError("tags must be a list of strings, not a string")
            body["tags"] = list(tags)
        if parent_flow_run_id is not None:
            body["parent_flow_run_id"] = str(parent_flow_run_id)
        if limits is not None:
            body["limits"] = dict(limits)
        if retry is not None:
            body["retry"] = dict(retry)
        body["track"] = bool(track)
        # Options sent as given, and only when given (the server's defaults apply otherwise).
        for name, value in (("relaunch_crashed", relaunch_crashed),
                            ("tolerated_failure_percentage", tolerated_failure_percentage),
                            ("tolerated_failure_count", tolerated_failure_count),
                            ("on_cancel", on_cancel),
                            ("start_deadline_s", start_deadline_s),
                            ("run_deadline_s", run_deadline_s),
                            ("on_deadline", on_deadline),
                            ("priority", priority)):
            if value is not None:
                body[name] = value
        if labels is not None:
            body["labels"] = dict(labels)
        if not sealed:
            body["sealed"] = False
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        data = self._json("POST", "/v1/batches", body=body, headers={"Idempotency-Key": key},
                          mode=_IDEMPOTENT)
        return Batch.from_json(data)

    def get(self, batch_id: str) -> Batch:
        """Read a batch (``GET /v1/batches/{id}``)."""
        return Batch.from_json(self._json("GET", self._batch_path(batch_id)))

    def poll(self, batch_id: str, after_version: Optional[int] = None,
             wait_s: float = 30.0) -> Batch:
        """Long-poll a batch: answer once its version passes ``after_version``, or after
        ``wait_s`` seconds with the batch unchanged.

        Args:
            batch_id: The batch.
            after_version: The version already seen; ``None`` waits for the next change.
            wait_s: The longest wait, 0 to 300 seconds.
        """
        wait_s = max(0.0, min(float(wait_s), MAX_WAIT_S))
        query: Dict[str, str] = {"wait_s": _fmt_seconds(wait_s)}
        if after_version is not None:
            query["after_version"] = str(int(after_version))
        data = self._json("GET", self._batch_path(batch_id), query=query,
                          timeout=self.timeout + wait_s)
        return Batch.from_json(data)

    def wait(
        self,
        batch_id: str,
        timeout: Optional[float] = None,
        poll_s: float = 30.0,
        on_progress: Optional[Callable[[Batch], object]] = None,
        *,
        raise_on_timeout: bool = False,
        on_poll: Optional[Callable[[Batch], object]] = None,
    ) -> Batch:
        """Wait until a batch is final (COMPLETED, FAILED or CANCELLED).

        Uses the long-poll ``GET /v1/batches/{id}?wait_s=S&after_version=V``, so an idle wait
        costs one request per ``poll_s`` seconds, and a change is seen at once. Once the batch
        has been read, a floodgate that cannot be reached (a restart) is waited out for up to
        ``outage_tolerance_s`` seconds.

        Args:
            batch_id: The batch.
            timeout: The longest wait in seconds; ``None`` waits for ever.
            poll_s: The longest single long-poll (0.5 to 300 seconds).
            on_progress: Called with the batch first and then on every change.
            raise_on_timeout: On timeout raise :class:`~floodgate.BatchTimeoutError` (a
                :class:`TimeoutError`) instead of returning the unfinished batch.
            on_poll: Called with the batch after every answer, changed or not (e.g. to
                refresh a rate or an ETA).

        Returns:
            The final batch, or, on timeout, the batch as last seen (check ``is_final``).
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        poll_s = max(0.5, min(float(poll_s), MAX_WAIT_S))
        batch = self.get(batch_id)
        if on_progress is not None:
            on_progress(batch)
        if on_poll is not None:
            on_poll(batch)
        last_ok = time.monotonic()
        failures = 0
        while not batch.is_final:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if raise_on_timeout:
                    raise BatchTimeoutError(
                        f"batch {batch.id} is still {batch.state} after {timeout:g} s "
                        f"({batch.done}/{batch.total} done); it keeps running in floodgate",
                        batch,
                    )
                return batch
            wait_s = poll_s if remaining is None else min(poll_s, remaining)
            started = time.monotonic()
            try:
                nxt = self.poll(batch_id, after_version=batch.version, wait_s=wait_s)
            except FloodgateError as e:
                outage = e.status is None or e.status in (502, 503, 504)
                if not outage or time.monotonic() - last_ok > self.outage_tolerance_s:
                    raise
                failures += 1
                self._pause(self._backoff(failures), deadline)
                continue
            last_ok = time.monotonic()
            failures = 0
            if nxt.version != batch.version:
                if on_progress is not None:
                    on_progress(nxt)
            elif time.monotonic() - started < wait_s / 2:
                # floodgate answered at once without a change (a batch it does not hold in
                # memory, e.g. one owned by another replica): do not spin.
                self._pause(min(2.0, wait_s), deadline)
            batch = nxt
            if on_poll is not None:
                on_poll(batch)
        return batch

    def runs(self, batch_id: str, state: Optional[str] = None,
             page_size: int = 500) -> Iterator[Run]:
        """Iterate over a batch's runs in index order (``GET /v1/batches/{id}/runs``).

        Pages are fetched lazily, ``page_size`` (1 to 1000) at a time, following the ``next``
        cursor.

        Args:
            batch_id: The batch.
            state: Only runs in this item state (see :data:`~floodgate.ITEM_STATES`).
            page_size: Runs per request.
        """
        if state is not None:
            _check_state(state, ITEM_STATES, "item")
        page_size = max(1, min(int(page_size), 1000))
        path = self._batch_path(batch_id) + "/runs"
        cursor: Optional[str] = None
        while True:
            query: Dict[str, str] = {"limit": str(page_size)}
            if state is not None:
                query["state"] = state
            if cursor is not None:
                query["after"] = cursor
            data = self._json("GET", path, query=query)
            page = data.get("runs") or []
            for item in page:
                yield Run.from_json(item)
            nxt = data.get("next")
            if nxt is None or not page or str(nxt) == cursor:
                return
            cursor = str(nxt)

    def list_batches(self, state: Optional[str] = None, page_size: int = 100) -> List[Batch]:
        """List batches (``GET /v1/batches``), oldest first, following the ``next`` cursor.

        Args:
            state: Only batches in this state (see :data:`~floodgate.BATCH_STATES`).
            page_size: Batches per request (1 to 1000).
        """
        if state is not None:
            _check_state(state, BATCH_STATES, "batch")
        page_size = max(1, min(int(page_size), 1000))
        out: List[Batch] = []
        cursor: Optional[str] = None
        while True:
            query: Dict[str, str] = {"limit": str(page_size)}
            if state is not None:
                query["state"] = state
            if cursor is not None:
                query["after"] = cursor
            data = self._json("GET", "/v1/batches", query=query)
            page = data.get("batches") or []
            out.extend(Batch.from_json(b) for b in page)
            nxt = data.get("next")
            if nxt is None or str(nxt) == cursor:
                return out
            cursor = str(nxt)

    def cancel(self, batch_id: str, on_cancel: Optional[str] = None) -> Batch:
        """Cancel a batch: unlaunched items are SKIPPED; with ``on_cancel="cancel_children"``
        (or the batch's own setting) the children still running are cancelled too."""
        body = {"on_cancel": on_cancel} if on_cancel is not None else None
        return self._control(batch_id, "cancel", body)

    def pause(self, batch_id: str) -> Batch:
        """Pause a batch: no new children are launched until :meth:`resume`."""
        return self._control(batch_id, "pause")

    def resume(self, batch_id: str) -> Batch:
        """Resume a PAUSED batch."""
        return self._control(batch_id, "resume")

    def redrive(self, batch_id: str) -> Batch:
        """Launch the failed, crashed, launch-failed and skipped items of a batch again."""
        return self._control(batch_id, "redrive")

    def append_runs(self, batch_id: str, runs: Iterable[Mapping[str, Any]],
                    idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        """Append a chunk of runs to a batch created with ``sealed=False``
        (``POST /v1/batches/{id}/runs``).

        Args:
            batch_id: The batch.
            runs: The chunk's runs, as for :meth:`submit`.
            idempotency_key: Sent as the ``Idempotency-Key`` header (one key per chunk): a
                repeat appends nothing and answers what the chunk appended the first time. When
                not given, a random key is made for this call, so a retry after a lost answer
                never appends the chunk twice.

        Returns:
            The server's answer: ``batch_id``, ``first_index`` (the index of the chunk's first
            run), ``count``, ``total`` (the batch's runs now) and ``version``.
        """
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        return self._json("POST", f"{self._batch_path(batch_id)}/runs",
                          body={"runs": [dict(r) for r in runs]},
                          headers={"Idempotency-Key": key}, mode=_IDEMPOTENT)

    def seal(self, batch_id: str) -> Batch:
        """Say that no more runs will be appended (``POST /v1/batches/{id}/seal``); the batch
        may then finish. Sealing a sealed batch changes nothing."""
        data = self._json("POST", f"{self._batch_path(batch_id)}/seal", mode=_IDEMPOTENT)
        return Batch.from_json(data)

    def submit_in_chunks(self, deployment: Optional[str], runs: Sequence[Mapping[str, Any]],
                         chunk_size: int, *, idempotency_key: Optional[str] = None,
                         **options: Any) -> Batch:
        """Submit a batch too large for one request: created unsealed with the first
        ``chunk_size`` runs, the others appended ``chunk_size`` at a time, then sealed.

        Each chunk's ``Idempotency-Key`` is derived from the batch's, so calling this again
        with the same ``idempotency_key`` (and the same runs and chunk size) after a failure
        part-way finds the batch and the chunks already sent, and appends only the rest.
        ``options`` are those of :meth:`submit`.

        Returns:
            The sealed batch.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        runs = list(runs)
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        batch = self.submit(deployment, runs[:chunk_size], idempotency_key=key, sealed=False,
                            **options)
        for n, start in enumerate(range(chunk_size, len(runs), chunk_size), start=1):
            self.append_runs(batch.id, runs[start:start + chunk_size],
                             idempotency_key=chunk_key(key, n))
        return self.seal(batch.id)

    def update(
        self,
        batch_id: str,
        *,
        limits: Optional[Mapping[str, Any]] = None,
        retry: Optional[Mapping[str, Any]] = None,
        tolerated_failure_percentage: Optional[float] = None,
        tolerated_failure_count: Union[int, None, _Unset] = UNSET,
        priority: Optional[int] = None,
        on_cancel: Optional[str] = None,
    ) -> Batch:
        """Change a running batch's limits and failure tolerance (``PATCH /v1/batches/{id}``).

        Only the arguments given are changed. Inside ``limits`` a key set to ``None`` removes
        that limit. ``tolerated_failure_count=None`` removes the count (pass nothing to leave it).
        """
        body: Dict[str, Any] = {}
        if limits is not None:
            body["limits"] = dict(limits)
        if retry is not None:
            body["retry"] = dict(retry)
        if tolerated_failure_percentage is not None:
            body["tolerated_failure_percentage"] = tolerated_failure_percentage
        if tolerated_failure_count is not UNSET:
            body["tolerated_failure_count"] = tolerated_failure_count
        if priority is not None:
            body["priority"] = priority
        if on_cancel is not None:
            body["on_cancel"] = on_cancel
        if not body:
            raise ValueError("update needs at least one field to change")
        return Batch.from_json(self._json("PATCH", self._batch_path(batch_id), body=body))

    def healthy(self) -> bool:
        """True when floodgate answers ``GET /healthz`` (no retries)."""
        try:
            self._request("GET", "/healthz", retries=0)
        except FloodgateError:
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # Transport

    def _control(self, batch_id: str, action: str,
                 body: Optional[Mapping[str, Any]] = None) -> Batch:
        data = self._json("POST", f"{self._batch_path(batch_id)}/{action}", body=body, mode=_SAFE)
        return Batch.from_json(data)

    @staticmethod
    def _batch_path(batch_id: str) -> str:
        if not isinstance(batch_id, str) or not batch_id.strip():
            raise ValueError("batch_id must be a non-empty string")
        return "/v1/batches/" + urllib.parse.quote(batch_id.strip(), safe="")

    def _json(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        mode: str = _IDEMPOTENT,
    ) -> Dict[str, Any]:
        resp = self._request(method, path, query=query, body=body, headers=headers,
                             timeout=timeout, mode=mode)
        url = self._url(path, query)
        try:
            data = json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FloodgateError(
                f"the answer is not JSON ({e}): {_snippet(resp.body)}",
                status=resp.status, method=method, url=url, body=_snippet(resp.body),
            ) from None
        if not isinstance(data, dict):
            raise FloodgateError(
                f"expected a JSON object, got {type(data).__name__}",
                status=resp.status, method=method, url=url, body=data,
            )
        return data

    def _url(self, path: str, query: Optional[Mapping[str, str]] = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        mode: str = _IDEMPOTENT,
        retries: Optional[int] = None,
    ) -> _Response:
        url = self._url(path, query)
        data = _dumps(body) if body is not None else None
        hdrs = {
            "Accept": "application/json, application/problem+json",
            "User-Agent": f"floodgate-python/{__version__}",
        }
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(self.headers)
        hdrs.update(headers or {})
        max_retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                resp = self._send(method, url, data, hdrs, timeout or self.timeout)
            except _Unreachable as e:
                if attempt < max_retries and (mode == _IDEMPOTENT or e.unsent):
                    attempt += 1
                    self._sleep(self._backoff(attempt))
                    continue
                raise FloodgateConnectionError(
                    f"cannot reach floodgate at {self.base_url} ({method} {url}): "
                    f"{_describe(e.reason)}; is floodgated running there? "
                    "Set FLOODGATE_URL or pass base_url/--url.",
                    method=method, url=url,
                ) from e.reason
            if resp.status in _RETRY_STATUSES[mode] and attempt < max_retries:
                attempt += 1
                delay = _retry_after(resp.headers.get("retry-after"))
                self._sleep(delay if delay is not None else self._backoff(attempt))
                continue
            if resp.status >= 400:
                raise _problem(resp, method, url)
            return resp

    def _send(self, method: str, url: str, data: Optional[bytes], headers: Dict[str, str],
              timeout: float) -> _Response:
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout) as r:
                return _Response(r.status, _lower(r.headers.items()), r.read())
        except urllib.error.HTTPError as e:
            try:
                payload = e.read()
            except (OSError, http.client.HTTPException):
                payload = b""
            finally:
                e.close()
            return _Response(e.code, _lower(e.headers.items() if e.headers else []), payload)
        except urllib.error.URLError as e:
            reason = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
            raise _Unreachable(reason, _unsent(reason)) from e
        except (http.client.HTTPException, OSError) as e:
            raise _Unreachable(e, _unsent(e)) from e

    def _backoff(self, attempt: int) -> float:
        cap = min(self.max_backoff_s, self.backoff_s * (2 ** max(0, attempt - 1)))
        return random.uniform(cap / 2, cap)

    def _pause(self, seconds: float, deadline: Optional[float]) -> None:
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        if seconds > 0:
            self._sleep(seconds)


def _unsent(reason: BaseException) -> bool:
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


def _lower(items: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    return {k.lower(): v for k, v in items}


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return None


def _fmt_seconds(s: float) -> str:
    return f"{s:.3f}".rstrip("0").rstrip(".") or "0"


def _snippet(body: bytes, n: int = 300) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= n else text[:n] + "..."


def _check_state(state: str, known: Tuple[str, ...], what: str) -> None:
    if state not in known:
        raise ValueError(f"unknown {what} state {state!r}; use one of {', '.join(known)}")


def _problem(resp: _Response, method: str, url: str) -> FloodgateError:
    data: Any = None
    try:
        data = json.loads(resp.body.decode("utf-8")) if resp.body else None
    except (UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        if not isinstance(detail, str):
            detail = json.dumps(detail) if detail is not None else None
        title = data.get("title") if isinstance(data.get("title"), str) else None
        field = data.get("field") if isinstance(data.get("field"), str) else None
        errors = data.get("errors") if isinstance(data.get("errors"), list) else None
        return FloodgateError(
            detail or title or f"HTTP {resp.status}",
            status=resp.status, field=field, title=title,
            errors=[e for e in errors or [] if isinstance(e, dict)],
            method=method, url=url, body=data,
        )
    text = _snippet(resp.body)
    try:
        reason = http.client.responses[resp.status]
    except KeyError:
        reason = "error"
    return FloodgateError(
        f"{reason}" + (f": {text}" if text else ""),
        status=resp.status, method=method, url=url, body=text,
    )
