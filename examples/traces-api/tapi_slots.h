/*
 * tapi_slots: a fixed set of N slots handed out one thread at a time. The PostgreSQL pool and
 * the Redis pool each keep their connections in an array indexed by slot; whoever holds slot i
 * is the only thread that touches connection i until it gives the slot back. That is how
 * "each PGconn / redisContext belongs to one thread at a time" is enforced.
 */
#ifndef TAPI_SLOTS_H
#define TAPI_SLOTS_H

struct tapi_slots;

/* Returns new pool of n free slots (0..n-1); NULL on allocation failure. */
struct tapi_slots *tapi_slots_new(int n);
/* Frees the pool (NULL allowed). No slot may be held. */
void tapi_slots_free(struct tapi_slots *s);

/* Takes a free slot, waiting up to timeout_ms for one. Returns the slot, or -1 on timeout. */
int tapi_slots_acquire(struct tapi_slots *s, int timeout_ms);
/* Gives back a slot taken with tapi_slots_acquire. */
void tapi_slots_release(struct tapi_slots *s, int slot);

#endif
