/*
 * tapi_config: the settings table of traces-api and its reader. One row per setting; the flag
 * and the environment variable come from the same row, so they cannot drift apart. Values are
 * checked here (ranges, identifier syntax) so the rest of the program can trust them.
 */
#define _GNU_SOURCE
#include "tapi_config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_STR, OPT_INT, OPT_FLAG };

struct option_row {
    const char *name; /* long flag without "--" */
    const char *env;  /* environment variable */
    enum opt_type type;
    long min, max;   /* OPT_INT range */
    const char *def; /* default as text */
    size_t offset;   /* into struct tapi_config */
    size_t size;     /* OPT_STR buffer size */
    const char *help;
};

#define STR(field) offsetof(struct tapi_config, field), sizeof(((struct tapi_config *)0)->field)
#define INT(field) offsetof(struct tapi_config, field), 0

static const struct option_row rows[] = {
    {"listen", "TRACES_LISTEN", OPT_STR, 0, 0, "127.0.0.1:8080", STR(listen),
     "ADDR:PORT to serve on; port 0 picks a free one (printed as PORT=n on stdout)"},
    {"pg", "TRACES_PG_DSN", OPT_STR, 0, 0, "", STR(pg_dsn),
     "PostgreSQL connection string or URI (required; never logged)"},
    {"redis", "TRACES_REDIS", OPT_STR, 0, 0, "127.0.0.1:6379", STR(redis),
     "Redis HOST:PORT for the rate limiter"},
    {"table", "TRACES_TABLE", OPT_STR, 0, 0, "traces", STR(table),
     "table searched (a plain identifier: letters, digits, _)"},
    {"dim", "TRACES_DIM", OPT_INT, 1, 16000, "1536", INT(dim),
     "dimensions of the embedding column and of the query vectors"},
    {"pool", "TRACES_POOL", OPT_INT, 1, 256, "8", INT(pool), "PostgreSQL connections"},
    {"threads", "TRACES_THREADS", OPT_INT, 1, 256, "4", INT(threads), "HTTP threads"},
    {"ef-search", "TRACES_EF_SEARCH", OPT_INT, 1, 1000, "40", INT(ef_search),
     "hnsw.ef_search set on every connection"},
    {"rate-limit-read", "RATE_LIMIT_READ_PER_MINUTE", OPT_INT, 1, 100000000, "60", INT(rate_read),
     "searches per minute per API key (token bucket capacity)"},
    {"rate-limit-write", "RATE_LIMIT_WRITE_PER_MINUTE", OPT_INT, 1, 100000000, "10",
     INT(rate_write), "key creations per minute per client IP (token bucket capacity)"},
    {"redis-timeout-ms", "TRACES_REDIS_TIMEOUT_MS", OPT_INT, 10, 60000, "500",
     INT(redis_timeout_ms), "Redis connect and command timeout"},
    {"query-timeout-ms", "TRACES_QUERY_TIMEOUT_MS", OPT_INT, 10, 600000, "5000",
     INT(query_timeout_ms), "PostgreSQL statement_timeout"},
    {"wait", "TRACES_WAIT_S", OPT_INT, 0, 3600, "30", INT(wait_s),
     "seconds to keep retrying PostgreSQL and Redis at start"},
    {"key-cache", "TRACES_KEY_CACHE", OPT_INT, 16, 10000000, "65536", INT(key_cache),
     "API keys cached in memory"},
    {"key-cache-ttl", "TRACES_KEY_CACHE_TTL_S", OPT_INT, 0, 86400, "300", INT(key_cache_ttl_s),
     "seconds a cached API key is trusted (0 = always ask PostgreSQL)"},
    {"debug-routes", "TRACES_DEBUG_ROUTES", OPT_FLAG, 0, 1, "0", INT(debug_routes),
     "serve GET /api/v1/debug/query-vector?q=... (tests)"},
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static int set_value(struct tapi_config *cfg, const struct option_row *r, const char *val,
                     const char *origin, FILE *err)
{
    char *p = (char *)cfg + r->offset;

    if (r->type == OPT_STR) {
        size_t n = strlen(val);
        if (n >= r->size) {
            fprintf(err, "traces-api: %s %s: longer than %zu characters\n", origin, r->name,
                    r->size - 1);
            return -1;
        }
        memcpy(p, val, n + 1);
        return 0;
    }
    if (r->type == OPT_FLAG) {
        if (strcmp(val, "1") == 0 || strcmp(val, "true") == 0 || strcmp(val, "yes") == 0)
            *(int *)p = 1;
        else if (strcmp(val, "0") == 0 || strcmp(val, "false") == 0 || strcmp(val, "no") == 0)
            *(int *)p = 0;
        else {
            fprintf(err, "traces-api: %s %s: expected 1/0/true/false\n", origin, r->name);
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno != 0 || end == val || *end != '\0' || v < r->min || v > r->max) {
        fprintf(err, "traces-api: %s %s: expected an integer from %ld to %ld, got '%s'\n", origin,
                r->name, r->min, r->max, val);
        return -1;
    }
    *(int *)p = (int)v;
    return 0;
}

static void print_help(FILE *out)
{
    fprintf(out, "usage: traces-api [options]\n\n"
                 "Vector search over a traces table (pgvector HNSW), API keys in PostgreSQL and "
                 "a\nRedis token-bucket rate limiter: loadtestd's reference target.\n\n"
                 "options (each also read from its environment variable; flags win):\n");
    for (size_t i = 0; i < NROWS; i++) {
        const struct option_row *r = &rows[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s", r->name, r->type == OPT_FLAG ? "" : " VALUE");
        fprintf(out, "  %-26s %s\n  %-26s [env %s, default %s", flag, r->help, "", r->env,
                r->def[0] ? r->def : "none");
        if (r->type == OPT_INT)
            fprintf(out, ", %ld..%ld", r->min, r->max);
        fprintf(out, "]\n");
    }
    fprintf(out, "  %-26s %s\n", "--help", "print this help and exit");
}

static const struct option_row *find_row(const char *name)
{
    for (size_t i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    }
    return NULL;
}

int tapi_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    char *end = NULL;
    long v;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    errno = 0;
    v = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || v < 0 || v > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)v;
    return 0;
}

/* The table name goes into SQL (quoted, but kept simple on purpose): [A-Za-z_][A-Za-z0-9_]*. */
static int valid_identifier(const char *s)
{
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (const char *p = s; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return 0;
    }
    return 1;
}

enum tapi_config_result tapi_config_load(struct tapi_config *cfg, int argc, char **argv,
                                         const char *const *envp, FILE *out, FILE *err)
{
    char host[128];
    int port;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NROWS; i++) {
        if (set_value(cfg, &rows[i], rows[i].def, "default", err) != 0)
            return TAPI_CONFIG_EXIT_USAGE;
    }
    for (const char *const *e = envp; e && *e; e++) {
        for (size_t i = 0; i < NROWS; i++) {
            size_t n = strlen(rows[i].env);
            if (strncmp(*e, rows[i].env, n) == 0 && (*e)[n] == '=') {
                if (set_value(cfg, &rows[i], *e + n + 1, "environment", err) != 0)
                    return TAPI_CONFIG_EXIT_USAGE;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char name[64];
        const char *eq, *val;
        size_t n;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(out);
            return TAPI_CONFIG_EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "traces-api: unexpected argument '%s' (see --help)\n", a);
            return TAPI_CONFIG_EXIT_USAGE;
        }
        eq = strchr(a + 2, '=');
        n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n >= sizeof(name)) {
            fprintf(err, "traces-api: unknown option '%.80s' (see --help)\n", a);
            return TAPI_CONFIG_EXIT_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = '\0';
        const struct option_row *r = find_row(name);
        if (r == NULL) {
            fprintf(err, "traces-api: unknown option '--%s' (see --help)\n", name);
            return TAPI_CONFIG_EXIT_USAGE;
        }
        if (eq)
            val = eq + 1;
        else if (r->type == OPT_FLAG)
            val = "1";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(err, "traces-api: option '--%s' needs a value\n", name);
            return TAPI_CONFIG_EXIT_USAGE;
        }
        if (set_value(cfg, r, val, "option", err) != 0)
            return TAPI_CONFIG_EXIT_USAGE;
    }
    if (cfg->pg_dsn[0] == '\0') {
        fprintf(err, "traces-api: no PostgreSQL: give --pg DSN or TRACES_PG_DSN\n");
        return TAPI_CONFIG_EXIT_USAGE;
    }
    if (tapi_split_hostport(cfg->listen, host, sizeof(host), &port) != 0) {
        fprintf(err, "traces-api: --listen '%s': expected ADDR:PORT\n", cfg->listen);
        return TAPI_CONFIG_EXIT_USAGE;
    }
    if (tapi_split_hostport(cfg->redis, host, sizeof(host), &port) != 0 || port == 0) {
        fprintf(err, "traces-api: --redis '%s': expected HOST:PORT\n", cfg->redis);
        return TAPI_CONFIG_EXIT_USAGE;
    }
    if (!valid_identifier(cfg->table)) {
        fprintf(err, "traces-api: --table '%s': expected letters, digits and _\n", cfg->table);
        return TAPI_CONFIG_EXIT_USAGE;
    }
    return TAPI_CONFIG_OK;
}
