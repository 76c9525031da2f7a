/* cytube_text: see text.h. Chat text hygiene for the rooms: clean plugin
 * text and split it into lines CyTube will take whole. CyTube cuts chat at
 * 320 UTF-16 units before escaping, turns control characters into spaces,
 * and runs any line starting with '/' as a command (or a `/d` drink). */
#include <stdlib.h>
#include <string.h>

#include "cytube/text.h"

/* Length of the valid UTF-8 sequence at s (1..4), its code point in *cp, or 0
 * when the bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF). */
static int utf8_char(const unsigned char *s, size_t avail, unsigned *cp)
{
    if (avail == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    unsigned min;
    if ((c & 0xE0) == 0xC0) {
        n = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if ((size_t)n > avail)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

static int is_control(unsigned cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029;
}

char *cytube_clean_text(const char *text)
{
    size_t len = text ? strlen(text) : 0;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0, i = 0;
    int pending_space = 0;
    while (i < len) {
        unsigned cp;
        int n = utf8_char(s + i, len - i, &cp);
        if (n == 0) { /* invalid byte: dropped */
            i++;
            continue;
        }
        if (is_control(cp) || cp == ' ') {
            pending_space = 1;
        } else {
            if (pending_space && o > 0)
                out[o++] = ' ';
            pending_space = 0;
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
        }
        i += (size_t)n;
    }
    out[o] = '\0';
    return out;
}

int cytube_split_text(const char *clean, int max_units, char **out, int max_lines)
{
    const unsigned char *s = (const unsigned char *)clean;
    size_t len = strlen(clean), p = 0;
    int lines = 0;
    if (max_units < 2)
        return 0;
    while (lines < max_lines) {
        while (p < len && s[p] == ' ')
            p++;
        if (p >= len)
            break;
        size_t start = p, i = p, last_space = 0;
        int limit = s[start] == '/' ? max_units - 1 : max_units;
        int units = 0;
        while (i < len) {
            unsigned cp;
            int n = utf8_char(s + i, len - i, &cp);
            if (n == 0)
                n = 1, cp = '?'; /* clean text has none; stay safe anyway */
            int u = cp > 0xFFFF ? 2 : 1;
            if (units + u > limit)
                break;
            if (cp == ' ')
                last_space = i;
            units += u;
            i += (size_t)n;
        }
        size_t end, next;
        if (i >= len) {
            end = next = len;
        } else if (s[i] == ' ') { /* the limit falls on a space: a clean cut */
            end = i;
            next = i + 1;
        } else if (last_space > start) {
            end = last_space;
            next = last_space + 1;
        } else {
            end = next = i; /* one long word: cut between characters */
        }
        while (end > start && s[end - 1] == ' ')
            end--;
        int guard = s[start] == '/';
        char *line = malloc(end - start + 2);
        if (!line)
            break;
        size_t o = 0;
        if (guard)
            line[o++] = ' ';
        memcpy(line + o, s + start, end - start);
        line[o + end - start] = '\0';
        out[lines++] = line;
        p = next;
    }
    return lines;
}
