/*
 * routes: handlers of the REST API. Each one validates, reads or writes the store, or hands a
 * run to the pool; none of them waits for a run. Errors go through http_fail, whose status comes
 * from the one lt_status -> HTTP mapping in http.c.
 */
#define _GNU_SOURCE
#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "apilimit.h"
#include "caps.h"
#include "compare.h"
#include "dashboard.h"
#include "lt_allow.h"
#include "metrics.h"
#include "notify.h"
#include "presets.h"
#include "slack.h"
#include "spec.h"

#define LIST_LIMIT_DEFAULT   50
#define LIST_LIMIT_MAX       1000
#define POINTS_LIMIT_DEFAULT 3600
#define POINTS_LIMIT_MAX     86400
#define WAIT_MAX_S           60 /* longest long-poll (?wait=) */

/* Parses stored JSON text; NULL text or a decode failure gives JSON null. */
static json_t *load_or_null(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *time_or_null(int64_t ms)
{
    char buf[LT_TIME_SIZE];

    if (ms == 0)
        return json_null();
    lt_format_time(ms, buf);
    return json_string(buf);
}

json_t *routes_run_document(const struct run_record *r, int full)
{
    json_t *doc = json_object();

    json_object_set_new(doc, "id", json_string(r->id));
    json_object_set_new(doc, "kind", json_string(r->kind));
    json_object_set_new(doc, "name", r->name ? json_string(r->name) : json_null());
    json_object_set_new(doc, "preset", r->preset ? json_string(r->preset) : json_null());
    json_object_set_new(doc, "status", json_string(run_status_name(r->status)));
    json_object_set_new(doc, "created_at", time_or_null(r->created_at_ms));
    json_object_set_new(doc, "started_at", time_or_null(r->started_at_ms));
    json_object_set_new(doc, "finished_at", time_or_null(r->finished_at_ms));
    if (full) {
        json_t *progress = load_or_null(r->progress_json);
        if (json_is_null(progress)) {
            json_decref(progress);
            progress = json_pack("{s:f}", "fraction", 0.0);
        }
        json_object_set_new(doc, "spec", load_or_null(r->spec_json));
        json_object_set_new(doc, "progress", progress);
        json_object_set_new(doc, "result", load_or_null(r->result_json));
        json_object_set_new(doc, "verdict", load_or_null(r->verdict_json));
        json_object_set_new(doc, "error", load_or_null(r->error_json));
    } else {
        json_t *v = load_or_null(r->verdict_json);
        if (json_is_object(v)) {
            json_t *sum = json_pack("{s:O, s:O}", "pass", json_object_get(v, "pass"), "summary",
                                    json_object_get(v, "summary"));
            json_decref(v);
            v = sum;
        }
        json_object_set_new(doc, "verdict", v);
    }
    return doc;
}

static void run_etag(const struct run_record *r, char *out, size_t outlen, const char *suffix)
{
    snprintf(out, outlen, "\"%s-v%lld%s\"", r->id, (long long)r->version, suffix ? suffix : "");
}

/* 1 when the request's If-None-Match names etag (or is "*"). */
static int etag_matches(const struct http_request *req, const char *etag)
{
    const char *inm = http_header(req, "If-None-Match");
    size_t n = strlen(etag);

    if (inm == NULL)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    /* A list of tags, possibly weak (W/"..."): look for ours as a whole item. */
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return 1;
    }
    return 0;
}

