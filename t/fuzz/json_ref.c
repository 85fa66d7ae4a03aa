
/*
 * The span scanner as it was before the SSE2 one (commit 3fc171e), kept
 * as the reference of json_fuzz.c's differential check: scan_object() and
 * key_is() must give the same results for every input.  Included by the
 * fuzzer, not built on its own; its names say ref instead of json.
 */


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_http_conductor_json.h"


int ngx_http_conductor_ref_scan_object(const unsigned char *p, size_t len,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, size_t max);
int ngx_http_conductor_ref_key_is(const ngx_http_conductor_json_member_t *m,
    const char *name);


#define NGX_HTTP_CONDUCTOR_REF_ONES   0x0101010101010101ULL
#define NGX_HTTP_CONDUCTOR_REF_HIGHS  0x8080808080808080ULL

/* exact test: some byte of w is zero */
#define ngx_http_conductor_ref_has_zero(w)                                   \
    (((w) - NGX_HTTP_CONDUCTOR_REF_ONES) & ~(w)                              \
     & NGX_HTTP_CONDUCTOR_REF_HIGHS)

/* exact test: some byte of w is below n (n <= 128) */
#define ngx_http_conductor_ref_has_less(w, n)                                \
    (((w) - NGX_HTTP_CONDUCTOR_REF_ONES * (n)) & ~(w)                        \
     & NGX_HTTP_CONDUCTOR_REF_HIGHS)

/* some byte of w ends a plain run inside a string: '"', '\\' or < 0x20 */
#define ngx_http_conductor_ref_has_special(w)                                \
    (ngx_http_conductor_ref_has_less(w, 0x20)                                \
     | ngx_http_conductor_ref_has_zero((w)                                   \
                                  ^ (NGX_HTTP_CONDUCTOR_REF_ONES * '"'))     \
     | ngx_http_conductor_ref_has_zero((w)                                   \
                                  ^ (NGX_HTTP_CONDUCTOR_REF_ONES * '\\')))

#define ngx_http_conductor_ref_skip_ws(p, end)                               \
    while ((p) < (end)                                                        \
           && (*(p) == ' ' || *(p) == '\n' || *(p) == '\r' || *(p) == '\t'))  \
    {                                                                         \
        (p)++;                                                                \
    }

#define ngx_http_conductor_ref_is_digit(c)  ((unsigned) ((c) - '0') < 10)


/*
 * Bytes needed to write a byte inside a JSON string: 1 for a plain byte,
 * 2 for '"', '\\' and the short escapes, 6 for \u00XX.  Anything but 1 also
 * marks the bytes that end a plain run when scanning a string.
 */
static const unsigned char  ngx_http_conductor_ref_esc[256] = {
    6, 6, 6, 6, 6, 6, 6, 6, 2, 2, 2, 6, 2, 2, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};


static const unsigned char *ngx_http_conductor_ref_string_end(
    const unsigned char *p, const unsigned char *end);
static int ngx_http_conductor_ref_hex4(const unsigned char *p,
    uint32_t *cp);
static size_t ngx_http_conductor_ref_unescape(const unsigned char *p,
    const unsigned char *end, unsigned char *out, size_t *n);
static int ngx_http_conductor_ref_type(unsigned char c);


