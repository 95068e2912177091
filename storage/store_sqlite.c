/*
 * store_sqlite: the SQLite backend of store.h — runs and their per-second points in one database
 * file, so a restarted daemon knows every run it ever accepted.
 *
 * DESIGN
 *   Connections. Two per store, each owned by whichever thread holds its mutex:
 *     - the writer (struct store.w) runs every call that changes state, one BEGIN IMMEDIATE ...
 *       COMMIT transaction per call, so a failed call leaves stored state unchanged;
 *     - the reader (struct store.r, PRAGMA query_only) runs the lookups and listings. In WAL mode
 *       a reader sees the last committed snapshot and never waits for the writer, so a long
 *       listing does not hold up a run's state transitions, and the other way round.
 *   Connections are opened with SQLITE_OPEN_NOMUTEX: SQLite's own per-connection mutex would
 *   only repeat what conn.lock already guarantees.
 *
 *   Durability. journal_mode=WAL with synchronous=FULL: the WAL is fsynced at every COMMIT, so
 *   when a mutating call returns LT_OK the change survives a crash or power loss. The service
 *   relies on that: it answers 201/200 to a client, or reports a run as passed, only after the
 *   store said so, and a run must not be lost after the client was told it exists. (synchronous
 *   =NORMAL would only risk the last transactions on power loss, but that is exactly the promise
 *   made to the client.) The cost — one fsync per state change — is small next to a load test.
 *
 *   Failures. Every call ends in conn_leave, which resets each cached statement and rolls back a
 *   transaction left open, so a failure (disk full, I/O error, busy past the 5 s timeout) never
 *   leaves a connection half-way: the next call starts clean and succeeds as soon as the disk has
 *   room again. Such failures map to LT_ERR_UNAVAILABLE (the API answers 503).
 *
 *   Schema. A static table of migrations, applied in order in one transaction at open;
 *   PRAGMA user_version records how many have been applied. A database written by a newer
 *   loadtestd (user_version beyond the table) is refused rather than guessed at.
 *
 *   Logs never carry SQL or bound values: only the operation, the run id, the SQLite result code
 *   and SQLite's message (which names constraints and columns, never values).
 */
#define _POSIX_C_SOURCE 200809L

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_BUSY_TIMEOUT_MS 5000

/* ---- schema -------------------------------------------------------------------------------- */

/* Migration i (0-based) brings the schema from user_version i to i + 1. Append only: never edit
 * an entry once released, since databases in the field have already applied it. */
