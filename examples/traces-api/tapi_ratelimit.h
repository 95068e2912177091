/*
 * tapi_ratelimit: per-client token buckets in Redis. The bucket logic is one Lua script
 * (ratelimit.lua, embedded at build time) loaded with SCRIPT LOAD at start and run with
 * EVALSHA, so check-and-take is atomic however many traces-api processes share the Redis;
 * when Redis lost its script cache (restart, SCRIPT FLUSH) the call falls back to EVAL, which
 * also caches it again.
 *
 * Connections: one redisContext per slot of a tapi_slots pool sized to the HTTP threads, so
 * a context is used by one thread at a time and a thread never waits for one. A context that
 * failed (timeout, reset) is freed and the next call reconnects. Any failure is reported as
 * TAPI_ERR_UNAVAILABLE: the service fails closed (503) rather than serve unlimited.
 */
#ifndef TAPI_RATELIMIT_H
#define TAPI_RATELIMIT_H

#include <stddef.h>

#include "tapi_util.h"

struct tapi_rl;

struct tapi_rl_result {
    int allowed;        /* 1 = a token was taken */
    long limit;         /* bucket capacity (per-minute limit) */
    long remaining;     /* whole tokens left */
    long retry_after_s; /* when refused: seconds until one token is there (>= 1) */
    long reset_s;       /* seconds until the bucket is full again */
};

/* Connects (retrying up to wait_s) to host:port and loads the script. slots = the most
 * threads that call at once. Returns new limiter, or NULL with a message in err. */
struct tapi_rl *tapi_rl_new(const char *host, int port, int slots, int timeout_ms, int wait_s,
                            char *err, size_t errlen);
/* Frees the limiter and its connections (NULL allowed). No call may be in progress. */
void tapi_rl_free(struct tapi_rl *rl);

/* Takes one token from bucket (borrowed key name) of capacity per_minute refilled at
 * per_minute/60 per second. TAPI_OK fills *out (allowed or not); TAPI_ERR_UNAVAILABLE means
 * Redis did not answer, with a message in err. */
tapi_status tapi_rl_take(struct tapi_rl *rl, const char *bucket, long per_minute,
                         struct tapi_rl_result *out, char *err, size_t errlen);

/* TAPI_OK when Redis answers PING; else err says why. */
tapi_status tapi_rl_ping(struct tapi_rl *rl, char *err, size_t errlen);

#endif
