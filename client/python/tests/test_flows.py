"""run_deployments / arun_deployments against the real floodgated and the fake Prefect."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest

from conftest import FakePrefect, find_batches, slow
from floodgate import (
    Batch,
    BatchCancelledError,
    BatchFailedError,
    BatchTimeoutError,
    FloodgateClient,
    FloodgateError,
    Run,
    arun_deployments,
    current_flow_run_id,
    run_deployments,
)
from floodgate.flows import format_failures


@pytest.fixture
def fake_prefect_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, Any]]:
    """Stand-in ``prefect.runtime`` modules whose ``flow_run.id`` the test sets."""
    state: Dict[str, Any] = {"id": None}

    class _FlowRun(types.ModuleType):
        @property
        def id(self) -> Optional[str]:
            return state["id"]  # type: ignore[no-any-return]

    prefect = types.ModuleType("prefect")
    runtime = types.ModuleType("prefect.runtime")
    flow_run = _FlowRun("prefect.runtime.flow_run")
    runtime.flow_run = flow_run  # type: ignore[attr-defined]
    prefect.runtime = runtime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect", prefect)
    monkeypatch.setitem(sys.modules, "prefect.runtime", runtime)
    monkeypatch.setitem(sys.modules, "prefect.runtime.flow_run", flow_run)
    yield state


def test_returns_runs_in_order(client: FloodgateClient, fake: FakePrefect) -> None:
    marker = uuid.uuid4().hex
    params = [{"i": i, "marker": marker, "__fake_running_ms": (12 - i) * 20} for i in range(12)]
    runs = run_deployments("demo-flow/demo", params, client=client, poll_s=5, as_subflow=False)
    assert [r.index for r in runs] == list(range(12))
    assert all(isinstance(r, Run) and r.state == "COMPLETED" for r in runs)
    by_id = fake.runs_by_id()
    for r in runs:
        assert r.flow_run_id is not None
        assert by_id[r.flow_run_id]["parameters"]["i"] == r.index
        assert by_id[r.flow_run_id]["parent_task_run_id"] is None  # not as_subflow


def test_empty_parameters_list(client: FloodgateClient) -> None:
    assert run_deployments("demo-flow/demo", [], client=client) == []
    with pytest.raises(TypeError):
        run_deployments("demo-flow/demo", client=client)


def test_full_run_specs_and_batch_options(client: FloodgateClient, fake: FakePrefect,
                                          label: Dict[str, str]) -> None:
    runs = run_deployments(
        "demo-flow/demo",
        runs=[{"parameters": {"n": 1}, "name": "first", "tags": ["x"]},
              {"parameters": {"n": 2}, "name": "second"}],
        tags=["batch-tag"], limits={"max_running": 1}, labels=label, priority=3,
        client=client, poll_s=5, as_subflow=False,
    )
    by_id = fake.runs_by_id()
    names = [by_id[r.flow_run_id]["name"] for r in runs if r.flow_run_id]
    assert names == ["first", "second"]
    assert "batch-tag" in by_id[runs[0].flow_run_id or ""]["tags"]
    (batch,) = find_batches(client, label)
    assert batch.raw["priority"] == 3 and batch.raw["limits"]["max_running"] == 1


def test_failed_batch_raises_with_failures(client: FloodgateClient) -> None:
    params: List[Dict[str, Any]] = [{} for _ in range(6)]
    params[2] = {"__fake_final": "FAILED"}
    params[4] = {"__fake_final": "CRASHED"}
    with pytest.raises(BatchFailedError) as info:
        run_deployments("demo-flow/demo", params, client=client, poll_s=5, as_subflow=False)
    e = info.value
    assert e.batch.state == "FAILED"
    assert e.failed_runs, "at least one failed child is listed"
    assert {r.index for r in e.failed_runs} <= {2, 4}
    assert all(r.failed for r in e.failed_runs)
    assert [r.index for r in e.runs] == list(range(6))
    text = str(e)
    assert e.batch.id in text
    for r in e.failed_runs:
        assert f"[{r.index}] {r.state}" in text
        assert f"flow_run_id={r.flow_run_id}" in text


def test_tolerated_failures_complete(client: FloodgateClient) -> None:
    params = [{"__fake_final": "FAILED"} if i == 0 else {} for i in range(4)]
    runs = run_deployments("demo-flow/demo", params, tolerated_failure_percentage=25,
                           client=client, poll_s=5, as_subflow=False)
    assert [r.state for r in runs] == ["FAILED", "COMPLETED", "COMPLETED", "COMPLETED"]


def test_failure_message_is_bounded() -> None:
    batch = Batch.from_json({"id": "b", "state": "FAILED", "total": 30,
                             "counts": {"FAILED": 25, "COMPLETED": 5}, "version": 9})
    failed = [Run(index=i, state="FAILED", flow_run_id=f"fr-{i}", flow_run_state="Failed",
                  attempts=1, last_error="boom\n  at line 3" if i == 0 else None)
              for i in range(25)]
    text = format_failures(batch, failed)
    lines = text.splitlines()
    assert lines[0].startswith("floodgate batch b FAILED: 25 of 30 children failed")
    assert len(lines) == 1 + 20 + 1
    assert "[0] FAILED flow_run_id=fr-0 error: boom at line 3" in text
    assert "[19] FAILED" in text and "[20] FAILED" not in text
    assert lines[-1].strip() == "... and 5 more failed children"


def test_cancelled_batch_raises(client: FloodgateClient, label: Dict[str, str]) -> None:
    result: Dict[str, Any] = {}

    def call() -> None:
        try:
            run_deployments("demo-flow/demo", [slow(20000) for _ in range(3)], labels=label,
                            client=client, poll_s=5, as_subflow=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    batches: List[Batch] = []
    while not batches and time.monotonic() < deadline:
        batches = find_batches(client, label)
        time.sleep(0.1)
    assert batches, "the helper submitted a batch"
    client.cancel(batches[0].id, on_cancel="cancel_children")
    t.join(30)
    assert isinstance(result.get("error"), BatchCancelledError)
    assert result["error"].batch.state == "CANCELLED"
    assert batches[0].id in str(result["error"])


def test_timeout_zero_returns_at_once(client: FloodgateClient, label: Dict[str, str]) -> None:
    started = time.monotonic()
    runs = run_deployments("demo-flow/demo", [slow(20000) for _ in range(4)], timeout=0,
                           labels=label, client=client, as_subflow=False)
    assert time.monotonic() - started < 3
    assert [r.index for r in runs] == [0, 1, 2, 3]
    assert not any(r.is_final for r in runs)
    (batch,) = find_batches(client, label)
    client.cancel(batch.id, on_cancel="cancel_children")


def test_timeout_raises_timeout_error(client: FloodgateClient, label: Dict[str, str]) -> None:
    with pytest.raises(TimeoutError) as info:
        run_deployments("demo-flow/demo", [slow(20000)], timeout=1, labels=label,
                        client=client, poll_s=5, as_subflow=False)
    (batch,) = find_batches(client, label)
    assert isinstance(info.value, BatchTimeoutError)
    assert batch.id in str(info.value)
    assert not client.get(batch.id).is_final  # the batch keeps running
    client.cancel(batch.id, on_cancel="cancel_children")


def test_as_subflow_uses_current_flow_run(client: FloodgateClient, fake: FakePrefect,
                                          fake_prefect_runtime: Dict[str, Any],
                                          label: Dict[str, str]) -> None:
    assert current_flow_run_id() is None  # stub present, but not in a flow run
    parent = str(uuid.uuid4())
    fake_prefect_runtime["id"] = parent
    assert current_flow_run_id() == parent
    runs = run_deployments("demo-flow/demo", [{"i": 0}, {"i": 1}], labels=label,
                           client=client, poll_s=5)
    (batch,) = find_batches(client, label)
    assert batch.raw["parent_flow_run_id"] == parent
    # floodgate linked each child under a placeholder task run of the parent
    tasks = {t["id"]: t for t in fake.task_runs()}
    by_id = fake.runs_by_id()
    for r in runs:
        child = by_id[r.flow_run_id or ""]
        assert child["parent_task_run_id"] in tasks
        assert tasks[child["parent_task_run_id"]]["flow_run_id"] == parent


def test_as_subflow_false_ignores_flow_run(client: FloodgateClient,
                                           fake_prefect_runtime: Dict[str, Any],
                                           label: Dict[str, str]) -> None:
    fake_prefect_runtime["id"] = str(uuid.uuid4())
    run_deployments("demo-flow/demo", [{}], as_subflow=False, labels=label, client=client,
                    poll_s=5)
    (batch,) = find_batches(client, label)
    assert batch.raw["parent_flow_run_id"] is None


def test_no_prefect_means_no_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect", None)  # import prefect -> ImportError
    assert current_flow_run_id() is None


def test_async_variant(client: FloodgateClient, fake_prefect_runtime: Dict[str, Any],
                       label: Dict[str, str]) -> None:
    parent = str(uuid.uuid4())
    fake_prefect_runtime["id"] = parent

    async def flow() -> List[Run]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        try:
            return await arun_deployments("demo-flow/demo", [{"i": i} for i in range(5)],
                                          labels=label, client=client, poll_s=5)
        finally:
            task.cancel()
            assert ticks > 0, "the event loop kept running while floodgate was waited on"

    runs = asyncio.run(flow())
    assert [r.index for r in runs] == list(range(5))
    assert all(r.state == "COMPLETED" for r in runs)
    (batch,) = find_batches(client, label)
    assert batch.raw["parent_flow_run_id"] == parent


def test_rejected_batch_raises_floodgate_error(client: FloodgateClient) -> None:
    with pytest.raises(FloodgateError) as info:
        run_deployments("demo-flow/demo", [{}], client=client, on_cancel="explode",
                        as_subflow=False)
    assert info.value.status == 422 and info.value.field == "on_cancel"
