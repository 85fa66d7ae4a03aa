/*
 * Token usage extraction; see ngx_http_conductor_usage.h.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* memmem */
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include <jansson.h>

#include "ngx_http_conductor_json.h"
#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_usage.h"


#define NGX_HTTP_CONDUCTOR_USAGE_KEY_MAX  32
#define NGX_HTTP_CONDUCTOR_USAGE_MEMBERS  32


/* the member names a usage object (or a *_details object in it) uses */
typedef enum {
    NGX_HTTP_CONDUCTOR_USAGE_PROMPT = 0,
    NGX_HTTP_CONDUCTOR_USAGE_INPUT,
    NGX_HTTP_CONDUCTOR_USAGE_COMPLETION,
    NGX_HTTP_CONDUCTOR_USAGE_OUTPUT,
    NGX_HTTP_CONDUCTOR_USAGE_TOTAL,
    NGX_HTTP_CONDUCTOR_USAGE_PROMPT_DETAILS,
    NGX_HTTP_CONDUCTOR_USAGE_INPUT_DETAILS,
    NGX_HTTP_CONDUCTOR_USAGE_COMPLETION_DETAILS,
    NGX_HTTP_CONDUCTOR_USAGE_OUTPUT_DETAILS,
    NGX_HTTP_CONDUCTOR_USAGE_CACHE_READ,
    NGX_HTTP_CONDUCTOR_USAGE_CACHE_CREATION,
    NGX_HTTP_CONDUCTOR_USAGE_CACHED,
    NGX_HTTP_CONDUCTOR_USAGE_REASONING,
    NGX_HTTP_CONDUCTOR_USAGE_NKEYS
} ngx_http_conductor_usage_key_e;


typedef struct {
    const char  *name;
    size_t       len;
} ngx_http_conductor_usage_name_t;


#define ngx_http_conductor_usage_name(s)  { s, sizeof(s) - 1 }

static const ngx_http_conductor_usage_name_t
    ngx_http_conductor_usage_names[NGX_HTTP_CONDUCTOR_USAGE_NKEYS] =
{
    ngx_http_conductor_usage_name("prompt_tokens"),
    ngx_http_conductor_usage_name("input_tokens"),
    ngx_http_conductor_usage_name("completion_tokens"),
    ngx_http_conductor_usage_name("output_tokens"),
    ngx_http_conductor_usage_name("total_tokens"),
    ngx_http_conductor_usage_name("prompt_tokens_details"),
    ngx_http_conductor_usage_name("input_tokens_details"),
    ngx_http_conductor_usage_name("completion_tokens_details"),
    ngx_http_conductor_usage_name("output_tokens_details"),
    ngx_http_conductor_usage_name("cache_read_input_tokens"),
    ngx_http_conductor_usage_name("cache_creation_input_tokens"),
    ngx_http_conductor_usage_name("cached_tokens"),
    ngx_http_conductor_usage_name("reasoning_tokens")
};


/*
 * A usage object read in one pass, in place: the value span of the last
 * member of each known name among its first USAGE_MEMBERS members (what
 * a look-up per name in a span scan of the object found), NULL if none,
 * and its value when it is an integer read on the way (else -1).
 */
typedef struct {
    const unsigned char  *value[NGX_HTTP_CONDUCTOR_USAGE_NKEYS];
    size_t                len[NGX_HTTP_CONDUCTOR_USAGE_NKEYS];
    int64_t               num[NGX_HTTP_CONDUCTOR_USAGE_NKEYS];
} ngx_http_conductor_usage_slots_t;


/*
 * The backward search for "usage": how far a window may move left when
 * its first byte is this one (the distance to that byte's first place in
 * the key after the opening quote, 7 for a byte not in it).
 */
static const unsigned char  ngx_http_conductor_usage_shift[256] = {
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,   /* '"' */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 3, 7, 7, 7, 5, 7, 4, 7, 7, 7, 7, 7, 7, 7, 7,   /* 'a' 'e' 'g' */
    7, 7, 7, 2, 7, 1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,   /* 's' 'u' */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7
};


/* 1 for a byte a string may hold as it is: not '"', '\\', below 0x20 */
static const unsigned char  ngx_http_conductor_usage_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
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


#define ngx_http_conductor_usage_ws(c)                                        \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_http_conductor_usage_digit(c)  ((unsigned) ((c) - '0') < 10)

/* the name s at p, n bytes on, with its closing quote */
#define ngx_http_conductor_usage_at(p, n, s)                                  \
    ((n) > sizeof(s) - 1 && (p)[sizeof(s) - 1] == '"'                         \
     && memcmp(p, s, sizeof(s) - 1) == 0)


static const unsigned char *ngx_http_conductor_usage_next(
    const unsigned char **pos, const unsigned char *end, const char *name,
    size_t n);
static int ngx_http_conductor_usage_has_object(const unsigned char *p,
    size_t len);
static int ngx_http_conductor_usage_null_tail(const unsigned char *p,
    size_t len);
