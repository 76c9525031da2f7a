/* cytube_text: chat text hygiene for the rooms — cleans plugin text and
 * splits it into lines CyTube takes whole. Pure. Uses nothing. */
#ifndef DAZ_CYTUBE_TEXT_H
#define DAZ_CYTUBE_TEXT_H

/* Cleans plugin text for chat: drops invalid UTF-8, turns runs of control
 * characters into one space, trims. Returns a malloc'd string. */
char *cytube_clean_text(const char *text);
/* Splits clean text into lines of at most `max_units` UTF-16 units, on
 * word boundaries when possible, never inside a character. Lines that
 * would start with '/' get a leading space so they never become a command
 * (or a `/d` drink). Returns the number of lines written to out[] (each
 * malloc'd), at most max_lines. */
int cytube_split_text(const char *clean, int max_units, char **out, int max_lines);

#endif
