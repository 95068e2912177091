/*
 * junit: the JUnit XML report of one run, for CI systems that show test results.
 *
 * One <testsuite name="loadtest"> with one <testcase classname="loadtest.KIND.NAME"
 * name="CHECK"> per verdict check (a <failure> when the check failed). A run that did not
 * complete (error, cancelled, interrupted, still running when loadtest gave up, or never
 * created) is one testcase with an <error>. The verdict summary and result go to <system-out>.
 * Text is escaped for XML 1.0: the five special characters, tab/newline/CR in attributes, and
 * control characters XML cannot carry at all (written as \uXXXX); invalid UTF-8 becomes U+FFFD.
 * The file is written to a temporary name and renamed, so a reader never sees half a report.
 */
#ifndef LT_CLI_JUNIT_H
#define LT_CLI_JUNIT_H

#include <jansson.h>
#include <stddef.h>

/* Fails early (before a run is started) when path cannot be written. Returns 0 or -1 with a
 * message in err. Leaves nothing behind. */
int junit_check_writable(const char *path, char *err, size_t errlen);

/* Writes the report for doc (borrowed; NULL when no run was created) to path. kind (borrowed,
 * may be NULL) is used when doc is NULL; name (borrowed, may be NULL) when doc is NULL or has no
 * name: pass something stable across builds (the spec file's name), so CI history lines up. note
 * (borrowed, may be NULL) says what loadtest did or saw ("--timeout of 30 s reached; run
 * cancelled"). elapsed_s is used for time= when the run document has no times. Returns 0 or -1 with
 * a message in err. */
int junit_write(const char *path, const json_t *doc, const char *kind, const char *name,
                const char *note, double elapsed_s, char *err, size_t errlen);

#endif
