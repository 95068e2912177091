/*
 * notify: completion webhooks and Slack response_url deliveries (see notify.h).
 *
 * DESIGN
 * Thread: one, "notifier" (started by notifier_new, joined by notifier_free). It owns every
 *   libcurl easy handle it uses (one per attempt) and is the only thread that touches the
 *   network here. Run threads (pool on_finished hook) and HTTP threads (notifier_watch) only
 *   take the lock for a list operation, so they never wait for a webhook.
 * Lists (both bounded together by NOTIFY_MAX_PENDING):
 *   watches  deliveries waiting for their run to end, keyed by run id;
 *   queue    deliveries whose run ended, each with the monotonic time it is due (now, or after a
 *            backoff); the thread always takes the one due first.
 * Lock: `lock` guards watches, queue, npending and stopping; `wake` is signalled when something
 *   is queued or the notifier stops. A delivery being attempted is off both lists and owned by
 *   the thread alone.
 * Claiming: a delivery moves from watches to queue exactly once, by whoever finds the run ended
 *   first: the on_finished hook, notifier_watch itself (the run may end before its starter
 *   registers the watch: the final state is stored before on_finished runs, so reading the store
 *   after registering cannot miss it), or the periodic sweep (a run cancelled while queued never
 *   starts and so never calls on_finished).
 * Attempts: at most NOTIFY_MAX_ATTEMPTS; connect errors, timeouts, 5xx and 429 are retried after
 *   1, 2, 4, 8 s (or the Retry-After the receiver asked for, capped); any other answer ends the
 *   delivery. A connection the allowlist refuses (checked after DNS resolution through
 *   net_guard) is never retried. One log line per attempt; the URL is logged as scheme://host:port
 *   only, since query strings and paths (Slack's hooks) carry credentials.
 * Shutdown: an attempt in progress is cut short (progress callback, `stop_now`) and requeued;
 *   then deliveries still pending get one last attempt each with a short timeout, within
 *   NOTIFY_SHUTDOWN_MS in all; the rest are logged as dropped.
 */
#define _GNU_SOURCE
#include "notify.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lt_allow.h"
#include "lt_json.h"
#include "lt_util.h"
#include "net_guard.h"
#include "runner.h"
#include "target_spec.h"

#define NOTIFY_MAX_PENDING     1024
#define NOTIFY_MAX_ATTEMPTS    5
#define NOTIFY_TIMEOUT_MS      10000
#define NOTIFY_CONNECT_MS      5000
#define NOTIFY_RETRY_AFTER_MAX 300 /* seconds; a longer Retry-After is cut to this */
#define NOTIFY_SHUTDOWN_MS     2000
#define NOTIFY_LAST_TRY_MS     1000
#define NOTIFY_SWEEP_NS        (5LL * 1000 * 1000 * 1000)
#define NOTIFY_SLACK_CHECKS    10 /* checks listed in a Slack message */
#define SPEC_MASK_TEXT         "***"

/* ---- the spec member ------------------------------------------------------------------------- */

static const char *const notify_formats[] = {"json", "slack", NULL};
static const char *const notify_event_names[] = {"finished", "passed",    "failed",
                                                 "error",    "cancelled", NULL};
static const unsigned notify_event_bits[] = {NOTIFY_EVENT_FINISHED, NOTIFY_EVENT_PASSED,
                                             NOTIFY_EVENT_FAILED, NOTIFY_EVENT_ERROR,
                                             NOTIFY_EVENT_CANCELLED};

static int event_index(const char *name)
{
    for (int i = 0; notify_event_names[i]; i++) {
        if (strcmp(notify_event_names[i], name) == 0)
            return i;
    }
    return -1;
}

