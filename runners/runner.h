/*
 * runner: the interface every kind of run (capacity, ratelimit, generate) plugs into.
 *
 * The service validates a posted spec with ops->validate on an HTTP thread (must not block),
 * stores a copy masked by ops->mask_secrets, and later a run thread of the pool calls
 * ops->execute with the unmasked spec. execute runs the whole job on the calling thread (it may
 * start worker threads of its own and must join them before returning), polls job->cancel at
 * least every 100 ms, reports progress and one point per second through job->sink, and fills
 * the outcome. Runners never touch HTTP or the store: everything goes through the sink and the
 * outcome, so a runner can be unit-tested alone.
 */
#ifndef LT_RUNNER_H
#define LT_RUNNER_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lt_status.h"

/* Called from the run thread only (never concurrently for one job). All json_t are borrowed. */
struct runner_sink {
    void *opaque;
    /* Progress object ({"fraction": 0..1, ...}) and the partial result (object or NULL).
     * Call it about once per second; each call is committed to the store. */
    void (*progress)(void *opaque, const json_t *progress, const json_t *partial_result);
    /* The point of second t since the run started (t = 1 for the first full second). */
    void (*point)(void *opaque, int64_t t, const json_t *point);
};

struct lt_allow;

/* Operator settings a runner may need (from the daemon's configuration). */
struct runner_config {
    int worker_threads;           /* load worker threads per capacity run; 0 = one per core */
    const struct lt_allow *allow; /* target allowlist; every connection a runner opens must pass
                                     lt_allow_addr after DNS resolution (NULL: loopback only) */
};

struct runner_job {
    const char *id;                 /* run id, for log lines; borrowed */
    const json_t *spec;             /* validated spec, defaults filled, secrets real; borrowed */
    atomic_int *cancel;             /* non-zero: stop within a second, keep partial results */
    const struct runner_sink *sink; /* borrowed */
    const struct runner_config *config; /* borrowed; may be NULL (defaults) */
};

struct runner_outcome {
    json_t *result;        /* new reference owned by the outcome (the pool takes it); may be NULL */
    json_t *verdict;       /* {"pass","summary","checks":[...]} or NULL when error/cancelled */
    struct lt_error error; /* error.status != LT_OK: the run could not be carried out */
    const char *error_code; /* optional static snake_case code for the run document's error
                               ("target_unreachable"); NULL = lt_status_code(error.status) */
};

struct runner_ops {
    const char *kind;
    /* Checks spec in place, filling every default; rejects unknown fields (the top-level "kind",
     * "name" and "notify" keys are the service's and must be allowed). Names the JSON pointer of
     * the faulty field in err. */
    lt_status (*validate)(json_t *spec, struct lt_error *err);
    /* Replaces secrets (passwords, tokens) in spec with "***"; may be NULL when there are none. */
    void (*mask_secrets)(json_t *spec);
    /* Carries out the run; see the file comment. */
    void (*execute)(const struct runner_job *job, struct runner_outcome *out);
    /* Calls fn(opaque, host, port, field) for each network endpoint the validated spec would
     * reach (load target, setup URL, database host), field being the JSON pointer that names
     * it; returns the first non-zero result of fn, else 0. The service checks each against the
     * allowlist before admitting the run; a kind without it is refused (fail closed). */
    int (*each_target)(const json_t *spec,
                       int (*fn)(void *opaque, const char *host, int port, const char *field),
                       void *opaque);
};

/* Looks a kind up. Returns its ops, or NULL; *known is set to 1 when the kind is part of the API
 * (so NULL with known = 1 means "not available in this build"). */
const struct runner_ops *runner_find(const char *kind, int *known);

/* Splits an http(s) URL into host (IPv6 without brackets) and port (default 80/443).
 * Returns 0, or -1 when the URL does not parse. */
int runner_url_host(const char *url, char *host, size_t hostlen, int *port);

/* Validates the optional "thresholds" of a kind whose only threshold is the service's baseline
 * check: {"max_regression_pct": 0..1000} (see service/compare.c). */
lt_status runner_validate_baseline_thresholds(json_t *spec, struct lt_error *err);

/* Builds the verdict object: {"pass": all checks pass, "summary": summary, "checks": checks}.
 * Takes ownership of checks (an array). Returns new. */
json_t *runner_verdict_new(json_t *checks, const char *summary);

/* Appends {"name","op","threshold","observed","pass"} to checks and returns pass. */
int runner_add_check(json_t *checks, const char *name, const char *op, double threshold,
                     double observed);

#endif
