/* log: see log.h. Lines are written with one write(2) each so that lines from
 * the health thread and the loop never interleave. */
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>


#define MAX_SECRETS 64
#define LINE_MAX_BYTES 8192

static enum log_level current_level = LOG_INFO;
static int use_json;
static char *secrets[MAX_SECRETS];
static int secret_count;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format format)
{
    current_level = level;
    if (format == LOG_FORMAT_AUTO)
        use_json = !isatty(STDERR_FILENO);
    else
        use_json = format == LOG_FORMAT_JSON;
}

enum log_level log_get_level(void) { return current_level; }

int log_level_from_name(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 3)
        return;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < secret_count; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&secrets_lock);
            return;
        }
    }
    if (secret_count < MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy)
            secrets[secret_count++] = copy;
    }
    pthread_mutex_unlock(&secrets_lock);
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < secret_count; i++)
        free(secrets[i]);
    secret_count = 0;
    pthread_mutex_unlock(&secrets_lock);
}

/* Mask "scheme://user:password@" even when the password was never registered
 * (a URL typed straight into config.lua). */
static void mask_url_passwords(char *s, size_t cap)
{
    char *p = s;
    while ((p = strstr(p, "://")) != NULL) {
        char *user = p + 3;
        char *at = user + strcspn(user, "/@ \t\"'");
        char *colon = *at == '@' ? memchr(user, ':', (size_t)(at - user)) : NULL;
        if (colon && at - colon > 1) {
            /* Replace the password with "***"; the text only ever shrinks or
             * grows by at most two bytes, so keep room for that. */
            size_t pw_len = (size_t)(at - colon - 1);
            size_t tail = strlen(at) + 1;
            if (pw_len < 3 && strlen(s) + 3 >= cap)
                return;
            memmove(colon + 4, at, tail);
            memcpy(colon + 1, "***", 3);
            at = colon + 4;
        }
        p = at;
    }
}

void log_redact(const char *in, char *out, unsigned long outsz)
{
    if (outsz == 0)
        return;
    size_t o = 0;
    pthread_mutex_lock(&secrets_lock);
    for (const char *p = in; *p && o + 1 < outsz;) {
        int matched = 0;
        for (int i = 0; i < secret_count; i++) {
            size_t n = strlen(secrets[i]);
            if (strncmp(p, secrets[i], n) == 0) {
                for (const char *m = "***"; *m && o + 1 < outsz; m++)
                    out[o++] = *m;
                p += n;
                matched = 1;
                break;
            }
        }
        if (!matched)
            out[o++] = *p++;
    }
    pthread_mutex_unlock(&secrets_lock);
    out[o] = '\0';
    mask_url_passwords(out, outsz);
}

/* Append `s` to buf as a JSON string body (without quotes). */
static size_t json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && pos + 7 < cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c == '\n') {
            buf[pos++] = '\\', buf[pos++] = 'n';
        } else if (c == '\t') {
            buf[pos++] = '\\', buf[pos++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            buf[pos++] = '\\', buf[pos++] = 'u', buf[pos++] = '0', buf[pos++] = '0';
            buf[pos++] = hex[c >> 4], buf[pos++] = hex[c & 15];
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap)
{
    if (level < current_level)
        return;
    char raw[LINE_MAX_BYTES], msg[LINE_MAX_BYTES], line[LINE_MAX_BYTES + 256];
    vsnprintf(raw, sizeof raw, fmt, ap);
    log_redact(raw, msg, sizeof msg);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t wl = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof when - wl, ".%03ldZ", ts.tv_nsec / 1000000);

    size_t n;
    if (use_json) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"",
                             when, level_names[level]);
        n = json_escape(line, n, sizeof line, component ? component : "daz");
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
        n = json_escape(line, n, sizeof line, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %-5s [%s] %s\n", when, level_names[level],
                             component ? component : "daz", msg);
    }
    if (n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere to report a failed log write */
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, component, fmt, ap);
    va_end(ap);
}
