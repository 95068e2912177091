/*
 * latency_target: an HTTP server whose answers take exactly known times, for the capacity
 * tests to aim runs at and compare what loadtestd measured with what the target did. Every
 * delay is an absolute deadline on CLOCK_MONOTONIC counted from the moment the request's
 * headers arrived, so the delay a client sees is the configured one plus network and parsing.
 *
 * Usage: latency_target --port N [--host 127.0.0.1]
 *   --port 0 picks a free port. On start it prints one line "PORT=<n>" on stdout (flushed),
 *   then serves until SIGTERM or SIGINT and exits 0.
 *
 * Routes. Any method unless one is named; parameters are required decimal integers, every
 * ms in 0..600000; a bad or missing one answers 400, a /control route with the wrong method
 * 405 (with Allow). Request bodies up to 1 MiB are read and discarded; a larger Content-Length
 * gets 413 at once (nothing else happens, nothing is counted), a larger chunked body a closed
 * connection. Delays count from the arrival of the request's headers.
 *   /fixed?ms=X              200 {"ok":true} at arrival + X.
 *   /bimodal?fast_ms=A&slow_ms=B&slow_every=N
 *                            the n-th valid /bimodal request since start or reset (one global
 *                            sequence) answers at arrival + B when n % N == 0, else + A;
 *                            body {"ok":true,"n":n,"slow":bool}.
 *   /stall?ms=X              answers at max(arrival, stall_end) + X if the arrival is inside
 *                            the stall window [stall_start, stall_end), else at arrival + X.
 *   POST /control/stall?ms=S&after_ms=D
 *                            sets the (single) stall window to [now + D, now + D + S),
 *                            replacing any earlier one; answers 200 at once.
 *   /status?code=C           status C (100..599) with {"status":C} at once. 204 and 304 go
 *                            without the body; a 1xx is interim in HTTP/1.1, so a client gets
 *                            no final answer and waits for its timeout.
 *   /hang                    no answer: the connection is dropped when the client closes it,
 *                            the server stops, or after 120 s.
 *   /json                    200 with a fixed 103-byte JSON object, at once.
 *   GET /control/stats       {"requests":n,"by_path":{"/fixed":n,"/bimodal":n,"/stall":n,
 *                            "/status":n,"/hang":n,"/json":n,"other":n}}: requests received
 *                            (when their headers arrived), 404s under "other", /control/...
 *                            not counted.
 *   POST /control/reset      zeroes the counters, restarts the /bimodal sequence and cancels
 *                            the stall window.
 * Routes for the engine's HTTP/1.1 parser (not counted in /control/stats; answered at once):
 *   /chunked?n=N&size=S      200, Transfer-Encoding: chunked, N chunks of S bytes ('x').
 *   /close                   200 {"ok":true} with Connection: close; the connection is closed.
 *   /http10?len=L            "HTTP/1.0 200 OK", L = 1: with Content-Length, 0: the body ends
 *                            with the close; the connection is closed either way.
 *   /slowbytes?chunked=C     a 200 written one byte per write(2), 200 us apart (C = 1: chunked
 *                            body, 0: Content-Length), Connection: close.
 *   /garbage                 "garbage\r\n\r\n" (no status line), then the connection closes.
 * Misbehaviour for the fault tests (not counted; at once):
 *   /reset                   no answer: the connection is reset (RST, no FIN).
 *   /truncated               a 200 promising a 100-byte body (Content-Length) of which 11 bytes
 *                            are sent, then the connection closes mid-answer.
 *   anything else            404 {"error":"not_found"}.
 *
 * Self-check by hand, expected "status_seconds" on the right:
 *   U=http://127.0.0.1:<port>; F='-s -o /dev/null -w %{http_code}_%{time_total}\n'
 *   curl $F "$U/fixed?ms=200"                                           200_0.20..
 *   for i in 1 2 3 4; do curl $F "$U/bimodal?fast_ms=10&slow_ms=300&slow_every=4"; done
 *                                                                       200_0.01.. x3, 200_0.30..
 *   curl $F -X POST "$U/control/stall?ms=1000&after_ms=0"               200_0.00..
 *   curl $F "$U/stall?ms=50"                                            200_1.0..
 *   curl $F "$U/status?code=503"                                        503_0.00..
 *   curl $F -m 1 "$U/hang"                                              000_1.00..
 *   curl $F "$U/nope"                                                   404_0.00..
 *   curl -s "$U/control/stats"                                          "requests":10
 *
 * DESIGN. Threads: "main" parses the command line, starts the daemon and waits in sigwait()
 * (SIGTERM and SIGINT are blocked in every thread, so only main sees them); libmicrohttpd's
 * listening thread accepts; one libmicrohttpd thread per connection runs the access handler,
 * sleeping in it for the request's delay, so a slow answer never holds up another connection.
 * Shared state: the per-route request counters, the /bimodal sequence number and the stopping
 * flag are atomics; the stall window is two numbers guarded by stall_lock. Sleeps wake every
 * 100 ms to check the stopping flag, so a stop never waits for a long delay.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MSG_DONTWAIT */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <microhttpd.h>

