/* Unit tests for log.c: secret masking and URL password redaction. */
#include "core/log.h"
#include "tap.h"

int main(void)
{
    char out[256];

    log_add_secret("hunter2secret");
    log_redact("login with hunter2secret now", out, sizeof out);
    is_str(out, "login with *** now", "a registered secret is masked");

    log_redact("twice hunter2secret hunter2secret", out, sizeof out);
    is_str(out, "twice *** ***", "every occurrence is masked");

    log_redact("postgresql://daz:pa55word@db:5432/daz", out, sizeof out);
    is_str(out, "postgresql://daz:***@db:5432/daz", "a URL password is masked without registration");

    log_redact("postgresql://daz:p@db/daz", out, sizeof out);
    is_str(out, "postgresql://daz:***@db/daz", "a one-character URL password is masked");

    log_redact("postgresql://daz@db/daz and https://example.com/a:b@c", out, sizeof out);
    is_str(out, "postgresql://daz@db/daz and https://example.com/a:b@c", "URLs without a password are untouched");

    log_add_secret("ab");
    log_redact("about abba", out, sizeof out);
    is_str(out, "about abba", "secrets shorter than 3 bytes are not used as masks");

    char small[8];
    log_redact("hunter2secret hunter2secret", small, sizeof small);
    ok(strlen(small) < sizeof small, "output is bounded by its buffer");

    log_clear_secrets();
    log_redact("hunter2secret", out, sizeof out);
    is_str(out, "hunter2secret", "cleared secrets are no longer masked");
    return tap_done();
}
