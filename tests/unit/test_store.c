/*
 * test_store: unit tests of the SQLite store (storage/store_sqlite.c) against the contract in
 * storage/store.h — round trips of every field, listing order, filters and paging, update and
 * delete rules, points, start-up recovery, schema versioning, failures that must answer
 * LT_ERR_UNAVAILABLE and then recover, and concurrent use from several threads.
 *
 * Each test opens its own database file in a private temporary directory. Some tests look at the
 * file with a raw sqlite3 connection of their own, to check what the store cannot report itself
 * (schema version, points left behind by a delete).
 */
#define _POSIX_C_SOURCE 200809L

#include "harness.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static char tmpdir[256];

/* ---- helpers ------------------------------------------------------------------------------- */

/* Sets (on = 1) or clears the immutable attribute of path. Unlike chmod it also stops root,
 * which the tests run as. Returns 0 or an errno value; a missing file is not an error. */
static int set_immutable(const char *path, int on)
{
    int fd;
    int flags = 0; /* the kernel reads and writes an int, whatever the ioctl's type says */
    int err = 0;

    fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
        err = errno;
        goto out;
    }
    if (on)
        flags |= FS_IMMUTABLE_FL;
    else
        flags &= ~FS_IMMUTABLE_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0)
        err = errno;
out:
    close(fd);
    return err;
}

/* Sets or clears the immutable attribute of the database at path and of its -wal and -shm. */
static int set_db_immutable(const char *path, int on)
{
    char side[512];
    int err;

    err = set_immutable(path, on);
    snprintf(side, sizeof(side), "%s-wal", path);
    if (err == 0)
        err = set_immutable(side, on);
    snprintf(side, sizeof(side), "%s-shm", path);
    if (err == 0 && !on) /* the -shm index is shared memory: readers must still write it */
        err = set_immutable(side, on);
    return err;
}

/* Writes tmpdir/name into buf and removes any database left there by an earlier run. */
static void db_path(char *buf, size_t len, const char *name)
{
    char side[512];

    snprintf(buf, len, "%s/%s", tmpdir, name);
    set_db_immutable(buf, 0);
    unlink(buf);
    snprintf(side, sizeof(side), "%s-wal", buf);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", buf);
    unlink(side);
}

static struct store *open_ok(const char *path)
{
    char err[256] = "";
    struct store *st = store_open(path, err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "store_open(%s): %s\n", path, err);
    return st;
}

/* Runs a one-value query on the file with a connection of the test's own; -1 on error. */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Runs statements on the file with a connection of the test's own; returns the SQLite code. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc;

    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* Counts the points stored for id, straight from the file. */
static int64_t raw_point_count(const char *path, const char *id)
{
    char sql[128];

    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM points WHERE run_id = '%s'", id);
    return raw_int(path, sql);
}

/* Inserts a run with a small spec; copies its id into id_out (may be NULL). */
static lt_status insert_run(struct store *st, const char *kind, const char *name,
                            enum run_status status, char *id_out, int64_t *seq_out)
{
    struct run_record r;
    lt_status res;

    memset(&r, 0, sizeof(r));
    lt_new_run_id(r.id);
    snprintf(r.kind, sizeof(r.kind), "%s", kind);
    r.name = (char *)name; /* borrowed: insert only reads it, and r is not cleared */
    r.status = status;
    r.created_at_ms = lt_now_ms();
    r.spec_json = (char *)"{\"spec\":1}";
    res = store_insert_run(st, &r);
    if (id_out != NULL)
        memcpy(id_out, r.id, LT_ID_SIZE);
    if (seq_out != NULL)
        *seq_out = r.seq;
    return res;
}

static struct run_update keep_all(void)
{
    struct run_update u;

    memset(&u, 0, sizeof(u));
    u.status = -1;
    u.only_if_status = -1;
    return u;
}

static struct run_filter any_run(int limit)
{
    struct run_filter f;

    memset(&f, 0, sizeof(f));
    f.status = -1;
    f.limit = limit;
    return f;
}

#define MAX_SEEN 64

/* Collects what store_list_runs shows. */
struct seen_runs {
    int n;
    int stop_after; /* 0 = never stop */
    char id[MAX_SEEN][LT_ID_SIZE];
    int64_t seq[MAX_SEEN];
    char kind[MAX_SEEN][16];
    int status[MAX_SEEN];
};

static int collect_run(void *opaque, const struct run_record *r)
{
    struct seen_runs *s = opaque;

    if (s->n < MAX_SEEN) {
        memcpy(s->id[s->n], r->id, LT_ID_SIZE);
        s->seq[s->n] = r->seq;
        memcpy(s->kind[s->n], r->kind, sizeof(s->kind[0]));
        s->status[s->n] = (int)r->status;
    }
    s->n++;
    return s->stop_after != 0 && s->n >= s->stop_after;
}

static lt_status list(struct store *st, const struct run_filter *f, struct seen_runs *out,
                      int *more)
{
    int stop = out->stop_after;

    memset(out, 0, sizeof(*out));
    out->stop_after = stop;
    *more = -1; /* the store must overwrite it */
    return store_list_runs(st, f, collect_run, out, more);
}

/* Collects what store_list_points shows. */
struct seen_points {
    int n;
    int stop_after;
    int64_t t[MAX_SEEN];
    char json[MAX_SEEN][64];
};

static int collect_point(void *opaque, int64_t t, const char *point_json)
{
    struct seen_points *s = opaque;

    if (s->n < MAX_SEEN) {
        s->t[s->n] = t;
        snprintf(s->json[s->n], sizeof(s->json[0]), "%s", point_json);
    }
    s->n++;
    return s->stop_after != 0 && s->n >= s->stop_after;
}

static lt_status points(struct store *st, const char *id, int64_t since, int limit,
                        struct seen_points *out)
{
    int stop = out->stop_after;

    memset(out, 0, sizeof(*out));
    out->stop_after = stop;
    return store_list_points(st, id, since, limit, collect_point, out);
}

