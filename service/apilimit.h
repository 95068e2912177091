/*
 * apilimit: the request rate limit of the API itself (--api-rate, --api-burst). One token bucket
 * per client key: the bearer token's digest when tokens are configured and the request carries a
 * valid one, else the client's IP address. A bucket holds up to `burst` requests and refills at
 * `rate` per second; a request finding it empty is answered 429 rate_limited with Retry-After.
 *
 * Memory is bounded: at most max_keys buckets. A bucket that has refilled completely is the same
 * as no bucket, so idle ones are dropped (swept at most once per second, and whenever the table
 * is full). When the table is full of active buckets, new keys share one overflow bucket: the
 * limit still holds, collectively, and memory does not grow.
 *
 * Thread-safe: HTTP threads call apilimit_take concurrently; `lock` guards the table.
 */
#ifndef LT_APILIMIT_H
#define LT_APILIMIT_H

#include <stddef.h>
#include <stdint.h>

#define APILIMIT_KEY_LEN 33 /* a kind byte + up to 32 bytes (SHA-256 digest or IP address) */

struct apilimit;

/* rate > 0 requests/s, burst >= 1; max_keys >= 1. Returns new; NULL on allocation failure. */
struct apilimit *apilimit_new(double rate, double burst, size_t max_keys);
void apilimit_free(struct apilimit *l);

/* Takes one request from key's bucket at monotonic time now_ns. Returns 1 when allowed; 0 when
 * the bucket is empty, then *retry_after_s receives the whole seconds (>= 1) until it holds a
 * request again. l == NULL (limit off): always 1. */
int apilimit_take(struct apilimit *l, const unsigned char key[APILIMIT_KEY_LEN], int64_t now_ns,
                  int *retry_after_s);

/* Number of buckets held (tests). */
size_t apilimit_size(struct apilimit *l);

#endif
