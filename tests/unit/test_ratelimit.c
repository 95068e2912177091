/*
 * test_ratelimit: the ratelimit runner against a token-bucket limiter with known parameters
 * (tests/targets/bucket_target, path in argv[1]; each test starts its own with the flags it
 * needs). Checks that validation names the faulty field and fills defaults; that the inferred
 * limit equals the configured capacity for several capacities and rates, and that
 * capacity_estimate removes what refilled during a slow burst; that the refill estimate is within
 * 10% and Retry-After is checked; that a too strict limiter fails realistic_success, a limiter
 * that never limits fails burst_limit, and 5xx are errors, not limits; that each agent's
 * requests carry its own identity from setup (the target's per-identity counts), the schedule is
 * reproducible from the seed, and the shared-identity case waits for the bucket to refill; the
 * points and progress; cancel within a second with partial results; unreachable targets, failed
 * setup calls and the allowlist. About 60 s.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lt_allow.h"
#include "lt_util.h"
#include "ratelimit.h"

static const char *target_path;
static pid_t target_pid = -1;
static int target_port;
static const struct runner_ops *ops;
static const struct lt_allow *test_allow; /* config.allow; NULL = the loopback default */

/* ---- the target ----------------------------------------------------------------------------- */

/* Starts bucket_target with the given flags (NULL-terminated). Returns 0 or -1. */
static int start_target(const char *flag, ...)
{
    const char *argv[32];
    int argc = 0, fds[2];
    char line[64] = "";
    va_list ap;
    FILE *f;

    argv[argc++] = target_path;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    va_start(ap, flag);
    for (const char *a = flag; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    if (pipe(fds) != 0)
        return -1;
    target_pid = fork();
    if (target_pid < 0)
        return -1;
    if (target_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(target_path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    f = fdopen(fds[0], "r");
    if (f == NULL || fgets(line, sizeof(line), f) == NULL ||
        sscanf(line, "PORT=%d", &target_port) != 1) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static void stop_target(void)
{
    if (target_pid > 0) {
        kill(target_pid, SIGTERM);
        waitpid(target_pid, NULL, 0);
        target_pid = -1;
    }
}

struct buf {
    char data[65536];
    size_t len;
};

static size_t buf_write(char *p, size_t s, size_t n, void *u)
{
    struct buf *b = u;
    size_t k = s * n;

    if (k > sizeof(b->data) - 1 - b->len)
        k = sizeof(b->data) - 1 - b->len;
    memcpy(b->data + b->len, p, k);
    b->len += k;
    b->data[b->len] = '\0';
    return s * n;
}

/* One control request to the target; returns the body parsed (new) or NULL. */
static json_t *control(const char *method, const char *path)
{
    char url[256];
    struct buf *b = calloc(1, sizeof(*b));
    CURL *c = curl_easy_init();
    json_t *j = NULL;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", target_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    if (curl_easy_perform(c) == CURLE_OK)
        j = json_loads(b->data, JSON_DECODE_ANY, NULL);
    curl_easy_cleanup(c);
    free(b);
    return j;
}

/* ---- a sink that keeps what it is given ----------------------------------------------------- */

struct test_sink {
    json_t *points;
    json_t *phases; /* progress.phase values in order, deduplicated consecutive */
    int progress_calls;
    int cancel_after;
    atomic_int *cancel;
    int64_t cancelled_at;
    int bad_progress;
    double last_fraction;
    int fraction_went_back;
};

static void sink_progress(void *opaque, const json_t *progress, const json_t *partial)
{
    struct test_sink *s = opaque;
    const char *phase = json_string_value(json_object_get(progress, "phase"));
    double f = json_number_value(json_object_get(progress, "fraction"));
    size_t n = json_array_size(s->phases);

    s->progress_calls++;
    if (!json_is_number(json_object_get(progress, "fraction")) || phase == NULL ||
        !json_is_integer(json_object_get(progress, "requests")) || !json_is_object(partial) ||
        !json_is_object(json_object_get(partial, "burst")) || f < 0 || f > 1)
        s->bad_progress++;
    if (f < s->last_fraction)
        s->fraction_went_back = 1;
    s->last_fraction = f;
    if (phase != NULL &&
        (n == 0 || strcmp(json_string_value(json_array_get(s->phases, n - 1)), phase) != 0))
        json_array_append_new(s->phases, json_string(phase));
    if (s->cancel_after > 0 && s->progress_calls == s->cancel_after) {
        s->cancelled_at = lt_mono_ns();
        atomic_store(s->cancel, 1);
    }
}

static void sink_point(void *opaque, int64_t t, const json_t *point)
{
    struct test_sink *s = opaque;

    (void)t;
    json_array_append(s->points, (json_t *)point);
}

struct run {
    json_t *spec;
    struct test_sink ts;
    struct runner_sink sink;
    atomic_int cancel;
    struct runner_outcome out;
    double wall_s;
};

/* Copies in to out replacing each {PORT} with the target's port. */
static void with_port(char *out, size_t n, const char *in)
{
    char port[16];
    size_t o = 0;

    snprintf(port, sizeof(port), "%d", target_port);
    while (*in && o + 1 < n) {
        if (strncmp(in, "{PORT}", 6) == 0) {
            o += (size_t)snprintf(out + o, n - o, "%s", port);
            in += 6;
        } else {
            out[o++] = *in++;
        }
    }
    out[o < n ? o : n - 1] = '\0';
}

/* Validates spec and runs it; returns 0 when execute produced a result. Free with run_free. */
static int run_spec(struct run *r, const char *spec, int cancel_after)
{
    char text[4096];
    struct lt_error err = {0};
    struct runner_config cfg = {.worker_threads = 1, .allow = test_allow};
    struct runner_job job;
    int64_t t0;

    memset(r, 0, sizeof(*r));
    with_port(text, sizeof(text), spec);
    r->spec = json_loads(text, 0, NULL);
    r->ts.points = json_array();
    r->ts.phases = json_array();
    if (r->spec == NULL || ops->validate(r->spec, &err) != LT_OK) {
        fprintf(stderr, "spec rejected: %s (%s)\n", err.message, err.field);
        return -1;
    }
    r->ts.cancel = &r->cancel;
    r->ts.cancel_after = cancel_after;
    r->sink =
        (struct runner_sink){.opaque = &r->ts, .progress = sink_progress, .point = sink_point};
    job = (struct runner_job){.id = "rtest00000000000000001",
                              .spec = r->spec,
                              .cancel = &r->cancel,
                              .sink = &r->sink,
                              .config = &cfg};
    t0 = lt_mono_ns();
    ops->execute(&job, &r->out);
    r->wall_s = (double)(lt_mono_ns() - t0) / 1e9;
    if (r->out.result == NULL)
        return -1;
    if (getenv("RL_TEST_VERBOSE")) {
        char *s = json_dumps(r->out.result, JSON_INDENT(1));
        fprintf(stderr, "result: %s\n", s);
        free(s);
        if (r->out.verdict) {
            s = json_dumps(r->out.verdict, JSON_INDENT(1));
            fprintf(stderr, "verdict: %s\n", s);
            free(s);
        }
    }
    return 0;
}

static void run_free(struct run *r)
{
    json_decref(r->spec);
    json_decref(r->ts.points);
    json_decref(r->ts.phases);
    json_decref(r->out.result);
    json_decref(r->out.verdict);
}

/* The value at "a/b/c" (object keys only), borrowed. */
static json_t *jget(const json_t *o, const char *path)
{
    char buf[128];
    const json_t *v = o;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok && v;
         tok = strtok_r(NULL, "/", &save))
        v = json_object_get(v, tok);
    return (json_t *)v;
}

static double rnum(const json_t *o, const char *path)
{
    const json_t *v = jget(o, path);

    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int verdict_pass(const struct run *r)
{
    return json_is_true(json_object_get(r->out.verdict, "pass"));
}

static const json_t *check_named(const struct run *r, const char *name)
{
    const json_t *c;
    size_t i;

    json_array_foreach(json_object_get(r->out.verdict, "checks"), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return c;
    }
    return NULL;
}

static const char *summary(const struct run *r)
{
    const char *s = json_string_value(json_object_get(r->out.verdict, "summary"));
    return s ? s : "";
}

#define SETUP_KEYS                                                                                 \
    "\"setup\":{\"url\":\"http://127.0.0.1:{PORT}/keys\",\"body\":{\"plan\":\"free\"},"            \
    "\"extract\":{\"json_pointer\":\"/api_key\",\"header\":\"X-API-Key\"}}"

/* ---- validation ----------------------------------------------------------------------------- */

static void test_validate_defaults(void)
{
    struct lt_error err = {0};
    json_t *spec = json_loads("{\"kind\":\"ratelimit\",\"name\":\"x\",\"notify\":{},"
                              "\"target\":{\"url\":\"http://127.0.0.1:8080/a\"},"
                              "\"burst\":{\"expect_limit\":60}}",
                              0, NULL);
    json_t *b, *re, *ex, *copy;

    REQUIRE(spec != NULL);
    REQUIRE(ops->validate(spec, &err) == LT_OK);
    b = json_object_get(spec, "burst");
    re = json_object_get(spec, "realistic");
    ex = json_object_get(spec, "expect");
    CHECK_STR(json_string_value(jget(spec, "target/method")), "GET");
    CHECK(json_integer_value(jget(spec, "target/timeout_ms")) == 5000);
    CHECK_STR(json_string_value(json_array_get(jget(spec, "target/expect_status"), 0)), "2xx");
    CHECK(json_integer_value(json_object_get(b, "max_requests")) == 200);
    CHECK(json_integer_value(json_object_get(b, "tolerance")) == 2);
    CHECK(json_number_value(json_object_get(b, "observe_refill_s")) == 0);
    CHECK(json_is_null(json_object_get(b, "rate")));
    CHECK(json_integer_value(json_object_get(b, "stop_after_429")) == 1);
    CHECK(json_integer_value(json_object_get(re, "agents")) == 3);
    CHECK(json_integer_value(json_object_get(re, "requests_min")) == 15);
    CHECK(json_integer_value(json_object_get(re, "requests_max")) == 30);
    CHECK(json_number_value(json_object_get(re, "window_s")) == 30);
    CHECK(json_integer_value(json_object_get(re, "windows")) == 1);
    CHECK(json_is_false(json_object_get(re, "concurrent_with_burst")));
    CHECK(json_is_null(json_object_get(re, "seed")));
    CHECK(json_is_null(json_object_get(re, "wait_s")));
    CHECK(json_is_null(json_object_get(ex, "refill_per_s")));
    CHECK(json_number_value(json_object_get(ex, "refill_tolerance")) == 0.15);
    CHECK(json_is_false(json_object_get(ex, "retry_after")));
    CHECK(json_object_get(spec, "setup") == NULL);
    copy = json_deep_copy(spec);
    CHECK(ops->validate(copy, &err) == LT_OK);
    CHECK(json_equal(copy, spec)); /* the stored spec re-validates to itself */
    json_decref(copy);
    json_decref(spec);

    /* A large limit raises the default max_requests; setup gets its defaults. */
    spec = json_loads("{\"target\":{\"url\":\"http://h/\"},\"burst\":{\"expect_limit\":500},"
                      "\"setup\":{\"url\":\"http://h/keys\",\"extract\":{\"json_pointer\":\"\","
                      "\"header\":\"Authorization\",\"prefix\":\"Bearer \"}},"
                      "\"realistic\":{\"requests_min\":300}}",
                      0, NULL);
    REQUIRE(ops->validate(spec, &err) == LT_OK);
    CHECK(json_integer_value(jget(spec, "burst/max_requests")) == 1004);
    CHECK(json_integer_value(jget(spec, "realistic/requests_max")) == 300);
    CHECK_STR(json_string_value(jget(spec, "setup/method")), "POST");
    CHECK(json_is_object(jget(spec, "setup/headers")));
    CHECK_STR(json_string_value(jget(spec, "setup/extract/prefix")), "Bearer ");
    json_decref(spec);
}

static void test_validate_errors(void)
{
    static const struct {
        const char *spec;
        const char *field;
    } cases[] = {
#define T    "\"target\":{\"url\":\"http://h/\"}"
#define B    "\"burst\":{\"expect_limit\":60}"
#define S(x) "\"setup\":{\"url\":\"http://h/keys\"" x "}"
#define X    "\"extract\":{\"json_pointer\":\"/k\",\"header\":\"X-Key\"}"
        {"{" T "," B ",\"bogus\":1}", "/bogus"},
        {"{" B "}", "/target"},
        {"{\"target\":{}," B "}", "/target/url"},
        {"{\"target\":{\"url\":\"ftp://h/\"}," B "}", "/target/url"},
        {"{\"target\":{\"url\":\"http://h/\",\"expect_status\":[429]}," B "}",
         "/target/expect_status/0"},
        {"{\"target\":{\"url\":\"http://h/\",\"headers\":{\"X-A\":\"a\\nb\"}}," B "}",
         "/target/headers/X-A"},
        {"{" T "}", "/burst"},
        {"{" T ",\"burst\":{}}", "/burst/expect_limit"},
        {"{" T ",\"burst\":{\"expect_limit\":0}}", "/burst/expect_limit"},
        {"{" T ",\"burst\":{\"expect_limit\":1.5}}", "/burst/expect_limit"},
        {"{" T ",\"burst\":{\"expect_limit\":60,\"max_requests\":62}}", "/burst/max_requests"},
        {"{" T ",\"burst\":{\"expect_limit\":60,\"observe_refill_s\":601}}",
         "/burst/observe_refill_s"},
        {"{" T ",\"burst\":{\"expect_limit\":60,\"rate\":0}}", "/burst/rate"},
        {"{" T ",\"burst\":{\"expect_limit\":60,\"stop_after_429\":0}}", "/burst/stop_after_429"},
        {"{" T ",\"burst\":{\"expect_limit\":60,\"extra\":1}}", "/burst/extra"},
        {"{" T "," B ",\"realistic\":{\"requests_min\":10,\"requests_max\":5}}",
         "/realistic/requests_min"},
        {"{" T "," B ",\"realistic\":{\"agents\":1001}}", "/realistic/agents"},
        {"{" T "," B ",\"realistic\":{\"agents\":1000,\"requests_max\":10000}}",
         "/realistic/requests_max"},
        {"{" T "," B ",\"realistic\":{\"window_s\":0.5}}", "/realistic/window_s"},
        {"{" T "," B ",\"realistic\":{\"windows\":101}}", "/realistic/windows"},
        {"{" T "," B ",\"realistic\":{\"concurrent_with_burst\":true}}",
         "/realistic/concurrent_with_burst"},
        {"{" T "," B ",\"realistic\":{\"seed\":-1}}", "/realistic/seed"},
        {"{" T "," B ",\"realistic\":{\"seed\":\"x\"}}", "/realistic/seed"},
        {"{" T "," B ",\"realistic\":{\"wait_s\":4000}}", "/realistic/wait_s"},
        {"{" T "," B ",\"realistic\":{\"agent\":1}}", "/realistic/agent"},
        {"{" T "," B ",\"setup\":null}", "/setup"},
        {"{" T "," B "," S("") "}", "/setup/extract"},
        {"{" T "," B ",\"setup\":{" X "}}", "/setup/url"},
        {"{" T "," B ",\"setup\":{\"url\":\"ftp://h/\"," X "}}", "/setup/url"},
        {"{" T "," B "," S(",\"method\":\"HEAD\"," X) "}", "/setup/method"},
        {"{" T "," B "," S(",\"headers\":{\"X-A\":1}," X) "}", "/setup/headers/X-A"},
        {"{" T "," B "," S(",\"timeout_ms\":5," X) "}", "/setup/timeout_ms"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"k\",\"header\":\"X-Key\"}") "}",
         "/setup/extract/json_pointer"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"/a~2\",\"header\":\"X-Key\"}") "}",
         "/setup/extract/json_pointer"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"/k\",\"header\":\"X Key\"}") "}",
         "/setup/extract/header"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"/k\"}") "}", "/setup/extract/header"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"/k\",\"header\":\"X-Key\","
                           "\"prefix\":\"a\\r\\n\"}") "}",
         "/setup/extract/prefix"},
        {"{" T "," B "," S(",\"extract\":{\"json_pointer\":\"/k\",\"header\":\"X-Key\","
                           "\"x\":1}") "}",
         "/setup/extract/x"},
        {"{" T "," B ",\"expect\":{\"refill_per_s\":-1}}", "/expect/refill_per_s"},
        {"{" T "," B ",\"expect\":{\"refill_tolerance\":-0.1}}", "/expect/refill_tolerance"},
        {"{" T "," B ",\"expect\":{\"retry_after\":\"yes\"}}", "/expect/retry_after"},
        {"{" T "," B ",\"expect\":{\"extra\":1}}", "/expect/extra"},
        {"{" T "," B ",\"load\":{\"users\":1}}", "/load"},
#undef T
#undef B
#undef S
#undef X
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lt_error err = {0};
        json_t *spec = json_loads(cases[i].spec, 0, NULL);
        lt_status st;

        if (spec == NULL) {
            fprintf(stderr, "case %zu does not parse: %s\n", i, cases[i].spec);
            CHECK(0);
            continue;
        }
        st = ops->validate(spec, &err);
        CHECK(st == LT_ERR_INVALID_SPEC);
        CHECK_STR(err.field, cases[i].field);
        CHECK(strstr(err.message, cases[i].field) != NULL ||
              strstr(err.message, "unknown field") != NULL);
        if (st != LT_ERR_INVALID_SPEC || strcmp(err.field, cases[i].field) != 0)
            fprintf(stderr, "  case %zu: %s -> %s (%s)\n", i, cases[i].spec, err.field,
                    err.message);
        json_decref(spec);
    }
}

