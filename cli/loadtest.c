/*
 * loadtest: the command-line client of loadtestd, made for CI jobs (and people at a terminal).
 *
 *   loadtest run SPEC.json|--preset NAME [--set PATH=VALUE ...] [--wait] [--junit FILE] ...
 *   loadtest status ID | list | cancel ID | compare ID BASE
 *
 * It submits a run (with an Idempotency-Key, so retrying a POST whose answer was lost never
 * starts a second run), follows it with conditional GETs, prints the verdict and exits with a
 * code a CI step can gate on: 0 passed, 1 failed, 2 the run did not complete, 3 loadtest could
 * not do what was asked, 4 (status only) not finished yet. See cli/README.md.
 *
 * DESIGN. One thread. SIGINT and SIGTERM only increment g_interrupts (no SA_RESTART, so a
 * sleep ends at once); a request in flight when it changes is aborted by the client's progress
 * callback. While waiting for a run, the first interrupt cancels the run on the daemon (unless
 * --no-cancel) and keeps waiting for it to end; a second one stops waiting. The token from
 * LOADTEST_TOKEN lives only inside the client (client.c) and is never printed.
 */
#define _DEFAULT_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "junit.h"
#include "lt_util.h"
#include "overrides.h"
#include "report.h"

#define DEFAULT_SERVER      "http://127.0.0.1:8088"
#define POST_RETRIES        3
#define GET_RETRIES         3
#define LIST_PAGE_MAX       1000 /* the daemon's largest page */
#define LIST_PAGE_DEFAULT   100
#define LIST_LIMIT_DEFAULT  50
#define LOST_CONTACT_S      60.0 /* polling gives up after this long without an answer */
#define CANCEL_GRACE_S      15.0 /* how long to wait for a cancelled run to end */
#define PLAIN_PROGRESS_S    5.0  /* one progress line this often when not on a terminal */
#define IDEMPOTENCY_KEY_MAX 255

static volatile sig_atomic_t g_interrupts;

/* ---------------------------------------------------------------- options */

enum cmd_bit {
    C_NONE = 1, /* before the command name */
    C_RUN = 2,
    C_STATUS = 4,
    C_LIST = 8,
    C_CANCEL = 16,
    C_COMPARE = 32,
    C_ANY = 63
};

enum opt_id {
    O_HELP,
    O_VERSION,
    O_SERVER,
    O_VERBOSE,
    O_JSON,
    O_WAIT,
    O_SET,
    O_NAME,
    O_PRESET,
    O_JUNIT,
    O_TIMEOUT,
    O_IKEY,
    O_NO_CANCEL,
    O_KIND,
    O_STATUS,
    O_LIMIT,
    O_PAGE_SIZE,
    O_MAX_REGRESSION
};

struct opt_def {
    enum opt_id id;
    const char *lng; /* --long */
    char shrt;       /* -s, or 0 */
    const char *arg; /* metavariable, NULL for a flag */
    unsigned cmds;   /* commands that take it (enum cmd_bit) */
    const char *help;
};

/* The first entry whose name matches and whose cmds include the command wins, so one option
 * name can mean different things to different commands (--name, --status). */
static const struct opt_def opt_defs[] = {
    {O_SET, "set", 0, "PATH=VALUE", C_RUN,
     "override a spec field (repeatable): load.users=50,\n"
     "target.headers.X-Env=ci; VALUE is JSON when it parses as JSON\n"
     "(50, true, null, [200], \"50\"), else a plain string"},
    {O_NAME, "name", 0, "NAME", C_RUN, "name the run (sets the spec's name)"},
    {O_PRESET, "preset", 0, "NAME", C_RUN,
     "start the daemon's preset NAME instead of a spec file;\n"
     "the --set overrides (and --name) are the body"},
    {O_WAIT, "wait", 'w', NULL, C_RUN | C_STATUS | C_CANCEL,
     "wait until the run ends, showing its progress on stderr"},
    {O_JUNIT, "junit", 0, "FILE", C_RUN | C_STATUS,
     "write a JUnit XML report of the verdict to FILE (implies --wait)"},
    {O_TIMEOUT, "timeout", 0, "SECONDS", C_RUN | C_STATUS,
     "stop waiting after SECONDS, cancel the run and exit 2\n"
     "(implies --wait)"},
    {O_NO_CANCEL, "no-cancel", 0, NULL, C_RUN | C_STATUS,
     "on an interrupt or --timeout leave the run going (default:\n"
     "cancel it)"},
    {O_IKEY, "idempotency-key", 0, "KEY", C_RUN,
     "Idempotency-Key of the POST (1-255 visible ASCII characters;\n"
     "default: a random key per invocation); the same KEY and spec\n"
     "again give the run the first call started, not a new one"},
    {O_KIND, "kind", 0, "KIND", C_LIST, "only runs of this kind (capacity, ratelimit, generate)"},
    {O_STATUS, "status", 0, "STATUS", C_LIST, "only runs with this status"},
    {O_NAME, "name", 0, "NAME", C_LIST, "only runs with this name"},
    {O_LIMIT, "limit", 'n', "N", C_LIST, "at most N runs, newest first (default 50)"},
    {O_PAGE_SIZE, "page-size", 0, "N", C_LIST,
     "runs per request, 1-1000 (default 100); next_cursor is\n"
     "followed until --limit runs are listed"},
    {O_MAX_REGRESSION, "max-regression-pct", 0, "PCT", C_COMPARE,
     "a metric regressed when it is more than PCT % (0-1000) worse than\n"
     "BASE's (default: ID's thresholds.max_regression_pct, else 10)"},
    {O_JSON, "json", 'j', NULL, C_RUN | C_STATUS | C_LIST | C_CANCEL | C_COMPARE,
     "print JSON on stdout instead, and nothing else there\n"
     "(run, status, cancel: the run document)"},
    {O_SERVER, "server", 's', "URL", C_ANY,
     "loadtestd's URL (default: $LOADTEST_SERVER, else\n" DEFAULT_SERVER ")"},
    {O_VERBOSE, "verbose", 'v', NULL, C_ANY,
     "log each request and answer on stderr (the token masked)"},
    {O_HELP, "help", 'h', NULL, C_ANY, "show this help"},
    {O_VERSION, "version", 'V', NULL, C_NONE, "print loadtest's version"},
};

