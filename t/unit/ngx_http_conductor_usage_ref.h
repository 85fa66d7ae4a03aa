/*
 * The usage reading of a whole body as it was before it read from the end
 * and in one pass (commit 3fc171e): a span scan of the body, a look-up per
 * name in a span scan of the usage object.  Kept for the tests, which
 * compare ngx_http_conductor_usage_parse_object() and the usage object
 * reader with it.  A body of more members than the scan has room for goes
 * to ngx_http_conductor_usage_parse_body(), as it did.
 */

#ifndef _NGX_HTTP_CONDUCTOR_USAGE_REF_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_USAGE_REF_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_conductor_json.h"
#include "ngx_http_conductor_usage.h"


#define NGX_HTTP_CONDUCTOR_REF_MEMBERS  32


typedef struct {
    ngx_http_conductor_json_member_t  m[NGX_HTTP_CONDUCTOR_REF_MEMBERS];
    size_t                            n;
} ngx_http_conductor_ref_view_t;


static int ngx_http_conductor_ref_view(ngx_http_conductor_ref_view_t *v,
    const unsigned char *p, size_t len);
static int ngx_http_conductor_ref_count(ngx_http_conductor_ref_view_t *v,
    const char *name, int64_t *out);
static int ngx_http_conductor_ref_count2(ngx_http_conductor_ref_view_t *v,
    const char *name1, const char *name2, int64_t *out);
static int ngx_http_conductor_ref_detail(ngx_http_conductor_ref_view_t *v,
    const char *name1, const char *name2, const char *field, int64_t *out);
static int ngx_http_conductor_ref_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_ref_view_t *usage);
static int ngx_http_conductor_ref_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_ref_view_t *usage);
static int ngx_http_conductor_ref_apply_text(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);
static void ngx_http_conductor_ref_derive(ngx_http_conductor_usage_t *u);
static int ngx_http_conductor_ref_choice(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);
static json_t *ngx_http_conductor_ref_load(const unsigned char *p,
    size_t len, size_t flags);
static int ngx_http_conductor_ref_parse_object(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);


