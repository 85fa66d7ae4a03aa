
/*
 * JSON span scanner, see ngx_http_conductor_json.h.
 *
 * Plain C99, no nginx include and no allocation, so that it is unit tested
 * and fuzzed on its own.  The scanner is iterative: nesting is kept in a
 * 64-bit mask (one bit per level: object or array), which is why
 * NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH cannot exceed 64.
 *
 * What callers rely on:
 *
 * - scan_object() returns the first error met in document order (SYNTAX or
 *   TOO_DEEP, so an unclosed "[[[[..." of any size is TOO_DEEP), and only
 *   for a valid document NOT_OBJECT or TOO_MANY.  TOO_MANY means valid JSON
 *   with more top-level members than max: obj->open/close are set, obj->n
 *   is max and the first max members are filled, but the list is not the
 *   whole object, so member_removal() must not be used with it.  After any
 *   other error obj is { NULL, NULL, 0 } and members are unspecified.
 *
 * - Depth counts open containers, the top-level object included: 64 levels
 *   are accepted, the 65th is TOO_DEEP.
 *
 * - Strings: bytes >= 0x80 are not checked for UTF-8 validity, neither by
 *   the scanner nor by string_decode(), which copies them as they are: the
 *   gateway forwards bodies unchanged and leaves such policy to providers.
 *   Any \uXXXX is accepted by the scanner, lone surrogates included, as the
 *   JSON grammar allows them; string_decode() returns -1 on a lone
 *   surrogate (no valid UTF-8 form), and key_is() never matches such a key.
 *   \u0000 decodes to a NUL byte, so a decoded value may contain NUL, and a
 *   key containing one never equals a C string.
 *
 * - member_removal() needs obj->n > 0 and i < obj->n from an OK scan.
 *
 * Cost: strings (prompts) are most of a body.  With SSE2, which x86_64
 * always has, a string is searched 16 bytes at a time for '"', '\\' and
 * control bytes, a long one 64 at a time; elsewhere 8 at a time in a
 * 64-bit word.  Both paths give the same results for every input (the
 * unit tests run on both, the fuzzer compares both with the scanner as it
 * was before SSE2).  Whitespace is looked for only where a token was
 * expected and not found.  A member records whether its key holds an
 * escape, so key_is() and find() compare most keys as raw bytes.
 */


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_http_conductor_json.h"


#if (NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH > 64)
#error NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH must fit in a 64-bit mask
#endif


/*
 * SSE2 is part of x86_64, so the module built there always has it; the
 * portable path is what other machines run, and what the unit tests and
 * the fuzzer also build (NGX_HTTP_CONDUCTOR_JSON_NO_SIMD) to check that
 * both find the same string ends.
 */

#if (defined __SSE2__ && defined __GNUC__                                     \
     && !defined NGX_HTTP_CONDUCTOR_JSON_NO_SIMD)
#define NGX_HTTP_CONDUCTOR_JSON_SSE2  1
#include <emmintrin.h>
#else
#define NGX_HTTP_CONDUCTOR_JSON_SSE2  0
#endif


#define NGX_HTTP_CONDUCTOR_JSON_ONES   0x0101010101010101ULL
#define NGX_HTTP_CONDUCTOR_JSON_HIGHS  0x8080808080808080ULL

/* exact test: some byte of w is zero */
#define ngx_http_conductor_json_has_zero(w)                                   \
    (((w) - NGX_HTTP_CONDUCTOR_JSON_ONES) & ~(w)                              \
     & NGX_HTTP_CONDUCTOR_JSON_HIGHS)

/* exact test: some byte of w is below n (n <= 128) */
#define ngx_http_conductor_json_has_less(w, n)                                \
    (((w) - NGX_HTTP_CONDUCTOR_JSON_ONES * (n)) & ~(w)                        \
     & NGX_HTTP_CONDUCTOR_JSON_HIGHS)

