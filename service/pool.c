/*
 * pool: the run scheduler.
 *
 * DESIGN
 * Threads:
 *   - HTTP threads (libmicrohttpd's pool) call pool_submit and pool_cancel. They never wait on a
 *     run: both calls take the pool lock for a queue operation; pool_cancel of a queued run
 *     stores it cancelled under the lock, pool_submit inserts the run without it.
 *   - "run-N" threads (cfg.max_concurrent of them, started by pool_new) each take the oldest
 *     queued job, mark it running in the store, and call its runner's execute on their own stack.
 *     While it runs, the runner reports through the sink below; the run thread writes progress
 *     and per-second points to the store (each write committed before it returns). When execute
 *     returns, the run thread stores the final status, result and verdict.
 * Ownership:
 *   - A job (unmasked spec, cancel flag) is owned by the queue while queued and by its run thread
 *     while running; the `running` list only lets pool_cancel find it to raise its flag.
 *   - The store is shared and thread-safe (see store.h).
 * Lock: one mutex, `lock`, guards queue, running, pending, nqueued, nrunning, npending,
 *   stopping, changes and recent (the run ids of the last POOL_RECENT changes, for
 *   pool_changed_since);
 *   `work` is signalled when a job is queued or the pool stops; `changed` is broadcast on every
 *   run state change and progress report (long-polls wait on it through pool_wait_change).
 *   Admission (pool_submit) reserves a slot under the lock (the capacity check counts running,
 *   queued and `pending` jobs, so the check and the admission are still one step: a reserved
 *   slot is taken), inserts the run into the store WITHOUT the lock (an fsync with
 *   synchronous=FULL, or SQLite's busy timeout, must not stall every other user of the pool),
 *   then under the lock either publishes the job to the queue or, when the insert failed,
 *   releases the slot. While pending, a job is on the `pending` list: pool_cancel finds it there
 *   (stores it cancelled; the submitter then does not queue it), and a pool stopped meanwhile
 *   makes the submitter store it cancelled instead of queueing it. pool_changes_snapshot copies the
 * counter and `recent` under it, so the HTTP waiter can decide about every held request without
 * calling into the pool for each. Counters: `tot_*` (requests, errors, rows per kind, for GET
 * /metrics) are atomics added to by the run threads as points arrive and read without a lock. Store
 * failures: when the store cannot write (disk full, locked), a run thread retries its run's start
 * and final status until it can (update_retrying), so no run is left showing queued or running
 * while the daemon lives; once the pool is stopping it gives up after a few attempts. Shutdown
 * (pool_stop): stopping is set, queued jobs end cancelled, running jobs get their cancel flag
 * raised; run threads finish their job (runners stop within a second) and exit, and are joined. The
 * struct, its lock and its conditions stay valid: HTTP requests still in progress on open
 * connections may call pool_submit (LT_ERR_UNAVAILABLE), pool_cancel (not found), pool_counts (no
 * running run; a submit still being admitted counts as queued until it gives up) and
 * pool_wait_change until the HTTP server is stopped; only then does pool_free release the memory.
 * `stop_lock` makes pool_stop idempotent.
 */
#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_allow.h"
#include "lt_util.h"

struct job {
    char id[LT_ID_SIZE];
    json_t *spec; /* owned; unmasked */
    const struct runner_ops *ops;
    atomic_int cancel;
    int64_t started_mono_ns;
    int64_t last_point_t;  /* highest t stored, for the final log line */
    json_t *last_progress; /* owned; the latest progress reported, completed at the end */
    struct pool *pool;
    struct job *next;
};

struct pool {
    struct store *store; /* borrowed */
    struct pool_config cfg;
    pthread_t *threads;
    int nthreads;

    pthread_mutex_t lock; /* guards: queue_head, queue_tail, running, pending, nqueued,
                             nrunning, npending, stopping, changes, recent */
    pthread_cond_t work;
    pthread_cond_t changed;
    struct job *queue_head;
    struct job *queue_tail;
    struct job *running; /* jobs executing, linked by next */
    struct job *pending; /* admitted, store insert in progress (pool_submit), linked by next */
    int nqueued;
    int nrunning;
    int npending;
    int stopping;
    int joined; /* pool_stop joined the run threads (guarded by stop_lock) */
    unsigned long changes;
    struct pool_change recent[POOL_RECENT]; /* the last changes, slot = n % POOL_RECENT */
    pthread_mutex_t stop_lock;              /* serialises pool_stop calls */

