/*
 * tapi_util: what every module of traces-api shares — the one status enum of the internals
 * (traces_api.c is the only place that turns it into an HTTP status), the monotonic clock
 * and key=value logging on stderr.
 */
#ifndef TAPI_UTIL_H
#define TAPI_UTIL_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TAPI_OK = 0,
    TAPI_ERR_INVALID_JSON,  /* 400: the body is not JSON / not an object */
    TAPI_ERR_INVALID_FIELD, /* 400: one member is missing, mistyped or out of range */
    TAPI_ERR_UNAUTHORIZED,  /* 401: X-API-Key missing or unknown */
    TAPI_ERR_NOT_FOUND,     /* 404 */
    TAPI_ERR_METHOD,        /* 405 */
    TAPI_ERR_TOO_LARGE,     /* 413 */
    TAPI_ERR_RATE_LIMITED,  /* 429 */
    TAPI_ERR_INTERNAL,      /* 500: a query failed for a reason a retry will not fix */
    TAPI_ERR_UNAVAILABLE,   /* 503: PostgreSQL or Redis cannot be reached, or all busy */
} tapi_status;

/* Monotonic clock in nanoseconds. */
int64_t tapi_mono_ns(void);

/* Logs "ts=... level=LEVEL event=EVENT " + the formatted rest as one line on stderr.
 * Never pass an API key, a DSN or a password. */
void tapi_log(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies src into dst (cap bytes) with control characters as one space, '"' as '\'' and '\\' as
 * '/', without trailing white space, so that text from a server (an error message) fits in a
 * quoted value of a one-line log entry or a JSON message. */
void tapi_log_clean(char *dst, size_t cap, const char *src);

#endif
