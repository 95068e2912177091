/* lt_util: clocks, ids, time formatting and the logger. */
#define _GNU_SOURCE
#include "lt_util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static atomic_int log_quiet;

int64_t lt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lt_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int lt_cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);

    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

void lt_mono_timespec(int64_t mono_ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000LL);
    ts->tv_nsec = (long)(mono_ns % 1000000000LL);
}

void lt_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < n) {
        /* Only ids depend on this; uniqueness, not secrecy, is what matters there. */
        uint64_t x = (uint64_t)lt_mono_ns() ^ ((uint64_t)lt_now_ms() << 20);
        for (; got < n; got++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[got] = (unsigned char)x;
        }
    }
}

void lt_new_run_id(char buf[LT_ID_SIZE])
{
    uint32_t rnd;
    uint64_t ms = (uint64_t)lt_now_ms() & 0xffffffffffffULL;

    lt_random_bytes(&rnd, sizeof(rnd));
    snprintf(buf, LT_ID_SIZE, "r%012llx%08x", (unsigned long long)ms, (unsigned)rnd);
}

void lt_format_time(int64_t ms, char buf[LT_TIME_SIZE])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    char date[24];

    gmtime_r(&secs, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, LT_TIME_SIZE, "%.19s.%03uZ", date, (unsigned)(ms % 1000) % 1000u);
}

void lt_log_set_quiet(int quiet)
{
    atomic_store(&log_quiet, quiet);
}

void lt_log(const char *level, const char *event, const char *fmt, ...)
{
    char line[2048];
    char ts[LT_TIME_SIZE];
    int n;
    va_list ap;

    if (atomic_load(&log_quiet) && strcmp(level, "error") != 0)
        return;
    lt_format_time(lt_now_ms(), ts);
    n = snprintf(line, sizeof(line), "ts=%s level=%s event=%s ", ts, level, event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line: stdio locks the stream, so lines from threads never interleave. */
    n = (int)strlen(line);
    if (n > 0 && (size_t)n < sizeof(line) - 1) {
        line[n] = '\n';
        line[n + 1] = '\0';
    }
    fputs(line, stderr);
}
