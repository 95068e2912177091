/*
 * http: libmicrohttpd glue.
 *
 * Threads: libmicrohttpd runs `threads` internal threads, each with its own epoll loop over its
 * share of the connections. Each request gets a struct req_ctx (owned by the connection,
 * freed in on_completed). On the first call for a request (headers complete, no body read yet)
 * `admit` matches the route, checks the token, charges the API rate limit (once per request) and
 * checks the announced Content-Length against the route's cap (routes_body_max: HTTP_BODY_MAX or
 * smaller). A request it refuses (404, 405, 401, 403, 429, 413) that announces a body is answered
 * at once, before any of the body is read, and libmicrohttpd closes the connection after the answer
 * (it reads none of that body), so an unauthenticated client cannot make the daemon buffer a body;
 * one without a body is answered on the next call as usual, keeping the connection. An admitted
 * request's body accumulates in req_ctx up to the cap; a chunked body that grows past it ends the
 * connection at once, without an answer (libmicrohttpd 0.9.75 cannot queue one in the middle of a
 * body; logged as 413). Handlers run on these threads, so they must never wait for a run; they only
 * validate, talk to the store and enqueue.
 *
 * Long-polls (DESIGN): a handler with no news yet sets resp->hold_ms instead of answering. The
 * HTTP thread then suspends the connection (MHD_suspend_connection; libmicrohttpd stops polling
 * it) and links its req_ctx into `held`; no thread waits for it. One thread, "http-waiter",
 * sleeps in routes_wait_change (the run pool's change counter: state changes and progress
 * reports) for at most HOLD_TICK_MS, copies the pool's recent changes once
 * (routes_changes_snapshot: the pool remembers which runs its last changes were of), then resumes
 * (MHD_resume_connection) every held request whose run changed according to that copy, whose
 * deadline passed, or all of them when stopping. A resumed request runs its handler again on an
 * HTTP thread, which answers or holds again (the original deadline is kept). A spurious wake-up
 * costs one store read.
 * Lock: `hold_lock` guards held, nunfinished, waiter_stop, the writes of nheld and stopping, and
 *   the hold fields of every req_ctx; hold_cond wakes http_quiesce when nunfinished drops to 0.
 *   Order: hold_lock, then libmicrohttpd's own locks (suspend and resume are called with
 *   hold_lock held). hold_lock is never held while calling into the pool: the waiter takes its
 *   snapshot first, so a slow pool lock (a cancel of a queued run holds it across a store
 *   write, an fsync) never reaches hold_lock. Requests that are not long-polls never take
 * hold_lock: hold_allowed reads the atomic `stopping` and the request's own deadline (written only
 * by the request's own thread, in hold_request). Cap: at most HTTP_HOLD_MAX requests are held; past
 * it the handler is called with may_hold = 0 and answers at once (held connections count against
 * the limit of 1024). Metrics: every answered request is counted in on_completed (metrics.c,
 * atomics).
 */
#define _GNU_SOURCE
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "pool.h"

#define HOLD_TICK_MS 200  /* the waiter looks at deadlines and the stop flag at least this often */
#define DRAIN_MS     2000 /* how long http_quiesce lets released long-polls finish answering */

struct req_ctx;

struct http_server {
    struct MHD_Daemon *mhd;
    /* The listening socket handed back by MHD_quiesce_daemon; with libmicrohttpd's own threads
     * it may be closed only after MHD_stop_daemon (a worker may still be using it). */
    MHD_socket quiesced_fd;
    const struct http_route *routes;
    struct app *app;
    struct metrics *metrics;

