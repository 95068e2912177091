/*
 * store: durable state of loadtestd — runs, their per-second points and the presets (named
 * specs) runs are started from.
 *
 * The interface is backend-neutral: documents travel as JSON text, so a PostgreSQL backend can
 * implement the same functions for a fleet of daemons. The SQLite backend (store_sqlite.c) keeps
 * the database in WAL mode with a busy timeout and synchronous=FULL, so every call that changes
 * state has committed durably when it returns LT_OK; callers answer clients or report state only
 * after that.
 *
 * Threads: a struct store may be used from any number of threads at once; it serialises writers
 * on one connection and readers on another (each guarded by its own mutex), so each sqlite3*
 * belongs to one thread at a time.
 *
 * Errors: LT_ERR_NOT_FOUND for an unknown id, LT_ERR_CONFLICT when a conditional update's
 * precondition fails, LT_ERR_UNAVAILABLE when the database cannot be written (disk full,
 * read-only file, locked for longer than the busy timeout), LT_ERR_IO for anything else.
 * A failed call leaves stored state unchanged (each call is one transaction). An argument that
 * breaks this contract (NULL store, limit out of range, unknown status value) is a caller bug:
 * LT_ERR_INTERNAL, logged.
 */
#ifndef LT_STORE_H
#define LT_STORE_H

#include <stdint.h>

#include "lt_status.h"
#include "lt_util.h"

struct store;

enum run_status {
    RUN_QUEUED = 0,
    RUN_RUNNING,
    RUN_PASSED,
    RUN_FAILED,
    RUN_ERROR,
    RUN_CANCELLED,
    RUN_INTERRUPTED,
};

/* "queued", "running", ... ; static string. */
const char *run_status_name(enum run_status s);
/* Parses a status name; returns -1 when unknown. */
int run_status_parse(const char *name);
/* 1 for passed/failed/error/cancelled/interrupted. */
int run_status_is_final(enum run_status s);

/* One run as stored. The char * members are JSON text (or NULL for JSON null) owned by the
 * record; run_record_clear frees them. */
struct run_record {
    char id[LT_ID_SIZE];
    int64_t seq;   /* insertion order, assigned by the store; newest has the largest */
    char kind[16]; /* "capacity", "ratelimit", "generate" */
    char *name;    /* plain text label or NULL */
    enum run_status status;
    int64_t created_at_ms;  /* wall clock ms; 0 = null */
    int64_t started_at_ms;  /* 0 = null */
    int64_t finished_at_ms; /* 0 = null */
    char *spec_json;     /* spec with defaults filled and secrets masked; never NULL when stored */
    char *progress_json; /* object or NULL */
    char *result_json;   /* object or NULL */
    char *verdict_json;  /* object or NULL */
    char *error_json;    /* {"code","message"} or NULL */
    int64_t version;     /* bumped by every change; the ETag is built from id and version */
    char *idempotency_key; /* Idempotency-Key of the creating POST, or NULL; written by
                              store_insert_run only (reads leave it NULL) */
    char *preset;          /* name of the preset the run was started from, or NULL */
};

/* Frees the strings of r and zeroes it. r may be NULL. */
void run_record_clear(struct run_record *r);

/* Filter and page for store_list_runs. NULL/0 members do not filter, except status: 0 is
 * RUN_QUEUED, so "any status" must be spelled -1. */
struct run_filter {
    const char *kind;
    int status; /* enum run_status, or -1 for any (not 0: that filters on queued) */
    const char *name;
    const char *preset; /* runs started from this preset */
    int64_t before_seq; /* only runs with seq < before_seq (the cursor); 0 = from the newest */
    int limit;          /* 1..1000 */
};

/* Opens (creating when missing) the database at path and migrates its schema to the current
 * version (PRAGMA user_version). Returns new; caller frees with store_free. On failure returns
 * NULL and writes a message (without secrets) into errbuf. */
struct store *store_open(const char *path, char *errbuf, size_t errlen);
void store_free(struct store *st);

/* Inserts r (status, created_at, spec_json, name, kind, id and optionally idempotency_key set by
 * the caller). Sets r->seq and r->version = 1. LT_ERR_CONFLICT when the id or the idempotency
 * key is already taken (nothing is stored). */
lt_status store_insert_run(struct store *st, struct run_record *r);

/* Fills out (caller clears it) with the run whose creating POST carried Idempotency-Key key.
 * LT_ERR_NOT_FOUND when there is none. */
lt_status store_find_idempotent(struct store *st, const char *key, struct run_record *out);

/* Fills out (caller clears it) with the run id. */
lt_status store_get_run(struct store *st, const char *id, struct run_record *out);

/* Calls fn for each run matching f, newest first (seq descending), at most f->limit; the record
 * passed to fn is borrowed for the call only. Sets *more to 1 when further runs match beyond the
 * page (when fn stops early: when some match was not shown to fn); more may be NULL. fn returns
 * non-zero to stop early. fn runs with the store's reader lock held: it must not call
 * store_get_run, store_get_preset, store_list_* or store_count_by_status (that would deadlock). */