static json_t *ngx_http_conductor_usage_load(const unsigned char *p,
    size_t len, size_t flags);
static const unsigned char *ngx_http_conductor_usage_locate(
    const unsigned char *start, const unsigned char *close);
static int ngx_http_conductor_usage_rest(const unsigned char *p,
    const unsigned char *close);
static const unsigned char *ngx_http_conductor_usage_read(
    ngx_http_conductor_usage_slots_t *s, const unsigned char *p,
    const unsigned char *end, unsigned levels, int details);
static int ngx_http_conductor_usage_known(const unsigned char *p, size_t n);
static int ngx_http_conductor_usage_escaped(const unsigned char *k,
    size_t n);
static int ngx_http_conductor_usage_count(ngx_http_conductor_usage_slots_t *s,
    int k, int64_t *out);
static int ngx_http_conductor_usage_count2(ngx_http_conductor_usage_slots_t *s,
    int k1, int k2, int64_t *out);
static int ngx_http_conductor_usage_detail(ngx_http_conductor_usage_slots_t *s,
    int k1, int k2, int64_t *out);
static int ngx_http_conductor_usage_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage);
static int ngx_http_conductor_usage_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage);
static int ngx_http_conductor_usage_apply(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage);
static int ngx_http_conductor_usage_apply_text(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);
static void ngx_http_conductor_usage_derive(ngx_http_conductor_usage_t *u);
static int ngx_http_conductor_usage_choice(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);
static int ngx_http_conductor_usage_captures(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_scan_t *scan, unsigned want);
static unsigned ngx_http_conductor_usage_wanted(
    ngx_http_conductor_usage_t *u, const unsigned char *name, size_t len);
static int ngx_http_conductor_usage_is(const unsigned char *p, size_t len,
    const char *name);
static int ngx_http_conductor_usage_final(const unsigned char *p,
    size_t len);


void
ngx_http_conductor_usage_init(ngx_http_conductor_usage_t *u, int api)
{
    memset(u, 0, sizeof(ngx_http_conductor_usage_t));
    u->api = api;
}


int
ngx_http_conductor_usage_parse_body(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    int                            rc;
    unsigned char                  cap[NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX];
    ngx_http_conductor_sse_scan_t  scan;

    if (!ngx_http_conductor_usage_has_object(p, len)) {
        return 0;
    }

    /*
     * The scanner finds the top-level usage at a fraction of the cost of
     * a jansson tree of the whole body (long answers, embeddings).
     */

    ngx_http_conductor_sse_scan_init(&scan, cap, sizeof(cap));
    ngx_http_conductor_sse_scan_feed(&scan, p, len);

    rc = ngx_http_conductor_usage_captures(u, &scan,
                                           NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP);

    if (rc == 0) {
        rc = ngx_http_conductor_usage_choice(u, p, len);
    }

    return rc;
}


/*
 * A whole body at hand in one piece (the common answer): its usage is
 * read from its end, in a few instructions a byte of the usage member and
 * what follows it, whatever the length of the answer; the full scan only
 * when that cannot prove the member is the top-level usage.
 */

int
ngx_http_conductor_usage_parse_object(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    int  rc;

    rc = ngx_http_conductor_usage_parse_tail(u, p, len);

    if (rc >= 0) {
        return rc;
    }

    return ngx_http_conductor_usage_parse_full(u, p, len);
}


/* the span scanner validates the whole body and finds its usage member */

int
ngx_http_conductor_usage_parse_full(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    int                               rc;
    long                              i;
    ngx_http_conductor_json_object_t  obj;
    ngx_http_conductor_json_member_t  m[NGX_HTTP_CONDUCTOR_USAGE_MEMBERS];

    rc = ngx_http_conductor_json_scan_object(p, len, &obj, m,
                                             NGX_HTTP_CONDUCTOR_USAGE_MEMBERS);

    if (rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY) {
        return ngx_http_conductor_usage_parse_body(u, p, len);
    }

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK) {
        return 0;
    }

    i = ngx_http_conductor_json_find(m, obj.n, "usage");

    if (i >= 0 && m[i].type == NGX_HTTP_CONDUCTOR_JSON_OBJECT) {
        return ngx_http_conductor_usage_apply_text(u, m[i].value,
                                                   m[i].value_len);
    }

    return ngx_http_conductor_usage_choice(u, p, len);
}


/*
 * The usage of a whole body read from its end: the last "usage" key
 * before the final '}', an object value read in one pass, then only the
 * rest of the top-level object up to that '}'.  Returns -1 when that does
 * not prove the member is the one a full scan finds, u untouched.
 *
 * Why it holds for a valid body: an unescaped quote is always a string
 * delimiter, so an unescaped "usage" followed by a colon is a key; when
 * what follows its value parses as members closed by the body's last
 * byte, the key is a member of the top-level object; and none of those
 * later keys decodes to "usage", so it is the last one, as json_find()
 * takes.  What comes before the key is not read: for a body that is not
 * valid JSON (or nests deeper than MAX_DEPTH before it), the usage may be
 * taken where the full scan takes none.
 */