    pthread_mutex_t hold_lock; /* guards: held, nunfinished, waiter_stop, the writes of nheld
                                  and stopping, and the hold_* fields of every req_ctx */
    pthread_cond_t hold_cond;
    struct req_ctx *held; /* suspended requests, linked by hold_next */
    atomic_int nheld;     /* read without the lock (GET /metrics) */
    int nunfinished;      /* requests held at least once and not completed yet */
    atomic_int stopping;  /* no more holds; read without the lock (hold_allowed) */
    int waiter_stop;
    pthread_t waiter;
    int waiter_started;
    atomic_ulong changes;     /* the pool's change counter as the waiter last saw it */
    struct pool_changes snap; /* the waiter's copy of the pool's recent changes (waiter only) */
};

struct req_ctx {
    int64_t start_ns;
    char *buf;
    size_t len;
    size_t cap;
    int status;
    char run[LT_ID_SIZE];
    char method[12];
    char path[160]; /* sanitised for the log line */
    size_t bytes_in;
    int route_row; /* index of the matched route pattern in the table, -1 when none */
    const struct http_route *route; /* set by admit: the route whose handler answers */
    int refused;                    /* admit refused it; the answer is in refusal */
    struct http_response refusal;   /* owned while refused and not sent */
    char id[HTTP_SEGMENT_SIZE];     /* its path parameter, "" when none */
    struct MHD_Connection *conn;
    /* Long-poll state, guarded by the server's hold_lock. */
    int64_t hold_deadline_ns;  /* 0: never held */
    unsigned long hold_seen;   /* change counter before the handler last read the store */
    char hold_key[LT_ID_SIZE]; /* the run the handler waits for; "" = any */
    int hold_linked;           /* in the server's held list (suspended) */
    struct req_ctx *hold_next;
};

int http_status_for(lt_status st)
{
    switch (st) {
    case LT_OK:
        return 200;
    case LT_ERR_INVALID_JSON:
    case LT_ERR_INVALID_SPEC:
    case LT_ERR_INVALID_PARAM:
        return 400;
    case LT_ERR_UNAUTHORIZED:
        return 401;
    case LT_ERR_FORBIDDEN:
    case LT_ERR_FORBIDDEN_TARGET:
    case LT_ERR_LIMIT_EXCEEDED:
        return 403;
    case LT_ERR_NOT_FOUND:
        return 404;
    case LT_ERR_METHOD_NOT_ALLOWED:
        return 405;
    case LT_ERR_CONFLICT:
        return 409;
    case LT_ERR_PAYLOAD_TOO_LARGE:
        return 413;
    case LT_ERR_TOO_MANY_RUNS:
    case LT_ERR_RATE_LIMITED:
        return 429;
    case LT_ERR_UNAVAILABLE:
        return 503;
    case LT_ERR_NOMEM:
    case LT_ERR_IO:
    case LT_ERR_INTERNAL:
        break;
    }
    return 500;
}

void http_error(struct http_response *resp, const struct lt_error *err)
{
    json_t *e = json_pack("{s:s, s:s}", "code", lt_status_code(err->status), "message",
                          err->message[0] ? err->message : lt_status_code(err->status));

    if (e && err->field[0])
        json_object_set_new(e, "field", json_string(err->field));
    json_decref(resp->body);
    resp->status = http_status_for(err->status);
    resp->body = e ? json_pack("{s:o}", "error", e) : NULL;
}

void http_fail(struct http_response *resp, lt_status st, const char *field, const char *fmt, ...)
{
    struct lt_error err;
    va_list ap;

    memset(&err, 0, sizeof(err));
    err.status = st;
    snprintf(err.field, sizeof(err.field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof(err.message), fmt, ap);
    va_end(ap);
    http_error(resp, &err);
}

const char *http_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct query_iter {
    int (*fn)(void *opaque, const char *key);
    void *opaque;
    int rc;
};

static enum MHD_Result query_iter_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct query_iter *it = cls;
    (void)kind;
    (void)value;
    it->rc = it->fn(it->opaque, key);
    return it->rc ? MHD_NO : MHD_YES;
}

int http_query_each(const struct http_request *req, int (*fn)(void *opaque, const char *key),
                    void *opaque)
{
    struct query_iter it = {fn, opaque, 0};

    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_iter_cb, &it);
    return it.rc;
}