#define MAX_BODY_BYTES  (1024 * 1024) /* request bodies above this are refused */
#define MAX_DELAY_MS    600000        /* any ms parameter: 10 minutes at most */
#define HANG_LIMIT_MS   120000        /* /hang gives up after this */
#define POLL_STEP_NS    100000000LL   /* sleeps wake this often to check `stopping` */
#define CONNECTION_MAX  4096
#define THREAD_STACK    (256 * 1024)
#define NS_PER_MS       1000000LL
#define RESPONSE_BUFFER 512

/* Routes whose requests are counted, in the order /control/stats lists them. */
enum counted {
    C_FIXED,
    C_BIMODAL,
    C_STALL,
    C_STATUS,
    C_HANG,
    C_JSON,
    C_OTHER, /* paths with no route (404) */
    C_COUNT
};

static const char *const counted_name[C_COUNT] = {"/fixed", "/bimodal", "/stall", "/status",
                                                  "/hang",  "/json",    "other"};

/* One request's plan, made when its headers arrive and carried out when its body is in. */
struct request {
    int64_t arrival_ns;   /* CLOCK_MONOTONIC when the headers arrived */
    int64_t answer_at_ns; /* CLOCK_MONOTONIC deadline for the answer */
    size_t body_bytes;    /* request body read (and discarded) so far */
    int hang;             /* never answer: see serve_hang */
    unsigned status;      /* HTTP status of the answer */
    const char *allow;    /* Allow header for a 405, else NULL */
    const char *raw;      /* written as it is on the socket, then the connection closes */
    int raw_slow;         /* ... one byte per write */
    int reset;            /* after raw (may be ""): close with RST instead of FIN */
    int close;            /* Connection: close */
    long long chunk_n;    /* > 0: a chunked answer of chunk_n chunks of chunk_size bytes */
    long long chunk_size;
    char body[RESPONSE_BUFFER];
};

static atomic_int stopping;            /* set once, when a signal arrives */
static atomic_llong counters[C_COUNT]; /* requests received per counted route */
static atomic_llong bimodal_seq;       /* /bimodal requests since start or reset */
/* guards: stall_start_ns, stall_end_ns */
static pthread_mutex_t stall_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t stall_start_ns;
static int64_t stall_end_ns; /* == stall_start_ns: no window */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps until the absolute CLOCK_MONOTONIC time deadline_ns. Returns 0 then, or -1 early if
 * the server is stopping. */
