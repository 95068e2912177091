/*
 * http: libmicrohttpd glue.
 *
 * Threads: libmicrohttpd runs `threads` internal threads, each with its own epoll loop over its
 * share of the connections. Each request gets a struct req_ctx (owned by the connection,
 * freed in on_completed) that accumulates the body up to HTTP_BODY_MAX; past that the rest is
 * read and discarded and the answer is 413. Handlers run on these threads, so they must never
 * wait for a run; they only validate, talk to the store and enqueue.
 */
#define _GNU_SOURCE
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bodies announced larger than this are refused before reading them; smaller ones are read and
 * discarded past HTTP_BODY_MAX so the client sees the 413 rather than a reset. */
#define HTTP_DISCARD_MAX (64 * 1024 * 1024)

struct http_server {
    struct MHD_Daemon *mhd;
    const struct http_route *routes;
    struct app *app;
};

struct req_ctx {
    int64_t start_ns;
    char *buf;
    size_t len;
    size_t cap;
    int too_large;
    int status;
    char run[LT_ID_SIZE];
    char method[12];
    char path[160]; /* sanitised for the log line */
    size_t bytes_in;
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

static int id_segment_ok(const char *seg, size_t len)
{
    if (len == 0 || len >= HTTP_SEGMENT_SIZE)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = seg[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
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
            size_t len = strcspn(s, "/");
            const char *close = strchr(p, '}');
            if (close == NULL || !id_segment_ok(s, len))
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

    if (resp->body && resp->status != 204 && resp->status != 304) {
        text = json_dumps(resp->body, JSON_COMPACT);
        if (text == NULL) {
            resp->status = 500;
        } else {
            len = strlen(text);
            text[len++] = '\n'; /* json_dumps leaves room: replaced NUL, length excludes it */
        }
    }
    (void)head; /* libmicrohttpd drops the body of answers to HEAD itself */
    r = MHD_create_response_from_buffer(len, text,
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    if (text)
        MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
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
    ctx->status = resp->status;
    rc = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

static void dispatch(struct http_server *s, struct MHD_Connection *conn, struct req_ctx *ctx,
                     const char *url, const char *method, struct http_response *resp)
{
    char id[HTTP_SEGMENT_SIZE];
    char allow[64] = "";
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    int path_known = 0;

    if (ctx->too_large) {
        http_fail(resp, LT_ERR_PAYLOAD_TOO_LARGE, NULL, "request body is larger than %d bytes",
                  HTTP_BODY_MAX);
        return;
    }
    for (const struct http_route *r = s->routes; r->method; r++) {
        if (!http_route_match(r->pattern, url, id))
            continue;
        path_known = 1;
        if (strcmp(r->method, m) != 0) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", r->method);
            continue;
        }
        enum auth_result ar = routes_authorize(
            s->app, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), r->need);
        if (ar == AUTH_MISSING || ar == AUTH_BAD) {
            resp->unauthorized = 1;
            http_fail(resp, LT_ERR_UNAUTHORIZED, NULL,
                      ar == AUTH_MISSING ? "this route needs 'Authorization: Bearer TOKEN'"
                                         : "the bearer token is not valid");
            return;
        }
        if (ar == AUTH_DENIED) {
            http_fail(resp, LT_ERR_FORBIDDEN, NULL,
                      "this token may only read; %s %s needs a "
                      "write token",
                      m, r->pattern);
            return;
        }
        struct http_request req = {.method = m,
                                   .path = url,
                                   .conn = conn,
                                   .body = ctx->buf ? ctx->buf : "",
                                   .body_len = ctx->len,
                                   .id = id[0] ? id : NULL,
                                   .app = s->app};
        req.log_run[0] = '\0';
        r->fn(&req, resp);
        memcpy(ctx->run, req.log_run, sizeof(ctx->run));
        return;
    }
    if (path_known) {
        snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
        http_fail(resp, LT_ERR_METHOD_NOT_ALLOWED, NULL, "%s is not allowed here; allowed: %s", m,
                  allow);
        return;
    }
    http_fail(resp, LT_ERR_NOT_FOUND, NULL, "no such route");
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
        sanitise(ctx->method, sizeof(ctx->method), method);
        sanitise(ctx->path, sizeof(ctx->path), url);
        *con_cls = ctx;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > HTTP_DISCARD_MAX) {
            /* Not worth reading: answer now; libmicrohttpd closes the connection after. */
            memset(&resp, 0, sizeof(resp));
            ctx->too_large = 1;
            http_fail(&resp, LT_ERR_PAYLOAD_TOO_LARGE, NULL, "request body is larger than %d bytes",
                      HTTP_BODY_MAX);
            rc = send_response(conn, ctx, &resp, 0);
            json_decref(resp.body);
            return rc;
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        ctx->bytes_in += n;
        if (!ctx->too_large && ctx->len + n > HTTP_BODY_MAX) {
            ctx->too_large = 1;
            free(ctx->buf);
            ctx->buf = NULL;
            ctx->len = ctx->cap = 0;
        }
        if (!ctx->too_large) {
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
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->status != 0) /* already answered (oversized announcement) */
        return MHD_YES;
    memset(&resp, 0, sizeof(resp));
    resp.status = 200;
    dispatch(s, conn, ctx, url, method, &resp);
    rc = send_response(conn, ctx, &resp, strcmp(method, "HEAD") == 0);
    json_decref(resp.body);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req_ctx *ctx = *con_cls;
    (void)cls;
    (void)conn;

    if (ctx == NULL)
        return;
    lt_log("info", "http", "method=%s path=%s status=%d dur_ms=%.3f bytes_in=%zu%s%s%s",
           ctx->method, ctx->path, ctx->status, (double)(lt_mono_ns() - ctx->start_ns) / 1e6,
           ctx->bytes_in, ctx->run[0] ? " run=" : "", ctx->run,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    free(ctx->buf);
    free(ctx);
    *con_cls = NULL;
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
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;

    if (s == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
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
    s->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                              (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (s->mhd == NULL) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d (in use, or not an address of this host)",
                 host, port);
        free(s);
        return NULL;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : port;
    return s;
}

void http_quiesce(struct http_server *s)
{
    if (s && s->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

void http_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    free(s);
}
