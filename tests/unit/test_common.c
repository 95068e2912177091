/* Unit tests of common/: the strict JSON field readers, pointers, ids and time strings. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "lt_json.h"
#include "lt_util.h"

static json_t *parse(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    return v;
}

static void test_pointer_escaping(void)
{
    char buf[64];

    ltj_pointer(buf, sizeof(buf), "", "kind");
    CHECK_STR(buf, "/kind");
    ltj_pointer(buf, sizeof(buf), "/target/headers", "a/b~c");
    CHECK_STR(buf, "/target/headers/a~1b~0c");
}

static void test_int_reader(void)
{
    json_t *o = parse("{\"users\": 20, \"neg\": -1, \"real\": 1.5, \"str\": \"3\"}");
    struct lt_error err;
    int64_t v = 0;

    REQUIRE(o != NULL);
    CHECK(ltj_int(o, "/load", "users", 1, 1, 1, 100, &v, &err) == LT_OK && v == 20);
    CHECK(ltj_int(o, "/load", "neg", 1, 1, 1, 100, &v, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/load/neg");
    CHECK(ltj_int(o, "/load", "real", 1, 1, 1, 100, &v, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/load/real");
    CHECK(ltj_int(o, "/load", "str", 1, 1, 1, 100, &v, &err) == LT_ERR_INVALID_SPEC);
    CHECK(strstr(err.message, "integer") != NULL);
    CHECK(ltj_int(o, "/load", "missing", 1, 1, 1, 100, &v, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/load/missing");
    CHECK(strstr(err.message, "required") != NULL);
    /* An absent optional field gets its default written back. */
    CHECK(ltj_int(o, "/load", "warmup_s", 0, 7, 0, 100, &v, &err) == LT_OK && v == 7);
    CHECK(json_integer_value(json_object_get(o, "warmup_s")) == 7);
    json_decref(o);
}

static void test_number_bool_string_enum(void)
{
    json_t *o = parse("{\"r\": 0.5, \"i\": 2, \"b\": true, \"s\": \"abc\", \"e\": \"closed\", "
                      "\"n\": null, \"x\": \"bogus\"}");
    static const char *const models[] = {"open", "closed", NULL};
    struct lt_error err;
    double d = 0;
    int b = 0, idx = -1, present = 1;
    const char *s = NULL;

    REQUIRE(o != NULL);
    CHECK(ltj_number(o, "", "r", 1, 0, 0, 1, &d, &err) == LT_OK && d == 0.5);
    CHECK(ltj_number(o, "", "i", 1, 0, 0, 10, &d, &err) == LT_OK && d == 2.0);
    CHECK(ltj_number(o, "", "i", 1, 0, 0, 1, &d, &err) == LT_ERR_INVALID_SPEC);
    CHECK(ltj_number(o, "", "s", 1, 0, 0, 1, &d, &err) == LT_ERR_INVALID_SPEC);
    CHECK(ltj_bool(o, "", "b", 1, 0, &b, &err) == LT_OK && b == 1);
    CHECK(ltj_bool(o, "", "s", 1, 0, &b, &err) == LT_ERR_INVALID_SPEC);
    CHECK(ltj_string(o, "", "s", 1, NULL, 1, 10, &s, &err) == LT_OK && strcmp(s, "abc") == 0);
    CHECK(ltj_string(o, "", "s", 1, NULL, 5, 10, &s, &err) == LT_ERR_INVALID_SPEC);
    CHECK(ltj_string(o, "", "absent", 0, NULL, 1, 10, &s, &err) == LT_OK && s == NULL);
    CHECK(json_object_get(o, "absent") == NULL);
    CHECK(ltj_enum(o, "", "e", 1, NULL, models, &idx, &err) == LT_OK && idx == 1);
    CHECK(ltj_enum(o, "", "x", 1, NULL, models, &idx, &err) == LT_ERR_INVALID_SPEC);
    CHECK(strstr(err.message, "open, closed") != NULL);
    CHECK(ltj_enum(o, "", "model", 0, "open", models, &idx, &err) == LT_OK && idx == 0);
    CHECK_STR(json_string_value(json_object_get(o, "model")), "open");
    CHECK(ltj_number_or_null(o, "", "n", 0, 10, &d, &present, &err) == LT_OK && present == 0);
    CHECK(ltj_number_or_null(o, "", "r", 0, 10, &d, &present, &err) == LT_OK && present == 1);
    CHECK(ltj_number_or_null(o, "", "s", 0, 10, &d, &present, &err) == LT_ERR_INVALID_SPEC);
    json_decref(o);
}

static void test_object_and_keys(void)
{
    json_t *o = parse("{\"load\": {\"users\": 1, \"userz\": 2}, \"t\": 3}");
    static const char *const allowed[] = {"users", NULL};
    struct lt_error err;
    json_t *sub = NULL;

    REQUIRE(o != NULL);
    CHECK(ltj_object(o, "", "load", 1, &sub, &err) == LT_OK && json_is_object(sub));
    CHECK(ltj_check_keys(sub, "/load", allowed, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/load/userz");
    CHECK(ltj_object(o, "", "t", 1, &sub, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/t");
    CHECK(ltj_object(o, "", "thresholds", 0, &sub, &err) == LT_OK);
    CHECK(json_is_object(json_object_get(o, "thresholds")));
    json_decref(o);
}

static void test_ids_and_times(void)
{
    char a[LT_ID_SIZE], b[LT_ID_SIZE], t[LT_TIME_SIZE];

    lt_new_run_id(a);
    lt_new_run_id(b);
    CHECK(strlen(a) == LT_ID_LEN && a[0] == 'r');
    CHECK(strcmp(a, b) != 0);
    CHECK(strncmp(a, b, 9) <= 0); /* time prefix: never goes backwards */
    lt_format_time(0, t);
    CHECK_STR(t, "1970-01-01T00:00:00.000Z");
    lt_format_time(1796316140123LL, t);
    CHECK_STR(t, "2026-12-03T16:42:20.123Z");
}

int main(void)
{
    lt_log_set_quiet(1);
    RUN(test_pointer_escaping);
    RUN(test_int_reader);
    RUN(test_number_bool_string_enum);
    RUN(test_object_and_keys);
    RUN(test_ids_and_times);
    return harness_report();
}