/* A JSON object of about n bytes, so one write needs more pages than the file has. */
static char *big_json(size_t n)
{
    char *s = malloc(n + 16);

    if (s == NULL)
        return NULL;
    memcpy(s, "{\"pad\":\"", 8);
    memset(s + 8, 'x', n);
    memcpy(s + 8 + n, "\"}", 3);
    return s;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_status_names(void)
{
    static const char *const names[] = {"queued", "running",   "passed",     "failed",
                                        "error",  "cancelled", "interrupted"};
    static const int final[] = {0, 0, 1, 1, 1, 1, 1};
    int i;

    for (i = 0; i < 7; i++) {
        CHECK_STR(run_status_name((enum run_status)i), names[i]);
        CHECK(run_status_parse(names[i]) == i);
        CHECK(run_status_is_final((enum run_status)i) == final[i]);
    }
    CHECK(run_status_parse("bogus") == -1);
    CHECK(run_status_parse("Queued") == -1);
    CHECK(run_status_parse("") == -1);
    CHECK(run_status_parse(NULL) == -1);
}

static void test_open_creates_schema(void)
{
    char path[512];
    char err[256];
    struct store *st;

    db_path(path, sizeof(path), "schema.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('runs', 'points')") == 2);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                        "('runs_kind', 'runs_status', 'runs_name')") == 3);
    /* WAL is a property of the file: a fresh connection sees it. */
    CHECK(raw_int(path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode") == 1);
    store_free(st);
    store_free(NULL);

    /* A path that cannot be opened answers NULL and says which file. */
    memset(err, 0, sizeof(err));
    st = store_open("/nonexistent-dir-for-test/x.db", err, sizeof(err));
    CHECK(st == NULL);
    CHECK(strstr(err, "/nonexistent-dir-for-test/x.db") != NULL);
    store_free(st);
}

static void test_insert_get_roundtrip(void)
{
    char path[512];
    struct store *st;
    struct run_record r;
    struct run_record bare;
    struct run_record dup;
    struct run_record got;

    db_path(path, sizeof(path), "roundtrip.db");
    st = open_ok(path);
    REQUIRE(st != NULL);

    memset(&r, 0, sizeof(r));
    lt_new_run_id(r.id);
    snprintf(r.kind, sizeof(r.kind), "capacity");
    r.name = (char *)"nightly \"checkout\" ü";
    r.status = RUN_FAILED;
    r.created_at_ms = 1700000000001;
    r.started_at_ms = 1700000000002;
    r.finished_at_ms = 1700000000003;
    r.spec_json = (char *)"{\"target\":{\"url\":\"http://x\"},\"token\":\"***\"}";
    r.progress_json = (char *)"{\"p\":1}";
    r.result_json = (char *)"{\"r\":2}";
    r.verdict_json = (char *)"{\"v\":3}";
    r.error_json = (char *)"{\"code\":\"x\",\"message\":\"y\"}";
    r.seq = -5;
    r.version = 77;
    CHECK(store_insert_run(st, &r) == LT_OK);
    CHECK(r.seq > 0);
    CHECK(r.version == 1);

    memset(&got, 0, sizeof(got));
    REQUIRE(store_get_run(st, r.id, &got) == LT_OK);
    CHECK_STR(got.id, r.id);
    CHECK(got.seq == r.seq);
    CHECK_STR(got.kind, "capacity");
    CHECK_STR(got.name, r.name);
    CHECK(got.status == RUN_FAILED);
    CHECK(got.created_at_ms == 1700000000001);
    CHECK(got.started_at_ms == 1700000000002);
    CHECK(got.finished_at_ms == 1700000000003);
    CHECK_STR(got.spec_json, r.spec_json);
    CHECK_STR(got.progress_json, r.progress_json);
    CHECK_STR(got.result_json, r.result_json);
    CHECK_STR(got.verdict_json, r.verdict_json);
    CHECK_STR(got.error_json, r.error_json);
    CHECK(got.version == 1);
    run_record_clear(&got);
    CHECK(got.name == NULL && got.spec_json == NULL && got.id[0] == '\0' && got.seq == 0);
    run_record_clear(NULL);

    /* Nulls stay null: no name, no documents, no times. */
    memset(&bare, 0, sizeof(bare));
    lt_new_run_id(bare.id);
    snprintf(bare.kind, sizeof(bare.kind), "generate");
    bare.status = RUN_QUEUED;
    bare.spec_json = (char *)"{}";
    CHECK(store_insert_run(st, &bare) == LT_OK);
    CHECK(bare.seq > r.seq);
    REQUIRE(store_get_run(st, bare.id, &got) == LT_OK);
    CHECK(got.name == NULL);
    CHECK(got.status == RUN_QUEUED);
    CHECK(got.created_at_ms == 0 && got.started_at_ms == 0 && got.finished_at_ms == 0);
    CHECK_STR(got.spec_json, "{}");
    CHECK(got.progress_json == NULL && got.result_json == NULL && got.verdict_json == NULL &&
          got.error_json == NULL);
    run_record_clear(&got);

    /* The same id twice is a conflict and leaves the first run as it was. */
    memset(&dup, 0, sizeof(dup));
    memcpy(dup.id, r.id, LT_ID_SIZE);
    snprintf(dup.kind, sizeof(dup.kind), "ratelimit");
    dup.status = RUN_QUEUED;
    dup.spec_json = (char *)"{\"other\":true}";
    CHECK(store_insert_run(st, &dup) == LT_ERR_CONFLICT);
    REQUIRE(store_get_run(st, r.id, &got) == LT_OK);
    CHECK_STR(got.kind, "capacity");
    CHECK_STR(got.spec_json, r.spec_json);
    run_record_clear(&got);

    /* A record breaking the contract is refused and stores nothing. */
    memset(&dup, 0, sizeof(dup));
    lt_new_run_id(dup.id);
    snprintf(dup.kind, sizeof(dup.kind), "capacity");
    dup.status = RUN_QUEUED;
    CHECK(store_insert_run(st, &dup) == LT_ERR_INTERNAL); /* spec_json NULL */
    dup.spec_json = (char *)"{}";
    dup.status = (enum run_status)42;
    CHECK(store_insert_run(st, &dup) == LT_ERR_INTERNAL);
    CHECK(store_get_run(st, dup.id, &got) == LT_ERR_NOT_FOUND);

    /* Unknown id: NOT_FOUND, and the output record is left empty. */
    got.seq = 99;
    got.version = 99;
    CHECK(store_get_run(st, "r000000000000deadbeef", &got) == LT_ERR_NOT_FOUND);
    CHECK(got.seq == 0 && got.version == 0 && got.spec_json == NULL);
    store_free(st);
}

static void test_list_order_and_filters(void)
{
    /* kind, name, status of six runs, inserted in this order (a is oldest). */
    static const struct {
        const char *kind;
        const char *name;
        enum run_status status;
    } runs[] = {
        {"capacity", "alpha", RUN_QUEUED}, {"ratelimit", "beta", RUN_RUNNING},
        {"capacity", "alpha", RUN_PASSED}, {"generate", NULL, RUN_FAILED},
        {"capacity", "beta", RUN_QUEUED},  {"ratelimit", "alpha", RUN_PASSED},
    };
    char path[512];
    char ids[6][LT_ID_SIZE];
    struct store *st;
    struct seen_runs seen;
    struct run_filter f;
    int more;
    int i;

    db_path(path, sizeof(path), "list.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&seen, 0, sizeof(seen));
    for (i = 0; i < 6; i++)
        REQUIRE(insert_run(st, runs[i].kind, runs[i].name, runs[i].status, ids[i], NULL) == LT_OK);

    /* Everything, newest first. */
    f = any_run(100);
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(more == 0);
    REQUIRE(seen.n == 6);
    for (i = 0; i < 6; i++) {
        CHECK_STR(seen.id[i], ids[5 - i]);
        CHECK_STR(seen.kind[i], runs[5 - i].kind);
        CHECK(seen.status[i] == (int)runs[5 - i].status);
        if (i > 0)
            CHECK(seen.seq[i] < seen.seq[i - 1]);
    }

    f = any_run(100);
    f.kind = "capacity";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 3 && more == 0);
    CHECK_STR(seen.id[0], ids[4]);
    CHECK_STR(seen.id[1], ids[2]);
    CHECK_STR(seen.id[2], ids[0]);

    /* Status 0 is RUN_QUEUED and filters; only -1 means any. */
    f = any_run(100);
    f.status = RUN_QUEUED;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 2);
    CHECK_STR(seen.id[0], ids[4]);
    CHECK_STR(seen.id[1], ids[0]);

    f = any_run(100);
    f.status = RUN_PASSED;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 2);
    CHECK_STR(seen.id[0], ids[5]);
    CHECK_STR(seen.id[1], ids[2]);

    f = any_run(100);
    f.name = "alpha";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 3);
    CHECK_STR(seen.id[0], ids[5]);
    CHECK_STR(seen.id[1], ids[2]);
    CHECK_STR(seen.id[2], ids[0]);

    f = any_run(100);
    f.kind = "capacity";
    f.name = "alpha";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 2);
    CHECK_STR(seen.id[0], ids[2]);
    CHECK_STR(seen.id[1], ids[0]);

    f = any_run(100);
    f.kind = "capacity";
    f.status = RUN_QUEUED;
    f.name = "beta";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 1);
    CHECK_STR(seen.id[0], ids[4]);

    f = any_run(100);
    f.kind = "ratelimit";
    f.status = RUN_FAILED;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0 && more == 0);

    f = any_run(100);
    f.kind = "nosuchkind";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0 && more == 0);

    /* Limits outside 1..1000 and unknown statuses are caller bugs. */
    f = any_run(0);
    CHECK(list(st, &f, &seen, &more) == LT_ERR_INTERNAL);
    f = any_run(1001);
    CHECK(list(st, &f, &seen, &more) == LT_ERR_INTERNAL);
    f = any_run(10);
    f.status = 7;
    CHECK(list(st, &f, &seen, &more) == LT_ERR_INTERNAL);
    CHECK(seen.n == 0);
    store_free(st);
}

