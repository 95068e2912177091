/*
 * tapi_pg: the PostgreSQL connection pool and statements of traces-api (see tapi_pg.h).
 *
 * Ownership: conns[i] belongs to whichever thread holds slot i of `slots` (tapi_slots); no
 * lock is needed around a connection because no two threads ever hold the same slot. The
 * rest of struct tapi_pg is written once in tapi_pg_new and only read afterwards.
 */
#define _GNU_SOURCE
#include "tapi_pg.h"

#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapi_slots.h"

/* How long a request waits for a free connection before answering 503. */
#define POOL_WAIT_MS 5000

#define KEY_LOOKUP_SQL "SELECT 1 FROM api_keys WHERE key = $1"
#define KEY_INSERT_SQL "INSERT INTO api_keys (key, name) VALUES ($1, $2)"

struct conn {
    PGconn *pg;       /* NULL = closed; opened by the next holder of the slot */
    int search_ready; /* the "search" statement is prepared on pg */
};

struct tapi_pg {
    struct tapi_slots *slots;
    struct conn *conns; /* one per slot */
    int n;
    char *dsn; /* kept for reconnects; never logged; wiped on free */
    char search_sql[512];
    int ef_search;
    int query_timeout_ms;
    char where[256];
};

/* Notices ("relation already exists, skipping") are not errors; keep them off stderr. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void close_conn(struct conn *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
    c->search_ready = 0;
}

/* Runs one utility statement; returns 0, or -1 with the server's message in err. */
static int exec_simple(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    int ok =
        res && (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    if (!ok)
        tapi_log_clean(err, errlen, PQerrorMessage(pg));
    PQclear(res);
    return ok ? 0 : -1;
}

static int prepare(PGconn *pg, const char *name, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQprepare(pg, name, sql, 0, NULL);
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        tapi_log_clean(err, errlen, PQerrorMessage(pg));
    PQclear(res);
    return ok ? 0 : -1;
}

/* Opens c and sets the session up. Returns 0, or -1 with a message in err (c stays closed). */
static int open_conn(struct tapi_pg *pg, struct conn *c, char *err, size_t errlen)
{
    /* Defaults first: values from the DSN, expanded from "dbname", override them. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"3", "traces-api", pg->dsn, NULL};
    char sql[128], msg[512];
    int rc = -1;

    c->pg = PQconnectdbParams(keys, vals, 1);
    if (c->pg == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        tapi_log_clean(msg, sizeof(msg), PQerrorMessage(c->pg));
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", msg);
        goto out;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    /* Both parameters of the search are query-specific; a generic plan cannot see LIMIT's
     * value and could fall back to a sequential scan, so plan every execution. */
    snprintf(sql, sizeof(sql),
             "SET statement_timeout = %d; SET plan_cache_mode = force_custom_plan; "
             "SET hnsw.ef_search = %d",
             pg->query_timeout_ms, pg->ef_search);
    if (exec_simple(c->pg, sql, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "setting up the session failed: %s", msg);
        goto out;
    }
    /* pgvector >= 0.8: without an iterative scan an HNSW scan returns at most ef_search rows,
     * so a LIMIT above ef_search would come back short. Loading the type first makes pgvector
     * define its settings, so an older pgvector refuses here instead of keeping a
     * placeholder. Failing is fine: searches then return at most ef_search hits. */
    if (exec_simple(c->pg, "SELECT NULL::vector", msg, sizeof(msg)) != 0 ||
        exec_simple(c->pg, "SET hnsw.iterative_scan = strict_order", msg, sizeof(msg)) != 0) {
        if (c == &pg->conns[0])
            tapi_log("warn", "pg_iterative_scan",
                     "message=\"%s\" effect=\"a limit above ef_search returns at most ef_search "
                     "hits\"",
                     msg);
    }
    if (prepare(c->pg, "key_lookup", KEY_LOOKUP_SQL, msg, sizeof(msg)) != 0 ||
        prepare(c->pg, "key_insert", KEY_INSERT_SQL, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "preparing the key statements failed: %s", msg);
        goto out;
    }
    c->search_ready = 0;
    rc = 0;
out:
    if (rc != 0 && c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    return rc;
}

/* The first connection, with retries for up to wait_s: in compose the database may still be
 * starting. It also creates api_keys. */
static int open_first(struct tapi_pg *pg, int wait_s, char *err, size_t errlen)
{
    PGconn *boot = NULL;
    int64_t deadline = tapi_mono_ns() + (int64_t)wait_s * 1000000000;
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"3", "traces-api", pg->dsn, NULL};
    char msg[512];
    int rc = -1, logged = 0;

    for (;;) {
        boot = PQconnectdbParams(keys, vals, 1);
        if (boot && PQstatus(boot) == CONNECTION_OK)
            break;
        tapi_log_clean(msg, sizeof(msg), boot ? PQerrorMessage(boot) : "out of memory");
        PQfinish(boot);
        boot = NULL;
        if (tapi_mono_ns() >= deadline) {
            snprintf(err, errlen, "cannot connect to PostgreSQL: %s", msg);
            goto out;
        }
        if (!logged++)
            tapi_log("info", "pg_wait", "message=\"%s\" wait_s=%d", msg, wait_s);
        usleep(500 * 1000);
    }
    PQsetNoticeProcessor(boot, ignore_notice, NULL);
    snprintf(pg->where, sizeof(pg->where), "%s:%s/%s", PQhost(boot), PQport(boot), PQdb(boot));
    if (exec_simple(boot,
                    "CREATE TABLE IF NOT EXISTS api_keys (key text PRIMARY KEY, name text, "
                    "created_at timestamptz NOT NULL DEFAULT now())",
                    msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "creating table api_keys failed: %s", msg);
        goto out;
    }
    rc = 0;
out:
    PQfinish(boot);
    return rc;
}

struct tapi_pg *tapi_pg_new(const struct tapi_pg_options *opt, char *err, size_t errlen)
{
    struct tapi_pg *pg = NULL;
    PQconninfoOption *parsed = NULL;
    char *perr = NULL;

    /* libpq's parse errors quote pieces of the string, which may be the password: say only
     * that it does not parse. */
    parsed = PQconninfoParse(opt->dsn, &perr);
    PQfreemem(perr);
    if (parsed == NULL) {
        snprintf(err, errlen,
                 "the PostgreSQL connection string does not parse (details "
                 "withheld: they could quote the password)");
        goto fail;
    }
    PQconninfoFree(parsed);

    pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        goto oom;
    pg->n = opt->connections;
    pg->ef_search = opt->ef_search;
    pg->query_timeout_ms = opt->query_timeout_ms;
    pg->dsn = strdup(opt->dsn);
    pg->conns = calloc((size_t)pg->n, sizeof(struct conn));
    pg->slots = tapi_slots_new(pg->n);
    if (pg->dsn == NULL || pg->conns == NULL || pg->slots == NULL)
        goto oom;
    snprintf(pg->search_sql, sizeof(pg->search_sql),
             "SELECT id::text, title, embedding <=> $1::vector AS distance FROM \"%s\" "
             "ORDER BY embedding <=> $1::vector LIMIT $2",
             opt->table);
    if (open_first(pg, opt->wait_s, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < pg->n; i++) {
        if (open_conn(pg, &pg->conns[i], err, errlen) != 0)
            goto fail;
    }
    return pg;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    tapi_pg_free(pg);
    return NULL;
}

void tapi_pg_free(struct tapi_pg *pg)
{
    if (pg == NULL)
        return;
    for (int i = 0; pg->conns && i < pg->n; i++)
        close_conn(&pg->conns[i]);
    free(pg->conns);
    tapi_slots_free(pg->slots);
    if (pg->dsn) {
        explicit_bzero(pg->dsn, strlen(pg->dsn));
        free(pg->dsn);
    }
    free(pg);
}

const char *tapi_pg_where(const struct tapi_pg *pg)
{
    return pg->where;
}

/* One statement on a connection the caller holds. Returns TAPI_OK or a failure with a client
 * message in err; the caller checks PQstatus afterwards to tell a lost connection. */
typedef tapi_status (*pg_op)(struct tapi_pg *pg, struct conn *c, void *arg, char *err,
                             size_t errlen);

/* Takes a slot, opens its connection when closed, runs op; when the connection turns out to
 * be broken, closes it and (retry) runs op once more on a new one. */
static tapi_status run_op(struct tapi_pg *pg, pg_op op, void *arg, int retry, char *err,
                          size_t errlen)
{
    tapi_status st = TAPI_ERR_UNAVAILABLE;
    int slot = tapi_slots_acquire(pg->slots, POOL_WAIT_MS);

    if (slot < 0) {
        snprintf(err, errlen, "all %d PostgreSQL connections stayed busy for %d ms", pg->n,
                 POOL_WAIT_MS);
        return TAPI_ERR_UNAVAILABLE;
    }
    struct conn *c = &pg->conns[slot];
    for (int attempt = 0; attempt < (retry ? 2 : 1); attempt++) {
        if (c->pg == NULL && open_conn(pg, c, err, errlen) != 0) {
            st = TAPI_ERR_UNAVAILABLE;
            break;
        }
        st = op(pg, c, arg, err, errlen);
        if (PQstatus(c->pg) == CONNECTION_OK)
            break;
        tapi_log("warn", "pg_lost", "slot=%d retry=%d", slot, retry && attempt == 0);
        close_conn(c);
        st = TAPI_ERR_UNAVAILABLE;
        snprintf(err, errlen, "lost the connection to PostgreSQL");
    }
    tapi_slots_release(pg->slots, slot);
    return st;
}

/* Maps a failed result to a status and a client message; logs it. */
static tapi_status failed(PGconn *conn, PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char msg[512];

    tapi_log_clean(msg, sizeof(msg), primary ? primary : PQerrorMessage(conn));
    tapi_log("error", "pg_query", "statement=%s sqlstate=%s message=\"%s\"", what,
             state ? state : "-", msg);
    if (state && strcmp(state, "57014") == 0) {
        snprintf(err, errlen, "the %s query timed out", what);
        return TAPI_ERR_UNAVAILABLE;
    }
    if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0 ||
                  strcmp(state, "42704") == 0 || strcmp(state, "42883") == 0)) {
        /* No table, column, type or operator (yet): the data is not there, try later. */
        snprintf(err, errlen, "the %s query cannot run yet: %s", what, msg);
        return TAPI_ERR_UNAVAILABLE;
    }
    if (state && strncmp(state, "08", 2) == 0) {
        snprintf(err, errlen, "lost the connection to PostgreSQL");
        return TAPI_ERR_UNAVAILABLE;
    }
    snprintf(err, errlen, "the %s query failed: %s", what, msg);
    return TAPI_ERR_INTERNAL;
}

