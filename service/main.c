/*
 * loadtestd: the daemon. Reads its configuration, opens the store (marking runs a dead daemon
 * left behind as interrupted), starts the run pool and the HTTP server, then waits for a signal.
 *
 * Threads: main (this file: start-up, then sigwait for SIGTERM/SIGINT/SIGHUP, then shutdown), the
 * HTTP threads (http.c), the run threads (pool.c) and each runner's own workers, and the
 * notifier (notify.c: completion webhooks, fed by the pool's on_finished hook). Signals are
 * blocked in every thread and taken synchronously by main with sigwait, so no handler runs in
 * an arbitrary thread. SIGHUP reloads the token file and the allowlist on main itself (reload):
 * the new tables are built completely, then swapped in; a file that fails keeps the old one.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apilimit.h"
#include "auth.h"
#include "caps.h"
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

#define ALLOW_FILE_MAX    (256 * 1024)
#define APILIMIT_MAX_KEYS 10000

/* Builds the target allowlist from --allow-target and --allow-target-file (lt_allow_add_text's
 * syntax); the loopback default when neither is given. Returns new, or NULL with a message in
 * err. */
static struct lt_allow *build_allowlist(const struct config *cfg, char *err, size_t errlen)
{
    struct lt_allow *a = NULL;
    FILE *f = NULL;
    char *text = NULL;
    char ebuf[256];
    size_t n;

    if (!cfg->allow_targets[0] && !cfg->allow_target_file[0]) {
        a = lt_allow_new_default();
        if (a == NULL)
            snprintf(err, errlen, "out of memory");
        return a;
    }
    if ((a = lt_allow_new()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg->allow_targets[0] &&
        lt_allow_add_text(a, cfg->allow_targets, "--allow-target", err, errlen) != 0)
        goto fail;
    if (!cfg->allow_target_file[0])
        return a;
    if ((f = fopen(cfg->allow_target_file, "r")) == NULL) {
        snprintf(err, errlen, "cannot open allowlist file %.200s", cfg->allow_target_file);
        goto fail;
    }
    if ((text = malloc(ALLOW_FILE_MAX + 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    n = fread(text, 1, ALLOW_FILE_MAX + 1, f);
    if (ferror(f) || n > ALLOW_FILE_MAX || memchr(text, '\0', n) != NULL) {
        snprintf(err, errlen,
                 "allowlist file %.200s cannot be read, is larger than %d bytes or "
                 "not text",
                 cfg->allow_target_file, ALLOW_FILE_MAX);
        goto fail;
    }
    text[n] = '\0';
    if (lt_allow_add_text(a, text, cfg->allow_target_file, ebuf, sizeof(ebuf)) != 0) {
        snprintf(err, errlen, "%s", ebuf);
        goto fail;
    }
    free(text);
    fclose(f);
    return a;
fail:
    free(text);
    if (f)
        fclose(f);
    lt_allow_free(a);
    return NULL;
}

/* SIGHUP: re-reads the token file and the allowlist. Each part that fails keeps what was in
 * force and logs why (the messages name files and lines, never a token). Runs already running
 * keep the allowlist they started with (they hold their own reference). */
static void reload(const struct config *cfg, struct auth *auth, struct lt_allow_slot *slot)
{
    char err[512];
    const char *kept = "";
    struct lt_allow *a;
    size_t nallow;

    if (auth != NULL && auth_reload(auth, cfg->token_file, err, sizeof(err)) != 0) {
        lt_log("error", "reload_failed", "what=tokens error=\"%s\" action=kept_old", err);
        kept = " kept_old=tokens";
    }
    if ((a = build_allowlist(cfg, err, sizeof(err))) == NULL) {
        lt_log("error", "reload_failed", "what=allowlist error=\"%s\" action=kept_old", err);
        kept = kept[0] ? " kept_old=tokens,allowlist" : " kept_old=allowlist";
    } else {
        lt_allow_slot_set(slot, a);
    }
    a = lt_allow_slot_get(slot);
    nallow = lt_allow_count(a);
    lt_allow_free(a);
    lt_log(kept[0] ? "warn" : "info", "reload", "tokens=%zu allow=%zu%s", auth_count(auth), nallow,
           kept);
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
    struct lt_allow_slot *allow_slot = NULL; /* the allowlist in force (no bare pointer to it
                                                 here: SIGHUP may free the list it held) */
    size_t nallow = 0;
    struct apilimit *apilimit = NULL;
    struct caps caps;
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
    {
        struct lt_allow *initial = build_allowlist(&cfg, errbuf, sizeof(errbuf));
        if (initial == NULL) {
            fprintf(stderr, "loadtestd: %s\n", errbuf);
            auth_free(auth);
            return 2;
        }
        nallow = lt_allow_count(initial);
        /* The slot owns the list from here; the runs and the POST check take references. */
        allow_slot = lt_allow_slot_new(initial);
    }
    if (cfg.api_rate > 0)
        apilimit = apilimit_new(cfg.api_rate, cfg.api_burst, APILIMIT_MAX_KEYS);
    if (allow_slot == NULL || (cfg.api_rate > 0 && apilimit == NULL)) {
        fprintf(stderr, "loadtestd: out of memory\n");
        lt_allow_slot_free(allow_slot);
        auth_free(auth);
        return 1;
    }
    caps = (struct caps){.max_users = cfg.max_users,
                         .max_total_rps = cfg.max_total_rps,
                         .max_duration_s = cfg.max_duration_s,
                         .max_burst_requests = cfg.max_burst_requests,
                         .max_agents = cfg.max_agents,
                         .max_rows = cfg.max_rows,
                         .max_generate_connections = cfg.max_generate_connections};

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
                             .runner = {.worker_threads = cfg.worker_threads},
                             /* each run takes the list in force when it starts */
                             .allow_slot = allow_slot};
    memset(&app, 0, sizeof(app));
    /* chat-ops and webhooks: the notifier thread, the run-end hook, the Slack signing secret */
    notifier = notifier_new(st, allow_slot);
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
    slack_secret_forget_env();
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
    app.allow_slot = allow_slot;
    app.caps = &caps;
    app.apilimit = apilimit;
    app.api_rate = cfg.api_rate;
    app.api_burst = cfg.api_burst;
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
           cfg.allow_targets[0]       ? cfg.allow_targets
           : cfg.allow_target_file[0] ? "" /* the file's entries only */
                                      : "127.0.0.0/8,::1,localhost");
    lt_log("info", "limits",
           "allow=%zu allow_target_file=%s max_users=%d max_total_rps=%d max_duration_s=%d "
           "max_burst_requests=%d max_agents=%d max_rows=%d max_generate_connections=%d "
           "api_rate=%d api_burst=%d",
           nallow, cfg.allow_target_file[0] ? "set" : "none", cfg.max_users, cfg.max_total_rps,
           cfg.max_duration_s, cfg.max_burst_requests, cfg.max_agents, cfg.max_rows,
           cfg.max_generate_connections, cfg.api_rate, cfg.api_burst);
    lt_log("info", "chatops", "slack=%s",
           app.slack_secret ? "enabled" : "disabled(no --slack-signing-secret)");

    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP) {
            reload(&cfg, auth, allow_slot);
            continue;
        }
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
    apilimit_free(apilimit);
    lt_allow_slot_free(allow_slot);
    auth_free(auth);
    if (rc == 0)
        lt_log("info", "stopped", "status=0");
    return rc;
}