static int collect_target(void *opaque, const char *host, int port, const char *field)
{
    json_t *list = opaque;

    json_array_append_new(list,
                          json_pack("{s:s, s:i, s:s}", "host", host, "port", port, "field", field));
    return 0;
}

static void test_targets_and_secrets(void)
{
    struct lt_error err = {0};
    json_t *spec = json_loads(
        "{\"target\":{\"url\":\"http://u:pw@api.internal:8080/s\",\"headers\":{\"Authorization\":"
        "\"Bearer t\",\"Accept\":\"*/*\"}},\"burst\":{\"expect_limit\":5},"
        "\"setup\":{\"url\":\"https://keys.internal/k\",\"headers\":{\"X-Admin-Token\":\"s3\"},"
        "\"body\":{\"plan\":\"free\",\"auth\":{\"password\":\"p\"}},"
        "\"extract\":{\"json_pointer\":\"/k\",\"header\":\"X-Key\"}}}",
        0, NULL);
    json_t *list = json_array();

    REQUIRE(spec != NULL && ops->validate(spec, &err) == LT_OK);
    CHECK(ops->each_target(spec, collect_target, list) == 0);
    CHECK(json_array_size(list) == 2);
    CHECK_STR(json_string_value(jget(json_array_get(list, 0), "host")), "api.internal");
    CHECK(json_integer_value(jget(json_array_get(list, 0), "port")) == 8080);
    CHECK_STR(json_string_value(jget(json_array_get(list, 0), "field")), "/target/url");
    CHECK_STR(json_string_value(jget(json_array_get(list, 1), "host")), "keys.internal");
    CHECK(json_integer_value(jget(json_array_get(list, 1), "port")) == 443);
    CHECK_STR(json_string_value(jget(json_array_get(list, 1), "field")), "/setup/url");
    ops->mask_secrets(spec);
    CHECK_STR(json_string_value(jget(spec, "target/headers/Authorization")), "***");
    CHECK_STR(json_string_value(jget(spec, "target/headers/Accept")), "*/*");
    CHECK_STR(json_string_value(jget(spec, "target/url")), "http://u:***@api.internal:8080/s");
    CHECK_STR(json_string_value(jget(spec, "setup/headers/X-Admin-Token")), "***");
    CHECK_STR(json_string_value(jget(spec, "setup/body/plan")), "free");
    CHECK_STR(json_string_value(jget(spec, "setup/body/auth/password")), "***");
    json_decref(list);
    json_decref(spec);
}

