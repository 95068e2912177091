/*
 * pgcopy: binary COPY encoding and cancellable libpq calls for the generate runner; see
 * pgcopy.h. Threads: none of its own; every function runs on the thread that owns the
 * connection (or the buffer) it is given.
 */
#define _POSIX_C_SOURCE 200809L
#include "pgcopy.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- encoding ---- */

int pgc_buf_init(struct pgc_buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->data = malloc(cap ? cap : 1);
    if (b->data == NULL) {
        b->failed = 1;
        return -1;
    }
    b->cap = cap ? cap : 1;
    return 0;
}

void pgc_buf_free(struct pgc_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void pgc_buf_reset(struct pgc_buf *b)
{
    b->len = 0;
}

/* Makes room for n more bytes; returns the write position or NULL (buffer failed). */
static unsigned char *reserve(struct pgc_buf *b, size_t n)
{
    size_t cap;
    unsigned char *p;

    if (b->failed)
        return NULL;
    if (b->cap - b->len >= n)
        return b->data + b->len;
    cap = b->cap ? b->cap : 1024;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return NULL;
        }
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return NULL;
    }
    b->data = p;
    b->cap = cap;
    return b->data + b->len;
}

static unsigned char *w16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return p + 2;
}

static unsigned char *w32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *w64(unsigned char *p, uint64_t v)
{
    p = w32(p, (uint32_t)(v >> 32));
    return w32(p, (uint32_t)v);
}

static unsigned char *wf32(unsigned char *p, float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return w32(p, u);
}

void pgc_put_header(struct pgc_buf *b)
{
    static const unsigned char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    unsigned char *p = reserve(b, 19);

    if (p == NULL)
        return;
    memcpy(p, sig, sizeof(sig));
    p = w32(p + sizeof(sig), 0); /* flags: no OIDs */
    w32(p, 0);                   /* header extension length */
    b->len += 19;
}

void pgc_put_trailer(struct pgc_buf *b)
{
    unsigned char *p = reserve(b, 2);

    if (p == NULL)
        return;
    w16(p, 0xffff);
    b->len += 2;
}

void pgc_put_tuple(struct pgc_buf *b, int nfields)
{
    unsigned char *p = reserve(b, 2);

    if (p == NULL)
        return;
    w16(p, (uint16_t)nfields);
    b->len += 2;
}

void pgc_put_null(struct pgc_buf *b)
{
    unsigned char *p = reserve(b, 4);

    if (p == NULL)
        return;
    w32(p, 0xffffffffu);
    b->len += 4;
}

void pgc_put_int8(struct pgc_buf *b, int64_t v)
{
    unsigned char *p = reserve(b, 12);

    if (p == NULL)
        return;
    p = w32(p, 8);
    w64(p, (uint64_t)v);
    b->len += 12;
}

void pgc_put_text(struct pgc_buf *b, const char *s, size_t len)
{
    unsigned char *p = reserve(b, 4 + len);

    if (p == NULL)
        return;
    p = w32(p, (uint32_t)len);
    memcpy(p, s, len);
    b->len += 4 + len;
}

void pgc_put_text_array(struct pgc_buf *b, const char *const *elems, const size_t *lens, int n)
{
    size_t body = 20;
    unsigned char *p;

    for (int k = 0; k < n; k++)
        body += 4 + lens[k];
    p = reserve(b, 4 + body);
    if (p == NULL)
        return;
    p = w32(p, (uint32_t)body);
    p = w32(p, 1);           /* ndim */
    p = w32(p, 0);           /* has nulls */
    p = w32(p, PGC_TEXTOID); /* element type */
    p = w32(p, (uint32_t)n); /* dims[0] */
    p = w32(p, 1);           /* lower bound */
    for (int k = 0; k < n; k++) {
        p = w32(p, (uint32_t)lens[k]);
        memcpy(p, elems[k], lens[k]);
        p += lens[k];
    }
    b->len += 4 + body;
}

void pgc_put_timestamptz(struct pgc_buf *b, int64_t us_since_2000)
{
    pgc_put_int8(b, us_since_2000);
}

size_t pgc_vector_size(int dim)
{
    return 4 + 4 + 4 * (size_t)dim;
}

size_t pgc_float4_array_size(int dim)
{
    return 4 + 20 + 8 * (size_t)dim;
}

