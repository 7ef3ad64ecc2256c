"""Checks floodgate's answers against proto/openapi.yaml.

Every response the tests receive from floodgated goes through `OpenApiChecker.check_response`
(called by the shared HTTP client in harness.py), so no test can skip it. It checks that:

- the path is declared (otherwise the answer must be a 404 Problem, as the spec's conventions
  say), and the method is declared for it (otherwise a 405 Problem with an `Allow` header that
  lists exactly the declared methods);
- the status code is declared for the operation;
- the Content-Type is one the spec declares for that status, and the body validates against
  its schema (JSON Schema 2020-12, as OpenAPI 3.1 uses);
- required response headers are present and match their schema;
- a few invariants the schema cannot express: a Problem's `status` equals the HTTP status; a
  Batch's counts add up to `total`, `failures` equals FAILED + CRASHED + LAUNCH_FAILED + STUCK, and
  `finished_at` is set exactly when the state is final.

It also checks the other direction for bodies the server *accepted* (2xx on a request with a
JSON body): such a body must be valid against the declared request schema, so the contract
never calls invalid what the server takes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "https://floodgate.invalid/openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
FINAL_BATCH_STATES = {"COMPLETED", "FAILED", "CANCELLED"}


class ContractViolation(AssertionError):
    """floodgate answered something proto/openapi.yaml does not allow."""


def _pointer_escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@dataclass
class _Route:
    template: str
    regex: re.Pattern
    item: dict


class OpenApiChecker:
    def __init__(self, spec_path: Path):
        self.spec_path = Path(spec_path)
        self.spec = yaml.safe_load(self.spec_path.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self.routes: list[_Route] = []
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self.routes.append(_Route(template, re.compile(pattern), item))
        # Literal paths first, so /v1/batches/x never matches a template when a literal fits.
        self.routes.sort(key=lambda r: r.template.count("{"))
        self.checked = 0
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    # ------------------------------------------------------------------ helpers
    def _validator(self, pointer: str):
        v = self._validators.get(pointer)
        if v is None:
            schema = {"$ref": f"{SPEC_URI}#{pointer}"}
            v = self._validators[pointer] = jsonschema.Draft202012Validator(
                schema,
                registry=self.registry,
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
        return v

    def _resolve(self, node: dict, pointer: str) -> tuple[dict, str]:
        """Follows a $ref of a response / requestBody / header object."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            pointer = ref[1:]
            node = self.spec
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def _schema_errors(self, pointer: str, instance: Any) -> list[str]:
        v = self._validator(pointer)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        out = []
        for e in errors[:10]:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            out.append(f"{where}: {e.message[:300]}")
        return out

    def match(self, path: str) -> _Route | None:
        for r in self.routes:
            if r.regex.match(path):
                return r
        return None

    def declared_methods(self, route: _Route) -> set[str]:
        return {m.upper() for m in route.item if m in HTTP_METHODS}

    # ------------------------------------------------------------------ checks
    def check_response(self, method: str, path: str, status: int, headers: dict[str, str],
                       body: bytes, request_body: bytes | None = None,
                       request_content_type: str | None = None) -> None:
        """Raises ContractViolation when the answer breaks the contract."""
        self.checked += 1
        where = f"{method} {path} -> {status}"
        ctype = headers.get("content-type", "")
        media = ctype.split(";")[0].strip().lower()
        route = self.match(path)
        if route is None:
            self._expect_problem(where, status, 404, media, body)
            return
        op_name = method.lower()
        if op_name not in route.item:
            self._expect_problem(where, status, 405, media, body)
            allow = headers.get("allow")
            if allow is None:
                raise ContractViolation(f"{where}: 405 without an Allow header")
            got = {m.strip().upper() for m in allow.split(",") if m.strip()}
            want = self.declared_methods(route)
            if got != want:
                raise ContractViolation(
                    f"{where}: Allow header {sorted(got)} differs from the methods "
                    f"{route.template} declares {sorted(want)}")
            return
        op = route.item[op_name]
        op_pointer = f"/paths/{_pointer_escape(route.template)}/{op_name}"
        responses = op.get("responses", {})
        key = str(status)
        if key in responses:
            resp_node = responses[key]
            resp_pointer = f"{op_pointer}/responses/{key}"
        elif f"{key[0]}XX" in responses:
            resp_node = responses[f"{key[0]}XX"]
            resp_pointer = f"{op_pointer}/responses/{key[0]}XX"
        elif "default" in responses:
            resp_node = responses["default"]
            resp_pointer = f"{op_pointer}/responses/default"
        else:
            detail = body[:300].decode("utf-8", "replace")
            raise ContractViolation(
                f"{where}: status {status} is not declared for {method} {route.template} "
                f"(declared: {sorted(responses)}); body: {detail}")
        resp_node, resp_pointer = self._resolve(resp_node, resp_pointer)

        for hname, hnode in (resp_node.get("headers") or {}).items():
            hnode_r, hpointer = self._resolve(hnode, f"{resp_pointer}/headers/{_pointer_escape(hname)}")
            value = headers.get(hname.lower())
            if value is None:
                if hnode_r.get("required"):
                    raise ContractViolation(f"{where}: required header {hname} is missing")
                continue
            # A header is text on the wire; an integer header (Retry-After) is checked as the
            # number it spells (OpenAPI's "simple" style).
            typed: object = int(value) if value.isdigit() else value
            if hnode_r.get("schema", {}).get("type") != "integer":
                typed = value
            errs = self._schema_errors(f"{hpointer}/schema", typed) if "schema" in hnode_r else []
            if errs:
                raise ContractViolation(f"{where}: header {hname}={value!r}: {errs}")

        content = resp_node.get("content")
        if not content:
            if body:
                raise ContractViolation(f"{where}: the spec declares no body but got {body[:200]!r}")
            return
        if media not in content:
            raise ContractViolation(
                f"{where}: Content-Type {ctype!r} is not one of {sorted(content)}")
        media_pointer = f"{resp_pointer}/content/{_pointer_escape(media)}/schema"
        if media.endswith("json"):
            try:
                doc = json.loads(body)
            except ValueError as e:
                raise ContractViolation(f"{where}: body is not JSON ({e}): {body[:200]!r}") from None
            errs = self._schema_errors(media_pointer, doc)
            if errs:
                raise ContractViolation(
                    f"{where}: body does not match {media_pointer}:\n  " + "\n  ".join(errs)
                    + f"\nbody: {body[:1500].decode('utf-8', 'replace')}")
            self._invariants(where, status, media, doc)
        else:
            errs = self._schema_errors(media_pointer, body.decode("utf-8", "replace"))
            if errs:
                raise ContractViolation(f"{where}: {errs}")

        # The other direction: what the server accepted must be valid per the request schema.
        if 200 <= status < 300 and request_body and "requestBody" in op:
            rb, rb_pointer = self._resolve(op["requestBody"], f"{op_pointer}/requestBody")
            rmedia = (request_content_type or "application/json").split(";")[0].strip().lower()
            if rmedia in rb.get("content", {}):
                try:
                    req_doc = json.loads(request_body)
                except ValueError:
                    raise ContractViolation(
                        f"{where}: the server accepted a body that is not JSON") from None
                if isinstance(req_doc, dict) and isinstance(req_doc.get("runs"), list) \
                        and len(req_doc["runs"]) > 2000:
                    # Validating 100k runs costs seconds; a sample from both ends will do.
                    req_doc = dict(req_doc, runs=req_doc["runs"][:1000] + req_doc["runs"][-1000:])
                errs = self._schema_errors(
                    f"{rb_pointer}/content/{_pointer_escape(rmedia)}/schema", req_doc)
                if errs:
                    raise ContractViolation(
                        f"{where}: the server accepted a request body that the spec calls "
                        f"invalid: {errs}")

    def _expect_problem(self, where: str, status: int, want: int, media: str, body: bytes) -> None:
        if status != want:
            raise ContractViolation(
                f"{where}: an undeclared {'path' if want == 404 else 'method'} must answer "
                f"{want} (application/problem+json), got {status}: {body[:200]!r}")
        if media != "application/problem+json":
            raise ContractViolation(f"{where}: {want} must be application/problem+json, got {media!r}")
        doc = json.loads(body)
        errs = self._schema_errors("/components/schemas/Problem", doc)
        if errs:
            raise ContractViolation(f"{where}: not a Problem: {errs}")
        self._invariants(where, status, media, doc)

    def _invariants(self, where: str, status: int, media: str, doc: Any) -> None:
        if media == "application/problem+json":
            if doc.get("status") != status:
                raise ContractViolation(f"{where}: Problem.status {doc.get('status')} != HTTP {status}")
            return
        for batch in self._batches_in(doc):
            counts = batch["counts"]
            if sum(counts.values()) != batch["total"]:
                raise ContractViolation(
                    f"{where}: batch {batch['id']} counts add up to {sum(counts.values())}, "
                    f"not total {batch['total']}: {counts}")
            failures = (counts["FAILED"] + counts["CRASHED"] + counts["LAUNCH_FAILED"]
                        + counts.get("STUCK", 0))
            if batch["failures"] != failures:
                raise ContractViolation(
                    f"{where}: batch {batch['id']} failures {batch['failures']} != "
                    f"FAILED+CRASHED+LAUNCH_FAILED+STUCK {failures}")
            final = batch["state"] in FINAL_BATCH_STATES
            if final != (batch["finished_at"] is not None):
                raise ContractViolation(
                    f"{where}: batch {batch['id']} is {batch['state']} but finished_at is "
                    f"{batch['finished_at']!r}")

    @staticmethod
    def _batches_in(doc: Any):
        if isinstance(doc, dict):
            if "counts" in doc and "total" in doc and "id" in doc:
                yield doc
            for b in doc.get("batches", []) if isinstance(doc.get("batches"), list) else []:
                yield b
