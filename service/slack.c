/*
 * slack: the Slack slash command endpoint (see slack.h). The handler runs on an HTTP thread and
 * never waits for a run: `run` starts one through presets_start_run (and so routes_submit_run)
 * and leaves the verdict to the notifier, which POSTs it to Slack's response_url when the run
 * ends. Every answer is Slack's JSON {"response_type", "text"} with status 200, even for a
 * command it cannot carry out (Slack shows a non-200 as a failure of the app); only a request
 * that is not from Slack (bad signature) gets 401, and a malformed form with a good signature
 * 400.
 */
#define _GNU_SOURCE
#include "slack.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_allow.h"
#include "lt_sha256.h"
#include "lt_util.h"
#include "notify.h"
#include "presets.h"
#include "routes.h"
#include "runner.h"
#include "target_spec.h"

/* ---- form ------------------------------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 when s (n bytes) is valid UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k) /* the sequence is cut off */
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Decodes in[0..len) into out (at least len + 1 bytes). Returns the decoded length, or -1 on a
 * bad %-escape or a decoded NUL. */
static long form_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3 || hexval((unsigned char)in[i + 1]) < 0 ||
                hexval((unsigned char)in[i + 2]) < 0)
                return -1;
            c = (char)(hexval((unsigned char)in[i + 1]) * 16 + hexval((unsigned char)in[i + 2]));
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

void slack_form_clear(struct slack_form *f)
{
    free(f->buf);
    memset(f, 0, sizeof(*f));
}

lt_status slack_form_parse(const char *body, size_t len, struct slack_form *f, struct lt_error *err)
{
    size_t pos = 0, used = 0;
    lt_status st = LT_OK;

    memset(f, 0, sizeof(*f));
    if (len > SLACK_FORM_MAX_BYTES)
        return lt_error_set(err, LT_ERR_PAYLOAD_TOO_LARGE, NULL,
                            "a slash command form is at most %d bytes", SLACK_FORM_MAX_BYTES);
    /* Decoding never grows a string; each of key and value gets its NUL. */
    f->buf = malloc(len * 2 + 2);
    if (f->buf == NULL)
        return lt_error_set(err, LT_ERR_NOMEM, NULL, "out of memory");
    while (pos < len) {
        const char *pair = body + pos;
        const char *amp = memchr(pair, '&', len - pos);
        size_t plen = amp ? (size_t)(amp - pair) : len - pos;
        pos += plen + 1;
        if (plen == 0)
            continue;
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        const char *v = eq ? eq + 1 : pair + plen;
        size_t vlen = eq ? plen - klen - 1 : 0;
        if (f->n == SLACK_FORM_MAX_PAIRS) {
            st = lt_error_set(err, LT_ERR_INVALID_PARAM, NULL, "the form has more than %d fields",
                              SLACK_FORM_MAX_PAIRS);
            goto fail;
        }
        char *k = f->buf + used;
        long kn = form_decode(pair, klen, k);
        if (kn <= 0 || kn > SLACK_FORM_MAX_KEY || !utf8_ok((unsigned char *)k, (size_t)kn)) {
            st = lt_error_set(err, LT_ERR_INVALID_PARAM, NULL,
                              "form field %zu has an empty, overlong or badly encoded name",
                              f->n + 1);
            goto fail;
        }
        used += (size_t)kn + 1;
        char *val = f->buf + used;
        long vn = form_decode(v, vlen, val);
        if (vn < 0 || !utf8_ok((unsigned char *)val, (size_t)vn)) {
            st = lt_error_set(err, LT_ERR_INVALID_PARAM, k,
                              "form field '%s' is badly encoded (%%-escapes, NUL or UTF-8)", k);
            goto fail;
        }
        used += (size_t)vn + 1;
        f->key[f->n] = k;
        f->val[f->n] = val;
        f->n++;
    }
    return LT_OK;
fail:
    slack_form_clear(f);
    return st;
}

const char *slack_form_get(const struct slack_form *f, const char *key, int *count)
{
    const char *first = NULL;
    int n = 0;

    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->key[i], key) == 0) {
            if (first == NULL)
                first = f->val[i];
            n++;
        }
    }
    if (count)
        *count = n;
    return first;
}

/* ---- signature ------------------------------------------------------------------------------- */