/* ---- the burst ------------------------------------------------------------------------------ */

static void test_capacity_inferred(void)
{
    static const struct {
        const char *capacity, *rate;
        int cap, stop_after; /* stop_after_429: the burst's last requests are that many 429s */
    } cases[] = {{"20", "1", 20, 1}, {"60", "1", 60, 1}, {"100", "5", 100, 3}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        char spec[1024];

        REQUIRE(start_target("--capacity", cases[i].capacity, "--refill-per-s", cases[i].rate,
                             "--identity-header", "X-API-Key", "--retry-after",
                             "--ratelimit-headers", (char *)NULL) == 0);
        snprintf(
            spec, sizeof(spec),
            "{\"kind\":\"ratelimit\",\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
            ",\"burst\":{\"expect_limit\":%d,\"tolerance\":1,\"stop_after_429\":%d},"
            "\"realistic\":{\"agents\":0}}",
            cases[i].cap, cases[i].stop_after);
        if (run_spec(&r, spec, 0) == 0) {
            const json_t *b = json_object_get(r.out.result, "burst");
            double accepted = rnum(b, "accepted_before_first_429");
            CHECK(fabs(accepted - cases[i].cap) <= 1);
            CHECK(verdict_pass(&r));
            CHECK(rnum(b, "first_429_ms") > 0);
            CHECK(rnum(b, "retry_after_s") >= 1);
            CHECK(rnum(b, "advertised_limit") == cases[i].cap);
            CHECK_STR(json_string_value(jget(b, "limit_headers/x-ratelimit-remaining")), "0");
            CHECK(json_is_string(jget(b, "limit_headers/retry-after")));
            CHECK(json_is_string(jget(b, "limit_headers/ratelimit-policy")));
            CHECK(json_is_string(jget(b, "limit_headers_last_ok/x-ratelimit-limit")));
            CHECK(rnum(b, "errors") == 0);
            CHECK(rnum(b, "status_codes/429") == cases[i].stop_after);
            CHECK(rnum(b, "requests") == accepted + cases[i].stop_after);
            CHECK(strstr(summary(&r), "PASS burst limited after") == summary(&r));
            /* Without a refill rate the check is on what got through. */
            CHECK_STR(json_string_value(json_object_get(check_named(&r, "burst_limit"), "basis")),
                      "accepted_before_first_429");
            CHECK(json_is_array(json_object_get(check_named(&r, "burst_limit"), "threshold")));
            if (fabs(accepted - cases[i].cap) > 1)
                fprintf(stderr, "  capacity %d: accepted %g\n", cases[i].cap, accepted);
        } else {
            CHECK(0);
        }
        run_free(&r);
        stop_target();
    }
}

