/* lt_allow: parsing and matching of the target allowlist (see lt_allow.h for the rules). */
#define _GNU_SOURCE
#include "lt_allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALLOW_MAX 256

enum entry_kind { E_NAME, E_SUFFIX, E_NET };

struct entry {
    enum entry_kind kind;
    char text[272]; /* as given, for logs */
    char name[264]; /* E_NAME: lower-case name; E_SUFFIX: ".domain" */
    int family;     /* E_NET: AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix; /* bits */
    int port;   /* 0 = any */
};

struct lt_allow {
    atomic_int refs; /* holders; the list is freed when the last one lets go */
    struct entry e[ALLOW_MAX];
    size_t n;
};

struct lt_allow_slot {
    pthread_mutex_t lock; /* guards: cur */
    struct lt_allow *cur; /* one reference owned by the slot */
};

struct lt_allow *lt_allow_new(void)
{
    struct lt_allow *a = calloc(1, sizeof(struct lt_allow));

    if (a != NULL)
        atomic_init(&a->refs, 1);
    return a;
}

struct lt_allow *lt_allow_ref(struct lt_allow *a)
{
    if (a != NULL)
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

struct lt_allow *lt_allow_new_default(void)
{
    struct lt_allow *a = lt_allow_new();
    char err[64];

