/*
 * http_engine: the HTTP load engine behind the capacity kind (and, later, ratelimit): worker
 * threads that each drive one libcurl multi handle on a fixed schedule, record what they see
 * into per-thread histograms and counters, and hand those over once per second. The DESIGN
 * comment in http_engine.c names the threads and what each owns.
 *
 * The caller (a runner's execute, "the coordinator") builds an engine from a target and a load
 * shape, starts it, calls http_engine_collect about once per second to take the counts of the
 * second that just ended, and stops/joins it. Nothing here blocks on the network on the
 * coordinator's thread and nothing here touches JSON: the runner turns he_stats into documents.
 */
#ifndef LT_HTTP_ENGINE_H
#define LT_HTTP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "hdr.h"
#include "lt_allow.h"
#include "lt_status.h"

#define HE_STATUS_MAX      1000 /* status codes 0..999 are counted; 0 = no HTTP answer */
#define HE_MAX_THREADS     64
#define HE_MAX_CONNECTIONS 20000

enum he_model { HE_OPEN = 0, HE_CLOSED = 1 };

/* Error classes. A response whose status is not expected is "unexpected_status"; a request that
 * got no response is one of the other three. */
enum he_err { HE_ERR_CONNECT = 0, HE_ERR_TIMEOUT, HE_ERR_STATUS, HE_ERR_OTHER, HE_ERR_N };

/* libcurl result codes are counted one by one (for the "why" of "other" errors); higher codes
 * share the last slot. */
#define HE_CURLCODES 100

/* Which client sends the requests. AUTO: the engine's own HTTP/1.1 client ("fast-http1") over
 * connections libcurl opens, for plain http:// URLs without credentials; libcurl for the rest.
 * LIBCURL: libcurl for everything. */
enum he_engine { HE_ENGINE_AUTO = 0, HE_ENGINE_LIBCURL = 1 };

/* What every request looks like. All pointers are borrowed and must outlive the engine. */
struct he_target {
    const char *url;
    const char *method;         /* GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS */
    const char *const *headers; /* n_headers "Name: value" lines (curl syntax) */
    size_t n_headers;
    const char *const *bodies; /* n_bodies bodies, rotated by schedule index; may be 0 */
    const size_t *body_lens;
    size_t n_bodies;
    long timeout_ms; /* whole request, from the moment it is sent */
    /* Every connection's resolved address must pass lt_allow_addr(allow, addr, name_allowed);
     * NULL = no check (the runner always passes one). */
    const struct lt_allow *allow;
    int name_allowed;
    unsigned char expect[HE_STATUS_MAX]; /* expect[code] != 0: that status is a success */
    enum he_engine engine;               /* 0 (AUTO) unless a caller forces libcurl */
};

struct he_load {
    int users;
    double rate_per_user; /* req/s per user; closed model: 0 = no pacing */
    int64_t warmup_ns;    /* requests due before start + warmup are not counted */
    int64_t duration_ns;  /* measured window after the warm-up */
    enum he_model model;
    int max_connections; /* over all threads */
    int threads;         /* >= 1, already resolved by the caller */
    uint64_t seed;       /* user phases */
};

/* Counts of one class of completions (measured or warm-up). */
struct he_tally {
    int64_t requests; /* completed: answered or failed */
    int64_t ok;       /* answered with an expected status */
    int64_t errors[HE_ERR_N];
    int64_t late;                   /* sent more than HE_LATE_NS after they were due */
    int64_t late_conn;              /* of which waited for a free connection */
    int64_t forbidden;              /* connect errors: address refused by the allowlist */
    int64_t max_lag;                /* longest wait between due and sent (ns) */
    int64_t last_done;              /* latest completion (ns, monotonic) */
    int64_t bytes;                  /* response body bytes */
    int64_t status[HE_STATUS_MAX];  /* by HTTP status (0: no response) */
    int64_t curlcode[HE_CURLCODES]; /* failed requests by CURLcode */
};

#define HE_LATE_NS                                                                                 \
    1000000LL /* 1 ms: more than scheduling jitter, less than anything that matters */

/* Everything recorded over some interval. Latencies count from the moment a request was due,
 * service times from the moment it was sent, both in ns. */
struct he_stats {
    struct he_tally meas;     /* requests due in the measured window */
    struct he_tally warm;     /* requests due in the warm-up */
    struct hdr *latency;      /* measured, every completion */
    struct hdr *latency_ok;   /* measured, expected responses only (thresholds use it) */
    struct hdr *service;      /* measured, every completion */
    struct hdr *latency_warm; /* warm-up, every completion (per-second points only) */
    int64_t in_flight;        /* snapshot at collection (not summed over time) */
    int64_t connections;      /* easy handles (≈ connections) open, snapshot */
};

/* Returns new, zeroed; NULL on allocation failure. */
struct he_stats *he_stats_new(void);
void he_stats_free(struct he_stats *s);
void he_stats_reset(struct he_stats *s);
/* dst += src (the snapshot fields are summed too: callers merge workers of one instant). */
void he_stats_merge(struct he_stats *dst, const struct he_stats *src);
/* dst += the measured part of src (tally meas and its three histograms). */
void he_stats_merge_measured(struct he_stats *dst, const struct he_stats *src);

struct http_engine;

/* Builds an engine: one multi handle per thread, no connection opened yet, nothing resolved.
 * target and load are borrowed and must outlive it. Returns new; NULL with err set on failure.
 * Caller frees with http_engine_free. */
struct http_engine *http_engine_new(const struct he_target *target, const struct he_load *load,
                                    struct lt_error *err);

/* Starts the worker threads; the schedule's time zero is returned (CLOCK_MONOTONIC ns) in *t0.
 * The first second ends at *t0 + 1 s, and so on. */
lt_status http_engine_start(struct http_engine *e, int64_t *t0, struct lt_error *err);

/* Waits (a bounded while, at most max_wait_ns) until every worker has closed second `sec` (or
 * finished), then adds to into what the workers recorded since the previous collect. */
void http_engine_collect(struct http_engine *e, int64_t sec, int64_t max_wait_ns,
                         struct he_stats *into);

/* 1 when every worker has finished its schedule and its requests in flight. */
int http_engine_done(struct http_engine *e);

/* Asks the workers to stop now: nothing more is sent, requests in flight are abandoned (not
 * counted). Returns at once; http_engine_join waits. Safe from any thread. */
void http_engine_stop(struct http_engine *e);

/* Joins the workers (they must have finished or been stopped). After it, one more
 * http_engine_collect returns whatever was left. */
void http_engine_join(struct http_engine *e);

/* "fast-http1" or "libcurl": the client this engine chose (once, at http_engine_new). Static
 * string. */
const char *http_engine_kind(const struct http_engine *e);

/* Number of worker threads. */
int http_engine_threads(const struct http_engine *e);

/* Peak number of connections (easy handles) any time during the run, over all threads. */
int64_t http_engine_peak_connections(struct http_engine *e);

/* Frees the engine (joined or never started); NULL allowed. */
void http_engine_free(struct http_engine *e);

/* Maps a libcurl result code to an error class. */
enum he_err he_classify(int curlcode);

#endif
