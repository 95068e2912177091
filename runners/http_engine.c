/*
 * http_engine: worker threads that send HTTP requests on a schedule with libcurl's multi
 * interface (or, for plain http://, their own HTTP/1.1 client over connections libcurl opens) and
 * record latencies without coordinated omission. See http_engine.h for the API.
 *
 * DESIGN
 *
 * Threads.
 *   coordinator  the caller's thread (a run thread executing a runner). Creates the engine, starts
 *                the workers, calls http_engine_collect once per second and stop/join at the end.
 *                Owns `spare` (one he_stats it trades for a worker's published one).
 *   worker[i]    one per load thread, wrk-style. Owns, without any lock: its CURLM, its easy
 *                handles and their slots (fast client: each slot's socket, parser state and
 *                the receive buffer), its pollfd set and wake eventfd, its part of the
 *                schedule (open model: every
 *                n-th entry of the global schedule; closed model: every n-th user, in a heap keyed
 *                by due time), and `cur`, the he_stats it records into.
 *   curl's resolver threads (libcurl's own, started for a host name on a new connection).
 *
 * Locks and atomics.
 *   worker.lock  guards: worker.pub, worker.pub_dirty. Taken by the worker once per second (to
 *                publish `cur` by swapping it with the clean `pub`) and by the coordinator once
 *                per second (to swap the published stats for its clean spare). Never held on the
 *                per-request path; the hold is two pointer swaps.
 *   engine.stop  atomic stop flag; a stop also writes each worker's wake eventfd.
 *   worker.sealed, worker.done  atomics the coordinator reads to know a second is complete.
 *
 * The hot path (per request, on a worker; libcurl client, the fast one is below): take an idle
 * easy handle (free list) or create one up
 * to the per-thread connection cap, set the body pointer when bodies rotate, curl_multi_add_handle;
 * curl_multi_socket_action for curl's timer (which sends it) and later for its socket; on
 * completion read the result and status, record into `cur` (plain counters, hdr_record),
 * curl_multi_remove_handle, push the handle back on the free list. No allocation of ours after
 * the connections are open, no lock, no shared cache line written.
 *
 * Schedule. Open model: all users share one rate r, so user u is given a seeded phase inside the
 * u-th of `users` equal strata of the period 1/r, and the global schedule (user order by phase,
 * repeated every period) is walked cyclically: entry i is user i % users in period i / users,
 * due at t0 + phase(u) + (i / users) / r. That is O(1) per request with no memory per user (the
 * phase is recomputed from the seed), and the due times are non-decreasing in i. A request is sent
 * when due whether or not earlier ones were answered; when no connection is free it waits, and
 * every request sent over 1 ms after it was due counts as late. Closed model: each user has one
 * request in flight; its next one is due at max(completion, previous due + 1/r) (r = 0: at
 * completion). Latency = completion - due, service time = completion - sent.
 *
 * Waiting: curl_multi_socket_action driven by our own ppoll(2) over a plain pollfd array that
 * curl's socket callback edits in user space. Measured against the curl_multi_perform +
 * curl_multi_poll loop (at -c50, nginx, 2 threads): curl_multi_perform visits every transfer and
 * libcurl 7.88's Curl_readwrite then polls each one's socket (8.6 poll(2) per request), while
 * socket_action hands curl the readiness bits it needs (2 poll(2) per request, both inside
 * libcurl: the liveness check of a reused connection and a zero-timeout check as the transfer
 * starts); no epoll_ctl churn either, which is what made
 * socket_action + epoll the slower of the two before. ~7% fewer CPU-seconds per request. The
 * wait is ppoll with a nanosecond deadline (next due time, curl's timer or the second boundary,
 * whichever is first) and 1 us timer slack, so a request is sent when due rather than at the
 * next whole millisecond; curl's 0 ms timer means now, never rounded up to 1 ms.
 *
 * Two clients, chosen once per engine (http_engine_kind says which):
 *   libcurl      every request is a curl transfer, as described above.
 *   fast-http1   (target.engine AUTO and an http:// URL without user info): libcurl only opens
 *                connections. Each slot's easy handle has CURLOPT_CONNECT_ONLY, so DNS, the
 *                allowlist check in open_socket (on every connection, reconnects included) and the
 *                connect stay curl's; when that transfer is done the worker dups the socket
 *                (CURLINFO_ACTIVESOCKET; curl may close its copy whenever it likes, which is why
 *                ours is shut down, not just closed, when we drop it) and from then on writes the
 *                request pre-formatted once per body (fp_format: what curl would send) with one
 *                send(2) (writev-style sendmsg for bodies over 16 KiB) and parses the answer
 *                with struct h1: status line, Content-Length, chunked, Connection, HTTP/1.0,
 *                1xx skipped, no body for HEAD/204/304, a body with no length runs to the close;
 *                bodies are counted and dropped through one 64 KiB buffer per worker, nothing
 *                allocated per request. The slot's fd sits in the same pfd array (fd_slot[fd]
 *                tells it from curl's); an idle connection stays watched so a server close
 *                is seen. A malformed answer or a close mid-answer is an "other" error
 *                (CURLE_WEIRD_SERVER_REPLY, _PARTIAL_FILE, _GOT_NOTHING, _RECV_ERROR,
 *                _SEND_ERROR), the connection is dropped and the next request reconnects; a
 *                reused connection that closes before any byte of the answer gets the request
 *                resent once on a new one (libcurl does the same). Timeouts: requests in flight
 *                are kept in sent order (fhead..ftail; one timeout for all, so that is deadline
 *                order) and the head's deadline bounds the ppoll. Times: sent = when the request
 *                was given to the client (before any connect, as for libcurl), completion = when
 *                the answer's last byte was parsed. Per request: one send, one recv (usually),
 *                a share of one ppoll; ~2 us of user CPU against libcurl's ~24 us.
 *
 * Per-transfer cost trimmed on curl's side: the URL is parsed once (CURLOPT_CURLU; curl copies
 * the handle instead of re-parsing, ~7%), and an explicit empty CURLOPT_PROXY stops curl reading
 * the *_proxy environment variables on every request (also keeps load off a proxy the allowlist
 * would never see).
 */
#define _GNU_SOURCE
#include "http_engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lt_util.h"

#define NS_PER_S       1000000000LL
#define RBUF_LEN       65536
#define FP_INLINE_BODY 16384 /* bodies up to this go out in the same buffer as the headers */

struct worker;

/* The fast client's response parser: one per slot, a byte-driven state machine that keeps only
 * the first H1_LINE bytes of the line it is in (enough for the status line and the three
 * headers it reads), so a response of any size goes through without allocation. */
#define H1_LINE     128
#define H1_MAX_HEAD (256 * 1024) /* status lines and headers of one response, 1xx included */

enum h1_state {
    H1_STATUS,     /* status line */
    H1_HEADER,     /* header lines */
    H1_BODY,       /* `left` bytes of a Content-Length body */
    H1_BODY_EOF,   /* a body that ends when the server closes */
    H1_CHUNK_SIZE, /* a chunk-size line */
    H1_CHUNK_DATA, /* `left` bytes of chunk data */
    H1_CHUNK_END,  /* the CRLF after chunk data */
    H1_TRAILER,    /* trailer lines after the last chunk */
};

