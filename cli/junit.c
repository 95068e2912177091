/* junit: JUnit XML reports of runs, escaped for XML 1.0 and written atomically. */
#define _POSIX_C_SOURCE 200809L
#include "junit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

/* Length of the valid UTF-8 sequence at s (1..4) and its code point, or 0 when invalid. */
static int utf8_seq(const unsigned char *s, unsigned *cp)
{
    int n;
    unsigned c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* Writes s escaped for XML character data (attr = 0) or a double-quoted attribute value. */
static void xml_put(FILE *f, const char *s, int attr)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    while (*p) {
        unsigned cp;
        int n = utf8_seq(p, &cp);

        if (n == 0) {
            fputs("\xef\xbf\xbd", f); /* U+FFFD for a byte that is not UTF-8 */
            p++;
            continue;
        }
        switch (cp) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        case '\t':
        case '\n':
        case '\r':
            /* Attribute normalisation would turn a literal one into a space; CR is lost in text. */
            if (attr || cp == '\r')
                fprintf(f, "&#%u;", cp);
            else
                fputc((int)cp, f);
            break;
        default:
            if (cp < 0x20 || cp == 0xfffe || cp == 0xffff)
                fprintf(f, "\\u%04x", cp); /* not representable in XML 1.0 at all */
            else
                fwrite(p, 1, (size_t)n, f);
        }
        p += n;
    }
}

int junit_check_writable(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    FILE *f;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        snprintf(err, errlen, "--junit path is too long");
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write the JUnit report %s: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    unlink(tmp);
    return 0;
}

/* Appends sep + s to buf when s is not NULL. */
static void append(char *buf, size_t buflen, const char *sep, const char *s)
{
    size_t n = strlen(buf);

    if (s && n < buflen)
        snprintf(buf + n, buflen - n, "%s%s", sep, s);
}

static void write_testcase_open(FILE *f, const char *kind, const char *name, const char *tc,
                                double secs)
{
    fputs("  <testcase classname=\"loadtest.", f);
    xml_put(f, kind, 1);
    fputc('.', f);
    xml_put(f, name, 1);
    fputs("\" name=\"", f);
    xml_put(f, tc, 1);
    fprintf(f, "\" time=\"%.3f\">\n", secs);
}

/* The body of <system-out>: the same report a person sees on the terminal. */
static char *system_out(const json_t *doc, const char *note)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    if (m == NULL)
        return NULL;
    if (doc)
        report_run(m, doc);
    if (note)
        fprintf(m, "%sloadtest: %s\n", doc ? "\n" : "", note);
    fclose(m);
    return buf;
}

int junit_write(const char *path, const json_t *doc, const char *kind, const char *name,
                const char *note, double elapsed_s, char *err, size_t errlen)
{
    const char *status = json_string_value(json_object_get(doc, "status"));
    const json_t *verdict = json_object_get(doc, "verdict");
    const json_t *checks = json_object_get(verdict, "checks");
    const json_t *chk;
    const char *k, *nm;
    char tmp[4096], msg[1024], obs[128], thr[128];
    double secs = doc ? report_run_seconds(doc) : -1;
    size_t tests = 0, failures = 0, errors = 0, i;
    int completed = status && (strcmp(status, "passed") == 0 || strcmp(status, "failed") == 0);
    char *out_text = NULL;
    FILE *f = NULL;
    int created = 0, rc = -1;

    if (secs < 0)
        secs = elapsed_s > 0 ? elapsed_s : 0;
    k = doc ? json_string_value(json_object_get(doc, "kind")) : kind;
    nm = doc ? json_string_value(json_object_get(doc, "name")) : NULL;
    if (nm == NULL)
        nm = name;
    if (k == NULL)
        k = "unknown";
    if (nm == NULL)
        nm = "unnamed";

    if (completed) {
        tests = json_array_size(checks) ? json_array_size(checks) : 1;
        json_array_foreach(checks, i, chk) failures += !json_is_true(json_object_get(chk, "pass"));
        if (json_array_size(checks) == 0)
            failures = strcmp(status, "failed") == 0;
    } else {
        tests = errors = 1;
    }

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        snprintf(err, errlen, "--junit path is too long");
        goto out;
    }
    out_text = system_out(doc, note);
    f = fopen(tmp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write the JUnit report %s: %s", path, strerror(errno));
        goto out;
    }
    created = 1;
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
    fprintf(f,
            "<testsuite name=\"loadtest\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" "
            "skipped=\"0\" time=\"%.3f\">\n",
            tests, failures, errors, secs);
    if (doc) {
        static const char *const props[] = {"id", "kind", "name", "status", "created_at", NULL};
        fputs("  <properties>\n", f);
        for (const char *const *p = props; *p; p++) {
            const char *v = json_string_value(json_object_get(doc, *p));
            if (v == NULL)
                continue;
            fprintf(f, "    <property name=\"run_%s\" value=\"", *p);
            xml_put(f, v, 1);
            fputs("\"/>\n", f);
        }
        fputs("  </properties>\n", f);
    }
    if (completed && json_array_size(checks) > 0) {
        json_array_foreach(checks, i, chk)
        {
            const char *cname = json_string_value(json_object_get(chk, "name"));
            const char *op = json_string_value(json_object_get(chk, "op"));
            write_testcase_open(f, k, nm, cname ? cname : "check", secs);
            if (!json_is_true(json_object_get(chk, "pass"))) {
                report_value(json_object_get(chk, "observed"), obs, sizeof(obs));
                report_value(json_object_get(chk, "threshold"), thr, sizeof(thr));
                snprintf(msg, sizeof(msg), "observed %s, threshold %s %s", obs, op ? op : "?", thr);
                fputs("    <failure type=\"threshold\" message=\"", f);
                xml_put(f, msg, 1);
                fputs("\"/>\n", f);
            }
            fputs("  </testcase>\n", f);
        }
    } else if (completed) {
        write_testcase_open(f, k, nm, "verdict", secs);
        if (failures) {
            fputs("    <failure type=\"verdict\" message=\"", f);
            xml_put(f, json_string_value(json_object_get(verdict, "summary")), 1);
            fputs("\"/>\n", f);
        }
        fputs("  </testcase>\n", f);
    } else {
        const json_t *e = json_object_get(doc, "error");
        const char *emsg = json_string_value(json_object_get(e, "message"));
        const char *ecode = json_string_value(json_object_get(e, "code"));
        if (doc == NULL) {
            snprintf(msg, sizeof(msg), "the run was not created: %s", note ? note : "?");
        } else {
            snprintf(msg, sizeof(msg), "run %s", status ? status : "unknown");
            append(msg, sizeof(msg), ": ", ecode);
            append(msg, sizeof(msg), ": ", emsg);
            if (note)
                snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), " (%s)", note);
        }
        write_testcase_open(f, k, nm, "run", secs);
        fputs("    <error type=\"", f);
        xml_put(f, doc ? (status ? status : "unknown") : "not_created", 1);
        fputs("\" message=\"", f);
        xml_put(f, msg, 1);
        fputs("\"/>\n", f);
        fputs("  </testcase>\n", f);
    }
    fputs("  <system-out>", f);
    xml_put(f, out_text, 0);
    fputs("</system-out>\n</testsuite>\n", f);
    if (ferror(f) | fflush(f) | fsync(fileno(f))) {
        snprintf(err, errlen, "cannot write the JUnit report %s: %s", path, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, errlen, "cannot write the JUnit report %s: %s", path, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write the JUnit report %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    if (rc != 0 && created)
        unlink(tmp);
    free(out_text);
    return rc;
}
