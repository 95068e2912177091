/*
 * lt_util: clocks, run ids, RFC 3339 time strings and key=value logging shared by every module.
 */
#ifndef LT_UTIL_H
#define LT_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LT_ID_LEN    21 /* "r" + 20 hex digits + NUL = 22 bytes; see lt_new_run_id */
#define LT_ID_SIZE   24
#define LT_TIME_SIZE 32

/* Wall clock in milliseconds since the epoch. */
int64_t lt_now_ms(void);
/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
int64_t lt_mono_ns(void);

/* Initialises c to time its waits on CLOCK_MONOTONIC, so that a step of the wall clock neither
 * stretches nor cuts a timed wait. Returns pthread_cond_init's result. */
int lt_cond_init_mono(pthread_cond_t *c);
/* The deadline for pthread_cond_timedwait on a lt_cond_init_mono condition: mono_ns on the
 * lt_mono_ns clock. */
void lt_mono_timespec(int64_t mono_ns, struct timespec *ts);

/* Writes a new run id ("r" + 12 hex digits of ms time + 8 random hex digits) into buf. Ids sort
 * by creation time. */
void lt_new_run_id(char buf[LT_ID_SIZE]);

/* Writes ms since the epoch as RFC 3339 UTC with milliseconds ("2026-12-03T16:42:20.123Z"). */
void lt_format_time(int64_t ms, char buf[LT_TIME_SIZE]);

/* Fills buf with n bytes from the kernel's CSPRNG; falls back to a time-seeded mix on failure. */
void lt_random_bytes(void *buf, size_t n);

/* Logs one key=value line on stderr: "ts=... level=LEVEL event=EVENT " + the formatted rest.
 * Never pass a token or a DSN password. */
void lt_log(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quiet logging (tests): when set, only level=error lines are written. */
void lt_log_set_quiet(int quiet);

#endif
