/* sha256: SHA-256 (FIPS 180-4) of a buffer, as lower-case hex, for the
 * migration checksums. A pure function: no library, no state. */
#ifndef DAZ_SHA256_H
#define DAZ_SHA256_H

#include <stddef.h>

/* Writes the 64 hex digits and a NUL to out. */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif
