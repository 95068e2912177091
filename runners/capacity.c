/*
 * capacity: validates a capacity spec, runs it with http_engine and turns what the engine
 * measured into the result, the per-second points and the verdict (see capacity.h).
 *
 * DESIGN
 *   HTTP thread   capacity_validate / capacity_mask_secrets: pure JSON work on the posted spec;
 *                 no DNS, no sockets, no locks.
 *   run thread    capacity_execute is the coordinator: it owns the engine, the run totals
 *                 (`totals`, the measured part of every second merged in), the interval being
 *                 reported (`iv`) and every json_t it builds. Once per second it collects each
 *                 worker's published second (http_engine_collect: one swap under that worker's
 *                 lock), sends the point and the progress through the sink, and checks the cancel
 *                 flag at least every 50 ms in between.
 *   workers       http_engine's (see http_engine.c).
 *
 * Spec defaults (written back into the spec by validate):
 *   target.method "GET", target.headers {}, target.bodies [], target.timeout_ms 5000,
 *   target.expect_status ["2xx"]; load.users 1, load.rate_per_user 1, load.duration_s 60,
 *   load.warmup_s 0, load.model "open", load.threads 0 (the daemon's worker_threads, whose own 0
 *   means one per core), load.seed null (derived from the run id), load.engine "auto" (the
 *   engine's own HTTP/1.1 client for http:// targets, libcurl for the rest; "libcurl" forces
 *   libcurl), load.max_connections:
 *   closed model = users (one request in flight per user, capped at 20000), open model = 1024
 *   (enough for 10,000 req/s at 100 ms; connections are opened only when needed, and past the
 *   cap requests wait and count as late rather than opening thousands of connections when the
 *   target stalls); thresholds {} (none).
 *
 * Result: API.md's fields, plus latency_expected_ms (see below), ok_rps, late (requests sent more
 * than 1 ms after they were due), late_waiting_for_connection, max_send_lag_ms, warmup_requests,
 * bytes_received, model, threads, engine ("fast-http1" or "libcurl"), max_connections,
 * peak_connections, forbidden_by_allowlist,
 * error_details (libcurl's message -> count), notes (sentences for a person: lateness, clamped
 * values, partial runs), complete (false when cancelled), threshold_basis (which figure each
 * threshold is checked against) and latency_histogram_ms ([[upper_ms, count], ...], at most 200
 * points). duration_s runs from the end of the warm-up to the last measured answer (at least
 * load.duration_s), so a target that fell behind shows it in achieved_rps; requests counts the
 * requests that were due in the measured window. Every *_ms figure is a float with 3 decimals.
 *
 * Which latency the thresholds use: latency_expected_ms, the latency (from the moment a request
 * was due) of the requests answered with an expected status. A fast error must not make a slow
 * service pass, so errors are left out there; latency_ms has every completed request, errors
 * included. min_rps is checked against ok_rps (expected answers per second), max_error_rate
 * against error_rate.
 */
#define _GNU_SOURCE
#include "capacity.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hdr.h"
#include "http_engine.h"
#include "lt_json.h"
#include "lt_util.h"
#include "target_spec.h"

#define NS_PER_S           1000000000LL
#define MAX_TOTAL_RATE     1000000.0
#define DEFAULT_OPEN_CONNS 1024
#define CANCEL_POLL_NS     50000000LL
#define COLLECT_WAIT_NS    250000000LL

static const char *const top_keys[] = {"kind", "name",       "notify", "target",
                                       "load", "thresholds", NULL};
static const char *const load_keys[] = {
    "users",           "rate_per_user", "duration_s", "warmup_s", "model",
    "max_connections", "threads",       "seed",       "engine",   NULL};
static const char *const models[] = {"open", "closed", NULL};
static const char *const engines[] = {"auto", "libcurl", NULL}; /* index = enum he_engine */

/* The thresholds, in the order their checks are listed. pct < 0: not a percentile. */
enum thr_kind { THR_LATENCY, THR_ERROR_RATE, THR_RPS };
static const struct threshold_def {
    const char *name;
    const char *label; /* as the summary says it */
    enum thr_kind kind;
    double pct; /* latency percentile; 100 = max */
    const char *op;
    double min, max;
} thresholds[] = {
    {"p50_ms", "p50", THR_LATENCY, 50, "<", 0.001, 3600000},
    {"p90_ms", "p90", THR_LATENCY, 90, "<", 0.001, 3600000},
    {"p95_ms", "p95", THR_LATENCY, 95, "<", 0.001, 3600000},
    {"p99_ms", "p99", THR_LATENCY, 99, "<", 0.001, 3600000},
    {"p999_ms", "p99.9", THR_LATENCY, 99.9, "<", 0.001, 3600000},
    {"max_ms", "max", THR_LATENCY, 100, "<", 0.001, 3600000},
    {"max_error_rate", "error rate", THR_ERROR_RATE, -1, "<=", 0, 1},
    {"min_rps", "rps", THR_RPS, -1, ">=", 0.001, 1e7},
};
#define N_THRESHOLDS (sizeof(thresholds) / sizeof(thresholds[0]))

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
    return target_spec_validate(target, "/target", 0, err);
}

