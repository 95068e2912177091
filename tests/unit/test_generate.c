/*
 * test_generate: tests of the generate runner (runners/generate.c, runners/pgcopy.c).
 *
 * The first tests need nothing: the PRNG and the ziggurat gaussian (moments and both tails), the
 * purity of row generation (row i is the same whatever else was generated), the binary COPY layouts
 * byte by byte, spec validation and DSN masking. The rest run the runner against the real
 * PostgreSQL 15 + pgvector that tests/integration/run_with_pg.sh starts (LT_PG_DSN,
 * LT_PG_DSN_NOVEC, LT_PG_TINY_TABLESPACE; without LT_PG_DSN they are skipped, loudly) and check
 * what is in the tables afterwards: row count, dimension, unit norm, the cluster structure,
 * byte-for-byte determinism across connection/batch splits, the real[] fallback, the HNSW index and
 * its use, every error class, that no answer carries the password, and that a cancel stops within a
 * second with rows_inserted equal to count(*).
 */
#define _POSIX_C_SOURCE 200809L

#include "generate.h"
#include "harness.h"
#include "lt_allow.h"
#include "lt_util.h"
#include "pgcopy.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *pg_dsn;       /* LT_PG_DSN */
static const char *pg_dsn_novec; /* LT_PG_DSN_NOVEC */
static const char *pg_password;  /* LT_PG_PASSWORD */

/* ---- helpers ---- */

struct capture {
    int progress_calls;
    int points;
    int64_t last_t;
    int t_in_order;
    json_t *last_progress; /* owned */
    atomic_int saw_insert_phase;
    atomic_int saw_index_phase; /* read by the test's thread while the run goes on */
    /* the index build's progress: a reading with tuples done and a fraction past the insert
     * share (0.5) */
    atomic_int saw_index_progress;
};

static void cap_progress(void *opaque, const json_t *progress, const json_t *partial)
{
    struct capture *c = opaque;
    const char *ph = json_string_value(json_object_get(progress, "phase"));

    (void)partial;
    c->progress_calls++;
    if (ph && strcmp(ph, "insert") == 0)
        atomic_store(&c->saw_insert_phase, 1);
    if (ph && strcmp(ph, "index") == 0)
        atomic_store(&c->saw_index_phase, 1);
    if (ph && strcmp(ph, "index") == 0 &&
        json_integer_value(json_object_get(progress, "index_tuples_done")) > 0 &&
        json_integer_value(json_object_get(progress, "index_tuples_total")) > 0 &&
        json_real_value(json_object_get(progress, "fraction")) > 0.5 &&
        json_real_value(json_object_get(progress, "fraction")) <= 1.0 &&
        json_is_string(json_object_get(progress, "index_phase")))
        atomic_store(&c->saw_index_progress, 1);
    json_decref(c->last_progress);
    c->last_progress = json_deep_copy(progress);
}

static void cap_point(void *opaque, int64_t t, const json_t *point)
{
    struct capture *c = opaque;

    if (t != c->last_t + 1 || json_integer_value(json_object_get(point, "t")) != t)
        c->t_in_order = 0;
    c->last_t = t;
    c->points++;
}

struct run {
    const struct runner_config *config; /* NULL: defaults (loopback-only allowlist) */
    struct runner_outcome out;
    struct capture cap;
    atomic_int cancel;
    double seconds;
    char *result_text; /* json_dumps of the result; owned */
};

/* Validates spec (takes ownership) and executes it. Returns 0, or -1 when validation failed. */
static int run_spec(json_t *spec, struct run *r)
{
    struct lt_error err;
    struct runner_sink sink = {&r->cap, cap_progress, cap_point};
    struct runner_job job = {"rtest", spec, &r->cancel, &sink, r->config};
    int64_t t0;

    memset(&r->out, 0, sizeof(r->out));
    r->cap.t_in_order = 1;
    if (generate_ops.validate(spec, &err) != LT_OK) {
        fprintf(stderr, "  validate: %s (%s)\n", err.message, err.field);
        json_decref(spec);
        return -1;
    }
    t0 = lt_mono_ns();
    generate_ops.execute(&job, &r->out);
    r->seconds = (double)(lt_mono_ns() - t0) / 1e9;
    r->result_text = r->out.result ? json_dumps(r->out.result, JSON_COMPACT) : NULL;
    json_decref(spec);
    return 0;
}

static void run_clear(struct run *r)
{
    json_decref(r->out.result);
    json_decref(r->out.verdict);
    json_decref(r->cap.last_progress);
    free(r->result_text);
    memset(r, 0, sizeof(*r));
}

static const char *err_code(const struct run *r)
{
    return r->out.error.status == LT_OK ? NULL : r->out.error_code;
}

static long long res_int(const struct run *r, const char *key)
{
    return (long long)json_integer_value(json_object_get(r->out.result, key));
}

/* A small spec on dsn: rows x dim into table, index build mode. Returns new. */
static json_t *small_spec(const char *dsn, const char *table, long long rows, int dim,
                          const char *build)
{
    return json_pack("{s:s, s:{s:s}, s:s, s:I, s:i, s:i, s:f, s:i, s:i, s:i, s:b, s:{s:s, s:i, "
                     "s:i, s:i}}",
                     "kind", "generate", "database", "dsn", dsn, "table", table, "rows",
                     (json_int_t)rows, "dim", dim, "base_vectors", 50, "noise_sigma", 0.05, "seed",
                     42, "batch_rows", 300, "connections", 2, "truncate", 1, "index", "build",
                     build, "m", 8, "ef_construction", 32, "maintenance_work_mem_mb", 64);
}

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *db_connect(const char *dsn)
{
    PGconn *c = PQconnectdb(dsn);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "  connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notices, NULL);
    return c;
}

static int db_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "  sql failed: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    return ok ? 0 : -1;
}

/* First column of the first row as a new string ("" for NULL), or NULL on error. */
static char *db_str(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    char *s = NULL;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) >= 1)
        s = strdup(PQgetvalue(res, 0, 0));
    else
        fprintf(stderr, "  query failed: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    return s;
}

/* Every row's first column, joined by newlines (an EXPLAIN plan). Returns new or NULL. */
static char *db_lines(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    size_t len = 0;
    char *s = NULL;

    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        for (int k = 0; k < PQntuples(res); k++)
            len += strlen(PQgetvalue(res, k, 0)) + 1;
        s = calloc(1, len + 1);
        for (int k = 0; s && k < PQntuples(res); k++) {
            strcat(s, PQgetvalue(res, k, 0));
            strcat(s, "\n");
        }
    }
    PQclear(res);
    return s;
}

