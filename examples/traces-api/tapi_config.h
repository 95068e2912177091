/*
 * tapi_config: traces-api's settings, read once at start from flags and the environment into
 * a struct that is const from then on. Every setting is one row of the table in
 * tapi_config.c {name, env, type, min, max, default, help}; --help is printed from it.
 */
#ifndef TAPI_CONFIG_H
#define TAPI_CONFIG_H

#include <stdio.h>

struct tapi_config {
    char listen[128];     /* ADDR:PORT; port 0 = any free port */
    char pg_dsn[1024];    /* libpq connection string or URI; may hold a password: never log */
    char redis[256];      /* HOST:PORT */
    char table[64];       /* the traces table (one plain identifier) */
    int dim;              /* dimensions of the embedding column and of query vectors */
    int pool;             /* PostgreSQL connections */
    int threads;          /* libmicrohttpd thread pool size */
    int ef_search;        /* hnsw.ef_search for every connection */
    int rate_read;        /* searches per minute per API key (bucket capacity) */
    int rate_write;       /* key creations per minute per client IP (bucket capacity) */
    int redis_timeout_ms; /* connect and command timeout for Redis */
    int query_timeout_ms; /* statement_timeout for PostgreSQL */
    int wait_s;           /* at start, how long to keep retrying PostgreSQL and Redis */
    int key_cache;        /* API keys kept in memory */
    int key_cache_ttl_s;  /* how long a cached key is trusted before PostgreSQL is asked again */
    int debug_routes;     /* serve GET /api/v1/debug/query-vector */
};

enum tapi_config_result {
    TAPI_CONFIG_OK = 0,
    TAPI_CONFIG_EXIT_OK,   /* --help printed: exit 0 */
    TAPI_CONFIG_EXIT_USAGE /* an error was printed: exit 2 */
};

/* Fills cfg from defaults, then envp, then argv (flags win). Borrows everything; prints
 * --help on out and errors on err. */
enum tapi_config_result tapi_config_load(struct tapi_config *cfg, int argc, char **argv,
                                         const char *const *envp, FILE *out, FILE *err);

/* Splits "HOST:PORT" or "[V6]:PORT" into host (no brackets) and port. Returns 0, or -1 when
 * malformed. */
int tapi_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