static int sleep_until(int64_t deadline_ns)
{
    for (;;) {
        int64_t now = now_ns(), step = deadline_ns;
        struct timespec ts;

        if (atomic_load(&stopping))
            return -1;
        if (now >= deadline_ns)
            return 0;
        if (step - now > POLL_STEP_NS)
            step = now + POLL_STEP_NS;
        ts.tv_sec = (time_t)(step / 1000000000LL);
        ts.tv_nsec = (long)(step % 1000000000LL);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
}

static void set_answer(struct request *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the status and the JSON body of the answer. */
static void set_answer(struct request *r, unsigned status, const char *fmt, ...)
{
    va_list ap;

    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->body, sizeof(r->body), fmt, ap);
    va_end(ap);
}

/* Reads query parameter name as an integer in [min, max] into *out. Returns 0, or -1 after
 * setting a 400 answer naming the parameter. */
static int query_int(struct MHD_Connection *c, struct request *r, const char *name, long long min,
                     long long max, long long *out)
{
    const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    char *end = NULL;
    long long v;

    if (s == NULL || *s == '\0')
        goto bad;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    set_answer(r, MHD_HTTP_BAD_REQUEST,
               "{\"error\":\"bad_request\",\"message\":\"%s must be an integer in %lld..%lld\"}",
               name, min, max);
    r->answer_at_ns = r->arrival_ns;
    return -1;
}

static void plan_fixed(struct MHD_Connection *c, struct request *r)
{
    long long ms;

    if (query_int(c, r, "ms", 0, MAX_DELAY_MS, &ms) != 0)
        return;
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true}");
    r->answer_at_ns = r->arrival_ns + ms * NS_PER_MS;
}

static void plan_bimodal(struct MHD_Connection *c, struct request *r)
{
    long long fast, slow, every, n;

    if (query_int(c, r, "fast_ms", 0, MAX_DELAY_MS, &fast) != 0 ||
        query_int(c, r, "slow_ms", 0, MAX_DELAY_MS, &slow) != 0 ||
        query_int(c, r, "slow_every", 1, 1000000000, &every) != 0)
        return;
    n = atomic_fetch_add(&bimodal_seq, 1) + 1;
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true,\"n\":%lld,\"slow\":%s}", n,
               n % every == 0 ? "true" : "false");
    r->answer_at_ns = r->arrival_ns + (n % every == 0 ? slow : fast) * NS_PER_MS;
}

static void plan_stall(struct MHD_Connection *c, struct request *r)
{
    long long ms;
    int64_t start, end, base;

    if (query_int(c, r, "ms", 0, MAX_DELAY_MS, &ms) != 0)
        return;
    pthread_mutex_lock(&stall_lock);
    start = stall_start_ns;
    end = stall_end_ns;
    pthread_mutex_unlock(&stall_lock);
    base = r->arrival_ns >= start && r->arrival_ns < end ? end : r->arrival_ns;
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true,\"stalled\":%s}",
               base != r->arrival_ns ? "true" : "false");
    r->answer_at_ns = base + ms * NS_PER_MS;
}

static void plan_status(struct MHD_Connection *c, struct request *r)
{
    long long code;

    if (query_int(c, r, "code", 100, 599, &code) != 0)
        return;
    set_answer(r, (unsigned)code, "{\"status\":%lld}", code);
    r->answer_at_ns = r->arrival_ns;
}

static void plan_hang(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    r->hang = 1;
    r->answer_at_ns = r->arrival_ns + HANG_LIMIT_MS * NS_PER_MS;
}

static void plan_json(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    set_answer(r, MHD_HTTP_OK,
               "{\"id\":42,\"name\":\"latency_target\",\"tags\":[\"alpha\",\"beta\",\"gamma\"],"
               "\"value\":3.14159,\"ok\":true,\"n\":[1,2,3]}");
    r->answer_at_ns = r->arrival_ns;
}

static void plan_chunked(struct MHD_Connection *c, struct request *r)
{
    if (query_int(c, r, "n", 1, 100000, &r->chunk_n) != 0 ||
        query_int(c, r, "size", 1, 1000000, &r->chunk_size) != 0) {
        r->chunk_n = 0;
        return;
    }
    r->status = MHD_HTTP_OK;
    r->answer_at_ns = r->arrival_ns;
}

static void plan_close(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    r->close = 1;
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true}");
    r->answer_at_ns = r->arrival_ns;
}