/* Copies s into out replacing anything that could break a key=value log line. */
static void sanitise(char *out, size_t outlen, const char *s)
{
    size_t n = 0;

    for (; s && *s && n + 1 < outlen; s++)
        out[n++] = (*s > 32 && *s < 127 && *s != '"' && *s != '=') ? *s : '?';
    out[n] = '\0';
}

static int id_segment_ok(const char *seg, size_t len, int dots)
{
    if (len == 0 || len >= HTTP_SEGMENT_SIZE)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = seg[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-' || (dots && c == '.' && i > 0)))
            return 0;
    }
    return 1;
}

int http_route_match(const char *pattern, const char *path, char id[HTTP_SEGMENT_SIZE])
{
    const char *p = pattern;
    const char *s = path;

    id[0] = '\0';
    while (*p && *s) {
        if (*p == '{') {
            int asset = strncmp(p, "{asset}", 7) == 0;
            size_t len = strcspn(s, "/");
            const char *close = strchr(p, '}');
            if (close == NULL || !id_segment_ok(s, len, asset))
                return 0;
            memcpy(id, s, len);
            id[len] = '\0';
            p = close + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct req_ctx *ctx,
                                     struct http_response *resp, int head)
{
    char *text = NULL;
    size_t len = 0;
    struct MHD_Response *r;
    enum MHD_Result rc;

    if (resp->text && resp->status != 204 && resp->status != 304) {
        text = resp->text; /* taken */
        resp->text = NULL;
        len = strlen(text);
    } else if (resp->body && resp->status != 204 && resp->status != 304) {
        text = json_dumps(resp->body, JSON_COMPACT);
        if (text == NULL) {
            resp->status = 500;
        } else {
            len = strlen(text);
            text[len++] = '\n'; /* json_dumps leaves room: replaced NUL, length excludes it */
        }
    }
    (void)head; /* libmicrohttpd drops the body of answers to HEAD itself */
    if (resp->raw && text == NULL && resp->status != 304) {
        /* A static asset: sent from the binary's read-only data, never copied or freed. */
        r = MHD_create_response_from_buffer(resp->raw_len, (void *)resp->raw,
                                            MHD_RESPMEM_PERSISTENT);
        if (r && resp->content_type)
            MHD_add_response_header(r, "Content-Type", resp->content_type);
    } else {
        r = MHD_create_response_from_buffer(len, text,
                                            text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (r && text)
            MHD_add_response_header(r, "Content-Type",
                                    resp->content_type ? resp->content_type
                                                       : "application/json; charset=utf-8");
    }
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Cache-Control",
                            resp->cache_control ? resp->cache_control : "no-cache");
    if (resp->csp) {
        MHD_add_response_header(r, "Content-Security-Policy", resp->csp);
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
    if (resp->location[0])
        MHD_add_response_header(r, "Location", resp->location);
    if (resp->etag[0])
        MHD_add_response_header(r, "ETag", resp->etag);
    if (resp->allow[0])
        MHD_add_response_header(r, "Allow", resp->allow);
    if (resp->replayed)
        MHD_add_response_header(r, "Idempotent-Replayed", "true");
    if (resp->unauthorized)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"loadtestd\"");
    if (resp->retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", resp->retry_after_s);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ctx->status = resp->status;
    rc = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

/* The body cap of route r (HTTP_BODY_MAX unless the routes module gives it a smaller one). */
static size_t route_body_max(const struct http_route *r)
{
    return r ? routes_body_max(r) : HTTP_BODY_MAX;
}

/* Admission, on the first call for a request (headers complete, no body read yet): matches the
 * route, checks the token, charges the API rate limit and refuses a Content-Length over the
 * route's cap. Returns 0 with ctx->route and ctx->id set; -1 with the error answer (404, 405,
 * 401, 403, 429, 413) in resp, to be sent before any of the body is read. */
static int admit(struct http_server *s, struct MHD_Connection *conn, struct req_ctx *ctx,
                 const char *url, const char *method, struct http_response *resp)
{
    char allow[64] = "";
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    int path_known = 0;

    for (const struct http_route *r = s->routes; r->method; r++) {
        if (!http_route_match(r->pattern, url, ctx->id))
            continue;
        if (!path_known)
            ctx->route_row = (int)(r - s->routes);
        path_known = 1;
        if (strcmp(r->method, m) != 0) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", r->method);
            continue;
        }
        ctx->route_row = (int)(r - s->routes);
        const union MHD_ConnectionInfo *peer =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        int retry_after = 0;
        enum auth_result ar = routes_authorize(
            s->app, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), r->need,
            peer ? peer->client_addr : NULL, &retry_after);
        if (ar == AUTH_LIMITED) {
            resp->retry_after_s = retry_after;
            http_fail(resp, LT_ERR_RATE_LIMITED, NULL,
                      "too many API requests from this client (--api-rate); retry after %d s",
                      retry_after);
            return -1;
        }
        if (ar == AUTH_MISSING || ar == AUTH_BAD) {
            resp->unauthorized = 1;
            http_fail(resp, LT_ERR_UNAUTHORIZED, NULL,
                      ar == AUTH_MISSING ? "this route needs 'Authorization: Bearer TOKEN'"
                                         : "the bearer token is not valid");
            return -1;
        }
        if (ar == AUTH_DENIED) {
            http_fail(resp, LT_ERR_FORBIDDEN, NULL,
                      "this token may only read; %s %s needs a "
                      "write token",
                      m, r->pattern);
            return -1;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > route_body_max(r)) {
            http_fail(resp, LT_ERR_PAYLOAD_TOO_LARGE, NULL, "request body is larger than %zu bytes",
                      route_body_max(r));
            return -1;
        }
        ctx->route = r;
        return 0;
    }
    if (path_known) {
        snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
        http_fail(resp, LT_ERR_METHOD_NOT_ALLOWED, NULL, "%s is not allowed here; allowed: %s", m,
                  allow);
        return -1;
    }
    http_fail(resp, LT_ERR_NOT_FOUND, NULL, "no such route");
    return -1;
}

/* Runs the handler of the route admit found, with the whole body. */
static void dispatch(struct http_server *s, struct MHD_Connection *conn, struct req_ctx *ctx,
                     const char *url, const char *method, int may_hold, struct http_response *resp)
{
    struct http_request req = {.method = strcmp(method, "HEAD") == 0 ? "GET" : method,
                               .path = url,
                               .conn = conn,
                               .body = ctx->buf ? ctx->buf : "",
                               .body_len = ctx->len,
                               .id = ctx->id[0] ? ctx->id : NULL,
                               .app = s->app,
                               .server = s,
                               .may_hold = may_hold};

    req.log_run[0] = '\0';
    ctx->route->fn(&req, resp);
    memcpy(ctx->run, req.log_run, sizeof(ctx->run));
}

/* Tries to hold the request (suspend its connection). Returns 1 when held; 0 when it must be
 * answered now (stopping, or HTTP_HOLD_MAX requests held). */
static int hold_request(struct http_server *s, struct req_ctx *ctx, int hold_ms, const char *key,
                        unsigned long seen)
{
    int held = 0;

    pthread_mutex_lock(&s->hold_lock);
    if (!atomic_load(&s->stopping) && atomic_load(&s->nheld) < HTTP_HOLD_MAX) {
        if (ctx->hold_deadline_ns == 0) {
            ctx->hold_deadline_ns = lt_mono_ns() + (int64_t)hold_ms * 1000000;
            s->nunfinished++;
        }
        ctx->hold_seen = seen;
        snprintf(ctx->hold_key, sizeof(ctx->hold_key), "%s", key);
        ctx->hold_linked = 1;
        ctx->hold_next = s->held;
        s->held = ctx;
        atomic_fetch_add(&s->nheld, 1);
        /* Under hold_lock, so the waiter cannot resume it before it is suspended. */
        MHD_suspend_connection(ctx->conn);
        held = 1;
    }
    pthread_mutex_unlock(&s->hold_lock);
    return held;
}

/* 1 when the handler may still hold the request (its deadline has not passed). Lock-free, so
 * every request can ask: stopping is atomic, and hold_deadline_ns is written only by this
 * request's own thread (hold_request); the waiter only reads it. */
static int hold_allowed(struct http_server *s, const struct req_ctx *ctx)
{
    return !atomic_load(&s->stopping) &&
           (ctx->hold_deadline_ns == 0 || lt_mono_ns() < ctx->hold_deadline_ns);
}

static void resp_clear(struct http_response *resp)
{
    json_decref(resp->body);
    free(resp->text);
    memset(resp, 0, sizeof(*resp));
}

/* 1 when the request announces a body (a non-zero Content-Length, or any Transfer-Encoding). */
static int body_announced(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL ||
           (cl && strtoull(cl, NULL, 10) > 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req_ctx *ctx = *con_cls;
    struct http_response resp;
    enum MHD_Result rc;

    (void)version;
    if (ctx == NULL) {
        ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL)
            return MHD_NO;
        ctx->start_ns = lt_mono_ns();
        ctx->route_row = -1;
        ctx->conn = conn;
        sanitise(ctx->method, sizeof(ctx->method), method);
        sanitise(ctx->path, sizeof(ctx->path), url);
        *con_cls = ctx;
        /* Route, token and announced size are checked before any of the body is read: a
         * request that will be refused costs no buffering. Answered now, libmicrohttpd reads
         * none of its body and closes the connection after the answer. */
        if (admit(s, conn, ctx, url, method, &ctx->refusal) != 0) {
            ctx->refused = 1;
            if (!body_announced(conn))
                return MHD_YES; /* answered on the next call, keeping the connection */
            rc = send_response(conn, ctx, &ctx->refusal, strcmp(method, "HEAD") == 0);
            resp_clear(&ctx->refusal);
            return rc;
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        ctx->bytes_in += n;
        if (ctx->status != 0 || ctx->refused) { /* refused already: discard */
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (ctx->len + n > route_body_max(ctx->route)) {
            /* Only a chunked body gets here (a Content-Length over the cap was refused in
             * admit): refuse it now rather than read on without end. libmicrohttpd cannot queue
             * an answer in the middle of a body, so this ends the connection; the log line
             * records the 413. */
            ctx->status = 413;
            free(ctx->buf);
            ctx->buf = NULL;
            ctx->len = ctx->cap = 0;
            memset(&resp, 0, sizeof(resp));
            http_fail(&resp, LT_ERR_PAYLOAD_TOO_LARGE, NULL,
                      "request body is larger than %zu bytes", route_body_max(ctx->route));
            rc = send_response(conn, ctx, &resp, 0);
            resp_clear(&resp);
            *upload_data_size = 0;
            return rc;
        }
        if (ctx->len + n + 1 > ctx->cap) {
            size_t cap = ctx->cap ? ctx->cap : 4096;
            while (cap < ctx->len + n + 1)
                cap *= 2;
            char *nb = realloc(ctx->buf, cap);
            if (nb == NULL)
                return MHD_NO;
            ctx->buf = nb;
            ctx->cap = cap;
        }
        memcpy(ctx->buf + ctx->len, upload_data, n);
        ctx->len += n;
        ctx->buf[ctx->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->status != 0) /* already answered (refused before or during the body) */
        return MHD_YES;
    if (ctx->refused) { /* refused by admit, no body: answered now, keep-alive intact */
        rc = send_response(conn, ctx, &ctx->refusal, strcmp(method, "HEAD") == 0);
        resp_clear(&ctx->refusal);
        return rc;
    }
    /* Read before the handler reads the store: a change after that read moves the counter
     * past this value, so a held request cannot miss it. */
    unsigned long seen = atomic_load(&s->changes);
    int may_hold = hold_allowed(s, ctx);
    for (;;) {
        memset(&resp, 0, sizeof(resp));
        resp.status = 200;
        dispatch(s, conn, ctx, url, method, may_hold, &resp);
        int hold_ms = resp.hold_ms;
        char key[LT_ID_SIZE];
        if (hold_ms <= 0 || !may_hold)
            break;
        memcpy(key, resp.hold_key, sizeof(key));
        resp_clear(&resp);
        if (hold_request(s, ctx, hold_ms, key, seen))
            return MHD_YES; /* called again when resumed */
        may_hold = 0;       /* could not hold: ask the handler for its answer now */
    }
    rc = send_response(conn, ctx, &resp, strcmp(method, "HEAD") == 0);
    resp_clear(&resp);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req_ctx *ctx = *con_cls;
    (void)conn;

    if (ctx == NULL)
        return;
    if (ctx->status != 0)
        metrics_observe_api(s->metrics, ctx->route_row, ctx->method, ctx->status,
                            lt_mono_ns() - ctx->start_ns);
    /* hold_deadline_ns is written only by this request's thread, so a request that was never
     * held needs no lock here. A held connection is never completed while suspended
     * (libmicrohttpd does not even notice a disconnect then), so it is no longer in the list. */
    if (ctx->hold_deadline_ns != 0) {
        pthread_mutex_lock(&s->hold_lock);
        if (--s->nunfinished == 0)
            pthread_cond_broadcast(&s->hold_cond);
        pthread_mutex_unlock(&s->hold_lock);
    }
    lt_log("info", "http", "method=%s path=%s status=%d dur_ms=%.3f bytes_in=%zu%s%s%s",
           ctx->method, ctx->path, ctx->status, (double)(lt_mono_ns() - ctx->start_ns) / 1e6,
           ctx->bytes_in, ctx->run[0] ? " run=" : "", ctx->run,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    resp_clear(&ctx->refusal);
    free(ctx->buf);
    free(ctx);
    *con_cls = NULL;
}

/* 1 when the run c waits for may have changed since it was held, going by the snapshot snap;
 * else moves its mark to snap's counter (the changes since were of other runs). Does not call
 * into the pool. */
static int hold_news(struct req_ctx *c, const struct pool_changes *snap)
{
    if (c->hold_seen == snap->changes)
        return 0;
    if (c->hold_key[0] == '\0' || pool_changes_has(snap, c->hold_key, c->hold_seen))
        return 1;
    c->hold_seen = snap->changes;
    return 0;
}

/* Resumes held requests: all of them when stopping (snap may then be NULL), else those whose
 * run may have changed according to snap or whose deadline passed. Caller holds hold_lock. */
static void release_held_locked(struct http_server *s, const struct pool_changes *snap, int64_t now)
{
    struct req_ctx **pp = &s->held;

    while (*pp) {
        struct req_ctx *c = *pp;
        if (atomic_load(&s->stopping) || snap == NULL || now >= c->hold_deadline_ns ||
            hold_news(c, snap)) {
            *pp = c->hold_next;
            c->hold_next = NULL;
            c->hold_linked = 0;
            atomic_fetch_sub(&s->nheld, 1);
            MHD_resume_connection(c->conn);
        } else {
            pp = &c->hold_next;
        }
    }
}

/* "http-waiter": follows the pool's change counter and resumes held requests (see DESIGN). */
static void *waiter_main(void *arg)
{
    struct http_server *s = arg;
    unsigned long seen = atomic_load(&s->changes);

    for (;;) {
        int stop;

        pthread_mutex_lock(&s->hold_lock);
        stop = s->waiter_stop;
        pthread_mutex_unlock(&s->hold_lock);
        if (stop)
            return NULL;
        routes_wait_change(s->app, seen, HOLD_TICK_MS);
        /* One copy per wake, taken without hold_lock: the pool's lock is never waited for
         * while hold_lock is held. */
        routes_changes_snapshot(s->app, &s->snap);
        seen = s->snap.changes;
        atomic_store(&s->changes, seen);
        pthread_mutex_lock(&s->hold_lock);
        release_held_locked(s, &s->snap, lt_mono_ns());
        pthread_mutex_unlock(&s->hold_lock);
    }
}

struct metrics *http_server_metrics(struct http_server *s)
{
    return s->metrics;
}

int http_server_held(struct http_server *s)
{
    return atomic_load(&s->nheld);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    lt_log("warn", "mhd", "message=\"%s\"", msg);
}

struct http_server *http_start(const char *host, int port, int threads,
                               const struct http_route *routes, struct app *app, int *bound_port,
                               char *errbuf, size_t errlen)
{
    struct http_server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    const union MHD_DaemonInfo *info;

    if (s == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    s->quiesced_fd = MHD_INVALID_SOCKET;
    memset(&ss, 0, sizeof(ss));
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(errbuf, errlen, "listen address '%s' is not an IPv4 or IPv6 address", host);
        free(s);
        return NULL;
    }
    s->routes = routes;
    s->app = app;
    s->metrics = metrics_new(routes);
    if (s->metrics == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->hold_lock, NULL);
    lt_cond_init_mono(&s->hold_cond);
    atomic_init(&s->nheld, 0);
    atomic_init(&s->stopping, 0);
    atomic_init(&s->changes, routes_wait_change(app, 0, 0));
    s->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                              (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (s->mhd == NULL) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d (in use, or not an address of this host)",
                 host, port);
        http_stop(s);
        return NULL;
    }
    if (pthread_create(&s->waiter, NULL, waiter_main, s) != 0) {
        snprintf(errbuf, errlen, "cannot start the long-poll thread");
        http_stop(s);
        return NULL;
    }
    pthread_setname_np(s->waiter, "http-waiter");
    s->waiter_started = 1;
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : port;
    return s;
}

/* Answers every held request and stops the waiter; waits (bounded) until the requests that
 * were held have sent their answers. Idempotent. */
static void release_all(struct http_server *s)
{
    struct timespec until;

    pthread_mutex_lock(&s->hold_lock);
    atomic_store(&s->stopping, 1);
    s->waiter_stop = 1;
    release_held_locked(s, NULL, 0);
    pthread_cond_broadcast(&s->hold_cond);
    pthread_mutex_unlock(&s->hold_lock);
    if (s->waiter_started) {
        pthread_join(s->waiter, NULL);
        s->waiter_started = 0;
    }
    lt_mono_timespec(lt_mono_ns() + (int64_t)DRAIN_MS * 1000000, &until);
    pthread_mutex_lock(&s->hold_lock);
    while (s->nunfinished > 0 && s->mhd) {
        if (pthread_cond_timedwait(&s->hold_cond, &s->hold_lock, &until) != 0)
            break;
    }
    if (s->nunfinished > 0)
        lt_log("warn", "http", "event=drain unfinished_long_polls=%d", s->nunfinished);
    pthread_mutex_unlock(&s->hold_lock);
}

void http_quiesce(struct http_server *s)
{
    if (s && s->mhd && s->quiesced_fd == MHD_INVALID_SOCKET)
        s->quiesced_fd = MHD_quiesce_daemon(s->mhd);
    if (s)
        release_all(s);
}

void http_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    release_all(s); /* libmicrohttpd must not be stopped with suspended connections */
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        close(s->quiesced_fd);
    pthread_cond_destroy(&s->hold_cond);
    pthread_mutex_destroy(&s->hold_lock);
    metrics_free(s->metrics);
    free(s);
}