static lt_status validate_load(json_t *spec, struct lt_error *err)
{
    json_t *load, *seed;
    int model, engine;
    int64_t users, duration, warmup, conns, threads, def_conns;
    double rate;
    lt_status st;

    if ((st = ltj_object(spec, "", "load", 0, &load, err)) != LT_OK)
        return st;
    if ((st = ltj_check_keys(load, "/load", load_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_enum(load, "/load", "model", 0, "open", models, &model, err)) != LT_OK)
        return st;
    if ((st = ltj_int(load, "/load", "users", 0, 1, 1, 100000, &users, err)) != LT_OK)
        return st;
    if ((st = ltj_number(load, "/load", "rate_per_user", 0, 1, 0, MAX_TOTAL_RATE, &rate, err)) !=
        LT_OK)
        return st;
    if (model == HE_OPEN && !(rate > 0))
        return spec_error(err, "/load/rate_per_user", "must be greater than 0 in the open model");
    if ((double)users * rate > MAX_TOTAL_RATE)
        return spec_error(err, "/load/rate_per_user",
                          "is too high: users x rate_per_user must not exceed 1000000 requests/s");
    if ((st = ltj_int(load, "/load", "duration_s", 0, 60, 1, 86400, &duration, err)) != LT_OK)
        return st;
    if ((st = ltj_int(load, "/load", "warmup_s", 0, 0, 0, 3600, &warmup, err)) != LT_OK)
        return st;
    /* Closed: one request in flight per user. Open: what the schedule needs is rate x latency,
     * unknown here; 1024 covers 10,000 req/s at 100 ms, and when the target stalls the requests
     * past it wait and are reported late instead of storming the target with new connections. */
    def_conns = model == HE_CLOSED ? users : DEFAULT_OPEN_CONNS;
    if (def_conns > HE_MAX_CONNECTIONS)
        def_conns = HE_MAX_CONNECTIONS;
    if ((st = ltj_int(load, "/load", "max_connections", 0, def_conns, 1, HE_MAX_CONNECTIONS, &conns,
                      err)) != LT_OK)
        return st;
    if ((st = ltj_int(load, "/load", "threads", 0, 0, 0, HE_MAX_THREADS, &threads, err)) != LT_OK)
        return st;
    if ((st = ltj_enum(load, "/load", "engine", 0, "auto", engines, &engine, err)) != LT_OK)
        return st;
    seed = json_object_get(load, "seed");
    if (seed == NULL) {
        if (json_object_set_new(load, "seed", json_null()) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, "/load/seed", "out of memory");
    } else if (!json_is_null(seed) && (!json_is_integer(seed) || json_integer_value(seed) < 0 ||
                                       json_integer_value(seed) > (json_int_t)1 << 53)) {
        return spec_error(err, "/load/seed", "must be null or an integer 0..2^53");
    }
    return LT_OK;
}

static lt_status validate_thresholds(json_t *spec, struct lt_error *err)
{
    const char *keys[N_THRESHOLDS + 2];
    json_t *thr;
    double pct;
    lt_status st;

    if ((st = ltj_object(spec, "", "thresholds", 0, &thr, err)) != LT_OK)
        return st;
    for (size_t i = 0; i < N_THRESHOLDS; i++)
        keys[i] = thresholds[i].name;
    /* Checked by the service against the last passed run (service/compare.c), not here. */
    keys[N_THRESHOLDS] = "max_regression_pct";
    keys[N_THRESHOLDS + 1] = NULL;
    if ((st = ltj_check_keys(thr, "/thresholds", keys, err)) != LT_OK)
        return st;
    if (json_object_get(thr, "max_regression_pct") != NULL &&
        (st = ltj_number(thr, "/thresholds", "max_regression_pct", 1, 0, 0, 1000, &pct, err)) !=
            LT_OK)
        return st;
    for (size_t i = 0; i < N_THRESHOLDS; i++) {
        double x;
        if (json_object_get(thr, thresholds[i].name) == NULL)
            continue;
        if ((st = ltj_number(thr, "/thresholds", thresholds[i].name, 1, 0, thresholds[i].min,
                             thresholds[i].max, &x, err)) != LT_OK)
            return st;
    }
    return LT_OK;
}

static lt_status capacity_validate(json_t *spec, struct lt_error *err)
{
    lt_status st;

    if (!json_is_object(spec))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "", "the spec must be a JSON object");
    if ((st = ltj_check_keys(spec, "", top_keys, err)) != LT_OK)
        return st;
    if ((st = validate_target(spec, err)) != LT_OK)
        return st;
    if ((st = validate_load(spec, err)) != LT_OK)
        return st;
    return validate_thresholds(spec, err);
}

/* ---- secrets -------------------------------------------------------------------------------- */