/* Fetches run req->id into r, answering 404 / 503 itself. Returns 0 when found. */
static int fetch_run(struct http_request *req, struct http_response *resp, struct run_record *r)
{
    lt_status st = store_get_run(req->app->store, req->id, r);

    if (st == LT_OK) {
        snprintf(req->log_run, sizeof(req->log_run), "%s", r->id);
        return 0;
    }
    if (st == LT_ERR_NOT_FOUND)
        http_fail(resp, st, NULL, "no run with id '%s'", req->id);
    else
        http_fail(resp, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
    return -1;
}

/* The API rate limit's key for a request: 't' + the token's digest when tokens are on and it
 * carries a valid one (so one client's burst never slows another token), else 'a' + the
 * client's address (no tokens, or a missing/wrong one: guessing tokens is limited too). */
static void client_key(const struct app *app, const char *authorization, enum auth_result ar,
                       const struct sockaddr *peer, unsigned char key[APILIMIT_KEY_LEN])
{
    memset(key, 0, APILIMIT_KEY_LEN);
    if (app->auth && (ar == AUTH_OK || ar == AUTH_DENIED) &&
        auth_token_digest(authorization, key + 1) == 0) {
        key[0] = 't';
        return;
    }
    key[0] = 'a';
    if (peer && peer->sa_family == AF_INET)
        memcpy(key + 1, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    else if (peer && peer->sa_family == AF_INET6)
        memcpy(key + 1, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
}

enum auth_result routes_authorize(struct app *app, const char *authorization, enum auth_need need,
                                  const struct sockaddr *peer, int *retry_after_s)
{
    enum auth_result ar = auth_check(app->auth, authorization, need);
    unsigned char key[APILIMIT_KEY_LEN];

    /* /healthz (and every AUTH_OPEN route) is never limited */
    if (need == AUTH_OPEN || app->apilimit == NULL)
        return ar;
    client_key(app, authorization, ar, peer, key);
    if (!apilimit_take(app->apilimit, key, lt_mono_ns(), retry_after_s))
        return AUTH_LIMITED;
    return ar;
}

size_t routes_body_max(const struct http_route *r)
{
    /* A slash command form is a few hundred bytes: no need to take a megabyte from anyone. */
    return r->fn == slack_h_command ? SLACK_FORM_MAX_BYTES : HTTP_BODY_MAX;
}

unsigned long routes_wait_change(struct app *app, unsigned long seen, int timeout_ms)
{
    return pool_wait_change(app->pool, seen, timeout_ms);
}

void routes_changes_snapshot(struct app *app, struct pool_changes *out)
{
    pool_changes_snapshot(app->pool, out);
}

struct target_check {
    const struct lt_allow *allow;
    char field[128];
    char host[256];
    int port;
};

static int check_target(void *opaque, const char *host, int port, const char *field)
{
    struct target_check *c = opaque;

    if (lt_allow_host(c->allow, host, port))
        return 0;
    snprintf(c->field, sizeof(c->field), "%s", field);
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    return 1;
}

static void h_healthz(struct http_request *req, struct http_response *resp)
{
    (void)req;
    resp->body = json_pack("{s:s}", "status", "ok");
}

static void h_version(struct http_request *req, struct http_response *resp)
{
    (void)req;
    resp->body = json_pack("{s:s, s:s}", "version", LT_VERSION, "api", "v1");
}

#define IDEMPOTENCY_KEY_MAX 255

/* Looks up the run a POST with Idempotency-Key key created. Returns LT_ERR_NOT_FOUND when there
 * is none; LT_OK with *out filled when it exists with the same (masked) spec; LT_ERR_CONFLICT
 * (err set) when the key was used for another spec. */
static lt_status find_idempotent(struct app *app, const char *key, const json_t *masked,
                                 const char *preset, struct run_record *out, struct lt_error *err)
{
    json_t *stored;
    lt_status st;
    int same;

    st = store_find_idempotent(app->store, key, out);
    if (st == LT_ERR_NOT_FOUND)
        return st;
    if (st != LT_OK)
        return lt_error_set(err, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
    stored = json_loads(out->spec_json, 0, NULL);
    same = stored && json_equal(stored, (json_t *)masked);
    /* The same spec started from another preset (or from none) is another request. */
    if ((preset == NULL) != (out->preset == NULL) || (preset && strcmp(preset, out->preset) != 0))
        same = 0;
    json_decref(stored);
    if (same)
        return LT_OK;
    st = lt_error_set(err, LT_ERR_CONFLICT, NULL,
                      "Idempotency-Key '%s' was already used for run %s with a different spec", key,
                      out->id);
    run_record_clear(out);
    return st;
}

int routes_idempotency_key_ok(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (key[i] < 33 || key[i] > 126)
            return 0;
    }
    return 1;
}

lt_status routes_check_spec(struct app *app, const char *body, size_t len, json_t **spec_out,
                            json_t **masked_out, const struct runner_ops **ops_out,
                            struct lt_error *err)
{
    json_t *spec = NULL;
    json_t *masked = NULL;
    const struct runner_ops *ops = NULL;
    lt_status st;

    *spec_out = NULL;
    *masked_out = NULL;
    *ops_out = NULL;
    st = spec_parse(body, len, &spec, &masked, &ops, err);
    if (st != LT_OK)
        return st;
    /* The operator's caps, on the validated spec (defaults filled in). */
    if ((st = caps_check(app->caps, ops->kind, spec, err)) != LT_OK)
        goto out;
    /* Fail closed: a kind that cannot say where it will connect is not run at all. */
    if (ops->each_target == NULL) {
        st = lt_error_set(err, LT_ERR_INTERNAL, "/kind",
                          "kind '%s' cannot list its targets, so they cannot be checked against "
                          "the allowlist",
                          ops->kind);
        goto out;
    }
    /* The list in force now; a run takes its own reference when it starts (pool.c). */
    struct lt_allow *allow = lt_allow_slot_get(app->allow_slot);
    struct target_check tc = {.allow = allow};
    int denied = ops->each_target(spec, check_target, &tc);
    /* A webhook is a target like any other: same allowlist, same answer. */
    const char *hook =
        json_string_value(json_object_get(json_object_get(spec, "notify"), "webhook_url"));
    int hook_denied = !denied && hook &&
                      (runner_url_host(hook, tc.host, sizeof(tc.host), &tc.port) != 0 ||
                       !lt_allow_host(allow, tc.host, tc.port));
    lt_allow_free(allow);
    if (denied != 0) {
        st = lt_error_set(err, LT_ERR_FORBIDDEN_TARGET, tc.field,
                          "%s port %d is not on this daemon's target allowlist (--allow-target)",
                          tc.host, tc.port);
        goto out;
    }
    if (hook_denied) {
        st = lt_error_set(err, LT_ERR_FORBIDDEN_TARGET, "/notify/webhook_url",
                          "%s port %d is not on this daemon's target allowlist (--allow-target)",
                          tc.host, tc.port);
        goto out;
    }
    *spec_out = spec;
    *masked_out = masked;
    *ops_out = ops;
    return LT_OK;
out:
    json_decref(spec);
    json_decref(masked);
    return st;
}

lt_status routes_submit_run(struct app *app, const char *body, size_t len, const char *ikey,
                            struct run_record *out, int *replayed, struct lt_error *err)
{
    return routes_submit_run_from(app, NULL, body, len, ikey, out, replayed, err);
}

lt_status routes_submit_run_from(struct app *app, const char *preset, const char *body, size_t len,
                                 const char *ikey, struct run_record *out, int *replayed,
                                 struct lt_error *err)
{
    json_t *spec = NULL;
    json_t *masked = NULL;
    const struct runner_ops *ops = NULL;
    lt_status st;
    const char *name;
    struct notify_target nt;
    const struct notify_target *watch = NULL;

    memset(out, 0, sizeof(*out));
    *replayed = 0;
    if (ikey && !routes_idempotency_key_ok(ikey))
        return lt_error_set(err, LT_ERR_INVALID_PARAM, "Idempotency-Key",
                            "Idempotency-Key must be 1 to %d visible ASCII characters",
                            IDEMPOTENCY_KEY_MAX);
    st = routes_check_spec(app, body, len, &spec, &masked, &ops, err);
    if (st != LT_OK)
        return st;
    if (notify_target_from_spec(json_object_get(spec, "notify"), &nt) == 0)
        watch = &nt;
    if (ikey) {
        st = find_idempotent(app, ikey, masked, preset, out, err);
        if (st == LT_OK)
            *replayed = 1;
        if (st != LT_ERR_NOT_FOUND)
            goto out;
    }
    lt_new_run_id(out->id);
    snprintf(out->kind, sizeof(out->kind), "%s", ops->kind);
    name = json_string_value(json_object_get(spec, "name"));
    out->name = name ? strdup(name) : NULL;
    out->idempotency_key = ikey ? strdup(ikey) : NULL;
    out->preset = preset ? strdup(preset) : NULL;
    out->created_at_ms = lt_now_ms();
    out->spec_json = json_dumps(masked, JSON_COMPACT);
    if (out->spec_json == NULL || (name && out->name == NULL) || (ikey && !out->idempotency_key) ||
        (preset && !out->preset)) {
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    st = pool_submit(app->pool, out, spec, ops); /* takes spec */
    spec = NULL;
    if (st == LT_ERR_CONFLICT && ikey) {
        /* A concurrent retry with the same key won the insert. */
        run_record_clear(out);
        st = find_idempotent(app, ikey, masked, preset, out, err);
        if (st == LT_OK)
            *replayed = 1;
        else if (st == LT_ERR_NOT_FOUND)
            st = lt_error_set(err, LT_ERR_CONFLICT, NULL, "the run id was taken; retry");
        goto out;
    }
    if (st == LT_ERR_TOO_MANY_RUNS)
        st = lt_error_set(err, st, NULL,
                          "the run queue is full; wait for runs to finish or cancel some, then "
                          "retry");
    else if (st == LT_ERR_UNAVAILABLE)
        st = lt_error_set(err, st, NULL,
                          "the run could not be stored: the database cannot be written (disk "
                          "full, read-only or locked) or the daemon is stopping; retry later");
    else if (st != LT_OK)
        st = lt_error_set(err, st, NULL, "the run could not be stored: %s", lt_status_code(st));
    else if (watch)
        notifier_watch(app->notifier, out->id, watch); /* a failure is logged; the run goes on */
out:
    if (st != LT_OK)
        run_record_clear(out);
    json_decref(spec);
    json_decref(masked);
    return st;
}

void routes_answer_run(struct http_request *req, struct http_response *resp,
                       const struct run_record *r, int replayed)
{
    snprintf(req->log_run, sizeof(req->log_run), "%s", r->id);
    /* A replay answers with the first attempt's status code, so a client checking for 202
     * needs no special case. */
    resp->status = 202;
    resp->replayed = replayed;
    snprintf(resp->location, sizeof(resp->location), "/v1/runs/%s", r->id);
    run_etag(r, resp->etag, sizeof(resp->etag), NULL);
    resp->body = routes_run_document(r, 1);
}

static void h_create_run(struct http_request *req, struct http_response *resp)
{
    struct lt_error err;
    struct run_record rec;
    int replayed = 0;

    memset(&err, 0, sizeof(err));
    if (routes_submit_run(req->app, req->body, req->body_len, http_header(req, "Idempotency-Key"),
                          &rec, &replayed, &err) != LT_OK) {
        http_error(resp, &err);
        return;
    }
    routes_answer_run(req, resp, &rec, replayed);
    run_record_clear(&rec);
}

static int parse_int_param(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

struct allowed_params {
    const char *const *names;
    char bad[64];
};

static int check_param(void *opaque, const char *key)
{
    struct allowed_params *a = opaque;

    for (const char *const *n = a->names; *n; n++) {
        if (strcmp(*n, key) == 0)
            return 0;
    }
    snprintf(a->bad, sizeof(a->bad), "%s", key);
    return 1;
}

/* Rejects unknown query parameters, so a typo ("stauts=") never passes silently. */
static int only_params(struct http_request *req, struct http_response *resp,
                       const char *const *names)
{
    struct allowed_params a = {names, ""};

    if (http_query_each(req, check_param, &a) == 0)
        return 0;
    http_fail(resp, LT_ERR_INVALID_PARAM, a.bad, "unknown query parameter '%s'", a.bad);
    return -1;
}

struct list_ctx {
    json_t *runs;
    int64_t last_seq;
};

static int list_cb(void *opaque, const struct run_record *r)
{
    struct list_ctx *c = opaque;

    json_array_append_new(c->runs, routes_run_document(r, 0));
    c->last_seq = r->seq;
    return 0;
}

static void h_list_runs(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {"kind",   "status", "name", "limit",
                                        "cursor", "preset", NULL};
    struct run_filter f = {.status = -1, .limit = LIST_LIMIT_DEFAULT};
    struct list_ctx c = {NULL, 0};
    const char *v;
    long n;
    int more = 0;
    int known;
    lt_status st;

    if (only_params(req, resp, names) != 0)
        return;
    if ((v = http_query(req, "kind")) != NULL) {
        if (runner_find(v, &known) == NULL && !known) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "kind",
                      "kind must be capacity, ratelimit or generate");
            return;
        }
        f.kind = v;
    }
    if ((v = http_query(req, "status")) != NULL) {
        f.status = run_status_parse(v);
        if (f.status < 0) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "status",
                      "status must be queued, running, passed, failed, error, cancelled or "
                      "interrupted");
            return;
        }
    }
    if ((v = http_query(req, "name")) != NULL) {
        if (strlen(v) > SPEC_NAME_MAX) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "name", "name is longer than %d characters",
                      SPEC_NAME_MAX);
            return;
        }
        f.name = v;
    }
    if ((v = http_query(req, "preset")) != NULL) {
        if (!preset_name_ok(v)) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "preset",
                      "preset must be 1 to %d characters of A-Z a-z 0-9 _ -", PRESET_NAME_MAX);
            return;
        }
        f.preset = v;
    }
    if ((v = http_query(req, "limit")) != NULL) {
        if (parse_int_param(v, 1, LIST_LIMIT_MAX, &n) != 0) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "limit", "limit must be an integer from 1 to %d",
                      LIST_LIMIT_MAX);
            return;
        }
        f.limit = (int)n;
    }
    if ((v = http_query(req, "cursor")) != NULL) {
        if (parse_int_param(v, 1, 0x7fffffffL, &n) != 0) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "cursor",
                      "cursor must be a next_cursor value from an earlier answer");
            return;
        }
        f.before_seq = n;
    }
    c.runs = json_array();
    st = store_list_runs(req->app->store, &f, list_cb, &c, &more);
    if (st != LT_OK) {
        json_decref(c.runs);
        http_fail(resp, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
        return;
    }
    json_t *cursor = json_null();
    if (more) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)c.last_seq);
        json_decref(cursor);
        cursor = json_string(buf);
    }
    resp->body = json_pack("{s:o, s:o}", "runs", c.runs, "next_cursor", cursor);
}

