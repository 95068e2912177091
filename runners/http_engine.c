/*
 * http_engine: worker threads that send HTTP requests on a schedule with libcurl's multi
 * interface and record latencies without coordinated omission. See http_engine.h for the API.
 *
 * DESIGN
 *
 * Threads.
 *   coordinator  the caller's thread (a run thread executing a runner). Creates the engine, starts
 *                the workers, calls http_engine_collect once per second and stop/join at the end.
 *                Owns `spare` (one he_stats it trades for a worker's published one).
 *   worker[i]    one per load thread, wrk-style. Owns, without any lock: its CURLM, its easy
 *                handles and their slots, its pollfd set and wake eventfd, its part of the
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
 * The hot path (per request, on a worker): take an idle easy handle (free list) or create one up
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
 * Per-transfer cost trimmed on curl's side: the URL is parsed once (CURLOPT_CURLU; curl copies
 * the handle instead of re-parsing, ~7%), and an explicit empty CURLOPT_PROXY stops curl reading
 * the *_proxy environment variables on every request (also keeps load off a proxy the allowlist
 * would never see).
 */
#define _GNU_SOURCE
#include "http_engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lt_util.h"

#define NS_PER_S 1000000000LL

struct worker;

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
    int *fd_pos; /* fd -> index in pfd, -1 when not watched; fd_pos_len entries */
    int fd_pos_len;
    int64_t curl_deadline; /* when curl wants CURL_SOCKET_TIMEOUT (ns); 0 = no timer */

    struct slot *slots; /* cap slots; the first n_easy carry an easy handle */
    int cap;
    int n_easy;
    struct slot *idle;
    int in_flight;
    int conn_wait; /* due requests had to wait for a connection since the last drain */

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

static void send_request(struct worker *w, struct slot *s, int64_t due, int64_t now, uint64_t index)
{
    const struct he_target *t = w->e->t;

    s->due = due;
    s->sent = now;
    s->index = index;
    s->warm = due < w->e->warm_end;
    s->late = now - due > HE_LATE_NS;
    s->late_conn = s->late && w->conn_wait;
    s->refused = 0;
    if (t->n_bodies > 1) {
        size_t b = (size_t)(index % t->n_bodies);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body_lens[b]);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, t->bodies[b]);
    }
    curl_multi_add_handle(w->multi, s->easy);
    w->in_flight++;
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
            send_request(w, s, due, now, w->next_i);
            w->next_i += (uint64_t)e->nthreads;
        } else {
            struct user_due ud = heap_pop(w);
            s->user = ud.user;
            /* Rotate bodies per user and per request so users do not all send the same one. */
            send_request(w, s, ud.due, now, (uint64_t)ud.user + ud.seq);
            s->index = ud.seq; /* keep the user's own count for the next request */
        }
    }
    w->conn_wait = 0;
}

static void record(struct worker *w, struct slot *s, CURLcode rc, long code, int64_t done)
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
        {
            curl_off_t bytes = 0;
            curl_easy_getinfo(s->easy, CURLINFO_SIZE_DOWNLOAD_T, &bytes);
            t->bytes += bytes;
        }
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

/* Records every finished transfer; returns how many finished. */
static int reap(struct worker *w, int64_t done)
{
    struct http_engine *e = w->e;
    CURLMsg *m;
    int left, n = 0;

    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        CURL *c = m->easy_handle;
        CURLcode rc = m->data.result;
        struct slot *s = NULL;
        long code = 0;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&s);
        if (rc == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(w->multi, c); /* m is invalid from here */
        record(w, s, rc, code, done);
        w->in_flight--;
        s->next_idle = w->idle;
        w->idle = s;
        n++;
        if (e->l->model == HE_CLOSED) {
            struct user_due ud = {.user = s->user, .seq = (uint32_t)s->index + 1};
            ud.due = e->period_ns > 0 ? s->due + (int64_t)e->period_ns : done;
            if (ud.due < done)
                ud.due = done;
            if (ud.due < e->end)
                heap_push(w, ud);
        }
    }
    return n;
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
    int pos;

    (void)easy;
    (void)socketp;
    if (fd < 0)
        return 0;
    if (fd >= w->fd_pos_len) {
        int len = fd + 64;
        int *np = realloc(w->fd_pos, (size_t)len * sizeof(*np));
        if (np == NULL)
            return -1;
        for (int i = w->fd_pos_len; i < len; i++)
            np[i] = -1;
        w->fd_pos = np;
        w->fd_pos_len = len;
    }
    pos = w->fd_pos[fd];
    if (what == CURL_POLL_REMOVE) {
        if (pos > 0) {
            w->pfd[pos] = w->pfd[--w->npfd];
            w->fd_pos[w->pfd[pos].fd] = pos;
            w->fd_pos[fd] = -1;
        }
        return 0;
    }
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
    w->pfd[pos].events =
        (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    w->pfd[pos].revents = 0;
    return 0;
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
        int bits;
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
    /* Copy first: curl's socket callback reorders pfd while we hand sockets over. */
    for (int i = 1; i < w->npfd && nready < (int)(sizeof(ready) / sizeof(ready[0])); i++) {
        short re = w->pfd[i].revents;
        if (re == 0)
            continue;
        ready[nready].fd = w->pfd[i].fd;
        ready[nready].bits = ((re & POLLIN) ? CURL_CSELECT_IN : 0) |
                             ((re & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                             ((re & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
        nready++;
    }
    for (int i = 0; i < nready; i++)
        curl_multi_socket_action(w->multi, ready[i].fd, ready[i].bits, &running);
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
        /* Always look at the sockets, without waiting when something is due already: a loop
         * that only sent would starve the answers at high rates. */
        now = lt_mono_ns();
        wait_and_run(w, now, wake > now ? wake : now);
        if (w->in_flight > 0)
            reap(w, lt_mono_ns());
    }
    /* Stopped or finished: abandon whatever is in flight (a stopped run keeps what completed). */
    for (int i = 0; i < w->n_easy; i++)
        curl_multi_remove_handle(w->multi, w->slots[i].easy);
    seal(w, lt_mono_ns(), 1); /* publishes in_flight: the requests abandoned */
    w->in_flight = 0;
    atomic_store(&w->done, 1);
    return NULL;
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
        if (!w->slots || !w->cur || !w->pub || !w->multi || !w->pfd)
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
        for (int j = 0; j < w->n_easy; j++)
            curl_easy_cleanup(w->slots[j].easy);
        if (w->multi)
            curl_multi_cleanup(w->multi);
        curl_url_cleanup(w->url);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->pfd);
        free(w->fd_pos);
        he_stats_free(w->pub);
        he_stats_free(w->cur);
        free(w->slots);
        free(w->heap);
        pthread_mutex_destroy(&w->lock);
    }
    free(e->workers);
    he_stats_free(e->spare);
    curl_slist_free_all(e->headers);
    free(e);
}
