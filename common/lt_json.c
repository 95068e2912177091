/* lt_json: strict field readers used by the spec validators. */
#include "lt_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ltj_pointer(char *out, size_t outlen, const char *parent, const char *key)
{
    size_t n = 0;
    int w = snprintf(out, outlen, "%s/", parent);

    if (w < 0 || (size_t)w >= outlen)
        return;
    n = (size_t)w;
    for (const char *k = key; *k && n + 3 < outlen; k++) {
        if (*k == '~') {
            out[n++] = '~';
            out[n++] = '0';
        } else if (*k == '/') {
            out[n++] = '~';
            out[n++] = '1';
        } else {
            out[n++] = *k;
        }
    }
    out[n] = '\0';
}

lt_status ltj_check_keys(const json_t *obj, const char *ptr, const char *const *allowed,
                         struct lt_error *err)
{
    const char *key;
    json_t *val;
    char fp[128];

    json_object_foreach((json_t *)obj, key, val)
    {
        int ok = 0;
        (void)val;
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(*a, key) == 0) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            ltj_pointer(fp, sizeof(fp), ptr, key);
            return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "unknown field '%.60s'", key);
        }
    }
    return LT_OK;
}

static lt_status missing(const char *fp, struct lt_error *err)
{
    return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s is required", fp);
}

lt_status ltj_object(json_t *obj, const char *ptr, const char *key, int required, json_t **out,
                     struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);

    ltj_pointer(fp, sizeof(fp), ptr, key);
    if (v == NULL) {
        if (required)
            return missing(fp, err);
        v = json_object();
        if (v == NULL || json_object_set_new(obj, key, v) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
    }
    if (!json_is_object(v))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be an object", fp);
    *out = v;
    return LT_OK;
}

lt_status ltj_int(json_t *obj, const char *ptr, const char *key, int required, int64_t def,
                  int64_t min, int64_t max, int64_t *out, struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);
    int64_t x;

    ltj_pointer(fp, sizeof(fp), ptr, key);
    if (v == NULL) {
        if (required)
            return missing(fp, err);
        if (json_object_set_new(obj, key, json_integer(def)) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
        *out = def;
        return LT_OK;
    }
    if (!json_is_integer(v))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be an integer", fp);
    x = (int64_t)json_integer_value(v);
    if (x < min || x > max)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be between %lld and %lld", fp,
                            (long long)min, (long long)max);
    *out = x;
    return LT_OK;
}

static lt_status check_number(json_t *v, const char *fp, double min, double max, double *out,
                              struct lt_error *err)
{
    double x;

    if (!json_is_number(v))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be a number", fp);
    x = json_number_value(v);
    if (!isfinite(x) || x < min || x > max)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be between %g and %g", fp, min,
                            max);
    *out = x;
    return LT_OK;
}

lt_status ltj_number(json_t *obj, const char *ptr, const char *key, int required, double def,
                     double min, double max, double *out, struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);

    ltj_pointer(fp, sizeof(fp), ptr, key);
    if (v == NULL) {
        if (required)
            return missing(fp, err);
        if (json_object_set_new(obj, key, json_real(def)) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
        *out = def;
        return LT_OK;
    }
    return check_number(v, fp, min, max, out, err);
}

lt_status ltj_number_or_null(json_t *obj, const char *ptr, const char *key, double min, double max,
                             double *out, int *present, struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);

    ltj_pointer(fp, sizeof(fp), ptr, key);
    *present = 0;
    if (v == NULL || json_is_null(v)) {
        if (v == NULL && json_object_set_new(obj, key, json_null()) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
        return LT_OK;
    }
    if (check_number(v, fp, min, max, out, err) != LT_OK)
        return err ? err->status : LT_ERR_INVALID_SPEC;
    *present = 1;
    return LT_OK;
}

lt_status ltj_bool(json_t *obj, const char *ptr, const char *key, int required, int def, int *out,
                   struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);

    ltj_pointer(fp, sizeof(fp), ptr, key);
    if (v == NULL) {
        if (required)
            return missing(fp, err);
        if (json_object_set_new(obj, key, json_boolean(def)) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
        *out = def;
        return LT_OK;
    }
    if (!json_is_boolean(v))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be true or false", fp);
    *out = json_is_true(v);
    return LT_OK;
}

lt_status ltj_string(json_t *obj, const char *ptr, const char *key, int required, const char *def,
                     size_t minlen, size_t maxlen, const char **out, struct lt_error *err)
{
    char fp[128];
    json_t *v = json_object_get(obj, key);
    size_t len;

    ltj_pointer(fp, sizeof(fp), ptr, key);
    if (v == NULL) {
        if (required)
            return missing(fp, err);
        *out = NULL;
        if (def == NULL)
            return LT_OK;
        if (json_object_set_new(obj, key, json_string(def)) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, fp, "out of memory");
        *out = json_string_value(json_object_get(obj, key));
        return LT_OK;
    }
    if (!json_is_string(v))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be a string", fp);
    len = json_string_length(v);
    if (strlen(json_string_value(v)) != len)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must not contain NUL", fp);
    if (len < minlen || len > maxlen)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp,
                            "%s must be between %zu and %zu characters long", fp, minlen, maxlen);
    *out = json_string_value(v);
    return LT_OK;
}

lt_status ltj_enum(json_t *obj, const char *ptr, const char *key, int required, const char *def,
                   const char *const *choices, int *index, struct lt_error *err)
{
    const char *s = NULL;
    char fp[128];
    char list[200] = "";
    lt_status st = ltj_string(obj, ptr, key, required, def, 1, 64, &s, err);

    if (st != LT_OK)
        return st;
    for (int i = 0; choices[i]; i++) {
        if (s != NULL && strcmp(s, choices[i]) == 0) {
            *index = i;
            return LT_OK;
        }
        size_t n = strlen(list);
        snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", choices[i]);
    }
    ltj_pointer(fp, sizeof(fp), ptr, key);
    return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be one of: %s", fp, list);
}
