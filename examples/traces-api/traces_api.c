/*
 * traces-api: the reference target loadtestd's demo tests against. A small REST service over
 * the `traces` table that loadtestd's generate run fills: API keys stored in PostgreSQL,
 * nearest-neighbour search through pgvector's HNSW index, and a per-client token bucket in
 * Redis. It is a test fixture, written to the product's standard: bounded inputs, one owner
 * per connection and per JSON value, clear errors.
 *
 *   POST /api/v1/keys            {"name": "..."}?        -> 201 {"api_key", "name"}
 *   POST /api/v1/traces/search   {"q": "...", "limit"}   -> 200 {"hits": [...], "took_ms"}
 *   GET  /healthz                                        -> 200 {"status": "ok"}
 *   GET  /api/v1/debug/query-vector?q=...  (only with --debug-routes)
 *
 * DESIGN — threads and what each owns:
 *   main          reads the configuration, opens PostgreSQL (tapi_pg) and Redis (tapi_rl),
 *                 starts libmicrohttpd, prints PORT=n, then waits in sigwait for SIGTERM or
 *                 SIGINT; it stops libmicrohttpd (which joins the HTTP threads) before
 *                 freeing anything the HTTP threads use. Signals are blocked in every thread.
 *   HTTP threads  libmicrohttpd's pool of --threads threads, each with its own epoll loop
 *                 over its share of the connections. A request's struct req (body buffer)
 *                 belongs to its connection's thread. Handlers run synchronously on these
 *                 threads: for the length of one call a thread holds one PostgreSQL
 *                 connection (a slot of tapi_pg's pool: mutex + condvar, one PGconn per slot)
 *                 and one Redis context (a slot of tapi_rl's pool, sized to the threads so
 *                 it never waits), and gives them back before answering.
 *   Shared state  the API-key cache (tapi_keys: one mutex) and the slot pools' free lists
 *                 (one mutex each). Everything else in struct app is written by main before
 *                 the HTTP threads start and only read afterwards.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tapi_config.h"
#include "tapi_keys.h"
#include "tapi_pg.h"
#include "tapi_qvec.h"
#include "tapi_ratelimit.h"
#include "tapi_util.h"

extern char **environ;

#define BODY_MAX     (16 * 1024)   /* larger request bodies answer 413 */
#define DISCARD_MAX  (1024 * 1024) /* announced bodies above this are not even read */
#define Q_MAX_CHARS  1000
#define LIMIT_MAX    100
#define LIMIT_DEF    10
#define NAME_MAX_LEN 200
#define BUCKET_READ  "traces-api:rl:read:"
#define BUCKET_WRITE "traces-api:rl:write:"

struct app {
    const struct tapi_config *cfg;
    struct tapi_pg *pg;     /* its own pool; any HTTP thread */
    struct tapi_rl *rl;     /* its own pool; any HTTP thread */
    struct tapi_keys *keys; /* its own lock */
};

/* Per request, owned by the connection's thread; freed in on_completed. */
struct req {
    int64_t start_ns;
    char *buf; /* body, NUL-terminated */
    size_t len, cap;
    int too_large;
    int status; /* answered status, for the log */
};

struct response {
    int status;
    json_t *body; /* owned; one json_decref in on_request */
    int has_rl;   /* add the RateLimit-* headers from rl */
    struct tapi_rl_result rl;
    int retry_after; /* add Retry-After: rl.retry_after_s */
    char allow[32];  /* for 405 */
};

/* ---------------------------------------------------------------------------------------
 * Status mapping: the only place internal status becomes HTTP status and error code. */

static const struct {
    tapi_status st;
    int http;
    const char *code;
} status_map[] = {
    {TAPI_OK, 200, "ok"},
    {TAPI_ERR_INVALID_JSON, 400, "invalid_json"},
    {TAPI_ERR_INVALID_FIELD, 400, "invalid_request"},
    {TAPI_ERR_UNAUTHORIZED, 401, "unauthorized"},
    {TAPI_ERR_NOT_FOUND, 404, "not_found"},
    {TAPI_ERR_METHOD, 405, "method_not_allowed"},
    {TAPI_ERR_TOO_LARGE, 413, "payload_too_large"},
    {TAPI_ERR_RATE_LIMITED, 429, "rate_limited"},
    {TAPI_ERR_INTERNAL, 500, "internal"},
    {TAPI_ERR_UNAVAILABLE, 503, "unavailable"},
};

