/*
 * Unit tests of the log line redaction (ngx_http_conductor_redact_line.h)
 * on the lines nginx writes: its debug dump of request headers, invalid,
 * duplicate and too long header lines, proxy's dump of the request it
 * builds, FastCGI params; names in any case, several values in a line, a
 * line nginx cut, a result cut short, and lines left alone.  TAP output.
 */

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ngx_http_conductor_redact_line.h"


#define T  "2026/01/01 00:00:00 [debug] 1234#0: *5 "


#include "tap.h"


/* in redacted (into a buffer of size, or a large one) gives want */

static void
ngx_http_conductor_test_sized(const char *in, size_t len, size_t size,
    const char *want, size_t want_len, const char *desc)
{
    size_t         n, s, e;
    int            found, same;
    unsigned char  out[8192];

    n = ngx_http_conductor_redact_line((const unsigned char *) in, len, out,
                                       size);

    ngx_http_conductor_test_ok(n == want_len && memcmp(out, want, n) == 0,
                               desc);

    if (n != want_len || memcmp(out, want, n) != 0) {
        printf("# got      \"%.*s\" (%zu)\n# expected \"%.*s\" (%zu)\n",
               (int) n, out, n, (int) want_len, want, want_len);
    }

    /* find() says whether anything was there to hide */
    found = ngx_http_conductor_redact_find((const unsigned char *) in, len,
                                           &s, &e);

    if (size < len) {
        return;
    }

    same = (n == len && memcmp(out, in, len) == 0);

    if (found ? same && (e - s != NGX_HTTP_CONDUCTOR_REDACTED_LEN
                         || memcmp(in + s, NGX_HTTP_CONDUCTOR_REDACTED,
                                   e - s) != 0)
              : !same)
    {
        ngx_http_conductor_test_ok(0, "find() agrees");
        printf("# find() gave %d for \"%.*s\"\n", found, (int) len, in);
    }
}


static void
ngx_http_conductor_test_is(const char *in, const char *want,
    const char *desc)
{
    ngx_http_conductor_test_sized(in, strlen(in), 8192, want, strlen(want),
                                  desc);
}


static void
ngx_http_conductor_test_headers(void)
{
    ngx_http_conductor_test_is(
        T "http header: \"Authorization: Bearer client-secret-XYZ\"\n",
        T "http header: \"Authorization: [redacted]\"\n",
        "debug dump of Authorization");

    ngx_http_conductor_test_is(
        T "http header: \"x-api-key: other-secret\"\n",
        T "http header: \"x-api-key: [redacted]\"\n",
        "x-api-key");

    ngx_http_conductor_test_is(
        T "http header: \"AUTHORIZATION: Basic dXNlcjpwYXNz\"\n",
        T "http header: \"AUTHORIZATION: [redacted]\"\n",
        "upper case");

    ngx_http_conductor_test_is(
        T "http header: \"X-Api-KEY: s\"\n",
        T "http header: \"X-Api-KEY: [redacted]\"\n",
        "mixed case, a value shorter than the stand-in");

    ngx_http_conductor_test_is(
        T "http header: \"Proxy-Authorization: Basic abc\"\n",
        T "http header: \"Proxy-Authorization: [redacted]\"\n",
        "Proxy-Authorization");

    ngx_http_conductor_test_is(
        T "http header: \"api-key: azure-secret\"\n",
        T "http header: \"api-key: [redacted]\"\n",
        "api-key (Azure)");

    ngx_http_conductor_test_is(
        T "http header: \"x-goog-api-key: AIzaSecret\"\n",
        T "http header: \"x-goog-api-key: [redacted]\"\n",
        "x-goog-api-key");

    ngx_http_conductor_test_is(
        T "http2 http header: \"authorization: Bearer h2-secret\"\n",
        T "http2 http header: \"authorization: [redacted]\"\n",
        "HTTP/2 dump");

    ngx_http_conductor_test_is(
        T "http header: \"Authorization:Bearer tight\"\n",
        T "http header: \"Authorization:[redacted]\"\n",
        "no blank after the colon");

    ngx_http_conductor_test_is(
        T "http header: \"Authorization \t:  \tBearer loose\"\n",
        T "http header: \"Authorization \t:  \t[redacted]\"\n",
        "blanks on both sides of the colon");

    ngx_http_conductor_test_is(
        T "http header: \"Authorization: Basic a:b:c\"\n",
        T "http header: \"Authorization: [redacted]\"\n",
        "colons inside the value");

    ngx_http_conductor_test_is(
        T "http header: \"Authorization: Bearer a\"b\"\n",
        T "http header: \"Authorization: [redacted]\"\n",
        "a quote inside the value");

    ngx_http_conductor_test_is(
        T "http header: \"Authorization: [redacted]\"\n",
        T "http header: \"Authorization: [redacted]\"\n",
        "a redacted line again: the same");
}