/*
 * Some byte of w ends a plain run inside a string: '"', '\\' or < 0x20.
 * Flipping bit 1 maps 0x00-0x1f onto itself and '"' (0x22) onto 0x20, so
 * one "below 0x21" test finds both.
 */
#define ngx_http_conductor_json_has_special(w)                                \
    (ngx_http_conductor_json_has_less((w)                                     \
                                  ^ (NGX_HTTP_CONDUCTOR_JSON_ONES * 0x02),    \
                                  0x21)                                       \
     | ngx_http_conductor_json_has_zero((w)                                   \
                                  ^ (NGX_HTTP_CONDUCTOR_JSON_ONES * '\\')))

/* kept out of the callers' fast paths (a stack canary, for one) */
#if (defined __GNUC__)
#define ngx_http_conductor_json_noinline  __attribute__((noinline))
#else
#define ngx_http_conductor_json_noinline
#endif

#define ngx_http_conductor_json_is_ws(c)                                      \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_http_conductor_json_is_digit(c)  ((unsigned) ((c) - '0') < 10)

#define ngx_http_conductor_json_is_hex(c)                                     \
    ((unsigned) ((c) - '0') < 10 || (unsigned) (((c) | 0x20) - 'a') < 6)


/*
 * Bytes needed to write a byte inside a JSON string: 1 for a plain byte,
 * 2 for '"', '\\' and the short escapes, 6 for \u00XX.  Anything but 1 also
 * marks the bytes that end a plain run when scanning a string.
 */
static const unsigned char  ngx_http_conductor_json_esc[256] = {
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


#if (NGX_HTTP_CONDUCTOR_JSON_SSE2)
static const unsigned char *ngx_http_conductor_json_string_rest(
    const unsigned char *p, const unsigned char *start,
    const unsigned char *end, int *escaped);
#endif
static const unsigned char *ngx_http_conductor_json_string_scalar(
    const unsigned char *p, const unsigned char *end, int *escaped);
static int ngx_http_conductor_json_hex4(const unsigned char *p,
    uint32_t *cp);
static size_t ngx_http_conductor_json_unescape(const unsigned char *p,
    const unsigned char *end, unsigned char *out, size_t *n);
static int ngx_http_conductor_json_type(unsigned char c);
static int ngx_http_conductor_json_key_decoded(
    const ngx_http_conductor_json_member_t *m, const char *name);


#if (NGX_HTTP_CONDUCTOR_JSON_SSE2)

/* byte i is 0xff when byte i of p[0..15] is '"', '\\' or below 0x20 */

static inline __m128i
ngx_http_conductor_json_special16(const unsigned char *p)
{
    __m128i  v, x;

    v = _mm_loadu_si128((const __m128i *) p);

    /*
     * x <= 0x20 unsigned, that is max(x, 0x20) == 0x20: the control bytes
     * and '"', see has_special()
     */

    x = _mm_xor_si128(v, _mm_set1_epi8(0x02));

    return _mm_or_si128(
               _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x20)),
                              _mm_set1_epi8(0x20)),
               _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
}


#define ngx_http_conductor_json_mask16(p)                                     \
    ((unsigned) _mm_movemask_epi8(ngx_http_conductor_json_special16(p)))

#define ngx_http_conductor_json_mask32(p)                                     \
    (ngx_http_conductor_json_mask16(p)                                        \
     | (uint64_t) ngx_http_conductor_json_mask16((p) + 16) << 16)

/* some byte of p[0..63] is special: one movemask for the four */

#define ngx_http_conductor_json_any64(p)                                      \
    _mm_movemask_epi8(                                                        \
        _mm_or_si128(                                                         \
            _mm_or_si128(ngx_http_conductor_json_special16(p),                \
                         ngx_http_conductor_json_special16((p) + 16)),        \
            _mm_or_si128(ngx_http_conductor_json_special16((p) + 32),         \
                         ngx_http_conductor_json_special16((p) + 48))))

#endif


