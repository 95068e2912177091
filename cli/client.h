/*
 * client: the loadtest CLI's HTTP client for the loadtestd REST API (libcurl, one keep-alive
 * connection, one thread).
 *
 * A request either gets an answer (any HTTP status; the body is kept raw and, when it is JSON,
 * parsed) or fails in transport (connection refused, timeout, aborted by an interrupt). The
 * bearer token is sent on every request and appears nowhere else: not in verbose output, not in
 * error messages, not in anything this module returns. client_send_retry() repeats a request
 * on transport failures, 5xx and 429 with backoff; callers use it only for requests that are
 * safe to repeat (GETs, cancel, and run creation because it carries an Idempotency-Key).
 */
#ifndef LT_CLI_CLIENT_H
#define LT_CLI_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>

struct client;

/* One request. Every pointer is borrowed for the duration of the call. */
struct client_req {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* absolute path + query, already percent-encoded */
    const char *body;            /* request body (JSON) or NULL for none */
    size_t body_len;             /* bytes of body */
    const char *if_none_match;   /* ETag to send as If-None-Match, or NULL/"" */
    const char *idempotency_key; /* Idempotency-Key header, or NULL */
    int hold; /* finish despite a first interrupt (only a second one aborts): for run creation,
                 so a run is never left created behind a request that looked aborted */
};

/* The outcome of one request. Filled by client_send*, emptied by client_resp_clear. */
struct client_resp {
    long status;         /* HTTP status; 0 when the request failed in transport */
    char *body;          /* raw body, NUL-terminated (owned; "" when none) */
    size_t body_len;     /* bytes of body */
    json_t *json;        /* body parsed as JSON, or NULL (owned) */
    char etag[256];      /* ETag header, "" when none */
    char location[512];  /* Location header, "" when none */
    int replayed;        /* Idempotent-Replayed: true */
    long retry_after;    /* Retry-After in seconds, -1 when none */
    int timed_out;       /* transport failure was a timeout */
    int aborted;         /* transport failure was an interrupt (see client_new) */
    char transport[256]; /* transport failure message, "" when there was an answer */
};

/* Returns a new client for base URL server ("http://host:port", no trailing path needed), or
 * NULL with a message in err. token (borrowed, copied) may be NULL or "" for none. interrupts
 * (borrowed, must outlive the client) is a counter a signal handler increments; a request that
 * is in flight when it changes is aborted. verbose != 0 logs requests and answers on stderr with
 * the token masked. */
struct client *client_new(const char *server, const char *token, int verbose,
                          const volatile sig_atomic_t *interrupts, char *err, size_t errlen);
void client_free(struct client *c);

/* The server URL as given, with any user:password@ masked; borrowed from c. */
const char *client_server_display(const struct client *c);
/* Whether a token is configured. */
int client_has_token(const struct client *c);

/* Sends req once. Returns 0 when an answer arrived (resp->status set), -1 on a transport
 * failure (resp->transport says why). resp is cleared first; caller clears it afterwards. */
int client_send(struct client *c, const struct client_req *req, struct client_resp *resp);

/* Like client_send but repeats up to retries more times, after 0.5 s, 1 s, 2 s, ... (or the
 * answer's Retry-After, capped at 10 s), while the outcome is a transport failure other than an
 * interrupt, a 5xx or a 429. Returns as client_send does for the last attempt. */
int client_send_retry(struct client *c, const struct client_req *req, int retries,
                      struct client_resp *resp);

void client_resp_clear(struct client_resp *resp);

/* Writes "code: message (field /x)" from an error answer's body, or "HTTP status N" when the
 * body has no error shape, or the transport message. */
void client_describe_error(const struct client *c, const struct client_resp *resp, char *out,
                           size_t outlen);

/* The "error.code" of an error answer, or "" (borrowed from resp). */
const char *client_error_code(const struct client_resp *resp);
/* The "error.message" of an error answer, or "" (borrowed from resp). */
const char *client_error_message(const struct client_resp *resp);

/* Percent-encodes s for a path segment or query value into out. Returns -1 when out is too
 * small. */
int client_escape(const char *s, char *out, size_t outlen);

/* Sleeps ms milliseconds unless the interrupt counter changes; returns -1 when it did. */
int client_sleep_ms(const struct client *c, long ms);

#endif
