/*
 * tapi_util: clock and logging helpers for traces-api. Logging writes each line with one
 * fprintf on an unbuffered-per-line stderr, so lines from different threads do not interleave.
 */
#define _GNU_SOURCE
#include "tapi_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t tapi_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void tapi_log(const char *level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    char when[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One call, so one line even with several threads logging. */
    fprintf(stderr, "ts=%s.%03ldZ level=%s event=%s %s\n", when, ts.tv_nsec / 1000000, level, event,
            msg);
}

void tapi_log_clean(char *dst, size_t cap, const char *src)
{
    size_t i = 0, n = src ? strlen(src) : 0;

    if (cap == 0)
        return;
    /* Server messages end with a newline: leave trailing white space out. */
    while (n > 0 && (src[n - 1] == '\n' || src[n - 1] == '\r' || src[n - 1] == ' '))
        n--;
    for (size_t k = 0; k < n && i + 1 < cap; k++) {
        unsigned char c = (unsigned char)src[k];
        if (c < 0x20 || c == 0x7f) {
            if (i > 0 && dst[i - 1] != ' ') /* a line break or tab: one space */
                dst[i++] = ' ';
        } else {
            dst[i++] = c == '"' ? '\'' : c == '\\' ? '/' : (char)c;
        }
    }
    dst[i] = '\0';
}
