
/*
 * libFuzzer target of the JSON span scanner.  Each input goes through:
 * scan_object with its invariants, a differential check against jansson,
 * one against the scanner as it was before SSE2 (json_ref.c) for both
 * string scans (the module's and the portable one, compiled below under
 * other names), key_is/find/string_decode on every member, removal,
 * insertion and value replacement of every member (the result must scan
 * again), skip_value against the scan, the escape round trip of the raw
 * input and uint.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_conductor_json.h"
#include "json_ref.c"


/* the portable string scan of the same source, under other names */

#define NGX_HTTP_CONDUCTOR_JSON_NO_SIMD  1

#define ngx_http_conductor_json_scan_object                                   \
    ngx_http_conductor_scalar_scan_object
#define ngx_http_conductor_json_key_is     ngx_http_conductor_scalar_key_is
#define ngx_http_conductor_json_find       ngx_http_conductor_scalar_find
#define ngx_http_conductor_json_string_decode                                 \
    ngx_http_conductor_scalar_string_decode
#define ngx_http_conductor_json_escape_len ngx_http_conductor_scalar_escape_len
#define ngx_http_conductor_json_escape     ngx_http_conductor_scalar_escape
#define ngx_http_conductor_json_uint       ngx_http_conductor_scalar_uint
#define ngx_http_conductor_json_member_removal                                \
    ngx_http_conductor_scalar_member_removal
#define ngx_http_conductor_json_splice     ngx_http_conductor_scalar_splice
#define ngx_http_conductor_json_skip_value                                    \
    ngx_http_conductor_scalar_skip_value

/* the header is in already: the prototypes under the other names */
int ngx_http_conductor_json_scan_object(const unsigned char *p, size_t len,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, size_t max);
int ngx_http_conductor_json_key_is(const ngx_http_conductor_json_member_t *m,
    const char *name);
long ngx_http_conductor_json_find(const ngx_http_conductor_json_member_t *m,
    size_t n, const char *name);
long ngx_http_conductor_json_string_decode(const unsigned char *value,
    size_t value_len, unsigned char *out, size_t size);
size_t ngx_http_conductor_json_escape_len(const unsigned char *s, size_t len);
unsigned char *ngx_http_conductor_json_escape(unsigned char *dst,
    const unsigned char *s, size_t len);
int ngx_http_conductor_json_uint(const unsigned char *value, size_t value_len,
    int64_t *out);
void ngx_http_conductor_json_member_removal(
    const ngx_http_conductor_json_object_t *obj,
    const ngx_http_conductor_json_member_t *members, size_t i,
    const unsigned char **from, const unsigned char **to);
size_t ngx_http_conductor_json_splice(const unsigned char *p, size_t len,
    const ngx_http_conductor_json_edit_t *edits, size_t nedits,
    unsigned char *out);

#include "ngx_http_conductor_json.c"

#undef ngx_http_conductor_json_scan_object
#undef ngx_http_conductor_json_key_is
#undef ngx_http_conductor_json_find
#undef ngx_http_conductor_json_string_decode
#undef ngx_http_conductor_json_escape_len
#undef ngx_http_conductor_json_escape
#undef ngx_http_conductor_json_uint
#undef ngx_http_conductor_json_member_removal
#undef ngx_http_conductor_json_splice
#undef ngx_http_conductor_json_skip_value


#define NGX_HTTP_CONDUCTOR_FUZZ_MAX  16

