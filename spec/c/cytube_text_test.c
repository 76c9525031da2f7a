/* cytube_text_test: cleaning and splitting chat text for CyTube (320 UTF-16
 * units per line, word boundaries, whole characters, no accidental
 * commands, no control characters). */
#include <stdlib.h>

#include "cytube/text.h"
#include "tap.h"

static int utf16_units(const char *s)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xC0) != 0x80)
            n += (*p & 0xF8) == 0xF0 ? 2 : 1;
    }
    return n;
}

static void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++)
        free(lines[i]);
}

int main(void)
{
    char *c = cytube_clean_text("  a\tb\n\nc\x01" "d\x7f" "e \xc2\x85 f\xff\xfeg  ");
    is_str(c, "a b c d e fg" /* C1 NEL too; invalid bytes dropped */, "control characters become one space, ends trimmed");
    free(c);
    c = cytube_clean_text("h\xc3\xa9llo \xf0\x9f\x98\x80 \xe2\x80\xa8x");
    is_str(c, "h\xc3\xa9llo \xf0\x9f\x98\x80 x", "valid UTF-8 kept, line separator removed");
    free(c);
    c = cytube_clean_text("\xc0\xaf\xed\xa0\x80ok");
    is_str(c, "ok", "overlong and surrogate encodings dropped");
    free(c);

    char *lines[64];
    int n = cytube_split_text("hello world", 320, lines, 64);
    ok(n == 1, "short text is one line");
    is_str(lines[0], "hello world", "unchanged");
    free_lines(lines, n);

    n = cytube_split_text("aaa bbb ccc", 7, lines, 64);
    ok(n == 2, "split on the last space that fits (%d)", n);
    is_str(lines[0], "aaa bbb", "first line");
    is_str(lines[1], "ccc", "second line");
    free_lines(lines, n);

    n = cytube_split_text("abcdefghij", 4, lines, 64);
    ok(n == 3, "a long word is cut between characters");
    is_str(lines[2], "ij", "last piece");
    free_lines(lines, n);

    /* Four emoji (2 units each) in 5 units: two per line, never half of one. */
    n = cytube_split_text("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 5, lines, 64);
    ok(n == 2 && utf16_units(lines[0]) == 4 && utf16_units(lines[1]) == 4, "surrogate pairs stay whole");
    free_lines(lines, n);

    n = cytube_split_text("/dance now", 320, lines, 64);
    is_str(lines[0], " /dance now", "a leading slash is defused (no command, no /d drink)");
    free_lines(lines, n);
    n = cytube_split_text("xx /d", 3, lines, 64);
    ok(n == 2, "two lines");
    is_str(lines[1], " /d", "a later line starting with '/' is defused too");
    free_lines(lines, n);

    /* 1,000 characters of words: every line within the limit, all text kept. */
    char big[1400] = "";
    while (utf16_units(big) < 1000)
        strcat(big, "w\xc3\xb6rd12 ");
    big[strlen(big) - 1] = '\0';
    n = cytube_split_text(big, 320, lines, 64);
    int fits = 1;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        fits &= utf16_units(lines[i]) <= 320 && lines[i][0] != ' ';
        total += strlen(lines[i]) + 1;
    }
    ok(n == 4 && fits, "1,000 characters make 4 lines of <= 320 units (%d)", n);
    ok(total - 1 == strlen(big), "and nothing is lost but the spaces at the cuts");
    free_lines(lines, n);

    n = cytube_split_text("a b c d e f", 2, lines, 2);
    ok(n == 2, "stops at max_lines");
    free_lines(lines, n);
    ok(cytube_split_text("   ", 320, lines, 64) == 0, "blank text makes no line");
    return tap_done();
}
