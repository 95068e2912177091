/* client: libcurl requests to loadtestd with the token kept out of every output. */
#define _POSIX_C_SOURCE 200809L
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BODY_MAX           (32 * 1024 * 1024) /* larger answers are refused, not buffered */
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 30000L
#define RETRY_AFTER_MAX_S  10

struct client {
    CURL *curl;
    char *base;        /* server URL without trailing '/' (may hold credentials: never print) */
    char *display;     /* base with user:password@ masked, for messages */
    char *auth_header; /* "Authorization: Bearer ..." or NULL; never printed */
    int verbose;
    const volatile sig_atomic_t *interrupts;
    sig_atomic_t abort_at; /* the current request aborts when *interrupts reaches this */
};

struct sink {
    char *buf;
    size_t len;
    size_t cap;
    int too_big;
};

static char *mask_userinfo(const char *url)
{
    const char *auth = strstr(url, "://");
    const char *end, *at;
    char *out;
    size_t n;

    if (auth == NULL)
        return strdup(url);
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    at = NULL;
    for (const char *p = auth; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    if (at == NULL)
        return strdup(url);
    n = (size_t)(auth - url) + 3 + strlen(at) + 1;
    out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s***%s", (int)(auth - url), url, at);
    return out;
}

static int token_ok(const char *t)
{
    for (; *t; t++) {
        if (*t < 33 || *t > 126)
            return 0;
    }
    return 1;
}

struct client *client_new(const char *server, const char *token, int verbose,
                          const volatile sig_atomic_t *interrupts, char *err, size_t errlen)
{
    struct client *c = NULL;
    size_t n;

    if (strncasecmp(server, "http://", 7) != 0 && strncasecmp(server, "https://", 8) != 0) {
        snprintf(err, errlen, "the server URL must start with http:// or https://");
        return NULL;
    }
    if (token && *token && !token_ok(token)) {
        snprintf(err, errlen, "LOADTEST_TOKEN holds spaces or control characters; not sending it");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto nomem;
    c->verbose = verbose;
    c->interrupts = interrupts;
    c->base = strdup(server);
    if (c->base == NULL)
        goto nomem;
    n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    c->display = mask_userinfo(c->base);
    if (c->display == NULL)
        goto nomem;
    if (token && *token) {
        n = strlen(token) + 32;
        c->auth_header = malloc(n);
        if (c->auth_header == NULL)
            goto nomem;
        snprintf(c->auth_header, n, "Authorization: Bearer %s", token);
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL)
        goto nomem;
    return c;
nomem:
    snprintf(err, errlen, "out of memory");
    client_free(c);
    return NULL;
}

void client_free(struct client *c)
{
    if (c == NULL)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->auth_header) {
        /* The token should not linger in freed heap memory. */
        volatile char *p = c->auth_header;
        while (*p)
            *p++ = '\0';
        free(c->auth_header);
    }
    free(c->display);
    free(c->base);
    free(c);
}

const char *client_server_display(const struct client *c)
{
    return c->display;
}

int client_has_token(const struct client *c)
{
    return c->auth_header != NULL;
}

void client_resp_clear(struct client_resp *resp)
{
    free(resp->body);
    json_decref(resp->json);
    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct sink *s = opaque;
    size_t n = size * nmemb;

    if (s->len + n + 1 > BODY_MAX) {
        s->too_big = 1;
        return 0; /* makes curl fail the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *p;
        while (cap < s->len + n + 1)
            cap *= 2;
        p = realloc(s->buf, cap);
        if (p == NULL)
            return 0;
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

/* Copies the value of header line "Name: value\r\n" into out when the name matches. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *v, *end = line + len;

    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    v = line + nl + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    snprintf(out, outlen, "%.*s", (int)(end - v), v);
    return 1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct client_resp *r = opaque;
    size_t n = size * nmemb;
    char v[64];

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new status line (after a 1xx): forget headers of the interim answer. */
        r->etag[0] = r->location[0] = '\0';
        r->replayed = 0;
        r->retry_after = -1;
        return n;
    }
    header_value(data, n, "ETag", r->etag, sizeof(r->etag));
    header_value(data, n, "Location", r->location, sizeof(r->location));
    if (header_value(data, n, "Idempotent-Replayed", v, sizeof(v)))
        r->replayed = strcasecmp(v, "true") == 0;
    if (header_value(data, n, "Retry-After", v, sizeof(v))) {
        char *e = NULL;
        long s = strtol(v, &e, 10);
        if (e != v && *e == '\0' && s >= 0)
            r->retry_after = s;
    }
    return n;
}

static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct client *c = opaque;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return c->interrupts && *c->interrupts >= c->abort_at;
}

int client_send(struct client *c, const struct client_req *req, struct client_resp *resp)
{
    struct curl_slist *hdrs = NULL, *tmp;
    struct sink sink = {0};
    char url[4096], line[512];
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE];
    int rc = -1;
    double t0 = 0;
    struct timespec ts;

    client_resp_clear(resp);
    if ((size_t)snprintf(url, sizeof(url), "%s%s", c->base, req->path) >= sizeof(url)) {
        snprintf(resp->transport, sizeof(resp->transport), "request URL too long");
        goto out;
    }
    c->abort_at = (c->interrupts ? *c->interrupts : 0) + 1;
    if (req->hold && c->abort_at < 2)
        c->abort_at = 2;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;

    /* Every header goes through tmp so a failed append leaks nothing. */