/* Hides header values that carry credentials and the password of a user:password@ URL. */
static void capacity_mask_secrets(json_t *spec)
{
    json_t *target = json_object_get(spec, "target");

    target_spec_mask_headers(target);
    target_spec_mask_url(target);
}

/* ---- targets -------------------------------------------------------------------------------- */

/* The only endpoint a capacity run reaches is the target URL's host and port. */
static int capacity_each_target(const json_t *spec,
                                int (*fn)(void *opaque, const char *host, int port,
                                          const char *field),
                                void *opaque)
{
    const char *url = json_string_value(json_object_get(json_object_get(spec, "target"), "url"));
    char host[256];
    int port = 0;

    if (url == NULL || runner_url_host(url, host, sizeof(host), &port) != 0)
        return fn(opaque, url ? url : "", 0, "/target/url"); /* fail closed */
    return fn(opaque, host, port, "/target/url");
}

/* ---- the plan: the spec turned into what the engine needs ----------------------------------- */

struct plan {
    struct he_target target;
    struct he_load load;
    char **headers; /* n_headers owned lines */
    char **bodies;  /* n_bodies owned bodies */
    size_t *body_lens;
    char host[300];             /* for messages */
    struct lt_allow *own_allow; /* the loopback default when the config has no list */
    double thr[N_THRESHOLDS];
    int has_thr[N_THRESHOLDS];
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; p->headers && i < p->target.n_headers; i++)
        free(p->headers[i]);
    for (size_t i = 0; p->bodies && i < p->target.n_bodies; i++)
        free(p->bodies[i]);
    free(p->headers);
    free(p->bodies);
    free(p->body_lens);
    lt_allow_free(p->own_allow);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static int add_header(struct plan *p, const char *name, const char *value)
{
    char *line = NULL;
    int rc = value[0] ? asprintf(&line, "%s: %s", name, value) : asprintf(&line, "%s;", name);

    if (rc < 0)
        return -1;
    p->headers[p->target.n_headers++] = line;
    return 0;
}