#define ngx_http_conductor_fuzz_assert(c)                                     \
    if (!(c)) {                                                               \
        fprintf(stderr, "json_fuzz.c:%d: %s\n", __LINE__, #c);                \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* raw key spans of a and b hold the same bytes */

static int
ngx_http_conductor_fuzz_same_key(const ngx_http_conductor_json_member_t *a,
    const ngx_http_conductor_json_member_t *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}


static int
ngx_http_conductor_fuzz_has(const uint8_t *p, size_t len, const char *s)
{
    size_t  i, n;

    n = strlen(s);

    for (i = 0; i + n <= len; i++) {
        if (memcmp(p + i, s, n) == 0) {
            return 1;
        }
    }

    return 0;
}


/* jansson type as a member type */

static int
ngx_http_conductor_fuzz_jtype(json_t *v)
{
    switch (json_typeof(v)) {

    case JSON_OBJECT:
        return NGX_HTTP_CONDUCTOR_JSON_OBJECT;

    case JSON_ARRAY:
        return NGX_HTTP_CONDUCTOR_JSON_ARRAY;

    case JSON_STRING:
        return NGX_HTTP_CONDUCTOR_JSON_STRING;

    case JSON_INTEGER:
    case JSON_REAL:
        return NGX_HTTP_CONDUCTOR_JSON_NUMBER;

    case JSON_TRUE:
        return NGX_HTTP_CONDUCTOR_JSON_TRUE;

    case JSON_FALSE:
        return NGX_HTTP_CONDUCTOR_JSON_FALSE;

    default:
        return NGX_HTTP_CONDUCTOR_JSON_NULL;
    }
}


/* span invariants of a successful scan */

static void
ngx_http_conductor_fuzz_spans(const uint8_t *data, size_t size,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *m)
{
    int                                rc;
    size_t                             i;
    const unsigned char               *prev, *last;
    ngx_http_conductor_json_object_t   sub;
    ngx_http_conductor_json_member_t   sm[NGX_HTTP_CONDUCTOR_FUZZ_MAX];

    ngx_http_conductor_fuzz_assert(obj->n <= NGX_HTTP_CONDUCTOR_FUZZ_MAX);
    ngx_http_conductor_fuzz_assert(obj->open >= data
                                   && obj->open < obj->close
                                   && obj->close < data + size
                                   && *obj->open == '{'
                                   && *obj->close == '}');

    prev = obj->open + 1;

    for (i = 0; i < obj->n; i++) {
        ngx_http_conductor_fuzz_assert(m[i].start >= prev
                                       && m[i].start[0] == '"'
                                       && m[i].key == m[i].start + 1
                                       && m[i].key[m[i].key_len] == '"'
                                       && m[i].value > m[i].key + m[i].key_len
                                       && m[i].value_len > 0
                                       && m[i].value + m[i].value_len
                                          <= obj->close);

        last = m[i].value + m[i].value_len - 1;
        prev = last + 1;

        switch (m[i].type) {

        case NGX_HTTP_CONDUCTOR_JSON_STRING:
            ngx_http_conductor_fuzz_assert(m[i].value[0] == '"'
                                           && m[i].value_len >= 2
                                           && *last == '"');
            break;

        case NGX_HTTP_CONDUCTOR_JSON_OBJECT:
            rc = ngx_http_conductor_json_scan_object(m[i].value,
                     m[i].value_len, &sub, sm, NGX_HTTP_CONDUCTOR_FUZZ_MAX);

            ngx_http_conductor_fuzz_assert(
                (rc == NGX_HTTP_CONDUCTOR_JSON_OK
                 || rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY)
                && sub.open == m[i].value && sub.close == last);
            break;

        case NGX_HTTP_CONDUCTOR_JSON_ARRAY:
            rc = ngx_http_conductor_json_scan_object(m[i].value,
                     m[i].value_len, &sub, sm, NGX_HTTP_CONDUCTOR_FUZZ_MAX);

            ngx_http_conductor_fuzz_assert(
                rc == NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT && *last == ']');
            break;

        case NGX_HTTP_CONDUCTOR_JSON_NUMBER:
            ngx_http_conductor_fuzz_assert(m[i].value[0] == '-'
                                           || (m[i].value[0] >= '0'
                                               && m[i].value[0] <= '9'));
            break;

        case NGX_HTTP_CONDUCTOR_JSON_TRUE:
            ngx_http_conductor_fuzz_assert(m[i].value_len == 4);
            break;

        case NGX_HTTP_CONDUCTOR_JSON_FALSE:
            ngx_http_conductor_fuzz_assert(m[i].value_len == 5);
            break;

        case NGX_HTTP_CONDUCTOR_JSON_NULL:
            ngx_http_conductor_fuzz_assert(m[i].value_len == 4);
            break;

        default:
            ngx_http_conductor_fuzz_assert(0);
        }
    }
}


/* key_is, find and string_decode on every member, against jansson */

static void
ngx_http_conductor_fuzz_members(json_t *j,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *m)
{
    long            klen, vlen, idx;
    size_t          i;
    json_t         *v;
    unsigned char   c, *key, *val;

    for (i = 0; i < obj->n; i++) {
        key = malloc(m[i].key_len + 2);
        ngx_http_conductor_fuzz_assert(key != NULL);

        klen = ngx_http_conductor_json_string_decode(m[i].start,
                   m[i].key_len + 2, key, m[i].key_len + 1);

        /* only a lone surrogate makes a scanned string undecodable */

        if (klen < 0) {
            ngx_http_conductor_fuzz_assert(j == NULL);
            free(key);
            continue;
        }

        ngx_http_conductor_fuzz_assert((size_t) klen <= m[i].key_len);

        key[klen] = '\0';

        if (memchr(key, '\0', klen) == NULL) {
            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_json_key_is(&m[i], (char *) key));

            idx = ngx_http_conductor_json_find(m, obj->n, (char *) key);
            ngx_http_conductor_fuzz_assert(idx >= (long) i);

            if (klen > 0) {
                key[klen - 1] ^= 1;
                ngx_http_conductor_fuzz_assert(
                    !ngx_http_conductor_json_key_is(&m[i], (char *) key));
                key[klen - 1] ^= 1;

                c = key[klen - 1];
                key[klen - 1] = '\0';
                ngx_http_conductor_fuzz_assert(
                    !ngx_http_conductor_json_key_is(&m[i], (char *) key));
                key[klen - 1] = c;
            }
        }

        val = NULL;
        vlen = -1;

        if (m[i].type == NGX_HTTP_CONDUCTOR_JSON_STRING) {
            val = malloc(m[i].value_len);
            ngx_http_conductor_fuzz_assert(val != NULL);

            vlen = ngx_http_conductor_json_string_decode(m[i].value,
                       m[i].value_len, val, m[i].value_len);
            ngx_http_conductor_fuzz_assert(vlen < (long) m[i].value_len - 1);

            if (vlen < 0) {
                ngx_http_conductor_fuzz_assert(j == NULL);
            }
        }

        if (j != NULL) {

            /* the last duplicate is what jansson keeps */

            v = json_object_getn(j, (char *) key, klen);
            ngx_http_conductor_fuzz_assert(v != NULL);

            if (memchr(key, '\0', klen) == NULL
                && ngx_http_conductor_json_find(m, obj->n, (char *) key)
                   == (long) i)
            {
                ngx_http_conductor_fuzz_assert(
                    ngx_http_conductor_fuzz_jtype(v) == m[i].type);

                if (val != NULL) {
                    ngx_http_conductor_fuzz_assert(
                        (size_t) vlen == json_string_length(v)
                        && memcmp(val, json_string_value(v), vlen) == 0);
                }
            }
        }

        free(val);
        free(key);
    }
}


/* removal of each member, insertion of one, replacement of each value */

static void
ngx_http_conductor_fuzz_edits(const uint8_t *data, size_t size,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *m)
{
    int                                rc;
    size_t                             i, k, len;
    unsigned char                     *out;
    ngx_http_conductor_json_edit_t     e;
    ngx_http_conductor_json_object_t   o2;
    ngx_http_conductor_json_member_t   m2[NGX_HTTP_CONDUCTOR_FUZZ_MAX + 1];

    out = malloc(size + 16);
    ngx_http_conductor_fuzz_assert(out != NULL);

    for (i = 0; i < obj->n; i++) {
        ngx_http_conductor_json_member_removal(obj, m, i, &e.from, &e.to);
        e.data = NULL;
        e.len = 0;

        ngx_http_conductor_fuzz_assert(e.from > obj->open
                                       && e.from <= m[i].start
                                       && e.to <= obj->close
                                       && e.to >= m[i].value
                                                  + m[i].value_len);

        len = ngx_http_conductor_json_splice(data, size, &e, 1, NULL);
        ngx_http_conductor_fuzz_assert(
            len == ngx_http_conductor_json_splice(data, size, &e, 1, out)
            && len == size - (size_t) (e.to - e.from));

        rc = ngx_http_conductor_json_scan_object(out, len, &o2, m2,
                 NGX_HTTP_CONDUCTOR_FUZZ_MAX + 1);

        ngx_http_conductor_fuzz_assert(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                                       && o2.n == obj->n - 1);

        for (k = 0; k < o2.n; k++) {
            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_fuzz_same_key(&m2[k], &m[k < i ? k : k + 1])
                && m2[k].value_len == m[k < i ? k : k + 1].value_len);
        }

        /* the way the gateway replaces a value */

        e.from = m[i].value;
        e.to = m[i].value + m[i].value_len;
        e.data = (const unsigned char *) "null";
        e.len = 4;

        len = ngx_http_conductor_json_splice(data, size, &e, 1, out);

        rc = ngx_http_conductor_json_scan_object(out, len, &o2, m2,
                 NGX_HTTP_CONDUCTOR_FUZZ_MAX + 1);

        ngx_http_conductor_fuzz_assert(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                                       && o2.n == obj->n
                                       && m2[i].type
                                          == NGX_HTTP_CONDUCTOR_JSON_NULL);
    }

    /* the way the gateway inserts stream_options */

    e.from = obj->close;
    e.to = obj->close;
    e.data = (const unsigned char *) (obj->n ? ",\"zz\":1" : "\"zz\":1");
    e.len = obj->n ? 7 : 6;

    len = ngx_http_conductor_json_splice(data, size, &e, 1, out);

    rc = ngx_http_conductor_json_scan_object(out, len, &o2, m2,
             NGX_HTTP_CONDUCTOR_FUZZ_MAX + 1);

    ngx_http_conductor_fuzz_assert(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                                   && o2.n == obj->n + 1
                                   && ngx_http_conductor_json_find(m2, o2.n,
                                          "zz") == (long) obj->n);

    free(out);
}