lt_status notify_validate(json_t *notify, struct lt_error *err)
{
    static const char *const keys[] = {"webhook_url", "format", "events", NULL};
    const char *url = NULL;
    int idx = 0;
    lt_status rc;

    if (!json_is_object(notify))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/notify", "/notify must be an object");
    rc = ltj_check_keys(notify, "/notify", keys, err);
    if (rc == LT_OK)
        rc = ltj_string(notify, "/notify", "webhook_url", 1, NULL, 1, NOTIFY_URL_MAX, &url, err);
    if (rc == LT_OK)
        rc = target_spec_check_url(url, "/notify/webhook_url", err);
    if (rc == LT_OK)
        rc = ltj_enum(notify, "/notify", "format", 0, "json", notify_formats, &idx, err);
    if (rc != LT_OK)
        return rc;
    json_t *events = json_object_get(notify, "events");
    if (events == NULL) {
        json_object_set_new(notify, "events", json_pack("[s]", "finished"));
        return LT_OK;
    }
    if (!json_is_array(events) || json_array_size(events) == 0 || json_array_size(events) > 5)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/notify/events",
                            "/notify/events must be an array of 1 to 5 of finished, passed, "
                            "failed, error, cancelled");
    for (size_t i = 0; i < json_array_size(events); i++) {
        const char *e = json_string_value(json_array_get(events, i));
        if (e == NULL || event_index(e) < 0) {
            char field[48];
            snprintf(field, sizeof(field), "/notify/events/%zu", i);
            return lt_error_set(err, LT_ERR_INVALID_SPEC, field,
                                "%s must be one of finished, passed, failed, error, cancelled",
                                field);
        }
    }
    return LT_OK;
}

void notify_mask(json_t *notify)
{
    const char *url = json_string_value(json_object_get(notify, "webhook_url"));
    static const CURLUPart hidden[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS,
                                       CURLUPART_QUERY, CURLUPART_FRAGMENT};
    char safe[NOTIFY_URL_MAX + 64];
    char *path = NULL;
    int secret = 0;
    CURLU *u;

    if (url == NULL)
        return;
    /* Anything but scheme, host and port may be a credential: a user or password, a token in
     * the query, or the path itself (a Slack incoming webhook's path is its secret). */
    u = curl_url();
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        secret = 1;
    } else {
        for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]) && !secret; i++) {
            char *part = NULL;
            if (curl_url_get(u, hidden[i], &part, 0) == CURLUE_OK && part && part[0])
                secret = 1;
            curl_free(part);
        }
        if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path &&
            strcmp(path, "/") != 0 && path[0])
            secret = 1;
        curl_free(path);
    }
    curl_url_cleanup(u);
    if (!secret)
        return;
    notify_safe_url(url, safe, sizeof(safe) - 4);
    if (strcmp(safe, "(unparsable)") == 0)
        snprintf(safe, sizeof(safe), "%s", SPEC_MASK_TEXT);
    else
        strcat(safe, "/" SPEC_MASK_TEXT);
    json_object_set_new(notify, "webhook_url", json_string(safe));
}

int notify_target_from_spec(const json_t *notify, struct notify_target *t)
{
    const char *url = json_string_value(json_object_get(notify, "webhook_url"));
    const char *fmt = json_string_value(json_object_get(notify, "format"));
    json_t *events = json_object_get(notify, "events");

    memset(t, 0, sizeof(*t));
    if (url == NULL || strlen(url) > NOTIFY_URL_MAX)
        return -1;
    snprintf(t->url, sizeof(t->url), "%s", url);
    t->format = fmt && strcmp(fmt, "slack") == 0 ? NOTIFY_FORMAT_SLACK : NOTIFY_FORMAT_JSON;
    t->origin = "webhook";
    for (size_t i = 0; i < json_array_size(events); i++) {
        const char *name = json_string_value(json_array_get(events, i));
        int k = name ? event_index(name) : -1;
        if (k >= 0)
            t->events |= notify_event_bits[k];
    }
    if (t->events == 0)
        t->events = NOTIFY_EVENT_FINISHED;
    return 0;
}

