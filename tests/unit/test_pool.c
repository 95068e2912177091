/*
 * Unit tests of the run scheduler (service/pool.c) through the runner interface, with a runner
 * defined here: it reports progress and one point per tick until its time is up or it is
 * cancelled, then passes, fails or errors as its spec says.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pool.h"
#include "store.h"

static atomic_int executed;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Spec: {"ms": run time, "outcome": "pass"|"fail"|"error"} */
static void fake_execute(const struct runner_job *job, struct runner_outcome *out)
{
    int ms = (int)json_integer_value(json_object_get(job->spec, "ms"));
    const char *outcome = json_string_value(json_object_get(job->spec, "outcome"));
    int ticks = 0;

    atomic_fetch_add(&executed, 1);
    for (int elapsed = 0; elapsed < ms && !atomic_load(job->cancel); elapsed += 20) {
        sleep_ms(20);
        if (elapsed % 100 == 0) {
            ticks++;
            json_t *pt = json_pack("{s:i}", "requests", ticks * 10);
            json_t *pr = json_pack("{s:f}", "fraction", (double)elapsed / ms);
            json_t *res = json_pack("{s:i}", "requests", ticks * 10);
            job->sink->point(job->sink->opaque, ticks, pt);
            job->sink->progress(job->sink->opaque, pr, res);
            json_decref(pt);
            json_decref(pr);
            json_decref(res);
        }
    }
    out->result = json_pack("{s:i}", "requests", ticks * 10);
    if (outcome && strcmp(outcome, "error") == 0) {
        lt_error_set(&out->error, LT_ERR_IO, NULL, "target unreachable: test");
        out->error_code = "target_unreachable";
        return;
    }
    json_t *checks = json_array();
    runner_add_check(checks, "p99_ms", "<", 50, outcome && strcmp(outcome, "fail") == 0 ? 80 : 10);
    out->verdict = runner_verdict_new(checks, "test summary");
}

static const struct runner_ops fake_ops = {.kind = "capacity", .execute = fake_execute};

static struct store *open_store(char *path, size_t len)
{
    char err[256];
    snprintf(path, len, "/tmp/lt_test_pool_%d_%ld.db", (int)getpid(), (long)lt_mono_ns());
    return store_open(path, err, sizeof(err));
}