/* Reads the optional ?wait= (long-poll seconds) into *wait_s; answers 400 itself. */
static int wait_param(struct http_request *req, struct http_response *resp, long *wait_s)
{
    const char *v = http_query(req, "wait");

    *wait_s = 0;
    if (v != NULL && parse_int_param(v, 1, WAIT_MAX_S, wait_s) != 0) {
        http_fail(resp, LT_ERR_INVALID_PARAM, "wait", "wait must be an integer from 1 to %d",
                  WAIT_MAX_S);
        return -1;
    }
    return 0;
}

static void h_get_run(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {"wait", NULL};
    struct run_record r;
    long wait_s = 0;

    memset(&r, 0, sizeof(r));
    if (only_params(req, resp, names) != 0 || wait_param(req, resp, &wait_s) != 0 ||
        fetch_run(req, resp, &r) != 0)
        return;
    run_etag(&r, resp->etag, sizeof(resp->etag), NULL);
    if (etag_matches(req, resp->etag) && wait_s > 0 && req->may_hold &&
        !run_status_is_final(r.status)) {
        /* No news yet: called again on a change. A final run never changes: 304 at once. */
        resp->hold_ms = (int)wait_s * 1000;
        snprintf(resp->hold_key, sizeof(resp->hold_key), "%s", r.id);
    } else if (etag_matches(req, resp->etag))
        resp->status = 304;
    else
        resp->body = routes_run_document(&r, 1);
    run_record_clear(&r);
}

