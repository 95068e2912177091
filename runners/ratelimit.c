/*
 * ratelimit: validates a ratelimit spec, drives the agents with one libcurl multi handle on the
 * run thread and turns what they saw into the result, the per-second points and the verdict
 * (see ratelimit.h).
 *
 * DESIGN
 *   HTTP thread   ratelimit_validate / ratelimit_mask_secrets / ratelimit_each_target: pure JSON
 *                 work on the posted spec; no DNS, no sockets, no locks.
 *   run thread    ratelimit_execute does everything else, alone: it owns the CURLM, one easy
 *                 handle per agent (kept alive between requests), every counter, histogram and
 *                 json_t of the run. One loop: start what is due, curl_multi_perform, handle
 *                 completions, report once per second, then curl_multi_poll for at most 50 ms, so
 *                 the cancel flag is seen within 50 ms. No other thread, no lock: the volume is
 *                 small (hundreds to a few thousand requests) and one thread keeps the order of
 *                 events exact, which the burst's arithmetic depends on.
 *   Connections   every one is checked against the allowlist after DNS resolution, in
 *                 open_socket -> net_guard_open_socket.
 *
 * Phases (progress.phase and each point's phase):
 *   setup      with `setup`: one call per agent (burst agent first), at most 8 at a time, on the
 *              agent's own easy handle. The answer must be 2xx JSON; extract.json_pointer picks
 *              a string or integer, which every later request of that agent carries as
 *              `extract.header: extract.prefix + value` (replacing a target header of that
 *              name). Any failure ends the run as error `setup_failed`. Identities are never
 *              logged nor put in the result.
 *   burst      agent 0 sends back to back on one connection (or request i at i / burst.rate s
 *              when rate is given) until it has seen burst.stop_after_429 consecutive 429s
 *              (default 1: a limiter may count rejected requests too, so every request past the
 *              first 429 can lengthen the lockout and disturb the refill measurement; raise it
 *              to ride over a stray 429) or has sent max_requests. 429 is the expected answer,
 *              never an error; an expected status (target.expect_status) is "accepted"; any other
 *              status and every transport failure are errors (and fail burst_limit). If the
 *              first 3 burst requests all fail without an HTTP answer the run ends as error
 *              (target_unreachable, or forbidden_target when the allowlist refused them).
 *   refill     after a limited burst: (a) when the last 429 carried Retry-After (≤ 300 s) and
 *              either expect.retry_after or a refill observation is on, wait that long (+20 ms)
 *              after it arrived and send one request: retry_after_honoured = it was accepted.
 *              (b) with observe_refill_s > 0, probe for that long at a steady pace: 4 x
 *              expect.refill_per_s when given (4..200/s), else 10/s; never above burst.rate.
 *              Whenever a whole second of probes was all accepted the pace is too low to empty
 *              the bucket, so it doubles (up to 200/s) and the measurement restarts. The
 *              measurement starts at the later of "1 s into the phase" and "the first 429 at the
 *              final pace" (the bucket is empty then) and ends with the phase; with n accepted
 *              probes in it, refill_per_s = (n - 1) / (time between the first and the last of
 *              them) when n >= 3 — a token's arrival is known to within one probe interval, so
 *              this is much sharper than counting — else n / window length. Still saturated at
 *              the top pace: the rate is a lower bound (noted).
 *   realistic  `realistic.agents` agents; agent a, window w sends count requests, count uniform
 *              in [requests_min, requests_max], at instants uniform in the window, both drawn
 *              from a generator seeded by (seed, a, w) — seed defaults to a hash of the run id
 *              and is reported, so a rerun with that seed sends the same schedule. An agent has
 *              one connection and one request in flight: a request due while the previous one is
 *              in flight goes when it returns (max_send_lag_ms shows it). Every request must get
 *              an expected status: a 429 counts in rate_limited (the limiter is too strict), any
 *              other failure in errors.
 *
 * When the realistic agents run, and the shared identity. With setup each agent has its own
 * bucket: by default they start when the burst agent is done (a limiter that is really global
 * then shows as realistic 429s — which is a finding); concurrent_with_burst starts them with the
 * burst, which checks that one client's burst does not hurt the others. Without setup every
 * agent (burst included) is the same client to the limiter, so:
 *   - concurrent_with_burst is refused at validation: the burst empties the bucket they share.
 *   - the realistic agents together are one client: their combined traffic is what is judged.
 *   - they start only when the bucket is full again: after realistic.wait_s when given; else
 *     after capacity / refill x 1.1 + 1 s, the refill rate being the measured one, else
 *     expect.refill_per_s, else the limiter's own "reset" header on the last 429
 *     (RateLimit-Reset, X-RateLimit-Reset, RateLimit reset=; an epoch value is understood) + 1 s;
 *     failing all of those the burst agent observes the refill itself for 10 s (refill_source
 *     "auto"). If even that finds no refill the realistic phase is not run and
 *     realistic_success fails, saying why: the run cannot tell when the bucket is full. The wait
 *     counts from the burst agent's last request (probes keep the bucket empty).
 *
 * capacity_estimate. A bucket refills while it is being emptied, so a burst that took T seconds
 * gets about capacity + refill x T requests through. With a known refill rate r (the measured
 * one, else expect.refill_per_s): capacity_estimate = accepted_before_first_429 - r x T, where T
 * is the time between the midpoints (sent + answered) / 2 of the first burst request and of the
 * first limited one — when the server most likely decided each. It is reported with two
 * decimals. When the limiter said 429 its bucket held less than one token, so the capacity lies
 * in [capacity_estimate, capacity_estimate + 1): burst_limit checks the smallest whole number
 * not below it, ceil(capacity_estimate), against [expect_limit - tolerance, expect_limit +
 * tolerance] (op "between"); without a known rate it checks accepted_before_first_429. The
 * check names its basis and carries both figures. A burst that never met a 429 fails burst_limit
 * (observed null) and the summary says the limiter never limited; so does a burst with errors.
 *
 * Spec defaults (written back by validate): target as for capacity (method GET, headers {},
 * bodies [], timeout_ms 5000, expect_status ["2xx"]); setup.method POST, setup.headers {},
 * setup.extract.prefix ""; burst.tolerance 2, burst.max_requests max(200, 2 x (expect_limit +
 * tolerance)) capped at 100000 (it must exceed expect_limit + tolerance), observe_refill_s 0,
 * rate null, stop_after_429 1; realistic.agents 3, requests_max max(1, expect_limit / 2),
 * requests_min max(1, expect_limit / 4) (never above requests_max), window_s 30, windows 1,
 * concurrent_with_burst false, seed null, wait_s null; expect.refill_per_s null,
 * refill_tolerance 0.15, retry_after false. agents x requests_max is capped at 200000.
 *
 * Result (burst_json, realistic_json and result_json below): burst {accepted_before_first_429,
 * requests, accepted, first_429_ms, retry_after_s, limit_headers (lower-cased rate-limit
 * headers of the first 429), limit_headers_last_ok (of the last accepted answer before it),
 * advertised_limit, refill_per_s, refill_source, capacity_estimate, retry_after_honoured, errors,
 * error_details, status_codes, latency_ms, refill {...}}, realistic {agents, requests, succeeded,
 * rate_limited, errors, latency_ms {p50, p99, max}, identities, seed, wait_s, ...}, phases_s,
 * identities, notes, complete. Points: {t, requests, accepted, rate_limited, errors, phase,
 * status, p50_ms, p99_ms} by completion time (setup calls are not counted); a point's phase is
 * the one most of its requests belonged to.
 */
#define _GNU_SOURCE
#include "ratelimit.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hdr.h"
#include "http_engine.h"
#include "lt_allow.h"
#include "lt_json.h"
#include "lt_util.h"
#include "net_guard.h"
#include "target_spec.h"

#define NS_PER_S          1000000000LL
#define NS_PER_MS         1000000LL
#define MAX_POINTER       1024
#define MAX_PREFIX        256
#define MAX_REQUESTS      100000
#define MAX_AGENTS        1000
#define MAX_PER_WINDOW    10000
#define MAX_WINDOW_TOTAL  200000 /* agents x requests_max */
#define MAX_OBSERVE_S     600
#define MAX_WAIT_S        3600
#define MAX_SEED          9007199254740991LL /* 2^53 - 1: exact in every JSON reader */
#define STATUS_MAX        1000
#define SETUP_PARALLEL    8
#define SETUP_BODY_MAX    (64 * 1024)
#define IDENTITY_MAX      8192
#define CAPTURE_MAX       24
#define CAPTURE_NAME      64
#define CAPTURE_VALUE     256
#define POLL_MAX_MS       50
#define PACE_DEFAULT      10.0
#define PACE_MIN          4.0
#define PACE_MAX          200.0
#define AUTO_REFILL_S     10
#define RA_CHECK_MAX_S    300
#define RA_MARGIN_NS      (20 * NS_PER_MS)
#define UNREACHABLE_AFTER 3
#define PER_AGENT_MAX     100

static const char *const top_keys[] = {"kind",  "name",      "notify", "target",     "setup",
                                       "burst", "realistic", "expect", "thresholds", NULL};
static const char *const setup_keys[] = {"url", "method", "headers", "body", "extract", NULL};
static const char *const extract_keys[] = {"json_pointer", "header", "prefix", NULL};
static const char *const burst_keys[] = {
    "max_requests", "expect_limit",   "tolerance", "observe_refill_s",
    "rate",         "stop_after_429", NULL};
static const char *const realistic_keys[] = {"agents",   "requests_min", "requests_max",
                                             "window_s", "windows",      "concurrent_with_burst",
                                             "seed",     "wait_s",       NULL};
static const char *const expect_keys[] = {"refill_per_s", "refill_tolerance", "retry_after", NULL};

/* ---- validation ----------------------------------------------------------------------------- */

/* "<pointer> <what>", the field named: the shape of every validation error here. */
static lt_status spec_error(struct lt_error *err, const char *fp, const char *what)
{
    return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s %s", fp, what);
}

static lt_status validate_target(json_t *spec, struct lt_error *err)
{
    json_t *target;
    lt_status st;

    if ((st = ltj_object(spec, "", "target", 1, &target, err)) != LT_OK)
        return st;
    return target_spec_validate(target, "/target", TARGET_SPEC_FORBID_429, err);
}

/* RFC 6901: "" (the whole document) or "/"-separated tokens where "~" is only "~0" or "~1". */
static int pointer_syntax_ok(const char *p)
{
    if (*p != '\0' && *p != '/')
        return 0;
    for (; *p; p++) {
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return 0;
    }
    return 1;
}

static lt_status validate_setup(json_t *spec, int *has_setup, struct lt_error *err)
{
    json_t *setup = json_object_get(spec, "setup"), *extract, *body;
    const char *url, *ptr, *header, *prefix;
    int idx;
    lt_status st;

    *has_setup = setup != NULL;
    if (setup == NULL)
        return LT_OK;
    if (!json_is_object(setup))
        return spec_error(err, "/setup", "must be an object");
    if ((st = ltj_check_keys(setup, "/setup", setup_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_string(setup, "/setup", "url", 1, NULL, 1, TARGET_SPEC_MAX_URL, &url, err)) !=
        LT_OK)
        return st;
    if ((st = target_spec_check_url(url, "/setup/url", err)) != LT_OK)
        return st;
    if ((st = ltj_enum(setup, "/setup", "method", 0, "POST", target_spec_methods, &idx, err)) !=
        LT_OK)
        return st;
    if (strcmp(target_spec_methods[idx], "HEAD") == 0)
        return spec_error(err, "/setup/method",
                          "must not be HEAD: the identity is read from the answer's body");
    if ((st = target_spec_check_headers(setup, "/setup", err)) != LT_OK)
        return st;
    body = json_object_get(setup, "body");
    if (body != NULL && target_spec_body_size(body) > TARGET_SPEC_MAX_BODY_BYTES)
        return spec_error(err, "/setup/body", "must be at most 1 MiB long");
    if ((st = ltj_object(setup, "/setup", "extract", 1, &extract, err)) != LT_OK)
        return st;
    if ((st = ltj_check_keys(extract, "/setup/extract", extract_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_string(extract, "/setup/extract", "json_pointer", 1, NULL, 0, MAX_POINTER, &ptr,
                         err)) != LT_OK)
        return st;
    if (strlen(ptr) != json_string_length(json_object_get(extract, "json_pointer")) ||
        !pointer_syntax_ok(ptr))
        return spec_error(err, "/setup/extract/json_pointer",
                          "must be a JSON pointer (RFC 6901) such as \"/api_key\"");
    if ((st = ltj_string(extract, "/setup/extract", "header", 1, NULL, 1,
                         TARGET_SPEC_MAX_HEADER_NAME, &header, err)) != LT_OK)
        return st;
    if ((st = target_spec_check_header_name(header, "/setup/extract/header", err)) != LT_OK)
        return st;
    if ((st = ltj_string(extract, "/setup/extract", "prefix", 0, "", 0, MAX_PREFIX, &prefix,
                         err)) != LT_OK)
        return st;
    return target_spec_check_header_value(json_object_get(extract, "prefix"),
                                          "/setup/extract/prefix", MAX_PREFIX, err);
}

static lt_status validate_burst(json_t *spec, int64_t *expect_limit, struct lt_error *err)
{
    json_t *burst;
    int64_t tolerance, max_requests, stop, def_max;
    double observe, rate;
    int has_rate;
    lt_status st;

    if ((st = ltj_object(spec, "", "burst", 1, &burst, err)) != LT_OK)
        return st;
    if ((st = ltj_check_keys(burst, "/burst", burst_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_int(burst, "/burst", "expect_limit", 1, 0, 1, MAX_REQUESTS - 1, expect_limit,
                      err)) != LT_OK)
        return st;
    if ((st = ltj_int(burst, "/burst", "tolerance", 0, 2, 0, MAX_REQUESTS, &tolerance, err)) !=
        LT_OK)
        return st;
    def_max = 2 * (*expect_limit + tolerance);
    if (def_max < 200)
        def_max = 200;
    if (def_max > MAX_REQUESTS)
        def_max = MAX_REQUESTS;
    if ((st = ltj_int(burst, "/burst", "max_requests", 0, def_max, 1, MAX_REQUESTS, &max_requests,
                      err)) != LT_OK)
        return st;
    if (max_requests <= *expect_limit + tolerance)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/burst/max_requests",
                            "/burst/max_requests must be greater than expect_limit + tolerance "
                            "(%lld): the burst must be able to go past the limit",
                            (long long)(*expect_limit + tolerance));
    if ((st = ltj_number(burst, "/burst", "observe_refill_s", 0, 0, 0, MAX_OBSERVE_S, &observe,
                         err)) != LT_OK)
        return st;
    if ((st = ltj_number_or_null(burst, "/burst", "rate", 0.001, 100000, &rate, &has_rate, err)) !=
        LT_OK)
        return st;
    return ltj_int(burst, "/burst", "stop_after_429", 0, 1, 1, 100, &stop, err);
}

static lt_status validate_realistic(json_t *spec, int has_setup, int64_t expect_limit,
                                    struct lt_error *err)
{
    json_t *real, *seed;
    int64_t agents, rmin, rmax, windows, def_min, def_max;
    double window, wait;
    int concurrent, has_wait;
    lt_status st;

    if ((st = ltj_object(spec, "", "realistic", 0, &real, err)) != LT_OK)
        return st;
    if ((st = ltj_check_keys(real, "/realistic", realistic_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_int(real, "/realistic", "agents", 0, 3, 0, MAX_AGENTS, &agents, err)) != LT_OK)
        return st;
    /* Ordinary traffic: well inside the limit unless the spec says otherwise. */
    def_max = expect_limit / 2 > 1 ? expect_limit / 2 : 1;
    def_min = expect_limit / 4 > 1 ? expect_limit / 4 : 1;
    if (json_is_integer(json_object_get(real, "requests_min")) &&
        json_object_get(real, "requests_max") == NULL) {
        json_int_t m = json_integer_value(json_object_get(real, "requests_min"));
        if (m > def_max && m <= MAX_PER_WINDOW)
            def_max = m;
    }
    if (json_is_integer(json_object_get(real, "requests_max")) &&
        json_object_get(real, "requests_min") == NULL) {
        json_int_t m = json_integer_value(json_object_get(real, "requests_max"));
        if (m < def_min && m >= 0)
            def_min = m;
    }
    if ((st = ltj_int(real, "/realistic", "requests_min", 0, def_min, 0, MAX_PER_WINDOW, &rmin,
                      err)) != LT_OK)
        return st;
    if ((st = ltj_int(real, "/realistic", "requests_max", 0, def_max, 0, MAX_PER_WINDOW, &rmax,
                      err)) != LT_OK)
        return st;
    if (rmin > rmax)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/realistic/requests_min",
                            "/realistic/requests_min (%lld) must not exceed requests_max (%lld)",
                            (long long)rmin, (long long)rmax);
    if (agents * rmax > MAX_WINDOW_TOTAL)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/realistic/requests_max",
                            "/realistic/requests_max x agents must be at most %d per window",
                            MAX_WINDOW_TOTAL);
    if ((st = ltj_number(real, "/realistic", "window_s", 0, 30, 1, 3600, &window, err)) != LT_OK)
        return st;
    if ((st = ltj_int(real, "/realistic", "windows", 0, 1, 1, 100, &windows, err)) != LT_OK)
        return st;
    if ((st = ltj_bool(real, "/realistic", "concurrent_with_burst", 0, 0, &concurrent, err)) !=
        LT_OK)
        return st;
    if (concurrent && !has_setup && agents > 0)
        return spec_error(err, "/realistic/concurrent_with_burst",
                          "needs setup: without their own identities the realistic agents share "
                          "the burst agent's bucket, which the burst empties");
    seed = json_object_get(real, "seed");
    if (seed == NULL) {
        if (json_object_set_new(real, "seed", json_null()) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, "/realistic/seed", "out of memory");
    } else if (!json_is_null(seed) && (!json_is_integer(seed) || json_integer_value(seed) < 0 ||
                                       json_integer_value(seed) > MAX_SEED)) {
        return spec_error(err, "/realistic/seed",
                          "must be null or an integer between 0 and 9007199254740991");
    }
    return ltj_number_or_null(real, "/realistic", "wait_s", 0, MAX_WAIT_S, &wait, &has_wait, err);
}

static lt_status validate_expect(json_t *spec, struct lt_error *err)
{
    json_t *exp;
    double refill, tol;
    int has_refill, ra;
    lt_status st;

    if ((st = ltj_object(spec, "", "expect", 0, &exp, err)) != LT_OK)
        return st;
    if ((st = ltj_check_keys(exp, "/expect", expect_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_number_or_null(exp, "/expect", "refill_per_s", 0, 1e6, &refill, &has_refill,
                                 err)) != LT_OK)
        return st;
    if ((st = ltj_number(exp, "/expect", "refill_tolerance", 0, 0.15, 0, 10, &tol, err)) != LT_OK)
        return st;
    return ltj_bool(exp, "/expect", "retry_after", 0, 0, &ra, err);
}

static lt_status ratelimit_validate(json_t *spec, struct lt_error *err)
{
    int has_setup = 0;
    int64_t expect_limit = 0;
    lt_status st;

    if (!json_is_object(spec))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "", "the spec must be a JSON object");
    if ((st = ltj_check_keys(spec, "", top_keys, err)) != LT_OK)
        return st;
    if ((st = validate_target(spec, err)) != LT_OK)
        return st;
    if ((st = validate_setup(spec, &has_setup, err)) != LT_OK)
        return st;
    if ((st = validate_burst(spec, &expect_limit, err)) != LT_OK)
        return st;
    if ((st = validate_realistic(spec, has_setup, expect_limit, err)) != LT_OK)
        return st;
    if ((st = validate_expect(spec, err)) != LT_OK)
        return st;
    /* Only the service's baseline check (thresholds.max_regression_pct). */
    return runner_validate_baseline_thresholds(spec, err);
}

/* ---- secrets -------------------------------------------------------------------------------- */

/* Members of the setup body whose names look like credentials ({"password": ...}), at any
 * depth. */
static void mask_json(json_t *v, int depth)
{
    const char *name;
    json_t *m;
    size_t i;

    if (depth > 32)
        return;
    if (json_is_object(v)) {
        json_object_foreach(v, name, m)
        {
            if (target_spec_secret_name(name) && (json_is_string(m) || json_is_number(m)))
                json_object_set_new(v, name, json_string("***"));
            else
                mask_json(m, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m)
        {
            mask_json(m, depth + 1);
        }
    }
}

static void ratelimit_mask_secrets(json_t *spec)
{
    json_t *target = json_object_get(spec, "target");
    json_t *setup = json_object_get(spec, "setup");

    target_spec_mask_headers(target);
    target_spec_mask_url(target);
    if (json_is_object(setup)) {
        target_spec_mask_headers(setup);
        target_spec_mask_url(setup);
        mask_json(json_object_get(setup, "body"), 0);
    }
}

/* ---- targets -------------------------------------------------------------------------------- */

static int ratelimit_each_target(const json_t *spec,
                                 int (*fn)(void *opaque, const char *host, int port,
                                           const char *field),
                                 void *opaque)
{
    static const char *const owners[] = {"target", "setup"};
    static const char *const fields[] = {"/target/url", "/setup/url"};

    for (int i = 0; i < 2; i++) {
        const json_t *owner = json_object_get(spec, owners[i]);
        const char *url = json_string_value(json_object_get(owner, "url"));
        char host[256];
        int port = 0, rc;

        if (owner == NULL && i > 0)
            continue; /* no setup */
        if (url == NULL || runner_url_host(url, host, sizeof(host), &port) != 0)
            rc = fn(opaque, url ? url : "", 0, fields[i]); /* fail closed */
        else
            rc = fn(opaque, host, port, fields[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the plan: the validated spec in the shape the loop needs -------------------------------- */

struct plan {
    /* target */
    const char *url, *method; /* borrowed from the job's spec */
    long timeout_ms;
    char **lines; /* n_lines owned "Name: value" lines: target headers, Expect:, Content-Type */
    size_t n_lines;
    struct curl_slist *base_headers; /* owned; what every request carries without setup */
    char **bodies;                   /* n_bodies owned bodies, rotated per agent */
    size_t *body_lens;
    size_t n_bodies;
    unsigned char expect[STATUS_MAX];
    char host[300]; /* for messages */
    const struct lt_allow *allow;
    struct lt_allow *own_allow; /* the loopback default when the config has none */
    int target_name_allowed, setup_name_allowed;
    /* setup */
    int has_setup;
    const char *setup_url, *setup_method; /* borrowed */
    struct curl_slist *setup_headers;     /* owned */
    char *setup_body;                     /* owned; NULL = none */
    size_t setup_body_len;
    const char *extract_pointer, *extract_header, *extract_prefix; /* borrowed */
    /* burst */
    int64_t max_requests, expect_limit, tolerance, stop_after_429;
    double observe_refill_s, burst_rate; /* rate 0: as fast as one connection allows */
    /* realistic */
    int agents;
    int64_t req_min, req_max;
    double window_s;
    int windows, concurrent;
    uint64_t seed;
    double wait_s;
    int has_wait;
    /* expect */
    double exp_refill, refill_tol;
    int has_exp_refill, exp_retry_after;
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; p->lines && i < p->n_lines; i++)
        free(p->lines[i]);
    for (size_t i = 0; p->bodies && i < p->n_bodies; i++)
        free(p->bodies[i]);
    free(p->lines);
    free(p->bodies);
    free(p->body_lens);
    curl_slist_free_all(p->base_headers);
    curl_slist_free_all(p->setup_headers);
    free(p->setup_body);
    lt_allow_free(p->own_allow);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* "Name: value", or "Name;" for an empty value (curl's way to send an empty header).
 * Returns new; caller frees. */
static char *header_line(const char *name, const char *prefix, const char *value)
{
    char *line = NULL;
    int rc = (prefix[0] || value[0]) ? asprintf(&line, "%s: %s%s", name, prefix, value)
                                     : asprintf(&line, "%s;", name);

    return rc < 0 ? NULL : line;
}

static double num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static int64_t integer(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

/* The spec was validated; only allocation can fail here. */
static lt_status plan_build(const struct runner_job *job, struct plan *p, struct lt_error *err)
{
    const json_t *spec = job->spec;
    json_t *target = json_object_get(spec, "target");
    json_t *setup = json_object_get(spec, "setup");
    json_t *burst = json_object_get(spec, "burst");
    json_t *real = json_object_get(spec, "realistic");
    json_t *exp = json_object_get(spec, "expect");
    json_t *headers = json_object_get(target, "headers");
    json_t *bodies = json_object_get(target, "bodies");
    json_t *v;
    const char *name;
    int has_ctype = 0, has_expect = 0, json_bodies = 0;
    size_t i, nb = json_array_size(bodies);
    char h[256];
    int port = 0;

    memset(p, 0, sizeof(*p));
    p->url = json_string_value(json_object_get(target, "url"));
    p->method = json_string_value(json_object_get(target, "method"));
    p->timeout_ms = (long)integer(target, "timeout_ms");
    if (p->url == NULL || p->method == NULL || p->timeout_ms <= 0 || burst == NULL)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, NULL, "the spec was not validated");
    {
        const char *hs = strstr(p->url, "://");
        const char *at = NULL;
        size_t n;

        hs = hs ? hs + 3 : p->url;
        n = strcspn(hs, "/?#");
        for (size_t k = 0; k < n; k++) {
            if (hs[k] == '@')
                at = hs + k;
        }
        if (at != NULL) {
            n -= (size_t)(at + 1 - hs);
            hs = at + 1;
        }
        snprintf(p->host, sizeof(p->host), "%.*s", (int)n, hs);
    }
    p->allow = job->config ? job->config->allow : NULL;
    if (p->allow == NULL) {
        p->own_allow = lt_allow_new_default();
        if (p->own_allow == NULL)
            goto nomem;
        p->allow = p->own_allow;
    }
    if (runner_url_host(p->url, h, sizeof(h), &port) == 0)
        p->target_name_allowed = lt_allow_name_matched(p->allow, h, port);

    /* Target headers, minus the identity header when setup provides it per agent. */
    p->has_setup = json_is_object(setup);
    if (p->has_setup) {
        json_t *extract = json_object_get(setup, "extract");
        p->extract_pointer = json_string_value(json_object_get(extract, "json_pointer"));
        p->extract_header = json_string_value(json_object_get(extract, "header"));
        p->extract_prefix = json_string_value(json_object_get(extract, "prefix"));
        if (p->extract_prefix == NULL)
            p->extract_prefix = "";
        p->setup_url = json_string_value(json_object_get(setup, "url"));
        p->setup_method = json_string_value(json_object_get(setup, "method"));
        if (p->setup_method == NULL)
            p->setup_method = "POST";
        if (p->extract_pointer == NULL || p->extract_header == NULL || p->setup_url == NULL)
            return lt_error_set(err, LT_ERR_INVALID_SPEC, NULL, "the spec was not validated");
        if (runner_url_host(p->setup_url, h, sizeof(h), &port) == 0)
            p->setup_name_allowed = lt_allow_name_matched(p->allow, h, port);
    }
    p->lines = calloc(json_object_size(headers) + 3, sizeof(char *));
    p->bodies = calloc(nb + 1, sizeof(char *));
    p->body_lens = calloc(nb + 1, sizeof(size_t));
    if (!p->lines || !p->bodies || !p->body_lens)
        goto nomem;
    json_object_foreach(headers, name, v)
    {
        if (p->has_setup && strcasecmp(name, p->extract_header) == 0)
            continue;
        if (strcasecmp(name, "Content-Type") == 0)
            has_ctype = 1;
        if (strcasecmp(name, "Expect") == 0)
            has_expect = 1;
        if ((p->lines[p->n_lines] = header_line(name, "", json_string_value(v))) == NULL)
            goto nomem;
        p->n_lines++;
    }
    json_array_foreach(bodies, i, v)
    {
        if (json_is_string(v)) {
            p->body_lens[i] = json_string_length(v);
            p->bodies[i] = malloc(p->body_lens[i] + 1);
            if (p->bodies[i] != NULL)
                memcpy(p->bodies[i], json_string_value(v), p->body_lens[i] + 1);
        } else {
            json_bodies = 1;
            p->bodies[i] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (p->bodies[i] != NULL)
                p->body_lens[i] = strlen(p->bodies[i]);
        }
        p->n_bodies = i + 1;
        if (p->bodies[i] == NULL)
            goto nomem;
    }
    /* JSON values are JSON: say so unless the spec set a type. No "Expect: 100-continue" round
     * trip before a body: it would add a wait to every POST and blur the burst's timing. */
    if (json_bodies && !has_ctype) {
        if ((p->lines[p->n_lines] = strdup("Content-Type: application/json")) == NULL)
            goto nomem;
        p->n_lines++;
    }
    if (!has_expect) {
        if ((p->lines[p->n_lines] = strdup("Expect:")) == NULL)
            goto nomem;
        p->n_lines++;
    }
    for (i = 0; i < p->n_lines; i++) {
        struct curl_slist *n = curl_slist_append(p->base_headers, p->lines[i]);
        if (n == NULL)
            goto nomem;
        p->base_headers = n;
    }
    json_array_foreach(json_object_get(target, "expect_status"), i, v)
    {
        if (json_is_integer(v)) {
            json_int_t c = json_integer_value(v);
            if (c >= 0 && c < STATUS_MAX)
                p->expect[c] = 1;
        } else if (json_is_string(v)) {
            int cls = json_string_value(v)[0] - '0';
            for (int c = cls * 100; c >= 100 && c < cls * 100 + 100 && c < STATUS_MAX; c++)
                p->expect[c] = 1;
        }
    }
    p->expect[429] = 0; /* always the limiter's answer, whatever the classes say */

    if (p->has_setup) {
        json_t *sh = json_object_get(setup, "headers"), *body = json_object_get(setup, "body");
        int setup_ctype = 0;
        struct curl_slist *n;

        json_object_foreach(sh, name, v)
        {
            char *line = header_line(name, "", json_string_value(v));
            if (strcasecmp(name, "Content-Type") == 0)
                setup_ctype = 1;
            n = line ? curl_slist_append(p->setup_headers, line) : NULL;
            free(line);
            if (n == NULL)
                goto nomem;
            p->setup_headers = n;
        }
        if (body != NULL) {
            p->setup_body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
            if (p->setup_body == NULL)
                goto nomem;
            p->setup_body_len = strlen(p->setup_body);
            if (!setup_ctype) {
                n = curl_slist_append(p->setup_headers, "Content-Type: application/json");
                if (n == NULL)
                    goto nomem;
                p->setup_headers = n;
            }
        }
        n = curl_slist_append(p->setup_headers, "Expect:");
        if (n == NULL)
            goto nomem;
        p->setup_headers = n;
    }

    p->max_requests = integer(burst, "max_requests");
    p->expect_limit = integer(burst, "expect_limit");
    p->tolerance = integer(burst, "tolerance");
    p->stop_after_429 = integer(burst, "stop_after_429");
    p->observe_refill_s = num(burst, "observe_refill_s");
    p->burst_rate = json_is_number(json_object_get(burst, "rate")) ? num(burst, "rate") : 0;
    p->agents = (int)integer(real, "agents");
    p->req_min = integer(real, "requests_min");
    p->req_max = integer(real, "requests_max");
    p->window_s = num(real, "window_s");
    p->windows = (int)integer(real, "windows");
    p->concurrent = json_is_true(json_object_get(real, "concurrent_with_burst"));
    v = json_object_get(real, "seed");
    p->seed = json_is_integer(v) ? (uint64_t)json_integer_value(v) : fnv1a(job->id) & MAX_SEED;
    p->has_wait = json_is_number(json_object_get(real, "wait_s"));
    p->wait_s = p->has_wait ? num(real, "wait_s") : 0;
    p->has_exp_refill = json_is_number(json_object_get(exp, "refill_per_s"));
    p->exp_refill = p->has_exp_refill ? num(exp, "refill_per_s") : 0;
    p->refill_tol = json_is_number(json_object_get(exp, "refill_tolerance"))
                        ? num(exp, "refill_tolerance")
                        : 0.15;
    p->exp_retry_after = json_is_true(json_object_get(exp, "retry_after"));
    if (p->max_requests < 1 || p->expect_limit < 1 || p->stop_after_429 < 1 || p->agents < 0 ||
        p->req_min > p->req_max || p->window_s < 1 || p->windows < 1)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, NULL, "the spec was not validated");
    return LT_OK;
nomem:
    return lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory preparing the run");
}

/* ---- run state ------------------------------------------------------------------------------ */

/* What an agent's request was for. */
enum purpose { P_NONE, P_SETUP, P_BURST, P_RA_CHECK, P_PROBE, P_REALISTIC };

/* How a request ended. */
enum verdict_class { C_ACCEPTED, C_LIMITED, C_ERROR };

/* The burst agent's progress through its phases. */
enum burst_state { B_SETUP, B_BURST, B_RA_WAIT, B_REFILL, B_DONE };

/* The realistic agents' phase. */
enum real_state { R_PENDING, R_WAIT, R_RUNNING, R_DONE, R_SKIPPED };

/* Counts of one class of requests. */
struct tally {
    int64_t requests, accepted, limited, errors;
    int64_t err_class[HE_ERR_N];
    int64_t forbidden; /* connect errors: the allowlist refused the address */
    int64_t status[STATUS_MAX];
};

/* A rate-limit header as answered: lower-cased name, value (cut at 255 bytes). */
struct captured {
    char name[CAPTURE_NAME];
    char value[CAPTURE_VALUE];
};

struct headers_seen {
    int n;
    struct captured h[CAPTURE_MAX];
};

struct rl_run;

struct agent {
    struct rl_run *run; /* borrowed */
    int index;          /* 0 = the burst agent */
    CURL *easy;
    struct curl_slist *headers; /* owned; NULL = the plan's base headers (no setup) */
    int busy;
    enum purpose purpose;
    int name_allowed; /* of the URL of the request in flight */
    int refused;      /* the allowlist refused this request's connection */
    int64_t sent_ns;
    int64_t due_ns;
    uint64_t body_seq;
    struct headers_seen seen; /* rate-limit headers of the answer in flight */
    char *body;               /* setup answer (owned), capped at SETUP_BODY_MAX */
    size_t body_len;
    int body_over;
    /* realistic schedule: the current window's instants (absolute, ascending), owned */
    int64_t *due;
    size_t n_due, next_due;
    int window; /* index of the window `due` holds; -1 before the first */
    struct tally t;
    int64_t max_lag_ns;
};

struct rl_run {
    const struct runner_job *job;
    const struct plan *p;
    CURLM *multi;
    struct agent *agents; /* 1 + p->agents */
    int n_agents;
    int64_t t0; /* run start */
    /* errors that end the run */
    int fatal;
    struct lt_error error;
    const char *error_code;

    /* setup */
    int setup_next, setup_in_flight, setup_done;
    int identities;
    int64_t setup_end_ns;

    /* burst agent */
    enum burst_state bstate;
    struct tally burst;
    struct hdr *burst_latency;
    int64_t burst_start_ns, burst_end_ns;
    int64_t burst_sent;
    int64_t mid_first_ns; /* midpoint of the first burst request */
    int have_429;
    int64_t accepted_before_429;
    int64_t first_429_ns; /* answer of the first 429 */
    int64_t mid_429_ns;   /* midpoint of the first 429's request */
    int64_t consecutive_429;
    int64_t accepted_after_429;
    int64_t no_answer_run; /* burst requests in a row that got no HTTP answer */
    struct headers_seen first_429_headers, last_ok_headers, last_429_headers;
    int have_last_ok;
    double retry_after_first; /* seconds; < 0: none */
    double retry_after_last;
    int64_t last_429_ns;         /* answer of the most recent 429 of the burst agent */
    int64_t ra_with, ra_without; /* 429s (any agent) with / without Retry-After */
    int ra_checked, ra_honoured;
    int ra_skipped_long;
    int64_t ra_due_ns;

    /* refill observation */
    int refill_planned; /* observe for refill_s: 1 asked, 2 auto */
    double refill_s;
    int64_t refill_start_ns, refill_end_ns;
    double pace;
    int64_t probe_k;        /* probes scheduled at the current pace */
    int64_t pace_start_ns;  /* when the current pace began */
    int64_t steady_from_ns; /* 0: not yet steady at this pace */
    int64_t probes, probes_accepted, probes_limited, probes_errors;
    int64_t pace_accepted;            /* accepted probes at the current pace */
    int64_t sec_probes, sec_accepted; /* the current second of the refill phase */
    int64_t sec_mark_ns;
    int64_t win_accepted; /* accepted probes in the measurement window */
    int64_t win_first_ns, win_last_ns;
    int saturated_at_max;
    int refill_known;
    double refill_measured;
    struct tally refill;
    int64_t done_ns; /* the burst agent's last answer */

    /* realistic */
    enum real_state rstate;
    int64_t real_start_ns, real_end_ns, real_wait_until_ns;
    double wait_applied_s;
    const char *wait_basis;
    const char *skip_reason;
    struct tally real;
    struct hdr *real_latency;
    int64_t real_planned;
    int real_agents_done;

    /* the second being reported */
    int64_t sec;
    struct tally iv;
    int64_t iv_by_phase[4]; /* its requests by phase: setup (none), burst, refill, realistic */
    struct hdr *iv_latency;
    double last_fraction;
    int complete;
};

static int64_t tally_errors(const struct tally *t)
{
    return t->errors;
}

static void tally_add(struct tally *t, enum verdict_class c, long status, enum he_err cls,
                      int forbidden)
{
    t->requests++;
    if (status > 0 && status < STATUS_MAX)
        t->status[status]++;
    else if (status <= 0)
        t->status[0]++;
    if (c == C_ACCEPTED) {
        t->accepted++;
    } else if (c == C_LIMITED) {
        t->limited++;
    } else {
        t->errors++;
        t->err_class[cls]++;
        if (forbidden)
            t->forbidden++;
    }
}

/* ---- small parsers -------------------------------------------------------------------------- */

/* RFC 6901 lookup. Returns a borrowed value of doc, or NULL. */
static json_t *pointer_get(json_t *doc, const char *ptr)
{
    json_t *cur = doc;
    const char *p = ptr;
    char tok[MAX_POINTER + 1];

    if (*p == '\0')
        return doc;
    if (*p != '/')
        return NULL;
    while (*p == '/') {
        size_t n = 0;

        p++;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p != '0' && *p != '1')
                    return NULL;
                c = *p++ == '0' ? '~' : '/';
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            unsigned long idx;
            if (n == 0 || (n > 1 && tok[0] == '0') || tok[0] < '0' || tok[0] > '9')
                return NULL;
            idx = strtoul(tok, &end, 10);
            if (*end != '\0')
                return NULL;
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (cur == NULL)
            return NULL;
    }
    return cur;
}

static const char *seen_get(const struct headers_seen *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->h[i].name, name) == 0)
            return s->h[i].value;
    }
    return NULL;
}

/* Retry-After: delta-seconds (a decimal is accepted) or an HTTP-date. Returns seconds from now,
 * or -1 when absent or unreadable. */
static double parse_retry_after(const char *v)
{
    char *end = NULL;
    double s;
    struct tm tm;

    if (v == NULL)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    s = strtod(v, &end);
    if (end != v && isfinite(s) && s >= 0) {
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end == '\0')
            return s;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end != NULL) {
        double d = (double)timegm(&tm) - (double)lt_now_ms() / 1000.0;
        return d > 0 ? d : 0;
    }
    return -1;
}

/* The first number in s after key (key NULL: at the start), or -1. */
static double number_after(const char *s, const char *key)
{
    const char *p = s;
    char *end = NULL;
    double x;

    if (s == NULL)
        return -1;
    if (key != NULL) {
        p = strcasestr(s, key);
        if (p == NULL)
            return -1;
        p += strlen(key);
    }
    while (*p == ' ' || *p == '\t' || *p == '"')
        p++;
    x = strtod(p, &end);
    return end != p && isfinite(x) && x >= 0 ? x : -1;
}

/* The limit the limiter advertises in its headers, or -1. */
static double advertised_limit(const struct headers_seen *s)
{
    static const char *const plain[] = {"x-ratelimit-limit", "ratelimit-limit",
                                        "x-rate-limit-limit", NULL};
    double x;

    for (int i = 0; plain[i]; i++) {
        if ((x = number_after(seen_get(s, plain[i]), NULL)) >= 0)
            return x;
    }
    if ((x = number_after(seen_get(s, "ratelimit"), "limit=")) >= 0)
        return x;
    return number_after(seen_get(s, "ratelimit-policy"), NULL);
}

/* Seconds until the limiter says its quota is back ("reset"), or -1. A value that looks like a
 * Unix time (GitHub's X-RateLimit-Reset) is turned into seconds from now. */
static double reset_hint(const struct headers_seen *s)
{
    static const char *const plain[] = {"ratelimit-reset", "x-ratelimit-reset",
                                        "x-rate-limit-reset", NULL};
    double x = -1;

    for (int i = 0; plain[i] && x < 0; i++)
        x = number_after(seen_get(s, plain[i]), NULL);
    if (x < 0)
        x = number_after(seen_get(s, "ratelimit"), "reset=");
    if (x > 1e9) {
        x -= (double)lt_now_ms() / 1000.0;
        if (x < 0)
            x = 0;
    }
    return x;
}

static json_t *seen_json(const struct headers_seen *s)
{
    json_t *o = json_object();

    for (int i = 0; o && i < s->n; i++)
        json_object_set_new(o, s->h[i].name, json_string(s->h[i].value));
    return o;
}

/* ---- deterministic randomness --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double unit_random(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Fills a's schedule for window w: the count and the instants depend only on (seed, agent,
 * window). Returns 0, or -1 on allocation failure. */
static int schedule_window(struct rl_run *r, struct agent *a, int w)
{
    const struct plan *p = r->p;
    uint64_t st = p->seed ^ ((uint64_t)a->index * 0xD1B54A32D192ED03ULL) ^
                  ((uint64_t)(w + 1) * 0x8CB92BA72F3D8DD7ULL);
    int64_t span = (int64_t)(p->window_s * 1e9);
    int64_t base = r->real_start_ns + (int64_t)w * span;
    size_t n =
        (size_t)(p->req_min + (int64_t)(splitmix64(&st) % (uint64_t)(p->req_max - p->req_min + 1)));

    if (n > 0 && a->due == NULL) {
        a->due = malloc((size_t)p->req_max * sizeof(int64_t));
        if (a->due == NULL)
            return -1;
    }
    for (size_t i = 0; i < n; i++)
        a->due[i] = base + (int64_t)(unit_random(&st) * (double)span);
    if (n > 1)
        qsort(a->due, n, sizeof(int64_t), cmp_i64);
    a->n_due = n;
    a->next_due = 0;
    a->window = w;
    r->real_planned += (int64_t)n;
    return 0;
}

/* The realistic agent's next due instant, moving to its next window when the current one is
 * used up; INT64_MAX when it has sent everything. */
static int64_t realistic_next_due(struct rl_run *r, struct agent *a)
{
    while (a->next_due >= a->n_due) {
        if (a->window + 1 >= r->p->windows)
            return INT64_MAX;
        if (schedule_window(r, a, a->window + 1) != 0) {
            r->fatal = 1;
            lt_error_set(&r->error, LT_ERR_NOMEM, NULL, "out of memory scheduling requests");
            return INT64_MAX;
        }
    }
    return a->due[a->next_due];
}

/* ---- libcurl callbacks ---------------------------------------------------------------------- */

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct agent *a = clientp;

    return net_guard_open_socket(a->run->p->allow, a->name_allowed, purpose, addr, &a->refused);
}

