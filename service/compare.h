/*
 * compare: baselines — a run's result against another run's (GET /v1/runs/{id}/compare) and the
 * regression check of thresholds.max_regression_pct at the end of a run (the pool's
 * amend_verdict hook). Both use the one comparison here, so the route and the verdict never
 * disagree about what a regression is.
 *
 * The baseline "last_passed" of a run is the newest passed run older than it (smaller seq), of
 * the same kind, and from the same preset; a run without a preset takes the same name instead,
 * and a run with neither has no baseline.
 *
 * A metric regressed when it is worse than the base by more than max_regression_pct percent
 * (for "lower is better": (run - base) / base * 100 > pct; "higher": (base - run) / base * 100 >
 * pct). With base 0, any worsening counts as a regression (the percentage is null).
 */
#ifndef LT_COMPARE_H
#define LT_COMPARE_H

#include <jansson.h>

#include "http.h"
#include "lt_status.h"
#include "store.h"

#define COMPARE_DEFAULT_PCT 10.0
#define COMPARE_MAX_PCT     1000.0

/* Finds the last passed run of run (see above) into out (caller clears it). LT_ERR_NOT_FOUND
 * when there is none; other store failures as the store reports them. */
lt_status compare_find_last_passed(struct store *st, const struct run_record *run,
                                   struct run_record *out);

/* The max_regression_pct a comparison of a run uses by default: its spec's
 * thresholds.max_regression_pct (spec_json may be masked), else COMPARE_DEFAULT_PCT. */
double compare_default_pct(const char *spec_json);

/* The comparison document of run against base (both borrowed):
 * {"run":{id,name,preset,status},"base":{...},"metrics":[...],"max_regression_pct",
 *  "regression","summary"}. On LT_OK *out is new (caller decrefs). LT_ERR_CONFLICT (err set)
 * when the kinds differ or either has no result. */
lt_status compare_runs(const struct run_record *run, const struct run_record *base, double max_pct,
                       json_t **out, struct lt_error *err);

/* The pool's amend_verdict hook (service/pool.h); opaque is the struct app of the daemon. When
 * spec has thresholds.max_regression_pct, compares the completed run's result with its last
 * passed run and appends the check "regression_p99_pct" (capacity; other kinds their main
 * metric), failing the verdict on a regression; without a baseline the summary says
 * "no baseline yet". */
void compare_amend_verdict(void *opaque, const char *id, const json_t *spec, const json_t *result,
                           json_t *verdict);

/* GET /v1/runs/{id}/compare?base=ID|last_passed&max_regression_pct=N */
void compare_h_runs(struct http_request *req, struct http_response *resp);

#endif
