/*
 * Unit tests of the operator's guards: the API rate limiter (service/apilimit.c: buckets,
 * Retry-After, bounded memory, concurrent use), the per-run caps (service/caps.c), the
 * reference-counted allowlist slot (common/lt_allow.c) and token reloads (service/auth.c) while
 * other threads use them. The threaded cases are there for the TSan and ASan builds.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apilimit.h"
#include "auth.h"
#include "caps.h"
#include "harness.h"
#include "lt_allow.h"
#include "lt_util.h"

#define S 1000000000LL

static void key_of(unsigned char key[APILIMIT_KEY_LEN], int n)
{
    memset(key, 0, APILIMIT_KEY_LEN);
    key[0] = 'a';
    memcpy(key + 1, &n, sizeof(n));
}

static void test_apilimit_bucket(void)
{
    struct apilimit *l = apilimit_new(2.0, 5.0, 100);
    unsigned char a[APILIMIT_KEY_LEN], b[APILIMIT_KEY_LEN];
    int ra = 0, ok = 0;
    int64_t t0 = 10 * S;

    REQUIRE(l != NULL);
    key_of(a, 1);
    key_of(b, 2);
    for (int i = 0; i < 5; i++)
        ok += apilimit_take(l, a, t0, &ra);
    CHECK(ok == 5);
    CHECK(apilimit_take(l, a, t0, &ra) == 0);
    CHECK(ra == 1);                           /* one request at 2/s: half a second, rounded up */
    CHECK(apilimit_take(l, b, t0, &ra) == 1); /* another key, its own bucket */
    CHECK(apilimit_take(l, a, t0 + S / 2, &ra) == 1); /* refilled one */
    CHECK(apilimit_take(l, a, t0 + S / 2, &ra) == 0);
    /* a long idle time refills to the burst, not beyond */
    ok = 0;
    for (int i = 0; i < 10; i++)
        ok += apilimit_take(l, a, t0 + 100 * S, &ra);
    CHECK(ok == 5);
    apilimit_free(l);

    /* slow refill: Retry-After is the whole seconds to the next request */
    l = apilimit_new(0.25, 1.0, 10);
    REQUIRE(l != NULL);
    CHECK(apilimit_take(l, a, t0, &ra) == 1);
    CHECK(apilimit_take(l, a, t0, &ra) == 0 && ra == 4);
    CHECK(apilimit_take(l, a, t0 + 3 * S, &ra) == 0 && ra == 1);
    CHECK(apilimit_take(l, a, t0 + 4 * S, &ra) == 1);
    apilimit_free(l);

    CHECK(apilimit_new(0, 1, 1) == NULL);
    CHECK(apilimit_take(NULL, a, t0, &ra) == 1); /* off */
}

static void test_apilimit_bounded(void)
{
    struct apilimit *l = apilimit_new(1.0, 2.0, 8);
    unsigned char k[APILIMIT_KEY_LEN];
    int ra = 0, ok = 0;
    int64_t t0 = 10 * S;

    REQUIRE(l != NULL);
    /* 8 active clients fill the table; the 9th and later share the overflow bucket */
    for (int i = 0; i < 8; i++) {
        key_of(k, i);
        CHECK(apilimit_take(l, k, t0, &ra) == 1);
    }
    CHECK(apilimit_size(l) == 8);
    for (int i = 100; i < 110; i++) {
        key_of(k, i);
        ok += apilimit_take(l, k, t0, &ra);
    }
    CHECK(ok == 2); /* the overflow bucket's burst, shared */
    CHECK(apilimit_size(l) == 8);
    /* once they are idle (refilled) they are swept, and new keys get buckets of their own */
    key_of(k, 200);
    CHECK(apilimit_take(l, k, t0 + 10 * S, &ra) == 1);
    CHECK(apilimit_take(l, k, t0 + 10 * S, &ra) == 1);
    CHECK(apilimit_take(l, k, t0 + 10 * S, &ra) == 0);
    CHECK(apilimit_size(l) == 1);
    apilimit_free(l);
}

struct hammer {
    struct apilimit *l;
    int id;
    atomic_int *allowed;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    unsigned char k[APILIMIT_KEY_LEN];
    int ra;

    for (int i = 0; i < 20000; i++) {
        key_of(k, (h->id * 7 + i) % 64); /* more keys than the table holds */
        if (apilimit_take(h->l, k, lt_mono_ns(), &ra))
            atomic_fetch_add(h->allowed, 1);
    }
    return NULL;
}

