/*
 * test_hdr: unit tests for the latency histogram (runners/hdr.c). Percentiles are compared with
 * the exact answer from a sorted copy of the same samples (uniform, exponential, bimodal and
 * log-uniform over the whole range); min, max and mean must be exact; merging must equal
 * recording everything into one histogram. The last test times hdr_record and prints ns/call
 * (informational only; it never fails).
 */
#define _POSIX_C_SOURCE 200809L

#include "harness.h"
#include "hdr.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Deterministic samples: splitmix64. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Percentiles in thousandths of a percent, so the exact rank is integer arithmetic. */
static const int64_t pct_milli[] = {1,     100,   1000,  10000, 25000, 50000, 75000,
                                    90000, 95000, 99000, 99900, 99990, 99999, 100000};

#define N_SAMPLES 500000

/* Records samples[0..n) and checks every percentile in pct_milli against the sorted truth,
 * then min, max, mean and count. Sorts samples in place. */
static void check_against_truth(int64_t *samples, int64_t n)
{
    struct hdr *h = hdr_new();
    int64_t sum = 0;

    REQUIRE(h != NULL);
    for (int64_t i = 0; i < n; i++) {
        hdr_record(h, samples[i]);
        sum += samples[i];
    }
    qsort(samples, (size_t)n, sizeof(*samples), cmp_i64);

    CHECK(hdr_count(h) == n);
    CHECK(hdr_clamped(h) == 0);
    CHECK(hdr_min(h) == samples[0]);
    CHECK(hdr_max(h) == samples[n - 1]);
    CHECK(hdr_mean(h) == (double)sum / (double)n);

    for (size_t k = 0; k < sizeof(pct_milli) / sizeof(pct_milli[0]); k++) {
        int64_t rank = (pct_milli[k] * n + 99999) / 100000; /* ceil(pct% of n) */
        int64_t truth = samples[(rank < 1 ? 1 : rank) - 1];
        int64_t got = hdr_percentile(h, (double)pct_milli[k] / 1000.0);

        CHECK(got >= truth);
        CHECK((double)(got - truth) <= (double)truth * 0.001);
        if (got < truth || (double)(got - truth) > (double)truth * 0.001)
            fprintf(stderr, "  pct=%.3f truth=%lld got=%lld\n", (double)pct_milli[k] / 1000.0,
                    (long long)truth, (long long)got);
    }
    hdr_free(h);
}

static void test_uniform(void)
{
    int64_t *s = malloc(N_SAMPLES * sizeof(*s));

    REQUIRE(s != NULL);
    rng_state = 1;
    for (int i = 0; i < N_SAMPLES; i++)
        s[i] = (int64_t)(rng_next() % 10000000); /* 0..10 ms */
    check_against_truth(s, N_SAMPLES);
    free(s);
}

static void test_exponential(void)
{
    int64_t *s = malloc(N_SAMPLES * sizeof(*s));

    REQUIRE(s != NULL);
    rng_state = 2;
    for (int i = 0; i < N_SAMPLES; i++)
        s[i] = (int64_t)(-log(1.0 - rng_unit()) * 2e6); /* mean 2 ms */
    check_against_truth(s, N_SAMPLES);
    free(s);
}

static void test_bimodal(void)
{
    int64_t *s = malloc(N_SAMPLES * sizeof(*s));

    REQUIRE(s != NULL);
    rng_state = 3;
    for (int i = 0; i < N_SAMPLES; i++) {
        if (rng_next() % 10 < 8)
            s[i] = 900000 + (int64_t)(rng_next() % 200000); /* 0.9..1.1 ms */
        else
            s[i] = 240000000 + (int64_t)(rng_next() % 20000000); /* 240..260 ms */
    }
    check_against_truth(s, N_SAMPLES);
    free(s);
}

static void test_log_uniform_full_range(void)
{
    int64_t *s = malloc(N_SAMPLES * sizeof(*s));

    REQUIRE(s != NULL);
    rng_state = 4;
    for (int i = 0; i < N_SAMPLES; i++)
        s[i] = (int64_t)exp2(rng_unit() * 42.0); /* 1 ns .. 2^42 ns */
    check_against_truth(s, N_SAMPLES);
    free(s);
}

