/*
 * routes: the REST API of loadtestd (see openapi/openapi.yaml) — the route table and handlers.
 */
#ifndef LT_ROUTES_H
#define LT_ROUTES_H

#include "http.h"
#include "pool.h"
#include "store.h"

struct lt_allow;

/* Everything a handler may use; borrowed by the HTTP server for its lifetime. */
struct app {
    struct store *store;
    struct pool *pool;
    const struct auth *auth;      /* NULL: no tokens (the daemon then serves loopback only) */
    const struct lt_allow *allow; /* target allowlist */
};

/* The route table, terminated by a row of NULLs. */
extern const struct http_route routes_table[];

/* Renders a stored run as the run document of the API. full = 0 gives the summary used by
 * GET /v1/runs (no spec, progress, result; verdict reduced to pass and summary).
 * Returns new; caller decrefs. */
json_t *routes_run_document(const struct run_record *r, int full);

#endif