static int points_cb(void *opaque, int64_t t, const char *point_json)
{
    json_t *arr = opaque;
    json_t *p = json_loads(point_json, 0, NULL);

    if (!json_is_object(p)) {
        json_decref(p);
        p = json_object();
    }
    json_object_set_new(p, "t", json_integer(t));
    json_array_append_new(arr, p);
    return 0;
}

static void h_timeseries(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {"since", "limit", "wait", NULL};
    struct run_record r;
    long since = 0, limit = POINTS_LIMIT_DEFAULT, wait_s = 0;
    const char *v;
    char suffix[48];
    lt_status st;

    memset(&r, 0, sizeof(r));
    if (only_params(req, resp, names) != 0)
        return;
    if ((v = http_query(req, "since")) != NULL && parse_int_param(v, 0, 100000000L, &since)) {
        http_fail(resp, LT_ERR_INVALID_PARAM, "since",
                  "since must be an integer second from 0 to 100000000");
        return;
    }
    if ((v = http_query(req, "limit")) != NULL && parse_int_param(v, 1, POINTS_LIMIT_MAX, &limit)) {
        http_fail(resp, LT_ERR_INVALID_PARAM, "limit", "limit must be an integer from 1 to %d",
                  POINTS_LIMIT_MAX);
        return;
    }
    if (wait_param(req, resp, &wait_s) != 0 || fetch_run(req, resp, &r) != 0)
        return;
    /* Points are written before the progress update of the same second, which bumps the
     * version, so the run's version also versions its series. */
    snprintf(suffix, sizeof(suffix), "-ts%ld-%ld", since, limit);
    run_etag(&r, resp->etag, sizeof(resp->etag), suffix);
    if (etag_matches(req, resp->etag)) {
        /* A finished run's series never changes: nothing to wait for. */
        if (wait_s > 0 && req->may_hold && !run_status_is_final(r.status)) {
            resp->hold_ms = (int)wait_s * 1000;
            snprintf(resp->hold_key, sizeof(resp->hold_key), "%s", r.id);
        } else
            resp->status = 304;
        goto out;
    }
    json_t *points = json_array();
    st = store_list_points(req->app->store, r.id, since, (int)limit, points_cb, points);
    if (st != LT_OK) {
        json_decref(points);
        resp->etag[0] = '\0';
        http_fail(resp, st, NULL, "the run store cannot be read: %s", lt_status_code(st));
        goto out;
    }
    if (json_array_size(points) == 0 && wait_s > 0 && req->may_hold &&
        !run_status_is_final(r.status)) {
        /* Nothing after since yet: wait for the run's next second. */
        json_decref(points);
        resp->hold_ms = (int)wait_s * 1000;
        snprintf(resp->hold_key, sizeof(resp->hold_key), "%s", r.id);
        goto out;
    }
    resp->body = json_pack("{s:o}", "points", points);
out:
    run_record_clear(&r);
}