struct search_arg {
    const char *vec; /* binary */
    size_t vec_len;
    int limit;
    json_t *hits; /* set on success; owned by the caller of tapi_pg_search then */
};

static tapi_status op_search(struct tapi_pg *pg, struct conn *c, void *argp, char *err,
                             size_t errlen)
{
    struct search_arg *arg = argp;
    PGresult *res = NULL;
    json_t *hits = NULL;
    char limit[16], msg[512];
    const char *params[2] = {arg->vec, limit};
    /* $1 binary (its type, vector, comes from the cast in the statement), $2 text. */
    const int lengths[2] = {(int)arg->vec_len, 0};
    const int formats[2] = {1, 0};
    tapi_status st;

    if (!c->search_ready) {
        if (prepare(c->pg, "search", pg->search_sql, msg, sizeof(msg)) != 0) {
            if (PQstatus(c->pg) != CONNECTION_OK)
                return TAPI_ERR_UNAVAILABLE;
            tapi_log("warn", "pg_prepare_search", "message=\"%s\"", msg);
            snprintf(err, errlen, "the traces table is not ready: %s", msg);
            return TAPI_ERR_UNAVAILABLE;
        }
        c->search_ready = 1;
    }
    snprintf(limit, sizeof(limit), "%d", arg->limit);
    res = PQexecPrepared(c->pg, "search", 2, params, lengths, formats, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = failed(c->pg, res, "search", err, errlen);
        goto out;
    }
    hits = json_array();
    if (hits == NULL)
        goto oom;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *title = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
        double d = PQgetisnull(res, i, 2) ? NAN : strtod(PQgetvalue(res, i, 2), NULL);
        /* A zero embedding has no cosine distance (NaN): JSON has no NaN, so null. */
        json_t *hit = json_pack("{s:s, s:s?, s:o}", "id", PQgetvalue(res, i, 0), "title", title,
                                "distance", isfinite(d) ? json_real(d) : json_null());
        if (hit == NULL || json_array_append_new(hits, hit) != 0)
            goto oom;
    }
    arg->hits = hits;
    hits = NULL;
    st = TAPI_OK;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
    st = TAPI_ERR_INTERNAL;
