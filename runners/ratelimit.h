/*
 * ratelimit: the "ratelimit" run kind — checks a rate limiter from the outside. A burst agent
 * sends as fast as one connection allows until the limiter answers 429 and reports how many
 * requests it let through (and, corrected for what refilled meanwhile, the bucket's capacity);
 * it can then probe at a steady pace to measure the refill rate and whether Retry-After is
 * honest. Realistic agents send ordinary, seeded-random traffic and expect never to be limited.
 * Each agent may first obtain its own identity (an API key) from a setup call. The spec, the
 * result and every decision are described in shared/API.md ("Kind ratelimit") and at the top of
 * ratelimit.c.
 */
#ifndef LT_RATELIMIT_H
#define LT_RATELIMIT_H

#include "runner.h"

extern const struct runner_ops ratelimit_ops;

#endif