static long long db_ll(PGconn *c, const char *sql)
{
    char *s = db_str(c, sql);
    long long v = s ? atoll(s) : -1;

    free(s);
    return v;
}

static double db_double(PGconn *c, const char *sql)
{
    char *s = db_str(c, sql);
    double v = s ? atof(s) : NAN;

    free(s);
    return v;
}

/* A TCP port on 127.0.0.1 where nothing listens (bound, then released). */
static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 1;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Nothing the runner answered may contain the password. */
static void check_no_password(const struct run *r)
{
    if (pg_password == NULL || pg_password[0] == '\0')
        return;
    CHECK(strstr(r->out.error.message, pg_password) == NULL);
    CHECK(r->result_text == NULL || strstr(r->result_text, pg_password) == NULL);
    if (r->out.verdict) {
        char *v = json_dumps(r->out.verdict, JSON_COMPACT);
        CHECK(v && strstr(v, pg_password) == NULL);
        free(v);
    }
}

#define NEED_PG()                                                                                  \
    do {                                                                                           \
        if (pg_dsn == NULL) {                                                                      \
            fprintf(stderr, "  SKIPPED: LT_PG_DSN not set (run under run_with_pg.sh)\n");          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- no database needed ---- */

static void test_prng_and_gaussian(void)
{
    struct gen_rng a, b;
    double sum = 0, sum2 = 0, sum4 = 0;
    long tail = 0, tail_r = 0, tail4 = 0;
    const long n = 2000000;

    gen_rng_seed(&a, 42, 1, 7);
    gen_rng_seed(&b, 42, 1, 7);
    for (int k = 0; k < 1000; k++)
        CHECK(gen_rng_next(&a) == gen_rng_next(&b));
    gen_rng_seed(&b, 42, 1, 8);
    CHECK(gen_rng_next(&a) != gen_rng_next(&b));

    gen_rng_seed(&a, 1, 2, 3);
    for (long k = 0; k < n; k++) {
        double x = gen_rng_gauss(&a);
        sum += x;
        sum2 += x * x;
        sum4 += x * x * x * x;
        if (fabs(x) > 3.0)
            tail++;
        if (fabs(x) > 3.6541528853610088) /* the ziggurat's tail beyond R */
            tail_r++;
        if (fabs(x) > 4.0)
            tail4++;
    }
    /* N(0,1): mean 0 (sd 1/sqrt(n) = 0.0007), variance 1, kurtosis 3, P(|x| > 3) = 0.0027. */
    CHECK(fabs(sum / n) < 0.004);
    CHECK(fabs(sum2 / n - 1.0) < 0.005);
    CHECK(fabs(sum4 / n - 3.0) < 0.05);
    CHECK(fabs((double)tail / n - 0.0027) < 0.0003);
    /* P(|x| > R) = 2.580e-4 (516 expected, sd 23), P(|x| > 4) = 6.33e-5 (127, sd 11). */
    CHECK(labs(tail_r - 516) < 100);
    CHECK(labs(tail4 - 127) < 50);
}

static void test_rows_are_pure_functions(void)
{
    struct gen_params p = {42, 48, 10, 0.05};
    float *base = gen_base_vectors_new(&p);
    float v1[48], v2[48], vb[48];
    double scratch[48];
    struct gen_meta m1, m2;

    REQUIRE(base != NULL);
    gen_row_embedding(&p, base, 12345, v1, scratch);
    for (int i = 0; i < 100; i++) /* unrelated rows in between change nothing */
        gen_row_embedding(&p, base, i, v2, scratch);
    gen_row_embedding(&p, base, 12345, v2, scratch);
    CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
    {
        double n2 = 0;
        for (int j = 0; j < 48; j++)
            n2 += (double)v1[j] * v1[j];
        CHECK_NEAR(sqrt(n2), 1.0, 1e-6);
    }
    /* base b generated alone equals base b in the block */
    gen_base_vector(&p, 7, vb);
    CHECK(memcmp(vb, base + 7 * 48, sizeof(vb)) == 0);

    /* sigma 0: the row is its normalised base */
    p.noise_sigma = 0.0;
    gen_row_embedding(&p, base, 13, v1, scratch);
    gen_row_embedding(&p, base, 3, v2, scratch);
    CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
    p.noise_sigma = 0.05;

    gen_row_meta(&p, 99, &m1);
    gen_row_meta(&p, 5, &m2);
    gen_row_meta(&p, 99, &m2);
    CHECK(m1.id == m2.id && m1.title_len == m2.title_len &&
          memcmp(m1.title, m2.title, m1.title_len) == 0);
    CHECK(m1.context_len > 20 && m1.solution_len > 20 && m1.ntags >= 1 && m1.ntags <= 4);
    CHECK(strlen(m1.title) == m1.title_len && strlen(m1.context_text) == m1.context_len);
    /* created_at: within the 365 days before 2025-01-01 + up to 365 days */
    CHECK(m1.created_at_us >= 9132LL * 86400000000LL - 365LL * 86400000000LL);
    CHECK(m1.created_at_us < 9132LL * 86400000000LL + 366LL * 86400000000LL);
    for (int k = 1; k < m1.ntags; k++)
        for (int j = 0; j < k; j++)
            CHECK(strcmp(m1.tags[k], m1.tags[j]) != 0);

    CHECK(gen_row_id(42, 0) != gen_row_id(43, 0));
    free(base);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void test_ids_unique(void)
{
    const int n = 300000;
    int64_t *ids = malloc(sizeof(int64_t) * n);
    int dup = 0;

    REQUIRE(ids != NULL);
    for (int i = 0; i < n; i++)
        ids[i] = gen_row_id(7, i);
    qsort(ids, n, sizeof(int64_t), cmp_i64);
    for (int i = 1; i < n; i++)
        dup += ids[i] == ids[i - 1];
    CHECK(dup == 0);
    CHECK(ids[0] >= 0);
    free(ids);
}

static void test_copy_layouts(void)
{
    struct pgc_buf b;
    const float v[2] = {1.0f, -2.0f};
    static const unsigned char want_vec[] = {0,    0,    0, 12, 0,    2, 0, 0,
                                             0x3f, 0x80, 0, 0,  0xc0, 0, 0, 0};
    static const unsigned char want_arr[] = {0,    0,    0, 36, 0, 0, 0, 1, 0,    0, 0, 0, 0, 0,
                                             2,    0xbc, 0, 0,  0, 2, 0, 0, 0,    1, 0, 0, 0, 4,
                                             0x3f, 0x80, 0, 0,  0, 0, 0, 4, 0xc0, 0, 0, 0};
    static const unsigned char want_hdr[] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
                                             0,   0,   0,   0,   0,   0,   0,    0,    0};
    const char *tags[2] = {"ab", "c"};
    const size_t lens[2] = {2, 1};
    static const unsigned char want_tags[] = {0, 0, 0, 31, 0,   0,   0, 1, 0, 0, 0,  0,
                                              0, 0, 0, 25, 0,   0,   0, 2, 0, 0, 0,  1,
                                              0, 0, 0, 2,  'a', 'b', 0, 0, 0, 1, 'c'};
    static const unsigned char want_i8[] = {0,    0,    0,    8,    0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};

    REQUIRE(pgc_buf_init(&b, 4) == 0); /* tiny on purpose: puts must grow it */
    pgc_put_vector(&b, v, 2);
    CHECK(b.len == sizeof(want_vec) && memcmp(b.data, want_vec, b.len) == 0);
    CHECK(pgc_vector_size(2) == sizeof(want_vec));
    pgc_buf_reset(&b);
    pgc_put_float4_array(&b, v, 2);
    CHECK(b.len == sizeof(want_arr) && memcmp(b.data, want_arr, b.len) == 0);
    CHECK(pgc_float4_array_size(2) == sizeof(want_arr));
    pgc_buf_reset(&b);
    pgc_put_header(&b);
    CHECK(b.len == sizeof(want_hdr) && memcmp(b.data, want_hdr, b.len) == 0);
    pgc_buf_reset(&b);
    pgc_put_text_array(&b, tags, lens, 2);
    CHECK(b.len == sizeof(want_tags) && memcmp(b.data, want_tags, b.len) == 0);
    pgc_buf_reset(&b);
    pgc_put_int8(&b, -2);
    CHECK(b.len == sizeof(want_i8) && memcmp(b.data, want_i8, b.len) == 0);
    pgc_buf_reset(&b);
    pgc_put_trailer(&b);
    pgc_put_null(&b);
    CHECK(b.len == 6 && b.data[0] == 0xff && b.data[1] == 0xff && b.data[5] == 0xff);
    CHECK(!b.failed);
    pgc_buf_free(&b);
}

static void test_validate(void)
{
    struct lt_error err;
    json_t *s;
    json_t *idx;

    s = json_pack("{s:s, s:{s:s}}", "kind", "generate", "database", "dsn",
                  "postgresql://u:topsecret@127.0.0.1:5432/db");
    REQUIRE(generate_ops.validate(s, &err) == LT_OK);
    CHECK_STR(json_string_value(json_object_get(s, "table")), "traces");
    CHECK(json_integer_value(json_object_get(s, "rows")) == 100000);
    CHECK(json_integer_value(json_object_get(s, "dim")) == 1536);
    CHECK(json_integer_value(json_object_get(s, "base_vectors")) == 1000);
    CHECK(json_integer_value(json_object_get(s, "seed")) == 42);
    CHECK(json_integer_value(json_object_get(s, "connections")) == 2);
    CHECK(json_integer_value(json_object_get(s, "batch_rows")) == 1000);
    CHECK(json_is_true(json_object_get(s, "create_table")));
    CHECK(json_is_false(json_object_get(s, "truncate")));
    idx = json_object_get(s, "index");
    CHECK_STR(json_string_value(json_object_get(idx, "build")), "create");
    CHECK(json_integer_value(json_object_get(idx, "m")) == 16);
    CHECK(json_integer_value(json_object_get(idx, "ef_construction")) == 64);
    CHECK(json_integer_value(json_object_get(idx, "maintenance_work_mem_mb")) == 1024);
    CHECK(json_integer_value(json_object_get(idx, "max_parallel_maintenance_workers")) == 2);
    /* masked copy */
    generate_ops.mask_secrets(s);
    CHECK_STR(json_string_value(json_object_get(json_object_get(s, "database"), "dsn")),
              "postgresql://u:***@127.0.0.1:5432/db");
    json_decref(s);

    struct {
        const char *json;
        const char *field;
    } bad[] = {
        {"{\"kind\":\"generate\"}", "/database"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"x\",\"pw\":1}}", "/database/pw"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a port\"}}", "/database/dsn"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"postgresql://h/d?bogus=1\"}}",
         "/database/dsn"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"table\":\"t;drop\"}",
         "/table"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"table\":\"a.b.c\"}", "/table"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"table\":\"1abc\"}", "/table"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"rows\":0}", "/rows"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"rows\":1.5}", "/rows"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"dim\":3000}", "/dim"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"dim\":16001,"
         "\"index\":{\"build\":\"none\"}}",
         "/dim"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"connections\":65}",
         "/connections"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"noise_sigma\":-1}",
         "/noise_sigma"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"base_vectors\":100000}",
         "/base_vectors"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"index\":{\"build\":\"x\"}}",
         "/index/build"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"index\":{\"m\":40}}",
         "/index/ef_construction"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"index\":{\"mm\":3}}",
         "/index/mm"},
        {"{\"kind\":\"generate\",\"database\":{\"dsn\":\"host=a\"},\"colour\":1}", "/colour"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        json_error_t je;
        s = json_loads(bad[k].json, 0, &je);
        REQUIRE(s != NULL);
        memset(&err, 0, sizeof(err));
        CHECK(generate_ops.validate(s, &err) == LT_ERR_INVALID_SPEC);
        if (strcmp(err.field, bad[k].field) != 0)
            fprintf(stderr, "  case %zu: field %s, expected %s (%s)\n", k, err.field, bad[k].field,
                    err.message);
        CHECK_STR(err.field, bad[k].field);
        json_decref(s);
    }
    /* A DSN that does not parse: the message must not quote it. */
    s = json_pack("{s:s, s:{s:s}}", "kind", "generate", "database", "dsn",
                  "host=a password=hunter2xyz port");
    CHECK(generate_ops.validate(s, &err) == LT_ERR_INVALID_SPEC);
    CHECK(strstr(err.message, "hunter2xyz") == NULL);
    json_decref(s);
    /* Upper case folds like an unquoted identifier; schema.table allowed. */
    s = json_pack("{s:s, s:{s:s}, s:s}", "kind", "generate", "database", "dsn", "host=a", "table",
                  "Public.My_Traces");
    CHECK(generate_ops.validate(s, &err) == LT_OK);
    json_decref(s);
}

static void test_mask_dsn(void)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"postgresql://user:secret@host/db", "postgresql://user:***@host/db"},
        {"postgres://user:s%40c:ret@h:5432,h2:5433/db?sslmode=disable",
         "postgres://user:***@h:5432,h2:5433/db?sslmode=disable"},
        {"postgresql://user@host/db", "postgresql://user@host/db"},
        {"postgresql://host/db?user=u&password=pw1&sslmode=require",
         "postgresql://host/db?user=u&password=***&sslmode=require"},
        {"postgresql://u:a@h/d?pass%77ord=b", "postgresql://u:***@h/d?pass%77ord=***"},
        {"host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"},
        {"host=h password = 'se cr\\'et' dbname=d", "host=h password = '***' dbname=d"},
        {"password=x", "password=***"},
        {"host=h sslpassword=k password=p", "host=h sslpassword=*** password=***"},
        {"host=h dbname=password", "host=h dbname=password"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *m = gen_mask_dsn(cases[k].in);
        if (m == NULL || strcmp(m, cases[k].out) != 0)
            fprintf(stderr, "  mask case %zu: got %s\n", k, m ? m : "(null)");
        CHECK_STR(m, cases[k].out);
        free(m);
    }
}

struct seen {
    char list[512];
};

static int collect_target(void *opaque, const char *host, int port, const char *field)
{
    struct seen *s = opaque;
    size_t n = strlen(s->list);

    snprintf(s->list + n, sizeof(s->list) - n, "%s%s:%d@%s", n ? " " : "", host, port, field);
    return strcmp(host, "deny.example") == 0;
}

static void test_each_target(void)
{
    struct {
        const char *dsn, *want;
        int rc;
    } cases[] = {
        {"postgresql://u:p@db1.example:6432/x", "db1.example:6432@/database/dsn", 0},
        {"postgresql://u@h1,h2:5433/x", "h1:5432@/database/dsn h2:5433@/database/dsn", 0},
        {"host=/var/run/postgresql port=5433 dbname=x", "localhost:5433@/database/dsn", 0},
        {"host=a,b port=1,2 hostaddr=10.0.0.1,10.0.0.2",
         "a:1@/database/dsn 10.0.0.1:1@/database/dsn b:2@/database/dsn 10.0.0.2:2@/database/dsn",
         0},
        {"hostaddr=10.1.2.3", "10.1.2.3:5432@/database/dsn", 0},
        {"host=ok.example,deny.example,never.example",
         "ok.example:5432@/database/dsn deny.example:5432@/database/dsn", 1},
    };
    struct lt_error err;

    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        json_t *spec =
            json_pack("{s:s, s:{s:s}}", "kind", "generate", "database", "dsn", cases[k].dsn);
        struct seen seen = {""};
        REQUIRE(generate_ops.validate(spec, &err) == LT_OK);
        CHECK(generate_ops.each_target(spec, collect_target, &seen) == cases[k].rc);
        if (strcmp(seen.list, cases[k].want) != 0)
            fprintf(stderr, "  case %zu: %s\n", k, seen.list);
        CHECK_STR(seen.list, cases[k].want);
        json_decref(spec);
    }
    /* No host at all (libpq would take PGHOST or a default socket), and service files (which
     * could point anywhere) are refused by validate. */
    {
        const char *bad[] = {"dbname=x user=y", "postgresql:///x", "service=prod",
                             "host=a,b port=1,2,3"};
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            json_t *spec =
                json_pack("{s:s, s:{s:s}}", "kind", "generate", "database", "dsn", bad[k]);
            CHECK(generate_ops.validate(spec, &err) == LT_ERR_INVALID_SPEC);
            CHECK_STR(err.field, "/database/dsn");
            json_decref(spec);
        }
    }
}