static void test_list_paging(void)
{
    char path[512];
    char ids[25][LT_ID_SIZE];
    struct store *st;
    struct seen_runs seen;
    struct run_filter f;
    int expect_n[3] = {10, 10, 5};
    int expect_more[3] = {1, 1, 0};
    int next = 24; /* index into ids of the run the next page must start with */
    int more;
    int page;
    int i;

    db_path(path, sizeof(path), "paging.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&seen, 0, sizeof(seen));
    /* Every third run (i % 3 == 0, 9 of them) is "generate"; the others "capacity". */
    for (i = 0; i < 25; i++)
        REQUIRE(insert_run(st, i % 3 == 0 ? "generate" : "capacity", NULL, RUN_PASSED, ids[i],
                           NULL) == LT_OK);

    /* Walk the whole list with the cursor: each run exactly once, newest first. */
    f = any_run(10);
    for (page = 0; page < 3; page++) {
        CHECK(list(st, &f, &seen, &more) == LT_OK);
        CHECK(seen.n == expect_n[page]);
        CHECK(more == expect_more[page]);
        for (i = 0; i < seen.n && i < expect_n[page]; i++)
            CHECK_STR(seen.id[i], ids[next - i]);
        next -= seen.n;
        if (seen.n > 0)
            f.before_seq = seen.seq[seen.n - 1];
    }
    CHECK(next == -1);
    /* Past the oldest: nothing, and no more. */
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0 && more == 0);

    /* A page that ends exactly at the last match has no more; one short of it has. */
    f = any_run(9);
    f.kind = "generate";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 9 && more == 0);
    f.limit = 8;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 8 && more == 1);
    CHECK_STR(seen.id[0], ids[24]);
    CHECK_STR(seen.id[7], ids[3]);

    /* The cursor combines with a filter. */
    f = any_run(100);
    f.kind = "generate";
    f.before_seq = seen.seq[3]; /* older than the fourth generate run, ids[15] */
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 5 && more == 0);
    CHECK_STR(seen.id[0], ids[12]);
    CHECK_STR(seen.id[4], ids[0]);

    /* fn stops early: more says some match was not shown. */
    seen.stop_after = 3;
    f = any_run(10);
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 3 && more == 1);
    /* ... and stopping on the very last match leaves nothing unseen. */
    seen.stop_after = 25;
    f = any_run(100);
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 25 && more == 0);
    seen.stop_after = 0;

    /* more may be NULL. */
    f = any_run(5);
    CHECK(store_list_runs(st, &f, collect_run, &seen, NULL) == LT_OK);
    store_free(st);
}

static void test_update_semantics(void)
{
    char path[512];
    char id[LT_ID_SIZE];
    struct store *st;
    struct run_record r;
    struct run_record got;
    struct run_update u;

    db_path(path, sizeof(path), "update.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    memset(&r, 0, sizeof(r));
    lt_new_run_id(r.id);
    memcpy(id, r.id, LT_ID_SIZE);
    snprintf(r.kind, sizeof(r.kind), "ratelimit");
    r.name = (char *)"n";
    r.status = RUN_QUEUED;
    r.created_at_ms = 1000;
    r.spec_json = (char *)"{\"s\":1}";
    r.progress_json = (char *)"{\"p\":0}";
    REQUIRE(store_insert_run(st, &r) == LT_OK);

    /* Only progress changes; everything else stays, version 1 -> 2. */
    u = keep_all();
    u.progress_json = "{\"p\":1}";
    CHECK(store_update_run(st, id, &u) == LT_OK);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK_STR(got.progress_json, "{\"p\":1}");
    CHECK(got.status == RUN_QUEUED);
    CHECK(got.created_at_ms == 1000 && got.started_at_ms == 0 && got.finished_at_ms == 0);
    CHECK_STR(got.name, "n");
    CHECK_STR(got.kind, "ratelimit");
    CHECK_STR(got.spec_json, "{\"s\":1}");
    CHECK(got.result_json == NULL && got.verdict_json == NULL && got.error_json == NULL);
    CHECK(got.seq == r.seq);
    CHECK(got.version == 2);
    run_record_clear(&got);

    /* Conditional transition that holds: queued -> running. */
    u = keep_all();
    u.status = RUN_RUNNING;
    u.only_if_status = RUN_QUEUED;
    u.started_at_ms = 2000;
    CHECK(store_update_run(st, id, &u) == LT_OK);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.status == RUN_RUNNING);
    CHECK(got.started_at_ms == 2000);
    CHECK_STR(got.progress_json, "{\"p\":1}");
    CHECK(got.version == 3);
    run_record_clear(&got);

    /* Conditional transition that fails: nothing at all changes, version included. */
    u = keep_all();
    u.status = RUN_PASSED;
    u.only_if_status = RUN_QUEUED;
    u.finished_at_ms = 3000;
    u.result_json = "{\"r\":1}";
    u.progress_json = "{\"p\":99}";
    CHECK(store_update_run(st, id, &u) == LT_ERR_CONFLICT);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.status == RUN_RUNNING);
    CHECK(got.finished_at_ms == 0);
    CHECK(got.result_json == NULL);
    CHECK_STR(got.progress_json, "{\"p\":1}");
    CHECK(got.version == 3);
    run_record_clear(&got);

    /* An update that changes no column still counts as a change of version. */
    u = keep_all();
    CHECK(store_update_run(st, id, &u) == LT_OK);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.version == 4);
    CHECK(got.status == RUN_RUNNING);
    run_record_clear(&got);

    /* Final transition carrying every document. */
    u = keep_all();
    u.status = RUN_FAILED;
    u.only_if_status = RUN_RUNNING;
    u.finished_at_ms = 4000;
    u.result_json = "{\"r\":2}";
    u.verdict_json = "{\"v\":\"fail\"}";
    u.error_json = "{\"code\":\"c\",\"message\":\"m\"}";
    CHECK(store_update_run(st, id, &u) == LT_OK);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.status == RUN_FAILED);
    CHECK(got.started_at_ms == 2000 && got.finished_at_ms == 4000);
    CHECK_STR(got.progress_json, "{\"p\":1}");
    CHECK_STR(got.result_json, "{\"r\":2}");
    CHECK_STR(got.verdict_json, "{\"v\":\"fail\"}");
    CHECK_STR(got.error_json, "{\"code\":\"c\",\"message\":\"m\"}");
    CHECK(got.version == 5);
    run_record_clear(&got);

    /* Unknown run; invalid status value (a caller bug) changes nothing. */
    u = keep_all();
    u.progress_json = "{}";
    CHECK(store_update_run(st, "r000000000000deadbeef", &u) == LT_ERR_NOT_FOUND);
    u.status = 42;
    CHECK(store_update_run(st, id, &u) == LT_ERR_INTERNAL);
    u.status = -1;
    u.only_if_status = 9;
    CHECK(store_update_run(st, id, &u) == LT_ERR_INTERNAL);
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.version == 5);
    CHECK_STR(got.progress_json, "{\"p\":1}");
    run_record_clear(&got);
    store_free(st);
}

