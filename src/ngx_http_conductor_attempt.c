
/*
 * One attempt: the ledger picks a candidate (and reserves it), the request
 * is made for it: the body with its provider's model name, the provider's
 * path and query, and the $conductor_upstream_* variables the proxy reads;
 * once the proxy has built the request, the provider's key goes in.  The
 * first try and every retry take the same steps.
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_set_candidate(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *cand);
static ngx_int_t ngx_http_conductor_add_auth(ngx_http_request_t *r,
    ngx_http_conductor_cand_t *cand);
static size_t ngx_http_conductor_client_headers(ngx_http_request_t *r,
    ngx_table_elt_t **pass, ngx_uint_t *npass);


/*
 * The client's headers that go upstream: what the provider APIs read (the
 * SDKs' version and beta headers, idempotency keys), nothing else.  The
 * client's keys, cookies, organisation and project never do: a 401/403
 * they caused would disable a key for everyone.  Indexed by the length of
 * the name (each has a length of its own), so a header costs one compare.
 */
static const char  *ngx_http_conductor_pass_headers[] = {
    NULL, NULL, NULL, NULL, NULL, NULL,
    "accept",                                   /* 6 */
    NULL, NULL, NULL,
    "user-agent",                               /* 10 */
    "openai-beta",                              /* 11 */
    "content-type",                             /* 12 */
    NULL,
    "anthropic-beta",                           /* 14 */
    "idempotency-key",                          /* 15 */
    NULL,
    "anthropic-version"                         /* 17 */
};

#define NGX_HTTP_CONDUCTOR_PASS_NAMES                                        \
    (sizeof(ngx_http_conductor_pass_headers) / sizeof(const char *))

#define NGX_HTTP_CONDUCTOR_PASS_MAX  16   /* client header lines passed */


/* NGX_DECLINED: no candidate has room (ctx->refusal says why) */

ngx_int_t
ngx_http_conductor_attempt(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_http_conductor_cand_t  *cand;

    cand = ngx_http_conductor_ledger_pick(r, ctx);

    if (cand == NULL) {
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "conductor: attempt %ui with key \"%V\"",
                   ctx->attempts, &cand->key->name);

    if (ngx_http_conductor_set_candidate(r, ctx, cand) != NGX_OK) {
        return NGX_ERROR;
    }

    /* sync=0: a retry is counted in Redis (the first attempt waits for
     * its check: ngx_http_conductor_exact_reserve) */
    ngx_http_conductor_exact_force(ctx);

    return NGX_OK;
}


/*
 * The upstream request of the attempt: a retry has the proxy build it anew
 * (the lua balancer's recreate_request) from the body, path and variables
 * just set; then the key goes in.
 */

