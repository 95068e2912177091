/*
 * presets: the preset routes and presets_start_run (see presets.h). Runs on the HTTP threads
 * (and on whatever thread calls presets_start_run): pure JSON work plus store calls, never a
 * wait on a run.
 *
 * Secrets: the store keeps the spec exactly as submitted, real passwords and tokens included,
 * because a preset must be able to run. Every answer renders it through spec_mask first (the
 * masking run documents get; preset_document), nothing here logs a spec, and overrides may not
 * carry a stored secret to a new endpoint (presets_check_overrides).
 */
#define _GNU_SOURCE
#include "presets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_json.h"
#include "routes.h"
#include "runner.h"
#include "spec.h"

#define PRESETS_LIMIT_DEFAULT 50
#define PRESETS_LIMIT_MAX     1000
#define MERGE_DEPTH_MAX       64

static json_t *merge(json_t *target, const json_t *patch, int depth)
{
    const char *key;
    json_t *value;

    if (!json_is_object(patch) || depth >= MERGE_DEPTH_MAX) {
        json_decref(target);
        return json_deep_copy(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
        if (target == NULL)
            return NULL;
    }
    json_object_foreach((json_t *)patch, key, value)
    {
        json_t *cur, *merged;

        if (json_is_null(value)) {
            json_object_del(target, key); /* absent already: nothing to do */
            continue;
        }
        cur = json_object_get(target, key);
        merged = merge(json_incref(cur), value, depth + 1);
        if (merged == NULL || json_object_set_new(target, key, merged) != 0) {
            json_decref(target);
            return NULL;
        }
    }
    return target;
}

json_t *presets_merge_patch(json_t *target, const json_t *patch)
{
    return merge(target, patch, 0);
}

/* The masked form of stored spec text (new; caller decrefs): spec_mask on a copy, the same
 * masking run documents get. A spec whose kind is unknown (a later build dropped it) is hidden
 * entirely rather than shown unmasked. */
static json_t *masked_spec(const char *spec_json)
{
    json_t *spec = spec_json ? json_loads(spec_json, 0, NULL) : NULL;
    const struct runner_ops *ops;
    int known = 0;

    if (!json_is_object(spec)) {
        json_decref(spec);
        return json_object();
    }
    ops = runner_find(json_string_value(json_object_get(spec, "kind")), &known);
    if (ops == NULL) {
        json_t *kind = json_incref(json_object_get(spec, "kind"));
        json_decref(spec);
        spec = json_object();
        if (kind)
            json_object_set_new(spec, "kind", kind);
        return spec;
    }
    spec_mask(spec, ops);
    return spec;
}

static void time_string(int64_t ms, char buf[LT_TIME_SIZE])
{
    lt_format_time(ms, buf);
}

/* The preset document of the API (new; caller decrefs). */
static json_t *preset_document(const struct preset_record *p)
{
    char created[LT_TIME_SIZE], updated[LT_TIME_SIZE];
    json_t *spec = masked_spec(p->spec_json);
    json_t *kind = json_object_get(spec, "kind");

    time_string(p->created_at_ms, created);
    time_string(p->updated_at_ms, updated);
    return json_pack("{s:s, s:O, s:o, s:s, s:s, s:I}", "name", p->name, "kind",
                     json_is_string(kind) ? kind : json_null(), "spec", spec, "created_at", created,
                     "updated_at", updated, "version", (json_int_t)p->version);
}

/* The version alone repeats when a preset is deleted and created again (it restarts at 1), so
 * the tag also carries a hash of the creation time and the stored spec. */
static void preset_etag(const struct preset_record *p, char *out, size_t outlen)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    char created[32];

    snprintf(created, sizeof(created), "%lld:", (long long)p->created_at_ms);
    for (const char *c = created; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    for (const char *c = p->spec_json ? p->spec_json : ""; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    snprintf(out, outlen, "\"p-v%lld-%016llx\"", (long long)p->version, (unsigned long long)h);
}

static void store_failed(struct http_response *resp, lt_status st, const char *what)
{
    http_fail(resp, st, NULL, "the preset store cannot %s: %s", what, lt_status_code(st));
}

void presets_h_put(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL};
    struct preset_record p;
    struct lt_error err;
    json_t *spec = NULL, *masked = NULL, *submitted = NULL;
    const struct runner_ops *ops = NULL;
    json_error_t jerr;
    int created = 0;
    lt_status st;

    memset(&p, 0, sizeof(p));
    memset(&err, 0, sizeof(err));
    if (routes_only_params(req, resp, names) != 0)
        return;
    if (!preset_name_ok(req->id)) { /* the route's charset is ours; the length is checked here */
        http_fail(resp, LT_ERR_NOT_FOUND, NULL,
                  "preset names are 1 to %d characters of "
                  "A-Z a-z 0-9 _ -",
                  PRESET_NAME_MAX);
        return;
    }
    /* Validated exactly like POST /v1/runs; stored as submitted (defaults are filled again at
     * each run, so a later default change applies to presets too). */
    st = routes_check_spec(req->app, req->body, req->body_len, &spec, &masked, &ops, &err);
    if (st != LT_OK) {
        http_error(resp, &err);
        return;
    }
    submitted = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    snprintf(p.name, sizeof(p.name), "%s", req->id);
    p.spec_json = submitted ? json_dumps(submitted, JSON_COMPACT) : NULL;
    p.updated_at_ms = lt_now_ms();
    if (p.spec_json == NULL) {
        http_fail(resp, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    st = store_put_preset(req->app->store, &p, &created);
    if (st != LT_OK) {
        store_failed(resp, st, "be written");
        goto out;
    }
    lt_log("info", "preset_put", "preset=%s kind=%s version=%lld created=%d", p.name, ops->kind,
           (long long)p.version, created);
    resp->status = created ? 201 : 200;
    if (created)
        snprintf(resp->location, sizeof(resp->location), "/v1/presets/%s", p.name);
    preset_etag(&p, resp->etag, sizeof(resp->etag));
    resp->body = preset_document(&p);
out:
    preset_record_clear(&p);
    json_decref(submitted);
    json_decref(masked);
    json_decref(spec);
}

void presets_h_get(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL};
    struct preset_record p;
    lt_status st;

    if (routes_only_params(req, resp, names) != 0)
        return;
    st = store_get_preset(req->app->store, req->id, &p);
    if (st == LT_ERR_NOT_FOUND) {
        http_fail(resp, st, NULL, "no preset named '%s'", req->id);
        return;
    }
    if (st != LT_OK) {
        store_failed(resp, st, "be read");
        return;
    }
    preset_etag(&p, resp->etag, sizeof(resp->etag));
    if (routes_etag_matches(req, resp->etag))
        resp->status = 304;
    else
        resp->body = preset_document(&p);
    preset_record_clear(&p);
}

void presets_h_delete(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL};
    lt_status st;

    if (routes_only_params(req, resp, names) != 0)
        return;
    st = store_delete_preset(req->app->store, req->id);
    if (st == LT_OK) {
        lt_log("info", "preset_deleted", "preset=%s", req->id);
        resp->status = 204;
    } else if (st == LT_ERR_NOT_FOUND) {
        http_fail(resp, st, NULL, "no preset named '%s'", req->id);
    } else {
        store_failed(resp, st, "be written");
    }
}

struct list_ctx {
    json_t *presets;
    char last[PRESET_NAME_SIZE];
};

static int list_cb(void *opaque, const struct preset_record *p)
{
    struct list_ctx *c = opaque;

    json_array_append_new(c->presets, preset_document(p));
    snprintf(c->last, sizeof(c->last), "%s", p->name);
    return 0;
}

void presets_h_list(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {"limit", "cursor", NULL};
    struct list_ctx c;
    const char *v, *after = NULL;
    long limit = PRESETS_LIMIT_DEFAULT;
    int more = 0;
    lt_status st;

    memset(&c, 0, sizeof(c));
    if (routes_only_params(req, resp, names) != 0)
        return;
    if ((v = http_query(req, "limit")) != NULL &&
        routes_parse_int(v, 1, PRESETS_LIMIT_MAX, &limit) != 0) {
        http_fail(resp, LT_ERR_INVALID_PARAM, "limit", "limit must be an integer from 1 to %d",
                  PRESETS_LIMIT_MAX);
        return;
    }
    if ((v = http_query(req, "cursor")) != NULL) {
        if (!preset_name_ok(v)) {
            http_fail(resp, LT_ERR_INVALID_PARAM, "cursor",
                      "cursor must be a next_cursor value from an earlier answer");
            return;
        }
        after = v;
    }
    c.presets = json_array();
    st = store_list_presets(req->app->store, after, (int)limit, list_cb, &c, &more);
    if (st != LT_OK) {
        json_decref(c.presets);
        store_failed(resp, st, "be read");
        return;
    }
    resp->body = json_pack("{s:o, s:o}", "presets", c.presets, "next_cursor",
                           more ? json_string(c.last) : json_null());
}

/* ---- overrides that would move a stored secret --------------------------------------------- */

#define ENDPOINT_FIELDS 8
#define ENDPOINT_TEXT   1024

/* The endpoints a spec reaches, per field (JSON pointer): "scheme://host:port;" for each, in the
 * order the kind lists them. */
struct endpoints {
    size_t n;
    int overflow;
    char field[ENDPOINT_FIELDS][64];
    char text[ENDPOINT_FIELDS][ENDPOINT_TEXT];
};

/* The member of v (borrowed) at the JSON pointer ptr, or NULL. */
static json_t *at_pointer(json_t *v, const char *ptr)
{
    char key[256];

    while (v != NULL && *ptr == '/') {
        size_t n = 0;
        for (ptr++; *ptr && *ptr != '/' && n + 1 < sizeof(key); ptr++) {
            if (ptr[0] == '~' && (ptr[1] == '0' || ptr[1] == '1')) {
                key[n++] = ptr[1] == '0' ? '~' : '/';
                ptr++;
            } else {
                key[n++] = *ptr;
            }
        }
        key[n] = '\0';
        v = json_is_array(v) ? json_array_get(v, strtoul(key, NULL, 10)) : json_object_get(v, key);
    }
    return v;
}

static char *endpoint_slot(struct endpoints *e, const char *field)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->field[i], field) == 0)
            return e->text[i];
    }
    if (e->n == ENDPOINT_FIELDS)
        return NULL;
    snprintf(e->field[e->n], sizeof(e->field[0]), "%s", field);
    e->text[e->n][0] = '\0';
    return e->text[e->n++];
}

