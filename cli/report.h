/*
 * report: what the loadtest CLI prints about runs for people: the live progress line, the
 * verdict table and result summary, the run list and the comparison of two capacity runs; plus
 * the exit code each run status maps to. Every string that comes from the daemon is printed
 * with control characters replaced, so a run name cannot move the cursor or fake output lines.
 */
#ifndef LT_CLI_REPORT_H
#define LT_CLI_REPORT_H

#include <jansson.h>
#include <stdio.h>

/* Exit codes of every loadtest command (documented in --help and cli/README.md). */
enum cli_exit {
    EXIT_PASSED = 0,    /* the run passed (or the command did what was asked) */
    EXIT_FAILED = 1,    /* the run completed and its verdict failed; compare found a regression */
    EXIT_RUN_ERROR = 2, /* the run ended error, cancelled or interrupted; or loadtest was */
    EXIT_USAGE = 3,     /* bad arguments or spec, daemon unreachable, request refused */
    EXIT_PENDING = 4    /* status without --wait: the run is still queued or running */
};

/* The exit code for a run status ("passed" -> 0, ...; queued/running -> EXIT_PENDING). */
int report_exit_code(const char *status);
/* Whether status is one a run never leaves. */
int report_status_is_final(const char *status);

/* Copies s to out with control characters (and DEL) replaced by '?'. */
void report_sanitize(const char *s, char *out, size_t outlen);

/* Formats a JSON value for a table cell: integers plainly, reals with up to 6 significant
 * digits, null as "-", anything else as compact JSON. */
void report_value(const json_t *v, char *out, size_t outlen);

/* Seconds the run took (finished_at - started_at, else result.duration_s), or -1. */
double report_run_seconds(const json_t *doc);

/* One progress line without newline: "running  45%  12.3s  requests 1234  rps 200.0 ...".
 * waited_s is how long loadtest has been waiting (shown as elapsed); when negative, the run's
 * own progress.elapsed_s is shown instead, if it has one. */
void report_progress(const json_t *doc, double waited_s, char *out, size_t outlen);

/* Prints the run: a heading, the verdict table (check, op, threshold, observed, PASS/FAIL),
 * the result in brief, the error if any and the verdict summary last. doc is borrowed. */
void report_run(FILE *out, const json_t *doc);

/* Prints run summaries (a JSON array, borrowed) as a table. */
void report_list(FILE *out, const json_t *runs);

/* Prints the comparison document of GET /v1/runs/{id}/compare (borrowed): per-metric deltas as
 * a table and the daemon's summary, or the document as JSON when as_json. Returns EXIT_PASSED,
 * EXIT_FAILED when the daemon found a regression, or EXIT_USAGE with a message in err when doc
 * is not a comparison. */
int report_compare(FILE *out, const json_t *doc, int as_json, char *err, size_t errlen);

#endif