struct h1 {
    uint8_t st;      /* enum h1_state */
    uint8_t head;    /* the request was HEAD: no body whatever the headers say */
    uint8_t http10;  /* HTTP/1.0 status line */
    uint8_t close;   /* the connection ends with this response */
    uint8_t keep;    /* Connection: keep-alive */
    uint8_t te;      /* Transfer-Encoding seen */
    uint8_t chunked; /* ... and its last coding is chunked */
    uint8_t has_len; /* Content-Length seen */
    uint8_t any;     /* some byte of the answer arrived */
    int status;
    uint64_t len;        /* Content-Length */
    uint64_t left;       /* bytes left in the body or the chunk */
    uint64_t body;       /* body bytes (chunked: decoded) */
    uint32_t head_bytes; /* bytes of status lines and headers so far */
    uint32_t line_len;   /* bytes in the current line so far; the first H1_LINE are kept */
    char line[H1_LINE];
};

/* A pre-formatted request of the fast client: one per body (or one). */
struct fp_req {
    char *head; /* request line, headers, blank line; small bodies are appended here too */
    size_t head_len;
    const char *body; /* the rest of a large body (borrowed from the target), else NULL */
    size_t body_len;
};

enum fp_phase { FP_IDLE = 0, FP_CONNECTING, FP_WRITING, FP_READING };

/* One request's context, reached from its easy handle through CURLOPT_PRIVATE. */
struct slot {
    CURL *easy;
    struct worker *w; /* owner */
    struct slot *next_idle;
    int64_t due;       /* when it was due (ns, monotonic) */
    int64_t sent;      /* when it was handed to curl */
    uint64_t index;    /* schedule index (open) or per-user sequence (closed): body rotation */
    int32_t user;      /* closed model: whose request */
    uint8_t warm;      /* due during the warm-up */
    uint8_t late;      /* sent more than HE_LATE_NS after due */
    uint8_t late_conn; /* ... after waiting for a free connection */
    uint8_t refused;   /* the allowlist refused the address curl was about to connect to */
    /* fast client only */
    uint8_t phase;              /* enum fp_phase */
    uint8_t reused;             /* the connection has carried an answer before this request */
    uint8_t retried;            /* this request was already resent on a fresh connection */
    int fd;                     /* our connection: a dup of the socket curl connected; -1 = none */
    size_t wr_off;              /* bytes of the request written */
    const struct fp_req *req;   /* what this request sends */
    struct slot *fprev, *fnext; /* in flight, ordered by sent time (= by deadline) */
    struct h1 h1;
};

/* Closed-model user waiting for its next request. */
struct user_due {
    int64_t due;
    int32_t user;
    uint32_t seq; /* requests this user has sent so far */
};

struct worker {
    struct http_engine *e; /* back-pointer; borrowed */
    int id;
    pthread_t thread;
    int started;
    CURLM *multi;
    CURLU *url;         /* the target URL parsed once (curl copies it per transfer) */
    int wake_fd;        /* eventfd: http_engine_stop writes it to end the wait at once */
    struct pollfd *pfd; /* pfd[0] = wake_fd, then the sockets curl asked us to watch */
    int npfd, cap_pfd;
    int *fd_pos;           /* fd -> index in pfd, -1 when not watched; fd_pos_len entries */
    struct slot **fd_slot; /* fd -> the fast client's slot owning it, NULL = curl's; same length */
    int fd_pos_len;
    int64_t curl_deadline; /* when curl wants CURL_SOCKET_TIMEOUT (ns); 0 = no timer */

    struct slot *slots; /* cap slots; the first n_easy carry an easy handle */
    int cap;
    int n_easy;
    struct slot *idle;
    int in_flight;
    int conn_wait; /* due requests had to wait for a connection since the last drain */

    /* fast client */
    struct slot *fhead, *ftail; /* requests in flight, oldest first: head has the next deadline */
    char *rbuf;                 /* receive buffer, RBUF_LEN bytes: answers are read and dropped */

    /* open model */
    uint64_t next_i; /* next global schedule index of this worker */
    int exhausted;   /* next_i is past the end of the run */
    /* closed model */
    struct user_due *heap;
    int heap_n;

    struct he_stats *cur; /* recorded into by the worker alone */
    int64_t sec;          /* second being recorded: it ends at t0 + sec s */
    int64_t next_seal;    /* t0 + sec s */

    pthread_mutex_t lock; /* guards: pub, pub_dirty */
    struct he_stats *pub;
    int pub_dirty;

    atomic_llong sealed; /* last second published (INT64_MAX once finished) */
    atomic_int done;
};

struct http_engine {
    const struct he_target *t; /* borrowed */
    const struct he_load *l;   /* borrowed */
    int nthreads;
    struct worker *workers;
    struct curl_slist *headers;
    int fast;            /* the fast HTTP/1.1 client runs the requests (else libcurl) */
    struct fp_req *reqs; /* fast: n_reqs pre-formatted requests */
    size_t n_reqs;
    int64_t timeout_ns; /* per request, from the moment it is sent */
    int64_t t0, warm_end, end;
    double period_ns; /* 1e9 / rate_per_user; 0 when unpaced */
    atomic_int stop;
    struct he_stats *spare; /* the coordinator's clean stats, traded for published ones */
};

/* ---- stats ---------------------------------------------------------------------------------- */

struct he_stats *he_stats_new(void)
{
    struct he_stats *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->latency = hdr_new();
    s->latency_ok = hdr_new();
    s->service = hdr_new();
    s->latency_warm = hdr_new();
    if (!s->latency || !s->latency_ok || !s->service || !s->latency_warm) {
        he_stats_free(s);
        return NULL;
    }
    return s;
}

void he_stats_free(struct he_stats *s)
{
    if (s == NULL)
        return;
    hdr_free(s->latency_warm);
    hdr_free(s->service);
    hdr_free(s->latency_ok);
    hdr_free(s->latency);
    free(s);
}

void he_stats_reset(struct he_stats *s)
{
    memset(&s->meas, 0, sizeof(s->meas));
    memset(&s->warm, 0, sizeof(s->warm));
    /* hdr_reset clears the whole ~270 KB; skip the ones nothing was recorded into. */
    if (hdr_count(s->latency))
        hdr_reset(s->latency);
    if (hdr_count(s->latency_ok))
        hdr_reset(s->latency_ok);
    if (hdr_count(s->service))
        hdr_reset(s->service);
    if (hdr_count(s->latency_warm))
        hdr_reset(s->latency_warm);
    s->in_flight = 0;
    s->connections = 0;
}

static void tally_merge(struct he_tally *d, const struct he_tally *s)
{
    d->requests += s->requests;
    d->ok += s->ok;
    for (int i = 0; i < HE_ERR_N; i++)
        d->errors[i] += s->errors[i];
    d->late += s->late;
    d->late_conn += s->late_conn;
    d->forbidden += s->forbidden;
    if (s->max_lag > d->max_lag)
        d->max_lag = s->max_lag;
    if (s->last_done > d->last_done)
        d->last_done = s->last_done;
    d->bytes += s->bytes;
    if (s->requests == 0)
        return;
    for (int i = 0; i < HE_STATUS_MAX; i++)
        d->status[i] += s->status[i];
    for (int i = 0; i < HE_CURLCODES; i++)
        d->curlcode[i] += s->curlcode[i];
}

static void hdr_merge_nonempty(struct hdr *d, const struct hdr *s)
{
    if (hdr_count(s))
        hdr_merge(d, s);
}

void he_stats_merge_measured(struct he_stats *dst, const struct he_stats *src)
{
    tally_merge(&dst->meas, &src->meas);
    hdr_merge_nonempty(dst->latency, src->latency);
    hdr_merge_nonempty(dst->latency_ok, src->latency_ok);
    hdr_merge_nonempty(dst->service, src->service);
}

