/*
 * presets: named run specs kept by the daemon (PUT/GET/DELETE /v1/presets/{name},
 * GET /v1/presets) and runs started from them (POST /v1/presets/{name}/runs) with optional
 * overrides given as a JSON Merge Patch (RFC 7386). A preset keeps the spec as submitted, with
 * its real secrets, in the store; every answer shows it masked. Starting a run merges the
 * overrides into the stored spec and submits the result through routes_submit_run_from, so a
 * preset run is validated, allowlist-checked and idempotent exactly like POST /v1/runs.
 */
#ifndef LT_PRESETS_H
#define LT_PRESETS_H

#include <jansson.h>

#include "http.h"
#include "lt_status.h"
#include "store.h"

struct app;

/* Starts a run from preset name with overrides (NULL, or a JSON object: a merge patch applied
 * to a copy of the stored spec; borrowed). ikey is an Idempotency-Key or NULL. A merged spec
 * without "name" is named after the preset. On LT_OK *out is the new run (or, *replayed = 1, the
 * run an earlier call with the same ikey started); the caller clears it. On failure err names
 * the cause: LT_ERR_NOT_FOUND (no such preset, or an invalid name), LT_ERR_INVALID_SPEC with the
 * field when the merged spec is invalid or would send a stored secret to a new endpoint
 * (presets_check_overrides), and whatever routes_submit_run answers. */
lt_status presets_start_run(struct app *app, const char *name, const json_t *overrides,
                            const char *ikey, struct run_record *out, int *replayed,
                            struct lt_error *err);

/* Refuses (LT_ERR_INVALID_SPEC naming the URL or DSN field) overrides that would send a secret
 * of the stored spec to a new endpoint: merged (the stored spec with the overrides applied)
 * reaches another scheme, host or port through a field, and the object holding that field still
 * carries a secret of stored (one spec_mask hides: a credential header, a URL or DSN password, a
 * secret in a setup body, the webhook URL) unchanged. Both borrowed. Used by presets_start_run,
 * so REST and Slack get it alike. */
lt_status presets_check_overrides(const json_t *stored, const json_t *merged, struct lt_error *err);

/* Applies merge patch patch (borrowed) to target per RFC 7386 and returns the result: target
 * itself (modified in place) when both are objects, else a new reference to patch's value. Takes
 * ownership of target. Returns NULL when out of memory. Nesting deeper than 64 levels is cut
 * off (the patch's value at that depth replaces the target's). */
json_t *presets_merge_patch(json_t *target, const json_t *patch);

/* Route handlers (see the route table in routes.c). req->id is the {name} segment. */
void presets_h_put(struct http_request *req, struct http_response *resp);
void presets_h_get(struct http_request *req, struct http_response *resp);
void presets_h_delete(struct http_request *req, struct http_response *resp);
void presets_h_list(struct http_request *req, struct http_response *resp);
void presets_h_start_run(struct http_request *req, struct http_response *resp);

#endif
