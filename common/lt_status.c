/* lt_status: names of the internal status values and the error setter. */
#include "lt_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lt_status_code(lt_status st)
{
    switch (st) {
    case LT_OK:
        return "ok";
    case LT_ERR_INVALID_JSON:
        return "invalid_json";
    case LT_ERR_INVALID_SPEC:
        return "invalid_spec";
    case LT_ERR_INVALID_PARAM:
        return "invalid_parameter";
    case LT_ERR_NOT_FOUND:
        return "not_found";
    case LT_ERR_METHOD_NOT_ALLOWED:
        return "method_not_allowed";
    case LT_ERR_UNAUTHORIZED:
        return "unauthorized";
    case LT_ERR_FORBIDDEN:
        return "forbidden";
    case LT_ERR_FORBIDDEN_TARGET:
        return "forbidden_target";
    case LT_ERR_TOO_MANY_RUNS:
        return "too_many_runs";
    case LT_ERR_PAYLOAD_TOO_LARGE:
        return "payload_too_large";
    case LT_ERR_CONFLICT:
        return "conflict";
    case LT_ERR_UNAVAILABLE:
        return "unavailable";
    case LT_ERR_NOMEM:
        return "out_of_memory";
    case LT_ERR_IO:
        return "io_error";
    case LT_ERR_LIMIT_EXCEEDED:
        return "limit_exceeded";
    case LT_ERR_RATE_LIMITED:
        return "rate_limited";
    case LT_ERR_INTERNAL:
        break;
    }
    return "internal";
}

lt_status lt_error_set(struct lt_error *err, lt_status st, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return st;
    err->status = st;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return st;
}
