/*
 * compare: per-metric comparison of two runs' results, the last passed run of a run, the
 * compare route and the regression check of the amend_verdict hook (see compare.h).
 *
 * Threads: the route runs on HTTP threads, the hook on the run thread of the run that ended.
 * Neither keeps state: every call reads the store and builds its answer.
 */
#define _GNU_SOURCE
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

/* One compared metric. path is where the result holds it; NULL path[0] = computed (see
 * metric_value). check names the verdict check of the kind's main metric (one per kind). */
struct metric_def {
    const char *kind;
    const char *name; /* as the answer names it */
    const char *path[3];
    int higher_better;
    const char *check; /* non-NULL: the kind's main metric, checked by the hook */
    const char *label; /* how the verdict summary says it */
};

static const struct metric_def metric_defs[] = {
    {"capacity", "latency_ms.p50", {"latency_ms", "p50", NULL}, 0, NULL, NULL},
    {"capacity", "latency_ms.p95", {"latency_ms", "p95", NULL}, 0, NULL, NULL},
    {"capacity", "latency_ms.p99", {"latency_ms", "p99", NULL}, 0, "regression_p99_pct", "p99"},
    {"capacity", "latency_ms.max", {"latency_ms", "max", NULL}, 0, NULL, NULL},
    {"capacity", "service_time_ms.p99", {"service_time_ms", "p99", NULL}, 0, NULL, NULL},
    {"capacity", "achieved_rps", {"achieved_rps", NULL, NULL}, 1, NULL, NULL},
    {"capacity", "error_rate", {"error_rate", NULL, NULL}, 0, NULL, NULL},
    /* More accepted before the first 429 is "better" in the sense that users get further; a
     * limiter that suddenly lets far more through shows in the burst_limit check instead. */
    {"ratelimit",
     "burst.accepted_before_first_429",
     {"burst", "accepted_before_first_429", NULL},
     1,
     NULL,
     NULL},
    {"ratelimit",
     "realistic.success_ratio",
     {NULL, NULL, NULL},
     1,
     "regression_success_ratio_pct",
     "realistic success"},
    {"generate",
     "rows_per_s",
     {"rows_per_s", NULL, NULL},
     1,
     "regression_rows_per_s_pct",
     "rows/s"},
    {"generate", "phases.insert_s", {"phases", "insert_s", NULL}, 0, NULL, NULL},
    {"generate", "phases.index_s", {"phases", "index_s", NULL}, 0, NULL, NULL},
};

#define N_METRICS (sizeof(metric_defs) / sizeof(metric_defs[0]))