static const char *const migrations[] = {
    /* 1: runs and their points. Each secondary index ends with the rowid (seq), so
     * "kind = ? AND seq < ? ORDER BY seq DESC" walks one index range backwards without a sort. */
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
    ") WITHOUT ROWID;",
    /* 2: Idempotency-Key of the POST that created the run: a retried POST finds its run. */
    "ALTER TABLE runs ADD COLUMN idempotency_key TEXT;"
    "CREATE UNIQUE INDEX runs_idempotency_key ON runs(idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;",
    /* 3: presets (named specs kept with their real secrets, so they can run) and the preset a
     * run was started from, indexed for "last passed run of this preset". */
    "CREATE TABLE presets ("
    " name TEXT PRIMARY KEY,"
    " spec_json TEXT NOT NULL,"
    " created_at_ms INTEGER NOT NULL,"
    " updated_at_ms INTEGER NOT NULL,"
    " version INTEGER NOT NULL DEFAULT 1"
    ") WITHOUT ROWID;"
    "ALTER TABLE runs ADD COLUMN preset TEXT;"
    "CREATE INDEX runs_preset ON runs(preset);",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- cached statements --------------------------------------------------------------------- */

/* Columns of a run row, in the order row_to_record reads them. */
#define RUN_COLUMNS                                                                                \
    "seq, id, kind, name, status, created_at_ms, started_at_ms, finished_at_ms, spec_json,"        \
    " progress_json, result_json, verdict_json, error_json, version, preset"

#define PRESET_COLUMNS "name, spec_json, created_at_ms, updated_at_ms, version"

enum stmt_id {
    S_BEGIN_IMMEDIATE,
    S_BEGIN,
    S_COMMIT,
    S_STATUS_OF,
    S_INSERT_RUN,
    S_UPDATE_RUN,
    S_DELETE_RUN,
    S_PUT_POINT,
    S_MARK_INTERRUPTED,
    S_GET_RUN,
    S_LIST_POINTS,
    S_COUNT_BY_STATUS,
    S_FIND_IDEMPOTENT,
    S_PRESET_VERSION,
    S_INSERT_PRESET,
    S_UPDATE_PRESET,
    S_GET_PRESET,
    S_DELETE_PRESET,
    S_LIST_PRESETS,
    /* S_LIST_RUNS + mask, mask bit 0 = kind, 1 = status, 2 = name, 3 = preset filter present. */
    S_LIST_RUNS,
    S_COUNT = S_LIST_RUNS + 16
};

#define LIST_BY_KIND   1
#define LIST_BY_STATUS 2
#define LIST_BY_NAME   4
#define LIST_BY_PRESET 8

/* SQL of every statement but the S_LIST_RUNS family, which list_runs_sql builds. */
static const char *const stmt_sql[S_LIST_RUNS] = {
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_BEGIN] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_STATUS_OF] = "SELECT status FROM runs WHERE id = ?1",
    [S_INSERT_RUN] = "INSERT INTO runs (id, kind, name, status, created_at_ms, started_at_ms,"
                     " finished_at_ms, spec_json, progress_json, result_json, verdict_json,"
                     " error_json, version, idempotency_key, preset)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?14)",
    /* NULL parameters keep the column: that is the "NULL / 0 = keep" rule of run_update. */
    [S_UPDATE_RUN] = "UPDATE runs SET status = COALESCE(?2, status),"
                     " started_at_ms = COALESCE(?3, started_at_ms),"
                     " finished_at_ms = COALESCE(?4, finished_at_ms),"
                     " progress_json = COALESCE(?5, progress_json),"
                     " result_json = COALESCE(?6, result_json),"
                     " verdict_json = COALESCE(?7, verdict_json),"
                     " error_json = COALESCE(?8, error_json),"
                     " version = version + 1"
                     " WHERE id = ?1",
    /* Points go with it: points.run_id is ON DELETE CASCADE and foreign_keys is on. */
    [S_DELETE_RUN] = "DELETE FROM runs WHERE id = ?1",
    [S_PUT_POINT] = "INSERT INTO points (run_id, t, point_json) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (run_id, t) DO UPDATE SET point_json = excluded.point_json",
    [S_MARK_INTERRUPTED] = "UPDATE runs SET status = 'interrupted', finished_at_ms = ?1,"
                           " error_json = ?2, version = version + 1"
                           " WHERE status IN ('queued', 'running')",
    [S_GET_RUN] = "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1",
    [S_LIST_POINTS] = "SELECT t, point_json FROM points WHERE run_id = ?1 AND t > ?2"
                      " ORDER BY t LIMIT ?3",
    [S_COUNT_BY_STATUS] = "SELECT status, COUNT(*) FROM runs GROUP BY status",
    [S_FIND_IDEMPOTENT] = "SELECT " RUN_COLUMNS " FROM runs WHERE idempotency_key = ?1",
    [S_PRESET_VERSION] = "SELECT version FROM presets WHERE name = ?1",
    [S_INSERT_PRESET] =
        "INSERT INTO presets (name, spec_json, created_at_ms, updated_at_ms, version)"
        " VALUES (?1, ?2, ?3, ?3, 1)",
    [S_UPDATE_PRESET] = "UPDATE presets SET spec_json = ?2, updated_at_ms = ?3,"
                        " version = version + 1 WHERE name = ?1",
    [S_GET_PRESET] = "SELECT " PRESET_COLUMNS " FROM presets WHERE name = ?1",
    [S_DELETE_PRESET] = "DELETE FROM presets WHERE name = ?1",
    /* Names sort bytewise (BINARY collation): the cursor is the last name of the page. */
    [S_LIST_PRESETS] = "SELECT " PRESET_COLUMNS " FROM presets WHERE name > ?1"
                       " ORDER BY name LIMIT ?2",
};

static const char interrupted_error_json[] =
    "{\"code\":\"interrupted\",\"message\":\"the daemon stopped while this run was queued or "
    "running\"}";

/* One sqlite3 connection and its statement cache; whoever holds lock owns both. */
struct conn {
    pthread_mutex_t lock;        /* guards: db, stmt */
    sqlite3 *db;                 /* NULL until opened */
    sqlite3_stmt *stmt[S_COUNT]; /* prepared lazily, finalized by store_free */
    int lock_ready;              /* lock was initialised (for store_free after a failed open) */
};

struct store {
    struct conn w;         /* writer: every mutating call */
    struct conn r;         /* reader: get, list, count */
    int default_max_pages; /* writer's max_page_count at open, for the test hook; under w.lock */
};

/* ---- run status names ---------------------------------------------------------------------- */

static const char *const status_names[] = {
    [RUN_QUEUED] = "queued",           [RUN_RUNNING] = "running", [RUN_PASSED] = "passed",
    [RUN_FAILED] = "failed",           [RUN_ERROR] = "error",     [RUN_CANCELLED] = "cancelled",
    [RUN_INTERRUPTED] = "interrupted",
};

#define STATUS_COUNT ((int)(sizeof(status_names) / sizeof(status_names[0])))

_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == 7,
               "store_count_by_status fills counts[7], one per enum run_status");

static int status_valid(int s)
{
    return s >= 0 && s < STATUS_COUNT;
}

const char *run_status_name(enum run_status s)
{
    if (!status_valid((int)s))
        return "unknown";
    return status_names[s];
}

int run_status_parse(const char *name)
{
    int i;

    if (name == NULL)
        return -1;
    for (i = 0; i < STATUS_COUNT; i++)
        if (strcmp(name, status_names[i]) == 0)
            return i;
    return -1;
}

int run_status_is_final(enum run_status s)
{
    return s == RUN_PASSED || s == RUN_FAILED || s == RUN_ERROR || s == RUN_CANCELLED ||
           s == RUN_INTERRUPTED;
}

void run_record_clear(struct run_record *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->spec_json);
    free(r->progress_json);
    free(r->result_json);
    free(r->verdict_json);
    free(r->error_json);
    free(r->idempotency_key);
    free(r->preset);
    memset(r, 0, sizeof(*r));
}

