/* libFuzzer target: the Slack slash command input (service/slack.c) — the form parser on the
 * whole input, the command grammar on every decoded value and on the raw input, and the
 * signature check with the input's first two lines as the timestamp and signature headers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct slack_form form;
    struct slack_command cmd;
    struct lt_error err;
    char *text = malloc(size + 1);

    if (text == NULL)
        return 0;
    if (slack_form_parse((const char *)data, size, &form, &err) == LT_OK) {
        for (size_t i = 0; i < form.n; i++) {
            int count = 0;
            if (slack_form_get(&form, form.key[i], &count) == NULL || count < 1)
                abort(); /* a parsed key must be found again */
            slack_command_parse(form.val[i], &cmd);
            if (cmd.verb == SLACK_RUN && !json_is_object(cmd.overrides))
                abort(); /* run always carries its merge patch */
            slack_command_clear(&cmd);
        }
        slack_form_clear(&form);
    }
    memcpy(text, data, size);
    text[size] = '\0';
    slack_command_parse(text, &cmd);
    slack_command_clear(&cmd);

    char *nl = strchr(text, '\n');
    const char *ts = text, *sig = "", *body = "";
    if (nl) {
        *nl = '\0';
        sig = nl + 1;
        char *nl2 = strchr(nl + 1, '\n');
        if (nl2) {
            *nl2 = '\0';
            body = nl2 + 1;
        }
    }
    slack_verify("secret", 6, ts, sig, body, strlen(body), 1700000000);
    free(text);
    return 0;
}
