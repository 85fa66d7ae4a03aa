/*
 * libFuzzer target: log line redaction (ngx_http_conductor_redact_line.h).
 *
 * Input: a selector byte (where a known secret is planted, which name and
 * in which case), then the text of a line.  Every '~' of the text becomes
 * '.', and "NAME: ~~~~~~~~" is planted at the selected place: no '~' may
 * come out, however the text around it looks.
 *
 * Checked, against a plain reference written apart (every colon of the
 * line looked at from the line's start, byte by byte): the same result;
 * no '~'; at most twice the input's length; redacting the result again
 * changes nothing; a result cut at any size is a prefix of the whole;
 * find() says nothing to hide only when the result is the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_redact_line.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  *ngx_http_conductor_fuzz_names[] = {
    "Authorization", "proxy-authorization", "x-api-key", "api-key",
    "x-goog-api-key", "HTTP_AUTHORIZATION", "x_api_key", "Authorization(x)"
};


static unsigned char
ngx_http_conductor_fuzz_fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (unsigned char) (c + ('a' - 'A'));
    }

    return (c == '_') ? '-' : c;
}


static int
ngx_http_conductor_fuzz_delim(unsigned char c)
{
    return c == '\0' || c == '\t' || c == '\n' || c == '\r' || c == ' '
           || c == '"' || c == ',' || c == ':';
}


/* the name before in[colon] (and its blanks) holds a secret's name */

static int
ngx_http_conductor_fuzz_named(const unsigned char *in, size_t from,
    size_t colon)
{
    size_t  e, b, i, j, k, len;

    static const char  *words[] = { "authorization", "api-key" };

    e = colon;

    while (e > from && (in[e - 1] == ' ' || in[e - 1] == '\t')) {
        e--;
    }

    b = e;

    while (b > from && !ngx_http_conductor_fuzz_delim(in[b - 1])) {
        b--;
    }

    for (k = 0; k < 2; k++) {
        len = strlen(words[k]);

        for (i = b; i + len <= e; i++) {
            for (j = 0; j < len; j++) {
                if (ngx_http_conductor_fuzz_fold(in[i + j])
                    != (unsigned char) words[k][j])
                {
                    break;
                }
            }

            if (j == len) {
                return 1;
            }
        }
    }

    return 0;
}


/* the reference: a byte at a time, names looked for from the line's start */

static size_t
ngx_http_conductor_fuzz_ref(const unsigned char *in, size_t len,
    unsigned char *out)
{
    size_t  i, n, v, e;

    n = 0;
    i = 0;

    while (i < len) {

        if (in[i] != ':' || !ngx_http_conductor_fuzz_named(in, 0, i)) {
            out[n++] = in[i++];
            continue;
        }

        out[n++] = in[i++];

        for (v = i; v < len && (in[v] == ' ' || in[v] == '\t'); v++) {
            /* void */
        }

        for (e = v; e < len; e++) {
            if (in[e] == '\r' || in[e] == '\n') {
                break;
            }

            if (in[e] == '"'
                && (e + 1 == len || in[e + 1] == '\r' || in[e + 1] == '\n'
                    || in[e + 1] == ',' || in[e + 1] == ' '))
            {
                break;
            }
        }

        if (e == v) {
            continue;
        }

        memcpy(out + n, in + i, v - i);
        n += v - i;
        memcpy(out + n, NGX_HTTP_CONDUCTOR_REDACTED,
               NGX_HTTP_CONDUCTOR_REDACTED_LEN);
        n += NGX_HTTP_CONDUCTOR_REDACTED_LEN;
        i = e;
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             found;
    size_t          len, text, at, name_len, i, n, m, k, s, e;
    unsigned        sel;
    const char     *name;
    unsigned char  *in, *out, *ref, *again, *cut;

    static const char  secret[] = ": ~~~~~~~~";

    if (size < 1) {
        return 0;
    }

    sel = data[0];
    text = size - 1;
    at = text ? (size_t) (sel >> 4) * text / 15 : 0;
    name = ngx_http_conductor_fuzz_names[sel & 7];
    name_len = strlen(name);

    len = text + ((sel & 8) ? name_len + sizeof(secret) - 1 : 0);

    in = malloc(len + 1);
    out = malloc(2 * len + 16);
    ref = malloc(2 * len + 16);
    again = malloc(2 * len + 16);
    cut = malloc(2 * len + 16);

    if (in == NULL || out == NULL || ref == NULL || again == NULL
        || cut == NULL)
    {
        abort();
    }

    /* the text with its '~' made '.', the secret planted at "at" */

    for (i = 0; i < text; i++) {
        in[i] = (data[1 + i] == '~') ? '.' : data[1 + i];
    }

    if (sel & 8) {
        memmove(in + at + name_len + sizeof(secret) - 1, in + at, text - at);
        memcpy(in + at, name, name_len);
        memcpy(in + at + name_len, secret, sizeof(secret) - 1);

        /* a name in upper case: the same */
        if (sel & 0x40) {
            for (i = at; i < at + name_len; i++) {
                if (in[i] >= 'a' && in[i] <= 'z') {
                    in[i] -= 'a' - 'A';
                }
            }
        }
    }

    n = ngx_http_conductor_redact_line(in, len, out, 2 * len + 16);
    m = ngx_http_conductor_fuzz_ref(in, len, ref);

    if (n != m || memcmp(out, ref, n) != 0) {
        abort();
    }

    if (memchr(out, '~', n) != NULL || n > 2 * len) {
        abort();
    }

    /* a second pass changes nothing */
    k = ngx_http_conductor_redact_line(out, n, again, 2 * len + 16);

    if (k != n || memcmp(again, out, n) != 0) {
        abort();
    }

    /* cut anywhere: a prefix */
    for (i = 0; i <= n; i += 1 + n / 16) {
        k = ngx_http_conductor_redact_line(in, len, cut, i);

        if (k != i || memcmp(cut, out, i) != 0) {
            abort();
        }
    }

    found = ngx_http_conductor_redact_find(in, len, &s, &e);

    if (!found && (n != len || memcmp(out, in, len) != 0)) {
        abort();
    }

    if (found && (s >= e || e > len)) {
        abort();
    }

    free(in);
    free(out);
    free(ref);
    free(again);
    free(cut);

    return 0;
}
