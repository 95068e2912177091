/*
 * bucket_target: an HTTP server behind a token-bucket rate limiter with known parameters, for
 * the ratelimit tests to aim runs at and compare what loadtestd inferred (capacity, refill rate,
 * Retry-After, per-identity buckets) with what the limiter was configured to do.
 *
 * Usage: bucket_target --port N [--host 127.0.0.1] [--capacity 60] [--refill-per-s 1]
 *                      [--identity-header X-API-Key] [--retry-after] [--ratelimit-headers]
 *                      [--never-limit] [--fail-5xx-every N] [--delay-ms N]
 *   --port 0 picks a free port. On start it prints one line "PORT=<n>" on stdout (flushed),
 *   then serves until SIGTERM or SIGINT and exits 0.
 *
 * The limiter: one bucket per identity, holding at most `capacity` tokens and starting full;
 * tokens come back continuously at `refill-per-s` (fractions count); a request that finds at
 * least one whole token takes it and is answered, any other gets 429 (and takes nothing). The
 * identity is the value of the --identity-header request header; requests without it (or every
 * request when no identity header is configured) share the bucket "-". The decision is made
 * when the request's headers arrive; --delay-ms delays the answer, not the decision.
 *
 * Routes (any method unless one is named):
 *   POST /keys               201 {"api_key":"key-<n>-<hex>"}: a new identity (not limited).
 *   GET /control/stats       {"requests":n,"accepted":n,"limited":n,"failed_5xx":n,
 *                            "keys_issued":n,"identities":{"<id>":{"requests":n,"accepted":n,
 *                            "limited":n,"failed_5xx":n},...}} for the limited routes.
 *   POST /control/reset      forgets every bucket and zeroes the counters.
 *   anything else            the limited resource: 200 {"ok":true} or 429 {"error":
 *                            "rate_limited"}. --fail-5xx-every N: the n-th limited request
 *                            (one global sequence) answers 503 when n % N == 0, before the
 *                            bucket is consulted. --never-limit: never 429.
 * Headers: --retry-after adds "Retry-After: <s>" to every 429 (whole seconds until the next
 * token, at least 1). --ratelimit-headers adds to every limited-route answer
 * X-RateLimit-Limit / -Remaining / -Reset (seconds until the bucket is full) and the IETF
 * draft's RateLimit ("limit=60, remaining=0, reset=12") and RateLimit-Policy ("60;w=60").
 *
 * Self-check by hand (--capacity 3 --refill-per-s 0.5 --identity-header X-API-Key
 * --retry-after):
 *   U=http://127.0.0.1:<port>
 *   K=$(curl -s -X POST $U/keys | cut -d'"' -f4)
 *   for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code}\n' -H "X-API-Key: $K" $U/r; done
 *                                                          200 200 200 429
 *   curl -s -i -H "X-API-Key: $K" $U/r | grep Retry-After  Retry-After: 2
 *   curl -s $U/control/stats
 *
 * DESIGN. Threads: "main" parses the command line, starts the daemon and waits in sigwait();
 * libmicrohttpd's listening thread accepts; one libmicrohttpd thread per connection runs the
 * access handler (and sleeps there for --delay-ms). Shared state: the buckets and every counter
 * are guarded by `lock` (one short critical section per request); `stopping` and the request
 * sequence are atomics.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#define MAX_BODY_BYTES  (1024 * 1024)
#define MAX_IDENTITIES  4096 /* more distinct identities than this get 503 */
#define MAX_IDENTITY    200  /* longer identity values are cut (still distinct enough here) */
#define POLL_STEP_NS    100000000LL
#define NS_PER_MS       1000000LL
#define NS_PER_S        1000000000LL
#define CONNECTION_MAX  2048
#define THREAD_STACK    (256 * 1024)
#define RESPONSE_BUFFER 256

struct bucket {
    char id[MAX_IDENTITY + 1];
    double tokens;
    int64_t last_ns; /* when tokens was last brought up to date */
    long long requests, accepted, limited, failed_5xx;
};

/* The configuration, set in main before any thread starts and read-only after. */
static struct {
    long capacity;
    double refill_per_s;
    const char *identity_header; /* NULL: one shared bucket */
    int retry_after;
    int ratelimit_headers;
    int never_limit;
    long fail_5xx_every; /* 0: never */
    long delay_ms;
} cfg = {.capacity = 60, .refill_per_s = 1.0};

static atomic_int stopping;
static atomic_llong sequence; /* limited-route requests since start or reset */

