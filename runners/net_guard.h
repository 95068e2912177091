/*
 * net_guard: the target allowlist at connect time, for runners that drive libcurl themselves.
 * A runner installs its own CURLOPT_OPENSOCKETFUNCTION callback and calls
 * net_guard_open_socket from it, so every connection libcurl opens (after DNS resolution, for
 * each address it tries) is checked with lt_allow_addr before a socket exists. Used by the
 * ratelimit runner; http_engine.c has its own copy of the same rule.
 */
#ifndef LT_NET_GUARD_H
#define LT_NET_GUARD_H

#include <curl/curl.h>

struct lt_allow;

/* Returns a new socket for addr (close-on-exec), or CURL_SOCKET_BAD when the connection must not
 * be made: purpose is not a plain IP connection (CURLSOCKTYPE_IPCXN), or the address is not
 * allowed by allow (borrowed; NULL means the loopback-only default, never "no check").
 * name_allowed is 1 when the URL's host name matched a name entry of the list (see
 * lt_allow_addr). *refused (may be NULL) is set to 1 when the allowlist said no, and left alone
 * otherwise, so the caller can tell a refused connection from a failed one. Safe from any thread.
 */
curl_socket_t net_guard_open_socket(const struct lt_allow *allow, int name_allowed,
                                    curlsocktype purpose, struct curl_sockaddr *addr, int *refused);

#endif