struct cli {
    unsigned cmd; /* enum cmd_bit of the command */
    const char *cmd_name;
    const char *server;
    int verbose;
    int help;
    int json;
    int wait;
    int no_cancel;
    const char *name;
    const char *preset;
    const char *junit;
    double timeout_s; /* 0 = none */
    const char *ikey;
    const char *kind;
    const char *status;
    long limit;
    long page_size;
    double max_regression_pct;
    const char **sets; /* borrowed from argv */
    size_t nsets;
    const char *pos[4]; /* positional arguments, borrowed from argv */
    size_t npos;
    struct client *client;
};

struct command {
    const char *name;
    unsigned bit;
    int (*run)(struct cli *cli);
    const char *usage;
    const char *about;
    const char *exits;
};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
    va_list ap;

    fputs("loadtest: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_interrupts < 1000)
        g_interrupts++;
}

static double mono_s(void)
{
    return (double)lt_mono_ns() / 1e9;
}

/* ---------------------------------------------------------------- shared helpers */

static int make_client(struct cli *cli)
{
    const char *server = cli->server;
    const char *token = getenv("LOADTEST_TOKEN");
    char err[256];

    if (server == NULL || *server == '\0')
        server = getenv("LOADTEST_SERVER");
    if (server == NULL || *server == '\0')
        server = DEFAULT_SERVER;
    cli->client = client_new(server, token, cli->verbose, &g_interrupts, err, sizeof(err));
    if (cli->client == NULL) {
        fail("%s", err);
        return -1;
    }
    return 0;
}

/* Builds "/v1/runs/<escaped id><suffix>". */
static int run_path(const char *id, const char *suffix, char *out, size_t outlen)
{
    char esc[256];

    if (client_escape(id, esc, sizeof(esc)) != 0 ||
        (size_t)snprintf(out, outlen, "/v1/runs/%s%s", esc, suffix) >= outlen) {
        fail("run id '%.40s...' is too long", id);
        return -1;
    }
    return 0;
}

/* Reports a failed request; returns the exit code for it. what says what was attempted. */
static int request_failed(struct cli *cli, const struct client_resp *resp, const char *what)
{
    char msg[1024];

    client_describe_error(cli->client, resp, msg, sizeof(msg));
    if (resp->aborted) {
        fail("%s: interrupted", what);
        return EXIT_RUN_ERROR;
    }
    fail("%s: %s", what, msg);
    if (resp->status == 401)
        fail("%s", client_has_token(cli->client)
                       ? "the daemon did not accept the token in LOADTEST_TOKEN"
                       : "the daemon wants a token: set LOADTEST_TOKEN");
    else if (resp->status == 403 && strcmp(client_error_code(resp), "forbidden") == 0)
        fail("the token in LOADTEST_TOKEN is a read token; this needs a write token");
    return EXIT_USAGE;
}

/* GETs one run document. Returns 0 with resp holding it, or an exit code. */
static int get_run(struct cli *cli, const char *id, struct client_resp *resp)
{
    struct client_req req = {.method = "GET"};
    char path[512], what[300];

    if (run_path(id, "", path, sizeof(path)) != 0)
        return EXIT_USAGE;
    req.path = path;
    snprintf(what, sizeof(what), "cannot get run %.64s", id);
    if (client_send_retry(cli->client, &req, GET_RETRIES, resp) != 0 || resp->status != 200)
        return request_failed(cli, resp, what);
    if (!json_is_object(resp->json) || !json_is_string(json_object_get(resp->json, "status"))) {
        fail("%s: the answer is not a run document", what);
        return EXIT_USAGE;
    }
    return 0;
}

static void print_raw(const struct client_resp *resp)
{
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len == 0 || resp->body[resp->body_len - 1] != '\n')
        fputc('\n', stdout);
}

/* ---------------------------------------------------------------- waiting */

/* What waiting for a run ended with. */
struct waited {
    struct client_resp last; /* the last run document (raw and parsed) */
    int have_doc;
    int rc;         /* exit code */
    char note[256]; /* what loadtest did or saw, "" when the run just ended */
    double waited_s;
};

struct progress {
    int tty;
    int drawn; /* a \r line is on the terminal */
    double last_plain;
    char last_status[32];
};

static int term_width(void)
{
    struct winsize ws;
    const char *cols = getenv("COLUMNS");

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    if (cols && atoi(cols) > 10)
        return atoi(cols);
    return 80;
}

static void progress_clear(struct progress *p)
{
    if (p->tty && p->drawn)
        fputs("\r\033[K", stderr);
    p->drawn = 0;
}

