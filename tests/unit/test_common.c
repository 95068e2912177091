/* Unit tests of common/: the strict JSON field readers, pointers, ids and time strings. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lt_allow.h"
#include "lt_json.h"
#include "lt_sha256.h"
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

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_vectors(void)
{
    unsigned char d[LT_SHA256_LEN];
    char h[2 * LT_SHA256_LEN + 1];
    unsigned char key[20];
    struct lt_sha256 c;
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

    lt_sha256("", 0, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    lt_sha256("abc", 3, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    lt_sha256(two, strlen(two), d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Fed in uneven pieces, the digest is the same. */
    lt_sha256_init(&c);
    lt_sha256_update(&c, two, 5);
    lt_sha256_update(&c, two + 5, 50);
    lt_sha256_update(&c, two + 55, strlen(two) - 55);
    lt_sha256_final(&c, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* RFC 4231 test case 1. */
    memset(key, 0x0b, sizeof(key));
    lt_hmac_sha256(key, sizeof(key), "Hi There", 8, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK(lt_ct_equal("abcd", "abcd", 4) == 1);
    CHECK(lt_ct_equal("abcd", "abce", 4) == 0);
}

static int v4_allowed(const struct lt_allow *a, const char *ip, int port, int name_allowed)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    s.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &s.sin_addr);
    return lt_allow_addr(a, (struct sockaddr *)&s, name_allowed);
}

static int v6_allowed(const struct lt_allow *a, const char *ip, int port, int name_allowed)
{
    struct sockaddr_in6 s;
    memset(&s, 0, sizeof(s));
    s.sin6_family = AF_INET6;
    s.sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &s.sin6_addr);
    return lt_allow_addr(a, (struct sockaddr *)&s, name_allowed);
}