void he_stats_merge(struct he_stats *dst, const struct he_stats *src)
{
    he_stats_merge_measured(dst, src);
    tally_merge(&dst->warm, &src->warm);
    hdr_merge_nonempty(dst->latency_warm, src->latency_warm);
    dst->in_flight += src->in_flight;
    dst->connections += src->connections;
}

enum he_err he_classify(int curlcode)
{
    switch ((CURLcode)curlcode) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return HE_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HE_ERR_TIMEOUT;
    default:
        return HE_ERR_OTHER;
    }
}

/* ---- schedule ------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* User u's offset inside the period: a seeded point of the u-th of `users` equal strata, so the
 * users' requests are spread evenly over the period and each user has its own phase. */
static int64_t user_phase(const struct http_engine *e, int64_t u)
{
    double frac = (double)(splitmix64(e->l->seed ^ ((uint64_t)u * 0x9e3779b97f4a7c15ULL)) >> 11) *
                  (1.0 / 9007199254740992.0);

    return (int64_t)(((double)u + frac) * e->period_ns / (double)e->l->users);
}

static int64_t open_due(const struct http_engine *e, uint64_t i)
{
    uint64_t users = (uint64_t)e->l->users;
    uint64_t k = i / users;

    return e->t0 + user_phase(e, (int64_t)(i % users)) + (int64_t)((double)k * e->period_ns);
}

static void heap_push(struct worker *w, struct user_due ud)
{
    int i = w->heap_n++;

    while (i > 0) {
        int p = (i - 1) / 2;
        if (w->heap[p].due <= ud.due)
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = ud;
}

static struct user_due heap_pop(struct worker *w)
{
    struct user_due top = w->heap[0];
    struct user_due last = w->heap[--w->heap_n];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;
        if (c >= w->heap_n)
            break;
        if (c + 1 < w->heap_n && w->heap[c + 1].due < w->heap[c].due)
            c++;
        if (last.due <= w->heap[c].due)
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->heap_n > 0)
        w->heap[i] = last;
    return top;
}

/* The due time of this worker's next request; 0 when its schedule is over. */
static int64_t next_due(struct worker *w)
{
    if (w->e->l->model == HE_OPEN)
        return w->exhausted ? 0 : open_due(w->e, w->next_i);
    return w->heap_n > 0 ? w->heap[0].due : 0;
}

/* ---- curl ----------------------------------------------------------------------------------- */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* CURLOPT_OPENSOCKETFUNCTION: the one place every connection's resolved address passes, so the
 * allowlist is enforced after DNS (a name that resolves somewhere else is refused here). */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct slot *s = clientp;
    const struct he_target *t = s->w->e->t;

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (t->allow != NULL && !lt_allow_addr(t->allow, &addr->addr, t->name_allowed)) {
        s->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* Creates slot s's easy handle with every option that stays the same from request to request. */
static int slot_init(struct worker *w, struct slot *s)
{
    const struct he_target *t = w->e->t;
    CURL *c = curl_easy_init();

    if (c == NULL)
        return -1;
    s->easy = c;
    s->w = w;
    s->fd = -1;
    if (w->url != NULL)
        curl_easy_setopt(c, CURLOPT_CURLU, w->url);
    else
        curl_easy_setopt(c, CURLOPT_URL, t->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (void *)s);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, t->timeout_ms);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    /* An explicit empty proxy: curl skips its per-request look at the *_proxy variables. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (w->e->fast) {
        /* curl resolves, checks the address (open_socket) and connects; the fast client takes
         * the socket from there. */
        curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
        return 0;
    }
    if (w->e->headers)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, w->e->headers);
    if (strcmp(t->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (t->n_bodies > 0 || strcmp(t->method, "POST") == 0) {
        /* A body makes curl send POST; CUSTOMREQUEST renames the method for the others. */
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        if (strcmp(t->method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, t->method);
        if (t->n_bodies > 0) { /* one body: set once here; several: per request */
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body_lens[0]);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->bodies[0]);
        }
    } else if (strcmp(t->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, t->method);
    }
    return 0;
}

static struct slot *take_slot(struct worker *w)
{
    struct slot *s = w->idle;

    if (s != NULL) {
        w->idle = s->next_idle;
        return s;
    }
    if (w->n_easy >= w->cap)
        return NULL;
    s = &w->slots[w->n_easy];
    if (slot_init(w, s) != 0)
        return NULL;
    w->n_easy++;
    return s;
}

/* ---- the poll set ---------------------------------------------------------------------------- */

/* Makes fd_pos and fd_slot cover fd. Returns 0, or -1 on allocation failure. */
static int fd_room(struct worker *w, int fd)
{
    int len;
    int *np;
    struct slot **ns;

    if (fd < w->fd_pos_len)
        return 0;
    len = fd + 64;
    np = realloc(w->fd_pos, (size_t)len * sizeof(*np));
    if (np == NULL)
        return -1;
    w->fd_pos = np;
    ns = realloc(w->fd_slot, (size_t)len * sizeof(*ns));
    if (ns == NULL)
        return -1; /* fd_pos grew, fd_pos_len did not: the next call retries */
    w->fd_slot = ns;
    for (int i = w->fd_pos_len; i < len; i++) {
        np[i] = -1;
        ns[i] = NULL;
    }
    w->fd_pos_len = len;
    return 0;
}

/* Watches fd for events (POLLIN/POLLOUT). Returns 0, or -1 on allocation failure. */
static int watch(struct worker *w, int fd, short events)
{
    int pos;

    if (fd_room(w, fd) != 0)
        return -1;
    pos = w->fd_pos[fd];
    if (pos < 0) {
        if (w->npfd == w->cap_pfd) {
            int cap = w->cap_pfd * 2;
            struct pollfd *np = realloc(w->pfd, (size_t)cap * sizeof(*np));
            if (np == NULL)
                return -1;
            w->pfd = np;
            w->cap_pfd = cap;
        }
        pos = w->npfd++;
        w->fd_pos[fd] = pos;
        w->pfd[pos].fd = fd;
    }
    w->pfd[pos].events = events;
    w->pfd[pos].revents = 0;
    return 0;
}

static void unwatch(struct worker *w, int fd)
{
    int pos = fd < w->fd_pos_len ? w->fd_pos[fd] : -1;

    if (pos > 0) {
        w->pfd[pos] = w->pfd[--w->npfd];
        w->fd_pos[w->pfd[pos].fd] = pos;
        w->fd_pos[fd] = -1;
    }
}

/* ---- the fast client: HTTP/1.1 response parser ---------------------------------------------- */

enum { H1_BAD = -1, H1_MORE = 0, H1_COMPLETE = 1 };

