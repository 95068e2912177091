/*
 * capacity: the "capacity" run kind — a fixed-rate (open model) or fixed-concurrency (closed
 * model) HTTP load against one target, reporting latency percentiles free of coordinated omission
 * and a verdict against the spec's thresholds. The spec and result are described in
 * shared/API.md ("Kind capacity") and in capacity.c; the load itself is http_engine's.
 */
#ifndef LT_CAPACITY_H
#define LT_CAPACITY_H

#include "runner.h"

extern const struct runner_ops capacity_ops;

#endif