/* The spec was validated; only allocation can fail here. */
static lt_status plan_build(const struct runner_job *job, struct plan *p, struct lt_error *err)
{
    const json_t *spec = job->spec;
    json_t *target = json_object_get(spec, "target");
    json_t *load = json_object_get(spec, "load");
    json_t *thr = json_object_get(spec, "thresholds");
    json_t *headers = json_object_get(target, "headers");
    json_t *bodies = json_object_get(target, "bodies");
    json_t *expect = json_object_get(target, "expect_status");
    json_t *v, *seed;
    const char *name, *url;
    int has_ctype = 0, has_expect = 0, json_bodies = 0, threads;
    size_t i, nb = json_array_size(bodies);

    memset(p, 0, sizeof(*p));
    url = json_string_value(json_object_get(target, "url"));
    p->target.url = url;
    p->target.method = json_string_value(json_object_get(target, "method"));
    p->target.timeout_ms = (long)json_integer_value(json_object_get(target, "timeout_ms"));
    if (p->target.method == NULL)
        p->target.method = "GET";
    if (p->target.timeout_ms <= 0)
        p->target.timeout_ms = 5000;
    {
        const char *h = strstr(url ? url : "", "://");
        h = h ? h + 3 : "";
        const char *at = NULL;
        size_t n = strcspn(h, "/?#");
        for (size_t k = 0; k < n; k++) {
            if (h[k] == '@')
                at = h + k;
        }
        if (at != NULL) {
            n -= (size_t)(at + 1 - h);
            h = at + 1;
        }
        snprintf(p->host, sizeof(p->host), "%.*s", (int)n, h);
    }

    {
        char h[256];
        int port = 0;
        p->target.allow = job->config ? job->config->allow : NULL;
        if (p->target.allow == NULL) {
            p->own_allow = lt_allow_new_default();
            if (p->own_allow == NULL)
                goto nomem;
            p->target.allow = p->own_allow;
        }
        if (url != NULL && runner_url_host(url, h, sizeof(h), &port) == 0)
            p->target.name_allowed = lt_allow_name_matched(p->target.allow, h, port);
    }
    p->headers = calloc(json_object_size(headers) + 2, sizeof(char *));
    p->bodies = calloc(nb + 1, sizeof(char *));
    p->body_lens = calloc(nb + 1, sizeof(size_t));
    if (!p->headers || !p->bodies || !p->body_lens)
        goto nomem;
    json_object_foreach(headers, name, v)
    {
        if (strcasecmp(name, "Content-Type") == 0)
            has_ctype = 1;
        if (strcasecmp(name, "Expect") == 0)
            has_expect = 1;
        if (add_header(p, name, json_string_value(v)) != 0)
            goto nomem;
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
        p->target.n_bodies = i + 1;
        if (p->bodies[i] == NULL)
            goto nomem;
    }
    /* JSON values are JSON: say so unless the spec set a type. No "Expect: 100-continue" round
     * trip before a body: it would add a wait to every POST. */
    if (json_bodies && !has_ctype && add_header(p, "Content-Type", "application/json") != 0)
        goto nomem;
    if (!has_expect) {
        char *line = strdup("Expect:");
        if (line == NULL)
            goto nomem;
        p->headers[p->target.n_headers++] = line;
    }
    p->target.headers = (const char *const *)p->headers;
    p->target.bodies = (const char *const *)p->bodies;
    p->target.body_lens = p->body_lens;

    json_array_foreach(expect, i, v)
    {
        if (json_is_integer(v)) {
            json_int_t c = json_integer_value(v);
            if (c >= 0 && c < HE_STATUS_MAX)
                p->target.expect[c] = 1;
        } else if (json_is_string(v)) {
            int cls = json_string_value(v)[0] - '0';
            for (int c = cls * 100; c >= 100 && c < cls * 100 + 100 && c < HE_STATUS_MAX; c++)
                p->target.expect[c] = 1;
        }
    }

    p->load.users = (int)json_integer_value(json_object_get(load, "users"));
    p->load.rate_per_user = json_number_value(json_object_get(load, "rate_per_user"));
    p->load.duration_ns =
        (int64_t)json_integer_value(json_object_get(load, "duration_s")) * NS_PER_S;
    p->load.warmup_ns = (int64_t)json_integer_value(json_object_get(load, "warmup_s")) * NS_PER_S;
    name = json_string_value(json_object_get(load, "model"));
    p->load.model = name != NULL && strcmp(name, "closed") == 0 ? HE_CLOSED : HE_OPEN;
    name = json_string_value(json_object_get(load, "engine"));
    p->target.engine =
        name != NULL && strcmp(name, "libcurl") == 0 ? HE_ENGINE_LIBCURL : HE_ENGINE_AUTO;
    p->load.max_connections = (int)json_integer_value(json_object_get(load, "max_connections"));
    threads = (int)json_integer_value(json_object_get(load, "threads"));
    if (threads <= 0 && job->config != NULL)
        threads = job->config->worker_threads;
    if (threads <= 0)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0)
        threads = 1;
    p->load.threads = threads > HE_MAX_THREADS ? HE_MAX_THREADS : threads;
    seed = json_object_get(load, "seed");
    p->load.seed = json_is_integer(seed) ? (uint64_t)json_integer_value(seed) : fnv1a(job->id);
    if (p->load.users < 1 || p->load.duration_ns <= 0 || p->load.max_connections < 1 ||
        (p->load.model == HE_OPEN && !(p->load.rate_per_user > 0)))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, NULL, "the spec was not validated");

    for (size_t k = 0; k < N_THRESHOLDS; k++) {
        json_t *t = json_object_get(thr, thresholds[k].name);
        if (json_is_number(t)) {
            p->has_thr[k] = 1;
            p->thr[k] = json_number_value(t);
        }
    }
    return LT_OK;
nomem:
    return lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory preparing the run");
}

/* ---- documents ------------------------------------------------------------------------------ */

static double ms3(int64_t ns)
{
    return round((double)ns / 1e3) / 1e3;
}

static json_t *num_or_null(int present, double x)
{
    return present ? json_real(x) : json_null();
}

/* {"count","min","mean","p50","p90","p95","p99","p999","max"} in ms; null values when empty. */
static json_t *hist_json(const struct hdr *h)
{
    int n = hdr_count(h) > 0;

    return json_pack(
        "{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "count", (json_int_t)hdr_count(h), "min",
        num_or_null(n, ms3(hdr_min(h))), "mean", num_or_null(n, round(hdr_mean(h) / 1e3) / 1e3),
        "p50", num_or_null(n, ms3(hdr_percentile(h, 50))), "p90",
        num_or_null(n, ms3(hdr_percentile(h, 90))), "p95",
        num_or_null(n, ms3(hdr_percentile(h, 95))), "p99",
        num_or_null(n, ms3(hdr_percentile(h, 99))), "p999",
        num_or_null(n, ms3(hdr_percentile(h, 99.9))), "max", num_or_null(n, ms3(hdr_max(h))));
}

/* [[upper_ms, count], ...]: the latency distribution (every completion) for a dashboard to draw,
 * at most 200 points (adjacent buckets combined). */
static json_t *hist_points_json(const struct hdr *h)
{
    json_t *arr = hdr_to_json(h, 200), *pt;
    size_t i;

    json_array_foreach(arr, i, pt)
    {
        json_array_set_new(pt, 0,
                           json_real(ms3((int64_t)json_integer_value(json_array_get(pt, 0)))));
    }
    return arr;
}

static json_t *status_json(const struct he_tally *t)
{
    json_t *o = json_object();
    char key[8];

    for (int c = 1; o && c < HE_STATUS_MAX; c++) {
        if (t->status[c] == 0)
            continue;
        snprintf(key, sizeof(key), "%d", c);
        json_object_set_new(o, key, json_integer(t->status[c]));
    }
    return o;
}

