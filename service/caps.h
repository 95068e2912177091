/*
 * caps: the operator's per-run limits (--max-users, --max-total-rps, ...). The runners' own
 * validators bound every field to what the engine can do at all; these caps are the lower
 * limits an operator sets for this daemon. routes_submit_run checks them after the spec has been
 * validated (defaults filled in), so every way of starting a run is covered; a spec above a cap
 * is refused with 403 limit_exceeded naming the field, the limit and the flag.
 */
#ifndef LT_CAPS_H
#define LT_CAPS_H

#include <jansson.h>

#include "lt_status.h"

struct caps {
    long max_users;          /* capacity load.users */
    long max_total_rps;      /* capacity load.users x load.rate_per_user */
    long max_duration_s;     /* capacity warmup_s + duration_s; ratelimit windows x window_s */
    long max_burst_requests; /* ratelimit burst.max_requests */
    long max_agents;         /* ratelimit realistic.agents */
    long max_rows;           /* generate rows */
    long max_generate_connections; /* generate connections */
};

/* Checks a validated spec (defaults filled in; borrowed) of kind against c. Returns LT_OK, or
 * LT_ERR_LIMIT_EXCEEDED with err naming the field (JSON pointer), the value, the cap and its
 * flag. Kinds without caps pass. */
lt_status caps_check(const struct caps *c, const char *kind, const json_t *spec,
                     struct lt_error *err);

/* The caps as the body of GET /v1/limits ({"capacity": {...}, "ratelimit": {...},
 * "generate": {...}}). Returns new; caller decrefs. */
json_t *caps_json(const struct caps *c);

#endif