static void h1_start(struct h1 *p, int head)
{
    memset(p, 0, offsetof(struct h1, line));
    p->head = (uint8_t)head;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Does the token [a, a+n) equal the lower-case word? */
static int token_is(const char *a, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(a, word, n) == 0;
}

/* One header line (no CR/LF); whole = 0 when only its first H1_LINE bytes were kept. */
static int h1_header(struct h1 *p, const char *l, size_t len, int whole)
{
    const char *colon = memchr(l, ':', len), *v, *end = l + len;
    size_t nlen;

    if (len > 0 && is_ows(l[0]))
        return H1_BAD; /* obsolete line folding */
    if (colon == NULL)
        return whole ? H1_BAD : H1_MORE; /* a name longer than we keep: not one we read */
    nlen = (size_t)(colon - l);
    if (nlen == 0)
        return H1_BAD;
    for (v = colon + 1; v < end && is_ows(*v); v++)
        ;
    while (end > v && is_ows(end[-1]))
        end--;
    if (token_is(l, nlen, "content-length")) {
        uint64_t n = 0;
        if (!whole || v == end || end - v > 18)
            return H1_BAD;
        for (const char *c = v; c < end; c++) {
            if (*c < '0' || *c > '9')
                return H1_BAD;
            n = n * 10 + (uint64_t)(*c - '0');
        }
        if (p->has_len && n != p->len)
            return H1_BAD;
        p->has_len = 1;
        p->len = n;
    } else if (token_is(l, nlen, "transfer-encoding")) {
        const char *last = end;
        if (!whole)
            return H1_BAD;
        while (last > v && last[-1] != ',')
            last--;
        while (last < end && is_ows(*last))
            last++;
        p->te = 1;
        p->chunked = token_is(last, (size_t)(end - last), "chunked");
    } else if (token_is(l, nlen, "connection")) {
        const char *t = v;
        while (t < end) {
            const char *c = memchr(t, ',', (size_t)(end - t)), *te;
            if (c == NULL)
                c = end;
            for (te = c; te > t && is_ows(te[-1]); te--)
                ;
            if (token_is(t, (size_t)(te - t), "close"))
                p->close = 1;
            else if (token_is(t, (size_t)(te - t), "keep-alive"))
                p->keep = 1;
            for (t = c + 1; t < end && is_ows(*t); t++)
                ;
        }
    }
    return H1_MORE;
}

/* The blank line after the headers: decides how the body ends. */
static int h1_headers_end(struct h1 *p)
{
    if (p->status < 200) {
        if (p->status == 101)
            return H1_BAD; /* no upgrade was asked for */
        /* Interim (100 Continue, 103 Early Hints): the final answer follows. */
        uint32_t hb = p->head_bytes;
        int head = p->head;
        h1_start(p, head);
        p->head_bytes = hb;
        p->any = 1;
        return H1_MORE;
    }
    if (p->http10)
        p->close = !p->keep;
    if (p->head || p->status == 204 || p->status == 304)
        return H1_COMPLETE;
    if (p->te) {
        if (p->chunked) {
            p->st = H1_CHUNK_SIZE;
            return H1_MORE;
        }
        p->st = H1_BODY_EOF; /* a coding we do not decode: the body runs to the close */
        p->close = 1;
        return H1_MORE;
    }
    if (p->has_len) {
        if (p->len == 0)
            return H1_COMPLETE;
        p->st = H1_BODY;
        p->left = p->len;
        return H1_MORE;
    }
    p->st = H1_BODY_EOF;
    p->close = 1;
    return H1_MORE;
}

/* The line just completed (its LF consumed). */
static int h1_line(struct h1 *p)
{
    int whole = p->line_len <= H1_LINE;
    size_t len = whole ? p->line_len : H1_LINE;
    const char *l = p->line;

    if (whole && len > 0 && l[len - 1] == '\r')
        len--;
    switch (p->st) {
    case H1_STATUS:
        /* "HTTP/1.x NNN[ reason]" */
        if (len < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') ||
            l[8] != ' ' || l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' ||
            l[11] > '9' || (len > 12 && l[12] != ' '))
            return H1_BAD;
        p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        p->http10 = l[7] == '0';
        p->st = H1_HEADER;
        return H1_MORE;
    case H1_HEADER:
        if (len == 0 && whole)
            return h1_headers_end(p);
        return h1_header(p, l, len, whole);
    case H1_CHUNK_SIZE: {
        uint64_t n = 0;
        size_t i = 0;
        for (; i < len; i++) {
            char c = l[i];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            n = n * 16 + (uint64_t)d;
        }
        if (i == 0 || i > 15 || (i < len && l[i] != ';' && !is_ows(l[i])))
            return H1_BAD;
        if (n == 0) {
            p->st = H1_TRAILER;
        } else {
            p->st = H1_CHUNK_DATA;
            p->left = n;
        }
        return H1_MORE;
    }
    case H1_CHUNK_END:
        if (len != 0 || !whole)
            return H1_BAD;
        p->st = H1_CHUNK_SIZE;
        return H1_MORE;
    case H1_TRAILER:
        return len == 0 && whole ? H1_COMPLETE : H1_MORE;
    default:
        return H1_BAD;
    }
}

/* Feeds n bytes of the answer. Returns H1_COMPLETE (*used: the bytes that belonged to it),
 * H1_MORE (all used) or H1_BAD (malformed). */
static int h1_feed(struct h1 *p, const char *buf, size_t n, size_t *used)
{
    size_t i = 0;

    if (n > 0)
        p->any = 1;
    while (i < n) {
        if (p->st == H1_BODY || p->st == H1_CHUNK_DATA) {
            size_t k = n - i < p->left ? n - i : (size_t)p->left;
            i += k;
            p->left -= k;
            p->body += k;
            if (p->left == 0 && p->st == H1_BODY) {
                *used = i;
                return H1_COMPLETE;
            }
            if (p->left == 0)
                p->st = H1_CHUNK_END;
        } else if (p->st == H1_BODY_EOF) {
            p->body += n - i;
            i = n;
        } else {
            const char *nl = memchr(buf + i, '\n', n - i);
            size_t k = nl != NULL ? (size_t)(nl - (buf + i)) : n - i;
            int rc;

            if (p->line_len < H1_LINE) {
                size_t c = H1_LINE - p->line_len < k ? H1_LINE - p->line_len : k;
                memcpy(p->line + p->line_len, buf + i, c);
            }
            if (p->st == H1_STATUS || p->st == H1_HEADER || p->st == H1_TRAILER) {
                p->head_bytes += (uint32_t)(k > H1_MAX_HEAD ? H1_MAX_HEAD : k) + 1;
                if (p->head_bytes > H1_MAX_HEAD)
                    return H1_BAD;
            } else if (p->line_len + k > 4096) {
                return H1_BAD; /* a chunk-size line (or CRLF) that does not end */
            }
            p->line_len += (uint32_t)(k > H1_MAX_HEAD ? H1_MAX_HEAD + 1 : k);
            i += k;
            if (nl == NULL)
                break;
            i++; /* the LF */
            rc = h1_line(p);
            p->line_len = 0;
            if (rc != H1_MORE) {
                *used = i;
                return rc;
            }
        }
    }
    *used = n;
    return H1_MORE;
}

/* ---- the fast client: connections and exchanges --------------------------------------------- */

static void finish(struct worker *w, struct slot *s, CURLcode rc, long code, int64_t bytes,
                   int64_t done);

static void fp_link(struct worker *w, struct slot *s)
{
    s->fnext = NULL;
    s->fprev = w->ftail;
    if (w->ftail != NULL)
        w->ftail->fnext = s;
    else
        w->fhead = s;
    w->ftail = s;
}

static void fp_unlink(struct worker *w, struct slot *s)
{
    if (s->fprev != NULL)
        s->fprev->fnext = s->fnext;
    else
        w->fhead = s->fnext;
    if (s->fnext != NULL)
        s->fnext->fprev = s->fprev;
    else
        w->ftail = s->fprev;
    s->fprev = s->fnext = NULL;
}

/* Closes the slot's connection for good (shutdown: curl may still hold a copy of the socket). */
static void fp_close(struct worker *w, struct slot *s)
{
    if (s->fd < 0)
        return;
    unwatch(w, s->fd);
    w->fd_slot[s->fd] = NULL;
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    s->fd = -1;
}

/* The request in slot s is over: out of the in-flight list, recorded, slot idle. */
static void fp_finish(struct worker *w, struct slot *s, CURLcode rc, long code, int64_t bytes,
                      int64_t done)
{
    fp_unlink(w, s);
    s->phase = FP_IDLE;
    finish(w, s, rc, code, bytes, done);
}

static void fp_connect(struct worker *w, struct slot *s)
{
    s->phase = FP_CONNECTING;
    s->refused = 0;
    if (curl_multi_add_handle(w->multi, s->easy) != CURLM_OK)
        fp_finish(w, s, CURLE_OUT_OF_MEMORY, 0, 0, lt_mono_ns());
}

/* Fails the request, or resends it once on a fresh connection when a reused one turned out to
 * be closed before any of the answer came (what libcurl does too). */
static void fp_fail(struct worker *w, struct slot *s, CURLcode rc, int retryable)
{
    fp_close(w, s);
    if (retryable && s->reused && !s->retried && !s->h1.any) {
        s->retried = 1;
        fp_connect(w, s);
        return;
    }
    fp_finish(w, s, rc, 0, 0, lt_mono_ns());
}

static void fp_read(struct worker *w, struct slot *s);

/* Writes (the rest of) the request; on EAGAIN waits for POLLOUT. */
static void fp_write(struct worker *w, struct slot *s)
{
    const struct fp_req *rq = s->req;
    size_t total = rq->head_len + rq->body_len;

    while (s->wr_off < total) {
        ssize_t n;

        if (rq->body_len == 0) {
            n = send(s->fd, rq->head + s->wr_off, total - s->wr_off, MSG_NOSIGNAL);
        } else {
            struct iovec iov[2];
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 0};
            size_t off = s->wr_off;
            if (off < rq->head_len) {
                iov[mh.msg_iovlen].iov_base = rq->head + off;
                iov[mh.msg_iovlen++].iov_len = rq->head_len - off;
                off = 0;
            } else {
                off -= rq->head_len;
            }
            iov[mh.msg_iovlen].iov_base = (char *)rq->body + off;
            iov[mh.msg_iovlen++].iov_len = rq->body_len - off;
            n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (s->phase != FP_WRITING) {
                    s->phase = FP_WRITING;
                    if (watch(w, s->fd, POLLOUT) != 0)
                        fp_fail(w, s, CURLE_OUT_OF_MEMORY, 0);
                }
                return;
            }
            fp_fail(w, s, CURLE_SEND_ERROR, 1);
            return;
        }
        s->wr_off += (size_t)n;
    }
    if (s->phase == FP_WRITING && watch(w, s->fd, POLLIN) != 0) {
        fp_fail(w, s, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    s->phase = FP_READING;
}

/* The whole answer is in: record it; a connection that ends with it is closed. */
static void fp_done(struct worker *w, struct slot *s, int extra)
{
    if (s->h1.close || extra)
        fp_close(w, s); /* extra: bytes past the answer, nothing we asked for */
    s->reused = 1;
    fp_finish(w, s, CURLE_OK, s->h1.status, (int64_t)s->h1.body, lt_mono_ns());
}

static void fp_read(struct worker *w, struct slot *s)
{
    for (;;) {
        ssize_t n = recv(s->fd, w->rbuf, RBUF_LEN, 0);
        size_t used = 0;
        int rc;

        if (n > 0) {
            rc = h1_feed(&s->h1, w->rbuf, (size_t)n, &used);
            if (rc == H1_COMPLETE) {
                fp_done(w, s, used < (size_t)n);
                return;
            }
            if (rc == H1_BAD) {
                fp_fail(w, s, CURLE_WEIRD_SERVER_REPLY, 0);
                return;
            }
            if (n < RBUF_LEN)
                return; /* most likely all there is; poll says when more comes */
            continue;
        }
        if (n == 0) {
            if (s->h1.st == H1_BODY_EOF) {
                fp_done(w, s, 0);
                return;
            }
            fp_fail(w, s, s->h1.any ? CURLE_PARTIAL_FILE : CURLE_GOT_NOTHING, 1);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        fp_fail(w, s, CURLE_RECV_ERROR, 1);
        return;
    }
}

/* Socket activity on one of the fast client's connections. */
static void fp_io(struct worker *w, struct slot *s, short revents)
{
    if (s->phase == FP_WRITING) {
        fp_write(w, s);
    } else if (s->phase == FP_READING) {
        fp_read(w, s);
    } else if (s->phase == FP_IDLE && (revents & (POLLIN | POLLERR | POLLHUP))) {
        /* An idle connection spoke (a close, or an answer nobody asked for): drop it. */
        char c;
        ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        fp_close(w, s);
    }
}

/* Sends the request of slot s (sent, index and the rest already set). */
static void fp_start(struct worker *w, struct slot *s, uint64_t body)
{
    struct http_engine *e = w->e;

    s->req = &e->reqs[e->n_reqs > 1 ? body % e->n_reqs : 0];
    s->retried = 0;
    s->wr_off = 0;
    h1_start(&s->h1, strcmp(e->t->method, "HEAD") == 0);
    fp_link(w, s);
    if (s->fd >= 0) {
        fp_write(w, s);
        return;
    }
    fp_connect(w, s);
}

/* curl finished opening the connection of slot s (its easy handle still in the multi). */
static void fp_connected(struct worker *w, struct slot *s, CURLcode rc, int64_t now)
{
    curl_socket_t sock = CURL_SOCKET_BAD;
    int fd = -1;

    if (rc == CURLE_OK && curl_easy_getinfo(s->easy, CURLINFO_ACTIVESOCKET, &sock) == CURLE_OK &&
        sock != CURL_SOCKET_BAD)
        fd = fcntl(sock, F_DUPFD_CLOEXEC, 0); /* ours; curl closes its copy when it likes */
    curl_multi_remove_handle(w->multi, s->easy);
    if (fd < 0) {
        fp_finish(w, s, rc != CURLE_OK ? rc : CURLE_COULDNT_CONNECT, 0, 0, now);
        return;
    }
    if (watch(w, fd, POLLIN) != 0) {
        close(fd);
        fp_finish(w, s, CURLE_OUT_OF_MEMORY, 0, 0, now);
        return;
    }
    s->fd = fd;
    w->fd_slot[fd] = s;
    s->reused = 0;
    s->wr_off = 0;
    h1_start(&s->h1, s->h1.head);
    s->phase = FP_READING; /* fp_write's state until it has to wait */
    fp_write(w, s);
}

/* Fails every request whose timeout has passed (they are in sent order). */
static void fp_expire(struct worker *w, int64_t now)
{
    int64_t tmo = w->e->timeout_ns;

    while (w->fhead != NULL && w->fhead->sent + tmo <= now) {
        struct slot *s = w->fhead;
        if (s->phase == FP_CONNECTING)
            curl_multi_remove_handle(w->multi, s->easy);
        fp_close(w, s);
        fp_finish(w, s, CURLE_OPERATION_TIMEDOUT, 0, 0, now);
    }
}

/* ---- sending and recording ------------------------------------------------------------------ */

/* index: kept in the slot (schedule index or the user's sequence); body: picks the body. */
static void send_request(struct worker *w, struct slot *s, int64_t due, int64_t now, uint64_t index,
                         uint64_t body)
{
    const struct he_target *t = w->e->t;

    s->due = due;
    s->sent = now;
    s->index = index;
    s->warm = due < w->e->warm_end;
    s->late = now - due > HE_LATE_NS;
    s->late_conn = s->late && w->conn_wait;
    s->refused = 0;
    w->in_flight++;
    if (w->e->fast) {
        fp_start(w, s, body); /* may finish at once (a failed write) */
        return;
    }
    if (t->n_bodies > 1) {
        size_t b = (size_t)(body % t->n_bodies);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body_lens[b]);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, t->bodies[b]);
    }
    curl_multi_add_handle(w->multi, s->easy);
}