/*
 * p is just after an opening quote: returns the byte after the closing
 * quote, or NULL if the string is invalid or unterminated; sets *escaped
 * when the string holds an escape.  A string without escapes is looked at
 * here, 16 bytes at a time; the rest of the work is done out of line.
 */

static inline const unsigned char *
ngx_http_conductor_json_string(const unsigned char *p,
    const unsigned char *start, const unsigned char *end, int *escaped)
{
#if (NGX_HTTP_CONDUCTOR_JSON_SSE2)

    unsigned  mask;

    while (end - p >= 16) {
        mask = ngx_http_conductor_json_mask16(p);

        if (mask) {
            p += __builtin_ctz(mask);

            if (*p == '"') {
                return p + 1;
            }

            break;
        }

        p += 16;
    }

    return ngx_http_conductor_json_string_rest(p, start, end, escaped);

#else

    (void) start;

    return ngx_http_conductor_json_string_scalar(p, end, escaped);

#endif
}


#if (NGX_HTTP_CONDUCTOR_JSON_SSE2)

/*
 * The string from p on: long plain text 64 bytes at a time; a block that
 * holds a special byte has its mask walked bit by bit, escapes included,
 * so that text with an escape every line costs no reload.  Fewer than 32
 * bytes before end are looked at as the last 32 bytes of the document,
 * without the bits of the bytes before p.
 */

static const unsigned char *
ngx_http_conductor_json_string_rest(const unsigned char *p,
    const unsigned char *start, const unsigned char *end, int *escaped)
{
    size_t                width;
    unsigned              i;
    uint64_t              mask;
    const unsigned char  *q, *last;

    if (end - start < 32) {
        return ngx_http_conductor_json_string_scalar(p, end, escaped);
    }

    for ( ;; ) {

        while (end - p >= 64 && !ngx_http_conductor_json_any64(p)) {
            p += 64;
        }

        if (end - p >= 64) {
            mask = ngx_http_conductor_json_mask32(p)
                   | ngx_http_conductor_json_mask32(p + 32) << 32;
            width = 64;

        } else if (end - p >= 32) {
            mask = ngx_http_conductor_json_mask32(p);
            width = 32;

        } else {
            width = (size_t) (end - p);

            if (width == 0) {
                return NULL;
            }

            mask = ngx_http_conductor_json_mask32(end - 32) >> (32 - width);
        }

        /* last: past the last escape of the block, maybe past the block */

        last = p;

        while (mask) {
            i = (unsigned) __builtin_ctzll(mask);
            q = p + i;

            if (*q == '"') {
                return q + 1;
            }

            if (*q != '\\' || end - q < 2) {
                return NULL;
            }

            switch (q[1]) {

            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                last = q + 2;
                break;

            case 'u':
                if (end - q < 6
                    || !ngx_http_conductor_json_is_hex(q[2])
                    || !ngx_http_conductor_json_is_hex(q[3])
                    || !ngx_http_conductor_json_is_hex(q[4])
                    || !ngx_http_conductor_json_is_hex(q[5]))
                {
                    return NULL;
                }

                last = q + 6;
                break;

            default:
                return NULL;
            }

            *escaped = 1;

            /*
             * the backslash and the byte after it, maybe a '"' or '\\';
             * the hex digits of \u are never special
             */

            mask &= ~((uint64_t) 3 << i);
        }

        p = (last > p + width) ? last : p + width;
    }
}

#endif


/*
 * A number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or true, false,
 * null at p (its first byte is one of them): the byte after it, or NULL.
 * What may follow is the caller's to check ("01" ends after "0").
 */

