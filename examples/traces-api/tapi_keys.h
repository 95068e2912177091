/*
 * tapi_keys: API keys — generating them, recognising their shape, and a bounded in-memory
 * cache of keys PostgreSQL has confirmed, so a search normally costs no extra query.
 *
 * The cache is set-associative: a key hashes to one set of TAPI_KEYS_WAYS entries; a new key
 * replaces an expired entry of its set or else the oldest one. Memory is fixed at creation
 * (entries x ~48 bytes); an evicted key just costs one more lookup. Entries expire after
 * ttl_s, so a key deleted from api_keys stops working within ttl_s. Unknown keys are not
 * cached (a negative cache would let a client fill it with guesses).
 */
#ifndef TAPI_KEYS_H
#define TAPI_KEYS_H

#include <stddef.h>

#define TAPI_KEY_LEN   32 /* hex characters */
#define TAPI_KEY_SIZE  (TAPI_KEY_LEN + 1)
#define TAPI_KEYS_WAYS 4

struct tapi_keys;

/* Returns new cache of about entries keys trusted for ttl_s seconds; NULL when out of
 * memory. */
struct tapi_keys *tapi_keys_new(size_t entries, int ttl_s);
/* Frees the cache (NULL allowed). */
void tapi_keys_free(struct tapi_keys *k);

/* 1 when key (borrowed) has the shape of a key this service issues: 32 lowercase hex. */
int tapi_key_well_formed(const char *key);
/* Writes a new random key (getrandom, 128 bits) into out. Returns 0, or -1 when the kernel
 * gave no randomness. */
int tapi_key_generate(char out[TAPI_KEY_SIZE]);

/* 1 when key (borrowed, well formed) is cached and not expired. */
int tapi_keys_cached(struct tapi_keys *k, const char *key);
/* Caches key (copied) as confirmed now. */
void tapi_keys_put(struct tapi_keys *k, const char *key);

#endif