void notify_safe_url(const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;

    snprintf(out, outlen, "(unparsable)");
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* ---- payloads -------------------------------------------------------------------------------- */

static json_t *load_or_null(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

json_t *notify_summary(const struct run_record *r)
{
    char when[LT_TIME_SIZE];
    char path[64];
    json_t *v = load_or_null(r->verdict_json);
    json_t *doc;

    if (json_is_object(v)) {
        json_t *small =
            json_pack("{s:O, s:O, s:O}", "pass", json_object_get(v, "pass"), "summary",
                      json_object_get(v, "summary"), "checks", json_object_get(v, "checks"));
        json_decref(v);
        v = small ? small : json_null();
    }
    snprintf(path, sizeof(path), "/v1/runs/%s", r->id);
    doc = json_object();
    json_object_set_new(doc, "id", json_string(r->id));
    json_object_set_new(doc, "kind", json_string(r->kind));
    json_object_set_new(doc, "name", r->name ? json_string(r->name) : json_null());
    json_object_set_new(doc, "status", json_string(run_status_name(r->status)));
    json_object_set_new(doc, "verdict", v);
    json_object_set_new(doc, "error", load_or_null(r->error_json));
    json_object_set_new(doc, "url", json_string(path));
    if (r->finished_at_ms) {
        lt_format_time(r->finished_at_ms, when);
        json_object_set_new(doc, "finished_at", json_string(when));
    } else {
        json_object_set_new(doc, "finished_at", json_null());
    }
    return doc;
}

/* The length of the UTF-8 character at p, or 0 when p does not start a valid one. */
static size_t utf8_char_len(const unsigned char *p)
{
    size_t len;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return len;
}

/* What the character at p becomes in mrkdwn: *out (escape or the bytes themselves), its length
 * *outlen; returns the bytes of p it consumes. An invalid byte becomes '?'. */
static size_t mrkdwn_piece(const unsigned char *p, const char **out, size_t *outlen)
{
    size_t len = utf8_char_len(p);

    *out = (const char *)p;
    *outlen = len;
    if (*p == '&' || *p == '<' || *p == '>') {
        *out = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : "&gt;";
        *outlen = strlen(*out);
    } else if (len == 0) {
        *out = "?";
        *outlen = len = 1;
    }
    return len;
}

void notify_mrkdwn_append(char *buf, size_t cap, const char *s)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */
    const size_t ell = sizeof(ellipsis) - 1;
    const unsigned char *p = (const unsigned char *)s;
    size_t n, total = 0, outlen;
    const char *out;

    if (cap == 0 || s == NULL)
        return;
    n = strnlen(buf, cap - 1);
    for (const unsigned char *q = p; *q;) {
        q += mrkdwn_piece(q, &out, &outlen);
        total += outlen;
    }
    if (n + total + 1 <= cap) { /* all of it fits */
        for (; *p;) {
            p += mrkdwn_piece(p, &out, &outlen);
            memcpy(buf + n, out, outlen);
            n += outlen;
        }
        buf[n] = '\0';
        return;
    }
    /* Cut at a character boundary and say so: a cut inside a character would be invalid UTF-8,
     * which the JSON encoder refuses. */
    for (; *p;) {
        size_t used = mrkdwn_piece(p, &out, &outlen);
        if (n + outlen + ell + 1 > cap)
            break;
        memcpy(buf + n, out, outlen);
        n += outlen;
        p += used;
    }
    if (n + ell + 1 <= cap) {
        memcpy(buf + n, ellipsis, ell);
        n += ell;
    }
    buf[n] = '\0';
}

static const char *status_emoji(enum run_status s)
{
    switch (s) {
    case RUN_PASSED:
        return ":white_check_mark:";
    case RUN_FAILED:
        return ":x:";
    case RUN_CANCELLED:
        return ":no_entry_sign:";
    default:
        return ":warning:";
    }
}

json_t *notify_slack_message(const struct run_record *r, int in_channel)
{
    char text[2048] = "";
    char checks[3000] = "";
    char line[512];
    char when[LT_TIME_SIZE] = "";
    json_t *v = load_or_null(r->verdict_json);
    json_t *e = load_or_null(r->error_json);
    json_t *blocks = json_array();
    json_t *msg;

    snprintf(line, sizeof(line), "%s Run `%s` (%s", status_emoji(r->status), r->id, r->kind);
    notify_mrkdwn_append(text, sizeof(text), line);
    if (r->name) {
        notify_mrkdwn_append(text, sizeof(text), ", ");
        notify_mrkdwn_append(text, sizeof(text), r->name);
    }
    snprintf(line, sizeof(line), ") *%s*", run_status_name(r->status));
    notify_mrkdwn_append(text, sizeof(text), line);
    const char *summary = json_string_value(json_object_get(v, "summary"));
    const char *emsg = json_string_value(json_object_get(e, "message"));
    if (summary || emsg) {
        notify_mrkdwn_append(text, sizeof(text), ": ");
        notify_mrkdwn_append(text, sizeof(text), summary ? summary : emsg);
    }
    json_array_append_new(blocks, json_pack("{s:s, s:{s:s, s:s}}", "type", "section", "text",
                                            "type", "mrkdwn", "text", text));
    json_t *arr = json_object_get(v, "checks");
    for (size_t i = 0; i < json_array_size(arr) && i < NOTIFY_SLACK_CHECKS; i++) {
        json_t *c = json_array_get(arr, i);
        json_t *obs = json_object_get(c, "observed");
        json_t *thr = json_object_get(c, "threshold");
        const char *cname = json_string_value(json_object_get(c, "name"));
        const char *op = json_string_value(json_object_get(c, "op"));
        snprintf(line, sizeof(line), "%s %s %s %g (observed %g)\n",
                 json_is_true(json_object_get(c, "pass")) ? ":heavy_check_mark:" : ":x:",
                 cname ? cname : "?", op ? op : "?",
                 json_is_number(thr) ? json_number_value(thr) : 0.0,
                 json_is_number(obs) ? json_number_value(obs) : 0.0);
        notify_mrkdwn_append(checks, sizeof(checks), line);
    }
    if (checks[0])
        json_array_append_new(blocks, json_pack("{s:s, s:{s:s, s:s}}", "type", "section", "text",
                                                "type", "mrkdwn", "text", checks));
    if (r->finished_at_ms)
        lt_format_time(r->finished_at_ms, when);
    snprintf(line, sizeof(line), "loadtestd · /v1/runs/%s%s%s", r->id, when[0] ? " · " : "", when);
    json_array_append_new(blocks, json_pack("{s:s, s:[{s:s, s:s}]}", "type", "context", "elements",
                                            "type", "mrkdwn", "text", line));
    msg = json_pack("{s:s, s:o}", "text", text, "blocks", blocks);
    if (msg && in_channel)
        json_object_set_new(msg, "response_type", json_string("in_channel"));
    json_decref(v);
    json_decref(e);
    return msg;
}

/* ---- the notifier ---------------------------------------------------------------------------- */

struct delivery {
    char id[LT_ID_SIZE];
    struct notify_target t;
    char safe[300];   /* scheme://host:port, for logs */
    int name_allowed; /* the URL's host matched a name entry of the allowlist */
    int attempts;
    int64_t due_ns; /* monotonic; while queued */
    struct delivery *next;
};

struct notifier {
    struct store *store;         /* borrowed */
    struct lt_allow_slot *allow; /* borrowed; each attempt takes a reference to the list */
    pthread_t thread;
    pthread_mutex_t lock; /* guards: watches, queue, npending, stopping */
    pthread_cond_t wake;
    struct delivery *watches;
    struct delivery *queue;
    int npending; /* on both lists */
    int stopping;
    atomic_int stop_now; /* set by notifier_free: cuts an attempt in progress short */
};

/* Moves the watches of id to the queue, due now. Caller holds n->lock. Returns how many. */
static int claim_locked(struct notifier *n, const char *id)
{
    struct delivery **pp = &n->watches;
    int moved = 0;

    while (*pp) {
        struct delivery *d = *pp;
        if (strcmp(d->id, id) != 0) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        d->due_ns = lt_mono_ns();
        d->next = n->queue;
        n->queue = d;
        moved++;
    }
    if (moved)
        pthread_cond_signal(&n->wake);
    return moved;
}

static int run_ended(struct notifier *n, const char *id)
{
    struct run_record r;
    int ended;

    memset(&r, 0, sizeof(r));
    if (store_get_run(n->store, id, &r) == LT_ERR_NOT_FOUND)
        return 1; /* deleted: the attempt notices and drops it */
    ended = run_status_is_final(r.status);
    run_record_clear(&r);
    return ended;
}

lt_status notifier_watch(struct notifier *n, const char *id, const struct notify_target *t)
{
    struct delivery *d;
    char host[256];
    int port = 0;

    if (n == NULL)
        return LT_OK;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return LT_ERR_NOMEM;
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->t = *t;
    notify_safe_url(t->url, d->safe, sizeof(d->safe));
    if (runner_url_host(t->url, host, sizeof(host), &port) == 0) {
        struct lt_allow *allow = lt_allow_slot_get(n->allow);
        d->name_allowed = lt_allow_name_matched(allow, host, port);
        lt_allow_free(allow);
    }
    pthread_mutex_lock(&n->lock);
    if (n->npending >= NOTIFY_MAX_PENDING || n->stopping) {
        pthread_mutex_unlock(&n->lock);
        lt_log("warn", "notify", "run=%s via=%s target=%s outcome=dropped reason=%s", id, t->origin,
               d->safe, n->stopping ? "shutting_down" : "too_many_pending");
        free(d);
        return LT_ERR_TOO_MANY_RUNS;
    }
    d->next = n->watches;
    n->watches = d;
    n->npending++;
    pthread_mutex_unlock(&n->lock);
    if (run_ended(n, id)) {
        pthread_mutex_lock(&n->lock);
        claim_locked(n, id);
        pthread_mutex_unlock(&n->lock);
    }
    return LT_OK;
}

void notifier_on_finished(void *opaque, const char *id)
{
    struct notifier *n = opaque;

    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    claim_locked(n, id);
    pthread_mutex_unlock(&n->lock);
}

/* Finds the watches whose run has ended without on_finished (cancelled while queued) and
 * queues them. Called by the notifier thread without the lock. */
static void sweep(struct notifier *n)
{
    char(*ids)[LT_ID_SIZE] = NULL;
    int k = 0, cap;

    pthread_mutex_lock(&n->lock);
    cap = n->npending;
    if (cap > 0)
        ids = malloc((size_t)cap * LT_ID_SIZE);
    for (struct delivery *d = n->watches; d && ids && k < cap; d = d->next)
        memcpy(ids[k++], d->id, LT_ID_SIZE);
    pthread_mutex_unlock(&n->lock);
    for (int i = 0; i < k; i++) {
        if (!run_ended(n, ids[i]))
            continue;
        pthread_mutex_lock(&n->lock);
        claim_locked(n, ids[i]);
        pthread_mutex_unlock(&n->lock);
    }
    free(ids);
}

struct attempt_io {
    struct notifier *n;
    struct delivery *d;
    struct lt_allow *allow; /* the allowlist in force when the attempt started (a reference) */
    int refused;            /* the allowlist said no at connect time */
    long retry_after;       /* seconds from a Retry-After header, or -1 */
    int last;               /* the shutdown's last attempt: not cut short */
};

/* libcurl's progress callback: a normal attempt stops as soon as the daemon is shutting down,
 * so a receiver that never answers cannot hold SIGTERM up for the full timeout. */
static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct attempt_io *io = opaque;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;

    return !io->last && atomic_load(&io->n->stop_now);
}

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct attempt_io *io = clientp;

    return net_guard_open_socket(io->allow, io->d->name_allowed, purpose, addr, &io->refused);
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *opaque)
{
    struct attempt_io *io = opaque;
    size_t len = size * nitems;
    static const char name[] = "retry-after:";

    if (len > sizeof(name) && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        char val[32];
        size_t vl = len - (sizeof(name) - 1);
        if (vl >= sizeof(val))
            vl = sizeof(val) - 1;
        memcpy(val, buf + sizeof(name) - 1, vl);
        val[vl] = '\0';
        char *end = NULL;
        long s = strtol(val, &end, 10);
        /* Delta-seconds only; an HTTP date falls back to the backoff. */
        if (end != val && s >= 0) {
            while (*end == ' ' || *end == '\r' || *end == '\n' || *end == '\t')
                end++;
            if (*end == '\0')
                io->retry_after = s > NOTIFY_RETRY_AFTER_MAX ? NOTIFY_RETRY_AFTER_MAX : s;
        }
    }
    return len;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    (void)ptr;
    (void)opaque;
    return size * nmemb;
}

