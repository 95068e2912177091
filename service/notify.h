/*
 * notify: completion webhooks. A run whose spec carries
 *   "notify": {"webhook_url": "http://...", "format": "json"|"slack", "events": ["finished"]}
 * (or a chat-ops command that remembers Slack's response_url) is watched; when it ends, the
 * notifier's one thread POSTs a summary of the run to the URL, with retries and backoff. See the
 * DESIGN comment in notify.c for the thread, its queue and its lock.
 *
 * The spec half (notify_validate, notify_mask) is pure JSON work used by spec.c; the notifier
 * itself is created by main.c and reached through struct app.
 */
#ifndef LT_NOTIFY_H
#define LT_NOTIFY_H

#include <jansson.h>

#include "lt_status.h"
#include "store.h"

#define NOTIFY_URL_MAX 2048

struct lt_allow_slot;
struct notifier;

enum notify_format { NOTIFY_FORMAT_JSON = 0, NOTIFY_FORMAT_SLACK };

/* Bits of the final statuses a watch reports ("events"); NOTIFY_EVENT_FINISHED is all of them. */
enum notify_event {
    NOTIFY_EVENT_PASSED = 1 << 0,
    NOTIFY_EVENT_FAILED = 1 << 1,
    NOTIFY_EVENT_ERROR = 1 << 2,
    NOTIFY_EVENT_CANCELLED = 1 << 3,
    NOTIFY_EVENT_FINISHED = 0xf,
};

/* One destination: where to POST what when run `id` ends. Plain data, copied by notifier_watch. */
struct notify_target {
    char url[NOTIFY_URL_MAX + 1];
    enum notify_format format;
    unsigned events;    /* enum notify_event bits */
    const char *origin; /* static: "webhook" (spec notify) or "slack_response_url" */
};

/* Validates the notify object of a spec (borrowed, at JSON pointer "/notify"): no unknown
 * members, webhook_url required (an http(s) URL), format "json" (default) or "slack", events a
 * non-empty array of "finished" (default), "passed", "failed", "error", "cancelled". Defaults are
 * written back. err names the field. */
lt_status notify_validate(json_t *notify, struct lt_error *err);

/* Hides what may be a credential in notify.webhook_url for answers: a URL with a user, password,
 * path other than "/", query or fragment becomes scheme://host:port followed by a path of "***"
 * (a Slack incoming webhook's path is its secret); one that does not parse becomes "***". notify
 * is borrowed and modified in place; NULL is fine. Called through spec_mask (spec.h). */
void notify_mask(json_t *notify);

/* Appends s (borrowed) to the NUL-terminated buf of cap bytes with Slack's mrkdwn control
 * characters (& < >) escaped. When it does not all fit, it is cut at a UTF-8 character boundary
 * and "…" is appended, so buf stays valid UTF-8; an invalid input byte becomes '?'. */
void notify_mrkdwn_append(char *buf, size_t cap, const char *s);

/* Fills t from a validated notify object (borrowed). Returns 0, or -1 when there is none. */
int notify_target_from_spec(const json_t *notify, struct notify_target *t);

/* The JSON summary POSTed for r: {"id","kind","name","status","verdict","error","url",
 * "finished_at"}. Returns new; caller decrefs. */
json_t *notify_summary(const struct run_record *r);
/* The Slack message for r: {"text", "blocks"} plus "response_type": "in_channel" when
 * in_channel. Returns new; caller decrefs. */
json_t *notify_slack_message(const struct run_record *r, int in_channel);

/* Starts the notifier thread. st and allow are borrowed and must outlive it; each attempt
 * uses the allowlist in force when it starts (a SIGHUP reload may swap it). Returns new; NULL
 * on failure. */
struct notifier *notifier_new(struct store *st, struct lt_allow_slot *allow);

/* Stops the thread: deliveries still pending get one short last attempt within a bounded time
 * (about 2 s in all); those left are logged as dropped. Frees. NULL allowed. */
void notifier_free(struct notifier *n);

/* Watches run id: when it ends with a status among t->events, its summary goes to t->url.
 * Safe from any thread; never blocks on the network. When the run has already ended (it may end
 * before its starter gets to call this), the delivery is queued at once. Returns LT_OK, or
 * LT_ERR_TOO_MANY_RUNS when too many deliveries are pending (logged). n may be NULL (no-op). */
lt_status notifier_watch(struct notifier *n, const char *id, const struct notify_target *t);

/* The pool's on_finished hook (opaque is the notifier): queues the deliveries watching id. */
void notifier_on_finished(void *opaque, const char *id);

/* Writes into out the URL without credentials, path or query ("https://host:443"), for logs. */
void notify_safe_url(const char *url, char *out, size_t outlen);

#endif
