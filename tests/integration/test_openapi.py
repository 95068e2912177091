#!/usr/bin/python3
"""test_openapi: keeps openapi/openapi.yaml true to the daemon and to API.md.

Checks that the spec lints clean with Redocly CLI (installed by scripts/bootstrap under
.cache/npm), that it lists exactly the operations of the daemon's route table
(`loadtestd --print-routes`), that every example in it validates against its schema, that the
example specs of API.md validate against the createRun request schema (and that near misses of
them are rejected, as the daemon rejects them), and that openapi_check.OpenApi itself accepts
and rejects what it should.

Run: /usr/bin/python3 test_openapi.py --loadtestd PATH --targets DIR --source REPO_ROOT
Prints one line per test and a final "N passed, N failed"; exits non-zero on any failure.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openapi_check import OpenApi, pointer_join  # noqa: E402

# The operations the contract fixes, with their operationIds.
EXPECTED_OPERATIONS = {
    ("GET", "/healthz"): "getHealth",
    ("GET", "/v1/version"): "getVersion",
    ("POST", "/v1/chatops/slack"): "slackCommand",  # chat-ops (issue #7)
    ("POST", "/v1/runs"): "createRun",
    ("GET", "/v1/runs"): "listRuns",
    ("GET", "/v1/runs/{id}"): "getRun",
    ("DELETE", "/v1/runs/{id}"): "deleteRun",
    ("GET", "/v1/runs/{id}/timeseries"): "getRunTimeseries",
    ("POST", "/v1/runs/{id}/cancel"): "cancelRun",
    # The dashboard (static files).
    ("GET", "/"): "getDashboard",
    ("GET", "/ui/{asset}"): "getDashboardAsset",
    ("GET", "/metrics"): "getMetrics",
    # presets and baselines (issue #7)
    ("GET", "/v1/runs/{id}/compare"): "compareRun",
    ("GET", "/v1/presets"): "listPresets",
    ("PUT", "/v1/presets/{name}"): "putPreset",
    ("GET", "/v1/presets/{name}"): "getPreset",
    ("DELETE", "/v1/presets/{name}"): "deletePreset",
    ("POST", "/v1/presets/{name}/runs"): "createPresetRun",
    ("GET", "/v1/limits"): "getLimits",
}

# The example specs of /work/shared/API.md as JSON. Placeholders there ("..", "...",
# `"raw string" or JSON value`, `"body": JSON`, "as for capacity") are given concrete values;
# everything else is copied as written.
API_MD_SPECS = {
    "capacity": {
        "kind": "capacity",
        "target": {"url": "http://host:8080/path", "method": "POST",
                   "headers": {"Content-Type": "application/json"},
                   "bodies": ["raw string", {"json": ["value", 1]}],
                   "timeout_ms": 5000, "expect_status": [200]},
        "load": {"users": 20, "rate_per_user": 10, "duration_s": 60, "warmup_s": 0,
                 "model": "open"},
        "thresholds": {"p50_ms": 10, "p95_ms": 30, "p99_ms": 50, "max_error_rate": 0.01,
                       "min_rps": 150},
    },
    "ratelimit": {
        "kind": "ratelimit",
        "target": {"url": "http://host:8080/path", "method": "POST",
                   "headers": {"Content-Type": "application/json"},
                   "bodies": ["raw string", {"json": "value"}],
                   "timeout_ms": 5000, "expect_status": [200]},
        "setup": {"url": "http://host:8080/keys", "method": "POST", "body": {"plan": "free"},
                  "extract": {"json_pointer": "/api_key", "header": "X-API-Key"}},
        "burst": {"max_requests": 200, "expect_limit": 60, "tolerance": 2,
                  "observe_refill_s": 0},
        "realistic": {"agents": 3, "requests_min": 10, "requests_max": 15, "window_s": 30,
                      "windows": 1},
        "expect": {"refill_per_s": None, "refill_tolerance": 0.15, "retry_after": False},
    },
    "generate": {
        "kind": "generate",
        "database": {"dsn": "postgresql://user:secret@host:5432/db"},
        "table": "traces", "create_table": True, "truncate": False,
        "rows": 100000, "dim": 1536, "base_vectors": 1000, "noise_sigma": 0.05, "seed": 42,
        "batch_rows": 1000, "connections": 2,
        "index": {"build": "create", "m": 16, "ef_construction": 64},
    },
}

REQUEST_SCHEMA = pointer_join("#/paths", "/v1/runs", "post", "requestBody", "content",
                              "application/json", "schema")


# ---------------------------------------------------------------------------- helpers

class Context:
    def __init__(self, args):
        self.args = args
        self.source = os.path.abspath(args.source)
        self.spec_path = os.path.join(self.source, "openapi", "openapi.yaml")
        self._api = None

    @property
    def api(self):
        if self._api is None:
            self._api = OpenApi(self.spec_path)
        return self._api


def tail(text, lines=60):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def iter_nodes(node, pointer="#", parent_key=None):
    """Yields (pointer, dict node, key it hangs under) for every dict in the document."""
    if isinstance(node, dict):
        yield pointer, node, parent_key
        for key, value in node.items():
            yield from iter_nodes(value, pointer_join(pointer, key), key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_nodes(value, pointer_join(pointer, i), parent_key)


def spec_errors(api, spec):
    return api.schema_errors(REQUEST_SCHEMA, spec)


# ---------------------------------------------------------------------------- tests

def test_redocly_lint(ctx):
    """Redocly CLI lints openapi/openapi.yaml without errors."""
    redocly = os.path.join(ctx.source, ".cache", "npm", "node_modules", ".bin", "redocly")
    assert os.path.exists(redocly), (
        "%s is missing: run scripts/bootstrap (it installs Redocly CLI under .cache/npm)" % redocly)
    env = dict(os.environ, NO_COLOR="1", REDOCLY_TELEMETRY="off",
               REDOCLY_SUPPRESS_UPDATE_NOTICE="true")
    try:
        proc = subprocess.run([redocly, "lint", "openapi/openapi.yaml"], cwd=ctx.source, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
    except OSError as e:
        raise AssertionError("cannot run %s (%s): run scripts/bootstrap" % (redocly, e))
    assert proc.returncode == 0, "redocly lint failed (exit %d):\n%s" % (proc.returncode,
                                                                       tail(proc.stdout, 200))
    for line in proc.stdout.splitlines():
        if "warning" in line.lower() and line.startswith("You have"):
            print("  note: redocly: %s" % line.strip())


def test_routes_match_spec(ctx):
    """`loadtestd --print-routes` lists exactly the operations of the spec."""
    binary = ctx.args.loadtestd
    assert binary and os.path.exists(binary), "loadtestd binary %r does not exist" % binary
    proc = subprocess.run([binary, "--print-routes"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert proc.returncode == 0, "%s --print-routes exited %d:\n%s" % (
        binary, proc.returncode, tail(proc.stderr))
    routes = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        assert len(fields) >= 2, "--print-routes line %r is not 'METHOD PATH'" % line
        routes.add((fields[0].upper(), fields[1]))
    assert routes, "--print-routes printed no routes"
    spec_ops = ctx.api.operations()
    only_daemon = sorted(routes - spec_ops)
    only_spec = sorted(spec_ops - routes)
    assert not only_daemon and not only_spec, (
        "route table and openapi.yaml differ:\n  in the daemon, not in the spec: %s\n"
        "  in the spec, not in the daemon: %s" % (
            ", ".join("%s %s" % r for r in only_daemon) or "-",
            ", ".join("%s %s" % r for r in only_spec) or "-"))


def test_operations_and_ids(ctx):
    """The spec has the contract's operations with their operationIds, and no others."""
    doc = ctx.api.doc
    found = {}
    for template, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                found[(method.upper(), template)] = op.get("operationId")
    assert found == EXPECTED_OPERATIONS, (
        "operations differ from the contract:\n  spec: %s\n  want: %s"
        % (sorted(found.items()), sorted(EXPECTED_OPERATIONS.items())))


