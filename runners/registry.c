/*
 * registry: the table of run kinds. A kind that is part of the API but whose runner has not been
 * built answers "not available" at POST time instead of "unknown kind".
 */
#include <string.h>

#include "runner.h"

struct kind_entry {
    const char *kind;
    const struct runner_ops *ops; /* NULL: part of the API, not available yet */
};

static const struct kind_entry kinds[] = {
    {"capacity", NULL},
    {"ratelimit", NULL},
    {"generate", NULL},
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
