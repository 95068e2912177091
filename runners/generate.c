/*
 * generate: the "generate" run kind (see generate.h and "Kind generate" in the API). It fills a
 * PostgreSQL table with N synthetic traces whose embedding is a pgvector vector(dim) (or real[]
 * where pgvector is not available), deterministic by seed, streamed by binary COPY on parallel
 * connections, then (re)builds the HNSW index.
 *
 * DESIGN
 *
 * Threads.
 *   coordinator  the run thread of the pool that calls execute. Owns the control connection
 *                `ctl` (schema checks, CREATE TABLE, TRUNCATE, DROP/CREATE/REINDEX INDEX), the
 *                base vectors (written before the loaders start, read-only while they run), the
 *                warnings array, the phase clocks, and every call into job->sink: progress and
 *                one point per second, from tick(), which every wait on `ctl` and the insert
 *                phase's 100 ms sleep loop call. It starts the loaders and joins them all before
 *                it goes on; it never touches a loader's connection.
 *   loader[k]    `connections` threads (fewer when there are fewer batches). Each owns its own
 *                PGconn (synchronous_commit = off), its COPY buffer and its row scratch. It
 *                takes the next batch number from an atomic counter, encodes rows
 *                [b * batch_rows, ...) on the fly and sends them, 256 KiB at a time, as one
 *                `COPY t (cols) FROM STDIN (FORMAT binary)`, which in autocommit mode is its own
 *                transaction: the batch is in the table exactly when the COPY answers
 *                COMMAND_OK, and only then is it added to rows_committed.
 *
 * Throughput. Binary COPY inserts rows in groups of 1000 (PostgreSQL's multi-insert buffer, whose
 * byte limit counts text lines and so never applies to binary input): the heap and TOAST work
 * of a batch's last group starts only at its end. A loader that waited idle for each commit
 * would take turns with the server; instead, while a commit is pending it already encodes the
 * next batch (up to 16 MiB, until the result arrives), which the server then gets at once. With
 * that, one connection keeps its backend busy like `psql \copy` of a ready-made file does
 * (see bench/generate); the generator itself costs ~15 us of CPU per 1536-dim row.
 *
 * Network targets. Every host of the DSN is resolved here, checked against the daemon's
 * allowlist (lt_allow_addr, as the capacity runner does) and pinned with libpq's hostaddr, so
 * libpq never resolves a name itself (pin_hosts).
 *
 * Shared state and locks.
 *   Immutable while the loaders run: the spec, the connection parameters, the base vectors, the
 *   COPY statement (all written before pthread_create, which orders them for the loaders).
 *   Atomics (counters and flags only): next_batch, rows_committed, rows_uncertain, bytes_sent,
 *   loaders_done, stop.
 *   run.lock  guards: failed, fail_code, fail_msg (the first failure wins; any thread may
 *             record one, and a loader that does also sets `stop`).
 *
 * Stopping. A cancel (job->cancel) or a failure makes every thread stop within a second: the
 * loaders check the flags before every row and abort their open COPY with CopyFail (the batch
 * is rolled back), and every libpq wait is sliced into 100 ms polls (pgcopy.c) that send a
 * cancel request and finally abandon the connection if the server does not answer. A batch whose
 * COPY end was already sent is waited for (up to 10 s) so that its fate is known: rows_inserted
 * is what is in the table. A batch whose outcome could not be learnt (connection lost during
 * its commit) is reported as rows_uncertain with a warning, never counted.
 *
 * synchronous_commit = off on the loader connections: a batch's commit does not wait for its
 * WAL to reach disk. A database crash can lose the last few hundred milliseconds of committed
 * batches (never corrupt them); for synthetic data that is worth the throughput.
 *
 * Data (rows are a pure function of (seed, spec, i), so any split across connections and batches
 * gives the same bytes; see gen_* below):
 *   PRNG streams: xoshiro256**, its state filled by splitmix64 started at
 *   mix64(mix64(seed ^ tag) ^ index), where tag names the stream (BASE, NOISE, META) and index is
 *   the base number or row number. Gaussians: a 256-layer ziggurat (gen_rng_gauss), in double.
 *   base vector b: dim N(0,1) draws from stream (BASE, b), stored as float.
 *   embedding of row i: x_j = base[i mod base_vectors]_j + noise_sigma * N(0,1) from stream
 *   (NOISE, i), in double; then x / ||x||_2 rounded to float.
 *   id of row i: a keyed bijection of [0, 2^63) (gen_row_id), so ids are unique in a run.
 *   metadata of row i from stream (META, i): title, context, solution from the word lists
 *   below (the component and theme follow the row's cluster, i mod base_vectors), 1-4 tags,
 *   created_at uniform over the 365 days before an epoch 2025-01-01 + (0..365 days from seed).
 *   The floating-point path (double, libm log/sqrt, no FMA contraction in ISO C mode) gives the
 *   same bytes for the same binary and libm.
 */
#define _POSIX_C_SOURCE 200809L
#include "generate.h"

#include <ctype.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include "lt_allow.h"
#include "lt_json.h"
#include "lt_util.h"
#include "pgcopy.h"

/* ======================================================================================== */
/* Data generation                                                                          */
/* ======================================================================================== */

#define TAG_BASE  0x42415345ULL /* "BASE" */
#define TAG_NOISE 0x4e4f4953ULL /* "NOIS" */
#define TAG_META  0x4d455441ULL /* "META" */
#define TAG_TOPIC 0x544f5043ULL /* "TOPC" */
#define TAG_ID    0x49444b59ULL /* "IDKY" */
#define TAG_EPOCH 0x45504f43ULL /* "EPOC" */

/* splitmix64's output function: a bijection of 64-bit integers with good avalanche. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t splitmix64(uint64_t *x)
{
    *x += 0x9e3779b97f4a7c15ULL;
    return mix64(*x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void gen_rng_seed(struct gen_rng *g, uint64_t seed, uint64_t tag, uint64_t index)
{
    uint64_t sm = mix64(mix64(seed ^ tag) ^ index);

    /* Four consecutive splitmix64 outputs are never all zero (it is a bijection of a counter). */
    for (int k = 0; k < 4; k++)
        g->s[k] = splitmix64(&sm);
}