void preset_record_clear(struct preset_record *p)
{
    if (p == NULL)
        return;
    free(p->spec_json);
    memset(p, 0, sizeof(*p));
}

int preset_name_ok(const char *name)
{
    size_t n;

    if (name == NULL)
        return 0;
    n = strlen(name);
    if (n < 1 || n > PRESET_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- errors -------------------------------------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Maps an SQLite result code (primary or extended) to the store's statuses. */
static lt_status map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return LT_OK;
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
        return LT_ERR_UNAVAILABLE;
    case SQLITE_NOMEM:
        return LT_ERR_NOMEM;
    case SQLITE_CONSTRAINT:
        return LT_ERR_CONFLICT; /* e.g. inserting an id that already exists */
    default:
        return LT_ERR_IO;
    }
}

/* Logs a failed SQLite call on c and returns its status. Call it before conn_leave, which
 * resets the connection's error message. id may be NULL. */
static lt_status sql_fail(struct conn *c, const char *op, const char *id, int rc)
{
    lt_status res = map_rc(rc);

    if (res == LT_OK)
        res = LT_ERR_INTERNAL; /* a step that should have finished returned a row, or the like */
    lt_log(res == LT_ERR_CONFLICT ? "warn" : "error", "store_error",
           "op=%s run_id=%s sqlite_rc=%d sqlite_error=\"%s\" status=%s", op, id ? id : "-", rc,
           sqlite3_errmsg(c->db), lt_status_code(res));
    return res;
}

/* A caller broke the contract of store.h: a bug, reported as LT_ERR_INTERNAL. */
static lt_status bad_argument(const char *op, const char *what)
{
    lt_log("error", "store_bad_argument", "op=%s argument=%s", op, what);
    return LT_ERR_INTERNAL;
}

/* ---- connections --------------------------------------------------------------------------- */

static void list_runs_sql(int mask, char *buf, size_t len)
{
    snprintf(buf, len,
             "SELECT " RUN_COLUMNS " FROM runs WHERE seq < ?4%s%s%s%s"
             " ORDER BY seq DESC LIMIT ?5",
             (mask & LIST_BY_KIND) ? " AND kind = ?1" : "",
             (mask & LIST_BY_STATUS) ? " AND status = ?2" : "",
             (mask & LIST_BY_NAME) ? " AND name = ?3" : "",
             (mask & LIST_BY_PRESET) ? " AND preset = ?6" : "");
}

/* Sets *out to the cached statement id of c (borrowed), preparing it on first use. c->lock held.
 */
static int conn_stmt(struct conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    char sql[512];
    const char *text;
    int rc;

    if (c->stmt[id] == NULL) {
        if (id >= S_LIST_RUNS) {
            list_runs_sql((int)(id - S_LIST_RUNS), sql, sizeof(sql));
            text = sql;
        } else {
            text = stmt_sql[id];
        }
        rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            c->stmt[id] = NULL;
            return rc;
        }
    }
    *out = c->stmt[id];
    return SQLITE_OK;
}

/* Runs a statement that returns no rows (BEGIN, COMMIT, ...) and resets it. */
static int conn_exec(struct conn *c, enum stmt_id id)
{
    sqlite3_stmt *s = NULL;
    int rc;

    rc = conn_stmt(c, id, &s);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Ends a one-statement change: steps s (prepared and bound by the caller; rc is how that went)
 * to its end and commits the transaction. *changed (may be NULL) receives the rows s changed.
 * Returns SQLITE_OK or the first failure; the caller's conn_leave rolls back after one. */
static int step_commit(struct conn *c, sqlite3_stmt *s, int rc, int *changed)
{
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK) {
        if (changed != NULL)
            *changed = sqlite3_changes(c->db);
        sqlite3_reset(s);
        rc = conn_exec(c, S_COMMIT);
    }
    return rc;
}

static void conn_enter(struct conn *c)
{
    pthread_mutex_lock(&c->lock);
}

/* Leaves c ready for the next caller whatever happened: every cached statement is reset (no
 * read snapshot or half-run statement survives the call) and a transaction still open — after a
 * failure, or a reader's read transaction — is rolled back. Then releases c->lock. */
static void conn_leave(struct conn *c)
{
    int i;

    for (i = 0; i < S_COUNT; i++) {
        if (c->stmt[i] != NULL) {
            sqlite3_reset(c->stmt[i]);
            sqlite3_clear_bindings(c->stmt[i]);
        }
    }
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&c->lock);
}

/* Finalizes c's statements and closes its connection; c may be half-initialised. */
static void conn_close(struct conn *c)
{
    int i;
    int rc;

    for (i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(c->stmt[i]);
        c->stmt[i] = NULL;
    }
    if (c->db != NULL) {
        rc = sqlite3_close(c->db);
        if (rc != SQLITE_OK)
            lt_log("error", "store_close", "sqlite_rc=%d sqlite_error=\"%s\"", rc,
                   sqlite3_errstr(rc));
        c->db = NULL;
    }
    if (c->lock_ready) {
        pthread_mutex_destroy(&c->lock);
        c->lock_ready = 0;
    }
}