static void plan_http10(struct MHD_Connection *c, struct request *r)
{
    long long len;

    if (query_int(c, r, "len", 0, 1, &len) != 0)
        return;
    r->raw = len ? "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   "11\r\n\r\n{\"ok\":true}"
                 : "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}";
    r->answer_at_ns = r->arrival_ns;
}

static void plan_slowbytes(struct MHD_Connection *c, struct request *r)
{
    long long chunked;

    if (query_int(c, r, "chunked", 0, 1, &chunked) != 0)
        return;
    r->raw = chunked ? "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: "
                       "close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n6;x=y\r\n"
                       ":true}\r\n0\r\nX-Trailer: 1\r\n\r\n"
                     : "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: "
                       "close\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    r->raw_slow = 1;
    r->answer_at_ns = r->arrival_ns;
}

static void plan_garbage(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    r->raw = "garbage\r\n\r\n";
    r->answer_at_ns = r->arrival_ns;
}

static void plan_reset(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    r->raw = "";
    r->reset = 1;
    r->answer_at_ns = r->arrival_ns;
}

static void plan_truncated(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    r->raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
             "{\"ok\":true,";
    r->answer_at_ns = r->arrival_ns;
}

static void plan_control_stall(struct MHD_Connection *c, struct request *r)
{
    long long ms, after;

    if (query_int(c, r, "ms", 0, MAX_DELAY_MS, &ms) != 0 ||
        query_int(c, r, "after_ms", 0, MAX_DELAY_MS, &after) != 0)
        return;
    pthread_mutex_lock(&stall_lock);
    stall_start_ns = r->arrival_ns + after * NS_PER_MS;
    stall_end_ns = stall_start_ns + ms * NS_PER_MS;
    pthread_mutex_unlock(&stall_lock);
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true,\"starts_in_ms\":%lld,\"lasts_ms\":%lld}", after, ms);
    r->answer_at_ns = r->arrival_ns;
}

static void plan_control_stats(struct MHD_Connection *c, struct request *r)
{
    long long n[C_COUNT], total = 0;

    (void)c;
    for (int i = 0; i < C_COUNT; i++)
        total += n[i] = atomic_load(&counters[i]);
    set_answer(r, MHD_HTTP_OK,
               "{\"requests\":%lld,\"by_path\":{\"%s\":%lld,\"%s\":%lld,\"%s\":%lld,\"%s\":%lld,"
               "\"%s\":%lld,\"%s\":%lld,\"%s\":%lld}}",
               total, counted_name[0], n[0], counted_name[1], n[1], counted_name[2], n[2],
               counted_name[3], n[3], counted_name[4], n[4], counted_name[5], n[5], counted_name[6],
               n[6]);
    r->answer_at_ns = r->arrival_ns;
}

static void plan_control_reset(struct MHD_Connection *c, struct request *r)
{
    (void)c;
    for (int i = 0; i < C_COUNT; i++)
        atomic_store(&counters[i], 0);
    atomic_store(&bimodal_seq, 0);
    pthread_mutex_lock(&stall_lock);
    stall_start_ns = stall_end_ns = 0;
    pthread_mutex_unlock(&stall_lock);
    set_answer(r, MHD_HTTP_OK, "{\"ok\":true}");
    r->answer_at_ns = r->arrival_ns;
}

/* The routes. method NULL: any method; counted < 0: not counted in /control/stats. */
static const struct route {
    const char *method;
    const char *path;
    int counted;
    void (*plan)(struct MHD_Connection *c, struct request *r);
} routes[] = {
    {NULL, "/fixed", C_FIXED, plan_fixed},
    {NULL, "/bimodal", C_BIMODAL, plan_bimodal},
    {NULL, "/stall", C_STALL, plan_stall},
    {NULL, "/status", C_STATUS, plan_status},
    {NULL, "/hang", C_HANG, plan_hang},
    {NULL, "/json", C_JSON, plan_json},
    {NULL, "/chunked", -1, plan_chunked},
    {NULL, "/close", -1, plan_close},
    {NULL, "/http10", -1, plan_http10},
    {NULL, "/slowbytes", -1, plan_slowbytes},
    {NULL, "/garbage", -1, plan_garbage},
    {NULL, "/reset", -1, plan_reset},
    {NULL, "/truncated", -1, plan_truncated},
    {"POST", "/control/stall", -1, plan_control_stall},
    {"GET", "/control/stats", -1, plan_control_stats},
    {"POST", "/control/reset", -1, plan_control_reset},
};

