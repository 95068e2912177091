/*
 * target_spec: the `target` checks shared by the capacity and ratelimit kinds (see
 * target_spec.h). Each check is written once, parameterised by the JSON pointer of the object it
 * looks at, so an error names exactly the field the client sent, whichever kind and object
 * (target or setup) it came from. What the kinds disagree on is a flag, never a second copy.
 */
#define _GNU_SOURCE
#include "target_spec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_json.h"
#include "runner.h"

#define MAX_HEADERS 64
#define MAX_BODIES  1000
#define MAX_EXPECT  100
#define MAX_PTR     128

const char *const target_spec_methods[] = {"GET",    "POST", "PUT",     "PATCH",
                                           "DELETE", "HEAD", "OPTIONS", NULL};

static const char *const target_keys[] = {"url",        "method",        "headers", "bodies",
                                          "timeout_ms", "expect_status", NULL};

/* "<pointer> <what>", the field named: the shape of every validation error here. */
static lt_status spec_error(struct lt_error *err, const char *fp, const char *what)
{
    return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s %s", fp, what);
}

lt_status target_spec_check_url(const char *url, const char *field, struct lt_error *err)
{
    const char *p, *auth_end, *host, *at;
    char h[256];
    int port;
    size_t n;

    for (p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return spec_error(err, field, "must not contain spaces or control characters");
    }
    if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8;
    else
        return spec_error(err, field, "must start with http:// or https://");
    auth_end = p + strcspn(p, "/?#");
    host = p;
    for (at = p; at < auth_end; at++) {
        if (*at == '@')
            host = at + 1;
    }
    if (host < auth_end && *host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (close == NULL || close == host + 1)
            return spec_error(err, field, "has a malformed IPv6 host");
        p = close + 1;
    } else {
        p = host;
        while (p < auth_end && *p != ':')
            p++;
        if (p == host)
            return spec_error(err, field, "must name a host");
    }
    if (p < auth_end) {
        long v = 0;
        if (*p != ':' || p + 1 == auth_end)
            return spec_error(err, field, "has a malformed port");
        for (p++, n = 0; p < auth_end; p++, n++) {
            if (*p < '0' || *p > '9' || n >= 5)
                return spec_error(err, field, "has a malformed port");
            v = v * 10 + (*p - '0');
        }
        if (v < 1 || v > 65535)
            return spec_error(err, field, "has a port outside 1..65535");
    }
    /* The service checks host:port against the allowlist through each_target; a URL that
     * libcurl's parser (no DNS involved) cannot split must not get that far. */
    if (runner_url_host(url, h, sizeof(h), &port) != 0)
        return spec_error(err, field, "is not a URL libcurl can parse");
    return LT_OK;
}

static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

lt_status target_spec_check_header_name(const char *name, const char *fp, struct lt_error *err)
{
    size_t len = strlen(name);

    if (len == 0 || len > TARGET_SPEC_MAX_HEADER_NAME)
        return spec_error(err, fp, "a header name has 1 to 256 characters");
    for (const char *c = name; *c; c++) {
        if (!is_tchar(*c))
            return lt_error_set(err, LT_ERR_INVALID_SPEC, fp,
                                "%s: '%.60s' is not a valid header name", fp, name);
    }
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s: %.60s is set by the engine", fp,
                            name);
    return LT_OK;
}

lt_status target_spec_check_header_value(json_t *v, const char *fp, size_t maxlen,
                                         struct lt_error *err)
{
    const char *s;

    if (!json_is_string(v))
        return spec_error(err, fp, "must be a string");
    s = json_string_value(v);
    if (json_string_length(v) > maxlen)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, fp, "%s must be at most %zu bytes long", fp,
                            maxlen);
    if (strlen(s) != json_string_length(v) || strpbrk(s, "\r\n") != NULL)
        return spec_error(err, fp, "must not contain CR, LF or NUL");
    return LT_OK;
}

lt_status target_spec_check_headers(json_t *obj, const char *ptr, struct lt_error *err)
{
    json_t *headers, *v;
    const char *name;
    char fp[MAX_PTR], hp[MAX_PTR];
    lt_status st = ltj_object(obj, ptr, "headers", 0, &headers, err);

    if (st != LT_OK)
        return st;
    ltj_pointer(hp, sizeof(hp), ptr, "headers");
    if (json_object_size(headers) > MAX_HEADERS)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, hp, "%s must have at most %d entries", hp,
                            MAX_HEADERS);
    json_object_foreach(headers, name, v)
    {
        ltj_pointer(fp, sizeof(fp), hp, name);
        if ((st = target_spec_check_header_name(name, fp, err)) != LT_OK)
            return st;
        if ((st = target_spec_check_header_value(v, fp, TARGET_SPEC_MAX_HEADER_VALUE, err)) !=
            LT_OK)
            return st;
    }
    return LT_OK;
}

size_t target_spec_body_size(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v)
                             : json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
}

lt_status target_spec_check_bodies(json_t *obj, const char *ptr, const char *method,
                                   struct lt_error *err)
{
    json_t *bodies = json_object_get(obj, "bodies"), *v;
    char bp[MAX_PTR], fp[MAX_PTR + 24]; /* room for "/<index>" */
    size_t i;

