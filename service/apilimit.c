/* apilimit: token buckets per API client, in a bounded hash table (see apilimit.h). */
#include "apilimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"

#define NCHAINS        4096 /* power of two */
#define SWEEP_EVERY_NS 1000000000LL

struct bucket {
    unsigned char key[APILIMIT_KEY_LEN];
    double tokens;   /* requests it may still send now (at `last_ns`) */
    int64_t last_ns; /* when tokens was brought up to date */
    struct bucket *next;
};

struct apilimit {
    double rate, burst;
    size_t max_keys;
    uint64_t seed;        /* random per process: clients cannot aim keys at one chain */
    pthread_mutex_t lock; /* guards: chains, nkeys, overflow, last_sweep_ns */
    struct bucket *chains[NCHAINS];
    size_t nkeys;
    struct bucket overflow; /* shared by new keys while the table is full */
    int64_t last_sweep_ns;
};

struct apilimit *apilimit_new(double rate, double burst, size_t max_keys)
{
    struct apilimit *l;

    if (!(rate > 0) || !(burst >= 1) || max_keys < 1)
        return NULL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->rate = rate;
    l->burst = burst;
    l->max_keys = max_keys;
    lt_random_bytes(&l->seed, sizeof(l->seed));
    pthread_mutex_init(&l->lock, NULL);
    l->overflow.tokens = burst;
    return l;
}

void apilimit_free(struct apilimit *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < NCHAINS; i++) {
        struct bucket *b = l->chains[i];
        while (b) {
            struct bucket *next = b->next;
            free(b);
            b = next;
        }
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static size_t chain_of(const struct apilimit *l, const unsigned char *key)
{
    uint64_t h = 1469598103934665603ULL ^ l->seed; /* FNV-1a, seeded */

    for (size_t i = 0; i < APILIMIT_KEY_LEN; i++) {
        h ^= key[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    return (size_t)(h & (NCHAINS - 1));
}

/* Brings b's tokens up to now. */
static void refill(const struct apilimit *l, struct bucket *b, int64_t now_ns)
{
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * l->rate;
        if (b->tokens > l->burst)
            b->tokens = l->burst;
        b->last_ns = now_ns;
    }
}

/* Drops every bucket that is full again: it holds no state a new bucket would not. Caller holds
 * the lock. */
static void sweep_locked(struct apilimit *l, int64_t now_ns)
{
    l->last_sweep_ns = now_ns;
    for (size_t i = 0; i < NCHAINS; i++) {
        for (struct bucket **pp = &l->chains[i]; *pp;) {
            struct bucket *b = *pp;
            refill(l, b, now_ns);
            if (b->tokens >= l->burst) {
                *pp = b->next;
                free(b);
                l->nkeys--;
            } else {
                pp = &b->next;
            }
        }
    }
}

/* Finds or adds key's bucket; the overflow bucket when the table is full. Caller holds the
 * lock. */
static struct bucket *find_locked(struct apilimit *l, const unsigned char *key, int64_t now_ns)
{
    size_t c = chain_of(l, key);
    struct bucket *b;

    for (b = l->chains[c]; b; b = b->next) {
        if (memcmp(b->key, key, APILIMIT_KEY_LEN) == 0)
            return b;
    }
    if (l->nkeys >= l->max_keys)
        sweep_locked(l, now_ns);
    if (l->nkeys >= l->max_keys || (b = calloc(1, sizeof(*b))) == NULL)
        return &l->overflow;
    memcpy(b->key, key, APILIMIT_KEY_LEN);
    b->tokens = l->burst;
    b->last_ns = now_ns;
    b->next = l->chains[c];
    l->chains[c] = b;
    l->nkeys++;
    return b;
}

int apilimit_take(struct apilimit *l, const unsigned char key[APILIMIT_KEY_LEN], int64_t now_ns,
                  int *retry_after_s)
{
    struct bucket *b;
    int ok;

    if (l == NULL)
        return 1;
    pthread_mutex_lock(&l->lock);
    if (now_ns - l->last_sweep_ns >= SWEEP_EVERY_NS)
        sweep_locked(l, now_ns);
    b = find_locked(l, key, now_ns);
    refill(l, b, now_ns);
    ok = b->tokens >= 1.0;
    if (ok) {
        b->tokens -= 1.0;
    } else {
        double wait = ceil((1.0 - b->tokens) / l->rate);
        *retry_after_s = wait < 1 ? 1 : wait > 86400 ? 86400 : (int)wait;
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

size_t apilimit_size(struct apilimit *l)
{
    size_t n;

    pthread_mutex_lock(&l->lock);
    n = l->nkeys;
    pthread_mutex_unlock(&l->lock);
    return n;
}