struct endpoint_ctx {
    struct endpoints *e;
    const json_t *spec;
};

static int add_endpoint(void *opaque, const char *host, int port, const char *field)
{
    struct endpoint_ctx *c = opaque;
    char *slot = endpoint_slot(c->e, field);
    const char *value = json_string_value(at_pointer((json_t *)c->spec, field));
    const char *sep = value ? strstr(value, "://") : NULL;
    size_t n;

    if (slot == NULL) { /* more fields than any kind has: refuse rather than miss one */
        c->e->overflow = 1;
        return 0;
    }
    n = strlen(slot);
    /* The scheme matters for a URL (http to a host that sees the headers in clear); a
     * keyword=value DSN has none. */
    snprintf(slot + n, ENDPOINT_TEXT - n, "%.*s%s%s:%d;", sep ? (int)(sep - value) : 0,
             sep ? value : "", sep ? "://" : "", host, port);
    return 0;
}

static void spec_endpoints(const json_t *spec, struct endpoints *e)
{
    struct endpoint_ctx c = {.e = e, .spec = spec};
    const struct runner_ops *ops;
    const char *hook;
    int known = 0;

    memset(e, 0, sizeof(*e));
    ops = runner_find(json_string_value(json_object_get(spec, "kind")), &known);
    if (ops != NULL && ops->each_target != NULL)
        ops->each_target(spec, add_endpoint, &c);
    hook = json_string_value(json_object_get(json_object_get(spec, "notify"), "webhook_url"));
    if (hook != NULL) {
        char host[256];
        int port = 0;
        if (runner_url_host(hook, host, sizeof(host), &port) != 0)
            host[0] = '\0';
        add_endpoint(&c, host, port, "/notify/webhook_url");
    }
}