static int64_t tally_errors(const struct he_tally *t)
{
    int64_t n = 0;

    for (int i = 0; i < HE_ERR_N; i++)
        n += t->errors[i];
    return n;
}

/* The per-second point; dt = length of the interval in seconds (1 but for the last one). */
static json_t *point_json(int64_t t, const struct he_stats *iv, struct hdr *scratch, double dt,
                          int warmup)
{
    int64_t req = iv->meas.requests + iv->warm.requests;
    int64_t errors = tally_errors(&iv->meas) + tally_errors(&iv->warm);
    struct he_tally both = iv->meas;
    json_t *pt;
    int n;

    for (int c = 0; c < HE_STATUS_MAX; c++)
        both.status[c] += iv->warm.status[c];
    hdr_reset(scratch);
    hdr_merge(scratch, iv->latency);
    hdr_merge(scratch, iv->latency_warm);
    n = hdr_count(scratch) > 0;
    pt = json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:f, s:I, s:s, s:I}", "t", (json_int_t)t,
                   "requests", (json_int_t)req, "errors", (json_int_t)errors, "p50_ms",
                   num_or_null(n, ms3(hdr_percentile(scratch, 50))), "p99_ms",
                   num_or_null(n, ms3(hdr_percentile(scratch, 99))), "status", status_json(&both),
                   "rps", round((double)req / (dt > 0.001 ? dt : 0.001) * 10) / 10, "late",
                   (json_int_t)(iv->meas.late + iv->warm.late), "phase",
                   warmup ? "warmup" : "measure", "in_flight", (json_int_t)iv->in_flight);
    return pt;
}

struct run_state {
    const struct plan *p;
    struct he_stats *totals;
    int64_t warmup_requests;
    double measured_s; /* of the measured window so far */
    int threads;
    int64_t peak_conns;
    int64_t in_flight_abandoned;
    int complete;
    const char *engine; /* "fast-http1" or "libcurl": which client ran the requests */
};

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

static json_t *result_json(const struct run_state *rs)
{
    const struct he_tally *m = &rs->totals->meas;
    const struct plan *p = rs->p;
    double dur = rs->measured_s > 0 ? rs->measured_s : 0;
    int64_t errors = tally_errors(m);
    json_t *details = json_object(), *notes = json_array(), *r;

    for (int c = 1; details && c < HE_CURLCODES; c++) {
        if (m->curlcode[c] > 0)
            json_object_set_new(details, curl_easy_strerror((CURLcode)c),
                                json_integer(m->curlcode[c]));
    }
    if (m->forbidden > 0)
        add_note(notes,
                 "%lld connections were refused because the target's address is not on the "
                 "daemon's allowlist (counted as connect errors)",
                 (long long)m->forbidden);
    if (m->late > 0)
        add_note(notes,
                 "%lld requests were sent more than 1 ms after they were due (%lld of them "
                 "waited for a free connection%s); their latency counts from when they were due",
                 (long long)m->late, (long long)m->late_conn,
                 m->late_conn > 0 ? ": raise load.max_connections" : "");
    if (hdr_clamped(rs->totals->latency) > 0)
        add_note(notes, "%lld latencies above %lld s were counted as %lld s",
                 (long long)hdr_clamped(rs->totals->latency), HDR_MAX_NS / NS_PER_S,
                 HDR_MAX_NS / NS_PER_S);
    if (rs->complete && m->requests == 0)
        add_note(notes, "no request was due in the measured window: users x rate_per_user x "
                        "duration_s is below one request");
    if (!rs->complete)
        add_note(notes, "partial: the run stopped after %.1f s of the measured window", dur);
    if (rs->in_flight_abandoned > 0)
        add_note(notes, "%lld requests in flight when the run stopped are not counted",
                 (long long)rs->in_flight_abandoned);
    r = json_pack(
        "{s:I, s:f, s:f, s:f, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I}, s:f, s:I, s:I, s:I, s:I,"
        " s:s, s:i, s:i, s:I, s:{s:s, s:s, s:s}, s:o, s:o, s:b}",
        "requests", (json_int_t)m->requests, "duration_s", round(dur * 1000) / 1000, "achieved_rps",
        dur > 0 ? round((double)m->requests / dur * 10) / 10 : 0.0, "ok_rps",
        dur > 0 ? round((double)m->ok / dur * 10) / 10 : 0.0, "latency_ms",
        hist_json(rs->totals->latency), "latency_expected_ms", hist_json(rs->totals->latency_ok),
        "service_time_ms", hist_json(rs->totals->service), "status_codes", status_json(m), "errors",
        "connect", (json_int_t)m->errors[HE_ERR_CONNECT], "timeout",
        (json_int_t)m->errors[HE_ERR_TIMEOUT], "unexpected_status",
        (json_int_t)m->errors[HE_ERR_STATUS], "other", (json_int_t)m->errors[HE_ERR_OTHER],
        "error_rate", m->requests > 0 ? (double)errors / (double)m->requests : 0.0, "late",
        (json_int_t)m->late, "late_waiting_for_connection", (json_int_t)m->late_conn,
        "warmup_requests", (json_int_t)rs->warmup_requests, "bytes_received", (json_int_t)m->bytes,
        "model", p->load.model == HE_CLOSED ? "closed" : "open", "threads", rs->threads,
        "max_connections", p->load.max_connections, "peak_connections", (json_int_t)rs->peak_conns,
        "threshold_basis", "latency", "latency_expected_ms", "max_error_rate", "error_rate",
        "min_rps", "ok_rps", "error_details", details, "notes", notes, "complete", rs->complete);
    if (r != NULL) {
        json_object_set_new(r, "latency_histogram_ms", hist_points_json(rs->totals->latency));
        json_object_set_new(r, "forbidden_by_allowlist", json_integer(m->forbidden));
        json_object_set_new(r, "max_send_lag_ms", json_real(ms3(m->max_lag)));
        json_object_set_new(r, "engine", json_string(rs->engine ? rs->engine : "libcurl"));
    }
    return r;
}

