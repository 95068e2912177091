/*
 * auth: bearer tokens for the API. The token file has one token per line, "read TOKEN" or
 * "write TOKEN" ("#" starts a comment); write implies read. Tokens are kept only as SHA-256
 * digests and compared in constant time. With no token file the API is open, and main refuses
 * to listen beyond loopback.
 *
 * The token table can be replaced while HTTP threads check tokens (SIGHUP: auth_reload): the
 * new file is parsed completely first, then swapped in under the write side of `lock`; checks
 * hold the read side only while comparing digests. A file that fails to parse changes nothing.
 */
#ifndef LT_AUTH_H
#define LT_AUTH_H

#include <stddef.h>

struct auth;

enum auth_need { AUTH_OPEN = 0, AUTH_READ = 1, AUTH_WRITE = 2 };
enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING,
    AUTH_BAD,
    AUTH_DENIED,
    AUTH_LIMITED /* over the API rate limit (routes_authorize; never from auth_check) */
};

/* Loads path. Returns new; NULL with a message in err (never a token) on failure. */
struct auth *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth *a);
size_t auth_count(struct auth *a);

/* Checks an Authorization header value (may be NULL) against need. a == NULL: always OK.
 * Thread-safe against auth_reload. */
enum auth_result auth_check(struct auth *a, const char *authorization, enum auth_need need);

/* Re-reads path and, when it parses, replaces a's tokens with its tokens. Returns 0; on failure
 * -1 with a message in err (never a token) and a unchanged. */
int auth_reload(struct auth *a, const char *path, char *err, size_t errlen);

/* Writes the SHA-256 digest of the bearer token of an Authorization header value into
 * digest[32] (a per-token key that holds no secret). Returns 0, or -1 when the header is not
 * "Bearer TOKEN". */
int auth_token_digest(const char *authorization, unsigned char digest[32]);

#endif