/* Finds a secret of stored (borrowed) — a member that masking changes — that merged (borrowed)
 * still holds unchanged at the same place; writes its pointer (prefixed by ptr) to ptr. */
static int retained_secret(const json_t *stored, const json_t *masked, const json_t *merged,
                           char *ptr, size_t len, int depth)
{
    const char *key;
    json_t *v;
    size_t n = strlen(ptr);

    if (stored == NULL || merged == NULL || depth > MERGE_DEPTH_MAX)
        return 0;
    if (json_is_object(stored) && json_is_object(masked)) {
        json_object_foreach((json_t *)stored, key, v)
        {
            ltj_pointer(ptr + n, len - n, "", key);
            if (retained_secret(v, json_object_get(masked, key), json_object_get(merged, key), ptr,
                                len, depth + 1))
                return 1;
            ptr[n] = '\0';
        }
        return 0;
    }
    if (json_is_array(stored) && json_is_array(masked)) {
        for (size_t i = 0; i < json_array_size(stored); i++) {
            snprintf(ptr + n, len - n, "/%zu", i);
            if (retained_secret(json_array_get(stored, i), json_array_get(masked, i),
                                json_array_get(merged, i), ptr, len, depth + 1))
                return 1;
            ptr[n] = '\0';
        }
        return 0;
    }
    return !json_equal((json_t *)stored, (json_t *)masked) &&
           json_equal((json_t *)stored, (json_t *)merged);
}