#define ADD_HEADER(h)                                                                              \
    do {                                                                                           \
        tmp = curl_slist_append(hdrs, (h));                                                        \
        if (tmp == NULL) {                                                                         \
            snprintf(resp->transport, sizeof(resp->transport), "out of memory");                   \
            goto out;                                                                              \
        }                                                                                          \
        hdrs = tmp;                                                                                \
    } while (0)

    ADD_HEADER("Accept: application/json");
    ADD_HEADER("Expect:"); /* no 100-continue round trip for spec bodies */
    if (c->auth_header)
        ADD_HEADER(c->auth_header);
    if (req->body)
        ADD_HEADER("Content-Type: application/json");
    if (req->if_none_match && *req->if_none_match) {
        snprintf(line, sizeof(line), "If-None-Match: %s", req->if_none_match);
        ADD_HEADER(line);
    }
    if (req->idempotency_key) {
        snprintf(line, sizeof(line), "Idempotency-Key: %s", req->idempotency_key);
        ADD_HEADER(line);
    }
#undef ADD_HEADER

    if (c->verbose) {
        fprintf(stderr, "> %s %s%s\n", req->method, c->display, req->path);
        if (c->auth_header)
            fprintf(stderr, "> Authorization: Bearer ***\n");
        if (req->if_none_match && *req->if_none_match)
            fprintf(stderr, "> If-None-Match: %s\n", req->if_none_match);
        if (req->idempotency_key)
            fprintf(stderr, "> Idempotency-Key: %s\n", req->idempotency_key);
        if (req->body)
            fprintf(stderr, "> (%zu bytes of JSON)\n", req->body_len);
    }

    curl_easy_reset(c->curl);
    errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "loadtest/" LT_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(req->body ? req->body_len : 0));
    } else {
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body) {
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, req->body);
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }

    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        resp->status = 0;
        resp->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
        resp->aborted = cc == CURLE_ABORTED_BY_CALLBACK;
        if (resp->aborted)
            snprintf(resp->transport, sizeof(resp->transport), "interrupted");
        else if (sink.too_big)
            snprintf(resp->transport, sizeof(resp->transport), "answer larger than %d MiB",
                     BODY_MAX / (1024 * 1024));
        else
            snprintf(resp->transport, sizeof(resp->transport), "%s",
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (c->verbose)
            fprintf(stderr, "< (no answer: %s)\n", resp->transport);
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->body = sink.buf ? sink.buf : strdup("");
    resp->body_len = sink.len;
    sink.buf = NULL;
    if (resp->body == NULL) {
        resp->status = 0;
        snprintf(resp->transport, sizeof(resp->transport), "out of memory");
        goto out;
    }
    if (resp->body_len > 0)
        resp->json = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (c->verbose) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        fprintf(stderr, "< %ld (%.0f ms, %zu bytes)%s%s%s\n", resp->status,
                (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 - t0, resp->body_len,
                resp->etag[0] ? " ETag " : "", resp->etag,
                resp->replayed ? " Idempotent-Replayed" : "");
    }
    rc = 0;
out:
    curl_slist_free_all(hdrs);
    free(sink.buf);
    return rc;
}

int client_sleep_ms(const struct client *c, long ms)
{
    sig_atomic_t at = c->interrupts ? *c->interrupts : 0;
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};

    /* A signal ends nanosleep early with EINTR, so an interrupt is seen at once. */
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        if (c->interrupts && *c->interrupts != at)
            return -1;
    }
    return c->interrupts && *c->interrupts != at ? -1 : 0;
}

static int retryable(const struct client_resp *resp, int rc)
{
    if (rc != 0)
        return !resp->aborted;
    return resp->status >= 500 || resp->status == 429;
}

int client_send_retry(struct client *c, const struct client_req *req, int retries,
                      struct client_resp *resp)
{
    long delay_ms = 500;
    int rc = -1;

    for (int attempt = 0;; attempt++) {
        char why[512];
        long wait_ms = delay_ms;

        rc = client_send(c, req, resp);
        if (attempt >= retries || !retryable(resp, rc))
            return rc;
        client_describe_error(c, resp, why, sizeof(why));
        if (resp->retry_after > 0)
            wait_ms =
                (resp->retry_after > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : resp->retry_after) *
                1000L;
        fprintf(stderr, "loadtest: %s %s: %s; retrying in %.1f s (%d of %d)\n", req->method,
                req->path, why, (double)wait_ms / 1000.0, attempt + 1, retries);
        /* A held request (run creation) keeps retrying through a first interrupt: its earlier
         * attempt may have created the run, and the caller needs its id to cancel it. */
        if (client_sleep_ms(c, wait_ms) != 0 && !(req->hold && *c->interrupts < 2)) {
            resp->aborted = 1;
            return rc;
        }
        delay_ms *= 2;
    }
}

static const char *error_member(const struct client_resp *resp, const char *key)
{
    json_t *e = json_object_get(resp->json, "error");
    const char *s = json_string_value(json_object_get(e, key));

    return s ? s : "";
}

const char *client_error_code(const struct client_resp *resp)
{
    return error_member(resp, "code");
}

const char *client_error_message(const struct client_resp *resp)
{
    return error_member(resp, "message");
}

void client_describe_error(const struct client *c, const struct client_resp *resp, char *out,
                           size_t outlen)
{
    const char *code = client_error_code(resp);
    const char *field = error_member(resp, "field");

    if (resp->status == 0) {
        snprintf(out, outlen, "cannot reach loadtestd at %s: %s", c->display, resp->transport);
    } else if (*code) {
        snprintf(out, outlen, "%s: %s%s%s%s", code, client_error_message(resp),
                 *field ? " (field " : "", field, *field ? ")" : "");
    } else {
        snprintf(out, outlen, "HTTP %ld from %s", resp->status, c->display);
    }
}

int client_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (o + (plain ? 1 : 3) >= outlen)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out[o] = '\0';
    return 0;
}
