/* libFuzzer target: the configuration reader (service/config.c). The input is split at NUL
 * bytes into argv; a leading line "ENV:NAME=VALUE" run becomes the environment. Its first
 * NUL-terminated part is also read as an allowlist file (lt_allow_add_text, --allow-target-file
 * and --allow-target), the other operator input that SIGHUP re-reads. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lt_allow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    char *argv[64];
    const char *envp[16];
    int argc = 1, envc = 0;
    struct config cfg;
    FILE *devnull = fopen("/dev/null", "w");

    if (buf == NULL || devnull == NULL)
        goto out;
    memcpy(buf, data, size);
    buf[size] = '\0';
    struct lt_allow *a = lt_allow_new();
    char err[256];
    if (a != NULL)
        lt_allow_add_text(a, buf, "fuzz", err, sizeof(err));
    lt_allow_free(a);
    argv[0] = "loadtestd";
    for (char *p = buf; p < buf + size && argc < 63 && envc < 15; p += strlen(p) + 1) {
        if (strncmp(p, "ENV:", 4) == 0)
            envp[envc++] = p + 4;
        else
            argv[argc++] = p;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    config_load(&cfg, argc, argv, envp, devnull, devnull);
out:
    if (devnull)
        fclose(devnull);
    free(buf);
    return 0;
}