    /* Per kind (index in load_kinds): load requests sent, failed, rows inserted. */
    atomic_ullong tot_requests[POOL_KINDS];
    atomic_ullong tot_errors[POOL_KINDS];
    atomic_ullong tot_rows[POOL_KINDS];
};

static const char *const load_kinds[POOL_KINDS] = {"capacity", "ratelimit", "generate"};

static void job_free(struct job *j)
{
    if (j == NULL)
        return;
    json_decref(j->last_progress);
    json_decref(j->spec);
    free(j);
}

/* Records a change of run id (NULL: of every run) and wakes pool_wait_change. Caller holds
 * p->lock. */
static void note_change_locked(struct pool *p, const char *id)
{
    struct pool_change *c;

    p->changes++;
    c = &p->recent[p->changes % POOL_RECENT];
    c->n = p->changes;
    snprintf(c->id, sizeof(c->id), "%s", id ? id : "");
    pthread_cond_broadcast(&p->changed);
}

static void log_state(const char *id, const char *kind, enum run_status st, const char *extra)
{
    lt_log("info", "run_state", "run=%s kind=%s status=%s%s%s", id, kind, run_status_name(st),
           extra && *extra ? " " : "", extra ? extra : "");
}

static void sink_progress(void *opaque, const json_t *progress, const json_t *partial)
{
    struct job *j = opaque;
    char *pj = progress ? json_dumps(progress, JSON_COMPACT) : NULL;
    char *rj = partial ? json_dumps(partial, JSON_COMPACT) : NULL;
    struct run_update u = {.status = -1, .only_if_status = RUN_RUNNING};
    lt_status st;

    u.progress_json = pj;
    u.result_json = rj;
    if (progress) {
        json_decref(j->last_progress);
        j->last_progress = json_deep_copy(progress);
    }
    st = store_update_run(j->pool->store, j->id, &u);
    if (st != LT_OK && st != LT_ERR_CONFLICT)
        lt_log("error", "store_write", "run=%s what=progress error=%s", j->id, lt_status_code(st));
    else if (st == LT_OK) {
        /* The run's version moved: wake long-polls. */
        pthread_mutex_lock(&j->pool->lock);
        note_change_locked(j->pool, j->id);
        pthread_mutex_unlock(&j->pool->lock);
    }
    free(pj);
    free(rj);
}

/* A non-negative integer member of a point, else 0. */
static unsigned long long point_count(const json_t *point, const char *key)
{
    json_t *v = json_object_get(point, key);
    return json_is_integer(v) && json_integer_value(v) > 0
               ? (unsigned long long)json_integer_value(v)
               : 0;
}

/* Adds the load a point reports to the pool's totals (GET /metrics). */
static void count_point(struct pool *p, const char *kind, const json_t *point)
{
    for (int k = 0; k < POOL_KINDS; k++) {
        if (strcmp(kind, load_kinds[k]) != 0)
            continue;
        atomic_fetch_add_explicit(&p->tot_requests[k], point_count(point, "requests"),
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&p->tot_errors[k], point_count(point, "errors"),
                                  memory_order_relaxed);
        /* generate points carry the rows of their second as rows_per_s ("rows" is the total) */
        atomic_fetch_add_explicit(&p->tot_rows[k], point_count(point, "rows_per_s"),
                                  memory_order_relaxed);
        return;
    }
}

static void sink_point(void *opaque, int64_t t, const json_t *point)
{
    struct job *j = opaque;
    char *pj = json_dumps(point, JSON_COMPACT);
    lt_status st = pj ? store_put_point(j->pool->store, j->id, t, pj) : LT_ERR_NOMEM;

    count_point(j->pool, j->ops->kind, point);
    if (st != LT_OK)
        lt_log("error", "store_write", "run=%s what=point t=%lld error=%s", j->id, (long long)t,
               lt_status_code(st));
    else if (t > j->last_point_t)
        j->last_point_t = t;
    free(pj);
}