def test_error_responses(ctx):
    """Every 4xx/5xx response documents the Error shape; every operation lists 405 and 500."""
    api = ctx.api
    problems = []
    for (method, template) in sorted(api.operations()):
        op = api.doc["paths"][template][method.lower()]
        responses = op.get("responses", {})
        for required in ("405", "500"):
            if required not in responses:
                problems.append("%s %s does not list %s" % (method, template, required))
        for status, response in responses.items():
            if str(status)[0] not in "45":
                continue
            resp, pointer = api.deref(response, pointer_join(
                "#/paths", template, method.lower(), "responses", status))
            media = (resp.get("content") or {}).get("application/json")
            if not media or "schema" not in media:
                problems.append("%s %s %s has no application/json schema"
                                % (method, template, status))
                continue
            # The body schema must be Error or narrow it: a body of the wrong shape fails, and
            # the generic shape with some code passes.
            schema_ptr = pointer_join(pointer, "content", "application/json", "schema")
            if not api.schema_errors(schema_ptr, {"message": "not an error"}) or \
               not api.schema_errors(schema_ptr, {"error": {"code": "internal"}}):
                problems.append("%s %s %s: schema accepts bodies that are not errors"
                                % (method, template, status))
            codes = [c for c in api.doc["components"]["schemas"]["ErrorCode"]["enum"]
                     if not api.schema_errors(schema_ptr, {"error": {"code": c, "message": "x"}})]
            if not codes:
                problems.append("%s %s %s: accepts no error code" % (method, template, status))
    assert not problems, "\n".join(problems)


