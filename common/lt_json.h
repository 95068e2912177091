/*
 * lt_json: strict readers for spec validation.
 *
 * Every reader takes the object that holds the field, the JSON pointer of that object ("" for
 * the root), and the key. It checks presence, type and range, names the field's JSON pointer in
 * the error, and writes the default back into the object when the field is absent, so the spec
 * that is stored carries every default explicitly. Unknown keys are rejected by ltj_check_keys,
 * so a typo never passes silently.
 */
#ifndef LT_JSON_H
#define LT_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "lt_status.h"

/* Builds "parent/key" (escaping ~ and / as RFC 6901 says) into out. */
void ltj_pointer(char *out, size_t outlen, const char *parent, const char *key);

/* Rejects the first key of obj not in allowed (NULL-terminated). */
lt_status ltj_check_keys(const json_t *obj, const char *ptr, const char *const *allowed,
                         struct lt_error *err);

/* Optional/required sub-object. When absent and not required, an empty object is created and
 * set in obj. *out is borrowed from obj. */
lt_status ltj_object(json_t *obj, const char *ptr, const char *key, int required, json_t **out,
                     struct lt_error *err);

/* Integer in [min, max]. JSON reals are refused (1.5 users is a typo, not a request). */
lt_status ltj_int(json_t *obj, const char *ptr, const char *key, int required, int64_t def,
                  int64_t min, int64_t max, int64_t *out, struct lt_error *err);

/* Number (integer or real) in [min, max]; NaN/inf never pass. */
lt_status ltj_number(json_t *obj, const char *ptr, const char *key, int required, double def,
                     double min, double max, double *out, struct lt_error *err);

/* Like ltj_number but the field may be JSON null, which is stored as null and reported as
 * *present = 0. Absent fields become null. */
lt_status ltj_number_or_null(json_t *obj, const char *ptr, const char *key, double min, double max,
                             double *out, int *present, struct lt_error *err);

lt_status ltj_bool(json_t *obj, const char *ptr, const char *key, int required, int def, int *out,
                   struct lt_error *err);

/* String of length [minlen, maxlen] bytes, valid UTF-8 (jansson guarantees it), no NUL.
 * def may be NULL: then an absent optional field stays absent and *out is NULL.
 * *out is borrowed from obj. */
lt_status ltj_string(json_t *obj, const char *ptr, const char *key, int required, const char *def,
                     size_t minlen, size_t maxlen, const char **out, struct lt_error *err);

/* String that must be one of choices (NULL-terminated); *index gets its position. */
lt_status ltj_enum(json_t *obj, const char *ptr, const char *key, int required, const char *def,
                   const char *const *choices, int *index, struct lt_error *err);

#endif