/* ---- against PostgreSQL ---- */

/* Parses pgvector's text output "[a,b,...]" into out (dim floats). Returns the count. */
static int parse_vector(const char *s, float *out, int dim)
{
    int n = 0;
    char *end;

    if (*s == '[' || *s == '{')
        s++;
    while (*s && n < dim) {
        out[n++] = strtof(s, &end);
        if (end == s)
            break;
        s = end;
        if (*s == ',')
            s++;
    }
    return n;
}

static void test_load_vector(void)
{
    struct run r = {0};
    PGconn *c;
    json_t *spec;
    char sql[1024];
    float got[64], want[64];
    double scratch[64];
    struct gen_params p = {42, 64, 50, 0.05};
    float *base;

    NEED_PG();
    spec = small_spec(pg_dsn, "gen_vec", 2000, 64, "create");
    REQUIRE(run_spec(spec, &r) == 0);
    if (err_code(&r))
        fprintf(stderr, "  error %s: %s\n", err_code(&r), r.out.error.message);
    REQUIRE(err_code(&r) == NULL);
    REQUIRE(r.out.verdict != NULL);
    CHECK(json_is_true(json_object_get(r.out.verdict, "pass")));
    CHECK_STR(json_string_value(json_object_get(r.cap.last_progress, "phase")), "done");
    CHECK(json_real_value(json_object_get(r.cap.last_progress, "fraction")) == 1.0);
    fprintf(stderr, "  summary: %s\n",
            json_string_value(json_object_get(r.out.verdict, "summary")));
    CHECK(res_int(&r, "rows_inserted") == 2000);
    CHECK(res_int(&r, "bytes") > 2000 * 64 * 4);
    CHECK_STR(json_string_value(json_object_get(r.out.result, "embedding_type")), "vector");
    CHECK(json_is_true(json_object_get(json_object_get(r.out.result, "index"), "valid")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(r.out.result, "index"), "name")),
              "gen_vec_embedding_hnsw");
    CHECK(json_is_object(json_object_get(r.out.result, "phases")));
    CHECK(res_int(&r, "connections") == 2);
    CHECK(r.cap.progress_calls >= 3 && atomic_load(&r.cap.saw_insert_phase) && r.cap.t_in_order);
    check_no_password(&r);
    run_clear(&r);

    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_vec") == 2000);
    CHECK(db_ll(c, "SELECT count(DISTINCT id) FROM gen_vec") == 2000);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_vec WHERE vector_dims(embedding) <> 64") == 0);
    CHECK(db_double(c, "SELECT max(abs(vector_norm(embedding) - 1)) FROM gen_vec") < 1e-5);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_vec WHERE title = '' OR cardinality(tags) < 1 OR "
                   "created_at > '2026-01-02' OR created_at < '2023-12-31'") == 0);
    /* Byte-for-byte the generator's rows (pgvector prints floats in shortest round-trip form). */
    base = gen_base_vectors_new(&p);
    REQUIRE(base != NULL);
    for (int i = 0; i < 2000; i += 397) {
        char *txt;
        snprintf(sql, sizeof(sql), "SELECT embedding::text FROM gen_vec WHERE id = %lld",
                 (long long)gen_row_id(42, i));
        txt = db_str(c, sql);
        REQUIRE(txt != NULL);
        CHECK(parse_vector(txt, got, 64) == 64);
        gen_row_embedding(&p, base, i, want, scratch);
        CHECK(memcmp(got, want, sizeof(got)) == 0);
        free(txt);
    }
    free(base);

    /* Cluster structure, with a map row number -> id. For unit vectors x = (b + e)/|b + e| with
     * b ~ N(0, I_d), e ~ N(0, s^2 I_d): 1 - cos(x1, x2) ~= |e1 - e2|_perp^2 / (2 |b|^2)
     * ~= s^2 chi2_{d-1} / chi2_d, mean s^2 = 0.0025. At d = 64 over the ~39,000 same-base pairs
     * here the worst case is about 0.0025 * 110 / 36 ~= 0.008 (largest noise chi2 against the
     * smallest of 50 base norms), so every pair must be above 0.99. Different bases are
     * independent directions: cos ~ N(0, 1/64), sd 0.125, so the largest of ~20,000 pairs is
     * near 0.5; 0.8 is over 6 sd. */
    REQUIRE(db_exec(c, "CREATE TEMP TABLE rowmap (i int, id bigint)") == 0);
    {
        size_t cap = 2000 * 48 + 64, len = 0;
        char *ins = malloc(cap);
        REQUIRE(ins != NULL);
        len += (size_t)snprintf(ins, cap, "INSERT INTO rowmap VALUES ");
        for (int i = 0; i < 2000; i++)
            len += (size_t)snprintf(ins + len, cap - len, "%s(%d,%lld)", i ? "," : "", i,
                                    (long long)gen_row_id(42, i));
        CHECK(db_exec(c, ins) == 0);
        free(ins);
    }
    {
        double same = db_double(
            c, "SELECT min(1 - (a.embedding <=> b.embedding)) FROM rowmap ma JOIN rowmap mb "
               "ON ma.i % 50 = mb.i % 50 AND ma.i < mb.i JOIN gen_vec a ON a.id = ma.id "
               "JOIN gen_vec b ON b.id = mb.id");
        double mean_same = db_double(
            c, "SELECT avg(1 - (a.embedding <=> b.embedding)) FROM rowmap ma JOIN rowmap mb "
               "ON ma.i % 50 = mb.i % 50 AND ma.i < mb.i JOIN gen_vec a ON a.id = ma.id "
               "JOIN gen_vec b ON b.id = mb.id");
        double other = db_double(
            c, "SELECT max(1 - (a.embedding <=> b.embedding)) FROM rowmap ma JOIN rowmap mb "
               "ON ma.i % 50 <> mb.i % 50 AND ma.i < mb.i AND mb.i < 200 "
               "JOIN gen_vec a ON a.id = ma.id JOIN gen_vec b ON b.id = mb.id");
        fprintf(stderr, "  cosine: same-base min %.5f mean %.5f, other-base max %.4f\n", same,
                mean_same, other);
        CHECK(same > 0.99);
        CHECK(fabs(mean_same - 1.0 / (1.0 + 0.0025)) < 0.001);
        CHECK(other < 0.8);
    }
    /* The index serves a nearest-neighbour query. */
    {
        char *plan;
        REQUIRE(db_exec(c, "SET enable_seqscan = off") == 0);
        plan = db_lines(c, "EXPLAIN (FORMAT TEXT) SELECT id FROM gen_vec ORDER BY embedding <=> "
                           "(SELECT embedding FROM gen_vec ORDER BY id LIMIT 1) LIMIT 10");
        CHECK(plan && strstr(plan, "gen_vec_embedding_hnsw") != NULL);
        if (plan && strstr(plan, "gen_vec_embedding_hnsw") == NULL)
            fprintf(stderr, "  plan: %s\n", plan);
        free(plan);
        /* and its answers come from the row's own cluster. HNSW is approximate and its graph
         * depends on the physical row order (which the loaders' interleaving changes), so ask
         * with a wide search (ef_search 200 > the 40 rows of a cluster) and allow one miss. */
        {
            long long hits;
            REQUIRE(db_exec(c, "SET hnsw.ef_search = 200") == 0);
            hits = db_ll(c, "SELECT count(*) FROM (SELECT m.i FROM gen_vec t JOIN rowmap m ON "
                            "m.id = t.id ORDER BY t.embedding <=> (SELECT embedding FROM gen_vec "
                            "WHERE id = (SELECT id FROM rowmap WHERE i = 7)) LIMIT 10) s "
                            "WHERE s.i % 50 = 7");
            if (hits < 10)
                fprintf(stderr, "  index answered %lld of 10 from the right cluster\n", hits);
            CHECK(hits >= 9);
        }
    }
    PQfinish(c);
}

