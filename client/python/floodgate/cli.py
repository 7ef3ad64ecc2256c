"""The ``floodgate`` command line.

Exit codes:

- 0: success (for ``submit --wait`` and ``watch``: the batch COMPLETED);
- 1: the batch ended FAILED or CANCELLED, or floodgate failed (5xx);
- 2: a usage error (bad arguments or files, or floodgate rejected the request: 4xx);
- 3: floodgate cannot be reached;
- 4: ``--timeout`` passed before the batch ended (it keeps running);
- 130: interrupted (Ctrl-C; the batch keeps running).
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import os
import shutil
import sys
import time
from typing import IO, Any, Deque, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple

from ._version import __version__
from .client import DEFAULT_URL, UNSET, FloodgateClient
from .errors import FloodgateConnectionError, FloodgateError
from .models import BATCH_STATES, ITEM_STATES, Batch, Run

__all__ = ["main", "Progress", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_UNREACHABLE",
           "EXIT_TIMEOUT"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in the command line or its input files (exit code 2)."""


# ----------------------------------------------------------------------------------------------
# Progress display

_RESET = "\x1b[0m"
# (item states, colour, filled character) in the order the bar shows them.
_SEGMENTS: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("COMPLETED",), "\x1b[32m"),  # green
    (("FAILED", "CRASHED", "LAUNCH_FAILED", "STUCK"), "\x1b[31m"),  # red
    (("CANCELLED", "SKIPPED"), "\x1b[33m"),  # yellow
    (("LAUNCHED",), "\x1b[36m"),  # cyan: running
    (("LAUNCHING", "RETRY_WAIT"), "\x1b[35m"),  # magenta: being launched
)
_STATE_COLOURS = {
    "COMPLETED": "\x1b[32m",
    "FAILED": "\x1b[31m",
    "CANCELLED": "\x1b[33m",
    "RUNNING": "\x1b[36m",
    "PAUSED": "\x1b[35m",
    "QUEUED": "\x1b[2m",
}


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _allocate(counts: Sequence[int], total: int, width: int) -> List[int]:
    """Share ``width`` cells between ``counts`` out of ``total`` (largest remainder)."""
    if total <= 0 or width <= 0:
        return [0 for _ in counts]
    exact = [c * width / total for c in counts]
    cells = [int(x) for x in exact]
    budget = min(width, round(sum(exact))) - sum(cells)
    order = sorted(range(len(counts)), key=lambda i: exact[i] - cells[i], reverse=True)
    for i in order[: max(0, budget)]:
        cells[i] += 1
    return cells