static unsigned status_event(enum run_status s)
{
    switch (s) {
    case RUN_PASSED:
        return NOTIFY_EVENT_PASSED;
    case RUN_FAILED:
        return NOTIFY_EVENT_FAILED;
    case RUN_ERROR:
        return NOTIFY_EVENT_ERROR;
    case RUN_CANCELLED:
        return NOTIFY_EVENT_CANCELLED;
    default:
        return 0;
    }
}

/* One attempt of d with the given total timeout. Returns 0 when the delivery is over (delivered,
 * given up, or nothing to send), else the seconds to wait before the next attempt. */
static long attempt(struct notifier *n, struct delivery *d, long timeout_ms, int last)
{
    struct run_record r;
    struct attempt_io io = {.n = n, .d = d, .refused = 0, .retry_after = -1, .last = last};
    struct curl_slist *hdrs = NULL;
    char *body = NULL;
    json_t *msg = NULL;
    CURL *c = NULL;
    CURLcode cc;
    long code = 0, wait = 0;
    lt_status st;
    const char *outcome;

    memset(&r, 0, sizeof(r));
    st = store_get_run(n->store, d->id, &r);
    if (st == LT_ERR_NOT_FOUND) {
        lt_log("info", "notify", "run=%s via=%s target=%s outcome=skipped reason=run_deleted",
               d->id, d->t.origin, d->safe);
        return 0;
    }
    d->attempts++;
    if (st != LT_OK) {
        code = 0;
        outcome = "store_error";
        goto decide;
    }
    if ((status_event(r.status) & d->t.events) == 0) {
        lt_log("info", "notify",
               "run=%s via=%s target=%s status=%s outcome=skipped "
               "reason=event_not_wanted",
               d->id, d->t.origin, d->safe, run_status_name(r.status));
        run_record_clear(&r);
        return 0;
    }
    msg = d->t.format == NOTIFY_FORMAT_SLACK
              ? notify_slack_message(&r, strcmp(d->t.origin, "slack_response_url") == 0)
              : notify_summary(&r);
    body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    c = curl_easy_init();
    /* No "Expect: 100-continue" for larger bodies: receivers that ignore it cost a second. */
    static const char *const header_lines[] = {"Content-Type: application/json; charset=utf-8",
                                               "User-Agent: loadtestd/" LT_VERSION,
                                               "Expect:", NULL};
    for (const char *const *h = header_lines; *h && c; h++) {
        struct curl_slist *more = curl_slist_append(hdrs, *h);
        if (more == NULL) {
            curl_easy_cleanup(c);
            c = NULL;
        }
        hdrs = more ? more : hdrs;
    }
    if (body == NULL || c == NULL) {
        outcome = "out_of_memory";
        goto decide;
    }
    curl_easy_setopt(c, CURLOPT_URL, d->t.url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    io.allow = lt_allow_slot_get(n->allow); /* dropped at out: */
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)&io);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)&io);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)&io);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < NOTIFY_CONNECT_MS ? timeout_ms : (long)NOTIFY_CONNECT_MS);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An explicit empty proxy: the *_proxy variables must not send the summary elsewhere. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (io.refused) {
        lt_log("warn", "notify",
               "run=%s via=%s target=%s attempt=%d outcome=failed reason=forbidden_target "
               "detail=\"the resolved address is not on the target allowlist\"",
               d->id, d->t.origin, d->safe, d->attempts);
        wait = 0;
        goto out;
    }
    if (cc == CURLE_OK && code >= 200 && code < 300) {
        lt_log("info", "notify",
               "run=%s via=%s target=%s attempt=%d http_status=%ld "
               "outcome=delivered",
               d->id, d->t.origin, d->safe, d->attempts, code);
        wait = 0;
        goto out;
    }
    if (cc == CURLE_OK && code != 429 && code < 500 &&
        strcmp(d->t.origin, "slack_response_url") == 0) {
        /* Slack takes at most 5 posts to a response_url, within 30 minutes of the command. */
        lt_log("warn", "notify",
               "run=%s via=%s target=%s attempt=%d http_status=%ld "
               "outcome=failed reason=response_url_refused detail=\"Slack refused the verdict: "
               "a response_url takes 5 posts within 30 minutes of the command; a longer run "
               "loses its post (follow it with status)\"",
               d->id, d->t.origin, d->safe, d->attempts, code);
        wait = 0;
        goto out;
    }
    if (cc == CURLE_OK && code != 429 && code < 500) {
        lt_log("warn", "notify",
               "run=%s via=%s target=%s attempt=%d http_status=%ld "
               "outcome=failed reason=refused_by_receiver",
               d->id, d->t.origin, d->safe, d->attempts, code);
        wait = 0;
        goto out;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        /* Cut short by shutdown: requeued for the shutdown's last attempt. */
        lt_log("info", "notify",
               "run=%s via=%s target=%s attempt=%d outcome=interrupted reason=shutting_down", d->id,
               d->t.origin, d->safe, d->attempts);
        wait = 1;
        goto out;
    }
    outcome = cc == CURLE_OK ? "http_error" : curl_easy_strerror(cc);
