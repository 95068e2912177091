/*
 * dashboard: serves the embedded page and its assets. Each answer carries the asset's content
 * type, an ETag derived from its bytes (FNV-1a 64, computed once) and "Cache-Control: no-cache",
 * so a browser revalidates and gets 304 until the binary changes; the page also gets a strict
 * Content-Security-Policy (no inline script). Bodies are sent straight from the binary's
 * read-only data.
 */
#define _GNU_SOURCE
#include "dashboard.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DASHBOARD_MAX_ASSETS 16

static pthread_once_t etags_once = PTHREAD_ONCE_INIT;
static char etags[DASHBOARD_MAX_ASSETS][24]; /* written once under etags_once, then read-only */

static void etags_compute(void)
{
    for (size_t i = 0; i < DASHBOARD_MAX_ASSETS && dashboard_assets[i].name; i++) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t k = 0; k < dashboard_assets[i].len; k++) {
            h ^= dashboard_assets[i].data[k];
            h *= 0x100000001b3ULL;
        }
        snprintf(etags[i], sizeof(etags[i]), "\"%016llx\"", (unsigned long long)h);
    }
}

static const char *content_type_for(const char *name)
{
    const char *dot = strrchr(name, '.');

    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    return "application/octet-stream";
}

/* 1 when the If-None-Match header (a list of entity tags, or "*") names etag. */
static int etag_listed(const char *header, const char *etag)
{
    size_t n = strlen(etag);

    if (header == NULL)
        return 0;
    for (const char *p = header; *p;) {
        p += strspn(p, " \t,");
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p == '*')
            return 1;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

static void serve(struct http_request *req, struct http_response *resp, const char *name)
{
    pthread_once(&etags_once, etags_compute);
    for (size_t i = 0; i < DASHBOARD_MAX_ASSETS && dashboard_assets[i].name; i++) {
        const struct dashboard_asset *a = &dashboard_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        snprintf(resp->etag, sizeof(resp->etag), "%s", etags[i]);
        resp->cache_control = "no-cache";
        resp->csp = DASHBOARD_CSP;
        if (etag_listed(http_header(req, "If-None-Match"), etags[i])) {
            resp->status = 304;
            return;
        }
        resp->status = 200;
        resp->raw = a->data;
        resp->raw_len = a->len;
        resp->content_type = content_type_for(a->name);
        return;
    }
    http_fail(resp, LT_ERR_NOT_FOUND, NULL, "no dashboard asset '%s'", name);
}

void dashboard_index(struct http_request *req, struct http_response *resp)
{
    serve(req, resp, "index.html");
}

void dashboard_asset(struct http_request *req, struct http_response *resp)
{
    /* index.html is the page itself, served at / only. */
    if (req->id == NULL || strcmp(req->id, "index.html") == 0) {
        http_fail(resp, LT_ERR_NOT_FOUND, NULL, "no dashboard asset '%s'", req->id ? req->id : "");
        return;
    }
    serve(req, resp, req->id);
}