static inline const unsigned char *
ngx_http_conductor_json_number_literal(const unsigned char *p,
    const unsigned char *end)
{
    switch (*p) {

    case 't':
        return (end - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;

    case 'f':
        return (end - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;

    case 'n':
        return (end - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;

    case '-':
        p++;

        if (p == end || !ngx_http_conductor_json_is_digit(*p)) {
            return NULL;
        }

        break;
    }

    if (*p == '0') {
        p++;

    } else {
        do {
            p++;
        } while (p < end && ngx_http_conductor_json_is_digit(*p));
    }

    if (p < end && *p == '.') {
        p++;

        if (p == end || !ngx_http_conductor_json_is_digit(*p)) {
            return NULL;
        }

        do {
            p++;
        } while (p < end && ngx_http_conductor_json_is_digit(*p));
    }

    if (p < end && (*p | 0x20) == 'e') {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || !ngx_http_conductor_json_is_digit(*p)) {
            return NULL;
        }

        do {
            p++;
        } while (p < end && ngx_http_conductor_json_is_digit(*p));
    }

    return p;
}


/*
 * The portable string scan from p on, and the one of documents too short
 * for the 32-byte blocks.  Escapes are checked for syntax only (any
 * \uXXXX, lone surrogates included); bytes >= 0x80 are not checked for
 * UTF-8 validity.
 */

static const unsigned char *
ngx_http_conductor_json_string_scalar(const unsigned char *p,
    const unsigned char *end, int *escaped)
{
    uint64_t  w;

    for ( ;; ) {

        /* long plain runs (prompts) are skipped 8 bytes at a time */

        while (end - p >= 8) {
            memcpy(&w, p, 8);

            if (ngx_http_conductor_json_has_special(w)) {
                break;
            }

            p += 8;
        }

        while (p < end && ngx_http_conductor_json_esc[*p] == 1) {
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
            if (end - p < 6
                || !ngx_http_conductor_json_is_hex(p[2])
                || !ngx_http_conductor_json_is_hex(p[3])
                || !ngx_http_conductor_json_is_hex(p[4])
                || !ngx_http_conductor_json_is_hex(p[5]))
            {
                return NULL;
            }

            p += 6;
            break;

        default:
            return NULL;
        }

        *escaped = 1;
    }
}


int
ngx_http_conductor_json_scan_object(const unsigned char *p, size_t len,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, size_t max)
{
    int                                escaped;
    size_t                             n;
    uint64_t                           objects;
    unsigned                           depth;
    unsigned char                      c, closer;
    const unsigned char               *start, *end, *key, *open, *close;
    ngx_http_conductor_json_member_t  *m, spare;

    obj->open = NULL;
    obj->close = NULL;
    obj->n = 0;

    /* an empty body may come as (NULL, 0) */

    if (len == 0) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    start = p;
    end = p + len;
    n = 0;
    depth = 0;
    objects = 0;
    closer = 0;

    /*
     * m is the top-level member being read; members past max, and the
     * values of a top-level array, go to spare, so that no test of m is
     * needed where a value ends
     */

    spare.value = p;
    m = &spare;

    while (p < end && ngx_http_conductor_json_is_ws(*p)) {
        p++;
    }

    /* the top-level value: an object if this is a '{' */

    open = p;

value:

    /* p is where a value may start, whitespace allowed */

    if (p == end) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    /* strings first: most values are */

    if (*p == '"') {
        p = ngx_http_conductor_json_string(p + 1, start, end, &escaped);
        if (p == NULL) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        goto next;
    }

    switch (*p) {

    case '{':
        if (depth == NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH) {
            return NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP;
        }

        objects |= (uint64_t) 1 << depth;
        depth++;
        closer = '}';
        p++;

        /* a key or the '}' of an empty object */

        for ( ;; ) {
            if (p == end) {
                return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
            }

            if (*p == '"') {
                goto member;
            }

            if (*p == '}') {
                goto close;
            }

            if (!ngx_http_conductor_json_is_ws(*p)) {
                return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
            }

            p++;
        }

    case '[':
        if (depth == NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH) {
            return NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP;
        }

        objects &= ~((uint64_t) 1 << depth);
        depth++;
        closer = ']';
        p++;

        while (p < end && ngx_http_conductor_json_is_ws(*p)) {
            p++;
        }

        if (p < end && *p == ']') {
            goto close;
        }

        goto value;

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
    case 't': case 'f': case 'n':
        p = ngx_http_conductor_json_number_literal(p, end);
        if (p == NULL) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        /* "01" or "1x" fail below: only a delimiter may follow */

        goto next;

    case ' ': case '\t': case '\n': case '\r':
        p++;
        goto value;

    default:
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

member:

    /* p is at the opening quote of a key */

    key = p;
    escaped = 0;

    p = ngx_http_conductor_json_string(p + 1, start, end, &escaped);
    if (p == NULL) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    if (depth == 1) {

        /* past max, keep counting and validating: TOO_MANY comes last */

        m = (n < max) ? &members[n] : &spare;
        n++;

        m->start = key;
        m->key = key + 1;
        m->key_len = (size_t) (p - key) - 2;
        m->key_escaped = escaped;
    }

    for ( ;; ) {
        if (p == end) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        c = *p++;

        if (c == ':') {
            break;
        }

        if (!ngx_http_conductor_json_is_ws(c)) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }
    }

    if (depth == 1) {
        while (p < end && ngx_http_conductor_json_is_ws(*p)) {
            p++;
        }

        if (p == end) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        m->value = p;
        m->type = ngx_http_conductor_json_type(*p);
    }

    goto value;

close:

    /* p is at the '}' or ']' that closes the innermost container */

    depth--;
    p++;

    if (depth == 0) {
        goto done;
    }

    closer = (objects & ((uint64_t) 1 << (depth - 1))) ? '}' : ']';

next:

    /* a value ended just before p */

    if (depth <= 1) {
        if (depth == 0) {
            goto done;
        }

        m->value_len = (size_t) (p - m->value);
    }

    for ( ;; ) {
        if (p == end) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        c = *p;

        if (c == ',') {
            p++;
            break;
        }

        if (c == closer) {
            goto close;
        }

        if (!ngx_http_conductor_json_is_ws(c)) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        p++;
    }

    if (closer == ']') {
        goto value;
    }

    for ( ;; ) {
        if (p == end) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        if (*p == '"') {
            goto member;
        }

        if (!ngx_http_conductor_json_is_ws(*p)) {
            return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
        }

        p++;
    }

done:

    /* the top-level value ended just before p */

    close = p - 1;

    while (p < end && ngx_http_conductor_json_is_ws(*p)) {
        p++;
    }

    if (p != end) {
        return NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
    }

    if (*open != '{') {
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


static int
ngx_http_conductor_json_hex4(const unsigned char *p, uint32_t *cp)
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
ngx_http_conductor_json_unescape(const unsigned char *p,
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

    if (end - p < 6 || ngx_http_conductor_json_hex4(p + 2, &cp) != 0) {
        return 0;
    }

    l = 6;

    if (cp >= 0xdc00 && cp <= 0xdfff) {
        return 0;
    }

    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (end - p < 12
            || p[6] != '\\' || p[7] != 'u'
            || ngx_http_conductor_json_hex4(p + 8, &lo) != 0
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
ngx_http_conductor_json_type(unsigned char c)
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
ngx_http_conductor_json_key_is(const ngx_http_conductor_json_member_t *m,
    const char *name)
{
    size_t                i;
    const unsigned char  *k, *s;

    if (m->key_escaped) {
        return ngx_http_conductor_json_key_decoded(m, name);
    }

    /*
     * A scanned key holds no NUL (raw control bytes are invalid), so the
     * end of a shorter name is a mismatch too: name is never read past its
     * NUL.  Most calls end at the first byte.
     */

    k = m->key;
    s = (const unsigned char *) name;

    for (i = 0; i < m->key_len; i++) {
        if (k[i] != s[i]) {
            return 0;
        }
    }

    return s[i] == '\0';
}


long
ngx_http_conductor_json_find(const ngx_http_conductor_json_member_t *m,
    size_t n, const char *name)
{
    size_t  len;

    /* one strlen(), then a key without escapes is its length and bytes */

    len = strlen(name);

    while (n-- > 0) {

        if (m[n].key_escaped) {
            if (ngx_http_conductor_json_key_decoded(&m[n], name)) {
                return (long) n;
            }

            continue;
        }

        if (m[n].key_len == len && memcmp(m[n].key, name, len) == 0) {
            return (long) n;
        }
    }

    return -1;
}


/* a key with escapes, decoded as it is compared */

static ngx_http_conductor_json_noinline int
ngx_http_conductor_json_key_decoded(const ngx_http_conductor_json_member_t *m,
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

        l = ngx_http_conductor_json_unescape(k, end, buf, &n);
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


long
ngx_http_conductor_json_string_decode(const unsigned char *value,
    size_t value_len, unsigned char *out, size_t size)
{
    size_t                l, n, o;
    unsigned char         c, buf[4];
    const unsigned char  *p, *end;

    if (value_len < 2 || value[0] != '"' || value[value_len - 1] != '"') {
        return -1;
    }

    p = value + 1;
    end = value + value_len - 1;
    o = 0;

    while (p < end) {
        c = *p;

        if (c == '\\') {
            l = ngx_http_conductor_json_unescape(p, end, buf, &n);
            if (l == 0 || size - o < n) {
                return -1;
            }

            memcpy(out + o, buf, n);
            o += n;
            p += l;
            continue;
        }

        /* also catches an unescaped quote: the span is not one string */

        if (c < 0x20 || c == '"' || o == size) {
            return -1;
        }

        out[o++] = c;
        p++;
    }

    return (long) o;
}


size_t
ngx_http_conductor_json_escape_len(const unsigned char *s, size_t len)
{
    size_t  i, n;

    n = 2;

    for (i = 0; i < len; i++) {
        n += ngx_http_conductor_json_esc[s[i]];
    }

    return n;
}


unsigned char *
ngx_http_conductor_json_escape(unsigned char *dst, const unsigned char *s,
    size_t len)
{
    size_t             i;
    unsigned char      c;

    static const char  hex[] = "0123456789abcdef";

    *dst++ = '"';

    for (i = 0; i < len; i++) {
        c = s[i];

        if (ngx_http_conductor_json_esc[c] == 1) {
            *dst++ = c;
            continue;
        }

        *dst++ = '\\';

        switch (c) {

        case '"':
            *dst++ = '"';
            break;

        case '\\':
            *dst++ = '\\';
            break;

        case '\b':
            *dst++ = 'b';
            break;

        case '\f':
            *dst++ = 'f';
            break;

        case '\n':
            *dst++ = 'n';
            break;

        case '\r':
            *dst++ = 'r';
            break;

        case '\t':
            *dst++ = 't';
            break;

        default:
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = (unsigned char) hex[c >> 4];
            *dst++ = (unsigned char) hex[c & 0x0f];
            break;
        }
    }

    *dst++ = '"';

    return dst;
}


int
ngx_http_conductor_json_uint(const unsigned char *value, size_t value_len,
    int64_t *out)
{
    size_t    i;
    int64_t   v, d;

    if (value_len == 0) {
        return -1;
    }

    if (value[0] == '0') {
        if (value_len != 1) {
            return -1;
        }

        *out = 0;
        return 0;
    }

    v = 0;

    for (i = 0; i < value_len; i++) {
        if (!ngx_http_conductor_json_is_digit(value[i])) {
            return -1;
        }

        d = value[i] - '0';

        /* saturation sticks: once at INT64_MAX the test stays true */

        if (v > (INT64_MAX - d) / 10) {
            v = INT64_MAX;

        } else {
            v = v * 10 + d;
        }
    }

    *out = v;

    return 0;
}


void
ngx_http_conductor_json_member_removal(
    const ngx_http_conductor_json_object_t *obj,
    const ngx_http_conductor_json_member_t *members, size_t i,
    const unsigned char **from, const unsigned char **to)
{
    if (obj->n == 1) {
        /* the whole inside: "{}" stays */
        *from = obj->open + 1;
        *to = obj->close;
        return;
    }

    if (i + 1 < obj->n) {
        /* the member, its comma and the whitespace up to the next key */
        *from = members[i].start;
        *to = members[i + 1].start;
        return;
    }

    /* the last one: from the end of the previous value, comma included */

    *from = members[i - 1].value + members[i - 1].value_len;
    *to = members[i].value + members[i].value_len;
}


size_t
ngx_http_conductor_json_splice(const unsigned char *p, size_t len,
    const ngx_http_conductor_json_edit_t *edits, size_t nedits,
    unsigned char *out)
{
    size_t                n, gap, i;
    const unsigned char  *pos;

    n = 0;
    pos = p;

    for (i = 0; i < nedits; i++) {
        gap = (size_t) (edits[i].from - pos);

        if (out != NULL) {
            if (gap) {
                memcpy(out + n, pos, gap);
            }

            if (edits[i].len) {
                memcpy(out + n + gap, edits[i].data, edits[i].len);
            }
        }

        n += gap + edits[i].len;
        pos = edits[i].to;
    }

    /* len, not p + len: an empty body may come as (NULL, 0) */

    gap = len - (size_t) (pos - p);

    if (out != NULL && gap) {
        memcpy(out + n, pos, gap);
    }

    return n + gap;
}


const unsigned char *
ngx_http_conductor_json_skip_value(const unsigned char *p,
    const unsigned char *end, unsigned levels)
{
    int                   escaped;
    uint64_t              objects, bit;
    unsigned              depth;
    unsigned char         c;
    const unsigned char  *start;

    /* the strings' block reads stay inside [start, end) */
    start = p;
    depth = 0;
    objects = 0;

value:

    if (p == end) {
        return NULL;
    }

    switch (*p) {

    case '{':
    case '[':
        if (depth == levels || depth == NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH) {
            return NULL;
        }

        c = (*p == '{') ? '}' : ']';
        bit = (uint64_t) 1 << depth;
        objects = (c == '}') ? (objects | bit) : (objects & ~bit);
        depth++;
        p++;

        while (p < end && ngx_http_conductor_json_is_ws(*p)) {
            p++;
        }

        if (p < end && *p == c) {
            depth--;
            p++;
            goto next;
        }

        if (c == ']') {
            goto value;
        }

        goto member;

    case '"':
        p = ngx_http_conductor_json_string(p + 1, start, end, &escaped);
        if (p == NULL) {
            return NULL;
        }

        goto next;

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
    case 't': case 'f': case 'n':
        p = ngx_http_conductor_json_number_literal(p, end);
        if (p == NULL) {
            return NULL;
        }

        goto next;

    default:
        return NULL;
    }

member:

    /* after '{' or ',' of an object, whitespace skipped */

    if (p == end || *p != '"') {
        return NULL;
    }

    p = ngx_http_conductor_json_string(p + 1, start, end, &escaped);
    if (p == NULL) {
        return NULL;
    }

    while (p < end && ngx_http_conductor_json_is_ws(*p)) {
        p++;
    }

    if (p == end || *p != ':') {
        return NULL;
    }

    p++;

    while (p < end && ngx_http_conductor_json_is_ws(*p)) {
        p++;
    }

    goto value;

next:

    /* a value ended just before p */

    if (depth == 0) {
        return p;
    }

    while (p < end && ngx_http_conductor_json_is_ws(*p)) {
        p++;
    }

    if (p == end) {
        return NULL;
    }

    c = *p++;
    bit = objects & ((uint64_t) 1 << (depth - 1));

    if (c == ',') {
        while (p < end && ngx_http_conductor_json_is_ws(*p)) {
            p++;
        }

        if (bit) {
            goto member;
        }

        goto value;
    }

    if (c == (bit ? '}' : ']')) {
        depth--;
        goto next;
    }

    return NULL;
}