/* md5 over every column of a table, ordered by id. */
static char *table_md5(PGconn *c, const char *table)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT md5(string_agg(id::text || title || context_text || solution_text || "
             "tags::text || created_at::text || embedding::text, ',' ORDER BY id)) FROM %s",
             table);
    return db_str(c, sql);
}

static void test_determinism_across_splits(void)
{
    struct run r = {0};
    json_t *a, *b;
    PGconn *c;
    char *ma, *mb, *mv;

    NEED_PG();
    a = small_spec(pg_dsn, "gen_det_a", 1500, 32, "none");
    json_object_set_new(a, "connections", json_integer(1));
    json_object_set_new(a, "batch_rows", json_integer(1000));
    REQUIRE(run_spec(a, &r) == 0);
    CHECK(err_code(&r) == NULL && res_int(&r, "rows_inserted") == 1500);
    run_clear(&r);
    b = small_spec(pg_dsn, "gen_det_b", 1500, 32, "none");
    json_object_set_new(b, "connections", json_integer(3));
    json_object_set_new(b, "batch_rows", json_integer(77));
    REQUIRE(run_spec(b, &r) == 0);
    CHECK(err_code(&r) == NULL && res_int(&r, "rows_inserted") == 1500);
    CHECK(res_int(&r, "connections") == 3);
    run_clear(&r);
    /* another seed differs */
    b = small_spec(pg_dsn, "gen_det_c", 1500, 32, "none");
    json_object_set_new(b, "seed", json_integer(43));
    REQUIRE(run_spec(b, &r) == 0);
    CHECK(err_code(&r) == NULL);
    run_clear(&r);

    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    ma = table_md5(c, "gen_det_a");
    mb = table_md5(c, "gen_det_b");
    mv = table_md5(c, "gen_det_c");
    CHECK(ma && mb && strlen(ma) == 32 && strcmp(ma, mb) == 0);
    CHECK(ma && mv && strcmp(ma, mv) != 0);
    free(ma);
    free(mb);
    free(mv);

    /* Same seed again without truncate: the ids collide and the run says so. */
    a = small_spec(pg_dsn, "gen_det_a", 1500, 32, "none");
    json_object_set_new(a, "truncate", json_false());
    REQUIRE(run_spec(a, &r) == 0);
    CHECK_STR(err_code(&r), "duplicate_rows");
    CHECK(res_int(&r, "rows_inserted") == 0);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_det_a") == 1500);
    run_clear(&r);
    PQfinish(c);
}