/* guards: buckets, n_buckets, keys_issued, tot_* */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *buckets; /* MAX_IDENTITIES entries, allocated in main */
static size_t n_buckets;
static long long keys_issued;
static long long tot_requests, tot_accepted, tot_limited, tot_failed;

struct request {
    int64_t arrival_ns;
    unsigned status;
    int counted; /* a limited-route request (gets the rate-limit headers) */
    long limit, remaining;
    long reset_s;       /* seconds until the bucket is full */
    long retry_after_s; /* 0: none */
    size_t body_bytes;
    char *big_body; /* owned; a body too long for body[] (stats) */
    char body[RESPONSE_BUFFER];
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Sleeps until deadline_ns; returns -1 early when the server is stopping. */
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
        ts.tv_sec = (time_t)(step / NS_PER_S);
        ts.tv_nsec = (long)(step % NS_PER_S);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
}

static void set_body(struct request *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_body(struct request *r, unsigned status, const char *fmt, ...)
{
    va_list ap;

    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->body, sizeof(r->body), fmt, ap);
    va_end(ap);
}

/* The bucket of id, created full when new; NULL when the table is full. Caller holds lock. */
static struct bucket *find_bucket_locked(const char *id, int64_t now)
{
    size_t len = strlen(id);

    if (len > MAX_IDENTITY)
        len = MAX_IDENTITY;
    for (size_t i = 0; i < n_buckets; i++) {
        if (strncmp(buckets[i].id, id, len) == 0 && buckets[i].id[len] == '\0')
            return &buckets[i];
    }
    if (n_buckets >= MAX_IDENTITIES)
        return NULL;
    struct bucket *b = &buckets[n_buckets++];
    memset(b, 0, sizeof(*b));
    memcpy(b->id, id, len);
    b->tokens = (double)cfg.capacity;
    b->last_ns = now;
    return b;
}

/* The limited resource: the limiter's decision for identity id at r->arrival_ns. */
static void serve_limited(struct request *r, const char *id)
{
    long long n = atomic_fetch_add(&sequence, 1) + 1;
    struct bucket *b;

    r->counted = 1;
    pthread_mutex_lock(&lock);
    b = find_bucket_locked(id, r->arrival_ns);
    if (b == NULL) {
        pthread_mutex_unlock(&lock);
        r->counted = 0;
        set_body(r, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"too_many_identities\"}");
        return;
    }
    tot_requests++;
    b->requests++;
    if (r->arrival_ns > b->last_ns) {
        b->tokens += cfg.refill_per_s * (double)(r->arrival_ns - b->last_ns) / 1e9;
        if (b->tokens > (double)cfg.capacity)
            b->tokens = (double)cfg.capacity;
        b->last_ns = r->arrival_ns;
    }
    if (cfg.fail_5xx_every > 0 && n % cfg.fail_5xx_every == 0) {
        b->failed_5xx++;
        tot_failed++;
        set_body(r, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"injected_failure\",\"n\":%lld}", n);
    } else if (cfg.never_limit || b->tokens >= 1.0) {
        if (!cfg.never_limit)
            b->tokens -= 1.0;
        b->accepted++;
        tot_accepted++;
        set_body(r, MHD_HTTP_OK, "{\"ok\":true}");
    } else {
        b->limited++;
        tot_limited++;
        set_body(r, MHD_HTTP_TOO_MANY_REQUESTS, "{\"error\":\"rate_limited\"}");
        if (cfg.retry_after) {
            double s = cfg.refill_per_s > 0 ? (1.0 - b->tokens) / cfg.refill_per_s : 3600;
            r->retry_after_s = (long)ceil(s);
            if (r->retry_after_s < 1)
                r->retry_after_s = 1;
        }
    }
    r->limit = cfg.capacity;
    r->remaining = cfg.never_limit ? cfg.capacity : (long)floor(b->tokens);
    r->reset_s = cfg.refill_per_s > 0
                     ? (long)ceil(((double)cfg.capacity - b->tokens) / cfg.refill_per_s)
                     : 0;
    pthread_mutex_unlock(&lock);
}

