/*
 * harness: the smallest test harness that does the job. A test file defines functions
 * "static void test_x(void)" and a main that calls RUN(test_x) for each and returns
 * harness_report(). CHECK records a failure with file and line and goes on; REQUIRE stops the
 * current test function.
 */
#ifndef LT_HARNESS_H
#define LT_HARNESS_H

#include <stdio.h>
#include <string.h>

extern int harness_failures;
extern int harness_checks;
extern const char *harness_current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        harness_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            harness_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d in %s: %s\n", __FILE__, __LINE__, harness_current, #cond); \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        harness_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            harness_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d in %s: %s (stopping this test)\n", __FILE__, __LINE__,     \
                    harness_current, #cond);                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b) CHECK((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0)

#define CHECK_NEAR(a, b, tol) CHECK(((a) - (b)) <= (tol) && ((b) - (a)) <= (tol))

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int before_ = harness_failures;                                                            \
        harness_current = #fn;                                                                     \
        fn();                                                                                      \
        fprintf(stderr, "%s %s\n", harness_failures == before_ ? "ok  " : "FAIL", #fn);            \
    } while (0)

/* Prints the tally and returns the process exit code. */
int harness_report(void);

#endif