int
ngx_http_conductor_usage_parse_tail(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    const unsigned char               *start, *close, *v;
    ngx_http_conductor_usage_slots_t   s;

    start = p;
    close = p + len;

    while (start < close && ngx_http_conductor_usage_ws(*start)) {
        start++;
    }

    while (close > start && ngx_http_conductor_usage_ws(close[-1])) {
        close--;
    }

    if (close - start < 2 || *start != '{' || close[-1] != '}') {
        return -1;
    }

    close--;

    v = ngx_http_conductor_usage_locate(start, close);

    if (v == NULL) {
        return -1;
    }

    /* the usage object is the second level of the body */

    p = ngx_http_conductor_usage_read(&s, v, close,
                                      NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH - 1, 1);

    if (p == NULL || !ngx_http_conductor_usage_rest(p, close)) {
        return -1;
    }

    /*
     * A usage object without counts leaves u as it is: the full scan
     * decides then, as it would for a body of more members than it has
     * room for (where an earlier usage object is taken).
     */

    if (!ngx_http_conductor_usage_apply(u, &s)) {
        return -1;
    }

    return 1;
}


int
ngx_http_conductor_usage_parse_line(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_line_t *line)
{
    int                            rc;
    size_t                         name_len;
    unsigned                       want;
    unsigned char                  cap[NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX];
    const unsigned char           *name;
    ngx_http_conductor_sse_scan_t  scan;

    if (line->flags & NGX_HTTP_CONDUCTOR_SSE_USAGE_ONLY) {

        /* a usage object the over-long line fallback captured */

        if (line->flags != ngx_http_conductor_usage_wanted(u,
                                               line->event, line->event_len))
        {
            return 0;
        }

        if (!ngx_http_conductor_usage_apply_text(u, line->data, line->len)) {
            return 0;
        }

        if (line->flags == NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP) {
            u->delta = 1;
        }

        return 1;
    }

    if (!(line->flags & NGX_HTTP_CONDUCTOR_SSE_DATA)) {
        return 0;
    }

    /* the event name, when there is one, rules a line out before parsing */

    if (line->event_len
        && ngx_http_conductor_usage_wanted(u, line->event, line->event_len)
           == 0)
    {
        return 0;
    }

    if (ngx_http_conductor_usage_null_tail(line->data, line->len)
        || !ngx_http_conductor_usage_has_object(line->data, line->len))
    {
        return 0;
    }

    /*
     * The same scanner as the over-long line fallback, so both paths agree;
     * jansson then parses the small usage object only, not a whole
     * response.completed of hundreds of kilobytes.
     */

    ngx_http_conductor_sse_scan_init(&scan, cap, sizeof(cap));
    ngx_http_conductor_sse_scan_feed(&scan, line->data, line->len);

    name = line->event;
    name_len = line->event_len;

    if (name_len == 0) {
        name = ngx_http_conductor_sse_scan_type(&scan, &name_len);
    }

    want = ngx_http_conductor_usage_wanted(u, name, name_len);

    rc = want ? ngx_http_conductor_usage_captures(u, &scan, want) : 0;

    if (rc == 0) {
        rc = ngx_http_conductor_usage_choice(u, line->data, line->len);
    }

    return rc;
}


void
ngx_http_conductor_usage_sse_handler(void *data,
    const ngx_http_conductor_sse_line_t *line)
{
    ngx_http_conductor_usage_t *u = data;

    (void) ngx_http_conductor_usage_parse_line(u, line);

    if (!u->terminal && ngx_http_conductor_usage_terminal(line)) {
        u->terminal = 1;
    }
}


int
ngx_http_conductor_usage_terminal(const ngx_http_conductor_sse_line_t *line)
{
    size_t                len;
    const unsigned char  *p, *end, *name;

    if (line->event_len) {
        name = line->event;
        len = line->event_len;

        return ngx_http_conductor_usage_is(name, len, "message_stop")
               || ngx_http_conductor_usage_is(name, len, "error")
               || ngx_http_conductor_usage_final(name, len);
    }

    if (!(line->flags & NGX_HTTP_CONDUCTOR_SSE_DATA)) {
        return 0;
    }

    p = line->data;
    end = p + line->len;

    if (ngx_http_conductor_usage_is(p, line->len, "[DONE]")) {
        return 1;
    }

    /* {"type":"NAME" or {"error": as the first member, any spacing */

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == end || *p++ != '{') {
        return 0;
    }

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t) (end - p) >= 7 && memcmp(p, "\"error\"", 7) == 0) {
        return 1;
    }

    if ((size_t) (end - p) < 6 || memcmp(p, "\"type\"", 6) != 0) {
        return 0;
    }

    for (p += 6; p < end && (*p == ' ' || *p == '\t' || *p == ':'); p++) {
        /* void */
    }

    if (p == end || *p++ != '"') {
        return 0;
    }

    name = p;
    p = memchr(p, '"', end - p);

    if (p == NULL) {
        return 0;
    }

    len = p - name;

    return ngx_http_conductor_usage_is(name, len, "message_stop")
           || ngx_http_conductor_usage_is(name, len, "error")
           || ngx_http_conductor_usage_final(name, len);
}


