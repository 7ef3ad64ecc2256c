"""The contract itself: proto/openapi.yaml is a valid OpenAPI 3.1 document that declares the
whole REST API of DESIGN.md, and the checker catches what it should."""

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from conftest import SPEC
from openapi_check import ContractViolation, OpenApiChecker


def test_spec_is_valid_openapi_31():
    spec_dict, base_uri = read_from_filename(str(SPEC))
    assert spec_dict["openapi"].startswith("3.1")
    validate(spec_dict)


def test_spec_declares_the_whole_rest_contract():
    spec = yaml.safe_load(SPEC.read_text())
    paths = spec["paths"]
    want = {
        "/v1/batches": {"get", "post"},
        "/v1/batches/{id}": {"get", "patch"},
        "/v1/batches/{id}/runs": {"get", "post"},
        "/v1/batches/{id}/seal": {"post"},
        "/v1/batches/{id}/cancel": {"post"},
        "/v1/batches/{id}/pause": {"post"},
        "/v1/batches/{id}/resume": {"post"},
        "/v1/batches/{id}/redrive": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/": {"get"},
    }
    for path, methods in want.items():
        assert path in paths, path
        assert {m for m in paths[path] if m != "parameters"} == methods, path
    post = paths["/v1/batches"]["post"]
    assert set(post["responses"]) >= {"200", "201", "400", "413", "415", "422", "503"}
    assert any(p.get("$ref", "").endswith("IdempotencyKey") for p in post["parameters"])
    schemas = spec["components"]["schemas"]
    for name in ("Batch", "Run", "Problem", "BatchState", "ItemState", "BatchRequest", "BatchPatch"):
        assert name in schemas, name
    body = schemas["BatchRequest"]
    assert body["additionalProperties"] is False
    assert set(body["properties"]) == {
        "deployment", "deployment_id", "runs", "tags", "parent_flow_run_id", "limits", "retry",
        "track", "relaunch_crashed", "tolerated_failure_percentage", "tolerated_failure_count",
        "on_cancel", "start_deadline_s", "run_deadline_s", "on_deadline", "start_pacing",
        "priority", "labels", "sealed"}
    assert set(schemas["RunRequest"]["properties"]) == {
        "parameters", "name", "tags", "job_variables", "work_queue_name", "idempotency_key",
        "deployment"}
    assert schemas["RunRequest"]["additionalProperties"] is False
    assert set(schemas["BatchPatch"]["properties"]) == {
        "limits", "retry", "tolerated_failure_percentage", "tolerated_failure_count", "priority",
        "on_cancel", "start_deadline_s", "run_deadline_s", "on_deadline"}
    assert schemas["BatchState"]["enum"] == ["QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED",
                                             "CANCELLED"]
    assert schemas["ItemState"]["enum"] == ["PENDING", "LAUNCHING", "RETRY_WAIT", "LAUNCHED",
                                            "COMPLETED", "FAILED", "CRASHED", "CANCELLED",
                                            "LAUNCH_FAILED", "SKIPPED", "STUCK"]
    assert set(schemas["Problem"]["properties"]) >= {"type", "title", "status", "detail", "field",
                                                     "errors"}


BATCH = {
    "id": "d24c19bf-9d0d-4e37-a31c-838ed89ac1fc", "state": "RUNNING", "total": 2,
    "counts": {"PENDING": 1, "LAUNCHING": 0, "RETRY_WAIT": 0, "LAUNCHED": 1, "COMPLETED": 0,
               "FAILED": 0, "CRASHED": 0, "CANCELLED": 0, "LAUNCH_FAILED": 0, "SKIPPED": 0,
               "STUCK": 0},
    "created_at": "2026-11-28T12:28:50.529Z", "updated_at": "2026-11-28T12:28:50.529Z",
    "finished_at": None, "version": 3, "idempotency_key": None, "failures": 0,
    "tolerated_failures": 0, "deployment": "demo-flow/demo", "tags": [], "parent_flow_run_id": None,
    "limits": {"max_in_flight": None, "max_running": None, "launches_per_second": None, "burst": None,
               "max_backlog": None},
    "retry": {"max_attempts": 8, "initial_delay_s": 1.0, "max_delay_s": 60.0, "max_elapsed_s": 3600.0},
    "track": True, "relaunch_crashed": 0, "tolerated_failure_percentage": 0.0,
    "tolerated_failure_count": None, "on_cancel": "abandon", "start_deadline_s": 0.0,
    "run_deadline_s": 0.0, "on_deadline": "report", "start_pacing": True, "start_pace": None,
    "progress": {"launch_rate": 1.0, "completion_rate": 0.0, "eta_s": None,
                 "waiting_on": ["backlog"], "backlog": 1, "max_backlog": 10},
    "priority": 0, "labels": {}, "sealed": True,
}


def _check(checker, method, path, status, body, headers=None):
    import json
    h = {"content-type": "application/json"}
    h.update(headers or {})
    checker.check_response(method, path, status, h, json.dumps(body).encode())


def test_checker_accepts_a_good_batch_and_rejects_regressions():
    """The validator must be able to fail: it rejects renamed fields, wrong enums and types,
    counts that do not add up, undeclared statuses and methods."""
    checker = OpenApiChecker(SPEC)
    _check(checker, "GET", "/v1/batches/x", 200, BATCH)
    bad_variants = [
        {k: v for k, v in BATCH.items() if k != "version"},
        dict(BATCH, state="DONE"),
        dict(BATCH, total="2"),
        dict(BATCH, counts=dict(BATCH["counts"], PENDING=5)),
        dict(BATCH, finished_at="2026-11-28T12:28:50.529Z"),
        dict(BATCH, created_at="yesterday"),
        dict(BATCH, progress=dict(BATCH["progress"], waiting_on=["tokens"])),
    ]
    for bad in bad_variants:
        with pytest.raises(ContractViolation):
            _check(checker, "GET", "/v1/batches/x", 200, bad)
    with pytest.raises(ContractViolation):  # undeclared status
        _check(checker, "GET", "/v1/batches/x", 409, {"type": "about:blank", "title": "Conflict",
                                                      "status": 409, "detail": "x"})
    with pytest.raises(ContractViolation):  # 201 without Location
        _check(checker, "POST", "/v1/batches", 201, BATCH)
    _check(checker, "POST", "/v1/batches", 201, BATCH,
           {"location": "/v1/batches/d24c19bf-9d0d-4e37-a31c-838ed89ac1fc"})
    with pytest.raises(ContractViolation):  # a method the path does not declare answered 200
        _check(checker, "POST", "/healthz", 200, {"status": "ok"})
    with pytest.raises(ContractViolation):  # run with a bad state
        _check(checker, "GET", "/v1/batches/x/runs", 200, {"runs": [
            {"index": 0, "state": "RUNNING", "flow_run_id": None, "flow_run_state": None,
             "attempts": 0, "last_error": None}], "next": None})