static int
ngx_http_conductor_ref_view(ngx_http_conductor_ref_view_t *v,
    const unsigned char *p, size_t len)
{
    int                               rc;
    ngx_http_conductor_json_object_t  obj;

    rc = ngx_http_conductor_json_scan_object(p, len, &obj, v->m,
                                             NGX_HTTP_CONDUCTOR_REF_MEMBERS);

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
ngx_http_conductor_ref_count(ngx_http_conductor_ref_view_t *v,
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


static int
ngx_http_conductor_ref_count2(ngx_http_conductor_ref_view_t *v,
    const char *name1, const char *name2, int64_t *out)
{
    return ngx_http_conductor_ref_count(v, name1, out)
           || ngx_http_conductor_ref_count(v, name2, out);
}


static int
ngx_http_conductor_ref_detail(ngx_http_conductor_ref_view_t *v,
    const char *name1, const char *name2, const char *field, int64_t *out)
{
    long                           i;
    const char                    *names[2];
    size_t                         k;
    ngx_http_conductor_ref_view_t  d;

    names[0] = name1;
    names[1] = name2;

    for (k = 0; k < 2; k++) {
        i = ngx_http_conductor_json_find(v->m, v->n, names[k]);

        if (i >= 0 && v->m[i].type == NGX_HTTP_CONDUCTOR_JSON_OBJECT
            && ngx_http_conductor_ref_view(&d, v->m[i].value,
                                           v->m[i].value_len)
            && ngx_http_conductor_ref_count(&d, field, out))
        {
            return 1;
        }
    }

    return 0;
}


static int
ngx_http_conductor_ref_openai(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_ref_view_t *usage)
{
    int                         r;
    ngx_http_conductor_usage_t  n;

    ngx_http_conductor_usage_init(&n, u->api);

    r = (u->api == NGX_HTTP_CONDUCTOR_EP_RESPONSES);

    n.has_prompt = ngx_http_conductor_ref_count2(usage,
                       r ? "input_tokens" : "prompt_tokens",
                       r ? "prompt_tokens" : "input_tokens", &n.prompt);

    n.has_completion = ngx_http_conductor_ref_count2(usage,
                       r ? "output_tokens" : "completion_tokens",
                       r ? "completion_tokens" : "output_tokens",
                       &n.completion);

    n.has_total = ngx_http_conductor_ref_count(usage, "total_tokens",
                                               &n.total);

    if (!n.has_prompt && !n.has_completion && !n.has_total) {
        return 0;
    }

    n.has_cached = ngx_http_conductor_ref_detail(usage,
                       r ? "input_tokens_details" : "prompt_tokens_details",
                       r ? "prompt_tokens_details" : "input_tokens_details",
                       "cached_tokens", &n.cached);

    n.has_reasoning = ngx_http_conductor_ref_detail(usage,
                  r ? "output_tokens_details" : "completion_tokens_details",
                  r ? "completion_tokens_details" : "output_tokens_details",
                  "reasoning_tokens", &n.reasoning);

    n.found = 1;
    ngx_http_conductor_ref_derive(&n);

    *u = n;

    return 1;
}


static int
ngx_http_conductor_ref_anthropic(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_ref_view_t *usage)
{
    int      got;
    int64_t  v;

    got = 0;

    if (ngx_http_conductor_ref_count(usage, "input_tokens", &v)) {
        u->input = v;
        u->has_input = 1;
        got = 1;
    }

    if (ngx_http_conductor_ref_count(usage, "output_tokens", &v)) {
        u->completion = v;
        u->has_completion = 1;
        got = 1;
    }

    if (ngx_http_conductor_ref_count(usage, "cache_read_input_tokens", &v)) {
        u->cached = v;
        u->has_cached = 1;
        got = 1;
    }

    if (ngx_http_conductor_ref_count(usage, "cache_creation_input_tokens",
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
    ngx_http_conductor_ref_derive(u);

    return 1;
}


static int
ngx_http_conductor_ref_apply_text(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    ngx_http_conductor_ref_view_t  usage;

    if (!ngx_http_conductor_ref_view(&usage, p, len)) {
        return 0;
    }

    if (u->api == NGX_HTTP_CONDUCTOR_EP_MESSAGES) {
        return ngx_http_conductor_ref_anthropic(u, &usage);
    }

    return ngx_http_conductor_ref_openai(u, &usage);
}


static void
ngx_http_conductor_ref_derive(ngx_http_conductor_usage_t *u)
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


static int
ngx_http_conductor_ref_choice(ngx_http_conductor_usage_t *u,
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

    root = ngx_http_conductor_ref_load(p, len, 0);
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
            rc = ngx_http_conductor_ref_apply_text(u,
                                                   (unsigned char *) text,
                                                   strlen(text));
            free(text);
        }
    }

    json_decref(root);

    return rc;
}


static json_t *
ngx_http_conductor_ref_load(const unsigned char *p, size_t len,
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
ngx_http_conductor_ref_parse_object(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len)
{
    int                               rc;
    long                              i;
    ngx_http_conductor_json_object_t  obj;
    ngx_http_conductor_json_member_t  m[NGX_HTTP_CONDUCTOR_REF_MEMBERS];

    rc = ngx_http_conductor_json_scan_object(p, len, &obj, m,
                                             NGX_HTTP_CONDUCTOR_REF_MEMBERS);

    if (rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY) {
        return ngx_http_conductor_usage_parse_body(u, p, len);
    }

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK) {
        return 0;
    }

    i = ngx_http_conductor_json_find(m, obj.n, "usage");

    if (i >= 0 && m[i].type == NGX_HTTP_CONDUCTOR_JSON_OBJECT) {
        return ngx_http_conductor_ref_apply_text(u, m[i].value,
                                                 m[i].value_len);
    }

    return ngx_http_conductor_ref_choice(u, p, len);
}


#endif /* _NGX_HTTP_CONDUCTOR_USAGE_REF_H_INCLUDED_ */