decide:
    if (d->attempts >= NOTIFY_MAX_ATTEMPTS || last) {
        lt_log("warn", "notify",
               "run=%s via=%s target=%s attempt=%d http_status=%ld "
               "outcome=failed reason=\"%s\" gave_up=1",
               d->id, d->t.origin, d->safe, d->attempts, code, outcome);
        wait = 0;
        goto out;
    }
    wait = io.retry_after >= 0 ? io.retry_after : 1L << (d->attempts - 1);
    if (wait == 0)
        wait = 1;
    lt_log("info", "notify",
           "run=%s via=%s target=%s attempt=%d http_status=%ld outcome=retry "
           "reason=\"%s\" retry_in_s=%ld",
           d->id, d->t.origin, d->safe, d->attempts, code, outcome, wait);
out:
    curl_slist_free_all(hdrs);
    if (c)
        curl_easy_cleanup(c);
    lt_allow_free(io.allow);
    free(body);
    json_decref(msg);
    run_record_clear(&r);
    return wait;
}

/* Unlinks and returns the queued delivery due first (NULL when the queue is empty). Caller holds
 * the lock. With take = 0 it is only returned. */
static struct delivery *earliest_locked(struct notifier *n, int take)
{
    struct delivery **best = NULL;

    for (struct delivery **pp = &n->queue; *pp; pp = &(*pp)->next) {
        if (best == NULL || (*pp)->due_ns < (*best)->due_ns)
            best = pp;
    }
    if (best == NULL)
        return NULL;
    struct delivery *d = *best;
    if (take) {
        *best = d->next;
        d->next = NULL;
    }
    return d;
}

