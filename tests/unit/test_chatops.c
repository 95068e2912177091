/* Unit tests of the pure parts of chat-ops: the form parser, the Slack signature check, the
 * command grammar (service/slack.c), and the notify member and payloads (service/notify.c). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "lt_sha256.h"
#include "notify.h"
#include "slack.h"

static void test_form_decoding(void)
{
    struct slack_form f;
    struct lt_error err;
    int n = 0;
    const char body[] = "a=1&&text=run+p+x%3D%22a+b%22&empty=&flag&a=2&u=caf%C3%A9";

    REQUIRE(slack_form_parse(body, strlen(body), &f, &err) == LT_OK);
    CHECK(f.n == 6);
    CHECK_STR(slack_form_get(&f, "text", &n), "run p x=\"a b\"");
    CHECK(n == 1);
    CHECK_STR(slack_form_get(&f, "a", &n), "1");
    CHECK(n == 2);
    CHECK_STR(slack_form_get(&f, "empty", NULL), "");
    CHECK_STR(slack_form_get(&f, "flag", NULL), "");
    CHECK_STR(slack_form_get(&f, "u", NULL), "caf\xc3\xa9");
    CHECK(slack_form_get(&f, "missing", &n) == NULL && n == 0);
    slack_form_clear(&f);

    /* The body need not be NUL-terminated: only len bytes count. */
    REQUIRE(slack_form_parse("text=hi&x=IGNORED", 7, &f, &err) == LT_OK);
    CHECK(f.n == 1);
    CHECK_STR(slack_form_get(&f, "text", NULL), "hi");
    slack_form_clear(&f);
}

static void test_form_refusals(void)
{
    static const char *const bad[] = {
        "text=%zz",    "text=%4",        "text=a%00b",           "=value",      "%ff=1",
        "text=%c3%28", "text=%ed%a0%80", "text=%f8%88%80%80%80", "text=%c0%af", NULL};
    struct slack_form f;
    struct lt_error err;
    char big[SLACK_FORM_MAX_BYTES + 2];

    for (const char *const *b = bad; *b; b++) {
        memset(&err, 0, sizeof(err));
        CHECK(slack_form_parse(*b, strlen(*b), &f, &err) == LT_ERR_INVALID_PARAM);
        CHECK(f.n == 0 && f.buf == NULL);
    }
    memset(big, 'a', sizeof(big));
    CHECK(slack_form_parse(big, sizeof(big), &f, &err) == LT_ERR_PAYLOAD_TOO_LARGE);
    /* 65 pairs: one too many. */
    char many[65 * 4 + 1] = "";
    for (int i = 0; i < 65; i++)
        strcat(many, "a=1&");
    CHECK(slack_form_parse(many, strlen(many), &f, &err) == LT_ERR_INVALID_PARAM);
    CHECK(slack_form_parse(many, 64 * 4, &f, &err) == LT_OK && f.n == 64);
    slack_form_clear(&f);
}

static void sign(const char *secret, const char *ts, const char *body, char out[68])
{
    char msg[512];
    unsigned char mac[LT_SHA256_LEN];

    snprintf(msg, sizeof(msg), "v0:%s:%s", ts, body);
    lt_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac);
    strcpy(out, "v0=");
    for (int i = 0; i < LT_SHA256_LEN; i++)
        sprintf(out + 3 + 2 * i, "%02x", mac[i]);
}