out:
    json_decref(hits);
    PQclear(res);
    return st;
}

tapi_status tapi_pg_search(struct tapi_pg *pg, const char *vec, size_t vec_len, int limit,
                           json_t **hits, char *err, size_t errlen)
{
    struct search_arg arg = {.vec = vec, .vec_len = vec_len, .limit = limit, .hits = NULL};
    tapi_status st = run_op(pg, op_search, &arg, 1, err, errlen);

    if (st != TAPI_OK) {
        json_decref(arg.hits);
        return st;
    }
    *hits = arg.hits;
    return TAPI_OK;
}

struct key_arg {
    const char *key;
    const char *name;
    int found;
};

static tapi_status op_key_exists(struct tapi_pg *pg, struct conn *c, void *argp, char *err,
                                 size_t errlen)
{
    struct key_arg *arg = argp;
    const char *params[1] = {arg->key};
    PGresult *res = PQexecPrepared(c->pg, "key_lookup", 1, params, NULL, NULL, 0);
    tapi_status st = TAPI_OK;

    (void)pg;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        st = failed(c->pg, res, "key lookup", err, errlen);
    else
        arg->found = PQntuples(res) > 0;
    PQclear(res);
    return st;
}

tapi_status tapi_pg_key_exists(struct tapi_pg *pg, const char *key, int *found, char *err,
                               size_t errlen)
{
    struct key_arg arg = {.key = key, .name = NULL, .found = 0};
    tapi_status st = run_op(pg, op_key_exists, &arg, 1, err, errlen);

    *found = arg.found;
    return st;
}

