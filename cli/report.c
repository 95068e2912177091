/* report: progress lines, verdict tables, run lists and run comparisons for people. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_COLS_MAX 8

/* A text table: cells are copied (sanitized) and owned by the table. */
struct table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells;              /* nrows * ncols */
    int right[TABLE_COLS_MAX]; /* right-align column i */
};

int report_status_is_final(const char *status)
{
    static const char *const finals[] = {"passed",    "failed",      "error",
                                         "cancelled", "interrupted", NULL};

    for (const char *const *f = finals; status && *f; f++) {
        if (strcmp(status, *f) == 0)
            return 1;
    }
    return 0;
}

int report_exit_code(const char *status)
{
    if (status == NULL)
        return EXIT_USAGE;
    if (strcmp(status, "passed") == 0)
        return EXIT_PASSED;
    if (strcmp(status, "failed") == 0)
        return EXIT_FAILED;
    if (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0)
        return EXIT_PENDING;
    return EXIT_RUN_ERROR; /* error, cancelled, interrupted, and any status added later */
}

void report_sanitize(const char *s, char *out, size_t outlen)
{
    size_t o = 0;

    if (outlen == 0)
        return;
    for (; s && *s && o + 1 < outlen; s++)
        out[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    out[o] = '\0';
}

void report_value(const json_t *v, char *out, size_t outlen)
{
    char *dump;

    if (v == NULL || json_is_null(v)) {
        snprintf(out, outlen, "-");
    } else if (json_is_integer(v)) {
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(out, outlen, "%.0f", d);
        else
            snprintf(out, outlen, "%.6g", d);
    } else if (json_is_string(v)) {
        report_sanitize(json_string_value(v), out, outlen);
    } else if (json_is_boolean(v)) {
        snprintf(out, outlen, "%s", json_is_true(v) ? "true" : "false");
    } else {
        dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
        report_sanitize(dump ? dump : "?", out, outlen);
        free(dump);
    }
}

/* ---------------------------------------------------------------- times */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses "2026-12-03T16:42:20.123Z" into seconds since the epoch; -1 when it does not parse. */
static double parse_time(const char *s)
{
    int y, mo, d, h, mi, n = 0;
    double sec;

    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return -1;
    if (s[n] != 'Z')
        return -1;
    return (double)days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
}

double report_run_seconds(const json_t *doc)
{
    double a = parse_time(json_string_value(json_object_get(doc, "started_at")));
    double b = parse_time(json_string_value(json_object_get(doc, "finished_at")));
    json_t *d = json_object_get(json_object_get(doc, "result"), "duration_s");

    if (a >= 0 && b >= a)
        return b - a;
    if (json_is_number(d))
        return json_number_value(d);
    return -1;
}

static void format_seconds(double s, char *out, size_t outlen)
{
    if (s < 60)
        snprintf(out, outlen, "%.1fs", s);
    else if (s < 3600)
        snprintf(out, outlen, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(out, outlen, "%dh%02dm%02ds", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
}

/* ---------------------------------------------------------------- tables */

static void table_init(struct table *t, size_t ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols < TABLE_COLS_MAX ? ncols : TABLE_COLS_MAX;
}

static int table_add(struct table *t, const char *const *cells)
{
    char buf[1024];

    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **p = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (p == NULL)
            return -1;
        t->cells = p;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        report_sanitize(cells[i] ? cells[i] : "-", buf, sizeof(buf));
        t->cells[t->nrows * t->ncols + i] = strdup(buf);
    }
    t->nrows++;
    return 0;
}

/* Display width of UTF-8 text: one column per code point (good enough for tables). */
static size_t text_width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static void table_print(const struct table *t, FILE *out)
{
    size_t width[TABLE_COLS_MAX] = {0};

    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * t->ncols + i];
            size_t w = c ? text_width(c) : 1;
            if (w > width[i])
                width[i] = w;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * t->ncols + i];
            size_t pad;
            if (c == NULL)
                c = "?";
            pad = width[i] - text_width(c);
            if (t->right[i])
                fprintf(out, "%*s%s", (int)pad, "", c);
            else if (i + 1 < t->ncols)
                fprintf(out, "%s%*s", c, (int)pad, "");
            else
                fputs(c, out);
            fputs(i + 1 < t->ncols ? "  " : "\n", out);
        }
    }
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- progress */