static void test_allowlist_default_is_loopback(void)
{
    struct lt_allow *a = lt_allow_new_default();

    REQUIRE(a != NULL);
    CHECK(lt_allow_host(a, "127.0.0.1", 80));
    CHECK(lt_allow_host(a, "127.8.9.10", 8080));
    CHECK(lt_allow_host(a, "::1", 80));
    CHECK(lt_allow_host(a, "localhost", 80));
    CHECK(lt_allow_host(a, "LOCALHOST.", 80));
    CHECK(!lt_allow_host(a, "10.0.0.1", 80));
    CHECK(!lt_allow_host(a, "169.254.169.254", 80));
    CHECK(!lt_allow_host(a, "example.com", 80));
    CHECK(!lt_allow_host(a, "localhost.example.com", 80));
    CHECK(!lt_allow_host(a, "::ffff:127.0.0.1", 80));
    CHECK(!lt_allow_host(a, "::ffff:169.254.169.254", 80));
    CHECK(!lt_allow_host(a, "fd00:ec2::254", 80));
    /* Connect-time: a name on the list may reach ordinary addresses, never the denied ones. */
    CHECK(v4_allowed(a, "127.0.0.1", 80, 0));
    CHECK(!v4_allowed(a, "10.0.0.1", 80, 0));
    CHECK(v4_allowed(a, "10.0.0.1", 80, 1));
    CHECK(!v4_allowed(a, "169.254.169.254", 80, 1));
    CHECK(!v4_allowed(a, "0.0.0.0", 80, 1));
    CHECK(v6_allowed(a, "::1", 80, 0));
    CHECK(!v6_allowed(a, "fe80::1", 80, 1));
    CHECK(!v6_allowed(a, "fd00:ec2::254", 80, 1));
    CHECK(!v6_allowed(a, "::ffff:169.254.169.254", 80, 1));
    CHECK(!v6_allowed(a, "::ffff:10.0.0.1", 80, 1));
    CHECK(!v6_allowed(a, "64:ff9b::a00:1", 80, 1));
    CHECK(!v6_allowed(a, "2002:a00:1::1", 80, 1));
    /* "localhost" (and names below it) may reach loopback only, wherever it resolves. */
    CHECK(lt_allow_name_matched(a, "localhost", 80) == LT_ALLOW_NAME_LOOPBACK);
    CHECK(lt_allow_name_matched(a, "LocalHost.", 80) == LT_ALLOW_NAME_LOOPBACK);
    CHECK(v4_allowed(a, "127.0.0.1", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(v4_allowed(a, "127.3.2.1", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(v6_allowed(a, "::1", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(!v4_allowed(a, "10.0.0.1", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(!v4_allowed(a, "169.254.169.254", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(!v6_allowed(a, "2001:db8::1", 80, LT_ALLOW_NAME_LOOPBACK));
    CHECK(!v6_allowed(a, "::ffff:127.0.0.1", 80, LT_ALLOW_NAME_LOOPBACK));
    lt_allow_free(a);
}

static void test_allowlist_entries(void)
{
    struct lt_allow *a = lt_allow_new();
    char err[200];

    REQUIRE(a != NULL);
    CHECK(lt_allow_add(a, "api.internal:8443", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "*.svc.example", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "10.20.0.0/16", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "[2001:db8::1]:9000", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "169.254.169.254", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "10.0.0.0/33", err, sizeof(err)) != 0);
    CHECK(strstr(err, "10.0.0.0/33") != NULL);
    CHECK(lt_allow_add(a, "bad host!", err, sizeof(err)) != 0);
    CHECK(lt_allow_add(a, "host:0", err, sizeof(err)) != 0);
    CHECK(lt_allow_add(a, "host:99999", err, sizeof(err)) != 0);
    CHECK(lt_allow_count(a) == 5);
    CHECK(lt_allow_host(a, "api.internal", 8443));
    CHECK(!lt_allow_host(a, "api.internal", 8080));
    CHECK(lt_allow_host(a, "a.svc.example", 80));
    CHECK(lt_allow_host(a, "a.b.svc.example", 80));
    CHECK(!lt_allow_host(a, "svc.example", 80));
    CHECK(!lt_allow_host(a, "evilsvc.example", 80));
    CHECK(lt_allow_host(a, "10.20.3.4", 80));
    CHECK(!lt_allow_host(a, "10.21.3.4", 80));
    CHECK(lt_allow_host(a, "2001:db8::1", 9000));
    CHECK(!lt_allow_host(a, "2001:db8::1", 9001));
    /* Explicitly listed, the metadata address is reachable; nothing else link-local is. */
    CHECK(lt_allow_host(a, "169.254.169.254", 80));
    CHECK(!lt_allow_host(a, "169.254.1.1", 80));
    CHECK(!lt_allow_host(a, "127.0.0.1", 80));
    CHECK(lt_allow_name_matched(a, "api.internal", 8443) == 1);
    CHECK(lt_allow_name_matched(a, "10.20.3.4", 80) == 0);
    lt_allow_free(a);
    /* An operator's "localhost" entry is loopback-only too; *.localhost names as well. */
    a = lt_allow_new();
    REQUIRE(a != NULL);
    CHECK(lt_allow_add(a, "localhost:8080", err, sizeof(err)) == 0);
    CHECK(lt_allow_add(a, "*.localhost", err, sizeof(err)) == 0);
    CHECK(lt_allow_name_matched(a, "localhost", 8080) == LT_ALLOW_NAME_LOOPBACK);
    CHECK(lt_allow_name_matched(a, "app.localhost", 80) == LT_ALLOW_NAME_LOOPBACK);
    CHECK(v4_allowed(a, "127.0.0.1", 8080, LT_ALLOW_NAME_LOOPBACK));
    CHECK(!v4_allowed(a, "10.0.0.1", 8080, LT_ALLOW_NAME_LOOPBACK));
    lt_allow_free(a);
}

int main(void)
{
    lt_log_set_quiet(1);
    RUN(test_pointer_escaping);
    RUN(test_int_reader);
    RUN(test_number_bool_string_enum);
    RUN(test_object_and_keys);
    RUN(test_ids_and_times);
    RUN(test_sha256_vectors);
    RUN(test_allowlist_default_is_loopback);
    RUN(test_allowlist_entries);
    return harness_report();
}