/* Runs a pragma that answers one row and copies its first column as text into out. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *s = NULL;
    const unsigned char *v;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        goto out;
    v = sqlite3_column_text(s, 0);
    snprintf(out, outlen, "%s", v ? (const char *)v : "");
    rc = SQLITE_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
    char buf[32];
    int rc;

    rc = pragma_text(db, sql, buf, sizeof(buf));
    if (rc == SQLITE_OK)
        *out = atoi(buf);
    return rc;
}

/* Opens c on path with the pragmas every connection needs. */
static int conn_open(struct conn *c, const char *path, int flags, char *errbuf, size_t errlen)
{
    int rc;

    rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot open database %s: %s", path,
                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        return rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK)
        set_err(errbuf, errlen, "cannot set busy timeout on %s: %s", path, sqlite3_errmsg(c->db));
    return rc;
}

/* Reads user_version into *version and refuses a schema newer than this code. */
static int schema_version(sqlite3 *db, const char *path, int *version, char *errbuf, size_t errlen)
{
    int rc;

    rc = pragma_int(db, "PRAGMA user_version", version);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot read the schema version of %s: %s", path,
                sqlite3_errmsg(db));
        return rc;
    }
    if (*version < 0 || *version > SCHEMA_VERSION) {
        set_err(errbuf, errlen,
                "database %s has schema version %d, newer than this loadtestd knows (%d); "
                "use the loadtestd that wrote it or another database file",
                path, *version, SCHEMA_VERSION);
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}

/* Applies the migrations the database lacks, all in one transaction so a failure leaves the
 * schema as it was. A current schema is recognised without taking the write lock, so opening
 * writes nothing (and a read-only file can still be opened to serve reads). Otherwise the version
 * is read again inside the transaction: two daemons starting on the same file cannot both
 * migrate. */
static int migrate(sqlite3 *db, const char *path, char *errbuf, size_t errlen)
{
    char sql[64];
    int version = 0;
    int rc;
    int i;

    rc = schema_version(db, path, &version, errbuf, errlen);
    if (rc != SQLITE_OK || version == SCHEMA_VERSION)
        return rc;
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot lock %s to migrate its schema: %s", path,
                sqlite3_errmsg(db));
        return rc;
    }
    rc = schema_version(db, path, &version, errbuf, errlen);
    if (rc != SQLITE_OK || version == SCHEMA_VERSION)
        goto out; /* the rollback below ends the transaction */
    for (i = version; i < SCHEMA_VERSION; i++) {
        rc = sqlite3_exec(db, migrations[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            set_err(errbuf, errlen, "schema migration %d of %s failed: %s", i + 1, path,
                    sqlite3_errmsg(db));
            goto out;
        }
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot commit the schema of %s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    lt_log("info", "store_migrated", "path=%s from_version=%d to_version=%d", path, version,
           SCHEMA_VERSION);
out:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int init_lock(struct conn *c, char *errbuf, size_t errlen)
{
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        set_err(errbuf, errlen, "cannot create a mutex");
        return -1;
    }
    c->lock_ready = 1;
    return 0;
}

struct store *store_open(const char *path, char *errbuf, size_t errlen)
{
    struct store *st = NULL;
    char mode[16];
    int on = 0;
    int rc;

    set_err(errbuf, errlen, "%s", "");
    if (path == NULL || path[0] == '\0') {
        set_err(errbuf, errlen, "no database path given");
        return NULL;
    }
    if (!sqlite3_threadsafe()) {
        /* Two connections used from many threads need SQLite's own global locks. */
        set_err(errbuf, errlen, "the SQLite library was built without thread support");
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        set_err(errbuf, errlen, "out of memory");
        return NULL;
    }
    if (init_lock(&st->w, errbuf, errlen) != 0 || init_lock(&st->r, errbuf, errlen) != 0)
        goto fail;

    /* The writer creates the file and the schema; the reader only opens what then exists. */
    rc = conn_open(&st->w, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, errbuf, errlen);
    if (rc != SQLITE_OK)
        goto fail;
    rc = pragma_text(st->w.db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (rc != SQLITE_OK || strcmp(mode, "wal") != 0) {
        set_err(errbuf, errlen, "cannot put %s in WAL mode: %s", path,
                rc != SQLITE_OK ? sqlite3_errmsg(st->w.db) : "the journal mode did not change");
        goto fail;
    }
    rc = sqlite3_exec(st->w.db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", NULL, NULL,
                      NULL);
    if (rc == SQLITE_OK)
        rc = pragma_int(st->w.db, "PRAGMA foreign_keys", &on);
    if (rc != SQLITE_OK || on != 1) {
        /* Without foreign keys, deleting a run would leave its points behind. */
        set_err(errbuf, errlen, "cannot configure %s: %s", path,
                rc != SQLITE_OK ? sqlite3_errmsg(st->w.db) : "foreign keys are not supported");
        goto fail;
    }
    rc = migrate(st->w.db, path, errbuf, errlen);
    if (rc != SQLITE_OK)
        goto fail;
    if (sqlite3_db_readonly(st->w.db, "main") == 1)
        lt_log("warn", "store_read_only",
               "path=%s msg=\"the database file is read-only: reads work, writes answer "
               "unavailable\"",
               path);
    rc = pragma_int(st->w.db, "PRAGMA max_page_count", &st->default_max_pages);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot read the page limit of %s: %s", path,
                sqlite3_errmsg(st->w.db));
        goto fail;
    }

    rc = conn_open(&st->r, path, SQLITE_OPEN_READWRITE, errbuf, errlen);
    if (rc != SQLITE_OK)
        goto fail;
    /* The reader opens read-write only because WAL readers write the -shm index; query_only
     * makes sure no statement on it ever changes the database. */
    rc = sqlite3_exec(st->r.db, "PRAGMA query_only = ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        set_err(errbuf, errlen, "cannot configure the reader of %s: %s", path,
                sqlite3_errmsg(st->r.db));
        goto fail;
    }
    return st;