static void serve_keys(struct request *r)
{
    unsigned char rnd[6];
    long long n;
    FILE *f = fopen("/dev/urandom", "rb");

    if (f == NULL || fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd));
    if (f != NULL)
        fclose(f);
    pthread_mutex_lock(&lock);
    n = ++keys_issued;
    pthread_mutex_unlock(&lock);
    set_body(r, MHD_HTTP_CREATED, "{\"api_key\":\"key-%lld-%02x%02x%02x%02x%02x%02x\"}", n, rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

/* Appends to a growing string; returns -1 on allocation failure. */
static int sb_add(char **s, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sb_add(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*s + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        char *grown = realloc(*s, *cap * 2 + (size_t)n);
        if (grown == NULL)
            return -1;
        *s = grown;
        *cap = *cap * 2 + (size_t)n;
    }
}

static void serve_stats(struct request *r)
{
    size_t len = 0, cap = 4096;
    char *s = malloc(cap);
    int bad = s == NULL;

    if (!bad)
        s[0] = '\0';
    pthread_mutex_lock(&lock);
    bad = bad || sb_add(&s, &len, &cap,
                        "{\"requests\":%lld,\"accepted\":%lld,\"limited\":%lld,\"failed_5xx\":%lld,"
                        "\"keys_issued\":%lld,\"identities\":{",
                        tot_requests, tot_accepted, tot_limited, tot_failed, keys_issued);
    for (size_t i = 0; !bad && i < n_buckets; i++) {
        const struct bucket *b = &buckets[i];
        char id[2 * MAX_IDENTITY + 1];
        size_t o = 0;

        /* Identities are arbitrary header values: keep the JSON valid. */
        for (const char *c = b->id; *c && o + 2 < sizeof(id); c++) {
            if (*c == '"' || *c == '\\')
                id[o++] = '\\';
            id[o++] = (unsigned char)*c < 0x20 ? '?' : *c;
        }
        id[o] = '\0';
        bad = sb_add(&s, &len, &cap,
                     "%s\"%s\":{\"requests\":%lld,\"accepted\":%lld,\"limited\":%lld,"
                     "\"failed_5xx\":%lld}",
                     i ? "," : "", id, b->requests, b->accepted, b->limited, b->failed_5xx);
    }
    pthread_mutex_unlock(&lock);
    bad = bad || sb_add(&s, &len, &cap, "}}");
    if (bad) {
        free(s);
        set_body(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out_of_memory\"}");
        return;
    }
    r->status = MHD_HTTP_OK;
    r->big_body = s;
}

static void serve_reset(struct request *r)
{
    pthread_mutex_lock(&lock);
    n_buckets = 0;
    keys_issued = 0;
    tot_requests = tot_accepted = tot_limited = tot_failed = 0;
    pthread_mutex_unlock(&lock);
    atomic_store(&sequence, 0);
    set_body(r, MHD_HTTP_OK, "{\"ok\":true}");
}

static void plan_request(struct MHD_Connection *c, const char *method, const char *url,
                         struct request *r)
{
    if (strcmp(url, "/keys") == 0) {
        if (strcmp(method, "POST") == 0)
            serve_keys(r);
        else
            set_body(r, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"method_not_allowed\"}");
    } else if (strcmp(url, "/control/stats") == 0 && strcmp(method, "GET") == 0) {
        serve_stats(r);
    } else if (strcmp(url, "/control/reset") == 0 && strcmp(method, "POST") == 0) {
        serve_reset(r);
    } else if (strncmp(url, "/control/", 9) == 0) {
        set_body(r, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}");
    } else {
        const char *id = cfg.identity_header
                             ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, cfg.identity_header)
                             : NULL;
        serve_limited(r, id != NULL && *id != '\0' ? id : "-");
    }
}

