/*
 * routes: the REST API of loadtestd (see openapi/openapi.yaml) — the route table and handlers.
 */
#ifndef LT_ROUTES_H
#define LT_ROUTES_H

#include "http.h"
#include "pool.h"
#include "store.h"

struct lt_allow_slot;
struct caps;
struct apilimit;
struct notifier;

/* Everything a handler may use; borrowed by the HTTP server for its lifetime. */
struct app {
    struct store *store;
    struct pool *pool;
    struct auth *auth; /* NULL: no tokens (the daemon then serves loopback only); SIGHUP may
                          replace the tokens inside (auth_reload) */
    struct lt_allow_slot *allow_slot; /* the target allowlist in force; SIGHUP may swap it, so
                                         take a reference (lt_allow_slot_get) per use */
    const struct caps *caps;          /* per-run operator caps; NULL: none */
    struct apilimit *apilimit;        /* the API's request rate limit; NULL: off */
    int api_rate, api_burst;          /* its settings, for GET /v1/limits (rate 0: off) */
    /* chat-ops and webhooks (notify.h, slack.h) */
    struct notifier *notifier; /* completion webhooks; NULL: none are sent */
    const char *slack_secret;  /* Slack signing secret; NULL: POST /v1/chatops/slack answers 404 */
    size_t slack_secret_len;
};

/* The route table, terminated by a row of NULLs. */
extern const struct http_route routes_table[];

/* Renders a stored run as the run document of the API. full = 0 gives the summary used by
 * GET /v1/runs (no spec, progress, result; verdict reduced to pass and summary).
 * Returns new; caller decrefs. */
json_t *routes_run_document(const struct run_record *r, int full);

/* 1 when key is a valid Idempotency-Key (1 to 255 visible ASCII characters). */
int routes_idempotency_key_ok(const char *key);

/* Everything POST /v1/runs does with a body: decodes and validates the spec, checks it against
 * the operator caps (403 limit_exceeded) and its targets against the allowlist, replays an earlier
 * run created with the same Idempotency-Key ikey (may be NULL), else stores and queues a new run.
 * On LT_OK *out is the run (caller clears it) and *replayed says whether it was created earlier. On
 * failure err names the cause (and the field) and nothing is stored. Used by every way of starting
 * a run (REST, presets, chat-ops). */
lt_status routes_submit_run(struct app *app, const char *body, size_t len, const char *ikey,
                            struct run_record *out, int *replayed, struct lt_error *err);

/* routes_submit_run for a run started from preset (NULL: none): the run records the preset's
 * name, and an Idempotency-Key replays only a run of the same preset. routes_submit_run is
 * routes_submit_run_from(app, NULL, ...). */
lt_status routes_submit_run_from(struct app *app, const char *preset, const char *body, size_t len,
                                 const char *ikey, struct run_record *out, int *replayed,
                                 struct lt_error *err);

/* The validation half of routes_submit_run: decodes and validates the spec (spec_parse) and
 * checks its targets against the allowlist. On LT_OK *spec (defaults filled, real secrets),
 * *masked and *ops are set (new references; caller decrefs); on failure err names the field. */
lt_status routes_check_spec(struct app *app, const char *body, size_t len, json_t **spec,
                            json_t **masked, const struct runner_ops **ops, struct lt_error *err);

/* Helpers shared with the handlers of presets.c and compare.c. */
/* Answers 400 invalid_parameter (returns -1) when the request has a query parameter not in
 * names (NULL-terminated); else returns 0. */
int routes_only_params(struct http_request *req, struct http_response *resp,
                       const char *const *names);
/* 1 when the request's If-None-Match names etag (or is "*"). */
int routes_etag_matches(const struct http_request *req, const char *etag);
/* Parses a decimal integer in [min, max] into *out; returns 0, or -1 when it is not one. */
int routes_parse_int(const char *s, long min, long max, long *out);
/* Reads run req->id into r (caller clears it), answering 404/503 itself: returns 0 when found. */
int routes_fetch_run(struct http_request *req, struct http_response *resp, struct run_record *r);

/* Answers 202 with Location, ETag and the run document of r. */
void routes_answer_run(struct http_request *req, struct http_response *resp,
                       const struct run_record *r, int replayed);

#endif
