/*
 * hdr: the latency histogram behind every percentile loadtestd reports (see hdr.h for the
 * contract). Each load worker owns one per measured quantity and records into it lock-free;
 * snapshots merge the workers' histograms into one and read percentiles from that.
 *
 * Layout. Buckets are half-open from below, (lo, hi], so the bucket edges are round numbers and
 * the ceiling HDR_MAX_NS = 2^42 is exactly the upper edge of the last bucket:
 *   index 0..2048      the values 0..2048 themselves (exact; width 1);
 *   index 2049..33792  for w = v - 1 in [2^e, 2^(e+1)), e = 11..41: 1024 sub-buckets of width
 *                      2^(e-10), i.e. v in (m * 2^s, (m + 1) * 2^s] with s = e - 10 and
 *                      m = w >> s in [1024, 2047].
 * A bucket's width is at most 1/1024 of any value in it, so a value reported as its bucket's
 * upper edge is at most 0.098% above the truth. The whole index is
 *   idx = (v != 0) + (s << 10) + (w >> s),  w = v - (v != 0),  s = max(0, bitlen(w) - 11)
 * which also holds in the exact range (s = 0 there), so recording is one clz, two shifts and an
 * increment: no loop, no division, and no branch on the value beyond clamping and min/max.
 *
 * The sum is kept in 128 bits (two uint64_t with a carry) so the mean stays exact however many
 * values are counted; values above the ceiling are counted as the ceiling (and in `clamped`), and
 * contribute the ceiling to the sum and the max.
 */
#include "hdr.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HDR_EXACT_MAX 2048 /* values 0..HDR_EXACT_MAX have a bucket each */
#define HDR_SUB_BITS  10   /* 1024 sub-buckets per power of two above it */
/* The exact range, then 31 powers of two (e = 11..41) of 1024 sub-buckets each. */
#define HDR_BUCKETS (HDR_EXACT_MAX + 1 + (31 << HDR_SUB_BITS))

/* The last index is that of HDR_MAX_NS: e = 41, s = 31, m = 2047 -> 1 + (31 << 10) + 2047. */
_Static_assert(HDR_BUCKETS == 1 + (31 << 10) + 2047 + 1, "bucket count");
_Static_assert(HDR_MAX_NS == (1LL << 42), "the layout assumes a ceiling of 2^42");

struct hdr {
    int64_t count;   /* values recorded */
    int64_t clamped; /* of which were above HDR_MAX_NS */
    int64_t min;     /* INT64_MAX while empty */
    int64_t max;     /* 0 while empty */
    uint64_t sum_lo; /* exact sum of the recorded (clamped) values, low 64 bits */
    uint64_t sum_hi; /* ... and high 64 bits */
    int64_t counts[HDR_BUCKETS];
};

struct hdr *hdr_new(void)
{
    struct hdr *h = malloc(sizeof(*h));

    if (h == NULL)
        return NULL;
    hdr_reset(h);
    return h;
}

void hdr_free(struct hdr *h)
{
    free(h);
}

void hdr_reset(struct hdr *h)
{
    memset(h, 0, sizeof(*h));
    h->min = INT64_MAX;
}

/* v must be in [0, HDR_MAX_NS]. */
static inline int64_t bucket_of(uint64_t v)
{
    uint64_t nz = v != 0;
    uint64_t w = v - nz;
    /* OR-ing in bit 10 makes bitlen at least 11, so s >= 0 without a branch. */
    int s = (63 - __builtin_clzll(w | (1u << HDR_SUB_BITS))) - HDR_SUB_BITS;

    return (int64_t)(nz + ((uint64_t)s << HDR_SUB_BITS) + (w >> s));
}

/* The largest value that lands in bucket idx. */
static int64_t bucket_upper(int64_t idx)
{
    if (idx <= HDR_EXACT_MAX)
        return idx;
    int64_t j = idx - 1;
    int s = (int)(j >> HDR_SUB_BITS) - 1;
    int64_t m = (j & ((1 << HDR_SUB_BITS) - 1)) + (1 << HDR_SUB_BITS);

    return (m + 1) << s;
}

/* Clamps value_ns into [0, HDR_MAX_NS]; values above the ceiling add n to h->clamped. */
static inline uint64_t clamp_value(struct hdr *h, int64_t value_ns, int64_t n)
{
    if (value_ns < 0)
        return 0;
    if (__builtin_expect(value_ns > HDR_MAX_NS, 0)) {
        h->clamped += n;
        return (uint64_t)HDR_MAX_NS;
    }
    return (uint64_t)value_ns;
}

static inline void sum_add(struct hdr *h, uint64_t lo, uint64_t hi)
{
    uint64_t old = h->sum_lo;

    h->sum_lo += lo;
    h->sum_hi += hi + (h->sum_lo < old);
}