static inline uint64_t xoshiro_next(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t gen_rng_next(struct gen_rng *g)
{
    return xoshiro_next(g->s);
}

/* Uniform in (0, 1) (never 0: the tail takes its log). */
static double uniform_open01(struct gen_rng *g)
{
    return ((double)(int64_t)(xoshiro_next(g->s) >> 12) + 0.5) * 0x1p-52;
}

/* Gaussian sampler: the ziggurat method (Marsaglia and Tsang, 2000) with 256 layers of equal
 * area V under f(x) = exp(-x^2/2), the base layer holding the tail beyond R. One 64-bit draw
 * gives the layer (its low 8 bits) and a uniform u in [-1, 1) (its top 52 bits, so the two never
 * share bits); x = u * X[i] is accepted at once when |x| < X[i+1] (about 99% of draws). Else the
 * draw is in a layer's wedge (accepted against f), or in the tail beyond R (Marsaglia's
 * exponential method). The tables are computed once from R and V with libm's exp/log/sqrt, so
 * they are the same bytes for the same binary and libm, like everything else here. */
#define ZIG_R 3.6541528853610088
#define ZIG_V 0.00492867323399

static double zig_x[257], zig_f[257];
static pthread_once_t zig_once = PTHREAD_ONCE_INIT;

static void zig_init(void)
{
    zig_x[0] = ZIG_V / exp(-0.5 * ZIG_R * ZIG_R);
    zig_x[1] = ZIG_R;
    for (int i = 2; i < 256; i++)
        zig_x[i] = sqrt(-2.0 * log(ZIG_V / zig_x[i - 1] + exp(-0.5 * zig_x[i - 1] * zig_x[i - 1])));
    zig_x[256] = 0.0;
    for (int i = 0; i < 257; i++)
        zig_f[i] = exp(-0.5 * zig_x[i] * zig_x[i]);
}

/* The rare paths: the draw (layer i, x = u * X[i]) fell outside layer i's rectangle. */
static __attribute__((noinline)) double zig_slow(struct gen_rng *g, int i, double u, double x)
{
    for (;;) {
        uint64_t bits;

        if (i == 0) {
            double tx, ty;
            do {
                tx = log(uniform_open01(g)) / ZIG_R;
                ty = log(uniform_open01(g));
            } while (-2.0 * ty < tx * tx);
            return u < 0.0 ? tx - ZIG_R : ZIG_R - tx;
        }
        if (zig_f[i + 1] + (zig_f[i] - zig_f[i + 1]) * uniform_open01(g) < exp(-0.5 * x * x))
            return x;
        bits = xoshiro_next(g->s);
        i = (int)(bits & 0xff);
        u = (double)(int64_t)(bits >> 12) * 0x1p-51 - 1.0;
        x = u * zig_x[i];
        if (fabs(x) < zig_x[i + 1])
            return x;
    }
}

/* zig_init must have run. */
static inline double zig_gauss(struct gen_rng *g)
{
    uint64_t bits = xoshiro_next(g->s);
    int i = (int)(bits & 0xff);
    double u = (double)(int64_t)(bits >> 12) * 0x1p-51 - 1.0; /* [-1, 1), 52 bits */
    double x = u * zig_x[i];

    if (fabs(x) < zig_x[i + 1])
        return x;
    return zig_slow(g, i, u, x);
}

double gen_rng_gauss(struct gen_rng *g)
{
    pthread_once(&zig_once, zig_init);
    return zig_gauss(g);
}

/* Uniform integer in [0, n) (multiply-shift; the bias is below 2^-32 for our small n). */
static uint32_t pick(struct gen_rng *g, uint32_t n)
{
    return (uint32_t)(((gen_rng_next(g) >> 32) * (uint64_t)n) >> 32);
}

void gen_base_vector(const struct gen_params *p, int b, float *out)
{
    struct gen_rng g;

    pthread_once(&zig_once, zig_init);
    gen_rng_seed(&g, p->seed, TAG_BASE, (uint64_t)b);
    for (int j = 0; j < p->dim; j++)
        out[j] = (float)zig_gauss(&g);
}

float *gen_base_vectors_new(const struct gen_params *p)
{
    float *base = malloc((size_t)p->base_vectors * (size_t)p->dim * sizeof(float));

    if (base == NULL)
        return NULL;
    for (int b = 0; b < p->base_vectors; b++)
        gen_base_vector(p, b, base + (size_t)b * (size_t)p->dim);
    return base;
}

void gen_row_embedding(const struct gen_params *p, const float *base, int64_t i, float *out,
                       double *scratch)
{
    struct gen_rng g;
    const float *b = base + (size_t)(i % p->base_vectors) * (size_t)p->dim;
    double ss = 0.0, inv;

    pthread_once(&zig_once, zig_init);
    gen_rng_seed(&g, p->seed, TAG_NOISE, (uint64_t)i);
    for (int j = 0; j < p->dim; j++) {
        double x = (double)b[j] + p->noise_sigma * zig_gauss(&g);
        scratch[j] = x;
        ss += x * x;
    }
    inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
    for (int j = 0; j < p->dim; j++)
        out[j] = (float)(scratch[j] * inv);
}

int64_t gen_row_id(uint64_t seed, int64_t i)
{
    const uint64_t m63 = (1ULL << 63) - 1;
    uint64_t k = mix64(seed ^ TAG_ID);
    uint64_t x = ((uint64_t)i ^ k) & m63;

    /* Each step is a bijection of [0, 2^63): xor with a constant, multiplication by an odd
     * number modulo 2^63, x ^= x >> s, addition of a constant modulo 2^63. */
    x = (x * 0x9e3779b97f4a7c15ULL) & m63;
    x ^= x >> 29;
    x = (x * 0xbf58476d1ce4e5b9ULL) & m63;
    x ^= x >> 32;
    x = (x + (k >> 1)) & m63;
    return (int64_t)x;
}

/* Word lists (our own). A row's cluster picks its component, theme noun and first tag. */
static const char *const components[] = {
    "payment service", "search API",         "auth gateway",   "billing worker",
    "ingest pipeline", "notification queue", "report builder", "profile store",
    "rate limiter",    "metrics exporter",   "checkout flow",  "image resizer",
    "job scheduler",   "audit log",          "feature flags",  "email sender",
};
static const char *const component_tags[] = {
    "payments",  "search",   "auth",      "billing", "ingest",   "notifications",
    "reports",   "profiles", "ratelimit", "metrics", "checkout", "media",
    "scheduler", "audit",    "flags",     "email",
};
#define N_COMPONENTS (sizeof(components) / sizeof(components[0]))

static const char *const verbs[] = {"Fix",     "Investigate", "Reduce",    "Handle",
                                    "Debug",   "Speed up",    "Stabilise", "Document",
                                    "Migrate", "Throttle",    "Bound",     "Cache"};
static const char *const adjectives[] = {"flaky",     "slow",      "intermittent", "stale",
                                         "duplicate", "missing",   "oversized",    "leaking",
                                         "blocked",   "unbounded", "misrouted",    "expired"};
static const char *const nouns[] = {
    "timeout", "connection pool", "cache entry", "retry loop", "index scan",   "queue consumer",
    "webhook", "session token",   "batch job",   "lock wait",  "memory spike", "config reload"};
static const char *const days[] = {"Monday",   "Tuesday", "Wednesday",
                                   "Thursday", "Friday",  "weekend"};
static const char *const conditions[] = {
    "two replicas restarted at once",  "the cache was cold",       "a bulk import ran",
    "clients retried without backoff", "the database failed over", "traffic doubled at noon",
    "a certificate was rotated",       "the disk was nearly full"};
static const char *const tag_words[] = {
    "postgres", "redis", "timeout", "retry",   "latency",  "memory",     "deploy",   "config",
    "queue",    "cache", "index",   "network", "incident", "regression", "capacity", "oncall"};

#define NELEM(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* Appends one sentence to buf (cap GEN_TEXT_MAX, every template is far shorter). */
static size_t add_context_sentence(char *buf, size_t len, struct gen_rng *g, const char *comp,
                                   const char *noun)
{
    size_t cap = GEN_TEXT_MAX - len;
    int w = 0;

    if (len > 0 && cap > 1) {
        buf[len++] = ' ';
        cap--;
    }
    switch (pick(g, 5)) {
    case 0:
        w = snprintf(buf + len, cap, "After the %s deploy the %s started failing under load.",
                     days[pick(g, NELEM(days))], comp);
        break;
    case 1:
        w = snprintf(buf + len, cap, "Requests to the %s took %u ms at p99 with normal traffic.",
                     comp, 200 + pick(g, 4800));
        break;
    case 2:
        w = snprintf(buf + len, cap, "The %s in the %s grew until the pod was restarted.", noun,
                     comp);
        break;
    case 3:
        w = snprintf(buf + len, cap, "Logs showed %u %s events per minute from the %s.",
                     10 + pick(g, 990), noun, comp);
        break;
    default:
        w = snprintf(buf + len, cap, "It only happened when %s.",
                     conditions[pick(g, NELEM(conditions))]);
        break;
    }
    if (w < 0)
        return len;
    return (size_t)w < cap ? len + (size_t)w : GEN_TEXT_MAX - 1;
}

static size_t add_solution_sentence(char *buf, size_t len, struct gen_rng *g, const char *noun)
{
    size_t cap = GEN_TEXT_MAX - len;
    int w = 0;

    if (len > 0 && cap > 1) {
        buf[len++] = ' ';
        cap--;
    }
    switch (pick(g, 6)) {
    case 0:
        w = snprintf(buf + len, cap, "Added a limit of %u to the %s and an alert on it.",
                     8 + pick(g, 1000), noun);
        break;
    case 1:
        w = snprintf(buf + len, cap, "Put the %s behind a circuit breaker with a %u s cooldown.",
                     noun, 1 + pick(g, 60));
        break;
    case 2:
        w = snprintf(buf + len, cap, "Rewrote the query to use an index; p99 fell to %u ms.",
                     2 + pick(g, 80));
        break;
    case 3:
        w = snprintf(buf + len, cap, "Set retries to %u with jittered exponential backoff.",
                     2 + pick(g, 5));
        break;
    case 4:
        w = snprintf(buf + len, cap, "Rolled back the config change and pinned the version.");
        break;
    default:
        w = snprintf(buf + len, cap, "Split the work across %u workers and made it idempotent.",
                     2 + pick(g, 30));
        break;
    }
    if (w < 0)
        return len;
    return (size_t)w < cap ? len + (size_t)w : GEN_TEXT_MAX - 1;
}

/* 2000-01-01 .. 2025-01-01 is 25 * 365 + 7 leap days. */
#define EPOCH_2025_US (9132LL * 86400 * 1000000)
#define DAY_US        (86400LL * 1000000)
#define WINDOW_US     (365 * DAY_US)

void gen_row_meta(const struct gen_params *p, int64_t i, struct gen_meta *m)
{
    struct gen_rng g;
    uint64_t cluster = (uint64_t)(i % p->base_vectors);
    uint64_t topic = mix64(mix64(p->seed ^ TAG_TOPIC) ^ cluster);
    uint32_t ci = (uint32_t)(topic % N_COMPONENTS);
    const char *comp = components[ci];
    const char *noun = nouns[(topic >> 20) % NELEM(nouns)];
    int64_t epoch_end = EPOCH_2025_US + (int64_t)(mix64(p->seed ^ TAG_EPOCH) % 366) * DAY_US;
    uint32_t used = 0; /* bit k: tag_words[k] taken */
    int w, n;

    gen_rng_seed(&g, p->seed, TAG_META, (uint64_t)i);
    m->id = gen_row_id(p->seed, i);
    w = snprintf(m->title, sizeof(m->title), "%s %s %s in the %s", verbs[pick(&g, NELEM(verbs))],
                 adjectives[pick(&g, NELEM(adjectives))], noun, comp);
    m->title_len = w < 0 ? 0 : (size_t)w < sizeof(m->title) ? (size_t)w : sizeof(m->title) - 1;

    m->context_len = 0;
    n = 2 + (int)pick(&g, 3);
    for (int k = 0; k < n; k++)
        m->context_len = add_context_sentence(m->context_text, m->context_len, &g, comp, noun);
    m->solution_len = 0;
    n = 1 + (int)pick(&g, 3);
    for (int k = 0; k < n; k++)
        m->solution_len = add_solution_sentence(m->solution_text, m->solution_len, &g, noun);

    m->tags[0] = component_tags[ci];
    m->ntags = 1;
    n = (int)pick(&g, GEN_TAGS_MAX); /* 0..3 more */
    for (int k = 0; k < n; k++) {
        uint32_t t = pick(&g, NELEM(tag_words));
        if (used & (1u << t))
            continue; /* a repeat draw just means one tag fewer */
        used |= 1u << t;
        m->tags[m->ntags++] = tag_words[t];
    }
    for (int k = 0; k < m->ntags; k++)
        m->tag_lens[k] = strlen(m->tags[k]);
    m->created_at_us = epoch_end - 1 - (int64_t)(gen_rng_next(&g) % (uint64_t)WINDOW_US);
}

/* ======================================================================================== */
/* DSN secrets                                                                              */
/* ======================================================================================== */

struct span {
    size_t off, len;
};

#define MAX_SPANS 8

static int is_secret_key(const char *k, size_t n)
{
    return (n == 8 && memcmp(k, "password", 8) == 0) ||
           (n == 11 && memcmp(k, "sslpassword", 11) == 0);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Is the percent-encoded URI query key s[0..n) "password" or "sslpassword"? */
static int is_secret_uri_key(const char *s, size_t n)
{
    char k[16];
    size_t o = 0;

    for (size_t j = 0; j < n; j++) {
        int c = (unsigned char)s[j];
        if (c == '%' && j + 2 < n && hexval(s[j + 1]) >= 0 && hexval(s[j + 2]) >= 0) {
            c = hexval(s[j + 1]) * 16 + hexval(s[j + 2]);
            j += 2;
        }
        if (o >= sizeof(k))
            return 0;
        k[o++] = (char)c;
    }
    return is_secret_key(k, o);
}

/* Where the password values of dsn are, read the way libpq reads them (conninfo_uri_parse and
 * conninfo_parse in fe-connect.c). Returns how many spans were found (at most MAX_SPANS). */
static int dsn_secret_spans(const char *dsn, struct span *sp)
{
    int n = 0;
    size_t p, start;

    if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0) {
        size_t after;
        const char *q;

        start = dsn[8] == ':' ? 11 : 13;
        /* libpq: the user info ends at the first '@' seen before any '/'. */
        for (p = start; dsn[p] && dsn[p] != '@' && dsn[p] != '/'; p++)
            ;
        after = start;
        if (dsn[p] == '@') {
            const char *colon = memchr(dsn + start, ':', p - start);
            if (colon != NULL && (size_t)(colon - dsn) + 1 < p) {
                sp[n].off = (size_t)(colon - dsn) + 1;
                sp[n].len = p - sp[n].off;
                n++;
            }
            after = p + 1;
        }
        q = strchr(dsn + after, '?');
        while (q != NULL && n < MAX_SPANS) {
            const char *k = q + 1;
            const char *amp = strchr(k, '&');
            const char *end = amp ? amp : k + strlen(k);
            const char *eq = memchr(k, '=', (size_t)(end - k));

            if (eq != NULL && is_secret_uri_key(k, (size_t)(eq - k)) && end > eq + 1) {
                sp[n].off = (size_t)(eq + 1 - dsn);
                sp[n].len = (size_t)(end - eq - 1);
                n++;
            }
            q = amp;
        }
        return n;
    }
    p = 0;
    while (dsn[p] && n < MAX_SPANS) {
        size_t ks, ke, vs, ve;

        while (isspace((unsigned char)dsn[p]))
            p++;
        if (!dsn[p])
            break;
        ks = p;
        while (dsn[p] && dsn[p] != '=' && !isspace((unsigned char)dsn[p]))
            p++;
        ke = p;
        while (isspace((unsigned char)dsn[p]))
            p++;
        if (dsn[p] != '=')
            break; /* malformed: libpq refuses it too */
        p++;
        while (isspace((unsigned char)dsn[p]))
            p++;
        if (dsn[p] == '\'') {
            vs = ++p;
            while (dsn[p] && dsn[p] != '\'') {
                if (dsn[p] == '\\' && dsn[p + 1])
                    p++;
                p++;
            }
            ve = p;
            if (dsn[p] == '\'')
                p++;
        } else {
            vs = p;
            while (dsn[p] && !isspace((unsigned char)dsn[p])) {
                if (dsn[p] == '\\' && dsn[p + 1])
                    p++;
                p++;
            }
            ve = p;
        }
        if (is_secret_key(dsn + ks, ke - ks) && ve > vs) {
            sp[n].off = vs;
            sp[n].len = ve - vs;
            n++;
        }
    }
    return n;
}

/* Replaces spans (sorted by construction) with "***". Returns new. */
static char *replace_spans(const char *s, const struct span *sp, int n)
{
    size_t len = strlen(s);
    char *out = malloc(len + 3 * (size_t)n + 1);
    size_t o = 0, from = 0;

    if (out == NULL)
        return NULL;
    for (int k = 0; k < n; k++) {
        memcpy(out + o, s + from, sp[k].off - from);
        o += sp[k].off - from;
        memcpy(out + o, "***", 3);
        o += 3;
        from = sp[k].off + sp[k].len;
    }
    memcpy(out + o, s + from, len - from);
    out[o + len - from] = '\0';
    return out;
}

/* Value of keyword in a parsed conninfo, NULL when absent or empty. */
static const char *opt_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, keyword) == 0)
            return o->val && o->val[0] ? o->val : NULL;
    }
    return NULL;
}

/* The servers a DSN names, as libpq reads its host/hostaddr/port lists: entry k has host[k]
 * (a name, an IP literal, a socket directory, or "" when only hostaddr[k] is given) and
 * port[k]. */
#define MAX_DSN_HOSTS 8

struct dsn_hosts {
    int n;
    char host[MAX_DSN_HOSTS][256];
    char addr[MAX_DSN_HOSTS][64]; /* hostaddr given in the DSN, or "" */
    int port[MAX_DSN_HOSTS];
    int socket[MAX_DSN_HOSTS]; /* a Unix-domain socket directory (or abstract "@name") */
};

/* Splits a comma-separated list into out (at most max entries). Returns the count, -1 when
 * there are too many or one is too long. An absent list counts as one empty entry. */
static int split_list(const char *list, char out[][256], int max)
{
    int n = 0;
    const char *p = list ? list : "";

    for (;;) {
        size_t len = strcspn(p, ",");
        if (n >= max || len >= 256)
            return -1;
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        n++;
        if (p[len] != ',')
            return n;
        p += len + 1;
    }
}

/* Returns 0, or -1 with a reason in why. */
static int dsn_hosts_parse(const PQconninfoOption *opts, struct dsn_hosts *h, const char **why)
{
    const char *host = opt_value(opts, "host");
    const char *hostaddr = opt_value(opts, "hostaddr");
    const char *port = opt_value(opts, "port");
    int nh, na, np;

    memset(h, 0, sizeof(*h));
    *why = NULL;
    if (opt_value(opts, "service") != NULL) {
        *why = "a service file entry (service=...) is not supported: write host, port and dbname "
               "in the DSN";
        return -1;
    }
    if (host == NULL && hostaddr == NULL) {
        *why = "the DSN must name the server (postgresql://user@host:port/db, or host=... ; a "
               "Unix socket as host=/path/to/socket/dir)";
        return -1;
    }
    {
        char hl[MAX_DSN_HOSTS][256], al[MAX_DSN_HOSTS][256], pl[MAX_DSN_HOSTS][256];
        nh = split_list(host, hl, MAX_DSN_HOSTS);
        na = split_list(hostaddr, al, MAX_DSN_HOSTS);
        np = split_list(port, pl, MAX_DSN_HOSTS);
        if (nh < 0 || na < 0 || np < 0) {
            *why = "the DSN names too many hosts (at most 8) or a host name is too long";
            return -1;
        }
        h->n = host ? nh : na;
        if ((host && hostaddr && nh != na) || (np != 1 && np != h->n)) {
            *why = "the DSN's host, hostaddr and port lists do not have matching lengths";
            return -1;
        }
        for (int k = 0; k < h->n; k++) {
            const char *pk = np == 1 ? pl[0] : pl[k];
            char *end;
            long pv = pk[0] ? strtol(pk, &end, 10) : 5432;

            if (pk[0] && (*end != '\0' || pv < 1 || pv > 65535)) {
                *why = "the DSN's port is not a number between 1 and 65535";
                return -1;
            }
            h->port[k] = (int)pv;
            snprintf(h->host[k], sizeof(h->host[k]), "%s", host ? hl[k] : "");
            if (hostaddr)
                snprintf(h->addr[k], sizeof(h->addr[k]), "%.63s", al[k]);
            h->socket[k] = !h->addr[k][0] && (h->host[k][0] == '/' || h->host[k][0] == '@');
            if (!h->host[k][0] && !h->addr[k][0]) {
                *why = "the DSN's host list has an empty entry";
                return -1;
            }
        }
    }
    return 0;
}

