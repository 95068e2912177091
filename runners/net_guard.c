/*
 * net_guard: connect-time allowlist check for libcurl (see net_guard.h). The loopback default
 * list is built once per process and never freed (it is immutable, so any thread may read it).
 */
#define _GNU_SOURCE /* SOCK_CLOEXEC */
#include "net_guard.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lt_allow.h"

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static struct lt_allow *default_allow; /* written once under default_once, then read-only */

static void default_init(void)
{
    default_allow = lt_allow_new_default();
}

curl_socket_t net_guard_open_socket(const struct lt_allow *allow, int name_allowed,
                                    curlsocktype purpose, struct curl_sockaddr *addr, int *refused)
{
    if (purpose != CURLSOCKTYPE_IPCXN || addr == NULL)
        return CURL_SOCKET_BAD;
    if (allow == NULL) {
        pthread_once(&default_once, default_init);
        allow = default_allow;
    }
    /* No list at all (allocation failed): fail closed. */
    if (allow == NULL || !lt_allow_addr(allow, &addr->addr, name_allowed)) {
        if (refused != NULL)
            *refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}
