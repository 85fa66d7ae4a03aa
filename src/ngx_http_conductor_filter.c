
/*
 * The response side: the header and body filters and the LOG phase.
 *
 * Every error nginx itself answers in a routed location (a body too large,
 * a request the handler refused, every provider failed) is turned into a
 * JSON error in the dialect of the endpoint, so an SDK can parse it.
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_replace_error(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_conductor_filter_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_conductor_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_conductor_body_filter;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_conductor_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_header_filter(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_str_t                       v;
    ngx_http_conductor_ctx_t       *ctx;
    ngx_http_conductor_cand_t      *cand;
    ngx_http_conductor_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (!lcf->route) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (r->err_status >= NGX_HTTP_BAD_REQUEST
        && r->headers_out.status >= NGX_HTTP_BAD_REQUEST)
    {
        if (ctx == NULL) {
            /* refused before the handler ran, e.g. by client_max_body_size */
            ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_conductor_ctx_t));
            if (ctx == NULL) {
                return NGX_ERROR;
            }

            ctx->request = r;
            ctx->dialect = ngx_http_conductor_dialect_of_uri(&r->uri);
            ngx_http_set_ctx(r, ctx, ngx_http_conductor_module);
        }

        if (ngx_http_conductor_replace_error(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx == NULL || ctx->attempts == 0 || !lcf->response_headers) {
        return ngx_http_next_header_filter(r);
    }

    cand = ctx->winner ? ctx->winner : ctx->cand;

    if (ngx_http_conductor_add_header(r, "X-Conductor-Provider",
                                      &cand->provider->name)
        != NGX_OK
        || ngx_http_conductor_add_header(r, "X-Conductor-Key",
                                         &cand->key->name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%ui", ctx->attempts) - p;

    if (ngx_http_conductor_add_header(r, "X-Conductor-Attempts", &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_conductor_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t               *cl;
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || !ctx->error_replace) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's own error page is consumed and never sent */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->error_sent) {
        return NGX_OK;
    }

    ctx->error_sent = 1;

    return ngx_http_next_body_filter(r, ctx->error_out);
}


/*
 * OpenAI: {"error":{"message":..,"type":..,"param":null,"code":..}}
 * Anthropic: {"type":"error","error":{"type":..,"message":..}}
 */

static ngx_int_t
ngx_http_conductor_replace_error(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    u_char           *p;
    size_t            len, mlen, clen;
    ngx_buf_t        *b;
    ngx_uint_t        status;
    ngx_chain_t      *cl;
    const char       *type, *msg, *code;
    ngx_table_elt_t  *h;

    status = r->headers_out.status;
    msg = ctx->error;
    code = ctx->error_code;

    switch (status) {

    case NGX_HTTP_BAD_REQUEST:
        type = "invalid_request_error";
        msg = msg ? msg : "bad request";
        break;

    case NGX_HTTP_UNAUTHORIZED:
        type = "authentication_error";
        msg = msg ? msg : "authentication required";
        break;

    case NGX_HTTP_FORBIDDEN:
        type = "permission_error";
        msg = msg ? msg : "forbidden";
        break;

    case NGX_HTTP_NOT_FOUND:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "not_found_error" : "invalid_request_error";
        msg = msg ? msg : "not found";
        break;

    case NGX_HTTP_NOT_ALLOWED:
        type = "invalid_request_error";
        msg = msg ? msg : "method not allowed";
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "request_too_large" : "invalid_request_error";
        msg = msg ? msg : "the request body is too large";
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "rate_limit_error" : "rate_limit_exceeded";
        msg = msg ? msg : "rate limited";
        break;

    case NGX_HTTP_BAD_GATEWAY:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "api_error" : "server_error";
        msg = msg ? msg : "no provider answered: every attempt failed";
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "overloaded_error" : "server_error";
        msg = msg ? msg : "service unavailable";
        break;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? "api_error" : "server_error";
        msg = msg ? msg : "the provider timed out";
        break;

    default:
        type = ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC
               ? (status < 500 ? "invalid_request_error" : "api_error")
               : (status < 500 ? "invalid_request_error" : "server_error");
        msg = msg ? msg : (status < 500 ? "request error" : "server error");
        break;
    }

    mlen = ngx_http_conductor_json_escape_len((u_char *) msg, ngx_strlen(msg));
    clen = code ? ngx_strlen(code) + 2 : 4;

    len = sizeof("{\"type\":\"error\",\"error\":{\"type\":\"\",\"message\":,"
                 "\"param\":null,\"code\":}}\n") - 1
          + ngx_strlen(type) + mlen + clen;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = b->last;

    if (ctx->dialect == NGX_HTTP_CONDUCTOR_ANTHROPIC) {
        p = ngx_sprintf(p, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                           "\"message\":", type);
        p = ngx_http_conductor_json_escape(p, (u_char *) msg, ngx_strlen(msg));
        p = ngx_http_conductor_cpy(p, "}}\n");

    } else {
        p = ngx_http_conductor_cpy(p, "{\"error\":{\"message\":");
        p = ngx_http_conductor_json_escape(p, (u_char *) msg, ngx_strlen(msg));
        p = ngx_sprintf(p, ",\"type\":\"%s\",\"param\":null,\"code\":", type);

        if (code) {
            p = ngx_sprintf(p, "\"%s\"", code);

        } else {
            p = ngx_http_conductor_cpy(p, "null");
        }

        p = ngx_http_conductor_cpy(p, "}}\n");
    }

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    ctx->error_out = cl;
    ctx->error_replace = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    if (status == NGX_HTTP_NOT_ALLOWED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* what a request reserved and did not give back is given back here */

static ngx_int_t
ngx_http_conductor_log_handler(ngx_http_request_t *r)
{
    ngx_http_conductor_ctx_t        *ctx;
    ngx_http_conductor_main_conf_t  *cmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || !ctx->inflight) {
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    ngx_http_conductor_shm_lock(cmcf);
    ctx->cand->key->node->inflight--;
    ngx_http_conductor_shm_unlock(cmcf);

    ctx->inflight = 0;

    return NGX_OK;
}