int
ngx_http_conductor_usage_parse_scan(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_scan_t *scan)
{
    return ngx_http_conductor_usage_captures(u, scan,
                                            NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP);
}


int
ngx_http_conductor_usage_only_chunk(const unsigned char *p, size_t len)
{
    int                                rc;
    size_t                             i, nchoices, nusage;
    const unsigned char               *pos, *end, *v;
    ngx_http_conductor_json_object_t   obj;
    ngx_http_conductor_json_member_t  *m;
    ngx_http_conductor_json_member_t   members[
                                           NGX_HTTP_CONDUCTOR_USAGE_MEMBERS];

    end = p + len;
    pos = p;

    for ( ;; ) {
        v = ngx_http_conductor_usage_next(&pos, end, "choices", 7);
        if (v == NULL) {
            return 0;
        }

        if (*v != '[') {
            continue;
        }

        for (v++; v < end; v++) {
            if (*v != ' ' && *v != '\t' && *v != '\r' && *v != '\n') {
                break;
            }
        }

        if (v < end && *v == ']') {
            break;
        }
    }

    if (!ngx_http_conductor_usage_has_object(p, len)) {
        return 0;
    }

    /*
     * A candidate: the span scanner confirms the structure (and validates
     * the whole chunk); duplicate keys could hide choices, so they say no.
     */

    if (ngx_http_conductor_json_scan_object(p, len, &obj, members,
                                            NGX_HTTP_CONDUCTOR_USAGE_MEMBERS)
        != NGX_HTTP_CONDUCTOR_JSON_OK)
    {
        return 0;
    }

    nchoices = 0;
    nusage = 0;
    rc = 1;

    for (i = 0; i < obj.n; i++) {
        m = &members[i];

        if (ngx_http_conductor_json_key_is(m, "choices")) {
            nchoices++;

            if (m->type != NGX_HTTP_CONDUCTOR_JSON_ARRAY) {
                rc = 0;
            }

            /* "[", blanks, "]" */
            for (v = m->value + 1; v < m->value + m->value_len - 1; v++) {
                if (*v != ' ' && *v != '\t' && *v != '\r' && *v != '\n') {
                    rc = 0;
                }
            }

        } else if (ngx_http_conductor_json_key_is(m, "usage")) {
            nusage++;

            if (m->type != NGX_HTTP_CONDUCTOR_JSON_OBJECT) {
                rc = 0;
            }
        }
    }

    return rc && nchoices == 1 && nusage == 1;
}


/*
 * Byte check before any parse: the value after the next "name" key
 * (a quoted name, blanks, a colon, blanks) from *pos on, NULL when there
 * is none.  A quoted name inside a string has its quotes escaped, so it
 * does not match; a false match only costs a parse.
 */

static const unsigned char *
ngx_http_conductor_usage_next(const unsigned char **pos,
    const unsigned char *end, const char *name, size_t n)
{
    unsigned char         needle[NGX_HTTP_CONDUCTOR_USAGE_KEY_MAX + 2];
    const unsigned char  *p, *q;

    if (n > NGX_HTTP_CONDUCTOR_USAGE_KEY_MAX) {
        *pos = end;
        return NULL;
    }

    /* the quoted key at once: most lines have none, and memmem skips a
     * line much faster than stopping at each of its quotes */
    needle[0] = '"';
    memcpy(needle + 1, name, n);
    needle[n + 1] = '"';

    p = *pos;

    while (p < end) {
        q = memmem(p, end - p, needle, n + 2);
        if (q == NULL) {
            break;
        }

        p = q + n + 2;

        for (q = p; q < end; q++) {
            if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
                break;
            }
        }

        if (q == end || *q != ':') {
            continue;
        }

        for (q++; q < end; q++) {
            if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
                break;
            }
        }

        if (q == end) {
            break;
        }

        *pos = q;
        return q;
    }

    *pos = end;

    return NULL;
}


/*
 * Once include_usage is asked for, every chunk of an OpenAI stream ends in
 * "usage":null}: seen from the end, such a line is ruled out in a few
 * bytes instead of a search through all of it.  (A provider that put a
 * usage object inside choices as well would have it estimated instead.)
 */

static int
ngx_http_conductor_usage_null_tail(const unsigned char *p, size_t len)
{
    static const char  tail[] = "\"usage\":null}";

    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'
                   || p[len - 1] == '\r' || p[len - 1] == '\n'))
    {
        len--;
    }

    return len >= sizeof(tail) - 1
           && memcmp(p + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1)
              == 0;
}


/* a "usage" member with an object value: skips "usage": null chunks */