static int interesting_header(const char *lname)
{
    return strcmp(lname, "retry-after") == 0 || strncmp(lname, "x-ratelimit", 11) == 0 ||
           strncmp(lname, "ratelimit", 9) == 0 || strncmp(lname, "x-rate-limit", 12) == 0;
}

/* Keeps the rate-limit headers of the final answer (an interim 1xx or a new status line starts
 * over). */
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct agent *a = userdata;
    size_t len = size * nitems, nlen, vlen;
    const char *colon, *v, *end = buf + len;
    struct captured *c;

    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        a->seen.n = 0;
        return len;
    }
    colon = memchr(buf, ':', len);
    if (colon == NULL || colon == buf)
        return len;
    nlen = (size_t)(colon - buf);
    if (nlen >= CAPTURE_NAME || a->seen.n >= CAPTURE_MAX)
        return len;
    c = &a->seen.h[a->seen.n];
    for (size_t i = 0; i < nlen; i++)
        c->name[i] = (char)((buf[i] >= 'A' && buf[i] <= 'Z') ? buf[i] + 32 : buf[i]);
    c->name[nlen] = '\0';
    if (!interesting_header(c->name))
        return len;
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    vlen = (size_t)(end - v);
    if (vlen >= CAPTURE_VALUE)
        vlen = CAPTURE_VALUE - 1;
    for (size_t i = 0; i < vlen; i++) /* keep the result valid UTF-8 and printable */
        c->value[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    c->value[vlen] = '\0';
    for (int i = 0; i < a->seen.n; i++) {
        if (strcmp(a->seen.h[i].name, c->name) == 0) { /* repeated: the first one counts */
            return len;
        }
    }
    a->seen.n++;
    return len;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct agent *a = userdata;
    size_t len = size * nmemb;

    if (a->purpose != P_SETUP)
        return len;
    if (a->body_over || a->body_len + len > SETUP_BODY_MAX) {
        a->body_over = 1;
        return len;
    }
    if (a->body == NULL) {
        a->body = malloc(SETUP_BODY_MAX + 1);
        if (a->body == NULL) {
            a->body_over = 1;
            return len;
        }
    }
    memcpy(a->body + a->body_len, ptr, len);
    a->body_len += len;
    a->body[a->body_len] = '\0';
    return len;
}

