/* log: levelled logging to stderr — readable text on a terminal, JSON lines
 * otherwise — with every registered secret masked. Uses libc. */
#ifndef DAZ_LOG_H
#define DAZ_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_AUTO = 0, LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_setup(enum log_level level, enum log_format format);
enum log_level log_get_level(void);
int log_level_from_name(const char *name, enum log_level *out);

/* Remember a secret (a password, a token): any log line containing it shows
 * "***" instead. The string is copied. Short strings (< 3 bytes) are ignored
 * because masking them would garble ordinary text. */
void log_add_secret(const char *secret);
void log_clear_secrets(void);

/* Copy `in` to `out` with secrets and URL passwords (scheme://user:pw@) masked. */
void log_redact(const char *in, char *out, unsigned long outsz);

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap);

/* Lines that can repeat at event rate: core/log_repeat.h. */

#define log_debug(c, ...) log_msg(LOG_DEBUG, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(LOG_INFO, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(LOG_WARN, c, __VA_ARGS__)
#define log_error(c, ...) log_msg(LOG_ERROR, c, __VA_ARGS__)

#endif
