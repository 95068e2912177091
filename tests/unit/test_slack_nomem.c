/* slack_verify when its one allocation fails: SLACK_SIG_NOMEM (the handler answers 500), not
 * SLACK_SIG_MISMATCH (which answered 401 "signature does not match"). Linked with
 * -Wl,--wrap=malloc, so malloc in the service's objects can be made to fail. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "slack.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static volatile int fail_malloc;

void *__wrap_malloc(size_t n)
{
    return fail_malloc ? NULL : __real_malloc(n);
}

static void test_verify_out_of_memory(void)
{
    const char *secret = "8f742231b10e8888abcd99yyyzzz85a5";
    const char *body = "text=help";
    char sig[3 + 64 + 1] = "v0=";
    enum slack_sig got;

    memset(sig + 3, '0', 64);
    fail_malloc = 1;
    got = slack_verify(secret, strlen(secret), "1531420618", sig, body, strlen(body), 1531420618);
    fail_malloc = 0;
    CHECK(got == SLACK_SIG_NOMEM);
    /* With memory, the same bad signature is a mismatch. */
    got = slack_verify(secret, strlen(secret), "1531420618", sig, body, strlen(body), 1531420618);
    CHECK(got == SLACK_SIG_MISMATCH);
}

int main(void)
{
    RUN(test_verify_out_of_memory);
    return harness_report();
}
