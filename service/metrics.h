/*
 * metrics: GET /metrics in the Prometheus text exposition format (0.0.4) — runs by status, the
 * pool's active and queued runs, what the runners sent (from their per-second points, counted by
 * the pool), and the API's own request counts and latencies, which this module keeps.
 *
 * Threads: metrics_observe_api is called by every HTTP thread at the end of each request; its
 * counters are atomics (no lock), so recording never waits. metrics_handle reads them with
 * relaxed loads: a scrape sees each counter at some moment during the scrape, which is all
 * Prometheus asks of counters.
 */
#ifndef LT_METRICS_H
#define LT_METRICS_H

#include <stdint.h>

#include "http.h"

struct metrics;

/* Counters for the API requests of routes (borrowed, terminated by a {NULL} row; must outlive
 * the metrics). Returns new; NULL when out of memory. */
struct metrics *metrics_new(const struct http_route *routes);
/* NULL allowed. */
void metrics_free(struct metrics *m);

/* Records one answered request: row is the index in routes of the route whose pattern the path
 * matched (-1 when none: route="other"), method the request method (anything; unknown methods
 * count as "other"), status the HTTP status sent, dur_ns how long it took. */
void metrics_observe_api(struct metrics *m, int row, const char *method, int status,
                         int64_t dur_ns);

/* GET /metrics (route handler). */
void metrics_handle(struct http_request *req, struct http_response *resp);

#endif
