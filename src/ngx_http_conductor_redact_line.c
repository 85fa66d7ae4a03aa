/*
 * Secrets out of a log line; see the header.  One pass, no allocation: a
 * line without a colon after one of the names costs a memchr().
 */


#include <string.h>

#include "ngx_http_conductor_redact_line.h"


/* the shortest name that holds one: "api-key" */
#define NGX_HTTP_CONDUCTOR_REDACT_MIN_NAME  7


static int ngx_http_conductor_redact_named(const unsigned char *start,
    const unsigned char *colon);
static int ngx_http_conductor_redact_holds(const unsigned char *p, size_t n,
    const char *word, size_t len);
static const unsigned char *ngx_http_conductor_redact_value_end(
    const unsigned char *p, const unsigned char *last);


/* bytes that end a header name, looking back from its colon */
static const unsigned char  ngx_http_conductor_redact_delim[256] = {
    ['\0'] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [' '] = 1, ['"'] = 1,
    [','] = 1, [':'] = 1
};


int
ngx_http_conductor_redact_find(const unsigned char *p, size_t len,
    size_t *start, size_t *end)
{
    const unsigned char  *c, *v, *e, *last;

    last = p + len;

    for (c = p; c < last; c++) {

        c = memchr(c, ':', last - c);
        if (c == NULL) {
            return 0;
        }

        if (!ngx_http_conductor_redact_named(p, c)) {
            continue;
        }

        for (v = c + 1; v < last && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        e = ngx_http_conductor_redact_value_end(v, last);

        if (e == v) {
            continue;
        }

        *start = v - p;
        *end = e - p;

        return 1;
    }

    return 0;
}


size_t
ngx_http_conductor_redact_line(const unsigned char *in, size_t len,
    unsigned char *out, size_t size)
{
    size_t  n, pos, s, e, k;

    n = 0;
    pos = 0;

    for ( ;; ) {

        if (!ngx_http_conductor_redact_find(in + pos, len - pos, &s, &e)) {
            s = len - pos;
            e = s;
        }

        /* the bytes before the value, then the value's stand-in */

        k = (s < size - n) ? s : size - n;
        memcpy(out + n, in + pos, k);
        n += k;

        if (e == s) {
            return n;
        }

        k = (NGX_HTTP_CONDUCTOR_REDACTED_LEN < size - n)
            ? NGX_HTTP_CONDUCTOR_REDACTED_LEN : size - n;
        memcpy(out + n, NGX_HTTP_CONDUCTOR_REDACTED, k);
        n += k;

        /*
         * the value ended at a delimiter of names (CR, LF, '"'), or at the
         * end: a name after it is found from here as from the line's start
         */
        pos += e;
    }
}


/* is the name before this colon one of a secret? */

static int
ngx_http_conductor_redact_named(const unsigned char *start,
    const unsigned char *colon)
{
    const unsigned char  *p, *name_end;

    for (p = colon; p > start && (p[-1] == ' ' || p[-1] == '\t'); p--) {
        /* void */
    }

    name_end = p;

    while (p > start && !ngx_http_conductor_redact_delim[p[-1]]) {
        p--;
    }

    if ((size_t) (name_end - p) < NGX_HTTP_CONDUCTOR_REDACT_MIN_NAME) {
        return 0;
    }

    return ngx_http_conductor_redact_holds(p, name_end - p, "api-key", 7)
           || ngx_http_conductor_redact_holds(p, name_end - p,
                                              "authorization", 13);
}


/* p[0..n) contains word (lowercase), in any case and with '_' for '-' */

static int
ngx_http_conductor_redact_holds(const unsigned char *p, size_t n,
    const char *word, size_t len)
{
    size_t         i, j;
    unsigned char  c;

    for (i = 0; i + len <= n; i++) {

        for (j = 0; j < len; j++) {
            c = p[i + j];

            if (c >= 'A' && c <= 'Z') {
                c |= 0x20;

            } else if (c == '_') {
                c = '-';
            }

            if (c != (unsigned char) word[j]) {
                break;
            }
        }

        if (j == len) {
            return 1;
        }
    }

    return 0;
}


static const unsigned char *
ngx_http_conductor_redact_value_end(const unsigned char *p,
    const unsigned char *last)
{
    for ( /* void */ ; p < last; p++) {

        if (*p == '\r' || *p == '\n') {
            return p;
        }

        /* nginx's closing quote: "...", client: and "..." while reading */

        if (*p == '"'
            && (p + 1 == last || p[1] == '\r' || p[1] == '\n' || p[1] == ','
                || p[1] == ' '))
        {
            return p;
        }
    }

    return p;
}