static int
ngx_http_conductor_usage_has_object(const unsigned char *p, size_t len)
{
    const unsigned char  *pos, *end, *v;

    pos = p;
    end = p + len;

    while ((v = ngx_http_conductor_usage_next(&pos, end, "usage", 5))) {
        if (*v == '{') {
            return 1;
        }
    }

    return 0;
}


static json_t *
ngx_http_conductor_usage_load(const unsigned char *p, size_t len,
    size_t flags)
{
    json_t        *root;
    json_error_t   err;

    root = json_loadb((const char *) p, len, flags, &err);

    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }

    return root;
}


/*
 * The '{' of the value of the last "usage" key between start (the body's
 * '{') and close (its '}'); NULL when there is none, or when the value of
 * the last one is not an object (that is the full scan's case).
 */

static const unsigned char *
ngx_http_conductor_usage_locate(const unsigned char *start,
    const unsigned char *close)
{
    size_t                n;
    ptrdiff_t             off;
    const unsigned char  *k, *b;

    /*
     * k is the opening quote of a 7-byte window, moved left by the byte
     * at k (Horspool, mirrored): a byte or so of work per 6 of the body
     */

    for (off = close - start - 7; off > 0;
         off -= ngx_http_conductor_usage_shift[start[off]])
    {
        k = start + off;

        if (*k != '"' || memcmp(k + 1, "usage\"", 6) != 0) {
            continue;
        }

        /* an odd run of backslashes escapes the quote: inside a string */

        n = 0;

        for (b = k - 1; *b == '\\'; b--) {
            n++;
        }

        if (n & 1) {
            continue;
        }

        for (b = k + 7; b < close && ngx_http_conductor_usage_ws(*b); b++) {
            /* void */
        }

        if (b == close || *b != ':') {
            continue;
        }

        for (b++; b < close && ngx_http_conductor_usage_ws(*b); b++) {
            /* void */
        }

        return (b < close && *b == '{') ? b : NULL;
    }

    return NULL;
}


/*
 * p is just after the usage value: 1 when what is left before close is
 * only the top-level object's other members, none of them "usage".
 */

