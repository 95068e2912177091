/*
 * slack: the Slack slash command endpoint, POST /v1/chatops/slack. Three pure parts that the fuzz
 * target and the unit tests drive directly — the application/x-www-form-urlencoded parser, the
 * request signature check, the command grammar — and the route handler that ties them to runs.
 *
 * Authentication is Slack's request signature, not our bearer token (Slack cannot send one):
 *   X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" + body))
 * compared in constant time; a timestamp more than SLACK_MAX_SKEW_S from now either way is
 * refused, so a captured request cannot be replayed later.
 */
#ifndef LT_SLACK_H
#define LT_SLACK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "lt_status.h"

#define SLACK_SECRET_MAX     256   /* bytes of a signing secret */
#define SLACK_FORM_MAX_BYTES 65536 /* a slash command body is a few hundred bytes */
#define SLACK_FORM_MAX_PAIRS 64
#define SLACK_FORM_MAX_KEY   64
#define SLACK_TEXT_MAX       4000 /* Slack's own limit on the command text */
#define SLACK_MAX_OVERRIDES  32
#define SLACK_MAX_SKEW_S     300
#define SLACK_ARG_MAX        63

/* A decoded form: n pairs of NUL-terminated, valid UTF-8 strings pointing into buf. */
struct slack_form {
    size_t n;
    const char *key[SLACK_FORM_MAX_PAIRS];
    const char *val[SLACK_FORM_MAX_PAIRS];
    char *buf; /* owned */
};

/* Decodes an application/x-www-form-urlencoded body (len bytes; need not be NUL-terminated):
 * pairs split on '&' (empty ones skipped), key and value on the first '=', '+' is a space, %XX a
 * byte. Refused (err names the key when it can): a body over SLACK_FORM_MAX_BYTES, more than
 * SLACK_FORM_MAX_PAIRS pairs, an empty or overlong key, a bad %-escape, a NUL byte or invalid
 * UTF-8 after decoding. Duplicate keys are kept (see slack_form_get). On failure f is empty. */
lt_status slack_form_parse(const char *body, size_t len, struct slack_form *f,
                           struct lt_error *err);
void slack_form_clear(struct slack_form *f);

/* The first value of key (borrowed from f) or NULL; *count (may be NULL) receives how many
 * times key occurs. */
const char *slack_form_get(const struct slack_form *f, const char *key, int *count);

enum slack_sig {
    SLACK_SIG_OK = 0,
    SLACK_SIG_MISSING,       /* a header is absent or empty */
    SLACK_SIG_BAD_TIMESTAMP, /* not a plain decimal number of seconds */
    SLACK_SIG_STALE,         /* more than SLACK_MAX_SKEW_S away from now_s */
    SLACK_SIG_MISMATCH,      /* malformed, or not the HMAC of this body */
    SLACK_SIG_NOMEM,         /* out of memory: not checked (the caller answers 500) */
};

/* Checks a request's signature headers ts and sig (may be NULL) over body (len bytes) with the
 * signing secret (secret_len bytes), at wall-clock time now_s. Time taken does not depend on how
 * much of the signature is right. */
enum slack_sig slack_verify(const char *secret, size_t secret_len, const char *ts, const char *sig,
                            const char *body, size_t len, int64_t now_s);

enum slack_verb { SLACK_HELP = 0, SLACK_RUN, SLACK_STATUS, SLACK_LAST, SLACK_CANCEL };

struct slack_command {
    enum slack_verb verb;
    char arg[SLACK_ARG_MAX + 1]; /* PRESET (run, last) or ID (status, cancel) */
    json_t *overrides;           /* run: the merge patch built from key=value (owned), else NULL */
    char error[256];             /* non-empty when the text was not understood (verb is HELP) */
};

/* Parses the text of a command (NUL-terminated, at most SLACK_TEXT_MAX bytes):
 *   run PRESET [key=value ...] | status ID | last PRESET | cancel ID | help
 * key is a dotted path (load.users), value JSON when it parses as JSON, else a string. Anything
 * else gives SLACK_HELP with cmd->error saying why. Always fills cmd; clear it with
 * slack_command_clear. */
void slack_command_parse(const char *text, struct slack_command *cmd);
void slack_command_clear(struct slack_command *cmd);

/* Reads the signing secret: from file (when non-empty; trailing whitespace stripped) else from
 * env_value (may be ""). Writes it to out (outlen bytes, NUL-terminated) and its length to *len
 * (0: chat-ops disabled). Returns 0, or -1 with a message (never the secret) in errbuf. */
int slack_secret_load(const char *file, const char *env_value, char *out, size_t outlen,
                      size_t *len, char *errbuf, size_t errlen);

/* Removes LOADTESTD_SLACK_SIGNING_SECRET from the environment once it is read: its value is
 * overwritten with NUL bytes where it lies (so /proc/PID/environ of the daemon no longer shows
 * it) and the variable is unset (so a child process never inherits it). The file form
 * (--slack-signing-secret FILE) never puts the secret in the environment and is preferred. */
void slack_secret_forget_env(void);

/* The route handler of POST /v1/chatops/slack. */
void slack_h_command(struct http_request *req, struct http_response *resp);

#endif