static int agent_init(struct rl_run *r, struct agent *a, int index)
{
    CURL *c = curl_easy_init();

    a->run = r;
    a->index = index;
    a->window = -1;
    if (c == NULL)
        return -1;
    a->easy = c;
    curl_easy_setopt(c, CURLOPT_PRIVATE, (void *)a);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)a);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)a);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An explicit empty proxy: the *_proxy variables must not send traffic elsewhere. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    return 0;
}

/* Sets the per-request options (they change between setup and target requests). */
static void agent_request(struct agent *a, const char *url, const char *method,
                          struct curl_slist *headers, const char *body, size_t body_len,
                          int has_body)
{
    CURL *c = a->easy;

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L); /* back to a plain GET, then adjust */
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (has_body || strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(has_body ? body_len : 0));
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, has_body ? body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
}

static int agent_send(struct rl_run *r, struct agent *a, enum purpose what, int64_t due,
                      int64_t now)
{
    const struct plan *p = r->p;

    a->purpose = what;
    a->seen.n = 0;
    a->refused = 0;
    a->body_len = 0;
    a->body_over = 0;
    if (what == P_SETUP) {
        a->name_allowed = p->setup_name_allowed;
        agent_request(a, p->setup_url, p->setup_method, p->setup_headers, p->setup_body,
                      p->setup_body_len, p->setup_body != NULL);
    } else {
        size_t b = p->n_bodies > 0 ? (size_t)(a->body_seq++ % p->n_bodies) : 0;
        a->name_allowed = p->target_name_allowed;
        agent_request(a, p->url, p->method, a->headers ? a->headers : p->base_headers,
                      p->n_bodies ? p->bodies[b] : NULL, p->n_bodies ? p->body_lens[b] : 0,
                      p->n_bodies > 0);
    }
    a->sent_ns = now;
    a->due_ns = due;
    if (curl_multi_add_handle(r->multi, a->easy) != CURLM_OK) {
        r->fatal = 1;
        lt_error_set(&r->error, LT_ERR_INTERNAL, NULL, "libcurl refused a request");
        return -1;
    }
    a->busy = 1;
    return 0;
}

/* ---- phase changes -------------------------------------------------------------------------- */

static double capacity_basis(const struct rl_run *r)
{
    return r->have_429 ? (double)r->accepted_before_429 : (double)r->p->expect_limit;
}

/* The refill rate the run may use, and where it comes from; 0 when none is known. */
static double known_refill(const struct rl_run *r, const char **source)
{
    if (r->refill_known) {
        *source = r->refill_planned == 2 ? "auto" : "observed";
        return r->refill_measured;
    }
    if (r->p->has_exp_refill) {
        *source = "expected";
        return r->p->exp_refill;
    }
    *source = NULL;
    return 0;
}

static double capacity_estimate(const struct rl_run *r, int *known)
{
    const char *src;
    double rate = known_refill(r, &src);
    double est;

    *known = 0;
    if (!r->have_429 || src == NULL)
        return 0;
    *known = 1;
    est = (double)r->accepted_before_429 - rate * (double)(r->mid_429_ns - r->mid_first_ns) / 1e9;
    return est > 0 ? est : 0;
}