void pgc_put_vector(struct pgc_buf *b, const float *x, int dim)
{
    size_t n = pgc_vector_size(dim);
    unsigned char *p = reserve(b, n);

    if (p == NULL)
        return;
    p = w32(p, (uint32_t)(n - 4));
    p = w16(p, (uint16_t)dim);
    p = w16(p, 0); /* vector_recv insists on 0 ("unused") */
    /* The hot loop of a load (1536 floats a row): written so the compiler vectorises it. */
    for (int k = 0; k < dim; k++) {
        uint32_t u;
        memcpy(&u, &x[k], sizeof(u));
        u = __builtin_bswap32(u);
        memcpy(p + 4 * (size_t)k, &u, sizeof(u));
    }
    b->len += n;
}

void pgc_put_float4_array(struct pgc_buf *b, const float *x, int dim)
{
    size_t n = pgc_float4_array_size(dim);
    unsigned char *p = reserve(b, n);

    if (p == NULL)
        return;
    p = w32(p, (uint32_t)(n - 4));
    p = w32(p, 1);
    p = w32(p, 0);
    p = w32(p, PGC_FLOAT4OID);
    p = w32(p, (uint32_t)dim);
    p = w32(p, 1);
    for (int k = 0; k < dim; k++) {
        p = w32(p, 4);
        p = wf32(p, x[k]);
    }
    b->len += n;
}

/* ---- cancellable libpq calls ---- */

#define WAIT_SLICE_MS 100

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until conn's socket has one of events or timeout_ms pass. Returns the revents (0 on
 * timeout or EINTR), or -1 when there is no socket or poll fails. */
static int wait_socket(PGconn *conn, short events, int timeout_ms)
{
    struct pollfd pfd;
    int r;

    pfd.fd = PQsocket(conn);
    pfd.events = events;
    pfd.revents = 0;
    if (pfd.fd < 0)
        return -1;
    r = poll(&pfd, 1, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    if (r == 0)
        return 0;
    /* POLLERR/POLLHUP: let libpq find out what happened on its next read or write. */
    return pfd.revents ? pfd.revents : events;
}

/* Stop bookkeeping for one call. */
struct stopper {
    int64_t seen_ms; /* when should_stop first said yes; 0 = not yet */
    int cancel_sent;
};

static void send_cancel(PGconn *conn)
{
    char errbuf[256];
    PGcancel *k = PQgetCancel(conn);

    if (k == NULL)
        return;
    /* Opens a short connection to the server; the answer comes back on conn as an error
     * (SQLSTATE 57014) if a statement was running. Failure only means no cancel was sent. */
    (void)PQcancel(k, errbuf, (int)sizeof(errbuf));
    PQfreeCancel(k);
}

/* Ticks, notices a stop, sends the cancel request when due. Returns 1 when it is time to give
 * up on the connection. */
static int stop_check(PGconn *conn, const struct pgc_waiter *w, struct stopper *s)
{
    int64_t now;

    if (w == NULL)
        return 0;
    if (w->tick)
        w->tick(w->arg);
    if (s->seen_ms == 0) {
        if (w->should_stop == NULL || !w->should_stop(w->arg))
            return 0;
        s->seen_ms = mono_ms();
    }
    now = mono_ms();
    if (!s->cancel_sent && now - s->seen_ms >= w->cancel_after_ms) {
        send_cancel(conn);
        s->cancel_sent = 1;
    }
    return now - s->seen_ms >= w->give_up_ms;
}

pgc_rc pgc_connect(const char *const *keywords, const char *const *values, int timeout_ms,
                   const struct pgc_waiter *w, PGconn **out)
{
    PGconn *conn;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int64_t deadline = mono_ms() + timeout_ms;

    conn = PQconnectStartParams(keywords, values, 0);
    *out = conn;
    if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
        return PGC_CONN_ERROR;
    for (;;) {
        int64_t left;
        int r;

        if (st == PGRES_POLLING_OK)
            break;
        if (st == PGRES_POLLING_FAILED)
            return PGC_CONN_ERROR;
        if (w && w->tick)
            w->tick(w->arg);
        /* Nothing is committed while connecting: a stop abandons at once. */
        if (w && w->should_stop && w->should_stop(w->arg))
            return PGC_STOPPED;
        left = deadline - mono_ms();
        if (left <= 0)
            return PGC_TIMEOUT;
        r = wait_socket(conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                        left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS);
        if (r != 0) /* ready, or no socket yet: either way libpq decides what comes next */
            st = PQconnectPoll(conn);
    }
    if (PQsetnonblocking(conn, 1) != 0)
        return PGC_CONN_ERROR;
    return PGC_OK;
}

/* Flushes libpq's output buffer, reading input meanwhile (the server may be sending notices or
 * an error and wait for us to read them). */
static pgc_rc flush_all(PGconn *conn, const struct pgc_waiter *w, struct stopper *s,
                        int stop_returns)
{
    int f;

    while ((f = PQflush(conn)) == 1) {
        int r = wait_socket(conn, POLLIN | POLLOUT, WAIT_SLICE_MS);

        if (r < 0)
            return PGC_CONN_ERROR;
        if ((r & POLLIN) && !PQconsumeInput(conn))
            return PGC_CONN_ERROR;
        if (stop_returns && w && w->should_stop && w->should_stop(w->arg))
            return PGC_STOPPED;
        if (stop_check(conn, w, s))
            return PGC_STOPPED;
    }
    return f == 0 ? PGC_OK : PGC_CONN_ERROR;
}

static int result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* Collects the results of what was sent; see pgc_exec. */
static pgc_rc collect(PGconn *conn, const struct pgc_waiter *w, PGresult **res)
{
    struct stopper s = {0, 0};
    PGresult *kept = NULL;
    pgc_rc rc;

    *res = NULL;
    rc = flush_all(conn, w, &s, 0);
    if (rc != PGC_OK)
        return rc;
    for (;;) {
        PGresult *r;

        while (PQisBusy(conn)) {
            int ready = wait_socket(conn, POLLIN, WAIT_SLICE_MS);

            if (ready < 0 || (ready > 0 && !PQconsumeInput(conn))) {
                *res = kept;
                return PGC_CONN_ERROR;
            }
            if (stop_check(conn, w, &s)) {
                PQclear(kept);
                return PGC_STOPPED;
            }
        }
        r = PQgetResult(conn);
        if (r == NULL)
            break;
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            PQclear(kept);
            *res = r;
            return PGC_OK;
        }
        if (kept == NULL || result_ok(kept)) {
            PQclear(kept);
            kept = r;
        } else {
            PQclear(r); /* keep the first error */
        }
    }
    *res = kept;
    if (PQstatus(conn) == CONNECTION_BAD || kept == NULL)
        return PGC_CONN_ERROR;
    return PGC_OK;
}

