/*
 * tapi_keys: key generation and the confirmed-key cache described in tapi_keys.h. The cache is
 * one array of sets under one mutex; a lookup is a hash, a lock and at most TAPI_KEYS_WAYS
 * constant-time compares, far below a PostgreSQL round trip.
 */
#define _GNU_SOURCE
#include "tapi_keys.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "tapi_util.h"

struct entry {
    char key[TAPI_KEY_SIZE]; /* "" = empty */
    int64_t expires_ns;      /* monotonic */
};

struct tapi_keys {
    pthread_mutex_t lock; /* guards: sets */
    struct entry *sets;   /* nsets * TAPI_KEYS_WAYS */
    size_t nsets;
    int64_t ttl_ns;
};

struct tapi_keys *tapi_keys_new(size_t entries, int ttl_s)
{
    struct tapi_keys *k = calloc(1, sizeof(*k));

    if (k == NULL)
        return NULL;
    k->nsets = (entries + TAPI_KEYS_WAYS - 1) / TAPI_KEYS_WAYS;
    k->sets = calloc(k->nsets * TAPI_KEYS_WAYS, sizeof(struct entry));
    if (k->sets == NULL) {
        free(k);
        return NULL;
    }
    k->ttl_ns = (int64_t)ttl_s * 1000000000;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

void tapi_keys_free(struct tapi_keys *k)
{
    if (k == NULL)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k->sets);
    free(k);
}

int tapi_key_well_formed(const char *key)
{
    size_t i = 0;

    if (key == NULL)
        return 0;
    for (; key[i]; i++) {
        char c = key[i];
        if (i >= TAPI_KEY_LEN || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return i == TAPI_KEY_LEN;
}

int tapi_key_generate(char out[TAPI_KEY_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TAPI_KEY_LEN / 2];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[TAPI_KEY_LEN] = '\0';
    return 0;
}

static size_t set_of(const struct tapi_keys *k, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a: keys are random already */
    for (size_t i = 0; i < TAPI_KEY_LEN; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    return (size_t)(h % k->nsets);
}

/* Compares two keys in time independent of where they differ. */
static int key_equal(const char *a, const char *b)
{
    unsigned char d = 0;
    for (size_t i = 0; i < TAPI_KEY_LEN; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

int tapi_keys_cached(struct tapi_keys *k, const char *key)
{
    int64_t now = tapi_mono_ns();
    int hit = 0;

    if (k->ttl_ns == 0)
        return 0;
    pthread_mutex_lock(&k->lock);
    struct entry *set = &k->sets[set_of(k, key) * TAPI_KEYS_WAYS];
    for (int w = 0; w < TAPI_KEYS_WAYS; w++) {
        if (set[w].key[0] && set[w].expires_ns > now && key_equal(set[w].key, key))
            hit = 1;
    }
    pthread_mutex_unlock(&k->lock);
    return hit;
}

void tapi_keys_put(struct tapi_keys *k, const char *key)
{
    int64_t now = tapi_mono_ns();
    int victim = 0;

    if (k->ttl_ns == 0)
        return;
    pthread_mutex_lock(&k->lock);
    struct entry *set = &k->sets[set_of(k, key) * TAPI_KEYS_WAYS];
    for (int w = 0; w < TAPI_KEYS_WAYS; w++) {
        if (set[w].key[0] && key_equal(set[w].key, key)) { /* refresh in place */
            victim = w;
            break;
        }
        if (set[w].key[0] == '\0' || set[w].expires_ns < set[victim].expires_ns)
            victim = w; /* empty, or older than the best so far */
        if (set[victim].key[0] == '\0')
            break;
    }
    memcpy(set[victim].key, key, TAPI_KEY_SIZE);
    set[victim].expires_ns = now + k->ttl_ns;
    pthread_mutex_unlock(&k->lock);
}
