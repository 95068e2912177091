/* spec: decoding and the kind-independent checks of a posted run spec (kind, name, notify). */
#include "spec.h"

#include <stdio.h>
#include <string.h>

#include "lt_json.h"
#include "notify.h"

void spec_mask(json_t *spec, const struct runner_ops *ops)
{
    if (ops != NULL && ops->mask_secrets)
        ops->mask_secrets(spec);
    notify_mask(json_object_get(spec, "notify"));
}

lt_status spec_parse(const char *body, size_t len, json_t **spec_out, json_t **masked_out,
                     const struct runner_ops **ops_out, struct lt_error *err)
{
    json_error_t jerr;
    json_t *spec = NULL;
    json_t *masked = NULL;
    json_t *notify = NULL; /* own reference while it is out of the spec */
    const struct runner_ops *ops;
    const char *kind = NULL;
    const char *name = NULL;
    int known = 0;
    lt_status rc;

    *spec_out = NULL;
    *masked_out = NULL;
    *ops_out = NULL;
    /* Duplicate keys are refused: {"users": 1, "users": 100} must not pass silently. */
    spec = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (spec == NULL) {
        rc = lt_error_set(err, LT_ERR_INVALID_JSON, NULL, "invalid JSON at line %d column %d: %s",
                          jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(spec)) {
        rc = lt_error_set(err, LT_ERR_INVALID_SPEC, "", "the spec must be a JSON object");
        goto out;
    }
    rc = ltj_string(spec, "", "kind", 1, NULL, 1, 32, &kind, err);
    if (rc != LT_OK)
        goto out;
    ops = runner_find(kind, &known);
    if (!known) {
        rc = lt_error_set(err, LT_ERR_INVALID_SPEC, "/kind",
                          "unknown kind '%.32s'; expected capacity, ratelimit or generate", kind);
        goto out;
    }
    if (ops == NULL) {
        rc = lt_error_set(err, LT_ERR_INVALID_SPEC, "/kind",
                          "kind '%s' is not available in this build", kind);
        goto out;
    }
    rc = ltj_string(spec, "", "name", 0, NULL, 1, SPEC_NAME_MAX, &name, err);
    if (rc != LT_OK)
        goto out;
    /* notify is the service's, whatever the kind: validated here, kept away from the kind's
     * validator, and put back into the accepted spec. */
    notify = json_object_get(spec, "notify");
    if (notify != NULL) {
        json_incref(notify);
        json_object_del(spec, "notify");
        rc = notify_validate(notify, err);
        if (rc != LT_OK)
            goto out;
    }
    rc = ops->validate(spec, err);
    if (rc != LT_OK)
        goto out;
    if (notify != NULL && json_object_set(spec, "notify", notify) != 0) {
        rc = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    masked = json_deep_copy(spec);
    if (masked == NULL) {
        rc = lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    spec_mask(masked, ops);
    json_decref(notify);
    *spec_out = spec;
    *masked_out = masked;
    *ops_out = ops;
    return LT_OK;
out:
    json_decref(notify);
    json_decref(masked);
    json_decref(spec);
    return rc;
}