static void test_signature(void)
{
    /* A signature computed by another implementation (Python's hmac module) for a payload
     * shaped like Slack's. */
    const char *secret = "8f742231b10e8888abcd99yyyzzz85a5";
    const char *body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
                       "channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name="
                       "roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2F"
                       "hooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZR"
                       "skXaIFfu&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b"
                       "6703c";
    const char *want = "v0=5a4566b3b0a38bfc124b2e0f870ea99b5ea442fe394c9503eeace330eb1c73b9";
    int64_t now = 1531420618;
    char sig[68];

    CHECK(slack_verify(secret, strlen(secret), "1531420618", want, body, strlen(body), now) ==
          SLACK_SIG_OK);
    CHECK(slack_verify(secret, strlen(secret), "1531420618", want, body, strlen(body) - 1, now) ==
          SLACK_SIG_MISMATCH);
    CHECK(slack_verify("other", 5, "1531420618", want, body, strlen(body), now) ==
          SLACK_SIG_MISMATCH);
    CHECK(slack_verify(secret, strlen(secret), "1531420618", want, body, strlen(body), now + 301) ==
          SLACK_SIG_STALE);
    CHECK(slack_verify(secret, strlen(secret), "1531420618", want, body, strlen(body), now - 301) ==
          SLACK_SIG_STALE);
    CHECK(slack_verify(secret, strlen(secret), "1531420618", want, body, strlen(body), now + 300) ==
          SLACK_SIG_OK);
    CHECK(slack_verify(secret, 5, NULL, want, "", 0, now) == SLACK_SIG_MISSING);
    CHECK(slack_verify(secret, 5, "1", "", "", 0, now) == SLACK_SIG_MISSING);
    CHECK(slack_verify(secret, 5, "-1", want, "", 0, now) == SLACK_SIG_BAD_TIMESTAMP);
    CHECK(slack_verify(secret, 5, "1531420618 ", want, "", 0, now) == SLACK_SIG_BAD_TIMESTAMP);
    CHECK(slack_verify(secret, 5, "99999999999999999999", want, "", 0, now) ==
          SLACK_SIG_BAD_TIMESTAMP);
    sign("s3cret", "1700000000", "text=help", sig);
    CHECK(slack_verify("s3cret", 6, "1700000000", sig, "text=help", 9, 1700000000) == SLACK_SIG_OK);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    CHECK(slack_verify("s3cret", 6, "1700000000", sig, "text=help", 9, 1700000000) ==
          SLACK_SIG_MISMATCH);
    sig[70 - 4] = '\0';
    CHECK(slack_verify("s3cret", 6, "1700000000", sig, "text=help", 9, 1700000000) ==
          SLACK_SIG_MISMATCH);
}

static void test_grammar(void)
{
    struct slack_command c;

    slack_command_parse("", &c);
    CHECK(c.verb == SLACK_HELP && c.error[0] == '\0');
    slack_command_clear(&c);
    slack_command_parse("  HELP ", &c);
    CHECK(c.verb == SLACK_HELP && c.error[0] == '\0');
    slack_command_clear(&c);
    slack_command_parse("status r01a23d65513d314d4db2", &c);
    CHECK(c.verb == SLACK_STATUS);
    CHECK_STR(c.arg, "r01a23d65513d314d4db2");
    slack_command_clear(&c);
    slack_command_parse("cancel\tr1", &c);
    CHECK(c.verb == SLACK_CANCEL);
    slack_command_clear(&c);
    slack_command_parse("last checkout.v2", &c);
    CHECK(c.verb == SLACK_LAST);
    CHECK_STR(c.arg, "checkout.v2");
    slack_command_clear(&c);

    slack_command_parse("run checkout load.users=50 load.model=closed name=\"a \\\"b\\\" c\" "
                        "target.headers={\"X-A\":\"1\"} thresholds.p99_ms=null",
                        &c);
    REQUIRE(c.verb == SLACK_RUN);
    CHECK_STR(c.arg, "checkout");
    json_t *want = json_loads("{\"load\":{\"users\":50,\"model\":\"closed\"},\"name\":\"a "
                              "\\\"b\\\" c\",\"target\":{\"headers\":{\"X-A\":\"1\"}},"
                              "\"thresholds\":{\"p99_ms\":null}}",
                              0, NULL);
    CHECK(want && json_equal(want, c.overrides));
    json_decref(want);
    slack_command_clear(&c);

    static const char *const bad[] = {"deploy",
                                      "run",
                                      "status",
                                      "status a/b",
                                      "status r1 r2",
                                      "run p x",
                                      "run p =1",
                                      "run p a=1 a=2",
                                      "run p a=1 a.b=2",
                                      "run p .a=1",
                                      "run p a..b=1",
                                      "run p a.=1",
                                      "run p a=\"open",
                                      "run p a.b.c.d.e.f.g.h.i=1",
                                      "last p q",
                                      "run bad/name",
                                      NULL};
    for (const char *const *b = bad; *b; b++) {
        slack_command_parse(*b, &c);
        CHECK(c.verb == SLACK_HELP && c.error[0] != '\0' && c.overrides == NULL);
        if (c.verb != SLACK_HELP || !c.error[0])
            fprintf(stderr, "  accepted: %s\n", *b);
        slack_command_clear(&c);
    }
    /* 32 settings pass, 33 do not. */
    char text[1024] = "run p";
    for (int i = 0; i < 33; i++)
        sprintf(text + strlen(text), " k%d=%d", i, i);
    slack_command_parse(text, &c);
    CHECK(c.verb == SLACK_HELP && c.error[0]);
    slack_command_clear(&c);
    *strrchr(text, ' ') = '\0';
    slack_command_parse(text, &c);
    CHECK(c.verb == SLACK_RUN && json_object_size(c.overrides) == 32);
    slack_command_clear(&c);
}

static void test_notify_member(void)
{
    struct lt_error err;
    struct notify_target t;
    json_t *n = json_pack("{s:s}", "webhook_url", "https://u:pw@hooks.example/x/y?token=abc");

    REQUIRE(notify_validate(n, &err) == LT_OK);
    CHECK_STR(json_string_value(json_object_get(n, "format")), "json");
    CHECK(json_array_size(json_object_get(n, "events")) == 1);
    CHECK(notify_target_from_spec(n, &t) == 0 && t.events == NOTIFY_EVENT_FINISHED &&
          t.format == NOTIFY_FORMAT_JSON);
    notify_mask(n);
    const char *m = json_string_value(json_object_get(n, "webhook_url"));
    CHECK(m && strstr(m, "pw") == NULL && strstr(m, "abc") == NULL && strstr(m, "***"));
    json_decref(n);

    n = json_pack("{s:s, s:s, s:[s, s]}", "webhook_url", "http://127.0.0.1/h", "format", "slack",
                  "events", "failed", "error");
    REQUIRE(notify_validate(n, &err) == LT_OK);
    CHECK(notify_target_from_spec(n, &t) == 0 && t.format == NOTIFY_FORMAT_SLACK &&
          t.events == (NOTIFY_EVENT_FAILED | NOTIFY_EVENT_ERROR));
    json_decref(n);

    n = json_pack("{s:s, s:[s, i]}", "webhook_url", "http://127.0.0.1/h", "events", "passed", 1);
    CHECK(notify_validate(n, &err) == LT_ERR_INVALID_SPEC);
    CHECK_STR(err.field, "/notify/events/1");
    json_decref(n);

    char safe[300];
    notify_safe_url("https://u:pw@hooks.example/x/y?token=abc", safe, sizeof(safe));
    CHECK_STR(safe, "https://hooks.example:443");
}

static void test_payloads(void)
{
    struct run_record r;

    memset(&r, 0, sizeof(r));
    strcpy(r.id, "r01a23d65513d314d4db2");
    strcpy(r.kind, "capacity");
    r.name = (char *)"a <b> & c";
    r.status = RUN_FAILED;
    r.finished_at_ms = 1700000000123LL;
    r.verdict_json = (char *)"{\"pass\":false,\"summary\":\"p99 61 ms > 50\",\"checks\":[{\"name\":"
                             "\"p99_ms\",\"op\":\"<\",\"threshold\":50,\"observed\":61,\"pass\":"
                             "false}]}";
    json_t *s = notify_summary(&r);
    CHECK_STR(json_string_value(json_object_get(s, "status")), "failed");
    CHECK_STR(json_string_value(json_object_get(s, "url")), "/v1/runs/r01a23d65513d314d4db2");
    CHECK_STR(json_string_value(json_object_get(s, "finished_at")), "2023-11-14T22:13:20.123Z");
    CHECK(json_is_false(json_object_get(json_object_get(s, "verdict"), "pass")));
    CHECK(json_array_size(json_object_get(json_object_get(s, "verdict"), "checks")) == 1);
    CHECK(json_is_null(json_object_get(s, "error")));
    json_decref(s);

    json_t *m = notify_slack_message(&r, 1);
    const char *text = json_string_value(json_object_get(m, "text"));
    CHECK(text && strstr(text, "a &lt;b&gt; &amp; c") && strstr(text, "p99 61 ms &gt; 50") &&
          strstr(text, "failed"));
    CHECK_STR(json_string_value(json_object_get(m, "response_type")), "in_channel");
    CHECK(json_array_size(json_object_get(m, "blocks")) == 3);
    json_decref(m);
    m = notify_slack_message(&r, 0);
    CHECK(json_object_get(m, "response_type") == NULL);
    json_decref(m);
}

/* 1 when s is valid UTF-8 (no overlong or surrogate checks: enough to see a cut character). */
static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        size_t len = *p < 0x80             ? 1
                     : (*p & 0xe0) == 0xc0 ? 2
                     : (*p & 0xf0) == 0xe0 ? 3
                     : (*p & 0xf8) == 0xf0 ? 4
                                           : 0;
        if (len == 0)
            return 0;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        }
        p += len;
    }
    return 1;
}

