/*
 * config: the daemon's settings, read once at start from the command line and the environment
 * into a const struct. Every setting is one row of the table in config.c
 * {name, env, type, min, max, default, help}; --help is printed from that table.
 */
#ifndef LT_CONFIG_H
#define LT_CONFIG_H

#include <stddef.h>

struct config {
    char listen[128];         /* ADDR:PORT, [v6]:PORT */
    char db[1024];            /* SQLite path */
    int max_concurrent_runs;  /* run threads */
    int max_queued_runs;      /* admitted runs waiting beyond those */
    int http_threads;         /* libmicrohttpd thread pool size */
    int worker_threads;       /* load worker threads per capacity run; 0 = one per core */
    int quiet;                /* log only errors */
    char token_file[1024];    /* bearer tokens ("" = none: loopback only) */
    char allow_targets[4096]; /* comma-separated allowlist entries ("" = loopback only) */
    char slack_signing_secret_file[1024]; /* file with the Slack signing secret ("" = none) */
    char slack_signing_secret[256];       /* the secret from the environment ("" = none) */
    /* Hardening: operator caps per run, the API's own rate limit, the reloadable allowlist. */
    char allow_target_file[1024]; /* more allowlist entries, one per line; re-read on SIGHUP */
    int max_users;                /* capacity load.users */
    int max_total_rps;            /* capacity load.users x load.rate_per_user */
    int max_duration_s;           /* capacity warmup_s + duration_s; ratelimit windows x window_s */
    int max_burst_requests;       /* ratelimit burst.max_requests */
    int max_agents;               /* ratelimit realistic.agents */
    int max_rows;                 /* generate rows */
    int max_generate_connections; /* generate connections */
    int api_rate;  /* API requests/s per token (per client IP without tokens); 0 off */
    int api_burst; /* requests a client may send at once before api_rate applies */
};

enum config_result {
    CONFIG_OK = 0,
    CONFIG_EXIT_OK,   /* --help or --version printed: exit 0 */
    CONFIG_EXIT_USAGE /* an error was printed: exit 2 */
};

/* Fills cfg from defaults, then the environment (LOADTESTD_*), then argv (argv wins). Prints
 * errors, --help and --version on out/err. */
enum config_result config_load(struct config *cfg, int argc, char **argv, const char *const *envp,
                               void *out, void *err);

/* Splits cfg->listen into host (no brackets) and port. Returns 0 on success. */
int config_split_listen(const char *listen, char *host, size_t hostlen, int *port);

#endif
