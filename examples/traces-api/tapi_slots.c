/*
 * tapi_slots: a stack of free slot numbers under one mutex, and a condvar that threads wait on
 * (with a deadline on CLOCK_MONOTONIC) while the stack is empty.
 */
#define _GNU_SOURCE
#include "tapi_slots.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct tapi_slots {
    pthread_mutex_t lock; /* guards: free, nfree */
    pthread_cond_t cond;  /* signalled when a slot is given back */
    int *free;            /* free[0..nfree-1] are the free slots */
    int nfree;
    int n;
};

struct tapi_slots *tapi_slots_new(int n)
{
    struct tapi_slots *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;

    if (s == NULL)
        return NULL;
    s->free = calloc((size_t)n, sizeof(int));
    if (s->free == NULL) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        s->free[i] = n - 1 - i; /* slot 0 on top: a light load keeps using the same ones */
    s->nfree = s->n = n;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

void tapi_slots_free(struct tapi_slots *s)
{
    if (s == NULL)
        return;
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->free);
    free(s);
}

int tapi_slots_acquire(struct tapi_slots *s, int timeout_ms)
{
    struct timespec deadline;
    int slot = -1;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->lock);
    while (s->nfree == 0) {
        if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT)
            break;
    }
    if (s->nfree > 0)
        slot = s->free[--s->nfree];
    pthread_mutex_unlock(&s->lock);
    return slot;
}

void tapi_slots_release(struct tapi_slots *s, int slot)
{
    pthread_mutex_lock(&s->lock);
    s->free[s->nfree++] = slot;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}
