/*
 * The RESP command writer against hiredis's own formatter, byte for byte:
 * empty, binary and long arguments, every digit-count edge of the lengths
 * and of argc, then random commands; and the integers against printf.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

#include <hiredis/hiredis.h>

#include "ngx_http_conductor_resp.h"


#define MAX_ARGS  1200


static int  failures, tests;


static void
check(const char *what, size_t argc, const char **argv,
    const size_t *argvlen)
{
    char           *want;
    int             wlen;
    size_t          len;
    unsigned char  *buf, *end;

    tests++;

    wlen = redisFormatCommandArgv(&want, (int) argc, argv, argvlen);
    len = ngx_http_conductor_resp_len(argc, argvlen);

    /* a guard byte after the room the writer was promised */
    buf = malloc(len + 1);
    buf[len] = 0xa5;
    end = ngx_http_conductor_resp_write(buf, argc, argv, argvlen);

    if (wlen < 0 || (size_t) wlen != len || (size_t) (end - buf) != len
        || memcmp(buf, want, len) != 0 || buf[len] != 0xa5)
    {
        failures++;
        printf("not ok %d - %s (argc %zu: hiredis %d bytes, len %zu,"
               " wrote %zu)\n", tests, what, argc, wlen, len,
               (size_t) (end - buf));

    } else {
        printf("ok %d - %s\n", tests, what);
    }

    redisFreeCommand(want);
    free(buf);
}


static void
check_int(int64_t n)
{
    char           want[32];
    unsigned char  got[NGX_HTTP_CONDUCTOR_RESP_INT_LEN + 2], *end;

    tests++;
    snprintf(want, sizeof(want), "%" PRId64, n);
    end = ngx_http_conductor_resp_int(got, n);

    if ((size_t) (end - got) != strlen(want)
        || memcmp(got, want, strlen(want)) != 0)
    {
        failures++;
        printf("not ok %d - int %s\n", tests, want);

    } else {
        printf("ok %d - int %s\n", tests, want);
    }
}


int
main(void)
{
    static const char  *argv[MAX_ARGS];
    static size_t       argvlen[MAX_ARGS];
    static char         big[100001];
    static const size_t edges[] = { 0, 1, 9, 10, 11, 99, 100, 101, 999,
                                    1000, 9999, 10000, 100000 };
    char                name[64];
    size_t              i, j, n;
    unsigned int        seed;
    int64_t             ints[] = { 0, 1, -1, 9, 10, -10, 99, 100,
                                   1796189545123LL, INT64_MAX, INT64_MIN,
                                   INT64_MIN + 1, 4294967295LL,
                                   4294967296LL };

    memset(big, 'x', sizeof(big) - 1);
    for (i = 0; i < sizeof(big) - 1; i += 7) {
        big[i] = (char) (i % 256);              /* NULs and CRLFs too */
    }

    argv[0] = "PING";
    argvlen[0] = 4;
    check("one argument", 1, argv, argvlen);

    argv[0] = "SET"; argvlen[0] = 3;
    argv[1] = ""; argvlen[1] = 0;
    argv[2] = "\r\n\0x"; argvlen[2] = 4;
    check("empty and binary arguments", 3, argv, argvlen);

    check("no argument", 0, argv, argvlen);

    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        argv[0] = big;
        argvlen[0] = edges[i];
        snprintf(name, sizeof(name), "an argument of %zu bytes", edges[i]);
        check(name, 1, argv, argvlen);
    }

    for (n = 9; n <= 1001; n = (n == 9) ? 10 : (n == 10) ? 99
                               : (n == 99) ? 100 : (n == 100) ? 999
                               : (n == 999) ? 1000 : 1002)
    {
        for (j = 0; j < n; j++) {
            argv[j] = big + j;
            argvlen[j] = j % 13;
        }

        snprintf(name, sizeof(name), "%zu arguments", n);
        check(name, n, argv, argvlen);
    }

    seed = 12345;

    for (i = 0; i < 300; i++) {
        n = 1 + rand_r(&seed) % 120;

        for (j = 0; j < n; j++) {
            argvlen[j] = rand_r(&seed) % ((j % 5 == 0) ? 3000 : 25);
            argv[j] = big + rand_r(&seed) % (sizeof(big) - 1 - argvlen[j]);
        }

        snprintf(name, sizeof(name), "random command %zu", i);
        check(name, n, argv, argvlen);
    }

    for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        check_int(ints[i]);
    }

    for (i = 0; i < 200; i++) {
        check_int((int64_t) (((uint64_t) rand_r(&seed) << 33)
                             ^ (uint64_t) rand_r(&seed)
                             ^ ((i & 1) ? (uint64_t) 1 << 63 : 0)));
    }

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}