enum slack_sig slack_verify(const char *secret, size_t secret_len, const char *ts, const char *sig,
                            const char *body, size_t len, int64_t now_s)
{
    unsigned char want[LT_SHA256_LEN], got[LT_SHA256_LEN];
    size_t tlen;
    int64_t t = 0;
    char *msg;

    if (ts == NULL || ts[0] == '\0' || sig == NULL || sig[0] == '\0')
        return SLACK_SIG_MISSING;
    tlen = strlen(ts);
    if (tlen > 12)
        return SLACK_SIG_BAD_TIMESTAMP;
    for (size_t i = 0; i < tlen; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return SLACK_SIG_BAD_TIMESTAMP;
        t = t * 10 + (ts[i] - '0');
    }
    if (t > now_s + SLACK_MAX_SKEW_S || t < now_s - SLACK_MAX_SKEW_S)
        return SLACK_SIG_STALE;
    if (strncmp(sig, "v0=", 3) != 0 || strlen(sig) != 3 + 2 * LT_SHA256_LEN)
        return SLACK_SIG_MISMATCH;
    for (size_t i = 0; i < LT_SHA256_LEN; i++) {
        int hi = hexval((unsigned char)sig[3 + 2 * i]);
        int lo = hexval((unsigned char)sig[4 + 2 * i]);
        if (hi < 0 || lo < 0)
            return SLACK_SIG_MISMATCH;
        got[i] = (unsigned char)(hi * 16 + lo);
    }
    msg = malloc(3 + tlen + 1 + len);
    if (msg == NULL)
        return SLACK_SIG_NOMEM;
    memcpy(msg, "v0:", 3);
    memcpy(msg + 3, ts, tlen);
    msg[3 + tlen] = ':';
    if (len)
        memcpy(msg + 4 + tlen, body, len);
    lt_hmac_sha256(secret, secret_len, msg, 4 + tlen + len, want);
    free(msg);
    return lt_ct_equal(want, got, LT_SHA256_LEN) ? SLACK_SIG_OK : SLACK_SIG_MISMATCH;
}

/* ---- command grammar ------------------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 when s is 1..max characters of [A-Za-z0-9] and the characters in extra. */
static int word_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr(extra, c)))
            return 0;
    }
    return 1;
}

/* Sets key (a dotted path) to value in patch. Takes value. Returns 0 or -1 with cmd->error. */
static int patch_set(json_t *patch, const char *key, json_t *value, struct slack_command *cmd)
{
    char path[160];
    char *save = NULL;
    json_t *node = patch;
    int depth = 0;

    if (strlen(key) >= sizeof(path) || !word_ok(key, sizeof(path) - 1, "_.-") || key[0] == '.' ||
        key[strlen(key) - 1] == '.' || strstr(key, "..")) {
        snprintf(cmd->error, sizeof(cmd->error),
                 "'%.64s' is not a key: use a dotted path such as load.users", key);
        json_decref(value);
        return -1;
    }
    snprintf(path, sizeof(path), "%s", key);
    char *seg = strtok_r(path, ".", &save);
    while (seg) {
        char *next = strtok_r(NULL, ".", &save);
        if (++depth > 8) {
            snprintf(cmd->error, sizeof(cmd->error), "key '%.64s' is nested too deeply", key);
            json_decref(value);
            return -1;
        }
        json_t *child = json_object_get(node, seg);
        if (next == NULL) {
            if (child != NULL) {
                snprintf(cmd->error, sizeof(cmd->error), "key '%.64s' is given twice", key);
                json_decref(value);
                return -1;
            }
            json_object_set_new(node, seg, value);
            return 0;
        }
        if (child == NULL) {
            child = json_object();
            json_object_set_new(node, seg, child);
        } else if (!json_is_object(child)) {
            snprintf(cmd->error, sizeof(cmd->error), "key '%.64s' conflicts with an earlier one",
                     key);
            json_decref(value);
            return -1;
        }
        node = child;
        seg = next;
    }
    json_decref(value);
    return -1;
}

void slack_command_clear(struct slack_command *cmd)
{
    json_decref(cmd->overrides);
    memset(cmd, 0, sizeof(*cmd));
}