def test_examples_validate(ctx):
    """Every example in the spec (schema `examples`, media/parameter `example(s)`) validates."""
    api = ctx.api
    problems = []
    count = 0
    for pointer, node, parent_key in iter_nodes(api.doc):
        if parent_key == "properties":
            continue  # a property that happens to be named "example(s)"
        checks = []
        if "schema" in node and isinstance(node.get("schema"), dict):
            # Media type, parameter or header object.
            target = pointer_join(pointer, "schema")
            if "example" in node:
                checks.append((pointer_join(pointer, "example"), node["example"], target))
            for name, ex in (node.get("examples") or {}).items():
                ex, ex_ptr = api.deref(ex, pointer_join(pointer, "examples", name))
                if "value" in ex:
                    checks.append((pointer_join(ex_ptr, "value"), ex["value"], target))
        elif pointer.startswith("#/components/schemas/") or "/schema" in pointer:
            # Schema object: `examples` is a list, `example` (deprecated) a value.
            if isinstance(node.get("examples"), list):
                for i, ex in enumerate(node["examples"]):
                    checks.append((pointer_join(pointer, "examples", i), ex, pointer))
            if "example" in node:
                checks.append((pointer_join(pointer, "example"), node["example"], pointer))
        for ex_ptr, value, schema_ptr in checks:
            count += 1
            lines = api.schema_errors(schema_ptr, value)
            if lines:
                problems.append("%s does not validate against %s:\n%s" % (ex_ptr, schema_ptr,
                                                                         "\n".join(lines)))
    assert count > 0, "no examples found in the spec"
    assert not problems, "\n".join(problems)
    print("  note: %d examples validated" % count)


def test_api_md_specs_validate(ctx):
    """The example specs of API.md validate against the createRun request schema."""
    problems = []
    for kind, spec in API_MD_SPECS.items():
        for variant, body in (("as in API.md", spec),
                              ("with name and notify",
                               dict(spec, name="nightly " + kind,
                                    notify={"webhook_url": "http://127.0.0.1:9/hook"}))):
            lines = spec_errors(ctx.api, body)
            if lines:
                problems.append("%s spec %s is rejected:\n%s" % (kind, variant, "\n".join(lines)))
        try:
            ctx.api.validate_request("POST", "/v1/runs", json.dumps(spec))
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)