static void test_delete(void)
{
    char path[512];
    char queued[LT_ID_SIZE], running[LT_ID_SIZE], passed[LT_ID_SIZE], cancelled[LT_ID_SIZE];
    struct store *st;
    struct run_record got;

    db_path(path, sizeof(path), "delete.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    REQUIRE(insert_run(st, "capacity", NULL, RUN_QUEUED, queued, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_RUNNING, running, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_PASSED, passed, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_CANCELLED, cancelled, NULL) == LT_OK);
    REQUIRE(store_put_point(st, passed, 0, "{\"a\":0}") == LT_OK);
    REQUIRE(store_put_point(st, passed, 1, "{\"a\":1}") == LT_OK);
    REQUIRE(store_put_point(st, running, 0, "{\"b\":0}") == LT_OK);
    CHECK(raw_point_count(path, passed) == 2);

    /* A worker still owns queued and running runs. */
    CHECK(store_delete_run(st, queued) == LT_ERR_CONFLICT);
    CHECK(store_delete_run(st, running) == LT_ERR_CONFLICT);
    CHECK(store_get_run(st, queued, &got) == LT_OK);
    run_record_clear(&got);
    CHECK(store_get_run(st, running, &got) == LT_OK);
    run_record_clear(&got);
    CHECK(raw_point_count(path, running) == 1);

    /* A final run goes, and its points with it; other runs' points stay. */
    CHECK(store_delete_run(st, passed) == LT_OK);
    CHECK(store_get_run(st, passed, &got) == LT_ERR_NOT_FOUND);
    CHECK(raw_point_count(path, passed) == 0);
    CHECK(raw_point_count(path, running) == 1);
    CHECK(store_delete_run(st, passed) == LT_ERR_NOT_FOUND);
    CHECK(store_delete_run(st, cancelled) == LT_OK);
    CHECK(store_delete_run(st, "r000000000000deadbeef") == LT_ERR_NOT_FOUND);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM runs") == 2);
    store_free(st);
}

static void test_points(void)
{
    char path[512];
    char id[LT_ID_SIZE];
    char empty[LT_ID_SIZE];
    char json[64];
    struct store *st;
    struct seen_points seen;
    struct run_record got;
    int i;

    db_path(path, sizeof(path), "points.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&seen, 0, sizeof(seen));
    memset(&got, 0, sizeof(got));
    REQUIRE(insert_run(st, "capacity", NULL, RUN_RUNNING, id, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_RUNNING, empty, NULL) == LT_OK);

    /* Out of order on purpose: listing sorts by t. */
    for (i = 9; i >= 0; i--) {
        snprintf(json, sizeof(json), "{\"t\":%d}", i);
        CHECK(store_put_point(st, id, i, json) == LT_OK);
    }
    CHECK(store_put_point(st, id, 3, "{\"t\":3,\"again\":true}") == LT_OK); /* last write wins */

    CHECK(points(st, id, -1, 100, &seen) == LT_OK);
    REQUIRE(seen.n == 10);
    for (i = 0; i < 10; i++) {
        CHECK(seen.t[i] == i);
        snprintf(json, sizeof(json), i == 3 ? "{\"t\":3,\"again\":true}" : "{\"t\":%d}", i);
        CHECK_STR(seen.json[i], json);
    }
    CHECK(raw_point_count(path, id) == 10);

    /* since is exclusive; limit caps. */
    CHECK(points(st, id, 4, 3, &seen) == LT_OK);
    CHECK(seen.n == 3);
    CHECK(seen.t[0] == 5 && seen.t[1] == 6 && seen.t[2] == 7);
    CHECK(points(st, id, 0, 100, &seen) == LT_OK);
    CHECK(seen.n == 9 && seen.t[0] == 1);
    CHECK(points(st, id, 9, 100, &seen) == LT_OK);
    CHECK(seen.n == 0);

    /* fn stops early. */
    seen.stop_after = 2;
    CHECK(points(st, id, -1, 100, &seen) == LT_OK);
    CHECK(seen.n == 2);
    seen.stop_after = 0;

    /* A run without points lists nothing; an unknown run is NOT_FOUND both ways. */
    CHECK(points(st, empty, -1, 100, &seen) == LT_OK);
    CHECK(seen.n == 0);
    CHECK(points(st, "r000000000000deadbeef", -1, 100, &seen) == LT_ERR_NOT_FOUND);
    CHECK(store_put_point(st, "r000000000000deadbeef", 0, "{}") == LT_ERR_NOT_FOUND);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM points") == 10);

    /* Caller bugs. */
    CHECK(store_put_point(st, id, -1, "{}") == LT_ERR_INTERNAL);
    CHECK(points(st, id, -1, 0, &seen) == LT_ERR_INTERNAL);

    /* Points are not part of the run record: its version is untouched. */
    REQUIRE(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.version == 1);
    run_record_clear(&got);
    store_free(st);
}

static void test_mark_interrupted(void)
{
    static const char expect_error[] = "{\"code\":\"interrupted\",\"message\":\"the daemon "
                                       "stopped while this run was queued or running\"}";
    char path[512];
    char queued[LT_ID_SIZE], running[LT_ID_SIZE], passed[LT_ID_SIZE], failed[LT_ID_SIZE];
    struct store *st;
    struct run_record got;
    struct run_update u;
    struct seen_points seen;
    int count = -1;

    db_path(path, sizeof(path), "interrupted.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    memset(&seen, 0, sizeof(seen));
    REQUIRE(insert_run(st, "capacity", NULL, RUN_QUEUED, queued, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_QUEUED, running, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_PASSED, passed, NULL) == LT_OK);
    REQUIRE(insert_run(st, "capacity", NULL, RUN_FAILED, failed, NULL) == LT_OK);
    u = keep_all();
    u.status = RUN_RUNNING;
    u.started_at_ms = 500;
    u.progress_json = "{\"done\":0.5}";
    u.result_json = "{\"partial\":true}";
    REQUIRE(store_update_run(st, running, &u) == LT_OK); /* version 2 */
    REQUIRE(store_put_point(st, running, 0, "{}") == LT_OK);
    REQUIRE(store_put_point(st, running, 1, "{}") == LT_OK);

    CHECK(store_mark_interrupted(st, 12345, &count) == LT_OK);
    CHECK(count == 2);

    REQUIRE(store_get_run(st, queued, &got) == LT_OK);
    CHECK(got.status == RUN_INTERRUPTED);
    CHECK(got.finished_at_ms == 12345);
    CHECK_STR(got.error_json, expect_error);
    CHECK(got.version == 2);
    run_record_clear(&got);

    REQUIRE(store_get_run(st, running, &got) == LT_OK);
    CHECK(got.status == RUN_INTERRUPTED);
    CHECK(got.started_at_ms == 500);
    CHECK(got.finished_at_ms == 12345);
    CHECK_STR(got.error_json, expect_error);
    CHECK_STR(got.progress_json, "{\"done\":0.5}");
    CHECK_STR(got.result_json, "{\"partial\":true}");
    CHECK(got.version == 3);
    run_record_clear(&got);
    CHECK(points(st, running, -1, 100, &seen) == LT_OK);
    CHECK(seen.n == 2);

    /* Final runs are not touched. */
    REQUIRE(store_get_run(st, passed, &got) == LT_OK);
    CHECK(got.status == RUN_PASSED && got.finished_at_ms == 0 && got.error_json == NULL);
    CHECK(got.version == 1);
    run_record_clear(&got);
    REQUIRE(store_get_run(st, failed, &got) == LT_OK);
    CHECK(got.status == RUN_FAILED && got.version == 1);
    run_record_clear(&got);

    /* Nothing left to interrupt: a second pass changes nothing. */
    count = -1;
    CHECK(store_mark_interrupted(st, 99999, &count) == LT_OK);
    CHECK(count == 0);
    REQUIRE(store_get_run(st, queued, &got) == LT_OK);
    CHECK(got.finished_at_ms == 12345 && got.version == 2);
    run_record_clear(&got);
    store_free(st);
}

static void test_count_by_status(void)
{
    static const enum run_status statuses[] = {RUN_QUEUED, RUN_QUEUED, RUN_RUNNING,  RUN_PASSED,
                                               RUN_PASSED, RUN_PASSED, RUN_CANCELLED};
    static const int64_t expect[7] = {2, 1, 3, 0, 0, 1, 0};
    char path[512];
    struct store *st;
    int64_t counts[7];
    size_t i;

    db_path(path, sizeof(path), "count.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    for (i = 0; i < 7; i++)
        counts[i] = 77;
    CHECK(store_count_by_status(st, counts) == LT_OK);
    for (i = 0; i < 7; i++)
        CHECK(counts[i] == 0);
    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        REQUIRE(insert_run(st, "generate", NULL, statuses[i], NULL, NULL) == LT_OK);
    CHECK(store_count_by_status(st, counts) == LT_OK);
    for (i = 0; i < 7; i++)
        CHECK(counts[i] == expect[i]);
    store_free(st);
}

static void test_reopen_keeps_everything(void)
{
    char path[512];
    char ids[3][LT_ID_SIZE];
    int64_t seqs[3];
    int64_t schema_cookie;
    int64_t new_seq = 0;
    struct store *st;
    struct run_record got;
    struct run_update u;
    struct seen_points seen;
    int i;

    db_path(path, sizeof(path), "reopen.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    memset(&seen, 0, sizeof(seen));
    for (i = 0; i < 3; i++)
        REQUIRE(insert_run(st, "capacity", "keep", RUN_RUNNING, ids[i], &seqs[i]) == LT_OK);
    u = keep_all();
    u.status = RUN_PASSED;
    u.result_json = "{\"kept\":true}";
    REQUIRE(store_update_run(st, ids[1], &u) == LT_OK);
    REQUIRE(store_put_point(st, ids[1], 7, "{\"x\":7}") == LT_OK);
    store_free(st);

    /* schema_version counts every schema change: a re-run migration would move it. */
    schema_cookie = raw_int(path, "PRAGMA schema_version");
    CHECK(schema_cookie > 0);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);

    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(raw_int(path, "PRAGMA schema_version") == schema_cookie);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);
    for (i = 0; i < 3; i++) {
        REQUIRE(store_get_run(st, ids[i], &got) == LT_OK);
        CHECK(got.seq == seqs[i]);
        CHECK_STR(got.name, "keep");
        CHECK(got.status == (i == 1 ? RUN_PASSED : RUN_RUNNING));
        CHECK(got.version == (i == 1 ? 2 : 1));
        run_record_clear(&got);
    }
    REQUIRE(store_get_run(st, ids[1], &got) == LT_OK);
    CHECK_STR(got.result_json, "{\"kept\":true}");
    run_record_clear(&got);
    CHECK(points(st, ids[1], -1, 10, &seen) == LT_OK);
    CHECK(seen.n == 1 && seen.t[0] == 7);

    /* A restarted daemon interrupts what was left running. */
    i = -1;
    CHECK(store_mark_interrupted(st, lt_now_ms(), &i) == LT_OK);
    CHECK(i == 2);

    /* seq never goes back, even when the newest run was deleted (AUTOINCREMENT). */
    CHECK(store_delete_run(st, ids[2]) == LT_OK);
    store_free(st);
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, &new_seq) == LT_OK);
    CHECK(new_seq > seqs[2]);
    store_free(st);
}

static void test_future_schema_refused(void)
{
    char path[512];
    char err[256];
    struct store *st;

    db_path(path, sizeof(path), "future.db");
    REQUIRE(raw_exec(path, "CREATE TABLE something_newer (x); PRAGMA user_version = 99") ==
            SQLITE_OK);
    memset(err, 0, sizeof(err));
    st = store_open(path, err, sizeof(err));
    CHECK(st == NULL);
    CHECK(strstr(err, "newer") != NULL);
    CHECK(strstr(err, "99") != NULL);
    store_free(st);
    /* Refused means untouched. */
    CHECK(raw_int(path, "PRAGMA user_version") == 99);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs'") == 0);
}

static void test_failed_migration_rolls_back(void)
{
    char path[512];
    char err[256];
    struct store *st;

    /* A stray "points" table makes migration 1 fail half-way, after "runs" was created. */
    db_path(path, sizeof(path), "halfway.db");
    REQUIRE(raw_exec(path, "CREATE TABLE points (x)") == SQLITE_OK);
    memset(err, 0, sizeof(err));
    st = store_open(path, err, sizeof(err));
    CHECK(st == NULL);
    CHECK(strstr(err, "migration 1") != NULL);
    store_free(st);
    CHECK(raw_int(path, "PRAGMA user_version") == 0);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs'") == 0);

    /* Once the obstacle is gone the same file migrates. */
    REQUIRE(raw_exec(path, "DROP TABLE points") == SQLITE_OK);
    st = open_ok(path);
    CHECK(st != NULL);
    store_free(st);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);
}