__attribute__((format(printf, 2, 3))) static void command_error(struct slack_command *cmd,
                                                                const char *fmt, ...)
{
    va_list ap;

    json_decref(cmd->overrides);
    cmd->overrides = NULL;
    cmd->verb = SLACK_HELP;
    cmd->arg[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(cmd->error, sizeof(cmd->error), fmt, ap);
    va_end(ap);
}

void slack_command_parse(const char *text, struct slack_command *cmd)
{
    char buf[SLACK_TEXT_MAX + 1];
    char *tok[2 + SLACK_MAX_OVERRIDES];
    int n = 0;

    memset(cmd, 0, sizeof(*cmd));
    if (strlen(text) > SLACK_TEXT_MAX) {
        command_error(cmd, "the command is longer than %d characters", SLACK_TEXT_MAX);
        return;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *p = buf; *p;) {
        while (is_space(*p))
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (n == (int)(sizeof(tok) / sizeof(tok[0]))) {
            command_error(cmd, "too many words: at most %d key=value settings",
                          SLACK_MAX_OVERRIDES);
            return;
        }
        tok[n++] = p;
        /* A double-quoted stretch keeps its spaces (name="nightly run"); the quotes stay, so
         * the value then parses as a JSON string. */
        int quoted = 0;
        while (*p && (quoted || !is_space(*p))) {
            if (*p == '"')
                quoted = !quoted;
            else if (*p == '\\' && quoted && p[1])
                p++;
            p++;
        }
        if (quoted) {
            command_error(cmd, "a double quote is not closed");
            return;
        }
    }
    if (n == 0 || strcasecmp(tok[0], "help") == 0) {
        cmd->verb = SLACK_HELP;
        return;
    }
    const char *verb = tok[0];
    if (strcasecmp(verb, "run") == 0)
        cmd->verb = SLACK_RUN;
    else if (strcasecmp(verb, "status") == 0)
        cmd->verb = SLACK_STATUS;
    else if (strcasecmp(verb, "last") == 0)
        cmd->verb = SLACK_LAST;
    else if (strcasecmp(verb, "cancel") == 0)
        cmd->verb = SLACK_CANCEL;
    else {
        command_error(cmd, "unknown command '%.32s'", verb);
        return;
    }
    if (n < 2) {
        command_error(cmd, "'%s' needs an argument", verb);
        return;
    }
    int is_id = cmd->verb == SLACK_STATUS || cmd->verb == SLACK_CANCEL;
    if (!word_ok(tok[1], is_id ? LT_ID_SIZE - 1 : SLACK_ARG_MAX, is_id ? "_-" : "_.-")) {
        command_error(cmd, "'%.64s' is not a %s", tok[1], is_id ? "run id" : "preset name");
        return;
    }
    snprintf(cmd->arg, sizeof(cmd->arg), "%s", tok[1]);
    if (cmd->verb != SLACK_RUN) {
        if (n > 2)
            command_error(cmd, "'%s' takes one argument", verb);
        return;
    }
    cmd->overrides = json_object();
    for (int i = 2; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        if (eq == NULL || eq == tok[i]) {
            command_error(cmd, "'%.64s' is not key=value", tok[i]);
            return;
        }
        *eq = '\0';
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (v == NULL)
            v = json_string(eq + 1);
        if (v == NULL) {
            command_error(cmd, "the value of '%.64s' is not valid text", tok[i]);
            return;
        }
        if (patch_set(cmd->overrides, tok[i], v, cmd) != 0) {
            char why[sizeof(cmd->error)];
            snprintf(why, sizeof(why), "%s", cmd->error);
            command_error(cmd, "%s", why);
            return;
        }
    }
}

/* ---- secret ---------------------------------------------------------------------------------- */

int slack_secret_load(const char *file, const char *env_value, char *out, size_t outlen,
                      size_t *len, char *errbuf, size_t errlen)
{
    size_t n = 0;

    *len = 0;
    out[0] = '\0';
    if (file && file[0]) {
        FILE *f = fopen(file, "rb");
        if (f == NULL) {
            snprintf(errbuf, errlen, "--slack-signing-secret %s: %s", file, strerror(errno));
            return -1;
        }
        n = fread(out, 1, outlen - 1, f);
        int more = fgetc(f) != EOF;
        fclose(f);
        if (more) {
            explicit_bzero(out, outlen);
            snprintf(errbuf, errlen, "--slack-signing-secret %s: longer than %zu bytes", file,
                     outlen - 2);
            return -1;
        }
    } else if (env_value && env_value[0]) {
        n = strlen(env_value);
        if (n >= outlen) {
            snprintf(errbuf, errlen, "LOADTESTD_SLACK_SIGNING_SECRET: longer than %zu bytes",
                     outlen - 1);
            return -1;
        }
        memcpy(out, env_value, n);
    } else {
        return 0;
    }
    out[n] = '\0';
    while (n > 0 && is_space(out[n - 1]))
        out[--n] = '\0';
    if (n == 0 || memchr(out, '\0', n) != NULL) {
        explicit_bzero(out, outlen);
        snprintf(errbuf, errlen, "the Slack signing secret %s%s is empty or holds a NUL byte",
                 file && file[0] ? "in " : "", file && file[0] ? file : "");
        return -1;
    }
    *len = n;
    return 0;
}

void slack_secret_forget_env(void)
{
    char *v = getenv("LOADTESTD_SLACK_SIGNING_SECRET");

    if (v != NULL)
        explicit_bzero(v, strlen(v));
    unsetenv("LOADTESTD_SLACK_SIGNING_SECRET");
}

/* ---- the handler ----------------------------------------------------------------------------- */

static void answer(struct http_response *resp, int in_channel, const char *text)
{
    resp->status = 200;
    resp->body = json_pack("{s:s, s:s}", "response_type", in_channel ? "in_channel" : "ephemeral",
                           "text", text);
}

static const char help_text[] =
    "Usage of the loadtestd command:\n"
    "• `run PRESET [key=value ...]` starts a run of a saved preset; each key is a dotted path "
    "of the spec (`load.users=50`), each value JSON or text. The verdict is posted here when "
    "the run ends.\n"
    "• `status ID` shows a run.\n"
    "• `last PRESET` shows the newest run of a preset.\n"
    "• `cancel ID` stops a run.\n"
    "• `help` shows this.";

/* One line on run r: "`ID` (kind, name): *status* 45% — summary". */
static void describe_run(const struct run_record *r, char *out, size_t cap)
{
    char line[160];
    json_t *v = r->verdict_json ? json_loads(r->verdict_json, 0, NULL) : NULL;
    json_t *e = r->error_json ? json_loads(r->error_json, 0, NULL) : NULL;
    json_t *p = r->progress_json ? json_loads(r->progress_json, 0, NULL) : NULL;

    snprintf(line, sizeof(line), "Run `%s` (%s", r->id, r->kind);
    notify_mrkdwn_append(out, cap, line);
    if (r->name) {
        notify_mrkdwn_append(out, cap, ", ");
        notify_mrkdwn_append(out, cap, r->name);
    }
    snprintf(line, sizeof(line), "): *%s*", run_status_name(r->status));
    notify_mrkdwn_append(out, cap, line);
    if (r->status == RUN_RUNNING && json_is_number(json_object_get(p, "fraction"))) {
        snprintf(line, sizeof(line), " %.0f%%",
                 100.0 * json_number_value(json_object_get(p, "fraction")));
        notify_mrkdwn_append(out, cap, line);
    }
    const char *summary = json_string_value(json_object_get(v, "summary"));
    const char *emsg = json_string_value(json_object_get(e, "message"));
    if (summary || emsg) {
        notify_mrkdwn_append(out, cap, " — ");
        notify_mrkdwn_append(out, cap, summary ? summary : emsg);
    }
    json_decref(v);
    json_decref(e);
    json_decref(p);
}

static void do_status(struct http_request *req, struct http_response *resp, const char *id)
{
    struct run_record r;
    char text[1024] = "";
    lt_status st;

    memset(&r, 0, sizeof(r));
    st = store_get_run(req->app->store, id, &r);
    if (st == LT_OK) {
        snprintf(req->log_run, sizeof(req->log_run), "%s", r.id);
        describe_run(&r, text, sizeof(text));
        run_record_clear(&r);
    } else if (st == LT_ERR_NOT_FOUND) {
        snprintf(text, sizeof(text), "No run with id `%s`.", id);
    } else {
        snprintf(text, sizeof(text), "The run store cannot be read (%s); try again.",
                 lt_status_code(st));
    }
    answer(resp, 0, text);
}

static void do_cancel(struct http_request *req, struct http_response *resp, const char *id)
{
    struct run_record r;
    char text[1024] = "";
    lt_status st;

    memset(&r, 0, sizeof(r));
    st = store_get_run(req->app->store, id, &r);
    if (st == LT_ERR_NOT_FOUND) {
        snprintf(text, sizeof(text), "No run with id `%s`.", id);
        answer(resp, 0, text);
        return;
    }
    if (st != LT_OK) {
        snprintf(text, sizeof(text), "The run store cannot be read (%s); try again.",
                 lt_status_code(st));
        answer(resp, 0, text);
        return;
    }
    snprintf(req->log_run, sizeof(req->log_run), "%s", r.id);
    if (run_status_is_final(r.status) ||
        (st = pool_cancel(req->app->pool, r.id)) == LT_ERR_NOT_FOUND) {
        snprintf(text, sizeof(text), "Run `%s` has already ended.", r.id);
        answer(resp, 0, text);
    } else if (st != LT_OK) {
        snprintf(text, sizeof(text), "Run `%s` could not be cancelled (%s).", r.id,
                 lt_status_code(st));
        answer(resp, 0, text);
    } else {
        snprintf(text, sizeof(text),
                 "Cancelling run `%s`; it ends as cancelled with what it "
                 "measured so far.",
                 r.id);
        answer(resp, 1, text);
    }
    run_record_clear(&r);
}

struct last_ctx {
    char text[1024];
    int found;
};

static int last_cb(void *opaque, const struct run_record *r)
{
    struct last_ctx *c = opaque;

    describe_run(r, c->text, sizeof(c->text));
    c->found = 1;
    return 1;
}

static void do_last(struct http_request *req, struct http_response *resp, const char *preset)
{
    struct run_filter f = {.status = -1, .preset = preset, .limit = 1};
    struct last_ctx c;
    lt_status st;

    memset(&c, 0, sizeof(c));
    st = store_list_runs(req->app->store, &f, last_cb, &c, NULL);
    if (st != LT_OK)
        snprintf(c.text, sizeof(c.text), "The run store cannot be read (%s); try again.",
                 lt_status_code(st));
    else if (!c.found)
        snprintf(c.text, sizeof(c.text), "No run of preset `%s` yet.", preset);
    answer(resp, 0, c.text);
}

/* 1 when s is a usable Idempotency-Key part (Slack's trigger_id: digits, dots, hex). */
static int trigger_ok(const char *s)
{
    return s && word_ok(s, 200, "._-");
}

static void do_run(struct http_request *req, struct http_response *resp,
                   const struct slack_form *form, struct slack_command *cmd)
{
    struct app *app = req->app;
    const char *response_url = slack_form_get(form, "response_url", NULL);
    const char *trigger = slack_form_get(form, "trigger_id", NULL);
    struct notify_target t;
    struct run_record rec;
    struct lt_error err;
    char ikey[256];
    char text[1024] = "";
    char tail[256];
    char host[256];
    int port = 0, replayed = 0;
    lt_status st, watch = LT_OK;

    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));
    memset(&t, 0, sizeof(t));
    if (response_url && response_url[0]) {
        /* Slack's response_url is a webhook like any other: it must be on the allowlist, or the
         * verdict could never be posted (and the allowlist would be moot). */
        if (strlen(response_url) > NOTIFY_URL_MAX ||
            target_spec_check_url(response_url, "response_url", &err) != LT_OK ||
            runner_url_host(response_url, host, sizeof(host), &port) != 0) {
            answer(resp, 0, "Not started: Slack's response_url is not a usable http(s) URL.");
            return;
        }
        struct lt_allow *allow = lt_allow_slot_get(app->allow_slot);
        int allowed = lt_allow_host(allow, host, port);
        lt_allow_free(allow);
        if (!allowed) {
            snprintf(text, sizeof(text),
                     "Not started: the verdict could not be posted back, because %.200s port %d "
                     "(Slack's response_url) is not on loadtestd's target allowlist. Ask the "
                     "operator to add it (--allow-target).",
                     host, port);
            answer(resp, 0, text);
            return;
        }
        snprintf(t.url, sizeof(t.url), "%s", response_url);
        t.format = NOTIFY_FORMAT_SLACK;
        t.events = NOTIFY_EVENT_FINISHED;
        t.origin = "slack_response_url";
    }
    /* Slack gives each invocation its own trigger_id: as the Idempotency-Key it makes a replayed
     * request (within the signature's 5 minutes) answer the same run instead of a second one. */
    if (trigger_ok(trigger))
        snprintf(ikey, sizeof(ikey), "slack-%s", trigger);
    st = presets_start_run(app, cmd->arg, cmd->overrides, trigger_ok(trigger) ? ikey : NULL, &rec,
                           &replayed, &err);
    if (st != LT_OK) {
        snprintf(text, sizeof(text), "Could not start preset `%s`: ", cmd->arg);
        notify_mrkdwn_append(text, sizeof(text), err.message);
        if (err.field[0]) {
            notify_mrkdwn_append(text, sizeof(text), " (field ");
            notify_mrkdwn_append(text, sizeof(text), err.field);
            notify_mrkdwn_append(text, sizeof(text), ")");
        }
        answer(resp, 0, text);
        return;
    }
    snprintf(req->log_run, sizeof(req->log_run), "%s", rec.id);
    if (t.url[0] && !replayed && (watch = notifier_watch(app->notifier, rec.id, &t)) != LT_OK)
        lt_log("warn", "chatops", "command=run preset=%s run=%s outcome=not_watched reason=%s",
               cmd->arg, rec.id, lt_status_code(watch));
    snprintf(text, sizeof(text), "%s run `%s` of preset `%s` (%s).",
             replayed ? "Already started:" : "Started", rec.id, cmd->arg, rec.kind);
    if (t.url[0] && watch == LT_OK) {
        notify_mrkdwn_append(text, sizeof(text), " The verdict follows here when it ends.");
    } else if (t.url[0]) {
        snprintf(tail, sizeof(tail),
                 " The verdict cannot be posted back here (too many notifications are pending); "
                 "the run goes on: follow it with `status %s`.",
                 rec.id);
        notify_mrkdwn_append(text, sizeof(text), tail);
    }
    answer(resp, 1, text);
    lt_log("info", "chatops", "command=run preset=%s run=%s replayed=%d", cmd->arg, rec.id,
           replayed);
    run_record_clear(&rec);
}