/* Stores a state change of job j, retrying while the store cannot write (disk full, read-only,
 * locked): a run's start or end must not be lost while the daemon lives, or the run would show
 * queued or running until the next start. Waits 200 ms, doubling up to 1 s, between attempts;
 * other failures, and any failure once the pool is stopping, give up after 5 attempts (the next
 * start then marks the run interrupted). Blocking this run thread meanwhile costs nothing: no run
 * can start or end without the store anyway. */
static lt_status update_retrying(struct pool *p, struct job *j, const struct run_update *u,
                                 const char *what)
{
    long wait_ms = 200;
    lt_status st;

    for (int attempt = 1;; attempt++) {
        int stopping;

        st = store_update_run(p->store, j->id, u);
        if (st == LT_OK || st == LT_ERR_NOT_FOUND || st == LT_ERR_CONFLICT)
            return st;
        pthread_mutex_lock(&p->lock);
        stopping = p->stopping;
        pthread_mutex_unlock(&p->lock);
        if (attempt >= 5 && (st != LT_ERR_UNAVAILABLE || stopping))
            return st;
        if (attempt == 5)
            lt_log("warn", "store_write", "run=%s what=%s error=%s action=retrying", j->id, what,
                   lt_status_code(st));
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000 * 1000};
        nanosleep(&ts, NULL);
        wait_ms = wait_ms * 2 > 1000 ? 1000 : wait_ms * 2;
    }
}

static void finish_job(struct pool *p, struct job *j, struct runner_outcome *out)
{
    enum run_status final;
    char *rj = NULL, *vj = NULL, *ej = NULL, *pj = NULL;
    struct run_update u = {.status = -1, .only_if_status = RUN_RUNNING};
    lt_status st;
    char extra[128];

    if (p->cfg.amend_verdict && !atomic_load(&j->cancel) && out->error.status == LT_OK &&
        json_is_object(out->verdict))
        p->cfg.amend_verdict(p->cfg.hook_opaque, j->id, j->spec, out->result, out->verdict);
    if (atomic_load(&j->cancel)) {
        final = RUN_CANCELLED;
    } else if (out->error.status != LT_OK) {
        final = RUN_ERROR;
        json_t *e = json_pack("{s:s, s:s}", "code",
                              out->error_code ? out->error_code : lt_status_code(out->error.status),
                              "message", out->error.message);
        if (e && out->error.field[0])
            json_object_set_new(e, "field", json_string(out->error.field));
        ej = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
    } else if (out->verdict && json_is_true(json_object_get(out->verdict, "pass"))) {
        final = RUN_PASSED;
    } else if (out->verdict) {
        final = RUN_FAILED;
    } else {
        final = RUN_ERROR;
        ej = strdup("{\"code\":\"internal\",\"message\":\"the runner returned no verdict\"}");
    }
    if (out->result)
        rj = json_dumps(out->result, JSON_COMPACT);
    /* A run that completed is done: its progress says so, whatever the last report said. */
    if (final == RUN_PASSED || final == RUN_FAILED) {
        json_t *pr = j->last_progress ? j->last_progress : json_object();
        j->last_progress = pr;
        json_object_set_new(pr, "fraction", json_real(1.0));
        pj = json_dumps(pr, JSON_COMPACT);
        u.progress_json = pj;
    }
    if (out->verdict && final != RUN_CANCELLED)
        vj = json_dumps(out->verdict, JSON_COMPACT);
    u.status = (int) final;
    u.finished_at_ms = lt_now_ms();
    u.result_json = rj;
    u.verdict_json = vj;
    u.error_json = ej;
    /* The final write matters more than any other: retried until the store takes it. */
    st = update_retrying(p, j, &u, "final_status");
    if (st == LT_OK) { /* wake long-polls now, not after the on_finished hook */
        pthread_mutex_lock(&p->lock);
        note_change_locked(p, j->id);
        pthread_mutex_unlock(&p->lock);
    }
    snprintf(extra, sizeof(extra), "duration_s=%.3f points=%lld",
             (double)(lt_mono_ns() - j->started_mono_ns) / 1e9, (long long)j->last_point_t);
    if (st == LT_OK)
        log_state(j->id, j->ops->kind, final, extra);
    else
        lt_log("error", "store_write", "run=%s what=final_status status=%s error=%s", j->id,
               run_status_name(final), lt_status_code(st));
    free(pj);
    free(rj);
    free(vj);
    free(ej);
}

