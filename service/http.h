/*
 * http: the HTTP front of loadtestd on libmicrohttpd — request bodies (capped), the route table
 * lookup, rendering of JSON answers and errors, one log line per request. The handlers
 * themselves live in routes.c.
 */
#ifndef LT_HTTP_H
#define LT_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "auth.h"
#include "lt_status.h"
#include "lt_util.h"

#define HTTP_BODY_MAX (1024 * 1024) /* request bodies above this answer 413 */
#define HTTP_HOLD_MAX 512           /* long-polls held at once; past it they answer at once */
/* A path parameter ({id}, {name}) is 1 to HTTP_SEGMENT_SIZE-1 characters of [A-Za-z0-9_-]. */
#define HTTP_SEGMENT_SIZE 64

struct app; /* routes.c */
struct http_server;
struct metrics;

struct http_request {
    const char *method; /* "GET", ...; HEAD arrives as "GET" */
    const char *path;   /* without the query string */
    void *conn;         /* struct MHD_Connection *, for http_query/http_header */
    const char *body;   /* NUL-terminated; body_len bytes */
    size_t body_len;
    const char *id; /* the path parameter ({id}, {name}) of the route, or NULL */
    struct app *app;
    char log_run[LT_ID_SIZE];   /* handlers set it so the request's log line names the run */
    struct http_server *server; /* the server answering (for http_server_metrics) */
    /* 1 when the handler may hold the request instead of answering (long-poll, see hold_ms);
     * 0 once the hold's deadline has passed, while stopping, or when HTTP_HOLD_MAX requests
     * are already held: the handler must then answer. */
    int may_hold;
};

struct http_response {
    int status;
    json_t *body; /* owned; NULL for an empty body */
    char location[96];
    char etag[96];
    char allow[64];
    int unauthorized; /* adds WWW-Authenticate */
    int replayed;     /* adds Idempotent-Replayed: true */
    /* A static (non-JSON) body, used instead of body when raw is set: the dashboard's assets.
     * raw is borrowed and must outlive the server (it is sent without a copy). */
    const void *raw;
    size_t raw_len;
    const char *cache_control; /* replaces the default "no-cache" when set */
    const char *csp;           /* Content-Security-Policy header when set */
    /* Long-poll: a handler that has no news yet (and req->may_hold) sets hold_ms > 0 and no
     * answer. The connection is then suspended (no HTTP thread waits) and the handler is called
     * again once a run changed (may_hold still 1: it may hold again) or when hold_ms after the
     * first hold have passed (may_hold 0). */
    int hold_ms;
    char hold_key[LT_ID_SIZE]; /* with hold_ms: the run whose changes matter ("" = any change) */
    /* A non-JSON answer: text (owned, malloc'd; sent instead of body) of type content_type. */
    char *text;
    const char *content_type; /* static string: Content-Type of raw or text */
    int retry_after_s;        /* > 0 adds Retry-After (429 rate_limited) */
};

typedef void (*http_handler)(struct http_request *req, struct http_response *resp);

struct http_route {
    const char *method;
    const char *pattern; /* "/v1/runs/{id}/cancel"; {id} or {name} matches one segment */
    http_handler fn;
    enum auth_need need; /* what the bearer token must allow */
};

struct sockaddr;

/* Implemented by the routes module: checks the Authorization header (may be NULL) of a request
 * against need with the tokens in force, then the API rate limit of the client (its token, or
 * peer, the client's address, when it has no valid token; routes with need AUTH_OPEN are never
 * limited). AUTH_LIMITED sets *retry_after_s. Called once per request, when its headers arrive,
 * so a long-poll resumed any number of times is charged once. */
enum auth_result routes_authorize(struct app *app, const char *authorization, enum auth_need need,
                                  const struct sockaddr *peer, int *retry_after_s);

/* Implemented by the routes module: the largest request body route r takes (bodies above it
 * answer 413 before being read): HTTP_BODY_MAX, or less for a route with its own cap. A function
 * rather than a field of the route table, so rows written without it stay valid. */
size_t routes_body_max(const struct http_route *r);

/* Implemented by the routes module: blocks until the run pool's change counter differs from
 * seen or timeout_ms passes (0: returns at once); returns the counter. */
unsigned long routes_wait_change(struct app *app, unsigned long seen, int timeout_ms);
/* Implemented by the routes module: copies the run pool's change counter and its recent changes
 * into out (pool_changes_snapshot), for the long-poll waiter to decide about every held request
 * from one copy (pool_changes_has). */
struct pool_changes;
void routes_changes_snapshot(struct app *app, struct pool_changes *out);

/* 1 when path matches pattern; then id receives the segment of its one parameter ("{id}",
 * "{name}", any "{...}") or "". A parameter is 1 to HTTP_SEGMENT_SIZE-1 characters of
 * [A-Za-z0-9_-]; an {asset} segment (static files) also allows dots after the first character
 * ("app.js"). */
int http_route_match(const char *pattern, const char *path, char id[HTTP_SEGMENT_SIZE]);

/* The only mapping from internal status to HTTP status code. */
int http_status_for(lt_status st);

/* Sets resp to the error shape for err (status from http_status_for). */
void http_error(struct http_response *resp, const struct lt_error *err);
/* Shorthand: builds the lt_error and calls http_error. field may be NULL. */
void http_fail(struct http_response *resp, lt_status st, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Query parameter or request header of the current request (borrowed), NULL when absent. */
const char *http_query(const struct http_request *req, const char *name);
const char *http_header(const struct http_request *req, const char *name);
/* Calls fn for each query parameter; stops and returns its non-zero value. */
int http_query_each(const struct http_request *req, int (*fn)(void *opaque, const char *key),
                    void *opaque);

/* Starts serving routes (borrowed, terminated by a {NULL} row) on host:port with `threads`
 * threads. *bound_port receives the actual port (for port 0). Returns new; NULL on failure with
 * a message in errbuf. */
struct http_server *http_start(const char *host, int port, int threads,
                               const struct http_route *routes, struct app *app, int *bound_port,
                               char *errbuf, size_t errlen);
/* The API request counters of s (borrowed; lives as long as s). */
struct metrics *http_server_metrics(struct http_server *s);
/* Requests currently held (long-polls). */
int http_server_held(struct http_server *s);

/* Stops accepting new connections and answers every held request at once (their handler runs
 * with may_hold = 0; no request is held after this); requests in progress complete. After it,
 * the server no longer calls routes_wait_change. */
void http_quiesce(struct http_server *s);
/* Stops and frees. NULL allowed. */
void http_stop(struct http_server *s);

#endif
