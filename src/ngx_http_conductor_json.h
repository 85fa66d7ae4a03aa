
/*
 * JSON span scanner: validates a JSON document and reports the byte spans of
 * an object's members, so the request body can be edited by splicing spans
 * instead of being re-serialised.  No nginx include: unit tested and fuzzed
 * on its own.
 */

#ifndef _NGX_HTTP_CONDUCTOR_JSON_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH  64


typedef enum {
    NGX_HTTP_CONDUCTOR_JSON_OK = 0,
    NGX_HTTP_CONDUCTOR_JSON_SYNTAX,        /* not JSON */
    NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT,    /* valid JSON, not an object */
    NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP,      /* nesting over MAX_DEPTH */
    NGX_HTTP_CONDUCTOR_JSON_TOO_MANY       /* more members than room */
} ngx_http_conductor_json_rc_e;


typedef enum {
    NGX_HTTP_CONDUCTOR_JSON_STRING = 1,
    NGX_HTTP_CONDUCTOR_JSON_NUMBER,
    NGX_HTTP_CONDUCTOR_JSON_OBJECT,
    NGX_HTTP_CONDUCTOR_JSON_ARRAY,
    NGX_HTTP_CONDUCTOR_JSON_TRUE,
    NGX_HTTP_CONDUCTOR_JSON_FALSE,
    NGX_HTTP_CONDUCTOR_JSON_NULL
} ngx_http_conductor_json_type_e;


typedef struct {
    const unsigned char  *start;      /* opening quote of the key */
    const unsigned char  *key;        /* key bytes inside the quotes, raw */
    size_t                key_len;
    const unsigned char  *value;      /* first byte of the value */
    size_t                value_len;  /* value span, quotes included */
    int                   type;       /* ngx_http_conductor_json_type_e */
    int                   key_escaped;  /* the key holds a backslash */
} ngx_http_conductor_json_member_t;


typedef struct {
    const unsigned char  *open;       /* the '{' */
    const unsigned char  *close;      /* the '}' */
    size_t                n;          /* members found */
} ngx_http_conductor_json_object_t;


typedef struct {
    const unsigned char  *from;       /* replace [from, to) ... */
    const unsigned char  *to;
    const unsigned char  *data;       /* ... with these bytes */
    size_t                len;
} ngx_http_conductor_json_edit_t;


/*
 * Validates the whole of [p, p + len) as one JSON value (RFC 8259, leading
 * and trailing whitespace allowed, depth capped) that must be an object, and
 * fills up to max members of that object, in document order.  Duplicate
 * keys are reported as they appear.  Nested values are validated, not
 * reported.  Works on any object span, so a member's object value can be
 * scanned again for its own members.
 */
int ngx_http_conductor_json_scan_object(const unsigned char *p, size_t len,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, size_t max);

/*
 * 1 if the raw key (escapes allowed, e.g. "mod\u0065l") decodes to name;
 * a key without escapes (key_escaped 0) is compared as it is
 */
int ngx_http_conductor_json_key_is(const ngx_http_conductor_json_member_t *m,
    const char *name);

/* index of the last member whose key is name, or -1 */
long ngx_http_conductor_json_find(const ngx_http_conductor_json_member_t *m,
    size_t n, const char *name);

/*
 * Decodes a string value span (quotes included) into UTF-8 bytes; returns
 * the decoded length, or -1 when it does not fit in size or is invalid.
 */
long ngx_http_conductor_json_string_decode(const unsigned char *value,
    size_t value_len, unsigned char *out, size_t size);

/* bytes needed to write s as a JSON string, quotes included */
size_t ngx_http_conductor_json_escape_len(const unsigned char *s, size_t len);

/* writes s as a JSON string with quotes; returns the end of what it wrote */
unsigned char *ngx_http_conductor_json_escape(unsigned char *dst,
    const unsigned char *s, size_t len);

/*
 * A non-negative integer value (a NUMBER span without fraction or exponent):
 * 0 and the value, saturated at INT64_MAX; -1 for anything else.
 */
int ngx_http_conductor_json_uint(const unsigned char *value, size_t value_len,
    int64_t *out);

/*
 * The span [from, to) that removes members[i] together with one adjacent
 * comma and the whitespace around it, leaving a valid object.
 */
void ngx_http_conductor_json_member_removal(
    const ngx_http_conductor_json_object_t *obj,
    const ngx_http_conductor_json_member_t *members, size_t i,
    const unsigned char **from, const unsigned char **to);

/*
 * Applies edits (sorted by from, not overlapping) to [p, p + len): returns
 * the resulting length, and writes it to out when out is not NULL.
 */
size_t ngx_http_conductor_json_splice(const unsigned char *p, size_t len,
    const ngx_http_conductor_json_edit_t *edits, size_t nedits,
    unsigned char *out);


/*
 * Validates the one value starting at p (no whitespace before it) by the
 * rules of scan_object(), with at most levels containers open at once
 * (0: scalars only; at most MAX_DEPTH), and returns the byte after it, or
 * NULL when it is invalid, cut short or deeper.  What follows the value
 * is the caller's to check: "01" ends after "0".
 */
const unsigned char *ngx_http_conductor_json_skip_value(
    const unsigned char *p, const unsigned char *end, unsigned levels);

#endif /* _NGX_HTTP_CONDUCTOR_JSON_H_INCLUDED_ */