static void run_job(struct pool *p, struct job *j)
{
    struct run_update u = {.status = RUN_RUNNING, .only_if_status = RUN_QUEUED};
    struct runner_sink sink = {.opaque = j, .progress = sink_progress, .point = sink_point};
    /* This run's own copy of the settings, holding its own reference to the allowlist in force
     * now: a SIGHUP reload during the run swaps the slot, not this run's list. */
    struct runner_config rc = p->cfg.runner;
    struct lt_allow *allow = p->cfg.allow_slot ? lt_allow_slot_get(p->cfg.allow_slot) : NULL;
    struct runner_job rj = {
        .id = j->id, .spec = j->spec, .cancel = &j->cancel, .sink = &sink, .config = &rc};
    struct runner_outcome out;
    lt_status st;

    if (allow != NULL)
        rc.allow = allow;
    memset(&out, 0, sizeof(out));
    u.started_at_ms = lt_now_ms();
    u.progress_json = "{\"fraction\":0}";
    st = update_retrying(p, j, &u, "start");
    if (st != LT_OK) {
        /* Cancelled or deleted while queued is impossible (cancel removes it from the queue under
         * the lock), so this is a store failure that outlasted the retries of a stopping pool:
         * the run stays queued in the store and becomes interrupted at the next start. */
        lt_log("error", "store_write", "run=%s what=start error=%s", j->id, lt_status_code(st));
        lt_allow_free(allow);
        return;
    }
    j->started_mono_ns = lt_mono_ns();
    log_state(j->id, j->ops->kind, RUN_RUNNING, NULL);
    pthread_mutex_lock(&p->lock);
    note_change_locked(p, j->id);
    pthread_mutex_unlock(&p->lock);

    j->ops->execute(&rj, &out);
    finish_job(p, j, &out);
    if (p->cfg.on_finished)
        p->cfg.on_finished(p->cfg.hook_opaque, j->id);
    json_decref(out.result);
    json_decref(out.verdict);
    lt_allow_free(allow);
}

