/*
 * tapi_ratelimit: the Redis side of traces-api (see tapi_ratelimit.h). hiredis is used
 * synchronously with a connect and a command timeout, so a stalled Redis costs a request at
 * most that timeout before it answers 503.
 *
 * Ownership: ctx[i] belongs to whichever thread holds slot i; sha, host, port and timeout
 * are written once in tapi_rl_new and only read afterwards.
 */
#define _GNU_SOURCE
#include "tapi_ratelimit.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "tapi_lua.h" /* generated from ratelimit.lua: tapi_lua_script */
#include "tapi_slots.h"

#define SLOT_WAIT_MS 5000

struct tapi_rl {
    struct tapi_slots *slots;
    redisContext **ctx; /* one per slot; NULL = closed */
    int n;
    char host[256];
    int port;
    struct timeval timeout;
    char sha[41]; /* SHA-1 of the script, from SCRIPT LOAD */
};

/* Connects a new context. Returns it, or NULL with a message in err. */
static redisContext *connect_ctx(struct tapi_rl *rl, char *err, size_t errlen)
{
    redisContext *c = redisConnectWithTimeout(rl->host, rl->port, rl->timeout);

    if (c == NULL) {
        snprintf(err, errlen, "cannot connect to Redis: out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s:%d: %s", rl->host, rl->port,
                 c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, rl->timeout) != REDIS_OK) {
        snprintf(err, errlen, "cannot set the Redis timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* SCRIPT LOAD on c; fills rl->sha. Returns 0 or -1 with a message in err. */
static int load_script(struct tapi_rl *rl, redisContext *c, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", tapi_lua_script);
    int rc = -1;

    if (r == NULL)
        snprintf(err, errlen, "SCRIPT LOAD: %s", c->errstr);
    else if (r->type != REDIS_REPLY_STRING || r->len != 40)
        snprintf(err, errlen, "SCRIPT LOAD: unexpected answer: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "not a SHA-1");
    else {
        memcpy(rl->sha, r->str, 40);
        rl->sha[40] = '\0';
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

struct tapi_rl *tapi_rl_new(const char *host, int port, int slots, int timeout_ms, int wait_s,
                            char *err, size_t errlen)
{
    struct tapi_rl *rl = calloc(1, sizeof(*rl));
    redisContext *c = NULL;
    int64_t deadline = tapi_mono_ns() + (int64_t)wait_s * 1000000000;
    int logged = 0;

    if (rl == NULL)
        goto oom;
    rl->n = slots;
    rl->port = port;
    snprintf(rl->host, sizeof(rl->host), "%s", host);
    rl->timeout.tv_sec = timeout_ms / 1000;
    rl->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    rl->ctx = calloc((size_t)slots, sizeof(*rl->ctx));
    rl->slots = tapi_slots_new(slots);
    if (rl->ctx == NULL || rl->slots == NULL)
        goto oom;
    while ((c = connect_ctx(rl, err, errlen)) == NULL) {
        if (tapi_mono_ns() >= deadline)
            goto fail;
        if (!logged++)
            tapi_log("info", "redis_wait", "message=\"%s\" wait_s=%d", err, wait_s);
        usleep(500 * 1000);
    }
    if (load_script(rl, c, err, errlen) != 0)
        goto fail;
    rl->ctx[0] = c; /* slot 0 keeps the connection */
    return rl;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    if (c)
        redisFree(c);
    tapi_rl_free(rl);
    return NULL;
}

void tapi_rl_free(struct tapi_rl *rl)
{
    if (rl == NULL)
        return;
    for (int i = 0; rl->ctx && i < rl->n; i++) {
        if (rl->ctx[i])
            redisFree(rl->ctx[i]);
    }
    free(rl->ctx);
    tapi_slots_free(rl->slots);
    free(rl);
}

/* Sends one command (built by cmd) on the slot's context, reconnecting when it is closed and
 * retrying once on a fresh context when the old one had gone stale (Redis restarted). A
 * command that timed out is not retried: Redis is slow, not gone, and a second wait would
 * double the delay. Returns a reply to free, or NULL with a message in err. */
typedef redisReply *(*rl_cmd)(struct tapi_rl *rl, redisContext *c, void *arg);

static redisReply *send_cmd(struct tapi_rl *rl, rl_cmd cmd, void *arg, char *err, size_t errlen)
{
    redisReply *r = NULL;
    int slot = tapi_slots_acquire(rl->slots, SLOT_WAIT_MS);

    if (slot < 0) {
        snprintf(err, errlen, "all %d Redis connections stayed busy", rl->n);
        return NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = 0;
        if (rl->ctx[slot] == NULL) {
            rl->ctx[slot] = connect_ctx(rl, err, errlen);
            if (rl->ctx[slot] == NULL)
                break;
            fresh = 1;
        }
        redisContext *c = rl->ctx[slot];
        r = cmd(rl, c, arg);
        if (r != NULL)
            break;
        snprintf(err, errlen, "Redis at %s:%d: %s", rl->host, rl->port,
                 c->errstr[0] ? c->errstr : "no answer");
        int timed_out = c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily") != NULL;
        redisFree(c);
        rl->ctx[slot] = NULL;
        if (fresh || timed_out)
            break;
    }
    tapi_slots_release(rl->slots, slot);
    return r;
}

struct take_arg {
    const char *bucket;
    char capacity[24];
    char rate[32];
};

static redisReply *cmd_take(struct tapi_rl *rl, redisContext *c, void *argp)
{
    struct take_arg *a = argp;
    redisReply *r =
        redisCommand(c, "EVALSHA %s 1 %s %s %s 1", rl->sha, a->bucket, a->capacity, a->rate);

    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        r = redisCommand(c, "EVAL %s 1 %s %s %s 1", tapi_lua_script, a->bucket, a->capacity,
                         a->rate);
    }
    return r;
}

tapi_status tapi_rl_take(struct tapi_rl *rl, const char *bucket, long per_minute,
                         struct tapi_rl_result *out, char *err, size_t errlen)
{
    struct take_arg a = {.bucket = bucket};
    redisReply *r;
    tapi_status st = TAPI_ERR_UNAVAILABLE;

    snprintf(a.capacity, sizeof(a.capacity), "%ld", per_minute);
    snprintf(a.rate, sizeof(a.rate), "%.17g", (double)per_minute / 60.0);
    r = send_cmd(rl, cmd_take, &a, err, errlen);
    if (r == NULL)
        return TAPI_ERR_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "the rate limiter script failed: %.200s", r->str);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        snprintf(err, errlen, "the rate limiter script answered something unexpected");
        goto out;
    }
    for (size_t i = 0; i < 4; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            snprintf(err, errlen, "the rate limiter script answered something unexpected");
            goto out;
        }
    }
    out->allowed = r->element[0]->integer == 1;
    out->limit = per_minute;
    out->remaining = (long)r->element[1]->integer;
    out->retry_after_s = (long)((r->element[2]->integer + 999) / 1000);
    if (!out->allowed && out->retry_after_s < 1)
        out->retry_after_s = 1;
    out->reset_s = (long)((r->element[3]->integer + 999) / 1000);
    st = TAPI_OK;
out:
    if (st != TAPI_OK)
        tapi_log("error", "redis_script", "message=\"%s\"", err);
    freeReplyObject(r);
    return st;
}

static redisReply *cmd_ping(struct tapi_rl *rl, redisContext *c, void *arg)
{
    (void)rl;
    (void)arg;
    return redisCommand(c, "PING");
}

tapi_status tapi_rl_ping(struct tapi_rl *rl, char *err, size_t errlen)
{
    redisReply *r = send_cmd(rl, cmd_ping, NULL, err, errlen);
    tapi_status st = TAPI_ERR_UNAVAILABLE;

    if (r == NULL)
        return st;
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0)
        st = TAPI_OK;
    else
        snprintf(err, errlen, "Redis answered PING with something else");
    freeReplyObject(r);
    return st;
}