static void test_idempotency_keys(void)
{
    char path[512];
    struct store *st;
    struct run_record a, b, got;

    db_path(path, sizeof(path), "idempotency.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&got, 0, sizeof(got));
    snprintf(a.id, sizeof(a.id), "r000000000001aaaaaaaa");
    snprintf(a.kind, sizeof(a.kind), "capacity");
    a.spec_json = strdup("{\"kind\":\"capacity\"}");
    a.idempotency_key = strdup("ci-job-42");
    a.created_at_ms = 1;
    REQUIRE(store_insert_run(st, &a) == LT_OK);
    CHECK(store_find_idempotent(st, "ci-job-42", &got) == LT_OK);
    CHECK_STR(got.id, a.id);
    CHECK(got.idempotency_key == NULL);
    run_record_clear(&got);
    CHECK(store_find_idempotent(st, "ci-job-43", &got) == LT_ERR_NOT_FOUND);

    /* A second run with the same key is refused and not stored. */
    b = a;
    b.spec_json = strdup("{\"kind\":\"capacity\"}");
    b.idempotency_key = strdup("ci-job-42");
    snprintf(b.id, sizeof(b.id), "r000000000002bbbbbbbb");
    CHECK(store_insert_run(st, &b) == LT_ERR_CONFLICT);
    CHECK(store_get_run(st, b.id, &got) == LT_ERR_NOT_FOUND);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM runs") == 1);

    /* Runs without a key never collide; deleting the run frees its key. */
    free(b.idempotency_key);
    b.idempotency_key = NULL;
    CHECK(store_insert_run(st, &b) == LT_OK);
    snprintf(b.id, sizeof(b.id), "r000000000003cccccccc");
    CHECK(store_insert_run(st, &b) == LT_OK);
    CHECK(store_update_run(
              st, a.id, &(struct run_update){.status = RUN_PASSED, .only_if_status = -1}) == LT_OK);
    CHECK(store_delete_run(st, a.id) == LT_OK);
    CHECK(store_find_idempotent(st, "ci-job-42", &got) == LT_ERR_NOT_FOUND);
    run_record_clear(&a);
    run_record_clear(&b);
    store_free(st);
}

static void test_disk_full_then_recovers(void)
{
    char path[512];
    char old_id[LT_ID_SIZE];
    struct store *st;
    struct run_record r;
    struct run_record got;
    struct run_update u;
    struct seen_points seen;
    struct seen_runs runs;
    struct run_filter f;
    char *big = NULL;
    int more;
    int attempt;

    db_path(path, sizeof(path), "full.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    memset(&seen, 0, sizeof(seen));
    memset(&runs, 0, sizeof(runs));
    big = big_json(256 * 1024);
    REQUIRE(big != NULL);
    if (insert_run(st, "capacity", "old", RUN_RUNNING, old_id, NULL) != LT_OK ||
        store_put_point(st, old_id, 0, "{\"p\":0}") != LT_OK) {
        CHECK(!"setup failed");
        goto out;
    }

    /* The file may not grow: every write that needs a new page fails, twice in a row, and
     * leaves stored state as it was. */
    CHECK(store_debug_set_max_pages(st, 1) == LT_OK);
    memset(&r, 0, sizeof(r));
    lt_new_run_id(r.id);
    snprintf(r.kind, sizeof(r.kind), "capacity");
    r.status = RUN_QUEUED;
    r.spec_json = big;
    for (attempt = 0; attempt < 2; attempt++) {
        CHECK(store_insert_run(st, &r) == LT_ERR_UNAVAILABLE);
        CHECK(r.seq == 0 && r.version == 0);
        CHECK(store_get_run(st, r.id, &got) == LT_ERR_NOT_FOUND);

        u = keep_all();
        u.status = RUN_PASSED;
        u.result_json = big;
        CHECK(store_update_run(st, old_id, &u) == LT_ERR_UNAVAILABLE);
        CHECK(store_put_point(st, old_id, 1, big) == LT_ERR_UNAVAILABLE);

        /* Reads still answer, with the data as it was. */
        if (store_get_run(st, old_id, &got) == LT_OK) {
            CHECK(got.status == RUN_RUNNING);
            CHECK(got.result_json == NULL);
            CHECK(got.version == 1);
            run_record_clear(&got);
        } else {
            CHECK(!"get_run failed while the disk was full");
        }
        CHECK(points(st, old_id, -1, 10, &seen) == LT_OK);
        CHECK(seen.n == 1);
        f = any_run(10);
        CHECK(list(st, &f, &runs, &more) == LT_OK);
        CHECK(runs.n == 1);
    }

    /* Room again: the same connection takes the same writes. */
    CHECK(store_debug_set_max_pages(st, 0) == LT_OK);
    CHECK(store_insert_run(st, &r) == LT_OK);
    CHECK(r.seq > 0 && r.version == 1);
    u = keep_all();
    u.status = RUN_PASSED;
    u.result_json = big;
    CHECK(store_update_run(st, old_id, &u) == LT_OK);
    CHECK(store_put_point(st, old_id, 1, big) == LT_OK);
    if (store_get_run(st, old_id, &got) == LT_OK) {
        CHECK(got.status == RUN_PASSED);
        CHECK_STR(got.result_json, big);
        CHECK(got.version == 2);
        run_record_clear(&got);
    } else {
        CHECK(!"get_run failed after recovery");
    }
    CHECK(points(st, old_id, -1, 10, &seen) == LT_OK);
    CHECK(seen.n == 2);
    CHECK(store_get_run(st, r.id, &got) == LT_OK);
    CHECK_STR(got.spec_json, big);
    run_record_clear(&got);
out:
    free(big);
    store_free(st);
}

static void test_locked_database_then_recovers(void)
{
    char path[512];
    char id[LT_ID_SIZE];
    struct store *st;
    struct run_record got;
    sqlite3 *other = NULL;
    int64_t t0;
    int64_t waited_ms;

    db_path(path, sizeof(path), "locked.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    if (insert_run(st, "capacity", NULL, RUN_PASSED, id, NULL) != LT_OK ||
        sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        CHECK(!"setup failed");
        goto out;
    }

    /* Another process holds the write lock past the 5 s busy timeout. */
    t0 = lt_mono_ns();
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, NULL) == LT_ERR_UNAVAILABLE);
    waited_ms = (lt_mono_ns() - t0) / 1000000;
    CHECK(waited_ms >= 4500);
    /* WAL readers do not wait for writers. */
    CHECK(store_get_run(st, id, &got) == LT_OK);
    run_record_clear(&got);

    CHECK(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, NULL) == LT_OK);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM runs") == 2);
