/*
 * auth: bearer tokens for the API. The token file has one token per line, "read TOKEN" or
 * "write TOKEN" ("#" starts a comment); write implies read. Tokens are kept only as SHA-256
 * digests and compared in constant time. With no token file the API is open, and main refuses
 * to listen beyond loopback.
 */
#ifndef LT_AUTH_H
#define LT_AUTH_H

#include <stddef.h>

struct auth;

enum auth_need { AUTH_OPEN = 0, AUTH_READ = 1, AUTH_WRITE = 2 };
enum auth_result { AUTH_OK = 0, AUTH_MISSING, AUTH_BAD, AUTH_DENIED };

/* Loads path. Returns new; NULL with a message in err (never a token) on failure. */
struct auth *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth *a);
size_t auth_count(const struct auth *a);

/* Checks an Authorization header value (may be NULL) against need. a == NULL: always OK. */
enum auth_result auth_check(const struct auth *a, const char *authorization, enum auth_need need);

#endif