static void start_realistic(struct rl_run *r, int64_t now)
{
    r->rstate = R_RUNNING;
    r->real_start_ns = now;
    for (int i = 1; i < r->n_agents; i++) {
        if (schedule_window(r, &r->agents[i], 0) != 0) {
            r->fatal = 1;
            lt_error_set(&r->error, LT_ERR_NOMEM, NULL, "out of memory scheduling requests");
            return;
        }
    }
}

/* The burst agent is done: decide when the realistic agents go. */
static void burst_agent_done(struct rl_run *r, int64_t now)
{
    const struct plan *p = r->p;
    const char *src = NULL;
    double rate, wait = 0, hint;

    r->bstate = B_DONE;
    r->done_ns = now;
    if (r->rstate != R_PENDING)
        return;
    if (p->agents == 0) {
        r->rstate = R_DONE;
        return;
    }
    if (p->has_setup) { /* own buckets: nothing to wait for */
        r->wait_basis = "own identities";
        start_realistic(r, now);
        return;
    }
    rate = known_refill(r, &src);
    hint = reset_hint(&r->last_429_headers);
    if (p->has_wait) {
        wait = p->wait_s;
        r->wait_basis = "realistic.wait_s";
    } else if (!r->have_429) {
        wait = 0;
        r->wait_basis = "the burst was never limited";
    } else if (src != NULL && rate > 0) {
        int known;
        double cap = capacity_estimate(r, &known);
        if (!known)
            cap = capacity_basis(r);
        wait = cap / rate * 1.1 + 1;
        r->wait_basis = strcmp(src, "expected") == 0 ? "capacity / expect.refill_per_s"
                        : strcmp(src, "auto") == 0   ? "capacity / auto-observed refill"
                                                     : "capacity / observed refill";
    } else if (hint >= 0) {
        wait = hint + 1;
        r->wait_basis = "the limiter's reset header";
    } else {
        r->rstate = R_SKIPPED;
        if (src != NULL && strcmp(src, "expected") == 0)
            r->skip_reason = "expect.refill_per_s is 0: the shared bucket never refills";
        else if (src != NULL)
            r->skip_reason = "the bucket did not refill while observed, so the run cannot tell "
                             "when it is full again";
        else
            r->skip_reason = "no refill rate is known";
        return;
    }
    if (wait > MAX_WAIT_S)
        wait = MAX_WAIT_S;
    r->wait_applied_s = wait;
    r->rstate = R_WAIT;
    r->real_wait_until_ns = now + (int64_t)(wait * 1e9);
}

static void start_refill(struct rl_run *r, int64_t now)
{
    const struct plan *p = r->p;

    r->bstate = B_REFILL;
    r->refill_start_ns = now;
    r->refill_end_ns = now + (int64_t)(r->refill_s * 1e9);
    r->pace = p->has_exp_refill && p->exp_refill > 0 ? 4 * p->exp_refill : PACE_DEFAULT;
    if (r->pace < PACE_MIN)
        r->pace = PACE_MIN;
    if (r->pace > PACE_MAX)
        r->pace = PACE_MAX;
    if (p->burst_rate > 0 && r->pace > p->burst_rate)
        r->pace = p->burst_rate;
    r->pace_start_ns = now;
    r->probe_k = 0;
    r->sec_mark_ns = now + NS_PER_S;
}

/* After the last burst request: Retry-After check, refill observation, or done. */
static void burst_finished(struct rl_run *r, int64_t now)
{
    const struct plan *p = r->p;
    int need_auto;

    r->burst_end_ns = now;
    if (!r->have_429) {
        burst_agent_done(r, now);
        return;
    }
    need_auto = !p->has_setup && p->agents > 0 && !p->concurrent && p->observe_refill_s <= 0 &&
                !p->has_exp_refill && !p->has_wait && reset_hint(&r->last_429_headers) < 0;
    if (p->observe_refill_s > 0) {
        r->refill_planned = 1;
        r->refill_s = p->observe_refill_s;
    } else if (need_auto) {
        r->refill_planned = 2;
        r->refill_s = AUTO_REFILL_S;
    }
    if (r->retry_after_last >= 0 && (p->exp_retry_after || r->refill_planned)) {
        if (r->retry_after_last <= RA_CHECK_MAX_S) {
            r->bstate = B_RA_WAIT;
            r->ra_due_ns = r->last_429_ns + (int64_t)(r->retry_after_last * 1e9) + RA_MARGIN_NS;
            return;
        }
        r->ra_skipped_long = 1;
    }
    if (r->refill_planned)
        start_refill(r, now);
    else
        burst_agent_done(r, now);
}

/* The refill rate from the measurement window (see the file comment). */
static void refill_conclude(struct rl_run *r, int64_t now)
{
    int64_t from = r->steady_from_ns;

    if (from == 0) {
        /* No 429 at the final pace: every answered probe went through, so the bucket refills
         * at least as fast as the probes came (a lower bound). Without any accepted probe
         * (errors only) nothing is known. */
        if (r->pace_accepted > 0) {
            r->saturated_at_max = 1;
            r->refill_known = 1;
            r->refill_measured = r->pace;
        }
        return;
    }
    if (r->win_accepted >= 3 && r->win_last_ns > r->win_first_ns) {
        r->refill_measured =
            (double)(r->win_accepted - 1) / ((double)(r->win_last_ns - r->win_first_ns) / 1e9);
        r->refill_known = 1;
    } else if (now > from) {
        r->refill_measured = (double)r->win_accepted / ((double)(now - from) / 1e9);
        r->refill_known = 1;
    }
}

/* ---- completions ---------------------------------------------------------------------------- */