out:
    sqlite3_close(other);
    store_free(st);
}

static void test_read_only_file_then_recovers(void)
{
    char path[512];
    char id[LT_ID_SIZE];
    struct store *st;
    struct run_record got;
    struct run_update u;
    struct seen_points seen;
    int count = -1;
    int err;

    db_path(path, sizeof(path), "readonly.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    memset(&got, 0, sizeof(got));
    memset(&seen, 0, sizeof(seen));
    if (insert_run(st, "capacity", NULL, RUN_RUNNING, id, NULL) != LT_OK ||
        store_put_point(st, id, 0, "{}") != LT_OK) {
        CHECK(!"setup failed");
        goto out;
    }

    /* The file turns read-only under a running daemon: writes answer UNAVAILABLE, reads go on. */
    err = set_db_immutable(path, 1);
    if (err != 0) {
        fprintf(stderr, "  skipped: cannot set the immutable attribute here (%s)\n", strerror(err));
        goto out;
    }
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, NULL) == LT_ERR_UNAVAILABLE);
    u = keep_all();
    u.progress_json = "{\"p\":1}";
    CHECK(store_update_run(st, id, &u) == LT_ERR_UNAVAILABLE);
    CHECK(store_put_point(st, id, 1, "{}") == LT_ERR_UNAVAILABLE);
    CHECK(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.version == 1 && got.progress_json == NULL);
    run_record_clear(&got);
    CHECK(points(st, id, -1, 10, &seen) == LT_OK);
    CHECK(seen.n == 1);

    /* Writable again: the same store writes. */
    CHECK(set_db_immutable(path, 0) == 0);
    CHECK(store_update_run(st, id, &u) == LT_OK);
    CHECK(store_put_point(st, id, 1, "{}") == LT_OK);
    store_free(st);

    /* Read-only when the daemon starts: it opens and serves reads; writes answer UNAVAILABLE. */
    CHECK(set_db_immutable(path, 1) == 0);
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(store_get_run(st, id, &got) == LT_OK);
    CHECK(got.version == 2 && got.status == RUN_RUNNING);
    run_record_clear(&got);
    CHECK(points(st, id, -1, 10, &seen) == LT_OK);
    CHECK(seen.n == 2);
    CHECK(store_mark_interrupted(st, 1, &count) == LT_ERR_UNAVAILABLE);
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, NULL) == LT_ERR_UNAVAILABLE);
    store_free(st);
    st = NULL;

    CHECK(set_db_immutable(path, 0) == 0);
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(store_mark_interrupted(st, 1, &count) == LT_OK);
    CHECK(count == 1);
    CHECK(insert_run(st, "capacity", NULL, RUN_QUEUED, NULL, NULL) == LT_OK);
out:
    set_db_immutable(path, 0); /* or the files cannot be removed */
    store_free(st);
}

/* ---- concurrency --------------------------------------------------------------------------- */

#define WRITERS         4
#define READERS         4
#define RUNS_PER_WRITER 40

struct worker {
    pthread_t thread;
    struct store *st;
    int index;
    int errors;     /* calls that did not answer as expected */
    int deleted;    /* writers: runs deleted */
    long listed;    /* readers: runs seen */
    char what[128]; /* first error, for the report */
};

static atomic_int writers_done;

static void worker_error(struct worker *w, const char *what, lt_status res)
{
    if (w->errors++ == 0)
        snprintf(w->what, sizeof(w->what), "%s: %s", what, lt_status_code(res));
}