char *gen_mask_dsn(const char *dsn)
{
    struct span sp[MAX_SPANS];
    int n = dsn_secret_spans(dsn, sp);
    char *masked = replace_spans(dsn, sp, n);
    char *errmsg = NULL;
    PQconninfoOption *orig = NULL, *after = NULL;
    int safe = 1;

    if (masked == NULL)
        return NULL;
    /* Belt and braces: whatever libpq reads as a password in the masked string must be "***".
     * When it is not (a DSN our reading of libpq's grammar got wrong), hide the whole DSN. */
    orig = PQconninfoParse(dsn, &errmsg);
    PQfreemem(errmsg);
    errmsg = NULL;
    after = PQconninfoParse(masked, &errmsg);
    PQfreemem(errmsg);
    if (orig == NULL || after == NULL) {
        safe = orig == NULL && after == NULL && n == 0 && strstr(dsn, "password") == NULL;
    } else {
        static const char *const keys[] = {"password", "sslpassword"};
        for (int k = 0; k < 2; k++) {
            const char *v = opt_value(orig, keys[k]);
            const char *mv = opt_value(after, keys[k]);
            if (v != NULL && (mv == NULL || strcmp(mv, "***") != 0))
                safe = 0;
        }
    }
    PQconninfoFree(orig);
    PQconninfoFree(after);
    if (!safe) {
        free(masked);
        masked = strdup("***");
    }
    return masked;
}

/* ======================================================================================== */
/* Spec                                                                                     */
/* ======================================================================================== */

enum build_mode { BUILD_CREATE, BUILD_RECREATE, BUILD_REINDEX, BUILD_REINDEX_CONC, BUILD_NONE };
static const char *const build_names[] = {"create", "recreate", "reindex", "reindex_concurrently",
                                          "none",   NULL};

struct gen_spec {
    const char *dsn; /* borrowed from the spec object */
    char schema[64]; /* "" = resolved through search_path */
    char table[64];
    int create_table;
    int truncate;
    int64_t rows;
    int dim;
    int base_vectors;
    double noise_sigma;
    uint64_t seed;
    int64_t batch_rows;
    int connections;
    int build; /* enum build_mode */
    int m;
    int ef_construction;
    int maintenance_work_mem_mb;
    int max_parallel_maintenance_workers;
};

/* A plain identifier ([A-Za-z_][A-Za-z0-9_$]*), folded to lower case as PostgreSQL folds an
 * unquoted one. Returns 0 or -1. */
static int take_ident(const char *s, size_t len, size_t max, char *out)
{
    if (len == 0 || len > max)
        return -1;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return -1;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        if (!(isalnum(c) || c == '_' || (c == '$' && k > 0)) || c >= 0x80)
            return -1;
        out[k] = (char)tolower(c);
    }
    out[len] = '\0';
    return 0;
}

static int parse_table_name(const char *name, struct gen_spec *s)
{
    const char *dot = strchr(name, '.');

    if (dot == NULL) {
        s->schema[0] = '\0';
        return take_ident(name, strlen(name), GEN_MAX_TABLE_PART, s->table);
    }
    if (take_ident(name, (size_t)(dot - name), 63, s->schema) != 0)
        return -1;
    return take_ident(dot + 1, strlen(dot + 1), GEN_MAX_TABLE_PART, s->table);
}

static const char *const top_keys[] = {
    "kind",       "name",        "notify", "database",     "table",       "create_table",
    "truncate",   "rows",        "dim",    "base_vectors", "noise_sigma", "seed",
    "batch_rows", "connections", "index",  "thresholds",   NULL};
static const char *const database_keys[] = {"dsn", NULL};
static const char *const index_keys[] = {
    "build", "m", "ef_construction", "maintenance_work_mem_mb", "max_parallel_maintenance_workers",
    NULL};

/* Reads (and, absent fields, fills) the spec. Used by validate and, on a copy, by execute. */
static lt_status spec_read(json_t *spec, struct gen_spec *s, struct lt_error *err)
{
    json_t *db = NULL, *index = NULL;
    const char *table = NULL;
    char *errmsg = NULL;
    PQconninfoOption *opts;
    int64_t v;
    lt_status rc;

    memset(s, 0, sizeof(*s));
    if ((rc = ltj_check_keys(spec, "", top_keys, err)) != LT_OK)
        return rc;
    /* Only the service's baseline check (thresholds.max_regression_pct). */
    if ((rc = runner_validate_baseline_thresholds(spec, err)) != LT_OK)
        return rc;
    if ((rc = ltj_object(spec, "", "database", 1, &db, err)) != LT_OK)
        return rc;
    if ((rc = ltj_check_keys(db, "/database", database_keys, err)) != LT_OK)
        return rc;
    if ((rc = ltj_string(db, "/database", "dsn", 1, NULL, 1, 4096, &s->dsn, err)) != LT_OK)
        return rc;
    /* Parsing only (no network, no service file): fine on an HTTP thread. libpq's message may
     * quote the string, password included, so it is not passed on. */
    opts = PQconninfoParse(s->dsn, &errmsg);
    PQfreemem(errmsg);
    if (opts == NULL)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/database/dsn",
                            "/database/dsn is not a valid PostgreSQL connection string (expected "
                            "postgresql://user:password@host:port/db or key=value pairs)");
    {
        struct dsn_hosts hosts;
        const char *why = NULL;
        int bad = dsn_hosts_parse(opts, &hosts, &why);

        PQconninfoFree(opts);
        if (bad)
            return lt_error_set(err, LT_ERR_INVALID_SPEC, "/database/dsn", "/database/dsn: %s",
                                why);
    }

    if ((rc = ltj_string(spec, "", "table", 0, "traces", 1, 64 + 1 + GEN_MAX_TABLE_PART, &table,
                         err)) != LT_OK)
        return rc;
    if (parse_table_name(table, s) != 0)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/table",
                            "/table must be a plain identifier ([A-Za-z_][A-Za-z0-9_$]*, at most "
                            "%d characters), optionally schema-qualified (schema.table)",
                            GEN_MAX_TABLE_PART);
    if ((rc = ltj_bool(spec, "", "create_table", 0, 1, &s->create_table, err)) != LT_OK)
        return rc;
    if ((rc = ltj_bool(spec, "", "truncate", 0, 0, &s->truncate, err)) != LT_OK)
        return rc;
    if ((rc = ltj_int(spec, "", "rows", 0, 100000, 1, GEN_MAX_ROWS, &s->rows, err)) != LT_OK)
        return rc;
    if ((rc = ltj_int(spec, "", "dim", 0, 1536, 1, GEN_MAX_DIM, &v, err)) != LT_OK)
        return rc;
    s->dim = (int)v;
    if ((rc = ltj_int(spec, "", "base_vectors", 0, 1000, 1, 1000000, &v, err)) != LT_OK)
        return rc;
    s->base_vectors = (int)v;
    if ((int64_t)s->base_vectors * s->dim > GEN_MAX_BASE_FLOATS)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/base_vectors",
                            "/base_vectors * /dim must be at most %lld (the base vectors are held "
                            "in memory)",
                            (long long)GEN_MAX_BASE_FLOATS);
    if ((rc = ltj_number(spec, "", "noise_sigma", 0, 0.05, 0.0, 100.0, &s->noise_sigma, err)) !=
        LT_OK)
        return rc;
    if ((rc = ltj_int(spec, "", "seed", 0, 42, INT64_MIN, INT64_MAX, &v, err)) != LT_OK)
        return rc;
    s->seed = (uint64_t)v;
    if ((rc = ltj_int(spec, "", "batch_rows", 0, 1000, 1, 1000000, &s->batch_rows, err)) != LT_OK)
        return rc;
    if ((rc = ltj_int(spec, "", "connections", 0, 2, 1, GEN_MAX_CONNECTIONS, &v, err)) != LT_OK)
        return rc;
    s->connections = (int)v;

    if ((rc = ltj_object(spec, "", "index", 0, &index, err)) != LT_OK)
        return rc;
    if ((rc = ltj_check_keys(index, "/index", index_keys, err)) != LT_OK)
        return rc;
    if ((rc = ltj_enum(index, "/index", "build", 0, "create", build_names, &s->build, err)) !=
        LT_OK)
        return rc;
    /* pgvector's own limits for hnsw's m and ef_construction. */
    if ((rc = ltj_int(index, "/index", "m", 0, 16, 2, 100, &v, err)) != LT_OK)
        return rc;
    s->m = (int)v;
    if ((rc = ltj_int(index, "/index", "ef_construction", 0, 64, 4, 1000, &v, err)) != LT_OK)
        return rc;
    s->ef_construction = (int)v;
    if (s->ef_construction < 2 * s->m)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/index/ef_construction",
                            "/index/ef_construction must be at least 2 * /index/m (%d)", 2 * s->m);
    if ((rc = ltj_int(index, "/index", "maintenance_work_mem_mb", 0, 1024, 1, 1048576, &v, err)) !=
        LT_OK)
        return rc;
    s->maintenance_work_mem_mb = (int)v;
    if ((rc = ltj_int(index, "/index", "max_parallel_maintenance_workers", 0, 2, 0, 1024, &v,
                      err)) != LT_OK)
        return rc;
    s->max_parallel_maintenance_workers = (int)v;
    if (s->build != BUILD_NONE && s->dim > GEN_MAX_HNSW_DIM)
        return lt_error_set(err, LT_ERR_INVALID_SPEC, "/dim",
                            "/dim must be at most %d for an HNSW index on vector (pgvector's "
                            "limit); use /index/build \"none\" for more dimensions",
                            GEN_MAX_HNSW_DIM);
    return LT_OK;
}

static lt_status generate_validate(json_t *spec, struct lt_error *err)
{
    struct gen_spec s;

    return spec_read(spec, &s, err);
}

static void generate_mask_secrets(json_t *spec)
{
    json_t *db = json_object_get(spec, "database");
    json_t *dsn = db ? json_object_get(db, "dsn") : NULL;
    char *masked;

    if (!json_is_string(dsn))
        return;
    masked = gen_mask_dsn(json_string_value(dsn));
    /* Out of memory: hide the whole DSN rather than keep the password. */
    json_object_set_new(db, "dsn", json_string(masked ? masked : "***"));
    free(masked);
}

/* Every server the DSN names; a Unix-domain socket counts as localhost. A DSN that does not
 * parse is reported as host "" so that the check fails closed. */
static int generate_each_target(const json_t *spec,
                                int (*fn)(void *opaque, const char *host, int port,
                                          const char *field),
                                void *opaque)
{
    const char *dsn = json_string_value(json_object_get(json_object_get(spec, "database"), "dsn"));
    char *errmsg = NULL;
    PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, &errmsg) : NULL;
    struct dsn_hosts h;
    const char *why;
    int rc = 0;

    PQfreemem(errmsg);
    if (opts == NULL || dsn_hosts_parse(opts, &h, &why) != 0) {
        PQconninfoFree(opts);
        return fn(opaque, "", 0, "/database/dsn");
    }
    PQconninfoFree(opts);
    for (int k = 0; k < h.n && rc == 0; k++) {
        if (h.socket[k]) {
            rc = fn(opaque, "localhost", h.port[k], "/database/dsn");
            continue;
        }
        if (h.host[k][0])
            rc = fn(opaque, h.host[k], h.port[k], "/database/dsn");
        if (rc == 0 && h.addr[k][0])
            rc = fn(opaque, h.addr[k], h.port[k], "/database/dsn");
    }
    return rc;
}

/* ======================================================================================== */
/* The run                                                                                  */
/* ======================================================================================== */

enum phase { PH_SCHEMA, PH_INSERT, PH_INDEX, PH_DONE };
static const char *const phase_names[] = {"schema", "insert", "index", "done"};

#define FLUSH_BYTES  (256 * 1024)       /* COPY data handed to libpq at a time */
#define PREGEN_BYTES (16 * 1024 * 1024) /* of the next batch, made while a commit is pending */
#define MAX_SECRETS  (MAX_SPANS + 2)
#define MAX_WARNINGS 32

struct gen_run;

struct loader {
    struct gen_run *run; /* borrowed */
    int index;
    pthread_t thread;
};

struct gen_run {
    /* Written by the coordinator before the loaders start; read-only while they run. */
    const struct runner_job *job; /* borrowed */
    json_t *spec_copy;            /* owned; spec.dsn points into it */
    struct gen_spec spec;
    struct gen_params params;
    float *base;                /* owned: min(base_vectors, rows) base vectors */
    char **kw;                  /* owned: connection keywords, NULL-terminated */
    char **vals;                /* owned: their values */
    char *secrets[MAX_SECRETS]; /* owned: strings scrubbed out of every message */
    int nsecrets;
    char where[256]; /* "host:port (database d, user u)" for messages, no password */
    int connect_timeout_ms;
    char qtable[300];     /* quoted, schema-qualified once resolved */
    char qschema[140];    /* quoted schema of the table */
    char schema_name[64]; /* the table's schema, resolved */
    char copy_sql[512];
    int embedding_vector; /* 1: vector(dim), 0: real[] */
    char qvecschema[140]; /* quoted schema of the vector extension */
    size_t row_max;       /* upper bound of one encoded row */