void hdr_record(struct hdr *h, int64_t value_ns)
{
    uint64_t v = clamp_value(h, value_ns, 1);

    h->counts[bucket_of(v)]++;
    h->count++;
    sum_add(h, v, 0);
    if ((int64_t)v < h->min)
        h->min = (int64_t)v;
    if ((int64_t)v > h->max)
        h->max = (int64_t)v;
}

void hdr_record_n(struct hdr *h, int64_t value_ns, int64_t n)
{
    uint64_t v, un, lo, mid1, mid2, hi, cross;

    if (n <= 0)
        return;
    v = clamp_value(h, value_ns, n);
    un = (uint64_t)n;
    h->counts[bucket_of(v)] += n;
    h->count += n;

    /* v * n as 128 bits from 32-bit halves (v < 2^43, n < 2^63). */
    lo = (v & 0xffffffffu) * (un & 0xffffffffu);
    mid1 = (v >> 32) * (un & 0xffffffffu);
    mid2 = (v & 0xffffffffu) * (un >> 32);
    hi = (v >> 32) * (un >> 32);
    cross = (lo >> 32) + (mid1 & 0xffffffffu) + (mid2 & 0xffffffffu);
    sum_add(h, (cross << 32) | (lo & 0xffffffffu),
            hi + (mid1 >> 32) + (mid2 >> 32) + (cross >> 32));

    if ((int64_t)v < h->min)
        h->min = (int64_t)v;
    if ((int64_t)v > h->max)
        h->max = (int64_t)v;
}

void hdr_merge(struct hdr *dst, const struct hdr *src)
{
    uint64_t lo = src->sum_lo, hi = src->sum_hi; /* read first: dst may be src */

    if (src->count == 0)
        return;
    for (int64_t i = 0; i < HDR_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->clamped += src->clamped;
    sum_add(dst, lo, hi);
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

int64_t hdr_count(const struct hdr *h)
{
    return h->count;
}

int64_t hdr_clamped(const struct hdr *h)
{
    return h->clamped;
}

int64_t hdr_min(const struct hdr *h)
{
    return h->count ? h->min : 0;
}

int64_t hdr_max(const struct hdr *h)
{
    return h->count ? h->max : 0;
}

double hdr_mean(const struct hdr *h)
{
    if (h->count == 0)
        return 0.0;
    return ((double)h->sum_hi * 18446744073709551616.0 + (double)h->sum_lo) / (double)h->count;
}

/* The 1-based rank of the value at percentile pct: ceil(pct% of count), where a product that
 * is an integer up to rounding noise (99.9% of 1000 = 999.0000000000001) counts as that
 * integer. */
static int64_t rank_of(int64_t count, double pct)
{
    double x = pct / 100.0 * (double)count;
    double r = nearbyint(x);
    int64_t rank;

    if (fabs(x - r) <= 1e-9 * (r > 1.0 ? r : 1.0))
        rank = (int64_t)r;
    else
        rank = (int64_t)ceil(x);
    if (rank < 1)
        rank = 1;
    if (rank > count)
        rank = count;
    return rank;
}

int64_t hdr_percentile(const struct hdr *h, double pct)
{
    int64_t rank, seen = 0, v;

    if (h->count == 0)
        return 0;
    if (!(pct > 0.0)) /* also NaN */
        return h->min;
    if (pct >= 100.0)
        return h->max;
    rank = rank_of(h->count, pct);
    for (int64_t i = 0; i < HDR_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            v = bucket_upper(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max; /* not reached: the counts add up to count */
}

/* Appends [upper, count] to arr; returns 0, or -1 on allocation failure. */
static int append_point(json_t *arr, int64_t upper, int64_t count)
{
    json_t *pt = json_pack("[II]", (json_int_t)upper, (json_int_t)count);

    if (pt == NULL)
        return -1;
    return json_array_append_new(arr, pt);
}

void *hdr_to_json(const struct hdr *h, int max_points)
{
    json_t *arr = json_array();
    int64_t nonempty = 0, group, in_group = 0, acc = 0, upper = 0;

    if (arr == NULL)
        return NULL;
    if (h->count == 0 || max_points <= 0)
        return arr;
    for (int64_t i = 0; i < HDR_BUCKETS; i++)
        nonempty += h->counts[i] != 0;
    /* Combine runs of `group` consecutive non-empty buckets into one point each. */
    group = (nonempty + max_points - 1) / max_points;
    for (int64_t i = 0; i < HDR_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        acc += h->counts[i];
        upper = bucket_upper(i);
        if (++in_group < group)
            continue;
        if (append_point(arr, upper < h->max ? upper : h->max, acc) != 0)
            goto fail;
        in_group = 0;
        acc = 0;
    }
    if (in_group > 0 && append_point(arr, upper < h->max ? upper : h->max, acc) != 0)
        goto fail;
    return arr;
fail:
    json_decref(arr);
    return NULL;
}