/* escape the raw input, scan it as a member value, decode it back */

static void
ngx_http_conductor_fuzz_escape(const uint8_t *data, size_t size)
{
    int                                rc;
    long                               n;
    size_t                             elen, len;
    unsigned char                     *buf, *end, *dec;
    ngx_http_conductor_json_object_t   obj;
    ngx_http_conductor_json_member_t   m[2];

    elen = ngx_http_conductor_json_escape_len(data, size);
    ngx_http_conductor_fuzz_assert(elen >= size + 2 && elen <= 6 * size + 2);

    buf = malloc(elen + 6);
    dec = malloc(size + 1);
    ngx_http_conductor_fuzz_assert(buf != NULL && dec != NULL);

    memcpy(buf, "{\"k\":", 5);
    end = ngx_http_conductor_json_escape(buf + 5, data, size);
    ngx_http_conductor_fuzz_assert((size_t) (end - buf - 5) == elen);
    *end++ = '}';
    len = end - buf;

    rc = ngx_http_conductor_json_scan_object(buf, len, &obj, m, 2);
    ngx_http_conductor_fuzz_assert(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                                   && obj.n == 1
                                   && ngx_http_conductor_json_key_is(&m[0],
                                                                     "k")
                                   && m[0].type
                                      == NGX_HTTP_CONDUCTOR_JSON_STRING
                                   && m[0].value_len == elen);

    n = ngx_http_conductor_json_string_decode(m[0].value, m[0].value_len, dec,
                                              size);
    ngx_http_conductor_fuzz_assert(n == (long) size
                                   && memcmp(dec, data, size) == 0);

    free(dec);
    free(buf);
}


