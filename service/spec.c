/* spec: decoding and the kind-independent checks of a posted run spec (kind, name, notify). */
#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_json.h"
#include "notify.h"

void spec_mask(json_t *spec, const struct runner_ops *ops)
{
    if (ops != NULL && ops->mask_secrets)
        ops->mask_secrets(spec);
    notify_mask(json_object_get(spec, "notify"));
}

/* A stand-in for "***" that keeps URLs and DSNs parseable (letters only), so that masking a copy
 * shows whether the placeholder sat where a secret goes. */
#define PLACEHOLDER_MARK "zqxPLACEHOLDERzqx"

/* s with every "***" replaced by PLACEHOLDER_MARK (new; caller frees), NULL without memory. */
static char *replace_mask(const char *s)
{
    size_t count = 0, mlen = strlen(SPEC_MASK), klen = strlen(PLACEHOLDER_MARK);
    char *out, *o;
    const char *hit;

    for (hit = s; (hit = strstr(hit, SPEC_MASK)) != NULL; hit += mlen)
        count++;
    out = malloc(strlen(s) + count * klen + 1);
    if (out == NULL)
        return NULL;
    o = out;
    while ((hit = strstr(s, SPEC_MASK)) != NULL) {
        memcpy(o, s, (size_t)(hit - s));
        o += hit - s;
        memcpy(o, PLACEHOLDER_MARK, klen);
        o += klen;
        s = hit + mlen;
    }
    strcpy(o, s);
    return out;
}

/* Replaces every "***" in the strings of v (borrowed, modified) with PLACEHOLDER_MARK; returns
 * how many strings changed. */
static int mark_placeholders(json_t *v, int depth)
{
    const char *key;
    json_t *m;
    int n = 0;

    if (depth > 64)
        return 0;
    if (json_is_object(v)) {
        json_object_foreach(v, key, m)
        {
            if (json_is_string(m) && strstr(json_string_value(m), SPEC_MASK) != NULL) {
                char *marked = replace_mask(json_string_value(m));

                json_object_set_new(v, key, json_string(marked ? marked : PLACEHOLDER_MARK));
                free(marked);
                n++;
            } else {
                n += mark_placeholders(m, depth + 1);
            }
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            m = json_array_get(v, i);
            if (json_is_string(m) && strstr(json_string_value(m), SPEC_MASK) != NULL) {
                char *marked = replace_mask(json_string_value(m));

                json_array_set_new(v, i, json_string(marked ? marked : PLACEHOLDER_MARK));
                free(marked);
                n++;
            } else {
                n += mark_placeholders(m, depth + 1);
            }
        }
    }
    return n;
}

/* Finds a string of marked (borrowed) that holds PLACEHOLDER_MARK while the same member of
 * masked does not: there the placeholder stood for a secret. Writes its JSON pointer to ptr. */
static int find_hidden_mark(const json_t *marked, const json_t *masked, char *ptr, size_t len,
                            int depth)
{
    const char *key;
    json_t *m;
    size_t n = strlen(ptr);

    if (depth > 64)
        return 0;
    if (json_is_string(marked))
        return strstr(json_string_value(marked), PLACEHOLDER_MARK) != NULL &&
               !(json_is_string(masked) &&
                 strstr(json_string_value(masked), PLACEHOLDER_MARK) != NULL);
    if (json_is_object(marked)) {
        json_object_foreach((json_t *)marked, key, m)
        {
            ltj_pointer(ptr + n, len - n, "", key);
            if (find_hidden_mark(m, json_object_get(masked, key), ptr, len, depth + 1))
                return 1;
            ptr[n] = '\0';
        }
    } else if (json_is_array(marked)) {
        for (size_t i = 0; i < json_array_size(marked); i++) {
            snprintf(ptr + n, len - n, "/%zu", i);
            if (find_hidden_mark(json_array_get(marked, i), json_array_get(masked, i), ptr, len,
                                 depth + 1))
                return 1;
            ptr[n] = '\0';
        }
    }
    return 0;
}

lt_status spec_check_placeholders(const json_t *spec, const struct runner_ops *ops,
                                  struct lt_error *err)
{
    json_t *marked = json_deep_copy(spec);
    json_t *masked = NULL;
    char ptr[512] = "";
    int found = 0;

    if (marked == NULL)
        return lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
    if (mark_placeholders(marked, 0) > 0) {
        masked = json_deep_copy(marked);
        if (masked == NULL) {
            json_decref(marked);
            return lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
        }
        spec_mask(masked, ops);
        found = find_hidden_mark(marked, masked, ptr, sizeof(ptr), 0);
    }
    json_decref(masked);
    json_decref(marked);
    if (found)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, ptr,
                            "%s holds \"***\", the masked placeholder from an answer, where a "
                            "secret goes; send the real value",
                            ptr);
    return LT_OK;
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
    rc = spec_check_placeholders(spec, ops, err);
    if (rc != LT_OK)
        goto out;
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