fail:
    store_free(st);
    return NULL;
}

void store_free(struct store *st)
{
    if (st == NULL)
        return;
    /* Reader first: closing the last connection (the writer) checkpoints and removes the WAL. */
    conn_close(&st->r);
    conn_close(&st->w);
    free(st);
}

/* ---- binding and reading ------------------------------------------------------------------- */

/* Binds v, or SQL NULL when v is NULL. v is borrowed until the statement is reset. */
static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v == NULL)
        return sqlite3_bind_null(s, i);
    return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Binds a millisecond time; 0 means no time and binds SQL NULL. */
static int bind_ms(sqlite3_stmt *s, int i, int64_t ms)
{
    if (ms == 0)
        return sqlite3_bind_null(s, i);
    return sqlite3_bind_int64(s, i, ms);
}

/* Copies text column i into *out (returns new; caller frees), or NULL for SQL NULL. */
static lt_status column_dup(sqlite3_stmt *s, int i, char **out)
{
    const unsigned char *v;
    int n;

    *out = NULL;
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return LT_OK;
    v = sqlite3_column_text(s, i);
    if (v == NULL)
        return LT_ERR_NOMEM;
    n = sqlite3_column_bytes(s, i);
    *out = malloc((size_t)n + 1);
    if (*out == NULL)
        return LT_ERR_NOMEM;
    memcpy(*out, v, (size_t)n + 1);
    return LT_OK;
}

/* Fills r (zeroed by the caller) from the current row of a RUN_COLUMNS statement. On failure
 * r may hold some strings; the caller clears it. */
static lt_status row_to_record(sqlite3_stmt *s, struct run_record *r)
{
    const unsigned char *text;
    lt_status res;
    int status;

    r->seq = sqlite3_column_int64(s, 0);
    text = sqlite3_column_text(s, 1);
    snprintf(r->id, sizeof(r->id), "%s", text ? (const char *)text : "");
    text = sqlite3_column_text(s, 2);
    snprintf(r->kind, sizeof(r->kind), "%s", text ? (const char *)text : "");
    res = column_dup(s, 3, &r->name);
    if (res != LT_OK)
        return res;
    status = run_status_parse((const char *)sqlite3_column_text(s, 4));
    if (status < 0)
        return LT_ERR_IO; /* the CHECK constraint makes this a damaged file */
    r->status = (enum run_status)status;
    r->created_at_ms = sqlite3_column_int64(s, 5); /* NULL reads as 0, which means null */
    r->started_at_ms = sqlite3_column_int64(s, 6);
    r->finished_at_ms = sqlite3_column_int64(s, 7);
    if ((res = column_dup(s, 8, &r->spec_json)) != LT_OK ||
        (res = column_dup(s, 9, &r->progress_json)) != LT_OK ||
        (res = column_dup(s, 10, &r->result_json)) != LT_OK ||
        (res = column_dup(s, 11, &r->verdict_json)) != LT_OK ||
        (res = column_dup(s, 12, &r->error_json)) != LT_OK)
        return res;
    r->version = sqlite3_column_int64(s, 13);
    return column_dup(s, 14, &r->preset);
}

/* Looks up the status of run id on c inside the caller's transaction. Returns SQLITE_ROW with
 * *status set, SQLITE_DONE when there is no such run, or an error code. */
static int status_of(struct conn *c, const char *id, int *status)
{
    sqlite3_stmt *s = NULL;
    int rc;

    rc = conn_stmt(c, S_STATUS_OF, &s);
    if (rc != SQLITE_OK)
        return rc;
    rc = bind_text(s, 1, id);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *status = run_status_parse((const char *)sqlite3_column_text(s, 0));
        if (*status < 0)
            rc = SQLITE_CORRUPT;
    }
out:
    sqlite3_reset(s); /* so the COMMIT that follows has no statement in progress */
    return rc;
}

/* ---- mutating calls (writer) --------------------------------------------------------------- */

lt_status store_insert_run(struct store *st, struct run_record *r)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int64_t seq;
    int rc;

    if (st == NULL || r == NULL)
        return bad_argument("insert_run", "store or record");
    if (r->id[0] == '\0' || memchr(r->id, '\0', sizeof(r->id)) == NULL)
        return bad_argument("insert_run", "id");
    if (r->kind[0] == '\0' || memchr(r->kind, '\0', sizeof(r->kind)) == NULL)
        return bad_argument("insert_run", "kind");
    if (!status_valid((int)r->status))
        return bad_argument("insert_run", "status");
    if (r->spec_json == NULL)
        return bad_argument("insert_run", "spec_json");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_INSERT_RUN, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, r->id);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 2, r->kind);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 3, r->name);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 4, run_status_name(r->status));
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 5, r->created_at_ms);
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 6, r->started_at_ms);
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 7, r->finished_at_ms);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 8, r->spec_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 9, r->progress_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 10, r->result_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 11, r->verdict_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 12, r->error_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 13, r->idempotency_key);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 14, r->preset);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "insert_run", r->id, rc);
        goto out;
    }
    seq = sqlite3_last_insert_rowid(c->db);
    sqlite3_reset(s);
    rc = conn_exec(c, S_COMMIT);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "insert_run", r->id, rc);
        goto out;
    }
    r->seq = seq;
    r->version = 1;
