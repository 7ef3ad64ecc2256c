"""Typed views of floodgate's REST resources: :class:`Batch` and :class:`Run`.

Both keep the server's JSON object in ``raw`` so that fields added to the contract later
are never lost, and both are built with :meth:`from_json`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "BATCH_STATES",
    "BATCH_FINAL_STATES",
    "ITEM_STATES",
    "ITEM_FINAL_STATES",
    "ITEM_FAILURE_STATES",
    "Batch",
    "Run",
    "parse_time",
]

#: Every state a batch can be in.
BATCH_STATES = ("QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED")
#: Batch states that do not change again on their own (a redrive may still restart a batch).
BATCH_FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
#: Every state an item (one child run of a batch) can be in.
ITEM_STATES = (
    "PENDING",
    "LAUNCHING",
    "RETRY_WAIT",
    "LAUNCHED",
    "COMPLETED",
    "FAILED",
    "CRASHED",
    "CANCELLED",
    "LAUNCH_FAILED",
    "SKIPPED",
    "STUCK",
)
#: Item states the batch no longer waits for (a STUCK child, past a deadline and left to the
#: parent, may still take its final state later).
ITEM_FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CRASHED", "CANCELLED", "LAUNCH_FAILED", "SKIPPED", "STUCK"}
)
#: Item states that count against a batch's failure tolerance.
ITEM_FAILURE_STATES = frozenset({"FAILED", "CRASHED", "LAUNCH_FAILED", "STUCK"})


def parse_time(value: Any) -> Optional[_dt.datetime]:
    """Parse an RFC 3339 timestamp such as ``2026-01-02T03:04:05.678Z``.

    Returns a timezone-aware :class:`datetime.datetime`, or ``None`` for ``None``, an empty
    string or a value that is not a timestamp.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        # Python < 3.11 accepts only 3 or 6 fraction digits: pad or cut to 6.
        head, sep, tail = text.partition(".")
        if not sep:
            return None
        digits = ""
        rest = tail
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        try:
            parsed = _dt.datetime.fromisoformat(f"{head}.{(digits + '000000')[:6]}{rest}")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _opt_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    return str(value)


@dataclass(frozen=True)
class Batch:
    """A batch of deployment runs as floodgate reports it (``GET /v1/batches/{id}``).

    Attributes:
        id: The batch id (a UUID).
        state: One of :data:`BATCH_STATES`.
        total: How many runs the batch holds.
        counts: Items per item state (every state of :data:`ITEM_STATES` is present).
        version: Grows by one or more on every change; used for long-polling.
        created_at: When the batch was accepted.
        finished_at: When the batch reached a final state, else ``None``.
        updated_at: When the batch last changed.
        deployment: The batch's deployment (``flow/deployment`` or an id).
        track: Whether floodgate follows the children to their final state.
        sealed: False while more runs may be appended (a batch submitted with
            ``sealed=False`` and not sealed yet); such a batch does not finish.
        raw: The server's JSON object, unchanged.
    """

    id: str
    state: str
    total: int
    counts: Dict[str, int]
    version: int
    created_at: Optional[_dt.datetime]
    finished_at: Optional[_dt.datetime]
    updated_at: Optional[_dt.datetime] = None
    deployment: Optional[str] = None
    track: bool = True
    sealed: bool = True
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Batch":
        """Build a :class:`Batch` from the JSON object the REST API returns."""
        raw_counts = data.get("counts") or {}
        counts = {state: 0 for state in ITEM_STATES}
        if isinstance(raw_counts, Mapping):
            for key, value in raw_counts.items():
                counts[str(key)] = _int(value)
        track = data.get("track", True)
        sealed = data.get("sealed", True)
        return cls(
            id=str(data.get("id", "")),
            state=str(data.get("state", "")),
            total=_int(data.get("total")),
            counts=counts,
            version=_int(data.get("version")),
            created_at=parse_time(data.get("created_at")),
            finished_at=parse_time(data.get("finished_at")),
            updated_at=parse_time(data.get("updated_at")),
            deployment=_opt_str(data.get("deployment")),
            track=bool(track) if track is not None else True,
            sealed=bool(sealed) if sealed is not None else True,
            raw=dict(data),
        )

    @property
    def is_final(self) -> bool:
        """True when the batch is COMPLETED, FAILED or CANCELLED."""
        return self.state in BATCH_FINAL_STATES

    @property
    def done(self) -> int:
        """Items that reached an end: a final item state, or LAUNCHED when not tracked."""
        n = sum(self.counts.get(s, 0) for s in ITEM_FINAL_STATES)
        if not self.track:
            n += self.counts.get("LAUNCHED", 0)
        return n

    @property
    def failed(self) -> int:
        """Items that count as failures: FAILED, CRASHED or LAUNCH_FAILED children."""
        return sum(self.counts.get(s, 0) for s in ITEM_FAILURE_STATES)

    @property
    def running(self) -> int:
        """Items being launched or, when tracked, launched and not yet final."""
        n = self.counts.get("LAUNCHING", 0)
        if self.track:
            n += self.counts.get("LAUNCHED", 0)
        return n

    @property
    def pending(self) -> int:
        """Items not launched yet (PENDING or waiting for a retry)."""
        return self.counts.get("PENDING", 0) + self.counts.get("RETRY_WAIT", 0)