/* ---- verdict -------------------------------------------------------------------------------- */

static void fmt_ms(char *buf, size_t n, double ms)
{
    snprintf(buf, n, ms < 1 ? "%.3f" : ms < 10 ? "%.2f" : "%.1f", ms);
}

static void fmt_count(char *buf, size_t n, int64_t v)
{
    char digits[32];
    int len = snprintf(digits, sizeof(digits), "%lld", (long long)(v < 0 ? -v : v));
    size_t o = 0;

    if (v < 0 && o + 1 < n)
        buf[o++] = '-';
    for (int i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 1 < n)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

static const char *negate(const char *op)
{
    if (strcmp(op, "<") == 0)
        return "≥";
    if (strcmp(op, "<=") == 0)
        return ">";
    return "<";
}

/* "p99 12.4 ms < 50 ms", "error rate 1.20% > 1.00%", "rps 180.0 < 200" */
static void fmt_check(char *buf, size_t n, const struct threshold_def *d, double thr, int has_obs,
                      double obs, int pass)
{
    const char *op = pass ? d->op : negate(d->op);
    char o[32];

    if (d->kind == THR_LATENCY) {
        if (!has_obs)
            snprintf(o, sizeof(o), "n/a (no expected response)");
        else {
            fmt_ms(o, sizeof(o), obs);
            strncat(o, " ms", sizeof(o) - strlen(o) - 1);
        }
        snprintf(buf, n, "%s %s %s %g ms", d->label, o, op, thr);
    } else if (d->kind == THR_ERROR_RATE) {
        snprintf(buf, n, "%s %.2f%% %s %.2f%%", d->label, obs * 100, op, thr * 100);
    } else {
        snprintf(buf, n, "%s %.1f %s %g", d->label, obs, op, thr);
    }
}

static json_t *verdict_json(const struct run_state *rs)
{
    const struct he_tally *m = &rs->totals->meas;
    const struct hdr *ok = rs->totals->latency_ok;
    const struct plan *p = rs->p;
    json_t *checks = json_array();
    char head[160] = "", figures[160], reqs[32], summary[400];
    int first_fail = -1, first_lat = -1, any = 0, all_pass = 1;
    double dur = rs->measured_s;
    double error_rate = m->requests > 0 ? (double)tally_errors(m) / (double)m->requests : 0;
    double ok_rps = dur > 0 ? (double)m->ok / dur : 0;
    double obs[N_THRESHOLDS];
    int has_obs[N_THRESHOLDS], pass[N_THRESHOLDS];

    if (checks == NULL)
        return NULL;
    for (size_t k = 0; k < N_THRESHOLDS; k++) {
        const struct threshold_def *d = &thresholds[k];
        has_obs[k] = 1;
        if (!p->has_thr[k])
            continue;
        if (d->kind == THR_LATENCY) {
            has_obs[k] = hdr_count(ok) > 0;
            obs[k] = ms3(d->pct >= 100 ? hdr_max(ok) : hdr_percentile(ok, d->pct));
        } else if (d->kind == THR_ERROR_RATE) {
            obs[k] = round(error_rate * 1e6) / 1e6;
        } else {
            obs[k] = round(ok_rps * 10) / 10;
        }
        if (has_obs[k]) {
            pass[k] = runner_add_check(checks, d->name, d->op, p->thr[k], obs[k]);
        } else {
            /* No expected response at all: nothing to compare, and that is a failure. */
            pass[k] = 0;
            json_array_append_new(checks,
                                  json_pack("{s:s, s:s, s:f, s:n, s:b}", "name", d->name, "op",
                                            d->op, "threshold", p->thr[k], "observed", "pass", 0));
        }
        any = 1;
        if (!pass[k] && first_fail < 0)
            first_fail = (int)k;
        if (d->kind == THR_LATENCY && (first_lat < 0 || strcmp(d->name, "p99_ms") == 0))
            first_lat = (int)k;
        all_pass &= pass[k];
    }
    {
        int k = first_fail >= 0 ? first_fail : first_lat;
        if (k < 0 && any) {
            for (size_t j = 0; j < N_THRESHOLDS; j++) {
                if (p->has_thr[j]) {
                    k = (int)j;
                    break;
                }
            }
        }
        if (k >= 0) {
            fmt_check(head, sizeof(head), &thresholds[k], p->thr[k], has_obs[k], obs[k], pass[k]);
        } else if (hdr_count(ok) > 0) {
            char o[32];
            fmt_ms(o, sizeof(o), ms3(hdr_percentile(ok, 99)));
            snprintf(head, sizeof(head), "no thresholds · p99 %s ms", o);
        } else {
            snprintf(head, sizeof(head), "no thresholds · no expected response");
        }
    }
    fmt_count(reqs, sizeof(reqs), m->requests);
    snprintf(figures, sizeof(figures), "%s req · %.2f%% errors · %.1f req/s", reqs,
             error_rate * 100, dur > 0 ? (double)m->requests / dur : 0.0);
    snprintf(summary, sizeof(summary), "%s %s · %s", all_pass ? "PASS" : "FAIL", head, figures);
    return runner_verdict_new(checks, summary);
}

/* ---- execute -------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Sleeps until `until` or until the engine is done or the run is cancelled, whichever comes
 * first; never more than CANCEL_POLL_NS at a time. Returns 1 when cancelled. */
static int wait_tick(const struct runner_job *job, struct http_engine *e, int64_t until)
{
    for (;;) {
        int64_t now = lt_mono_ns(), step;
        struct timespec ts;

        if (job->cancel && atomic_load(job->cancel))
            return 1;
        if (now >= until || http_engine_done(e))
            return 0;
        step = until - now < CANCEL_POLL_NS ? until - now : CANCEL_POLL_NS;
        /* Polls done-ness every 10 ms so a finished run does not sit out its last second. */
        if (step > 10000000)
            step = 10000000;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)step;
        nanosleep(&ts, NULL);
    }
}