static int status_http(tapi_status st, const char **code)
{
    for (size_t i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++) {
        if (status_map[i].st == st) {
            *code = status_map[i].code;
            return status_map[i].http;
        }
    }
    *code = "internal";
    return 500;
}

/* Sets resp to the error body {"error": {"code", "message", "field"?}}. field (borrowed) is a
 * JSON pointer or NULL. */
__attribute__((format(printf, 4, 5))) static void fail(struct response *resp, tapi_status st,
                                                       const char *field, const char *fmt, ...)
{
    char msg[512];
    const char *code;
    json_t *err;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp->status = status_http(st, &code);
    json_decref(resp->body);
    err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (err && field)
        json_object_set_new(err, "field", json_string(field));
    resp->body = err ? json_pack("{s:o}", "error", err) : NULL;
}

/* ---------------------------------------------------------------------------------------
 * Request helpers */

/* Copies at most max bytes of s into dst (cap bytes), cut at a UTF-8 character boundary,
 * escaped as one JSON pointer token (~ -> ~0, / -> ~1) after a leading '/'. */
static void pointer_token(char *dst, size_t cap, const char *s, size_t max)
{
    size_t n = strlen(s), i = 0;

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    dst[i++] = '/';
    for (size_t k = 0; k < n && i + 3 < cap; k++) {
        if (s[k] == '~' || s[k] == '/') {
            dst[i++] = '~';
            dst[i++] = s[k] == '~' ? '0' : '1';
        } else {
            dst[i++] = s[k];
        }
    }
    dst[i] = '\0';
}

/* Code points in a valid UTF-8 string of len bytes. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* Parses body as a JSON object. Returns new object (caller decrefs), or NULL with resp set. */
static json_t *parse_object(const struct req *rq, struct response *resp)
{
    json_error_t jerr;
    json_t *obj;

    if (rq->len == 0) {
        fail(resp, TAPI_ERR_INVALID_JSON, NULL, "the body must be a JSON object");
        return NULL;
    }
    obj = json_loadb(rq->buf, rq->len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        fail(resp, TAPI_ERR_INVALID_JSON, NULL, "the body is not JSON: line %d column %d: %s",
             jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        fail(resp, TAPI_ERR_INVALID_JSON, NULL, "the body must be a JSON object");
        return NULL;
    }
    return obj;
}

/* 0 when every member of obj is one of names (NULL-terminated); else sets resp. */
static int only_members(json_t *obj, const char *const *names, struct response *resp)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v)
    {
        int known = 0;
        for (const char *const *n = names; *n; n++)
            known |= strcmp(*n, k) == 0;
        if (!known) {
            char ptr[160];
            pointer_token(ptr, sizeof(ptr), k, 64);
            fail(resp, TAPI_ERR_INVALID_FIELD, ptr, "unknown member '%s'", ptr + 1);
            return -1;
        }
    }
    return 0;
}

/* Checks q (a JSON value, or NULL when absent): a string of 1..Q_MAX_CHARS characters.
 * Returns the string (borrowed from q), or NULL with resp set. */
static const char *check_q(json_t *q, struct response *resp)
{
    if (q == NULL) {
        fail(resp, TAPI_ERR_INVALID_FIELD, "/q", "q is required");
        return NULL;
    }
    if (!json_is_string(q)) {
        fail(resp, TAPI_ERR_INVALID_FIELD, "/q", "q must be a string");
        return NULL;
    }
    size_t chars = utf8_chars(json_string_value(q), json_string_length(q));
    if (chars < 1 || chars > Q_MAX_CHARS) {
        fail(resp, TAPI_ERR_INVALID_FIELD, "/q", "q must be 1 to %d characters long, not %zu",
             Q_MAX_CHARS, chars);
        return NULL;
    }
    return json_string_value(q);
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static void client_ip(struct MHD_Connection *conn, char *buf, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(buf, cap, "unknown");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)cap);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)cap);
}

/* Takes a token from bucket prefix+id at per_minute. Returns 0 when allowed (resp carries the
 * RateLimit headers), -1 with resp set to 429 or 503. */
static int rate_limit(struct app *app, const char *prefix, const char *id, long per_minute,
                      struct response *resp)
{
    char bucket[128], err[512];
    tapi_status st;

