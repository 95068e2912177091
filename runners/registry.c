/*
 * registry: the table of run kinds. A kind that is part of the API but whose runner has not been
 * built answers "not available" at POST time instead of "unknown kind".
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "generate.h"
#include "lt_json.h"
#include "ratelimit.h"
#include "runner.h"

struct kind_entry {
    const char *kind;
    const struct runner_ops *ops; /* NULL: part of the API, not available yet */
};

static const struct kind_entry kinds[] = {
    {"capacity", &capacity_ops},
    {"ratelimit", &ratelimit_ops},
    {"generate", &generate_ops},
};

const struct runner_ops *runner_find(const char *kind, int *known)
{
    *known = 0;
    if (kind == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kinds[i].kind, kind) == 0) {
            *known = 1;
            return kinds[i].ops;
        }
    }
    return NULL;
}

int runner_url_host(const char *url, char *host, size_t hostlen, int *port)
{
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL, *scheme = NULL;
    int rc = -1;

    if (u == NULL)
        return -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') { /* IPv6 literal */
        h[n - 1] = '\0';
        memmove(h, h + 1, n - 1);
    }
    char *pct = strchr(h, '%'); /* zone id of a link-local literal: not part of the address */
    if (pct)
        *pct = '\0';
    if (strlen(h) == 0 || strlen(h) >= hostlen)
        goto out;
    snprintf(host, hostlen, "%s", h);
    *port = atoi(p);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

json_t *runner_verdict_new(json_t *checks, const char *summary)
{
    int pass = 1;
    size_t i;
    json_t *c;

    json_array_foreach(checks, i, c)
    {
        if (!json_is_true(json_object_get(c, "pass")))
            pass = 0;
    }
    return json_pack("{s:b, s:s, s:o}", "pass", pass, "summary", summary, "checks", checks);
}

int runner_add_check(json_t *checks, const char *name, const char *op, double threshold,
                     double observed)
{
    int pass = 0;

    if (strcmp(op, "<") == 0)
        pass = observed < threshold;
    else if (strcmp(op, "<=") == 0)
        pass = observed <= threshold;
    else if (strcmp(op, ">") == 0)
        pass = observed > threshold;
    else if (strcmp(op, ">=") == 0)
        pass = observed >= threshold;
    else if (strcmp(op, "==") == 0)
        pass = observed == threshold;
    json_array_append_new(checks,
                          json_pack("{s:s, s:s, s:f, s:f, s:b}", "name", name, "op", op,
                                    "threshold", threshold, "observed", observed, "pass", pass));
    return pass;
}

lt_status runner_validate_baseline_thresholds(json_t *spec, struct lt_error *err)
{
    static const char *const keys[] = {"max_regression_pct", NULL};
    json_t *thr;
    double pct;
    lt_status st;

    /* Absent stays absent: the stored spec of these kinds does not grow an empty object. */
    thr = json_object_get(spec, "thresholds");
    if (thr == NULL)
        return LT_OK;
    if (!json_is_object(thr))
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/thresholds",
                            "/thresholds must be an object");
    if ((st = ltj_check_keys(thr, "/thresholds", keys, err)) != LT_OK)
        return st;
    if (json_object_get(thr, "max_regression_pct") == NULL)
        return LT_OK;
    return ltj_number(thr, "/thresholds", "max_regression_pct", 1, 0, 0, 1000, &pct, err);
}