static void progress_show(struct progress *p, const char *id, const json_t *doc, double waited,
                          int final)
{
    char line[512];
    const char *status = json_string_value(json_object_get(doc, "status"));
    int changed = status && strcmp(status, p->last_status) != 0;

    report_progress(doc, waited, line, sizeof(line));
    if (p->tty) {
        int w = term_width() - 1;
        fprintf(stderr, "\r\033[K%.*s", w, line);
        p->drawn = 1;
        if (final) {
            fputc('\n', stderr);
            p->drawn = 0;
        }
    } else if (final || changed || waited - p->last_plain >= PLAIN_PROGRESS_S) {
        fprintf(stderr, "loadtest: %s %s\n", id, line);
        p->last_plain = waited;
    }
    fflush(stderr);
    if (status)
        snprintf(p->last_status, sizeof(p->last_status), "%s", status);
}

static void send_cancel(struct cli *cli, const char *id)
{
    struct client_req req = {.method = "POST"};
    struct client_resp resp = {0};
    char path[512];

    if (run_path(id, "/cancel", path, sizeof(path)) != 0)
        return;
    req.path = path;
    if (client_send_retry(cli->client, &req, 1, &resp) != 0 ||
        (resp.status != 202 && resp.status != 409)) {
        char msg[512];
        client_describe_error(cli->client, &resp, msg, sizeof(msg));
        fail("could not cancel run %s: %s", id, msg);
    }
    client_resp_clear(&resp);
}

/* Polls run id (borrowed) until it reaches a final status or loadtest gives up (a second
 * interrupt, --timeout with --no-cancel, a cancelled run that does not stop, lost contact),
 * showing progress on stderr. Fills w: the last document received (owned by w; the caller
 * clears w->last), the exit code and a note on what loadtest did. */
static void wait_for_run(struct cli *cli, const char *id, struct waited *w)
{
    struct progress p = {.tty = isatty(STDERR_FILENO), .last_plain = -1e9};
    struct client_resp resp = {0};
    struct client_req req = {.method = "GET"};
    char path[512], etag[256] = "";
    double t0 = mono_s(), failing_since = -1, cancel_deadline = -1;
    int cancel_sent = 0, stop_waiting = 0;

    w->rc = EXIT_RUN_ERROR;
    if (run_path(id, "", path, sizeof(path)) != 0) {
        w->rc = EXIT_USAGE;
        return;
    }
    req.path = path;
    while (!stop_waiting) {
        double now = mono_s();
        int rc;

        w->waited_s = now - t0;
        if (g_interrupts >= 2) {
            snprintf(w->note, sizeof(w->note), "interrupted; stopped waiting for the run");
            break;
        }
        if (!cancel_sent &&
            (g_interrupts > 0 || (cli->timeout_s > 0 && w->waited_s >= cli->timeout_s))) {
            progress_clear(&p);
            if (g_interrupts > 0)
                snprintf(w->note, sizeof(w->note), "loadtest got an interrupt signal");
            else
                snprintf(w->note, sizeof(w->note), "--timeout of %g s reached", cli->timeout_s);
            if (cli->no_cancel) {
                fail("%s; run %s goes on (--no-cancel)", w->note, id);
                strncat(w->note, "; the run was left going", sizeof(w->note) - strlen(w->note) - 1);
                break;
            }
            fail("%s; cancelling run %s%s", w->note, id,
                 g_interrupts > 0 ? " (interrupt again to stop waiting)" : "");
            strncat(w->note, "; loadtest cancelled the run", sizeof(w->note) - strlen(w->note) - 1);
            send_cancel(cli, id);
            cancel_sent = 1;
            cancel_deadline = mono_s() + CANCEL_GRACE_S;
        }
        if (cancel_sent && now > cancel_deadline) {
            strncat(w->note, ", but it had not stopped yet", sizeof(w->note) - strlen(w->note) - 1);
            break;
        }

        req.if_none_match = w->have_doc ? etag : NULL;
        rc = client_send(cli->client, &req, &resp);
        if (rc == 0 && resp.status == 200 && json_is_object(resp.json) &&
            json_is_string(json_object_get(resp.json, "status"))) {
            snprintf(etag, sizeof(etag), "%s", resp.etag);
            client_resp_clear(&w->last);
            w->last = resp;
            memset(&resp, 0, sizeof(resp));
            w->have_doc = 1;
            failing_since = -1;
        } else if (rc == 0 && resp.status == 304 && w->have_doc) {
            failing_since = -1;
        } else if (rc != 0 && resp.aborted) {
            continue; /* an interrupt: handled at the top of the loop */
        } else if (rc == 0 && resp.status >= 400 && resp.status < 500 && resp.status != 429) {
            progress_clear(&p);
            if (resp.status == 404)
                fail("run %s no longer exists on the daemon", id);
            else
                request_failed(cli, &resp, "cannot follow the run");
            snprintf(w->note, sizeof(w->note), "lost the run: HTTP %ld", resp.status);
            w->rc = EXIT_USAGE;
            break;
        } else {
            char msg[512];
            client_describe_error(cli->client, &resp, msg, sizeof(msg));
            if (failing_since < 0) {
                failing_since = now;
                progress_clear(&p);
                fail("%s; still trying", msg);
            } else if (now - failing_since > LOST_CONTACT_S) {
                progress_clear(&p);
                fail("no answer from loadtestd for %.0f s: %s", LOST_CONTACT_S, msg);
                snprintf(w->note, sizeof(w->note), "lost contact with loadtestd: %.200s", msg);
                w->rc = EXIT_USAGE;
                break;
            }
        }
        client_resp_clear(&resp);

        if (w->have_doc) {
            const char *status = json_string_value(json_object_get(w->last.json, "status"));
            int final = report_status_is_final(status);
            progress_show(&p, id, w->last.json, mono_s() - t0, final);
            if (final) {
                w->rc = report_exit_code(status);
                stop_waiting = 1;
                break;
            }
        }
        /* Twice a second at first, then once a second: fresh enough for a person, cheap for
         * the daemon (and mostly 304s). */
        client_sleep_ms(cli->client, mono_s() - t0 < 10 ? 500 : 1000);
    }
    client_resp_clear(&resp);
    progress_clear(&p);
    w->waited_s = mono_s() - t0;
    if (!stop_waiting && w->have_doc && w->rc != EXIT_USAGE)
        w->rc = EXIT_RUN_ERROR;
}