    if (a == NULL)
        return NULL;
    if (lt_allow_add(a, "127.0.0.0/8", err, sizeof(err)) != 0 ||
        lt_allow_add(a, "::1", err, sizeof(err)) != 0 ||
        lt_allow_add(a, "localhost", err, sizeof(err)) != 0) {
        lt_allow_free(a);
        return NULL;
    }
    return a;
}

void lt_allow_free(struct lt_allow *a)
{
    /* acq_rel: the thread that frees sees every other holder's reads as done. */
    if (a != NULL && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        free(a);
}

struct lt_allow_slot *lt_allow_slot_new(struct lt_allow *initial)
{
    struct lt_allow_slot *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        lt_allow_free(initial);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->cur = initial;
    return s;
}

void lt_allow_slot_free(struct lt_allow_slot *s)
{
    if (s == NULL)
        return;
    lt_allow_free(s->cur);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct lt_allow *lt_allow_slot_get(struct lt_allow_slot *s)
{
    struct lt_allow *a;

    pthread_mutex_lock(&s->lock);
    a = lt_allow_ref(s->cur);
    pthread_mutex_unlock(&s->lock);
    return a;
}

void lt_allow_slot_set(struct lt_allow_slot *s, struct lt_allow *a)
{
    struct lt_allow *old;

    pthread_mutex_lock(&s->lock);
    old = s->cur;
    s->cur = a;
    pthread_mutex_unlock(&s->lock);
    lt_allow_free(old); /* outside the lock: it may be the last reference */
}

size_t lt_allow_count(const struct lt_allow *a)
{
    return a ? a->n : 0;
}

const char *lt_allow_entry(const struct lt_allow *a, size_t i)
{
    return i < a->n ? a->e[i].text : NULL;
}

static int parse_port(const char *s, int *port)
{
    char *end = NULL;
    long p = strtol(s, &end, 10);

    if (end == s || *end != '\0' || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return s[0] != '.' && s[n - 1] != '.';
}

/* Parses an address or CIDR into e. Returns 0 on success. */
static int parse_net(struct entry *e, const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    int max;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, e->addr) == 1) {
        e->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, e->addr) == 1) {
        e->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    e->prefix = max;
    if (slash) {
        char *end = NULL;
        long p = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || p < 0 || p > max)
            return -1;
        e->prefix = (int)p;
    }
    e->kind = E_NET;
    return 0;
}

int lt_allow_add(struct lt_allow *a, const char *entry, char *err, size_t errlen)
{
    struct entry e;
    char host[260];
    const char *portp = NULL;

    memset(&e, 0, sizeof(e));
    if (a->n >= ALLOW_MAX) {
        snprintf(err, errlen, "too many allowlist entries (at most %d)", ALLOW_MAX);
        return -1;
    }
    if (strlen(entry) == 0 || strlen(entry) >= sizeof(host)) {
        snprintf(err, errlen, "allowlist entry is empty or too long");
        return -1;
    }
    snprintf(e.text, sizeof(e.text), "%s", entry);
    if (entry[0] == '[') { /* [v6]:port */
        const char *close = strchr(entry, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)(close - entry - 1), entry + 1);
        if (close[1] == ':')
            portp = close + 2;
    } else if (strchr(entry, ':') && strchr(entry, ':') == strrchr(entry, ':') &&
               !strchr(entry, '/')) { /* name:port or v4:port (one colon) */
        const char *colon = strchr(entry, ':');
        snprintf(host, sizeof(host), "%.*s", (int)(colon - entry), entry);
        portp = colon + 1;
    } else {
        snprintf(host, sizeof(host), "%s", entry);
    }
    if (portp && parse_port(portp, &e.port) != 0)
        goto bad;
    if (parse_net(&e, host) == 0) {
        a->e[a->n++] = e;
        return 0;
    }
    if (strncmp(host, "*.", 2) == 0 && valid_name(host + 2)) {
        e.kind = E_SUFFIX;
        snprintf(e.name, sizeof(e.name), "%s", host + 1); /* keeps the leading dot */
    } else if (valid_name(host)) {
        e.kind = E_NAME;
        snprintf(e.name, sizeof(e.name), "%s", host);
    } else {
        goto bad;
    }
    for (char *p = e.name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    a->e[a->n++] = e;
    return 0;
bad:
    snprintf(err, errlen,
             "bad allowlist entry '%.80s': expected host[:port], *.domain[:port], an IP, a CIDR "
             "or [v6]:port",
             entry);
    return -1;
}

int lt_allow_add_text(struct lt_allow *a, const char *text, const char *origin, char *err,
                      size_t errlen)
{
    char entry[300];
    char msg[256];
    int lineno = 1;
    const char *p = text;

    while (*p) {
        if (*p == '#') { /* comment: skip to the end of the line */
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (*p == '\n')
            lineno++;
        if (*p == ',' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
            continue;
        }
        size_t n = strcspn(p, ", \t\r\n#");
        if (n >= sizeof(entry)) {
            snprintf(err, errlen, "%.100s:%d: allowlist entry is too long", origin, lineno);
            return -1;
        }
        memcpy(entry, p, n);
        entry[n] = '\0';
        p += n;
        if (lt_allow_add(a, entry, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%.100s:%d: %s", origin, lineno, msg);
            return -1;
        }
    }
    return 0;
}

static int prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static int net_covers(const struct entry *e, int family, const unsigned char *addr, int port)
{
    if (e->kind != E_NET || e->family != family)
        return 0;
    if (e->port && port && e->port != port)
        return 0;
    return prefix_match(e->addr, addr, e->prefix);
}

static int name_covers(const struct entry *e, const char *lname, int port)
{
    size_t n, m;

    if (e->port && port && e->port != port)
        return 0;
    if (e->kind == E_NAME)
        return strcmp(e->name, lname) == 0;
    if (e->kind != E_SUFFIX)
        return 0;
    n = strlen(lname);
    m = strlen(e->name);
    return n > m && strcmp(lname + n - m, e->name) == 0;
}

static int covered_by_net(const struct lt_allow *a, int family, const unsigned char *addr, int port)
{
    for (size_t i = 0; i < a->n; i++) {
        if (net_covers(&a->e[i], family, addr, port))
            return 1;
    }
    return 0;
}

/* 1 for addresses never reached unless an address entry names them: link-local (which holds
 * the cloud metadata service) and the unspecified/"this network" range. */
static int always_denied_v4(const unsigned char *v4)
{
    return (v4[0] == 169 && v4[1] == 254) || v4[0] == 0;
}

/* 1 when addr (IPv6) is one of the forms that embed an IPv4 address: mapped ::ffff:0:0/96,
 * compatible ::/96 (but :: and ::1), NAT64 64:ff9b::/96, 6to4 2002::/16. */
static int embeds_v4(const unsigned char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[12] = {0};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

    if (memcmp(addr, mapped, 12) == 0 || memcmp(addr, nat64, 12) == 0)
        return 1;
    if (memcmp(addr, zero, 12) == 0 && (addr[12] | addr[13]) != 0)
        return 1;
    return addr[0] == 0x20 && addr[1] == 0x02;
}

static int ipv6_always_denied(const unsigned char *addr)
{
    static const unsigned char ec2[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                          0,    0,    0,    0,    0, 0, 0x02, 0x54};
    static const unsigned char unspec[16] = {0};

    return (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) || memcmp(addr, ec2, 16) == 0 ||
           memcmp(addr, unspec, 16) == 0;
}

static const unsigned char loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

/* The address rules shared by both checks. */
static int addr_allowed(const struct lt_allow *a, int family, const unsigned char *addr, int port,
                        int name_allowed)
{
    if (covered_by_net(a, family, addr, port))
        return 1; /* an explicit address entry wins over every default denial */
    /* An IPv6 address carrying an IPv4 one could smuggle a denied IPv4 target past a name or a
     * v6 rule: only an IPv6 entry that covers it explicitly (checked above) lets it through. */
    if (family == AF_INET6 && embeds_v4(addr))
        return 0;
    if (family == AF_INET && always_denied_v4(addr))
        return 0;
    if (family == AF_INET6 && ipv6_always_denied(addr))
        return 0;
    if (name_allowed == LT_ALLOW_NAME_LOOPBACK) /* "localhost" reaches loopback only */
        return family == AF_INET ? addr[0] == 127 : memcmp(addr, loopback6, 16) == 0;
    return name_allowed != 0;
}

int lt_allow_name_matched(const struct lt_allow *a, const char *host, int port)
{
    char lname[256];
    size_t n = strlen(host);

    if (n == 0 || n >= sizeof(lname))
        return 0;
    for (size_t i = 0; i <= n; i++)
        lname[i] = (char)tolower((unsigned char)host[i]);
    if (n > 1 && lname[n - 1] == '.') /* "localhost." is "localhost" */
        lname[n - 1] = '\0';
    for (size_t i = 0; i < a->n; i++) {
        if (!name_covers(&a->e[i], lname, port))
            continue;
        n = strlen(lname);
        if (strcmp(lname, "localhost") == 0 ||
            (n > 10 && strcmp(lname + n - 10, ".localhost") == 0))
            return LT_ALLOW_NAME_LOOPBACK;
        return 1;
    }
    return 0;
}

int lt_allow_host(const struct lt_allow *a, const char *host, int port)
{
    unsigned char addr[16];

    if (a == NULL || host == NULL)
        return 0;
    if (inet_pton(AF_INET, host, addr) == 1)
        return addr_allowed(a, AF_INET, addr, port, 0);
    if (inet_pton(AF_INET6, host, addr) == 1)
        return addr_allowed(a, AF_INET6, addr, port, 0);
    return lt_allow_name_matched(a, host, port);
}

int lt_allow_addr(const struct lt_allow *a, const struct sockaddr *sa, int name_allowed)
{
    if (a == NULL || sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return addr_allowed(a, AF_INET, (const unsigned char *)&s4->sin_addr, ntohs(s4->sin_port),
                            name_allowed);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return addr_allowed(a, AF_INET6, (const unsigned char *)&s6->sin6_addr,
                            ntohs(s6->sin6_port), name_allowed);
    }
    return 0;
}