static void fail_setup(struct rl_run *r, int agent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_setup(struct rl_run *r, int agent, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    if (r->fatal)
        return;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    r->fatal = 1;
    r->error_code = "setup_failed";
    lt_error_set(&r->error, LT_ERR_IO, "/setup", "setup call for agent %d: %s", agent, what);
}

static void setup_done(struct rl_run *r, struct agent *a, CURLcode rc, long status)
{
    const struct plan *p = r->p;
    json_t *doc = NULL, *v;
    char num_buf[64], *line = NULL;
    const char *value;
    struct curl_slist *n;

    r->setup_in_flight--;
    r->setup_done++;
    if (rc != CURLE_OK) {
        if (a->refused) {
            r->fatal = 1;
            lt_error_set(&r->error, LT_ERR_FORBIDDEN_TARGET, "/setup/url",
                         "setup URL unreachable: its address is not on this daemon's target "
                         "allowlist");
            goto out;
        }
        fail_setup(r, a->index, "%s", curl_easy_strerror(rc));
        goto out;
    }
    if (status < 200 || status > 299) {
        fail_setup(r, a->index, "answered %ld, expected 2xx", status);
        goto out;
    }
    if (a->body_over) {
        fail_setup(r, a->index, "the answer is larger than 64 KiB");
        goto out;
    }
    doc = a->body ? json_loadb(a->body, a->body_len, JSON_DECODE_ANY, NULL) : NULL;
    if (doc == NULL) {
        fail_setup(r, a->index, "the answer is not JSON");
        goto out;
    }
    v = pointer_get(doc, p->extract_pointer);
    if (json_is_string(v)) {
        value = json_string_value(v);
        if (strlen(value) != json_string_length(v) || strpbrk(value, "\r\n") != NULL ||
            json_string_length(v) == 0 || json_string_length(v) > IDENTITY_MAX) {
            fail_setup(r, a->index, "the value at %.100s is empty, too long or holds CR, LF or NUL",
                       p->extract_pointer);
            goto out;
        }
    } else if (json_is_integer(v)) {
        snprintf(num_buf, sizeof(num_buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        value = num_buf;
    } else {
        fail_setup(r, a->index, "the answer has no string or integer at %.100s",
                   p->extract_pointer[0] ? p->extract_pointer : "\"\" (the whole answer)");
        goto out;
    }
    for (n = p->base_headers; n; n = n->next) {
        struct curl_slist *m = curl_slist_append(a->headers, n->data);
        if (m == NULL)
            goto nomem;
        a->headers = m;
    }
    line = header_line(p->extract_header, p->extract_prefix, value);
    n = line ? curl_slist_append(a->headers, line) : NULL;
    if (n == NULL)
        goto nomem;
    a->headers = n;
    r->identities++;
    goto out;
nomem:
    r->fatal = 1;
    lt_error_set(&r->error, LT_ERR_NOMEM, NULL, "out of memory");
out:
    if (line != NULL) { /* it held the identity: do not leave it in freed memory */
        memset(line, 0, strlen(line));
        free(line);
    }
    json_decref(doc);
    if (a->body != NULL) { /* 64 KiB per agent, and it held the identity too */
        memset(a->body, 0, a->body_len);
        free(a->body);
        a->body = NULL;
        a->body_len = 0;
    }
}

static void burst_done(struct rl_run *r, struct agent *a, enum verdict_class c, int64_t now)
{
    const struct plan *p = r->p;
    int64_t mid = a->sent_ns + (now - a->sent_ns) / 2;

    hdr_record(r->burst_latency, now - a->sent_ns);
    if (r->burst.requests == 1)
        r->mid_first_ns = mid;
    if (c == C_LIMITED) {
        double ra = parse_retry_after(seen_get(&a->seen, "retry-after"));
        r->consecutive_429++;
        r->last_429_headers = a->seen;
        r->retry_after_last = ra;
        r->last_429_ns = now;
        if (!r->have_429) {
            r->have_429 = 1;
            r->first_429_ns = now;
            r->mid_429_ns = mid;
            r->first_429_headers = a->seen;
            r->retry_after_first = ra;
        }
    } else {
        r->consecutive_429 = 0;
        if (c == C_ACCEPTED) {
            if (r->have_429) {
                r->accepted_after_429++;
            } else {
                r->accepted_before_429++;
                r->last_ok_headers = a->seen;
                r->have_last_ok = 1;
            }
        }
    }
    if (r->consecutive_429 >= p->stop_after_429 || r->burst_sent >= p->max_requests)
        burst_finished(r, now);
}

static void probe_done(struct rl_run *r, struct agent *a, enum verdict_class c, int64_t now)
{
    int64_t mid = a->sent_ns + (now - a->sent_ns) / 2;

    r->probes++;
    r->sec_probes++;
    if (c == C_ACCEPTED) {
        r->probes_accepted++;
        r->pace_accepted++;
        r->sec_accepted++;
        if (r->steady_from_ns != 0 && mid >= r->steady_from_ns) {
            if (r->win_accepted == 0)
                r->win_first_ns = mid;
            r->win_last_ns = mid;
            r->win_accepted++;
        }
    } else if (c == C_LIMITED) {
        r->probes_limited++;
        /* Empty bucket at the final pace: the measurement starts here (and at least 1 s in). */
        if (r->steady_from_ns == 0) {
            int64_t earliest = r->refill_start_ns + NS_PER_S;
            r->steady_from_ns = mid > earliest ? mid : earliest;
        }
    } else {
        r->probes_errors++;
    }
}

static void realistic_done(struct rl_run *r, struct agent *a, int64_t now)
{
    hdr_record(r->real_latency, now - a->sent_ns);
}

static void on_complete(struct rl_run *r, struct agent *a, CURLcode rc, int64_t now)
{
    const struct plan *p = r->p;
    long status = 0;
    enum verdict_class c;
    enum he_err cls = HE_ERR_OTHER;
    enum purpose what = a->purpose;

    curl_multi_remove_handle(r->multi, a->easy);
    a->busy = 0;
    a->purpose = P_NONE;
    curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
    if (what == P_SETUP) {
        setup_done(r, a, rc, status);
        return;
    }
    if (rc != CURLE_OK || status <= 0) {
        c = C_ERROR;
        cls = a->refused ? HE_ERR_CONNECT : he_classify((int)rc);
        if (rc == CURLE_OK)
            cls = HE_ERR_OTHER;
    } else if (status == 429) {
        c = C_LIMITED;
        if (seen_get(&a->seen, "retry-after") != NULL)
            r->ra_with++;
        else
            r->ra_without++;
    } else if (status < STATUS_MAX && p->expect[status]) {
        c = C_ACCEPTED;
    } else {
        c = C_ERROR;
        cls = HE_ERR_STATUS;
    }
    if (rc != CURLE_OK)
        status = 0; /* a transport failure counts under status "0" whatever was half-read */
    tally_add(&r->iv, c, status, cls, a->refused);
    hdr_record(r->iv_latency, now - a->sent_ns);
    r->iv_by_phase[what == P_BURST ? 1 : what == P_REALISTIC ? 3 : 2]++;
    switch (what) {
    case P_BURST:
        tally_add(&r->burst, c, status, cls, a->refused);
        r->no_answer_run = status == 0 ? r->no_answer_run + 1 : 0;
        if (r->no_answer_run >= UNREACHABLE_AFTER && r->burst.requests == r->no_answer_run &&
            !r->fatal) {
            r->fatal = 1;
            if (r->burst.forbidden == r->burst.requests) {
                lt_error_set(&r->error, LT_ERR_FORBIDDEN_TARGET, "/target/url",
                             "target unreachable: %s resolves to an address that is not on this "
                             "daemon's target allowlist",
                             p->host);
            } else {
                r->error_code = "target_unreachable";
                lt_error_set(&r->error, LT_ERR_IO, NULL, "target unreachable: %s (%s)",
                             curl_easy_strerror(rc), p->host);
            }
            return;
        }
        burst_done(r, a, c, now);
        break;
    case P_RA_CHECK:
        tally_add(&r->refill, c, status, cls, a->refused);
        r->ra_checked = 1;
        r->ra_honoured = c == C_ACCEPTED;
        if (r->refill_planned)
            start_refill(r, now);
        else
            burst_agent_done(r, now);
        break;
    case P_PROBE:
        tally_add(&r->refill, c, status, cls, a->refused);
        probe_done(r, a, c, now);
        break;
    case P_REALISTIC:
        tally_add(&a->t, c, status, cls, a->refused);
        tally_add(&r->real, c, status, cls, a->refused);
        realistic_done(r, a, now);
        break;
    default:
        break;
    }
}

/* ---- the loop: starting what is due --------------------------------------------------------- */

/* Starts whatever is due at now; returns the earliest future instant something will be due
 * (INT64_MAX: nothing scheduled, only answers awaited). */
static int64_t start_due(struct rl_run *r, int64_t now)
{
    const struct plan *p = r->p;
    struct agent *b = &r->agents[0];
    int64_t next = INT64_MAX;

    /* setup */
    if (r->bstate == B_SETUP) {
        while (!r->fatal && r->setup_next < r->n_agents && r->setup_in_flight < SETUP_PARALLEL) {
            if (agent_send(r, &r->agents[r->setup_next], P_SETUP, now, now) != 0)
                return INT64_MAX;
            r->setup_next++;
            r->setup_in_flight++;
        }
        if (r->setup_done < r->n_agents || r->fatal)
            return INT64_MAX;
        r->setup_end_ns = now;
        r->bstate = B_BURST;
        r->burst_start_ns = now;
        if (p->concurrent && p->agents > 0)
            start_realistic(r, now);
    }
    /* the burst agent */
    if (!b->busy && r->bstate == B_BURST) {
        int64_t due = p->burst_rate > 0 ? r->burst_start_ns +
                                              (int64_t)((double)r->burst_sent / p->burst_rate * 1e9)
                                        : now;
        if (due <= now) {
            if (agent_send(r, b, P_BURST, due, now) != 0)
                return INT64_MAX;
            r->burst_sent++;
        } else if (due < next) {
            next = due;
        }
    }
    if (!b->busy && r->bstate == B_RA_WAIT) {
        if (r->ra_due_ns <= now) {
            if (agent_send(r, b, P_RA_CHECK, r->ra_due_ns, now) != 0)
                return INT64_MAX;
        } else if (r->ra_due_ns < next) {
            next = r->ra_due_ns;
        }
    }
    if (r->bstate == B_REFILL) {
        /* Once per second of the phase: a second whose probes all went through means the pace
         * is below the refill rate, so it doubles and the measurement starts over. */
        if (now >= r->sec_mark_ns) {
            if (r->sec_probes >= 3 && r->sec_accepted == r->sec_probes && r->pace < PACE_MAX &&
                (p->burst_rate <= 0 || r->pace < p->burst_rate)) {
                r->pace *= 2;
                if (r->pace > PACE_MAX)
                    r->pace = PACE_MAX;
                if (p->burst_rate > 0 && r->pace > p->burst_rate)
                    r->pace = p->burst_rate;
                r->pace_start_ns = now;
                r->probe_k = 0;
                r->steady_from_ns = 0;
                r->win_accepted = 0;
                r->pace_accepted = 0;
            }
            r->sec_probes = r->sec_accepted = 0;
            while (r->sec_mark_ns <= now)
                r->sec_mark_ns += NS_PER_S;
        }
        if (now >= r->refill_end_ns && !b->busy) {
            refill_conclude(r, now);
            burst_agent_done(r, now);
        } else if (!b->busy) {
            int64_t due = r->pace_start_ns + (int64_t)((double)r->probe_k / r->pace * 1e9);
            if (due <= now) {
                /* Late (a slow answer): skip the missed slots rather than catch up in a rush. */
                while (due <= now - (int64_t)(1e9 / r->pace)) {
                    r->probe_k++;
                    due = r->pace_start_ns + (int64_t)((double)r->probe_k / r->pace * 1e9);
                }
                if (agent_send(r, b, P_PROBE, due, now) != 0)
                    return INT64_MAX;
                r->probe_k++;
            } else {
                next = due < next ? due : next;
            }
            if (r->refill_end_ns < next)
                next = r->refill_end_ns;
        }
        if (r->sec_mark_ns < next)
            next = r->sec_mark_ns;
    }
    /* the realistic agents */
    if (r->rstate == R_WAIT) {
        if (now >= r->real_wait_until_ns)
            start_realistic(r, now);
        else if (r->real_wait_until_ns < next)
            next = r->real_wait_until_ns;
    }
    if (r->rstate == R_RUNNING) {
        int all_done = 1;
        for (int i = 1; i < r->n_agents && !r->fatal; i++) {
            struct agent *a = &r->agents[i];
            int64_t due;
            if (a->busy) {
                all_done = 0;
                continue;
            }
            due = realistic_next_due(r, a);
            if (due == INT64_MAX)
                continue;
            all_done = 0;
            if (due <= now) {
                if (now - due > a->max_lag_ns)
                    a->max_lag_ns = now - due;
                a->next_due++;
                if (agent_send(r, a, P_REALISTIC, due, now) != 0)
                    return INT64_MAX;
            } else if (due < next) {
                next = due;
            }
        }
        if (all_done) {
            r->rstate = R_DONE;
            r->real_end_ns = now;
        }
    }
    return next;
}

static int run_finished(const struct rl_run *r)
{
    return r->bstate == B_DONE && (r->rstate == R_DONE || r->rstate == R_SKIPPED);
}

/* ---- documents ------------------------------------------------------------------------------ */

/* x rounded to a multiple of unit (0.1, 0.01, 0.001), as the nearest double to the decimal. */
static double round_to(double x, double unit)
{
    double scale = round(1 / unit);

    return round(x * scale) / scale;
}

static double ms3(int64_t ns)
{
    return round((double)ns / 1e3) / 1e3;
}

static json_t *num_or_null(int present, double x)
{
    return present ? json_real(x) : json_null();
}

static json_t *status_json(const struct tally *t)
{
    json_t *o = json_object();
    char key[8];

    for (int c = 1; o && c < STATUS_MAX; c++) { /* "0" (no answer) is in the errors */
        if (t->status[c] == 0)
            continue;
        snprintf(key, sizeof(key), "%d", c);
        json_object_set_new(o, key, json_integer(t->status[c]));
    }
    return o;
}

static json_t *errors_json(const struct tally *t)
{
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "connect", (json_int_t)t->err_class[HE_ERR_CONNECT], "timeout",
        (json_int_t)t->err_class[HE_ERR_TIMEOUT], "unexpected_status",
        (json_int_t)t->err_class[HE_ERR_STATUS], "other", (json_int_t)t->err_class[HE_ERR_OTHER],
        "forbidden_by_allowlist", (json_int_t)t->forbidden);
}

static json_t *latency_json(const struct hdr *h)
{
    int n = hdr_count(h) > 0;

    return json_pack("{s:o, s:o, s:o}", "p50", num_or_null(n, ms3(hdr_percentile(h, 50))), "p99",
                     num_or_null(n, ms3(hdr_percentile(h, 99))), "max",
                     num_or_null(n, ms3(hdr_max(h))));
}

static void add_note(json_t *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_note(json_t *notes, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(notes, json_string(buf));
}

static const char *const phase_names[4] = {"setup", "burst", "refill", "realistic"};

static const char *phase_name(const struct rl_run *r)
{
    if (r->bstate == B_SETUP)
        return "setup";
    if (r->bstate == B_BURST)
        return "burst";
    if (r->bstate == B_RA_WAIT || r->bstate == B_REFILL || r->rstate == R_WAIT)
        return "refill";
    return "realistic";
}

static json_t *refill_json(const struct rl_run *r)
{
    if (!r->refill_planned)
        return json_null();
    return json_pack(
        "{s:s, s:f, s:I, s:I, s:I, s:I, s:f, s:I, s:o, s:b}", "mode",
        r->refill_planned == 2 ? "auto" : "observe_refill_s", "duration_s", r->refill_s, "probes",
        (json_int_t)r->probes, "accepted", (json_int_t)r->probes_accepted, "rate_limited",
        (json_int_t)r->probes_limited, "errors", (json_int_t)r->probes_errors, "pace_per_s",
        round_to(r->pace, 0.01), "window_accepted", (json_int_t)r->win_accepted, "window_s",
        num_or_null(r->steady_from_ns != 0 && r->refill_end_ns > r->steady_from_ns,
                    round_to((double)(r->refill_end_ns - r->steady_from_ns) / 1e9, 0.001)),
        "lower_bound", r->saturated_at_max);
}

static json_t *burst_json(const struct rl_run *r, json_t *notes)
{
    const struct plan *p = r->p;
    const char *src = NULL;
    double rate = known_refill(r, &src), adv;
    int est_known;
    double est = capacity_estimate(r, &est_known);
    json_t *b;

    adv = advertised_limit(r->have_429 ? &r->first_429_headers : &r->last_ok_headers);
    if (adv < 0 && r->have_last_ok)
        adv = advertised_limit(&r->last_ok_headers);
    b = json_pack(
        "{s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "accepted_before_first_429",
        r->have_429 ? json_integer(r->accepted_before_429) : json_null(), "requests",
        (json_int_t)r->burst.requests, "accepted", (json_int_t)r->burst.accepted,
        "accepted_after_first_429", (json_int_t)r->accepted_after_429, "first_429_ms",
        num_or_null(r->have_429, ms3(r->first_429_ns - r->burst_start_ns)), "retry_after_s",
        num_or_null(r->have_429 && r->retry_after_first >= 0, r->retry_after_first),
        "limit_headers", r->have_429 ? seen_json(&r->first_429_headers) : json_object(),
        "limit_headers_last_ok", r->have_last_ok ? seen_json(&r->last_ok_headers) : json_object(),
        "refill_per_s", num_or_null(r->refill_known, round_to(r->refill_measured, 0.001)),
        "refill_source", src ? json_string(src) : json_null(), "capacity_estimate",
        num_or_null(est_known, round_to(est, 0.01)), "retry_after_honoured",
        r->ra_checked ? json_boolean(r->ra_honoured) : json_null());
    if (b == NULL)
        return NULL;
    json_object_set_new(b, "errors", json_integer(tally_errors(&r->burst)));
    json_object_set_new(b, "error_details", errors_json(&r->burst));
    json_object_set_new(b, "status_codes", status_json(&r->burst));
    json_object_set_new(b, "latency_ms", latency_json(r->burst_latency));
    json_object_set_new(b, "limited", json_boolean(r->have_429));
    json_object_set_new(b, "advertised_limit", adv >= 0 ? json_real(adv) : json_null());
    json_object_set_new(b, "refill_used_per_s", num_or_null(src != NULL, round_to(rate, 0.001)));
    json_object_set_new(b, "duration_ms",
                        json_real(r->burst_start_ns == 0 ? 0
                                  : r->burst_end_ns > 0  ? ms3(r->burst_end_ns - r->burst_start_ns)
                                                         : 0));
    json_object_set_new(b, "rate_per_s", num_or_null(p->burst_rate > 0, p->burst_rate));
    json_object_set_new(b, "retry_after_missing", json_integer(r->ra_without));
    json_object_set_new(b, "refill", refill_json(r));
    json_object_set_new(b, "refill_status_codes", status_json(&r->refill));
    if (r->bstate == B_DONE && r->burst.requests > 0 && !r->have_429)
        add_note(notes, "the limiter never limited: %lld of %lld burst requests accepted, no 429",
                 (long long)r->burst.accepted, (long long)r->burst.requests);
    if (est_known && src != NULL)
        add_note(notes,
                 "capacity_estimate = %lld accepted - %.3g/s (%s refill) x %.3f s the burst took "
                 "to meet its first 429",
                 (long long)r->accepted_before_429, rate, src,
                 (double)(r->mid_429_ns - r->mid_first_ns) / 1e9);
    if (r->ra_skipped_long)
        add_note(notes, "Retry-After of %.0f s is over %d s: not waited for", r->retry_after_last,
                 RA_CHECK_MAX_S);
    if (r->saturated_at_max)
        add_note(notes,
                 "every probe at %.0f/s was accepted: the refill rate is at least that "
                 "(refill_per_s is a lower bound)",
                 r->pace);
    if (r->refill_known && r->refill_measured == 0)
        add_note(notes,
                 "no probe was accepted in %.1f s of steady state: the bucket refills "
                 "slower than that (refill_per_s 0)",
                 (double)(r->refill_end_ns - r->steady_from_ns) / 1e9);
    if (r->refill_planned == 2)
        add_note(notes, "without setup the realistic agents share the burst's bucket and no "
                        "refill rate was given: the run observed the refill for 10 s to know "
                        "when the bucket is full again");
    if (adv >= 0 && r->have_429 &&
        fabs(adv - (est_known ? est : (double)r->accepted_before_429)) > (double)p->tolerance)
        add_note(notes, "the limiter advertises a limit of %g but let %lld through", adv,
                 (long long)r->accepted_before_429);
    return b;
}

static json_t *realistic_json(const struct rl_run *r, json_t *notes)
{
    const struct plan *p = r->p;
    int64_t max_lag = 0;
    json_t *o, *per;

    for (int i = 1; i < r->n_agents; i++) {
        if (r->agents[i].max_lag_ns > max_lag)
            max_lag = r->agents[i].max_lag_ns;
    }
    o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:o, s:s, s:b, s:I, s:I, s:o, s:o, s:o}", "agents",
                  p->agents, "requests", (json_int_t)r->real.requests, "succeeded",
                  (json_int_t)r->real.accepted, "rate_limited", (json_int_t)r->real.limited,
                  "errors", (json_int_t)tally_errors(&r->real), "latency_ms",
                  latency_json(r->real_latency), "identities", p->has_setup ? "own" : "shared",
                  "concurrent_with_burst", p->concurrent, "seed", (json_int_t)p->seed, "planned",
                  (json_int_t)r->real_planned, "wait_s",
                  num_or_null(r->rstate != R_PENDING && r->rstate != R_SKIPPED && r->wait_basis,
                              round_to(r->wait_applied_s, 0.001)),
                  "wait_basis", r->wait_basis ? json_string(r->wait_basis) : json_null(), "skipped",
                  r->skip_reason ? json_string(r->skip_reason) : json_null());
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "error_details", errors_json(&r->real));
    json_object_set_new(o, "status_codes", status_json(&r->real));
    json_object_set_new(o, "max_send_lag_ms", json_real(ms3(max_lag)));
    json_object_set_new(o, "windows", json_integer(p->windows));
    json_object_set_new(o, "window_s", json_real(p->window_s));
    if (p->agents <= PER_AGENT_MAX) {
        per = json_array();
        for (int i = 1; per && i < r->n_agents; i++) {
            const struct tally *t = &r->agents[i].t;
            json_array_append_new(per, json_pack("{s:i, s:I, s:I, s:I, s:I}", "agent", i,
                                                 "requests", (json_int_t)t->requests, "succeeded",
                                                 (json_int_t)t->accepted, "rate_limited",
                                                 (json_int_t)t->limited, "errors",
                                                 (json_int_t)t->errors));
        }
        json_object_set_new(o, "per_agent", per);
    }
    if (p->has_setup && r->real.limited > 0)
        add_note(notes, "the realistic agents had their own keys: their 429s mean the limiter is "
                        "too strict for this traffic, or does not limit per key");
    if (!p->has_setup && p->agents > 0)
        add_note(notes, "without setup all agents are one client to the limiter: the realistic "
                        "agents' combined traffic is what was judged");
    if (r->skip_reason)
        add_note(notes,
                 "realistic phase not run: %s; give realistic.wait_s, "
                 "expect.refill_per_s, burst.observe_refill_s or setup",
                 r->skip_reason);
    if (max_lag > 100 * NS_PER_MS)
        add_note(notes,
                 "a realistic request went up to %.0f ms after its instant (its agent was waiting "
                 "for the previous answer)",
                 (double)max_lag / 1e6);
    return o;
}

