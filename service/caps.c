/* caps: the operator's per-run limits, checked on validated specs (see caps.h). */
#include "caps.h"

#include <stdio.h>
#include <string.h>

/* Integer member at a path of objects ("load", "users"); 0 when absent (validate filled it). */
static double num_at(const json_t *spec, const char *obj, const char *key)
{
    const json_t *o = obj ? json_object_get(spec, obj) : spec;
    const json_t *v = json_object_get(o, key);

    return json_is_number(v) ? json_number_value(v) : 0;
}

static lt_status over(struct lt_error *err, const char *field, const char *what, double value,
                      const char *unit, const char *flag, long cap)
{
    return lt_error_set(err, LT_ERR_LIMIT_EXCEEDED, field,
                        "%s = %.15g%s is above this daemon's --%s %ld", what, value, unit, flag,
                        cap);
}

static lt_status check_capacity(const struct caps *c, const json_t *spec, struct lt_error *err)
{
    double users = num_at(spec, "load", "users");
    double rate = num_at(spec, "load", "rate_per_user");
    double duration = num_at(spec, "load", "duration_s");
    double warmup = num_at(spec, "load", "warmup_s");

    if (users > (double)c->max_users)
        return over(err, "/load/users", "load.users", users, "", "max-users", c->max_users);
    /* The closed model paces each user to rate_per_user too, so the product bounds it as well;
     * an unpaced closed run (rate_per_user 0) is bounded by --max-users alone. */
    if (users * rate > (double)c->max_total_rps)
        return over(err, "/load/rate_per_user", "load.users \u00d7 load.rate_per_user",
                    users * rate, " req/s", "max-total-rps", c->max_total_rps);
    if (warmup + duration > (double)c->max_duration_s) {
        if (warmup > 0)
            return over(err, "/load/duration_s", "load.warmup_s + load.duration_s",
                        warmup + duration, " s", "max-duration-s", c->max_duration_s);
        return over(err, "/load/duration_s", "load.duration_s", duration, " s", "max-duration-s",
                    c->max_duration_s);
    }
    return LT_OK;
}

static lt_status check_ratelimit(const struct caps *c, const json_t *spec, struct lt_error *err)
{
    double burst = num_at(spec, "burst", "max_requests");
    double agents = num_at(spec, "realistic", "agents");
    double window = num_at(spec, "realistic", "window_s");
    double windows = num_at(spec, "realistic", "windows");

    if (burst > (double)c->max_burst_requests)
        return over(err, "/burst/max_requests", "burst.max_requests", burst, "",
                    "max-burst-requests", c->max_burst_requests);
    if (agents > (double)c->max_agents)
        return over(err, "/realistic/agents", "realistic.agents", agents, "", "max-agents",
                    c->max_agents);
    if (agents > 0 && windows * window > (double)c->max_duration_s)
        return over(err, "/realistic/windows", "realistic.windows \u00d7 realistic.window_s",
                    windows * window, " s", "max-duration-s", c->max_duration_s);
    return LT_OK;
}

static lt_status check_generate(const struct caps *c, const json_t *spec, struct lt_error *err)
{
    double rows = num_at(spec, NULL, "rows");
    double conns = num_at(spec, NULL, "connections");

    if (rows > (double)c->max_rows)
        return over(err, "/rows", "rows", rows, "", "max-rows", c->max_rows);
    if (conns > (double)c->max_generate_connections)
        return over(err, "/connections", "connections", conns, "", "max-generate-connections",
                    c->max_generate_connections);
    return LT_OK;
}

lt_status caps_check(const struct caps *c, const char *kind, const json_t *spec,
                     struct lt_error *err)
{
    if (c == NULL || kind == NULL)
        return LT_OK;
    if (strcmp(kind, "capacity") == 0)
        return check_capacity(c, spec, err);
    if (strcmp(kind, "ratelimit") == 0)
        return check_ratelimit(c, spec, err);
    if (strcmp(kind, "generate") == 0)
        return check_generate(c, spec, err);
    return LT_OK;
}

json_t *caps_json(const struct caps *c)
{
    return json_pack("{s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:{s:I, s:I}}", "capacity",
                     "max_users", (json_int_t)c->max_users, "max_total_rps",
                     (json_int_t)c->max_total_rps, "max_duration_s", (json_int_t)c->max_duration_s,
                     "ratelimit", "max_burst_requests", (json_int_t)c->max_burst_requests,
                     "max_agents", (json_int_t)c->max_agents, "max_duration_s",
                     (json_int_t)c->max_duration_s, "generate", "max_rows", (json_int_t)c->max_rows,
                     "max_connections", (json_int_t)c->max_generate_connections);
}