    snprintf(bucket, sizeof(bucket), "%s%s", prefix, id);
    st = tapi_rl_take(app->rl, bucket, per_minute, &resp->rl, err, sizeof(err));
    if (st != TAPI_OK) {
        /* Fail closed: without Redis nobody's rate can be known. */
        fail(resp, TAPI_ERR_UNAVAILABLE, NULL, "rate limiter unavailable: %s", err);
        return -1;
    }
    resp->has_rl = 1;
    if (!resp->rl.allowed) {
        resp->retry_after = 1;
        fail(resp, TAPI_ERR_RATE_LIMITED, NULL,
             "rate limit of %ld requests per minute reached; retry in %ld s", per_minute,
             resp->rl.retry_after_s);
        return -1;
    }
    return 0;
}

/* Checks X-API-Key: well formed, then the cache, then api_keys. Returns the key (borrowed
 * from the request), or NULL with resp set to 401 or 503. */
static const char *authenticate(struct app *app, struct MHD_Connection *conn, struct response *resp)
{
    const char *key = header(conn, "X-API-Key");
    char err[512];
    int found = 0;

    if (key == NULL || key[0] == '\0') {
        fail(resp, TAPI_ERR_UNAUTHORIZED, NULL,
             "missing X-API-Key header (create a key with POST /api/v1/keys)");
        return NULL;
    }
    /* Not our shape: unknown without asking the database. */
    if (!tapi_key_well_formed(key)) {
        fail(resp, TAPI_ERR_UNAUTHORIZED, NULL, "unknown API key");
        return NULL;
    }
    if (tapi_keys_cached(app->keys, key))
        return key;
    tapi_status st = tapi_pg_key_exists(app->pg, key, &found, err, sizeof(err));
    if (st != TAPI_OK) {
        fail(resp, st, NULL, "cannot check the API key: %s", err);
        return NULL;
    }
    if (!found) {
        fail(resp, TAPI_ERR_UNAUTHORIZED, NULL, "unknown API key");
        return NULL;
    }
    tapi_keys_put(app->keys, key);
    return key;
}

/* ---------------------------------------------------------------------------------------
 * Handlers */

typedef void (*handler_fn)(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                           struct response *resp);

static void handle_healthz(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                           struct response *resp)
{
    char pg_err[256] = "", rd_err[256] = "";
    tapi_status pg = tapi_pg_ping(app->pg, pg_err, sizeof(pg_err));
    tapi_status rd = tapi_rl_ping(app->rl, rd_err, sizeof(rd_err));

    (void)conn;
    (void)rq;
    resp->status = (pg == TAPI_OK && rd == TAPI_OK) ? 200 : 503;
    if (resp->status == 200)
        resp->body = json_pack("{s:s}", "status", "ok");
    else
        resp->body =
            json_pack("{s:s, s:s, s:s}", "status", "unavailable", "postgres",
                      pg == TAPI_OK ? "ok" : pg_err, "redis", rd == TAPI_OK ? "ok" : rd_err);
}

static void handle_create_key(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                              struct response *resp)
{
    static const char *const members[] = {"name", NULL};
    json_t *obj = NULL, *name;
    const char *name_s = NULL;
    char ip[64], key[TAPI_KEY_SIZE], err[512];
    tapi_status st;

    client_ip(conn, ip, sizeof(ip));
    if (rate_limit(app, BUCKET_WRITE, ip, app->cfg->rate_write, resp) != 0)
        goto out;
    /* The body is optional; an empty one means no name. */
    if (rq->len > strspn(rq->buf, " \t\r\n")) {
        obj = parse_object(rq, resp);
        if (obj == NULL || only_members(obj, members, resp) != 0)
            goto out;
        name = json_object_get(obj, "name");
        if (name && !json_is_null(name)) {
            size_t chars = json_is_string(name)
                               ? utf8_chars(json_string_value(name), json_string_length(name))
                               : 0;
            if (!json_is_string(name) || chars < 1 || chars > NAME_MAX_LEN) {
                fail(resp, TAPI_ERR_INVALID_FIELD, "/name",
                     "name must be a string of 1 to %d characters, or null", NAME_MAX_LEN);
                goto out;
            }
            name_s = json_string_value(name);
        }
    }
    if (tapi_key_generate(key) != 0) {
        fail(resp, TAPI_ERR_INTERNAL, NULL, "the kernel gave no randomness for a key");
        goto out;
    }
    st = tapi_pg_key_insert(app->pg, key, name_s, err, sizeof(err));
    if (st != TAPI_OK) {
        fail(resp, st, NULL, "cannot store the key: %s", err);
        goto out;
    }
    tapi_keys_put(app->keys, key);
    resp->status = 201;
    resp->body = json_pack("{s:s, s:s?}", "api_key", key, "name", name_s);
out:
    json_decref(obj);
}