static void test_apilimit_threads(void)
{
    struct apilimit *l = apilimit_new(1.0, 10.0, 32);
    pthread_t th[4];
    struct hammer h[4];
    atomic_int allowed;

    REQUIRE(l != NULL);
    atomic_init(&allowed, 0);
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){l, i, &allowed};
        pthread_create(&th[i], NULL, hammer_thread, &h[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK(apilimit_size(l) <= 32);
    /* 32 buckets + the overflow, 10 each, plus what refilled meanwhile (1/s each): far below
     * the 80000 requests sent */
    CHECK(atomic_load(&allowed) >= 10 && atomic_load(&allowed) < 20000);
    apilimit_free(l);
}

static void test_caps(void)
{
    struct caps c = {.max_users = 5,
                     .max_total_rps = 20,
                     .max_duration_s = 10,
                     .max_burst_requests = 300,
                     .max_agents = 2,
                     .max_rows = 1000,
                     .max_generate_connections = 2};
    struct lt_error err;
    json_t *s;

    memset(&err, 0, sizeof(err));
    s = json_pack("{s:{s:i, s:f, s:i, s:i}}", "load", "users", 5, "rate_per_user", 4.0,
                  "duration_s", 10, "warmup_s", 0);
    CHECK(caps_check(&c, "capacity", s, &err) == LT_OK);
    json_object_set_new(json_object_get(s, "load"), "rate_per_user", json_real(4.5));
    CHECK(caps_check(&c, "capacity", s, &err) == LT_ERR_LIMIT_EXCEEDED);
    CHECK_STR(err.field, "/load/rate_per_user");
    CHECK(strstr(err.message, "22.5 req/s") && strstr(err.message, "--max-total-rps 20"));
    json_object_set_new(json_object_get(s, "load"), "rate_per_user", json_real(1));
    json_object_set_new(json_object_get(s, "load"), "warmup_s", json_integer(1));
    CHECK(caps_check(&c, "capacity", s, &err) == LT_ERR_LIMIT_EXCEEDED);
    CHECK_STR(err.field, "/load/duration_s");
    json_decref(s);

    s = json_pack("{s:{s:i}, s:{s:i, s:i, s:f}}", "burst", "max_requests", 300, "realistic",
                  "agents", 0, "windows", 100, "window_s", 3600.0);
    CHECK(caps_check(&c, "ratelimit", s, &err) == LT_OK); /* no agents: no realistic phase */
    json_object_set_new(json_object_get(s, "realistic"), "agents", json_integer(1));
    CHECK(caps_check(&c, "ratelimit", s, &err) == LT_ERR_LIMIT_EXCEEDED);
    CHECK_STR(err.field, "/realistic/windows");
    json_decref(s);

    s = json_pack("{s:i, s:i}", "rows", 1000, "connections", 3);
    CHECK(caps_check(&c, "generate", s, &err) == LT_ERR_LIMIT_EXCEEDED);
    CHECK_STR(err.field, "/connections");
    CHECK(caps_check(&c, "unknown", s, &err) == LT_OK);
    CHECK(caps_check(NULL, "generate", s, &err) == LT_OK);
    json_decref(s);

    json_t *j = caps_json(&c);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "generate"), "max_rows")) == 1000);
    json_decref(j);
}

struct slot_reader {
    struct lt_allow_slot *slot;
    atomic_int *stop;
    long checks;
};

static void *slot_reader_thread(void *arg)
{
    struct slot_reader *r = arg;

    while (!atomic_load(r->stop)) {
        struct lt_allow *a = lt_allow_slot_get(r->slot);
        /* every list put in force allows 127.0.0.1 port 1 */
        if (lt_allow_host(a, "127.0.0.1", 1))
            r->checks++;
        lt_allow_free(a);
    }
    return NULL;
}