    /* Shared with the loaders. */
    atomic_int stop;
    atomic_llong next_batch;
    atomic_llong rows_committed;
    atomic_llong rows_uncertain;
    atomic_llong bytes_sent;
    atomic_int loaders_done;
    pthread_mutex_t lock; /* guards: failed, fail_code, fail_msg, fail_field */
    int failed;
    const char *fail_code; /* static string */
    char fail_msg[256];
    char fail_field[32];

    /* Coordinator only. */
    PGconn *ctl;
    struct pgc_waiter ctl_wait;
    json_t *warnings; /* array of strings */
    int collect_notices;
    enum phase phase;
    int final; /* the run has ended: results are final */
    int64_t t0_ns;
    int64_t phase_t0_ns;
    int64_t last_progress_ns;
    int64_t last_point_t;
    long long last_point_rows;
    double schema_s, insert_s, index_s;
    int nloaders;
    struct loader *loaders;
    /* index */
    char idx_name[80];   /* the index reported (<= 63 bytes: table names are <= 48) */
    char idx_qname[300]; /* quoted schema.name */
    char *idx_def;       /* recreate: definition of the dropped index; owned */
    int idx_dropped;     /* recreate: dropped before the load, not rebuilt yet */
    const char *idx_action;
    int idx_valid; /* -1 unknown */
    double idx_build_s;
    int live_index; /* a vector index was maintained during the load */
    /* index build progress: a second connection reads pg_stat_progress_create_index for the
     * backend of ctl about once a second while the build runs (NULL when it could not connect:
     * the build then shows no progress, nothing else changes) */
    PGconn *mon;
    int64_t mon_last_ns;
    char idx_progress_phase[64]; /* PostgreSQL's phase text, "" before the first reading */
    long long idx_tuples_done, idx_tuples_total;
};

static int64_t elapsed_ns(int64_t from)
{
    return lt_mono_ns() - from;
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence (jansson refuses invalid
 * UTF-8, and server messages may quote non-ASCII names). */
static void utf8_cut(char *s, size_t max)
{
    size_t n = strlen(s);

    if (n <= max)
        return;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    s[n] = '\0';
}

/* Replaces every secret in msg (NUL-terminated, in a buffer of size bytes) with "***", then
 * flattens it to one line. Callers format into a buffer far larger than what they keep and cut
 * only afterwards, so a secret is never cut in two (which would leave its prefix behind). */
static void scrub(const struct gen_run *r, char *msg, size_t size)
{
    for (int k = 0; k < r->nsecrets; k++) {
        const char *sec = r->secrets[k];
        size_t sl = strlen(sec), len = strlen(msg), o = 0;
        const char *p = msg, *hit;
        char *tmp;

        if (sl == 0 || strstr(msg, sec) == NULL)
            continue;
        tmp = malloc(len + 3 * (len / sl + 1) + 1);
        if (tmp == NULL) {
            snprintf(msg, size, "(message withheld: out of memory while removing secrets)");
            return;
        }
        while ((hit = strstr(p, sec)) != NULL) {
            memcpy(tmp + o, p, (size_t)(hit - p));
            o += (size_t)(hit - p);
            memcpy(tmp + o, "***", 3);
            o += 3;
            p = hit + sl;
        }
        strcpy(tmp + o, p);
        snprintf(msg, size, "%s", tmp);
        utf8_cut(msg, size - 1);
        free(tmp);
    }
    for (char *c = msg; *c; c++) {
        if (*c == '\n' || *c == '\t' || *c == '\r')
            *c = ' ';
    }
}

/* Records the run's failure (the first one wins) and stops everything. Any thread. */
static void run_fail(struct gen_run *r, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void run_fail(struct gen_run *r, const char *code, const char *field, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    scrub(r, msg, sizeof(msg));
    utf8_cut(msg, sizeof(r->fail_msg) - 1);
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        r->failed = 1;
        r->fail_code = code;
        memcpy(r->fail_msg, msg, strlen(msg) + 1); /* cut to fit above */
        snprintf(r->fail_field, sizeof(r->fail_field), "%s", field ? field : "");
    }
    pthread_mutex_unlock(&r->lock);
    atomic_store(&r->stop, 1);
}

static int run_failed(struct gen_run *r)
{
    int f;

    pthread_mutex_lock(&r->lock);
    f = r->failed;
    pthread_mutex_unlock(&r->lock);
    return f;
}

static int run_should_stop(void *arg)
{
    struct gen_run *r = arg;

    return atomic_load(&r->stop) || atomic_load(r->job->cancel);
}

static int run_cancelled(const struct gen_run *r)
{
    return atomic_load(r->job->cancel) != 0;
}

/* Coordinator only. */
static void add_warning(struct gen_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_warning(struct gen_run *r, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    if (json_array_size(r->warnings) >= MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    scrub(r, msg, sizeof(msg));
    utf8_cut(msg, 1000);
    json_array_append_new(r->warnings, json_string(msg));
}

/* The SQLSTATE classes the API names; everything else is database_error. */
static const char *classify_sqlstate(const char *ss)
{
    if (ss == NULL)
        return "database_error";
    if (strcmp(ss, "42501") == 0)
        return "permission_denied";
    if (strcmp(ss, "53100") == 0)
        return "disk_full";
    if (strcmp(ss, "53200") == 0)
        return "database_out_of_memory";
    if (strcmp(ss, "53300") == 0 || strcmp(ss, "57P01") == 0 || strcmp(ss, "57P02") == 0 ||
        strcmp(ss, "57P03") == 0)
        return "database_unavailable";
    if (strncmp(ss, "53", 2) == 0)
        return "database_resources";
    if (strncmp(ss, "08", 2) == 0)
        return "database_connection_lost";
    if (strcmp(ss, "23505") == 0)
        return "duplicate_rows";
    if (strcmp(ss, "25006") == 0)
        return "database_read_only";
    if (strcmp(ss, "57014") == 0)
        return "query_canceled";
    return "database_error";
}

/* Records a failed statement: "<doing>: <server message> (SQLSTATE x)". res may be NULL (the
 * connection failed), then PQerrorMessage(conn) says why. */
static void fail_sql(struct gen_run *r, PGconn *conn, const PGresult *res, const char *doing)
{
    const char *ss = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *code;

    if (primary == NULL) /* whole, unscrubbed: run_fail scrubs before it cuts */
        primary = conn ? PQerrorMessage(conn) : "connection lost";
    code = res && ss ? classify_sqlstate(ss) : "database_connection_lost";
    if (strcmp(code, "duplicate_rows") == 0)
        run_fail(r, code, "/seed",
                 "%s: %s; rows of this seed are already in the table (set truncate, or use "
                 "another seed)",
                 doing, primary);
    else if (ss)
        run_fail(r, code, NULL, "%s: %s (SQLSTATE %s)", doing, primary, ss);
    else
        run_fail(r, code, NULL, "%s: %s", doing, primary);
}

/* Records a failed connection attempt, classified from libpq's message (no SQLSTATE exists
 * for those), which is scrubbed and shortened to its reason. */
static void fail_connect(struct gen_run *r, PGconn *conn, pgc_rc rc)
{
    char reason[2048];
    const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
    const char *p, *code = "database_unreachable";
    char *nl;

    if (rc == PGC_TIMEOUT) {
        run_fail(r, "database_unreachable", NULL,
                 "cannot connect to PostgreSQL at %s: no answer within %d s (connect_timeout)",
                 r->where, r->connect_timeout_ms / 1000);
        return;
    }
    /* "connection to server at "h" (addr), port p failed: FATAL:  reason\n..." once per address
     * tried; the last attempt's reason is the one to show. */
    p = msg;
    for (const char *q = strstr(msg, "failed: "); q != NULL; q = strstr(q + 8, "failed: "))
        p = q + 8;
    if (strncmp(p, "FATAL:  ", 8) == 0)
        p += 8;
    snprintf(reason, sizeof(reason), "%s", p);
    nl = strchr(reason, '\n'); /* the first line of the last attempt (scrubbed below) */
    if (nl)
        *nl = '\0';
    if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied") ||
        strstr(msg, "authentication failed") || strstr(msg, "pg_hba.conf") ||
        strstr(msg, "password is required") ||
        (strstr(msg, "role \"") && strstr(msg, "does not exist")))
        code = "database_auth";
    else if (strstr(msg, "permission denied for database"))
        code = "permission_denied";
    else if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
        code = "database_not_found";
    else if (strstr(msg, "too many clients") || strstr(msg, "remaining connection slots") ||
             strstr(msg, "starting up") || strstr(msg, "shutting down") ||
             strstr(msg, "recovery mode"))
        code = "database_unavailable";
    run_fail(r, code, NULL, "cannot connect to PostgreSQL at %s: %s", r->where, reason);
}

/* ---- progress (coordinator) ---- */

static double insert_rate(const struct gen_run *r)
{
    double s =
        r->phase == PH_INSERT && !r->final ? (double)elapsed_ns(r->phase_t0_ns) / 1e9 : r->insert_s;
    long long rows = atomic_load(&r->rows_committed);

    return s > 0 ? (double)rows / s : 0.0;
}

static json_t *result_json(struct gen_run *r);

static void emit_progress(struct gen_run *r)
{
    const struct runner_sink *sink = r->job->sink;
    long long rows = atomic_load(&r->rows_committed);
    double insert_share = r->spec.build == BUILD_NONE ? 1.0 : 0.5;
    double f = 0.0;
    json_t *prog, *partial;

    r->last_progress_ns = lt_mono_ns();
    if (sink == NULL || sink->progress == NULL)
        return;
    if (r->phase == PH_INSERT)
        f = insert_share * (double)rows / (double)r->spec.rows;
    else if (r->phase == PH_INDEX && r->idx_tuples_total > 0)
        f = insert_share + (1.0 - insert_share) *
                               fmin(1.0, (double)r->idx_tuples_done / (double)r->idx_tuples_total);
    else if (r->phase == PH_INDEX)
        f = insert_share;
    else if (r->phase == PH_DONE)
        f = 1.0;
    prog = json_pack("{s:f, s:s, s:I, s:f}", "fraction", f, "phase", phase_names[r->phase],
                     "rows_done", (json_int_t)rows, "rows_per_s", insert_rate(r));
    if (prog && r->phase == PH_INDEX && r->idx_progress_phase[0]) {
        json_object_set_new(prog, "index_phase", json_string(r->idx_progress_phase));
        json_object_set_new(prog, "index_tuples_done", json_integer(r->idx_tuples_done));
        json_object_set_new(prog, "index_tuples_total", json_integer(r->idx_tuples_total));
    }
    partial = result_json(r);
    if (prog)
        sink->progress(sink->opaque, prog, partial);
    json_decref(partial);
    json_decref(prog);
}

/* Reads the index build's progress from the monitor connection: pgvector's HNSW build counts
 * the tuples it has inserted into the graph (tuples_done) but leaves tuples_total at 0, so the
 * total is the table's row estimate (the load ends with ANALYZE). A failure only stops the
 * readings. */
static void read_index_progress(struct gen_run *r)
{
    char pid[24];
    const char *params[1] = {pid};
    PGresult *res;

    snprintf(pid, sizeof(pid), "%d", PQbackendPID(r->ctl));
    res = PQexecParams(r->mon,
                       "SELECT p.phase, p.tuples_done, CASE WHEN p.tuples_total > 0 THEN "
                       "p.tuples_total ELSE greatest(c.reltuples, 0)::bigint END FROM "
                       "pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                       "WHERE p.pid = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        PQfinish(r->mon);
        r->mon = NULL;
        return;
    }
    if (PQntuples(res) == 1) {
        snprintf(r->idx_progress_phase, sizeof(r->idx_progress_phase), "%s", PQgetvalue(res, 0, 0));
        utf8_cut(r->idx_progress_phase, sizeof(r->idx_progress_phase) - 1);
        r->idx_tuples_done = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        r->idx_tuples_total = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    }
    PQclear(res);
}

/* Called at least every 100 ms on the coordinator while anything is in progress. */
static void tick(void *arg)
{
    struct gen_run *r = arg;
    const struct runner_sink *sink = r->job->sink;
    int64_t now = lt_mono_ns();

    if (r->mon && r->phase == PH_INDEX && now - r->mon_last_ns >= 1000000000LL) {
        read_index_progress(r);
        r->mon_last_ns = lt_mono_ns();
        now = r->mon_last_ns;
    }

    while (now - r->t0_ns >= (r->last_point_t + 1) * 1000000000LL) {
        long long rows = atomic_load(&r->rows_committed);
        json_t *pt;

        r->last_point_t++;
        pt = json_pack("{s:I, s:I, s:I, s:I, s:s}", "t", (json_int_t)r->last_point_t, "rows",
                       (json_int_t)rows, "rows_per_s", (json_int_t)(rows - r->last_point_rows),
                       "bytes", (json_int_t)atomic_load(&r->bytes_sent), "phase",
                       phase_names[r->phase]);
        r->last_point_rows = rows;
        if (pt && sink && sink->point)
            sink->point(sink->opaque, r->last_point_t, pt);
        json_decref(pt);
    }
    if (now - r->last_progress_ns >= 1000000000LL)
        emit_progress(r);
}

static void enter_phase(struct gen_run *r, enum phase ph)
{
    r->phase = ph;
    r->phase_t0_ns = lt_mono_ns();
    emit_progress(r);
}

/* ---- connections ---- */

/* The control connection's waits tick, cancel at once when stopping and give up after 2 s. */
static const struct pgc_waiter *ctl_waiter(struct gen_run *r)
{
    return &r->ctl_wait;
}

#define MAX_PINNED 16 /* host entries after expanding each name into its admitted addresses */

struct pinned {
    int n;
    char host[4096], addr[2048], port[256]; /* comma-separated lists for libpq */
};

static void pin_add(struct pinned *p, const char *host, const char *addr, int port)
{
    size_t hl = strlen(p->host), al = strlen(p->addr), pl = strlen(p->port);

    snprintf(p->host + hl, sizeof(p->host) - hl, "%s%s", p->n ? "," : "", host);
    snprintf(p->addr + al, sizeof(p->addr) - al, "%s%s", p->n ? "," : "", addr);
    snprintf(p->port + pl, sizeof(p->port) - pl, "%s%d", p->n ? "," : "", port);
    p->n++;
}

/* Is host/addr already pinned (getaddrinfo may answer an address more than once)? */
static int pin_has(const struct pinned *p, const char *host, const char *addr)
{
    const char *h = p->host, *a = p->addr;

    for (int k = 0; k < p->n; k++) {
        size_t hl = strcspn(h, ","), al = strcspn(a, ",");
        if (hl == strlen(host) && memcmp(h, host, hl) == 0 && al == strlen(addr) &&
            memcmp(a, addr, al) == 0)
            return 1;
        h += hl + (h[hl] == ',');
        a += al + (a[al] == ',');
    }
    return 0;
}

/* Resolves every host of the DSN here, keeps the addresses the allowlist admits (the same rule
 * as the capacity runner: a host admitted by name may use any address but the always-denied
 * ones, otherwise the address itself must be listed) and pins them with libpq's hostaddr, one
 * host/hostaddr pair per address, so libpq still tries them in turn but never resolves a name
 * itself: an answer that changes between this check and the connection (DNS rebinding) cannot
 * take it anywhere else. Unix-domain sockets need no address. Returns 0, or -1 (recorded). */
static int pin_hosts(struct gen_run *r, const struct dsn_hosts *h, struct pinned *p)
{
    const struct lt_allow *allow = r->job->config ? r->job->config->allow : NULL;
    struct lt_allow *own = NULL;
    char unresolved[300] = "";
    int rc = -1;

    memset(p, 0, sizeof(*p));
    if (allow == NULL) {
        own = lt_allow_new_default();
        if (own == NULL) {
            run_fail(r, "internal", NULL, "out of memory");
            return -1;
        }
        allow = own;
    }
    for (int k = 0; k < h->n; k++) {
        struct addrinfo hints, *res = NULL;
        const char *name = h->addr[k][0] ? h->addr[k] : h->host[k];
        int name_allowed, gai;

        if (h->socket[k]) {
            if (p->n < MAX_PINNED)
                pin_add(p, h->host[k], "", h->port[k]);
            continue;
        }
        /* Kept as it is (not as a truth value): "localhost" may reach loopback only. */
        name_allowed = h->host[k][0] && !h->addr[k][0]
                           ? lt_allow_name_matched(allow, h->host[k], h->port[k])
                           : 0;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = h->addr[k][0] ? AI_NUMERICHOST : 0;
        gai = getaddrinfo(name, NULL, &hints, &res);
        if (gai != 0) {
            snprintf(unresolved, sizeof(unresolved), "cannot resolve %.200s: %s", name,
                     gai_strerror(gai));
            continue;
        }
        for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            char ip[64];

            if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) !=
                0)
                continue;
            if (!lt_allow_addr(allow, ai->ai_addr, name_allowed)) {
                freeaddrinfo(res);
                run_fail(r, "forbidden_target", "/database/dsn",
                         "database host %s resolves to %s, which is not on this daemon's target "
                         "allowlist (--allow-target)",
                         name, ip);
                goto out;
            }
            if (!pin_has(p, h->host[k], ip) && p->n < MAX_PINNED)
                pin_add(p, h->host[k], ip, h->port[k]);
        }
        freeaddrinfo(res);
    }
    if (p->n == 0) {
        run_fail(r, "database_unreachable", NULL, "cannot connect to PostgreSQL at %s: %s",
                 r->where, unresolved[0] ? unresolved : "no address");
        goto out;
    }
    rc = 0;
