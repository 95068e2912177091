/*
 * tapi_pg: traces-api's PostgreSQL side — a fixed pool of connections and the three
 * statements the service runs: the nearest-neighbour search, the API-key lookup and the
 * API-key insert.
 *
 * Each connection is prepared once when it is (re)opened: statement_timeout, hnsw.ef_search,
 * hnsw.iterative_scan = strict_order where pgvector has it (>= 0.8: a LIMIT above ef_search
 * still gets LIMIT rows), and the prepared statements. The search statement is prepared
 * lazily, so the service can start before the traces table exists (loadtestd's generate run
 * may create it later); until then searches answer 503.
 *
 * A connection found broken is closed and reopened by the next thread that takes its slot;
 * read-only calls retry once on a fresh connection when the failure was the connection's.
 */
#ifndef TAPI_PG_H
#define TAPI_PG_H

#include <jansson.h>
#include <stddef.h>

#include "tapi_util.h"

struct tapi_pg;

struct tapi_pg_options {
    const char *dsn;      /* borrowed for tapi_pg_new only; may hold a password */
    const char *table;    /* a plain identifier (checked by tapi_config) */
    int connections;      /* pool size */
    int ef_search;        /* hnsw.ef_search */
    int query_timeout_ms; /* statement_timeout */
    int wait_s;           /* keep retrying the first connection this long */
};

/* Opens every connection and creates api_keys when missing. Returns new pool, or NULL with a
 * message (never the DSN) in err. */
struct tapi_pg *tapi_pg_new(const struct tapi_pg_options *opt, char *err, size_t errlen);
/* Closes every connection (NULL allowed). No call may be in progress. */
void tapi_pg_free(struct tapi_pg *pg);

/* Runs the k-NN search for the query vector vec (borrowed: vec_len bytes of pgvector's binary
 * format, see tapi_qvec_binary) with limit rows. On TAPI_OK *hits is a new JSON array of
 * {"id", "title", "distance"}; caller decrefs. On failure err holds a message for the
 * client. */
tapi_status tapi_pg_search(struct tapi_pg *pg, const char *vec, size_t vec_len, int limit,
                           json_t **hits, char *err, size_t errlen);

/* Sets *found to 1 when key (borrowed) is in api_keys. On failure err holds a message. */
tapi_status tapi_pg_key_exists(struct tapi_pg *pg, const char *key, int *found, char *err,
                               size_t errlen);

/* Inserts key with name (both borrowed; name may be NULL). On failure err holds a message. */
tapi_status tapi_pg_key_insert(struct tapi_pg *pg, const char *key, const char *name, char *err,
                               size_t errlen);

/* TAPI_OK when a connection answers SELECT 1; else err says why. */
tapi_status tapi_pg_ping(struct tapi_pg *pg, char *err, size_t errlen);

/* "host:port/db" of the server, for logs (no user, no password). Borrowed, fixed at start. */
const char *tapi_pg_where(const struct tapi_pg *pg);

#endif