/* Sends every request that is due by now, as long as a connection can be had. */
static void dispatch(struct worker *w, int64_t now)
{
    struct http_engine *e = w->e;

    for (;;) {
        int64_t due = next_due(w);
        struct slot *s;

        if (due == 0 || due > now)
            break;
        if (e->l->model == HE_OPEN && due >= e->end) {
            w->exhausted = 1;
            break;
        }
        s = take_slot(w);
        if (s == NULL) {
            w->conn_wait = 1;
            return;
        }
        if (e->l->model == HE_OPEN) {
            uint64_t i = w->next_i;
            w->next_i += (uint64_t)e->nthreads;
            send_request(w, s, due, now, i, i);
        } else {
            struct user_due ud = heap_pop(w);
            s->user = ud.user;
            /* Rotate bodies per user and per request so users do not all send the same one; keep
             * the user's own count in the slot for its next request. */
            send_request(w, s, ud.due, now, ud.seq, (uint64_t)ud.user + ud.seq);
        }
    }
    w->conn_wait = 0;
}

static void record(struct worker *w, struct slot *s, CURLcode rc, long code, int64_t bytes,
                   int64_t done)
{
    struct he_stats *st = w->cur;
    struct he_tally *t = s->warm ? &st->warm : &st->meas;
    int64_t lat = done - s->due;
    int ok = 0;

    t->requests++;
    if (rc == CURLE_OK) {
        if (code < 0 || code >= HE_STATUS_MAX)
            code = 0;
        t->status[code]++;
        ok = w->e->t->expect[code] != 0;
        if (ok)
            t->ok++;
        else
            t->errors[HE_ERR_STATUS]++;
        t->bytes += bytes;
    } else {
        t->errors[he_classify(rc)]++;
        t->forbidden += s->refused;
        t->curlcode[(int)rc < HE_CURLCODES ? (int)rc : HE_CURLCODES - 1]++;
    }
    t->late += s->late;
    t->late_conn += s->late_conn;
    if (s->sent - s->due > t->max_lag)
        t->max_lag = s->sent - s->due;
    t->last_done = done;
    if (s->warm) {
        hdr_record(st->latency_warm, lat);
        return;
    }
    hdr_record(st->latency, lat);
    hdr_record(st->service, done - s->sent);
    if (ok)
        hdr_record(st->latency_ok, lat);
}

