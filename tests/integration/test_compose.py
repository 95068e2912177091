#!/usr/bin/python3
"""test_compose: keeps compose/*.yml and the Dockerfiles they build honest without a Docker
engine (none runs where the tests run).

Checks that compose/docker-compose.yml and compose/docker-compose.capacity.yml parse, that
every build context and Dockerfile they name exists, that every image is one of an explicit
list, that ports are published on 127.0.0.1 only, that depends_on points at services with a
healthcheck, that the capacity override only touches services of the base file, that its
PostgreSQL settings are exactly those of scripts/lib/pg_tuning.sh (which the demo uses) with
/dev/shm large enough for the index build, that it lifts the read rate limit above the
capacity load, and that the Dockerfiles COPY only files that exist and .dockerignore keeps.

Run: /usr/bin/python3 test_compose.py [--source REPO_ROOT]
(--loadtestd and --targets, which the integration harness passes to every test, are accepted
and ignored.) Prints one line per test and a final "N passed, N failed"; exits non-zero on any
failure.
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import traceback

import yaml

BASE = "compose/docker-compose.yml"
CAPACITY = "compose/docker-compose.capacity.yml"
PG_TUNING = "scripts/lib/pg_tuning.sh"

# Every image compose may run or tag. A new one is a deliberate change to this list.
ALLOWED_IMAGES = {
    "loadtestd:dev",           # built from ./Dockerfile
    "traces-api:dev",          # built from examples/traces-api/Dockerfile
    "pgvector/pgvector:pg15",  # PostgreSQL 15 with pgvector
    "redis:7",
}

# The capacity case: 20 users x 10 requests/s, all with one API key, for a minute.
CAPACITY_REQUESTS_PER_MINUTE = 20 * 10 * 60


class Ctx:
    def __init__(self, root):
        self.root = root
        self.docs = {}

    def path(self, rel):
        return os.path.join(self.root, rel)

    def load(self, rel):
        if rel not in self.docs:
            with open(self.path(rel), encoding="utf-8") as f:
                self.docs[rel] = yaml.safe_load(f)
        return self.docs[rel]

    def services(self, rel):
        return self.load(rel)["services"]

    def all_services(self):
        for rel in (BASE, CAPACITY):
            for name, svc in self.services(rel).items():
                yield rel, name, svc or {}


def size_bytes(text):
    """'2GB', '2gb', '512mb', '64MB', '1g' -> bytes (PostgreSQL and Docker units)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(text).lower())
    assert m, "not a size: %r" % (text,)
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def build_paths(ctx, rel, svc):
    """(context dir, Dockerfile path) of a service's build section, both absolute."""
    build = svc["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = os.path.normpath(os.path.join(os.path.dirname(ctx.path(rel)), build["context"]))
    dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
    return context, dockerfile


def dockerfile_instructions(path):
    """Yields (instruction, arguments) with continuation lines joined and comments dropped."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    logical, parts = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        logical.append(" ".join(parts))
        parts = []
    for line in logical:
        word, _, rest = line.partition(" ")
        yield word.upper(), rest.strip()


def copy_sources(args):
    """The source paths of a COPY/ADD argument string; None for COPY --from (another stage)."""
    if args.startswith("["):
        words = json.loads(args)
    else:
        words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return None
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, "COPY needs a source and a destination: %r" % args
    return paths[:-1]


def dockerignore_patterns(context):
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def ignored(patterns, rel):
    """True when .dockerignore's patterns (no '!' exceptions used here) exclude rel or a
    directory above it."""
    rel = rel.strip("/")
    if rel in ("", "."):
        return False
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for p in patterns:
            assert not p.startswith("!"), ".dockerignore exceptions are not handled here"
            if fnmatch.fnmatch(prefix, p.rstrip("/")):
                return True
    return False


def pg_command_settings(command):
    """'postgres -c a=b -c c=d' (or the list form) -> [('a', 'b'), ('c', 'd')]."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    assert words and words[0] == "postgres", "the command must run postgres: %r" % command
    out, i = [], 1
    while i < len(words):
        assert words[i] == "-c" and i + 1 < len(words), "unexpected argument %r" % words[i]
        name, eq, value = words[i + 1].partition("=")
        assert eq, "-c needs name=value: %r" % words[i + 1]
        out.append((name, value))
        i += 2
    return out


def pg_tuning_settings(ctx):
    """LT_PG_TUNING of scripts/lib/pg_tuning.sh, read by sourcing it in bash."""
    proc = subprocess.run(
        ["bash", "-c", '. "$1" && printf "%s\\n" "${LT_PG_TUNING[@]}"', "bash",
         ctx.path(PG_TUNING)],
        capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, "sourcing %s failed: %s" % (PG_TUNING, proc.stderr)
    out = []
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("=")
        out.append((name, value))
    assert out, "%s defines no settings" % PG_TUNING
    return out


# ---------------------------------------------------------------------------------------
# Tests

def test_yaml_parses(ctx):
    for rel in (BASE, CAPACITY):
        doc = ctx.load(rel)
        assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), \
            "%s: no services mapping" % rel


def test_base_services(ctx):
    names = set(ctx.services(BASE))
    assert names == {"loadtestd", "postgres", "redis", "traces-api"}, names


def test_build_paths_exist(ctx):
    seen = 0
    for rel, name, svc in ctx.all_services():
        if "build" not in svc:
            continue
        context, dockerfile = build_paths(ctx, rel, svc)
        assert os.path.isdir(context), "%s %s: build context %s is missing" % (rel, name, context)
        assert os.path.isfile(dockerfile), "%s %s: %s is missing" % (rel, name, dockerfile)
        seen += 1
    assert seen == 2, "expected two services built from this repository, saw %d" % seen


def test_images_allowed(ctx):
    for rel, name, svc in ctx.all_services():
        if "image" in svc:
            assert svc["image"] in ALLOWED_IMAGES, "%s %s: image %s is not on the list" % (
                rel, name, svc["image"])
        elif rel == BASE:
            raise AssertionError("%s %s: no image (name every image, built or pulled)" % (
                rel, name))


def test_ports_loopback_only(ctx):
    for rel, name, svc in ctx.all_services():
        for p in svc.get("ports", []):
            assert isinstance(p, str) and p.startswith("127.0.0.1:"), \
                "%s %s: port %r is not published on 127.0.0.1 only" % (rel, name, p)


def test_depends_on_healthy(ctx):
    services = ctx.services(BASE)
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, "%s depends on unknown %s" % (name, dep)
            cond = deps[dep].get("condition") if isinstance(deps, dict) else None
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], \
                    "%s waits for %s to be healthy, which has no healthcheck" % (name, dep)