/* The upper edge of the bucket v falls in, read back through the public API: with v and the
 * ceiling recorded, the 50th percentile (rank 1) is v's bucket edge, uncapped. */
static int64_t edge_of(struct hdr *h, int64_t v)
{
    hdr_reset(h);
    hdr_record(h, v);
    hdr_record(h, HDR_MAX_NS);
    return hdr_percentile(h, 50.0);
}

static void check_edge(struct hdr *h, int64_t v)
{
    int64_t e = edge_of(h, v);

    CHECK(e >= v);
    CHECK((e - v) * 1024 < v || e == v);
    CHECK(edge_of(h, e) == e); /* the edge is in its own bucket */
    if (e < HDR_MAX_NS)
        CHECK(edge_of(h, e + 1) > e); /* and is the last value in it */
}

static void test_bucket_edges(void)
{
    struct hdr *h = hdr_new();

    REQUIRE(h != NULL);
    for (int64_t v = 0; v <= 2048; v++)
        CHECK(edge_of(h, v) == v); /* exact up to 2^11 */
    for (int b = 11; b <= 42; b++) {
        for (int64_t d = -3; d <= 3; d++) {
            int64_t v = (1LL << b) + d;
            if (v <= HDR_MAX_NS)
                check_edge(h, v);
        }
    }
    rng_state = 5;
    for (int i = 0; i < 3000; i++)
        check_edge(h, (int64_t)(rng_next() % (uint64_t)HDR_MAX_NS) + 1);
    hdr_free(h);
}

static void test_boundaries(void)
{
    struct hdr *h = hdr_new();
    json_t *j;

    REQUIRE(h != NULL);
    hdr_record(h, 0);
    CHECK(hdr_min(h) == 0 && hdr_max(h) == 0 && hdr_percentile(h, 100) == 0);
    CHECK(hdr_percentile(h, 50) == 0 && hdr_mean(h) == 0.0 && hdr_count(h) == 1);

    hdr_reset(h);
    hdr_record(h, 1);
    CHECK(hdr_min(h) == 1 && hdr_max(h) == 1 && hdr_percentile(h, 1) == 1);
    CHECK(hdr_mean(h) == 1.0);

    /* 2047 and 2048 are exact; 2049 shares (2048, 2050] with 2050. */
    hdr_reset(h);
    hdr_record(h, 2047);
    hdr_record(h, 2048);
    hdr_record(h, 2049);
    hdr_record(h, 2050);
    hdr_record(h, 2051);
    j = hdr_to_json(h, 100);
    REQUIRE(j != NULL);
    CHECK(json_array_size(j) == 4);
    CHECK(json_integer_value(json_array_get(json_array_get(j, 0), 0)) == 2047);
    CHECK(json_integer_value(json_array_get(json_array_get(j, 1), 0)) == 2048);
    CHECK(json_integer_value(json_array_get(json_array_get(j, 2), 0)) == 2050);
    CHECK(json_integer_value(json_array_get(json_array_get(j, 2), 1)) == 2);
    CHECK(json_integer_value(json_array_get(json_array_get(j, 3), 0)) == 2051); /* capped */
    json_decref(j);
    CHECK(hdr_percentile(h, 20) == 2047);
    CHECK(hdr_percentile(h, 40) == 2048);
    CHECK(hdr_percentile(h, 60) == 2050); /* 2049, reported as its bucket's upper edge */
    CHECK(hdr_percentile(h, 80) == 2050);
    CHECK(hdr_percentile(h, 100) == 2051);
    CHECK(hdr_min(h) == 2047 && hdr_max(h) == 2051);
    CHECK(hdr_mean(h) == 2049.0);

    /* Alone, each value is its own percentile: capped at max, floored at min. */
    for (int64_t v = 2045; v <= 2053; v++) {
        hdr_reset(h);
        hdr_record(h, v);
        CHECK(hdr_percentile(h, 50) == v && hdr_percentile(h, 100) == v);
    }
    hdr_free(h);
}