static void test_index_modes(void)
{
    struct run r = {0};
    PGconn *c;
    char *def;
    json_t *s;

    NEED_PG();
    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    /* A table with a custom HNSW index (m = 4): recreate must keep that definition. */
    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    run_clear(&r);
    REQUIRE(db_exec(c, "CREATE INDEX gen_idx_custom ON gen_idx USING hnsw (embedding "
                       "vector_l2_ops) WITH (m = 4, ef_construction = 16)") == 0);

    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "none"); /* live index during the load */
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    CHECK(r.result_text && strstr(r.result_text, "live hnsw index gen_idx_custom") != NULL);
    CHECK(json_is_null(json_object_get(r.out.result, "index"))); /* none asked for */
    run_clear(&r);

    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "recreate");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    CHECK(r.out.verdict && json_is_true(json_object_get(r.out.verdict, "pass")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(r.out.result, "index"), "action")),
              "recreated");
    CHECK(r.result_text && strstr(r.result_text, "live hnsw") == NULL);
    run_clear(&r);
    def = db_str(c, "SELECT pg_get_indexdef('gen_idx_custom'::regclass)");
    CHECK(def && strstr(def, "m='4'") && strstr(def, "vector_l2_ops"));
    free(def);

    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "reindex");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(r.out.result, "index"), "action")),
              "reindexed");
    CHECK(json_is_true(json_object_get(json_object_get(r.out.result, "index"), "valid")));
    run_clear(&r);

    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "reindex_concurrently");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    if (err_code(&r))
        fprintf(stderr, "  %s\n", r.out.error.message);
    CHECK(json_is_true(json_object_get(json_object_get(r.out.result, "index"), "valid")));
    run_clear(&r);

    /* create: adds ours next to the custom one */
    s = small_spec(pg_dsn, "gen_idx", 1000, 32, "create");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(r.out.result, "index"), "name")),
              "gen_idx_embedding_hnsw");
    run_clear(&r);
    def = db_str(c, "SELECT pg_get_indexdef('gen_idx_embedding_hnsw'::regclass)");
    CHECK(def && strstr(def, "vector_cosine_ops") && strstr(def, "m='8'") &&
          strstr(def, "ef_construction='32'"));
    free(def);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_idx") == 1000);
    PQfinish(c);
}