static enum MHD_Result answer(struct MHD_Connection *c, struct request *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char num[64];

    if (r->big_body != NULL) {
        resp = MHD_create_response_from_buffer(strlen(r->big_body), r->big_body,
                                               MHD_RESPMEM_MUST_FREE);
        if (resp != NULL)
            r->big_body = NULL; /* the response owns it now */
    } else {
        resp = MHD_create_response_from_buffer(strlen(r->body), (void *)r->body,
                                               MHD_RESPMEM_MUST_COPY);
    }
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r->retry_after_s > 0) {
        snprintf(num, sizeof(num), "%ld", r->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", num);
    }
    if (r->counted && cfg.ratelimit_headers) {
        long window = cfg.refill_per_s > 0 ? lround((double)cfg.capacity / cfg.refill_per_s) : 0;
        snprintf(num, sizeof(num), "%ld", r->limit);
        MHD_add_response_header(resp, "X-RateLimit-Limit", num);
        snprintf(num, sizeof(num), "%ld", r->remaining);
        MHD_add_response_header(resp, "X-RateLimit-Remaining", num);
        snprintf(num, sizeof(num), "%ld", r->reset_s);
        MHD_add_response_header(resp, "X-RateLimit-Reset", num);
        snprintf(num, sizeof(num), "limit=%ld, remaining=%ld, reset=%ld", r->limit, r->remaining,
                 r->reset_s);
        MHD_add_response_header(resp, "RateLimit", num);
        snprintf(num, sizeof(num), "%ld;w=%ld", r->limit, window);
        MHD_add_response_header(resp, "RateLimit-Policy", num);
    }
    ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;

    (void)cls;
    (void)version;
    (void)upload_data;
    if (r == NULL) { /* headers are in: decide now */
        const char *len =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        *req_cls = r;
        r->arrival_ns = now_ns();
        if (len != NULL && strtoull(len, NULL, 10) > MAX_BODY_BYTES) {
            set_body(r, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"payload_too_large\"}");
            return answer(c, r);
        }
        plan_request(c, method, url, r);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        r->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        return r->body_bytes > MAX_BODY_BYTES ? MHD_NO : MHD_YES;
    }
    if (cfg.delay_ms > 0 && sleep_until(r->arrival_ns + cfg.delay_ms * NS_PER_MS) != 0)
        return MHD_NO;
    return answer(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *req_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (r != NULL)
        free(r->big_body);
    free(r);
    *req_cls = NULL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

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
    fprintf(stderr, "bucket_target event=mhd_error msg=\"%s\"\n", msg);
}

static void usage(void)
{
    fprintf(stderr, "usage: bucket_target --port N [--host 127.0.0.1] [--capacity 60] "
                    "[--refill-per-s 1] [--identity-header NAME] [--retry-after] "
                    "[--ratelimit-headers] [--never-limit] [--fail-5xx-every N] "
                    "[--delay-ms N]\n");
}

/* Parses a decimal integer in [min, max]; returns 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1;
    struct sockaddr_storage addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *info;
    sigset_t stop_signals;
    int sig = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_arg = i + 1 < argc;
        int bad = 0;

        if (strcmp(a, "--port") == 0 && has_arg) {
            bad = parse_long(argv[++i], 0, 65535, &port);
        } else if (strcmp(a, "--host") == 0 && has_arg) {
            host = argv[++i];
        } else if (strcmp(a, "--capacity") == 0 && has_arg) {
            bad = parse_long(argv[++i], 0, 1000000000, &cfg.capacity);
        } else if (strcmp(a, "--refill-per-s") == 0 && has_arg) {
            char *end = NULL;
            cfg.refill_per_s = strtod(argv[++i], &end);
            bad = *end != '\0' || !(cfg.refill_per_s >= 0) || cfg.refill_per_s > 1e9;
        } else if (strcmp(a, "--identity-header") == 0 && has_arg) {
            cfg.identity_header = argv[++i];
        } else if (strcmp(a, "--retry-after") == 0) {
            cfg.retry_after = 1;
        } else if (strcmp(a, "--ratelimit-headers") == 0) {
            cfg.ratelimit_headers = 1;
        } else if (strcmp(a, "--never-limit") == 0) {
            cfg.never_limit = 1;
        } else if (strcmp(a, "--fail-5xx-every") == 0 && has_arg) {
            bad = parse_long(argv[++i], 1, 1000000000, &cfg.fail_5xx_every);
        } else if (strcmp(a, "--delay-ms") == 0 && has_arg) {
            bad = parse_long(argv[++i], 0, 600000, &cfg.delay_ms);
        } else {
            bad = 1;
        }
        if (bad) {
            usage();
            return 2;
        }
    }
    if (port < 0) {
        usage();
        return 2;
    }
    buckets = calloc(MAX_IDENTITIES, sizeof(*buckets));
    if (buckets == NULL)
        return 1;

    memset(&addr, 0, sizeof(addr));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&addr)->sin_addr) == 1) {
        ((struct sockaddr_in *)&addr)->sin_family = AF_INET;
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&addr)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&addr)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "bucket_target event=bad_host host=%s\n", host);
        return 2;
    }

    /* Stop signals: blocked everywhere before any thread exists, seen by main's sigwait only
     * (and restored to default first: a shell starts background jobs with SIGINT ignored). */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

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
        fprintf(stderr, "bucket_target event=start_failed host=%s port=%ld\n", host, port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fprintf(stderr, "bucket_target event=no_port\n");
        MHD_stop_daemon(d);
        return 1;
    }
    printf("PORT=%u\n", (unsigned)info->port);
    fflush(stdout);
    fprintf(stderr,
            "bucket_target event=listening host=%s port=%u capacity=%ld refill_per_s=%g "
            "identity_header=%s\n",
            host, (unsigned)info->port, cfg.capacity, cfg.refill_per_s,
            cfg.identity_header ? cfg.identity_header : "-");

    while (sigwait(&stop_signals, &sig) != 0)
        ;
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);
    free(buckets);
    return 0;
}
