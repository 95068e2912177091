/*
 * Unit tests of the JSON Merge Patch of preset overrides (service/presets.c): the examples of
 * RFC 7386 appendix A, in-place merging, and the depth cut-off.
 */
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    RUN(test_rfc7386_examples);
    RUN(test_preset_overrides);
    RUN(test_patch_not_aliased);
    RUN(test_deep_patch);
    return harness_report();
}
