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


/*
 * A usage object read with the span scanner: no allocation, which on the
 * hot path costs a tenth of a jansson tree of the same few bytes.
 */
typedef struct {
    ngx_http_conductor_json_member_t  m[NGX_HTTP_CONDUCTOR_USAGE_MEMBERS];
    size_t                            n;
} ngx_http_conductor_usage_view_t;


static const unsigned char *ngx_http_conductor_usage_next(
    const unsigned char **pos, const unsigned char *end, const char *name,
    size_t n);
static int ngx_http_conductor_usage_has_object(const unsigned char *p,
    size_t len);
static int ngx_http_conductor_usage_null_tail(const unsigned char *p,
    size_t len);
static json_t *ngx_http_conductor_usage_load(const unsigned char *p,
    size_t len, size_t flags);
static int ngx_http_conductor_usage_view(ngx_http_conductor_usage_view_t *v,
    const unsigned char *p, size_t len);
static int ngx_http_conductor_usage_count(ngx_http_conductor_usage_view_t *v,
    const char *name, int64_t *out);
static int ngx_http_conductor_usage_count2(ngx_http_conductor_usage_view_t *v,
    const char *name1, const char *name2, int64_t *out);
static int ngx_http_conductor_usage_detail(ngx_http_conductor_usage_view_t *v,
    const char *name1, const char *name2, const char *field, int64_t *out);
static int ngx_http_conductor_usage_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_view_t *usage);
static int ngx_http_conductor_usage_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_view_t *usage);
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
 * A whole body at hand in one piece (the common small answer): the span
 * scanner finds the top-level usage at a few instructions a byte.
 */

int
ngx_http_conductor_usage_parse_object(ngx_http_conductor_usage_t *u,
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


static int
ngx_http_conductor_usage_view(ngx_http_conductor_usage_view_t *v,
    const unsigned char *p, size_t len)
{
    int                               rc;
    ngx_http_conductor_json_object_t  obj;

    rc = ngx_http_conductor_json_scan_object(p, len, &obj, v->m,
                                             NGX_HTTP_CONDUCTOR_USAGE_MEMBERS);

    /* an object with more members still has its first ones read */
    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK
        && rc != NGX_HTTP_CONDUCTOR_JSON_TOO_MANY)
    {
        return 0;
    }

    v->n = obj.n;

    return 1;
}


static int
ngx_http_conductor_usage_count(ngx_http_conductor_usage_view_t *v,
    const char *name, int64_t *out)
{
    long     i;
    int64_t  n;

    i = ngx_http_conductor_json_find(v->m, v->n, name);

    if (i < 0 || v->m[i].type != NGX_HTTP_CONDUCTOR_JSON_NUMBER
        || ngx_http_conductor_json_uint(v->m[i].value, v->m[i].value_len, &n)
           != 0
        || n > NGX_HTTP_CONDUCTOR_USAGE_MAX)
    {
        return 0;
    }

    *out = n;

    return 1;
}


/* the first name is the API's own, the second what look-alikes send */

static int
ngx_http_conductor_usage_count2(ngx_http_conductor_usage_view_t *v,
    const char *name1, const char *name2, int64_t *out)
{
    return ngx_http_conductor_usage_count(v, name1, out)
           || ngx_http_conductor_usage_count(v, name2, out);
}


static int
ngx_http_conductor_usage_detail(ngx_http_conductor_usage_view_t *v,
    const char *name1, const char *name2, const char *field, int64_t *out)
{
    long                             i;
    const char                      *names[2];
    size_t                           k;
    ngx_http_conductor_usage_view_t  d;

    names[0] = name1;
    names[1] = name2;

    for (k = 0; k < 2; k++) {
        i = ngx_http_conductor_json_find(v->m, v->n, names[k]);

        if (i >= 0 && v->m[i].type == NGX_HTTP_CONDUCTOR_JSON_OBJECT
            && ngx_http_conductor_usage_view(&d, v->m[i].value,
                                             v->m[i].value_len)
            && ngx_http_conductor_usage_count(&d, field, out))
        {
            return 1;
        }
    }

    return 0;
}


/* OpenAI: the object replaces all earlier usage (last one wins) */

static int
ngx_http_conductor_usage_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_view_t *usage)
{
    int                         r;
    ngx_http_conductor_usage_t  n;

    ngx_http_conductor_usage_init(&n, u->api);

    r = (u->api == NGX_HTTP_CONDUCTOR_EP_RESPONSES);

    n.has_prompt = ngx_http_conductor_usage_count2(usage,
                       r ? "input_tokens" : "prompt_tokens",
                       r ? "prompt_tokens" : "input_tokens", &n.prompt);

    n.has_completion = ngx_http_conductor_usage_count2(usage,
                       r ? "output_tokens" : "completion_tokens",
                       r ? "completion_tokens" : "output_tokens",
                       &n.completion);

    n.has_total = ngx_http_conductor_usage_count(usage, "total_tokens",
                                                 &n.total);

    if (!n.has_prompt && !n.has_completion && !n.has_total) {
        return 0;
    }

    n.has_cached = ngx_http_conductor_usage_detail(usage,
                       r ? "input_tokens_details" : "prompt_tokens_details",
                       r ? "prompt_tokens_details" : "input_tokens_details",
                       "cached_tokens", &n.cached);

    n.has_reasoning = ngx_http_conductor_usage_detail(usage,
                  r ? "output_tokens_details" : "completion_tokens_details",
                  r ? "completion_tokens_details" : "output_tokens_details",
                  "reasoning_tokens", &n.reasoning);

    n.found = 1;
    ngx_http_conductor_usage_derive(&n);

    *u = n;

    return 1;
}


/* Anthropic: each field's latest value wins, absent and null keep it */

static int
ngx_http_conductor_usage_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_usage_view_t *usage)
{
    int      got;
    int64_t  v;

    got = 0;

    if (ngx_http_conductor_usage_count(usage, "input_tokens", &v)) {
        u->input = v;
        u->has_input = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage, "output_tokens", &v)) {
        u->completion = v;
        u->has_completion = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage, "cache_read_input_tokens", &v)) {
        u->cached = v;
        u->has_cached = 1;
        got = 1;
    }

    if (ngx_http_conductor_usage_count(usage, "cache_creation_input_tokens",
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
ngx_http_conductor_usage_apply_text(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    ngx_http_conductor_usage_view_t  usage;

    if (!ngx_http_conductor_usage_view(&usage, p, len)) {
        return 0;
    }

    if (u->api == NGX_HTTP_CONDUCTOR_EP_MESSAGES) {
        return ngx_http_conductor_usage_anthropic(u, &usage);
    }

    return ngx_http_conductor_usage_openai(u, &usage);
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