def test_near_miss_specs_rejected(ctx):
    """Specs the daemon rejects (unknown fields anywhere, wrong kind, out-of-range values) are
    rejected by the request schema too."""
    def mutated(kind, path, value=None, delete=False):
        spec = copy.deepcopy(API_MD_SPECS[kind])
        node = spec
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return spec

    bad = {
        "unknown top-level field": mutated("capacity", ["extra"], 1),
        "unknown target field": mutated("capacity", ["target", "extra"], 1),
        "unknown load field": mutated("capacity", ["load", "userz"], 1),
        "unknown thresholds field": mutated("capacity", ["thresholds", "p42_ms"], 1),
        "expect_status 6xx": mutated("capacity", ["target", "expect_status"], ["6xx"]),
        "expect_status empty": mutated("capacity", ["target", "expect_status"], []),
        "null threshold": mutated("capacity", ["thresholds", "p99_ms"], None),
        "header with CR LF": mutated("capacity", ["target", "headers", "X-A"], "a\r\nB: c"),
        "header name with space": mutated("capacity", ["target", "headers", "X A"], "a"),
        "url with a space": mutated("capacity", ["target", "url"], "http://host/a b"),
        "expect_status 99": mutated("capacity", ["target", "expect_status"], [99]),
        "model sideways": mutated("capacity", ["load", "model"], "sideways"),
        "users 0": mutated("capacity", ["load", "users"], 0),
        "no target": mutated("capacity", ["target"], delete=True),
        "name too long": mutated("capacity", ["name"], "x" * 201),
        "ftp url": mutated("capacity", ["target", "url"], "ftp://host/x"),
        "unknown setup field": mutated("ratelimit", ["setup", "extra"], 1),
        "unknown extract field": mutated("ratelimit", ["setup", "extract", "extra"], 1),
        "unknown burst field": mutated("ratelimit", ["burst", "extra"], 1),
        "unknown realistic field": mutated("ratelimit", ["realistic", "extra"], 1),
        "unknown expect field": mutated("ratelimit", ["expect", "extra"], 1),
        "capacity-only load on ratelimit": mutated("ratelimit", ["load"], {"users": 1}),
        "unknown database field": mutated("generate", ["database", "password"], "x"),
        "unknown index field": mutated("generate", ["index", "extra"], 1),
        "index build sideways": mutated("generate", ["index", "build"], "sideways"),
        "generate without database": mutated("generate", ["database"], delete=True),
        "unknown kind": mutated("generate", ["kind"], "soak"),
        "no kind": mutated("generate", ["kind"], delete=True),
    }
    accepted = [name for name, spec in bad.items() if not spec_errors(ctx.api, spec)]
    assert not accepted, ("the request schema accepts specs the daemon rejects: %s"
                          % ", ".join(accepted))


def test_spec_objects_closed(ctx):
    """Every object schema reachable from RunSpec sets additionalProperties: false (maps and
    the service-defined `notify` excepted), since the daemon rejects unknown fields."""
    api = ctx.api
    schemas = api.doc["components"]["schemas"]
    open_ok = {"Notify", "HttpHeaders"}
    seen = set()
    problems = []

    def walk(node, where):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                if name not in seen and name not in open_ok:
                    seen.add(name)
                    walk(schemas[name], name)
                return
            if "properties" in node and node.get("additionalProperties") is not False:
                problems.append(where)
            for key, value in node.items():
                if key not in ("examples", "example"):
                    walk(value, where + "/" + str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, "%s/%d" % (where, i))

    walk({"$ref": "#/components/schemas/RunSpec"}, "RunSpec")
    assert not problems, "spec objects that allow unknown fields: %s" % ", ".join(problems)