out:
    lt_allow_free(own);
    return rc;
}

/* Builds the connection parameters from the DSN: every option it sets but the host lists,
 * which pin_hosts rewrites, plus connect_timeout (10 s) when absent and a fallback application
 * name; collects the secrets to scrub and the host/port/db/user for messages. Returns 0 or -1
 * (failure recorded). */
static int conn_params_build(struct gen_run *r)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(r->spec.dsn, &errmsg);
    struct span sp[MAX_SPANS];
    struct dsn_hosts hosts;
    struct pinned pin;
    const char *why = NULL;
    int nsp, n = 0, k = 0, have_timeout = 0;
    const char *host, *port, *db, *user, *ct;

    PQfreemem(errmsg);
    if (opts == NULL || dsn_hosts_parse(opts, &hosts, &why) != 0) {
        PQconninfoFree(opts);
        run_fail(r, "invalid_spec", "/database/dsn", "/database/dsn: %s",
                 why ? why : "cannot be parsed");
        return -1;
    }
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    r->kw = calloc((size_t)n + 6, sizeof(char *));
    r->vals = calloc((size_t)n + 6, sizeof(char *));
    if (r->kw == NULL || r->vals == NULL)
        goto oom;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (is_secret_key(o->keyword, strlen(o->keyword)) && o->val && o->val[0] &&
            r->nsecrets < MAX_SECRETS && (r->secrets[r->nsecrets] = strdup(o->val)) != NULL)
            r->nsecrets++;
        if (o->val == NULL || o->val[0] == '\0' || strcmp(o->keyword, "host") == 0 ||
            strcmp(o->keyword, "hostaddr") == 0 || strcmp(o->keyword, "port") == 0)
            continue;
        r->kw[k] = strdup(o->keyword);
        r->vals[k] = strdup(o->val);
        if (r->kw[k] == NULL || r->vals[k] == NULL)
            goto oom;
        k++;
        if (strcmp(o->keyword, "connect_timeout") == 0)
            have_timeout = 1;
    }
    /* The raw (percent-encoded or quoted) spellings too, in case a message echoes them. */
    nsp = dsn_secret_spans(r->spec.dsn, sp);
    for (int s = 0; s < nsp && r->nsecrets < MAX_SECRETS; s++) {
        char *raw = strndup(r->spec.dsn + sp[s].off, sp[s].len);
        if (raw != NULL)
            r->secrets[r->nsecrets++] = raw;
    }
    host = opt_value(opts, "host");
    if (host == NULL)
        host = opt_value(opts, "hostaddr");
    port = opt_value(opts, "port");
    db = opt_value(opts, "dbname");
    user = opt_value(opts, "user");
    {
        char where[2048];
        snprintf(where, sizeof(where), "%s:%s (database %s, user %s)", host ? host : "local socket",
                 port ? port : "5432", db ? db : "(default)", user ? user : "(default)");
        scrub(r, where, sizeof(where));
        utf8_cut(where, sizeof(r->where) - 1);
        memcpy(r->where, where, strlen(where) + 1);
    }
    ct = opt_value(opts, "connect_timeout");
    r->connect_timeout_ms = ct ? atoi(ct) * 1000 : 10000;
    if (r->connect_timeout_ms <= 0)
        r->connect_timeout_ms = 24 * 3600 * 1000; /* libpq: 0 = wait forever; cancel still works */
    else if (r->connect_timeout_ms < 2000)
        r->connect_timeout_ms = 2000; /* libpq's minimum */
    PQconninfoFree(opts);
    opts = NULL;

    if (pin_hosts(r, &hosts, &pin) != 0)
        return -1;
    {
        const char *add_kw[] = {"host", "hostaddr", "port", "connect_timeout",
                                "fallback_application_name"};
        const char *add_val[] = {pin.host, pin.addr, pin.port, "10", "loadtestd-generate"};
        for (int a = 0; a < 5; a++) {
            if (a == 3 && have_timeout)
                continue;
            r->kw[k] = strdup(add_kw[a]);
            r->vals[k] = strdup(add_val[a]);
            if (r->kw[k] == NULL || r->vals[k] == NULL)
                goto oom;
            k++;
        }
    }
    return 0;
oom:
    PQconninfoFree(opts);
    run_fail(r, "internal", NULL, "out of memory");
    return -1;
}

static void notice_ignore(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

/* On the control connection: keeps what the server says while building the index (pgvector
 * reports when the graph outgrows maintenance_work_mem) as warnings. */
static void notice_collect(void *arg, const PGresult *res)
{
    struct gen_run *r = arg;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    if (!r->collect_notices || msg == NULL || strstr(msg, "already exists, skipping"))
        return;
    add_warning(r, "server: %s", msg);
}

/* Connects on the calling thread. Returns the connection or NULL (failure recorded unless it
 * was a stop). */
static PGconn *run_connect(struct gen_run *r, const struct pgc_waiter *w)
{
    PGconn *conn = NULL;
    pgc_rc rc = pgc_connect((const char *const *)r->kw, (const char *const *)r->vals,
                            r->connect_timeout_ms, w, &conn);

    if (rc == PGC_OK)
        return conn;
    if (rc != PGC_STOPPED)
        fail_connect(r, conn, rc);
    PQfinish(conn);
    return NULL;
}

/* Runs sql on the control connection. Returns the result when it succeeded; NULL when it failed
 * (recorded, "doing" names what we were doing) or the run is stopping. soft: return the error
 * result instead of recording it (*soft_err set), for statements whose failure we handle. */
static PGresult *ctl_run(struct gen_run *r, const char *doing, const char *sql, int nparams,
                         const char *const *params, PGresult **soft_err)
{
    PGresult *res = NULL;
    pgc_rc rc = pgc_exec(r->ctl, sql, nparams, params, ctl_waiter(r), &res);
    ExecStatusType st;

    if (soft_err)
        *soft_err = NULL;
    if (rc == PGC_STOPPED || (res == NULL && run_should_stop(r))) {
        PQclear(res);
        if (!run_cancelled(r) && !run_failed(r))
            run_fail(r, "database_unavailable", NULL, "%s: the server did not answer", doing);
        return NULL;
    }
    st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (rc == PGC_OK && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
        return res;
    if (rc == PGC_OK && soft_err && res) {
        *soft_err = res;
        return NULL;
    }
    /* A cancel we asked for is not a failure. */
    if (run_cancelled(r) && res && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
        strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014") == 0) {
        PQclear(res);
        return NULL;
    }
    fail_sql(r, r->ctl, rc == PGC_OK ? res : NULL, doing);
    PQclear(res);
    return NULL;
}

/* Quotes an identifier into out. Returns 0 or -1. */
static int quote_ident(PGconn *conn, const char *name, char *out, size_t size)
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    int ok;

    if (q == NULL)
        return -1;
    ok = strlen(q) < size;
    if (ok)
        memcpy(out, q, strlen(q) + 1);
    PQfreemem(q);
    return ok ? 0 : -1;
}

/* ---- schema phase ---- */

struct table_info {
    int exists;
    char oid[16];
    char relkind;
    int is_owner, can_insert, can_truncate;
    char schema[64];
};

static int resolve_table(struct gen_run *r, const char *qname, struct table_info *ti)
{
    const char *params[1] = {qname};
    PGresult *res =
        ctl_run(r, "looking the table up",
                "SELECT c.oid, c.relkind, n.nspname, pg_has_role(c.relowner, 'USAGE'), "
                "has_table_privilege(c.oid, 'INSERT'), has_table_privilege(c.oid, 'TRUNCATE') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass($1)",
                1, params, NULL);

    memset(ti, 0, sizeof(*ti));
    if (res == NULL)
        return -1;
    if (PQntuples(res) == 1) {
        ti->exists = 1;
        snprintf(ti->oid, sizeof(ti->oid), "%s", PQgetvalue(res, 0, 0));
        ti->relkind = PQgetvalue(res, 0, 1)[0];
        snprintf(ti->schema, sizeof(ti->schema), "%s", PQgetvalue(res, 0, 2));
        ti->is_owner = PQgetvalue(res, 0, 3)[0] == 't';
        ti->can_insert = PQgetvalue(res, 0, 4)[0] == 't';
        ti->can_truncate = PQgetvalue(res, 0, 5)[0] == 't';
    }
    PQclear(res);
    return 0;
}

/* The columns generate writes and the types it accepts. */
static const struct {
    const char *name;
    const char *typname; /* pg_type.typname; NULL for embedding */
    const char *sql;     /* as written in CREATE TABLE and in messages */
} want_cols[] = {
    {"id", "int8", "bigint"},         {"title", "text", "text"},
    {"context_text", "text", "text"}, {"solution_text", "text", "text"},
    {"tags", "_text", "text[]"},      {"created_at", "timestamptz", "timestamp with time zone"},
    {"embedding", NULL, NULL},
};
#define N_COLS 7

/* Checks that the existing table has the columns we write with fitting types and no column we
 * leave NULL that refuses NULL. Sets embedding_vector from the column. Returns 0, or -1 with an
 * incompatible_table failure naming each problem. */
static int check_columns(struct gen_run *r, const struct table_info *ti, const char *vecschema)
{
    const char *params[1] = {ti->oid};
    PGresult *res =
        ctl_run(r, "reading the table's columns",
                "SELECT a.attname, t.typname, tn.nspname, a.atttypmod, "
                "format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef, "
                "a.attidentity <> '', a.attgenerated <> '' "
                "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "JOIN pg_namespace tn ON tn.oid = t.typnamespace "
                "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                1, params, NULL);
    char problems[1024] = "";
    size_t plen = 0;
    int found[N_COLS] = {0};
    int nproblems = 0;
    json_t *plist;

    if (res == NULL)
        return -1;
    plist = json_array();
#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        char one_[256];                                                                            \
        snprintf(one_, sizeof(one_), __VA_ARGS__);                                                 \
        if (plen < sizeof(problems) - 1)                                                           \
            plen += (size_t)snprintf(problems + plen, sizeof(problems) - plen, "%s%s",             \
                                     nproblems ? "; " : "", one_);                                 \
        json_array_append_new(plist, json_string(one_));                                           \
        nproblems++;                                                                               \
    } while (0)
    for (int row = 0; row < PQntuples(res); row++) {
        const char *name = PQgetvalue(res, row, 0);
        const char *typname = PQgetvalue(res, row, 1);
        const char *typns = PQgetvalue(res, row, 2);
        int typmod = atoi(PQgetvalue(res, row, 3));
        const char *shown = PQgetvalue(res, row, 4);
        int notnull = PQgetvalue(res, row, 5)[0] == 't';
        int hasdef = PQgetvalue(res, row, 6)[0] == 't';
        int identity = PQgetvalue(res, row, 7)[0] == 't';
        int generated = PQgetvalue(res, row, 8)[0] == 't';
        int c;

        for (c = 0; c < N_COLS; c++) {
            if (strcmp(want_cols[c].name, name) == 0)
                break;
        }
        if (c == N_COLS) {
            if (notnull && !hasdef && !identity && !generated)
                PROBLEM("column \"%s\" (%s) is NOT NULL without a default, and generate does "
                        "not fill it",
                        name, shown);
            continue;
        }
        found[c] = 1;
        if (generated) {
            PROBLEM("column \"%s\" is a generated column", name);
            continue;
        }
        if (want_cols[c].typname != NULL) {
            if (strcmp(typname, want_cols[c].typname) != 0 || strcmp(typns, "pg_catalog") != 0)
                PROBLEM("column \"%s\": expected %s, found %s", name, want_cols[c].sql, shown);
            continue;
        }
        /* embedding */
        if (strcmp(typname, "vector") == 0 && vecschema && strcmp(typns, vecschema) == 0 &&
            (typmod == r->spec.dim || typmod < 0)) {
            r->embedding_vector = 1;
            if (typmod < 0)
                add_warning(r,
                            "column \"embedding\" is vector without a dimension; rows are "
                            "written with %d",
                            r->spec.dim);
        } else if (strcmp(typname, "_float4") == 0 && strcmp(typns, "pg_catalog") == 0) {
            r->embedding_vector = 0;
        } else {
            PROBLEM("column \"embedding\": expected vector(%d) or real[], found %s", r->spec.dim,
                    shown);
        }
    }
    for (int c = 0; c < N_COLS; c++) {
        if (!found[c]) {
            if (want_cols[c].sql)
                PROBLEM("column \"%s\" is missing (expected %s)", want_cols[c].name,
                        want_cols[c].sql);
            else
                PROBLEM("column \"embedding\" is missing (expected vector(%d) or real[])",
                        r->spec.dim);
        }
    }
#undef PROBLEM
    PQclear(res);
    if (nproblems > 0) {
        /* The message holds as many as fit; the result's warnings list them all. */
        for (size_t k = 0; k < json_array_size(plist); k++)
            add_warning(r, "table does not fit: %s", json_string_value(json_array_get(plist, k)));
        json_decref(plist);
        run_fail(r, "incompatible_table", "/table", "table %s does not fit: %s", r->qtable,
                 problems);
        return -1;
    }
    json_decref(plist);
    return 0;
}

/* Finds the vector indexes (hnsw, ivfflat) on the embedding column; the first row is the one
 * generate reports and rebuilds (ours by name, then hnsw, then ivfflat). */
static PGresult *find_vector_indexes(struct gen_run *r, const char *oid, const char *idxname)
{
    const char *params[2] = {oid, idxname};

    return ctl_run(r, "looking for vector indexes",
                   "SELECT ci.relname, am.amname, pg_get_indexdef(i.indexrelid), i.indisvalid "
                   "FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid "
                   "JOIN pg_am am ON am.oid = ci.relam "
                   "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = 'embedding' "
                   "WHERE i.indrelid = $1 AND am.amname IN ('hnsw', 'ivfflat') "
                   "AND a.attnum = ANY (i.indkey::int2[]) "
                   "ORDER BY (ci.relname = $2) DESC, (am.amname = 'hnsw') DESC, ci.relname",
                   2, params, NULL);
}

static int schema_phase(struct gen_run *r)
{
    PGresult *res = NULL, *err = NULL;
    struct table_info ti;
    char vecschema[64] = "";
    char qname[300], qt[140], sql[1024];
    int have_vector = 0, rc = -1;
    const char *ext_reason = NULL;
    char ext_reason_buf[256] = "";

    r->ctl = run_connect(r, ctl_waiter(r));
    if (r->ctl == NULL)
        return -1;
    PQsetNoticeReceiver(r->ctl, notice_collect, r);

    /* The table name as PostgreSQL reads it: "schema"."table" or "table" (search_path). */
    if (quote_ident(r->ctl, r->spec.table, qt, sizeof(qt)) != 0)
        goto oom;
    if (r->spec.schema[0]) {
        if (quote_ident(r->ctl, r->spec.schema, r->qschema, sizeof(r->qschema)) != 0)
            goto oom;
        snprintf(qname, sizeof(qname), "%s.%s", r->qschema, qt);
    } else {
        snprintf(qname, sizeof(qname), "%s", qt);
    }
    snprintf(r->qtable, sizeof(r->qtable), "%s", qname);

    /* pgvector: installed in this database? where? */
    res = ctl_run(r, "looking for pgvector",
                  "SELECT n.nspname FROM pg_extension e "
                  "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
                  0, NULL, NULL);
    if (res == NULL)
        goto out;
    if (PQntuples(res) == 1) {
        have_vector = 1;
        snprintf(vecschema, sizeof(vecschema), "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    res = NULL;

    if (resolve_table(r, qname, &ti) != 0)
        goto out;
    if (!ti.exists && !r->spec.create_table) {
        run_fail(r, "table_not_found", "/table",
                 "table %s does not exist and create_table is false", qname);
        goto out;
    }
    if (!ti.exists && !have_vector) {
        /* Try to install pgvector; if that is refused we fall back to real[]. */
        res = ctl_run(r, "creating extension vector", "CREATE EXTENSION IF NOT EXISTS vector", 0,
                      NULL, &err);
        if (res == NULL && err == NULL)
            goto out;
        if (res != NULL) {
            PQclear(res);
            res = ctl_run(r, "looking for pgvector",
                          "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = "
                          "e.extnamespace WHERE e.extname = 'vector'",
                          0, NULL, NULL);
            if (res == NULL)
                goto out;
            if (PQntuples(res) == 1) {
                have_vector = 1;
                snprintf(vecschema, sizeof(vecschema), "%s", PQgetvalue(res, 0, 0));
            }
            PQclear(res);
            res = NULL;
        } else {
            snprintf(ext_reason_buf, sizeof(ext_reason_buf), "%s",
                     PQresultErrorField(err, PG_DIAG_MESSAGE_PRIMARY)
                         ? PQresultErrorField(err, PG_DIAG_MESSAGE_PRIMARY)
                         : "refused");
            ext_reason = ext_reason_buf;
            PQclear(err);
            err = NULL;
        }
    }
    if (have_vector && quote_ident(r->ctl, vecschema, r->qvecschema, sizeof(r->qvecschema)) != 0)
        goto oom;

    if (ti.exists) {
        if (ti.relkind != 'r' && ti.relkind != 'p') {
            run_fail(r, "incompatible_table", "/table",
                     "%s is not a table (relkind '%c'); generate writes into ordinary tables",
                     qname, ti.relkind);
            goto out;
        }
        if (check_columns(r, &ti, have_vector ? vecschema : NULL) != 0)
            goto out;
    } else {
        r->embedding_vector = have_vector;
    }
    if (!r->embedding_vector && r->spec.build != BUILD_NONE) {
        if (ti.exists && have_vector)
            run_fail(r, "incompatible_table", "/index/build",
                     "column embedding of %s is real[], on which no HNSW index can be built; "
                     "set /index/build to \"none\" or use a vector(%d) column",
                     qname, r->spec.dim);
        else
            run_fail(r, "extension_missing", "/index/build",
                     "pgvector is not installed in database %s%s%s, so embeddings would be "
                     "real[] and no HNSW index can be built; install it or set /index/build to "
                     "\"none\"",
                     PQdb(r->ctl), ext_reason ? " and could not be created: " : "",
                     ext_reason ? ext_reason : "");
        goto out;
    }
    if (!r->embedding_vector)
        add_warning(r, "pgvector is not available in database %s%s%s: embedding is real[]",
                    PQdb(r->ctl), ext_reason ? " (" : "", ext_reason ? ext_reason : "");

    if (ti.exists) {
        const char *who = PQuser(r->ctl);
        if (!ti.can_insert) {
            run_fail(r, "permission_denied", "/table", "role %s may not INSERT into %s", who,
                     qname);
            goto out;
        }
        if (r->spec.truncate && !ti.can_truncate) {
            run_fail(r, "permission_denied", "/truncate", "role %s may not TRUNCATE %s", who,
                     qname);
            goto out;
        }
        if (r->spec.build != BUILD_NONE && !ti.is_owner) {
            run_fail(r, "permission_denied", "/index/build",
                     "role %s does not own %s, so it cannot build its index (CREATE INDEX and "
                     "REINDEX need ownership); set /index/build to \"none\"",
                     who, qname);
            goto out;
        }
    } else {
        char etype[200];

        if (r->embedding_vector)
            snprintf(etype, sizeof(etype), "%s.vector(%d)", r->qvecschema, r->spec.dim);
        else
            snprintf(etype, sizeof(etype), "real[]");
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS %s (id bigint PRIMARY KEY, title text NOT NULL, "
                 "context_text text NOT NULL, solution_text text NOT NULL, tags text[] NOT NULL, "
                 "created_at timestamptz NOT NULL, embedding %s NOT NULL)",
                 qname, etype);
        res = ctl_run(r, "creating the table", sql, 0, NULL, NULL);
        if (res == NULL)
            goto out;
        PQclear(res);
        res = NULL;
        /* pgvector keeps a vector out of line (TOAST) once a row passes ~2 KB, and the planner
         * leaves TOAST out of a sequential scan's cost: on a table of 1536-dim vectors it then
         * prefers a seq scan (~100 ms on 10K rows) to the HNSW index (~2 ms). Kept in line
         * (up to ~8 KB rows, so dim <= 1900), the table's size tells the planner the truth. */
        if (r->embedding_vector && r->spec.dim <= 1900) {
            snprintf(sql, sizeof(sql), "ALTER TABLE %s ALTER COLUMN embedding SET STORAGE PLAIN",
                     qname);
            res = ctl_run(r, "keeping embeddings in line", sql, 0, NULL, NULL);
            if (res == NULL)
                goto out;
            PQclear(res);
            res = NULL;
        }
        /* Someone else may have created it meanwhile: check it like any existing table. */
        if (resolve_table(r, qname, &ti) != 0)
            goto out;
        if (!ti.exists) {
            run_fail(r, "internal", NULL, "table %s vanished after CREATE TABLE", qname);
            goto out;
        }
        if (check_columns(r, &ti, have_vector ? vecschema : NULL) != 0)
            goto out;
    }

    /* From here on the table is known: schema-qualify every name. */
    snprintf(r->schema_name, sizeof(r->schema_name), "%s", ti.schema);
    if (quote_ident(r->ctl, ti.schema, r->qschema, sizeof(r->qschema)) != 0)
        goto oom;
    snprintf(r->qtable, sizeof(r->qtable), "%s.%s", r->qschema, qt);
    snprintf(r->copy_sql, sizeof(r->copy_sql),
             "COPY %s (id, title, context_text, solution_text, tags, created_at, embedding) "
             "FROM STDIN (FORMAT binary)",
             r->qtable);

    if (r->spec.truncate) {
        snprintf(sql, sizeof(sql), "TRUNCATE %s", r->qtable);
        res = ctl_run(r, "truncating the table", sql, 0, NULL, NULL);
        if (res == NULL)
            goto out;
        PQclear(res);
        res = NULL;
    }

    /* Vector indexes present now. */
    snprintf(r->idx_name, sizeof(r->idx_name), "%s_embedding_hnsw", r->spec.table);
    res = find_vector_indexes(r, ti.oid, r->idx_name);
    if (res == NULL)
        goto out;
    for (int k = 0; k < PQntuples(res); k++) {
        const char *name = PQgetvalue(res, k, 0);
        const char *am = PQgetvalue(res, k, 1);

        if (k == 0 && r->spec.build != BUILD_CREATE) {
            /* The index generate reports (and rebuilds, for recreate/reindex). */
            snprintf(r->idx_name, sizeof(r->idx_name), "%s", name);
            if (r->spec.build == BUILD_RECREATE) {
                r->idx_def = strdup(PQgetvalue(res, k, 2));
                if (r->idx_def == NULL)
                    goto oom;
                continue;
            }
        }
        r->live_index = 1;
        add_warning(r,
                    "table had a live %s index %s during the load: every row was also inserted "
                    "into it, which slows the load (index.build \"recreate\" drops it first)",
                    am, name);
    }
    if (PQntuples(res) == 0 &&
        (r->spec.build == BUILD_REINDEX || r->spec.build == BUILD_REINDEX_CONC))
        add_warning(r, "no HNSW index on %s.embedding to reindex: %s is created instead", qname,
                    r->idx_name);
    PQclear(res);
    res = NULL;
    {
        char qi[140];
        if (quote_ident(r->ctl, r->idx_name, qi, sizeof(qi)) != 0)
            goto oom;
        snprintf(r->idx_qname, sizeof(r->idx_qname), "%s.%s", r->qschema, qi);
    }
    if (r->idx_def != NULL) {
        snprintf(sql, sizeof(sql), "DROP INDEX %s", r->idx_qname);
        res = ctl_run(r, "dropping the index before the load", sql, 0, NULL, NULL);
        if (res == NULL)
            goto out;
        PQclear(res);
        res = NULL;
        r->idx_dropped = 1;
    }
    rc = 0;
    goto out;
oom:
    run_fail(r, "internal", NULL, "out of memory (or a name too long to quote)");
out:
    PQclear(res);
    PQclear(err);
    return rc;
}

/* ---- loaders ---- */

static void encode_row(const struct gen_run *r, int64_t i, struct gen_meta *m, float *vec,
                       double *scratch, struct pgc_buf *b)
{
    gen_row_meta(&r->params, i, m);
    gen_row_embedding(&r->params, r->base, i, vec, scratch);
    pgc_put_tuple(b, N_COLS);
    pgc_put_int8(b, m->id);
    pgc_put_text(b, m->title, m->title_len);
    pgc_put_text(b, m->context_text, m->context_len);
    pgc_put_text(b, m->solution_text, m->solution_len);
    pgc_put_text_array(b, m->tags, m->tag_lens, m->ntags);
    pgc_put_timestamptz(b, m->created_at_us);
    if (r->embedding_vector)
        pgc_put_vector(b, vec, r->params.dim);
    else
        pgc_put_float4_array(b, vec, r->params.dim);
}

/* Takes the next batch: returns its first row and sets *n, or -1 when none is left. */
static int64_t claim_batch(struct gen_run *r, int64_t *n)
{
    int64_t b = atomic_fetch_add(&r->next_batch, 1);
    int64_t first;

    /* b exceeds the batch count by at most the number of loaders: no overflow below. */
    if (b > r->spec.rows / r->spec.batch_rows)
        return -1;
    first = b * r->spec.batch_rows;
    if (first >= r->spec.rows)
        return -1;
    *n = r->spec.rows - first < r->spec.batch_rows ? r->spec.rows - first : r->spec.batch_rows;
    return first;
}

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    struct gen_run *r = l->run;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    struct pgc_buf buf = {0};
    float *vec = malloc((size_t)r->params.dim * sizeof(float));
    double *scratch = malloc((size_t)r->params.dim * sizeof(double));
    struct gen_meta *meta = malloc(sizeof(*meta));
    /* Statements: cancel at once when stopping, give the connection up after 2 s. */
    const struct pgc_waiter w_stmt = {run_should_stop, NULL, r, 0, 2000};
    /* Aborting a COPY: the CopyFail normally answers at once. */
    const struct pgc_waiter w_abort = {run_should_stop, NULL, r, 500, 3000};
    /* Committing a COPY: we want to know its fate, so wait long before cancelling. */
    const struct pgc_waiter w_commit = {run_should_stop, NULL, r, 1000, 10000};
    char doing[96];
    int64_t first, n = 0, pre = 0; /* the batch to send next; rows of it already in buf */
    pgc_rc rc;

    prctl(PR_SET_NAME, "lt-gen-load", 0, 0, 0);
    if (vec == NULL || scratch == NULL || meta == NULL ||
        pgc_buf_init(&buf, FLUSH_BYTES + r->row_max) != 0) {
        run_fail(r, "internal", NULL, "out of memory");
        goto out;
    }
    conn = run_connect(r, &w_stmt);
    if (conn == NULL)
        goto out;
    PQsetNoticeReceiver(conn, notice_ignore, NULL);
    rc = pgc_exec(conn, "SET synchronous_commit = off", 0, NULL, &w_stmt, &res);
    if (rc == PGC_STOPPED)
        goto out;
    if (rc != PGC_OK || PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_sql(r, conn, rc == PGC_OK ? res : NULL, "setting synchronous_commit");
        goto out;
    }
    PQclear(res);
    res = NULL;

    first = claim_batch(r, &n);
    for (;;) {
        int64_t i, next_first, next_n = 0;
        int aborted = 0;

        if (first < 0 || run_should_stop(r))
            break;
        snprintf(doing, sizeof(doing), "inserting rows %lld..%lld", (long long)first,
                 (long long)(first + n - 1));
        rc = pgc_exec(conn, r->copy_sql, 0, NULL, &w_stmt, &res);
        if (rc == PGC_STOPPED)
            goto out;
        if (rc != PGC_OK || PQresultStatus(res) != PGRES_COPY_IN) {
            if (!(run_cancelled(r) && res && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
                  strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014") == 0))
                fail_sql(r, conn, rc == PGC_OK ? res : NULL, doing);
            goto out;
        }
        PQclear(res);
        res = NULL;

        if (pre == 0) {
            pgc_buf_reset(&buf);
            pgc_put_header(&buf);
        } else {
            /* The rows made while the previous batch committed, in FLUSH_BYTES messages (the
             * server reads a whole CopyData message before it parses any of it). */
            rc = PGC_OK;
            for (size_t off = 0; off < buf.len && rc == PGC_OK; off += FLUSH_BYTES) {
                size_t len = buf.len - off < FLUSH_BYTES ? buf.len - off : FLUSH_BYTES;
                rc = pgc_copy_put(conn, buf.data + off, len, &w_stmt);
                if (rc != PGC_CONN_ERROR)
                    atomic_fetch_add(&r->bytes_sent, (long long)len);
            }
            pgc_buf_reset(&buf);
            if (rc == PGC_CONN_ERROR) {
                fail_sql(r, conn, NULL, doing);
                goto out;
            }
            aborted = rc == PGC_STOPPED;
        }
        for (i = first + pre; i < first + n && !aborted; i++) {
            if (atomic_load_explicit(&r->stop, memory_order_relaxed) ||
                atomic_load_explicit(r->job->cancel, memory_order_relaxed)) {
                aborted = 1;
                break;
            }
            encode_row(r, i, meta, vec, scratch, &buf);
            if (buf.failed) {
                run_fail(r, "internal", NULL, "out of memory");
                aborted = 1;
                break;
            }
            if (buf.len >= FLUSH_BYTES) {
                rc = pgc_copy_put(conn, buf.data, buf.len, &w_stmt);
                if (rc == PGC_CONN_ERROR) {
                    fail_sql(r, conn, NULL, doing);
                    goto out;
                }
                atomic_fetch_add(&r->bytes_sent, (long long)buf.len);
                pgc_buf_reset(&buf);
                if (rc == PGC_STOPPED) {
                    aborted = 1;
                    break;
                }
            }
        }
        if (!aborted) {
            pgc_put_trailer(&buf);
            rc = pgc_copy_put(conn, buf.data, buf.len, &w_stmt);
            if (rc == PGC_CONN_ERROR) {
                fail_sql(r, conn, NULL, doing);
                goto out;
            }
            atomic_fetch_add(&r->bytes_sent, (long long)buf.len);
            aborted = rc == PGC_STOPPED;
        }
        if (aborted) {
            /* CopyFail: the server rolls the batch back. */
            rc = pgc_copy_end(conn, "generate run stopped", &w_abort, &res);
            goto out;
        }
        rc = pgc_copy_send_end(conn, NULL, &w_commit);
        /* Binary COPY inserts its rows in groups of 1000 (PostgreSQL's multi-insert buffer),
         * so the heap and TOAST work of a batch's last group only starts at its end. Make the
         * next batch meanwhile, until its result arrives (or up to PREGEN_BYTES): the server
         * then gets it at once and parses it while this thread goes on, instead of each
         * batch's generation and insertion taking turns. */
        next_first = claim_batch(r, &next_n);
        pre = 0;
        pgc_buf_reset(&buf);
        if (rc == PGC_OK && next_first >= 0) {
            pgc_put_header(&buf);
            while (pre < next_n && buf.len < PREGEN_BYTES && !buf.failed &&
                   !atomic_load_explicit(&r->stop, memory_order_relaxed) &&
                   !atomic_load_explicit(r->job->cancel, memory_order_relaxed)) {
                encode_row(r, next_first + pre, meta, vec, scratch, &buf);
                pre++;
                if ((pre & 15) == 0 && pgc_result_ready(conn))
                    break;
            }
        }
        if (rc == PGC_OK)
            rc = pgc_result(conn, &w_commit, &res);
        if (rc == PGC_OK && PQresultStatus(res) == PGRES_COMMAND_OK) {
            atomic_fetch_add(&r->rows_committed, atoll(PQcmdTuples(res)));
        } else if (rc == PGC_OK) {
            /* The server refused the batch: nothing of it is in the table. */
            const char *ss = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (!(run_should_stop(r) && ss && strcmp(ss, "57014") == 0))
                fail_sql(r, conn, res, doing);
            goto out;
        } else {
            /* Sent in full, fate unknown (connection lost or given up while committing). */
            atomic_fetch_add(&r->rows_uncertain, (long long)n);
            if (rc == PGC_CONN_ERROR)
                fail_sql(r, conn, NULL, doing);
            goto out;
        }
        PQclear(res);
        res = NULL;
        if (buf.failed) {
            run_fail(r, "internal", NULL, "out of memory");
            goto out;
        }
        first = next_first;
        n = next_n;
    }
out:
    PQclear(res);
    PQfinish(conn);
    pgc_buf_free(&buf);
    free(meta);
    free(scratch);
    free(vec);
    atomic_fetch_add(&r->loaders_done, 1);
    return NULL;
}

static void insert_phase(struct gen_run *r)
{
    int64_t batches = (r->spec.rows + r->spec.batch_rows - 1) / r->spec.batch_rows;
    int want = batches < r->spec.connections ? (int)batches : r->spec.connections;
    struct timespec slice = {0, 100 * 1000 * 1000};

    r->loaders = calloc((size_t)want, sizeof(*r->loaders));
    if (r->loaders == NULL) {
        run_fail(r, "internal", NULL, "out of memory");
        return;
    }
    for (int k = 0; k < want; k++) {
        r->loaders[k].run = r;
        r->loaders[k].index = k;
        if (pthread_create(&r->loaders[k].thread, NULL, loader_main, &r->loaders[k]) != 0) {
            run_fail(r, "internal", NULL, "cannot start loader thread %d of %d", k + 1, want);
            break;
        }
        r->nloaders++;
    }
    while (atomic_load(&r->loaders_done) < r->nloaders) {
        nanosleep(&slice, NULL);
        if (run_cancelled(r))
            atomic_store(&r->stop, 1);
        tick(r);
    }
    for (int k = 0; k < r->nloaders; k++)
        pthread_join(r->loaders[k].thread, NULL);
}

/* ---- index phase ---- */

/* The control connection sat idle through the load, which can take hours: a server's
 * idle_session_timeout or a proxy may have closed it. Reconnects when it no longer answers.
 * Returns 0, or -1 (recorded, or stopping). */
static int ctl_refresh(struct gen_run *r)
{
    PGresult *res = NULL;
    pgc_rc rc = pgc_exec(r->ctl, "SELECT 1", 0, NULL, ctl_waiter(r), &res);
    int ok = rc == PGC_OK && res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;

    PQclear(res);
    if (ok)
        return 0;
    if (rc == PGC_STOPPED || run_should_stop(r))
        return -1;
    PQfinish(r->ctl);
    r->ctl = run_connect(r, ctl_waiter(r));
    if (r->ctl == NULL)
        return -1;
    PQsetNoticeReceiver(r->ctl, notice_collect, r);
    return 0;
}

/* Opens the monitor connection for the build's progress, with a short statement timeout so a
 * reading never holds the coordinator up. Quiet: without it the build just shows no progress. */
static void start_index_monitor(struct gen_run *r)
{
    PGconn *conn = NULL;
    PGresult *res;

    if (pgc_connect((const char *const *)r->kw, (const char *const *)r->vals, r->connect_timeout_ms,
                    ctl_waiter(r), &conn) != PGC_OK) {
        PQfinish(conn);
        return;
    }
    res = PQexec(conn, "SET statement_timeout = 1000");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(res);
        PQfinish(conn);
        return;
    }
    PQclear(res);
    r->idx_progress_phase[0] = '\0';
    r->idx_tuples_done = r->idx_tuples_total = 0;
    r->mon_last_ns = lt_mono_ns();
    r->mon = conn;
}

static void index_phase(struct gen_run *r)
{
    PGresult *res = NULL;
    char sql[1024];
    const char *stmt = sql;
    const char *action;
    const char *params[1] = {r->idx_qname};
    int64_t t0;

    if (ctl_refresh(r) != 0)
        return;
    snprintf(sql, sizeof(sql),
             "SET maintenance_work_mem = '%dMB'; SET max_parallel_maintenance_workers = %d",
             r->spec.maintenance_work_mem_mb, r->spec.max_parallel_maintenance_workers);
    res = ctl_run(r, "setting maintenance_work_mem", sql, 0, NULL, NULL);
    if (res == NULL)
        return;
    PQclear(res);

    /* Does the index exist now (recreate dropped it; create may find it)? */
    res = ctl_run(r, "looking the index up", "SELECT to_regclass($1) IS NOT NULL", 1, params, NULL);
    if (res == NULL)
        return;
    {
        int exists = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (r->idx_def != NULL && r->idx_dropped) {
            stmt = r->idx_def; /* pg_get_indexdef of the dropped one, schema-qualified */
            action = "recreated";
        } else if (exists && r->spec.build == BUILD_REINDEX) {
            snprintf(sql, sizeof(sql), "REINDEX INDEX %s", r->idx_qname);
            action = "reindexed";
        } else if (exists && r->spec.build == BUILD_REINDEX_CONC) {
            snprintf(sql, sizeof(sql), "REINDEX INDEX CONCURRENTLY %s", r->idx_qname);
            action = "reindexed";
        } else if (exists) {
            snprintf(sql, sizeof(sql), "SELECT 1"); /* create: it is there already */
            action = "existed";
        } else {
            char qi[140];
            if (quote_ident(r->ctl, r->idx_name, qi, sizeof(qi)) != 0) {
                run_fail(r, "internal", NULL, "out of memory");
                return;
            }
            snprintf(sql, sizeof(sql),
                     "CREATE INDEX IF NOT EXISTS %s ON %s USING hnsw (embedding "
                     "%s.vector_cosine_ops) WITH (m = %d, ef_construction = %d)",
                     qi, r->qtable, r->qvecschema, r->spec.m, r->spec.ef_construction);
            action = "created";
        }
    }
    start_index_monitor(r);
    /* pgvector says when the graph outgrows maintenance_work_mem: keep such notices. */
    r->collect_notices = 1;
    t0 = lt_mono_ns();
    res = ctl_run(r, "building the index", stmt, 0, NULL, NULL);
    r->idx_build_s = (double)elapsed_ns(t0) / 1e9;
    r->collect_notices = 0;
    PQfinish(r->mon);
    r->mon = NULL;
    if (res == NULL) /* failed (recorded) or cancelled: the statement was rolled back */
        return;
    PQclear(res);
    r->idx_dropped = 0;
    r->idx_action = action;

    res = ctl_run(r, "checking the index",
                  "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)", 1,
                  params, NULL);
    if (res == NULL)
        return;
    r->idx_valid = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0)[0] == 't' : 0;
    PQclear(res);
}

/* ---- result and verdict ---- */

static json_t *result_json(struct gen_run *r)
{
    long long rows = atomic_load(&r->rows_committed);
    long long uncertain = atomic_load(&r->rows_uncertain);
    double schema_s = r->schema_s, insert_s = r->insert_s, index_s = r->index_s;
    json_t *index, *res;

    /* The running phase's clock, for partial results. */
    if (!r->final && r->phase == PH_SCHEMA)
        schema_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;
    else if (!r->final && r->phase == PH_INSERT)
        insert_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;
    else if (!r->final && r->phase == PH_INDEX)
        index_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;
    /* The API's shape: null when no index was asked for (and, while running, until the index
     * phase starts), else a name and whether it is valid now (false when it was not built). A
     * live index during a build "none" load is named in the warnings. */
    if (r->spec.build == BUILD_NONE || (r->phase != PH_INDEX && !r->final)) {
        index = json_null();
    } else {
        int building = r->phase == PH_INDEX && r->idx_action == NULL && !r->final;
        index = json_pack(
            "{s:s, s:b, s:f, s:s}", "name", r->idx_name, "valid", r->idx_valid > 0, "build_s",
            building ? (double)elapsed_ns(r->phase_t0_ns) / 1e9 : r->idx_build_s, "action",
            r->idx_action ? r->idx_action
            : building    ? "building"
                          : "not_built");
    }
    if (json_is_object(index) && r->idx_dropped && r->idx_def)
        json_object_set_new(index, "dropped_definition", json_string(r->idx_def));
    res = json_pack(
        "{s:I, s:f, s:I, s:{s:f, s:f, s:f}, s:o, s:o, s:i, s:s, s:I, s:O}", "rows_inserted",
        (json_int_t)rows, "rows_per_s", insert_s > 0 ? (double)rows / insert_s : 0.0, "bytes",
        (json_int_t)atomic_load(&r->bytes_sent), "phases", "schema_s", schema_s, "insert_s",
        insert_s, "index_s", index_s, "index", index ? index : json_null(), "embedding_type",
        r->phase == PH_SCHEMA ? json_null()
                              : json_string(r->embedding_vector ? "vector" : "real[]"),
        "connections", r->nloaders ? r->nloaders : r->spec.connections, "table", r->qtable, "rows",
        (json_int_t)r->spec.rows, "warnings", r->warnings);
    if (res && uncertain > 0)
        json_object_set_new(res, "rows_uncertain", json_integer(uncertain));
    return res;
}

/* 1234567 -> "1,234,567" */
static void thousands(long long v, char *out, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%lld", v < 0 ? -v : v);
    size_t o = 0;

    if (v < 0 && o + 1 < size)
        out[o++] = '-';
    for (int k = 0; k < n && o + 1 < size; k++) {
        if (k > 0 && (n - k) % 3 == 0 && o + 1 < size)
            out[o++] = ',';
        out[o++] = digits[k];
    }
    out[o] = '\0';
}

static json_t *verdict_json(struct gen_run *r)
{
    json_t *checks = json_array();
    long long rows = atomic_load(&r->rows_committed);
    char summary[256], a[32], b[32], c[32];
    int pass = 1;
    size_t n;

    if (checks == NULL)
        return NULL;
    pass &= runner_add_check(checks, "rows_inserted", "==", (double)r->spec.rows, (double)rows);
    if (r->spec.build != BUILD_NONE)
        pass &= runner_add_check(checks, "index_valid", "==", 1.0, r->idx_valid > 0 ? 1.0 : 0.0);
    thousands(rows, a, sizeof(a));
    thousands(r->spec.rows, b, sizeof(b));
    thousands((long long)(r->insert_s > 0 ? (double)rows / r->insert_s : 0.0), c, sizeof(c));
    if (rows == r->spec.rows)
        n = (size_t)snprintf(summary, sizeof(summary), "%s %s rows in %.1f s (%s rows/s)",
                             pass ? "PASS" : "FAIL", a, r->insert_s, c);
    else
        n = (size_t)snprintf(summary, sizeof(summary), "%s %s of %s rows in %.1f s (%s rows/s)",
                             pass ? "PASS" : "FAIL", a, b, r->insert_s, c);
    if (r->spec.build != BUILD_NONE && n < sizeof(summary))
        snprintf(summary + n, sizeof(summary) - n, " \xc2\xb7 index %s %s in %.1f s", r->idx_name,
                 r->idx_valid > 0 ? "valid" : "INVALID", r->idx_build_s);
    return runner_verdict_new(checks, summary);
}

/* ---- execute ---- */

static void run_free(struct gen_run *r)
{
    if (r == NULL)
        return;
    free(r->loaders);
    PQfinish(r->ctl);
    free(r->idx_def);
    json_decref(r->warnings);
    for (int k = 0; k < r->nsecrets; k++)
        free(r->secrets[k]);
    if (r->kw) {
        for (int k = 0; r->kw[k]; k++) {
            free(r->kw[k]);
            free(r->vals[k]);
        }
    }
    free(r->kw);
    free(r->vals);
    free(r->base);
    json_decref(r->spec_copy);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void generate_execute(const struct runner_job *job, struct runner_outcome *out)
{
    struct gen_run *r = calloc(1, sizeof(*r));
    struct lt_error err;
    int64_t t;
    int nbase;

    if (r == NULL) {
        lt_error_set(&out->error, LT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->job = job;
    r->ctl_wait.should_stop = run_should_stop;
    r->ctl_wait.tick = tick;
    r->ctl_wait.arg = r;
    r->ctl_wait.cancel_after_ms = 0;
    r->ctl_wait.give_up_ms = 2000;
    r->idx_valid = -1;
    r->t0_ns = lt_mono_ns();
    r->phase_t0_ns = r->t0_ns;
    r->last_progress_ns = r->t0_ns;
    r->warnings = json_array();
    r->spec_copy = json_deep_copy(job->spec);
    if (r->warnings == NULL || r->spec_copy == NULL) {
        run_fail(r, "internal", NULL, "out of memory");
        goto finish;
    }
    if (spec_read(r->spec_copy, &r->spec, &err) != LT_OK) {
        run_fail(r, "invalid_spec", err.field, "%s", err.message);
        goto finish;
    }
    r->params.seed = r->spec.seed;
    r->params.dim = r->spec.dim;
    r->params.base_vectors = r->spec.base_vectors;
    r->params.noise_sigma = r->spec.noise_sigma;
    r->row_max = 2 + 12 + 4 + GEN_TITLE_MAX + 2 * (4 + GEN_TEXT_MAX) + 4 + 20 +
                 GEN_TAGS_MAX * (4 + GEN_TAG_MAX) + 12 +
                 (pgc_float4_array_size(r->spec.dim) > pgc_vector_size(r->spec.dim)
                      ? pgc_float4_array_size(r->spec.dim)
                      : pgc_vector_size(r->spec.dim));
    if (conn_params_build(r) != 0)
        goto finish;
    lt_log("info", "generate_start",
           "run=%s target=\"%s\" table=%s rows=%lld dim=%d connections=%d", job->id ? job->id : "-",
           r->where, r->spec.table, (long long)r->spec.rows, r->spec.dim, r->spec.connections);

    enter_phase(r, PH_SCHEMA);
    if (schema_phase(r) != 0 || run_should_stop(r))
        goto finish;
    /* Base vectors: only those some row uses. Each comes from its own stream, so generating
     * fewer does not change them. */
    nbase = r->spec.rows < r->spec.base_vectors ? (int)r->spec.rows : r->spec.base_vectors;
    r->base = malloc((size_t)nbase * (size_t)r->spec.dim * sizeof(float));
    if (r->base == NULL) {
        run_fail(r, "internal", NULL, "out of memory for %d base vectors", nbase);
        goto finish;
    }
    for (int b = 0; b < nbase; b++) {
        gen_base_vector(&r->params, b, r->base + (size_t)b * (size_t)r->spec.dim);
        if ((b & 63) == 0) {
            tick(r);
            if (run_should_stop(r))
                goto finish;
        }
    }
    r->schema_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;

    enter_phase(r, PH_INSERT);
    insert_phase(r);
    r->insert_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;
    if (run_should_stop(r))
        goto finish;

    /* Fresh statistics, so the planner's first search after the run already knows the table. */
    if (atomic_load(&r->rows_committed) > 0 && ctl_refresh(r) == 0) {
        char asql[400];
        PGresult *ares;
        snprintf(asql, sizeof(asql), "ANALYZE %s", r->qtable);
        ares = ctl_run(r, "analyzing the table", asql, 0, NULL, NULL);
        PQclear(ares);
        if (run_should_stop(r))
            goto finish;
    }

    if (r->spec.build != BUILD_NONE) {
        enter_phase(r, PH_INDEX);
        index_phase(r);
        r->index_s = (double)elapsed_ns(r->phase_t0_ns) / 1e9;
    }

finish:
    /* Close the phase clock that was running when we stopped. */
    t = elapsed_ns(r->phase_t0_ns);
    if (r->phase == PH_SCHEMA && r->schema_s == 0)
        r->schema_s = (double)t / 1e9;
    else if (r->phase == PH_INDEX && r->index_s == 0)
        r->index_s = (double)t / 1e9;
    if (atomic_load(&r->rows_uncertain) > 0)
        add_warning(r,
                    "%lld rows were sent but whether they were committed is unknown (the "
                    "connection was lost or the server did not answer); rows_inserted does not "
                    "count them",
                    (long long)atomic_load(&r->rows_uncertain));
    if (r->idx_dropped && r->idx_def)
        add_warning(r, "index %s was dropped before the load and not rebuilt: %s", r->idx_name,
                    r->idx_def);
    /* Progress stays at the phase where a failed or cancelled run stopped. */
    r->final = 1;
    if (!run_failed(r) && !run_cancelled(r))
        r->phase = PH_DONE;
    out->result = result_json(r);
    if (run_failed(r)) {
        pthread_mutex_lock(&r->lock);
        lt_error_set(&out->error,
                     strcmp(r->fail_code, "invalid_spec") == 0 ? LT_ERR_INVALID_SPEC
                     : strcmp(r->fail_code, "internal") == 0   ? LT_ERR_INTERNAL
                                                               : LT_ERR_IO,
                     r->fail_field[0] ? r->fail_field : NULL, "%s", r->fail_msg);
        out->error_code = r->fail_code;
        pthread_mutex_unlock(&r->lock);
        lt_log("warn", "generate_error", "run=%s code=%s rows_inserted=%lld",
               job->id ? job->id : "-", out->error_code,
               (long long)atomic_load(&r->rows_committed));
    } else if (!run_cancelled(r)) {
        out->verdict = verdict_json(r);
    }
    emit_progress(r);
    run_free(r);
}

const struct runner_ops generate_ops = {
    .kind = "generate",
    .validate = generate_validate,
    .mask_secrets = generate_mask_secrets,
    .execute = generate_execute,
    .each_target = generate_each_target,
};
