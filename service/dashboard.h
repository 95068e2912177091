/*
 * dashboard: the web page of loadtestd (GET / and GET /ui/{asset}). The page (service/web/:
 * index.html, app.js, app.css) is compiled into the binary by service/embed_assets.cmake and
 * served from read-only memory with a content hash as ETag. The assets hold no data, so these
 * routes need no token; the page reads the JSON API with fetch and asks for a token when the
 * API answers 401.
 */
#ifndef LT_DASHBOARD_H
#define LT_DASHBOARD_H

#include <stddef.h>

#include "http.h"

struct dashboard_asset {
    const char *name;          /* file name under service/web/, "app.js" */
    const unsigned char *data; /* len bytes (plus a NUL not counted) */
    size_t len;
};

/* The embedded files, ending with a row of NULLs (generated: dashboard_assets.c). */
extern const struct dashboard_asset dashboard_assets[];

/* The Content-Security-Policy sent with the page: everything from this origin only, no inline
 * scripts or styles. */
#define DASHBOARD_CSP                                                                              \
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "               \
    "form-action 'none'; frame-ancestors 'none'"

/* GET /: the page (index.html). */
void dashboard_index(struct http_request *req, struct http_response *resp);
/* GET /ui/{asset}: app.js, app.css; 404 for any other name. */
void dashboard_asset(struct http_request *req, struct http_response *resp);

#endif