static void h_cancel(struct http_request *req, struct http_response *resp)
{
    struct run_record r;
    lt_status st;

    memset(&r, 0, sizeof(r));
    if (fetch_run(req, resp, &r) != 0)
        return;
    if (run_status_is_final(r.status)) {
        http_fail(resp, LT_ERR_CONFLICT, NULL, "run %s has already ended (%s)", r.id,
                  run_status_name(r.status));
        goto out;
    }
    st = pool_cancel(req->app->pool, r.id);
    if (st == LT_ERR_NOT_FOUND) {
        /* It ended between the read and the cancel. */
        http_fail(resp, LT_ERR_CONFLICT, NULL, "run %s has already ended", r.id);
        goto out;
    }
    if (st != LT_OK) {
        http_fail(resp, st, NULL, "the run could not be cancelled: %s", lt_status_code(st));
        goto out;
    }
    run_record_clear(&r);
    if (fetch_run(req, resp, &r) != 0)
        return;
    resp->status = 202;
    run_etag(&r, resp->etag, sizeof(resp->etag), NULL);
    resp->body = routes_run_document(&r, 1);
out:
    run_record_clear(&r);
}

static void h_delete(struct http_request *req, struct http_response *resp)
{
    lt_status st = store_delete_run(req->app->store, req->id);

    snprintf(req->log_run, sizeof(req->log_run), "%s", req->id);
    if (st == LT_OK) {
        resp->status = 204;
        return;
    }
    if (st == LT_ERR_NOT_FOUND)
        http_fail(resp, st, NULL, "no run with id '%s'", req->id);
    else if (st == LT_ERR_CONFLICT)
        http_fail(resp, st, NULL, "run %s is still queued or running; cancel it first", req->id);
    else
        http_fail(resp, st, NULL, "the run could not be deleted: %s", lt_status_code(st));
}