static void
ngx_http_conductor_fuzz_uint(const uint8_t *data, size_t size)
{
    int       rc, valid;
    char      tmp[24];
    size_t    i;
    int64_t   v, ref;

    rc = ngx_http_conductor_json_uint(data, size, &v);

    valid = size > 0 && (data[0] != '0' || size == 1);

    for (i = 0; valid && i < size; i++) {
        valid = (data[i] >= '0' && data[i] <= '9');
    }

    ngx_http_conductor_fuzz_assert((rc == 0) == valid);

    if (!valid) {
        return;
    }

    if (size > 19
        || (size == 19 && memcmp(data, "9223372036854775807", 19) > 0))
    {
        ref = INT64_MAX;

    } else {
        memcpy(tmp, data, size);
        tmp[size] = '\0';
        ref = strtoll(tmp, NULL, 10);
    }

    ngx_http_conductor_fuzz_assert(v == ref);
}


/* members a and b hold the same spans */

static int
ngx_http_conductor_fuzz_same_member(const ngx_http_conductor_json_member_t *a,
    const ngx_http_conductor_json_member_t *b)
{
    return a->start == b->start && a->key == b->key
           && a->key_len == b->key_len && a->value == b->value
           && a->value_len == b->value_len && a->type == b->type;
}


/*
 * scan_object and key_is of the module and of the portable scan give what
 * the scanner before SSE2 gave, with max members of room
 */