static void test_allow_slot(void)
{
    char err[256];
    struct lt_allow *first = lt_allow_new();
    struct lt_allow *held;
    struct lt_allow_slot *slot;
    pthread_t th[3];
    struct slot_reader r[3];
    atomic_int stop;

    REQUIRE(first != NULL);
    CHECK(lt_allow_add(first, "127.0.0.1:1", err, sizeof(err)) == 0);
    slot = lt_allow_slot_new(first);
    REQUIRE(slot != NULL);
    held = lt_allow_slot_get(slot); /* a run that started with the first list */
    atomic_init(&stop, 0);
    for (int i = 0; i < 3; i++) {
        r[i] = (struct slot_reader){slot, &stop, 0};
        pthread_create(&th[i], NULL, slot_reader_thread, &r[i]);
    }
    for (int round = 0; round < 2000; round++) {
        struct lt_allow *next = lt_allow_new();
        char e[32];
        snprintf(e, sizeof(e), "127.0.0.1:%d", 1 + round % 2);
        lt_allow_add(next, "127.0.0.1:1", err, sizeof(err));
        lt_allow_add(next, e, err, sizeof(err));
        lt_allow_slot_set(slot, next);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* the run's list is still the first one (one entry), whatever the reloads did */
    CHECK(lt_allow_count(held) == 1);
    CHECK(lt_allow_host(held, "127.0.0.1", 1) && !lt_allow_host(held, "127.0.0.1", 2));
    lt_allow_free(held);
    held = lt_allow_slot_get(slot);
    CHECK(lt_allow_count(held) == 2);
    lt_allow_free(held);
    lt_allow_slot_free(slot);
}

static void test_allow_text(void)
{
    char err[256];
    struct lt_allow *a = lt_allow_new();

    REQUIRE(a != NULL);
    CHECK(lt_allow_add_text(a,
                            "# targets\n127.0.0.1:8080, localhost\n\n\t*.x.example:443 # t#2\r\n",
                            "f", err, sizeof(err)) == 0);
    CHECK(lt_allow_count(a) == 3);
    CHECK(lt_allow_host(a, "127.0.0.1", 8080) && !lt_allow_host(a, "127.0.0.1", 8081));
    CHECK(lt_allow_host(a, "api.x.example", 443));
    CHECK(lt_allow_add_text(a, "", "f", err, sizeof(err)) == 0);
    CHECK(lt_allow_add_text(a, "10.0.0.0/8\n# ok\nnot/a/valid entry\n", "list.txt", err,
                            sizeof(err)) == -1);
    CHECK(strncmp(err, "list.txt:3: ", 12) == 0);
    lt_allow_free(a);
}

struct auth_reader {
    struct auth *a;
    atomic_int *stop;
    long ok, bad;
};

static void *auth_reader_thread(void *arg)
{
    struct auth_reader *r = arg;

    while (!atomic_load(r->stop)) {
        /* the constant token is in every file the test writes */
        if (auth_check(r->a, "Bearer constant-token-0123456789", AUTH_WRITE) == AUTH_OK)
            r->ok++;
        else
            r->bad++;
    }
    return NULL;
}

static int write_tokens(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_auth_reload(void)
{
    char path[] = "/tmp/lt-test-tokens-XXXXXX";
    char err[256];
    int fd = mkstemp(path);
    struct auth *a;
    pthread_t th[2];
    struct auth_reader r[2];
    atomic_int stop;

    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(write_tokens(path, "write constant-token-0123456789\nread old-token-0123456789ab\n") ==
            0);
    a = auth_load(path, err, sizeof(err));
    REQUIRE(a != NULL);
    CHECK(auth_count(a) == 2);
    atomic_init(&stop, 0);
    for (int i = 0; i < 2; i++) {
        r[i] = (struct auth_reader){a, &stop, 0, 0};
        pthread_create(&th[i], NULL, auth_reader_thread, &r[i]);
    }
    for (int round = 0; round < 200; round++) {
        write_tokens(path, round % 2
                               ? "write constant-token-0123456789\n"
                               : "write constant-token-0123456789\nread new-token-01234567\n");
        CHECK(auth_reload(a, path, err, sizeof(err)) == 0);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(r[i].bad == 0);
    }
    CHECK(auth_count(a) == 1);
    CHECK(auth_check(a, "Bearer old-token-0123456789ab", AUTH_READ) == AUTH_BAD);
    /* a broken file changes nothing and says why without the token */
    write_tokens(path, "write tiny\n");
    CHECK(auth_reload(a, path, err, sizeof(err)) == -1);
    CHECK(strstr(err, "16 to 512") != NULL && strstr(err, "tiny") == NULL);
    CHECK(auth_check(a, "Bearer constant-token-0123456789", AUTH_WRITE) == AUTH_OK);
    unlink(path);
    CHECK(auth_reload(a, path, err, sizeof(err)) == -1);
    CHECK(auth_count(a) == 1);
    auth_free(a);
}

int main(void)
{
    lt_log_set_quiet(1);
    RUN(test_apilimit_bucket);
    RUN(test_apilimit_bounded);
    RUN(test_apilimit_threads);
    RUN(test_caps);
    RUN(test_allow_slot);
    RUN(test_allow_text);
    RUN(test_auth_reload);
    return harness_report();
}