static double phase_s(int64_t from, int64_t to)
{
    return from > 0 && to >= from ? round_to((double)(to - from) / 1e9, 0.001) : 0;
}

/* Returns new: the result document (partial unless r->complete). */
static json_t *result_json(const struct rl_run *r)
{
    json_t *notes = json_array(), *res;
    json_t *burst = burst_json(r, notes), *real = realistic_json(r, notes);
    int64_t now = lt_mono_ns();

    if (!r->complete)
        add_note(notes, "partial: the run stopped after %.1f s", (double)(now - r->t0) / 1e9);
    res = json_pack(
        "{s:o, s:o, s:i, s:{s:f, s:f, s:f, s:f, s:f}, s:o, s:b}", "burst",
        burst ? burst : json_null(), "realistic", real ? real : json_null(), "identities",
        r->identities, "phases_s", "setup", phase_s(r->t0, r->setup_end_ns), "burst",
        phase_s(r->burst_start_ns, r->burst_end_ns), "refill", phase_s(r->burst_end_ns, r->done_ns),
        "wait",
        r->rstate == R_WAIT ? phase_s(r->done_ns, now) : phase_s(r->done_ns, r->real_start_ns),
        "realistic", phase_s(r->real_start_ns, r->real_end_ns ? r->real_end_ns : now), "notes",
        notes, "complete", r->complete);
    return res;
}

/* ---- verdict -------------------------------------------------------------------------------- */

static const char *plural(int64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* The whole capacity the check uses: the bucket held less than one token when it answered 429,
 * so the capacity lies in (estimate, estimate + 1) — or is the estimate itself when that is
 * whole, as without refill — the smallest whole number not below the estimate. */
static int64_t capacity_whole(double est)
{
    return (int64_t)ceil(est - 1e-6);
}

static json_t *verdict_json(const struct rl_run *r)
{
    const struct plan *p = r->p;
    json_t *checks = json_array(), *c;
    char head[200], real_s[120] = "", refill_s[120] = "", ra_s[120] = "", summary[600];
    int est_known, all = 1, pass;
    double est = capacity_estimate(r, &est_known);
    int64_t lo = p->expect_limit - p->tolerance, hi = p->expect_limit + p->tolerance;
    int64_t errors = tally_errors(&r->burst);
    int64_t observed = est_known ? capacity_whole(est) : r->accepted_before_429;
    char why[160] = "";

    if (checks == NULL)
        return NULL;
    /* burst_limit */
    pass = r->have_429 && errors == 0 && observed >= lo && observed <= hi;
    if (!r->have_429)
        snprintf(head, sizeof(head), "burst never limited: %lld/%lld accepted (expected %lld±%lld)",
                 (long long)r->burst.accepted, (long long)r->burst.requests,
                 (long long)p->expect_limit, (long long)p->tolerance);
    else if (est_known)
        snprintf(head, sizeof(head), "burst limited after %lld, capacity %lld (expected %lld±%lld)",
                 (long long)r->accepted_before_429, (long long)observed, (long long)p->expect_limit,
                 (long long)p->tolerance);
    else
        snprintf(head, sizeof(head), "burst limited after %lld (expected %lld±%lld)",
                 (long long)r->accepted_before_429, (long long)p->expect_limit,
                 (long long)p->tolerance);
    if (errors > 0) {
        size_t n = strlen(head);
        int worst = 0;
        for (int s = 1; s < STATUS_MAX; s++) {
            if (s != 429 && !p->expect[s] && r->burst.status[s] > r->burst.status[worst])
                worst = s;
        }
        if (worst > 0)
            snprintf(head + n, sizeof(head) - n, " with %lld %s (%d)", (long long)errors,
                     plural(errors, "error", "errors"), worst);
        else
            snprintf(head + n, sizeof(head) - n, " with %lld %s", (long long)errors,
                     plural(errors, "error", "errors"));
        snprintf(why, sizeof(why),
                 "%lld burst requests failed (5xx, unexpected status or "
                 "transport)",
                 (long long)errors);
    } else if (!r->have_429) {
        snprintf(why, sizeof(why), "no 429 in %lld requests: the limiter never limited",
                 (long long)r->burst.requests);
    }
    c = json_pack(
        "{s:s, s:s, s:[I, I], s:o, s:b, s:s, s:o, s:o, s:I}", "name", "burst_limit", "op",
        "between", "threshold", (json_int_t)lo, (json_int_t)hi, "observed",
        r->have_429 ? json_integer(observed) : json_null(), "pass", pass, "basis",
        est_known ? "capacity_estimate" : "accepted_before_first_429", "accepted_before_first_429",
        r->have_429 ? json_integer(r->accepted_before_429) : json_null(), "capacity_estimate",
        num_or_null(est_known, round_to(est, 0.01)), "errors", (json_int_t)errors);
    if (c && why[0])
        json_object_set_new(c, "reason", json_string(why));
    json_array_append_new(checks, c);
    all &= pass;

    /* realistic_success */
    if (p->agents > 0) {
        if (r->rstate == R_SKIPPED) {
            pass = 0;
            snprintf(real_s, sizeof(real_s), " · realistic not run (%s)", r->skip_reason);
            c = json_pack("{s:s, s:s, s:n, s:n, s:b, s:s}", "name", "realistic_success", "op",
                          "==", "threshold", "observed", "pass", 0, "reason", r->skip_reason);
        } else {
            pass = r->real.accepted == r->real.requests;
            if (r->real.limited > 0 && tally_errors(&r->real) > 0)
                snprintf(real_s, sizeof(real_s),
                         " · realistic %lld/%lld ok (%lld limited, %lld %s)",
                         (long long)r->real.accepted, (long long)r->real.requests,
                         (long long)r->real.limited, (long long)tally_errors(&r->real),
                         plural(tally_errors(&r->real), "error", "errors"));
            else if (r->real.limited > 0)
                snprintf(real_s, sizeof(real_s),
                         " · realistic %lld/%lld ok (%lld limited: too "
                         "strict)",
                         (long long)r->real.accepted, (long long)r->real.requests,
                         (long long)r->real.limited);
            else if (tally_errors(&r->real) > 0)
                snprintf(real_s, sizeof(real_s), " · realistic %lld/%lld ok (%lld %s)",
                         (long long)r->real.accepted, (long long)r->real.requests,
                         (long long)tally_errors(&r->real),
                         plural(tally_errors(&r->real), "error", "errors"));
            else
                snprintf(real_s, sizeof(real_s), " · realistic %lld/%lld ok",
                         (long long)r->real.accepted, (long long)r->real.requests);
            c = json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:I}", "name", "realistic_success", "op",
                          "==", "threshold", (json_int_t)r->real.requests, "observed",
                          (json_int_t)r->real.accepted, "pass", pass, "rate_limited",
                          (json_int_t)r->real.limited, "errors",
                          (json_int_t)tally_errors(&r->real));
        }
        json_array_append_new(checks, c);
        all &= pass;
    }

    /* refill_per_s: asked for by expect.refill_per_s with an observation to check it against */
    if (p->has_exp_refill && p->observe_refill_s > 0) {
        double tol = p->refill_tol * p->exp_refill;
        pass = r->refill_known && !r->saturated_at_max &&
               fabs(r->refill_measured - p->exp_refill) <= tol + 1e-9;
        if (r->refill_known)
            snprintf(refill_s, sizeof(refill_s), " · refill %s%.3g/s (expected %g±%g%%)",
                     r->saturated_at_max ? "≥" : "", r->refill_measured, p->exp_refill,
                     p->refill_tol * 100);
        else
            snprintf(refill_s, sizeof(refill_s), " · refill not observed (expected %g/s)",
                     p->exp_refill);
        c = json_pack(
            "{s:s, s:s, s:[f, f], s:o, s:b}", "name", "refill_per_s", "op", "between", "threshold",
            round_to(p->exp_refill - tol, 0.001), round_to(p->exp_refill + tol, 0.001), "observed",
            num_or_null(r->refill_known, round_to(r->refill_measured, 0.001)), "pass", pass);
        if (c && !r->refill_known)
            json_object_set_new(c, "reason",
                                json_string(r->have_429 ? "no refill was observed"
                                                        : "no refill was observed: the burst was "
                                                          "never limited, so the bucket was "
                                                          "never empty"));
        else if (c && r->saturated_at_max)
            json_object_set_new(c, "reason",
                                json_string("every probe was accepted: the measured rate is only "
                                            "a lower bound"));
        json_array_append_new(checks, c);
        all &= pass;
    } else if (r->refill_known) {
        snprintf(refill_s, sizeof(refill_s), " · refill %s%.3g/s", r->saturated_at_max ? "≥" : "",
                 r->refill_measured);
    } else if (p->has_exp_refill) {
        snprintf(refill_s, sizeof(refill_s), " · refill not measured (observe_refill_s 0)");
    }

    /* retry_after */
    if (p->exp_retry_after) {
        int present = r->ra_with > 0 && r->ra_without == 0;
        int honoured_ok = !r->ra_checked || r->ra_honoured;
        pass = present && honoured_ok;
        if (r->ra_with + r->ra_without == 0)
            snprintf(ra_s, sizeof(ra_s), " · Retry-After not seen (no 429)");
        else if (!present)
            snprintf(ra_s, sizeof(ra_s), " · Retry-After missing on %lld of %lld 429s",
                     (long long)r->ra_without, (long long)(r->ra_with + r->ra_without));
        else if (!honoured_ok)
            snprintf(ra_s, sizeof(ra_s), " · Retry-After %gs not honoured", r->retry_after_last);
        else if (r->ra_checked)
            snprintf(ra_s, sizeof(ra_s), " · Retry-After %gs honoured", r->retry_after_last);
        else
            snprintf(ra_s, sizeof(ra_s), " · Retry-After on every 429");
        c = json_pack("{s:s, s:s, s:b, s:b, s:b, s:I, s:I, s:o}", "name", "retry_after", "op",
                      "==", "threshold", 1, "observed", pass, "pass", pass, "with_retry_after",
                      (json_int_t)r->ra_with, "without_retry_after", (json_int_t)r->ra_without,
                      "honoured", r->ra_checked ? json_boolean(r->ra_honoured) : json_null());
        json_array_append_new(checks, c);
        all &= pass;
    }
    snprintf(summary, sizeof(summary), "%s %s%s%s%s", all ? "PASS" : "FAIL", head, real_s, refill_s,
             ra_s);
    return runner_verdict_new(checks, summary);
}