static void
ngx_http_conductor_fuzz_reference(const uint8_t *data, size_t size,
    size_t max)
{
    int                                rc, ref, sc;
    long                               klen, idx;
    size_t                             i, k;
    unsigned char                      key[64];
    ngx_http_conductor_json_object_t   o, ro, so;
    ngx_http_conductor_json_member_t   m[NGX_HTTP_CONDUCTOR_FUZZ_MAX];
    ngx_http_conductor_json_member_t   rm[NGX_HTTP_CONDUCTOR_FUZZ_MAX];
    ngx_http_conductor_json_member_t   sm[NGX_HTTP_CONDUCTOR_FUZZ_MAX];

    static const char  *names[] = {
        "", "a", "model", "routing", "stream", "max_tokens",
        "max_completion_tokens", "max_output_tokens", "usage", "\xc3\xa9"
    };

    rc = ngx_http_conductor_json_scan_object(data, size, &o,
                                             max ? m : NULL, max);
    ref = ngx_http_conductor_ref_scan_object(data, size, &ro,
                                             max ? rm : NULL, max);
    sc = ngx_http_conductor_scalar_scan_object(data, size, &so,
                                               max ? sm : NULL, max);

    ngx_http_conductor_fuzz_assert(rc == ref && sc == ref);
    ngx_http_conductor_fuzz_assert(o.open == ro.open && o.close == ro.close
                                   && o.n == ro.n);
    ngx_http_conductor_fuzz_assert(so.open == ro.open && so.close == ro.close
                                   && so.n == ro.n);

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK
        && rc != NGX_HTTP_CONDUCTOR_JSON_TOO_MANY)
    {
        return;
    }

    /* find() is the last member key_is() of the reference takes */

    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        idx = -1;

        for (i = 0; i < o.n; i++) {
            if (ngx_http_conductor_ref_key_is(&rm[i], names[k])) {
                idx = (long) i;
            }
        }

        ngx_http_conductor_fuzz_assert(
            ngx_http_conductor_json_find(m, o.n, names[k]) == idx
            && ngx_http_conductor_scalar_find(sm, so.n, names[k]) == idx);
    }

    for (i = 0; i < o.n; i++) {
        ngx_http_conductor_fuzz_assert(
            ngx_http_conductor_fuzz_same_member(&m[i], &rm[i])
            && ngx_http_conductor_fuzz_same_member(&sm[i], &rm[i]));

        ngx_http_conductor_fuzz_assert(
            m[i].key_escaped
                == (memchr(m[i].key, '\\', m[i].key_len) != NULL)
            && sm[i].key_escaped == m[i].key_escaped);

        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            ref = ngx_http_conductor_ref_key_is(&rm[i], names[k]);

            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_json_key_is(&m[i], names[k]) == ref
                && ngx_http_conductor_scalar_key_is(&sm[i], names[k])
                   == ref);
        }

        /* the key itself, and the same one byte short */

        klen = ngx_http_conductor_json_string_decode(m[i].start,
                   m[i].key_len + 2, key, sizeof(key) - 1);

        if (klen < 0 || memchr(key, '\0', klen) != NULL) {
            continue;
        }

        key[klen] = '\0';

        ngx_http_conductor_fuzz_assert(
            ngx_http_conductor_ref_key_is(&rm[i], (char *) key)
            && ngx_http_conductor_json_key_is(&m[i], (char *) key)
            && ngx_http_conductor_scalar_key_is(&sm[i], (char *) key));

        for (idx = -1, k = 0; k < o.n; k++) {
            if (ngx_http_conductor_ref_key_is(&rm[k], (char *) key)) {
                idx = (long) k;
            }
        }

        ngx_http_conductor_fuzz_assert(
            idx >= (long) i
            && ngx_http_conductor_json_find(m, o.n, (char *) key) == idx);

        if (klen > 0) {
            key[klen - 1] = '\0';
            ref = ngx_http_conductor_ref_key_is(&rm[i], (char *) key);

            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_json_key_is(&m[i], (char *) key) == ref
                && ngx_http_conductor_scalar_key_is(&sm[i], (char *) key)
                   == ref);
        }
    }
}