@dataclass(frozen=True)
class Run:
    """One item of a batch: a child deployment run (``GET /v1/batches/{id}/runs``).

    Attributes:
        index: The item's position in the submitted ``runs`` list (0-based).
        state: One of :data:`ITEM_STATES`.
        flow_run_id: The Prefect flow run id once the child exists, else ``None``.
        flow_run_state: The child's Prefect state name (e.g. ``"Completed"``), if known.
        attempts: Create attempts made for the current launch.
        last_error: The last error floodgate saw for this item, if any (first line only).
        transient_attempts: Attempts Prefect answered "not now" (locked database, 5xx,
            timeout, ...): bounded by ``retry.max_elapsed_s`` only, not ``max_attempts``.
        waited_s: Seconds from the first attempt to the launch (or until now).
        earlier_runs: Earlier children of this item (crash re-launches and redrives), each
            ``{"flow_run_id": ..., "state": ...}``.
        parent_task_run_id: The placeholder task run in the parent flow (as_subflow only).
        raw: The server's JSON object, unchanged.
    """

    index: int
    state: str
    flow_run_id: Optional[str]
    flow_run_state: Optional[str]
    attempts: int
    last_error: Optional[str]
    earlier_runs: List[Dict[str, Any]] = field(default_factory=list)
    parent_task_run_id: Optional[str] = None
    transient_attempts: int = 0
    waited_s: float = 0.0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Run":
        """Build a :class:`Run` from one element of the ``runs`` list the REST API returns."""
        earlier = data.get("earlier_runs") or []
        return cls(
            index=_int(data.get("index")),
            state=str(data.get("state", "")),
            flow_run_id=_opt_str(data.get("flow_run_id")),
            flow_run_state=_opt_str(data.get("flow_run_state")),
            attempts=_int(data.get("attempts")),
            last_error=_opt_str(data.get("last_error")),
            earlier_runs=[dict(e) for e in earlier if isinstance(e, Mapping)],
            parent_task_run_id=_opt_str(data.get("parent_task_run_id")),
            transient_attempts=_int(data.get("transient_attempts")),
            waited_s=float(data.get("waited_s") or 0.0),
            raw=dict(data),
        )

    @property
    def is_final(self) -> bool:
        """True when this item will not change again on its own."""
        return self.state in ITEM_FINAL_STATES

    @property
    def failed(self) -> bool:
        """True for FAILED, CRASHED and LAUNCH_FAILED items."""
        return self.state in ITEM_FAILURE_STATES

    @property
    def completed(self) -> bool:
        """True when the child run COMPLETED."""
        return self.state == "COMPLETED"