static void shutdown_deliveries(struct notifier *n)
{
    int64_t deadline = lt_mono_ns() + (int64_t)NOTIFY_SHUTDOWN_MS * 1000000;
    struct delivery *d;

    sweep(n); /* runs cancelled while queued by the pool's shutdown */
    for (;;) {
        pthread_mutex_lock(&n->lock);
        d = earliest_locked(n, 1);
        if (d)
            n->npending--;
        pthread_mutex_unlock(&n->lock);
        if (d == NULL)
            break;
        int64_t left_ms = (deadline - lt_mono_ns()) / 1000000;
        if (left_ms >= 100)
            attempt(n, d, left_ms < NOTIFY_LAST_TRY_MS ? left_ms : NOTIFY_LAST_TRY_MS, 1);
        else
            lt_log("warn", "notify",
                   "run=%s via=%s target=%s outcome=dropped "
                   "reason=shutting_down",
                   d->id, d->t.origin, d->safe);
        free(d);
    }
    pthread_mutex_lock(&n->lock);
    while ((d = n->watches) != NULL) {
        n->watches = d->next;
        n->npending--;
        lt_log("warn", "notify", "run=%s via=%s target=%s outcome=dropped reason=run_not_ended",
               d->id, d->t.origin, d->safe);
        free(d);
    }
    pthread_mutex_unlock(&n->lock);
}

