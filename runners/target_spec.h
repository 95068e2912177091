/*
 * target_spec: validation of the `target` object that the capacity and ratelimit kinds share
 * (url, method, headers, bodies, timeout_ms, expect_status), and of its parts that ratelimit
 * reuses for `setup` (url, headers, a header name or value). Every check takes the JSON pointer
 * of what it checks, names it in the error ("<pointer> <what>"), and writes absent defaults back
 * into the object, as lt_json's readers do. Pure JSON work: no DNS, no sockets, no locks.
 */
#ifndef LT_TARGET_SPEC_H
#define LT_TARGET_SPEC_H

#include <jansson.h>
#include <stddef.h>

#include "lt_status.h"

#define TARGET_SPEC_MAX_URL          2048
#define TARGET_SPEC_MAX_HEADER_NAME  256
#define TARGET_SPEC_MAX_HEADER_VALUE 8192
#define TARGET_SPEC_MAX_BODY_BYTES   (1 << 20)

/* The methods a target (or setup call) may use, NULL-terminated, for ltj_enum. */
extern const char *const target_spec_methods[];

/* What differs between the kinds that validate a target. */
enum target_spec_flags {
    TARGET_SPEC_FORBID_429 = 1 << 0, /* expect_status must not list 429 (ratelimit: the limiter's
                                        answer is never an expected status) */
};

/* url (borrowed): http:// or https://, no spaces or control bytes, a non-empty host, a numeric
 * port in 1..65535 if any, and a URL libcurl's parser can split (the allowlist check at POST
 * time needs host and port). field is the JSON pointer of the url, named in the error. */
lt_status target_spec_check_url(const char *url, const char *field, struct lt_error *err);

/* A header name (borrowed): 1..256 token characters, and not one the engine computes itself
 * (Content-Length, Transfer-Encoding). fp is the pointer named in the error. */
lt_status target_spec_check_header_name(const char *name, const char *fp, struct lt_error *err);

/* A header value (or prefix) v (borrowed): a string of at most maxlen bytes without CR, LF or
 * NUL. fp is the pointer named in the error. */
lt_status target_spec_check_header_value(json_t *v, const char *fp, size_t maxlen,
                                         struct lt_error *err);

/* obj.headers (obj borrowed, at pointer ptr): an optional object of at most 64 valid headers;
 * created empty in obj when absent. */
lt_status target_spec_check_headers(json_t *obj, const char *ptr, struct lt_error *err);

/* The size a body v (borrowed) is sent with: a string's length, else its compact JSON's. */
size_t target_spec_body_size(const json_t *v);

/* obj.bodies (obj borrowed, at pointer ptr): an optional array of at most 1000 bodies of at most
 * 1 MiB each, empty when method is HEAD; created empty in obj when absent. */
lt_status target_spec_check_bodies(json_t *obj, const char *ptr, const char *method,
                                   struct lt_error *err);

/* obj.expect_status (obj borrowed, at pointer ptr): an optional array of 1 to 100 status codes
 * (100..599) or classes ("1xx".."5xx"); ["2xx"] is set in obj when absent. flags: see
 * enum target_spec_flags. */
lt_status target_spec_check_expect_status(json_t *obj, const char *ptr, unsigned flags,
                                          struct lt_error *err);

/* The whole target object (borrowed, at pointer ptr): no unknown keys, url (required), method
 * (default "GET"), headers, bodies, timeout_ms (1..300000, default 5000), expect_status; the
 * defaults are written back into target. flags: see enum target_spec_flags. */
lt_status target_spec_validate(json_t *target, const char *ptr, unsigned flags,
                               struct lt_error *err);

/* 1 when a header or member name looks like it carries a credential (Authorization, Cookie,
 * anything containing token, secret, key, password or auth). */
int target_spec_secret_name(const char *name);
/* Replaces with "***" the values of owner's "headers" whose names look like credentials.
 * owner is borrowed (modified in place); NULL or no headers is fine. */
void target_spec_mask_headers(json_t *owner);
/* Replaces the password of owner's "url" (scheme://user:password@host/...) with "***". */
void target_spec_mask_url(json_t *owner);

#endif
