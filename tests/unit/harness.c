/* harness: tallies for the unit tests. */
#include "harness.h"

int harness_failures;
int harness_checks;
const char *harness_current = "";

int harness_report(void)
{
    fprintf(stderr, "%d checks, %d failed\n", harness_checks, harness_failures);
    return harness_failures ? 1 : 0;
}