out:
    conn_leave(c);
    return res;
}

lt_status store_update_run(struct store *st, const char *id, const struct run_update *u)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int cur = -1;
    int rc;

    if (st == NULL || id == NULL || u == NULL)
        return bad_argument("update_run", "store, id or update");
    if (u->status != -1 && !status_valid(u->status))
        return bad_argument("update_run", "status");
    if (u->only_if_status != -1 && !status_valid(u->only_if_status))
        return bad_argument("update_run", "only_if_status");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "update_run", id, rc);
        goto out;
    }
    /* Checked inside the write transaction, so the status cannot change before the UPDATE. */
    rc = status_of(c, id, &cur);
    if (rc == SQLITE_DONE) {
        res = LT_ERR_NOT_FOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        res = sql_fail(c, "update_run", id, rc);
        goto out;
    }
    if (u->only_if_status != -1 && cur != u->only_if_status) {
        res = LT_ERR_CONFLICT;
        goto out;
    }
    rc = conn_stmt(c, S_UPDATE_RUN, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, id);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 2, u->status == -1 ? NULL : run_status_name((enum run_status)u->status));
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 3, u->started_at_ms);
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 4, u->finished_at_ms);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 5, u->progress_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 6, u->result_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 7, u->verdict_json);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 8, u->error_json);
    rc = step_commit(c, s, rc, NULL);
    if (rc != SQLITE_OK)
        res = sql_fail(c, "update_run", id, rc);
out:
    conn_leave(c);
    return res;
}

lt_status store_delete_run(struct store *st, const char *id)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int cur = -1;
    int rc;

    if (st == NULL || id == NULL)
        return bad_argument("delete_run", "store or id");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "delete_run", id, rc);
        goto out;
    }
    rc = status_of(c, id, &cur);
    if (rc == SQLITE_DONE) {
        res = LT_ERR_NOT_FOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        res = sql_fail(c, "delete_run", id, rc);
        goto out;
    }
    if (cur == RUN_QUEUED || cur == RUN_RUNNING) {
        res = LT_ERR_CONFLICT; /* a worker still owns it; cancel first */
        goto out;
    }
    rc = conn_stmt(c, S_DELETE_RUN, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, id);
    rc = step_commit(c, s, rc, NULL);
    if (rc != SQLITE_OK)
        res = sql_fail(c, "delete_run", id, rc);
out:
    conn_leave(c);
    return res;
}

lt_status store_put_point(struct store *st, const char *id, int64_t t, const char *point_json)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int cur = -1;
    int rc;

    if (st == NULL || id == NULL || point_json == NULL)
        return bad_argument("put_point", "store, id or point");
    if (t < 0)
        return bad_argument("put_point", "t");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "put_point", id, rc);
        goto out;
    }
    /* Looked up rather than left to the foreign key, so an unknown run is NOT_FOUND and not a
     * constraint failure. */
    rc = status_of(c, id, &cur);
    if (rc == SQLITE_DONE) {
        res = LT_ERR_NOT_FOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        res = sql_fail(c, "put_point", id, rc);
        goto out;
    }
    rc = conn_stmt(c, S_PUT_POINT, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, t);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 3, point_json);
    rc = step_commit(c, s, rc, NULL);
    if (rc != SQLITE_OK)
        res = sql_fail(c, "put_point", id, rc);
out:
    conn_leave(c);
    return res;
}

lt_status store_mark_interrupted(struct store *st, int64_t now_ms, int *count)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int changed = 0;
    int rc;

    if (count != NULL)
        *count = 0;
    if (st == NULL)
        return bad_argument("mark_interrupted", "store");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_MARK_INTERRUPTED, &s);
    if (rc == SQLITE_OK)
        rc = bind_ms(s, 1, now_ms);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 2, interrupted_error_json);
    rc = step_commit(c, s, rc, &changed);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "mark_interrupted", NULL, rc);
        goto out;
    }
    if (count != NULL)
        *count = changed;
out:
    conn_leave(c);
    return res;
}

lt_status store_debug_set_max_pages(struct store *st, int pages)
{
    struct conn *c;
    char sql[64];
    lt_status res = LT_OK;
    int rc;

    if (st == NULL)
        return bad_argument("debug_set_max_pages", "store");
    c = &st->w;
    conn_enter(c);
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %d",
             pages > 0 ? pages : st->default_max_pages);
    rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        res = sql_fail(c, "debug_set_max_pages", NULL, rc);
    conn_leave(c);
    return res;
}

/* ---- reading calls (reader) ---------------------------------------------------------------- */