/* Overrides may not send a stored secret somewhere new: when the merged spec reaches another
 * scheme, host or port through a URL or DSN field than the stored spec does, and the object
 * holding that field (its owner: target, setup, database, notify) still carries a secret the
 * stored spec had there (a credential header, a URL or DSN password, a secret in a setup body),
 * the run is refused. A secret the overrides replace (a new URL with its own password) is the
 * caller's own and passes. */
lt_status presets_check_overrides(const json_t *stored, const json_t *merged, struct lt_error *err)
{
    struct endpoints *before = calloc(1, sizeof(*before)), *after = calloc(1, sizeof(*after));
    const struct runner_ops *ops;
    json_t *masked = json_deep_copy(stored);
    lt_status st = LT_OK;
    int known = 0;

    if (before == NULL || after == NULL || masked == NULL) {
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    ops = runner_find(json_string_value(json_object_get(stored, "kind")), &known);
    spec_mask(masked, ops);
    spec_endpoints(stored, before);
    spec_endpoints(merged, after);
    if (before->overflow || after->overflow) {
        st = lt_error_set(err, LT_ERR_INTERNAL, NULL,
                          "the spec reaches more endpoints than the override check can compare");
        goto out;
    }
    for (size_t i = 0; i < after->n; i++) {
        char owner[64], ptr[512];
        const char *was = "";
        char *slash;

        for (size_t k = 0; k < before->n; k++) {
            if (strcmp(before->field[k], after->field[i]) == 0)
                was = before->text[k];
        }
        if (strcmp(was, after->text[i]) == 0)
            continue;
        snprintf(owner, sizeof(owner), "%s", after->field[i]);
        slash = strrchr(owner, '/');
        if (slash != NULL)
            *slash = '\0';
        snprintf(ptr, sizeof(ptr), "%s", owner);
        if (retained_secret(at_pointer((json_t *)stored, owner), at_pointer(masked, owner),
                            at_pointer((json_t *)merged, owner), ptr, sizeof(ptr), 0)) {
            st = lt_error_set(err, LT_ERR_INVALID_SPEC, after->field[i],
                              "the overrides point %s at another scheme, host or port, but the "
                              "preset's stored secret %s would be sent there; override that too, "
                              "or PUT a preset for the new endpoint",
                              after->field[i], ptr);
            goto out;
        }
    }
out:
    json_decref(masked);
    free(before);
    free(after);
    return st;
}

lt_status presets_start_run(struct app *app, const char *name, const json_t *overrides,
                            const char *ikey, struct run_record *out, int *replayed,
                            struct lt_error *err)
{
    struct preset_record p;
    json_t *spec = NULL;
    char *text = NULL;
    lt_status st;

    memset(out, 0, sizeof(*out));
    memset(&p, 0, sizeof(p));
    *replayed = 0;
    if (!preset_name_ok(name))
        return lt_error_set(err, LT_ERR_NOT_FOUND, NULL,
                            "no preset by that name (names are 1 to %d characters of A-Z a-z "
                            "0-9 _ -)",
                            PRESET_NAME_MAX);
    if (overrides != NULL && !json_is_object(overrides))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "",
                            "the overrides must be a JSON object (a JSON Merge Patch)");
    st = store_get_preset(app->store, name, &p);
    if (st == LT_ERR_NOT_FOUND)
        return lt_error_set(err, st, NULL, "no preset named '%s'", name);
    if (st != LT_OK)
        return lt_error_set(err, st, NULL, "the preset store cannot be read: %s",
                            lt_status_code(st));
    spec = json_loads(p.spec_json, 0, NULL);
    if (!json_is_object(spec)) {
        st = lt_error_set(err, LT_ERR_IO, NULL, "preset '%s' is damaged in the store", name);
        goto out;
    }
    if (overrides != NULL) {
        json_t *stored = json_deep_copy(spec);

        spec = stored ? presets_merge_patch(spec, overrides) : NULL;
        if (spec == NULL) {
            json_decref(stored);
            st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
            goto out;
        }
        st = presets_check_overrides(stored, spec, err);
        json_decref(stored);
        if (st != LT_OK)
            goto out;
    }
    if (json_object_get(spec, "name") == NULL &&
        json_object_set_new(spec, "name", json_string(name)) != 0) {
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    text = json_dumps(spec, JSON_COMPACT);
    if (text == NULL) {
        st = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    if (strlen(text) > HTTP_BODY_MAX) {
        st = lt_error_set(err, LT_ERR_PAYLOAD_TOO_LARGE, NULL,
                          "the preset with these overrides is larger than %d bytes", HTTP_BODY_MAX);
        goto out;
    }
    st = routes_submit_run_from(app, name, text, strlen(text), ikey, out, replayed, err);
out:
    free(text);
    json_decref(spec);
    preset_record_clear(&p);
    return st;
}

void presets_h_start_run(struct http_request *req, struct http_response *resp)
{
    static const char *const names[] = {NULL};
    struct run_record rec;
    struct lt_error err;
    json_t *overrides = NULL;
    json_error_t jerr;
    int replayed = 0;
    size_t i;

    memset(&err, 0, sizeof(err));
    if (routes_only_params(req, resp, names) != 0)
        return;
    for (i = 0; i < req->body_len && strchr(" \t\r\n", req->body[i]) != NULL; i++)
        ;
    if (i < req->body_len) { /* an empty body: no overrides */
        overrides =
            json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (overrides == NULL) {
            http_fail(resp, LT_ERR_INVALID_JSON, NULL, "invalid JSON at line %d column %d: %s",
                      jerr.line, jerr.column, jerr.text);
            return;
        }
    }
    if (presets_start_run(req->app, req->id, overrides, http_header(req, "Idempotency-Key"), &rec,
                          &replayed, &err) != LT_OK) {
        json_decref(overrides);
        http_error(resp, &err);
        return;
    }
    json_decref(overrides);
    routes_answer_run(req, resp, &rec, replayed);
    run_record_clear(&rec);
}