int
ngx_http_conductor_ref_scan_object(const unsigned char *p, size_t len,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, size_t max)
{
    int                                top_object;
    size_t                             n;
    uint64_t                           objects, bit;
    unsigned                           depth;
    unsigned char                      c;
    const unsigned char               *end, *key, *open, *close;
    ngx_http_conductor_json_member_t  *m;

    obj->open = NULL;
    obj->close = NULL;
    obj->n = 0;

    /* an empty body may come as (NULL, 0) */

    if (len == 0) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    end = p + len;
    n = 0;
    depth = 0;
    objects = 0;
    open = NULL;
    close = NULL;
    m = NULL;

    ngx_http_conductor_ref_skip_ws(p, end);

    if (p == end) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    top_object = (*p == '{');

value:

    /* p is at the first byte of a value, whitespace already skipped */

    if (p == end) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    switch (*p) {

    case '{':
        if (depth == NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH) {
            return NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP;
        }

        if (depth == 0) {
            open = p;
        }

        objects |= (uint64_t) 1 << depth;
        depth++;
        p++;

        ngx_http_conductor_ref_skip_ws(p, end);

        if (p < end && *p == '}') {
            depth--;

            if (depth == 0) {
                close = p;
            }

            p++;
            goto next;
        }

        goto member;

    case '[':
        if (depth == NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH) {
            return NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP;
        }

        objects &= ~((uint64_t) 1 << depth);
        depth++;
        p++;

        ngx_http_conductor_ref_skip_ws(p, end);

        if (p < end && *p == ']') {
            depth--;
            p++;
            goto next;
        }

        goto value;

    case '"':
        p = ngx_http_conductor_ref_string_end(p + 1, end);
        if (p == NULL) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        goto next;

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':

        /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */

        if (*p == '-') {
            p++;
            if (p == end) {
                return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
            }
        }

        if (*p == '0') {
            p++;

        } else if (*p >= '1' && *p <= '9') {
            do {
                p++;
            } while (p < end && ngx_http_conductor_ref_is_digit(*p));

        } else {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        if (p < end && *p == '.') {
            p++;
            if (p == end || !ngx_http_conductor_ref_is_digit(*p)) {
                return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
            }

            do {
                p++;
            } while (p < end && ngx_http_conductor_ref_is_digit(*p));
        }

        if (p < end && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < end && (*p == '+' || *p == '-')) {
                p++;
            }

            if (p == end || !ngx_http_conductor_ref_is_digit(*p)) {
                return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
            }

            do {
                p++;
            } while (p < end && ngx_http_conductor_ref_is_digit(*p));
        }

        /* "01" or "1x" fail below: only a delimiter may follow */

        goto next;

    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        p += 4;
        goto next;

    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        p += 5;
        goto next;

    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        p += 4;
        goto next;

    default:
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

member:

    /* p is after '{' or ',' inside an object, whitespace already skipped */

    if (p == end || *p != '"') {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    key = p;

    p = ngx_http_conductor_ref_string_end(p + 1, end);
    if (p == NULL) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    if (depth == 1) {

        /* past max, keep counting and validating: TOO_MANY comes last */

        if (n < max) {
            m = &members[n];
            m->start = key;
            m->key = key + 1;
            m->key_len = (size_t) (p - key) - 2;
        }

        n++;
    }

    ngx_http_conductor_ref_skip_ws(p, end);

    if (p == end || *p != ':') {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    p++;

    ngx_http_conductor_ref_skip_ws(p, end);

    if (depth == 1 && m != NULL) {
        m->value = p;
        m->type = (p < end) ? ngx_http_conductor_ref_type(*p) : 0;
    }

    goto value;

next:

    /* a value ended just before p */

    if (depth == 1 && m != NULL) {
        m->value_len = (size_t) (p - m->value);
        m = NULL;
    }

    if (depth == 0) {
        ngx_http_conductor_ref_skip_ws(p, end);

        if (p != end) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        if (!top_object) {
            return NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT;
        }

        obj->open = open;
        obj->close = close;

        if (n > max) {
            obj->n = max;
            return NGX_HTTP_CONDUCTOR_JSON_TOO_MANY;
        }

        obj->n = n;
        return NGX_HTTP_CONDUCTOR_JSON_OK;
    }

    ngx_http_conductor_ref_skip_ws(p, end);

    if (p == end) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    c = *p++;
    bit = objects & ((uint64_t) 1 << (depth - 1));

    if (c == ',') {
        ngx_http_conductor_ref_skip_ws(p, end);

        if (bit) {
            goto member;
        }

        goto value;
    }

    if (c == (bit ? '}' : ']')) {
        depth--;

        if (depth == 0) {
            close = p - 1;
        }

        goto next;
    }

    return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
}


/*
 * p is just after an opening quote: returns the byte after the closing
 * quote, or NULL if the string is invalid or unterminated.  Escapes are
 * checked for syntax only (any \uXXXX, lone surrogates included); bytes
 * >= 0x80 are not checked for UTF-8 validity.
 */

static const unsigned char *
ngx_http_conductor_ref_string_end(const unsigned char *p,
    const unsigned char *end)
{
    uint32_t  cp;
    uint64_t  w;

    for ( ;; ) {

        /* long plain runs (prompts) are skipped 8 bytes at a time */

        while (end - p >= 8) {
            memcpy(&w, p, 8);

            if (ngx_http_conductor_ref_has_special(w)) {
                break;
            }

            p += 8;
        }

        while (p < end && ngx_http_conductor_ref_esc[*p] == 1) {
            p++;
        }

        if (p == end) {
            return NULL;
        }

        if (*p == '"') {
            return p + 1;
        }

        if (*p != '\\' || end - p < 2) {
            return NULL;
        }

        switch (p[1]) {

        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;

        case 'u':
            if (end - p < 6 || ngx_http_conductor_ref_hex4(p + 2, &cp) != 0) {
                return NULL;
            }

            p += 6;
            break;

        default:
            return NULL;
        }
    }
}


static int
ngx_http_conductor_ref_hex4(const unsigned char *p, uint32_t *cp)
{
    uint32_t       v;
    unsigned       i;
    unsigned char  c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = (v << 4) | (uint32_t) (c - '0');

        } else {
            c |= 0x20;

            if (c < 'a' || c > 'f') {
                return -1;
            }

            v = (v << 4) | (uint32_t) (c - 'a' + 10);
        }
    }

    *cp = v;

    return 0;
}


/*
 * p is at a backslash before end: writes the decoded bytes (at most 4) to
 * out and their number to *n, returns the length of the escape, or 0 if it
 * is invalid.  Lone surrogates are invalid here: they have no UTF-8 form.
 */

static size_t
ngx_http_conductor_ref_unescape(const unsigned char *p,
    const unsigned char *end, unsigned char *out, size_t *n)
{
    size_t    l;
    uint32_t  cp, lo;

    if (end - p < 2) {
        return 0;
    }

    *n = 1;

    switch (p[1]) {

    case '"':
        out[0] = '"';
        return 2;

    case '\\':
        out[0] = '\\';
        return 2;

    case '/':
        out[0] = '/';
        return 2;

    case 'b':
        out[0] = '\b';
        return 2;

    case 'f':
        out[0] = '\f';
        return 2;

    case 'n':
        out[0] = '\n';
        return 2;

    case 'r':
        out[0] = '\r';
        return 2;

    case 't':
        out[0] = '\t';
        return 2;

    case 'u':
        break;

    default:
        return 0;
    }

    if (end - p < 6 || ngx_http_conductor_ref_hex4(p + 2, &cp) != 0) {
        return 0;
    }

    l = 6;

    if (cp >= 0xdc00 && cp <= 0xdfff) {
        return 0;
    }

    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (end - p < 12
            || p[6] != '\\' || p[7] != 'u'
            || ngx_http_conductor_ref_hex4(p + 8, &lo) != 0
            || lo < 0xdc00 || lo > 0xdfff)
        {
            return 0;
        }

        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        l = 12;
    }

    if (cp < 0x80) {
        out[0] = (unsigned char) cp;

    } else if (cp < 0x800) {
        out[0] = (unsigned char) (0xc0 | (cp >> 6));
        out[1] = (unsigned char) (0x80 | (cp & 0x3f));
        *n = 2;

    } else if (cp < 0x10000) {
        out[0] = (unsigned char) (0xe0 | (cp >> 12));
        out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char) (0x80 | (cp & 0x3f));
        *n = 3;

    } else {
        out[0] = (unsigned char) (0xf0 | (cp >> 18));
        out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (unsigned char) (0x80 | (cp & 0x3f));
        *n = 4;
    }

    return l;
}


