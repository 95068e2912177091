/*
 * pool: the run scheduler — a bounded queue of accepted runs and a fixed set of run threads
 * that execute them through the runner interface. See the DESIGN comment in pool.c.
 */
#ifndef LT_POOL_H
#define LT_POOL_H

#include <jansson.h>

#include "lt_status.h"
#include "runner.h"
#include "store.h"

struct pool;
struct lt_allow_slot;

struct pool_config {
    int max_concurrent;          /* run threads: runs executing at once (1..64) */
    int max_queued;              /* runs waiting beyond those (0..10000) */
    struct runner_config runner; /* handed to every runner */
    /* Optional: the allowlist in force (borrowed; SIGHUP may swap it). Each run takes a
     * reference to the list in force when it starts and uses it, in place of runner.allow,
     * until it ends, so a reload never changes the rules under a running run. */
    struct lt_allow_slot *allow_slot;
    /* Optional hooks, called on the run thread of the run (never with the pool lock held):
     * amend_verdict, for a run that completed with a verdict (not cancelled, not an error),
     * after execute returned and before the final state is stored: it may append checks to
     * verdict and set its "pass" to false (the final status follows "pass"). spec is the
     * unmasked spec. on_finished, after the final state of a run that started was stored
     * (whatever it is; a run cancelled while queued never starts). */
    void (*amend_verdict)(void *opaque, const char *id, const json_t *spec, const json_t *result,
                          json_t *verdict);
    void (*on_finished)(void *opaque, const char *id);
    void *hook_opaque;
};

/* Starts the run threads. st is borrowed and must outlive the pool. Returns new; NULL on
 * failure. */
struct pool *pool_new(struct store *st, const struct pool_config *cfg);

/* Cancels every run (running ones end "cancelled" with their partial results stored, queued
 * ones end "cancelled" without starting) and joins the run threads. The pool stays valid: after
 * it pool_submit answers LT_ERR_UNAVAILABLE, pool_cancel LT_ERR_NOT_FOUND and pool_counts no
 * running run (a submit still being admitted counts as queued until it gives up), so HTTP
 * requests still in progress may call them until the server is stopped. Idempotent; NULL
 * allowed. */
void pool_stop(struct pool *p);

/* Stops the pool (pool_stop) if not done yet and frees it. Call it only once nothing else can
 * call into the pool (after http_stop). NULL allowed. */
void pool_free(struct pool *p);

/* Admits a run: stores rec (status queued; rec->seq and rec->version are set) and queues it,
 * atomically with respect to the capacity check. spec is the unmasked validated spec: the pool
 * takes ownership of it whatever the outcome. ops is borrowed (static). Returns
 * LT_ERR_TOO_MANY_RUNS when max_concurrent + max_queued runs are already admitted and not
 * finished, LT_ERR_UNAVAILABLE when shutting down or the store cannot write. The store insert
 * runs without the pool lock (the slot is reserved first); a run cancelled (pool_cancel) or a
 * pool stopped while it is being inserted is stored cancelled and never starts (LT_OK). */
lt_status pool_submit(struct pool *p, struct run_record *rec, json_t *spec,
                      const struct runner_ops *ops);

/* Asks run id to stop. A queued run ends cancelled at once; a running one is told to stop and
 * ends cancelled when its runner returns. LT_ERR_NOT_FOUND when the run is not queued or running
 * in this pool. */
lt_status pool_cancel(struct pool *p, const char *id);

/* Number of runs currently executing and waiting (waiting includes runs being admitted). */
void pool_counts(struct pool *p, int *running, int *queued);

/* What the runs of this pool sent, summed from the per-second points their runners reported
 * (warm-up included): load requests sent and failed ("requests" and "errors" of capacity and
 * ratelimit points; a 429 of a ratelimit run is not an error) and rows inserted by generate runs
 * ("rows_per_s" of their points). Counted since the pool started. */
struct pool_kind_totals {
    const char *kind; /* static */
    unsigned long long requests;
    unsigned long long errors;
    unsigned long long rows;
};
#define POOL_KINDS 3 /* capacity, ratelimit, generate */
/* Fills out[0..POOL_KINDS-1]. Lock-free. */
void pool_load_totals(struct pool *p, struct pool_kind_totals out[POOL_KINDS]);

/* Blocks until a change of any run happens or timeout_ms passes (for long-polls and tests;
 * timeout_ms 0 returns at once). A change is a state change or a progress report (which bumps
 * the run's version). Returns the change counter. */
unsigned long pool_wait_change(struct pool *p, unsigned long seen, int timeout_ms);

/* A copy of the pool's recent changes (pool_changes_snapshot), for deciding about many held
 * requests without calling into the pool for each. */
#define POOL_RECENT 128 /* changes remembered for pool_changed_since */
struct pool_change {
    unsigned long n;     /* the change counter after this change; 0 = slot unused */
    char id[LT_ID_SIZE]; /* the run that changed; "" = every run */
};
struct pool_changes {
    unsigned long changes;                  /* the change counter when copied */
    struct pool_change recent[POOL_RECENT]; /* the last changes, slot = n % POOL_RECENT */
};
/* Copies the change counter and the recent changes into out under the pool lock (one short
 * hold, no store access). */
void pool_changes_snapshot(struct pool *p, struct pool_changes *out);
/* pool_changed_since answered from a snapshot: 1 when run id may have changed after `seen`
 * (<= snap->changes), 0 when the changes since were all of other runs. Pure. */
int pool_changes_has(const struct pool_changes *snap, const char *id, unsigned long seen);

/* 1 when run id may have changed after the change counter was `seen` (a value pool_wait_change
 * returned, <= the current one): a change of that run, of every run (shutdown), or one too far
 * back to tell; 0 when the changes since were all of other runs. Does not block. */
int pool_changed_since(struct pool *p, const char *id, unsigned long seen);

#endif