static void
ngx_http_conductor_test_messages(void)
{
    ngx_http_conductor_test_is(
        "2026/01/01 00:00:00 [info] 1#0: *7 client sent invalid header line:"
        " \"x_api_key: under-secret\" while reading client request headers,"
        " client: 127.0.0.1, server: localhost, request: \"GET / HTTP/1.1\"",
        "2026/01/01 00:00:00 [info] 1#0: *7 client sent invalid header line:"
        " \"x_api_key: [redacted]\" while reading client request headers,"
        " client: 127.0.0.1, server: localhost, request: \"GET / HTTP/1.1\"",
        "invalid header line (underscores), context kept");

    ngx_http_conductor_test_is(
        "client sent invalid header line: \"Authorization(x): Bearer odd\","
        " client: 127.0.0.1",
        "client sent invalid header line: \"Authorization(x): [redacted]\","
        " client: 127.0.0.1",
        "invalid header name holding Authorization");

    ngx_http_conductor_test_is(
        "client sent invalid header line: \"Authorization: Bearer z\\x00...\""
        "\n",
        "client sent invalid header line: \"Authorization: [redacted]\"\n",
        "a value cut at a NUL");

    ngx_http_conductor_test_is(
        "client sent too long header line: \"Authorization: Bearer aaaa...\""
        " while reading client request headers, client: 127.0.0.1\n",
        "client sent too long header line: \"Authorization: [redacted]\""
        " while reading client request headers, client: 127.0.0.1\n",
        "too long header line");

    ngx_http_conductor_test_is(
        "client sent duplicate header line: \"Authorization: Bearer one\", "
        "previous value: \"Authorization: Bearer two\", client: 127.0.0.1\n",
        "client sent duplicate header line: \"Authorization: [redacted]\", "
        "previous value: \"Authorization: [redacted]\", client: 127.0.0.1\n",
        "two values in one line");

    ngx_http_conductor_test_is(
        T "http proxy header:\n\"POST /v1/chat HTTP/1.1\r\nHost: up\r\n"
        "Authorization: Bearer up-secret\r\nx-api-key: k2\r\n"
        "Content-Length: 5\r\n\r\n\"\n",
        T "http proxy header:\n\"POST /v1/chat HTTP/1.1\r\nHost: up\r\n"
        "Authorization: [redacted]\r\nx-api-key: [redacted]\r\n"
        "Content-Length: 5\r\n\r\n\"\n",
        "proxy's request dump, CRLF lines");

    ngx_http_conductor_test_is(
        T "fastcgi param: \"HTTP_AUTHORIZATION: Bearer fcgi\"\n"
        T "fastcgi param: \"HTTP_X_API_KEY: fcgi2\"\n",
        T "fastcgi param: \"HTTP_AUTHORIZATION: [redacted]\"\n"
        T "fastcgi param: \"HTTP_X_API_KEY: [redacted]\"\n",
        "FastCGI params, two lines in one buffer");

    ngx_http_conductor_test_is(
        T "http header: \"X-Authorization: Token t\"\n",
        T "http header: \"X-Authorization: [redacted]\"\n",
        "a name that contains one");
}