/* Looks up the route for (method, url) and makes the request's plan. */
static void plan_request(struct MHD_Connection *c, const char *method, const char *url,
                         struct request *r)
{
    int path_known = 0;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];

        if (strcmp(url, rt->path) != 0)
            continue;
        path_known = 1;
        if (rt->method != NULL && strcmp(method, rt->method) != 0) {
            r->allow = rt->method;
            continue;
        }
        if (rt->counted >= 0)
            atomic_fetch_add(&counters[rt->counted], 1);
        rt->plan(c, r);
        return;
    }
    r->answer_at_ns = r->arrival_ns;
    if (path_known) {
        set_answer(r, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"method_not_allowed\"}");
        return;
    }
    if (strncmp(url, "/control/", 9) != 0)
        atomic_fetch_add(&counters[C_OTHER], 1);
    r->allow = NULL;
    set_answer(r, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}");
}

/* A chunked answer in the making: chunks left to produce. */
struct chunks {
    long long left;
    long long size;
};

static ssize_t chunk_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct chunks *ch = cls;
    size_t n = (size_t)ch->size;

    (void)pos;
    if (ch->left == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n > max)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* block size below: never */
    memset(buf, 'x', n);
    ch->left--;
    return (ssize_t)n;
}

/* Writes r->raw on the connection's socket ourselves (slowly: one byte per write) and closes the
 * connection: answers libmicrohttpd would not produce. */
static enum MHD_Result serve_raw(struct MHD_Connection *c, const struct request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci != NULL ? ci->connect_fd : -1;
    size_t len = strlen(r->raw), off = 0;
    int one = 1;

    if (fd < 0)
        return MHD_NO;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (off < len && !atomic_load(&stopping)) {
        size_t k = r->raw_slow ? 1 : len - off;
        ssize_t n = send(fd, r->raw + off, k, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 100);
            continue;
        }
        if (n <= 0)
            break;
        off += (size_t)n;
        if (r->raw_slow)
            sleep_until(now_ns() + 200000);
    }
    if (r->reset) {
        /* libmicrohttpd shuts the socket down (FIN) before it closes it, so a zero linger time
         * alone would not reset it: connect(AF_UNSPEC) disconnects a TCP socket at once, with
         * RST (Linux tcp_disconnect), and libmicrohttpd then closes a dead socket. */
        struct sockaddr sa = {.sa_family = AF_UNSPEC};
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        connect(fd, &sa, sizeof(sa));
    }
    return MHD_NO; /* libmicrohttpd closes the connection */
}

