/*
 * metrics: Prometheus exposition of loadtestd (see metrics.h).
 *
 * Label sets are bounded by construction: route is a pattern of the route table (or "other"),
 * method one of a fixed list (or "other"), code one of a fixed list of statuses (or "other").
 * So the counters are one flat array of atomics indexed by (route, method, code), allocated once
 * at start, and recording a request is four relaxed atomic adds.
 */
#define _GNU_SOURCE
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", "other"};
#define NMETHODS ((int)(sizeof(methods) / sizeof(methods[0])))

static const int codes[] = {200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400,
                            401, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414,
                            415, 416, 422, 429, 431, 500, 501, 502, 503, 504, 505};
#define NCODES ((int)(sizeof(codes) / sizeof(codes[0])) + 1) /* + "other" */

/* Upper bounds of the latency buckets, seconds (+Inf is implicit). */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5};
#define NBUCKETS ((int)(sizeof(buckets) / sizeof(buckets[0])) + 1) /* + +Inf */

struct route_hist {
    atomic_ullong bucket[NBUCKETS]; /* not cumulative; summed when rendered */
    atomic_ullong sum_ns;
    atomic_ullong count;
};

struct metrics {
    const struct http_route *routes; /* borrowed */
    int nroutes;                     /* rows of routes; route index nroutes is "other" */
    int *canon; /* per row: the first row with the same pattern (labels use patterns) */
    atomic_ullong *requests; /* [(nroutes + 1) * NMETHODS * NCODES] */
    struct route_hist *hist; /* [nroutes + 1] */
    double start_time_s;     /* wall clock at metrics_new, for process_start_time_seconds */
};

struct metrics *metrics_new(const struct http_route *routes)
{
    struct metrics *m = calloc(1, sizeof(*m));
    size_t nreq;

    if (m == NULL)
        return NULL;
    m->routes = routes;
    while (routes[m->nroutes].method)
        m->nroutes++;
    nreq = (size_t)(m->nroutes + 1) * NMETHODS * NCODES;
    m->canon = calloc((size_t)m->nroutes + 1, sizeof(*m->canon));
    m->requests = calloc(nreq, sizeof(*m->requests));
    m->hist = calloc((size_t)m->nroutes + 1, sizeof(*m->hist));
    if (m->canon == NULL || m->requests == NULL || m->hist == NULL) {
        metrics_free(m);
        return NULL;
    }
    for (size_t i = 0; i < nreq; i++)
        atomic_init(&m->requests[i], 0);
    for (int r = 0; r <= m->nroutes; r++) {
        for (int b = 0; b < NBUCKETS; b++)
            atomic_init(&m->hist[r].bucket[b], 0);
        atomic_init(&m->hist[r].sum_ns, 0);
        atomic_init(&m->hist[r].count, 0);
        m->canon[r] = r;
        for (int e = 0; r < m->nroutes && e < r; e++) {
            if (strcmp(routes[e].pattern, routes[r].pattern) == 0) {
                m->canon[r] = e;
                break;
            }
        }
    }
    m->start_time_s = (double)lt_now_ms() / 1000.0;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    free(m->hist);
    free(m->requests);
    free(m->canon);
    free(m);
}

static int method_index(const char *method)
{
    for (int i = 0; i < NMETHODS - 1; i++) {
        if (strcmp(method, methods[i]) == 0)
            return i;
    }
    return NMETHODS - 1;
}

static int code_index(int status)
{
    for (int i = 0; i < NCODES - 1; i++) {
        if (codes[i] == status)
            return i;
    }
    return NCODES - 1;
}