/*
 * skip_value() accepts what scan_object() accepts as a document (any
 * value), ends each member's value where the scan does, and fewer levels
 * only ever cut it off.
 */

static void
ngx_http_conductor_fuzz_skip(const uint8_t *data, size_t size, int rc,
    const ngx_http_conductor_json_object_t *obj,
    const ngx_http_conductor_json_member_t *m)
{
    int             valid;
    size_t          i;
    unsigned        levels;
    const uint8_t  *p, *q, *r, *end;

    p = data;
    end = data + size;

    while (p < end
           && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    q = ngx_http_conductor_json_skip_value(p, end,
                                           NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH);
    r = q;

    while (r != NULL && r < end
           && (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n'))
    {
        r++;
    }

    valid = (rc == NGX_HTTP_CONDUCTOR_JSON_OK
             || rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY
             || rc == NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT);

    ngx_http_conductor_fuzz_assert((r == end) == valid);

    levels = size ? data[0] % (NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH + 1) : 0;
    r = ngx_http_conductor_json_skip_value(p, end, levels);

    ngx_http_conductor_fuzz_assert(r == NULL || r == q);

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK) {
        return;
    }

    for (i = 0; i < obj->n; i++) {
        q = ngx_http_conductor_json_skip_value(m[i].value, end,
                                       NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH - 1);
        ngx_http_conductor_fuzz_assert(q == m[i].value + m[i].value_len);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                                rc;
    json_t                            *j;
    json_error_t                       err;
    ngx_http_conductor_json_object_t   obj;
    ngx_http_conductor_json_member_t   m[NGX_HTTP_CONDUCTOR_FUZZ_MAX];

    rc = ngx_http_conductor_json_scan_object(data, size, &obj, m,
                                             NGX_HTTP_CONDUCTOR_FUZZ_MAX);

    ngx_http_conductor_fuzz_assert(rc >= NGX_HTTP_CONDUCTOR_JSON_OK
                                   && rc <= NGX_HTTP_CONDUCTOR_JSON_TOO_MANY);

    ngx_http_conductor_fuzz_reference(data, size, NGX_HTTP_CONDUCTOR_FUZZ_MAX);
    ngx_http_conductor_fuzz_reference(data, size, 2);
    ngx_http_conductor_fuzz_reference(data, size, 0);

    /* jansson takes a raw NUL byte for the end of input */

    j = NULL;

    if (memchr(data, '\0', size) == NULL) {
        j = json_loadb((const char *) data, size,
                       JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

        if (j == NULL && rc != NGX_HTTP_CONDUCTOR_JSON_SYNTAX
            && rc != NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP)
        {
            /* what jansson alone rejects: bad UTF-8, lone \u, overflow */

            ngx_http_conductor_fuzz_assert(
                json_error_code(&err) == json_error_invalid_utf8
                || json_error_code(&err) == json_error_numeric_overflow
                || ngx_http_conductor_fuzz_has(data, size, "\\u"));
        }
    }

    if (j != NULL) {

        /* jansson is stricter (UTF-8, surrogates, overflow), never looser */

        ngx_http_conductor_fuzz_assert(rc != NGX_HTTP_CONDUCTOR_JSON_SYNTAX);

        if (rc != NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP) {
            ngx_http_conductor_fuzz_assert(json_is_object(j)
                == (rc != NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT));
        }

        if (rc == NGX_HTTP_CONDUCTOR_JSON_OK) {
            ngx_http_conductor_fuzz_assert(json_object_size(j) <= obj.n);
        }
    }

    if (rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY) {
        ngx_http_conductor_fuzz_assert(obj.n == NGX_HTTP_CONDUCTOR_FUZZ_MAX);
    }

    if (rc == NGX_HTTP_CONDUCTOR_JSON_OK) {
        ngx_http_conductor_fuzz_spans(data, size, &obj, m);
        ngx_http_conductor_fuzz_members(j, &obj, m);
        ngx_http_conductor_fuzz_edits(data, size, &obj, m);
    }

    json_decref(j);

    ngx_http_conductor_fuzz_skip(data, size, rc, &obj, m);
    ngx_http_conductor_fuzz_escape(data, size);
    ngx_http_conductor_fuzz_uint(data, size);

    return 0;
}