    ltj_pointer(bp, sizeof(bp), ptr, "bodies");
    if (bodies == NULL) {
        if (json_object_set_new(obj, "bodies", json_array()) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, bp, "out of memory");
        return LT_OK;
    }
    if (!json_is_array(bodies))
        return spec_error(err, bp, "must be an array");
    if (json_array_size(bodies) > MAX_BODIES)
        return spec_error(err, bp, "must have at most 1000 items");
    if (json_array_size(bodies) > 0 && strcmp(method, "HEAD") == 0)
        return spec_error(err, bp, "must be empty for HEAD requests");
    json_array_foreach(bodies, i, v)
    {
        if (target_spec_body_size(v) > TARGET_SPEC_MAX_BODY_BYTES) {
            snprintf(fp, sizeof(fp), "%s/%zu", bp, i);
            return spec_error(err, fp, "must be at most 1 MiB long");
        }
    }
    return LT_OK;
}

lt_status target_spec_check_expect_status(json_t *obj, const char *ptr, unsigned flags,
                                          struct lt_error *err)
{
    json_t *arr = json_object_get(obj, "expect_status"), *v;
    char ep[MAX_PTR], fp[MAX_PTR + 24]; /* room for "/<index>" */
    size_t i;

    ltj_pointer(ep, sizeof(ep), ptr, "expect_status");
    if (arr == NULL) {
        if (json_object_set_new(obj, "expect_status", json_pack("[s]", "2xx")) != 0)
            return lt_error_set(err, LT_ERR_NOMEM, ep, "out of memory");
        return LT_OK;
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > MAX_EXPECT)
        return spec_error(err, ep, "must be an array of 1 to 100 status codes or classes");
    json_array_foreach(arr, i, v)
    {
        snprintf(fp, sizeof(fp), "%s/%zu", ep, i);
        if (json_is_integer(v)) {
            json_int_t c = json_integer_value(v);
            if (c < 100 || c > 599)
                return spec_error(err, fp, "must be a status code between 100 and 599");
            if (c == 429 && (flags & TARGET_SPEC_FORBID_429))
                return spec_error(err, fp, "must not be 429: 429 is the limiter's answer");
        } else if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (strlen(s) != 3 || s[0] < '1' || s[0] > '5' || (s[1] != 'x' && s[1] != 'X') ||
                (s[2] != 'x' && s[2] != 'X'))
                return spec_error(err, fp, "must be a class \"1xx\" to \"5xx\"");
        } else {
            return spec_error(err, fp, "must be an integer status or a string like \"2xx\"");
        }
    }
    return LT_OK;
}

lt_status target_spec_validate(json_t *target, const char *ptr, unsigned flags,
                               struct lt_error *err)
{
    const char *url;
    char up[MAX_PTR];
    int idx;
    int64_t timeout;
    lt_status st;

    if ((st = ltj_check_keys(target, ptr, target_keys, err)) != LT_OK)
        return st;
    if ((st = ltj_string(target, ptr, "url", 1, NULL, 1, TARGET_SPEC_MAX_URL, &url, err)) != LT_OK)
        return st;
    ltj_pointer(up, sizeof(up), ptr, "url");
    if ((st = target_spec_check_url(url, up, err)) != LT_OK)
        return st;
    if ((st = ltj_enum(target, ptr, "method", 0, "GET", target_spec_methods, &idx, err)) != LT_OK)
        return st;
    if ((st = target_spec_check_headers(target, ptr, err)) != LT_OK)
        return st;
    if ((st = target_spec_check_bodies(target, ptr, target_spec_methods[idx], err)) != LT_OK)
        return st;
    if ((st = ltj_int(target, ptr, "timeout_ms", 0, 5000, 1, 300000, &timeout, err)) != LT_OK)
        return st;
    return target_spec_check_expect_status(target, ptr, flags, err);
}

/* ---- secrets -------------------------------------------------------------------------------- */

int target_spec_secret_name(const char *name)
{
    static const char *const exact[] = {"authorization", "proxy-authorization", "cookie",
                                        "set-cookie", NULL};
    static const char *const parts[] = {"token", "secret", "key", "password", "auth", NULL};

    for (int i = 0; exact[i]; i++) {
        if (strcasecmp(name, exact[i]) == 0)
            return 1;
    }
    for (int i = 0; parts[i]; i++) {
        if (strcasestr(name, parts[i]) != NULL)
            return 1;
    }
    return 0;
}

void target_spec_mask_headers(json_t *owner)
{
    json_t *headers = json_object_get(owner, "headers"), *v;
    const char *name;

    json_object_foreach(headers, name, v)
    {
        if (json_is_string(v) && target_spec_secret_name(name))
            json_object_set_new(headers, name, json_string("***"));
    }
}

/* The password of a user:password@ URL becomes ***. */
void target_spec_mask_url(json_t *owner)
{
    json_t *url = json_object_get(owner, "url");
    const char *u, *auth, *end, *at = NULL, *colon = NULL;
    char *masked = NULL;

    if (!json_is_string(url))
        return;
    u = json_string_value(url);
    auth = strstr(u, "://");
    if (auth == NULL)
        return;
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    for (const char *p = auth; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    if (at != NULL)
        colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon != NULL && asprintf(&masked, "%.*s***%s", (int)(colon + 1 - u), u, at) >= 0) {
        json_object_set_new(owner, "url", json_string(masked));
        free(masked);
    }
}
