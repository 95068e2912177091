/*
 * pgcopy: the PostgreSQL plumbing of the generate runner.
 *
 * Two independent halves:
 *   - the binary COPY encoding ("COPY ... FROM STDIN (FORMAT binary)"): a growable byte buffer
 *     and one put function per wire type the runner sends (int8, text, text[], timestamptz,
 *     pgvector's vector, float4[]). Pure functions, no libpq; the layouts are those of
 *     PostgreSQL's *_recv functions (array_recv, int8recv, timestamptz_recv, textrecv) and of
 *     pgvector's vector_recv (int16 dim, int16 unused = 0, dim float4), all big-endian.
 *   - cancellable libpq calls: connect, run a statement, stream COPY data. Each waits on the
 *     connection's socket at most 100 ms at a time and consults a stop condition in between, so
 *     the thread that owns the connection can give up within a second (sending a cancel request
 *     and, if the server still does not answer, abandoning the connection). They never touch
 *     a connection from another thread: the caller's thread owns it.
 *
 * Ownership: the buffer owns its bytes (pgc_buf_free); connections are the caller's; results
 * returned are new (caller PQclear()s them).
 */
#ifndef LT_PGCOPY_H
#define LT_PGCOPY_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* OIDs of the element types of the arrays sent (pg_type.h; stable since forever). */
#define PGC_TEXTOID   25
#define PGC_FLOAT4OID 700

/* Growable byte buffer. On allocation failure it becomes failed: later puts are no-ops and
 * `failed` stays set, so a caller checks once per row rather than after every field. */
struct pgc_buf {
    unsigned char *data; /* owned */
    size_t len;
    size_t cap;
    int failed;
};

/* Allocates cap bytes. Returns 0, or -1 (out of memory; b is then failed). */
int pgc_buf_init(struct pgc_buf *b, size_t cap);
void pgc_buf_free(struct pgc_buf *b);
/* Forgets the contents, keeps the allocation. */
void pgc_buf_reset(struct pgc_buf *b);

/* The 19-byte file header (signature, flags 0, no extension area) and the trailer (-1). */
void pgc_put_header(struct pgc_buf *b);
void pgc_put_trailer(struct pgc_buf *b);
/* Starts a tuple of nfields fields; each field is then one put below. */
void pgc_put_tuple(struct pgc_buf *b, int nfields);
void pgc_put_null(struct pgc_buf *b);
void pgc_put_int8(struct pgc_buf *b, int64_t v);
void pgc_put_text(struct pgc_buf *b, const char *s, size_t len);
/* One-dimensional text[] without NULLs; elems[k] has lens[k] bytes. */
void pgc_put_text_array(struct pgc_buf *b, const char *const *elems, const size_t *lens, int n);
/* timestamptz as int64 microseconds since 2000-01-01 00:00:00 UTC (integer datetimes). */
void pgc_put_timestamptz(struct pgc_buf *b, int64_t us_since_2000);
/* pgvector vector(dim): int16 dim, int16 0, dim float4. dim in 1..16000. */
void pgc_put_vector(struct pgc_buf *b, const float *x, int dim);
/* real[] (float4[]), one dimension, lower bound 1, no NULLs. */
void pgc_put_float4_array(struct pgc_buf *b, const float *x, int dim);

/* Bytes pgc_put_vector / pgc_put_float4_array add for dim elements (field length included). */
size_t pgc_vector_size(int dim);
size_t pgc_float4_array_size(int dim);

/* ---- cancellable libpq calls ---- */

/* How a wait behaves. All callbacks run on the calling thread. */
struct pgc_waiter {
    int (*should_stop)(void *arg); /* non-zero: the caller wants out */
    void (*tick)(void *arg);       /* called at least every 100 ms while waiting; may be NULL */
    void *arg;
    int cancel_after_ms; /* once stopping: send a cancel request after this long (0 = at once) */
    int give_up_ms;      /* once stopping: abandon the connection after this long */
};

typedef enum pgc_rc {
    PGC_OK = 0,
    PGC_STOPPED,   /* should_stop said so and the connection was abandoned mid-way: close it */
    PGC_TIMEOUT,   /* connect: the deadline passed */
    PGC_CONN_ERROR /* libpq reported a connection-level failure (PQerrorMessage says why) */
} pgc_rc;

/* Starts a connection with PQconnectStartParams(keywords, values, expand_dbname = 0) and drives
 * it to completion, failing after timeout_ms or when stopping. Always sets *out (NULL only when
 * libpq could not allocate): the caller PQfinish()es it, whatever the result, and may read
 * PQerrorMessage from it. On PGC_OK the connection is in nonblocking mode. */
pgc_rc pgc_connect(const char *const *keywords, const char *const *values, int timeout_ms,
                   const struct pgc_waiter *w, PGconn **out);

/* Sends sql (with nparams text parameters, may be 0) and collects its results. *res gets the
 * first result that is not PGRES_COMMAND_OK/TUPLES_OK (an error), else the last one, or the
 * PGRES_COPY_IN result when the statement starts a COPY FROM STDIN (the caller then streams with
 * pgc_copy_put / pgc_copy_end). Returns PGC_OK when the server answered (even with an error:
 * check *res), PGC_STOPPED (abandoned: *res NULL), PGC_CONN_ERROR (*res may hold the error). */
pgc_rc pgc_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                const struct pgc_waiter *w, PGresult **res);

/* Queues len bytes of COPY data and flushes them to the socket (so at most one chunk is ever
 * buffered inside libpq). Returns PGC_OK, PGC_STOPPED (stop seen: nothing more was sent, the
 * caller aborts the COPY with pgc_copy_end(conn, "reason", ...)) or PGC_CONN_ERROR. */
pgc_rc pgc_copy_put(PGconn *conn, const void *data, size_t len, const struct pgc_waiter *w);

/* Ends the COPY (errmsg NULL: commit it; else abort it with that message) and collects the
 * results like pgc_exec. Same as pgc_copy_send_end then pgc_result. */
pgc_rc pgc_copy_end(PGconn *conn, const char *errmsg, const struct pgc_waiter *w, PGresult **res);

/* The two halves of pgc_copy_end, for a caller with work to do while the server finishes:
 * sends the end of the COPY (flushed), then collects the results like pgc_exec. */
pgc_rc pgc_copy_send_end(PGconn *conn, const char *errmsg, const struct pgc_waiter *w);
pgc_rc pgc_result(PGconn *conn, const struct pgc_waiter *w, PGresult **res);

/* Never waits: reads what the server has sent and returns 1 when pgc_result would not have to
 * wait (a result is complete, or the connection failed), else 0. */
int pgc_result_ready(PGconn *conn);

#endif
