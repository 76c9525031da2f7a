/* sha256: the published FIPS 180-4 test vectors, and the lengths where the
 * padding moves to a second block (digests from coreutils' sha256sum). */
#include <stdlib.h>
#include <string.h>

#include "postgres/sha256.h"
#include "tap.h"

int main(void)
{
    char hex[65];
    sha256_hex("", 0, hex);
    is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "empty input");
    sha256_hex("abc", 3, hex);
    is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "abc");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    is_str(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "448 bits: the padding takes a second block");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(four, strlen(four), hex);
    is_str(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", "896 bits");
    size_t n = 1000000;
    char *a = malloc(n);
    if (a) {
        memset(a, 'a', n);
        sha256_hex(a, n, hex);
        is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "a million 'a'");
        free(a);
    }
    /* 55 bytes: the last length whose padding fits the same block. */
    char block[64];
    memset(block, 'x', sizeof block);
    sha256_hex(block, 55, hex);
    is_str(hex, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072", "55 bytes");
    sha256_hex(block, 56, hex);
    is_str(hex, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e", "56 bytes: the length no longer fits");
    sha256_hex(block, 64, hex);
    is_str(hex, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c", "64 bytes: one whole block");
    return tap_done();
}