void slack_h_command(struct http_request *req, struct http_response *resp)
{
    struct app *app = req->app;
    struct slack_form form;
    struct slack_command cmd;
    struct lt_error err;
    char text[1024] = "";
    enum slack_sig sig;
    int count = 0;

    memset(&form, 0, sizeof(form));
    memset(&cmd, 0, sizeof(cmd));
    memset(&err, 0, sizeof(err));
    if (app->slack_secret == NULL) {
        http_fail(resp, LT_ERR_NOT_FOUND, NULL,
                  "chat-ops is not configured: start loadtestd with --slack-signing-secret FILE "
                  "or LOADTESTD_SLACK_SIGNING_SECRET");
        return;
    }
    sig = slack_verify(
        app->slack_secret, app->slack_secret_len, http_header(req, "X-Slack-Request-Timestamp"),
        http_header(req, "X-Slack-Signature"), req->body, req->body_len, lt_now_ms() / 1000);
    switch (sig) {
    case SLACK_SIG_OK:
        break;
    case SLACK_SIG_MISSING:
        http_fail(resp, LT_ERR_UNAUTHORIZED, NULL,
                  "X-Slack-Signature and X-Slack-Request-Timestamp are required");
        return;
    case SLACK_SIG_BAD_TIMESTAMP:
    case SLACK_SIG_STALE:
        http_fail(resp, LT_ERR_UNAUTHORIZED, "X-Slack-Request-Timestamp",
                  "X-Slack-Request-Timestamp must be the current time in seconds (within %d s)",
                  SLACK_MAX_SKEW_S);
        return;
    case SLACK_SIG_MISMATCH:
        http_fail(resp, LT_ERR_UNAUTHORIZED, "X-Slack-Signature",
                  "the Slack request signature does not match");
        return;
    case SLACK_SIG_NOMEM:
        http_fail(resp, LT_ERR_INTERNAL, NULL,
                  "out of memory while checking the Slack request signature");
        return;
    }
    if (slack_form_parse(req->body, req->body_len, &form, &err) != LT_OK) {
        http_error(resp, &err);
        return;
    }
    static const char *const single[] = {"text", "response_url", "trigger_id", NULL};
    for (const char *const *k = single; *k; k++) {
        slack_form_get(&form, *k, &count);
        if (count > 1) {
            http_fail(resp, LT_ERR_INVALID_PARAM, *k, "form field '%s' is given %d times", *k,
                      count);
            goto out;
        }
    }
    const char *cmd_text = slack_form_get(&form, "text", NULL);
    slack_command_parse(cmd_text ? cmd_text : "", &cmd);
    switch (cmd.verb) {
    case SLACK_HELP:
        if (cmd.error[0]) {
            notify_mrkdwn_append(text, sizeof(text), cmd.error);
            notify_mrkdwn_append(text, sizeof(text), ".\n");
        }
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s", help_text);
        answer(resp, 0, text);
        break;
    case SLACK_RUN:
        do_run(req, resp, &form, &cmd);
        break;
    case SLACK_STATUS:
        do_status(req, resp, cmd.arg);
        break;
    case SLACK_LAST:
        do_last(req, resp, cmd.arg);
        break;
    case SLACK_CANCEL:
        do_cancel(req, resp, cmd.arg);
        break;
    }
out:
    slack_command_clear(&cmd);
    slack_form_clear(&form);
}