/* Reads the one run that statement sid (one text parameter, key) selects. */
static lt_status get_one(struct store *st, enum stmt_id sid, const char *op, const char *key,
                         struct run_record *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (st == NULL || key == NULL || out == NULL)
        return bad_argument(op, "store, key or record");

    c = &st->r;
    conn_enter(c);
    rc = conn_stmt(c, sid, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, key);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        res = LT_ERR_NOT_FOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        res = sql_fail(c, op, sid == S_GET_RUN ? key : NULL, rc);
        goto out;
    }
    res = row_to_record(s, out);
    if (res != LT_OK) {
        lt_log("error", "store_error", "op=%s status=%s", op, lt_status_code(res));
        run_record_clear(out);
    }
out:
    conn_leave(c);
    return res;
}

lt_status store_get_run(struct store *st, const char *id, struct run_record *out)
{
    return get_one(st, S_GET_RUN, "get_run", id, out);
}

lt_status store_find_idempotent(struct store *st, const char *key, struct run_record *out)
{
    return get_one(st, S_FIND_IDEMPOTENT, "find_idempotent", key, out);
}

lt_status store_list_runs(struct store *st, const struct run_filter *f,
                          int (*fn)(void *opaque, const struct run_record *r), void *opaque,
                          int *more)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    struct run_record rec;
    lt_status res = LT_OK;
    int mask = 0;
    int seen = 0;
    int rc;

    memset(&rec, 0, sizeof(rec));
    if (more != NULL)
        *more = 0;
    if (st == NULL || f == NULL || fn == NULL)
        return bad_argument("list_runs", "store, filter or callback");
    if (f->limit < 1 || f->limit > 1000)
        return bad_argument("list_runs", "limit");
    if (f->status != -1 && !status_valid(f->status))
        return bad_argument("list_runs", "status");
    if (f->before_seq < 0)
        return bad_argument("list_runs", "before_seq");
    if (f->kind != NULL)
        mask |= LIST_BY_KIND;
    if (f->status != -1)
        mask |= LIST_BY_STATUS;
    if (f->name != NULL)
        mask |= LIST_BY_NAME;
    if (f->preset != NULL)
        mask |= LIST_BY_PRESET;

    c = &st->r;
    conn_enter(c);
    rc = conn_stmt(c, (enum stmt_id)(S_LIST_RUNS + mask), &s);
    if (rc == SQLITE_OK && f->kind != NULL)
        rc = bind_text(s, 1, f->kind);
    if (rc == SQLITE_OK && f->status != -1)
        rc = bind_text(s, 2, run_status_name((enum run_status)f->status));
    if (rc == SQLITE_OK && f->name != NULL)
        rc = bind_text(s, 3, f->name);
    if (rc == SQLITE_OK && f->preset != NULL)
        rc = bind_text(s, 6, f->preset);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 4, f->before_seq > 0 ? f->before_seq : INT64_MAX);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 5, f->limit + 1); /* one extra row tells whether there is more */
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "list_runs", NULL, rc);
        goto out;
    }
    for (;;) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            res = sql_fail(c, "list_runs", NULL, rc);
            goto out;
        }
        if (seen == f->limit) {
            if (more != NULL)
                *more = 1;
            break;
        }
        res = row_to_record(s, &rec);
        if (res != LT_OK) {
            lt_log("error", "store_error", "op=list_runs status=%s", lt_status_code(res));
            goto out;
        }
        seen++;
        rc = fn(opaque, &rec);
        run_record_clear(&rec);
        if (rc != 0) {
            /* Stopped early: "more" says whether any match was not shown to fn. */
            if (more != NULL && sqlite3_step(s) == SQLITE_ROW)
                *more = 1;
            break;
        }
    }
out:
    run_record_clear(&rec);
    conn_leave(c);
    return res;
}

lt_status store_list_points(struct store *st, const char *id, int64_t since, int limit,
                            int (*fn)(void *opaque, int64_t t, const char *point_json),
                            void *opaque)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    const unsigned char *text;
    lt_status res = LT_OK;
    int cur = -1;
    int rc;

    if (st == NULL || id == NULL || fn == NULL)
        return bad_argument("list_points", "store, id or callback");
    if (limit < 1)
        return bad_argument("list_points", "limit");

    c = &st->r;
    conn_enter(c);
    /* One read transaction, so the run checked is the run whose points are listed; conn_leave
     * ends it. */
    rc = conn_exec(c, S_BEGIN);
    if (rc == SQLITE_OK) {
        rc = status_of(c, id, &cur);
        if (rc == SQLITE_DONE) {
            res = LT_ERR_NOT_FOUND;
            goto out;
        }
        if (rc == SQLITE_ROW)
            rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_LIST_POINTS, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, since);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 3, limit);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "list_points", id, rc);
        goto out;
    }
    for (;;) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            res = sql_fail(c, "list_points", id, rc);
            goto out;
        }
        text = sqlite3_column_text(s, 1);
        if (text == NULL) {
            res = LT_ERR_NOMEM; /* the column is NOT NULL */
            goto out;
        }
        /* text stays valid until the next step: the callback borrows it for its call only. */
        if (fn(opaque, sqlite3_column_int64(s, 0), (const char *)text) != 0)
            break;
    }
out:
    conn_leave(c);
    return res;
}