static void handle_search(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                          struct response *resp)
{
    static const char *const members[] = {"q", "limit", NULL};
    const struct tapi_config *cfg = app->cfg;
    json_t *obj = NULL, *hits = NULL, *lim;
    float *vec = NULL;
    char *bin = NULL;
    char err[512];
    const char *key, *q;
    int limit = LIMIT_DEF;
    tapi_status st;

    key = authenticate(app, conn, resp);
    if (key == NULL || rate_limit(app, BUCKET_READ, key, cfg->rate_read, resp) != 0)
        goto out;
    obj = parse_object(rq, resp);
    if (obj == NULL || only_members(obj, members, resp) != 0)
        goto out;
    q = check_q(json_object_get(obj, "q"), resp);
    if (q == NULL)
        goto out;
    lim = json_object_get(obj, "limit");
    if (lim) {
        if (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
            json_integer_value(lim) > LIMIT_MAX) {
            fail(resp, TAPI_ERR_INVALID_FIELD, "/limit", "limit must be an integer from 1 to %d",
                 LIMIT_MAX);
            goto out;
        }
        limit = (int)json_integer_value(lim);
    }
    vec = malloc((size_t)cfg->dim * sizeof(float));
    bin = malloc(tapi_qvec_binary_size(cfg->dim));
    if (vec == NULL || bin == NULL) {
        fail(resp, TAPI_ERR_INTERNAL, NULL, "out of memory");
        goto out;
    }
    tapi_qvec_make(q, strlen(q), cfg->dim, vec); /* jansson refuses \u0000 in strings */
    tapi_qvec_binary(vec, cfg->dim, bin);
    st = tapi_pg_search(app->pg, bin, tapi_qvec_binary_size(cfg->dim), limit, &hits, err,
                        sizeof(err));
    if (st != TAPI_OK) {
        fail(resp, st, NULL, "%s", err);
        goto out;
    }
    resp->status = 200;
    resp->body = json_pack("{s:o, s:f}", "hits", hits, "took_ms",
                           (double)(tapi_mono_ns() - rq->start_ns) / 1e6);
    hits = NULL; /* the "o" above took it, even when json_pack failed */
out:
    json_decref(hits);
    free(bin);
    free(vec);
    json_decref(obj);
}

/* GET /api/v1/debug/query-vector?q=...: the vector a search for q would use, so tests can
 * run the exact same query in SQL. Only served with --debug-routes. */
static void handle_debug_qvec(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                              struct response *resp)
{
    const char *qs = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "q");
    int dim = app->cfg->dim;
    float *vec = NULL;
    char *text = NULL;
    json_t *q = NULL, *arr = NULL;
    char seed[24];
    size_t cap = tapi_qvec_text_size(dim);

    (void)rq;
    q = qs ? json_string(qs) : NULL; /* NULL too when qs is not UTF-8: "must be a string" */
    if (check_q(qs ? (q ? q : json_null()) : NULL, resp) == NULL)
        goto out;
    vec = malloc((size_t)dim * sizeof(float));
    text = malloc(cap);
    arr = json_array();
    if (vec == NULL || text == NULL || arr == NULL)
        goto oom;
    tapi_qvec_make(qs, strlen(qs), dim, vec);
    if (tapi_qvec_format(vec, dim, text, cap) < 0)
        goto oom;
    for (int i = 0; i < dim; i++) {
        if (json_array_append_new(arr, json_real((double)vec[i])) != 0)
            goto oom;
    }
    snprintf(seed, sizeof(seed), "%016llx", (unsigned long long)tapi_qvec_seed(qs, strlen(qs)));
    resp->status = 200;
    resp->body = json_pack("{s:O, s:s, s:i, s:O, s:s}", "q", q, "seed", seed, "dim", dim, "vector",
                           arr, "text", text);
    goto out;
oom:
    fail(resp, TAPI_ERR_INTERNAL, NULL, "out of memory");
out:
    json_decref(arr);
    json_decref(q);
    free(text);
    free(vec);
}

struct route {
    const char *method;
    const char *path;
    handler_fn fn;
    int debug; /* only with --debug-routes */
};