static int
ngx_http_conductor_ref_type(unsigned char c)
{
    switch (c) {

    case '"':
        return NGX_HTTP_CONDUCTOR_JSON_STRING;

    case '{':
        return NGX_HTTP_CONDUCTOR_JSON_OBJECT;

    case '[':
        return NGX_HTTP_CONDUCTOR_JSON_ARRAY;

    case 't':
        return NGX_HTTP_CONDUCTOR_JSON_TRUE;

    case 'f':
        return NGX_HTTP_CONDUCTOR_JSON_FALSE;

    case 'n':
        return NGX_HTTP_CONDUCTOR_JSON_NULL;

    default:
        return NGX_HTTP_CONDUCTOR_JSON_NUMBER;
    }
}


int
ngx_http_conductor_ref_key_is(const ngx_http_conductor_json_member_t *m,
    const char *name)
{
    size_t                i, l, n;
    unsigned char         buf[4];
    const unsigned char  *k, *end, *s;

    k = m->key;
    end = k + m->key_len;
    s = (const unsigned char *) name;

    while (k < end) {

        if (*k != '\\') {

            /* the NUL check stops at the end of name */

            if (*s == '\0' || *s != *k) {
                return 0;
            }

            k++;
            s++;
            continue;
        }

        l = ngx_http_conductor_ref_unescape(k, end, buf, &n);
        if (l == 0) {
            return 0;
        }

        for (i = 0; i < n; i++) {
            if (*s == '\0' || *s != buf[i]) {
                return 0;
            }

            s++;
        }

        k += l;
    }

    return *s == '\0';
}