/* GET /v1/limits: the operator's caps and the API rate limit, so clients can size their runs. */
static void h_limits(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL};
    json_t *body;

    if (only_params(req, resp, names) != 0)
        return;
    body = req->app->caps ? caps_json(req->app->caps) : json_object();
    if (body == NULL) {
        http_fail(resp, LT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    json_object_set_new(body, "api",
                        req->app->api_rate > 0
                            ? json_pack("{s:i, s:i}", "rate_per_s", req->app->api_rate, "burst",
                                        req->app->api_burst)
                            : json_pack("{s:n, s:n}", "rate_per_s", "burst"));
    resp->body = body;
}

/* ---- helpers for the handlers of other modules (presets.c, compare.c) ---- */

int routes_only_params(struct http_request *req, struct http_response *resp,
                       const char *const *names)
{
    return only_params(req, resp, names);
}

int routes_etag_matches(const struct http_request *req, const char *etag)
{
    return etag_matches(req, etag);
}

int routes_parse_int(const char *s, long min, long max, long *out)
{
    return parse_int_param(s, min, max, out);
}

int routes_fetch_run(struct http_request *req, struct http_response *resp, struct run_record *r)
{
    return fetch_run(req, resp, r);
}

const struct http_route routes_table[] = {
    {"GET", "/healthz", h_healthz, AUTH_OPEN},
    {"GET", "/v1/version", h_version, AUTH_READ},
    {"POST", "/v1/runs", h_create_run, AUTH_WRITE},
    {"GET", "/v1/runs", h_list_runs, AUTH_READ},
    {"GET", "/v1/runs/{id}", h_get_run, AUTH_READ},
    {"DELETE", "/v1/runs/{id}", h_delete, AUTH_WRITE},
    {"GET", "/v1/runs/{id}/timeseries", h_timeseries, AUTH_READ},
    {"POST", "/v1/runs/{id}/cancel", h_cancel, AUTH_WRITE},
    /* The dashboard: a static page and its assets, no data, so no token (service/dashboard.c). */
    {"GET", "/", dashboard_index, AUTH_OPEN},
    {"GET", "/ui/{asset}", dashboard_asset, AUTH_OPEN},
    {"GET", "/metrics", metrics_handle, AUTH_READ},
    {"GET", "/v1/runs/{id}/compare", compare_h_runs, AUTH_READ},
    {"GET", "/v1/presets", presets_h_list, AUTH_READ},
    {"GET", "/v1/presets/{name}", presets_h_get, AUTH_READ},
    {"PUT", "/v1/presets/{name}", presets_h_put, AUTH_WRITE},
    {"DELETE", "/v1/presets/{name}", presets_h_delete, AUTH_WRITE},
    {"POST", "/v1/presets/{name}/runs", presets_h_start_run, AUTH_WRITE},
    /* Slack cannot send our bearer token: the Slack request signature authenticates it. */
    {"POST", "/v1/chatops/slack", slack_h_command, AUTH_OPEN},
    {"GET", "/v1/limits", h_limits, AUTH_READ},
    {NULL, NULL, NULL, AUTH_OPEN},
};