/* Prints the outcome of waiting (report or JSON), writes the JUnit file; returns the exit
 * code. */
static int finish_wait(struct cli *cli, const char *id, const char *junit_name, struct waited *w)
{
    int rc = w->rc;
    char err[512];

    if (w->have_doc) {
        if (cli->json)
            print_raw(&w->last);
        else
            report_run(stdout, w->last.json);
    }
    fflush(stdout);
    if (w->note[0] &&
        !report_status_is_final(json_string_value(json_object_get(w->last.json, "status"))))
        fail("run %s did not finish: %s", id, w->note);
    if (cli->junit &&
        junit_write(cli->junit, w->have_doc ? w->last.json : NULL, NULL, junit_name,
                    w->note[0] ? w->note : NULL, w->waited_s, err, sizeof(err)) != 0) {
        fail("%s", err);
        if (rc == EXIT_PASSED)
            rc = EXIT_USAGE; /* a gate without its report should not look green */
    }
    return rc;
}

/* ---------------------------------------------------------------- run */

static int idempotency_key_ok(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (key[i] < 33 || key[i] > 126)
            return 0;
    }
    return 1;
}

static void new_idempotency_key(char *out, size_t outlen)
{
    unsigned char rnd[16];
    size_t o;

    lt_random_bytes(rnd, sizeof(rnd));
    o = (size_t)snprintf(out, outlen, "loadtest-");
    for (size_t i = 0; i < sizeof(rnd) && o + 2 < outlen; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%02x", rnd[i]);
}

/* The spec file's name without directory and .json ("stdin" for -): a stable JUnit name for a
 * run without one. */
static const char *spec_label(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    size_t n;

    if (strcmp(path, "-") == 0)
        return "stdin";
    base = base ? base + 1 : path;
    n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".json") == 0)
        n -= 5;
    snprintf(out, outlen, "%.*s", (int)n, base);
    return out;
}

/* Writes a JUnit report for a run that was never created, when one was asked for. */
static void junit_not_created(struct cli *cli, const char *kind, const char *name, const char *why)
{
    char err[512];

    if (cli->junit && junit_write(cli->junit, NULL, kind, name, why, 0, err, sizeof(err)) != 0)
        fail("%s", err);
}

static int cmd_run(struct cli *cli)
{
    json_t *body = NULL;
    char *body_text = NULL;
    struct client_resp resp = {0};
    struct client_req req = {.method = "POST"};
    struct waited w = {0};
    char err[1024], key[300], path[512], esc[256], why[1024], label[256];
    const char *kind = NULL, *name = NULL, *id;
    int rc = EXIT_USAGE;

    if ((cli->preset && cli->npos != 0) || (!cli->preset && cli->npos != 1)) {
        fail("run needs one SPEC file (or - for stdin), or --preset NAME; see loadtest run --help");
        goto out;
    }
    if (cli->junit || cli->timeout_s > 0)
        cli->wait = 1;
    if (cli->ikey) {
        if (!idempotency_key_ok(cli->ikey)) {
            fail("--idempotency-key must be 1 to %d visible ASCII characters (no spaces)",
                 IDEMPOTENCY_KEY_MAX);
            goto out;
        }
        snprintf(key, sizeof(key), "%s", cli->ikey);
    } else {
        new_idempotency_key(key, sizeof(key));
    }

    body = cli->preset ? json_object() : spec_read(cli->pos[0], err, sizeof(err));
    if (body == NULL) {
        fail("%s", cli->preset ? "out of memory" : err);
        goto out;
    }
    for (size_t i = 0; i < cli->nsets; i++) {
        if (override_apply(body, cli->sets[i], err, sizeof(err)) != 0) {
            fail("%s", err);
            goto out;
        }
    }
    if (cli->name && json_object_set_new(body, "name", json_string(cli->name)) != 0) {
        fail("--name must be valid UTF-8");
        goto out;
    }
    kind = cli->preset ? "preset" : json_string_value(json_object_get(body, "kind"));
    name = json_string_value(json_object_get(body, "name"));
    if (name == NULL)
        name = cli->preset ? cli->preset : spec_label(cli->pos[0], label, sizeof(label));
    if (cli->junit && junit_check_writable(cli->junit, err, sizeof(err)) != 0) {
        fail("%s", err);
        goto out;
    }
    body_text = json_dumps(body, JSON_COMPACT);
    if (body_text == NULL) {
        fail("out of memory");
        goto out;
    }
    if (make_client(cli) != 0)
        goto out;

    if (cli->preset) {
        if (client_escape(cli->preset, esc, sizeof(esc)) != 0) {
            fail("--preset name is too long");
            goto out;
        }
        snprintf(path, sizeof(path), "/v1/presets/%s/runs", esc);
    } else {
        snprintf(path, sizeof(path), "/v1/runs");
    }
    req.path = path;
    req.body = body_text;
    req.body_len = strlen(body_text);
    req.idempotency_key = key;
    req.hold = 1;
    /* Safe to repeat: the daemon answers a repeated key with the run it already created. */
    if (client_send_retry(cli->client, &req, POST_RETRIES, &resp) != 0 || resp.status < 200 ||
        resp.status >= 300) {
        if (cli->preset && resp.status == 404 &&
            strcmp(client_error_message(&resp), "no such route") == 0) {
            fail("this daemon has no presets (it has no POST /v1/presets/{name}/runs); "
                 "run a spec file instead, or upgrade loadtestd");
            snprintf(why, sizeof(why), "this daemon has no presets");
            rc = EXIT_USAGE;
        } else {
            rc = request_failed(cli, &resp, "the run was not started");
            client_describe_error(cli->client, &resp, why, sizeof(why));
        }
        junit_not_created(cli, kind, name, why);
        goto out;
    }
    id = json_string_value(json_object_get(resp.json, "id"));
    if (id == NULL) {
        fail("the daemon answered %ld without a run document", resp.status);
        junit_not_created(cli, kind, name, "the daemon's answer had no run id");
        goto out;
    }
    if (resp.replayed)
        fprintf(stderr,
                "loadtest: Idempotency-Key %s was used before: this is the run it started\n", key);
    if (!cli->wait) {
        if (cli->json)
            print_raw(&resp);
        else
            printf("%s\n", id);
        rc = EXIT_PASSED;
        goto out;
    }
    if (!cli->json) {
        printf("%s\n", id);
        fflush(stdout);
    }
    {
        char idcopy[128];
        snprintf(idcopy, sizeof(idcopy), "%s", id);
        wait_for_run(cli, idcopy, &w);
        rc = finish_wait(cli, idcopy, name, &w);
    }
out:
    client_resp_clear(&w.last);
    client_resp_clear(&resp);
    free(body_text);
    json_decref(body);
    return rc;
}