static void *run_thread(void *arg)
{
    struct pool *p = arg;

    for (;;) {
        struct job *j;

        pthread_mutex_lock(&p->lock);
        while (p->queue_head == NULL && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->queue_head == NULL) { /* stopping, nothing left */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        j = p->queue_head;
        p->queue_head = j->next;
        if (p->queue_head == NULL)
            p->queue_tail = NULL;
        p->nqueued--;
        j->next = p->running;
        p->running = j;
        p->nrunning++;
        pthread_mutex_unlock(&p->lock);

        run_job(p, j);

        pthread_mutex_lock(&p->lock);
        for (struct job **pp = &p->running; *pp; pp = &(*pp)->next) {
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        }
        p->nrunning--;
        note_change_locked(p, j->id);
        pthread_mutex_unlock(&p->lock);
        job_free(j);
    }
}

struct pool *pool_new(struct store *st, const struct pool_config *cfg)
{
    struct pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->store = st;
    p->cfg = *cfg;
    for (int k = 0; k < POOL_KINDS; k++) {
        atomic_init(&p->tot_requests[k], 0);
        atomic_init(&p->tot_errors[k], 0);
        atomic_init(&p->tot_rows[k], 0);
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->stop_lock, NULL);
    pthread_cond_init(&p->work, NULL); /* never waited on with a timeout */
    lt_cond_init_mono(&p->changed);
    p->threads = calloc((size_t)cfg->max_concurrent, sizeof(pthread_t));
    if (p->threads == NULL)
        goto fail;
    for (int i = 0; i < cfg->max_concurrent; i++) {
        if (pthread_create(&p->threads[i], NULL, run_thread, p) != 0)
            goto fail;
        char name[16];
        snprintf(name, sizeof(name), "run-%d", i);
        pthread_setname_np(p->threads[i], name);
        p->nthreads++;
    }
    return p;
fail:
    pool_free(p);
    return NULL;
}

/* Marks a job that never started as cancelled in the store. */
static lt_status cancel_queued(struct pool *p, struct job *j)
{
    struct run_update u = {.status = RUN_CANCELLED, .only_if_status = RUN_QUEUED};
    lt_status st;

    u.finished_at_ms = lt_now_ms();
    st = store_update_run(p->store, j->id, &u);
    if (st == LT_OK)
        log_state(j->id, j->ops->kind, RUN_CANCELLED, "while=queued");
    else
        lt_log("error", "store_write", "run=%s what=cancel error=%s", j->id, lt_status_code(st));
    return st;
}

void pool_stop(struct pool *p)
{
    struct job *q;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->stop_lock);
    if (p->joined) {
        pthread_mutex_unlock(&p->stop_lock);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    q = p->queue_head;
    p->queue_head = p->queue_tail = NULL;
    p->nqueued = 0;
    for (struct job *j = p->running; j; j = j->next)
        atomic_store(&j->cancel, 1);
    pthread_cond_broadcast(&p->work);
    note_change_locked(p, NULL);
    pthread_mutex_unlock(&p->lock);
    while (q) {
        struct job *next = q->next;
        cancel_queued(p, q);
        job_free(q);
        q = next;
    }
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->joined = 1;
    pthread_mutex_unlock(&p->stop_lock);
}

void pool_free(struct pool *p)
{
    if (p == NULL)
        return;
    pool_stop(p);
    free(p->threads);
    pthread_cond_destroy(&p->changed);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->stop_lock);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

lt_status pool_submit(struct pool *p, struct run_record *rec, json_t *spec,
                      const struct runner_ops *ops)
{
    struct job *j = calloc(1, sizeof(*j));
    lt_status st;

    if (j == NULL) {
        json_decref(spec);
        return LT_ERR_NOMEM;
    }
    memcpy(j->id, rec->id, sizeof(j->id));
    j->spec = spec;
    j->ops = ops;
    j->pool = p;
    atomic_init(&j->cancel, 0);

    /* Reserve: the capacity check and the admission are one step (see DESIGN). */
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        st = LT_ERR_UNAVAILABLE;
    } else if (p->nqueued + p->nrunning + p->npending >=
               p->cfg.max_concurrent + p->cfg.max_queued) {
        st = LT_ERR_TOO_MANY_RUNS;
    } else {
        st = LT_OK;
        j->next = p->pending;
        p->pending = j;
        p->npending++;
    }
    pthread_mutex_unlock(&p->lock);
    if (st != LT_OK) {
        job_free(j);
        return st;
    }

    /* Insert without the pool lock: a slow write stalls this request only. */
    rec->status = RUN_QUEUED;
    st = store_insert_run(p->store, rec);

    /* Publish, or release the slot. */
    pthread_mutex_lock(&p->lock);
    for (struct job **pp = &p->pending; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    j->next = NULL;
    p->npending--;
    if (st == LT_OK && !atomic_load(&j->cancel) && !p->stopping) {
        if (p->queue_tail)
            p->queue_tail->next = j;
        else
            p->queue_head = j;
        p->queue_tail = j;
        p->nqueued++;
        log_state(rec->id, ops->kind, RUN_QUEUED, NULL);
        note_change_locked(p, rec->id);
        pthread_cond_signal(&p->work);
        j = NULL;
    } else if (st == LT_OK) {
        /* Cancelled while pending (pool_cancel stored it cancelled), or the pool stopped
         * meanwhile: it never starts, as if it had been queued and then cancelled. */
        if (!atomic_load(&j->cancel))
            cancel_queued(p, j);
        note_change_locked(p, j->id);
    }
    pthread_mutex_unlock(&p->lock);
    job_free(j);
    return st;
}

lt_status pool_cancel(struct pool *p, const char *id)
{
    struct job *found = NULL;
    lt_status st = LT_OK;

    pthread_mutex_lock(&p->lock);
    for (struct job *j = p->running; j; j = j->next) {
        if (strcmp(j->id, id) == 0) {
            atomic_store(&j->cancel, 1);
            pthread_mutex_unlock(&p->lock);
            lt_log("info", "run_cancel", "run=%s while=running", id);
            return LT_OK;
        }
    }
    for (struct job *j = p->pending; j; j = j->next) {
        /* Stored already (a client knows its id only from the answer or a read of the store)
         * but not queued yet: store it cancelled now; its submitter will not queue it. */
        if (strcmp(j->id, id) != 0 || atomic_load(&j->cancel))
            continue;
        st = cancel_queued(p, j);
        if (st == LT_OK) {
            atomic_store(&j->cancel, 1);
            note_change_locked(p, j->id);
        }
        pthread_mutex_unlock(&p->lock);
        return st == LT_ERR_CONFLICT ? LT_ERR_NOT_FOUND : st;
    }
    for (struct job **pp = &p->queue_head; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) != 0)
            continue;
        found = *pp;
        /* Stored while holding the lock, so no run thread can take the job meanwhile and a GET
         * after this answer sees cancelled. When the store refuses, the job stays queued. */
        st = cancel_queued(p, found);
        if (st != LT_OK)
            break;
        *pp = found->next;
        if (p->queue_tail == found) {
            p->queue_tail = NULL;
            for (struct job *t = p->queue_head; t; t = t->next)
                p->queue_tail = t;
        }
        p->nqueued--;
        note_change_locked(p, found->id);
        break;
    }
    pthread_mutex_unlock(&p->lock);
    if (found == NULL)
        return LT_ERR_NOT_FOUND;
    if (st == LT_OK)
        job_free(found);
    return st;
}

void pool_counts(struct pool *p, int *running, int *queued)
{
    pthread_mutex_lock(&p->lock);
    *running = p->nrunning;
    *queued = p->nqueued + p->npending;
    pthread_mutex_unlock(&p->lock);
}

void pool_load_totals(struct pool *p, struct pool_kind_totals out[POOL_KINDS])
{
    for (int k = 0; k < POOL_KINDS; k++) {
        out[k].kind = load_kinds[k];
        out[k].requests = atomic_load_explicit(&p->tot_requests[k], memory_order_relaxed);
        out[k].errors = atomic_load_explicit(&p->tot_errors[k], memory_order_relaxed);
        out[k].rows = atomic_load_explicit(&p->tot_rows[k], memory_order_relaxed);
    }
}

void pool_changes_snapshot(struct pool *p, struct pool_changes *out)
{
    pthread_mutex_lock(&p->lock);
    out->changes = p->changes;
    memcpy(out->recent, p->recent, sizeof(out->recent));
    pthread_mutex_unlock(&p->lock);
}

int pool_changes_has(const struct pool_changes *snap, const char *id, unsigned long seen)
{
    if (snap->changes - seen >= POOL_RECENT)
        return snap->changes != seen; /* too far back to tell: maybe */
    for (unsigned long n = seen + 1; n <= snap->changes; n++) {
        const struct pool_change *c = &snap->recent[n % POOL_RECENT];
        if (c->n != n || c->id[0] == '\0' || strcmp(c->id, id) == 0)
            return 1;
    }
    return 0;
}

int pool_changed_since(struct pool *p, const char *id, unsigned long seen)
{
    static _Thread_local struct pool_changes snap; /* 6 KiB: kept off the stack */

    pool_changes_snapshot(p, &snap);
    return pool_changes_has(&snap, id, seen);
}

unsigned long pool_wait_change(struct pool *p, unsigned long seen, int timeout_ms)
{
    struct timespec deadline;
    unsigned long now;

    lt_mono_timespec(lt_mono_ns() + (int64_t)timeout_ms * 1000000, &deadline);
    pthread_mutex_lock(&p->lock);
    while (p->changes == seen) {
        if (pthread_cond_timedwait(&p->changed, &p->lock, &deadline) != 0)
            break;
    }
    now = p->changes;
    pthread_mutex_unlock(&p->lock);
    return now;
}