static void remove_store(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static lt_status submit(struct pool *p, int ms, const char *outcome, char id[LT_ID_SIZE])
{
    struct run_record rec;
    lt_status st;

    memset(&rec, 0, sizeof(rec));
    lt_new_run_id(rec.id);
    strcpy(rec.kind, "capacity");
    rec.created_at_ms = lt_now_ms();
    rec.spec_json = strdup("{\"kind\":\"capacity\"}");
    st = pool_submit(p, &rec, json_pack("{s:i, s:s}", "ms", ms, "outcome", outcome), &fake_ops);
    memcpy(id, rec.id, LT_ID_SIZE);
    run_record_clear(&rec);
    return st;
}

static int status_of(struct store *st, const char *id)
{
    struct run_record r;
    int s;

    memset(&r, 0, sizeof(r));
    if (store_get_run(st, id, &r) != LT_OK)
        return -1;
    s = (int)r.status;
    run_record_clear(&r);
    return s;
}

/* Waits up to timeout_ms for run id to reach status want. */
static int wait_status(struct store *st, const char *id, int want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (status_of(st, id) == want)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

static int count_points_cb(void *opaque, int64_t t, const char *json)
{
    (void)t;
    (void)json;
    (*(int *)opaque)++;
    return 0;
}

static void test_outcomes(void)
{
    char path[256], a[LT_ID_SIZE], b[LT_ID_SIZE], c[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 2, .max_queued = 4};
    struct pool *p;
    struct run_record r;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    CHECK(submit(p, 150, "pass", a) == LT_OK);
    CHECK(submit(p, 150, "fail", b) == LT_OK);
    CHECK(submit(p, 50, "error", c) == LT_OK);
    CHECK(wait_status(st, a, RUN_PASSED, 5000));
    CHECK(wait_status(st, b, RUN_FAILED, 5000));
    CHECK(wait_status(st, c, RUN_ERROR, 5000));
    memset(&r, 0, sizeof(r));
    REQUIRE(store_get_run(st, c, &r) == LT_OK);
    CHECK(r.error_json && strstr(r.error_json, "target_unreachable") != NULL);
    CHECK(r.result_json != NULL);
    CHECK(r.verdict_json == NULL);
    CHECK(r.started_at_ms > 0 && r.finished_at_ms >= r.started_at_ms);
    run_record_clear(&r);
    REQUIRE(store_get_run(st, a, &r) == LT_OK);
    CHECK(r.verdict_json && strstr(r.verdict_json, "\"pass\":true") != NULL);
    CHECK(r.progress_json != NULL);
    run_record_clear(&r);
    int npoints = 0;
    CHECK(store_list_points(st, a, 0, 100, count_points_cb, &npoints) == LT_OK);
    CHECK(npoints >= 1);
    pool_free(p);
    store_free(st);
    remove_store(path);
}

static void test_queue_bounds_and_cancel(void)
{
    char path[256], r1[LT_ID_SIZE], r2[LT_ID_SIZE], r3[LT_ID_SIZE], r4[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 1, .max_queued = 2};
    struct pool *p;
    int running = -1, queued = -1;

    REQUIRE(st != NULL);
    atomic_store(&executed, 0);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    CHECK(submit(p, 10000, "pass", r1) == LT_OK);
    CHECK(wait_status(st, r1, RUN_RUNNING, 2000));
    CHECK(submit(p, 10000, "pass", r2) == LT_OK);
    CHECK(submit(p, 10000, "pass", r3) == LT_OK);
    /* One running + two queued: the next is refused and nothing is stored for it. */
    CHECK(submit(p, 10000, "pass", r4) == LT_ERR_TOO_MANY_RUNS);
    CHECK(status_of(st, r4) == -1);
    pool_counts(p, &running, &queued);
    CHECK(running == 1 && queued == 2);
    CHECK(status_of(st, r2) == RUN_QUEUED);

    /* Cancelling a queued run ends it at once, without executing it. */
    CHECK(pool_cancel(p, r2) == LT_OK);
    CHECK(status_of(st, r2) == RUN_CANCELLED);
    CHECK(pool_cancel(p, r2) == LT_ERR_NOT_FOUND);

    /* Cancelling the running one stops it within a second and keeps what it measured. */
    int64_t t0 = lt_mono_ns();
    CHECK(pool_cancel(p, r1) == LT_OK);
    CHECK(wait_status(st, r1, RUN_CANCELLED, 1000));
    CHECK(lt_mono_ns() - t0 < 1000000000LL);
    struct run_record r;
    memset(&r, 0, sizeof(r));
    REQUIRE(store_get_run(st, r1, &r) == LT_OK);
    CHECK(r.result_json != NULL);
    CHECK(r.verdict_json == NULL);
    run_record_clear(&r);

    /* r3 moves up and runs; only r1 and r3 ever executed. */
    CHECK(wait_status(st, r3, RUN_RUNNING, 2000));
    CHECK(atomic_load(&executed) == 2);

    /* Shutdown cancels what runs, with partial results stored. */
    pool_free(p);
    CHECK(status_of(st, r3) == RUN_CANCELLED);
    store_free(st);
    remove_store(path);
}

static void test_shutdown_cancels_queued(void)
{
    char path[256], r1[LT_ID_SIZE], r2[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 1, .max_queued = 5};
    struct pool *p;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    CHECK(submit(p, 10000, "pass", r1) == LT_OK);
    CHECK(submit(p, 10000, "pass", r2) == LT_OK);
    CHECK(wait_status(st, r1, RUN_RUNNING, 2000));
    int64_t t0 = lt_mono_ns();
    pool_free(p);
    CHECK(lt_mono_ns() - t0 < 2000000000LL);
    CHECK(status_of(st, r1) == RUN_CANCELLED);
    CHECK(status_of(st, r2) == RUN_CANCELLED);
    store_free(st);
    remove_store(path);
}

static void test_many_concurrent_submits(void)
{
    char path[256];
    char ids[40][LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 4, .max_queued = 36};
    struct pool *p;
    int ok = 0;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    for (int i = 0; i < 40; i++)
        ok += submit(p, 20, "pass", ids[i]) == LT_OK;
    CHECK(ok == 40);
    for (int i = 0; i < 40; i++)
        CHECK(wait_status(st, ids[i], RUN_PASSED, 10000));
    pool_free(p);
    store_free(st);
    remove_store(path);
}

static int sum_requests_cb(void *opaque, int64_t t, const char *json)
{
    json_t *pt = json_loads(json, 0, NULL);
    (void)t;
    *(long long *)opaque += json_integer_value(json_object_get(pt, "requests"));
    json_decref(pt);
    return 0;
}

/* pool_changed_since tells the changes of one run from those of others; the load totals are
 * the sums of the points the runners reported. */
static void test_changes_by_run_and_totals(void)
{
    char path[256], a[LT_ID_SIZE], b[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 1, .max_queued = 4};
    struct pool_kind_totals tot[POOL_KINDS];
    struct pool *p;
    unsigned long before, c0, c1;
    long long sum = 0;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    REQUIRE(submit(p, 3000, "pass", a) == LT_OK);
    REQUIRE(wait_status(st, a, RUN_RUNNING, 5000));
    before = pool_wait_change(p, 0, 0);
    REQUIRE(submit(p, 20, "pass", b) == LT_OK); /* queued behind a */
    c0 = pool_wait_change(p, 0, 0);
    CHECK(pool_changed_since(p, b, before) == 1); /* its submit */
    CHECK(pool_changed_since(p, b, c0) == 0);
    c1 = pool_wait_change(p, c0, 2000); /* a reports progress every 100 ms */
    CHECK(c1 != c0);
    CHECK(pool_changed_since(p, a, c0) == 1);
    CHECK(pool_changed_since(p, b, c0) == 0);
    CHECK(pool_changed_since(p, b, c0 - 100000) == 1); /* too far back: maybe */
    /* The same answers from one copy of the ring (what the HTTP waiter uses). */
    static struct pool_changes snap;
    pool_changes_snapshot(p, &snap);
    CHECK(snap.changes >= c1);
    CHECK(pool_changes_has(&snap, a, c0) == 1);
    CHECK(pool_changes_has(&snap, b, c0) == 0);
    CHECK(pool_changes_has(&snap, b, before) == 1);
    CHECK(pool_changes_has(&snap, a, snap.changes) == 0);
    CHECK(pool_changes_has(&snap, b, c0 - 100000) == 1);
    CHECK(pool_cancel(p, b) == LT_OK);
    CHECK(pool_changed_since(p, b, c1) == 1);
    CHECK(pool_cancel(p, a) == LT_OK);
    CHECK(wait_status(st, a, RUN_CANCELLED, 5000));
    pool_load_totals(p, tot);
    CHECK_STR(tot[0].kind, "capacity");
    CHECK(store_list_points(st, a, -1, 1000, sum_requests_cb, &sum) == LT_OK);
    CHECK(sum > 0);
    CHECK((long long)tot[0].requests == sum);
    CHECK(tot[0].errors == 0 && tot[0].rows == 0 && tot[1].requests == 0);
    pool_free(p);
    store_free(st);
    remove_store(path);
}

struct slow_submit {
    struct pool *p;
    char id[LT_ID_SIZE];
    atomic_int done;
    lt_status st;
};

static void *slow_submit_main(void *arg)
{
    struct slow_submit *ss = arg;

    ss->st = submit(ss->p, 20, "pass", ss->id);
    atomic_store(&ss->done, 1);
    return NULL;
}

/* A submit whose store insert waits (another connection holds the write lock, so SQLite waits
 * up to its busy timeout) does not hold the pool lock meanwhile: pool_counts, pool_changed_since
 * and pool_cancel answer while it still waits, and its slot counts against the capacity. */
static void test_slow_insert_does_not_block_the_pool(void)
{
    char path[256], r1[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 1, .max_queued = 1};
    struct slow_submit ss = {.st = LT_ERR_INTERNAL};
    struct pool *p;
    sqlite3 *db = NULL;
    pthread_t th;
    int running = -1, queued = -1;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    CHECK(submit(p, 10000, "pass", r1) == LT_OK);
    CHECK(wait_status(st, r1, RUN_RUNNING, 2000));
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    ss.p = p;
    atomic_init(&ss.done, 0);
    REQUIRE(pthread_create(&th, NULL, slow_submit_main, &ss) == 0);
    sleep_ms(300); /* the submit is now waiting in the store (its busy timeout is 5 s) */
    pool_counts(p, &running, &queued);
    CHECK(pool_changed_since(p, r1, 0) == 1);
    CHECK(pool_cancel(p, "r00000000000000000000") == LT_ERR_NOT_FOUND);
    CHECK(atomic_load(&ss.done) == 0);  /* all of the above answered while it waited */
    CHECK(running == 1 && queued == 1); /* the pending submit holds its slot */
    char r3[LT_ID_SIZE];
    CHECK(submit(p, 20, "pass", r3) == LT_ERR_TOO_MANY_RUNS); /* 1 running + 1 pending = full */
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    pthread_join(th, NULL);
    CHECK(ss.st == LT_OK);
    CHECK(status_of(st, ss.id) == RUN_QUEUED);
    pool_counts(p, &running, &queued);
    CHECK(running == 1 && queued == 1);
    CHECK(pool_cancel(p, ss.id) == LT_OK);
    CHECK(status_of(st, ss.id) == RUN_CANCELLED);
    pool_free(p);
    store_free(st);
    remove_store(path);
}

/* pool_changes_has on a hand-made snapshot: changes of other runs, of every run (""), and slots
 * overwritten since (n does not match: maybe). */
static void test_changes_has_pure(void)
{
    static struct pool_changes snap;
    const char *ids[] = {"x", "y", "x", "", "y"};

    memset(&snap, 0, sizeof(snap));
    for (unsigned long n = 1; n <= 5; n++) {
        snap.recent[n % POOL_RECENT].n = n;
        strcpy(snap.recent[n % POOL_RECENT].id, ids[n - 1]);
    }
    snap.changes = 5;
    CHECK(pool_changes_has(&snap, "x", 5) == 0); /* nothing since */
    CHECK(pool_changes_has(&snap, "x", 4) == 0); /* only y since */
    CHECK(pool_changes_has(&snap, "y", 4) == 1);
    CHECK(pool_changes_has(&snap, "z", 3) == 1); /* 4 was of every run */
    CHECK(pool_changes_has(&snap, "x", 1) == 1);
    snap.recent[5 % POOL_RECENT].n = 5 + POOL_RECENT; /* overwritten: cannot tell */
    CHECK(pool_changes_has(&snap, "x", 4) == 1);
    snap.changes = 5 + POOL_RECENT;
    CHECK(pool_changes_has(&snap, "x", 4) == 1); /* too far back */
}

/* After pool_stop the pool is still usable by HTTP requests in progress: submits are refused
 * (and stored nowhere), cancels find nothing, counts are 0; a second stop is harmless. */
static void test_stop_keeps_pool_valid(void)
{
    char path[256], r1[LT_ID_SIZE], r2[LT_ID_SIZE];
    struct store *st = open_store(path, sizeof(path));
    struct pool_config cfg = {.max_concurrent = 1, .max_queued = 5};
    struct pool *p;
    int running = -1, queued = -1;

    REQUIRE(st != NULL);
    p = pool_new(st, &cfg);
    REQUIRE(p != NULL);
    CHECK(submit(p, 10000, "pass", r1) == LT_OK);
    CHECK(wait_status(st, r1, RUN_RUNNING, 2000));
    pool_stop(p);
    CHECK(status_of(st, r1) == RUN_CANCELLED);
    CHECK(submit(p, 100, "pass", r2) == LT_ERR_UNAVAILABLE);
    CHECK(status_of(st, r2) == -1);
    CHECK(pool_cancel(p, r1) == LT_ERR_NOT_FOUND);
    pool_counts(p, &running, &queued);
    CHECK(running == 0 && queued == 0);
    unsigned long c = pool_wait_change(p, 0, 0);
    CHECK(pool_wait_change(p, c, 10) == c);
    pool_stop(p);
    pool_free(p);
    store_free(st);
    remove_store(path);
}

int main(void)
{
    lt_log_set_quiet(1);
    RUN(test_outcomes);
    RUN(test_queue_bounds_and_cancel);
    RUN(test_shutdown_cancels_queued);
    RUN(test_stop_keeps_pool_valid);
    RUN(test_many_concurrent_submits);
    RUN(test_changes_by_run_and_totals);
    RUN(test_changes_has_pure);
    RUN(test_slow_insert_does_not_block_the_pool);
    return harness_report();
}