static const struct route routes[] = {
    {"GET", "/healthz", handle_healthz, 0},
    {"POST", "/api/v1/keys", handle_create_key, 0},
    {"POST", "/api/v1/traces/search", handle_search, 0},
    {"GET", "/api/v1/debug/query-vector", handle_debug_qvec, 1},
    {NULL, NULL, NULL, 0},
};

static void dispatch(struct app *app, struct MHD_Connection *conn, const struct req *rq,
                     const char *url, const char *method, struct response *resp)
{
    int path_known = 0;

    if (rq->too_large) {
        fail(resp, TAPI_ERR_TOO_LARGE, NULL, "the body is larger than %d bytes", BODY_MAX);
        return;
    }
    for (const struct route *r = routes; r->method; r++) {
        if (strcmp(r->path, url) != 0 || (r->debug && !app->cfg->debug_routes))
            continue;
        if (strcmp(r->method, method) == 0) {
            r->fn(app, conn, rq, resp);
            return;
        }
        path_known = 1;
        snprintf(resp->allow, sizeof(resp->allow), "%s", r->method);
    }
    if (path_known)
        fail(resp, TAPI_ERR_METHOD, NULL, "%.16s is not allowed here; allowed: %s", method,
             resp->allow);
    else
        fail(resp, TAPI_ERR_NOT_FOUND, NULL, "no such route");
}

/* ---------------------------------------------------------------------------------------
 * libmicrohttpd glue */

static enum MHD_Result send_response(struct MHD_Connection *conn, struct req *rq,
                                     struct response *resp)
{
    char *text = NULL;
    size_t len = 0;
    char num[32];
    struct MHD_Response *r;
    enum MHD_Result rc;

    if (resp->body == NULL) /* a json_pack above ran out of memory */
        fail(resp, TAPI_ERR_INTERNAL, NULL, "out of memory");
    if (resp->body)
        /* 10 significant digits: exact for float4 values, and no "9.4837900000000008". */
        text = json_dumps(resp->body, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (text) {
        len = strlen(text);
        text[len++] = '\n'; /* over the NUL: the length excludes it, the buffer has it */
    } else {
        resp->status = 500;
    }
    r = MHD_create_response_from_buffer(len, text,
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    if (text)
        MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (resp->has_rl) {
        snprintf(num, sizeof(num), "%ld", resp->rl.limit);
        MHD_add_response_header(r, "RateLimit-Limit", num);
        snprintf(num, sizeof(num), "%ld", resp->rl.remaining);
        MHD_add_response_header(r, "RateLimit-Remaining", num);
        /* Refused: when the next token arrives; else when the bucket is full again. */
        snprintf(num, sizeof(num), "%ld",
                 resp->rl.allowed ? resp->rl.reset_s : resp->rl.retry_after_s);
        MHD_add_response_header(r, "RateLimit-Reset", num);
    }
    if (resp->retry_after) {
        snprintf(num, sizeof(num), "%ld", resp->rl.retry_after_s);
        MHD_add_response_header(r, "Retry-After", num);
    }
    if (resp->allow[0])
        MHD_add_response_header(r, "Allow", resp->allow);
    if (resp->status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "ApiKey header=\"X-API-Key\"");
    rq->status = resp->status;
    rc = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct app *app = cls;
    struct req *rq = *con_cls;
    struct response resp;
    enum MHD_Result rc;

    (void)version;
    if (rq == NULL) {
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL)
            return MHD_NO;
        rq->start_ns = tapi_mono_ns();
        *con_cls = rq;
        const char *cl = header(conn, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > DISCARD_MAX) {
            /* Not worth reading: answer now; libmicrohttpd closes the connection after. */
            memset(&resp, 0, sizeof(resp));
            rq->too_large = 1;
            fail(&resp, TAPI_ERR_TOO_LARGE, NULL, "the body is larger than %d bytes", BODY_MAX);
            rc = send_response(conn, rq, &resp);
            json_decref(resp.body);
            return rc;
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || rq->len + n > BODY_MAX) {
            /* Read and drop the rest so the client sees the 413 rather than a reset. */
            rq->too_large = 1;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 1024;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *nb = realloc(rq->buf, cap);
            if (nb == NULL)
                return MHD_NO;
            rq->buf = nb;
            rq->cap = cap;
        }
        memcpy(rq->buf + rq->len, upload_data, n);
        rq->len += n;
        rq->buf[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->status != 0) /* already answered (oversized announcement) */
        return MHD_YES;
    if (rq->buf == NULL)
        rq->buf = ""; /* not freed: on_completed frees only what cap says was allocated */
    memset(&resp, 0, sizeof(resp));
    dispatch(app, conn, rq, url, method, &resp);
    rc = send_response(conn, rq, &resp);
    json_decref(resp.body);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *con_cls;

    (void)cls;
    (void)conn;
    if (rq == NULL)
        return;
    if (rq->status >= 500 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        tapi_log(rq->status >= 500 ? "warn" : "info", "http", "status=%d dur_ms=%.3f%s", rq->status,
                 (double)(tapi_mono_ns() - rq->start_ns) / 1e6,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    if (rq->cap)
        free(rq->buf);
    free(rq);
    *con_cls = NULL;
}

/* libmicrohttpd hands its own printf format: the attribute tells the compiler so. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512], clean[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    tapi_log_clean(clean, sizeof(clean), msg);
    tapi_log("warn", "mhd", "message=\"%s\"", clean);
}

/* Starts libmicrohttpd on host:port. Returns the daemon, or NULL with a message in err. */
static struct MHD_Daemon *start_http(struct app *app, const char *host, int port, int *bound,
                                     char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;

    memset(&ss, 0, sizeof(ss));
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "listen address '%s' is not an IPv4 or IPv6 address", host);
        return NULL;
    }
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, app,
                         MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                         (unsigned)app->cfg->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address of this host)",
                 host, port);
        return NULL;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *bound = info ? info->port : port;
    return d;
}