class Progress:
    """Shows a batch's progress on a stream.

    On a terminal: one line redrawn with ``\\r`` (state, a bar coloured by item state,
    done/total, failures, rate per second and ETA). Elsewhere: one plain line per change, at
    most every ``min_interval`` seconds, and always the final state.
    """

    def __init__(self, stream: IO[str], tty: Optional[bool] = None,
                 color: Optional[bool] = None, min_interval: float = 2.0) -> None:
        self.stream = stream
        self.tty = _isatty(stream) if tty is None else tty
        if color is None:
            color = self.tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        self.color = color
        self.min_interval = min_interval
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self.unicode = encoding in ("utf8", "utf8sig")
        self._samples: Deque[Tuple[float, int]] = collections.deque()
        self._last_print = 0.0
        self._last_key: Optional[Tuple[str, int]] = None
        self._drawn = False

    # rate and ETA over the last minute of samples
    def _rate(self, batch: Batch, now: float) -> Optional[float]:
        self._samples.append((now, batch.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > 60:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        if now - t0 < 1.0:
            return None
        return max(0.0, (batch.done - d0) / (now - t0))

    def _stats(self, batch: Batch, rate: Optional[float]) -> str:
        pct = 100.0 * batch.done / batch.total if batch.total else 100.0
        parts = [f"{batch.done}/{batch.total} ({pct:.0f}%)", f"failed {batch.failed}"]
        progress = batch.raw.get("progress") if isinstance(batch.raw, dict) else None
        if not batch.is_final and isinstance(progress, dict):
            # The server's own rates, ETA and what the batch waits on.
            parts.append(f"running {batch.running}")
            parts.append(f"{float(progress.get('completion_rate') or 0):.1f}/s")
            eta = progress.get("eta_s")
            parts.append(f"ETA {_fmt_duration(eta)}" if eta is not None else "ETA -")
            waiting = progress.get("waiting_on") or []
            if waiting:
                what = ", ".join(str(w) for w in waiting)
                if "backlog" in waiting and progress.get("max_backlog") is not None:
                    what += f" ({progress.get('backlog')}/{progress.get('max_backlog')} waiting to start)"
                parts.append(f"waiting on {what}")
        elif not batch.is_final:
            parts.append(f"running {batch.running}")
            if rate is None:
                parts.append("-/s")
            else:
                parts.append(f"{rate:.1f}/s")
                left = batch.total - batch.done
                if rate > 0:
                    parts.append(f"ETA {_fmt_duration(left / rate)}")
                elif left:
                    parts.append("ETA -")
        else:
            skipped = batch.counts.get("SKIPPED", 0)
            cancelled = batch.counts.get("CANCELLED", 0)
            stuck = batch.counts.get("STUCK", 0)
            if stuck:
                parts.append(f"stuck {stuck}")
            if cancelled:
                parts.append(f"cancelled {cancelled}")
            if skipped:
                parts.append(f"skipped {skipped}")
            if batch.created_at and batch.finished_at:
                took = (batch.finished_at - batch.created_at).total_seconds()
                parts.append(f"took {_fmt_duration(took)}")
        return "  ".join(parts)

    def _bar(self, batch: Batch, width: int) -> str:
        counts = [sum(batch.counts.get(s, 0) for s in states) for states, _ in _SEGMENTS]
        cells = _allocate(counts, batch.total, width)
        full, empty = ("█", "░") if self.unicode else ("#", "-")
        out = []
        for (_, colour), n in zip(_SEGMENTS, cells):
            if n <= 0:
                continue
            out.append(f"{colour}{full * n}{_RESET}" if self.color else full * n)
        rest = width - sum(cells)
        if rest > 0:
            out.append(f"\x1b[2m{empty * rest}{_RESET}" if self.color else empty * rest)
        return "".join(out)

    def update(self, batch: Batch) -> None:
        """Show the batch (called after every poll; prints only what is due)."""
        now = time.monotonic()
        rate = self._rate(batch, now)
        if self.tty:
            self._draw(batch, rate)
            return
        key = (batch.state, batch.version)
        if key == self._last_key:
            return
        if self._last_key is not None and now - self._last_print < self.min_interval \
                and not batch.is_final:
            return
        self._last_key = key
        self._last_print = now
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.stream.write(f"{stamp} batch {batch.id} {batch.state} {self._stats(batch, rate)}\n")
        self.stream.flush()

    def _draw(self, batch: Batch, rate: Optional[float]) -> None:
        columns = shutil.get_terminal_size((100, 24)).columns
        state = batch.state
        stats = self._stats(batch, rate)
        bar_width = max(10, min(40, columns - len(state) - len(stats) - 6))
        shown_state = f"{_STATE_COLOURS.get(state, '')}{state:<9}{_RESET}" if self.color \
            else f"{state:<9}"
        line = f"{shown_state} [{self._bar(batch, bar_width)}] {stats}"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def finish(self, batch: Optional[Batch] = None) -> None:
        """Show the last state and end the line."""
        if batch is not None:
            self.update(batch)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# Input parsing


def _json_object(text: str, where: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: must be a JSON object, not {type(value).__name__}")
    return value


def _read_jsonl(path: str) -> List[Dict[str, Any]]:
    """Read JSON objects, one a line (or one JSON array of objects) from a file or ``-``."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except ValueError as e:
            raise UsageError(f"{path}: not valid JSON: {e}") from None
        out = []
        for i, v in enumerate(values):
            if not isinstance(v, dict):
                raise UsageError(f"{path}: item {i} must be a JSON object")
            out.append(v)
        return out
    return [_json_object(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def _fill_template(value: Any, index: int) -> Any:
    """Put the run's index where a string says ``{index}``."""
    if isinstance(value, str):
        if value == "{index}":
            return index
        return value.replace("{index}", str(index))
    if isinstance(value, list):
        return [_fill_template(v, index) for v in value]
    if isinstance(value, dict):
        return {k: _fill_template(v, index) for k, v in value.items()}
    return value


def _build_runs(args: argparse.Namespace) -> List[Dict[str, Any]]:
    runs: List[Dict[str, Any]] = []
    for path in args.params_file or []:
        runs.extend({"parameters": p} for p in _read_jsonl(path))
    for path in args.runs_file or []:
        runs.extend(_read_jsonl(path))
    params = [_json_object(p, f"--params {p!r}") for p in args.params or []]
    if args.count is not None:
        if args.count < 1:
            raise UsageError("--count must be at least 1")
        if len(params) > 1:
            raise UsageError("--count repeats one --params template; give --params once")
        template = params[0] if params else {}
        runs.extend({"parameters": _fill_template(template, i)} for i in range(args.count))
    else:
        runs.extend({"parameters": p} for p in params)
    if not runs:
        raise UsageError("no runs: give --params-file, --runs-file, --params or --count")
    return runs


def _labels(items: Iterable[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: use KEY=VALUE")
        out[key] = value
    return out


def _limits(args: argparse.Namespace) -> Dict[str, Any]:
    limits: Dict[str, Any] = {}
    if args.max_running is not None:
        limits["max_running"] = args.max_running
    if args.max_in_flight is not None:
        limits["max_in_flight"] = args.max_in_flight
    if args.rate is not None:
        limits["launches_per_second"] = args.rate
    if args.burst is not None:
        limits["burst"] = args.burst
    if getattr(args, "max_backlog", None) is not None:
        limits["max_backlog"] = args.max_backlog
    return limits


# ----------------------------------------------------------------------------------------------
# Output


def _print_json(value: Any, out: IO[str]) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def _short(text: Optional[str], n: int = 80) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _time(batch: Batch) -> str:
    if batch.created_at is None:
        return "-"
    return batch.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _summary(batch: Batch) -> str:
    return (f"batch {batch.id} {batch.state}: {batch.done}/{batch.total} done, "
            f"{batch.failed} failed")


def _exit_for(batch: Batch) -> int:
    return EXIT_OK if batch.state == "COMPLETED" else EXIT_FAILED


# ----------------------------------------------------------------------------------------------
# Commands


def _follow(client: FloodgateClient, batch_id: str, out: IO[str], timeout: Optional[float],
            err: IO[str]) -> Tuple[int, Optional[Batch]]:
    progress = Progress(out)
    refresh = 1.0 if progress.tty else progress.min_interval
    try:
        batch = client.wait(batch_id, timeout=timeout, poll_s=refresh, on_poll=progress.update)
    except KeyboardInterrupt:
        progress.finish()
        err.write(f"interrupted; batch {batch_id} keeps running (floodgate watch {batch_id})\n")
        return EXIT_INTERRUPTED, None
    progress.finish(batch)
    if not batch.is_final:
        err.write(f"timed out; batch {batch.id} is still {batch.state} and keeps running\n")
        return EXIT_TIMEOUT, batch
    return _exit_for(batch), batch


def _cmd_submit(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
                err: IO[str]) -> int:
    runs = _build_runs(args)
    limits = _limits(args)
    retry: Dict[str, Any] = {}
    if args.max_attempts is not None:
        retry["max_attempts"] = args.max_attempts
    options: Dict[str, Any] = dict(
        tags=args.tag or None,
        parent_flow_run_id=args.parent_flow_run_id,
        limits=limits or None,
        retry=retry or None,
        track=not args.no_track,
        relaunch_crashed=args.relaunch_crashed,
        tolerated_failure_percentage=args.tolerated_failure_percentage,
        tolerated_failure_count=args.tolerated_failure_count,
        on_cancel=args.on_cancel,
        start_deadline_s=args.start_deadline_s,
        run_deadline_s=args.run_deadline_s,
        on_deadline=args.on_deadline,
        priority=args.priority,
        labels=_labels(args.label or []) or None,
        idempotency_key=args.idempotency_key,
    )
    if args.chunk_size is not None and len(runs) > args.chunk_size:
        batch = client.submit_in_chunks(args.deployment, runs, args.chunk_size, **options)
    else:
        batch = client.submit(args.deployment, runs, **options)
    if args.json:
        _print_json(batch.raw, out)
    else:
        out.write(batch.id + "\n")
    out.flush()
    if not args.wait:
        return EXIT_OK
    code, final = _follow(client, batch.id, err, args.timeout, err)
    if final is not None and final.is_final:
        err.write(_summary(final) + "\n")
        if final.state == "FAILED":
            _print_failures(client, final, err)
    return code


def _print_failures(client: FloodgateClient, batch: Batch, err: IO[str], limit: int = 20) -> None:
    shown = 0
    for state in ("FAILED", "CRASHED", "LAUNCH_FAILED", "STUCK"):
        if not batch.counts.get(state):
            continue
        for run in client.runs(batch.id, state=state):
            if shown >= limit:
                break
            err.write(f"  [{run.index}] {run.state} flow_run_id={run.flow_run_id or '-'} "
                      f"{_short(run.last_error or run.flow_run_state, 120)}\n")
            shown += 1
    if batch.failed > shown:
        err.write(f"  ... and {batch.failed - shown} more failed children "
                  f"(floodgate runs {batch.id} --state FAILED)\n")


def _cmd_watch(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
               err: IO[str]) -> int:
    code, _ = _follow(client, args.batch_id, out, args.timeout, err)
    return code


def _cmd_get(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
             err: IO[str]) -> int:
    _print_json(client.get(args.batch_id).raw, out)
    return EXIT_OK


def _cmd_runs(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
              err: IO[str]) -> int:
    runs = client.runs(args.batch_id, state=args.state)
    if args.json:
        for run in runs:
            out.write(json.dumps(run.raw, sort_keys=True) + "\n")
        return EXIT_OK
    rows: List[List[str]] = [["INDEX", "STATE", "FLOW_RUN_ID", "FLOW_RUN_STATE", "ATTEMPTS",
                              "LAST_ERROR"]]
    rows.extend(_run_row(r) for r in runs)
    _table(rows, out)
    return EXIT_OK


def _run_row(r: Run) -> List[str]:
    return [str(r.index), r.state, r.flow_run_id or "-", r.flow_run_state or "-",
            str(r.attempts), _short(r.last_error)]


def _cmd_list(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
              err: IO[str]) -> int:
    batches = client.list_batches(state=args.state)
    if args.json:
        _print_json([b.raw for b in batches], out)
        return EXIT_OK
    rows = [["ID", "STATE", "DONE/TOTAL", "FAILED", "CREATED", "DEPLOYMENT"]]
    rows.extend([b.id, b.state, f"{b.done}/{b.total}", str(b.failed), _time(b),
                 b.deployment or "-"] for b in batches)
    _table(rows, out)
    return EXIT_OK


def _cmd_control(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
                 err: IO[str]) -> int:
    if args.command == "cancel":
        batch = client.cancel(args.batch_id, on_cancel=args.on_cancel)
    elif args.command == "pause":
        batch = client.pause(args.batch_id)
    elif args.command == "resume":
        batch = client.resume(args.batch_id)
    else:
        batch = client.redrive(args.batch_id)
    out.write(_summary(batch) + "\n")
    return EXIT_OK


def _cmd_update(client: FloodgateClient, args: argparse.Namespace, out: IO[str],
                err: IO[str]) -> int:
    limits = _limits(args)
    count: Any = UNSET
    if args.tolerated_failure_count is not None:
        count = None if args.tolerated_failure_count < 0 else args.tolerated_failure_count
    batch = client.update(
        args.batch_id, limits=limits or None,
        tolerated_failure_percentage=args.tolerated_failure_percentage,
        tolerated_failure_count=count, priority=args.priority, on_cancel=args.on_cancel,
    )
    out.write(_summary(batch) + "\n")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# Parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-running", type=_positive_int, metavar="N",
                   help="at most N children of the batch not yet final")
    p.add_argument("--max-in-flight", type=_positive_int, metavar="N",
                   help="at most N create requests of the batch in flight")
    p.add_argument("--rate", type=float, metavar="R", help="launches per second for the batch")
    p.add_argument("--burst", type=float, metavar="N", help="launch burst for --rate")
    p.add_argument("--max-backlog", type=_non_negative_int, metavar="N",
                   help="at most N children created and not yet started (default: derived from "
                        "the rate workers start them; 0: no backlog gating)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``floodgate`` command."""
    common = _Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"floodgate's URL (env FLOODGATE_URL, default {DEFAULT_URL})")
    common.add_argument("--request-timeout", type=_seconds, default=argparse.SUPPRESS,
                        metavar="S", help="seconds for one request (default 30)")
    common.add_argument("--retries", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="retries after connection errors and 503 (default 4)")

    parser = _Parser(
        prog="floodgate",
        description="Submit and follow batches of Prefect deployment runs through floodgate.",
        epilog="Exit codes: 0 ok (batch COMPLETED), 1 batch FAILED/CANCELLED, 2 usage error, "
               "3 floodgate unreachable, 4 timed out.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"floodgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("submit", parents=[common], help="submit a batch",
                       description="Submit a batch of runs of one deployment. Prints the "
                                   "batch id (or --json the batch).")
    p.add_argument("deployment", metavar="DEPLOYMENT",
                   help='"flow-name/deployment-name" or a deployment id')
    p.add_argument("--params-file", action="append", metavar="FILE",
                   help="JSON Lines file (or -): one parameters object a line")
    p.add_argument("--runs-file", action="append", metavar="FILE",
                   help="JSON Lines file (or -): one run spec a line "
                        "({parameters, name, tags, job_variables, work_queue_name, ...})")
    p.add_argument("--params", action="append", metavar="JSON",
                   help="parameters of one run (repeatable); with --count, a template where "
                        '"{index}" is replaced by the run index')
    p.add_argument("--count", type=int, metavar="N", help="N runs from one --params template")
    _add_limit_flags(p)
    p.add_argument("--tag", action="append", metavar="T", help="tag for every child (repeatable)")
    p.add_argument("--label", action="append", metavar="K=V", help="batch label (repeatable)")
    p.add_argument("--parent-flow-run-id", metavar="ID", help="link the children under this "
                   "flow run (as_subflow)")
    p.add_argument("--no-track", action="store_true",
                   help="do not follow the children: the batch ends once all are launched")
    p.add_argument("--relaunch-crashed", type=int, metavar="N",
                   help="launch a CRASHED child again up to N times")
    p.add_argument("--tolerated-failure-percentage", type=float, metavar="P")
    p.add_argument("--tolerated-failure-count", type=int, metavar="N")
    p.add_argument("--on-cancel", choices=["abandon", "cancel_children"])
    p.add_argument("--start-deadline-s", type=float, metavar="S",
                   help="seconds a child may take to start (0: none; default: the server's)")
    p.add_argument("--run-deadline-s", type=float, metavar="S",
                   help="seconds a child may run (0: none; default: the server's)")
    p.add_argument("--on-deadline", choices=["report", "fail", "relaunch"],
                   help="a child past a deadline or deleted: STUCK, cancelled and FAILED, or "
                   "cancelled and launched again")
    p.add_argument("--priority", type=int, metavar="N")
    p.add_argument("--max-attempts", type=_positive_int, metavar="N",
                   help="create attempts per run")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="a repeat with the same key returns the same batch")
    p.add_argument("--chunk-size", type=_positive_int, metavar="N",
                   help="send the runs N per request: the batch is created unsealed, the rest "
                   "appended in chunks (each under a key derived from --idempotency-key), "
                   "then sealed")
    p.add_argument("--wait", action="store_true",
                   help="follow the batch until it ends (progress on stderr)")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="with --wait: stop after S s")
    p.add_argument("--json", action="store_true", help="print the batch as JSON")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("watch", parents=[common], help="follow a batch with a progress bar")
    p.add_argument("batch_id", metavar="BATCH_ID")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="stop after S seconds")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("get", parents=[common], help="print a batch as JSON")
    p.add_argument("batch_id", metavar="BATCH_ID")
    p.set_defaults(func=_cmd_get)

    p = sub.add_parser("runs", parents=[common], help="list a batch's runs")
    p.add_argument("batch_id", metavar="BATCH_ID")
    p.add_argument("--state", choices=ITEM_STATES, metavar="STATE",
                   help="only runs in this state: " + ", ".join(ITEM_STATES))
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("list", parents=[common], help="list batches")
    p.add_argument("--state", choices=BATCH_STATES, metavar="STATE",
                   help="only batches in this state: " + ", ".join(BATCH_STATES))
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=_cmd_list)

    for name, text in (("cancel", "cancel a batch"), ("pause", "pause a batch"),
                       ("resume", "resume a paused batch"),
                       ("redrive", "launch the failed and skipped items again")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("batch_id", metavar="BATCH_ID")
        if name == "cancel":
            p.add_argument("--on-cancel", choices=["abandon", "cancel_children"],
                           help="what happens to children still running")
        p.set_defaults(func=_cmd_control)

    p = sub.add_parser("update", parents=[common], help="change a running batch's limits")
    p.add_argument("batch_id", metavar="BATCH_ID")
    _add_limit_flags(p)
    p.add_argument("--tolerated-failure-percentage", type=float, metavar="P")
    p.add_argument("--tolerated-failure-count", type=int, metavar="N",
                   help="a count, or -1 to remove it")
    p.add_argument("--priority", type=int, metavar="N")
    p.add_argument("--on-cancel", choices=["abandon", "cancel_children"])
    p.set_defaults(func=_cmd_update)
    return parser


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[IO[str]] = None,
         stderr: Optional[IO[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    options: Dict[str, Any] = {}
    if getattr(args, "request_timeout", None) is not None:
        options["timeout"] = args.request_timeout
    if getattr(args, "retries", None) is not None:
        options["retries"] = max(0, args.retries)
    try:
        client = FloodgateClient(getattr(args, "url", None), **options)
        code: int = args.func(client, args, out, err)
        return code
    except UsageError as e:
        err.write(f"floodgate: error: {e}\n")
        return EXIT_USAGE
    except FloodgateConnectionError as e:
        err.write(f"floodgate: {e}\n")
        return EXIT_UNREACHABLE
    except FloodgateError as e:
        err.write(f"floodgate: {e}\n")
        if e.status is not None and 400 <= e.status < 500:
            return EXIT_USAGE
        return EXIT_FAILED
    except ValueError as e:
        err.write(f"floodgate: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # e.g. `floodgate runs ID | head`: stop quietly.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK

