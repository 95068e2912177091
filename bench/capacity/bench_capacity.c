/*
 * bench_capacity: runs one capacity spec through the runner in-process, with no daemon around it,
 * and prints the figures a benchmark compares: requests, CPU seconds of this process (every
 * thread), CPU microseconds per request, the latency and service-time percentiles, the send lag
 * and this process's peak RSS (VmHWM). run.sh drives it next to wrk and Locust against a private
 * nginx, and at a fixed rate against tests/targets/latency_target.
 *
 * Usage: bench_capacity SPEC_JSON [WORKER_THREADS]
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "capacity.h"
#include "lt_util.h"

static void on_progress(void *opaque, const json_t *progress, const json_t *partial)
{
    (void)opaque;
    (void)progress;
    (void)partial;
}

static void on_point(void *opaque, int64_t t, const json_t *point)
{
    (void)opaque;
    (void)t;
    (void)point;
}

/* VmHWM (peak resident set) of this process in kB, from /proc/self/status; -1 if unknown. */
static long peak_rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static double num(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);

    if (b != NULL)
        v = json_object_get(v, b);
    return json_number_value(v);
}

int main(int argc, char **argv)
{
    struct lt_error err = {0};
    struct runner_sink sink = {.opaque = NULL, .progress = on_progress, .point = on_point};
    struct runner_config cfg = {.worker_threads = argc > 2 ? atoi(argv[2]) : 0, .allow = NULL};
    struct runner_outcome out = {0};
    struct runner_job job;
    struct rusage ru;
    atomic_int cancel = 0;
    json_t *spec;
    double cpu, n;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_capacity SPEC_JSON [WORKER_THREADS]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lt_log_set_quiet(1);
    spec = json_loads(argv[1], 0, NULL);
    if (spec == NULL || capacity_ops.validate(spec, &err) != LT_OK) {
        fprintf(stderr, "bad spec: %s %s\n", err.field, err.message);
        return 2;
    }
    job = (struct runner_job){
        .id = "rbench", .spec = spec, .cancel = &cancel, .sink = &sink, .config = &cfg};
    capacity_ops.execute(&job, &out);
    if (out.result == NULL) {
        fprintf(stderr, "no result: %s\n", out.error.message);
        return 1;
    }
    getrusage(RUSAGE_SELF, &ru);
    cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
          ru.ru_stime.tv_usec / 1e6;
    n = num(out.result, "requests", NULL);
    printf("requests=%.0f rps=%.1f user_s=%.2f sys_s=%.2f cpu_s=%.2f us_per_req=%.1f "
           "p50_ms=%.3f p99_ms=%.3f st_p50_ms=%.3f st_p99_ms=%.3f errors=%.4f late=%.0f "
           "max_send_lag_ms=%.3f peak_connections=%.0f hwm_kb=%ld\n",
           n, num(out.result, "achieved_rps", NULL),
           (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, cpu, n > 0 ? cpu / n * 1e6 : 0,
           num(out.result, "latency_ms", "p50"), num(out.result, "latency_ms", "p99"),
           num(out.result, "service_time_ms", "p50"), num(out.result, "service_time_ms", "p99"),
           num(out.result, "error_rate", NULL), num(out.result, "late", NULL),
           num(out.result, "max_send_lag_ms", NULL), num(out.result, "peak_connections", NULL),
           peak_rss_kb());
    json_decref(out.result);
    json_decref(out.verdict);
    json_decref(spec);
    curl_global_cleanup();
    return 0;
}