def test_checker_self(ctx):
    """openapi_check.OpenApi accepts conforming answers and rejects the others."""
    api = ctx.api
    doc = copy.deepcopy(api.doc["components"]["schemas"]["RunDocument"]["examples"][0])
    rid = doc["id"]
    json_h = {"Content-Type": "application/json; charset=utf-8"}
    etag = dict(json_h, ETag='"%s-7"' % rid)
    body = json.dumps(doc).encode()

    def rejects(why, *call):
        try:
            api.validate(*call)
        except AssertionError:
            return
        raise AssertionError("validate accepted %s" % why)

    assert api.match("/v1/runs/%s/cancel?x=1" % rid) == "/v1/runs/{id}/cancel"
    assert api.match("/v1/runs/%s" % rid) == "/v1/runs/{id}"
    assert api.match("/v1/runs") == "/v1/runs"
    assert api.match("/v1/nope") is None
    assert api.validate("GET", "/v1/runs/" + rid, 200, etag, body)["id"] == rid
    api.validate("GET", "/healthz", 200, json_h, b'{"status":"ok"}')
    api.validate("GET", "/v1/runs/%s" % rid, 304, {"ETag": etag["ETag"]}, b"")
    api.validate("DELETE", "/v1/runs/%s" % rid, 204, {}, None)
    api.validate("HEAD", "/v1/runs/%s" % rid, 200, etag, b"")
    api.validate("GET", "/v1/runs?limit=1", 200, json_h,
                 b'{"runs":[],"next_cursor":null}')
    api.validate("GET", "/v1/nope", 404, json_h,
                 b'{"error":{"code":"not_found","message":"no such route"}}')
    api.validate("PUT", "/v1/runs", 405, dict(json_h, Allow="GET, POST"),
                 b'{"error":{"code":"method_not_allowed","message":"use GET or POST"}}')
    api.validate("POST", "/v1/runs", 400, json_h,
                 b'{"error":{"code":"invalid_spec","message":"bad","field":"/load/users"}}')
    queued = dict(doc, status="queued", started_at=None, finished_at=None, verdict=None)
    api.validate("POST", "/v1/runs", 202, dict(json_h, Location="/v1/runs/" + rid),
                 json.dumps(queued).encode())

    rejects("an undocumented status", "GET", "/v1/runs/" + rid, 418, etag, body)
    rejects("a 200 without ETag", "GET", "/v1/runs/" + rid, 200, json_h, body)
    rejects("a 202 without Location", "POST", "/v1/runs", 202, json_h, json.dumps(queued))
    rejects("a HEAD answer with a body", "HEAD", "/healthz", 200, json_h, b'{"status":"ok"}')
    rejects("a 204 with a body", "DELETE", "/v1/runs/" + rid, 204, {}, b"{}")
    rejects("a body that is not JSON", "GET", "/healthz", 200, json_h, b"ok")
    rejects("a text/plain body", "GET", "/healthz", 200, {"Content-Type": "text/plain"},
            b'{"status":"ok"}')
    rejects("NaN in JSON", "GET", "/v1/runs/" + rid, 200, etag,
            body.replace(b'"observed": 12.3', b'"observed": NaN'))
    rejects("a 200 on an unknown path", "GET", "/v1/nope", 200, json_h, b"{}")
    rejects("a 200 on an unknown method", "PUT", "/v1/runs", 200, json_h, b"{}")
    rejects("a 405 without Allow", "PUT", "/v1/runs", 405, json_h,
            b'{"error":{"code":"method_not_allowed","message":"no"}}')
    rejects("a 404 with the wrong code", "GET", "/v1/runs/" + rid, 404, json_h,
            b'{"error":{"code":"conflict","message":"no"}}')
    rejects("an error without message", "DELETE", "/v1/runs/" + rid, 409, json_h,
            b'{"error":{"code":"conflict"}}')
    rejects("an unknown error code", "GET", "/v1/runs/" + rid, 500, json_h,
            b'{"error":{"code":"oops","message":"no"}}')
    rejects("an invalid_spec field that is not a pointer", "POST", "/v1/runs", 400, json_h,
            b'{"error":{"code":"invalid_spec","message":"bad","field":"load.users"}}')
    for why, change in (
            ("a local time", {"created_at": "2026-12-03T17:42:20+01:00"}),
            ("a passed run with a failed verdict",
             {"verdict": dict(doc["verdict"], **{"pass": False})}),
            ("a finished run without finished_at", {"finished_at": None}),
            ("a capacity run with a generate spec",
             {"spec": API_MD_SPECS["generate"]}),
            ("a spec with an unknown field", {"spec": dict(doc["spec"], extra=1)}),
            ("a result without latency", {"result": {"requests": 1}}),
            ("a missing error member", {"error": "absent"}),
            ("a bad id", {"id": "run-1"})):
        bad = dict(doc, **change)
        if change.get("error") == "absent":
            del bad["error"]
        rejects(why, "GET", "/v1/runs/" + rid, 200, etag, json.dumps(bad))
    rejects("a summary carrying a spec", "GET", "/v1/runs", 200, json_h,
            json.dumps({"runs": [dict(doc)], "next_cursor": None}))
    rejects("a point at t=0", "GET", "/v1/runs/%s/timeseries" % rid, 200, etag,
            b'{"points":[{"t":0}]}')


TESTS = [
    test_redocly_lint,
    test_routes_match_spec,
    test_operations_and_ids,
    test_error_responses,
    test_examples_validate,
    test_api_md_specs_validate,
    test_near_miss_specs_rejected,
    test_spec_objects_closed,
    test_checker_self,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loadtestd", help="path of the loadtestd binary")
    parser.add_argument("--targets", help="directory of the test target binaries (unused here)")
    parser.add_argument("--source", required=True, help="repository root")
    args, _unknown = parser.parse_known_args()
    ctx = Context(args)

    passed = failed = 0
    for test in TESTS:
        name = test.__name__
        try:
            test(ctx)
        except AssertionError as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
        except Exception:  # a broken test or spec must fail loudly, not stop the run
            failed += 1
            print("FAIL %s: unexpected exception\n%s" % (name, traceback.format_exc()))
        else:
            passed += 1
            print("ok   %s" % name)
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
