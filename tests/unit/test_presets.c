/*
 * Unit tests of the JSON Merge Patch of preset overrides (service/presets.c): the examples of
 * RFC 7386 appendix A, in-place merging, and the depth cut-off.
 */
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "harness.h"
#include "presets.h"

/* Applies patch to target (both JSON text) and compares with want. */
static int merged_is(const char *target, const char *patch, const char *want)
{
    json_t *t = json_loads(target, JSON_DECODE_ANY, NULL);
    json_t *p = json_loads(patch, JSON_DECODE_ANY, NULL);
    json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
    json_t *r;
    int ok;

    if (t == NULL || p == NULL || w == NULL) {
        fprintf(stderr, "bad test JSON: %s | %s | %s\n", target, patch, want);
        json_decref(t);
        json_decref(p);
        json_decref(w);
        return 0;
    }
    r = presets_merge_patch(t, p); /* takes t */
    ok = r != NULL && json_equal(r, w);
    if (!ok) {
        char *got = r ? json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        fprintf(stderr, "merge(%s, %s) = %s, want %s\n", target, patch, got ? got : "NULL", want);
        free(got);
    }
    json_decref(r);
    json_decref(p);
    json_decref(w);
    return ok;
}

static void test_rfc7386_examples(void)
{
    /* RFC 7386, appendix A. */
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(merged_is(cases[i][0], cases[i][1], cases[i][2]));
}

static void test_preset_overrides(void)
{
    /* What `loadtest run --preset X --set load.users=50` sends, on a stored capacity spec. */
    CHECK(merged_is("{\"kind\":\"capacity\",\"target\":{\"url\":\"http://h/\",\"headers\":"
                    "{\"A\":\"1\",\"B\":\"2\"}},\"load\":{\"users\":2,\"duration_s\":5},"
                    "\"thresholds\":{\"p99_ms\":50,\"max_error_rate\":0.01}}",
                    "{\"load\":{\"users\":50},\"thresholds\":{\"p99_ms\":null},"
                    "\"target\":{\"headers\":{\"B\":null,\"C\":\"3\"}}}",
                    "{\"kind\":\"capacity\",\"target\":{\"url\":\"http://h/\",\"headers\":"
                    "{\"A\":\"1\",\"C\":\"3\"}},\"load\":{\"users\":50,\"duration_s\":5},"
                    "\"thresholds\":{\"max_error_rate\":0.01}}"));
    /* An empty patch changes nothing. */
    CHECK(merged_is("{\"a\":{\"b\":1}}", "{}", "{\"a\":{\"b\":1}}"));
}

static void test_patch_not_aliased(void)
{
    /* The result owns its values: changing it later never changes the patch. */
    json_t *patch = json_loads("{\"a\":{\"b\":[1,2]}}", 0, NULL);
    json_t *r = presets_merge_patch(json_object(), patch);

    REQUIRE(r != NULL && patch != NULL);
    json_array_append_new(json_object_get(json_object_get(r, "a"), "b"), json_integer(3));
    CHECK(json_array_size(json_object_get(json_object_get(patch, "a"), "b")) == 2);
    json_decref(r);
    json_decref(patch);
}

static void test_deep_patch(void)
{
    /* 200 levels: past the 64-level cut-off the patch's value replaces the target's, so the
     * result still equals the patch with its nulls removed. */
    json_t *patch = json_object(), *want = json_object(), *p = patch, *w = want, *r;

    for (int i = 0; i < 200; i++) {
        json_t *np = json_object(), *nw = json_object();
        json_object_set_new(p, "k", np);
        json_object_set_new(w, "k", nw);
        p = np;
        w = nw;
    }
    json_object_set_new(p, "leaf", json_integer(1));
    json_object_set_new(w, "leaf", json_integer(1));
    r = presets_merge_patch(json_object(), patch);
    CHECK(r != NULL && json_equal(r, want));
    json_decref(r);
    json_decref(patch);
    json_decref(want);
}

/* Results whose difference overflows (or whose base is tiny) compare with null delta and
 * delta_pct rather than failing as "out of memory" (json_real refuses non-finite values). */
static void test_compare_non_finite(void)
{
    struct run_record run, base;
    struct lt_error err;
    json_t *out = NULL, *m;

    memset(&run, 0, sizeof(run));
    memset(&base, 0, sizeof(base));
    memset(&err, 0, sizeof(err));
    strcpy(run.id, "r01a23d65513d314d4db2");
    strcpy(base.id, "r01a23d62f33866e25d5f");
    strcpy(run.kind, "capacity");
    strcpy(base.kind, "capacity");
    run.status = base.status = RUN_PASSED;
    run.result_json = (char *)"{\"latency_ms\":{\"p99\":1e308,\"p50\":1},\"achieved_rps\":1}";
    base.result_json =
        (char *)"{\"latency_ms\":{\"p99\":-1e308,\"p50\":5e-324},\"achieved_rps\":1}";
    REQUIRE(compare_runs(&run, &base, 10, &out, &err) == LT_OK);
    m = json_array_get(json_object_get(out, "metrics"), 2); /* latency_ms.p99 */
    CHECK_STR(json_string_value(json_object_get(m, "name")), "latency_ms.p99");
    CHECK(json_is_null(json_object_get(m, "delta")) &&
          json_is_null(json_object_get(m, "delta_pct")));
    m = json_array_get(json_object_get(out, "metrics"), 0); /* latency_ms.p50: 1 vs 5e-324 */
    CHECK(json_is_number(json_object_get(m, "delta")) &&
          json_is_null(json_object_get(m, "delta_pct")));
    CHECK(json_is_true(json_object_get(m, "regressed")));
    json_decref(out);
}

int main(void)
{
    RUN(test_rfc7386_examples);
    RUN(test_preset_overrides);
    RUN(test_patch_not_aliased);
    RUN(test_deep_patch);
    RUN(test_compare_non_finite);
    return harness_report();
}
