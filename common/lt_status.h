/*
 * lt_status: the one status enum used inside loadtestd.
 *
 * Every module (storage, runners, service) reports failures with these values. Exactly one
 * place, service/http.c (http_status_for), maps them to HTTP status codes; the snake_case
 * names returned by lt_status_code() are the "code" strings of the REST error shape.
 */
#ifndef LT_STATUS_H
#define LT_STATUS_H

#include <stddef.h>

typedef enum lt_status {
    LT_OK = 0,
    LT_ERR_INVALID_JSON,       /* body is not parseable JSON */
    LT_ERR_INVALID_SPEC,       /* JSON parsed but a field is wrong; lt_error.field names it */
    LT_ERR_INVALID_PARAM,      /* a query parameter is wrong */
    LT_ERR_NOT_FOUND,          /* no such run / route */
    LT_ERR_METHOD_NOT_ALLOWED, /* route exists, method does not */
    LT_ERR_UNAUTHORIZED,       /* missing or wrong token */
    LT_ERR_FORBIDDEN,          /* token lacks the right */
    LT_ERR_FORBIDDEN_TARGET,   /* target not on the allowlist */
    LT_ERR_TOO_MANY_RUNS,      /* run queue is full */
    LT_ERR_PAYLOAD_TOO_LARGE,  /* body over the cap */
    LT_ERR_CONFLICT,           /* state does not allow the operation */
    LT_ERR_UNAVAILABLE,        /* store cannot write (disk full, read-only), shutting down */
    LT_ERR_NOMEM,              /* allocation failed */
    LT_ERR_IO,                 /* storage or network I/O failed */
    LT_ERR_INTERNAL,           /* a bug: should not happen */
    LT_ERR_LIMIT_EXCEEDED,     /* the spec is valid but above an operator cap (--max-*) */
    LT_ERR_RATE_LIMITED        /* the client sent more API requests than --api-rate allows */
} lt_status;

/* A status with an optional human message and JSON pointer naming the faulty field. */
struct lt_error {
    lt_status status;
    char message[256];
    char field[128]; /* JSON pointer, "" when no single field is at fault */
};

/* Returns the snake_case code for a status ("invalid_spec", ...); static string. */
const char *lt_status_code(lt_status st);

/* Sets err (may be NULL) and returns st. field may be NULL. printf-style message. */
lt_status lt_error_set(struct lt_error *err, lt_status st, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