static void *notifier_thread(void *arg)
{
    struct notifier *n = arg;
    int64_t next_sweep = lt_mono_ns() + NOTIFY_SWEEP_NS;
    struct timespec ts;

    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        int64_t now = lt_mono_ns();
        if (now >= next_sweep) {
            pthread_mutex_unlock(&n->lock);
            sweep(n);
            pthread_mutex_lock(&n->lock);
            next_sweep = lt_mono_ns() + NOTIFY_SWEEP_NS;
            continue;
        }
        struct delivery *d = earliest_locked(n, 0);
        if (d == NULL || d->due_ns > now) {
            int64_t until = d && d->due_ns < next_sweep ? d->due_ns : next_sweep;
            lt_mono_timespec(until, &ts);
            pthread_cond_timedwait(&n->wake, &n->lock, &ts);
            continue;
        }
        d = earliest_locked(n, 1);
        pthread_mutex_unlock(&n->lock);
        long wait = attempt(n, d, NOTIFY_TIMEOUT_MS, 0);
        pthread_mutex_lock(&n->lock);
        if (wait > 0) {
            d->due_ns = lt_mono_ns() + (int64_t)wait * 1000000000LL;
            d->next = n->queue;
            n->queue = d;
        } else {
            n->npending--;
            free(d);
        }
    }
    pthread_mutex_unlock(&n->lock);
    shutdown_deliveries(n);
    return NULL;
}

struct notifier *notifier_new(struct store *st, struct lt_allow_slot *allow)
{
    struct notifier *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    n->store = st;
    n->allow = allow;
    pthread_mutex_init(&n->lock, NULL);
    lt_cond_init_mono(&n->wake);
    if (pthread_create(&n->thread, NULL, notifier_thread, n) != 0) {
        pthread_cond_destroy(&n->wake);
        pthread_mutex_destroy(&n->lock);
        free(n);
        return NULL;
    }
    pthread_setname_np(n->thread, "notifier");
    return n;
}

void notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    atomic_store(&n->stop_now, 1);
    pthread_mutex_lock(&n->lock);
    n->stopping = 1;
    pthread_cond_signal(&n->wake);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->thread, NULL);
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    free(n);
}