lt_status store_list_runs(struct store *st, const struct run_filter *f,
                          int (*fn)(void *opaque, const struct run_record *r), void *opaque,
                          int *more);

/* The changes a state transition carries. Fields left NULL / 0 are not changed, except status and
 * only_if_status, where 0 is RUN_QUEUED: set both explicitly (-1 = keep / unconditional). A JSON
 * member cannot be set back to NULL. */
struct run_update {
    int status;             /* new status, or -1 to keep */
    int only_if_status;     /* apply only when the current status equals this, or -1 */
    int64_t started_at_ms;  /* 0 = keep */
    int64_t finished_at_ms; /* 0 = keep */
    const char *progress_json;
    const char *result_json;
    const char *verdict_json;
    const char *error_json;
};

/* Applies u to run id in one transaction and bumps version. LT_ERR_NOT_FOUND for an unknown
 * id; LT_ERR_CONFLICT when only_if_status does not match (nothing changed). */
lt_status store_update_run(struct store *st, const char *id, const struct run_update *u);

/* Deletes a run and its points. LT_ERR_CONFLICT when the run is queued or running. */
lt_status store_delete_run(struct store *st, const char *id);

/* Stores the point of second t (>= 0) of run id; point_json is an object. Replacing an existing
 * t is allowed (last write wins). LT_ERR_NOT_FOUND for an unknown id. Points are not part of the
 * run record: the run's version does not change. */
lt_status store_put_point(struct store *st, const char *id, int64_t t, const char *point_json);

/* Calls fn for each point of run id with t > since (-1 for all), in ascending t, at most limit
 * (>= 1) points; point_json is borrowed for the call only. LT_ERR_NOT_FOUND for an unknown id; a
 * run without points answers LT_OK and no call. Same locking rule for fn as store_list_runs. */
lt_status store_list_points(struct store *st, const char *id, int64_t since, int limit,
                            int (*fn)(void *opaque, int64_t t, const char *point_json),
                            void *opaque);

/* At start-up: every run left queued or running becomes interrupted (finished_at = now_ms,
 * error {"code":"interrupted", ...}); returns how many through *count. */
lt_status store_mark_interrupted(struct store *st, int64_t now_ms, int *count);

/* Counts runs by status into counts[7] (indexed by enum run_status). */
lt_status store_count_by_status(struct store *st, int64_t counts[7]);

/* ---- presets: named run specs ---- */

#define PRESET_NAME_MAX  63 /* a name is 1..63 characters of [A-Za-z0-9_-] (a URL path segment) */
#define PRESET_NAME_SIZE (PRESET_NAME_MAX + 1)

/* One preset as stored. spec_json is the spec as submitted (no defaults filled) with its real
 * secrets, so the preset can run: never hand it to a client unmasked. */
struct preset_record {
    char name[PRESET_NAME_SIZE];
    char *spec_json;       /* owned; never NULL when stored */
    int64_t created_at_ms; /* set by the store: the first put */
    int64_t updated_at_ms; /* set by the caller of store_put_preset: now */
    int64_t version;       /* 1 at creation, bumped by every replace; for the ETag */
};

/* Frees the strings of p and zeroes it. p may be NULL. */
void preset_record_clear(struct preset_record *p);

/* 1 when name is a valid preset name (1..PRESET_NAME_MAX of [A-Za-z0-9_-]). */
int preset_name_ok(const char *name);

/* Inserts or replaces preset p->name with p->spec_json, updated at p->updated_at_ms (a new one
 * is also created then). Sets p->created_at_ms and p->version to the stored values and *created
 * (may be NULL) to 1 when the preset did not exist. */
lt_status store_put_preset(struct store *st, struct preset_record *p, int *created);

/* Fills out (caller clears it) with preset name. LT_ERR_NOT_FOUND when there is none. */
lt_status store_get_preset(struct store *st, const char *name, struct preset_record *out);

/* Deletes preset name (runs started from it keep its name). LT_ERR_NOT_FOUND when unknown. */
lt_status store_delete_preset(struct store *st, const char *name);

/* Calls fn for each preset whose name sorts after `after` (NULL or "" = from the first), by
 * name ascending (bytewise), at most limit (1..1000); the record is borrowed for the call only.
 * *more (may be NULL) as for store_list_runs. Same locking rule for fn as store_list_runs. */
lt_status store_list_presets(struct store *st, const char *after, int limit,
                             int (*fn)(void *opaque, const struct preset_record *p), void *opaque,
                             int *more);

/* Test-only: sets the writer connection's PRAGMA max_page_count, so a unit test can make the
 * database "full" (SQLITE_FULL -> LT_ERR_UNAVAILABLE) and then give it room again. SQLite never
 * sets the limit below the current size; pages <= 0 restores the limit the store opened with.
 * Never call it outside tests. */
lt_status store_debug_set_max_pages(struct store *st, int pages);

#endif