/* A slow target and a fast refill: more than the capacity gets through during the burst, and
 * capacity_estimate takes the refill back out. */
static void test_capacity_estimate(void)
{
    struct run r;

    REQUIRE(start_target("--capacity", "20", "--refill-per-s", "20", "--delay-ms", "10",
                         "--identity-header", "X-API-Key", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                 ",\"burst\":{\"expect_limit\":20,\"tolerance\":1},\"realistic\":{\"agents\":0},"
                 "\"expect\":{\"refill_per_s\":20}}",
                 0) == 0) {
        const json_t *b = json_object_get(r.out.result, "burst");
        const json_t *c = check_named(&r, "burst_limit");
        CHECK(rnum(b, "accepted_before_first_429") >= 23);
        CHECK(rnum(b, "capacity_estimate") > 18.9 && rnum(b, "capacity_estimate") < 20.1);
        CHECK(fabs(rnum(c, "observed") - 20) <= 1);
        CHECK_STR(json_string_value(json_object_get(c, "basis")), "capacity_estimate");
        CHECK_STR(json_string_value(jget(b, "refill_source")), "expected");
        CHECK(json_is_true(json_object_get(c, "pass")));
        CHECK(strstr(summary(&r), ", capacity ") != NULL);
        fprintf(stderr, "  accepted %g, capacity_estimate %g, checked %g\n",
                rnum(b, "accepted_before_first_429"), rnum(b, "capacity_estimate"),
                rnum(c, "observed"));
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

/* The refill rate within 10%, and Retry-After present and honoured. */
static void test_refill(void)
{
    static const struct {
        const char *capacity, *rate;
        double r;
    } cases[] = {{"10", "2", 2.0}, {"5", "1", 1.0}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        char spec[1024];

        REQUIRE(start_target("--capacity", cases[i].capacity, "--refill-per-s", cases[i].rate,
                             "--identity-header", "X-API-Key", "--retry-after", (char *)NULL) == 0);
        snprintf(spec, sizeof(spec),
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                 ",\"burst\":{\"expect_limit\":%s,\"tolerance\":1,\"observe_refill_s\":6},"
                 "\"realistic\":{\"agents\":0},\"expect\":{\"refill_per_s\":%g,"
                 "\"refill_tolerance\":0.1,\"retry_after\":true}}",
                 cases[i].capacity, cases[i].r);
        if (run_spec(&r, spec, 0) == 0) {
            const json_t *b = json_object_get(r.out.result, "burst");
            double rate = rnum(b, "refill_per_s");
            CHECK(fabs(rate - cases[i].r) <= 0.1 * cases[i].r);
            CHECK_STR(json_string_value(jget(b, "refill_source")), "observed");
            CHECK(json_is_true(json_object_get(b, "retry_after_honoured")));
            CHECK(json_is_true(json_object_get(check_named(&r, "retry_after"), "pass")));
            CHECK(json_is_true(json_object_get(check_named(&r, "refill_per_s"), "pass")));
            CHECK(json_is_true(json_object_get(check_named(&r, "burst_limit"), "pass")));
            CHECK(rnum(b, "refill/probes") > 10);
            CHECK(verdict_pass(&r));
            CHECK(strstr(summary(&r), "refill") != NULL);
            CHECK(strstr(summary(&r), "Retry-After") != NULL);
            fprintf(stderr, "  refill %g/s measured %g/s: %s\n", cases[i].r, rate, summary(&r));
        } else {
            CHECK(0);
        }
        run_free(&r);
        stop_target();
    }
}

/* ---- verdicts ------------------------------------------------------------------------------- */

static void test_too_strict(void)
{
    struct run r;

    REQUIRE(start_target("--capacity", "5", "--refill-per-s", "1", "--identity-header", "X-API-Key",
                         (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                 ",\"burst\":{\"expect_limit\":5,\"tolerance\":1},\"realistic\":{\"agents\":2,"
                 "\"requests_min\":10,\"requests_max\":15,\"window_s\":3,\"seed\":1}}",
                 0) == 0) {
        const json_t *re = json_object_get(r.out.result, "realistic");
        const json_t *c = check_named(&r, "realistic_success");
        CHECK(!verdict_pass(&r));
        CHECK(c != NULL && json_is_false(json_object_get(c, "pass")));
        CHECK(json_is_true(json_object_get(check_named(&r, "burst_limit"), "pass")));
        CHECK(rnum(re, "rate_limited") > 0);
        CHECK(rnum(re, "errors") == 0);
        CHECK(rnum(re, "requests") >= 20 && rnum(re, "requests") <= 30);
        CHECK(rnum(re, "succeeded") + rnum(re, "rate_limited") == rnum(re, "requests"));
        CHECK(strstr(summary(&r), "FAIL") == summary(&r));
        CHECK(strstr(summary(&r), "too strict") != NULL);
        fprintf(stderr, "  %s\n", summary(&r));
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

static void test_never_limits(void)
{
    struct run r;

    REQUIRE(start_target("--never-limit", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":20,\"max_requests\":50,\"observe_refill_s\":2},\"realistic\":{\"agents\":0},"
                 "\"expect\":{\"refill_per_s\":1}}",
                 0) == 0) {
        const json_t *b = json_object_get(r.out.result, "burst");
        const json_t *c = check_named(&r, "burst_limit");
        CHECK(!verdict_pass(&r));
        CHECK(json_is_false(json_object_get(c, "pass")));
        CHECK(json_is_null(json_object_get(c, "observed")));
        CHECK(json_is_null(json_object_get(b, "accepted_before_first_429")));
        CHECK(json_is_null(json_object_get(b, "first_429_ms")));
        CHECK(rnum(b, "accepted") == 50 && rnum(b, "requests") == 50);
        CHECK(json_is_false(json_object_get(b, "limited")));
        CHECK(strstr(summary(&r), "never limited") != NULL);
        /* Nothing to observe a refill on: the refill check fails and says why. */
        c = check_named(&r, "refill_per_s");
        CHECK(c != NULL && json_is_false(json_object_get(c, "pass")));
        CHECK(c != NULL &&
              strstr(json_string_value(json_object_get(c, "reason")), "never limited") != NULL);
        CHECK(r.wall_s < 1.5);
        fprintf(stderr, "  %s\n", summary(&r));
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

static void test_5xx_are_errors(void)
{
    struct run r;

    REQUIRE(start_target("--capacity", "20", "--refill-per-s", "1", "--fail-5xx-every", "7",
                         "--identity-header", "X-API-Key", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                 ",\"burst\":{\"expect_limit\":20},\"realistic\":{\"agents\":1,"
                 "\"requests_min\":6,\"requests_max\":6,\"window_s\":2}}",
                 0) == 0) {
        const json_t *b = json_object_get(r.out.result, "burst");
        const json_t *re = json_object_get(r.out.result, "realistic");
        CHECK(rnum(b, "errors") >= 2);
        CHECK(rnum(b, "status_codes/503") == rnum(b, "errors"));
        CHECK(rnum(b, "error_details/unexpected_status") == rnum(b, "errors"));
        CHECK(json_is_true(json_object_get(b, "limited")));
        CHECK(rnum(b, "status_codes/429") == 1);
        CHECK(json_is_false(json_object_get(check_named(&r, "burst_limit"), "pass")));
        CHECK(rnum(re, "rate_limited") == 0);
        CHECK(rnum(re, "errors") >= 0 && rnum(re, "succeeded") + rnum(re, "errors") == 6);
        CHECK(rnum(re, "errors") == rnum(re, "status_codes/503") ||
              (rnum(re, "errors") == 0 && isnan(rnum(re, "status_codes/503"))));
        CHECK(strstr(summary(&r), "errors (503)") != NULL);
        fprintf(stderr, "  %s\n", summary(&r));
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

/* ---- identities, schedule, points ----------------------------------------------------------- */

static void test_identities(void)
{
    const char *spec = "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                       ",\"burst\":{\"expect_limit\":10},\"realistic\":{\"agents\":3,"
                       "\"requests_min\":2,\"requests_max\":6,\"window_s\":2,\"seed\":7}}";
    json_t *first_counts = NULL;

    REQUIRE(start_target("--capacity", "10", "--refill-per-s", "1", "--identity-header",
                         "X-API-Key", (char *)NULL) == 0);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct run r;
        json_t *stats, *ids, *v, *counts = json_array();
        const char *key;
        const json_t *res, *pt;
        long long expected_sum, sum = 0, burst_n;
        size_t i;

        json_decref(control("POST", "/control/reset"));
        if (run_spec(&r, spec, 0) != 0) {
            CHECK(0);
            run_free(&r);
            json_decref(counts);
            break;
        }
        res = r.out.result;
        CHECK(verdict_pass(&r));
        CHECK(rnum(res, "identities") == 4);
        CHECK_STR(json_string_value(jget(res, "realistic/identities")), "own");
        CHECK(rnum(res, "realistic/seed") == 7);
        stats = control("GET", "/control/stats");
        ids = json_object_get(stats, "identities");
        CHECK(json_integer_value(json_object_get(stats, "keys_issued")) == 4);
        CHECK(json_object_size(ids) == 4);
        CHECK(json_object_get(ids, "-") == NULL); /* no request went without its key */
        /* The target's per-identity counts are exactly the agents' counts. */
        burst_n = (long long)rnum(res, "burst/requests");
        json_array_foreach(json_object_get(json_object_get(res, "realistic"), "per_agent"), i, v)
            json_array_append_new(counts,
                                  json_integer(json_integer_value(json_object_get(v, "requests"))));
        expected_sum = burst_n + (long long)rnum(res, "realistic/requests");
        {
            int matched_burst = 0;
            json_object_foreach(ids, key, v)
            {
                long long n = (long long)json_integer_value(json_object_get(v, "requests"));
                sum += n;
                if (n == burst_n && json_integer_value(json_object_get(v, "limited")) == 1)
                    matched_burst++;
                else
                    CHECK(json_integer_value(json_object_get(v, "limited")) == 0);
            }
            CHECK(matched_burst == 1);
        }
        CHECK(sum == expected_sum);
        {
            /* Each realistic agent's count matches one identity's count. */
            json_t *remaining = json_deep_copy(ids);
            json_array_foreach(counts, i, v)
            {
                int found = 0;
                json_t *w;
                void *tmp;
                json_object_foreach_safe(remaining, tmp, key, w)
                {
                    if (!found && json_integer_value(json_object_get(w, "requests")) ==
                                      json_integer_value(v)) {
                        json_object_del(remaining, key);
                        found = 1;
                    }
                }
                CHECK(found);
            }
            json_decref(remaining);
        }
        /* Points: t = 1, 2, ... with the documented members; progress phases in order. */
        json_array_foreach(r.ts.points, i, pt)
        {
            const char *ph = json_string_value(json_object_get(pt, "phase"));
            CHECK(json_integer_value(json_object_get(pt, "t")) == (json_int_t)i + 1);
            CHECK(json_is_integer(json_object_get(pt, "requests")));
            CHECK(json_is_integer(json_object_get(pt, "accepted")));
            CHECK(json_is_integer(json_object_get(pt, "rate_limited")));
            CHECK(json_is_integer(json_object_get(pt, "errors")));
            CHECK(json_is_object(json_object_get(pt, "status")));
            CHECK(ph != NULL && (strcmp(ph, "setup") == 0 || strcmp(ph, "burst") == 0 ||
                                 strcmp(ph, "refill") == 0 || strcmp(ph, "realistic") == 0));
        }
        {
            long long total = 0;
            json_array_foreach(r.ts.points, i, pt) total +=
                (long long)json_integer_value(json_object_get(pt, "requests"));
            CHECK(total == expected_sum); /* setup calls are not in the points */
        }
        CHECK(json_array_size(r.ts.points) >= 2);
        CHECK(r.ts.progress_calls >= 1 && r.ts.bad_progress == 0 && !r.ts.fraction_went_back);
        CHECK_STR(json_string_value(json_array_get(r.ts.phases, json_array_size(r.ts.phases) - 1)),
                  "realistic");
        /* The same seed sends the same schedule. */
        if (first_counts == NULL) {
            first_counts = json_incref(counts);
        } else {
            CHECK(json_equal(first_counts, counts));
        }
        json_decref(counts);
        json_decref(stats);
        run_free(&r);
    }
    json_decref(first_counts);
    stop_target();
}

/* Realistic agents with their own keys run alongside the burst and are not hurt by it. */
static void test_concurrent(void)
{
    struct run r;

    REQUIRE(start_target("--capacity", "10", "--refill-per-s", "1", "--identity-header",
                         "X-API-Key", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                 ",\"burst\":{\"expect_limit\":10,\"rate\":100},\"realistic\":{\"agents\":2,"
                 "\"requests_min\":3,\"requests_max\":5,\"window_s\":2,"
                 "\"concurrent_with_burst\":true}}",
                 0) == 0) {
        const json_t *res = r.out.result;
        CHECK(verdict_pass(&r));
        CHECK(rnum(res, "realistic/rate_limited") == 0);
        CHECK(rnum(res, "realistic/requests") >= 6);
        CHECK(json_is_true(jget(res, "realistic/concurrent_with_burst")));
        /* The burst paced at 100/s takes about 0.1 s; the realistic phase started with it. */
        CHECK(r.wall_s < 3.5);
        CHECK(rnum(res, "burst/rate_per_s") == 100);
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

/* Without setup the realistic agents share the burst's bucket: they wait until it is full. */
static void test_shared_identity(void)
{
    struct run r;

    /* The refill rate from the spec. */
    REQUIRE(start_target("--capacity", "10", "--refill-per-s", "5", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":10},\"realistic\":{\"agents\":2,\"requests_min\":3,\"requests_max\":4,"
                 "\"window_s\":2},\"expect\":{\"refill_per_s\":5}}",
                 0) == 0) {
        const json_t *re = json_object_get(r.out.result, "realistic");
        CHECK(verdict_pass(&r));
        CHECK_STR(json_string_value(json_object_get(re, "identities")), "shared");
        CHECK(rnum(re, "wait_s") > 2.5 && rnum(re, "wait_s") < 4);
        CHECK_STR(json_string_value(json_object_get(re, "wait_basis")),
                  "capacity / expect.refill_per_s");
        CHECK(rnum(re, "rate_limited") == 0);
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();

    /* The limiter's reset header. */
    REQUIRE(start_target("--capacity", "10", "--refill-per-s", "5", "--ratelimit-headers",
                         (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":10},\"realistic\":{\"agents\":2,\"requests_min\":3,\"requests_max\":4,"
                 "\"window_s\":1}}",
                 0) == 0) {
        const json_t *re = json_object_get(r.out.result, "realistic");
        CHECK(verdict_pass(&r));
        CHECK_STR(json_string_value(json_object_get(re, "wait_basis")),
                  "the limiter's reset header");
        CHECK(rnum(re, "wait_s") >= 2 && rnum(re, "wait_s") <= 4);
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();

    /* Nothing known: the run observes the refill itself, then waits. */
    REQUIRE(start_target("--capacity", "6", "--refill-per-s", "3", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":6},\"realistic\":{\"agents\":1,\"requests_min\":3,\"requests_max\":5,"
                 "\"window_s\":1}}",
                 0) == 0) {
        const json_t *res = r.out.result;
        CHECK(verdict_pass(&r));
        CHECK_STR(json_string_value(jget(res, "burst/refill_source")), "auto");
        CHECK(fabs(rnum(res, "burst/refill_per_s") - 3) < 0.3);
        CHECK_STR(json_string_value(jget(res, "realistic/wait_basis")),
                  "capacity / auto-observed refill");
        fprintf(stderr, "  auto: %s\n", summary(&r));
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

/* ---- cancel and failures -------------------------------------------------------------------- */

static void test_cancel(void)
{
    struct run r;
    int64_t returned;

    REQUIRE(start_target("--capacity", "10", "--refill-per-s", "1", (char *)NULL) == 0);
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":10},\"realistic\":{\"agents\":2,\"requests_min\":20,\"requests_max\":20,"
                 "\"window_s\":30,\"wait_s\":0}}",
                 2) == 0) {
        returned = lt_mono_ns();
        CHECK(r.ts.cancelled_at > 0);
        CHECK((double)(returned - r.ts.cancelled_at) / 1e9 < 1.0);
        CHECK(r.out.verdict == NULL);
        CHECK(r.out.error.status == LT_OK);
        CHECK(json_is_false(json_object_get(r.out.result, "complete")));
        CHECK(rnum(r.out.result, "burst/requests") >= 10);
        CHECK(rnum(r.out.result, "burst/accepted_before_first_429") == 10);
        CHECK(json_array_size(r.ts.points) >= 2);
        CHECK(r.wall_s < 4);
    } else {
        CHECK(0);
    }
    run_free(&r);
    stop_target();
}

static void test_failures(void)
{
    struct run r;
    int port;

    /* Nothing listens: target_unreachable. */
    REQUIRE(start_target((char *)NULL) == 0);
    port = target_port;
    stop_target();
    target_port = port;
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{\"expect_limit\""
                 ":10},\"realistic\":{\"agents\":0}}",
                 0) == 0) {
        CHECK(r.out.error.status == LT_ERR_IO);
        CHECK_STR(r.out.error_code, "target_unreachable");
        CHECK(strstr(r.out.error.message, "unreachable") != NULL);
        CHECK(r.out.verdict == NULL);
        CHECK(r.wall_s < 2);
    } else {
        CHECK(0);
    }
    run_free(&r);

    REQUIRE(start_target("--capacity", "10", (char *)NULL) == 0);
    /* The setup answer has no value at the pointer. */
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"setup\":{\"url\":"
                 "\"http://127.0.0.1:{PORT}/keys\",\"extract\":{\"json_pointer\":\"/token\","
                 "\"header\":\"X-API-Key\"}},\"burst\":{\"expect_limit\":10}}",
                 0) == 0) {
        CHECK_STR(r.out.error_code, "setup_failed");
        CHECK(strstr(r.out.error.message, "/token") != NULL);
        CHECK(r.out.verdict == NULL);
    } else {
        CHECK(0);
    }
    run_free(&r);
    /* The setup call answers 405. */
    if (run_spec(&r,
                 "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"setup\":{\"url\":"
                 "\"http://127.0.0.1:{PORT}/keys\",\"method\":\"PUT\",\"extract\":{"
                 "\"json_pointer\":\"/api_key\",\"header\":\"X-API-Key\"}},\"burst\":{"
                 "\"expect_limit\":10}}",
                 0) == 0) {
        CHECK_STR(r.out.error_code, "setup_failed");
        CHECK(strstr(r.out.error.message, "405") != NULL);
    } else {
        CHECK(0);
    }
    run_free(&r);

    /* An allowlist without the target: nothing is sent. */
    json_decref(control("POST", "/control/reset"));
    {
        struct lt_allow *deny = lt_allow_new();
        json_t *stats;
        char e[128];

        REQUIRE(deny != NULL);
        CHECK(lt_allow_add(deny, "10.9.9.9", e, sizeof(e)) == 0);
        test_allow = deny;
        if (run_spec(&r,
                     "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"},\"burst\":{"
                     "\"expect_limit\":10},\"realistic\":{\"agents\":0}}",
                     0) == 0) {
            CHECK(r.out.error.status == LT_ERR_FORBIDDEN_TARGET);
            CHECK(strstr(r.out.error.message, "allowlist") != NULL);
        } else {
            CHECK(0);
        }
        run_free(&r);
        if (run_spec(&r,
                     "{\"target\":{\"url\":\"http://127.0.0.1:{PORT}/r\"}," SETUP_KEYS
                     ",\"burst\":{\"expect_limit\":10}}",
                     0) == 0) {
            CHECK(r.out.error.status == LT_ERR_FORBIDDEN_TARGET);
            CHECK_STR(r.out.error.field, "/setup/url");
        } else {
            CHECK(0);
        }
        run_free(&r);
        test_allow = NULL;
        lt_allow_free(deny);
        stats = control("GET", "/control/stats");
        CHECK(json_integer_value(json_object_get(stats, "requests")) == 0);
        CHECK(json_integer_value(json_object_get(stats, "keys_issued")) == 0);
        json_decref(stats);
    }
    stop_target();
}

int main(int argc, char **argv)
{
    int known = 0;
    int64_t t0 = lt_mono_ns();

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lt_log_set_quiet(1);
    ops = runner_find("ratelimit", &known);
    if (ops == NULL || ops != &ratelimit_ops) {
        fprintf(stderr, "ratelimit is not registered\n");
        return 1;
    }
    RUN(test_validate_defaults);
    RUN(test_validate_errors);
    RUN(test_targets_and_secrets);
    if (argc < 2) {
        fprintf(stderr, "usage: test_ratelimit PATH_TO_bucket_target\n");
        return 1;
    }
    target_path = argv[1];
    RUN(test_capacity_inferred);
    RUN(test_capacity_estimate);
    RUN(test_refill);
    RUN(test_too_strict);
    RUN(test_never_limits);
    RUN(test_5xx_are_errors);
    RUN(test_identities);
    RUN(test_concurrent);
    RUN(test_shared_identity);
    RUN(test_cancel);
    RUN(test_failures);
    stop_target();
    curl_global_cleanup();
    fprintf(stderr, "test_ratelimit took %.1f s\n", (double)(lt_mono_ns() - t0) / 1e9);
    return harness_report();
}