static void test_every_exact_value(void)
{
    struct hdr *h = hdr_new();

    REQUIRE(h != NULL);
    for (int64_t v = 0; v <= 2048; v++)
        hdr_record(h, v);
    /* 2049 values 0..2048: the value with rank r is r - 1. */
    for (int64_t r = 1; r <= 2049; r++)
        CHECK(hdr_percentile(h, (double)r * 100.0 / 2049.0) == r - 1);
    hdr_free(h);
}

static void test_clamping(void)
{
    struct hdr *h = hdr_new();

    REQUIRE(h != NULL);
    hdr_record(h, HDR_MAX_NS); /* the ceiling itself is not clamped */
    CHECK(hdr_clamped(h) == 0 && hdr_max(h) == HDR_MAX_NS);
    hdr_record(h, HDR_MAX_NS + 1);
    hdr_record(h, INT64_MAX);
    hdr_record_n(h, INT64_MAX, 3);
    CHECK(hdr_clamped(h) == 5);
    CHECK(hdr_count(h) == 6);
    CHECK(hdr_max(h) == HDR_MAX_NS && hdr_min(h) == HDR_MAX_NS);
    CHECK(hdr_mean(h) == (double)HDR_MAX_NS);
    CHECK(hdr_percentile(h, 50) == HDR_MAX_NS && hdr_percentile(h, 100) == HDR_MAX_NS);

    /* Negative values count as 0 and are not "clamped". */
    hdr_record(h, -5);
    hdr_record(h, INT64_MIN);
    CHECK(hdr_clamped(h) == 5 && hdr_count(h) == 8);
    CHECK(hdr_min(h) == 0 && hdr_percentile(h, 25) == 0);
    hdr_free(h);
}

static void test_empty(void)
{
    struct hdr *h = hdr_new();
    json_t *j;

    REQUIRE(h != NULL);
    CHECK(hdr_count(h) == 0 && hdr_clamped(h) == 0);
    CHECK(hdr_min(h) == 0 && hdr_max(h) == 0 && hdr_mean(h) == 0.0);
    CHECK(hdr_percentile(h, 50) == 0 && hdr_percentile(h, 100) == 0);
    j = hdr_to_json(h, 10);
    CHECK(j != NULL && json_is_array(j) && json_array_size(j) == 0);
    json_decref(j);
    hdr_free(h);
    hdr_free(NULL);
}

static void test_reset(void)
{
    struct hdr *h = hdr_new();

    REQUIRE(h != NULL);
    hdr_record(h, 5);
    hdr_record(h, 1000000);
    hdr_record(h, INT64_MAX);
    hdr_reset(h);
    CHECK(hdr_count(h) == 0 && hdr_clamped(h) == 0);
    CHECK(hdr_min(h) == 0 && hdr_max(h) == 0 && hdr_mean(h) == 0.0);
    CHECK(hdr_percentile(h, 99) == 0);
    /* min must not remember the 5 from before the reset */
    hdr_record(h, 700);
    CHECK(hdr_min(h) == 700 && hdr_max(h) == 700 && hdr_percentile(h, 1) == 700);
    CHECK(hdr_count(h) == 1 && hdr_mean(h) == 700.0);
    hdr_free(h);
}

/* Two histograms are equal as far as the API can tell. */
static void check_same(const struct hdr *a, const struct hdr *b)
{
    json_t *ja = hdr_to_json(a, INT_MAX), *jb = hdr_to_json(b, INT_MAX);

    CHECK(hdr_count(a) == hdr_count(b));
    CHECK(hdr_clamped(a) == hdr_clamped(b));
    CHECK(hdr_min(a) == hdr_min(b) && hdr_max(a) == hdr_max(b));
    CHECK(hdr_mean(a) == hdr_mean(b));
    CHECK(ja != NULL && jb != NULL && json_equal(ja, jb));
    for (int p = 1; p <= 1000; p++)
        CHECK(hdr_percentile(a, p / 10.0) == hdr_percentile(b, p / 10.0));
    json_decref(ja);
    json_decref(jb);
}