/* ---------------------------------------------------------------- status */

static int cmd_status(struct cli *cli)
{
    struct client_resp resp = {0};
    struct waited w = {0};
    char line[512];
    const char *status;
    int rc;

    if (cli->npos != 1) {
        fail("status needs one run ID; see loadtest status --help");
        return EXIT_USAGE;
    }
    if (cli->junit || cli->timeout_s > 0)
        cli->wait = 1;
    if (cli->junit && junit_check_writable(cli->junit, line, sizeof(line)) != 0) {
        fail("%s", line);
        return EXIT_USAGE;
    }
    if (make_client(cli) != 0)
        return EXIT_USAGE;
    if (cli->wait) {
        wait_for_run(cli, cli->pos[0], &w);
        rc = finish_wait(cli, cli->pos[0], cli->pos[0], &w);
        client_resp_clear(&w.last);
        return rc;
    }
    rc = get_run(cli, cli->pos[0], &resp);
    if (rc != 0)
        goto out;
    status = json_string_value(json_object_get(resp.json, "status"));
    if (cli->json) {
        print_raw(&resp);
    } else {
        report_run(stdout, resp.json);
        if (!report_status_is_final(status)) {
            report_progress(resp.json, -1, line, sizeof(line));
            printf("\nprogress: %s\n", line);
        }
    }
    rc = report_exit_code(status);
out:
    client_resp_clear(&resp);
    return rc;
}

/* ---------------------------------------------------------------- list */

static int append_query(char *q, size_t qlen, const char *key, const char *value)
{
    char esc[1024];
    size_t n = strlen(q);

    if (value == NULL)
        return 0;
    if (client_escape(value, esc, sizeof(esc)) != 0 ||
        (size_t)snprintf(q + n, qlen - n, "%s%s=%s", n ? "&" : "", key, esc) >= qlen - n) {
        fail("--%s value is too long", key);
        return -1;
    }
    return 0;
}