ngx_int_t
ngx_http_conductor_attempt_request(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t recreate)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (recreate) {
        u->request_bufs = r->request_body->bufs;

        if (u->create_request(r) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_conductor_add_auth(r, ctx->cand);
}


/*
 * Makes cand the current attempt: the body with its provider's model name,
 * the provider's path, and the values of the $conductor_upstream_*
 * variables that the proxy reads when it (re)creates the request.
 */

static ngx_int_t
ngx_http_conductor_set_candidate(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *cand)
{
    u_char                          *p;
    size_t                           len;
    ngx_buf_t                       *b;
    ngx_str_t                       *path;
    ngx_uint_t                       i, j, k, n;
    ngx_chain_t                     *cl;
    ngx_http_conductor_json_edit_t  *edits;

    ctx->cand = cand;

    /* merge the shared edits with this candidate's model replacements */
    n = 0;
    j = 0;
    k = cand->model.len ? ctx->nmodel_spans : 0;

    edits = ngx_palloc(r->pool, (ctx->nedits + k)
                                * sizeof(ngx_http_conductor_json_edit_t));
    if (edits == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nedits || j < k; /* void */ ) {

        if (j < k && (i == ctx->nedits
                      || ctx->model_spans[j].data < ctx->edits[i].from))
        {
            edits[n].from = ctx->model_spans[j].data;
            edits[n].to = ctx->model_spans[j].data + ctx->model_spans[j].len;
            edits[n].data = cand->model_json.data;
            edits[n].len = cand->model_json.len;
            n++;
            j++;
            continue;
        }

        edits[n++] = ctx->edits[i++];
    }

    if (n) {
        len = ngx_http_conductor_json_splice(ctx->body, ctx->body_len, edits,
                                             n, NULL);

        b = ngx_create_temp_buf(r->pool, len ? len : 1);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last = b->pos + ngx_http_conductor_json_splice(ctx->body,
                                                          ctx->body_len,
                                                          edits, n, b->pos);
        b->last_buf = 1;

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;

        r->request_body->bufs = cl;

        /* a stale length would turn the rest into a second request */
        r->headers_in.content_length_n = len;

        if (r->headers_in.content_length) {
            p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
            if (p == NULL) {
                return NGX_ERROR;
            }

            r->headers_in.content_length->value.data = p;
            r->headers_in.content_length->value.len =
                                          ngx_sprintf(p, "%O", len) - p;
        }
    }

    path = &ngx_http_conductor_endpoint_paths[ctx->endpoint];

    len = cand->provider->prefix.len + path->len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    r->uri.data = p;
    p = ngx_cpymem(p, cand->provider->prefix.data, cand->provider->prefix.len);
    ngx_memcpy(p, path->data, path->len);
    r->uri.len = len;
    r->valid_unparsed_uri = 0;

    /* the client's query never goes upstream (a key in "?api-key=" would
     * reach the provider); the provider's own does */
    r->args = cand->provider->args;

    return NGX_OK;
}


/*
 * The provider's key, its own "header" lines and, when the location passes
 * no client headers itself (proxy_pass_request_headers off, as
 * conductor_proxy.conf has it), the allowlisted client headers are written
 * into the request the proxy has just built, after its last header: the
 * secret never passes through a variable or the proxy's own header
 * processing, so no log level can show it.
 */

static ngx_int_t
ngx_http_conductor_add_auth(ngx_http_request_t *r,
    ngx_http_conductor_cand_t *cand)
{
    u_char           *p;
    size_t            len, hlen;
    ngx_buf_t        *b, *nb;
    ngx_uint_t        i, npass;
    ngx_chain_t      *cl;
    ngx_table_elt_t  *pass[NGX_HTTP_CONDUCTOR_PASS_MAX];

    cl = r->upstream->request_bufs;

    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;
    len = b->last - b->pos;

    if (len < 4 || ngx_strncmp(b->last - 4, CRLF CRLF, 4) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "conductor: unexpected upstream request layout");
        return NGX_ERROR;
    }

    npass = 0;
    hlen = r->upstream->conf->pass_request_headers
           ? 0 : ngx_http_conductor_client_headers(r, pass, &npass);

    nb = ngx_create_temp_buf(r->pool, len + hlen + cand->provider->headers.len
                                      + sizeof("Authorization: ")
                                      + cand->key->header.len + 2);
    if (nb == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(nb->last, b->pos, len - 2);

    for (i = 0; i < npass; i++) {
        p = ngx_cpymem(p, pass[i]->key.data, pass[i]->key.len);
        p = ngx_http_conductor_cpy(p, ": ");
        p = ngx_cpymem(p, pass[i]->value.data, pass[i]->value.len);
        p = ngx_http_conductor_cpy(p, CRLF);
    }

    p = ngx_cpymem(p, cand->provider->headers.data,
                   cand->provider->headers.len);

    if (cand->provider->api == NGX_HTTP_CONDUCTOR_ANTHROPIC) {
        p = ngx_http_conductor_cpy(p, "x-api-key: ");

    } else {
        p = ngx_http_conductor_cpy(p, "Authorization: ");
    }

    p = ngx_cpymem(p, cand->key->header.data, cand->key->header.len);
    p = ngx_http_conductor_cpy(p, CRLF CRLF);

    nb->last = p;
    nb->flush = b->flush;

    cl->buf = nb;

    return NGX_OK;
}


/* the client's allowlisted header lines, and the bytes they take */

static size_t
ngx_http_conductor_client_headers(ngx_http_request_t *r,
    ngx_table_elt_t **pass, ngx_uint_t *npass)
{
    size_t            len;
    ngx_uint_t        i;
    const char       *name;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].value.len == 0 || *npass == NGX_HTTP_CONDUCTOR_PASS_MAX) {
            continue;
        }

        if (h[i].key.len >= NGX_HTTP_CONDUCTOR_PASS_NAMES) {
            continue;
        }

        name = ngx_http_conductor_pass_headers[h[i].key.len];

        if (name && ngx_strncmp(name, h[i].lowcase_key, h[i].key.len) == 0) {
            pass[(*npass)++] = &h[i];
            len += h[i].key.len + sizeof(": ") - 1 + h[i].value.len
                   + sizeof(CRLF) - 1;
        }
    }

    return len;
}


