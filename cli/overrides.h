/*
 * overrides: reading a run spec from a file or stdin and applying `--set PATH=VALUE` edits.
 *
 * PATH is dotted ("load.users", "target.headers.X-Token"); a backslash escapes a dot or a
 * backslash inside a key ("target.headers.x\.y"). Missing objects along the path are created.
 * A segment that meets an array is an index: 0..n-1 replaces that element, n appends. VALUE is
 * parsed as JSON when it parses (numbers, true/false/null, arrays, objects, "quoted strings"),
 * otherwise it is taken as a plain string, so `--set name=nightly` and `--set load.users=50`
 * both do what they look like.
 */
#ifndef LT_CLI_OVERRIDES_H
#define LT_CLI_OVERRIDES_H

#include <jansson.h>
#include <stddef.h>

#define SPEC_FILE_MAX (1024 * 1024) /* the daemon refuses larger bodies (413) */

/* Reads a JSON object from path ("-" = stdin), refusing duplicate keys and anything over
 * SPEC_FILE_MAX. Returns a new object (caller decrefs) or NULL with a message naming the file,
 * line and column in err. */
json_t *spec_read(const char *path, char *err, size_t errlen);

/* Applies one "PATH=VALUE" assignment to root (borrowed; modified in place). Returns 0, or -1
 * with a message in err. */
int override_apply(json_t *root, const char *assignment, char *err, size_t errlen);

#endif