static int cmd_list(struct cli *cli)
{
    json_t *runs = json_array(), *out = NULL;
    struct client_resp resp = {0};
    struct client_req req = {.method = "GET"};
    char *cursor = NULL;
    char path[4096], query[3000], limit[32];
    long want = cli->limit > 0 ? cli->limit : LIST_LIMIT_DEFAULT;
    int rc = EXIT_USAGE;

    if (runs == NULL) {
        fail("out of memory");
        goto out;
    }
    if (cli->npos != 0) {
        fail("list takes no arguments; see loadtest list --help");
        goto out;
    }
    if (make_client(cli) != 0)
        goto out;
    for (;;) {
        long page = want - (long)json_array_size(runs);
        const json_t *items, *next;
        size_t got;

        if (page > (cli->page_size ? cli->page_size : LIST_PAGE_DEFAULT))
            page = cli->page_size ? cli->page_size : LIST_PAGE_DEFAULT;
        snprintf(limit, sizeof(limit), "%ld", page);
        query[0] = '\0';
        if (append_query(query, sizeof(query), "kind", cli->kind) ||
            append_query(query, sizeof(query), "status", cli->status) ||
            append_query(query, sizeof(query), "name", cli->name) ||
            append_query(query, sizeof(query), "limit", limit) ||
            append_query(query, sizeof(query), "cursor", cursor))
            goto out;
        snprintf(path, sizeof(path), "/v1/runs?%s", query);
        req.path = path;
        if (client_send_retry(cli->client, &req, GET_RETRIES, &resp) != 0 || resp.status != 200) {
            rc = request_failed(cli, &resp, "cannot list runs");
            goto out;
        }
        items = json_object_get(resp.json, "runs");
        next = json_object_get(resp.json, "next_cursor");
        if (!json_is_array(items)) {
            fail("cannot list runs: the answer has no runs array");
            goto out;
        }
        got = json_array_size(items);
        if (json_array_extend(runs, (json_t *)items) != 0) {
            fail("out of memory");
            goto out;
        }
        free(cursor);
        cursor = json_is_string(next) ? strdup(json_string_value(next)) : NULL;
        client_resp_clear(&resp); /* items and next were borrowed from it */
        if (cursor == NULL || (long)json_array_size(runs) >= want || got == 0)
            break;
    }
    if (cli->json) {
        out = json_pack("{s:O, s:s?}", "runs", runs, "next_cursor", cursor);
        if (out == NULL) {
            fail("out of memory");
            goto out;
        }
        json_dumpf(out, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else if (json_array_size(runs) == 0) {
        fprintf(stderr, "loadtest: no runs%s\n",
                cli->kind || cli->status || cli->name ? " match" : " yet");
    } else {
        report_list(stdout, runs);
    }
    rc = EXIT_PASSED;
out:
    client_resp_clear(&resp);
    free(cursor);
    json_decref(out);
    json_decref(runs);
    return rc;
}

/* ---------------------------------------------------------------- cancel */

static int cmd_cancel(struct cli *cli)
{
    struct client_resp resp = {0}, cur = {0};
    struct client_req req = {.method = "POST"};
    struct waited w = {0};
    char path[512], what[300];
    const char *id = cli->pos[0];
    int rc = EXIT_USAGE;

    if (cli->npos != 1) {
        fail("cancel needs one run ID; see loadtest cancel --help");
        return EXIT_USAGE;
    }
    if (make_client(cli) != 0 || run_path(id, "/cancel", path, sizeof(path)) != 0)
        return EXIT_USAGE;
    req.path = path;
    snprintf(what, sizeof(what), "cannot cancel run %.64s", id);
    if (client_send_retry(cli->client, &req, POST_RETRIES, &resp) != 0) {
        rc = request_failed(cli, &resp, what);
        goto out;
    }
    if (resp.status == 409) {
        /* Already finished: the goal (the run is not running) holds, so this is success. */
        rc = get_run(cli, id, &cur);
        if (rc != 0)
            goto out;
        if (cli->json)
            print_raw(&cur);
        else
            printf("run %s has already finished: %s\n", id,
                   json_string_value(json_object_get(cur.json, "status")));
        rc = EXIT_PASSED;
        goto out;
    }
    if (resp.status != 202) {
        rc = request_failed(cli, &resp, what);
        goto out;
    }
    if (cli->wait) {
        wait_for_run(cli, id, &w);
        if (w.have_doc && cli->json)
            print_raw(&w.last);
        else if (w.have_doc)
            printf("run %s ended: %s\n", id,
                   json_string_value(json_object_get(w.last.json, "status")));
        rc = w.have_doc && report_status_is_final(
                               json_string_value(json_object_get(w.last.json, "status")))
                 ? EXIT_PASSED
                 : w.rc;
        goto out;
    }
    if (cli->json)
        print_raw(&resp);
    else
        printf("cancelling run %s\n", id);
    rc = EXIT_PASSED;
out:
    client_resp_clear(&w.last);
    client_resp_clear(&cur);
    client_resp_clear(&resp);
    return rc;
}

/* ---------------------------------------------------------------- compare */

static int cmd_compare(struct cli *cli)
{
    struct client_resp resp = {0};
    struct client_req req = {.method = "GET"};
    char err[512], path[768], query[320], esc[256], what[320];
    int rc;

    if (cli->npos != 2) {
        fail("compare needs a run ID and a BASE (a run ID or last_passed); see loadtest compare "
             "--help");
        return EXIT_USAGE;
    }
    if (client_escape(cli->pos[1], esc, sizeof(esc)) != 0) {
        fail("BASE '%.40s...' is too long", cli->pos[1]);
        return EXIT_USAGE;
    }
    snprintf(query, sizeof(query), "/compare?base=%s", esc);
    if (cli->max_regression_pct >= 0) {
        size_t n = strlen(query);
        snprintf(query + n, sizeof(query) - n, "&max_regression_pct=%.10g",
                 cli->max_regression_pct);
    }
    if (run_path(cli->pos[0], query, path, sizeof(path)) != 0)
        return EXIT_USAGE;
    if (make_client(cli) != 0)
        return EXIT_USAGE;
    /* The daemon compares (GET /v1/runs/{id}/compare): the same numbers as the verdict's
     * regression check and the dashboard. */
    req.path = path;
    snprintf(what, sizeof(what), "cannot compare run %.64s with %.64s", cli->pos[0], cli->pos[1]);
    if (client_send_retry(cli->client, &req, GET_RETRIES, &resp) != 0 || resp.status != 200) {
        rc = request_failed(cli, &resp, what);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        const json_t *ref = json_object_get(resp.json, i ? "base" : "run");
        const char *st = json_string_value(json_object_get(ref, "status"));
        if (st && strcmp(st, "passed") != 0 && strcmp(st, "failed") != 0)
            fail("warning: run %s is %s; its result is partial",
                 json_string_value(json_object_get(ref, "id")), st);
    }
    rc = report_compare(stdout, resp.json, cli->json, err, sizeof(err));
    if (rc == EXIT_USAGE)
        fail("cannot compare: %s", err);
out:
    client_resp_clear(&resp);
    return rc;
}

/* ---------------------------------------------------------------- help and parsing */

static const char exits_run[] =
    "Exit status:\n"
    "  0  the run passed (without --wait: the run was created)\n"
    "  1  the run completed and its verdict failed\n"
    "  2  the run ended error, cancelled or interrupted; or loadtest was interrupted or hit\n"
    "     --timeout (it then cancels the run unless --no-cancel)\n"
    "  3  usage error, bad spec file, the daemon refused the run (its message and field are\n"
    "     printed), the daemon could not be reached, or the --junit file could not be written\n";

static const char exits_status[] =
    "Exit status:\n"
    "  0  the run passed\n"
    "  1  the run failed its verdict\n"
    "  2  the run ended error, cancelled or interrupted\n"
    "  3  usage error, unknown run ID, or the daemon could not be reached\n"
    "  4  (without --wait) the run is still queued or running, so it has not passed yet\n";

static const char exits_list[] = "Exit status: 0 listed, 3 usage error or daemon unreachable.\n";

static const char exits_cancel[] =
    "Exit status: 0 the run is stopping, or had already finished (with --wait: it has ended);\n"
    "3 usage error, unknown run ID or daemon unreachable.\n";

static const char exits_compare[] =
    "Exit status: 0 no metric regressed beyond --max-regression-pct, 1 regression,\n"
    "3 usage error, unknown run or no last passed run, runs of different kinds or\n"
    "without a result, or daemon unreachable.\n";

static const struct command commands[] = {
    {"run", C_RUN, cmd_run,
     "loadtest run SPEC.json|- [options]\n       loadtest run --preset NAME [options]",
     "Submits a run (POST /v1/runs) and prints its id. With --wait, follows it until it ends,\n"
     "with a progress line on stderr (redrawn on a terminal, one line about every 5 s\n"
     "otherwise), then prints the verdict table and summary. The POST carries an\n"
     "Idempotency-Key and is retried up to 3 times on connection errors, timeouts, 5xx and\n"
     "429, so a retry never starts a second run.",
     exits_run},
    {"status", C_STATUS, cmd_status, "loadtest status ID [options]",
     "Prints a run: status, verdict table, result and summary (or the run document with\n"
     "--json). With --wait, follows it until it ends, as run --wait does.",
     exits_status},
    {"list", C_LIST, cmd_list, "loadtest list [options]",
     "Lists runs, newest first: id, kind, name, status, created_at and verdict summary.",
     exits_list},
    {"cancel", C_CANCEL, cmd_cancel, "loadtest cancel ID [options]",
     "Asks the daemon to stop a queued or running run; it ends `cancelled` keeping what it\n"
     "measured so far.",
     exits_cancel},
    {"compare", C_COMPARE, cmd_compare, "loadtest compare ID BASE|last_passed [options]",
     "Compares run ID with run BASE, or with the last passed run of the same preset (or\n"
     "name) for last_passed, through the daemon (GET /v1/runs/ID/compare): per-metric\n"
     "values, absolute and percent change (capacity: latency p50/p95/p99/max, service\n"
     "time p99, achieved_rps, error_rate; ratelimit and generate: their own). A regressed\n"
     "metric is marked \"!\"; the last line is the verdict.",
     exits_compare},
};

static void print_options(FILE *out, unsigned cmd)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
        const struct opt_def *o = &opt_defs[i];
        char head[64];
        const char *h;

        if (!(o->cmds & cmd))
            continue;
        if (o->shrt)
            snprintf(head, sizeof(head), "-%c, --%s%s%s", o->shrt, o->lng, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(head, sizeof(head), "    --%s%s%s", o->lng, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(out, "  %-30s ", head);
        for (h = o->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n')
                fprintf(out, "  %-30s ", "");
        }
        fputc('\n', out);
    }
}

static const char env_help[] =
    "Environment:\n"
    "  LOADTEST_SERVER   daemon URL when --server is not given (default " DEFAULT_SERVER ")\n"
    "  LOADTEST_TOKEN    API token, sent as Authorization: Bearer (never printed)\n";

static void usage_main(FILE *out)
{
    fprintf(out, "Usage: loadtest [--server URL] [-v] COMMAND [options]\n\n"
                 "The command-line client of loadtestd (load tests as a REST service).\n\n"
                 "Commands:\n"
                 "  run SPEC.json|-     start a run from a spec (--preset NAME: from a preset)\n"
                 "  status ID           show a run (--wait: follow it until it ends)\n"
                 "  list                list runs\n"
                 "  cancel ID           cancel a run\n"
                 "  compare ID BASE     compare a run with a base run (or last_passed)\n\n"
                 "Options:\n");
    print_options(out, C_NONE);
    fprintf(out,
            "\n%s\n"
            "Exit status: 0 passed, 1 verdict failed, 2 run error/cancelled/interrupted,\n"
            "3 usage or connection problem, 4 (status) not finished yet.\n"
            "`loadtest COMMAND --help` describes each command.\n",
            env_help);
}

static void usage_command(FILE *out, const struct command *c)
{
    fprintf(out, "Usage: %s\n\n%s\n\nOptions:\n", c->usage, c->about);
    print_options(out, c->bit);
    fprintf(out, "\n%s\n%s", env_help, c->exits);
}

static int parse_double(const char *opt, const char *s, double min, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min) {
        fail("--%s wants a number >= %g, not '%s'", opt, min, s);
        return -1;
    }
    *out = v;
    return 0;
}

static const struct opt_def *find_opt(const char *lng, char shrt, unsigned cmd)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
        const struct opt_def *o = &opt_defs[i];
        if (!(o->cmds & cmd))
            continue;
        if ((lng && strcmp(o->lng, lng) == 0) || (!lng && shrt && o->shrt == shrt))
            return o;
    }
    return NULL;
}