static void send_progress(const struct runner_job *job, const struct run_state *rs, int64_t now,
                          int64_t t0)
{
    const struct plan *p = rs->p;
    double total = (double)(p->load.warmup_ns + p->load.duration_ns) / 1e9;
    double elapsed = (double)(now - t0) / 1e9;
    json_t *progress, *partial;

    if (job->sink == NULL || job->sink->progress == NULL)
        return;
    if (elapsed < 0)
        elapsed = 0;
    progress = json_pack("{s:f, s:f, s:s, s:I}", "fraction",
                         elapsed >= total ? 1.0 : round(elapsed / total * 1000) / 1000, "elapsed_s",
                         round(elapsed * 10) / 10, "phase",
                         now - t0 < p->load.warmup_ns ? "warmup" : "measure", "requests",
                         (json_int_t)rs->totals->meas.requests);
    partial = result_json(rs);
    job->sink->progress(job->sink->opaque, progress, partial);
    json_decref(partial);
    json_decref(progress);
}

static void capacity_execute(const struct runner_job *job, struct runner_outcome *out)
{
    struct plan p;
    struct run_state rs = {0};
    struct http_engine *e = NULL;
    struct he_stats *iv = NULL;
    struct hdr *scratch = NULL;
    int64_t t0 = 0, sec, now, measure_start;
    int cancelled = 0, finished = 0;
    int64_t responses;

    out->result = NULL;
    out->verdict = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (plan_build(job, &p, &out->error) != LT_OK)
        goto out;
    rs.p = &p;
    rs.totals = he_stats_new();
    iv = he_stats_new();
    scratch = hdr_new();
    if (rs.totals == NULL || iv == NULL || scratch == NULL) {
        lt_error_set(&out->error, LT_ERR_NOMEM, NULL, "out of memory preparing the run");
        goto out;
    }
    e = http_engine_new(&p.target, &p.load, &out->error);
    if (e == NULL)
        goto out;
    rs.threads = http_engine_threads(e);
    rs.engine = http_engine_kind(e);
    lt_log("info", "capacity_start",
           "run=%s host=%s model=%s users=%d rate_per_user=%g duration_s=%lld threads=%d "
           "engine=%s",
           job->id ? job->id : "-", p.host, p.load.model == HE_CLOSED ? "closed" : "open",
           p.load.users, p.load.rate_per_user, (long long)(p.load.duration_ns / NS_PER_S),
           rs.threads, rs.engine);
    if (http_engine_start(e, &t0, &out->error) != LT_OK)
        goto out;
    measure_start = t0 + p.load.warmup_ns;

    for (sec = 1; !finished; sec++) {
        int64_t tick = t0 + sec * NS_PER_S;
        double dt;

        cancelled = wait_tick(job, e, tick);
        if (cancelled)
            break;
        finished = http_engine_done(e);
        if (finished)
            http_engine_join(e);
        http_engine_collect(e, sec, COLLECT_WAIT_NS, iv);
        now = lt_mono_ns();
        dt = finished ? (double)(now - (tick - NS_PER_S)) / 1e9 : 1.0;
        if (dt > 1)
            dt = 1;
        if (job->sink && job->sink->point) {
            json_t *pt = point_json(sec, iv, scratch, dt, tick - NS_PER_S < measure_start);
            if (pt != NULL)
                job->sink->point(job->sink->opaque, sec, pt);
            json_decref(pt);
        }
        he_stats_merge_measured(rs.totals, iv);
        rs.warmup_requests += iv->warm.requests;
        he_stats_reset(iv);
        rs.measured_s = (double)(now - measure_start) / 1e9;
        if (rs.measured_s > (double)p.load.duration_ns / 1e9)
            rs.measured_s = (double)p.load.duration_ns / 1e9;
        if (rs.measured_s < 0)
            rs.measured_s = 0;
        if (!finished)
            send_progress(job, &rs, now, t0);
    }
    if (cancelled) {
        http_engine_stop(e);
        now = lt_mono_ns();
        http_engine_join(e);
        http_engine_collect(e, INT64_MAX, 0, iv);
        if (job->sink && job->sink->point && iv->meas.requests + iv->warm.requests > 0) {
            /* The part of the second in which the run was stopped. */
            double dt = (double)(now - (t0 + (sec - 1) * NS_PER_S)) / 1e9;
            json_t *pt = point_json(sec, iv, scratch, dt > 0 && dt < 1 ? dt : 1,
                                    t0 + (sec - 1) * NS_PER_S < measure_start);
            if (pt != NULL)
                job->sink->point(job->sink->opaque, sec, pt);
            json_decref(pt);
        }
        he_stats_merge_measured(rs.totals, iv);
        rs.warmup_requests += iv->warm.requests;
        rs.measured_s = (double)(now - measure_start) / 1e9;
        if (rs.measured_s < 0)
            rs.measured_s = 0;
        if (rs.measured_s > (double)p.load.duration_ns / 1e9)
            rs.measured_s = (double)p.load.duration_ns / 1e9;
        lt_log("info", "capacity_cancelled", "run=%s after_s=%.1f", job->id ? job->id : "-",
               (double)(now - t0) / 1e9);
    }
    rs.peak_conns = http_engine_peak_connections(e);
    rs.in_flight_abandoned = iv->in_flight;
    rs.complete = !cancelled;
    if (!cancelled) {
        /* Until the last measured answer: a target that fell behind took longer than the
         * window to answer what was due in it, and its rate must show that. */
        int64_t until = rs.totals->meas.last_done - measure_start;
        rs.measured_s = (double)(until > p.load.duration_ns ? until : p.load.duration_ns) / 1e9;
    }
    out->result = result_json(&rs);

    responses = rs.totals->meas.requests - tally_errors(&rs.totals->meas) +
                rs.totals->meas.errors[HE_ERR_STATUS];
    if (!cancelled && responses == 0 && rs.totals->meas.forbidden > 0 &&
        rs.totals->meas.forbidden == rs.totals->meas.requests) {
        lt_error_set(&out->error, LT_ERR_FORBIDDEN_TARGET, "/target/url",
                     "target unreachable: %s resolves to an address that is not on this "
                     "daemon's target allowlist",
                     p.host);
    } else if (!cancelled && responses == 0 && rs.totals->meas.errors[HE_ERR_CONNECT] > 0 &&
               rs.totals->meas.errors[HE_ERR_CONNECT] == rs.totals->meas.requests) {
        int worst = CURLE_COULDNT_CONNECT;
        for (int c = 1; c < HE_CURLCODES; c++) {
            if (rs.totals->meas.curlcode[c] > rs.totals->meas.curlcode[worst])
                worst = c;
        }
        lt_error_set(&out->error, LT_ERR_IO, NULL, "target unreachable: %s (%s), %lld attempts",
                     curl_easy_strerror((CURLcode)worst), p.host,
                     (long long)rs.totals->meas.errors[HE_ERR_CONNECT]);
    } else if (!cancelled) {
        out->verdict = verdict_json(&rs);
    }
    lt_log("info", "capacity_done", "run=%s requests=%lld errors=%lld cancelled=%d",
           job->id ? job->id : "-", (long long)rs.totals->meas.requests,
           (long long)tally_errors(&rs.totals->meas), cancelled);
out:
    http_engine_free(e);
    hdr_free(scratch);
    he_stats_free(iv);
    he_stats_free(rs.totals);
    plan_free(&p);
}

const struct runner_ops capacity_ops = {
    .kind = "capacity",
    .validate = capacity_validate,
    .mask_secrets = capacity_mask_secrets,
    .execute = capacity_execute,
    .each_target = capacity_each_target,
};