/* ---- reporting ------------------------------------------------------------------------------ */

/* Seconds the rest of the run should take, for progress.fraction. */
static double remaining_s(const struct rl_run *r, int64_t now)
{
    const struct plan *p = r->p;
    double rem = 0;

    if (r->bstate == B_SETUP)
        rem += 1;
    if (r->bstate <= B_BURST) {
        double avg = hdr_count(r->burst_latency) > 0 ? hdr_mean(r->burst_latency) / 1e9 : 0.001;
        double left = (double)(p->expect_limit + p->tolerance + 1 - r->burst_sent);
        if (left < 1)
            left = 1;
        rem += p->burst_rate > 0 ? left / p->burst_rate : left * avg;
    }
    if (r->bstate == B_RA_WAIT)
        rem += (double)(r->ra_due_ns - now) / 1e9;
    if (r->bstate < B_REFILL)
        rem += p->observe_refill_s;
    if (r->bstate == B_REFILL)
        rem += (double)(r->refill_end_ns - now) / 1e9;
    if (r->rstate == R_PENDING && p->agents > 0) {
        if (p->has_wait)
            rem += p->wait_s;
        else if (!p->has_setup && p->has_exp_refill && p->exp_refill > 0)
            rem += (double)p->expect_limit / p->exp_refill * 1.1 + 1;
        rem += p->window_s * p->windows;
    }
    if (r->rstate == R_WAIT)
        rem += (double)(r->real_wait_until_ns - now) / 1e9 + p->window_s * p->windows;
    if (r->rstate == R_RUNNING) {
        double left = p->window_s * p->windows - (double)(now - r->real_start_ns) / 1e9;
        rem += left > 0 ? left : 0;
    }
    return rem > 0 ? rem : 0;
}

/* A point's phase: the one most of its requests belonged to (the current one when it had
 * none), so the second in which a burst ended still reads "burst". */
static void send_point(struct rl_run *r, int64_t t)
{
    const struct runner_sink *sink = r->job->sink;
    int n = hdr_count(r->iv_latency) > 0, top = -1;
    json_t *pt;

    for (int i = 1; i < 4; i++) {
        if (r->iv_by_phase[i] > 0 && (top < 0 || r->iv_by_phase[i] > r->iv_by_phase[top]))
            top = i;
    }
    if (sink != NULL && sink->point != NULL) {
        pt = json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:o}", "t", (json_int_t)t,
                       "requests", (json_int_t)r->iv.requests, "accepted",
                       (json_int_t)r->iv.accepted, "rate_limited", (json_int_t)r->iv.limited,
                       "errors", (json_int_t)r->iv.errors, "phase",
                       top >= 0 ? phase_names[top] : phase_name(r), "status", status_json(&r->iv),
                       "p50_ms", num_or_null(n, ms3(hdr_percentile(r->iv_latency, 50))), "p99_ms",
                       num_or_null(n, ms3(hdr_percentile(r->iv_latency, 99))));
        if (pt != NULL)
            sink->point(sink->opaque, t, pt);
        json_decref(pt);
    }
    memset(&r->iv, 0, sizeof(r->iv));
    memset(r->iv_by_phase, 0, sizeof(r->iv_by_phase));
    hdr_reset(r->iv_latency);
}

static void send_progress(struct rl_run *r, int64_t now)
{
    const struct runner_sink *sink = r->job->sink;
    double elapsed = (double)(now - r->t0) / 1e9, rem = remaining_s(r, now), f;
    json_t *progress, *partial;

    if (sink == NULL || sink->progress == NULL)
        return;
    f = elapsed + rem > 0 ? elapsed / (elapsed + rem) : 0;
    if (f > 0.99)
        f = 0.99;
    if (f < r->last_fraction)
        f = r->last_fraction;
    r->last_fraction = f;
    progress = json_pack("{s:f, s:s, s:f, s:I}", "fraction", round_to(f, 0.001), "phase",
                         phase_name(r), "elapsed_s", round_to(elapsed, 0.1), "requests",
                         (json_int_t)(r->burst.requests + r->refill.requests + r->real.requests));
    partial = result_json(r);
    sink->progress(sink->opaque, progress, partial);
    json_decref(partial);
    json_decref(progress);
}

/* ---- execute -------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void run_free(struct rl_run *r)
{
    for (int i = 0; r->agents && i < r->n_agents; i++) {
        struct agent *a = &r->agents[i];
        if (a->easy != NULL) {
            if (a->busy)
                curl_multi_remove_handle(r->multi, a->easy);
            curl_easy_cleanup(a->easy);
        }
        curl_slist_free_all(a->headers);
        free(a->body);
        free(a->due);
    }
    free(r->agents);
    if (r->multi != NULL)
        curl_multi_cleanup(r->multi);
    hdr_free(r->burst_latency);
    hdr_free(r->real_latency);
    hdr_free(r->iv_latency);
}

static void ratelimit_execute(const struct runner_job *job, struct runner_outcome *out)
{
    struct plan p;
    struct rl_run *r = NULL;
    int cancelled = 0;
    int64_t now, next_tick;

    out->result = NULL;
    out->verdict = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (plan_build(job, &p, &out->error) != LT_OK)
        goto out;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->job = job;
    r->p = &p;
    r->retry_after_first = r->retry_after_last = -1;
    r->n_agents = 1 + p.agents;
    r->agents = calloc((size_t)r->n_agents, sizeof(struct agent));
    r->multi = curl_multi_init();
    r->burst_latency = hdr_new();
    r->real_latency = hdr_new();
    r->iv_latency = hdr_new();
    if (!r->agents || !r->multi || !r->burst_latency || !r->real_latency || !r->iv_latency)
        goto nomem;
    /* Every agent keeps its connection between requests: the cache must hold one per agent (its
     * default follows the handles currently added, which here come and go). */
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, (long)r->n_agents + 4);
    curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    for (int i = 0; i < r->n_agents; i++) {
        if (agent_init(r, &r->agents[i], i) != 0)
            goto nomem;
    }
    lt_log("info", "ratelimit_start",
           "run=%s host=%s expect_limit=%lld max_requests=%lld agents=%d setup=%d "
           "observe_refill_s=%g seed=%llu",
           job->id ? job->id : "-", p.host, (long long)p.expect_limit, (long long)p.max_requests,
           p.agents, p.has_setup, p.observe_refill_s, (unsigned long long)p.seed);

    r->t0 = lt_mono_ns();
    r->sec = 1;
    next_tick = r->t0 + NS_PER_S;
    if (!p.has_setup) {
        r->setup_next = r->setup_done = r->n_agents; /* nothing to call: go straight on */
    }
    for (;;) {
        int64_t next, wait_ns;
        int running = 0, msgs = 0, timeout_ms;
        CURLMsg *m;

        if (job->cancel && atomic_load(job->cancel)) {
            cancelled = 1;
            break;
        }
        now = lt_mono_ns();
        next = start_due(r, now);
        if (r->fatal)
            break;
        curl_multi_perform(r->multi, &running);
        while ((m = curl_multi_info_read(r->multi, &msgs)) != NULL) {
            struct agent *a = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&a);
            if (a != NULL)
                on_complete(r, a, m->data.result, lt_mono_ns());
        }
        if (r->fatal)
            break;
        now = lt_mono_ns();
        while (now >= next_tick) {
            send_point(r, r->sec);
            send_progress(r, now);
            r->sec++;
            next_tick += NS_PER_S;
        }
        if (run_finished(r) && running == 0)
            break;
        /* Something finished or became due during this pass: go round again at once. */
        next = start_due(r, now);
        if (r->fatal)
            break;
        if (run_finished(r)) {
            int busy = 0;
            for (int i = 0; i < r->n_agents; i++)
                busy |= r->agents[i].busy;
            if (!busy)
                break;
        }
        wait_ns = next == INT64_MAX ? POLL_MAX_MS * NS_PER_MS : next - now;
        if (next_tick - now < wait_ns)
            wait_ns = next_tick - now;
        if (wait_ns > POLL_MAX_MS * NS_PER_MS)
            wait_ns = POLL_MAX_MS * NS_PER_MS;
        if (wait_ns <= 0)
            continue;
        timeout_ms = (int)((wait_ns + NS_PER_MS - 1) / NS_PER_MS);
        curl_multi_poll(r->multi, NULL, 0, timeout_ms, NULL);
    }
    now = lt_mono_ns();
    if (r->burst_end_ns == 0 && r->burst_start_ns != 0)
        r->burst_end_ns = now;
    if (r->rstate == R_RUNNING)
        r->real_end_ns = now;
    /* The part of the second in which the run ended. */
    if (r->iv.requests > 0 || r->sec == 1)
        send_point(r, r->sec);
    r->complete = !cancelled && !r->fatal;
    out->result = result_json(r);
    if (r->fatal) {
        out->error = r->error;
        out->error_code = r->error_code;
    } else if (!cancelled) {
        out->verdict = verdict_json(r);
    }
    lt_log("info", "ratelimit_done",
           "run=%s burst_requests=%lld accepted_before_first_429=%lld limited=%d realistic=%lld "
           "rate_limited=%lld cancelled=%d fatal=%d",
           job->id ? job->id : "-", (long long)r->burst.requests, (long long)r->accepted_before_429,
           r->have_429, (long long)r->real.requests, (long long)r->real.limited, cancelled,
           r->fatal);
    goto out;
nomem:
    lt_error_set(&out->error, LT_ERR_NOMEM, NULL, "out of memory preparing the run");
out:
    if (r != NULL) {
        run_free(r);
        free(r);
    }
    plan_free(&p);
}

const struct runner_ops ratelimit_ops = {
    .kind = "ratelimit",
    .validate = ratelimit_validate,
    .mask_secrets = ratelimit_mask_secrets,
    .execute = ratelimit_execute,
    .each_target = ratelimit_each_target,
};