lt_status store_count_by_status(struct store *st, int64_t counts[7])
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int status;
    int rc;

    if (counts != NULL)
        memset(counts, 0, sizeof(int64_t) * STATUS_COUNT);
    if (st == NULL || counts == NULL)
        return bad_argument("count_by_status", "store or counts");

    c = &st->r;
    conn_enter(c);
    rc = conn_stmt(c, S_COUNT_BY_STATUS, &s);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "count_by_status", NULL, rc);
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        status = run_status_parse((const char *)sqlite3_column_text(s, 0));
        if (status >= 0)
            counts[status] = sqlite3_column_int64(s, 1);
    }
    if (rc != SQLITE_DONE) {
        memset(counts, 0, sizeof(int64_t) * STATUS_COUNT);
        res = sql_fail(c, "count_by_status", NULL, rc);
    }
out:
    conn_leave(c);
    return res;
}

/* ---- presets ------------------------------------------------------------------------------- */

/* Fills p (zeroed by the caller) from the current row of a PRESET_COLUMNS statement. */
static lt_status row_to_preset(sqlite3_stmt *s, struct preset_record *p)
{
    const unsigned char *text = sqlite3_column_text(s, 0);

    snprintf(p->name, sizeof(p->name), "%s", text ? (const char *)text : "");
    p->created_at_ms = sqlite3_column_int64(s, 2);
    p->updated_at_ms = sqlite3_column_int64(s, 3);
    p->version = sqlite3_column_int64(s, 4);
    return column_dup(s, 1, &p->spec_json);
}

lt_status store_put_preset(struct store *st, struct preset_record *p, int *created)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int exists = 0;
    int rc;

    if (created != NULL)
        *created = 0;
    if (st == NULL || p == NULL || p->spec_json == NULL)
        return bad_argument("put_preset", "store, preset or spec_json");
    if (!preset_name_ok(p->name))
        return bad_argument("put_preset", "name");

    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_PRESET_VERSION, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, p->name);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            exists = 1;
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
        sqlite3_reset(s);
    }
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, exists ? S_UPDATE_PRESET : S_INSERT_PRESET, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, p->name);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 2, p->spec_json);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 3, p->updated_at_ms);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
        sqlite3_reset(s);
    }
    /* Read back inside the transaction: created_at survives a replace. */
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_GET_PRESET, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, p->name);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            p->created_at_ms = sqlite3_column_int64(s, 2);
            p->version = sqlite3_column_int64(s, 4);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_INTERNAL; /* just written */
        }
        sqlite3_reset(s);
    }
    if (rc == SQLITE_OK)
        rc = conn_exec(c, S_COMMIT);
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "put_preset", NULL, rc);
        goto out;
    }
    if (created != NULL)
        *created = !exists;
out:
    conn_leave(c);
    return res;
}

lt_status store_delete_preset(struct store *st, const char *name)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int changed = 0;
    int rc;

    if (st == NULL || name == NULL)
        return bad_argument("delete_preset", "store or name");
    c = &st->w;
    conn_enter(c);
    rc = conn_exec(c, S_BEGIN_IMMEDIATE);
    if (rc == SQLITE_OK)
        rc = conn_stmt(c, S_DELETE_PRESET, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, name);
    rc = step_commit(c, s, rc, &changed);
    if (rc != SQLITE_OK)
        res = sql_fail(c, "delete_preset", NULL, rc);
    else if (changed == 0)
        res = LT_ERR_NOT_FOUND;
    conn_leave(c);
    return res;
}

lt_status store_get_preset(struct store *st, const char *name, struct preset_record *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    lt_status res = LT_OK;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (st == NULL || name == NULL || out == NULL)
        return bad_argument("get_preset", "store, name or record");
    c = &st->r;
    conn_enter(c);
    rc = conn_stmt(c, S_GET_PRESET, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, name);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        res = LT_ERR_NOT_FOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        res = sql_fail(c, "get_preset", NULL, rc);
        goto out;
    }
    res = row_to_preset(s, out);
    if (res != LT_OK)
        preset_record_clear(out);
out:
    conn_leave(c);
    return res;
}

lt_status store_list_presets(struct store *st, const char *after, int limit,
                             int (*fn)(void *opaque, const struct preset_record *p), void *opaque,
                             int *more)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    struct preset_record rec;
    lt_status res = LT_OK;
    int seen = 0;
    int rc;

    memset(&rec, 0, sizeof(rec));
    if (more != NULL)
        *more = 0;
    if (st == NULL || fn == NULL)
        return bad_argument("list_presets", "store or callback");
    if (limit < 1 || limit > 1000)
        return bad_argument("list_presets", "limit");
    c = &st->r;
    conn_enter(c);
    rc = conn_stmt(c, S_LIST_PRESETS, &s);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 1, after ? after : "");
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 2, limit + 1); /* one extra row tells whether there is more */
    if (rc != SQLITE_OK) {
        res = sql_fail(c, "list_presets", NULL, rc);
        goto out;
    }
    for (;;) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            res = sql_fail(c, "list_presets", NULL, rc);
            goto out;
        }
        if (seen == limit) {
            if (more != NULL)
                *more = 1;
            break;
        }
        res = row_to_preset(s, &rec);
        if (res != LT_OK)
            goto out;
        seen++;
        rc = fn(opaque, &rec);
        preset_record_clear(&rec);
        if (rc != 0) {
            if (more != NULL && sqlite3_step(s) == SQLITE_ROW)
                *more = 1;
            break;
        }
    }
out:
    preset_record_clear(&rec);
    conn_leave(c);
    return res;
}
