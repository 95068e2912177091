/*
 * config: the settings table and its reader. One row per setting; flags and environment
 * variables are derived from the same row, so they can never drift apart.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type {
    OPT_STR,
    OPT_INT,
    OPT_FLAG,
    OPT_LIST,      /* repeated flags append, comma-separated */
    OPT_ENV_SECRET /* a secret value: read from the environment only, so it never shows in ps;
                      `name` is only its key in this table (no flag) */
};

struct option_row {
    const char *name; /* long flag without "--" */
    const char *env;  /* environment variable */
    enum opt_type type;
    long min, max;   /* OPT_INT range */
    const char *def; /* default as text */
    size_t offset;   /* into struct config */
    size_t size;     /* OPT_STR buffer size */
    const char *help;
};

#define STR(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define INT(field) offsetof(struct config, field), 0

static const struct option_row rows[] = {
    {"listen", "LOADTESTD_LISTEN", OPT_STR, 0, 0, "127.0.0.1:8088", STR(listen),
     "address and port to serve the API on (ADDR:PORT or [V6ADDR]:PORT)"},
    {"db", "LOADTESTD_DB", OPT_STR, 0, 0, "./loadtestd.db", STR(db),
     "SQLite database file (created when missing)"},
    {"max-concurrent-runs", "LOADTESTD_MAX_CONCURRENT_RUNS", OPT_INT, 1, 64, "2",
     INT(max_concurrent_runs), "runs executing at once; more wait queued"},
    {"max-queued-runs", "LOADTESTD_MAX_QUEUED_RUNS", OPT_INT, 0, 10000, "32", INT(max_queued_runs),
     "runs waiting beyond those; more are refused with 429"},
    {"http-threads", "LOADTESTD_HTTP_THREADS", OPT_INT, 1, 64, "4", INT(http_threads),
     "threads serving the HTTP API"},
    {"worker-threads", "LOADTESTD_WORKER_THREADS", OPT_INT, 0, 64, "0", INT(worker_threads),
     "load worker threads per capacity run (0 = one per core)"},
    {"quiet", "LOADTESTD_QUIET", OPT_FLAG, 0, 1, "0", INT(quiet),
     "log only errors (no per-request lines)"},
    {"token-file", "LOADTESTD_TOKEN_FILE", OPT_STR, 0, 0, "", STR(token_file),
     "file of API tokens, lines 'read TOKEN' or 'write TOKEN'; required to listen beyond "
     "loopback"},
    {"allow-target", "LOADTESTD_ALLOW_TARGETS", OPT_LIST, 0, 0, "", STR(allow_targets),
     "targets runs may reach: host[:port], *.domain, IP or CIDR; repeatable or comma-separated "
     "(default: loopback only)"},
    /* chat-ops (service/slack.c) */
    {"slack-signing-secret", "LOADTESTD_SLACK_SIGNING_SECRET_FILE", OPT_STR, 0, 0, "",
     STR(slack_signing_secret_file),
     "file holding the Slack app's signing secret; enables POST /v1/chatops/slack"},
    {"slack-signing-secret-value", "LOADTESTD_SLACK_SIGNING_SECRET", OPT_ENV_SECRET, 0, 0, "",
     STR(slack_signing_secret),
     "the signing secret itself (environment only; the file wins when both are given)"},
    /* Hardening: reloadable allowlist, per-run caps (each at most the runner's own bound), the
     * API's own rate limit. */
    {"allow-target-file", "LOADTESTD_ALLOW_TARGETS_FILE", OPT_STR, 0, 0, "", STR(allow_target_file),
     "file of more allowlist entries, one per line ('#' comments); re-read on SIGHUP"},
    {"max-users", "LOADTESTD_MAX_USERS", OPT_INT, 1, 100000, "10000", INT(max_users),
     "cap on a capacity run's load.users"},
    {"max-total-rps", "LOADTESTD_MAX_TOTAL_RPS", OPT_INT, 1, 1000000, "100000", INT(max_total_rps),
     "cap on a capacity run's load.users x load.rate_per_user (req/s)"},
    {"max-duration-s", "LOADTESTD_MAX_DURATION_S", OPT_INT, 1, 86400, "3600", INT(max_duration_s),
     "cap on a capacity run's warmup_s + duration_s and a ratelimit run's windows x window_s"},
    {"max-burst-requests", "LOADTESTD_MAX_BURST_REQUESTS", OPT_INT, 1, 100000, "100000",
     INT(max_burst_requests), "cap on a ratelimit run's burst.max_requests"},
    {"max-agents", "LOADTESTD_MAX_AGENTS", OPT_INT, 0, 1000, "1000", INT(max_agents),
     "cap on a ratelimit run's realistic.agents"},
    {"max-rows", "LOADTESTD_MAX_ROWS", OPT_INT, 1, 1000000000, "100000000", INT(max_rows),
     "cap on a generate run's rows"},
    {"max-generate-connections", "LOADTESTD_MAX_GENERATE_CONNECTIONS", OPT_INT, 1, 64, "16",
     INT(max_generate_connections), "cap on a generate run's database connections"},
    {"api-rate", "LOADTESTD_API_RATE", OPT_INT, 0, 1000000, "50", INT(api_rate),
     "API requests/s per token (per client IP without tokens); over it 429 (0 = no limit)"},
    {"api-burst", "LOADTESTD_API_BURST", OPT_INT, 1, 1000000, "200", INT(api_burst),
     "API requests a client may send at once before --api-rate applies"},
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static int set_value(struct config *cfg, const struct option_row *r, const char *val,
                     const char *origin, FILE *err)
{
    char *p = (char *)cfg + r->offset;

    if (r->type == OPT_LIST && strcmp(origin, "option") == 0 && p[0] != '\0') {
        size_t used = strlen(p);
        if (used + 1 + strlen(val) >= r->size) {
            fprintf(err, "loadtestd: %s %s: the list is longer than %zu characters\n", origin,
                    r->name, r->size - 1);
            return -1;
        }
        p[used] = ',';
        memcpy(p + used + 1, val, strlen(val) + 1);
        return 0;
    }
    if (r->type == OPT_STR || r->type == OPT_LIST || r->type == OPT_ENV_SECRET) {
        if (strcmp(origin, "default") == 0 && val[0] == '\0') {
            p[0] = '\0';
            return 0;
        }
        if (strlen(val) >= r->size || val[0] == '\0') {
            fprintf(err, "loadtestd: %s %s: must be 1 to %zu characters\n", origin, r->name,
                    r->size - 1);
            return -1;
        }
        memcpy(p, val, strlen(val) + 1);
        return 0;
    }
    if (r->type == OPT_FLAG) {
        if (strcmp(val, "1") == 0 || strcmp(val, "true") == 0 || strcmp(val, "yes") == 0)
            *(int *)p = 1;
        else if (strcmp(val, "0") == 0 || strcmp(val, "false") == 0 || strcmp(val, "no") == 0)
            *(int *)p = 0;
        else {
            fprintf(err, "loadtestd: %s %s: expected 1/0/true/false\n", origin, r->name);
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno != 0 || end == val || *end != '\0' || v < r->min || v > r->max) {
        fprintf(err, "loadtestd: %s %s: expected an integer from %ld to %ld, got '%s'\n", origin,
                r->name, r->min, r->max, val);
        return -1;
    }
    *(int *)p = (int)v;
    return 0;
}

static void print_help(FILE *out)
{
    fprintf(out, "usage: loadtestd [options]\n\n"
                 "Runs load tests (capacity, ratelimit, generate) as a REST service.\n\n"
                 "options (each also read from its environment variable; flags win):\n");
    for (size_t i = 0; i < NROWS; i++) {
        const struct option_row *r = &rows[i];
        char flag[64];
        if (r->type == OPT_ENV_SECRET) {
            fprintf(out, "  %-28s %s\n", r->env, r->help);
            continue;
        }
        snprintf(flag, sizeof(flag), "--%s%s", r->name, r->type == OPT_FLAG ? "" : " VALUE");
        fprintf(out, "  %-28s %s\n  %-28s [env %s, default %s", flag, r->help, "", r->env, r->def);
        if (r->type == OPT_INT)
            fprintf(out, ", %ld..%ld", r->min, r->max);
        fprintf(out, "]\n");
    }
    fprintf(out, "  %-28s %s\n", "--print-routes", "print the API route table and exit");
    fprintf(out, "  %-28s %s\n", "--version", "print the version and exit");
    fprintf(out, "  %-28s %s\n", "--help", "print this help and exit");
}

static const struct option_row *find_row(const char *name)
{
    for (size_t i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    }
    return NULL;
}

enum config_result config_load(struct config *cfg, int argc, char **argv, const char *const *envp,
                               void *outp, void *errp)
{
    FILE *out = outp;
    FILE *err = errp;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NROWS; i++) {
        if (set_value(cfg, &rows[i], rows[i].def, "default", err) != 0)
            return CONFIG_EXIT_USAGE;
    }
    for (const char *const *e = envp; e && *e; e++) {
        for (size_t i = 0; i < NROWS; i++) {
            size_t n = strlen(rows[i].env);
            if (strncmp(*e, rows[i].env, n) == 0 && (*e)[n] == '=') {
                if (set_value(cfg, &rows[i], *e + n + 1, "environment", err) != 0)
                    return CONFIG_EXIT_USAGE;
            }
        }
    }
    int list_seen[NROWS] = {0}; /* the first flag of a list replaces the environment's value */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(out);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            fprintf(out, "loadtestd %s (api v1)\n", LT_VERSION);
            return CONFIG_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "loadtestd: unexpected argument '%s' (see --help)\n", a);
            return CONFIG_EXIT_USAGE;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n >= sizeof(name)) {
            fprintf(err, "loadtestd: unknown option '%s' (see --help)\n", a);
            return CONFIG_EXIT_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = '\0';
        const struct option_row *r = find_row(name);
        if (r && r->type == OPT_ENV_SECRET) {
            fprintf(err, "loadtestd: '--%s' does not exist: give the secret in %s or a file\n",
                    name, r->env);
            return CONFIG_EXIT_USAGE;
        }
        if (r == NULL) {
            fprintf(err, "loadtestd: unknown option '--%s' (see --help)\n", name);
            return CONFIG_EXIT_USAGE;
        }
        const char *val;
        if (eq)
            val = eq + 1;
        else if (r->type == OPT_FLAG)
            val = "1";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(err, "loadtestd: option '--%s' needs a value\n", name);
            return CONFIG_EXIT_USAGE;
        }
        if (r->type == OPT_LIST && !list_seen[r - rows]) {
            list_seen[r - rows] = 1;
            ((char *)cfg + r->offset)[0] = '\0';
        }
        if (set_value(cfg, r, val, "option", err) != 0)
            return CONFIG_EXIT_USAGE;
    }
    char host[128];
    int port;
    if (config_split_listen(cfg->listen, host, sizeof(host), &port) != 0) {
        fprintf(err, "loadtestd: --listen '%s': expected ADDR:PORT or [V6ADDR]:PORT\n",
                cfg->listen);
        return CONFIG_EXIT_USAGE;
    }
    return CONFIG_OK;
}

int config_split_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t n;
    const char *h = listen;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = listen + 1;
        n = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return -1;
        n = (size_t)(colon - listen);
    }
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    char *end = NULL;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}
