/*
 * lt_sha256: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), written for loadtestd so that API
 * tokens can be kept hashed in memory and webhook/chat-ops signatures verified without another
 * dependency. Not for bulk data: simple and correct rather than fast.
 */
#ifndef LT_SHA256_H
#define LT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define LT_SHA256_LEN 32

struct lt_sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    unsigned char block[64];
    size_t used; /* bytes in block */
};

void lt_sha256_init(struct lt_sha256 *c);
void lt_sha256_update(struct lt_sha256 *c, const void *data, size_t len);
void lt_sha256_final(struct lt_sha256 *c, unsigned char out[LT_SHA256_LEN]);
/* One-shot digest. */
void lt_sha256(const void *data, size_t len, unsigned char out[LT_SHA256_LEN]);
void lt_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[LT_SHA256_LEN]);
/* 1 when a and b (n bytes) are equal; the time taken does not depend on where they differ. */
int lt_ct_equal(const void *a, const void *b, size_t n);

#endif
