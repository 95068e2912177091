/*
 * lt_allow: the target allowlist. loadtestd aims traffic at other machines on request, so every
 * target (load URL, webhook, database host) must be on the operator's list. Entries:
 *   host or host:port     an exact name ("api.internal", "localhost")
 *   *.domain[:port]       any name below domain
 *   IP, CIDR, [v6]:port   addresses ("10.1.2.3", "10.0.0.0/8", "::1", "[::1]:8080")
 * The default list is loopback only: 127.0.0.0/8, ::1 and localhost.
 *
 * Checked twice: at POST on the spec's host (lt_allow_host), and on every connection after DNS
 * resolution (lt_allow_addr), so a name that later resolves elsewhere (DNS rebinding) cannot
 * reach a denied address. Link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
 * fd00:ec2::254) and IPv6 forms that embed an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d,
 * 64:ff9b::/96, 2002::/16) are denied unless an address entry covers them explicitly (an IPv4
 * entry does not open the IPv6 forms that embed its addresses).
 *
 * An allowlist is immutable once built (after the last lt_allow_add), so any thread may read it
 * without a lock. It is reference-counted: each holder (the daemon's slot, each running run)
 * owns one reference and drops it with lt_allow_free, so a list replaced by a reload (SIGHUP)
 * lives on until the last run that started with it has ended.
 *
 * struct lt_allow_slot holds the list in force. A reload builds a whole new list and swaps it
 * in (lt_allow_slot_set); readers take a reference (lt_allow_slot_get) under the slot's mutex,
 * so they see either the old list or the new one, never a half-built one.
 */
#ifndef LT_ALLOW_H
#define LT_ALLOW_H

#include <stddef.h>
#include <sys/socket.h>

struct lt_allow;

/* Returns new empty list; NULL on allocation failure. */
struct lt_allow *lt_allow_new(void);
/* Returns new list holding the loopback defaults. */
struct lt_allow *lt_allow_new_default(void);
/* Drops one reference; the list is freed with the last. NULL allowed. */
void lt_allow_free(struct lt_allow *a);
/* Takes one more reference (for a holder that outlives the caller's); returns a. */
struct lt_allow *lt_allow_ref(struct lt_allow *a);

/* Adds one entry (syntax above). Returns 0, or -1 with a message in err. */
int lt_allow_add(struct lt_allow *a, const char *entry, char *err, size_t errlen);

/* Adds every entry of text, an allowlist file: entries separated by commas, blanks or lines, '#'
 * starting a comment to the end of its line. Returns 0, or -1 with "origin:LINE: message" in err
 * (entries added before the faulty one stay: build a fresh list and drop it on failure). */
int lt_allow_add_text(struct lt_allow *a, const char *text, const char *origin, char *err,
                      size_t errlen);

/* Number of entries; and entry i as text (borrowed), for logs. */
size_t lt_allow_count(const struct lt_allow *a);
const char *lt_allow_entry(const struct lt_allow *a, size_t i);

/* POST-time check: 1 when host (a name, or an IP literal without brackets) at port is allowed
 * by some entry. */
int lt_allow_host(const struct lt_allow *a, const char *host, int port);

/* Connect-time check of a resolved address. name_allowed is lt_allow_name_matched's answer for
 * the URL's host name: 1 (a name entry matched: any address but the always-denied ones is fine),
 * LT_ALLOW_NAME_LOOPBACK (only loopback addresses), 0 (the address must be covered by an address
 * entry). An address entry covering the address allows it in every case. Returns 1 when the
 * connection may proceed. */
int lt_allow_addr(const struct lt_allow *a, const struct sockaddr *sa, int name_allowed);

/* lt_allow_name_matched's answer for a name below "localhost" (RFC 6761: always loopback). */
#define LT_ALLOW_NAME_LOOPBACK 2

/* 0 when host matched no name entry (address entries are not looked at) at port; otherwise 1, or
 * LT_ALLOW_NAME_LOOPBACK when host is "localhost" or ends in ".localhost": such a name may only
 * reach loopback addresses, so an /etc/hosts line or a DNS answer that points it elsewhere (a
 * loopback-only daemon aimed at "localhost" reaching 10.0.0.1) is refused at connect. */
int lt_allow_name_matched(const struct lt_allow *a, const char *host, int port);

struct lt_allow_slot;

/* Returns new slot holding initial (takes the caller's reference); NULL on allocation failure
 * (initial is then released). */
struct lt_allow_slot *lt_allow_slot_new(struct lt_allow *initial);
/* Drops the slot's reference to its list and frees the slot. NULL allowed. */
void lt_allow_slot_free(struct lt_allow_slot *s);
/* Returns a new reference to the list in force (caller drops it with lt_allow_free). */
struct lt_allow *lt_allow_slot_get(struct lt_allow_slot *s);
/* Puts a in force (takes the caller's reference) and drops the slot's reference to the old
 * list; holders of the old list keep it until they drop it. */
void lt_allow_slot_set(struct lt_allow_slot *s, struct lt_allow *a);

#endif