static void test_real_fallback(void)
{
    struct run r = {0};
    PGconn *c;
    json_t *s;

    NEED_PG();
    if (pg_dsn_novec == NULL) {
        fprintf(stderr, "  SKIPPED: LT_PG_DSN_NOVEC not set\n");
        return;
    }
    /* An index was asked for: the run says pgvector is missing before touching anything. */
    s = small_spec(pg_dsn_novec, "gen_real", 800, 16, "create");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "extension_missing");
    CHECK(strstr(r.out.error.message, "pgvector") != NULL);
    CHECK(strstr(r.out.error.message, "permission denied") != NULL);
    run_clear(&r);
    c = db_connect(pg_dsn_novec);
    REQUIRE(c != NULL);
    CHECK(db_ll(c, "SELECT count(*) FROM pg_class WHERE relname = 'gen_real'") == 0);

    s = small_spec(pg_dsn_novec, "gen_real", 800, 16, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK(err_code(&r) == NULL);
    CHECK(r.out.verdict && json_is_true(json_object_get(r.out.verdict, "pass")));
    CHECK_STR(json_string_value(json_object_get(r.out.result, "embedding_type")), "real[]");
    CHECK(r.result_text && strstr(r.result_text, "embedding is real[]") != NULL);
    run_clear(&r);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_real") == 800);
    {
        char *t = db_str(c, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                            "attrelid = 'gen_real'::regclass AND attname = 'embedding'");
        CHECK_STR(t, "real[]");
        free(t);
    }
    CHECK(db_ll(c, "SELECT count(*) FROM gen_real WHERE array_length(embedding, 1) <> 16") == 0);
    CHECK(db_double(c, "SELECT max(abs(sqrt((SELECT sum(x * x) FROM unnest(embedding) x)) - 1)) "
                       "FROM gen_real") < 1e-5);
    PQfinish(c);
    /* Same bytes as the vector path: compare one row with the generator. */
    {
        struct gen_params p = {42, 16, 50, 0.05};
        float *base = gen_base_vectors_new(&p);
        float got[16], want[16];
        double scratch[16];
        char sql[256], *txt;
        c = db_connect(pg_dsn_novec);
        REQUIRE(c != NULL && base != NULL);
        snprintf(sql, sizeof(sql), "SELECT embedding::text FROM gen_real WHERE id = %lld",
                 (long long)gen_row_id(42, 123));
        txt = db_str(c, sql);
        CHECK(txt && parse_vector(txt, got, 16) == 16);
        gen_row_embedding(&p, base, 123, want, scratch);
        CHECK(memcmp(got, want, sizeof(got)) == 0);
        free(txt);
        free(base);
        PQfinish(c);
    }
}

/* Builds a DSN like LT_PG_DSN with another port or password. */
static void dsn_variant(char *out, size_t size, const char *password, int port)
{
    const char *p = getenv("LT_PG_PORT");

    snprintf(out, size, "postgresql://loadtestd:%s@127.0.0.1:%d/loadtestd", password,
             port ? port : (p ? atoi(p) : 5432));
}