pgc_rc pgc_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                const struct pgc_waiter *w, PGresult **res)
{
    int sent;

    *res = NULL;
    /* The simple protocol allows several statements in one string; parameters need the
     * extended one. */
    if (nparams == 0)
        sent = PQsendQuery(conn, sql);
    else
        sent = PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent)
        return PGC_CONN_ERROR;
    return collect(conn, w, res);
}

pgc_rc pgc_copy_put(PGconn *conn, const void *data, size_t len, const struct pgc_waiter *w)
{
    struct stopper s = {0, 0};
    int r;

    if (w && w->should_stop && w->should_stop(w->arg))
        return PGC_STOPPED;
    while ((r = PQputCopyData(conn, data, (int)len)) == 0) {
        if (wait_socket(conn, POLLOUT, WAIT_SLICE_MS) < 0)
            return PGC_CONN_ERROR;
        if (w && w->should_stop && w->should_stop(w->arg))
            return PGC_STOPPED;
    }
    if (r < 0)
        return PGC_CONN_ERROR;
    /* A stop while flushing leaves the rest in libpq's buffer; pgc_copy_end then sends it with
     * the CopyFail, and its own timers decide when to cancel or give up. */
    return flush_all(conn, w, &s, 1);
}

pgc_rc pgc_copy_send_end(PGconn *conn, const char *errmsg, const struct pgc_waiter *w)
{
    struct stopper s = {0, 0};
    int r;

    while ((r = PQputCopyEnd(conn, errmsg)) == 0) {
        if (wait_socket(conn, POLLOUT, WAIT_SLICE_MS) < 0)
            return PGC_CONN_ERROR;
        if (stop_check(conn, w, &s))
            return PGC_STOPPED;
    }
    if (r < 0)
        return PGC_CONN_ERROR;
    return flush_all(conn, w, &s, 0);
}

int pgc_result_ready(PGconn *conn)
{
    if (!PQconsumeInput(conn))
        return 1;
    return !PQisBusy(conn);
}

pgc_rc pgc_result(PGconn *conn, const struct pgc_waiter *w, PGresult **res)
{
    return collect(conn, w, res);
}

pgc_rc pgc_copy_end(PGconn *conn, const char *errmsg, const struct pgc_waiter *w, PGresult **res)
{
    pgc_rc rc;

    *res = NULL;
    rc = pgc_copy_send_end(conn, errmsg, w);
    if (rc != PGC_OK)
        return rc;
    return collect(conn, w, res);
}