/* The value of metric d in result; returns 0 with *out set, -1 when absent or not a number. */
static int metric_value(const struct metric_def *d, const json_t *result, double *out)
{
    const json_t *v = result;

    if (d->path[0] == NULL) { /* realistic.success_ratio = succeeded / requests */
        const json_t *real = json_object_get(result, "realistic");
        const json_t *req = json_object_get(real, "requests");
        const json_t *ok = json_object_get(real, "succeeded");
        if (!json_is_number(req) || !json_is_number(ok) || json_number_value(req) <= 0)
            return -1;
        *out = json_number_value(ok) / json_number_value(req);
        return 0;
    }
    for (int i = 0; i < 3 && d->path[i]; i++)
        v = json_object_get(v, d->path[i]);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* How much worse run is than base in percent of base (positive = worse); *known = 0 when the
 * percentage is undefined (base 0). Sets *regressed per the rule of compare.h. */
static double worse_pct(const struct metric_def *d, double run, double base, double max_pct,
                        int *known, int *regressed)
{
    double worse = d->higher_better ? base - run : run - base;

    if (base == 0) {
        *known = 0;
        *regressed = worse > 0;
        return 0;
    }
    *known = 1;
    *regressed = worse / fabs(base) * 100.0 > max_pct;
    return worse / fabs(base) * 100.0;
}

/* json_real refuses infinities and NaN (it returns NULL, and json_pack fails as if out of
 * memory); a difference of huge values, or a percentage of a tiny base, can be one. */
static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* Builds the metrics array of kind for results run and base (borrowed). *regression = any
 * metric regressed. Returns new. */
static json_t *compare_metrics(const char *kind, const json_t *run, const json_t *base,
                               double max_pct, int *regression)
{
    json_t *arr = json_array();

    *regression = 0;
    for (size_t i = 0; i < N_METRICS && arr; i++) {
        const struct metric_def *d = &metric_defs[i];
        double r = 0, b = 0;
        int have_r, have_b, known = 0, regressed = 0;
        json_t *m;

        if (strcmp(d->kind, kind) != 0)
            continue;
        have_r = metric_value(d, run, &r) == 0;
        have_b = metric_value(d, base, &b) == 0;
        if (have_r && have_b)
            worse_pct(d, r, b, max_pct, &known, &regressed);
        m = json_pack(
            "{s:s, s:o, s:o, s:o, s:o, s:s, s:b}", "name", d->name, "run",
            have_r ? real_or_null(r) : json_null(), "base", have_b ? real_or_null(b) : json_null(),
            "delta", have_r && have_b ? real_or_null(r - b) : json_null(), "delta_pct",
            have_r && have_b && b != 0 ? real_or_null((r - b) / fabs(b) * 100.0) : json_null(),
            "better", d->higher_better ? "higher" : "lower", "regressed", regressed);
        if (m == NULL || json_array_append_new(arr, m) != 0) {
            json_decref(arr);
            return NULL;
        }
        *regression |= regressed;
    }
    return arr;
}

static const struct metric_def *main_metric(const char *kind)
{
    for (size_t i = 0; i < N_METRICS; i++) {
        if (strcmp(metric_defs[i].kind, kind) == 0 && metric_defs[i].check)
            return &metric_defs[i];
    }
    return NULL;
}

/* "+12.3%" or "from 0" into buf. */
static void fmt_pct(char *buf, size_t len, const json_t *metric)
{
    const json_t *p = json_object_get(metric, "delta_pct");

    if (json_is_number(p))
        snprintf(buf, len, "%+.1f%%", json_number_value(p));
    else if (json_is_number(json_object_get(metric, "delta")) &&
             json_number_value(json_object_get(metric, "base")) == 0)
        snprintf(buf, len, "%+g from 0", json_number_value(json_object_get(metric, "delta")));
    else
        snprintf(buf, len, "n/a");
}

static json_t *find_metric(const json_t *metrics, const char *name)
{
    size_t i;
    json_t *m;

    json_array_foreach(metrics, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0)
            return m;
    }
    return NULL;
}

static json_t *run_ref(const struct run_record *r)
{
    return json_pack("{s:s, s:o, s:o, s:s}", "id", r->id, "name",
                     r->name ? json_string(r->name) : json_null(), "preset",
                     r->preset ? json_string(r->preset) : json_null(), "status",
                     run_status_name(r->status));
}