static void test_merge(void)
{
    struct hdr *all = hdr_new(), *sum = hdr_new(), *part[4];
    int ok = all != NULL && sum != NULL;

    for (int k = 0; k < 4; k++)
        ok &= (part[k] = hdr_new()) != NULL;
    REQUIRE(ok);
    rng_state = 6;
    for (int i = 0; i < 200000; i++) {
        int64_t v = (int64_t)exp2(rng_unit() * 44.0) - 100; /* some negative, some clamped */
        int k = (int)(rng_next() % 4);
        if (k == 3 && i % 2)
            continue; /* part 3 is smaller, and part 2 has different extremes */
        hdr_record(all, v);
        hdr_record(part[k], v);
    }
    CHECK(hdr_clamped(all) > 0);
    for (int k = 0; k < 4; k++)
        hdr_merge(sum, part[k]);
    check_same(sum, all);

    /* Merging an empty histogram changes nothing; merging into an empty one copies. */
    hdr_reset(part[0]);
    hdr_merge(sum, part[0]);
    check_same(sum, all);
    hdr_merge(part[0], all);
    check_same(part[0], all);

    /* Self-merge doubles every count. */
    hdr_merge(part[0], part[0]);
    hdr_reset(sum);
    hdr_merge(sum, all);
    hdr_merge(sum, all);
    check_same(part[0], sum);

    for (int k = 0; k < 4; k++)
        hdr_free(part[k]);
    hdr_free(sum);
    hdr_free(all);
}

static void test_record_n(void)
{
    struct hdr *a = hdr_new(), *b = hdr_new();

    REQUIRE(a != NULL && b != NULL);
    hdr_record_n(a, 12345, 1000);
    hdr_record_n(a, 3, 7);
    hdr_record_n(a, 99999999, 0);  /* no-op */
    hdr_record_n(a, 99999999, -4); /* no-op */
    hdr_record_n(a, -8, 2);        /* counts as 0 */
    for (int i = 0; i < 1000; i++)
        hdr_record(b, 12345);
    for (int i = 0; i < 7; i++)
        hdr_record(b, 3);
    hdr_record(b, 0);
    hdr_record(b, 0);
    check_same(a, b);
    CHECK(hdr_count(a) == 1009 && hdr_max(a) == 12345 && hdr_min(a) == 0);

    /* The sum is exact past 2^64: (2^40 * 2^42 + 2^40 * 1) / 2^41 = 2^41 + 0.5. */
    hdr_reset(a);
    hdr_record_n(a, HDR_MAX_NS, 1LL << 40);
    hdr_record_n(a, 1, 1LL << 40);
    CHECK(hdr_count(a) == 1LL << 41);
    CHECK(hdr_mean(a) == 2199023255552.5);
    CHECK(hdr_percentile(a, 50) == 1 && hdr_percentile(a, 50.001) == HDR_MAX_NS);

    /* ... and past 2^64 through hdr_record's carry: 2^22 values of 2^42. */
    hdr_reset(b);
    for (int i = 0; i < (1 << 22); i++)
        hdr_record(b, HDR_MAX_NS);
    hdr_record(b, 0);
    hdr_record(b, 0);
    CHECK(hdr_mean(b) == ldexp(1.0, 64) / (double)((1 << 22) + 2));
    hdr_free(a);
    hdr_free(b);
}