static int
ngx_http_conductor_usage_rest(const unsigned char *p,
    const unsigned char *close)
{
    const unsigned char               *key;
    ngx_http_conductor_json_member_t   m;

    for ( ;; ) {
        while (p < close && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        if (p == close) {
            return 1;
        }

        if (*p++ != ',') {
            return 0;
        }

        while (p < close && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        if (p == close || *p != '"') {
            return 0;
        }

        key = p;

        p = ngx_http_conductor_json_skip_value(p, close, 0);
        if (p == NULL) {
            return 0;
        }

        /* "us\u0061ge" too: a later usage is the full scan's to find */

        m.key = key + 1;
        m.key_len = (size_t) (p - key) - 2;
        m.key_escaped = (memchr(m.key, '\\', m.key_len) != NULL);

        if (ngx_http_conductor_json_key_is(&m, "usage")) {
            return 0;
        }

        while (p < close && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        if (p == close || *p++ != ':') {
            return 0;
        }

        while (p < close && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        /* a top-level member's value is the second level */

        p = ngx_http_conductor_json_skip_value(p, close,
                                       NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH - 1);
        if (p == NULL) {
            return 0;
        }
    }
}


/*
 * Reads the object whose '{' is at p, validated as scan_object() does
 * with levels containers open at most (the object itself included), into
 * s.  Returns the byte after its '}', or NULL when it is not valid JSON
 * before end.  With details, an object value of a *_details name is read
 * on the way too, and its count (cached or reasoning tokens) kept as that
 * member's num.
 */

static const unsigned char *
ngx_http_conductor_usage_read(ngx_http_conductor_usage_slots_t *s,
    const unsigned char *p, const unsigned char *end, unsigned levels,
    int details)
{
    int                                k;
    size_t                             n;
    int64_t                            num;
    const unsigned char               *key, *v;
    ngx_http_conductor_usage_slots_t   d;

    memset(s->value, 0, sizeof(s->value));

    p++;

    while (p < end && ngx_http_conductor_usage_ws(*p)) {
        p++;
    }

    if (p < end && *p == '}') {
        return p + 1;
    }

    for (n = 0; /* void */; n++) {

        if (p == end || *p != '"') {
            return NULL;
        }

        /* a known name needs no scan: it holds no quote nor backslash */

        key = p++;
        k = ngx_http_conductor_usage_known(p, end - p);

        if (k >= 0) {
            p += ngx_http_conductor_usage_names[k].len + 1;

        } else {
            while (p < end && ngx_http_conductor_usage_plain[*p]) {
                p++;
            }

            if (p < end && *p == '"') {
                p++;

            } else {
                /* escapes, or not a string */

                p = ngx_http_conductor_json_skip_value(key, end, 0);
                if (p == NULL) {
                    return NULL;
                }

                k = ngx_http_conductor_usage_escaped(key + 1,
                                                     (size_t) (p - key) - 2);
            }
        }

        /* members past the span scan's room were never looked up */

        if (n >= NGX_HTTP_CONDUCTOR_USAGE_MEMBERS) {
            k = -1;
        }

        while (p < end && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        if (p == end || *p++ != ':') {
            return NULL;
        }

        while (p < end && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        v = p;
        num = -1;

        /*
         * Counts are read on the way, exact up to USAGE_MAX (a larger one
         * is ignored anyway); "01", fractions and exponents go to the
         * scanner, which stops before what is not JSON.
         */

        if (p < end && ngx_http_conductor_usage_digit(*p)) {
            num = *p++ - '0';

            while (num != 0 && p < end && ngx_http_conductor_usage_digit(*p)) {
                if (num <= NGX_HTTP_CONDUCTOR_USAGE_MAX) {
                    num = num * 10 + (*p - '0');
                }

                p++;
            }

            if (p < end && (*p == '.' || *p == 'e' || *p == 'E'
                            || ngx_http_conductor_usage_digit(*p)))
            {
                num = -1;
                p = ngx_http_conductor_json_skip_value(v, end, levels - 1);
            }

        } else if (details && p < end && *p == '{'
                   && k >= NGX_HTTP_CONDUCTOR_USAGE_PROMPT_DETAILS
                   && k <= NGX_HTTP_CONDUCTOR_USAGE_OUTPUT_DETAILS)
        {
            /* once, not skipped now and read again for its count */

            p = ngx_http_conductor_usage_read(&d, p, end, levels - 1, 0);

            if (p != NULL
                && !ngx_http_conductor_usage_count(&d,
                        (k <= NGX_HTTP_CONDUCTOR_USAGE_INPUT_DETAILS)
                        ? NGX_HTTP_CONDUCTOR_USAGE_CACHED
                        : NGX_HTTP_CONDUCTOR_USAGE_REASONING, &num))
            {
                num = -1;
            }

        } else {
            p = ngx_http_conductor_json_skip_value(v, end, levels - 1);
        }

        if (p == NULL) {
            return NULL;
        }

        if (k >= 0) {
            s->value[k] = v;
            s->len[k] = (size_t) (p - v);
            s->num[k] = num;
        }

        while (p < end && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }

        if (p == end) {
            return NULL;
        }

        if (*p == '}') {
            return p + 1;
        }

        if (*p++ != ',') {
            return NULL;
        }

        while (p < end && ngx_http_conductor_usage_ws(*p)) {
            p++;
        }
    }
}


/*
 * The ngx_http_conductor_usage_key_e of the name at p (after the opening
 * quote, n bytes on) when its closing quote follows it, else -1.
 */

static int
ngx_http_conductor_usage_known(const unsigned char *p, size_t n)
{
    if (n == 0) {
        return -1;
    }

    switch (p[0]) {

    case 'p':
        if (ngx_http_conductor_usage_at(p, n, "prompt_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_PROMPT;
        }

        if (ngx_http_conductor_usage_at(p, n, "prompt_tokens_details")) {
            return NGX_HTTP_CONDUCTOR_USAGE_PROMPT_DETAILS;
        }

        break;

    case 'c':
        if (ngx_http_conductor_usage_at(p, n, "completion_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_COMPLETION;
        }

        if (ngx_http_conductor_usage_at(p, n, "completion_tokens_details")) {
            return NGX_HTTP_CONDUCTOR_USAGE_COMPLETION_DETAILS;
        }

        if (ngx_http_conductor_usage_at(p, n, "cached_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_CACHED;
        }

        if (ngx_http_conductor_usage_at(p, n, "cache_read_input_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_CACHE_READ;
        }

        if (ngx_http_conductor_usage_at(p, n, "cache_creation_input_tokens"))
        {
            return NGX_HTTP_CONDUCTOR_USAGE_CACHE_CREATION;
        }

        break;

    case 't':
        if (ngx_http_conductor_usage_at(p, n, "total_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_TOTAL;
        }

        break;

    case 'i':
        if (ngx_http_conductor_usage_at(p, n, "input_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_INPUT;
        }

        if (ngx_http_conductor_usage_at(p, n, "input_tokens_details")) {
            return NGX_HTTP_CONDUCTOR_USAGE_INPUT_DETAILS;
        }

        break;

    case 'o':
        if (ngx_http_conductor_usage_at(p, n, "output_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_OUTPUT;
        }

        if (ngx_http_conductor_usage_at(p, n, "output_tokens_details")) {
            return NGX_HTTP_CONDUCTOR_USAGE_OUTPUT_DETAILS;
        }

        break;

    case 'r':
        if (ngx_http_conductor_usage_at(p, n, "reasoning_tokens")) {
            return NGX_HTTP_CONDUCTOR_USAGE_REASONING;
        }

        break;
    }

    return -1;
}


/* a key with escapes, as "input_t\\u006fkens": decoded, as json_find() */

static int
ngx_http_conductor_usage_escaped(const unsigned char *k, size_t n)
{
    int                               i;
    ngx_http_conductor_json_member_t  m;

    m.key = k;
    m.key_len = n;
    m.key_escaped = 1;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_USAGE_NKEYS; i++) {
        if (ngx_http_conductor_json_key_is(&m,
                                           ngx_http_conductor_usage_names[i]
                                           .name))
        {
            return i;
        }
    }

    return -1;
}


static int
ngx_http_conductor_usage_count(ngx_http_conductor_usage_slots_t *s, int k,
    int64_t *out)
{
    int64_t  n;

    if (s->value[k] == NULL) {
        return 0;
    }

    /* json_uint() takes digits only: strings, literals, -1, 1.5 fail */

    n = s->num[k];

    if (n < 0
        && ngx_http_conductor_json_uint(s->value[k], s->len[k], &n) != 0)
    {
        return 0;
    }

    if (n > NGX_HTTP_CONDUCTOR_USAGE_MAX) {
        return 0;
    }

    *out = n;

    return 1;
}


/* the first name is the API's own, the second what look-alikes send */

static int
ngx_http_conductor_usage_count2(ngx_http_conductor_usage_slots_t *s,
    int k1, int k2, int64_t *out)
{
    return ngx_http_conductor_usage_count(s, k1, out)
           || ngx_http_conductor_usage_count(s, k2, out);
}


/* the count the read found in the last member of the name, an object */

static int
ngx_http_conductor_usage_detail(ngx_http_conductor_usage_slots_t *s,
    int k1, int k2, int64_t *out)
{
    int  i, k[2];

    k[0] = k1;
    k[1] = k2;

    for (i = 0; i < 2; i++) {
        if (s->value[k[i]] != NULL && *s->value[k[i]] == '{'
            && s->num[k[i]] >= 0)
        {
            *out = s->num[k[i]];
            return 1;
        }
    }

    return 0;
}


/* OpenAI: the object replaces all earlier usage (last one wins) */

static int
ngx_http_conductor_usage_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage)
{
    int                         r;
    ngx_http_conductor_usage_t  n;

    ngx_http_conductor_usage_init(&n, u->api);

    r = (u->api == NGX_HTTP_CONDUCTOR_EP_RESPONSES);

    n.has_prompt = ngx_http_conductor_usage_count2(usage,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_INPUT
                         : NGX_HTTP_CONDUCTOR_USAGE_PROMPT,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_PROMPT
                         : NGX_HTTP_CONDUCTOR_USAGE_INPUT,
                       &n.prompt);

    n.has_completion = ngx_http_conductor_usage_count2(usage,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_OUTPUT
                         : NGX_HTTP_CONDUCTOR_USAGE_COMPLETION,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_COMPLETION
                         : NGX_HTTP_CONDUCTOR_USAGE_OUTPUT,
                       &n.completion);

    n.has_total = ngx_http_conductor_usage_count(usage,
                      NGX_HTTP_CONDUCTOR_USAGE_TOTAL, &n.total);

    if (!n.has_prompt && !n.has_completion && !n.has_total) {
        return 0;
    }

    n.has_cached = ngx_http_conductor_usage_detail(usage,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_INPUT_DETAILS
                         : NGX_HTTP_CONDUCTOR_USAGE_PROMPT_DETAILS,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_PROMPT_DETAILS
                         : NGX_HTTP_CONDUCTOR_USAGE_INPUT_DETAILS,
                       &n.cached);

    n.has_reasoning = ngx_http_conductor_usage_detail(usage,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_OUTPUT_DETAILS
                         : NGX_HTTP_CONDUCTOR_USAGE_COMPLETION_DETAILS,
                       r ? NGX_HTTP_CONDUCTOR_USAGE_COMPLETION_DETAILS
                         : NGX_HTTP_CONDUCTOR_USAGE_OUTPUT_DETAILS,
                       &n.reasoning);

    n.found = 1;
    ngx_http_conductor_usage_derive(&n);

    *u = n;

    return 1;
}


/* Anthropic: each field's latest value wins, absent and null keep it */

static int
ngx_http_conductor_usage_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage)
{
    int      got;
    int64_t  v;

    got = 0;

    if (ngx_http_conductor_usage_count(usage, NGX_HTTP_CONDUCTOR_USAGE_INPUT,
                                       &v))
    {
        u->input = v;
        u->has_input = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage, NGX_HTTP_CONDUCTOR_USAGE_OUTPUT,
                                       &v))
    {
        u->completion = v;
        u->has_completion = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage,
                                       NGX_HTTP_CONDUCTOR_USAGE_CACHE_READ,
                                       &v))
    {
        u->cached = v;
        u->has_cached = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage,
                                       NGX_HTTP_CONDUCTOR_USAGE_CACHE_CREATION,
                                       &v))
    {
        u->cache_creation = v;
        u->has_cache_creation = 1;
        got = 1;
    }

    if (!got) {
        return 0;
    }

    u->found = 1;
    ngx_http_conductor_usage_derive(u);

    return 1;
}


static int
ngx_http_conductor_usage_apply(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_slots_t *usage)
{
    if (u->api == NGX_HTTP_CONDUCTOR_EP_MESSAGES) {
        return ngx_http_conductor_usage_anthropic(u, usage);
    }

    return ngx_http_conductor_usage_openai(u, usage);
}


/* a usage object's text, whitespace around it allowed */

static int
ngx_http_conductor_usage_apply_text(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    const unsigned char               *end;
    ngx_http_conductor_usage_slots_t   usage;

    end = p + len;

    while (p < end && ngx_http_conductor_usage_ws(*p)) {
        p++;
    }

    if (p == end || *p != '{') {
        return 0;
    }

    p = ngx_http_conductor_usage_read(&usage, p, end,
                                      NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH, 1);
    if (p == NULL) {
        return 0;
    }

    while (p < end && ngx_http_conductor_usage_ws(*p)) {
        p++;
    }

    if (p != end) {
        return 0;
    }

    return ngx_http_conductor_usage_apply(u, &usage);
}


static void
ngx_http_conductor_usage_derive(ngx_http_conductor_usage_t *u)
{
    /* values are capped at USAGE_MAX, so these sums cannot overflow */

    if (u->api == NGX_HTTP_CONDUCTOR_EP_MESSAGES && u->has_input) {
        u->prompt = u->input + (u->has_cached ? u->cached : 0)
                    + (u->has_cache_creation ? u->cache_creation : 0);
        u->has_prompt = 1;
    }

    if (!u->has_total) {
        u->total = (u->has_prompt ? u->prompt : 0)
                   + (u->has_completion ? u->completion : 0);
    }
}


/* Moonshot puts stream usage in choices[0]: rare, so a full parse */

static int
ngx_http_conductor_usage_choice(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    int      rc;
    char    *text;
    json_t  *root, *usage;

    if (u->api != NGX_HTTP_CONDUCTOR_EP_CHAT
        && u->api != NGX_HTTP_CONDUCTOR_EP_COMPLETIONS)
    {
        return 0;
    }

    root = ngx_http_conductor_usage_load(p, len, 0);
    if (root == NULL) {
        return 0;
    }

    usage = json_object_get(json_array_get(json_object_get(root, "choices"),
                                           0),
                            "usage");

    rc = 0;

    if (json_is_object(usage)) {
        text = json_dumps(usage, JSON_COMPACT);

        if (text) {
            rc = ngx_http_conductor_usage_apply_text(u,
                                                     (unsigned char *) text,
                                                     strlen(text));
            free(text);
        }
    }

    json_decref(root);

    return rc;
}


/*
 * Every capture of the wanted place, in document order, as the fallback
 * hands them over: OpenAI's last valid one wins, Anthropic's merge.
 */

static int
ngx_http_conductor_usage_captures(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_scan_t *scan, unsigned want)
{
    int                                      rc;
    size_t                                   i;
    const ngx_http_conductor_sse_capture_t  *c;

    rc = 0;

    for (i = 0; i < scan->ncaptures; i++) {
        c = &scan->capture[i];

        if (c->flags == want
            && ngx_http_conductor_usage_apply_text(u, scan->cap + c->off,
                                                   c->len))
        {
            rc = 1;
        }
    }

    if (rc && want == NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP) {
        /* Anthropic: message_delta's counts are the final ones */
        u->delta = 1;
    }

    return rc;
}


/*
 * Where the usage of an event of this name is (a USAGE_* flag), 0 when
 * the event holds none.  A nameless event of the OpenAI chat kinds has
 * it at the top level.
 */

static unsigned
ngx_http_conductor_usage_wanted(ngx_http_conductor_usage_t *u,
    const unsigned char *name, size_t len)
{
    switch (u->api) {

    case NGX_HTTP_CONDUCTOR_EP_RESPONSES:
        return ngx_http_conductor_usage_final(name, len)
               ? NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE : 0;

    case NGX_HTTP_CONDUCTOR_EP_MESSAGES:
        if (ngx_http_conductor_usage_is(name, len, "message_start")) {
            return NGX_HTTP_CONDUCTOR_SSE_USAGE_MESSAGE;
        }

        if (ngx_http_conductor_usage_is(name, len, "message_delta")) {
            return NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP;
        }

        return 0;

    default:
        return NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP;
    }
}


static int
ngx_http_conductor_usage_is(const unsigned char *p, size_t len,
    const char *name)
{
    size_t  n;

    n = strlen(name);

    return len == n && memcmp(p, name, n) == 0;
}


/* the Responses events whose response object carries the final usage */

static int
ngx_http_conductor_usage_final(const unsigned char *p, size_t len)
{
    return ngx_http_conductor_usage_is(p, len, "response.completed")
           || ngx_http_conductor_usage_is(p, len, "response.incomplete")
           || ngx_http_conductor_usage_is(p, len, "response.failed");
}
