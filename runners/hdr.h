/*
 * hdr: a log-linear latency histogram in the HDR style, written for loadtestd.
 *
 * Values are nanoseconds. Values up to 2^11 ns are counted exactly; above, each power-of-two
 * range is split into 1024 equal sub-buckets, so any recorded value is reported within 0.1% of
 * its true value (3 significant digits) from 1 ns up to the ceiling HDR_MAX_NS (about 73 min);
 * larger values are clamped to it and counted in `clamped`. Memory is fixed at creation; no
 * allocation while recording. Recording is not thread-safe: each worker owns its histograms and
 * merges them into a shared one at snapshot time, under the caller's lock.
 */
#ifndef LT_HDR_H
#define LT_HDR_H

#include <stdint.h>

#define HDR_MAX_NS (1LL << 42) /* ~4398 s */

struct hdr;

/* Returns new (fixed size, zeroed); NULL on allocation failure. Caller frees with hdr_free. */
struct hdr *hdr_new(void);
void hdr_free(struct hdr *h);

/* Counts one value (ns). Negative values count as 0. */
void hdr_record(struct hdr *h, int64_t value_ns);
/* Counts n values equal to value_ns. */
void hdr_record_n(struct hdr *h, int64_t value_ns, int64_t n);
void hdr_reset(struct hdr *h);
/* dst += src. */
void hdr_merge(struct hdr *dst, const struct hdr *src);

int64_t hdr_count(const struct hdr *h);
int64_t hdr_clamped(const struct hdr *h);
int64_t hdr_min(const struct hdr *h); /* 0 when empty */
int64_t hdr_max(const struct hdr *h); /* 0 when empty */
double hdr_mean(const struct hdr *h); /* 0 when empty; exact sum / count */
/* The value at percentile pct (0..100]: the smallest recorded value v such that at least pct%
 * of the values are <= v (reported as the upper edge of its sub-bucket, capped at max).
 * 0 when empty. */
int64_t hdr_percentile(const struct hdr *h, double pct);

/* Appends the non-empty buckets as [[upper_ns, count], ...] for the dashboard's histogram;
 * at most max_points points (adjacent buckets are combined to fit). Returns a new jansson array
 * (json_t *), declared void * here so this header does not need jansson. */
void *hdr_to_json(const struct hdr *h, int max_points);

#endif