/* A request is over (answered or failed): record it, free its slot, and in the closed model
 * schedule its user's next request. */
static void finish(struct worker *w, struct slot *s, CURLcode rc, long code, int64_t bytes,
                   int64_t done)
{
    struct http_engine *e = w->e;

    record(w, s, rc, code, bytes, done);
    w->in_flight--;
    s->next_idle = w->idle;
    w->idle = s;
    if (e->l->model == HE_CLOSED) {
        struct user_due ud = {.user = s->user, .seq = (uint32_t)s->index + 1};
        ud.due = e->period_ns > 0 ? s->due + (int64_t)e->period_ns : done;
        if (ud.due < done)
            ud.due = done;
        if (ud.due < e->end)
            heap_push(w, ud);
    }
}

/* Records every finished transfer (fast client: every connection curl finished opening). */
static void reap(struct worker *w, int64_t done)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        CURL *c = m->easy_handle;
        CURLcode rc = m->data.result;
        struct slot *s = NULL;
        long code = 0;
        curl_off_t bytes = 0;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&s);
        if (w->e->fast) {
            fp_connected(w, s, rc, done); /* m is invalid from here */
            continue;
        }
        if (rc == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
            curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &bytes);
        }
        curl_multi_remove_handle(w->multi, c); /* m is invalid from here */
        finish(w, s, rc, code, (int64_t)bytes, done);
    }
}

/* ---- per-second hand-over ------------------------------------------------------------------- */

/* Publishes what was recorded since the last seal; called by the worker about once per second. */
static void seal(struct worker *w, int64_t now, int final)
{
    struct http_engine *e = w->e;
    struct he_stats *tmp;

    pthread_mutex_lock(&w->lock);
    if (!w->pub_dirty) {
        tmp = w->pub;
        w->pub = w->cur;
        w->cur = tmp;
    } else {
        /* The coordinator has not taken the last second yet (it was late): add to it. */
        he_stats_merge(w->pub, w->cur);
        he_stats_reset(w->cur);
    }
    w->pub->in_flight = w->in_flight;
    w->pub->connections = w->n_easy;
    w->pub_dirty = 1;
    pthread_mutex_unlock(&w->lock);

    if (final) {
        atomic_store(&w->sealed, INT64_MAX);
        return;
    }
    w->sec = (now - e->t0) / NS_PER_S + 1;
    w->next_seal = e->t0 + w->sec * NS_PER_S;
    atomic_store(&w->sealed, w->sec - 1);
}

/* ---- the worker ----------------------------------------------------------------------------- */

