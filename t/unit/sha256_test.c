/*
 * SHA-256 against the FIPS 180-4 examples and, for every length from 0 to
 * 300 bytes (each padding case: one block, two blocks, block edges),
 * against the digests sha256sum gave for the same messages (generated at
 * test time: the test cannot pass by agreeing with itself).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_sha256.h"


static int  failures, tests;


static void
hex(const unsigned char *d, char *out)
{
    int  i;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_SHA256_LEN; i++) {
        sprintf(out + 2 * i, "%02x", d[i]);
    }
}


static void
check(const char *what, const unsigned char *msg, size_t len,
    const char *want)
{
    char           got[65];
    unsigned char  d[NGX_HTTP_CONDUCTOR_SHA256_LEN];

    tests++;
    ngx_http_conductor_sha256(msg, len, d);
    hex(d, got);

    if (strcmp(got, want) != 0) {
        failures++;
        printf("not ok %d - %s (len %zu): got %s want %s\n", tests, what, len,
               got, want);
        return;
    }

    printf("ok %d - %s (len %zu)\n", tests, what, len);
}


static void
ok(int cond, const char *what, size_t i)
{
    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %d - %s %zu\n", cond ? "" : "not ", tests, what, i);
}


int
main(void)
{
    FILE           *f;
    char            cmd[1024], want[128];
    size_t          len, i;
    unsigned char   msg[300], a[32], b[32];

    check("empty", (unsigned char *) "", 0,
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", (unsigned char *) "abc", 3,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("two blocks", (unsigned char *)
          "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    for (len = 0; len < sizeof(msg); len++) {

        for (i = 0; i < len; i++) {
            msg[i] = (unsigned char) ('a' + (i * 7 + len) % 26);
        }

        snprintf(cmd, sizeof(cmd), "printf '%%s' '%.*s' | sha256sum",
                 (int) len, (char *) msg);

        f = popen(cmd, "r");
        if (f == NULL || fscanf(f, "%64s", want) != 1) {
            printf("not ok %d - sha256sum did not run\n", ++tests);
            printf("1..%d\n", tests);
            return 1;
        }

        pclose(f);

        check("sha256sum agrees", msg, len, want);
    }

    /* equal and unequal digests, a difference in any byte */
    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));

    ok(ngx_http_conductor_digest_equal(a, b), "equal digests", 0);

    for (i = 0; i < sizeof(a); i++) {
        b[i] ^= 1;
        ok(!ngx_http_conductor_digest_equal(a, b), "a difference in byte", i);
        b[i] ^= 1;
    }

    printf("1..%d\n", tests);

    return failures != 0;
}