static int apply_opt(struct cli *cli, const struct opt_def *o, const char *val)
{
    switch (o->id) {
    case O_HELP:
        cli->help = 1;
        break;
    case O_VERSION:
        printf("loadtest %s\n", LT_VERSION);
        exit(EXIT_PASSED);
    case O_SERVER:
        cli->server = val;
        break;
    case O_VERBOSE:
        cli->verbose = 1;
        break;
    case O_JSON:
        cli->json = 1;
        break;
    case O_WAIT:
        cli->wait = 1;
        break;
    case O_NO_CANCEL:
        cli->no_cancel = 1;
        break;
    case O_SET:
        cli->sets[cli->nsets++] = val;
        break;
    case O_NAME:
        cli->name = val;
        break;
    case O_PRESET:
        cli->preset = val;
        break;
    case O_JUNIT:
        cli->junit = val;
        break;
    case O_IKEY:
        cli->ikey = val;
        break;
    case O_KIND:
        cli->kind = val;
        break;
    case O_STATUS:
        cli->status = val;
        break;
    case O_TIMEOUT:
        if (parse_double(o->lng, val, 0.001, &cli->timeout_s) != 0)
            return -1;
        break;
    case O_MAX_REGRESSION:
        if (parse_double(o->lng, val, 0, &cli->max_regression_pct) != 0)
            return -1;
        if (cli->max_regression_pct > 1000) {
            fail("--%s wants a number from 0 to 1000, not '%s'", o->lng, val);
            return -1;
        }
        break;
    case O_LIMIT:
    case O_PAGE_SIZE: {
        double v = 0, max = o->id == O_LIMIT ? 1e7 : LIST_PAGE_MAX;
        if (parse_double(o->lng, val, 1, &v) != 0)
            return -1;
        if (v != floor(v) || v > max) {
            fail("--%s wants a whole number from 1 to %.0f, not '%s'", o->lng, max, val);
            return -1;
        }
        if (o->id == O_LIMIT)
            cli->limit = (long)v;
        else
            cli->page_size = (long)v;
        break;
    }
    }
    return 0;
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* Parses argv into cli. Options may come before or after the command and its arguments;
 * "--" ends options; "-" is an argument (stdin). Returns the command, or NULL with *rc set. */
static const struct command *parse_args(int argc, char **argv, struct cli *cli, int *rc)
{
    const struct command *cmd = NULL;
    int only_args = 0;

    *rc = EXIT_USAGE;
    cli->cmd = C_NONE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct opt_def *o = NULL;
        const char *val = NULL;
        char name[64];

        if (only_args || a[0] != '-' || a[1] == '\0') {
            if (cmd == NULL) {
                cmd = find_command(a);
                if (cmd == NULL) {
                    fail("unknown command '%s'; the commands are run, status, list, cancel, "
                         "compare (see loadtest --help)",
                         a);
                    return NULL;
                }
                cli->cmd = cmd->bit;
                cli->cmd_name = cmd->name;
            } else if (cli->npos < sizeof(cli->pos) / sizeof(cli->pos[0])) {
                cli->pos[cli->npos++] = a;
            } else {
                fail("too many arguments for %s", cmd->name);
                return NULL;
            }
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            snprintf(name, sizeof(name), "%.*s", (int)n, a + 2);
            o = find_opt(name, 0, cli->cmd);
            if (eq)
                val = eq + 1;
        } else if (a[2] == '\0') {
            snprintf(name, sizeof(name), "%c", a[1]);
            o = find_opt(NULL, a[1], cli->cmd);
        } else {
            snprintf(name, sizeof(name), "%s", a + 1);
        }
        if (o == NULL) {
            if (cmd)
                fail("%s: unknown option %s (see loadtest %s --help)", cmd->name, a, cmd->name);
            else
                fail("unknown option %s before the command (see loadtest --help)", a);
            return NULL;
        }
        if (o->arg && val == NULL) {
            if (i + 1 >= argc) {
                fail("--%s needs a value (%s)", o->lng, o->arg);
                return NULL;
            }
            val = argv[++i];
        } else if (!o->arg && val) {
            fail("--%s takes no value", o->lng);
            return NULL;
        }
        if (apply_opt(cli, o, val) != 0)
            return NULL;
    }
    if (cli->help) {
        if (cmd)
            usage_command(stdout, cmd);
        else
            usage_main(stdout);
        *rc = EXIT_PASSED;
        return NULL;
    }
    if (cmd == NULL) {
        usage_main(stderr);
        return NULL;
    }
    return cmd;
}

int main(int argc, char **argv)
{
    struct cli cli;
    const struct command *cmd;
    struct sigaction sa;
    int rc;

    memset(&cli, 0, sizeof(cli));
    cli.max_regression_pct = -1; /* not given: the daemon's default */
    cli.sets = calloc((size_t)argc + 1, sizeof(char *));
    if (cli.sets == NULL) {
        fail("out of memory");
        return EXIT_USAGE;
    }
    cmd = parse_args(argc, argv, &cli, &rc);
    if (cmd == NULL) {
        free(cli.sets);
        return rc;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fail("libcurl failed to initialise");
        free(cli.sets);
        return EXIT_USAGE;
    }

    rc = cmd->run(&cli);
    if (rc == EXIT_PASSED && fflush(stdout) != 0) {
        fail("cannot write the output: %s", strerror(errno));
        rc = EXIT_USAGE;
    }
    client_free(cli.client);
    curl_global_cleanup();
    free(cli.sets);
    return rc;
}