static void test_allowlist(void)
{
    struct run r = {0};
    struct runner_config cfg = {0, NULL};
    struct lt_allow *allow;
    char dsn[512], e[128];
    const char *port = getenv("LT_PG_PORT");
    json_t *s;

    NEED_PG();
    /* "localhost" resolves to ::1 and 127.0.0.1; the server listens on 127.0.0.1 only, so the
     * pinned ::1 entry is refused and libpq goes on to the next pinned address. */
    snprintf(dsn, sizeof(dsn),
             "host=localhost port=%s dbname=loadtestd user=loadtestd "
             "password=%s",
             port ? port : "5432", pg_password ? pg_password : "");
    s = small_spec(dsn, "gen_allow", 300, 8, "none");
    REQUIRE(run_spec(s, &r) == 0);
    if (err_code(&r))
        fprintf(stderr, "  localhost: %s: %s\n", err_code(&r), r.out.error.message);
    CHECK(err_code(&r) == NULL);
    CHECK(res_int(&r, "rows_inserted") == 300);
    run_clear(&r);

    /* An operator list without loopback: refused before any connection. */
    allow = lt_allow_new();
    REQUIRE(allow != NULL);
    REQUIRE(lt_allow_add(allow, "10.0.0.0/8", e, sizeof(e)) == 0);
    cfg.allow = allow;
    r.config = &cfg;
    s = small_spec(pg_dsn, "gen_allow", 300, 8, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "forbidden_target");
    CHECK_STR(r.out.error.field, "/database/dsn");
    CHECK(strstr(r.out.error.message, "127.0.0.1") != NULL);
    fprintf(stderr, "  allowlist: %s\n", r.out.error.message);
    check_no_password(&r);
    run_clear(&r);
    lt_allow_free(allow);
}

static void test_errors(void)
{
    struct run r = {0};
    PGconn *c;
    char dsn[512];
    json_t *s;

    NEED_PG();
    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);

    /* Nothing listens: refused at once. */
    dsn_variant(dsn, sizeof(dsn), pg_password ? pg_password : "x", free_port());
    s = small_spec(dsn, "gen_err", 100, 8, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "database_unreachable");
    CHECK(strstr(r.out.error.message, "127.0.0.1") != NULL);
    CHECK(r.seconds < 5);
    fprintf(stderr, "  unreachable: %s\n", r.out.error.message);
    check_no_password(&r);
    run_clear(&r);

    /* Wrong password: the wrong one never shows either. */
    dsn_variant(dsn, sizeof(dsn), "Wr0ngSecretXyz", 0);
    s = small_spec(dsn, "gen_err", 100, 8, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "database_auth");
    CHECK(strstr(r.out.error.message, "Wr0ngSecretXyz") == NULL);
    CHECK(r.result_text && strstr(r.result_text, "Wr0ngSecretXyz") == NULL);
    fprintf(stderr, "  auth: %s\n", r.out.error.message);
    run_clear(&r);

    /* No INSERT on an existing table. */
    s = small_spec(pg_dsn, "locked.traces", 100, 64, "none");
    json_object_set_new(s, "truncate", json_false());
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "permission_denied");
    fprintf(stderr, "  privilege: %s\n", r.out.error.message);
    check_no_password(&r);
    run_clear(&r);
    /* No CREATE in the schema. */
    s = small_spec(pg_dsn, "locked.newtable", 100, 64, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "permission_denied");
    CHECK(strstr(r.out.error.message, "SQLSTATE 42501") != NULL);
    fprintf(stderr, "  privilege: %s\n", r.out.error.message);
    run_clear(&r);

    /* An existing table that does not fit: every problem named. */
    REQUIRE(db_exec(c, "DROP TABLE IF EXISTS gen_bad; CREATE TABLE gen_bad (id bigint, title "
                       "varchar(20), embedding vector(32), note text NOT NULL)") == 0);
    s = small_spec(pg_dsn, "gen_bad", 100, 64, "none");
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "incompatible_table");
    CHECK_STR(r.out.error.field, "/table");
    CHECK(strstr(r.out.error.message, "column \"embedding\": expected vector(64) or real[], "
                                      "found vector(32)") != NULL);
    CHECK(strstr(r.out.error.message,
                 "column \"title\": expected text, found character varying(20)") != NULL);
    CHECK(r.result_text &&
          strstr(r.result_text, "column \\\"tags\\\" is missing (expected text[])"));
    CHECK(r.result_text && strstr(r.result_text, "column \\\"note\\\" (text) is NOT NULL"));
    fprintf(stderr, "  incompatible: %s\n", r.out.error.message);
    run_clear(&r);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_bad") == 0);

    /* create_table false and no table */
    s = small_spec(pg_dsn, "gen_absent", 100, 8, "none");
    json_object_set_new(s, "create_table", json_false());
    REQUIRE(run_spec(s, &r) == 0);
    CHECK_STR(err_code(&r), "table_not_found");
    run_clear(&r);

    /* Disk full, for real: the table lives in a tablespace on a 4 MiB tmpfs. */
    if (getenv("LT_PG_TINY_TABLESPACE") == NULL) {
        fprintf(stderr, "  disk full: SKIPPED (no tiny tablespace: run_with_pg.sh could not "
                        "mount a private tmpfs)\n");
    } else {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE gen_full (id bigint PRIMARY KEY, title text, context_text text, "
                 "solution_text text, tags text[], created_at timestamptz, embedding vector(64)) "
                 "TABLESPACE %s",
                 getenv("LT_PG_TINY_TABLESPACE"));
        REQUIRE(db_exec(c, sql) == 0);
        s = small_spec(pg_dsn, "gen_full", 20000, 64, "none");
        REQUIRE(run_spec(s, &r) == 0);
        CHECK_STR(err_code(&r), "disk_full");
        fprintf(stderr, "  disk full: %s (rows_inserted %lld)\n", r.out.error.message,
                res_int(&r, "rows_inserted"));
        CHECK(res_int(&r, "rows_inserted") > 0 && res_int(&r, "rows_inserted") < 20000);
        CHECK(db_ll(c, "SELECT count(*) FROM gen_full") == res_int(&r, "rows_inserted"));
        check_no_password(&r);
        run_clear(&r);
        CHECK(db_exec(c, "DROP TABLE gen_full") == 0);
    }
    PQfinish(c);
}

struct bg {
    json_t *spec;
    struct run *r;
};

static void *bg_run(void *arg)
{
    struct bg *b = arg;

    run_spec(b->spec, b->r);
    return NULL;
}