static const json_t *path_get(const json_t *v, const char *a, const char *b, const char *c)
{
    v = json_object_get(v, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return v;
}

/* Appends "  label value unit" when v is a number: digits >= 0 decimals, < 0 that many
 * significant digits. */
static void add_metric(char *out, size_t outlen, const char *label, const json_t *v, int digits,
                       const char *unit)
{
    size_t n = strlen(out);
    char num[64];

    if (!json_is_number(v) || n + 1 >= outlen)
        return;
    if (digits >= 0)
        snprintf(num, sizeof(num), "%.*f", digits, json_number_value(v));
    else
        snprintf(num, sizeof(num), "%.*g", -digits, json_number_value(v));
    snprintf(out + n, outlen - n, "  %s %s%s", label, num, unit);
}

void report_progress(const json_t *doc, double waited_s, char *out, size_t outlen)
{
    const char *status = json_string_value(json_object_get(doc, "status"));
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const json_t *frac = path_get(doc, "progress", "fraction", NULL);
    const json_t *result = json_object_get(doc, "result");
    const json_t *progress = json_object_get(doc, "progress");
    char elapsed[32], st[32];
    size_t n;

    if (waited_s < 0) {
        const json_t *e = json_object_get(progress, "elapsed_s");
        waited_s = json_is_number(e) ? json_number_value(e) : -1;
    }
    elapsed[0] = '\0';
    if (waited_s >= 0)
        format_seconds(waited_s, elapsed, sizeof(elapsed));
    report_sanitize(status ? status : "?", st, sizeof(st));
    n = (size_t)snprintf(out, outlen, "%-9s", st);
    /* A completed run is complete whatever its last progress update said. */
    if (status && (strcmp(status, "passed") == 0 || strcmp(status, "failed") == 0))
        frac = NULL;
    if (n < outlen && json_is_number(frac))
        n += (size_t)snprintf(out + n, outlen - n, "  %3.0f%%", json_number_value(frac) * 100.0);
    if (n < outlen && elapsed[0])
        snprintf(out + n, outlen - n, "  %s", elapsed);
    if (kind && strcmp(kind, "capacity") == 0) {
        const json_t *req = json_object_get(result, "requests");
        add_metric(out, outlen, "requests", req ? req : json_object_get(progress, "requests"), 0,
                   "");
        add_metric(out, outlen, "rps", json_object_get(result, "achieved_rps"), 1, "");
        add_metric(out, outlen, "p99", path_get(result, "latency_ms", "p99", NULL), -4, " ms");
        const json_t *er = json_object_get(result, "error_rate");
        json_t *pct = json_is_number(er) ? json_real(json_number_value(er) * 100.0) : NULL;
        add_metric(out, outlen, "errors", pct, 2, "%");
        json_decref(pct);
    } else if (kind && strcmp(kind, "generate") == 0) {
        add_metric(out, outlen, "rows", json_object_get(result, "rows_inserted"), 0, "");
        add_metric(out, outlen, "rows/s", json_object_get(result, "rows_per_s"), 0, "");
    } else if (kind && strcmp(kind, "ratelimit") == 0) {
        add_metric(out, outlen, "burst requests", path_get(result, "burst", "requests", NULL), 0,
                   "");
        add_metric(out, outlen, "realistic requests",
                   path_get(result, "realistic", "requests", NULL), 0, "");
    }
}

/* ---------------------------------------------------------------- run report */

static void print_result(FILE *out, const char *kind, const json_t *result)
{
    char a[64], b[64], c[64], d[64];

    if (!json_is_object(result) || kind == NULL)
        return;
    if (strcmp(kind, "capacity") == 0) {
        const json_t *lat = json_object_get(result, "latency_ms");
        const json_t *er = json_object_get(result, "error_rate");
        report_value(json_object_get(result, "requests"), a, sizeof(a));
        report_value(json_object_get(result, "achieved_rps"), b, sizeof(b));
        if (json_is_number(er))
            snprintf(c, sizeof(c), "%.2f%%", json_number_value(er) * 100.0);
        else
            snprintf(c, sizeof(c), "-");
        fprintf(out, "requests %s  achieved_rps %s  errors %s\n", a, b, c);
        if (json_is_object(lat)) {
            report_value(json_object_get(lat, "p50"), a, sizeof(a));
            report_value(json_object_get(lat, "p95"), b, sizeof(b));
            report_value(json_object_get(lat, "p99"), c, sizeof(c));
            report_value(json_object_get(lat, "max"), d, sizeof(d));
            fprintf(out, "latency_ms p50 %s  p95 %s  p99 %s  max %s\n", a, b, c, d);
        }
    } else if (strcmp(kind, "generate") == 0) {
        report_value(json_object_get(result, "rows_inserted"), a, sizeof(a));
        report_value(json_object_get(result, "rows_per_s"), b, sizeof(b));
        fprintf(out, "rows_inserted %s  rows_per_s %s\n", a, b);
    } else if (strcmp(kind, "ratelimit") == 0) {
        report_value(path_get(result, "burst", "accepted_before_first_429", NULL), a, sizeof(a));
        report_value(path_get(result, "burst", "requests", NULL), b, sizeof(b));
        report_value(path_get(result, "realistic", "succeeded", NULL), c, sizeof(c));
        report_value(path_get(result, "realistic", "requests", NULL), d, sizeof(d));
        fprintf(out, "burst accepted_before_first_429 %s of %s  realistic succeeded %s of %s\n", a,
                b, c, d);
    }
}

void report_run(FILE *out, const json_t *doc)
{
    const json_t *verdict = json_object_get(doc, "verdict");
    const json_t *checks = json_object_get(verdict, "checks");
    const json_t *error = json_object_get(doc, "error");
    const char *summary = json_string_value(json_object_get(verdict, "summary"));
    char id[64], kind[32], name[256], status[32], took[48], line[1024];
    double secs = report_run_seconds(doc);

    report_value(json_object_get(doc, "id"), id, sizeof(id));
    report_value(json_object_get(doc, "kind"), kind, sizeof(kind));
    report_value(json_object_get(doc, "name"), name, sizeof(name));
    report_value(json_object_get(doc, "status"), status, sizeof(status));
    took[0] = '\0';
    if (secs >= 0 && report_status_is_final(json_string_value(json_object_get(doc, "status")))) {
        char s[32];
        format_seconds(secs, s, sizeof(s));
        snprintf(took, sizeof(took), " in %s", s);
    }
    fprintf(out, "run %s (%s%s%s): %s%s\n", id, kind, strcmp(name, "-") ? ", " : "",
            strcmp(name, "-") ? name : "", status, took);

    if (json_array_size(checks) > 0) {
        struct table t;
        size_t i;
        const json_t *chk;
        const char *head[] = {"CHECK", "OP", "THRESHOLD", "OBSERVED", "RESULT"};

        table_init(&t, 5);
        table_add(&t, head);
        json_array_foreach(checks, i, chk)
        {
            char cn[128], op[16], thr[128], obs[64];
            const char *row[5] = {cn, op, thr, obs, NULL};
            report_value(json_object_get(chk, "name"), cn, sizeof(cn));
            report_value(json_object_get(chk, "op"), op, sizeof(op));
            report_value(json_object_get(chk, "threshold"), thr, sizeof(thr));
            report_value(json_object_get(chk, "observed"), obs, sizeof(obs));
            row[4] = json_is_true(json_object_get(chk, "pass")) ? "PASS" : "FAIL";
            table_add(&t, row);
        }
        fputc('\n', out);
        table_print(&t, out);
        table_free(&t);
    }
    if (json_is_object(json_object_get(doc, "result"))) {
        fputc('\n', out);
        print_result(out, json_string_value(json_object_get(doc, "kind")),
                     json_object_get(doc, "result"));
    }
    if (json_is_object(error)) {
        char code[64], msg[512];
        report_value(json_object_get(error, "code"), code, sizeof(code));
        report_value(json_object_get(error, "message"), msg, sizeof(msg));
        fprintf(out, "\nerror: %s: %s\n", code, msg);
    }
    if (summary) {
        report_sanitize(summary, line, sizeof(line));
        fprintf(out, "\n%s\n", line);
    }
}

/* ---------------------------------------------------------------- list */

void report_list(FILE *out, const json_t *runs)
{
    struct table t;
    size_t i;
    const json_t *r;
    const char *head[] = {"ID", "KIND", "NAME", "STATUS", "CREATED", "VERDICT"};

    table_init(&t, 6);
    table_add(&t, head);
    json_array_foreach(runs, i, r)
    {
        char id[64], kind[32], name[256], status[32], created[40], verdict[512];
        const char *row[6] = {id, kind, name, status, created, verdict};
        report_value(json_object_get(r, "id"), id, sizeof(id));
        report_value(json_object_get(r, "kind"), kind, sizeof(kind));
        report_value(json_object_get(r, "name"), name, sizeof(name));
        report_value(json_object_get(r, "status"), status, sizeof(status));
        report_value(json_object_get(r, "created_at"), created, sizeof(created));
        report_value(path_get(r, "verdict", "summary", NULL), verdict, sizeof(verdict));
        table_add(&t, row);
    }
    table_print(&t, out);
    table_free(&t);
}

/* ---------------------------------------------------------------- compare */

static void fmt_num(double v, int sign, char *out, size_t outlen)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, outlen, sign ? "%+.0f" : "%.0f", v);
    else
        snprintf(out, outlen, sign ? "%+.6g" : "%.6g", v);
}

