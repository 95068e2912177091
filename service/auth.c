/* auth: token file parsing and constant-time bearer checks. */
#define _GNU_SOURCE
#include "auth.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_sha256.h"

#define AUTH_MAX_TOKENS 1024
#define AUTH_MIN_LEN    16
#define AUTH_MAX_LEN    512

struct token {
    unsigned char digest[LT_SHA256_LEN];
    int write;
};

struct auth {
    pthread_rwlock_t lock; /* guards: t, n (written by auth_reload, read by checks) */
    struct token *t;
    size_t n;
};

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    pthread_rwlock_destroy(&a->lock);
    free(a->t);
    free(a);
}

size_t auth_count(struct auth *a)
{
    size_t n;

    if (a == NULL)
        return 0;
    pthread_rwlock_rdlock(&a->lock);
    n = a->n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

struct auth *auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    struct auth *a = NULL;
    char line[AUTH_MAX_LEN + 64];
    int lineno = 0;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open token file %s", path);
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pthread_rwlock_init(&a->lock, NULL);
    if ((a->t = calloc(AUTH_MAX_TOKENS, sizeof(struct token))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    while (fgets(line, sizeof(line), f)) {
        char *p = line, *role, *tok;
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            goto fail;
        }
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        role = strtok_r(p, " \t\r\n", &p);
        if (role == NULL)
            continue;
        tok = strtok_r(NULL, " \t\r\n", &p);
        if (tok == NULL || strtok_r(NULL, " \t\r\n", &p) != NULL) {
            snprintf(err, errlen, "%s:%d: expected 'read TOKEN' or 'write TOKEN'", path, lineno);
            goto fail;
        }
        if (strcmp(role, "read") != 0 && strcmp(role, "write") != 0) {
            snprintf(err, errlen, "%s:%d: role must be read or write", path, lineno);
            goto fail;
        }
        size_t len = strlen(tok);
        if (len < AUTH_MIN_LEN || len > AUTH_MAX_LEN) {
            snprintf(err, errlen, "%s:%d: tokens must be %d to %d characters long", path, lineno,
                     AUTH_MIN_LEN, AUTH_MAX_LEN);
            goto fail;
        }
        if (a->n >= AUTH_MAX_TOKENS) {
            snprintf(err, errlen, "%s: more than %d tokens", path, AUTH_MAX_TOKENS);
            goto fail;
        }
        lt_sha256(tok, len, a->t[a->n].digest);
        a->t[a->n].write = strcmp(role, "write") == 0;
        a->n++;
        memset(tok, 0, len); /* do not leave the token in the stack buffer */
    }
    memset(line, 0, sizeof(line));
    fclose(f);
    if (a->n == 0) {
        snprintf(err, errlen, "token file %s holds no token", path);
        auth_free(a);
        return NULL;
    }
    return a;
fail:
    memset(line, 0, sizeof(line));
    fclose(f);
    auth_free(a);
    return NULL;
}

int auth_token_digest(const char *authorization, unsigned char digest[32])
{
    const char *tok;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return -1;
    tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    if (strlen(tok) > AUTH_MAX_LEN)
        return -1;
    lt_sha256(tok, strlen(tok), digest);
    return 0;
}

enum auth_result auth_check(struct auth *a, const char *authorization, enum auth_need need)
{
    unsigned char d[LT_SHA256_LEN];
    int found = -1, write = 0;

    if (a == NULL || need == AUTH_OPEN)
        return AUTH_OK;
    if (authorization == NULL)
        return AUTH_MISSING;
    if (auth_token_digest(authorization, d) != 0)
        return AUTH_BAD;
    pthread_rwlock_rdlock(&a->lock);
    /* Every digest is compared, so the time does not tell which token (or none) matched. */
    for (size_t i = 0; i < a->n; i++) {
        if (lt_ct_equal(d, a->t[i].digest, sizeof(d)))
            found = (int)i;
    }
    if (found >= 0)
        write = a->t[found].write;
    pthread_rwlock_unlock(&a->lock);
    if (found < 0)
        return AUTH_BAD;
    if (need == AUTH_WRITE && !write)
        return AUTH_DENIED;
    return AUTH_OK;
}

int auth_reload(struct auth *a, const char *path, char *err, size_t errlen)
{
    struct auth *fresh = auth_load(path, err, errlen);
    struct token *old;

    if (fresh == NULL)
        return -1;
    pthread_rwlock_wrlock(&a->lock);
    old = a->t;
    a->t = fresh->t;
    a->n = fresh->n;
    pthread_rwlock_unlock(&a->lock);
    fresh->t = old; /* the old table leaves with the husk */
    auth_free(fresh);
    return 0;
}
