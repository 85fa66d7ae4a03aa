/*
 * RESP command formatting: "*argc\r\n" then "$len\r\nbytes\r\n" for each
 * argument.  The numbers are written by hand: this runs for every command
 * of the fleet sync and of every sync=0 reservation.
 */

#include <string.h>

#include "ngx_http_conductor_resp.h"


static size_t
ngx_http_conductor_resp_digits(size_t n)
{
    size_t  d;

    d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }

    return d;
}


static unsigned char *
ngx_http_conductor_resp_uint(unsigned char *p, uint64_t n)
{
    unsigned char   tmp[NGX_HTTP_CONDUCTOR_RESP_INT_LEN];
    unsigned char  *t;
    size_t          len;

    t = tmp + sizeof(tmp);

    do {
        *--t = (unsigned char) ('0' + n % 10);
        n /= 10;
    } while (n);

    len = tmp + sizeof(tmp) - t;
    memcpy(p, t, len);

    return p + len;
}


size_t
ngx_http_conductor_resp_len(size_t argc, const size_t *argvlen)
{
    size_t  i, len;

    len = 1 + ngx_http_conductor_resp_digits(argc) + 2;

    for (i = 0; i < argc; i++) {
        len += 1 + ngx_http_conductor_resp_digits(argvlen[i]) + 2
               + argvlen[i] + 2;
    }

    return len;
}


unsigned char *
ngx_http_conductor_resp_write(unsigned char *p, size_t argc,
    const char **argv, const size_t *argvlen)
{
    size_t  i;

    *p++ = '*';
    p = ngx_http_conductor_resp_uint(p, argc);
    *p++ = '\r'; *p++ = '\n';

    for (i = 0; i < argc; i++) {
        *p++ = '$';
        p = ngx_http_conductor_resp_uint(p, argvlen[i]);
        *p++ = '\r'; *p++ = '\n';

        if (argvlen[i]) {
            memcpy(p, argv[i], argvlen[i]);
            p += argvlen[i];
        }

        *p++ = '\r'; *p++ = '\n';
    }

    return p;
}


unsigned char *
ngx_http_conductor_resp_int(unsigned char *p, int64_t n)
{
    if (n < 0) {
        *p++ = '-';
        /* INT64_MIN has no positive twin: negate in unsigned */
        return ngx_http_conductor_resp_uint(p, (uint64_t) 0 - (uint64_t) n);
    }

    return ngx_http_conductor_resp_uint(p, (uint64_t) n);
}