static void test_cancel(void)
{
    static struct run r;
    struct bg b;
    pthread_t th;
    json_t *s;
    PGconn *c;
    struct timespec one = {1, 0};
    int64_t t_cancel;
    long long n;

    NEED_PG();
    memset(&r, 0, sizeof(r));
    s = small_spec(pg_dsn, "gen_cancel", 2000000, 64, "create");
    json_object_set_new(s, "batch_rows", json_integer(500));
    b.spec = s;
    b.r = &r;
    REQUIRE(pthread_create(&th, NULL, bg_run, &b) == 0);
    nanosleep(&one, NULL);
    nanosleep(&one, NULL);
    t_cancel = lt_mono_ns();
    atomic_store(&r.cancel, 1);
    pthread_join(th, NULL);
    {
        double stop_s = (double)(lt_mono_ns() - t_cancel) / 1e9;
        fprintf(stderr, "  cancel: returned %.3f s after the cancel, rows_inserted %lld\n", stop_s,
                res_int(&r, "rows_inserted"));
        CHECK(stop_s < 1.0);
    }
    CHECK(err_code(&r) == NULL);
    CHECK(r.out.verdict == NULL);
    /* The last progress says where it stopped, not "done". */
    CHECK_STR(json_string_value(json_object_get(r.cap.last_progress, "phase")), "insert");
    CHECK(json_real_value(json_object_get(r.cap.last_progress, "fraction")) < 0.5);
    n = res_int(&r, "rows_inserted");
    CHECK(n > 0 && n < 2000000);
    CHECK(r.cap.points >= 1);
    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_cancel") == n);
    /* no index was built after a cancel */
    CHECK(db_ll(c, "SELECT count(*) FROM pg_class WHERE relname = 'gen_cancel_embedding_hnsw'") ==
          0);
    PQfinish(c);
    run_clear(&r);
}

/* A cancel during the HNSW build: the CREATE INDEX is cancelled on the server (rolled back),
 * the rows stay. */
static void test_cancel_during_index(void)
{
    static struct run r;
    struct bg b;
    pthread_t th;
    json_t *s;
    PGconn *c;
    struct timespec tick = {0, 20 * 1000 * 1000}, settle = {0, 300 * 1000 * 1000};
    int64_t t_cancel;

    NEED_PG();
    memset(&r, 0, sizeof(r));
    s = small_spec(pg_dsn, "gen_cancel_idx", 40000, 64, "create");
    json_object_set_new(json_object_get(s, "index"), "ef_construction", json_integer(400));
    json_object_set_new(json_object_get(s, "index"), "m", json_integer(32));
    b.spec = s;
    b.r = &r;
    REQUIRE(pthread_create(&th, NULL, bg_run, &b) == 0);
    for (int k = 0; k < 3000 && !atomic_load(&r.cap.saw_index_phase); k++)
        nanosleep(&tick, NULL);
    CHECK(atomic_load(&r.cap.saw_index_phase));
    /* The build reports how far it got (pg_stat_progress_create_index, read once a second). */
    for (int k = 0; k < 1000 && !atomic_load(&r.cap.saw_index_progress); k++)
        nanosleep(&tick, NULL);
    CHECK(atomic_load(&r.cap.saw_index_progress));
    nanosleep(&settle, NULL);
    t_cancel = lt_mono_ns();
    atomic_store(&r.cancel, 1);
    pthread_join(th, NULL);
    {
        double stop_s = (double)(lt_mono_ns() - t_cancel) / 1e9;
        double build_s =
            json_real_value(json_object_get(json_object_get(r.out.result, "index"), "build_s"));
        fprintf(stderr,
                "  cancel in index build: returned %.3f s after the cancel (build ran "
                "%.2f s)\n",
                stop_s, build_s);
        CHECK(stop_s < 1.0);
    }
    CHECK(err_code(&r) == NULL && r.out.verdict == NULL);
    CHECK(res_int(&r, "rows_inserted") == 40000);
    CHECK_STR(json_string_value(json_object_get(json_object_get(r.out.result, "index"), "action")),
              "not_built");
    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    CHECK(db_ll(c, "SELECT count(*) FROM gen_cancel_idx") == 40000);
    CHECK(db_ll(c, "SELECT count(*) FROM pg_class WHERE relname = "
                   "'gen_cancel_idx_embedding_hnsw'") == 0);
    PQfinish(c);
    run_clear(&r);
}

/* The control connection idles through the load; if the server drops it meanwhile, the index
 * phase reconnects instead of failing. */
static void test_control_connection_lost(void)
{
    static struct run r;
    struct bg b;
    pthread_t th;
    PGconn *c;
    struct timespec tick = {0, 20 * 1000 * 1000};
    long long killed = 0;

    NEED_PG();
    memset(&r, 0, sizeof(r));
    b.spec = small_spec(pg_dsn, "gen_ctl_lost", 150000, 16, "create");
    b.r = &r;
    c = db_connect(pg_dsn);
    REQUIRE(c != NULL);
    REQUIRE(pthread_create(&th, NULL, bg_run, &b) == 0);
    for (int k = 0; k < 3000 && !atomic_load(&r.cap.saw_insert_phase); k++)
        nanosleep(&tick, NULL);
    /* The control connection's last statement was the vector index lookup. */
    for (int k = 0; k < 50 && killed == 0; k++) {
        killed = db_ll(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                          "application_name = 'loadtestd-generate' AND state = 'idle' AND "
                          "query LIKE 'SELECT ci.relname%'");
        if (killed == 0)
            nanosleep(&tick, NULL);
    }
    pthread_join(th, NULL);
    CHECK(killed == 1);
    if (err_code(&r))
        fprintf(stderr, "  %s: %s\n", err_code(&r), r.out.error.message);
    CHECK(err_code(&r) == NULL);
    CHECK(r.out.verdict && json_is_true(json_object_get(r.out.verdict, "pass")));
    CHECK(db_ll(c, "SELECT count(*) FROM gen_ctl_lost") == 150000);
    PQfinish(c);
    run_clear(&r);
}

int main(void)
{
    lt_log_set_quiet(1);
    pg_dsn = getenv("LT_PG_DSN");
    pg_dsn_novec = getenv("LT_PG_DSN_NOVEC");
    pg_password = getenv("LT_PG_PASSWORD");

    RUN(test_prng_and_gaussian);
    RUN(test_rows_are_pure_functions);
    RUN(test_ids_unique);
    RUN(test_copy_layouts);
    RUN(test_validate);
    RUN(test_mask_dsn);
    RUN(test_each_target);
    RUN(test_load_vector);
    RUN(test_determinism_across_splits);
    RUN(test_index_modes);
    RUN(test_real_fallback);
    RUN(test_allowlist);
    RUN(test_errors);
    RUN(test_cancel);
    RUN(test_cancel_during_index);
    RUN(test_control_connection_lost);
    return harness_report();
}