static const char *run_label(const json_t *ref, char *out, size_t outlen)
{
    char id[64], name[160], preset[96];

    report_value(json_object_get(ref, "id"), id, sizeof(id));
    report_value(json_object_get(ref, "name"), name, sizeof(name));
    report_value(json_object_get(ref, "preset"), preset, sizeof(preset));
    if (strcmp(name, "-") == 0)
        snprintf(out, outlen, "%s", id);
    else if (strcmp(preset, "-") == 0)
        snprintf(out, outlen, "%s (%s)", id, name);
    else
        snprintf(out, outlen, "%s (%s, preset %s)", id, name, preset);
    return out;
}

static void cell_num(const json_t *v, int sign, char *out, size_t outlen)
{
    if (json_is_number(v))
        fmt_num(json_number_value(v), sign, out, outlen);
    else
        snprintf(out, outlen, "-");
}

int report_compare(FILE *out, const json_t *doc, int as_json, char *err, size_t errlen)
{
    const json_t *metrics = json_object_get(doc, "metrics");
    const json_t *m;
    const char *summary = json_string_value(json_object_get(doc, "summary"));
    int regression = json_is_true(json_object_get(doc, "regression"));
    struct table t;
    char l1[400], l2[400], line[600];
    size_t i;

    if (!json_is_array(metrics) || summary == NULL ||
        !json_is_boolean(json_object_get(doc, "regression"))) {
        snprintf(err, errlen, "the daemon's answer is not a comparison");
        return EXIT_USAGE;
    }
    if (as_json) {
        json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        fputc('\n', out);
        return regression ? EXIT_FAILED : EXIT_PASSED;
    }
    table_init(&t, 5);
    {
        const char *head[] = {"METRIC", "BASE", "RUN", "CHANGE", "CHANGE%"};
        table_add(&t, head);
        t.right[1] = t.right[2] = t.right[3] = t.right[4] = 1;
    }
    json_array_foreach(metrics, i, m)
    {
        char name[96], sb[64], sr[64], sd[64], sp[64] = "-";
        const json_t *pct = json_object_get(m, "delta_pct");
        const char *row[5] = {name, sb, sr, sd, sp};

        report_value(json_object_get(m, "name"), name, sizeof(name));
        if (json_is_true(json_object_get(m, "regressed")) && strlen(name) + 2 < sizeof(name))
            strcat(name, " !");
        cell_num(json_object_get(m, "base"), 0, sb, sizeof(sb));
        cell_num(json_object_get(m, "run"), 0, sr, sizeof(sr));
        cell_num(json_object_get(m, "delta"), 1, sd, sizeof(sd));
        if (json_is_number(pct))
            snprintf(sp, sizeof(sp), "%+.1f%%", json_number_value(pct));
        else if (json_is_number(json_object_get(m, "delta")))
            snprintf(sp, sizeof(sp), "%s",
                     json_number_value(json_object_get(m, "delta")) == 0 ? "+0.0%" : "n/a");
        table_add(&t, row);
    }
    fprintf(out, "run  %s\nbase %s\n\n", run_label(json_object_get(doc, "run"), l1, sizeof(l1)),
            run_label(json_object_get(doc, "base"), l2, sizeof(l2)));
    table_print(&t, out);
    table_free(&t);
    report_sanitize(summary, line, sizeof(line));
    /* "!" marks a regressed metric; the last line is the verdict ("ok: ..." or
     * "REGRESSION ..."). */
    fprintf(out, "\n%s%s\n", regression ? "" : "ok: ", line);
    return regression ? EXIT_FAILED : EXIT_PASSED;
}