static void *writer_main(void *arg)
{
    struct worker *w = arg;
    char id[LT_ID_SIZE];
    char kind[16];
    struct run_update u;
    lt_status res;
    int i;

    snprintf(kind, sizeof(kind), "kind%d", w->index);
    for (i = 0; i < RUNS_PER_WRITER; i++) {
        if ((res = insert_run(w->st, kind, "conc", RUN_QUEUED, id, NULL)) != LT_OK) {
            worker_error(w, "insert", res);
            continue;
        }
        u = keep_all();
        u.status = RUN_RUNNING;
        u.only_if_status = RUN_QUEUED;
        u.started_at_ms = lt_now_ms();
        if ((res = store_update_run(w->st, id, &u)) != LT_OK)
            worker_error(w, "start", res);
        if ((res = store_put_point(w->st, id, 0, "{\"rps\":1}")) != LT_OK)
            worker_error(w, "point", res);
        if ((res = store_put_point(w->st, id, 1, "{\"rps\":2}")) != LT_OK)
            worker_error(w, "point", res);
        u = keep_all();
        u.status = RUN_PASSED;
        u.only_if_status = RUN_RUNNING;
        u.finished_at_ms = lt_now_ms();
        u.result_json = "{\"ok\":true}";
        if ((res = store_update_run(w->st, id, &u)) != LT_OK)
            worker_error(w, "finish", res);
        if (i % 4 == 3) {
            if ((res = store_delete_run(w->st, id)) != LT_OK)
                worker_error(w, "delete", res);
            else
                w->deleted++;
        }
    }
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

struct page_check {
    int64_t last_seq;
    int out_of_order;
    long n;
    char some_id[LT_ID_SIZE];
};

static int check_page_row(void *opaque, const struct run_record *r)
{
    struct page_check *p = opaque;

    if (p->last_seq != 0 && r->seq >= p->last_seq)
        p->out_of_order++;
    if (r->spec_json == NULL || r->id[0] == '\0')
        p->out_of_order++;
    p->last_seq = r->seq;
    memcpy(p->some_id, r->id, LT_ID_SIZE);
    p->n++;
    return 0;
}

static int count_point(void *opaque, int64_t t, const char *point_json)
{
    (void)t;
    (void)point_json;
    (*(int *)opaque)++;
    return 0;
}

static void *reader_main(void *arg)
{
    struct worker *w = arg;
    struct page_check pc;
    struct run_filter f;
    struct run_record got;
    int64_t counts[7];
    lt_status res;
    int more;
    int npoints;
    int rounds = 0;

    memset(&got, 0, sizeof(got));
    /* At least a few rounds even if the writers finish first. */
    while (atomic_load(&writers_done) < WRITERS || rounds < 3) {
        rounds++;
        /* Page through everything with the cursor. */
        memset(&pc, 0, sizeof(pc));
        f = any_run(7);
        if (w->index % 2 == 1)
            f.name = "conc";
        do {
            more = 0;
            if ((res = store_list_runs(w->st, &f, check_page_row, &pc, &more)) != LT_OK) {
                worker_error(w, "list", res);
                break;
            }
            f.before_seq = pc.last_seq;
        } while (more);
        if (pc.out_of_order != 0)
            worker_error(w, "list order", LT_ERR_INTERNAL);
        w->listed += pc.n;

        f = any_run(50);
        f.status = RUN_PASSED;
        f.kind = w->index % 2 == 0 ? "kind0" : "kind3";
        memset(&pc, 0, sizeof(pc));
        if ((res = store_list_runs(w->st, &f, check_page_row, &pc, &more)) != LT_OK)
            worker_error(w, "list passed", res);

        if (pc.n > 0) {
            /* It may be deleted meanwhile; anything but OK / NOT_FOUND is an error. */
            res = store_get_run(w->st, pc.some_id, &got);
            if (res == LT_OK && got.status != RUN_PASSED)
                worker_error(w, "get status", LT_ERR_INTERNAL);
            else if (res != LT_OK && res != LT_ERR_NOT_FOUND)
                worker_error(w, "get", res);
            run_record_clear(&got);
            npoints = 0;
            res = store_list_points(w->st, pc.some_id, -1, 10, count_point, &npoints);
            if (res == LT_OK && npoints != 2)
                worker_error(w, "points of a passed run", LT_ERR_INTERNAL);
            else if (res != LT_OK && res != LT_ERR_NOT_FOUND)
                worker_error(w, "points", res);
        }
        if ((res = store_count_by_status(w->st, counts)) != LT_OK)
            worker_error(w, "count", res);
    }
    return NULL;
}

static void test_concurrency(void)
{
    char path[512];
    struct store *st;
    struct worker writers[WRITERS];
    struct worker readers[READERS];
    int64_t counts[7];
    int deleted = 0;
    int started_w = 0;
    int started_r = 0;
    int i;

    db_path(path, sizeof(path), "concurrency.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    atomic_store(&writers_done, 0);
    memset(writers, 0, sizeof(writers));
    memset(readers, 0, sizeof(readers));
    for (i = 0; i < READERS; i++) {
        readers[i].st = st;
        readers[i].index = i;
        if (pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]) == 0)
            started_r++;
        else
            break;
    }
    for (i = 0; i < WRITERS; i++) {
        writers[i].st = st;
        writers[i].index = i;
        if (pthread_create(&writers[i].thread, NULL, writer_main, &writers[i]) == 0)
            started_w++;
        else
            break;
    }
    if (started_w < WRITERS) /* let the readers finish anyway */
        atomic_fetch_add(&writers_done, WRITERS - started_w);
    for (i = 0; i < started_w; i++)
        pthread_join(writers[i].thread, NULL);
    for (i = 0; i < started_r; i++)
        pthread_join(readers[i].thread, NULL);
    CHECK(started_w == WRITERS && started_r == READERS);

    for (i = 0; i < WRITERS; i++) {
        CHECK(writers[i].errors == 0);
        if (writers[i].errors != 0)
            fprintf(stderr, "  writer %d: %d errors, first %s\n", i, writers[i].errors,
                    writers[i].what);
        deleted += writers[i].deleted;
    }
    for (i = 0; i < READERS; i++) {
        CHECK(readers[i].errors == 0);
        CHECK(readers[i].listed > 0);
        if (readers[i].errors != 0)
            fprintf(stderr, "  reader %d: %d errors, first %s\n", i, readers[i].errors,
                    readers[i].what);
    }
    CHECK(deleted == WRITERS * (RUNS_PER_WRITER / 4));
    CHECK(store_count_by_status(st, counts) == LT_OK);
    CHECK(counts[RUN_PASSED] == WRITERS * RUNS_PER_WRITER - deleted);
    CHECK(counts[RUN_QUEUED] == 0 && counts[RUN_RUNNING] == 0);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM points") ==
          2 * (WRITERS * RUNS_PER_WRITER - deleted));
    store_free(st);
}

/* ---- presets (schema v3) ------------------------------------------------------------------- */

/* A database as loadtestd wrote it at schema version 2 (migrations 1 and 2 verbatim). */
static const char v2_schema[] =
    "CREATE TABLE runs ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL,"
    " kind TEXT NOT NULL,"
    " name TEXT,"
    " status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed', 'error',"
    "  'cancelled', 'interrupted')),"
    " created_at_ms INTEGER,"
    " started_at_ms INTEGER,"
    " finished_at_ms INTEGER,"
    " spec_json TEXT NOT NULL,"
    " progress_json TEXT,"
    " result_json TEXT,"
    " verdict_json TEXT,"
    " error_json TEXT,"
    " version INTEGER NOT NULL DEFAULT 1"
    ");"
    "CREATE INDEX runs_kind ON runs(kind);"
    "CREATE INDEX runs_status ON runs(status);"
    "CREATE INDEX runs_name ON runs(name);"
    "CREATE TABLE points ("
    " run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    " t INTEGER NOT NULL CHECK (t >= 0),"
    " point_json TEXT NOT NULL,"
    " PRIMARY KEY (run_id, t)"
    ") WITHOUT ROWID;"
    "ALTER TABLE runs ADD COLUMN idempotency_key TEXT;"
    "CREATE UNIQUE INDEX runs_idempotency_key ON runs(idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "INSERT INTO runs (id, kind, name, status, created_at_ms, spec_json, result_json)"
    " VALUES ('r000000000001aaaaaaaa', 'capacity', 'old', 'passed', 5, '{\"kind\":\"capacity\"}',"
    " '{\"requests\":1}');"
    "PRAGMA user_version = 2;";

static void test_migrate_from_v2(void)
{
    char path[512];
    struct store *st;
    struct run_record r;
    struct run_filter f = any_run(10);
    struct seen_runs seen = {0};
    int more = 0;

    memset(&r, 0, sizeof(r));
    db_path(path, sizeof(path), "v2.db");
    REQUIRE(raw_exec(path, v2_schema) == SQLITE_OK);
    REQUIRE(raw_int(path, "PRAGMA user_version") == 2);
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
                        "'presets'") == 1);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = "
                        "'runs_preset'") == 1);
    /* The old run is intact and has no preset. */
    CHECK(store_get_run(st, "r000000000001aaaaaaaa", &r) == LT_OK);
    CHECK_STR(r.name, "old");
    CHECK_STR(r.result_json, "{\"requests\":1}");
    CHECK(r.status == RUN_PASSED);
    CHECK(r.preset == NULL);
    run_record_clear(&r);
    f.preset = "old";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0 && more == 0);
    store_free(st);
    /* Opening again migrates nothing. */
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(raw_int(path, "PRAGMA user_version") == 3);
    store_free(st);
}

struct seen_presets {
    int n;
    int stop_after;
    char name[MAX_SEEN][PRESET_NAME_SIZE];
    char spec[MAX_SEEN][128];
};

static int collect_preset(void *opaque, const struct preset_record *p)
{
    struct seen_presets *s = opaque;

    if (s->n < MAX_SEEN) {
        snprintf(s->name[s->n], sizeof(s->name[0]), "%s", p->name);
        snprintf(s->spec[s->n], sizeof(s->spec[0]), "%s", p->spec_json);
    }
    s->n++;
    return s->stop_after != 0 && s->n >= s->stop_after;
}

static lt_status put_preset(struct store *st, const char *name, const char *spec, int64_t now,
                            int *created, struct preset_record *out)
{
    struct preset_record p;
    lt_status res;

    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "%s", name);
    p.spec_json = strdup(spec);
    p.updated_at_ms = now;
    res = store_put_preset(st, &p, created);
    if (out != NULL) {
        *out = p;
        return res;
    }
    preset_record_clear(&p);
    return res;
}