/* CURLMOPT_SOCKETFUNCTION: curl says which sockets to watch for what; kept in w->pfd. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct worker *w = userp;

    (void)easy;
    (void)socketp;
    if (fd < 0)
        return 0;
    if (what == CURL_POLL_REMOVE) {
        unwatch(w, fd);
        return 0;
    }
    return watch(
        w, fd,
        (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0)));
}

/* CURLMOPT_TIMERFUNCTION: when curl next wants to be called with CURL_SOCKET_TIMEOUT. 0 ms means
 * now, and is taken as now: rounding it up to 1 ms would add a millisecond to every request. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct worker *w = userp;

    (void)multi;
    w->curl_deadline = timeout_ms < 0 ? 0 : lt_mono_ns() + (int64_t)timeout_ms * 1000000;
    return 0;
}

static void run_timeout(struct worker *w)
{
    int running;

    w->curl_deadline = 0; /* on_timer sets the next one during the call */
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* Waits until `wake` (ns) or socket activity, and hands every ready socket to curl. */
static void wait_and_run(struct worker *w, int64_t now, int64_t wake)
{
    struct ready {
        int fd;
        short revents;
    } ready[256];
    int64_t d = wake - now;
    struct timespec ts = {.tv_sec = d / NS_PER_S, .tv_nsec = d % NS_PER_S};
    int n, nready = 0, running;

    n = ppoll(w->pfd, (nfds_t)w->npfd, &ts, NULL);
    if (n <= 0)
        return;
    if (w->pfd[0].revents) {
        uint64_t v;
        if (read(w->wake_fd, &v, sizeof(v)) < 0)
            v = 0;
    }
    /* Copy first: curl's socket callback and the fast client reorder pfd while we hand sockets
     * over. A socket closed and reopened under the same number meanwhile gets a stale wake-up,
     * which both take as "try, maybe EAGAIN". */
    for (int i = 1; i < w->npfd && nready < (int)(sizeof(ready) / sizeof(ready[0])); i++) {
        short re = w->pfd[i].revents;
        if (re == 0)
            continue;
        ready[nready].fd = w->pfd[i].fd;
        ready[nready].revents = re;
        nready++;
    }
    for (int i = 0; i < nready; i++) {
        int fd = ready[i].fd;
        short re = ready[i].revents;
        struct slot *s = fd < w->fd_pos_len ? w->fd_slot[fd] : NULL;
        if (s != NULL) {
            fp_io(w, s, re);
            continue;
        }
        curl_multi_socket_action(w->multi, fd,
                                 ((re & POLLIN) ? CURL_CSELECT_IN : 0) |
                                     ((re & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                                     ((re & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0),
                                 &running);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct http_engine *e = w->e;

    /* Wake-ups within microseconds of the requested time, not the default 50 us slack. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    for (;;) {
        int64_t now = lt_mono_ns();
        int64_t wake, due;

        if (now >= w->next_seal)
            seal(w, now, 0);
        if (atomic_load_explicit(&e->stop, memory_order_relaxed))
            break;
        dispatch(w, now);
        if (w->curl_deadline != 0 && w->curl_deadline <= lt_mono_ns())
            run_timeout(w);
        if (w->in_flight > 0)
            reap(w, lt_mono_ns());
        due = next_due(w);
        if (e->l->model == HE_OPEN && due >= e->end) {
            w->exhausted = 1;
            due = 0;
        }
        if (due == 0 && w->in_flight == 0)
            break;
        wake = w->next_seal;
        if (due != 0 && !w->conn_wait && due < wake)
            wake = due;
        if (w->curl_deadline != 0 && w->curl_deadline < wake)
            wake = w->curl_deadline;
        if (w->fhead != NULL && w->fhead->sent + e->timeout_ns < wake)
            wake = w->fhead->sent + e->timeout_ns;
        /* Always look at the sockets, without waiting when something is due already: a loop
         * that only sent would starve the answers at high rates. */
        now = lt_mono_ns();
        wait_and_run(w, now, wake > now ? wake : now);
        if (w->in_flight > 0)
            reap(w, lt_mono_ns());
        if (w->fhead != NULL)
            fp_expire(w, lt_mono_ns());
    }
    /* Stopped or finished: abandon whatever is in flight (a stopped run keeps what completed). */
    for (int i = 0; i < w->n_easy; i++) {
        curl_multi_remove_handle(w->multi, w->slots[i].easy);
        fp_close(w, &w->slots[i]);
    }
    w->fhead = w->ftail = NULL;
    seal(w, lt_mono_ns(), 1); /* publishes in_flight: the requests abandoned */
    w->in_flight = 0;
    atomic_store(&w->done, 1);
    return NULL;
}

/* ---- the fast client: what it sends --------------------------------------------------------- */

/* Is "Name: ..." / "Name;" / "Name:" (curl syntax) the header name? */
static int header_named(const char *line, const char *name)
{
    size_t n = strlen(name);

    return strncasecmp(line, name, n) == 0 && (line[n] == ':' || line[n] == ';');
}

static int has_header(const struct he_target *t, const char *name)
{
    for (size_t i = 0; i < t->n_headers; i++) {
        if (header_named(t->headers[i], name))
            return 1;
    }
    return 0;
}

/* Formats what libcurl would send for body b (b < 0: no body): request line, Host, Accept, the
 * spec's headers in curl's syntax ("Name:" drops a header, "Name;" sends it empty),
 * Content-Type and Content-Length for a body. Returns 0, or -1 on allocation failure. */
static int fp_format(const struct he_target *t, const char *target, const char *host, long b,
                     struct fp_req *rq)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int with_body = b >= 0 || strcmp(t->method, "POST") == 0;
    size_t blen = b >= 0 ? t->body_lens[b] : 0;

    if (f == NULL)
        return -1;
    fprintf(f, "%s %s HTTP/1.1\r\n", t->method, target);
    if (!has_header(t, "Host"))
        fprintf(f, "Host: %s\r\n", host);
    if (!has_header(t, "Accept"))
        fputs("Accept: */*\r\n", f);
    for (size_t i = 0; i < t->n_headers; i++) {
        const char *h = t->headers[i];
        const char *c = h + strcspn(h, ":;");
        if (*c == ';' && c[1] == '\0') {
            fprintf(f, "%.*s:\r\n", (int)(c - h), h);
            continue;
        }
        if (*c != ':')
            continue;
        if (c[1 + strspn(c + 1, " \t")] == '\0')
            continue; /* "Name:" removes one of curl's own headers */
        fprintf(f, "%s\r\n", h);
    }
    if (with_body) {
        if (!has_header(t, "Content-Type"))
            fputs("Content-Type: application/x-www-form-urlencoded\r\n", f);
        fprintf(f, "Content-Length: %zu\r\n", blen);
    }
    fputs("\r\n", f);
    rq->body = NULL;
    rq->body_len = 0;
    if (blen > 0 && blen <= FP_INLINE_BODY) {
        fwrite(t->bodies[b], 1, blen, f);
    } else if (blen > 0) {
        rq->body = t->bodies[b];
        rq->body_len = blen;
    }
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    rq->head = buf;
    rq->head_len = len;
    return buf != NULL ? 0 : -1;
}

/* Chooses the fast client when it can stand in for libcurl: an http:// URL without user
 * information or an IPv6 zone. Builds its requests. Returns 0 (e->fast set or not), -1 when
 * out of memory. */
static int fp_prepare(struct http_engine *e, CURLU *u)
{
    const struct he_target *t = e->t;
    char *scheme = NULL, *user = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    char *target = NULL, *hosthdr = NULL;
    int rc = 0;

    e->fast = 0;
    if (t->engine != HE_ENGINE_AUTO || u == NULL)
        return 0;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "http") != 0 ||
        curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || strchr(host, '%') != NULL ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK) {
        curl_free(port);
        port = NULL;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK) {
        curl_free(query);
        query = NULL;
    }
    rc = -1;
    if (asprintf(&target, "%s%s%s", path[0] ? path : "/", query ? "?" : "", query ? query : "") <
        0) {
        target = NULL;
        goto out;
    }
    /* curl leaves the port out of Host when it is the scheme's default */
    if (asprintf(&hosthdr, "%s%s%s", host, port && strcmp(port, "80") != 0 ? ":" : "",
                 port && strcmp(port, "80") != 0 ? port : "") < 0) {
        hosthdr = NULL;
        goto out;
    }
    e->n_reqs = t->n_bodies > 0 ? t->n_bodies : 1;
    e->reqs = calloc(e->n_reqs, sizeof(*e->reqs));
    if (e->reqs == NULL)
        goto out;
    for (size_t i = 0; i < e->n_reqs; i++) {
        if (fp_format(t, target, hosthdr, t->n_bodies > 0 ? (long)i : -1, &e->reqs[i]) != 0)
            goto out;
    }
    e->fast = 1;
    rc = 0;
out:
    free(target);
    free(hosthdr);
    curl_free(scheme);
    curl_free(user);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    return rc;
}

/* ---- the engine ----------------------------------------------------------------------------- */

struct http_engine *http_engine_new(const struct he_target *target, const struct he_load *load,
                                    struct lt_error *err)
{
    struct http_engine *e = calloc(1, sizeof(*e));
    int n = load->threads;