void metrics_observe_api(struct metrics *m, int row, const char *method, int status, int64_t dur_ns)
{
    int r = (row >= 0 && row < m->nroutes) ? m->canon[row] : m->nroutes;
    size_t i =
        ((size_t)r * NMETHODS + (size_t)method_index(method)) * NCODES + (size_t)code_index(status);
    double s = (double)(dur_ns > 0 ? dur_ns : 0) / 1e9;
    int b = 0;

    while (b < NBUCKETS - 1 && s > buckets[b])
        b++;
    atomic_fetch_add_explicit(&m->requests[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[r].bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[r].sum_ns, (unsigned long long)(dur_ns > 0 ? dur_ns : 0),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[r].count, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------ rendering */

#define TEXT_MAX (4 * 1024 * 1024) /* the exposition is bounded; this is a safety cap */

struct text {
    char *buf;
    size_t len;
    size_t cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *nb = cap <= TEXT_MAX ? realloc(t->buf, cap) : NULL;
        if (nb == NULL) {
            t->failed = 1;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the format requires. */
static void put_label(struct text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            put(t, "\\\\");
        else if (*v == '"')
            put(t, "\\\"");
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static const char *route_label(const struct metrics *m, int r)
{
    return r < m->nroutes ? m->routes[r].pattern : "other";
}

static void render_api(struct text *t, const struct metrics *m)
{
    family(t, "loadtestd_api_requests_total", "counter",
           "API requests answered, by method, route pattern (\"other\" when no route matched) "
           "and status code.");
    for (int r = 0; r <= m->nroutes; r++) {
        if (m->canon[r] != r)
            continue;
        for (int me = 0; me < NMETHODS; me++) {
            for (int c = 0; c < NCODES; c++) {
                size_t i = ((size_t)r * NMETHODS + (size_t)me) * NCODES + (size_t)c;
                unsigned long long n = atomic_load_explicit(&m->requests[i], memory_order_relaxed);
                if (n == 0)
                    continue;
                put(t, "loadtestd_api_requests_total{method=\"%s\",route=\"", methods[me]);
                put_label(t, route_label(m, r));
                if (c < NCODES - 1)
                    put(t, "\",code=\"%d\"} %llu\n", codes[c], n);
                else
                    put(t, "\",code=\"other\"} %llu\n", n);
            }
        }
    }
    family(t, "loadtestd_api_request_duration_seconds", "histogram",
           "Time from the start of an API request to the end of its answer, by route pattern "
           "(long-polls include the time they were held).");
    for (int r = 0; r <= m->nroutes; r++) {
        const struct route_hist *h = &m->hist[r];
        unsigned long long cum = 0, count;

        if (m->canon[r] != r)
            continue;
        count = atomic_load_explicit(&h->count, memory_order_relaxed);
        if (count == 0)
            continue;
        for (int b = 0; b < NBUCKETS; b++) {
            cum += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
            put(t, "loadtestd_api_request_duration_seconds_bucket{route=\"");
            put_label(t, route_label(m, r));
            if (b < NBUCKETS - 1)
                put(t, "\",le=\"%g\"} %llu\n", buckets[b], cum);
            else
                put(t, "\",le=\"+Inf\"} %llu\n", cum);
        }
        /* Buckets were read one by one while requests kept arriving: keep _count >= +Inf. */
        if (count < cum)
            count = cum;
        put(t, "loadtestd_api_request_duration_seconds_sum{route=\"");
        put_label(t, route_label(m, r));
        put(t, "\"} %.6f\n", (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
        put(t, "loadtestd_api_request_duration_seconds_count{route=\"");
        put_label(t, route_label(m, r));
        put(t, "\"} %llu\n", count);
    }
}

void metrics_handle(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL}; /* no query parameters */
    struct app *app = req->app;
    struct metrics *m = http_server_metrics(req->server);
    struct text t = {NULL, 0, 0, 0};
    struct pool_kind_totals tot[POOL_KINDS];
    int64_t counts[7];
    int running = 0, queued = 0;
    lt_status st;

    if (routes_only_params(req, resp, names) != 0)
        return;
    st = store_count_by_status(app->store, counts);
    if (st != LT_OK) {
        http_fail(resp, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
        return;
    }
    pool_counts(app->pool, &running, &queued);
    pool_load_totals(app->pool, tot);

    family(&t, "loadtestd_build_info", "gauge", "Version of this loadtestd (the value is 1).");
    put(&t, "loadtestd_build_info{version=\"");
    put_label(&t, LT_VERSION);
    put(&t, "\"} 1\n");
    family(&t, "process_start_time_seconds", "gauge",
           "When the daemon started, in seconds since the Unix epoch.");
    put(&t, "process_start_time_seconds %.3f\n", m->start_time_s);

    family(&t, "loadtestd_runs", "gauge", "Runs in the store, by status.");
    for (int s = RUN_QUEUED; s <= RUN_INTERRUPTED; s++)
        put(&t, "loadtestd_runs{status=\"%s\"} %lld\n", run_status_name((enum run_status)s),
            (long long)counts[s]);
    family(&t, "loadtestd_runs_active", "gauge", "Runs executing now.");
    put(&t, "loadtestd_runs_active %d\n", running);
    family(&t, "loadtestd_runs_queued", "gauge", "Runs waiting for a run thread.");
    put(&t, "loadtestd_runs_queued %d\n", queued);

    family(&t, "loadtestd_requests_sent_total", "counter",
           "Load requests the runs sent to their targets (warm-up included), by kind.");
    for (int k = 0; k < POOL_KINDS; k++)
        put(&t, "loadtestd_requests_sent_total{kind=\"%s\"} %llu\n", tot[k].kind, tot[k].requests);
    family(&t, "loadtestd_request_errors_total", "counter",
           "Load requests that failed (timeout, connection, unexpected status; a 429 a ratelimit "
           "run expects is not one), by kind.");
    for (int k = 0; k < POOL_KINDS; k++)
        put(&t, "loadtestd_request_errors_total{kind=\"%s\"} %llu\n", tot[k].kind, tot[k].errors);
    family(&t, "loadtestd_rows_inserted_total", "counter", "Rows generate runs inserted.");
    unsigned long long rows = 0;
    for (int k = 0; k < POOL_KINDS; k++)
        rows += tot[k].rows;
    put(&t, "loadtestd_rows_inserted_total %llu\n", rows);

    family(&t, "loadtestd_longpoll_held", "gauge",
           "API requests held by a long-poll (?wait=) right now.");
    put(&t, "loadtestd_longpoll_held %d\n", http_server_held(req->server));

    render_api(&t, m);
    if (t.failed) {
        free(t.buf);
        http_fail(resp, LT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    resp->text = t.buf;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