int main(int argc, char **argv)
{
    struct tapi_config cfg;
    struct app app = {0};
    struct MHD_Daemon *http = NULL;
    char host[128], rhost[256], err[1024];
    int port = 0, rport = 0, bound = 0, sig = 0, rc = 1;
    sigset_t sigs;

    switch (tapi_config_load(&cfg, argc, argv, (const char *const *)environ, stdout, stderr)) {
    case TAPI_CONFIG_OK:
        break;
    case TAPI_CONFIG_EXIT_OK:
        return 0;
    case TAPI_CONFIG_EXIT_USAGE:
        return 2;
    }
    tapi_split_hostport(cfg.listen, host, sizeof(host), &port); /* checked by config */
    tapi_split_hostport(cfg.redis, rhost, sizeof(rhost), &rport);
    app.cfg = &cfg;

    /* Block before any thread exists, so every thread inherits the mask and only sigwait
     * below takes these signals. SIGPIPE: a client that went away is not a reason to die. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    app.keys = tapi_keys_new((size_t)cfg.key_cache, cfg.key_cache_ttl_s);
    if (app.keys == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto out;
    }
    struct tapi_pg_options pgo = {.dsn = cfg.pg_dsn,
                                  .table = cfg.table,
                                  .connections = cfg.pool,
                                  .ef_search = cfg.ef_search,
                                  .query_timeout_ms = cfg.query_timeout_ms,
                                  .wait_s = cfg.wait_s};
    app.pg = tapi_pg_new(&pgo, err, sizeof(err));
    if (app.pg == NULL)
        goto out;
    app.rl =
        tapi_rl_new(rhost, rport, cfg.threads, cfg.redis_timeout_ms, cfg.wait_s, err, sizeof(err));
    if (app.rl == NULL)
        goto out;
    http = start_http(&app, host, port, &bound, err, sizeof(err));
    if (http == NULL)
        goto out;
    tapi_log("info", "start",
             "listen=%s:%d pg=%s redis=%s:%d table=%s dim=%d pool=%d threads=%d ef_search=%d "
             "rate_read=%d rate_write=%d debug_routes=%d",
             host, bound, tapi_pg_where(app.pg), rhost, rport, cfg.table, cfg.dim, cfg.pool,
             cfg.threads, cfg.ef_search, cfg.rate_read, cfg.rate_write, cfg.debug_routes);
    printf("PORT=%d\n", bound);
    fflush(stdout);

    sigwait(&sigs, &sig);
    tapi_log("info", "stop", "signal=%d", sig);
    rc = 0;
out:
    if (rc != 0)
        tapi_log("error", "start_failed", "message=\"%s\"", err);
    if (http)
        MHD_stop_daemon(http); /* joins the HTTP threads: nothing uses what follows now */
    tapi_rl_free(app.rl);
    tapi_pg_free(app.pg);
    tapi_keys_free(app.keys);
    return rc;
}