    if (e == NULL)
        goto nomem;
    e->t = target;
    e->l = load;
    if (n < 1)
        n = 1;
    if (n > HE_MAX_THREADS)
        n = HE_MAX_THREADS;
    if (n > load->max_connections)
        n = load->max_connections;
    if (load->model == HE_CLOSED && n > load->users)
        n = load->users;
    e->nthreads = n;
    e->period_ns = load->rate_per_user > 0 ? 1e9 / load->rate_per_user : 0;
    e->timeout_ns = (int64_t)target->timeout_ms * 1000000;
    {
        CURLU *u = curl_url();
        int rc = -1;
        if (u != NULL) {
            rc = 0;
            if (curl_url_set(u, CURLUPART_URL, target->url, 0) == CURLUE_OK)
                rc = fp_prepare(e, u);
            curl_url_cleanup(u);
        }
        if (rc != 0)
            goto nomem;
    }
    for (size_t i = 0; i < target->n_headers; i++) {
        struct curl_slist *h = curl_slist_append(e->headers, target->headers[i]);
        if (h == NULL)
            goto nomem;
        e->headers = h;
    }
    e->spare = he_stats_new();
    e->workers = calloc((size_t)n, sizeof(*e->workers));
    if (e->spare == NULL || e->workers == NULL)
        goto nomem;
    for (int i = 0; i < n; i++) {
        e->workers[i].wake_fd = -1;
        pthread_mutex_init(&e->workers[i].lock, NULL);
    }
    for (int i = 0; i < n; i++) {
        struct worker *w = &e->workers[i];
        int per = (load->max_connections + n - 1) / n;

        w->e = e;
        w->id = i;
        if (load->model == HE_CLOSED) {
            int users = load->users / n + (i < load->users % n);
            if (per > users)
                per = users;
            w->heap = calloc((size_t)users, sizeof(*w->heap));
            if (w->heap == NULL)
                goto nomem;
        }
        w->cap = per;
        w->slots = calloc((size_t)per, sizeof(*w->slots));
        w->cur = he_stats_new();
        w->pub = he_stats_new();
        w->multi = curl_multi_init();
        w->url = curl_url();
        if (w->url != NULL && curl_url_set(w->url, CURLUPART_URL, target->url, 0) != CURLUE_OK) {
            curl_url_cleanup(w->url);
            w->url = NULL;
        }
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->cap_pfd = 64;
        w->npfd = 1;
        w->pfd = calloc((size_t)w->cap_pfd, sizeof(*w->pfd));
        if (e->fast)
            w->rbuf = malloc(RBUF_LEN);
        if (!w->slots || !w->cur || !w->pub || !w->multi || !w->pfd || (e->fast && !w->rbuf))
            goto nomem;
        if (w->wake_fd < 0) {
            lt_error_set(err, LT_ERR_IO, NULL, "eventfd: %s", strerror(errno));
            http_engine_free(e);
            return NULL;
        }
        /* One connection per easy handle, all kept alive; no HTTP/2 multiplexing. */
        curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)per);
        curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)per);
        curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, (void *)w);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, (void *)w);
        w->pfd[0].fd = w->wake_fd;
        w->pfd[0].events = POLLIN;
    }
    return e;
nomem:
    http_engine_free(e);
    lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory building the load engine");
    return NULL;
}

lt_status http_engine_start(struct http_engine *e, int64_t *t0, struct lt_error *err)
{
    const struct he_load *l = e->l;

    /* A little ahead, so every thread is up before the first request is due. */
    e->t0 = lt_mono_ns() + 2000000;
    e->warm_end = e->t0 + l->warmup_ns;
    e->end = e->warm_end + l->duration_ns;
    for (int i = 0; i < e->nthreads; i++) {
        struct worker *w = &e->workers[i];
        w->sec = 1;
        w->next_seal = e->t0 + NS_PER_S;
        w->next_i = (uint64_t)i;
        if (l->model == HE_CLOSED) {
            for (int u = i; u < l->users; u += e->nthreads) {
                struct user_due ud = {.user = u, .seq = 0};
                ud.due = e->t0 + (e->period_ns > 0 ? user_phase(e, u) : 0);
                if (ud.due < e->end)
                    heap_push(w, ud);
            }
        }
    }
    for (int i = 0; i < e->nthreads; i++) {
        int rc = pthread_create(&e->workers[i].thread, NULL, worker_main, &e->workers[i]);
        if (rc != 0) {
            http_engine_stop(e);
            http_engine_join(e);
            return lt_error_set(err, LT_ERR_INTERNAL, NULL, "pthread_create: %s", strerror(rc));
        }
        e->workers[i].started = 1;
    }
    *t0 = e->t0;
    return LT_OK;
}

void http_engine_collect(struct http_engine *e, int64_t sec, int64_t max_wait_ns,
                         struct he_stats *into)
{
    int64_t give_up = lt_mono_ns() + max_wait_ns;

    for (int i = 0; i < e->nthreads; i++) {
        struct worker *w = &e->workers[i];
        struct he_stats *tmp;
        int dirty;

        while (w->started && atomic_load(&w->sealed) < sec && lt_mono_ns() < give_up) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&w->lock);
        dirty = w->pub_dirty;
        if (dirty) {
            tmp = w->pub;
            w->pub = e->spare;
            e->spare = tmp;
            w->pub_dirty = 0;
        }
        pthread_mutex_unlock(&w->lock);
        if (dirty) {
            he_stats_merge(into, e->spare);
            he_stats_reset(e->spare);
        }
    }
}

int http_engine_done(struct http_engine *e)
{
    for (int i = 0; i < e->nthreads; i++) {
        if (e->workers[i].started && !atomic_load(&e->workers[i].done))
            return 0;
    }
    return 1;
}

void http_engine_stop(struct http_engine *e)
{
    atomic_store(&e->stop, 1);
    for (int i = 0; i < e->nthreads; i++) {
        uint64_t one = 1;
        if (e->workers[i].wake_fd >= 0 && write(e->workers[i].wake_fd, &one, sizeof(one)) < 0)
            one = 0; /* full counter: the worker is being woken anyway */
    }
}

void http_engine_join(struct http_engine *e)
{
    for (int i = 0; i < e->nthreads; i++) {
        if (e->workers[i].started) {
            pthread_join(e->workers[i].thread, NULL);
            e->workers[i].started = 0;
        }
    }
}

const char *http_engine_kind(const struct http_engine *e)
{
    return e->fast ? "fast-http1" : "libcurl";
}

int http_engine_threads(const struct http_engine *e)
{
    return e->nthreads;
}

int64_t http_engine_peak_connections(struct http_engine *e)
{
    int64_t n = 0;

    /* Easy handles are only ever added, so their count is the peak; read after the join. */
    for (int i = 0; i < e->nthreads; i++)
        n += e->workers[i].n_easy;
    return n;
}

void http_engine_free(struct http_engine *e)
{
    if (e == NULL)
        return;
    http_engine_join(e);
    for (int i = 0; e->workers && i < e->nthreads; i++) {
        struct worker *w = &e->workers[i];
        for (int j = 0; j < w->n_easy; j++) {
            if (w->slots[j].fd >= 0)
                close(w->slots[j].fd);
            curl_easy_cleanup(w->slots[j].easy);
        }
        if (w->multi)
            curl_multi_cleanup(w->multi);
        curl_url_cleanup(w->url);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->pfd);
        free(w->fd_pos);
        free(w->fd_slot);
        free(w->rbuf);
        he_stats_free(w->pub);
        he_stats_free(w->cur);
        free(w->slots);
        free(w->heap);
        pthread_mutex_destroy(&w->lock);
    }
    free(e->workers);
    for (size_t i = 0; e->reqs && i < e->n_reqs; i++)
        free(e->reqs[i].head);
    free(e->reqs);
    he_stats_free(e->spare);
    curl_slist_free_all(e->headers);
    free(e);
}