static void test_presets_crud(void)
{
    char path[512];
    struct store *st;
    struct preset_record p, got;
    struct seen_presets seen;
    int created = -1, more = -1;
    char long_name[PRESET_NAME_MAX + 2];

    memset(&got, 0, sizeof(got));
    db_path(path, sizeof(path), "presets.db");
    st = open_ok(path);
    REQUIRE(st != NULL);

    /* Names: 1..63 of [A-Za-z0-9_-]. */
    CHECK(preset_name_ok("a") && preset_name_ok("Smoke_test-2"));
    memset(long_name, 'x', sizeof(long_name));
    long_name[PRESET_NAME_MAX] = '\0';
    CHECK(preset_name_ok(long_name));
    long_name[PRESET_NAME_MAX] = 'x';
    long_name[PRESET_NAME_MAX + 1] = '\0';
    CHECK(!preset_name_ok(long_name));
    CHECK(!preset_name_ok("") && !preset_name_ok("a b") && !preset_name_ok("a/b") &&
          !preset_name_ok("é") && !preset_name_ok(NULL));
    CHECK(put_preset(st, "a b", "{}", 1, &created, NULL) == LT_ERR_INTERNAL);

    /* Create, then replace: created_at stays, version and updated_at move. */
    CHECK(put_preset(st, "smoke", "{\"kind\":\"capacity\",\"secret\":\"s3\"}", 1000, &created,
                     &p) == LT_OK);
    CHECK(created == 1 && p.version == 1 && p.created_at_ms == 1000);
    preset_record_clear(&p);
    CHECK(store_get_preset(st, "smoke", &got) == LT_OK);
    CHECK_STR(got.name, "smoke");
    CHECK_STR(got.spec_json, "{\"kind\":\"capacity\",\"secret\":\"s3\"}"); /* real secrets kept */
    CHECK(got.created_at_ms == 1000 && got.updated_at_ms == 1000 && got.version == 1);
    preset_record_clear(&got);
    CHECK(put_preset(st, "smoke", "{\"kind\":\"generate\"}", 2000, &created, &p) == LT_OK);
    CHECK(created == 0 && p.version == 2 && p.created_at_ms == 1000);
    preset_record_clear(&p);
    CHECK(store_get_preset(st, "smoke", &got) == LT_OK);
    CHECK_STR(got.spec_json, "{\"kind\":\"generate\"}");
    CHECK(got.created_at_ms == 1000 && got.updated_at_ms == 2000 && got.version == 2);
    preset_record_clear(&got);
    CHECK(store_get_preset(st, "Smoke", &got) == LT_ERR_NOT_FOUND); /* case matters */

    /* List: by name, bytewise ("B" < "a"), paged with the last name as cursor. */
    CHECK(put_preset(st, "b", "{\"n\":\"b\"}", 3000, &created, NULL) == LT_OK && created);
    CHECK(put_preset(st, "B", "{\"n\":\"B\"}", 3000, &created, NULL) == LT_OK && created);
    CHECK(put_preset(st, "a", "{\"n\":\"a\"}", 3000, &created, NULL) == LT_OK && created);
    memset(&seen, 0, sizeof(seen));
    CHECK(store_list_presets(st, NULL, 1000, collect_preset, &seen, &more) == LT_OK);
    CHECK(seen.n == 4 && more == 0);
    CHECK_STR(seen.name[0], "B");
    CHECK_STR(seen.name[1], "a");
    CHECK_STR(seen.name[2], "b");
    CHECK_STR(seen.name[3], "smoke");
    CHECK_STR(seen.spec[1], "{\"n\":\"a\"}");
    memset(&seen, 0, sizeof(seen));
    CHECK(store_list_presets(st, "", 2, collect_preset, &seen, &more) == LT_OK);
    CHECK(seen.n == 2 && more == 1);
    CHECK_STR(seen.name[1], "a");
    memset(&seen, 0, sizeof(seen));
    CHECK(store_list_presets(st, "a", 2, collect_preset, &seen, &more) == LT_OK);
    CHECK(seen.n == 2 && more == 0);
    CHECK_STR(seen.name[0], "b");
    CHECK_STR(seen.name[1], "smoke");
    memset(&seen, 0, sizeof(seen));
    seen.stop_after = 1;
    CHECK(store_list_presets(st, NULL, 10, collect_preset, &seen, &more) == LT_OK);
    CHECK(seen.n == 1 && more == 1);
    CHECK(store_list_presets(st, NULL, 0, collect_preset, &seen, &more) == LT_ERR_INTERNAL);
    CHECK(store_list_presets(st, NULL, 1001, collect_preset, &seen, &more) == LT_ERR_INTERNAL);

    /* Delete. */
    CHECK(store_delete_preset(st, "smoke") == LT_OK);
    CHECK(store_get_preset(st, "smoke", &got) == LT_ERR_NOT_FOUND);
    CHECK(store_delete_preset(st, "smoke") == LT_ERR_NOT_FOUND);
    CHECK(raw_int(path, "SELECT COUNT(*) FROM presets") == 3);

    /* Presets survive a reopen. */
    store_free(st);
    st = open_ok(path);
    REQUIRE(st != NULL);
    CHECK(store_get_preset(st, "a", &got) == LT_OK && got.version == 1);
    preset_record_clear(&got);
    store_free(st);
}

static void test_preset_filter(void)
{
    char path[512];
    struct store *st;
    struct run_record r, got;
    struct run_filter f = any_run(10);
    struct seen_runs seen = {0};
    char ids[4][LT_ID_SIZE];
    static const char *const presets[] = {"smoke", "smoke", NULL, "soak"};
    int more = 0;

    memset(&got, 0, sizeof(got));
    db_path(path, sizeof(path), "preset_filter.db");
    st = open_ok(path);
    REQUIRE(st != NULL);
    for (int i = 0; i < 4; i++) {
        memset(&r, 0, sizeof(r));
        lt_new_run_id(r.id);
        r.id[LT_ID_LEN - 1] = (char)('0' + i); /* distinct even within one millisecond */
        snprintf(r.kind, sizeof(r.kind), "capacity");
        r.name = (char *)"same-name";
        r.preset = (char *)presets[i];
        r.status = i == 1 ? RUN_FAILED : RUN_PASSED;
        r.created_at_ms = 1;
        r.spec_json = (char *)"{}";
        REQUIRE(store_insert_run(st, &r) == LT_OK);
        memcpy(ids[i], r.id, LT_ID_SIZE);
    }
    CHECK(store_get_run(st, ids[0], &got) == LT_OK);
    CHECK_STR(got.preset, "smoke");
    run_record_clear(&got);
    CHECK(store_get_run(st, ids[2], &got) == LT_OK);
    CHECK(got.preset == NULL);
    run_record_clear(&got);

    f.preset = "smoke";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 2 && more == 0);
    CHECK_STR(seen.id[0], ids[1]); /* newest first */
    CHECK_STR(seen.id[1], ids[0]);
    f.status = RUN_PASSED; /* combined with other filters: "the last passed run of smoke" */
    f.limit = 1;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 1 && more == 0);
    CHECK_STR(seen.id[0], ids[0]);
    f.kind = "capacity";
    f.name = "same-name";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 1);
    f.kind = "generate";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0);
    f = any_run(10);
    f.preset = "soak";
    f.before_seq = 1; /* the cursor applies too */
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0);
    f.before_seq = 0;
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 1);
    CHECK_STR(seen.id[0], ids[3]);
    f.preset = "nope";
    CHECK(list(st, &f, &seen, &more) == LT_OK);
    CHECK(seen.n == 0);
    store_free(st);
}

/* Removes the files the tests left in tmpdir, then tmpdir. */
static void cleanup(void)
{
    static const char *const names[] = {
        "schema.db",      "roundtrip.db",   "list.db",        "paging.db",   "update.db",
        "delete.db",      "points.db",      "interrupted.db", "count.db",    "reopen.db",
        "future.db",      "halfway.db",     "full.db",        "readonly.db", "locked.db",
        "concurrency.db", "idempotency.db", "v2.db",          "presets.db",  "preset_filter.db",
    };
    char path[512];
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        db_path(path, sizeof(path), names[i]);
    rmdir(tmpdir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    int rc;

    snprintf(tmpdir, sizeof(tmpdir), "%s/test_store.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    lt_log_set_quiet(1);

    RUN(test_status_names);
    RUN(test_open_creates_schema);
    RUN(test_insert_get_roundtrip);
    RUN(test_list_order_and_filters);
    RUN(test_list_paging);
    RUN(test_update_semantics);
    RUN(test_delete);
    RUN(test_points);
    RUN(test_mark_interrupted);
    RUN(test_count_by_status);
    RUN(test_reopen_keeps_everything);
    RUN(test_future_schema_refused);
    RUN(test_failed_migration_rolls_back);
    RUN(test_disk_full_then_recovers);
    RUN(test_locked_database_then_recovers);
    RUN(test_read_only_file_then_recovers);
    RUN(test_concurrency);
    RUN(test_idempotency_keys);
    RUN(test_migrate_from_v2);
    RUN(test_presets_crud);
    RUN(test_preset_filter);

    rc = harness_report();
    cleanup();
    return rc;
}