def test_capacity_overrides_known_services(ctx):
    base = set(ctx.services(BASE))
    for name, svc in ctx.services(CAPACITY).items():
        assert name in base, "the override creates a new service %s" % name
        assert "image" not in svc and "build" not in svc, \
            "the override must tune %s, not replace what it runs" % name


def test_capacity_pg_settings_match_pg_tuning(ctx):
    compose = pg_command_settings(ctx.services(CAPACITY)["postgres"]["command"])
    shell = pg_tuning_settings(ctx)
    assert compose == shell, "compose has %s, %s has %s" % (compose, PG_TUNING, shell)
    assert [n for n, _ in shell] == ["shared_buffers", "effective_cache_size",
                                     "maintenance_work_mem", "work_mem"], shell


def test_capacity_shm_fits_index_build(ctx):
    settings = dict(pg_command_settings(ctx.services(CAPACITY)["postgres"]["command"]))
    shm = size_bytes(ctx.services(CAPACITY)["postgres"]["shm_size"])
    assert shm > size_bytes(settings["maintenance_work_mem"]), \
        "shm_size %d is not above maintenance_work_mem" % shm


def test_capacity_raises_read_limit(ctx):
    base = int(ctx.services(BASE)["traces-api"]["environment"]["RATE_LIMIT_READ_PER_MINUTE"])
    cap = int(ctx.services(CAPACITY)["traces-api"]["environment"]["RATE_LIMIT_READ_PER_MINUTE"])
    assert base == 60, "the ratelimit demo expects 60 per minute in the base file, not %d" % base
    assert cap > CAPACITY_REQUESTS_PER_MINUTE, \
        "RATE_LIMIT_READ_PER_MINUTE %d would throttle the capacity run" % cap


def test_dockerfiles_copy_existing_files(ctx):
    checked = 0
    for rel, name, svc in ctx.all_services():
        if "build" not in svc:
            continue
        context, dockerfile = build_paths(ctx, rel, svc)
        patterns = dockerignore_patterns(context)
        for word, args in dockerfile_instructions(dockerfile):
            if word not in ("COPY", "ADD"):
                continue
            sources = copy_sources(args)
            if sources is None:
                continue
            for src in sources:
                assert not re.match(r"^[a-z]+://", src), "%s: fetches %s" % (dockerfile, src)
                full = os.path.normpath(os.path.join(context, src))
                assert full.startswith(os.path.normpath(context)), \
                    "%s: %s is outside the build context" % (dockerfile, src)
                assert os.path.exists(full), "%s: COPY %s: no such file" % (dockerfile, src)
                relsrc = os.path.relpath(full, context)
                assert not ignored(patterns, relsrc), \
                    "%s: COPY %s, which .dockerignore excludes" % (dockerfile, src)
                checked += 1
    assert checked >= 2, "found only %d COPY sources" % checked


def test_traces_api_dockerfile_builds_what_cmake_needs(ctx):
    """The image builds examples/traces-api alone: every source its CMakeLists names must be
    inside the copied directory."""
    d = ctx.path("examples/traces-api")
    with open(os.path.join(d, "CMakeLists.txt"), encoding="utf-8") as f:
        cmake = f.read()
    names = set(re.findall(r"[\w-]+\.(?:c|lua)\b", cmake))
    assert "traces_api.c" in names and "ratelimit.lua" in names, names
    for n in names:
        assert os.path.isfile(os.path.join(d, n)), "CMakeLists.txt names missing %s" % n


TESTS = [
    test_yaml_parses,
    test_base_services,
    test_build_paths_exist,
    test_images_allowed,
    test_ports_loopback_only,
    test_depends_on_healthy,
    test_capacity_overrides_known_services,
    test_capacity_pg_settings_match_pg_tuning,
    test_capacity_shm_fits_index_build,
    test_capacity_raises_read_limit,
    test_dockerfiles_copy_existing_files,
    test_traces_api_dockerfile_builds_what_cmake_needs,
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=os.path.normpath(os.path.join(here, "..", "..")),
                    help="repository root (default: two levels above this file)")
    args, _ = ap.parse_known_args()  # --loadtestd/--targets from the harness: not needed
    ctx = Ctx(os.path.abspath(args.source))
    passed = failed = 0
    for t in TESTS:
        try:
            t(ctx)
        except Exception:  # noqa: BLE001 - a test's failure of any kind is reported
            failed += 1
            print("FAIL %s\n%s" % (t.__name__, traceback.format_exc(limit=2)), flush=True)
        else:
            passed += 1
            print("ok   %s" % t.__name__, flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
