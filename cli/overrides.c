/* overrides: spec files and --set PATH=VALUE edits of a JSON object. */
#define _POSIX_C_SOURCE 200809L
#include "overrides.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SEGMENTS_MAX 32

json_t *spec_read(const char *path, char *err, size_t errlen)
{
    const char *shown = strcmp(path, "-") == 0 ? "stdin" : path;
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;
    json_t *spec = NULL;
    json_error_t jerr;

    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open spec %s: %s", shown, strerror(errno));
        goto out;
    }
    buf = malloc(SPEC_FILE_MAX + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    len = fread(buf, 1, SPEC_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read spec %s: %s", shown, strerror(errno));
        goto out;
    }
    if (len > SPEC_FILE_MAX) {
        snprintf(err, errlen, "spec %s is larger than %d KiB, which loadtestd refuses", shown,
                 SPEC_FILE_MAX / 1024);
        goto out;
    }
    spec = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (spec == NULL) {
        snprintf(err, errlen, "spec %s:%d:%d: %s", shown, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(spec)) {
        snprintf(err, errlen, "spec %s: the spec must be a JSON object", shown);
        json_decref(spec);
        spec = NULL;
    }
out:
    free(buf);
    if (f && f != stdin)
        fclose(f);
    return spec;
}

/* Splits a dotted path into segments (in place in buf, unescaping "\." and "\\"). Returns the
 * count, or -1 when a segment is empty or there are too many. */
static int split_path(char *buf, char **seg, int max)
{
    int n = 0;
    char *w = buf, *r = buf;

    seg[n++] = w;
    for (; *r; r++) {
        if (*r == '\\' && (r[1] == '.' || r[1] == '\\')) {
            *w++ = *++r;
        } else if (*r == '.') {
            *w++ = '\0';
            if (n == max)
                return -1;
            seg[n++] = w;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    for (int i = 0; i < n; i++) {
        if (seg[i][0] == '\0')
            return -1;
    }
    return n;
}

static int parse_index(const char *s, size_t *out)
{
    char *end = NULL;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* Sets (or, in an array, replaces/appends) key in container to value; takes ownership of
 * value even on failure. */
static int set_member(json_t *container, const char *key, json_t *value, const char *path,
                      char *err, size_t errlen)
{
    size_t idx;

    if (json_is_object(container))
        return json_object_set_new(container, key, value) == 0 ? 0 : -1;
    if (parse_index(key, &idx) != 0 || idx > json_array_size(container)) {
        snprintf(err, errlen, "--set %s: '%s' is not an index of an array of %zu elements", path,
                 key, json_array_size(container));
        json_decref(value);
        return -1;
    }
    if (idx == json_array_size(container))
        return json_array_append_new(container, value) == 0 ? 0 : -1;
    return json_array_set_new(container, idx, value) == 0 ? 0 : -1;
}

int override_apply(json_t *root, const char *assignment, char *err, size_t errlen)
{
    const char *eq = strchr(assignment, '=');
    char *path = NULL, *shown = NULL;
    char *seg[PATH_SEGMENTS_MAX];
    json_t *cur = root, *value = NULL;
    int n, rc = -1;

    err[0] = '\0';
    if (eq == NULL || eq == assignment) {
        snprintf(err, errlen, "--set needs PATH=VALUE (like load.users=50), not '%s'", assignment);
        goto out;
    }
    path = strndup(assignment, (size_t)(eq - assignment));
    shown = strndup(assignment, (size_t)(eq - assignment));
    if (path == NULL || shown == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    n = split_path(path, seg, PATH_SEGMENTS_MAX);
    if (n < 0) {
        snprintf(err, errlen, "--set %s: the path has an empty part or more than %d parts", shown,
                 PATH_SEGMENTS_MAX);
        goto out;
    }
    for (int i = 0; i < n - 1; i++) {
        json_t *next;
        size_t idx;

        if (json_is_object(cur)) {
            next = json_object_get(cur, seg[i]);
            if (next == NULL) {
                next = json_object();
                if (next == NULL || json_object_set_new(cur, seg[i], next) != 0) {
                    snprintf(err, errlen, "out of memory");
                    goto out;
                }
            }
        } else if (parse_index(seg[i], &idx) == 0 && idx < json_array_size(cur)) {
            next = json_array_get(cur, idx);
        } else if (parse_index(seg[i], &idx) == 0 && idx == json_array_size(cur)) {
            next = json_object();
            if (next == NULL || json_array_append_new(cur, next) != 0) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
        } else {
            snprintf(err, errlen, "--set %s: '%s' is not an index of an array of %zu elements",
                     shown, seg[i], json_array_size(cur));
            goto out;
        }
        if (!json_is_object(next) && !json_is_array(next)) {
            snprintf(err, errlen, "--set %s: '%s' is %s in the spec, not an object", shown, seg[i],
                     type_name(next));
            goto out;
        }
        cur = next;
    }
    value = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (value == NULL)
        value = json_string(eq + 1);
    if (value == NULL) {
        snprintf(err, errlen, "--set %s: the value is not valid UTF-8", shown);
        goto out;
    }
    if (set_member(cur, seg[n - 1], value, shown, err, errlen) != 0) {
        if (!*err)
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(shown);
    free(path);
    return rc;
}
