/*
 * loadtestd: the daemon. Reads its configuration, opens the store (marking runs a dead daemon
 * left behind as interrupted), starts the run pool and the HTTP server, then waits for a signal.
 *
 * Threads: main (this file: start-up, then sigwait for SIGTERM/SIGINT, then shutdown), the
 * HTTP threads (http.c), the run threads (pool.c) and each runner's own workers, and the
 * notifier (notify.c: completion webhooks, fed by the pool's on_finished hook). Signals are
 * blocked in every thread and taken synchronously by main with sigwait, so no handler runs in
 * an arbitrary thread.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "compare.h"
#include "config.h"
#include "lt_allow.h"
#include "http.h"
#include "notify.h"
#include "pool.h"
#include "routes.h"
#include "slack.h"
#include "store.h"

extern char **environ;

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* The pool's on_finished hook: opaque is the app. */
static void on_run_finished(void *opaque, const char *id)
{
    struct app *a = opaque;

    notifier_on_finished(a->notifier, id);
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct store *st = NULL;
    struct pool *pool = NULL;
    struct http_server *http = NULL;
    struct auth *auth = NULL;
    struct lt_allow *allow = NULL;
    struct notifier *notifier = NULL;
    static char slack_secret[SLACK_SECRET_MAX + 1];
    struct app app;
    char host[128];
    char errbuf[512];
    int port = 0, bound = 0, interrupted = 0, sig = 0, rc = 1;
    sigset_t sigs;

    if (argc == 2 && strcmp(argv[1], "--print-routes") == 0) {
        for (const struct http_route *r = routes_table; r->method; r++)
            printf("%s %s\n", r->method, r->pattern);
        return 0;
    }
    switch (config_load(&cfg, argc, argv, (const char *const *)environ, stdout, stderr)) {
    case CONFIG_OK:
        break;
    case CONFIG_EXIT_OK:
        return 0;
    case CONFIG_EXIT_USAGE:
        return 2;
    }
    lt_log_set_quiet(cfg.quiet);
    config_split_listen(cfg.listen, host, sizeof(host), &port);
    if (cfg.token_file[0]) {
        auth = auth_load(cfg.token_file, errbuf, sizeof(errbuf));
        if (auth == NULL) {
            fprintf(stderr, "loadtestd: %s\n", errbuf);
            return 2;
        }
    } else if (!is_loopback(host)) {
        /* Without tokens anyone who reaches the API could aim load at any target on the
         * allowlist: serving beyond loopback needs tokens. */
        fprintf(stderr,
                "loadtestd: refusing to listen on %s without API tokens: give "
                "--token-file, or listen on loopback (127.0.0.1, ::1)\n",
                host);
        return 2;
    }
    allow = cfg.allow_targets[0] ? lt_allow_new() : lt_allow_new_default();
    if (allow == NULL) {
        fprintf(stderr, "loadtestd: out of memory\n");
        auth_free(auth);
        return 1;
    }
    if (cfg.allow_targets[0]) {
        char list[sizeof(cfg.allow_targets)];
        char *save = NULL;
        snprintf(list, sizeof(list), "%s", cfg.allow_targets);
        for (char *e = strtok_r(list, ", ", &save); e; e = strtok_r(NULL, ", ", &save)) {
            if (lt_allow_add(allow, e, errbuf, sizeof(errbuf)) != 0) {
                fprintf(stderr, "loadtestd: --allow-target: %s\n", errbuf);
                lt_allow_free(allow);
                auth_free(auth);
                return 2;
            }
        }
    }

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);

    st = store_open(cfg.db, errbuf, sizeof(errbuf));
    if (st == NULL) {
        lt_log("error", "store_open", "db=%s error=\"%s\"", cfg.db, errbuf);
        goto out;
    }
    if (store_mark_interrupted(st, lt_now_ms(), &interrupted) != LT_OK) {
        lt_log("error", "store_open", "db=%s error=\"cannot mark interrupted runs\"", cfg.db);
        goto out;
    }
    if (interrupted > 0)
        lt_log("warn", "recovered", "interrupted_runs=%d", interrupted);

    struct pool_config pc = {.max_concurrent = cfg.max_concurrent_runs,
                             .max_queued = cfg.max_queued_runs,
                             .runner = {.worker_threads = cfg.worker_threads, .allow = allow}};
    memset(&app, 0, sizeof(app));
    /* chat-ops and webhooks: the notifier thread, the run-end hook, the Slack signing secret */
    notifier = notifier_new(st, allow);
    if (notifier == NULL) {
        lt_log("error", "start", "error=\"cannot start the notifier thread\"");
        goto out;
    }
    app.notifier = notifier;
    pc.on_finished = on_run_finished;
    pc.hook_opaque = &app;
    if (slack_secret_load(cfg.slack_signing_secret_file, cfg.slack_signing_secret, slack_secret,
                          sizeof(slack_secret), &app.slack_secret_len, errbuf,
                          sizeof(errbuf)) != 0) {
        lt_log("error", "start", "error=\"%s\"", errbuf);
        rc = 2;
        goto out;
    }
    explicit_bzero(cfg.slack_signing_secret, sizeof(cfg.slack_signing_secret));
    app.slack_secret = app.slack_secret_len ? slack_secret : NULL;
    /* Baselines: thresholds.max_regression_pct is checked when a run completes. The hooks get
     * &app (its store is set here; no run can end before the pool exists). */
    app.store = st;
    pc.amend_verdict = compare_amend_verdict;
    pc.hook_opaque = &app;
    pool = pool_new(st, &pc);
    if (pool == NULL) {
        lt_log("error", "start", "error=\"cannot start run threads\"");
        goto out;
    }
    app.store = st;
    app.pool = pool;
    app.auth = auth;
    app.allow = allow;
    http = http_start(host, port, cfg.http_threads, routes_table, &app, &bound, errbuf,
                      sizeof(errbuf));
    if (http == NULL) {
        lt_log("error", "listen", "error=\"%s\"", errbuf);
        goto out;
    }
    lt_log("info", "listening",
           "addr=%s port=%d db=%s version=%s max_concurrent_runs=%d max_queued_runs=%d "
           "auth=%s tokens=%zu allow_targets=\"%s\"",
           host, bound, cfg.db, LT_VERSION, cfg.max_concurrent_runs, cfg.max_queued_runs,
           auth ? "bearer" : "none(loopback-only)", auth_count(auth),
           cfg.allow_targets[0] ? cfg.allow_targets : "127.0.0.0/8,::1,localhost");
    lt_log("info", "chatops", "slack=%s",
           app.slack_secret ? "enabled" : "disabled(no --slack-signing-secret)");

    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
        lt_log("info", "signal", "signal=%d action=ignored", sig);
    }
    lt_log("info", "stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
    rc = 0;
out:
    http_quiesce(http);      /* no new connections */
    pool_stop(pool);         /* cancel runs; their partial results are stored */
    http_stop(http);         /* requests in progress complete (they may still call the pool) */
    pool_free(pool);         /* memory only: nothing calls into the pool any more */
    notifier_free(notifier); /* after both: runs and requests may still queue deliveries */
    explicit_bzero(slack_secret, sizeof(slack_secret));
    store_free(st);
    lt_allow_free(allow);
    auth_free(auth);
    if (rc == 0)
        lt_log("info", "stopped", "status=0");
    return rc;
}