/* Queues r's answer. */
static enum MHD_Result answer(struct MHD_Connection *c, const struct request *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (r->raw != NULL)
        return serve_raw(c, r);
    if (r->chunk_n > 0) {
        struct chunks *ch = malloc(sizeof(*ch));
        if (ch == NULL)
            return MHD_NO;
        ch->left = r->chunk_n;
        ch->size = r->chunk_size;
        /* Unknown size: HTTP/1.1 answers chunked, one chunk per call; the block fits a chunk. */
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, (size_t)r->chunk_size + 64,
                                                 chunk_reader, ch, free);
    } else {
        resp = MHD_create_response_from_buffer(strlen(r->body), (void *)r->body,
                                               MHD_RESPMEM_MUST_COPY);
    }
    if (resp == NULL)
        return MHD_NO;
    if (r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r->allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Holds a /hang request until its client closes the connection, the server stops or
 * HANG_LIMIT_MS passes; then drops the connection without an answer. We are inside the access
 * handler, so libmicrohttpd is not watching the socket: peek at it ourselves. */
static enum MHD_Result serve_hang(struct MHD_Connection *c, const struct request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci != NULL ? ci->connect_fd : -1;

    while (!atomic_load(&stopping) && now_ns() < r->answer_at_ns) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char byte;
        ssize_t n;

        if (fd < 0 || poll(&p, 1, (int)(POLL_STEP_NS / NS_PER_MS)) <= 0)
            continue; /* timeout (or no fd: the loop is then a plain 100 ms sleep) */
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
            break;
        n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            break; /* closed by the client */
        if (n > 0) /* a pipelined request is waiting: not a close; don't spin on it */
            sleep_until(now_ns() + POLL_STEP_NS);
    }
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;

    (void)cls;
    (void)version;
    (void)upload_data;
    if (r == NULL) { /* headers are in: make the plan now, so delays count from here */
        const char *len =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        *req_cls = r;
        r->arrival_ns = now_ns();
        if (len != NULL && strtoull(len, NULL, 10) > MAX_BODY_BYTES) {
            set_answer(r, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"payload_too_large\"}");
            return answer(c, r); /* before the body: libmicrohttpd closes the connection */
        }
        plan_request(c, method, url, r);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        r->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        /* A chunked body past the cap: no answer can be queued mid-upload, so drop it. */
        return r->body_bytes > MAX_BODY_BYTES ? MHD_NO : MHD_YES;
    }
    if (r->hang)
        return serve_hang(c, r);
    if (sleep_until(r->answer_at_ns) != 0)
        return MHD_NO; /* stopping */
    return answer(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* libmicrohttpd's error log, as key=value lines. It reports every connection a handler closes
 * on purpose (MHD_NO: /hang, an oversized chunked body, a stop) as an internal error; those
 * are expected here, so they are left out. */
static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (strncmp(msg, "Application reported internal error", 35) == 0)
        return;
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
        msg[--n] = '\0';
    fprintf(stderr, "latency_target event=mhd_error msg=\"%s\"\n", msg);
}

static void usage(void)
{
    fprintf(stderr, "usage: latency_target --port N [--host 127.0.0.1]\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1;
    struct sockaddr_storage addr;
    /* poll(), not select(): select() refuses descriptors >= FD_SETSIZE (1024). */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *info;
    struct rlimit rl;
    sigset_t stop_signals;
    int sig = 0;

    for (int i = 1; i < argc; i++) {
        char *end = NULL;

        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 0 || port > 65535)
                port = -1;
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (port < 0) {
        usage();
        return 2;
    }

    memset(&addr, 0, sizeof(addr));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&addr)->sin_addr) == 1) {
        ((struct sockaddr_in *)&addr)->sin_family = AF_INET;
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&addr)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&addr)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "latency_target event=bad_host host=%s\n", host);
        return 2;
    }

    /* CONNECTION_MAX sockets plus the listener and stdio must fit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Block the stop signals before any thread exists, so every thread inherits the mask and
     * only main's sigwait sees them. */
    signal(SIGPIPE, SIG_IGN);
    /* A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded
     * rather than left pending for sigwait: restore the default (blocked, it never runs). */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    /* One option and its arguments per line; the logger must come first. */
    /* clang-format off */
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_MAX,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)CONNECTION_MAX,
                         MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
                         MHD_OPTION_CONNECTION_TIMEOUT, 0u,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_END);
    /* clang-format on */
    if (d == NULL) {
        fprintf(stderr, "latency_target event=start_failed host=%s port=%ld\n", host, port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fprintf(stderr, "latency_target event=no_port\n");
        MHD_stop_daemon(d);
        return 1;
    }
    printf("PORT=%u\n", (unsigned)info->port);
    fflush(stdout);
    fprintf(stderr, "latency_target event=listening host=%s port=%u\n", host, (unsigned)info->port);

    while (sigwait(&stop_signals, &sig) != 0)
        ;
    fprintf(stderr, "latency_target event=stopping signal=%d\n", sig);
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);
    return 0;
}