static tapi_status op_key_insert(struct tapi_pg *pg, struct conn *c, void *argp, char *err,
                                 size_t errlen)
{
    struct key_arg *arg = argp;
    const char *params[2] = {arg->key, arg->name};
    PGresult *res = PQexecPrepared(c->pg, "key_insert", 2, params, NULL, NULL, 0);
    tapi_status st = TAPI_OK;

    (void)pg;
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        st = failed(c->pg, res, "key insert", err, errlen);
    PQclear(res);
    return st;
}

tapi_status tapi_pg_key_insert(struct tapi_pg *pg, const char *key, const char *name, char *err,
                               size_t errlen)
{
    struct key_arg arg = {.key = key, .name = name, .found = 0};

    /* No retry: when the connection broke mid-insert the row may exist already. */
    return run_op(pg, op_key_insert, &arg, 0, err, errlen);
}

static tapi_status op_ping(struct tapi_pg *pg, struct conn *c, void *argp, char *err, size_t errlen)
{
    char msg[512];

    (void)pg;
    (void)argp;
    if (exec_simple(c->pg, "SELECT 1", msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "%s", msg);
        return TAPI_ERR_UNAVAILABLE;
    }
    return TAPI_OK;
}

tapi_status tapi_pg_ping(struct tapi_pg *pg, char *err, size_t errlen)
{
    return run_op(pg, op_ping, NULL, 1, err, errlen);
}