lt_status compare_runs(const struct run_record *run, const struct run_record *base, double max_pct,
                       json_t **out, struct lt_error *err)
{
    json_t *rr = NULL, *br = NULL, *metrics = NULL;
    const struct metric_def *mainm;
    char summary[512], pct[48];
    int regression = 0;
    size_t n = 0;
    lt_status st = LT_OK;

    *out = NULL;
    if (strcmp(run->kind, base->kind) != 0)
        return lt_error_set(err, LT_ERR_CONFLICT, "base",
                            "run %s is a %s run and run %s a %s run; only runs of one kind "
                            "compare",
                            run->id, run->kind, base->id, base->kind);
    rr = run->result_json ? json_loads(run->result_json, 0, NULL) : NULL;
    br = base->result_json ? json_loads(base->result_json, 0, NULL) : NULL;
    if (!json_is_object(rr) || !json_is_object(br)) {
        const struct run_record *w = json_is_object(rr) ? base : run;
        st = lt_error_set(err, LT_ERR_CONFLICT, json_is_object(rr) ? "base" : NULL,
                          "run %s has no result to compare (it is %s)", w->id,
                          run_status_name(w->status));
        goto out;
    }
    metrics = compare_metrics(run->kind, rr, br, max_pct, &regression);
    if (metrics == NULL) {
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    if (regression) {
        size_t i;
        json_t *m;
        int first = 1;
        n = (size_t)snprintf(summary, sizeof(summary), "REGRESSION vs %s:", base->id);
        json_array_foreach(metrics, i, m)
        {
            if (!json_is_true(json_object_get(m, "regressed")) || n >= sizeof(summary))
                continue;
            fmt_pct(pct, sizeof(pct), m);
            n += (size_t)snprintf(summary + n, sizeof(summary) - n, "%s %s %s", first ? "" : ",",
                                  json_string_value(json_object_get(m, "name")), pct);
            first = 0;
        }
        if (n < sizeof(summary))
            snprintf(summary + n, sizeof(summary) - n, " (limit %g%%)", max_pct);
    } else {
        mainm = main_metric(run->kind);
        fmt_pct(pct, sizeof(pct), mainm ? find_metric(metrics, mainm->name) : NULL);
        snprintf(summary, sizeof(summary), "no regression beyond %g%% vs %s (%s %s)", max_pct,
                 base->id, mainm ? mainm->name : "-", pct);
    }
    *out = json_pack("{s:o, s:o, s:o, s:f, s:b, s:s}", "run", run_ref(run), "base", run_ref(base),
                     "metrics", metrics, "max_regression_pct", max_pct, "regression", regression,
                     "summary", summary);
    metrics = NULL;
    if (*out == NULL)
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
out:
    json_decref(metrics);
    json_decref(br);
    json_decref(rr);
    return st;
}

struct first_id {
    char id[LT_ID_SIZE];
};

static int first_cb(void *opaque, const struct run_record *r)
{
    struct first_id *f = opaque;

    snprintf(f->id, sizeof(f->id), "%s", r->id);
    return 1;
}

lt_status compare_find_last_passed(struct store *st, const struct run_record *run,
                                   struct run_record *out)
{
    struct run_filter f = {.status = RUN_PASSED, .limit = 1};
    struct first_id first = {""};
    lt_status rc;

    memset(out, 0, sizeof(*out));
    if (run->preset == NULL && run->name == NULL)
        return LT_ERR_NOT_FOUND; /* nothing says which runs are "the same" */
    f.kind = run->kind;
    f.preset = run->preset;
    f.name = run->preset ? NULL : run->name;
    f.before_seq = run->seq;
    rc = store_list_runs(st, &f, first_cb, &first, NULL);
    if (rc != LT_OK)
        return rc;
    if (first.id[0] == '\0')
        return LT_ERR_NOT_FOUND;
    return store_get_run(st, first.id, out); /* deleted in between: NOT_FOUND, which is right */
}

double compare_default_pct(const char *spec_json)
{
    json_t *spec = spec_json ? json_loads(spec_json, 0, NULL) : NULL;
    json_t *v = json_object_get(json_object_get(spec, "thresholds"), "max_regression_pct");
    double pct = json_is_number(v) ? json_number_value(v) : COMPARE_DEFAULT_PCT;

    json_decref(spec);
    if (!(pct >= 0 && pct <= COMPARE_MAX_PCT))
        pct = COMPARE_DEFAULT_PCT;
    return pct;
}

/* Appends text to the verdict's summary. */
static void summary_append(json_t *verdict, const char *text)
{
    const char *old = json_string_value(json_object_get(verdict, "summary"));
    char *s = NULL;

    if (asprintf(&s, "%s%s", old ? old : "", text) >= 0) {
        json_object_set_new(verdict, "summary", json_string(s));
        free(s);
    }
}

void compare_amend_verdict(void *opaque, const char *id, const json_t *spec, const json_t *result,
                           json_t *verdict)
{
    struct app *app = opaque;
    const json_t *thr = json_object_get(json_object_get(spec, "thresholds"), "max_regression_pct");
    const struct metric_def *d;
    struct run_record run, base;
    json_t *base_result = NULL;
    double max_pct, r = 0, b = 0, pct = 0;
    int known = 0, regressed = 0, have;
    char text[256];
    lt_status st;

    memset(&run, 0, sizeof(run));
    memset(&base, 0, sizeof(base));
    if (app == NULL || !json_is_number(thr) || !json_is_object(verdict))
        return;
    max_pct = json_number_value(thr);
    st = store_get_run(app->store, id, &run);
    if (st != LT_OK) {
        lt_log("error", "baseline", "run=%s error=%s", id, lt_status_code(st));
        goto out;
    }
    d = main_metric(run.kind);
    if (d == NULL)
        goto out;
    st = compare_find_last_passed(app->store, &run, &base);
    if (st == LT_ERR_NOT_FOUND) {
        summary_append(verdict, " · no baseline yet");
        goto out;
    }
    if (st != LT_OK) {
        lt_log("error", "baseline", "run=%s error=%s", id, lt_status_code(st));
        summary_append(verdict, " · baseline unavailable");
        goto out;
    }
    base_result = base.result_json ? json_loads(base.result_json, 0, NULL) : NULL;
    have = metric_value(d, result, &r) == 0 && metric_value(d, base_result, &b) == 0;
    if (have)
        pct = worse_pct(d, r, b, max_pct, &known, &regressed);
    /* observed: how much worse than the base, in percent (negative = better). */
    json_array_append_new(json_object_get(verdict, "checks"),
                          json_pack("{s:s, s:s, s:f, s:o, s:b, s:s}", "name", d->check, "op",
                                    "<=", "threshold", max_pct, "observed",
                                    have && known ? json_real(round(pct * 100) / 100) : json_null(),
                                    "pass", !regressed, "base", base.id));
    if (regressed) {
        const char *sum = json_string_value(json_object_get(verdict, "summary"));
        json_object_set_new(verdict, "pass", json_false());
        if (sum && strncmp(sum, "PASS", 4) == 0) {
            char *s = NULL;
            if (asprintf(&s, "FAIL%s", sum + 4) >= 0) {
                json_object_set_new(verdict, "summary", json_string(s));
                free(s);
            }
        }
    }
    if (!have)
        snprintf(text, sizeof(text), " · %s not comparable with %s", d->label, base.id);
    else if (known)
        snprintf(text, sizeof(text), " · %s %s%.1f%% vs %s (limit %g%%)", d->label,
                 d->higher_better ? (pct > 0 ? "-" : "+") : (pct >= 0 ? "+" : "-"), fabs(pct),
                 base.id, max_pct);
    else
        snprintf(text, sizeof(text), " · %s from 0 at %s", d->label, base.id);
    summary_append(verdict, text);
    lt_log("info", "baseline", "run=%s base=%s metric=%s worse_pct=%.2f regressed=%d", id, base.id,
           d->name, known ? pct : 0.0, regressed);
out:
    json_decref(base_result);
    run_record_clear(&base);
    run_record_clear(&run);
}

/* 1 when s looks like a run id (the charset and size of one; the store says if it exists). */
static int run_id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= LT_ID_SIZE)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void compare_h_runs(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {"base", "max_regression_pct", NULL};
    struct run_record run, base;
    struct lt_error err;
    const char *bv, *pv;
    double pct = 0;
    int have_pct = 0;
    json_t *doc = NULL;
    lt_status st;

    memset(&run, 0, sizeof(run));
    memset(&base, 0, sizeof(base));
    memset(&err, 0, sizeof(err));
    if (routes_only_params(req, resp, names) != 0)
        return;
    bv = http_query(req, "base");
    if (bv == NULL)
        bv = "last_passed";
    if (strcmp(bv, "last_passed") != 0 && !run_id_ok(bv)) {
        http_fail(resp, LT_ERR_INVALID_PARAM, "base", "base must be a run id or last_passed");
        return;
    }
    if ((pv = http_query(req, "max_regression_pct")) != NULL) {
        char *end = NULL;
        errno = 0;
        pct = strtod(pv, &end);
        if (errno != 0 || end == pv || *end != '\0' || !(pct >= 0 && pct <= COMPARE_MAX_PCT)) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "max_regression_pct",
                      "max_regression_pct must be a number from 0 to %g", COMPARE_MAX_PCT);
            return;
        }
        have_pct = 1;
    }
    if (routes_fetch_run(req, resp, &run) != 0)
        return;
    if (strcmp(bv, "last_passed") == 0) {
        st = compare_find_last_passed(req->app->store, &run, &base);
        if (st == LT_ERR_NOT_FOUND) {
            if (run.preset)
                http_fail(resp, st, "base", "no passed %s run of preset '%s' before run %s",
                          run.kind, run.preset, run.id);
            else if (run.name)
                http_fail(resp, st, "base", "no passed %s run named '%s' before run %s", run.kind,
                          run.name, run.id);
            else
                http_fail(resp, st, "base",
                          "run %s has neither a preset nor a name, so it has no last passed run",
                          run.id);
            goto out;
        }
    } else {
        st = store_get_run(req->app->store, bv, &base);
        if (st == LT_ERR_NOT_FOUND) {
            http_fail(resp, st, "base", "no run with id '%s'", bv);
            goto out;
        }
    }
    if (st != LT_OK) {
        http_fail(resp, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
        goto out;
    }
    if (!have_pct)
        pct = compare_default_pct(run.spec_json);
    if (compare_runs(&run, &base, pct, &doc, &err) != LT_OK) {
        http_error(resp, &err);
        goto out;
    }
    resp->body = doc;
out:
    run_record_clear(&base);
    run_record_clear(&run);
}