static void
ngx_http_conductor_test_alone(void)
{
    static const char  *same[] = {
        T "http header: \"Host: localhost\"\n",
        T "http header: \"Authorization:\"\n",
        T "http header: \"Authorization: \"\n",
        T "http header: \"Authorization:",
        "Authorization",
        "",
        ":",
        "::::",
        "authorization failed: 401 from provider",
        T "conductor: key \"api-key\" of provider \"p\": disabled\n",
        T "http script var: \"Bearer ab\"\n",
        T "http header: \"Authorization\"\n",
        "x-api-keys",
        "api-ke: x",
        "authorizatio: x"
    };

    char    desc[256];
    size_t  i, k;

    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {

        /* the line as the test's name, its control bytes as '.' */
        k = snprintf(desc, sizeof(desc), "left alone: \"%s\"", same[i]);

        while (k--) {
            if ((unsigned char) desc[k] < 0x20) {
                desc[k] = '.';
            }
        }

        ngx_http_conductor_test_is(same[i], same[i], desc);
    }
}


static void
ngx_http_conductor_test_edges(void)
{
    size_t         i, n;
    char           in[4096], want[8192];
    unsigned char  out[8192];

    /* a line nginx cut inside the value: to its end */
    ngx_http_conductor_test_is(
        T "http header: \"Authorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaa\n",
        T "http header: \"Authorization: [redacted]\n",
        "a cut line: the value runs to the line's end");

    ngx_http_conductor_test_is(
        "x-api-key: no-end",
        "x-api-key: [redacted]",
        "the value runs to the buffer's end");

    /* a 2 KB line ending inside a long Authorization value */
    n = snprintf(in, sizeof(in), T "http header: \"Authorization: Bearer ");
    memset(in + n, 'k', 2047 - n);
    in[2047] = '\n';
    n = snprintf(want, sizeof(want),
                 T "http header: \"Authorization: [redacted]\n");
    ngx_http_conductor_test_sized(in, 2048, 2048, want, n,
                                  "2048-byte line cut in its value");

    /* growth: many short values; a small buffer gets a prefix */
    in[0] = '\0';
    want[0] = '\0';

    for (i = 0; i < 100; i++) {
        strcat(in, "api-key:x\n");
        strcat(want, "api-key:[redacted]\n");
    }

    ngx_http_conductor_test_sized(in, strlen(in), 8192, want, strlen(want),
                                  "100 short values: longer than the line");

    for (n = 0; n <= 40; n++) {
        if (ngx_http_conductor_redact_line((unsigned char *) in, strlen(in),
                                           out, n)
            != n
            || memcmp(out, want, n) != 0)
        {
            break;
        }
    }

    ngx_http_conductor_test_ok(n == 41, "a result cut at 0..40 bytes is its "
                               "prefix");

    n = ngx_http_conductor_redact_line((unsigned char *) in, strlen(in),
                                       out, 12);
    ngx_http_conductor_test_ok(n == 12 && memcmp(out, "api-key:[red", 12) == 0
                               && memchr(out, 'x', n) == NULL,
                               "a cut inside the stand-in: no byte of the "
                               "value");

    ngx_http_conductor_test_sized("x-api-key: \"quoted\"\"", 20, 8192,
                                  "x-api-key: [redacted]\"", 22,
                                  "a value in quotes of its own");

    ngx_http_conductor_test_sized("Authorization: a\0b\"\n", 20, 8192,
                                  "Authorization: [redacted]\"\n", 27,
                                  "a NUL inside the value");
}


int
main(void)
{
    ngx_http_conductor_test_headers();
    ngx_http_conductor_test_messages();
    ngx_http_conductor_test_alone();
    ngx_http_conductor_test_edges();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