static void test_to_json(void)
{
    struct hdr *h = hdr_new();
    static const int limits[] = {1, 2, 3, 7, 50, 100, 1000, 100000, INT_MAX};
    json_t *j;
    size_t distinct;

    REQUIRE(h != NULL);
    rng_state = 7;
    for (int i = 0; i < 100000; i++)
        hdr_record(h, (int64_t)(-log(1.0 - rng_unit()) * 5e6));
    j = hdr_to_json(h, INT_MAX);
    REQUIRE(j != NULL);
    distinct = json_array_size(j);
    CHECK(distinct > 1000);
    json_decref(j);

    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        int64_t total = 0, prev = -1;
        size_t i;
        json_t *pt;

        j = hdr_to_json(h, limits[k]);
        REQUIRE(j != NULL && json_is_array(j));
        CHECK(json_array_size(j) >= 1 && json_array_size(j) <= (size_t)limits[k]);
        if ((size_t)limits[k] >= distinct)
            CHECK(json_array_size(j) == distinct);
        json_array_foreach(j, i, pt)
        {
            int64_t up = json_integer_value(json_array_get(pt, 0));
            CHECK(json_array_size(pt) == 2 && up > prev);
            total += json_integer_value(json_array_get(pt, 1));
            prev = up;
        }
        CHECK(total == hdr_count(h));
        CHECK(prev == hdr_max(h));
        json_decref(j);
    }

    j = hdr_to_json(h, 0); /* "at most 0 points" */
    CHECK(j != NULL && json_array_size(j) == 0);
    json_decref(j);

    /* Exact values come out one point each. */
    hdr_reset(h);
    for (int v = 0; v < 100; v++)
        hdr_record_n(h, v, v + 1);
    j = hdr_to_json(h, 100);
    REQUIRE(j != NULL && json_array_size(j) == 100);
    for (int v = 0; v < 100; v++) {
        json_t *pt = json_array_get(j, (size_t)v);
        CHECK(json_integer_value(json_array_get(pt, 0)) == v);
        CHECK(json_integer_value(json_array_get(pt, 1)) == v + 1);
    }
    json_decref(j);
    hdr_free(h);
}

static void test_percentile_args(void)
{
    struct hdr *h = hdr_new();

    REQUIRE(h != NULL);
    for (int v = 1; v <= 1000; v++)
        hdr_record(h, v * 1000);
    CHECK(hdr_percentile(h, 0) == 1000);      /* below the range: min */
    CHECK(hdr_percentile(h, -3) == 1000);     /* ditto */
    CHECK(hdr_percentile(h, NAN) == 1000);    /* ditto */
    CHECK(hdr_percentile(h, 250) == 1000000); /* above: max */
    CHECK(hdr_percentile(h, 0.0001) == 1000);
    CHECK(hdr_percentile(h, 0.1) == 1000);
    CHECK(hdr_percentile(h, 0.1001) == 2000);
    /* 99.9% of 1000 is rank 999 (999000, reported within 0.1%), not rank 1000 (the max) */
    CHECK(hdr_percentile(h, 99.9) >= 999000 && hdr_percentile(h, 99.9) < 1000000);
    {
        int64_t prev = 0;
        for (int p = 1; p <= 10000; p++) {
            int64_t v = hdr_percentile(h, p / 100.0);
            CHECK(v >= prev);
            prev = v;
        }
    }
    hdr_free(h);
}

static void test_record_speed(void)
{
    enum { N_VALUES = 1 << 20, N_RECORDS = 10000000 };
    struct hdr *h = hdr_new();
    int64_t *vals = malloc(N_VALUES * sizeof(*vals));
    struct timespec t0, t1;
    double ns;

    REQUIRE(h != NULL && vals != NULL);
    rng_state = 8;
    for (int i = 0; i < N_VALUES; i++)
        vals[i] = (int64_t)(-log(1.0 - rng_unit()) * 2e6);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N_RECORDS; i++)
        hdr_record(h, vals[i & (N_VALUES - 1)]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "  hdr_record: %d records in %.1f ms, %.2f ns/record\n", N_RECORDS, ns / 1e6,
            ns / N_RECORDS);
    CHECK(hdr_count(h) == N_RECORDS);
    free(vals);
    hdr_free(h);
}

int main(void)
{
    RUN(test_uniform);
    RUN(test_exponential);
    RUN(test_bimodal);
    RUN(test_log_uniform_full_range);
    RUN(test_bucket_edges);
    RUN(test_boundaries);
    RUN(test_every_exact_value);
    RUN(test_clamping);
    RUN(test_empty);
    RUN(test_reset);
    RUN(test_merge);
    RUN(test_record_n);
    RUN(test_to_json);
    RUN(test_percentile_args);
    RUN(test_record_speed);
    return harness_report();
}