static void test_mrkdwn_cut_at_character(void)
{
    /* 2-, 3- and 4-byte characters and escapes: every buffer size gives valid UTF-8. */
    const char *s = "a\xc3\xa9<\xe2\x82\xac&\xf0\x9f\x98\x80z\xc3\xa9\xe2\x82\xac";
    const char *full = "a\xc3\xa9&lt;\xe2\x82\xac&amp;\xf0\x9f\x98\x80z\xc3\xa9\xe2\x82\xac";
    char buf[64];

    for (size_t cap = 1; cap <= sizeof(buf); cap++) {
        buf[0] = '\0';
        notify_mrkdwn_append(buf, cap, s);
        CHECK(strlen(buf) < cap);
        CHECK(utf8_valid(buf));
        if (cap > strlen(full))
            CHECK_STR(buf, full);
        else if (cap >= 4)
            CHECK(strlen(buf) >= 3 && strcmp(buf + strlen(buf) - 3, "\xe2\x80\xa6") == 0);
    }
    /* Appending to a full buffer keeps it valid; an invalid input byte becomes '?'. */
    notify_mrkdwn_append(buf, sizeof(buf), "\xe2\x82\xac\xe2\x82\xac");
    CHECK(utf8_valid(buf));
    buf[0] = '\0';
    notify_mrkdwn_append(buf, sizeof(buf), "x\xff\xc3y");
    CHECK_STR(buf, "x??y");

    /* A 200-character non-ASCII run name and a long error: the message is cut, still valid
     * UTF-8 (json_pack refuses invalid UTF-8: the message was NULL and never sent). The error
     * starts with 0 to 3 ASCII bytes to move the cut across the characters' bytes. */
    char name[200 * 4 + 1] = "", emsg[1600 * 2 + 64];
    struct run_record r;

    for (int i = 0; i < 200; i++)
        strcat(name, "\xf0\x9f\x98\x80");
    memset(&r, 0, sizeof(r));
    strcpy(r.id, "r01a23d65513d314d4db2");
    strcpy(r.kind, "capacity");
    r.name = name;
    r.status = RUN_ERROR;
    r.error_json = emsg;
    for (int shift = 0; shift < 4; shift++) {
        snprintf(emsg, sizeof(emsg), "{\"message\":\"%.*s", shift, "xxx");
        for (int i = 0; i < 1600; i++)
            strcat(emsg, "\xc3\xa9");
        strcat(emsg, "\"}");
        json_t *m = notify_slack_message(&r, 0);
        const char *text = json_string_value(json_object_get(m, "text"));
        REQUIRE(m != NULL && text != NULL);
        CHECK(utf8_valid(text) && strstr(text, "\xf0\x9f\x98\x80") != NULL);
        CHECK(strcmp(text + strlen(text) - 3, "\xe2\x80\xa6") == 0);
        json_decref(m);
    }
}

static void test_secret_load(void)
{
    char out[SLACK_SECRET_MAX + 1], err[256];
    size_t len = 1;
    char path[] = "/tmp/lt-slack-secret-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    CHECK(slack_secret_load("", "", out, sizeof(out), &len, err, sizeof(err)) == 0 && len == 0);
    CHECK(slack_secret_load("", "abc", out, sizeof(out), &len, err, sizeof(err)) == 0 && len == 3);
    fputs("from-file \n", f);
    fclose(f);
    CHECK(slack_secret_load(path, "abc", out, sizeof(out), &len, err, sizeof(err)) == 0 &&
          len == 9 && strcmp(out, "from-file") == 0);
    f = fopen(path, "w");
    fputs(" \n", f);
    fclose(f);
    CHECK(slack_secret_load(path, "", out, sizeof(out), &len, err, sizeof(err)) == -1);
    unlink(path);
    CHECK(slack_secret_load(path, "", out, sizeof(out), &len, err, sizeof(err)) == -1);
}

int main(void)
{
    RUN(test_form_decoding);
    RUN(test_form_refusals);
    RUN(test_signature);
    RUN(test_grammar);
    RUN(test_notify_member);
    RUN(test_payloads);
    RUN(test_mrkdwn_cut_at_character);
    RUN(test_secret_load);
    return harness_report();
}
